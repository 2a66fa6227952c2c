//! Minimum-cost assignment of one cost matrix (queries × targets), the solver behind the
//! Hungarian matcher ([`crate::matcher`]): `pathfinding`'s Kuhn–Munkres on exact integer
//! weights, with the result `scipy.optimize.linear_sum_assignment` gives.
//!
//! # From float costs to integer weights
//!
//! `kuhn_munkres` needs an exact, totally ordered weight type, so each cost matrix is turned
//! into fixed point: it is multiplied by a power of two `2^k` chosen so that its largest
//! absolute entry lies in `[2^35, 2^36)` ([`FIXED_POINT_BITS`]), rounded to the nearest
//! `i64`, and negated (the solver maximises). The rounding error of an entry is at most
//! `2^-36 · max|C|`, about `1.5e-11` relative to the largest cost, far below float32's own
//! resolution (`6e-8` relative). An assignment is therefore only changed by the conversion
//! if two assignments' float costs differ by less than `n · 2^-36 · max|C|` (`n` = number of
//! matched pairs), i.e. when they are tied up to float noise anyway. Sums stay below `2^63`
//! for any matrix with fewer than `2^26` rows.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use crate::matcher::ImageMatch;

/// Number of bits of the fixed-point weights given to Kuhn–Munkres: the largest absolute
/// cost of each matrix is scaled into `[2^(FIXED_POINT_BITS-1), 2^FIXED_POINT_BITS)`.
pub const FIXED_POINT_BITS: i32 = 36;

/// Error of [`solve_assignment`].
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AssignmentError {
    /// A cost is NaN or infinite.
    #[error("non-finite cost {value} at row {row}, column {col}")]
    NonFinite {
        /// Row (query) index.
        row: usize,
        /// Column (target) index.
        col: usize,
        /// The value.
        value: f32,
    },
    /// The buffer does not hold `rows × cols` values.
    #[error("{0}")]
    Shape(String),
}

/// Minimum-cost assignment of a `rows × cols` row-major cost matrix (rows = queries,
/// columns = targets), `min(rows, cols)` pairs, sorted by row. See the module
/// documentation for the fixed-point conversion and its precision.
pub fn solve_assignment(
    cost: &[f32],
    rows: usize,
    cols: usize,
) -> Result<ImageMatch, AssignmentError> {
    if cost.len() != rows * cols {
        return Err(AssignmentError::Shape(format!(
            "{} costs for a {rows}x{cols} matrix",
            cost.len()
        )));
    }
    if rows == 0 || cols == 0 {
        return Ok(ImageMatch::default());
    }
    let mut max_abs = 0.0f64;
    for (i, &c) in cost.iter().enumerate() {
        if !c.is_finite() {
            return Err(AssignmentError::NonFinite {
                row: i / cols,
                col: i % cols,
                value: c,
            });
        }
        max_abs = max_abs.max(f64::from(c).abs());
    }
    let scale = fixed_point_scale(max_abs);
    let weight = |c: f32| -> i64 { -(f64::from(c) * scale).round() as i64 };
    // Kuhn–Munkres needs rows <= columns: put the smaller side on the rows.
    let transpose = rows > cols;
    let (nr, nc) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let values: Vec<i64> = if transpose {
        (0..nr)
            .flat_map(|r| (0..nc).map(move |c| (c, r)))
            .map(|(q, t)| weight(cost[q * cols + t]))
            .collect()
    } else {
        cost.iter().map(|&c| weight(c)).collect()
    };
    let matrix = Matrix::from_vec(nr, nc, values)
        .map_err(|e| AssignmentError::Shape(format!("cost matrix: {e:?}")))?;
    let (_, assignment) = kuhn_munkres(&matrix);
    let mut pairs: Vec<(usize, usize)> = assignment
        .into_iter()
        .enumerate()
        .map(|(r, c)| if transpose { (c, r) } else { (r, c) })
        .collect();
    pairs.sort_unstable();
    Ok(ImageMatch {
        queries: pairs.iter().map(|p| p.0).collect(),
        targets: pairs.iter().map(|p| p.1).collect(),
    })
}

/// The power of two that maps `max_abs` into `[2^(FIXED_POINT_BITS-1), 2^FIXED_POINT_BITS)`.
fn fixed_point_scale(max_abs: f64) -> f64 {
    if max_abs == 0.0 {
        return 1.0;
    }
    // max_abs < 2^e
    let e = max_abs.log2().floor() as i32 + 1;
    2f64.powi(FIXED_POINT_BITS - e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_bounds() {
        for &m in &[1e-30, 0.3, 1.0, 2.0, 17.5, 1e30, f32::MAX as f64] {
            let s = fixed_point_scale(m);
            let v = m * s;
            assert!(
                v >= 2f64.powi(FIXED_POINT_BITS - 1) && v < 2f64.powi(FIXED_POINT_BITS),
                "{m}: {v}"
            );
        }
    }
}
