//! Every wgpu test in one binary (`--features wgpu`; CI runs it on Mesa's llvmpipe). Each
//! test binary monomorphises the model, the training step and inference over
//! `Fusion<CubeBackend<WgpuRuntime>>`, the most expensive code there is to compile, so there
//! is one such binary in the workspace. It includes the parity tests of the other crates
//! (their `wgpu_*` cases; the CPU cases they bring are filtered out by `-- wgpu`) and the
//! binaries' `main.rs`, which `wgpu/cli.rs` runs in child processes.
//!
//! Run: `CUBECL_AUTOTUNE_LEVEL=minimal cargo test -p gpu-tests --features wgpu --test wgpu --
//! wgpu --test-threads=1`.
#![cfg(feature = "wgpu")]

#[path = "wgpu/model.rs"]
mod model;
#[path = "../../detr-model/tests/parity.rs"]
mod model_parity;

#[path = "../../detr-train/tests/criterion_parity.rs"]
mod criterion_parity;
#[path = "wgpu/training.rs"]
mod training;

#[path = "../../detr-infer/tests/predict_parity.rs"]
mod predict_parity;

#[path = "wgpu/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../../detr-infer/src/main.rs"]
mod detr_infer_main;
#[allow(dead_code)]
#[path = "../../detr-train/src/main.rs"]
mod detr_train_main;
