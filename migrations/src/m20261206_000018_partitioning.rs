//! Time partitioning of `progress_events` and `outbox_events` on PostgreSQL (a no-op on SQLite).
//!
//! Both tables become `PARTITION BY RANGE` tables with one partition per calendar month (UTC),
//! named `<table>_pYYYYMM`, covering every stored row and the next
//! [`AHEAD_MONTHS`] months, plus a `<table>_default` partition that catches a row outside every
//! monthly range (a clock far off), so a write never fails for want of a partition. Retention
//! then drops whole partitions (`lms serve` maintenance, `src/store/partition.rs`).
//!
//! The conversion runs in one transaction: the old table is renamed, the partitioned one is made
//! with the same columns (`LIKE`, so every column added by earlier migrations comes along), every
//! row is copied, the counts are compared, the old table is dropped and the keys and indexes are
//! made again under their old names. Nothing refers to either table by foreign key, and neither
//! has a sequence or identity column: outbox cursors come from `outbox_head`, event ids from
//! clients, so ids and cursors are the copied values.
//!
//! Keys: a primary key or unique constraint of a partitioned table must contain the partition
//! key, so
//! - `outbox_events` gets `PRIMARY KEY (sequence, create_time)` and `UNIQUE (id, create_time)`.
//!   Cursors stay unique because `outbox_head` hands each out once; the feed reads by
//!   `sequence > cursor ORDER BY sequence`, which each partition's key index serves.
//! - `progress_events` gets `PRIMARY KEY (event_id, recorded_time)`, which serves lookups by id
//!   in every partition (one index probe per partition). An event id must stay unique across
//!   partitions, because a retried call is recognised by it and a concurrent reuse for another
//!   enrolment is refused (CONCURRENT_EVENT): the non-partitioned `progress_event_ids` keeps
//!   `event_id` as its primary key, filled by a statement-level trigger from each insert's
//!   transition table (one extra statement per insert, not per row), so a duplicate raises the
//!   same unique violation as before.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// Monthly partitions made beyond the current month.
const AHEAD_MONTHS: u32 = 3;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// One table to partition.
struct Partitioned {
    table: &'static str,
    key: &'static str,
    /// Primary key and unique constraints (without the partition key, added here).
    primary: &'static [&'static str],
    unique: &'static [(&'static str, &'static [&'static str])],
}

const TABLES: [Partitioned; 2] = [
    Partitioned {
        table: "progress_events",
        key: "recorded_time",
        primary: &["event_id"],
        unique: &[],
    },
    Partitioned {
        table: "outbox_events",
        key: "create_time",
        primary: &["sequence"],
        unique: &[("outbox_events_id_key", &["id"])],
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        // The server's connections stop statements after 30 s; copying a large table takes longer.
        connection
            .execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        for table in &TABLES {
            if is_partitioned(connection, table.table).await? {
                continue;
            }
            partition(connection, table).await?;
        }
        event_id_keys(connection).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        connection
            .execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        for (name, ..) in KEY_TRIGGERS {
            connection
                .execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS {name} ON progress_events; \
                     DROP FUNCTION IF EXISTS {name}()"
                ))
                .await?;
        }
        connection
            .execute_unprepared("DROP TABLE IF EXISTS progress_event_ids")
            .await?;
        for table in &TABLES {
            if !is_partitioned(connection, table.table).await? {
                continue;
            }
            unpartition(connection, table).await?;
        }
        Ok(())
    }

    // Rename, copy, drop and rebuild commit together, or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// Returns true when `table` is a partitioned table already.
async fn is_partitioned<C: ConnectionTrait>(connection: &C, table: &str) -> Result<bool, DbErr> {
    let row = connection
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c \
                 ON c.oid = p.partrelid WHERE c.relname = '{table}' \
                 AND c.relnamespace = current_schema()::regnamespace) AS partitioned"
            ),
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no answer from pg_partitioned_table".to_owned()))?;
    row.try_get("", "partitioned")
}

/// The non-unique indexes of `table`, as `(name, definition)`.
async fn plain_indexes<C: ConnectionTrait>(
    connection: &C,
    table: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = connection
        .query_all_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition \
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_class t ON t.oid = x.indrelid \
                 WHERE t.relname = '{table}' AND t.relnamespace = current_schema()::regnamespace \
                 AND NOT x.indisunique ORDER BY i.relname"
            ),
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "name")?, row.try_get("", "definition")?)))
        .collect()
}

/// Converts one table, keeping every row.
async fn partition<C: ConnectionTrait>(connection: &C, spec: &Partitioned) -> Result<(), DbErr> {
    let Partitioned {
        table,
        key,
        primary,
        unique,
    } = spec;
    let old = format!("{table}_unpartitioned");
    let indexes = plain_indexes(connection, table).await?;
    connection
        .execute_unprepared(&format!(
            "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; \
             ALTER TABLE {table} RENAME TO {old}; \
             CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({key}); \
             CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"
        ))
        .await?;
    // Months from the oldest stored row (or this month) to AHEAD_MONTHS ahead.
    let row = connection
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT to_char(date_trunc('month', LEAST(MIN({key}), now()) AT TIME ZONE 'UTC'), \
                 'YYYY-MM') AS first, to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), \
                 'YYYY-MM') AS current FROM {old}"
            ),
        ))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no answer reading {old}")))?;
    let first = month_of(&row.try_get::<String>("", "first")?)?;
    let current = month_of(&row.try_get::<String>("", "current")?)?;
    let mut month = first;
    let last = add_months(current, AHEAD_MONTHS);
    while month <= last {
        connection
            .execute_unprepared(&create_partition_sql(table, month))
            .await?;
        month = add_months(month, 1);
    }
    connection
        .execute_unprepared(&format!("INSERT INTO {table} SELECT * FROM {old}"))
        .await?;
    let counts = connection
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT (SELECT COUNT(*) FROM {old}) AS before, \
                 (SELECT COUNT(*) FROM {table}) AS after"
            ),
        ))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no answer counting {table}")))?;
    let before: i64 = counts.try_get("", "before")?;
    let after: i64 = counts.try_get("", "after")?;
    if before != after {
        return Err(DbErr::Migration(format!(
            "{table}: {before} rows before partitioning, {after} after"
        )));
    }
    connection
        .execute_unprepared(&format!("DROP TABLE {old}"))
        .await?;
    let mut keys = format!(
        "ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({}, {key})",
        primary.join(", ")
    );
    for (name, columns) in *unique {
        keys.push_str(&format!(
            ", ADD CONSTRAINT {name} UNIQUE ({}, {key})",
            columns.join(", ")
        ));
    }
    connection.execute_unprepared(&keys).await?;
    for (name, definition) in indexes {
        // Read before the rename, the definition names the table as it is called again now.
        connection
            .execute_unprepared(&definition)
            .await
            .map_err(|error| DbErr::Migration(format!("recreating index {name}: {error}")))?;
    }
    Ok(())
}

/// Statement triggers that keep `progress_event_ids` in step with `progress_events`: name,
/// event, transition tables and body. PostgreSQL allows transition tables on single-event
/// triggers only, hence three.
const KEY_TRIGGERS: [(&str, &str, &str, &str); 3] = [
    (
        "progress_event_ids_insert",
        "INSERT",
        "NEW TABLE AS new_events",
        "INSERT INTO progress_event_ids (event_id, recorded_time) \
         SELECT event_id, recorded_time FROM new_events;",
    ),
    (
        "progress_event_ids_delete",
        "DELETE",
        "OLD TABLE AS old_events",
        "DELETE FROM progress_event_ids k USING old_events o WHERE k.event_id = o.event_id;",
    ),
    (
        "progress_event_ids_update",
        "UPDATE",
        "OLD TABLE AS old_events NEW TABLE AS new_events",
        "DELETE FROM progress_event_ids k USING old_events o WHERE k.event_id = o.event_id; \
         INSERT INTO progress_event_ids (event_id, recorded_time) \
         SELECT event_id, recorded_time FROM new_events;",
    ),
];

/// The global key of progress event ids, kept by statement triggers (one statement per insert,
/// delete or update of events, not one per row).
async fn event_id_keys<C: ConnectionTrait>(connection: &C) -> Result<(), DbErr> {
    connection
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS progress_event_ids ( \
               event_id varchar(36) NOT NULL PRIMARY KEY, \
               recorded_time timestamptz NOT NULL); \
             INSERT INTO progress_event_ids (event_id, recorded_time) \
               SELECT event_id, recorded_time FROM progress_events ON CONFLICT DO NOTHING",
        )
        .await?;
    for (name, event, tables, body) in KEY_TRIGGERS {
        connection
            .execute_unprepared(&format!(
                "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN {body} RETURN NULL; END $$; \
                 DROP TRIGGER IF EXISTS {name} ON progress_events; \
                 CREATE TRIGGER {name} AFTER {event} ON progress_events \
                 REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            ))
            .await?;
    }
    Ok(())
}

/// Turns a partitioned table back into a plain one, keeping every row.
async fn unpartition<C: ConnectionTrait>(connection: &C, spec: &Partitioned) -> Result<(), DbErr> {
    let Partitioned {
        table,
        primary,
        unique,
        ..
    } = spec;
    let old = format!("{table}_partitioned");
    let indexes = plain_indexes(connection, table).await?;
    let mut sql = format!(
        "ALTER TABLE {table} RENAME TO {old}; \
         CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING STORAGE INCLUDING COMMENTS); \
         INSERT INTO {table} SELECT * FROM {old}; \
         DROP TABLE {old}; \
         ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({})",
        primary.join(", ")
    );
    for (name, columns) in *unique {
        sql.push_str(&format!(
            ", ADD CONSTRAINT {name} UNIQUE ({})",
            columns.join(", ")
        ));
    }
    connection.execute_unprepared(&sql).await?;
    for (_, definition) in indexes {
        // Read before the rename: `ON ONLY <table>` of the partitioned index, now a plain one.
        let definition = definition.replace(" ON ONLY ", " ON ");
        connection.execute_unprepared(&definition).await?;
    }
    Ok(())
}

/// A month as `(year, month)`, from `YYYY-MM`.
fn month_of(text: &str) -> Result<(i32, u32), DbErr> {
    let (year, month) = text
        .split_once('-')
        .ok_or_else(|| DbErr::Migration(format!("not a month: {text}")))?;
    let parse = || DbErr::Migration(format!("not a month: {text}"));
    Ok((
        year.parse().map_err(|_| parse())?,
        month.parse().map_err(|_| parse())?,
    ))
}

/// `month` moved by `count` months.
fn add_months((year, month): (i32, u32), count: u32) -> (i32, u32) {
    let index = year as i64 * 12 + (month as i64 - 1) + count as i64;
    ((index / 12) as i32, (index % 12) as u32 + 1)
}

/// `CREATE TABLE IF NOT EXISTS` of the partition of `table` holding `month` (UTC).
fn create_partition_sql(table: &str, month: (i32, u32)) -> String {
    let (year, number) = month;
    let (next_year, next_number) = add_months(month, 1);
    format!(
        "CREATE TABLE IF NOT EXISTS {table}_p{year:04}{number:02} PARTITION OF {table} \
         FOR VALUES FROM ('{year:04}-{number:02}-01 00:00:00+00') \
         TO ('{next_year:04}-{next_number:02}-01 00:00:00+00')"
    )
}
