//! The six shape classes of the synthetic dataset as geometry: an ellipse or a union of
//! polygons in image coordinates, with inside test, tight box and random size and rotation.

use crate::rng::SeedRng;
use std::f64::consts::PI;

/// A shape in image coordinates.
pub(super) enum Shape {
    Ellipse {
        cx: f64,
        cy: f64,
        a: f64,
        b: f64,
        theta: f64,
    },
    /// Union of polygons (even–odd inside test per polygon).
    Polygons(Vec<Vec<(f64, f64)>>),
}

impl Shape {
    pub(super) fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Shape::Ellipse {
                cx,
                cy,
                a,
                b,
                theta,
            } => {
                let (dx, dy) = (x - cx, y - cy);
                let (s, c) = theta.sin_cos();
                let u = (dx * c + dy * s) / a;
                let v = (-dx * s + dy * c) / b;
                u * u + v * v <= 1.0
            }
            Shape::Polygons(polys) => polys.iter().any(|p| point_in_polygon(p, x, y)),
        }
    }

    pub(super) fn bbox(&self) -> [f64; 4] {
        match self {
            Shape::Ellipse {
                cx,
                cy,
                a,
                b,
                theta,
            } => {
                let (s, c) = theta.sin_cos();
                let hx = ((a * c).powi(2) + (b * s).powi(2)).sqrt();
                let hy = ((a * s).powi(2) + (b * c).powi(2)).sqrt();
                [cx - hx, cy - hy, cx + hx, cy + hy]
            }
            Shape::Polygons(polys) => {
                let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
                for &(x, y) in polys.iter().flatten() {
                    b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
                }
                b
            }
        }
    }
}

fn point_in_polygon(p: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = p.len() - 1;
    for i in 0..p.len() {
        let (xi, yi) = p[i];
        let (xj, yj) = p[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(f64, f64)> {
    vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
}

/// The shape of `class` with nominal size `s`, centred at the origin (shifted later).
pub(super) fn make_shape(class: usize, s: f64, rng: &mut SeedRng) -> Shape {
    let r = s / 2.0;
    match class {
        0 => Shape::Ellipse {
            cx: 0.0,
            cy: 0.0,
            a: r,
            b: r,
            theta: 0.0,
        },
        1 => Shape::Polygons(vec![rect(-r, -r, r, r)]),
        2 => {
            let h = r * rng.uniform(0.8, 1.0);
            Shape::Polygons(vec![vec![(0.0, -h), (r, h), (-r, h)]])
        }
        3 => {
            let rot = rng.uniform(0.0, 2.0 * PI / 5.0);
            let inner = r * rng.uniform(0.4, 0.5);
            let pts = (0..10)
                .map(|k| {
                    let rad = if k % 2 == 0 { r } else { inner };
                    let ang = rot - PI / 2.0 + k as f64 * PI / 5.0;
                    (rad * ang.cos(), rad * ang.sin())
                })
                .collect();
            Shape::Polygons(vec![pts])
        }
        4 => {
            let t = r * rng.uniform(0.28, 0.38);
            Shape::Polygons(vec![rect(-t, -r, t, r), rect(-r, -t, r, t)])
        }
        _ => Shape::Ellipse {
            cx: 0.0,
            cy: 0.0,
            a: r,
            b: r * rng.uniform(0.4, 0.65),
            theta: rng.uniform(0.0, PI),
        },
    }
}

pub(super) fn translate(shape: Shape, dx: f64, dy: f64) -> Shape {
    match shape {
        Shape::Ellipse {
            cx,
            cy,
            a,
            b,
            theta,
        } => Shape::Ellipse {
            cx: cx + dx,
            cy: cy + dy,
            a,
            b,
            theta,
        },
        Shape::Polygons(p) => Shape::Polygons(
            p.into_iter()
                .map(|poly| poly.into_iter().map(|(x, y)| (x + dx, y + dy)).collect())
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_tight_boxes_and_areas() {
        let mut rng = SeedRng::new(3);
        for class in 0..6 {
            let s = make_shape(class, 40.0, &mut rng);
            let s = translate(s, 50.0, 50.0);
            let b = s.bbox();
            assert!(b[0] >= 29.9 && b[2] <= 70.1, "{class} {b:?}");
            // The centre of a circle/square/cross/ellipse/star is inside.
            if class != 2 {
                assert!(s.contains(50.0, 50.0), "{class}");
            }
            assert!(!s.contains(b[0] - 1.0, b[1] - 1.0));
        }
    }
}
