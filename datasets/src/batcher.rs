//! Padded batches for DETR (the original's `NestedTensor`): images padded bottom/right to the
//! largest height and width of the batch, a mask that is `true` on padding, and the targets.

use burn::tensor::{backend::Backend, Bool, Tensor};

/// The training/evaluation target of one image after transforms (kept on the host).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectionTarget {
    /// Boxes as `(cx, cy, w, h)` normalised by the transformed image size, in `[0, 1]`.
    pub boxes: Vec<[f32; 4]>,
    /// Class index of each box (the COCO `category_id`).
    pub labels: Vec<usize>,
    /// COCO image id.
    pub image_id: u64,
    /// COCO `area` of each box (for evaluation).
    pub area: Vec<f32>,
    /// Crowd flag of each box.
    pub iscrowd: Vec<bool>,
    /// Original image size `(height, width)`.
    pub orig_size: [usize; 2],
    /// Size after transforms `(height, width)`, before padding.
    pub size: [usize; 2],
}

/// A padded batch on a device.
#[derive(Debug, Clone)]
pub struct DetrBatch<B: Backend> {
    /// Normalised images `[B, 3, H, W]`, zero on padding.
    pub images: Tensor<B, 4>,
    /// `[B, H, W]`, `true` on padding.
    pub mask: Tensor<B, 3, Bool>,
    /// One target per image, in batch order.
    pub targets: Vec<DetectionTarget>,
}
