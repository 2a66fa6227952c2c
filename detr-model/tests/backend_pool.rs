//! The backend extension's max pooling (`DetrBackend::max_pool2d_value`, flex's own kernel at
//! inference) against Burn's `max_pool2d` on flex: the ResNet stem's 3×3 stride-2 padding-1
//! window on even and odd sizes, and other windows and strides. A maximum is exact: the values
//! must be equal, not close. The indexed pooling of training (a stem that learns) gives Burn's
//! indices too, and Burn's gradient under autodiff.

use burn::backend::{Autodiff, Flex};
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::PaddingConfig2d;
use burn::tensor::module::{max_pool2d, max_pool2d_with_indices};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use detr_model::backend::cpu_pool::pooled_len;
use detr_model::backend::max_pool_forward;
use detr_model::DetrBackend;

mod common;

/// Values in [-1, 1) from the tests' fixed sequence, every seventh 0.5 so that ties occur.
fn fixed(shape: [usize; 4], salt: u64) -> Tensor<Flex, 4> {
    let mut values = common::fixed_values(shape.iter().product(), salt);
    for v in values.iter_mut().skip(3).step_by(7) {
        *v = 0.5;
    }
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn ours(x: Tensor<Flex, 4>, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2]) -> Vec<f32> {
    let y = Flex::max_pool2d_value(x.into_primitive().tensor(), kernel, stride, pad);
    Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(y))
        .into_data()
        .to_vec()
        .unwrap()
}

fn burns(x: Tensor<Flex, 4>, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2]) -> Vec<f32> {
    max_pool2d(x, kernel, stride, pad, [1, 1], false)
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn flex_max_pooling_equals_burns() {
    for (i, &(shape, k, s, p)) in CASES.iter().enumerate() {
        let x = fixed(shape, i as u64);
        let (kernel, stride, pad) = ([k, k], [s, s], [p, p]);
        assert_eq!(
            ours(x.clone(), kernel, stride, pad),
            burns(x, kernel, stride, pad),
            "case {shape:?} kernel {k} stride {s} padding {p}"
        );
    }
    // A transposed (non-contiguous) input is copied first.
    let x = fixed([1, 3, 10, 12], 9).swap_dims(2, 3);
    assert_eq!(
        ours(x.clone(), [3, 3], [2, 2], [1, 1]),
        burns(x, [3, 3], [2, 2], [1, 1])
    );
}

/// The cases of the comparisons: (shape, kernel, stride, padding).
const CASES: &[([usize; 4], usize, usize, usize)] = &[
    ([2, 3, 16, 16], 3, 2, 1),  // the stem, even size
    ([1, 4, 17, 15], 3, 2, 1),  // odd sizes
    ([1, 64, 40, 53], 3, 2, 1), // several planes per task
    ([2, 2, 9, 8], 2, 2, 0),    // no padding
    ([1, 3, 7, 6], 3, 1, 1),    // stride 1
    ([1, 2, 5, 5], 5, 3, 2),    // wide window
    ([1, 1, 3, 3], 3, 2, 1),    // tiny image
];

#[test]
fn flex_indexed_pooling_equals_burns_values_and_indices() {
    // Every seventh input is 0.5, so windows with tied maxima occur: the index must be the one
    // Burn's backward pass expects (the first in the window's row-major order).
    for (i, &(shape, k, s, p)) in CASES.iter().enumerate() {
        let x = fixed(shape, i as u64 + 20);
        let (kernel, stride, pad) = ([k, k], [s, s], [p, p]);
        let ours =
            Flex::max_pool2d_indexed(x.clone().into_primitive().tensor(), kernel, stride, pad);
        let burns = max_pool2d_with_indices(x, kernel, stride, pad, [1, 1], false);
        let case = format!("case {shape:?} kernel {k} stride {s} padding {p}");
        let values = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(ours.output));
        assert_eq!(values.into_data(), burns.0.into_data(), "{case}");
        let indices = Tensor::<Flex, 4, Int>::from_primitive(ours.indices);
        assert_eq!(indices.into_data(), burns.1.into_data(), "{case}");
    }
}

#[test]
fn the_stem_pooling_module_takes_the_same_path_everywhere() {
    let pool = MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init();
    let x = fixed([2, 4, 13, 18], 11);
    let plain = max_pool_forward(&pool, x.clone()).into_data();
    assert_eq!(plain.shape.as_slice(), &[2, 4, 7, 9]);
    assert_eq!(plain, pool.forward(x.clone()).into_data());
    // Under autodiff, an input no gradient flows to (a frozen stem): the same values.
    let xa = Tensor::<Autodiff<Flex>, 4>::from_data(x.clone().into_data(), &Default::default());
    assert_eq!(max_pool_forward(&pool, xa).into_data(), plain);
    // A tracked input: our node over the indexed pooling, the same values and Burn's gradient.
    let device = Default::default();
    let ours =
        Tensor::<Autodiff<Flex>, 4>::from_data(x.clone().into_data(), &device).require_grad();
    let burns = Tensor::<Autodiff<Flex>, 4>::from_data(x.into_data(), &device).require_grad();
    let weights = fixed([2, 4, 7, 9], 12).into_data();
    let loss =
        |y: Tensor<Autodiff<Flex>, 4>| (y * Tensor::from_data(weights.clone(), &device)).sum();
    let y_ours = max_pool_forward(&pool, ours.clone());
    assert_eq!(y_ours.clone().into_data(), plain);
    let g_ours = ours.grad(&loss(y_ours).backward()).unwrap();
    let g_burns = burns
        .grad(&loss(pool.forward(burns.clone())).backward())
        .unwrap();
    assert_eq!(g_ours.into_data(), g_burns.into_data());
}

#[test]
fn pooled_sizes_follow_pytorchs_floor_rule() {
    assert_eq!(pooled_len(400, 3, 2, 1), Some(200));
    assert_eq!(pooled_len(533, 3, 2, 1), Some(267));
    assert_eq!(pooled_len(1, 3, 2, 1), Some(1));
    assert_eq!(pooled_len(5, 3, 2, 3), None); // padding as large as the window
    assert_eq!(pooled_len(1, 5, 1, 1), None); // the window does not fit
}
