//! Click flushes do not pile up prepared statements: a flush ends with a shorter batch whose
//! length changes from flush to flush, and keeping each length prepared grew SQLite's heap
//! with the number of distinct lengths seen, for as long as the service ran.
//!
//! Alone in its binary, because it reads SQLite's process-wide memory counter.

use std::{sync::Arc, time::Duration};

use shortener::{
    memory::sqlite,
    store::{Link, Store},
};

#[tokio::test]
async fn flushes_of_every_length_leave_sqlite_s_heap_as_one_flush_does() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("links.db").display());
    let store = Store::connect(&url, Some(1), Duration::from_secs(2))
        .await
        .unwrap();
    let codes: Vec<Arc<str>> = (0..200).map(|i| format!("c{i:03}").into()).collect();
    for (i, code) in codes.iter().enumerate() {
        let link = Link {
            code: code.to_string(),
            url: "https://example.com/".into(),
            created_at: i64::try_from(i).unwrap(),
            expires_at: None,
            clicks: 0,
        };
        store.insert(&link).await.unwrap();
    }
    let flush = async |rows: usize| {
        let counts: Vec<_> = codes[..rows].iter().map(|code| (code.clone(), 1)).collect();
        store.add_clicks(&counts).await.unwrap();
    };
    // SQLite's heap without its page cache, which it gives back on request.
    let heap = || {
        sqlite::release();
        sqlite::stats().used
    };

    flush(codes.len()).await;
    let after_one = heap();
    // Every batch length a flush can end with.
    for rows in 1..64 {
        flush(rows).await;
    }
    let after_all = heap();

    assert!(
        after_all < after_one + 64 * 1024,
        "SQLite's heap grew from {after_one} to {after_all} bytes over 63 flushes"
    );
    let first = store.find("c000").await.unwrap().unwrap();
    assert_eq!(first.clicks, 64, "every flush was written");
}
