//! Tamper-evident progress: every transaction that records progress events anchors them in the
//! audit chain, and VerifyAuditChain names an event edited, deleted or inserted behind the
//! server's back; events stored before anchoring existed are anchored by the migration.

use futures::StreamExt as _;
use lms::domain::audit::{AuditChange, AuditContext, AuditEntry};
use lms::pb::{
    self, ProgressIntegrityProblem as Problem, ProgressSource as Source, ProgressVerb as Verb,
};
use lms::store::entity::{audit_entries, audit_head, progress::progress_events};
use migration::MigratorTrait as _;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, DatabaseConnection, EntityTrait as _,
    QueryFilter as _,
};

use crate::helpers::{TestApp, TestDatabase, spawn_app, spawn_app_on};
use crate::progress::{classroom, event, progress};

/// The migration that introduced anchors (and anchors the events stored before it).
const ANCHORS_MIGRATION: &str = "m20261205_000016_progress_anchors";

async fn verify(app: &TestApp) -> pb::VerifyAuditChainResponse {
    app.audit
        .clone()
        .verify_audit_chain(app.admin(pb::VerifyAuditChainRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn progress_batches(app: &TestApp) -> Vec<pb::AuditEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .audit
            .clone()
            .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
                resource_type: "progress_batch".to_owned(),
                page_size: 1000,
                page_token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

/// Event ids recorded through the API: unary calls sent together, one batch, one stream.
struct Recorded {
    unary: Vec<String>,
    batch: Vec<String>,
    stream: Vec<String>,
}

impl Recorded {
    fn total(&self) -> i64 {
        (self.unary.len() + self.batch.len() + self.stream.len()) as i64
    }
}

async fn record_every_way(app: &TestApp) -> Recorded {
    let room = classroom(app, 6).await;
    let attended = |enrollment: &str| {
        event(
            enrollment,
            &room.lecture,
            Verb::Attended,
            None,
            Source::Trainer,
            5,
        )
    };

    let unary_events: Vec<pb::ProgressEvent> = room
        .learners
        .iter()
        .map(|(_, enrollment)| attended(enrollment))
        .collect();
    let unary = unary_events
        .iter()
        .map(|event| event.event_id.clone())
        .collect();
    let mut calls = Vec::new();
    for event in unary_events {
        let mut client = progress(app);
        let request = app.admin(pb::RecordProgressRequest { event: Some(event) });
        calls.push(tokio::spawn(async move {
            client.record_progress(request).await
        }));
    }
    for call in calls {
        call.await.unwrap().expect("unary call acknowledged");
    }

    let batch_events: Vec<pb::ProgressEvent> = room
        .learners
        .iter()
        .cycle()
        .take(12)
        .map(|(_, enrollment)| attended(enrollment))
        .collect();
    let batch = batch_events
        .iter()
        .map(|event| event.event_id.clone())
        .collect();
    let acks = progress(app)
        .batch_record_progress(app.admin(pb::BatchRecordProgressRequest {
            events: batch_events,
        }))
        .await
        .unwrap()
        .into_inner()
        .acks;
    assert!(acks.iter().all(|ack| ack.error.is_none()), "{acks:?}");

    let stream_events: Vec<pb::ProgressEvent> = room
        .learners
        .iter()
        .cycle()
        .take(30)
        .map(|(_, enrollment)| attended(enrollment))
        .collect();
    let stream: Vec<String> = stream_events
        .iter()
        .map(|event| event.event_id.clone())
        .collect();
    let mut acks = progress(app)
        .stream_progress(app.admin(tokio_stream::iter(stream_events)))
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = 0;
    while let Some(ack) = acks.next().await {
        assert!(ack.expect("ack").error.is_none());
        acknowledged += 1;
    }
    assert_eq!(acknowledged, stream.len());
    Recorded {
        unary,
        batch,
        stream,
    }
}

/// Asserts that verification fails on the progress log alone, naming `event_id` (empty for a
/// problem of an anchor) and `problem`; returns the response.
async fn assert_progress_problem(
    app: &TestApp,
    problem: Problem,
    event_id: &str,
) -> pb::VerifyAuditChainResponse {
    let report = verify(app).await;
    assert!(!report.valid, "{report:?}");
    assert_eq!(
        report.first_broken_sequence, 0,
        "the chain itself holds: {report:?}"
    );
    assert_eq!(report.progress_problem_kind(), problem, "{report:?}");
    assert_eq!(report.first_bad_progress_event_id, event_id, "{report:?}");
    assert!(!report.progress_problem.is_empty(), "{report:?}");
    report
}

async fn assert_valid(app: &TestApp, events: i64) {
    let report = verify(app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.progress_events_checked, events, "{report:?}");
    assert_eq!(report.progress_problem_kind(), Problem::Unspecified);
    assert!(report.first_bad_progress_event_id.is_empty());
}

/// Returns the event ids listed in the manifest of the anchor of audit entry `sequence`.
async fn manifest_event_ids(direct: &DatabaseConnection, sequence: i64) -> Vec<String> {
    let row = direct
        .query_one_raw(sea_orm::Statement::from_string(
            direct.get_database_backend(),
            format!("SELECT manifest FROM progress_anchors WHERE sequence = {sequence}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let manifest: String = row.try_get("", "manifest").unwrap();
    serde_json::from_str::<Vec<(String, String)>>(&manifest)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

async fn execute(direct: &DatabaseConnection, sql: &str) {
    direct.execute_unprepared(sql).await.unwrap();
}

#[tokio::test]
async fn progress_recorded_every_way_is_anchored_once_per_transaction() {
    let (app, database) = spawn_app().await;
    let recorded = record_every_way(&app).await;

    let report = verify(&app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.progress_events_checked, recorded.total());
    let batches = progress_batches(&app).await;
    assert_eq!(report.progress_anchors_checked, batches.len() as i64);
    // One anchor per transaction, not per event: the batch is one, the stream a few chunks,
    // the unary calls one to six group transactions.
    assert!(
        (3..=6 + 1 + 30).contains(&batches.len()) && (batches.len() as i64) < recorded.total(),
        "{} anchors for {} events",
        batches.len(),
        recorded.total()
    );
    let actions: std::collections::HashSet<&str> =
        batches.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        ["progress.group_commit", "progress.call"]
            .into_iter()
            .collect()
    );
    assert!(batches.iter().all(|entry| entry.actor == "admin-1"));
    assert!(batches.iter().all(|entry| entry.change_digest.len() == 64));

    // Each event's anchor names its write path: stream chunks join the group commit of the
    // unary calls; a batch call is a transaction of its own.
    let direct = database.connect().await;
    let mut path_of_event = std::collections::HashMap::new();
    for entry in &batches {
        for event_id in manifest_event_ids(&direct, entry.sequence).await {
            path_of_event.insert(event_id, entry.action.clone());
        }
    }
    for (events, path) in [
        (&recorded.unary, "progress.group_commit"),
        (&recorded.stream, "progress.group_commit"),
        (&recorded.batch, "progress.call"),
    ] {
        for event_id in events {
            assert_eq!(
                path_of_event.get(event_id).map(String::as_str),
                Some(path),
                "event {event_id}"
            );
        }
    }
}

#[tokio::test]
async fn an_edited_deleted_or_inserted_progress_event_is_named() {
    let (app, database) = spawn_app().await;
    let recorded = record_every_way(&app).await;
    let total = recorded.total();
    assert_valid(&app, total).await;
    let direct = database.connect().await;

    // An edited number, then an edited text: the event is named; putting it back restores it.
    let edited = &recorded.batch[3];
    execute(
        &direct,
        &format!(
            "UPDATE progress_events SET duration_seconds = duration_seconds + 1 WHERE event_id = '{edited}'"
        ),
    )
    .await;
    assert_progress_problem(&app, Problem::EventEdited, edited).await;
    execute(
        &direct,
        &format!(
            "UPDATE progress_events SET duration_seconds = duration_seconds - 1 WHERE event_id = '{edited}'"
        ),
    )
    .await;
    assert_valid(&app, total).await;
    let edited = &recorded.unary[2];
    execute(
        &direct,
        &format!("UPDATE progress_events SET evidence_note = 'seen' WHERE event_id = '{edited}'"),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::EventEdited, edited).await;
    assert_ne!(report.progress_anchor_sequence, 0);
    execute(
        &direct,
        &format!("UPDATE progress_events SET evidence_note = NULL WHERE event_id = '{edited}'"),
    )
    .await;
    assert_valid(&app, total).await;

    // A deleted event is named with its anchor.
    let deleted = &recorded.stream[17];
    execute(
        &direct,
        &format!(
            "CREATE TABLE saved_event AS SELECT * FROM progress_events WHERE event_id = '{deleted}'"
        ),
    )
    .await;
    execute(
        &direct,
        &format!("DELETE FROM progress_events WHERE event_id = '{deleted}'"),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::EventDeleted, deleted).await;
    assert_ne!(report.progress_anchor_sequence, 0);
    execute(
        &direct,
        "INSERT INTO progress_events SELECT * FROM saved_event",
    )
    .await;
    assert_valid(&app, total).await;

    // A recorded_time moved later, into another transaction's time: an edit of that event.
    let moved = &recorded.unary[1];
    let later = recorded.stream.last().expect("streamed events");
    execute(
        &direct,
        &format!(
            "CREATE TABLE moved_event AS SELECT * FROM progress_events WHERE event_id = '{moved}'"
        ),
    )
    .await;
    execute(
        &direct,
        &format!(
            "UPDATE progress_events SET recorded_time = \
             (SELECT recorded_time FROM progress_events WHERE event_id = '{later}') \
             WHERE event_id = '{moved}'"
        ),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::EventEdited, moved).await;
    assert!(
        report.progress_problem.contains("recorded_time"),
        "{report:?}"
    );
    execute(
        &direct,
        &format!(
            "UPDATE progress_events SET recorded_time = (SELECT recorded_time FROM moved_event) \
             WHERE event_id = '{moved}'"
        ),
    )
    .await;
    assert_valid(&app, total).await;

    // A row inserted behind the service's back, a copy of a real one at the same recorded time.
    let forged = uuid::Uuid::new_v4().to_string();
    let original = &recorded.unary[0];
    execute(
        &direct,
        &format!(
            "INSERT INTO progress_events (event_id, enrollment_id, activity_id, verb, score, \
             duration_seconds, occurred_time, source, evidence_uri, evidence_note, provenance_note, \
             actor, payload_hash, recorded_time, ack_activity_state, ack_percent_complete, \
             ack_enrollment_state) SELECT '{forged}', enrollment_id, activity_id, verb, score, \
             duration_seconds, occurred_time, source, evidence_uri, evidence_note, provenance_note, \
             actor, payload_hash, recorded_time, ack_activity_state, ack_percent_complete, \
             ack_enrollment_state FROM progress_events WHERE event_id = '{original}'"
        ),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::EventUnanchored, &forged).await;
    assert_eq!(report.progress_anchor_sequence, 0, "no anchor lists it");
    execute(
        &direct,
        &format!("DELETE FROM progress_events WHERE event_id = '{forged}'"),
    )
    .await;
    assert_valid(&app, total).await;

    // An anchor row edited to match an edit: the anchor no longer matches its chain entry.
    let batches = progress_batches(&app).await;
    let anchor = batches.last().expect("an anchor");
    execute(
        &direct,
        &format!(
            "UPDATE progress_anchors SET event_count = event_count + 1 WHERE sequence = {}",
            anchor.sequence
        ),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::AnchorTampered, "").await;
    assert_eq!(report.progress_anchor_sequence, anchor.sequence);
    execute(
        &direct,
        &format!(
            "UPDATE progress_anchors SET event_count = event_count - 1 WHERE sequence = {}",
            anchor.sequence
        ),
    )
    .await;
    assert_valid(&app, total).await;

    // A whole transaction's events deleted with their anchor row: the chain entry stays and
    // says so.
    for event_id in manifest_event_ids(&direct, anchor.sequence).await {
        execute(
            &direct,
            &format!("DELETE FROM progress_events WHERE event_id = '{event_id}'"),
        )
        .await;
    }
    execute(
        &direct,
        &format!(
            "DELETE FROM progress_anchors WHERE sequence = {}",
            anchor.sequence
        ),
    )
    .await;
    let report = assert_progress_problem(&app, Problem::AnchorMissing, "").await;
    assert_eq!(report.progress_anchor_sequence, anchor.sequence);
}

#[tokio::test]
async fn events_stored_before_anchoring_are_anchored_by_the_migration() {
    let database = TestDatabase::fresh().await;
    let direct = database.connect().await;
    let position = migration::Migrator::migrations()
        .iter()
        .position(|migration| migration.name() == ANCHORS_MIGRATION)
        .expect("the anchors migration is listed");
    migration::Migrator::up(&direct, Some(position as u32))
        .await
        .unwrap();

    // A database of the version before: two chained audit entries and 10,050 progress events,
    // seven per recorded time, so the first genesis anchor (10,000 events) ends inside a time.
    let context = AuditContext {
        actor: "admin-1".to_owned(),
        action: "lms.v1.OrganizationService/CreateOrganization".to_owned(),
        request_id: None,
    };
    let mut previous = String::new();
    for sequence in 1..=2 {
        let entry = AuditEntry::chain(
            sequence,
            &previous,
            &context,
            AuditChange::new(
                "organization",
                &format!("org-{sequence}"),
                &serde_json::json!({}),
            ),
            lms::domain::now(),
        );
        previous.clone_from(&entry.hash);
        audit_entries::Entity::insert(audit_entries::ActiveModel {
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
        })
        .exec(&direct)
        .await
        .unwrap();
    }
    audit_head::Entity::update(audit_head::ActiveModel {
        id: Set(1),
        sequence: Set(2),
        hash: Set(previous.clone()),
    })
    .exec(&direct)
    .await
    .unwrap();
    let base = lms::domain::now() - chrono::TimeDelta::days(1);
    let legacy: Vec<progress_events::ActiveModel> = (0..10_050i64)
        .map(|number| {
            let recorded = base + chrono::TimeDelta::microseconds(1_000 * (number / 7) + 7);
            progress_events::ActiveModel {
                event_id: Set(uuid::Uuid::new_v4().to_string()),
                enrollment_id: Set(uuid::Uuid::new_v4().to_string()),
                activity_id: Set(uuid::Uuid::new_v4().to_string()),
                verb: Set(if number % 2 == 0 {
                    "ATTENDED"
                } else {
                    "PASSED"
                }
                .to_owned()),
                score: Set((number % 2 == 1).then_some(70 + (number % 30) as i32)),
                duration_seconds: Set(number),
                occurred_time: Set(recorded - chrono::TimeDelta::minutes(5)),
                source: Set("TRAINER".to_owned()),
                evidence_uri: Set(None),
                evidence_note: Set((number % 3 == 0).then(|| format!("legacy note {number}"))),
                provenance_note: Set(None),
                actor: Set("trainer-1".to_owned()),
                payload_hash: Set(format!("{number:064x}")),
                recorded_time: Set(recorded),
                ack_activity_state: Set("COMPLETED".to_owned()),
                ack_percent_complete: Set(number as f64 / 3.0),
                ack_enrollment_state: Set("IN_PROGRESS".to_owned()),
            }
        })
        .collect();
    let ids: Vec<String> = legacy
        .iter()
        .map(|event| event.event_id.clone().unwrap())
        .collect();
    for chunk in legacy.chunks(200) {
        progress_events::Entity::insert_many(chunk.to_vec())
            .exec(&direct)
            .await
            .unwrap();
    }

    // The server migrates on start: the genesis anchors go on the chain after its entries.
    let app = spawn_app_on(&database).await;
    let report = verify(&app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries_checked, 4);
    assert_eq!(report.progress_events_checked, 10_050);
    assert_eq!(report.progress_anchors_checked, 2);
    let genesis = progress_batches(&app).await;
    assert_eq!(
        genesis
            .iter()
            .map(|entry| (entry.sequence, entry.actor.as_str()))
            .collect::<Vec<_>>(),
        [(3, "lms-migrate"), (4, "lms-migrate")]
    );
    assert_eq!(genesis[0].previous_hash, previous);

    // Old events are tamper-evident from now on, on either side of the anchors' boundary.
    for event_id in [&ids[9_999], &ids[10_000], &ids[42]] {
        execute(
            &direct,
            &format!("UPDATE progress_events SET actor = 'mallory' WHERE event_id = '{event_id}'"),
        )
        .await;
        assert_progress_problem(&app, Problem::EventEdited, event_id).await;
        execute(
            &direct,
            &format!(
                "UPDATE progress_events SET actor = 'trainer-1' WHERE event_id = '{event_id}'"
            ),
        )
        .await;
    }
    assert_valid(&app, 10_050).await;
    let gone = progress_events::Entity::delete_many()
        .filter(progress_events::Column::EventId.eq(ids[10_049].as_str()))
        .exec(&direct)
        .await
        .unwrap();
    assert_eq!(gone.rows_affected, 1);
    assert_progress_problem(&app, Problem::EventDeleted, &ids[10_049]).await;
}
