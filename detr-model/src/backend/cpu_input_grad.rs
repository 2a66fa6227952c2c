//! The input gradient of a 2-D convolution on the CPU: per image the product `Wᵀ · G` and
//! col2im, the sum of its columns back into the image (the adjoint of the im2col in
//! [`cpu_conv`](super::cpu_conv)). Float32, `groups == 1`, row-major buffers.

use rayon::prelude::*;

use super::cpu_conv::{column_range, rows_per_task, Geometry, SMALL_IMAGE_PRODUCT};

/// `dX [N, C, H, W]` (row-major) from `g [N, O, Ho, Wo]` and `w [O, C, kh, kw]` (row-major):
/// per image `cols [C·kh·kw, L] = Wᵀ · G_b` and the columns summed back into the image
/// (col2im, one rayon task per group of input channels); for a 1×1 convolution with stride 1
/// and no padding `Wᵀ · G_b` is the image's gradient itself.
pub fn input_grad_f32(g: &[f32], w: &[f32], geo: &Geometry) -> Vec<f32> {
    let [h, wi] = geo.in_size;
    let c = geo.in_channels;
    let (o, k, l) = geo.gemm_dims();
    let plane = h * wi;
    let mut dx = vec![0f32; geo.batch * c * plane];
    if l == 0 || k == 0 || o == 0 || plane == 0 {
        return dx;
    }
    let pointwise = geo.is_pointwise();
    // Small images (the tiny preset's deeper layers) are one task each, with a single-threaded
    // GEMM: split across threads, their products cost more in hand-offs than in arithmetic.
    let per_image = k * l * o <= SMALL_IMAGE_PRODUCT;
    let image = |gb: &[f32], dxb: &mut [f32], cols: &mut Vec<f32>, parallelism| {
        if !pointwise {
            cols.resize(k * l, 0.0);
        }
        let dst: &mut [f32] = if pointwise { dxb } else { cols };
        // dst [k, l] = wᵀ [k, o] · gb [o, l]; w is [o, k] row-major, read transposed.
        // SAFETY: dst is k×l with row stride l (the image's gradient for a pointwise
        // convolution, whose k = C and l = H·W); w is o×k row-major, read as its k×o transpose
        // (column stride k, row stride 1); gb is o×l with row stride l; none overlap.
        unsafe {
            gemm::gemm(
                k,
                l,
                o,
                dst.as_mut_ptr(),
                1,
                l as isize,
                false,
                w.as_ptr(),
                k as isize,
                1,
                gb.as_ptr(),
                1,
                l as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        if !pointwise {
            col2im(cols, geo, dxb);
        }
    };
    if per_image {
        dx.par_chunks_mut(c * plane)
            .zip(g.par_chunks(o * l))
            .for_each_with(Vec::new(), |cols, (dxb, gb)| {
                image(gb, dxb, cols, gemm::Parallelism::None)
            });
    } else {
        let mut cols = Vec::new();
        for (dxb, gb) in dx.chunks_mut(c * plane).zip(g.chunks(o * l)) {
            image(gb, dxb, &mut cols, gemm::Parallelism::Rayon(0));
        }
    }
    dx
}

/// Sums one image's columns `cols [C·kh·kw, Ho·Wo]` back into its gradient `dx [C, H, W]`
/// (zeroed): the adjoint of im2col (`cpu_conv`).
fn col2im(cols: &[f32], geo: &Geometry, dx: &mut [f32]) {
    let [h, w] = geo.in_size;
    let [ho, wo] = geo.out_size;
    let [kh, kw] = geo.kernel;
    let [sh, sw] = geo.stride;
    let [ph, pw] = geo.padding;
    let [dh, dwl] = geo.dilation;
    let l = ho * wo;
    let taps = kh * kw;
    dx.par_chunks_mut(h * w)
        .with_min_len(rows_per_task(taps * l))
        .enumerate()
        .for_each(|(ci, plane)| {
            for i in 0..kh {
                for j in 0..kw {
                    let row = &cols[(ci * taps + i * kw + j) * l..][..l];
                    let (first, end, offset) = column_range(w, wo, sw, j * dwl, pw);
                    if first >= end {
                        continue;
                    }
                    for oh in 0..ho {
                        let ih = (oh * sh + i * dh) as isize - ph as isize;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        let dst = &mut plane[ih as usize * w..(ih as usize + 1) * w];
                        let src = &row[oh * wo + first..oh * wo + end];
                        let start = ((first * sw) as isize + offset) as usize;
                        if sw == 1 {
                            for (d, v) in dst[start..start + src.len()].iter_mut().zip(src) {
                                *d += v;
                            }
                        } else {
                            for (d, v) in dst[start..].iter_mut().step_by(sw).zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}
