//! COCO-format detection data for DETR: the JSON model, validation, targets, transforms,
//! padded batches, a synthetic dataset generator and COCO evaluation.

pub mod batcher;
pub mod coco;
pub mod coco_eval;
pub mod results;

pub use batcher::{DetectionTarget, DetrBatch};
pub use coco::{CocoAnnotation, CocoCategory, CocoFile, CocoImage};
