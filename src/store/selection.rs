//! Selection: calls, applications, panels with balanced conflict-free assignment, blind scores,
//! rankings from stored scores, and decisions that enrol the accepted in the same transaction.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DatabaseTransaction,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, sea_query::Query,
};

use super::entity::organizations;
use super::entity::people;
use super::entity::programme::{cohorts, enrollments};
use super::entity::selection::{
    selection_applications as applications, selection_assignments as assignments,
    selection_calls as calls, selection_panels as panels,
};
use super::idempotency::{RequestKey, StoredAnswer};
use super::programme::{enroll_in_transaction, enrollment_from, for_update};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::organization::path_is_within;
use crate::domain::page::Page;
use crate::domain::programme::{Enrollment, EnrollmentState};
use crate::domain::selection::{
    self, Application, ApplicationState, Assignment, Call, CallPatch, Criterion, Decision,
    JudgeSlot, NewCall, Panel, Question, RankInput, Ranked, Score, ScoreVisibility, StoredScore,
    Unassigned, Viewer, check_decidable, check_seats, conflict_error, in_conflict, load_range,
    not_assigned, not_your_panel, not_yours, rank, validate_answers, validate_scores,
    weighted_score,
};
use crate::error::{Error, Reason, Result};

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored {what} is not valid JSON: {error}")))
}

// ---------------------------------------------------------------------------------------------
// Calls

fn call_from(model: calls::Model) -> Result<Call> {
    let score_visibility = ScoreVisibility::parse(&model.score_visibility).ok_or_else(|| {
        Error::internal(format!(
            "stored score visibility {} is unknown",
            model.score_visibility
        ))
    })?;
    Ok(Call {
        score_visibility,
        questions: from_json::<Vec<Question>>(&model.questions, "questions")?,
        rubric: from_json::<Vec<Criterion>>(&model.rubric, "rubric")?,
        id: model.id,
        cohort_id: model.cohort_id,
        programme_id: model.programme_id,
        title: model.title,
        opens_time: model.opens_time,
        closes_time: model.closes_time,
        seats: model.seats,
        nomination_only: model.nomination_only,
        accepted_count: model.accepted_count,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn call_active(call: &Call) -> Result<calls::ActiveModel> {
    Ok(calls::ActiveModel {
        id: Set(call.id.clone()),
        cohort_id: Set(call.cohort_id.clone()),
        programme_id: Set(call.programme_id.clone()),
        title: Set(call.title.clone()),
        opens_time: Set(call.opens_time),
        closes_time: Set(call.closes_time),
        questions: Set(to_json(&call.questions)?),
        rubric: Set(to_json(&call.rubric)?),
        seats: Set(call.seats),
        nomination_only: Set(call.nomination_only),
        score_visibility: Set(call.score_visibility.as_str().to_owned()),
        accepted_count: Set(call.accepted_count),
        revision: Set(call.revision),
        create_time: Set(call.create_time),
        update_time: Set(call.update_time),
    })
}

fn call_change(call: &Call) -> AuditChange {
    AuditChange::new(
        "selection_call",
        &call.id,
        &serde_json::json!({
            "cohort_id": call.cohort_id, "title": call.title,
            "opens_time": call.opens_time.to_rfc3339(), "closes_time": call.closes_time.to_rfc3339(),
            "questions": call.questions, "rubric": call.rubric, "seats": call.seats,
            "nomination_only": call.nomination_only, "accepted_count": call.accepted_count,
            "score_visibility": call.score_visibility.as_str(), "revision": call.revision,
        }),
    )
}

async fn load_call(connection: &impl ConnectionTrait, id: &str) -> Result<Call> {
    let model = calls::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("call", id))?;
    call_from(model)
}

async fn lock_call(transaction: &DatabaseTransaction, id: &str) -> Result<Call> {
    let model = for_update(calls::Entity::find_by_id(id.to_owned()), transaction)
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("call", id))?;
    call_from(model)
}

// ---------------------------------------------------------------------------------------------
// Applications

fn application_from(model: applications::Model) -> Result<Application> {
    let state = ApplicationState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!(
            "stored application state {} is unknown",
            model.state
        ))
    })?;
    Ok(Application {
        answers: from_json(&model.answers, "answers")?,
        id: model.id,
        call_id: model.call_id,
        person_id: model.person_id,
        organization_path: model.organization_path,
        nominated_by: model.nominated_by,
        state,
        enrollment_id: model.enrollment_id,
        submit_time: model.submit_time,
        decide_time: model.decide_time,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn application_active(application: &Application) -> Result<applications::ActiveModel> {
    Ok(applications::ActiveModel {
        id: Set(application.id.clone()),
        call_id: Set(application.call_id.clone()),
        person_id: Set(application.person_id.clone()),
        organization_path: Set(application.organization_path.clone()),
        answers: Set(to_json(&application.answers)?),
        nominated_by: Set(application.nominated_by.clone()),
        state: Set(application.state.as_str().to_owned()),
        enrollment_id: Set(application.enrollment_id.clone()),
        submit_time: Set(application.submit_time),
        decide_time: Set(application.decide_time),
        revision: Set(application.revision),
        create_time: Set(application.create_time),
        update_time: Set(application.update_time),
    })
}

fn application_change(application: &Application) -> AuditChange {
    AuditChange::new(
        "selection_application",
        &application.id,
        &serde_json::json!({
            "call_id": application.call_id, "person_id": application.person_id,
            "answers": application.answers, "nominated_by": application.nominated_by,
            "state": application.state.as_str(), "enrollment_id": application.enrollment_id,
            "revision": application.revision,
        }),
    )
}

async fn load_application(connection: &impl ConnectionTrait, id: &str) -> Result<Application> {
    let model = applications::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("application", id))?;
    application_from(model)
}

async fn save_application(
    transaction: &DatabaseTransaction,
    application: &mut Application,
) -> Result<()> {
    application.revision += 1;
    application.update_time = crate::domain::now();
    applications::Entity::update(application_active(application)?)
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Returns the organisation path of a person.
async fn person_path(connection: &impl ConnectionTrait, person_id: &str) -> Result<String> {
    let person = people::Entity::find_by_id(person_id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("person", person_id))?;
    let organization = organizations::Entity::find_by_id(person.organization_id.clone())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("organization", &person.organization_id))?;
    Ok(organization.path)
}

/// Returns the organisation paths of `person_ids`; NOT_FOUND names the first unknown person.
async fn person_paths(
    connection: &impl ConnectionTrait,
    person_ids: &[String],
) -> Result<HashMap<String, String>> {
    let found = people::Entity::find()
        .filter(people::Column::Id.is_in(person_ids.iter().cloned()))
        .all(connection)
        .await
        .map_err(db_error)?;
    let organization_ids: HashSet<String> = found
        .iter()
        .map(|person| person.organization_id.clone())
        .collect();
    let paths: HashMap<String, String> = organizations::Entity::find()
        .filter(organizations::Column::Id.is_in(organization_ids))
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|organization| (organization.id, organization.path))
        .collect();
    let by_person: HashMap<String, String> = found
        .into_iter()
        .map(|person| {
            let path = paths
                .get(&person.organization_id)
                .cloned()
                .unwrap_or_default();
            (person.id, path)
        })
        .collect();
    if let Some(missing) = person_ids.iter().find(|id| !by_person.contains_key(*id)) {
        return Err(Error::not_found("person", missing));
    }
    Ok(by_person)
}

// ---------------------------------------------------------------------------------------------
// Panels and assignments

fn panel_from(model: panels::Model) -> Result<Panel> {
    Ok(Panel {
        judge_person_ids: from_json(&model.judge_person_ids, "judge ids")?,
        id: model.id,
        call_id: model.call_id,
        judges_per_application: model.judges_per_application,
        assignment_count: model.assignment_count,
        min_judge_load: 0,
        max_judge_load: 0,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn panel_change(panel: &Panel) -> AuditChange {
    AuditChange::new(
        "selection_panel",
        &panel.id,
        &serde_json::json!({
            "call_id": panel.call_id, "judge_person_ids": panel.judge_person_ids,
            "judges_per_application": panel.judges_per_application,
            "assignment_count": panel.assignment_count, "revision": panel.revision,
        }),
    )
}

fn score_from(model: &assignments::Model, rubric: &[Criterion]) -> Result<Option<Score>> {
    let (Some(scores), Some(submit_time)) = (&model.scores, model.score_time) else {
        return Ok(None);
    };
    let scores: Vec<(String, i32)> = from_json(scores, "scores")?;
    Ok(Some(Score {
        id: model.id.clone(),
        application_id: model.application_id.clone(),
        judge_person_id: model.judge_person_id.clone(),
        weighted_score: weighted_score(rubric, &scores),
        scores,
        comment: model.comment.clone().unwrap_or_default(),
        submit_time,
    }))
}

/// Assigns the call's pending applications that have no judge yet; returns the number made.
async fn assign_in_transaction(
    transaction: &DatabaseTransaction,
    panel: &mut Panel,
    changes: &mut Vec<AuditChange>,
) -> Result<i32> {
    let paths = person_paths(transaction, &panel.judge_person_ids).await?;
    let PanelLoads { loads, assigned } = panel_loads(transaction, panel).await?;
    let mut judges: Vec<JudgeSlot> = panel
        .judge_person_ids
        .iter()
        .map(|id| JudgeSlot {
            person_id: id.clone(),
            organization_path: paths.get(id).cloned().unwrap_or_default(),
            load: loads.get(id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let pending: Vec<Unassigned> = applications::Entity::find()
        .filter(applications::Column::CallId.eq(panel.call_id.as_str()))
        .filter(applications::Column::State.is_in([
            ApplicationState::Submitted.as_str(),
            ApplicationState::Waitlisted.as_str(),
        ]))
        .order_by_asc(applications::Column::SubmitTime)
        .order_by_asc(applications::Column::Id)
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|application| !assigned.contains(application.id.as_str()))
        .map(|application| Unassigned {
            id: application.id,
            organization_path: application.organization_path,
        })
        .collect();
    let pairs = crate::domain::selection::assign(
        &mut judges,
        &pending,
        panel.judges_per_application as usize,
    )?;
    (panel.min_judge_load, panel.max_judge_load) =
        load_range(judges.iter().map(|judge| judge.load));
    let now = crate::domain::now();
    let mut rows = Vec::with_capacity(pairs.len());
    for (application_id, judge_person_id) in &pairs {
        let id = crate::domain::new_id();
        changes.push(AuditChange::new(
            "selection_assignment",
            &id,
            &serde_json::json!({
                "panel_id": panel.id, "application_id": application_id,
                "judge_person_id": judge_person_id,
            }),
        ));
        rows.push(assignments::ActiveModel {
            id: Set(id),
            panel_id: Set(panel.id.clone()),
            call_id: Set(panel.call_id.clone()),
            application_id: Set(application_id.clone()),
            judge_person_id: Set(judge_person_id.clone()),
            scores: Set(None),
            comment: Set(None),
            score_time: Set(None),
            create_time: Set(now),
        });
    }
    let mut rest = rows.into_iter().peekable();
    while rest.peek().is_some() {
        let batch: Vec<_> = rest.by_ref().take(500).collect();
        assignments::Entity::insert_many(batch)
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    let made = pairs.len() as i32;
    panel.assignment_count += made;
    Ok(made)
}

/// Who carries what on a panel.
struct PanelLoads {
    /// Each judge's load: assignments of applications that are not withdrawn.
    loads: HashMap<String, usize>,
    /// Applications assigned to at least one judge.
    assigned: HashSet<String>,
}

/// Returns the loads of the panel's judges and the applications it has assigned.
async fn panel_loads(connection: &impl ConnectionTrait, panel: &Panel) -> Result<PanelLoads> {
    let withdrawn: HashSet<String> = applications::Entity::find()
        .select_only()
        .column(applications::Column::Id)
        .filter(applications::Column::CallId.eq(panel.call_id.as_str()))
        .filter(applications::Column::State.eq(ApplicationState::Withdrawn.as_str()))
        .into_tuple::<String>()
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect();
    let rows: Vec<(String, String)> = assignments::Entity::find()
        .select_only()
        .column(assignments::Column::ApplicationId)
        .column(assignments::Column::JudgePersonId)
        .filter(assignments::Column::PanelId.eq(panel.id.as_str()))
        .into_tuple()
        .all(connection)
        .await
        .map_err(db_error)?;
    let mut loads: HashMap<String, usize> = HashMap::new();
    let mut assigned = HashSet::new();
    for (application_id, judge_person_id) in rows {
        if !withdrawn.contains(&application_id) {
            *loads.entry(judge_person_id).or_default() += 1;
        }
        assigned.insert(application_id);
    }
    Ok(PanelLoads { loads, assigned })
}

/// Loads a panel with its judges' load range.
async fn load_panel(connection: &impl ConnectionTrait, model: panels::Model) -> Result<Panel> {
    let mut panel = panel_from(model)?;
    let PanelLoads { loads, .. } = panel_loads(connection, &panel).await?;
    (panel.min_judge_load, panel.max_judge_load) = load_range(
        panel
            .judge_person_ids
            .iter()
            .map(|id| loads.get(id).copied().unwrap_or(0)),
    );
    Ok(panel)
}

/// Filters of [`Store::list_applications`].
#[derive(Debug, Clone)]
pub struct ApplicationFilter {
    /// The call.
    pub call_id: String,
    /// Only this state.
    pub state: Option<ApplicationState>,
}

impl Store {
    /// Opens a call on a cohort.
    pub async fn create_call(
        &self,
        context: AuditContext,
        new: NewCall,
        key: Option<RequestKey>,
    ) -> Result<Call> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let cohort = cohorts::Entity::find_by_id(new.cohort_id.clone())
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::not_found("cohort", &new.cohort_id))?;
                    let now = crate::domain::now();
                    let call = Call {
                        id: crate::domain::new_id(),
                        cohort_id: cohort.id,
                        programme_id: cohort.programme_id,
                        title: new.title,
                        opens_time: new.opens_time,
                        closes_time: new.closes_time,
                        questions: new.questions,
                        rubric: new.rubric,
                        seats: new.seats,
                        nomination_only: new.nomination_only,
                        score_visibility: new.score_visibility,
                        accepted_count: 0,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    calls::Entity::insert(call_active(&call)?)
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    audit::append(transaction, &context, vec![call_change(&call)]).await?;
                    let answer = StoredAnswer::created(&call.id);
                    Ok((call, answer))
                })
            },
            |answer| async move { self.get_call(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one call.
    pub async fn get_call(&self, id: &str) -> Result<Call> {
        load_call(self.connection(), id).await
    }

    /// Lists calls by id after the page's key.
    pub async fn list_calls(
        &self,
        cohort_id: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Call>, String)> {
        let mut query = calls::Entity::find();
        if let Some(cohort_id) = cohort_id {
            query = query.filter(calls::Column::CohortId.eq(cohort_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(calls::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(calls::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let list = rows
            .into_iter()
            .map(call_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(list, |call| call.id.clone()))
    }

    /// Updates a call's title, seats, nomination rule or score visibility; an update that
    /// changes nothing returns the call unchanged.
    pub async fn update_call(
        &self,
        context: AuditContext,
        id: String,
        patch: CallPatch,
        expected_revision: Option<i64>,
    ) -> Result<Call> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut call = lock_call(transaction, &id).await?;
                if expected_revision.is_some_and(|revision| revision != call.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "call",
                        id,
                    });
                }
                if !call.apply(&patch)? {
                    return Ok(call);
                }
                call.revision += 1;
                call.update_time = crate::domain::now();
                calls::Entity::update(call_active(&call)?)
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                audit::append(transaction, &context, vec![call_change(&call)]).await?;
                Ok(call)
            })
        })
        .await
    }

    /// Closes a call now; a call closed already is returned unchanged.
    pub async fn close_call(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<Call> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut call = lock_call(transaction, &id).await?;
                if expected_revision.is_some_and(|revision| revision != call.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "call",
                        id,
                    });
                }
                let now = crate::domain::now();
                if call.closes_time <= now {
                    return Ok(call);
                }
                call.closes_time = now;
                call.opens_time = call.opens_time.min(now);
                call.revision += 1;
                call.update_time = now;
                calls::Entity::update(call_active(&call)?)
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                audit::append(transaction, &context, vec![call_change(&call)]).await?;
                Ok(call)
            })
        })
        .await
    }

    /// Submits an application (or nomination) while the call is open.
    pub async fn submit_application(
        &self,
        context: AuditContext,
        viewer: Viewer,
        call_id: String,
        person_id: String,
        answers: Vec<(String, String)>,
        key: Option<RequestKey>,
    ) -> Result<Application> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let call = load_call(transaction, &call_id).await?;
                    let now = crate::domain::now();
                    call.check_open(now)?;
                    let path = match person_path(transaction, &person_id).await {
                        // Whether someone exists is no business of a caller who may not nominate them.
                        Err(Error::NotFound { .. }) if !viewer.manager => {
                            return Err(selection::own_application_only());
                        }
                        found => found?,
                    };
                    let nominated_by = viewer.check_may_apply(&call, &person_id, &path)?;
                    let answers = validate_answers(&call.questions, answers)?;
                    let cohort = cohorts::Entity::find_by_id(call.cohort_id.clone())
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::not_found("cohort", &call.cohort_id))?;
                    let eligible: Vec<String> =
                        from_json(&cohort.eligible_organization_ids, "eligible organisations")?;
                    if !eligible.is_empty() && !eligible.iter().any(|root| path_is_within(&path, root))
                    {
                        return Err(Error::FailedPrecondition {
                            metadata: Vec::new(),
                            reason: Reason::OrganizationNotEligible,
                            subject: format!("call/{}", call.id),
                            message: "the applicant's organisation is not among the cohort's eligible organisations".to_owned(),
                        });
                    }
                    let application = Application {
                        id: crate::domain::new_id(),
                        call_id: call.id.clone(),
                        person_id: person_id.clone(),
                        organization_path: path,
                        answers,
                        nominated_by,
                        state: ApplicationState::Submitted,
                        enrollment_id: None,
                        submit_time: now,
                        decide_time: None,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    applications::Entity::insert(application_active(&application)?)
                        .exec(transaction)
                        .await
                        .map_err(|error| {
                            if is_unique_violation(&error) {
                                Error::AlreadyExists {
                                    resource: "application",
                                    field: "person_id",
                                    value: person_id.clone(),
                                    existing_id: None,
                                }
                            } else {
                                db_error(error)
                            }
                        })?;
                    audit::append(transaction, &context, vec![application_change(&application)])
                        .await?;
                    let answer = StoredAnswer::created(&application.id);
                    Ok((application, answer))
                })
            },
            |answer| async move {
                load_application(self.connection(), &answer.into_resource_id()?).await
            },
        )
        .await
    }

    /// Withdraws an undecided application (applicant, nominator, their org admin, or a manager).
    pub async fn withdraw_application(
        &self,
        context: AuditContext,
        viewer: Viewer,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<Application> {
        self.write(move |transaction| {
            Box::pin(async move {
                let model = for_update(applications::Entity::find_by_id(id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| viewer.missing("application", &id))?;
                let mut application = application_from(model)?;
                if !viewer.may_read(&application) {
                    return Err(not_yours());
                }
                if expected_revision.is_some_and(|revision| revision != application.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "application",
                        id,
                    });
                }
                if !application.state.is_pending() {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::ApplicationNotPending,
                        subject: format!("application/{id}"),
                        message: format!(
                            "the application is {} and can no longer be withdrawn",
                            application.state.as_str()
                        ),
                    });
                }
                application.state = ApplicationState::Withdrawn;
                save_application(transaction, &mut application).await?;
                audit::append(
                    transaction,
                    &context,
                    vec![application_change(&application)],
                )
                .await?;
                Ok(application)
            })
        })
        .await
    }

    /// Returns an application to a viewer who may see it (assigned judges included).
    pub async fn get_application(&self, viewer: &Viewer, id: &str) -> Result<Application> {
        let application = load_application(self.connection(), id)
            .await
            .map_err(|error| viewer.hide_missing(error))?;
        if viewer.may_read(&application) {
            return Ok(application);
        }
        let assigned = assignments::Entity::find()
            .filter(assignments::Column::ApplicationId.eq(id))
            .filter(assignments::Column::JudgePersonId.eq(viewer.subject.as_str()))
            .one(self.connection())
            .await
            .map_err(db_error)?;
        match assigned {
            Some(_) => Ok(application),
            None => Err(not_yours()),
        }
    }

    /// Lists the applications of a call a viewer may see, by id after the page's key.
    pub async fn list_applications(
        &self,
        viewer: &Viewer,
        filter: &ApplicationFilter,
        page: &Page,
    ) -> Result<(Vec<Application>, String)> {
        let mut query =
            applications::Entity::find().filter(applications::Column::CallId.eq(&filter.call_id));
        if let Some(state) = filter.state {
            query = query.filter(applications::Column::State.eq(state.as_str()));
        }
        if !viewer.manager {
            let mut visible = Condition::any()
                .add(applications::Column::PersonId.eq(viewer.subject.as_str()))
                .add(applications::Column::NominatedBy.eq(viewer.subject.as_str()));
            if let Some(root) = &viewer.subtree_root {
                visible = visible
                    .add(applications::Column::OrganizationPath.contains(format!("/{root}/")));
            }
            query = query.filter(visible);
        }
        if let Some(after) = &page.after {
            query = query.filter(applications::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(applications::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let list = rows
            .into_iter()
            .map(application_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(list, |application| application.id.clone()))
    }

    /// Forms the panel of a call and assigns its pending applications.
    pub async fn create_panel(
        &self,
        context: AuditContext,
        call_id: String,
        judge_person_ids: Vec<String>,
        judges_per_application: i32,
        key: Option<RequestKey>,
    ) -> Result<Panel> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let call = lock_call(transaction, &call_id).await?;
                    let now = crate::domain::now();
                    let mut panel = Panel {
                        id: crate::domain::new_id(),
                        call_id: call.id.clone(),
                        judge_person_ids,
                        judges_per_application,
                        assignment_count: 0,
                        min_judge_load: 0,
                        max_judge_load: 0,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    panels::Entity::insert(panels::ActiveModel {
                        id: Set(panel.id.clone()),
                        call_id: Set(panel.call_id.clone()),
                        judge_person_ids: Set(to_json(&panel.judge_person_ids)?),
                        judges_per_application: Set(panel.judges_per_application),
                        assignment_count: Set(0),
                        revision: Set(1),
                        create_time: Set(now),
                        update_time: Set(now),
                    })
                    .exec(transaction)
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            Error::AlreadyExists {
                                resource: "panel",
                                field: "call_id",
                                value: call.id.clone(),
                                existing_id: None,
                            }
                        } else {
                            db_error(error)
                        }
                    })?;
                    let mut changes = Vec::new();
                    assign_in_transaction(transaction, &mut panel, &mut changes).await?;
                    panels::Entity::update(panels::ActiveModel {
                        id: Set(panel.id.clone()),
                        assignment_count: Set(panel.assignment_count),
                        ..Default::default()
                    })
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                    changes.push(panel_change(&panel));
                    audit::append(transaction, &context, changes).await?;
                    let answer = StoredAnswer::created(&panel.id);
                    Ok((panel, answer))
                })
            },
            |answer| async move {
                let id = answer.into_resource_id()?;
                let model = panels::Entity::find_by_id(id.clone())
                    .one(self.connection())
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("panel", &id))?;
                load_panel(self.connection(), model).await
            },
        )
        .await
    }

    /// Returns one panel.
    pub async fn get_panel(&self, viewer: &Viewer, id: &str) -> Result<Panel> {
        let model = panels::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| viewer.missing("panel", id))?;
        let judge_person_ids: Vec<String> = from_json(&model.judge_person_ids, "judge ids")?;
        if !viewer.manager && !judge_person_ids.contains(&viewer.subject) {
            return Err(not_your_panel());
        }
        load_panel(self.connection(), model).await
    }

    /// Assigns the pending applications without a judge; returns the panel and the number made.
    pub async fn assign_applications(
        &self,
        context: AuditContext,
        panel_id: String,
    ) -> Result<(Panel, i32)> {
        self.write(move |transaction| {
            Box::pin(async move {
                let model = for_update(panels::Entity::find_by_id(panel_id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("panel", &panel_id))?;
                let mut panel = panel_from(model)?;
                let mut changes = Vec::new();
                let made = assign_in_transaction(transaction, &mut panel, &mut changes).await?;
                if made == 0 {
                    return Ok((panel, 0));
                }
                panel.revision += 1;
                panel.update_time = crate::domain::now();
                panels::Entity::update(panels::ActiveModel {
                    id: Set(panel.id.clone()),
                    assignment_count: Set(panel.assignment_count),
                    revision: Set(panel.revision),
                    update_time: Set(panel.update_time),
                    ..Default::default()
                })
                .exec(transaction)
                .await
                .map_err(db_error)?;
                changes.push(panel_change(&panel));
                audit::append(transaction, &context, changes).await?;
                Ok((panel, made))
            })
        })
        .await
    }

    /// Lists a judge's assignments (with only the judge's own score), by id after the page's key;
    /// assignments of withdrawn applications are left out.
    pub async fn list_my_assignments(
        &self,
        judge_person_id: &str,
        call_id: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<Assignment>, String)> {
        let withdrawn = Query::select()
            .column(applications::Column::Id)
            .from(applications::Entity)
            .and_where(applications::Column::State.eq(ApplicationState::Withdrawn.as_str()))
            .to_owned();
        let mut query = assignments::Entity::find()
            .filter(assignments::Column::JudgePersonId.eq(judge_person_id))
            .filter(assignments::Column::ApplicationId.not_in_subquery(withdrawn));
        if let Some(call_id) = call_id {
            query = query.filter(assignments::Column::CallId.eq(call_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(assignments::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(assignments::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let application_ids: Vec<String> =
            rows.iter().map(|row| row.application_id.clone()).collect();
        let mut by_id: HashMap<String, Application> = HashMap::new();
        for model in applications::Entity::find()
            .filter(applications::Column::Id.is_in(application_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
        {
            let application = application_from(model)?;
            by_id.insert(application.id.clone(), application);
        }
        let call_ids: HashSet<String> = rows.iter().map(|row| row.call_id.clone()).collect();
        let mut rubrics: HashMap<String, Vec<Criterion>> = HashMap::new();
        for model in calls::Entity::find()
            .filter(calls::Column::Id.is_in(call_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
        {
            let call = call_from(model)?;
            rubrics.insert(call.id, call.rubric);
        }
        let mut list = Vec::with_capacity(rows.len());
        for row in rows {
            let application = by_id
                .get(&row.application_id)
                .cloned()
                .ok_or_else(|| Error::internal("assigned application vanished"))?;
            let rubric = rubrics
                .get(&row.call_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            list.push(Assignment {
                score: score_from(&row, rubric)?,
                id: row.id,
                panel_id: row.panel_id,
                call_id: row.call_id,
                judge_person_id: row.judge_person_id,
                application,
            });
        }
        Ok(page.finish(list, |assignment| assignment.id.clone()))
    }

    /// Records a judge's final score of an assigned, undecided application.
    pub async fn submit_score(
        &self,
        context: AuditContext,
        judge_person_id: String,
        application_id: String,
        scores: Vec<(String, i32)>,
        comment: String,
        key: Option<RequestKey>,
    ) -> Result<Score> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let application = match load_application(transaction, &application_id).await {
                        // A judge learns nothing of applications not given to them.
                        Err(Error::NotFound { .. }) => return Err(not_assigned()),
                        found => found?,
                    };
                    let call = load_call(transaction, &application.call_id).await?;
                    let assignment = for_update(
                        assignments::Entity::find()
                            .filter(assignments::Column::ApplicationId.eq(application_id.as_str()))
                            .filter(
                                assignments::Column::JudgePersonId.eq(judge_person_id.as_str()),
                            ),
                        transaction,
                    )
                    .one(transaction)
                    .await
                    .map_err(db_error)?;
                    let Some(assignment) = assignment else {
                        let conflicted = match person_path(transaction, &judge_person_id).await {
                            Ok(path) => in_conflict(&path, &application.organization_path),
                            Err(_) => false,
                        };
                        if conflicted {
                            return Err(conflict_error(&judge_person_id, &application_id));
                        }
                        return Err(not_assigned());
                    };
                    if !application.state.is_pending() {
                        return Err(Error::FailedPrecondition {
                            metadata: Vec::new(),
                            reason: Reason::ApplicationNotPending,
                            subject: format!("application/{application_id}"),
                            message: format!(
                                "the application is {}; it takes no more scores",
                                application.state.as_str()
                            ),
                        });
                    }
                    if assignment.scores.is_some() {
                        return Err(Error::FailedPrecondition {
                            metadata: Vec::new(),
                            reason: Reason::ScoreAlreadySubmitted,
                            subject: format!("application/{application_id}"),
                            message: "you have scored this application already; a score is final"
                                .to_owned(),
                        });
                    }
                    let scores = validate_scores(&call.rubric, scores)?;
                    let now = crate::domain::now();
                    let score = Score {
                        id: assignment.id.clone(),
                        application_id: application_id.clone(),
                        judge_person_id: judge_person_id.clone(),
                        weighted_score: weighted_score(&call.rubric, &scores),
                        scores,
                        comment,
                        submit_time: now,
                    };
                    assignments::Entity::update(assignments::ActiveModel {
                        id: Set(assignment.id.clone()),
                        scores: Set(Some(to_json(&score.scores)?)),
                        comment: Set(Some(score.comment.clone())),
                        score_time: Set(Some(now)),
                        ..Default::default()
                    })
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                    let change = AuditChange::new(
                        "selection_score",
                        &score.id,
                        &serde_json::json!({
                            "application_id": score.application_id,
                            "judge_person_id": score.judge_person_id,
                            "scores": score.scores, "comment": score.comment,
                        }),
                    );
                    audit::append(transaction, &context, vec![change]).await?;
                    let answer = StoredAnswer::created(&assignment.id);
                    Ok((score, answer))
                })
            },
            |answer| async move { self.stored_score(&answer.into_resource_id()?).await },
        )
        .await
    }

    async fn stored_score(&self, assignment_id: &str) -> Result<Score> {
        let row = assignments::Entity::find_by_id(assignment_id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("score", assignment_id))?;
        let call = load_call(self.connection(), &row.call_id).await?;
        score_from(&row, &call.rubric)?.ok_or_else(|| Error::not_found("score", assignment_id))
    }

    /// Lists the scores of an application a viewer may read: managers every score, an assigned
    /// judge their own and, as the call's score visibility allows, the others. Also returns true
    /// when the visibility withheld the other judges' scores.
    pub async fn list_scores(
        &self,
        viewer: &Viewer,
        application_id: &str,
    ) -> Result<(Vec<Score>, bool)> {
        let application = load_application(self.connection(), application_id)
            .await
            .map_err(|error| viewer.hide_missing(error))?;
        let call = load_call(self.connection(), &application.call_id).await?;
        let rows = assignments::Entity::find()
            .filter(assignments::Column::ApplicationId.eq(application_id))
            .order_by_asc(assignments::Column::JudgePersonId)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let mut readable: Vec<&assignments::Model> = rows.iter().collect();
        let mut others_hidden = false;
        if !viewer.manager {
            let own = rows
                .iter()
                .find(|row| row.judge_person_id == viewer.subject)
                .ok_or_else(not_yours)?;
            let scored_own = own.scores.is_some();
            if !call
                .score_visibility
                .reveals_others_to_judge(application.state, scored_own)
            {
                readable = vec![own];
                others_hidden = true;
            }
        }
        let mut scores = Vec::new();
        for row in readable {
            if let Some(score) = score_from(row, &call.rubric)? {
                scores.push(score);
            }
        }
        Ok((scores, others_hidden))
    }

    /// Ranks a call's applications from the stored scores.
    pub async fn rank_applications(&self, call_id: &str, threshold: f64) -> Result<Vec<Ranked>> {
        let call = load_call(self.connection(), call_id).await?;
        let list = applications::Entity::find()
            .filter(applications::Column::CallId.eq(call_id))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let rows = assignments::Entity::find()
            .filter(assignments::Column::CallId.eq(call_id))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let mut assigned: HashMap<&str, usize> = HashMap::new();
        let mut scored: HashMap<&str, Vec<StoredScore>> = HashMap::new();
        for row in &rows {
            *assigned.entry(row.application_id.as_str()).or_default() += 1;
            if let Some(text) = &row.scores {
                scored
                    .entry(row.application_id.as_str())
                    .or_default()
                    .push(StoredScore {
                        judge_person_id: row.judge_person_id.clone(),
                        scores: from_json(text, "scores")?,
                    });
            }
        }
        let mut inputs = Vec::with_capacity(list.len());
        for model in list {
            let application = application_from(model)?;
            inputs.push(RankInput {
                assigned_count: assigned.get(application.id.as_str()).copied().unwrap_or(0),
                scores: scored.remove(application.id.as_str()).unwrap_or_default(),
                id: application.id,
                person_id: application.person_id,
                state: application.state,
                submit_time: application.submit_time,
            });
        }
        Ok(rank(&call.rubric, inputs, threshold))
    }

    /// Decides applications after the call closes; the accepted are enrolled in the same
    /// transaction, and any refused enrolment refuses the whole decision.
    pub async fn decide_applications(
        &self,
        context: AuditContext,
        call_id: String,
        decisions: Vec<(String, Decision)>,
        key: Option<RequestKey>,
    ) -> Result<(Vec<Application>, Vec<Enrollment>)> {
        let ids: Vec<String> = decisions.iter().map(|(id, _)| id.clone()).collect();
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let mut call = lock_call(transaction, &call_id).await?;
                    let now = crate::domain::now();
                    call.check_closed(now)?;
                    let ids: Vec<String> = decisions.iter().map(|(id, _)| id.clone()).collect();
                    let mut found: HashMap<String, Application> = HashMap::new();
                    for model in for_update(
                        applications::Entity::find()
                            .filter(applications::Column::Id.is_in(ids.iter().cloned())),
                        transaction,
                    )
                    .all(transaction)
                    .await
                    .map_err(db_error)?
                    {
                        let application = application_from(model)?;
                        found.insert(application.id.clone(), application);
                    }
                    let mut decided = Vec::with_capacity(decisions.len());
                    for (id, decision) in &decisions {
                        let application = found
                            .remove(id)
                            .filter(|application| application.call_id == call.id)
                            .ok_or_else(|| Error::not_found("application", id))?;
                        check_decidable(&application, *decision)?;
                        decided.push((application, *decision));
                    }
                    let accepted: Vec<&Application> = decided
                        .iter()
                        .filter(|(_, decision)| *decision == Decision::Accept)
                        .map(|(application, _)| application)
                        .collect();
                    check_seats(&call, accepted.len())?;
                    let person_ids: Vec<String> = accepted
                        .iter()
                        .map(|application| application.person_id.clone())
                        .collect();
                    let application_of: HashMap<String, String> = accepted
                        .iter()
                        .map(|application| (application.person_id.clone(), application.id.clone()))
                        .collect();
                    let mut enrollment_of: HashMap<String, Enrollment> = HashMap::new();
                    if !person_ids.is_empty() {
                        let result = enroll_in_transaction(
                            transaction,
                            &context,
                            &call.cohort_id,
                            &person_ids,
                        )
                        .await?;
                        for outcome in &result.outcomes {
                            let application_id = application_of
                                .get(&outcome.person_id)
                                .cloned()
                                .unwrap_or_default();
                            if let Some((reason, message)) = &outcome.refusal {
                                return Err(Error::FailedPrecondition {
                                    metadata: Vec::new(),
                                    reason: *reason,
                                    subject: format!("application/{application_id}"),
                                    message: format!(
                                        "applicant {} (application {application_id}) cannot be enrolled: {message}; nothing was decided",
                                        outcome.person_id
                                    ),
                                });
                            }
                            let enrollment = outcome
                                .enrollment_id
                                .as_ref()
                                .and_then(|id| result.enrollments.get(id))
                                .ok_or_else(|| Error::internal("enrolment outcome without enrolment"))?;
                            if enrollment.state != EnrollmentState::Enrolled {
                                return Err(Error::FailedPrecondition {
                                    metadata: Vec::new(),
                                    reason: Reason::CohortFull,
                                    subject: format!("application/{application_id}"),
                                    message: format!(
                                        "applicant {} (application {application_id}) would only join the cohort's waitlist; nothing was decided",
                                        outcome.person_id
                                    ),
                                });
                            }
                            enrollment_of.insert(outcome.person_id.clone(), enrollment.clone());
                        }
                    }
                    let mut changes = Vec::with_capacity(decided.len() + 1);
                    let mut answered = Vec::with_capacity(decided.len());
                    let mut enrolled = Vec::with_capacity(enrollment_of.len());
                    for (mut application, decision) in decided {
                        application.state = decision.state();
                        application.decide_time = Some(now);
                        if let Some(enrollment) = enrollment_of.remove(&application.person_id) {
                            application.enrollment_id = Some(enrollment.id.clone());
                            enrolled.push(enrollment);
                        }
                        save_application(transaction, &mut application).await?;
                        changes.push(application_change(&application));
                        answered.push(application);
                    }
                    call.accepted_count += person_ids.len() as i32;
                    call.revision += 1;
                    call.update_time = now;
                    calls::Entity::update(call_active(&call)?)
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    changes.push(call_change(&call));
                    audit::append(transaction, &context, changes).await?;
                    let answer = StoredAnswer::created(&call.id);
                    Ok(((answered, enrolled), answer))
                })
            },
            // A replay answers with the current state of the decided applications.
            |_| self.decided(&ids),
        )
        .await
    }

    /// Returns the current state of decided applications and their enrolments, in `ids` order.
    async fn decided(&self, ids: &[String]) -> Result<(Vec<Application>, Vec<Enrollment>)> {
        let mut by_id: HashMap<String, Application> = HashMap::new();
        for model in applications::Entity::find()
            .filter(applications::Column::Id.is_in(ids.iter().cloned()))
            .all(self.connection())
            .await
            .map_err(db_error)?
        {
            let application = application_from(model)?;
            by_id.insert(application.id.clone(), application);
        }
        let list: Vec<Application> = ids.iter().filter_map(|id| by_id.remove(id)).collect();
        let enrollment_ids: Vec<String> = list
            .iter()
            .filter_map(|application| application.enrollment_id.clone())
            .collect();
        let enrolled = enrollments::Entity::find()
            .filter(enrollments::Column::Id.is_in(enrollment_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(enrollment_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((list, enrolled))
    }
}
