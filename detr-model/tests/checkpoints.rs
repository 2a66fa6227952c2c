//! Checkpoint loading: partial loads, fine-tuning with another class count, torchvision
//! backbones, and clear errors for files that are not (this model's) checkpoints.

mod common;

use burn::backend::Flex;
use common::*;
use detr_model::weights::{load_checkpoint, save_record, LoadOptions, WeightFormat};
use detr_model::{DetrConfig, ModelError};

type B = Flex;

fn config(name: &str) -> DetrConfig {
    DetrConfig::from_json_file(&fixtures().join(format!("{name}.json"))).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-model-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn fine_tuning_with_another_class_count_reinitialises_only_the_class_head() {
    let device = Default::default();
    let cfg = config("tiny_r18").with_num_classes(3);
    let fresh = cfg.init::<B>(&device).unwrap();
    let fresh_class = to_vec(fresh.class_embed.weight.val());
    let opts = LoadOptions {
        strict: true,
        reinit_class_head: true,
    };
    let (model, report) = load_checkpoint(
        fresh,
        &fixtures().join("tiny_r18.pth"),
        WeightFormat::Auto,
        opts,
    )
    .unwrap();
    assert_eq!(
        report.reinitialized,
        vec![
            "class_embed.weight".to_string(),
            "class_embed.bias".to_string()
        ]
    );
    assert!(
        report.missing.is_empty() && report.mismatched.is_empty() && report.unexpected.is_empty(),
        "{report}"
    );
    assert_eq!(report.loaded.len(), 191 - 2);
    assert_eq!(model.class_embed.weight.dims(), [64, 4]);
    assert_eq!(to_vec(model.class_embed.weight.val()), fresh_class);
    // Everything else equals the checkpoint: the boxes do not depend on the class head.
    let (reference, _) = load_checkpoint(
        config("tiny_r18").init::<B>(&device).unwrap(),
        &fixtures().join("tiny_r18.pth"),
        WeightFormat::DetrPth,
        LoadOptions::default(),
    )
    .unwrap();
    let io = read_io("tiny_r18_io.safetensors");
    let a = model.forward(
        float(&io, "images_0", &device),
        mask(&io, "mask_0", &device),
    );
    let b = reference.forward(
        float(&io, "images_0", &device),
        mask(&io, "mask_0", &device),
    );
    assert_eq!(to_vec(a.boxes), to_vec(b.boxes));

    // Without asking for re-initialisation the class head is reported as mismatched, and a
    // strict load fails naming it.
    let fresh = cfg.init::<B>(&device).unwrap();
    let (_, report) = load_checkpoint(
        fresh,
        &fixtures().join("tiny_r18.pth"),
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(report.mismatched.len(), 2, "{report}");
    assert_eq!(report.mismatched[0].0, "class_embed.weight");
    let err = load_checkpoint(
        cfg.init::<B>(&device).unwrap(),
        &fixtures().join("tiny_r18.pth"),
        WeightFormat::Auto,
        LoadOptions {
            strict: true,
            reinit_class_head: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("class_embed.weight"), "{err}");
    assert!(err.to_string().contains("tiny_r18.pth"), "{err}");
}

#[test]
fn native_record_fine_tuning_and_architecture_checks() {
    let device = Default::default();
    let (model, _) = load_checkpoint(
        config("tiny_r18").init::<B>(&device).unwrap(),
        &fixtures().join("tiny_r18.pth"),
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap();
    let path = tmp("r18.mpk");
    save_record(&model, &config("tiny_r18"), &path).unwrap();
    // Another class count: an error unless the class head is re-initialised.
    let three = config("tiny_r18").with_num_classes(3);
    let err = load_checkpoint(
        three.init::<B>(&device).unwrap(),
        &path,
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("class_embed"), "{err}");
    let opts = LoadOptions {
        strict: true,
        reinit_class_head: true,
    };
    let (tuned, report) = load_checkpoint(
        three.init::<B>(&device).unwrap(),
        &path,
        WeightFormat::Auto,
        opts,
    )
    .unwrap();
    assert_eq!(report.reinitialized.len(), 2);
    assert_eq!(tuned.class_embed.weight.dims(), [64, 4]);
    // Another architecture (more decoder layers) is an error naming the file.
    let other = config("tiny_r18").with_dec_layers(4);
    let err = load_checkpoint(
        other.init::<B>(&device).unwrap(),
        &path,
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("r18.mpk"), "{err}");
    let wider = config("tiny_r18").with_dim_feedforward(96);
    let err = load_checkpoint(
        wider.init::<B>(&device).unwrap(),
        &path,
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("linear1"), "{err}");
}

#[test]
fn torchvision_backbone_loads_only_the_backbone() {
    let device = Default::default();
    let model = config("tiny_r50dc5").init::<B>(&device).unwrap();
    let opts = LoadOptions {
        strict: true,
        reinit_class_head: false,
    };
    let (model, report) = load_checkpoint(
        model,
        &fixtures().join("tiny_r50dc5_torchvision.pth"),
        WeightFormat::Auto,
        opts,
    )
    .unwrap();
    assert!(
        report
            .loaded
            .iter()
            .all(|n| n.starts_with("backbone.0.body.")),
        "{report}"
    );
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report}"
    );
    assert_eq!(report.loaded.len(), 265); // every ResNet-50 tensor, as in the r50 reference list
    let io = read_io("tiny_r50dc5_io.safetensors");
    let features = model.backbone.forward(float(&io, "images_0", &device));
    let expected = match io.get("features_0") {
        Some(Raw::F32(v, _)) => v.clone(),
        _ => unreachable!(),
    };
    let err = rel_err(&to_vec(features), &expected);
    assert!(err < 1e-4, "backbone features rel err {err}");
}

#[test]
fn files_that_are_not_checkpoints_are_clear_errors() {
    let device = Default::default();
    let model = || config("tiny_r18").init::<B>(&device).unwrap();
    let garbage = tmp("garbage.pth");
    std::fs::write(&garbage, b"this is not a pickle").unwrap();
    let err = load_checkpoint(
        model(),
        &garbage,
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("garbage.pth"), "{err}");

    let json = tmp("weights.safetensors");
    std::fs::write(&json, b"{\"not\": \"safetensors\"}").unwrap();
    let err =
        load_checkpoint(model(), &json, WeightFormat::Auto, LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("weights.safetensors"), "{err}");

    let missing = tmp("does-not-exist.pth");
    let err = load_checkpoint(
        model(),
        &missing,
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does-not-exist.pth"), "{err}");

    let record = tmp("bad.mpk");
    std::fs::write(&record, b"\x00\x01garbage").unwrap();
    let err =
        load_checkpoint(model(), &record, WeightFormat::Auto, LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bad.mpk"), "{err}");

    // A DETR checkpoint of another architecture: the pre-norm DC5 model's file into the R18
    // model loads nothing that fits.
    let err = load_checkpoint(
        model(),
        &fixtures().join("tiny_r50dc5.pth"),
        WeightFormat::Auto,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
}

#[test]
fn save_record_is_atomic_and_leaves_no_temporary_file() {
    let device = Default::default();
    let model = config("tiny_r18").init::<B>(&device).unwrap();
    let path = tmp("atomic/model.mpk");
    save_record(&model, &config("tiny_r18"), &path).unwrap();
    save_record(&model, &config("tiny_r18"), &path).unwrap();
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["model.mpk".to_string()]);
}
