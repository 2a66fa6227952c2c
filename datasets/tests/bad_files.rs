//! Bad input files of issue 12: a truncated JPEG (item 5) and COCO JSON files with a byte-order
//! mark, a top-level array or a NaN box (item 6), each reproduced with data made here.

mod common;

use std::path::Path;

use common::TempDir;
use datasets::dataset::decode_rgb;
use datasets::validate::{check_image_file, check_split, ImageCheck};
use datasets::{CocoFile, CocoSplit, OpenOptions, Pipeline, SplitPaths};

fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, ((x ^ y) * 2) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// A two-image split (`good.jpg`, `cut.jpg`) whose second JPEG lost its last 40 %.
fn split_with_truncated_jpeg(dir: &Path) -> SplitPaths {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let full = jpeg_bytes(64, 48);
    std::fs::write(images.join("good.jpg"), &full).unwrap();
    std::fs::write(images.join("cut.jpg"), &full[..full.len() * 3 / 5]).unwrap();
    let json = r#"{
        "images": [
            {"id": 1, "file_name": "good.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "cut.jpg", "width": 64, "height": 48}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400}
        ],
        "categories": [{"id": 1, "name": "thing"}]
    }"#;
    let ann = dir.join("ann.json");
    std::fs::write(&ann, json).unwrap();
    SplitPaths::new(images, ann)
}

/// Issue 12 item 5: the cut JPEG decoded (its missing part grey) in check, training and predict.
#[test]
fn truncated_jpeg_is_an_unreadable_image_everywhere() {
    let t = TempDir::new("cut-jpeg");
    let paths = split_with_truncated_jpeg(t.path());
    let cut = paths.images_dir.join("cut.jpg");
    // The decoder alone accepts it: this is what went unnoticed.
    assert!(
        image::open(&cut).is_ok(),
        "the decoder patches truncated JPEGs up"
    );

    // `detr-infer check --image-check decode`.
    let report = check_split(&paths, ImageCheck::Decode).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let msg = report.errors[0].to_string();
    assert!(
        msg.contains("cut.jpg") && msg.contains("image id 2") && msg.contains("truncated"),
        "{msg}"
    );
    let msg = check_image_file(
        &cut,
        &paths.annotation_file,
        2,
        "cut.jpg",
        ImageCheck::Decode,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("truncated JPEG"), "{msg}");

    // Training's loader: the same error as any unreadable image.
    let ds = CocoSplit::open(&paths, Pipeline::identity(), &OpenOptions::default()).unwrap();
    assert!(ds.load(0, 0).is_ok());
    let msg = ds.load(1, 0).unwrap_err().to_string();
    assert!(
        msg.contains("cut.jpg") && msg.contains("truncated"),
        "{msg}"
    );

    // predict's decoder.
    assert!(decode_rgb(&paths.images_dir.join("good.jpg"), 0).is_ok());
    let msg = decode_rgb(&cut, 0).unwrap_err().to_string();
    assert!(
        msg.contains("cut.jpg") && msg.contains("truncated"),
        "{msg}"
    );
}

/// A truncated PNG was already an error; it stays one.
#[test]
fn truncated_png_is_an_error() {
    let t = TempDir::new("cut-png");
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let path = t.path().join("cut.png");
    img.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = decode_rgb(&path, 3).unwrap_err().to_string();
    assert!(msg.contains("cut.png"), "{msg}");
}

const COCO: &str = r#"{"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
 "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
                 {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, NaN, 4]}],
 "categories": [{"id": 1, "name": "x"}]}"#;

/// Issue 12 item 6: a UTF-8 byte-order mark gave "expected value at line 1 column 1".
#[test]
fn byte_order_mark_is_accepted() {
    let t = TempDir::new("bom");
    let path = t.path().join("bom.json");
    let text = COCO.replace("NaN", "3");
    std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    let coco = CocoFile::load(&path).unwrap();
    assert_eq!(coco.annotations.len(), 2);
    CocoFile::from_json_str(&format!("\u{feff}{text}"), &path).unwrap();
}

/// Issue 12 item 6: a top-level array said only "expected value at line 1 column 1".
#[test]
fn top_level_array_is_not_a_coco_file() {
    let t = TempDir::new("array");
    let path = t.path().join("results.json");
    std::fs::write(
        &path,
        r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]"#,
    )
    .unwrap();
    for msg in [
        CocoFile::load(&path).unwrap_err().to_string(),
        CocoFile::from_json_str(&std::fs::read_to_string(&path).unwrap(), &path)
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            msg.contains("results.json") && msg.contains("JSON array, not a COCO annotation file"),
            "{msg}"
        );
    }
}

/// Issue 12 item 6: NaN in a bbox named only a column.
#[test]
fn nan_in_a_bbox_names_the_annotation_and_the_field() {
    let t = TempDir::new("nan");
    let path = t.path().join("nan.json");
    std::fs::write(&path, COCO).unwrap();
    for msg in [
        CocoFile::load(&path).unwrap_err().to_string(),
        CocoFile::from_json_str(COCO, &path)
            .unwrap_err()
            .to_string(),
    ] {
        assert!(msg.contains("nan.json"), "{msg}");
        assert!(msg.contains("annotations[1] (id 7)"), "{msg}");
        assert!(
            msg.contains("bbox[2]") && msg.contains("NaN is not a JSON number"),
            "{msg}"
        );
    }
}
