//! What a run reports per epoch, in the original's formats: `log.txt` (one JSON line per
//! epoch, the original's keys), `curves.png`, `eval.json` and the COCO summary on the console.

use std::path::Path;

use serde_json::json;

use crate::error::TrainError;
use crate::run::write_file;
use crate::trainer::{Averages, EvalResult};

/// The validation values of `r` as `test_*` keys and `test_coco_eval_bbox` (the 12 COCO
/// numbers): part of a `log.txt` line, and `eval.json`.
pub(crate) fn eval_json(r: &EvalResult) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in r.losses.means() {
        m.insert(format!("test_{k}"), json!(v));
    }
    m.insert("test_coco_eval_bbox".into(), json!(r.coco_stats.to_vec()));
    serde_json::Value::Object(m)
}

/// One `log.txt` line (the original's keys): `train_*` averages, `test_*` validation values
/// and the 12 COCO numbers when validation ran, `epoch`, `n_parameters`, `epoch_seconds`.
pub(crate) fn log_line(
    epoch: usize,
    train: &Averages,
    lr: f64,
    eval: Option<&EvalResult>,
    n_parameters: usize,
    seconds: f64,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("train_lr".into(), json!(lr));
    for (k, v) in train.means() {
        m.insert(format!("train_{k}"), json!(v));
    }
    if let Some(e) = eval {
        if let serde_json::Value::Object(t) = eval_json(e) {
            m.extend(t);
        }
    }
    m.insert("epoch".into(), json!(epoch));
    m.insert("n_parameters".into(), json!(n_parameters));
    m.insert("epoch_seconds".into(), json!(seconds));
    serde_json::Value::Object(m)
}

/// Writes `log.txt` (one JSON line per epoch) and `curves.png` from the history.
pub fn write_logs(dir: &Path, history: &[serde_json::Value]) -> Result<(), TrainError> {
    let mut text = String::new();
    for h in history {
        text.push_str(&h.to_string());
        text.push('\n');
    }
    write_file(&dir.join("log.txt"), text.as_bytes())?;
    let get = |key: &str| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|h| Some((h["epoch"].as_f64()? + 1.0, h[key].as_f64()?)))
            .collect()
    };
    let stat = |i: usize| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|h| {
                Some((
                    h["epoch"].as_f64()? + 1.0,
                    h["test_coco_eval_bbox"][i].as_f64()?,
                ))
            })
            .collect()
    };
    let img = crate::plot::curves(&get("train_loss"), &get("test_loss"), &stat(0), &stat(1));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| TrainError::Encode {
            path: dir.join("curves.png"),
            message: e.to_string(),
        })?;
    write_file(&dir.join("curves.png"), png.get_ref())
}

/// Prints the COCO summary.
pub fn print_eval(r: &EvalResult) {
    for (k, v) in r.losses.means() {
        if !k.contains('_')
            || k.starts_with("loss_") && !k[5..].contains('_')
            || k.ends_with("error")
        {
            tracing::info!("  test {k}: {v:.4}");
        }
    }
    for l in &r.summary_lines {
        tracing::info!("{l}");
    }
}
