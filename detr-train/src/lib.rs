//! Training DETR on Burn's `Learner`: the Hungarian matcher and set criterion, DETR's
//! optimiser and schedule, the training module ([`step::DetrTraining`], a `TrainStep` and
//! `InferenceStep`), the epoch loop ([`strategy::DetrStrategy`]) and the whole run
//! ([`run::run`]).

pub mod adamw;
pub mod assignment;
mod box_pairs;
pub mod checkpoint;
pub mod components;
pub mod config;
pub mod criterion;
pub mod distributed;
pub mod ema;
pub mod error;
pub mod history;
pub mod loader;
pub mod matcher;
pub mod metrics;
pub mod official_checkpoint;
pub mod optim;
pub mod pictures;
pub mod plot;
pub mod renderer;
pub mod resolve;
pub mod run;
pub mod schedule;
pub mod splits;
pub mod step;
pub mod strategy;
pub mod trainer;

pub use checkpoint::TrainState;
pub use components::{Component, LayerLosses, LossComponents};
pub use config::TrainConfig;
pub use criterion::{CriterionError, CriterionOutput, SetCriterion, SetCriterionConfig};
pub use error::TrainError;
pub use matcher::{
    HungarianMatcher, HungarianMatcherConfig, ImageMatch, MatcherError, TargetBatch,
};
pub use optim::{DetrOptimizer, OptimizerOptions};
pub use schedule::{StepLr, StepLrScheduler};
pub use step::{DetrTraining, StepBatch};
pub use trainer::Trainer;
