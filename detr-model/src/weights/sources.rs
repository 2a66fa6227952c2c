//! Reading tensors from checkpoint files into a flat `name → data` map (float32).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use burn_store::pytorch::PytorchReader;

use crate::error::ModelError;

/// Tensors by name, converted to float32.
pub type TensorMap = BTreeMap<String, TensorData>;

fn not_checkpoint(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::NotACheckpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn to_f32(path: &Path, name: &str, data: TensorData) -> Result<TensorData, ModelError> {
    match data.dtype {
        DType::F32 => Ok(data),
        DType::F64 | DType::F16 | DType::BF16 => Ok(data.convert::<f32>()),
        other => Err(not_checkpoint(
            path,
            format!("tensor `{name}` has unsupported dtype {other:?}"),
        )),
    }
}

/// Reads a PyTorch `.pth`. When `top_level_key` is given and present (DETR's `"model"`), the
/// state dict under it is read; otherwise the file itself must be a state dict. Integer tensors
/// (`num_batches_tracked`) are skipped.
pub fn read_pth(path: &Path, top_level_key: Option<&str>) -> Result<TensorMap, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let reader = match top_level_key {
        Some(key) => match PytorchReader::with_top_level_key(path, key) {
            Ok(r) => r,
            Err(burn_store::pytorch::PytorchError::KeyNotFound(_)) => {
                PytorchReader::new(path).map_err(|e| not_checkpoint(path, e.to_string()))?
            }
            Err(e) => return Err(not_checkpoint(path, e.to_string())),
        },
        None => PytorchReader::new(path).map_err(|e| not_checkpoint(path, e.to_string()))?,
    };
    let mut out = TensorMap::new();
    for (name, snapshot) in reader.into_tensors() {
        if matches!(
            snapshot.dtype,
            DType::I64 | DType::I32 | DType::U8 | DType::Bool(_)
        ) {
            continue;
        }
        let data = snapshot
            .to_data()
            .map_err(|e| not_checkpoint(path, format!("tensor `{name}`: {e:?}")))?;
        out.insert(name.clone(), to_f32(path, &name, data)?);
    }
    if out.is_empty() {
        return Err(not_checkpoint(path, "no float tensors found"));
    }
    Ok(out)
}

/// Reads every floating-point tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<TensorMap, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| not_checkpoint(path, format!("not a safetensors file: {e}")))?;
    let mut out = TensorMap::new();
    for (name, view) in st.iter() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            safetensors::Dtype::F32 => TensorData::new(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>(),
                shape,
            ),
            safetensors::Dtype::F64 => TensorData::new(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                    .collect::<Vec<_>>(),
                shape,
            ),
            safetensors::Dtype::F16 => TensorData::new(
                raw.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect::<Vec<_>>(),
                shape,
            ),
            safetensors::Dtype::BF16 => TensorData::new(
                raw.chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect::<Vec<_>>(),
                shape,
            ),
            _ => continue,
        };
        out.insert(name.to_string(), data);
    }
    if out.is_empty() {
        return Err(not_checkpoint(path, "no float tensors found"));
    }
    Ok(out)
}
