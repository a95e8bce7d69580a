//! The audit chain: appending entries inside a mutation's transaction, listing and verifying.

use chrono::{DateTime, Utc};
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait as _, IsolationLevel, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, TransactionOptions, TransactionTrait as _, sea_query::LockType,
};

use super::entity::{audit_entries, audit_head};
use super::{Store, db_error};
use crate::domain::audit::{AuditChange, AuditContext, AuditEntry, ChainReport, ChainVerifier};
use crate::domain::page::Page;
use crate::error::Result;

/// Rows read per round trip when verifying.
const VERIFY_BATCH: u64 = 1000;
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
    if changes.is_empty() {
        return Ok(());
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
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let entries = rows.into_iter().map(from_model).collect();
        Ok(page.finish(entries, |entry| entry.sequence.to_string()))
    }

    /// Recomputes the chain from the first entry to the head and reports the first broken link.
    ///
    /// Reads one snapshot (a read-only transaction, repeatable read on PostgreSQL), so entries
    /// and head agree: every append moves the head in the transaction that adds its entries, and
    /// an entry beyond the head can only have been inserted behind the service's back.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
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
        let report = verify_in(&snapshot).await;
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

/// Verifies the chain as `db` sees it: one snapshot.
async fn verify_in(db: &DatabaseTransaction) -> Result<ChainReport> {
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
    Ok(verifier.finish(head.sequence, &head.hash, beyond_head))
}
