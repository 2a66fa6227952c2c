//! detr-rs's own model files: self-describing (the configuration in the header), checksummed
//! (a flipped byte or a cut file is an error that says so), old bare records still load with
//! a note, and files that are not model weights are named for what they are.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use detr_model::weights::container::{self, ContainerKind};
use detr_model::weights::native::model_config;
use detr_model::weights::{load_checkpoint, save_record, LoadOptions, WeightFormat};
use detr_model::{Detr, DetrConfig, ModelError};

type B = Flex;

fn config() -> DetrConfig {
    // Small enough to build in milliseconds.
    DetrConfig::preset("tiny")
        .unwrap()
        .with_hidden_dim(32)
        .with_dim_feedforward(64)
        .with_backbone_width(8)
        .with_num_queries(10)
        .with_num_classes(6)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-model-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn load(path: &Path) -> Result<(Detr<B>, detr_model::weights::LoadReport), ModelError> {
    let model = config().init::<B>(&Default::default()).unwrap();
    load_checkpoint(
        model,
        path,
        WeightFormat::Auto,
        LoadOptions {
            strict: true,
            ..Default::default()
        },
    )
}

fn saved(name: &str) -> (Detr<B>, PathBuf) {
    let model = config().init::<B>(&Default::default()).unwrap();
    let path = tmp(name);
    save_record(&model, &config(), &path).unwrap();
    (model, path)
}

fn bare_record<R: burn::record::Record<B>>(record: R) -> Vec<u8> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record(record, ())
        .unwrap()
}

#[test]
fn model_file_carries_its_configuration_and_a_checksum() {
    let (_, path) = saved("self.mpk");
    assert_eq!(model_config(&path).unwrap(), Some(config()));
    let bytes = std::fs::read(&path).unwrap();
    let header = container::unwrap(&path, &bytes).unwrap().header.unwrap();
    assert_eq!(header.kind, ContainerKind::Model);
    assert_eq!(header.checksum.len(), 64);
    let (_, report) = load(&path).unwrap();
    assert!(report.is_complete() && report.notes.is_empty(), "{report}");
}

#[test]
fn a_config_that_is_not_the_model_is_refused_when_saving() {
    let model = config().init::<B>(&Default::default()).unwrap();
    let err = save_record(&model, &config().with_num_queries(30), &tmp("wrong.mpk")).unwrap_err();
    assert!(err.to_string().contains("30 queries"), "{err}");
}

/// Issue 12 item 7: eight flipped bytes inside model.mpk were loaded without a word.
#[test]
fn eight_flipped_bytes_are_a_checksum_error() {
    let (_, path) = saved("flipped.mpk");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b = !*b;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&path).err().expect("a corrupted file must not load");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("flipped.mpk") && msg.contains("checksum mismatch"),
        "{msg}"
    );
}

/// Issue 12 item 6: a truncated .mpk reported Burn's "format has changed since 0.14.0".
#[test]
fn truncated_file_says_truncated_with_sizes() {
    let (_, path) = saved("cut.mpk");
    let bytes = std::fs::read(&path).unwrap();
    let keep = bytes.len() * 2 / 3;
    std::fs::write(&path, &bytes[..keep]).unwrap();
    let msg = load(&path).err().unwrap().to_string();
    assert!(msg.contains("cut.mpk"), "{msg}");
    assert!(
        msg.contains(&format!(
            "truncated: expected {} bytes, found {keep}",
            bytes.len()
        )),
        "{msg}"
    );
    assert!(!msg.contains("0.14.0"), "{msg}");
}

/// Issue 12 item 6: empty and text files gave raw record/pickle errors.
#[test]
fn empty_text_and_directory_are_named() {
    let empty = tmp("empty.mpk");
    std::fs::write(&empty, b"").unwrap();
    let msg = load(&empty).err().unwrap().to_string();
    assert!(msg.contains("empty.mpk") && msg.contains("empty"), "{msg}");

    let text = tmp("notes.mpk");
    std::fs::write(&text, "epoch 1 loss 0.5\n").unwrap();
    let msg = load(&text).err().unwrap().to_string();
    assert!(
        msg.contains("notes.mpk") && msg.contains("text file"),
        "{msg}"
    );

    // Also for the other formats' readers (a text file named .pth).
    let pth = tmp("notes.pth");
    std::fs::write(&pth, "epoch 1 loss 0.5\n").unwrap();
    let msg = load(&pth).err().unwrap().to_string();
    assert!(msg.contains("notes.pth"), "{msg}");

    let dir = tmp("run.mpk");
    std::fs::create_dir_all(&dir).unwrap();
    let msg = load(&dir).err().unwrap().to_string();
    assert!(msg.contains("directory"), "{msg}");
}

/// Files written before the container (bare Burn records) still load, with a note.
#[test]
fn bare_record_of_the_previous_version_loads_with_a_note() {
    let model = config().init::<B>(&Default::default()).unwrap();
    let path = tmp("legacy.mpk");
    std::fs::write(&path, bare_record(model.clone().into_record())).unwrap();
    assert_eq!(model_config(&path).unwrap(), None);
    let (_, report) = load(&path).unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("checksum")),
        "{report}"
    );
    // A cut bare record: no Burn advice about old versions, but what it probably is.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load(&path).err().unwrap().to_string();
    assert!(msg.contains("truncated or damaged"), "{msg}");
    assert!(!msg.contains("0.14.0"), "{msg}");
}

/// Issue 12 item 6: detr-train's checkpoint given as model weights said `missing field conv1`.
#[test]
fn training_checkpoint_is_named_as_such() {
    let model = config().init::<B>(&Default::default()).unwrap();
    // The previous version's checkpoint: (model, optimiser, progress) as one bare record.
    let path = tmp("checkpoint.mpk");
    std::fs::write(
        &path,
        bare_record((model.clone().into_record(), (), String::from("{}"))),
    )
    .unwrap();
    let msg = load(&path).err().unwrap().to_string();
    assert!(
        msg.contains("training checkpoint") && msg.contains("model.mpk"),
        "{msg}"
    );
    // The container kind for training state.
    let wrapped = container::wrap(
        ContainerKind::TrainingState,
        serde_json::json!({}),
        &bare_record((model.into_record(), (), String::from("{}"))),
    );
    std::fs::write(&path, wrapped).unwrap();
    let msg = load(&path).err().unwrap().to_string();
    assert!(msg.contains("training checkpoint"), "{msg}");
}
