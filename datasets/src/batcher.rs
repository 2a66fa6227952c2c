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

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::TensorData;

/// One transformed and normalised image with its target, ready to be batched.
#[derive(Debug, Clone, PartialEq)]
pub struct DetrItem {
    /// Normalised image, channel-major `[3, height, width]`.
    pub image: Vec<f32>,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// The target (boxes normalised by `height`×`width`).
    pub target: DetectionTarget,
}

/// A padded batch on the host: what [`DetrBatch`] is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `[B, 3, H, W]` row-major, zero on padding.
    pub images: Vec<f32>,
    /// `[B, H, W]` row-major, `true` on padding.
    pub mask: Vec<bool>,
    /// `[B, 3, H, W]`.
    pub shape: [usize; 4],
    /// One target per image.
    pub targets: Vec<DetectionTarget>,
}

/// Pads images to the largest height and width of the batch (bottom and right, with zeros) and
/// builds the padding mask (`true` on padding), like the original's
/// `nested_tensor_from_tensor_list`.
pub fn collate(items: Vec<DetrItem>) -> HostBatch {
    let b = items.len();
    let h = items.iter().map(|i| i.height).max().unwrap_or(0);
    let w = items.iter().map(|i| i.width).max().unwrap_or(0);
    let mut images = vec![0f32; b * 3 * h * w];
    let mut mask = vec![true; b * h * w];
    let mut targets = Vec::with_capacity(b);
    for (n, item) in items.into_iter().enumerate() {
        let (ih, iw) = (item.height, item.width);
        for c in 0..3 {
            for y in 0..ih {
                let src = &item.image[(c * ih + y) * iw..(c * ih + y + 1) * iw];
                let dst = ((n * 3 + c) * h + y) * w;
                images[dst..dst + iw].copy_from_slice(src);
            }
        }
        for y in 0..ih {
            let dst = (n * h + y) * w;
            mask[dst..dst + iw].fill(false);
        }
        targets.push(item.target);
    }
    HostBatch {
        images,
        mask,
        shape: [b, 3, h, w],
        targets,
    }
}

impl HostBatch {
    /// Moves the batch to `device`.
    pub fn to_device<B: Backend>(self, device: &B::Device) -> DetrBatch<B> {
        let [b, c, h, w] = self.shape;
        let images = Tensor::<B, 4>::from_data(TensorData::new(self.images, [b, c, h, w]), device);
        let mask = Tensor::<B, 3, Bool>::from_data(TensorData::new(self.mask, [b, h, w]), device);
        DetrBatch {
            images,
            mask,
            targets: self.targets,
        }
    }
}

/// Burn [`Batcher`] from [`DetrItem`]s to a padded [`DetrBatch`]; usable with Burn's
/// `DataLoaderBuilder` as well as with this crate's [`crate::loader::DetrDataLoader`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DetrBatcher;

impl<B: Backend> Batcher<B, DetrItem, DetrBatch<B>> for DetrBatcher {
    fn batch(&self, items: Vec<DetrItem>, device: &B::Device) -> DetrBatch<B> {
        collate(items).to_device(device)
    }
}
