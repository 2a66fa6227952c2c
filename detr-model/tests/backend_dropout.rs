//! Dropout through the backend extension (`detr_model::backend::dropout`): what Burn's
//! `Dropout` does (identity without autodiff or at probability 0; otherwise each element kept
//! with probability `1 - p` and scaled by `1 / (1 - p)`, the gradient masked the same way),
//! with flex's own mask (`cpu_dropout`) and with Burn's Bernoulli mask (ndarray, the trait's
//! default), reproducible from the backend's seed.

use std::sync::Mutex;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::nn::DropoutConfig;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use detr_model::backend::dropout;
use detr_model::DetrBackend;

mod common;

/// `dropout(x)` at probability `p` and the gradient of its sum with respect to `x`, on
/// `Autodiff<B>` seeded with `seed`, for `x` from the tests' fixed sequence.
/// The backends' generators are global: the tests that seed one take turns.
fn run<B: DetrBackend>(p: f64, seed: u64, shape: [usize; 3]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    static SEEDING: Mutex<()> = Mutex::new(());
    let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    Autodiff::<B>::seed(&device, seed);
    let values = common::fixed_values(shape.iter().product(), 3);
    let x = Tensor::<Autodiff<B>, 1>::from_floats(values.as_slice(), &device)
        .reshape(shape)
        .require_grad();
    let y = dropout(&DropoutConfig::new(p).init(), x.clone());
    let grads = y.clone().sum().backward();
    let gx = x.grad(&grads).expect("x has a gradient");
    (values, vec_of(y.inner()), vec_of(gx))
}

fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

/// Every output is 0 or `x / (1 - p)` (relative 1e-6), the gradient is the mask (0 or
/// `1 / (1 - p)`), both agree element by element, and the share kept is `1 - p` within five
/// binomial standard deviations.
fn check_dropout(p: f64, x: &[f32], y: &[f32], gx: &[f32]) {
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mut kept = 0usize;
    for ((&x, &y), &g) in x.iter().zip(y).zip(gx) {
        if g == 0.0 {
            assert_eq!(y, 0.0, "a dropped element is 0");
        } else {
            assert!(
                (g - scale).abs() <= 1e-6 * scale,
                "gradient {g}, scale {scale}"
            );
            assert!((y - x * scale).abs() <= 1e-6 * (x * scale).abs().max(1e-6));
            kept += 1;
        }
    }
    let n = x.len() as f64;
    let share = kept as f64 / n;
    let sd = (keep * p / n).sqrt();
    assert!(
        (share - keep).abs() < 5.0 * sd,
        "kept {share}, expected {keep} ± {sd}"
    );
}

#[test]
fn flex_masks_like_burns_dropout_and_follows_the_seed() {
    let shape = [5, 30, 512];
    for p in [0.1, 0.5] {
        let (x, y, gx) = run::<Flex>(p, 11, shape);
        check_dropout(p, &x, &y, &gx);
        // The backend's seed decides the mask.
        assert!(
            run::<Flex>(p, 11, shape).1 == y,
            "the same seed, another mask"
        );
        assert!(
            run::<Flex>(p, 12, shape).1 != y,
            "another seed, the same mask"
        );
    }
}

#[test]
fn the_default_mask_is_burns_bernoulli() {
    let (x, y, gx) = run::<NdArray>(0.1, 5, [2, 30, 128]);
    check_dropout(0.1, &x, &y, &gx);
}

#[test]
fn identity_without_autodiff_or_at_probability_zero() {
    let device = Default::default();
    let x = Tensor::<Flex, 3>::from_floats([[[1.0, -2.0, 3.0]]], &device);
    let y = dropout(&DropoutConfig::new(0.5).init(), x.clone());
    assert_eq!(vec_of(y), vec_of(x));
    let (x, y, gx) = run::<Flex>(0.0, 1, [1, 4, 8]);
    assert_eq!(x, y);
    assert!(gx.iter().all(|&g| g == 1.0));
}
