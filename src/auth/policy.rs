//! The per-method policy: which roles may call which RPC. Deny by default.

use super::Role::{self, Admin, Assessor, HrService, Learner, OrgAdmin, ProgrammeManager, Trainer};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, reflection).
    Public,
    /// Any authenticated caller.
    Authenticated,
    /// Callers holding at least one of these roles.
    Roles(&'static [Role]),
}

/// Path prefixes served without a token.
pub const PUBLIC_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

const MANAGERS: &[Role] = &[Admin, OrgAdmin, HrService];
const PEOPLE_READERS: &[Role] = &[Admin, OrgAdmin, HrService, ProgrammeManager];
const CATALOGUE_MANAGERS: &[Role] = &[Admin, ProgrammeManager];
const ENROLLERS: &[Role] = &[Admin, ProgrammeManager, OrgAdmin];
// Trainers and assessors read the enrolments they are assigned to (`scope::Object::LearnerRecord`).
const ENROLLMENT_READERS: &[Role] = &[
    Admin,
    ProgrammeManager,
    OrgAdmin,
    HrService,
    Trainer,
    Assessor,
    Learner,
];
const PROGRESS_RECORDERS: &[Role] = &[
    Admin,
    ProgrammeManager,
    Trainer,
    Assessor,
    Learner,
    HrService,
];
const PROGRESS_READERS: &[Role] = &[
    Admin,
    ProgrammeManager,
    Trainer,
    Assessor,
    Learner,
    HrService,
    OrgAdmin,
];

const SELECTION_MANAGERS: &[Role] = &[Admin, ProgrammeManager];
const APPLICANTS: &[Role] = &[Admin, ProgrammeManager, OrgAdmin, Learner];
// Judges are people named on a panel, whatever their other roles; object checks follow.
const SELECTION_JUDGES: &[Role] = &[
    Admin,
    ProgrammeManager,
    Assessor,
    Trainer,
    OrgAdmin,
    Learner,
];

const SESSION_SCHEDULERS: &[Role] = &[Admin, ProgrammeManager];
const SESSION_TRAINERS: &[Role] = &[Admin, ProgrammeManager, Trainer];
const CERTIFICATION_MANAGERS: &[Role] = &[Admin, ProgrammeManager];
const ASSESSORS: &[Role] = &[Admin, Assessor];
const CANDIDACY_MOVERS: &[Role] = &[Admin, ProgrammeManager, Assessor];
const CERTIFICATION_READERS: &[Role] = &[
    Admin,
    ProgrammeManager,
    Assessor,
    Trainer,
    HrService,
    OrgAdmin,
];
// Candidacies and certificates are read by their holder too, whatever their role.
const CANDIDACY_READERS: &[Role] = &[
    Admin,
    ProgrammeManager,
    Assessor,
    Trainer,
    HrService,
    OrgAdmin,
    Learner,
];

/// Every `lms.v1` method and who may call it. Which objects each caller may touch is
/// [`super::scope::OBJECT_RULES`], checked in the handlers.
#[rustfmt::skip]
pub const METHOD_POLICY: &[(&str, Access)] = &[
    ("/lms.v1.OrganizationService/CreateOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.OrganizationService/GetOrganization", Access::Authenticated),
    ("/lms.v1.OrganizationService/LookupOrganization", Access::Authenticated),
    ("/lms.v1.OrganizationService/BatchLookupOrganizations", Access::Authenticated),
    ("/lms.v1.OrganizationService/ListOrganizations", Access::Authenticated),
    ("/lms.v1.OrganizationService/UpdateOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.OrganizationService/MoveOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/GetPerson", Access::Roles(&[Admin, OrgAdmin, HrService, ProgrammeManager, Learner])),
    ("/lms.v1.PersonService/LookupPerson", Access::Roles(&[Admin, OrgAdmin, HrService, ProgrammeManager, Learner])),
    ("/lms.v1.PersonService/BatchLookupPeople", Access::Roles(PEOPLE_READERS)),
    ("/lms.v1.PersonService/ListPeople", Access::Roles(PEOPLE_READERS)),
    ("/lms.v1.PersonService/UpdatePerson", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/BatchUpsertPeople", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/ImportPeople", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/SyncPeople", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/CreateParticipantCategory", Access::Roles(&[Admin])),
    ("/lms.v1.PersonService/ListParticipantCategories", Access::Authenticated),
    ("/lms.v1.PersonService/UpdateParticipantCategory", Access::Roles(&[Admin])),
    ("/lms.v1.CourseService/CreateCourse", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/GetCourse", Access::Authenticated),
    ("/lms.v1.CourseService/ListCourses", Access::Authenticated),
    ("/lms.v1.CourseService/UpdateCourse", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/ArchiveCourse", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/CreateCourseVersion", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/GetCourseVersion", Access::Authenticated),
    ("/lms.v1.CourseService/ListCourseVersions", Access::Authenticated),
    ("/lms.v1.CourseService/PublishCourseVersion", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/CreateModule", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/UpdateModule", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/DeleteModule", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/ReorderModules", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/CreateActivity", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/UpdateActivity", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/DeleteActivity", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CourseService/ReorderActivities", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/CreateProgramme", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/GetProgramme", Access::Authenticated),
    ("/lms.v1.ProgrammeService/ListProgrammes", Access::Authenticated),
    ("/lms.v1.ProgrammeService/UpdateProgramme", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/ArchiveProgramme", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/CreateCohort", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/GetCohort", Access::Authenticated),
    ("/lms.v1.ProgrammeService/ListCohorts", Access::Authenticated),
    ("/lms.v1.ProgrammeService/UpdateCohort", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/ChangeCohortState", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.ProgrammeService/Enroll", Access::Roles(ENROLLERS)),
    ("/lms.v1.ProgrammeService/BatchEnroll", Access::Roles(ENROLLERS)),
    ("/lms.v1.ProgrammeService/Withdraw", Access::Roles(ENROLLERS)),
    ("/lms.v1.ProgrammeService/GetEnrollment", Access::Roles(ENROLLMENT_READERS)),
    ("/lms.v1.ProgrammeService/ListEnrollments", Access::Roles(ENROLLMENT_READERS)),
    ("/lms.v1.ProgressService/RecordProgress", Access::Roles(PROGRESS_RECORDERS)),
    ("/lms.v1.ProgressService/BatchRecordProgress", Access::Roles(PROGRESS_RECORDERS)),
    ("/lms.v1.ProgressService/StreamProgress", Access::Roles(PROGRESS_RECORDERS)),
    ("/lms.v1.ProgressService/GetEnrollmentProgress", Access::Roles(PROGRESS_READERS)),
    ("/lms.v1.ProgressService/ListProgress", Access::Roles(PROGRESS_READERS)),
    ("/lms.v1.ProgressService/RecomputeProgress", Access::Roles(&[Admin])),
    ("/lms.v1.ProgressService/ExportStatements", Access::Roles(&[Admin, ProgrammeManager, HrService])),
    ("/lms.v1.ProgressService/CreatePlacement", Access::Roles(ENROLLERS)),
    // Supervisors are people named on a placement, whatever their roles; object checks follow.
    ("/lms.v1.ProgressService/GetPlacement", Access::Roles(PROGRESS_READERS)),
    ("/lms.v1.ProgressService/ListPlacements", Access::Roles(PROGRESS_READERS)),
    ("/lms.v1.ProgressService/UpdatePlacement", Access::Roles(ENROLLERS)),
    ("/lms.v1.EventService/WatchEvents", Access::Roles(&[Admin, HrService])),
    ("/lms.v1.SurveyService/SubmitSurveyResponse", Access::Roles(&[Admin, ProgrammeManager, Trainer, Assessor, Learner])),
    ("/lms.v1.SurveyService/BatchSubmitSurveyResponses", Access::Roles(&[Admin, ProgrammeManager, Trainer, Assessor, Learner])),
    ("/lms.v1.SurveyService/GetSurveyResults", Access::Roles(&[Admin, ProgrammeManager, HrService, OrgAdmin])),
    ("/lms.v1.DeliveryService/CreateSession", Access::Roles(SESSION_SCHEDULERS)),
    ("/lms.v1.DeliveryService/GetSession", Access::Authenticated),
    ("/lms.v1.DeliveryService/ListSessions", Access::Authenticated),
    ("/lms.v1.DeliveryService/RescheduleSession", Access::Roles(SESSION_SCHEDULERS)),
    ("/lms.v1.DeliveryService/ChangeSessionTrainers", Access::Roles(SESSION_SCHEDULERS)),
    ("/lms.v1.DeliveryService/CancelSession", Access::Roles(SESSION_SCHEDULERS)),
    ("/lms.v1.DeliveryService/RecordAttendance", Access::Roles(SESSION_TRAINERS)),
    ("/lms.v1.DeliveryService/ListAttendance", Access::Roles(SESSION_TRAINERS)),
    ("/lms.v1.DeliveryService/MarkDelivered", Access::Roles(&[Admin, Trainer])),
    ("/lms.v1.CertificationService/CreateCertificationTrack", Access::Roles(CERTIFICATION_MANAGERS)),
    ("/lms.v1.CertificationService/GetCertificationTrack", Access::Authenticated),
    ("/lms.v1.CertificationService/ListCertificationTracks", Access::Authenticated),
    ("/lms.v1.CertificationService/SetTrackAssessors", Access::Roles(CERTIFICATION_MANAGERS)),
    ("/lms.v1.CertificationService/CreateCandidacy", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/GetCandidacy", Access::Roles(CANDIDACY_READERS)),
    ("/lms.v1.CertificationService/ListCandidacies", Access::Roles(CANDIDACY_READERS)),
    ("/lms.v1.CertificationService/StartTraining", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/BeginSupervisedPractice", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/SubmitForAssessment", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/RecordAssessment", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/ExtendCandidacyDeadline", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/WithdrawCandidacy", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/RevokeCandidacy", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/BatchCreateCandidacies", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/BatchAdvanceCandidacies", Access::Roles(CANDIDACY_MOVERS)),
    ("/lms.v1.CertificationService/RecordSupervisedDelivery", Access::Roles(&[Admin, Trainer])),
    ("/lms.v1.CertificationService/IssueCertificate", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/GetCertificate", Access::Roles(CANDIDACY_READERS)),
    ("/lms.v1.CertificationService/GetCertificateDocument", Access::Roles(CANDIDACY_READERS)),
    ("/lms.v1.CertificationService/ListCertificates", Access::Roles(CANDIDACY_READERS)),
    ("/lms.v1.CertificationService/RenewCertificate", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/SuspendCertificate", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/ReinstateCertificate", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/RevokeCertificate", Access::Roles(ASSESSORS)),
    ("/lms.v1.CertificationService/VerifyCertificate", Access::Public),
    ("/lms.v1.CertificationService/GetIssuerKeys", Access::Public),
    ("/lms.v1.CertificationService/GetStatusListCredential", Access::Public),
    ("/lms.v1.CertificationService/ListCertifiedTrainers", Access::Authenticated),
    ("/lms.v1.CertificationService/GetCascade", Access::Roles(CERTIFICATION_READERS)),
    ("/lms.v1.CertificationService/GetCascadeReach", Access::Roles(CERTIFICATION_READERS)),
    ("/lms.v1.ReportService/GetCompletionReport", Access::Roles(&[Admin, ProgrammeManager, HrService, OrgAdmin])),
    ("/lms.v1.ReportService/GetProgrammeDashboard", Access::Roles(&[Admin, ProgrammeManager, HrService])),
    ("/lms.v1.ReportService/GetCertificationReport", Access::Roles(&[Admin, ProgrammeManager, HrService, OrgAdmin])),
    ("/lms.v1.ReportService/ExportReport", Access::Roles(&[Admin, ProgrammeManager, HrService, OrgAdmin])),
    ("/lms.v1.ReportService/RebuildReportCounters", Access::Roles(&[Admin])),
    ("/lms.v1.AuditService/ListAuditEntries", Access::Roles(&[Admin])),
    ("/lms.v1.AuditService/VerifyAuditChain", Access::Roles(&[Admin])),
    ("/lms.v1.SelectionService/CreateCall", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/GetCall", Access::Authenticated),
    ("/lms.v1.SelectionService/ListCalls", Access::Authenticated),
    ("/lms.v1.SelectionService/UpdateCall", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/CloseCall", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/SubmitApplication", Access::Roles(APPLICANTS)),
    ("/lms.v1.SelectionService/WithdrawApplication", Access::Roles(APPLICANTS)),
    ("/lms.v1.SelectionService/GetApplication", Access::Roles(SELECTION_JUDGES)),
    ("/lms.v1.SelectionService/ListApplications", Access::Roles(APPLICANTS)),
    ("/lms.v1.SelectionService/CreatePanel", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/GetPanel", Access::Roles(&[Admin, ProgrammeManager, Assessor])),
    ("/lms.v1.SelectionService/AssignApplications", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/ListMyAssignments", Access::Roles(SELECTION_JUDGES)),
    ("/lms.v1.SelectionService/SubmitScore", Access::Roles(SELECTION_JUDGES)),
    ("/lms.v1.SelectionService/ListScores", Access::Roles(SELECTION_JUDGES)),
    ("/lms.v1.SelectionService/RankApplications", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.SelectionService/DecideApplications", Access::Roles(SELECTION_MANAGERS)),
    ("/lms.v1.CompetencyService/CreateCompetency", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CompetencyService/GetCompetency", Access::Authenticated),
    ("/lms.v1.CompetencyService/ListCompetencies", Access::Authenticated),
    ("/lms.v1.CompetencyService/UpdateCompetency", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CompetencyService/CreateRole", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CompetencyService/GetRole", Access::Authenticated),
    ("/lms.v1.CompetencyService/ListRoles", Access::Authenticated),
    ("/lms.v1.CompetencyService/UpdateRole", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CompetencyService/SetCompetencyTags", Access::Roles(CATALOGUE_MANAGERS)),
    ("/lms.v1.CompetencyService/GetCompetencyTags", Access::Authenticated),
    ("/lms.v1.CompetencyService/GetCompetencyProfile", Access::Roles(PROGRESS_READERS)),
    ("/lms.v1.CompetencyService/SearchCompetencyHolders", Access::Roles(&[Admin, ProgrammeManager, HrService, OrgAdmin])),
];

/// Returns who may call the method at `path`, or `None` for a method nobody may call.
pub fn method_access(path: &str) -> Option<Access> {
    if PUBLIC_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        return Some(Access::Public);
    }
    METHOD_POLICY
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, access)| *access)
}

/// Returns true when a caller with `roles` may call a method with `access`.
pub fn allows(access: Access, roles: &[Role]) -> bool {
    match access {
        Access::Public | Access::Authenticated => true,
        Access::Roles(allowed) => roles.iter().any(|role| allowed.contains(role)),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn served_methods() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        methods
    }

    #[test]
    fn the_policy_covers_every_method_and_nothing_else() {
        let methods = served_methods();
        for method in &methods {
            assert!(method_access(method).is_some(), "{method} has no policy");
        }
        for (method, _) in METHOD_POLICY {
            assert!(
                methods.iter().any(|served| served == method),
                "{method} is not served"
            );
        }
    }

    #[test]
    fn unknown_methods_are_denied() {
        assert_eq!(
            method_access("/lms.v1.OrganizationService/DeleteEverything"),
            None
        );
    }

    #[test]
    fn a_learner_cannot_create_organisations_or_import_people() {
        for method in [
            "/lms.v1.OrganizationService/CreateOrganization",
            "/lms.v1.PersonService/BatchUpsertPeople",
            "/lms.v1.PersonService/ImportPeople",
            "/lms.v1.PersonService/SyncPeople",
            "/lms.v1.PersonService/BatchLookupPeople",
            "/lms.v1.AuditService/ListAuditEntries",
        ] {
            assert!(
                !allows(method_access(method).unwrap(), &[Learner]),
                "{method}"
            );
        }
    }
}
