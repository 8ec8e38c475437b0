//! Click counts are summed in memory and written in batches, so a redirect
//! never waits on the database. A crash loses at most one flush interval of counts.
//!
//! A cached link counts its own clicks (`CachedLink::click`: one atomic add on memory the
//! redirect has just read, where a map of its own cost a second lookup per redirect). This
//! buffer holds the rest: counts handed over by cache entries that were dropped (evicted,
//! replaced, or never admitted), and counts put back after a failed write.

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

/// Shows how many links have pending clicks, not the counts themselves (a cache entry's
/// `Debug` would otherwise print the whole buffer).
impl std::fmt::Debug for ClickBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickBuffer")
            .field("links", &self.len())
            .finish()
    }
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
    /// Adds `count` clicks on `code`.
    pub fn add(&self, code: &Arc<str>, count: u64) {
        let mut shard = self.shard(code);
        match shard.get_mut(code) {
            Some(pending) => *pending += count,
            None => {
                shard.insert(code.clone(), count);
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

    /// Takes every pending count, leaving the buffer empty.
    pub fn take(&self) -> Vec<(Arc<str>, u64)> {
        self.shards
            .iter()
            .flat_map(|shard| std::mem::take(&mut *lock(shard)))
            .collect()
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

/// Counts in code order, a code's counts added up (a link can have counts both here and in
/// its cache entry). Code order is the order SQLite stores links in, so that a flush writes
/// each page of the table once; in random order it rewrote pages many times over through
/// SQLite's small page cache (`bench/click-flush.py`).
pub fn in_code_order(mut counts: Vec<(Arc<str>, u64)>) -> Vec<(Arc<str>, u64)> {
    counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    counts.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    counts
}

/// Writes `counts`, taken from the buffer and the cache; on failure they are put back into
/// the buffer for the next try. Returns the links written.
pub async fn flush(
    counts: Vec<(Arc<str>, u64)>,
    buffer: &ClickBuffer,
    store: &Store,
    metrics: &Metrics,
) -> Result<usize> {
    let counts = in_code_order(counts);
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
        buffer.add(&a, 1);
        buffer.add(&a, 1);
        buffer.add(&b, 3);
        assert_eq!(buffer.pending("aaa"), 2);
        assert_eq!(in_code_order(buffer.take()), vec![(a, 2), (b, 3)]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn counts_are_written_in_code_order_each_code_once() {
        let codes: Vec<Arc<str>> = (0..200).rev().map(|i| format!("c{i:03}").into()).collect();
        let mut counts: Vec<_> = codes.iter().map(|code| (code.clone(), 1)).collect();
        // The same codes again, as cache entries would give them beside the buffer's.
        counts.extend(codes.iter().step_by(2).map(|code| (code.clone(), 2)));
        let written = in_code_order(counts);
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(
            written
                .iter()
                .map(|(code, _)| code.clone())
                .collect::<Vec<_>>(),
            sorted
        );
        assert_eq!(
            written.iter().map(|(_, count)| count).sum::<u64>(),
            200 + 2 * 100
        );
        assert_eq!(
            written.last().unwrap(),
            &(codes[0].clone(), 3),
            "c199 was counted twice"
        );
    }

    #[test]
    fn restored_counts_merge_with_new_clicks() {
        let buffer = ClickBuffer::default();
        let a: Arc<str> = "aaa".into();
        buffer.add(&a, 1);
        let failed_batch = buffer.take();
        buffer.add(&a, 1);
        buffer.restore(failed_batch);
        assert_eq!(buffer.pending("aaa"), 2);
    }

    #[test]
    fn a_deleted_link_loses_its_pending_clicks() {
        let buffer = ClickBuffer::default();
        let a: Arc<str> = "aaa".into();
        buffer.add(&a, 1);
        buffer.forget("aaa");
        assert_eq!(buffer.pending("aaa"), 0);
    }
}
