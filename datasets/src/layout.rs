//! Where a split's images and annotation file live inside a dataset folder.
//!
//! Three layouts are understood, with configurable split names:
//!
//! | layout       | images                     | annotations                                   | default splits |
//! |--------------|----------------------------|-----------------------------------------------|----------------|
//! | `Standard`   | `<root>/train2017/`        | `<root>/annotations/instances_train2017.json` | `train2017`, `val2017` |
//! | `ImagesDir`  | `<root>/images/train2023/` | `<root>/annotations/train2023.json`           | `train2023`, `val2023` |
//! | `Roboflow`   | `<root>/train/`            | `<root>/train/_annotations.coco.json`         | `train`, `valid` (and `test`) |
//!
//! [`Layout::detect`] finds the layout of one split, [`train_val_splits`] the training and
//! validation splits of a folder, and [`find_splits`] every split under its layout's usual
//! names: `detr-train` and `detr-infer check` both go through them.

use crate::error::{parse_value, write_value_name, DatasetError, Result};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

/// The folder layout of a COCO-format dataset.
///
/// Named `standard` (alias `coco`), `images-dir` (aliases `images_dir` and `seed`, its former
/// name) and `roboflow` on command lines ([`ValueEnum`]) and by [`FromStr`](std::str::FromStr)
/// and [`Display`](std::fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, ValueEnum)]
pub enum Layout {
    /// COCO's own: `<split>/` and `annotations/instances_<split>.json`.
    #[default]
    #[value(alias = "coco")]
    Standard,
    /// An `images/` folder of splits beside an `annotations/` folder: `images/<split>/` and
    /// `annotations/<split>.json`.
    #[value(alias = "images_dir", alias = "seed")]
    ImagesDir,
    /// Roboflow's COCO export: `<split>/_annotations.coco.json` with the images beside it;
    /// splits `train`, `valid`, `test`.
    Roboflow,
}

/// The annotation file name of a Roboflow COCO export.
pub const ROBOFLOW_ANNOTATIONS: &str = "_annotations.coco.json";

impl Layout {
    /// Every layout, in the order detection tries them.
    pub const ALL: [Layout; 3] = [Layout::Standard, Layout::ImagesDir, Layout::Roboflow];

    /// The default `(train, val)` split names: `train2017`/`val2017` (standard),
    /// `train2023`/`val2023` (images-dir) or `train`/`valid` (Roboflow).
    pub fn default_split_names(self) -> (&'static str, &'static str) {
        match self {
            Layout::Standard => ("train2017", "val2017"),
            Layout::ImagesDir => ("train2023", "val2023"),
            Layout::Roboflow => ("train", "valid"),
        }
    }

    /// The usual split names of this layout: training, validation, then test.
    pub fn usual_split_names(self) -> [&'static str; 3] {
        match self {
            Layout::Standard => ["train2017", "val2017", "test2017"],
            Layout::ImagesDir => ["train2023", "val2023", "test2023"],
            Layout::Roboflow => ["train", "valid", "test"],
        }
    }

    /// The image folder and annotation file of `split` under `root`.
    pub fn split_paths(self, root: impl AsRef<Path>, split: &str) -> SplitPaths {
        let root = root.as_ref();
        match self {
            Layout::Standard => SplitPaths {
                images_dir: root.join(split),
                annotation_file: root
                    .join("annotations")
                    .join(format!("instances_{split}.json")),
            },
            Layout::ImagesDir => SplitPaths {
                images_dir: root.join("images").join(split),
                annotation_file: root.join("annotations").join(format!("{split}.json")),
            },
            Layout::Roboflow => SplitPaths {
                images_dir: root.join(split),
                annotation_file: root.join(split).join(ROBOFLOW_ANNOTATIONS),
            },
        }
    }

    /// The annotation file this layout expects for `split`, relative to the dataset folder.
    fn annotation_pattern(self, split: &str) -> String {
        match self {
            Layout::Standard => format!("annotations/instances_{split}.json"),
            Layout::ImagesDir => format!("annotations/{split}.json"),
            Layout::Roboflow => format!("{split}/{ROBOFLOW_ANNOTATIONS}"),
        }
    }

    /// The layout whose annotation file for `split` exists under `root`.
    pub fn detect(root: impl AsRef<Path>, split: &str) -> Result<Self> {
        let root = root.as_ref();
        for layout in Layout::ALL {
            if layout.split_paths(root, split).annotation_file.is_file() {
                return Ok(layout);
            }
        }
        let looked: Vec<String> = Layout::ALL
            .iter()
            .map(|l| format!("{} ({l} layout)", l.annotation_pattern(split)))
            .collect();
        Err(DatasetError::Layout {
            path: root.to_path_buf(),
            message: format!(
                "no annotation file for split `{split}`: looked for {}",
                looked.join(", ")
            ),
        })
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value_name(self, f)
    }
}

impl std::str::FromStr for Layout {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self> {
        parse_value("dataset layout", s)
    }
}

/// A split found under a dataset folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSplit {
    /// The split's name (`val2017`, `valid`, ...).
    pub name: String,
    /// The layout it was found in.
    pub layout: Layout,
    /// Its image folder and annotation file.
    pub paths: SplitPaths,
}

/// Every split of `root` under its layout's usual names ([`Layout::usual_split_names`]), in
/// the order of [`Layout::ALL`] then train, validation, test; only `layout` when given.
pub fn find_splits(root: impl AsRef<Path>, layout: Option<Layout>) -> Vec<FoundSplit> {
    let root = root.as_ref();
    let layouts = match layout {
        Some(l) => vec![l],
        None => Layout::ALL.to_vec(),
    };
    let mut found = Vec::new();
    for l in layouts {
        for s in l.usual_split_names() {
            let paths = l.split_paths(root, s);
            if paths.annotation_file.is_file() {
                found.push(FoundSplit {
                    name: s.to_string(),
                    layout: l,
                    paths,
                });
            }
        }
    }
    found
}

/// The training and validation split names of the dataset at `root`: the given names, and for
/// those not given, the default names of the first layout ([`Layout::ALL`]) whose training
/// split exists; when a name is given, of that split's layout. When nothing is found (a folder
/// to be generated, or a wrong path), the standard layout's names: opening them then gives the
/// error naming every place looked at.
pub fn train_val_splits(
    root: impl AsRef<Path>,
    train: Option<&str>,
    val: Option<&str>,
) -> (String, String) {
    let root = root.as_ref();
    let layout = match (train, val) {
        (Some(t), _) => Layout::detect(root, t).ok(),
        (None, Some(v)) => Layout::detect(root, v).ok(),
        (None, None) => Layout::ALL.into_iter().find(|l| {
            let (t, _) = l.default_split_names();
            l.split_paths(root, t).annotation_file.is_file()
        }),
    };
    let (t, v) = layout.unwrap_or_default().default_split_names();
    (train.unwrap_or(t).to_string(), val.unwrap_or(v).to_string())
}

/// The image folder and annotation file of one split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPaths {
    /// Folder that `file_name`s are relative to.
    pub images_dir: PathBuf,
    /// The COCO JSON file.
    pub annotation_file: PathBuf,
}

impl SplitPaths {
    /// Explicit paths (any layout).
    pub fn new(images_dir: impl Into<PathBuf>, annotation_file: impl Into<PathBuf>) -> Self {
        Self {
            images_dir: images_dir.into(),
            annotation_file: annotation_file.into(),
        }
    }

    /// Resolves `root` + `split` with `layout`, or detects the layout when `None`.
    pub fn resolve(root: impl AsRef<Path>, split: &str, layout: Option<Layout>) -> Result<Self> {
        let root = root.as_ref();
        let layout = match layout {
            Some(l) => l,
            None => Layout::detect(root, split)?,
        };
        Ok(layout.split_paths(root, split))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "{}").unwrap();
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("detr-layout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn paths_of_every_layout() {
        let s = Layout::Standard.split_paths("/d", "val2017");
        assert_eq!(s.images_dir, PathBuf::from("/d/val2017"));
        assert_eq!(
            s.annotation_file,
            PathBuf::from("/d/annotations/instances_val2017.json")
        );
        let s = Layout::ImagesDir.split_paths("/d", "train2023");
        assert_eq!(s.images_dir, PathBuf::from("/d/images/train2023"));
        assert_eq!(
            s.annotation_file,
            PathBuf::from("/d/annotations/train2023.json")
        );
        let s = Layout::Roboflow.split_paths("/d", "valid");
        assert_eq!(s.images_dir, PathBuf::from("/d/valid"));
        assert_eq!(
            s.annotation_file,
            PathBuf::from("/d/valid/_annotations.coco.json")
        );
        assert_eq!("SEED".parse::<Layout>().unwrap(), Layout::ImagesDir);
        assert_eq!("coco".parse::<Layout>().unwrap(), Layout::Standard);
        assert_eq!("roboflow".parse::<Layout>().unwrap(), Layout::Roboflow);
        for l in Layout::ALL {
            assert_eq!(l.to_string().parse::<Layout>().unwrap(), l);
        }
        assert_eq!(Layout::ImagesDir.to_string(), "images-dir");
        let err = "x".parse::<Layout>().unwrap_err().to_string();
        assert!(
            err.contains("`x`") && err.contains("`standard`, `images-dir`, `roboflow`"),
            "{err}"
        );
        // Every layout is a command-line choice, in detection order.
        assert_eq!(Layout::value_variants(), &Layout::ALL);
    }

    #[test]
    fn train_and_validation_splits_are_detected_in_every_layout() {
        for layout in Layout::ALL {
            let root = temp(&layout.to_string());
            let (t, v) = layout.default_split_names();
            touch(&layout.split_paths(&root, t).annotation_file);
            touch(&layout.split_paths(&root, v).annotation_file);
            assert_eq!(
                train_val_splits(&root, None, None),
                (t.to_string(), v.to_string()),
                "{layout}"
            );
            assert_eq!(Layout::detect(&root, t).unwrap(), layout);
            let found = find_splits(&root, None);
            assert_eq!(found.len(), 2, "{layout}: {found:?}");
            assert!(found.iter().all(|s| s.layout == layout));
            // A name given on its own keeps the other default of its layout.
            assert_eq!(
                train_val_splits(&root, Some(t), None),
                (t.to_string(), v.to_string())
            );
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    #[test]
    fn roboflow_test_split_is_found_and_missing_splits_name_every_place_looked_at() {
        let root = temp("roboflow-test");
        for s in ["train", "valid", "test"] {
            touch(&Layout::Roboflow.split_paths(&root, s).annotation_file);
        }
        let names: Vec<String> = find_splits(&root, None)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["train", "valid", "test"]);
        let err = Layout::detect(&root, "val2017").unwrap_err().to_string();
        for pattern in [
            "annotations/instances_val2017.json",
            "annotations/val2017.json",
            "val2017/_annotations.coco.json",
        ] {
            assert!(err.contains(pattern), "{err}");
        }
        // Nothing recognisable: the standard names, whose opening gives that error.
        let empty = temp("empty");
        assert_eq!(
            train_val_splits(&empty, None, None),
            ("train2017".to_string(), "val2017".to_string())
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
