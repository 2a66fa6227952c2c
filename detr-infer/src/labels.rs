//! Class names: COCO's 91 ids built in, or read from a COCO JSON (its `categories`), a JSON
//! array of names, or a text file with one name per line.

use std::path::Path;

use crate::error::{InferError, Result};

/// The names of COCO's category ids 0..=90 as the original DETR's demo lists them; ids that
/// COCO does not use are `"N/A"`. Official DETR weights predict these ids (`num_classes` 91).
pub const COCO_NAMES: [&str; 91] = [
    "N/A",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// Names indexed by class index (= category id for COCO-style training, as in DETR).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels {
    names: Vec<Option<String>>,
}

impl Labels {
    /// COCO's 91 ids ([`COCO_NAMES`]).
    pub fn coco() -> Self {
        Self::from_names(COCO_NAMES.iter().map(|s| s.to_string()))
    }

    /// No names: every class is shown as `class N`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Names for classes `0, 1, 2, ...` in order.
    pub fn from_names(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            names: names.into_iter().map(Some).collect(),
        }
    }

    /// Names for the given `(id, name)` pairs; other ids have none.
    pub fn from_ids(pairs: impl IntoIterator<Item = (usize, String)>) -> Self {
        let mut names: Vec<Option<String>> = Vec::new();
        for (id, name) in pairs {
            if names.len() <= id {
                names.resize(id + 1, None);
            }
            names[id] = Some(name);
        }
        Self { names }
    }

    /// The default for a model with `num_classes` classes: COCO's names when it has 91 (the
    /// official weights), otherwise none.
    pub fn default_for(num_classes: usize) -> Self {
        if num_classes == COCO_NAMES.len() {
            Self::coco()
        } else {
            Self::none()
        }
    }

    /// Reads a labels file: a COCO JSON object with `categories: [{id, name}, ...]`, a JSON
    /// array of names (index = class), or plain text with one name per line (line `i`, counted
    /// from 0, is class `i`; a trailing empty line is ignored).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| InferError::io(path, e))?;
        Self::parse(&text).map_err(|message| InferError::Labels {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the contents of a labels file (see [`Labels::load`]).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
            return Self::from_json(&value);
        }
        let mut lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        if lines.is_empty() {
            return Err("no names in the file".into());
        }
        Ok(Self::from_names(lines))
    }

    fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        use serde_json::Value;
        match value {
            Value::Array(items) => {
                let names = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("entry {i} is not a string"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(Self::from_names(names))
            }
            Value::Object(map) => {
                let cats = map
                    .get("categories")
                    .and_then(Value::as_array)
                    .ok_or("a JSON object needs a `categories` array (COCO format)")?;
                let mut pairs = Vec::with_capacity(cats.len());
                for (i, c) in cats.iter().enumerate() {
                    let id = c
                        .get("id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("category {i} has no non-negative integer `id`"))?;
                    let name = c
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("category {i} has no `name`"))?;
                    let id = usize::try_from(id)
                        .ok()
                        .filter(|&id| id < 1 << 20)
                        .ok_or_else(|| format!("category {i}: id {id} is too large"))?;
                    pairs.push((id, name.to_string()));
                }
                Ok(Self::from_ids(pairs))
            }
            _ => Err("expected a COCO JSON object or an array of names".into()),
        }
    }

    /// The name of class `id`, or `class {id}` when it has none.
    pub fn name(&self, id: usize) -> String {
        self.names
            .get(id)
            .and_then(Clone::clone)
            .unwrap_or_else(|| format!("class {id}"))
    }

    /// Number of ids covered (the largest named id + 1).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no class has a name.
    pub fn is_empty(&self) -> bool {
        self.names.iter().all(Option::is_none)
    }
}
