//! What processes exchange besides sums, as floats: weight fingerprints and detections.

use burn::prelude::*;

use crate::error::TrainError;
use crate::step::ImageResult;

/// A 48-bit FNV-1a hash of every float parameter of `module`, bit for bit: equal on two
/// processes exactly when their weights are.
pub fn fingerprint<B: Backend, M: Module<B>>(module: &M) -> u64 {
    struct Hasher(u64);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Hasher {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            for byte in param.val().into_data().as_bytes() {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
    }
    let mut h = Hasher(0xCBF2_9CE4_8422_2325);
    module.visit(&mut h);
    h.0 & 0xFFFF_FFFF_FFFF
}

/// Detections as floats for [`ProcessGroup::gather`]: per image its id (two 24-bit halves),
/// its query count, then score, label and box of each query. Exact for ids below 2^48 and
/// labels below 2^24.
pub fn encode_detections(images: &[ImageResult]) -> Result<Vec<f32>, TrainError> {
    const HALF: u64 = 1 << 24;
    let mut out = Vec::new();
    for d in images {
        if d.image_id >= HALF * HALF {
            return Err(TrainError::Distributed(format!(
                "image id {} is too large to exchange exactly",
                d.image_id
            )));
        }
        out.push((d.image_id / HALF) as f32);
        out.push((d.image_id % HALF) as f32);
        out.push(d.scores.len() as f32);
        for ((s, l), b) in d.scores.iter().zip(&d.labels).zip(&d.boxes) {
            out.push(*s);
            out.push(*l as f32);
            out.extend_from_slice(b);
        }
    }
    Ok(out)
}

/// The inverse of [`encode_detections`].
pub fn decode_detections(values: &[f32]) -> Result<Vec<ImageResult>, TrainError> {
    let bad = || TrainError::Distributed("received detections are malformed".into());
    let mut out = Vec::new();
    let mut at = 0;
    while at < values.len() {
        let head = values.get(at..at + 3).ok_or_else(bad)?;
        let image_id = head[0] as u64 * (1 << 24) + head[1] as u64;
        let n = head[2] as usize;
        at += 3;
        let body = values.get(at..at + 6 * n).ok_or_else(bad)?;
        at += 6 * n;
        let mut d = ImageResult {
            image_id,
            scores: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            boxes: Vec::with_capacity(n),
        };
        for q in body.chunks_exact(6) {
            d.scores.push(q[0]);
            d.labels.push(q[1] as usize);
            d.boxes.push([q[2], q[3], q[4], q[5]]);
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_survive_the_float_encoding_exactly() {
        let images = vec![
            ImageResult {
                image_id: 581_929,
                scores: vec![0.25, 0.9],
                labels: vec![90, 3],
                boxes: vec![[0.5, 1.0, 20.25, 30.0], [1.0, 2.0, 3.0, 4.0]],
            },
            ImageResult {
                image_id: (1 << 40) + 7,
                scores: vec![],
                labels: vec![],
                boxes: vec![],
            },
        ];
        let back = decode_detections(&encode_detections(&images).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in images.iter().zip(&back) {
            assert_eq!(a.image_id, b.image_id);
            assert_eq!(a.scores, b.scores);
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.boxes, b.boxes);
        }
        assert!(decode_detections(&[1.0, 2.0, 5.0, 0.1]).is_err());
    }
}
