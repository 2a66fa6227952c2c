//! Predictions of the tiny_r18 model from the official `.pth` layout and from the same
//! weights in Hugging Face's safetensors layout are identical, and equal PyTorch's
//! post-processed detections (tools/make_infer_fixture.py: PIL resize, the reference network,
//! the original's PostProcess) within 1e-4: scores absolutely, box coordinates relative to the
//! image size (float32 noise of these outputs is about 1e-6), labels exactly. Also the
//! last decoder layer's cross-attention maps, cut to each image's un-padded feature map.

pub(crate) mod common;

use burn::backend::Flex;
use common::{fixture, fixtures, model_fixtures, FixturePrediction};
use datasets::dataset::decode_rgb;
use datasets::transforms::ValidationTransform;
use detr_infer::model::{load_model, resolve_config};
use detr_infer::predict::{Prediction, Predictor};
use detr_model::weights::WeightFormat;
use image::RgbImage;

fn predictor_on<B: detr_model::DetrBackend>(file: &str, format: WeightFormat) -> Predictor<B> {
    let fx = fixture();
    let config = resolve_config(None, Some(&model_fixtures().join("tiny_r18.json")), None).unwrap();
    let device = Default::default();
    let (model, report) =
        load_model::<B>(&config, &model_fixtures().join(file), format, &device).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report}"
    );
    let pre = ValidationTransform {
        shortest_side: fx.shortest_side,
        longest_side: Some(fx.longest_side),
        ..Default::default()
    };
    Predictor::new(model, device, pre)
}

fn predictor(file: &str, format: WeightFormat) -> Predictor<Flex> {
    predictor_on::<Flex>(file, format)
}

fn images() -> Vec<RgbImage> {
    fixture()
        .images
        .iter()
        .map(|im| decode_rgb(&fixtures().join("images").join(&im.file), 0).unwrap())
        .collect()
}

fn assert_matches(got: &Prediction, want: &FixturePrediction, size: [usize; 2], what: &str) {
    let d = &got.detections;
    assert_eq!(d.labels, want.labels, "{what}: labels");
    let mut max_score = 0f32;
    let mut max_box = 0f32;
    for q in 0..want.scores.len() {
        max_score = max_score.max((d.scores[q] - want.scores[q]).abs());
        for k in 0..4 {
            let side = if k % 2 == 0 { size[1] } else { size[0] } as f32;
            max_box = max_box.max((d.boxes[q][k] - want.boxes[q][k]).abs() / side);
        }
    }
    eprintln!("{what}: max |score diff| {max_score:.2e}, max |box diff|/side {max_box:.2e}");
    assert!(max_score <= 1e-4, "{what}: scores differ by {max_score}");
    assert!(
        max_box <= 1e-4,
        "{what}: boxes differ by {max_box} of the image size"
    );

    let att = got.attention.as_ref().expect("attention maps");
    assert_eq!(
        [att.height, att.width],
        want.attention_hw,
        "{what}: attention size"
    );
    let max_att = att
        .weights
        .iter()
        .zip(&want.attention)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(att.weights.len(), want.attention.len());
    assert!(max_att <= 1e-4, "{what}: attention differs by {max_att}");
}

#[test]
fn pth_and_hf_predictions_are_identical_and_match_pytorch() {
    let fx = fixture();
    let imgs = images();
    let pth = predictor("tiny_r18.pth", WeightFormat::DetrPth);
    let hf = predictor("tiny_r18_hf.safetensors", WeightFormat::Auto);
    for (i, img) in imgs.iter().enumerate() {
        let a = pth.predict(std::slice::from_ref(img), true).remove(0);
        let b = hf.predict(std::slice::from_ref(img), true).remove(0);
        assert_eq!(a, b, "image {i}: .pth and HF safetensors disagree");
        assert_eq!(a.orig_size, fx.images[i].orig_size);
        assert_eq!(a.input_size, fx.images[i].input_size, "validation resize");
        assert_matches(
            &a,
            &fx.single[i],
            fx.images[i].orig_size,
            &format!("image {i}"),
        );
    }
}

#[test]
fn padded_batch_matches_pytorch_batch() {
    let fx = fixture();
    let pth = predictor("tiny_r18.pth", WeightFormat::Auto);
    let got = pth.predict(&images(), true);
    assert_eq!(got.len(), 2);
    for (i, p) in got.iter().enumerate() {
        assert_matches(
            p,
            &fx.batched[i],
            fx.images[i].orig_size,
            &format!("batched {i}"),
        );
    }
}

/// burn-wgpu (fused, autotuned); CI runs it on Mesa's llvmpipe. The padded batch, same
/// tolerances as flex.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_backend_matches_pytorch_too() {
    let fx = fixture();
    let gpu = predictor_on::<burn::backend::Wgpu>("tiny_r18.pth", WeightFormat::DetrPth);
    let got = gpu.predict(&images(), true);
    for (i, p) in got.iter().enumerate() {
        assert_matches(
            p,
            &fx.batched[i],
            fx.images[i].orig_size,
            &format!("wgpu batched {i}"),
        );
    }
}

#[test]
fn ndarray_backend_matches_pytorch_too() {
    let fx = fixture();
    let nd = predictor_on::<burn::backend::NdArray>("tiny_r18.pth", WeightFormat::DetrPth);
    let img = &images()[1];
    let p = nd.predict(std::slice::from_ref(img), true).remove(0);
    assert_matches(&p, &fx.single[1], fx.images[1].orig_size, "ndarray image 1");
}
