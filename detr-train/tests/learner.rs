//! Runs through Burn's `Learner` on a micro synthetic dataset (CPU, flex): exact resume, Burn's
//! own artifacts, the best checkpoint, and the bad inputs of issue 12 (COCO ids with gaps,
//! resuming with contradicting options, runs that would train nothing, stale temporaries,
//! negative options).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Module;
use burn::prelude::*;
use clap::CommandFactory;
use detr_train::config::{SyntheticConfig, TrainConfig};
use detr_train::resolve::{resolve_resumed, FileOptions};
use detr_train::run::run;
use detr_train::TrainError;

mod common;
use common::{checkpoint_values, Values, B};

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
    {
        let mut c = TrainConfig::synthetic_tiny();
        c.model.arch.enc_layers = 1;
        c.model.arch.dec_layers = 2;
        c.model.arch.num_queries = 4;
        c.model.arch.dim_feedforward = 32;
        c.model.arch.hidden_dim = 16;
        c.model.arch.nheads = 2;
        c.model.arch.backbone_width = 8;
        // Dropout on: the RNG state matters for exact resume.
        c.model.arch.dropout = 0.1;
        c.data.batch_size = 2;
        c.optim.epochs = 2;
        c.optim.lr_drop = 1;
        c.run.eval_every = 1;
        c.data.num_workers = 1;
        c.data.image_scale = 0.08;
        c.run.num_vis_images = 0;
        c.data.coco_path = root.join("data");
        c.run.output_dir = root.join("out");
        c.data.synthetic = SyntheticConfig {
            train_images: 4,
            val_images: 2,
            min_image_size: 64,
            max_image_size: 80,
            ..SyntheticConfig::default()
        };
        c
    }
}

#[test]
fn a_resumed_learner_run_ends_with_the_parameters_of_an_uninterrupted_one() {
    let _g = serial();
    let root = tmp("resume");
    let full = {
        let mut c = micro(&root);
        c.run.output_dir = root.join("full");
        c.model.num_classes = Some(6);
        c
    };
    let s = run::<B>(full.clone(), vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    // Burn's own metric logs beside log.txt, and the best checkpoint beside the last.
    let out = &full.run.output_dir;
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
    let half = {
        let mut c = full.clone();
        c.run.output_dir = root.join("half");
        c.optim.epochs = 1;
        c
    };
    run::<B>(half.clone(), vec![Default::default()]).unwrap();
    let stale = half.run.output_dir.join(".checkpoint.mpk.tmp-999999999");
    std::fs::write(&stale, b"partial").unwrap();
    let resumed = {
        let mut c = half.clone();
        c.run.resume = Some(half.run.output_dir.join("checkpoint.mpk"));
        c.optim.epochs = 2;
        c
    };
    let s = run::<B>(resumed.clone(), vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    assert!(!stale.exists(), "the stale temporary file was not removed");
    let a = checkpoint_values(&full, &full.run.output_dir.join("checkpoint.mpk"));
    let b = checkpoint_values(&full, &half.run.output_dir.join("checkpoint.mpk"));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "parameter {i} differs after resume");
    }
    let lines = std::fs::read_to_string(half.run.output_dir.join("log.txt")).unwrap();
    assert_eq!(lines.lines().count(), 2);

    // Resuming the finished run trains nothing and says so (exit 0, nothing changed).
    let before = std::fs::read(half.run.output_dir.join("checkpoint.mpk")).unwrap();
    let again = {
        let mut c = half.clone();
        c.run.resume = Some(half.run.output_dir.join("checkpoint.mpk"));
        c
    };
    let s = run::<B>(again, vec![Default::default()]).unwrap();
    assert_eq!(s.epochs, 2);
    assert!(s.coco_stats.is_none());
    assert_eq!(
        std::fs::read(half.run.output_dir.join("checkpoint.mpk")).unwrap(),
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
    let cfg = {
        let mut c = micro(&root);
        c.optim.epochs = 1;
        c
    };
    detr_train::splits::ensure_synthetic(&cfg).unwrap();
    remap_categories(&cfg.data.coco_path, &[1, 18, 44, 62, 77, 90]);
    // 91 classes (max id + 1): most of the untrained model's detections are of classes that
    // are not categories of the ground truth; they are ignored, as pycocotools does.
    let s = run::<B>(cfg.clone(), vec![Default::default()]).unwrap();
    let stats = s.coco_stats.expect("validation ran");
    assert!(stats.iter().all(|v| (-1.0..=1.0).contains(v)), "{stats:?}");
    assert!(cfg.run.output_dir.join("checkpoint.mpk").is_file());
    let eval = {
        let mut c = cfg.clone();
        c.run.resume = Some(cfg.run.output_dir.join("checkpoint.mpk"));
        c.run.eval = true;
        c.run.output_dir = root.join("eval");
        c
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
    detr_train::splits::ensure_synthetic(&cfg).unwrap();

    let msg = expect_nothing_to_train(
        {
            let mut c = cfg.clone();
            c.optim.epochs = 0;
            c
        },
        "--epochs 0",
    );
    assert!(msg.contains("--epochs is 0"), "{msg}");
    let msg = expect_nothing_to_train(
        {
            let mut c = cfg.clone();
            c.run.start_epoch = 2;
            c
        },
        "--start_epoch 2 --epochs 2",
    );
    assert!(msg.contains("--start_epoch 2"), "{msg}");
    // 4 training images, batches of 5: drop_last leaves no step.
    let msg = expect_nothing_to_train(
        {
            let mut c = cfg.clone();
            c.data.batch_size = 5;
            c
        },
        "batch larger than the split",
    );
    assert!(
        msg.contains("4 images") && msg.contains("--batch_size 5"),
        "{msg}"
    );
    assert!(!cfg.run.output_dir.join("model.mpk").exists());

    // An empty training split, then an empty validation split.
    let empty = |split: &str| {
        let path = cfg
            .data
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
    let cfg = {
        let mut c = micro(&root);
        c.optim.epochs = 1;
        c
    };
    run::<B>(cfg.clone(), vec![Default::default()]).unwrap();
    let ckpt = cfg.run.output_dir.join("checkpoint.mpk");
    let state = detr_train::checkpoint::read_state(&ckpt).unwrap();
    let saved: TrainConfig = serde_json::from_value(state.config.expect("config stored")).unwrap();
    let mut expected = cfg.clone();
    expected.model.num_classes = Some(6);
    expected.model.arch.num_classes = 6;
    assert_eq!(saved, expected);

    // Library: the model built from other options does not load, with a clear error.
    for other in [
        {
            let mut c = cfg.clone();
            c.model.arch.backbone_norm = detr_model::BackboneNormKind::Frozen;
            c
        },
        {
            let mut c = cfg.clone();
            c.model.arch.hidden_dim = 32;
            c
        },
    ] {
        let r = run::<B>(
            {
                let mut c = other;
                c.run.resume = Some(ckpt.clone());
                c.optim.epochs = 2;
                c.run.output_dir = root.join("other");
                c
            },
            vec![Default::default()],
        );
        let err = r
            .expect_err("another architecture must not load")
            .to_string();
        assert!(err.contains("checkpoint.mpk"), "{err}");
    }

    // The options of a resume: the checkpoint's, with the command line's laid over it.
    let ckpt_arg = ckpt.display().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["detr-train", "--resume", ckpt_arg.as_str()];
        all.extend_from_slice(args);
        TrainConfig::command().get_matches_from(all)
    };
    let none = FileOptions::default();
    let merged = resolve_resumed(&saved, &cli(&["--epochs", "5"]), &none).unwrap();
    assert_eq!(merged.optim.epochs, 5);
    assert_eq!(merged.model.arch, saved.model.arch);
    assert_eq!(merged.run.resume.as_deref(), Some(ckpt.as_path()));
    // The preset's own value of an option is the same model.
    let same = resolve_resumed(
        &saved,
        &cli(&["--preset", "tiny", "--dilation", "false"]),
        &none,
    );
    assert!(same.is_ok(), "{same:?}");
    let err = resolve_resumed(
        &saved,
        &cli(&["--preset", "r50", "--backbone_norm", "frozen"]),
        &none,
    )
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
            {
                let mut c = TrainConfig::original();
                c.optim.weight_decay = -1.0;
                c
            },
            "weight_decay",
        ),
        (
            {
                let mut c = TrainConfig::original();
                c.optim.clip_max_norm = -1.0;
                c
            },
            "clip_max_norm",
        ),
        (
            {
                let mut c = TrainConfig::original();
                c.loss.eos_coef = f32::NAN;
                c
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
    let cfg = {
        let mut c = micro(&root);
        c.model.num_classes = Some(6);
        c
    };
    detr_train::splits::ensure_synthetic(&cfg).unwrap();
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
        .arg(&cfg.data.coco_path)
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

/// The original README's evaluation command, as is (`--batch_size 2 --no_aux_loss --eval
/// --resume <official .pth> --coco_path <COCO folder>`), with the fixture model's
/// architecture: the loss components and COCO numbers match the PyTorch reference
/// (`tools/make_eval_fixture.py`: the original's model, criterion and pycocotools).
#[test]
fn eval_resume_of_an_official_pth_gives_the_reference_losses() {
    let root = tmp("eval_pth");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixture = repo.join("detr-train/tests/fixtures/eval_pth");
    let pth = repo.join("detr-model/tests/fixtures/tiny_r18.pth");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    for (aux, key) in [(false, "no_aux"), (true, "with_aux")] {
        let out = root.join(key);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_detr-train"));
        cmd.args(["--batch_size", "2"]);
        if !aux {
            cmd.arg("--no_aux_loss");
        }
        cmd.arg("--eval")
            .arg("--resume")
            .arg(&pth)
            .arg("--coco_path")
            .arg(&fixture)
            .arg("--output_dir")
            .arg(&out)
            // The fixture model's architecture (tools/make_model_fixture.py's `tiny_r18`).
            .args([
                "--backbone",
                "resnet18",
                "--backbone_width",
                "16",
                "--hidden_dim",
                "64",
            ])
            .args(["--nheads", "4", "--enc_layers", "2", "--dec_layers", "3"])
            .args([
                "--dim_feedforward",
                "128",
                "--num_queries",
                "12",
                "--num_classes",
                "6",
            ])
            .args([
                "--image_scale",
                "0.1",
                "--num_vis_images",
                "0",
                "--num_workers",
                "1",
            ]);
        let res = cmd.output().unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(res.status.success(), "{log}");
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
        let want = expected[key].as_object().unwrap();
        for (name, v) in want {
            let w = v.as_f64().unwrap();
            let g = got[format!("test_{name}")]
                .as_f64()
                .unwrap_or_else(|| panic!("eval.json has no test_{name}: {got}"));
            // float32 forward and loss against the float64 loss of PyTorch's float32 forward:
            // agreement to 1e-4 relative (the model parity tests show ~1e-6 on the outputs).
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{key} {name}: detr-rs {g}, PyTorch {w}"
            );
        }
        let stats = got["test_coco_eval_bbox"].as_array().unwrap();
        for (i, (g, w)) in stats
            .iter()
            .zip(expected["coco_stats"].as_array().unwrap())
            .enumerate()
        {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6,
                "COCO number {i}: detr-rs {g}, pycocotools {w}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `--ema_decay`: the moving average is saved beside each checkpoint, continues exactly
/// across a resume, and is the run's `model.mpk`.
#[test]
fn the_weight_average_resumes_exactly_and_is_the_final_model() {
    let _g = serial();
    let root = tmp("ema");
    let full = {
        let mut c = micro(&root);
        c.run.output_dir = root.join("full");
        c.model.num_classes = Some(6);
        c.optim.ema_decay = Some(0.5);
        c
    };
    run::<B>(full.clone(), vec![Default::default()]).unwrap();
    let ema_file = full.run.output_dir.join("checkpoint.mpk.ema.mpk");
    assert!(
        ema_file.is_file(),
        "the average is saved beside the checkpoint"
    );
    let half = {
        let mut c = full.clone();
        c.run.output_dir = root.join("half");
        c.optim.epochs = 1;
        c
    };
    run::<B>(half.clone(), vec![Default::default()]).unwrap();
    let resumed = {
        let mut c = half.clone();
        c.run.resume = Some(half.run.output_dir.join("checkpoint.mpk"));
        c.optim.epochs = 2;
        c
    };
    run::<B>(resumed, vec![Default::default()]).unwrap();
    let model_values = |path: &Path| {
        let device = Default::default();
        let (model, _) = detr_train::run::build_model::<Flex>(&full, 6, &device).unwrap();
        let (model, _) = detr_model::weights::load_checkpoint(
            model,
            path,
            detr_model::weights::WeightFormat::Auto,
            detr_model::weights::LoadOptions {
                strict: true,
                reinit_class_head: false,
            },
        )
        .unwrap();
        let mut v = Values::default();
        model.visit(&mut v);
        v.0
    };
    let a = model_values(&ema_file);
    let b = model_values(&half.run.output_dir.join("checkpoint.mpk.ema.mpk"));
    assert_eq!(
        a, b,
        "the average after a resume differs from the uninterrupted one"
    );
    // The final model is the average, not the last weights.
    let final_model = model_values(&full.run.output_dir.join("model.mpk"));
    assert_eq!(final_model, a);
    let last = checkpoint_values(&full, &full.run.output_dir.join("checkpoint.mpk"));
    assert_ne!(
        last, a,
        "with decay 0.5 the average is not the last weights"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// `--resume` of a training checkpoint of the original takes over its AdamW state
/// (tools/make_pth_resume_fixture.py: two PyTorch AdamW steps with the original's parameter
/// groups, clipping and decay). From the file's moments and step counts, one more step with the
/// fixture's gradients lands on PyTorch's weights (1e-6 absolute; an update is about 1e-4);
/// with a fresh optimiser it does not, so the test tells a lost state from a kept one.
#[test]
fn an_official_pth_resumes_its_adamw_state_and_epoch() {
    use detr_model::weights::sources::read_safetensors;
    use detr_model::weights::{
        load_checkpoint, official_parameter_groups, to_official, transform, LoadOptions,
        WeightFormat,
    };
    use detr_model::DetrConfig;
    use detr_train::official_checkpoint::{official_epoch, official_optimizer};
    use detr_train::optim::{DetrOptimizer, OptimizerOptions};
    // Initialising models draws from the backend's process-wide RNG, which the other runs
    // re-seed per step: hold the lock throughout.
    let _g = serial();

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resume_pth");
    let pth = dir.join("checkpoint.pth");
    assert_eq!(official_epoch(&pth).unwrap(), Some(3));
    let cfg = DetrConfig::from_json_file(&dir.join("detr.json")).unwrap();
    let device = Default::default();
    let load = || {
        let model = cfg.init::<B>(&device).unwrap();
        let options = LoadOptions {
            strict: true,
            reinit_class_head: false,
        };
        load_checkpoint(model, &pth, WeightFormat::Auto, options)
            .unwrap()
            .0
    };
    let grads = read_safetensors(&dir.join("grads.safetensors")).unwrap();
    let expected = read_safetensors(&dir.join("after.safetensors")).unwrap();
    // The third step, from `model` with `optim`; returns the worst difference from PyTorch's.
    let third_step = |model: detr_model::Detr<B>, mut optim: DetrOptimizer<B>| -> f32 {
        let ids: std::collections::HashMap<String, burn::module::ParamId> = {
            use burn_store::ModuleSnapshot;
            model
                .collect(None, None, true)
                .into_iter()
                .filter_map(|s| Some((s.full_path(), s.tensor_id?)))
                .collect()
        };
        let mut gp = burn::optim::GradientsParams::new();
        let [rest, backbone] = official_parameter_groups(&model).unwrap();
        for entry in rest.iter().chain(&backbone) {
            let g = &grads[&entry.name];
            for (path, t) in &entry.targets {
                let data = transform(g, *t);
                let id = ids[path];
                match data.shape.len() {
                    1 => gp.register::<Flex, 1>(id, Tensor::from_data(data, &device)),
                    2 => gp.register::<Flex, 2>(id, Tensor::from_data(data, &device)),
                    4 => gp.register::<Flex, 4>(id, Tensor::from_data(data, &device)),
                    n => panic!("{n}-d parameter {path}"),
                }
            }
        }
        let (after, _) = optim.step_clipped(1e-4, model, gp);
        let ours = to_official(&after);
        let mut worst = 0.0f32;
        for entry in rest.iter().chain(&backbone) {
            let a = ours[&entry.name].to_vec::<f32>().unwrap();
            let b = expected[&entry.name].to_vec::<f32>().unwrap();
            for (x, y) in a.iter().zip(&b) {
                worst = worst.max((x - y).abs());
            }
        }
        worst
    };
    let options = OptimizerOptions::default();

    let model = load();
    let optim = DetrOptimizer::new(&model, options);
    let record = official_optimizer(&pth, &model)
        .unwrap()
        .expect("the file has an optimiser state");
    // Every trainable parameter of the original has a state (the attention projections, one
    // packed tensor there, are three parameters here).
    let [rest, backbone] = official_parameter_groups(&model).unwrap();
    let targets = |g: &[detr_model::weights::OfficialEntry]| -> usize {
        g.iter().map(|e| e.targets.len()).sum()
    };
    assert_eq!(record.rest.len(), targets(&rest));
    assert_eq!(record.backbone.len(), targets(&backbone));
    optim.restore(record);
    let kept = third_step(model, optim);
    assert!(kept < 1e-6, "resumed AdamW state: worst difference {kept}");

    let model = load();
    let fresh = third_step(model.clone(), DetrOptimizer::new(&model, options));
    assert!(
        fresh > 1e-5,
        "a fresh optimiser should not land there: {fresh}"
    );

    // The epoch: training continues after the file's last finished epoch (3).
    let root = tmp("resume_pth");
    let mut c = micro(&root);
    c.run.resume = Some(pth.clone());
    c.optim.epochs = 4;
    let msg = expect_nothing_to_train(c, "an official checkpoint's finished epoch");
    assert!(msg.contains("finished epoch 3"), "{msg}");
}
