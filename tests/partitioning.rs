//! Monthly partitions of `progress_events` and `outbox_events` and the feed's retention
//! (docs/operations.md, "Partitions and retention"), against the store alone.
//!
//! SQLite by default; PostgreSQL when `LMS_TEST_DATABASE_URL` is set (a database of its own per
//! test, dropped at the end). The partition checks need PostgreSQL and say so when skipped; the
//! rows, ids, cursors, audit chain and retention checks run on both.

use chrono::{DateTime, Duration, Months, Utc};
use lms::config::Config;
use lms::domain::feed::{FeedRefusal, ResumePoint, check_resume};
use lms::store::Store;
use lms::store::event::EventFilter;
use lms::store::partition::{PartitionPolicy, month_start, partition_name};
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, DbBackend, Statement, Value};

/// Migrations up to and including m20261205_000015 (before the anchors and the partitions).
const BEFORE_ANCHORS: u32 = 15;

/// A database of the test's own.
struct TestDatabase {
    url: String,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDatabase {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("LMS_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let (base, query) = match admin_url.split_once('?') {
                    Some((base, query)) => (base, format!("?{query}")),
                    None => (admin_url.as_str(), String::new()),
                };
                let (server, admin_database) = base.rsplit_once('/').expect("URL has a path");
                let name = format!("{admin_database}_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(admin_url.as_str()).await.expect("admin");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                Self {
                    url: format!("{server}/{name}{query}"),
                    postgres: Some((admin_url.clone(), name)),
                    _dir: dir,
                }
            }
            _ => Self {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("lms.db").display()),
                postgres: None,
                _dir: dir,
            },
        }
    }

    fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    async fn store(&self) -> Store {
        let mut config = Config::with_data_dir(self._dir.path().to_owned());
        config.database_url = Some(self.url.clone());
        Store::connect(&config).await.expect("store")
    }

    async fn drop_database(self) {
        if let Some((admin_url, name)) = &self.postgres {
            let admin = Database::connect(admin_url.as_str()).await.expect("admin");
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok();
        }
    }
}

/// `sql` with `$n` placeholders, for `db`'s backend.
fn statement(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The months the seeded rows fall in: four months ago, two months ago, this month.
fn seeded_times(now: DateTime<Utc>) -> [DateTime<Utc>; 3] {
    let this_month = month_start(now);
    [
        this_month - Months::new(4) + Duration::days(10),
        this_month - Months::new(2) + Duration::days(10),
        now - Duration::seconds(1),
    ]
}

/// What the seeded database holds: progress event ids and feed cursors with their ids, in order.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<(String, DateTime<Utc>)>,
    feed: Vec<(i64, String)>,
}

async fn snapshot(db: &DatabaseConnection) -> Snapshot {
    let events = db
        .query_all_raw(statement(
            db,
            "SELECT event_id, recorded_time FROM progress_events ORDER BY event_id",
            vec![],
        ))
        .await
        .expect("events")
        .iter()
        .map(|row| {
            (
                row.try_get("", "event_id").unwrap(),
                row.try_get("", "recorded_time").unwrap(),
            )
        })
        .collect();
    let feed = db
        .query_all_raw(statement(
            db,
            "SELECT sequence, id FROM outbox_events ORDER BY sequence",
            vec![],
        ))
        .await
        .expect("feed")
        .iter()
        .map(|row| {
            (
                row.try_get("", "sequence").unwrap(),
                row.try_get("", "id").unwrap(),
            )
        })
        .collect();
    Snapshot { events, feed }
}

/// Migrates to m20261205_000015, stores three progress events and three feed events per seeded
/// month (as a database of that version held them), migrates through m20261205_000016 (which
/// anchors the events in the audit chain) and returns what it holds.
async fn seed(database: &TestDatabase, now: DateTime<Utc>) -> Snapshot {
    let db = Database::connect(database.url.as_str())
        .await
        .expect("connect");
    Migrator::up(&db, Some(BEFORE_ANCHORS))
        .await
        .expect("migrate to 15");
    let mut sequence = 0i64;
    for time in seeded_times(now) {
        for _ in 0..3 {
            sequence += 1;
            let id = uuid::Uuid::now_v7().to_string();
            db.execute_raw(statement(
                &db,
                "INSERT INTO progress_events (event_id, enrollment_id, activity_id, verb, score, \
                 duration_seconds, occurred_time, source, actor, payload_hash, recorded_time, \
                 ack_activity_state, ack_percent_complete, ack_enrollment_state) \
                 VALUES ($1, $2, $3, 'completed', 90, 60, $4, 'api', 'tester', $5, $4, \
                 'completed', 50.0, 'in_progress')",
                vec![
                    id.clone().into(),
                    uuid::Uuid::new_v4().to_string().into(),
                    uuid::Uuid::new_v4().to_string().into(),
                    time.into(),
                    "0".repeat(64).into(),
                ],
            ))
            .await
            .expect("insert progress event");
            db.execute_raw(statement(
                &db,
                "INSERT INTO outbox_events (sequence, id, event_type, subject_id, payload, \
                 create_time) VALUES ($1, $2, 'progress.completed', $3, '{}', $4)",
                vec![
                    sequence.into(),
                    uuid::Uuid::now_v7().to_string().into(),
                    id.into(),
                    time.into(),
                ],
            ))
            .await
            .expect("insert feed event");
        }
    }
    db.execute_raw(statement(
        &db,
        "UPDATE outbox_head SET sequence = $1 WHERE id = 1",
        vec![sequence.into()],
    ))
    .await
    .expect("move the head");
    Migrator::up(&db, Some(1)).await.expect("migrate to 16");
    let seeded = snapshot(&db).await;
    assert_eq!(seeded.events.len(), 9);
    assert_eq!(seeded.feed.len(), 9);
    db.close().await.ok();
    seeded
}

/// Names of the partitioned tables among `progress_events` and `outbox_events`.
async fn partitioned_tables(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(statement(
        db,
        "SELECT c.relname AS name FROM pg_partitioned_table p JOIN pg_class c \
         ON c.oid = p.partrelid WHERE c.relname IN ('progress_events', 'outbox_events') \
         ORDER BY c.relname",
        vec![],
    ))
    .await
    .expect("pg_partitioned_table")
    .iter()
    .map(|row| row.try_get("", "name").unwrap())
    .collect()
}

/// The partition a row of `table` is stored in, found by `column = value`.
async fn partition_of(db: &DatabaseConnection, table: &str, column: &str, value: Value) -> String {
    db.query_one_raw(statement(
        db,
        &format!("SELECT tableoid::regclass::text AS part FROM {table} WHERE {column} = $1"),
        vec![value],
    ))
    .await
    .expect("tableoid")
    .expect("row")
    .try_get("", "part")
    .unwrap()
}

async fn assert_chain_ok(store: &Store, events: i64) {
    let report = store.verify_audit_chain().await.expect("verify");
    assert_eq!(report.chain.broken, None, "{report:?}");
    assert!(report.progress.problem.is_none(), "{report:?}");
    assert_eq!(report.progress.events_checked, events, "{report:?}");
}

#[tokio::test]
async fn migration_keeps_rows_ids_cursors_and_the_audit_chain() {
    let database = TestDatabase::new().await;
    let now = Utc::now();
    let seeded = seed(&database, now).await;
    let store = database.store().await;
    store.migrate().await.expect("migrate to the end");
    let db = Database::connect(database.url.as_str())
        .await
        .expect("connect");
    assert_eq!(snapshot(&db).await, seeded, "rows, ids and cursors kept");
    let feed = store
        .events_after(0, &EventFilter::default(), 100)
        .await
        .expect("feed");
    let cursors: Vec<(i64, String)> = feed.into_iter().map(|e| (e.cursor, e.id)).collect();
    assert_eq!(cursors, seeded.feed, "the feed reads the same cursors");
    let state = store.feed_state().await.expect("feed state");
    assert_eq!(state.head, 9);
    assert_eq!(state.pruned_through, 0);
    assert_chain_ok(&store, 9).await;

    if !database.is_postgres() {
        eprintln!("partition checks skipped: SQLite has no partitions (set LMS_TEST_DATABASE_URL)");
        database.drop_database().await;
        return;
    }
    assert_eq!(
        partitioned_tables(&db).await,
        ["outbox_events", "progress_events"]
    );
    for (table, _) in lms::store::partition::PARTITIONED {
        let partitions = store.partitions(table).await.expect("partitions");
        let months = seeded_times(now).map(month_start);
        for month in months {
            assert!(
                partitions.contains(&partition_name(table, month)),
                "{table}: {partitions:?}"
            );
        }
        for ahead in 1..=3 {
            let month = month_start(now) + Months::new(ahead);
            assert!(partitions.contains(&partition_name(table, month)));
        }
        assert!(partitions.contains(&format!("{table}_default")));
    }
    // Each copied row sits in its month's partition; a new row lands in this month's.
    for (event_id, time) in &seeded.events {
        assert_eq!(
            partition_of(&db, "progress_events", "event_id", event_id.clone().into()).await,
            partition_name("progress_events", month_start(*time))
        );
    }
    let new_id = uuid::Uuid::now_v7().to_string();
    let insert = |recorded: DateTime<Utc>| {
        statement(
            &db,
            "INSERT INTO progress_events (event_id, enrollment_id, activity_id, verb, \
             duration_seconds, occurred_time, source, actor, payload_hash, recorded_time, \
             ack_activity_state, ack_percent_complete, ack_enrollment_state) \
             VALUES ($1, 'e', 'a', 'started', 0, $2, 'api', 'tester', $3, $2, 'started', 0.0, \
             'in_progress')",
            vec![
                new_id.clone().into(),
                recorded.into(),
                "0".repeat(64).into(),
            ],
        )
    };
    db.execute_raw(insert(Utc::now())).await.expect("new event");
    assert_eq!(
        partition_of(&db, "progress_events", "event_id", new_id.clone().into()).await,
        partition_name("progress_events", month_start(Utc::now()))
    );
    // An event id stays unique across partitions (a retry at another time is refused).
    let duplicate = db
        .execute_raw(insert(Utc::now() - Months::new(2)))
        .await
        .expect_err("a duplicate event id is refused");
    assert!(
        duplicate.to_string().contains("progress_event_ids"),
        "{duplicate}"
    );
    db.execute_raw(statement(
        &db,
        "INSERT INTO outbox_events (sequence, id, event_type, subject_id, payload, create_time) \
         VALUES (10, $1, 'progress.completed', 's', '{}', $2)",
        vec![uuid::Uuid::now_v7().to_string().into(), Utc::now().into()],
    ))
    .await
    .expect("new feed event");
    assert_eq!(
        partition_of(&db, "outbox_events", "sequence", 10i64.into()).await,
        partition_name("outbox_events", month_start(Utc::now()))
    );
    // Applying the migrations again changes nothing; down and up again keep every row.
    store.migrate().await.expect("migrate again");
    let before_down = snapshot(&db).await;
    // Down to before m20261206_000018 (and whatever later migrations there are).
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|migration| migration.name() == "m20261206_000018_partitioning")
        .expect("the partitioning migration is registered")
        + 1;
    Migrator::down(&db, Some(steps as u32)).await.expect("down");
    assert!(partitioned_tables(&db).await.is_empty());
    assert_eq!(snapshot(&db).await, before_down);
    Migrator::up(&db, None).await.expect("up again");
    assert_eq!(snapshot(&db).await, before_down);
    assert_eq!(
        partitioned_tables(&db).await,
        ["outbox_events", "progress_events"]
    );
    db.close().await.ok();
    store.close().await;
    database.drop_database().await;
}

/// A retention whose cut falls at the start of the month three months back: the oldest seeded
/// month (four back) is wholly older than it, the one two months back is not.
fn retention_past_three_months(now: DateTime<Utc>) -> std::time::Duration {
    let cut = month_start(now) - Months::new(3) + Duration::days(1);
    (now - cut).to_std().expect("positive")
}

#[tokio::test]
async fn maintenance_makes_months_ahead_and_drops_expired_feed_months() {
    let database = TestDatabase::new().await;
    let now = Utc::now();
    seed(&database, now).await;
    let store = database.store().await;
    store.migrate().await.expect("migrate to the end");
    let policy = PartitionPolicy {
        ahead_months: 5,
        outbox_retention: Some(retention_past_three_months(now)),
    };
    let done = store
        .maintain_partitions(policy, now)
        .await
        .expect("maintenance");
    assert!(done.ran);
    assert_eq!(done.removed, 3, "{done:?}");
    let oldest = month_start(seeded_times(now)[0]);
    if database.is_postgres() {
        let mut expected = Vec::new();
        for (table, _) in lms::store::partition::PARTITIONED {
            for ahead in 4..=5 {
                expected.push(partition_name(table, month_start(now) + Months::new(ahead)));
            }
        }
        assert_eq!(done.created, expected);
        assert_eq!(
            done.dropped,
            [partition_name("outbox_events", oldest)],
            "the expired month's partition is dropped, not emptied"
        );
        let partitions = store.partitions("outbox_events").await.expect("partitions");
        assert!(!partitions.contains(&partition_name("outbox_events", oldest)));
        let db = Database::connect(database.url.as_str())
            .await
            .expect("connect");
        let exists = db
            .query_one_raw(statement(
                &db,
                "SELECT to_regclass($1)::text AS found",
                vec![partition_name("outbox_events", oldest).into()],
            ))
            .await
            .expect("to_regclass")
            .expect("row")
            .try_get::<Option<String>>("", "found")
            .unwrap();
        assert_eq!(exists, None, "the partition no longer exists");
        // Progress events keep every month.
        assert!(
            store
                .partitions("progress_events")
                .await
                .unwrap()
                .contains(&partition_name("progress_events", oldest))
        );
        db.close().await.ok();
    } else {
        eprintln!(
            "partition checks skipped: SQLite has no partitions; retention deleted in batches"
        );
        assert!(done.created.is_empty() && done.dropped.is_empty());
    }
    // The expired month's feed events are gone, the rest kept; progress events all kept.
    let feed = store
        .events_after(0, &EventFilter::default(), 100)
        .await
        .expect("feed");
    let cursors: Vec<i64> = feed.iter().map(|event| event.cursor).collect();
    assert_eq!(cursors, [4, 5, 6, 7, 8, 9]);
    let state = store.feed_state().await.expect("feed state");
    assert_eq!(state.pruned_through, 3);
    assert_eq!(
        check_resume(
            &state,
            &ResumePoint {
                history: Some(state.history.clone()),
                cursor: 1,
            }
        ),
        Err(FeedRefusal::Expired),
        "a cursor in the dropped month is refused with CURSOR_EXPIRED"
    );
    assert_eq!(
        check_resume(
            &state,
            &ResumePoint {
                history: None,
                cursor: 3,
            }
        ),
        Ok(())
    );
    assert_chain_ok(&store, 9).await;
    // Again: nothing left to do.
    let again = store.maintain_partitions(policy, now).await.expect("again");
    assert!(again.created.is_empty() && again.dropped.is_empty() && again.removed == 0);
    store.close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn concurrent_maintenance_runs_do_not_conflict() {
    let database = TestDatabase::new().await;
    let now = Utc::now();
    seed(&database, now).await;
    let first = database.store().await;
    first.migrate().await.expect("migrate to the end");
    let second = database.store().await;
    let policy = PartitionPolicy {
        ahead_months: 8,
        outbox_retention: Some(retention_past_three_months(now)),
    };
    let (one, two) = tokio::join!(
        first.maintain_partitions(policy, now),
        second.maintain_partitions(policy, now)
    );
    let (one, two) = (one.expect("first run"), two.expect("second run"));
    let mut created: Vec<String> = one.created.iter().chain(&two.created).cloned().collect();
    created.sort();
    let before = created.len();
    created.dedup();
    assert_eq!(before, created.len(), "no partition made twice");
    assert_eq!(one.removed + two.removed, 3, "{one:?} {two:?}");
    // Whichever run did the work, the result is complete once both are done.
    let after = first.maintain_partitions(policy, now).await.expect("third");
    assert!(
        after.created.is_empty() && after.dropped.is_empty(),
        "{after:?}"
    );
    if database.is_postgres() {
        assert_eq!(created.len(), 2 * 5, "{created:?}");
        for (table, _) in lms::store::partition::PARTITIONED {
            let partitions = first.partitions(table).await.expect("partitions");
            for ahead in 0..=8 {
                let month = month_start(now) + Months::new(ahead);
                assert!(partitions.contains(&partition_name(table, month)));
            }
        }
    } else {
        eprintln!("partition checks skipped: SQLite has no partitions");
    }
    let state = first.feed_state().await.expect("feed state");
    assert_eq!(state.pruned_through, 3);
    first.close().await;
    second.close().await;
    database.drop_database().await;
}
