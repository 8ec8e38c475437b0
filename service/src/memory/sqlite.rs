//! SQLite's own heap: an arena of its own, what it holds, a soft bound on it, and giving back
//! what it caches.
//!
//! SQLite's allocations live as long as its connections (page caches, prepared statements,
//! schemas) while a request's are freed within microseconds. Sharing pages, the few long-lived
//! ones pin many pages of short-lived ones: after a stress test, 0.25 MiB of SQLite kept
//! 1.6 MiB of the allocator's pages active. So SQLite allocates from a jemalloc arena of its
//! own, without thread caches; its memory is still part of the allocator's figures, and these
//! say how much of them is SQLite's.

#![allow(unsafe_code)]

use std::{
    ffi::{c_int, c_void},
    sync::{
        OnceLock,
        atomic::{AtomicI32, Ordering},
    },
};

use libsqlite3_sys as ffi;
use serde::Serialize;
use tikv_jemalloc_sys as jemalloc;
use tracing::{debug, warn};

use super::allocator;

/// The `mallocx` flags of SQLite's allocations: its arena, no thread cache.
static FLAGS: AtomicI32 = AtomicI32::new(0);

/// SQLite's heap now, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SqliteMemory {
    /// Bytes SQLite has allocated and not freed (page caches, statements, schemas).
    pub used: u64,
    /// The most it has held at once since the process started.
    pub highwater: u64,
    /// The soft bound in force (0: none).
    pub soft_limit: u64,
}

/// Sets SQLite up once per process, before it opens anything: its own arena, and a soft
/// bound of `soft_limit` bytes on its heap. If SQLite was already in use (only in tests that
/// open databases some other way first), it keeps the process's `malloc`.
pub fn configure(soft_limit: u64) {
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    CONFIGURED.get_or_init(|| match own_arena() {
        Ok(arena) => debug!(arena, "SQLite allocates from an arena of its own"),
        Err(reason) => warn!(%reason, "SQLite shares the allocator's arenas"),
    });
    limit(soft_limit);
}

fn own_arena() -> Result<u32, String> {
    let arena = allocator::create_arena().map_err(|e| e.to_string())?;
    let arena_flag = usize::try_from(arena).map_err(|e| e.to_string())?;
    FLAGS.store(
        jemalloc::MALLOCX_ARENA(arena_flag) | jemalloc::MALLOCX_TCACHE_NONE,
        Ordering::Relaxed,
    );
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(sqlite_malloc),
        xFree: Some(sqlite_free),
        xRealloc: Some(sqlite_realloc),
        xSize: Some(sqlite_size),
        xRoundup: Some(sqlite_roundup),
        xInit: Some(sqlite_init),
        xShutdown: Some(sqlite_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to an `sqlite3_mem_methods`, which SQLite
    // copies; it is refused (SQLITE_MISUSE) once SQLite is initialised, and changes nothing then.
    let code = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
    if code == ffi::SQLITE_OK {
        Ok(arena)
    } else {
        Err(format!(
            "SQLite was already initialised (sqlite3_config: {code})"
        ))
    }
}

fn flags() -> c_int {
    FLAGS.load(Ordering::Relaxed)
}

/// jemalloc leaves a request for 0 bytes undefined; SQLite's contract is any valid pointer.
fn at_least_one(bytes: c_int) -> usize {
    usize::try_from(bytes).unwrap_or(0).max(1)
}

unsafe extern "C" fn sqlite_malloc(bytes: c_int) -> *mut c_void {
    // SAFETY: a non-zero size and flags naming an existing arena.
    unsafe { jemalloc::mallocx(at_least_one(bytes), flags()) }
}

unsafe extern "C" fn sqlite_free(pointer: *mut c_void) {
    if !pointer.is_null() {
        // SAFETY: SQLite frees only what `sqlite_malloc` or `sqlite_realloc` returned.
        unsafe { jemalloc::dallocx(pointer, flags()) }
    }
}

unsafe extern "C" fn sqlite_realloc(pointer: *mut c_void, bytes: c_int) -> *mut c_void {
    // SAFETY: SQLite passes a live allocation of ours (never null) and a new size.
    unsafe { jemalloc::rallocx(pointer, at_least_one(bytes), flags()) }
}

unsafe extern "C" fn sqlite_size(pointer: *mut c_void) -> c_int {
    if pointer.is_null() {
        return 0;
    }
    // SAFETY: a live allocation of ours.
    let size = unsafe { jemalloc::sallocx(pointer, 0) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn sqlite_roundup(bytes: c_int) -> c_int {
    // SAFETY: `nallocx` only computes; a zero result means the size cannot be served, and
    // SQLite then asks for the size as it is.
    let size = unsafe { jemalloc::nallocx(at_least_one(bytes), flags()) };
    c_int::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(bytes)
}

unsafe extern "C" fn sqlite_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn sqlite_shutdown(_: *mut c_void) {}

/// Reads SQLite's memory counters.
pub fn stats() -> SqliteMemory {
    // SAFETY: these functions only read SQLite's global counters (thread safe in the bundled
    // build, which is compiled with SQLITE_THREADSAFE=1); a negative limit reads without setting.
    let (used, highwater, soft_limit) = unsafe {
        (
            libsqlite3_sys::sqlite3_memory_used(),
            libsqlite3_sys::sqlite3_memory_highwater(0),
            libsqlite3_sys::sqlite3_soft_heap_limit64(-1),
        )
    };
    SqliteMemory {
        used: non_negative(used),
        highwater: non_negative(highwater),
        soft_limit: non_negative(soft_limit),
    }
}

/// Bounds SQLite's heap softly: above `bytes`, SQLite frees cached pages before allocating more.
pub fn limit(bytes: u64) {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    // SAFETY: sets a global under SQLite's own mutex; any non-negative value is valid.
    unsafe {
        libsqlite3_sys::sqlite3_soft_heap_limit64(bytes);
    }
}

/// Frees every page SQLite caches but does not need now; returns the bytes freed.
pub fn release() -> u64 {
    // SAFETY: thread safe; the bundled build has SQLITE_ENABLE_MEMORY_MANAGEMENT, without
    // which the call frees nothing and returns 0.
    let freed = unsafe { libsqlite3_sys::sqlite3_release_memory(i32::MAX) };
    non_negative(i64::from(freed))
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use libsqlite3_sys as ffi;

    use super::*;

    /// A database connection of the raw C API, closed on drop.
    struct Db(*mut ffi::sqlite3);

    impl Db {
        fn open(path: &str) -> Db {
            let path = CString::new(path).unwrap();
            let mut db = std::ptr::null_mut();
            // SAFETY: a valid NUL-terminated path and out-pointer.
            assert_eq!(unsafe { ffi::sqlite3_open(path.as_ptr(), &mut db) }, 0);
            Db(db)
        }

        fn exec(&self, sql: &str) {
            let sql = CString::new(sql).unwrap();
            let null = std::ptr::null_mut();
            // SAFETY: an open handle and a valid statement string, no callback.
            let code = unsafe { ffi::sqlite3_exec(self.0, sql.as_ptr(), None, null, null.cast()) };
            assert_eq!(code, 0, "{sql:?}");
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            // SAFETY: the handle came from sqlite3_open and is not used afterwards.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }

    const FILL: &str = "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL \
                        SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT randomblob(100) FROM n;";

    #[test]
    fn what_sqlite_holds_is_counted() {
        let db = Db::open(":memory:");
        db.exec(FILL);
        // A 2 MB in-memory table lives in SQLite's heap; other tests can only add to it.
        let open = stats();
        assert!(open.used >= 2 << 20, "{open:?}");
        assert!(open.highwater >= open.used, "{open:?}");
    }

    #[test]
    fn release_frees_cached_pages() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("t.db").to_str().unwrap());
        db.exec(FILL);
        db.exec("SELECT count(*) FROM t WHERE length(x) > 0");
        // The pages just read stay cached, unpinned, until something asks for them back.
        assert!(release() > 0);
    }

    #[test]
    fn the_soft_limit_is_set_and_read_back() {
        limit(4 << 20);
        assert_eq!(stats().soft_limit, 4 << 20);
    }
}
