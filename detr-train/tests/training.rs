//! Training behaviour on a micro DETR (CPU, flex): the loss falls when overfitting one batch,
//! resume equals an uninterrupted run, frozen parts never change, each group's learning rate
//! follows StepLR, clipping bounds the global norm, a non-finite loss stops training, and
//! `--pretrained` with another class count loads everything but the class head.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use datasets::{DetectionTarget, DetrBatch};
use detr_model::Detr;
use detr_train::config::TrainConfig;
use detr_train::optim::{clip_global_norm, global_norm};
use detr_train::run::build_model;
use detr_train::{TrainError, Trainer};

type B = Autodiff<Flex>;

/// The backend's RNG is global: tests that seed it run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SIZE: usize = 64;
const NUM_CLASSES: usize = 3;

/// The tiny preset made smaller still (1+1 layers, 5 queries) for fast tests.
fn config() -> TrainConfig {
    {
        let mut c = TrainConfig::synthetic_tiny();
        c.model.arch.enc_layers = 1;
        c.model.arch.dec_layers = 2;
        c.model.arch.num_queries = 5;
        c.model.arch.dim_feedforward = 64;
        c.model.arch.hidden_dim = 32;
        c.model.arch.nheads = 2;
        c.model.arch.backbone_width = 8;
        c.optim.lr = 1e-3;
        c.optim.lr_backbone = 1e-4;
        c.optim.lr_drop = 2;
        c.model.num_classes = Some(NUM_CLASSES);
        c.run.output_dir = tmp("unused");
        c
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn trainer(cfg: TrainConfig) -> Trainer<B> {
    let device = Default::default();
    let (model, _) = build_model::<B>(&cfg, NUM_CLASSES, &device).unwrap();
    Trainer::new(cfg, model, device).unwrap()
}

/// A deterministic batch: two images with a bright square each, and their boxes.
fn batch(shift: usize) -> DetrBatch<B> {
    let device = Default::default();
    let n = 2;
    let mut img = vec![-1.0f32; n * 3 * SIZE * SIZE];
    let boxes = [[0.3f32, 0.4, 0.3, 0.25], [0.6, 0.55, 0.4, 0.5]];
    for b in 0..n {
        let [cx, cy, w, h] = boxes[(b + shift) % 2];
        let (x0, x1) = (
            ((cx - w / 2.0) * SIZE as f32) as usize,
            ((cx + w / 2.0) * SIZE as f32) as usize,
        );
        let (y0, y1) = (
            ((cy - h / 2.0) * SIZE as f32) as usize,
            ((cy + h / 2.0) * SIZE as f32) as usize,
        );
        for c in 0..3 {
            for y in y0..y1 {
                for x in x0..x1 {
                    img[((b * 3 + c) * SIZE + y) * SIZE + x] = if c == b { 2.0 } else { 0.5 };
                }
            }
        }
    }
    let targets = (0..n)
        .map(|b| DetectionTarget {
            boxes: vec![boxes[(b + shift) % 2]],
            labels: vec![b + 1],
            image_id: b as u64 + 1,
            area: vec![100.0],
            iscrowd: vec![false],
            orig_size: [SIZE, SIZE],
            size: [SIZE, SIZE],
        })
        .collect();
    DetrBatch {
        images: Tensor::from_data(TensorData::new(img, [n, 3, SIZE, SIZE]), &device),
        mask: Tensor::from_data(
            TensorData::new(vec![false; n * SIZE * SIZE], [n, SIZE, SIZE]),
            &device,
        ),
        targets,
    }
}

/// Every float parameter as `(path, id, values)`.
#[derive(Default)]
struct Snapshot {
    path: Vec<String>,
    params: Vec<(String, ParamId, Vec<f32>)>,
}

impl<BB: Backend> ModuleVisitor<BB> for Snapshot {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BB, D>>) {
        let v = param
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        self.params.push((self.path.join("."), param.id, v));
    }
}

fn snapshot<BB: Backend>(model: &Detr<BB>) -> Vec<(String, ParamId, Vec<f32>)> {
    let mut s = Snapshot::default();
    model.visit(&mut s);
    s.params
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn loss_falls_when_overfitting_one_batch() {
    let _guard = serial();
    let mut t = trainer({
        let mut c = config();
        c.model.arch.dropout = 0.0;
        c
    });
    let first = t.train_step(batch(0)).unwrap().components.loss;
    let mut last = first;
    for _ in 0..24 {
        last = t.train_step(batch(0)).unwrap().components.loss;
    }
    assert!(first.is_finite() && last.is_finite());
    assert!(last < 0.7 * first, "loss went from {first} to {last}");
}

#[test]
fn resume_continues_the_same_trajectory() {
    let _guard = serial();
    let dir = tmp("resume");
    let ckpt = dir.join("checkpoint.mpk");
    // Uninterrupted: 4 steps (dropout on, so the RNG state matters).
    let mut a = trainer(config());
    for i in 0..4 {
        a.train_step(batch(i)).unwrap();
    }
    // Interrupted after 2 steps, saved, restored into a fresh trainer, 2 more steps.
    let mut b = trainer(config());
    for i in 0..2 {
        b.train_step(batch(i)).unwrap();
    }
    b.save_checkpoint(&ckpt).unwrap();
    drop(b);
    let fresh_cfg = {
        let mut c = config();
        c.run.seed = 42;
        c
    };
    let mut c = trainer(fresh_cfg).load_checkpoint(&ckpt).unwrap();
    assert_eq!(c.state.step, 2);
    for i in 2..4 {
        c.train_step(batch(i)).unwrap();
    }
    let (sa, sc) = (snapshot(&a.model), snapshot(&c.model));
    assert_eq!(sa.len(), sc.len());
    let bad: Vec<String> = sa
        .iter()
        .zip(&sc)
        .map(|((name, _, va), (_, _, vc))| (name, max_abs_diff(va, vc)))
        .filter(|(_, d)| *d > 1e-6)
        .map(|(n, d)| format!("{n}: {d}"))
        .collect();
    assert!(bad.is_empty(), "differ after resuming: {bad:#?}");
}

#[test]
fn frozen_batch_norm_stem_and_layer1_never_change() {
    let _guard = serial();
    // The original's backbone (the tiny preset trains a GroupNorm backbone from scratch).
    let mut t = trainer({
        let mut c = config();
        c.model.arch.backbone_norm = detr_model::BackboneNormKind::Frozen;
        c.model.arch.train_stem_and_layer1 = false;
        c
    });
    let before = snapshot(&t.model);
    for i in 0..3 {
        t.train_step(batch(i)).unwrap();
    }
    let after = snapshot(&t.model);
    let mut frozen = 0;
    let mut trained_backbone = 0;
    for ((name, _, vb), (_, _, va)) in before.iter().zip(&after) {
        let is_bn = name.contains("bn") || name.contains("downsample.1");
        let is_frozen_part = name.starts_with("backbone.conv1")
            || name.starts_with("backbone.bn1")
            || name.starts_with("backbone.layer1");
        let d = max_abs_diff(vb, va);
        if name.starts_with("backbone") && (is_bn || is_frozen_part) {
            assert_eq!(d, 0.0, "{name} changed by {d}");
            frozen += 1;
        } else if name.starts_with("backbone") && d > 0.0 {
            trained_backbone += 1;
        }
    }
    assert!(frozen > 20, "only {frozen} frozen tensors found");
    assert!(trained_backbone > 0, "layer2..4 convolutions should train");
}

/// Adam's first step moves every parameter with a non-zero gradient by about `lr` (the
/// bias-corrected `m / sqrt(v)` is ±1), plus the decay `lr·wd·p`.
fn first_step_size(epoch: usize) -> (f32, f32) {
    let mut cfg = config();
    cfg.optim.weight_decay = 0.0;
    let mut t = trainer(cfg);
    t.state.epoch = epoch;
    let before = snapshot(&t.model);
    t.train_step(batch(0)).unwrap();
    let after = snapshot(&t.model);
    let step = |prefix: &str| {
        before
            .iter()
            .zip(&after)
            .filter(|((n, _, _), _)| n.starts_with(prefix))
            .map(|((_, _, b), (_, _, a))| max_abs_diff(b, a))
            .fold(0.0, f32::max)
    };
    (step("backbone.layer4"), step("transformer"))
}

#[test]
fn each_group_lr_follows_step_lr() {
    let _guard = serial();
    let cfg = config();
    let t = trainer(cfg.clone());
    for epoch in 0..6 {
        let (lr, lr_bb) = t.lrs(epoch);
        let k = 0.1f64.powi((epoch / cfg.optim.lr_drop) as i32);
        assert!((lr - 1e-3 * k).abs() < 1e-15, "epoch {epoch}: lr {lr}");
        assert!(
            (lr_bb - 1e-4 * k).abs() < 1e-15,
            "epoch {epoch}: backbone lr {lr_bb}"
        );
    }
    for (epoch, k) in [(0usize, 1.0f32), (2, 0.1)] {
        let (bb, rest) = first_step_size(epoch);
        let (want_bb, want_rest) = (1e-4 * k, 1e-3 * k);
        assert!(
            (bb - want_bb).abs() < 0.02 * want_bb,
            "epoch {epoch}: backbone step {bb}, want {want_bb}"
        );
        assert!(
            (rest - want_rest).abs() < 0.02 * want_rest,
            "epoch {epoch}: step {rest}, want {want_rest}"
        );
    }
}

#[test]
fn clipping_bounds_the_global_norm() {
    let _guard = serial();
    let t = trainer(config());
    let b = batch(0);
    let out = t.model.forward(b.images, b.mask);
    let crit = t
        .criterion
        .forward(out.logits, out.boxes, &b.targets)
        .unwrap();
    let grads = GradientsParams::from_grads(crit.loss.backward(), &t.model);
    let norm0 = global_norm::<B>(&t.model, &grads).unwrap().into_scalar();
    assert!(
        norm0 > 0.1,
        "test needs a gradient norm above the bound, got {norm0}"
    );
    let (clipped, reported) = clip_global_norm::<B>(&t.model, grads, 0.1);
    assert!((reported.unwrap().into_scalar() - norm0).abs() < 1e-4 * norm0);
    let norm1 = global_norm::<B>(&t.model, &clipped).unwrap().into_scalar();
    assert!((norm1 - 0.1).abs() < 1e-4, "clipped norm {norm1}");
    // Below the bound nothing changes.
    let (again, _) = clip_global_norm::<B>(&t.model, clipped, 10.0);
    let norm2 = global_norm::<B>(&t.model, &again).unwrap().into_scalar();
    assert!((norm2 - norm1).abs() < 1e-6);
}

#[test]
fn non_finite_loss_stops_with_the_components_and_keeps_the_checkpoint() {
    let _guard = serial();
    let dir = tmp("nonfinite");
    let ckpt = dir.join("checkpoint.mpk");
    let mut t = trainer(config());
    t.train_step(batch(0)).unwrap();
    t.save_checkpoint(&ckpt).unwrap();
    let saved = std::fs::read(&ckpt).unwrap();
    // Poison the class head's bias: the logits, hence the loss, become NaN.
    let bias = t.model.class_embed.bias.take().unwrap();
    t.model.class_embed.bias = Some(bias.map(|b| b.mul_scalar(f32::NAN)));
    let before = snapshot(&t.model);
    let err = t.train_step(batch(1)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{msg}");
    assert!(msg.contains("non-finite loss at epoch 0, step 1"), "{msg}");
    // Nothing was updated and the checkpoint is untouched.
    let after = snapshot(&t.model);
    for ((n, _, b), (_, _, a)) in before.iter().zip(&after) {
        let same = b
            .iter()
            .zip(a)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
        assert!(same, "{n} changed");
    }
    assert_eq!(std::fs::read(&ckpt).unwrap(), saved);
}

#[test]
fn pretrained_with_another_class_count_loads_all_but_the_class_head() {
    let _guard = serial();
    let dir = tmp("pretrained");
    let path = dir.join("model.mpk");
    let device = Default::default();
    let (src, _) = build_model::<Flex>(
        &{
            let mut c = config();
            c.model.num_classes = Some(6);
            c.run.seed = 1;
            c
        },
        6,
        &device,
    )
    .unwrap();
    detr_model::weights::save_record(&src, &config().model_config(6).unwrap(), &path).unwrap();
    let cfg = {
        let mut c = config();
        c.model.pretrained = Some(path);
        c.run.seed = 2;
        c
    };
    let (model, report) = build_model::<Flex>(&cfg, NUM_CLASSES, &device).unwrap();
    let report = report.unwrap();
    assert!(report.mismatched.is_empty(), "{report}");
    assert!(
        report
            .reinitialized
            .iter()
            .any(|n| n.starts_with("class_embed")),
        "{report}"
    );
    let (a, b) = (snapshot(&src), snapshot(&model));
    let mut loaded = 0;
    for ((n, _, va), (_, _, vb)) in a.iter().zip(&b) {
        if n.starts_with("class_embed") {
            assert_ne!(va.len(), vb.len());
        } else {
            assert_eq!(max_abs_diff(va, vb), 0.0, "{n} was not loaded");
            loaded += 1;
        }
    }
    assert!(loaded > 50);
    assert_eq!(model.class_embed.weight.dims(), [32, NUM_CLASSES + 1]);
}

#[test]
fn data_parallel_over_two_devices_gives_the_single_device_update() {
    let _guard = serial();
    let device: burn::tensor::Device<B> = Default::default();
    // Both images carry one box: the shards are balanced, so averaging the two shards'
    // gradients equals the whole batch's gradient (as with PyTorch's DDP).
    let mut single = trainer(config());
    let mut parallel = trainer(config())
        .with_devices(vec![device, device])
        .unwrap();
    let a = single.train_step(batch(0)).unwrap();
    let b = parallel.train_step(batch(0)).unwrap();
    for ((ka, va), (kb, vb)) in a.components.named().iter().zip(&b.components.named()) {
        assert_eq!(ka, kb);
        assert!(
            (va - vb).abs() <= 1e-4 * va.abs().max(1.0),
            "{ka}: single {va}, data-parallel {vb}"
        );
    }
    let (ga, gb) = (a.grad_norm.unwrap(), b.grad_norm.unwrap());
    assert!((ga - gb).abs() <= 1e-4 * ga, "grad norm {ga} vs {gb}");
    let (pa, pb) = (snapshot(&single.model), snapshot(&parallel.model));
    let mut worst = 0.0f32;
    for ((name, _, va), (_, _, vb)) in pa.iter().zip(&pb) {
        let d = max_abs_diff(va, vb);
        worst = worst.max(d);
        // Adam's first step moves each parameter by ~lr (1e-3): 1e-5 is 1 % of a step.
        assert!(d <= 1e-5, "{name} differs by {d}");
    }
    eprintln!("data-parallel vs single device: max parameter difference {worst:e}");
}

#[test]
fn more_devices_than_images_is_a_clear_error() {
    let _guard = serial();
    let device: burn::tensor::Device<B> = Default::default();
    let cfg = {
        let mut c = config();
        c.data.batch_size = 2;
        c
    };
    let err = match trainer(cfg).with_devices(vec![device, device, device]) {
        Ok(_) => panic!("three devices for batches of two should be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("batch_size"), "{err}");
}
