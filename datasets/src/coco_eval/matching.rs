//! Per image × category evaluation: pycocotools' `computeIoU` + `evaluateImg` for all four
//! area ranges at once (the IoU matrix and the score order do not depend on the area range).

use std::cmp::Ordering;

use super::params::{AREA_RANGES, MAX_DETS, NUM_AREAS, NUM_IOU_THRS};

/// A ground-truth box as the evaluator sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GtBox {
    /// Annotation id; 0 reproduces pycocotools' "matched to id 0 counts as unmatched" quirk.
    pub id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// The annotation's `area` field (decides the area range, not the box).
    pub area: f64,
    /// `iscrowd != 0`: ignored, matched by intersection over detection area, reusable.
    pub crowd: bool,
}

/// A detection as the evaluator sees it (`loadRes`: area = w·h, never crowd).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DtBox {
    /// Confidence.
    pub score: f64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
}

/// The outcome of one detection at every IoU threshold, bit `t` for threshold `t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DtFlags {
    /// Matched (to a GT with a non-zero id) and not ignored.
    pub tp: u16,
    /// Unmatched (or matched to a GT with id 0) and not ignored.
    pub fp: u16,
}

/// `evaluateImg` for one image × category and all area ranges (maxDet = 100).
#[derive(Debug, Clone, Default)]
pub(crate) struct PairEval {
    /// Scores of the kept detections, highest first (stable order), at most 100.
    pub scores: Vec<f64>,
    /// `flags[d][a]`: detection `d` in area range `a`.
    pub flags: Vec<[DtFlags; NUM_AREAS]>,
    /// Number of non-ignored ground truths per area range.
    pub npig: [u32; NUM_AREAS],
}

/// IoU of `[x, y, w, h]` boxes with the arithmetic of pycocotools' `bbIou` (maskApi.c):
/// intersection over union, or over the detection's area for a crowd ground truth.
#[inline]
pub(crate) fn bbox_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// Stable sort of indices by score, highest first, like `np.argsort(-s, kind='mergesort')`
/// (scores are finite; `-0.0` and `0.0` tie as in numpy).
pub(crate) fn stable_desc_order<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|a, b| score(b).partial_cmp(&score(a)).unwrap_or(Ordering::Equal));
}

/// Evaluates one image × category pair (its ground truths and detections in file order).
pub(crate) fn evaluate_pair(
    gts: &[GtBox],
    dts: &[DtBox],
    iou_thrs: &[f64; NUM_IOU_THRS],
) -> PairEval {
    let max_det = MAX_DETS[MAX_DETS.len() - 1];
    let mut order: Vec<usize> = (0..dts.len()).collect();
    stable_desc_order(&mut order, |&i| dts[i].score);
    order.truncate(max_det);
    let dt: Vec<DtBox> = order.iter().map(|&i| dts[i]).collect();
    let nd = dt.len();
    let ng = gts.len();

    // ious[d * ng + g], only when both sides are non-empty (maskUtils.iou returns []).
    let ious: Vec<f64> = if nd > 0 && ng > 0 {
        let mut v = Vec::with_capacity(nd * ng);
        for d in &dt {
            for g in gts {
                v.push(bbox_iou(&d.bbox, &g.bbox, g.crowd));
            }
        }
        v
    } else {
        Vec::new()
    };
    let dt_area: Vec<f64> = dt.iter().map(|d| d.bbox[2] * d.bbox[3]).collect();

    let mut out = PairEval {
        scores: dt.iter().map(|d| d.score).collect(),
        flags: vec![[DtFlags::default(); NUM_AREAS]; nd],
        npig: [0; NUM_AREAS],
    };
    let mut ignore = vec![false; ng];
    let mut gperm: Vec<usize> = Vec::with_capacity(ng);
    let mut gt_taken = vec![false; ng];
    // Per detection: bit t = matched at threshold t (dtm != 0), and ignore from the match.
    let mut dtm = vec![0u16; nd];
    let mut dt_ig = vec![0u16; nd];

    for (a, [lo, hi]) in AREA_RANGES.iter().copied().enumerate() {
        for (flag, g) in ignore.iter_mut().zip(gts) {
            *flag = g.crowd || g.area < lo || g.area > hi;
        }
        out.npig[a] = ignore.iter().filter(|&&x| !x).count() as u32;
        // GT sorted with ignored last, stable.
        gperm.clear();
        gperm.extend((0..ng).filter(|&g| !ignore[g]));
        gperm.extend((0..ng).filter(|&g| ignore[g]));
        dtm.iter_mut().for_each(|x| *x = 0);
        dt_ig.iter_mut().for_each(|x| *x = 0);

        if !ious.is_empty() {
            for (t, &thr) in iou_thrs.iter().enumerate() {
                let bit = 1u16 << t;
                gt_taken.iter_mut().for_each(|x| *x = false);
                for d in 0..nd {
                    let row = &ious[d * ng..(d + 1) * ng];
                    let mut best = thr.min(1.0 - 1e-10);
                    let mut m: Option<usize> = None;
                    for &g in &gperm {
                        if gt_taken[g] && !gts[g].crowd {
                            continue;
                        }
                        if let Some(mg) = m {
                            if !ignore[mg] && ignore[g] {
                                break;
                            }
                        }
                        if row[g] < best {
                            continue;
                        }
                        best = row[g];
                        m = Some(g);
                    }
                    if let Some(mg) = m {
                        if ignore[mg] {
                            dt_ig[d] |= bit;
                        }
                        if gts[mg].id != 0 {
                            dtm[d] |= bit;
                        }
                        gt_taken[mg] = true;
                    }
                }
            }
        }
        let all = (1u16 << NUM_IOU_THRS) - 1;
        for d in 0..nd {
            let outside = dt_area[d] < lo || dt_area[d] > hi;
            // Unmatched detections outside the area range are ignored.
            let ig = if outside {
                dt_ig[d] | (!dtm[d] & all)
            } else {
                dt_ig[d]
            };
            out.flags[d][a] = DtFlags {
                tp: dtm[d] & !ig & all,
                fp: !dtm[d] & !ig & all,
            };
        }
    }
    out
}
