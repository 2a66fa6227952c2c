//! The fixed parameters of pycocotools' `Params.setDetParams` for `iouType="bbox"`.

/// Number of IoU thresholds (`.50:.05:.95`).
pub const NUM_IOU_THRS: usize = 10;
/// Number of recall thresholds (`0:.01:1`).
pub const NUM_REC_THRS: usize = 101;
/// Maximum detections per image and category, in increasing order.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];
/// Number of area ranges.
pub const NUM_AREAS: usize = 4;
/// Area ranges `[lo, hi]`, both bounds inclusive, applied to the annotation's `area`.
pub const AREA_RANGES: [[f64; 2]; NUM_AREAS] =
    [[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]];
/// Labels of [`AREA_RANGES`], as pycocotools prints them.
pub const AREA_LABELS: [&str; NUM_AREAS] = ["all", "small", "medium", "large"];

/// `np.linspace(start, stop, num, endpoint=True)` with numpy's exact arithmetic:
/// `i * step + start` with `step = (stop - start) / (num - 1)`, and the last value `stop`.
pub fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let mut out = [0.0; N];
    if N == 0 {
        return out;
    }
    let step = (stop - start) / (N as f64 - 1.0);
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    if N > 1 {
        out[N - 1] = stop;
    }
    out
}

/// The IoU thresholds, `np.linspace(.5, 0.95, 10)`.
pub fn iou_thresholds() -> [f64; NUM_IOU_THRS] {
    linspace(0.5, 0.95)
}

/// The recall thresholds, `np.linspace(.0, 1.00, 101)`.
pub fn recall_thresholds() -> [f64; NUM_REC_THRS] {
    linspace(0.0, 1.0)
}
