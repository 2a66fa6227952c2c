//! Hugging Face interoperability, against files transformers itself wrote
//! (`tools/make_hf_fixture.py`: `DetrForObjectDetection` with transformers' own ResNet,
//! `use_timm_backbone=False`, saved by `save_pretrained`).
//!
//! Tolerance of the parity checks: `‖ours − transformers‖∞ / ‖transformers‖∞ ≤ 1e-4` on the
//! logits and boxes (float32 on both sides; the float32 noise floor at this size is about
//! 1e-5). Exports are checked bit for bit: a transformers file loaded here and exported again
//! is the same file's tensors, and an export loads back into identical weights.

mod common;

use std::collections::BTreeMap;

use common::*;
use detr_model::weights::{
    detr_config_from_hf, export_hf, export_official, load_checkpoint, sources, to_official,
    HfBackbone, LoadOptions, WeightFormat,
};
use detr_model::{BackboneKind, BackboneNormKind, Detr, DetrConfig};

type B = burn::backend::Flex;

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 2] = ["hf_r18_sine", "hf_r50_learned"];

fn strict() -> LoadOptions {
    LoadOptions {
        strict: true,
        ..Default::default()
    }
}

fn config(name: &str) -> DetrConfig {
    DetrConfig::from_json_file(&fixtures().join(name).join("detr.json")).unwrap()
}

fn load(cfg: &DetrConfig, path: &std::path::Path, format: WeightFormat) -> Detr<B> {
    let model = cfg.init::<B>(&Default::default()).unwrap();
    let (model, report) = load_checkpoint(model, path, format, strict()).unwrap();
    assert!(report.is_complete(), "{}: {report}", path.display());
    model
}

fn last_layer(v: Vec<f32>, layers: usize) -> Vec<f32> {
    let n = v.len() / layers;
    v[(layers - 1) * n..].to_vec()
}

#[test]
fn transformers_config_json_gives_the_same_model_config() {
    for name in FIXTURES {
        let text = std::fs::read_to_string(fixtures().join(name).join("config.json")).unwrap();
        let hf: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(detr_config_from_hf(&hf).unwrap(), config(name), "{name}");
    }
}

#[test]
fn a_checkpoint_written_by_transformers_without_timm_gives_its_detections() {
    let device = Default::default();
    for name in FIXTURES {
        let dir = fixtures().join(name);
        let model = load(
            &config(name),
            &dir.join("model.safetensors"),
            WeightFormat::Auto,
        );
        let io = read_io(&format!("{name}/io.safetensors"));
        let out = model.forward(float(&io, "images", &device), mask(&io, "mask", &device));
        let layers = out.num_layers();
        let logits = last_layer(to_vec(out.logits), layers);
        let boxes = last_layer(to_vec(out.boxes), layers);
        let expect = |key: &str| match io.get(key) {
            Some(Raw::F32(v, _)) => v.clone(),
            _ => panic!("{name}: missing {key}"),
        };
        let (el, eb) = (
            rel_err(&logits, &expect("logits")),
            rel_err(&boxes, &expect("boxes")),
        );
        eprintln!("{name}: logits {el:.2e} boxes {eb:.2e}");
        assert!(el < TOL, "{name}: logits rel err {el}");
        assert!(eb < TOL, "{name}: boxes rel err {eb}");
    }
}

#[test]
fn export_gives_back_the_transformers_file_and_round_trips_bit_for_bit() {
    let tmp = std::env::temp_dir().join(format!("detr-hf-export-{}", std::process::id()));
    for name in FIXTURES {
        let cfg = config(name);
        let original = fixtures().join(name).join("model.safetensors");
        let model = load(&cfg, &original, WeightFormat::HfSafetensors);
        let out = tmp.join(name);
        let summary = export_hf(
            &model,
            &cfg,
            HfBackbone::Transformers,
            &BTreeMap::new(),
            &out,
        )
        .unwrap();
        // Same names, shapes and values as the file transformers wrote (less nothing: the
        // frozen batch norms carry no `num_batches_tracked`).
        let theirs = sources::read_safetensors(&original).unwrap();
        let ours = sources::read_safetensors(&out.join("model.safetensors")).unwrap();
        assert_eq!(summary.tensors, theirs.len());
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, v) in &theirs {
            assert_eq!(&ours[k], v, "{name}: {k}");
        }
        // config.json describes the same model.
        let text = std::fs::read_to_string(out.join("config.json")).unwrap();
        let hf: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(detr_config_from_hf(&hf).unwrap(), cfg, "{name}");
        // Loading the export gives the same weights, bit for bit.
        let back = load(&cfg, &out.join("model.safetensors"), WeightFormat::Auto);
        assert_eq!(
            to_official(&back),
            to_official(&model),
            "{name}: HF round trip"
        );
        // The timm naming round-trips too.
        let timm_dir = tmp.join(format!("{name}-timm"));
        let timm = cfg.clone().with_backbone_width(64);
        if timm.backbone == BackboneKind::Resnet18 {
            let wide = timm.init::<B>(&Default::default()).unwrap();
            export_hf(&wide, &timm, HfBackbone::Timm, &BTreeMap::new(), &timm_dir).unwrap();
            let back = load(
                &timm,
                &timm_dir.join("model.safetensors"),
                WeightFormat::Auto,
            );
            assert_eq!(
                to_official(&back),
                to_official(&wide),
                "{name}: timm round trip"
            );
        }
        // And the official state dict.
        let official = tmp.join(format!("{name}-official.safetensors"));
        export_official(&model, &cfg, &official).unwrap();
        let back = load(&cfg, &official, WeightFormat::Auto);
        assert_eq!(to_official(&back), to_official(&model), "{name}: official");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn what_transformers_cannot_represent_is_an_error_naming_the_option() {
    let device = Default::default();
    let tmp = std::env::temp_dir().join(format!("detr-hf-refused-{}", std::process::id()));
    let cases = [
        (
            DetrConfig::preset("tiny").unwrap(),
            HfBackbone::Transformers,
            "backbone_norm",
        ),
        (
            DetrConfig::preset("tiny")
                .unwrap()
                .with_backbone_norm(BackboneNormKind::Frozen)
                .with_pre_norm(true),
            HfBackbone::Transformers,
            "pre_norm",
        ),
        (
            DetrConfig::preset("r50-dc5")
                .unwrap()
                .with_backbone_width(8),
            HfBackbone::Transformers,
            "dilation",
        ),
        (
            DetrConfig::new()
                .with_backbone(BackboneKind::Resnet18)
                .with_backbone_width(16),
            HfBackbone::Timm,
            "backbone_width",
        ),
    ];
    for (cfg, backbone, option) in cases {
        let cfg = cfg
            .with_hidden_dim(16)
            .with_nheads(2)
            .with_enc_layers(1)
            .with_dec_layers(1);
        let model = cfg.init::<B>(&device).unwrap();
        let err = export_hf(&model, &cfg, backbone, &BTreeMap::new(), &tmp).unwrap_err();
        assert!(err.to_string().contains(&format!("`{option}`")), "{err}");
        assert!(
            !tmp.join("model.safetensors").exists(),
            "{option}: wrote a file"
        );
    }
    // The tiny preset with a frozen backbone is representable at its quarter width.
    let cfg = DetrConfig::preset("tiny")
        .unwrap()
        .with_backbone_norm(BackboneNormKind::Frozen);
    let model = cfg.init::<B>(&device).unwrap();
    export_hf(
        &model,
        &cfg,
        HfBackbone::Transformers,
        &BTreeMap::new(),
        &tmp,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_backbone_mixing_both_namings_is_refused() {
    let dir = fixtures().join("hf_r18_sine");
    let mut tensors = sources::read_safetensors(&dir.join("model.safetensors")).unwrap();
    let stem = tensors
        .remove("model.backbone.conv_encoder.model.embedder.embedder.convolution.weight")
        .unwrap();
    tensors.insert(
        "model.backbone.conv_encoder.model.conv1.weight".into(),
        stem,
    );
    let tmp =
        std::env::temp_dir().join(format!("detr-hf-mixed-{}.safetensors", std::process::id()));
    detr_model::weights::export::write_safetensors(&tmp, &tensors, None).unwrap();
    let model = config("hf_r18_sine")
        .init::<B>(&Default::default())
        .unwrap();
    let err = load_checkpoint(model, &tmp, WeightFormat::Auto, strict()).unwrap_err();
    let _ = std::fs::remove_file(&tmp);
    assert!(err.to_string().contains("mixes"), "{err}");
}
