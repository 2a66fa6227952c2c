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
//! The kernels work on slices; [`super::flex`] runs them on burn-flex's tensors without copies.
//! [`burn_epilogue`] is the same function in Burn's operations, for every other backend.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::{residual_relu, DetrBackend};

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

/// `relu(y + bias + residual)` with Burn's operations: the bias reshaped to `[1, C, 1, 1]`,
/// then [`residual_relu`].
pub fn burn_epilogue<B: DetrBackend>(
    y: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
) -> FloatTensor<B> {
    let mut y = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y));
    if let Some(bias) = bias {
        let bias = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(bias));
        let c = bias.dims()[0];
        y = y + bias.reshape([1, c, 1, 1]);
    }
    let residual = residual.map(|r| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(r)));
    residual_relu(y, residual, relu).into_primitive().tensor()
}
