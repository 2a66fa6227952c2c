//! Element-wise box arithmetic for paired boxes (same shape, last dimension 4).
//!
//! `detr_model::box_ops::generalized_box_iou` is pairwise (`[N, 4] × [M, 4] → [N, M]`); the
//! matcher needs one GIoU per (layer, image, query, target) and the criterion one per matched
//! pair. Taking the diagonal of a pairwise matrix (as the original does) costs `O(M²)`; these
//! helpers compute exactly the same formula element-wise.

use burn::tensor::{backend::Backend, Tensor};
use detr_model::box_ops::box_cxcywh_to_xyxy;

/// Splits `[..., 4]` into four `[..., 1]` tensors.
fn coords<B: Backend, const D: usize>(boxes: Tensor<B, D>) -> [Tensor<B, D>; 4] {
    let last = D - 1;
    [
        boxes.clone().narrow(last, 0, 1),
        boxes.clone().narrow(last, 1, 1),
        boxes.clone().narrow(last, 2, 1),
        boxes.narrow(last, 3, 1),
    ]
}

/// Generalized IoU of paired `cxcywh` boxes `a` and `b` of identical shape `[..., 4]`,
/// giving `[..., 1]`.
///
/// Same formula and operation order as the original's `generalized_box_iou`:
/// `iou - (hull - union) / hull` with `iou = inter / union`.
pub(crate) fn paired_giou_cxcywh<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Tensor<B, D> {
    let [ax0, ay0, ax1, ay1] = coords(box_cxcywh_to_xyxy(a));
    let [bx0, by0, bx1, by1] = coords(box_cxcywh_to_xyxy(b));
    let area_a = (ax1.clone() - ax0.clone()) * (ay1.clone() - ay0.clone());
    let area_b = (bx1.clone() - bx0.clone()) * (by1.clone() - by0.clone());

    let inter_w =
        (ax1.clone().min_pair(bx1.clone()) - ax0.clone().max_pair(bx0.clone())).clamp_min(0.0);
    let inter_h =
        (ay1.clone().min_pair(by1.clone()) - ay0.clone().max_pair(by0.clone())).clamp_min(0.0);
    let inter = inter_w * inter_h;
    let union = area_a + area_b - inter.clone();
    let iou = inter / union.clone();

    let hull_w = (ax1.max_pair(bx1) - ax0.min_pair(bx0)).clamp_min(0.0);
    let hull_h = (ay1.max_pair(by1) - ay0.min_pair(by0)).clamp_min(0.0);
    let hull = hull_w * hull_h;
    iou - (hull.clone() - union) / hull
}
