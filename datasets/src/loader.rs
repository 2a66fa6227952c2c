//! A deterministic, multi-threaded data loader for DETR batches that implements Burn's
//! [`DataLoader`] (so it plugs into Burn's `Learner`).
//!
//! Unlike Burn's own multi-worker loader, batches come out in the same order whatever the number
//! of workers: the epoch's permutation is drawn from `(shuffle seed, epoch)`, batch `b` is built
//! by worker `b mod n` and batches are received in order. Each `iter()` call starts the next
//! epoch; [`DetrDataLoader::iter_epoch`] runs a given one (e.g. when resuming).

use crate::batcher::{collate, DetrBatch, HostBatch};
use crate::dataset::ItemSource;
use crate::error::{DatasetError, Result};
use crate::rng::SeedRng;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::tensor::backend::Backend;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

/// Options of [`DetrDataLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the per-epoch shuffle; `None` keeps the dataset order.
    pub shuffle: Option<u64>,
    /// Leave out the last, incomplete batch.
    pub drop_last: bool,
    /// Background threads (0: load in the iterating thread).
    pub num_workers: usize,
    /// Batches each worker may prepare ahead.
    pub prefetch: usize,
    /// This process's share of each epoch when several processes train together (`None`:
    /// every item).
    pub shard: Option<Shard>,
}

/// One process's share of the items, as PyTorch's `DistributedSampler` deals them: the
/// epoch's order (shuffled or not) is dealt round-robin, item `i` of the order going to
/// process `i mod world_size`. With `pad` the order is first extended with its own first
/// items to a multiple of `world_size`, so that every process gets the same number of items
/// (and of batches: training); without it each item is dealt exactly once (validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process (0-based).
    pub rank: usize,
    /// Processes in all.
    pub world_size: usize,
    /// Repeat items so that every process gets as many.
    pub pad: bool,
}

impl Shard {
    /// Items this process gets of `n`.
    pub fn len(&self, n: usize) -> usize {
        if self.pad {
            n.div_ceil(self.world_size)
        } else {
            n.saturating_sub(self.rank).div_ceil(self.world_size)
        }
    }

    /// This process's items of `order`, in order.
    pub fn deal(&self, order: &[usize]) -> Vec<usize> {
        let n = order.len();
        let total = if self.pad && n > 0 {
            n.div_ceil(self.world_size) * self.world_size
        } else {
            n
        };
        (self.rank..total)
            .step_by(self.world_size)
            .map(|i| order[i % n])
            .collect()
    }
}

impl LoaderConfig {
    /// Training: shuffled with `seed`, incomplete last batch dropped, 2 workers.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Self {
            batch_size,
            shuffle: Some(seed),
            drop_last: true,
            num_workers: 2,
            prefetch: 2,
            shard: None,
        }
    }

    /// Validation: dataset order, every image, 2 workers.
    pub fn val(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: None,
            drop_last: false,
            num_workers: 2,
            prefetch: 2,
            shard: None,
        }
    }

    /// Sets the number of worker threads.
    pub fn with_workers(mut self, num_workers: usize) -> Self {
        self.num_workers = num_workers;
        self
    }

    /// Loads only `shard`'s share of each epoch.
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }
}

/// Loads padded [`DetrBatch`]es from an [`ItemSource`] (e.g. a
/// [`crate::dataset::CocoSplit`]).
pub struct DetrDataLoader<B: Backend> {
    source: Arc<dyn ItemSource>,
    config: LoaderConfig,
    device: B::Device,
    range: Range<usize>,
    next_epoch: Arc<AtomicU64>,
    failed: Arc<AtomicUsize>,
}

impl<B: Backend> Clone for DetrDataLoader<B> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            config: self.config.clone(),
            device: self.device.clone(),
            range: self.range.clone(),
            next_epoch: self.next_epoch.clone(),
            failed: self.failed.clone(),
        }
    }
}

impl<B: Backend> DetrDataLoader<B> {
    /// A loader over all items of `source`.
    pub fn new<S: ItemSource>(source: S, config: LoaderConfig, device: B::Device) -> Result<Self> {
        Self::from_arc(Arc::new(source), config, device)
    }

    /// A loader over a shared source.
    pub fn from_arc(
        source: Arc<dyn ItemSource>,
        config: LoaderConfig,
        device: B::Device,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DatasetError::Config("batch size must be at least 1".into()));
        }
        let n = source.num_items();
        Ok(Self {
            source,
            config,
            device,
            range: 0..n,
            next_epoch: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The options.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The epoch that the next `iter()` will run.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch.load(Ordering::SeqCst)
    }

    /// Sets the epoch that the next `iter()` will run (e.g. when resuming training).
    pub fn set_next_epoch(&self, epoch: u64) {
        self.next_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Items that could not be loaded so far (each was logged and left out of its batch).
    pub fn failed_items(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = match self.config.shard {
            Some(s) => s.len(self.range.len()),
            None => self.range.len(),
        };
        let bs = self.config.batch_size;
        if self.config.drop_last {
            n / bs
        } else {
            n.div_ceil(bs)
        }
    }

    /// The item indices of each batch of `epoch`.
    pub fn epoch_batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = self.range.clone().collect();
        if let Some(seed) = self.config.shuffle {
            // 0x5348 = "SH": keeps the shuffle stream apart from the transforms' streams.
            SeedRng::from_parts(&[seed, epoch, 0x5348]).shuffle(&mut order);
        }
        if let Some(shard) = self.config.shard {
            order = shard.deal(&order);
        }
        let nb = self.num_batches();
        order
            .chunks(self.config.batch_size)
            .take(nb)
            .map(|c| c.to_vec())
            .collect()
    }

    /// Iterates over the batches of `epoch` (does not change [`Self::next_epoch`]).
    pub fn iter_epoch(&self, epoch: u64) -> DetrBatchIter<B> {
        let batches = Arc::new(self.epoch_batches(epoch));
        let items_total = batches.iter().map(|b| b.len()).sum();
        let workers = if self.config.num_workers == 0 {
            Vec::new()
        } else {
            let n = self.config.num_workers.min(batches.len().max(1));
            (0..n)
                .map(|w| {
                    let (tx, rx) = mpsc::sync_channel::<Option<HostBatch>>(self.config.prefetch);
                    let batches = batches.clone();
                    let source = self.source.clone();
                    let failed = self.failed.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("detr-loader-{w}"))
                        .spawn(move || {
                            for b in (w..batches.len()).step_by(n) {
                                let hb = load_batch(&*source, &batches[b], epoch, &failed);
                                if tx.send(hb).is_err() {
                                    return; // the iterator was dropped
                                }
                            }
                        });
                    match spawned {
                        Ok(_) => Some(rx),
                        Err(e) => {
                            tracing::warn!("cannot start a loader thread ({e}); loading inline");
                            None
                        }
                    }
                })
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default()
        };
        DetrBatchIter {
            source: self.source.clone(),
            batches,
            epoch,
            next: 0,
            workers,
            device: self.device.clone(),
            failed: self.failed.clone(),
            items_processed: 0,
            items_total,
        }
    }
}

fn load_batch(
    source: &dyn ItemSource,
    indices: &[usize],
    epoch: u64,
    failed: &AtomicUsize,
) -> Option<HostBatch> {
    let mut items = Vec::with_capacity(indices.len());
    for &i in indices {
        match source.load_item(i, epoch) {
            Ok(item) => items.push(item),
            Err(e) => {
                failed.fetch_add(1, Ordering::SeqCst);
                tracing::error!("skipping item {i}: {e}");
            }
        }
    }
    if items.is_empty() {
        None
    } else {
        Some(collate(items))
    }
}

/// Iterator over the batches of one epoch.
pub struct DetrBatchIter<B: Backend> {
    source: Arc<dyn ItemSource>,
    batches: Arc<Vec<Vec<usize>>>,
    epoch: u64,
    next: usize,
    workers: Vec<mpsc::Receiver<Option<HostBatch>>>,
    device: B::Device,
    failed: Arc<AtomicUsize>,
    items_processed: usize,
    items_total: usize,
}

impl<B: Backend> DetrBatchIter<B> {
    /// The next batch on the host (not moved to the device).
    pub fn next_host(&mut self) -> Option<HostBatch> {
        while self.next < self.batches.len() {
            let b = self.next;
            self.next += 1;
            self.items_processed += self.batches[b].len();
            let hb = if self.workers.is_empty() {
                load_batch(&*self.source, &self.batches[b], self.epoch, &self.failed)
            } else {
                let rx = &self.workers[b % self.workers.len()];
                match rx.recv() {
                    Ok(hb) => hb,
                    // A worker died (it panicked): load this batch here.
                    Err(_) => load_batch(&*self.source, &self.batches[b], self.epoch, &self.failed),
                }
            };
            if hb.is_some() {
                return hb;
            }
        }
        None
    }
}

impl<B: Backend> Iterator for DetrBatchIter<B> {
    type Item = DetrBatch<B>;

    fn next(&mut self) -> Option<DetrBatch<B>> {
        self.next_host().map(|hb| hb.to_device(&self.device))
    }
}

impl<B: Backend> DataLoaderIterator<DetrBatch<B>> for DetrBatchIter<B> {
    fn progress(&self) -> Progress {
        Progress::new(self.items_processed, self.items_total)
    }
}

impl<B: Backend> DataLoader<B, DetrBatch<B>> for DetrDataLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<DetrBatch<B>> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        Box::new(self.iter_epoch(epoch))
    }

    fn num_items(&self) -> usize {
        if self.config.drop_last {
            self.num_batches() * self.config.batch_size
        } else {
            match self.config.shard {
                Some(s) => s.len(self.range.len()),
                None => self.range.len(),
            }
        }
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, DetrBatch<B>>> {
        let mut l = self.clone();
        l.device = device.clone();
        Arc::new(l)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, DetrBatch<B>>> {
        let mut l = self.clone();
        let s = (self.range.start + start).min(self.range.end);
        let e = (self.range.start + end).min(self.range.end).max(s);
        l.range = s..e;
        Arc::new(l)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_deal_the_order_round_robin_like_distributed_sampler() {
        let order: Vec<usize> = vec![7, 3, 9, 1, 4, 8, 2];
        let deal = |rank, world_size, pad| {
            Shard {
                rank,
                world_size,
                pad,
            }
            .deal(&order)
        };
        // Padded (training): 7 items over 3 processes become 9, the order's first two
        // repeated; every process gets 3.
        assert_eq!(deal(0, 3, true), vec![7, 1, 2]);
        assert_eq!(deal(1, 3, true), vec![3, 4, 7]);
        assert_eq!(deal(2, 3, true), vec![9, 8, 3]);
        // Unpadded (validation): every item exactly once.
        let mut all: Vec<usize> = (0..3).flat_map(|r| deal(r, 3, false)).collect();
        all.sort_unstable();
        let mut want = order.clone();
        want.sort_unstable();
        assert_eq!(all, want);
        for (rank, len) in [(0, 3), (1, 2), (2, 2)] {
            let s = Shard {
                rank,
                world_size: 3,
                pad: false,
            };
            assert_eq!(s.len(order.len()), len);
            assert_eq!(s.deal(&order).len(), len);
        }
        // One process: the order itself.
        assert_eq!(deal(0, 1, true), order);
    }
}
