//! The input gradient of a 2-D convolution on the CPU: per image the product `Wᵀ · G` and
//! col2im, the sum of its columns back into the image (the adjoint of the im2col in
//! [`cpu_conv`](super::cpu_conv)). Float32, `groups == 1`, row-major buffers.

use rayon::prelude::*;

use super::cpu_conv::{block_rows, column_range, product, Geometry};

/// `dX [N, C, H, W]` (row-major) from `g [N, O, Ho, Wo]` and `w [O, C, kh, kw]` (row-major).
///
/// The work is split into tasks of one image and one group of its input channels, which
/// write disjoint parts of `dX`: as many groups per image as make the tasks divide evenly
/// among the rayon threads (one for an even batch on two threads). Each task takes its
/// image's output positions in blocks of whole output rows (`cpu_conv::block_rows`): the
/// block's columns `cols [C_group·kh·kw, rows·Wo] = W_groupᵀ · G_block` stay in the core's
/// cache until col2im has summed them into the group's channels, where a whole image's
/// columns (38 MB for the r50's first 3×3 convolution at 512²) went through memory twice.
/// Products ([`product`]) are single-threaded within a task. For a 1×1 convolution with stride 1 and no
/// padding `W_groupᵀ · G` is the group's gradient itself.
pub fn input_grad_f32(g: &[f32], w: &[f32], geo: &Geometry) -> Vec<f32> {
    let [h, wi] = geo.in_size;
    let [ho, wo] = geo.out_size;
    let [kh, kw] = geo.kernel;
    let c = geo.in_channels;
    let (o, k, l) = geo.gemm_dims();
    let plane = h * wi;
    let mut dx = vec![0f32; geo.batch * c * plane];
    if l == 0 || k == 0 || o == 0 || plane == 0 {
        return dx;
    }
    let taps = kh * kw;
    let pointwise = geo.is_pointwise();
    let threads = rayon::current_num_threads().max(1);
    let groups = (threads / gcd(geo.batch, threads)).clamp(1, c);
    let per_group = c.div_ceil(groups);
    let rows = block_rows(geo);
    let task = |cols: &mut Vec<f32>, (b, first_channel, dxg): (usize, usize, &mut [f32])| {
        let kg = dxg.len() / plane * taps;
        let gb = &g[b * o * l..(b + 1) * o * l];
        // Wᵀ's rows of the group: w is [o, k] row-major, read as the k×o transpose from
        // column `first_channel · taps` on.
        let wg = &w[first_channel * taps..];
        if pointwise {
            // dxg [kg, l] = wgᵀ [kg, o] · gb [o, l].
            // SAFETY: dxg is kg×l with row stride l (kg = the group's channels, l = H·W);
            // wg is read as a kg×o matrix with row stride 1 and column stride k, inside w;
            // gb is o×l with row stride l; none overlap.
            unsafe {
                product(
                    [kg, l, o],
                    (dxg.as_mut_ptr(), [l, 1]),
                    false,
                    (wg.as_ptr(), [1, k]),
                    (gb.as_ptr(), [l, 1]),
                    false,
                )
            };
            return;
        }
        for start in (0..ho).step_by(rows) {
            let out_rows = start..(start + rows).min(ho);
            let lb = out_rows.len() * wo;
            cols.resize(kg * lb, 0.0);
            // cols [kg, lb] = wgᵀ [kg, o] · gb [o, block's columns].
            // SAFETY: cols is kg×lb with row stride lb; wg as above; gb from the block's
            // first column, o rows with row stride l and lb columns each; none overlap.
            unsafe {
                product(
                    [kg, lb, o],
                    (cols.as_mut_ptr(), [lb, 1]),
                    false,
                    (wg.as_ptr(), [1, k]),
                    (gb[start * wo..].as_ptr(), [l, 1]),
                    false,
                );
            }
            col2im(cols, geo, out_rows, dxg);
        }
    };
    dx.par_chunks_mut(c * plane)
        .enumerate()
        .flat_map(|(b, image)| {
            image
                .par_chunks_mut(per_group * plane)
                .enumerate()
                .map(move |(i, dxg)| (b, i * per_group, dxg))
        })
        .for_each_init(Vec::new, task);
    dx
}

/// The greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Sums the columns `cols [C_group·kh·kw, rows·Wo]` of the output rows `out_rows` back into
/// the gradient `dx [C_group, H, W]` of a group of input channels: the adjoint of im2col
/// (`cpu_conv`), accumulating.
fn col2im(cols: &[f32], geo: &Geometry, out_rows: std::ops::Range<usize>, dx: &mut [f32]) {
    let [h, w] = geo.in_size;
    let [_, wo] = geo.out_size;
    let [kh, kw] = geo.kernel;
    let [sh, sw] = geo.stride;
    let [ph, pw] = geo.padding;
    let [dh, dwl] = geo.dilation;
    let lb = out_rows.len() * wo;
    let taps = kh * kw;
    for (ci, plane) in dx.chunks_mut(h * w).enumerate() {
        for i in 0..kh {
            for j in 0..kw {
                let row = &cols[(ci * taps + i * kw + j) * lb..][..lb];
                let (first, end, offset) = column_range(w, wo, sw, j * dwl, pw);
                if first >= end {
                    continue;
                }
                for (r, oh) in out_rows.clone().enumerate() {
                    let ih = (oh * sh + i * dh) as isize - ph as isize;
                    if ih < 0 || ih >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[ih as usize * w..(ih as usize + 1) * w];
                    let src = &row[r * wo + first..r * wo + end];
                    let start = ((first * sw) as isize + offset) as usize;
                    if sw == 1 {
                        for (d, v) in dst[start..start + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        // Every `sw`-th input value: the first of each chunk of `sw`.
                        for (d, v) in dst[start..].chunks_mut(sw).zip(src) {
                            d[0] += v;
                        }
                    }
                }
            }
        }
    }
}
