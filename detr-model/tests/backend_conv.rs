//! The backend extension's convolution (`detr_model::backend`) against Burn's own, for values
//! and gradients, at the shapes DETR's ResNets use: 1×1 (stride 1 and 2), 3×3 (stride 1 and 2,
//! dilation 2 as in DC5) and the 7×7 stride-2 stem (whose value the CPU backends compute
//! themselves: at most four input channels), with and without bias, on flex and ndarray
//! under autodiff. Tolerance: 1e-5 relative to the largest magnitude (both sides are float32
//! sums of up to a few thousand products, in different orders).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use detr_model::backend::{conv2d, cpu_conv};
use detr_model::DetrAutodiffBackend;

const TOLERANCE: f32 = 1e-5;

/// `(batch, in, out, size, kernel, stride, padding, dilation)`.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (2, 8, 12, 9, 1, 1, 0, 1), // bottleneck 1×1
    (2, 8, 12, 9, 1, 2, 0, 1), // downsample 1×1, stride 2
    (2, 6, 5, 10, 3, 1, 1, 1), // 3×3
    (3, 6, 5, 11, 3, 2, 1, 1), // 3×3 stride 2, odd size
    (2, 3, 4, 17, 7, 2, 3, 1), // the stem
    (2, 5, 4, 9, 3, 1, 2, 2),  // DC5: dilation 2
    (1, 4, 3, 5, 3, 1, 1, 1),  // one image
];

fn values<B: burn::tensor::backend::Backend>(t: Tensor<B, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Output, input gradient, weight gradient and bias gradient of one convolution, through the
/// extension (`ours`) or Burn's `conv2d`.
fn run<B: DetrAutodiffBackend>(case: Case, with_bias: bool, ours: bool) -> [Vec<f32>; 4] {
    let (n, c, o, size, k, stride, pad, dil) = case;
    let device = Default::default();
    B::seed(&device, 7);
    let x = Tensor::<B, 4>::random([n, c, size, size], Distribution::Normal(0., 1.), &device)
        .require_grad();
    let w =
        Tensor::<B, 4>::random([o, c, k, k], Distribution::Normal(0., 0.3), &device).require_grad();
    let bias = Tensor::<B, 1>::random([o], Distribution::Normal(0., 1.), &device).require_grad();
    let options = ConvOptions::new([stride; 2], [pad; 2], [dil; 2], 1);
    let b = with_bias.then(|| bias.clone());
    let y = if ours {
        conv2d(x.clone(), w.clone(), b, options)
    } else {
        burn_conv2d(x.clone(), w.clone(), b, options)
    };
    // A random linear function of the output, so every position's gradient differs.
    let r = Tensor::<B, 4>::random(y.dims(), Distribution::Normal(0., 1.), &device);
    let grads = (y.clone() * r).sum().backward();
    let gx = x.grad(&grads).unwrap();
    let gw = w.grad(&grads).unwrap();
    let gb = if with_bias {
        bias.grad(&grads).unwrap().into_data().to_vec().unwrap()
    } else {
        Vec::new()
    };
    [values(y.inner()), values(gx), values(gw), gb]
}

fn check<B: DetrAutodiffBackend>(backend: &str) {
    for &case in CASES {
        for with_bias in [false, true] {
            let ours = run::<B>(case, with_bias, true);
            let burn = run::<B>(case, with_bias, false);
            for (what, (a, b)) in [
                "output",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ]
            .iter()
            .zip(ours.iter().zip(burn.iter()))
            {
                let err = if a.is_empty() { 0.0 } else { rel_err(a, b) };
                assert!(
                    err <= TOLERANCE,
                    "{backend}, case {case:?}, bias {with_bias}: {what} differs by {err:e}"
                );
            }
        }
    }
}

#[test]
fn flex_convolution_matches_burns_values_and_gradients() {
    check::<Autodiff<Flex>>("flex");
}

#[test]
fn ndarray_convolution_matches_burns_values_and_gradients() {
    check::<Autodiff<NdArray>>("ndarray");
}

/// The kernel alone on a case computed by hand: a 1-channel 3×3 input, 2×2 kernel, stride 1,
/// no padding, one output channel whose gradient is all ones: each weight's gradient is the sum
/// of the input values it touches.
#[test]
fn weight_gradient_by_hand() {
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let g = vec![1f32; 4];
    let geo = cpu_conv::Geometry {
        batch: 1,
        in_channels: 1,
        in_size: [3, 3],
        out_channels: 1,
        out_size: [2, 2],
        kernel: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
    };
    // w00 touches 1,2,4,5; w01 2,3,5,6; w10 4,5,7,8; w11 5,6,8,9.
    assert_eq!(
        cpu_conv::weight_grad_f32(&x, &g, &geo),
        vec![12., 16., 24., 28.]
    );
}
