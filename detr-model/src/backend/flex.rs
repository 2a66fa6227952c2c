//! [`DetrBackend`] on burn-flex: the CPU kernels of [`cpu_conv`], [`cpu_epilogue`] (and the
//! others of this module: GroupNorm, pooling, dropout's mask) run on
//! flex's own buffers. A float32 tensor that is contiguous from the start of its buffer is read
//! in place (no copy of a saved activation or a gradient that other nodes still hold), and the
//! results become tensors without a copy. Anything else (another dtype, grouped convolutions,
//! shapes the kernels do not take) is Burn's own operation.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::{
    ActivationOps, ConvOptions, FloatTensor, IntTensorOps, MaxPool2dWithIndices, ModuleOps,
};
use burn::tensor::{DType, Distribution, FloatDType, IntDType, Shape, TensorData};

use super::adamw::{self, AdamWMoments, AdamWUpdate};
use super::cpu_adamw;
use super::cpu_conv::{self, Geometry};
use super::cpu_dropout;
use super::cpu_epilogue;
use super::cpu_group_norm;
use super::cpu_input_grad;
use super::cpu_pool;
use super::cpu_weight_grad;
use super::{DetrBackend, GroupNormForward, GroupNormGrads, GroupNormStats};

impl DetrBackend for Flex {
    fn group_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
    ) -> Option<GroupNormForward<Self>> {
        let shape = group_shape(&x, &gamma, &beta, groups)?;
        let (x, gamma, beta) = (plain(x), plain(gamma), plain(beta));
        let (y, mean, inv_std) = cpu_group_norm::forward_f32(
            x.storage(),
            gamma.storage(),
            beta.storage(),
            shape,
            epsilon,
        );
        let blocks = [shape.batch * groups];
        Some(GroupNormForward {
            output: tensor(y, dims4(&x)?),
            stats: GroupNormStats {
                mean: tensor(mean, blocks),
                inv_std: tensor(inv_std, blocks),
            },
        })
    }

    fn group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: GroupNormStats<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
    ) -> GroupNormGrads<Self> {
        // The forward pass took these shapes; the statistics are flex's own float32 vectors.
        let (Some(shape), Some(dims)) = (group_shape(&x, &gamma, &gamma, groups), dims4(&x)) else {
            return super::group_norm_backward_composed::<Self>(x, gamma, stats, grad, groups);
        };
        let (x, gamma, grad) = (plain(x), plain(gamma), plain(grad));
        let (mean, inv_std) = (plain(stats.mean), plain(stats.inv_std));
        let (dx, dgamma, dbeta) = cpu_group_norm::backward_f32(
            x.storage(),
            gamma.storage(),
            mean.storage(),
            inv_std.storage(),
            grad.storage(),
            shape,
        );
        GroupNormGrads {
            x: tensor(dx, dims),
            gamma: tensor(dgamma, [shape.channels]),
            beta: tensor(dbeta, [shape.channels]),
        }
    }

    fn max_pool2d_value(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let pooled = match dims4(&x) {
            Some([n, c, h, w]) if x.dtype() == DType::F32 => {
                let x = plain(x.clone());
                cpu_pool::max_pool2d_f32(x.storage(), [n * c, h, w], kernel, stride, padding)
                    .map(|(y, [ho, wo])| tensor(y, [n, c, ho, wo]))
            }
            _ => None,
        };
        pooled.unwrap_or_else(|| Flex::max_pool2d(x, kernel, stride, padding, [1, 1], false))
    }

    fn max_pool2d_indexed(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> MaxPool2dWithIndices<Self> {
        if let (Some([n, c, h, w]), DType::F32) = (dims4(&x), x.dtype()) {
            let plain_x = plain(x.clone());
            let pooled = cpu_pool::max_pool2d_indexed_f32(
                plain_x.storage(),
                [n * c, h, w],
                kernel,
                stride,
                padding,
            );
            if let Some((y, indices, [ho, wo])) = pooled {
                return MaxPool2dWithIndices {
                    output: tensor(y, [n, c, ho, wo]),
                    indices: FlexTensor::from_data(TensorData::new(indices, [n, c, ho, wo])),
                };
            }
        }
        Flex::max_pool2d_with_indices(x, kernel, stride, padding, [1, 1], false)
    }

    /// The mask from [`cpu_dropout`], seeded by one draw from flex's generator (so
    /// `Backend::seed` decides it); Burn's Bernoulli sample for other float types.
    fn dropout_mask(
        shape: Shape,
        keep: f64,
        device: &Self::Device,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        if !matches!(dtype, FloatDType::F32) {
            return super::bernoulli_mask::<Flex>(shape, keep, device, dtype);
        }
        // 53 random bits from the backend's generator.
        let draw = Distribution::Uniform(0.0, (1u64 << 53) as f64);
        let seed = Flex::int_random([1].into(), draw, device, IntDType::I64)
            .into_data()
            .iter::<i64>()
            .next()
            .unwrap_or_default() as u64;
        let values = cpu_dropout::mask_f32(shape.num_elements(), keep, seed);
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    /// One pass over the parameter, its gradient and moments ([`cpu_adamw`]), in place where
    /// flex owns the buffers alone (a copy first where they are shared); Burn's operations for
    /// other dtypes.
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moments: Option<AdamWMoments<Self>>,
        update: &AdamWUpdate,
    ) -> (FloatTensor<Self>, AdamWMoments<Self>) {
        let shape = param.layout().shape().clone();
        let like_param = |t: &FlexTensor| t.dtype() == DType::F32 && *t.layout().shape() == shape;
        let fits = like_param(&param)
            && like_param(&grad)
            && moments
                .as_ref()
                .is_none_or(|m| like_param(&m.first) && like_param(&m.second));
        if !fits {
            return adamw::adamw_update_composed::<Self>(param, grad, moments, update);
        }
        let (mut first, mut second) = match moments {
            Some(m) => (plain(m.first), plain(m.second)),
            None => (
                FlexTensor::zeros(shape.clone(), DType::F32),
                FlexTensor::zeros(shape, DType::F32),
            ),
        };
        let (mut param, grad) = (plain(param), plain(grad));
        cpu_adamw::adamw_f32(
            param.storage_mut(),
            first.storage_mut(),
            second.storage_mut(),
            grad.storage(),
            update,
        );
        (param, AdamWMoments { first, second })
    }

    /// Every float32 convolution with `groups == 1` through [`cpu_conv::conv_f32`] (blocks of
    /// output rows whose im2col matrix stays in cache, one run of blocks per thread), on
    /// flex's own buffers; Burn's otherwise.
    fn conv2d_value(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(geo) = value_geometry(&x, &weight, bias.as_ref(), &options) else {
            return Flex::conv2d(x, weight, bias, options);
        };
        let (x, weight, bias) = (plain(x), plain(weight), bias.map(plain));
        let y = cpu_conv::conv_f32(
            x.storage(),
            weight.storage(),
            bias.as_ref().map(|b| b.storage()),
            &geo,
        );
        let [ho, wo] = geo.out_size;
        tensor(y, [geo.batch, geo.out_channels, ho, wo])
    }

    fn conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(geo) = geometry(&x, &weight, &output_grad, &options) else {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let (x, g) = (plain(x), plain(output_grad));
        let dw = cpu_weight_grad::weight_grad_f32(x.storage(), g.storage(), &geo);
        let [kh, kw] = geo.kernel;
        tensor(dw, [geo.out_channels, geo.in_channels, kh, kw])
    }

    fn conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(geo) = geometry(&x, &weight, &output_grad, &options) else {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        };
        let (w, g) = (plain(weight), plain(output_grad));
        let dx = cpu_input_grad::input_grad_f32(g.storage(), w.storage(), &geo);
        let [h, wi] = geo.in_size;
        tensor(dx, [geo.batch, geo.in_channels, h, wi])
    }

    /// The convolution without its bias, then the bias, residual and ReLU in one pass
    /// ([`cpu_epilogue`]).
    fn conv2d_fused_value(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let y = Self::conv2d_value(x, weight, None, options);
        epilogue(y, bias, residual, relu)
    }

    fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let same_shape = output.layout().shape() == grad.layout().shape();
        if output.dtype() != DType::F32 || grad.dtype() != DType::F32 || !same_shape {
            return Flex::relu_backward(output, grad);
        }
        let output = plain(output);
        // Copy-on-write: a gradient other nodes still hold is copied, then masked.
        let mut grad = plain(grad);
        cpu_epilogue::relu_grad_f32(output.storage(), grad.storage_mut());
        grad
    }
}

/// The geometry of a float32 convolution without groups of `x` by `weight` whose output
/// gradient is `g`, when the CPU kernels take it.
fn geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    g: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    let all_f32 = [x, weight, g].iter().all(|t| t.dtype() == DType::F32);
    let [n, c, h, w] = dims4(x)?;
    let [o, wc, kh, kw] = dims4(weight)?;
    let [gn, go, ho, wo] = dims4(g)?;
    let fits = all_f32 && options.groups == 1 && wc == c && gn == n && go == o;
    fits.then(|| Geometry::new([n, c, h, w], [o, kh, kw], [ho, wo], options))
}

/// The geometry of `conv2d(x, weight, bias, options)` when [`cpu_conv::conv_f32`] takes it:
/// float32 throughout, `groups == 1`, a bias of one value per output channel.
fn value_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    let [n, c, h, w] = dims4(x)?;
    let [o, wc, kh, kw] = dims4(weight)?;
    let bias_fits =
        bias.is_none_or(|b| b.dtype() == DType::F32 && b.layout().shape().dims() == [o]);
    let fits = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias_fits
        && options.groups == 1
        && wc == c;
    let out = cpu_conv::output_size([h, w], [kh, kw], options);
    fits.then(|| Geometry::new([n, c, h, w], [o, kh, kw], out, options))
}

/// Whether `t` is float32, contiguous from the start of a buffer of exactly its size.
fn is_plain_f32(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32
        && t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * core::mem::size_of::<f32>()
}

/// `t` contiguous from the start of an exactly sized buffer: itself when it is, a copy otherwise.
fn plain(t: FlexTensor) -> FlexTensor {
    if is_plain_f32(&t) {
        t
    } else {
        t.to_contiguous()
    }
}

/// The GroupNorm shape of `x [N, C, H, W]` with float32 affine parameters `[C]`, when the
/// kernels take it.
fn group_shape(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    groups: usize,
) -> Option<cpu_group_norm::GroupShape> {
    let [batch, channels, h, w] = dims4(x)?;
    let affine_fits = [gamma, beta]
        .iter()
        .all(|p| p.dtype() == DType::F32 && p.layout().shape().as_slice() == [channels]);
    let fits =
        x.dtype() == DType::F32 && affine_fits && groups > 0 && channels.is_multiple_of(groups);
    fits.then_some(cpu_group_norm::GroupShape {
        batch,
        channels,
        plane: h * w,
        groups,
    })
}

/// The dims of a 4-D flex tensor.
fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    match t.layout().shape().as_slice() {
        &[n, c, h, w] => Some([n, c, h, w]),
        _ => None,
    }
}

/// A float32 tensor of `shape` over `values` (no copy).
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `relu(y + bias + residual)` (each part optional; bias `[C]` broadcast over `y`
/// `[N, C, H, W]`, residual shaped as `y`) in one pass, in place on `y` when it is not shared.
fn epilogue(
    y: FlexTensor,
    bias: Option<FlexTensor>,
    residual: Option<FlexTensor>,
    relu: bool,
) -> FlexTensor {
    let Some([n, c, h, w]) = dims4(&y) else {
        return cpu_epilogue::burn_epilogue::<Flex>(y, bias, residual, relu);
    };
    let bias_fits = bias
        .as_ref()
        .is_none_or(|b| b.dtype() == DType::F32 && b.layout().shape().as_slice() == [c]);
    let residual_fits = residual
        .as_ref()
        .is_none_or(|r| r.dtype() == DType::F32 && dims4(r) == Some([n, c, h, w]));
    if y.dtype() != DType::F32 || !bias_fits || !residual_fits {
        return cpu_epilogue::burn_epilogue::<Flex>(y, bias, residual, relu);
    }
    let mut y = plain(y);
    let bias = bias.map(plain);
    let residual = residual.map(plain);
    // Copy-on-write: a shared output (never the case for a fresh convolution) is copied first.
    cpu_epilogue::epilogue_f32(
        y.storage_mut(),
        bias.as_ref().map(|b| b.storage()),
        residual.as_ref().map(|r| r.storage()),
        relu,
        c,
        h * w,
    );
    y
}
