//! What follows a convolution in a ResNet block (the bias, the residual sum and the ReLU), as
//! one pass over the convolution's output on all cores, and the ReLU's gradient the same way.
//!
//! Burn's formulation is one operation each: burn-flex adds a convolution's bias in a
//! single-threaded loop over the output, then the residual sum and the ReLU are two more
//! element-wise operations, each a pass over memory on one thread (flex parallelises
//! element-wise operations only above 4 Mi values), and the ReLU's gradient is another in the
//! backward pass. Here the bias, residual and ReLU are applied in place on the convolution's
//! fresh output, one rayon task per group of channel planes.
//!
//! Works directly on burn-flex's tensors (float32, contiguous): no copy of the output, the
//! residual or the gradient mask. Any other dtype or layout falls back to Burn's operations.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::{ActivationOps, FloatTensor};
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

use super::DetrBackend;

/// Values handed to one rayon task at least: small feature maps are not split into one task
/// per plane.
const VALUES_PER_TASK: usize = 16 * 1024;

/// `y ← relu(y + bias + residual)` over `y [N, C, plane]` (row-major), each of `bias` `[C]`,
/// `residual` (shaped as `y`) and the ReLU optional.
pub fn epilogue_f32(
    y: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    relu: bool,
    channels: usize,
    plane: usize,
) {
    if y.is_empty() || plane == 0 {
        return;
    }
    let planes_per_task = (VALUES_PER_TASK / plane).max(1);
    y.par_chunks_mut(plane)
        .with_min_len(planes_per_task)
        .enumerate()
        .for_each(|(index, out)| {
            let shift = bias.map_or(0.0, |b| b[index % channels]);
            let res = residual.map(|r| &r[index * plane..(index + 1) * plane]);
            plane_epilogue(out, shift, res, relu);
        });
}

/// One channel plane of [`epilogue_f32`]: a separate loop per case, so that each vectorises.
fn plane_epilogue(out: &mut [f32], shift: f32, residual: Option<&[f32]>, relu: bool) {
    match (residual, relu) {
        (Some(r), true) => {
            for (v, r) in out.iter_mut().zip(r) {
                *v = (*v + shift + r).max(0.0);
            }
        }
        (Some(r), false) => {
            for (v, r) in out.iter_mut().zip(r) {
                *v = *v + shift + r;
            }
        }
        (None, true) => {
            for v in out.iter_mut() {
                *v = (*v + shift).max(0.0);
            }
        }
        (None, false) => {
            if shift != 0.0 {
                for v in out.iter_mut() {
                    *v += shift;
                }
            }
        }
    }
}

/// `grad ← grad` where `output > 0`, 0 elsewhere (both row-major, same length).
pub fn relu_grad_f32(output: &[f32], grad: &mut [f32]) {
    grad.par_chunks_mut(VALUES_PER_TASK)
        .zip(output.par_chunks(VALUES_PER_TASK))
        .for_each(|(g, o)| {
            for (g, &o) in g.iter_mut().zip(o) {
                if o <= 0.0 {
                    *g = 0.0;
                }
            }
        });
}

/// Whether `t` is float32, contiguous from the start of a buffer of exactly its size.
fn is_plain_f32(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32
        && t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * core::mem::size_of::<f32>()
}

/// The dims of a 4-D flex tensor.
fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let shape: &Shape = t.layout().shape();
    match shape.as_slice() {
        &[n, c, h, w] => Some([n, c, h, w]),
        _ => None,
    }
}

/// `relu(y + bias + residual)` on flex (each part optional; bias `[C]` broadcast over `y`
/// `[N, C, H, W]`, residual shaped as `y`): in place on `y` when it is not shared.
pub fn flex_epilogue(
    y: FlexTensor,
    bias: Option<FlexTensor>,
    residual: Option<FlexTensor>,
    relu: bool,
) -> FlexTensor {
    let Some([n, c, h, w]) = dims4(&y) else {
        return burn_epilogue::<Flex>(y, bias, residual, relu);
    };
    let bias_fits = bias
        .as_ref()
        .is_none_or(|b| b.dtype() == DType::F32 && b.layout().shape().as_slice() == [c]);
    let residual_fits = residual
        .as_ref()
        .is_none_or(|r| r.dtype() == DType::F32 && dims4(r) == Some([n, c, h, w]));
    if y.dtype() != DType::F32 || !bias_fits || !residual_fits {
        return burn_epilogue::<Flex>(y, bias, residual, relu);
    }
    let mut y = if is_plain_f32(&y) {
        y
    } else {
        y.to_contiguous()
    };
    let bias = bias.map(|b| plain(&b));
    let residual = residual.map(|r| plain(&r));
    let bias_values = bias.as_ref().map(|b| b.storage::<f32>());
    let residual_values = residual.as_ref().map(|r| r.storage::<f32>());
    // Copy-on-write: a shared output (never the case for a fresh convolution) is copied first.
    let values = y.storage_mut::<f32>();
    epilogue_f32(values, bias_values, residual_values, relu, c, h * w);
    y
}

/// `t` contiguous from the start of an exactly sized buffer (shared, not copied, when it is).
fn plain(t: &FlexTensor) -> FlexTensor {
    if is_plain_f32(t) {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The gradient through a ReLU on flex: `grad` where `output > 0`, in place when `grad` is
/// not shared.
pub fn flex_relu_grad(output: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let same_shape = output.layout().shape() == grad.layout().shape();
    if output.dtype() != DType::F32 || grad.dtype() != DType::F32 || !same_shape {
        return Flex::relu_backward(output, grad);
    }
    let output = plain(&output);
    let mut grad = if is_plain_f32(&grad) {
        grad
    } else {
        grad.to_contiguous()
    };
    let values = grad.storage_mut::<f32>();
    relu_grad_f32(output.storage::<f32>(), values);
    grad
}

/// `relu(y + bias + residual)` with Burn's operations (the bias reshaped to `[1, C, 1, 1]`).
pub fn burn_epilogue<B: DetrBackend>(
    y: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
) -> FloatTensor<B> {
    let mut y = y;
    if let Some(bias) = bias {
        use burn::tensor::TensorMetadata;
        let c = bias.shape().num_elements();
        y = B::float_add(y, B::float_reshape(bias, Shape::new([1, c, 1, 1])));
    }
    if let Some(residual) = residual {
        y = B::float_add(y, residual);
    }
    if relu {
        y = B::relu(y);
    }
    y
}
