//! The database under the crashing server: a SQLite file in the data dir, or a PostgreSQL
//! database of its own (made beside `LMS_TEST_DATABASE_URL`, dropped at the end); and the direct
//! reads the checks make behind the server's back.

use std::{collections::HashMap, path::Path};

use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, DbBackend, Statement};

/// The database of one run.
pub(crate) struct CrashDatabase {
    /// `DATABASE_URL` of the server.
    pub(crate) url: String,
    /// For PostgreSQL: the admin URL and the name of the database made for this run.
    postgres: Option<(String, String)>,
}

impl CrashDatabase {
    /// Makes a fresh database: PostgreSQL when `LMS_TEST_DATABASE_URL` is set, else SQLite in `data_dir`.
    pub(crate) async fn fresh(data_dir: &Path) -> Self {
        match std::env::var("LMS_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let (url, name) = create_postgres_database(&admin_url).await;
                Self {
                    url,
                    postgres: Some((admin_url, name)),
                }
            }
            _ => Self {
                url: format!("sqlite://{}?mode=rwc", data_dir.join("lms.db").display()),
                postgres: None,
            },
        }
    }

    /// `sqlite` or `postgres`, for the log.
    pub(crate) fn backend_name(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Opens a direct connection.
    pub(crate) async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .expect("direct connection to the test database")
    }
}

/// Returns every stored progress event id, one entry per row (a duplicate would appear twice).
pub(crate) async fn stored_event_ids(connection: &DatabaseConnection) -> Vec<String> {
    let rows = query(connection, "SELECT event_id FROM progress_events").await;
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("event_id"))
        .collect()
}

/// Returns, per enrolment, the number of rows in the event log and the `event_count` its
/// derived summary claims (absent summary: none).
pub(crate) async fn event_counts(
    connection: &DatabaseConnection,
) -> HashMap<String, (i64, Option<i64>)> {
    let mut counts: HashMap<String, (i64, Option<i64>)> = HashMap::new();
    let logged = query(
        connection,
        "SELECT enrollment_id, COUNT(*) FROM progress_events GROUP BY enrollment_id",
    )
    .await;
    for row in logged {
        let enrollment: String = row.try_get_by_index(0).expect("enrollment_id");
        let count: i64 = row.try_get_by_index(1).expect("count");
        counts.entry(enrollment).or_default().0 = count;
    }
    let summaries = query(
        connection,
        "SELECT enrollment_id, event_count FROM enrollment_progress",
    )
    .await;
    for row in summaries {
        let enrollment: String = row.try_get_by_index(0).expect("enrollment_id");
        let count: i64 = row.try_get_by_index(1).expect("event_count");
        counts.entry(enrollment).or_default().1 = Some(count);
    }
    counts
}

/// Runs `PRAGMA integrity_check` on SQLite; `None` on PostgreSQL.
pub(crate) async fn sqlite_integrity(connection: &DatabaseConnection) -> Option<Vec<String>> {
    if connection.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let rows = query(connection, "PRAGMA integrity_check").await;
    Some(
        rows.iter()
            .map(|row| {
                row.try_get_by_index::<String>(0)
                    .expect("integrity_check row")
            })
            .collect(),
    )
}

async fn query(connection: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            sql,
        ))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

impl Drop for CrashDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(admin_url.as_str()).await.ok()?;
                admin.execute_unprepared(&statement).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("crash: could not drop the test database {name}");
        }
    }
}

/// Creates `<admin database>_crash_<uuid>` beside the database named by `admin_url`; returns its URL and name.
async fn create_postgres_database(admin_url: &str) -> (String, String) {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let (server, admin_database) = base.rsplit_once('/').expect("database URL has a path");
    let name = format!("{admin_database}_crash_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("LMS_TEST_DATABASE_URL is set but PostgreSQL does not answer there");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    (format!("{server}/{name}{query}"), name)
}
