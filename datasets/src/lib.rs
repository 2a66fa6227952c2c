//! COCO-format data for DETR.
