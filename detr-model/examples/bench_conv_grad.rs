//! The convolution's gradients of the CPU backend extension against Burn's, shape by shape
//! (flex, float32): `DetrBackend::conv2d_input_grad` (GEMM + col2im) against flex's
//! `conv2d_x_backward`, and `DetrBackend::conv2d_weight_grad` (im2col + GEMM) against flex's
//! `conv2d_weight_backward`. The shapes are the backbone's at the two training benchmarks'
//! sizes (tiny: ResNet-18 at width 16, 5 × 128²; r50: 2 × 512²).
//!
//! ```sh
//! cargo run --release -p detr-model --example bench_conv_grad [-- --runs 5]
//! ```

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Distribution, Tensor};
use detr_model::backend::DetrBackend;

/// `(name, batch, in, out, size, kernel, stride)`; padding is `kernel / 2`.
const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("tiny stem 7x7 s2", 5, 3, 16, 128, 7, 2),
    ("tiny layer1 3x3", 5, 16, 16, 32, 3, 1),
    ("tiny layer2 3x3 s2", 5, 16, 32, 32, 3, 2),
    ("tiny layer3 3x3", 5, 64, 64, 8, 3, 1),
    ("tiny layer4 1x1 s2", 5, 64, 128, 8, 1, 2),
    ("r50 layer1 1x1", 2, 64, 256, 128, 1, 1),
    ("r50 layer1 3x3", 2, 64, 64, 128, 3, 1),
    ("r50 layer2 3x3", 2, 128, 128, 64, 3, 1),
    ("r50 layer3 1x1", 2, 1024, 256, 32, 1, 1),
    ("r50 layer4 3x3", 2, 512, 512, 16, 3, 1),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut() -> FloatTensor<Flex>) -> f64 {
    let _ = f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let out =
                    Tensor::<Flex, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(f()));
                let _ = out.into_data();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let device = Default::default();
    println!("| shape | value: Burn | ours | input grad: Burn | ours | weight grad: Burn | ours |");
    println!("|---|---|---|---|---|---|---|");
    for &(name, n, c, o, size, k, s) in SHAPES {
        let x = Tensor::<Flex, 4>::random([n, c, size, size], Distribution::Default, &device);
        let w = Tensor::<Flex, 4>::random([o, c, k, k], Distribution::Default, &device);
        let options = ConvOptions::new([s; 2], [k / 2; 2], [1; 2], 1);
        let out = size.div_ceil(s);
        let g = Tensor::<Flex, 4>::random([n, o, out, out], Distribution::Default, &device);
        let (x, w, g) = (
            x.into_primitive().tensor(),
            w.into_primitive().tensor(),
            g.into_primitive().tensor(),
        );
        use burn::tensor::ops::ModuleOps;
        let burn_x = time(runs, || {
            <Flex as ModuleOps<Flex>>::conv2d_x_backward(
                x.clone(),
                w.clone(),
                g.clone(),
                options.clone(),
            )
        });
        let burn_w = time(runs, || {
            <Flex as ModuleOps<Flex>>::conv2d_weight_backward(
                x.clone(),
                w.clone(),
                g.clone(),
                options.clone(),
            )
        });
        let burn_y = time(runs, || {
            <Flex as ModuleOps<Flex>>::conv2d(x.clone(), w.clone(), None, options.clone())
        });
        let ours_y = time(runs, || {
            Flex::conv2d_value(x.clone(), w.clone(), None, options.clone())
        });
        let ours_x = time(runs, || {
            Flex::conv2d_input_grad(x.clone(), w.clone(), g.clone(), options.clone())
        });
        let ours_w = time(runs, || {
            Flex::conv2d_weight_grad(x.clone(), w.clone(), g.clone(), options.clone())
        });
        let ms = |t: f64| format!("{:.2} ms", t * 1e3);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            ms(burn_y),
            ms(ours_y),
            ms(burn_x),
            ms(ours_x),
            ms(burn_w),
            ms(ours_w)
        );
    }
}
