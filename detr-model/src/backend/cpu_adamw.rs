//! AdamW's update of one float32 parameter in one pass on all cores
//! ([`adamw`](super::adamw) for the arithmetic): the parameter and both moments are updated
//! in place, the gradient read once.

use rayon::prelude::*;

use super::adamw::AdamWUpdate;

/// Elements per rayon task; parameters up to this size are updated on the calling thread.
const CHUNK: usize = 1 << 15;

/// Updates `param`, `first` and `second` (the moments; zeros before the first update) in place
/// from `grad`. The four slices have the same length.
pub fn adamw_f32(
    param: &mut [f32],
    first: &mut [f32],
    second: &mut [f32],
    grad: &[f32],
    update: &AdamWUpdate,
) {
    let (b1, b2) = (update.beta_1, update.beta_2);
    let (c1, c2) = update.bias_corrections();
    let (eps, decay, lr) = (update.epsilon, update.decay(), update.lr as f32);
    let chunk = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = *m * b1 + g * (1.0 - b1);
            *v = *v * b2 + g * g * (1.0 - b2);
            let delta = (*m / c1) / ((*v / c2).sqrt() + eps);
            *p = *p * decay - delta * lr;
        }
    };
    if param.len() <= CHUNK {
        chunk(param, first, second, grad);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(first.par_chunks_mut(CHUNK))
            .zip(second.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| chunk(p, m, v, g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(time: usize) -> AdamWUpdate {
        AdamWUpdate {
            lr: 0.1,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            time,
        }
    }

    /// Two updates of one value by hand: g = 2 then g = −1. Tolerances: float32's rounding of
    /// `1 − β₂` alone is 1.3e-5 relative, so the second moment is checked to 1e-7 absolute
    /// (2.5e-5 of its value).
    #[test]
    fn two_updates_by_hand() {
        let (mut p, mut m, mut v) = ([1f32], [0f32], [0f32]);
        adamw_f32(&mut p, &mut m, &mut v, &[2.0], &update(1));
        // m = 0.2, v = 0.004; m̂ = 2, v̂ = 4: p = 1·(1 − 0.001) − 0.1 · 2 / (2 + 1e-8).
        assert!((m[0] - 0.2).abs() < 1e-7 && (v[0] - 0.004).abs() < 1e-7);
        assert!((p[0] - (0.999 - 0.1)).abs() < 1e-6, "{}", p[0]);
        adamw_f32(&mut p, &mut m, &mut v, &[-1.0], &update(2));
        let (m2, v2) = (0.9f64 * 0.2 - 0.1, 0.999f64 * 0.004 + 0.001);
        let delta = (m2 / (1.0 - 0.81)) / ((v2 / (1.0 - 0.999f64.powi(2))).sqrt() + 1e-8);
        let expected = 0.899f64 * 0.999 - 0.1 * delta;
        assert!((m[0] as f64 - m2).abs() < 1e-7 && (v[0] as f64 - v2).abs() < 1e-7);
        assert!(
            (p[0] as f64 - expected).abs() < 1e-6,
            "{} vs {expected}",
            p[0]
        );
    }

    /// The parallel chunks give what one pass over the whole does.
    #[test]
    fn chunks_agree_with_one_pass() {
        let n = 3 * CHUNK + 17;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let start: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0)
            .collect();
        let (mut p, mut m, mut v) = (start.clone(), vec![0f32; n], vec![0f32; n]);
        adamw_f32(&mut p, &mut m, &mut v, &g, &update(1));
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 5, n - 1] {
            let (mut pi, mut mi, mut vi) = ([start[i]], [0f32], [0f32]);
            adamw_f32(&mut pi, &mut mi, &mut vi, &g[i..=i], &update(1));
            assert_eq!((p[i], m[i], v[i]), (pi[0], mi[0], vi[0]), "element {i}");
        }
    }
}
