//! pycocotools' `accumulate` for one category: precision at the recall thresholds and the
//! final recall, for every IoU threshold, area range and maxDets.

use super::matching::{stable_desc_order, DtFlags, PairEval};
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
    let mut sorted_flags: Vec<[DtFlags; NUM_AREAS]> = Vec::new();
    let mut fp_at_tp: [Vec<u64>; NUM_IOU_THRS] = Default::default();
    let mut env: Vec<f64> = Vec::new();
    for (m, &max_det) in MAX_DETS.iter().enumerate() {
        // Concatenate each image's first maxDet detections in image order, then a stable
        // sort by score (numpy's mergesort of -score).
        items.clear();
        for (pi, p) in pairs.iter().enumerate() {
            let n = p.scores.len().min(max_det);
            items.extend((0..n).map(|d| (p.scores[d], pi as u32, d as u32)));
        }
        stable_desc_order(&mut items, |it| it.0);
        // Gather the flags in sorted order once (contiguous for the passes below).
        sorted_flags.clear();
        sorted_flags.extend(
            items
                .iter()
                .map(|&(_, pi, d)| pairs[pi as usize].flags[d as usize]),
        );
        for (a, &np) in npig.iter().enumerate() {
            if np == 0 {
                continue;
            }
            let npf = np as f64;
            // One pass for all thresholds: the false-positive count at each true positive.
            for e in fp_at_tp.iter_mut() {
                e.clear();
            }
            let mut fp = [0u64; NUM_IOU_THRS];
            for f in &sorted_flags {
                let DtFlags { tp: tps, fp: fps } = f[a];
                if tps | fps == 0 {
                    continue;
                }
                for t in 0..NUM_IOU_THRS {
                    let bit = 1u16 << t;
                    if tps & bit != 0 {
                        fp_at_tp[t].push(fp[t]);
                    } else if fps & bit != 0 {
                        fp[t] += 1;
                    }
                }
            }
            for (t, events) in fp_at_tp.iter().enumerate() {
                // pycocotools: rc = tp / npig and pr = tp / (fp + tp + eps) after every
                // detection, pr made non-increasing from the right, then for each recall
                // threshold the pr at the first index with rc >= threshold (0 past the end).
                // That index always falls on a true positive (or is the first entry, whose
                // envelope value is the maximum over everything, i.e. over the true
                // positives), and a false positive never raises the envelope. So the same
                // values come from the true positives alone: the e-th (0-based) has tp = e + 1
                // and the false-positive count recorded in `events`.
                let n_tp = events.len();
                env.clear();
                env.extend(events.iter().enumerate().map(|(e, &fpc)| {
                    let (tpf, fpf) = ((e + 1) as f64, fpc as f64);
                    tpf / (fpf + tpf + f64::EPSILON)
                }));
                for i in (1..n_tp).rev() {
                    if env[i] > env[i - 1] {
                        env[i - 1] = env[i];
                    }
                }
                out.recall[(t * NUM_AREAS + a) * M + m] = n_tp as f64 / npf;
                let mut e = 0usize;
                for (r, &thr) in rec_thrs.iter().enumerate() {
                    while e < n_tp && ((e + 1) as f64 / npf) < thr {
                        e += 1;
                    }
                    let q = if e < n_tp { env[e] } else { 0.0 };
                    out.precision[((t * NUM_REC_THRS + r) * NUM_AREAS + a) * M + m] = q;
                }
            }
        }
    }
    out
}
