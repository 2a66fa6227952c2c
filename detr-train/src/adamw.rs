//! DETR's AdamW as a Burn [`SimpleOptimizer`]: burn-optim's `AdamW` arithmetic (PyTorch's
//! `torch.optim.AdamW` without AMSGrad) with each parameter's update one operation of the
//! backend ([`DetrBackend::adamw_update`]), which flex runs as a single pass over the
//! parameter, its gradient and moments instead of a dozen element-wise operations.
//!
//! The state is burn-optim's own [`AdamWState`], so the optimiser's records (and with them
//! every checkpoint written before) are unchanged.

use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use detr_model::backend::adamw::{AdamWMoments, AdamWUpdate};
use detr_model::DetrBackend;

/// AdamW's constants (the learning rate comes with each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetrAdamW {
    /// The first moment's decay (β₁).
    pub beta_1: f32,
    /// The second moment's decay (β₂).
    pub beta_2: f32,
    /// Added to the second moment's root (ε).
    pub epsilon: f32,
    /// The decoupled weight decay (λ).
    pub weight_decay: f32,
}

impl<B: DetrBackend> SimpleOptimizer<B> for DetrAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(0, |s| s.momentum.time) + 1;
        let moments = state.map(|s| AdamWMoments {
            first: s.momentum.moment_1.into_primitive().tensor(),
            second: s.momentum.moment_2.into_primitive().tensor(),
        });
        let update = AdamWUpdate {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let (param, moments) = B::adamw_update(
            tensor.into_primitive().tensor(),
            grad.into_primitive().tensor(),
            moments,
            &update,
        );
        let float = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
        let state = AdamWState {
            momentum: AdaptiveMomentumState {
                time,
                moment_1: float(moments.first),
                moment_2: float(moments.second),
                max_moment_2: None,
            },
        };
        (float(param), Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
