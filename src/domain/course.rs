//! The catalogue: courses, their versions, modules and activities, and the rules of drafts,
//! publication, prerequisites and activity kinds.
//!
//! A course is taught from versions. A version is a DRAFT until it is published; publishing
//! validates it ([`CourseVersion::completion_rule_for_publication`]) and freezes it for good
//! ([`CourseVersion::check_editable`]). A course has at most one DRAFT version at a time
//! ([`check_no_open_draft`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::domain::survey::{RawQuestion, SurveyQuestion, parse_questions};
use crate::error::{Error, Reason, Result, Violations};

/// Longest course code.
pub const MAX_CODE_CHARS: usize = 32;
/// Longest course, module or activity title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest course description.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Largest expected effort of an activity, in minutes (a year).
pub const MAX_EXPECTED_MINUTES: i32 = 525_600;
/// Largest pass mark of an assessment.
pub const MAX_PASS_SCORE: i32 = 100;
/// Longest `query` of `ListCourses`.
pub const MAX_QUERY_CHARS: usize = 200;

/// Resource type of courses in errors and audit entries.
pub const COURSE: &str = "course";
/// Resource type of course versions in errors and audit entries.
pub const COURSE_VERSION: &str = "course_version";
/// Resource type of modules in errors and audit entries.
pub const MODULE: &str = "module";
/// Resource type of activities in errors and audit entries.
pub const ACTIVITY: &str = "activity";

/// Lifecycle of a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CourseState {
    /// No version published yet.
    Draft,
    /// At least one version published.
    Published,
    /// Closed to new enrolments and to edits.
    Archived,
}

impl CourseState {
    const ALL: [(Self, &'static str); 3] = [
        (Self::Draft, "DRAFT"),
        (Self::Published, "PUBLISHED"),
        (Self::Archived, "ARCHIVED"),
    ];

    /// Returns the stored name of the state.
    pub fn as_str(self) -> &'static str {
        stored_name(&Self::ALL, self)
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        parse_stored(&Self::ALL, name)
    }
}

/// Lifecycle of a course version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Editable.
    Draft,
    /// Frozen.
    Published,
}

impl VersionState {
    const ALL: [(Self, &'static str); 2] = [(Self::Draft, "DRAFT"), (Self::Published, "PUBLISHED")];

    /// Returns the stored name of the state.
    pub fn as_str(self) -> &'static str {
        stored_name(&Self::ALL, self)
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        parse_stored(&Self::ALL, name)
    }
}

/// Kind of activity; serialised (in completion rules) as its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityKind {
    /// A lecture.
    Lecture,
    /// A hands-on lab.
    Lab,
    /// A simulation.
    Simulation,
    /// A field visit at a host organisation.
    FieldVisit,
    /// A case study.
    CaseStudy,
    /// A workshop.
    Workshop,
    /// An industry attachment at a host organisation.
    IndustryAttachment,
    /// An assessment with a pass mark.
    Assessment,
    /// A survey.
    Survey,
    /// Self-study.
    SelfStudy,
}

impl ActivityKind {
    /// Every kind with its stored name.
    pub const ALL: [(Self, &'static str); 10] = [
        (Self::Lecture, "LECTURE"),
        (Self::Lab, "LAB"),
        (Self::Simulation, "SIMULATION"),
        (Self::FieldVisit, "FIELD_VISIT"),
        (Self::CaseStudy, "CASE_STUDY"),
        (Self::Workshop, "WORKSHOP"),
        (Self::IndustryAttachment, "INDUSTRY_ATTACHMENT"),
        (Self::Assessment, "ASSESSMENT"),
        (Self::Survey, "SURVEY"),
        (Self::SelfStudy, "SELF_STUDY"),
    ];

    /// Returns the stored name of the kind.
    pub fn as_str(self) -> &'static str {
        stored_name(&Self::ALL, self)
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        parse_stored(&Self::ALL, name)
    }

    /// Returns true for kinds whose completion needs a supervisor's sign-off.
    pub fn requires_sign_off(self) -> bool {
        matches!(self, Self::FieldVisit | Self::IndustryAttachment)
    }

    /// Returns true for kinds that take place at a host organisation (and only those may name one).
    pub fn needs_host_organization(self) -> bool {
        matches!(self, Self::FieldVisit | Self::IndustryAttachment)
    }

    /// Returns true for kinds that have a pass mark (and only those may have one).
    pub fn needs_pass_score(self) -> bool {
        self == Self::Assessment
    }
}

/// How an activity is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Online.
    Online,
    /// In person.
    InPerson,
    /// Both.
    Blended,
}

impl DeliveryMode {
    const ALL: [(Self, &'static str); 3] = [
        (Self::Online, "ONLINE"),
        (Self::InPerson, "IN_PERSON"),
        (Self::Blended, "BLENDED"),
    ];

    /// Returns the stored name of the mode.
    pub fn as_str(self) -> &'static str {
        stored_name(&Self::ALL, self)
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        parse_stored(&Self::ALL, name)
    }
}

fn stored_name<T: PartialEq + Copy>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(candidate, _)| *candidate == value)
        .map(|(_, name)| *name)
        .unwrap_or("UNSPECIFIED")
}

fn parse_stored<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table
        .iter()
        .find(|(_, stored)| *stored == name)
        .map(|(value, _)| *value)
}

/// The editable fields of a course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseValues {
    /// Title.
    pub title: String,
    /// Description; may be empty.
    pub description: String,
    /// Organisation that provides the course.
    pub provider_organization_id: String,
}

/// A course as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    /// UUIDv7.
    pub id: String,
    /// Unique code; never changes.
    pub code: String,
    /// Editable fields.
    pub values: CourseValues,
    /// Lifecycle state.
    pub state: CourseState,
    /// Number of the latest published version; 0 when none is.
    pub latest_version: i32,
    /// Id of the latest published version.
    pub latest_version_id: Option<String>,
    /// Incremented on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

impl Course {
    /// Fails with FAILED_PRECONDITION (`COURSE_ARCHIVED`) when the course is archived: an archived
    /// course takes no metadata changes, no new versions and no publications.
    pub fn check_editable(&self) -> Result<()> {
        if self.state == CourseState::Archived {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::CourseArchived,
                subject: format!("{COURSE}/{}", self.id),
                message: format!("course {} is archived and cannot change", self.code),
            });
        }
        Ok(())
    }

    /// Archives the course; returns false when it was archived already (archiving is idempotent).
    pub fn archive(&mut self) -> bool {
        if self.state == CourseState::Archived {
            return false;
        }
        self.state = CourseState::Archived;
        true
    }

    /// Records that `version` was published: it becomes the latest, and a DRAFT course becomes PUBLISHED.
    pub fn record_publication(&mut self, version: &CourseVersion) {
        debug_assert_eq!(version.course_id, self.id);
        if version.version >= self.latest_version {
            self.latest_version = version.version;
            self.latest_version_id = Some(version.id.clone());
        }
        if self.state == CourseState::Draft {
            self.state = CourseState::Published;
        }
    }
}

/// A validated request to create a course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCourse {
    /// Unique code.
    pub code: String,
    /// Editable fields.
    pub values: CourseValues,
}

impl NewCourse {
    /// Validates the fields of a create request; `prefix` is the proto path of the message.
    pub fn parse(
        prefix: &str,
        code: &str,
        title: &str,
        description: &str,
        provider_organization_id: &str,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        validate_code(&mut violations, &format!("{prefix}.code"), code);
        let title = validate_title(&mut violations, &format!("{prefix}.title"), title);
        validate_description(
            &mut violations,
            &format!("{prefix}.description"),
            description,
        );
        let provider_organization_id = required_id_in(
            &mut violations,
            &format!("{prefix}.provider_organization_id"),
            provider_organization_id,
        );
        violations.into_result(Self {
            code: code.to_owned(),
            values: CourseValues {
                title,
                description: description.to_owned(),
                provider_organization_id,
            },
        })
    }
}

/// A field of a course that `UpdateCourse` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CourseField {
    /// `title`.
    Title,
    /// `description`.
    Description,
    /// `provider_organization_id`.
    ProviderOrganizationId,
}

impl CourseField {
    /// Every updatable field.
    pub const ALL: [Self; 3] = [Self::Title, Self::Description, Self::ProviderOrganizationId];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 7] = [
        "id",
        "state",
        "latest_version",
        "latest_version_id",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path (`code` is immutable and so unknown here).
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "title" => Some(Self::Title),
            "description" => Some(Self::Description),
            "provider_organization_id" => Some(Self::ProviderOrganizationId),
            _ => None,
        }
    }
}

/// Validated new values of a course update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoursePatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New provider.
    pub provider_organization_id: Option<String>,
}

impl CoursePatch {
    /// Validates the values of the fields named in `fields`.
    pub fn parse(
        prefix: &str,
        fields: &[CourseField],
        title: &str,
        description: &str,
        provider_organization_id: &str,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                CourseField::Title => {
                    patch.title = Some(validate_title(
                        &mut violations,
                        &format!("{prefix}.title"),
                        title,
                    ));
                }
                CourseField::Description => {
                    validate_description(
                        &mut violations,
                        &format!("{prefix}.description"),
                        description,
                    );
                    patch.description = Some(description.to_owned());
                }
                CourseField::ProviderOrganizationId => {
                    patch.provider_organization_id = Some(required_id_in(
                        &mut violations,
                        &format!("{prefix}.provider_organization_id"),
                        provider_organization_id,
                    ));
                }
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch to `values`; returns false when nothing changes.
    pub fn apply(&self, values: &mut CourseValues) -> bool {
        let before = values.clone();
        if let Some(title) = &self.title {
            values.title.clone_from(title);
        }
        if let Some(description) = &self.description {
            values.description.clone_from(description);
        }
        if let Some(provider) = &self.provider_organization_id {
            values.provider_organization_id.clone_from(provider);
        }
        *values != before
    }
}

/// Validates the `query` of `ListCourses`; returns it lowercased, or `None` when empty.
pub fn parse_course_query(field: &str, query: &str) -> Result<Option<String>> {
    let trimmed = query.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    Ok(Some(trimmed.to_lowercase()))
}

/// When a learner has completed a version, as data; stored (as JSON) at publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionRule {
    /// One rule per module, in order.
    pub modules: Vec<ModuleRule>,
}

/// Completion rule of one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRule {
    /// The module.
    pub module_id: String,
    /// Whether the course needs it.
    pub required: bool,
    /// Modules to complete first.
    pub prerequisite_module_ids: Vec<String>,
    /// One rule per activity, in order.
    pub activities: Vec<ActivityRule>,
}

/// Completion rule of one activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRule {
    /// The activity.
    pub activity_id: String,
    /// Whether the module needs it.
    pub required: bool,
    /// Its kind.
    pub kind: ActivityKind,
    /// Pass mark (assessments).
    pub pass_score: Option<i32>,
    /// Whether completion needs a supervisor's sign-off.
    pub requires_sign_off: bool,
}

/// A version of a course as stored, with its modules when they were loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseVersion {
    /// UUIDv7.
    pub id: String,
    /// The course.
    pub course_id: String,
    /// 1, 2, 3, ... per course.
    pub version: i32,
    /// Lifecycle state.
    pub state: VersionState,
    /// Set at publication.
    pub completion_rule: Option<CompletionRule>,
    /// The published version this one was copied from.
    pub copied_from_version_id: Option<String>,
    /// Incremented on every change of the version or of its modules and activities; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
    /// Publication time.
    pub publish_time: Option<DateTime<Utc>>,
    /// Modules in order, each with its activities in order (empty when not loaded).
    pub modules: Vec<Module>,
}

impl CourseVersion {
    /// Returns a new, empty DRAFT version numbered `version` of `course_id`.
    pub fn new_draft(
        course_id: &str,
        version: i32,
        copied_from_version_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: crate::domain::new_id(),
            course_id: course_id.to_owned(),
            version,
            state: VersionState::Draft,
            completion_rule: None,
            copied_from_version_id,
            revision: 1,
            create_time: now,
            update_time: now,
            publish_time: None,
            modules: Vec::new(),
        }
    }

    /// Fails with FAILED_PRECONDITION (`VERSION_PUBLISHED`) unless the version is a DRAFT: a
    /// published version is immutable, modules and activities included.
    pub fn check_editable(&self) -> Result<()> {
        if self.state == VersionState::Published {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::VersionPublished,
                subject: format!("{COURSE_VERSION}/{}", self.id),
                message: format!(
                    "course version {} is published and cannot change; start a new version copied from it",
                    self.id
                ),
            });
        }
        Ok(())
    }

    /// Checks that this version may be copied into a new draft of `course_id`.
    pub fn check_copy_source(&self, course_id: &str) -> Result<()> {
        if self.course_id != course_id {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::VersionOfAnotherCourse,
                subject: format!("{COURSE_VERSION}/{}", self.id),
                message: format!(
                    "copy_from_version_id {} is a version of another course",
                    self.id
                ),
            });
        }
        if self.state != VersionState::Published {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::VersionNotPublished,
                subject: format!("{COURSE_VERSION}/{}", self.id),
                message: format!(
                    "copy_from_version_id {} is not published; only published versions can be copied",
                    self.id
                ),
            });
        }
        Ok(())
    }

    /// Validates the version (with its modules loaded) for publication and returns its completion rule.
    ///
    /// Every problem found is reported, in one FAILED_PRECONDITION (`VERSION_INVALID`): no modules;
    /// a module without activities; an assessment without a pass mark in 0-100; an activity breaking
    /// the rules of its kind; a prerequisite outside the version; a prerequisite cycle; no required
    /// module. A version that is published already answers `VERSION_PUBLISHED`.
    pub fn completion_rule_for_publication(&self) -> Result<CompletionRule> {
        self.check_editable()?;
        let problems = publication_problems(&self.modules);
        if !problems.is_empty() {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::VersionInvalid,
                subject: format!("{COURSE_VERSION}/{}", self.id),
                message: format!(
                    "course version cannot be published: {}",
                    problems.join("; ")
                ),
            });
        }
        Ok(completion_rule(&self.modules))
    }

    /// Marks the version published at `now` with `rule`.
    pub fn publish(&mut self, rule: CompletionRule, now: DateTime<Utc>) {
        self.state = VersionState::Published;
        self.completion_rule = Some(rule);
        self.publish_time = Some(now);
        self.revision += 1;
        self.update_time = now;
    }
}

/// Returns every reason why `modules` cannot be published, in a stable order; empty when they can.
pub fn publication_problems(modules: &[Module]) -> Vec<String> {
    let mut problems = Vec::new();
    if modules.is_empty() {
        problems.push("the version has no modules".to_owned());
        return problems;
    }
    let module_ids: HashSet<&str> = modules.iter().map(|module| module.id.as_str()).collect();
    for module in modules {
        let name = format!("module {} \"{}\"", module.position, module.values.title);
        if module.activities.is_empty() {
            problems.push(format!("{name} has no activities"));
        }
        for prerequisite in &module.values.prerequisite_module_ids {
            if prerequisite == &module.id {
                problems.push(format!("{name} is its own prerequisite"));
            } else if !module_ids.contains(prerequisite.as_str()) {
                problems.push(format!(
                    "{name} has prerequisite {prerequisite}, which is not a module of this version"
                ));
            }
        }
        for activity in &module.activities {
            let activity_name = format!(
                "activity {} \"{}\" of {name}",
                activity.position, activity.values.title
            );
            let values = &activity.values;
            if values.kind.needs_pass_score()
                && !values
                    .pass_score
                    .is_some_and(|score| (0..=MAX_PASS_SCORE).contains(&score))
            {
                problems.push(format!(
                    "{activity_name} is an ASSESSMENT without a pass_score in 0-{MAX_PASS_SCORE}"
                ));
            } else if let Err(Error::InvalidArgument(violations)) = check_kind_rules("", values) {
                for violation in violations.as_slice() {
                    problems.push(format!(
                        "{activity_name}: {} {}",
                        violation.field.trim_start_matches('.'),
                        violation.description
                    ));
                }
            }
        }
    }
    let graph: Vec<(String, Vec<String>)> = modules
        .iter()
        .map(|module| {
            (
                module.id.clone(),
                module.values.prerequisite_module_ids.clone(),
            )
        })
        .collect();
    if let Some(cycle) = find_prerequisite_cycle(&graph) {
        problems.push(format!(
            "prerequisites form a cycle: {}",
            describe_cycle(&cycle, modules)
        ));
    }
    if !modules.iter().any(|module| module.values.required) {
        problems.push("no module is required".to_owned());
    }
    problems
}

fn completion_rule(modules: &[Module]) -> CompletionRule {
    CompletionRule {
        modules: modules
            .iter()
            .map(|module| ModuleRule {
                module_id: module.id.clone(),
                required: module.values.required,
                prerequisite_module_ids: module.values.prerequisite_module_ids.clone(),
                activities: module
                    .activities
                    .iter()
                    .map(|activity| ActivityRule {
                        activity_id: activity.id.clone(),
                        required: activity.values.required,
                        kind: activity.values.kind,
                        pass_score: activity.values.pass_score,
                        requires_sign_off: activity.requires_sign_off(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn describe_cycle(cycle: &[String], modules: &[Module]) -> String {
    let titles: HashMap<&str, &str> = modules
        .iter()
        .map(|module| (module.id.as_str(), module.values.title.as_str()))
        .collect();
    let mut names: Vec<String> = cycle
        .iter()
        .map(|id| format!("\"{}\"", titles.get(id.as_str()).copied().unwrap_or(id)))
        .collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    names.join(" -> ")
}

/// Fails with FAILED_PRECONDITION (`DRAFT_EXISTS`) when the course has a DRAFT version already:
/// a course has at most one draft at a time, so two editors never diverge on two drafts.
pub fn check_no_open_draft(course: &Course, open_draft: Option<&CourseVersion>) -> Result<()> {
    match open_draft {
        Some(draft) => Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::DraftExists,
            subject: format!("{COURSE_VERSION}/{}", draft.id),
            message: format!(
                "course {} has a draft version already ({}); edit or publish it first",
                course.code, draft.id
            ),
        }),
        None => Ok(()),
    }
}

/// Returns the number of the next version of a course whose highest version is `highest` (if any).
pub fn next_version_number(highest: Option<i32>) -> i32 {
    highest.unwrap_or(0) + 1
}

/// Returns deep copies of `source` modules for the draft `version_id`: new ids for every module
/// and activity, prerequisites remapped to the new module ids.
pub fn copy_modules(source: &[Module], version_id: &str, now: DateTime<Utc>) -> Vec<Module> {
    let new_ids: HashMap<&str, String> = source
        .iter()
        .map(|module| (module.id.as_str(), crate::domain::new_id()))
        .collect();
    source
        .iter()
        .map(|module| {
            let module_id = new_ids
                .get(module.id.as_str())
                .cloned()
                .unwrap_or_else(crate::domain::new_id);
            let prerequisite_module_ids = module
                .values
                .prerequisite_module_ids
                .iter()
                // A published version's prerequisites all lie inside it; anything else is dropped.
                .filter_map(|prerequisite| new_ids.get(prerequisite.as_str()).cloned())
                .collect();
            let activities = module
                .activities
                .iter()
                .map(|activity| Activity {
                    id: crate::domain::new_id(),
                    module_id: module_id.clone(),
                    course_version_id: version_id.to_owned(),
                    position: activity.position,
                    values: activity.values.clone(),
                    revision: 1,
                    create_time: now,
                    update_time: now,
                })
                .collect();
            Module {
                id: module_id,
                course_version_id: version_id.to_owned(),
                position: module.position,
                values: ModuleValues {
                    title: module.values.title.clone(),
                    required: module.values.required,
                    prerequisite_module_ids,
                },
                activities,
                revision: 1,
                create_time: now,
                update_time: now,
            }
        })
        .collect()
}

/// Who may read DRAFT versions: catalogue managers see them, everybody else gets NOT_FOUND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftAccess {
    /// Drafts are visible (admins, programme managers).
    Visible,
    /// Drafts do not exist for this caller.
    Hidden,
}

impl DraftAccess {
    /// Returns the access of a caller holding `roles`.
    pub fn of(roles: &[Role]) -> Self {
        if roles
            .iter()
            .any(|role| matches!(role, Role::Admin | Role::ProgrammeManager))
        {
            Self::Visible
        } else {
            Self::Hidden
        }
    }

    /// Fails with NOT_FOUND when `version` is a draft the caller may not see.
    pub fn check(self, version: &CourseVersion) -> Result<()> {
        if self == Self::Hidden && version.state == VersionState::Draft {
            return Err(Error::not_found(COURSE_VERSION, &version.id));
        }
        Ok(())
    }

    /// Returns the states a listing may return, given the state the caller asked for (empty: none).
    pub fn listable_states(self, requested: Option<VersionState>) -> Vec<VersionState> {
        let visible: &[VersionState] = match self {
            Self::Visible => &[VersionState::Draft, VersionState::Published],
            Self::Hidden => &[VersionState::Published],
        };
        visible
            .iter()
            .copied()
            .filter(|state| requested.is_none_or(|requested| requested == *state))
            .collect()
    }
}

/// The editable fields of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleValues {
    /// Title.
    pub title: String,
    /// Whether course completion requires it.
    pub required: bool,
    /// Modules of the same version to complete first.
    pub prerequisite_module_ids: Vec<String>,
}

impl ModuleValues {
    /// Validates the fields of a create request; prerequisites are checked against the version
    /// later, with [`check_prerequisites`].
    pub fn parse(
        prefix: &str,
        title: &str,
        required: bool,
        prerequisite_module_ids: &[String],
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let title = validate_title(&mut violations, &format!("{prefix}.title"), title);
        validate_prerequisite_ids(
            &mut violations,
            &format!("{prefix}.prerequisite_module_ids"),
            prerequisite_module_ids,
        );
        violations.into_result(Self {
            title,
            required,
            prerequisite_module_ids: prerequisite_module_ids.to_vec(),
        })
    }
}

/// A module of a course version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// UUIDv7.
    pub id: String,
    /// The version.
    pub course_version_id: String,
    /// 1-based position in the version.
    pub position: i32,
    /// Editable fields.
    pub values: ModuleValues,
    /// Activities in order (empty when not loaded).
    pub activities: Vec<Activity>,
    /// Incremented on every change of the module's own fields and position; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

/// A field of a module that `UpdateModule` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleField {
    /// `title`.
    Title,
    /// `required`.
    Required,
    /// `prerequisite_module_ids`.
    PrerequisiteModuleIds,
}

impl ModuleField {
    /// Every updatable field.
    pub const ALL: [Self; 3] = [Self::Title, Self::Required, Self::PrerequisiteModuleIds];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 7] = [
        "id",
        "course_version_id",
        "position",
        "activities",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "title" => Some(Self::Title),
            "required" => Some(Self::Required),
            "prerequisite_module_ids" => Some(Self::PrerequisiteModuleIds),
            _ => None,
        }
    }
}

/// Validated new values of a module update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePatch {
    /// New title.
    pub title: Option<String>,
    /// New `required`.
    pub required: Option<bool>,
    /// New prerequisites.
    pub prerequisite_module_ids: Option<Vec<String>>,
}

impl ModulePatch {
    /// Validates the values of the fields named in `fields`.
    pub fn parse(
        prefix: &str,
        fields: &[ModuleField],
        title: &str,
        required: bool,
        prerequisite_module_ids: &[String],
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                ModuleField::Title => {
                    patch.title = Some(validate_title(
                        &mut violations,
                        &format!("{prefix}.title"),
                        title,
                    ));
                }
                ModuleField::Required => patch.required = Some(required),
                ModuleField::PrerequisiteModuleIds => {
                    validate_prerequisite_ids(
                        &mut violations,
                        &format!("{prefix}.prerequisite_module_ids"),
                        prerequisite_module_ids,
                    );
                    patch.prerequisite_module_ids = Some(prerequisite_module_ids.to_vec());
                }
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch to `values`; returns false when nothing changes.
    pub fn apply(&self, values: &mut ModuleValues) -> bool {
        let before = values.clone();
        if let Some(title) = &self.title {
            values.title.clone_from(title);
        }
        if let Some(required) = self.required {
            values.required = required;
        }
        if let Some(prerequisites) = &self.prerequisite_module_ids {
            values.prerequisite_module_ids.clone_from(prerequisites);
        }
        *values != before
    }
}

fn validate_prerequisite_ids(violations: &mut Violations, field: &str, ids: &[String]) {
    let mut seen = HashSet::new();
    for id in ids {
        if !crate::domain::is_uuid(id) {
            violations.add(field, format!("{id:?} is not a UUID"));
        } else if !seen.insert(id.as_str()) {
            violations.add(field, format!("lists {id} more than once"));
        }
    }
}

/// Checks the prerequisites `prerequisite_module_ids` of module `module_id` against the
/// `version_modules` (without or with that module, as stored).
///
/// Each must be another module of the same version (else INVALID_ARGUMENT on `field`), and the
/// graph they make with the other modules' prerequisites must stay acyclic (else
/// FAILED_PRECONDITION `PREREQUISITE_CYCLE`).
pub fn check_prerequisites(
    field: &str,
    module_id: &str,
    prerequisite_module_ids: &[String],
    version_modules: &[Module],
) -> Result<()> {
    let mut violations = Violations::new();
    for prerequisite in prerequisite_module_ids {
        if prerequisite == module_id {
            violations.add(field, "a module cannot be its own prerequisite");
        } else if !version_modules
            .iter()
            .any(|module| &module.id == prerequisite)
        {
            violations.add(
                field,
                format!("{prerequisite} is not a module of this version"),
            );
        }
    }
    violations.into_result(())?;
    let mut graph: Vec<(String, Vec<String>)> = version_modules
        .iter()
        .filter(|module| module.id != module_id)
        .map(|module| {
            (
                module.id.clone(),
                module.values.prerequisite_module_ids.clone(),
            )
        })
        .collect();
    graph.push((module_id.to_owned(), prerequisite_module_ids.to_vec()));
    if let Some(cycle) = find_prerequisite_cycle(&graph) {
        let mut titled = version_modules.to_vec();
        titled.retain(|module| cycle.contains(&module.id));
        return Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::PrerequisiteCycle,
            subject: format!("{MODULE}/{module_id}"),
            message: format!(
                "these prerequisites would form a cycle: {}",
                describe_cycle(&cycle, &titled)
            ),
        });
    }
    Ok(())
}

/// Returns the modules of a cycle of the prerequisite graph (each node with the nodes it depends
/// on), in dependency order, or `None` when the graph is acyclic. Edges to unknown nodes are ignored.
pub fn find_prerequisite_cycle(graph: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let index: HashMap<&str, usize> = graph
        .iter()
        .enumerate()
        .map(|(position, (id, _))| (id.as_str(), position))
        .collect();
    let edges: Vec<Vec<usize>> = graph
        .iter()
        .map(|(_, targets)| {
            targets
                .iter()
                .filter_map(|target| index.get(target.as_str()).copied())
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::Unvisited; graph.len()];
    for start in 0..graph.len() {
        if marks[start] != Mark::Unvisited {
            continue;
        }
        // Iterative DFS: the stack holds (node, next edge to follow); `path` mirrors it.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some((node, next_edge)) = stack.last().copied() {
            if let Some(&target) = edges[node].get(next_edge) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks[target] {
                    Mark::Unvisited => {
                        marks[target] = Mark::OnPath;
                        stack.push((target, 0));
                    }
                    Mark::OnPath => {
                        let from = stack
                            .iter()
                            .position(|(on_path, _)| *on_path == target)
                            .unwrap_or(0);
                        return Some(
                            stack[from..]
                                .iter()
                                .map(|(on_path, _)| graph[*on_path].0.clone())
                                .collect(),
                        );
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// Checks that `requested` lists every id of `current` exactly once (else INVALID_ARGUMENT on `field`).
pub fn check_complete_order(field: &str, current: &[String], requested: &[String]) -> Result<()> {
    let known: HashSet<&str> = current.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut violations = Violations::new();
    for id in requested {
        if !known.contains(id.as_str()) {
            violations.add(field, format!("{id} is not one of the items being ordered"));
        } else if !seen.insert(id.as_str()) {
            violations.add(field, format!("lists {id} more than once"));
        }
    }
    if violations.is_empty() && seen.len() != known.len() {
        violations.add(
            field,
            format!(
                "must list every one of the {} items exactly once; {} are missing",
                known.len(),
                known.len() - seen.len()
            ),
        );
    }
    violations.into_result(())
}

/// Returns `(id, new position)` for the items of `current` (id, position) whose 1-based
/// position changes when they are put in the order `new_order`.
pub fn position_changes(current: &[(String, i32)], new_order: &[String]) -> Vec<(String, i32)> {
    let positions: HashMap<&str, i32> = current
        .iter()
        .map(|(id, position)| (id.as_str(), *position))
        .collect();
    new_order
        .iter()
        .zip(1..)
        .filter(|(id, new_position)| positions.get(id.as_str()) != Some(new_position))
        .map(|(id, new_position)| (id.clone(), new_position))
        .collect()
}

/// Returns the 1-based position of an item appended after the item at `last_position` (if any).
pub fn next_position(last_position: Option<i32>) -> i32 {
    last_position.unwrap_or(0) + 1
}

/// The editable fields of an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityValues {
    /// Title.
    pub title: String,
    /// Kind.
    pub kind: ActivityKind,
    /// Whether module completion requires it.
    pub required: bool,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Expected effort in minutes.
    pub expected_minutes: i32,
    /// Pass mark (assessments only).
    pub pass_score: Option<i32>,
    /// Host organisation (field visits and industry attachments only).
    pub host_organization_id: Option<String>,
    /// Questions (SURVEY activities only).
    pub survey_questions: Vec<SurveyQuestion>,
}

/// The fields of an activity as a request carries them, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawActivity<'a> {
    /// Title.
    pub title: &'a str,
    /// Kind; `None` when unset or unknown.
    pub kind: Option<ActivityKind>,
    /// Whether module completion requires it.
    pub required: bool,
    /// Delivery mode; `None` when unset or unknown.
    pub delivery_mode: Option<DeliveryMode>,
    /// Expected effort in minutes.
    pub expected_minutes: i32,
    /// Pass mark.
    pub pass_score: Option<i32>,
    /// Host organisation id; empty for none.
    pub host_organization_id: &'a str,
    /// Survey questions, before validation.
    pub survey_questions: &'a [RawQuestion],
}

impl ActivityValues {
    /// Validates the fields of a create request, including the rules of its kind.
    pub fn parse(prefix: &str, raw: &RawActivity<'_>) -> Result<Self> {
        let mut violations = Violations::new();
        let title = validate_title(&mut violations, &format!("{prefix}.title"), raw.title);
        if raw.kind.is_none() {
            violations.add(
                format!("{prefix}.kind"),
                "is required (one of the ActivityKind values)",
            );
        }
        if raw.delivery_mode.is_none() {
            violations.add(
                format!("{prefix}.delivery_mode"),
                "is required (one of the DeliveryMode values)",
            );
        }
        validate_expected_minutes(
            &mut violations,
            &format!("{prefix}.expected_minutes"),
            raw.expected_minutes,
        );
        validate_pass_score(
            &mut violations,
            &format!("{prefix}.pass_score"),
            raw.pass_score,
        );
        let host_organization_id = optional_id_in(
            &mut violations,
            &format!("{prefix}.host_organization_id"),
            raw.host_organization_id,
        );
        let survey_questions = parse_survey_questions(
            &mut violations,
            &format!("{prefix}.survey_questions"),
            raw.survey_questions,
        );
        let (Some(kind), Some(delivery_mode)) = (raw.kind, raw.delivery_mode) else {
            return Err(Error::InvalidArgument(violations));
        };
        let values = Self {
            title,
            kind,
            required: raw.required,
            delivery_mode,
            expected_minutes: raw.expected_minutes,
            pass_score: raw.pass_score,
            host_organization_id,
            survey_questions,
        };
        if let Err(Error::InvalidArgument(kind_violations)) = check_kind_rules(prefix, &values) {
            for violation in kind_violations.as_slice() {
                violations.add(violation.field.clone(), violation.description.clone());
            }
        }
        violations.into_result(values)
    }
}

/// Checks the rules that tie an activity's fields to its kind: a pass mark for assessments and
/// only for them; a host organisation for field visits and industry attachments and only for them.
pub fn check_kind_rules(prefix: &str, values: &ActivityValues) -> Result<()> {
    let mut violations = Violations::new();
    let kind = values.kind;
    match (kind.needs_pass_score(), values.pass_score) {
        (true, None) => violations.add(
            format!("{prefix}.pass_score"),
            "is required for ASSESSMENT activities",
        ),
        (false, Some(_)) => violations.add(
            format!("{prefix}.pass_score"),
            format!(
                "is only allowed for ASSESSMENT activities, not {}",
                kind.as_str()
            ),
        ),
        _ => {}
    }
    match (kind.needs_host_organization(), &values.host_organization_id) {
        (true, None) => violations.add(
            format!("{prefix}.host_organization_id"),
            format!("is required for {} activities", kind.as_str()),
        ),
        (false, Some(_)) => violations.add(
            format!("{prefix}.host_organization_id"),
            format!(
                "is only allowed for FIELD_VISIT and INDUSTRY_ATTACHMENT activities, not {}",
                kind.as_str()
            ),
        ),
        _ => {}
    }
    if kind != ActivityKind::Survey && !values.survey_questions.is_empty() {
        violations.add(
            format!("{prefix}.survey_questions"),
            format!(
                "are only allowed for SURVEY activities, not {}",
                kind.as_str()
            ),
        );
    }
    violations.into_result(())
}

/// Validates survey questions into `violations`; returns the valid ones (empty on any problem).
fn parse_survey_questions(
    violations: &mut Violations,
    field: &str,
    raw: &[RawQuestion],
) -> Vec<SurveyQuestion> {
    match parse_questions(field, raw) {
        Ok(questions) => questions,
        Err(Error::InvalidArgument(problems)) => {
            for problem in problems.as_slice() {
                violations.add(problem.field.clone(), problem.description.clone());
            }
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// An activity as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// UUIDv7.
    pub id: String,
    /// The module.
    pub module_id: String,
    /// The version of the module.
    pub course_version_id: String,
    /// 1-based position in the module.
    pub position: i32,
    /// Editable fields.
    pub values: ActivityValues,
    /// Incremented on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

impl Activity {
    /// Returns true when completing it needs a supervisor's sign-off (derived from its kind).
    pub fn requires_sign_off(&self) -> bool {
        self.values.kind.requires_sign_off()
    }
}

/// A field of an activity that `UpdateActivity` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityField {
    /// `title`.
    Title,
    /// `kind`.
    Kind,
    /// `required`.
    Required,
    /// `delivery_mode`.
    DeliveryMode,
    /// `expected_minutes`.
    ExpectedMinutes,
    /// `pass_score`.
    PassScore,
    /// `host_organization_id`.
    HostOrganizationId,
    /// `survey_questions` (the whole list).
    SurveyQuestions,
}

impl ActivityField {
    /// Every updatable field.
    pub const ALL: [Self; 8] = [
        Self::Title,
        Self::Kind,
        Self::Required,
        Self::DeliveryMode,
        Self::ExpectedMinutes,
        Self::PassScore,
        Self::HostOrganizationId,
        Self::SurveyQuestions,
    ];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 7] = [
        "id",
        "module_id",
        "position",
        "requires_sign_off",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "title" => Some(Self::Title),
            "kind" => Some(Self::Kind),
            "required" => Some(Self::Required),
            "delivery_mode" => Some(Self::DeliveryMode),
            "expected_minutes" => Some(Self::ExpectedMinutes),
            "pass_score" => Some(Self::PassScore),
            "host_organization_id" => Some(Self::HostOrganizationId),
            "survey_questions" => Some(Self::SurveyQuestions),
            _ => None,
        }
    }
}

/// Validated new values of an activity update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityPatch {
    /// New title.
    pub title: Option<String>,
    /// New kind.
    pub kind: Option<ActivityKind>,
    /// New `required`.
    pub required: Option<bool>,
    /// New delivery mode.
    pub delivery_mode: Option<DeliveryMode>,
    /// New expected minutes.
    pub expected_minutes: Option<i32>,
    /// New pass mark (`Some(None)` clears it).
    pub pass_score: Option<Option<i32>>,
    /// New host organisation (`Some(None)` clears it).
    pub host_organization_id: Option<Option<String>>,
    /// New survey questions (`Some(vec![])` clears them).
    pub survey_questions: Option<Vec<SurveyQuestion>>,
}

impl ActivityPatch {
    /// Validates the values of the fields named in `fields`, each on its own; the rules of the
    /// kind are checked on the result, by [`ActivityPatch::apply`].
    pub fn parse(prefix: &str, fields: &[ActivityField], raw: &RawActivity<'_>) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                ActivityField::Title => {
                    patch.title = Some(validate_title(
                        &mut violations,
                        &format!("{prefix}.title"),
                        raw.title,
                    ));
                }
                ActivityField::Kind => {
                    if raw.kind.is_none() {
                        violations.add(
                            format!("{prefix}.kind"),
                            "is required (one of the ActivityKind values)",
                        );
                    }
                    patch.kind = raw.kind;
                }
                ActivityField::Required => patch.required = Some(raw.required),
                ActivityField::DeliveryMode => {
                    if raw.delivery_mode.is_none() {
                        violations.add(
                            format!("{prefix}.delivery_mode"),
                            "is required (one of the DeliveryMode values)",
                        );
                    }
                    patch.delivery_mode = raw.delivery_mode;
                }
                ActivityField::ExpectedMinutes => {
                    validate_expected_minutes(
                        &mut violations,
                        &format!("{prefix}.expected_minutes"),
                        raw.expected_minutes,
                    );
                    patch.expected_minutes = Some(raw.expected_minutes);
                }
                ActivityField::PassScore => {
                    validate_pass_score(
                        &mut violations,
                        &format!("{prefix}.pass_score"),
                        raw.pass_score,
                    );
                    patch.pass_score = Some(raw.pass_score);
                }
                ActivityField::HostOrganizationId => {
                    patch.host_organization_id = Some(optional_id_in(
                        &mut violations,
                        &format!("{prefix}.host_organization_id"),
                        raw.host_organization_id,
                    ));
                }
                ActivityField::SurveyQuestions => {
                    patch.survey_questions = Some(parse_survey_questions(
                        &mut violations,
                        &format!("{prefix}.survey_questions"),
                        raw.survey_questions,
                    ));
                }
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch to `values` and checks the rules of the resulting kind (INVALID_ARGUMENT
    /// under `prefix`); returns false when nothing changes.
    ///
    /// Changing `kind` away from ASSESSMENT therefore needs `pass_score` cleared in the same
    /// update, and likewise `host_organization_id` for field visits and industry attachments.
    pub fn apply(&self, prefix: &str, values: &mut ActivityValues) -> Result<bool> {
        let before = values.clone();
        if let Some(title) = &self.title {
            values.title.clone_from(title);
        }
        if let Some(kind) = self.kind {
            values.kind = kind;
        }
        if let Some(required) = self.required {
            values.required = required;
        }
        if let Some(delivery_mode) = self.delivery_mode {
            values.delivery_mode = delivery_mode;
        }
        if let Some(minutes) = self.expected_minutes {
            values.expected_minutes = minutes;
        }
        if let Some(pass_score) = self.pass_score {
            values.pass_score = pass_score;
        }
        if let Some(host) = &self.host_organization_id {
            values.host_organization_id.clone_from(host);
        }
        if let Some(questions) = &self.survey_questions {
            values.survey_questions.clone_from(questions);
        }
        check_kind_rules(prefix, values)?;
        Ok(*values != before)
    }
}

/// Fails with ABORTED (`ETAG_MISMATCH`) when an etag was sent (`expected`) and is not `current`.
pub fn check_revision(
    resource: &'static str,
    id: &str,
    expected: Option<i64>,
    current: i64,
) -> Result<()> {
    if expected.is_some_and(|expected| expected != current) {
        return Err(Error::EtagMismatch {
            resource,
            id: id.to_owned(),
        });
    }
    Ok(())
}

fn validate_code(violations: &mut Violations, field: &str, code: &str) {
    let valid_chars = code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS || !valid_chars {
        violations.add(
            field,
            format!("must be 1 to {MAX_CODE_CHARS} letters, digits, '-', '_' or '.'"),
        );
    }
}

fn validate_title(violations: &mut Violations, field: &str, title: &str) -> String {
    let trimmed = title.trim();
    if trimmed.is_empty() {
        violations.add(field, "is required");
    } else if trimmed.chars().count() > MAX_TITLE_CHARS {
        violations.add(
            field,
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        );
    }
    trimmed.to_owned()
}

fn validate_description(violations: &mut Violations, field: &str, description: &str) {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        violations.add(
            field,
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
    }
}

fn validate_expected_minutes(violations: &mut Violations, field: &str, minutes: i32) {
    if !(0..=MAX_EXPECTED_MINUTES).contains(&minutes) {
        violations.add(field, format!("must be 0 to {MAX_EXPECTED_MINUTES}"));
    }
}

fn validate_pass_score(violations: &mut Violations, field: &str, pass_score: Option<i32>) {
    if pass_score.is_some_and(|score| !(0..=MAX_PASS_SCORE).contains(&score)) {
        violations.add(field, format!("must be 0 to {MAX_PASS_SCORE}"));
    }
}

fn required_id_in(violations: &mut Violations, field: &str, id: &str) -> String {
    if id.is_empty() {
        violations.add(field, "is required");
    } else if !crate::domain::is_uuid(id) {
        violations.add(field, "must be a UUID");
    }
    id.to_owned()
}

fn optional_id_in(violations: &mut Violations, field: &str, id: &str) -> Option<String> {
    crate::domain::organization::optional_id(violations, field, id)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn module(id: &str, position: i32, prerequisites: &[&str], activities: usize) -> Module {
        let now = Utc::now();
        Module {
            id: id.to_owned(),
            course_version_id: "v".to_owned(),
            position,
            values: ModuleValues {
                title: format!("Module {id}"),
                required: true,
                prerequisite_module_ids: prerequisites.iter().map(|p| (*p).to_owned()).collect(),
            },
            activities: (0..activities)
                .map(|index| activity(&format!("{id}-a{index}"), id, ActivityKind::Lecture))
                .collect(),
            revision: 1,
            create_time: now,
            update_time: now,
        }
    }

    fn activity(id: &str, module_id: &str, kind: ActivityKind) -> Activity {
        let now = Utc::now();
        Activity {
            id: id.to_owned(),
            module_id: module_id.to_owned(),
            course_version_id: "v".to_owned(),
            position: 1,
            values: ActivityValues {
                title: format!("Activity {id}"),
                kind,
                required: true,
                delivery_mode: DeliveryMode::InPerson,
                expected_minutes: 60,
                pass_score: kind.needs_pass_score().then_some(50),
                host_organization_id: kind.needs_host_organization().then(|| "host".to_owned()),
                survey_questions: Vec::new(),
            },
            revision: 1,
            create_time: now,
            update_time: now,
        }
    }

    fn draft(modules: Vec<Module>) -> CourseVersion {
        let mut version = CourseVersion::new_draft("c", 1, None, Utc::now());
        version.modules = modules;
        version
    }

    fn raw(kind: Option<ActivityKind>, pass_score: Option<i32>, host: &str) -> RawActivity<'_> {
        RawActivity {
            title: "Activity",
            kind,
            required: true,
            delivery_mode: Some(DeliveryMode::Online),
            expected_minutes: 30,
            pass_score,
            host_organization_id: host,
            survey_questions: &[],
        }
    }

    #[test]
    fn survey_questions_belong_to_surveys_only() {
        let questions = [crate::domain::survey::RawQuestion {
            id: "hours".to_owned(),
            text: "Hours saved per week".to_owned(),
            kind: Some(crate::domain::survey::QuestionKind::Number),
            ..Default::default()
        }];
        let mut request = raw(Some(ActivityKind::Survey), None, "");
        request.survey_questions = &questions;
        let values = ActivityValues::parse("activity", &request).unwrap();
        assert_eq!(values.survey_questions.len(), 1);
        request.kind = Some(ActivityKind::Lecture);
        let error = ActivityValues::parse("activity", &request).unwrap_err();
        assert_eq!(fields_of(error), ["activity.survey_questions"]);
        let mut survey = values;
        let to_lecture = ActivityPatch {
            kind: Some(ActivityKind::Lecture),
            ..Default::default()
        };
        let error = to_lecture
            .apply("activity", &mut survey.clone())
            .unwrap_err();
        assert_eq!(fields_of(error), ["activity.survey_questions"]);
        let cleared = ActivityPatch {
            kind: Some(ActivityKind::Lecture),
            survey_questions: Some(Vec::new()),
            ..Default::default()
        };
        assert!(cleared.apply("activity", &mut survey).unwrap());
        let bad = [crate::domain::survey::RawQuestion::default()];
        request.kind = Some(ActivityKind::Survey);
        request.survey_questions = &bad;
        let error = ActivityValues::parse("activity", &request).unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "activity.survey_questions[0].id",
                "activity.survey_questions[0].text",
                "activity.survey_questions[0].kind"
            ]
        );
    }

    fn fields_of(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations
                .as_slice()
                .iter()
                .map(|violation| violation.field.clone())
                .collect(),
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    const HOST: &str = "0190f5c4-0000-7000-8000-000000000001";

    #[test]
    fn stored_names_round_trip() {
        for (kind, name) in ActivityKind::ALL {
            assert_eq!(ActivityKind::parse(name), Some(kind));
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
        }
        assert_eq!(DeliveryMode::InPerson.as_str(), "IN_PERSON");
        assert_eq!(CourseState::parse("ARCHIVED"), Some(CourseState::Archived));
        assert_eq!(VersionState::Published.as_str(), "PUBLISHED");
    }

    #[test]
    fn course_codes_are_checked() {
        for good in ["AIW-201", "a", "x.y_z-1", &"C".repeat(32)] {
            assert!(
                NewCourse::parse("course", good, "T", "", HOST).is_ok(),
                "{good}"
            );
        }
        for bad in ["", "has space", "slash/no", &"C".repeat(33), "ü"] {
            let error = NewCourse::parse("course", bad, "T", "", HOST).unwrap_err();
            assert_eq!(fields_of(error), ["course.code"], "{bad}");
        }
        let error = NewCourse::parse("course", "", " ", &"d".repeat(10_001), "x").unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "course.code",
                "course.title",
                "course.description",
                "course.provider_organization_id"
            ]
        );
    }

    #[test]
    fn pass_scores_belong_to_assessments_only() {
        let values = ActivityValues::parse(
            "activity",
            &raw(Some(ActivityKind::Assessment), Some(70), ""),
        );
        assert_eq!(values.unwrap().pass_score, Some(70));
        for (kind, score, field) in [
            (ActivityKind::Assessment, None, "activity.pass_score"),
            (ActivityKind::Assessment, Some(101), "activity.pass_score"),
            (ActivityKind::Assessment, Some(-1), "activity.pass_score"),
            (ActivityKind::Lecture, Some(50), "activity.pass_score"),
        ] {
            let error = ActivityValues::parse("activity", &raw(Some(kind), score, "")).unwrap_err();
            assert_eq!(fields_of(error), [field], "{kind:?} {score:?}");
        }
    }

    #[test]
    fn host_organisations_belong_to_visits_and_attachments_only() {
        for kind in [ActivityKind::FieldVisit, ActivityKind::IndustryAttachment] {
            assert!(ActivityValues::parse("activity", &raw(Some(kind), None, HOST)).is_ok());
            let error = ActivityValues::parse("activity", &raw(Some(kind), None, "")).unwrap_err();
            assert_eq!(fields_of(error), ["activity.host_organization_id"]);
        }
        let error = ActivityValues::parse("activity", &raw(Some(ActivityKind::Lab), None, HOST))
            .unwrap_err();
        assert_eq!(fields_of(error), ["activity.host_organization_id"]);
    }

    #[test]
    fn kind_and_delivery_mode_are_required() {
        let mut request = raw(None, None, "");
        request.delivery_mode = None;
        request.expected_minutes = MAX_EXPECTED_MINUTES + 1;
        let error = ActivityValues::parse("activity", &request).unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "activity.kind",
                "activity.delivery_mode",
                "activity.expected_minutes"
            ]
        );
    }

    #[test]
    fn changing_the_kind_away_from_assessment_needs_the_pass_score_cleared() {
        let mut values = activity("a", "m", ActivityKind::Assessment).values;
        let to_lecture = ActivityPatch {
            kind: Some(ActivityKind::Lecture),
            ..Default::default()
        };
        let error = to_lecture
            .apply("activity", &mut values.clone())
            .unwrap_err();
        assert_eq!(fields_of(error), ["activity.pass_score"]);
        let with_clear = ActivityPatch {
            kind: Some(ActivityKind::Lecture),
            pass_score: Some(None),
            ..Default::default()
        };
        assert!(with_clear.apply("activity", &mut values).unwrap());
        assert_eq!(values.kind, ActivityKind::Lecture);
        assert_eq!(values.pass_score, None);
        assert!(!with_clear.apply("activity", &mut values).unwrap());
    }

    #[test]
    fn a_valid_version_yields_its_completion_rule() {
        let mut second = module("m2", 2, &["m1"], 1);
        second
            .activities
            .push(activity("m2-x", "m2", ActivityKind::IndustryAttachment));
        second
            .activities
            .push(activity("m2-y", "m2", ActivityKind::Assessment));
        let version = draft(vec![module("m1", 1, &[], 2), second]);
        let rule = version.completion_rule_for_publication().unwrap();
        assert_eq!(rule.modules.len(), 2);
        assert_eq!(rule.modules[1].prerequisite_module_ids, ["m1"]);
        let kinds: Vec<_> = rule.modules[1]
            .activities
            .iter()
            .map(|activity| {
                (
                    activity.kind,
                    activity.pass_score,
                    activity.requires_sign_off,
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (ActivityKind::Lecture, None, false),
                (ActivityKind::IndustryAttachment, None, true),
                (ActivityKind::Assessment, Some(50), false),
            ]
        );
        let json = serde_json::to_string(&rule).unwrap();
        assert!(json.contains("\"kind\":\"INDUSTRY_ATTACHMENT\""), "{json}");
        assert_eq!(serde_json::from_str::<CompletionRule>(&json).unwrap(), rule);
    }

    #[test]
    fn publication_reports_every_problem() {
        assert_eq!(publication_problems(&[]), ["the version has no modules"]);
        let mut empty = module("m1", 1, &["m2"], 0);
        empty.values.required = false;
        let mut looping = module("m2", 2, &["m1", "elsewhere"], 1);
        looping.values.required = false;
        let mut assessment = activity("m2-q", "m2", ActivityKind::Assessment);
        assessment.values.pass_score = None;
        looping.activities.push(assessment);
        let problems = publication_problems(&[empty, looping]);
        let joined = problems.join("\n");
        assert_eq!(problems.len(), 5, "{joined}");
        for expected in [
            "module 1 \"Module m1\" has no activities",
            "which is not a module of this version",
            "is an ASSESSMENT without a pass_score",
            "prerequisites form a cycle",
            "no module is required",
        ] {
            assert!(
                joined.contains(expected),
                "{expected} missing from {joined}"
            );
        }
        let version = draft(vec![module("m1", 1, &[], 0)]);
        let Err(Error::FailedPrecondition {
            reason, message, ..
        }) = version.completion_rule_for_publication()
        else {
            panic!("expected failed precondition");
        };
        assert_eq!(reason, Reason::VersionInvalid);
        assert!(message.contains("has no activities"), "{message}");
    }

    #[test]
    fn a_published_version_is_not_editable_nor_publishable_again() {
        let mut version = draft(vec![module("m1", 1, &[], 1)]);
        let rule = version.completion_rule_for_publication().unwrap();
        version.publish(rule, Utc::now());
        for result in [
            version.check_editable(),
            version.completion_rule_for_publication().map(|_| ()),
        ] {
            let Err(Error::FailedPrecondition { reason, .. }) = result else {
                panic!("expected failed precondition");
            };
            assert_eq!(reason, Reason::VersionPublished);
        }
    }

    #[test]
    fn prerequisites_must_be_other_modules_of_the_version_and_acyclic() {
        let modules = vec![module("a", 1, &[], 1), module("b", 2, &["a"], 1)];
        assert!(check_prerequisites("p", "c", &["a".into(), "b".into()], &modules).is_ok());
        let error =
            check_prerequisites("p", "a", &["a".into(), "zz".into()], &modules).unwrap_err();
        assert_eq!(fields_of(error), ["p", "p"]);
        let Err(Error::FailedPrecondition {
            reason, message, ..
        }) = check_prerequisites("p", "a", &["b".into()], &modules)
        else {
            panic!("expected a cycle");
        };
        assert_eq!(reason, Reason::PrerequisiteCycle);
        assert!(message.contains("\"Module a\""), "{message}");
    }

    #[test]
    fn copies_get_new_ids_and_remapped_prerequisites() {
        let source = vec![module("a", 1, &[], 2), module("b", 2, &["a"], 1)];
        let copy = copy_modules(&source, "new-version", Utc::now());
        assert_eq!(copy.len(), 2);
        assert_ne!(copy[0].id, "a");
        assert_eq!(copy[1].values.prerequisite_module_ids, [copy[0].id.clone()]);
        assert!(
            copy.iter()
                .all(|module| module.course_version_id == "new-version")
        );
        assert_eq!(copy[0].activities.len(), 2);
        assert!(
            copy[0]
                .activities
                .iter()
                .all(|activity| activity.module_id == copy[0].id && !activity.id.starts_with('a'))
        );
    }

    #[test]
    fn orders_must_be_complete_and_positions_follow_them() {
        let current = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert!(
            check_complete_order("ids", &current, &["c".into(), "a".into(), "b".into()]).is_ok()
        );
        for bad in [
            vec!["a".to_owned(), "b".to_owned()],
            vec!["a".to_owned(), "b".to_owned(), "b".to_owned()],
            vec![
                "a".to_owned(),
                "b".to_owned(),
                "c".to_owned(),
                "d".to_owned(),
            ],
        ] {
            assert!(
                check_complete_order("ids", &current, &bad).is_err(),
                "{bad:?}"
            );
        }
        let positions = [
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3),
        ];
        assert_eq!(
            position_changes(&positions, &["a".into(), "c".into(), "b".into()]),
            [("c".to_owned(), 2), ("b".to_owned(), 3)]
        );
    }

    #[test]
    fn drafts_are_hidden_from_learners() {
        let version = draft(Vec::new());
        assert!(
            DraftAccess::of(&[Role::ProgrammeManager])
                .check(&version)
                .is_ok()
        );
        assert!(matches!(
            DraftAccess::of(&[Role::Learner, Role::Trainer]).check(&version),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(
            DraftAccess::Hidden.listable_states(Some(VersionState::Draft)),
            []
        );
        assert_eq!(
            DraftAccess::Visible.listable_states(None),
            [VersionState::Draft, VersionState::Published]
        );
    }

    #[test]
    fn archiving_is_idempotent_and_freezes_the_course() {
        let now = Utc::now();
        let mut course = Course {
            id: "c".into(),
            code: "C-1".into(),
            values: CourseValues {
                title: "T".into(),
                description: String::new(),
                provider_organization_id: HOST.into(),
            },
            state: CourseState::Draft,
            latest_version: 0,
            latest_version_id: None,
            revision: 1,
            create_time: now,
            update_time: now,
        };
        let version = draft(Vec::new());
        course.record_publication(&version);
        assert_eq!(course.state, CourseState::Published);
        assert_eq!(course.latest_version, 1);
        assert!(course.check_editable().is_ok());
        assert!(course.archive());
        assert!(!course.archive());
        assert!(course.check_editable().is_err());
    }

    /// Reference: Kahn's algorithm; the graph has a cycle iff some node is never freed.
    fn has_cycle_by_kahn(graph: &[(String, Vec<String>)]) -> bool {
        let ids: HashSet<&str> = graph.iter().map(|(id, _)| id.as_str()).collect();
        let mut remaining: HashMap<&str, usize> = graph
            .iter()
            .map(|(id, targets)| {
                let distinct: HashSet<&str> = targets
                    .iter()
                    .map(String::as_str)
                    .filter(|target| ids.contains(target))
                    .collect();
                (id.as_str(), distinct.len())
            })
            .collect();
        let mut ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, count)| **count == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut freed = 0;
        while let Some(done) = ready.pop() {
            freed += 1;
            for (id, targets) in graph {
                let depends: HashSet<&str> = targets.iter().map(String::as_str).collect();
                if depends.contains(done)
                    && let Some(count) = remaining.get_mut(id.as_str())
                {
                    *count -= 1;
                    if *count == 0 {
                        ready.push(id.as_str());
                    }
                }
            }
        }
        freed != graph.len()
    }

    fn graph_strategy() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
        (0usize..10).prop_flat_map(|nodes| {
            proptest::collection::vec(proptest::collection::vec(0..nodes.max(1) + 1, 0..4), nodes)
                .prop_map(|targets| {
                    targets
                        .into_iter()
                        .enumerate()
                        .map(|(node, edges)| {
                            (
                                format!("m{node}"),
                                // Index `nodes` names no node: an edge to an unknown module.
                                edges
                                    .into_iter()
                                    .map(|target| format!("m{target}"))
                                    .collect(),
                            )
                        })
                        .collect()
                })
        })
    }

    proptest! {
        #[test]
        fn the_cycle_check_agrees_with_kahn(graph in graph_strategy()) {
            let cycle = find_prerequisite_cycle(&graph);
            prop_assert_eq!(cycle.is_some(), has_cycle_by_kahn(&graph));
            if let Some(cycle) = cycle {
                // Every node of the reported cycle depends on the next, the last on the first.
                prop_assert!(!cycle.is_empty());
                for (position, id) in cycle.iter().enumerate() {
                    let next = &cycle[(position + 1) % cycle.len()];
                    let edges = &graph.iter().find(|(node, _)| node == id).unwrap().1;
                    prop_assert!(edges.contains(next), "{} does not depend on {}", id, next);
                }
            }
        }
    }
}
