//! [`ModelEma`]: an exponential moving average of the weights (`--ema_decay`), used for
//! validation, `checkpoint_best.mpk` and the final `model.mpk` when enabled, as today's DETR
//! trainers offer (RF-DETR's `ModelEma`). Off by default, so the original recipe stays exact.
//!
//! After every optimiser step each float parameter becomes `ema + (weights − ema) × (1 −
//! decay)`; a parameter that did not change (frozen layers, FrozenBatchNorm2d statistics)
//! stays bit-identical. The average is kept on the backend without autodiff and is saved
//! beside each training checkpoint (`<checkpoint>.ema.mpk`), so a resumed run continues it.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use detr_model::{Detr, DetrConfig};

use crate::error::TrainError;

/// The moving average of a model's weights.
#[derive(Debug, Clone)]
pub struct ModelEma<B: Backend> {
    decay: f64,
    model: Detr<B>,
}

/// Every float parameter, flattened, in visiting order.
struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().reshape([-1]));
    }
}

/// Blends each parameter towards the visited model's value of the same position.
struct Blend<B: Backend> {
    current: std::vec::IntoIter<Tensor<B, 1>>,
    rate: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let value = match self.current.next() {
            Some(now) => {
                let step = (now.reshape(ema.shape()) - ema.clone()).mul_scalar(self.rate);
                ema + step
            }
            None => ema,
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Gives every parameter a new id (the native loader tells loaded parameters by their id, and
/// the average shares the training model's).
struct FreshIds;

impl<B: Backend> ModuleMapper<B> for FreshIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), value, mapper)
    }
}

impl<B: Backend> ModelEma<B> {
    /// Starts the average at `model`'s weights.
    pub fn new(model: Detr<B>, decay: f64) -> Self {
        Self { decay, model }
    }

    /// Moves the average one step towards `current` (a model of the same architecture).
    pub fn update(&mut self, current: &Detr<B>) {
        let mut flat = Flatten(Vec::new());
        current.visit(&mut flat);
        let mut blend = Blend {
            current: flat.0.into_iter(),
            rate: 1.0 - self.decay,
        };
        self.model = self.model.clone().map(&mut blend);
    }

    /// The averaged model.
    pub fn model(&self) -> &Detr<B> {
        &self.model
    }

    /// Where the average of the training checkpoint `checkpoint` is saved.
    pub fn path_beside(checkpoint: &Path) -> PathBuf {
        let mut name = checkpoint.file_name().unwrap_or_default().to_os_string();
        name.push(".ema.mpk");
        checkpoint.with_file_name(name)
    }

    /// Saves the average beside the training checkpoint `checkpoint` (atomically).
    pub fn save_beside(&self, checkpoint: &Path, config: &DetrConfig) -> Result<(), TrainError> {
        detr_model::weights::save_record(&self.model, config, &Self::path_beside(checkpoint))?;
        Ok(())
    }

    /// The average saved beside `checkpoint`, or `None` when there is none (a checkpoint
    /// written without `--ema_decay`: the average starts at its weights).
    pub fn load_beside(
        checkpoint: &Path,
        model: Detr<B>,
        decay: f64,
    ) -> Result<Option<Self>, TrainError> {
        let path = Self::path_beside(checkpoint);
        if !path.is_file() {
            return Ok(None);
        }
        let (model, _) = detr_model::weights::load_checkpoint(
            model.map(&mut FreshIds),
            &path,
            detr_model::weights::WeightFormat::Auto,
            detr_model::weights::LoadOptions {
                strict: true,
                reinit_class_head: false,
            },
        )?;
        Ok(Some(Self { decay, model }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn values(m: &Detr<B>) -> Vec<Vec<f32>> {
        let mut f = Flatten(Vec::new());
        m.visit(&mut f);
        f.0.into_iter()
            .map(|t| t.into_data().convert::<f32>().to_vec().unwrap())
            .collect()
    }

    #[test]
    fn the_average_moves_by_one_minus_decay_and_keeps_unchanged_weights() {
        let device = Default::default();
        let config = DetrConfig::preset("tiny")
            .unwrap()
            .with_num_classes(3)
            .with_num_queries(2)
            .with_enc_layers(1)
            .with_dec_layers(1);
        B::seed(&device, 1);
        let a = config.init::<B>(&device).unwrap();
        B::seed(&device, 2);
        let b = config.init::<B>(&device).unwrap();
        let mut ema = ModelEma::new(a.clone(), 0.75);
        ema.update(&a);
        assert_eq!(
            values(ema.model()),
            values(&a),
            "unchanged weights stay exact"
        );
        ema.update(&b);
        let (va, vb, ve) = (values(&a), values(&b), values(ema.model()));
        for ((x, y), e) in va.iter().zip(&vb).zip(&ve) {
            for ((x, y), e) in x.iter().zip(y).zip(e) {
                let want = x + (y - x) * 0.25;
                assert!(
                    (e - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{e} vs {want}"
                );
            }
        }
    }
}
