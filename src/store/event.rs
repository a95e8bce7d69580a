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
use crate::error::{Error, Result};

tokio::task_local! {
    /// Set inside a write transaction's task when it published events, so the commit wakes watchers.
    pub(crate) static PUBLISHED: std::cell::Cell<bool>;
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
            outbox_events::ActiveModel {
                sequence: Set(sequence),
                id: Set(crate::domain::new_id()),
                event_type: Set(event.event_type.to_owned()),
                subject_id: Set(event.subject_id),
                person_id: Set(event.person_id),
                organization_path: Set(event.organization_path),
                payload: Set(event.payload.to_string()),
                create_time: Set(now),
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
            .all(self.connection())
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
    pub async fn prune_events(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let deleted = outbox_events::Entity::delete_many()
            .filter(outbox_events::Column::CreateTime.lt(before))
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected)
    }

    /// Returns the feed's wake-up signal: notified after every commit that published events.
    pub fn feed_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.feed.clone()
    }

    /// Relays PostgreSQL notifications from other replicas to this process's watchers, until dropped.
    pub async fn listen_for_other_replicas(&self) -> Result<()> {
        if self.backend() != DbBackend::Postgres {
            return Ok(());
        }
        let pool = self.connection().get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(|error| {
                Error::Unavailable(format!("cannot listen for feed notifications: {error}"))
            })?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(|error| {
            Error::Unavailable(format!("cannot listen for feed notifications: {error}"))
        })?;
        loop {
            match listener.recv().await {
                Ok(_) => self.feed.notify_waiters(),
                Err(error) => {
                    tracing::warn!(error = %error, "feed listener lost its connection; watchers fall back to polling");
                    return Err(Error::Unavailable("feed listener stopped".to_owned()));
                }
            }
        }
    }
}
