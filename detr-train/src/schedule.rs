//! PyTorch's `StepLR` as the original uses it: stepped once per epoch.

/// `lr(epoch) = base × gamma^(epoch / step_size)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepLr {
    /// Learning rate of epoch 0.
    pub base: f64,
    /// Epochs between drops (the original's `lr_drop`).
    pub step_size: usize,
    /// Factor of each drop (0.1).
    pub gamma: f64,
}

impl StepLr {
    /// A schedule.
    pub fn new(base: f64, step_size: usize, gamma: f64) -> Self {
        Self {
            base,
            step_size: step_size.max(1),
            gamma,
        }
    }

    /// The learning rate during `epoch` (0-based).
    pub fn lr(&self, epoch: usize) -> f64 {
        self.base * self.gamma.powi((epoch / self.step_size) as i32)
    }

    /// Whether the learning rate drops after `epoch` (a checkpoint is kept before each drop).
    pub fn drops_after(&self, epoch: usize) -> bool {
        (epoch + 1).is_multiple_of(self.step_size)
    }
}
