//! Box utilities on tensors: format conversions, pairwise IoU and generalized IoU.
//!
//! Boxes are stored in the last dimension as four numbers. `cxcywh` is centre-x, centre-y,
//! width, height (DETR's prediction format, normalised to `[0, 1]` of the image);
//! `xyxy` is left, top, right, bottom.

use burn::tensor::{backend::Backend, Tensor};

/// Converts boxes from `(cx, cy, w, h)` to `(x0, y0, x1, y1)` along the last dimension.
pub fn box_cxcywh_to_xyxy<B: Backend, const D: usize>(boxes: Tensor<B, D>) -> Tensor<B, D> {
    let [cx, cy, w, h] = split4(boxes);
    let half_w = w.mul_scalar(0.5);
    let half_h = h.mul_scalar(0.5);
    Tensor::cat(
        vec![
            cx.clone() - half_w.clone(),
            cy.clone() - half_h.clone(),
            cx + half_w,
            cy + half_h,
        ],
        D - 1,
    )
}

/// Converts boxes from `(x0, y0, x1, y1)` to `(cx, cy, w, h)` along the last dimension.
pub fn box_xyxy_to_cxcywh<B: Backend, const D: usize>(boxes: Tensor<B, D>) -> Tensor<B, D> {
    let [x0, y0, x1, y1] = split4(boxes);
    Tensor::cat(
        vec![
            (x0.clone() + x1.clone()).mul_scalar(0.5),
            (y0.clone() + y1.clone()).mul_scalar(0.5),
            x1 - x0,
            y1 - y0,
        ],
        D - 1,
    )
}

/// Area of `xyxy` boxes `[N, 4]`, giving `[N]`.
pub fn box_area<B: Backend>(boxes: Tensor<B, 2>) -> Tensor<B, 1> {
    let [x0, y0, x1, y1] = split4(boxes);
    ((x1 - x0) * (y1 - y0)).squeeze_dim(1)
}

/// Pairwise IoU of `xyxy` boxes `a: [N, 4]` and `b: [M, 4]`: returns `(iou, union)`, both `[N, M]`.
pub fn box_iou<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let n = a.dims()[0];
    let m = b.dims()[0];
    let area_a = box_area(a.clone()).reshape([n, 1]);
    let area_b = box_area(b.clone()).reshape([1, m]);
    let a3 = a.reshape([n, 1, 4]);
    let b3 = b.reshape([1, m, 4]);
    let lt = a3
        .clone()
        .slice([0..n, 0..1, 0..2])
        .max_pair(b3.clone().slice([0..1, 0..m, 0..2]));
    let rb = a3
        .slice([0..n, 0..1, 2..4])
        .min_pair(b3.slice([0..1, 0..m, 2..4]));
    let wh = (rb - lt).clamp_min(0.0);
    let inter =
        (wh.clone().slice([0..n, 0..m, 0..1]) * wh.slice([0..n, 0..m, 1..2])).reshape([n, m]);
    let union = area_a + area_b - inter.clone();
    (inter / union.clone(), union)
}

/// Pairwise generalized IoU (Rezatofighi et al.) of `xyxy` boxes `a: [N, 4]`, `b: [M, 4]`: `[N, M]`.
///
/// Like the original, degenerate boxes (x1 < x0) are not checked here; callers validate inputs.
pub fn generalized_box_iou<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    let n = a.dims()[0];
    let m = b.dims()[0];
    let (iou, union) = box_iou(a.clone(), b.clone());
    let a3 = a.reshape([n, 1, 4]);
    let b3 = b.reshape([1, m, 4]);
    let lt = a3
        .clone()
        .slice([0..n, 0..1, 0..2])
        .min_pair(b3.clone().slice([0..1, 0..m, 0..2]));
    let rb = a3
        .slice([0..n, 0..1, 2..4])
        .max_pair(b3.slice([0..1, 0..m, 2..4]));
    let wh = (rb - lt).clamp_min(0.0);
    let area =
        (wh.clone().slice([0..n, 0..m, 0..1]) * wh.slice([0..n, 0..m, 1..2])).reshape([n, m]);
    iou - (area.clone() - union) / area
}

fn split4<B: Backend, const D: usize>(boxes: Tensor<B, D>) -> [Tensor<B, D>; 4] {
    let parts = boxes.chunk(4, D - 1);
    let mut it = parts.into_iter();
    [
        it.next().expect("four coordinates"),
        it.next().expect("four coordinates"),
        it.next().expect("four coordinates"),
        it.next().expect("four coordinates"),
    ]
}
