//! `detr-infer check`: validates a COCO-format dataset and prints its statistics.

use anyhow::{bail, Context, Result};
use clap::Args;
use datasets::validate::{check_split, DatasetStats, ImageCheck};
use datasets::{Layout, SplitPaths};
use std::path::PathBuf;

/// Arguments of `detr-infer check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Dataset folder (standard layout: `train2017/`, `annotations/instances_train2017.json`;
    /// images-dir layout: `images/train2023/`, `annotations/train2023.json`; Roboflow's COCO
    /// export: `train/_annotations.coco.json` with the images beside it).
    #[arg(required_unless_present = "annotations")]
    pub root: Option<PathBuf>,
    /// Split to check (repeatable). Default: every split of the layout's default names found.
    #[arg(long = "split")]
    pub splits: Vec<String>,
    /// Folder layout (detected when omitted).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// An annotation file to check instead of a dataset folder (with `--images`).
    #[arg(long, requires = "images")]
    pub annotations: Option<PathBuf>,
    /// The image folder of `--annotations`.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// How much of each image to check.
    #[arg(long, value_enum, default_value_t = ImageCheck::Header)]
    pub image_check: ImageCheck,
    /// The model's number of queries, compared with the largest number of boxes in an image.
    #[arg(long, default_value_t = 100, value_parser = super::predict_cmd::at_least_one)]
    pub num_queries: usize,
    /// Training batch size: a split with fewer images gives no training step (the last,
    /// incomplete batch is dropped), which is reported.
    #[arg(long, default_value_t = 2, value_parser = super::predict_cmd::at_least_one)]
    pub batch_size: usize,
    /// Problems to print per split (all are counted).
    #[arg(long, default_value_t = 20)]
    pub max_problems: usize,
}

/// Runs the subcommand; fails when a problem was found.
pub fn run(args: CheckArgs) -> Result<()> {
    let targets = split_targets(&args)?;
    let mut total_problems = 0;
    for (name, paths) in &targets {
        let report =
            check_split(paths, args.image_check).with_context(|| format!("split `{name}`"))?;
        print_stats(name, &report.stats, args.num_queries);
        if let Some(warning) = batch_warning(&report.stats, args.batch_size) {
            println!("  warning: {warning}");
            tracing::warn!("split `{name}`: {warning}");
        }
        if report.errors.is_empty() {
            println!("  problems: none");
        } else {
            println!("  problems: {}", report.errors.len());
            for e in report.errors.iter().take(args.max_problems) {
                println!("    - {e}");
            }
            if report.errors.len() > args.max_problems {
                println!(
                    "    ... and {} more",
                    report.errors.len() - args.max_problems
                );
            }
        }
        total_problems += report.errors.len();
        println!();
    }
    if total_problems > 0 {
        bail!("{total_problems} problem(s) found");
    }
    println!("ok: {} split(s) checked, no problem found", targets.len());
    Ok(())
}

/// What to say when the split is too small to train on at `batch_size`.
fn batch_warning(stats: &DatasetStats, batch_size: usize) -> Option<String> {
    if stats.num_images == 0 {
        return Some("the split has no image: it gives no batch".into());
    }
    (stats.num_images < batch_size).then(|| {
        format!(
            "{} image(s), fewer than the batch size {batch_size}: as a training split it gives \
             no step (the incomplete last batch is dropped)",
            stats.num_images
        )
    })
}

fn split_targets(args: &CheckArgs) -> Result<Vec<(String, SplitPaths)>> {
    if let (Some(ann), Some(images)) = (&args.annotations, &args.images) {
        let name = ann
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "split".into());
        return Ok(vec![(name, SplitPaths::new(images, ann))]);
    }
    let root = args
        .root
        .as_ref()
        .context("a dataset folder or --annotations is needed")?;
    let layout = args.layout;
    if !args.splits.is_empty() {
        return args
            .splits
            .iter()
            .map(|s| Ok((s.clone(), SplitPaths::resolve(root, s, layout)?)))
            .collect();
    }
    let found: Vec<(String, SplitPaths)> = datasets::find_splits(root, layout)
        .into_iter()
        .map(|s| (s.name, s.paths))
        .collect();
    if found.is_empty() {
        bail!(
            "{}: no split found (looked for annotations/instances_{{train,val,test}}2017.json, \
             annotations/{{train,val,test}}2023.json and {{train,valid,test}}/_annotations.coco.json); \
             name one with --split",
            root.display()
        );
    }
    Ok(found)
}

fn print_stats(name: &str, s: &DatasetStats, num_queries: usize) {
    println!("split {name}");
    println!("  annotations file: {}", s.annotation_file.display());
    println!("  images folder:    {}", s.images_dir.display());
    println!(
        "  images: {}  (width {}..{}, height {}..{}, mean {:.0}x{:.0})",
        s.num_images,
        s.width_range.0,
        s.width_range.1,
        s.height_range.0,
        s.height_range.1,
        s.mean_size.0,
        s.mean_size.1
    );
    if let Some(m) = s.size_mismatches.first() {
        println!(
            "  images whose file size differs from the JSON: {} (e.g. image id {}: JSON {}x{}, file {}x{}); the file's size is used",
            s.size_mismatches.len(),
            m.image_id,
            m.json.0,
            m.json.1,
            m.file.0,
            m.file.1
        );
    }
    let boxes: usize = s.boxes_per_image.iter().sum();
    println!(
        "  annotations: {}  training boxes: {}  dropped: {} crowd, {} zero-area or outside the image",
        s.num_annotations, boxes, s.dropped.crowd, s.dropped.degenerate
    );
    println!(
        "  images without annotations: {}  without training boxes: {}",
        s.images_without_annotations, s.images_without_boxes
    );
    let max = s.max_boxes_per_image();
    let verdict = if max > num_queries {
        format!("EXCEEDS num_queries {num_queries}: some objects cannot be matched")
    } else {
        format!("<= num_queries {num_queries}")
    };
    println!(
        "  boxes per image: max {max} ({verdict}), mean {:.2}",
        s.mean_boxes_per_image()
    );
    let hist: Vec<String> = s
        .boxes_histogram()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    println!(
        "  boxes-per-image histogram (boxes:images): {}",
        hist.join(" ")
    );
    println!("  annotations per class:");
    println!(
        "    {:>6}  {:<24} {:>11} {:>9}",
        "id", "name", "annotations", "boxes"
    );
    for c in &s.categories {
        println!(
            "    {:>6}  {:<24} {:>11} {:>9}",
            c.id, c.name, c.annotations, c.boxes
        );
    }
    println!(
        "  num_classes: {} (largest category id + 1; the class head has num_classes + 1 outputs)",
        s.num_classes
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::synthetic::{generate, SyntheticOptions};

    fn args(root: &std::path::Path, image_check: ImageCheck) -> CheckArgs {
        CheckArgs {
            root: Some(root.to_path_buf()),
            splits: vec![],
            layout: None,
            annotations: None,
            images: None,
            image_check,
            num_queries: 100,
            batch_size: 2,
            max_problems: 20,
        }
    }

    #[test]
    fn checks_a_synthetic_dataset_and_reports_problems() {
        let dir = std::env::temp_dir().join(format!("detr-infer-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = generate(
            &dir,
            &SyntheticOptions {
                train_images: 4,
                val_images: 2,
                min_image_size: 32,
                max_image_size: 40,
                ..Default::default()
            },
        )
        .unwrap();
        run(args(&dir, ImageCheck::Decode)).unwrap();
        // A corrupt image is a problem, and the command fails.
        std::fs::write(d.val().images_dir.join("000000000002.png"), b"garbage").unwrap();
        let err = run(args(&dir, ImageCheck::Decode)).unwrap_err().to_string();
        assert!(err.contains("1 problem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
