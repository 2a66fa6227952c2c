//! DETR's encoder–decoder transformer.
//!
//! Tensors are batch-first here (`[B, S, D]`); the original is sequence-first (`[S, B, D]`).
//! The two layouts are transposes of each other; `docs/shapes.md` shows both.

pub mod attention;
pub mod decoder;
pub mod encoder;
pub mod feed_forward;

pub use attention::{AttentionOutput, MultiHeadAttention};
pub use decoder::{Decoder, DecoderLayer, DecoderOutput};
pub use encoder::{Encoder, EncoderLayer};
pub use feed_forward::FeedForward;

use burn::module::Module;
use burn::nn::LayerNormConfig;
use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::backend::DetrBackend;

/// The encoder and decoder.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Encoder stack.
    pub encoder: Encoder<B>,
    /// Decoder stack.
    pub decoder: Decoder<B>,
    /// Model width.
    pub d_model: usize,
}

/// Output of [`Transformer::forward`].
#[derive(Debug, Clone)]
pub struct TransformerOutput<B: Backend> {
    /// Decoder outputs after the final norm, `[L, B, Q, D]`.
    pub hs: Tensor<B, 4>,
    /// Encoder memory `[B, h*w, D]`.
    pub memory: Tensor<B, 3>,
    /// Last decoder layer's cross-attention weights `[B, H, Q, h*w]`.
    pub last_cross_weights: Tensor<B, 4>,
}

impl<B: Backend> Transformer<B> {
    /// Builds the transformer with the original's initialisation.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d_model: usize,
        nheads: usize,
        enc_layers: usize,
        dec_layers: usize,
        dim_feedforward: usize,
        dropout: f64,
        normalize_before: bool,
        device: &B::Device,
    ) -> Self {
        let encoder = Encoder {
            layers: (0..enc_layers)
                .map(|_| {
                    EncoderLayer::new(
                        d_model,
                        nheads,
                        dim_feedforward,
                        dropout,
                        normalize_before,
                        device,
                    )
                })
                .collect(),
            norm: normalize_before.then(|| LayerNormConfig::new(d_model).init(device)),
        };
        let decoder = Decoder {
            layers: (0..dec_layers)
                .map(|_| {
                    DecoderLayer::new(
                        d_model,
                        nheads,
                        dim_feedforward,
                        dropout,
                        normalize_before,
                        device,
                    )
                })
                .collect(),
            norm: LayerNormConfig::new(d_model).init(device),
        };
        Self {
            encoder,
            decoder,
            d_model,
        }
    }
}

impl<B: DetrBackend> Transformer<B> {
    /// `src`: projected features `[B, D, h, w]`; `mask`: `[B, h, w]` (`true` on padding);
    /// `query_embed`: `[Q, D]`; `pos`: `[B, D, h, w]`.
    pub fn forward(
        &self,
        src: Tensor<B, 4>,
        mask: Tensor<B, 3, Bool>,
        query_embed: Tensor<B, 2>,
        pos: Tensor<B, 4>,
        return_intermediate: bool,
    ) -> TransformerOutput<B> {
        let [b, d, h, w] = src.dims();
        let q = query_embed.dims()[0];
        let flat = |x: Tensor<B, 4>| x.reshape([b, d, h * w]).swap_dims(1, 2);
        let src = flat(src);
        let pos = flat(pos);
        let mask = mask.reshape([b, h * w]);
        let query_pos = query_embed.unsqueeze_dim::<3>(0).expand([b, q, d]);
        let tgt = Tensor::zeros([b, q, d], &src.device());
        let memory = self.encoder.forward(src, mask.clone(), pos.clone());
        let out = self.decoder.forward(
            tgt,
            memory.clone(),
            mask,
            pos,
            query_pos,
            return_intermediate,
        );
        TransformerOutput {
            hs: out.hs,
            memory,
            last_cross_weights: out.last_cross_weights,
        }
    }
}
