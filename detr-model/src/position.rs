//! Position embeddings of the feature map: DETR's fixed sine embedding (computed from the
//! un-padded extent of every image) and the learned row/column embedding.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

/// Temperature of the sine embedding.
pub const SINE_TEMPERATURE: f64 = 10000.0;
/// Largest feature-map side the learned embedding covers.
pub const LEARNED_MAX_SIZE: usize = 50;

/// The position embedding of a DETR model.
// One instance per model: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PositionEmbedding<B: Backend> {
    /// The fixed sine embedding.
    Sine(SinePositionEmbedding),
    /// The learned embedding.
    Learned(LearnedPositionEmbedding<B>),
}

impl<B: Backend> PositionEmbedding<B> {
    /// Embeds positions for a feature mask `[B, h, w]` (`true` on padding): `[B, hidden, h, w]`.
    pub fn forward(&self, mask: Tensor<B, 3, Bool>) -> Tensor<B, 4> {
        match self {
            Self::Sine(sine) => sine.forward(mask),
            Self::Learned(learned) => learned.forward(mask),
        }
    }
}

/// Sine/cosine embedding with `num_pos_feats = hidden / 2` per axis, normalised to `2π` over
/// each image's un-padded extent (eps 1e-6), output `cat(pos_y, pos_x)` along channels, with
/// `sin` on even and `cos` on odd features.
#[derive(Module, Debug, Clone)]
pub struct SinePositionEmbedding {
    /// Features per axis (`hidden_dim / 2`).
    pub num_pos_feats: usize,
    /// Temperature (10000).
    pub temperature: f64,
    /// Whether coordinates are normalised to `[0, scale]` (true in DETR).
    pub normalize: bool,
    /// Normalisation scale (2π).
    pub scale: f64,
}

impl SinePositionEmbedding {
    /// DETR's configuration: normalised, scale 2π, temperature 10000.
    pub fn new(num_pos_feats: usize) -> Self {
        Self {
            num_pos_feats,
            temperature: SINE_TEMPERATURE,
            normalize: true,
            scale: 2.0 * std::f64::consts::PI,
        }
    }

    /// Embeds positions for a feature mask `[B, h, w]`: `[B, 2 * num_pos_feats, h, w]`.
    pub fn forward<B: Backend>(&self, mask: Tensor<B, 3, Bool>) -> Tensor<B, 4> {
        let [b, h, w] = mask.dims();
        let device = mask.device();
        let n = self.num_pos_feats;
        let not_mask = mask.float().neg().add_scalar(1.0);
        let mut y_embed = not_mask.clone().cumsum(1);
        let mut x_embed = not_mask.cumsum(2);
        if self.normalize {
            let eps = 1e-6;
            let y_last = y_embed
                .clone()
                .slice([0..b, h - 1..h, 0..w])
                .add_scalar(eps);
            let x_last = x_embed
                .clone()
                .slice([0..b, 0..h, w - 1..w])
                .add_scalar(eps);
            y_embed = (y_embed / y_last).mul_scalar(self.scale);
            x_embed = (x_embed / x_last).mul_scalar(self.scale);
        }
        // dim_t[i] = T^(2 * floor(i / 2) / n), computed in f32 like the original.
        let dim_t: Vec<f32> = (0..n)
            .map(|i| (self.temperature as f32).powf((2 * (i / 2)) as f32 / n as f32))
            .collect();
        let dim_t_tensor =
            Tensor::<B, 1>::from_data(TensorData::new(dim_t, [n]), &device).reshape([1, 1, 1, n]);
        let even: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 1.0 } else { 0.0 }).collect();
        let even =
            Tensor::<B, 1>::from_data(TensorData::new(even, [n]), &device).reshape([1, 1, 1, n]);
        let odd = even.clone().neg().add_scalar(1.0);
        let embed = |e: Tensor<B, 3>| {
            let p = e.reshape([b, h, w, 1]) / dim_t_tensor.clone();
            p.clone().sin() * even.clone() + p.cos() * odd.clone()
        };
        let pos_y = embed(y_embed);
        let pos_x = embed(x_embed);
        Tensor::cat(vec![pos_y, pos_x], 3).permute([0, 3, 1, 2])
    }
}

/// Learned absolute embedding: a row table and a column table of [`LEARNED_MAX_SIZE`] entries,
/// output `cat(col, row)` along channels as in the original.
#[derive(Module, Debug)]
pub struct LearnedPositionEmbedding<B: Backend> {
    /// Row embeddings `[50, hidden / 2]` (the original's `row_embed`).
    pub row_embed: Embedding<B>,
    /// Column embeddings `[50, hidden / 2]` (the original's `col_embed`).
    pub col_embed: Embedding<B>,
}

impl<B: Backend> LearnedPositionEmbedding<B> {
    /// Tables with `num_pos_feats` features, initialised uniform in `[0, 1)` like the original.
    pub fn new(num_pos_feats: usize, device: &B::Device) -> Self {
        let table = || {
            EmbeddingConfig::new(LEARNED_MAX_SIZE, num_pos_feats)
                .with_initializer(Initializer::Uniform { min: 0.0, max: 1.0 })
                .init(device)
        };
        Self {
            row_embed: table(),
            col_embed: table(),
        }
    }

    /// Embeds positions for a feature mask `[B, h, w]`: `[B, hidden, h, w]`. Feature maps larger
    /// than 50 on a side are clamped to the last table entry (the original fails there).
    pub fn forward(&self, mask: Tensor<B, 3, Bool>) -> Tensor<B, 4> {
        let [b, h, w] = mask.dims();
        let device = mask.device();
        let idx = |n: usize| {
            let v: Vec<i64> = (0..n).map(|i| i.min(LEARNED_MAX_SIZE - 1) as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let col: Tensor<B, 2> = self.col_embed.weight.val().select(0, idx(w));
        let row: Tensor<B, 2> = self.row_embed.weight.val().select(0, idx(h));
        let d = col.dims()[1];
        let x = col.reshape([1, w, d]).expand([h, w, d]);
        let y = row.reshape([h, 1, d]).expand([h, w, d]);
        let pos: Tensor<B, 3> = Tensor::cat(vec![x, y], 2);
        pos.permute([2, 0, 1])
            .reshape([1, 2 * d, h, w])
            .expand([b, 2 * d, h, w])
    }
}
