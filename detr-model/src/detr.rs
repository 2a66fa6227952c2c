//! The DETR model: backbone, position embedding, input projection, transformer, and the class
//! and box heads, with the outputs of every decoder layer for the auxiliary losses.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::backbone::{resize_mask, ResNet};
use crate::backend::DetrBackend;
use crate::config::{DetrConfig, PositionEmbeddingKind};
use crate::error::ModelError;
use crate::linear::linear;
use crate::position::{LearnedPositionEmbedding, PositionEmbedding, SinePositionEmbedding};
use crate::transformer::Transformer;

/// A multi-layer perceptron with ReLU between layers (DETR's box head has 3 layers).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// The layers.
    pub layers: Vec<Linear<B>>,
}

impl<B: Backend> Mlp<B> {
    /// `num_layers` linear layers `input → hidden → … → output`.
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        device: &B::Device,
    ) -> Self {
        let mut dims = vec![input];
        dims.extend(std::iter::repeat_n(hidden, num_layers - 1));
        dims.push(output);
        let layers = dims
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Self { layers }
    }

    /// Applies the layers with ReLU between them (not after the last).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let n = self.layers.len();
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = linear(layer, x);
            if i + 1 < n {
                x = relu(x);
            }
        }
        x
    }
}

/// Predictions of every returned decoder layer, layer-major.
#[derive(Debug, Clone)]
pub struct DetrOutput<B: Backend> {
    /// Class logits `[L, B, Q, num_classes + 1]`; the last class is "no object".
    pub logits: Tensor<B, 4>,
    /// Boxes `[L, B, Q, 4]` as normalised `(cx, cy, w, h)` in `[0, 1]`.
    pub boxes: Tensor<B, 4>,
}

impl<B: Backend> DetrOutput<B> {
    /// Number of decoder layers returned (1 without auxiliary outputs).
    pub fn num_layers(&self) -> usize {
        self.logits.dims()[0]
    }

    /// The final layer's logits `[B, Q, C + 1]` (the original's `pred_logits`).
    pub fn pred_logits(&self) -> Tensor<B, 3> {
        let l = self.num_layers();
        self.logits.clone().slice_dim(0, l - 1..l).squeeze_dim(0)
    }

    /// The final layer's boxes `[B, Q, 4]` (the original's `pred_boxes`).
    pub fn pred_boxes(&self) -> Tensor<B, 3> {
        let l = self.num_layers();
        self.boxes.clone().slice_dim(0, l - 1..l).squeeze_dim(0)
    }

    /// The auxiliary outputs `(logits, boxes)` of layers `0..L-1`, in order.
    pub fn aux_outputs(&self) -> Vec<(Tensor<B, 3>, Tensor<B, 3>)> {
        (0..self.num_layers().saturating_sub(1))
            .map(|i| {
                (
                    self.logits.clone().slice_dim(0, i..i + 1).squeeze_dim(0),
                    self.boxes.clone().slice_dim(0, i..i + 1).squeeze_dim(0),
                )
            })
            .collect()
    }
}

/// Everything a forward pass computes, for inspection, parity tests and attention maps.
#[derive(Debug, Clone)]
pub struct DetrIntermediates<B: Backend> {
    /// Backbone features `[B, C, h, w]`.
    pub features: Tensor<B, 4>,
    /// Padding mask at feature resolution `[B, h, w]`.
    pub feature_mask: Tensor<B, 3, Bool>,
    /// Position embedding `[B, D, h, w]`.
    pub pos: Tensor<B, 4>,
    /// Encoder memory `[B, h*w, D]`.
    pub memory: Tensor<B, 3>,
    /// Normalised decoder outputs `[L, B, Q, D]`.
    pub hs: Tensor<B, 4>,
    /// Last decoder layer's cross-attention `[B, H, Q, h*w]`.
    pub last_cross_weights: Tensor<B, 4>,
    /// The predictions.
    pub output: DetrOutput<B>,
}

/// DETR: End-to-End Object Detection with Transformers.
#[derive(Module, Debug)]
pub struct Detr<B: Backend> {
    /// ResNet backbone.
    pub backbone: ResNet<B>,
    /// Position embedding of the feature map.
    pub position: PositionEmbedding<B>,
    /// 1×1 convolution from backbone channels to the transformer width.
    pub input_proj: Conv2d<B>,
    /// Encoder–decoder transformer.
    pub transformer: Transformer<B>,
    /// Learned object queries `[Q, D]`.
    pub query_embed: Embedding<B>,
    /// Class head `D → num_classes + 1`.
    pub class_embed: Linear<B>,
    /// Box head: 3-layer MLP `D → D → D → 4`, sigmoid applied in `forward`.
    pub bbox_embed: Mlp<B>,
    /// Whether every decoder layer's predictions are returned.
    pub aux_loss: bool,
    /// Number of classes (without "no object").
    pub num_classes: usize,
}

impl DetrConfig {
    /// Builds a randomly initialised model (the original's initialisation), with the stem and
    /// `layer1` of the backbone frozen unless `train_stem_and_layer1`. Every parameter is
    /// initialised before this returns, so `B::seed(device, s)` followed by `init` is
    /// deterministic.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Detr<B>, ModelError> {
        self.validate()?;
        let kind = self.backbone;
        if self.dilation && !kind.is_bottleneck() {
            return Err(ModelError::InvalidConfig(format!(
                "dilation (DC5) needs a bottleneck ResNet (resnet50/101), not {}",
                kind.name()
            )));
        }
        let d = self.hidden_dim;
        let backbone = ResNet::new(
            kind,
            self.backbone_norm,
            self.backbone_width,
            self.dilation,
            device,
        );
        let backbone = if self.train_stem_and_layer1 {
            backbone
        } else {
            backbone.freeze_stem_and_layer1()
        };
        let position = match self.position_embedding {
            PositionEmbeddingKind::Sine => {
                PositionEmbedding::Sine(SinePositionEmbedding::new(d / 2))
            }
            PositionEmbeddingKind::Learned => {
                PositionEmbedding::Learned(LearnedPositionEmbedding::new(d / 2, device))
            }
        };
        let model = Detr {
            backbone,
            position,
            input_proj: Conv2dConfig::new([self.backbone_channels(), d], [1, 1]).init(device),
            transformer: Transformer::new(
                d,
                self.nheads,
                self.enc_layers,
                self.dec_layers,
                self.dim_feedforward,
                self.dropout,
                self.pre_norm,
                device,
            ),
            query_embed: EmbeddingConfig::new(self.num_queries, d).init(device),
            class_embed: LinearConfig::new(d, self.num_classes + 1).init(device),
            bbox_embed: Mlp::new(d, d, 4, 3, device),
            aux_loss: self.aux_loss,
            num_classes: self.num_classes,
        };
        // Burn initialises parameters lazily, on first use: force them now, in module order,
        // so that a seeded model does not depend on which parameters are used first.
        Ok(crate::params::materialize(model))
    }
}

impl<B: DetrBackend> Detr<B> {
    /// Predicts classes and boxes for a padded batch: `images [B, 3, H, W]` (normalised),
    /// `mask [B, H, W]` (`true` on padding).
    pub fn forward(&self, images: Tensor<B, 4>, mask: Tensor<B, 3, Bool>) -> DetrOutput<B> {
        self.forward_intermediates(images, mask).output
    }

    /// Like [`forward`](Self::forward), also returning the intermediate tensors.
    pub fn forward_intermediates(
        &self,
        images: Tensor<B, 4>,
        mask: Tensor<B, 3, Bool>,
    ) -> DetrIntermediates<B> {
        let features = self.backbone.forward(images);
        let [_, _, h, w] = features.dims();
        let feature_mask = resize_mask(mask, h, w);
        let pos = self.position.forward(feature_mask.clone());
        let src = self.input_proj.forward(features.clone());
        let out = self.transformer.forward(
            src,
            feature_mask.clone(),
            self.query_embed.weight.val(),
            pos.clone(),
            self.aux_loss,
        );
        let logits = linear(&self.class_embed, out.hs.clone());
        let boxes = sigmoid(self.bbox_embed.forward(out.hs.clone()));
        DetrIntermediates {
            features,
            feature_mask,
            pos,
            memory: out.memory,
            hs: out.hs,
            last_cross_weights: out.last_cross_weights,
            output: DetrOutput { logits, boxes },
        }
    }
}

impl<B: Backend> Detr<B> {
    /// Freezes the whole backbone (the original's `--lr_backbone 0`).
    pub fn freeze_backbone(mut self) -> Self {
        self.backbone = self.backbone.no_grad();
        self
    }

    /// Number of trainable parameters (those that require gradients). Gradient requirements
    /// exist only on an autodiff backend: on a plain backend this is 0.
    pub fn num_trainable_params(&self) -> usize {
        crate::params::count_params(self, true)
    }
}
