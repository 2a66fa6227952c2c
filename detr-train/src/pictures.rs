//! Validation images with the model's predictions drawn, written at the end of a run (and by
//! `--eval`): the quickest way to see what a detector has learned.
//!
//! Each picture shows the ground-truth boxes as thin white outlines and the predictions whose
//! score reaches `--vis_threshold` in their class colour with name and score. Small images are
//! enlarged (nearest neighbour) so that the captions stay readable.

use std::path::{Path, PathBuf};

use datasets::transforms::ValidationTransform;
use datasets::CocoSplit;
use detr_infer::draw::{draw_detections_mut, BoxAnnotation, DrawStyle};
use detr_infer::labels::Labels;
use detr_infer::predict::Predictor;
use detr_model::{Detr, DetrBackend};
use image::{imageops, Rgb, RgbImage};

use crate::error::TrainError;

/// Pictures are enlarged until their shorter side reaches this many pixels.
const MIN_PICTURE_SIDE: u32 = 384;

/// Draws the model's predictions on the first `count` images of `val` and writes them as
/// `dir/val_<image id>.png`; returns the paths written. The validation pipeline of `val`
/// prepares the inputs, so the model sees exactly what the evaluation saw.
pub fn write_validation_pictures<B: DetrBackend>(
    model: &Detr<B>,
    device: &B::Device,
    val: &CocoSplit,
    dir: &Path,
    count: usize,
    threshold: f32,
) -> Result<Vec<PathBuf>, TrainError> {
    if count == 0 || val.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let labels = Labels::from_ids(
        val.categories()
            .iter()
            .map(|c| (c.id as usize, c.name.clone())),
    );
    let predictor = Predictor::new(
        model.clone(),
        device.clone(),
        ValidationTransform::default(),
    );
    let mut written = Vec::new();
    for (index, record) in val.records().iter().take(count).enumerate() {
        let image = datasets::dataset::decode_rgb(&record.path, record.id)?;
        let item = val.load(index, 0)?;
        let Some(prediction) = predictor.predict_items(vec![item], false).pop() else {
            continue;
        };
        let scale = enlargement(image.width(), image.height());
        let mut picture = imageops::resize(
            &image,
            image.width() * scale,
            image.height() * scale,
            imageops::FilterType::Nearest,
        );
        let s = scale as f32;
        let mut boxes: Vec<BoxAnnotation> = record
            .annotations
            .iter()
            .map(|a| {
                let [x, y, w, h] = a.bbox;
                BoxAnnotation::new(
                    [
                        x as f32 * s,
                        y as f32 * s,
                        (x + w) as f32 * s,
                        (y + h) as f32 * s,
                    ],
                    "",
                    None,
                )
                .with_color(Rgb([255, 255, 255]))
            })
            .collect();
        boxes.extend(prediction.kept(threshold).into_iter().map(|d| {
            let [x0, y0, x1, y1] = d.xyxy;
            BoxAnnotation::new(
                [x0 * s, y0 * s, x1 * s, y1 * s],
                labels.name(d.label),
                Some(d.score),
            )
        }));
        let style = DrawStyle::for_size(picture.width(), picture.height());
        let gt = boxes.iter().take_while(|b| b.label.is_empty()).count();
        // Ground truth thin, predictions at the picture's normal thickness.
        draw_detections_mut(
            &mut picture,
            &boxes[..gt],
            DrawStyle {
                thickness: 1,
                ..style
            },
        );
        draw_detections_mut(&mut picture, &boxes[gt..], style);
        let path = dir.join(format!("val_{}.png", record.id));
        save_png(&picture, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// The integer factor that brings the shorter side to at least [`MIN_PICTURE_SIDE`].
fn enlargement(width: u32, height: u32) -> u32 {
    let short = width.min(height).max(1);
    MIN_PICTURE_SIDE.div_ceil(short).max(1)
}

fn save_png(picture: &RgbImage, path: &Path) -> Result<(), TrainError> {
    let mut png = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| TrainError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    detr_model::weights::native::write_atomic(path, png.get_ref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::enlargement;

    #[test]
    fn small_images_are_enlarged_to_readable_pictures() {
        assert_eq!(enlargement(128, 160), 3);
        assert_eq!(enlargement(640, 480), 1);
        assert_eq!(enlargement(0, 0), 384);
    }
}
