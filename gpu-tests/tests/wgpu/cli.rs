//! The two binaries on burn-wgpu (CI: on Mesa's llvmpipe), each run as a process of its own:
//! this test binary includes `detr-train`'s and `detr-infer`'s `main.rs` and runs itself
//! again with the command's arguments ([`run_cli`]), so exit codes, output and process-wide
//! state (the device-failure hook, the Vulkan loader's environment) are the binaries' own,
//! without building the two binaries a second time with the `wgpu` feature.
//!
//! * `detr-infer predict --backend wgpu`: the predictions written for the tiny_r18 fixture
//!   equal PyTorch's (the fixture of `predict_parity.rs`; scores within 1e-4, boxes within
//!   1e-4 of the image side, labels exactly); without any Vulkan driver the backend is a
//!   clear error, not a panic.
//! * `detr-train --backend wgpu`: one short epoch of the tiny preset on a synthetic COCO
//!   folder, with validation, exits 0 and writes its log and checkpoint.

use crate::predict_parity::common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, fixtures, model_fixtures, temp_dir};
use detr_infer::output::read_records;

/// Which binary the child process runs, and its arguments (separated by [`SEP`]).
const CHILD_BINARY: &str = "DETR_GPU_TESTS_BINARY";
const CHILD_ARGS: &str = "DETR_GPU_TESTS_ARGS";
const SEP: char = '\u{1f}';

/// Runs `binary` (`detr-train` or `detr-infer`) with `args` in a new process: this test
/// binary again, running only [`child`].
fn run_cli(binary: &str, args: &[OsString], env: &[(&str, &str)]) -> Output {
    let joined = args
        .iter()
        .map(|a| a.to_str().expect("UTF-8 arguments"))
        .collect::<Vec<_>>()
        .join(&SEP.to_string());
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "cli::child", "--ignored", "--nocapture"])
        .env(CHILD_BINARY, binary)
        .env(CHILD_ARGS, joined)
        .envs(env.iter().copied())
        .output()
        .expect("run the test binary as a child")
}

/// The child process of [`run_cli`]: runs the binary's `main` code on the arguments and exits
/// as the binary would (0, or 1 with anyhow's `Error: …` report). Not a test of its own.
#[test]
#[ignore = "run by run_cli in a child process"]
fn child() {
    let Ok(binary) = std::env::var(CHILD_BINARY) else {
        return;
    };
    let args = std::env::var(CHILD_ARGS).unwrap_or_default();
    let argv = std::iter::once(binary.clone())
        .chain(args.split(SEP).filter(|a| !a.is_empty()).map(String::from));
    let result = match binary.as_str() {
        "detr-train" => crate::detr_train_main::cli(argv),
        "detr-infer" => crate::detr_infer_main::cli(argv),
        other => panic!("unknown binary {other}"),
    };
    if let Err(e) = result {
        eprintln!("Error: {e:?}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn predict(out: &Path, env: &[(&str, &str)]) -> Output {
    let fx = fixture();
    let mut args: Vec<OsString> = ["predict", "--backend", "wgpu", "--threshold", "0"]
        .map(OsString::from)
        .to_vec();
    args.push("--weights".into());
    args.push(model_fixtures().join("tiny_r18.pth").into());
    args.push("--config".into());
    args.push(model_fixtures().join("tiny_r18.json").into());
    args.push("--shortest-side".into());
    args.push(fx.shortest_side.to_string().into());
    args.push("--longest-side".into());
    args.push(fx.longest_side.to_string().into());
    args.push("--out".into());
    args.push(out.into());
    for im in &fx.images {
        args.push(fixtures().join("images").join(&im.file).into());
    }
    run_cli("detr-infer", &args, env)
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

#[test]
fn detr_train_runs_an_epoch_of_the_tiny_preset_on_wgpu() {
    let root = temp_dir("wgpu-train-cli");
    let out = root.join("out");
    // 12 training images (the reproduction), 4 for validation.
    let config = root.join("small.toml");
    std::fs::write(&config, "[synthetic]\ntrain_images = 12\nval_images = 4\n").unwrap();
    let mut args: Vec<OsString> = vec!["--config".into(), config.into()];
    for a in [
        "--backend",
        "wgpu",
        "--preset",
        "tiny",
        "--dataset_file",
        "synthetic",
        "--num_queries",
        "10",
        "--image_scale",
        "0.16",
        "--batch_size",
        "2",
        "--epochs",
        "1",
        "--max_steps_per_epoch",
        "3",
        "--num_vis_images",
        "0",
    ] {
        args.push(a.into());
    }
    args.push("--coco_path".into());
    args.push(root.join("data").into());
    args.push("--output_dir".into());
    args.push(out.clone().into());
    let res = run_cli("detr-train", &args, &[]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stdout}\n{stderr}");
    for bad in ["Task failed", "panicked", "wgpu error"] {
        assert!(!stderr.contains(bad), "`{bad}` in the output:\n{stderr}");
    }
    let log = std::fs::read_to_string(out.join("log.txt")).expect("log.txt");
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(line["train_loss"].as_f64().unwrap().is_finite(), "{line}");
    assert!(out.join("checkpoint.mpk").is_file());
    let _ = std::fs::remove_dir_all(&root);
}
