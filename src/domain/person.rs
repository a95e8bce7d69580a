//! People as HR systems know them: validation of records, and what an upsert did.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::category::CategoryCode;
use crate::error::{Error, Result, Violations};

/// Longest external id.
pub const MAX_EXTERNAL_ID_CHARS: usize = 64;
/// Longest full name.
pub const MAX_FULL_NAME_CHARS: usize = 200;
/// Longest email address.
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most records in one `BatchUpsertPeople` call.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Most keys in one `BatchLookupPeople` or `BatchLookupOrganizations` call.
pub const MAX_LOOKUP_KEYS: usize = 1000;

/// Whether a person is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonStatus {
    /// Current.
    Active,
    /// Left or suspended.
    Inactive,
}

impl PersonStatus {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ACTIVE" => Some(Self::Active),
            "INACTIVE" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// UUIDv7.
    pub id: String,
    /// Employee id in the HR system.
    pub external_id: String,
    /// Mutable values.
    pub values: PersonValues,
    /// Incremented on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

/// The values of a person that HR records and updates set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonValues {
    /// Full name.
    pub full_name: String,
    /// Email address.
    pub email: Option<String>,
    /// Organisation id.
    pub organization_id: String,
    /// Participant category.
    pub category: CategoryCode,
    /// Status.
    #[serde(serialize_with = "serialize_status")]
    pub status: PersonStatus,
}

fn serialize_status<S: serde::Serializer>(
    status: &PersonStatus,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(status.as_str())
}

/// How a record names its organisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OrganizationRef {
    /// By id.
    Id(String),
    /// By external code.
    ExternalCode(String),
}

/// A record as received, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPersonRecord {
    /// Employee id.
    pub external_id: String,
    /// Full name.
    pub full_name: String,
    /// Email, empty for none.
    pub email: String,
    /// Organisation id, empty when named by code.
    pub organization_id: String,
    /// Organisation external code, empty when named by id.
    pub organization_external_code: String,
    /// Participant category code, empty when unspecified.
    pub category: String,
    /// Category of the deprecated sector, `None` when unspecified.
    pub sector: Option<CategoryCode>,
    /// Status, `None` when unspecified (means active).
    pub status: Option<PersonStatus>,
}

/// A validated record whose organisation is not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// Employee id.
    pub external_id: String,
    /// Full name.
    pub full_name: String,
    /// Email.
    pub email: Option<String>,
    /// Organisation reference.
    pub organization: OrganizationRef,
    /// Participant category (not yet checked to exist).
    pub category: CategoryCode,
    /// Status.
    pub status: PersonStatus,
}

impl PersonRecord {
    /// Returns the values of this record once its organisation resolved to `organization_id`.
    pub fn values(&self, organization_id: String) -> PersonValues {
        PersonValues {
            full_name: self.full_name.clone(),
            email: self.email.clone(),
            organization_id,
            category: self.category.clone(),
            status: self.status,
        }
    }
}

impl RawPersonRecord {
    /// Validates the record; on failure returns the first offending field and why.
    pub fn validate(self) -> std::result::Result<PersonRecord, (&'static str, String)> {
        let external_id = self.external_id.trim();
        if external_id.is_empty() {
            return Err(("external_id", "is required".to_owned()));
        }
        if external_id.chars().count() > MAX_EXTERNAL_ID_CHARS {
            return Err((
                "external_id",
                format!("must be at most {MAX_EXTERNAL_ID_CHARS} characters"),
            ));
        }
        let full_name = validate_full_name(&self.full_name).map_err(|why| ("full_name", why))?;
        let email = validate_email(&self.email).map_err(|why| ("email", why))?;
        let organization = match (
            self.organization_id.is_empty(),
            self.organization_external_code.is_empty(),
        ) {
            (false, true) if crate::domain::is_uuid(&self.organization_id) => {
                OrganizationRef::Id(self.organization_id)
            }
            (false, true) => return Err(("organization_id", "must be a UUID".to_owned())),
            (true, false) => OrganizationRef::ExternalCode(self.organization_external_code),
            (true, true) => {
                return Err((
                    "organization_id",
                    "one of organization_id and organization_external_code is required".to_owned(),
                ));
            }
            (false, false) => {
                return Err((
                    "organization_id",
                    "set only one of organization_id and organization_external_code".to_owned(),
                ));
            }
        };
        let category = resolve_category(&self.category, self.sector)
            .map_err(|why| ("category", why))?
            .ok_or((
                "category",
                "is required: a participant category code such as public (or the deprecated sector)"
                    .to_owned(),
            ))?;
        Ok(PersonRecord {
            external_id: external_id.to_owned(),
            full_name,
            email,
            organization,
            category,
            status: self.status.unwrap_or(PersonStatus::Active),
        })
    }
}

/// Returns the category a request names by `category` (a code, empty for none) or by the
/// deprecated sector (`sector`, already mapped to its category); `None` when it names neither.
/// Both may be sent when they agree.
pub fn resolve_category(
    category: &str,
    sector: Option<CategoryCode>,
) -> std::result::Result<Option<CategoryCode>, String> {
    if category.trim().is_empty() {
        return Ok(sector);
    }
    let code = CategoryCode::parse(category)?;
    match sector {
        Some(sector) if sector != code => Err(format!(
            "names the category {code} but sector names {sector}; send one of them"
        )),
        _ => Ok(Some(code)),
    }
}

/// Validates a full name; returns it trimmed.
pub fn validate_full_name(full_name: &str) -> std::result::Result<String, String> {
    let trimmed = full_name.trim();
    if trimmed.is_empty() {
        return Err("is required".to_owned());
    }
    if trimmed.chars().count() > MAX_FULL_NAME_CHARS {
        return Err(format!("must be at most {MAX_FULL_NAME_CHARS} characters"));
    }
    Ok(trimmed.to_owned())
}

/// Validates an optional email address (empty means none); returns it trimmed and lowercased.
pub fn validate_email(email: &str) -> std::result::Result<Option<String>, String> {
    let trimmed = email.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let well_formed = trimmed.len() <= MAX_EMAIL_CHARS
        && !trimmed.chars().any(char::is_whitespace)
        && trimmed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !well_formed {
        return Err("must be an email address like name@agency.gov.my".to_owned());
    }
    Ok(Some(trimmed.to_lowercase()))
}

/// A field of a person that `UpdatePerson` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonField {
    /// `full_name`.
    FullName,
    /// `email`.
    Email,
    /// `organization_id`.
    OrganizationId,
    /// `category` (or the deprecated `sector`).
    Category,
    /// `status`.
    Status,
}

impl PersonField {
    /// Every updatable field.
    pub const ALL: [Self; 5] = [
        Self::FullName,
        Self::Email,
        Self::OrganizationId,
        Self::Category,
        Self::Status,
    ];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 4] = ["id", "etag", "create_time", "update_time"];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "full_name" => Some(Self::FullName),
            "email" => Some(Self::Email),
            "organization_id" => Some(Self::OrganizationId),
            "category" | "sector" => Some(Self::Category),
            "status" => Some(Self::Status),
            _ => None,
        }
    }
}

/// Validated new values of an update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonPatch {
    /// New full name.
    pub full_name: Option<String>,
    /// New email (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// New organisation.
    pub organization_id: Option<String>,
    /// New participant category (not yet checked to exist).
    pub category: Option<CategoryCode>,
    /// New status.
    pub status: Option<PersonStatus>,
}

impl PersonPatch {
    /// Validates the values of the fields named in `fields`; `values` holds what the request sent.
    pub fn parse(
        prefix: &str,
        fields: &[PersonField],
        full_name: &str,
        email: &str,
        organization_id: &str,
        (category, sector): (&str, Option<CategoryCode>),
        status: Option<PersonStatus>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                PersonField::FullName => match validate_full_name(full_name) {
                    Ok(value) => patch.full_name = Some(value),
                    Err(why) => violations.add(format!("{prefix}.full_name"), why),
                },
                PersonField::Email => match validate_email(email) {
                    Ok(value) => patch.email = Some(value),
                    Err(why) => violations.add(format!("{prefix}.email"), why),
                },
                PersonField::OrganizationId => {
                    match crate::domain::organization::required_id(
                        "organization_id",
                        organization_id,
                    ) {
                        Ok(id) => patch.organization_id = Some(id),
                        Err(_) => violations.add(
                            format!("{prefix}.organization_id"),
                            "must be the UUID of an organization",
                        ),
                    }
                }
                PersonField::Category => match resolve_category(category, sector.clone()) {
                    Ok(Some(value)) => patch.category = Some(value),
                    Ok(None) => violations.add(format!("{prefix}.category"), "is required"),
                    Err(why) => violations.add(format!("{prefix}.category"), why),
                },
                PersonField::Status => match status {
                    Some(value) => patch.status = Some(value),
                    None => violations.add(format!("{prefix}.status"), "is required"),
                },
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch to `values`; returns false when nothing changes.
    pub fn apply(&self, values: &mut PersonValues) -> bool {
        let before = values.clone();
        if let Some(full_name) = &self.full_name {
            values.full_name.clone_from(full_name);
        }
        if let Some(email) = &self.email {
            values.email.clone_from(email);
        }
        if let Some(organization_id) = &self.organization_id {
            values.organization_id.clone_from(organization_id);
        }
        if let Some(category) = &self.category {
            values.category.clone_from(category);
        }
        if let Some(status) = self.status {
            values.status = status;
        }
        *values != before
    }
}

/// What an upsert did, by record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertCounts {
    /// New people.
    pub created: i64,
    /// Changed people.
    pub updated: i64,
    /// Identical people.
    pub unchanged: i64,
    /// Refused records.
    pub failed: i64,
}

impl UpsertCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Self) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
    }

    /// Returns the number of records applied (created, updated or unchanged).
    pub fn applied(&self) -> i64 {
        self.created + self.updated + self.unchanged
    }
}

/// Why one record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// Position in the batch or stream.
    pub index: i64,
    /// The record's natural key.
    pub key: String,
    /// Offending field, relative to the record; empty for the record as a whole.
    pub field: String,
    /// Stable reason.
    pub reason: String,
    /// Explanation.
    pub message: String,
}

/// What happened to one record of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordOutcome {
    /// The person did not exist and was created.
    Created,
    /// The person existed and changed.
    Updated,
    /// The person existed and was already identical.
    Unchanged,
    /// The record was refused and wrote nothing.
    Refused,
}

/// One record's result: which person it is and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordResult {
    /// Position in the batch or stream.
    pub index: i64,
    /// The record's `external_id` as sent.
    pub external_id: String,
    /// The person created or matched; for a refused record, the existing person the caller
    /// may see, if any.
    pub id: Option<String>,
    /// What happened.
    pub outcome: RecordOutcome,
    /// Why, for a refused record.
    pub error: Option<RecordError>,
}

/// What an upsert did: counts, refused records, and a result per record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertOutcome {
    /// Counts.
    pub counts: UpsertCounts,
    /// Refused records.
    pub errors: Vec<RecordError>,
    /// One result per record, by position (absent from answers stored before results existed).
    #[serde(default)]
    pub results: Vec<RecordResult>,
}

/// Validates an `external_id` to look up; returns it trimmed, as upserts store it.
pub fn parse_external_id(field: &str, external_id: &str) -> Result<String> {
    let trimmed = external_id.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if trimmed.chars().count() > MAX_EXTERNAL_ID_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_EXTERNAL_ID_CHARS} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Validates the keys of a batch lookup with `parse_one` (given the field path of each key):
/// 1 to [`MAX_LOOKUP_KEYS`] of them. Returns them in request order, each once.
pub fn parse_lookup_keys(
    field: &str,
    keys: &[String],
    parse_one: impl Fn(&str, &str) -> Result<String>,
) -> Result<Vec<String>> {
    if keys.is_empty() {
        return Err(Error::invalid(field, "must hold at least one key"));
    }
    if keys.len() > MAX_LOOKUP_KEYS {
        return Err(Error::invalid(
            field,
            format!(
                "must hold at most {MAX_LOOKUP_KEYS} keys (got {}); split the lookup",
                keys.len()
            ),
        ));
    }
    let mut violations = Violations::new();
    let mut seen = std::collections::HashSet::new();
    let mut parsed = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        match parse_one(&format!("{field}[{index}]"), key) {
            Ok(key) => {
                if seen.insert(key.clone()) {
                    parsed.push(key);
                }
            }
            Err(Error::InvalidArgument(found)) => {
                for violation in found.as_slice() {
                    violations.add(violation.field.clone(), violation.description.clone());
                }
            }
            Err(other) => return Err(other),
        }
    }
    violations.into_result(parsed)
}

/// Checks the size of a batch.
pub fn check_batch_size(field: &str, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::invalid(field, "must hold at least one record"));
    }
    if len > MAX_BATCH_RECORDS {
        return Err(Error::invalid(
            field,
            format!("must hold at most {MAX_BATCH_RECORDS} records; use ImportPeople for more"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RawPersonRecord {
        RawPersonRecord {
            external_id: "E-1".to_owned(),
            full_name: "Aminah binti Ali".to_owned(),
            email: "Aminah@Agency.gov.my".to_owned(),
            organization_external_code: "MOF".to_owned(),
            category: "public".to_owned(),
            ..RawPersonRecord::default()
        }
    }

    #[test]
    fn a_valid_record_is_normalised() {
        let valid = record().validate().unwrap();
        assert_eq!(valid.email.as_deref(), Some("aminah@agency.gov.my"));
        assert_eq!(valid.status, PersonStatus::Active);
        assert_eq!(
            valid.organization,
            OrganizationRef::ExternalCode("MOF".to_owned())
        );
    }

    #[test]
    fn the_deprecated_sector_names_its_category() {
        let raw = RawPersonRecord {
            category: String::new(),
            sector: Some(CategoryCode::private()),
            ..record()
        };
        assert_eq!(raw.validate().unwrap().category, CategoryCode::private());
        let both = RawPersonRecord {
            sector: Some(CategoryCode::public()),
            ..record()
        };
        assert_eq!(both.validate().unwrap().category, CategoryCode::public());
    }

    #[test]
    fn lookup_keys_are_trimmed_deduplicated_and_bounded() {
        let keys = vec![" E-1 ".to_owned(), "E-2".to_owned(), "E-1".to_owned()];
        assert_eq!(
            parse_lookup_keys("external_ids", &keys, parse_external_id).unwrap(),
            vec!["E-1".to_owned(), "E-2".to_owned()]
        );
        let too_many = vec!["E".to_owned(); MAX_LOOKUP_KEYS + 1];
        assert!(parse_lookup_keys("external_ids", &too_many, parse_external_id).is_err());
        let Err(Error::InvalidArgument(violations)) = parse_lookup_keys(
            "external_ids",
            &["E".to_owned(), " ".to_owned()],
            parse_external_id,
        ) else {
            panic!("a blank key is refused");
        };
        assert_eq!(violations.as_slice()[0].field, "external_ids[1]");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                RawPersonRecord {
                    external_id: String::new(),
                    ..record()
                },
                "external_id",
            ),
            (
                RawPersonRecord {
                    full_name: " ".to_owned(),
                    ..record()
                },
                "full_name",
            ),
            (
                RawPersonRecord {
                    email: "not-an-email".to_owned(),
                    ..record()
                },
                "email",
            ),
            (
                RawPersonRecord {
                    category: String::new(),
                    ..record()
                },
                "category",
            ),
            (
                RawPersonRecord {
                    category: "Public Sector".to_owned(),
                    ..record()
                },
                "category",
            ),
            (
                RawPersonRecord {
                    sector: Some(CategoryCode::private()),
                    ..record()
                },
                "category",
            ),
            (
                RawPersonRecord {
                    organization_external_code: String::new(),
                    ..record()
                },
                "organization_id",
            ),
            (
                RawPersonRecord {
                    organization_id: "x".to_owned(),
                    ..record()
                },
                "organization_id",
            ),
        ];
        for (raw, field) in cases {
            assert_eq!(raw.validate().unwrap_err().0, field);
        }
    }
}
