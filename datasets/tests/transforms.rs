//! Transforms against hand-derived values and against torchvision (the committed fixture made
//! by `tools/make_transform_fixture.py`: torchvision's functional transforms, PIL path).

mod common;

use common::{assert_close, flat};
use datasets::rng::SeedRng;
use datasets::transforms::{
    crop, get_size_with_aspect_ratio, hflip, resize, resize_to, Normalize, Sample, Transform,
    TransformConfig, ValidationTransform,
};
use datasets::PixelTarget;
use image::{Rgb, RgbImage};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transforms")
        .join(name)
}

fn png(name: &str) -> RgbImage {
    image::open(fixture(name)).unwrap().into_rgb8()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn boxes_of(v: &Value) -> Vec<[f32; 4]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b: Vec<f32> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            [b[0], b[1], b[2], b[3]]
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn f32_file(name: &str) -> Vec<f32> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn fixture_sample() -> Sample {
    let e = expected();
    let image = png("input.png");
    let (w, h) = (image.width() as usize, image.height() as usize);
    let boxes = boxes_of(&e["meta"]["boxes"]);
    let n = boxes.len();
    Sample {
        image,
        target: PixelTarget {
            boxes,
            labels: e["meta"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_u64().unwrap() as usize)
                .collect(),
            area: floats(&e["meta"]["area"]),
            iscrowd: vec![false; n],
            image_id: 7,
            orig_size: [h, w],
            size: [h, w],
        },
    }
}

fn plain_sample(w: u32, h: u32, boxes: Vec<[f32; 4]>) -> Sample {
    let image = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
    let n = boxes.len();
    Sample {
        image,
        target: PixelTarget {
            area: boxes
                .iter()
                .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
                .collect(),
            labels: (1..=n).collect(),
            iscrowd: vec![false; n],
            boxes,
            image_id: 1,
            orig_size: [h as usize, w as usize],
            size: [h as usize, w as usize],
        },
    }
}

// ---------------------------------------------------------------- hand-derived cases

#[test]
fn hflip_by_hand() {
    let s = plain_sample(
        100,
        50,
        vec![[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 100.0, 50.0]],
    );
    let left = *s.image.get_pixel(0, 3);
    let f = hflip(s);
    assert_eq!(
        flat(&f.target.boxes),
        vec![70.0, 20.0, 90.0, 40.0, 0.0, 0.0, 100.0, 50.0]
    );
    assert_eq!(*f.image.get_pixel(99, 3), left);
    assert_eq!(f.target.size, [50, 100]);
}

#[test]
fn size_rule_by_hand() {
    // The original's rounding quirk: 250x830 (w x h) -> 402x1334 (w x h).
    assert_eq!(
        get_size_with_aspect_ratio(250, 830, 800, Some(1333)),
        (1334, 402)
    );
    // No cap needed: shorter side 800, longer side truncated: 640x480 -> 1066x800.
    assert_eq!(
        get_size_with_aspect_ratio(640, 480, 800, Some(1333)),
        (800, 1066)
    );
    // Already the right size.
    assert_eq!(
        get_size_with_aspect_ratio(800, 1000, 800, Some(1333)),
        (1000, 800)
    );
    // No max size.
    assert_eq!(get_size_with_aspect_ratio(100, 300, 50, None), (150, 50));
}

#[test]
fn resize_with_max_size_by_hand() {
    let s = plain_sample(25, 83, vec![[5.0, 10.0, 20.0, 80.0]]);
    // 83/25*80 = 265.6 > 133 -> shorter side round(133*25/83) = round(40.06) = 40, longer
    // int(40*83/25) = int(132.8) = 132.
    let r = resize(s, 80, Some(133));
    assert_eq!(r.image.dimensions(), (40, 132));
    assert_eq!(r.target.size, [132, 40]);
    let (rw, rh) = ((40.0f64 / 25.0) as f32, (132.0f64 / 83.0) as f32);
    assert_close(
        &flat(&r.target.boxes),
        &[5.0 * rw, 10.0 * rh, 20.0 * rw, 80.0 * rh],
        1e-6,
        "boxes",
    );
    assert_close(&r.target.area, &[15.0 * 70.0 * (rw * rh)], 1e-5, "area");
    assert_eq!(r.target.orig_size, [83, 25]);
}

#[test]
fn crop_clips_and_removes_by_hand() {
    let s = plain_sample(
        100,
        100,
        vec![
            [10.0, 10.0, 50.0, 50.0], // partly inside -> [0, 0, 20, 30]
            [60.0, 60.0, 90.0, 90.0], // touches only the bottom edge -> zero height, removed
            [0.0, 0.0, 5.0, 5.0],     // outside -> removed
            [35.0, 25.0, 45.0, 35.0], // inside -> [5, 5, 15, 15]
        ],
    );
    let pixel = *s.image.get_pixel(30, 20);
    let c = crop(s, 20, 30, 40, 40);
    assert_eq!(c.image.dimensions(), (40, 40));
    assert_eq!(*c.image.get_pixel(0, 0), pixel);
    assert_eq!(
        flat(&c.target.boxes),
        vec![0.0, 0.0, 20.0, 30.0, 5.0, 5.0, 15.0, 15.0]
    );
    assert_eq!(c.target.labels, vec![1, 4]);
    assert_eq!(c.target.area, vec![600.0, 100.0]);
    assert_eq!(c.target.size, [40, 40]);
}

#[test]
fn normalize_by_hand() {
    let mut s = plain_sample(100, 200, vec![[10.0, 20.0, 30.0, 60.0]]);
    s.image.put_pixel(0, 0, Rgb([255, 0, 128]));
    let item = Normalize::default().apply(s);
    assert_eq!((item.height, item.width), (200, 100));
    assert_eq!(item.image.len(), 3 * 200 * 100);
    let hw = 200 * 100;
    assert_close(&[item.image[0]], &[(1.0 - 0.485) / 0.229], 1e-6, "r");
    assert_close(&[item.image[hw]], &[(0.0 - 0.456) / 0.224], 1e-6, "g");
    assert_close(
        &[item.image[2 * hw]],
        &[(128.0 / 255.0 - 0.406) / 0.225],
        1e-6,
        "b",
    );
    // (cx, cy, w, h) / (W, H, W, H): (20/100, 40/200, 20/100, 40/200).
    assert_close(
        &flat(&item.target.boxes),
        &[0.2, 0.2, 0.2, 0.2],
        1e-7,
        "boxes",
    );
    assert_eq!(item.target.size, [200, 100]);
}

#[test]
fn random_transforms_are_seeded_and_bounded() {
    let t = TransformConfig::scaled(0.1).train_transform();
    t.validate().unwrap();
    let mk = || {
        plain_sample(
            64,
            48,
            vec![[5.0, 5.0, 40.0, 30.0], [30.0, 20.0, 60.0, 45.0]],
        )
    };
    let mut sizes = std::collections::HashSet::new();
    for seed in 0..40 {
        let a = t.apply(mk(), &mut SeedRng::new(seed));
        let b = t.apply(mk(), &mut SeedRng::new(seed));
        assert_eq!(a, b, "seed {seed}");
        let (w, h) = a.image.dimensions();
        assert_eq!(a.target.size, [h as usize, w as usize]);
        assert!(w.max(h) <= 133, "{w}x{h}");
        for bx in &a.target.boxes {
            // Resizing scales boxes without clamping (as the original): allow rounding.
            let (wf, hf) = (w as f32 * 1.0001, h as f32 * 1.0001);
            assert!(
                bx[0] >= 0.0 && bx[1] >= 0.0 && bx[2] <= wf && bx[3] <= hf,
                "{bx:?}"
            );
            assert!(bx[2] > bx[0] && bx[3] > bx[1]);
        }
        sizes.insert((w, h));
    }
    assert!(
        sizes.len() > 3,
        "multi-scale gives several sizes: {sizes:?}"
    );

    let crop = Transform::RandomSizeCrop {
        min_size: 10,
        max_size: 30,
    };
    for seed in 0..30 {
        let c = crop.apply(mk(), &mut SeedRng::new(seed));
        let (w, h) = c.image.dimensions();
        assert!((10..=30).contains(&w) && (10..=30).contains(&h), "{w}x{h}");
    }
    assert!(Transform::RandomSizeCrop {
        min_size: 5,
        max_size: 2
    }
    .validate()
    .is_err());
    assert!(Transform::RandomResize {
        sizes: vec![],
        max_size: None
    }
    .validate()
    .is_err());
}

#[test]
fn scaled_presets() {
    let d = TransformConfig::detr();
    assert_eq!(d.scales, (480..=800).step_by(32).collect::<Vec<_>>());
    assert_eq!(
        (d.max_size, d.crop_min, d.crop_max, d.val_size),
        (1333, 384, 600, 800)
    );
    let s = TransformConfig::scaled(0.2);
    assert_eq!(s.scales.first(), Some(&96));
    assert_eq!(s.scales.last(), Some(&160));
    assert_eq!((s.max_size, s.val_size), (267, 160));
}

/// The one validation transform: the original's sizes by default, the same thing whether a
/// dataset applies it as a pipeline or a predictor applies it to an image.
#[test]
fn validation_transform_is_defined_once() {
    let v = ValidationTransform::default();
    assert_eq!((v.shortest_side, v.longest_side), (800, Some(1333)));
    assert_eq!(v.normalize, Normalize::default());
    assert_eq!(TransformConfig::detr().val(), v.pipeline());
    let small = TransformConfig::scaled(0.05).validation();
    assert_eq!((small.shortest_side, small.longest_side), (40, Some(67)));
    assert_eq!(TransformConfig::scaled(0.05).val(), small.pipeline());

    let mut image = RgbImage::new(37, 90);
    for (x, y, p) in image.enumerate_pixels_mut() {
        *p = Rgb([(x * 7) as u8, (y * 3) as u8, ((x + y) * 5) as u8]);
    }
    let prepared = small.prepare(&image, 9);
    let sample = Sample {
        image,
        target: PixelTarget {
            image_id: 9,
            orig_size: [90, 37],
            size: [90, 37],
            ..Default::default()
        },
    };
    let piped = small.pipeline().apply(sample, &mut SeedRng::new(0));
    assert_eq!(prepared.image, piped.image);
    assert_eq!(
        (prepared.height, prepared.width),
        (piped.height, piped.width)
    );
    // The original's size rule: short side round(67·37/90) = 28, long side int(28·90/37) = 68.
    assert_eq!((prepared.height, prepared.width), (68, 28));
    assert_eq!(prepared.target.orig_size, [90, 37]);
    assert!(ValidationTransform {
        shortest_side: 0,
        ..v
    }
    .validate()
    .is_err());
}

// ---------------------------------------------------------------- against torchvision

#[test]
fn resize_matches_torchvision() {
    let e = expected();
    for name in [
        "resize_down",
        "resize_up",
        "resize_aniso",
        "resize_vertical_only",
        "resize_horizontal_only",
        "resize_big_down",
        "resize_down_vertical_first",
        "resize_down_horizontal_first",
        "resize_uniform_up",
        "resize_uniform_down",
    ] {
        let case = &e["cases"][name];
        let size = case["size"].as_array().unwrap();
        let (h, w) = (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        );
        let r = resize_to(fixture_sample(), h, w);
        let want = png(&format!("{name}.png"));
        assert_eq!(r.image.dimensions(), want.dimensions(), "{name}");
        let diff = r
            .image
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "{name}: {diff} bytes differ from Pillow");
        assert_close(
            &flat(&r.target.boxes),
            &flat(&boxes_of(&case["boxes"])),
            1e-6,
            name,
        );
        assert_close(&r.target.area, &floats(&case["area"]), 1e-6, name);
    }
}

#[test]
fn hflip_and_crop_match_torchvision() {
    let e = expected();
    let f = hflip(fixture_sample());
    assert_eq!(f.image, png("hflip.png"));
    assert_eq!(
        flat(&f.target.boxes),
        flat(&boxes_of(&e["cases"]["hflip"]["boxes"]))
    );

    let case = &e["cases"]["crop"];
    let r: Vec<usize> = case["region"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let c = crop(fixture_sample(), r[0], r[1], r[2], r[3]);
    assert_eq!(c.image, png("crop.png"));
    assert_eq!(flat(&c.target.boxes), flat(&boxes_of(&case["boxes"])));
    assert_eq!(c.target.area, floats(&case["area"]));
    let labels: Vec<usize> = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(c.target.labels, labels);
}

#[test]
fn normalize_matches_torchvision() {
    let e = expected();
    let item = Normalize::default().apply(fixture_sample());
    assert_close(&item.image, &f32_file("normalized.bin"), 1e-6, "image");
    assert_close(
        &flat(&item.target.boxes),
        &flat(&boxes_of(&e["cases"]["normalize"]["boxes"])),
        1e-6,
        "boxes",
    );
}

#[test]
fn chain_matches_torchvision() {
    let e = expected();
    let case = &e["cases"]["chain"];
    let s = resize(fixture_sample(), 30, Some(50));
    let want: Vec<u64> = case["resize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(s.target.size, [want[0] as usize, want[1] as usize]);
    let s = crop(s, 3, 4, 20, 26);
    let s = hflip(s);
    assert_eq!(s.image, png("chain.png"));
    let item = Normalize::default().apply(s);
    assert_close(
        &item.image,
        &f32_file("chain_normalized.bin"),
        1e-6,
        "image",
    );
    assert_close(
        &flat(&item.target.boxes),
        &flat(&boxes_of(&case["boxes_cxcywh"])),
        1e-6,
        "boxes",
    );
    assert_eq!(item.target.labels, vec![1, 2, 3]);
}

#[test]
fn size_rule_matches_original() {
    let e = expected();
    for c in e["cases"]["size_rule"].as_array().unwrap() {
        let g = |k: &str| c[k].as_u64().map(|v| v as usize);
        let out = get_size_with_aspect_ratio(
            g("w").unwrap(),
            g("h").unwrap(),
            g("size").unwrap(),
            g("max_size"),
        );
        let want = c["out_hw"].as_array().unwrap();
        assert_eq!(
            out,
            (
                want[0].as_u64().unwrap() as usize,
                want[1].as_u64().unwrap() as usize
            ),
            "{c}"
        );
    }
}
