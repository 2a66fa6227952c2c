//! The value of a 2-D convolution on the CPU as matrix products, `y [O, L] = W [O, C·kh·kw] ·
//! cols(x)` per image, where `L` is the number of output positions and `cols(x)` the image's
//! im2col matrix (the input itself for a 1×1 convolution with stride 1 and no padding), taken
//! in blocks of output rows that stay in cache ([`conv_f32`]); and that blocking, shared with
//! the gradients ([`cpu_weight_grad`](super::cpu_weight_grad),
//! [`cpu_input_grad`](super::cpu_input_grad)): [`Geometry`], [`block_rows`], im2col. The
//! products run on the `gemm` crate (the GEMM burn-flex uses), the blocks on rayon.
//!
//! flex takes the value of every float32 convolution from [`conv_f32`] on its own buffers;
//! [`conv2d_value`] serves any backend through host memory (`into_data` / `from_data`) for
//! convolutions with few input channels. Float32 with `groups == 1` only: anything else is the
//! backend's own convolution.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// Input channels up to which [`conv2d_value`] computes the convolution itself: burn-flex walks
/// convolutions with at most 4 input and 16 output channels with a direct loop, and its GEMM
/// path packs a reduction only `C·kh·kw` long anyway.
pub const FEW_INPUT_CHANNELS: usize = 4;

/// The value of `conv2d(x, weight, bias, options)`: im2col and GEMM ([`conv_f32`]) for float32
/// convolutions with at most [`FEW_INPUT_CHANNELS`] input channels and `groups == 1`, the
/// backend's own `conv2d` otherwise.
pub fn conv2d_value<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    use burn::tensor::TensorMetadata;
    let w_shape = weight.shape();
    let supported = options.groups == 1
        && w_shape[1] <= FEW_INPUT_CHANNELS
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    if !supported {
        return B::conv2d(x, weight, bias, options);
    }
    let device = B::float_device(&weight);
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    let [n, c, h, w] = x.dims();
    let [o, _, kh, kw] = [w_shape[0], w_shape[1], w_shape[2], w_shape[3]];
    let [ho, wo] = output_size([h, w], [kh, kw], &options);
    let x = x.into_data();
    let weight = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(weight)).into_data();
    let bias = bias.map(|b| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(b)).into_data());
    let (Ok(xs), Ok(ws)) = (x.as_slice::<f32>(), weight.as_slice::<f32>()) else {
        unreachable!("float32 tensors read back as float32")
    };
    let bs = bias
        .as_ref()
        .map(|b| b.as_slice::<f32>().expect("float32 bias"));
    let geometry = Geometry::new([n, c, h, w], [o, kh, kw], [ho, wo], &options);
    let y = conv_f32(xs, ws, bs, &geometry);
    Tensor::<B, 4>::from_data(TensorData::new(y, [n, o, ho, wo]), &device)
        .into_primitive()
        .tensor()
}

/// `y [N, O, Ho, Wo]` from `x [N, C, H, W]`, `w [O, C, kh, kw]` and `bias [O]` (row-major).
///
/// The output positions are taken in blocks of whole output rows ([`block_rows`]), each
/// `y_block [O, rows·Wo] = W · cols_block` from the block's im2col matrix while it is in
/// cache; the blocks of the batch are split into one contiguous run per rayon thread, each
/// with single-threaded products (with fewer blocks than threads, each product runs on all).
/// Blocks write disjoint columns of `y`, so no sum is needed.
pub fn conv_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Geometry) -> Vec<f32> {
    let [h, wi] = geo.in_size;
    let [ho, wo] = geo.out_size;
    let c = geo.in_channels;
    let (o, k, l) = geo.gemm_dims();
    let mut y = vec![0f32; geo.batch * o * l];
    if l == 0 || o == 0 {
        return y;
    }
    let pointwise = geo.is_pointwise();
    let rows = block_rows(geo);
    let blocks = ho.div_ceil(rows);
    let items = geo.batch * blocks;
    let threads = rayon::current_num_threads();
    let parallel = threads < 2 || items < threads;
    let out = SharedOut(y.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        let mut cols = if pointwise || k == 0 {
            Vec::new()
        } else {
            vec![0f32; k * rows * wo]
        };
        for item in range {
            let (b, out_rows) = block_of(item, blocks, rows, ho);
            let lb = out_rows.len() * wo;
            let l0 = out_rows.start * wo;
            // SAFETY: this block's part of `y`: rows b·o .. (b+1)·o of the [N·O, L] matrix,
            // columns l0 .. l0 + lb; no other block writes there, and `y` outlives the tasks.
            let yb = unsafe { out.get().add(b * o * l + l0) };
            if let Some(bias) = bias {
                for (r, &v) in bias.iter().enumerate() {
                    // SAFETY: row r of the block, as above.
                    unsafe { std::slice::from_raw_parts_mut(yb.add(r * l), lb) }.fill(v);
                }
            }
            if k == 0 {
                continue;
            }
            let xb = &x[b * c * h * wi..(b + 1) * c * h * wi];
            let (rhs, stride) = block_columns(xb, geo, out_rows, &mut cols, parallel);
            // yb [o, lb] (+)= w [o, k] · rhs [k, lb], rhs with row stride `stride`.
            // SAFETY: yb is the block's o×lb part of y (row stride l, see above); w is o×k
            // row-major; rhs holds k rows of lb values with row stride `stride`; the block of
            // y overlaps neither.
            unsafe {
                product(
                    [o, lb, k],
                    (yb, [l, 1]),
                    bias.is_some(),
                    (w.as_ptr(), [k, 1]),
                    (rhs.as_ptr(), [stride, 1]),
                    parallel,
                );
            }
        }
    };
    if parallel {
        run(0..items);
    } else {
        let per_task = items.div_ceil(threads);
        (0..items.div_ceil(per_task))
            .into_par_iter()
            .for_each(|t| run(t * per_task..((t + 1) * per_task).min(items)));
    }
    y
}

/// The output buffer of [`conv_f32`], shared by tasks that write disjoint blocks of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    /// The buffer's start (a method, so that closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the tasks of `conv_f32` write disjoint parts of the buffer, which outlives them.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// The output height and width of a convolution of an `in_size` input by a `kernel` with
/// `options`' stride, padding and dilation (0 where the kernel does not fit).
pub fn output_size(
    in_size: [usize; 2],
    kernel: [usize; 2],
    options: &ConvOptions<2>,
) -> [usize; 2] {
    let out = |i: usize| {
        let size = in_size[i] + 2 * options.padding[i];
        let span = options.dilation[i] * (kernel[i].max(1) - 1) + 1;
        if size < span {
            0
        } else {
            (size - span) / options.stride[i] + 1
        }
    };
    [out(0), out(1)]
}

/// The shapes and options of one convolution (`groups == 1`).
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub in_size: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Output height and width.
    pub out_size: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
}

impl Geometry {
    /// The geometry of a convolution of an input `[N, C, H, W]` by `O` kernels of `kh × kw`
    /// giving `Ho × Wo` outputs, with `options`' stride, padding and dilation.
    pub fn new(
        [batch, in_channels, h, w]: [usize; 4],
        [out_channels, kh, kw]: [usize; 3],
        out_size: [usize; 2],
        options: &ConvOptions<2>,
    ) -> Self {
        Self {
            batch,
            in_channels,
            in_size: [h, w],
            out_channels,
            out_size,
            kernel: [kh, kw],
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        }
    }

    /// The per-image matrix product's dimensions: output channels `O`, the reduction length
    /// `C·kh·kw` and the output positions `Ho·Wo`.
    pub(super) fn gemm_dims(&self) -> (usize, usize, usize) {
        let [kh, kw] = self.kernel;
        let [ho, wo] = self.out_size;
        (self.out_channels, self.in_channels * kh * kw, ho * wo)
    }

    /// Whether the im2col matrix of an image is the image itself.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }
}

/// Values of one block's im2col matrix (or columns of the input gradient) aimed at by
/// [`block_rows`] (256 KiB of float32: within
/// a core's L2 cache).
const BLOCK_VALUES: usize = 1 << 16;

/// Output positions per block at least: the gradients' products reduce over the block's
/// positions, and a shorter one would spend more on reading and writing the
/// gradient `[O, C·kh·kw]` than on arithmetic.
const BLOCK_MIN_POSITIONS: usize = 256;

/// Output rows per block of [`conv_f32`] and the gradients: as many as keep the block's im2col
/// matrix `[C·kh·kw, rows·Wo]` within [`BLOCK_VALUES`], but at least [`BLOCK_MIN_POSITIONS`]
/// positions (and at most the image).
pub(super) fn block_rows(geo: &Geometry) -> usize {
    let (_, k, _) = geo.gemm_dims();
    let [ho, wo] = geo.out_size;
    let wo = wo.max(1);
    (BLOCK_VALUES / (k * wo).max(1))
        .max(BLOCK_MIN_POSITIONS.div_ceil(wo))
        .clamp(1, ho.max(1))
}

/// `dst [m, n] = a [m, k] · b [k, n]`, plus `dst`'s own values when `accumulate`, on the `gemm`
/// crate; each matrix given by its first element and its `[row, column]` strides. On all rayon
/// threads when `parallel`, else on the calling thread.
///
/// # Safety
/// Each matrix lies within its allocation with the given strides; `dst` overlaps neither
/// operand, and nothing else reads or writes it meanwhile.
pub(super) unsafe fn product(
    [m, n, k]: [usize; 3],
    (dst, [dst_rows, dst_cols]): (*mut f32, [usize; 2]),
    accumulate: bool,
    (a, [a_rows, a_cols]): (*const f32, [usize; 2]),
    (b, [b_rows, b_cols]): (*const f32, [usize; 2]),
    parallel: bool,
) {
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: as promised by the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cols as isize,
            dst_rows as isize,
            accumulate,
            a,
            a_cols as isize,
            a_rows as isize,
            b,
            b_cols as isize,
            b_rows as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Block `item` of a batch taken in blocks of `rows` output rows (`blocks` per image, `ho`
/// output rows in all): its image and its output rows.
pub(super) fn block_of(
    item: usize,
    blocks: usize,
    rows: usize,
    ho: usize,
) -> (usize, std::ops::Range<usize>) {
    let block = item % blocks;
    (item / blocks, block * rows..((block + 1) * rows).min(ho))
}

/// The columns of one image's im2col matrix for the output rows `out_rows`, as `(matrix, row
/// stride)`: `[C·kh·kw, rows·Wo]`, the image itself from the block's first position for a
/// pointwise convolution, else written into `cols` (on all rayon threads when `parallel`).
pub(super) fn block_columns<'a>(
    image: &'a [f32],
    geo: &Geometry,
    out_rows: std::ops::Range<usize>,
    cols: &'a mut [f32],
    parallel: bool,
) -> (&'a [f32], usize) {
    let [_, wo] = geo.out_size;
    let (_, k, l) = geo.gemm_dims();
    let positions = out_rows.len() * wo;
    if geo.is_pointwise() {
        (&image[out_rows.start * wo..], l)
    } else {
        let cols = &mut cols[..k * positions];
        im2col(image, geo, out_rows, cols, parallel);
        (cols, positions)
    }
}

/// Rows of `len` values each handed to one rayon task at least: small feature maps are copied
/// in tasks of a few thousand values, not one task per row.
fn rows_per_task(len: usize) -> usize {
    const VALUES_PER_TASK: usize = 4096;
    (VALUES_PER_TASK / len.max(1)).max(1)
}

/// The output columns `first..end` whose input column `ow·sw + tap − pad` lies inside `[0, w)`
/// (for a kernel column at `tap` = `j·dilation`), and the offset `tap − pad`.
pub(super) fn column_range(
    w: usize,
    wo: usize,
    sw: usize,
    tap: usize,
    pad: usize,
) -> (usize, usize, isize) {
    let offset = tap as isize - pad as isize;
    let first = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(sw)
    };
    let end = if (w as isize) > offset {
        (((w as isize - offset) as usize).div_ceil(sw)).min(wo)
    } else {
        0
    };
    (first.min(end), end, offset)
}

/// Fills `cols [C·kh·kw, Ho·Wo]` with one image's im2col matrix: row `(ci, i, j)` holds the
/// input value under kernel position `(i, j)` for every output position (0 in the padding);
/// on all rayon threads when `parallel`, else on the calling thread.
fn im2col(
    x: &[f32],
    geo: &Geometry,
    out_rows: std::ops::Range<usize>,
    cols: &mut [f32],
    parallel: bool,
) {
    let [h, w] = geo.in_size;
    let [_, wo] = geo.out_size;
    let [kh, kw] = geo.kernel;
    let [sh, sw] = geo.stride;
    let [ph, pw] = geo.padding;
    let [dh, dwl] = geo.dilation;
    let l = out_rows.len() * wo;
    let fill_row = |(row, out): (usize, &mut [f32])| {
        let ci = row / (kh * kw);
        let i = (row / kw) % kh;
        let j = row % kw;
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        // Output columns whose input column lies inside the image: ow·sw + j·dw − pw ∈ [0, w).
        let (first, end, offset) = column_range(w, wo, sw, j * dwl, pw);
        for (r, oh) in out_rows.clone().enumerate() {
            let dst = &mut out[r * wo..(r + 1) * wo];
            let ih = (oh * sh + i * dh) as isize - ph as isize;
            if ih < 0 || ih >= h as isize || first >= end {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[ih as usize * w..(ih as usize + 1) * w];
            dst[..first].fill(0.0);
            dst[end..].fill(0.0);
            let start = (first * sw) as isize + offset;
            if sw == 1 {
                let start = start as usize;
                dst[first..end].copy_from_slice(&src[start..start + (end - first)]);
            } else {
                strided_copy(&mut dst[first..end], &src[start as usize..], sw);
            }
        }
    };
    if parallel {
        cols.par_chunks_mut(l)
            .with_min_len(rows_per_task(l))
            .enumerate()
            .for_each(fill_row);
    } else {
        cols.chunks_mut(l).enumerate().for_each(fill_row);
    }
}

/// `dst[t] = src[t · stride]` for every `t` (`src` holds at least `(dst.len() − 1)·stride + 1`
/// values). Stride 2 (every strided convolution of a ResNet) has its own loop over pairs,
/// which the compiler turns into vector shuffles.
fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
    fn pairs(dst: &mut [f32], src: &[f32]) {
        let Some((last, body)) = dst.split_last_mut() else {
            return;
        };
        for (d, pair) in body.iter_mut().zip(src.chunks_exact(2)) {
            *d = pair[0];
        }
        *last = src[2 * body.len()];
    }
    if stride == 2 {
        pairs(dst, src);
    } else {
        for (d, step) in dst.iter_mut().zip(src.chunks(stride)) {
            *d = step[0];
        }
    }
}
