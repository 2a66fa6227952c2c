//! The dataset of a run: the train and validation splits of `--coco_path` (generating the
//! synthetic dataset there first when it is the one configured and absent).

use datasets::{CocoFile, CocoSplit, Layout, OpenOptions};

use crate::config::{DatasetKind, TrainConfig};
use crate::error::TrainError;

/// The train and validation splits of the configured dataset.
pub struct Splits {
    /// Training split (augmentation pipeline); not opened by `--eval`.
    pub train: Option<CocoSplit>,
    /// Validation split (validation pipeline).
    pub val: CocoSplit,
    /// The validation annotations (ground truth of the COCO evaluation).
    pub val_coco: CocoFile,
}

fn split_names(cfg: &TrainConfig) -> (String, String) {
    datasets::train_val_splits(
        &cfg.data.coco_path,
        cfg.data.train_split.as_deref(),
        cfg.data.val_split.as_deref(),
    )
}

/// Generates the synthetic dataset at `coco_path` when its annotation files are absent.
pub fn ensure_synthetic(cfg: &TrainConfig) -> Result<(), TrainError> {
    if cfg.data.dataset_file != DatasetKind::Synthetic {
        return Ok(());
    }
    let (train, val) = split_names(cfg);
    let present = [&train, &val]
        .iter()
        .all(|s| Layout::detect(&cfg.data.coco_path, s).is_ok());
    if present {
        return Ok(());
    }
    let mut opts = cfg.data.synthetic.options();
    opts.train_split = Some(train);
    opts.val_split = Some(val);
    tracing::info!(
        "generating the synthetic dataset in {} ({} train, {} val images)",
        cfg.data.coco_path.display(),
        opts.train_images,
        opts.val_images
    );
    datasets::generate(&cfg.data.coco_path, &opts)?;
    Ok(())
}

/// Opens the configured dataset's splits.
pub fn open_splits(cfg: &TrainConfig) -> Result<Splits, TrainError> {
    ensure_synthetic(cfg)?;
    let (train_split, val_split) = split_names(cfg);
    let tc = cfg.transforms();
    let opts = OpenOptions {
        seed: cfg.run.seed,
        ..OpenOptions::default()
    };
    let train = if cfg.run.eval {
        None
    } else {
        let t = CocoSplit::open_split(&cfg.data.coco_path, &train_split, None, tc.train(), &opts)?;
        if t.is_empty() {
            return Err(TrainError::NothingToTrain(format!(
                "the training split {} has no images",
                t.paths().annotation_file.display()
            )));
        }
        Some(t)
    };
    let val = CocoSplit::open_split(&cfg.data.coco_path, &val_split, None, tc.val(), &opts)?;
    let ann = &val.paths().annotation_file;
    let val_coco = datasets::coco_eval::read_ground_truth(ann)?;
    Ok(Splits {
        train,
        val,
        val_coco,
    })
}
