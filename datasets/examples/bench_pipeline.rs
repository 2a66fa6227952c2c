//! Throughput of the data pipeline (decode + DETR's train augmentation + normalise + pad +
//! batch to a Flex tensor) in images/s on 640x480 JPEGs, with 1 and 2 worker threads; and, when
//! torch is installed, torchvision's `CocoDetection` with DETR's transforms on the same images
//! (`tools/bench_data_pipeline.py`).
//!
//! ```text
//! cargo run --release -p datasets --example bench_pipeline -- [--images 200] [--batch 2]
//!     [--workers 1,2] [--dir /tmp/detr-bench] [--no-torch] [--transforms train|val]
//!
//! cargo run --release -p datasets --example bench_pipeline -- --parse-json FILE
//! ```
//!
//! `--parse-json` only times `CocoFile::load` on a (large) annotation file and reports the
//! process's peak memory.

use burn::backend::Flex;
use burn::data::dataloader::DataLoader;
use datasets::synthetic::{generate, ImageFormat, SyntheticOptions};
use datasets::{CocoSplit, DetrDataLoader, Layout, LoaderConfig, OpenOptions, TransformConfig};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut images = 200usize;
    let mut batch = 2usize;
    let mut workers = vec![1usize, 2];
    let mut dir = std::env::temp_dir().join("detr-bench-640x480");
    let mut torch = true;
    let mut transforms = "train".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--images" => images = val()?.parse()?,
            "--batch" => batch = val()?.parse()?,
            "--workers" => {
                workers = val()?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            "--dir" => dir = PathBuf::from(val()?),
            "--transforms" => transforms = val()?,
            "--no-torch" => torch = false,
            "--parse-json" => return parse_json(&val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let opts = SyntheticOptions {
        seed: 1,
        layout: Layout::Standard,
        train_images: images,
        val_images: 1,
        exact_size: Some((640, 480)),
        min_objects: 1,
        max_objects: 8,
        min_object_frac: 0.05,
        max_object_frac: 0.4,
        format: ImageFormat::Jpeg { quality: 90 },
        ..Default::default()
    };
    let t0 = Instant::now();
    let data = generate(&dir, &opts)?;
    println!(
        "generated {images} 640x480 JPEGs in {:.1}s under {}",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    let cfg = TransformConfig::detr();
    let pipeline = match transforms.as_str() {
        "val" => cfg.val(),
        _ => cfg.train(),
    };
    println!(
        "rust: decode + DETR {transforms} transforms + normalise + pad + Flex tensor, batch {batch}"
    );
    for &w in &workers {
        let ds = CocoSplit::open(data.train(), pipeline.clone(), &OpenOptions::default())?;
        let loader = DetrDataLoader::<Flex>::new(
            ds,
            LoaderConfig {
                batch_size: batch,
                shuffle: Some(0),
                drop_last: false,
                num_workers: w,
                prefetch: 2,
                shard: None,
            },
            Default::default(),
        )?;
        let t = Instant::now();
        let mut n = 0;
        for b in loader.iter() {
            n += b.targets.len();
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "  workers {w}: {n} images in {s:.2}s = {:.1} images/s",
            n as f64 / s
        );
    }
    if torch {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/bench_data_pipeline.py");
        let ws: Vec<String> = workers.iter().map(|w| w.to_string()).collect();
        let status = std::process::Command::new("python3")
            .arg(&script)
            .arg("--root")
            .arg(&dir)
            .arg("--split")
            .arg("train2017")
            .arg("--batch")
            .arg(batch.to_string())
            .arg("--transforms")
            .arg(&transforms)
            .arg("--workers")
            .args(&ws)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => println!("torchvision benchmark skipped or failed ({s})"),
            Err(e) => println!("torchvision benchmark not run: {e}"),
        }
    }
    Ok(())
}

fn parse_json(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let size = std::fs::metadata(path)?.len();
    let t = Instant::now();
    let coco = datasets::CocoFile::load(path)?;
    let s = t.elapsed().as_secs_f64();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.to_string())
        })
        .unwrap_or_else(|| "VmHWM: unknown".into());
    println!(
        "parsed {path} ({:.0} MB): {} images, {} annotations, {} categories in {s:.2}s; peak memory {}",
        size as f64 / 1e6,
        coco.images.len(),
        coco.annotations.len(),
        coco.categories.len(),
        peak.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}
