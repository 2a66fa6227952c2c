//! A model's gradients as one flat vector, in the model's parameter order, and back: what the
//! processes of a data-parallel step sum in one all-reduce ([`super::ProcessGroup::sum_tensor`]).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The gradients of `module`'s trainable parameters, removed from `grads`, each flattened, in
/// the module's order (zeros for a parameter without one, and for every parameter when
/// `failed`: a failed step adds nothing to the sum but takes part in it).
pub fn flatten_gradients<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &mut GradientsParams,
    device: &B::Device,
    failed: bool,
) -> Vec<Tensor<B::InnerBackend, 1>> {
    let mut flatten = Flatten::<B> {
        grads,
        parts: Vec::new(),
        device: device.clone(),
        failed,
    };
    module.visit(&mut flatten);
    flatten.parts
}

/// Cuts `flat` (as made by [`flatten_gradients`], possibly followed by other values) back into
/// one gradient per trainable parameter of `module`.
pub fn unflatten_gradients<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    flat: Tensor<B::InnerBackend, 1>,
) -> GradientsParams {
    let mut unflatten = Unflatten::<B> {
        flat,
        at: 0,
        grads: GradientsParams::new(),
    };
    module.visit(&mut unflatten);
    unflatten.grads
}

/// Collects the gradients of the trainable parameters, flattened, in the model's order
/// (zeros for a parameter without one, and for every parameter of a failed step).
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    device: B::Device,
    failed: bool,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let n = value.shape().num_elements();
        let grad = self
            .grads
            .remove::<B::InnerBackend, D>(param.id)
            .filter(|_| !self.failed)
            .map(|g| g.reshape([n]).to_device(&self.device))
            .unwrap_or_else(|| Tensor::zeros([n], &self.device));
        self.parts.push(grad);
    }
}

/// Cuts the summed flat vector back into one gradient per trainable parameter.
struct Unflatten<B: AutodiffBackend> {
    flat: Tensor<B::InnerBackend, 1>,
    at: usize,
    grads: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let shape = value.shape();
        let n = shape.num_elements();
        let part = self.flat.clone().slice(self.at..self.at + n);
        self.at += n;
        self.grads
            .register::<B::InnerBackend, D>(param.id, part.reshape(shape));
    }
}
