//! Parameter counts and the official state-dict layout against the reference key lists.

use std::collections::BTreeMap;

use burn::backend::Flex;
use detr_model::weights::official_layout;
use detr_model::{BackboneKind, BackboneNormKind, DetrConfig, PositionEmbeddingKind};

type B = Flex;
/// Gradient requirements only exist on an autodiff backend.
type AD = burn::backend::Autodiff<Flex>;

fn reference(name: &str) -> BTreeMap<String, Vec<usize>> {
    let path = format!(
        "{}/tests/fixtures/reference/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let key = cols.next().unwrap().to_string();
            let shape = cols.next().unwrap().trim_matches(|c| c == '[' || c == ']');
            let shape = shape
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().unwrap())
                .collect();
            (key, shape)
        })
        .collect()
}

#[test]
fn r50_has_the_originals_trainable_parameters_and_state_dict() {
    let model = DetrConfig::preset("r50")
        .unwrap()
        .init::<AD>(&Default::default())
        .unwrap();
    assert_eq!(model.num_trainable_params(), 41_302_368);
    let ours: BTreeMap<String, Vec<usize>> = official_layout(&model)
        .into_iter()
        .map(|e| (e.name, e.shape))
        .collect();
    assert_eq!(ours.len(), 458);
    assert_eq!(detr_model::params::count_tensors(&model), 458 + 18 * 4); // 18 packed in_proj pairs become q/k/v
    let reference = reference("detr_r50_state_dict_keys.tsv");
    assert_eq!(ours, reference);
}

/// Both Hugging Face layouts (timm backbone, and transformers' own ResNet) map onto the
/// official layout one to one, and `official_to_hf` gives back exactly the saved names.
#[test]
fn hf_names_map_onto_the_official_layout_and_back() {
    use detr_model::weights::{hf_to_official, official_to_hf, HfBackbone, HfName, HfTarget};
    for (file, num_classes, backbone) in [
        ("hf_detr_r50_timm_saved_keys.tsv", 2, HfBackbone::Timm),
        (
            "hf_detr_r50_no_timm_saved_keys.tsv",
            91,
            HfBackbone::Transformers,
        ),
    ] {
        let model = DetrConfig::preset("r50")
            .unwrap()
            .with_num_classes(num_classes)
            .init::<B>(&Default::default())
            .unwrap();
        let ours: BTreeMap<String, Vec<usize>> = official_layout(&model)
            .into_iter()
            .map(|e| (e.name, e.shape))
            .collect();
        let hf = reference(file);
        assert_eq!(
            HfBackbone::detect(hf.keys().map(String::as_str)),
            Ok(Some(backbone)),
            "{file}"
        );
        let mut mapped = std::collections::BTreeSet::new();
        for (name, shape) in &hf {
            match hf_to_official(name) {
                Some(HfTarget::Whole(o)) => {
                    assert_eq!(ours.get(&o), Some(shape), "{name} -> {o}");
                    mapped.insert(o);
                }
                Some(HfTarget::Packed { name: o, part }) => {
                    assert!(part < 3);
                    assert_eq!(
                        ours.get(&o).map(|s| s[0]),
                        Some(3 * shape[0]),
                        "{name} -> {o}"
                    );
                    mapped.insert(o);
                }
                None => assert!(
                    name.ends_with("num_batches_tracked"),
                    "{file}: unmapped HF key {name}"
                ),
            }
        }
        let all: std::collections::BTreeSet<String> = ours.keys().cloned().collect();
        assert_eq!(mapped, all, "{file}");
        let mut back = std::collections::BTreeSet::new();
        for name in ours.keys() {
            match official_to_hf(name, backbone) {
                Some(HfName::Whole(n)) => assert!(back.insert(n)),
                Some(HfName::Split(ns)) => ns.into_iter().for_each(|n| assert!(back.insert(n))),
                None => panic!("{name} has no HF name"),
            }
        }
        let saved: std::collections::BTreeSet<String> = hf.keys().cloned().collect();
        assert_eq!(back, saved, "{file}");
    }
}

#[test]
fn stem_and_layer1_are_frozen_and_batch_norm_is_constant() {
    use detr_model::backbone::BackboneNorm;
    let model = DetrConfig::preset("tiny")
        .unwrap()
        .with_backbone_norm(BackboneNormKind::Frozen)
        .with_train_stem_and_layer1(false)
        .init::<AD>(&Default::default())
        .unwrap();
    assert!(!model.backbone.conv1.weight.is_require_grad());
    assert!(model
        .backbone
        .layer1
        .iter()
        .all(|b| !b.conv1.weight.is_require_grad()));
    assert!(model.backbone.layer2[0].conv1.weight.is_require_grad());
    let frozen_bn = |n: &BackboneNorm<AD>| match n {
        BackboneNorm::Frozen(bn) => bn.clone(),
        BackboneNorm::Group(_) => panic!("expected FrozenBatchNorm2d"),
    };
    assert!(!frozen_bn(&model.backbone.layer2[0].bn1)
        .running_var
        .is_require_grad());
    assert!(!frozen_bn(&model.backbone.layer4[1].bn2)
        .weight
        .is_require_grad());
    let frozen = model.freeze_backbone();
    assert!(!frozen.backbone.layer4[1].conv2.weight.is_require_grad());
}

#[test]
fn the_tiny_preset_trains_its_whole_group_norm_backbone() {
    use detr_model::backbone::BackboneNorm;
    let model = DetrConfig::preset("tiny")
        .unwrap()
        .init::<AD>(&Default::default())
        .unwrap();
    assert!(model.backbone.conv1.weight.is_require_grad());
    assert!(model.backbone.layer1[0].conv1.weight.is_require_grad());
    let BackboneNorm::Group(gn) = &model.backbone.layer4[1].bn2 else {
        panic!("tiny should use GroupNorm");
    };
    assert_eq!(gn.num_groups, 16);
    assert!(gn.gamma.as_ref().unwrap().is_require_grad());
    let BackboneNorm::Group(stem) = &model.backbone.bn1 else {
        panic!("tiny should use GroupNorm");
    };
    assert_eq!(stem.num_groups, 2);
    // Official names are the same as with FrozenBatchNorm2d, less the running statistics.
    let names: Vec<String> = detr_model::weights::keymap::official_layout(&model)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"backbone.0.body.layer4.1.bn2.weight".to_string()));
    assert!(!names.iter().any(|n| n.contains("running_")));
}

#[test]
fn bad_configs_are_errors_naming_the_option() {
    let err = DetrConfig::from_json_str(r#"{"backbone": "resnet9"}"#).unwrap_err();
    assert!(err.to_string().contains("resnet9"), "{err}");
    assert!(err.to_string().contains("`backbone`"), "{err}");
    let err = "resnet9".parse::<BackboneKind>().unwrap_err();
    assert!(err.to_string().contains("resnet9"), "{err}");
    let err = DetrConfig::new()
        .with_hidden_dim(250)
        .init::<B>(&Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("nheads"), "{err}");
    let err =
        DetrConfig::from_json_str(r#"{"num_queries": 5, "backbone_norm": "batch"}"#).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
    assert!(err.to_string().contains("`backbone_norm`"), "{err}");
    let err = "batch".parse::<BackboneNormKind>().unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
    let err = DetrConfig::new()
        .with_backbone(BackboneKind::Resnet18)
        .with_dilation(true)
        .init::<B>(&Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("dilation"), "{err}");
    let err = DetrConfig::preset("r18").unwrap_err();
    assert!(err.to_string().contains("r18"), "{err}");
}

#[test]
fn kinds_are_written_with_the_original_names_and_read_with_their_aliases() {
    let cfg = DetrConfig::from_json_str(
        r#"{"backbone": "resnet101", "backbone_norm": "gn", "position_embedding": "v3"}"#,
    )
    .unwrap();
    assert_eq!(cfg.backbone, BackboneKind::Resnet101);
    assert_eq!(cfg.backbone_norm, BackboneNormKind::Group);
    assert_eq!(cfg.position_embedding, PositionEmbeddingKind::Learned);
    let cfg =
        DetrConfig::from_json_str(r#"{"backbone_norm": "frozen_bn", "position_embedding": "v2"}"#)
            .unwrap();
    assert_eq!(cfg.backbone_norm, BackboneNormKind::Frozen);
    assert_eq!(cfg.position_embedding, PositionEmbeddingKind::Sine);
    let written = serde_json::to_value(DetrConfig::preset("tiny").unwrap()).unwrap();
    assert_eq!(written["backbone"], "resnet18");
    assert_eq!(written["backbone_norm"], "group");
    assert_eq!(written["position_embedding"], "sine");
    for (name, kind) in [
        ("sine", PositionEmbeddingKind::Sine),
        ("v3", PositionEmbeddingKind::Learned),
    ] {
        assert_eq!(name.parse::<PositionEmbeddingKind>().unwrap(), kind);
    }
    assert_eq!(BackboneKind::Resnet34.to_string(), "resnet34");
}

#[test]
fn json_configs_without_newer_options_load_with_their_defaults() {
    let cfg = DetrConfig::from_json_str(r#"{"backbone": "resnet18", "num_classes": 7}"#).unwrap();
    assert_eq!(cfg.backbone, BackboneKind::Resnet18);
    assert_eq!(cfg.num_classes, 7);
    assert_eq!(cfg.backbone_norm, BackboneNormKind::Frozen);
    assert!(!cfg.train_stem_and_layer1);
    let err = DetrConfig::from_json_str(r#"{"backbone_depth": 5}"#).unwrap_err();
    assert!(err.to_string().contains("backbone_depth"), "{err}");
    let back = DetrConfig::from_json_str(
        &serde_json::to_string(&DetrConfig::preset("tiny").unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(back, DetrConfig::preset("tiny").unwrap());
}
