//! COCO bbox evaluation against pycocotools.
//!
//! The fixtures under `tests/fixtures/coco_eval/` were made by `tools/make_cocoeval_fixtures.py`
//! with pycocotools 2.0.11 / numpy 2.4 (COCOeval, iouType "bbox"). Every number must agree
//! within 1e-9 (the implementation aims at bit equality; the largest difference is printed).

use std::path::{Path, PathBuf};

use datasets::coco_eval::{
    evaluate, params, read_ground_truth, CocoEvalError, CocoEvaluator, CocoGroundTruth, EvalParams,
};
use datasets::results::{read_results, write_results, CocoResult, ScoredBoxes};
use datasets::CocoFile;
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coco_eval")
}

/// Reads JSON with correctly rounded numbers (the workspace enables serde_json's
/// `float_roundtrip`; its default parser can be one ulp off on 17-digit numbers such as
/// numpy's 0.41000000000000003).
fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_gt(path: &Path) -> CocoFile {
    read_ground_truth(path).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

/// Runs one fixture case; returns the largest absolute difference seen.
fn check_case(name: &str) -> f64 {
    let dir = fixtures().join(name);
    let expected = read_json(&dir.join("expected.json"));
    let files = match expected.get("files_from") {
        Some(v) => fixtures().join(v.as_str().unwrap()),
        None => dir.clone(),
    };
    let gt = read_gt(&files.join("gt.json"));
    let dt = read_results(files.join("dt.json")).unwrap();
    let params = EvalParams {
        img_ids: expected.get("img_ids").map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        }),
        cat_ids: None,
    };
    let index = CocoGroundTruth::new(&gt).unwrap();
    let s = index.evaluate(&dt, &params).unwrap();
    let mut max_diff: f64 = 0.0;
    let mut cmp = |what: String, got: f64, want: f64| {
        let d = (got - want).abs();
        assert!(
            d <= TOL,
            "{name}: {what}: got {got:?}, pycocotools {want:?}"
        );
        max_diff = max_diff.max(d);
    };

    for (i, want) in expected["stats"].as_array().unwrap().iter().enumerate() {
        cmp(format!("stats[{i}]"), s.stats[i], f(want));
    }
    let per_cat = expected["per_category"].as_object().unwrap();
    assert_eq!(
        per_cat.len(),
        s.per_category.len(),
        "{name}: category count"
    );
    for c in &s.per_category {
        let want = &per_cat[&c.id.to_string()];
        cmp(format!("category {} ap", c.id), c.ap, f(&want["ap"]));
        cmp(format!("category {} ap50", c.id), c.ap50, f(&want["ap50"]));
        cmp(format!("category {} ap75", c.id), c.ap75, f(&want["ap75"]));
        cmp(
            format!("category {} ar100", c.id),
            c.ar100,
            f(&want["ar100"]),
        );
    }
    // recall[T][K][A][M]
    for (t, by_k) in expected["recall"].as_array().unwrap().iter().enumerate() {
        for (k, by_a) in by_k.as_array().unwrap().iter().enumerate() {
            for (a, by_m) in by_a.as_array().unwrap().iter().enumerate() {
                for (m, want) in by_m.as_array().unwrap().iter().enumerate() {
                    cmp(
                        format!("recall[{t},{k},{a},{m}]"),
                        s.recall(t, k, a, m),
                        f(want),
                    );
                }
            }
        }
    }
    let lines: Vec<String> = expected["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(s.summary_lines(), lines, "{name}: printed summary");
    eprintln!("{name}: stats {:?}, max |diff| {max_diff:e}", s.stats);
    max_diff
}

/// Results and ground truth are read with serde_json, which is correctly rounded only with its
/// `float_roundtrip` feature (enabled in the workspace's Cargo.toml). Without it numpy's
/// `0.41000000000000003` (a score pycocotools reads exactly) comes back as `0.41`.
#[test]
fn json_numbers_are_read_correctly_rounded() {
    for text in ["0.41000000000000003", "123.45678901234567", "5e-324", "0.1"] {
        let exact: f64 = text.parse().unwrap();
        let read: f64 = serde_json::from_str(text).unwrap();
        assert_eq!(read.to_bits(), exact.to_bits(), "{text}");
    }
    let results = datasets::results::parse_results(
        br#"[{"image_id":1,"category_id":2,"bbox":[0.41000000000000003,1,2,3],"score":0.41000000000000003}]"#,
    )
    .unwrap();
    let exact: f64 = "0.41000000000000003".parse().unwrap();
    assert_eq!(results[0].score.to_bits(), exact.to_bits());
    assert_eq!(results[0].bbox[0].to_bits(), exact.to_bits());
}

#[test]
fn crowd_matches_pycocotools() {
    check_case("crowd");
}

#[test]
fn area_ranges_and_boundaries_match_pycocotools() {
    check_case("areas");
}

#[test]
fn empty_categories_and_images_match_pycocotools() {
    check_case("empty");
}

#[test]
fn many_detections_and_ties_match_pycocotools() {
    check_case("many");
}

#[test]
fn tied_scores_across_images_match_pycocotools() {
    check_case("ties");
}

#[test]
fn annotation_id_zero_quirk_matches_pycocotools() {
    check_case("idzero");
}

#[test]
fn random_case_matches_pycocotools() {
    check_case("random");
}

#[test]
fn image_subset_matches_pycocotools() {
    check_case("subset");
}

#[test]
fn thresholds_are_numpy_linspace_bit_for_bit() {
    let p = read_json(&fixtures().join("params.json"));
    let iou: Vec<f64> = p["iouThrs"].as_array().unwrap().iter().map(f).collect();
    let rec: Vec<f64> = p["recThrs"].as_array().unwrap().iter().map(f).collect();
    assert_eq!(params::iou_thresholds().to_vec(), iou);
    assert_eq!(params::recall_thresholds().to_vec(), rec);
    // summarize() selects AP50/AP75 by exact equality.
    assert_eq!(params::iou_thresholds()[5], 0.75);
}

fn tiny_gt() -> CocoFile {
    serde_json::from_str(
        r#"{"images":[{"id":1,"file_name":"a.jpg","width":100,"height":100},
                      {"id":2,"file_name":"b.jpg","width":100,"height":100}],
            "annotations":[{"id":1,"image_id":1,"category_id":3,"bbox":[10,10,20,20],"area":400},
                           {"id":2,"image_id":2,"category_id":3,"bbox":[50,50,40,40],"area":1600},
                           {"id":3,"image_id":2,"category_id":4,"bbox":[0,0,40,40],"area":1600}],
            "categories":[{"id":3,"name":"car"},{"id":4,"name":"bus"},{"id":5,"name":"cat"}]}"#,
    )
    .unwrap()
}

fn det(image_id: u64, category_id: u64, bbox: [f64; 4], score: f64) -> CocoResult {
    CocoResult {
        image_id,
        category_id,
        bbox,
        score,
    }
}

#[test]
fn perfect_detections_score_one() {
    let gt = tiny_gt();
    let dts: Vec<CocoResult> = gt
        .annotations
        .iter()
        .map(|a| det(a.image_id, a.category_id, a.bbox, 0.9))
        .collect();
    let s = evaluate(&gt, &dts).unwrap();
    // Precision is tp / (tp + fp + eps): "perfect" can be 1 - 2.2e-16, as in pycocotools.
    for i in [0, 1, 2, 3, 4, 6, 7, 8, 9, 10] {
        assert!(
            (s.stats[i] - 1.0).abs() < 1e-12,
            "stats[{i}] = {}",
            s.stats[i]
        );
    }
    assert_eq!(s.stats[5], -1.0); // no large ground truth
    assert_eq!(s.per_category[2].ap, -1.0); // "cat" has no ground truth
}

#[test]
fn empty_results_give_zeros() {
    let s = evaluate(&tiny_gt(), &[]).unwrap();
    assert_eq!(s.stats[0], 0.0);
    assert_eq!(s.stats[8], 0.0);
    assert_eq!(s.stats[5], -1.0);
}

#[test]
fn unknown_image_and_category_are_errors() {
    let gt = tiny_gt();
    let e = evaluate(&gt, &[det(1, 3, [0.0; 4], 0.5), det(9, 3, [0.0; 4], 0.5)]).unwrap_err();
    assert!(
        matches!(
            e,
            CocoEvalError::UnknownImage {
                index: 1,
                image_id: 9
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("results entry 1"), "{e}");
    let e = evaluate(&gt, &[det(1, 7, [0.0; 4], 0.5)]).unwrap_err();
    assert!(
        matches!(
            e,
            CocoEvalError::UnknownCategory {
                index: 0,
                category_id: 7
            }
        ),
        "{e}"
    );
    let e = evaluate(&gt, &[det(1, 3, [0.0, f64::NAN, 1.0, 1.0], 0.5)]).unwrap_err();
    assert!(matches!(e, CocoEvalError::NonFiniteDetection { .. }), "{e}");
    let e = CocoGroundTruth::new(&gt)
        .unwrap()
        .evaluate(
            &[],
            &EvalParams {
                img_ids: Some(vec![1, 77]),
                cat_ids: None,
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, CocoEvalError::UnknownParamId { id: 77, .. }),
        "{e}"
    );
}

#[test]
fn duplicate_annotation_ids_are_errors() {
    let mut gt = tiny_gt();
    gt.annotations[2].id = 1;
    let e = CocoGroundTruth::new(&gt).unwrap_err();
    assert!(
        matches!(
            e,
            CocoEvalError::DuplicateAnnotationId {
                id: 1,
                first: 0,
                second: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn evaluator_collects_post_processed_detections() {
    let gt = tiny_gt();
    let mut ev = CocoEvaluator::new(&gt).unwrap();
    ev.add(&ScoredBoxes {
        image_id: 2,
        scores: &[0.8, 0.7, 0.1],
        labels: &[3, 4, 5],
        boxes_xyxy: &[
            [50.0, 50.0, 90.0, 90.0],
            [0.0, 0.0, 40.0, 40.0],
            [1.0, 1.0, 2.0, 2.0],
        ],
    })
    .unwrap();
    // Only image 2 was added: image 1's ground truth is not counted (DETR's imgIds).
    let s = ev.evaluate().unwrap();
    assert_eq!(s.num_images, 1);
    assert!((s.stats[0] - 1.0).abs() < 1e-12);
    assert_eq!(ev.results()[0].bbox, [50.0, 50.0, 40.0, 40.0]);
    let mut other = CocoEvaluator::new(&gt).unwrap();
    other
        .add(&ScoredBoxes {
            image_id: 1,
            scores: &[],
            labels: &[],
            boxes_xyxy: &[],
        })
        .unwrap();
    let mut merged = ev.clone();
    merged.merge(other);
    assert_eq!(merged.image_ids().collect::<Vec<_>>(), [1, 2]);
    // Image 1 now counts, and its only object was missed.
    assert_eq!(merged.evaluate().unwrap().per_category[0].ar100, 0.5);
    let all = evaluate(&gt, ev.results()).unwrap();
    assert_eq!(all.per_category[0].ar100, 0.5);
    assert!(ev
        .add(&ScoredBoxes {
            image_id: 99,
            scores: &[],
            labels: &[],
            boxes_xyxy: &[],
        })
        .is_err());
}

#[test]
fn results_round_trip_through_a_file() {
    let dir = std::env::temp_dir().join(format!("detr-coco-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.json");
    let dts = vec![
        det(1, 3, [0.1, 0.2, 10.5, 3.25], 0.30000000000000004),
        det(2, 4, [1.0; 4], 1e-7),
    ];
    write_results(&path, &dts).unwrap();
    assert_eq!(read_results(&path).unwrap(), dts);
    std::fs::write(&path, b"[{\"image_id\":1}]").unwrap();
    let msg = read_results(&path).unwrap_err().to_string();
    assert!(
        msg.contains("results.json") && msg.contains("results entry 0"),
        "{msg}"
    );
    let msg = read_results(dir.join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.json"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
