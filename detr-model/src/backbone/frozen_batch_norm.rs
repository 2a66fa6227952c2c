//! FrozenBatchNorm2d: batch normalisation with fixed statistics and affine parameters.
//!
//! All four tensors are constants (never optimised, never updated):
//! `y = x * scale + shift` with `scale = weight * rsqrt(running_var + 1e-5)` and
//! `shift = bias - running_mean * scale`, as in the original.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};

/// The epsilon the original adds to the running variance.
pub const FROZEN_BN_EPS: f64 = 1e-5;

/// Batch normalisation whose statistics and affine parameters are constants.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d<B: Backend> {
    /// Scale (`gamma`), `[C]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift (`beta`), `[C]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean, `[C]`.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance, `[C]`.
    pub running_var: Param<Tensor<B, 1>>,
}

fn constant<B: Backend>(t: Tensor<B, 1>) -> Param<Tensor<B, 1>> {
    Param::from_tensor(t).set_require_grad(false)
}

impl<B: Backend> FrozenBatchNorm2d<B> {
    /// The identity normalisation (weight 1, bias 0, mean 0, var 1) over `channels`.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: constant(Tensor::ones([channels], device)),
            bias: constant(Tensor::zeros([channels], device)),
            running_mean: constant(Tensor::zeros([channels], device)),
            running_var: constant(Tensor::ones([channels], device)),
        }
    }

    /// Applies the normalisation to `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = self.weight.dims()[0];
        let scale = self.weight.val()
            * self
                .running_var
                .val()
                .add_scalar(FROZEN_BN_EPS)
                .sqrt()
                .recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}
