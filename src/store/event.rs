//! The transactional outbox and the feed read from it.
//!
//! Cursor order is commit order. Every transaction that publishes events moves the single
//! `outbox_head` row past its events (`UPDATE ... RETURNING`, which locks the row on PostgreSQL;
//! SQLite write transactions are serial already), numbers its events below the new head, and
//! holds that lock until it commits. The next publisher can only read the head after that commit, so sequences become
//! visible strictly in order: a reader that has seen cursor N never later finds an event below N,
//! also with many replicas writing to one database. The price is that publishing transactions
//! queue on one row for the moment of their commit; they are few (completions, enrolments,
//! imports), and the progress hot path publishes only when something completes. A watermark on
//! `pg_snapshot_xmin` would avoid the queue but makes every reader hold back events, so the simpler
//! serialisation was chosen.

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use super::entity::progress::outbox_events;
use super::{Store, db_error};
use crate::domain::event::{FeedEvent, NewEvent, organization_of};
use crate::domain::feed::FeedState;
use crate::error::{Error, Result};

tokio::task_local! {
    /// Set inside a write transaction's task when it published events, so the commit wakes watchers.
    pub(crate) static PUBLISHED: std::cell::Cell<bool>;
}

/// Events deleted per statement by retention where no partition can be dropped.
const DELETE_BATCH: u64 = 10_000;

/// Reads the feed's retention watermark, in `transaction`.
pub(crate) async fn pruned_through(transaction: &DatabaseTransaction) -> Result<i64> {
    transaction
        .query_one_raw(super::statement(
            transaction.get_database_backend(),
            "SELECT pruned_through FROM outbox_head WHERE id = 1",
            [],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("outbox head row is missing"))?
        .try_get::<i64>("", "pruned_through")
        .map_err(db_error)
}

/// Name of the PostgreSQL notification channel that wakes watchers on every replica.
pub const NOTIFY_CHANNEL: &str = "lms_outbox";

/// Appends `events` to the outbox, in the caller's transaction; call it last, to hold the head briefly.
pub(crate) async fn append(transaction: &DatabaseTransaction, events: Vec<NewEvent>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = transaction.get_database_backend();
    let count = events.len() as i64;
    // Read before the head is taken, so the head is held no longer than before.
    let keys = external_keys(transaction, &events).await?;
    // One statement moves the head past this transaction's events and locks the row until
    // commit; on PostgreSQL it also queues the notification that every replica's listener
    // receives when (and only if) the transaction commits.
    let sql = if backend == DbBackend::Postgres {
        format!(
            "UPDATE outbox_head SET sequence = sequence + $1 WHERE id = 1 \
             RETURNING sequence, pg_notify('{NOTIFY_CHANNEL}', '')::text AS notified"
        )
    } else {
        "UPDATE outbox_head SET sequence = sequence + $1 WHERE id = 1 RETURNING sequence".to_owned()
    };
    let head = transaction
        .query_one_raw(super::statement(backend, &sql, [count.into()]))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("outbox head row is missing"))?;
    let last: i64 = head.try_get("", "sequence").map_err(db_error)?;
    let now = crate::domain::now();
    let mut sequence = last - count;
    let rows: Vec<outbox_events::ActiveModel> = events
        .into_iter()
        .map(|event| {
            sequence += 1;
            let person_external_id = event
                .person_id
                .as_ref()
                .and_then(|id| keys.people.get(id).cloned());
            let organization_external_code = event
                .organization_path
                .as_deref()
                .and_then(organization_of)
                .and_then(|id| keys.organizations.get(&id).cloned());
            outbox_events::ActiveModel {
                sequence: Set(sequence),
                id: Set(crate::domain::new_id()),
                event_type: Set(event.event_type.to_owned()),
                subject_id: Set(event.subject_id),
                person_id: Set(event.person_id),
                organization_path: Set(event.organization_path),
                payload: Set(event.payload.to_string()),
                create_time: Set(now),
                person_external_id: Set(person_external_id),
                organization_external_code: Set(organization_external_code),
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        outbox_events::Entity::insert_many(chunk.to_vec())
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    let _ = PUBLISHED.try_with(|published| published.set(true));
    Ok(())
}

/// The HR keys of the people and organisations a batch of events names.
#[derive(Debug, Default)]
struct ExternalKeys {
    /// `external_id` by person id.
    people: std::collections::HashMap<String, String>,
    /// `external_code` by organisation id (organisations without one are absent).
    organizations: std::collections::HashMap<String, String>,
}

/// Reads the `external_id` of each person and the `external_code` of each organisation that
/// `events` name: two indexed lookups per publishing transaction (inside it, so people created
/// by the same transaction are found), stored with the events so the feed carries the keys as
/// they were and no reader resolves them again.
async fn external_keys(
    transaction: &DatabaseTransaction,
    events: &[NewEvent],
) -> Result<ExternalKeys> {
    use super::entity::{organizations, people};
    let mut person_ids: Vec<String> = events
        .iter()
        .filter_map(|event| event.person_id.clone())
        .collect();
    person_ids.sort();
    person_ids.dedup();
    let mut organization_ids: Vec<String> = events
        .iter()
        .filter_map(|event| event.organization_path.as_deref().and_then(organization_of))
        .collect();
    organization_ids.sort();
    organization_ids.dedup();
    let mut keys = ExternalKeys::default();
    for chunk in person_ids.chunks(1000) {
        let rows: Vec<(String, String)> = people::Entity::find()
            .select_only()
            .column(people::Column::Id)
            .column(people::Column::ExternalId)
            .filter(people::Column::Id.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
        keys.people.extend(rows);
    }
    for chunk in organization_ids.chunks(1000) {
        let rows: Vec<(String, Option<String>)> = organizations::Entity::find()
            .select_only()
            .column(organizations::Column::Id)
            .column(organizations::Column::ExternalCode)
            .filter(organizations::Column::Id.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
        keys.organizations.extend(
            rows.into_iter()
                .filter_map(|(id, code)| code.map(|code| (id, code))),
        );
    }
    Ok(keys)
}

/// Filters of [`Store::events_after`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these types (empty: all).
    pub types: Vec<String>,
    /// Only events of people whose organisation path starts with this.
    pub organization_path_prefix: Option<String>,
}

impl EventFilter {
    /// Returns true when `event` passes the filter, as the query of [`Store::events_after`] does.
    pub fn matches(&self, event: &FeedEvent) -> bool {
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && self
                .organization_path_prefix
                .as_deref()
                .is_none_or(|prefix| {
                    event
                        .organization_path
                        .as_deref()
                        .is_some_and(|path| path.starts_with(prefix))
                })
    }
}

impl Store {
    /// Returns up to `limit` events after `cursor`, in feed order.
    pub async fn events_after(
        &self,
        cursor: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<FeedEvent>> {
        self.events_after_on(self.connection(), cursor, filter, limit)
            .await
    }

    /// Returns up to `limit` events after `cursor` for a watcher catching up: read from a hot
    /// standby when one is usable (`DATABASE_READ_URL`), the rest of a short page from the primary.
    ///
    /// A standby shows a prefix of the feed (cursor order is commit order, and a standby replays
    /// commits in order), so a full page from it is the page the primary would give; a short one
    /// may end where the standby's replay stands, so the primary continues it up to the head.
    pub async fn backlog_events_after(
        &self,
        cursor: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<FeedEvent>> {
        let reader = self.reader();
        if !reader.is_standby() {
            return self.events_after(cursor, filter, limit).await;
        }
        let mut events = self.events_after_on(&reader, cursor, filter, limit).await?;
        let read = events.len() as u64;
        if read < limit {
            let last = events.last().map_or(cursor, |event| event.cursor);
            events.extend(self.events_after(last, filter, limit - read).await?);
        }
        Ok(events)
    }

    /// Returns up to `limit` events after `cursor`, in feed order, read on `connection`.
    async fn events_after_on(
        &self,
        connection: &impl ConnectionTrait,
        cursor: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<FeedEvent>> {
        let mut query =
            outbox_events::Entity::find().filter(outbox_events::Column::Sequence.gt(cursor));
        if !filter.types.is_empty() {
            query =
                query.filter(outbox_events::Column::EventType.is_in(filter.types.iter().cloned()));
        }
        if let Some(prefix) = &filter.organization_path_prefix {
            query = query.filter(sea_orm::sea_query::ExprTrait::like(
                sea_orm::sea_query::Expr::col(outbox_events::Column::OrganizationPath),
                super::like_prefix(prefix),
            ));
        }
        let rows = query
            .order_by_asc(outbox_events::Column::Sequence)
            .limit(limit)
            .all(connection)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| FeedEvent {
                cursor: row.sequence,
                organization_id: row.organization_path.as_deref().and_then(organization_of),
                organization_path: row.organization_path,
                id: row.id,
                event_type: row.event_type,
                subject_id: row.subject_id,
                person_id: row.person_id,
                time: row.create_time,
                payload: row.payload,
                person_external_id: row.person_external_id,
                organization_external_code: row.organization_external_code,
            })
            .collect())
    }

    /// Returns the cursor of the last event in the feed (0 when there is none).
    pub async fn last_event_cursor(&self) -> Result<i64> {
        let last = outbox_events::Entity::find()
            .select_only()
            .column_as(outbox_events::Column::Sequence.max(), "last")
            .into_tuple::<Option<i64>>()
            .one(self.connection())
            .await
            .map_err(db_error)?;
        Ok(last.flatten().unwrap_or_default())
    }

    /// Deletes events created before `before`; returns how many. Cursors are never reused.
    ///
    /// Retention deletes a prefix of the feed: every event up to the last one created before
    /// `before`. That cursor is recorded first, as the feed's `pruned_through`, in a short
    /// transaction of its own, so a watcher below it is refused (CURSOR_EXPIRED) before any of
    /// the events it would miss are gone; the events then go without holding the head. On
    /// PostgreSQL the monthly partitions wholly before `before` are dropped (see
    /// `src/store/partition.rs`) and the rest is deleted in bounded batches, as on SQLite.
    pub async fn prune_events(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let through = self.raise_pruned_through(before).await?;
        let dropped = if self.backend() == DbBackend::Postgres {
            self.drop_outbox_partitions(before).await?.rows
        } else {
            0
        };
        Ok(dropped + self.delete_events_through(through).await?)
    }

    /// Records the last event created before `before` as the feed's `pruned_through` (never
    /// lowered), in a transaction of its own; returns the watermark as it now stands.
    pub(crate) async fn raise_pruned_through(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64> {
        self.write(move |transaction| {
            Box::pin(async move {
                let last_expired = outbox_events::Entity::find()
                    .select_only()
                    .column_as(outbox_events::Column::Sequence.max(), "last")
                    .filter(outbox_events::Column::CreateTime.lt(before))
                    .into_tuple::<Option<i64>>()
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .flatten()
                    .unwrap_or_default();
                let backend = transaction.get_database_backend();
                transaction
                    .execute_raw(super::statement(
                        backend,
                        "UPDATE outbox_head SET pruned_through = $1 \
                         WHERE id = 1 AND pruned_through < $1",
                        [last_expired.into()],
                    ))
                    .await
                    .map_err(db_error)?;
                // Never lowered: also finishes a delete an earlier run did not complete.
                pruned_through(transaction).await
            })
        })
        .await
    }

    /// Deletes the events up to `through`, [`DELETE_BATCH`] per statement, so no delete holds
    /// its locks (or, on SQLite, the single writer) for long; returns how many went.
    pub(crate) async fn delete_events_through(&self, through: i64) -> Result<u64> {
        let backend = self.backend();
        let mut deleted = 0;
        loop {
            let batch = self
                .connection()
                .execute_raw(super::statement(
                    backend,
                    "DELETE FROM outbox_events WHERE sequence IN (SELECT sequence \
                     FROM outbox_events WHERE sequence <= $1 ORDER BY sequence LIMIT $2)",
                    [through.into(), (DELETE_BATCH as i64).into()],
                ))
                .await
                .map_err(db_error)?
                .rows_affected();
            deleted += batch;
            if batch < DELETE_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// Returns the feed's history, head and retention watermark, as committed.
    pub async fn feed_state(&self) -> Result<FeedState> {
        let backend = self.backend();
        let row = self
            .connection()
            .query_one_raw(super::statement(
                backend,
                "SELECT history, sequence, pruned_through FROM outbox_head WHERE id = 1",
                [],
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("outbox head row is missing"))?;
        Ok(FeedState {
            history: row.try_get("", "history").map_err(db_error)?,
            head: row.try_get("", "sequence").map_err(db_error)?,
            pruned_through: row.try_get("", "pruned_through").map_err(db_error)?,
        })
    }

    /// Gives the feed a new history, as the restore procedure does: every resume token issued
    /// before is refused from now on (FEED_HISTORY_CHANGED). Returns the old and the new history.
    pub async fn rotate_feed_history(&self) -> Result<(String, String)> {
        self.write(|transaction| {
            Box::pin(async move {
                let backend = transaction.get_database_backend();
                let old: String = transaction
                    .query_one_raw(super::statement(
                        backend,
                        "SELECT history FROM outbox_head WHERE id = 1",
                        [],
                    ))
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::internal("outbox head row is missing"))?
                    .try_get("", "history")
                    .map_err(db_error)?;
                let new = crate::domain::feed::new_history();
                transaction
                    .execute_raw(super::statement(
                        backend,
                        "UPDATE outbox_head SET history = $1 WHERE id = 1",
                        [new.clone().into()],
                    ))
                    .await
                    .map_err(db_error)?;
                Ok((old, new))
            })
        })
        .await
    }

    /// Returns the feed's wake-up signal: notified after every commit that published events.
    pub fn feed_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.feed.clone()
    }

    /// Relays PostgreSQL notifications from other replicas to this process, until the connection
    /// drops: feed notifications wake this process's watchers, progress invalidations reach the
    /// progress cache. The cache serves only while this listener is subscribed (see
    /// [`super::progress_cache`]): it goes live once both channels are listened to, and dark when
    /// the connection is lost, since notifications sent meanwhile are lost with it.
    pub async fn listen_for_other_replicas(&self) -> Result<()> {
        if self.backend() != DbBackend::Postgres {
            return Ok(());
        }
        let unavailable = |error: sea_orm::sqlx::Error| {
            Error::Unavailable(format!("cannot listen for notifications: {error}"))
        };
        let pool = self.connection().get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(unavailable)?;
        listener
            .listen_all([NOTIFY_CHANNEL, super::progress_cache::CHANNEL])
            .await
            .map_err(unavailable)?;
        let cache = self.progress_cache();
        cache.go_live();
        let result = loop {
            // try_recv, not recv: recv reconnects silently and loses what was sent meanwhile.
            match listener.try_recv().await {
                Ok(Some(notification))
                    if notification.channel() == super::progress_cache::CHANNEL =>
                {
                    cache.invalidate(&super::progress_cache::Touched::parse(
                        notification.payload(),
                    ));
                }
                Ok(Some(_)) => self.feed.notify_waiters(),
                Ok(None) => {
                    break Err(Error::Unavailable(
                        "notification listener lost its connection".to_owned(),
                    ));
                }
                Err(error) => break Err(unavailable(error)),
            }
        };
        cache.go_dark();
        tracing::warn!(
            "notification listener lost its connection; feed watchers fall back to polling and the progress cache is off until it reconnects"
        );
        result
    }
}
