//! Where a run's options come from: the recipe's defaults, then a configuration file, then
//! the command line; when resuming, the checkpoint's own configuration takes the place of
//! the defaults.
//!
//! Configuration files (JSON or TOML) use [`TrainConfig`]'s sections (`{"optim": {"lr":
//! 2e-4}}`) or the original's flat names (`{"lr": 2e-4}`, as `main.py`'s arguments), which are
//! moved into their section. Every key must be an option: a misspelt one is an error naming
//! it. The command line is applied with `update_from_arg_matches`, which changes only the
//! options that were typed (no flag has a clap default).

use std::path::{Path, PathBuf};

use clap::{ArgMatches, FromArgMatches};
use detr_model::Preset;
use serde_json::{Map, Value};

use crate::config::{DatasetKind, TrainConfig};
use crate::error::TrainError;

/// The sections of the tree, in order.
const SECTIONS: [&str; 6] = ["model", "matcher", "loss", "optim", "data", "run"];

/// A configuration file's options, normalised to [`TrainConfig`]'s sections.
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    /// The file.
    pub path: Option<PathBuf>,
    /// Its options (an object with section keys).
    pub value: Map<String, Value>,
}

impl FileOptions {
    /// Reads a JSON or TOML file (by extension; JSON otherwise).
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let text = text.trim_start_matches('\u{feff}');
        let is_toml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let bad = |e: String| TrainError::Config(format!("{}: {e}", path.display()));
        let value: Value = if is_toml {
            let v: toml::Value = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
            serde_json::to_value(v).map_err(|e| bad(e.to_string()))?
        } else {
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
        };
        let value = normalize(value).map_err(bad)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            value,
        })
    }

    /// Options already in the tree's shape (a checkpoint's saved configuration, which may
    /// also be of the earlier flat form).
    pub fn from_value(value: Value) -> Result<Self, TrainError> {
        let value = normalize(value).map_err(TrainError::Config)?;
        Ok(Self { path: None, value })
    }

    fn get(&self, section: &str, key: &str) -> Option<&Value> {
        self.value
            .get(section)
            .and_then(|s| s.get(key))
            .filter(|v| !v.is_null())
    }

    /// Lays the file's options over `cfg`.
    pub fn apply(&self, cfg: &TrainConfig) -> Result<TrainConfig, TrainError> {
        let mut merged = serde_json::to_value(cfg)
            .map_err(|e| TrainError::Config(format!("cannot serialise the options: {e}")))?;
        merge(&mut merged, Value::Object(self.value.clone()));
        serde_json::from_value(merged).map_err(|e| {
            let from = self
                .path
                .as_ref()
                .map_or("the saved configuration".into(), |p| {
                    p.display().to_string()
                });
            TrainError::Config(format!("{from}: {e}"))
        })
    }
}

/// Moves flat keys into their sections and checks every key against the tree.
fn normalize(value: Value) -> Result<Map<String, Value>, String> {
    let Value::Object(given) = value else {
        return Err("the options must be an object (a table in TOML)".into());
    };
    let Ok(Value::Object(tree)) = serde_json::to_value(TrainConfig::original()) else {
        return Err("cannot serialise the default options".into());
    };
    let mut out = Map::new();
    let mut put = |path: &[&str], v: Value| {
        let mut slot = &mut out;
        for p in &path[..path.len() - 1] {
            slot = slot
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("sections are objects");
        }
        slot.insert(path[path.len() - 1].to_string(), v);
    };
    for (key, v) in given {
        if SECTIONS.contains(&key.as_str()) {
            let Value::Object(fields) = v else {
                return Err(format!("`{key}` must be a section (an object)"));
            };
            for (k, x) in fields {
                check_key(&tree[&key], &k, &x, &format!("{key}."))?;
                put(&[&key, &k], x);
            }
            continue;
        }
        // The original's flat names (and the earlier flat form of this file).
        if key == "aux_loss" || key == "preset" || key == "num_classes" || key == "pretrained" {
            if !v.is_null() {
                let path: &[&str] = if key == "aux_loss" {
                    &["model", "arch", "aux_loss"]
                } else {
                    &["model", &key]
                };
                put(path, v);
            }
            continue;
        }
        if tree["model"]["arch"].get(&key).is_some() {
            if !v.is_null() {
                put(&["model", "arch", &key], v);
            }
            continue;
        }
        let Some(section) = SECTIONS
            .iter()
            .find(|s| tree[**s].get(&key).is_some() && **s != "model")
        else {
            return Err(format!("unknown option `{key}`"));
        };
        check_key(&tree[*section], &key, &v, "")?;
        put(&[section, &key], v);
    }
    Ok(out)
}

/// `key` is an option of `section` (recursively for nested sections).
fn check_key(section: &Value, key: &str, value: &Value, prefix: &str) -> Result<(), String> {
    let Some(default) = section.get(key) else {
        return Err(format!("unknown option `{prefix}{key}`"));
    };
    if let (Value::Object(d), Value::Object(v)) = (default, value) {
        for (k, x) in v {
            check_key(&Value::Object(d.clone()), k, x, &format!("{prefix}{key}."))?;
        }
    }
    Ok(())
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A value the user typed on the command line.
fn typed<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Option<T> {
    matches.try_get_one::<T>(id).ok().flatten().cloned()
}

/// The options of a new run: the recipe's defaults (chosen by the dataset kind), the preset's
/// architecture, the file, the command line.
pub fn resolve_new(matches: &ArgMatches, file: &FileOptions) -> Result<TrainConfig, TrainError> {
    let kind = typed::<DatasetKind>(matches, "dataset_file")
        .or_else(|| {
            file.get("data", "dataset_file")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
        })
        .unwrap_or_else(|| {
            let has_path = typed::<PathBuf>(matches, "coco_path").is_some()
                || file.get("data", "coco_path").is_some();
            if has_path {
                DatasetKind::Coco
            } else {
                DatasetKind::Synthetic
            }
        });
    let mut cfg = TrainConfig::defaults_for(kind);
    cfg.data.dataset_file = kind;
    let preset = chosen_preset(matches, file)?;
    if let Some(p) = preset.filter(|p| *p != cfg.model.preset) {
        cfg.model.preset = p;
        cfg.model.arch = p.config();
    }
    let mut cfg = file.apply(&cfg)?;
    apply_launcher_env(&mut cfg, |k| std::env::var(k).ok())?;
    cfg.update_from_arg_matches(matches)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

/// torchrun's (and the original's `init_distributed_mode`'s) `WORLD_SIZE` and `RANK`, laid
/// over the file's options and under the command line's.
pub fn apply_launcher_env(
    cfg: &mut TrainConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), TrainError> {
    for (name, slot) in [
        ("WORLD_SIZE", &mut cfg.run.world_size),
        ("RANK", &mut cfg.run.rank),
    ] {
        if let Some(v) = env(name) {
            *slot = v.trim().parse().map_err(|_| {
                TrainError::Config(format!(
                    "the environment variable {name}={v} is not a whole number"
                ))
            })?;
        }
    }
    Ok(())
}

/// The preset named on the command line, else in the file.
fn chosen_preset(matches: &ArgMatches, file: &FileOptions) -> Result<Option<Preset>, TrainError> {
    if let Some(p) = typed::<Preset>(matches, "preset") {
        return Ok(Some(p));
    }
    match file.get("model", "preset") {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| TrainError::Config(format!("preset: {e}"))),
    }
}

/// The options of a resumed run: the checkpoint's configuration (`saved`), with the file and
/// the command line laid over it. An architecture that differs from the checkpoint's is an
/// error naming each option; the others (`epochs`, `lr_drop`, `output_dir`, `lr`, …) may
/// change.
pub fn resolve_resumed(
    saved: &TrainConfig,
    matches: &ArgMatches,
    file: &FileOptions,
) -> Result<TrainConfig, TrainError> {
    let mut cfg = saved.clone();
    if let Some(p) = chosen_preset(matches, file)?.filter(|p| *p != saved.model.preset) {
        cfg.model.preset = p;
        cfg.model.arch = p.config();
    }
    let mut cfg = file.apply(&cfg)?;
    cfg.update_from_arg_matches(matches)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let conflicts = architecture_changes(saved, &cfg);
    if !conflicts.is_empty() {
        return Err(TrainError::Config(format!(
            "the checkpoint was trained with another model; these options contradict it: {}. \
             Leave them out (the checkpoint's configuration is used) or start a new run",
            conflicts.join(", ")
        )));
    }
    // Only the architecture must match: the preset's name alone may differ.
    cfg.model.preset = saved.model.preset;
    cfg.validate()?;
    Ok(cfg)
}

/// The architecture options in which `now` differs from `saved`, as `--name value (the
/// checkpoint has value)`.
fn architecture_changes(saved: &TrainConfig, now: &TrainConfig) -> Vec<String> {
    let to_map = |c: &TrainConfig| match serde_json::to_value(&c.model.arch) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let (a, b) = (to_map(saved), to_map(now));
    let mut out: Vec<String> = b
        .iter()
        // The class count is compared below; the auxiliary losses and dropout change no
        // parameter.
        .filter(|(k, v)| {
            !matches!(k.as_str(), "num_classes" | "aux_loss" | "dropout") && a.get(*k) != Some(*v)
        })
        .map(|(k, v)| {
            format!(
                "--{k} {v} (the checkpoint has {})",
                a.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if !out.is_empty() && saved.model.preset != now.model.preset {
        out.insert(
            0,
            format!(
                "--preset {} (the checkpoint has {})",
                now.model.preset, saved.model.preset
            ),
        );
    }
    if let (Some(s), Some(n)) = (saved.model.num_classes, now.model.num_classes) {
        if s != n {
            out.push(format!("--num_classes {n} (the checkpoint has {s})"));
        }
    }
    out
}

/// The run's options from the command line (`matches`, with `--config FILE` read into
/// `file`); with `--resume` of a detr-train checkpoint that carries its configuration,
/// [`resolve_resumed`] over it.
pub fn resolve(matches: &ArgMatches, file: &FileOptions) -> Result<TrainConfig, TrainError> {
    let given = resolve_new(matches, file)?;
    let Some(path) = &given.run.resume else {
        return Ok(given);
    };
    let saved = match crate::checkpoint::read_state(path) {
        Ok(state) => state.config,
        // Not a training checkpoint (model weights, or an error reported by the run).
        Err(_) => None,
    };
    let Some(saved) = saved else {
        return Ok(given);
    };
    // How the processes of this launch meet is this launch's, never the checkpoint's.
    let launch = given.run.clone();
    let saved = match saved_config(saved) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "{}: its configuration cannot be read ({e}); using the command line's",
                path.display()
            );
            return Ok(given);
        }
    };
    let mut cfg = resolve_resumed(&saved, matches, file).map_err(|e| match e {
        TrainError::Config(m) => TrainError::Config(format!("--resume {}: {m}", path.display())),
        other => other,
    })?;
    cfg.run.world_size = launch.world_size;
    cfg.run.rank = launch.rank;
    cfg.run.dist_url = launch.dist_url;
    cfg.run.dist_timeout = launch.dist_timeout;
    cfg.validate()?;
    Ok(cfg)
}

/// A checkpoint's saved configuration (this tree, or the earlier flat form).
pub fn saved_config(value: Value) -> Result<TrainConfig, TrainError> {
    let file = FileOptions::from_value(value)?;
    let mut base = TrainConfig::original();
    if let Some(v) = file.get("model", "preset") {
        let p: Preset = serde_json::from_value(v.clone())
            .map_err(|e| TrainError::Config(format!("preset: {e}")))?;
        base.model.preset = p;
        base.model.arch = p.config();
    }
    file.apply(&base)
}
