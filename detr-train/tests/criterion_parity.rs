//! Parity of the matcher and the set criterion with an independent float64 PyTorch/scipy
//! reference (`tools/make_criterion_fixture.py`, committed output in
//! `tests/fixtures/criterion/criterion.safetensors`).
//!
//! Tolerances (float32 against a float64 reference; float32 noise is about 1e-7 relative on
//! these sums):
//! * matched indices: identical (the fixture guarantees a gap of ≥ 1e-2 between the best and
//!   second-best assignment of every layer and image, far above float32 cost noise);
//! * every loss component, final and auxiliary: 1e-5 relative (absolute 1e-6 near zero);
//! * gradients of the total w.r.t. logits and boxes: `|a − b| ≤ 1e-4 · (|b| + max|b|·1e-2)`,
//!   i.e. 1e-4 relative with a floor of 1e-6 of the tensor's largest entry.

use std::collections::HashMap;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor, TensorData};
use datasets::DetectionTarget;
use detr_train::{SetCriterionConfig, TargetBatch};
use safetensors::{Dtype, SafeTensors};

/// Named from the workspace so that gpu-tests can include this file.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../detr-train/tests/fixtures/criterion/criterion.safetensors"
);

struct Case {
    name: String,
    num_classes: usize,
    num_boxes: f64,
    logits: (Vec<f32>, [usize; 4]),
    boxes: (Vec<f32>, [usize; 4]),
    targets: Vec<DetectionTarget>,
    /// `[L][M]` rows (image, query, target).
    indices: Vec<Vec<[usize; 3]>>,
    losses: HashMap<String, f64>,
    grad_logits: Vec<f32>,
    grad_boxes: Vec<f32>,
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn f64s(st: &SafeTensors, name: &str) -> Vec<f64> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F64, "{name}");
    t.data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(st: &SafeTensors, name: &str) -> (Vec<i64>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let v = t
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn dims4(s: &[usize]) -> [usize; 4] {
    s.try_into().expect("4-d tensor")
}

fn load_cases() -> Vec<Case> {
    let bytes = std::fs::read(FIXTURE).expect("fixture file");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("metadata");
    let meta = meta.metadata().clone().expect("metadata map");
    let cases: serde_json::Value = serde_json::from_str(&meta["cases"]).expect("cases json");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    cases
        .as_array()
        .expect("case list")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let num_classes = c["num_classes"].as_u64().unwrap() as usize;
            let (logits, ls) = f32s(&st, &format!("{name}.logits"));
            let (boxes, bs) = f32s(&st, &format!("{name}.boxes"));
            let (tgt_boxes, _) = f32s(&st, &format!("{name}.tgt_boxes"));
            let (tgt_labels, _) = i64s(&st, &format!("{name}.tgt_labels"));
            let (counts, _) = i64s(&st, &format!("{name}.tgt_counts"));
            let mut targets = Vec::new();
            let mut offset = 0;
            for &n in &counts {
                let n = n as usize;
                targets.push(DetectionTarget {
                    boxes: (offset..offset + n)
                        .map(|i| tgt_boxes[4 * i..4 * i + 4].try_into().unwrap())
                        .collect(),
                    labels: tgt_labels[offset..offset + n]
                        .iter()
                        .map(|&l| l as usize)
                        .collect(),
                    ..Default::default()
                });
                offset += n;
            }
            let (idx, is) = i64s(&st, &format!("{name}.indices"));
            let (layers, m) = (is[0], is[1]);
            let indices = (0..layers)
                .map(|l| {
                    (0..m)
                        .map(|p| {
                            let o = (l * m + p) * 3;
                            [idx[o] as usize, idx[o + 1] as usize, idx[o + 2] as usize]
                        })
                        .collect()
                })
                .collect();
            let names: Vec<String> = c["losses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            let values = f64s(&st, &format!("{name}.losses"));
            let losses = names.into_iter().zip(values).collect();
            Case {
                name: name.clone(),
                num_classes,
                num_boxes: c["num_boxes"].as_f64().unwrap(),
                logits: (logits, dims4(&ls)),
                boxes: (boxes, dims4(&bs)),
                targets,
                indices,
                losses,
                grad_logits: f32s(&st, &format!("{name}.grad_logits")).0,
                grad_boxes: f32s(&st, &format!("{name}.grad_boxes")).0,
            }
        })
        .collect()
}

fn tensor<B: Backend>(data: &(Vec<f32>, [usize; 4]), device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(data.0.clone(), data.1), device)
}

fn check_indices(case: &Case, got: &[Vec<detr_train::ImageMatch>]) {
    assert_eq!(got.len(), case.indices.len(), "{}: layers", case.name);
    for (layer, (g, want)) in got.iter().zip(&case.indices).enumerate() {
        let flat: Vec<[usize; 3]> = g
            .iter()
            .enumerate()
            .flat_map(|(b, m)| {
                m.queries
                    .iter()
                    .zip(&m.targets)
                    .map(move |(&q, &t)| [b, q, t])
            })
            .collect();
        assert_eq!(&flat, want, "{}: indices of layer {layer}", case.name);
    }
}

fn check_losses(case: &Case, comps: &[(String, f32)]) {
    assert_eq!(
        comps.len(),
        case.losses.len(),
        "{}: component count",
        case.name
    );
    let mut worst = 0f64;
    for (name, value) in comps {
        let want = case.losses[name];
        let err = (f64::from(*value) - want).abs();
        assert!(
            err <= 1e-5 * want.abs() || err <= 1e-6,
            "{}: {name} = {value}, reference {want} (rel err {:.3e})",
            case.name,
            err / want.abs().max(1e-30)
        );
        if want.abs() > 1e-6 {
            worst = worst.max(err / want.abs());
        }
    }
    eprintln!("{}: losses worst relative error {worst:.3e}", case.name);
}

fn check_grad(case: &Case, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{}: {what} size", case.name);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * (b.abs() + 1e-2 * scale);
        let err = (a - b).abs();
        assert!(
            err <= tol,
            "{}: {what}[{i}] = {a}, reference {b} (err {err:.3e}, tol {tol:.3e})",
            case.name
        );
        worst = worst.max(err / (b.abs() + 1e-2 * scale));
    }
    eprintln!("{}: {what} worst scaled error {worst:.3e}", case.name);
}

fn run_parity<B: AutodiffBackend>(device: &B::Device) {
    let cases = load_cases();
    assert!(cases.len() >= 3);
    for case in &cases {
        let criterion = SetCriterionConfig::new(case.num_classes)
            .init()
            .expect("criterion");
        let logits = tensor::<B>(&case.logits, device).require_grad();
        let boxes = tensor::<B>(&case.boxes, device).require_grad();
        let out = criterion
            .forward(logits.clone(), boxes.clone(), &case.targets)
            .expect("criterion forward");
        assert_eq!(
            f64::from(out.num_boxes),
            case.num_boxes,
            "{}: num_boxes",
            case.name
        );
        check_indices(case, &out.indices);
        check_losses(case, &out.components().expect("components").named());

        let grads = out.loss.backward();
        let gl = logits
            .grad(&grads)
            .expect("logits grad")
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        let gb = boxes
            .grad(&grads)
            .expect("boxes grad")
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        check_grad(case, "grad_logits", &gl, &case.grad_logits);
        check_grad(case, "grad_boxes", &gb, &case.grad_boxes);
    }
}

#[test]
fn parity_autodiff_flex() {
    run_parity::<Autodiff<Flex>>(&Default::default());
}

#[test]
fn parity_autodiff_ndarray() {
    run_parity::<Autodiff<NdArray>>(&Default::default());
}

/// burn-wgpu (fused, autotuned); CI runs it on Mesa's llvmpipe. Same tolerances.
#[cfg(feature = "wgpu")]
#[test]
fn parity_autodiff_wgpu() {
    run_parity::<Autodiff<burn::backend::Wgpu>>(&Default::default());
}

/// Forward only on the plain (non-autodiff) backend: losses and indices.
#[test]
fn parity_forward_flex() {
    type B = Flex;
    let device = Default::default();
    for case in load_cases() {
        let criterion = SetCriterionConfig::new(case.num_classes).init().unwrap();
        let out = criterion
            .forward(
                tensor::<B>(&case.logits, &device),
                tensor::<B>(&case.boxes, &device),
                &case.targets,
            )
            .unwrap();
        check_indices(&case, &out.indices);
        check_losses(&case, &out.components().unwrap().named());
    }
}

/// The matcher alone, through the device-side target batch.
#[test]
fn matcher_indices_match_scipy() {
    type B = Flex;
    let device = Default::default();
    let matcher = detr_train::HungarianMatcherConfig::new().init().unwrap();
    for case in load_cases() {
        let tb = TargetBatch::<B>::new(&case.targets, case.num_classes, &device).unwrap();
        let got = matcher
            .match_layers(
                tensor::<B>(&case.logits, &device),
                tensor::<B>(&case.boxes, &device),
                &tb,
            )
            .unwrap();
        check_indices(&case, &got);
    }
}
