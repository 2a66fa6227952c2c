//! Training targets in pixel coordinates, prepared from COCO annotations as the original
//! DETR's `ConvertCocoPolysToMask` does (without masks).

use crate::coco::CocoAnnotation;

/// The target of one image while it is being transformed: boxes are `(x0, y0, x1, y1)` in pixels
/// of the current image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PixelTarget {
    /// Boxes `(x0, y0, x1, y1)` in pixels.
    pub boxes: Vec<[f32; 4]>,
    /// Category id of each box.
    pub labels: Vec<usize>,
    /// Area of each box (COCO's `area` at first; scaled by resizes, recomputed by crops).
    pub area: Vec<f32>,
    /// Crowd flag of each box.
    pub iscrowd: Vec<bool>,
    /// COCO image id.
    pub image_id: u64,
    /// Size of the decoded image `(height, width)`.
    pub orig_size: [usize; 2],
    /// Current size `(height, width)`.
    pub size: [usize; 2],
}

/// What [`prepare_target`] left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedBoxes {
    /// Crowd annotations (never training targets).
    pub crowd: usize,
    /// Boxes of zero width or height after clamping to the image (zero-area or out of image).
    pub degenerate: usize,
}

impl DroppedBoxes {
    /// All dropped boxes.
    pub fn total(&self) -> usize {
        self.crowd + self.degenerate
    }
}

impl PixelTarget {
    /// Number of boxes.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there is no box.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Keeps the boxes for which `keep` is true (with their labels, areas and crowd flags).
    pub fn retain(&mut self, keep: &[bool]) {
        fn filter<T: Copy>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep[i];
                i += 1;
                k
            });
        }
        filter(&mut self.boxes, keep);
        filter(&mut self.labels, keep);
        filter(&mut self.area, keep);
        filter(&mut self.iscrowd, keep);
    }
}

/// Builds the target of an image of `width`×`height` pixels from its annotations, as the
/// original does: crowd annotations are dropped, `xywh` becomes `xyxy` (in float32), boxes are
/// clamped to the image, and boxes with no width or height left are dropped (counted).
pub fn prepare_target(
    image_id: u64,
    annotations: &[&CocoAnnotation],
    width: usize,
    height: usize,
) -> (PixelTarget, DroppedBoxes) {
    let (w, h) = (width as f32, height as f32);
    let mut dropped = DroppedBoxes::default();
    let mut t = PixelTarget {
        image_id,
        orig_size: [height, width],
        size: [height, width],
        ..Default::default()
    };
    for a in annotations {
        if a.iscrowd != 0 {
            dropped.crowd += 1;
            continue;
        }
        let [x, y, bw, bh] = a.bbox.map(|v| v as f32);
        let b = [
            x.clamp(0.0, w),
            y.clamp(0.0, h),
            (x + bw).clamp(0.0, w),
            (y + bh).clamp(0.0, h),
        ];
        // NaN compares false and is dropped too.
        if !(b[3] > b[1] && b[2] > b[0]) {
            dropped.degenerate += 1;
            continue;
        }
        t.boxes.push(b);
        t.labels.push(a.category_id as usize);
        t.area.push(a.area as f32);
        t.iscrowd.push(false);
    }
    (t, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(id: u64, bbox: [f64; 4], iscrowd: u8) -> CocoAnnotation {
        CocoAnnotation {
            id,
            image_id: 1,
            category_id: id,
            bbox,
            area: bbox[2] * bbox[3],
            iscrowd,
        }
    }

    #[test]
    fn converts_clamps_and_drops() {
        let anns = [
            ann(1, [10.0, 20.0, 30.0, 40.0], 0),  // kept as is
            ann(2, [-5.0, 90.0, 20.0, 30.0], 0),  // clamped to [0,90,15,100]
            ann(3, [10.0, 10.0, 0.0, 5.0], 0),    // zero width
            ann(4, [120.0, 10.0, 10.0, 10.0], 0), // right of the image
            ann(5, [1.0, 1.0, 5.0, 5.0], 1),      // crowd
        ];
        let refs: Vec<&CocoAnnotation> = anns.iter().collect();
        let (t, d) = prepare_target(1, &refs, 100, 100);
        assert_eq!(
            t.boxes,
            vec![[10.0, 20.0, 40.0, 60.0], [0.0, 90.0, 15.0, 100.0]]
        );
        assert_eq!(t.labels, vec![1, 2]);
        assert_eq!(t.area, vec![1200.0, 600.0]);
        assert_eq!(t.iscrowd, vec![false, false]);
        assert_eq!(t.orig_size, [100, 100]);
        assert_eq!(
            d,
            DroppedBoxes {
                crowd: 1,
                degenerate: 2
            }
        );
    }
}
