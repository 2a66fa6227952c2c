//! `evaluate` on a two-image COCO split made from the fixture images: the detections are
//! every query of the model (as PyTorch's fixture has them, COCO xywh), and with ground truth
//! made of the model's own confident detections AP is 1.

mod common;

use std::process::Command;

use burn::backend::Flex;
use common::{fixture, fixtures, model_fixtures, temp_dir};
use datasets::transforms::ValidationTransform;
use detr_infer::evaluate::{evaluate_coco, EvaluateOptions};
use detr_infer::model::{load_model, resolve_config};
use detr_infer::predict::Predictor;
use detr_model::weights::WeightFormat;
use serde_json::json;

fn make_split(name: &str) -> std::path::PathBuf {
    let fx = fixture();
    let root = temp_dir(name);
    std::fs::create_dir_all(root.join("val")).unwrap();
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, im) in fx.images.iter().enumerate() {
        std::fs::copy(
            fixtures().join("images").join(&im.file),
            root.join("val").join(&im.file),
        )
        .unwrap();
        images.push(json!({"id": 10 + i, "file_name": im.file,
            "width": im.orig_size[1], "height": im.orig_size[0]}));
        let p = &fx.single[i];
        for q in 0..p.scores.len() {
            if p.scores[q] < 0.4 {
                continue;
            }
            let [x0, y0, x1, y1] = p.boxes[q];
            let (w, h) = (x1 - x0, y1 - y0);
            annotations.push(json!({"id": annotations.len() + 1, "image_id": 10 + i,
                "category_id": p.labels[q], "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0}));
        }
    }
    let categories: Vec<_> = (0..6)
        .map(|c| json!({"id": c, "name": format!("c{c}")}))
        .collect();
    let coco = json!({"images": images, "annotations": annotations, "categories": categories});
    std::fs::write(
        root.join("annotations/instances_val.json"),
        serde_json::to_string(&coco).unwrap(),
    )
    .unwrap();
    root
}

#[test]
fn evaluate_keeps_every_query_and_scores_its_own_detections_perfectly() {
    let fx = fixture();
    let root = make_split("evaluate-lib");
    let config = resolve_config(None, Some(&model_fixtures().join("tiny_r18.json")), None).unwrap();
    let device = Default::default();
    let (model, _) = load_model::<Flex>(
        &config,
        &model_fixtures().join("tiny_r18_hf.safetensors"),
        WeightFormat::HfSafetensors,
        &device,
    )
    .unwrap();
    let pre = ValidationTransform {
        shortest_side: fx.shortest_side,
        longest_side: Some(fx.longest_side),
        ..Default::default()
    };
    let predictor = Predictor::new(model, device, pre);
    let options = EvaluateOptions {
        coco_path: root.clone(),
        split: "val".into(),
        layout: None,
        batch_size: 1,
        limit: None,
    };
    let mut calls = 0;
    let report = evaluate_coco(&predictor, &options, |_| calls += 1).unwrap();
    assert_eq!((report.images, calls), (2, 2));
    assert_eq!(report.results.len(), 2 * 12, "all queries are evaluated");
    for (i, p) in fx.single.iter().enumerate() {
        let mine: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.image_id == 10 + i as u64)
            .collect();
        for (q, r) in mine.iter().enumerate() {
            assert_eq!(r.category_id, p.labels[q] as u64);
            assert!((r.score - f64::from(p.scores[q])).abs() < 1e-4);
            let [x0, y0, x1, y1] = p.boxes[q];
            let want = [x0, y0, x1 - x0, y1 - y0];
            for k in 0..4 {
                assert!(
                    (r.bbox[k] - f64::from(want[k])).abs() < 0.02,
                    "{r:?} vs {want:?}"
                );
            }
        }
    }
    let stats = report.summary.stats;
    assert_eq!(stats.len(), 12);
    assert!(
        (stats[0] - 1.0).abs() < 1e-9,
        "AP of its own detections: {stats:?}"
    );

    // Batched evaluation pads the images together: still all queries, AP no longer exact.
    let batched = evaluate_coco(
        &predictor,
        &EvaluateOptions {
            batch_size: 2,
            ..options
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(batched.results.len(), 24);
}

#[test]
fn evaluate_subcommand_prints_the_twelve_numbers() {
    let fx = fixture();
    let root = make_split("evaluate-cli");
    let out = Command::new(env!("CARGO_BIN_EXE_detr-infer"))
        .arg("evaluate")
        .arg("--weights")
        .arg(model_fixtures().join("tiny_r18.pth"))
        .arg("--config")
        .arg(model_fixtures().join("tiny_r18.json"))
        .arg("--coco_path")
        .arg(&root)
        .args(["--split", "val"])
        .args(["--shortest-side", &fx.shortest_side.to_string()])
        .args(["--longest-side", &fx.longest_side.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("Average")).collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    assert!(lines[0].ends_with("= 1.000"), "{}", lines[0]);
}
