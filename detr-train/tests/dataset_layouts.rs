//! `detr-train` finds its training and validation splits in every dataset layout that
//! `detr-infer check` finds (issue 12 item 9, and Roboflow's COCO export), without
//! `--train_split` / `--val_split`.

use datasets::synthetic::{generate, SyntheticOptions};
use datasets::Layout;
use detr_train::splits::open_splits;
use detr_train::TrainConfig;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("detr-train-layout-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn training_opens_every_layout_without_split_names() {
    for layout in Layout::ALL {
        let root = temp(&layout.to_string());
        let options = SyntheticOptions {
            seed: 3,
            layout,
            train_images: 3,
            val_images: 2,
            min_image_size: 32,
            max_image_size: 48,
            ..Default::default()
        };
        generate(&root, &options).unwrap();
        let cfg = {
            let mut c = TrainConfig::default();
            c.data.dataset_file = detr_train::config::DatasetKind::Coco;
            c.data.coco_path = root.clone();
            c
        };
        let splits = open_splits(&cfg).unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(splits.train.as_ref().map(|t| t.len()), Some(3), "{layout}");
        assert_eq!(splits.val.len(), 2, "{layout}");
        let (_, val) = layout.default_split_names();
        assert_eq!(
            splits.val.paths().annotation_file,
            layout.split_paths(&root, val).annotation_file,
            "{layout}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn a_folder_without_a_dataset_names_every_place_looked_at() {
    let root = temp("empty");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = {
        let mut c = TrainConfig::default();
        c.data.dataset_file = detr_train::config::DatasetKind::Coco;
        c.data.coco_path = root.clone();
        c
    };
    let err = open_splits(&cfg).err().expect("no dataset").to_string();
    for pattern in [
        "annotations/instances_train2017.json",
        "annotations/train2017.json",
        "train2017/_annotations.coco.json",
    ] {
        assert!(err.contains(pattern), "{err}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
