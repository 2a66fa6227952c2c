//! `detr-infer export` end to end on the tiny_r18 fixture (Hugging Face folder and official
//! safetensors, loaded back bit for bit), its refusal of what transformers cannot represent,
//! and `detr-infer check` on Roboflow's COCO export layout.

mod common;

use std::process::Command;

use common::{model_fixtures, temp_dir};
use detr_model::weights::{load_checkpoint, to_official, LoadOptions, WeightFormat};
use detr_model::DetrConfig;

type B = burn::backend::Flex;

fn infer(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detr-infer"))
        .args(args)
        .output()
        .expect("run detr-infer")
}

fn strict_load(cfg: &DetrConfig, path: &std::path::Path) -> detr_model::Detr<B> {
    let model = cfg.init::<B>(&Default::default()).unwrap();
    let options = LoadOptions {
        strict: true,
        ..Default::default()
    };
    load_checkpoint(model, path, WeightFormat::Auto, options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

#[test]
fn export_writes_hf_and_official_files_that_load_back_bit_for_bit() {
    let weights = model_fixtures().join("tiny_r18.pth");
    let config = model_fixtures().join("tiny_r18.json");
    let out = temp_dir("export");
    let hf = out.join("hf");
    let official = out.join("official.safetensors");
    for (format, path) in [("hf", &hf), ("official", &official)] {
        let res = infer(&[
            "export".as_ref(),
            "--weights".as_ref(),
            weights.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--format".as_ref(),
            format.as_ref(),
            "--out".as_ref(),
            path.as_os_str(),
        ]);
        assert!(
            res.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let cfg = DetrConfig::from_json_file(&config).unwrap();
    let reference = to_official(&strict_load(&cfg, &weights));
    assert_eq!(
        to_official(&strict_load(&cfg, &hf.join("model.safetensors"))),
        reference
    );
    assert_eq!(to_official(&strict_load(&cfg, &official)), reference);
    let hf_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf_config["use_timm_backbone"], false);
    assert_eq!(hf_config["auxiliary_loss"], false);
    assert_eq!(hf_config["id2label"].as_object().unwrap().len(), 6);
}

#[test]
fn export_refuses_a_group_norm_backbone_naming_the_option() {
    let out = temp_dir("export-refused");
    let target = out.join("hf");
    let res = infer(&[
        "export".as_ref(),
        "--weights".as_ref(),
        model_fixtures().join("tiny_r18.pth").as_os_str(),
        "--preset".as_ref(),
        "tiny".as_ref(),
        "--format".as_ref(),
        "hf".as_ref(),
        "--out".as_ref(),
        target.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(stderr.contains("`backbone_norm`"), "{stderr}");
    assert!(!target.exists(), "nothing may be written");
}

#[test]
fn check_finds_the_splits_of_a_roboflow_export() {
    let root = temp_dir("roboflow");
    let options = datasets::synthetic::SyntheticOptions {
        seed: 5,
        layout: datasets::Layout::Roboflow,
        train_images: 3,
        val_images: 2,
        min_image_size: 32,
        max_image_size: 48,
        ..Default::default()
    };
    datasets::generate(&root, &options).unwrap();
    let res = infer(&["check".as_ref(), root.as_os_str()]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains("split train"), "{stdout}");
    assert!(stdout.contains("split valid"), "{stdout}");
    assert!(stdout.contains("_annotations.coco.json"), "{stdout}");
}
