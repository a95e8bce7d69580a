//! Competencies: the framework (competencies with levels, roles requiring them), the tags that
//! say what confers a competency, and the rules that turn completions and certificates into a
//! person's profile and gaps against a role.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::stored_enum;
use crate::error::{Result, Violations};

/// Most levels a competency has.
pub const MAX_LEVELS: usize = 10;
/// Most requirements a role has.
pub const MAX_REQUIREMENTS: usize = 100;
/// Most tags one target carries.
pub const MAX_TAGS: usize = 50;

stored_enum! {
    /// The area (theme) of a competency.
    CompetencyArea {
        /// Attitudes and values.
        Behavioural => "BEHAVIOURAL",
        /// Skills across ministries.
        Functional => "FUNCTIONAL",
        /// Skills of one ministry's work.
        Domain => "DOMAIN",
    }
}

stored_enum! {
    /// What confers competencies.
    TargetKind {
        /// A course: completing any of its versions.
        Course => "COURSE",
        /// An activity: completing it.
        Activity => "ACTIVITY",
        /// A certification track: an active, unexpired certificate.
        CertificationTrack => "CERTIFICATION_TRACK",
    }
}

/// Kind of evidence of a competency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// A completed course.
    CourseCompletion,
    /// A completed activity.
    ActivityCompletion,
    /// An active certificate.
    Certificate,
}

/// A level of a competency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    /// Its name, e.g. `Intermediate`.
    pub name: String,
    /// What a holder can do.
    pub description: String,
}

/// A competency of the framework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Competency {
    /// UUIDv7.
    pub id: String,
    /// Unique code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Area, when set.
    pub area: Option<CompetencyArea>,
    /// Levels, lowest first (level `n` is `levels[n-1]`).
    pub levels: Vec<Level>,
    /// Revision (etag).
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
}

impl Competency {
    /// Returns the highest level.
    pub fn max_level(&self) -> i32 {
        self.levels.len() as i32
    }

    /// Returns the name of `level`, or an empty string outside the levels.
    pub fn level_name(&self, level: i32) -> &str {
        usize::try_from(level - 1)
            .ok()
            .and_then(|index| self.levels.get(index))
            .map(|level| level.name.as_str())
            .unwrap_or_default()
    }
}

/// A competency to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCompetency {
    /// Unique code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Area.
    pub area: Option<CompetencyArea>,
    /// Levels.
    pub levels: Vec<Level>,
}

/// Fields of a competency an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompetencyField {
    /// `name`.
    Name,
    /// `description`.
    Description,
    /// `area`.
    Area,
    /// `levels`.
    Levels,
}

impl CompetencyField {
    /// Every updatable field.
    pub const ALL: [Self; 4] = [Self::Name, Self::Description, Self::Area, Self::Levels];
    /// Paths that are output only or immutable and ignored in a mask.
    pub const OUTPUT_ONLY: [&'static str; 6] = [
        "id",
        "code",
        "max_level",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "name" => Some(Self::Name),
            "description" => Some(Self::Description),
            "area" => Some(Self::Area),
            "levels" => Some(Self::Levels),
            _ => None,
        }
    }
}

/// Changes to a competency; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompetencyPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New area (`Some(None)` clears it).
    pub area: Option<Option<CompetencyArea>>,
    /// New levels.
    pub levels: Option<Vec<Level>>,
}

/// A competency a role requires, at a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The competency.
    pub competency_id: String,
    /// The level.
    pub level: i32,
}

/// A role (a post) and the competencies it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// UUIDv7.
    pub id: String,
    /// Unique code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The organisation it belongs to, when any.
    pub organization_id: Option<String>,
    /// Requirements, in the order given.
    pub requirements: Vec<Requirement>,
    /// Revision (etag).
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
}

/// A role to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole {
    /// Unique code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Organisation.
    pub organization_id: Option<String>,
    /// Requirements.
    pub requirements: Vec<Requirement>,
}

/// Fields of a role an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleField {
    /// `name`.
    Name,
    /// `description`.
    Description,
    /// `organization_id`.
    OrganizationId,
    /// `requirements`.
    Requirements,
}

impl RoleField {
    /// Every updatable field.
    pub const ALL: [Self; 4] = [
        Self::Name,
        Self::Description,
        Self::OrganizationId,
        Self::Requirements,
    ];
    /// Paths that are output only or immutable and ignored in a mask.
    pub const OUTPUT_ONLY: [&'static str; 5] = ["id", "code", "etag", "create_time", "update_time"];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "name" => Some(Self::Name),
            "description" => Some(Self::Description),
            "organization_id" => Some(Self::OrganizationId),
            "requirements" => Some(Self::Requirements),
            _ => None,
        }
    }
}

/// Changes to a role; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New organisation (`Some(None)` clears it).
    pub organization_id: Option<Option<String>>,
    /// New requirements (replaced as a whole).
    pub requirements: Option<Vec<Requirement>>,
}

/// A tag: a competency conferred at a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The competency.
    pub competency_id: String,
    /// The level.
    pub level: i32,
}

/// A tag with the target carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTag {
    /// The kind of target.
    pub kind: TargetKind,
    /// The target's id.
    pub target_id: String,
    /// The competency.
    pub competency_id: String,
    /// The level conferred.
    pub level: i32,
}

/// One completion or certificate conferring a competency at a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// What it is.
    pub kind: EvidenceKind,
    /// The competency.
    pub competency_id: String,
    /// The level conferred.
    pub level: i32,
    /// The tagged course, activity or track.
    pub target_id: String,
    /// The enrolment of a completion.
    pub enrollment_id: Option<String>,
    /// The course version completed.
    pub course_version_id: Option<String>,
    /// The certificate.
    pub certificate_id: Option<String>,
    /// When it was achieved.
    pub achieved_time: DateTime<Utc>,
    /// When a certificate expires.
    pub expire_time: Option<DateTime<Utc>>,
}

/// A competency held: the highest level and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The competency.
    pub competency_id: String,
    /// The highest level held.
    pub level: i32,
    /// The evidence, highest level first, then newest.
    pub evidence: Vec<Evidence>,
}

/// A requirement of a role compared with a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The competency.
    pub competency_id: String,
    /// Level required.
    pub required_level: i32,
    /// Level held (0: none).
    pub held_level: i32,
    /// Whether the requirement is met.
    pub met: bool,
}

/// A person holding a competency (a row of the holder search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The person.
    pub person_id: String,
    /// HR employee id.
    pub external_id: String,
    /// Name.
    pub full_name: String,
    /// Organisation.
    pub organization_id: String,
    /// Highest level held.
    pub level: i32,
}

fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_length(violations: &mut Violations, field: &str, text: &str, min: usize, max: usize) {
    let length = text.chars().count();
    if length < min {
        violations.add(field, "is required");
    } else if length > max {
        violations.add(field, format!("must be at most {max} characters"));
    }
}

/// Validates a unique code (`field` names it in violations).
pub fn check_code(violations: &mut Violations, field: &str, code: &str) {
    if code.is_empty() {
        violations.add(field, "is required");
    } else if !is_code(code) {
        violations.add(field, "must be 1 to 64 letters, digits, `-`, `_` or `.`");
    }
}

/// Validates a name (1 to 200 characters).
pub fn check_name(violations: &mut Violations, field: &str, name: &str) {
    check_length(violations, field, name.trim(), 1, 200);
}

/// Validates a description (up to 2,000 characters).
pub fn check_description(violations: &mut Violations, field: &str, description: &str) {
    check_length(violations, field, description, 0, 2000);
}

/// Validates levels: 1 to [`MAX_LEVELS`], each named.
pub fn check_levels(violations: &mut Violations, field: &str, levels: &[Level]) {
    if levels.is_empty() {
        violations.add(field, "is required: 1 to 10 levels, lowest first");
        return;
    }
    if levels.len() > MAX_LEVELS {
        violations.add(field, "must have at most 10 levels");
        return;
    }
    for (index, level) in levels.iter().enumerate() {
        check_length(
            violations,
            &format!("{field}[{index}].name"),
            level.name.trim(),
            1,
            100,
        );
        check_length(
            violations,
            &format!("{field}[{index}].description"),
            &level.description,
            0,
            1000,
        );
    }
}

impl NewCompetency {
    /// Validates a competency to create; violations name fields under `competency.`.
    pub fn parse(
        code: &str,
        name: &str,
        description: &str,
        area: Option<CompetencyArea>,
        levels: Vec<Level>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        check_code(&mut violations, "competency.code", code);
        check_name(&mut violations, "competency.name", name);
        check_description(&mut violations, "competency.description", description);
        check_levels(&mut violations, "competency.levels", &levels);
        violations.into_result(Self {
            code: code.to_owned(),
            name: name.trim().to_owned(),
            description: description.to_owned(),
            area,
            levels,
        })
    }
}

/// Validates a list of (competency id, level) pairs as tags or requirements: each competency
/// once, ids UUIDs, levels at least 1 (the upper bound is checked against the stored competency).
pub fn check_pairs(
    violations: &mut Violations,
    field: &str,
    pairs: &[(String, i32)],
    max: usize,
) -> Vec<(String, i32)> {
    if pairs.len() > max {
        violations.add(field, format!("must have at most {max} entries"));
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    for (index, (competency_id, level)) in pairs.iter().enumerate() {
        if competency_id.is_empty() {
            violations.add(format!("{field}[{index}].competency_id"), "is required");
        } else if !super::is_uuid(competency_id) {
            violations.add(format!("{field}[{index}].competency_id"), "must be a UUID");
        } else if !seen.insert(competency_id.as_str()) {
            violations.add(
                format!("{field}[{index}].competency_id"),
                "names a competency already listed",
            );
        }
        if *level < 1 {
            violations.add(format!("{field}[{index}].level"), "must be at least 1");
        }
    }
    pairs.to_vec()
}

/// Returns the violations of `pairs` whose level exceeds its competency's highest level, or whose
/// competency is unknown (`competencies` holds the stored ones by id).
pub fn check_levels_exist(
    field: &str,
    pairs: &[(String, i32)],
    competencies: &HashMap<String, Competency>,
) -> Result<()> {
    let mut violations = Violations::new();
    for (index, (competency_id, level)) in pairs.iter().enumerate() {
        match competencies.get(competency_id) {
            None => violations.add(
                format!("{field}[{index}].competency_id"),
                format!("competency {competency_id} does not exist"),
            ),
            Some(competency) if *level > competency.max_level() => violations.add(
                format!("{field}[{index}].level"),
                format!(
                    "competency {} has levels 1 to {}",
                    competency.code,
                    competency.max_level()
                ),
            ),
            Some(_) => {}
        }
    }
    violations.into_result(())
}

/// Folds evidence into competencies held: per competency the highest level, its evidence highest
/// level first then newest; competencies ordered by id.
pub fn fold_profile(evidence: Vec<Evidence>) -> Vec<Held> {
    let mut by_competency: BTreeMap<String, Vec<Evidence>> = BTreeMap::new();
    for item in evidence {
        by_competency
            .entry(item.competency_id.clone())
            .or_default()
            .push(item);
    }
    by_competency
        .into_iter()
        .map(|(competency_id, mut evidence)| {
            evidence.sort_by(|left, right| {
                right
                    .level
                    .cmp(&left.level)
                    .then(right.achieved_time.cmp(&left.achieved_time))
            });
            Held {
                level: evidence.first().map(|item| item.level).unwrap_or_default(),
                competency_id,
                evidence,
            }
        })
        .collect()
}

/// Compares what is held with a role's requirements, in the role's order.
pub fn gaps(requirements: &[Requirement], held: &[Held]) -> Vec<Gap> {
    requirements
        .iter()
        .map(|requirement| {
            let held_level = held
                .iter()
                .find(|held| held.competency_id == requirement.competency_id)
                .map(|held| held.level)
                .unwrap_or(0);
            Gap {
                competency_id: requirement.competency_id.clone(),
                required_level: requirement.level,
                held_level,
                met: held_level >= requirement.level,
            }
        })
        .collect()
}

/// Returns the highest level of `levels` that some tag or requirement uses above `max_level`,
/// when shrinking a competency to `max_level` levels would orphan it.
pub fn level_in_use_above(used_levels: &[i32], max_level: i32) -> Option<i32> {
    used_levels
        .iter()
        .copied()
        .filter(|level| *level > max_level)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn evidence(competency: &str, level: i32, time: i64) -> Evidence {
        Evidence {
            kind: EvidenceKind::ActivityCompletion,
            competency_id: competency.to_owned(),
            level,
            target_id: "t".to_owned(),
            enrollment_id: None,
            course_version_id: None,
            certificate_id: None,
            achieved_time: at(time),
            expire_time: None,
        }
    }

    #[test]
    fn the_level_held_is_the_highest_evidence() {
        let held = fold_profile(vec![
            evidence("a", 1, 5),
            evidence("a", 3, 1),
            evidence("b", 2, 2),
            evidence("a", 3, 4),
        ]);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].competency_id, "a");
        assert_eq!(held[0].level, 3);
        assert_eq!(held[0].evidence[0].achieved_time, at(4));
        assert_eq!(held[0].evidence[2].level, 1);
        assert_eq!(held[1].level, 2);
    }

    #[test]
    fn gaps_compare_held_with_required_levels() {
        let held = fold_profile(vec![evidence("a", 2, 1)]);
        let requirements = vec![
            Requirement {
                competency_id: "a".to_owned(),
                level: 2,
            },
            Requirement {
                competency_id: "b".to_owned(),
                level: 1,
            },
        ];
        let gaps = gaps(&requirements, &held);
        assert!(gaps[0].met);
        assert_eq!(gaps[1].held_level, 0);
        assert!(!gaps[1].met);
    }

    #[test]
    fn levels_and_codes_are_validated() {
        assert!(NewCompetency::parse("C-1", "Data", "", None, vec![]).is_err());
        assert!(NewCompetency::parse("bad code", "Data", "", None, vec![]).is_err());
        let level = Level {
            name: "Basic".to_owned(),
            description: String::new(),
        };
        assert!(NewCompetency::parse("C-1", "Data", "", None, vec![level.clone()]).is_ok());
        assert!(NewCompetency::parse("C-1", "Data", "", None, vec![level; 11]).is_err());
        assert_eq!(level_in_use_above(&[1, 3, 2], 2), Some(3));
        assert_eq!(level_in_use_above(&[1, 2], 2), None);
    }
}
