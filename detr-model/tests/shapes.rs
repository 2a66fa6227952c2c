//! The seed's shape walkthrough, reproduced with this crate's real shapes (`docs/shapes.md`).

use burn::backend::Flex;
use burn::tensor::{Bool, Tensor, TensorData};
use detr_model::DetrConfig;

type B = Flex;

#[test]
fn r50_walkthrough_shapes_for_two_608x760_images() {
    let device = Default::default();
    let model = DetrConfig::preset("r50")
        .unwrap()
        .with_num_classes(6)
        .init::<B>(&device)
        .unwrap();
    // Two images, the second smaller and padded bottom/right.
    let images = Tensor::<B, 4>::random(
        [2, 3, 608, 760],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut mask = vec![false; 2 * 608 * 760];
    for y in 0..608 {
        for x in 0..760 {
            if y >= 500 || x >= 640 {
                mask[608 * 760 + y * 760 + x] = true;
            }
        }
    }
    let mask = Tensor::<B, 3, Bool>::from_data(TensorData::new(mask, [2, 608, 760]), &device);
    let out = model.forward_intermediates(images, mask);
    assert_eq!(out.features.dims(), [2, 2048, 19, 24]);
    assert_eq!(out.feature_mask.dims(), [2, 19, 24]);
    assert_eq!(out.pos.dims(), [2, 256, 19, 24]);
    // Encoder input / memory: 19 * 24 = 456 positions (batch-first here: [B, 456, 256]).
    assert_eq!(out.memory.dims(), [2, 456, 256]);
    assert_eq!(out.hs.dims(), [6, 2, 100, 256]);
    assert_eq!(out.output.logits.dims(), [6, 2, 100, 7]);
    assert_eq!(out.output.boxes.dims(), [6, 2, 100, 4]);
    assert_eq!(out.output.pred_logits().dims(), [2, 100, 7]);
    assert_eq!(out.output.pred_boxes().dims(), [2, 100, 4]);
    let aux = out.output.aux_outputs();
    assert_eq!(aux.len(), 5);
    for (logits, boxes) in aux {
        assert_eq!(logits.dims(), [2, 100, 7]);
        assert_eq!(boxes.dims(), [2, 100, 4]);
    }
    assert_eq!(out.last_cross_weights.dims(), [2, 8, 100, 456]);
    // The padded image's feature mask marks its padding: rows >= ceil(500/32) = 16 (nearest).
    let fm = out.feature_mask.into_data().to_vec::<bool>().unwrap();
    assert!(!fm[19 * 24]); // image 1, (0, 0) is real
    assert!(fm[19 * 24 + 18 * 24]); // image 1, last row is padding
    assert!(fm.iter().take(19 * 24).all(|&m| !m)); // image 0 has no padding
}

#[test]
fn without_aux_loss_only_the_last_layer_is_returned() {
    let device = Default::default();
    let cfg = DetrConfig::preset("tiny")
        .unwrap()
        .with_aux_loss(false)
        .with_num_classes(3);
    let model = cfg.init::<B>(&device).unwrap();
    let images = Tensor::<B, 4>::zeros([1, 3, 64, 96], &device);
    let mask = Tensor::<B, 3, Bool>::from_data(
        TensorData::new(vec![false; 64 * 96], [1, 64, 96]),
        &device,
    );
    let out = model.forward(images, mask);
    assert_eq!(out.logits.dims(), [1, 1, 30, 4]);
    assert_eq!(out.boxes.dims(), [1, 1, 30, 4]);
    assert!(out.aux_outputs().is_empty());
}
