//! The one error type of the service and its single mapping to `tonic::Status` with google.rpc details.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// Domain reported in every `google.rpc.ErrorInfo`.
pub const ERROR_DOMAIN: &str = "lms.v1";

/// Declares [`Reason`]: each variant with its wire text and what it means.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)*) => {
        /// Why a call was refused: the stable UPPER_SNAKE_CASE `reason` of the `google.rpc.ErrorInfo`
        /// (and the `type` of a `PreconditionFailure` violation). Code matches on the variant, never on
        /// the text; clients match on the text, which never changes once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order (for the generated reference).
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The wire text, e.g. `ENROLLMENT_NOT_ACTIVE`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }

            /// What the reason means, from its doc comment.
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }

            /// The reason whose wire text is `text`.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// The activity is not part of the enrolment's pinned course versions.
    ActivityNotInEnrollment = "ACTIVITY_NOT_IN_ENROLLMENT",
    /// Scores are visible to a judge only after the judge's own score.
    AfterOwnScore = "AFTER_OWN_SCORE",
    /// The enrolment or candidacy is already complete.
    AlreadyCompleted = "ALREADY_COMPLETED",
    /// The person already holds a place or waitlist entry in the cohort.
    AlreadyEnrolled = "ALREADY_ENROLLED",
    /// The enrolment was already withdrawn.
    AlreadyWithdrawn = "ALREADY_WITHDRAWN",
    /// The application is no longer pending.
    ApplicationNotPending = "APPLICATION_NOT_PENDING",
    /// No passing assessment is recorded for the candidacy.
    AssessmentMissing = "ASSESSMENT_MISSING",
    /// The assessment score is below the track's pass mark.
    AssessmentScoreTooLow = "ASSESSMENT_SCORE_TOO_LOW",
    /// The track requires an assessor's approval.
    AssessorApprovalMissing = "ASSESSOR_APPROVAL_MISSING",
    /// The session's attendance has not been recorded.
    AttendanceNotRecorded = "ATTENDANCE_NOT_RECORDED",
    /// The candidacy is waiting for its assessment.
    AwaitingAssessment = "AWAITING_ASSESSMENT",
    /// The selection call is still open.
    CallNotClosed = "CALL_NOT_CLOSED",
    /// The selection call is not open.
    CallNotOpen = "CALL_NOT_OPEN",
    /// More applicants accepted than the call has seats.
    CallSeatsExceeded = "CALL_SEATS_EXCEEDED",
    /// The person already has an open candidacy on the track.
    CandidacyExists = "CANDIDACY_EXISTS",
    /// The candidacy's deadline passed.
    CandidacyLapsed = "CANDIDACY_LAPSED",
    /// The participant category is archived: kept where it is, not given anew.
    CategoryArchived = "CATEGORY_ARCHIVED",
    /// No participant category has this code.
    CategoryNotFound = "CATEGORY_NOT_FOUND",
    /// The places of the person's participant category (other than public and private) are taken.
    CategorySeatsFull = "CATEGORY_SEATS_FULL",
    /// The certificate is not the current one of its holder and track.
    CertificateNotCurrent = "CERTIFICATE_NOT_CURRENT",
    /// The TLS client certificate maps to no principal.
    ClientCertificateNotMapped = "CLIENT_CERTIFICATE_NOT_MAPPED",
    /// The cohort has no free place and no waitlist.
    CohortFull = "COHORT_FULL",
    /// The cohort is not open for enrolment.
    CohortNotOpen = "COHORT_NOT_OPEN",
    /// The cohort cannot move to the requested state.
    CohortStateTransition = "COHORT_STATE_TRANSITION",
    /// A competency tag or role requirement uses a level the update would remove.
    CompetencyLevelInUse = "COMPETENCY_LEVEL_IN_USE",
    /// The holder search needs an organisation subtree the caller manages.
    CompetencySearchNotAllowed = "COMPETENCY_SEARCH_NOT_ALLOWED",
    /// Another enrolment changed the cohort at the same time.
    ConcurrentEnrolment = "CONCURRENT_ENROLMENT",
    /// Another call recorded the same event at the same time.
    ConcurrentEvent = "CONCURRENT_EVENT",
    /// Another call submitted the same survey response at the same time.
    ConcurrentSubmission = "CONCURRENT_SUBMISSION",
    /// Another replica ran the same sweep at the same time.
    ConcurrentSweep = "CONCURRENT_SWEEP",
    /// Another call upserted the same record at the same time.
    ConcurrentUpsert = "CONCURRENT_UPSERT",
    /// The judge has a conflict of interest with the applicant.
    ConflictOfInterest = "CONFLICT_OF_INTEREST",
    /// The course is archived.
    CourseArchived = "COURSE_ARCHIVED",
    /// The co-trainer is not a candidate in supervised practice on a qualifying track.
    CoTrainerNotQualified = "CO_TRAINER_NOT_QUALIFIED",
    /// The cursor is beyond the feed's head.
    CursorBeyondHead = "CURSOR_BEYOND_HEAD",
    /// The cursor's events were pruned.
    CursorExpired = "CURSOR_EXPIRED",
    /// The course already has a draft version.
    DraftExists = "DRAFT_EXISTS",
    /// The same key appears twice in one batch.
    DuplicateInBatch = "DUPLICATE_IN_BATCH",
    /// The enrolment is not enrolled or in progress.
    EnrollmentNotActive = "ENROLLMENT_NOT_ACTIVE",
    /// (Per record) the enrolment named by the event does not exist.
    EnrollmentNotFound = "ENROLLMENT_NOT_FOUND",
    /// The enrolment was refused.
    EnrolmentRefused = "ENROLMENT_REFUSED",
    /// The event id was used for a different event.
    EventIdReused = "EVENT_ID_REUSED",
    /// The cursor or resume token belongs to another feed history.
    FeedHistoryChanged = "FEED_HISTORY_CHANGED",
    /// Scores stay hidden from judges until the decisions.
    HiddenUntilDecided = "HIDDEN_UNTIL_DECIDED",
    /// The import's declared count does not match the records received.
    ImportCountMismatch = "IMPORT_COUNT_MISMATCH",
    /// The import stream ended before it was committed.
    ImportInterrupted = "IMPORT_INTERRUPTED",
    /// The import was not committed.
    ImportNotCommitted = "IMPORT_NOT_COMMITTED",
    /// The certificate cannot move to the requested status.
    InvalidCertificateTransition = "INVALID_CERTIFICATE_TRANSITION",
    /// A field value is not allowed in this state.
    InvalidField = "INVALID_FIELD",
    /// The resource cannot move to the requested state.
    InvalidTransition = "INVALID_TRANSITION",
    /// The lead trainer holds no active certificate whose track qualifies for the module.
    LeadTrainerNotCertified = "LEAD_TRAINER_NOT_CERTIFIED",
    /// The lead trainer is outside the organisations the session serves.
    LeadTrainerOutOfScope = "LEAD_TRAINER_OUT_OF_SCOPE",
    /// Only managers may do this.
    ManagersOnly = "MANAGERS_ONLY",
    /// The caller's role may not call this method.
    MethodNotAllowed = "METHOD_NOT_ALLOWED",
    /// The module is not part of the programme.
    ModuleNotInProgramme = "MODULE_NOT_IN_PROGRAMME",
    /// The call requires a nomination.
    NominationRequired = "NOMINATION_REQUIRED",
    /// The application is not assigned to the judge.
    NotAssigned = "NOT_ASSIGNED",
    /// The candidate is not a co-trainer of the session.
    NotACoTrainer = "NOT_A_CO_TRAINER",
    /// The panel has too few conflict-free judges.
    NotEnoughJudges = "NOT_ENOUGH_JUDGES",
    /// The person is not enrolled in the cohort.
    NotEnrolledInCohort = "NOT_ENROLLED_IN_COHORT",
    /// The caller is not a supervisor named on the placement.
    NotPlacementSupervisor = "NOT_PLACEMENT_SUPERVISOR",
    /// The application belongs to someone else.
    NotYourApplication = "NOT_YOUR_APPLICATION",
    /// The caller is not a judge of the panel.
    NotYourPanel = "NOT_YOUR_PANEL",
    /// The person has no candidacy in supervised practice.
    NoCandidacyInPractice = "NO_CANDIDACY_IN_PRACTICE",
    /// The change would make an organisation its own ancestor.
    OrganizationCycle = "ORGANIZATION_CYCLE",
    /// The person's organisation is not eligible for the cohort.
    OrganizationNotEligible = "ORGANIZATION_NOT_ELIGIBLE",
    /// (Per record) the organisation named by the record does not exist.
    OrganizationNotFound = "ORGANIZATION_NOT_FOUND",
    /// The resource is outside the organisations the caller may act on.
    OutsideOrganizationScope = "OUTSIDE_ORGANIZATION_SCOPE",
    /// The resource is outside the caller's scope.
    OutOfScope = "OUT_OF_SCOPE",
    /// A learner may act on their own application only.
    OwnApplicationOnly = "OWN_APPLICATION_ONLY",
    /// The caller may act on their own organisation only.
    OwnOrganization = "OWN_ORGANIZATION",
    /// The learner app may record the learner's own progress only.
    OwnRecordsFromAppOnly = "OWN_RECORDS_FROM_APP_ONLY",
    /// A learner may act on their own records only.
    OwnRecordsOnly = "OWN_RECORDS_ONLY",
    /// (Per record) the caller may not record this item, e.g. a learner recording a TRAINER event.
    PermissionDenied = "PERMISSION_DENIED",
    /// The person is deactivated.
    PersonInactive = "PERSON_INACTIVE",
    /// The person does not exist.
    PersonNotFound = "PERSON_NOT_FOUND",
    /// A supervisor sign-off needs a placement naming the supervisor.
    PlacementRequired = "PLACEMENT_REQUIRED",
    /// Places are already taken beyond the requested capacity.
    PlacesAlreadyTaken = "PLACES_ALREADY_TAKEN",
    /// The prerequisites would form a cycle.
    PrerequisiteCycle = "PREREQUISITE_CYCLE",
    /// The programme is archived.
    ProgrammeArchived = "PROGRAMME_ARCHIVED",
    /// The caller sent more calls than its rate allows.
    RateLimited = "RATE_LIMITED",
    /// The caller may not record this progress.
    RecordingNotAllowed = "RECORDING_NOT_ALLOWED",
    /// The request id was used for a different request.
    RequestIdClaimed = "REQUEST_ID_CLAIMED",
    /// The caller's role may not do this.
    RoleNotAllowed = "ROLE_NOT_ALLOWED",
    /// The judge already scored the application.
    ScoreAlreadySubmitted = "SCORE_ALREADY_SUBMITTED",
    /// The places of the person's sector are taken.
    SectorSeatsFull = "SECTOR_SEATS_FULL",
    /// The session was cancelled.
    SessionCancelled = "SESSION_CANCELLED",
    /// The session has not been delivered.
    SessionNotDelivered = "SESSION_NOT_DELIVERED",
    /// The session is not scheduled.
    SessionNotScheduled = "SESSION_NOT_SCHEDULED",
    /// The session has not started.
    SessionNotStarted = "SESSION_NOT_STARTED",
    /// The candidacy lacks the track's supervised deliveries.
    SupervisedDeliveriesMissing = "SUPERVISED_DELIVERIES_MISSING",
    /// The respondent already answered the survey.
    SurveyAlreadyAnswered = "SURVEY_ALREADY_ANSWERED",
    /// The caller may not read the survey's results.
    SurveyResultsNotAllowed = "SURVEY_RESULTS_NOT_ALLOWED",
    /// The trainer is booked for another session at the same time.
    TrainerDoubleBooked = "TRAINER_DOUBLE_BOOKED",
    /// The candidacy's training is not completed.
    TrainingNotCompleted = "TRAINING_NOT_COMPLETED",
    /// The transaction conflicted with another; retry.
    TransactionConflict = "TRANSACTION_CONFLICT",
    /// The course version is not valid for publishing.
    VersionInvalid = "VERSION_INVALID",
    /// The course version is not published.
    VersionNotPublished = "VERSION_NOT_PUBLISHED",
    /// The course version belongs to another course.
    VersionOfAnotherCourse = "VERSION_OF_ANOTHER_COURSE",
    /// The course version is already published and immutable.
    VersionPublished = "VERSION_PUBLISHED",
}

/// Stored (in idempotent answers) and sent as its wire text, so answers stored before a reason
/// became typed still read back.
impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Reason::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown refusal reason {text}")))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A request field that failed validation, named by its proto path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto path of the field, e.g. `organization.name`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Collects field violations while a request is validated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Returns an empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Returns true when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the recorded violations.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// Returns `Ok(value)` when nothing was recorded, else [`Error::InvalidArgument`].
    pub fn into_result<T>(self, value: T) -> Result<T> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Error::InvalidArgument(self))
        }
    }
}

/// Every way a call can fail, independent of transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("request contains invalid arguments")]
    InvalidArgument(Violations),
    /// A named resource does not exist (or the caller may not know it exists).
    #[error("{resource} not found")]
    NotFound {
        /// Kind of resource, e.g. `organization`.
        resource: &'static str,
        /// Id or key that was looked up.
        id: String,
    },
    /// A resource with the same unique key already exists.
    #[error("{resource} with this {field} already exists")]
    AlreadyExists {
        /// Kind of resource.
        resource: &'static str,
        /// Unique field that collided.
        field: &'static str,
        /// Value that collided.
        value: String,
        /// Id of the resource that holds the value, when known: sent in `ResourceInfo` and as
        /// `existing_id` in the `ErrorInfo` metadata, so a client can go on with it.
        existing_id: Option<String>,
    },
    /// The etag sent does not match the current resource (AIP-154).
    #[error("etag does not match the current {resource}")]
    EtagMismatch {
        /// Kind of resource.
        resource: &'static str,
        /// Id of the resource.
        id: String,
    },
    /// The system is not in a state that allows the call.
    #[error("{message}")]
    FailedPrecondition {
        /// Why.
        reason: Reason,
        /// Resource or rule the precondition is about.
        subject: String,
        /// Developer-facing explanation.
        message: String,
        /// What blocks the call: ids, codes, names and dates of the certificate, enrolment or rule,
        /// sent in the `ErrorInfo` metadata beside `subject`.
        metadata: Vec<(&'static str, String)>,
    },
    /// A client-streamed operation did not finish cleanly; what was applied is in the metadata.
    #[error("{message}")]
    Aborted {
        /// Why.
        reason: Reason,
        /// Developer-facing explanation.
        message: String,
        /// Dynamic values of the failure.
        metadata: Vec<(&'static str, String)>,
    },
    /// The call carries no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed to do this.
    #[error("{message}")]
    PermissionDenied {
        /// Why.
        reason: Reason,
        /// Developer-facing explanation.
        message: String,
    },
    /// The server is overloaded or a limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The database could not write to its storage; nothing of the call was written.
    #[error("{message}")]
    Storage {
        /// True when the storage is full (disk, quota, file size limit): RESOURCE_EXHAUSTED;
        /// otherwise an I/O failure: UNAVAILABLE.
        full: bool,
        /// Developer-facing explanation.
        message: String,
    },
    /// A dependency (the database) is briefly unavailable; retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Characters of any one input value (an id, a field path, a key) an answer echoes at most.
const ECHO_CHARS: usize = 128;
/// Characters of an answer's message at most.
const MESSAGE_CHARS: usize = 1024;

/// Returns `text`, or its first `limit` characters and an ellipsis: an answer never echoes an
/// input without bound (a 1 MB field path would otherwise come back as a 1 MB trailer, which
/// clients refuse with "metadata size exceeds limit" instead of showing the real error).
fn clip(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Result with the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Returns an [`Error::InvalidArgument`] with a single violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::new();
        violations.add(field, description);
        Self::InvalidArgument(violations)
    }

    /// Returns an [`Error::NotFound`] for `resource` named `id`.
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// Returns an [`Error::PermissionDenied`] with reason `reason`.
    pub fn permission_denied(reason: Reason, message: impl Into<String>) -> Self {
        Self::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    /// Returns an [`Error::FailedPrecondition`] about `subject`, with no metadata yet.
    pub fn precondition(
        reason: Reason,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition {
            reason,
            subject: subject.into(),
            message: message.into(),
            metadata: Vec::new(),
        }
    }

    /// Adds `key` = `value` to the metadata of a refusal that carries metadata
    /// ([`Error::FailedPrecondition`], [`Error::Aborted`]); other errors are returned unchanged.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        if let Self::FailedPrecondition { metadata, .. } | Self::Aborted { metadata, .. } =
            &mut self
        {
            metadata.push((key, value.into()));
        }
        self
    }

    /// The typed reason of a refusal, when it has one.
    pub fn typed_reason(&self) -> Option<Reason> {
        match self {
            Self::FailedPrecondition { reason, .. }
            | Self::Aborted { reason, .. }
            | Self::PermissionDenied { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// Returns an [`Error::Internal`] wrapping `cause`.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{cause}"))
    }

    /// Returns the stable reason reported in `ErrorInfo`.
    pub fn reason(&self) -> String {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT".to_owned(),
            Self::NotFound { resource, .. } => format!("{}_NOT_FOUND", resource.to_uppercase()),
            Self::AlreadyExists { resource, .. } => {
                format!("{}_ALREADY_EXISTS", resource.to_uppercase())
            }
            Self::EtagMismatch { .. } => "ETAG_MISMATCH".to_owned(),
            Self::FailedPrecondition { reason, .. }
            | Self::Aborted { reason, .. }
            | Self::PermissionDenied { reason, .. } => reason.as_str().to_owned(),
            Self::Unauthenticated(_) => "UNAUTHENTICATED".to_owned(),
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED".to_owned(),
            Self::Storage { full: true, .. } => "STORAGE_FULL".to_owned(),
            Self::Storage { full: false, .. } => "STORAGE_ERROR".to_owned(),
            Self::Unavailable(_) => "UNAVAILABLE".to_owned(),
            Self::Internal(_) => "INTERNAL".to_owned(),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let reason = error.reason();
        let mut details = ErrorDetails::new();
        let (code, message, metadata): (Code, String, Vec<(String, String)>) = match &error {
            Error::InvalidArgument(violations) => {
                for violation in violations.as_slice() {
                    details.add_bad_request_violation(
                        clip(&violation.field, ECHO_CHARS),
                        clip(&violation.description, MESSAGE_CHARS),
                    );
                }
                let fields: Vec<String> = violations
                    .as_slice()
                    .iter()
                    .map(|v| clip(&v.field, ECHO_CHARS))
                    .collect();
                let message = match violations.as_slice() {
                    [only] => format!("invalid {}: {}", only.field, only.description),
                    _ => format!("invalid fields: {}", fields.join(", ")),
                };
                (
                    Code::InvalidArgument,
                    message,
                    vec![("fields".into(), fields.join(","))],
                )
            }
            Error::NotFound { resource, id } => {
                let id = &clip(id, ECHO_CHARS);
                details.set_resource_info(*resource, id.clone(), "", "not found");
                (
                    Code::NotFound,
                    format!("{resource} {id} not found"),
                    vec![
                        ("resource".into(), (*resource).into()),
                        ("id".into(), id.clone()),
                    ],
                )
            }
            Error::AlreadyExists {
                resource,
                field,
                value,
                existing_id,
            } => {
                let value = &clip(value, ECHO_CHARS);
                let mut metadata = vec![
                    ("field".into(), (*field).into()),
                    ("value".into(), value.clone()),
                ];
                let message = match existing_id {
                    Some(id) => {
                        details.set_resource_info(
                            *resource,
                            id.clone(),
                            "",
                            format!("already exists with {field} {value}"),
                        );
                        metadata.push(("existing_id".into(), id.clone()));
                        format!("{resource} with {field} {value} already exists: {id}")
                    }
                    None => {
                        details.set_resource_info(*resource, value.clone(), "", "already exists");
                        format!("{resource} with {field} {value} already exists")
                    }
                };
                (Code::AlreadyExists, message, metadata)
            }
            Error::EtagMismatch { resource, id } => {
                let id = &clip(id, ECHO_CHARS);
                details.add_precondition_failure_violation(
                    "ETAG",
                    format!("{resource}/{id}"),
                    "the etag sent is not the current one; read the resource again",
                );
                (
                    Code::Aborted,
                    format!("etag does not match the current {resource} {id}"),
                    vec![
                        ("resource".into(), (*resource).into()),
                        ("id".into(), id.clone()),
                    ],
                )
            }
            Error::FailedPrecondition {
                reason,
                subject,
                message,
                metadata,
            } => {
                details.add_precondition_failure_violation(
                    reason.as_str(),
                    subject.clone(),
                    message.clone(),
                );
                let mut entries = vec![("subject".to_owned(), subject.clone())];
                entries.extend(
                    metadata
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), value.clone())),
                );
                (Code::FailedPrecondition, message.clone(), entries)
            }
            Error::Aborted {
                message, metadata, ..
            } => (
                Code::Aborted,
                message.clone(),
                metadata
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), value.clone()))
                    .collect(),
            ),
            Error::Unauthenticated(message) => (Code::Unauthenticated, message.clone(), vec![]),
            Error::PermissionDenied { message, .. } => {
                (Code::PermissionDenied, message.clone(), vec![])
            }
            Error::ResourceExhausted(message) => (Code::ResourceExhausted, message.clone(), vec![]),
            Error::Storage { full, message } => {
                tracing::warn!(error = %message, "database storage failed");
                let code = if *full {
                    Code::ResourceExhausted
                } else {
                    Code::Unavailable
                };
                (code, message.clone(), vec![])
            }
            Error::Unavailable(message) => {
                tracing::warn!(error = %message, "dependency unavailable");
                (Code::Unavailable, message.clone(), vec![])
            }
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (Code::Internal, "internal error".to_owned(), vec![])
            }
        };
        details.set_error_info(
            reason,
            ERROR_DOMAIN,
            metadata
                .into_iter()
                .map(|(key, value)| (key, clip(&value, ECHO_CHARS)))
                .collect::<std::collections::HashMap<_, _>>(),
        );
        Status::with_error_details(code, clip(&message, MESSAGE_CHARS), details)
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    #[test]
    fn answers_echo_at_most_a_short_prefix_of_any_input() {
        let long = "x".repeat(1_000_000);
        let status = Status::from(Error::invalid(long.clone(), "is not a field"));
        assert!(
            status.message().len() < 2 * MESSAGE_CHARS,
            "{}",
            status.message().len()
        );
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field.chars().count(), ECHO_CHARS + 1);
        let status = Status::from(Error::not_found("course", long));
        assert!(status.message().len() < 2 * MESSAGE_CHARS);
        assert!(status.details().len() < 4 * MESSAGE_CHARS);
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
