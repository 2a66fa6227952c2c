//! DETR's AdamW (`detr_train::adamw::DetrAdamW`, one backend operation per parameter) against
//! burn-optim's `AdamW` (the reference: PyTorch's arithmetic, composed from Burn's operations):
//! three updates of the same parameters with the same gradients land on the same parameters
//! and moments, on flex (its one-pass kernel, for a tensor of several rayon chunks and a small
//! one) and on ndarray (the composed default). Tolerance: 1e-6 relative to the largest
//! magnitude (both are float32; the kernel and Burn round the same operations, though not
//! necessarily in one order). And the optimiser's record is burn-optim's: a state saved by
//! `AdamW` loads into `DetrAdamW`.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::nn::{Linear, LinearConfig};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use detr_model::DetrBackend;
use detr_train::adamw::DetrAdamW;

const TOLERANCE: f32 = 1e-6;

const OURS: DetrAdamW = DetrAdamW {
    beta_1: 0.9,
    beta_2: 0.999,
    epsilon: 1e-8,
    weight_decay: 1e-4,
};

fn burns() -> burn::optim::AdamW {
    AdamWConfig::new()
        .with_beta_1(OURS.beta_1)
        .with_beta_2(OURS.beta_2)
        .with_epsilon(OURS.epsilon)
        .with_weight_decay(OURS.weight_decay)
        .build()
}

/// Values in [-1, 1) from a fixed sequence.
fn fixed<B: Backend>(shape: [usize; 2], salt: u64) -> Tensor<B, 2> {
    let n = shape[0] * shape[1];
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn three_updates<B: DetrBackend>(backend: &str, shape: [usize; 2]) {
    let mut ours = (fixed::<B>(shape, 1), None);
    let mut theirs = (fixed::<B>(shape, 1), None);
    for (t, lr) in [1e-3, 5e-4, 1e-4].into_iter().enumerate() {
        // Gradients of very different sizes per step, the second step's much smaller.
        let grad = fixed::<B>(shape, 10 + t as u64).mul_scalar([1.0, 1e-3, 3.0][t]);
        let (p, s) = OURS.step(lr, ours.0, grad.clone(), ours.1);
        ours = (p, s);
        let (p, s) = burns().step(lr, theirs.0, grad, theirs.1);
        theirs = (p, s);
        let (a, b) = (ours.1.as_ref().unwrap(), theirs.1.as_ref().unwrap());
        assert_eq!(a.momentum.time, b.momentum.time);
        for (what, x, y) in [
            ("parameter", ours.0.clone(), theirs.0.clone()),
            (
                "first moment",
                a.momentum.moment_1.clone(),
                b.momentum.moment_1.clone(),
            ),
            (
                "second moment",
                a.momentum.moment_2.clone(),
                b.momentum.moment_2.clone(),
            ),
        ] {
            let err = rel_err(&values(x), &values(y));
            assert!(
                err <= TOLERANCE,
                "{backend} {shape:?}, update {}: {what} differs by {err:e}",
                t + 1
            );
        }
    }
}

#[test]
fn flex_updates_match_burns_adamw() {
    // 70 000 values: three chunks of the kernel's rayon split and a remainder.
    three_updates::<Flex>("flex", [350, 200]);
    three_updates::<Flex>("flex", [3, 7]);
}

#[test]
fn ndarray_updates_match_burns_adamw() {
    three_updates::<NdArray>("ndarray", [35, 20]);
}

/// A state written by burn-optim's `AdamW` adaptor (what checkpoints held before) loads into
/// `DetrAdamW`'s, which then steps on from it exactly as `AdamW` does.
#[test]
fn burns_adamw_record_loads_into_detr_adamw() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let model: Linear<B> = LinearConfig::new(4, 3).init(&device);
    let grads_of = |model: &Linear<B>| {
        let x = Tensor::<B, 2>::ones([2, 4], &device);
        let loss = model.forward(x).powf_scalar(2.0).sum();
        GradientsParams::from_grads(loss.backward(), model)
    };
    let mut burn_optim = OptimizerAdaptor::<_, Linear<B>, B>::from(burns());
    let stepped = burn_optim.step(1e-2, model.clone(), grads_of(&model));
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(burn_optim.to_record(), ()).unwrap();
    let mut ours = OptimizerAdaptor::<_, Linear<B>, B>::from(OURS);
    ours = ours.load_record(recorder.load(bytes, &device).unwrap());
    let next_ours = ours.step(1e-2, stepped.clone(), grads_of(&stepped));
    let next_burn = burn_optim.step(1e-2, stepped.clone(), grads_of(&stepped));
    let (a, b) = (
        values(next_ours.weight.val().inner()),
        values(next_burn.weight.val().inner()),
    );
    let err = rel_err(&a, &b);
    assert!(err <= TOLERANCE, "second update differs by {err:e}");
    // A fresh DetrAdamW (time 1 again) would not land there.
    let fresh = OptimizerAdaptor::<_, Linear<B>, B>::from(OURS).step(
        1e-2,
        stepped.clone(),
        grads_of(&stepped),
    );
    assert!(rel_err(&values(fresh.weight.val().inner()), &b) > 10.0 * TOLERANCE);
}
