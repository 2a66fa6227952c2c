//! The images to predict on: files and folders from the command line, their COCO image ids
//! and unique output names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{InferError, Result};

/// File extensions taken from a folder (case-insensitive). Files named explicitly are always
/// tried, whatever their extension.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    /// The file, as given or found in a given folder.
    pub path: PathBuf,
    /// The `image_id` written to `predictions.json`.
    pub image_id: u64,
    /// A unique base name for the pictures written for this image.
    pub output_stem: String,
}

impl InputImage {
    /// The path as text (for `file_name` and messages).
    pub fn display_name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Expands files and folders (a folder contributes its image files, sorted by name, not
/// recursively) into the input list. Image ids are the file stems when all of them are
/// distinct integers (COCO's `000000039769.jpg` → 39769, so the predictions can be evaluated
/// against COCO's ground truth), otherwise the position in the list counted from 1.
pub fn collect_inputs(args: &[PathBuf]) -> Result<Vec<InputImage>> {
    let mut paths = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(|e| InferError::io(arg, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            found.sort();
            paths.extend(found);
        } else {
            paths.push(arg.clone());
        }
    }
    if paths.is_empty() {
        return Err(InferError::Config(
            "no input images (give image files or folders with images)".into(),
        ));
    }
    let numeric: Option<Vec<u64>> = paths
        .iter()
        .map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .collect();
    let ids: Vec<u64> = match numeric {
        Some(ids) if ids.iter().collect::<HashSet<_>>().len() == ids.len() => ids,
        _ => (1..=paths.len() as u64).collect(),
    };
    let mut used = HashSet::new();
    Ok(paths
        .into_iter()
        .zip(ids)
        .map(|(path, image_id)| {
            let base = sanitize(
                &path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            let mut stem = base.clone();
            let mut n = 2;
            while !used.insert(stem.clone()) {
                stem = format!("{base}_{n}");
                n += 1;
            }
            InputImage {
                path,
                image_id,
                output_stem: stem,
            }
        })
        .collect())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Keeps letters, digits, `-`, `_` and `.`; anything else becomes `_`.
fn sanitize(stem: &str) -> String {
    let s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "image".into()
    } else {
        s
    }
}
