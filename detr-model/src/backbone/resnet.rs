//! ResNet-18/34/50/101 with FrozenBatchNorm2d (or GroupNorm, see [`super::norm`]), laid out like torchvision (`conv1`, `bn1`,
//! `layer1`..`layer4`, blocks with `conv1..3`, `bn1..3`, `downsample`), optionally with
//! layer4's stride replaced by dilation 2 (DC5).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{backend::Backend, Tensor};

use super::norm::{BackboneNorm, BackboneNormKind};
use crate::backend::{max_pool_forward, DetrBackend};
use crate::config::BackboneKind;

/// The 1×1 convolution and normalisation on a block's shortcut when shapes change.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1×1 convolution (torchvision's `downsample.0`).
    pub conv: Conv2d<B>,
    /// Normalisation (torchvision's `downsample.1`).
    pub bn: BackboneNorm<B>,
}

/// A residual block: basic (two 3×3 convolutions) or bottleneck (1×1, 3×3, 1×1), following
/// torchvision's v1.5 layout (the stride sits on the 3×3 convolution).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// First convolution.
    pub conv1: Conv2d<B>,
    /// First normalisation.
    pub bn1: BackboneNorm<B>,
    /// Second convolution.
    pub conv2: Conv2d<B>,
    /// Second normalisation.
    pub bn2: BackboneNorm<B>,
    /// Third convolution (bottleneck blocks only).
    pub conv3: Option<Conv2d<B>>,
    /// Third normalisation (bottleneck blocks only).
    pub bn3: Option<BackboneNorm<B>>,
    /// Shortcut projection, when the block changes resolution or width.
    pub downsample: Option<Downsample<B>>,
}

fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = dilation * (kernel - 1) / 2;
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_dilation([dilation, dilation])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        .with_initializer(burn::nn::Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

impl<B: Backend> Block<B> {
    fn new(
        kind: BackboneKind,
        norm: BackboneNormKind,
        inplanes: usize,
        planes: usize,
        stride: usize,
        dilation: usize,
        device: &B::Device,
    ) -> Self {
        let out = planes * kind.expansion();
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, 1, device),
            bn: BackboneNorm::new(norm, out, device),
        });
        if kind.is_bottleneck() {
            Self {
                conv1: conv(inplanes, planes, 1, 1, 1, device),
                bn1: BackboneNorm::new(norm, planes, device),
                conv2: conv(planes, planes, 3, stride, dilation, device),
                bn2: BackboneNorm::new(norm, planes, device),
                conv3: Some(conv(planes, out, 1, 1, 1, device)),
                bn3: Some(BackboneNorm::new(norm, out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv(inplanes, planes, 3, stride, dilation, device),
                bn1: BackboneNorm::new(norm, planes, device),
                conv2: conv(planes, planes, 3, 1, dilation, device),
                bn2: BackboneNorm::new(norm, planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }
}

impl<B: DetrBackend> Block<B> {
    /// Applies the block to `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward_conv(&d.conv, x.clone()),
            None => x.clone(),
        };
        let y = self.bn1.forward_conv_relu(&self.conv1, x, None, true);
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let y = self.bn2.forward_conv_relu(&self.conv2, y, None, true);
                bn3.forward_conv_relu(conv3, y, Some(identity), true)
            }
            _ => self
                .bn2
                .forward_conv_relu(&self.conv2, y, Some(identity), true),
        }
    }
}

/// A torchvision-style ResNet without its classification head, returning `layer4`'s features.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// Stem convolution, 7×7 stride 2.
    pub conv1: Conv2d<B>,
    /// Stem normalisation.
    pub bn1: BackboneNorm<B>,
    /// Stem max pooling, 3×3 stride 2.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4 overall).
    pub layer1: Vec<Block<B>>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<Block<B>>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<Block<B>>,
    /// Stage 4 (stride 32, or 16 with dilation).
    pub layer4: Vec<Block<B>>,
}

impl<B: Backend> ResNet<B> {
    /// Builds a ResNet of `kind` normalised by `norm`, whose stem has `width` channels (64 in
    /// torchvision), with layer4's stride replaced by dilation when `dilation` is set (DC5).
    pub fn new(
        kind: BackboneKind,
        norm: BackboneNormKind,
        width: usize,
        dilation: bool,
        device: &B::Device,
    ) -> Self {
        let blocks = kind.blocks();
        let mut inplanes = width;
        let mut current_dilation = 1;
        let mut make_layer = |planes: usize, count: usize, stride: usize, dilate: bool| {
            let previous_dilation = current_dilation;
            let mut stride = stride;
            if dilate {
                current_dilation *= stride;
                stride = 1;
            }
            let mut layer = Vec::with_capacity(count);
            layer.push(Block::new(
                kind,
                norm,
                inplanes,
                planes,
                stride,
                previous_dilation,
                device,
            ));
            inplanes = planes * kind.expansion();
            for _ in 1..count {
                layer.push(Block::new(
                    kind,
                    norm,
                    inplanes,
                    planes,
                    1,
                    current_dilation,
                    device,
                ));
            }
            layer
        };
        let layer1 = make_layer(width, blocks[0], 1, false);
        let layer2 = make_layer(width * 2, blocks[1], 2, false);
        let layer3 = make_layer(width * 4, blocks[2], 2, false);
        let layer4 = make_layer(width * 8, blocks[3], 2, dilation);
        Self {
            conv1: Conv2dConfig::new([3, width], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .with_initializer(burn::nn::Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: true,
                })
                .init(device),
            bn1: BackboneNorm::new(norm, width, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// Freezes the stem and `layer1` (the original trains only `layer2`..`layer4`).
    pub fn freeze_stem_and_layer1(mut self) -> Self {
        self.conv1 = self.conv1.no_grad();
        self.layer1 = self.layer1.into_iter().map(|b| b.no_grad()).collect();
        self
    }
}

impl<B: DetrBackend> ResNet<B> {
    /// Returns `layer4`'s features `[B, C, H/32, W/32]` (H/16 with dilation).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.bn1.forward_conv_relu(&self.conv1, x, None, true);
        x = max_pool_forward(&self.maxpool, x);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        x
    }
}
