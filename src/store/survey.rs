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
use crate::error::{Error, Result};

/// Reason of the error a submission losing the race on the unique index fails with (retried once).
const CONCURRENT_SUBMISSION: &str = "CONCURRENT_SUBMISSION";

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
            reason: "ENROLLMENT_NOT_ACTIVE",
            subject: format!("enrollment/{}", error.key),
            message: error.message,
        },
        "PERMISSION_DENIED" => Error::permission_denied("OWN_RECORDS_ONLY", error.message),
        _ => Error::internal(format!(
            "the survey completion event was refused: {} {}",
            error.reason, error.message
        )),
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
    // Every field is derived from the response, so a replay carries the same content.
    let event = EventInput {
        event_id,
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
    };
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
) -> Result<SurveyResponse> {
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
        return Ok(earlier);
    }
    if !active {
        return Err(Error::FailedPrecondition {
            reason: "ENROLLMENT_NOT_ACTIVE",
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
    Ok(response)
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
                other => return other,
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
