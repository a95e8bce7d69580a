//! `lms.v1.SelectionService`: calls, applications, panels, blind scores, rankings and decisions.

use tonic::{Request, Response, Status};

use crate::auth::{self, CallContext, scope::Caller};
use crate::domain::{
    field_mask,
    organization::{optional_id_or_error, required_id},
    page::Page,
    selection::{
        self, Application, ApplicationState, Assignment, Call, CallField, CallPatch, CallState,
        Criterion, NewCall, Panel, Question, Ranked, Score, ScoreVisibility, Viewer,
    },
};
use crate::error::{Error, Result};
use crate::pb;
use crate::store::{Store, selection::ApplicationFilter};

/// Handlers of `SelectionService`.
#[derive(Clone)]
pub struct SelectionApi {
    store: Store,
}

impl SelectionApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// Returns who is calling, as the selection rules see them (from the scope of
/// `Object::Application` in `auth::scope`).
fn viewer(context: &CallContext) -> Viewer {
    Caller::new(context.principal.clone()).selection_viewer()
}

fn application_state_to_proto(state: ApplicationState) -> pb::ApplicationState {
    match state {
        ApplicationState::Submitted => pb::ApplicationState::Submitted,
        ApplicationState::Withdrawn => pb::ApplicationState::Withdrawn,
        ApplicationState::Accepted => pb::ApplicationState::Accepted,
        ApplicationState::Waitlisted => pb::ApplicationState::Waitlisted,
        ApplicationState::Rejected => pb::ApplicationState::Rejected,
    }
}

fn application_state_from_proto(state: i32) -> Result<Option<ApplicationState>> {
    match pb::ApplicationState::try_from(state) {
        Ok(pb::ApplicationState::Unspecified) => Ok(None),
        Ok(pb::ApplicationState::Submitted) => Ok(Some(ApplicationState::Submitted)),
        Ok(pb::ApplicationState::Withdrawn) => Ok(Some(ApplicationState::Withdrawn)),
        Ok(pb::ApplicationState::Accepted) => Ok(Some(ApplicationState::Accepted)),
        Ok(pb::ApplicationState::Waitlisted) => Ok(Some(ApplicationState::Waitlisted)),
        Ok(pb::ApplicationState::Rejected) => Ok(Some(ApplicationState::Rejected)),
        Err(_) => Err(Error::invalid("state", "is not a known value")),
    }
}

fn score_visibility_to_proto(visibility: ScoreVisibility) -> pb::ScoreVisibility {
    match visibility {
        ScoreVisibility::HiddenUntilDecided => pb::ScoreVisibility::HiddenUntilDecided,
        ScoreVisibility::AfterOwnScore => pb::ScoreVisibility::AfterOwnScore,
        ScoreVisibility::ManagersOnly => pb::ScoreVisibility::ManagersOnly,
    }
}

/// Returns the visibility named by `value` (`None` when unspecified); INVALID_ARGUMENT on
/// `field` for a value this service does not know.
fn score_visibility_from_proto(field: &str, value: i32) -> Result<Option<ScoreVisibility>> {
    match pb::ScoreVisibility::try_from(value) {
        Ok(pb::ScoreVisibility::Unspecified) => Ok(None),
        Ok(pb::ScoreVisibility::HiddenUntilDecided) => {
            Ok(Some(ScoreVisibility::HiddenUntilDecided))
        }
        Ok(pb::ScoreVisibility::AfterOwnScore) => Ok(Some(ScoreVisibility::AfterOwnScore)),
        Ok(pb::ScoreVisibility::ManagersOnly) => Ok(Some(ScoreVisibility::ManagersOnly)),
        Err(_) => Err(Error::invalid(field, "is not a known value")),
    }
}

fn call_to_proto(call: Call) -> pb::Call {
    let state = match call.state_at(crate::domain::now()) {
        CallState::Scheduled => pb::CallState::Scheduled,
        CallState::Open => pb::CallState::Open,
        CallState::Closed => pb::CallState::Closed,
    };
    pb::Call {
        id: call.id,
        cohort_id: call.cohort_id,
        programme_id: call.programme_id,
        title: call.title,
        opens_time: Some(super::timestamp(call.opens_time)),
        closes_time: Some(super::timestamp(call.closes_time)),
        questions: call
            .questions
            .into_iter()
            .map(|question| pb::Question {
                id: question.id,
                text: question.text,
                required: question.required,
            })
            .collect(),
        rubric: call
            .rubric
            .into_iter()
            .map(|criterion| pb::Criterion {
                id: criterion.id,
                title: criterion.title,
                weight: criterion.weight,
            })
            .collect(),
        seats: call.seats,
        nomination_only: call.nomination_only,
        score_visibility: score_visibility_to_proto(call.score_visibility).into(),
        state: state.into(),
        accepted_count: call.accepted_count,
        etag: crate::domain::etag(call.revision),
        create_time: Some(super::timestamp(call.create_time)),
        update_time: Some(super::timestamp(call.update_time)),
    }
}

impl From<Application> for pb::Application {
    fn from(application: Application) -> Self {
        Self {
            id: application.id,
            call_id: application.call_id,
            person_id: application.person_id,
            answers: application
                .answers
                .into_iter()
                .map(|(question_id, text)| pb::Answer { question_id, text })
                .collect(),
            nominated_by: application.nominated_by.unwrap_or_default(),
            state: application_state_to_proto(application.state).into(),
            enrollment_id: application.enrollment_id.unwrap_or_default(),
            submit_time: Some(super::timestamp(application.submit_time)),
            decide_time: application.decide_time.map(super::timestamp),
            etag: crate::domain::etag(application.revision),
            create_time: Some(super::timestamp(application.create_time)),
            update_time: Some(super::timestamp(application.update_time)),
        }
    }
}

impl From<Panel> for pb::Panel {
    fn from(panel: Panel) -> Self {
        Self {
            id: panel.id,
            call_id: panel.call_id,
            judge_person_ids: panel.judge_person_ids,
            judges_per_application: panel.judges_per_application,
            assignment_count: panel.assignment_count,
            min_judge_load: i32::try_from(panel.min_judge_load).unwrap_or(i32::MAX),
            max_judge_load: i32::try_from(panel.max_judge_load).unwrap_or(i32::MAX),
            etag: crate::domain::etag(panel.revision),
            create_time: Some(super::timestamp(panel.create_time)),
            update_time: Some(super::timestamp(panel.update_time)),
        }
    }
}

impl From<Score> for pb::Score {
    fn from(score: Score) -> Self {
        Self {
            id: score.id,
            application_id: score.application_id,
            judge_person_id: score.judge_person_id,
            criterion_scores: score
                .scores
                .into_iter()
                .map(|(criterion_id, score)| pb::CriterionScore {
                    criterion_id,
                    score,
                })
                .collect(),
            weighted_score: score.weighted_score,
            comment: score.comment,
            submit_time: Some(super::timestamp(score.submit_time)),
        }
    }
}

impl From<Assignment> for pb::Assignment {
    fn from(assignment: Assignment) -> Self {
        Self {
            id: assignment.id,
            panel_id: assignment.panel_id,
            call_id: assignment.call_id,
            application: Some(assignment.application.into()),
            judge_person_id: assignment.judge_person_id,
            score: assignment.score.map(Into::into),
        }
    }
}

impl From<Ranked> for pb::RankedApplication {
    fn from(line: Ranked) -> Self {
        Self {
            rank: line.rank as i32,
            application_id: line.id,
            person_id: line.person_id,
            weighted_mean: line.weighted_mean,
            score_count: line.score_count as i32,
            assigned_count: line.assigned_count as i32,
            spread: line.spread,
            spread_flagged: line.spread_flagged,
            state: application_state_to_proto(line.state).into(),
            submit_time: Some(super::timestamp(line.submit_time)),
        }
    }
}

#[tonic::async_trait]
impl pb::selection_service_server::SelectionService for SelectionApi {
    async fn create_call(
        &self,
        request: Request<pb::CreateCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let call = message
            .call
            .ok_or_else(|| Error::invalid("call", "is required"))?;
        let score_visibility =
            score_visibility_from_proto("call.score_visibility", call.score_visibility)?
                .unwrap_or_default();
        let new = NewCall::parse(
            "call",
            &call.cohort_id,
            &call.title,
            super::optional_time("call.opens_time", call.opens_time)?,
            super::optional_time("call.closes_time", call.closes_time)?,
            call.questions
                .into_iter()
                .map(|question| Question {
                    id: question.id,
                    text: question.text,
                    required: question.required,
                })
                .collect(),
            call.rubric
                .into_iter()
                .map(|criterion| Criterion {
                    id: criterion.id,
                    title: criterion.title,
                    weight: criterion.weight,
                })
                .collect(),
            call.seats,
            call.nomination_only,
            score_visibility,
        )?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self.store.create_call(audit, new, key).await?;
        tracing::info!(call = %created.id, "selection call created");
        Ok(Response::new(call_to_proto(created)))
    }

    async fn get_call(
        &self,
        request: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(call_to_proto(
            self.store.get_call(&id).await?,
        )))
    }

    async fn list_calls(
        &self,
        request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let message = request.into_inner();
        let filters = format!("cohort={}", message.cohort_id);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let cohort_id = optional_id_or_error("cohort_id", &message.cohort_id)?;
        let (calls, next_page_token) = self.store.list_calls(cohort_id.as_deref(), &page).await?;
        Ok(Response::new(pb::ListCallsResponse {
            calls: calls.into_iter().map(call_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_call(
        &self,
        request: Request<pb::UpdateCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let call = message
            .call
            .ok_or_else(|| Error::invalid("call", "is required"))?;
        let id = required_id("call.id", &call.id)?;
        let score_visibility =
            score_visibility_from_proto("call.score_visibility", call.score_visibility)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            CallField::parse,
            &CallField::OUTPUT_ONLY,
            &CallField::ALL,
            |field| match field {
                CallField::Title => !call.title.is_empty(),
                CallField::Seats => call.seats != 0,
                CallField::NominationOnly => call.nomination_only,
                CallField::ScoreVisibility => score_visibility.is_some(),
            },
        )?;
        let patch = CallPatch::parse(
            "call",
            &fields,
            &call.title,
            call.seats,
            call.nomination_only,
            score_visibility,
        )?;
        let expected_revision = super::expected_revision("call.etag", &call.etag)?;
        let updated = self
            .store
            .update_call(context.audit(None), id, patch, expected_revision)
            .await?;
        Ok(Response::new(call_to_proto(updated)))
    }

    async fn close_call(
        &self,
        request: Request<pb::CloseCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let closed = self
            .store
            .close_call(context.audit(None), id, expected_revision)
            .await?;
        Ok(Response::new(call_to_proto(closed)))
    }

    async fn submit_application(
        &self,
        request: Request<pb::SubmitApplicationRequest>,
    ) -> Result<Response<pb::Application>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let call_id = required_id("call_id", &message.call_id)?;
        let person_id = required_id("person_id", &message.person_id)?;
        let answers = message
            .answers
            .into_iter()
            .map(|answer| (answer.question_id, answer.text))
            .collect();
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let application = self
            .store
            .submit_application(audit, viewer(&context), call_id, person_id, answers, key)
            .await?;
        tracing::info!(application = %application.id, "application submitted");
        Ok(Response::new(application.into()))
    }

    async fn withdraw_application(
        &self,
        request: Request<pb::WithdrawApplicationRequest>,
    ) -> Result<Response<pb::Application>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let withdrawn = self
            .store
            .withdraw_application(context.audit(None), viewer(&context), id, expected_revision)
            .await?;
        Ok(Response::new(withdrawn.into()))
    }

    async fn get_application(
        &self,
        request: Request<pb::GetApplicationRequest>,
    ) -> Result<Response<pb::Application>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let application = self.store.get_application(&viewer(&context), &id).await?;
        Ok(Response::new(application.into()))
    }

    async fn list_applications(
        &self,
        request: Request<pb::ListApplicationsRequest>,
    ) -> Result<Response<pb::ListApplicationsResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let filters = format!("call={};state={}", message.call_id, message.state);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = ApplicationFilter {
            call_id: required_id("call_id", &message.call_id)?,
            state: application_state_from_proto(message.state)?,
        };
        let (applications, next_page_token) = self
            .store
            .list_applications(&viewer(&context), &filter, &page)
            .await?;
        Ok(Response::new(pb::ListApplicationsResponse {
            applications: applications.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn create_panel(
        &self,
        request: Request<pb::CreatePanelRequest>,
    ) -> Result<Response<pb::Panel>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let panel = message
            .panel
            .ok_or_else(|| Error::invalid("panel", "is required"))?;
        selection::validate_panel(
            "panel",
            &panel.call_id,
            &panel.judge_person_ids,
            panel.judges_per_application,
        )?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self
            .store
            .create_panel(
                audit,
                panel.call_id,
                panel.judge_person_ids,
                panel.judges_per_application,
                key,
            )
            .await?;
        tracing::info!(panel = %created.id, assignments = created.assignment_count, "selection panel created");
        Ok(Response::new(created.into()))
    }

    async fn get_panel(
        &self,
        request: Request<pb::GetPanelRequest>,
    ) -> Result<Response<pb::Panel>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(
            self.store.get_panel(&viewer(&context), &id).await?.into(),
        ))
    }

    async fn assign_applications(
        &self,
        request: Request<pb::AssignApplicationsRequest>,
    ) -> Result<Response<pb::AssignApplicationsResponse>, Status> {
        let context = auth::context(&request)?;
        let panel_id = required_id("panel_id", &request.get_ref().panel_id)?;
        let (panel, assigned) = self
            .store
            .assign_applications(context.audit(None), panel_id)
            .await?;
        Ok(Response::new(pb::AssignApplicationsResponse {
            panel: Some(panel.into()),
            assigned,
        }))
    }

    async fn list_my_assignments(
        &self,
        request: Request<pb::ListMyAssignmentsRequest>,
    ) -> Result<Response<pb::ListMyAssignmentsResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let filters = format!("call={}", message.call_id);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let call_id = optional_id_or_error("call_id", &message.call_id)?;
        let (assignments, next_page_token) = self
            .store
            .list_my_assignments(&context.principal.subject, call_id.as_deref(), &page)
            .await?;
        Ok(Response::new(pb::ListMyAssignmentsResponse {
            assignments: assignments.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn submit_score(
        &self,
        request: Request<pb::SubmitScoreRequest>,
    ) -> Result<Response<pb::Score>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let application_id = required_id("application_id", &message.application_id)?;
        let comment = selection::validate_comment(&message.comment)?;
        let scores = message
            .criterion_scores
            .into_iter()
            .map(|score| (score.criterion_id, score.score))
            .collect();
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let score = self
            .store
            .submit_score(
                audit,
                context.principal.subject.clone(),
                application_id,
                scores,
                comment,
                key,
            )
            .await?;
        Ok(Response::new(score.into()))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let context = auth::context(&request)?;
        let application_id = required_id("application_id", &request.get_ref().application_id)?;
        let (scores, others_hidden) = self
            .store
            .list_scores(&viewer(&context), &application_id)
            .await?;
        Ok(Response::new(pb::ListScoresResponse {
            scores: scores.into_iter().map(Into::into).collect(),
            others_hidden,
        }))
    }

    async fn rank_applications(
        &self,
        request: Request<pb::RankApplicationsRequest>,
    ) -> Result<Response<pb::RankApplicationsResponse>, Status> {
        let message = request.into_inner();
        let call_id = required_id("call_id", &message.call_id)?;
        let threshold = selection::spread_threshold(message.spread_threshold)?;
        let ranking = self.store.rank_applications(&call_id, threshold).await?;
        Ok(Response::new(pb::RankApplicationsResponse {
            ranking: ranking.into_iter().map(Into::into).collect(),
            spread_threshold: threshold,
        }))
    }

    async fn decide_applications(
        &self,
        request: Request<pb::DecideApplicationsRequest>,
    ) -> Result<Response<pb::DecideApplicationsResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let call_id = required_id("call_id", &message.call_id)?;
        let decisions = selection::parse_decisions(
            &message.accepted_ids,
            &message.waitlisted_ids,
            &message.rejected_ids,
        )?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let (applications, enrollments) = self
            .store
            .decide_applications(audit, call_id, decisions, key)
            .await?;
        tracing::info!(
            decided = applications.len(),
            enrolled = enrollments.len(),
            "selection decided"
        );
        Ok(Response::new(pb::DecideApplicationsResponse {
            applications: applications.into_iter().map(Into::into).collect(),
            enrollments: enrollments.into_iter().map(Into::into).collect(),
        }))
    }
}
