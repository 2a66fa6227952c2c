//! pycocotools' `accumulate` for one category: precision at the recall thresholds and the
//! final recall, for every IoU threshold, area range and maxDets.

use super::matching::{stable_desc_order, PairEval};
use super::params::{MAX_DETS, NUM_AREAS, NUM_IOU_THRS, NUM_REC_THRS};

/// The accumulated curves of one category.
#[derive(Debug, Clone)]
pub(crate) struct CategoryCurves {
    /// `precision[((t * R + r) * A + a) * M + m]`, -1 where there is no ground truth.
    pub precision: Vec<f64>,
    /// `recall[(t * A + a) * M + m]`, -1 where there is no ground truth.
    pub recall: Vec<f64>,
}

const M: usize = MAX_DETS.len();

/// Accumulates one category from its image × category evaluations, in image-id order.
pub(crate) fn accumulate_category(
    pairs: &[PairEval],
    rec_thrs: &[f64; NUM_REC_THRS],
) -> CategoryCurves {
    let mut out = CategoryCurves {
        precision: vec![-1.0; NUM_IOU_THRS * NUM_REC_THRS * NUM_AREAS * M],
        recall: vec![-1.0; NUM_IOU_THRS * NUM_AREAS * M],
    };
    if pairs.is_empty() {
        return out;
    }
    let mut npig = [0u64; NUM_AREAS];
    for p in pairs {
        for (n, &x) in npig.iter_mut().zip(&p.npig) {
            *n += u64::from(x);
        }
    }
    let mut items: Vec<(f64, u32, u32)> = Vec::new();
    let mut rc: Vec<f64> = Vec::new();
    let mut pr: Vec<f64> = Vec::new();
    for (m, &max_det) in MAX_DETS.iter().enumerate() {
        // Concatenate each image's first maxDet detections in image order, then a stable
        // sort by score (numpy's mergesort of -score).
        items.clear();
        for (pi, p) in pairs.iter().enumerate() {
            let n = p.scores.len().min(max_det);
            items.extend((0..n).map(|d| (p.scores[d], pi as u32, d as u32)));
        }
        stable_desc_order(&mut items, |it| it.0);
        let nd = items.len();
        for (a, &np) in npig.iter().enumerate() {
            if np == 0 {
                continue;
            }
            let npf = np as f64;
            for t in 0..NUM_IOU_THRS {
                let bit = 1u16 << t;
                rc.clear();
                pr.clear();
                let (mut tp, mut fp) = (0u64, 0u64);
                for &(_, pi, d) in &items {
                    let p = &pairs[pi as usize];
                    let f = p.flags[a * p.scores.len() + d as usize];
                    tp += u64::from(f.tp & bit != 0);
                    fp += u64::from(f.fp & bit != 0);
                    let (tpf, fpf) = (tp as f64, fp as f64);
                    rc.push(tpf / npf);
                    pr.push(tpf / (fpf + tpf + f64::EPSILON));
                }
                out.recall[(t * NUM_AREAS + a) * M + m] = if nd > 0 { rc[nd - 1] } else { 0.0 };
                // Precision envelope: make it non-increasing from the right.
                for i in (1..nd).rev() {
                    if pr[i] > pr[i - 1] {
                        pr[i - 1] = pr[i];
                    }
                }
                // np.searchsorted(rc, recThrs, side='left'); thresholds past the end stay 0.
                let mut i = 0usize;
                for (r, &thr) in rec_thrs.iter().enumerate() {
                    while i < nd && rc[i] < thr {
                        i += 1;
                    }
                    let q = if i < nd { pr[i] } else { 0.0 };
                    out.precision[((t * NUM_REC_THRS + r) * NUM_AREAS + a) * M + m] = q;
                }
            }
        }
    }
    out
}
