//! Completeness of JPEG files. The decoder behind `image` renders a JPEG cut short as if the
//! missing part were flat grey and reports nothing; a file that ends before its end-of-image
//! marker is detected here instead, by walking the marker structure.

/// Checks that `bytes` (a JPEG file) reaches its end-of-image marker (`FF D9`).
///
/// The walk follows the file's segments (skipping each by its length, so a thumbnail's own
/// end marker inside an `APP1` segment is not mistaken for the end) and the entropy-coded data
/// after each start-of-scan (where `FF 00` is a stuffed byte and `FF D0`–`FF D7` restart
/// markers). Data after the end marker (some cameras append some) is allowed. Returns what is
/// wrong, for an error message.
pub fn check_complete(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG file (no start-of-image marker)".into());
    }
    let truncated = |at: usize| {
        Err(format!(
            "truncated JPEG: the file ends after {} bytes, before its end-of-image marker \
             (an interrupted copy or download?)",
            at
        ))
    };
    let n = bytes.len();
    let mut i = 2;
    loop {
        // A marker: FF, any fill FFs, then the code.
        if i >= n {
            return truncated(n);
        }
        if bytes[i] != 0xFF {
            // Stray bytes between segments: decoders skip them, and so does this walk.
            match bytes[i..].iter().position(|&b| b == 0xFF) {
                None => return truncated(n),
                Some(p) => i += p,
            }
        }
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return truncated(n);
        }
        let code = bytes[i];
        i += 1;
        match code {
            0xD9 => return Ok(()),
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if i + 2 > n {
            return truncated(n);
        }
        let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        if len < 2 {
            return Err(format!(
                "corrupted JPEG: segment {code:#04x} at byte {} has length {len}",
                i - 2
            ));
        }
        if i + len > n {
            return truncated(n);
        }
        i += len;
        if code == 0xDA {
            // Entropy-coded data up to the next marker that is neither a stuffed zero nor a
            // restart marker.
            loop {
                match bytes[i..].iter().position(|&b| b == 0xFF) {
                    None => return truncated(n),
                    Some(p) => i += p,
                }
                let mut j = i + 1;
                while j < n && bytes[j] == 0xFF {
                    j += 1;
                }
                if j >= n {
                    return truncated(n);
                }
                if bytes[j] == 0x00 || (0xD0..=0xD7).contains(&bytes[j]) {
                    i = j + 1;
                } else {
                    i = j - 1;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32, progressive_thumbnail: bool) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        if progressive_thumbnail {
            // An APP1 segment holding a complete little JPEG (its own FF D9) right after SOI.
            let thumb = jpeg(8, 8, false);
            let mut seg = vec![0xFF, 0xE1];
            seg.extend(((thumb.len() + 2) as u16).to_be_bytes());
            seg.extend(thumb);
            let rest = out.split_off(2);
            out.extend(seg);
            out.extend(rest);
        }
        out
    }

    #[test]
    fn complete_files_pass() {
        check_complete(&jpeg(40, 30, false)).unwrap();
        check_complete(&jpeg(40, 30, true)).unwrap();
        let mut trailing = jpeg(40, 30, false);
        trailing.extend_from_slice(b"appended data");
        check_complete(&trailing).unwrap();
    }

    #[test]
    fn every_cut_is_caught() {
        for with_thumbnail in [false, true] {
            let full = jpeg(40, 30, with_thumbnail);
            for cut in 2..full.len() - 1 {
                let err = check_complete(&full[..cut]).unwrap_err();
                assert!(err.contains("truncated"), "cut {cut}: {err}");
            }
        }
    }

    #[test]
    fn not_a_jpeg() {
        assert!(check_complete(b"\x89PNG")
            .unwrap_err()
            .contains("not a JPEG"));
    }
}
