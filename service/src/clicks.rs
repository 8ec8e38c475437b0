//! Click counts are summed in memory and written in batches, so a redirect
//! never waits on the database. A crash loses at most one flush interval of counts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use ahash::RandomState;

use crate::{Result, metrics::Metrics, store::Store};

/// Shards keep redirect threads from contending on one lock.
const SHARDS: usize = 16;

/// Pending counts by code.
type Counts = HashMap<Arc<str>, u64, RandomState>;
type Shard = Mutex<Counts>;

/// Pending click counts per code.
pub struct ClickBuffer {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Default for ClickBuffer {
    fn default() -> Self {
        ClickBuffer {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl ClickBuffer {
    /// Counts one click on `code`.
    pub fn record(&self, code: &Arc<str>) {
        let mut shard = self.shard(code);
        match shard.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                shard.insert(code.clone(), 1);
            }
        }
    }

    /// Clicks on `code` not yet written.
    pub fn pending(&self, code: &str) -> u64 {
        self.shard(code).get(code).copied().unwrap_or(0)
    }

    /// Drops the pending clicks of a deleted link.
    pub fn forget(&self, code: &str) {
        self.shard(code).remove(code);
    }

    /// Takes every pending count, leaving the buffer empty, in code order: the order SQLite
    /// stores links in, so that a flush writes each page of the table once (in random order
    /// it rewrote pages many times over through SQLite's small page cache).
    pub fn take(&self) -> Vec<(Arc<str>, u64)> {
        let mut counts: Vec<_> = self
            .shards
            .iter()
            .flat_map(|shard| std::mem::take(&mut *lock(shard)))
            .collect();
        counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        counts
    }

    /// Puts counts back after a failed write, so no click is lost while the database is away.
    pub fn restore(&self, counts: Vec<(Arc<str>, u64)>) {
        for (code, count) in counts {
            *self.shard(&code).entry(code).or_insert(0) += count;
        }
    }

    /// Codes with pending clicks.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, code: &str) -> std::sync::MutexGuard<'_, Counts> {
        let index = self.hasher.hash_one(code) as usize % SHARDS;
        lock(&self.shards[index])
    }
}

/// Writes pending clicks; on failure they are put back for the next try.
pub async fn flush(buffer: &ClickBuffer, store: &Store, metrics: &Metrics) -> Result<usize> {
    let counts = buffer.take();
    if counts.is_empty() {
        return Ok(0);
    }
    let links = counts.len();
    match store.add_clicks(&counts).await {
        Ok(()) => Ok(links),
        Err(error) => {
            buffer.restore(counts);
            metrics.record_flush_failure();
            Err(error)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a valid map behind: keep counting.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_add_up_per_code_until_taken() {
        let buffer = ClickBuffer::default();
        let (a, b): (Arc<str>, Arc<str>) = ("aaa".into(), "bbb".into());
        buffer.record(&a);
        buffer.record(&a);
        buffer.record(&b);
        assert_eq!(buffer.pending("aaa"), 2);
        assert_eq!(buffer.take(), vec![(a, 2), (b, 1)]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn counts_are_taken_in_code_order() {
        let buffer = ClickBuffer::default();
        let codes: Vec<Arc<str>> = (0..200).rev().map(|i| format!("c{i:03}").into()).collect();
        for code in &codes {
            buffer.record(code);
        }
        let taken: Vec<_> = buffer.take().into_iter().map(|(code, _)| code).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(taken, sorted);
    }

    #[test]
    fn restored_counts_merge_with_new_clicks() {
        let buffer = ClickBuffer::default();
        let a: Arc<str> = "aaa".into();
        buffer.record(&a);
        let failed_batch = buffer.take();
        buffer.record(&a);
        buffer.restore(failed_batch);
        assert_eq!(buffer.pending("aaa"), 2);
    }

    #[test]
    fn a_deleted_link_loses_its_pending_clicks() {
        let buffer = ClickBuffer::default();
        let a: Arc<str> = "aaa".into();
        buffer.record(&a);
        buffer.forget("aaa");
        assert_eq!(buffer.pending("aaa"), 0);
    }
}
