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
const PUBLIC_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

const MANAGERS: &[Role] = &[Admin, OrgAdmin, HrService];
const PEOPLE_READERS: &[Role] = &[Admin, OrgAdmin, HrService, ProgrammeManager];
const CATALOGUE_MANAGERS: &[Role] = &[Admin, ProgrammeManager];
const ENROLLERS: &[Role] = &[Admin, ProgrammeManager, OrgAdmin];
const ENROLLMENT_READERS: &[Role] = &[Admin, ProgrammeManager, OrgAdmin, HrService, Learner];
const PROGRESS_RECORDERS: &[Role] = &[Admin, ProgrammeManager, Trainer, Assessor, Learner, HrService];
const PROGRESS_READERS: &[Role] = &[Admin, ProgrammeManager, Trainer, Assessor, Learner, HrService, OrgAdmin];

/// Every `lms.v1` method and who may call it. Object-level checks (subtree, self) follow in the handlers.
#[rustfmt::skip]
pub const METHOD_POLICY: &[(&str, Access)] = &[
    ("/lms.v1.OrganizationService/CreateOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.OrganizationService/GetOrganization", Access::Authenticated),
    ("/lms.v1.OrganizationService/ListOrganizations", Access::Authenticated),
    ("/lms.v1.OrganizationService/UpdateOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.OrganizationService/MoveOrganization", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/GetPerson", Access::Roles(&[Admin, OrgAdmin, HrService, ProgrammeManager, Learner])),
    ("/lms.v1.PersonService/ListPeople", Access::Roles(PEOPLE_READERS)),
    ("/lms.v1.PersonService/UpdatePerson", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/BatchUpsertPeople", Access::Roles(MANAGERS)),
    ("/lms.v1.PersonService/ImportPeople", Access::Roles(MANAGERS)),
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
    ("/lms.v1.AuditService/ListAuditEntries", Access::Roles(&[Admin])),
    ("/lms.v1.AuditService/VerifyAuditChain", Access::Roles(&[Admin])),
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
            "/lms.v1.AuditService/ListAuditEntries",
        ] {
            assert!(
                !allows(method_access(method).unwrap(), &[Learner]),
                "{method}"
            );
        }
    }
}
