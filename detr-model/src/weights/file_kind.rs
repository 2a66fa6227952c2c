//! What a file given as a checkpoint looks like, when it is not one of ours: empty, text
//! (JSON or not), a zip archive (`.pth`), safetensors, a pickle, or unknown bytes. Both the
//! loader's first look ([`check_plausible`]) and the container's errors name it this way.

use std::io::Read;
use std::path::Path;

use super::container::{is_bare_record, MAGIC};
use crate::error::ModelError;

/// Lower-case hexadecimal digits of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error for a file that is not a checkpoint, with what it looks like.
pub(super) fn not_ours(path: &Path, message: String) -> ModelError {
    ModelError::NotACheckpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Says what a file that is not a container nor a bare Burn record looks like.
pub(super) fn identify_foreign(path: &Path, bytes: &[u8]) -> ModelError {
    if bytes.is_empty() {
        return not_ours(path, "the file is empty (0 bytes)".into());
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return not_ours(
            path,
            "a zip archive (a PyTorch `.pth` checkpoint?), not a detr-rs file; \
             load it with --format detr-pth (or rename it to .pth)"
                .into(),
        );
    }
    if bytes.len() >= 10 && bytes[8] == b'{' && bytes[9] == b'"' {
        return not_ours(
            path,
            "a safetensors file, not a detr-rs file; load it with --format hf-safetensors \
             (or rename it to .safetensors)"
                .into(),
        );
    }
    if bytes.first() == Some(&0x80) {
        return not_ours(
            path,
            "a Python pickle (an old-style PyTorch checkpoint?), not a detr-rs file".into(),
        );
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // A multi-byte character cut at the 512th byte is still text.
        Err(e) if e.valid_up_to() + 4 >= head.len() && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    if let Some(text) = text.filter(|t| {
        !t.chars()
            .any(|c| c.is_control() && !c.is_ascii_whitespace())
    }) {
        let first_line: String = text
            .trim_start_matches('\u{feff}')
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        let hint = if text.trim_start().starts_with('{') {
            " (a JSON file: a configuration goes to --config, the weights to --weights)"
        } else {
            ""
        };
        return not_ours(
            path,
            format!("a text file, not model weights{hint}; it starts with `{first_line}`"),
        );
    }
    not_ours(
        path,
        format!(
            "not a detr-rs model or checkpoint (unknown format; it starts with bytes {})",
            hex(&bytes[..bytes.len().min(8)])
        ),
    )
}

/// Rejects what cannot be a checkpoint of any format, whatever its name: a directory, an
/// empty file, a text file. Reads at most 512 bytes.
pub fn check_plausible(path: &Path) -> Result<(), ModelError> {
    if path.is_dir() {
        return Err(not_ours(
            path,
            "a directory, not a checkpoint file (pass the file inside it, e.g. DIR/model.mpk)"
                .into(),
        ));
    }
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if head.starts_with(&MAGIC) || is_bare_record(&head) {
        return Ok(());
    }
    match identify_foreign(path, &head) {
        e @ ModelError::NotACheckpoint { .. }
            if head.is_empty() || e.to_string().contains("a text file") =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}
