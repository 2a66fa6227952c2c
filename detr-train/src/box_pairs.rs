//! Element-wise box arithmetic for paired boxes (same shape, last dimension 4).
//!
//! `detr_model::box_ops::generalized_box_iou` is pairwise (`[N, 4] × [M, 4] → [N, M]`); the
//! matcher needs one GIoU per (layer, image, query, target) and the criterion one per matched
//! pair. Taking the diagonal of a pairwise matrix (as the original does) costs `O(M²)`; these
//! helpers compute exactly the same formula element-wise.

use burn::tensor::{backend::Backend, Tensor};

/// Splits coordinate-major boxes `[4, ...]` into their four planes `[1, ...]`.
///
/// With a contiguous input every plane is contiguous, which keeps the element-wise ops below
/// on the backends' fast paths (broadcast or strided element-wise ops are much slower on the
/// CPU backends).
pub(crate) fn planes<B: Backend, const D: usize>(boxes: Tensor<B, D>) -> [Tensor<B, D>; 4] {
    [
        boxes.clone().narrow(0, 0, 1),
        boxes.clone().narrow(0, 1, 1),
        boxes.clone().narrow(0, 2, 1),
        boxes.narrow(0, 3, 1),
    ]
}

/// `(x0, y0, x1, y1)` planes from `(cx, cy, w, h)` planes, with the arithmetic of
/// `detr_model::box_ops::box_cxcywh_to_xyxy`.
fn to_xyxy<B: Backend, const D: usize>([cx, cy, w, h]: [Tensor<B, D>; 4]) -> [Tensor<B, D>; 4] {
    let half_w = w.mul_scalar(0.5);
    let half_h = h.mul_scalar(0.5);
    [
        cx.clone() - half_w.clone(),
        cy.clone() - half_h.clone(),
        cx + half_w,
        cy + half_h,
    ]
}

/// Generalized IoU of paired `cxcywh` boxes given as coordinate planes of identical shape
/// (see [`planes`]); the result has that shape.
///
/// Same formula and operation order as the original's `generalized_box_iou`:
/// `iou - (hull - union) / hull` with `iou = inter / union`.
pub(crate) fn paired_giou_cxcywh<B: Backend, const D: usize>(
    a: [Tensor<B, D>; 4],
    b: [Tensor<B, D>; 4],
) -> Tensor<B, D> {
    let [ax0, ay0, ax1, ay1] = to_xyxy(a);
    let [bx0, by0, bx1, by1] = to_xyxy(b);
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
