//! Monthly partitions of `progress_events` and `outbox_events`, and the feed's retention.
//!
//! On PostgreSQL both tables are partitioned by range of their time column (`recorded_time`,
//! `create_time`) into one partition per calendar month in UTC, `<table>_pYYYYMM`, plus
//! `<table>_default` for a row outside every month (migration `m20261206_000018_partitioning`).
//! [`Store::maintain_partitions`] makes the partitions of the coming months and, when an outbox
//! retention is set, drops the outbox partitions wholly older than it: a `DROP TABLE`, not a
//! `DELETE`, so no long delete holds locks or bloats the heap.
//!
//! Replica safety: every replica runs maintenance; each step takes
//! `pg_try_advisory_xact_lock(`[`MAINTENANCE_LOCK`]`)` in its transaction, and a replica that
//! finds it taken skips the step (another is doing the same work). Every step is idempotent
//! (`CREATE TABLE IF NOT EXISTS`, drops re-check the watermark), so a step repeated after a crash
//! or by the next replica does no harm. DDL waits at most [`LOCK_TIMEOUT`] for its table locks and
//! is retried at the next interval, so writers never queue behind it for long.
//!
//! The feed's promise is kept as `lms prune-events` keeps it: the feed's `pruned_through` is
//! raised to the last event of the expiring months in a transaction that commits before any
//! partition is dropped, so a watcher below it is refused (CURSOR_EXPIRED) rather than served a
//! hole, and a partition holding any event above the watermark is never dropped.
//!
//! Progress events are never dropped: each is committed to by digest in the audit chain (a
//! `progress_batch` entry and its anchor's manifest, `src/store/audit.rs`), and VerifyAuditChain
//! reports a listed event that is gone as deleted. Their partitions bound each index and heap to
//! one month and let an operator move old months to cheaper storage, but removing learners'
//! records would need an archive the verifier can read, which does not exist yet; so there is no
//! progress retention setting.
//!
//! SQLite has no partitions: the same outbox retention deletes the events before the same
//! month boundary, in bounded batches, after raising the same watermark.

use chrono::{DateTime, Datelike as _, Months, NaiveDate, TimeZone as _, Utc};
use sea_orm::{ConnectionTrait as _, DatabaseTransaction, DbBackend};

use super::{Store, db_error, statement};
use crate::error::{Error, Result};

/// Key of the advisory lock that lets one replica at a time maintain partitions.
pub const MAINTENANCE_LOCK: i64 = 72010007;
/// Longest wait of partition DDL for its table locks; after it, the step is retried next interval.
pub const LOCK_TIMEOUT: &str = "5s";
/// The partitioned tables and their partition keys.
pub const PARTITIONED: [(&str, &str); 2] = [
    ("progress_events", "recorded_time"),
    ("outbox_events", "create_time"),
];

/// What maintenance keeps.
#[derive(Debug, Clone, Copy)]
pub struct PartitionPolicy {
    /// Months beyond the current one that have their partitions made in advance.
    pub ahead_months: u32,
    /// Age after which feed events go (by whole months on PostgreSQL); `None` keeps them all.
    pub outbox_retention: Option<std::time::Duration>,
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// False when another replica held the maintenance lock, so this run did nothing.
    pub ran: bool,
    /// Partitions made, by name.
    pub created: Vec<String>,
    /// Partitions dropped, by name.
    pub dropped: Vec<String>,
    /// Feed events removed (the rows of dropped partitions and the rows deleted in batches).
    pub removed: u64,
}

/// Outbox partitions dropped by one step.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    /// Their names.
    pub(crate) names: Vec<String>,
    /// Rows they held.
    pub(crate) rows: u64,
}

/// The first instant of the month holding `time`, in UTC.
pub fn month_start(time: DateTime<Utc>) -> DateTime<Utc> {
    let day = NaiveDate::from_ymd_opt(time.year(), time.month(), 1).unwrap_or(time.date_naive());
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Where retention cuts at `now`: the start of the month holding `now - retention`. Everything
/// created before it is gone after maintenance, on both databases.
pub fn retention_cutoff(now: DateTime<Utc>, retention: std::time::Duration) -> DateTime<Utc> {
    let age = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    month_start(
        now.checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// The name of `table`'s partition holding the month starting at `month`.
pub fn partition_name(table: &str, month: DateTime<Utc>) -> String {
    format!("{table}_p{:04}{:02}", month.year(), month.month())
}

/// The month a partition name stands for, or `None` (the default partition, a foreign name).
fn month_of(table: &str, name: &str) -> Option<DateTime<Utc>> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 6 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let day = NaiveDate::from_ymd_opt(digits[..4].parse().ok()?, digits[4..].parse().ok()?, 1)?;
    Some(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?))
}

/// Takes the maintenance lock for the rest of `transaction` if it is free, and bounds lock waits.
async fn try_lock(transaction: &DatabaseTransaction) -> Result<bool> {
    let locked = transaction
        .query_one_raw(statement(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            [MAINTENANCE_LOCK.into()],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("no answer taking the maintenance lock"))?
        .try_get::<bool>("", "locked")
        .map_err(db_error)?;
    if locked {
        transaction
            .execute_unprepared(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await
            .map_err(db_error)?;
    }
    Ok(locked)
}

/// The partitions of `table`, by name, as `transaction` sees them.
async fn partitions_in<C: sea_orm::ConnectionTrait>(db: &C, table: &str) -> Result<Vec<String>> {
    let rows = db
        .query_all_raw(statement(
            DbBackend::Postgres,
            "SELECT c.relname AS name FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace \
             ORDER BY c.relname",
            [table.into()],
        ))
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| row.try_get("", "name").map_err(db_error))
        .collect()
}

impl Store {
    /// Runs partition maintenance at `now`: makes the partitions of this month and the
    /// `ahead_months` after it, and applies the outbox retention (see the module docs).
    pub async fn maintain_partitions(
        &self,
        policy: PartitionPolicy,
        now: DateTime<Utc>,
    ) -> Result<Maintenance> {
        let cutoff = policy
            .outbox_retention
            .map(|retention| retention_cutoff(now, retention));
        if self.backend() != DbBackend::Postgres {
            let Some(cutoff) = cutoff else {
                return Ok(Maintenance {
                    ran: true,
                    ..Maintenance::default()
                });
            };
            let through = self.raise_pruned_through(cutoff).await?;
            return Ok(Maintenance {
                ran: true,
                removed: self.delete_events_through(through).await?,
                ..Maintenance::default()
            });
        }
        let ahead = policy.ahead_months;
        let created = self
            .write(move |transaction| {
                Box::pin(async move {
                    if !try_lock(transaction).await? {
                        return Ok(None);
                    }
                    let mut created = Vec::new();
                    for (table, _) in PARTITIONED {
                        let existing = partitions_in(transaction, table).await?;
                        for offset in 0..=ahead {
                            let Some(month) =
                                month_start(now).checked_add_months(Months::new(offset))
                            else {
                                break;
                            };
                            let name = partition_name(table, month);
                            if existing.contains(&name) {
                                continue;
                            }
                            create_partition(transaction, table, month).await?;
                            created.push(name);
                        }
                    }
                    Ok(Some(created))
                })
            })
            .await?;
        let Some(created) = created else {
            return Ok(Maintenance::default());
        };
        let mut maintenance = Maintenance {
            ran: true,
            created,
            ..Maintenance::default()
        };
        if let Some(cutoff) = cutoff {
            self.raise_pruned_through(cutoff).await?;
            let dropped = self.drop_outbox_partitions(cutoff).await?;
            maintenance.dropped = dropped.names;
            maintenance.removed = dropped.rows;
        }
        Ok(maintenance)
    }

    /// Drops the outbox partitions whose month ended at or before `before` and whose events are
    /// all at or below the feed's `pruned_through` (raise it first); PostgreSQL only. Skips the
    /// step when another replica holds the maintenance lock.
    pub(crate) async fn drop_outbox_partitions(&self, before: DateTime<Utc>) -> Result<Dropped> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut dropped = Dropped::default();
                if !try_lock(transaction).await? {
                    return Ok(dropped);
                }
                let through = super::event::pruned_through(transaction).await?;
                for name in partitions_in(transaction, "outbox_events").await? {
                    let Some(month) = month_of("outbox_events", &name) else {
                        continue;
                    };
                    if month.checked_add_months(Months::new(1)).is_none_or(|end| end > before) {
                        continue;
                    }
                    let row = transaction
                        .query_one_raw(statement(
                            DbBackend::Postgres,
                            &format!(
                                "SELECT COUNT(*) AS rows, COALESCE(MAX(sequence), 0) AS last \
                                 FROM \"{name}\""
                            ),
                            [],
                        ))
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::internal("no answer counting a partition"))?;
                    let last: i64 = row.try_get("", "last").map_err(db_error)?;
                    if last > through {
                        tracing::warn!(partition = %name, last, through, "outbox partition holds events above the feed's retention watermark; kept");
                        continue;
                    }
                    let rows: i64 = row.try_get("", "rows").map_err(db_error)?;
                    transaction
                        .execute_unprepared(&format!("DROP TABLE \"{name}\""))
                        .await
                        .map_err(db_error)?;
                    dropped.rows += rows as u64;
                    dropped.names.push(name);
                }
                Ok(dropped)
            })
        })
        .await
    }

    /// Returns the partitions of `table` by name (empty on SQLite and for a plain table).
    pub async fn partitions(&self, table: &str) -> Result<Vec<String>> {
        if self.backend() != DbBackend::Postgres {
            return Ok(Vec::new());
        }
        partitions_in(self.connection(), table).await
    }
}

/// Makes the partition of `table` for the month starting at `month`, if it is missing.
async fn create_partition(
    transaction: &DatabaseTransaction,
    table: &str,
    month: DateTime<Utc>,
) -> Result<()> {
    let end = month
        .checked_add_months(Months::new(1))
        .ok_or_else(|| Error::internal("partition month out of range"))?;
    let format = "%Y-%m-%d %H:%M:%S+00";
    transaction
        .execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS \"{name}\" PARTITION OF {table} \
             FOR VALUES FROM ('{from}') TO ('{to}')",
            name = partition_name(table, month),
            from = month.format(format),
            to = end.format(format),
        ))
        .await
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retention_cuts_at_the_start_of_the_month_holding_its_age() {
        let now = at("2026-12-03T10:00:00Z");
        let ninety_days = std::time::Duration::from_secs(90 * 86_400);
        // 2026-09-04 is in September: September is kept, August and before go.
        assert_eq!(
            retention_cutoff(now, ninety_days),
            at("2026-09-01T00:00:00Z")
        );
        assert_eq!(
            month_start(at("2027-01-31T23:59:59Z")),
            at("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn partition_names_stand_for_their_month_only() {
        let month = at("2027-02-01T00:00:00Z");
        let name = partition_name("outbox_events", month);
        assert_eq!(name, "outbox_events_p202702");
        assert_eq!(month_of("outbox_events", &name), Some(month));
        assert_eq!(month_of("outbox_events", "outbox_events_default"), None);
        assert_eq!(month_of("outbox_events", "progress_events_p202702"), None);
        assert_eq!(month_of("outbox_events", "outbox_events_p202713"), None);
    }
}
