//! Delivery: sessions with their trainers (checked against the certification rules in the same
//! transaction), attendance that records ATTENDED progress through the progress path, and the
//! cascade edges of delivered sessions.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _,
    FromQueryResult, QueryFilter as _, QueryOrder as _, QuerySelect as _, Statement,
    sea_query::{Expr, ExprTrait as _, Query},
};
use serde_json::json;

use super::certification::{DeliveryFacts, add_cascade_edge, trainer_standings};
use super::entity::catalogue::{course_activities, course_modules, course_versions};
use super::entity::delivery::{session_attendance, session_trainers, training_sessions};
use super::entity::programme::{cohorts, enrollments, programme_phases};
use super::entity::progress::progress_events;
use super::idempotency::{RequestKey, StoredAnswer};
use super::programme::for_update;
use super::progress::{Recorder, record_in_caller_transaction};
use super::{Store, audit, db_error};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::course::{ActivityKind, DeliveryMode};
use crate::domain::delivery::{
    AttendanceStatus, Session, SessionState, Trainers, Window, attendance_event_id, check_trainers,
    counts_attendance,
};
use crate::domain::page::Page;
use crate::domain::programme::EnrollmentState;
use crate::domain::progress::{EventFacts, EventInput, Source, Verb};
use crate::error::{Error, Reason, Result};

/// Key of the advisory locks taken per trainer on PostgreSQL while checking for double bookings.
const TRAINER_LOCK_CLASS: i32 = 72010006;

fn json_list(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

fn session_from(model: training_sessions::Model) -> Result<Session> {
    Ok(Session {
        state: SessionState::parse(&model.state)
            .ok_or_else(|| Error::internal("stored session state is unknown"))?,
        co_trainer_ids: serde_json::from_str(&model.co_trainer_ids).map_err(|error| {
            Error::internal(format!("stored trainer list is not JSON: {error}"))
        })?,
        id: model.id,
        cohort_id: model.cohort_id,
        module_id: model.module_id,
        course_version_id: model.course_version_id,
        start_time: model.start_time,
        end_time: model.end_time,
        location: model.location,
        lead_trainer_id: model.lead_trainer_id,
        cancel_reason: model.cancel_reason,
        delivered_time: model.delivered_time,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn session_active(session: &Session) -> training_sessions::ActiveModel {
    training_sessions::ActiveModel {
        id: Set(session.id.clone()),
        cohort_id: Set(session.cohort_id.clone()),
        module_id: Set(session.module_id.clone()),
        course_version_id: Set(session.course_version_id.clone()),
        start_time: Set(session.start_time),
        end_time: Set(session.end_time),
        location: Set(session.location.clone()),
        lead_trainer_id: Set(session.lead_trainer_id.clone()),
        co_trainer_ids: Set(json_list(&session.co_trainer_ids)),
        state: Set(session.state.as_str().to_owned()),
        cancel_reason: Set(session.cancel_reason.clone()),
        delivered_time: Set(session.delivered_time),
        revision: Set(session.revision),
        create_time: Set(session.create_time),
        update_time: Set(session.update_time),
    }
}

fn session_change(session: &Session) -> AuditChange {
    AuditChange::new(
        "session",
        &session.id,
        &json!({
            "cohort_id": session.cohort_id, "module_id": session.module_id,
            "start_time": session.start_time.to_rfc3339(), "end_time": session.end_time.to_rfc3339(),
            "location": session.location, "lead_trainer_id": session.lead_trainer_id,
            "co_trainer_ids": session.co_trainer_ids, "state": session.state.as_str(),
        }),
    )
}

/// Returns the course id of course version `version_id`.
pub(crate) async fn course_of_version(
    connection: &impl ConnectionTrait,
    version_id: &str,
) -> Result<String> {
    Ok(course_versions::Entity::find_by_id(version_id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("course_version", version_id))?
        .course_id)
}

#[derive(Debug, FromQueryResult)]
struct PathRow {
    path: String,
}

/// Returns the delivery facts of a session of `module_id` for `cohort_id`, and the module's
/// course version; the module must belong to a course version the cohort's programme runs.
async fn delivery_facts(
    connection: &impl ConnectionTrait,
    cohort_id: &str,
    module_id: &str,
) -> Result<(DeliveryFacts, String)> {
    let cohort = cohorts::Entity::find_by_id(cohort_id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("cohort", cohort_id))?;
    let module = course_modules::Entity::find_by_id(module_id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("module", module_id))?;
    let phases = programme_phases::Entity::find()
        .filter(programme_phases::Column::ProgrammeId.eq(cohort.programme_id.as_str()))
        .all(connection)
        .await
        .map_err(db_error)?;
    let runs_version = phases.iter().any(|phase| {
        serde_json::from_str::<Vec<String>>(&phase.course_version_ids)
            .is_ok_and(|ids| ids.contains(&module.course_version_id))
    });
    if !runs_version {
        return Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::ModuleNotInProgramme,
            subject: format!("module/{module_id}"),
            message: format!(
                "module {module_id} (\"{}\") belongs to no course version of the programme of cohort {cohort_id} (\"{}\")",
                module.title, cohort.name
            ),
        }
        .with("module_id", module_id)
        .with("cohort_id", cohort_id));
    }
    let course_id = course_of_version(connection, &module.course_version_id).await?;
    let backend = connection.get_database_backend();
    let sql = "SELECT DISTINCT o.path AS path FROM enrollments e \
               JOIN people p ON p.id = e.person_id JOIN organizations o ON o.id = p.organization_id \
               WHERE e.cohort_id = $1 AND e.state NOT IN ('WITHDRAWN', 'WAITLISTED')";
    let learner_paths =
        PathRow::find_by_statement(super::statement(backend, sql, [cohort_id.into()]))
            .all(connection)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| row.path)
            .collect();
    Ok((
        DeliveryFacts {
            module_id: module_id.to_owned(),
            course_id,
            learner_paths,
        },
        module.course_version_id,
    ))
}

/// Checks the delivery rules for `session` at `now`.
async fn check_session_trainers(
    transaction: &DatabaseTransaction,
    session: &Session,
    now: DateTime<Utc>,
) -> Result<()> {
    let (facts, _) = delivery_facts(transaction, &session.cohort_id, &session.module_id).await?;
    let standings = trainer_standings(transaction, &facts, &session.trainer_ids(), now).await?;
    let (lead, co_trainers) = standings
        .split_first()
        .ok_or_else(|| Error::internal("a session has a lead"))?;
    check_trainers(
        &format!(
            "the session of module {} for cohort {}",
            session.module_id, session.cohort_id
        ),
        lead,
        co_trainers,
    )
}

/// Fails with TRAINER_DOUBLE_BOOKED when a trainer of `session` has another live session that
/// overlaps it. On PostgreSQL the trainers are locked (in id order) first, so two concurrent
/// bookings of one trainer cannot both pass.
async fn check_overlap(transaction: &DatabaseTransaction, session: &Session) -> Result<()> {
    let mut trainers = session.trainer_ids();
    trainers.sort();
    if transaction.get_database_backend() == DbBackend::Postgres {
        for trainer in &trainers {
            transaction
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    [TRAINER_LOCK_CLASS.into(), trainer.as_str().into()],
                ))
                .await
                .map_err(db_error)?;
        }
    }
    let live = Query::select()
        .column(training_sessions::Column::Id)
        .from(training_sessions::Entity)
        .and_where(Expr::col(training_sessions::Column::State).ne(SessionState::Cancelled.as_str()))
        .to_owned();
    let clash = session_trainers::Entity::find()
        .filter(session_trainers::Column::PersonId.is_in(trainers))
        .filter(session_trainers::Column::StartTime.lt(session.end_time))
        .filter(session_trainers::Column::EndTime.gt(session.start_time))
        .filter(session_trainers::Column::SessionId.ne(session.id.as_str()))
        .filter(session_trainers::Column::SessionId.in_subquery(live))
        .one(transaction)
        .await
        .map_err(db_error)?;
    match clash {
        Some(row) => Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::TrainerDoubleBooked,
            subject: format!("person/{}", row.person_id),
            message: format!(
                "rule TRAINER_DOUBLE_BOOKED: trainer {} is in session {} from {} to {}, which overlaps this session ({} to {})",
                row.person_id,
                row.session_id,
                row.start_time.to_rfc3339(),
                row.end_time.to_rfc3339(),
                session.start_time.to_rfc3339(),
                session.end_time.to_rfc3339()
            ),
        }
        .with("person_id", row.person_id.clone())
        .with("session_id", row.session_id.clone())
        .with("start_time", row.start_time.to_rfc3339())
        .with("end_time", row.end_time.to_rfc3339())),
        None => Ok(()),
    }
}

/// Replaces the trainer rows of `session` (used for overlap checks and trainer listings).
async fn save_trainers(transaction: &DatabaseTransaction, session: &Session) -> Result<()> {
    session_trainers::Entity::delete_many()
        .filter(session_trainers::Column::SessionId.eq(session.id.as_str()))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    let rows: Vec<session_trainers::ActiveModel> = session
        .trainer_ids()
        .into_iter()
        .enumerate()
        .map(|(index, person_id)| session_trainers::ActiveModel {
            session_id: Set(session.id.clone()),
            person_id: Set(person_id),
            role: Set(if index == 0 { "LEAD" } else { "CO" }.to_owned()),
            start_time: Set(session.start_time),
            end_time: Set(session.end_time),
        })
        .collect();
    session_trainers::Entity::insert_many(rows)
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn lock_session(transaction: &DatabaseTransaction, id: &str) -> Result<Session> {
    let model = for_update(
        training_sessions::Entity::find_by_id(id.to_owned()),
        transaction,
    )
    .one(transaction)
    .await
    .map_err(db_error)?
    .ok_or_else(|| Error::not_found("session", id))?;
    session_from(model)
}

fn require_scheduled(session: &Session) -> Result<()> {
    if session.state == SessionState::Scheduled {
        Ok(())
    } else {
        Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::SessionNotScheduled,
            subject: format!("session/{}", session.id),
            message: format!(
                "session {} is {}; only scheduled sessions change",
                session.id,
                session.state.as_str()
            ),
        }
        .with("session_id", session.id.clone())
        .with("state", session.state.as_str()))
    }
}

fn check_revision(session: &Session, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(expected) if expected != session.revision => Err(Error::EtagMismatch {
            resource: "session",
            id: session.id.clone(),
        }),
        _ => Ok(()),
    }
}

/// A session to create, validated.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Cohort.
    pub cohort_id: String,
    /// Module.
    pub module_id: String,
    /// When.
    pub window: Window,
    /// Where.
    pub location: String,
    /// Who.
    pub trainers: Trainers,
}

/// Filters of [`Store::list_sessions`].
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only this cohort.
    pub cohort_id: Option<String>,
    /// Only sessions of this trainer.
    pub trainer_id: Option<String>,
    /// Starting at or after.
    pub start_after: Option<DateTime<Utc>>,
    /// Starting before.
    pub start_before: Option<DateTime<Utc>>,
}

/// One attendance mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceMark {
    /// Session.
    pub session_id: String,
    /// Person.
    pub person_id: String,
    /// Mark.
    pub status: AttendanceStatus,
    /// Who recorded it.
    pub recorded_by: String,
    /// When.
    pub record_time: DateTime<Utc>,
}

fn mark_from(model: session_attendance::Model) -> Result<AttendanceMark> {
    Ok(AttendanceMark {
        status: AttendanceStatus::parse(&model.status)
            .ok_or_else(|| Error::internal("stored attendance status is unknown"))?,
        session_id: model.session_id,
        person_id: model.person_id,
        recorded_by: model.recorded_by,
        record_time: model.record_time,
    })
}

/// Adds cascade edges lead -> each person marked PRESENT at a delivered session.
async fn add_session_edges(
    transaction: &DatabaseTransaction,
    session: &Session,
    person_ids: &[String],
    now: DateTime<Utc>,
) -> Result<()> {
    for person_id in person_ids {
        add_cascade_edge(
            transaction,
            &session.lead_trainer_id,
            person_id,
            "SESSION",
            &session.id,
            now,
        )
        .await?;
    }
    Ok(())
}

impl Store {
    /// Schedules a session after checking times, double bookings and the delivery rules at `now`.
    pub async fn create_session(
        &self,
        context: AuditContext,
        new: NewSession,
        key: Option<RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let (_, course_version_id) =
                        delivery_facts(transaction, &new.cohort_id, &new.module_id).await?;
                    let session = Session {
                        id: crate::domain::new_id(),
                        cohort_id: new.cohort_id,
                        module_id: new.module_id,
                        course_version_id,
                        start_time: new.window.start_time,
                        end_time: new.window.end_time,
                        location: new.location,
                        lead_trainer_id: new.trainers.lead_trainer_id,
                        co_trainer_ids: new.trainers.co_trainer_ids,
                        state: SessionState::Scheduled,
                        cancel_reason: None,
                        delivered_time: None,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    check_session_trainers(transaction, &session, now).await?;
                    check_overlap(transaction, &session).await?;
                    training_sessions::Entity::insert(session_active(&session))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    save_trainers(transaction, &session).await?;
                    audit::append(transaction, &context, vec![session_change(&session)]).await?;
                    let answer = StoredAnswer::created(&session.id);
                    Ok((session, answer))
                })
            },
            |answer| async move { self.get_session(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one session.
    pub async fn get_session(&self, id: &str) -> Result<Session> {
        let model = training_sessions::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("session", id))?;
        session_from(model)
    }

    /// Returns the cohorts with a session (in any state) that `person_id` leads or co-trains:
    /// the cohorts a trainer is assigned to.
    pub async fn trained_cohort_ids(&self, person_id: &str) -> Result<HashSet<String>> {
        let theirs = Query::select()
            .column(session_trainers::Column::SessionId)
            .from(session_trainers::Entity)
            .and_where(Expr::col(session_trainers::Column::PersonId).eq(person_id))
            .to_owned();
        let rows = training_sessions::Entity::find()
            .select_only()
            .column(training_sessions::Column::CohortId)
            .distinct()
            .filter(training_sessions::Column::Id.in_subquery(theirs))
            .into_tuple::<String>()
            .all(self.connection())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().collect())
    }

    /// Lists sessions by start time then id, after the page's key.
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
        page: &Page,
    ) -> Result<(Vec<Session>, String)> {
        let mut query = training_sessions::Entity::find();
        if let Some(cohort_id) = &filter.cohort_id {
            query = query.filter(training_sessions::Column::CohortId.eq(cohort_id.as_str()));
        }
        if let Some(trainer_id) = &filter.trainer_id {
            let theirs = Query::select()
                .column(session_trainers::Column::SessionId)
                .from(session_trainers::Entity)
                .and_where(Expr::col(session_trainers::Column::PersonId).eq(trainer_id.as_str()))
                .to_owned();
            query = query.filter(training_sessions::Column::Id.in_subquery(theirs));
        }
        if let Some(start) = filter.start_after {
            query = query.filter(training_sessions::Column::StartTime.gte(start));
        }
        if let Some(end) = filter.start_before {
            query = query.filter(training_sessions::Column::StartTime.lt(end));
        }
        if let Some(after) = &page.after {
            let (micros, id) = after
                .split_once('|')
                .and_then(|(micros, id)| micros.parse::<i64>().ok().map(|micros| (micros, id)))
                .ok_or_else(|| {
                    Error::invalid("page_token", "is not a token this service issued")
                })?;
            let time = DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                Error::invalid("page_token", "is not a token this service issued")
            })?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(training_sessions::Column::StartTime.gt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(training_sessions::Column::StartTime.eq(time))
                            .add(training_sessions::Column::Id.gt(id)),
                    ),
            );
        }
        let rows = query
            .order_by_asc(training_sessions::Column::StartTime)
            .order_by_asc(training_sessions::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(session_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(rows, |session| {
            format!("{}|{}", session.start_time.timestamp_micros(), session.id)
        }))
    }

    /// Moves a scheduled session; the trainers must be free at the new time.
    pub async fn reschedule_session(
        &self,
        context: AuditContext,
        id: String,
        window: Window,
        location: Option<String>,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut session = lock_session(transaction, &id).await?;
                check_revision(&session, expected_revision)?;
                require_scheduled(&session)?;
                session.start_time = window.start_time;
                session.end_time = window.end_time;
                if let Some(location) = location {
                    session.location = location;
                }
                session.revision += 1;
                session.update_time = now;
                check_overlap(transaction, &session).await?;
                training_sessions::Entity::update(session_active(&session))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                save_trainers(transaction, &session).await?;
                audit::append(transaction, &context, vec![session_change(&session)]).await?;
                Ok(session)
            })
        })
        .await
    }

    /// Replaces the trainers of a scheduled session, checking the delivery rules at `now`.
    pub async fn change_session_trainers(
        &self,
        context: AuditContext,
        id: String,
        trainers: Trainers,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut session = lock_session(transaction, &id).await?;
                check_revision(&session, expected_revision)?;
                require_scheduled(&session)?;
                session.lead_trainer_id = trainers.lead_trainer_id;
                session.co_trainer_ids = trainers.co_trainer_ids;
                session.revision += 1;
                session.update_time = now;
                check_session_trainers(transaction, &session, now).await?;
                check_overlap(transaction, &session).await?;
                training_sessions::Entity::update(session_active(&session))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                save_trainers(transaction, &session).await?;
                audit::append(transaction, &context, vec![session_change(&session)]).await?;
                Ok(session)
            })
        })
        .await
    }

    /// Cancels a scheduled session.
    pub async fn cancel_session(
        &self,
        context: AuditContext,
        id: String,
        reason: String,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut session = lock_session(transaction, &id).await?;
                check_revision(&session, expected_revision)?;
                require_scheduled(&session)?;
                session.state = SessionState::Cancelled;
                session.cancel_reason = Some(reason);
                session.revision += 1;
                session.update_time = now;
                training_sessions::Entity::update(session_active(&session))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                audit::append(transaction, &context, vec![session_change(&session)]).await?;
                Ok(session)
            })
        })
        .await
    }

    /// Records attendance marks; PRESENT marks record ATTENDED events (deterministic ids, so a
    /// repeated call records nothing new) in the same transaction. Who may record is checked
    /// before (`auth::scope`, [`Object::Attendance`](crate::auth::scope::Object)).
    /// Returns the marks and the number of events newly recorded.
    pub async fn record_attendance(
        &self,
        context: AuditContext,
        session_id: String,
        person_ids: Vec<String>,
        status: AttendanceStatus,
        now: DateTime<Utc>,
    ) -> Result<(Vec<AttendanceMark>, i32)> {
        let store = self.clone();
        self.write(move |transaction| {
            Box::pin(async move {
                let session = lock_session(transaction, &session_id).await?;
                if session.state == SessionState::Cancelled {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::SessionCancelled,
                        subject: format!("session/{session_id}"),
                        message: format!("session {session_id} is cancelled; it takes no attendance"),
                    }
                    .with("session_id", session_id.clone()));
                }
                if now < session.start_time {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::SessionNotStarted,
                        subject: format!("session/{session_id}"),
                        message: format!(
                            "session {session_id} starts at {}; attendance is recorded once it has started",
                            session.start_time.to_rfc3339()
                        ),
                    }
                    .with("session_id", session_id.clone())
                    .with("start_time", session.start_time.to_rfc3339()));
                }
                let enrolled: HashMap<String, enrollments::Model> = enrollments::Entity::find()
                    .filter(enrollments::Column::CohortId.eq(session.cohort_id.as_str()))
                    .filter(enrollments::Column::PersonId.is_in(person_ids.clone()))
                    .all(transaction)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .filter(|row| {
                        !matches!(
                            EnrollmentState::parse(&row.state),
                            Some(EnrollmentState::Withdrawn | EnrollmentState::Waitlisted)
                        )
                    })
                    .map(|row| (row.person_id.clone(), row))
                    .collect();
                if let Some(missing) = person_ids.iter().find(|id| !enrolled.contains_key(*id)) {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::NotEnrolledInCohort,
                        subject: format!("person/{missing}"),
                        message: format!(
                            "person {missing} holds no active enrolment in cohort {}; attendance is recorded for active enrolments of the session's cohort only",
                            session.cohort_id
                        ),
                    }
                    .with("person_id", missing.clone())
                    .with("cohort_id", session.cohort_id.clone()));
                }
                let mut marks = Vec::with_capacity(person_ids.len());
                for person_id in &person_ids {
                    let row = session_attendance::ActiveModel {
                        session_id: Set(session_id.clone()),
                        person_id: Set(person_id.clone()),
                        status: Set(status.as_str().to_owned()),
                        recorded_by: Set(context.actor.clone()),
                        record_time: Set(now),
                    };
                    let exists = session_attendance::Entity::find_by_id((session_id.clone(), person_id.clone()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .is_some();
                    if exists {
                        session_attendance::Entity::update(row).exec(transaction).await.map_err(db_error)?;
                    } else {
                        session_attendance::Entity::insert(row).exec(transaction).await.map_err(db_error)?;
                    }
                    marks.push(AttendanceMark {
                        session_id: session_id.clone(),
                        person_id: person_id.clone(),
                        status,
                        recorded_by: context.actor.clone(),
                        record_time: now,
                    });
                }
                let mut recorded = 0;
                if status == AttendanceStatus::Present {
                    let activities: Vec<String> = course_activities::Entity::find()
                        .filter(course_activities::Column::ModuleId.eq(session.module_id.as_str()))
                        .order_by_asc(course_activities::Column::Position)
                        .all(transaction)
                        .await
                        .map_err(db_error)?
                        .into_iter()
                        .filter(|activity| {
                            match (ActivityKind::parse(&activity.kind), DeliveryMode::parse(&activity.delivery_mode)) {
                                (Some(kind), Some(mode)) => counts_attendance(kind, mode),
                                _ => false,
                            }
                        })
                        .map(|activity| activity.id)
                        .collect();
                    let mut events = Vec::new();
                    for person_id in &person_ids {
                        let Some(enrollment) = enrolled.get(person_id) else { continue };
                        let pinned: Vec<String> = serde_json::from_str(&enrollment.course_version_ids).unwrap_or_default();
                        if !pinned.contains(&session.course_version_id) {
                            continue;
                        }
                        for activity_id in &activities {
                            events.push(EventInput {
                                event_id: attendance_event_id(&session_id, person_id, activity_id),
                                enrollment_id: enrollment.id.clone(),
                                activity_id: activity_id.clone(),
                                facts: EventFacts {
                                    verb: Verb::Attended,
                                    score: None,
                                    duration_seconds: 0,
                                    occurred_time: session.start_time,
                                    source: Source::Trainer,
                                },
                                evidence_uri: None,
                                evidence_note: Some(format!("session {session_id}")),
                                provenance_note: None,
                            });
                        }
                    }
                    let ids: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
                    let mut known: HashSet<String> = HashSet::new();
                    for chunk in ids.chunks(1000) {
                        known.extend(
                            progress_events::Entity::find()
                                .filter(progress_events::Column::EventId.is_in(chunk.to_vec()))
                                .all(transaction)
                                .await
                                .map_err(db_error)?
                                .into_iter()
                                .map(|row| row.event_id),
                        );
                    }
                    recorded = ids.iter().filter(|id| !known.contains(*id)).count() as i32;
                    let answers = record_in_caller_transaction(
                        transaction,
                        &store,
                        &context.actor,
                        &Recorder::Staff,
                        events.into_iter().map(Ok).collect(),
                    )
                    .await?;
                    if let Some(Err(error)) = answers.into_iter().find(|answer| answer.is_err()) {
                        return Err(Error::FailedPrecondition {
                            metadata: Vec::new(),
                            reason: Reason::AttendanceNotRecorded,
                            subject: format!("session/{session_id}"),
                            message: format!("an ATTENDED event was refused: {} ({})", error.message, error.reason),
                        });
                    }
                    if session.state == SessionState::Delivered {
                        add_session_edges(transaction, &session, &person_ids, now).await?;
                    }
                }
                let change = AuditChange::new(
                    "session_attendance",
                    &session_id,
                    &json!({"status": status.as_str(), "person_ids": person_ids}),
                );
                audit::append(transaction, &context, vec![change]).await?;
                Ok((marks, recorded))
            })
        })
        .await
    }

    /// Returns every attendance mark of a session, by person id.
    pub async fn list_attendance(&self, session_id: &str) -> Result<Vec<AttendanceMark>> {
        self.get_session(session_id).await?;
        session_attendance::Entity::find()
            .filter(session_attendance::Column::SessionId.eq(session_id))
            .order_by_asc(session_attendance::Column::PersonId)
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(mark_from)
            .collect()
    }

    /// Marks a session delivered after checking the delivery rules again at `now`; people
    /// marked PRESENT become the lead's learners in the cascade. Who may is checked before
    /// (`auth::scope`, the session's lead). Marking a delivered session again returns it.
    pub async fn mark_delivered(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut session = lock_session(transaction, &id).await?;
                if session.state == SessionState::Delivered {
                    return Ok(session);
                }
                check_revision(&session, expected_revision)?;
                require_scheduled(&session)?;
                if now < session.start_time {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::SessionNotStarted,
                        subject: format!("session/{id}"),
                        message: format!(
                            "session {id} starts at {}; it is marked delivered once it has started",
                            session.start_time.to_rfc3339()
                        ),
                    }
                    .with("session_id", id.clone())
                    .with("start_time", session.start_time.to_rfc3339()));
                }
                check_session_trainers(transaction, &session, now).await?;
                session.state = SessionState::Delivered;
                session.delivered_time = Some(now);
                session.revision += 1;
                session.update_time = now;
                training_sessions::Entity::update(session_active(&session))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                let present: Vec<String> = session_attendance::Entity::find()
                    .filter(session_attendance::Column::SessionId.eq(id.as_str()))
                    .filter(
                        session_attendance::Column::Status.eq(AttendanceStatus::Present.as_str()),
                    )
                    .all(transaction)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(|row| row.person_id)
                    .collect();
                add_session_edges(transaction, &session, &present, now).await?;
                audit::append(transaction, &context, vec![session_change(&session)]).await?;
                Ok(session)
            })
        })
        .await
    }
}
