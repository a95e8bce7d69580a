//! Programmes, cohorts and enrolments: capacity-safe enrolment, waitlists and withdrawals in audited transactions.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _,
    FromQueryResult, QueryFilter as _, QueryOrder as _, QuerySelect as _, Select,
    sea_query::{Alias, Expr, ExprTrait as _, JoinType, LockType, Query},
};
use serde::{Deserialize, Serialize};

use super::entity::programme::{
    cohort_phase_windows, cohorts, enrollments, programme_phases, programmes,
};
use super::entity::{organizations, people};
use super::idempotency::{RequestKey, StoredAnswer};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::category::CategoryCode;
use crate::domain::event::NewEvent;
use crate::domain::page::Page;
use crate::domain::person::PersonStatus;
use crate::domain::programme::{
    Cohort, CohortField, CohortSettings, CohortState, Enrollment, EnrollmentState, NewProgramme,
    Phase, PhaseDraft, Placement, Programme, ProgrammePatch, ProgrammeState, RawCohortSettings,
    Refusal, SeatCounts, Visibility, check_admissible, check_cohort_transition, check_withdrawable,
    place,
};
use crate::domain::programme::{
    CohortSchedule, PhaseWindow, check_phase_windows, scheduled_transition,
};
use crate::error::{Error, Reason, Result};

/// Returns the condition keeping the rows of `table` a [`Visibility`] shows: rows about its
/// people (`person_column`), of its cohorts or tracks (when the table has those columns), or
/// about people in its organisation subtree; no row when it shows nothing.
pub(crate) fn visible_rows(
    visibility: &Visibility,
    table: &str,
    person_column: &str,
    cohort_column: Option<&str>,
    track_column: Option<&str>,
) -> sea_orm::Condition {
    let column = |name: &str| Expr::col((Alias::new(table), Alias::new(name)));
    let mut any = sea_orm::Condition::any();
    let mut parts = 0;
    if !visibility.person_ids.is_empty() {
        any = any.add(column(person_column).is_in(visibility.person_ids.clone()));
        parts += 1;
    }
    if let Some(cohort_column) = cohort_column
        && !visibility.cohort_ids.is_empty()
    {
        any = any.add(column(cohort_column).is_in(visibility.cohort_ids.clone()));
        parts += 1;
    }
    if let Some(track_column) = track_column
        && !visibility.track_ids.is_empty()
    {
        any = any.add(column(track_column).is_in(visibility.track_ids.clone()));
        parts += 1;
    }
    if let Some(prefix) = &visibility.organization_path_prefix {
        any = any.add(column(person_column).in_subquery(people_under(prefix)));
        parts += 1;
    }
    if parts == 0 {
        return sea_orm::Condition::all().add(Expr::cust("1 = 0"));
    }
    any
}

/// Returns the ids of the people whose organisation's path starts with `prefix`.
fn people_under(prefix: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column((people::Entity, people::Column::Id))
        .from(people::Entity)
        .inner_join(
            organizations::Entity,
            Expr::col((organizations::Entity, organizations::Column::Id))
                .equals((people::Entity, people::Column::OrganizationId)),
        )
        .and_where(
            Expr::col((organizations::Entity, organizations::Column::Path))
                .like(super::like_prefix(prefix)),
        )
        .to_owned()
}

/// Who an enrolment is about, for the scope checks of the API.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct EnrollmentOwner {
    /// The enrolment.
    pub id: String,
    /// The learner.
    pub person_id: String,
    /// The cohort.
    pub cohort_id: String,
    /// The materialised path of the learner's organisation.
    pub organization_path: String,
}

/// Returns `select` locking its rows for the rest of the transaction on PostgreSQL
/// (SQLite write transactions are serial already).
pub(crate) fn for_update<E: sea_orm::EntityTrait>(
    select: Select<E>,
    transaction: &DatabaseTransaction,
) -> Select<E> {
    if transaction.get_database_backend() == DbBackend::Postgres {
        select.lock(LockType::Update)
    } else {
        select
    }
}

fn json_list(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

fn parse_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored id list is not JSON: {error}")))
}

// ---------------------------------------------------------------------------------------------
// Programmes

fn programme_from(
    model: programmes::Model,
    phases: Vec<programme_phases::Model>,
) -> Result<Programme> {
    let state = ProgrammeState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!("stored programme state {} is unknown", model.state))
    })?;
    let mut phases = phases
        .into_iter()
        .map(|phase| {
            Ok(Phase {
                course_version_ids: parse_list(&phase.course_version_ids)?,
                id: phase.id,
                title: phase.title,
                position: phase.position,
                location: phase.location,
                planned_duration_days: phase.planned_duration_days,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    phases.sort_by_key(|phase| phase.position);
    Ok(Programme {
        partner_organization_ids: parse_list(&model.partner_organization_ids)?,
        id: model.id,
        code: model.code,
        title: model.title,
        description: model.description,
        sponsor_organization_id: model.sponsor_organization_id,
        phases,
        state,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn programme_change(programme: &Programme) -> AuditChange {
    let phases: Vec<serde_json::Value> = programme
        .phases
        .iter()
        .map(|phase| {
            serde_json::json!({
                "id": phase.id, "title": phase.title, "position": phase.position,
                "course_version_ids": phase.course_version_ids, "location": phase.location,
                "planned_duration_days": phase.planned_duration_days,
            })
        })
        .collect();
    AuditChange::new(
        "programme",
        &programme.id,
        &serde_json::json!({
            "code": programme.code, "title": programme.title, "description": programme.description,
            "sponsor_organization_id": programme.sponsor_organization_id,
            "partner_organization_ids": programme.partner_organization_ids,
            "phases": phases, "state": programme.state.as_str(), "revision": programme.revision,
        }),
    )
}

async fn load_programmes(
    connection: &impl ConnectionTrait,
    models: Vec<programmes::Model>,
) -> Result<Vec<Programme>> {
    let ids: Vec<String> = models.iter().map(|model| model.id.clone()).collect();
    let mut phases_by_programme: HashMap<String, Vec<programme_phases::Model>> = HashMap::new();
    if !ids.is_empty() {
        let phases = programme_phases::Entity::find()
            .filter(programme_phases::Column::ProgrammeId.is_in(ids))
            .all(connection)
            .await
            .map_err(db_error)?;
        for phase in phases {
            phases_by_programme
                .entry(phase.programme_id.clone())
                .or_default()
                .push(phase);
        }
    }
    models
        .into_iter()
        .map(|model| {
            let phases = phases_by_programme.remove(&model.id).unwrap_or_default();
            programme_from(model, phases)
        })
        .collect()
}

async fn load_programme(connection: &impl ConnectionTrait, id: &str) -> Result<Programme> {
    let model = programmes::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("programme", id))?;
    load_programmes(connection, vec![model])
        .await?
        .pop()
        .ok_or_else(|| Error::internal("loaded programme vanished"))
}

/// Fails with NOT_FOUND unless every organisation in `ids` exists.
async fn require_organizations(connection: &impl ConnectionTrait, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: HashSet<String> = organizations::Entity::find()
        .filter(organizations::Column::Id.is_in(ids.iter().cloned()))
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|organization| organization.id)
        .collect();
    match ids.iter().find(|id| !found.contains(*id)) {
        Some(missing) => Err(Error::not_found("organization", missing)),
        None => Ok(()),
    }
}

#[derive(Debug, FromQueryResult)]
struct VersionRow {
    id: String,
    state: String,
    course_state: String,
}

async fn version_rows(
    connection: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<VersionRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let query = Query::select()
        .expr_as(
            Expr::col((Alias::new("v"), Alias::new("id"))),
            Alias::new("id"),
        )
        .expr_as(
            Expr::col((Alias::new("v"), Alias::new("state"))),
            Alias::new("state"),
        )
        .expr_as(
            Expr::col((Alias::new("c"), Alias::new("state"))),
            Alias::new("course_state"),
        )
        .from_as(Alias::new("course_versions"), Alias::new("v"))
        .join_as(
            JoinType::InnerJoin,
            Alias::new("courses"),
            Alias::new("c"),
            Expr::col((Alias::new("c"), Alias::new("id")))
                .equals((Alias::new("v"), Alias::new("course_id"))),
        )
        .and_where(Expr::col((Alias::new("v"), Alias::new("id"))).is_in(ids.iter().cloned()))
        .to_owned();
    let statement = connection.get_database_backend().build(&query);
    VersionRow::find_by_statement(statement)
        .all(connection)
        .await
        .map_err(db_error)
}

/// Fails unless every phase names existing, published versions.
async fn require_published_versions(
    connection: &impl ConnectionTrait,
    phases: &[PhaseDraft],
) -> Result<()> {
    let ids: Vec<String> = phases
        .iter()
        .flat_map(|phase| phase.course_version_ids.clone())
        .collect();
    let rows = version_rows(connection, &ids).await?;
    for id in &ids {
        match rows.iter().find(|row| &row.id == id) {
            None => return Err(Error::not_found("course_version", id)),
            Some(row) if row.state != "PUBLISHED" => {
                return Err(Error::FailedPrecondition {
                    metadata: Vec::new(),
                    reason: Reason::VersionNotPublished,
                    subject: format!("course_version/{id}"),
                    message: format!(
                        "course version {id} is not published; phases take published versions only"
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn write_phases(
    transaction: &DatabaseTransaction,
    programme_id: &str,
    phases: &[Phase],
) -> Result<()> {
    programme_phases::Entity::delete_many()
        .filter(programme_phases::Column::ProgrammeId.eq(programme_id))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    let rows: Vec<programme_phases::ActiveModel> = phases
        .iter()
        .map(|phase| programme_phases::ActiveModel {
            id: Set(phase.id.clone()),
            programme_id: Set(programme_id.to_owned()),
            title: Set(phase.title.clone()),
            position: Set(phase.position),
            course_version_ids: Set(json_list(&phase.course_version_ids)),
            location: Set(phase.location.clone()),
            planned_duration_days: Set(phase.planned_duration_days),
        })
        .collect();
    if !rows.is_empty() {
        programme_phases::Entity::insert_many(rows)
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

fn code_taken(resource: &'static str, code: &str, existing_id: Option<String>) -> Error {
    Error::AlreadyExists {
        resource,
        field: "code",
        value: code.to_owned(),
        existing_id,
    }
}

/// Filters of [`Store::list_programmes`].
#[derive(Debug, Clone, Default)]
pub struct ProgrammeFilter {
    /// Only this sponsor.
    pub sponsor_organization_id: Option<String>,
    /// Only this state.
    pub state: Option<ProgrammeState>,
}

/// Filters of [`Store::list_cohorts`].
#[derive(Debug, Clone, Default)]
pub struct CohortFilter {
    /// Only this programme.
    pub programme_id: Option<String>,
    /// Only this state.
    pub state: Option<CohortState>,
}

/// Filters of [`Store::list_enrollments`].
#[derive(Debug, Clone, Default)]
pub struct EnrollmentFilter {
    /// Only this cohort.
    pub cohort_id: Option<String>,
    /// Only this person.
    pub person_id: Option<String>,
    /// Only people whose organisation's path starts with this.
    pub organization_path_prefix: Option<String>,
    /// Only this state.
    pub state: Option<EnrollmentState>,
    /// Only the rows a caller with a limited scope may see; `None` for every row.
    pub visibility: Option<Visibility>,
}

// ---------------------------------------------------------------------------------------------
// Cohorts

fn cohort_from(model: cohorts::Model) -> Result<Cohort> {
    let state = CohortState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!("stored cohort state {} is unknown", model.state))
    })?;
    let seats: Vec<(String, i32)> = serde_json::from_str(&model.category_seats)
        .map_err(|error| Error::internal(format!("stored category seats are not JSON: {error}")))?;
    let category_seats = seats
        .into_iter()
        .map(|(code, seats)| (CategoryCode::from_stored(code), seats))
        .collect();
    let date = |text: Option<String>| {
        text.and_then(|text| chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok())
    };
    Ok(Cohort {
        settings: CohortSettings {
            name: model.name,
            start_date: date(model.start_date),
            end_date: date(model.end_date),
            capacity: model.capacity,
            waitlist_enabled: model.waitlist_enabled,
            category_seats,
            eligible_organization_ids: parse_list(&model.eligible_organization_ids)?,
            // Filled by `attach_windows`.
            phase_windows: Vec::new(),
            schedule: CohortSchedule {
                auto_advance: model.auto_advance,
                enrollment_open_date: date(model.enrollment_open_date),
            },
        },
        id: model.id,
        programme_id: model.programme_id,
        state,
        enrolled_count: model.enrolled_count,
        waitlisted_count: model.waitlisted_count,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn cohort_active(cohort: &Cohort) -> cohorts::ActiveModel {
    let settings = &cohort.settings;
    let seats: Vec<(&str, i32)> = settings
        .category_seats
        .iter()
        .map(|(category, seats)| (category.as_str(), *seats))
        .collect();
    cohorts::ActiveModel {
        id: Set(cohort.id.clone()),
        programme_id: Set(cohort.programme_id.clone()),
        name: Set(settings.name.clone()),
        start_date: Set(settings
            .start_date
            .map(|date| date.format("%Y-%m-%d").to_string())),
        end_date: Set(settings
            .end_date
            .map(|date| date.format("%Y-%m-%d").to_string())),
        capacity: Set(settings.capacity),
        state: Set(cohort.state.as_str().to_owned()),
        enrolled_count: Set(cohort.enrolled_count),
        waitlisted_count: Set(cohort.waitlisted_count),
        waitlist_enabled: Set(settings.waitlist_enabled),
        category_seats: Set(serde_json::json!(seats).to_string()),
        eligible_organization_ids: Set(json_list(&settings.eligible_organization_ids)),
        revision: Set(cohort.revision),
        create_time: Set(cohort.create_time),
        update_time: Set(cohort.update_time),
        auto_advance: Set(settings.schedule.auto_advance),
        enrollment_open_date: Set(settings
            .schedule
            .enrollment_open_date
            .map(|date| date.format("%Y-%m-%d").to_string())),
    }
}

/// Loads the phase windows of `cohorts` into them, in phase order.
async fn attach_windows(connection: &impl ConnectionTrait, cohorts: &mut [Cohort]) -> Result<()> {
    if cohorts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = cohorts.iter().map(|cohort| cohort.id.clone()).collect();
    let mut windows: HashMap<String, Vec<(i32, PhaseWindow)>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for row in cohort_phase_windows::Entity::find()
            .filter(cohort_phase_windows::Column::CohortId.is_in(chunk.to_vec()))
            .all(connection)
            .await
            .map_err(db_error)?
        {
            let date = |text: &str| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|error| {
                    Error::internal(format!("stored window date {text} is invalid: {error}"))
                })
            };
            let window = PhaseWindow {
                phase_id: row.phase_id.clone(),
                start_date: date(&row.start_date)?,
                end_date: date(&row.end_date)?,
            };
            windows
                .entry(row.cohort_id)
                .or_default()
                .push((row.position, window));
        }
    }
    for cohort in cohorts {
        let mut list = windows.remove(&cohort.id).unwrap_or_default();
        list.sort_by_key(|(position, _)| *position);
        cohort.settings.phase_windows = list.into_iter().map(|(_, window)| window).collect();
    }
    Ok(())
}

/// Replaces the stored phase windows of `cohort` with its settings' (already in phase order).
async fn write_windows(transaction: &DatabaseTransaction, cohort: &Cohort) -> Result<()> {
    cohort_phase_windows::Entity::delete_many()
        .filter(cohort_phase_windows::Column::CohortId.eq(cohort.id.as_str()))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    let rows: Vec<cohort_phase_windows::ActiveModel> = cohort
        .settings
        .phase_windows
        .iter()
        .enumerate()
        .map(|(index, window)| {
            let (opens, closes) = window.bounds();
            cohort_phase_windows::ActiveModel {
                cohort_id: Set(cohort.id.clone()),
                phase_id: Set(window.phase_id.clone()),
                position: Set(index as i32 + 1),
                start_date: Set(window.start_date.format("%Y-%m-%d").to_string()),
                end_date: Set(window.end_date.format("%Y-%m-%d").to_string()),
                opens_time: Set(opens),
                closes_time: Set(closes),
            }
        })
        .collect();
    if !rows.is_empty() {
        cohort_phase_windows::Entity::insert_many(rows)
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Publishes the `cohort.changed` event of a state change from `from`, by hand or by the schedule.
async fn publish_cohort_change(
    transaction: &DatabaseTransaction,
    cohort: &Cohort,
    from: CohortState,
    automatic: bool,
) -> Result<()> {
    let settings = &cohort.settings;
    super::event::append(
        transaction,
        vec![NewEvent {
            event_type: "cohort.changed",
            subject_id: cohort.id.clone(),
            person_id: None,
            organization_path: None,
            payload: serde_json::json!({
                "cohort_id": cohort.id,
                "programme_id": cohort.programme_id,
                "name": settings.name,
                "previous_state": from.as_str(),
                "state": cohort.state.as_str(),
                "automatic": automatic,
                "start_date": settings.start_date.map(|date| date.to_string()),
                "end_date": settings.end_date.map(|date| date.to_string()),
            }),
        }],
    )
    .await
}

fn cohort_change(cohort: &Cohort) -> AuditChange {
    let settings = &cohort.settings;
    let seats: Vec<(&str, i32)> = settings
        .category_seats
        .iter()
        .map(|(category, seats)| (category.as_str(), *seats))
        .collect();
    AuditChange::new(
        "cohort",
        &cohort.id,
        &serde_json::json!({
            "programme_id": cohort.programme_id, "name": settings.name,
            "start_date": settings.start_date.map(|date| date.to_string()),
            "end_date": settings.end_date.map(|date| date.to_string()),
            "capacity": settings.capacity, "waitlist_enabled": settings.waitlist_enabled,
            "category_seats": seats, "eligible_organization_ids": settings.eligible_organization_ids,
            "state": cohort.state.as_str(), "enrolled_count": cohort.enrolled_count,
            "waitlisted_count": cohort.waitlisted_count, "revision": cohort.revision,
            "phase_windows": settings.phase_windows.iter().map(|window| serde_json::json!({
                "phase_id": window.phase_id, "start_date": window.start_date.to_string(),
                "end_date": window.end_date.to_string(),
            })).collect::<Vec<_>>(),
            "auto_advance": settings.schedule.auto_advance,
            "enrollment_open_date": settings.schedule.enrollment_open_date.map(|date| date.to_string()),
        }),
    )
}

async fn lock_cohort(transaction: &DatabaseTransaction, id: &str) -> Result<Cohort> {
    let model = for_update(cohorts::Entity::find_by_id(id.to_owned()), transaction)
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("cohort", id))?;
    let mut cohort = [cohort_from(model)?];
    attach_windows(transaction, &mut cohort).await?;
    let [cohort] = cohort;
    Ok(cohort)
}

/// Writes a changed cohort (settings, state and counts) with a new revision.
async fn save_cohort(transaction: &DatabaseTransaction, cohort: &mut Cohort) -> Result<()> {
    cohort.revision += 1;
    cohort.update_time = crate::domain::now();
    cohorts::Entity::update(cohort_active(cohort))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct CategoryCount {
    // The enrolment's `sector` column holds the person's category code (see the migration
    // m20261207_000021_participant_categories).
    sector: String,
    taken: i64,
}

/// Counts the places taken in a cohort, per participant category.
async fn seat_counts(connection: &impl ConnectionTrait, cohort_id: &str) -> Result<SeatCounts> {
    let holding = [
        EnrollmentState::Enrolled,
        EnrollmentState::InProgress,
        EnrollmentState::Completed,
    ];
    let rows = enrollments::Entity::find()
        .select_only()
        .column(enrollments::Column::Sector)
        .column_as(enrollments::Column::Id.count(), "taken")
        .filter(enrollments::Column::CohortId.eq(cohort_id))
        .filter(enrollments::Column::State.is_in(holding.iter().map(|state| state.as_str())))
        .group_by(enrollments::Column::Sector)
        .into_model::<CategoryCount>()
        .all(connection)
        .await
        .map_err(db_error)?;
    let mut counts = SeatCounts::default();
    for row in rows {
        counts.add(&CategoryCode::from_stored(row.sector), row.taken as i32);
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------------
// Enrolments

pub(crate) fn enrollment_from(model: enrollments::Model) -> Result<Enrollment> {
    let state = EnrollmentState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!(
            "stored enrollment state {} is unknown",
            model.state
        ))
    })?;
    Ok(Enrollment {
        course_version_ids: parse_list(&model.course_version_ids)?,
        id: model.id,
        cohort_id: model.cohort_id,
        programme_id: model.programme_id,
        person_id: model.person_id,
        organization_id: model.organization_id,
        category: CategoryCode::from_stored(model.sector),
        state,
        waitlist_position: 0,
        enrolled_time: model.enrolled_time,
        completed_time: model.completed_time,
        withdrawn_time: model.withdrawn_time,
        withdraw_reason: model.withdraw_reason,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

pub(crate) fn enrollment_active(enrollment: &Enrollment) -> enrollments::ActiveModel {
    enrollments::ActiveModel {
        id: Set(enrollment.id.clone()),
        cohort_id: Set(enrollment.cohort_id.clone()),
        programme_id: Set(enrollment.programme_id.clone()),
        person_id: Set(enrollment.person_id.clone()),
        organization_id: Set(enrollment.organization_id.clone()),
        sector: Set(enrollment.category.as_str().to_owned()),
        course_version_ids: Set(json_list(&enrollment.course_version_ids)),
        state: Set(enrollment.state.as_str().to_owned()),
        enrolled_time: Set(enrollment.enrolled_time),
        completed_time: Set(enrollment.completed_time),
        withdrawn_time: Set(enrollment.withdrawn_time),
        withdraw_reason: Set(enrollment.withdraw_reason.clone()),
        revision: Set(enrollment.revision),
        create_time: Set(enrollment.create_time),
        update_time: Set(enrollment.update_time),
    }
}

fn enrollment_change(enrollment: &Enrollment) -> AuditChange {
    AuditChange::new(
        "enrollment",
        &enrollment.id,
        &serde_json::json!({
            "cohort_id": enrollment.cohort_id, "person_id": enrollment.person_id,
            "course_version_ids": enrollment.course_version_ids, "state": enrollment.state.as_str(),
            "withdraw_reason": enrollment.withdraw_reason, "revision": enrollment.revision,
        }),
    )
}

/// Fills `waitlist_position` of the waitlisted enrolments in `list`.
async fn fill_waitlist_positions(
    connection: &impl ConnectionTrait,
    list: &mut [Enrollment],
) -> Result<()> {
    use sea_orm::PaginatorTrait as _;
    for enrollment in list
        .iter_mut()
        .filter(|enrollment| enrollment.state == EnrollmentState::Waitlisted)
    {
        let ahead = enrollments::Entity::find()
            .filter(enrollments::Column::CohortId.eq(enrollment.cohort_id.as_str()))
            .filter(enrollments::Column::State.eq(EnrollmentState::Waitlisted.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(enrollments::Column::EnrolledTime.lt(enrollment.enrolled_time))
                    .add(
                        sea_orm::Condition::all()
                            .add(enrollments::Column::EnrolledTime.eq(enrollment.enrolled_time))
                            .add(enrollments::Column::Id.lt(enrollment.id.as_str())),
                    ),
            )
            .count(connection)
            .await
            .map_err(db_error)?;
        enrollment.waitlist_position = ahead as i32 + 1;
    }
    Ok(())
}

/// Gives freed places to waitlisted people, first in line first, as long as one fits.
async fn promote_waitlisted(
    transaction: &DatabaseTransaction,
    cohort: &mut Cohort,
    counts: &mut SeatCounts,
    changes: &mut Vec<AuditChange>,
) -> Result<Vec<Enrollment>> {
    let mut promoted = Vec::new();
    if cohort.waitlisted_count == 0 {
        return Ok(promoted);
    }
    let waiting = enrollments::Entity::find()
        .filter(enrollments::Column::CohortId.eq(cohort.id.as_str()))
        .filter(enrollments::Column::State.eq(EnrollmentState::Waitlisted.as_str()))
        .order_by_asc(enrollments::Column::EnrolledTime)
        .order_by_asc(enrollments::Column::Id)
        .all(transaction)
        .await
        .map_err(db_error)?;
    let now = crate::domain::now();
    let seats_only = Cohort {
        settings: CohortSettings {
            waitlist_enabled: false,
            ..cohort.settings.clone()
        },
        ..cohort.clone()
    };
    for model in waiting {
        if counts.taken >= cohort.settings.capacity {
            break;
        }
        let mut enrollment = enrollment_from(model)?;
        if place(&seats_only, counts, &enrollment.category).is_err() {
            continue;
        }
        let before = enrollment.clone();
        enrollment.state = EnrollmentState::Enrolled;
        enrollment.enrolled_time = now;
        enrollment.revision += 1;
        enrollment.update_time = now;
        super::progress_cache::touch(&enrollment.id, &enrollment.cohort_id);
        enrollments::Entity::update(enrollment_active(&enrollment))
            .exec(transaction)
            .await
            .map_err(db_error)?;
        counts.add(&enrollment.category, 1);
        cohort.enrolled_count += 1;
        cohort.waitlisted_count -= 1;
        changes.push(enrollment_change(&enrollment));
        super::report::record_moves(transaction, &[(Some(before), enrollment.clone())]).await?;
        promoted.push(enrollment);
    }
    Ok(promoted)
}

/// Publishes `event_type` for each of `enrollments`, with the learner's organisation for subtree filters.
async fn publish_enrollments(
    transaction: &DatabaseTransaction,
    event_type: &'static str,
    enrollments: &[&Enrollment],
) -> Result<()> {
    if enrollments.is_empty() {
        return Ok(());
    }
    let person_ids = enrollments
        .iter()
        .map(|enrollment| enrollment.person_id.clone())
        .collect();
    let paths = super::person::organization_paths_of_people(transaction, person_ids).await?;
    let events = enrollments
        .iter()
        .map(|enrollment| NewEvent {
            event_type,
            subject_id: enrollment.id.clone(),
            person_id: Some(enrollment.person_id.clone()),
            organization_path: paths.get(&enrollment.person_id).cloned(),
            payload: serde_json::json!({
                "enrollment_id": enrollment.id,
                "cohort_id": enrollment.cohort_id,
                "programme_id": enrollment.programme_id,
                "person_id": enrollment.person_id,
                "state": enrollment.state.as_str(),
                "withdraw_reason": enrollment.withdraw_reason,
            }),
        })
        .collect();
    super::event::append(transaction, events).await
}

/// What happened to one person of an enrolment call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollOutcome {
    /// The person.
    pub person_id: String,
    /// The enrolment made (or reactivated), if any.
    pub enrollment_id: Option<String>,
    /// Why not: the rule's reason and message.
    pub refusal: Option<(Reason, String)>,
    /// What blocks, with a refusal: keys among `domain::programme::REFUSAL_METADATA_KEYS`
    /// (absent from outcomes stored before refusals named it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusal_metadata: Vec<(String, String)>,
}

/// An enrolment call's answer, with the enrolments it made.
#[derive(Debug, Clone)]
pub struct EnrollResult {
    /// Per person, in request order.
    pub outcomes: Vec<EnrollOutcome>,
    /// The enrolments made, by id.
    pub enrollments: HashMap<String, Enrollment>,
}

fn refusal(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal::new(reason, message)
}

/// Enrols `person_ids` in a locked cohort; one outcome per person.
pub(crate) async fn enroll_in_transaction(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    cohort_id: &str,
    person_ids: &[String],
) -> Result<EnrollResult> {
    let mut cohort = lock_cohort(transaction, cohort_id).await?;
    let programme = load_programme(transaction, &cohort.programme_id).await?;
    let pinned = programme.pinned_course_version_ids();
    if let Some(archived) = version_rows(transaction, &pinned)
        .await?
        .into_iter()
        .find(|row| row.course_state == "ARCHIVED")
    {
        return Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::CourseArchived,
            subject: format!("course_version/{}", archived.id),
            message: "a course of this programme is archived; it takes no new enrolments"
                .to_owned(),
        });
    }
    let mut counts = seat_counts(transaction, cohort_id).await?;

    let people: HashMap<String, people::Model> = people::Entity::find()
        .filter(people::Column::Id.is_in(person_ids.iter().cloned()))
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|person| (person.id.clone(), person))
        .collect();
    let organization_ids: HashSet<String> = people
        .values()
        .map(|person| person.organization_id.clone())
        .collect();
    let paths: HashMap<String, String> = organizations::Entity::find()
        .filter(organizations::Column::Id.is_in(organization_ids))
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|organization| (organization.id, organization.path))
        .collect();
    let mut existing: HashMap<String, Enrollment> = HashMap::new();
    for model in enrollments::Entity::find()
        .filter(enrollments::Column::CohortId.eq(cohort_id))
        .filter(enrollments::Column::PersonId.is_in(person_ids.iter().cloned()))
        .all(transaction)
        .await
        .map_err(db_error)?
    {
        let enrollment = enrollment_from(model)?;
        existing.insert(enrollment.person_id.clone(), enrollment);
    }

    let now = crate::domain::now();
    let mut seen = HashSet::new();
    let mut outcomes = Vec::with_capacity(person_ids.len());
    let mut made: HashMap<String, Enrollment> = HashMap::new();
    let mut inserts = Vec::new();
    let mut changes = Vec::new();
    let mut moves: Vec<(Option<Enrollment>, Enrollment)> = Vec::new();
    for person_id in person_ids {
        let decision = (|| {
            if !seen.insert(person_id.clone()) {
                return Err(refusal(
                    Reason::DuplicateInBatch,
                    "this person appears earlier in the same request",
                ));
            }
            let person = people.get(person_id).ok_or_else(|| {
                refusal(
                    Reason::PersonNotFound,
                    format!("person {person_id} not found"),
                )
            })?;
            let path = paths
                .get(&person.organization_id)
                .map(String::as_str)
                .unwrap_or_default();
            if existing
                .get(person_id)
                .is_some_and(|enrollment| enrollment.state != EnrollmentState::Withdrawn)
            {
                return Err(refusal(
                    Reason::AlreadyEnrolled,
                    "the person is already enrolled in this cohort",
                ));
            }
            let status = PersonStatus::parse(&person.status).unwrap_or(PersonStatus::Inactive);
            check_admissible(&cohort, programme.state, status, path)?;
            let category = CategoryCode::from_stored(person.category.clone());
            let placement = place(&cohort, &counts, &category)?;
            Ok((category, placement))
        })();
        let (category, placement) = match decision {
            Ok(decision) => decision,
            Err(refusal) => {
                outcomes.push(EnrollOutcome {
                    person_id: person_id.clone(),
                    enrollment_id: None,
                    refusal_metadata: refusal
                        .metadata
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), value.clone()))
                        .collect(),
                    refusal: Some((refusal.reason, refusal.message)),
                });
                continue;
            }
        };
        let state = match placement {
            Placement::Seat => {
                counts.add(&category, 1);
                cohort.enrolled_count += 1;
                EnrollmentState::Enrolled
            }
            Placement::Waitlist => {
                cohort.waitlisted_count += 1;
                EnrollmentState::Waitlisted
            }
        };
        let organization_id = people
            .get(person_id)
            .map(|person| person.organization_id.clone())
            .unwrap_or_default();
        let enrollment = match existing.remove(person_id) {
            Some(mut withdrawn) => {
                let before = withdrawn.clone();
                withdrawn.state = state;
                withdrawn.category = category;
                withdrawn.organization_id = organization_id;
                withdrawn.course_version_ids = pinned.clone();
                withdrawn.enrolled_time = now;
                withdrawn.withdrawn_time = None;
                withdrawn.withdraw_reason = None;
                withdrawn.revision += 1;
                withdrawn.update_time = now;
                super::progress_cache::touch(&withdrawn.id, &withdrawn.cohort_id);
                enrollments::Entity::update(enrollment_active(&withdrawn))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                moves.push((Some(before), withdrawn.clone()));
                withdrawn
            }
            None => {
                let enrollment = Enrollment {
                    id: crate::domain::new_id(),
                    cohort_id: cohort.id.clone(),
                    programme_id: programme.id.clone(),
                    person_id: person_id.clone(),
                    organization_id,
                    category,
                    course_version_ids: pinned.clone(),
                    state,
                    waitlist_position: 0,
                    enrolled_time: now,
                    completed_time: None,
                    withdrawn_time: None,
                    withdraw_reason: None,
                    revision: 1,
                    create_time: now,
                    update_time: now,
                };
                super::progress_cache::touch(&enrollment.id, &enrollment.cohort_id);
                inserts.push(enrollment_active(&enrollment));
                moves.push((None, enrollment.clone()));
                enrollment
            }
        };
        changes.push(enrollment_change(&enrollment));
        outcomes.push(EnrollOutcome {
            person_id: person_id.clone(),
            enrollment_id: Some(enrollment.id.clone()),
            refusal: None,
            refusal_metadata: Vec::new(),
        });
        made.insert(enrollment.id.clone(), enrollment);
    }
    let mut pending = inserts.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<_> = pending.by_ref().take(500).collect();
        enrollments::Entity::insert_many(batch)
            .exec(transaction)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    Error::Aborted {
                        reason: Reason::ConcurrentEnrolment,
                        message: "a person of this request was enrolled concurrently; retry"
                            .to_owned(),
                        metadata: Vec::new(),
                    }
                } else {
                    db_error(error)
                }
            })?;
    }
    if !changes.is_empty() {
        save_cohort(transaction, &mut cohort).await?;
        changes.push(cohort_change(&cohort));
    }
    audit::append(transaction, context, changes).await?;
    super::report::record_moves(transaction, &moves).await?;
    let mut made_list: Vec<&Enrollment> = made.values().collect();
    made_list.sort_by(|a, b| a.id.cmp(&b.id));
    publish_enrollments(transaction, "enrollment.created", &made_list).await?;
    Ok(EnrollResult {
        outcomes,
        enrollments: made,
    })
}

impl Store {
    /// Creates a programme with its phases.
    pub async fn create_programme(
        &self,
        context: AuditContext,
        new: NewProgramme,
        key: Option<RequestKey>,
    ) -> Result<Programme> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let mut organizations = vec![new.sponsor_organization_id.clone()];
                    organizations.extend(new.partner_organization_ids.iter().cloned());
                    require_organizations(transaction, &organizations).await?;
                    require_published_versions(transaction, &new.phases).await?;
                    // Looked up first so the refusal names the programme holding the code.
                    let taken = programmes::Entity::find()
                        .filter(programmes::Column::Code.eq(new.code.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?;
                    if let Some(taken) = taken {
                        return Err(code_taken("programme", &new.code, Some(taken.id)));
                    }
                    let now = crate::domain::now();
                    let programme = Programme {
                        id: crate::domain::new_id(),
                        code: new.code,
                        title: new.title,
                        description: new.description,
                        sponsor_organization_id: new.sponsor_organization_id,
                        partner_organization_ids: new.partner_organization_ids,
                        phases: new
                            .phases
                            .into_iter()
                            .enumerate()
                            .map(|(index, draft)| {
                                PhaseDraft { id: None, ..draft }.into_phase(index as i32 + 1)
                            })
                            .collect(),
                        state: ProgrammeState::Active,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    programmes::Entity::insert(programmes::ActiveModel {
                        id: Set(programme.id.clone()),
                        code: Set(programme.code.clone()),
                        title: Set(programme.title.clone()),
                        description: Set(programme.description.clone()),
                        sponsor_organization_id: Set(programme.sponsor_organization_id.clone()),
                        partner_organization_ids: Set(json_list(
                            &programme.partner_organization_ids,
                        )),
                        state: Set(programme.state.as_str().to_owned()),
                        revision: Set(1),
                        create_time: Set(now),
                        update_time: Set(now),
                    })
                    .exec(transaction)
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            code_taken("programme", &programme.code, None)
                        } else {
                            db_error(error)
                        }
                    })?;
                    write_phases(transaction, &programme.id, &programme.phases).await?;
                    audit::append(transaction, &context, vec![programme_change(&programme)])
                        .await?;
                    let answer = StoredAnswer::created(&programme.id);
                    Ok((programme, answer))
                })
            },
            |answer| async move { self.get_programme(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one programme.
    pub async fn get_programme(&self, id: &str) -> Result<Programme> {
        load_programme(self.connection(), id).await
    }

    /// Lists programmes by id after the page's key.
    pub async fn list_programmes(
        &self,
        filter: &ProgrammeFilter,
        page: &Page,
    ) -> Result<(Vec<Programme>, String)> {
        // One reader for the whole call, so its reads agree with each other.
        let reader = self.reader();
        let mut query = programmes::Entity::find();
        if let Some(sponsor) = &filter.sponsor_organization_id {
            query = query.filter(programmes::Column::SponsorOrganizationId.eq(sponsor.as_str()));
        }
        if let Some(state) = filter.state {
            query = query.filter(programmes::Column::State.eq(state.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(programmes::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(programmes::Column::Id)
            .limit(page.size + 1)
            .all(&reader)
            .await
            .map_err(db_error)?;
        let programmes = load_programmes(&reader, rows).await?;
        Ok(page.finish(programmes, |programme| programme.id.clone()))
    }

    /// Applies `patch` to a programme (or archives it when `archive` is set).
    pub async fn update_programme(
        &self,
        context: AuditContext,
        id: String,
        patch: ProgrammePatch,
        archive: bool,
        expected_revision: Option<i64>,
    ) -> Result<Programme> {
        self.write(move |transaction| {
            Box::pin(async move {
                let locked = for_update(programmes::Entity::find_by_id(id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("programme", &id))?;
                let mut programme = load_programmes(transaction, vec![locked])
                    .await?
                    .pop()
                    .ok_or_else(|| Error::internal("loaded programme vanished"))?;
                if expected_revision.is_some_and(|revision| revision != programme.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "programme",
                        id,
                    });
                }
                let before = programme.clone();
                if archive {
                    programme.state = ProgrammeState::Archived;
                } else if programme.state == ProgrammeState::Archived {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::ProgrammeArchived,
                        subject: format!("programme/{id}"),
                        message: "an archived programme cannot change".to_owned(),
                    });
                }
                if let Some(title) = patch.title {
                    programme.title = title;
                }
                if let Some(description) = patch.description {
                    programme.description = description;
                }
                if let Some(partners) = patch.partner_organization_ids {
                    require_organizations(transaction, &partners).await?;
                    programme.partner_organization_ids = partners;
                }
                let phases_changed = patch.phases.is_some();
                if let Some(drafts) = patch.phases {
                    require_published_versions(transaction, &drafts).await?;
                    let known: HashSet<&str> = before
                        .phases
                        .iter()
                        .map(|phase| phase.id.as_str())
                        .collect();
                    if let Some(unknown) = drafts
                        .iter()
                        .filter_map(|draft| draft.id.as_deref())
                        .find(|id| !known.contains(id))
                    {
                        return Err(Error::invalid(
                            "programme.phases",
                            format!("phase {unknown} is not a phase of this programme"),
                        ));
                    }
                    programme.phases = drafts
                        .into_iter()
                        .enumerate()
                        .map(|(index, draft)| draft.into_phase(index as i32 + 1))
                        .collect();
                }
                if programme == before {
                    return Ok(programme);
                }
                programme.revision += 1;
                programme.update_time = crate::domain::now();
                programmes::Entity::update(programmes::ActiveModel {
                    id: Set(programme.id.clone()),
                    title: Set(programme.title.clone()),
                    description: Set(programme.description.clone()),
                    partner_organization_ids: Set(json_list(&programme.partner_organization_ids)),
                    state: Set(programme.state.as_str().to_owned()),
                    revision: Set(programme.revision),
                    update_time: Set(programme.update_time),
                    ..Default::default()
                })
                .exec(transaction)
                .await
                .map_err(db_error)?;
                if phases_changed {
                    write_phases(transaction, &programme.id, &programme.phases).await?;
                    // Windows of phases that no longer exist go with them.
                    let kept: Vec<String> = programme
                        .phases
                        .iter()
                        .map(|phase| phase.id.clone())
                        .collect();
                    let cohorts_of_programme = Query::select()
                        .column(cohorts::Column::Id)
                        .from(cohorts::Entity)
                        .and_where(cohorts::Column::ProgrammeId.eq(programme.id.as_str()))
                        .to_owned();
                    cohort_phase_windows::Entity::delete_many()
                        .filter(
                            cohort_phase_windows::Column::CohortId
                                .in_subquery(cohorts_of_programme),
                        )
                        .filter(cohort_phase_windows::Column::PhaseId.is_not_in(kept))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                }
                audit::append(transaction, &context, vec![programme_change(&programme)]).await?;
                Ok(programme)
            })
        })
        .await
    }

    /// Creates a cohort of a programme, PLANNED.
    pub async fn create_cohort(
        &self,
        context: AuditContext,
        programme_id: String,
        mut settings: CohortSettings,
        key: Option<RequestKey>,
    ) -> Result<Cohort> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let programme = load_programme(transaction, &programme_id).await?;
                    check_phase_windows("cohort", &mut settings, &programme.phases)?;
                    if programme.state == ProgrammeState::Archived {
                        return Err(Error::FailedPrecondition {
                            metadata: Vec::new(),
                            reason: Reason::ProgrammeArchived,
                            subject: format!("programme/{programme_id}"),
                            message: "an archived programme takes no new cohorts".to_owned(),
                        });
                    }
                    require_organizations(transaction, &settings.eligible_organization_ids).await?;
                    super::category::require_seat_categories(
                        transaction,
                        "cohort.category_seats",
                        &settings.category_seats,
                        &[],
                    )
                    .await?;
                    let now = crate::domain::now();
                    let cohort = Cohort {
                        id: crate::domain::new_id(),
                        programme_id,
                        settings,
                        state: CohortState::Planned,
                        enrolled_count: 0,
                        waitlisted_count: 0,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    cohorts::Entity::insert(cohort_active(&cohort))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    write_windows(transaction, &cohort).await?;
                    audit::append(transaction, &context, vec![cohort_change(&cohort)]).await?;
                    let answer = StoredAnswer::created(&cohort.id);
                    Ok((cohort, answer))
                })
            },
            |answer| async move { self.get_cohort(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one cohort.
    pub async fn get_cohort(&self, id: &str) -> Result<Cohort> {
        let model = cohorts::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("cohort", id))?;
        let mut cohort = [cohort_from(model)?];
        attach_windows(self.connection(), &mut cohort).await?;
        let [cohort] = cohort;
        Ok(cohort)
    }

    /// Lists cohorts by id after the page's key.
    pub async fn list_cohorts(
        &self,
        filter: &CohortFilter,
        page: &Page,
    ) -> Result<(Vec<Cohort>, String)> {
        let mut query = cohorts::Entity::find();
        if let Some(programme_id) = &filter.programme_id {
            query = query.filter(cohorts::Column::ProgrammeId.eq(programme_id.as_str()));
        }
        if let Some(state) = filter.state {
            query = query.filter(cohorts::Column::State.eq(state.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(cohorts::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(cohorts::Column::Id)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let mut cohorts = rows
            .into_iter()
            .map(cohort_from)
            .collect::<Result<Vec<_>>>()?;
        attach_windows(&self.reader(), &mut cohorts).await?;
        Ok(page.finish(cohorts, |cohort| cohort.id.clone()))
    }

    /// Applies the settings named in `fields` from `raw` to a cohort; freed places go to the waitlist.
    pub async fn update_cohort(
        &self,
        context: AuditContext,
        id: String,
        fields: Vec<CohortField>,
        raw: RawCohortSettings,
        expected_revision: Option<i64>,
    ) -> Result<Cohort> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut cohort = lock_cohort(transaction, &id).await?;
                if expected_revision.is_some_and(|revision| revision != cohort.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "cohort",
                        id,
                    });
                }
                let previous_seats = cohort.settings.category_seats.clone();
                if !cohort.settings.apply("cohort", &fields, &raw)? {
                    return Ok(cohort);
                }
                super::category::require_seat_categories(
                    transaction,
                    "cohort.category_seats",
                    &cohort.settings.category_seats,
                    &previous_seats,
                )
                .await?;
                let windows_changed = fields.contains(&CohortField::PhaseWindows);
                if windows_changed {
                    let programme = load_programme(transaction, &cohort.programme_id).await?;
                    check_phase_windows("cohort", &mut cohort.settings, &programme.phases)?;
                }
                require_organizations(transaction, &cohort.settings.eligible_organization_ids)
                    .await?;
                let mut counts = seat_counts(transaction, &id).await?;
                let below_capacity = cohort.settings.capacity < counts.taken;
                let below_seats =
                    cohort
                        .settings
                        .category_seats
                        .iter()
                        .any(|(category, seats)| {
                            counts.by_category.get(category).copied().unwrap_or(0) > *seats
                        });
                if below_capacity || below_seats {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::PlacesAlreadyTaken,
                        subject: format!("cohort/{id}"),
                        message: format!(
                            "capacity or category seats would drop below the {} places already taken",
                            counts.taken
                        ),
                    });
                }
                let mut changes = Vec::new();
                let promoted =
                    promote_waitlisted(transaction, &mut cohort, &mut counts, &mut changes).await?;
                save_cohort(transaction, &mut cohort).await?;
                if windows_changed {
                    write_windows(transaction, &cohort).await?;
                }
                changes.push(cohort_change(&cohort));
                audit::append(transaction, &context, changes).await?;
                let promoted: Vec<&Enrollment> = promoted.iter().collect();
                publish_enrollments(transaction, "enrollment.promoted", &promoted).await?;
                Ok(cohort)
            })
        })
        .await
    }

    /// Moves a cohort to `state`.
    pub async fn change_cohort_state(
        &self,
        context: AuditContext,
        id: String,
        state: CohortState,
        expected_revision: Option<i64>,
    ) -> Result<Cohort> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut cohort = lock_cohort(transaction, &id).await?;
                if expected_revision.is_some_and(|revision| revision != cohort.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "cohort",
                        id,
                    });
                }
                check_cohort_transition(&id, cohort.state, state)?;
                if cohort.state == state {
                    return Ok(cohort);
                }
                let from = cohort.state;
                cohort.state = state;
                save_cohort(transaction, &mut cohort).await?;
                audit::append(transaction, &context, vec![cohort_change(&cohort)]).await?;
                publish_cohort_change(transaction, &cohort, from, false).await?;
                Ok(cohort)
            })
        })
        .await
    }

    /// Enrols people in a cohort in one transaction; with a request key, a replay returns the first answer.
    pub async fn enroll(
        &self,
        context: AuditContext,
        cohort_id: String,
        person_ids: Vec<String>,
        key: Option<RequestKey>,
    ) -> Result<EnrollResult> {
        let mut result = self
            .write_once(
                key,
                move |transaction| {
                    Box::pin(async move {
                        let result =
                            enroll_in_transaction(transaction, &context, &cohort_id, &person_ids)
                                .await?;
                        let response =
                            serde_json::to_string(&result.outcomes).map_err(Error::internal)?;
                        let answer = StoredAnswer {
                            resource_id: None,
                            response: Some(response),
                        };
                        Ok((result, answer))
                    })
                },
                |answer| self.replayed_enrollments(answer),
            )
            .await?;
        // Positions are read after the commit, for a first call and a replay alike.
        let mut list: Vec<Enrollment> = result
            .enrollments
            .drain()
            .map(|(_, enrollment)| enrollment)
            .collect();
        fill_waitlist_positions(self.connection(), &mut list).await?;
        result.enrollments = list
            .into_iter()
            .map(|enrollment| (enrollment.id.clone(), enrollment))
            .collect();
        Ok(result)
    }

    /// Rebuilds the result of an earlier enrol call from its stored outcomes (waitlist positions
    /// are left to the caller).
    async fn replayed_enrollments(&self, answer: StoredAnswer) -> Result<EnrollResult> {
        let response = answer
            .response
            .ok_or_else(|| Error::internal("stored answer has no response"))?;
        let outcomes: Vec<EnrollOutcome> =
            serde_json::from_str(&response).map_err(Error::internal)?;
        let ids: Vec<String> = outcomes
            .iter()
            .filter_map(|outcome| outcome.enrollment_id.clone())
            .collect();
        let list = enrollments::Entity::find()
            .filter(enrollments::Column::Id.is_in(ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(enrollment_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(EnrollResult {
            outcomes,
            enrollments: list
                .into_iter()
                .map(|enrollment| (enrollment.id.clone(), enrollment))
                .collect(),
        })
    }

    /// Withdraws an enrolment; a freed place goes to the first fitting person on the waitlist.
    pub async fn withdraw(
        &self,
        context: AuditContext,
        id: String,
        reason: String,
        expected_revision: Option<i64>,
    ) -> Result<Enrollment> {
        let mut withdrawn = self
            .write(move |transaction| {
                Box::pin(async move {
                    let model = enrollments::Entity::find_by_id(id.clone())
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::not_found("enrollment", &id))?;
                    let mut cohort = lock_cohort(transaction, &model.cohort_id).await?;
                    // Re-read under the cohort lock: a concurrent withdrawal may have won.
                    let model = enrollments::Entity::find_by_id(id.clone())
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::not_found("enrollment", &id))?;
                    let mut enrollment = enrollment_from(model)?;
                    if expected_revision.is_some_and(|revision| revision != enrollment.revision) {
                        return Err(Error::EtagMismatch {
                            resource: "enrollment",
                            id,
                        });
                    }
                    check_withdrawable(&enrollment)?;
                    let held_place = enrollment.state.holds_place();
                    let before = enrollment.clone();
                    let now = crate::domain::now();
                    enrollment.state = EnrollmentState::Withdrawn;
                    enrollment.withdrawn_time = Some(now);
                    enrollment.withdraw_reason = Some(reason);
                    enrollment.revision += 1;
                    enrollment.update_time = now;
                    super::progress_cache::touch(&enrollment.id, &enrollment.cohort_id);
                    enrollments::Entity::update(enrollment_active(&enrollment))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    let mut changes = vec![enrollment_change(&enrollment)];
                    super::report::record_moves(transaction, &[(Some(before), enrollment.clone())])
                        .await?;
                    let mut promoted = Vec::new();
                    if held_place {
                        cohort.enrolled_count -= 1;
                        let mut counts = seat_counts(transaction, &cohort.id).await?;
                        promoted =
                            promote_waitlisted(transaction, &mut cohort, &mut counts, &mut changes)
                                .await?;
                    } else {
                        cohort.waitlisted_count -= 1;
                    }
                    save_cohort(transaction, &mut cohort).await?;
                    changes.push(cohort_change(&cohort));
                    audit::append(transaction, &context, changes).await?;
                    publish_enrollments(transaction, "enrollment.withdrawn", &[&enrollment])
                        .await?;
                    let promoted: Vec<&Enrollment> = promoted.iter().collect();
                    publish_enrollments(transaction, "enrollment.promoted", &promoted).await?;
                    Ok(enrollment)
                })
            })
            .await?;
        withdrawn.waitlist_position = 0;
        Ok(withdrawn)
    }

    /// Returns one enrolment and the materialised path of the person's organisation.
    pub async fn get_enrollment(&self, id: &str) -> Result<(Enrollment, String)> {
        let model = enrollments::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("enrollment", id))?;
        let mut list = vec![enrollment_from(model)?];
        fill_waitlist_positions(self.connection(), &mut list).await?;
        let enrollment = list.remove(0);
        let path = person_organization_path(self.connection(), &enrollment.person_id).await?;
        Ok((enrollment, path))
    }

    /// Lists enrolments by id after the page's key.
    pub async fn list_enrollments(
        &self,
        filter: &EnrollmentFilter,
        page: &Page,
    ) -> Result<(Vec<Enrollment>, String)> {
        // One reader for the whole call, so its reads agree with each other.
        let reader = self.reader();
        let mut query = enrollments::Entity::find();
        if let Some(cohort_id) = &filter.cohort_id {
            query = query.filter(enrollments::Column::CohortId.eq(cohort_id.as_str()));
        }
        if let Some(person_id) = &filter.person_id {
            query = query.filter(enrollments::Column::PersonId.eq(person_id.as_str()));
        }
        if let Some(state) = filter.state {
            query = query.filter(enrollments::Column::State.eq(state.as_str()));
        }
        if let Some(prefix) = &filter.organization_path_prefix {
            query = query.filter(enrollments::Column::PersonId.in_subquery(people_under(prefix)));
        }
        if let Some(visibility) = &filter.visibility {
            query = query.filter(visible_rows(
                visibility,
                "enrollments",
                "person_id",
                Some("cohort_id"),
                None,
            ));
        }
        if let Some(after) = &page.after {
            query = query.filter(enrollments::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(enrollments::Column::Id)
            .limit(page.size + 1)
            .all(&reader)
            .await
            .map_err(db_error)?;
        let mut list = rows
            .into_iter()
            .map(enrollment_from)
            .collect::<Result<Vec<_>>>()?;
        fill_waitlist_positions(&reader, &mut list).await?;
        Ok(page.finish(list, |enrollment| enrollment.id.clone()))
    }
}

impl Store {
    /// Returns who the enrolments `ids` are about, by enrolment id (missing ones are absent).
    pub async fn enrollment_owners(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, EnrollmentOwner>> {
        let mut owners = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let query = Query::select()
                .expr_as(
                    Expr::col((enrollments::Entity, enrollments::Column::Id)),
                    Alias::new("id"),
                )
                .expr_as(
                    Expr::col((enrollments::Entity, enrollments::Column::PersonId)),
                    Alias::new("person_id"),
                )
                .expr_as(
                    Expr::col((enrollments::Entity, enrollments::Column::CohortId)),
                    Alias::new("cohort_id"),
                )
                .expr_as(
                    Expr::col((organizations::Entity, organizations::Column::Path)),
                    Alias::new("organization_path"),
                )
                .from(enrollments::Entity)
                .inner_join(
                    people::Entity,
                    Expr::col((people::Entity, people::Column::Id))
                        .equals((enrollments::Entity, enrollments::Column::PersonId)),
                )
                .inner_join(
                    organizations::Entity,
                    Expr::col((organizations::Entity, organizations::Column::Id))
                        .equals((people::Entity, people::Column::OrganizationId)),
                )
                .and_where(
                    Expr::col((enrollments::Entity, enrollments::Column::Id)).is_in(chunk.to_vec()),
                )
                .to_owned();
            let rows = EnrollmentOwner::find_by_statement(self.backend().build(&query))
                .all(self.connection())
                .await
                .map_err(db_error)?;
            owners.extend(rows.into_iter().map(|row| (row.id.clone(), row)));
        }
        Ok(owners)
    }

    /// Returns who enrolment `id` is about.
    pub async fn enrollment_owner(&self, id: &str) -> Result<EnrollmentOwner> {
        self.enrollment_owners(&[id.to_owned()])
            .await?
            .remove(id)
            .ok_or_else(|| Error::not_found("enrollment", id))
    }

    /// Returns the organisation paths of the people `ids`, by person id (missing ones are absent).
    pub async fn person_paths(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        let mut paths = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let people: Vec<people::Model> = people::Entity::find()
                .filter(people::Column::Id.is_in(chunk.iter().cloned()))
                .all(self.connection())
                .await
                .map_err(db_error)?;
            let organization_ids: HashSet<String> = people
                .iter()
                .map(|person| person.organization_id.clone())
                .collect();
            let by_organization: HashMap<String, String> = organizations::Entity::find()
                .filter(organizations::Column::Id.is_in(organization_ids))
                .all(self.connection())
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|organization| (organization.id, organization.path))
                .collect();
            for person in people {
                if let Some(path) = by_organization.get(&person.organization_id) {
                    paths.insert(person.id, path.clone());
                }
            }
        }
        Ok(paths)
    }

    /// Returns the organisation path of person `id`.
    pub async fn person_path(&self, id: &str) -> Result<String> {
        person_organization_path(self.connection(), id).await
    }
}

pub(crate) async fn person_organization_path(
    connection: &impl ConnectionTrait,
    person_id: &str,
) -> Result<String> {
    let person = people::Entity::find_by_id(person_id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("person", person_id))?;
    Ok(
        super::organization::load(connection, &person.organization_id)
            .await?
            .path,
    )
}

// ---------------------------------------------------------------------------------------------
// Due-date reminders

/// Enrolments reminded per sweep transaction.
const DUE_SWEEP_BATCH: u64 = 500;

impl Store {
    /// Publishes one `enrollment.due` event per unfinished enrolment (ENROLLED or IN_PROGRESS)
    /// and reminder offset (`days_before` its cohort's end date, e.g. 7 and 1) it has reached,
    /// judged on `today` (UTC); returns how many.
    ///
    /// Only the nearest offset reached is sent (an enrolment first seen 3 days before the end
    /// gets the 7-day reminder, then the 1-day one, never a backlog), and each once across replicas:
    /// the reminder rows are inserted with the events, and a batch whose rows another sweep
    /// inserted in the meantime (the insert then waits for it and adds fewer rows) rolls back
    /// instead of announcing twice. Enrolment rows are not locked, so progress is never held up.
    pub async fn publish_due_reminders(
        &self,
        today: chrono::NaiveDate,
        days_before: &[u32],
    ) -> Result<usize> {
        let mut offsets: Vec<i64> = days_before.iter().map(|&days| i64::from(days)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let mut total = 0;
        let mut nearer = -1;
        for offset in offsets {
            loop {
                let announced = self
                    .write(move |transaction| {
                        Box::pin(announce_due(transaction, today, nearer, offset))
                    })
                    .await;
                let announced = match announced {
                    // Another replica is sweeping the same reminders: it announces them.
                    Err(Error::Aborted { reason, .. }) if reason == super::CONCURRENT_SWEEP => 0,
                    other => other?,
                };
                total += announced;
                if (announced as u64) < DUE_SWEEP_BATCH {
                    break;
                }
            }
            nearer = offset;
        }
        Ok(total)
    }
}

/// Marks and announces one batch of `offset`-day due reminders in `transaction`: unfinished
/// enrolments whose cohort ends after `nearer` and within `offset` days of `today` (the end date
/// itself counts as 0 days) and that have no reminder at this offset or a nearer one yet.
async fn announce_due(
    transaction: &DatabaseTransaction,
    today: chrono::NaiveDate,
    nearer: i64,
    offset: i64,
) -> Result<usize> {
    use super::entity::programme::enrollment_reminders as reminders;

    let date = |days: i64| (today + chrono::Duration::days(days)).to_string();
    let ending = Query::select()
        .column(cohorts::Column::Id)
        .from(cohorts::Entity)
        .and_where(Expr::col(cohorts::Column::EndDate).gt(date(nearer)))
        .and_where(Expr::col(cohorts::Column::EndDate).lte(date(offset)))
        .to_owned();
    let reminded = Query::select()
        .column(reminders::Column::EnrollmentId)
        .from(reminders::Entity)
        .and_where(Expr::col(reminders::Column::DaysBefore).lte(offset))
        .to_owned();
    let due = enrollments::Entity::find()
        .filter(enrollments::Column::CohortId.in_subquery(ending))
        .filter(enrollments::Column::State.is_in([
            EnrollmentState::Enrolled.as_str(),
            EnrollmentState::InProgress.as_str(),
        ]))
        .filter(enrollments::Column::Id.not_in_subquery(reminded))
        .order_by_asc(enrollments::Column::Id)
        .limit(DUE_SWEEP_BATCH)
        .all(transaction)
        .await
        .map_err(db_error)?;
    if due.is_empty() {
        return Ok(0);
    }
    let now = crate::domain::now();
    let days = i32::try_from(offset).map_err(Error::internal)?;
    let inserted = reminders::Entity::insert_many(due.iter().map(|model| reminders::ActiveModel {
        enrollment_id: Set(model.id.clone()),
        days_before: Set(days),
        announced_time: Set(now),
    }))
    .on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            reminders::Column::EnrollmentId,
            reminders::Column::DaysBefore,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(transaction)
    .await
    .map_err(db_error)?;
    if inserted != due.len() as u64 {
        return Err(Error::Aborted {
            reason: super::CONCURRENT_SWEEP,
            message: "enrolments were reminded by another sweep in the meantime; batch rolled back"
                .to_owned(),
            metadata: Vec::new(),
        });
    }
    let cohort_ids: HashSet<String> = due.iter().map(|model| model.cohort_id.clone()).collect();
    let end_dates: HashMap<String, Option<String>> = cohorts::Entity::find()
        .filter(cohorts::Column::Id.is_in(cohort_ids))
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|cohort| (cohort.id, cohort.end_date))
        .collect();
    let paths = super::person::organization_paths_of_people(
        transaction,
        due.iter().map(|model| model.person_id.clone()).collect(),
    )
    .await?;
    let events = due
        .iter()
        .map(|model| NewEvent {
            event_type: "enrollment.due",
            subject_id: model.id.clone(),
            person_id: Some(model.person_id.clone()),
            organization_path: paths.get(&model.person_id).cloned(),
            payload: serde_json::json!({
                "enrollment_id": model.id,
                "cohort_id": model.cohort_id,
                "programme_id": model.programme_id,
                "person_id": model.person_id,
                "state": model.state,
                "end_date": end_dates.get(&model.cohort_id).cloned().flatten(),
                "days_before": offset,
            }),
        })
        .collect();
    super::event::append(transaction, events).await?;
    Ok(due.len())
}

// ---------------------------------------------------------------------------------------------
// Scheduled cohort transitions

/// Cohorts moved per sweep transaction.
const COHORT_SWEEP_BATCH: u64 = 200;
/// Who the audit log names for a move the schedule made.
const SCHEDULE_ACTOR: &str = "system:cohort-schedule";

impl Store {
    /// Moves every cohort with `schedule.auto_advance` whose dates make a later state due on
    /// `today` (UTC) to that state (see [`scheduled_transition`]), each with the audit entry and
    /// the `cohort.changed` event of a `ChangeCohortState`; returns how many moved.
    ///
    /// Each move happens once, also with several replicas sweeping at the same moment, as the
    /// certificate expiry sweep: due cohorts are selected `FOR UPDATE SKIP LOCKED` on PostgreSQL
    /// (a cohort another sweep or a manual change holds is left to the next sweep) and serially on
    /// SQLite, and the state is written by `UPDATE ... WHERE id = ? AND state = <old> AND
    /// revision = <read>`; should that touch no row, the batch rolls back with CONCURRENT_SWEEP,
    /// which the sweep treats as "another replica did it".
    pub async fn advance_scheduled_cohorts(&self, today: chrono::NaiveDate) -> Result<usize> {
        let mut total = 0;
        loop {
            let moved = self
                .write(move |transaction| Box::pin(advance_due_cohorts(transaction, today)))
                .await;
            let moved = match moved {
                // Another replica is moving the same cohorts: it publishes their events.
                Err(Error::Aborted { reason, .. }) if reason == super::CONCURRENT_SWEEP => 0,
                other => other?,
            };
            total += moved;
            if (moved as u64) < COHORT_SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Moves one batch of due auto-advancing cohorts in `transaction`; returns how many.
async fn advance_due_cohorts(
    transaction: &DatabaseTransaction,
    today: chrono::NaiveDate,
) -> Result<usize> {
    use sea_orm::Condition;
    use sea_orm::sea_query::LockBehavior;

    let day = today.format("%Y-%m-%d").to_string();
    let state = |state: CohortState| state.as_str().to_owned();
    // Dates are stored as `YYYY-MM-DD` text, which orders like the dates.
    let due = Condition::any()
        .add(
            Condition::all()
                .add(cohorts::Column::State.eq(state(CohortState::Planned)))
                .add(cohorts::Column::EnrollmentOpenDate.lte(day.as_str())),
        )
        .add(
            Condition::all()
                .add(
                    cohorts::Column::State
                        .is_in([state(CohortState::Planned), state(CohortState::Open)]),
                )
                .add(cohorts::Column::StartDate.lte(day.as_str())),
        )
        .add(cohorts::Column::EndDate.lt(day.as_str()));
    let mut select = cohorts::Entity::find()
        .filter(cohorts::Column::AutoAdvance.eq(true))
        .filter(cohorts::Column::State.ne(state(CohortState::Closed)))
        .filter(due)
        .order_by_asc(cohorts::Column::Id)
        .limit(COHORT_SWEEP_BATCH);
    if transaction.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut due_cohorts = select
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(cohort_from)
        .collect::<Result<Vec<_>>>()?;
    if due_cohorts.is_empty() {
        return Ok(0);
    }
    attach_windows(transaction, &mut due_cohorts).await?;
    let context = AuditContext {
        actor: SCHEDULE_ACTOR.to_owned(),
        action: "lms.v1.ProgrammeService/ChangeCohortState".to_owned(),
        request_id: None,
    };
    let mut moved = 0;
    for mut cohort in due_cohorts {
        let Some(target) = scheduled_transition(cohort.state, &cohort.settings, today) else {
            continue;
        };
        check_cohort_transition(&cohort.id, cohort.state, target)?;
        let from = cohort.state;
        let read_revision = cohort.revision;
        cohort.state = target;
        cohort.revision += 1;
        cohort.update_time = crate::domain::now();
        let updated = cohorts::Entity::update_many()
            .col_expr(cohorts::Column::State, Expr::value(target.as_str()))
            .col_expr(cohorts::Column::Revision, Expr::value(cohort.revision))
            .col_expr(cohorts::Column::UpdateTime, Expr::value(cohort.update_time))
            .filter(cohorts::Column::Id.eq(cohort.id.as_str()))
            .filter(cohorts::Column::State.eq(from.as_str()))
            .filter(cohorts::Column::Revision.eq(read_revision))
            .exec(transaction)
            .await
            .map_err(db_error)?;
        if updated.rows_affected != 1 {
            return Err(Error::Aborted {
                reason: super::CONCURRENT_SWEEP,
                message:
                    "a cohort was moved by another sweep or call in the meantime; batch rolled back"
                        .to_owned(),
                metadata: vec![("cohort_id", cohort.id.clone())],
            });
        }
        audit::append(transaction, &context, vec![cohort_change(&cohort)]).await?;
        publish_cohort_change(transaction, &cohort, from, true).await?;
        tracing::info!(cohort = %cohort.id, from = from.as_str(), to = target.as_str(), "cohort advanced by its schedule");
        moved += 1;
    }
    Ok(moved)
}
