//! Train-the-trainer rules: certification tracks, the candidacy state machine (a pure function of
//! state, event and evidence), certificate status by time, verification codes and the injectable clock.

pub mod credential;
pub mod document;

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Duration, Months, Utc};

use crate::error::{Error, Reason, Result, Violations};

/// Days a candidacy has by default.
pub const DEFAULT_CANDIDACY_DAYS: i32 = 90;
/// Longest candidacy a track may allow.
pub const MAX_CANDIDACY_DAYS: i32 = 730;
/// Longest certificate validity.
pub const MAX_VALIDITY_MONTHS: i32 = 120;
/// Most supervised deliveries a track may require.
pub const MAX_SUPERVISED_DELIVERIES: i32 = 50;
/// Longest reason of a transition.
pub const MAX_REASON_CHARS: usize = 2000;
/// Size of a status list in entries (the W3C minimum of 131,072 bits, 16 KB).
pub const STATUS_LIST_SIZE: i32 = 131_072;

/// The time every certification and delivery decision is taken at; tests move it forward.
///
/// It is the system clock plus an offset shared by every clone, so a test that holds a clone of
/// the server's clock can make certificates expire without waiting.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// Returns the current time of this clock, truncated to microseconds.
    pub fn now(&self) -> DateTime<Utc> {
        crate::domain::now() + Duration::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_micros
            .fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

use super::stored_enum;

stored_enum!(
    /// Level of a track.
    TrackLevel {
        /// A vendor's master trainer.
        MasterTrainer => "MASTER_TRAINER",
        /// A trainer.
        Trainer => "TRAINER",
        /// An ambassador.
        Ambassador => "AMBASSADOR",
    }
);

stored_enum!(
    /// Where a holder may train.
    TrackScope {
        /// Any cohort.
        Any => "ANY",
        /// Only learners of the holder's organisation subtree.
        OwnOrganization => "OWN_ORGANIZATION",
    }
);

stored_enum!(
    /// State of a candidacy.
    CandidacyState {
        /// Opened.
        Candidate => "CANDIDATE",
        /// Taking the trainer course.
        Training => "TRAINING",
        /// Co-delivering under certified leads.
        SupervisedPractice => "SUPERVISED_PRACTICE",
        /// Waiting for an assessor.
        AwaitingAssessment => "AWAITING_ASSESSMENT",
        /// Certified.
        Certified => "CERTIFIED",
        /// Certificate suspended.
        Suspended => "SUSPENDED",
        /// Certificate expired (derived from the clock, never stored).
        Expired => "EXPIRED",
        /// Revoked.
        Revoked => "REVOKED",
        /// Withdrawn.
        Withdrawn => "WITHDRAWN",
        /// Unfinished past its deadline (derived from the clock, never stored).
        Lapsed => "LAPSED",
        /// Its certificate was renewed by a renewal candidacy, which holds the new one (terminal).
        Renewed => "RENEWED",
    }
);

stored_enum!(
    /// Stored status of a certificate (EXPIRED is derived from the clock).
    CertificateStatus {
        /// Valid until it expires.
        Active => "ACTIVE",
        /// Suspended.
        Suspended => "SUSPENDED",
        /// Revoked.
        Revoked => "REVOKED",
        /// Past its expiry time (derived, never stored).
        Expired => "EXPIRED",
        /// Replaced by a renewal.
        Superseded => "SUPERSEDED",
    }
);

stored_enum!(
    /// Outcome of a supervised delivery.
    SupervisedOutcome {
        /// Counts towards the requirement.
        Passed => "PASSED",
        /// Does not count.
        NeedsImprovement => "NEEDS_IMPROVEMENT",
    }
);

impl CandidacyState {
    /// Returns true for states before certification (which lapse at the deadline).
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            Self::Candidate | Self::Training | Self::SupervisedPractice | Self::AwaitingAssessment
        )
    }
}

/// What a candidate must do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    /// Course versions to complete.
    pub trainer_course_version_ids: Vec<String>,
    /// Lowest passing score; 0 means none is needed.
    pub min_assessment_score: i32,
    /// Supervised deliveries signed off as PASSED.
    pub supervised_deliveries_required: i32,
    /// Whether an assessor must approve.
    pub assessor_approval_required: bool,
}

/// A certification track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// UUIDv7.
    pub id: String,
    /// Unique code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: TrackLevel,
    /// Courses whose modules it qualifies for.
    pub qualifies_course_ids: Vec<String>,
    /// Modules it qualifies for.
    pub qualifies_module_ids: Vec<String>,
    /// Requirements.
    pub requirements: Requirements,
    /// Months a certificate is valid.
    pub validity_months: i32,
    /// Where holders may train.
    pub scope: TrackScope,
    /// Issuing organisation.
    pub issuer_organization_id: String,
    /// Days a candidacy has.
    pub candidacy_days: i32,
    /// People who assess the track's candidacies and act on its certificates (filled by the
    /// store's track reads; empty where a track is loaded for its rules only).
    pub assessor_ids: Vec<String>,
    /// Revision.
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Changed.
    pub update_time: DateTime<Utc>,
}

impl Track {
    /// Returns true when a certificate of this track qualifies its holder for `module_id` of `course_id`.
    pub fn qualifies_for(&self, module_id: &str, course_id: &str) -> bool {
        self.qualifies_module_ids.iter().any(|id| id == module_id)
            || self.qualifies_course_ids.iter().any(|id| id == course_id)
    }
}

/// A track as sent, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawTrack {
    /// Code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Level, if known.
    pub level: Option<TrackLevel>,
    /// Courses.
    pub qualifies_course_ids: Vec<String>,
    /// Modules.
    pub qualifies_module_ids: Vec<String>,
    /// Requirements.
    pub requirements: Requirements,
    /// Validity.
    pub validity_months: i32,
    /// Scope, if set.
    pub scope: Option<TrackScope>,
    /// Issuer.
    pub issuer_organization_id: String,
    /// Candidacy days (0 = default).
    pub candidacy_days: i32,
    /// Assessors' person ids.
    pub assessor_ids: Vec<String>,
}

/// Most assessors on one track.
pub const MAX_TRACK_ASSESSORS: usize = 100;

/// Checks a track's assessor ids (at most [`MAX_TRACK_ASSESSORS`] distinct person ids) under
/// `field`; returns them sorted.
pub fn validate_assessor_ids(field: &str, ids: &[String]) -> Result<Vec<String>> {
    let mut violations = Violations::new();
    check_ids(&mut violations, field, ids);
    violations.into_result(())?;
    let mut sorted = ids.to_vec();
    sorted.sort();
    Ok(sorted)
}

fn check_ids(violations: &mut Violations, field: &str, ids: &[String]) {
    for (index, id) in ids.iter().enumerate() {
        if !crate::domain::is_uuid(id) {
            violations.add(format!("{field}[{index}]"), "must be a UUID");
        }
    }
    let mut sorted = ids.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != ids.len() {
        violations.add(field, "must not repeat an id");
    }
    if ids.len() > 100 {
        violations.add(field, "may hold at most 100 ids");
    }
}

impl RawTrack {
    /// Validates the track, naming fields under `prefix` (`track`); returns it ready to store.
    pub fn validate(self, prefix: &str, now: DateTime<Utc>) -> Result<Track> {
        let mut violations = Violations::new();
        let code = self.code.trim().to_owned();
        if code.is_empty()
            || code.len() > 32
            || !code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            violations.add(
                format!("{prefix}.code"),
                "must be 1 to 32 characters of A-Z, 0-9, '-' and '_'",
            );
        }
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            violations.add(format!("{prefix}.title"), "must be 1 to 200 characters");
        }
        if self.level.is_none() {
            violations.add(
                format!("{prefix}.level"),
                "is required (one of the TrackLevel values)",
            );
        }
        check_ids(
            &mut violations,
            &format!("{prefix}.qualifies_course_ids"),
            &self.qualifies_course_ids,
        );
        check_ids(
            &mut violations,
            &format!("{prefix}.qualifies_module_ids"),
            &self.qualifies_module_ids,
        );
        if self.qualifies_course_ids.is_empty() && self.qualifies_module_ids.is_empty() {
            violations.add(
                format!("{prefix}.qualifies_module_ids"),
                "a track must qualify for at least one course or module",
            );
        }
        let requirements = &self.requirements;
        check_ids(
            &mut violations,
            &format!("{prefix}.requirements.trainer_course_version_ids"),
            &requirements.trainer_course_version_ids,
        );
        if !(0..=100).contains(&requirements.min_assessment_score) {
            violations.add(
                format!("{prefix}.requirements.min_assessment_score"),
                "must be 0 to 100",
            );
        }
        if !(0..=MAX_SUPERVISED_DELIVERIES).contains(&requirements.supervised_deliveries_required) {
            violations.add(
                format!("{prefix}.requirements.supervised_deliveries_required"),
                format!("must be 0 to {MAX_SUPERVISED_DELIVERIES}"),
            );
        }
        if !(1..=MAX_VALIDITY_MONTHS).contains(&self.validity_months) {
            violations.add(
                format!("{prefix}.validity_months"),
                format!("must be 1 to {MAX_VALIDITY_MONTHS}"),
            );
        }
        if !crate::domain::is_uuid(&self.issuer_organization_id) {
            violations.add(
                format!("{prefix}.issuer_organization_id"),
                "is required (an organisation id)",
            );
        }
        let candidacy_days = match self.candidacy_days {
            0 => DEFAULT_CANDIDACY_DAYS,
            days => days,
        };
        check_ids(
            &mut violations,
            &format!("{prefix}.assessor_ids"),
            &self.assessor_ids,
        );
        if !(1..=MAX_CANDIDACY_DAYS).contains(&candidacy_days) {
            violations.add(
                format!("{prefix}.candidacy_days"),
                format!("must be 0 (90) to {MAX_CANDIDACY_DAYS}"),
            );
        }
        violations.into_result(())?;
        Ok(Track {
            id: crate::domain::new_id(),
            code,
            title,
            level: self.level.unwrap_or(TrackLevel::Trainer),
            qualifies_course_ids: self.qualifies_course_ids,
            qualifies_module_ids: self.qualifies_module_ids,
            requirements: self.requirements,
            validity_months: self.validity_months,
            scope: self.scope.unwrap_or(TrackScope::Any),
            issuer_organization_id: self.issuer_organization_id,
            candidacy_days,
            assessor_ids: {
                let mut sorted = self.assessor_ids;
                sorted.sort();
                sorted
            },
            revision: 1,
            create_time: now,
            update_time: now,
        })
    }
}

/// What is known about a candidate when a transition is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evidence {
    /// Every trainer course version is completed.
    pub training_complete: bool,
    /// Supervised deliveries signed off as PASSED by certified leads.
    pub passed_supervised_deliveries: i32,
    /// Recorded assessment score.
    pub assessment_score: Option<i32>,
    /// Whether an assessor approved.
    pub assessor_approved: bool,
}

/// A candidacy transition asked for by an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidacyEvent {
    /// CANDIDATE -> TRAINING.
    StartTraining,
    /// TRAINING -> SUPERVISED_PRACTICE.
    BeginSupervisedPractice,
    /// SUPERVISED_PRACTICE -> AWAITING_ASSESSMENT.
    SubmitForAssessment,
    /// An assessor's score and decision (state unchanged).
    RecordAssessment,
    /// AWAITING_ASSESSMENT -> CERTIFIED (issues the certificate).
    Certify,
    /// CERTIFIED -> SUSPENDED.
    Suspend,
    /// SUSPENDED -> CERTIFIED.
    Reinstate,
    /// CERTIFIED or EXPIRED -> CERTIFIED (a new cycle).
    Renew,
    /// -> WITHDRAWN.
    Withdraw,
    /// -> REVOKED.
    Revoke,
    /// A later deadline for an unfinished candidacy (state unchanged).
    ExtendDeadline,
}

impl CandidacyEvent {
    /// Every event.
    pub const ALL: [Self; 11] = [
        Self::StartTraining,
        Self::BeginSupervisedPractice,
        Self::SubmitForAssessment,
        Self::RecordAssessment,
        Self::Certify,
        Self::Suspend,
        Self::Reinstate,
        Self::Renew,
        Self::Withdraw,
        Self::Revoke,
        Self::ExtendDeadline,
    ];
}

/// Why a transition is refused: a stable reason naming the missing requirement, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// UPPER_SNAKE_CASE reason.
    pub reason: Reason,
    /// Explanation.
    pub message: String,
}

impl Refusal {
    /// Returns the FAILED_PRECONDITION error of this refusal about `subject`.
    pub fn into_error(self, subject: String) -> Error {
        Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: self.reason,
            subject,
            message: self.message,
        }
    }
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// Returns the first requirement `evidence` misses for certification, if any.
pub fn missing_requirement(requirements: &Requirements, evidence: &Evidence) -> Option<Refusal> {
    if !evidence.training_complete {
        return Some(refuse(
            Reason::TrainingNotCompleted,
            "the candidate has not completed every trainer course version of the track",
        ));
    }
    if evidence.passed_supervised_deliveries < requirements.supervised_deliveries_required {
        return Some(refuse(
            Reason::SupervisedDeliveriesMissing,
            format!(
                "the track requires {} supervised deliveries signed off as PASSED; the candidate has {}",
                requirements.supervised_deliveries_required, evidence.passed_supervised_deliveries
            ),
        ));
    }
    if requirements.min_assessment_score > 0 {
        match evidence.assessment_score {
            None => {
                return Some(refuse(
                    Reason::AssessmentMissing,
                    "no assessment score has been recorded",
                ));
            }
            Some(score) if score < requirements.min_assessment_score => {
                return Some(refuse(
                    Reason::AssessmentScoreTooLow,
                    format!(
                        "the assessment score {score} is below the track's minimum {}",
                        requirements.min_assessment_score
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if requirements.assessor_approval_required && !evidence.assessor_approved {
        return Some(refuse(
            Reason::AssessorApprovalMissing,
            "the track requires an assessor's approval",
        ));
    }
    None
}

/// Returns the state `event` moves a candidacy in (effective) `state` to, or why it may not.
///
/// Pure: the caller computes `evidence` from progress, supervised deliveries and assessments, and
/// passes the effective state (see [`effective_candidacy_state`]), so a lapsed candidacy or an
/// expired certification is judged as such.
pub fn transition(
    state: CandidacyState,
    event: CandidacyEvent,
    requirements: &Requirements,
    evidence: &Evidence,
) -> std::result::Result<CandidacyState, Refusal> {
    use CandidacyEvent as E;
    use CandidacyState as S;
    if state == S::Lapsed && !matches!(event, E::Revoke | E::ExtendDeadline) {
        return Err(refuse(
            Reason::CandidacyLapsed,
            "the candidacy passed its deadline unfinished; an assessor may extend the deadline",
        ));
    }
    let invalid = || {
        Err(refuse(
            Reason::InvalidTransition,
            format!(
                "a candidacy in state {} cannot take this step",
                state.as_str()
            ),
        ))
    };
    match (event, state) {
        (E::StartTraining, S::Candidate) => Ok(S::Training),
        (E::BeginSupervisedPractice, S::Training) => {
            if evidence.training_complete {
                Ok(S::SupervisedPractice)
            } else {
                Err(refuse(
                    Reason::TrainingNotCompleted,
                    "the candidate has not completed every trainer course version of the track",
                ))
            }
        }
        (E::SubmitForAssessment, S::SupervisedPractice) => {
            if !evidence.training_complete {
                return Err(refuse(
                    Reason::TrainingNotCompleted,
                    "the candidate has not completed every trainer course version of the track",
                ));
            }
            if evidence.passed_supervised_deliveries < requirements.supervised_deliveries_required {
                return Err(refuse(
                    Reason::SupervisedDeliveriesMissing,
                    format!(
                        "the track requires {} supervised deliveries signed off as PASSED; the candidate has {}",
                        requirements.supervised_deliveries_required,
                        evidence.passed_supervised_deliveries
                    ),
                ));
            }
            Ok(S::AwaitingAssessment)
        }
        (E::RecordAssessment, S::AwaitingAssessment) => Ok(S::AwaitingAssessment),
        (E::Certify, S::AwaitingAssessment) => match missing_requirement(requirements, evidence) {
            Some(refusal) => Err(refusal),
            None => Ok(S::Certified),
        },
        (E::Suspend, S::Certified) => Ok(S::Suspended),
        (E::Reinstate, S::Suspended) => Ok(S::Certified),
        (E::Renew, S::Certified | S::Expired) => Ok(S::Certified),
        (E::Withdraw | E::Revoke, S::Renewed) => invalid(),
        (E::Withdraw, S::Revoked | S::Withdrawn) => invalid(),
        (E::Withdraw, _) => Ok(S::Withdrawn),
        (E::Revoke, S::Revoked | S::Withdrawn) => invalid(),
        (E::Revoke, _) => Ok(S::Revoked),
        (E::ExtendDeadline, state) if state.is_unfinished() || state == S::Lapsed => Ok(state),
        _ => invalid(),
    }
}

/// Candidacies a batch call (`BatchCreateCandidacies`, `BatchAdvanceCandidacies`) takes at most.
pub const MAX_BATCH_CANDIDACIES: usize = 1000;

impl CandidacyEvent {
    /// Returns the state a batch step moves a candidacy to, for the steps a batch may take
    /// (START_TRAINING, BEGIN_SUPERVISED_PRACTICE, SUBMIT_FOR_ASSESSMENT); `None` for the others.
    pub fn batch_target(self) -> Option<CandidacyState> {
        match self {
            Self::StartTraining => Some(CandidacyState::Training),
            Self::BeginSupervisedPractice => Some(CandidacyState::SupervisedPractice),
            Self::SubmitForAssessment => Some(CandidacyState::AwaitingAssessment),
            _ => None,
        }
    }
}

/// Returns the deadline of a renewal candidacy opened at `now` for a certificate expiring at
/// `expires`: the expiry (the holder renews while still certified), or `candidacy_days` from now
/// when that is later (a certificate already close to its expiry when the renewal opens).
pub fn renewal_deadline(
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
    candidacy_days: i32,
) -> DateTime<Utc> {
    expires.max(now + Duration::days(i64::from(candidacy_days)))
}

/// Returns the state a stored candidacy is in at `now`: unfinished past the deadline is LAPSED,
/// certified with an expired certificate is EXPIRED.
pub fn effective_candidacy_state(
    stored: CandidacyState,
    deadline: DateTime<Utc>,
    certificate_expires: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> CandidacyState {
    if stored.is_unfinished() && now > deadline {
        return CandidacyState::Lapsed;
    }
    if stored == CandidacyState::Certified && certificate_expires.is_some_and(|time| now >= time) {
        return CandidacyState::Expired;
    }
    stored
}

/// Returns the status a certificate stored as `stored` has at `now`.
pub fn certificate_status_at(
    stored: CertificateStatus,
    expires_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CertificateStatus {
    if stored == CertificateStatus::Active && now >= expires_time {
        CertificateStatus::Expired
    } else {
        stored
    }
}

/// Returns when a certificate issued at `issued` for `months` expires.
pub fn expiry_after(issued: DateTime<Utc>, months: i32) -> DateTime<Utc> {
    issued
        .checked_add_months(Months::new(months.max(1) as u32))
        .unwrap_or(issued)
}

/// Returns true when a holder with organisation `holder_organization_id` may train learners whose
/// organisations have `learner_paths` under `scope`.
pub fn scope_covers(
    scope: TrackScope,
    holder_organization_id: &str,
    learner_paths: &[String],
) -> bool {
    match scope {
        TrackScope::Any => true,
        TrackScope::OwnOrganization => learner_paths
            .iter()
            .all(|path| crate::domain::organization::path_is_within(path, holder_organization_id)),
    }
}

/// Crockford base-32 alphabet (no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Returns a new verification code: 60 random bits as `XXXX-XXXX-XXXX` in Crockford base 32.
pub fn new_verification_code() -> String {
    let bits: u64 = rand::random::<u64>() >> 4;
    let mut code = String::with_capacity(14);
    for index in 0..12 {
        if index > 0 && index % 4 == 0 {
            code.push('-');
        }
        let digit = (bits >> (55 - 5 * index)) & 31;
        code.push(CODE_ALPHABET[digit as usize] as char);
    }
    code
}

/// Returns the canonical form of a code as typed (case, dashes, spaces and look-alikes forgiven),
/// or `None` when it cannot be one.
pub fn normalize_verification_code(typed: &str) -> Option<String> {
    let mut symbols = Vec::with_capacity(12);
    for character in typed.chars() {
        let symbol = match character.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            other if CODE_ALPHABET.contains(&(other as u8)) && other.is_ascii() => other,
            _ => return None,
        };
        symbols.push(symbol);
    }
    if symbols.len() != 12 {
        return None;
    }
    let mut code = String::with_capacity(14);
    for (index, symbol) in symbols.into_iter().enumerate() {
        if index > 0 && index % 4 == 0 {
            code.push('-');
        }
        code.push(symbol);
    }
    Some(code)
}

/// Validates a transition reason.
pub fn validate_reason(field: &str, reason: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::invalid(
            field,
            format!("is required, at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason.to_owned())
}

/// A candidacy as stored, with what the API shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidacy {
    /// UUIDv7.
    pub id: String,
    /// Track.
    pub track_id: String,
    /// Candidate.
    pub person_id: String,
    /// Stored state.
    pub state: CandidacyState,
    /// Certification cycle (0 before the first certificate).
    pub cycle: i32,
    /// Deadline of an unfinished candidacy.
    pub deadline_time: DateTime<Utc>,
    /// Recorded score.
    pub assessment_score: Option<i32>,
    /// Assessor's approval.
    pub assessor_approved: bool,
    /// Current certificate.
    pub certificate_id: Option<String>,
    /// The certificate a renewal candidacy renews.
    pub renews_certificate_id: Option<String>,
    /// Revision.
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Changed.
    pub update_time: DateTime<Utc>,
}

/// A candidacy with its derived state and history, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidacyView {
    /// The candidacy.
    pub candidacy: Candidacy,
    /// State at the time of the read.
    pub effective_state: CandidacyState,
    /// Supervised deliveries signed off as PASSED.
    pub passed_supervised_deliveries: i32,
    /// Transitions, oldest first (empty in lists).
    pub history: Vec<CandidacyTransition>,
}

/// One step of a candidacy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidacyTransition {
    /// Before.
    pub from_state: CandidacyState,
    /// After.
    pub to_state: CandidacyState,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// When.
    pub time: DateTime<Utc>,
}

/// A certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// UUIDv7.
    pub id: String,
    /// Code for verification.
    pub verification_code: String,
    /// Holder.
    pub person_id: String,
    /// Track.
    pub track_id: String,
    /// Candidacy.
    pub candidacy_id: String,
    /// Cycle.
    pub cycle: i32,
    /// Issued.
    pub issued_time: DateTime<Utc>,
    /// Expires.
    pub expires_time: DateTime<Utc>,
    /// Stored status.
    pub status: CertificateStatus,
    /// Reason of the last status change.
    pub status_reason: String,
    /// Issuer.
    pub issuer_organization_id: String,
    /// Position in the issuer's status lists.
    pub status_list_index: i32,
    /// Revision.
    pub revision: i64,
}

/// A certificate change asked for by an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateAction {
    /// A new cycle.
    Renew,
    /// Suspend.
    Suspend,
    /// Reinstate.
    Reinstate,
    /// Revoke.
    Revoke,
}

/// Returns the stored status a certificate in `status_now` takes on `action`, or why it may not.
pub fn certificate_change(
    status_now: CertificateStatus,
    action: CertificateAction,
) -> std::result::Result<CertificateStatus, Refusal> {
    use CertificateAction as A;
    use CertificateStatus as S;
    match (action, status_now) {
        (A::Renew, S::Active | S::Expired) => Ok(S::Superseded),
        (A::Suspend, S::Active) => Ok(S::Suspended),
        (A::Reinstate, S::Suspended) => Ok(S::Active),
        (A::Revoke, S::Active | S::Suspended | S::Expired) => Ok(S::Revoked),
        (_, status) => Err(refuse(
            Reason::InvalidCertificateTransition,
            format!(
                "a certificate that is {} cannot take this step",
                status.as_str()
            ),
        )),
    }
}

/// A supervised co-delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedDelivery {
    /// Session.
    pub session_id: String,
    /// Candidate.
    pub candidate_id: String,
    /// Candidacy.
    pub candidacy_id: String,
    /// Lead who signed it off.
    pub supervisor_id: String,
    /// Outcome.
    pub outcome: SupervisedOutcome,
    /// Notes.
    pub notes: String,
    /// When.
    pub record_time: DateTime<Utc>,
}

/// What a verifier learns about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The certificate.
    pub certificate: Certificate,
    /// Status at the time of the call.
    pub status: CertificateStatus,
    /// Holder's name.
    pub holder_name: String,
    /// Track.
    pub track: Track,
    /// Issuer's name.
    pub issuer_name: String,
}

/// A person in a cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeNode {
    /// Person.
    pub person_id: String,
    /// Name.
    pub full_name: String,
    /// Organisation.
    pub organization_id: String,
    /// Materialised path of the organisation (for scope checks; not sent).
    pub organization_path: String,
    /// Level below the top.
    pub depth: i32,
    /// Trainers one level up.
    pub trained_by: Vec<String>,
    /// Holds or held a certificate.
    pub certified: bool,
}

/// Counts of a cascade.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CascadeReach {
    /// Everyone below.
    pub total_people: i64,
    /// Certified trainers below.
    pub total_certified_trainers: i64,
    /// Per level: (depth, people, certified trainers).
    pub levels: Vec<(i32, i64, i64)>,
    /// Per organisation: (id, name, people, certified trainers).
    pub organizations: Vec<(String, String, i64, i64)>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn requirements() -> Requirements {
        Requirements {
            trainer_course_version_ids: vec!["v".to_owned()],
            min_assessment_score: 70,
            supervised_deliveries_required: 2,
            assessor_approval_required: true,
        }
    }

    #[test]
    fn the_happy_path_reaches_certified_only_with_every_requirement() {
        let requirements = requirements();
        let mut evidence = Evidence::default();
        let mut state = CandidacyState::Candidate;
        state = transition(
            state,
            CandidacyEvent::StartTraining,
            &requirements,
            &evidence,
        )
        .unwrap();
        let refused = transition(
            state,
            CandidacyEvent::BeginSupervisedPractice,
            &requirements,
            &evidence,
        )
        .unwrap_err();
        assert_eq!(refused.reason, Reason::TrainingNotCompleted);
        evidence.training_complete = true;
        state = transition(
            state,
            CandidacyEvent::BeginSupervisedPractice,
            &requirements,
            &evidence,
        )
        .unwrap();
        evidence.passed_supervised_deliveries = 1;
        let refused = transition(
            state,
            CandidacyEvent::SubmitForAssessment,
            &requirements,
            &evidence,
        )
        .unwrap_err();
        assert_eq!(refused.reason, Reason::SupervisedDeliveriesMissing);
        evidence.passed_supervised_deliveries = 2;
        state = transition(
            state,
            CandidacyEvent::SubmitForAssessment,
            &requirements,
            &evidence,
        )
        .unwrap();
        assert_eq!(
            transition(state, CandidacyEvent::Certify, &requirements, &evidence)
                .unwrap_err()
                .reason,
            Reason::AssessmentMissing
        );
        evidence.assessment_score = Some(69);
        assert_eq!(
            transition(state, CandidacyEvent::Certify, &requirements, &evidence)
                .unwrap_err()
                .reason,
            Reason::AssessmentScoreTooLow
        );
        evidence.assessment_score = Some(70);
        assert_eq!(
            transition(state, CandidacyEvent::Certify, &requirements, &evidence)
                .unwrap_err()
                .reason,
            Reason::AssessorApprovalMissing
        );
        evidence.assessor_approved = true;
        assert_eq!(
            transition(state, CandidacyEvent::Certify, &requirements, &evidence),
            Ok(CandidacyState::Certified)
        );
    }

    #[test]
    fn lapsed_and_expired_states_follow_the_clock() {
        let now = crate::domain::now();
        let deadline = now + Duration::days(1);
        assert_eq!(
            effective_candidacy_state(CandidacyState::Training, deadline, None, now),
            CandidacyState::Training
        );
        assert_eq!(
            effective_candidacy_state(
                CandidacyState::Training,
                deadline,
                None,
                now + Duration::days(2)
            ),
            CandidacyState::Lapsed
        );
        assert_eq!(
            effective_candidacy_state(CandidacyState::Certified, deadline, Some(now), now),
            CandidacyState::Expired
        );
        assert_eq!(
            certificate_status_at(CertificateStatus::Active, now, now - Duration::seconds(1)),
            CertificateStatus::Active
        );
        assert_eq!(
            certificate_status_at(CertificateStatus::Active, now, now),
            CertificateStatus::Expired
        );
        assert_eq!(
            certificate_status_at(CertificateStatus::Revoked, now, now + Duration::days(9)),
            CertificateStatus::Revoked
        );
    }

    #[test]
    fn the_clock_moves_for_every_clone() {
        let clock = Clock::default();
        let copy = clock.clone();
        let before = clock.now();
        copy.advance(Duration::days(400));
        assert!(clock.now() >= before + Duration::days(400));
    }

    #[test]
    fn verification_codes_are_typable_and_normalised() {
        for _ in 0..100 {
            let code = new_verification_code();
            assert_eq!(code.len(), 14);
            assert_eq!(normalize_verification_code(&code), Some(code.clone()));
            let sloppy = code.replace('-', " ").to_lowercase();
            assert_eq!(normalize_verification_code(&sloppy), Some(code));
        }
        assert_eq!(
            normalize_verification_code("oooo-iiii-llll"),
            Some("0000-1111-1111".to_owned())
        );
        assert_eq!(normalize_verification_code("ABCD-EFGH-JKM"), None);
        assert_eq!(normalize_verification_code("ABCD-EFGH-JKMU"), None);
        assert_eq!(normalize_verification_code("ÄBCD-EFGH-JKMN"), None);
    }

    #[test]
    fn a_renewal_is_due_by_the_expiry_or_its_candidacy_days_when_later() {
        let now = Utc::now();
        let far = now + Duration::days(80);
        assert_eq!(renewal_deadline(far, now, 30), far);
        assert_eq!(renewal_deadline(far, now, 90), now + Duration::days(90));
    }

    #[test]
    fn batches_take_the_three_steps_before_assessment_only() {
        let steps: Vec<(CandidacyEvent, CandidacyState)> = CandidacyEvent::ALL
            .iter()
            .filter_map(|event| event.batch_target().map(|target| (*event, target)))
            .collect();
        assert_eq!(
            steps,
            vec![
                (CandidacyEvent::StartTraining, CandidacyState::Training),
                (
                    CandidacyEvent::BeginSupervisedPractice,
                    CandidacyState::SupervisedPractice
                ),
                (
                    CandidacyEvent::SubmitForAssessment,
                    CandidacyState::AwaitingAssessment
                ),
            ]
        );
        // Each target is where the state machine takes the state before it.
        let evidence = Evidence {
            training_complete: true,
            passed_supervised_deliveries: 9,
            ..Evidence::default()
        };
        for ((event, target), from) in steps.into_iter().zip([
            CandidacyState::Candidate,
            CandidacyState::Training,
            CandidacyState::SupervisedPractice,
        ]) {
            assert_eq!(
                transition(from, event, &Requirements::default(), &evidence),
                Ok(target)
            );
        }
    }

    #[test]
    fn own_organisation_scope_needs_every_learner_inside() {
        let inside = vec!["/m/d/".to_owned(), "/m/d/u/".to_owned()];
        assert!(scope_covers(TrackScope::OwnOrganization, "d", &inside));
        let mixed = vec!["/m/d/".to_owned(), "/m/e/".to_owned()];
        assert!(!scope_covers(TrackScope::OwnOrganization, "d", &mixed));
        assert!(scope_covers(TrackScope::Any, "d", &mixed));
    }

    /// One step of a random history: an event, or a change of the evidence.
    #[derive(Debug, Clone)]
    enum Step {
        Event(CandidacyEvent),
        Train(bool),
        Supervise(i32),
        Assess(Option<i32>, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => proptest::sample::select(CandidacyEvent::ALL.to_vec()).prop_map(Step::Event),
            1 => any::<bool>().prop_map(Step::Train),
            1 => (0..4i32).prop_map(Step::Supervise),
            1 => (proptest::option::of(0..=100i32), any::<bool>()).prop_map(|(s, a)| Step::Assess(s, a)),
        ]
    }

    fn requirement_set() -> impl Strategy<Value = Requirements> {
        (0..=100i32, 0..4i32, any::<bool>()).prop_map(|(score, supervised, approval)| {
            Requirements {
                trainer_course_version_ids: vec!["v".to_owned()],
                min_assessment_score: score,
                supervised_deliveries_required: supervised,
                assessor_approval_required: approval,
            }
        })
    }

    proptest! {
        /// No sequence of calls reaches CERTIFIED (or a state only certification leads to)
        /// unless, at the moment of certification, every requirement was met.
        #[test]
        fn no_sequence_certifies_without_every_requirement(
            requirements in requirement_set(),
            steps in proptest::collection::vec(step(), 0..60),
        ) {
            let mut state = CandidacyState::Candidate;
            let mut evidence = Evidence::default();
            let mut certified_properly = false;
            for step in steps {
                match step {
                    Step::Train(done) => evidence.training_complete = done,
                    Step::Supervise(count) => evidence.passed_supervised_deliveries = count,
                    Step::Assess(score, approved) => {
                        evidence.assessment_score = score;
                        evidence.assessor_approved = approved;
                    }
                    Step::Event(event) => {
                        if let Ok(next) = transition(state, event, &requirements, &evidence) {
                            if event == CandidacyEvent::Certify {
                                prop_assert!(missing_requirement(&requirements, &evidence).is_none());
                                prop_assert!(evidence.training_complete);
                                prop_assert!(evidence.passed_supervised_deliveries >= requirements.supervised_deliveries_required);
                                if requirements.min_assessment_score > 0 {
                                    prop_assert!(evidence.assessment_score.unwrap_or(-1) >= requirements.min_assessment_score);
                                }
                                prop_assert!(!requirements.assessor_approval_required || evidence.assessor_approved);
                                certified_properly = true;
                            }
                            state = next;
                        }
                    }
                }
                if matches!(state, CandidacyState::Certified | CandidacyState::Suspended | CandidacyState::Expired) {
                    prop_assert!(certified_properly, "reached {:?} without a proper certification", state);
                }
                prop_assert!(state != CandidacyState::Lapsed && state != CandidacyState::Expired);
            }
        }

        /// Terminal states stay terminal, except that a lapsed candidacy may still be revoked or extended.
        #[test]
        fn withdrawn_and_revoked_are_terminal(event in proptest::sample::select(CandidacyEvent::ALL.to_vec())) {
            let evidence = Evidence { training_complete: true, passed_supervised_deliveries: 9, assessment_score: Some(100), assessor_approved: true };
            for terminal in [CandidacyState::Withdrawn, CandidacyState::Revoked, CandidacyState::Renewed] {
                prop_assert!(transition(terminal, event, &Requirements::default(), &evidence).is_err());
            }
            let lapsed = transition(CandidacyState::Lapsed, event, &Requirements::default(), &evidence);
            match event {
                CandidacyEvent::Revoke => prop_assert_eq!(lapsed, Ok(CandidacyState::Revoked)),
                CandidacyEvent::ExtendDeadline => prop_assert_eq!(lapsed, Ok(CandidacyState::Lapsed)),
                _ => prop_assert_eq!(lapsed.map_err(|refusal| refusal.reason), Err(Reason::CandidacyLapsed)),
            }
        }
    }
}
