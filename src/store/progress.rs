//! Progress: recording events exactly once, keeping derived state current in the same
//! transaction, reading it back, recomputing it from the log, and paging the log for export.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, EntityTrait as _, FromQueryResult,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
    sea_query::{Alias, Expr, ExprTrait as _, JoinType, OnConflict, Order, Query},
};

use super::entity::programme::enrollments;
use super::entity::progress::{activity_progress, enrollment_progress, progress_events};
use super::programme::{enrollment_active, enrollment_from, for_update};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::course::CompletionRule;
use crate::domain::event::NewEvent;
use crate::domain::page::Page;
use crate::domain::person::RecordError;
use crate::domain::programme::{Enrollment, EnrollmentState, Visibility};
use crate::domain::progress::{
    ActivityState, ActivityTally, EventFacts, EventInput, ProgressView, Source, Verb,
    check_against_rule, derive, find_activity,
};
use crate::error::{Error, Reason, Result};

/// Rows per multi-row insert of events (17 columns each).
const EVENT_INSERT_BATCH: usize = 200;

/// Completion rules of published (immutable) course versions, cached for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct RuleCache(Arc<RwLock<HashMap<String, Arc<CompletionRule>>>>);

#[derive(Debug, FromQueryResult)]
struct RuleRow {
    id: String,
    completion_rule: Option<String>,
}

impl RuleCache {
    /// Returns the rules of `version_ids`, loading the ones not cached yet.
    async fn get(
        &self,
        connection: &impl ConnectionTrait,
        version_ids: &HashSet<String>,
    ) -> Result<HashMap<String, Arc<CompletionRule>>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self
                .0
                .read()
                .map_err(|_| Error::internal("rule cache poisoned"))?;
            for id in version_ids {
                match cache.get(id) {
                    Some(rule) => {
                        found.insert(id.clone(), rule.clone());
                    }
                    None => missing.push(id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let query = Query::select()
            .columns([Alias::new("id"), Alias::new("completion_rule")])
            .from(Alias::new("course_versions"))
            .and_where(Expr::col(Alias::new("id")).is_in(missing))
            .and_where(Expr::col(Alias::new("state")).eq("PUBLISHED"))
            .to_owned();
        let rows = RuleRow::find_by_statement(connection.get_database_backend().build(&query))
            .all(connection)
            .await
            .map_err(db_error)?;
        let mut cache = self
            .0
            .write()
            .map_err(|_| Error::internal("rule cache poisoned"))?;
        for row in rows {
            let Some(text) = row.completion_rule else {
                continue;
            };
            let rule: CompletionRule = serde_json::from_str(&text).map_err(|error| {
                Error::internal(format!("stored completion rule is not JSON: {error}"))
            })?;
            let rule = Arc::new(rule);
            cache.insert(row.id.clone(), rule.clone());
            found.insert(row.id, rule);
        }
        Ok(found)
    }
}

/// Who records events, which decides the sources they may record. Which enrolments they may
/// record on is checked before, by the API (`auth::scope`, `Object::Progress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorder {
    /// A learner (or anyone recording on their own enrolment only): APP events.
    Learner,
    /// A trainer, assessor, manager or admin: any source.
    Staff,
    /// An HR system: IMPORT events only.
    Importer,
}

impl Recorder {
    fn check(&self, source: Source) -> std::result::Result<(), (&'static str, Reason, String)> {
        match self {
            Self::Learner if source != Source::App => Err((
                "source",
                Reason::PermissionDenied,
                "learners record APP events only".to_owned(),
            )),
            Self::Importer if source != Source::Import => Err((
                "source",
                Reason::PermissionDenied,
                "HR services record IMPORT events only".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// The answer to one accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The activity's state right after.
    pub activity_state: ActivityState,
    /// The enrolment's percent complete right after.
    pub percent_complete: f64,
    /// The enrolment's state right after.
    pub enrollment_state: EnrollmentState,
    /// When the event was committed.
    pub recorded_time: DateTime<Utc>,
}

/// One event of a call, validated or not: its position and content.
pub type EventRecord = std::result::Result<EventInput, RecordError>;

fn event_error(
    index: usize,
    event_id: &str,
    field: &str,
    reason: Reason,
    message: String,
) -> RecordError {
    RecordError {
        index: index as i64,
        key: event_id.to_owned(),
        field: field.to_owned(),
        reason: reason.as_str().to_owned(),
        message,
    }
}

fn tally_from(model: &activity_progress::Model) -> ActivityTally {
    ActivityTally {
        events: model.events,
        best_score: model.best_score,
        attempts: model.attempts,
        time_spent_seconds: model.time_spent_seconds,
        completed_time: model.completed_time,
        last_event_time: model.last_event_time,
    }
}

fn tally_active(
    enrollment_id: &str,
    activity_id: &str,
    tally: &ActivityTally,
) -> activity_progress::ActiveModel {
    activity_progress::ActiveModel {
        enrollment_id: Set(enrollment_id.to_owned()),
        activity_id: Set(activity_id.to_owned()),
        events: Set(tally.events),
        best_score: Set(tally.best_score),
        attempts: Set(tally.attempts),
        time_spent_seconds: Set(tally.time_spent_seconds),
        completed_time: Set(tally.completed_time),
        last_event_time: Set(tally.last_event_time),
    }
}

fn facts_from(model: &progress_events::Model) -> Result<EventFacts> {
    Ok(EventFacts {
        verb: Verb::parse(&model.verb).ok_or_else(|| Error::internal("stored verb is unknown"))?,
        score: model.score,
        duration_seconds: model.duration_seconds,
        occurred_time: model.occurred_time,
        source: Source::parse(&model.source)
            .ok_or_else(|| Error::internal("stored source is unknown"))?,
    })
}

/// An enrolment with what its progress derives from, loaded (and locked) for a write.
struct Ledger {
    enrollment: Enrollment,
    rules: Vec<(String, Arc<CompletionRule>)>,
    tallies: HashMap<String, ActivityTally>,
    touched: HashSet<String>,
    before: ProgressView,
}

impl Ledger {
    fn view(&self) -> ProgressView {
        let rules: Vec<(String, &CompletionRule)> = self
            .rules
            .iter()
            .map(|(id, rule)| (id.clone(), rule.as_ref()))
            .collect();
        derive(&rules, &self.tallies)
    }
}

async fn load_ledgers(
    transaction: &impl ConnectionTrait,
    rule_cache: &RuleCache,
    models: Vec<enrollments::Model>,
) -> Result<HashMap<String, Ledger>> {
    let ids: Vec<String> = models.iter().map(|model| model.id.clone()).collect();
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        activity_progress::Entity::find()
            .filter(activity_progress::Column::EnrollmentId.is_in(ids))
            .all(transaction)
            .await
            .map_err(db_error)?
    };
    assemble_ledgers(transaction, rule_cache, models, rows).await
}

/// Builds the ledgers of `models` from their tally rows and their pinned versions' rules.
async fn assemble_ledgers(
    connection: &impl ConnectionTrait,
    rule_cache: &RuleCache,
    models: Vec<enrollments::Model>,
    rows: Vec<activity_progress::Model>,
) -> Result<HashMap<String, Ledger>> {
    let enrollments = models
        .into_iter()
        .map(enrollment_from)
        .collect::<Result<Vec<_>>>()?;
    let version_ids: HashSet<String> = enrollments
        .iter()
        .flat_map(|e| e.course_version_ids.iter().cloned())
        .collect();
    let rules = rule_cache.get(connection, &version_ids).await?;
    let mut tallies: HashMap<String, HashMap<String, ActivityTally>> = HashMap::new();
    for row in rows {
        tallies
            .entry(row.enrollment_id.clone())
            .or_default()
            .insert(row.activity_id.clone(), tally_from(&row));
    }
    let mut ledgers = HashMap::new();
    for enrollment in enrollments {
        let pinned = enrollment
            .course_version_ids
            .iter()
            .filter_map(|id| rules.get(id).map(|rule| (id.clone(), rule.clone())))
            .collect();
        let mut ledger = Ledger {
            tallies: tallies.remove(&enrollment.id).unwrap_or_default(),
            rules: pinned,
            enrollment,
            touched: HashSet::new(),
            before: derive(&[], &HashMap::new()),
        };
        ledger.before = ledger.view();
        ledgers.insert(ledger.enrollment.id.clone(), ledger);
    }
    Ok(ledgers)
}

/// Writes what changed in `ledgers`: activity tallies, enrolment summaries, enrolment states and outbox events.
async fn save_ledgers(
    transaction: &DatabaseTransaction,
    ledgers: &mut HashMap<String, Ledger>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tally_rows = Vec::new();
    let mut summary_rows = Vec::new();
    let mut outbox = Vec::new();
    let mut moves = Vec::new();
    let mut course_completions: Vec<(Enrollment, String)> = Vec::new();
    let mut course_moves = Vec::new();
    let mut enrollment_rows = Vec::new();
    for ledger in ledgers
        .values_mut()
        .filter(|ledger| !ledger.touched.is_empty())
    {
        super::progress_cache::touch(&ledger.enrollment.id, &ledger.enrollment.cohort_id);
        for activity_id in &ledger.touched {
            if let Some(tally) = ledger.tallies.get(activity_id) {
                tally_rows.push(tally_active(&ledger.enrollment.id, activity_id, tally));
            }
        }
        let after = ledger.view();
        summary_rows.push(enrollment_progress::ActiveModel {
            enrollment_id: Set(ledger.enrollment.id.clone()),
            percent_complete: Set(after.percent_complete),
            event_count: Set(after.event_count),
            last_event_time: Set(after.last_event_time),
            update_time: Set(now),
        });
        outbox.extend(completions(&ledger.enrollment, &ledger.before, &after));
        course_moves.extend(super::report::course_moves(
            &ledger.enrollment,
            &ledger.before,
            &after,
        ));
        for (course_after, course_before) in after.courses.iter().zip(&ledger.before.courses) {
            if course_after.completed && !course_before.completed {
                course_completions.push((
                    ledger.enrollment.clone(),
                    course_after.course_version_id.clone(),
                ));
            }
        }
        let enrollment = &mut ledger.enrollment;
        let before = enrollment.clone();
        let state = if after.completed {
            EnrollmentState::Completed
        } else if enrollment.state == EnrollmentState::Enrolled && after.event_count > 0 {
            EnrollmentState::InProgress
        } else {
            enrollment.state
        };
        if state != enrollment.state
            || (after.completed && enrollment.completed_time != after.completed_time)
        {
            enrollment.state = state;
            enrollment.completed_time = if after.completed {
                after.completed_time
            } else {
                None
            };
            enrollment.revision += 1;
            enrollment.update_time = now;
            enrollment_rows.push(enrollment_active(enrollment));
            moves.push((Some(before), enrollment.clone()));
        }
        ledger.before = after;
        ledger.touched.clear();
    }
    for chunk in tally_rows.chunks(500) {
        activity_progress::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    activity_progress::Column::EnrollmentId,
                    activity_progress::Column::ActivityId,
                ])
                .update_columns([
                    activity_progress::Column::Events,
                    activity_progress::Column::BestScore,
                    activity_progress::Column::Attempts,
                    activity_progress::Column::TimeSpentSeconds,
                    activity_progress::Column::CompletedTime,
                    activity_progress::Column::LastEventTime,
                ])
                .to_owned(),
            )
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    for chunk in summary_rows.chunks(500) {
        enrollment_progress::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(enrollment_progress::Column::EnrollmentId)
                    .update_columns([
                        enrollment_progress::Column::PercentComplete,
                        enrollment_progress::Column::EventCount,
                        enrollment_progress::Column::LastEventTime,
                        enrollment_progress::Column::UpdateTime,
                    ])
                    .to_owned(),
            )
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    // Enrolments whose state moved, one statement per chunk: every row exists and is locked by
    // this transaction, so the insert always takes the conflict branch and updates in place.
    for chunk in enrollment_rows.chunks(500) {
        enrollments::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(enrollments::Column::Id)
                    .update_columns([
                        enrollments::Column::State,
                        enrollments::Column::CompletedTime,
                        enrollments::Column::Revision,
                        enrollments::Column::UpdateTime,
                    ])
                    .to_owned(),
            )
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    super::report::record_moves(transaction, &moves).await?;
    let completed: Vec<(&Enrollment, String)> = course_completions
        .iter()
        .map(|(enrollment, version)| (enrollment, version.clone()))
        .collect();
    super::report::record_course_completions(transaction, &completed).await?;
    super::competency::record_course_completions(transaction, &completed).await?;
    super::report::record_course_moves(transaction, &course_moves).await?;
    if !outbox.is_empty() {
        let person_ids: Vec<String> = outbox
            .iter()
            .filter_map(|event| event.person_id.clone())
            .collect();
        let paths = super::person::organization_paths_of_people(transaction, person_ids).await?;
        for event in &mut outbox {
            event.organization_path = event
                .person_id
                .as_ref()
                .and_then(|id| paths.get(id).cloned());
        }
        super::event::append(transaction, outbox).await?;
    }
    Ok(())
}

/// Returns outbox events for every module, course and programme completed between `before` and `after`.
fn completions(
    enrollment: &Enrollment,
    before: &ProgressView,
    after: &ProgressView,
) -> Vec<NewEvent> {
    let event = |event_type: &'static str, payload: serde_json::Value| NewEvent {
        event_type,
        subject_id: enrollment.id.clone(),
        person_id: Some(enrollment.person_id.clone()),
        organization_path: None,
        payload,
    };
    let mut events = Vec::new();
    for (course_after, course_before) in after.courses.iter().zip(&before.courses) {
        for (module_after, module_before) in course_after.modules.iter().zip(&course_before.modules)
        {
            if module_after.completed && !module_before.completed {
                events.push(event(
                    "module.completed",
                    serde_json::json!({"enrollment_id": enrollment.id, "person_id": enrollment.person_id,
                        "course_version_id": course_after.course_version_id, "module_id": module_after.module_id}),
                ));
            }
        }
        if course_after.completed && !course_before.completed {
            events.push(event(
                "course.completed",
                serde_json::json!({"enrollment_id": enrollment.id, "person_id": enrollment.person_id,
                    "course_version_id": course_after.course_version_id}),
            ));
        }
    }
    if after.completed && !before.completed {
        events.push(event(
            "programme.completed",
            serde_json::json!({"enrollment_id": enrollment.id, "person_id": enrollment.person_id,
                "cohort_id": enrollment.cohort_id, "programme_id": enrollment.programme_id,
                "completed_time": after.completed_time.map(|time| time.to_rfc3339())}),
        ));
    }
    events
}

/// Records `events` inside the caller's transaction (attendance records ATTENDED events this way,
/// in the same transaction as the marks); each gets an ack or its own error.
pub(crate) async fn record_in_caller_transaction(
    transaction: &DatabaseTransaction,
    store: &Store,
    actor: &str,
    recorder: &Recorder,
    events: Vec<EventRecord>,
) -> Result<Vec<std::result::Result<Ack, RecordError>>> {
    let call = Call {
        actor: actor.to_owned(),
        recorder: recorder.clone(),
        events,
    };
    let mut answers = record_in_transaction(
        transaction,
        &store.rules,
        &[call],
        audit::ProgressWrite::WithinChange,
    )
    .await?;
    Ok(answers.pop().unwrap_or_default())
}

/// The events of one call, with who sent them.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    actor: String,
    recorder: Recorder,
    events: Vec<EventRecord>,
}

/// The answers of one call, one per event in its order.
type Answers = Vec<std::result::Result<Ack, RecordError>>;

/// Records the events of `calls` in `transaction` (one call, or a group of unary calls committed
/// together, as `write` says) and anchors them in the audit chain; returns each call's answers
/// in its own order.
async fn record_in_transaction(
    transaction: &DatabaseTransaction,
    rule_cache: &RuleCache,
    calls: &[Call],
    write: audit::ProgressWrite,
) -> Result<Vec<Answers>> {
    let now = crate::domain::now();
    let mut enrollment_ids: Vec<String> = calls
        .iter()
        .flat_map(|call| &call.events)
        .filter_map(|event| event.as_ref().ok().map(|event| event.enrollment_id.clone()))
        .collect();
    enrollment_ids.sort();
    enrollment_ids.dedup();
    // Locks the enrolments in id order: writers of one learner's progress queue, never deadlock.
    let models = if enrollment_ids.is_empty() {
        Vec::new()
    } else {
        for_update(
            enrollments::Entity::find()
                .filter(enrollments::Column::Id.is_in(enrollment_ids))
                .order_by_asc(enrollments::Column::Id),
            transaction,
        )
        .all(transaction)
        .await
        .map_err(db_error)?
    };
    let mut ledgers = load_ledgers(transaction, rule_cache, models).await?;

    let event_ids: Vec<String> = calls
        .iter()
        .flat_map(|call| &call.events)
        .filter_map(|event| event.as_ref().ok().map(|e| e.event_id.clone()))
        .collect();
    let mut stored: HashMap<String, progress_events::Model> = HashMap::new();
    for chunk in event_ids.chunks(1000) {
        for row in progress_events::Entity::find()
            .filter(progress_events::Column::EventId.is_in(chunk.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            stored.insert(row.event_id.clone(), row);
        }
    }

    let mut all_answers = Vec::with_capacity(calls.len());
    let mut inserts: Vec<progress_events::ActiveModel> = Vec::new();
    for Call {
        actor,
        recorder,
        events,
    } in calls
    {
        let mut answers = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    answers.push(Err(error.clone()));
                    continue;
                }
            };
            let hash = event.payload_hash();
            if let Some(previous) = stored.get(&event.event_id) {
                answers.push(if previous.payload_hash == hash {
                    Ok(Ack {
                        activity_state: ActivityState::parse(&previous.ack_activity_state)
                            .unwrap_or(ActivityState::InProgress),
                        percent_complete: previous.ack_percent_complete,
                        enrollment_state: EnrollmentState::parse(&previous.ack_enrollment_state)
                            .unwrap_or(EnrollmentState::Enrolled),
                        recorded_time: previous.recorded_time,
                    })
                } else {
                    Err(event_error(
                        index,
                        &event.event_id,
                        "event_id",
                        Reason::EventIdReused,
                        "this event_id was recorded before with other content".to_owned(),
                    ))
                });
                continue;
            }
            let Some(ledger) = ledgers.get_mut(&event.enrollment_id) else {
                answers.push(Err(event_error(
                    index,
                    &event.event_id,
                    "enrollment_id",
                    Reason::EnrollmentNotFound,
                    format!("enrollment {} not found", event.enrollment_id),
                )));
                continue;
            };
            if let Err((field, reason, message)) = recorder.check(event.facts.source) {
                answers.push(Err(event_error(
                    index,
                    &event.event_id,
                    field,
                    reason,
                    message,
                )));
                continue;
            }
            if matches!(
                ledger.enrollment.state,
                EnrollmentState::Withdrawn | EnrollmentState::Waitlisted
            ) {
                answers.push(Err(event_error(
                    index,
                    &event.event_id,
                    "enrollment_id",
                    Reason::EnrollmentNotActive,
                    format!(
                        "enrolment {} is {}; it takes no progress",
                        ledger.enrollment.id,
                        ledger.enrollment.state.as_str()
                    ),
                )));
                continue;
            }
            let rules: Vec<(String, &CompletionRule)> = ledger
                .rules
                .iter()
                .map(|(id, rule)| (id.clone(), rule.as_ref()))
                .collect();
            let Some(activity_rule) = find_activity(&rules, &event.activity_id).cloned() else {
                answers.push(Err(event_error(
                    index,
                    &event.event_id,
                    "activity_id",
                    Reason::ActivityNotInEnrollment,
                    "the activity is not part of the course versions this enrolment pinned"
                        .to_owned(),
                )));
                continue;
            };
            if let Err((field, message)) = check_against_rule(&event.facts, &activity_rule)
                .and_then(|()| {
                    crate::domain::placement::check_sign_off_evidence(
                        &event.facts,
                        &activity_rule,
                        event.evidence_uri.is_some(),
                    )
                })
            {
                answers.push(Err(event_error(
                    index,
                    &event.event_id,
                    field,
                    Reason::InvalidField,
                    format!("{field} {message}"),
                )));
                continue;
            }
            let tally = ledger.tallies.entry(event.activity_id.clone()).or_default();
            tally.fold(&activity_rule, &event.facts);
            let activity_state = tally.state();
            ledger.touched.insert(event.activity_id.clone());
            let view = ledger.view();
            let enrollment_state = if view.completed {
                EnrollmentState::Completed
            } else if ledger.enrollment.state == EnrollmentState::Enrolled {
                EnrollmentState::InProgress
            } else {
                ledger.enrollment.state
            };
            let ack = Ack {
                activity_state,
                percent_complete: view.percent_complete,
                enrollment_state,
                recorded_time: now,
            };
            inserts.push(progress_events::ActiveModel {
                event_id: Set(event.event_id.clone()),
                enrollment_id: Set(event.enrollment_id.clone()),
                activity_id: Set(event.activity_id.clone()),
                verb: Set(event.facts.verb.as_str().to_owned()),
                score: Set(event.facts.score),
                duration_seconds: Set(event.facts.duration_seconds),
                occurred_time: Set(event.facts.occurred_time),
                source: Set(event.facts.source.as_str().to_owned()),
                evidence_uri: Set(event.evidence_uri.clone()),
                evidence_note: Set(event.evidence_note.clone()),
                provenance_note: Set(event.provenance_note.clone()),
                actor: Set(actor.clone()),
                payload_hash: Set(hash.clone()),
                recorded_time: Set(now),
                ack_activity_state: Set(activity_state.as_str().to_owned()),
                ack_percent_complete: Set(ack.percent_complete),
                ack_enrollment_state: Set(enrollment_state.as_str().to_owned()),
            });
            // A later copy of this event in the same call is a replay of this one.
            stored.insert(
                event.event_id.clone(),
                progress_events::Model {
                    event_id: event.event_id.clone(),
                    enrollment_id: event.enrollment_id.clone(),
                    activity_id: event.activity_id.clone(),
                    verb: event.facts.verb.as_str().to_owned(),
                    score: event.facts.score,
                    duration_seconds: event.facts.duration_seconds,
                    occurred_time: event.facts.occurred_time,
                    source: event.facts.source.as_str().to_owned(),
                    evidence_uri: None,
                    evidence_note: None,
                    provenance_note: None,
                    actor: actor.clone(),
                    payload_hash: hash,
                    recorded_time: now,
                    ack_activity_state: activity_state.as_str().to_owned(),
                    ack_percent_complete: ack.percent_complete,
                    ack_enrollment_state: enrollment_state.as_str().to_owned(),
                },
            );
            answers.push(Ok(ack));
        }
        all_answers.push(answers);
    }
    for chunk in inserts.chunks(EVENT_INSERT_BATCH) {
        progress_events::Entity::insert_many(chunk.to_vec()).exec(transaction).await.map_err(|error| {
            if is_unique_violation(&error) {
                Error::Aborted {
                    reason: Reason::ConcurrentEvent,
                    message: "an event of this call was recorded concurrently for another enrolment; retry".to_owned(),
                    metadata: Vec::new(),
                }
            } else {
                db_error(error)
            }
        })?;
    }
    // Before save_ledgers: the audit head is locked before the outbox head, as everywhere.
    audit::anchor_progress(transaction, write, &inserts).await?;
    save_ledgers(transaction, &mut ledgers, now).await?;
    Ok(all_answers)
}

/// Unary calls waiting for a group transaction, and how many groups are being committed.
///
/// Group commit: a call that finds fewer than `max_flushers` groups in flight starts a flusher
/// (a task of its own, so a caller that goes away cannot strand the others); the others queue.
/// Each flusher takes everything queued (up to [`GROUP_EVENTS`] events) into one transaction, so
/// under load many calls share one commit, and a lone call commits at once, with no timer.
#[derive(Debug)]
pub struct GroupCommit {
    state: std::sync::Mutex<GroupState>,
    max_flushers: usize,
}

/// Events per group transaction at most.
const GROUP_EVENTS: usize = 1000;

type Waiter = tokio::sync::oneshot::Sender<Result<Answers>>;

#[derive(Debug, Default)]
struct GroupState {
    queue: std::collections::VecDeque<(Call, Waiter)>,
    flushers: usize,
}

impl GroupCommit {
    /// Returns an empty queue committed by up to `max_flushers` transactions at once.
    pub fn new(max_flushers: usize) -> Self {
        Self {
            state: std::sync::Mutex::default(),
            max_flushers: max_flushers.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // The state is a queue and a count, each updated in one step: usable after a panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `call`; true when the caller must start a flusher.
    fn enqueue(&self, call: Call, waiter: Waiter) -> bool {
        let mut state = self.lock();
        state.queue.push_back((call, waiter));
        if state.flushers < self.max_flushers {
            state.flushers += 1;
            true
        } else {
            false
        }
    }

    /// Takes the next group; `None` (and one flusher fewer) when the queue is empty.
    fn take(&self) -> Option<Vec<(Call, Waiter)>> {
        let mut state = self.lock();
        if state.queue.is_empty() {
            state.flushers -= 1;
            return None;
        }
        let mut group = Vec::new();
        let mut events = 0;
        while let Some((call, _)) = state.queue.front() {
            if !group.is_empty() && events + call.events.len() > GROUP_EVENTS {
                break;
            }
            events += call.events.len();
            group.extend(state.queue.pop_front());
        }
        Some(group)
    }
}

/// Filters of [`Store::list_progress`].
#[derive(Debug, Clone, Default)]
pub struct ProgressFilter {
    /// Only this learner.
    pub person_id: Option<String>,
    /// Only this cohort.
    pub cohort_id: Option<String>,
    /// Only learners whose organisation's path starts with this.
    pub organization_path_prefix: Option<String>,
    /// Only the rows a caller with a limited scope may see; `None` for every row.
    pub visibility: Option<Visibility>,
}

/// Order of [`Store::list_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOrder {
    /// By enrolment id.
    Id,
    /// Most complete first.
    PercentDescending,
    /// Least complete first.
    PercentAscending,
}

/// One row of [`Store::list_progress`].
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct ProgressRow {
    /// Enrolment.
    pub enrollment_id: String,
    /// Learner.
    pub person_id: String,
    /// Cohort.
    pub cohort_id: String,
    /// Enrolment state (stored name).
    pub state: String,
    /// 0-100.
    pub percent_complete: f64,
    /// When completed.
    pub completed_time: Option<DateTime<Utc>>,
    /// Latest event.
    pub last_event_time: Option<DateTime<Utc>>,
}

/// Filters of [`Store::export_events`].
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only this enrolment.
    pub enrollment_id: Option<String>,
    /// Only this cohort.
    pub cohort_id: Option<String>,
    /// Only events recorded at or after.
    pub since_time: Option<DateTime<Utc>>,
}

/// An event of the log with the learner it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// The event.
    pub event: progress_events::Model,
    /// The learner.
    pub person_id: String,
}

impl Store {
    /// Records events; each gets an ack or its own error. Accepted events are committed before this returns.
    pub async fn record_progress(
        &self,
        actor: String,
        recorder: Recorder,
        events: Vec<EventRecord>,
    ) -> Result<Answers> {
        let call = Call {
            actor,
            recorder,
            events,
        };
        let mut answers = self
            .record_calls(Arc::new(vec![call]), audit::ProgressWrite::Call)
            .await?;
        Ok(answers.pop().unwrap_or_default())
    }

    /// Records the events of a unary call in one transaction with the calls that arrive while
    /// earlier ones commit (group commit); answers after that transaction has committed.
    pub async fn record_progress_grouped(
        &self,
        actor: String,
        recorder: Recorder,
        events: Vec<EventRecord>,
    ) -> Result<Answers> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let call = Call {
            actor,
            recorder,
            events,
        };
        if self.group.enqueue(call, answer) {
            tokio::spawn(self.clone().flush_groups());
        }
        let answers = answered
            .await
            .map_err(|_| Error::internal("group commit dropped the call"))??;
        // The group committed in the flusher's task: mark this call's, for its commit position.
        super::replica::mark_written();
        Ok(answers)
    }

    /// Commits queued calls, a group per transaction, until the queue is empty.
    async fn flush_groups(self) {
        while let Some(group) = self.group.take() {
            let (calls, answers): (Vec<Call>, Vec<_>) = group.into_iter().unzip();
            // Shared, not copied: the transaction reads the calls, and only a failed group needs
            // them again.
            let calls = Arc::new(calls);
            self.metrics().group_sizes.observe(calls.len() as f64);
            let started = std::time::Instant::now();
            let committed = self
                .record_calls(calls.clone(), audit::ProgressWrite::GroupCommit)
                .await;
            tracing::debug!(
                calls = calls.len(),
                micros = started.elapsed().as_micros() as u64,
                ok = committed.is_ok(),
                "group commit"
            );
            let results = match committed {
                Ok(results) => results.into_iter().map(Ok).collect(),
                // One call's failure (say an event id taken concurrently) must not fail the
                // others: each call of a failed group is tried again in a transaction of its own.
                Err(error) if calls.len() == 1 => vec![Err(error)],
                Err(_) => {
                    let mut results = Vec::with_capacity(calls.len());
                    for call in calls.iter() {
                        results.push(
                            self.record_calls(
                                Arc::new(vec![call.clone()]),
                                audit::ProgressWrite::GroupCommit,
                            )
                            .await
                            .map(|mut answers| answers.pop().unwrap_or_default()),
                        );
                    }
                    results
                }
            };
            for (answer, result) in answers.into_iter().zip(results) {
                // A caller that went away no longer waits for its answer; its events are committed.
                let _ = answer.send(result);
            }
        }
    }

    async fn record_calls(
        &self,
        calls: Arc<Vec<Call>>,
        write: audit::ProgressWrite,
    ) -> Result<Vec<Answers>> {
        let cache = self.rules.clone();
        self.write(move |transaction| {
            Box::pin(async move { record_in_transaction(transaction, &cache, &calls, write).await })
        })
        .await
    }

    /// Returns an enrolment with its derived progress and the materialised path of the learner's organisation.
    ///
    /// Two queries, sent together: the enrolment joined to its learner's organisation path, and
    /// the enrolment's activity tallies (rules come from the cache).
    pub async fn enrollment_progress(
        &self,
        enrollment_id: &str,
    ) -> Result<(Enrollment, ProgressView, String)> {
        let connection = self.connection();
        let located = async {
            let row = connection
                .query_one_raw(super::statement(
                    connection.get_database_backend(),
                    "SELECT e.*, o.path AS organization_path FROM enrollments e \
                     JOIN people p ON p.id = e.person_id \
                     JOIN organizations o ON o.id = p.organization_id WHERE e.id = $1",
                    [enrollment_id.into()],
                ))
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("enrollment", enrollment_id))?;
            let model = enrollments::Model::from_query_result(&row, "").map_err(db_error)?;
            let path: String = row.try_get("", "organization_path").map_err(db_error)?;
            Ok::<_, Error>((model, path))
        };
        let tallies = activity_progress::Entity::find()
            .filter(activity_progress::Column::EnrollmentId.eq(enrollment_id))
            .all(connection);
        let ((model, path), tallies) =
            tokio::try_join!(located, async { tallies.await.map_err(db_error) })?;
        let mut ledgers = assemble_ledgers(connection, &self.rules, vec![model], tallies).await?;
        let ledger = ledgers
            .remove(enrollment_id)
            .ok_or_else(|| Error::internal("loaded enrolment vanished"))?;
        Ok((ledger.enrollment, ledger.before, path))
    }

    /// Rebuilds an enrolment's derived progress from its event log; returns it.
    pub async fn recompute_progress(
        &self,
        context: AuditContext,
        enrollment_id: String,
    ) -> Result<(Enrollment, ProgressView)> {
        let cache = self.rules.clone();
        self.write(move |transaction| {
            Box::pin(async move {
                let model = for_update(enrollments::Entity::find_by_id(enrollment_id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("enrollment", &enrollment_id))?;
                let mut ledgers = load_ledgers(transaction, &cache, vec![model]).await?;
                let mut ledger = ledgers.remove(&enrollment_id).ok_or_else(|| Error::internal("loaded enrolment vanished"))?;
                super::progress_cache::touch(&enrollment_id, &ledger.enrollment.cohort_id);
                let events = progress_events::Entity::find()
                    .filter(progress_events::Column::EnrollmentId.eq(enrollment_id.as_str()))
                    .order_by_asc(progress_events::Column::RecordedTime)
                    .order_by_asc(progress_events::Column::EventId)
                    .all(transaction)
                    .await
                    .map_err(db_error)?;
                let rules: Vec<(String, &CompletionRule)> = ledger.rules.iter().map(|(id, rule)| (id.clone(), rule.as_ref())).collect();
                let mut rebuilt: HashMap<String, ActivityTally> = HashMap::new();
                for event in &events {
                    if let Some(rule) = find_activity(&rules, &event.activity_id) {
                        rebuilt.entry(event.activity_id.clone()).or_default().fold(rule, &facts_from(event)?);
                    }
                }
                drop(rules);
                activity_progress::Entity::delete_many()
                    .filter(activity_progress::Column::EnrollmentId.eq(enrollment_id.as_str()))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                ledger.touched = rebuilt.keys().cloned().collect();
                ledger.tallies = rebuilt;
                let now = crate::domain::now();
                let mut ledgers = HashMap::from([(enrollment_id.clone(), ledger)]);
                if ledgers.values().all(|ledger| ledger.touched.is_empty()) {
                    enrollment_progress::Entity::delete_many()
                        .filter(enrollment_progress::Column::EnrollmentId.eq(enrollment_id.as_str()))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                }
                save_ledgers(transaction, &mut ledgers, now).await?;
                let ledger = ledgers.remove(&enrollment_id).ok_or_else(|| Error::internal("ledger vanished"))?;
                let change = AuditChange::new(
                    "enrollment_progress",
                    &enrollment_id,
                    &serde_json::json!({"events": events.len(), "percent_complete": ledger.before.percent_complete}),
                );
                audit::append(transaction, &context, vec![change]).await?;
                Ok((ledger.enrollment, ledger.before))
            })
        })
        .await
    }

    /// Lists progress summaries, ordered as asked, after the page's key.
    pub async fn list_progress(
        &self,
        filter: &ProgressFilter,
        order: ProgressOrder,
        page: &Page,
    ) -> Result<(Vec<ProgressRow>, String)> {
        let e = Alias::new("e");
        let p = Alias::new("p");
        let percent = Expr::cust("COALESCE(p.percent_complete, 0.0)");
        let mut query = Query::select();
        query
            .expr_as(
                Expr::col((e.clone(), Alias::new("id"))),
                Alias::new("enrollment_id"),
            )
            .expr_as(
                Expr::col((e.clone(), Alias::new("person_id"))),
                Alias::new("person_id"),
            )
            .expr_as(
                Expr::col((e.clone(), Alias::new("cohort_id"))),
                Alias::new("cohort_id"),
            )
            .expr_as(
                Expr::col((e.clone(), Alias::new("state"))),
                Alias::new("state"),
            )
            .expr_as(percent.clone(), Alias::new("percent_complete"))
            .expr_as(
                Expr::col((e.clone(), Alias::new("completed_time"))),
                Alias::new("completed_time"),
            )
            .expr_as(
                Expr::col((p.clone(), Alias::new("last_event_time"))),
                Alias::new("last_event_time"),
            )
            .from_as(Alias::new("enrollments"), e.clone())
            .join_as(
                JoinType::LeftJoin,
                Alias::new("enrollment_progress"),
                p.clone(),
                Expr::col((p.clone(), Alias::new("enrollment_id")))
                    .equals((e.clone(), Alias::new("id"))),
            );
        if let Some(person_id) = &filter.person_id {
            query.and_where(Expr::col((e.clone(), Alias::new("person_id"))).eq(person_id.as_str()));
        }
        if let Some(cohort_id) = &filter.cohort_id {
            query.and_where(Expr::col((e.clone(), Alias::new("cohort_id"))).eq(cohort_id.as_str()));
        }
        if let Some(prefix) = &filter.organization_path_prefix {
            let subtree = Query::select()
                .expr(Expr::col((Alias::new("pe"), Alias::new("id"))))
                .from_as(Alias::new("people"), Alias::new("pe"))
                .join_as(
                    JoinType::InnerJoin,
                    Alias::new("organizations"),
                    Alias::new("o"),
                    Expr::col((Alias::new("o"), Alias::new("id")))
                        .equals((Alias::new("pe"), Alias::new("organization_id"))),
                )
                .and_where(
                    Expr::col((Alias::new("o"), Alias::new("path")))
                        .like(super::like_prefix(prefix)),
                )
                .to_owned();
            query.and_where(Expr::col((e.clone(), Alias::new("person_id"))).in_subquery(subtree));
        }
        if let Some(visibility) = &filter.visibility {
            query.cond_where(super::programme::visible_rows(
                visibility,
                "e",
                "person_id",
                Some("cohort_id"),
                None,
            ));
        }
        let id = Expr::col((e.clone(), Alias::new("id")));
        match (order, &page.after) {
            (ProgressOrder::Id, Some(after)) => {
                query.and_where(id.clone().gt(after.as_str()));
            }
            (_, Some(after)) => {
                let (key_percent, key_id) = after
                    .split_once('|')
                    .and_then(|(percent, id)| {
                        percent
                            .parse::<f64>()
                            .ok()
                            .map(|percent| (percent, id.to_owned()))
                    })
                    .ok_or_else(|| {
                        Error::invalid("page_token", "is not a token this service issued")
                    })?;
                let beyond = if order == ProgressOrder::PercentDescending {
                    percent.clone().lt(key_percent)
                } else {
                    percent.clone().gt(key_percent)
                };
                query.cond_where(
                    sea_orm::Condition::any().add(beyond).add(
                        sea_orm::Condition::all()
                            .add(percent.clone().eq(key_percent))
                            .add(id.clone().gt(key_id)),
                    ),
                );
            }
            (_, None) => {}
        }
        match order {
            ProgressOrder::Id => {}
            ProgressOrder::PercentDescending => {
                query.order_by_expr(percent.clone(), Order::Desc);
            }
            ProgressOrder::PercentAscending => {
                query.order_by_expr(percent.clone(), Order::Asc);
            }
        }
        query.order_by_expr(id, Order::Asc).limit(page.size + 1);
        let rows =
            ProgressRow::find_by_statement(self.connection().get_database_backend().build(&query))
                .all(&self.reader())
                .await
                .map_err(db_error)?;
        Ok(page.finish(rows, |row| match order {
            ProgressOrder::Id => row.enrollment_id.clone(),
            _ => format!("{}|{}", row.percent_complete, row.enrollment_id),
        }))
    }

    /// Returns up to `limit` logged events after `after` (recorded time, event id), in recording order.
    pub async fn export_events(
        &self,
        filter: &ExportFilter,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<LoggedEvent>> {
        // One reader for the whole call, so its reads agree with each other.
        let reader = self.reader();
        let mut query = progress_events::Entity::find();
        if let Some(enrollment_id) = &filter.enrollment_id {
            query = query.filter(progress_events::Column::EnrollmentId.eq(enrollment_id.as_str()));
        }
        if let Some(cohort_id) = &filter.cohort_id {
            let cohort = Query::select()
                .column(enrollments::Column::Id)
                .from(enrollments::Entity)
                .and_where(enrollments::Column::CohortId.eq(cohort_id.as_str()))
                .to_owned();
            query = query.filter(progress_events::Column::EnrollmentId.in_subquery(cohort));
        }
        if let Some(since) = filter.since_time {
            query = query.filter(progress_events::Column::RecordedTime.gte(since));
        }
        if let Some((time, event_id)) = after {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(progress_events::Column::RecordedTime.gt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(progress_events::Column::RecordedTime.eq(time))
                            .add(progress_events::Column::EventId.gt(event_id)),
                    ),
            );
        }
        let events = query
            .order_by_asc(progress_events::Column::RecordedTime)
            .order_by_asc(progress_events::Column::EventId)
            .limit(limit)
            .all(&reader)
            .await
            .map_err(db_error)?;
        let enrollment_ids: HashSet<String> = events
            .iter()
            .map(|event| event.enrollment_id.clone())
            .collect();
        let people: HashMap<String, String> = if enrollment_ids.is_empty() {
            HashMap::new()
        } else {
            enrollments::Entity::find()
                .filter(enrollments::Column::Id.is_in(enrollment_ids))
                .all(&reader)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|enrollment| (enrollment.id, enrollment.person_id))
                .collect()
        };
        Ok(events
            .into_iter()
            .map(|event| LoggedEvent {
                person_id: people
                    .get(&event.enrollment_id)
                    .cloned()
                    .unwrap_or_default(),
                event,
            })
            .collect())
    }
}
