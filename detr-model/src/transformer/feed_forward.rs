//! The transformer's position-wise feed-forward block: `linear2(dropout(relu(linear1(x))))`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

use super::attention::xavier_linear;
use crate::backend::{dropout, DetrBackend};
use crate::linear::linear;

/// Feed-forward block of a transformer layer.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// `d_model → dim_feedforward`.
    pub linear1: Linear<B>,
    /// `dim_feedforward → d_model`.
    pub linear2: Linear<B>,
    /// Dropout between the two linear layers.
    pub dropout: Dropout,
}

impl<B: Backend> FeedForward<B> {
    /// Xavier-uniform weights, PyTorch default biases.
    pub fn new(d_model: usize, dim_feedforward: usize, dropout: f64, device: &B::Device) -> Self {
        Self {
            linear1: xavier_linear(d_model, dim_feedforward, 1.0, false, device),
            linear2: xavier_linear(dim_feedforward, d_model, 1.0, false, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }
}

impl<B: DetrBackend> FeedForward<B> {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = relu(linear(&self.linear1, x));
        linear(&self.linear2, dropout(&self.dropout, hidden))
    }
}
