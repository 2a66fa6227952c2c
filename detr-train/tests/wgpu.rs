//! Every wgpu test of detr-train in one test binary (`--features wgpu`; CI runs it on Mesa's
//! llvmpipe): one binary monomorphised over `Fusion<CubeBackend<WgpuRuntime>>` instead of one
//! per file keeps CI's build time down. Run: `cargo test -p detr-train --features wgpu --test
//! wgpu -- wgpu --test-threads=1` (the filter skips the flex cases `criterion_parity` brings).
#![cfg(feature = "wgpu")]

#[path = "criterion_parity.rs"]
mod criterion_parity;
#[path = "wgpu/training.rs"]
mod training;
