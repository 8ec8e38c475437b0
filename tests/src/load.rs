//! Real traffic: links with long targets seeded straight into PostgreSQL, then followed
//! through one pod's port so that pod's redirect cache, and so its resident memory, grows.

use std::{ops::Range, process::Command, time::Duration};

use tokio::{task::JoinSet, time::Instant};

/// Where Debian's postgresql-15 package puts `psql`.
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
/// Targets of about 2 KB (the service takes up to 2,048 bytes), so each cached link costs
/// about that much memory.
const PATH_BYTES: usize = 1_990;
/// Links followed at once: enough to keep one debug-build pod busy, few enough that open
/// connections do not hold much memory of their own.
const CONCURRENCY: usize = 16;

/// Stores links `mem0` … `mem<count-1>` with ~2 KB targets in one statement. The `links`
/// table must exist (any pod creates it at start-up).
pub fn seed_long_links(database_url: &str, count: usize) {
    let sql = format!(
        "INSERT INTO links (code, url, created_at) \
         SELECT 'mem' || i, 'https://example.com/' || repeat('p', {PATH_BYTES}) || '/' || i, 0 \
         FROM generate_series(0, {}) AS i",
        count.saturating_sub(1)
    );
    psql(database_url, &sql);
}

/// Runs one SQL command, panicking with psql's stderr if it fails.
pub fn psql(database_url: &str, sql: &str) -> String {
    let output = Command::new(PSQL)
        .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
        .args(["--set=ON_ERROR_STOP=1", "-d", database_url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// What following links through one pod came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    /// Redirects answered (302).
    pub redirected: usize,
    /// Requests that got no answer or another status.
    pub failed: usize,
}

/// Follows links `mem<i>` for every `i` in `links`, in order and as fast as the pod answers,
/// through the pod at `base_url` until all were followed once, the pod stops answering (it was
/// evicted), `keep_going` says stop, or `timeout` passes.
pub async fn follow_links(
    client: &reqwest::Client,
    base_url: &str,
    links: Range<usize>,
    timeout: Duration,
    keep_going: impl FnMut() -> bool,
) -> Followed {
    follow(client, base_url, links, None, timeout, keep_going).await
}

/// As [`follow_links`], but at a steady `per_second` links a second (in ten batches a second):
/// a leak slow enough for a policy's clocks to matter.
pub async fn follow_steadily(
    client: &reqwest::Client,
    base_url: &str,
    links: Range<usize>,
    per_second: usize,
    timeout: Duration,
    keep_going: impl FnMut() -> bool,
) -> Followed {
    follow(
        client,
        base_url,
        links,
        Some(per_second),
        timeout,
        keep_going,
    )
    .await
}

async fn follow(
    client: &reqwest::Client,
    base_url: &str,
    links: Range<usize>,
    per_second: Option<usize>,
    timeout: Duration,
    mut keep_going: impl FnMut() -> bool,
) -> Followed {
    /// Batches a second at a steady pace.
    const TICKS: usize = 10;
    let deadline = Instant::now() + timeout;
    let batch_size = per_second.map_or(CONCURRENCY, |rate| (rate / TICKS).max(1));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / TICKS as u32);
    let mut followed = Followed::default();
    let mut next = links.start;
    while next < links.end && Instant::now() < deadline && keep_going() {
        if per_second.is_some() {
            ticks.tick().await;
        }
        let mut batch = JoinSet::new();
        let end = (next + batch_size).min(links.end);
        for i in next..end {
            let (client, url) = (client.clone(), format!("{base_url}/mem{i}"));
            batch.spawn(async move { client.get(url).send().await.map(|r| r.status()) });
        }
        let sent = end - next;
        next = end;
        let mut unanswered = 0;
        while let Some(done) = batch.join_next().await {
            match done {
                Ok(Ok(status)) if status.as_u16() == 302 => followed.redirected += 1,
                Ok(Err(error)) if error.is_connect() => {
                    followed.failed += 1;
                    unanswered += 1;
                }
                _ => followed.failed += 1,
            }
        }
        if unanswered == sent {
            break;
        }
    }
    followed
}
