//! Links in PostgreSQL or SQLite through one code path: sqlx's `Any` driver,
//! portable SQL, and times kept as Unix milliseconds.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row, any::AnyPoolOptions, migrate::Migrator};
use tracing::info;

use crate::{Error, Result, memory::sqlite as sqlite_memory};

/// Migrations both backends run.
static SHARED_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");
/// Each backend's own migrations, numbered among the shared ones.
static POSTGRES_ONLY_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_ONLY_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
/// What each backend runs: the shared migrations and its own, in version order.
static POSTGRES_MIGRATIONS: LazyLock<Migrator> =
    LazyLock::new(|| with_shared(&POSTGRES_ONLY_MIGRATIONS));
static SQLITE_MIGRATIONS: LazyLock<Migrator> =
    LazyLock::new(|| with_shared(&SQLITE_ONLY_MIGRATIONS));

fn with_shared(own: &Migrator) -> Migrator {
    let mut migrations: Vec<_> = SHARED_MIGRATIONS
        .iter()
        .chain(own.iter())
        .cloned()
        .collect();
    migrations.sort_by_key(|migration| migration.version);
    Migrator::with_migrations(migrations)
}

/// SQLite's soft bound on all of its heap (page caches, statements, schema): above it,
/// SQLite frees cached pages before it allocates more.
const SQLITE_SOFT_HEAP_LIMIT: u64 = 4 << 20;

/// Rows per click-flush statement (2 parameters each). Binding a statement's parameters
/// costs the square of their number on SQLite (sqlx looks each `$n` up in SQLite's parameter
/// list, which is linear): at 500 rows, flushing 20,000 clicked links every 2 s took a tenth
/// of the instructions of a redirect load; at 64 rows the binding is negligible and a flush
/// is still only a few hundred statements.
const CLICK_BATCH: usize = 64;
/// The statement for a full batch, written once: a flush of 20,000 links runs it 312 times.
static FULL_CLICK_BATCH_SQL: LazyLock<Arc<str>> =
    LazyLock::new(|| add_clicks_sql(CLICK_BATCH).into());

/// A stored link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub code: String,
    pub url: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub clicks: i64,
}

/// The outcome of an insert.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Created,
    CodeTaken,
}

/// Connection pool figures for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct PoolStats {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Pool size when none is configured. SQLite writes one transaction at a time, redirects
    /// are served from the cache, and every connection holds a page cache, its prepared
    /// statements and a schema copy (about 1.3 MiB each after a stress test): two
    /// connections let a read proceed beside a write.
    fn default_max_connections(self) -> u32 {
        match self {
            Backend::Postgres => 8,
            Backend::Sqlite => 2,
        }
    }

    fn migrations(self) -> &'static Migrator {
        match self {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        }
    }
}

/// The link store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects, creating a SQLite file if missing, and applies migrations. Without
    /// `max_connections`, the pool holds the backend's default.
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
        timeout: Duration,
    ) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalize_url(url)?;
        if backend == Backend::Sqlite {
            sqlite_memory::limit(SQLITE_SOFT_HEAP_LIMIT);
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.unwrap_or(backend.default_max_connections()))
            .min_connections(0)
            .acquire_timeout(timeout)
            .idle_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _| Box::pin(async move { prepare(conn, backend).await }))
            .connect(&url)
            .await?;
        backend.migrations().run(&pool).await?;
        info!(backend = ?backend, "database ready");
        Ok(Store { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Inserts a new link unless its code exists.
    pub async fn insert(&self, link: &Link) -> Result<Inserted> {
        let done = sqlx::query(
            "INSERT INTO links (code, url, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING",
        )
        .bind(&link.code)
        .bind(&link.url)
        .bind(link.created_at)
        .bind(link.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(if done.rows_affected() == 1 {
            Inserted::Created
        } else {
            Inserted::CodeTaken
        })
    }

    /// The link with this code, and the clicks written for it.
    pub async fn find(&self, code: &str) -> Result<Option<Link>> {
        let row = sqlx::query(
            "SELECT links.code, url, created_at, expires_at, COALESCE(link_clicks.clicks, 0) AS clicks \
             FROM links LEFT JOIN link_clicks ON link_clicks.code = links.code WHERE links.code = $1",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Link {
                code: row.try_get("code")?,
                url: row.try_get("url")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                clicks: row.try_get("clicks")?,
            })
        })
        .transpose()
    }

    /// Deletes a link and its clicks; false when there was none.
    pub async fn delete(&self, code: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM link_clicks WHERE code = $1")
            .bind(code)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM links WHERE code = $1")
            .bind(code)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds click counts in a few statements, all or nothing; counts of links that no
    /// longer exist are dropped. Counts in code order (as [`crate::clicks::in_code_order`]
    /// gives them) update SQLite's tables, which are ordered by code, page after page.
    pub async fn add_clicks(&self, counts: &[(Arc<str>, u64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in counts.chunks(CLICK_BATCH) {
            let full = chunk.len() == CLICK_BATCH;
            let sql = if full {
                FULL_CLICK_BATCH_SQL.clone()
            } else {
                add_clicks_sql(chunk.len()).into()
            };
            // Only placeholders are generated; every value is bound. The last, shorter batch
            // is not kept prepared: its length changes from flush to flush, and each length
            // kept would be one more statement cached on the connection (on SQLite, its
            // compiled program in the process's heap) until the cache's 100 are full.
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(full);
            for (code, count) in chunk {
                query = query
                    .bind(code.as_ref())
                    .bind(i64::try_from(*count).unwrap_or(i64::MAX));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Pool figures now.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Waits for connections to be returned and closes them.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One statement adding counts to `rows` links, inserting a link's first count. Both
/// backends name a VALUES list's columns `column1`, `column2`; the join with `links` keeps
/// out the counts of links deleted since their clicks, and `WHERE true` is SQLite's way to
/// tell the join's `ON` from the upsert's.
fn add_clicks_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!(
        "INSERT INTO link_clicks (code, clicks) \
         SELECT v.column1, v.column2 FROM (VALUES {}) AS v JOIN links ON links.code = v.column1 \
         WHERE true \
         ON CONFLICT (code) DO UPDATE SET clicks = link_clicks.clicks + excluded.clicks",
        values.join(", ")
    )
}

/// Accepts `postgres://`, `postgresql://` and `sqlite:` URLs; SQLite files are
/// created when missing.
fn normalize_url(url: &str) -> Result<(String, Backend)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), Backend::Postgres));
    }
    if url.starts_with("sqlite:") {
        let url = if url.contains("mode=") || url.contains(":memory:") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        return Ok((url, Backend::Sqlite));
    }
    Err(Error::Config(format!(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got scheme `{}`)",
        url.split(':').next().unwrap_or_default()
    )))
}

/// Per-connection settings. SQLite: WAL for concurrent readers, a full fsync per
/// commit so that a 201 means durable, a wait instead of an error when busy, and
/// a small page cache per connection to keep memory low.
async fn prepare(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 5000",
            "PRAGMA cache_size = -512",
        ] {
            sqlx::query(pragma).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file_when_missing() {
        let (url, backend) = normalize_url("sqlite:shortener.db").unwrap();
        assert_eq!(url, "sqlite:shortener.db?mode=rwc");
        assert_eq!(backend, Backend::Sqlite);
        let (url, _) = normalize_url("sqlite:x.db?mode=ro").unwrap();
        assert_eq!(url, "sqlite:x.db?mode=ro");
    }

    #[test]
    fn unknown_schemes_are_refused_without_echoing_credentials() {
        let message = normalize_url("mysql://user:secret@host/db")
            .unwrap_err()
            .to_string();
        assert!(message.contains("postgres://"));
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn click_batches_number_their_parameters_in_pairs() {
        let sql = add_clicks_sql(2);
        assert!(sql.contains("($1, $2), ($3, $4)"), "{sql}");
    }

    #[tokio::test]
    async fn a_sqlite_store_round_trips_links_and_clicks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("links.db").display());
        let store = Store::connect(&url, Some(2), Duration::from_secs(2))
            .await
            .unwrap();
        let link = Link {
            code: "abc123".into(),
            url: "https://example.com/".into(),
            created_at: 1,
            expires_at: None,
            clicks: 0,
        };
        assert_eq!(store.insert(&link).await.unwrap(), Inserted::Created);
        assert_eq!(store.insert(&link).await.unwrap(), Inserted::CodeTaken);
        store.add_clicks(&[("abc123".into(), 3)]).await.unwrap();
        store.add_clicks(&[("abc123".into(), 2)]).await.unwrap();
        let found = store.find("abc123").await.unwrap().unwrap();
        assert_eq!(found.clicks, 5);
        assert!(store.delete("abc123").await.unwrap());
        assert_eq!(store.find("abc123").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_sqlite_database_from_before_the_split_keeps_its_links_and_clicks_ordered_by_code() {
        use sqlx::{Connection, SqliteConnection};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("links.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        SQLITE_MIGRATIONS.run_to(1, &mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO links (code, url, created_at, expires_at, clicks) \
             VALUES ('zz9', 'https://example.com/z', 1, NULL, 7), ('aa1', 'https://example.com/a', 2, 5, 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = Store::connect(&url, Some(1), Duration::from_secs(2))
            .await
            .unwrap();
        let kept = store.find("zz9").await.unwrap().unwrap();
        assert_eq!(
            (kept.url.as_str(), kept.created_at, kept.clicks),
            ("https://example.com/z", 1, 7)
        );
        assert_eq!(
            store.find("aa1").await.unwrap().unwrap().expires_at,
            Some(5)
        );
        store.close().await;

        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        for table in ["links", "link_clicks"] {
            let without_rowid: i64 =
                sqlx::query_scalar("SELECT wr FROM pragma_table_list WHERE name = $1")
                    .bind(table)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(without_rowid, 1, "{table} is a table ordered by code");
        }
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('links')")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(columns, ["code", "url", "created_at", "expires_at"]);
        let clicks: Vec<(String, i64)> = sqlx::query_as("SELECT code, clicks FROM link_clicks")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            clicks,
            [("zz9".to_owned(), 7)],
            "only links with clicks have a count"
        );
    }
}
