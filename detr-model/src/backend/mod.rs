//! What DETR asks of a Burn backend beyond [`Backend`]: a backend extension (Burn's mechanism
//! for custom operations) for the backbone's convolutions.
//!
//! Burn computes the weight gradient of a convolution as another convolution whose input
//! channels are the batch's images and whose kernel is as large as the feature map. On the CPU
//! backends (flex, ndarray) that convolution reduces to matrix-vector products (one output
//! column per kernel position, one per input channel for a 1×1 convolution): memory-bound where
//! it should be one matrix product. [`DetrBackend::conv2d_weight_grad`] lets a backend compute
//! it its own way; the CPU backends use [`cpu_conv`] (im2col and GEMM in cache-sized blocks of
//! output rows), the GPU backends keep Burn's kernels. flex takes the value of every float32
//! convolution from [`cpu_conv`] too (its im2col runs the whole image before one GEMM, and
//! walks convolutions with at most four input channels, the stem, with a direct loop that took
//! a quarter of the `tiny` training step); ndarray only those with few input channels.
//!
//! A ResNet block's convolutions are followed by their bias, the residual sum and a ReLU:
//! [`conv2d_fused`] is all of it as one operation ([`DetrBackend::detr_conv2d`]). On flex the
//! three are one pass over the convolution's output on all cores, and the ReLU's gradient one
//! more in the backward pass ([`cpu_epilogue`]); other backends take Burn's element-wise
//! operations (fused by Burn on the GPU backends). On `Autodiff<B>` the fused convolution is
//! one backward node ([`autodiff`]) that takes the input gradient from Burn
//! (`conv2d_x_backward`), the weight gradient from `B::conv2d_weight_grad` and the ReLU's from
//! `B::relu_grad`. [`conv2d`] is the plain convolution, the same node without the rest.
//!
//! GroupNorm (the backbone's normalisation when trained from scratch) is the backend's own
//! computation where it has one ([`DetrBackend::group_norm_forward`]; flex: [`cpu_group_norm`]),
//! one autodiff node; the stem's max pooling takes [`cpu_pool`] on flex (without indices at
//! inference; with them, as one autodiff node, when the stem learns) and skips the graph under
//! autodiff when no gradient flows to its input. The transformer's dropout multiplies by a mask
//! from [`DetrBackend::dropout_mask`] (flex: [`cpu_dropout`], drawn on all cores). The
//! training's optimiser updates each parameter through [`DetrBackend::adamw_update`] (flex:
//! one pass, [`cpu_adamw`]).
//!
//! Under the CPU backends' tensors, [`cpu_memory::retain_freed_memory`] keeps glibc from giving
//! each large buffer fresh pages from the kernel (the binaries call it first thing).
//!
//! The model is written once against [`DetrBackend`]; implementations exist for flex, ndarray,
//! wgpu and cuda (with the crate features of the same names) and for `Autodiff` over any of
//! them.

pub mod adamw;
pub mod autodiff;
pub mod cpu_adamw;
pub mod cpu_conv;
pub mod cpu_dropout;
pub mod cpu_epilogue;
pub mod cpu_group_norm;
pub mod cpu_input_grad;
pub mod cpu_memory;
pub mod cpu_pool;
pub mod cpu_weight_grad;
mod flex;

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{Dropout, PaddingConfig2d};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, FloatTensor, MaxPool2dWithIndices};
use burn::tensor::{Distribution, FloatDType, Shape, Tensor, TensorPrimitive};

/// GroupNorm's statistics per (image, group), `[N·G]` each.
#[derive(Debug, Clone)]
pub struct GroupNormStats<B: Backend> {
    /// The mean.
    pub mean: FloatTensor<B>,
    /// `1 / sqrt(biased variance + epsilon)`.
    pub inv_std: FloatTensor<B>,
}

/// What [`DetrBackend::group_norm_forward`] computes.
#[derive(Debug, Clone)]
pub struct GroupNormForward<B: Backend> {
    /// The normalised tensor, `x`'s shape.
    pub output: FloatTensor<B>,
    /// The statistics the backward pass needs.
    pub stats: GroupNormStats<B>,
}

/// GroupNorm's gradients.
#[derive(Debug, Clone)]
pub struct GroupNormGrads<B: Backend> {
    /// With respect to the input.
    pub x: FloatTensor<B>,
    /// With respect to the scale, `[C]`.
    pub gamma: FloatTensor<B>,
    /// With respect to the shift, `[C]`.
    pub beta: FloatTensor<B>,
}

/// A [`Backend`] with the operations DETR's model needs beyond Burn's.
pub trait DetrBackend: Backend {
    /// The gradient of `conv2d(x, weight, _, options)` with respect to `weight`, given the
    /// gradient of its output. Burn's formulation unless the backend has a better one.
    fn conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// The gradient of `conv2d(x, weight, _, options)` with respect to `x`, given the gradient
    /// of its output. Burn's (`conv2d_x_backward`) unless the backend has a better one.
    fn conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// GroupNorm of `x [N, C, H, W]` in `groups` groups with the affine `gamma`, `beta` `[C]`,
    /// when the backend computes it itself (flex: [`cpu_group_norm`]): the value with the
    /// statistics its backward pass ([`DetrBackend::group_norm_backward`]) needs. `None`: the
    /// model composes it from Burn's operations (`backbone::norm::group_norm`).
    fn group_norm_forward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _groups: usize,
        _epsilon: f64,
    ) -> Option<GroupNormForward<Self>> {
        None
    }

    /// The gradients of GroupNorm with respect to `x`, `gamma` and `beta` given the output's
    /// gradient, from the statistics of [`DetrBackend::group_norm_forward`]; here from Burn's
    /// operations, for a backend that overrides only the forward pass.
    fn group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: GroupNormStats<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
    ) -> GroupNormGrads<Self> {
        group_norm_backward_composed::<Self>(x, gamma, stats, grad, groups)
    }

    /// GroupNorm through the backend's own computation ([`DetrBackend::group_norm_forward`];
    /// under autodiff one node whose backward pass is [`DetrBackend::group_norm_backward`]);
    /// `None` when the backend has none.
    fn detr_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
    ) -> Option<FloatTensor<Self>> {
        Self::group_norm_forward(x, gamma, beta, groups, epsilon).map(|f| f.output)
    }

    /// Max pooling with dilation 1 in floor mode (the ResNet stem's). Burn's `max_pool2d`
    /// unless the backend has a better one (flex at inference, [`cpu_pool`]).
    fn max_pool2d_value(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, stride, padding, [1, 1], false)
    }

    /// A dropout mask of `shape`: `1 / keep` with probability `keep`, else 0, drawn from the
    /// backend's seeded generator; never part of the autodiff graph. Burn's Bernoulli sample
    /// scaled by `1 / keep` unless the backend has better (flex: [`cpu_dropout`]).
    fn dropout_mask(
        shape: Shape,
        keep: f64,
        device: &Self::Device,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        bernoulli_mask::<Self>(shape, keep, device, dtype)
    }

    /// [`DetrBackend::max_pool2d_value`] with the indices its backward pass takes
    /// (`max_pool2d_with_indices_backward`): Burn's `max_pool2d_with_indices` unless the
    /// backend has a better one (flex, [`cpu_pool`]).
    fn max_pool2d_indexed(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> MaxPool2dWithIndices<Self> {
        Self::max_pool2d_with_indices(x, kernel, stride, padding, [1, 1], false)
    }

    /// One AdamW update of a parameter ([`adamw`]): the new parameter and moments from the
    /// old ones (`None` before the first update) and the gradient. Composed from Burn's
    /// operations ([`adamw::adamw_update_composed`]) unless the backend has one pass (flex:
    /// [`cpu_adamw`]).
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<adamw::AdamWMoments<Self>>,
        update: &adamw::AdamWUpdate,
    ) -> (FloatTensor<Self>, adamw::AdamWMoments<Self>) {
        adamw::adamw_update_composed::<Self>(param, grad, moments, update)
    }

    /// The value of a 2-D convolution. The backend's own `conv2d` unless it has a better one.
    fn conv2d_value(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, bias, options)
    }

    /// `relu(conv2d(x, weight, bias) + residual)`, the residual and the ReLU each optional: a
    /// convolution with what follows it in a ResNet block. [`DetrBackend::conv2d_value`]
    /// then Burn's element-wise operations unless the backend has better.
    fn conv2d_fused_value(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let y = Self::conv2d_value(x, weight, bias, options);
        cpu_epilogue::burn_epilogue::<Self>(y, None, residual, relu)
    }

    /// The gradient through a ReLU whose output is `output`: `grad` where `output > 0`, 0
    /// elsewhere. Burn's `relu_backward` unless the backend has better.
    fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu_backward(output, grad)
    }

    /// [`DetrBackend::conv2d_fused_value`], and under autodiff one node whose weight gradient
    /// is [`DetrBackend::conv2d_weight_grad`] of the inner backend and whose ReLU gradient is
    /// its [`DetrBackend::relu_grad`].
    fn detr_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_fused_value(x, weight, bias, residual, relu, options)
    }
}

/// ndarray: convolutions with few input channels and every weight gradient through
/// [`cpu_conv`] (by way of host memory); the rest is Burn's.
impl DetrBackend for burn::backend::NdArray {
    fn conv2d_value(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        cpu_conv::conv2d_value::<Self>(x, weight, bias, options)
    }

    fn conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        cpu_weight_grad::conv2d_weight_grad::<Self>(x, weight, output_grad, options)
    }
}

/// wgpu with Burn's fusion (what `burn::backend::Wgpu` is in these builds): Burn's kernels.
#[cfg(feature = "wgpu")]
impl DetrBackend for burn::backend::Wgpu {}

/// wgpu without fusion: Burn's kernels.
#[cfg(feature = "wgpu")]
impl DetrBackend
    for burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>
{
}

/// cuda with Burn's fusion: Burn's kernels.
#[cfg(feature = "cuda")]
impl DetrBackend for burn::backend::Cuda {}

/// The convolution of `x` `[B, C, H, W]` by `weight` `[O, C, kh, kw]` (plus `bias` `[O]`)
/// through [`DetrBackend::detr_conv2d`]; same arguments as `burn::tensor::module::conv2d` with
/// symmetric padding.
pub fn conv2d<B: DetrBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    conv2d_fused(x, weight, bias, None, false, options)
}

/// `relu(conv2d(x, weight, bias) + residual)` as one operation ([`DetrBackend::detr_conv2d`]),
/// `residual` (shaped as the output) and the ReLU (`relu`) each optional.
pub fn conv2d_fused<B: DetrBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::detr_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        residual.map(|r| r.into_primitive().tensor()),
        relu,
        options,
    )))
}

/// `relu(y + residual)` (each part optional) in Burn's tensor operations: what
/// [`conv2d_fused`] computes after its convolution, for the paths that cannot fuse it.
pub fn residual_relu<B: Backend>(
    y: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// The convolution options of `conv` when its padding is explicit and symmetric (every ResNet
/// convolution); `None` for any other padding.
pub fn symmetric_options<B: Backend>(conv: &Conv2d<B>) -> Option<ConvOptions<2>> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some(ConvOptions::new(
                conv.stride,
                [top, left],
                conv.dilation,
                conv.groups,
            ))
        }
        _ => None,
    }
}

/// [`DetrBackend::group_norm_backward`] from Burn's operations.
pub fn group_norm_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    stats: GroupNormStats<B>,
    grad: FloatTensor<B>,
    groups: usize,
) -> GroupNormGrads<B> {
    let float = |t| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t));
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    let [n, c, h, w] = x.dims();
    let len = c / groups * h * w;
    let mean = float(stats.mean).reshape([n, groups, 1]);
    let inv_std = float(stats.inv_std).reshape([n, groups, 1]);
    let x_hat = (x.reshape([n, groups, len]) - mean) * inv_std.clone();
    let dy = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(grad)).reshape([n, c, h * w]);
    let g = (dy.clone() * float(gamma).reshape([1, c, 1])).reshape([n, groups, len]);
    let mean_g = g.clone().mean_dim(2);
    let mean_gx = (g.clone() * x_hat.clone()).mean_dim(2);
    let dx = (g - mean_g - x_hat.clone() * mean_gx) * inv_std;
    let dgamma = (dy.clone() * x_hat.reshape([n, c, h * w]))
        .sum_dim(2)
        .sum_dim(0);
    let dbeta = dy.sum_dim(2).sum_dim(0);
    GroupNormGrads {
        x: dx.reshape([n, c, h, w]).into_primitive().tensor(),
        gamma: dgamma.reshape([c]).into_primitive().tensor(),
        beta: dbeta.reshape([c]).into_primitive().tensor(),
    }
}

/// `pool.forward(x)` through [`DetrBackend::max_pool2d_value`] (Burn's `MaxPool2d::forward`
/// when the padding is not explicit and symmetric, or with dilation or ceil mode).
pub fn max_pool_forward<B: DetrBackend>(pool: &MaxPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match pool.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == bottom && left == right && pool.dilation == [1, 1] && !pool.ceil_mode =>
        {
            Tensor::from_primitive(TensorPrimitive::Float(B::max_pool2d_value(
                x.into_primitive().tensor(),
                pool.kernel_size,
                pool.stride,
                [top, left],
            )))
        }
        _ => pool.forward(x),
    }
}

/// Burn's dropout mask: a Bernoulli sample with probability `keep`, scaled by `1 / keep`.
pub fn bernoulli_mask<B: Backend>(
    shape: Shape,
    keep: f64,
    device: &B::Device,
    dtype: FloatDType,
) -> FloatTensor<B> {
    let mask = B::float_random(shape, Distribution::Bernoulli(keep), device, dtype);
    B::float_mul_scalar(mask, (1.0 / keep).into())
}

/// `dropout.forward(x)`: in training (an autodiff backend) `x` times a mask from
/// [`DetrBackend::dropout_mask`] (one element-wise product, one autodiff node), `x` itself
/// otherwise or when the probability is 0, as Burn's `Dropout`.
pub fn dropout<B: DetrBackend, const D: usize>(dropout: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    if !B::ad_enabled(&x.device()) || dropout.prob == 0.0 {
        return x;
    }
    let mask = B::dropout_mask(x.shape(), 1.0 - dropout.prob, &x.device(), x.dtype().into());
    x * Tensor::from_primitive(TensorPrimitive::Float(mask))
}

/// `conv.forward(x)` through [`conv2d`] (Burn's `Conv2d::forward` when the padding is not
/// explicit and symmetric).
pub fn conv_forward<B: DetrBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match symmetric_options(conv) {
        Some(options) => conv2d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            options,
        ),
        None => conv.forward(x),
    }
}

/// An autodiff backend whose inner backend is a [`DetrBackend`] too: what training needs
/// (the model's forward on the autodiff backend, validation on the inner one).
pub trait DetrAutodiffBackend: AutodiffBackend<InnerBackend: DetrBackend> + DetrBackend {}

impl<B> DetrAutodiffBackend for B
where
    B: AutodiffBackend + DetrBackend,
    B::InnerBackend: DetrBackend,
{
}
