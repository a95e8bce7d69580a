//! Persistence: the connection pool, write transactions, and one module per area. Transactions live here.

pub mod audit;
pub mod certification;
pub mod course;
pub mod delivery;
pub mod entity;
pub mod event;
pub mod idempotency;
pub mod organization;
pub mod person;
pub mod programme;
pub mod progress;
pub mod report;
pub mod selection;
pub mod survey;

use std::{future::Future, pin::Pin};

use anyhow::Context as _;
use migration::MigratorTrait as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqlErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous as SqlxSynchronous},
};

use crate::config::{Config, SqliteSynchronous};
use crate::error::{Error, Result};

/// A boxed future borrowing a transaction, as taken by [`Store::write`].
pub type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    rules: progress::RuleCache,
    feed: std::sync::Arc<tokio::sync::Notify>,
    group: std::sync::Arc<progress::GroupCommit>,
}

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
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|_connection, _meta| {
                Box::pin(async {
                    disable_nagle();
                    Ok(())
                })
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
        Ok(Self {
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

    /// Returns the connection, for reads.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
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
        let published = std::cell::Cell::new(false);
        let task = tokio::spawn(event::PUBLISHED.scope(published, async move {
            let options = TransactionOptions {
                sqlite_transaction_mode: (db.get_database_backend() == DbBackend::Sqlite)
                    .then_some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            };
            let transaction = db.begin_with_options(options).await.map_err(db_error)?;
            let value = work(&transaction).await?;
            transaction.commit().await.map_err(db_error)?;
            if event::PUBLISHED.with(std::cell::Cell::get) {
                feed.notify_waiters();
            }
            Ok(value)
        }));
        task.await
            .map_err(|join_error| Error::internal(format!("write task failed: {join_error}")))?
    }
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

/// Maps a database error to the service error; SQL text never reaches clients.
pub(crate) fn db_error(error: DbErr) -> Error {
    if let Some(SqlErr::UniqueConstraintViolation(_)) = error.sql_err() {
        return Error::AlreadyExists {
            resource: "resource",
            field: "key",
            value: String::new(),
        };
    }
    let text = error.to_string();
    let transient = matches!(error, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
        || text.contains("database is locked")
        || text.contains("SQLITE_BUSY")
        || text.contains("could not serialize access")
        || text.contains("deadlock detected");
    if transient {
        tracing::warn!(error = %text, "database busy or unreachable");
        return Error::Unavailable(
            "the database is busy or unreachable; retry with backoff".into(),
        );
    }
    Error::Internal(anyhow::Error::new(error))
}

/// Returns true when `error` is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
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
