//! The audit chain: appending entries inside a mutation's transaction, listing and verifying.

use chrono::{DateTime, Utc};
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait as _, IsolationLevel, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, TransactionOptions, TransactionTrait as _,
    sea_query::LockType,
};

use super::entity::progress::progress_events;
use super::entity::{audit_entries, audit_head};
use super::{Store, db_error};
use crate::domain::audit::{
    AuditChange, AuditContext, AuditEntry, AuditReport, ChainReport, ChainVerifier, PROGRESS_BATCH,
    ProgressAnchor, ProgressProblemKind, ProgressReport, ProgressVerifier, StoredProgressEvent,
};
use crate::domain::page::Page;
use crate::error::Result;

/// Table `progress_anchors`: what each audit entry of type `progress_batch` commits to.
pub mod progress_anchors {
    #![allow(missing_docs)]
    use sea_orm::entity::prelude::*;

    /// A row of `progress_anchors`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "progress_anchors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub id: String,
        pub first_recorded_time: DateTimeUtc,
        pub last_recorded_time: DateTimeUtc,
        pub event_count: i64,
        pub events_digest: String,
        pub manifest: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows read per round trip when verifying.
const VERIFY_BATCH: u64 = 1000;
/// Progress events read per round trip when verifying.
const VERIFY_EVENT_BATCH: u64 = 2000;
/// Progress anchors read per round trip when verifying (each holds up to a transaction's events).
const VERIFY_ANCHOR_BATCH: u64 = 100;
/// Rows inserted per statement.
const INSERT_BATCH: usize = 500;

/// Appends `changes` to the chain, in the caller's transaction.
///
/// The chain head row is locked (`FOR UPDATE` on PostgreSQL; SQLite write transactions are
/// already serial), so concurrent writers, also on other replicas, queue for the head instead
/// of forking the chain. Call it last in the transaction, to hold the lock briefly.
pub(crate) async fn append(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    changes: Vec<AuditChange>,
) -> Result<()> {
    append_entries(transaction, context, changes)
        .await
        .map(drop)
}

/// Appends `changes` as [`append`] does; returns the sequence of the last entry appended.
async fn append_entries(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    changes: Vec<AuditChange>,
) -> Result<i64> {
    if changes.is_empty() {
        return Ok(0);
    }
    let mut head_query = audit_head::Entity::find_by_id(1);
    if transaction.get_database_backend() == DbBackend::Postgres {
        head_query = head_query.lock(LockType::Update);
    }
    let head = head_query
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| crate::error::Error::internal("audit head row is missing"))?;
    // Entries are numbered after the last one stored. That is the head's unless a row was
    // inserted beyond it behind the service's back: then the chain goes on after that row
    // (VerifyAuditChain reports it as a broken link) instead of every write colliding with it.
    let last_stored = last_sequence(transaction).await?;
    if last_stored > head.sequence {
        tracing::warn!(
            head = head.sequence,
            last_stored,
            "audit entries exist beyond the chain head; the chain goes on after them and VerifyAuditChain reports the break"
        );
    }
    let time = crate::domain::now();
    let mut previous_hash = head.hash;
    let mut sequence = head.sequence.max(last_stored);
    let mut rows = Vec::with_capacity(changes.len());
    for change in changes {
        sequence += 1;
        let entry = AuditEntry::chain(sequence, &previous_hash, context, change, time);
        previous_hash.clone_from(&entry.hash);
        rows.push(to_active(entry));
    }
    let mut pending = rows.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<_> = pending.by_ref().take(INSERT_BATCH).collect();
        audit_entries::Entity::insert_many(batch)
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    audit_head::Entity::update(audit_head::ActiveModel {
        id: Set(1),
        sequence: Set(sequence),
        hash: Set(previous_hash),
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(sequence)
}

/// Where progress events were written from: the `action` of their anchor's audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressWrite {
    /// Unary `RecordProgress` calls committed together (group commit).
    GroupCommit,
    /// One `BatchRecordProgress` call, or one chunk of a `StreamProgress` stream.
    Call,
    /// Inside another audited change (attendance, survey answers), whose entry follows.
    WithinChange,
}

impl ProgressWrite {
    fn action(self) -> &'static str {
        match self {
            Self::GroupCommit => "progress.group_commit",
            Self::Call => "progress.call",
            Self::WithinChange => "progress.within_change",
        }
    }
}

/// Returns every stored field of `model`, as anchors cover it.
fn stored_event(model: progress_events::Model) -> StoredProgressEvent {
    StoredProgressEvent {
        event_id: model.event_id,
        enrollment_id: model.enrollment_id,
        activity_id: model.activity_id,
        verb: model.verb,
        score: model.score,
        duration_seconds: model.duration_seconds,
        occurred_time: model.occurred_time,
        source: model.source,
        evidence_uri: model.evidence_uri,
        evidence_note: model.evidence_note,
        provenance_note: model.provenance_note,
        actor: model.actor,
        payload_hash: model.payload_hash,
        recorded_time: model.recorded_time,
        ack_activity_state: model.ack_activity_state,
        ack_percent_complete: model.ack_percent_complete,
        ack_enrollment_state: model.ack_enrollment_state,
    }
}

/// Anchors the progress events a transaction writes (`events`, exactly as inserted) in the
/// audit chain: one entry of type `progress_batch` whose change digest commits to an anchor row
/// listing every event with its digest. Call it in the same transaction, after the events are
/// inserted and before the outbox is appended to (the audit head is always locked before the
/// outbox head, as every other writer does).
///
/// The entry's actor is the caller's subject when one caller wrote all the events, `*` when
/// group commit put several callers' events in one transaction (each event's own `actor`
/// column, which the digest covers, says who recorded it).
pub(crate) async fn anchor_progress(
    transaction: &DatabaseTransaction,
    write: ProgressWrite,
    events: &[progress_events::ActiveModel],
) -> Result<()> {
    let stored = events
        .iter()
        .map(|event| {
            sea_orm::TryIntoModel::try_into_model(event.clone())
                .map(stored_event)
                .map_err(db_error)
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(mut anchor) = ProgressAnchor::over(&stored) else {
        return Ok(());
    };
    let mut actors: Vec<&str> = stored.iter().map(|event| event.actor.as_str()).collect();
    actors.sort_unstable();
    actors.dedup();
    let context = AuditContext {
        actor: match actors.as_slice() {
            [only] => (*only).to_owned(),
            _ => "*".to_owned(),
        },
        action: write.action().to_owned(),
        request_id: None,
    };
    anchor.sequence = append_entries(transaction, &context, vec![anchor.change()]).await?;
    progress_anchors::Entity::insert(progress_anchors::ActiveModel {
        sequence: Set(anchor.sequence),
        id: Set(anchor.id),
        first_recorded_time: Set(anchor.first_recorded_time),
        last_recorded_time: Set(anchor.last_recorded_time),
        event_count: Set(anchor.event_count),
        events_digest: Set(anchor.events_digest),
        manifest: Set(anchor.manifest),
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Returns the highest sequence stored (0 when there is none).
async fn last_sequence(connection: &impl ConnectionTrait) -> Result<i64> {
    let last = audit_entries::Entity::find()
        .select_only()
        .column_as(audit_entries::Column::Sequence.max(), "last")
        .into_tuple::<Option<i64>>()
        .one(connection)
        .await
        .map_err(db_error)?;
    Ok(last.flatten().unwrap_or_default())
}

fn to_active(entry: AuditEntry) -> audit_entries::ActiveModel {
    audit_entries::ActiveModel {
        sequence: Set(entry.sequence),
        id: Set(entry.id),
        actor: Set(entry.actor),
        action: Set(entry.action),
        resource_type: Set(entry.resource_type),
        resource_id: Set(entry.resource_id),
        request_id: Set(entry.request_id),
        time: Set(entry.time),
        change_digest: Set(entry.change_digest),
        previous_hash: Set(entry.previous_hash),
        hash: Set(entry.hash),
    }
}

fn from_model(model: audit_entries::Model) -> AuditEntry {
    AuditEntry {
        sequence: model.sequence,
        id: model.id,
        actor: model.actor,
        action: model.action,
        resource_type: model.resource_type,
        resource_id: model.resource_id,
        request_id: model.request_id,
        time: model.time,
        change_digest: model.change_digest,
        previous_hash: model.previous_hash,
        hash: model.hash,
    }
}

/// Filters of [`Store::list_audit_entries`].
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource id.
    pub resource_id: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// At or after.
    pub start_time: Option<DateTime<Utc>>,
    /// Before.
    pub end_time: Option<DateTime<Utc>>,
}

impl Store {
    /// Lists audit entries in chain order after the page's key.
    pub async fn list_audit_entries(
        &self,
        filter: &AuditFilter,
        page: &Page,
    ) -> Result<(Vec<AuditEntry>, String)> {
        let mut query = audit_entries::Entity::find();
        if let Some(resource_type) = &filter.resource_type {
            query = query.filter(audit_entries::Column::ResourceType.eq(resource_type.as_str()));
        }
        if let Some(resource_id) = &filter.resource_id {
            query = query.filter(audit_entries::Column::ResourceId.eq(resource_id.as_str()));
        }
        if let Some(actor) = &filter.actor {
            query = query.filter(audit_entries::Column::Actor.eq(actor.as_str()));
        }
        if let Some(start) = filter.start_time {
            query = query.filter(audit_entries::Column::Time.gte(start));
        }
        if let Some(end) = filter.end_time {
            query = query.filter(audit_entries::Column::Time.lt(end));
        }
        if let Some(after) = &page.after {
            let after: i64 = after.parse().map_err(|_| {
                crate::error::Error::invalid("page_token", "is not a token this service issued")
            })?;
            query = query.filter(audit_entries::Column::Sequence.gt(after));
        }
        let rows = query
            .order_by_asc(audit_entries::Column::Sequence)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let entries = rows.into_iter().map(from_model).collect();
        Ok(page.finish(entries, |entry| entry.sequence.to_string()))
    }

    /// Recomputes the chain from the first entry to the head and reports the first broken link,
    /// then checks every progress event against the anchors the chain commits to and reports the
    /// first event edited, deleted or covered by no anchor.
    ///
    /// Reads one snapshot (a read-only transaction, repeatable read on PostgreSQL), so entries,
    /// head, anchors and events agree: every append moves the head in the transaction that adds
    /// its entries (and a progress transaction's anchor is written with its events), so an entry
    /// beyond the head, or an event no anchor lists, can only have been inserted behind the
    /// service's back.
    pub async fn verify_audit_chain(&self) -> Result<AuditReport> {
        let options = if self.backend() == DbBackend::Postgres {
            TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                ..TransactionOptions::default()
            }
        } else {
            TransactionOptions::default()
        };
        let snapshot = self
            .connection()
            .begin_with_options(options)
            .await
            .map_err(db_error)?;
        let report = async {
            let (chain, head) = verify_chain_in(&snapshot).await?;
            let progress = verify_progress_in(&snapshot, head).await?;
            Ok(AuditReport { chain, progress })
        }
        .await;
        if let Err(error) = snapshot.rollback().await {
            tracing::warn!(error = %error, "ending the audit verification snapshot failed");
        }
        report
    }

    /// Returns the number of audit entries (the chain head's sequence).
    pub async fn audit_length(&self) -> Result<i64> {
        let head = audit_head::Entity::find_by_id(1)
            .one(self.connection())
            .await
            .map_err(db_error)?;
        Ok(head.map(|head| head.sequence).unwrap_or_default())
    }
}

/// Verifies the chain as `db` sees it (one snapshot); returns the report and the head's sequence.
async fn verify_chain_in(db: &DatabaseTransaction) -> Result<(ChainReport, i64)> {
    let head = audit_head::Entity::find_by_id(1)
        .one(db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| crate::error::Error::internal("audit head row is missing"))?;
    let mut verifier = ChainVerifier::new();
    let mut after = 0i64;
    loop {
        let rows = audit_entries::Entity::find()
            .filter(audit_entries::Column::Sequence.gt(after))
            .filter(audit_entries::Column::Sequence.lte(head.sequence))
            .order_by_asc(audit_entries::Column::Sequence)
            .limit(VERIFY_BATCH)
            .all(db)
            .await
            .map_err(db_error)?;
        let Some(last) = rows.last() else { break };
        after = last.sequence;
        let mut intact = true;
        for row in rows {
            if !verifier.check(&from_model(row)) {
                intact = false;
                break;
            }
        }
        if !intact {
            break;
        }
    }
    let beyond_head = audit_entries::Entity::find()
        .select_only()
        .column_as(audit_entries::Column::Sequence.min(), "first")
        .filter(audit_entries::Column::Sequence.gt(head.sequence))
        .into_tuple::<Option<i64>>()
        .one(db)
        .await
        .map_err(db_error)?
        .flatten();
    Ok((
        verifier.finish(head.sequence, &head.hash, beyond_head),
        head.sequence,
    ))
}

fn anchor_from(model: progress_anchors::Model) -> ProgressAnchor {
    ProgressAnchor {
        sequence: model.sequence,
        id: model.id,
        first_recorded_time: model.first_recorded_time,
        last_recorded_time: model.last_recorded_time,
        event_count: model.event_count,
        events_digest: model.events_digest,
        manifest: model.manifest,
    }
}

/// The chain's entry at an anchor's sequence: resource type, resource id, change digest.
type AnchorEntry = (String, String, String);

/// Reads anchors in `(first_recorded_time, sequence)` order, a page at a time, with the audit
/// entries (up to the head) at their sequences, and opens them in the verifier when due.
struct AnchorCursor {
    head: i64,
    pending: std::collections::VecDeque<(ProgressAnchor, Option<AnchorEntry>)>,
    after: Option<(DateTime<Utc>, i64)>,
    exhausted: bool,
    opened: i64,
}

impl AnchorCursor {
    fn new(head: i64) -> Self {
        Self {
            head,
            pending: std::collections::VecDeque::new(),
            after: None,
            exhausted: false,
            opened: 0,
        }
    }

    async fn fetch(&mut self, db: &DatabaseTransaction) -> Result<()> {
        let mut query = progress_anchors::Entity::find();
        if let Some((time, sequence)) = self.after {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(progress_anchors::Column::FirstRecordedTime.gt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(progress_anchors::Column::FirstRecordedTime.eq(time))
                            .add(progress_anchors::Column::Sequence.gt(sequence)),
                    ),
            );
        }
        let rows = query
            .order_by_asc(progress_anchors::Column::FirstRecordedTime)
            .order_by_asc(progress_anchors::Column::Sequence)
            .limit(VERIFY_ANCHOR_BATCH)
            .all(db)
            .await
            .map_err(db_error)?;
        let Some(last) = rows.last() else {
            self.exhausted = true;
            return Ok(());
        };
        self.after = Some((last.first_recorded_time, last.sequence));
        let sequences: Vec<i64> = rows.iter().map(|row| row.sequence).collect();
        let mut entries: std::collections::HashMap<i64, AnchorEntry> =
            audit_entries::Entity::find()
                .filter(audit_entries::Column::Sequence.is_in(sequences))
                .filter(audit_entries::Column::Sequence.lte(self.head))
                .all(db)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|entry| {
                    (
                        entry.sequence,
                        (entry.resource_type, entry.resource_id, entry.change_digest),
                    )
                })
                .collect();
        for row in rows {
            let entry = entries.remove(&row.sequence);
            self.pending.push_back((anchor_from(row), entry));
        }
        Ok(())
    }

    /// Opens every anchor whose first recorded time is at or before `until` (every anchor for
    /// `None`); returns false once the verifier has found a problem.
    async fn open_until(
        &mut self,
        db: &DatabaseTransaction,
        verifier: &mut ProgressVerifier,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        loop {
            if self.pending.is_empty() {
                if self.exhausted {
                    return Ok(true);
                }
                self.fetch(db).await?;
                continue;
            }
            if let (Some(until), Some((anchor, _))) = (until, self.pending.front())
                && anchor.first_recorded_time > until
            {
                return Ok(true);
            }
            let Some((anchor, entry)) = self.pending.pop_front() else {
                continue;
            };
            let entry = entry
                .as_ref()
                .map(|(kind, id, digest)| (kind.as_str(), id.as_str(), digest.as_str()));
            if !verifier.open(anchor, entry) {
                return Ok(false);
            }
            self.opened += 1;
        }
    }
}

/// Checks every progress event against the anchors of the chain up to `head`, as `db` sees it.
async fn verify_progress_in(db: &DatabaseTransaction, head: i64) -> Result<ProgressReport> {
    let mut verifier = ProgressVerifier::new();
    let mut anchors = AnchorCursor::new(head);
    let mut after: Option<(DateTime<Utc>, String)> = None;
    'pages: loop {
        let mut query = progress_events::Entity::find();
        if let Some((time, event_id)) = &after {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(progress_events::Column::RecordedTime.gt(*time))
                    .add(
                        sea_orm::Condition::all()
                            .add(progress_events::Column::RecordedTime.eq(*time))
                            .add(progress_events::Column::EventId.gt(event_id.as_str())),
                    ),
            );
        }
        let rows = query
            .order_by_asc(progress_events::Column::RecordedTime)
            .order_by_asc(progress_events::Column::EventId)
            .limit(VERIFY_EVENT_BATCH)
            .all(db)
            .await
            .map_err(db_error)?;
        let Some(last) = rows.last() else { break };
        after = Some((last.recorded_time, last.event_id.clone()));
        for row in rows {
            let event = stored_event(row);
            if !anchors
                .open_until(db, &mut verifier, Some(event.recorded_time))
                .await?
                || !verifier.check_event(&event)
            {
                break 'pages;
            }
        }
    }
    if !verifier.failed() && anchors.open_until(db, &mut verifier, None).await? {
        // Every anchor row maps to a distinct entry of the chain; an entry without its row
        // shows as one entry more than rows.
        let entries = audit_entries::Entity::find()
            .filter(audit_entries::Column::ResourceType.eq(PROGRESS_BATCH))
            .filter(audit_entries::Column::Sequence.lte(head))
            .count(db)
            .await
            .map_err(db_error)? as i64;
        if entries != anchors.opened {
            let backend = db.get_database_backend();
            let row = db
                .query_one_raw(super::statement(
                    backend,
                    "SELECT MIN(a.sequence) AS missing FROM audit_entries a \
                     WHERE a.resource_type = $1 AND a.sequence <= $2 AND NOT EXISTS \
                     (SELECT 1 FROM progress_anchors p WHERE p.sequence = a.sequence)",
                    [PROGRESS_BATCH.into(), head.into()],
                ))
                .await
                .map_err(db_error)?;
            let missing = row
                .and_then(|row| row.try_get::<Option<i64>>("", "missing").ok())
                .flatten()
                .unwrap_or_default();
            verifier.anchor_missing(missing);
        }
    }
    let mut report = verifier.finish();
    // A listed event that never came by is deleted, or moved out of its anchor's time range by
    // an edit of its recorded_time: the row itself tells which.
    if let Some(problem) = report.problem.as_mut()
        && problem.kind == ProgressProblemKind::EventDeleted
        && progress_events::Entity::find_by_id(problem.event_id.clone())
            .one(db)
            .await
            .map_err(db_error)?
            .is_some()
    {
        problem.kind = ProgressProblemKind::EventEdited;
        problem.message = format!(
            "progress event {} was edited: its recorded_time no longer falls within the time range anchored at sequence {}",
            problem.event_id, problem.anchor_sequence
        );
    }
    Ok(report)
}
