//! detr-model on burn-wgpu: 1×1 convolutions against flex, and the backbone block by block
//! (the forward parity against PyTorch is `parity.rs`'s `wgpu_*` tests, included beside).

/// burn-cubecl 0.21's 1×1 stride-1 convolution on llvmpipe gives wrong results for some
/// narrow shapes (first seen in tiny_r50dc5's `layer1`: 8 input channels at 32×40 pixels, 16
/// or 32 outputs; docs/performance.md, "GPU backends"). The widths of real ResNets are right:
/// that is asserted. The failing shapes are kept as an ignored reproduction for upstream.
mod pointwise_conv {
    use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
    use burn::tensor::backend::Backend;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Tensor, TensorData};

    type Fused = burn::backend::Wgpu;
    type Plain = CubeBackend<WgpuRuntime, f32, i32, u32>;
    type Cpu = burn::backend::Flex;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005) ^ 0x9e3779b97f4a7c15;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Burn's `conv2d` (1×1, stride 1, no padding, no bias) on `B`.
    fn apply<B: Backend>(shape: [usize; 4], out: usize) -> Vec<f32> {
        let device = Default::default();
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(values(shape.iter().product(), 1), shape),
            &device,
        );
        let w = Tensor::<B, 4>::from_data(
            TensorData::new(values(out * shape[1], 2), [out, shape[1], 1, 1]),
            &device,
        );
        conv2d(x, w, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn rel(a: &[f32], b: &[f32]) -> f32 {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        d / b.iter().map(|x| x.abs()).fold(0.0, f32::max)
    }

    /// Fused and plain wgpu against flex; prints each case, returns the worst.
    fn worst(cases: &[([usize; 4], usize)]) -> f32 {
        let mut worst = 0.0f32;
        for &(shape, out) in cases {
            let expect = apply::<Cpu>(shape, out);
            let fused = rel(&apply::<Fused>(shape, out), &expect);
            let plain = rel(&apply::<Plain>(shape, out), &expect);
            eprintln!("x {shape:?} → {out}: fused {fused:.1e}, plain {plain:.1e}");
            worst = worst.max(fused).max(plain);
        }
        worst
    }

    /// The 1×1 stride-1 convolutions of a full-width ResNet-50 bottleneck and of
    /// `input_proj`, at a small image's feature sizes: within 1e-5 relative of flex.
    #[test]
    fn wgpu_pointwise_conv_at_resnet_widths_matches_flex() {
        let cases = [
            ([1, 64, 32, 40], 256),
            ([2, 64, 32, 40], 64),
            ([2, 256, 32, 40], 64),
            ([2, 512, 16, 20], 128),
            ([2, 1024, 8, 10], 256),
            ([2, 2048, 4, 5], 256),
        ];
        let w = worst(&cases);
        assert!(w < 1e-5, "worst {w}");
    }

    /// The narrow shapes burn-cubecl 0.21 gets wrong on llvmpipe (relative error 1.0: the
    /// output holds another buffer's values). Run with `--ignored --nocapture` to check a fix.
    #[test]
    #[ignore = "known burn-cubecl 0.21 failure on llvmpipe (8 input channels at 32x40)"]
    fn wgpu_pointwise_conv_narrow_shapes_match_flex() {
        let w = worst(&[
            ([2, 8, 32, 40], 32),
            ([1, 8, 32, 40], 32),
            ([2, 8, 32, 40], 16),
        ]);
        assert!(w < 1e-5, "worst {w}");
    }
}

/// Where the wgpu backbone leaves flex on tiny_r50dc5 (each block fed flex's input), printed
/// for diagnosis; asserts each block within 1e-4. Today `layer1` fails (its 8-channel 1×1
/// convolutions, above); run with `--ignored --nocapture` to check a fix.
mod backbone_blocks {
    use burn::tensor::activation::relu;
    use burn::tensor::backend::Backend;
    use burn::tensor::Tensor;
    use detr_model::weights::{load_checkpoint, LoadOptions, WeightFormat};
    use detr_model::{Detr, DetrConfig};

    use crate::model_parity::common::*;

    fn load<B: Backend>(name: &str, device: &B::Device) -> Detr<B> {
        let cfg = DetrConfig::from_json_file(&fixtures().join(format!("{name}.json"))).unwrap();
        let model = cfg.init::<B>(device).unwrap();
        let file = fixtures().join(format!("{name}.pth"));
        load_checkpoint(model, &file, WeightFormat::DetrPth, LoadOptions::default())
            .unwrap()
            .0
    }

    #[test]
    #[ignore = "known burn-cubecl 0.21 failure in layer1 block 0 of tiny_r50dc5 on llvmpipe"]
    fn wgpu_backbone_blocks_match_flex() {
        type G = burn::backend::Wgpu;
        type C = burn::backend::Flex;
        let (dg, dc) = (Default::default(), Default::default());
        let (g, c) = (load::<G>("tiny_r50dc5", &dg), load::<C>("tiny_r50dc5", &dc));
        let io = read_io("tiny_r50dc5_io.safetensors");
        let x = float::<C, 4>(&io, "images_0", &dc);
        let b = &c.backbone;
        let mut x = b.maxpool.forward(relu(b.bn1.forward(b.conv1.forward(x))));
        let mut worst = 0.0f32;
        let layers = [
            (&g.backbone.layer1, &c.backbone.layer1),
            (&g.backbone.layer2, &c.backbone.layer2),
            (&g.backbone.layer3, &c.backbone.layer3),
            (&g.backbone.layer4, &c.backbone.layer4),
        ];
        for (l, (lg, lc)) in layers.into_iter().enumerate() {
            for (i, (bg, bc)) in lg.iter().zip(lc.iter()).enumerate() {
                let xg = Tensor::<G, 4>::from_data(x.to_data(), &dg);
                let y = bc.forward(x);
                let err = rel_err(&to_vec(bg.forward(xg)), &to_vec(y.clone()));
                eprintln!("layer{} block {i}: {err:.1e}", l + 1);
                worst = worst.max(err);
                x = y;
            }
        }
        assert!(worst < 1e-4, "worst block {worst}");
    }
}
