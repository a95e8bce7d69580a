//! Programmes, cohorts and enrolment: validation, cohort lifecycle, eligibility and seat allocation.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::category::CategoryCode;
use crate::domain::organization::{optional_id, path_is_within};
use crate::domain::person::PersonStatus;
use crate::error::{Error, Reason, Result, Violations};

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
    /// Places per participant category, by code; empty means no category rule.
    pub category_seats: Vec<(CategoryCode, i32)>,
    /// Organisations (subtrees) whose people may enrol; empty means anyone.
    pub eligible_organization_ids: Vec<String>,
    /// When phases of the programme run for this cohort, in phase order (see [`check_phase_windows`]).
    pub phase_windows: Vec<PhaseWindow>,
    /// Whether the sweep moves the cohort along its lifecycle by its dates.
    pub schedule: CohortSchedule,
}

/// When one phase of the programme runs for a cohort: from `start_date` to `end_date`, both
/// included, in UTC days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseWindow {
    /// The phase.
    pub phase_id: String,
    /// First day.
    pub start_date: NaiveDate,
    /// Last day.
    pub end_date: NaiveDate,
}

impl PhaseWindow {
    /// Returns the instants the window opens (its first day at 00:00 UTC) and closes (the day
    /// after its last day at 00:00 UTC): progress at or after the first and before the second is
    /// in the window.
    pub fn bounds(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |date: NaiveDate| date.and_time(chrono::NaiveTime::MIN).and_utc();
        (
            midnight(self.start_date),
            midnight(self.end_date + chrono::Duration::days(1)),
        )
    }

    /// Classifies progress that happened at `time` against the window.
    pub fn timing(&self, time: DateTime<Utc>) -> PhaseTiming {
        let (opens, closes) = self.bounds();
        if time < opens {
            PhaseTiming::Early
        } else if time >= closes {
            PhaseTiming::Late
        } else {
            PhaseTiming::InWindow
        }
    }
}

/// When progress on a phase happened, relative to the phase's window in the learner's cohort.
/// Progress is never refused for its timing (an offline device may sync weeks later); reports
/// count it in one of these classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseTiming {
    /// Before the window opened.
    Early,
    /// Within the window.
    InWindow,
    /// After the window closed.
    Late,
}

/// The automatic lifecycle of a cohort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CohortSchedule {
    /// Whether the sweep moves the cohort by its dates.
    pub auto_advance: bool,
    /// Day enrolment opens (PLANNED -> OPEN).
    pub enrollment_open_date: Option<NaiveDate>,
}

/// A phase window as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPhaseWindow {
    /// The phase.
    pub phase_id: String,
    /// `YYYY-MM-DD`.
    pub start_date: String,
    /// `YYYY-MM-DD`.
    pub end_date: String,
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
    /// Seats per category code as sent (`category_seats`).
    pub category_seats: Vec<(String, i32)>,
    /// Seats per deprecated sector (`sector_seats`), as the category each names; `None` when
    /// unspecified.
    pub sector_seats: Vec<(Option<CategoryCode>, i32)>,
    /// Eligible organisations.
    pub eligible_organization_ids: Vec<String>,
    /// Phase windows.
    pub phase_windows: Vec<RawPhaseWindow>,
    /// Whether the cohort advances by its dates.
    pub auto_advance: bool,
    /// `YYYY-MM-DD` or empty.
    pub enrollment_open_date: String,
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
    /// `category_seats` (or the deprecated `sector_seats`).
    CategorySeats,
    /// `eligible_organization_ids`.
    EligibleOrganizationIds,
    /// `phase_windows` (the whole list).
    PhaseWindows,
    /// `schedule` (auto-advance and enrolment opening date).
    Schedule,
}

impl CohortField {
    /// Every updatable field.
    pub const ALL: [Self; 9] = [
        Self::Name,
        Self::StartDate,
        Self::EndDate,
        Self::Capacity,
        Self::WaitlistEnabled,
        Self::CategorySeats,
        Self::EligibleOrganizationIds,
        Self::PhaseWindows,
        Self::Schedule,
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
            "category_seats" | "sector_seats" => Some(Self::CategorySeats),
            "eligible_organization_ids" => Some(Self::EligibleOrganizationIds),
            "phase_windows" => Some(Self::PhaseWindows),
            "schedule" => Some(Self::Schedule),
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
            category_seats: Vec::new(),
            eligible_organization_ids: Vec::new(),
            phase_windows: Vec::new(),
            schedule: CohortSchedule::default(),
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
                CohortField::CategorySeats => {
                    self.category_seats = parse_category_seats(&mut violations, prefix, raw);
                }
                CohortField::EligibleOrganizationIds => {
                    self.eligible_organization_ids = validate_ids(
                        &mut violations,
                        &format!("{prefix}.eligible_organization_ids"),
                        &raw.eligible_organization_ids,
                    );
                }
                CohortField::PhaseWindows => {
                    self.phase_windows =
                        parse_phase_windows(&mut violations, prefix, &raw.phase_windows);
                }
                CohortField::Schedule => {
                    self.schedule = CohortSchedule {
                        auto_advance: raw.auto_advance,
                        enrollment_open_date: parse_date(
                            &mut violations,
                            &format!("{prefix}.schedule.enrollment_open_date"),
                            &raw.enrollment_open_date,
                        ),
                    };
                }
            }
        }
        check_windows_within_dates(&mut violations, prefix, self);
        if let (Some(start), Some(end)) = (self.start_date, self.end_date)
            && end < start
        {
            violations.add(
                format!("{prefix}.end_date"),
                "must not be before start_date",
            );
        }
        let seat_total: i64 = self
            .category_seats
            .iter()
            .map(|(_, seats)| i64::from(*seats))
            .sum();
        if !self.category_seats.is_empty() && seat_total > i64::from(self.capacity) {
            let field = if raw.sector_seats.is_empty() {
                "category_seats"
            } else {
                "sector_seats"
            };
            violations.add(
                format!("{prefix}.{field}"),
                "add up to more than the capacity",
            );
        }
        violations.into_result(())?;
        Ok(*self != before)
    }
}

/// Validates the seats of `raw`, sent as `category_seats` or as the deprecated `sector_seats`
/// (not both): each category at most once, seats not negative. Returns them ordered by code.
fn parse_category_seats(
    violations: &mut Violations,
    prefix: &str,
    raw: &RawCohortSettings,
) -> Vec<(CategoryCode, i32)> {
    if !raw.category_seats.is_empty() && !raw.sector_seats.is_empty() {
        violations.add(
            format!("{prefix}.sector_seats"),
            "send category_seats or the deprecated sector_seats, not both",
        );
        return Vec::new();
    }
    let from_sectors = !raw.sector_seats.is_empty();
    let (list, key) = if from_sectors {
        ("sector_seats", "sector")
    } else {
        ("category_seats", "category")
    };
    let entries: Vec<(std::result::Result<CategoryCode, String>, i32)> = if from_sectors {
        raw.sector_seats
            .iter()
            .map(|(code, seats)| (code.clone().ok_or_else(|| "is required".to_owned()), *seats))
            .collect()
    } else {
        raw.category_seats
            .iter()
            .map(|(code, seats)| (CategoryCode::parse(code), *seats))
            .collect()
    };
    let mut seats: Vec<(CategoryCode, i32)> = Vec::new();
    for (index, (code, count)) in entries.into_iter().enumerate() {
        let field = format!("{prefix}.{list}[{index}]");
        match code {
            Err(why) => violations.add(format!("{field}.{key}"), why),
            Ok(code) if seats.iter().any(|(seen, _)| *seen == code) => {
                violations.add(format!("{field}.{key}"), "appears twice");
            }
            Ok(code) => seats.push((code, count)),
        }
        if count < 0 {
            violations.add(format!("{field}.seats"), "must not be negative");
        }
    }
    seats.sort();
    seats
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

/// Most phase windows a cohort may list (a programme has few phases).
pub const MAX_PHASE_WINDOWS: usize = 100;

fn parse_phase_windows(
    violations: &mut Violations,
    prefix: &str,
    raw: &[RawPhaseWindow],
) -> Vec<PhaseWindow> {
    if raw.len() > MAX_PHASE_WINDOWS {
        violations.add(
            format!("{prefix}.phase_windows"),
            format!("must hold at most {MAX_PHASE_WINDOWS} windows"),
        );
        return Vec::new();
    }
    let mut windows = Vec::with_capacity(raw.len());
    for (index, window) in raw.iter().enumerate() {
        let field = format!("{prefix}.phase_windows[{index}]");
        if !crate::domain::is_uuid(&window.phase_id) {
            violations.add(format!("{field}.phase_id"), "must be a UUID");
        }
        let start = parse_date(
            violations,
            &format!("{field}.start_date"),
            &window.start_date,
        );
        let end = parse_date(violations, &format!("{field}.end_date"), &window.end_date);
        if window.start_date.is_empty() {
            violations.add(format!("{field}.start_date"), "is required");
        }
        if window.end_date.is_empty() {
            violations.add(format!("{field}.end_date"), "is required");
        }
        if let (Some(start_date), Some(end_date)) = (start, end) {
            if end_date < start_date {
                violations.add(format!("{field}.end_date"), "must not be before start_date");
            }
            windows.push(PhaseWindow {
                phase_id: window.phase_id.clone(),
                start_date,
                end_date,
            });
        }
    }
    windows
}

/// Checks what needs no programme: windows inside the cohort's dates, and enrolment opening on or
/// before the first day.
fn check_windows_within_dates(
    violations: &mut Violations,
    prefix: &str,
    settings: &CohortSettings,
) {
    for (index, window) in settings.phase_windows.iter().enumerate() {
        let field = format!("{prefix}.phase_windows[{index}]");
        if let Some(start) = settings.start_date
            && window.start_date < start
        {
            violations.add(
                format!("{field}.start_date"),
                format!("must not be before the cohort's start_date {start}"),
            );
        }
        if let Some(end) = settings.end_date
            && window.end_date > end
        {
            violations.add(
                format!("{field}.end_date"),
                format!("must not be after the cohort's end_date {end}"),
            );
        }
    }
    if let (Some(open), Some(start)) = (settings.schedule.enrollment_open_date, settings.start_date)
        && open > start
    {
        violations.add(
            format!("{prefix}.schedule.enrollment_open_date"),
            format!("must not be after the cohort's start_date {start}"),
        );
    }
}

/// Checks the phase windows of `settings` against the programme's `phases` and puts them in phase
/// order: each names a phase of the programme, at most once; taken in phase order, each window
/// starts after the previous one ended (phases follow one another; gaps are allowed, and a phase
/// may have no window). Field paths name the windows as the request listed them.
pub fn check_phase_windows(
    prefix: &str,
    settings: &mut CohortSettings,
    phases: &[Phase],
) -> Result<()> {
    let mut violations = Violations::new();
    let mut positioned: Vec<(i32, usize)> = Vec::new();
    for (index, window) in settings.phase_windows.iter().enumerate() {
        let field = format!("{prefix}.phase_windows[{index}].phase_id");
        match phases.iter().find(|phase| phase.id == window.phase_id) {
            None => violations.add(field, "is not a phase of the cohort's programme"),
            Some(phase)
                if positioned
                    .iter()
                    .any(|(position, _)| *position == phase.position) =>
            {
                violations.add(field, "appears twice");
            }
            Some(phase) => positioned.push((phase.position, index)),
        }
    }
    positioned.sort_unstable();
    for pair in positioned.windows(2) {
        let (previous, next) = (
            &settings.phase_windows[pair[0].1],
            &settings.phase_windows[pair[1].1],
        );
        if next.start_date <= previous.end_date {
            violations.add(
                format!("{prefix}.phase_windows[{}].start_date", pair[1].1),
                format!(
                    "must be after {}, the last day of the previous phase's window",
                    previous.end_date
                ),
            );
        }
    }
    violations.into_result(())?;
    let windows = std::mem::take(&mut settings.phase_windows);
    let mut slots: Vec<Option<PhaseWindow>> = windows.into_iter().map(Some).collect();
    settings.phase_windows = positioned
        .iter()
        .filter_map(|(_, index)| slots[*index].take())
        .collect();
    Ok(())
}

/// Returns the state an auto-advancing cohort should move to on `today` (UTC), if any: the latest
/// state its dates make due (CLOSED the day after `end_date`, RUNNING from `start_date`, OPEN from
/// `enrollment_open_date`), when that is further along than `state`. Never moves a cohort back
/// or out of CLOSED, so a state set by hand stands until a later date is due.
pub fn scheduled_transition(
    state: CohortState,
    settings: &CohortSettings,
    today: NaiveDate,
) -> Option<CohortState> {
    if !settings.schedule.auto_advance {
        return None;
    }
    let rank = |state: CohortState| match state {
        CohortState::Planned => 0,
        CohortState::Open => 1,
        CohortState::Running => 2,
        CohortState::Closed => 3,
    };
    let due = if settings.end_date.is_some_and(|end| end < today) {
        CohortState::Closed
    } else if settings.start_date.is_some_and(|start| start <= today) {
        CohortState::Running
    } else if settings
        .schedule
        .enrollment_open_date
        .is_some_and(|open| open <= today)
    {
        CohortState::Open
    } else {
        return None;
    };
    (rank(due) > rank(state)).then_some(due)
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
        metadata: Vec::new(),
        reason: Reason::CohortStateTransition,
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
    pub reason: Reason,
    /// Explanation.
    pub message: String,
    /// What blocks, for the `ErrorInfo` metadata; keys are among [`REFUSAL_METADATA_KEYS`].
    pub metadata: Vec<(&'static str, String)>,
}

/// Keys a [`Refusal`]'s metadata may use (a stored refusal names them by text).
pub const REFUSAL_METADATA_KEYS: [&str; 2] = ["category", "seats"];

impl Refusal {
    /// Returns a refusal by the rule `reason`, with no metadata.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            metadata: Vec::new(),
        }
    }

    /// Adds `key` (one of [`REFUSAL_METADATA_KEYS`]) with `value` to the metadata.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        debug_assert!(REFUSAL_METADATA_KEYS.contains(&key), "unlisted key {key}");
        self.metadata.push((key, value.into()));
        self
    }

    /// Returns the refusal as a FAILED_PRECONDITION about `subject`.
    pub fn into_error(self, subject: String) -> Error {
        Error::FailedPrecondition {
            metadata: self.metadata,
            reason: self.reason,
            subject,
            message: self.message,
        }
    }
}

/// Places taken in a cohort, in total and per participant category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatCounts {
    /// Places taken.
    pub taken: i32,
    /// Places taken per category.
    pub by_category: HashMap<CategoryCode, i32>,
}

impl SeatCounts {
    /// Records that a person of `category` took a place (`delta` 1) or gave one up (`delta` -1).
    pub fn add(&mut self, category: &CategoryCode, delta: i32) {
        self.taken += delta;
        *self.by_category.entry(category.clone()).or_default() += delta;
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
            Reason::ProgrammeArchived,
            "the programme is archived",
        ));
    }
    if !matches!(cohort.state, CohortState::Open | CohortState::Running) {
        return Err(Refusal::new(
            Reason::CohortNotOpen,
            format!(
                "the cohort is {}; enrolment needs OPEN or RUNNING",
                cohort.state.as_str()
            ),
        ));
    }
    if person_status != PersonStatus::Active {
        return Err(Refusal::new(
            Reason::PersonInactive,
            "the person is inactive",
        ));
    }
    let eligible = &cohort.settings.eligible_organization_ids;
    if !eligible.is_empty()
        && !eligible
            .iter()
            .any(|root| path_is_within(person_organization_path, root))
    {
        return Err(Refusal::new(
            Reason::OrganizationNotEligible,
            "the person's organization is not among the cohort's eligible organizations",
        ));
    }
    Ok(())
}

/// Decides whether a person of `category` gets a place, a waitlist spot, or neither. A category
/// without places refuses with CATEGORY_SEATS_FULL, or SECTOR_SEATS_FULL for `public` and
/// `private` (what clients of the former sectors match on).
pub fn place(
    cohort: &Cohort,
    counts: &SeatCounts,
    category: &CategoryCode,
) -> std::result::Result<Placement, Refusal> {
    let settings = &cohort.settings;
    let refusal = if counts.taken >= settings.capacity {
        Some(Refusal::new(
            Reason::CohortFull,
            format!("all {} places of the cohort are taken", settings.capacity),
        ))
    } else if settings.category_seats.is_empty() {
        None
    } else {
        let seats = settings
            .category_seats
            .iter()
            .find(|(seat_category, _)| seat_category == category)
            .map(|(_, seats)| *seats)
            .unwrap_or(0);
        let taken = counts.by_category.get(category).copied().unwrap_or(0);
        (taken >= seats).then(|| {
            let (reason, message) = if category.is_sector() {
                (
                    Reason::SectorSeatsFull,
                    format!("all {seats} places for the {category} sector are taken"),
                )
            } else {
                (
                    Reason::CategorySeatsFull,
                    format!("all {seats} places for the participant category {category} are taken"),
                )
            };
            Refusal::new(reason, message)
                .with("category", category.as_str())
                .with("seats", seats.to_string())
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
    /// The person's participant category at enrolment (counts against category seats).
    pub category: CategoryCode,
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
        EnrollmentState::Withdrawn => Reason::AlreadyWithdrawn,
        EnrollmentState::Completed => Reason::AlreadyCompleted,
        _ => return Ok(()),
    };
    Err(Error::FailedPrecondition {
        metadata: Vec::new(),
        reason,
        subject: format!("enrollment/{}", enrollment.id),
        message: format!(
            "enrolment {} is {}",
            enrollment.id,
            enrollment.state.as_str()
        ),
    }
    .with("enrollment_id", enrollment.id.clone())
    .with("state", enrollment.state.as_str()))
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

    fn cohort(capacity: i32, seats: Vec<(CategoryCode, i32)>, waitlist: bool) -> Cohort {
        Cohort {
            id: "c".to_owned(),
            programme_id: "p".to_owned(),
            settings: CohortSettings {
                name: "Cohort 1".to_owned(),
                start_date: None,
                end_date: None,
                capacity,
                waitlist_enabled: waitlist,
                category_seats: seats,
                eligible_organization_ids: vec!["m".to_owned()],
                phase_windows: Vec::new(),
                schedule: CohortSchedule::default(),
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
        let (public, private) = (CategoryCode::public(), CategoryCode::private());
        let edl = cohort(55, vec![(public.clone(), 35), (private.clone(), 20)], false);
        let mut counts = SeatCounts::default();
        for _ in 0..35 {
            assert_eq!(place(&edl, &counts, &public), Ok(Placement::Seat));
            counts.add(&public, 1);
        }
        assert_eq!(
            place(&edl, &counts, &public).unwrap_err().reason,
            Reason::SectorSeatsFull
        );
        for _ in 0..20 {
            assert_eq!(place(&edl, &counts, &private), Ok(Placement::Seat));
            counts.add(&private, 1);
        }
        assert_eq!(
            place(&edl, &counts, &private).unwrap_err().reason,
            Reason::CohortFull
        );
    }

    #[test]
    fn a_category_without_places_is_refused_by_its_own_reason() {
        let trainee = CategoryCode::parse("tvet_trainee").unwrap();
        let academic = CategoryCode::parse("academic").unwrap();
        let centre = cohort(10, vec![(trainee.clone(), 1)], false);
        let mut counts = SeatCounts::default();
        assert_eq!(place(&centre, &counts, &trainee), Ok(Placement::Seat));
        counts.add(&trainee, 1);
        let refusal = place(&centre, &counts, &trainee).unwrap_err();
        assert_eq!(refusal.reason, Reason::CategorySeatsFull);
        assert!(refusal.message.contains("tvet_trainee"));
        assert_eq!(
            refusal.metadata,
            vec![
                ("category", "tvet_trainee".to_owned()),
                ("seats", "1".to_owned())
            ]
        );
        // A category not listed has no places when any is listed.
        assert_eq!(
            place(&centre, &counts, &academic).unwrap_err().reason,
            Reason::CategorySeatsFull
        );
    }

    #[test]
    fn seats_come_from_categories_or_sectors_but_not_both() {
        let raw = RawCohortSettings {
            name: "Cohort 1".to_owned(),
            capacity: 10,
            sector_seats: vec![(Some(CategoryCode::public()), 5)],
            ..RawCohortSettings::default()
        };
        let settings = CohortSettings::parse("cohort", &raw).unwrap();
        assert_eq!(settings.category_seats, vec![(CategoryCode::public(), 5)]);
        let both = RawCohortSettings {
            category_seats: vec![("ngo".to_owned(), 2)],
            ..raw.clone()
        };
        let Err(Error::InvalidArgument(violations)) = CohortSettings::parse("cohort", &both) else {
            panic!("both lists are refused");
        };
        assert_eq!(violations.as_slice()[0].field, "cohort.sector_seats");
        let bad = RawCohortSettings {
            sector_seats: Vec::new(),
            category_seats: vec![
                ("ngo".to_owned(), 2),
                ("NGO".to_owned(), 1),
                ("ngo".to_owned(), 1),
            ],
            ..raw
        };
        let Err(Error::InvalidArgument(violations)) = CohortSettings::parse("cohort", &bad) else {
            panic!("bad codes are refused");
        };
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "cohort.category_seats[1].category",
                "cohort.category_seats[2].category"
            ]
        );
    }

    #[test]
    fn a_full_cohort_with_a_waitlist_waitlists() {
        let full = cohort(1, Vec::new(), true);
        let mut counts = SeatCounts::default();
        counts.add(&CategoryCode::public(), 1);
        assert_eq!(
            place(&full, &counts, &CategoryCode::public()),
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
        assert_eq!(refusal.reason, Reason::OrganizationNotEligible);
        let refusal =
            check_admissible(&open, ProgrammeState::Active, PersonStatus::Inactive, "/m/")
                .unwrap_err();
        assert_eq!(refusal.reason, Reason::PersonInactive);
        let closed = Cohort {
            state: CohortState::Closed,
            ..open
        };
        let refusal =
            check_admissible(&closed, ProgrammeState::Active, PersonStatus::Active, "/m/")
                .unwrap_err();
        assert_eq!(refusal.reason, Reason::CohortNotOpen);
    }

    #[test]
    fn cohorts_move_forward_or_close() {
        use CohortState::*;
        assert!(check_cohort_transition("c", Planned, Open).is_ok());
        assert!(check_cohort_transition("c", Running, Closed).is_ok());
        assert!(check_cohort_transition("c", Closed, Open).is_err());
        assert!(check_cohort_transition("c", Running, Open).is_err());
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_scheduled_cohort_moves_forward_to_the_latest_state_due_and_never_back() {
        use CohortState::*;
        let mut settings = cohort(10, Vec::new(), false).settings;
        settings.start_date = Some(day("2025-05-01"));
        settings.end_date = Some(day("2025-11-30"));
        settings.schedule = CohortSchedule {
            auto_advance: true,
            enrollment_open_date: Some(day("2025-03-01")),
        };
        let on = |state, date| scheduled_transition(state, &settings, day(date));
        assert_eq!(on(Planned, "2025-02-28"), None);
        assert_eq!(on(Planned, "2025-03-01"), Some(Open));
        assert_eq!(on(Planned, "2025-05-01"), Some(Running));
        assert_eq!(on(Open, "2025-05-01"), Some(Running));
        assert_eq!(on(Running, "2025-11-30"), None, "the last day still runs");
        assert_eq!(on(Running, "2025-12-01"), Some(Closed));
        assert_eq!(on(Planned, "2026-01-01"), Some(Closed));
        // Set by hand ahead of the schedule, or closed: left alone.
        assert_eq!(on(Running, "2025-03-02"), None);
        assert_eq!(on(Closed, "2025-05-01"), None);
        settings.schedule.auto_advance = false;
        assert_eq!(
            scheduled_transition(Planned, &settings, day("2025-05-01")),
            None
        );
    }

    #[test]
    fn windows_follow_the_phases_and_classify_progress() {
        let phase = |id: &str, position| Phase {
            id: id.to_owned(),
            title: id.to_owned(),
            position,
            course_version_ids: Vec::new(),
            location: String::new(),
            planned_duration_days: 0,
        };
        let phases = [phase("a", 1), phase("b", 2)];
        let window = |id: &str, start, end| PhaseWindow {
            phase_id: id.to_owned(),
            start_date: day(start),
            end_date: day(end),
        };
        let mut settings = cohort(10, Vec::new(), false).settings;
        settings.phase_windows = vec![
            window("b", "2025-06-01", "2025-11-30"),
            window("a", "2025-05-01", "2025-05-31"),
        ];
        check_phase_windows("cohort", &mut settings, &phases).unwrap();
        let ids: Vec<&str> = settings
            .phase_windows
            .iter()
            .map(|window| window.phase_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        settings.phase_windows[1].start_date = day("2025-05-31");
        let Err(Error::InvalidArgument(violations)) =
            check_phase_windows("cohort", &mut settings, &phases)
        else {
            panic!("overlap accepted");
        };
        assert_eq!(
            violations.as_slice()[0].field,
            "cohort.phase_windows[1].start_date"
        );
        let first = window("a", "2025-05-01", "2025-05-31");
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        assert_eq!(first.timing(at("2025-04-30T23:59:59Z")), PhaseTiming::Early);
        assert_eq!(
            first.timing(at("2025-05-01T00:00:00Z")),
            PhaseTiming::InWindow
        );
        assert_eq!(
            first.timing(at("2025-05-31T23:59:59Z")),
            PhaseTiming::InWindow
        );
        assert_eq!(first.timing(at("2025-06-01T00:00:00Z")), PhaseTiming::Late);
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
            let seats = if use_seats { vec![(CategoryCode::private(), private_seats), (CategoryCode::public(), public_seats)] } else { Vec::new() };
            let cohort = cohort(capacity, seats.clone(), false);
            let mut counts = SeatCounts::default();
            for public in arrivals {
                let category = if public { CategoryCode::public() } else { CategoryCode::private() };
                if place(&cohort, &counts, &category) == Ok(Placement::Seat) {
                    counts.add(&category, 1);
                }
                prop_assert!(counts.taken <= capacity);
                for (category, limit) in &seats {
                    prop_assert!(counts.by_category.get(category).copied().unwrap_or(0) <= *limit);
                }
            }
        }
    }
}
