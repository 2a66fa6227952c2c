//! Decoder cross-attention maps: where each object query of the last decoder layer looks in
//! the image (the figure of the DETR paper).
//!
//! The last layer's attention weights `[B, heads, Q, h·w]` are averaged over the heads and
//! cut to each image's un-padded part of the feature map (`h_i × w_i`, from the padding mask
//! at feature resolution). [`AttentionMaps::overlay`] upsamples one query's map bilinearly
//! over the original image and blends it in as a heat map.

use burn::tensor::{Bool, Tensor};
use detr_model::DetrBackend;
use image::RgbImage;

use crate::draw::overlay_heatmap;

/// One image's attention maps, one per query, over its un-padded feature map.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    /// Rows of the un-padded feature map.
    pub height: usize,
    /// Columns of the un-padded feature map.
    pub width: usize,
    /// Number of queries.
    pub num_queries: usize,
    /// Row-major `[Q, height, width]` attention weights (mean over heads).
    pub weights: Vec<f32>,
}

impl AttentionMaps {
    /// The `height × width` map (row-major) of query `q`; empty when `q` is out of range.
    pub fn query(&self, q: usize) -> &[f32] {
        let n = self.height * self.width;
        self.weights.get(q * n..(q + 1) * n).unwrap_or(&[])
    }

    /// The map of query `q` as a heat map over `image` (any size: the map is stretched over
    /// the whole image), blended with weight `alpha`.
    pub fn overlay(&self, q: usize, image: &RgbImage, alpha: f32) -> RgbImage {
        overlay_heatmap(image, self.query(q), self.width, self.height, alpha)
    }
}

/// Splits a batch's last-layer cross-attention `[B, H, Q, h·w]` into per-image maps averaged
/// over heads, each cut to the image's un-padded `h_i × w_i` part according to
/// `feature_mask [B, h, w]` (`true` on padding; padding is bottom and right).
pub fn attention_maps<B: DetrBackend>(
    cross_weights: Tensor<B, 4>,
    feature_mask: Tensor<B, 3, Bool>,
) -> Vec<AttentionMaps> {
    let [b, _heads, q, hw] = cross_weights.dims();
    let [_, h, w] = feature_mask.dims();
    if h * w != hw {
        return Vec::new();
    }
    let mean = cross_weights.mean_dim(1).reshape([b, q, hw]);
    let data: Vec<f32> = mean
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    // Read through an int tensor: the CubeCL backends (wgpu, cuda) store bools as integers,
    // and their bool data does not read back as `bool`.
    let mask: Vec<bool> = feature_mask
        .int()
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v != 0)
        .collect();
    if data.len() != b * q * hw || mask.len() != b * hw {
        return Vec::new();
    }
    (0..b)
        .map(|i| {
            let m = &mask[i * hw..(i + 1) * hw];
            // Valid rows: un-padded cells of column 0; valid columns: of row 0.
            let hi = (0..h).filter(|&y| !m[y * w]).count().max(1);
            let wi = (0..w).filter(|&x| !m[x]).count().max(1);
            let mut weights = Vec::with_capacity(q * hi * wi);
            for k in 0..q {
                let base = (i * q + k) * hw;
                for y in 0..hi {
                    weights.extend_from_slice(&data[base + y * w..base + y * w + wi]);
                }
            }
            AttentionMaps {
                height: hi,
                width: wi,
                num_queries: q,
                weights,
            }
        })
        .collect()
}
