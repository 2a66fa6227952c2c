//! Burn's `Linear` on a tensor of any rank as one matrix product: the leading dimensions are
//! flattened into rows (`[…, d_in] → [rows, d_in]`, a view of a contiguous tensor), the layer
//! applied, and the rows unflattened.
//!
//! Burn applies a layer to `[B, L, d_in]` as a batched product against the weight broadcast to
//! `[1, d_in, d_out]`: on the CPU backends one small product per image, and in the backward
//! pass a weight gradient per image summed over the batch afterwards. One `[B·L, d_in]`
//! product computes the same values (each output row is the same dot products) with one
//! product per pass.

use burn::nn::Linear;
use burn::prelude::*;

/// `layer` applied to the last dimension of `x` as one matrix product.
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if D <= 2 {
        return layer.forward(x);
    }
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, dims[D - 1]]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}
