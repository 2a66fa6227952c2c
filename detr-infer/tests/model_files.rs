//! Issue 12 items 4, 5, 6, 7 and 10 through the `detr-infer predict` binary, with a small model
//! made here: a trained model file is self-describing, a contradicting option is an error,
//! detr-train's config.json is accepted, and bad files and options are named clearly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::Flex;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use common::{fixtures, temp_dir};
use detr_infer::output::read_records;
use detr_model::weights::save_record;
use detr_model::DetrConfig;

type B = Flex;

/// Like the main job's model (`tiny` with 10 queries, 6 classes), narrower to build fast.
fn config() -> DetrConfig {
    DetrConfig::preset("tiny")
        .unwrap()
        .with_hidden_dim(32)
        .with_dim_feedforward(64)
        .with_backbone_width(8)
        .with_num_queries(10)
        .with_num_classes(6)
}

/// A run folder: `model.mpk` (current format), `legacy.mpk` (a bare record of the previous
/// version), `checkpoint.mpk` (the previous version's training state) and detr-train's
/// resolved `config.json`.
fn run_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name).join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let model = config().init::<B>(&Default::default()).unwrap();
    save_record(&model, &config(), &dir.join("model.mpk")).unwrap();
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let bare = recorder.record(model.clone().into_record(), ()).unwrap();
    std::fs::write(dir.join("legacy.mpk"), bare).unwrap();
    let state = recorder
        .record((model.into_record(), (), String::from("{\"epoch\":3}")), ())
        .unwrap();
    std::fs::write(dir.join("checkpoint.mpk"), state).unwrap();
    // What detr-train writes: training options and the model options (num_classes null:
    // taken from the data).
    let train_config = serde_json::json!({
        "lr": 1e-4, "lr_backbone": 1e-4, "batch_size": 5, "weight_decay": 1e-4, "epochs": 26,
        "lr_drop": 21, "clip_max_norm": 0.1, "preset": "tiny", "backbone": null,
        "backbone_width": 8, "hidden_dim": 32, "dim_feedforward": 64, "num_queries": 10,
        "aux_loss": true, "num_classes": null, "pretrained": null, "backend": "flex",
        "output_dir": "runs/tiny-synthetic", "devices": [0]
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&train_config).unwrap(),
    )
    .unwrap();
    dir
}

fn image() -> PathBuf {
    fixtures().join("images").join("scene_a.png")
}

fn predict(weights: &Path, out: &Path, extra: &[&str], inputs: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detr-infer"))
        .arg("predict")
        .arg("--weights")
        .arg(weights)
        .args(if extra.contains(&"--shortest-side") {
            &["--no-pictures"][..]
        } else {
            &[
                "--shortest-side",
                "64",
                "--longest-side",
                "96",
                "--no-pictures",
            ][..]
        })
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(inputs)
        .output()
        .expect("run detr-infer")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Item 4: `predict --weights run/model.mpk images/` just works (10 queries from the file).
#[test]
fn model_file_alone_is_enough() {
    let run = run_dir("alone");
    let out = run.join("out");
    let res = predict(
        &run.join("model.mpk"),
        &out,
        &["--threshold", "0"],
        &[&image()],
    );
    assert!(res.status.success(), "{}", text(&res));
    let records = read_records(&out.join("predictions.json")).unwrap();
    assert_eq!(records.len(), 10, "threshold 0 keeps the file's 10 queries");
}

/// Item 4: options agreeing with the file are accepted, contradicting ones are an error.
#[test]
fn options_are_checked_against_the_file() {
    let run = run_dir("contradict");
    let weights = run.join("model.mpk");
    let res = predict(
        &weights,
        &run.join("o1"),
        &["--preset", "tiny"],
        &[&image()],
    );
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("--preset tiny contradicts the model file")
            && msg.contains("num_queries 30 (the file has 10)"),
        "{msg}"
    );
    let res = predict(
        &weights,
        &run.join("o2"),
        &["--num-classes", "91"],
        &[&image()],
    );
    let msg = text(&res);
    assert!(
        !res.status.success() && msg.contains("num_classes 91 (the file has 6)"),
        "{msg}"
    );
    let res = predict(
        &weights,
        &run.join("o3"),
        &["--num-classes", "6"],
        &[&image()],
    );
    assert!(res.status.success(), "{}", text(&res));
    // The run's own config.json (a training configuration) agrees with the file.
    let config = run.join("config.json");
    let config = config.to_str().unwrap();
    let res = predict(
        &weights,
        &run.join("o4"),
        &["--config", config],
        &[&image()],
    );
    assert!(res.status.success(), "{}", text(&res));
}

/// Item 4: detr-train's config.json (`unknown option backend` before) gives the model for a
/// file that does not record its configuration; such a file loads with a checksum note.
#[test]
fn training_config_json_builds_the_model_of_an_old_file() {
    let run = run_dir("trainconfig");
    let config_json = run.join("config.json");
    let res = predict(
        &run.join("legacy.mpk"),
        &run.join("out"),
        &[
            "--config",
            config_json.to_str().unwrap(),
            "--num-classes",
            "6",
        ],
        &[&image()],
    );
    let msg = text(&res);
    assert!(res.status.success(), "{msg}");
    assert!(msg.contains("checksum"), "the note about old files: {msg}");
    // Today's detr-train config.json: sections, the model's architecture under `model.arch`.
    let nested = run.join("config_sections.json");
    let tree = serde_json::json!({
        "model": {"preset": "tiny", "num_classes": 6, "pretrained": null,
                  "arch": serde_json::to_value(config()).unwrap()},
        "optim": {"lr": 1e-4, "epochs": 26},
        "run": {"backend": "flex", "devices": [0]}
    });
    std::fs::write(&nested, tree.to_string()).unwrap();
    let res = predict(
        &run.join("legacy.mpk"),
        &run.join("out_sections"),
        &["--config", nested.to_str().unwrap()],
        &[&image()],
    );
    assert!(res.status.success(), "{}", text(&res));
    // A JSON that is neither kind says what to pass.
    let other = run.join("other.json");
    std::fs::write(&other, r#"{"learning_rate": 0.1}"#).unwrap();
    let res = predict(
        &run.join("legacy.mpk"),
        &run.join("out2"),
        &["--config", other.to_str().unwrap()],
        &[&image()],
    );
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("other.json")
            && msg.contains("`learning_rate`")
            && msg.contains("config.json"),
        "{msg}"
    );
}

/// Item 6: a training checkpoint, a directory, a file as `--out`.
#[test]
fn wrong_files_are_named() {
    let run = run_dir("wrong");
    let res = predict(
        &run.join("checkpoint.mpk"),
        &run.join("o1"),
        &[],
        &[&image()],
    );
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("checkpoint.mpk")
            && msg.contains("training checkpoint")
            && msg.contains("model.mpk"),
        "{msg}"
    );
    assert!(!msg.contains("missing field"), "{msg}");

    let res = predict(&run, &run.join("o2"), &[], &[&image()]);
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("a directory") && msg.contains("model.mpk"),
        "{msg}"
    );

    let file = run.join("taken");
    std::fs::write(&file, b"x").unwrap();
    let res = predict(&run.join("model.mpk"), &file, &[], &[&image()]);
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(msg.contains("an existing file, not a folder"), "{msg}");
    assert!(!msg.contains("os error 17"), "{msg}");

    let empty = run.join("empty.mpk");
    std::fs::write(&empty, b"").unwrap();
    let res = predict(&empty, &run.join("o3"), &[], &[&image()]);
    let msg = text(&res);
    assert!(!res.status.success() && msg.contains("empty"), "{msg}");
}

/// Item 7: flipped bytes inside model.mpk are a checksum error, not other scores.
#[test]
fn corrupted_model_file_is_refused() {
    let run = run_dir("corrupt");
    let path = run.join("model.mpk");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() * 3 / 4;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let res = predict(&path, &run.join("out"), &[], &[&image()]);
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("model.mpk") && msg.contains("checksum mismatch"),
        "{msg}"
    );
}

/// Item 10: out-of-range options are refused before any work.
#[test]
fn out_of_range_options_are_refused() {
    let run = run_dir("range");
    let weights = run.join("model.mpk");
    for (args, want) in [
        (vec!["--threshold", "1.5"], "outside 0..=1"),
        (vec!["--threshold=-0.1"], "outside 0..=1"),
        (vec!["--threshold", "NaN"], "outside 0..=1"),
        (vec!["--batch-size", "0"], "at least 1"),
        (vec!["--shortest-side", "0"], "at least 1"),
        (vec!["--num-classes", "0"], "at least 1"),
        (vec!["--format", "onnx"], "hf-safetensors"),
        (vec!["--format", "torchvision"], "ResNet backbone only"),
    ] {
        let res = predict(&weights, &run.join("out"), &args, &[&image()]);
        let msg = text(&res);
        assert!(!res.status.success(), "{args:?}: {msg}");
        let option = args[0].split('=').next().unwrap();
        assert!(
            msg.contains(want) && msg.contains(option),
            "{args:?}: {msg}"
        );
    }
    assert!(!run.join("out").exists(), "nothing was written");
}

/// Item 5: a truncated JPEG is reported like any unreadable image; the others still run.
#[test]
fn truncated_jpeg_fails_like_an_unreadable_image() {
    let run = run_dir("jpeg");
    let img = image::open(image()).unwrap().into_rgb8();
    let mut full = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut full, 90)
        .encode_image(&img)
        .unwrap();
    let cut = run.join("cut.jpg");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let out = run.join("out");
    let res = predict(
        &run.join("model.mpk"),
        &out,
        &["--threshold", "0"],
        &[&image(), &cut],
    );
    let msg = text(&res);
    assert!(!res.status.success(), "{msg}");
    assert!(
        msg.contains("failed: ") && msg.contains("cut.jpg") && msg.contains("truncated"),
        "{msg}"
    );
    assert_eq!(
        read_records(&out.join("predictions.json")).unwrap().len(),
        10
    );
}
