//! What a database error means: the one mapping from database error classes to service errors
//! (and so to gRPC codes), written down for client authors in `docs/errors.md`.
//!
//! | class | examples | gRPC code |
//! |---|---|---|
//! | unique key taken | SQLite `SQLITE_CONSTRAINT_UNIQUE`, PostgreSQL `23505` | ALREADY_EXISTS |
//! | storage full | SQLite `SQLITE_FULL`, PostgreSQL `53100` | RESOURCE_EXHAUSTED (`STORAGE_FULL`) |
//! | storage failed | SQLite `SQLITE_IOERR*`, `SQLITE_READONLY`, `SQLITE_CANTOPEN`, PostgreSQL `58030` | UNAVAILABLE (`STORAGE_ERROR`) |
//! | connection lost or refused | socket errors, PostgreSQL class `08`, `57P01`–`57P05`, `53300`, pool timeout | UNAVAILABLE |
//! | busy or locked | SQLite `SQLITE_BUSY`, `SQLITE_LOCKED`, PostgreSQL `55P03`, `57014` (statement timeout) | UNAVAILABLE |
//! | transaction conflict | PostgreSQL `40001` (serialization), `40P01` (deadlock) | ABORTED (`TRANSACTION_CONFLICT`) |
//! | anything else | a query the code got wrong, corruption | INTERNAL (logged, never sent) |
//!
//! A connection on which any error struck inside a transaction is not trusted again: the pool
//! closes it when it comes back unless its transaction ended cleanly (see `Store::connect`).

use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::error::{Error, Reason};

/// The class of a database error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A unique constraint rejected the row.
    UniqueViolation,
    /// The storage is full: nothing more can be written until space returns.
    StorageFull,
    /// The storage could not be read or written.
    StorageFailed,
    /// The connection was lost, terminated or refused, or the pool had none to give.
    ConnectionLost,
    /// The database is busy or locked, or a statement ran out of time.
    Busy,
    /// The transaction lost a serialization race or a deadlock; retrying it may succeed.
    Conflict,
    /// Anything else: a bug, or data the database refuses to read.
    Bug,
}

/// Classifies `error`.
pub(crate) fn classify(error: &DbErr) -> Failure {
    if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return Failure::UniqueViolation;
    }
    match error {
        DbErr::ConnectionAcquire(_) => Failure::ConnectionLost,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => match runtime {
            RuntimeErr::SqlxError(sqlx) => classify_sqlx(sqlx),
            RuntimeErr::Internal(_) if matches!(error, DbErr::Conn(_)) => Failure::ConnectionLost,
            RuntimeErr::Internal(_) => Failure::Bug,
        },
        _ => Failure::Bug,
    }
}

fn classify_sqlx(error: &sea_orm::sqlx::Error) -> Failure {
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        Sqlx::Database(database) => {
            let code = database.code().unwrap_or_default();
            if database
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                classify_sqlite(code.parse().unwrap_or_default())
            } else {
                classify_sqlstate(&code)
            }
        }
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => Failure::ConnectionLost,
        _ => Failure::Bug,
    }
}

/// Classifies an SQLite (extended) result code; the primary code is its low byte.
fn classify_sqlite(extended: i32) -> Failure {
    match extended & 0xff {
        13 => Failure::StorageFull,            // SQLITE_FULL
        8 | 10 | 14 => Failure::StorageFailed, // SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN
        5 | 6 | 7 | 9 => Failure::Busy, // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_INTERRUPT
        _ => Failure::Bug,
    }
}

/// Classifies a PostgreSQL SQLSTATE.
fn classify_sqlstate(code: &str) -> Failure {
    match code {
        "53100" => Failure::StorageFull,        // disk_full
        "58030" => Failure::StorageFailed,      // io_error
        "40001" | "40P01" => Failure::Conflict, // serialization_failure, deadlock_detected
        // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped,
        // idle_session_timeout, too_many_connections, configuration_limit_exceeded,
        // read_only_sql_transaction (a standby after failover), statement_completion_unknown,
        // idle_in_transaction_session_timeout
        "57P01" | "57P02" | "57P03" | "57P04" | "57P05" | "53300" | "53400" | "25006" | "40003"
        | "25P03" => Failure::ConnectionLost,
        // out_of_memory, lock_not_available, query_canceled (statement timeout)
        "53200" | "55P03" | "57014" => Failure::Busy,
        _ if code.starts_with("08") => Failure::ConnectionLost, // connection_exception
        _ => Failure::Bug,
    }
}

/// Maps a database error to the service error; SQL text never reaches clients.
pub(crate) fn db_error(error: DbErr) -> Error {
    match classify(&error) {
        Failure::UniqueViolation => Error::AlreadyExists {
            resource: "resource",
            field: "key",
            value: String::new(),
            existing_id: None,
        },
        Failure::StorageFull => {
            tracing::warn!(error = %error, "database storage is full");
            Error::Storage {
                full: true,
                message: "the database's storage is full; nothing of this call was written; \
                          retry once space has been freed"
                    .into(),
            }
        }
        Failure::StorageFailed => {
            tracing::warn!(error = %error, "database storage failed");
            Error::Storage {
                full: false,
                message: "the database could not write to its storage; nothing of this call \
                          was written; retry with backoff"
                    .into(),
            }
        }
        Failure::ConnectionLost => {
            tracing::warn!(error = %error, "database connection lost or refused");
            Error::Unavailable(
                "the database connection was lost or refused; retry with backoff".into(),
            )
        }
        Failure::Busy => {
            tracing::warn!(error = %error, "database busy");
            Error::Unavailable("the database is busy; retry with backoff".into())
        }
        Failure::Conflict => Error::Aborted {
            reason: Reason::TransactionConflict,
            message: "the call conflicted with a concurrent one and was rolled back; retry it"
                .into(),
            metadata: Vec::new(),
        },
        Failure::Bug => Error::Internal(anyhow::Error::new(error)),
    }
}

/// Returns true when `error` is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    classify(error) == Failure::UniqueViolation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_map_by_their_primary_code() {
        assert_eq!(classify_sqlite(13), Failure::StorageFull);
        assert_eq!(classify_sqlite(778), Failure::StorageFailed); // SQLITE_IOERR_WRITE
        assert_eq!(classify_sqlite(4874), Failure::StorageFailed); // SQLITE_IOERR_SHMSIZE
        assert_eq!(classify_sqlite(5), Failure::Busy);
        assert_eq!(classify_sqlite(517), Failure::Busy); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(classify_sqlite(262), Failure::Busy); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(classify_sqlite(11), Failure::Bug); // SQLITE_CORRUPT
        assert_eq!(classify_sqlite(1), Failure::Bug); // SQLITE_ERROR: a query bug
    }

    #[test]
    fn sqlstates_map_by_class() {
        assert_eq!(classify_sqlstate("53100"), Failure::StorageFull);
        assert_eq!(classify_sqlstate("57P01"), Failure::ConnectionLost);
        assert_eq!(classify_sqlstate("08006"), Failure::ConnectionLost);
        assert_eq!(classify_sqlstate("40001"), Failure::Conflict);
        assert_eq!(classify_sqlstate("40P01"), Failure::Conflict);
        assert_eq!(classify_sqlstate("57014"), Failure::Busy);
        assert_eq!(classify_sqlstate("42P01"), Failure::Bug);
    }

    #[test]
    fn lost_connections_and_pool_timeouts_are_unavailable() {
        let io = DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        )));
        assert_eq!(classify(&io), Failure::ConnectionLost);
        assert!(matches!(db_error(io), Error::Unavailable(_)));
        let pool = DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert!(matches!(db_error(pool), Error::Unavailable(_)));
        assert!(matches!(
            db_error(DbErr::Custom("a bug".into())),
            Error::Internal(_)
        ));
    }
}
