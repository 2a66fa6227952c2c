//! Times one DETR training step (forward, loss, backward, clip, AdamW): on the CPU, or on a
//! GPU with `--backend wgpu` / `cuda` in a build with that feature (`tools/cuda_check.sh`).
//!
//! ```sh
//! cargo run --release -p detr-train --example bench_train_step -- --preset r50 --size 512 --batch 2
//! cargo run --release -p detr-train --example bench_train_step -- --preset tiny --size 128 --batch 4
//! ```
//!
//! Inputs are random images with three random boxes each (seeded); the first steps are
//! warm-up. Prints the median of the timed steps and the split into forward, loss, backward
//! and optimiser. `--default-allocator` leaves glibc's allocator as it is
//! (`detr_model::backend::cpu_memory`; the binaries configure it).

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use datasets::DetectionTarget;
use detr_model::DetrConfig;
use detr_train::{DetrOptimizer, OptimizerOptions, SetCriterionConfig};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench<B: detr_model::DetrAutodiffBackend>(
    preset: &str,
    size: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
) {
    let clip: f32 = arg("--clip", 0.1);
    let device = B::Device::default();
    B::seed(&device, 0);
    let num_classes = 91;
    let mut cfg = DetrConfig::preset(preset)
        .expect("preset")
        .with_num_classes(num_classes);
    // Optional overrides: --norm frozen|group, --train-stem true|false, --width N, --queries N,
    // --dropout P.
    cfg.backbone_norm = arg("--norm", cfg.backbone_norm);
    cfg.train_stem_and_layer1 = arg("--train-stem", cfg.train_stem_and_layer1);
    cfg.backbone_width = arg("--width", cfg.backbone_width);
    cfg.num_queries = arg("--queries", cfg.num_queries);
    cfg.dropout = arg("--dropout", cfg.dropout);
    let mut model = cfg.init::<B>(&device).expect("model");
    let criterion = SetCriterionConfig::new(num_classes)
        .init()
        .expect("criterion");
    let mut optim = DetrOptimizer::new(
        &model,
        OptimizerOptions {
            clip_max_norm: clip,
            ..OptimizerOptions::default()
        },
    );
    let images = Tensor::<B, 4>::random(
        [batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mask = Tensor::<B, 3, Bool>::from_data(
        TensorData::new(vec![false; batch * size * size], [batch, size, size]),
        &device,
    );
    let targets: Vec<DetectionTarget> = (0..batch)
        .map(|i| DetectionTarget {
            boxes: vec![
                [0.3, 0.3, 0.2, 0.2],
                [0.6, 0.5, 0.3, 0.4],
                [0.5, 0.7, 0.5, 0.3],
            ],
            labels: vec![1 + i % 5, 7, 18],
            image_id: i as u64,
            area: vec![100.0; 3],
            iscrowd: vec![false; 3],
            orig_size: [size, size],
            size: [size, size],
        })
        .collect();
    let (mut tf, mut tl, mut tb, mut to, mut tt) = (vec![], vec![], vec![], vec![], vec![]);
    for step in 0..warmup + steps {
        let t0 = Instant::now();
        let out = model.forward(images.clone(), mask.clone());
        let _ = out
            .logits
            .clone()
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_data(); // sync
        let t1 = Instant::now();
        let crit = criterion
            .forward(out.logits, out.boxes, &targets)
            .expect("criterion");
        let _ = crit.components().expect("components");
        let t2 = Instant::now();
        let grads = crit.loss.backward();
        let grads = GradientsParams::from_grads(grads, &model);
        let t3 = Instant::now();
        let (m, _norm) = optim.step_clipped(1e-4, model, grads);
        model = m;
        let _ = model
            .query_embed
            .weight
            .val()
            .slice([0..1, 0..1])
            .into_data(); // sync
        let t4 = Instant::now();
        if step >= warmup {
            tf.push((t1 - t0).as_secs_f64());
            tl.push((t2 - t1).as_secs_f64());
            tb.push((t3 - t2).as_secs_f64());
            to.push((t4 - t3).as_secs_f64());
            tt.push((t4 - t0).as_secs_f64());
        }
    }
    let step = median(&mut tt);
    println!(
        "{preset} batch {batch}x{size}x{size}: step {step:.3} s = {:.2} images/s (forward {:.3}, loss {:.3}, backward {:.3}, optimiser {:.3}); median of {steps}",
        batch as f64 / step,
        median(&mut tf),
        median(&mut tl),
        median(&mut tb),
        median(&mut to)
    );
}

fn main() {
    // As the detr-train binary runs; `--default-allocator` leaves glibc's settings as they are.
    if !std::env::args().any(|a| a == "--default-allocator") {
        detr_model::backend::cpu_memory::retain_freed_memory();
    }
    let preset: String = arg("--preset", "tiny".to_string());
    let size: usize = arg("--size", 128);
    // `--batch 2,8`: several batch sizes in one process (a GPU compiles its kernels once).
    let batches: String = arg("--batch", "4".to_string());
    let batches: Vec<usize> = batches
        .split(',')
        .map(|b| b.trim().parse().expect("--batch: sizes like 2 or 2,8"))
        .collect();
    let steps: usize = arg("--steps", 5);
    let warmup: usize = arg("--warmup", 2);
    let backend: String = arg("--backend", "flex".to_string());
    for batch in batches {
        match backend.as_str() {
            "ndarray" => bench::<Autodiff<NdArray>>(&preset, size, batch, steps, warmup),
            // The GPU backends need the binary built with `--features wgpu` / `cuda`.
            #[cfg(feature = "wgpu")]
            "wgpu" => bench::<Autodiff<burn::backend::Wgpu>>(&preset, size, batch, steps, warmup),
            #[cfg(feature = "cuda")]
            "cuda" => bench::<Autodiff<burn::backend::Cuda>>(&preset, size, batch, steps, warmup),
            "flex" => bench::<Autodiff<Flex>>(&preset, size, batch, steps, warmup),
            other => {
                eprintln!("backend `{other}` is not part of this build");
                std::process::exit(2)
            }
        }
    }
}
