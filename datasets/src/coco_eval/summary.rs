//! pycocotools' `summarize`: the 12 numbers, per-category AP, and the printed lines.

use serde::{Deserialize, Serialize};

use super::params::{AREA_LABELS, MAX_DETS, NUM_AREAS, NUM_IOU_THRS, NUM_REC_THRS};

const M: usize = MAX_DETS.len();

/// The names of the 12 COCO numbers, in `stats` order.
pub const STAT_NAMES: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

/// Evaluation results of one category (area "all", maxDets 100), each the mean over the
/// entries > -1 as `summarize` computes it, or -1 when the category has no (non-crowd)
/// ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryEval {
    /// Category id.
    pub id: u64,
    /// Category name from the ground truth.
    pub name: String,
    /// AP at IoU .50:.95.
    pub ap: f64,
    /// AP at IoU .50.
    pub ap50: f64,
    /// AP at IoU .75.
    pub ap75: f64,
    /// AR at IoU .50:.95 with 100 detections per image.
    pub ar100: f64,
}

/// The accumulated evaluation: the 12 COCO numbers, per-category results and the full
/// precision/recall arrays of pycocotools' `eval` dict.
#[derive(Debug, Clone)]
pub struct CocoEvalSummary {
    /// pycocotools' `COCOeval.stats`: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs,
    /// ARm, ARl (see [`STAT_NAMES`]); -1 where nothing could be measured.
    pub stats: [f64; 12],
    /// Per-category results, in increasing category id order.
    pub per_category: Vec<CategoryEval>,
    /// Number of images evaluated.
    pub num_images: usize,
    /// Number of detections taken into account (after the image/category selection).
    pub num_detections: usize,
    pub(crate) iou_thrs: [f64; NUM_IOU_THRS],
    /// K, the number of evaluated categories (the arrays' third/second dimension).
    pub(crate) num_cats: usize,
    pub(crate) precision: Vec<f64>,
    pub(crate) recall: Vec<f64>,
}

/// The JSON report written by `detr-infer eval --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The 12 numbers, in [`STAT_NAMES`] order.
    pub stats: Vec<f64>,
    /// Per-category results keyed by category id.
    pub per_category: std::collections::BTreeMap<String, CategoryEval>,
}

/// numpy's pairwise summation (`pairwise_sum_DOUBLE`), so means match `np.mean` closely.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean(s[s > -1])`, or -1 when no entry is > -1.
pub(crate) fn mean_valid(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|&x| x > -1.0).collect();
    if v.is_empty() {
        -1.0
    } else {
        pairwise_sum(&v) / v.len() as f64
    }
}

impl CocoEvalSummary {
    /// Number of categories evaluated (K).
    pub fn num_categories(&self) -> usize {
        self.num_cats
    }

    /// `eval['precision'][t, r, k, a, m]`: precision at IoU threshold `t` (0..10), recall
    /// threshold `r` (0..101), category index `k`, area range `a` (all, small, medium,
    /// large) and maxDets index `m` (1, 10, 100); -1 without ground truth.
    pub fn precision(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        let kk = self.num_categories();
        self.precision[(((t * NUM_REC_THRS + r) * kk + k) * NUM_AREAS + a) * M + m]
    }

    /// `eval['recall'][t, k, a, m]`; -1 without ground truth.
    pub fn recall(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        let kk = self.num_categories();
        self.recall[((t * kk + k) * NUM_AREAS + a) * M + m]
    }

    /// `_summarize(ap, iouThr, areaRng, maxDets)`: the mean over the selected entries > -1.
    fn summarize_one(&self, ap: bool, iou_thr: Option<f64>, area: usize, m: usize) -> f64 {
        // np.where(iouThr == p.iouThrs): exact equality, possibly no match.
        let ts: Vec<usize> = match iou_thr {
            None => (0..NUM_IOU_THRS).collect(),
            Some(v) => (0..NUM_IOU_THRS)
                .filter(|&t| self.iou_thrs[t] == v)
                .collect(),
        };
        let kk = self.num_categories();
        if ap {
            mean_valid(ts.iter().flat_map(|&t| {
                (0..NUM_REC_THRS)
                    .flat_map(move |r| (0..kk).map(move |k| (r, k)))
                    .map(move |(r, k)| self.precision(t, r, k, area, m))
            }))
        } else {
            mean_valid(
                ts.iter()
                    .flat_map(|&t| (0..kk).map(move |k| self.recall(t, k, area, m))),
            )
        }
    }

    /// Computes `stats` and the per-category values from the arrays.
    pub(crate) fn finish(&mut self, cat_ids: &[u64], cat_names: &[String]) {
        let s = |ap, thr, a, m| self.summarize_one(ap, thr, a, m);
        let stats = [
            s(true, None, 0, 2),
            s(true, Some(0.5), 0, 2),
            s(true, Some(0.75), 0, 2),
            s(true, None, 1, 2),
            s(true, None, 2, 2),
            s(true, None, 3, 2),
            s(false, None, 0, 0),
            s(false, None, 0, 1),
            s(false, None, 0, 2),
            s(false, None, 1, 2),
            s(false, None, 2, 2),
            s(false, None, 3, 2),
        ];
        let per_category = (0..cat_ids.len())
            .map(|k| {
                let ap_at =
                    |t: usize| mean_valid((0..NUM_REC_THRS).map(|r| self.precision(t, r, k, 0, 2)));
                CategoryEval {
                    id: cat_ids[k],
                    name: cat_names[k].clone(),
                    ap: mean_valid(
                        (0..NUM_IOU_THRS)
                            .flat_map(|t| (0..NUM_REC_THRS).map(move |r| (t, r)))
                            .map(|(t, r)| self.precision(t, r, k, 0, 2)),
                    ),
                    ap50: ap_at(0),
                    ap75: ap_at(5),
                    ar100: mean_valid((0..NUM_IOU_THRS).map(|t| self.recall(t, k, 0, 2))),
                }
            })
            .collect();
        self.stats = stats;
        self.per_category = per_category;
    }

    /// The 12 lines pycocotools' `summarize` prints, in its exact format.
    pub fn summary_lines(&self) -> Vec<String> {
        const ROWS: [(bool, Option<&str>, usize, usize); 12] = [
            (true, None, 0, 2),
            (true, Some("0.50"), 0, 2),
            (true, Some("0.75"), 0, 2),
            (true, None, 1, 2),
            (true, None, 2, 2),
            (true, None, 3, 2),
            (false, None, 0, 0),
            (false, None, 0, 1),
            (false, None, 0, 2),
            (false, None, 1, 2),
            (false, None, 2, 2),
            (false, None, 3, 2),
        ];
        let all_ious = format!(
            "{:.2}:{:.2}",
            self.iou_thrs[0],
            self.iou_thrs[NUM_IOU_THRS - 1]
        );
        ROWS.iter()
            .zip(self.stats)
            .map(|(&(ap, iou, a, m), v)| {
                let (title, kind) = if ap {
                    ("Average Precision", "(AP)")
                } else {
                    ("Average Recall", "(AR)")
                };
                format!(
                    " {:<18} {} @[ IoU={:<9} | area={:>6} | maxDets={:>3} ] = {:.3}",
                    title,
                    kind,
                    iou.unwrap_or(&all_ious),
                    AREA_LABELS[a],
                    MAX_DETS[m],
                    v
                )
            })
            .collect()
    }

    /// The `{"stats": [...], "per_category": {...}}` report.
    pub fn report(&self) -> EvalReport {
        EvalReport {
            stats: self.stats.to_vec(),
            per_category: self
                .per_category
                .iter()
                .map(|c| (c.id.to_string(), c.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_plain_sum_on_integers() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 499500.0);
        assert_eq!(pairwise_sum(&v[..5]), 10.0);
        assert_eq!(pairwise_sum(&v[..100]), 4950.0);
    }

    #[test]
    fn mean_valid_skips_minus_one() {
        assert_eq!(mean_valid([-1.0, -1.0].into_iter()), -1.0);
        assert_eq!(mean_valid([-1.0, 0.5, 1.0].into_iter()), 0.75);
    }
}
