//! The transformer decoder: object queries attend to each other and to the encoder memory.
//!
//! As in the original, the decoder's final LayerNorm is applied to a *copy* of every layer's
//! output for the auxiliary heads, while the next layer receives the un-normalised state.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{backend::Backend, Bool, Tensor};

use super::attention::MultiHeadAttention;
use super::feed_forward::FeedForward;
use crate::backend::{dropout, DetrBackend};

/// One decoder layer (post-norm by default, pre-norm when `normalize_before`).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Self-attention among the queries.
    pub self_attn: MultiHeadAttention<B>,
    /// Cross-attention from the queries to the encoder memory (`multihead_attn`).
    pub cross_attn: MultiHeadAttention<B>,
    /// Feed-forward block.
    pub ffn: FeedForward<B>,
    /// Norm around the self-attention.
    pub norm1: LayerNorm<B>,
    /// Norm around the cross-attention.
    pub norm2: LayerNorm<B>,
    /// Norm around the feed-forward block.
    pub norm3: LayerNorm<B>,
    /// Dropout on the self-attention residual.
    pub dropout1: Dropout,
    /// Dropout on the cross-attention residual.
    pub dropout2: Dropout,
    /// Dropout on the feed-forward residual.
    pub dropout3: Dropout,
    /// Pre-norm instead of post-norm.
    pub normalize_before: bool,
}

/// Output of one decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayerOutput<B: Backend> {
    /// The new (un-normalised) query state `[B, Q, D]`.
    pub tgt: Tensor<B, 3>,
    /// Cross-attention weights `[B, H, Q, S]`.
    pub cross_weights: Tensor<B, 4>,
}

impl<B: Backend> DecoderLayer<B> {
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
            cross_attn: MultiHeadAttention::new(d_model, nheads, dropout, device),
            ffn: FeedForward::new(d_model, dim_feedforward, dropout, device),
            norm1: LayerNormConfig::new(d_model).init(device),
            norm2: LayerNormConfig::new(d_model).init(device),
            norm3: LayerNormConfig::new(d_model).init(device),
            dropout1: DropoutConfig::new(dropout).init(),
            dropout2: DropoutConfig::new(dropout).init(),
            dropout3: DropoutConfig::new(dropout).init(),
            normalize_before,
        }
    }
}

impl<B: DetrBackend> DecoderLayer<B> {
    /// `tgt`, `query_pos`: `[B, Q, D]`; `memory`, `pos`: `[B, S, D]`; `memory_mask`: `[B, S]`.
    pub fn forward(
        &self,
        tgt: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        memory_mask: Tensor<B, 2, Bool>,
        pos: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
    ) -> DecoderLayerOutput<B> {
        let key = memory.clone() + pos;
        if self.normalize_before {
            let t2 = self.norm1.forward(tgt.clone());
            let qk = t2.clone() + query_pos.clone();
            let sa = self.self_attn.forward(qk.clone(), qk, t2, None).context;
            let tgt = tgt + dropout(&self.dropout1, sa);
            let t2 = self.norm2.forward(tgt.clone());
            let ca = self
                .cross_attn
                .forward(t2 + query_pos, key, memory, Some(memory_mask));
            let tgt = tgt + dropout(&self.dropout2, ca.context);
            let t2 = self.ffn.forward(self.norm3.forward(tgt.clone()));
            DecoderLayerOutput {
                tgt: tgt + dropout(&self.dropout3, t2),
                cross_weights: ca.weights,
            }
        } else {
            let qk = tgt.clone() + query_pos.clone();
            let sa = self
                .self_attn
                .forward(qk.clone(), qk, tgt.clone(), None)
                .context;
            let tgt = self.norm1.forward(tgt + dropout(&self.dropout1, sa));
            let ca =
                self.cross_attn
                    .forward(tgt.clone() + query_pos, key, memory, Some(memory_mask));
            let tgt = self
                .norm2
                .forward(tgt + dropout(&self.dropout2, ca.context));
            let t2 = self.ffn.forward(tgt.clone());
            DecoderLayerOutput {
                tgt: self.norm3.forward(tgt + dropout(&self.dropout3, t2)),
                cross_weights: ca.weights,
            }
        }
    }
}

/// The decoder stack with its final norm.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    /// The layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm, applied to a copy of each layer's output.
    pub norm: LayerNorm<B>,
}

/// Output of the decoder.
#[derive(Debug, Clone)]
pub struct DecoderOutput<B: Backend> {
    /// Normalised outputs `[L, B, Q, D]`: every layer when `return_intermediate`, else the last.
    pub hs: Tensor<B, 4>,
    /// Cross-attention weights of the last layer `[B, H, Q, S]`.
    pub last_cross_weights: Tensor<B, 4>,
}

impl<B: DetrBackend> Decoder<B> {
    /// Runs every layer, starting from `tgt` (zeros in DETR).
    pub fn forward(
        &self,
        tgt: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        memory_mask: Tensor<B, 2, Bool>,
        pos: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
        return_intermediate: bool,
    ) -> DecoderOutput<B> {
        let mut x = tgt;
        let mut outputs = Vec::with_capacity(self.layers.len());
        let mut last_cross_weights = None;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let out = layer.forward(
                x,
                memory.clone(),
                memory_mask.clone(),
                pos.clone(),
                query_pos.clone(),
            );
            x = out.tgt;
            last_cross_weights = Some(out.cross_weights);
            if return_intermediate || i + 1 == n {
                outputs.push(self.norm.forward(x.clone()).unsqueeze_dim::<4>(0));
            }
        }
        DecoderOutput {
            hs: Tensor::cat(outputs, 0),
            last_cross_weights: last_cross_weights.expect("a decoder has at least one layer"),
        }
    }
}
