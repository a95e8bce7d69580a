//! Surveys: storing a learner's response together with the COMPLETED progress event of the
//! SURVEY activity (one transaction), and loading the responses of a selection for aggregation.
//!
//! A response is unique per learner and survey (`UNIQUE (activity_id, person_id)`). The
//! enrolment row is locked first, as the progress path does, so two submissions for one
//! enrolment queue; two for different enrolments of one learner meet at the unique index, and
//! the loser retries once and finds the winner's response.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, DatabaseTransaction, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
    sea_query::{Alias, Expr, ExprTrait as _, JoinType, Query},
};

use super::entity::programme::enrollments;
use super::entity::progress::progress_events;
use super::entity::survey::survey_responses;
use super::programme::{enrollment_from, for_update};
use super::progress::{Recorder, record_in_caller_transaction};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::person::RecordError;
use crate::domain::programme::{Enrollment, EnrollmentState};
use crate::domain::progress::{EventFacts, EventInput, Source, Verb};
use crate::domain::survey::{
    Answer, RawAnswer, Respondent, SURVEY_RESPONSE, SurveyQuestion, SurveyResponse,
    check_is_survey, check_resubmission, check_survey_activity, completion_event_id,
    validate_answers,
};
use crate::error::{Error, Reason, Result};

/// Reason of the error a submission losing the race on the unique index fails with (retried once).
const CONCURRENT_SUBMISSION: Reason = Reason::ConcurrentSubmission;

/// Which responses [`Store::survey_selection`] returns; every filter set must match.
#[derive(Debug, Clone, Default)]
pub struct ResponseFilter {
    /// Only enrolments of this programme.
    pub programme_id: Option<String>,
    /// Only enrolments of this cohort.
    pub cohort_id: Option<String>,
    /// Only respondents whose organisation's path starts with this.
    pub organization_path_prefix: Option<String>,
}

fn response_from(model: survey_responses::Model) -> Result<SurveyResponse> {
    let answers: Vec<Answer> = serde_json::from_str(&model.answers)
        .map_err(|error| Error::internal(format!("stored survey answers are invalid: {error}")))?;
    Ok(SurveyResponse {
        id: model.id,
        activity_id: model.activity_id,
        course_version_id: model.course_version_id,
        enrollment_id: model.enrollment_id,
        person_id: model.person_id,
        cohort_id: model.cohort_id,
        programme_id: model.programme_id,
        answers,
        submit_time: model.submit_time,
        submitted_by: model.actor,
    })
}

/// Maps a refusal of the progress path to an error; the checks made before make most impossible.
fn progress_refusal(error: RecordError) -> Error {
    match error.reason.as_str() {
        "ENROLLMENT_NOT_ACTIVE" => Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::EnrollmentNotActive,
            subject: format!("enrollment/{}", error.key),
            message: error.message,
        },
        "PERMISSION_DENIED" => Error::permission_denied(Reason::OwnRecordsOnly, error.message),
        _ => Error::internal(format!(
            "the survey completion event was refused: {} {}",
            error.reason, error.message
        )),
    }
}

/// The COMPLETED event of the survey activity for `enrollment`: every field is derived from the
/// response, so a replay carries the same content.
fn completion_event(enrollment: &Enrollment, response: &SurveyResponse) -> EventInput {
    EventInput {
        event_id: completion_event_id(&enrollment.id, &response.activity_id),
        enrollment_id: enrollment.id.clone(),
        activity_id: response.activity_id.clone(),
        facts: EventFacts {
            verb: Verb::Completed,
            score: None,
            duration_seconds: 0,
            occurred_time: response.submit_time,
            source: Source::App,
        },
        evidence_uri: None,
        evidence_note: Some(format!("survey response {}", response.id)),
        provenance_note: None,
    }
}

/// Records the COMPLETED event of the survey for `enrollment` unless it is there already;
/// returns true when it recorded one.
async fn complete_survey_activity(
    transaction: &DatabaseTransaction,
    store: &Store,
    actor: &str,
    respondent: &Respondent,
    enrollment: &Enrollment,
    response: &SurveyResponse,
) -> Result<bool> {
    let event_id = completion_event_id(&enrollment.id, &response.activity_id);
    let recorded = progress_events::Entity::find_by_id(event_id.clone())
        .one(transaction)
        .await
        .map_err(db_error)?;
    if recorded.is_some() {
        return Ok(false);
    }
    let event = completion_event(enrollment, response);
    let recorder = match respondent {
        Respondent::Learner => Recorder::Learner,
        Respondent::Staff => Recorder::Staff,
    };
    let mut answers =
        record_in_caller_transaction(transaction, store, actor, &recorder, vec![Ok(event)]).await?;
    match answers.pop() {
        Some(Ok(_)) => Ok(true),
        Some(Err(refusal)) => Err(progress_refusal(refusal)),
        None => Err(Error::internal("the progress path gave no answer")),
    }
}

async fn submit_once(
    transaction: &DatabaseTransaction,
    store: &Store,
    context: &AuditContext,
    respondent: &Respondent,
    enrollment_id: &str,
    activity_id: &str,
    answers: Vec<RawAnswer>,
) -> Result<(SurveyResponse, bool)> {
    let model = for_update(
        enrollments::Entity::find_by_id(enrollment_id.to_owned()),
        transaction,
    )
    .one(transaction)
    .await
    .map_err(db_error)?
    .ok_or_else(|| Error::not_found("enrollment", enrollment_id))?;
    let enrollment = enrollment_from(model)?;
    let activity = super::course::load_activity(transaction, activity_id).await?;
    check_survey_activity(
        activity.values.kind,
        &activity.course_version_id,
        &enrollment.course_version_ids,
    )?;
    let active = !matches!(
        enrollment.state,
        EnrollmentState::Withdrawn | EnrollmentState::Waitlisted
    );

    let earlier = survey_responses::Entity::find()
        .filter(survey_responses::Column::ActivityId.eq(activity_id))
        .filter(survey_responses::Column::PersonId.eq(enrollment.person_id.as_str()))
        .one(transaction)
        .await
        .map_err(db_error)?;
    if let Some(earlier) = earlier {
        // The first response stands: its submitter gets it back, anyone else is refused.
        let earlier = response_from(earlier)?;
        check_resubmission(&earlier, &context.actor)?;
        if active
            && complete_survey_activity(
                transaction,
                store,
                &context.actor,
                respondent,
                &enrollment,
                &earlier,
            )
            .await?
        {
            let change = AuditChange::new(
                SURVEY_RESPONSE,
                &earlier.id,
                &serde_json::json!({"completed_enrollment_id": enrollment.id}),
            );
            audit::append(transaction, context, vec![change]).await?;
        }
        return Ok((earlier, false));
    }
    if !active {
        return Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::EnrollmentNotActive,
            subject: format!("enrollment/{}", enrollment.id),
            message: format!(
                "the enrolment is {}; it takes no survey responses",
                enrollment.state.as_str()
            ),
        });
    }
    let answers = validate_answers(&activity.values.survey_questions, answers)?;
    let response = SurveyResponse {
        id: crate::domain::new_id(),
        activity_id: activity.id.clone(),
        course_version_id: activity.course_version_id.clone(),
        enrollment_id: enrollment.id.clone(),
        person_id: enrollment.person_id.clone(),
        cohort_id: enrollment.cohort_id.clone(),
        programme_id: enrollment.programme_id.clone(),
        answers,
        submit_time: crate::domain::now(),
        submitted_by: context.actor.clone(),
    };
    let answers_json = serde_json::to_string(&response.answers).map_err(Error::internal)?;
    survey_responses::Entity::insert(survey_responses::ActiveModel {
        id: Set(response.id.clone()),
        activity_id: Set(response.activity_id.clone()),
        course_version_id: Set(response.course_version_id.clone()),
        enrollment_id: Set(response.enrollment_id.clone()),
        person_id: Set(response.person_id.clone()),
        cohort_id: Set(response.cohort_id.clone()),
        programme_id: Set(response.programme_id.clone()),
        answers: Set(answers_json.clone()),
        actor: Set(context.actor.clone()),
        submit_time: Set(response.submit_time),
    })
    .exec(transaction)
    .await
    .map_err(|error| {
        if is_unique_violation(&error) {
            Error::Aborted {
                reason: CONCURRENT_SUBMISSION,
                message: "this learner answered the survey concurrently; retry".to_owned(),
                metadata: Vec::new(),
            }
        } else {
            db_error(error)
        }
    })?;
    complete_survey_activity(
        transaction,
        store,
        &context.actor,
        respondent,
        &enrollment,
        &response,
    )
    .await?;
    let change = AuditChange::new(
        SURVEY_RESPONSE,
        &response.id,
        &serde_json::json!({
            "activity_id": response.activity_id,
            "enrollment_id": response.enrollment_id,
            "person_id": response.person_id,
            "answers": answers_json,
            "submit_time": response.submit_time.to_rfc3339(),
        }),
    );
    audit::append(transaction, context, vec![change]).await?;
    Ok((response, true))
}

/// Stores a batch of submissions in `transaction` with a few statements for the whole batch
/// (enrolments locked in one select per 500, earlier responses and completion events read at
/// once, responses inserted together, completions recorded through the progress path in one
/// call per kind of respondent, one audit append): the outcome of each is that of
/// [`submit_once`], and the first refusal, in `order`, refuses the batch. Returns the answers
/// indexed as `submissions`.
async fn submit_batch(
    transaction: &DatabaseTransaction,
    store: &Store,
    context: &AuditContext,
    submissions: &[Submission],
    order: &[usize],
) -> Result<Vec<Option<(SurveyResponse, bool)>>> {
    use std::collections::HashMap;

    let mut enrollment_ids: Vec<&str> = order
        .iter()
        .map(|&index| submissions[index].enrollment_id.as_str())
        .collect();
    enrollment_ids.dedup();
    let mut enrollments_by_id: HashMap<String, Enrollment> = HashMap::new();
    for chunk in enrollment_ids.chunks(500) {
        let select = enrollments::Entity::find()
            .filter(enrollments::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(enrollments::Column::Id);
        for model in for_update(select, transaction)
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            let enrollment = enrollment_from(model)?;
            enrollments_by_id.insert(enrollment.id.clone(), enrollment);
        }
    }
    let mut activities = HashMap::new();
    for submission in submissions {
        if !activities.contains_key(&submission.activity_id) {
            let activity = super::course::load_activity(transaction, &submission.activity_id).await;
            activities.insert(submission.activity_id.clone(), activity);
        }
    }
    // Earlier responses of these learners to these surveys, by (activity, person).
    let person_ids: Vec<String> = enrollments_by_id
        .values()
        .map(|enrollment| enrollment.person_id.clone())
        .collect();
    let mut earlier: HashMap<(String, String), SurveyResponse> = HashMap::new();
    for chunk in person_ids.chunks(500) {
        let models = survey_responses::Entity::find()
            .filter(survey_responses::Column::ActivityId.is_in(activities.keys().cloned()))
            .filter(survey_responses::Column::PersonId.is_in(chunk.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?;
        for model in models {
            let response = response_from(model)?;
            earlier.insert(
                (response.activity_id.clone(), response.person_id.clone()),
                response,
            );
        }
    }
    let mut answered: Vec<Option<(SurveyResponse, bool)>> = vec![None; submissions.len()];
    let mut created = Vec::new();
    let mut changes = Vec::new();
    // Completion events to record, per kind of respondent: (enrolment, response).
    let mut completions: Vec<(Respondent, usize)> = Vec::new();
    for &index in order {
        let submission = &submissions[index];
        let refuse = |error: Error| at_index(error, index);
        let enrollment = enrollments_by_id
            .get(&submission.enrollment_id)
            .ok_or_else(|| refuse(Error::not_found("enrollment", &submission.enrollment_id)))?;
        let activity = match &activities[&submission.activity_id] {
            Ok(activity) => activity,
            Err(_) => {
                return Err(refuse(Error::not_found(
                    "activity",
                    &submission.activity_id,
                )));
            }
        };
        check_survey_activity(
            activity.values.kind,
            &activity.course_version_id,
            &enrollment.course_version_ids,
        )
        .map_err(refuse)?;
        let active = !matches!(
            enrollment.state,
            EnrollmentState::Withdrawn | EnrollmentState::Waitlisted
        );
        let key = (activity.id.clone(), enrollment.person_id.clone());
        if let Some(first) = earlier.get(&key) {
            check_resubmission(first, &context.actor).map_err(refuse)?;
            let first = first.clone();
            if active {
                completions.push((submission.respondent, index));
            }
            answered[index] = Some((first, false));
            continue;
        }
        if !active {
            return Err(refuse(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::EnrollmentNotActive,
                subject: format!("enrollment/{}", enrollment.id),
                message: format!(
                    "the enrolment is {}; it takes no survey responses",
                    enrollment.state.as_str()
                ),
            }));
        }
        let answers = validate_answers(
            &activity.values.survey_questions,
            submission.answers.clone(),
        )
        .map_err(refuse)?;
        let response = SurveyResponse {
            id: crate::domain::new_id(),
            activity_id: activity.id.clone(),
            course_version_id: activity.course_version_id.clone(),
            enrollment_id: enrollment.id.clone(),
            person_id: enrollment.person_id.clone(),
            cohort_id: enrollment.cohort_id.clone(),
            programme_id: enrollment.programme_id.clone(),
            answers,
            submit_time: crate::domain::now(),
            submitted_by: context.actor.clone(),
        };
        let answers_json = serde_json::to_string(&response.answers).map_err(Error::internal)?;
        changes.push(AuditChange::new(
            SURVEY_RESPONSE,
            &response.id,
            &serde_json::json!({
                "activity_id": response.activity_id,
                "enrollment_id": response.enrollment_id,
                "person_id": response.person_id,
                "answers": answers_json,
                "submit_time": response.submit_time.to_rfc3339(),
            }),
        ));
        created.push(survey_responses::ActiveModel {
            id: Set(response.id.clone()),
            activity_id: Set(response.activity_id.clone()),
            course_version_id: Set(response.course_version_id.clone()),
            enrollment_id: Set(response.enrollment_id.clone()),
            person_id: Set(response.person_id.clone()),
            cohort_id: Set(response.cohort_id.clone()),
            programme_id: Set(response.programme_id.clone()),
            answers: Set(answers_json),
            actor: Set(context.actor.clone()),
            submit_time: Set(response.submit_time),
        });
        // A second enrolment of the same learner in the same survey finds this one.
        earlier.insert(key, response.clone());
        completions.push((submission.respondent, index));
        answered[index] = Some((response, true));
    }
    for chunk in created.chunks(200) {
        survey_responses::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(transaction)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    Error::Aborted {
                        reason: CONCURRENT_SUBMISSION,
                        message: "a learner of the batch answered the survey concurrently; retry"
                            .to_owned(),
                        metadata: Vec::new(),
                    }
                } else {
                    db_error(error)
                }
            })?;
    }
    // Completion events not recorded yet, per kind of respondent.
    let event_of = |index: usize| {
        let (response, _) = answered[index].as_ref().expect("answered above");
        completion_event(
            &enrollments_by_id[&submissions[index].enrollment_id],
            response,
        )
    };
    let event_ids: Vec<String> = completions
        .iter()
        .map(|&(_, index)| event_of(index).event_id)
        .collect();
    let mut recorded = std::collections::HashSet::new();
    for chunk in event_ids.chunks(500) {
        let found = progress_events::Entity::find()
            .select_only()
            .column(progress_events::Column::EventId)
            .filter(progress_events::Column::EventId.is_in(chunk.iter().cloned()))
            .into_tuple::<String>()
            .all(transaction)
            .await
            .map_err(db_error)?;
        recorded.extend(found);
    }
    for (kind, recorder) in [
        (Respondent::Learner, Recorder::Learner),
        (Respondent::Staff, Recorder::Staff),
    ] {
        let mut indexes = Vec::new();
        let mut events = Vec::new();
        for &(respondent, index) in &completions {
            let event = event_of(index);
            if respondent == kind && recorded.insert(event.event_id.clone()) {
                indexes.push(index);
                events.push(Ok(event));
            }
        }
        if events.is_empty() {
            continue;
        }
        let answers =
            record_in_caller_transaction(transaction, store, &context.actor, &recorder, events)
                .await?;
        for (index, answer) in indexes.into_iter().zip(answers) {
            if let Err(refusal) = answer {
                return Err(at_index(progress_refusal(refusal), index));
            }
            if let Some((response, false)) = &answered[index] {
                changes.push(AuditChange::new(
                    SURVEY_RESPONSE,
                    &response.id,
                    &serde_json::json!({"completed_enrollment_id": submissions[index].enrollment_id}),
                ));
            }
        }
    }
    if !changes.is_empty() {
        audit::append(transaction, context, changes).await?;
    }
    Ok(answered)
}

/// One submission of [`Store::batch_submit_survey_responses`].
#[derive(Debug, Clone)]
pub struct Submission {
    /// Whether the caller answers for themself or for a learner.
    pub respondent: Respondent,
    /// The enrolment.
    pub enrollment_id: String,
    /// The SURVEY activity.
    pub activity_id: String,
    /// The answers, before validation.
    pub answers: Vec<RawAnswer>,
}

/// Returns `error` as the refusal of submission `index` of a batch: field paths gain the prefix
/// `requests[index].`, and the other refusals name the index in their message and metadata.
fn at_index(error: Error, index: usize) -> Error {
    match error {
        Error::InvalidArgument(violations) => {
            let mut prefixed = crate::error::Violations::new();
            for violation in violations.as_slice() {
                prefixed.add(
                    format!("requests[{index}].{}", violation.field),
                    violation.description.clone(),
                );
            }
            Error::InvalidArgument(prefixed)
        }
        Error::FailedPrecondition {
            reason,
            subject,
            message,
            mut metadata,
        } => {
            metadata.push(("index", index.to_string()));
            Error::FailedPrecondition {
                reason,
                subject,
                message: format!("requests[{index}]: {message}"),
                metadata,
            }
        }
        Error::PermissionDenied { reason, message } => Error::PermissionDenied {
            reason,
            message: format!("requests[{index}]: {message}"),
        },
        other => other,
    }
}

/// What [`Store::batch_submit_survey_responses`] did.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// One response per submission, in request order.
    pub responses: Vec<SurveyResponse>,
    /// Submissions stored by the call.
    pub created: i64,
    /// Submissions that replayed an earlier response.
    pub unchanged: i64,
}

impl Store {
    /// Stores a response to a SURVEY activity and completes the activity for the enrolment, in
    /// one transaction. When the learner's survey was answered before, the first response stands:
    /// its submitter gets it back unchanged (and this enrolment's activity is made complete);
    /// anyone else is refused ([`check_resubmission`]).
    pub async fn submit_survey_response(
        &self,
        context: AuditContext,
        respondent: Respondent,
        enrollment_id: String,
        activity_id: String,
        answers: Vec<RawAnswer>,
    ) -> Result<SurveyResponse> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let store = self.clone();
            let context = context.clone();
            let enrollment_id = enrollment_id.clone();
            let activity_id = activity_id.clone();
            let answers = answers.clone();
            let result = self
                .write(move |transaction| {
                    Box::pin(async move {
                        submit_once(
                            transaction,
                            &store,
                            &context,
                            &respondent,
                            &enrollment_id,
                            &activity_id,
                            answers,
                        )
                        .await
                    })
                })
                .await;
            match result {
                Err(Error::Aborted { reason, .. })
                    if reason == CONCURRENT_SUBMISSION && attempt < 2 => {}
                other => return other.map(|(response, _)| response),
            }
        }
    }

    /// Stores up to 1,000 submissions in one transaction, each as
    /// [`Store::submit_survey_response`] would: all of them or none. Enrolments are locked in
    /// id order whatever the request order, so two batches over the same learners queue instead
    /// of deadlocking; the responses come back in request order.
    pub async fn batch_submit_survey_responses(
        &self,
        context: AuditContext,
        submissions: Vec<Submission>,
    ) -> Result<BatchOutcome> {
        let mut order: Vec<usize> = (0..submissions.len()).collect();
        order.sort_by(|&a, &b| {
            submissions[a]
                .enrollment_id
                .cmp(&submissions[b].enrollment_id)
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let store = self.clone();
            let context = context.clone();
            let submissions = submissions.clone();
            let order = order.clone();
            let result = self
                .write(move |transaction| {
                    Box::pin(async move {
                        submit_batch(transaction, &store, &context, &submissions, &order).await
                    })
                })
                .await;
            match result {
                Err(Error::Aborted { reason, .. })
                    if reason == CONCURRENT_SUBMISSION && attempt < 2 => {}
                Err(error) => return Err(error),
                Ok(answered) => {
                    let answered: Vec<Option<(SurveyResponse, bool)>> = answered;
                    let mut outcome = BatchOutcome {
                        responses: Vec::with_capacity(answered.len()),
                        created: 0,
                        unchanged: 0,
                    };
                    for (response, created) in answered.into_iter().flatten() {
                        if created {
                            outcome.created += 1;
                        } else {
                            outcome.unchanged += 1;
                        }
                        outcome.responses.push(response);
                    }
                    return Ok(outcome);
                }
            }
        }
    }

    /// Returns the questions of a SURVEY activity and the answers of every response to it in
    /// the selection (without respondents).
    pub async fn survey_selection(
        &self,
        activity_id: &str,
        filter: &ResponseFilter,
    ) -> Result<(Vec<SurveyQuestion>, Vec<Vec<Answer>>)> {
        let activity = super::course::load_activity(self.connection(), activity_id).await?;
        check_is_survey(activity.values.kind)?;
        let mut query = survey_responses::Entity::find()
            .select_only()
            .column(survey_responses::Column::Answers)
            .filter(survey_responses::Column::ActivityId.eq(activity_id));
        if let Some(programme_id) = &filter.programme_id {
            query = query.filter(survey_responses::Column::ProgrammeId.eq(programme_id.as_str()));
        }
        if let Some(cohort_id) = &filter.cohort_id {
            query = query.filter(survey_responses::Column::CohortId.eq(cohort_id.as_str()));
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
            query = query.filter(survey_responses::Column::PersonId.in_subquery(subtree));
        }
        let rows: Vec<String> = query
            .order_by_asc(survey_responses::Column::Id)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let responses = rows
            .iter()
            .map(|text| {
                serde_json::from_str::<Vec<Answer>>(text).map_err(|error| {
                    Error::internal(format!("stored survey answers are invalid: {error}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((activity.values.survey_questions, responses))
    }
}
