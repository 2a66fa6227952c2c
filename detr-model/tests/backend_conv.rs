//! The backend extension's convolution (`detr_model::backend`) against Burn's own, for values
//! and gradients, at the shapes DETR's ResNets use: 1×1 (stride 1 and 2), 3×3 (stride 1 and 2,
//! dilation 2 as in DC5) and the 7×7 stride-2 stem (whose value the CPU backends compute
//! themselves: at most four input channels), with and without bias, on flex and ndarray
//! under autodiff; alone and fused with what follows it in a ResNet block (the residual sum
//! and the ReLU, `conv2d_fused`) against Burn's convolution, `+` and `relu`. Tolerance: 1e-5
//! relative to the largest magnitude (both sides are float32 sums of up to a few thousand
//! products, in different orders).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, TensorData};
use detr_model::backend::{conv2d, conv2d_fused, cpu_conv, cpu_weight_grad};
use detr_model::DetrAutodiffBackend;

mod common;

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
    (2, 4, 6, 40, 3, 1, 1, 1), // planes of 1600 values: the epilogue in several tasks
];

/// Images large enough for the input gradient's other path on flex (one image at a time, the
/// GEMM on all cores), 3×3 and pointwise: checked on flex with bias, residual and ReLU only.
const LARGE_CASES: &[Case] = &[(2, 32, 32, 64, 3, 1, 1, 1), (1, 64, 64, 72, 1, 1, 0, 1)];

/// What follows the convolution: `(residual, relu)`.
const EPILOGUES: &[(bool, bool)] = &[(false, false), (false, true), (true, false), (true, true)];

fn values<B: burn::tensor::backend::Backend>(t: Tensor<B, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Output, input gradient, weight gradient, bias gradient and residual gradient of one
/// convolution followed by `epilogue`, through the extension (`ours`) or Burn's `conv2d`, `+`
/// and `relu`.
fn run<B: DetrAutodiffBackend>(
    case: Case,
    with_bias: bool,
    epilogue: (bool, bool),
    ours: bool,
) -> [Vec<f32>; 5] {
    let (n, c, o, size, k, stride, pad, dil) = case;
    let (with_residual, with_relu) = epilogue;
    let device = Default::default();
    B::seed(&device, 7);
    let x = Tensor::<B, 4>::random([n, c, size, size], Distribution::Normal(0., 1.), &device)
        .require_grad();
    let w =
        Tensor::<B, 4>::random([o, c, k, k], Distribution::Normal(0., 0.3), &device).require_grad();
    let bias = Tensor::<B, 1>::random([o], Distribution::Normal(0., 1.), &device).require_grad();
    let options = ConvOptions::new([stride; 2], [pad; 2], [dil; 2], 1);
    let out = (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    let residual = Tensor::<B, 4>::random([n, o, out, out], Distribution::Normal(0., 1.), &device)
        .require_grad();
    let b = with_bias.then(|| bias.clone());
    let r = with_residual.then(|| residual.clone());
    let y = if ours {
        if epilogue == (false, false) {
            conv2d(x.clone(), w.clone(), b, options)
        } else {
            conv2d_fused(x.clone(), w.clone(), b, r, with_relu, options)
        }
    } else {
        let y = burn_conv2d(x.clone(), w.clone(), b, options);
        let y = match r {
            Some(r) => y + r,
            None => y,
        };
        if with_relu {
            relu(y)
        } else {
            y
        }
    };
    // A random linear function of the output, so every position's gradient differs.
    let m = Tensor::<B, 4>::random(y.dims(), Distribution::Normal(0., 1.), &device);
    let grads = (y.clone() * m).sum().backward();
    let gx = x.grad(&grads).unwrap();
    let gw = w.grad(&grads).unwrap();
    let gb = if with_bias {
        bias.grad(&grads).unwrap().into_data().to_vec().unwrap()
    } else {
        Vec::new()
    };
    let gr = if with_residual {
        values(residual.grad(&grads).unwrap())
    } else {
        Vec::new()
    };
    [values(y.inner()), values(gx), values(gw), gb, gr]
}

fn check<B: DetrAutodiffBackend>(
    backend: &str,
    cases: &[Case],
    biases: &[bool],
    epilogues: &[(bool, bool)],
) {
    for &case in cases {
        for &with_bias in biases {
            for &epilogue in epilogues {
                let ours = run::<B>(case, with_bias, epilogue, true);
                let burn = run::<B>(case, with_bias, epilogue, false);
                for (what, (a, b)) in [
                    "output",
                    "input gradient",
                    "weight gradient",
                    "bias gradient",
                    "residual gradient",
                ]
                .iter()
                .zip(ours.iter().zip(burn.iter()))
                {
                    assert_eq!(a.len(), b.len(), "{backend}, {case:?}: {what} sizes");
                    let err = if a.is_empty() { 0.0 } else { rel_err(a, b) };
                    assert!(
                        err <= TOLERANCE,
                        "{backend}, case {case:?}, bias {with_bias}, (residual, relu) \
                         {epilogue:?}: {what} differs by {err:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn flex_convolution_matches_burns_values_and_gradients() {
    check::<Autodiff<Flex>>("flex", CASES, &[false, true], EPILOGUES);
    check::<Autodiff<Flex>>("flex", LARGE_CASES, &[true], &[(true, true)]);
}

#[test]
fn ndarray_convolution_matches_burns_values_and_gradients() {
    check::<Autodiff<NdArray>>("ndarray", CASES, &[false, true], EPILOGUES);
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
        cpu_weight_grad::weight_grad_f32(&x, &g, &geo),
        vec![12., 16., 24., 28.]
    );
}

/// Values in [-1, 1) from a fixed sequence (not the backend's generator: flex's is global, and
/// the autodiff tests above seed and draw from it on other threads).
fn fixed<const D: usize>(shape: [usize; D], salt: u64) -> Tensor<Flex, D> {
    let values = common::fixed_values(shape.iter().product(), salt);
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// The fused epilogue on flex without autodiff, with a residual that is a transposed view (not
/// contiguous: copied before the pass) and one shared with the caller (read, not written).
#[test]
fn flex_epilogue_takes_strided_and_shared_residuals() {
    let x = fixed([2, 3, 12, 12], 1);
    let w = fixed([5, 3, 3, 3], 2);
    let b = fixed([5], 3);
    let base = fixed([2, 5, 12, 12], 4);
    let options = ConvOptions::new([1; 2], [1; 2], [1; 2], 1);
    for residual in [base.clone().swap_dims(2, 3), base.clone()] {
        let before = values(residual.clone());
        let ours = conv2d_fused(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            Some(residual.clone()),
            true,
            options.clone(),
        );
        let burn = relu(
            burn_conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone()) + residual.clone(),
        );
        let err = rel_err(&values(ours), &values(burn));
        assert!(err <= TOLERANCE, "fused epilogue differs by {err:e}");
        assert_eq!(values(residual), before, "the residual was written to");
    }
}

/// The epilogue's kernel on values computed by hand: two images of two 2-value channel planes.
#[test]
fn epilogue_by_hand() {
    use detr_model::backend::cpu_epilogue::{epilogue_f32, relu_grad_f32};
    let mut y = vec![1., -2., 3., -4., 0.5, 0.5, -0.5, -0.5];
    let bias = [1., -1.];
    let residual = [0., 0., 0., 10., -2., 0., 0., 0.];
    epilogue_f32(&mut y, Some(&bias), Some(&residual), true, 2, 2);
    assert_eq!(y, vec![2., 0., 2., 5., 0., 1.5, 0., 0.]);
    let mut g = vec![1., 2., 3., 4., 5., 6., 7., 8.];
    relu_grad_f32(&y, &mut g);
    assert_eq!(g, vec![1., 0., 3., 4., 0., 6., 0., 0.]);
}

/// The CPU kernels alone (`cpu_conv::conv_f32`, `cpu_weight_grad::weight_grad_f32`,
/// `cpu_input_grad::input_grad_f32`) against flex's `conv2d` (with bias),
/// `conv2d_weight_backward` and `conv2d_x_backward`, on images large enough to
/// be taken in several blocks of output rows with a shorter last block (the stem, 3×3 with
/// stride 1 and 2, dilation 2, 1×1), an odd batch, and rayon pools of 1, 2 and 4 threads (so
/// the work splits into one, two or four channel groups per image whatever the machine).
#[test]
fn blocked_kernels_match_burns_on_any_thread_count() {
    use burn::tensor::ops::ModuleOps;
    use detr_model::backend::cpu_input_grad;
    const BLOCKED: &[Case] = &[
        (3, 3, 4, 70, 7, 2, 3, 1),  // the stem: 35 output rows in blocks of 12
        (3, 16, 5, 40, 3, 1, 1, 1), // 40 rows in blocks of 11
        (3, 16, 6, 61, 3, 2, 1, 1), // stride 2: 31 rows in blocks of 14
        (3, 8, 5, 48, 3, 1, 2, 2),  // dilation 2: 48 rows in blocks of 18
        (3, 64, 4, 40, 1, 1, 0, 1), // pointwise: 40 rows in blocks of 25
    ];
    for &(n, c, o, size, k, stride, pad, dil) in BLOCKED {
        let options = ConvOptions::new([stride; 2], [pad; 2], [dil; 2], 1);
        let out = (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
        let x = fixed([n, c, size, size], 11);
        let w = fixed([o, c, k, k], 12);
        let g = fixed([n, o, out, out], 13);
        let bias = fixed([o], 14);
        let prim = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
        let as_values = |t| {
            values(Tensor::<Flex, 4>::from_primitive(
                burn::tensor::TensorPrimitive::Float(t),
            ))
        };
        let burn_dw = as_values(Flex::conv2d_weight_backward(
            prim(&x),
            prim(&w),
            prim(&g),
            options.clone(),
        ));
        let burn_y = values(burn_conv2d(
            x.clone(),
            w.clone(),
            Some(bias.clone()),
            options.clone(),
        ));
        let burn_dx = as_values(Flex::conv2d_x_backward(
            prim(&x),
            prim(&w),
            prim(&g),
            options.clone(),
        ));
        let geo = cpu_conv::Geometry::new([n, c, size, size], [o, k, k], [out, out], &options);
        let (xs, ws, gs) = (values(x.clone()), values(w.clone()), values(g.clone()));
        let bs: Vec<f32> = bias.into_data().to_vec().unwrap();
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (y, dw, dx) = pool.install(|| {
                (
                    cpu_conv::conv_f32(&xs, &ws, Some(&bs), &geo),
                    cpu_weight_grad::weight_grad_f32(&xs, &gs, &geo),
                    cpu_input_grad::input_grad_f32(&gs, &ws, &geo),
                )
            });
            let case = (n, c, o, size, k, stride, pad, dil);
            for (what, ours, burn) in [
                ("output", &y, &burn_y),
                ("weight gradient", &dw, &burn_dw),
                ("input gradient", &dx, &burn_dx),
            ] {
                let err = rel_err(ours, burn);
                assert!(
                    err <= TOLERANCE,
                    "{case:?} on {threads} threads: {what} differs by {err:e}"
                );
            }
        }
    }
}
