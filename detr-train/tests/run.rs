//! The whole run on a micro synthetic dataset (CPU, flex): the dataset is generated, the
//! model trains and validates, and every output a user expects is written (resolved config,
//! checkpoints, model, `log.txt` with the 12 COCO numbers, curves, pictures); the run then
//! resumes to a later epoch and `--eval` evaluates the checkpoint.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use detr_train::config::{SyntheticConfig, TrainConfig};
use detr_train::run::run;

type B = Autodiff<Flex>;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-run-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn micro(root: &std::path::Path) -> TrainConfig {
    {
        let mut c = TrainConfig::synthetic_tiny();
        c.model.arch.enc_layers = 1;
        c.model.arch.dec_layers = 1;
        c.model.arch.num_queries = 4;
        c.model.arch.dim_feedforward = 32;
        c.model.arch.hidden_dim = 16;
        c.model.arch.nheads = 2;
        c.model.arch.backbone_width = 8;
        c.data.batch_size = 2;
        c.optim.epochs = 2;
        c.optim.lr_drop = 1;
        c.run.eval_every = 1;
        c.data.num_workers = 1;
        c.data.image_scale = 0.08;
        c.run.num_vis_images = 2;
        c.run.vis_threshold = 0.0;
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

fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_run_writes_every_output_then_resumes_and_evaluates() {
    let root = tmp("outputs");
    let cfg = micro(&root);
    let out = cfg.run.output_dir.clone();
    let summary = run::<B>(cfg.clone(), vec![Default::default()]).unwrap();
    assert_eq!(summary.epochs, 2);
    let stats = summary.coco_stats.expect("validation ran");
    assert!(stats.iter().all(|s| (-1.0..=1.0).contains(s)), "{stats:?}");
    assert!(root
        .join("data/annotations/instances_train2017.json")
        .is_file());
    for f in [
        "config.json",
        "checkpoint.mpk",
        "checkpoint0000.mpk",
        "model.mpk",
        "log.txt",
        "curves.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let resolved: TrainConfig =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    // The file records the run as resolved: the class count comes from the data
    // (largest category id + 1, as the original sizes its head), the rest as given.
    let annotations: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("data/annotations/instances_train2017.json")).unwrap(),
    )
    .unwrap();
    let max_id = annotations["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap() as usize)
        .max()
        .unwrap();
    let mut expected = cfg.clone();
    expected.model.num_classes = Some(max_id + 1);
    expected.model.arch.num_classes = max_id + 1;
    assert_eq!(resolved, expected);
    let lines = log_lines(&out.join("log.txt"));
    assert_eq!(lines.len(), 2);
    for (epoch, l) in lines.iter().enumerate() {
        assert_eq!(l["epoch"], epoch);
        assert_eq!(l["test_coco_eval_bbox"].as_array().unwrap().len(), 12);
        assert!(l["train_loss"].as_f64().unwrap().is_finite());
        assert!(l["train_loss_giou"].is_number() && l["test_class_error"].is_number());
    }
    // StepLR(1): the second epoch ran at a tenth of the first's rate.
    let ratio = lines[1]["train_lr"].as_f64().unwrap() / lines[0]["train_lr"].as_f64().unwrap();
    assert!((ratio - 0.1).abs() < 1e-9, "{ratio}");
    let pictures: Vec<_> = std::fs::read_dir(out.join("pictures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pictures.len(), 2, "{pictures:?}");
    for p in &pictures {
        let img = image::open(p).unwrap();
        assert!(img.width() >= 384 && img.height() >= 384, "{}", p.display());
    }

    // Resume to a third epoch: the history continues.
    let resumed = {
        let mut c = cfg.clone();
        c.run.resume = Some(out.join("checkpoint.mpk"));
        c.optim.epochs = 3;
        c
    };
    let summary = run::<B>(resumed, vec![Default::default()]).unwrap();
    assert_eq!(summary.epochs, 3);
    let lines = log_lines(&out.join("log.txt"));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["epoch"], 2);

    // --eval: the checkpoint's numbers, without training.
    let eval = {
        let mut c = cfg;
        c.run.resume = Some(out.join("checkpoint.mpk"));
        c.run.eval = true;
        c.run.output_dir = root.join("eval");
        c
    };
    let summary = run::<B>(eval, vec![Default::default()]).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("eval/eval.json")).unwrap())
            .unwrap();
    let bbox: Vec<f64> = written["test_coco_eval_bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(bbox, summary.coco_stats.unwrap().to_vec());
    assert!(root.join("eval/pictures").is_dir());
    let _ = std::fs::remove_dir_all(&root);
}
