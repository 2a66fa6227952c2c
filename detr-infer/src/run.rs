//! `predict` over files: decode, predict in batches, write pictures and `predictions.json`,
//! time every image, and keep going past unreadable images.

use detr_model::DetrBackend;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datasets::dataset::decode_rgb;
use image::RgbImage;

use crate::draw::{draw_detections_mut, DrawStyle};
use crate::error::{InferError, Result};
use crate::inputs::InputImage;
use crate::labels::Labels;
use crate::output::{
    annotations, detections_picture, records_for, save_picture, write_records, PredictionRecord,
};
use crate::predict::{Prediction, Predictor};

/// File name of the predictions inside the output folder.
pub const PREDICTIONS_FILE: &str = "predictions.json";

/// Options of [`predict_files`].
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// Keep detections with a score at least this (`0` keeps every query).
    pub threshold: f32,
    /// Images per forward pass (padded together; 1 gives the unpadded results).
    pub batch_size: usize,
    /// Also write a heat map of the last decoder layer's cross-attention per detection.
    pub attention: bool,
    /// Output folder (created if needed).
    pub out_dir: PathBuf,
    /// Write the pictures (`predictions.json` is always written).
    pub pictures: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            threshold: 0.7,
            batch_size: 1,
            attention: false,
            out_dir: PathBuf::from("predictions"),
            pictures: true,
        }
    }
}

/// What happened to one image that was predicted.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageReport {
    /// The input.
    pub input: InputImage,
    /// Original `[height, width]`.
    pub orig_size: [usize; 2],
    /// Network input `[height, width]` (before batch padding).
    pub input_size: [usize; 2],
    /// Detections kept by the threshold.
    pub detections: usize,
    /// Seconds of preprocessing, forward pass and post-processing (a batch's time divided
    /// among its images).
    pub inference_seconds: f64,
    /// Pictures written for this image.
    pub pictures: Vec<PathBuf>,
}

/// An image that could not be read, predicted or written, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFailure {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// The outcome of [`predict_files`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PredictReport {
    /// Images predicted, in input order.
    pub images: Vec<ImageReport>,
    /// Images that failed (the others still ran).
    pub failures: Vec<ImageFailure>,
    /// Every kept detection (also written to `predictions.json`).
    pub records: Vec<PredictionRecord>,
    /// Where the predictions were written.
    pub predictions_path: PathBuf,
    /// Wall time of the whole run in seconds (decoding, inference, drawing, writing).
    pub total_seconds: f64,
    /// Sum of the images' inference times.
    pub inference_seconds: f64,
}

/// Predicts on every input, writing `out_dir/predictions.json` and the pictures. Images that
/// cannot be decoded (or whose pictures cannot be written) are listed in
/// [`PredictReport::failures`] and the others still run; `on_image` is called after each
/// image. Only a problem with the output folder or `predictions.json` is an error.
pub fn predict_files<B: DetrBackend>(
    predictor: &Predictor<B>,
    labels: &Labels,
    inputs: &[InputImage],
    options: &PredictOptions,
    mut on_image: impl FnMut(&ImageReport),
) -> Result<PredictReport> {
    if options.batch_size == 0 {
        return Err(InferError::Config("--batch-size must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&options.threshold) {
        return Err(InferError::Config(format!(
            "--threshold {} is outside 0..=1 (scores are probabilities; 0 keeps every query)",
            options.threshold
        )));
    }
    if options.out_dir.exists() && !options.out_dir.is_dir() {
        return Err(InferError::Config(format!(
            "--out {}: an existing file, not a folder",
            options.out_dir.display()
        )));
    }
    let start = Instant::now();
    std::fs::create_dir_all(&options.out_dir).map_err(|e| InferError::io(&options.out_dir, e))?;
    let mut report = PredictReport {
        predictions_path: options.out_dir.join(PREDICTIONS_FILE),
        ..Default::default()
    };
    let mut pending: Vec<(&InputImage, RgbImage)> = Vec::with_capacity(options.batch_size);
    let mut queue = inputs.iter().peekable();
    while queue.peek().is_some() || !pending.is_empty() {
        // Fill a batch with images that decode; report the others.
        while pending.len() < options.batch_size {
            let Some(input) = queue.next() else { break };
            match decode_rgb(&input.path, input.image_id) {
                Ok(img) => pending.push((input, img)),
                Err(e) => {
                    tracing::warn!("{}: cannot read the image: {e}", input.display_name());
                    report.failures.push(ImageFailure {
                        path: input.path.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        let batch: Vec<(&InputImage, RgbImage)> = std::mem::take(&mut pending);
        let images: Vec<RgbImage> = batch.iter().map(|(_, im)| im.clone()).collect();
        let t0 = Instant::now();
        let predictions = predictor.predict(&images, options.attention);
        let per_image = t0.elapsed().as_secs_f64() / batch.len() as f64;
        for ((input, image), prediction) in batch.into_iter().zip(predictions) {
            match finish_image(input, &image, &prediction, labels, options, per_image) {
                Ok((image_report, records)) => {
                    report.inference_seconds += per_image;
                    report.records.extend(records);
                    on_image(&image_report);
                    report.images.push(image_report);
                }
                Err(e) => {
                    tracing::warn!("{}: {e}", input.display_name());
                    report.failures.push(ImageFailure {
                        path: input.path.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    write_records(&report.predictions_path, &report.records)?;
    report.total_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Records and pictures of one predicted image.
fn finish_image(
    input: &InputImage,
    image: &RgbImage,
    prediction: &Prediction,
    labels: &Labels,
    options: &PredictOptions,
    inference_seconds: f64,
) -> Result<(ImageReport, Vec<PredictionRecord>)> {
    let kept = prediction.kept(options.threshold);
    let records = records_for(&input.display_name(), input.image_id, &kept)?;
    let mut pictures = Vec::new();
    if options.pictures {
        let path = options
            .out_dir
            .join(format!("{}_pred.jpg", input.output_stem));
        save_picture(&detections_picture(image, &kept, labels), &path)?;
        pictures.push(path);
        if let Some(maps) = prediction.attention.as_ref().filter(|_| options.attention) {
            let boxes = annotations(&kept, labels);
            let style = DrawStyle::for_size(image.width(), image.height());
            for (rank, (det, annotation)) in kept.iter().zip(boxes).enumerate() {
                let mut heat = maps.overlay(det.query, image, 0.6);
                draw_detections_mut(&mut heat, &[annotation], style);
                let path = attention_path(&options.out_dir, input, rank, &labels.name(det.label));
                save_picture(&heat, &path)?;
                pictures.push(path);
            }
        }
    }
    Ok((
        ImageReport {
            input: input.clone(),
            orig_size: prediction.orig_size,
            input_size: prediction.input_size,
            detections: kept.len(),
            inference_seconds,
            pictures,
        },
        records,
    ))
}

/// `DIR/<stem>_attn<rank>_<class>.jpg`, rank counted from 0 in score order.
fn attention_path(dir: &Path, input: &InputImage, rank: usize, class: &str) -> PathBuf {
    let class: String = class
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    dir.join(format!("{}_attn{rank:02}_{class}.jpg", input.output_stem))
}
