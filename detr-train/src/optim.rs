//! DETR's optimiser: AdamW with two parameter groups (backbone and the rest), each with its own
//! learning rate, after clipping all gradients together by one global norm.
//!
//! Burn 0.21 has neither per-group learning rates nor a global-norm clip
//! (`GradientClipping::Norm` clips every tensor on its own), so [`DetrOptimizer`] holds two
//! AdamW states and splits the gradients by parameter id: backbone gradients are stepped with
//! `lr × lr_backbone / lr`, the others with `lr`. A scheduler that scales `lr` therefore scales
//! both groups, like PyTorch's `StepLR` over two param groups.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use detr_model::Detr;

/// The AdamW state of one group (per parameter id).
pub type GroupRecord<B> = <OptimizerAdaptor<AdamW, Detr<B>, B> as Optimizer<Detr<B>, B>>::Record;

/// The options of [`DetrOptimizer`] (the original's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerOptions {
    /// Learning rate of everything outside the backbone (1e-4).
    pub lr: f64,
    /// Learning rate of the backbone (1e-5); 0 freezes it.
    pub lr_backbone: f64,
    /// AdamW's decoupled weight decay (1e-4).
    pub weight_decay: f32,
    /// AdamW's epsilon (1e-8, PyTorch's; Burn's default is 1e-5).
    pub epsilon: f32,
    /// Global gradient-norm bound (0.1); 0 or less disables clipping.
    pub clip_max_norm: f32,
}

impl Default for OptimizerOptions {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            lr_backbone: 1e-5,
            weight_decay: 1e-4,
            epsilon: 1e-8,
            clip_max_norm: 0.1,
        }
    }
}

/// AdamW over two parameter groups with a global-norm gradient clip.
#[derive(Clone)]
pub struct DetrOptimizer<B: AutodiffBackend> {
    options: OptimizerOptions,
    backbone_ids: HashSet<ParamId>,
    backbone: OptimizerAdaptor<AdamW, Detr<B>, B>,
    rest: OptimizerAdaptor<AdamW, Detr<B>, B>,
}

/// The saved state of a [`DetrOptimizer`]: one AdamW state per group.
#[derive(Record)]
pub struct DetrOptimizerRecord<B: AutodiffBackend> {
    /// Backbone group.
    pub backbone: GroupRecord<B>,
    /// Everything else.
    pub rest: GroupRecord<B>,
}

struct IdCollector<'a>(&'a mut HashSet<ParamId>);

impl<B: Backend> ModuleVisitor<B> for IdCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.insert(param.id);
    }
}

/// The ids of every float parameter of the model's backbone.
pub fn backbone_param_ids<B: Backend>(model: &Detr<B>) -> HashSet<ParamId> {
    let mut ids = HashSet::new();
    model.backbone.visit(&mut IdCollector(&mut ids));
    ids
}

impl<B: AutodiffBackend> DetrOptimizer<B> {
    /// A fresh optimiser for `model` (its backbone's parameter ids form the backbone group).
    pub fn new(model: &Detr<B>, options: OptimizerOptions) -> Self {
        let adamw = || {
            OptimizerAdaptor::from(
                AdamWConfig::new()
                    .with_epsilon(options.epsilon)
                    .with_weight_decay(options.weight_decay)
                    .with_beta_1(0.9)
                    .with_beta_2(0.999)
                    .build(),
            )
        };
        Self {
            options,
            backbone_ids: backbone_param_ids(model),
            backbone: adamw(),
            rest: adamw(),
        }
    }

    /// The options.
    pub fn options(&self) -> &OptimizerOptions {
        &self.options
    }

    /// The backbone's learning rate when the main one is `lr`.
    pub fn backbone_lr(&self, lr: f64) -> f64 {
        if self.options.lr > 0.0 {
            lr * self.options.lr_backbone / self.options.lr
        } else {
            self.options.lr_backbone
        }
    }

    /// Splits `grads` into the backbone's and the rest's.
    fn split(
        &self,
        model: &Detr<B>,
        mut grads: GradientsParams,
    ) -> (GradientsParams, GradientsParams) {
        let mut bb = GradientsParams::new();
        let mut mover = GradMover::<B> {
            from: &mut grads,
            to: &mut bb,
            ids: &self.backbone_ids,
            _b: Default::default(),
        };
        model.visit(&mut mover);
        (bb, grads)
    }

    /// Clips (when enabled) and applies one step; `lr` is the main group's learning rate.
    /// Returns the updated model and the total gradient norm before clipping, read back to
    /// the host once (the clip needs it there, and the training loop logs it).
    pub fn step_clipped(
        &mut self,
        lr: f64,
        model: Detr<B>,
        grads: GradientsParams,
    ) -> (Detr<B>, Option<f32>) {
        let grads = contiguous_grads::<B>(&model, grads);
        let norm = global_norm::<B>(&model, &grads).map(scalar_to_host::<B>);
        let grads = match norm {
            Some(total) if self.options.clip_max_norm > 0.0 => {
                scale_to_bound::<B>(&model, grads, total, self.options.clip_max_norm)
            }
            _ => grads,
        };
        let model = self.apply(lr, model, grads);
        (model, norm)
    }

    fn apply(&mut self, lr: f64, model: Detr<B>, grads: GradientsParams) -> Detr<B> {
        let (bb, rest) = self.split(&model, grads);
        let lr_bb = self.backbone_lr(lr);
        let model = if lr_bb > 0.0 && !bb.is_empty() {
            self.backbone.step(lr_bb, model, bb)
        } else {
            model
        };
        if rest.is_empty() {
            model
        } else {
            self.rest.step(lr, model, rest)
        }
    }
}

struct GradMover<'a, B: AutodiffBackend> {
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
    ids: &'a HashSet<ParamId>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradMover<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.ids.contains(&param.id) {
            if let Some(g) = self.from.remove::<B::InnerBackend, D>(param.id) {
                self.to.register::<B::InnerBackend, D>(param.id, g);
            }
        }
    }
}

struct SquareSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquareSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            // `g * g`, not `square()`: the CPU backend runs `square` as a generic power.
            let s = (g.clone() * g).sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

struct Contiguous<'a> {
    grads: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Contiguous<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let shape = g.shape();
            let n = shape.num_elements();
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.reshape([n]).reshape(shape));
        }
    }
}

/// Every gradient in row-major order. A convolution's weight gradient comes out of the
/// backward pass as a transposed view; the norm, the clip and AdamW's dozen element-wise
/// operations would each walk it by strides on the CPU backends. Flattening copies it once
/// (and is free for gradients already in order).
fn contiguous_grads<B: AutodiffBackend>(
    model: &Detr<B>,
    mut grads: GradientsParams,
) -> GradientsParams {
    model.visit::<Contiguous<'_>>(&mut Contiguous { grads: &mut grads });
    grads
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The L2 norm of all gradients of `model` together (PyTorch's `clip_grad_norm_` total norm);
/// `None` when there is no gradient.
pub fn global_norm<B: AutodiffBackend>(
    model: &Detr<B>,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut v = SquareSum::<B> { grads, sum: None };
    model.visit(&mut v);
    v.sum.map(|s| s.sqrt())
}

/// Scales every gradient by `min(1, max_norm / (total_norm + 1e-6))` like PyTorch's
/// `clip_grad_norm_`. Returns the clipped gradients and the total norm before clipping.
///
/// The norm is read back to the host so that the scaling is a plain scalar multiplication;
/// see [`scale_to_bound`].
pub fn clip_global_norm<B: AutodiffBackend>(
    model: &Detr<B>,
    grads: GradientsParams,
    max_norm: f32,
) -> (GradientsParams, Option<Tensor<B::InnerBackend, 1>>) {
    let Some(norm) = global_norm::<B>(model, &grads) else {
        return (grads, None);
    };
    let total = scalar_to_host::<B>(norm.clone());
    (
        scale_to_bound::<B>(model, grads, total, max_norm),
        Some(norm),
    )
}

/// Scales every gradient by `min(1, max_norm / (total_norm + 1e-6))`. Nothing is scaled when
/// the norm is already within the bound or is NaN; an infinite norm zeroes the gradients, as
/// in PyTorch (the loss check stops such a run before it gets here).
fn scale_to_bound<B: AutodiffBackend>(
    model: &Detr<B>,
    mut grads: GradientsParams,
    total_norm: f32,
    max_norm: f32,
) -> GradientsParams {
    let factor = max_norm / (total_norm + 1e-6);
    if factor.is_finite() && factor < 1.0 {
        let mut s = Scale {
            grads: &mut grads,
            factor,
        };
        model.visit::<Scale<'_>>(&mut s);
    }
    grads
}

/// The value of a one-element tensor (NaN if it cannot be read).
fn scalar_to_host<B: AutodiffBackend>(t: Tensor<B::InnerBackend, 1>) -> f32 {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

impl<B: AutodiffBackend> Optimizer<Detr<B>, B> for DetrOptimizer<B> {
    type Record = DetrOptimizerRecord<B>;

    fn step(&mut self, lr: f64, module: Detr<B>, grads: GradientsParams) -> Detr<B> {
        self.step_clipped(lr, module, grads).0
    }

    fn step_multi(&mut self, lr: f64, module: Detr<B>, mut grads: MultiGradientsParams) -> Detr<B> {
        // Sum the gradients of every device onto one set, then step once.
        let mut merged = GradientsParams::new();
        let mut m = MergeMulti::<B> {
            from: &mut grads,
            to: &mut merged,
            _b: Default::default(),
        };
        module.visit(&mut m);
        self.step(lr, module, merged)
    }

    fn to_record(&self) -> Self::Record {
        DetrOptimizerRecord {
            backbone: self.backbone.to_record(),
            rest: self.rest.to_record(),
        }
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.backbone = self.backbone.load_record(record.backbone);
        self.rest = self.rest.load_record(record.rest);
        self
    }
}

struct MergeMulti<'a, B: AutodiffBackend> {
    from: &'a mut MultiGradientsParams,
    to: &'a mut GradientsParams,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MergeMulti<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some((g, _)) = self.from.remove::<B::InnerBackend, D>(param.id) {
            self.to.register::<B::InnerBackend, D>(param.id, g);
        }
    }
}
