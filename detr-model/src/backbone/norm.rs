//! The normalisation after each backbone convolution: the original's FrozenBatchNorm2d, or a
//! trainable GroupNorm for backbones trained from scratch.
//!
//! DETR always starts from an ImageNet-pretrained ResNet whose batch statistics are frozen.
//! Without pretrained weights FrozenBatchNorm2d is the identity and a ResNet trained with it
//! has no normalisation at all (its activations grow without bound); GroupNorm (Wu & He, 2018)
//! normalises per image, so it behaves the same in training and evaluation and at any batch
//! size, which suits the small batches of detection.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

use super::frozen_batch_norm::FrozenBatchNorm2d;
use crate::backend::{conv_forward, residual_relu, DetrBackend};
use crate::error::ModelError;

/// Which normalisation a backbone uses. Serialised as `frozen` or `group` (`frozen_bn` and
/// `gn` are accepted too).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BackboneNormKind {
    /// FrozenBatchNorm2d: constant statistics (the original; for pretrained backbones).
    #[serde(alias = "frozen_bn")]
    #[value(alias = "frozen_bn")]
    Frozen,
    /// Trainable GroupNorm with [`group_norm_groups`] groups (for training from scratch).
    #[serde(alias = "gn")]
    #[value(alias = "gn")]
    Group,
}

impl BackboneNormKind {
    /// Parses `frozen` (FrozenBatchNorm2d) or `group` (GroupNorm).
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "frozen" | "frozen_bn" => Ok(Self::Frozen),
            "group" | "gn" => Ok(Self::Group),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown backbone_norm `{other}` (expected frozen or group)"
            ))),
        }
    }

    /// The name this kind is written with (`frozen` or `group`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Frozen => "frozen",
            Self::Group => "group",
        }
    }
}

/// Groups of the GroupNorm over `channels` channels: 32 (the GroupNorm paper's default) when
/// there are at least 8 channels per group, fewer for narrow layers (`channels / 8`), and always
/// a divisor of `channels`.
pub fn group_norm_groups(channels: usize) -> usize {
    let wanted = (channels / 8).clamp(1, 32);
    (1..=wanted)
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

/// A backbone normalisation layer. Checkpoint names are the same for both kinds (`weight`,
/// `bias`; FrozenBatchNorm2d adds `running_mean` and `running_var`).
// A ResNet holds a few dozen of these: the size difference between variants does not matter,
// and Burn's Module derive needs the modules inline.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum BackboneNorm<B: Backend> {
    /// Constant batch statistics.
    Frozen(FrozenBatchNorm2d<B>),
    /// Trainable per-image group statistics (`gamma` is the checkpoint's `weight`, `beta` its
    /// `bias`).
    Group(GroupNorm<B>),
}

impl<B: Backend> BackboneNorm<B> {
    /// A fresh layer over `channels`: the identity FrozenBatchNorm2d, or GroupNorm with weight 1
    /// and bias 0.
    pub fn new(kind: BackboneNormKind, channels: usize, device: &B::Device) -> Self {
        match kind {
            BackboneNormKind::Frozen => Self::Frozen(FrozenBatchNorm2d::new(channels, device)),
            BackboneNormKind::Group => Self::Group(
                GroupNormConfig::new(group_norm_groups(channels), channels).init(device),
            ),
        }
    }

    /// Applies the normalisation to `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Frozen(bn) => bn.forward(x),
            Self::Group(gn) => group_norm_composed(gn, x),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> BackboneNormKind {
        match self {
            Self::Frozen(_) => BackboneNormKind::Frozen,
            Self::Group(_) => BackboneNormKind::Group,
        }
    }
}

impl<B: DetrBackend> BackboneNorm<B> {
    /// Applies `conv`, then this normalisation, to `[B, C, H, W]`: FrozenBatchNorm2d folded
    /// into the convolution ([`FrozenBatchNorm2d::forward_conv`]), GroupNorm after it.
    pub fn forward_conv(&self, conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Frozen(bn) => bn.forward_conv(conv, x),
            Self::Group(gn) => group_norm(gn, conv_forward(conv, x)),
        }
    }

    /// `relu(self.forward_conv(conv, x) + residual)`, the residual and the ReLU optional: one
    /// fused operation with FrozenBatchNorm2d ([`FrozenBatchNorm2d::forward_conv_relu`]),
    /// Burn's element-wise operations after GroupNorm.
    pub fn forward_conv_relu(
        &self,
        conv: &Conv2d<B>,
        x: Tensor<B, 4>,
        residual: Option<Tensor<B, 4>>,
        relu: bool,
    ) -> Tensor<B, 4> {
        match self {
            Self::Frozen(bn) => bn.forward_conv_relu(conv, x, residual, relu),
            Self::Group(gn) => residual_relu(group_norm(gn, conv_forward(conv, x)), residual, relu),
        }
    }
}

/// GroupNorm over `[B, C, H, W]` with `gn`'s groups, epsilon and affine parameters: the
/// backend's own computation when it has one ([`DetrBackend::detr_group_norm`]: flex, one
/// autodiff node), else [`group_norm_composed`].
pub fn group_norm<B: DetrBackend>(gn: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if let (Some(gamma), Some(beta)) = (&gn.gamma, &gn.beta) {
        let own = B::detr_group_norm(
            x.clone().into_primitive().tensor(),
            gamma.val().into_primitive().tensor(),
            beta.val().into_primitive().tensor(),
            gn.num_groups,
            gn.epsilon,
        );
        if let Some(y) = own {
            return Tensor::from_primitive(TensorPrimitive::Float(y));
        }
    }
    group_norm_composed(gn, x)
}

/// GroupNorm over `[B, C, H, W]` with `gn`'s groups, epsilon and affine parameters: the same
/// function as Burn's `GroupNorm::forward` (two-pass mean and biased variance per image and
/// group), arranged so that every broadcast is a per-row scalar over a contiguous
/// `[B, C, H·W]` view. Burn's version multiplies by `gamma` reshaped to `[1, C, 1, 1]`, a
/// broadcast the CPU backend walks element by element; here `gamma`, `beta` and the group
/// statistics are first folded into one scale and one shift per image and channel.
pub fn group_norm_composed<B: Backend>(gn: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let groups = gn.num_groups;
    let per_group = c / groups * h * w;
    let xg = x.reshape([n, groups, per_group]);
    let mean = xg.clone().mean_dim(2); // [n, g, 1]
    let centred = xg - mean;
    let var = (centred.clone() * centred.clone()).mean_dim(2); // [n, g, 1]
    let inv_std = var.add_scalar(gn.epsilon).sqrt().recip();
    // One scale per image and channel: inv_std of the channel's group times gamma.
    let inv_std = inv_std.expand([n, groups, c / groups]).reshape([n, c, 1]);
    let centred = centred.reshape([n, c, h * w]);
    let y = match (&gn.gamma, &gn.beta) {
        (Some(gamma), Some(beta)) => {
            let scale = inv_std * gamma.val().reshape([1, c, 1]);
            // Materialised per image so that the add is a per-row scalar too.
            let shift = beta.val().reshape([1, c, 1]).repeat_dim(0, n);
            centred * scale + shift
        }
        _ => centred * inv_std,
    };
    y.reshape([n, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_divide_the_channels() {
        assert_eq!(group_norm_groups(32), 4);
        assert_eq!(group_norm_groups(64), 8);
        assert_eq!(group_norm_groups(256), 32);
        assert_eq!(group_norm_groups(2048), 32);
        assert_eq!(group_norm_groups(3), 1);
        assert_eq!(group_norm_groups(40), 5);
        for c in 1..300 {
            assert_eq!(c % group_norm_groups(c), 0, "{c}");
        }
    }

    #[test]
    fn unknown_kinds_are_errors_naming_them() {
        assert_eq!(
            BackboneNormKind::parse("group").unwrap(),
            BackboneNormKind::Group
        );
        let err = BackboneNormKind::parse("batch").unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }

    #[test]
    fn group_norm_matches_burns_in_value_and_gradient() {
        use burn::backend::{Autodiff, Flex};
        use burn::module::Param;
        use burn::tensor::{Distribution, Tolerance};
        type B = Autodiff<Flex>;
        let device = Default::default();
        for (channels, groups, batch) in [(16, 2, 3), (32, 4, 1), (12, 1, 2)] {
            let mut gn: GroupNorm<B> = GroupNormConfig::new(groups, channels).init(&device);
            // Non-trivial affine parameters.
            gn.gamma = Some(Param::from_tensor(Tensor::random(
                [channels],
                Distribution::Normal(1.0, 0.5),
                &device,
            )));
            gn.beta = Some(Param::from_tensor(Tensor::random(
                [channels],
                Distribution::Normal(0.0, 0.5),
                &device,
            )));
            let x = Tensor::<B, 4>::random(
                [batch, channels, 5, 7],
                Distribution::Normal(3.0, 2.0),
                &device,
            )
            .require_grad();
            let w = Tensor::<B, 4>::random([batch, channels, 5, 7], Distribution::Default, &device);

            // flex's own kernels (one autodiff node) and the composition of Burn's operations.
            for ours in [
                group_norm(&gn, x.clone()),
                group_norm_composed(&gn, x.clone()),
            ] {
                let burns = gn.forward(x.clone());
                ours.clone()
                    .into_data()
                    .assert_approx_eq::<f32>(&burns.clone().into_data(), Tolerance::absolute(1e-5));

                let g_ours = (ours * w.clone()).sum().backward();
                let g_burns = (burns * w.clone()).sum().backward();
                x.grad(&g_ours)
                    .unwrap()
                    .into_data()
                    .assert_approx_eq::<f32>(
                        &x.grad(&g_burns).unwrap().into_data(),
                        Tolerance::absolute(1e-4),
                    );
                for p in [gn.gamma.as_ref().unwrap(), gn.beta.as_ref().unwrap()] {
                    p.val()
                        .grad(&g_ours)
                        .unwrap()
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &p.val().grad(&g_burns).unwrap().into_data(),
                            Tolerance::absolute(1e-4),
                        );
                }
            }
        }
    }

    /// flex's GroupNorm backward kernel against the same gradients from Burn's operations
    /// (`group_norm_backward_composed`, what a backend with only its own forward pass gets),
    /// from the same statistics: 1e-4 absolute (float32 sums in different orders).
    #[test]
    fn group_norm_backward_kernel_matches_the_composed_one() {
        use crate::backend::group_norm_backward_composed;
        use burn::backend::Flex;
        use burn::tensor::{Distribution, Tolerance};
        let device = Default::default();
        for (batch, channels, groups, size) in [(3, 16, 2, 6), (1, 24, 3, 9), (2, 8, 8, 4)] {
            let image = |mean: f64| {
                Tensor::<Flex, 4>::random(
                    [batch, channels, size, size + 1],
                    Distribution::Normal(mean, 1.5),
                    &device,
                )
                .into_primitive()
                .tensor()
            };
            let affine = |mean: f64| {
                Tensor::<Flex, 1>::random([channels], Distribution::Normal(mean, 0.5), &device)
                    .into_primitive()
                    .tensor()
            };
            let (x, dy) = (image(2.0), image(0.0));
            let (gamma, beta) = (affine(1.0), affine(0.0));
            let forward =
                Flex::group_norm_forward(x.clone(), gamma.clone(), beta, groups, 1e-5).unwrap();
            let kernel = Flex::group_norm_backward(
                x.clone(),
                gamma.clone(),
                forward.stats.clone(),
                dy.clone(),
                groups,
            );
            let composed =
                group_norm_backward_composed::<Flex>(x, gamma, forward.stats, dy, groups);
            let data = |t| Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t)).into_data();
            let flat = |t| {
                Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(t))
                    .flatten::<1>(0, 3)
                    .into_data()
            };
            flat(kernel.x).assert_approx_eq::<f32>(&flat(composed.x), Tolerance::absolute(1e-4));
            for (k, c) in [(kernel.gamma, composed.gamma), (kernel.beta, composed.beta)] {
                data(k).assert_approx_eq::<f32>(&data(c), Tolerance::absolute(1e-4));
            }
        }
    }
}
