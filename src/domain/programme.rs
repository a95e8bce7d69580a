//! Programmes, cohorts and enrolment: validation, cohort lifecycle, eligibility and seat allocation.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::organization::{optional_id, path_is_within};
use crate::domain::person::{PersonStatus, Sector};
use crate::error::{Error, Result, Violations};

/// The rows of a list a caller with a limited scope may see: a row is visible when any part that
/// is set matches it; with no part set, no row is. The API fills it from the caller's scope
/// (`auth::scope`); a filter holding `None` instead shows every row. Used by the lists of
/// enrolments, progress, candidacies and certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    /// Rows about these people (the caller themself; an assessor's candidates).
    pub person_ids: Vec<String>,
    /// Rows of these cohorts (a trainer's cohorts).
    pub cohort_ids: Vec<String>,
    /// Rows of these certification tracks (an assessor's tracks).
    pub track_ids: Vec<String>,
    /// Rows about people whose organisation's path starts with this (an org admin's subtree).
    pub organization_path_prefix: Option<String>,
}

/// Longest title or name.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Most people in one `BatchEnroll`.
pub const MAX_BATCH_ENROLL: usize = 1000;
/// Largest cohort.
pub const MAX_CAPACITY: i32 = 1_000_000;
/// Longest planned phase.
pub const MAX_PHASE_DAYS: i32 = 3650;

use super::stored_enum;

stored_enum!(
    /// Lifecycle of a programme.
    ProgrammeState {
        /// Running.
        Active => "ACTIVE",
        /// Closed.
        Archived => "ARCHIVED",
    }
);

stored_enum!(
    /// Lifecycle of a cohort.
    CohortState {
        /// Being prepared.
        Planned => "PLANNED",
        /// Taking enrolments.
        Open => "OPEN",
        /// Under way.
        Running => "RUNNING",
        /// Finished.
        Closed => "CLOSED",
    }
);

stored_enum!(
    /// Lifecycle of an enrolment.
    EnrollmentState {
        /// Holds a place.
        Enrolled => "ENROLLED",
        /// Holds a place; learning under way.
        InProgress => "IN_PROGRESS",
        /// Holds a place; done.
        Completed => "COMPLETED",
        /// Gave up.
        Withdrawn => "WITHDRAWN",
        /// Waiting for a place.
        Waitlisted => "WAITLISTED",
    }
);

impl EnrollmentState {
    /// Returns true when the enrolment takes one of the cohort's places.
    pub fn holds_place(self) -> bool {
        matches!(self, Self::Enrolled | Self::InProgress | Self::Completed)
    }
}

/// A phase of a programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// UUIDv7.
    pub id: String,
    /// Title.
    pub title: String,
    /// 1-based position.
    pub position: i32,
    /// Published course versions.
    pub course_version_ids: Vec<String>,
    /// Where.
    pub location: String,
    /// Planned duration.
    pub planned_duration_days: i32,
}

/// A programme as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programme {
    /// UUIDv7.
    pub id: String,
    /// Unique code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Sponsor.
    pub sponsor_organization_id: String,
    /// Partners.
    pub partner_organization_ids: Vec<String>,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// State.
    pub state: ProgrammeState,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

impl Programme {
    /// Returns the course versions an enrolment made now pins: every phase's, in order, once each.
    pub fn pinned_course_version_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for phase in &self.phases {
            for id in &phase.course_version_ids {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        ids
    }
}

/// A phase as a request describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseDraft {
    /// Existing id to keep, if any.
    pub id: Option<String>,
    /// Title.
    pub title: String,
    /// Course versions.
    pub course_version_ids: Vec<String>,
    /// Where.
    pub location: String,
    /// Planned duration.
    pub planned_duration_days: i32,
}

impl PhaseDraft {
    /// Returns the phase at `position`, keeping its id or making one.
    pub fn into_phase(self, position: i32) -> Phase {
        Phase {
            id: self.id.unwrap_or_else(crate::domain::new_id),
            title: self.title,
            position,
            course_version_ids: self.course_version_ids,
            location: self.location,
            planned_duration_days: self.planned_duration_days,
        }
    }
}

/// A validated new programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProgramme {
    /// Code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Sponsor.
    pub sponsor_organization_id: String,
    /// Partners.
    pub partner_organization_ids: Vec<String>,
    /// Phases.
    pub phases: Vec<PhaseDraft>,
}

impl NewProgramme {
    /// Validates a create request; `prefix` is the proto path of the programme message.
    pub fn parse(
        prefix: &str,
        code: &str,
        title: &str,
        description: &str,
        sponsor_organization_id: &str,
        partner_organization_ids: &[String],
        phases: Vec<PhaseDraft>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let code = validate_code(&mut violations, &format!("{prefix}.code"), code);
        let title = validate_title(&mut violations, &format!("{prefix}.title"), title);
        let description = validate_description(
            &mut violations,
            &format!("{prefix}.description"),
            description,
        );
        let sponsor = optional_id(
            &mut violations,
            &format!("{prefix}.sponsor_organization_id"),
            sponsor_organization_id,
        );
        if sponsor.is_none() {
            violations.add(format!("{prefix}.sponsor_organization_id"), "is required");
        }
        let partners = validate_ids(
            &mut violations,
            &format!("{prefix}.partner_organization_ids"),
            partner_organization_ids,
        );
        let phases = validate_phases(&mut violations, &format!("{prefix}.phases"), phases);
        violations.into_result(())?;
        Ok(Self {
            code,
            title,
            description,
            sponsor_organization_id: sponsor.unwrap_or_default(),
            partner_organization_ids: partners,
            phases,
        })
    }
}

/// A field of a programme that `UpdateProgramme` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgrammeField {
    /// `title`.
    Title,
    /// `description`.
    Description,
    /// `partner_organization_ids`.
    PartnerOrganizationIds,
    /// `phases`.
    Phases,
}

impl ProgrammeField {
    /// Every updatable field.
    pub const ALL: [Self; 4] = [
        Self::Title,
        Self::Description,
        Self::PartnerOrganizationIds,
        Self::Phases,
    ];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 6] =
        ["id", "code", "state", "etag", "create_time", "update_time"];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "title" => Some(Self::Title),
            "description" => Some(Self::Description),
            "partner_organization_ids" => Some(Self::PartnerOrganizationIds),
            "phases" => Some(Self::Phases),
            _ => None,
        }
    }
}

/// Validated new values of a programme update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammePatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New partners.
    pub partner_organization_ids: Option<Vec<String>>,
    /// New phases (the whole list).
    pub phases: Option<Vec<PhaseDraft>>,
}

impl ProgrammePatch {
    /// Validates the values of the fields named in `fields`.
    pub fn parse(
        prefix: &str,
        fields: &[ProgrammeField],
        title: &str,
        description: &str,
        partner_organization_ids: &[String],
        phases: Vec<PhaseDraft>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        let mut phases = Some(phases);
        for field in fields {
            match field {
                ProgrammeField::Title => {
                    patch.title = Some(validate_title(
                        &mut violations,
                        &format!("{prefix}.title"),
                        title,
                    ));
                }
                ProgrammeField::Description => {
                    patch.description = Some(validate_description(
                        &mut violations,
                        &format!("{prefix}.description"),
                        description,
                    ));
                }
                ProgrammeField::PartnerOrganizationIds => {
                    patch.partner_organization_ids = Some(validate_ids(
                        &mut violations,
                        &format!("{prefix}.partner_organization_ids"),
                        partner_organization_ids,
                    ));
                }
                ProgrammeField::Phases => {
                    let drafts = phases.take().unwrap_or_default();
                    patch.phases = Some(validate_phases(
                        &mut violations,
                        &format!("{prefix}.phases"),
                        drafts,
                    ));
                }
            }
        }
        violations.into_result(patch)
    }
}

fn validate_code(violations: &mut Violations, field: &str, code: &str) -> String {
    let valid = !code.is_empty()
        && code.chars().count() <= 32
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        violations.add(field, "must be 1 to 32 letters, digits, '-', '_' or '.'");
    }
    code.to_owned()
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

fn validate_description(violations: &mut Violations, field: &str, description: &str) -> String {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        violations.add(
            field,
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
    }
    description.to_owned()
}

fn validate_ids(violations: &mut Violations, field: &str, ids: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        if !crate::domain::is_uuid(id) {
            violations.add(format!("{field}[{index}]"), "must be a UUID");
        } else if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    unique
}

fn validate_phases(
    violations: &mut Violations,
    field: &str,
    phases: Vec<PhaseDraft>,
) -> Vec<PhaseDraft> {
    if phases.is_empty() {
        violations.add(field, "must hold at least one phase");
    }
    let mut valid = Vec::with_capacity(phases.len());
    for (index, mut phase) in phases.into_iter().enumerate() {
        let prefix = format!("{field}[{index}]");
        phase.title = validate_title(violations, &format!("{prefix}.title"), &phase.title);
        if phase.course_version_ids.is_empty() {
            violations.add(
                format!("{prefix}.course_version_ids"),
                "must name at least one course version",
            );
        }
        phase.course_version_ids = validate_ids(
            violations,
            &format!("{prefix}.course_version_ids"),
            &phase.course_version_ids,
        );
        if let Some(id) = &phase.id
            && !crate::domain::is_uuid(id)
        {
            violations.add(format!("{prefix}.id"), "must be a UUID");
        }
        if !(0..=MAX_PHASE_DAYS).contains(&phase.planned_duration_days) {
            violations.add(
                format!("{prefix}.planned_duration_days"),
                format!("must be 0 to {MAX_PHASE_DAYS}"),
            );
        }
        if phase.location.chars().count() > MAX_TITLE_CHARS {
            violations.add(
                format!("{prefix}.location"),
                format!("must be at most {MAX_TITLE_CHARS} characters"),
            );
        }
        valid.push(phase);
    }
    valid
}

/// A cohort as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// UUIDv7.
    pub id: String,
    /// The programme.
    pub programme_id: String,
    /// Settings.
    pub settings: CohortSettings,
    /// State.
    pub state: CohortState,
    /// Places taken.
    pub enrolled_count: i32,
    /// People waiting.
    pub waitlisted_count: i32,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

/// What a manager sets on a cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortSettings {
    /// Name.
    pub name: String,
    /// First day.
    pub start_date: Option<NaiveDate>,
    /// Last day.
    pub end_date: Option<NaiveDate>,
    /// Places.
    pub capacity: i32,
    /// Whether a full cohort keeps a waitlist.
    pub waitlist_enabled: bool,
    /// Places per sector; empty means no sector rule.
    pub sector_seats: Vec<(Sector, i32)>,
    /// Organisations (subtrees) whose people may enrol; empty means anyone.
    pub eligible_organization_ids: Vec<String>,
}

/// A cohort request as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCohortSettings {
    /// Name.
    pub name: String,
    /// `YYYY-MM-DD` or empty.
    pub start_date: String,
    /// `YYYY-MM-DD` or empty.
    pub end_date: String,
    /// Places.
    pub capacity: i32,
    /// Waitlist.
    pub waitlist_enabled: bool,
    /// Seats; sector `None` when unspecified.
    pub sector_seats: Vec<(Option<Sector>, i32)>,
    /// Eligible organisations.
    pub eligible_organization_ids: Vec<String>,
}

/// A field of a cohort that `UpdateCohort` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CohortField {
    /// `name`.
    Name,
    /// `start_date`.
    StartDate,
    /// `end_date`.
    EndDate,
    /// `capacity`.
    Capacity,
    /// `waitlist_enabled`.
    WaitlistEnabled,
    /// `sector_seats`.
    SectorSeats,
    /// `eligible_organization_ids`.
    EligibleOrganizationIds,
}

impl CohortField {
    /// Every updatable field.
    pub const ALL: [Self; 7] = [
        Self::Name,
        Self::StartDate,
        Self::EndDate,
        Self::Capacity,
        Self::WaitlistEnabled,
        Self::SectorSeats,
        Self::EligibleOrganizationIds,
    ];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 8] = [
        "id",
        "programme_id",
        "state",
        "enrolled_count",
        "waitlisted_count",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "name" => Some(Self::Name),
            "start_date" => Some(Self::StartDate),
            "end_date" => Some(Self::EndDate),
            "capacity" => Some(Self::Capacity),
            "waitlist_enabled" => Some(Self::WaitlistEnabled),
            "sector_seats" => Some(Self::SectorSeats),
            "eligible_organization_ids" => Some(Self::EligibleOrganizationIds),
            _ => None,
        }
    }
}

impl CohortSettings {
    /// Validates every setting of a new cohort.
    pub fn parse(prefix: &str, raw: &RawCohortSettings) -> Result<Self> {
        let mut settings = Self {
            name: String::new(),
            start_date: None,
            end_date: None,
            capacity: 0,
            waitlist_enabled: false,
            sector_seats: Vec::new(),
            eligible_organization_ids: Vec::new(),
        };
        settings.apply(prefix, &CohortField::ALL, raw)?;
        Ok(settings)
    }

    /// Validates the fields named in `fields` from `raw` and applies them; returns false when nothing changes.
    pub fn apply(
        &mut self,
        prefix: &str,
        fields: &[CohortField],
        raw: &RawCohortSettings,
    ) -> Result<bool> {
        let before = self.clone();
        let mut violations = Violations::new();
        for field in fields {
            match field {
                CohortField::Name => {
                    self.name =
                        validate_title(&mut violations, &format!("{prefix}.name"), &raw.name)
                }
                CohortField::StartDate => {
                    self.start_date = parse_date(
                        &mut violations,
                        &format!("{prefix}.start_date"),
                        &raw.start_date,
                    );
                }
                CohortField::EndDate => {
                    self.end_date = parse_date(
                        &mut violations,
                        &format!("{prefix}.end_date"),
                        &raw.end_date,
                    );
                }
                CohortField::Capacity => {
                    if !(1..=MAX_CAPACITY).contains(&raw.capacity) {
                        violations.add(
                            format!("{prefix}.capacity"),
                            format!("must be 1 to {MAX_CAPACITY}"),
                        );
                    }
                    self.capacity = raw.capacity;
                }
                CohortField::WaitlistEnabled => self.waitlist_enabled = raw.waitlist_enabled,
                CohortField::SectorSeats => {
                    let mut seats: Vec<(Sector, i32)> = Vec::new();
                    for (index, (sector, count)) in raw.sector_seats.iter().enumerate() {
                        let field = format!("{prefix}.sector_seats[{index}]");
                        match sector {
                            None => violations.add(format!("{field}.sector"), "is required"),
                            Some(sector) if seats.iter().any(|(seen, _)| seen == sector) => {
                                violations.add(format!("{field}.sector"), "appears twice");
                            }
                            Some(sector) => seats.push((*sector, *count)),
                        }
                        if *count < 0 {
                            violations.add(format!("{field}.seats"), "must not be negative");
                        }
                    }
                    seats.sort();
                    self.sector_seats = seats;
                }
                CohortField::EligibleOrganizationIds => {
                    self.eligible_organization_ids = validate_ids(
                        &mut violations,
                        &format!("{prefix}.eligible_organization_ids"),
                        &raw.eligible_organization_ids,
                    );
                }
            }
        }
        if let (Some(start), Some(end)) = (self.start_date, self.end_date)
            && end < start
        {
            violations.add(
                format!("{prefix}.end_date"),
                "must not be before start_date",
            );
        }
        let seat_total: i64 = self
            .sector_seats
            .iter()
            .map(|(_, seats)| i64::from(*seats))
            .sum();
        if !self.sector_seats.is_empty() && seat_total > i64::from(self.capacity) {
            violations.add(
                format!("{prefix}.sector_seats"),
                "add up to more than the capacity",
            );
        }
        violations.into_result(())?;
        Ok(*self != before)
    }
}

fn parse_date(violations: &mut Violations, field: &str, text: &str) -> Option<NaiveDate> {
    if text.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Some(date),
        Err(_) => {
            violations.add(field, "must be a date like 2025-05-01");
            None
        }
    }
}

/// Checks a cohort state change: forward along PLANNED, OPEN, RUNNING; CLOSED from anywhere; nothing leaves CLOSED.
pub fn check_cohort_transition(cohort_id: &str, from: CohortState, to: CohortState) -> Result<()> {
    use CohortState::{Closed, Open, Planned, Running};
    let allowed = matches!(
        (from, to),
        (Planned, Open) | (Open, Running) | (Planned, Running) | (Planned | Open | Running, Closed)
    );
    if allowed || from == to {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        reason: "COHORT_STATE_TRANSITION",
        subject: format!("cohort/{cohort_id}"),
        message: format!(
            "a cohort cannot go from {} to {}",
            from.as_str(),
            to.as_str()
        ),
    })
}

/// Why a person cannot be enrolled; `reason` names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable UPPER_SNAKE_CASE rule name.
    pub reason: &'static str,
    /// Explanation.
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Returns the refusal as a FAILED_PRECONDITION about `subject`.
    pub fn into_error(self, subject: String) -> Error {
        Error::FailedPrecondition {
            reason: self.reason,
            subject,
            message: self.message,
        }
    }
}

/// Every rule an enrolment can be refused by, as reported in `reason`.
pub const KNOWN_REFUSALS: [&str; 9] = [
    "PROGRAMME_ARCHIVED",
    "COHORT_NOT_OPEN",
    "PERSON_INACTIVE",
    "ORGANIZATION_NOT_ELIGIBLE",
    "COHORT_FULL",
    "SECTOR_SEATS_FULL",
    "DUPLICATE_IN_BATCH",
    "ALREADY_ENROLLED",
    "PERSON_NOT_FOUND",
];

/// Places taken in a cohort, in total and per sector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatCounts {
    /// Places taken.
    pub taken: i32,
    /// Places taken per sector.
    pub by_sector: HashMap<Sector, i32>,
}

impl SeatCounts {
    /// Records that a person of `sector` took a place (`delta` 1) or gave one up (`delta` -1).
    pub fn add(&mut self, sector: Sector, delta: i32) {
        self.taken += delta;
        *self.by_sector.entry(sector).or_default() += delta;
    }
}

/// Where an admissible person goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A place.
    Seat,
    /// The waitlist.
    Waitlist,
}

/// Checks who may enrol in `cohort` at all: its state, and the person's status and organisation.
pub fn check_admissible(
    cohort: &Cohort,
    programme_state: ProgrammeState,
    person_status: PersonStatus,
    person_organization_path: &str,
) -> std::result::Result<(), Refusal> {
    if programme_state == ProgrammeState::Archived {
        return Err(Refusal::new(
            "PROGRAMME_ARCHIVED",
            "the programme is archived",
        ));
    }
    if !matches!(cohort.state, CohortState::Open | CohortState::Running) {
        return Err(Refusal::new(
            "COHORT_NOT_OPEN",
            format!(
                "the cohort is {}; enrolment needs OPEN or RUNNING",
                cohort.state.as_str()
            ),
        ));
    }
    if person_status != PersonStatus::Active {
        return Err(Refusal::new("PERSON_INACTIVE", "the person is inactive"));
    }
    let eligible = &cohort.settings.eligible_organization_ids;
    if !eligible.is_empty()
        && !eligible
            .iter()
            .any(|root| path_is_within(person_organization_path, root))
    {
        return Err(Refusal::new(
            "ORGANIZATION_NOT_ELIGIBLE",
            "the person's organization is not among the cohort's eligible organizations",
        ));
    }
    Ok(())
}

/// Decides whether a person of `sector` gets a place, a waitlist spot, or neither.
pub fn place(
    cohort: &Cohort,
    counts: &SeatCounts,
    sector: Sector,
) -> std::result::Result<Placement, Refusal> {
    let settings = &cohort.settings;
    let refusal = if counts.taken >= settings.capacity {
        Some(Refusal::new(
            "COHORT_FULL",
            format!("all {} places of the cohort are taken", settings.capacity),
        ))
    } else if settings.sector_seats.is_empty() {
        None
    } else {
        let seats = settings
            .sector_seats
            .iter()
            .find(|(seat_sector, _)| *seat_sector == sector)
            .map(|(_, seats)| *seats)
            .unwrap_or(0);
        let taken = counts.by_sector.get(&sector).copied().unwrap_or(0);
        (taken >= seats).then(|| {
            Refusal::new(
                "SECTOR_SEATS_FULL",
                format!(
                    "all {seats} places for the {} sector are taken",
                    sector.as_str().to_lowercase()
                ),
            )
        })
    };
    match refusal {
        None => Ok(Placement::Seat),
        Some(_) if settings.waitlist_enabled => Ok(Placement::Waitlist),
        Some(refusal) => Err(refusal),
    }
}

/// An enrolment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// UUIDv7.
    pub id: String,
    /// Cohort.
    pub cohort_id: String,
    /// Programme.
    pub programme_id: String,
    /// Person.
    pub person_id: String,
    /// The person's organisation at enrolment (reports count the enrolment there).
    pub organization_id: String,
    /// The person's sector at enrolment (counts against sector seats).
    pub sector: Sector,
    /// Pinned course versions.
    pub course_version_ids: Vec<String>,
    /// State.
    pub state: EnrollmentState,
    /// 1-based waitlist position; 0 unless waitlisted (computed on read).
    pub waitlist_position: i32,
    /// When the place (or waitlist spot) was taken.
    pub enrolled_time: DateTime<Utc>,
    /// When completed.
    pub completed_time: Option<DateTime<Utc>>,
    /// When withdrawn.
    pub withdrawn_time: Option<DateTime<Utc>>,
    /// Why withdrawn.
    pub withdraw_reason: Option<String>,
    /// Revision (etag).
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

/// Checks that an enrolment may be withdrawn.
pub fn check_withdrawable(enrollment: &Enrollment) -> Result<()> {
    let reason = match enrollment.state {
        EnrollmentState::Withdrawn => "ALREADY_WITHDRAWN",
        EnrollmentState::Completed => "ALREADY_COMPLETED",
        _ => return Ok(()),
    };
    Err(Error::FailedPrecondition {
        reason,
        subject: format!("enrollment/{}", enrollment.id),
        message: format!("the enrolment is {}", enrollment.state.as_str()),
    })
}

/// Validates a withdrawal reason.
pub fn validate_withdraw_reason(reason: &str) -> Result<String> {
    let trimmed = reason.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 1000 {
        return Err(Error::invalid("reason", "must be 1 to 1,000 characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cohort(capacity: i32, seats: Vec<(Sector, i32)>, waitlist: bool) -> Cohort {
        Cohort {
            id: "c".to_owned(),
            programme_id: "p".to_owned(),
            settings: CohortSettings {
                name: "Cohort 1".to_owned(),
                start_date: None,
                end_date: None,
                capacity,
                waitlist_enabled: waitlist,
                sector_seats: seats,
                eligible_organization_ids: vec!["m".to_owned()],
            },
            state: CohortState::Open,
            enrolled_count: 0,
            waitlisted_count: 0,
            revision: 1,
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    #[test]
    fn the_fifty_sixth_participant_is_refused_with_the_rule() {
        let edl = cohort(55, vec![(Sector::Public, 35), (Sector::Private, 20)], false);
        let mut counts = SeatCounts::default();
        for _ in 0..35 {
            assert_eq!(place(&edl, &counts, Sector::Public), Ok(Placement::Seat));
            counts.add(Sector::Public, 1);
        }
        assert_eq!(
            place(&edl, &counts, Sector::Public).unwrap_err().reason,
            "SECTOR_SEATS_FULL"
        );
        for _ in 0..20 {
            assert_eq!(place(&edl, &counts, Sector::Private), Ok(Placement::Seat));
            counts.add(Sector::Private, 1);
        }
        assert_eq!(
            place(&edl, &counts, Sector::Private).unwrap_err().reason,
            "COHORT_FULL"
        );
    }

    #[test]
    fn a_full_cohort_with_a_waitlist_waitlists() {
        let full = cohort(1, Vec::new(), true);
        let mut counts = SeatCounts::default();
        counts.add(Sector::Public, 1);
        assert_eq!(
            place(&full, &counts, Sector::Public),
            Ok(Placement::Waitlist)
        );
    }

    #[test]
    fn eligibility_names_the_failed_rule() {
        let open = cohort(10, Vec::new(), false);
        assert!(
            check_admissible(&open, ProgrammeState::Active, PersonStatus::Active, "/m/d/").is_ok()
        );
        let refusal = check_admissible(&open, ProgrammeState::Active, PersonStatus::Active, "/x/")
            .unwrap_err();
        assert_eq!(refusal.reason, "ORGANIZATION_NOT_ELIGIBLE");
        let refusal =
            check_admissible(&open, ProgrammeState::Active, PersonStatus::Inactive, "/m/")
                .unwrap_err();
        assert_eq!(refusal.reason, "PERSON_INACTIVE");
        let closed = Cohort {
            state: CohortState::Closed,
            ..open
        };
        let refusal =
            check_admissible(&closed, ProgrammeState::Active, PersonStatus::Active, "/m/")
                .unwrap_err();
        assert_eq!(refusal.reason, "COHORT_NOT_OPEN");
    }

    #[test]
    fn cohorts_move_forward_or_close() {
        use CohortState::*;
        assert!(check_cohort_transition("c", Planned, Open).is_ok());
        assert!(check_cohort_transition("c", Running, Closed).is_ok());
        assert!(check_cohort_transition("c", Closed, Open).is_err());
        assert!(check_cohort_transition("c", Running, Open).is_err());
    }

    proptest! {
        #[test]
        fn seats_are_never_overallocated(
            capacity in 1i32..40,
            public_seats in 0i32..30,
            private_seats in 0i32..30,
            use_seats in any::<bool>(),
            arrivals in proptest::collection::vec(any::<bool>(), 0..120),
        ) {
            let seats = if use_seats { vec![(Sector::Private, private_seats), (Sector::Public, public_seats)] } else { Vec::new() };
            let cohort = cohort(capacity, seats.clone(), false);
            let mut counts = SeatCounts::default();
            for public in arrivals {
                let sector = if public { Sector::Public } else { Sector::Private };
                if place(&cohort, &counts, sector) == Ok(Placement::Seat) {
                    counts.add(sector, 1);
                }
                prop_assert!(counts.taken <= capacity);
                for (sector, limit) in &seats {
                    prop_assert!(counts.by_sector.get(sector).copied().unwrap_or(0) <= *limit);
                }
            }
        }
    }
}
