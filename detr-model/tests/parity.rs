//! Numerical parity with an independent PyTorch DETR (fixtures from `tools/make_model_fixture.py`).
//!
//! Tolerance: `‖ours − torch‖∞ / ‖torch‖∞ ≤ 1e-4` for the logits and boxes of every decoder
//! layer (float32 on both sides; the float32 noise floor is about 1e-5 at this size).
//! The official `.pth`, the Hugging Face safetensors and a native record made from them must
//! give identical outputs.

pub(crate) mod common;

use burn::tensor::backend::Backend;
use common::*;
use detr_model::weights::{load_checkpoint, save_record, LoadOptions, WeightFormat};
use detr_model::{Detr, DetrConfig};

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 2] = ["tiny_r18", "tiny_r50dc5"];

fn config(name: &str) -> DetrConfig {
    DetrConfig::from_json_file(&fixtures().join(format!("{name}.json"))).expect("fixture config")
}

fn load<B: Backend>(name: &str, file: &str, format: WeightFormat, device: &B::Device) -> Detr<B> {
    let model = config(name).init::<B>(device).unwrap();
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    let (model, report) = load_checkpoint(model, &fixtures().join(file), format, strict).unwrap();
    assert!(report.is_complete(), "{file}: {report}");
    model
}

fn outputs<B: detr_model::DetrBackend>(
    model: &Detr<B>,
    name: &str,
    k: usize,
    device: &B::Device,
) -> (Vec<f32>, Vec<f32>) {
    let io = read_io(&format!("{name}_io.safetensors"));
    let out = model.forward(
        float(&io, &format!("images_{k}"), device),
        mask(&io, &format!("mask_{k}"), device),
    );
    (to_vec(out.logits), to_vec(out.boxes))
}

fn check_against_torch<B: detr_model::DetrBackend>(name: &str, device: &B::Device) {
    let model = load::<B>(name, &format!("{name}.pth"), WeightFormat::DetrPth, device);
    let io = read_io(&format!("{name}_io.safetensors"));
    for k in 0..2 {
        let images = float::<B, 4>(&io, &format!("images_{k}"), device);
        let m = mask::<B, 3>(&io, &format!("mask_{k}"), device);
        let inter = model.forward_intermediates(images, m);
        let expect = |key: &str| match io.get(&format!("{key}_{k}")) {
            Some(Raw::F32(v, _)) => v.clone(),
            _ => panic!("missing {key}_{k}"),
        };
        // Diagnostics first, so a failure says where the outputs start to differ.
        let features = rel_err(&to_vec(inter.features), &expect("features"));
        let pos = rel_err(&to_vec(inter.pos), &expect("pos"));
        let memory = rel_err(&to_vec(inter.memory.swap_dims(0, 1)), &expect("memory"));
        let hs = rel_err(&to_vec(inter.hs), &expect("hs"));
        let logits = rel_err(&to_vec(inter.output.logits), &expect("logits"));
        let boxes = rel_err(&to_vec(inter.output.boxes), &expect("boxes"));
        eprintln!("{name} batch {k}: features {features:.2e} pos {pos:.2e} memory {memory:.2e} hs {hs:.2e} logits {logits:.2e} boxes {boxes:.2e}");
        assert!(
            features < TOL && pos < TOL && memory < TOL && hs < TOL,
            "{name} batch {k}: intermediates differ"
        );
        assert!(logits < TOL, "{name} batch {k}: logits rel err {logits}");
        assert!(boxes < TOL, "{name} batch {k}: boxes rel err {boxes}");
    }
}

#[test]
fn flex_matches_pytorch() {
    for name in FIXTURES {
        check_against_torch::<burn::backend::Flex>(name, &Default::default());
    }
}

#[test]
fn ndarray_matches_pytorch() {
    check_against_torch::<burn::backend::NdArray>("tiny_r18", &Default::default());
}

/// burn-wgpu (fused, autotuned), on any Vulkan/Metal/DX12 device; CI runs it on Mesa's
/// llvmpipe. Same tolerance as flex.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_pytorch() {
    check_against_torch::<burn::backend::Wgpu>("tiny_r18", &Default::default());
}

/// The bottleneck (R50, DC5) fixture on burn-wgpu. Known failure on llvmpipe with burn-cubecl
/// 0.21 (docs/performance.md, "GPU backends"): `layer1`'s first block, 8-channel 1×1
/// convolutions at 32×40, gives wrong values. Run with `--ignored` to check a fix.
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "known burn-cubecl 0.21 failure in layer1 of tiny_r50dc5 on llvmpipe"]
fn wgpu_matches_pytorch_r50dc5() {
    check_against_torch::<burn::backend::Wgpu>("tiny_r50dc5", &Default::default());
}

#[test]
fn official_pth_hf_safetensors_and_native_record_agree() {
    type B = burn::backend::Flex;
    let device = Default::default();
    for name in FIXTURES {
        let pth = load::<B>(name, &format!("{name}.pth"), WeightFormat::Auto, &device);
        // Hugging Face's DETR is post-norm only: the pre-norm fixture has no HF file.
        let hf_file = format!("{name}_hf.safetensors");
        let hf = fixtures()
            .join(&hf_file)
            .exists()
            .then(|| load::<B>(name, &hf_file, WeightFormat::Auto, &device));
        let dir = std::env::temp_dir().join(format!(
            "detr-model-roundtrip-{}-{name}",
            std::process::id()
        ));
        let record = dir.join("model.mpk");
        save_record(&pth, &config(name), &record).unwrap();
        let native = load::<B>(name, record.to_str().unwrap(), WeightFormat::Burn, &device);
        let _ = std::fs::remove_dir_all(&dir);
        for k in 0..2 {
            let a = outputs(&pth, name, k, &device);
            if let Some(hf) = &hf {
                assert_eq!(
                    a,
                    outputs(hf, name, k, &device),
                    "{name}: pth and HF safetensors differ"
                );
            }
            let c = outputs(&native, name, k, &device);
            assert_eq!(a, c, "{name}: pth and native record differ");
        }
    }
}
