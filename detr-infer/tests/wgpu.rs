//! Every wgpu test of detr-infer in one test binary (`--features wgpu`; CI runs it on Mesa's
//! llvmpipe): the padded-batch prediction parity and `detr-infer predict --backend wgpu`.
//! Run: `cargo test -p detr-infer --features wgpu --test wgpu -- wgpu --test-threads=1` (the
//! filter skips the flex cases `predict_parity` brings).
#![cfg(feature = "wgpu")]

#[path = "wgpu/cli.rs"]
mod cli;
#[path = "predict_parity.rs"]
mod predict_parity;
