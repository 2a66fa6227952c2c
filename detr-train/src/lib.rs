//! Training DETR.

mod box_pairs;
pub mod criterion;
pub mod matcher;

pub use criterion::{CriterionError, CriterionOutput, SetCriterion, SetCriterionConfig};
pub use matcher::{
    HungarianMatcher, HungarianMatcherConfig, ImageMatch, MatcherError, TargetBatch,
};
