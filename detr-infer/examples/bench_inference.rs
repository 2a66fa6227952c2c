//! Benchmark (not a test): DETR-R50 inference on one 1066×800 image (network input 800×1066,
//! DETR's validation size for a 4:3 photo), through `Predictor::predict` (resize check,
//! normalisation, forward pass, PostProcess, host transfer), on a CPU backend; then the
//! PyTorch reference network (tools/bench_inference.py) with the same input size and thread
//! count when `python3` with torch is installed.
//!
//! ```sh
//! cargo run --release -p detr-infer --example bench_inference -- [--runs 3] [--backend flex]
//!     [--threads N] [--no-torch] [--default-allocator]
//! ```
//!
//! `--default-allocator` leaves glibc's allocator as it is (`detr_model::backend::cpu_memory`;
//! the binaries configure it).
//!
//! Weights are random (the preset's initialisation): the time does not depend on them.

use std::process::Command;
use std::time::Instant;

use datasets::transforms::ValidationTransform;
use detr_infer::backend::{run_on, BackendKind, BackendTask};
use detr_infer::model::resolve_config;
use detr_infer::predict::Predictor;
use detr_model::DetrBackend;
use image::{Rgb, RgbImage};

const WIDTH: u32 = 1066;
const HEIGHT: u32 = 800;

struct Bench {
    runs: usize,
    attention: bool,
}

impl BackendTask for Bench {
    type Output = Result<Vec<f64>, String>;

    fn run<B: DetrBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = devices.into_iter().next().unwrap_or_default();
        let config = resolve_config(Some("r50"), None, None).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let model = config.init::<B>(&device).map_err(|e| e.to_string())?;
        eprintln!("r50 built in {:.1} s", t.elapsed().as_secs_f64());
        let predictor = Predictor::new(model, device, ValidationTransform::default());
        let image = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
            Rgb([
                (x % 256) as u8,
                (y % 256) as u8,
                ((x * 7 + y * 13) % 256) as u8,
            ])
        });
        let mut times = Vec::new();
        for i in 0..=self.runs {
            let t = Instant::now();
            let p = predictor.predict(std::slice::from_ref(&image), self.attention);
            let s = t.elapsed().as_secs_f64();
            assert_eq!(p[0].input_size, [800, 1066]);
            eprintln!(
                "run {i}{}: {s:.3} s",
                if i == 0 { " (warm-up)" } else { "" }
            );
            if i > 0 {
                times.push(s);
            }
        }
        Ok(times)
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // As the detr-infer binary runs; `--default-allocator` leaves glibc's settings as they are.
    if !args.iter().any(|a| a == "--default-allocator") {
        detr_model::backend::cpu_memory::retain_freed_memory();
    }
    let runs = arg(&args, "--runs").unwrap_or(3usize).max(1);
    let backend: BackendKind = arg(&args, "--backend").unwrap_or_default();
    let threads = arg(&args, "--threads").unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let attention = args.iter().any(|a| a == "--attention");
    println!("DETR-R50 inference, one {WIDTH}x{HEIGHT} image (input 800x1066), {threads} CPU threads available");
    match run_on(backend, Bench { runs, attention }) {
        Ok(Ok(times)) => {
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let min = times.iter().copied().fold(f64::INFINITY, f64::min);
            println!("burn {backend}: mean {mean:.3} s, min {min:.3} s over {runs} runs");
        }
        Ok(Err(e)) => eprintln!("burn {backend}: {e}"),
        Err(e) => eprintln!("burn {backend}: {e}"),
    }
    if args.iter().any(|a| a == "--no-torch") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/bench_inference.py");
    match Command::new("python3")
        .arg(script)
        .args([
            "--runs",
            &runs.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
    {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "PyTorch: not run ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        ),
        Err(e) => println!("PyTorch: not run (python3: {e})"),
    }
}
