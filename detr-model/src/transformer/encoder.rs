//! The transformer encoder: self-attention over the flattened feature map, with the position
//! embedding added to queries and keys and padded positions masked out as keys.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{backend::Backend, Bool, Tensor};

use super::attention::MultiHeadAttention;
use super::feed_forward::FeedForward;
use crate::backend::{dropout, DetrBackend};

/// One encoder layer (post-norm by default, pre-norm when `normalize_before`).
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: MultiHeadAttention<B>,
    /// Feed-forward block.
    pub ffn: FeedForward<B>,
    /// Norm around the attention.
    pub norm1: LayerNorm<B>,
    /// Norm around the feed-forward block.
    pub norm2: LayerNorm<B>,
    /// Dropout on the attention's residual branch.
    pub dropout1: Dropout,
    /// Dropout on the feed-forward residual branch.
    pub dropout2: Dropout,
    /// Pre-norm instead of post-norm.
    pub normalize_before: bool,
}

impl<B: Backend> EncoderLayer<B> {
    /// A layer of width `d_model`.
    pub fn new(
        d_model: usize,
        nheads: usize,
        dim_feedforward: usize,
        dropout: f64,
        normalize_before: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            self_attn: MultiHeadAttention::new(d_model, nheads, dropout, device),
            ffn: FeedForward::new(d_model, dim_feedforward, dropout, device),
            norm1: LayerNormConfig::new(d_model).init(device),
            norm2: LayerNormConfig::new(d_model).init(device),
            dropout1: DropoutConfig::new(dropout).init(),
            dropout2: DropoutConfig::new(dropout).init(),
            normalize_before,
        }
    }
}

impl<B: DetrBackend> EncoderLayer<B> {
    /// `src`, `pos`: `[B, S, D]`; `mask`: `[B, S]`, `true` on padding.
    pub fn forward(
        &self,
        src: Tensor<B, 3>,
        mask: Tensor<B, 2, Bool>,
        pos: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        if self.normalize_before {
            let src2 = self.norm1.forward(src.clone());
            let qk = src2.clone() + pos;
            let attn = self
                .self_attn
                .forward(qk.clone(), qk, src2, Some(mask))
                .context;
            let src = src + dropout(&self.dropout1, attn);
            let src2 = self.ffn.forward(self.norm2.forward(src.clone()));
            src + dropout(&self.dropout2, src2)
        } else {
            let qk = src.clone() + pos;
            let attn = self
                .self_attn
                .forward(qk.clone(), qk, src.clone(), Some(mask))
                .context;
            let src = self.norm1.forward(src + dropout(&self.dropout1, attn));
            let src2 = self.ffn.forward(src.clone());
            self.norm2.forward(src + dropout(&self.dropout2, src2))
        }
    }
}

/// The encoder stack; pre-norm models end with a LayerNorm, post-norm ones do not.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// The layers.
    pub layers: Vec<EncoderLayer<B>>,
    /// Final norm (pre-norm only).
    pub norm: Option<LayerNorm<B>>,
}

impl<B: DetrBackend> Encoder<B> {
    /// Runs every layer: `[B, S, D]` → memory `[B, S, D]`.
    pub fn forward(
        &self,
        src: Tensor<B, 3>,
        mask: Tensor<B, 2, Bool>,
        pos: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let mut x = src;
        for layer in &self.layers {
            x = layer.forward(x, mask.clone(), pos.clone());
        }
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }
}
