//! Drawing: box outlines land on the exact pixels, captions are drawn, heat maps blend.

use detr_infer::draw::{
    draw_detections, draw_detections_mut, draw_rect, draw_text, heat_color, overlay_heatmap,
    upsample_bilinear, BoxAnnotation, DrawStyle,
};
use image::{Rgb, RgbImage};

const GREY: Rgb<u8> = Rgb([100, 100, 100]);
const RED: Rgb<u8> = Rgb([255, 0, 0]);

#[test]
fn rect_outline_covers_exactly_the_edges() {
    let mut img = RgbImage::from_pixel(20, 16, GREY);
    draw_rect(&mut img, [3.0, 4.0, 12.0, 10.0], RED, 1);
    for y in 0..16 {
        for x in 0..20 {
            let on_edge = (3..12).contains(&x)
                && (4..10).contains(&y)
                && (x == 3 || x == 11 || y == 4 || y == 9);
            let expected = if on_edge { RED } else { GREY };
            assert_eq!(*img.get_pixel(x, y), expected, "pixel ({x},{y})");
        }
    }
}

#[test]
fn thick_rect_and_clipping() {
    let mut img = RgbImage::from_pixel(10, 10, GREY);
    // Partly outside: only the visible edges are drawn, nothing panics.
    draw_rect(&mut img, [-5.0, 2.0, 6.0, 30.0], RED, 2);
    assert_eq!(*img.get_pixel(0, 2), RED); // top edge, visible part
    assert_eq!(*img.get_pixel(5, 3), RED); // right edge, 2 pixels thick: columns 4 and 5
    assert_eq!(*img.get_pixel(4, 6), RED);
    assert_eq!(*img.get_pixel(3, 6), GREY); // inside
    assert_eq!(*img.get_pixel(6, 6), GREY); // outside to the right
    assert_eq!(*img.get_pixel(2, 1), GREY); // above
                                            // Non-finite or empty boxes draw nothing.
    let before = img.clone();
    draw_rect(&mut img, [f32::NAN, 0.0, 5.0, 5.0], RED, 1);
    draw_rect(&mut img, [5.0, 5.0, 5.0, 9.0], RED, 1);
    draw_rect(&mut img, [50.0, 50.0, 60.0, 60.0], RED, 1);
    assert_eq!(img, before);
}

#[test]
fn text_uses_the_bitmap_font() {
    let mut img = RgbImage::from_pixel(16, 8, Rgb([0, 0, 0]));
    draw_text(&mut img, 0, 0, "I", Rgb([255, 255, 255]), 1);
    // font8x8's 'I' is [0x1E, 0x0C, 0x0C, 0x0C, 0x0C, 0x0C, 0x1E, 0x00], bit 0 leftmost.
    let glyph = [0x1Eu8, 0x0C, 0x0C, 0x0C, 0x0C, 0x0C, 0x1E, 0x00];
    for (y, bits) in glyph.iter().enumerate() {
        for x in 0..8u32 {
            let lit = bits >> x & 1 == 1;
            let v = img.get_pixel(x, y as u32).0[0];
            assert_eq!(v == 255, lit, "pixel ({x},{y})");
        }
    }
    // Scale 2 doubles every pixel; the second glyph cell stays empty.
    let mut img2 = RgbImage::from_pixel(16, 16, Rgb([0, 0, 0]));
    draw_text(&mut img2, 0, 0, "I", Rgb([255, 255, 255]), 2);
    assert_eq!(img2.get_pixel(2, 0).0[0], 255); // bit 1 of row 0 -> x 2..4
    assert_eq!(img2.get_pixel(3, 1).0[0], 255);
    assert_eq!(img2.get_pixel(0, 0).0[0], 0);
    // Text near the border is clipped, not a panic.
    draw_text(&mut img2, 12, 12, "Hello \u{e9}", RED, 3);
}

#[test]
fn detections_draw_box_and_caption() {
    let img = RgbImage::from_pixel(64, 48, GREY);
    let boxes = [BoxAnnotation::new([10.0, 20.0, 50.0, 44.0], "cat", Some(0.93)).with_color(RED)];
    assert_eq!(boxes[0].caption(), "cat 0.93");
    let out = draw_detections(&img, &boxes);
    assert_eq!(img.get_pixel(10, 20), &GREY, "input not modified");
    // Outline (style for a 64x48 image: thickness 1, text scale 1).
    assert_eq!(
        DrawStyle::for_size(64, 48),
        DrawStyle {
            thickness: 1,
            text_scale: 1
        }
    );
    assert_eq!(*out.get_pixel(30, 43), RED); // bottom edge
    assert_eq!(*out.get_pixel(10, 30), RED); // left edge
    assert_eq!(*out.get_pixel(49, 30), RED); // right edge
    assert_eq!(*out.get_pixel(30, 30), GREY); // interior untouched
                                              // Caption: 8 glyphs * 8 px + 2 margin = 66 > 64, so it is shifted to x = 0 and drawn
                                              // above the box (rows 10..20) on a red background with white text.
    let label_rows = 10..20u32;
    let mut red = 0;
    let mut white = 0;
    for y in label_rows {
        for x in 0..64 {
            match out.get_pixel(x, y).0 {
                [255, 0, 0] => red += 1,
                [255, 255, 255] => white += 1,
                _ => {}
            }
        }
    }
    assert!(red > 300 && white > 50, "red {red} white {white}");
    assert!(out.rows().take(10).flatten().all(|p| *p == GREY));
}

#[test]
fn label_colours_are_stable_and_captions_optional() {
    let a = BoxAnnotation::new([0.0, 0.0, 4.0, 4.0], "dog", None);
    let b = BoxAnnotation::new([0.0, 0.0, 4.0, 4.0], "dog", Some(0.5));
    assert_eq!(a.resolved_color(), b.resolved_color());
    assert_eq!(a.caption(), "dog");
    assert_eq!(BoxAnnotation::new([0.0; 4], "", None).caption(), "");
    let mut img = RgbImage::from_pixel(8, 8, GREY);
    draw_detections_mut(
        &mut img,
        &[],
        DrawStyle {
            thickness: 1,
            text_scale: 1,
        },
    );
    assert!(img.pixels().all(|p| *p == GREY));
}

#[test]
fn heat_map_upsamples_and_blends() {
    // 2x2 map upsampled to 4x4 with half-pixel centres: corners keep the corner values.
    let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
    assert_eq!(up[0], 0.0);
    assert_eq!(up[15], 3.0);
    assert!((up[1] - 0.25).abs() < 1e-6, "{}", up[1]);
    assert_eq!(heat_color(0.0), Rgb([0, 0, 128]));
    assert_eq!(heat_color(1.0), Rgb([128, 0, 0]));
    let img = RgbImage::from_pixel(4, 4, Rgb([0, 0, 0]));
    let over = overlay_heatmap(&img, &[0.0, 0.0, 0.0, 1.0], 2, 2, 0.5);
    // Bottom-right is the hottest (red-ish), top-left the coldest (blue).
    assert!(over.get_pixel(3, 3).0[0] > 50 && over.get_pixel(3, 3).0[2] == 0);
    assert!(over.get_pixel(0, 0).0[2] > 50 && over.get_pixel(0, 0).0[0] == 0);
    // Constant and non-finite maps do not panic.
    let _ = overlay_heatmap(&img, &[f32::NAN; 4], 2, 2, 0.5);
    let _ = overlay_heatmap(&img, &[], 0, 0, 0.5);
}
