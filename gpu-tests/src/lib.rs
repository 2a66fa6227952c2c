//! No library: this crate holds the GPU backends' tests (`tests/wgpu.rs`), which build the
//! workspace once with the `wgpu` feature. Run them with
//! `CUBECL_AUTOTUNE_LEVEL=minimal cargo test -p gpu-tests --features wgpu --test wgpu -- wgpu
//! --test-threads=1` (docs/performance.md, "wgpu on llvmpipe").
