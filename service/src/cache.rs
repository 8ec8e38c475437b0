//! The redirect cache: code → target, bounded in bytes rather than entries,
//! so its share of the memory limit holds whatever the URLs' lengths.
//!
//! A sharded hash map: a hit only stamps the entry with the current epoch
//! under a read lock, so the hot path takes no exclusive lock and allocates
//! nothing. The memory manager advances the epoch every sample and sweeps out
//! entries idle for too many epochs, so memory is returned when load drops;
//! over budget, entries not hit in the current epoch go first.

use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
};

use ahash::RandomState;
use axum::http::HeaderValue;

use crate::clicks::ClickBuffer;

/// Shards keep redirect threads from contending on one lock.
const SHARDS: usize = 16;

/// Heap bytes an entry costs beyond its code and URL: the map slot, the
/// `CachedLink` with its click counter and the two reference-counted headers (measured
/// with jemalloc against 20,000 entries: `cache::tests::the_weight_estimate_matches_the_heap`).
const ENTRY_OVERHEAD: u64 = 205;

/// When a shard is over budget, evict down to this share of it, so evictions
/// come in batches rather than on every insert.
const EVICT_TO_PERCENT: u64 = 90;

/// Smallest default budget, so a tiny limit still caches hot links.
const MIN_DEFAULT_BUDGET: u64 = 1 << 20;
/// Largest default budget: beyond this a shortener gains little hit rate.
const MAX_DEFAULT_BUDGET: u64 = 256 << 20;
/// Share of the memory limit the cache gets by default: an eighth leaves room for
/// connections, buffers and allocator slack below the 60 % low water mark.
const DEFAULT_SHARE: u64 = 8;

/// The budget of a cache whose size is not configured, under a memory limit of `limit` bytes.
pub fn budget_for_limit(limit: u64) -> u64 {
    (limit / DEFAULT_SHARE).clamp(MIN_DEFAULT_BUDGET, MAX_DEFAULT_BUDGET)
}

/// What a redirect needs, ready to send, and the clicks it has counted since the last flush.
#[derive(Debug)]
pub struct CachedLink {
    pub code: Arc<str>,
    /// The target as a header value, validated once when cached.
    pub location: HeaderValue,
    pub expires_at: Option<i64>,
    clicks: AtomicU64,
    /// Where the clicks not yet taken go when the entry is dropped, so that none is lost to
    /// an eviction, even one racing a redirect that still holds the link.
    handover: Arc<ClickBuffer>,
}

impl CachedLink {
    /// A link whose clicks, when it is dropped, go to `handover`.
    pub fn new(
        code: Arc<str>,
        location: HeaderValue,
        expires_at: Option<i64>,
        handover: &Arc<ClickBuffer>,
    ) -> CachedLink {
        CachedLink {
            code,
            location,
            expires_at,
            clicks: AtomicU64::new(0),
            handover: handover.clone(),
        }
    }

    /// Counts one click.
    pub fn click(&self) {
        self.clicks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the link has expired by `now_ms` (Unix milliseconds), which is asked only
    /// of a link that can expire: most cannot, and reading the clock is a redirect's cost.
    pub fn is_expired(&self, now_ms: impl FnOnce() -> i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms())
    }

    fn weight(&self) -> u64 {
        self.code.len() as u64 + self.location.len() as u64 + ENTRY_OVERHEAD
    }
}

impl Drop for CachedLink {
    fn drop(&mut self) {
        let clicks = *self.clicks.get_mut();
        if clicks > 0 {
            self.handover.add(&self.code, clicks);
        }
    }
}

struct Slot {
    link: Arc<CachedLink>,
    /// The epoch of the last hit (or of the insert).
    seen: AtomicU32,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Slot, RandomState>,
    bytes: u64,
}

impl Shard {
    /// Evicts until `needed` bytes are freed: first entries not hit since
    /// `epoch`, then any. Returns the bytes freed.
    fn evict(&mut self, needed: u64, epoch: u32) -> u64 {
        let mut freed = 0;
        for pass in 0..2 {
            let mut left = needed.saturating_sub(freed);
            if left == 0 {
                break;
            }
            freed += self.evict_where(|slot| {
                let idle = pass == 1 || slot.seen.load(Ordering::Relaxed) < epoch;
                (left > 0 && idle).then(|| {
                    let weight = slot.link.weight();
                    left = left.saturating_sub(weight);
                    weight
                })
            });
        }
        freed
    }

    /// Removes the slots for which `weigh` returns a weight; returns their total.
    fn evict_where(&mut self, mut weigh: impl FnMut(&Slot) -> Option<u64>) -> u64 {
        let mut freed = 0;
        self.map.retain(|_, slot| match weigh(slot) {
            Some(weight) => {
                freed += weight;
                false
            }
            None => true,
        });
        self.bytes -= freed;
        // A map emptied by a trim or a sweep should give its table back too.
        if self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
        freed
    }
}

/// A byte-bounded cache that can be shrunk on demand and told to stop admitting.
#[derive(Clone)]
pub struct RedirectCache {
    shards: Arc<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Shared, so that a budget that follows the memory limit changes for every clone.
    budget: Arc<AtomicU64>,
    admitting: Arc<AtomicBool>,
    epoch: Arc<AtomicU32>,
}

impl RedirectCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        RedirectCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            budget: Arc::new(AtomicU64::new(budget)),
            admitting: Arc::new(AtomicBool::new(true)),
            // Epoch 0 stands for "before any epoch", see `insert`.
            epoch: Arc::new(AtomicU32::new(1)),
        }
    }

    /// The link for `code`, if cached.
    pub fn get(&self, code: &str) -> Option<Arc<CachedLink>> {
        let shard = self.read(code);
        let slot = shard.map.get(code)?;
        let epoch = self.epoch.load(Ordering::Relaxed);
        if slot.seen.load(Ordering::Relaxed) != epoch {
            slot.seen.store(epoch, Ordering::Relaxed);
        }
        Some(slot.link.clone())
    }

    /// Clicks `code`'s entry has counted since the last flush (0 if not cached); not a hit.
    pub fn pending_clicks(&self, code: &str) -> u64 {
        self.read(code)
            .map
            .get(code)
            .map_or(0, |slot| slot.link.clicks.load(Ordering::Relaxed))
    }

    /// Moves every entry's counted clicks into `counts`.
    pub fn take_clicks(&self, counts: &mut Vec<(Arc<str>, u64)>) {
        for shard in self.shards.iter() {
            for (code, slot) in &lock_read(shard).map {
                let clicks = slot.link.clicks.swap(0, Ordering::Relaxed);
                if clicks > 0 {
                    counts.push((code.clone(), clicks));
                }
            }
        }
    }

    /// Entries with clicks not yet taken.
    pub fn clicked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                lock_read(shard)
                    .map
                    .values()
                    .filter(|slot| slot.link.clicks.load(Ordering::Relaxed) > 0)
                    .count()
            })
            .sum()
    }

    /// Caches a link unless admission is paused by memory pressure.
    pub fn insert(&self, link: Arc<CachedLink>) {
        if !self.admitting.load(Ordering::Relaxed) {
            return;
        }
        let weight = link.weight();
        let shard_budget = self.budget() / SHARDS as u64;
        if weight > shard_budget {
            return;
        }
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut shard = self.write(&link.code);
        // A new entry counts as last seen in the previous epoch, so that a scan
        // of one-off codes is evicted before the links that are being hit.
        let slot = Slot {
            link: link.clone(),
            seen: AtomicU32::new(epoch - 1),
        };
        if let Some(old) = shard.map.insert(link.code.clone(), slot) {
            shard.bytes -= old.link.weight();
        }
        shard.bytes += weight;
        if shard.bytes > shard_budget {
            let target = shard_budget * EVICT_TO_PERCENT / 100;
            let excess = shard.bytes - target;
            shard.evict(excess, epoch);
        }
    }

    /// Drops a code, after its link was deleted.
    pub fn remove(&self, code: &str) {
        let mut shard = self.write(code);
        if let Some(old) = shard.map.remove(code) {
            shard.bytes -= old.link.weight();
        }
    }

    /// Pauses or resumes admission of new entries.
    pub fn set_admitting(&self, admitting: bool) {
        self.admitting.store(admitting, Ordering::Relaxed);
    }

    /// Evicts entries, spread over the shards, until about `bytes` are freed
    /// or the cache is empty; returns the bytes freed.
    pub fn shrink_by(&self, bytes: u64) -> u64 {
        let mut freed = 0;
        while freed < bytes && self.bytes() > 0 {
            let per_shard = (bytes - freed).div_ceil(SHARDS as u64);
            for shard in self.shards.iter() {
                freed += lock_write(shard).evict(per_shard, u32::MAX);
            }
        }
        freed
    }

    /// Starts a new epoch and evicts entries not hit in the last `idle_epochs`
    /// epochs; returns the bytes freed.
    pub fn sweep(&self, idle_epochs: u32) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        let oldest_kept = epoch.saturating_sub(idle_epochs);
        self.shards
            .iter()
            .map(|shard| {
                lock_write(shard).evict_where(|slot| {
                    (slot.seen.load(Ordering::Relaxed) < oldest_kept).then(|| slot.link.weight())
                })
            })
            .sum()
    }

    /// Evicts everything and releases the tables; returns the bytes freed.
    pub fn clear(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| std::mem::take(&mut *lock_write(shard)).bytes)
            .sum()
    }

    /// Entries held now.
    pub fn entries(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| lock_read(shard).map.len() as u64)
            .sum()
    }

    /// Bytes held now, by the weight estimate.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|shard| lock_read(shard).bytes).sum()
    }

    /// The most bytes the cache may hold.
    pub fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    /// Holds at most `budget` bytes from now on; a smaller budget takes effect as links are
    /// added, and the memory manager trims if memory is high meanwhile.
    pub fn set_budget(&self, budget: u64) {
        self.budget.store(budget, Ordering::Relaxed);
    }

    fn index(&self, code: &str) -> usize {
        self.hasher.hash_one(code) as usize % SHARDS
    }

    fn read(&self, code: &str) -> RwLockReadGuard<'_, Shard> {
        lock_read(&self.shards[self.index(code)])
    }

    fn write(&self, code: &str) -> RwLockWriteGuard<'_, Shard> {
        lock_write(&self.shards[self.index(code)])
    }
}

// A panic while a shard is locked leaves a consistent map behind: keep serving.
fn lock_read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock_write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_an_eighth_of_the_limit_within_bounds() {
        assert_eq!(budget_for_limit(96 << 20), 12 << 20);
        assert_eq!(budget_for_limit(2 << 20), MIN_DEFAULT_BUDGET);
        assert_eq!(budget_for_limit(64 << 30), MAX_DEFAULT_BUDGET);
    }

    fn counted(code: &str, clicks: &Arc<ClickBuffer>) -> Arc<CachedLink> {
        Arc::new(CachedLink::new(
            code.into(),
            HeaderValue::from_str(&format!("https://example.com/page/{code}")).unwrap(),
            None,
            clicks,
        ))
    }

    fn link(code: &str) -> Arc<CachedLink> {
        counted(code, &Arc::default())
    }

    fn filled(budget: u64, count: usize) -> RedirectCache {
        let cache = RedirectCache::new(budget);
        let clicks = Arc::default();
        for i in 0..count {
            cache.insert(counted(&format!("code{i}"), &clicks));
        }
        cache
    }

    #[test]
    fn clicks_are_taken_from_entries_and_handed_over_when_an_entry_goes() {
        let buffer = Arc::new(ClickBuffer::default());
        let cache = RedirectCache::new(1 << 20);
        for code in ["kept", "evicted", "held"] {
            cache.insert(counted(code, &buffer));
        }
        for _ in 0..3 {
            cache.get("kept").unwrap().click();
        }
        cache.get("evicted").unwrap().click();
        assert_eq!((cache.pending_clicks("kept"), cache.clicked()), (3, 2));

        // A redirect still holds "held" while the cache lets it go: its click is not lost.
        let held = cache.get("held").unwrap();
        cache.remove("evicted");
        cache.remove("held");
        held.click();
        assert_eq!(buffer.pending("evicted"), 1);
        assert_eq!(buffer.pending("held"), 0, "still held");
        drop(held);
        assert_eq!(buffer.pending("held"), 1);

        let mut taken = Vec::new();
        cache.take_clicks(&mut taken);
        assert_eq!(taken, vec![("kept".into(), 3)]);
        assert_eq!((cache.pending_clicks("kept"), cache.clicked()), (0, 0));
    }

    #[test]
    fn the_cache_never_holds_more_bytes_than_its_budget() {
        let cache = filled(64 * 1024, 5_000);
        assert!(cache.bytes() <= cache.budget(), "{} bytes", cache.bytes());
        // Each shard evicts down to 90 % of its share, not to nothing.
        assert!(
            cache.bytes() >= cache.budget() * 85 / 100,
            "{} bytes",
            cache.bytes()
        );
    }

    #[test]
    fn links_being_hit_survive_a_scan_of_new_codes() {
        let cache = RedirectCache::new(64 * 1024);
        cache.insert(link("hot"));
        for i in 0..5_000 {
            cache.get("hot");
            cache.insert(link(&format!("code{i}")));
            assert!(cache.get("hot").is_some(), "evicted after {i} inserts");
        }
    }

    #[test]
    fn shrinking_frees_at_least_what_was_asked() {
        let cache = filled(1 << 20, 1_000);
        let before = cache.bytes();
        let freed = cache.shrink_by(before / 2);
        assert!(freed >= before / 2);
        assert_eq!(cache.bytes(), before - freed);
        assert_eq!(cache.shrink_by(u64::MAX), before - freed);
        assert_eq!(cache.entries(), 0);
    }

    #[test]
    fn replacing_and_removing_keep_the_byte_count_exact() {
        let cache = RedirectCache::new(1 << 20);
        cache.insert(link("abc"));
        let one = cache.bytes();
        cache.insert(link("abc"));
        assert_eq!(cache.bytes(), one);
        cache.remove("abc");
        assert_eq!((cache.bytes(), cache.entries()), (0, 0));
    }

    #[test]
    fn sweeps_evict_only_links_idle_for_the_given_epochs() {
        let cache = RedirectCache::new(1 << 20);
        cache.insert(link("hot"));
        cache.insert(link("cold"));
        cache.get("hot");
        assert_eq!(cache.sweep(2), 0, "nothing is idle for two epochs yet");
        cache.get("hot");
        let freed = cache.sweep(2);
        assert_eq!(freed, link("cold").weight());
        assert!(cache.get("cold").is_none());
        assert!(cache.get("hot").is_some());
    }

    #[test]
    fn paused_admission_keeps_new_links_out() {
        let cache = RedirectCache::new(1 << 20);
        cache.set_admitting(false);
        cache.insert(link("abc"));
        assert!(cache.get("abc").is_none());
        cache.set_admitting(true);
        cache.insert(link("abc"));
        assert!(cache.get("abc").is_some());
    }

    #[test]
    fn the_weight_estimate_matches_the_heap() {
        // This thread's own allocations, so tests running beside it add no noise.
        use tikv_jemalloc_ctl::thread::{allocatedp, deallocatedp};
        let allocated = allocatedp::read().unwrap();
        let deallocated = deallocatedp::read().unwrap();
        let net = || allocated.get() - deallocated.get();
        let before = net();
        let cache = filled(64 << 20, 20_000);
        let heap = net() - before;
        let estimate = cache.bytes();
        assert!(
            heap < estimate * 11 / 10 && heap > estimate * 9 / 10,
            "heap {heap} vs estimate {estimate}"
        );
    }

    #[test]
    fn expiry_is_inclusive_of_the_deadline() {
        let mut expiring = CachedLink::new(
            "abc".into(),
            HeaderValue::from_static("https://example.com/"),
            Some(1_000),
            &Arc::default(),
        );
        assert!(!expiring.is_expired(|| 999));
        assert!(expiring.is_expired(|| 1_000));
        expiring.expires_at = None;
        assert!(!expiring.is_expired(|| i64::MAX));
    }
}
