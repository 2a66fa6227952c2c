//! Shared helpers of the detr-infer tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// detr-model's tiny_r18 fixtures (weights, config).
pub fn model_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detr-model/tests/fixtures")
}

/// detr-infer's fixtures.
pub fn fixtures() -> PathBuf {
    // Named from the workspace (not `tests/fixtures`) so that gpu-tests can include this file.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detr-infer/tests/fixtures")
}

#[derive(Debug, Deserialize)]
pub struct FixtureImage {
    pub file: String,
    pub orig_size: [usize; 2],
    pub input_size: [usize; 2],
}

#[derive(Debug, Deserialize)]
pub struct FixturePrediction {
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
    pub boxes: Vec<[f32; 4]>,
    pub attention_hw: [usize; 2],
    pub attention: Vec<f32>,
}

/// tools/make_infer_fixture.py's output: PyTorch's post-processed detections.
#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub shortest_side: usize,
    pub longest_side: usize,
    pub images: Vec<FixtureImage>,
    pub single: Vec<FixturePrediction>,
    pub batched: Vec<FixturePrediction>,
}

pub fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixtures().join("tiny_r18_predict.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-infer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
