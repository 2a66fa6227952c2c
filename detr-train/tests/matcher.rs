//! The matcher's own tests (after the original DETR's `test_hungarian`) and edge cases.

use burn::backend::{Flex, NdArray};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use datasets::DetectionTarget;
use detr_train::matcher::{solve_assignment, solve_cost_matrices, AssignmentError};
use detr_train::{
    HungarianMatcherConfig, ImageMatch, MatcherError, SetCriterionConfig, TargetBatch,
};

/// Deterministic pseudo-random numbers in [0, 1) (a small LCG; no dependency on `rand`'s API).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn random_targets(rng: &mut Lcg, n: usize, num_classes: usize) -> DetectionTarget {
    let mut t = DetectionTarget::default();
    for _ in 0..n {
        let cx = 0.2 + 0.6 * rng.next();
        let cy = 0.2 + 0.6 * rng.next();
        let w = 0.05 + 0.3 * rng.next();
        let h = 0.05 + 0.3 * rng.next();
        t.boxes.push([cx, cy, w, h]);
        t.labels
            .push(((rng.next() * num_classes as f32) as usize).min(num_classes - 1));
    }
    t
}

fn random_outputs<B: Backend>(
    layers: usize,
    batch: usize,
    queries: usize,
    classes: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let logits = Tensor::random(
        [layers, batch, queries, classes + 1],
        Distribution::Normal(0.0, 2.0),
        device,
    );
    let boxes = Tensor::<B, 4>::random(
        [layers, batch, queries, 4],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    (logits, burn::tensor::activation::sigmoid(boxes))
}

fn slice_image<B: Backend>(t: Tensor<B, 4>, image: usize) -> Tensor<B, 4> {
    t.narrow(1, image, 1)
}

/// The original's test: matching a batch gives, for each image, what matching that image
/// alone gives; an image without targets matches nothing.
fn batched_equals_per_image<B: Backend>(device: &B::Device) {
    let mut rng = Lcg(7);
    let classes = 10;
    let counts = [5, 0, 17, 1];
    let targets: Vec<DetectionTarget> = counts
        .iter()
        .map(|&n| random_targets(&mut rng, n, classes))
        .collect();
    let (logits, boxes) = random_outputs::<B>(6, counts.len(), 100, classes, device);
    let matcher = HungarianMatcherConfig::new().init().unwrap();
    let tb = TargetBatch::<B>::new(&targets, classes, device).unwrap();
    let batched = matcher
        .match_layers(logits.clone(), boxes.clone(), &tb)
        .unwrap();
    assert_eq!(batched.len(), 6);
    for (i, target) in targets.iter().enumerate() {
        let single = TargetBatch::<B>::new(std::slice::from_ref(target), classes, device).unwrap();
        let alone = matcher
            .match_layers(
                slice_image(logits.clone(), i),
                slice_image(boxes.clone(), i),
                &single,
            )
            .unwrap();
        for layer in 0..6 {
            assert_eq!(
                batched[layer][i], alone[layer][0],
                "image {i}, layer {layer}"
            );
            assert_eq!(batched[layer][i].len(), counts[i]);
            let mut t = batched[layer][i].targets.clone();
            t.sort_unstable();
            assert_eq!(
                t,
                (0..counts[i]).collect::<Vec<_>>(),
                "every target matched once"
            );
            assert!(
                batched[layer][i].queries.windows(2).all(|w| w[0] < w[1]),
                "sorted, distinct queries"
            );
        }
    }
    // One layer through the convenience entry point.
    let last = matcher
        .match_batch(
            logits.narrow(0, 5, 1).squeeze_dim::<3>(0),
            boxes.narrow(0, 5, 1).squeeze_dim::<3>(0),
            &targets,
        )
        .unwrap();
    assert_eq!(last, batched[5]);
}

#[test]
fn batched_equals_per_image_flex() {
    batched_equals_per_image::<Flex>(&Default::default());
}

#[test]
fn batched_equals_per_image_ndarray() {
    batched_equals_per_image::<NdArray>(&Default::default());
}

#[test]
fn empty_targets_match_nothing() {
    type B = Flex;
    let device = Default::default();
    let (logits, boxes) = random_outputs::<B>(2, 3, 20, 4, &device);
    let matcher = HungarianMatcherConfig::new().init().unwrap();
    let targets = vec![DetectionTarget::default(); 3];
    let tb = TargetBatch::<B>::new(&targets, 4, &device).unwrap();
    let m = matcher
        .match_layers(logits.clone(), boxes.clone(), &tb)
        .unwrap();
    assert_eq!(m, vec![vec![ImageMatch::default(); 3]; 2]);

    // The criterion on an all-empty batch: only no-object classification, zero box losses,
    // class_error 100, cardinality = number of predicted objects.
    let criterion = SetCriterionConfig::new(4).init().unwrap();
    let out = criterion.forward(logits, boxes, &targets).unwrap();
    let comps: std::collections::HashMap<String, f32> =
        out.components().unwrap().named().into_iter().collect();
    assert_eq!(out.num_boxes, 1.0);
    assert_eq!(comps["loss_bbox"], 0.0);
    assert_eq!(comps["loss_giou_0"], 0.0);
    assert_eq!(comps["class_error"], 100.0);
    assert!(comps["loss_ce"] > 0.0 && comps["loss"].is_finite());
}

#[test]
fn nan_costs_are_an_error() {
    type B = Flex;
    let device = Default::default();
    let (logits, boxes) = random_outputs::<B>(2, 2, 10, 3, &device);
    let mut rng = Lcg(3);
    let targets = vec![
        random_targets(&mut rng, 2, 3),
        random_targets(&mut rng, 3, 3),
    ];
    // Poison one predicted box of layer 1, image 1, query 4.
    let poison = Tensor::<B, 4>::from_floats([[[[f32::NAN, 0.5, 0.1, 0.1]]]], &device);
    let boxes = boxes.slice_assign([1..2, 1..2, 4..5, 0..4], poison);
    let matcher = HungarianMatcherConfig::new().init().unwrap();
    let tb = TargetBatch::<B>::new(&targets, 3, &device).unwrap();
    let err = matcher
        .match_layers(logits.clone(), boxes.clone(), &tb)
        .unwrap_err();
    match err {
        MatcherError::NonFiniteCost {
            layer,
            image,
            query,
            ..
        } => {
            assert_eq!((layer, image, query), (1, 1, 4));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("non-finite matching cost"));
    let criterion = SetCriterionConfig::new(3).init().unwrap();
    assert!(criterion.forward(logits, boxes, &targets).is_err());
}

#[test]
fn invalid_targets_are_errors() {
    type B = Flex;
    let device = Default::default();
    let bad_label = DetectionTarget {
        boxes: vec![[0.5, 0.5, 0.2, 0.2]],
        labels: vec![3],
        ..Default::default()
    };
    assert!(matches!(
        TargetBatch::<B>::new(&[bad_label], 3, &device),
        Err(MatcherError::LabelOutOfRange {
            label: 3,
            num_classes: 3,
            ..
        })
    ));
    let bad_box = DetectionTarget {
        boxes: vec![[0.5, f32::INFINITY, 0.2, 0.2]],
        labels: vec![0],
        ..Default::default()
    };
    assert!(matches!(
        TargetBatch::<B>::new(&[bad_box], 3, &device),
        Err(MatcherError::InvalidTargetBox { .. })
    ));
    let mismatch = DetectionTarget {
        boxes: vec![[0.5, 0.5, 0.2, 0.2]],
        labels: vec![],
        ..Default::default()
    };
    assert!(matches!(
        TargetBatch::<B>::new(&[mismatch], 3, &device),
        Err(MatcherError::ShapeMismatch(_))
    ));

    let (logits, boxes) = random_outputs::<B>(1, 2, 10, 3, &device);
    let criterion = SetCriterionConfig::new(3).init().unwrap();
    assert!(criterion
        .forward(logits.clone(), boxes.clone(), &[DetectionTarget::default()])
        .is_err());
    let wrong_classes = SetCriterionConfig::new(5).init().unwrap();
    assert!(wrong_classes
        .forward(
            logits,
            boxes,
            &[DetectionTarget::default(), DetectionTarget::default()]
        )
        .is_err());
    assert!(HungarianMatcherConfig::new()
        .with_cost_class(0.0)
        .with_cost_bbox(0.0)
        .with_cost_giou(0.0)
        .init()
        .is_err());
    assert!(SetCriterionConfig::new(0).init().is_err());
}

/// Brute force over all injective maps rows → columns (small sizes only).
fn brute_force(cost: &[f32], rows: usize, cols: usize) -> f64 {
    fn rec(
        cost: &[f32],
        rows: usize,
        cols: usize,
        r: usize,
        used: &mut Vec<bool>,
        acc: f64,
        best: &mut f64,
    ) {
        if r == rows {
            *best = best.min(acc);
            return;
        }
        for c in 0..cols {
            if !used[c] {
                used[c] = true;
                rec(
                    cost,
                    rows,
                    cols,
                    r + 1,
                    used,
                    acc + f64::from(cost[r * cols + c]),
                    best,
                );
                used[c] = false;
            }
        }
    }
    let mut best = f64::INFINITY;
    rec(cost, rows, cols, 0, &mut vec![false; cols], 0.0, &mut best);
    best
}

fn total(cost: &[f32], cols: usize, m: &ImageMatch) -> f64 {
    m.queries
        .iter()
        .zip(&m.targets)
        .map(|(&q, &t)| f64::from(cost[q * cols + t]))
        .sum()
}

#[test]
fn solver_is_optimal_in_both_orientations() {
    let mut rng = Lcg(11);
    for &(rows, cols) in &[(6, 3), (3, 6), (5, 5), (7, 1), (1, 7), (4, 4)] {
        for _ in 0..20 {
            let cost: Vec<f32> = (0..rows * cols).map(|_| rng.next() * 20.0 - 10.0).collect();
            let m = solve_assignment(&cost, rows, cols).unwrap();
            assert_eq!(m.len(), rows.min(cols));
            let best = if rows <= cols {
                brute_force(&cost, rows, cols)
            } else {
                let t: Vec<f32> = (0..cols)
                    .flat_map(|c| (0..rows).map(move |r| (r, c)))
                    .map(|(r, c)| cost[r * cols + c])
                    .collect();
                brute_force(&t, cols, rows)
            };
            assert!(
                (total(&cost, cols, &m) - best).abs() < 1e-9,
                "{rows}x{cols}"
            );
        }
    }
}

#[test]
fn solver_keeps_tiny_cost_differences() {
    // Costs of very different magnitude: the fixed-point scale follows the matrix's maximum,
    // and differences of 1e-6 relative to it are resolved.
    let cost = [1.0e3 + 1.0e-3, 1.0e3, 1.0e3, 1.0e3];
    let m = solve_assignment(&cost, 2, 2).unwrap();
    assert_eq!(m.targets, vec![1, 0]);
    let tiny = [1e-20f32, 2e-20, 3e-20, 1e-20];
    assert_eq!(solve_assignment(&tiny, 2, 2).unwrap().targets, vec![0, 1]);
    let zeros = [0.0f32; 6];
    assert_eq!(solve_assignment(&zeros, 3, 2).unwrap().len(), 2);
    let huge = [f32::MAX, -f32::MAX, 0.0, 0.0];
    assert_eq!(solve_assignment(&huge, 2, 2).unwrap().targets, vec![1, 0]);
}

#[test]
fn solver_errors() {
    assert!(matches!(
        solve_assignment(&[0.0, f32::NAN, 1.0, 2.0], 2, 2),
        Err(AssignmentError::NonFinite { row: 0, col: 1, .. })
    ));
    assert!(matches!(
        solve_assignment(&[f32::NEG_INFINITY], 1, 1),
        Err(AssignmentError::NonFinite { .. })
    ));
    assert!(matches!(
        solve_assignment(&[0.0; 3], 2, 2),
        Err(AssignmentError::Shape(_))
    ));
    assert_eq!(solve_assignment(&[], 0, 5).unwrap(), ImageMatch::default());
    assert!(solve_cost_matrices(&[0.0; 8], [1, 2, 2, 2], &[3, 0]).is_err());
    assert!(solve_cost_matrices(&[0.0; 7], [1, 2, 2, 2], &[1, 0]).is_err());
}

#[test]
fn more_targets_than_queries() {
    type B = Flex;
    let device = Default::default();
    let mut rng = Lcg(5);
    let targets = vec![random_targets(&mut rng, 8, 3)];
    let (logits, boxes) = random_outputs::<B>(1, 1, 5, 3, &device);
    let matcher = HungarianMatcherConfig::new().init().unwrap();
    let m = matcher
        .match_batch(
            logits.clone().squeeze_dim::<3>(0),
            boxes.clone().squeeze_dim::<3>(0),
            &targets,
        )
        .unwrap();
    assert_eq!(m[0].queries, vec![0, 1, 2, 3, 4]);
    let criterion = SetCriterionConfig::new(3).init().unwrap();
    let out = criterion.forward(logits, boxes, &targets).unwrap();
    assert_eq!(out.num_boxes, 8.0);
    assert!(out
        .components()
        .unwrap()
        .named()
        .iter()
        .all(|(_, v)| v.is_finite()));
}

#[test]
fn num_boxes_override_scales_box_losses() {
    type B = Flex;
    let device = Default::default();
    let mut rng = Lcg(9);
    let targets = vec![
        random_targets(&mut rng, 3, 5),
        random_targets(&mut rng, 2, 5),
    ];
    let (logits, boxes) = random_outputs::<B>(2, 2, 12, 5, &device);
    let criterion = SetCriterionConfig::new(5).init().unwrap();
    let local = criterion
        .forward(logits.clone(), boxes.clone(), &targets)
        .unwrap();
    assert_eq!(local.num_boxes, 5.0);
    assert_eq!(detr_train::SetCriterion::count_boxes(&targets), 5);
    let global = criterion
        .forward_with_num_boxes(logits.clone(), boxes.clone(), &targets, 10.0)
        .unwrap();
    let a: std::collections::HashMap<_, _> =
        local.components().unwrap().named().into_iter().collect();
    let b: std::collections::HashMap<_, _> =
        global.components().unwrap().named().into_iter().collect();
    assert!((a["loss_bbox"] / 2.0 - b["loss_bbox"]).abs() < 1e-6);
    assert!((a["loss_giou_0"] / 2.0 - b["loss_giou_0"]).abs() < 1e-6);
    assert_eq!(a["loss_ce"], b["loss_ce"]);
    let clamped = criterion
        .forward_with_num_boxes(logits.clone(), boxes.clone(), &targets, 0.25)
        .unwrap();
    assert_eq!(clamped.num_boxes, 1.0);
    assert!(criterion
        .forward_with_num_boxes(logits, boxes, &targets, f32::NAN)
        .is_err());
}

#[test]
fn forward_output_equals_forward() {
    type B = Flex;
    let device = Default::default();
    let mut rng = Lcg(21);
    let targets = vec![
        random_targets(&mut rng, 4, 5),
        random_targets(&mut rng, 0, 5),
    ];
    let (logits, boxes) = random_outputs::<B>(3, 2, 15, 5, &device);
    let criterion = SetCriterionConfig::new(5).init().unwrap();
    let a = criterion
        .forward(logits.clone(), boxes.clone(), &targets)
        .unwrap();
    let output = detr_model::DetrOutput { logits, boxes };
    let b = criterion.forward_output(output, &targets).unwrap();
    assert_eq!(a.components().unwrap(), b.components().unwrap());
    assert_eq!(a.indices, b.indices);
    assert_eq!(a.components().unwrap().named().len(), 6 + 4 * 2);
}

/// `detr_model::box_ops::generalized_box_iou` (pairwise, broadcasting `[N,1]` against `[1,M]`)
/// agrees with a host computation; the matcher's element-wise GIoU follows the same formula.
#[test]
fn box_ops_pairwise_giou_matches_host() {
    use detr_model::box_ops::{box_cxcywh_to_xyxy, generalized_box_iou};
    type B = Flex;
    let device = Default::default();
    let mut rng = Lcg(31);
    let a: Vec<[f32; 4]> = random_targets(&mut rng, 5, 2).boxes;
    let b: Vec<[f32; 4]> = random_targets(&mut rng, 3, 2).boxes;
    let to_tensor = |v: &[[f32; 4]]| {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        box_cxcywh_to_xyxy(Tensor::<B, 2>::from_data(
            burn::tensor::TensorData::new(flat, [v.len(), 4]),
            &device,
        ))
    };
    let got = generalized_box_iou(to_tensor(&a), to_tensor(&b))
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    let xyxy = |c: &[f32; 4]| {
        let [cx, cy, w, h] = c.map(f64::from);
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    };
    for (i, ba) in a.iter().enumerate() {
        for (j, bb) in b.iter().enumerate() {
            let (p, q) = (xyxy(ba), xyxy(bb));
            let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
            let iw = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
            let ih = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
            let inter = iw * ih;
            let union = area(p) + area(q) - inter;
            let hull = (p[2].max(q[2]) - p[0].min(q[0])) * (p[3].max(q[3]) - p[1].min(q[1]));
            let want = inter / union - (hull - union) / hull;
            let g = f64::from(got[i * b.len() + j]);
            assert!((g - want).abs() < 1e-5, "({i},{j}): {g} vs {want}");
        }
    }
}
