//! A PNG of the training curves: losses (left panel) and COCO AP (right panel), per epoch.
//!
//! Colours: train loss blue, validation loss orange; AP green, AP50 red. Axes start at 0; each
//! panel has a legend at its top, the top of its y axis and the last epoch printed.

use detr_infer::draw::draw_label;
use image::{Rgb, RgbImage};

/// One curve: points `(epoch, value)`.
pub struct Series<'a> {
    /// Points.
    pub points: &'a [(f64, f64)],
    /// Line colour.
    pub color: Rgb<u8>,
    /// Legend text.
    pub name: &'a str,
}

const W: u32 = 480;
const H: u32 = 320;
const M: i64 = 30;

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x + ox, y + oy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn panel(img: &mut RgbImage, x_off: i64, series: &[Series<'_>], x_max: f64, y_max: f64) {
    let (w, h) = (W as i64, H as i64);
    let axis = Rgb([60, 60, 60]);
    let grid = Rgb([225, 225, 225]);
    for k in 1..5 {
        let y = h - M - (h - 2 * M) * k / 5;
        line(img, (x_off + M, y), (x_off + w - M, y), grid);
    }
    line(img, (x_off + M, h - M), (x_off + w - M, h - M), axis);
    line(img, (x_off + M, M), (x_off + M, h - M), axis);
    let px = |x: f64| x_off + M + ((x / x_max.max(1e-12)) * (w - 2 * M) as f64).round() as i64;
    let py = |y: f64| {
        h - M - ((y / y_max.max(1e-12)).clamp(0.0, 1.0) * (h - 2 * M) as f64).round() as i64
    };
    let white = Rgb([255, 255, 255]);
    draw_label(img, x_off + 2, M - 12, &format!("{y_max:.3}"), white, 1);
    draw_label(img, x_off + 2, h - M - 5, "0", white, 1);
    draw_label(
        img,
        x_off + w - M - 60,
        h - M + 4,
        &format!("epoch {x_max:.0}"),
        white,
        1,
    );
    let mut legend_x = x_off + M + 60;
    for s in series {
        draw_label(img, legend_x, 4, s.name, s.color, 1);
        legend_x += 8 * s.name.len() as i64 + 12;
    }
    for s in series {
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for p in pts.windows(2) {
            line(img, p[0], p[1], s.color);
        }
        for &(x, y) in &pts {
            for d in -2..=2 {
                line(img, (x + d, y - 2), (x + d, y + 2), s.color);
            }
        }
    }
}

/// Draws the losses and AP curves side by side (960×320).
pub fn curves(
    train_loss: &[(f64, f64)],
    val_loss: &[(f64, f64)],
    ap: &[(f64, f64)],
    ap50: &[(f64, f64)],
) -> RgbImage {
    let mut img = RgbImage::from_pixel(2 * W, H, Rgb([255, 255, 255]));
    let x_max = train_loss
        .iter()
        .chain(val_loss)
        .chain(ap)
        .map(|p| p.0)
        .fold(1.0f64, f64::max);
    let loss_max = train_loss
        .iter()
        .chain(val_loss)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        * 1.05;
    panel(
        &mut img,
        0,
        &[
            Series {
                points: train_loss,
                color: Rgb([31, 119, 180]),
                name: "train loss",
            },
            Series {
                points: val_loss,
                color: Rgb([255, 127, 14]),
                name: "validation loss",
            },
        ],
        x_max,
        loss_max,
    );
    panel(
        &mut img,
        W as i64,
        &[
            Series {
                points: ap,
                color: Rgb([44, 160, 44]),
                name: "AP",
            },
            Series {
                points: ap50,
                color: Rgb([214, 39, 40]),
                name: "AP50",
            },
        ],
        x_max,
        1.0,
    );
    img
}
