//! Inference with DETR: predictions on images, pictures with boxes and attention maps, and
//! evaluation of a checkpoint on a COCO split. The `detr-infer` binary wraps this library.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use detr_infer::{inputs, labels::Labels, model, predict, run};
//! use detr_model::weights::WeightFormat;
//!
//! let device = Default::default();
//! let config = model::resolve_config(Some("r50"), None, None)?;
//! let (detr, report) = model::load_model::<Flex>(
//!     &config, "detr-r50-e632da11.pth".as_ref(), WeightFormat::Auto, &device)?;
//! let predictor = predict::Predictor::new(detr, device, datasets::transforms::ValidationTransform::default());
//! let inputs = inputs::collect_inputs(&["images/".into()])?;
//! let out = run::predict_files(&predictor, &Labels::coco(), &inputs,
//!     &run::PredictOptions::default(), |img| println!("{}", img.input.display_name()))?;
//! println!("{} detections, {} failures", out.records.len(), out.failures.len());
//! # Ok::<(), detr_infer::error::InferError>(())
//! ```

pub mod attention;
pub mod backend;
pub mod draw;
pub mod error;
pub mod evaluate;
pub mod inputs;
pub mod labels;
pub mod model;
pub mod output;
pub mod predict;
pub mod run;

pub use error::InferError;
