//! Object scopes: which objects each role may touch, and the one check every handler makes with
//! the facts of the object it is about to touch.
//!
//! Three tables decide every call. [`METHOD_POLICY`](super::policy::METHOD_POLICY) says which
//! roles may call a method (checked by the auth layer, before any handler). [`OBJECT_RULES`] says
//! what kind of object ([`Object`]) each method touches and how ([`Rule`]). [`SCOPES`] says, per
//! kind of object, how far each role reaches ([`Reach`]): everything, the organisation subtree
//! it manages, the objects it is assigned to, or its own. A caller reaches an object when any of
//! its roles does. Handlers load the owner facts of the object ([`Owner`]) and call
//! [`Caller::check`]; lists take [`Caller::visibility`] as a filter; nothing else decides.
//!
//! Assignments come from the data model, never from the token:
//! - a trainer is assigned to a session they lead or co-train, and to the cohort of any session
//!   they lead or co-train (in any state);
//! - an assessor is assigned to the tracks that name them (`CertificationTrack.assessor_ids`),
//!   to the candidacies and certificates of those tracks, and to the learner records of the
//!   people holding a candidacy on them; never to their own candidacy or certificate;
//! - a judge is assigned to the panels they sit on and the applications given to them.
//!
//! Refusals follow AIP-211: an object outside the caller's reach is PERMISSION_DENIED
//! (`OUT_OF_SCOPE`), and so is an id that does not exist, unless the caller reaches everything of
//! that kind (then NOT_FOUND), so that no answer tells a caller whether someone else's object
//! exists. Lists never fail for scope: they return the rows the caller reaches. A batch with one
//! object out of reach fails as a whole, before anything is written.

use std::collections::HashSet;

use super::{
    CallContext, Principal,
    Role::{self, Admin, Assessor, HrService, Learner, OrgAdmin, ProgrammeManager, Trainer},
    Scope,
};
use crate::domain::delivery::Session;
use crate::domain::organization::path_is_within;
use crate::domain::programme::Visibility;
use crate::domain::selection::Viewer;
use crate::error::{Error, Reason, Result};
use crate::store::{Store, certification::Holding, programme::EnrollmentOwner};

/// A kind of object whose reach depends on who it belongs to; one row of [`SCOPES`] each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    /// Organisations created, changed or moved: the node's place in the tree.
    Organization,
    /// People's records, read.
    PersonRead,
    /// People's records, written (updates, imports).
    PersonWrite,
    /// Enrolments made or withdrawn.
    Enrolment,
    /// A learner's enrolments and progress, read.
    LearnerRecord,
    /// Progress recorded on an enrolment.
    Progress,
    /// Survey answers submitted for an enrolment.
    SurveyAnswer,
    /// A session's attendance, recorded or read (its lead and co-trainers).
    Attendance,
    /// What only a session's lead does: mark it delivered, sign off supervised deliveries.
    SessionLead,
    /// Candidacies read, with scores and history.
    CandidacyRead,
    /// Candidacies opened and moved along (training, practice, submission, withdrawal).
    CandidacyMove,
    /// Candidacies assessed: score, deadline, revocation, the certificate issued.
    CandidacyAssess,
    /// Certificates read.
    CertificateRead,
    /// Certificates renewed, suspended, reinstated or revoked.
    CertificateChange,
    /// The cascade below a person: the tree and its reach.
    Cascade,
    /// Reports and survey results, rooted at an organisation.
    Report,
    /// Selection applications: made, withdrawn, read (applicant, nominator, judges).
    Application,
    /// Selection panels read (the judges sitting on them).
    Panel,
    /// Selection assignments scored (the judge assigned).
    Assignment,
    /// The scores of an application (managers; judges after scoring it themselves).
    Scores,
}

impl Object {
    /// Every kind.
    pub const ALL: [Self; 20] = [
        Self::Organization,
        Self::PersonRead,
        Self::PersonWrite,
        Self::Enrolment,
        Self::LearnerRecord,
        Self::Progress,
        Self::SurveyAnswer,
        Self::Attendance,
        Self::SessionLead,
        Self::CandidacyRead,
        Self::CandidacyMove,
        Self::CandidacyAssess,
        Self::CertificateRead,
        Self::CertificateChange,
        Self::Cascade,
        Self::Report,
        Self::Application,
        Self::Panel,
        Self::Assignment,
        Self::Scores,
    ];

    /// Returns what the kind covers, as the documentation's table says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Organization => "organisations changed",
            Self::PersonRead => "people's records read",
            Self::PersonWrite => "people's records written",
            Self::Enrolment => "enrolments made or withdrawn",
            Self::LearnerRecord => "a learner's enrolments and progress, read",
            Self::Progress => "progress recorded",
            Self::SurveyAnswer => "survey answers submitted",
            Self::Attendance => "a session's attendance",
            Self::SessionLead => "what a session's lead does",
            Self::CandidacyRead => "candidacies read (scores, history)",
            Self::CandidacyMove => "candidacies opened and moved",
            Self::CandidacyAssess => "candidacies assessed, certificates issued",
            Self::CertificateRead => "certificates read",
            Self::CertificateChange => "certificates renewed, suspended, reinstated, revoked",
            Self::Cascade => "the cascade below a person",
            Self::Report => "reports and survey results",
            Self::Application => "selection applications",
            Self::Panel => "selection panels read",
            Self::Assignment => "selection scores submitted",
            Self::Scores => "an application's scores read",
        }
    }

    /// Returns true for kinds a caller changes: an assessor never changes their own.
    fn is_change(self) -> bool {
        matches!(
            self,
            Self::CandidacyMove | Self::CandidacyAssess | Self::CertificateChange
        )
    }
}

/// How far a role reaches over a kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Every object of the kind.
    Everything,
    /// Objects about people (or organisations) in the subtree of the caller's organisation.
    Subtree,
    /// Objects the caller is assigned to by the data model (see the module documentation).
    Assigned,
    /// Objects about the caller themself.
    Own,
}

impl Reach {
    /// Returns the name used in documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everything => "everything",
            Self::Subtree => "subtree",
            Self::Assigned => "assigned",
            Self::Own => "own",
        }
    }
}

use Reach::{Assigned, Everything, Own, Subtree};

/// How far each role reaches over one kind of object.
pub type ScopeRow = (Object, &'static [(Role, &'static [Reach])]);

/// Per kind of object, how far each role reaches. A role not listed reaches nothing.
#[rustfmt::skip]
pub const SCOPES: &[ScopeRow] = &[
    (Object::Organization, &[(Admin, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree])]),
    (Object::PersonRead, &[(Admin, &[Everything]), (HrService, &[Everything]), (ProgrammeManager, &[Everything]), (OrgAdmin, &[Subtree]), (Learner, &[Own])]),
    (Object::PersonWrite, &[(Admin, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree])]),
    (Object::Enrolment, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (OrgAdmin, &[Subtree])]),
    (Object::LearnerRecord, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree]), (Trainer, &[Assigned, Own]), (Assessor, &[Assigned, Own]), (Learner, &[Own])]),
    (Object::Progress, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (Trainer, &[Assigned, Own]), (Assessor, &[Assigned, Own]), (Learner, &[Own])]),
    (Object::SurveyAnswer, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (Trainer, &[Assigned, Own]), (Assessor, &[Own]), (Learner, &[Own])]),
    (Object::Attendance, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (Trainer, &[Assigned])]),
    (Object::SessionLead, &[(Admin, &[Everything]), (Trainer, &[Assigned])]),
    (Object::CandidacyRead, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree]), (Assessor, &[Assigned, Own]), (Trainer, &[Own]), (Learner, &[Own])]),
    (Object::CandidacyMove, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (Assessor, &[Assigned])]),
    (Object::CandidacyAssess, &[(Admin, &[Everything]), (Assessor, &[Assigned])]),
    (Object::CertificateRead, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree]), (Assessor, &[Assigned, Own]), (Trainer, &[Own]), (Learner, &[Own])]),
    (Object::CertificateChange, &[(Admin, &[Everything]), (Assessor, &[Assigned])]),
    (Object::Cascade, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree]), (Trainer, &[Own]), (Assessor, &[Own])]),
    (Object::Report, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (HrService, &[Everything]), (OrgAdmin, &[Subtree])]),
    (Object::Application, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (OrgAdmin, &[Subtree, Own, Assigned]), (Assessor, &[Own, Assigned]), (Trainer, &[Own, Assigned]), (Learner, &[Own, Assigned])]),
    (Object::Panel, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (Assessor, &[Assigned])]),
    (Object::Assignment, &[(Admin, &[Assigned]), (ProgrammeManager, &[Assigned]), (OrgAdmin, &[Assigned]), (Assessor, &[Assigned]), (Trainer, &[Assigned]), (Learner, &[Assigned])]),
    (Object::Scores, &[(Admin, &[Everything]), (ProgrammeManager, &[Everything]), (OrgAdmin, &[Assigned]), (Assessor, &[Assigned]), (Trainer, &[Assigned]), (Learner, &[Assigned])]),
];

/// What a method touches and how its scope applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nobody's object: catalogue reads, public verification, and changes to shared reference
    /// data (courses, programmes, cohorts, sessions, tracks, calls) by managers who reach
    /// everything. The method policy is the whole rule.
    None,
    /// Only roles reaching everything may call it (audit, the event feed, exports, rebuilds,
    /// dashboards); the method policy lists no other role.
    Everything,
    /// The caller's own rows, by token subject (no id in the request names anyone else).
    Own,
    /// One object named in the request, checked with its owner facts.
    Object(Object),
    /// Several objects named in one call (a batch or a stream): all are checked first, and one
    /// out of reach fails the whole call.
    Batch(Object),
    /// A list or an aggregate: narrowed to what the caller reaches; an organisation subtree
    /// asked for outside the caller's is refused.
    List(Object),
    /// Rows of everyone, in full where the caller reaches the object, else only what a verifier
    /// needs.
    Directory(Object),
}

/// Every `lms.v1` method and its object rule; a unit test keeps it in step with the method policy.
#[rustfmt::skip]
pub const OBJECT_RULES: &[(&str, Rule)] = &[
    ("/lms.v1.OrganizationService/CreateOrganization", Rule::Object(Object::Organization)),
    ("/lms.v1.OrganizationService/GetOrganization", Rule::None),
    ("/lms.v1.OrganizationService/LookupOrganization", Rule::None),
    ("/lms.v1.OrganizationService/BatchLookupOrganizations", Rule::None),
    ("/lms.v1.OrganizationService/ListOrganizations", Rule::None),
    ("/lms.v1.OrganizationService/UpdateOrganization", Rule::Object(Object::Organization)),
    ("/lms.v1.OrganizationService/MoveOrganization", Rule::Object(Object::Organization)),
    ("/lms.v1.PersonService/GetPerson", Rule::Object(Object::PersonRead)),
    ("/lms.v1.PersonService/LookupPerson", Rule::Object(Object::PersonRead)),
    ("/lms.v1.PersonService/BatchLookupPeople", Rule::Batch(Object::PersonRead)),
    ("/lms.v1.PersonService/ListPeople", Rule::List(Object::PersonRead)),
    ("/lms.v1.PersonService/UpdatePerson", Rule::Object(Object::PersonWrite)),
    ("/lms.v1.PersonService/BatchUpsertPeople", Rule::Batch(Object::PersonWrite)),
    ("/lms.v1.PersonService/ImportPeople", Rule::Batch(Object::PersonWrite)),
    ("/lms.v1.PersonService/SyncPeople", Rule::Batch(Object::PersonWrite)),
    ("/lms.v1.PersonService/CreateParticipantCategory", Rule::None),
    ("/lms.v1.PersonService/ListParticipantCategories", Rule::None),
    ("/lms.v1.PersonService/UpdateParticipantCategory", Rule::None),
    ("/lms.v1.CourseService/CreateCourse", Rule::None),
    ("/lms.v1.CourseService/GetCourse", Rule::None),
    ("/lms.v1.CourseService/ListCourses", Rule::None),
    ("/lms.v1.CourseService/UpdateCourse", Rule::None),
    ("/lms.v1.CourseService/ArchiveCourse", Rule::None),
    ("/lms.v1.CourseService/CreateCourseVersion", Rule::None),
    ("/lms.v1.CourseService/GetCourseVersion", Rule::None),
    ("/lms.v1.CourseService/ListCourseVersions", Rule::None),
    ("/lms.v1.CourseService/PublishCourseVersion", Rule::None),
    ("/lms.v1.CourseService/CreateModule", Rule::None),
    ("/lms.v1.CourseService/UpdateModule", Rule::None),
    ("/lms.v1.CourseService/DeleteModule", Rule::None),
    ("/lms.v1.CourseService/ReorderModules", Rule::None),
    ("/lms.v1.CourseService/CreateActivity", Rule::None),
    ("/lms.v1.CourseService/UpdateActivity", Rule::None),
    ("/lms.v1.CourseService/DeleteActivity", Rule::None),
    ("/lms.v1.CourseService/ReorderActivities", Rule::None),
    ("/lms.v1.ProgrammeService/CreateProgramme", Rule::None),
    ("/lms.v1.ProgrammeService/GetProgramme", Rule::None),
    ("/lms.v1.ProgrammeService/ListProgrammes", Rule::None),
    ("/lms.v1.ProgrammeService/UpdateProgramme", Rule::None),
    ("/lms.v1.ProgrammeService/ArchiveProgramme", Rule::None),
    ("/lms.v1.ProgrammeService/CreateCohort", Rule::None),
    ("/lms.v1.ProgrammeService/GetCohort", Rule::None),
    ("/lms.v1.ProgrammeService/ListCohorts", Rule::None),
    ("/lms.v1.ProgrammeService/UpdateCohort", Rule::None),
    ("/lms.v1.ProgrammeService/ChangeCohortState", Rule::None),
    ("/lms.v1.ProgrammeService/Enroll", Rule::Object(Object::Enrolment)),
    ("/lms.v1.ProgrammeService/BatchEnroll", Rule::Batch(Object::Enrolment)),
    ("/lms.v1.ProgrammeService/Withdraw", Rule::Object(Object::Enrolment)),
    ("/lms.v1.ProgrammeService/GetEnrollment", Rule::Object(Object::LearnerRecord)),
    ("/lms.v1.ProgrammeService/ListEnrollments", Rule::List(Object::LearnerRecord)),
    ("/lms.v1.ProgressService/RecordProgress", Rule::Object(Object::Progress)),
    ("/lms.v1.ProgressService/BatchRecordProgress", Rule::Batch(Object::Progress)),
    ("/lms.v1.ProgressService/StreamProgress", Rule::Batch(Object::Progress)),
    ("/lms.v1.ProgressService/GetEnrollmentProgress", Rule::Object(Object::LearnerRecord)),
    ("/lms.v1.ProgressService/ListProgress", Rule::List(Object::LearnerRecord)),
    ("/lms.v1.ProgressService/RecomputeProgress", Rule::Everything),
    ("/lms.v1.ProgressService/ExportStatements", Rule::Everything),
    ("/lms.v1.ProgressService/CreatePlacement", Rule::Object(Object::Enrolment)),
    ("/lms.v1.ProgressService/GetPlacement", Rule::Object(Object::LearnerRecord)),
    ("/lms.v1.ProgressService/ListPlacements", Rule::List(Object::LearnerRecord)),
    ("/lms.v1.ProgressService/UpdatePlacement", Rule::Object(Object::Enrolment)),
    ("/lms.v1.EventService/WatchEvents", Rule::Everything),
    ("/lms.v1.SurveyService/SubmitSurveyResponse", Rule::Object(Object::SurveyAnswer)),
    ("/lms.v1.SurveyService/BatchSubmitSurveyResponses", Rule::Object(Object::SurveyAnswer)),
    ("/lms.v1.SurveyService/GetSurveyResults", Rule::List(Object::Report)),
    ("/lms.v1.DeliveryService/CreateSession", Rule::None),
    ("/lms.v1.DeliveryService/GetSession", Rule::None),
    ("/lms.v1.DeliveryService/ListSessions", Rule::None),
    ("/lms.v1.DeliveryService/RescheduleSession", Rule::None),
    ("/lms.v1.DeliveryService/ChangeSessionTrainers", Rule::None),
    ("/lms.v1.DeliveryService/CancelSession", Rule::None),
    ("/lms.v1.DeliveryService/RecordAttendance", Rule::Object(Object::Attendance)),
    ("/lms.v1.DeliveryService/ListAttendance", Rule::Object(Object::Attendance)),
    ("/lms.v1.DeliveryService/MarkDelivered", Rule::Object(Object::SessionLead)),
    ("/lms.v1.CertificationService/CreateCertificationTrack", Rule::None),
    ("/lms.v1.CertificationService/GetCertificationTrack", Rule::None),
    ("/lms.v1.CertificationService/ListCertificationTracks", Rule::None),
    ("/lms.v1.CertificationService/SetTrackAssessors", Rule::None),
    ("/lms.v1.CertificationService/CreateCandidacy", Rule::Object(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/GetCandidacy", Rule::Object(Object::CandidacyRead)),
    ("/lms.v1.CertificationService/ListCandidacies", Rule::List(Object::CandidacyRead)),
    ("/lms.v1.CertificationService/StartTraining", Rule::Object(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/BeginSupervisedPractice", Rule::Object(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/SubmitForAssessment", Rule::Object(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/RecordAssessment", Rule::Object(Object::CandidacyAssess)),
    ("/lms.v1.CertificationService/ExtendCandidacyDeadline", Rule::Object(Object::CandidacyAssess)),
    ("/lms.v1.CertificationService/WithdrawCandidacy", Rule::Object(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/RevokeCandidacy", Rule::Object(Object::CandidacyAssess)),
    ("/lms.v1.CertificationService/BatchCreateCandidacies", Rule::Batch(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/BatchAdvanceCandidacies", Rule::Batch(Object::CandidacyMove)),
    ("/lms.v1.CertificationService/RecordSupervisedDelivery", Rule::Object(Object::SessionLead)),
    ("/lms.v1.CertificationService/IssueCertificate", Rule::Object(Object::CandidacyAssess)),
    ("/lms.v1.CertificationService/GetCertificate", Rule::Object(Object::CertificateRead)),
    ("/lms.v1.CertificationService/GetCertificateDocument", Rule::Object(Object::CertificateRead)),
    ("/lms.v1.CertificationService/ListCertificates", Rule::List(Object::CertificateRead)),
    ("/lms.v1.CertificationService/RenewCertificate", Rule::Object(Object::CertificateChange)),
    ("/lms.v1.CertificationService/SuspendCertificate", Rule::Object(Object::CertificateChange)),
    ("/lms.v1.CertificationService/ReinstateCertificate", Rule::Object(Object::CertificateChange)),
    ("/lms.v1.CertificationService/RevokeCertificate", Rule::Object(Object::CertificateChange)),
    ("/lms.v1.CertificationService/VerifyCertificate", Rule::None),
    ("/lms.v1.CertificationService/GetIssuerKeys", Rule::None),
    ("/lms.v1.CertificationService/GetStatusListCredential", Rule::None),
    ("/lms.v1.CertificationService/ListCertifiedTrainers", Rule::Directory(Object::CertificateRead)),
    ("/lms.v1.CertificationService/GetCascade", Rule::Object(Object::Cascade)),
    ("/lms.v1.CertificationService/GetCascadeReach", Rule::Object(Object::Cascade)),
    ("/lms.v1.ReportService/GetCompletionReport", Rule::List(Object::Report)),
    ("/lms.v1.ReportService/GetProgrammeDashboard", Rule::Everything),
    ("/lms.v1.ReportService/GetCertificationReport", Rule::List(Object::Report)),
    ("/lms.v1.ReportService/ExportReport", Rule::List(Object::Report)),
    ("/lms.v1.ReportService/RebuildReportCounters", Rule::Everything),
    ("/lms.v1.AuditService/ListAuditEntries", Rule::Everything),
    ("/lms.v1.AuditService/VerifyAuditChain", Rule::Everything),
    ("/lms.v1.SelectionService/CreateCall", Rule::None),
    ("/lms.v1.SelectionService/GetCall", Rule::None),
    ("/lms.v1.SelectionService/ListCalls", Rule::None),
    ("/lms.v1.SelectionService/UpdateCall", Rule::None),
    ("/lms.v1.SelectionService/CloseCall", Rule::None),
    ("/lms.v1.SelectionService/SubmitApplication", Rule::Object(Object::Application)),
    ("/lms.v1.SelectionService/WithdrawApplication", Rule::Object(Object::Application)),
    ("/lms.v1.SelectionService/GetApplication", Rule::Object(Object::Application)),
    ("/lms.v1.SelectionService/ListApplications", Rule::List(Object::Application)),
    ("/lms.v1.SelectionService/CreatePanel", Rule::None),
    ("/lms.v1.SelectionService/GetPanel", Rule::Object(Object::Panel)),
    ("/lms.v1.SelectionService/AssignApplications", Rule::None),
    ("/lms.v1.SelectionService/ListMyAssignments", Rule::Own),
    ("/lms.v1.SelectionService/SubmitScore", Rule::Object(Object::Assignment)),
    ("/lms.v1.SelectionService/ListScores", Rule::Object(Object::Scores)),
    ("/lms.v1.SelectionService/RankApplications", Rule::None),
    ("/lms.v1.SelectionService/DecideApplications", Rule::None),
    ("/lms.v1.CompetencyService/CreateCompetency", Rule::None),
    ("/lms.v1.CompetencyService/GetCompetency", Rule::None),
    ("/lms.v1.CompetencyService/ListCompetencies", Rule::None),
    ("/lms.v1.CompetencyService/UpdateCompetency", Rule::None),
    ("/lms.v1.CompetencyService/CreateRole", Rule::None),
    ("/lms.v1.CompetencyService/GetRole", Rule::None),
    ("/lms.v1.CompetencyService/ListRoles", Rule::None),
    ("/lms.v1.CompetencyService/UpdateRole", Rule::None),
    ("/lms.v1.CompetencyService/SetCompetencyTags", Rule::None),
    ("/lms.v1.CompetencyService/GetCompetencyTags", Rule::None),
    ("/lms.v1.CompetencyService/GetCompetencyProfile", Rule::Object(Object::LearnerRecord)),
    ("/lms.v1.CompetencyService/SearchCompetencyHolders", Rule::List(Object::Report)),
];

/// Returns the object rule of the method at `path` (`/lms.v1.Service/Method`).
pub fn rule_of(path: &str) -> Option<Rule> {
    OBJECT_RULES
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, rule)| *rule)
}

/// Returns how far `role` reaches over `object` (empty: nowhere).
pub fn reach_of(role: Role, object: Object) -> &'static [Reach] {
    SCOPES
        .iter()
        .find(|(kind, _)| *kind == object)
        .and_then(|(_, rows)| rows.iter().find(|(row_role, _)| *row_role == role))
        .map(|(_, reach)| *reach)
        .unwrap_or(&[])
}

/// What the scope rules need to know about an object: who it is about and who it is assigned to.
/// The store loads it; fields that do not apply to a kind stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The person the object is about: the learner, candidate, holder, applicant, cascade root.
    pub person_id: Option<String>,
    /// The materialised path of that person's organisation (or of a report's root organisation).
    pub organization_path: Option<String>,
    /// The cohort of an enrolment.
    pub cohort_id: Option<String>,
    /// A session's lead (first) and co-trainers.
    pub trainer_ids: Vec<String>,
    /// The track of a candidacy or certificate.
    pub track_id: Option<String>,
    /// Who nominated an applicant (they act on the application like its applicant).
    pub nominated_by: Option<String>,
    /// Judges of a panel, or assigned to an application.
    pub judge_ids: Vec<String>,
}

impl Owner {
    /// Returns the facts of an object about `person_id` in the organisation at `path`.
    pub fn person(person_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            person_id: Some(person_id.into()),
            organization_path: Some(path.into()),
            ..Self::default()
        }
    }
}

/// Which of a caller's assignments a check needs read from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The cohorts of the sessions the caller leads or co-trains.
    pub trained_cohorts: bool,
    /// The tracks the caller assesses.
    pub assessed_tracks: bool,
    /// The people with a candidacy on the tracks the caller assesses.
    pub candidates: bool,
    /// The path of the organisation whose subtree the caller manages.
    pub subtree_path: bool,
}

/// A caller's assignments, read from the data model once per call (only those [`Needs`] asks for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    /// Cohorts with a session the caller leads or co-trains.
    pub trained_cohort_ids: HashSet<String>,
    /// Tracks naming the caller as an assessor.
    pub assessed_track_ids: HashSet<String>,
    /// People holding a candidacy on those tracks.
    pub candidate_ids: HashSet<String>,
    /// Path of the organisation whose subtree the caller manages.
    pub subtree_path: Option<String>,
}

/// The caller of one call, with the assignments the object kind at hand needs.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Principal,
    assignments: Assignments,
}

impl Caller {
    /// Returns a caller with no assignments loaded (enough for kinds that need none).
    pub fn new(principal: Principal) -> Self {
        Self {
            principal,
            assignments: Assignments::default(),
        }
    }

    /// Returns the caller with `assignments`.
    pub fn with_assignments(mut self, assignments: Assignments) -> Self {
        self.assignments = assignments;
        self
    }

    /// Returns the token subject.
    pub fn subject(&self) -> &str {
        &self.principal.subject
    }

    /// Returns the caller's principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Returns every reach the caller's roles give over `object`.
    pub fn reaches(&self, object: Object) -> impl Iterator<Item = (Role, Reach)> + '_ {
        self.principal.roles.iter().flat_map(move |role| {
            reach_of(*role, object)
                .iter()
                .map(move |reach| (*role, *reach))
        })
    }

    fn has_reach(&self, object: Object, wanted: Reach) -> bool {
        self.reaches(object).any(|(_, reach)| reach == wanted)
    }

    /// Returns true when one of the caller's roles reaches every object of the kind.
    pub fn reaches_everything(&self, object: Object) -> bool {
        self.has_reach(object, Everything)
    }

    /// Returns which assignments checking `object` needs loaded for this caller.
    pub fn needs(&self, object: Object) -> Needs {
        if self.reaches_everything(object) {
            return Needs::default();
        }
        let mut needs = Needs::default();
        for (role, reach) in self.reaches(object) {
            match (reach, role) {
                (Subtree, _) => needs.subtree_path = true,
                (Assigned, Trainer) => match object {
                    Object::LearnerRecord | Object::Progress | Object::SurveyAnswer => {
                        needs.trained_cohorts = true;
                    }
                    _ => {}
                },
                (Assigned, Assessor) => match object {
                    Object::LearnerRecord | Object::Progress => needs.candidates = true,
                    Object::CandidacyRead
                    | Object::CandidacyMove
                    | Object::CandidacyAssess
                    | Object::CertificateRead
                    | Object::CertificateChange => needs.assessed_tracks = true,
                    _ => {}
                },
                _ => {}
            }
        }
        needs
    }

    /// Returns the organisation whose subtree the caller manages, when a role reaches `object`
    /// by subtree.
    fn subtree_root(&self, object: Object) -> Option<&str> {
        if !self.has_reach(object, Subtree) {
            return None;
        }
        self.principal.organization_id.as_deref()
    }

    /// Returns true when the caller reaches the object described by `owner`.
    pub fn allows(&self, object: Object, owner: &Owner) -> bool {
        self.reaches(object)
            .any(|(role, reach)| self.allows_as(object, role, reach, owner))
    }

    /// Returns true when the caller reaches the object other than as its owner: on their own
    /// records only a role reaching everything counts (staff recording on their own enrolment
    /// record as a learner would: APP events only).
    pub fn allows_beyond_own(&self, object: Object, owner: &Owner) -> bool {
        if owner.person_id.as_deref() == Some(self.subject()) {
            return self.reaches_everything(object);
        }
        self.allows(object, owner)
    }

    fn allows_as(&self, object: Object, role: Role, reach: Reach, owner: &Owner) -> bool {
        let subject = self.subject();
        let own = owner.person_id.as_deref() == Some(subject);
        match reach {
            Everything => true,
            Subtree => match (self.subtree_root(object), &owner.organization_path) {
                (Some(root), Some(path)) => path_is_within(path, root),
                _ => false,
            },
            Own => {
                own || (object == Object::Application
                    && owner.nominated_by.as_deref() == Some(subject))
            }
            Assigned => !(object.is_change() && own) && self.assigned(object, role, owner),
        }
    }

    fn assigned(&self, object: Object, role: Role, owner: &Owner) -> bool {
        let subject = self.subject();
        let assignments = &self.assignments;
        let contains = |set: &HashSet<String>, id: &Option<String>| {
            id.as_ref().is_some_and(|id| set.contains(id))
        };
        match (object, role) {
            (Object::LearnerRecord | Object::Progress | Object::SurveyAnswer, Trainer) => {
                contains(&assignments.trained_cohort_ids, &owner.cohort_id)
            }
            (Object::LearnerRecord | Object::Progress, Assessor) => {
                contains(&assignments.candidate_ids, &owner.person_id)
            }
            (Object::Attendance, Trainer) => owner.trainer_ids.iter().any(|id| id == subject),
            (Object::SessionLead, Trainer) => {
                owner.trainer_ids.first().map(String::as_str) == Some(subject)
            }
            (
                Object::CandidacyRead
                | Object::CandidacyMove
                | Object::CandidacyAssess
                | Object::CertificateRead
                | Object::CertificateChange,
                Assessor,
            ) => contains(&assignments.assessed_track_ids, &owner.track_id),
            (Object::Application | Object::Panel | Object::Assignment | Object::Scores, _) => {
                owner.judge_ids.iter().any(|id| id == subject)
            }
            _ => false,
        }
    }

    /// Fails with PERMISSION_DENIED unless the caller reaches, as `object`, the `resource` `id`
    /// (named as in the request) whose facts are `owner`.
    pub fn check(&self, object: Object, resource: &str, id: &str, owner: &Owner) -> Result<()> {
        if self.allows(object, owner) {
            Ok(())
        } else {
            Err(out_of_scope(resource, id))
        }
    }

    /// Checks an object the store looked up: a missing one is NOT_FOUND only for a caller who
    /// reaches everything of the kind, PERMISSION_DENIED for anyone else (as if it were someone
    /// else's), so that existence never leaks.
    pub fn check_found<T: AsOwner>(
        &self,
        object: Object,
        resource: &str,
        id: &str,
        found: Result<T>,
    ) -> Result<T> {
        match found {
            Ok(facts) => self
                .check(object, resource, id, &facts.owner())
                .map(|()| facts),
            Err(error) => Err(self.hide_missing(object, resource, id, error)),
        }
    }

    /// Returns `error`, or the out-of-scope refusal in its place when it says that an object is
    /// missing and the caller does not reach everything of the kind.
    pub fn hide_missing(&self, object: Object, resource: &str, id: &str, error: Error) -> Error {
        match error {
            Error::NotFound { .. } if !self.reaches_everything(object) => {
                out_of_scope(resource, id)
            }
            other => other,
        }
    }

    /// Checks every object of a batch or stream chunk: `items` pairs the request field naming an
    /// object (`events[3].enrollment_id`) with its id, and `found` holds the facts of the ids
    /// that exist. One object out of reach (or missing, for a caller who does not reach
    /// everything of the kind) fails the whole call, naming its field; a caller who reaches
    /// everything leaves missing ones to the per-item answers of the store.
    pub fn check_all<T: AsOwner>(
        &self,
        object: Object,
        resource: &str,
        items: &[(String, String)],
        found: &std::collections::HashMap<String, T>,
    ) -> Result<()> {
        if self.reaches_everything(object) {
            return Ok(());
        }
        for (field, id) in items {
            let allowed = found
                .get(id)
                .is_some_and(|facts| self.allows(object, &facts.owner()));
            if !allowed {
                return Err(Error::permission_denied(
                    Reason::OutOfScope,
                    format!(
                        "{resource} {id} ({field}) is outside your scope, or does not exist; \
                         nothing of this call was done"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks an organisation subtree (at `path`) a list or report of `object` asks for: the
    /// caller must reach everything of the kind, or manage that subtree.
    pub fn check_subtree(&self, object: Object, path: &str) -> Result<()> {
        self.tree_scope(object)
            .require_path(path, "organization_subtree")
    }

    /// Returns the rows of `object` a list may show this caller: `None` for every row.
    pub fn visibility(&self, object: Object) -> Option<Visibility> {
        if self.reaches_everything(object) {
            return None;
        }
        let mut visibility = Visibility::default();
        for (role, reach) in self.reaches(object) {
            match reach {
                Everything => {}
                Subtree => {
                    visibility.organization_path_prefix = self.assignments.subtree_path.clone();
                }
                Own => {
                    if !visibility.person_ids.iter().any(|id| id == self.subject()) {
                        visibility.person_ids.push(self.subject().to_owned());
                    }
                }
                Assigned => match (object, role) {
                    (Object::LearnerRecord | Object::Progress, Trainer) => {
                        visibility
                            .cohort_ids
                            .extend(self.assignments.trained_cohort_ids.iter().cloned());
                    }
                    (Object::LearnerRecord | Object::Progress, Assessor) => {
                        visibility
                            .person_ids
                            .extend(self.assignments.candidate_ids.iter().cloned());
                    }
                    (Object::CandidacyRead | Object::CertificateRead, Assessor) => {
                        visibility
                            .track_ids
                            .extend(self.assignments.assessed_track_ids.iter().cloned());
                    }
                    _ => {}
                },
            }
        }
        for ids in [
            &mut visibility.person_ids,
            &mut visibility.cohort_ids,
            &mut visibility.track_ids,
        ] {
            ids.sort();
            ids.dedup();
        }
        Some(visibility)
    }

    /// Returns where in the organisation tree the caller reaches `object`: the scope a list's
    /// `organization_subtree` filter and a report's root are checked against.
    pub fn tree_scope(&self, object: Object) -> Scope {
        if self.reaches_everything(object) {
            return Scope::All;
        }
        match self.subtree_root(object) {
            Some(root) => Scope::Subtree(root.to_owned()),
            None => Scope::Nothing,
        }
    }

    /// Returns the caller as the selection rules see them ([`Viewer`]), from [`Object::Application`].
    pub fn selection_viewer(&self) -> Viewer {
        Viewer {
            subject: self.subject().to_owned(),
            manager: self.reaches_everything(Object::Application),
            subtree_root: self.subtree_root(Object::Application).map(str::to_owned),
        }
    }
}

/// Object facts the scope check reads; implemented by [`Owner`] and the store's owner rows.
pub trait AsOwner {
    /// Returns the facts as the scope rules need them.
    fn owner(&self) -> Owner;
}

impl AsOwner for Owner {
    fn owner(&self) -> Owner {
        self.clone()
    }
}

impl AsOwner for EnrollmentOwner {
    fn owner(&self) -> Owner {
        Owner {
            person_id: Some(self.person_id.clone()),
            organization_path: Some(self.organization_path.clone()),
            cohort_id: Some(self.cohort_id.clone()),
            ..Owner::default()
        }
    }
}

impl AsOwner for Holding {
    fn owner(&self) -> Owner {
        Owner {
            person_id: Some(self.person_id.clone()),
            organization_path: Some(self.organization_path.clone()),
            track_id: Some(self.track_id.clone()),
            ..Owner::default()
        }
    }
}

impl AsOwner for Session {
    fn owner(&self) -> Owner {
        Owner {
            cohort_id: Some(self.cohort_id.clone()),
            trainer_ids: self.trainer_ids(),
            ..Owner::default()
        }
    }
}

/// Returns the refusal of an object outside the caller's reach (or missing, for a caller who may
/// not learn whether it exists): the same answer either way.
pub fn out_of_scope(resource: &str, id: &str) -> Error {
    Error::permission_denied(
        Reason::OutOfScope,
        format!("{resource} {id} is outside your scope, or does not exist"),
    )
}

/// Returns the caller of `context` with the assignments checking one object of kind `object`
/// needs, read from `store`.
pub async fn caller(store: &Store, context: &CallContext, object: Object) -> Result<Caller> {
    load(store, context, object, false).await
}

/// Returns the caller of `context` with the assignments a list of `object` needs (the path of an
/// org admin's subtree too), read from `store`.
pub async fn list_caller(store: &Store, context: &CallContext, object: Object) -> Result<Caller> {
    load(store, context, object, true).await
}

async fn load(
    store: &Store,
    context: &CallContext,
    object: Object,
    for_list: bool,
) -> Result<Caller> {
    let caller = Caller::new(context.principal.clone());
    let mut needs = caller.needs(object);
    needs.subtree_path &= for_list;
    if needs == Needs::default() {
        return Ok(caller);
    }
    let subject = context.principal.subject.as_str();
    let mut assignments = Assignments::default();
    if needs.trained_cohorts {
        assignments.trained_cohort_ids = store.trained_cohort_ids(subject).await?;
    }
    if needs.assessed_tracks {
        assignments.assessed_track_ids = store.assessed_track_ids(subject).await?;
    }
    if needs.candidates {
        assignments.candidate_ids = store.assessed_candidate_ids(subject).await?;
    }
    if needs.subtree_path
        && let Some(root) = &context.principal.organization_id
    {
        assignments.subtree_path = match store.get_organization(root).await {
            Ok(organization) => Some(organization.path),
            Err(Error::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
    }
    Ok(caller.with_assignments(assignments))
}

/// Roles in the order of the documentation's columns.
const DOCUMENTED_ROLES: [Role; 7] = [
    Admin,
    ProgrammeManager,
    HrService,
    OrgAdmin,
    Trainer,
    Assessor,
    Learner,
];

/// Returns the scope table as Markdown (docs/security.md holds it; a unit test keeps them equal).
pub fn scope_table_markdown() -> String {
    let mut table = String::from("| object | methods |");
    for role in DOCUMENTED_ROLES {
        table.push_str(&format!(" {role} |"));
    }
    table.push_str("\n|---|---|");
    table.push_str(&"---|".repeat(DOCUMENTED_ROLES.len()));
    table.push('\n');
    for object in Object::ALL {
        let methods: Vec<String> = OBJECT_RULES
            .iter()
            .filter(|(_, rule)| {
                matches!(rule, Rule::Object(kind) | Rule::Batch(kind) | Rule::List(kind) | Rule::Directory(kind) if *kind == object)
            })
            .map(|(method, _)| format!("`{}`", method.rsplit('/').next().unwrap_or_default()))
            .collect();
        table.push_str(&format!(
            "| {} | {} |",
            object.describe(),
            methods.join(", ")
        ));
        for role in DOCUMENTED_ROLES {
            let reach: Vec<&str> = reach_of(role, object)
                .iter()
                .map(|reach| reach.as_str())
                .collect();
            let cell = if reach.is_empty() {
                "—".to_owned()
            } else {
                reach.join(", ")
            };
            table.push_str(&format!(" {cell} |"));
        }
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{Access, METHOD_POLICY};

    #[test]
    fn the_documented_scope_table_is_the_one_enforced() {
        let documented = include_str!("../../docs/security.md");
        let table = scope_table_markdown();
        assert!(
            documented.contains(&table),
            "docs/security.md must hold the scope table as enforced; paste this:\n{table}"
        );
    }

    fn principal(subject: &str, roles: &[Role], organization: Option<&str>) -> Principal {
        Principal {
            subject: subject.to_owned(),
            roles: roles.to_vec(),
            organization_id: organization.map(str::to_owned),
        }
    }

    #[test]
    fn every_method_of_the_policy_has_exactly_one_object_rule() {
        for (method, _) in METHOD_POLICY {
            let rules = OBJECT_RULES
                .iter()
                .filter(|(name, _)| name == method)
                .count();
            assert_eq!(rules, 1, "{method} needs exactly one entry in OBJECT_RULES");
        }
        for (method, _) in OBJECT_RULES {
            assert!(
                METHOD_POLICY.iter().any(|(name, _)| name == method),
                "{method} has an object rule but no method policy"
            );
        }
    }

    #[test]
    fn every_role_a_method_admits_reaches_its_objects_somehow() {
        for (method, access) in METHOD_POLICY {
            let rule = rule_of(method).unwrap();
            let object = match rule {
                Rule::Object(object) | Rule::Batch(object) | Rule::List(object) => object,
                _ => continue,
            };
            let Access::Roles(roles) = access else {
                panic!("{method} touches someone's objects but any caller may call it");
            };
            for role in *roles {
                assert!(
                    !reach_of(*role, object).is_empty(),
                    "{method} admits {role}, which reaches no {object:?}: drop the role or give it a scope"
                );
            }
        }
    }

    #[test]
    fn methods_without_an_object_are_open_catalogue_reads_or_for_managers_who_reach_everything() {
        for (method, access) in METHOD_POLICY {
            match (rule_of(method).unwrap(), access) {
                (Rule::None, Access::Roles(roles)) => assert!(
                    roles
                        .iter()
                        .all(|role| matches!(role, Admin | ProgrammeManager)),
                    "{method} changes shared data: only admins and programme managers may"
                ),
                (Rule::Everything, Access::Roles(roles)) => assert!(
                    roles
                        .iter()
                        .all(|role| matches!(role, Admin | ProgrammeManager | HrService)),
                    "{method} shows everything: only roles that reach everything may call it"
                ),
                (Rule::Everything, _) => panic!("{method} shows everything to anyone"),
                _ => {}
            }
        }
    }

    #[test]
    fn every_kind_of_object_has_a_row() {
        for object in Object::ALL {
            assert_eq!(
                SCOPES.iter().filter(|(kind, _)| *kind == object).count(),
                1,
                "{object:?}"
            );
        }
    }

    #[test]
    fn org_admins_read_certification_objects_of_their_subtree_only() {
        for object in [
            Object::CandidacyRead,
            Object::CertificateRead,
            Object::Cascade,
            Object::LearnerRecord,
        ] {
            assert_eq!(reach_of(OrgAdmin, object), &[Subtree], "{object:?}");
        }
        let caller = Caller::new(principal("oa", &[OrgAdmin], Some("ministry-a")));
        let inside = Owner::person("p1", "/ministry-a/dept/");
        let outside = Owner::person("p2", "/ministry-b/dept/");
        assert!(caller.allows(Object::CandidacyRead, &inside));
        assert!(!caller.allows(Object::CandidacyRead, &outside));
        assert!(!caller.allows(Object::CertificateChange, &inside));
    }

    #[test]
    fn trainers_reach_the_sessions_they_run_and_the_cohorts_of_those_sessions() {
        let caller = Caller::new(principal("t1", &[Trainer], None)).with_assignments(Assignments {
            trained_cohort_ids: HashSet::from(["c1".to_owned()]),
            ..Assignments::default()
        });
        let led = Owner {
            trainer_ids: vec!["t1".to_owned(), "t2".to_owned()],
            ..Owner::default()
        };
        let co_trained = Owner {
            trainer_ids: vec!["t2".to_owned(), "t1".to_owned()],
            ..Owner::default()
        };
        let other = Owner {
            trainer_ids: vec!["t2".to_owned()],
            ..Owner::default()
        };
        assert!(caller.allows(Object::Attendance, &led));
        assert!(caller.allows(Object::Attendance, &co_trained));
        assert!(!caller.allows(Object::Attendance, &other));
        assert!(caller.allows(Object::SessionLead, &led));
        assert!(!caller.allows(Object::SessionLead, &co_trained));
        let enrolment = |cohort: &str| Owner {
            person_id: Some("learner".to_owned()),
            cohort_id: Some(cohort.to_owned()),
            ..Owner::default()
        };
        assert!(caller.allows(Object::Progress, &enrolment("c1")));
        assert!(caller.allows(Object::SurveyAnswer, &enrolment("c1")));
        assert!(!caller.allows(Object::Progress, &enrolment("c2")));
        assert!(!caller.allows(Object::LearnerRecord, &enrolment("c2")));
        assert!(!caller.allows(Object::CandidacyRead, &enrolment("c1")));
    }

    #[test]
    fn assessors_act_on_the_tracks_they_assess_and_never_on_their_own() {
        let caller =
            Caller::new(principal("a1", &[Assessor], None)).with_assignments(Assignments {
                assessed_track_ids: HashSet::from(["track-1".to_owned()]),
                candidate_ids: HashSet::from(["p1".to_owned()]),
                ..Assignments::default()
            });
        let candidacy = |person: &str, track: &str| Owner {
            person_id: Some(person.to_owned()),
            track_id: Some(track.to_owned()),
            ..Owner::default()
        };
        assert!(caller.allows(Object::CertificateChange, &candidacy("p1", "track-1")));
        assert!(caller.allows(Object::CandidacyAssess, &candidacy("p1", "track-1")));
        assert!(!caller.allows(Object::CertificateChange, &candidacy("p1", "track-2")));
        assert!(!caller.allows(Object::CandidacyAssess, &candidacy("a1", "track-1")));
        assert!(caller.allows(Object::CandidacyRead, &candidacy("a1", "track-2")));
        let enrolment = |person: &str| Owner {
            person_id: Some(person.to_owned()),
            cohort_id: Some("c1".to_owned()),
            ..Owner::default()
        };
        assert!(caller.allows(Object::Progress, &enrolment("p1")));
        assert!(!caller.allows(Object::Progress, &enrolment("p2")));
        assert!(!caller.allows(Object::SurveyAnswer, &enrolment("p1")));
    }

    #[test]
    fn a_missing_object_is_not_found_only_for_callers_who_reach_everything() {
        let missing = || Error::not_found("candidacy", "x");
        let admin = Caller::new(principal("admin", &[Admin], None));
        let assessor = Caller::new(principal("a1", &[Assessor], None));
        assert!(matches!(
            admin.check_found::<Owner>(Object::CandidacyRead, "candidacy", "x", Err(missing())),
            Err(Error::NotFound { .. })
        ));
        let refused = assessor
            .check_found::<Owner>(Object::CandidacyRead, "candidacy", "x", Err(missing()))
            .unwrap_err();
        let foreign = assessor
            .check(
                Object::CandidacyRead,
                "candidacy",
                "x",
                &Owner::person("p", "/o/"),
            )
            .unwrap_err();
        assert_eq!(refused.to_string(), foreign.to_string());
        assert!(matches!(
            refused,
            Error::PermissionDenied {
                reason: Reason::OutOfScope,
                ..
            }
        ));
    }

    #[test]
    fn lists_are_narrowed_to_the_union_of_what_each_role_reaches() {
        let caller =
            Caller::new(principal("t1", &[Trainer, Learner], None)).with_assignments(Assignments {
                trained_cohort_ids: HashSet::from(["c1".to_owned()]),
                ..Assignments::default()
            });
        let visibility = caller.visibility(Object::LearnerRecord).unwrap();
        assert_eq!(visibility.person_ids, vec!["t1".to_owned()]);
        assert_eq!(visibility.cohort_ids, vec!["c1".to_owned()]);
        let admin = Caller::new(principal("admin", &[Admin], None));
        assert_eq!(admin.visibility(Object::LearnerRecord), None);
        let nobody = Caller::new(principal("hr", &[HrService], None));
        assert_eq!(
            nobody.visibility(Object::Attendance),
            Some(Visibility::default()),
            "a role with no reach sees no row"
        );
    }
}
