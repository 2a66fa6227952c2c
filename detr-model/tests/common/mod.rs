//! Helpers shared by the parity tests: fixture reading and tolerance checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};

/// The folder of committed fixtures (named from the workspace so that gpu-tests can include
/// this file).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../detr-model/tests/fixtures")
}

/// A tensor of a fixture file, as raw data (f32 or u8).
pub enum Raw {
    F32(Vec<f32>, Vec<usize>),
    U8(Vec<u8>, Vec<usize>),
}

/// Reads every tensor of a safetensors fixture.
pub fn read_io(name: &str) -> BTreeMap<String, Raw> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(k, v)| {
            let shape = v.shape().to_vec();
            let raw = match v.dtype() {
                safetensors::Dtype::F32 => Raw::F32(
                    v.data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    shape,
                ),
                safetensors::Dtype::U8 | safetensors::Dtype::BOOL => {
                    Raw::U8(v.data().to_vec(), shape)
                }
                other => panic!("{k}: unexpected dtype {other:?}"),
            };
            (k.to_string(), raw)
        })
        .collect()
}

pub fn float<B: Backend, const D: usize>(
    io: &BTreeMap<String, Raw>,
    key: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    match io.get(key) {
        Some(Raw::F32(v, s)) => Tensor::from_data(TensorData::new(v.clone(), s.clone()), device),
        _ => panic!("fixture lacks float tensor {key}"),
    }
}

pub fn mask<B: Backend, const D: usize>(
    io: &BTreeMap<String, Raw>,
    key: &str,
    device: &B::Device,
) -> Tensor<B, D, Bool> {
    match io.get(key) {
        Some(Raw::U8(v, s)) => Tensor::from_data(
            TensorData::new(v.iter().map(|&x| x != 0).collect::<Vec<bool>>(), s.clone()),
            device,
        ),
        _ => panic!("fixture lacks mask tensor {key}"),
    }
}

pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Max-norm relative error `‖a − b‖∞ / ‖b‖∞`.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0f32, f32::max).max(1e-12);
    diff / scale
}

/// `n` values in [-1, 1) from a fixed linear congruential sequence seeded by `salt`: inputs
/// for tests that compare two computations, independent of flex's generator (global, and
/// drawn from by other tests on other threads).
pub fn fixed_values(n: usize, salt: u64) -> Vec<f32> {
    let mut state = salt
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
