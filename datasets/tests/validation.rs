//! Every bad input gives an error whose message names the file and the item.

mod common;

use common::TempDir;
use datasets::coco::{CocoAnnotation, CocoCategory, CocoFile, CocoImage};
use datasets::validate::{check_coco, check_split, validate_structure, ImageCheck};
use datasets::{CocoSplit, DatasetError, Layout, OpenOptions, Pipeline, SplitPaths};
use std::path::Path;

fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150]))
        .save(path)
        .unwrap();
}

/// A seed-layout split `bad` with two 20x10 images and the given JSON text.
fn dataset(dir: &Path, json: &str) -> SplitPaths {
    let paths = Layout::ImagesDir.split_paths(dir, "bad");
    std::fs::create_dir_all(&paths.images_dir).unwrap();
    std::fs::create_dir_all(paths.annotation_file.parent().unwrap()).unwrap();
    write_png(&paths.images_dir.join("a.png"), 20, 10);
    write_png(&paths.images_dir.join("b.png"), 20, 10);
    std::fs::write(&paths.annotation_file, json).unwrap();
    paths
}

const CATS: &str = r#""categories": [{"id": 1, "name": "one"}, {"id": 3, "name": "three"}]"#;
const IMAGES: &str = r#""images": [
  {"id": 1, "file_name": "a.png", "width": 20, "height": 10},
  {"id": 2, "file_name": "b.png", "width": 20, "height": 10}]"#;

fn json(annotations: &str) -> String {
    format!("{{{IMAGES}, \"annotations\": [{annotations}], {CATS}}}")
}

fn open_err(paths: &SplitPaths) -> String {
    let e = CocoSplit::open(paths, Pipeline::identity(), &OpenOptions::default())
        .expect_err("must fail");
    e.to_string()
}

fn ann(id: u64, image_id: u64, category_id: u64, bbox: [f64; 4]) -> String {
    format!(
        r#"{{"id": {id}, "image_id": {image_id}, "category_id": {category_id}, "bbox": [{}, {}, {}, {}], "area": 10, "iscrowd": 0}}"#,
        bbox[0], bbox[1], bbox[2], bbox[3]
    )
}

#[test]
fn good_dataset_opens() {
    let t = TempDir::new("good");
    let paths = dataset(t.path(), &json(&ann(1, 1, 3, [1.0, 1.0, 5.0, 5.0])));
    let ds = CocoSplit::open(&paths, Pipeline::identity(), &OpenOptions::default()).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_classes(), 4);
    let item = ds.load(0, 0).unwrap();
    assert_eq!((item.height, item.width), (10, 20));
    assert_eq!(item.target.labels, vec![3]);
    assert_eq!(
        Layout::detect(t.path(), "bad").unwrap(),
        Layout::ImagesDir,
        "layout detection"
    );
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let t = TempDir::new("json");
    let paths = dataset(t.path(), "{\n  \"images\": [\n    {\"id\": 1,, }\n  ]\n}");
    let e = CocoSplit::open(&paths, Pipeline::identity(), &OpenOptions::default())
        .expect_err("must fail");
    match &e {
        DatasetError::Json { line, column, .. } => {
            assert_eq!(*line, 3);
            assert!(*column > 0);
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("bad.json:3:"), "{msg}");
    // A missing required field is reported too.
    let paths = dataset(
        t.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}], "categories": []}"#,
    );
    let msg = open_err(&paths);
    assert!(msg.contains("bad.json") && msg.contains("width"), "{msg}");
}

#[test]
fn missing_annotation_file_is_named() {
    let t = TempDir::new("noann");
    let paths = Layout::Standard.split_paths(t.path(), "val2017");
    let msg = open_err(&paths);
    assert!(msg.contains("instances_val2017.json"), "{msg}");
    let msg = Layout::detect(t.path(), "val2017").unwrap_err().to_string();
    assert!(msg.contains("val2017"), "{msg}");
}

#[test]
fn missing_image_names_file_and_id() {
    let t = TempDir::new("missing");
    let paths = dataset(t.path(), &json(""));
    std::fs::remove_file(paths.images_dir.join("b.png")).unwrap();
    let msg = open_err(&paths);
    assert!(msg.contains("b.png") && msg.contains("image id 2"), "{msg}");
}

#[test]
fn undecodable_image_names_file() {
    let t = TempDir::new("decode");
    let paths = dataset(t.path(), &json(""));
    std::fs::write(
        paths.images_dir.join("b.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    // Opening only checks existence; loading the image fails with the file named.
    let ds = CocoSplit::open(&paths, Pipeline::identity(), &OpenOptions::default()).unwrap();
    let msg = ds.load(1, 0).unwrap_err().to_string();
    assert!(msg.contains("b.png") && msg.contains("image id 2"), "{msg}");
    // Burn's Dataset::get gives None instead of panicking.
    assert!(burn::data::dataset::Dataset::get(&ds, 1).is_none());
    // A full check decodes every image.
    let report = check_split(&paths, ImageCheck::Decode).unwrap();
    assert_eq!(report.errors.len(), 1);
    let msg = report.errors[0].to_string();
    assert!(msg.contains("b.png"), "{msg}");
    let msg = open_err_with(&paths, ImageCheck::Header);
    assert!(msg.contains("b.png"), "{msg}");
}

fn open_err_with(paths: &SplitPaths, check: ImageCheck) -> String {
    let opts = OpenOptions {
        image_check: check,
        ..Default::default()
    };
    CocoSplit::open(paths, Pipeline::identity(), &opts)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn unknown_image_and_category_name_the_annotation() {
    let t = TempDir::new("unknown");
    let paths = dataset(t.path(), &json(&ann(5, 99, 1, [1.0, 1.0, 2.0, 2.0])));
    let msg = open_err(&paths);
    assert!(
        msg.contains("bad.json") && msg.contains("annotation id 5") && msg.contains("image id 99"),
        "{msg}"
    );
    let paths = dataset(t.path(), &json(&ann(6, 1, 2, [1.0, 1.0, 2.0, 2.0])));
    let msg = open_err(&paths);
    assert!(
        msg.contains("annotation id 6") && msg.contains("category id 2"),
        "{msg}"
    );
}

#[test]
fn duplicate_ids_are_named() {
    let t = TempDir::new("dup");
    let a = format!(
        "{}, {}",
        ann(7, 1, 1, [1.0, 1.0, 2.0, 2.0]),
        ann(7, 2, 1, [1.0, 1.0, 2.0, 2.0])
    );
    let msg = open_err(&dataset(t.path(), &json(&a)));
    assert!(msg.contains("duplicate annotation id 7"), "{msg}");

    let text = format!(
        r#"{{"images": [{{"id": 4, "file_name": "a.png", "width": 20, "height": 10}},
            {{"id": 4, "file_name": "b.png", "width": 20, "height": 10}}], {CATS}}}"#
    );
    let msg = open_err(&dataset(t.path(), &text));
    assert!(msg.contains("duplicate image id 4"), "{msg}");

    let text = format!(
        r#"{{{IMAGES}, "categories": [{{"id": 2, "name": "x"}}, {{"id": 2, "name": "y"}}]}}"#
    );
    let msg = open_err(&dataset(t.path(), &text));
    assert!(msg.contains("duplicate category id 2"), "{msg}");
}

#[test]
fn invalid_sizes_boxes_and_areas_are_named() {
    let t = TempDir::new("sizes");
    let text = format!(
        r#"{{"images": [{{"id": 1, "file_name": "a.png", "width": -20, "height": 10}}], {CATS}}}"#
    );
    let msg = open_err(&dataset(t.path(), &text));
    assert!(
        msg.contains("image id 1") && msg.contains("a.png") && msg.contains("invalid size"),
        "{msg}"
    );
    let msg = open_err(&dataset(
        t.path(),
        &json(&ann(3, 1, 1, [1.0, 1.0, -2.0, 2.0])),
    ));
    assert!(
        msg.contains("annotation id 3") && msg.contains("negative"),
        "{msg}"
    );

    // Non-finite values cannot be written in JSON; check them on a file built in memory.
    let file = Path::new("mem.json");
    let coco = CocoFile {
        images: vec![CocoImage {
            id: 1,
            file_name: "a.png".into(),
            width: f64::NAN,
            height: f64::INFINITY,
        }],
        annotations: vec![
            CocoAnnotation {
                id: 9,
                image_id: 1,
                category_id: 1,
                bbox: [f64::NAN, 0.0, 1.0, 1.0],
                area: 1.0,
                iscrowd: 0,
            },
            CocoAnnotation {
                id: 10,
                image_id: 1,
                category_id: 1,
                bbox: [0.0, 0.0, 1.0, 1.0],
                area: f64::INFINITY,
                iscrowd: 0,
            },
        ],
        categories: vec![CocoCategory {
            id: 1,
            name: "one".into(),
            supercategory: String::new(),
        }],
    };
    let (errors, index) = validate_structure(&coco, file);
    let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs[0].contains("mem.json") && msgs[0].contains("image id 1"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("annotation id 9") && msgs[1].contains("non-finite"),
        "{msgs:?}"
    );
    assert!(
        msgs[2].contains("annotation id 10") && msgs[2].contains("area"),
        "{msgs:?}"
    );
    assert!(index.by_image[0].is_empty());
}

#[test]
fn degenerate_and_crowd_boxes_are_dropped_with_a_count() {
    let t = TempDir::new("dropped");
    let a = [
        ann(1, 1, 1, [1.0, 1.0, 5.0, 5.0]),   // kept
        ann(2, 1, 1, [3.0, 3.0, 0.0, 4.0]),   // zero width
        ann(3, 1, 3, [25.0, 2.0, 4.0, 4.0]),  // right of the 20 px image
        ann(4, 2, 3, [-3.0, -3.0, 2.0, 2.0]), // above-left, nothing left after clamping
        r#"{"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 3], "area": 9, "iscrowd": 1}"#
            .to_string(),
    ]
    .join(", ");
    let paths = dataset(t.path(), &json(&a));
    let report = check_split(&paths, ImageCheck::Header).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let s = &report.stats;
    assert_eq!((s.dropped.degenerate, s.dropped.crowd), (3, 1));
    assert_eq!(s.boxes_per_image, vec![1, 0]);
    assert_eq!(s.images_without_boxes, 1);
    assert_eq!(s.images_without_annotations, 0);
    assert_eq!(s.num_classes, 4);
    assert_eq!(s.categories[0].annotations, 3);
    assert_eq!(s.categories[0].boxes, 1);
    assert_eq!(s.width_range, (20.0, 20.0));
    assert_eq!(s.max_boxes_per_image(), 1);

    // Loading drops them the same way.
    let ds = CocoSplit::open(&paths, Pipeline::identity(), &OpenOptions::default()).unwrap();
    let (sample, dropped) = ds.decode(0).unwrap();
    assert_eq!(sample.target.boxes, vec![[1.0, 1.0, 6.0, 6.0]]);
    assert_eq!(dropped.degenerate, 2);
    let coco = CocoFile::load(&paths.annotation_file).unwrap();
    assert_eq!(
        check_coco(&coco, &paths, ImageCheck::None)
            .stats
            .dropped
            .degenerate,
        3
    );
}
