//! SQLite's own heap: what it holds, a soft bound on it, and giving back what it caches.
//!
//! The bundled SQLite allocates through `malloc`, which is jemalloc in this process, so its
//! memory is already part of the allocator's figures; these say how much of them is SQLite's.

#![allow(unsafe_code)]

use serde::Serialize;

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
