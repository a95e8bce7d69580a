//! Selection: calls for applications, blind panel scoring against a weighted rubric, conflict of
//! interest, balanced assignment, the reproducible ranking and decisions.
//!
//! Conflict of interest: a judge's *ministry* is the top-level organisation of the judge's
//! organisation path (the first id of `/root/.../self/`). A judge is in conflict with an applicant
//! whose organisation lies in that subtree, and is never assigned to (nor may score) them.
//!
//! Assignment is balanced by maximum flow (`selection/assignment.rs`): the judges' loads are as
//! even as any conflict-free assignment allows. Score visibility is a policy of the call ([`ScoreVisibility`]).

mod assignment;
mod flow;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::domain::organization::path_is_within;
use crate::error::{Error, Reason, Result, Violations};

/// Longest call title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most questions in a call.
pub const MAX_QUESTIONS: usize = 50;
/// Most criteria in a rubric.
pub const MAX_CRITERIA: usize = 20;
/// Longest question text.
pub const MAX_QUESTION_CHARS: usize = 2000;
/// Longest answer.
pub const MAX_ANSWER_CHARS: usize = 10_000;
/// Longest score comment.
pub const MAX_COMMENT_CHARS: usize = 5000;
/// Highest criterion weight.
pub const MAX_WEIGHT: i32 = 1000;
/// Highest criterion score (the scale is 0 to this).
pub const MAX_SCORE: i32 = 10;
/// Most judges on a panel.
pub const MAX_JUDGES: usize = 100;
/// Most applications in one decision.
pub const MAX_DECISIONS: usize = 10_000;
/// Most seats of a call.
pub const MAX_SEATS: i32 = 1_000_000;
/// Spread threshold used when a ranking request names none.
pub const DEFAULT_SPREAD_THRESHOLD: f64 = 3.0;

/// Where a call is, derived from its times and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Before `opens_time`.
    Scheduled,
    /// Taking applications.
    Open,
    /// At or after `closes_time`.
    Closed,
}

/// Lifecycle of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplicationState {
    /// Awaiting a decision.
    Submitted,
    /// Withdrawn.
    Withdrawn,
    /// Accepted and enrolled.
    Accepted,
    /// On the waitlist.
    Waitlisted,
    /// Rejected.
    Rejected,
}

impl ApplicationState {
    const NAMES: [(Self, &'static str); 5] = [
        (Self::Submitted, "SUBMITTED"),
        (Self::Withdrawn, "WITHDRAWN"),
        (Self::Accepted, "ACCEPTED"),
        (Self::Waitlisted, "WAITLISTED"),
        (Self::Rejected, "REJECTED"),
    ];

    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(state, _)| *state == self)
            .map(|(_, name)| *name)
            .unwrap_or("SUBMITTED")
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, stored)| *stored == name)
            .map(|(state, _)| *state)
    }

    /// Returns true while the application may still be scored and decided.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Submitted | Self::Waitlisted)
    }

    /// Returns true once the application is accepted or rejected: it takes no more scores and
    /// no other decision.
    pub fn is_finally_decided(self) -> bool {
        matches!(self, Self::Accepted | Self::Rejected)
    }
}

/// Who besides managers (who always may) reads the judges' scores of an application: a policy
/// of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScoreVisibility {
    /// A judge reads only their own score until the application is accepted or rejected, then
    /// every score of it. The default.
    #[default]
    HiddenUntilDecided,
    /// A judge reads the other judges' scores of an application once they have submitted their
    /// own (or once it is accepted or rejected).
    AfterOwnScore,
    /// A judge reads only their own scores, ever; only managers read the others.
    ManagersOnly,
}

impl ScoreVisibility {
    const NAMES: [(Self, &'static str); 3] = [
        (Self::HiddenUntilDecided, "HIDDEN_UNTIL_DECIDED"),
        (Self::AfterOwnScore, "AFTER_OWN_SCORE"),
        (Self::ManagersOnly, "MANAGERS_ONLY"),
    ];

    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(visibility, _)| *visibility == self)
            .map(|(_, name)| *name)
            .unwrap_or("HIDDEN_UNTIL_DECIDED")
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, stored)| *stored == name)
            .map(|(visibility, _)| *visibility)
    }

    /// Returns true when a judge assigned to an application in `state` reads the other judges'
    /// scores of it; `scored_own` says whether the judge has submitted their own.
    pub fn reveals_others_to_judge(self, state: ApplicationState, scored_own: bool) -> bool {
        match self {
            Self::HiddenUntilDecided => state.is_finally_decided(),
            Self::AfterOwnScore => scored_own || state.is_finally_decided(),
            Self::ManagersOnly => false,
        }
    }
}

/// A question of a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// Unique in the call.
    pub id: String,
    /// Text.
    pub text: String,
    /// Whether it must be answered.
    pub required: bool,
}

/// A rubric criterion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Criterion {
    /// Unique in the rubric.
    pub id: String,
    /// Title.
    pub title: String,
    /// Relative weight, 1 to [`MAX_WEIGHT`].
    pub weight: i32,
}

/// A validated request to open a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Cohort.
    pub cohort_id: String,
    /// Title.
    pub title: String,
    /// Opening time.
    pub opens_time: DateTime<Utc>,
    /// Closing time (exclusive).
    pub closes_time: DateTime<Utc>,
    /// Questions.
    pub questions: Vec<Question>,
    /// Rubric.
    pub rubric: Vec<Criterion>,
    /// Places to fill.
    pub seats: i32,
    /// Nominations only.
    pub nomination_only: bool,
    /// Who reads the judges' scores.
    pub score_visibility: ScoreVisibility,
}

/// A call as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// UUIDv7.
    pub id: String,
    /// Cohort.
    pub cohort_id: String,
    /// The cohort's programme.
    pub programme_id: String,
    /// Title.
    pub title: String,
    /// Opening time.
    pub opens_time: DateTime<Utc>,
    /// Closing time (exclusive).
    pub closes_time: DateTime<Utc>,
    /// Questions.
    pub questions: Vec<Question>,
    /// Rubric.
    pub rubric: Vec<Criterion>,
    /// Places to fill.
    pub seats: i32,
    /// Nominations only.
    pub nomination_only: bool,
    /// Who reads the judges' scores.
    pub score_visibility: ScoreVisibility,
    /// Applications accepted so far.
    pub accepted_count: i32,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

impl Call {
    /// Returns where the call is at `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> CallState {
        if now < self.opens_time {
            CallState::Scheduled
        } else if now < self.closes_time {
            CallState::Open
        } else {
            CallState::Closed
        }
    }

    /// Fails with `CALL_NOT_OPEN` unless the call takes applications at `now`.
    pub fn check_open(&self, now: DateTime<Utc>) -> Result<()> {
        match self.state_at(now) {
            CallState::Open => Ok(()),
            CallState::Scheduled => Err(self.precondition(
                Reason::CallNotOpen,
                "the call does not take applications before its opening time",
            )),
            CallState::Closed => Err(self.precondition(
                Reason::CallNotOpen,
                "the call is closed; it takes no more applications",
            )),
        }
    }

    /// Fails with `CALL_NOT_CLOSED` until the call has closed at `now`.
    pub fn check_closed(&self, now: DateTime<Utc>) -> Result<()> {
        if self.state_at(now) == CallState::Closed {
            Ok(())
        } else {
            Err(self.precondition(
                Reason::CallNotClosed,
                "applications are decided only after the call closes",
            ))
        }
    }

    fn precondition(&self, reason: Reason, message: &str) -> Error {
        Error::FailedPrecondition {
            metadata: Vec::new(),
            reason,
            subject: format!("call/{}", self.id),
            message: message.to_owned(),
        }
    }
}

fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn text_between(text: &str, max: usize) -> bool {
    let count = text.trim().chars().count();
    count >= 1 && count <= max
}

impl NewCall {
    /// Validates a call; field paths are reported under `prefix` (e.g. `call`).
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        prefix: &str,
        cohort_id: &str,
        title: &str,
        opens_time: Option<DateTime<Utc>>,
        closes_time: Option<DateTime<Utc>>,
        questions: Vec<Question>,
        rubric: Vec<Criterion>,
        seats: i32,
        nomination_only: bool,
        score_visibility: ScoreVisibility,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        if cohort_id.is_empty() {
            violations.add(format!("{prefix}.cohort_id"), "is required");
        } else if !crate::domain::is_uuid(cohort_id) {
            violations.add(format!("{prefix}.cohort_id"), "must be a UUID");
        }
        if !text_between(title, MAX_TITLE_CHARS) {
            violations.add(
                format!("{prefix}.title"),
                format!("must be 1 to {MAX_TITLE_CHARS} characters"),
            );
        }
        match (opens_time, closes_time) {
            (None, _) => violations.add(format!("{prefix}.opens_time"), "is required"),
            (_, None) => violations.add(format!("{prefix}.closes_time"), "is required"),
            (Some(opens), Some(closes)) if closes <= opens => {
                violations.add(format!("{prefix}.closes_time"), "must be after opens_time")
            }
            _ => {}
        }
        if questions.len() > MAX_QUESTIONS {
            violations.add(
                format!("{prefix}.questions"),
                format!("at most {MAX_QUESTIONS} questions"),
            );
        }
        let mut question_ids = HashSet::new();
        for (index, question) in questions.iter().enumerate() {
            if !is_key(&question.id) {
                violations.add(
                    format!("{prefix}.questions[{index}].id"),
                    "must be 1 to 64 letters, digits, '-' or '_'",
                );
            } else if !question_ids.insert(question.id.as_str()) {
                violations.add(format!("{prefix}.questions[{index}].id"), "is a duplicate");
            }
            if !text_between(&question.text, MAX_QUESTION_CHARS) {
                violations.add(
                    format!("{prefix}.questions[{index}].text"),
                    format!("must be 1 to {MAX_QUESTION_CHARS} characters"),
                );
            }
        }
        if rubric.is_empty() || rubric.len() > MAX_CRITERIA {
            violations.add(
                format!("{prefix}.rubric"),
                format!("must hold 1 to {MAX_CRITERIA} criteria"),
            );
        }
        let mut criterion_ids = HashSet::new();
        for (index, criterion) in rubric.iter().enumerate() {
            if !is_key(&criterion.id) {
                violations.add(
                    format!("{prefix}.rubric[{index}].id"),
                    "must be 1 to 64 letters, digits, '-' or '_'",
                );
            } else if !criterion_ids.insert(criterion.id.as_str()) {
                violations.add(format!("{prefix}.rubric[{index}].id"), "is a duplicate");
            }
            if !text_between(&criterion.title, MAX_TITLE_CHARS) {
                violations.add(
                    format!("{prefix}.rubric[{index}].title"),
                    format!("must be 1 to {MAX_TITLE_CHARS} characters"),
                );
            }
            if !(1..=MAX_WEIGHT).contains(&criterion.weight) {
                violations.add(
                    format!("{prefix}.rubric[{index}].weight"),
                    format!("must be 1 to {MAX_WEIGHT}"),
                );
            }
        }
        if !(1..=MAX_SEATS).contains(&seats) {
            violations.add(
                format!("{prefix}.seats"),
                format!("must be 1 to {MAX_SEATS}"),
            );
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let (Some(opens_time), Some(closes_time)) = (opens_time, closes_time) else {
            return Err(Error::invalid(
                format!("{prefix}.opens_time"),
                "is required",
            ));
        };
        Ok(Self {
            cohort_id: cohort_id.to_owned(),
            title: title.trim().to_owned(),
            opens_time: crate::domain::truncate_micros(opens_time),
            closes_time: crate::domain::truncate_micros(closes_time),
            questions: questions
                .into_iter()
                .map(|question| Question {
                    text: question.text.trim().to_owned(),
                    ..question
                })
                .collect(),
            rubric: rubric
                .into_iter()
                .map(|criterion| Criterion {
                    title: criterion.title.trim().to_owned(),
                    ..criterion
                })
                .collect(),
            seats,
            nomination_only,
            score_visibility,
        })
    }
}

/// A field of a call that `UpdateCall` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallField {
    /// `title`.
    Title,
    /// `seats`.
    Seats,
    /// `nomination_only`.
    NominationOnly,
    /// `score_visibility`.
    ScoreVisibility,
}

impl CallField {
    /// Every updatable field.
    pub const ALL: [Self; 4] = [
        Self::Title,
        Self::Seats,
        Self::NominationOnly,
        Self::ScoreVisibility,
    ];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 7] = [
        "id",
        "programme_id",
        "state",
        "accepted_count",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path; the cohort, times, questions and rubric never change.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "title" => Some(Self::Title),
            "seats" => Some(Self::Seats),
            "nomination_only" => Some(Self::NominationOnly),
            "score_visibility" => Some(Self::ScoreVisibility),
            _ => None,
        }
    }
}

/// Validated new values of a call update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallPatch {
    /// New title.
    pub title: Option<String>,
    /// New seats.
    pub seats: Option<i32>,
    /// New nomination rule.
    pub nomination_only: Option<bool>,
    /// New score visibility.
    pub score_visibility: Option<ScoreVisibility>,
}

impl CallPatch {
    /// Validates the values of the fields named in `fields`; paths are reported under `prefix`.
    /// `score_visibility` is `None` when the request leaves it unspecified.
    pub fn parse(
        prefix: &str,
        fields: &[CallField],
        title: &str,
        seats: i32,
        nomination_only: bool,
        score_visibility: Option<ScoreVisibility>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                CallField::Title if !text_between(title, MAX_TITLE_CHARS) => violations.add(
                    format!("{prefix}.title"),
                    format!("must be 1 to {MAX_TITLE_CHARS} characters"),
                ),
                CallField::Title => patch.title = Some(title.trim().to_owned()),
                CallField::Seats if !(1..=MAX_SEATS).contains(&seats) => violations.add(
                    format!("{prefix}.seats"),
                    format!("must be 1 to {MAX_SEATS}"),
                ),
                CallField::Seats => patch.seats = Some(seats),
                CallField::NominationOnly => patch.nomination_only = Some(nomination_only),
                CallField::ScoreVisibility => match score_visibility {
                    Some(visibility) => patch.score_visibility = Some(visibility),
                    None => violations.add(
                        format!("{prefix}.score_visibility"),
                        "must be set when named in update_mask",
                    ),
                },
            }
        }
        violations.into_result(patch)
    }
}

impl Call {
    /// Applies `patch`; returns true when anything changed.
    ///
    /// Fails with `PLACES_ALREADY_TAKEN` when the seats would drop below the applications
    /// accepted already.
    pub fn apply(&mut self, patch: &CallPatch) -> Result<bool> {
        let before = self.clone();
        if let Some(seats) = patch.seats {
            if seats < self.accepted_count {
                return Err(self.precondition(
                    Reason::PlacesAlreadyTaken,
                    &format!(
                        "{} applications are accepted already; seats cannot drop to {seats}",
                        self.accepted_count
                    ),
                ));
            }
            self.seats = seats;
        }
        if let Some(title) = &patch.title {
            self.title.clone_from(title);
        }
        if let Some(nomination_only) = patch.nomination_only {
            self.nomination_only = nomination_only;
        }
        if let Some(visibility) = patch.score_visibility {
            self.score_visibility = visibility;
        }
        Ok(*self != before)
    }
}

/// Validates answers against the call's questions; returns them in question order.
pub fn validate_answers(
    questions: &[Question],
    answers: Vec<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut violations = Violations::new();
    let mut by_question: HashMap<String, String> = HashMap::new();
    for (index, (question_id, text)) in answers.into_iter().enumerate() {
        if !questions.iter().any(|question| question.id == question_id) {
            violations.add(
                format!("answers[{index}].question_id"),
                "is not a question of this call",
            );
            continue;
        }
        let bad_text = !text_between(&text, MAX_ANSWER_CHARS);
        if bad_text {
            violations.add(
                format!("answers[{index}].text"),
                format!("must be 1 to {MAX_ANSWER_CHARS} characters"),
            );
        }
        if by_question
            .insert(question_id, text.trim().to_owned())
            .is_some()
            && !bad_text
        {
            violations.add(
                format!("answers[{index}].question_id"),
                "is answered more than once",
            );
        }
    }
    for question in questions {
        if question.required && !by_question.contains_key(&question.id) {
            violations.add(
                "answers",
                format!("required question {} is not answered", question.id),
            );
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(questions
        .iter()
        .filter_map(|question| {
            by_question
                .remove(&question.id)
                .map(|text| (question.id.clone(), text))
        })
        .collect())
}

/// Validates one judge's criterion scores against the rubric; returns them in rubric order.
pub fn validate_scores(
    rubric: &[Criterion],
    scores: Vec<(String, i32)>,
) -> Result<Vec<(String, i32)>> {
    let mut violations = Violations::new();
    let mut by_criterion: HashMap<String, i32> = HashMap::new();
    for (index, (criterion_id, score)) in scores.into_iter().enumerate() {
        if !rubric.iter().any(|criterion| criterion.id == criterion_id) {
            violations.add(
                format!("criterion_scores[{index}].criterion_id"),
                "is not a criterion of this call's rubric",
            );
            continue;
        }
        let out_of_range = !(0..=MAX_SCORE).contains(&score);
        if out_of_range {
            violations.add(
                format!("criterion_scores[{index}].score"),
                format!("must be 0 to {MAX_SCORE}"),
            );
        }
        if by_criterion.insert(criterion_id, score).is_some() && !out_of_range {
            violations.add(
                format!("criterion_scores[{index}].criterion_id"),
                "is scored more than once",
            );
        }
    }
    for criterion in rubric {
        if !by_criterion.contains_key(&criterion.id) {
            violations.add(
                "criterion_scores",
                format!("criterion {} is not scored", criterion.id),
            );
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(rubric
        .iter()
        .filter_map(|criterion| {
            by_criterion
                .get(&criterion.id)
                .map(|score| (criterion.id.clone(), *score))
        })
        .collect())
}

/// Validates a score comment.
pub fn validate_comment(comment: &str) -> Result<String> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(Error::invalid(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(comment.trim().to_owned())
}

/// Returns the weighted sum `Σ weight × score` and total weight of one judge's scores.
///
/// Criteria the rubric does not know are ignored; exact integers keep rankings reproducible.
fn weighted_sum(rubric: &[Criterion], scores: &[(String, i32)]) -> (i64, i64) {
    let mut sum = 0i64;
    let mut weight = 0i64;
    for criterion in rubric {
        if let Some((_, score)) = scores.iter().find(|(id, _)| *id == criterion.id) {
            sum += i64::from(criterion.weight) * i64::from(*score);
            weight += i64::from(criterion.weight);
        }
    }
    (sum, weight)
}

/// Returns one judge's weighted mean score (0 to 10): `Σ weight × score / Σ weight`.
pub fn weighted_score(rubric: &[Criterion], scores: &[(String, i32)]) -> f64 {
    let (sum, weight) = weighted_sum(rubric, scores);
    if weight == 0 {
        return 0.0;
    }
    sum as f64 / weight as f64
}

/// An application as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// UUIDv7.
    pub id: String,
    /// Call.
    pub call_id: String,
    /// Applicant.
    pub person_id: String,
    /// Materialised path of the applicant's organisation at submission.
    pub organization_path: String,
    /// Answers in question order.
    pub answers: Vec<(String, String)>,
    /// Token subject of the nominator, if nominated.
    pub nominated_by: Option<String>,
    /// State.
    pub state: ApplicationState,
    /// Enrolment made on acceptance.
    pub enrollment_id: Option<String>,
    /// Submission time.
    pub submit_time: DateTime<Utc>,
    /// Decision time.
    pub decide_time: Option<DateTime<Utc>>,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

/// A panel as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    /// UUIDv7.
    pub id: String,
    /// Call.
    pub call_id: String,
    /// Judges (person ids), in panel order.
    pub judge_person_ids: Vec<String>,
    /// Judges per application; 0 means every judge.
    pub judges_per_application: i32,
    /// Assignments made so far.
    pub assignment_count: i32,
    /// Fewest applications any judge is assigned (withdrawn applications not counted).
    pub min_judge_load: usize,
    /// Most applications any judge is assigned (withdrawn applications not counted).
    pub max_judge_load: usize,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

/// A judge's submitted score of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Id of the assignment it belongs to.
    pub id: String,
    /// Application.
    pub application_id: String,
    /// Judge.
    pub judge_person_id: String,
    /// Criterion scores in rubric order.
    pub scores: Vec<(String, i32)>,
    /// The judge's weighted mean.
    pub weighted_score: f64,
    /// Comment.
    pub comment: String,
    /// Submission time.
    pub submit_time: DateTime<Utc>,
}

/// An application assigned to a judge, as the judge sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// UUIDv7.
    pub id: String,
    /// Panel.
    pub panel_id: String,
    /// Call.
    pub call_id: String,
    /// Judge.
    pub judge_person_id: String,
    /// The application.
    pub application: Application,
    /// The judge's own score, once submitted.
    pub score: Option<Score>,
}

/// Validates a panel's judges and their number per application.
pub fn validate_panel(
    prefix: &str,
    call_id: &str,
    judge_person_ids: &[String],
    judges_per_application: i32,
) -> Result<()> {
    let mut violations = Violations::new();
    if call_id.is_empty() {
        violations.add(format!("{prefix}.call_id"), "is required");
    } else if !crate::domain::is_uuid(call_id) {
        violations.add(format!("{prefix}.call_id"), "must be a UUID");
    }
    if judge_person_ids.is_empty() || judge_person_ids.len() > MAX_JUDGES {
        violations.add(
            format!("{prefix}.judge_person_ids"),
            format!("must name 1 to {MAX_JUDGES} judges"),
        );
    }
    let mut seen = HashSet::new();
    for (index, id) in judge_person_ids.iter().enumerate() {
        if !crate::domain::is_uuid(id) {
            violations.add(
                format!("{prefix}.judge_person_ids[{index}]"),
                "must be a UUID",
            );
        } else if !seen.insert(id.as_str()) {
            violations.add(
                format!("{prefix}.judge_person_ids[{index}]"),
                "is a duplicate",
            );
        }
    }
    if judges_per_application < 0 || judges_per_application as usize > judge_person_ids.len() {
        violations.add(
            format!("{prefix}.judges_per_application"),
            "must be 0 (every judge) to the number of judges",
        );
    }
    violations.into_result(())
}

/// Returns the id of the top-level organisation (the judge's ministry) of a materialised path.
pub fn top_level_organization(path: &str) -> Option<&str> {
    path.split('/').find(|segment| !segment.is_empty())
}

/// Returns true when a judge from `judge_path` may not judge an applicant from `applicant_path`:
/// the applicant's organisation lies in the judge's top-level organisation's subtree.
pub fn in_conflict(judge_path: &str, applicant_path: &str) -> bool {
    match top_level_organization(judge_path) {
        Some(ministry) => path_is_within(applicant_path, ministry),
        // A judge without an organisation path cannot be cleared: treat as conflicted.
        None => true,
    }
}

/// Returns the `CONFLICT_OF_INTEREST` refusal of `judge` scoring `application_id`.
pub fn conflict_error(judge: &str, application_id: &str) -> Error {
    Error::FailedPrecondition {
        metadata: Vec::new(),
        reason: Reason::ConflictOfInterest,
        subject: format!("application/{application_id}"),
        message: format!(
            "judge {judge} belongs to the same top-level organisation as the applicant and may not judge them"
        ),
    }
}

/// A judge as the assignment sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeSlot {
    /// Person id.
    pub person_id: String,
    /// Materialised path of the judge's organisation.
    pub organization_path: String,
    /// Applications assigned already.
    pub load: usize,
}

/// An application waiting for judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassigned {
    /// Application id.
    pub id: String,
    /// Materialised path of the applicant's organisation.
    pub organization_path: String,
}

/// Assigns each application to `per_application` judges (0: every judge not in conflict).
///
/// The judges' total loads (`load` plus the new applications) end with the smallest maximum
/// any conflict-free assignment reaches and, with it, the largest minimum: within one of each
/// other whenever some conflict-free assignment is, and as close as possible otherwise (see
/// `selection/assignment.rs`). Judges and applications are taken in id order, so the result
/// depends on the input alone, not on its order. `load` is updated.
///
/// Returns `(application id, judge person id)` pairs in the order of `applications`, each
/// application's judges in panel order, or `NOT_ENOUGH_JUDGES` naming the first application
/// that has too few judges free of conflict of interest.
pub fn assign(
    judges: &mut [JudgeSlot],
    applications: &[Unassigned],
    per_application: usize,
) -> Result<Vec<(String, String)>> {
    let mut judge_order: Vec<usize> = (0..judges.len()).collect();
    judge_order.sort_by(|left, right| judges[*left].person_id.cmp(&judges[*right].person_id));
    let mut application_order: Vec<usize> = (0..applications.len()).collect();
    application_order.sort_by(|left, right| applications[*left].id.cmp(&applications[*right].id));
    // Judges are named by their rank in `judge_order`.
    let mut eligible: Vec<Vec<usize>> = Vec::with_capacity(applications.len());
    let mut required: Vec<usize> = Vec::with_capacity(applications.len());
    for application in applications {
        let free: Vec<usize> = judge_order
            .iter()
            .enumerate()
            .filter(|(_, judge)| {
                !in_conflict(
                    &judges[**judge].organization_path,
                    &application.organization_path,
                )
            })
            .map(|(rank, _)| rank)
            .collect();
        let wanted = if per_application == 0 {
            free.len()
        } else {
            per_application
        };
        if free.len() < wanted || wanted == 0 {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::NotEnoughJudges,
                subject: format!("application/{}", application.id),
                message: format!(
                    "application {} needs {} judges but only {} of the panel are free of conflict of interest",
                    application.id,
                    wanted.max(1),
                    free.len()
                ),
            });
        }
        eligible.push(free);
        required.push(wanted);
    }
    let existing: Vec<usize> = judge_order
        .iter()
        .map(|judge| judges[*judge].load)
        .collect();
    let ordered_eligible: Vec<Vec<usize>> = application_order
        .iter()
        .map(|application| eligible[*application].clone())
        .collect();
    let ordered_required: Vec<usize> = application_order
        .iter()
        .map(|application| required[*application])
        .collect();
    let chosen = assignment::balance(&existing, &ordered_eligible, &ordered_required)
        .ok_or_else(|| Error::internal("a feasible panel assignment was not found"))?;
    let mut judges_of: Vec<Vec<usize>> = vec![Vec::new(); applications.len()];
    for (position, ranks) in chosen.into_iter().enumerate() {
        let mut panel_indices: Vec<usize> =
            ranks.into_iter().map(|rank| judge_order[rank]).collect();
        panel_indices.sort_unstable();
        judges_of[application_order[position]] = panel_indices;
    }
    let mut pairs = Vec::with_capacity(required.iter().sum());
    for (application, panel_indices) in applications.iter().zip(judges_of) {
        for judge in panel_indices {
            judges[judge].load += 1;
            pairs.push((application.id.clone(), judges[judge].person_id.clone()));
        }
    }
    Ok(pairs)
}

/// Returns the fewest and the most applications any judge carries, given each judge's load.
pub fn load_range(loads: impl IntoIterator<Item = usize>) -> (usize, usize) {
    let mut range: Option<(usize, usize)> = None;
    for load in loads {
        range = Some(match range {
            None => (load, load),
            Some((low, high)) => (low.min(load), high.max(load)),
        });
    }
    range.unwrap_or((0, 0))
}

/// One submitted score, as the ranking reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScore {
    /// Judge.
    pub judge_person_id: String,
    /// Criterion scores.
    pub scores: Vec<(String, i32)>,
}

/// An application with its judges and scores, as the ranking reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankInput {
    /// Application id.
    pub id: String,
    /// Applicant.
    pub person_id: String,
    /// State.
    pub state: ApplicationState,
    /// Submission time.
    pub submit_time: DateTime<Utc>,
    /// Judges assigned.
    pub assigned_count: usize,
    /// Scores submitted.
    pub scores: Vec<StoredScore>,
}

/// One line of a ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// 1-based rank.
    pub rank: usize,
    /// Application id.
    pub id: String,
    /// Applicant.
    pub person_id: String,
    /// State.
    pub state: ApplicationState,
    /// Submission time.
    pub submit_time: DateTime<Utc>,
    /// Mean over judges of each judge's weighted mean (0 when unscored).
    pub weighted_mean: f64,
    /// Scores submitted.
    pub score_count: usize,
    /// Judges assigned.
    pub assigned_count: usize,
    /// Highest minus lowest judge weighted mean.
    pub spread: f64,
    /// Whether the spread exceeds the threshold.
    pub spread_flagged: bool,
}

/// Ranks applications from their stored scores; withdrawn applications are left out.
///
/// An application's score is the mean over its judges of each judge's weighted mean
/// (`Σ weight × score / Σ weight`). Order: scored before unscored; higher score first, compared
/// exactly as fractions; then earlier submission; then smaller id. A spread strictly above
/// `spread_threshold` is flagged.
pub fn rank(rubric: &[Criterion], inputs: Vec<RankInput>, spread_threshold: f64) -> Vec<Ranked> {
    struct Line {
        input: RankInput,
        // Exact score = numerator / denominator; denominator 0 when unscored.
        numerator: i128,
        denominator: i128,
        judge_means: Vec<f64>,
        // Highest minus lowest judge weighted sum, over the common total weight.
        spread: f64,
    }
    let mut lines: Vec<Line> = inputs
        .into_iter()
        .filter(|input| input.state != ApplicationState::Withdrawn)
        .map(|input| {
            let mut numerator = 0i128;
            let mut weight = 0i128;
            let mut judge_means = Vec::with_capacity(input.scores.len());
            for score in &input.scores {
                let (sum, total) = weighted_sum(rubric, &score.scores);
                if total == 0 {
                    continue;
                }
                // Every judge scores every criterion, so `total` is the same for all judges.
                numerator += i128::from(sum);
                weight = i128::from(total);
                judge_means.push(sum as f64 / total as f64);
            }
            let denominator = weight * judge_means.len() as i128;
            let sums: Vec<i64> = input
                .scores
                .iter()
                .map(|score| weighted_sum(rubric, &score.scores))
                .filter(|(_, total)| *total > 0)
                .map(|(sum, _)| sum)
                .collect();
            let spread = match (sums.iter().max(), sums.iter().min()) {
                (Some(high), Some(low)) if weight > 0 => (high - low) as f64 / weight as f64,
                _ => 0.0,
            };
            Line {
                input,
                numerator,
                denominator,
                judge_means,
                spread,
            }
        })
        .collect();
    lines.sort_by(|left, right| {
        let by_score = match (left.denominator, right.denominator) {
            (0, 0) => Ordering::Equal,
            (0, _) => Ordering::Greater,
            (_, 0) => Ordering::Less,
            (ld, rd) => (right.numerator * ld).cmp(&(left.numerator * rd)),
        };
        by_score
            .then_with(|| left.input.submit_time.cmp(&right.input.submit_time))
            .then_with(|| left.input.id.cmp(&right.input.id))
    });
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let weighted_mean = if line.denominator == 0 {
                0.0
            } else {
                line.numerator as f64 / line.denominator as f64
            };
            let spread = line.spread;
            Ranked {
                rank: index + 1,
                id: line.input.id,
                person_id: line.input.person_id,
                state: line.input.state,
                submit_time: line.input.submit_time,
                weighted_mean,
                score_count: line.judge_means.len(),
                assigned_count: line.input.assigned_count,
                spread,
                spread_flagged: spread > spread_threshold,
            }
        })
        .collect()
}

/// Validates a ranking's spread threshold; 0 means [`DEFAULT_SPREAD_THRESHOLD`].
pub fn spread_threshold(value: f64) -> Result<f64> {
    if !value.is_finite() || !(0.0..=f64::from(MAX_SCORE)).contains(&value) {
        return Err(Error::invalid(
            "spread_threshold",
            format!("must be 0 to {MAX_SCORE}"),
        ));
    }
    Ok(if value == 0.0 {
        DEFAULT_SPREAD_THRESHOLD
    } else {
        value
    })
}

/// A decision about one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept and enrol.
    Accept,
    /// Waitlist.
    Waitlist,
    /// Reject.
    Reject,
}

impl Decision {
    /// Returns the state an application takes.
    pub fn state(self) -> ApplicationState {
        match self {
            Self::Accept => ApplicationState::Accepted,
            Self::Waitlist => ApplicationState::Waitlisted,
            Self::Reject => ApplicationState::Rejected,
        }
    }
}

/// Validates the three id lists of a decision; returns `(application id, decision)` in request order.
pub fn parse_decisions(
    accepted: &[String],
    waitlisted: &[String],
    rejected: &[String],
) -> Result<Vec<(String, Decision)>> {
    let mut violations = Violations::new();
    let mut seen = HashSet::new();
    let mut decisions = Vec::new();
    for (field, ids, decision) in [
        ("accepted_ids", accepted, Decision::Accept),
        ("waitlisted_ids", waitlisted, Decision::Waitlist),
        ("rejected_ids", rejected, Decision::Reject),
    ] {
        for (index, id) in ids.iter().enumerate() {
            if !crate::domain::is_uuid(id) {
                violations.add(format!("{field}[{index}]"), "must be a UUID");
            } else if !seen.insert(id.clone()) {
                violations.add(
                    format!("{field}[{index}]"),
                    "names an application decided earlier in this request",
                );
            } else {
                decisions.push((id.clone(), decision));
            }
        }
    }
    if decisions.is_empty() && violations.is_empty() {
        violations.add("accepted_ids", "at least one application must be decided");
    }
    if decisions.len() > MAX_DECISIONS {
        violations.add(
            "accepted_ids",
            format!("at most {MAX_DECISIONS} applications per decision"),
        );
    }
    violations.into_result(decisions)
}

/// Checks that `application` may take `decision`: pending, and not re-waitlisted.
pub fn check_decidable(application: &Application, decision: Decision) -> Result<()> {
    let allowed = match application.state {
        ApplicationState::Submitted => true,
        ApplicationState::Waitlisted => decision != Decision::Waitlist,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        metadata: Vec::new(),
        reason: Reason::ApplicationNotPending,
        subject: format!("application/{}", application.id),
        message: format!(
            "application {} is {} and cannot be {}",
            application.id,
            application.state.as_str(),
            decision.state().as_str()
        ),
    })
}

/// Fails with `CALL_SEATS_EXCEEDED` when accepting `newly_accepted` more would exceed the call's seats.
pub fn check_seats(call: &Call, newly_accepted: usize) -> Result<()> {
    let total = call.accepted_count as i64 + newly_accepted as i64;
    if total <= i64::from(call.seats) {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        metadata: Vec::new(),
        reason: Reason::CallSeatsExceeded,
        subject: format!("call/{}", call.id),
        message: format!(
            "the call has {} seats and {} accepted already; {newly_accepted} more do not fit",
            call.seats, call.accepted_count
        ),
    })
}

/// Who is reading or acting, as the object-level rules of selection need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Token subject (a person id for people).
    pub subject: String,
    /// Programme manager or admin: sees and manages everything.
    pub manager: bool,
    /// For an org admin: the root of the subtree they manage.
    pub subtree_root: Option<String>,
}

impl Viewer {
    /// Returns true when the viewer manages the organisation at `path`.
    pub fn manages_path(&self, path: &str) -> bool {
        self.manager
            || self
                .subtree_root
                .as_deref()
                .is_some_and(|root| path_is_within(path, root))
    }

    /// Checks who may apply for `person_id` (at `person_path`) to `call`.
    ///
    /// Returns the nominator to record: `None` when the applicant applies themself.
    pub fn check_may_apply(
        &self,
        call: &Call,
        person_id: &str,
        person_path: &str,
    ) -> Result<Option<String>> {
        if self.manager || (self.subtree_root.is_some() && self.manages_path(person_path)) {
            return Ok((self.subject != person_id).then(|| self.subject.clone()));
        }
        if self.subject != person_id {
            return Err(own_application_only());
        }
        if call.nomination_only {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::NominationRequired,
                subject: format!("call/{}", call.id),
                message: "this call takes nominations only; ask your organisation to nominate you"
                    .to_owned(),
            });
        }
        Ok(None)
    }

    /// Returns true when the viewer may read `application` (judges are checked by the store).
    pub fn may_read(&self, application: &Application) -> bool {
        self.manager
            || self.subject == application.person_id
            || application.nominated_by.as_deref() == Some(self.subject.as_str())
            || (self.subtree_root.is_some() && self.manages_path(&application.organization_path))
    }

    /// Returns the error for a `resource` that does not exist: NOT_FOUND for a manager, the
    /// refusal of someone else's for anyone else (who may not learn whether it exists).
    pub fn missing(&self, resource: &'static str, id: &str) -> Error {
        if self.manager {
            Error::not_found(resource, id)
        } else if resource == "panel" {
            not_your_panel()
        } else {
            not_yours()
        }
    }

    /// Returns `error`, with a missing application turned into [`Viewer::missing`].
    pub fn hide_missing(&self, error: Error) -> Error {
        match error {
            Error::NotFound { resource, id } => self.missing(resource, &id),
            other => other,
        }
    }
}

/// Returns the refusal of a caller applying for someone they may not nominate.
pub fn own_application_only() -> Error {
    Error::permission_denied(
        Reason::OwnApplicationOnly,
        "you may apply only for yourself, or nominate people of the organisations you manage",
    )
}

/// Returns the refusal of a judge scoring an application not assigned to them.
pub fn not_assigned() -> Error {
    Error::permission_denied(
        Reason::NotAssigned,
        "this application is not assigned to you",
    )
}

/// Returns the refusal of a caller reading a panel they do not sit on.
pub fn not_your_panel() -> Error {
    Error::permission_denied(
        Reason::NotYourPanel,
        "only programme managers and the panel's judges may see this panel",
    )
}

/// Returns the refusal of a caller who may not read or act on `application`.
pub fn not_yours() -> Error {
    Error::permission_denied(
        Reason::NotYourApplication,
        "only the applicant, their nominator or organisation admin, assigned judges and programme managers may see this application",
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rubric() -> Vec<Criterion> {
        vec![
            Criterion {
                id: "impact".into(),
                title: "Impact".into(),
                weight: 3,
            },
            Criterion {
                id: "skill".into(),
                title: "Skill".into(),
                weight: 2,
            },
        ]
    }

    fn time(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn input(id: &str, submitted: i64, scores: &[(i32, i32)]) -> RankInput {
        RankInput {
            id: id.into(),
            person_id: format!("p-{id}"),
            state: ApplicationState::Submitted,
            submit_time: time(submitted),
            assigned_count: scores.len(),
            scores: scores
                .iter()
                .enumerate()
                .map(|(judge, (impact, skill))| StoredScore {
                    judge_person_id: format!("j{judge}"),
                    scores: vec![("impact".into(), *impact), ("skill".into(), *skill)],
                })
                .collect(),
        }
    }

    #[test]
    fn the_weighted_mean_is_the_mean_of_judge_weighted_means() {
        // Judge 1: (3*8 + 2*6)/5 = 7.2; judge 2: (3*4 + 2*9)/5 = 6.0; mean 6.6, spread 1.2.
        let ranked = rank(&rubric(), vec![input("a", 0, &[(8, 6), (4, 9)])], 1.0);
        assert!((ranked[0].weighted_mean - 6.6).abs() < 1e-12);
        assert!((ranked[0].spread - 1.2).abs() < 1e-12);
        assert!(ranked[0].spread_flagged);
    }

    #[test]
    fn ties_go_to_the_earlier_submission_then_the_smaller_id() {
        let ranked = rank(
            &rubric(),
            vec![
                input("c", 5, &[(5, 5)]),
                input("b", 1, &[(5, 5)]),
                input("a", 1, &[(5, 5)]),
                input("z", 0, &[]),
                input("top", 9, &[(10, 10)]),
            ],
            3.0,
        );
        let order: Vec<&str> = ranked.iter().map(|line| line.id.as_str()).collect();
        assert_eq!(order, ["top", "a", "b", "c", "z"]);
        assert_eq!(ranked[4].score_count, 0);
    }

    #[test]
    fn a_judge_is_in_conflict_with_anyone_of_their_ministry() {
        assert!(in_conflict("/m/d/u/", "/m/x/"));
        assert!(in_conflict("/m/d/u/", "/m/"));
        assert!(!in_conflict("/m/d/u/", "/n/d/"));
        assert!(!in_conflict("/intan/", "/m/d/"));
        assert_eq!(top_level_organization("/m/d/"), Some("m"));
    }

    #[test]
    fn missing_scores_and_out_of_range_are_named() {
        let Err(Error::InvalidArgument(violations)) =
            validate_scores(&rubric(), vec![("impact".into(), 11)])
        else {
            panic!("expected invalid argument");
        };
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["criterion_scores[0].score", "criterion_scores"]);
    }

    #[test]
    fn judges_read_other_scores_as_the_call_s_visibility_says() {
        use ApplicationState::{Accepted, Rejected, Submitted, Waitlisted, Withdrawn};
        // Per state, without then with the judge's own score.
        let states = [Submitted, Waitlisted, Accepted, Rejected, Withdrawn];
        for (visibility, expected) in [
            (
                ScoreVisibility::HiddenUntilDecided,
                [
                    [false, false],
                    [false, false],
                    [true, true],
                    [true, true],
                    [false, false],
                ],
            ),
            (
                ScoreVisibility::AfterOwnScore,
                [
                    [false, true],
                    [false, true],
                    [true, true],
                    [true, true],
                    [false, true],
                ],
            ),
            (ScoreVisibility::ManagersOnly, [[false, false]; 5]),
        ] {
            let seen: Vec<[bool; 2]> = states
                .iter()
                .map(|state| {
                    [false, true].map(|own| visibility.reveals_others_to_judge(*state, own))
                })
                .collect();
            assert_eq!(seen, expected, "{visibility:?}");
            assert_eq!(
                ScoreVisibility::parse(visibility.as_str()),
                Some(visibility)
            );
        }
        assert_eq!(
            ScoreVisibility::default(),
            ScoreVisibility::HiddenUntilDecided
        );
    }

    #[test]
    fn a_call_update_validates_what_it_names_and_keeps_the_accepted_seated() {
        let Err(Error::InvalidArgument(violations)) = CallPatch::parse(
            "call",
            &[
                CallField::Title,
                CallField::ScoreVisibility,
                CallField::Seats,
            ],
            " ",
            0,
            false,
            None,
        ) else {
            panic!("expected invalid argument");
        };
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["call.title", "call.score_visibility", "call.seats"]
        );
        let patch = CallPatch::parse(
            "call",
            &[CallField::ScoreVisibility, CallField::Seats],
            "",
            3,
            false,
            Some(ScoreVisibility::ManagersOnly),
        )
        .unwrap();
        let mut call = Call {
            id: "c".into(),
            cohort_id: "h".into(),
            programme_id: "p".into(),
            title: "Call".into(),
            opens_time: time(0),
            closes_time: time(60),
            questions: Vec::new(),
            rubric: rubric(),
            seats: 10,
            nomination_only: false,
            score_visibility: ScoreVisibility::HiddenUntilDecided,
            accepted_count: 3,
            revision: 1,
            create_time: time(0),
            update_time: time(0),
        };
        assert!(call.apply(&patch).unwrap());
        assert_eq!(
            (call.seats, call.score_visibility, call.title.as_str()),
            (3, ScoreVisibility::ManagersOnly, "Call")
        );
        assert!(
            !call.apply(&patch).unwrap(),
            "the same patch changes nothing"
        );
        let fewer = CallPatch {
            seats: Some(2),
            ..CallPatch::default()
        };
        assert_eq!(
            call.apply(&fewer).unwrap_err().reason(),
            "PLACES_ALREADY_TAKEN"
        );
        assert_eq!(call.seats, 3);
    }

    #[test]
    fn an_application_decided_twice_in_one_request_is_invalid() {
        let id = crate::domain::new_id();
        assert!(
            parse_decisions(std::slice::from_ref(&id), &[], std::slice::from_ref(&id)).is_err()
        );
        assert!(parse_decisions(&[], &[], &[]).is_err());
    }

    fn judges(paths: &[&str]) -> Vec<JudgeSlot> {
        paths
            .iter()
            .enumerate()
            .map(|(index, path)| JudgeSlot {
                person_id: format!("j{index}"),
                organization_path: (*path).to_owned(),
                load: 0,
            })
            .collect()
    }

    #[test]
    fn too_few_judges_free_of_conflict_is_refused_with_the_rule() {
        let mut panel = judges(&["/m/", "/m/d/"]);
        let applications = vec![Unassigned {
            id: "a".into(),
            organization_path: "/m/x/".into(),
        }];
        let error = assign(&mut panel, &applications, 1).unwrap_err();
        assert_eq!(error.reason(), "NOT_ENOUGH_JUDGES");
    }

    proptest! {
        #[test]
        fn random_panels_are_assigned_conflict_free_complete_and_balanced(
            ministry_count in 1usize..8,
            application_ministries in proptest::collection::vec(0usize..8, 0..60),
            judge_setup in proptest::collection::vec((0usize..8, 0usize..4), 1..12),
            per in 1usize..=3,
        ) {
            let judge_paths: Vec<String> = judge_setup
                .iter()
                .map(|(ministry, _)| format!("/m{}/judges/", ministry % ministry_count))
                .collect();
            let mut panel: Vec<JudgeSlot> = judge_setup
                .iter()
                .zip(&judge_paths)
                .enumerate()
                .map(|(index, ((_, load), path))| JudgeSlot {
                    person_id: format!("j{index:02}"),
                    organization_path: path.clone(),
                    load: *load,
                })
                .collect();
            let applications: Vec<Unassigned> = application_ministries
                .iter()
                .enumerate()
                .map(|(index, ministry)| Unassigned {
                    id: format!("a{index:03}"),
                    organization_path: format!("/m{}/unit/", ministry % ministry_count),
                })
                .collect();
            let free_of = |application: &Unassigned| -> Vec<usize> {
                (0..judge_paths.len())
                    .filter(|judge| !in_conflict(&judge_paths[*judge], &application.organization_path))
                    .collect()
            };
            let feasible = applications.iter().all(|application| free_of(application).len() >= per);
            let before: Vec<usize> = panel.iter().map(|slot| slot.load).collect();
            let mut again = panel.clone();
            let outcome = assign(&mut panel, &applications, per);
            let Ok(pairs) = outcome else {
                prop_assert!(!feasible, "refused a feasible panel");
                prop_assert_eq!(outcome.unwrap_err().reason(), "NOT_ENOUGH_JUDGES");
                return Ok(());
            };
            prop_assert!(feasible);
            prop_assert_eq!(pairs.len(), applications.len() * per);
            let mut judges_of: HashMap<&str, HashSet<usize>> = HashMap::new();
            for (application, judge) in &pairs {
                let judge_index = panel.iter().position(|slot| &slot.person_id == judge).unwrap();
                let source = applications.iter().find(|a| &a.id == application).unwrap();
                prop_assert!(!in_conflict(&panel[judge_index].organization_path, &source.organization_path));
                prop_assert!(judges_of.entry(application).or_default().insert(judge_index), "a judge twice on one application");
            }
            let new_loads: Vec<usize> = (0..panel.len())
                .map(|judge| pairs.iter().filter(|(_, id)| *id == panel[judge].person_id).count())
                .collect();
            for judge in 0..panel.len() {
                prop_assert_eq!(panel[judge].load, before[judge] + new_loads[judge]);
            }
            // No single move of an application to a judge at least two below improves it.
            for application in &applications {
                let assigned = &judges_of[application.id.as_str()];
                for from in assigned {
                    for to in free_of(application) {
                        prop_assert!(
                            assigned.contains(&to) || panel[to].load + 2 > panel[*from].load,
                            "moving {} from judge {} to judge {} would balance better",
                            application.id, from, to
                        );
                    }
                }
            }
            // The same input in another order gives the same assignment.
            let mut reversed = applications.clone();
            reversed.reverse();
            let mut second = assign(&mut again, &reversed, per).unwrap();
            let mut first = pairs.clone();
            first.sort();
            second.sort();
            prop_assert_eq!(first, second);
            // Small panels: as balanced as the best of every conflict-free assignment.
            if applications.len() <= 6 && panel.len() <= 4 {
                let eligible: Vec<Vec<usize>> = applications.iter().map(free_of).collect();
                let best =
                    assignment::exhaustive_best(&before, &eligible, &vec![per; applications.len()])
                        .expect("feasible");
                let mut sorted_loads: Vec<usize> = panel.iter().map(|slot| slot.load).collect();
                sorted_loads.sort_unstable_by(|a, b| b.cmp(a));
                let (low, high) = load_range(sorted_loads.iter().copied());
                prop_assert_eq!(high - low, best.spread);
                prop_assert_eq!(sorted_loads, best.sorted_loads);
            }
        }

        #[test]
        fn the_ranking_is_sorted_reproducible_and_order_independent(
            raw in proptest::collection::vec((0i64..5, proptest::collection::vec((0i32..=10, 0i32..=10), 0..4)), 1..30),
        ) {
            let inputs: Vec<RankInput> = raw
                .iter()
                .enumerate()
                .map(|(index, (submitted, scores))| input(&format!("a{index:03}"), *submitted, scores))
                .collect();
            let first = rank(&rubric(), inputs.clone(), 3.0);
            let mut reversed = inputs.clone();
            reversed.reverse();
            let second = rank(&rubric(), reversed, 3.0);
            prop_assert_eq!(&first, &second);
            for pair in first.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                if a.score_count > 0 && b.score_count > 0 {
                    prop_assert!(a.weighted_mean >= b.weighted_mean - 1e-9);
                }
                prop_assert!(!(a.score_count == 0 && b.score_count > 0));
            }
            for line in &first {
                let source = inputs.iter().find(|input| input.id == line.id).unwrap();
                if !source.scores.is_empty() {
                    let expected: f64 = source
                        .scores
                        .iter()
                        .map(|score| weighted_score(&rubric(), &score.scores))
                        .sum::<f64>() / source.scores.len() as f64;
                    prop_assert!((line.weighted_mean - expected).abs() < 1e-9);
                }
            }
        }
    }
}
