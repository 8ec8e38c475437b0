//! The redirect cache: code → target, bounded in bytes rather than entries,
//! so its share of the memory limit holds whatever the URLs' lengths.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::http::HeaderValue;
use moka::sync::Cache;

/// Rough bytes moka and the `Arc`s spend per entry beyond the strings themselves
/// (hash-table slot, access-order node, frequency counter, two reference counts).
const ENTRY_OVERHEAD: usize = 160;

/// What a redirect needs, ready to send.
#[derive(Debug)]
pub struct CachedLink {
    pub code: Arc<str>,
    /// The target as a header value, validated once when cached.
    pub location: HeaderValue,
    pub expires_at: Option<i64>,
}

impl CachedLink {
    /// Whether the link has expired at `now_ms` (Unix milliseconds).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// A byte-bounded cache that can be shrunk on demand and told to stop admitting.
#[derive(Clone)]
pub struct RedirectCache {
    entries: Cache<Arc<str>, Arc<CachedLink>>,
    budget: u64,
    admitting: Arc<AtomicBool>,
}

impl RedirectCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(budget)
            .weigher(|code: &Arc<str>, link: &Arc<CachedLink>| {
                weight(code, link).try_into().unwrap_or(u32::MAX)
            })
            .build();
        RedirectCache {
            entries,
            budget,
            admitting: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The link for `code`, if cached.
    pub fn get(&self, code: &str) -> Option<Arc<CachedLink>> {
        self.entries.get(code)
    }

    /// Caches a link unless admission is paused by memory pressure.
    pub fn insert(&self, link: Arc<CachedLink>) {
        if self.admitting.load(Ordering::Relaxed) {
            self.entries.insert(link.code.clone(), link);
        }
    }

    /// Drops a code, after its link was deleted.
    pub fn remove(&self, code: &str) {
        self.entries.invalidate(code);
    }

    /// Pauses or resumes admission of new entries.
    pub fn set_admitting(&self, admitting: bool) {
        self.admitting.store(admitting, Ordering::Relaxed);
    }

    /// Evicts entries until about `bytes` are freed, or the cache is empty;
    /// returns the bytes freed.
    pub fn shrink_by(&self, bytes: u64) -> u64 {
        let mut freed = 0u64;
        if bytes > 0 {
            for (code, link) in self.entries.iter() {
                if freed >= bytes {
                    break;
                }
                freed += weight(&code, &link) as u64;
                self.entries.invalidate(code.as_ref());
            }
        }
        self.entries.run_pending_tasks();
        freed
    }

    /// Evicts everything; returns the bytes freed.
    pub fn clear(&self) -> u64 {
        let before = self.bytes();
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
        before
    }

    /// Applies pending bookkeeping so that `entries` and `bytes` are exact.
    pub fn settle(&self) {
        self.entries.run_pending_tasks();
    }

    /// Entries held now.
    pub fn entries(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Bytes held now, by the weigher's account.
    pub fn bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// The most bytes the cache may hold.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

fn weight(code: &str, link: &CachedLink) -> usize {
    // The code is stored twice (key and value share one Arc, counted once).
    code.len() + link.location.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(code: &str) -> Arc<CachedLink> {
        Arc::new(CachedLink {
            code: code.into(),
            location: HeaderValue::from_static("https://example.com/some/long/path"),
            expires_at: None,
        })
    }

    #[test]
    fn the_cache_never_holds_more_bytes_than_its_budget() {
        let cache = RedirectCache::new(64 * 1024);
        for i in 0..5_000 {
            cache.insert(link(&format!("code{i}")));
        }
        cache.entries.run_pending_tasks();
        assert!(cache.bytes() <= cache.budget(), "{} bytes", cache.bytes());
        assert!(cache.entries() > 100);
    }

    #[test]
    fn shrinking_frees_at_least_what_was_asked() {
        let cache = RedirectCache::new(1 << 20);
        for i in 0..1_000 {
            cache.insert(link(&format!("code{i}")));
        }
        cache.entries.run_pending_tasks();
        let before = cache.bytes();
        let freed = cache.shrink_by(before / 2);
        assert!(freed >= before / 2);
        assert!(cache.bytes() <= before - freed + 1);
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
    fn expiry_is_inclusive_of_the_deadline() {
        let mut expiring = CachedLink {
            code: "abc".into(),
            location: HeaderValue::from_static("https://example.com/"),
            expires_at: Some(1_000),
        };
        assert!(!expiring.is_expired(999));
        assert!(expiring.is_expired(1_000));
        expiring.expires_at = None;
        assert!(!expiring.is_expired(i64::MAX));
    }
}
