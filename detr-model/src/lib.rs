//! The DETR network on Burn.
