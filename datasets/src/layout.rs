//! Where a split's images and annotation file live inside a dataset folder.
//!
//! Two layouts are understood, with configurable split names:
//!
//! | layout     | images                  | annotations                                 |
//! |------------|-------------------------|---------------------------------------------|
//! | `Standard` | `<root>/train2017/`     | `<root>/annotations/instances_train2017.json` |
//! | `Seed`     | `<root>/images/train2023/` | `<root>/annotations/train2023.json`      |

use crate::error::{DatasetError, Result};
use std::path::{Path, PathBuf};

/// The folder layout of a COCO-format dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// COCO's own: `<split>/` and `annotations/instances_<split>.json`.
    #[default]
    Standard,
    /// The seed project's: `images/<split>/` and `annotations/<split>.json`.
    Seed,
}

impl Layout {
    /// Parses `standard`/`coco` or `seed`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "standard" | "coco" => Ok(Layout::Standard),
            "seed" => Ok(Layout::Seed),
            other => Err(DatasetError::Config(format!(
                "unknown dataset layout `{other}` (expected `standard` or `seed`)"
            ))),
        }
    }

    /// The default `(train, val)` split names: `train2017`/`val2017` (standard) or
    /// `train2023`/`val2023` (seed).
    pub fn default_split_names(self) -> (&'static str, &'static str) {
        match self {
            Layout::Standard => ("train2017", "val2017"),
            Layout::Seed => ("train2023", "val2023"),
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
            Layout::Seed => SplitPaths {
                images_dir: root.join("images").join(split),
                annotation_file: root.join("annotations").join(format!("{split}.json")),
            },
        }
    }

    /// The layout whose annotation file for `split` exists under `root`.
    pub fn detect(root: impl AsRef<Path>, split: &str) -> Result<Self> {
        let root = root.as_ref();
        for layout in [Layout::Standard, Layout::Seed] {
            if layout.split_paths(root, split).annotation_file.is_file() {
                return Ok(layout);
            }
        }
        Err(DatasetError::Layout {
            path: root.to_path_buf(),
            message: format!(
                "no annotation file for split `{split}`: looked for annotations/instances_{split}.json \
                 (standard layout) and annotations/{split}.json (seed layout)"
            ),
        })
    }
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

    #[test]
    fn paths_of_both_layouts() {
        let s = Layout::Standard.split_paths("/d", "val2017");
        assert_eq!(s.images_dir, PathBuf::from("/d/val2017"));
        assert_eq!(
            s.annotation_file,
            PathBuf::from("/d/annotations/instances_val2017.json")
        );
        let s = Layout::Seed.split_paths("/d", "train2023");
        assert_eq!(s.images_dir, PathBuf::from("/d/images/train2023"));
        assert_eq!(
            s.annotation_file,
            PathBuf::from("/d/annotations/train2023.json")
        );
        assert_eq!(Layout::parse("SEED").unwrap(), Layout::Seed);
        assert!(Layout::parse("x").is_err());
    }
}
