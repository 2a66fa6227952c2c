//! Training on burn-wgpu (fused, autotuned) against flex. CI runs it on Mesa's software
//! Vulkan driver (llvmpipe); `.ci/run` has the command.
//!
//! * A few optimiser steps of the tiny_r18 fixture model (detr-model's committed PyTorch
//!   weights, dropout off so both backends compute the same function) on the fixture's
//!   images: forward, matcher, set criterion with auxiliary losses, backward, global-norm
//!   clipping and the two AdamW groups. Tolerances, float32 on both sides:
//!   - every logged loss component of every step: `|wgpu − flex| ≤ 1e-3 · max(|flex|, 1)`;
//!   - the gradient norm of every step: 1e-3 relative;
//!   - the matched (query, target) pairs of every step and layer: identical;
//!   - the outputs of the trained model: logits and boxes within 1e-3 of the largest
//!     magnitude (`‖a − b‖∞ / ‖b‖∞`).
//!
//!   The first step's numbers agree to float32 noise (~1e-6, the forward parity tests'
//!   level); later steps' drift is bounded by Adam, whose update `m / (√v + ε)` maps a
//!   tiny gradient difference near zero to a difference of up to `lr` per parameter.
//!   The last batch has an image without targets, the case that once broke wgpu training.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex, Wgpu};
use burn::optim::GradientsParams;
use burn::prelude::*;
use datasets::DetectionTarget;
use detr_model::weights::{load_checkpoint, LoadOptions, WeightFormat};
use detr_model::{Detr, DetrConfig};
use detr_train::{DetrOptimizer, OptimizerOptions, SetCriterionConfig};

const STEPS: usize = 3;
const LOSS_TOL: f32 = 1e-3;
const NORM_TOL: f32 = 1e-3;
const OUTPUT_TOL: f32 = 1e-3;

fn model_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detr-model/tests/fixtures")
}

fn fixture_tensors() -> BTreeMap<String, (Vec<u8>, Vec<usize>)> {
    let bytes = std::fs::read(model_fixtures().join("tiny_r18_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(k, v)| (k.to_string(), (v.data().to_vec(), v.shape().to_vec())))
        .collect()
}

/// The fixture's first image pair `[2, 3, 128, 160]` and its padding mask.
fn batch<B: Backend>(device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 3, Bool>) {
    let io = fixture_tensors();
    let (img, shape) = &io["images_0"];
    let img: Vec<f32> = img
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (mask, mshape) = &io["mask_0"];
    let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
    (
        Tensor::from_data(TensorData::new(img, shape.clone()), device),
        Tensor::from_data(TensorData::new(mask, mshape.clone()), device),
    )
}

fn target(boxes: &[[f32; 4]], labels: &[usize]) -> DetectionTarget {
    DetectionTarget {
        boxes: boxes.to_vec(),
        labels: labels.to_vec(),
        area: vec![100.0; boxes.len()],
        iscrowd: vec![false; boxes.len()],
        orig_size: [128, 160],
        size: [128, 160],
        ..Default::default()
    }
}

/// The targets of step `step`; the last step's second image has none.
fn targets(step: usize) -> Vec<DetectionTarget> {
    let a = target(&[[0.3, 0.4, 0.3, 0.25], [0.7, 0.6, 0.2, 0.3]], &[1, 4]);
    let b = target(&[[0.5, 0.5, 0.4, 0.5]], &[2]);
    match step {
        s if s + 1 == STEPS => vec![a, target(&[], &[])],
        s if s % 2 == 0 => vec![a, b],
        _ => vec![b, a],
    }
}

fn model<B: Backend>(device: &B::Device) -> Detr<B> {
    let mut config = DetrConfig::from_json_file(&model_fixtures().join("tiny_r18.json")).unwrap();
    config.dropout = 0.0;
    let model = config.init::<B>(device).unwrap();
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    let (model, report) = load_checkpoint(
        model,
        &model_fixtures().join("tiny_r18.pth"),
        WeightFormat::DetrPth,
        strict,
    )
    .unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

struct Trace {
    /// Per step: every logged component, in order.
    losses: Vec<Vec<(String, f32)>>,
    /// Per step: the global gradient norm before clipping.
    norms: Vec<f32>,
    /// Per step: matched `(layer, image, query, target)`.
    matches: Vec<Vec<[usize; 4]>>,
    /// The trained model's final logits and boxes (all layers).
    logits: Vec<f32>,
    boxes: Vec<f32>,
}

fn train<B: detr_model::DetrAutodiffBackend>(device: &B::Device) -> Trace {
    let mut model = model::<B>(device);
    let (images, mask) = batch::<B>(device);
    let criterion = SetCriterionConfig::new(6).init().unwrap();
    let options = OptimizerOptions {
        lr: 1e-4,
        lr_backbone: 1e-5,
        ..Default::default()
    };
    let mut optim = DetrOptimizer::new(&model, options);
    let mut trace = Trace {
        losses: vec![],
        norms: vec![],
        matches: vec![],
        logits: vec![],
        boxes: vec![],
    };
    for step in 0..STEPS {
        let out = model.forward(images.clone(), mask.clone());
        let crit = criterion.forward_output(out, &targets(step)).unwrap();
        trace.losses.push(crit.components().unwrap().named());
        trace.matches.push(
            crit.indices
                .iter()
                .enumerate()
                .flat_map(|(l, per_image)| {
                    per_image.iter().enumerate().flat_map(move |(b, m)| {
                        m.queries
                            .iter()
                            .zip(&m.targets)
                            .map(move |(&q, &t)| [l, b, q, t])
                    })
                })
                .collect(),
        );
        let grads = GradientsParams::from_grads(crit.loss.backward(), &model);
        let (next, norm) = optim.step_clipped(options.lr, model, grads);
        model = next;
        trace.norms.push(norm.expect("gradient norm"));
    }
    let out = model.forward(images, mask);
    trace.logits = out.logits.into_data().convert::<f32>().to_vec().unwrap();
    trace.boxes = out.boxes.into_data().convert::<f32>().to_vec().unwrap();
    trace
}

fn rel_inf(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    diff / b.iter().map(|y| y.abs()).fold(0f32, f32::max).max(1e-12)
}

#[test]
fn training_steps_on_wgpu_agree_with_flex() {
    let flex = train::<Autodiff<Flex>>(&Default::default());
    let wgpu = train::<Autodiff<Wgpu>>(&Default::default());
    for step in 0..STEPS {
        assert_eq!(
            wgpu.matches[step], flex.matches[step],
            "step {step}: matched pairs"
        );
        let mut worst = 0f32;
        for ((name, w), (name_f, f)) in wgpu.losses[step].iter().zip(&flex.losses[step]) {
            assert_eq!(name, name_f);
            assert!(w.is_finite(), "step {step}: {name} = {w}");
            let err = (w - f).abs() / f.abs().max(1.0);
            worst = worst.max(err);
            assert!(
                err <= LOSS_TOL,
                "step {step}: {name} wgpu {w} flex {f} (scaled err {err:.2e})"
            );
        }
        let (nw, nf) = (wgpu.norms[step], flex.norms[step]);
        let norm_err = (nw - nf).abs() / nf;
        eprintln!(
            "step {step}: loss wgpu {} flex {}; worst component err {worst:.2e}; grad norm err {norm_err:.2e}",
            wgpu.losses[step][0].1, flex.losses[step][0].1
        );
        assert!(
            norm_err <= NORM_TOL,
            "step {step}: gradient norm wgpu {nw} flex {nf}"
        );
    }
    let logits = rel_inf(&wgpu.logits, &flex.logits);
    let boxes = rel_inf(&wgpu.boxes, &flex.boxes);
    eprintln!("after {STEPS} steps: logits rel err {logits:.2e}, boxes rel err {boxes:.2e}");
    assert!(logits <= OUTPUT_TOL, "trained logits differ: {logits}");
    assert!(boxes <= OUTPUT_TOL, "trained boxes differ: {boxes}");
}

/// Burn's wgpu backend as this build has it: fused (the `Fusion` wrapper). Autotune has no
/// type-level trace; `.ci/run` checks both features with `cargo tree -e features`.
#[test]
fn wgpu_backend_is_fused() {
    let name = std::any::type_name::<Wgpu>();
    // e.g. `burn_fusion::backend::Fusion<burn_cubecl::backend::CubeBackend<…>>`.
    assert!(
        name.starts_with("burn_fusion::") && name.contains("::Fusion<burn_cubecl::"),
        "{name}"
    );
}
