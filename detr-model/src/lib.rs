//! The DETR network on Burn (Carion et al., "End-to-End Object Detection with Transformers"),
//! written once for every backend: ResNet backbone with frozen batch norm, sine or learned
//! position embedding, encoder–decoder transformer with DETR's query/key/value roles, class and
//! box heads with auxiliary outputs, post-processing, and checkpoints in the official PyTorch,
//! Hugging Face and native Burn formats.

pub mod atomic_write;
pub mod backbone;
pub mod backend;
pub mod box_ops;
pub mod config;
pub mod detr;
pub mod error;
pub mod linear;
pub mod params;
pub mod position;
pub mod postprocess;
pub mod transformer;
pub mod weights;

pub use atomic_write::write_atomic;
pub use backend::{DetrAutodiffBackend, DetrBackend};
pub use config::{
    BackboneKind, BackboneNormKind, DetrConfig, PositionEmbeddingKind, Preset, PRESETS,
};
pub use detr::{Detr, DetrIntermediates, DetrOutput, Mlp};
pub use error::ModelError;
pub use postprocess::{postprocess, ImageDetections};
