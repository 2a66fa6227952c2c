//! [`LossComponents`]: the values a step of the set criterion logs, as a struct; the
//! original's names (`loss_ce`, `loss_bbox_0`, …) are given only where they are written
//! ([`LossComponents::named`]: `log.txt`, `eval.json`, messages).

use std::fmt;

/// The unweighted losses of one decoder layer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerLosses {
    /// Cross-entropy over every query (no-object weighted by `eos_coef`).
    pub loss_ce: f32,
    /// L1 loss of the matched boxes (cxcywh), divided by `num_boxes`.
    pub loss_bbox: f32,
    /// `1 − GIoU` of the matched boxes, divided by `num_boxes`.
    pub loss_giou: f32,
    /// Mean over images of |predicted objects − targets| (not differentiable).
    pub cardinality_error: f32,
}

impl LayerLosses {
    /// The values with their base names.
    pub fn values(&self) -> [(&'static str, f32); 4] {
        [
            ("loss_ce", self.loss_ce),
            ("loss_bbox", self.loss_bbox),
            ("loss_giou", self.loss_giou),
            ("cardinality_error", self.cardinality_error),
        ]
    }

    fn zip_with(&self, other: &Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self {
            loss_ce: f(self.loss_ce, other.loss_ce),
            loss_bbox: f(self.loss_bbox, other.loss_bbox),
            loss_giou: f(self.loss_giou, other.loss_giou),
            cardinality_error: f(self.cardinality_error, other.cardinality_error),
        }
    }
}

/// Everything one step of the set criterion logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossComponents {
    /// The weighted total over every layer (what is minimised).
    pub loss: f32,
    /// The final layer's losses.
    pub last: LayerLosses,
    /// 100 − top-1 accuracy (%) of the final layer's matched queries.
    pub class_error: f32,
    /// The auxiliary layers' losses, first layer first (empty without aux losses).
    pub aux: Vec<LayerLosses>,
}

/// Which value of [`LossComponents`] (for metrics and progress lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The weighted total.
    Loss,
    /// The final layer's cross-entropy.
    LossCe,
    /// The final layer's L1 box loss.
    LossBbox,
    /// The final layer's GIoU loss.
    LossGiou,
    /// The final layer's class error.
    ClassError,
    /// The final layer's cardinality error.
    CardinalityError,
}

impl Component {
    /// The ones Burn's dashboard and metric logs show.
    pub const MAIN: [Component; 6] = [
        Self::Loss,
        Self::LossCe,
        Self::LossBbox,
        Self::LossGiou,
        Self::ClassError,
        Self::CardinalityError,
    ];

    /// The original's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::LossCe => "loss_ce",
            Self::LossBbox => "loss_bbox",
            Self::LossGiou => "loss_giou",
            Self::ClassError => "class_error",
            Self::CardinalityError => "cardinality_error",
        }
    }

    /// Its value in `c`.
    pub fn of(self, c: &LossComponents) -> f32 {
        match self {
            Self::Loss => c.loss,
            Self::LossCe => c.last.loss_ce,
            Self::LossBbox => c.last.loss_bbox,
            Self::LossGiou => c.last.loss_giou,
            Self::ClassError => c.class_error,
            Self::CardinalityError => c.last.cardinality_error,
        }
    }
}

impl LossComponents {
    /// The values with the original's names: `loss`, the final layer's `loss_ce`,
    /// `loss_bbox`, `loss_giou`, `cardinality_error`, `class_error`, then `loss_ce_i`,
    /// `loss_bbox_i`, `loss_giou_i`, `cardinality_error_i` of each auxiliary layer `i`.
    pub fn named(&self) -> Vec<(String, f32)> {
        let mut out = vec![("loss".to_string(), self.loss)];
        out.extend(self.last.values().map(|(k, v)| (k.to_string(), v)));
        out.push(("class_error".to_string(), self.class_error));
        for (i, layer) in self.aux.iter().enumerate() {
            out.extend(layer.values().map(|(k, v)| (format!("{k}_{i}"), v)));
        }
        out
    }

    /// The values of [`Self::named`], in its order, for `aux_layers` auxiliary layers
    /// (missing layers are zeros, as in a failed step's defaults): what processes exchange.
    pub fn to_values(&self, aux_layers: usize) -> Vec<f32> {
        let layer = |l: &LayerLosses| l.values().map(|(_, v)| v);
        let mut out = vec![self.loss];
        out.extend(layer(&self.last));
        out.push(self.class_error);
        for i in 0..aux_layers {
            out.extend(layer(self.aux.get(i).unwrap_or(&LayerLosses::default())));
        }
        out
    }

    /// The inverse of [`Self::to_values`] (`values.len()` = 6 + 4 × auxiliary layers).
    pub fn from_values(values: &[f32]) -> Self {
        let v = |i: usize| values.get(i).copied().unwrap_or(0.0);
        let layer = |at: usize| LayerLosses {
            loss_ce: v(at),
            loss_bbox: v(at + 1),
            loss_giou: v(at + 2),
            cardinality_error: v(at + 3),
        };
        Self {
            loss: v(0),
            last: layer(1),
            class_error: v(5),
            aux: (0..values.len().saturating_sub(6) / 4)
                .map(|i| layer(6 + 4 * i))
                .collect(),
        }
    }

    /// Whether every loss (not the errors) is finite.
    pub fn losses_are_finite(&self) -> bool {
        let layer_ok = |l: &LayerLosses| {
            l.loss_ce.is_finite() && l.loss_bbox.is_finite() && l.loss_giou.is_finite()
        };
        self.loss.is_finite() && layer_ok(&self.last) && self.aux.iter().all(layer_ok)
    }

    /// `self + other × weight`, value by value (for averages over shards).
    pub fn add_scaled(&self, other: &Self, weight: f32) -> Self {
        let f = |a: f32, b: f32| a + b * weight;
        Self {
            loss: f(self.loss, other.loss),
            last: self.last.zip_with(&other.last, f),
            class_error: f(self.class_error, other.class_error),
            aux: if self.aux.is_empty() {
                other
                    .aux
                    .iter()
                    .map(|l| LayerLosses::default().zip_with(l, f))
                    .collect()
            } else {
                self.aux
                    .iter()
                    .zip(&other.aux)
                    .map(|(a, b)| a.zip_with(b, f))
                    .collect()
            },
        }
    }
}

impl fmt::Display for LossComponents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .named()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_original_and_averages_add_up() {
        let layer = |x: f32| LayerLosses {
            loss_ce: x,
            loss_bbox: x + 1.0,
            loss_giou: x + 2.0,
            cardinality_error: x + 3.0,
        };
        let c = LossComponents {
            loss: 10.0,
            last: layer(1.0),
            class_error: 50.0,
            aux: vec![layer(5.0)],
        };
        let names: Vec<String> = c.named().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "loss",
                "loss_ce",
                "loss_bbox",
                "loss_giou",
                "cardinality_error",
                "class_error",
                "loss_ce_0",
                "loss_bbox_0",
                "loss_giou_0",
                "cardinality_error_0"
            ]
        );
        let mean = LossComponents::default()
            .add_scaled(&c, 0.5)
            .add_scaled(&c, 0.5);
        assert_eq!(mean, c);
        // The flat form that processes exchange: named()'s order, and back.
        let flat = c.to_values(1);
        let named: Vec<f32> = c.named().into_iter().map(|(_, v)| v).collect();
        assert_eq!(flat, named);
        assert_eq!(LossComponents::from_values(&flat), c);
        assert_eq!(LossComponents::default().to_values(2).len(), 14);
        assert!(c.losses_are_finite());
        let bad = LossComponents {
            aux: vec![layer(f32::NAN)],
            ..c.clone()
        };
        assert!(!bad.losses_are_finite());
        assert_eq!(Component::LossGiou.of(&c), 3.0);
    }
}
