//! wgpu tests of detr-model (`--features wgpu`), in one test binary.
#![cfg(feature = "wgpu")]

mod conv_repro {
    use burn::tensor::backend::Backend;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor, TensorData};

    type Fused = burn::backend::Wgpu;
    type Plain = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
    type Cpu = burn::backend::Flex;

    fn data(shape: [usize; 4], seed: u64) -> TensorData {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        let _ = Distribution::Default;
        TensorData::new(v, shape)
    }

    fn run<B: Backend>(
        x: &TensorData,
        w: &TensorData,
        o: &ConvOptions<2>,
        device: &B::Device,
    ) -> Vec<f32> {
        let x = Tensor::<B, 4>::from_data(x.clone(), device);
        let w = Tensor::<B, 4>::from_data(w.clone(), device);
        conv2d(x, w, None, o.clone())
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn run_pointwise<B: Backend>(x: &TensorData, w: &TensorData, device: &B::Device) -> Vec<f32> {
        let x = Tensor::<B, 4>::from_data(x.clone(), device);
        let w = Tensor::<B, 4>::from_data(w.clone(), device);
        let [n, c, h, wd] = x.dims();
        let o = w.dims()[0];
        w.reshape([1, o, c])
            .matmul(x.reshape([n, c, h * wd]))
            .reshape([n, o, h, wd])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn rel(a: &[f32], b: &[f32]) -> f32 {
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let m = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
        d / m
    }

    #[test]
    fn wgpu_conv_repro() {
        let mut cases: Vec<([usize; 4], [usize; 4], usize, usize, usize)> = vec![
            // (x, w, stride, padding, dilation)
            ([2, 8, 32, 40], [32, 8, 1, 1], 1, 0, 1),
            ([2, 64, 8, 10], [64, 64, 3, 3], 1, 2, 2),
        ];
        for k in [1, 2, 4, 8, 12, 16, 32, 64] {
            for (h, w) in [(32, 40), (8, 10), (4, 4), (1, 1)] {
                for n in [1, 2] {
                    cases.push(([n, k, h, w], [32, k, 1, 1], 1, 0, 1));
                }
            }
        }
        cases.push(([2, 8, 32, 40], [8, 8, 1, 1], 1, 0, 1));
        cases.push(([2, 8, 32, 40], [16, 8, 1, 1], 1, 0, 1));
        cases.push(([2, 8, 32, 40], [64, 8, 1, 1], 1, 0, 1));
        cases.push(([2, 8, 32, 40], [32, 8, 3, 3], 1, 1, 1));
        let mut bad = Vec::new();
        for (xs, ws, s, p, d) in cases {
            let x = data(xs, 1);
            let w = data(ws, 2);
            let o = ConvOptions::new([s, s], [p, p], [d, d], 1);
            let expect = run::<Cpu>(&x, &w, &o, &Default::default());
            let fv = run::<Fused>(&x, &w, &o, &Default::default());
            let fused = rel(&fv, &expect);
            if fused > 1e-5 {
                let wrong: Vec<usize> = (0..fv.len()).filter(|&i| (fv[i] - expect[i]).abs() > 1e-4).collect();
                let hw = xs[2] * xs[3];
                let chans: std::collections::BTreeSet<usize> = wrong.iter().map(|i| (i / hw) % ws[0]).collect();
                let pix: std::collections::BTreeSet<usize> = wrong.iter().map(|i| i % hw).collect();
                let zeros = wrong.iter().filter(|&&i| fv[i] == 0.0).count();
                eprintln!("  wrong {} of {}, zeros among wrong {zeros}, channels {:?}, pixels {}..{} ({} distinct); first {:?}", wrong.len(), fv.len(), chans, pix.first().unwrap(), pix.last().unwrap(), pix.len(), wrong.iter().take(4).map(|&i| (i, fv[i], expect[i])).collect::<Vec<_>>());
            }
            let plain = rel(&run::<Plain>(&x, &w, &o, &Default::default()), &expect);
            if ws[2] == 1 && s == 1 && p == 0 && d == 1 {
                let mm = rel(&run_pointwise::<Fused>(&x, &w, &Default::default()), &expect);
                eprintln!("  as matmul (fused): {mm:.2e}");
                assert!(mm < 1e-5, "matmul path wrong too: {mm}");
            }
            eprintln!("x {xs:?} w {ws:?} s {s} p {p} d {d}: fused {fused:.2e} plain {plain:.2e}");
            if fused > 1e-5 || plain > 1e-5 {
                bad.push((xs, ws, s, p, d));
            }
        }
        assert!(bad.is_empty(), "{bad:?}");
    }
}

mod common;

mod diag {
    use super::common::*;
    use burn::tensor::backend::Backend;
    use burn::tensor::activation::relu;
    use burn::tensor::Tensor;
    use detr_model::backbone::resnet::Block;
    use detr_model::weights::{load_checkpoint, LoadOptions, WeightFormat};
    use detr_model::{Detr, DetrConfig};

    type Fused = burn::backend::Wgpu;
    type Plain = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
    type Cpu = burn::backend::Flex;

    fn load<B: Backend>(name: &str, device: &B::Device) -> Detr<B> {
        let cfg = DetrConfig::from_json_file(&fixtures().join(format!("{name}.json"))).unwrap();
        let model = cfg.init::<B>(device).unwrap();
        let (model, _) = load_checkpoint(
            model,
            &fixtures().join(format!("{name}.pth")),
            WeightFormat::DetrPth,
            LoadOptions::default(),
        )
        .unwrap();
        model
    }

    fn steps<B: Backend>(b: &Block<B>, x: Tensor<B, 4>) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        let a = b.conv1.forward(x.clone());
        out.push(to_vec(a.clone()));
        let a = relu(b.bn1.forward(a));
        out.push(to_vec(a.clone()));
        let a = b.conv2.forward(a);
        out.push(to_vec(a.clone()));
        let mut y = b.bn2.forward(a);
        out.push(to_vec(y.clone()));
        if let (Some(c3), Some(bn3)) = (&b.conv3, &b.bn3) {
            let r = relu(y);
            out.push(to_vec(r.clone()));
            let c = c3.forward(r);
            out.push(to_vec(c.clone()));
            y = bn3.forward(c);
            out.push(to_vec(y.clone()));
        }
        if let Some(d) = &b.downsample {
            let c = d.conv.forward(x.clone());
            out.push(to_vec(c.clone()));
            out.push(to_vec(d.bn.forward(c)));
        }
        out.push(to_vec(b.forward(x)));
        out
    }

    fn per_block<G: Backend>(name: &str) {
        let dg = Default::default();
        let dc = Default::default();
        let g = load::<G>(name, &dg);
        let c = load::<Cpu>(name, &dc);
        let io = read_io(&format!("{name}_io.safetensors"));
        let mut x = float::<Cpu, 4>(&io, "images_0", &dc);
        let stem_c = c.backbone.maxpool.forward(relu(c.backbone.bn1.forward(c.backbone.conv1.forward(x.clone()))));
        let xg = Tensor::<G, 4>::from_data(x.to_data(), &dg);
        let stem_g = g.backbone.maxpool.forward(relu(g.backbone.bn1.forward(g.backbone.conv1.forward(xg))));
        eprintln!("stem {:.2e}", rel_err(&to_vec(stem_g), &to_vec(stem_c.clone())));
        x = stem_c;
        for (l, (lg, lc)) in [
            (&g.backbone.layer1, &c.backbone.layer1),
            (&g.backbone.layer2, &c.backbone.layer2),
            (&g.backbone.layer3, &c.backbone.layer3),
            (&g.backbone.layer4, &c.backbone.layer4),
        ]
        .into_iter()
        .enumerate()
        {
            for (i, (bg, bc)) in lg.iter().zip(lc.iter()).enumerate() {
                let xg = Tensor::<G, 4>::from_data(x.to_data(), &dg);
                let sg = steps(bg, xg);
                let sc = steps(bc, x.clone());
                let errs: Vec<String> = sg.iter().zip(&sc).map(|(a, b)| format!("{:.1e}", rel_err(a, b))).collect();
                eprintln!("layer{} block {i} {:?}: {}", l + 1, x.dims(), errs.join(" "));
                x = bc.forward(x);
            }
        }
    }

    #[test]
    fn wgpu_diag_fused() {
        per_block::<Fused>("tiny_r50dc5");
    }
    #[test]
    fn wgpu_diag_plain() {
        per_block::<Plain>("tiny_r50dc5");
    }
}

mod permute_repro {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};

    type Fused = burn::backend::Wgpu;
    type Plain = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

    fn run<B: Backend>(shape: [usize; 4], perm: [isize; 4], device: &B::Device) -> (Vec<f32>, Vec<f32>) {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(v.clone(), shape), device);
        let y = x.permute(perm);
        let got = y.clone().into_data().to_vec::<f32>().unwrap();
        // Expected from the permutation on the host.
        let d = y.dims();
        let p = perm.map(|p| p as usize);
        let st = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
        let mut exp = Vec::with_capacity(n);
        for a in 0..d[0] {
            for b in 0..d[1] {
                for c in 0..d[2] {
                    for e in 0..d[3] {
                        let idx = [a, b, c, e];
                        let mut off = 0;
                        for k in 0..4 {
                            off += idx[k] * st[p[k]];
                        }
                        exp.push(v[off]);
                    }
                }
            }
        }
        (got, exp)
    }

    #[test]
    fn wgpu_permute_repro() {
        let mut bad = Vec::new();
        for c in [4, 8, 16, 32, 64] {
            for (h, w) in [(32, 40), (8, 10), (16, 20)] {
                for (shape, perm) in [([2, c, h, w], [0, 2, 3, 1]), ([2, h, w, c], [0, 3, 1, 2])] {
                    let (g, e) = run::<Fused>(shape, perm, &Default::default());
                    let (g2, _) = run::<Plain>(shape, perm, &Default::default());
                    let ok = g == e && g2 == e;
                    eprintln!("{shape:?} {perm:?}: fused {} plain {}", g == e, g2 == e);
                    if !ok {
                        bad.push((shape, perm));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{bad:?}");
    }
}
