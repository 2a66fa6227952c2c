//! Multi-head attention with DETR's roles: separate query, key and value inputs (positions are
//! added to queries and keys by the caller, never to values), a key padding mask, and dropout
//! on the attention weights after the softmax, as in PyTorch's `nn.MultiheadAttention`.
//!
//! Burn's own `MultiHeadAttention` applies dropout to the scores before the softmax, so DETR
//! uses this module instead.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::backend::{dropout, DetrBackend};
use crate::linear::linear;

/// Score given to padded keys before the softmax. Finite, so that a fully padded row gives
/// uniform weights instead of PyTorch's NaN; any real score is far above it.
pub const MASKED_SCORE: f32 = -1e9;

/// Multi-head attention (PyTorch's `in_proj` split into `q_proj`, `k_proj`, `v_proj`).
#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Linear<B>,
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    /// Dropout on the attention weights.
    pub dropout: Dropout,
    /// Number of heads.
    pub nheads: usize,
}

/// Output of [`MultiHeadAttention::forward`].
#[derive(Debug, Clone)]
pub struct AttentionOutput<B: Backend> {
    /// `[B, Lq, D]`.
    pub context: Tensor<B, 3>,
    /// Attention weights per head `[B, H, Lq, Lk]` (after dropout when training).
    pub weights: Tensor<B, 4>,
}

/// A linear layer initialised like the original transformer: Xavier-uniform weight scaled by
/// `gain`, and a bias that is zero (attention) or PyTorch's default `U(±1/√in)` (feed-forward).
pub(crate) fn xavier_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    gain: f64,
    zero_bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain })
        .init(device);
    let bias_init = if zero_bias {
        Initializer::Zeros
    } else {
        let bound = 1.0 / (d_in as f64).sqrt();
        Initializer::Uniform {
            min: -bound,
            max: bound,
        }
    };
    linear.bias = Some(bias_init.init([d_out], device));
    linear
}

impl<B: Backend> MultiHeadAttention<B> {
    /// Attention of width `d_model` with `nheads` heads and weight dropout `dropout`.
    ///
    /// Initialisation follows PyTorch + DETR: the packed `in_proj_weight [3D, D]` is
    /// Xavier-uniform as one matrix, i.e. bound `√(6 / 4D)`, which is Xavier on each `[D, D]`
    /// block with gain `1/√2`; the output projection is Xavier on `[D, D]`; biases are zero.
    pub fn new(d_model: usize, nheads: usize, dropout: f64, device: &B::Device) -> Self {
        let in_gain = std::f64::consts::FRAC_1_SQRT_2;
        Self {
            q_proj: xavier_linear(d_model, d_model, in_gain, true, device),
            k_proj: xavier_linear(d_model, d_model, in_gain, true, device),
            v_proj: xavier_linear(d_model, d_model, in_gain, true, device),
            out_proj: xavier_linear(d_model, d_model, 1.0, true, device),
            dropout: DropoutConfig::new(dropout).init(),
            nheads,
        }
    }
}

impl<B: DetrBackend> MultiHeadAttention<B> {
    /// Attends `query [B, Lq, D]` to `key [B, Lk, D]` / `value [B, Lk, D]`; keys where
    /// `key_padding_mask [B, Lk]` is `true` get no weight.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
        key_padding_mask: Option<Tensor<B, 2, Bool>>,
    ) -> AttentionOutput<B> {
        let [b, lq, d] = query.dims();
        let lk = key.dims()[1];
        let h = self.nheads;
        let hd = d / h;
        let split = |x: Tensor<B, 3>, l: usize| x.reshape([b, l, h, hd]).swap_dims(1, 2);
        let q = split(linear(&self.q_proj, query), lq).mul_scalar(1.0 / (hd as f64).sqrt());
        let k = split(linear(&self.k_proj, key), lk);
        let v = split(linear(&self.v_proj, value), lk);
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if let Some(mask) = key_padding_mask {
            scores = scores.mask_fill(mask.reshape([b, 1, 1, lk]), MASKED_SCORE);
        }
        let weights = dropout(&self.dropout, softmax(scores, 3));
        let context = weights
            .clone()
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, lq, d]);
        AttentionOutput {
            context: linear(&self.out_proj, context),
            weights,
        }
    }
}
