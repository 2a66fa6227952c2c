//! Dropout's random mask on the CPU: each element is `1 / keep` with probability `keep`, else 0.
//!
//! Burn's `Dropout` draws a Bernoulli sample per element from the backend's one seeded
//! generator (burn-flex: ChaCha12, one 64-bit draw per element, then a `TensorData` copied into
//! a tensor), multiplies the input by it and then by `1 / keep`: two passes and an autodiff node
//! each after a single-threaded draw. With the `tiny` preset's 30 queries that was a tenth of
//! the training step. Here the backend's generator gives one 64-bit seed per mask; the mask is
//! drawn in fixed chunks on all cores, each chunk from its own small generator
//! (Xoshiro256++ seeded by the mask's seed and the chunk's index), two elements per 64-bit
//! draw, and already scaled. The same seed gives the same mask whatever the number of threads.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Elements per chunk, each chunk with its own generator.
const CHUNK: usize = 1 << 14;

/// A dropout mask of `len` float32 values: `1 / keep` with probability `keep`, 0 otherwise
/// (all 0 when `keep` is 0, all 1 when it is at least 1), drawn from `seed`.
pub fn mask_f32(len: usize, keep: f64, seed: u64) -> Vec<f32> {
    if keep >= 1.0 {
        return vec![1.0; len];
    }
    if keep <= 0.0 || keep.is_nan() {
        return vec![0.0; len];
    }
    // An element is kept when its 32 random bits are below `threshold`: probability
    // threshold / 2^32, within 2^-32 of `keep`.
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    let kept = |bits: u64| if bits < threshold { scale } else { 0.0 };
    let mut mask = vec![0.0f32; len];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(index, chunk)| {
            let mut rng = SmallRng::seed_from_u64(chunk_seed(seed, index as u64));
            let mut pairs = chunk.chunks_exact_mut(2);
            for pair in &mut pairs {
                let bits = rng.next_u64();
                pair[0] = kept(bits & 0xFFFF_FFFF);
                pair[1] = kept(bits >> 32);
            }
            if let [last] = pairs.into_remainder() {
                *last = kept(rng.next_u64() & 0xFFFF_FFFF);
            }
        });
    mask
}

/// The seed of chunk `index` of the mask drawn from `seed` (`seed_from_u64` mixes it further, so
/// neighbouring chunks start unrelated generators).
fn chunk_seed(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_share_it_is_asked_to_and_scales() {
        for keep in [0.9, 0.5, 0.1] {
            let len = 200_001;
            let mask = mask_f32(len, keep, 42);
            assert_eq!(mask.len(), len);
            let scale = (1.0 / keep) as f32;
            assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
            let share = mask.iter().filter(|&&m| m != 0.0).count() as f64 / len as f64;
            // Binomial standard deviation at 200k draws is at most 0.0012; 5 of them.
            assert!((share - keep).abs() < 0.006, "keep {keep}: share {share}");
        }
    }

    #[test]
    fn the_seed_decides_the_mask() {
        let a = mask_f32(50_000, 0.9, 7);
        assert_eq!(a, mask_f32(50_000, 0.9, 7));
        assert_ne!(a, mask_f32(50_000, 0.9, 8));
        // Chunks are not copies of each other.
        assert_ne!(a[..CHUNK], a[CHUNK..2 * CHUNK]);
        // A shorter mask from the same seed is the longer one's start (odd lengths too).
        assert_eq!(mask_f32(CHUNK + 3, 0.9, 7)[..], a[..CHUNK + 3]);
    }

    #[test]
    fn edge_probabilities() {
        assert!(mask_f32(5, 1.0, 1).iter().all(|&m| m == 1.0));
        assert!(mask_f32(5, 0.0, 1).iter().all(|&m| m == 0.0));
        assert!(mask_f32(0, 0.5, 1).is_empty());
    }
}
