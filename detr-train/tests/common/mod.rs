//! Helpers shared by the test binaries that train through `detr_train::run` (each includes
//! this file as `mod common;`).

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use detr_train::config::TrainConfig;

/// The backend these tests train on.
pub type B = Autodiff<Flex>;

/// Every float parameter's values, in the module's order.
#[derive(Default)]
pub struct Values(pub Vec<Vec<f32>>);

impl<BB: Backend> ModuleVisitor<BB> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BB, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

/// Every parameter value of a module.
pub fn module_values<M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut v = Values::default();
    module.visit(&mut v);
    v.0
}

/// Every parameter value of the model (6 classes) in a training checkpoint.
pub fn checkpoint_values(cfg: &TrainConfig, path: &Path) -> Vec<Vec<f32>> {
    let device = Default::default();
    let (model, _) = detr_train::run::build_model::<B>(cfg, 6, &device).unwrap();
    let loaded = detr_train::checkpoint::load(path, model, &device).unwrap();
    module_values(&loaded.model)
}
