//! Surveys: the questions of a SURVEY activity, the validation of a learner's answers against
//! them, and the aggregation of responses per question (count, mean, median, distribution, share
//! above a threshold, option counts, free text behind a k-anonymity floor).
//!
//! Everything here is pure: the store loads questions and responses and calls [`aggregate`].

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Reason, Result, Violations};

/// Most questions of one survey.
pub const MAX_QUESTIONS: usize = 50;
/// Longest question id.
pub const MAX_QUESTION_ID_CHARS: usize = 64;
/// Longest question text.
pub const MAX_QUESTION_TEXT_CHARS: usize = 500;
/// Longest unit of a NUMBER question.
pub const MAX_UNIT_CHARS: usize = 64;
/// Fewest options of a SINGLE_CHOICE question.
pub const MIN_OPTIONS: usize = 2;
/// Most options of a SINGLE_CHOICE question.
pub const MAX_OPTIONS: usize = 20;
/// Longest option.
pub const MAX_OPTION_CHARS: usize = 200;
/// Longest free-text answer.
pub const MAX_FREE_TEXT_CHARS: usize = 2_000;
/// Most answers in one submission.
pub const MAX_ANSWERS: usize = 200;
/// Smallest and largest SCALE answers.
pub const SCALE_RANGE: std::ops::RangeInclusive<i32> = 1..=5;
/// k-anonymity floor: free text is shown only for selections of at least this many responses.
pub const FREE_TEXT_MIN_RESPONSES: i64 = 5;
/// NUMBER distributions list exact values up to this many distinct values, else buckets.
pub const MAX_EXACT_VALUES: usize = 20;
/// Buckets of a NUMBER distribution with many distinct values.
pub const NUMBER_BUCKETS: usize = 10;

/// Resource type of survey responses in errors and audit entries.
pub const SURVEY_RESPONSE: &str = "survey_response";

/// Kind of a survey question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QuestionKind {
    /// A rating 1-5.
    Scale,
    /// A number with a unit.
    Number,
    /// One of a list of options.
    SingleChoice,
    /// Free text.
    FreeText,
}

impl QuestionKind {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scale => "SCALE",
            Self::Number => "NUMBER",
            Self::SingleChoice => "SINGLE_CHOICE",
            Self::FreeText => "FREE_TEXT",
        }
    }

    /// Returns the answer field of this kind in `SurveyAnswer`.
    pub fn answer_field(self) -> &'static str {
        match self {
            Self::Scale => "scale",
            Self::Number => "number",
            Self::SingleChoice => "choice",
            Self::FreeText => "text",
        }
    }
}

/// A validated question of a SURVEY activity (stored as JSON with its activity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyQuestion {
    /// Unique within the activity.
    pub id: String,
    /// The question.
    pub text: String,
    /// Kind.
    pub kind: QuestionKind,
    /// Whether a response must answer it.
    pub required: bool,
    /// 1-based position.
    pub position: i32,
    /// NUMBER: unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// NUMBER: smallest answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// NUMBER: largest answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// SINGLE_CHOICE: the options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

// Bounds are validated finite before a question exists, so equality is total.
impl Eq for SurveyQuestion {}

/// A question as a request carries it, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawQuestion {
    /// Id.
    pub id: String,
    /// Text.
    pub text: String,
    /// Kind; `None` when unset or unknown.
    pub kind: Option<QuestionKind>,
    /// Required flag.
    pub required: bool,
    /// Unit (empty for none).
    pub unit: String,
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
    /// Options.
    pub options: Vec<String>,
}

fn valid_question_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_QUESTION_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_text(violations: &mut Violations, field: String, text: &str, max: usize) {
    let length = text.chars().count();
    if text.trim().is_empty() {
        violations.add(field, "is required");
    } else if length > max {
        violations.add(field, format!("must be at most {max} characters"));
    }
}

/// Validates the questions of a SURVEY activity; violations are named `{prefix}[i].field`.
pub fn parse_questions(prefix: &str, raw: &[RawQuestion]) -> Result<Vec<SurveyQuestion>> {
    let mut violations = Violations::new();
    if raw.len() > MAX_QUESTIONS {
        violations.add(
            prefix,
            format!("must hold at most {MAX_QUESTIONS} questions"),
        );
        return Err(Error::InvalidArgument(violations));
    }
    let mut seen = HashSet::new();
    let mut questions = Vec::with_capacity(raw.len());
    for (index, question) in raw.iter().enumerate() {
        let field = |name: &str| format!("{prefix}[{index}].{name}");
        if !valid_question_id(&question.id) {
            violations.add(
                field("id"),
                format!("must be 1 to {MAX_QUESTION_ID_CHARS} letters, digits, '-' or '_'"),
            );
        } else if !seen.insert(question.id.as_str()) {
            violations.add(field("id"), "is used by another question of this survey");
        }
        check_text(
            &mut violations,
            field("text"),
            &question.text,
            MAX_QUESTION_TEXT_CHARS,
        );
        let Some(kind) = question.kind else {
            violations.add(
                field("kind"),
                "is required (one of the SurveyQuestionKind values)",
            );
            continue;
        };
        let is_number = kind == QuestionKind::Number;
        if !is_number {
            if !question.unit.is_empty() {
                violations.add(field("unit"), "is only allowed for NUMBER questions");
            }
            if question.min.is_some() {
                violations.add(field("min"), "is only allowed for NUMBER questions");
            }
            if question.max.is_some() {
                violations.add(field("max"), "is only allowed for NUMBER questions");
            }
        } else {
            if question.unit.chars().count() > MAX_UNIT_CHARS {
                violations.add(
                    field("unit"),
                    format!("must be at most {MAX_UNIT_CHARS} characters"),
                );
            }
            for (name, bound) in [("min", question.min), ("max", question.max)] {
                if bound.is_some_and(|value| !value.is_finite()) {
                    violations.add(field(name), "must be a finite number");
                }
            }
            if let (Some(min), Some(max)) = (question.min, question.max)
                && min > max
            {
                violations.add(field("max"), "must not be below min");
            }
        }
        if kind == QuestionKind::SingleChoice {
            let count = question.options.len();
            if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&count) {
                violations.add(
                    field("options"),
                    format!("must hold {MIN_OPTIONS} to {MAX_OPTIONS} options"),
                );
            }
            let mut distinct = HashSet::new();
            for (option_index, option) in question.options.iter().enumerate() {
                let option_field = format!("{prefix}[{index}].options[{option_index}]");
                check_text(
                    &mut violations,
                    option_field.clone(),
                    option,
                    MAX_OPTION_CHARS,
                );
                if !distinct.insert(option.as_str()) {
                    violations.add(option_field, "repeats another option");
                }
            }
        } else if !question.options.is_empty() {
            violations.add(
                field("options"),
                "is only allowed for SINGLE_CHOICE questions",
            );
        }
        questions.push(SurveyQuestion {
            id: question.id.clone(),
            text: question.text.trim().to_owned(),
            kind,
            required: question.required,
            position: index as i32 + 1,
            unit: (is_number && !question.unit.is_empty()).then(|| question.unit.clone()),
            min: question.min.filter(|_| is_number),
            max: question.max.filter(|_| is_number),
            options: question.options.clone(),
        });
    }
    violations.into_result(questions)
}

/// The value of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerValue {
    /// SCALE.
    Scale(i32),
    /// NUMBER.
    Number(f64),
    /// SINGLE_CHOICE.
    Choice(String),
    /// FREE_TEXT.
    Text(String),
}

impl AnswerValue {
    /// Returns the answer field it is sent in.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Scale(_) => "scale",
            Self::Number(_) => "number",
            Self::Choice(_) => "choice",
            Self::Text(_) => "text",
        }
    }
}

/// An answer as sent: `value` is `None` when no value field was set.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAnswer {
    /// The question answered.
    pub question_id: String,
    /// The value.
    pub value: Option<AnswerValue>,
}

/// A validated answer (stored as JSON with its response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The question answered.
    pub question_id: String,
    /// The value.
    pub value: AnswerValue,
}

/// Validates answers against `questions`; violations are named `answers[i].…`, a missing
/// required question `answers` (nothing is written on failure).
pub fn validate_answers(questions: &[SurveyQuestion], raw: Vec<RawAnswer>) -> Result<Vec<Answer>> {
    let mut violations = Violations::new();
    if raw.len() > MAX_ANSWERS {
        violations.add(
            "answers",
            format!("must hold at most {MAX_ANSWERS} answers"),
        );
        return Err(Error::InvalidArgument(violations));
    }
    let by_id: HashMap<&str, &SurveyQuestion> = questions
        .iter()
        .map(|question| (question.id.as_str(), question))
        .collect();
    let mut answered = HashSet::new();
    let mut answers = Vec::with_capacity(raw.len());
    for (index, answer) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("answers[{index}].{name}");
        let Some(question) = by_id.get(answer.question_id.as_str()) else {
            violations.add(field("question_id"), "is not a question of this survey");
            continue;
        };
        if !answered.insert(question.id.clone()) {
            violations.add(field("question_id"), "is answered more than once");
            continue;
        }
        let expected = question.kind.answer_field();
        let Some(value) = answer.value else {
            violations.add(
                field(expected),
                format!(
                    "is required: question {} is {}",
                    question.id,
                    question.kind.as_str()
                ),
            );
            continue;
        };
        if value.field() != expected {
            violations.add(
                field(value.field()),
                format!(
                    "does not fit question {}, which is {}: set {expected}",
                    question.id,
                    question.kind.as_str()
                ),
            );
            continue;
        }
        match &value {
            AnswerValue::Scale(scale) if !SCALE_RANGE.contains(scale) => {
                violations.add(field("scale"), "must be 1 to 5");
            }
            AnswerValue::Number(number) if !number.is_finite() => {
                violations.add(field("number"), "must be a finite number");
            }
            AnswerValue::Number(number) => {
                if let Some(min) = question.min
                    && *number < min
                {
                    violations.add(field("number"), format!("must be at least {min}"));
                }
                if let Some(max) = question.max
                    && *number > max
                {
                    violations.add(field("number"), format!("must be at most {max}"));
                }
            }
            AnswerValue::Choice(choice) if !question.options.contains(choice) => {
                violations.add(
                    field("choice"),
                    format!("must be one of the options of question {}", question.id),
                );
            }
            AnswerValue::Text(text) => {
                check_text(&mut violations, field("text"), text, MAX_FREE_TEXT_CHARS);
            }
            _ => {}
        }
        answers.push(Answer {
            question_id: question.id.clone(),
            value,
        });
    }
    for question in questions {
        if question.required && !answered.contains(&question.id) {
            violations.add(
                "answers",
                format!("question {} is required and has no answer", question.id),
            );
        }
    }
    violations.into_result(answers)
}

/// A stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyResponse {
    /// UUIDv7.
    pub id: String,
    /// The SURVEY activity.
    pub activity_id: String,
    /// The course version of the activity.
    pub course_version_id: String,
    /// The enrolment submitted for.
    pub enrollment_id: String,
    /// The respondent.
    pub person_id: String,
    /// The enrolment's cohort.
    pub cohort_id: String,
    /// The enrolment's programme.
    pub programme_id: String,
    /// The answers.
    pub answers: Vec<Answer>,
    /// When submitted.
    pub submit_time: DateTime<Utc>,
    /// Who entered the answers: the respondent themself, or a staff member on their behalf.
    pub submitted_by: String,
}

impl SurveyResponse {
    /// Returns true when the answers were entered by someone other than the respondent.
    pub fn entered_on_behalf(&self) -> bool {
        self.submitted_by != self.person_id
    }
}

/// Who submits a response. Whose enrolments they may answer for is checked before, by the API
/// (`auth::scope`, `Object::SurveyAnswer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Respondent {
    /// A learner answering for themself.
    Learner,
    /// Staff entering a response on a learner's behalf.
    Staff,
}

/// Decides a submission by `actor` when the learner's survey holds `earlier` already: the first
/// response stands. Whoever entered it gets it back (a retry, or second thoughts: nothing changes);
/// anyone else is refused with FAILED_PRECONDITION `SURVEY_ALREADY_ANSWERED`, so that staff never
/// replace a learner's own answers, nor a learner's answers silently vanish behind staff's.
pub fn check_resubmission(earlier: &SurveyResponse, actor: &str) -> Result<()> {
    if earlier.submitted_by == actor {
        return Ok(());
    }
    let by = if earlier.entered_on_behalf() {
        "entered on the learner's behalf"
    } else {
        "given by the learner"
    };
    Err(Error::FailedPrecondition {
        metadata: Vec::new(),
        reason: Reason::SurveyAlreadyAnswered,
        subject: format!("survey_response/{}", earlier.id),
        message: format!(
            "the learner's answers to this survey were {by} already; they are kept as they are"
        ),
    })
}

/// Fails with INVALID_ARGUMENT on `activity_id` unless the activity is a SURVEY of one of the
/// enrolment's pinned course versions.
pub fn check_survey_activity(
    kind: crate::domain::course::ActivityKind,
    activity_version_id: &str,
    pinned_version_ids: &[String],
) -> Result<()> {
    if !pinned_version_ids
        .iter()
        .any(|pinned| pinned == activity_version_id)
    {
        return Err(Error::invalid(
            "activity_id",
            "is not part of the course versions this enrolment pinned",
        ));
    }
    check_is_survey(kind)
}

/// Fails with INVALID_ARGUMENT on `activity_id` unless the activity is a SURVEY.
pub fn check_is_survey(kind: crate::domain::course::ActivityKind) -> Result<()> {
    if kind != crate::domain::course::ActivityKind::Survey {
        return Err(Error::invalid(
            "activity_id",
            format!("is a {} activity, not a SURVEY", kind.as_str()),
        ));
    }
    Ok(())
}

/// Returns the id of the COMPLETED progress event a survey response records: a UUIDv5 of the
/// enrolment and the activity, so a retried submission can never record a second one.
pub fn completion_event_id(enrollment_id: &str, activity_id: &str) -> String {
    // A namespace of our own (UUIDv5 of the URL namespace and a fixed name).
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:lms:survey-completion");
    uuid::Uuid::new_v5(
        &namespace,
        format!("{enrollment_id}/{activity_id}").as_bytes(),
    )
    .to_string()
}

/// Thresholds of a results request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// Applied to every SCALE and NUMBER question.
    pub default: Option<f64>,
    /// Per question id, overriding `default`.
    pub per_question: HashMap<String, f64>,
}

impl Thresholds {
    /// Returns the threshold of `question_id`.
    pub fn of(&self, question_id: &str) -> Option<f64> {
        self.per_question.get(question_id).copied().or(self.default)
    }

    /// Checks the thresholds are finite and name questions of the survey.
    pub fn check(&self, questions: &[SurveyQuestion]) -> Result<()> {
        let mut violations = Violations::new();
        if self.default.is_some_and(|value| !value.is_finite()) {
            violations.add("threshold", "must be a finite number");
        }
        for (id, value) in &self.per_question {
            let field = format!("question_thresholds[{id}]");
            match questions.iter().find(|question| &question.id == id) {
                None => violations.add(field, "is not a question of this survey"),
                Some(question)
                    if !matches!(question.kind, QuestionKind::Scale | QuestionKind::Number) =>
                {
                    violations.add(field, "applies to SCALE and NUMBER questions only");
                }
                Some(_) if !value.is_finite() => violations.add(field, "must be a finite number"),
                Some(_) => {}
            }
        }
        violations.into_result(())
    }
}

/// A bucket of a distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Lower bound (inclusive).
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Answers in it.
    pub count: i64,
}

/// Statistics of numeric answers.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericSummary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Distribution.
    pub distribution: Vec<Bucket>,
    /// Threshold applied, if any.
    pub threshold: Option<f64>,
    /// Share strictly above the threshold.
    pub share_above_threshold: Option<f64>,
}

/// Aggregate of one question.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionResult {
    /// The question.
    pub question: SurveyQuestion,
    /// Responses answering it.
    pub answer_count: i64,
    /// SCALE and NUMBER with answers.
    pub numeric: Option<NumericSummary>,
    /// SCALE without answers still lists its 1-5 buckets; NUMBER without answers has none.
    pub empty_distribution: Vec<Bucket>,
    /// The threshold asked for (also without answers).
    pub threshold: Option<f64>,
    /// SINGLE_CHOICE: (option, count), in option order.
    pub option_counts: Vec<(String, i64)>,
    /// FREE_TEXT: answers, sorted; empty when withheld.
    pub free_text: Vec<String>,
    /// FREE_TEXT: withheld below the k-anonymity floor.
    pub free_text_withheld: bool,
}

/// Results of a survey over a selection of responses.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyResults {
    /// Responses in the selection.
    pub response_count: i64,
    /// One per question, in order.
    pub questions: Vec<QuestionResult>,
}

/// Returns the mean of `values` (`None` when empty).
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Returns the median of sorted `values`: the middle one, or the mean of the middle two.
pub fn median_of_sorted(values: &[f64]) -> Option<f64> {
    let count = values.len();
    if count == 0 {
        return None;
    }
    debug_assert!(values.windows(2).all(|pair| pair[0] <= pair[1]));
    Some(if count % 2 == 1 {
        values[count / 2]
    } else {
        (values[count / 2 - 1] + values[count / 2]) / 2.0
    })
}

/// Returns the share (0-1) of `values` strictly greater than `threshold` (`None` when empty).
pub fn share_above(values: &[f64], threshold: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let above = values.iter().filter(|value| **value > threshold).count();
    Some(above as f64 / values.len() as f64)
}

fn scale_buckets(values: &[f64]) -> Vec<Bucket> {
    SCALE_RANGE
        .map(|scale| Bucket {
            lower: f64::from(scale),
            upper: f64::from(scale),
            count: values
                .iter()
                .filter(|value| **value == f64::from(scale))
                .count() as i64,
        })
        .collect()
}

/// Returns the distribution of sorted NUMBER answers: exact values when few, else equal buckets.
fn number_buckets(sorted: &[f64]) -> Vec<Bucket> {
    let mut exact: Vec<Bucket> = Vec::new();
    for value in sorted {
        match exact.last_mut() {
            Some(last) if last.lower == *value => last.count += 1,
            _ => exact.push(Bucket {
                lower: *value,
                upper: *value,
                count: 1,
            }),
        }
    }
    if exact.len() <= MAX_EXACT_VALUES {
        return exact;
    }
    let (Some(low), Some(high)) = (sorted.first().copied(), sorted.last().copied()) else {
        return Vec::new();
    };
    let width = (high - low) / NUMBER_BUCKETS as f64;
    let mut buckets: Vec<Bucket> = (0..NUMBER_BUCKETS)
        .map(|index| Bucket {
            lower: low + width * index as f64,
            upper: if index + 1 == NUMBER_BUCKETS {
                high
            } else {
                low + width * (index + 1) as f64
            },
            count: 0,
        })
        .collect();
    for value in sorted {
        let index = (((value - low) / width) as usize).min(NUMBER_BUCKETS - 1);
        buckets[index].count += 1;
    }
    buckets
}

/// Aggregates `responses` (each a list of validated answers) per question of `questions`.
///
/// Free text is returned, sorted and without respondents, only when there are at least
/// [`FREE_TEXT_MIN_RESPONSES`] responses in the selection.
pub fn aggregate(
    questions: &[SurveyQuestion],
    responses: &[Vec<Answer>],
    thresholds: &Thresholds,
) -> SurveyResults {
    let response_count = responses.len() as i64;
    let mut by_question: HashMap<&str, Vec<&AnswerValue>> = HashMap::new();
    for answers in responses {
        for answer in answers {
            by_question
                .entry(answer.question_id.as_str())
                .or_default()
                .push(&answer.value);
        }
    }
    let withheld = response_count < FREE_TEXT_MIN_RESPONSES;
    let questions = questions
        .iter()
        .map(|question| {
            let values = by_question
                .get(question.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let threshold = matches!(question.kind, QuestionKind::Scale | QuestionKind::Number)
                .then(|| thresholds.of(&question.id))
                .flatten();
            let mut result = QuestionResult {
                question: question.clone(),
                answer_count: values.len() as i64,
                numeric: None,
                empty_distribution: Vec::new(),
                threshold,
                option_counts: Vec::new(),
                free_text: Vec::new(),
                free_text_withheld: false,
            };
            match question.kind {
                QuestionKind::Scale | QuestionKind::Number => {
                    let mut numbers: Vec<f64> = values
                        .iter()
                        .filter_map(|value| match value {
                            AnswerValue::Scale(scale) => Some(f64::from(*scale)),
                            AnswerValue::Number(number) => Some(*number),
                            _ => None,
                        })
                        .collect();
                    numbers.sort_by(f64::total_cmp);
                    let distribution = if question.kind == QuestionKind::Scale {
                        scale_buckets(&numbers)
                    } else {
                        number_buckets(&numbers)
                    };
                    if let (Some(mean), Some(median), Some(min), Some(max)) = (
                        mean(&numbers),
                        median_of_sorted(&numbers),
                        numbers.first().copied(),
                        numbers.last().copied(),
                    ) {
                        result.numeric = Some(NumericSummary {
                            mean,
                            median,
                            min,
                            max,
                            distribution,
                            threshold,
                            share_above_threshold: threshold
                                .and_then(|threshold| share_above(&numbers, threshold)),
                        });
                    } else {
                        result.empty_distribution = distribution;
                    }
                }
                QuestionKind::SingleChoice => {
                    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
                    for value in values {
                        if let AnswerValue::Choice(choice) = value {
                            *counts.entry(choice.as_str()).or_default() += 1;
                        }
                    }
                    result.option_counts = question
                        .options
                        .iter()
                        .map(|option| {
                            (
                                option.clone(),
                                counts.get(option.as_str()).copied().unwrap_or(0),
                            )
                        })
                        .collect();
                }
                QuestionKind::FreeText => {
                    result.free_text_withheld = withheld;
                    if !withheld {
                        let mut texts: Vec<String> = values
                            .iter()
                            .filter_map(|value| match value {
                                AnswerValue::Text(text) => Some(text.clone()),
                                _ => None,
                            })
                            .collect();
                        // Sorted, not in submission order: the order must not hint at who wrote what.
                        texts.sort();
                        result.free_text = texts;
                    }
                }
            }
            result
        })
        .collect();
    SurveyResults {
        response_count,
        questions,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn question(id: &str, kind: QuestionKind) -> RawQuestion {
        RawQuestion {
            id: id.to_owned(),
            text: format!("Question {id}"),
            kind: Some(kind),
            required: true,
            options: if kind == QuestionKind::SingleChoice {
                vec!["Yes".to_owned(), "No".to_owned()]
            } else {
                Vec::new()
            },
            ..RawQuestion::default()
        }
    }

    fn pilot_questions() -> Vec<SurveyQuestion> {
        let mut hours = question("hours", QuestionKind::Number);
        hours.unit = "hours saved per week".to_owned();
        hours.min = Some(0.0);
        hours.max = Some(40.0);
        let mut comment = question("comment", QuestionKind::FreeText);
        comment.required = false;
        parse_questions(
            "q",
            &[
                question("saved", QuestionKind::SingleChoice),
                hours,
                question("useful", QuestionKind::Scale),
                comment,
            ],
        )
        .unwrap()
    }

    fn fields_of(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations
                .as_slice()
                .iter()
                .map(|violation| violation.field.clone())
                .collect(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn answer(id: &str, value: AnswerValue) -> RawAnswer {
        RawAnswer {
            question_id: id.to_owned(),
            value: Some(value),
        }
    }

    #[test]
    fn questions_follow_the_rules_of_their_kind() {
        let mut scale_with_unit = question("a", QuestionKind::Scale);
        scale_with_unit.unit = "hours".to_owned();
        let mut number_backwards = question("b", QuestionKind::Number);
        number_backwards.min = Some(5.0);
        number_backwards.max = Some(1.0);
        let mut choice_alone = question("c", QuestionKind::SingleChoice);
        choice_alone.options = vec!["Only".to_owned()];
        let duplicate = question("a", QuestionKind::FreeText);
        let mut untyped = question("e f", QuestionKind::Scale);
        untyped.kind = None;
        let error = parse_questions(
            "activity.survey_questions",
            &[
                scale_with_unit,
                number_backwards,
                choice_alone,
                duplicate,
                untyped,
            ],
        )
        .unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "activity.survey_questions[0].unit",
                "activity.survey_questions[1].max",
                "activity.survey_questions[2].options",
                "activity.survey_questions[3].id",
                "activity.survey_questions[4].id",
                "activity.survey_questions[4].kind",
            ]
        );
        let questions = pilot_questions();
        assert_eq!(
            questions.iter().map(|q| q.position).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(questions[1].unit.as_deref(), Some("hours saved per week"));
    }

    #[test]
    fn answers_are_checked_against_their_questions() {
        let questions = pilot_questions();
        let error = validate_answers(
            &questions,
            vec![
                answer("saved", AnswerValue::Choice("Maybe".to_owned())),
                answer("hours", AnswerValue::Number(41.0)),
                answer("useful", AnswerValue::Scale(6)),
                answer(
                    "comment",
                    AnswerValue::Text("x".repeat(MAX_FREE_TEXT_CHARS + 1)),
                ),
                answer("nope", AnswerValue::Scale(3)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "answers[0].choice",
                "answers[1].number",
                "answers[2].scale",
                "answers[3].text",
                "answers[4].question_id",
            ]
        );
        let error = validate_answers(
            &questions,
            vec![
                answer("saved", AnswerValue::Scale(3)),
                answer("useful", AnswerValue::Scale(3)),
                answer("useful", AnswerValue::Scale(4)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            fields_of(error),
            ["answers[0].scale", "answers[2].question_id", "answers"]
        );
        let valid = validate_answers(
            &questions,
            vec![
                answer("saved", AnswerValue::Choice("Yes".to_owned())),
                answer("hours", AnswerValue::Number(3.5)),
                answer("useful", AnswerValue::Scale(5)),
            ],
        )
        .unwrap();
        assert_eq!(valid.len(), 3);
    }

    fn pilot_responses(count: usize, savers: usize, hours: &[f64]) -> Vec<Vec<Answer>> {
        (0..count)
            .map(|index| {
                let saved = index < savers;
                vec![
                    Answer {
                        question_id: "saved".to_owned(),
                        value: AnswerValue::Choice(if saved { "Yes" } else { "No" }.to_owned()),
                    },
                    Answer {
                        question_id: "hours".to_owned(),
                        value: AnswerValue::Number(hours[index]),
                    },
                    Answer {
                        question_id: "useful".to_owned(),
                        value: AnswerValue::Scale(if saved { 4 } else { 2 }),
                    },
                    Answer {
                        question_id: "comment".to_owned(),
                        value: AnswerValue::Text(format!("comment {index}")),
                    },
                ]
            })
            .collect()
    }

    #[test]
    fn the_pilot_shape_gives_the_hand_computed_figures() {
        // 246 of 270 saved time (91.1%); hours sum to 877.5, a mean of 3.25.
        let mut hours = vec![0.0; 270];
        for slot in hours.iter_mut().take(246) {
            *slot = 3.5;
        }
        // 246 * 3.5 = 861; 16.5 more hours spread over 33 savers (+0.5 each).
        for slot in hours.iter_mut().take(33) {
            *slot += 0.5;
        }
        let responses = pilot_responses(270, 246, &hours);
        let thresholds = Thresholds {
            default: Some(0.0),
            per_question: HashMap::from([("useful".to_owned(), 3.0)]),
        };
        let results = aggregate(&pilot_questions(), &responses, &thresholds);
        assert_eq!(results.response_count, 270);
        let saved = &results.questions[0];
        assert_eq!(
            saved.option_counts,
            [("Yes".to_owned(), 246), ("No".to_owned(), 24)]
        );
        let hours = results.questions[1].numeric.as_ref().unwrap();
        assert_eq!(hours.mean, 3.25);
        assert_eq!(hours.median, 3.5);
        assert_eq!(hours.share_above_threshold, Some(246.0 / 270.0));
        assert_eq!((hours.share_above_threshold.unwrap() * 100.0).round(), 91.0);
        assert_eq!(
            hours
                .distribution
                .iter()
                .map(|bucket| (bucket.lower, bucket.count))
                .collect::<Vec<_>>(),
            [(0.0, 24), (3.5, 213), (4.0, 33)]
        );
        let useful = results.questions[2].numeric.as_ref().unwrap();
        assert_eq!(
            useful
                .distribution
                .iter()
                .map(|b| b.count)
                .collect::<Vec<_>>(),
            [0, 24, 0, 246, 0]
        );
        assert_eq!(useful.share_above_threshold, Some(246.0 / 270.0));
        assert_eq!(results.questions[3].free_text.len(), 270);
        assert!(!results.questions[3].free_text_withheld);
    }

    #[test]
    fn free_text_needs_five_responses() {
        let hours = vec![1.0; 5];
        let questions = pilot_questions();
        let four = aggregate(
            &questions,
            &pilot_responses(4, 4, &hours),
            &Thresholds::default(),
        );
        assert!(four.questions[3].free_text_withheld);
        assert!(four.questions[3].free_text.is_empty());
        assert_eq!(four.questions[3].answer_count, 4);
        let five = aggregate(
            &questions,
            &pilot_responses(5, 5, &hours),
            &Thresholds::default(),
        );
        assert!(!five.questions[3].free_text_withheld);
        assert_eq!(five.questions[3].free_text.len(), 5);
    }

    #[test]
    fn many_distinct_numbers_are_bucketed() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let buckets = number_buckets(&values);
        assert_eq!(buckets.len(), NUMBER_BUCKETS);
        assert_eq!(buckets.iter().map(|b| b.count).sum::<i64>(), 101);
        assert_eq!(buckets[0].lower, 0.0);
        assert_eq!(buckets[9].upper, 100.0);
        assert_eq!(buckets[9].count, 11);
    }

    #[test]
    fn no_answers_give_no_statistics() {
        let results = aggregate(
            &pilot_questions(),
            &[],
            &Thresholds {
                default: Some(0.0),
                ..Thresholds::default()
            },
        );
        assert_eq!(results.response_count, 0);
        assert!(results.questions[1].numeric.is_none());
        assert_eq!(results.questions[2].empty_distribution.len(), 5);
        assert!(results.questions[3].free_text_withheld);
    }

    #[test]
    fn completion_event_ids_are_deterministic() {
        let first = completion_event_id("e1", "a1");
        assert_eq!(first, completion_event_id("e1", "a1"));
        assert_ne!(first, completion_event_id("e1", "a2"));
        assert_ne!(first, completion_event_id("e2", "a1"));
        assert!(crate::domain::is_uuid(&first));
    }

    proptest! {
        #[test]
        fn mean_median_and_share_match_a_direct_computation(
            halves in proptest::collection::vec(0u32..=80, 1..400),
            threshold_halves in 0u32..=80,
        ) {
            // Answers in half-hour steps, as officers report them.
            let numbers: Vec<f64> = halves.iter().map(|half| f64::from(*half) / 2.0).collect();
            let threshold = f64::from(threshold_halves) / 2.0;
            let responses: Vec<Vec<Answer>> = numbers
                .iter()
                .map(|number| vec![Answer {
                    question_id: "hours".to_owned(),
                    value: AnswerValue::Number(*number),
                }])
                .collect();
            let questions = parse_questions("q", &[RawQuestion {
                id: "hours".to_owned(),
                text: "Hours saved".to_owned(),
                kind: Some(QuestionKind::Number),
                ..RawQuestion::default()
            }]).unwrap();
            let results = aggregate(
                &questions,
                &responses,
                &Thresholds { default: Some(threshold), ..Thresholds::default() },
            );
            let summary = results.questions[0].numeric.clone().unwrap();

            // Direct computation in integer half-hours.
            let count = halves.len() as u64;
            let total: u64 = halves.iter().map(|half| u64::from(*half)).sum();
            let expected_mean = total as f64 / 2.0 / count as f64;
            prop_assert!((summary.mean - expected_mean).abs() <= 1e-9 * expected_mean.max(1.0));
            let mut sorted = halves.clone();
            sorted.sort_unstable();
            let middle = sorted.len() / 2;
            let expected_median = if sorted.len() % 2 == 1 {
                f64::from(sorted[middle]) / 2.0
            } else {
                f64::from(sorted[middle - 1] + sorted[middle]) / 4.0
            };
            prop_assert_eq!(summary.median, expected_median);
            let above = halves.iter().filter(|half| **half > threshold_halves).count();
            prop_assert_eq!(summary.share_above_threshold, Some(above as f64 / count as f64));
            prop_assert_eq!(summary.distribution.iter().map(|b| b.count).sum::<i64>(), count as i64);
            prop_assert_eq!(summary.min, f64::from(sorted[0]) / 2.0);
        }
    }
}
