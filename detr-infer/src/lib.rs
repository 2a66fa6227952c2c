//! Inference with DETR: predictions on images, pictures with boxes and attention maps, and
//! evaluation of a checkpoint on a COCO split. The `detr-infer` binary wraps this library.

pub mod draw;
