//! Progress anchors: what each audit entry of type `progress_batch` commits to, and the genesis
//! anchors of the progress events written before anchoring existed.
//!
//! From this migration on, every transaction that writes progress events appends one audit
//! entry whose change digest commits to a `progress_anchors` row: the events' recorded-time
//! range, their count, a digest over every stored field of each, and a manifest listing each
//! event id with a prefix of its digest (docs/audit.md). The events already stored are anchored
//! here, at migrate time, in genesis anchors of up to [`GENESIS_EVENTS`] events each (in
//! `(recorded_time, event_id)` order), appended to the chain in this migration's transaction,
//! so that VerifyAuditChain covers every event, old or new.
//!
//! The encodings below are a frozen copy of `src/domain/audit.rs` as of this migration
//! (`lms.progress_event.v1`, `lms.progress_batch.v1`, `lms.progress_anchor.v1`, and the chain
//! entry hash); `tests/api/audit.rs` verifies a database anchored here with the server's own
//! verifier, so the two cannot drift apart unseen.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use sha2::{Digest as _, Sha256};

type Time = chrono::DateTime<chrono::Utc>;

/// Events per genesis anchor: its manifest stays under a megabyte.
const GENESIS_EVENTS: u64 = 10_000;
/// Actor of the genesis entries.
const GENESIS_ACTOR: &str = "lms-migrate";
/// Action of the genesis entries.
const GENESIS_ACTION: &str = "migration m20261205_000016_progress_anchors";

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProgressAnchors {
    Table,
    Sequence,
    Id,
    FirstRecordedTime,
    LastRecordedTime,
    EventCount,
    EventsDigest,
    Manifest,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProgressAnchors::Table)
                    .col(
                        ColumnDef::new(ProgressAnchors::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProgressAnchors::Id)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressAnchors::FirstRecordedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressAnchors::LastRecordedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressAnchors::EventCount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressAnchors::EventsDigest)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProgressAnchors::Manifest).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_progress_anchors_first_recorded")
                    .table(ProgressAnchors::Table)
                    .col(ProgressAnchors::FirstRecordedTime)
                    .col(ProgressAnchors::Sequence)
                    .to_owned(),
            )
            .await?;
        anchor_existing_events(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The chain keeps its `progress_batch` entries: an audit log is never rewritten.
        manager
            .drop_table(Table::drop().table(ProgressAnchors::Table).to_owned())
            .await
    }

    // The table, the genesis entries and the moved chain head commit together, or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// A stored progress event, every column.
struct Event {
    event_id: String,
    enrollment_id: String,
    activity_id: String,
    verb: String,
    score: Option<i32>,
    duration_seconds: i64,
    occurred_time: Time,
    source: String,
    evidence_uri: Option<String>,
    evidence_note: Option<String>,
    provenance_note: Option<String>,
    actor: String,
    payload_hash: String,
    recorded_time: Time,
    ack_activity_state: String,
    ack_percent_complete: f64,
    ack_enrollment_state: String,
}

/// SHA-256 over fields each encoded as `0x00` (NULL) or `0x01`, a big-endian u64 length and
/// the UTF-8 bytes; the first field is the encoding's tag.
struct Canonical(Sha256);

impl Canonical {
    fn new(tag: &str) -> Self {
        let mut canonical = Self(Sha256::new());
        canonical.text(tag);
        canonical
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update([0u8]),
            Some(value) => {
                self.0.update([1u8]);
                self.0.update((value.len() as u64).to_be_bytes());
                self.0.update(value.as_bytes());
            }
        }
    }

    fn text(&mut self, value: &str) {
        self.optional(Some(value));
    }

    fn number(&mut self, value: i64) {
        self.text(&value.to_string());
    }

    fn time(&mut self, value: Time) {
        self.number(value.timestamp_micros());
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl Event {
    fn digest(&self) -> [u8; 32] {
        let mut canonical = Canonical::new("lms.progress_event.v1");
        canonical.text(&self.event_id);
        canonical.text(&self.enrollment_id);
        canonical.text(&self.activity_id);
        canonical.text(&self.verb);
        canonical.optional(self.score.map(|score| score.to_string()).as_deref());
        canonical.number(self.duration_seconds);
        canonical.time(self.occurred_time);
        canonical.text(&self.source);
        canonical.optional(self.evidence_uri.as_deref());
        canonical.optional(self.evidence_note.as_deref());
        canonical.optional(self.provenance_note.as_deref());
        canonical.text(&self.actor);
        canonical.text(&self.payload_hash);
        canonical.time(self.recorded_time);
        canonical.text(&self.ack_activity_state);
        let percent = self.ack_percent_complete + 0.0;
        canonical.text(&format!("{:016x}", percent.to_bits()));
        canonical.text(&self.ack_enrollment_state);
        canonical.finish()
    }
}

/// One genesis anchor, as stored in `progress_anchors`.
struct Anchor {
    id: String,
    first_recorded_time: Time,
    last_recorded_time: Time,
    event_count: i64,
    events_digest: String,
    manifest: String,
}

impl Anchor {
    fn over(events: &[Event]) -> Option<Self> {
        let mut digested: Vec<(&str, [u8; 32])> = events
            .iter()
            .map(|event| (event.event_id.as_str(), event.digest()))
            .collect();
        digested.sort_unstable_by(|left, right| left.0.cmp(right.0));
        let first_recorded_time = events.iter().map(|event| event.recorded_time).min()?;
        let last_recorded_time = events.iter().map(|event| event.recorded_time).max()?;
        let mut batch = Canonical::new("lms.progress_batch.v1");
        batch.number(digested.len() as i64);
        for (_, digest) in &digested {
            batch.text(&hex::encode(digest));
        }
        let manifest: Vec<(&str, String)> = digested
            .iter()
            .map(|(id, digest)| (*id, hex::encode(&digest[..8])))
            .collect();
        Some(Self {
            id: uuid::Uuid::now_v7().to_string(),
            first_recorded_time,
            last_recorded_time,
            event_count: digested.len() as i64,
            events_digest: hex::encode(batch.finish()),
            manifest: serde_json::to_string(&manifest).ok()?,
        })
    }

    fn change_digest(&self) -> String {
        let mut canonical = Canonical::new("lms.progress_anchor.v1");
        canonical.text(&self.id);
        canonical.time(self.first_recorded_time);
        canonical.time(self.last_recorded_time);
        canonical.number(self.event_count);
        canonical.text(&self.events_digest);
        canonical.text(&self.manifest);
        hex::encode(canonical.finish())
    }
}

/// The hash of an audit entry: its fields and the previous hash, each length-prefixed.
fn entry_hash(
    sequence: i64,
    id: &str,
    resource_id: &str,
    time: Time,
    change_digest: &str,
    previous_hash: &str,
) -> String {
    let mut hasher = Sha256::new();
    for field in [
        sequence.to_string().as_str(),
        id,
        GENESIS_ACTOR,
        GENESIS_ACTION,
        "progress_batch",
        resource_id,
        "",
        time.timestamp_micros().to_string().as_str(),
        change_digest,
        previous_hash,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let text = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    Statement::from_sql_and_values(backend, text, values)
}

/// Appends one genesis anchor per [`GENESIS_EVENTS`] stored events to the audit chain.
async fn anchor_existing_events<C: ConnectionTrait>(connection: &C) -> Result<(), DbErr> {
    let backend = connection.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let head = connection
        .query_one_raw(statement(
            backend,
            &format!("SELECT sequence, hash FROM audit_head WHERE id = 1{lock}"),
            Vec::new(),
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("audit head row is missing".to_owned()))?;
    let head_sequence: i64 = head.try_get("", "sequence")?;
    let mut previous_hash: String = head.try_get("", "hash")?;
    // As the service does: entries go on after the last one stored.
    let last_stored: Option<i64> = connection
        .query_one_raw(statement(
            backend,
            "SELECT MAX(sequence) AS last FROM audit_entries",
            Vec::new(),
        ))
        .await?
        .map(|row| row.try_get::<Option<i64>>("", "last"))
        .transpose()?
        .flatten();
    let mut sequence = Ord::max(head_sequence, last_stored.unwrap_or_default());
    let time = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let mut after: Option<(Time, String)> = None;
    let mut appended = 0;
    loop {
        let (condition, mut values) = match &after {
            Some((time, event_id)) => (
                "WHERE recorded_time > $1 OR (recorded_time = $1 AND event_id > $2)",
                vec![Value::from(*time), Value::from(event_id.clone())],
            ),
            None => ("", Vec::new()),
        };
        values.push(Value::from(GENESIS_EVENTS as i64));
        let limit = if after.is_some() { "$3" } else { "$1" };
        let rows = connection
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT event_id, enrollment_id, activity_id, verb, score, duration_seconds, \
                     occurred_time, source, evidence_uri, evidence_note, provenance_note, actor, \
                     payload_hash, recorded_time, ack_activity_state, ack_percent_complete, \
                     ack_enrollment_state FROM progress_events {condition} \
                     ORDER BY recorded_time, event_id LIMIT {limit}"
                ),
                values,
            ))
            .await?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(Event {
                    event_id: row.try_get("", "event_id")?,
                    enrollment_id: row.try_get("", "enrollment_id")?,
                    activity_id: row.try_get("", "activity_id")?,
                    verb: row.try_get("", "verb")?,
                    score: row.try_get("", "score")?,
                    duration_seconds: row.try_get("", "duration_seconds")?,
                    occurred_time: row.try_get("", "occurred_time")?,
                    source: row.try_get("", "source")?,
                    evidence_uri: row.try_get("", "evidence_uri")?,
                    evidence_note: row.try_get("", "evidence_note")?,
                    provenance_note: row.try_get("", "provenance_note")?,
                    actor: row.try_get("", "actor")?,
                    payload_hash: row.try_get("", "payload_hash")?,
                    recorded_time: row.try_get("", "recorded_time")?,
                    ack_activity_state: row.try_get("", "ack_activity_state")?,
                    ack_percent_complete: row.try_get("", "ack_percent_complete")?,
                    ack_enrollment_state: row.try_get("", "ack_enrollment_state")?,
                })
            })
            .collect::<Result<Vec<Event>, DbErr>>()?;
        let Some(last) = events.last() else { break };
        after = Some((last.recorded_time, last.event_id.clone()));
        let anchor = Anchor::over(&events)
            .ok_or_else(|| DbErr::Migration("a genesis anchor could not be made".to_owned()))?;
        sequence += 1;
        let entry_id = uuid::Uuid::now_v7().to_string();
        let change_digest = anchor.change_digest();
        let hash = entry_hash(
            sequence,
            &entry_id,
            &anchor.id,
            time,
            &change_digest,
            &previous_hash,
        );
        connection
            .execute_raw(statement(
                backend,
                "INSERT INTO audit_entries (sequence, id, actor, action, resource_type, \
                 resource_id, request_id, time, change_digest, previous_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    sequence.into(),
                    entry_id.into(),
                    GENESIS_ACTOR.into(),
                    GENESIS_ACTION.into(),
                    "progress_batch".into(),
                    anchor.id.clone().into(),
                    "".into(),
                    time.into(),
                    change_digest.into(),
                    previous_hash.clone().into(),
                    hash.clone().into(),
                ],
            ))
            .await?;
        connection
            .execute_raw(statement(
                backend,
                "INSERT INTO progress_anchors (sequence, id, first_recorded_time, \
                 last_recorded_time, event_count, events_digest, manifest) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    sequence.into(),
                    anchor.id.into(),
                    anchor.first_recorded_time.into(),
                    anchor.last_recorded_time.into(),
                    anchor.event_count.into(),
                    anchor.events_digest.into(),
                    anchor.manifest.into(),
                ],
            ))
            .await?;
        previous_hash = hash;
        appended += 1;
    }
    if appended > 0 {
        connection
            .execute_raw(statement(
                backend,
                "UPDATE audit_head SET sequence = $1, hash = $2 WHERE id = 1",
                vec![sequence.into(), previous_hash.into()],
            ))
            .await?;
    }
    Ok(())
}
