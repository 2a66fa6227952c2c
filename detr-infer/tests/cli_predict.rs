//! `detr-infer predict` end to end on the tiny_r18 fixture: predictions.json (COCO results +
//! file_name, original-image pixels), pictures, attention maps, and an unreadable image among
//! good ones (named in the error, the others still predicted, non-zero exit).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, fixtures, model_fixtures, temp_dir};
use detr_infer::output::{read_records, PredictionRecord};

fn predict(out: &Path, extra: &[&str], inputs: &[&Path]) -> Output {
    let fx = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detr-infer"));
    cmd.arg("predict")
        .arg("--weights")
        .arg(model_fixtures().join("tiny_r18.pth"))
        .arg("--config")
        .arg(model_fixtures().join("tiny_r18.json"))
        .args(["--shortest-side", &fx.shortest_side.to_string()])
        .args(["--longest-side", &fx.longest_side.to_string()])
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(inputs);
    cmd.output().expect("run detr-infer")
}

fn copy_images(dir: &Path) {
    for f in ["scene_a.png", "scene_b.png"] {
        std::fs::copy(fixtures().join("images").join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn unreadable_image_is_reported_and_the_others_still_run() {
    let input = temp_dir("cli-broken-in");
    copy_images(&input);
    std::fs::write(input.join("broken.jpg"), b"this is not a JPEG").unwrap();
    std::fs::write(input.join("notes.txt"), b"not an image extension: skipped").unwrap();
    let out = temp_dir("cli-broken-out");
    let res = predict(&out, &["--threshold", "0"], &[&input]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(!res.status.success(), "must fail: {stdout}\n{stderr}");
    assert!(
        stderr.contains("broken.jpg"),
        "names the bad file: {stderr}"
    );
    assert!(!stderr.contains("notes.txt"), "{stderr}");
    assert!(
        stdout.contains("scene_a.png") && stdout.contains("scene_b.png"),
        "{stdout}"
    );
    // The good images' predictions and pictures were still written.
    let records = read_records(&out.join("predictions.json")).unwrap();
    assert_eq!(
        records.len(),
        2 * 12,
        "threshold 0 keeps all 12 queries of both images"
    );
    assert!(out.join("scene_a_pred.jpg").is_file() && out.join("scene_b_pred.jpg").is_file());
    assert!(!out.join("broken_pred.jpg").exists());
}

#[test]
fn predictions_json_pictures_and_attention_maps() {
    let fx = fixture();
    let input = temp_dir("cli-ok-in");
    copy_images(&input);
    let out = temp_dir("cli-ok-out");
    let a = input.join("scene_a.png");
    let b = input.join("scene_b.png");
    let res = predict(&out, &["--threshold", "0.4", "--attention"], &[&a, &b]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains("2 images"), "total timing line: {stdout}");
    let records: Vec<PredictionRecord> = read_records(&out.join("predictions.json")).unwrap();
    for (i, path) in [&a, &b].iter().enumerate() {
        let want = &fx.single[i];
        let mine: Vec<&PredictionRecord> = records
            .iter()
            .filter(|r| r.file_name == path.display().to_string())
            .collect();
        let expected = want.scores.iter().filter(|&&s| s >= 0.4).count();
        assert!(expected > 0, "fixture has detections above 0.4");
        assert_eq!(mine.len(), expected, "image {i}");
        for r in &mine {
            // image ids are positions (file stems are not numbers).
            assert_eq!(r.image_id, i as u64 + 1);
            // The record is one of the reference's queries, xywh in original pixels.
            let q = (0..want.scores.len())
                .min_by(|&x, &y| {
                    let d = |q: usize| (want.scores[q] as f64 - r.score).abs();
                    d(x).total_cmp(&d(y))
                })
                .unwrap();
            let [x0, y0, x1, y1] = want.boxes[q];
            let xywh = [x0, y0, x1 - x0, y1 - y0];
            assert_eq!(r.category_id, want.labels[q] as u64);
            for k in 0..4 {
                assert!(
                    (r.bbox[k] - xywh[k] as f64).abs() < 0.05,
                    "{r:?} vs {xywh:?}"
                );
            }
        }
        // Scores in descending order within the image.
        assert!(mine.windows(2).all(|w| w[0].score >= w[1].score));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let picture = image::open(out.join(format!("{stem}_pred.jpg"))).unwrap();
        assert_eq!(
            [picture.height() as usize, picture.width() as usize],
            fx.images[i].orig_size,
            "picture at the original size"
        );
        let attn: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&format!("{stem}_attn"))
            })
            .collect();
        assert_eq!(attn.len(), expected, "one attention map per kept detection");
    }
}

#[test]
fn backend_not_built_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = temp_dir("cli-backend-out");
    let a = fixtures().join("images/scene_a.png");
    let res = predict(&out, &["--backend", "cuda"], &[&a]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(stderr.contains("--features cuda"), "{stderr}");
}
