//! Parameter counting that tells trainable parameters from constants, and forcing Burn's
//! lazily initialised parameters.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor};

struct Counter {
    only_trainable: bool,
    count: usize,
    tensors: usize,
}

impl<B: Backend> ModuleVisitor<B> for Counter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.only_trainable || param.is_require_grad() {
            self.count += param.shape().num_elements();
            self.tensors += 1;
        }
    }
}

/// Counts parameters of `module`: all of them, or only those that require gradients.
pub fn count_params<B: Backend, M: Module<B>>(module: &M, only_trainable: bool) -> usize {
    let mut c = Counter {
        only_trainable,
        count: 0,
        tensors: 0,
    };
    module.visit(&mut c);
    c.count
}

/// Counts float tensors of `module` (trainable and constant), the size of its state dict.
pub fn count_tensors<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut c = Counter {
        only_trainable: false,
        count: 0,
        tensors: 0,
    };
    module.visit(&mut c);
    c.tensors
}

struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Initialises every lazily initialised parameter of `model` now, in module order (Burn
/// initialises a parameter when it is first read).
pub fn materialize<B: Backend, M: Module<B>>(model: M) -> M {
    model.visit(&mut Materialize);
    model
}
