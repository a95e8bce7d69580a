//! Progress: validation of events, the order-independent fold from events to activity state,
//! and the derivation of module, course and programme completion from completion rules.
//!
//! Every derived quantity is a commutative aggregate of the event set (exists, min, max, sum,
//! count), so applying events incrementally in any order, with any duplicates removed, gives the
//! same state as recomputing from the log; completion can never go backwards.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::domain::course::{ActivityKind, ActivityRule, CompletionRule};

/// How far in the future an event may claim to have happened (clock skew of devices).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Longest duration one event may report.
pub const MAX_DURATION_SECONDS: i64 = 365 * 24 * 3600;
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

use super::stored_enum;

stored_enum!(
    /// What a learner did.
    Verb {
        /// Began.
        Started => "STARTED",
        /// Attended in person.
        Attended => "ATTENDED",
        /// Made progress.
        Progressed => "PROGRESSED",
        /// Completed.
        Completed => "COMPLETED",
        /// Passed (scored).
        Passed => "PASSED",
        /// Failed (scored).
        Failed => "FAILED",
    }
);

stored_enum!(
    /// Who reports an event.
    Source {
        /// The learner's app.
        App => "APP",
        /// A trainer.
        Trainer => "TRAINER",
        /// A supervisor (sign-offs).
        Supervisor => "SUPERVISOR",
        /// An import of prior learning.
        Import => "IMPORT",
    }
);

stored_enum!(
    /// Derived state of an activity.
    ActivityState {
        /// No event yet.
        NotStarted => "NOT_STARTED",
        /// Events, not complete.
        InProgress => "IN_PROGRESS",
        /// Complete.
        Completed => "COMPLETED",
        /// Scored attempts, none passing.
        Failed => "FAILED",
    }
);

impl Verb {
    /// Returns the xAPI verb IRI (ADL vocabulary).
    pub fn xapi_iri(self) -> &'static str {
        match self {
            Self::Started => "http://adlnet.gov/expapi/verbs/attempted",
            Self::Attended => "http://adlnet.gov/expapi/verbs/attended",
            Self::Progressed => "http://adlnet.gov/expapi/verbs/progressed",
            Self::Completed => "http://adlnet.gov/expapi/verbs/completed",
            Self::Passed => "http://adlnet.gov/expapi/verbs/passed",
            Self::Failed => "http://adlnet.gov/expapi/verbs/failed",
        }
    }
}

/// What the fold needs of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    /// Verb.
    pub verb: Verb,
    /// Score, if any.
    pub score: Option<i32>,
    /// Time spent.
    pub duration_seconds: i64,
    /// When it happened.
    pub occurred_time: DateTime<Utc>,
    /// Who reported it.
    pub source: Source,
}

/// An event as received, before validation against the enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInput {
    /// Client-made UUID.
    pub event_id: String,
    /// Enrolment.
    pub enrollment_id: String,
    /// Activity.
    pub activity_id: String,
    /// The facts.
    pub facts: EventFacts,
    /// Evidence URI.
    pub evidence_uri: Option<String>,
    /// Evidence note.
    pub evidence_note: Option<String>,
    /// Provenance of an import.
    pub provenance_note: Option<String>,
}

impl EventInput {
    /// Returns a digest of everything the client sent, to tell a replay from a reused event id.
    pub fn payload_hash(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let text = format!(
            "{}|{}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}|{:?}",
            self.event_id,
            self.enrollment_id,
            self.activity_id,
            self.facts.verb.as_str(),
            self.facts.score,
            self.facts.duration_seconds,
            self.facts.occurred_time.timestamp_micros(),
            self.facts.source.as_str(),
            self.evidence_uri,
            self.evidence_note,
            self.provenance_note,
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// A field-level problem of one event: the field and why.
pub type EventProblem = (&'static str, String);

/// Raw values of an event, as the API received them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// Event id.
    pub event_id: String,
    /// Enrolment id.
    pub enrollment_id: String,
    /// Activity id.
    pub activity_id: String,
    /// Verb, `None` if unspecified.
    pub verb: Option<Verb>,
    /// Score.
    pub score: Option<i32>,
    /// Duration.
    pub duration_seconds: i64,
    /// When, `None` if missing or invalid.
    pub occurred_time: Option<DateTime<Utc>>,
    /// Source, `None` if unspecified.
    pub source: Option<Source>,
    /// Evidence URI.
    pub evidence_uri: String,
    /// Evidence note.
    pub evidence_note: String,
    /// Provenance note.
    pub provenance_note: String,
}

impl RawEvent {
    /// Validates what can be checked without the database; `now` bounds the occurred time.
    pub fn validate(self, now: DateTime<Utc>) -> Result<EventInput, EventProblem> {
        for (field, value) in [
            ("event_id", &self.event_id),
            ("enrollment_id", &self.enrollment_id),
            ("activity_id", &self.activity_id),
        ] {
            if !crate::domain::is_uuid(value) {
                return Err((field, "must be a UUID".to_owned()));
            }
        }
        let verb = self.verb.ok_or(("verb", "is required".to_owned()))?;
        let source = self.source.ok_or(("source", "is required".to_owned()))?;
        let occurred_time = self
            .occurred_time
            .ok_or(("occurred_time", "is required".to_owned()))?;
        if occurred_time > now + MAX_FUTURE_SKEW {
            return Err(("occurred_time", "is in the future".to_owned()));
        }
        if let Some(score) = self.score
            && !(0..=100).contains(&score)
        {
            return Err(("score", "must be 0 to 100".to_owned()));
        }
        if !(0..=MAX_DURATION_SECONDS).contains(&self.duration_seconds) {
            return Err((
                "duration_seconds",
                format!("must be 0 to {MAX_DURATION_SECONDS}"),
            ));
        }
        if self.evidence_uri.chars().count() > 2000 || self.evidence_note.chars().count() > 2000 {
            return Err((
                "evidence",
                "uri and note must be at most 2,000 characters each".to_owned(),
            ));
        }
        let provenance = self.provenance_note.trim();
        if source == Source::Import && provenance.is_empty() {
            return Err((
                "provenance_note",
                "is required for IMPORT events".to_owned(),
            ));
        }
        let optional = |text: String| (!text.trim().is_empty()).then(|| text.trim().to_owned());
        Ok(EventInput {
            event_id: self.event_id.to_lowercase(),
            enrollment_id: self.enrollment_id,
            activity_id: self.activity_id,
            facts: EventFacts {
                verb,
                score: self.score,
                duration_seconds: self.duration_seconds,
                occurred_time: crate::domain::truncate_micros(occurred_time),
                source,
            },
            evidence_uri: optional(self.evidence_uri),
            evidence_note: optional(self.evidence_note),
            provenance_note: optional(self.provenance_note),
        })
    }
}

/// Checks an event against the rule of its activity: scores and verbs must make sense for the kind.
pub fn check_against_rule(facts: &EventFacts, rule: &ActivityRule) -> Result<(), EventProblem> {
    let scored_verb = matches!(facts.verb, Verb::Passed | Verb::Failed);
    if rule.kind != ActivityKind::Assessment {
        if facts.score.is_some() {
            return Err(("score", "only assessments take a score".to_owned()));
        }
        if scored_verb {
            return Err((
                "verb",
                "PASSED and FAILED apply to assessments only".to_owned(),
            ));
        }
        return Ok(());
    }
    let pass_score = rule.pass_score.unwrap_or(0);
    match (facts.verb, facts.score) {
        (Verb::Passed | Verb::Failed, None) => {
            Err(("score", "PASSED and FAILED need a score".to_owned()))
        }
        (Verb::Passed, Some(score)) if score < pass_score => Err((
            "score",
            format!("is below the pass mark {pass_score} of a PASSED event"),
        )),
        (Verb::Failed, Some(score)) if score >= pass_score => Err((
            "score",
            format!("reaches the pass mark {pass_score} of a FAILED event"),
        )),
        _ => Ok(()),
    }
}

/// Returns true when `facts` by itself completes an activity with `rule`.
fn completes(rule: &ActivityRule, facts: &EventFacts) -> bool {
    if rule.requires_sign_off {
        return facts.verb == Verb::Completed && facts.source == Source::Supervisor;
    }
    if rule.kind == ActivityKind::Assessment {
        return facts.verb != Verb::Failed
            && facts
                .score
                .is_some_and(|score| score >= rule.pass_score.unwrap_or(0));
    }
    matches!(facts.verb, Verb::Completed | Verb::Attended | Verb::Passed)
}

/// Aggregate of an activity's events; every field is commutative over the event set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityTally {
    /// Events recorded.
    pub events: i64,
    /// Best score.
    pub best_score: Option<i32>,
    /// Scored attempts.
    pub attempts: i32,
    /// Sum of durations.
    pub time_spent_seconds: i64,
    /// Earliest completing event.
    pub completed_time: Option<DateTime<Utc>>,
    /// Latest event.
    pub last_event_time: Option<DateTime<Utc>>,
}

impl ActivityTally {
    /// Adds one event.
    pub fn fold(&mut self, rule: &ActivityRule, facts: &EventFacts) {
        self.events += 1;
        if let Some(score) = facts.score {
            self.best_score = Some(self.best_score.map_or(score, |best| best.max(score)));
            self.attempts += 1;
        }
        self.time_spent_seconds += facts.duration_seconds;
        if completes(rule, facts) {
            self.completed_time = Some(
                self.completed_time
                    .map_or(facts.occurred_time, |time| time.min(facts.occurred_time)),
            );
        }
        self.last_event_time = Some(
            self.last_event_time
                .map_or(facts.occurred_time, |time| time.max(facts.occurred_time)),
        );
    }

    /// Returns the derived state.
    pub fn state(&self) -> ActivityState {
        if self.completed_time.is_some() {
            ActivityState::Completed
        } else if self.attempts > 0 {
            ActivityState::Failed
        } else if self.events > 0 {
            ActivityState::InProgress
        } else {
            ActivityState::NotStarted
        }
    }
}

/// Derived progress of one activity.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityView {
    /// Activity id.
    pub activity_id: String,
    /// Whether it counts towards its module.
    pub required: bool,
    /// State.
    pub state: ActivityState,
    /// The tally.
    pub tally: ActivityTally,
}

/// Derived progress of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleView {
    /// Module id.
    pub module_id: String,
    /// Whether it counts towards its course.
    pub required: bool,
    /// Every required activity complete.
    pub completed: bool,
    /// Activities in order.
    pub activities: Vec<ActivityView>,
}

/// Derived progress of one course version.
#[derive(Debug, Clone, PartialEq)]
pub struct CourseView {
    /// Course version id.
    pub course_version_id: String,
    /// Every required module complete.
    pub completed: bool,
    /// Share of required activities complete, 0-100.
    pub percent_complete: f64,
    /// Modules in order.
    pub modules: Vec<ModuleView>,
}

/// Derived progress of an enrolment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressView {
    /// Per pinned course version.
    pub courses: Vec<CourseView>,
    /// Share of required activities complete across every course, 0-100.
    pub percent_complete: f64,
    /// Every course complete.
    pub completed: bool,
    /// When the last required activity was completed (if completed).
    pub completed_time: Option<DateTime<Utc>>,
    /// The next required activity to do.
    pub next_activity_id: Option<String>,
    /// Events recorded.
    pub event_count: i64,
    /// Latest event.
    pub last_event_time: Option<DateTime<Utc>>,
}

fn percent(done: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 10_000.0 / total as f64).round() / 100.0
    }
}

/// Derives an enrolment's progress from the rules of its pinned versions and its activity tallies.
pub fn derive(
    rules: &[(String, &CompletionRule)],
    tallies: &HashMap<String, ActivityTally>,
) -> ProgressView {
    let mut courses = Vec::with_capacity(rules.len());
    let (mut all_done, mut all_total) = (0usize, 0usize);
    let mut completed_time: Option<DateTime<Utc>> = None;
    let mut next_activity_id = None;
    let mut event_count = 0;
    let mut last_event_time: Option<DateTime<Utc>> = None;
    for (version_id, rule) in rules {
        let (mut done, mut total) = (0usize, 0usize);
        let mut modules = Vec::with_capacity(rule.modules.len());
        for module in &rule.modules {
            let activities: Vec<ActivityView> = module
                .activities
                .iter()
                .map(|activity| {
                    let tally = tallies
                        .get(&activity.activity_id)
                        .cloned()
                        .unwrap_or_default();
                    ActivityView {
                        activity_id: activity.activity_id.clone(),
                        required: activity.required,
                        state: tally.state(),
                        tally,
                    }
                })
                .collect();
            let completed = activities
                .iter()
                .filter(|a| a.required)
                .all(|a| a.state == ActivityState::Completed);
            for activity in &activities {
                event_count += activity.tally.events;
                last_event_time = last_event_time.max(activity.tally.last_event_time);
                if module.required && activity.required {
                    total += 1;
                    if activity.state == ActivityState::Completed {
                        done += 1;
                        completed_time = completed_time.max(activity.tally.completed_time);
                    }
                }
            }
            modules.push(ModuleView {
                module_id: module.module_id.clone(),
                required: module.required,
                completed,
                activities,
            });
        }
        // The next activity: first required one not complete, in a module whose prerequisites are complete.
        if next_activity_id.is_none() {
            let complete: HashMap<&str, bool> = modules
                .iter()
                .map(|module| (module.module_id.as_str(), module.completed))
                .collect();
            next_activity_id = rule
                .modules
                .iter()
                .zip(&modules)
                .find_map(|(rule_module, view)| {
                    let unlocked = rule_module
                        .prerequisite_module_ids
                        .iter()
                        .all(|id| complete.get(id.as_str()).copied().unwrap_or(true));
                    if !unlocked || view.completed {
                        return None;
                    }
                    view.activities
                        .iter()
                        .find(|activity| {
                            activity.required && activity.state != ActivityState::Completed
                        })
                        .map(|activity| activity.activity_id.clone())
                });
        }
        let completed = modules
            .iter()
            .filter(|module| module.required)
            .all(|module| module.completed);
        all_done += done;
        all_total += total;
        courses.push(CourseView {
            course_version_id: version_id.clone(),
            completed,
            percent_complete: percent(done, total),
            modules,
        });
    }
    let completed = !courses.is_empty() && courses.iter().all(|course| course.completed);
    ProgressView {
        percent_complete: percent(all_done, all_total),
        completed,
        completed_time: if completed {
            completed_time.or(last_event_time)
        } else {
            None
        },
        next_activity_id,
        event_count,
        last_event_time,
        courses,
    }
}

/// Returns the rule of `activity_id` among the pinned `rules`, if the activity belongs to them.
pub fn find_activity<'r>(
    rules: &[(String, &'r CompletionRule)],
    activity_id: &str,
) -> Option<&'r ActivityRule> {
    rules
        .iter()
        .flat_map(|(_, rule)| rule.modules.iter())
        .flat_map(|module| module.activities.iter())
        .find(|activity| activity.activity_id == activity_id)
}

/// What an xAPI statement is made of: a logged event and its learner.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementParts<'a> {
    /// The event id (becomes the statement id).
    pub event_id: &'a str,
    /// The enrolment (the statement's context registration).
    pub enrollment_id: &'a str,
    /// The learner (the actor's account name).
    pub person_id: &'a str,
    /// The activity (the object).
    pub activity_id: &'a str,
    /// The facts.
    pub facts: &'a EventFacts,
    /// When the LMS recorded it (`stored`).
    pub recorded_time: DateTime<Utc>,
    /// Evidence URI, if any.
    pub evidence_uri: Option<&'a str>,
    /// Provenance note of an import, if any.
    pub provenance_note: Option<&'a str>,
    /// Who signed a SUPERVISOR event off (the recording caller), if it is one.
    pub signed_by: Option<&'a str>,
}

/// Returns the xAPI 1.0.3 statement of an event; identifiers are IRIs under `iri_base`. A
/// supervisor's sign-off names its signer as the context's `instructor`.
pub fn xapi_statement(parts: &StatementParts<'_>, iri_base: &str) -> serde_json::Value {
    let facts = parts.facts;
    let verb = facts.verb.as_str().to_lowercase();
    let mut result = serde_json::Map::new();
    if let Some(score) = facts.score {
        result.insert(
            "score".to_owned(),
            serde_json::json!({"scaled": f64::from(score) / 100.0, "raw": score, "min": 0, "max": 100}),
        );
    }
    match facts.verb {
        Verb::Passed => {
            result.insert("success".to_owned(), true.into());
        }
        Verb::Failed => {
            result.insert("success".to_owned(), false.into());
        }
        _ => {}
    }
    if matches!(facts.verb, Verb::Completed | Verb::Passed | Verb::Attended) {
        result.insert("completion".to_owned(), true.into());
    }
    result.insert(
        "duration".to_owned(),
        format!("PT{}S", facts.duration_seconds).into(),
    );
    let mut extensions = serde_json::Map::new();
    extensions.insert(
        format!("{iri_base}/xapi/extensions/source"),
        facts.source.as_str().into(),
    );
    if let Some(uri) = parts.evidence_uri {
        extensions.insert(format!("{iri_base}/xapi/extensions/evidence"), uri.into());
    }
    if let Some(note) = parts.provenance_note {
        extensions.insert(
            format!("{iri_base}/xapi/extensions/provenance"),
            note.into(),
        );
    }
    let mut context = serde_json::json!({
        "registration": parts.enrollment_id,
        "platform": "lms",
        "extensions": extensions,
    });
    if let Some(signer) = parts.signed_by {
        context["instructor"] = serde_json::json!({
            "objectType": "Agent",
            "account": { "homePage": iri_base, "name": signer },
        });
    }
    serde_json::json!({
        "id": parts.event_id,
        "version": "1.0.3",
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": iri_base, "name": parts.person_id},
        },
        "verb": {
            "id": facts.verb.xapi_iri(),
            "display": {"en-US": verb},
        },
        "object": {
            "objectType": "Activity",
            "id": format!("{iri_base}/activities/{}", parts.activity_id),
        },
        "result": result,
        "context": context,
        "timestamp": facts.occurred_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "stored": parts.recorded_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::course::ModuleRule;

    fn activity(id: &str, kind: ActivityKind, pass: Option<i32>, sign_off: bool) -> ActivityRule {
        ActivityRule {
            activity_id: id.to_owned(),
            required: true,
            kind,
            pass_score: pass,
            requires_sign_off: sign_off,
        }
    }

    fn rule() -> CompletionRule {
        CompletionRule {
            modules: vec![
                ModuleRule {
                    module_id: "m1".to_owned(),
                    required: true,
                    prerequisite_module_ids: Vec::new(),
                    activities: vec![
                        activity("lecture", ActivityKind::Lecture, None, false),
                        activity("exam", ActivityKind::Assessment, Some(70), false),
                    ],
                },
                ModuleRule {
                    module_id: "m2".to_owned(),
                    required: true,
                    prerequisite_module_ids: vec!["m1".to_owned()],
                    activities: vec![activity(
                        "attachment",
                        ActivityKind::IndustryAttachment,
                        None,
                        true,
                    )],
                },
            ],
        }
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + minutes * 60, 0).unwrap()
    }

    fn facts(verb: Verb, score: Option<i32>, source: Source, minute: i64) -> EventFacts {
        EventFacts {
            verb,
            score,
            duration_seconds: 60,
            occurred_time: at(minute),
            source,
        }
    }

    fn fold_all(events: &[(String, EventFacts)]) -> HashMap<String, ActivityTally> {
        let rule = rule();
        let pinned = [("v".to_owned(), &rule)];
        let mut tallies: HashMap<String, ActivityTally> = HashMap::new();
        for (activity_id, facts) in events {
            let activity = find_activity(&pinned, activity_id).unwrap();
            tallies
                .entry(activity_id.clone())
                .or_default()
                .fold(activity, facts);
        }
        tallies
    }

    #[test]
    fn a_failed_attempt_after_a_pass_does_not_undo_it() {
        let tallies = fold_all(&[
            (
                "exam".to_owned(),
                facts(Verb::Failed, Some(40), Source::App, 1),
            ),
            (
                "exam".to_owned(),
                facts(Verb::Passed, Some(80), Source::App, 2),
            ),
            (
                "exam".to_owned(),
                facts(Verb::Failed, Some(30), Source::App, 3),
            ),
        ]);
        let exam = &tallies["exam"];
        assert_eq!(exam.state(), ActivityState::Completed);
        assert_eq!((exam.best_score, exam.attempts), (Some(80), 3));
        assert_eq!(exam.completed_time, Some(at(2)));
    }

    #[test]
    fn an_attachment_needs_a_supervisor_sign_off() {
        let tallies = fold_all(&[(
            "attachment".to_owned(),
            facts(Verb::Completed, None, Source::App, 1),
        )]);
        assert_eq!(tallies["attachment"].state(), ActivityState::InProgress);
        let tallies = fold_all(&[(
            "attachment".to_owned(),
            facts(Verb::Completed, None, Source::Supervisor, 1),
        )]);
        assert_eq!(tallies["attachment"].state(), ActivityState::Completed);
    }

    #[test]
    fn the_course_completes_when_every_required_module_does_and_next_follows_prerequisites() {
        let rule = rule();
        let pinned = [("v".to_owned(), &rule)];
        let mut events = vec![(
            "lecture".to_owned(),
            facts(Verb::Attended, None, Source::Trainer, 1),
        )];
        let view = derive(&pinned, &fold_all(&events));
        assert_eq!(view.next_activity_id.as_deref(), Some("exam"));
        assert_eq!(view.percent_complete, 33.33);
        events.push((
            "exam".to_owned(),
            facts(Verb::Passed, Some(90), Source::App, 5),
        ));
        events.push((
            "attachment".to_owned(),
            facts(Verb::Completed, None, Source::Supervisor, 9),
        ));
        let view = derive(&pinned, &fold_all(&events));
        assert!(view.completed);
        assert_eq!(view.percent_complete, 100.0);
        assert_eq!(view.completed_time, Some(at(9)));
        assert_eq!(view.next_activity_id, None);
    }

    #[test]
    fn scores_must_make_sense_for_the_kind() {
        let rule = rule();
        let lecture = &rule.modules[0].activities[0];
        let exam = &rule.modules[0].activities[1];
        assert_eq!(
            check_against_rule(&facts(Verb::Completed, Some(50), Source::App, 0), lecture)
                .unwrap_err()
                .0,
            "score"
        );
        assert_eq!(
            check_against_rule(&facts(Verb::Passed, None, Source::App, 0), exam)
                .unwrap_err()
                .0,
            "score"
        );
        assert_eq!(
            check_against_rule(&facts(Verb::Passed, Some(60), Source::App, 0), exam)
                .unwrap_err()
                .0,
            "score"
        );
        assert!(check_against_rule(&facts(Verb::Failed, Some(60), Source::App, 0), exam).is_ok());
    }

    fn arbitrary_event() -> impl Strategy<Value = (String, EventFacts)> {
        let activity = prop_oneof![Just("lecture"), Just("exam"), Just("attachment")];
        let verb = prop_oneof![
            Just(Verb::Started),
            Just(Verb::Attended),
            Just(Verb::Progressed),
            Just(Verb::Completed),
            Just(Verb::Passed),
            Just(Verb::Failed)
        ];
        let source = prop_oneof![
            Just(Source::App),
            Just(Source::Trainer),
            Just(Source::Supervisor)
        ];
        (activity, verb, 0i32..=100, source, 0i64..1000).prop_filter_map(
            "valid for the kind",
            |(activity, verb, score, source, minute)| {
                let rule = rule();
                let pinned = [("v".to_owned(), &rule)];
                let activity_rule = find_activity(&pinned, activity)?;
                let score = (activity == "exam"
                    && matches!(verb, Verb::Passed | Verb::Failed | Verb::Completed))
                .then_some(score);
                let facts = facts(verb, score, source, minute);
                check_against_rule(&facts, activity_rule).ok()?;
                Some((activity.to_owned(), facts))
            },
        )
    }

    proptest! {
        #[test]
        fn any_order_gives_the_same_progress(events in proptest::collection::vec(arbitrary_event(), 0..40), seed in any::<u64>()) {
            let rule = rule();
            let pinned = [("v".to_owned(), &rule)];
            let mut shuffled = events.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for index in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(index, (state % (index as u64 + 1)) as usize);
            }
            let in_order = derive(&pinned, &fold_all(&events));
            let reordered = derive(&pinned, &fold_all(&shuffled));
            prop_assert_eq!(&in_order, &reordered);
            // Completion never goes backwards: every prefix completes no more than the whole.
            for end in 0..events.len() {
                let prefix = derive(&pinned, &fold_all(&events[..end]));
                prop_assert!(prefix.percent_complete <= in_order.percent_complete);
                prop_assert!(!prefix.completed || in_order.completed);
            }
        }
    }
}
