//! `lms.v1.SurveyService`: submitting survey responses and reading aggregated results; also the
//! proto conversions of survey questions used by `CourseService`.

use tonic::{Request, Response, Status};

use crate::auth::{
    self,
    scope::{self, Object},
};
use crate::domain::{
    organization::{optional_id_or_error, required_id},
    survey::{
        self, AnswerValue, FREE_TEXT_MIN_RESPONSES, QuestionKind, RawAnswer, RawQuestion,
        Respondent, SurveyQuestion, SurveyResponse, SurveyResults, Thresholds,
    },
};
use crate::error::{Error, Reason, Result};
use crate::pb;
use crate::store::{
    Store,
    survey::{ResponseFilter, Submission},
};

/// Submissions a `BatchSubmitSurveyResponses` call carries at most.
pub const MAX_BATCH_SUBMISSIONS: usize = 1_000;

/// Handlers of `SurveyService`.
#[derive(Clone)]
pub struct SurveyApi {
    store: Store,
}

impl SurveyApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn kind_from_proto(kind: i32) -> Option<QuestionKind> {
    match pb::SurveyQuestionKind::try_from(kind).ok()? {
        pb::SurveyQuestionKind::Unspecified => None,
        pb::SurveyQuestionKind::Scale => Some(QuestionKind::Scale),
        pb::SurveyQuestionKind::Number => Some(QuestionKind::Number),
        pb::SurveyQuestionKind::SingleChoice => Some(QuestionKind::SingleChoice),
        pb::SurveyQuestionKind::FreeText => Some(QuestionKind::FreeText),
    }
}

fn kind_to_proto(kind: QuestionKind) -> pb::SurveyQuestionKind {
    match kind {
        QuestionKind::Scale => pb::SurveyQuestionKind::Scale,
        QuestionKind::Number => pb::SurveyQuestionKind::Number,
        QuestionKind::SingleChoice => pb::SurveyQuestionKind::SingleChoice,
        QuestionKind::FreeText => pb::SurveyQuestionKind::FreeText,
    }
}

/// Returns the survey questions of a request, before validation.
pub(crate) fn raw_questions(questions: &[pb::SurveyQuestion]) -> Vec<RawQuestion> {
    questions
        .iter()
        .map(|question| RawQuestion {
            id: question.id.clone(),
            text: question.text.clone(),
            kind: kind_from_proto(question.kind),
            required: question.required,
            unit: question.unit.clone(),
            min: question.min,
            max: question.max,
            options: question.options.clone(),
        })
        .collect()
}

/// Returns the proto form of stored survey questions.
pub(crate) fn questions_to_proto(questions: Vec<SurveyQuestion>) -> Vec<pb::SurveyQuestion> {
    questions
        .into_iter()
        .map(|question| pb::SurveyQuestion {
            id: question.id,
            text: question.text,
            kind: kind_to_proto(question.kind).into(),
            required: question.required,
            position: question.position,
            unit: question.unit.unwrap_or_default(),
            min: question.min,
            max: question.max,
            options: question.options,
        })
        .collect()
}

fn raw_answer(answer: pb::SurveyAnswer) -> RawAnswer {
    use pb::survey_answer::Value;
    RawAnswer {
        question_id: answer.question_id,
        value: answer.value.map(|value| match value {
            Value::Scale(scale) => AnswerValue::Scale(scale),
            Value::Number(number) => AnswerValue::Number(number),
            Value::Choice(choice) => AnswerValue::Choice(choice),
            Value::Text(text) => AnswerValue::Text(text),
        }),
    }
}

fn answer_to_proto(answer: survey::Answer) -> pb::SurveyAnswer {
    use pb::survey_answer::Value;
    pb::SurveyAnswer {
        question_id: answer.question_id,
        value: Some(match answer.value {
            AnswerValue::Scale(scale) => Value::Scale(scale),
            AnswerValue::Number(number) => Value::Number(number),
            AnswerValue::Choice(choice) => Value::Choice(choice),
            AnswerValue::Text(text) => Value::Text(text),
        }),
    }
}

impl From<SurveyResponse> for pb::SurveyResponse {
    fn from(response: SurveyResponse) -> Self {
        Self {
            id: response.id,
            activity_id: response.activity_id,
            enrollment_id: response.enrollment_id,
            person_id: response.person_id,
            cohort_id: response.cohort_id,
            programme_id: response.programme_id,
            course_version_id: response.course_version_id,
            answers: response.answers.into_iter().map(answer_to_proto).collect(),
            submit_time: Some(super::timestamp(response.submit_time)),
            submitted_by: response.submitted_by,
        }
    }
}

fn buckets_to_proto(buckets: Vec<survey::Bucket>) -> Vec<pb::DistributionBucket> {
    buckets
        .into_iter()
        .map(|bucket| pb::DistributionBucket {
            lower: bucket.lower,
            upper: bucket.upper,
            count: bucket.count,
        })
        .collect()
}

fn results_to_proto(activity_id: String, results: SurveyResults) -> pb::SurveyResults {
    let questions = results
        .questions
        .into_iter()
        .map(|result| {
            let answer_count = result.answer_count;
            let option_counts = result
                .option_counts
                .into_iter()
                .map(|(option, count)| pb::OptionCount {
                    option,
                    count,
                    share: if answer_count > 0 {
                        count as f64 / answer_count as f64
                    } else {
                        0.0
                    },
                })
                .collect();
            let mut question = pb::QuestionResult {
                question_id: result.question.id,
                text: result.question.text,
                kind: kind_to_proto(result.question.kind).into(),
                unit: result.question.unit.unwrap_or_default(),
                answer_count,
                threshold: result.threshold,
                option_counts,
                free_text_answers: result.free_text,
                free_text_withheld: result.free_text_withheld,
                distribution: buckets_to_proto(result.empty_distribution),
                ..Default::default()
            };
            if let Some(numeric) = result.numeric {
                question.mean = Some(numeric.mean);
                question.median = Some(numeric.median);
                question.min = Some(numeric.min);
                question.max = Some(numeric.max);
                question.distribution = buckets_to_proto(numeric.distribution);
                question.share_above_threshold = numeric.share_above_threshold;
            }
            question
        })
        .collect();
    pb::SurveyResults {
        activity_id,
        response_count: results.response_count,
        free_text_min_responses: FREE_TEXT_MIN_RESPONSES,
        questions,
    }
}

#[tonic::async_trait]
impl pb::survey_service_server::SurveyService for SurveyApi {
    async fn submit_survey_response(
        &self,
        request: Request<pb::SubmitSurveyResponseRequest>,
    ) -> Result<Response<pb::SurveyResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let enrollment_id = required_id("enrollment_id", &message.enrollment_id)?;
        let activity_id = required_id("activity_id", &message.activity_id)?;
        let answers = message.answers.into_iter().map(raw_answer).collect();
        let caller = scope::caller(&self.store, &context, Object::SurveyAnswer).await?;
        let owner = caller.check_found(
            Object::SurveyAnswer,
            "enrollment",
            &enrollment_id,
            self.store.enrollment_owner(&enrollment_id).await,
        )?;
        let respondent = if owner.person_id == caller.subject() {
            Respondent::Learner
        } else {
            Respondent::Staff
        };
        let response = self
            .store
            .submit_survey_response(
                context.audit(None),
                respondent,
                enrollment_id,
                activity_id,
                answers,
            )
            .await?;
        Ok(Response::new(response.into()))
    }

    async fn batch_submit_survey_responses(
        &self,
        request: Request<pb::BatchSubmitSurveyResponsesRequest>,
    ) -> Result<Response<pb::BatchSubmitSurveyResponsesResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        if message.requests.is_empty() || message.requests.len() > MAX_BATCH_SUBMISSIONS {
            return Err(Error::invalid(
                "requests",
                format!("must hold 1 to {MAX_BATCH_SUBMISSIONS} submissions"),
            )
            .into());
        }
        let mut violations = crate::error::Violations::new();
        let mut seen = std::collections::HashMap::new();
        let mut parsed = Vec::with_capacity(message.requests.len());
        for (index, submission) in message.requests.into_iter().enumerate() {
            let field = |name: &str| format!("requests[{index}].{name}");
            let enrollment_id = required_id(&field("enrollment_id"), &submission.enrollment_id);
            let activity_id = required_id(&field("activity_id"), &submission.activity_id);
            let (enrollment_id, activity_id) = match (enrollment_id, activity_id) {
                (Ok(enrollment_id), Ok(activity_id)) => (enrollment_id, activity_id),
                (first, second) => {
                    for error in [first.err(), second.err()].into_iter().flatten() {
                        if let Error::InvalidArgument(found) = error {
                            for violation in found.as_slice() {
                                violations.add(&violation.field, &violation.description);
                            }
                        }
                    }
                    continue;
                }
            };
            if let Some(first) = seen.insert((enrollment_id.clone(), activity_id.clone()), index) {
                violations.add(
                    field("activity_id"),
                    format!("repeats requests[{first}]: one submission per enrolment and survey"),
                );
                continue;
            }
            let answers = submission.answers.into_iter().map(raw_answer).collect();
            parsed.push((enrollment_id, activity_id, answers));
        }
        violations.into_result(())?;
        let caller = scope::caller(&self.store, &context, Object::SurveyAnswer).await?;
        let mut submissions = Vec::with_capacity(parsed.len());
        for (index, (enrollment_id, activity_id, answers)) in parsed.into_iter().enumerate() {
            let owner = caller
                .check_found(
                    Object::SurveyAnswer,
                    "enrollment",
                    &enrollment_id,
                    self.store.enrollment_owner(&enrollment_id).await,
                )
                .map_err(|error| match error {
                    Error::PermissionDenied { reason, message } => Error::PermissionDenied {
                        reason,
                        message: format!("requests[{index}]: {message}"),
                    },
                    other => other,
                })?;
            let respondent = if owner.person_id == caller.subject() {
                Respondent::Learner
            } else {
                Respondent::Staff
            };
            submissions.push(Submission {
                respondent,
                enrollment_id,
                activity_id,
                answers,
            });
        }
        let outcome = self
            .store
            .batch_submit_survey_responses(context.audit(None), submissions)
            .await?;
        Ok(Response::new(pb::BatchSubmitSurveyResponsesResponse {
            responses: outcome.responses.into_iter().map(Into::into).collect(),
            created_count: outcome.created,
            unchanged_count: outcome.unchanged,
        }))
    }

    async fn get_survey_results(
        &self,
        request: Request<pb::GetSurveyResultsRequest>,
    ) -> Result<Response<pb::SurveyResults>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let activity_id = required_id("activity_id", &message.activity_id)?;
        let mut filter = ResponseFilter {
            programme_id: optional_id_or_error("programme_id", &message.programme_id)?,
            cohort_id: optional_id_or_error("cohort_id", &message.cohort_id)?,
            organization_path_prefix: None,
        };
        let thresholds = Thresholds {
            default: message.threshold,
            per_question: message.question_thresholds.into_iter().collect(),
        };
        let caller = scope::list_caller(&self.store, &context, Object::Report).await?;
        let requested =
            match optional_id_or_error("organization_subtree", &message.organization_subtree)? {
                Some(root) => Some(self.store.get_organization(&root).await?.path),
                None => None,
            };
        if let Some(path) = &requested {
            caller.check_subtree(Object::Report, path)?;
        }
        // An aggregate has no rows to narrow: a limited caller's is rooted at their subtree.
        filter.organization_path_prefix = match caller.visibility(Object::Report) {
            None => requested,
            Some(visible) => match (requested, visible.organization_path_prefix) {
                (Some(path), _) => Some(path),
                (None, Some(own)) => Some(own),
                (None, None) => {
                    return Err(Error::permission_denied(
                        Reason::SurveyResultsNotAllowed,
                        "survey results are for managers of the organisations concerned",
                    )
                    .into());
                }
            },
        };
        let (questions, responses) = self.store.survey_selection(&activity_id, &filter).await?;
        thresholds.check(&questions)?;
        let results = survey::aggregate(&questions, &responses, &thresholds);
        Ok(Response::new(results_to_proto(activity_id, results)))
    }
}
