//! The weight gradient of a 2-D convolution on the CPU as matrix products: for each image,
//! `dW [O, C·kh·kw] += G [O, L] · cols(x)ᵀ [L, C·kh·kw]`, where `L` is the number of output
//! positions and `cols(x)` the image's im2col matrix (the input itself for a 1×1 convolution
//! with stride 1 and no padding), taken in blocks of output rows that stay in cache
//! ([`cpu_conv::block_rows`](super::cpu_conv)). The products run on the `gemm` crate (the GEMM
//! burn-flex uses), the blocks on rayon.
//!
//! [`conv2d_weight_grad`] works on any backend through host memory (`into_data` /
//! `from_data`), which on the CPU backends is one copy of the input, the output gradient and
//! the result (flex reads its own buffers and calls [`weight_grad_f32`]). Float32 with
//! `groups == 1` only: anything else is Burn's own weight gradient.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::cpu_conv::{block_columns, block_of, block_rows, product, Geometry};

/// The weight gradient of `conv2d(x, weight, _, options)` given `output_grad`, computed by
/// [`weight_grad_f32`] (Burn's `conv2d_weight_backward` for other dtypes or grouped
/// convolutions).
pub fn conv2d_weight_grad<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    use burn::tensor::TensorMetadata;
    let supported = options.groups == 1
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && output_grad.dtype() == DType::F32;
    if !supported {
        return B::conv2d_weight_backward(x, weight, output_grad, options);
    }
    let device = B::float_device(&weight);
    let w_shape = weight.shape();
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    let g = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(output_grad));
    let [n, c, h, w] = x.dims();
    let [_, o, ho, wo] = g.dims();
    let [_, _, kh, kw] = [w_shape[0], w_shape[1], w_shape[2], w_shape[3]];
    let x = x.into_data();
    let g = g.into_data();
    let (Ok(xs), Ok(gs)) = (x.as_slice::<f32>(), g.as_slice::<f32>()) else {
        unreachable!("float32 tensors read back as float32")
    };
    let geometry = Geometry::new([n, c, h, w], [o, kh, kw], [ho, wo], &options);
    let dw = weight_grad_f32(xs, gs, &geometry);
    Tensor::<B, 4>::from_data(TensorData::new(dw, [o, c, kh, kw]), &device)
        .into_primitive()
        .tensor()
}

/// `dW [O, C, kh, kw]` (row-major) from `x [N, C, H, W]` and `g [N, O, Ho, Wo]` (row-major).
///
/// The output positions of each image are taken in blocks of whole output rows
/// ([`block_rows`]): a block's im2col matrix `[C·kh·kw, rows·Wo]` stays in the core's cache
/// while the product `dW += G_block · cols_blockᵀ` packs it (reading it transposed, across its
/// rows), where a whole image's matrix (2.4 MB for the tiny preset's stem) did not. The
/// blocks of the batch are split into one contiguous run per rayon thread; each thread
/// accumulates its run into a partial sum of its own with single-threaded products, and the
/// partial sums are added at the end: one parallel region for the whole gradient. With fewer
/// blocks than threads the blocks are taken in turn, each product on all threads; a large
/// gradient on many threads has fewer runs ([`PARTIAL_VALUES`]), each with multi-threaded
/// products.
pub fn weight_grad_f32(x: &[f32], g: &[f32], geo: &Geometry) -> Vec<f32> {
    let (o, k, l) = geo.gemm_dims();
    if l == 0 || k == 0 || o == 0 {
        return vec![0f32; o * k];
    }
    let [ho, _] = geo.out_size;
    let rows = block_rows(geo);
    let blocks = ho.div_ceil(rows);
    let items = geo.batch * blocks;
    let threads = rayon::current_num_threads();
    // One partial sum per task, within PARTIAL_VALUES in all.
    let tasks = threads.min(PARTIAL_VALUES / (o * k));
    if tasks < 2 || items < threads {
        return weight_grad_blocks(x, g, geo, 0..items, true);
    }
    // With fewer tasks than threads, each task's products use the idle threads too.
    let inner_parallel = tasks < threads;
    let per_task = items.div_ceil(tasks);
    let mut partials: Vec<Vec<f32>> = (0..items.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            weight_grad_blocks(
                x,
                g,
                geo,
                t * per_task..((t + 1) * per_task).min(items),
                inner_parallel,
            )
        })
        .collect();
    let mut dw = partials.swap_remove(0);
    dw.par_chunks_mut(SUM_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            for partial in &partials {
                let part = &partial[i * SUM_CHUNK..i * SUM_CHUNK + chunk.len()];
                for (d, p) in chunk.iter_mut().zip(part) {
                    *d += p;
                }
            }
        });
    dw
}

/// Values of all partial sums of [`weight_grad_f32`] together at most (64 MiB): on a machine
/// with many threads, a large weight's gradient is summed from fewer partial sums, each task's
/// products then running on several threads.
const PARTIAL_VALUES: usize = 1 << 24;

/// Values of the weight gradient summed by one rayon task.
const SUM_CHUNK: usize = 1 << 16;

/// The weight gradient's sum over the blocks `items` (block `i` is rows
/// `(i % blocks)·rows ..` of image `i / blocks`, [`block_rows`]); `parallel`: im2col and the
/// products on all rayon threads, else on the calling thread alone.
fn weight_grad_blocks(
    x: &[f32],
    g: &[f32],
    geo: &Geometry,
    items: std::ops::Range<usize>,
    parallel: bool,
) -> Vec<f32> {
    let [h, w] = geo.in_size;
    let [ho, wo] = geo.out_size;
    let c = geo.in_channels;
    let (o, k, l) = geo.gemm_dims();
    let mut dw = vec![0f32; o * k];
    let rows = block_rows(geo);
    let blocks = ho.div_ceil(rows);
    let pointwise = geo.is_pointwise();
    let mut cols = if pointwise {
        Vec::new()
    } else {
        vec![0f32; k * rows * wo]
    };
    let first = items.start;
    for item in items {
        let (b, out_rows) = block_of(item, blocks, rows, ho);
        let lb = out_rows.len() * wo;
        let gb = &g[b * o * l + out_rows.start * wo..];
        let xb = &x[b * c * h * w..(b + 1) * c * h * w];
        let (rhs, stride) = block_columns(xb, geo, out_rows, &mut cols, parallel);
        // dw [o, k] (+)= gb [o, lb] · rhsᵀ, rhs being [k, lb] with row stride `stride`.
        // SAFETY: dw is o×k with row stride k; gb starts at the block's first column of the
        // image's o×l gradient (row stride l, lb columns from there); rhs starts at the block's
        // first column of a k-row matrix with row stride `stride` (lb columns from there, read
        // as its lb×k transpose); the three do not overlap.
        unsafe {
            product(
                [o, k, lb],
                (dw.as_mut_ptr(), [k, 1]),
                item > first,
                (gb.as_ptr(), [l, 1]),
                (rhs.as_ptr(), [1, stride]),
                parallel,
            );
        }
    }
    dw
}
