//! Generator -> dataset -> loader -> batch: shapes, masks and normalised boxes, and the same
//! seed giving the same batches.

mod common;

use burn::backend::Flex;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use common::TempDir;
use datasets::coco::CocoFile;
use datasets::synthetic::{generate, ImageFormat, SyntheticOptions};
use datasets::{
    CocoSplit, DetrBatch, DetrBatcher, DetrDataLoader, HostBatch, Layout, LoaderConfig,
    OpenOptions, Pipeline, TransformConfig,
};

type B = Flex;

fn small_options(layout: Layout) -> SyntheticOptions {
    SyntheticOptions {
        seed: 42,
        layout,
        train_images: 7,
        val_images: 3,
        min_image_size: 40,
        max_image_size: 64,
        ..Default::default()
    }
}

fn check_host_batch(hb: &HostBatch) {
    let [b, c, h, w] = hb.shape;
    assert_eq!(c, 3);
    assert_eq!(hb.images.len(), b * 3 * h * w);
    assert_eq!(hb.mask.len(), b * h * w);
    assert_eq!(hb.targets.len(), b);
    assert_eq!(h, hb.targets.iter().map(|t| t.size[0]).max().unwrap());
    assert_eq!(w, hb.targets.iter().map(|t| t.size[1]).max().unwrap());
    for (n, t) in hb.targets.iter().enumerate() {
        let [ih, iw] = t.size;
        for y in 0..h {
            for x in 0..w {
                let inside = y < ih && x < iw;
                assert_eq!(hb.mask[(n * h + y) * w + x], !inside, "mask at {n},{y},{x}");
                if !inside {
                    for ch in 0..3 {
                        assert_eq!(hb.images[((n * 3 + ch) * h + y) * w + x], 0.0);
                    }
                }
            }
        }
        assert_eq!(t.boxes.len(), t.labels.len());
        assert_eq!(t.boxes.len(), t.area.len());
        for bx in &t.boxes {
            for v in bx {
                assert!((0.0..=1.0).contains(v), "{bx:?}");
            }
            assert!(bx[2] > 0.0 && bx[3] > 0.0);
        }
        for &l in &t.labels {
            assert!(l < 6, "label {l}");
        }
    }
}

#[test]
fn generator_is_deterministic_and_valid() {
    let (a, b) = (TempDir::new("gen-a"), TempDir::new("gen-b"));
    let o = small_options(Layout::Standard);
    let da = generate(a.path(), &o).unwrap();
    generate(b.path(), &o).unwrap();
    assert_eq!(da.num_classes, 6);
    assert_eq!(da.train().images_dir, a.path().join("train2017"));
    let ja = std::fs::read(&da.train().annotation_file).unwrap();
    let jb = std::fs::read(b.path().join("annotations/instances_train2017.json")).unwrap();
    assert_eq!(ja, jb);
    let img_a = std::fs::read(a.path().join("train2017/000000000003.png")).unwrap();
    let img_b = std::fs::read(b.path().join("train2017/000000000003.png")).unwrap();
    assert_eq!(img_a, img_b);

    // A full check passes and the statistics are plausible.
    let report = datasets::check_split(da.train(), datasets::ImageCheck::Decode).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let s = report.stats;
    assert_eq!(s.num_images, 7);
    assert_eq!(s.dropped.total(), 0);
    assert!(s.max_boxes_per_image() <= 4 && s.num_annotations >= 7);
    assert!(s.width_range.0 >= 40.0 && s.width_range.1 <= 64.0);

    // A different seed gives different data; the seed layout and JPEGs work.
    let c = TempDir::new("gen-c");
    let o2 = SyntheticOptions {
        seed: 43,
        format: ImageFormat::Jpeg { quality: 90 },
        ..small_options(Layout::ImagesDir)
    };
    let dc = generate(c.path(), &o2).unwrap();
    assert_eq!(
        dc.val().annotation_file,
        c.path().join("annotations/val2023.json")
    );
    assert!(c.path().join("images/train2023/000000000001.jpg").is_file());
    assert_ne!(std::fs::read(&dc.train().annotation_file).unwrap(), ja);
    let ds = CocoSplit::open_split(
        c.path(),
        "train2023",
        None,
        Pipeline::identity(),
        &OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.len(), 7);
}

#[test]
fn boxes_round_trip_through_the_loader() {
    let t = TempDir::new("rt-val");
    let d = generate(t.path(), &small_options(Layout::ImagesDir)).unwrap();
    let coco = CocoFile::load(&d.val().annotation_file).unwrap();
    // No resizing: normalised boxes times the image size give back the JSON boxes.
    let ds = CocoSplit::open(d.val(), Pipeline::identity(), &OpenOptions::default()).unwrap();
    let loader =
        DetrDataLoader::<B>::new(ds, LoaderConfig::val(2).with_workers(0), Default::default())
            .unwrap();
    assert_eq!(loader.num_batches(), 2);
    let batches: Vec<DetrBatch<B>> = loader.iter_epoch(0).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        batches[1].targets.len(),
        1,
        "the incomplete last batch is kept"
    );
    let ids: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.targets.iter().map(|t| t.image_id))
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "validation keeps the file order");
    for batch in &batches {
        let dims = batch.images.dims();
        let mdims = batch.mask.dims();
        assert_eq!([dims[0], dims[2], dims[3]], mdims);
        let images = batch.images.clone().into_data().to_vec::<f32>().unwrap();
        let mask = batch.mask.clone().into_data().to_vec::<bool>().unwrap();
        let hb = HostBatch {
            images,
            mask,
            shape: [dims[0], dims[1], dims[2], dims[3]],
            targets: batch.targets.clone(),
        };
        check_host_batch(&hb);
        for t in &batch.targets {
            let img = coco.images.iter().find(|i| i.id == t.image_id).unwrap();
            assert_eq!(t.orig_size, [img.height as usize, img.width as usize]);
            let anns: Vec<_> = coco
                .annotations
                .iter()
                .filter(|a| a.image_id == t.image_id)
                .collect();
            assert_eq!(anns.len(), t.boxes.len());
            let (w, h) = (img.width as f32, img.height as f32);
            for (a, b) in anns.iter().zip(&t.boxes) {
                let want = [
                    (a.bbox[0] + a.bbox[2] / 2.0) as f32 / w,
                    (a.bbox[1] + a.bbox[3] / 2.0) as f32 / h,
                    a.bbox[2] as f32 / w,
                    a.bbox[3] as f32 / h,
                ];
                for k in 0..4 {
                    assert!((b[k] - want[k]).abs() < 1e-5, "{b:?} vs {want:?}");
                }
            }
        }
    }
}

#[test]
fn same_seed_same_batches_any_worker_count() {
    let t = TempDir::new("rt-train");
    let d = generate(t.path(), &small_options(Layout::Standard)).unwrap();
    let open = || {
        CocoSplit::open(
            d.train(),
            TransformConfig::scaled(0.08).train(),
            &OpenOptions {
                seed: 5,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let host = |workers: usize, epoch: u64| -> Vec<HostBatch> {
        let l = DetrDataLoader::<B>::new(
            open(),
            LoaderConfig::train(2, 11).with_workers(workers),
            Default::default(),
        )
        .unwrap();
        let mut it = l.iter_epoch(epoch);
        std::iter::from_fn(|| it.next_host()).collect()
    };
    let a = host(0, 0);
    assert_eq!(a.len(), 3, "7 images, batch 2, drop_last");
    for hb in &a {
        assert_eq!(hb.shape[0], 2);
        check_host_batch(hb);
        for t in &hb.targets {
            assert!(t.size[0].max(t.size[1]) <= 107, "{:?}", t.size);
        }
    }
    assert_eq!(a, host(2, 0), "2 workers give the same batches");
    assert_eq!(a, host(3, 0), "3 workers give the same batches");
    let b = host(0, 1);
    assert_ne!(a, b, "another epoch reshuffles and re-augments");

    // Through Burn's DataLoader trait: each iter() is the next epoch.
    let l =
        DetrDataLoader::<B>::new(open(), LoaderConfig::train(2, 11), Default::default()).unwrap();
    assert_eq!(l.num_items(), 6);
    let e0: Vec<Vec<u64>> = l
        .iter()
        .map(|b| b.targets.iter().map(|t| t.image_id).collect())
        .collect();
    let e1: Vec<Vec<u64>> = l
        .iter()
        .map(|b| b.targets.iter().map(|t| t.image_id).collect())
        .collect();
    let ids = |hb: &Vec<HostBatch>| -> Vec<Vec<u64>> {
        hb.iter()
            .map(|b| b.targets.iter().map(|t| t.image_id).collect())
            .collect()
    };
    assert_eq!(e0, ids(&a));
    assert_eq!(e1, ids(&b));
    assert_eq!(l.next_epoch(), 2);
    let mut it = l.iter();
    it.next();
    assert_eq!(it.progress().items_processed, 2);
    drop(it); // dropping mid-epoch stops the workers
    let half = l.slice(0, 4);
    assert_eq!(half.num_items(), 4);
}

#[test]
fn works_with_burns_dataloader_builder() {
    let t = TempDir::new("rt-burn");
    let d = generate(t.path(), &small_options(Layout::Standard)).unwrap();
    let ds = CocoSplit::open(
        d.val(),
        TransformConfig::scaled(0.05).val(),
        &OpenOptions::default(),
    )
    .unwrap();
    let loader = DataLoaderBuilder::<B, _, DetrBatch<B>>::new(DetrBatcher)
        .batch_size(2)
        .build(ds);
    let batches: Vec<DetrBatch<B>> = loader.iter().collect();
    assert_eq!(batches.len(), 2);
    for b in &batches {
        for t in &b.targets {
            // Validation resize: shorter side 40, longer side <= 67.
            let [h, w] = t.size;
            assert!(h.min(w) == 40 && h.max(w) <= 67, "{h}x{w}");
        }
    }
}

#[test]
fn unreadable_images_are_skipped_and_counted() {
    let t = TempDir::new("rt-bad");
    let d = generate(t.path(), &small_options(Layout::Standard)).unwrap();
    std::fs::write(
        d.train().images_dir.join("000000000002.png"),
        b"not an image",
    )
    .unwrap();
    let ds = CocoSplit::open(d.train(), Pipeline::identity(), &OpenOptions::default()).unwrap();
    let l = DetrDataLoader::<B>::new(ds, LoaderConfig::val(2), Default::default()).unwrap();
    let mut it = l.iter_epoch(0);
    let batches: Vec<HostBatch> = std::iter::from_fn(|| it.next_host()).collect();
    let n: usize = batches.iter().map(|b| b.targets.len()).sum();
    assert_eq!(n, 6, "7 images, one unreadable");
    assert_eq!(l.failed_items(), 1);
    assert!(batches
        .iter()
        .all(|b| b.targets.iter().all(|t| t.image_id != 2)));

    let ds = CocoSplit::open(d.val(), Pipeline::identity(), &OpenOptions::default()).unwrap();
    assert!(DetrDataLoader::<B>::new(ds, LoaderConfig::val(0), Default::default()).is_err());
}
