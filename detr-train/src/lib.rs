//! Training DETR.

pub mod assignment;
mod box_pairs;
pub mod config;
pub mod criterion;
mod data_parallel;
pub mod error;
pub mod matcher;
pub mod optim;
pub mod pictures;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use criterion::{CriterionError, CriterionOutput, SetCriterion, SetCriterionConfig};
pub use error::TrainError;
pub use matcher::{
    HungarianMatcher, HungarianMatcherConfig, ImageMatch, MatcherError, TargetBatch,
};
pub use optim::{DetrOptimizer, OptimizerOptions};
pub use schedule::StepLr;
pub use trainer::{TrainState, Trainer};
