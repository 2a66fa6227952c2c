//! The backend chosen at run time: flex and ndarray (CPU) are always built; wgpu and cuda
//! when the crate is built with the `wgpu` / `cuda` cargo features.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::error::{InferError, Result};

/// A Burn backend selectable with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// burn-flex on the CPU (the default; far faster convolutions than ndarray).
    #[default]
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-wgpu (Vulkan, Metal, DX12); needs the `wgpu` feature.
    Wgpu,
    /// burn-cuda (NVIDIA); needs the `cuda` feature.
    Cuda,
}

impl BackendKind {
    /// All kinds, in the order of `--help`.
    pub const ALL: [BackendKind; 4] = [Self::Flex, Self::Ndarray, Self::Wgpu, Self::Cuda];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with this backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex | Self::Ndarray => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = InferError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                InferError::Config(format!(
                    "unknown backend `{s}` (expected flex, ndarray, wgpu or cuda)"
                ))
            })
    }
}

/// Work that is generic over the backend; [`run_on`] picks the backend at run time.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` with its default device.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `task` on the backend `kind` (default device). Fails when the backend was not
/// compiled into this build.
pub fn run_on<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output> {
    match kind {
        BackendKind::Flex => Ok(task.run::<burn::backend::Flex>(Default::default())),
        BackendKind::Ndarray => Ok(task.run::<burn::backend::NdArray>(Default::default())),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Ok(task.run::<burn::backend::Wgpu>(Default::default())),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(task.run::<burn::backend::Cuda>(Default::default())),
        #[allow(unreachable_patterns)]
        other => Err(InferError::Config(format!(
            "backend `{other}` is not part of this build: rebuild with `--features {other}`"
        ))),
    }
}
