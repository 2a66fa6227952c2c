//! The ResNet stem's max pooling (3×3, stride 2, padding 1) on the CPU. For inference no
//! indices (burn-flex computes and stores an `i64` index per output even when they are not
//! asked for, with a bounds check per tap), each output row the maximum over its input rows
//! (one vectorisable pass per row) then over each window's columns. For training (a stem that
//! learns) the values with burn-flex's indices, each window scanned within its clipped bounds
//! (flex runs its generic 3-D pooling with a bounds check per tap: 4% of the `tiny` step).
//! One rayon task per group of channel planes. Float32, dilation 1, floor mode; padding is
//! never the maximum, as in PyTorch.

use rayon::prelude::*;

/// Output values handed to one rayon task at least.
const VALUES_PER_TASK: usize = 1 << 14;

/// The size of a pooled axis: `(len + 2·pad − kernel) / stride + 1` (floor mode), `None` when
/// the window does not fit or the padding would leave a window without input
/// (`pad ≥ kernel`, which PyTorch refuses too).
pub fn pooled_len(len: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    if kernel == 0 || stride == 0 || pad >= kernel || len + 2 * pad < kernel {
        return None;
    }
    Some((len + 2 * pad - kernel) / stride + 1)
}

/// Max pooling of `x [planes, h, w]` (row-major, planes = batch × channels) by `kernel` with
/// `stride` and `padding`, into `[planes, ho, wo]`; `None` when [`pooled_len`] refuses an axis.
pub fn max_pool2d_f32(
    x: &[f32],
    [planes, h, w]: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<(Vec<f32>, [usize; 2])> {
    let ho = pooled_len(h, kernel[0], stride[0], padding[0])?;
    let wo = pooled_len(w, kernel[1], stride[1], padding[1])?;
    let mut y = vec![0f32; planes * ho * wo];
    if y.is_empty() {
        return Some((y, [ho, wo]));
    }
    let plane_out = ho * wo;
    let planes_per_task = (VALUES_PER_TASK / plane_out).max(1);
    y.par_chunks_mut(plane_out * planes_per_task)
        .zip(x.par_chunks(h * w * planes_per_task))
        .for_each(|(out, input)| {
            let mut rows = vec![f32::NEG_INFINITY; w];
            for (plane_out, plane) in out.chunks_mut(plane_out).zip(input.chunks(h * w)) {
                pool_plane(
                    plane,
                    [h, w],
                    plane_out,
                    [ho, wo],
                    kernel,
                    stride,
                    padding,
                    &mut rows,
                );
            }
        });
    Some((y, [ho, wo]))
}

/// [`max_pool2d_f32`] with the index of each maximum within its input plane (`row · w + col`,
/// the first maximum in the window's row-major order on ties: burn-flex's convention, which
/// its `max_pool2d_with_indices_backward` takes).
pub fn max_pool2d_indexed_f32(
    x: &[f32],
    [planes, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
) -> Option<(Vec<f32>, Vec<i64>, [usize; 2])> {
    let ho = pooled_len(h, kh, sh, ph)?;
    let wo = pooled_len(w, kw, sw, pw)?;
    let mut y = vec![0f32; planes * ho * wo];
    let mut indices = vec![0i64; planes * ho * wo];
    if y.is_empty() {
        return Some((y, indices, [ho, wo]));
    }
    let plane_out = ho * wo;
    let planes_per_task = (VALUES_PER_TASK / plane_out).max(1);
    let chunk = plane_out * planes_per_task;
    y.par_chunks_mut(chunk)
        .zip(indices.par_chunks_mut(chunk))
        .zip(x.par_chunks(h * w * planes_per_task))
        .for_each(|((out, index), input)| {
            let planes = out
                .chunks_mut(plane_out)
                .zip(index.chunks_mut(plane_out))
                .zip(input.chunks(h * w));
            for ((out, index), plane) in planes {
                for oh in 0..ho {
                    let top = (oh * sh).saturating_sub(ph);
                    let bottom = (oh * sh + kh - ph).min(h);
                    for ow in 0..wo {
                        let left = (ow * sw).saturating_sub(pw);
                        let right = (ow * sw + kw - pw).min(w);
                        let mut best = top * w + left;
                        for r in top..bottom {
                            for i in r * w + left..r * w + right {
                                if plane[i] > plane[best] {
                                    best = i;
                                }
                            }
                        }
                        out[oh * wo + ow] = plane[best];
                        index[oh * wo + ow] = best as i64;
                    }
                }
            }
        });
    Some((y, indices, [ho, wo]))
}

/// One plane: for each output row the column-wise maximum of its input rows in `rows`, then
/// the maximum of each window's columns.
#[allow(clippy::too_many_arguments)]
fn pool_plane(
    x: &[f32],
    [h, w]: [usize; 2],
    y: &mut [f32],
    [ho, wo]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
    rows: &mut [f32],
) {
    for oh in 0..ho {
        // Input rows oh·sh − ph + i for i in 0..kh, clipped to the image (at least one remains:
        // ph < kh).
        let top = (oh * sh).saturating_sub(ph);
        let bottom = (oh * sh + kh - ph).min(h);
        rows.copy_from_slice(&x[top * w..(top + 1) * w]);
        for r in top + 1..bottom {
            for (m, v) in rows.iter_mut().zip(&x[r * w..(r + 1) * w]) {
                *m = m.max(*v);
            }
        }
        for (ow, out) in y[oh * wo..(oh + 1) * wo].iter_mut().enumerate() {
            let left = (ow * sw).saturating_sub(pw);
            let right = (ow * sw + kw - pw).min(w);
            *out = rows[left..right]
                .iter()
                .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        }
    }
}
