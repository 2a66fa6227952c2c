//! Burn metrics of a DETR run, shown by Burn's dashboard and written by its metric loggers:
//! each loss component ([`ComponentMetric`]) on both splits, and COCO AP / AP50
//! ([`CocoMetric`]) on validation.

use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use crate::components::{Component, LossComponents};
use crate::step::{TrainItem, ValidItem};

/// A step's loss components, as a metric's input.
#[derive(Debug, Clone)]
pub struct StepComponents {
    /// The values.
    pub values: LossComponents,
    /// Images of the step (the weight of the epoch average).
    pub images: usize,
}

impl Adaptor<StepComponents> for TrainItem {
    fn adapt(&self) -> StepComponents {
        StepComponents {
            values: self.components.clone(),
            images: self.images,
        }
    }
}

impl Adaptor<StepComponents> for ValidItem {
    fn adapt(&self) -> StepComponents {
        StepComponents {
            values: self.components.clone(),
            images: self.images,
        }
    }
}

/// One loss component (e.g. `loss_giou`) averaged over the epoch.
#[derive(Clone)]
pub struct ComponentMetric {
    component: Component,
    name: MetricName,
    lower_is_better: bool,
    state: NumericMetricState,
}

impl ComponentMetric {
    /// The metric of `component` (named like the original's log keys).
    pub fn new(component: Component) -> Self {
        Self {
            component,
            name: Arc::new(component.name().to_string()),
            lower_is_better: true,
            state: NumericMetricState::new(),
        }
    }

    /// The components shown by the dashboard: the total and each weighted term of the final
    /// layer, and the two logged errors.
    pub fn main_components() -> Vec<Self> {
        Component::MAIN.into_iter().map(Self::new).collect()
    }
}

impl Metric for ComponentMetric {
    type Input = StepComponents;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: !self.lower_is_better,
        }
        .into()
    }

    fn update(&mut self, item: &StepComponents, _metadata: &MetricMetadata) -> SerializedEntry {
        let value = f64::from(self.component.of(&item.values));
        self.state.update(
            value,
            item.images.max(1),
            FormatOptions::new(self.name.clone()).precision(4),
        )
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for ComponentMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// The COCO numbers of a validation epoch, carried by its last item.
#[derive(Debug, Clone, Copy)]
pub struct EpochCocoStats(pub Option<[f64; 12]>);

impl Adaptor<EpochCocoStats> for ValidItem {
    fn adapt(&self) -> EpochCocoStats {
        EpochCocoStats(self.coco_stats)
    }
}

/// One of the 12 COCO numbers (`AP` is index 0, `AP50` index 1) of the validation epoch.
///
/// The numbers exist once the whole split is evaluated: the training strategy attaches them
/// to the epoch's last item. Every other item is logged with weight 0, so the epoch's mean in
/// Burn's logs and event store (best checkpoint, early stopping) is the COCO number itself.
#[derive(Clone)]
pub struct CocoMetric {
    index: usize,
    name: MetricName,
    value: Option<f64>,
}

impl CocoMetric {
    /// COCO AP (IoU .50:.95).
    pub fn ap() -> Self {
        Self::new(0, "AP")
    }

    /// COCO AP at IoU .50.
    pub fn ap50() -> Self {
        Self::new(1, "AP50")
    }

    fn new(index: usize, name: &str) -> Self {
        Self {
            index,
            name: Arc::new(name.to_string()),
            value: None,
        }
    }
}

impl Metric for CocoMetric {
    type Input = EpochCocoStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(&mut self, item: &EpochCocoStats, _metadata: &MetricMetadata) -> SerializedEntry {
        match item.0 {
            Some(stats) => {
                let v = stats[self.index];
                self.value = Some(v);
                SerializedEntry::new(
                    format!("{v:.4}"),
                    NumericEntry::Aggregated {
                        aggregated_value: v,
                        count: 1,
                    }
                    .serialize(),
                )
            }
            None => SerializedEntry::new(
                self.value
                    .map_or_else(|| "pending".to_string(), |v| format!("{v:.4}")),
                NumericEntry::Aggregated {
                    aggregated_value: 0.0,
                    count: 0,
                }
                .serialize(),
            ),
        }
    }

    fn clear(&mut self) {}
}

impl Numeric for CocoMetric {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.value.unwrap_or(f64::NAN))
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.value.unwrap_or(f64::NAN))
    }
}
