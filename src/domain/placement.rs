//! Placements: where an enrolment does an activity that requires sign-off (an industry
//! attachment or a field visit), at which host, under which supervisors; and who may sign the
//! activity off.
//!
//! A host is an organisation of our tree or an external host (name, ISO 3166-1 alpha-2 country,
//! optional address and code). Supervisors are people of the system, with no role required.

use chrono::{DateTime, Utc};

use crate::domain::course::{ActivityKind, ActivityRule};
use crate::domain::progress::{EventFacts, Source, Verb};
use crate::error::{Error, Result, Violations};

/// Most supervisors of one placement.
pub const MAX_SUPERVISORS: usize = 20;
/// Longest external host name.
pub const MAX_HOST_NAME_CHARS: usize = 200;
/// Longest external host address.
pub const MAX_ADDRESS_CHARS: usize = 1000;
/// Longest external host code.
pub const MAX_EXTERNAL_CODE_CHARS: usize = 100;

/// The host of a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An organisation of our tree.
    Organization(String),
    /// A host outside our tree.
    External(ExternalHost),
}

/// A host outside the organisation tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalHost {
    /// Its name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country_code: String,
    /// Postal address, if given.
    pub address: Option<String>,
    /// Its own or a registry code, if given.
    pub external_code: Option<String>,
}

/// A placement as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// UUIDv7.
    pub id: String,
    /// The enrolment.
    pub enrollment_id: String,
    /// The activity.
    pub activity_id: String,
    /// The host.
    pub host: Host,
    /// The supervisors' person ids, sorted, distinct.
    pub supervisor_person_ids: Vec<String>,
    /// Revision, the etag's source.
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
}

impl Placement {
    /// Returns true when `person_id` is one of its supervisors.
    pub fn is_supervised_by(&self, person_id: &str) -> bool {
        self.supervisor_person_ids
            .iter()
            .any(|supervisor| supervisor == person_id)
    }
}

/// Raw values of a host, as the API received them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHost<'a> {
    /// Organisation id.
    pub organization_id: &'a str,
    /// External name.
    pub name: &'a str,
    /// Country code.
    pub country_code: &'a str,
    /// Address.
    pub address: &'a str,
    /// External code.
    pub external_code: &'a str,
}

/// Returns true when `code` is an ISO 3166-1 alpha-2 code in form (two ASCII capitals).
fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// Validates a host; problems are added to `violations` under `prefix` (e.g. `placement.host`).
pub fn parse_host(violations: &mut Violations, prefix: &str, raw: RawHost<'_>) -> Option<Host> {
    let name = raw.name.trim();
    let organization_id = raw.organization_id.trim();
    match (organization_id.is_empty(), name.is_empty()) {
        (true, true) => {
            violations.add(prefix, "names an organization_id or an external host name");
            None
        }
        (false, false) => {
            violations.add(prefix, "names an organization_id or a name, not both");
            None
        }
        (false, true) => {
            let external = [
                ("country_code", raw.country_code),
                ("address", raw.address),
                ("external_code", raw.external_code),
            ];
            if let Some((field, _)) = external.iter().find(|(_, value)| !value.trim().is_empty()) {
                violations.add(
                    format!("{prefix}.{field}"),
                    "applies to external hosts only (the organisation has its own)",
                );
                return None;
            }
            if !crate::domain::is_uuid(organization_id) {
                violations.add(format!("{prefix}.organization_id"), "must be a UUID");
                return None;
            }
            Some(Host::Organization(organization_id.to_lowercase()))
        }
        (true, false) => {
            let before = violations.as_slice().len();
            if name.chars().count() > MAX_HOST_NAME_CHARS {
                violations.add(
                    format!("{prefix}.name"),
                    format!("must be at most {MAX_HOST_NAME_CHARS} characters"),
                );
            }
            let country_code = raw.country_code.trim().to_ascii_uppercase();
            if !is_country_code(&country_code) {
                violations.add(
                    format!("{prefix}.country_code"),
                    "must be an ISO 3166-1 alpha-2 code, e.g. MY",
                );
            }
            let address = raw.address.trim();
            if address.chars().count() > MAX_ADDRESS_CHARS {
                violations.add(
                    format!("{prefix}.address"),
                    format!("must be at most {MAX_ADDRESS_CHARS} characters"),
                );
            }
            let code = raw.external_code.trim();
            if code.chars().count() > MAX_EXTERNAL_CODE_CHARS {
                violations.add(
                    format!("{prefix}.external_code"),
                    format!("must be at most {MAX_EXTERNAL_CODE_CHARS} characters"),
                );
            }
            if violations.as_slice().len() > before {
                return None;
            }
            let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            Some(Host::External(ExternalHost {
                name: name.to_owned(),
                country_code,
                address: optional(address),
                external_code: optional(code),
            }))
        }
    }
}

/// Validates a supervisor list: 1 to [`MAX_SUPERVISORS`] UUIDs; returns them sorted, distinct.
pub fn parse_supervisors(
    violations: &mut Violations,
    field: &str,
    ids: &[String],
) -> Option<Vec<String>> {
    if ids.is_empty() || ids.len() > MAX_SUPERVISORS {
        violations.add(
            field,
            format!("must name 1 to {MAX_SUPERVISORS} supervisors"),
        );
        return None;
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        if !crate::domain::is_uuid(id) {
            violations.add(format!("{field}[{index}]"), "must be a UUID");
            return None;
        }
        parsed.push(id.to_lowercase());
    }
    parsed.sort();
    parsed.dedup();
    Some(parsed)
}

/// A validated new placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlacement {
    /// The enrolment.
    pub enrollment_id: String,
    /// The activity.
    pub activity_id: String,
    /// The host.
    pub host: Host,
    /// Supervisors, sorted, distinct.
    pub supervisor_person_ids: Vec<String>,
}

impl NewPlacement {
    /// Validates a new placement; every problem is reported at once, under `placement.*`.
    pub fn parse(
        enrollment_id: &str,
        activity_id: &str,
        host: Option<RawHost<'_>>,
        supervisor_person_ids: &[String],
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut id = |field: &str, value: &str| {
            if crate::domain::is_uuid(value) {
                Some(value.to_lowercase())
            } else {
                violations.add(field, "must be a UUID");
                None
            }
        };
        let enrollment_id = id("placement.enrollment_id", enrollment_id);
        let activity_id = id("placement.activity_id", activity_id);
        let host = match host {
            Some(raw) => parse_host(&mut violations, "placement.host", raw),
            None => {
                violations.add("placement.host", "is required");
                None
            }
        };
        let supervisors = parse_supervisors(
            &mut violations,
            "placement.supervisor_person_ids",
            supervisor_person_ids,
        );
        match (enrollment_id, activity_id, host, supervisors) {
            (Some(enrollment_id), Some(activity_id), Some(host), Some(supervisor_person_ids))
                if violations.is_empty() =>
            {
                Ok(Self {
                    enrollment_id,
                    activity_id,
                    host,
                    supervisor_person_ids,
                })
            }
            _ => Err(Error::InvalidArgument(violations)),
        }
    }
}

/// A field of a placement an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementField {
    /// `host`.
    Host,
    /// `supervisor_person_ids`.
    SupervisorPersonIds,
}

impl PlacementField {
    /// Every updatable field.
    pub const ALL: [Self; 2] = [Self::Host, Self::SupervisorPersonIds];
    /// Paths ignored in a mask.
    pub const OUTPUT_ONLY: [&'static str; 6] = [
        "id",
        "enrollment_id",
        "activity_id",
        "etag",
        "create_time",
        "update_time",
    ];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "host" => Some(Self::Host),
            "supervisor_person_ids" => Some(Self::SupervisorPersonIds),
            _ => None,
        }
    }
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementPatch {
    /// New host.
    pub host: Option<Host>,
    /// New supervisors (replacing every one).
    pub supervisor_person_ids: Option<Vec<String>>,
}

/// Returns true when a SUPERVISOR event on an activity with `rule` is a sign-off that only the
/// placement's supervisors (or an admin) may record: the activity requires sign-off.
pub fn needs_placement_supervisor(kind: ActivityKind, source: Source) -> bool {
    source == Source::Supervisor && kind.requires_sign_off()
}

/// Returns true when the completing sign-off of an activity of `kind` must carry evidence.
///
/// An industry attachment is signed off on a document (a signed form, a report); a field visit
/// is attested by the supervisor's event alone.
pub fn requires_evidence(kind: ActivityKind) -> bool {
    kind == ActivityKind::IndustryAttachment
}

/// Returns an error naming `evidence` when `facts` are the completing sign-off of an activity
/// with `rule` that requires evidence and `has_evidence` (an evidence URI) is false.
pub fn check_sign_off_evidence(
    facts: &EventFacts,
    rule: &ActivityRule,
    has_evidence: bool,
) -> std::result::Result<(), (&'static str, String)> {
    let completing = facts.source == Source::Supervisor && facts.verb == Verb::Completed;
    if completing && rule.requires_sign_off && requires_evidence(rule.kind) && !has_evidence {
        return Err((
            "evidence",
            "is required: the sign-off of an industry attachment carries its evidence uri"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(organization_id: &str, name: &str, country: &str) -> Result<Option<Host>> {
        let mut violations = Violations::new();
        let host = parse_host(
            &mut violations,
            "host",
            RawHost {
                organization_id,
                name,
                country_code: country,
                ..RawHost::default()
            },
        );
        violations.into_result(host)
    }

    #[test]
    fn an_external_host_needs_a_two_letter_country_code() {
        assert!(host("", "Bosch", "DE").unwrap().is_some());
        assert!(matches!(
            host("", "Bosch", "de").unwrap(),
            Some(Host::External(ExternalHost { ref country_code, .. })) if country_code == "DE"
        ));
        assert!(host("", "Bosch", "DEU").is_err());
        assert!(host("", "Bosch", "").is_err());
    }

    #[test]
    fn a_host_is_an_organisation_or_a_name_never_both_or_neither() {
        let id = crate::domain::new_id();
        assert!(host(&id, "", "").unwrap().is_some());
        assert!(host(&id, "Bosch", "DE").is_err());
        assert!(host("", "", "").is_err());
        assert!(host(&id, "", "MY").is_err());
    }

    #[test]
    fn supervisors_are_one_to_twenty_distinct_ids() {
        let mut violations = Violations::new();
        let id = crate::domain::new_id();
        let parsed = parse_supervisors(&mut violations, "s", &[id.clone(), id.clone()]);
        assert_eq!(parsed, Some(vec![id]));
        assert!(parse_supervisors(&mut violations, "s", &[]).is_none());
        assert!(parse_supervisors(&mut violations, "s", &["x".to_owned()]).is_none());
    }
}
