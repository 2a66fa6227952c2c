//! DETR's optimiser: AdamW with two parameter groups (backbone and the rest), each with its own
//! learning rate, after clipping all gradients together by one global norm.
//!
//! Burn 0.21 has neither per-group learning rates nor a global-norm clip
//! (`GradientClipping::Norm` clips every tensor on its own), so [`DetrOptimizer`] holds two
//! AdamW states and splits the gradients by parameter id: backbone gradients are stepped with
//! `lr × lr_backbone / lr`, the others with `lr`. A scheduler that scales `lr` therefore scales
//! both groups, like PyTorch's `StepLR` over two param groups.
//!
//! The backbone group is derived from the module at every step (parameter ids come from the
//! record after a checkpoint is loaded, so ids collected at construction could be stale).
//! Clones of a [`DetrOptimizer`] share one state: the training strategy keeps a handle to
//! write the optimiser into its checkpoints while Burn's `Learner` owns the optimiser.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use detr_model::{Detr, DetrAutodiffBackend};

use crate::adamw::DetrAdamW;
use crate::step::DetrTraining;

/// The AdamW state of one group (per parameter id).
pub type GroupRecord<B> =
    <OptimizerAdaptor<DetrAdamW, Detr<B>, B> as Optimizer<Detr<B>, B>>::Record;

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

/// AdamW over two parameter groups with a global-norm gradient clip. Clones share one state
/// (see the module documentation).
#[derive(Clone)]
pub struct DetrOptimizer<B: DetrAutodiffBackend> {
    options: OptimizerOptions,
    state: Arc<Mutex<Groups<B>>>,
}

struct Groups<B: DetrAutodiffBackend> {
    backbone: OptimizerAdaptor<DetrAdamW, Detr<B>, B>,
    rest: OptimizerAdaptor<DetrAdamW, Detr<B>, B>,
    last_grad_norm: Option<f32>,
}

/// The saved state of a [`DetrOptimizer`]: one AdamW state per group.
#[derive(Record)]
pub struct DetrOptimizerRecord<B: DetrAutodiffBackend> {
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

/// The ids of every float parameter of the original's backbone group: the ResNet's and a
/// learned position embedding's (the original's `backbone.1`, whose names contain
/// `backbone`, so `main.py` trains them at `--lr_backbone`).
pub fn backbone_param_ids<B: Backend>(model: &Detr<B>) -> HashSet<ParamId> {
    let mut ids = HashSet::new();
    model.backbone.visit(&mut IdCollector(&mut ids));
    model.position.visit(&mut IdCollector(&mut ids));
    ids
}

impl<B: DetrAutodiffBackend> DetrOptimizer<B> {
    /// A fresh optimiser for `model` (its backbone's parameter ids form the backbone group).
    pub fn new(model: &Detr<B>, options: OptimizerOptions) -> Self {
        let adamw = || {
            OptimizerAdaptor::from(DetrAdamW {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: options.epsilon,
                weight_decay: options.weight_decay,
            })
        };
        let _ = model;
        Self {
            options,
            state: Arc::new(Mutex::new(Groups {
                backbone: adamw(),
                rest: adamw(),
                last_grad_norm: None,
            })),
        }
    }

    fn groups(&self) -> MutexGuard<'_, Groups<B>> {
        // A panic while the lock was held cannot leave the groups half-updated in a way that
        // matters more than the panic itself: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The total gradient norm (before clipping) of the last step, if any.
    pub fn last_grad_norm(&self) -> Option<f32> {
        self.groups().last_grad_norm
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
    fn split(model: &Detr<B>, mut grads: GradientsParams) -> (GradientsParams, GradientsParams) {
        let ids = backbone_param_ids(model);
        let mut bb = GradientsParams::new();
        let mut mover = GradMover::<B> {
            from: &mut grads,
            to: &mut bb,
            ids: &ids,
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
        self.groups().last_grad_norm = norm;
        (model, norm)
    }

    fn apply(&mut self, lr: f64, model: Detr<B>, grads: GradientsParams) -> Detr<B> {
        let (bb, rest) = Self::split(&model, grads);
        let lr_bb = self.backbone_lr(lr);
        let mut groups = self.groups();
        let model = if lr_bb > 0.0 && !bb.is_empty() {
            groups.backbone.step(lr_bb, model, bb)
        } else {
            model
        };
        if rest.is_empty() {
            model
        } else {
            groups.rest.step(lr, model, rest)
        }
    }

    /// The state of both groups (what a checkpoint stores).
    pub fn record(&self) -> DetrOptimizerRecord<B> {
        let g = self.groups();
        DetrOptimizerRecord {
            backbone: g.backbone.to_record(),
            rest: g.rest.to_record(),
        }
    }

    /// Restores both groups from a checkpoint (in place: every clone sees it).
    pub fn restore(&self, record: DetrOptimizerRecord<B>) {
        let mut g = self.groups();
        g.backbone = g.backbone.clone().load_record(record.backbone);
        g.rest = g.rest.clone().load_record(record.rest);
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

impl<B: DetrAutodiffBackend> Optimizer<Detr<B>, B> for DetrOptimizer<B> {
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
        self.record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        self.restore(record);
        self
    }
}

/// The optimiser of Burn's `Learner`, whose module is the training wrapper.
impl<B: DetrAutodiffBackend> Optimizer<DetrTraining<B>, B> for DetrOptimizer<B> {
    type Record = DetrOptimizerRecord<B>;

    fn step(
        &mut self,
        lr: f64,
        mut module: DetrTraining<B>,
        grads: GradientsParams,
    ) -> DetrTraining<B> {
        module.model = self.step_clipped(lr, module.model, grads).0;
        module
    }

    fn step_multi(
        &mut self,
        lr: f64,
        mut module: DetrTraining<B>,
        grads: MultiGradientsParams,
    ) -> DetrTraining<B> {
        module.model = <Self as Optimizer<Detr<B>, B>>::step_multi(self, lr, module.model, grads);
        module
    }

    fn to_record(&self) -> Self::Record {
        self.record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        self.restore(record);
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
