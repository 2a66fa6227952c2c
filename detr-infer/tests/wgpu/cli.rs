//! `detr-infer predict --backend wgpu` end to end (CI: on Mesa's llvmpipe): the
//! predictions written for the tiny_r18 fixture equal PyTorch's (the fixture of
//! `predict_parity.rs`; scores within 1e-4, boxes within 1e-4 of the image side, labels
//! exactly); and without any Vulkan driver the backend is a clear error, not a panic.

use super::predict_parity::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, fixtures, model_fixtures, temp_dir};
use detr_infer::output::read_records;

fn predict(out: &Path, env: &[(&str, &str)]) -> Output {
    let fx = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detr-infer"));
    cmd.arg("predict")
        .args(["--backend", "wgpu", "--threshold", "0"])
        .arg("--weights")
        .arg(model_fixtures().join("tiny_r18.pth"))
        .arg("--config")
        .arg(model_fixtures().join("tiny_r18.json"))
        .args(["--shortest-side", &fx.shortest_side.to_string()])
        .args(["--longest-side", &fx.longest_side.to_string()])
        .arg("--out")
        .arg(out);
    for im in &fx.images {
        cmd.arg(fixtures().join("images").join(&im.file));
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run detr-infer")
}

#[test]
fn predict_on_wgpu_matches_pytorch() {
    let fx = fixture();
    let out = temp_dir("wgpu-cli");
    let res = predict(&out, &[]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(!stderr.contains("Task failed"), "{stderr}");
    let records = read_records(&out.join("predictions.json")).unwrap();
    for (i, im) in fx.images.iter().enumerate() {
        let want = &fx.single[i];
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.image_id == i as u64 + 1)
            .collect();
        assert_eq!(
            mine.len(),
            want.scores.len(),
            "{}: all queries at threshold 0",
            im.file
        );
        let [h, w] = im.orig_size;
        let sides = [w, h, w, h].map(|s| s as f64);
        let mut worst = (0f64, 0f64);
        for q in 0..want.scores.len() {
            let [x0, y0, x1, y1] = want.boxes[q].map(f64::from);
            let xywh = [x0, y0, x1 - x0, y1 - y0];
            // The record of query q: the same label, the closest score and box.
            let err = |r: &&&detr_infer::output::PredictionRecord| {
                let score = (r.score - f64::from(want.scores[q])).abs();
                let bx = (0..4)
                    .map(|k| (r.bbox[k] - xywh[k]).abs() / sides[k])
                    .fold(0f64, f64::max);
                (score, bx)
            };
            let best = mine
                .iter()
                .filter(|r| r.category_id == want.labels[q] as u64)
                .min_by(|a, b| {
                    let (ea, eb) = (err(a), err(b));
                    (ea.0 + ea.1).total_cmp(&(eb.0 + eb.1))
                })
                .unwrap_or_else(|| panic!("{}: no record with label {}", im.file, want.labels[q]));
            let (score, bx) = err(&best);
            worst = (worst.0.max(score), worst.1.max(bx));
        }
        eprintln!(
            "{}: worst score diff {:.2e}, box diff/side {:.2e}",
            im.file, worst.0, worst.1
        );
        assert!(worst.0 <= 1e-4 && worst.1 <= 1e-4, "{}: {worst:?}", im.file);
    }
}

/// No Vulkan driver at all (the loader pointed at none): a clear error naming the backend,
/// what the runtime said and what to install; no panic, non-zero exit.
#[test]
fn wgpu_without_a_vulkan_driver_is_a_clear_error() {
    let out = temp_dir("wgpu-no-driver");
    let none = "/nonexistent/no_icd.json";
    let res = predict(
        &out,
        &[("VK_ICD_FILENAMES", none), ("VK_DRIVER_FILES", none)],
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "{stderr}");
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backend `wgpu`"), "{stderr}");
    assert!(stderr.contains("cannot run"), "{stderr}");
    assert!(stderr.contains("Vulkan driver"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.join("predictions.json").exists());
}
