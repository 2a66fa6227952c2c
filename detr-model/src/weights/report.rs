//! What a checkpoint load did, in the spirit of PyTorch's `load_state_dict(strict=False)`.

use std::fmt;

/// The outcome of loading a checkpoint into a model. Names are official DETR names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded.
    pub loaded: Vec<String>,
    /// Tensors the model has but the checkpoint lacks (left as initialised).
    pub missing: Vec<String>,
    /// Tensors in the checkpoint that the model has no place for (ignored).
    pub unexpected: Vec<String>,
    /// Tensors whose shape differs: `(name, model shape, checkpoint shape)` (not loaded).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Tensors deliberately skipped and left freshly initialised (e.g. the class head when
    /// fine-tuning with another class count).
    pub reinitialized: Vec<String>,
    /// Remarks about the file that are not errors (e.g. a model file written before
    /// checksums existed, which could not be verified).
    pub notes: Vec<String>,
}

impl LoadReport {
    /// True when every model tensor was loaded from the checkpoint and nothing was left over.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.reinitialized.is_empty()
    }
}

fn list(f: &mut fmt::Formatter<'_>, title: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(f, "  {title} ({}):", items.len())?;
    for item in items.iter().take(20) {
        writeln!(f, "    {item}")?;
    }
    if items.len() > 20 {
        writeln!(f, "    … and {} more", items.len() - 20)?;
    }
    Ok(())
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loaded {} tensors; {} missing, {} unexpected, {} shape-mismatched, {} re-initialised",
            self.loaded.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.reinitialized.len()
        )?;
        list(f, "missing", &self.missing)?;
        list(f, "unexpected", &self.unexpected)?;
        let mismatched: Vec<String> = self
            .mismatched
            .iter()
            .map(|(n, m, c)| format!("{n}: model {m:?}, checkpoint {c:?}"))
            .collect();
        list(f, "shape mismatch", &mismatched)?;
        list(f, "re-initialised", &self.reinitialized)?;
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}
