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

/// [`StepLr`] as Burn's per-iteration `LrScheduler`: the learning rate drops by `gamma` every
/// `lr_drop × steps_per_epoch` iterations, which is the original's per-epoch `StepLR`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLrScheduler {
    /// The per-epoch schedule.
    pub schedule: StepLr,
    /// Optimiser steps per epoch.
    pub steps_per_epoch: u64,
    /// Iterations done (the next `step()` returns the rate of this iteration).
    pub iteration: u64,
}

impl StepLrScheduler {
    /// A scheduler starting at `iteration` (non-zero when resuming).
    pub fn new(schedule: StepLr, steps_per_epoch: u64, iteration: u64) -> Self {
        Self {
            schedule,
            steps_per_epoch: steps_per_epoch.max(1),
            iteration,
        }
    }

    /// The learning rate of `iteration`.
    pub fn lr_at(&self, iteration: u64) -> f64 {
        self.schedule
            .lr((iteration / self.steps_per_epoch) as usize)
    }
}

impl burn::lr_scheduler::LrScheduler for StepLrScheduler {
    type Record<B: burn::tensor::backend::Backend> = u64;

    fn step(&mut self) -> f64 {
        let lr = self.lr_at(self.iteration);
        self.iteration += 1;
        lr
    }

    fn to_record<B: burn::tensor::backend::Backend>(&self) -> u64 {
        self.iteration
    }

    fn load_record<B: burn::tensor::backend::Backend>(mut self, record: u64) -> Self {
        self.iteration = record;
        self
    }
}
