//! AdamW's update of one parameter as an operation of the backend
//! ([`DetrBackend::adamw_update`](super::DetrBackend::adamw_update)): the new parameter and
//! moments from the old ones and the gradient. Burn's AdamW composes it from about a dozen
//! element-wise operations per parameter (each a pass over memory, an allocation and, on the
//! CPU, a parallel region); a backend can do it in one pass (flex: [`cpu_adamw`](super::cpu_adamw)).
//!
//! The arithmetic is PyTorch's `torch.optim.AdamW` (and burn-optim's `AdamW`) without AMSGrad:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p(1 − lr·λ) − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`; the first update starts from
//! zero moments.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Scalar;

/// The scalars of one AdamW update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWUpdate {
    /// The learning rate.
    pub lr: f64,
    /// The first moment's decay (β₁).
    pub beta_1: f32,
    /// The second moment's decay (β₂).
    pub beta_2: f32,
    /// Added to the second moment's root (ε).
    pub epsilon: f32,
    /// The decoupled weight decay (λ).
    pub weight_decay: f32,
    /// The number of this update, 1 for the first.
    pub time: usize,
}

impl AdamWUpdate {
    /// The factor of the weight decay, `1 − lr·λ`.
    pub fn decay(&self) -> f32 {
        (1.0 - self.lr * self.weight_decay as f64) as f32
    }

    /// The bias corrections `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = self.time.min(i32::MAX as usize) as i32;
        (1.0 - self.beta_1.powi(t), 1.0 - self.beta_2.powi(t))
    }
}

/// A parameter's first and second moments.
#[derive(Debug, Clone)]
pub struct AdamWMoments<B: Backend> {
    /// The first moment (`m`).
    pub first: FloatTensor<B>,
    /// The second moment (`v`).
    pub second: FloatTensor<B>,
}

/// The update composed from Burn's float operations, in burn-optim's order: what backends
/// without their own kernel (the GPU backends, where Burn fuses element-wise operations) run.
/// `moments` is `None` before the first update.
pub fn adamw_update_composed<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moments: Option<AdamWMoments<B>>,
    update: &AdamWUpdate,
) -> (FloatTensor<B>, AdamWMoments<B>) {
    let scalar = |v: f32| Scalar::from(v);
    let weighted_grad = B::float_mul_scalar(grad.clone(), scalar(1.0 - update.beta_1));
    let squared = B::float_mul(grad.clone(), grad);
    let weighted_square = B::float_mul_scalar(squared, scalar(1.0 - update.beta_2));
    let (first, second) = match moments {
        Some(m) => (
            B::float_add(
                B::float_mul_scalar(m.first, scalar(update.beta_1)),
                weighted_grad,
            ),
            B::float_add(
                B::float_mul_scalar(m.second, scalar(update.beta_2)),
                weighted_square,
            ),
        ),
        None => (weighted_grad, weighted_square),
    };
    let (correction_1, correction_2) = update.bias_corrections();
    let m_hat = B::float_div_scalar(first.clone(), scalar(correction_1));
    let v_hat = B::float_div_scalar(second.clone(), scalar(correction_2));
    let denominator = B::float_add_scalar(B::float_sqrt(v_hat), scalar(update.epsilon));
    let delta = B::float_div(m_hat, denominator);
    let decayed = B::float_mul_scalar(param, scalar(update.decay()));
    let step = B::float_mul_scalar(delta, Scalar::from(update.lr));
    (B::float_sub(decayed, step), AdamWMoments { first, second })
}
