//! Full-size parity check of DETR-R50 against the PyTorch reference (not run by CI).
//!
//! ```sh
//! python tools/make_model_fixture.py --r50 /tmp/r50fix --float64-check
//! cargo run --release -p detr-model --example parity_r50 -- /tmp/r50fix
//! ```
//! Prints the max-norm relative error of every intermediate and of the logits and boxes of all
//! six decoder layers, for the official `.pth` and the Hugging Face safetensors, and exits
//! non-zero when the logits or boxes differ by more than 1e-4 (the tiny fixtures' tolerance).
//!
//! `--backend flex` (default), `ndarray`, or `wgpu` / `cuda` when built with that feature
//! (`tools/cuda_check.sh` runs it on CUDA).

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Bool, Tensor, TensorData};
use detr_model::weights::{load_checkpoint, LoadOptions, WeightFormat};
use detr_model::DetrConfig;

/// The tolerance of the logits and boxes (max-norm relative error), as in `tests/parity.rs`.
const TOL: f32 = 1e-4;

fn read(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<u8>, Vec<usize>, safetensors::Dtype)> {
    let bytes = std::fs::read(dir.join("r50_io.safetensors")).expect("r50_io.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                (v.data().to_vec(), v.shape().to_vec(), v.dtype()),
            )
        })
        .collect()
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    d / b.iter().map(|y| y.abs()).fold(1e-12, f32::max)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map_or("flex", |s| s.as_str());
    let dir = PathBuf::from(
        args.iter()
            .enumerate()
            .find(|&(i, a)| !a.starts_with("--") && (i == 0 || args[i - 1] != "--backend"))
            .map(|(_, a)| a.clone())
            .expect("usage: parity_r50 DIR [--backend flex|ndarray|wgpu|cuda]"),
    );
    println!("backend {backend}");
    let worst = match backend {
        "flex" => check::<burn::backend::Flex>(&dir),
        "ndarray" => check::<burn::backend::NdArray>(&dir),
        #[cfg(feature = "wgpu")]
        "wgpu" => check::<burn::backend::Wgpu>(&dir),
        #[cfg(feature = "cuda")]
        "cuda" => check::<burn::backend::Cuda>(&dir),
        other => {
            eprintln!("backend `{other}` is not part of this build");
            std::process::exit(2)
        }
    };
    if worst <= TOL {
        println!("PASS: logits and boxes within {TOL:.0e} of PyTorch (worst {worst:.2e})");
    } else {
        println!("FAIL: logits or boxes differ from PyTorch by {worst:.2e} > {TOL:.0e}");
        std::process::exit(1);
    }
}

/// Runs both checkpoint files on backend `B`; returns the worst logits/boxes error.
fn check<B: detr_model::DetrBackend>(dir: &std::path::Path) -> f32 {
    let device = Default::default();
    let mut worst = 0f32;
    let cfg = DetrConfig::from_json_file(&dir.join("r50.json")).expect("r50.json");
    let io = read(dir);
    let (img, ishape, _) = &io["images_0"];
    let (m, mshape, _) = &io["mask_0"];
    for file in ["r50.pth", "r50_hf.safetensors"] {
        let t = Instant::now();
        let model = cfg.init::<B>(&device).unwrap();
        let opts = LoadOptions {
            strict: true,
            reinit_class_head: false,
        };
        let (model, report) =
            load_checkpoint(model, &dir.join(file), WeightFormat::Auto, opts).unwrap();
        println!(
            "{file}: {} tensors loaded in {:.1}s",
            report.loaded.len(),
            t.elapsed().as_secs_f32()
        );
        let images = Tensor::<B, 4>::from_data(TensorData::new(f32s(img), ishape.clone()), &device);
        let mask = Tensor::<B, 3, Bool>::from_data(
            TensorData::new(
                m.iter().map(|&x| x != 0).collect::<Vec<_>>(),
                mshape.clone(),
            ),
            &device,
        );
        let t = Instant::now();
        let out = model.forward_intermediates(images, mask);
        let v = |t: Tensor<B, 4>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        let logits = v(out.output.logits.clone());
        println!(
            "  forward {:?} in {:.1}s (the first includes kernel compilation on a GPU)",
            ishape,
            t.elapsed().as_secs_f32()
        );
        let e = |k: &str| f32s(&io[k].0);
        println!("  features {:.2e}", rel(&v(out.features), &e("features_0")));
        println!("  pos      {:.2e}", rel(&v(out.pos), &e("pos_0")));
        let mem = out
            .memory
            .swap_dims(0, 1)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap();
        println!("  memory   {:.2e}", rel(&mem, &e("memory_0")));
        println!("  hs       {:.2e}", rel(&v(out.hs), &e("hs_0")));
        let logits_err = rel(&logits, &e("logits_0"));
        let boxes_err = rel(&v(out.output.boxes), &e("boxes_0"));
        println!("  logits   {logits_err:.2e} (all 6 layers)");
        println!("  boxes    {boxes_err:.2e} (all 6 layers)");
        worst = worst.max(logits_err).max(boxes_err);
        if !(logits_err.is_finite() && boxes_err.is_finite()) {
            worst = f32::INFINITY;
        }
    }
    worst
}
