//! The real `shortener` binary: graceful shutdown, heap profiles, and the
//! memory manager acting on the process's real resident memory.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use testkit::MemoryCgroup;

const TOKEN: &str = "binary-test-token";

/// A running `shortener` process, killed if the test ends early.
struct Shortener {
    child: Child,
    base: String,
    client: Client,
}

impl Shortener {
    async fn start(database: &Path, env: &[(&str, String)]) -> Shortener {
        Shortener::start_in(database, env, None).await
    }

    /// Started inside `cgroup`, from its first instruction on, as a container's process is.
    async fn start_in(
        database: &Path,
        env: &[(&str, String)],
        cgroup: Option<&MemoryCgroup>,
    ) -> Shortener {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let binary = env!("CARGO_BIN_EXE_shortener");
        let mut command = match cgroup {
            None => Command::new(binary),
            Some(cgroup) => {
                let mut shell = Command::new("sh");
                shell.args([
                    "-c",
                    r#"echo $$ > "$1" && exec "$0""#,
                    binary,
                    &cgroup.procs().display().to_string(),
                ]);
                shell
            }
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("SHORTENER_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", format!("sqlite:{}", database.display()))
            .env("SHORTENER_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn the shortener binary");
        let process = Shortener {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = process.client.get(process.url("/healthz")).send().await
                && reply.status().is_success()
            {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "the shortener never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
    }

    async fn create(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/links"))
            .json(&body)
            .send()
            .await
            .expect("create request")
    }

    async fn redirect(&self, code: &str) -> StatusCode {
        self.client
            .get(self.url(&format!("/{code}")))
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(StatusCode::BAD_GATEWAY)
    }

    async fn memory_stats(&self) -> Value {
        self.client
            .get(self.url("/api/v1/memory/stats"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("stats request")
            .json()
            .await
            .expect("stats body")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Shortener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_drains_flushes_clicks_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("links.db");
    // Clicks are flushed only at shutdown: the interval is far longer than the test.
    let slow_flush = [("SHORTENER_CLICK_FLUSH_INTERVAL", "1h".to_owned())];
    let service = Shortener::start(&db, &slow_flush).await;
    let created = service
        .create(json!({"url": "https://example.com/", "code": "durable"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for _ in 0..5 {
        assert_eq!(service.redirect("durable").await, StatusCode::FOUND);
    }
    let status = service.terminate();
    assert!(status.success(), "exit status {status}");

    let again = Shortener::start(&db, &slow_flush).await;
    let shown: Value = again
        .get("/api/v1/links/durable")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["clicks"], 5, "{shown}");
}

#[tokio::test]
async fn heap_profiles_are_gzipped_pprof_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let service = Shortener::start(
        &dir.path().join("links.db"),
        &[("SHORTENER_PPROF", "true".to_owned())],
    )
    .await;
    let reply = service
        .client
        .get(service.url("/debug/pprof/heap"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let profile = reply.bytes().await.unwrap();
    assert_eq!(&profile[..2], &[0x1f, 0x8b], "not gzip");
}

/// Fills the redirect cache with long URLs until real resident memory crosses
/// the critical mark, then checks that the service sheds and recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_memory_pressure_trims_sheds_and_recovers() {
    const LINKS: usize = 8_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("links.db");
    seed_long_links(&db, LINKS).await;

    // Idle sits at 60 % of the limit, on the low water mark; caching every link
    // adds about 18 MB, well past critical (95 %).
    let probe = Shortener::start(&db, &[]).await;
    let idle = probe.resident_bytes();
    drop(probe);
    let limit = idle * 100 / 60;
    let service = Shortener::start(
        &db,
        &[
            ("SHORTENER_MAX_MEMORY", limit.to_string()),
            ("SHORTENER_CACHE_BUDGET", "64MiB".to_owned()),
            ("SHORTENER_MONITOR_INTERVAL", "100ms".to_owned()),
            // Long enough for the load to refill the cache between trims.
            ("SHORTENER_MIN_TRIM_INTERVAL", "8s".to_owned()),
            ("SHORTENER_DB_MAX_CONNECTIONS", "2".to_owned()),
        ],
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shed_seen = false;
    'load: while Instant::now() < deadline {
        // Sixteen at a time: idle keep-alive connections hold buffers in the
        // server, and the test is about the cache, not about connection count.
        for batch in (0..LINKS).collect::<Vec<_>>().chunks(16) {
            service.follow_all(batch).await;
            if service.memory_stats().await["shedding"] == true {
                shed_seen = true;
                break 'load;
            }
        }
    }
    assert!(shed_seen, "memory never reached critical under load");

    let refused = service
        .create(json!({"url": "https://example.com/x"}))
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let ready = service.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // With the load gone, the next trim brings memory back under the high water mark.
    let recovery = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = service.memory_stats().await;
        if stats["shedding"] == false {
            assert!(stats["usage_ratio"].as_f64().unwrap() < 0.80, "{stats}");
            break;
        }
        assert!(Instant::now() < recovery, "never recovered: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = service.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let accepted = service
        .create(json!({"url": "https://example.com/y"}))
        .await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let metrics = service.get("/metrics").await.text().await.unwrap();
    // Which trim brought it back (high water or critical) depends on timing; that one did does not.
    assert!(metrics.contains("shortener_memory_trims_total{reason="));
    assert!(!metrics.contains("shortener_load_shed_total 0"));
}

/// The seeds' story: a stress test (creates and redirects at full speed), then nothing. The
/// service must come back near its idle size by itself, without a manual trim, and its memory
/// metrics must match what the kernel says all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stress_test_memory_comes_back_by_itself_and_the_metrics_tell_the_truth() {
    const LINKS: usize = 8_000;
    const CLIENTS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let service = Shortener::start(
        &dir.path().join("links.db"),
        &[
            ("SHORTENER_MAX_MEMORY", "96MiB".to_owned()),
            ("SHORTENER_MONITOR_INTERVAL", "1s".to_owned()),
            // Idle links leave the cache after 3 s instead of 20, to keep the test short.
            ("SHORTENER_CACHE_IDLE_TTL", "3s".to_owned()),
        ],
    )
    .await;
    // Idle is a service that has answered each kind of request once (their code is then
    // resident), with nothing in flight.
    let warm = service
        .create(json!({"url": "https://example.com/warm"}))
        .await;
    let warm: Value = warm.json().await.unwrap();
    assert_eq!(
        service.redirect(warm["code"].as_str().unwrap()).await,
        StatusCode::FOUND
    );
    service.check_memory_metrics().await;
    service.memory_stats().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = service.resident_bytes();

    // Stress: 64 clients create links with URLs of 45 to 245 bytes, then follow random
    // ones for a few seconds, while the metrics are checked against /proc.
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let base = service.base.clone();
        clients.spawn(async move {
            // A connection of its own, closed when the stress test ends, as a load tool's are.
            let http = Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut codes = Vec::new();
            for n in (client..LINKS).step_by(CLIENTS) {
                let url = format!("https://example.com/{n}/{}", "x".repeat(20 + n % 200));
                let reply = http
                    .post(format!("{base}/api/v1/links"))
                    .json(&json!({ "url": url }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), StatusCode::CREATED);
                let created: Value = reply.json().await.unwrap();
                codes.push(created["code"].as_str().unwrap().to_owned());
            }
            let until = Instant::now() + Duration::from_secs(6);
            let mut i = client;
            while Instant::now() < until {
                i = (i * 7 + 13) % codes.len();
                let reply = http.get(format!("{base}/{}", codes[i])).send().await;
                assert_eq!(reply.unwrap().status(), StatusCode::FOUND);
            }
        });
    }
    let mut peak = idle;
    while !clients.is_empty() {
        peak = peak.max(service.check_memory_metrics().await);
        if let Some(done) = clients.try_join_next() {
            done.expect("a client failed");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Then nothing: the idle links leave the cache within a few samples, and the service
    // gives back what the load left, by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        service.check_memory_metrics().await;
        let stats = service.memory_stats().await;
        let metrics = service.get("/metrics").await.text().await.unwrap();
        if stats["cache_entries"] == 0
            && metrics.contains(r#"shortener_memory_trims_total{reason="idle"}"#)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache was not emptied nor memory given back 30 s after the load: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Two more samples, and the background thread's decay (1 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = service.check_memory_metrics().await;
    let grown = peak - idle;
    assert!(
        grown > 3 << 20,
        "the stress test raised RSS by only {grown} B"
    );
    // Idle is mostly the test build's code (about 18 MB); before the service gave memory back
    // by itself, RSS stayed at 1.34 x idle here, with most of what the load added.
    assert!(
        settled <= idle * 12 / 10 && settled - idle.min(settled) <= grown / 2,
        "RSS {settled} B after the load: idle was {idle} B, peak {peak} B; {}",
        service.memory_stats().await
    );
    let metrics = service.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains(r#"reason="manual""#));
}

/// A pod resized in place: the service follows its cgroup's new limit (marks, metrics and the
/// cache's share) in the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_changed_in_place_is_followed_without_a_restart() {
    const MIB: u64 = 1 << 20;
    let name = format!("shortener-resize-{}", std::process::id());
    let cgroup = match MemoryCgroup::create(&name, 256 * MIB) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("SKIPPED: no memory cgroup can be made here ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [("SHORTENER_MONITOR_INTERVAL", "200ms".to_owned())];
    let shortener = Shortener::start_in(&dir.path().join("db.sqlite"), &env, Some(&cgroup)).await;
    let pid = shortener.child.id();
    let limit = async || {
        let stats = shortener.memory_stats().await;
        (
            stats["limit_bytes"].as_u64().unwrap(),
            stats["limit_source"].as_str().unwrap().to_owned(),
            stats["cache_budget_bytes"].as_u64().unwrap(),
        )
    };
    let (bytes, source, budget) = limit().await;
    assert_eq!(bytes, 256 * MIB);
    assert!(source.starts_with("cgroup_v"), "{source}");
    assert_eq!(budget, 32 * MIB);

    for resized in [384 * MIB, 192 * MIB] {
        cgroup.set_limit(resized).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while limit().await.0 != resized {
            assert!(
                Instant::now() < deadline,
                "the limit stayed {:?}",
                limit().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(limit().await.2, resized / 8, "the cache's share follows");
        let metrics = shortener.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains(&format!("shortener_memory_limit_bytes {resized}")),
            "{metrics}"
        );
    }
    assert_eq!(shortener.child.id(), pid, "the same process throughout");
}

/// Stores `count` links `mem0`, `mem1`, … whose targets are about 2 KB long,
/// in one transaction (one fsync instead of thousands).
async fn seed_long_links(db: &Path, count: usize) {
    use sqlx::{Connection, SqliteConnection};
    let url = format!("sqlite:{}?mode=rwc", db.display());
    shortener::store::Store::connect(&url, Some(1), Duration::from_secs(5))
        .await
        .expect("migrations")
        .close()
        .await;
    let mut conn = SqliteConnection::connect(&url).await.expect("sqlite");
    let mut tx = conn.begin().await.unwrap();
    let long_path = "p".repeat(1_990);
    for i in 0..count {
        sqlx::query("INSERT INTO links (code, url, created_at) VALUES ($1, $2, 0)")
            .bind(format!("mem{i}"))
            .bind(format!("https://example.com/{long_path}{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

impl Shortener {
    /// Checks the `shortener_memory_*` metrics against the kernel's figure for the process,
    /// read just before and just after the scrape (the service samples at each scrape); returns
    /// the larger kernel figure.
    async fn check_memory_metrics(&self) -> u64 {
        let before = self.resident_bytes();
        let text = self.get("/metrics").await.text().await.unwrap();
        let after = self.resident_bytes();
        let gauge = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        };
        let resident = gauge("shortener_memory_resident_bytes");
        let (low, high) = (before.min(after) as f64, before.max(after) as f64);
        // A page or two may move between the reads; more means the gauge is wrong.
        assert!(
            resident >= low - 1e6 && resident <= high + 1e6,
            "resident gauge {resident} outside the kernel's {low}..{high}"
        );
        assert_eq!(gauge("shortener_memory_limit_bytes"), (96u64 << 20) as f64);
        let ratio = gauge("shortener_memory_usage_ratio");
        assert!(
            (ratio - resident / (96u64 << 20) as f64).abs() < 1e-9,
            "{ratio}"
        );
        let sqlite = gauge("shortener_memory_sqlite_bytes");
        assert!(sqlite > 0.0 && sqlite <= gauge("shortener_allocator_allocated_bytes"));
        assert!(gauge("shortener_allocator_resident_bytes") <= high);
        high as u64
    }

    /// Follows the links in `indices` concurrently; every one must exist.
    async fn follow_all(&self, indices: &[usize]) {
        let mut requests = tokio::task::JoinSet::new();
        for i in indices {
            let (client, url) = (self.client.clone(), self.url(&format!("/mem{i}")));
            requests.spawn(async move { client.get(url).send().await.map(|r| r.status()) });
        }
        while let Some(done) = requests.join_next().await {
            if let Ok(Ok(status)) = done {
                assert_ne!(status, StatusCode::NOT_FOUND);
            }
        }
    }
}
