//! Runs through Burn's `Learner` on a micro synthetic dataset (CPU, flex): exact resume, Burn's
//! own artifacts, the best checkpoint, and the bad inputs of issue 12 (COCO ids with gaps,
//! resuming with contradicting options, runs that would train nothing, stale temporaries,
//! negative options).

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use detr_train::config::{SyntheticConfig, TrainConfig};
use detr_train::run::run;
use detr_train::TrainError;

type B = Autodiff<Flex>;

/// The backend's RNG is global: runs go one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-learner-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn micro(root: &Path) -> TrainConfig {
    TrainConfig {
        enc_layers: Some(1),
        dec_layers: Some(2),
        num_queries: Some(4),
        dim_feedforward: Some(32),
        hidden_dim: Some(16),
        nheads: Some(2),
        backbone_width: Some(8),
        // Dropout on: the RNG state matters for exact resume.
        dropout: Some(0.1),
        batch_size: 2,
        epochs: 2,
        lr_drop: 1,
        eval_every: 1,
        num_workers: 1,
        image_scale: 0.08,
        num_vis_images: 0,
        coco_path: root.join("data"),
        output_dir: root.join("out"),
        synthetic: SyntheticConfig {
            train_images: 4,
            val_images: 2,
            min_image_size: 64,
            max_image_size: 80,
            ..SyntheticConfig::default()
        },
        ..TrainConfig::synthetic_tiny()
    }
}

#[derive(Default)]
struct Values(Vec<Vec<f32>>);

impl<BB: Backend> ModuleVisitor<BB> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BB, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

/// Every parameter value of the model in a training checkpoint.
fn checkpoint_values(cfg: &TrainConfig, path: &Path) -> Vec<Vec<f32>> {
    let device = Default::default();
    let (model, _) = detr_train::run::build_model::<B>(cfg, 6, &device).unwrap();
    let loaded = detr_train::checkpoint::load(path, model, &device).unwrap();
    let mut v = Values::default();
    loaded.model.visit(&mut v);
    v.0
}

#[test]
fn a_resumed_learner_run_ends_with_the_parameters_of_an_uninterrupted_one() {
    let _g = serial();
    let root = tmp("resume");
    let full = TrainConfig {
        output_dir: root.join("full"),
        num_classes: Some(6),
        ..micro(&root)
    };
    let s = run::<B>(full.clone(), vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    // Burn's own metric logs beside log.txt, and the best checkpoint beside the last.
    let out = &full.output_dir;
    for f in [
        "log.txt",
        "curves.png",
        "checkpoint.mpk",
        "checkpoint_best.mpk",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for split in ["train", "valid"] {
        let dir = out.join(split).join("epoch-1");
        assert!(
            dir.is_dir(),
            "Burn's metric log folder {} missing",
            dir.display()
        );
        assert!(
            dir.join("loss.log").is_file(),
            "{:?}",
            std::fs::read_dir(&dir).unwrap().collect::<Vec<_>>()
        );
    }
    assert!(out.join("valid/epoch-1/AP.log").is_file());

    // One epoch, then resumed to the second in the same folder; a stale temporary file of a
    // killed run is removed by the run that resumes there.
    let half = TrainConfig {
        output_dir: root.join("half"),
        epochs: 1,
        ..full.clone()
    };
    run::<B>(half.clone(), vec![Default::default()]).unwrap();
    let stale = half.output_dir.join(".checkpoint.mpk.tmp-999999999");
    std::fs::write(&stale, b"partial").unwrap();
    let resumed = TrainConfig {
        resume: Some(half.output_dir.join("checkpoint.mpk")),
        epochs: 2,
        ..half.clone()
    };
    let s = run::<B>(resumed.clone(), vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    assert!(!stale.exists(), "the stale temporary file was not removed");
    let a = checkpoint_values(&full, &full.output_dir.join("checkpoint.mpk"));
    let b = checkpoint_values(&full, &half.output_dir.join("checkpoint.mpk"));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "parameter {i} differs after resume");
    }
    let lines = std::fs::read_to_string(half.output_dir.join("log.txt")).unwrap();
    assert_eq!(lines.lines().count(), 2);

    // Resuming the finished run trains nothing and says so (exit 0, nothing changed).
    let before = std::fs::read(half.output_dir.join("checkpoint.mpk")).unwrap();
    let again = TrainConfig {
        resume: Some(half.output_dir.join("checkpoint.mpk")),
        ..half.clone()
    };
    let s = run::<B>(again, vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    assert!(s.coco_stats.is_none());
    assert_eq!(
        std::fs::read(half.output_dir.join("checkpoint.mpk")).unwrap(),
        before
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Rewrites the category ids of both splits' annotations to COCO-like ids with gaps.
fn remap_categories(data: &Path, ids: &[u64]) {
    for split in ["train2017", "val2017"] {
        let path = data.join(format!("annotations/instances_{split}.json"));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let old: Vec<u64> = v["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        let map = |id: u64| ids[old.iter().position(|&o| o == id).unwrap()];
        for c in v["categories"].as_array_mut().unwrap() {
            c["id"] = map(c["id"].as_u64().unwrap()).into();
        }
        for a in v["annotations"].as_array_mut().unwrap() {
            a["category_id"] = map(a["category_id"].as_u64().unwrap()).into();
        }
        std::fs::write(&path, v.to_string()).unwrap();
    }
}

#[test]
fn coco_category_ids_with_gaps_train_validate_and_evaluate() {
    let _g = serial();
    let root = tmp("gaps");
    let cfg = TrainConfig {
        epochs: 1,
        ..micro(&root)
    };
    detr_train::run::ensure_synthetic(&cfg).unwrap();
    remap_categories(&cfg.coco_path, &[1, 18, 44, 62, 77, 90]);
    // 91 classes (max id + 1): most of the untrained model's detections are of classes that
    // are not categories of the ground truth; they are ignored, as pycocotools does.
    let s = run::<B>(cfg.clone(), vec![Default::default()]).unwrap();
    let stats = s.coco_stats.expect("validation ran");
    assert!(stats.iter().all(|v| (-1.0..=1.0).contains(v)), "{stats:?}");
    assert!(cfg.output_dir.join("checkpoint.mpk").is_file());
    let eval = TrainConfig {
        resume: Some(cfg.output_dir.join("checkpoint.mpk")),
        eval: true,
        output_dir: root.join("eval"),
        ..cfg
    };
    let s = run::<B>(eval, vec![Default::default()]).unwrap();
    assert!(s.coco_stats.is_some());
    assert!(root.join("eval/eval.json").is_file());
    let _ = std::fs::remove_dir_all(&root);
}

fn expect_nothing_to_train(cfg: TrainConfig, what: &str) -> String {
    match run::<B>(cfg, vec![Default::default()]) {
        Err(e @ TrainError::NothingToTrain(_)) => e.to_string(),
        Err(e) => panic!("{what}: another error: {e}"),
        Ok(_) => panic!("{what}: the run succeeded having trained nothing"),
    }
}

#[test]
fn runs_that_would_train_nothing_are_clear_errors() {
    let _g = serial();
    let root = tmp("nothing");
    let cfg = micro(&root);
    detr_train::run::ensure_synthetic(&cfg).unwrap();

    let msg = expect_nothing_to_train(
        TrainConfig {
            epochs: 0,
            ..cfg.clone()
        },
        "--epochs 0",
    );
    assert!(msg.contains("--epochs is 0"), "{msg}");
    let msg = expect_nothing_to_train(
        TrainConfig {
            start_epoch: 2,
            ..cfg.clone()
        },
        "--start_epoch 2 --epochs 2",
    );
    assert!(msg.contains("--start_epoch 2"), "{msg}");
    // 4 training images, batches of 5: drop_last leaves no step.
    let msg = expect_nothing_to_train(
        TrainConfig {
            batch_size: 5,
            ..cfg.clone()
        },
        "batch larger than the split",
    );
    assert!(
        msg.contains("4 images") && msg.contains("--batch_size 5"),
        "{msg}"
    );
    assert!(!cfg.output_dir.join("model.mpk").exists());

    // An empty training split, then an empty validation split.
    let empty = |split: &str| {
        let path = cfg
            .coco_path
            .join(format!("annotations/instances_{split}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["images"] = serde_json::json!([]);
        v["annotations"] = serde_json::json!([]);
        std::fs::write(&path, v.to_string()).unwrap();
        (path, text)
    };
    let (path, text) = empty("train2017");
    let msg = expect_nothing_to_train(cfg.clone(), "empty training split");
    assert!(
        msg.contains("training split") && msg.contains("no images"),
        "{msg}"
    );
    std::fs::write(&path, text).unwrap();
    empty("val2017");
    let msg = expect_nothing_to_train(cfg.clone(), "empty validation split");
    assert!(msg.contains("validation split"), "{msg}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn resuming_with_another_architecture_is_a_clear_error_never_a_panic() {
    let _g = serial();
    let root = tmp("arch");
    let cfg = TrainConfig {
        epochs: 1,
        ..micro(&root)
    };
    run::<B>(cfg.clone(), vec![Default::default()]).unwrap();
    let ckpt = cfg.output_dir.join("checkpoint.mpk");
    let state = detr_train::checkpoint::read_state(&ckpt).unwrap();
    let saved: TrainConfig = serde_json::from_value(state.config.expect("config stored")).unwrap();
    assert_eq!(saved, cfg);

    // Library: the model built from other options does not load, with a clear error.
    for other in [
        TrainConfig {
            backbone_norm: Some("frozen".into()),
            ..cfg.clone()
        },
        TrainConfig {
            hidden_dim: Some(32),
            ..cfg.clone()
        },
    ] {
        let r = run::<B>(
            TrainConfig {
                resume: Some(ckpt.clone()),
                epochs: 2,
                output_dir: root.join("other"),
                ..other
            },
            vec![Default::default()],
        );
        let err = r
            .expect_err("another architecture must not load")
            .to_string();
        assert!(err.contains("checkpoint.mpk"), "{err}");
    }

    // The options of a resume: the checkpoint's, with the command line's laid over it.
    let base = TrainConfig::synthetic_tiny();
    let given = TrainConfig {
        resume: Some(ckpt.clone()),
        epochs: 5,
        ..base.clone()
    };
    let merged = TrainConfig::for_resume(&saved, &base, &given).unwrap();
    assert_eq!(merged.epochs, 5);
    assert_eq!(merged.hidden_dim, cfg.hidden_dim);
    assert_eq!(merged.resume.as_deref(), Some(ckpt.as_path()));
    let given = TrainConfig {
        resume: Some(ckpt.clone()),
        preset: "r50".into(),
        backbone_norm: Some("frozen".into()),
        ..base.clone()
    };
    let err = TrainConfig::for_resume(&saved, &base, &given)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--preset") && err.contains("--backbone_norm"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn negative_weight_decay_and_clip_are_rejected() {
    for (cfg, name) in [
        (
            TrainConfig {
                weight_decay: -1.0,
                ..TrainConfig::original()
            },
            "weight_decay",
        ),
        (
            TrainConfig {
                clip_max_norm: -1.0,
                ..TrainConfig::original()
            },
            "clip_max_norm",
        ),
        (
            TrainConfig {
                eos_coef: f32::NAN,
                ..TrainConfig::original()
            },
            "eos_coef",
        ),
    ] {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn the_binary_exits_2_on_a_non_finite_loss_and_writes_no_checkpoint() {
    let root = tmp("nonfinite-bin");
    let cfg = TrainConfig {
        num_classes: Some(6),
        ..micro(&root)
    };
    detr_train::run::ensure_synthetic(&cfg).unwrap();
    // Weights whose class head's bias is NaN: the first step's loss is NaN.
    let device = Default::default();
    let (mut model, _) = {
        let _g = serial();
        detr_train::run::build_model::<Flex>(&cfg, 6, &device).unwrap()
    };
    let bias = model.class_embed.bias.take().unwrap();
    model.class_embed.bias = Some(bias.map(|b| b.mul_scalar(f32::NAN)));
    let weights = root.join("nan.mpk");
    detr_model::weights::save_record(&model, &cfg.model_config(6).unwrap(), &weights).unwrap();
    let out = root.join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_detr-train"))
        .args(["--dataset_file", "synthetic", "--coco_path"])
        .arg(&cfg.coco_path)
        .arg("--output_dir")
        .arg(&out)
        .arg("--pretrained")
        .arg(&weights)
        .args([
            "--num_classes",
            "6",
            "--enc_layers",
            "1",
            "--dec_layers",
            "2",
            "--num_queries",
            "4",
            "--dim_feedforward",
            "32",
            "--hidden_dim",
            "16",
            "--nheads",
            "2",
            "--backbone_width",
            "8",
            "--batch_size",
            "2",
            "--epochs",
            "1",
            "--image_scale",
            "0.08",
            "--num_workers",
            "1",
            "--num_vis_images",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    // NaN logits make the matching cost NaN: the matcher reports it before any loss exists.
    assert!(
        stderr.contains("non-finite loss at epoch 0, step 0"),
        "{stderr}"
    );
    assert!(!out.join("checkpoint.mpk").exists());
    let _ = std::fs::remove_dir_all(&root);
}
