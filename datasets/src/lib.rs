//! COCO-format detection data for DETR: the JSON model, validation, targets, transforms,
//! padded batches, a synthetic dataset generator and COCO evaluation.
//!
//! Data flow: [`CocoFile`] (serde model) → [`validate`] → [`CocoSplit`] (decode, prepare the
//! target like the original's `ConvertCocoPolysToMask`, apply a [`Pipeline`] of [`transforms`])
//! → [`DetrItem`] → [`DetrDataLoader`] / [`DetrBatcher`] → padded [`DetrBatch`].
//! [`synthetic::generate`] writes a COCO-format dataset of coloured shapes.

pub mod batcher;
pub mod coco;
pub mod coco_eval;
pub mod dataset;
pub mod error;
pub mod jpeg;
pub mod layout;
pub mod loader;
pub mod resample;
pub mod results;
pub mod rng;
pub mod synthetic;
pub mod target;
pub mod transforms;
pub mod validate;

pub use batcher::{collate, DetrBatcher, DetrItem, HostBatch};
pub use batcher::{DetectionTarget, DetrBatch};
pub use coco::{CocoAnnotation, CocoCategory, CocoFile, CocoImage};
pub use dataset::{CocoSplit, ImageRecord, ItemSource, OpenOptions};
pub use error::DatasetError;
pub use layout::{find_splits, train_val_splits, FoundSplit, Layout, SplitPaths};
pub use loader::{DetrDataLoader, LoaderConfig, Shard};
pub use rng::SeedRng;
pub use synthetic::{generate, ImageFormat, SyntheticDataset, SyntheticOptions, SHAPE_NAMES};
pub use target::{prepare_target, DroppedBoxes, PixelTarget};
pub use transforms::{Normalize, Pipeline, Sample, Transform, TransformConfig};
pub use validate::{check_split, DatasetStats, ImageCheck, ValidationReport};
