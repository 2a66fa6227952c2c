//! The loaders that Burn's `Learner` iterates: [`StepLoader`] wraps `datasets`'
//! [`DetrDataLoader`] and gives every batch its epoch, its index and the global step
//! ([`StepBatch`]), which the training step needs to re-seed the RNG exactly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::prelude::*;
use datasets::loader::{DetrBatchIter, DetrDataLoader};

use crate::step::StepBatch;

/// A DETR loader as Burn's `DataLoader` of [`StepBatch`]es. Each `iter()` runs the next
/// epoch (training) or always epoch 0 (validation, whose pipeline is deterministic).
pub struct StepLoader<B: Backend> {
    inner: DetrDataLoader<B>,
    next_epoch: Arc<AtomicUsize>,
    advance: bool,
    max_steps: usize,
    devices: Vec<B::Device>,
}

impl<B: Backend> Clone for StepLoader<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            next_epoch: self.next_epoch.clone(),
            advance: self.advance,
            max_steps: self.max_steps,
            devices: self.devices.clone(),
        }
    }
}

impl<B: Backend> StepLoader<B> {
    /// The training loader: `iter()` runs `first_epoch`, then the next, …; at most
    /// `max_steps` batches per epoch (0: all); batches are sharded over `devices` by the step.
    pub fn train(
        inner: DetrDataLoader<B>,
        first_epoch: usize,
        max_steps: usize,
        devices: Vec<B::Device>,
    ) -> Self {
        Self {
            inner,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            advance: true,
            max_steps,
            devices,
        }
    }

    /// The validation loader (every `iter()` is the same pass over the split).
    pub fn valid(inner: DetrDataLoader<B>) -> Self {
        Self {
            inner,
            next_epoch: Arc::new(AtomicUsize::new(0)),
            advance: false,
            max_steps: 0,
            devices: Vec::new(),
        }
    }

    /// Optimiser steps per epoch (batches, capped by `max_steps`).
    pub fn steps_per_epoch(&self) -> usize {
        match self.max_steps {
            0 => self.inner.num_batches(),
            m => m.min(self.inner.num_batches()),
        }
    }

    /// The epoch the next `iter()` runs.
    pub fn next_epoch(&self) -> usize {
        self.next_epoch.load(Ordering::SeqCst)
    }

    /// The wrapped loader.
    pub fn inner(&self) -> &DetrDataLoader<B> {
        &self.inner
    }

    /// Iterates over `epoch`.
    pub fn iter_epoch(&self, epoch: usize) -> StepIter<B> {
        StepIter {
            inner: self.inner.iter_epoch(epoch as u64),
            epoch,
            index: 0,
            limit: self.steps_per_epoch(),
            steps_per_epoch: self.steps_per_epoch() as u64,
            devices: self.devices.clone(),
        }
    }
}

/// The batches of one epoch as [`StepBatch`]es.
pub struct StepIter<B: Backend> {
    inner: DetrBatchIter<B>,
    epoch: usize,
    index: usize,
    limit: usize,
    steps_per_epoch: u64,
    devices: Vec<B::Device>,
}

impl<B: Backend> Iterator for StepIter<B> {
    type Item = StepBatch<B>;

    fn next(&mut self) -> Option<StepBatch<B>> {
        if self.index >= self.limit {
            return None;
        }
        let batch = self.inner.next()?;
        let index = self.index;
        self.index += 1;
        Some(StepBatch {
            batch,
            epoch: self.epoch,
            index,
            step: self.epoch as u64 * self.steps_per_epoch + index as u64,
            devices: self.devices.clone(),
        })
    }
}

impl<B: Backend> DataLoaderIterator<StepBatch<B>> for StepIter<B> {
    /// Progress in batches (the steps of the epoch).
    fn progress(&self) -> Progress {
        Progress::new(self.index, self.limit)
    }
}

impl<B: Backend> DataLoader<B, StepBatch<B>> for StepLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<StepBatch<B>> + 'a> {
        let epoch = if self.advance {
            self.next_epoch.fetch_add(1, Ordering::SeqCst)
        } else {
            self.next_epoch()
        };
        Box::new(self.iter_epoch(epoch))
    }

    fn num_items(&self) -> usize {
        self.steps_per_epoch()
    }

    /// The batches are moved to their devices by the step (see [`StepBatch::devices`]): this
    /// loader stays as it is.
    fn to_device(&self, _device: &B::Device) -> Arc<dyn DataLoader<B, StepBatch<B>>> {
        Arc::new(self.clone())
    }

    /// Runs at most `end - start` batches' worth of items of each epoch (the cap of
    /// `--max_steps_per_epoch`); `start` must be 0.
    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, StepBatch<B>>> {
        let mut l = self.clone();
        let bs = self.inner.config().batch_size.max(1);
        l.max_steps = (end.saturating_sub(start) / bs).max(1);
        Arc::new(l)
    }
}
