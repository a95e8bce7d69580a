//! Organisations: the tree of ministries, departments and units, and its rules.

use chrono::{DateTime, Utc};

use crate::error::{Error, Reason, Result, Violations};

/// Longest organisation name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest external code.
pub const MAX_EXTERNAL_CODE_CHARS: usize = 64;

/// Kind of organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationKind {
    /// A ministry.
    Ministry,
    /// A government agency.
    Agency,
    /// A department.
    Department,
    /// A unit of a department.
    Unit,
    /// A training centre or institute.
    TrainingCentre,
    /// A university.
    University,
    /// A private company.
    Company,
    /// A partner (vendor, academy).
    Partner,
}

impl OrganizationKind {
    const ALL: [(Self, &'static str); 8] = [
        (Self::Ministry, "MINISTRY"),
        (Self::Agency, "AGENCY"),
        (Self::Department, "DEPARTMENT"),
        (Self::Unit, "UNIT"),
        (Self::TrainingCentre, "TRAINING_CENTRE"),
        (Self::University, "UNIVERSITY"),
        (Self::Company, "COMPANY"),
        (Self::Partner, "PARTNER"),
    ];

    /// Returns the stored name of the kind.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(kind, _)| *kind == self)
            .map(|(_, name)| *name)
            .unwrap_or("UNSPECIFIED")
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, stored)| *stored == name)
            .map(|(kind, _)| *kind)
    }
}

/// An organisation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// UUIDv7.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: OrganizationKind,
    /// Parent, if not a root.
    pub parent_id: Option<String>,
    /// Materialised path: `/root-id/.../own-id/`.
    pub path: String,
    /// Code by which HR systems name it.
    pub external_code: Option<String>,
    /// Incremented on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

impl Organization {
    /// Returns the ids from the root down to the parent.
    pub fn ancestor_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();
        ids.pop();
        ids
    }
}

/// Returns the materialised path of a node `id` under a parent with path `parent_path`.
pub fn child_path(parent_path: Option<&str>, id: &str) -> String {
    format!("{}{id}/", parent_path.unwrap_or("/"))
}

/// Returns true when the node with `path` lies in the subtree rooted at `root_id` (itself included).
pub fn path_is_within(path: &str, root_id: &str) -> bool {
    path.contains(&format!("/{root_id}/"))
}

/// Checks that moving `organization` under a parent with path `new_parent_path` keeps the tree a tree.
pub fn check_move(organization: &Organization, new_parent_path: Option<&str>) -> Result<()> {
    match new_parent_path {
        Some(parent_path) if path_is_within(parent_path, &organization.id) => {
            Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::OrganizationCycle,
                subject: format!("organization/{}", organization.id),
                message: "cannot move an organization under itself or one of its descendants"
                    .to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// A validated request to create an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrganization {
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: OrganizationKind,
    /// Parent id, if any.
    pub parent_id: Option<String>,
    /// External code, if any.
    pub external_code: Option<String>,
}

impl NewOrganization {
    /// Validates the fields of a create request; `prefix` is the proto path of the message.
    pub fn parse(
        prefix: &str,
        name: &str,
        kind: Option<OrganizationKind>,
        parent_id: &str,
        external_code: &str,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let name = validate_name(&mut violations, &format!("{prefix}.name"), name);
        let kind = validate_kind(&mut violations, &format!("{prefix}.kind"), kind);
        let parent_id = optional_id(&mut violations, &format!("{prefix}.parent_id"), parent_id);
        let external_code = validate_external_code(
            &mut violations,
            &format!("{prefix}.external_code"),
            external_code,
        );
        violations.into_result(())?;
        Ok(Self {
            name,
            kind: kind.expect("validated"),
            parent_id,
            external_code,
        })
    }
}

/// A field of an organisation that `UpdateOrganization` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationField {
    /// `name`.
    Name,
    /// `kind`.
    Kind,
    /// `external_code`.
    ExternalCode,
}

impl OrganizationField {
    /// Every updatable field.
    pub const ALL: [Self; 3] = [Self::Name, Self::Kind, Self::ExternalCode];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 5] =
        ["id", "etag", "create_time", "update_time", "ancestor_ids"];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "name" => Some(Self::Name),
            "kind" => Some(Self::Kind),
            "external_code" => Some(Self::ExternalCode),
            _ => None,
        }
    }
}

/// Validated new values of an update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationPatch {
    /// New name.
    pub name: Option<String>,
    /// New kind.
    pub kind: Option<OrganizationKind>,
    /// New external code (`Some(None)` clears it).
    pub external_code: Option<Option<String>>,
}

impl OrganizationPatch {
    /// Validates the values of the fields named in `fields`.
    pub fn parse(
        prefix: &str,
        fields: &[OrganizationField],
        name: &str,
        kind: Option<OrganizationKind>,
        external_code: &str,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                OrganizationField::Name => {
                    patch.name = Some(validate_name(
                        &mut violations,
                        &format!("{prefix}.name"),
                        name,
                    ));
                }
                OrganizationField::Kind => {
                    patch.kind = validate_kind(&mut violations, &format!("{prefix}.kind"), kind);
                }
                OrganizationField::ExternalCode => {
                    patch.external_code = Some(validate_external_code(
                        &mut violations,
                        &format!("{prefix}.external_code"),
                        external_code,
                    ));
                }
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch to `organization`; returns false when nothing changes.
    pub fn apply(&self, organization: &mut Organization) -> bool {
        let before = organization.clone();
        if let Some(name) = &self.name {
            organization.name.clone_from(name);
        }
        if let Some(kind) = self.kind {
            organization.kind = kind;
        }
        if let Some(external_code) = &self.external_code {
            organization.external_code.clone_from(external_code);
        }
        *organization != before
    }
}

fn validate_name(violations: &mut Violations, field: &str, name: &str) -> String {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        violations.add(field, "is required");
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        violations.add(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
    }
    trimmed.to_owned()
}

fn validate_kind(
    violations: &mut Violations,
    field: &str,
    kind: Option<OrganizationKind>,
) -> Option<OrganizationKind> {
    if kind.is_none() {
        violations.add(field, "is required (one of the OrganizationKind values)");
    }
    kind
}

/// Validates an external code: empty means none.
pub fn validate_external_code(
    violations: &mut Violations,
    field: &str,
    code: &str,
) -> Option<String> {
    if code.is_empty() {
        return None;
    }
    let valid_chars = code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if code.chars().count() > MAX_EXTERNAL_CODE_CHARS || !valid_chars {
        violations.add(
            field,
            format!("must be 1 to {MAX_EXTERNAL_CODE_CHARS} letters, digits, '-', '_', '.' or '/'"),
        );
    }
    Some(code.to_owned())
}

/// Validates an `external_code` to look up: required, and shaped as codes are stored.
pub fn parse_external_code(field: &str, code: &str) -> Result<String> {
    if code.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    let mut violations = Violations::new();
    let code = validate_external_code(&mut violations, field, code);
    violations.into_result(code.unwrap_or_default())
}

/// Validates an optional resource id: empty means none.
pub fn optional_id(violations: &mut Violations, field: &str, id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    if !crate::domain::is_uuid(id) {
        violations.add(field, "must be a UUID");
    }
    Some(id.to_owned())
}

/// Validates an optional resource id: empty means none; anything else must be a UUID.
pub fn optional_id_or_error(field: &str, id: &str) -> Result<Option<String>> {
    let mut violations = Violations::new();
    let id = optional_id(&mut violations, field, id);
    violations.into_result(id)
}

/// Validates a required resource id.
pub fn required_id(field: &str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !crate::domain::is_uuid(id) {
        return Err(Error::invalid(field, "must be a UUID"));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organization(id: &str, path: &str) -> Organization {
        Organization {
            id: id.to_owned(),
            name: "Unit".to_owned(),
            kind: OrganizationKind::Unit,
            parent_id: None,
            path: path.to_owned(),
            external_code: None,
            revision: 1,
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    #[test]
    fn moving_under_a_descendant_is_a_cycle() {
        let ministry = organization("m", "/m/");
        assert!(check_move(&ministry, Some("/m/d/u/")).is_err());
        assert!(check_move(&ministry, Some("/m/")).is_err());
        assert!(check_move(&ministry, Some("/other/")).is_ok());
        assert!(check_move(&ministry, None).is_ok());
    }

    #[test]
    fn ancestors_come_from_the_path() {
        let unit = organization("u", "/m/d/u/");
        assert_eq!(unit.ancestor_ids(), vec!["m".to_owned(), "d".to_owned()]);
    }

    #[test]
    fn an_empty_name_and_missing_kind_are_both_reported() {
        let Err(Error::InvalidArgument(violations)) =
            NewOrganization::parse("organization", "  ", None, "", "")
        else {
            panic!("expected invalid argument");
        };
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["organization.name", "organization.kind"]);
    }
}
