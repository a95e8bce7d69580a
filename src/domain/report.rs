//! Reports: turning counters into completion rows (rates, medians) and CSV.

use std::collections::BTreeMap;

use crate::domain::programme::EnrollmentState;
use crate::domain::progress::{CourseView, ProgressView};
use crate::domain::survey::{Answer, QuestionKind, SurveyQuestion, Thresholds, aggregate};

/// One row of a completion report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionRow {
    /// Group key: organisation id, cohort id or sector.
    pub key: String,
    /// Display name of the group.
    pub name: String,
    /// Enrolled, not started.
    pub enrolled: i64,
    /// Started, not completed.
    pub in_progress: i64,
    /// Completed.
    pub completed: i64,
    /// Withdrawn.
    pub withdrawn: i64,
    /// On a waitlist.
    pub waitlisted: i64,
    /// Days from enrolment to completion: days -> count.
    pub durations: BTreeMap<i32, i64>,
    /// PHASE grouping: the phase's windows and activity completions.
    pub phase: Option<PhaseFigures>,
}

/// What a row of a report grouped by phase adds: the phase's window dates over the cohorts
/// reported, and its activity completions classified against the window of each learner's
/// cohort ([`crate::domain::programme::PhaseWindow::timing`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseFigures {
    /// The earliest first day of the phase's windows.
    pub window_start_date: Option<chrono::NaiveDate>,
    /// The latest last day of the phase's windows.
    pub window_end_date: Option<chrono::NaiveDate>,
    /// Activities of the phase completed (one per enrolment and activity).
    pub activities_completed: i64,
    /// Of those, completed before the window of the learner's cohort opened.
    pub activities_completed_early: i64,
    /// Of those, completed after it closed.
    pub activities_completed_late: i64,
}

impl PhaseFigures {
    /// Adds `other` into these figures: counts summed, windows widened.
    pub fn merge(&mut self, other: &Self) {
        self.window_start_date = match (self.window_start_date, other.window_start_date) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.window_end_date = match (self.window_end_date, other.window_end_date) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.activities_completed += other.activities_completed;
        self.activities_completed_early += other.activities_completed_early;
        self.activities_completed_late += other.activities_completed_late;
    }
}

/// Returns where an enrolment stands on a phase, as phase reports count it (like
/// [`course_standing`] over the phase's courses): COMPLETED when every course of the phase is
/// (also after a withdrawal), else WITHDRAWN or WAITLISTED as the enrolment is, else IN_PROGRESS
/// when any activity of the phase has an event, else ENROLLED.
pub fn phase_standing(
    enrollment_state: EnrollmentState,
    started: bool,
    completed: bool,
) -> EnrollmentState {
    if completed {
        return EnrollmentState::Completed;
    }
    match enrollment_state {
        EnrollmentState::Withdrawn => EnrollmentState::Withdrawn,
        EnrollmentState::Waitlisted => EnrollmentState::Waitlisted,
        _ if started => EnrollmentState::InProgress,
        _ => EnrollmentState::Enrolled,
    }
}

impl CompletionRow {
    /// Adds `count` enrolments in `state`.
    pub fn add(&mut self, state: &str, count: i64) {
        match EnrollmentState::parse(state) {
            Some(EnrollmentState::Enrolled) => self.enrolled += count,
            Some(EnrollmentState::InProgress) => self.in_progress += count,
            Some(EnrollmentState::Completed) => self.completed += count,
            Some(EnrollmentState::Withdrawn) => self.withdrawn += count,
            Some(EnrollmentState::Waitlisted) => self.waitlisted += count,
            None => {}
        }
    }

    /// Returns the people holding a place (enrolled, in progress or completed).
    pub fn holding_places(&self) -> i64 {
        self.enrolled + self.in_progress + self.completed
    }

    /// Returns completed / holding places, 0-100 (0 when nobody holds a place).
    pub fn completion_rate(&self) -> f64 {
        let places = self.holding_places();
        if places == 0 {
            0.0
        } else {
            (self.completed as f64 * 10_000.0 / places as f64).round() / 100.0
        }
    }

    /// Returns the median of the days to complete (the lower middle for an even count), if any completed.
    pub fn median_days(&self) -> Option<f64> {
        median(&self.durations)
    }

    /// Adds every figure of `other` into this row.
    pub fn merge(&mut self, other: &Self) {
        self.enrolled += other.enrolled;
        self.in_progress += other.in_progress;
        self.completed += other.completed;
        self.withdrawn += other.withdrawn;
        self.waitlisted += other.waitlisted;
        for (days, count) in &other.durations {
            *self.durations.entry(*days).or_default() += count;
        }
    }
}

/// Where an enrolment stands on one pinned course version, as course reports count it: the
/// course's completion decides first (a completed course stays completed, also after the
/// enrolment is withdrawn), then a withdrawn or waitlisted enrolment, then whether the learner
/// started the course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CourseStanding {
    /// ENROLLED (not started), IN_PROGRESS (started), COMPLETED, WITHDRAWN or WAITLISTED.
    pub state: EnrollmentState,
    /// For COMPLETED: whole days from enrolment to the course's completion.
    pub days_to_complete: Option<i32>,
}

/// Returns how `enrollment` stands on `course`, one of the courses of its derived progress `view`
/// (`None` for an enrolment without any progress).
///
/// A course counts as started once any of its activities has an event, and as completed when its
/// rule says so and the enrolment has any event at all (so a course without required activities
/// does not count as completed for someone who never began). Its completion time is the latest
/// completion of its required activities (else its latest event, else the enrolment's).
pub fn course_standing(
    enrollment_state: EnrollmentState,
    enrolled_time: chrono::DateTime<chrono::Utc>,
    progress: Option<(&ProgressView, &CourseView)>,
) -> CourseStanding {
    let progress = progress.filter(|(view, _)| view.event_count > 0);
    if let Some((view, course)) = progress
        && course.completed
    {
        let activities = || {
            course.modules.iter().flat_map(|module| {
                module
                    .activities
                    .iter()
                    .map(move |activity| (module.required && activity.required, activity))
            })
        };
        let completed_time = activities()
            .filter(|(counted, _)| *counted)
            .filter_map(|(_, activity)| activity.tally.completed_time)
            .max()
            .or_else(|| {
                activities()
                    .filter_map(|(_, activity)| activity.tally.last_event_time)
                    .max()
            })
            .or(view.last_event_time)
            .unwrap_or(enrolled_time);
        let days = std::cmp::max((completed_time - enrolled_time).num_days(), 0);
        return CourseStanding {
            state: EnrollmentState::Completed,
            days_to_complete: Some(i32::try_from(days).unwrap_or(i32::MAX)),
        };
    }
    let started = progress.is_some_and(|(_, course)| {
        course
            .modules
            .iter()
            .flat_map(|module| &module.activities)
            .any(|activity| activity.tally.events > 0)
    });
    let state = match enrollment_state {
        EnrollmentState::Withdrawn => EnrollmentState::Withdrawn,
        EnrollmentState::Waitlisted => EnrollmentState::Waitlisted,
        _ if started => EnrollmentState::InProgress,
        _ => EnrollmentState::Enrolled,
    };
    CourseStanding {
        state,
        days_to_complete: None,
    }
}

/// Threshold of a SCALE headline: the share that agree (4 or 5).
pub const SCALE_HEADLINE_THRESHOLD: f64 = 3.0;
/// Threshold of a NUMBER headline: the share answering more than nothing (e.g. saved any time).
pub const NUMBER_HEADLINE_THRESHOLD: f64 = 0.0;

/// The headline of one survey question on a dashboard; never free text.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionHeadline {
    /// The question.
    pub question: SurveyQuestion,
    /// Responses answering it.
    pub answer_count: i64,
    /// SCALE and NUMBER: mean, when answered.
    pub mean: Option<f64>,
    /// SCALE and NUMBER: the headline threshold.
    pub threshold: Option<f64>,
    /// SCALE and NUMBER: share (0-1) strictly above the threshold, when answered.
    pub share_above_threshold: Option<f64>,
    /// SINGLE_CHOICE: the most chosen option (first in option order on a tie) and its share (0-1).
    pub top_option: Option<(String, f64)>,
}

/// Returns the headline of every question of a survey over `responses`, through the survey
/// aggregation (and its k-anonymity rules); free text answers are dropped whatever their number.
pub fn survey_headlines(
    questions: &[SurveyQuestion],
    responses: &[Vec<Answer>],
) -> (i64, Vec<QuestionHeadline>) {
    let thresholds = Thresholds {
        default: None,
        per_question: questions
            .iter()
            .filter_map(|question| match question.kind {
                QuestionKind::Scale => Some((question.id.clone(), SCALE_HEADLINE_THRESHOLD)),
                QuestionKind::Number => Some((question.id.clone(), NUMBER_HEADLINE_THRESHOLD)),
                QuestionKind::SingleChoice | QuestionKind::FreeText => None,
            })
            .collect(),
    };
    let results = aggregate(questions, responses, &thresholds);
    let headlines = results
        .questions
        .into_iter()
        .map(|result| {
            let chosen: i64 = result.option_counts.iter().map(|(_, count)| count).sum();
            let top_option = result
                .option_counts
                .iter()
                .fold(None::<&(String, i64)>, |best, candidate| match best {
                    Some(best) if best.1 >= candidate.1 => Some(best),
                    _ => Some(candidate),
                })
                .filter(|(_, count)| *count > 0)
                .map(|(option, count)| (option.clone(), *count as f64 / chosen as f64));
            QuestionHeadline {
                answer_count: result.answer_count,
                mean: result.numeric.as_ref().map(|numeric| numeric.mean),
                threshold: result.threshold,
                share_above_threshold: result
                    .numeric
                    .as_ref()
                    .and_then(|numeric| numeric.share_above_threshold),
                top_option,
                question: result.question,
            }
        })
        .collect();
    (results.response_count, headlines)
}

/// One row of a certification report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificationRow {
    /// Organisation id, or `total`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Candidacies per state.
    pub candidacies: BTreeMap<String, i64>,
    /// Valid now.
    pub certified: i64,
    /// Valid now and expiring within the horizon.
    pub expiring_soon: i64,
    /// Past expiry.
    pub expired: i64,
    /// Suspended.
    pub suspended: i64,
    /// Revoked.
    pub revoked: i64,
}

/// A certificate as a report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Stored status (ACTIVE, SUSPENDED, REVOKED, SUPERSEDED, ...).
    pub status: String,
    /// Expiry.
    pub expires_time: chrono::DateTime<chrono::Utc>,
}

impl CertificationRow {
    /// Counts a certificate, judging validity at `now` and "soon" up to `horizon`.
    pub fn add_certificate(
        &mut self,
        certificate: &CertificateFacts,
        now: chrono::DateTime<chrono::Utc>,
        horizon: chrono::DateTime<chrono::Utc>,
    ) {
        match certificate.status.as_str() {
            "REVOKED" => self.revoked += 1,
            "SUSPENDED" => self.suspended += 1,
            "ACTIVE" if certificate.expires_time <= now => self.expired += 1,
            "ACTIVE" => {
                self.certified += 1;
                if certificate.expires_time <= horizon {
                    self.expiring_soon += 1;
                }
            }
            "EXPIRED" => self.expired += 1,
            _ => {}
        }
    }
}

/// Returns the median of a histogram (value -> count); the mean of the two middle values for an even total.
pub fn median(histogram: &BTreeMap<i32, i64>) -> Option<f64> {
    let total: i64 = histogram.values().sum();
    if total <= 0 {
        return None;
    }
    let value_at = |rank: i64| {
        let mut seen = 0;
        for (value, count) in histogram {
            seen += count;
            if seen > rank {
                return f64::from(*value);
            }
        }
        0.0
    };
    if total % 2 == 1 {
        Some(value_at(total / 2))
    } else {
        Some((value_at(total / 2 - 1) + value_at(total / 2)) / 2.0)
    }
}

/// Returns `rows` and `total` as CSV, with a header line; a report grouped by phase has five more
/// columns (window dates and activity completions).
pub fn to_csv(rows: &[CompletionRow], total: &CompletionRow) -> String {
    let phases = rows.iter().any(|row| row.phase.is_some());
    let mut csv = String::from(
        "group,name,enrolled,in_progress,completed,withdrawn,waitlisted,completion_rate,median_days_to_complete",
    );
    if phases {
        csv.push_str(",window_start_date,window_end_date,activities_completed,activities_completed_early,activities_completed_late");
    }
    csv.push('\n');
    for row in rows.iter().chain(std::iter::once(total)) {
        let (key, name) = (csv_cell(&row.key), csv_cell(&row.name));
        let median = row
            .median_days()
            .map(|days| days.to_string())
            .unwrap_or_default();
        csv.push_str(&format!(
            "{key},{name},{},{},{},{},{},{},{median}\n",
            row.enrolled,
            row.in_progress,
            row.completed,
            row.withdrawn,
            row.waitlisted,
            row.completion_rate()
        ));
        if phases {
            csv.pop();
            let figures = row.phase.clone().unwrap_or_default();
            let date = |date: Option<chrono::NaiveDate>| {
                date.map(|date| date.to_string()).unwrap_or_default()
            };
            csv.push_str(&format!(
                ",{},{},{},{},{}\n",
                date(figures.window_start_date),
                date(figures.window_end_date),
                figures.activities_completed,
                figures.activities_completed_early,
                figures.activities_completed_late
            ));
        }
    }
    csv
}

/// Returns `value` as one quoted CSV cell that a spreadsheet shows as text, never runs.
///
/// As OWASP recommends against CSV injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return (which spreadsheets read as a formula) gets a leading `'`; quotes are doubled
/// and the cell is always quoted, so commas and line breaks stay inside it.
pub fn csv_cell(value: &str) -> String {
    let neutralise = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let escaped = value.replace('"', "\"\"");
    if neutralise {
        format!("\"'{escaped}\"")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(csv_cell("Ministry of Finance"), "\"Ministry of Finance\"");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for dangerous in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(dangerous).starts_with("\"'"), "{dangerous}");
        }
        assert_eq!(csv_cell("a,b\nc"), "\"a,b\nc\"");
    }

    #[test]
    fn rates_and_medians() {
        let mut row = CompletionRow::default();
        row.add("ENROLLED", 2);
        row.add("IN_PROGRESS", 1);
        row.add("COMPLETED", 1);
        row.add("WITHDRAWN", 5);
        assert_eq!(row.completion_rate(), 25.0);
        row.durations = BTreeMap::from([(10, 1), (20, 2), (40, 1)]);
        assert_eq!(row.median_days(), Some(20.0));
        row.durations = BTreeMap::from([(10, 1), (30, 1)]);
        assert_eq!(row.median_days(), Some(20.0));
    }

    #[test]
    fn a_completed_course_outranks_withdrawal_and_counts_days_to_its_last_required_activity() {
        use crate::domain::progress::{ActivityState, ActivityTally, ActivityView, ModuleView};

        let enrolled = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let activity = |days: Option<i64>, events: i64| ActivityView {
            activity_id: "a".to_owned(),
            required: true,
            state: ActivityState::NotStarted,
            tally: ActivityTally {
                events,
                completed_time: days.map(|days| enrolled + chrono::Duration::days(days)),
                last_event_time: Some(enrolled),
                ..ActivityTally::default()
            },
        };
        let course = |completed: bool, activities: Vec<ActivityView>| CourseView {
            course_version_id: "v".to_owned(),
            completed,
            percent_complete: 0.0,
            modules: vec![ModuleView {
                module_id: "m".to_owned(),
                required: true,
                completed,
                activities,
            }],
        };
        let view = |course: &CourseView, events: i64| ProgressView {
            courses: vec![course.clone()],
            percent_complete: 0.0,
            completed: false,
            completed_time: None,
            next_activity_id: None,
            event_count: events,
            last_event_time: Some(enrolled),
        };
        let done = course(true, vec![activity(Some(3), 1), activity(Some(9), 1)]);
        let done_view = view(&done, 2);
        let standing = course_standing(
            EnrollmentState::Withdrawn,
            enrolled,
            Some((&done_view, &done)),
        );
        assert_eq!(standing.state, EnrollmentState::Completed);
        assert_eq!(standing.days_to_complete, Some(9));
        let started = course(false, vec![activity(None, 1), activity(None, 0)]);
        let started_view = view(&started, 1);
        for (state, expected) in [
            (EnrollmentState::Enrolled, EnrollmentState::InProgress),
            (EnrollmentState::InProgress, EnrollmentState::InProgress),
            (EnrollmentState::Withdrawn, EnrollmentState::Withdrawn),
        ] {
            let standing = course_standing(state, enrolled, Some((&started_view, &started)));
            assert_eq!(standing.state, expected);
        }
        // Complete by its rule (no required activity) but never begun: not counted as completed.
        let empty = course(true, Vec::new());
        let empty_view = view(&empty, 0);
        let standing = course_standing(
            EnrollmentState::Enrolled,
            enrolled,
            Some((&empty_view, &empty)),
        );
        assert_eq!(standing.state, EnrollmentState::Enrolled);
        assert_eq!(
            course_standing(EnrollmentState::Waitlisted, enrolled, None).state,
            EnrollmentState::Waitlisted
        );
    }

    proptest! {
        #[test]
        fn the_histogram_median_equals_the_sorted_median(values in proptest::collection::vec(0i32..400, 1..200)) {
            let mut histogram = BTreeMap::new();
            for value in &values {
                *histogram.entry(*value).or_insert(0i64) += 1;
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let middle = sorted.len() / 2;
            let expected = if sorted.len() % 2 == 1 {
                f64::from(sorted[middle])
            } else {
                (f64::from(sorted[middle - 1]) + f64::from(sorted[middle])) / 2.0
            };
            prop_assert_eq!(median(&histogram), Some(expected));
        }
    }
}
