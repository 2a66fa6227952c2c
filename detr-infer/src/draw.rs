//! Drawing on 8-bit RGB images: boxes with a class name and score, and attention heat maps.
//!
//! Text uses the public-domain 8×8 bitmap font embedded by the `font8x8` crate (printable
//! ASCII; other characters are drawn as `?`), scaled by whole pixels. No system fonts are
//! used and nothing is loaded at run time.
//!
//! ```
//! use detr_infer::draw::{draw_detections, BoxAnnotation};
//! let image = image::RgbImage::new(64, 48);
//! let boxes = [BoxAnnotation::new([4.0, 4.0, 40.0, 30.0], "cat", Some(0.93))];
//! let drawn = draw_detections(&image, &boxes);
//! assert_eq!(drawn.dimensions(), (64, 48));
//! ```

use image::{Rgb, RgbImage};

/// Width and height in pixels of one glyph of the embedded font at scale 1.
pub const GLYPH_SIZE: u32 = 8;

/// One box to draw: corners in pixels of the image drawn on, a label and an optional score.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxAnnotation {
    /// `[x0, y0, x1, y1]` in pixels (may lie partly or wholly outside the image).
    pub xyxy: [f32; 4],
    /// Text drawn above the box (the class name); may be empty.
    pub label: String,
    /// Score printed after the label with two decimals (`None` for ground truth).
    pub score: Option<f32>,
    /// The box colour; `None` picks one from the label (same label, same colour).
    pub color: Option<Rgb<u8>>,
}

impl BoxAnnotation {
    /// A box whose colour follows its label.
    pub fn new(xyxy: [f32; 4], label: impl Into<String>, score: Option<f32>) -> Self {
        Self {
            xyxy,
            label: label.into(),
            score,
            color: None,
        }
    }

    /// The same box with a fixed colour.
    pub fn with_color(mut self, color: Rgb<u8>) -> Self {
        self.color = Some(color);
        self
    }

    /// The text drawn with the box: `"label 0.93"`, `"label"` or `"0.93"`.
    pub fn caption(&self) -> String {
        match (self.label.is_empty(), self.score) {
            (false, Some(s)) => format!("{} {:.2}", self.label, s),
            (false, None) => self.label.clone(),
            (true, Some(s)) => format!("{s:.2}"),
            (true, None) => String::new(),
        }
    }

    /// The colour used for this box.
    pub fn resolved_color(&self) -> Rgb<u8> {
        self.color.unwrap_or_else(|| color_for_label(&self.label))
    }
}

/// Line thickness and text scale for drawing on an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawStyle {
    /// Box outline thickness in pixels (drawn inwards from the box edge).
    pub thickness: u32,
    /// Integer scale of the 8×8 font (2 gives 16-pixel text).
    pub text_scale: u32,
}

impl DrawStyle {
    /// A style that reads well on an image of this size: about 1/300 of the shorter side for
    /// lines (at least 1 pixel) and 1/400 for the text scale (at least 1).
    pub fn for_size(width: u32, height: u32) -> Self {
        let short = width.min(height).max(1);
        Self {
            thickness: (short / 300).max(1),
            text_scale: (short / 400).max(1),
        }
    }
}

/// A fixed palette of well-separated colours (matplotlib's "tab10").
pub const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

/// The palette colour for a label (FNV-1a hash of its bytes): stable across runs.
pub fn color_for_label(label: &str) -> Rgb<u8> {
    let mut hash: u32 = 0x811c_9dc5;
    for b in label.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    PALETTE[(hash % PALETTE.len() as u32) as usize]
}

/// Returns a copy of `image` with every box, its label and score drawn, in a style chosen
/// from the image size ([`DrawStyle::for_size`]).
pub fn draw_detections(image: &RgbImage, boxes: &[BoxAnnotation]) -> RgbImage {
    let mut out = image.clone();
    let style = DrawStyle::for_size(image.width(), image.height());
    draw_detections_mut(&mut out, boxes, style);
    out
}

/// Draws every box with its caption onto `image` in place. All boxes are drawn first, then
/// all captions, so a caption is never hidden by another box's outline.
pub fn draw_detections_mut(image: &mut RgbImage, boxes: &[BoxAnnotation], style: DrawStyle) {
    for b in boxes {
        draw_rect(image, b.xyxy, b.resolved_color(), style.thickness);
    }
    for b in boxes {
        let caption = b.caption();
        if caption.is_empty() {
            continue;
        }
        let color = b.resolved_color();
        let [x0, y0, ..] = clamp_box(image, b.xyxy);
        let text_h = (GLYPH_SIZE * style.text_scale + 2) as i64;
        // Above the box when there is room, else just inside its top edge.
        let y = if y0 >= text_h { y0 - text_h } else { y0 };
        draw_label(image, x0, y, &caption, color, style.text_scale);
    }
}

/// Box corners rounded to whole pixels and clamped to the image (NaN becomes 0).
fn clamp_box(image: &RgbImage, xyxy: [f32; 4]) -> [i64; 4] {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let c = |v: f32, hi: f32| -> i64 {
        if v.is_nan() {
            0
        } else {
            v.round().clamp(0.0, hi) as i64
        }
    };
    [c(xyxy[0], w), c(xyxy[1], h), c(xyxy[2], w), c(xyxy[3], h)]
}

/// Fills the pixels `x0..x1 × y0..y1` (exclusive ends), clipped to the image.
pub fn fill_rect(image: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (x0, x1) = (x0.clamp(0, w), x1.clamp(0, w));
    let (y0, y1) = (y0.clamp(0, h), y1.clamp(0, h));
    for y in y0..y1 {
        for x in x0..x1 {
            image.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// Draws the outline of the box `[x0, y0, x1, y1]` (pixels, rounded) with `thickness`
/// pixels drawn inwards from the edges. The outline covers columns `x0..x1` and rows
/// `y0..y1` (the right and bottom edges end at `x1 - 1`, `y1 - 1`). Parts outside the image
/// are clipped; a box wholly outside draws nothing.
pub fn draw_rect(image: &mut RgbImage, xyxy: [f32; 4], color: Rgb<u8>, thickness: u32) {
    if xyxy.iter().any(|v| !v.is_finite()) {
        return;
    }
    let r = |v: f32| v.round().clamp(-1e9, 1e9) as i64;
    let (x0, y0, x1, y1) = (r(xyxy[0]), r(xyxy[1]), r(xyxy[2]), r(xyxy[3]));
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let t = i64::from(thickness.max(1));
    fill_rect(image, x0, y0, x1, (y0 + t).min(y1), color); // top
    fill_rect(image, x0, (y1 - t).max(y0), x1, y1, color); // bottom
    fill_rect(image, x0, y0, (x0 + t).min(x1), y1, color); // left
    fill_rect(image, (x1 - t).max(x0), y0, x1, y1, color); // right
}

/// The size in pixels of `text` drawn at `scale`: `(width, height)`.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    (n * GLYPH_SIZE * scale, GLYPH_SIZE * scale)
}

/// Draws `text` with its top-left corner at `(x, y)` in `color`, without a background.
/// Pixels outside the image are skipped.
pub fn draw_text(image: &mut RgbImage, x: i64, y: i64, text: &str, color: Rgb<u8>, scale: u32) {
    let s = i64::from(scale.max(1));
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() && !ch.is_ascii_control() {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let gx = x + i as i64 * 8 * s;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // Bit 0 is the leftmost pixel of a row.
                if bits >> col & 1 == 0 {
                    continue;
                }
                let px = gx + col * s;
                let py = y + row as i64 * s;
                for dy in 0..s {
                    for dx in 0..s {
                        let (xx, yy) = (px + dx, py + dy);
                        if (0..w).contains(&xx) && (0..h).contains(&yy) {
                            image.put_pixel(xx as u32, yy as u32, color);
                        }
                    }
                }
            }
        }
    }
}

/// Black or white, whichever reads better on `background` (ITU-R BT.601 luma).
pub fn text_color_on(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0;
    let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
    if luma > 140.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Draws `text` on a filled rectangle of `background` with a 1-pixel margin, its top-left
/// corner at `(x, y)`; the label is shifted left to stay inside the image when it can.
pub fn draw_label(
    image: &mut RgbImage,
    x: i64,
    y: i64,
    text: &str,
    background: Rgb<u8>,
    scale: u32,
) {
    let (tw, th) = text_size(text, scale.max(1));
    let (bw, bh) = (i64::from(tw) + 2, i64::from(th) + 2);
    let x = x.min(i64::from(image.width()) - bw).max(0);
    fill_rect(image, x, y, x + bw, y + bh, background);
    draw_text(image, x + 1, y + 1, text, text_color_on(background), scale);
}

/// A "jet"-like colour map from blue (0) through cyan, yellow to red (1); `v` is clamped.
pub fn heat_color(v: f32) -> Rgb<u8> {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let ch = |c: f32| ((1.5 - (4.0 * v - c).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([ch(3.0), ch(2.0), ch(1.0)])
}

/// Bilinearly samples the row-major `height`×`width` grid `map` at the centre of every
/// pixel of an `out_w`×`out_h` image (align-corners off, like PyTorch's `interpolate`).
/// Returns `out_h * out_w` values. An empty map gives zeros.
pub fn upsample_bilinear(
    map: &[f32],
    width: usize,
    height: usize,
    out_w: u32,
    out_h: u32,
) -> Vec<f32> {
    let (ow, oh) = (out_w as usize, out_h as usize);
    let mut out = vec![0.0; ow * oh];
    if width == 0 || height == 0 || map.len() < width * height {
        return out;
    }
    let coord = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let src = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, src - i0 as f32)
    };
    let xs: Vec<_> = (0..ow).map(|x| coord(x, width, ow)).collect();
    for y in 0..oh {
        let (y0, y1, fy) = coord(y, height, oh);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let top = map[y0 * width + x0] * (1.0 - fx) + map[y0 * width + x1] * fx;
            let bot = map[y1 * width + x0] * (1.0 - fx) + map[y1 * width + x1] * fx;
            out[y * ow + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

/// Overlays a heat map over `image`: `map` is a row-major `height`×`width` grid (for DETR,
/// one query's attention over the feature map), min–max normalised, bilinearly upsampled to
/// the image and blended as `(1 - alpha) * pixel + alpha * heat_color(v)`.
pub fn overlay_heatmap(
    image: &RgbImage,
    map: &[f32],
    width: usize,
    height: usize,
    alpha: f32,
) -> RgbImage {
    let (iw, ih) = image.dimensions();
    let finite = map.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f32::INFINITY, f32::min);
    let hi = finite.fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let normed: Vec<f32> = map
        .iter()
        .map(|&v| {
            if v.is_finite() && lo.is_finite() {
                (v - lo) / span
            } else {
                0.0
            }
        })
        .collect();
    let up = upsample_bilinear(&normed, width, height, iw, ih);
    let a = alpha.clamp(0.0, 1.0);
    let mut out = image.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let heat = heat_color(up[i]);
        for c in 0..3 {
            let v = (1.0 - a) * f32::from(px.0[c]) + a * f32::from(heat.0[c]);
            px.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}
