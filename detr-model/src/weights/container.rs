//! A checksummed container for the files detr-rs writes itself (`model.mpk`, training
//! checkpoints): a small self-describing header in front of a Burn record, and a digest of
//! the whole file at its end.
//!
//! Layout (all integers little-endian):
//!
//! | bytes              | content                                                   |
//! |--------------------|-----------------------------------------------------------|
//! | 8                  | [`MAGIC`] (`\x89DETRRS\n`; the high first byte marks it binary) |
//! | 4                  | header length `H` (u32)                                   |
//! | `H`                | header, JSON ([`ContainerHeader`] without its checksum)  |
//! | `payload_len`      | payload (a Burn named-MessagePack record)                 |
//! | 32                 | SHA-256 of every byte before it                          |
//!
//! The digest is SHA-256 ([`sha2`], RustCrypto): a well-kept crate already in the dependency
//! tree, hardware-accelerated where the CPU has SHA extensions, and strong enough that a
//! corrupted file (flipped bits, a bad copy, two files spliced) is never mistaken for a good
//! one; it also covers the header, so a damaged configuration is caught as well. Because the
//! header records the payload length, a truncated file is reported as such, with the sizes.
//!
//! Files written before the container existed are bare Burn records; [`unwrap`] recognises
//! them (they start with the record's `metadata` map) and returns them with `header: None`:
//! they still load, but nothing can verify them.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::file_kind::{hex, identify_foreign, not_ours};
use crate::error::ModelError;

/// First bytes of every container.
pub const MAGIC: [u8; 8] = *b"\x89DETRRS\n";

/// The container layout written by this version (see the module documentation).
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the trailing SHA-256 digest.
const DIGEST_LEN: usize = 32;

/// Bytes before the header: the magic and the header length.
const PREFIX_LEN: usize = MAGIC.len() + 4;

/// Largest header accepted (a header holds a configuration, never tensors).
const MAX_HEADER_LEN: usize = 1 << 20;

/// Bytes 1..10 of a bare Burn named-MessagePack record: its first key, `metadata` (Burn's
/// `BurnRecord { metadata, item, .. }` is a small map).
const BARE_RECORD_KEY: &[u8] = b"\xa8metadata";

/// Whether `bytes` start like a bare Burn named-MessagePack record (a small map whose first
/// key is `metadata`), as detr-rs wrote before the container existed.
pub fn is_bare_record(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| (0x81..=0x8f).contains(b))
        && bytes[1..].starts_with(BARE_RECORD_KEY)
}

/// What a container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// A model's weights (`model.mpk`); the metadata holds its `DetrConfig` under `config`.
    Model,
    /// A training checkpoint: model, optimiser and progress, written to resume a run.
    TrainingState,
}

impl ContainerKind {
    /// What a user would call a file of this kind.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Model => "a detr-rs model file",
            Self::TrainingState => "a detr-train training checkpoint",
        }
    }
}

/// The header of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerHeader {
    /// Container layout version ([`FORMAT_VERSION`] when written by this version).
    pub format_version: u32,
    /// The program and version that wrote the file, e.g. `detr-rs 0.1.0`.
    pub producer: String,
    /// What the payload is.
    pub kind: ContainerKind,
    /// Free-form description of the payload (for [`ContainerKind::Model`], `{"config": …}`).
    pub metadata: serde_json::Value,
    /// Bytes of the payload.
    pub payload_len: u64,
    /// SHA-256 of the file before the digest, as lowercase hex (stored as the file's last 32
    /// bytes, not in the JSON header).
    #[serde(skip)]
    pub checksum: String,
}

/// A file taken apart by [`unwrap`].
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrapped<'a> {
    /// The verified header; `None` for a bare Burn record written before containers existed
    /// (it carries no checksum).
    pub header: Option<ContainerHeader>,
    /// The Burn record.
    pub payload: &'a [u8],
}

fn producer() -> String {
    format!("detr-rs {}", env!("CARGO_PKG_VERSION"))
}

/// Puts `payload` into a container of `kind` with `metadata`, ready to be written.
pub fn wrap(kind: ContainerKind, metadata: serde_json::Value, payload: &[u8]) -> Vec<u8> {
    let header = ContainerHeader {
        format_version: FORMAT_VERSION,
        producer: producer(),
        kind,
        metadata,
        payload_len: payload.len() as u64,
        checksum: String::new(),
    };
    // A `serde_json::Value` and plain fields always serialise.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = Vec::with_capacity(PREFIX_LEN + json.len() + payload.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn corrupt(path: &Path, message: String) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        message,
    }
}

/// Parses the prefix and header of a container, checking what can be checked without the
/// payload. Returns the header and the offset of the payload.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    file_len: u64,
) -> Result<(ContainerHeader, usize), ModelError> {
    if bytes.len() < PREFIX_LEN {
        return Err(corrupt(
            path,
            format!(
                "truncated: a detr-rs file cut after {file_len} bytes (its header alone needs more)"
            ),
        ));
    }
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(corrupt(
            path,
            format!("corrupted: the header length ({header_len} bytes) is impossible"),
        ));
    }
    if (bytes.len() as u64) < (PREFIX_LEN + header_len) as u64 {
        return Err(corrupt(
            path,
            format!(
                "truncated: expected at least {} bytes (the header), found {file_len}",
                PREFIX_LEN + header_len
            ),
        ));
    }
    let header: ContainerHeader =
        serde_json::from_slice(&bytes[PREFIX_LEN..PREFIX_LEN + header_len])
            .map_err(|e| corrupt(path, format!("corrupted: the header cannot be read ({e})")))?;
    if header.format_version > FORMAT_VERSION {
        return Err(not_ours(
            path,
            format!(
                "written by {} in container format {}; this version reads format {FORMAT_VERSION} \
                 and older: upgrade detr-rs",
                header.producer, header.format_version
            ),
        ));
    }
    Ok((header, PREFIX_LEN + header_len))
}

/// Takes a file's bytes apart and verifies them: magic, header, length and checksum.
///
/// A bare Burn record (written by detr-rs before containers existed) is returned with
/// `header: None`. Errors name `path` and say what is wrong: an empty file, a text file,
/// another format, a truncated file (with the expected and found sizes), a checksum mismatch.
pub fn unwrap<'a>(path: &Path, bytes: &'a [u8]) -> Result<Unwrapped<'a>, ModelError> {
    if !bytes.starts_with(&MAGIC) {
        if is_bare_record(bytes) {
            return Ok(Unwrapped {
                header: None,
                payload: bytes,
            });
        }
        return Err(identify_foreign(path, bytes));
    }
    let found = bytes.len() as u64;
    let (mut header, start) = parse_header(path, bytes, found)?;
    let expected = start as u64 + header.payload_len + DIGEST_LEN as u64;
    if found < expected {
        return Err(corrupt(
            path,
            format!(
                "truncated: expected {expected} bytes, found {found} ({} missing; an interrupted \
                 copy or download?)",
                expected - found
            ),
        ));
    }
    if found > expected {
        return Err(corrupt(
            path,
            format!(
                "corrupted: expected {expected} bytes, found {found} ({} extra bytes at the end)",
                found - expected
            ),
        ));
    }
    let body_end = bytes.len() - DIGEST_LEN;
    let stored = &bytes[body_end..];
    let actual = Sha256::digest(&bytes[..body_end]);
    if actual.as_slice() != stored {
        return Err(corrupt(
            path,
            format!(
                "corrupted: checksum mismatch (SHA-256 stored {}, computed {}); the file was \
                 damaged after it was written",
                hex(stored),
                hex(&actual)
            ),
        ));
    }
    header.checksum = hex(stored);
    Ok(Unwrapped {
        header: Some(header),
        payload: &bytes[start..body_end],
    })
}

/// Reads only the header of the container at `path`, without reading or verifying the
/// payload (e.g. to learn a model's configuration). `Ok(None)` for a bare Burn record.
pub fn read_header(path: &Path) -> Result<Option<ContainerHeader>, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(not_ours(path, "a directory, not a file".into()));
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    (&mut file)
        .take(PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(io)?;
    if !prefix.starts_with(&MAGIC) {
        if is_bare_record(&prefix) {
            return Ok(None);
        }
        let mut head = prefix;
        (&mut file).take(512).read_to_end(&mut head).map_err(io)?;
        return Err(identify_foreign(path, &head));
    }
    if prefix.len() == PREFIX_LEN {
        let header_len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as u64;
        (&mut file)
            .take(header_len.min(MAX_HEADER_LEN as u64 + 1))
            .read_to_end(&mut prefix)
            .map_err(io)?;
    }
    let (header, start) = parse_header(path, &prefix, file_len)?;
    let expected = start as u64 + header.payload_len + DIGEST_LEN as u64;
    if file_len < expected {
        return Err(corrupt(
            path,
            format!("truncated: expected {expected} bytes, found {file_len}"),
        ));
    }
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("run/model.mpk")
    }

    fn sample() -> Vec<u8> {
        let mut payload = b"\x83\xa8metadata".to_vec();
        payload.extend((0..1000u32).map(|i| (i * 7 % 251) as u8));
        wrap(
            ContainerKind::Model,
            serde_json::json!({"config": {"num_queries": 10}}),
            &payload,
        )
    }

    #[test]
    fn round_trip_returns_the_payload_and_header() {
        let payload = b"\x83\xa8metadata and more".to_vec();
        let bytes = wrap(
            ContainerKind::TrainingState,
            serde_json::json!({"epoch": 3}),
            &payload,
        );
        let u = unwrap(p(), &bytes).unwrap();
        assert_eq!(u.payload, &payload[..]);
        let h = u.header.unwrap();
        assert_eq!(h.kind, ContainerKind::TrainingState);
        assert_eq!(h.metadata["epoch"], 3);
        assert_eq!(h.payload_len, payload.len() as u64);
        assert_eq!(h.format_version, FORMAT_VERSION);
        assert!(h.producer.starts_with("detr-rs "));
        assert_eq!(h.checksum.len(), 64);
    }

    #[test]
    fn kind_is_snake_case_in_json() {
        assert_eq!(
            serde_json::to_string(&ContainerKind::TrainingState).unwrap(),
            "\"training_state\""
        );
    }

    #[test]
    fn bare_burn_record_is_legacy() {
        let bare = b"\x83\xa8metadata\x85\xa5float".to_vec();
        let u = unwrap(p(), &bare).unwrap();
        assert!(u.header.is_none());
        assert_eq!(u.payload, &bare[..]);
    }

    #[test]
    fn truncation_is_reported_with_sizes() {
        let bytes = sample();
        for cut in [bytes.len() - 1, bytes.len() / 2, 20, 10] {
            let err = unwrap(p(), &bytes[..cut]).unwrap_err().to_string();
            assert!(err.contains("run/model.mpk"), "{err}");
            assert!(err.contains("truncated"), "{err}");
            assert!(err.contains(&cut.to_string()), "{err}");
        }
        let err = unwrap(p(), &bytes[..bytes.len() - 5])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "expected {} bytes, found {}",
                bytes.len(),
                bytes.len() - 5
            )),
            "{err}"
        );
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = sample();
        for i in (0..bytes.len()).step_by(37) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            let err = unwrap(p(), &bad).unwrap_err().to_string();
            assert!(err.contains("run/model.mpk"), "byte {i}: {err}");
        }
        let mut bad = bytes.clone();
        let mid = bytes.len() / 2;
        bad[mid] ^= 1;
        let err = unwrap(p(), &bad).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn appended_bytes_are_an_error() {
        let mut bytes = sample();
        bytes.extend_from_slice(b"junk");
        let err = unwrap(p(), &bytes).unwrap_err().to_string();
        assert!(err.contains("4 extra bytes"), "{err}");
    }

    #[test]
    fn foreign_files_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b"hello world\nsecond line\n", "text file"),
            (b"{\"backbone\": \"resnet18\"}", "JSON file"),
            (b"PK\x03\x04rest", "zip archive"),
            (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", "safetensors"),
            (b"\x00\x01\x02\x03\xff\xfe", "not a detr-rs model"),
        ];
        for (bytes, want) in cases {
            let err = unwrap(p(), bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains("run/model.mpk"), "{err}");
        }
    }

    #[test]
    fn newer_format_asks_for_an_upgrade() {
        let mut bytes = sample();
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let mut header: serde_json::Value =
            serde_json::from_slice(&bytes[12..12 + header_len]).unwrap();
        header["format_version"] = 99.into();
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend((json.len() as u32).to_le_bytes());
        out.extend(json);
        out.extend(&bytes[12 + header_len..]);
        bytes = out;
        let err = unwrap(p(), &bytes).unwrap_err().to_string();
        assert!(err.contains("upgrade"), "{err}");
    }

    #[test]
    fn read_header_reads_only_the_header() {
        let dir = std::env::temp_dir().join(format!("detr-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.mpk");
        std::fs::write(&path, sample()).unwrap();
        let h = read_header(&path).unwrap().unwrap();
        assert_eq!(h.metadata["config"]["num_queries"], 10);
        std::fs::write(&path, b"\x83\xa8metadata\x85\xa5float\xa3f32").unwrap();
        assert!(read_header(&path).unwrap().is_none());
        let err = read_header(&dir).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
