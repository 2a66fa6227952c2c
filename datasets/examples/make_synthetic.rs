//! Writes a synthetic shapes dataset (COCO format) to a folder.
//!
//! ```text
//! cargo run -p datasets --example make_synthetic -- OUT_DIR [--train 512] [--val 64]
//!     [--seed 0] [--layout standard|images-dir|roboflow] [--min-size 128] [--max-size 192]
//!     [--max-objects 4] [--jpeg QUALITY]
//! ```

use datasets::synthetic::{generate, ImageFormat, SyntheticOptions};
use datasets::Layout;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut o = SyntheticOptions::default();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--train" => o.train_images = val()?.parse()?,
            "--val" => o.val_images = val()?.parse()?,
            "--seed" => o.seed = val()?.parse()?,
            "--layout" => o.layout = val()?.parse::<Layout>()?,
            "--min-size" => o.min_image_size = val()?.parse()?,
            "--max-size" => o.max_image_size = val()?.parse()?,
            "--max-objects" => o.max_objects = val()?.parse()?,
            "--jpeg" => {
                o.format = ImageFormat::Jpeg {
                    quality: val()?.parse()?,
                }
            }
            s if !s.starts_with("--") && out.is_none() => out = Some(s.to_string()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let out = out.ok_or("usage: make_synthetic OUT_DIR [options]")?;
    let t = std::time::Instant::now();
    let d = generate(&out, &o)?;
    for (name, paths, images, anns) in &d.splits {
        println!(
            "{name}: {images} images, {anns} annotations -> {} ({})",
            paths.images_dir.display(),
            paths.annotation_file.display()
        );
    }
    println!(
        "num_classes {} ; {:.1}s",
        d.num_classes,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
