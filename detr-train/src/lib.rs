//! Training DETR.
