//! Persistence: the connection pool, write transactions, and one module per area. Transactions live here.

pub mod audit;
pub mod backup;
pub mod category;
pub mod certification;
pub mod competency;
pub mod course;
pub mod delivery;
pub mod entity;
pub mod event;
pub(crate) mod failure;
pub mod idempotency;
pub mod organization;
pub mod partition;
pub mod person;
pub mod placement;
pub mod programme;
pub mod progress;
pub mod progress_cache;
pub mod replica;
pub mod report;
pub mod selection;
pub mod survey;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use migration::MigratorTrait as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous as SqlxSynchronous},
};

use crate::config::{Config, SqliteSynchronous};
use crate::error::{Error, Reason, Result};
pub(crate) use failure::{db_error, is_unique_violation};

/// A boxed future borrowing a transaction, as taken by [`Store::write`].
pub type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    rules: progress::RuleCache,
    feed: std::sync::Arc<tokio::sync::Notify>,
    group: std::sync::Arc<progress::GroupCommit>,
    storage: Arc<StorageHealth>,
    /// SQLite only: write transactions queue here, first come first served. SQLite runs one
    /// writer at a time anyway; without this queue, writers wait in SQLite's busy handler, which
    /// is not fair, and under many concurrent writers some waited past the busy timeout.
    sqlite_writers: Option<Arc<tokio::sync::Semaphore>>,
    metrics: Arc<StoreMetrics>,
    /// PostgreSQL only: hot standbys for routed reads (`DATABASE_READ_URL`), see [`replica`].
    replicas: Option<Arc<replica::ReadReplicas>>,
    /// Answers of the most frequent progress reads, see [`progress_cache`].
    progress_cache: progress_cache::ProgressCache,
    /// PostgreSQL only: sends committed invalidations to every replica, see [`progress_cache`].
    progress_notifier: Option<tokio::sync::mpsc::UnboundedSender<progress_cache::Touched>>,
}

/// Measurements the store takes; the metrics endpoint (`src/server/metrics.rs`) registers them.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Seconds a write transaction waited for its turn (the SQLite write queue) and a pooled
    /// connection before its `BEGIN` returned.
    pub write_wait: prometheus_client::metrics::histogram::Histogram,
    /// Calls committed together per group-commit transaction (unary RecordProgress).
    pub group_sizes: prometheus_client::metrics::histogram::Histogram,
    /// Read routing to standbys: reads per server, staleness, use (empty without standbys).
    pub replicas: Arc<replica::ReplicaMetrics>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        Self {
            // 100 µs .. about 6.5 s: an idle pool answers in microseconds, a starved one waits
            // up to the acquire timeout.
            write_wait: Histogram::new(exponential_buckets(0.0001, 3.0, 11)),
            // 1, 2, 4 .. 1024 calls.
            group_sizes: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            replicas: Arc::default(),
        }
    }
}

/// Connections of the database pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle or in use).
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Whether writes fail on the database's storage: set when a write fails on storage (disk
/// full, I/O error), cleared only by a probe write that commits ([`Store::probe_storage`]), so
/// health does not flap while small writes still fit and larger ones do not.
#[derive(Debug)]
struct StorageHealth {
    failing: tokio::sync::watch::Sender<bool>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            failing: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl StorageHealth {
    fn set_failing(&self, failing: bool) {
        let changed = self
            .failing
            .send_if_modified(|current| std::mem::replace(current, failing) != failing);
        if changed && failing {
            tracing::warn!(
                "writes fail on the database's storage; health NOT_SERVING until a probe write commits"
            );
        } else if changed {
            tracing::info!("a probe write committed; writes are healthy again");
        }
    }
}

/// Bytes the health probe writes: more than a page, so it needs storage the database has free.
const PROBE_BYTES: usize = 16 * 1024;

/// Returns true when a connection coming back to the pool is outside any transaction.
///
/// A transaction that ended cleanly (committed or rolled back) leaves the driver's depth at 0.
/// Anything else means a COMMIT or ROLLBACK failed: SQLite rolls a transaction back by itself
/// on SQLITE_FULL and some I/O errors, so the driver's ROLLBACK then fails and its depth stays at
/// 1, and a PostgreSQL connection whose backend was terminated cannot roll back at all. Such a
/// connection is closed instead of pooled: reused, its next `BEGIN` would become a savepoint of a
/// transaction that never commits (acknowledged writes lost on SQLite, the write lock held).
fn leaves_clean<C: sea_orm::sqlx::Connection>(connection: &C) -> bool {
    if connection.is_in_transaction() {
        tracing::warn!("a database connection came back inside a transaction; closing it");
        return false;
    }
    true
}

/// Reason of the error a reminder sweep rolls back with when another replica's sweep announced
/// the same reminders first; the sweep then counts none and goes on.
pub(crate) const CONCURRENT_SWEEP: Reason = Reason::ConcurrentSweep;

impl Store {
    /// Connects to the configured database (creating the SQLite file and its folder if needed).
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let url = config.database_url();
        let is_sqlite = url.starts_with("sqlite:");
        if is_sqlite && config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
        }
        let database = &config.database;
        let mut options = ConnectOptions::new(url.clone());
        let max_connections = database
            .db_max_connections
            .unwrap_or(if is_sqlite { 8 } else { 32 });
        options
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(database.db_acquire_timeout)
            .sqlx_logging(false);
        let synchronous = match database.sqlite_synchronous {
            SqliteSynchronous::Full => SqlxSynchronous::Full,
            SqliteSynchronous::Normal => SqlxSynchronous::Normal,
        };
        options.map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .busy_timeout(crate::config::DEFAULT_SQLITE_BUSY_TIMEOUT)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .foreign_keys(true)
                .create_if_missing(true)
        });
        options.map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_release(|connection, _meta| {
                let clean = leaves_clean(connection);
                Box::pin(async move { Ok(clean) })
            })
        });
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|_connection, _meta| {
                Box::pin(async {
                    disable_nagle();
                    Ok(())
                })
            })
            .after_release(|connection, _meta| {
                let clean = leaves_clean(connection);
                Box::pin(async move { Ok(clean) })
            })
        });
        options.map_sqlx_postgres_opts(|postgres| {
            postgres.options([
                ("idle_in_transaction_session_timeout", "30s"),
                ("statement_timeout", "30s"),
                ("synchronous_commit", "on"),
            ])
        });
        let db = Database::connect(options)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        let metrics = Arc::<StoreMetrics>::default();
        let replicas = connect_read_replicas(config, is_sqlite, max_connections, &metrics).await?;
        Ok(Self {
            progress_notifier: (!is_sqlite).then(|| progress_cache::spawn_notifier(db.clone())),
            db,
            rules: progress::RuleCache::default(),
            feed: std::sync::Arc::new(tokio::sync::Notify::new()),
            // SQLite commits one write at a time. On PostgreSQL two groups in flight keep the
            // database busy while each gathers the calls that arrive during the other's commit;
            // more flushers make smaller groups and cost more per event (BENCHMARKS.md).
            group: std::sync::Arc::new(progress::GroupCommit::new(
                database
                    .group_commit_flushers
                    .unwrap_or(if is_sqlite { 1 } else { 2 }),
            )),
            storage: Arc::default(),
            sqlite_writers: is_sqlite.then(|| Arc::new(tokio::sync::Semaphore::new(1))),
            metrics,
            replicas,
            // SQLite has one server process, so every write passes here: live from the start.
            // On PostgreSQL the cache waits for the listener (`listen_for_other_replicas`).
            progress_cache: progress_cache::ProgressCache::new(
                database.progress_cache_mb,
                database.progress_cache_ttl,
                is_sqlite,
            ),
        })
    }

    /// Applies every pending migration.
    ///
    /// On PostgreSQL a session advisory lock makes replicas that start together migrate one
    /// after the other; the later ones find nothing left to do.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        if self.backend() != DbBackend::Postgres {
            return migration::Migrator::up(&self.db, None)
                .await
                .context("applying migrations");
        }
        let lock = self
            .db
            .begin()
            .await
            .context("opening the migration lock transaction")?;
        lock.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(72010002)",
        ))
        .await
        .context("taking the migration lock")?;
        let applied = migration::Migrator::up(&self.db, None)
            .await
            .context("applying migrations");
        lock.commit()
            .await
            .context("releasing the migration lock")?;
        applied
    }

    /// Returns the database kind.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Returns the store's measurements (write waits, group-commit sizes).
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Returns the progress read cache.
    pub fn progress_cache(&self) -> &progress_cache::ProgressCache {
        &self.progress_cache
    }

    /// Returns the pool's connections now: open, idle and the most it opens.
    pub fn pool_stats(&self) -> PoolStats {
        fn stats<DB: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        match self.backend() {
            DbBackend::Postgres => stats(self.db.get_postgres_connection_pool()),
            _ => stats(self.db.get_sqlite_connection_pool()),
        }
    }

    /// Returns the connection, for reads.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Returns the connection for a read that may be served by a hot standby (reports, lists,
    /// exports, the feed backlog): a standby no staler than `--read-max-lag` that has replayed the
    /// current call's `lms-min-lsn`, or the primary. Without `DATABASE_READ_URL`, the primary.
    pub fn reader(&self) -> replica::Reader {
        replica::Reader::for_call(&self.db, self.replicas.as_deref())
    }

    /// Returns true when hot standbys are configured (`DATABASE_READ_URL`).
    pub fn has_read_replicas(&self) -> bool {
        self.replicas.is_some()
    }

    /// Returns the primary's WAL position now: a call's writes, committed before, lie below it.
    pub async fn commit_position(&self) -> Result<replica::WalPosition> {
        replica::current_position(&self.db).await.map_err(db_error)
    }

    /// Samples the standbys' replay positions every [`replica::POLL_INTERVAL`] and takes stale
    /// or failing ones out of service, until dropped; returns at once without standbys.
    pub async fn watch_read_replicas(&self) {
        let Some(replicas) = &self.replicas else {
            return;
        };
        let mut ticks = tokio::time::interval(replica::POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            replicas.sample(&self.db).await;
        }
    }

    /// Refreshes the query planner's statistics of every table (`ANALYZE`), as after a bulk load.
    pub async fn analyze(&self) -> Result<()> {
        self.db
            .execute_unprepared("ANALYZE")
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(db_error)
    }

    /// Returns a watch of whether writes fail on the database's storage (see
    /// [`Store::probe_storage`]).
    pub fn storage_failing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.storage.failing.subscribe()
    }

    /// Writes (and deletes again) a row larger than a page and commits: succeeds only when the
    /// database has room to grow and can sync. A success clears [`Store::storage_failing`].
    pub async fn probe_storage(&self) -> Result<()> {
        self.write(|transaction| {
            Box::pin(async move {
                let id = uuid::Uuid::new_v4().to_string();
                let mut payload = vec![0u8; PROBE_BYTES];
                rand::Rng::fill(&mut rand::rng(), payload.as_mut_slice());
                let backend = transaction.get_database_backend();
                transaction
                    .execute_raw(statement(
                        backend,
                        "INSERT INTO health_probe (id, payload) VALUES ($1, $2)",
                        [id.clone().into(), payload.into()],
                    ))
                    .await
                    .map_err(db_error)?;
                transaction
                    .execute_raw(statement(
                        backend,
                        "DELETE FROM health_probe WHERE id = $1",
                        [id.into()],
                    ))
                    .await
                    .map_err(db_error)?;
                Ok(())
            })
        })
        .await?;
        self.storage.set_failing(false);
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(self) {
        if let Err(error) = self.db.close().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
    }

    /// Runs `work` in one write transaction and commits it.
    ///
    /// The transaction runs in a task of its own, so a cancelled call (client gone, deadline
    /// passed) never leaves it half-done: it commits or rolls back as a whole. SQLite writes
    /// start with `BEGIN IMMEDIATE`, so they wait on the busy timeout instead of failing on a
    /// read-to-write upgrade.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T> + Send + 'static,
    {
        let db = self.db.clone();
        let feed = self.feed.clone();
        let writers = self.sqlite_writers.clone();
        let metrics = self.metrics.clone();
        let cache = self.progress_cache.clone();
        let notifier = self.progress_notifier.clone();
        let published = std::cell::Cell::new(false);
        let touched = std::cell::RefCell::default();
        let task = tokio::spawn(event::PUBLISHED.scope(published, progress_cache::TOUCHED.scope(touched, async move {
            let waiting = std::time::Instant::now();
            let _turn = match writers {
                Some(writers) => Some(
                    writers
                        .acquire_owned()
                        .await
                        .map_err(|_| Error::internal("the SQLite write queue closed"))?,
                ),
                None => None,
            };
            let options = TransactionOptions {
                sqlite_transaction_mode: (db.get_database_backend() == DbBackend::Sqlite)
                    .then_some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            };
            let transaction = db.begin_with_options(options).await.map_err(db_error)?;
            metrics.write_wait.observe(waiting.elapsed().as_secs_f64());
            let value = match work(&transaction).await {
                Ok(value) => value,
                Err(error) => {
                    // Rolled back here, not on drop, so that a failed ROLLBACK is seen: it leaves
                    // the connection inside a transaction, and the pool then closes it.
                    if let Err(rollback) = transaction.rollback().await {
                        tracing::warn!(error = %rollback, "rollback failed; the connection will be closed");
                    }
                    return Err(error);
                }
            };
            let touched = progress_cache::TOUCHED.with(|touched| touched.take());
            let committed = transaction.commit().await.map_err(db_error);
            if !touched.is_empty() {
                // Even when COMMIT failed: it may have committed before the error.
                cache.invalidate(&touched);
                if let Some(notifier) = &notifier {
                    let _ = notifier.send(touched);
                }
            }
            committed?;
            if event::PUBLISHED.with(std::cell::Cell::get) {
                feed.notify_waiters();
            }
            Ok(value)
        })));
        let result = task
            .await
            .map_err(|join_error| Error::internal(format!("write task failed: {join_error}")))?;
        match &result {
            Ok(_) => replica::mark_written(),
            Err(Error::Storage { .. }) => self.storage.set_failing(true),
            Err(_) => {}
        }
        result
    }
}

/// Connects to the hot standbys of `DATABASE_READ_URL` (lazily: a standby down at start is
/// skipped until it answers); refuses them on SQLite, which has no standbys.
async fn connect_read_replicas(
    config: &Config,
    is_sqlite: bool,
    max_connections: u32,
    metrics: &StoreMetrics,
) -> anyhow::Result<Option<Arc<replica::ReadReplicas>>> {
    let urls: Vec<&String> = config
        .database
        .database_read_url
        .iter()
        .filter(|url| !url.trim().is_empty())
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    if is_sqlite {
        anyhow::bail!(
            "DATABASE_READ_URL (--database-read-url) needs PostgreSQL: a SQLite database has no hot standbys; unset it or use a postgres:// DATABASE_URL"
        );
    }
    let mut connections = Vec::with_capacity(urls.len());
    for url in urls {
        let url = url.trim();
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            anyhow::bail!(
                "DATABASE_READ_URL must list postgres:// URLs of hot standbys, got {}",
                redact(url)
            );
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(0)
            // A standby that does not answer soon is skipped: the primary answers instead.
            .acquire_timeout(Duration::from_secs(1).min(config.database.db_acquire_timeout))
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy(true)
            .sqlx_logging(false);
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|_connection, _meta| {
                Box::pin(async {
                    disable_nagle();
                    Ok(())
                })
            })
        });
        options.map_sqlx_postgres_opts(|postgres| postgres.options([("statement_timeout", "30s")]));
        connections.push(
            Database::connect(options)
                .await
                .with_context(|| format!("connecting to the read replica {}", redact(url)))?,
        );
    }
    tracing::info!(
        standbys = connections.len(),
        max_lag_ms = config.database.read_max_lag.as_millis() as u64,
        "reads of reports, lists, exports and the feed backlog may go to hot standbys"
    );
    Ok(Some(Arc::new(replica::ReadReplicas::new(
        connections,
        config.database.read_max_lag,
        metrics.replicas.clone(),
    ))))
}

/// Sets `TCP_NODELAY` on every TCP socket of this process.
///
/// sqlx 0.9.0 stopped setting it on database sockets (launchbadge/sqlx#4335; fixed upstream by
/// #4336, not yet released). Without it a statement too large for one TCP segment (a multi-row
/// insert, say) sends its last segment only when the server acknowledges the first, and the
/// server delays that acknowledgement by 40 ms: measured here as 40 ms gaps inside group
/// transactions. Called after each new database connection, so it covers that connection's
/// socket; setting it on other sockets (gRPC connections) is harmless and what they want too.
/// Remove once a sqlx release sets it again.
fn disable_nagle() {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{BorrowedFd, RawFd};
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            // SAFETY: the descriptor is only used for one setsockopt call and not kept. If another
            // thread closed (or closed and reused) it meanwhile, the call fails or sets the option
            // on that other socket: no memory is touched either way. Non-TCP descriptors refuse it.
            let descriptor = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = socket2::SockRef::from(&descriptor).set_tcp_nodelay(true);
        }
    }
}

/// Returns `sql`, written with `$1`-style placeholders, as a statement for `backend` (SQLite
/// reads them as `?1`).
pub(crate) fn statement(
    backend: DbBackend,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Statement {
    let text = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    Statement::from_sql_and_values(backend, text, values)
}

/// Escape character of every `LIKE` pattern built by [`like_prefix`].
pub(crate) const LIKE_ESCAPE: char = '!';

/// Returns `text` with the `LIKE` wildcards `%` and `_` (and the escape itself) escaped by
/// [`LIKE_ESCAPE`], so it matches itself only; use with `ESCAPE '!'`.
pub(crate) fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            escaped.push(LIKE_ESCAPE);
        }
        escaped.push(c);
    }
    escaped
}

/// Returns a `LIKE` expression matching every string that starts with `prefix` (wildcards in
/// `prefix` match themselves only).
pub(crate) fn like_prefix(prefix: &str) -> sea_orm::sea_query::LikeExpr {
    sea_orm::sea_query::LikeExpr::new(format!("{}%", escape_like(prefix))).escape(LIKE_ESCAPE)
}

/// Takes the tree lock for the rest of the transaction: organisation creates and moves serialise,
/// so a path computed from a parent cannot go stale. SQLite write transactions are serial already.
pub(crate) async fn lock_organization_tree(transaction: &DatabaseTransaction) -> Result<()> {
    if transaction.get_database_backend() == DbBackend::Postgres {
        transaction
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(72010001)",
            ))
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Returns `url` with any password replaced, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
