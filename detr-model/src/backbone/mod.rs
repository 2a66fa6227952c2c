//! DETR's backbone: a ResNet with frozen batch normalisation (or GroupNorm from scratch), and the padding mask brought
//! down to the resolution of its features.

pub mod frozen_batch_norm;
pub mod norm;
pub mod resnet;

pub use frozen_batch_norm::FrozenBatchNorm2d;
pub use norm::{group_norm_groups, BackboneNorm, BackboneNormKind};
pub use resnet::{Block, Downsample, ResNet};

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

/// Resizes a padding mask `[B, H, W]` to `[B, h, w]` with nearest-neighbour sampling, exactly
/// as `F.interpolate(mask[None].float(), size=(h, w)).to(torch.bool)[0]` does: source index
/// `floor(dst * (in / out))` computed in `f32`, clamped to `in - 1`.
pub fn resize_mask<B: Backend>(mask: Tensor<B, 3, Bool>, h: usize, w: usize) -> Tensor<B, 3, Bool> {
    let [_, in_h, in_w] = mask.dims();
    let device = mask.device();
    let rows = nearest_indices::<B>(in_h, h, &device);
    let cols = nearest_indices::<B>(in_w, w, &device);
    // Selected as floats: burn-flex 0.21 tags a bool tensor produced by `select` with a dtype
    // its own `bool_not` rejects.
    mask.float()
        .select(1, rows)
        .select(2, cols)
        .greater_elem(0.5)
}

fn nearest_indices<B: Backend>(
    input: usize,
    output: usize,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let scale = input as f32 / output as f32;
    let idx: Vec<i64> = (0..output)
        .map(|i| (((i as f32) * scale).floor() as usize).min(input - 1) as i64)
        .collect();
    Tensor::from_data(TensorData::new(idx, [output]), device)
}
