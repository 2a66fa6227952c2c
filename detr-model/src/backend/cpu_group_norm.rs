//! GroupNorm (with its affine parameters) on the CPU as two passes over each (image, group)
//! forward and two backward, one rayon task per group of (image, group) blocks: the value and
//! all three gradients of what Burn composes from a dozen element-wise operations, reductions
//! and their autodiff nodes (single-threaded on flex at the backbone's sizes). Float32,
//! row-major `[N, C, H·W]`; statistics per (image, group) as Burn's GroupNorm computes them
//! (mean, biased variance, `1 / sqrt(var + eps)`), accumulated in f64.

use rayon::prelude::*;

/// Values handed to one rayon task at least.
const VALUES_PER_TASK: usize = 1 << 14;

/// The shape of a GroupNorm: images, channels, values per channel, groups (dividing channels).
#[derive(Debug, Clone, Copy)]
pub struct GroupShape {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per channel (`H·W`).
    pub plane: usize,
    /// Groups.
    pub groups: usize,
}

impl GroupShape {
    /// Channels per group.
    fn per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// Values per (image, group) block.
    fn block(&self) -> usize {
        self.per_group() * self.plane
    }

    /// Blocks handed to one rayon task.
    fn blocks_per_task(&self) -> usize {
        (VALUES_PER_TASK / self.block().max(1)).max(1)
    }
}

/// `y = (x − mean) · inv_std · gamma + beta` per (image, group); returns `y`, and the mean and
/// `inv_std` of each block `[N·G]`.
pub fn forward_f32(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    shape: GroupShape,
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let block = shape.block();
    let blocks = shape.batch * shape.groups;
    let mut y = vec![0f32; x.len()];
    let mut mean = vec![0f32; blocks];
    let mut inv_std = vec![0f32; blocks];
    if block == 0 {
        return (y, mean, inv_std);
    }
    let per_task = shape.blocks_per_task();
    y.par_chunks_mut(block * per_task)
        .zip(x.par_chunks(block * per_task))
        .zip(mean.par_chunks_mut(per_task))
        .zip(inv_std.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, (((y, x), mean), inv_std))| {
            for (i, (yb, xb)) in y.chunks_mut(block).zip(x.chunks(block)).enumerate() {
                let group = (task * per_task + i) % shape.groups;
                let m = xb.iter().map(|&v| v as f64).sum::<f64>() / block as f64;
                let var = xb.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / block as f64;
                let s = 1.0 / (var + epsilon).sqrt();
                mean[i] = m as f32;
                inv_std[i] = s as f32;
                let channels = group * shape.per_group()..(group + 1) * shape.per_group();
                for ((yc, xc), c) in yb
                    .chunks_mut(shape.plane)
                    .zip(xb.chunks(shape.plane))
                    .zip(channels)
                {
                    let scale = (s * gamma[c] as f64) as f32;
                    let shift = (beta[c] as f64 - m * s * gamma[c] as f64) as f32;
                    for (o, &v) in yc.iter_mut().zip(xc) {
                        *o = v * scale + shift;
                    }
                }
            }
        });
    (y, mean, inv_std)
}

/// The gradients `(dx, dgamma, dbeta)` of [`forward_f32`] given the output's gradient `dy`,
/// from `x`, `gamma` and the forward pass's `mean` and `inv_std`:
/// `dx = inv_std · (g − mean(g) − x̂ · mean(g · x̂))` per block with `g = dy · gamma` and
/// `x̂ = (x − mean) · inv_std`; `dgamma = Σ dy · x̂`, `dbeta = Σ dy` per channel.
pub fn backward_f32(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    dy: &[f32],
    shape: GroupShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let block = shape.block();
    let mut dx = vec![0f32; x.len()];
    // Per image and channel, summed over the images at the end.
    let mut partial_gamma = vec![0f64; shape.batch * shape.channels];
    let mut partial_beta = vec![0f64; shape.batch * shape.channels];
    let cg = shape.per_group();
    if block > 0 {
        let per_task = shape.blocks_per_task();
        dx.par_chunks_mut(block * per_task)
            .zip(x.par_chunks(block * per_task))
            .zip(dy.par_chunks(block * per_task))
            .zip(partial_gamma.par_chunks_mut(cg * per_task))
            .zip(partial_beta.par_chunks_mut(cg * per_task))
            .enumerate()
            .for_each(|(task, ((((dx, x), dy), pg), pb))| {
                let blocks = dx
                    .chunks_mut(block)
                    .zip(x.chunks(block))
                    .zip(dy.chunks(block))
                    .zip(pg.chunks_mut(cg))
                    .zip(pb.chunks_mut(cg));
                for (i, ((((dxb, xb), dyb), pg), pb)) in blocks.enumerate() {
                    let index = task * per_task + i;
                    let group = index % shape.groups;
                    let (m, s) = (mean[index] as f64, inv_std[index] as f64);
                    // Σ g and Σ g·x̂ over the block, with the per-channel sums on the way.
                    let (mut sum_g, mut sum_gx) = (0f64, 0f64);
                    for (k, (xc, dyc)) in xb
                        .chunks(shape.plane)
                        .zip(dyb.chunks(shape.plane))
                        .enumerate()
                    {
                        let (mut sd, mut sdx) = (0f64, 0f64);
                        for (&v, &d) in xc.iter().zip(dyc) {
                            sd += d as f64;
                            sdx += d as f64 * (v as f64 - m) * s;
                        }
                        pg[k] = sdx;
                        pb[k] = sd;
                        let g = gamma[group * cg + k] as f64;
                        sum_g += g * sd;
                        sum_gx += g * sdx;
                    }
                    let (mean_g, mean_gx) = (sum_g / block as f64, sum_gx / block as f64);
                    for (k, ((dxc, xc), dyc)) in dxb
                        .chunks_mut(shape.plane)
                        .zip(xb.chunks(shape.plane))
                        .zip(dyb.chunks(shape.plane))
                        .enumerate()
                    {
                        let g = gamma[group * cg + k] as f64;
                        // dx = s·(g·dy − mean_g − (x − m)·s·mean_gx), as a·dy + b·x + c.
                        let a = (s * g) as f32;
                        let b = (-s * s * mean_gx) as f32;
                        let c = (s * (m * s * mean_gx - mean_g)) as f32;
                        for ((o, &v), &d) in dxc.iter_mut().zip(xc).zip(dyc) {
                            *o = a * d + b * v + c;
                        }
                    }
                }
            });
    }
    let sum_over_images = |partial: &[f64]| -> Vec<f32> {
        (0..shape.channels)
            .map(|c| {
                (0..shape.batch)
                    .map(|n| partial[n * shape.channels + c])
                    .sum::<f64>() as f32
            })
            .collect()
    };
    let dgamma = sum_over_images(&partial_gamma);
    let dbeta = sum_over_images(&partial_beta);
    (dx, dgamma, dbeta)
}
