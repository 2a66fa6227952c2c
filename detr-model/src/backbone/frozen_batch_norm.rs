//! FrozenBatchNorm2d: batch normalisation with fixed statistics and affine parameters.
//!
//! All four tensors are constants (never optimised, never updated):
//! `y = x * scale + shift` with `scale = weight * rsqrt(running_var + 1e-5)` and
//! `shift = bias - running_mean * scale`, as in the original.
//!
//! After a convolution (every use in a ResNet) the normalisation is folded into it
//! ([`FrozenBatchNorm2d::forward_conv`]): one convolution with the weight scaled per output
//! channel and `shift` as its bias. The activations then never pass through a separate
//! per-channel multiply and add, whose `[1, C, 1, 1]` broadcast the CPU backends walk element
//! by element (a fifth of the r50 training step before the fold, `docs/performance.md`), and
//! the autodiff graph holds one node per convolution instead of three.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::{conv2d_fused, residual_relu, symmetric_options, DetrBackend};

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

    /// The per-channel `(scale, shift)` this normalisation applies, each `[C]`.
    pub fn scale_shift(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.weight.val()
            * self
                .running_var
                .val()
                .add_scalar(FROZEN_BN_EPS)
                .sqrt()
                .recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        (scale, shift)
    }

    /// Applies the normalisation to `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = self.weight.dims()[0];
        let (scale, shift) = self.scale_shift();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}

impl<B: DetrBackend> FrozenBatchNorm2d<B> {
    /// `self.forward(conv.forward(x))` as one convolution: `conv`'s weight scaled by `scale`
    /// per output channel, and `shift` (plus `conv`'s own bias, scaled) as the bias. The same
    /// function up to float rounding, with the same gradients for `x` and `conv`'s weight.
    pub fn forward_conv(&self, conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_conv_relu(conv, x, None, false)
    }

    /// `relu(self.forward(conv.forward(x)) + residual)` (the residual and the ReLU optional)
    /// as one operation ([`conv2d_fused`]): the convolution with this normalisation folded in,
    /// then what follows it in a ResNet block.
    pub fn forward_conv_relu(
        &self,
        conv: &Conv2d<B>,
        x: Tensor<B, 4>,
        residual: Option<Tensor<B, 4>>,
        relu: bool,
    ) -> Tensor<B, 4> {
        // Every ResNet convolution has explicit symmetric padding; any other takes Burn's steps.
        let Some(options) = symmetric_options(conv) else {
            return residual_relu(self.forward(conv.forward(x)), residual, relu);
        };
        let (scale, shift) = self.scale_shift();
        let [c, c_in, kh, kw] = conv.weight.dims();
        // Scaled as `[C, C_in·kh·kw] * [C, 1]`: the CPU backend's broadcast takes its one-scalar-
        // per-row fast path for every kernel size, where the 4-d `[C, 1, 1, 1]` form of a 1×1
        // kernel falls to an element-by-element walk (7% of r50 inference before this).
        let weight = (conv.weight.val().reshape([c, c_in * kh * kw])
            * scale.clone().reshape([c, 1]))
        .reshape([c, c_in, kh, kw]);
        let bias = match &conv.bias {
            Some(b) => b.val() * scale + shift,
            None => shift,
        };
        conv2d_fused(x, weight, Some(bias), residual, relu, options)
    }
}
