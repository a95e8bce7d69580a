//! Delivery rules: session validation, who may lead and co-deliver a session, and the
//! deterministic ids of the progress events attendance records.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest as _, Sha256};

use super::stored_enum;
use crate::domain::course::{ActivityKind, DeliveryMode};
use crate::error::{Error, Reason, Result, Violations};

/// Longest session.
pub const MAX_SESSION_DAYS: i64 = 14;
/// Most co-trainers of one session.
pub const MAX_CO_TRAINERS: usize = 10;
/// Most people in one attendance call.
pub const MAX_ATTENDANCE_BATCH: usize = 1000;

stored_enum!(
    /// Lifecycle of a session.
    SessionState {
        /// Planned.
        Scheduled => "SCHEDULED",
        /// Delivered.
        Delivered => "DELIVERED",
        /// Cancelled.
        Cancelled => "CANCELLED",
    }
);

stored_enum!(
    /// Attendance mark.
    AttendanceStatus {
        /// Was there.
        Present => "PRESENT",
        /// Was not.
        Absent => "ABSENT",
        /// Excused.
        Excused => "EXCUSED",
    }
);

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// UUIDv7.
    pub id: String,
    /// Cohort.
    pub cohort_id: String,
    /// Module.
    pub module_id: String,
    /// Course version of the module.
    pub course_version_id: String,
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// Where.
    pub location: String,
    /// Lead trainer.
    pub lead_trainer_id: String,
    /// Co-trainers.
    pub co_trainer_ids: Vec<String>,
    /// State.
    pub state: SessionState,
    /// Why cancelled.
    pub cancel_reason: Option<String>,
    /// When delivered.
    pub delivered_time: Option<DateTime<Utc>>,
    /// Revision.
    pub revision: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Changed.
    pub update_time: DateTime<Utc>,
}

impl Session {
    /// Returns the lead and the co-trainers.
    pub fn trainer_ids(&self) -> Vec<String> {
        std::iter::once(self.lead_trainer_id.clone())
            .chain(self.co_trainer_ids.iter().cloned())
            .collect()
    }
}

/// A time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
}

/// Validates a session window from optional times, naming `start_field` and `end_field`.
pub fn validate_window(
    violations: &mut Violations,
    start_field: &str,
    end_field: &str,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
) -> Option<Window> {
    match (start_time, end_time) {
        (None, _) => {
            violations.add(start_field, "is required");
            None
        }
        (_, None) => {
            violations.add(end_field, "is required");
            None
        }
        (Some(start), Some(end)) if end <= start => {
            violations.add(end_field, "must be after the start time");
            None
        }
        (Some(start), Some(end)) if end - start > Duration::days(MAX_SESSION_DAYS) => {
            violations.add(
                end_field,
                format!("a session lasts at most {MAX_SESSION_DAYS} days"),
            );
            None
        }
        (Some(start), Some(end)) => Some(Window {
            start_time: crate::domain::truncate_micros(start),
            end_time: crate::domain::truncate_micros(end),
        }),
    }
}

/// The trainers of a session, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trainers {
    /// Lead.
    pub lead_trainer_id: String,
    /// Co-trainers.
    pub co_trainer_ids: Vec<String>,
}

/// Validates a lead and co-trainers, naming fields under `prefix` (empty for top-level fields).
pub fn validate_trainers(
    violations: &mut Violations,
    prefix: &str,
    lead_trainer_id: &str,
    co_trainer_ids: &[String],
) -> Trainers {
    let field = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    if !crate::domain::is_uuid(lead_trainer_id) {
        violations.add(field("lead_trainer_id"), "is required (a person id)");
    }
    for (index, id) in co_trainer_ids.iter().enumerate() {
        if !crate::domain::is_uuid(id) {
            violations.add(
                format!("{}[{index}]", field("co_trainer_ids")),
                "must be a person id",
            );
        }
    }
    let mut distinct = co_trainer_ids.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != co_trainer_ids.len() || distinct.iter().any(|id| id == lead_trainer_id) {
        violations.add(
            field("co_trainer_ids"),
            "must be distinct and must not include the lead trainer",
        );
    }
    if co_trainer_ids.len() > MAX_CO_TRAINERS {
        violations.add(
            field("co_trainer_ids"),
            format!("at most {MAX_CO_TRAINERS} co-trainers"),
        );
    }
    Trainers {
        lead_trainer_id: lead_trainer_id.to_owned(),
        co_trainer_ids: co_trainer_ids.to_vec(),
    }
}

/// Validates a location (at most 200 characters).
pub fn validate_location(violations: &mut Violations, field: &str, location: &str) -> String {
    let location = location.trim();
    if location.chars().count() > 200 {
        violations.add(field, "must be at most 200 characters");
    }
    location.to_owned()
}

/// What is known about one trainer of a session, for the delivery rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrainerStanding {
    /// The person.
    pub person_id: String,
    /// Holds an active, unexpired certificate whose track qualifies for the module.
    pub certified_for_module: bool,
    /// One of those certificates' scope covers the cohort's learners.
    pub certified_in_scope: bool,
    /// Has a candidacy in SUPERVISED_PRACTICE (not lapsed) on a track qualifying for the module.
    pub practising_candidate: bool,
    /// The person's full name, for refusals.
    pub full_name: String,
    /// When not certified for the module: the qualifying certificate that lapsed last (expired,
    /// suspended, revoked or superseded), so a refusal can name it and its date.
    pub lapsed_certificate: Option<LapsedCertificate>,
}

/// A qualifying certificate that no longer counts, as named in a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LapsedCertificate {
    /// Certificate id.
    pub id: String,
    /// Its public verification code.
    pub verification_code: String,
    /// Its track's title.
    pub track_title: String,
    /// Its status (ACTIVE when it merely expired).
    pub status: String,
    /// When it expires or expired, `YYYY-MM-DD`.
    pub expire_date: String,
}

impl TrainerStanding {
    /// "Name (person/id)".
    fn named(&self) -> String {
        if self.full_name.is_empty() {
            format!("person/{}", self.person_id)
        } else {
            format!("{} (person/{})", self.full_name, self.person_id)
        }
    }
}

/// Checks the delivery rules: a certified lead whose scope covers the learners; co-trainers
/// certified, or candidates in supervised practice under that certified lead.
pub fn check_trainers(
    session_subject: &str,
    lead: &TrainerStanding,
    co_trainers: &[TrainerStanding],
) -> Result<()> {
    if !lead.certified_for_module {
        let lead_name = lead.named();
        let mut error = Error::precondition(
            Reason::LeadTrainerNotCertified,
            format!("person/{}", lead.person_id),
            match &lead.lapsed_certificate {
                Some(lapsed) if lapsed.status == "ACTIVE" => format!(
                    "rule LEAD_TRAINER_NOT_CERTIFIED: the lead trainer {lead_name} holds no active certificate whose track qualifies for the module of {session_subject}: certificate {} ({}, track \"{}\") expired on {}",
                    lapsed.id, lapsed.verification_code, lapsed.track_title, lapsed.expire_date
                ),
                Some(lapsed) => format!(
                    "rule LEAD_TRAINER_NOT_CERTIFIED: the lead trainer {lead_name} holds no active certificate whose track qualifies for the module of {session_subject}: certificate {} ({}, track \"{}\", expiring {}) is {}",
                    lapsed.id,
                    lapsed.verification_code,
                    lapsed.track_title,
                    lapsed.expire_date,
                    lapsed.status
                ),
                None => format!(
                    "rule LEAD_TRAINER_NOT_CERTIFIED: the lead trainer {lead_name} has never held a certificate whose track qualifies for the module of {session_subject}"
                ),
            },
        )
        .with("person_id", lead.person_id.clone())
        .with("session", session_subject);
        if let Some(lapsed) = &lead.lapsed_certificate {
            error = error
                .with("certificate_id", lapsed.id.clone())
                .with("verification_code", lapsed.verification_code.clone())
                .with("certificate_status", lapsed.status.clone())
                .with("expire_date", lapsed.expire_date.clone());
        }
        return Err(error);
    }
    if !lead.certified_in_scope {
        return Err(Error::FailedPrecondition {
            metadata: Vec::new(),
            reason: Reason::LeadTrainerOutOfScope,
            subject: format!("person/{}", lead.person_id),
            message: format!(
                "rule LEAD_TRAINER_OUT_OF_SCOPE: the certificate of the lead trainer {} covers only learners of their own organisation subtree, and {session_subject} has learners outside it",
                lead.named()
            ),
        }
        .with("person_id", lead.person_id.clone())
        .with("session", session_subject));
    }
    for co_trainer in co_trainers {
        if !co_trainer.certified_for_module && !co_trainer.practising_candidate {
            return Err(Error::FailedPrecondition {
                metadata: Vec::new(),
                reason: Reason::CoTrainerNotQualified,
                subject: format!("person/{}", co_trainer.person_id),
                message: format!(
                    "rule CO_TRAINER_NOT_QUALIFIED: the co-trainer {} is neither certified for the module nor a candidate in SUPERVISED_PRACTICE on a qualifying track under a certified lead ({session_subject})",
                    co_trainer.named()
                ),
            }
            .with("person_id", co_trainer.person_id.clone())
            .with("session", session_subject));
        }
    }
    Ok(())
}

/// Returns true for activities a PRESENT mark completes: delivered in person (or blended), and
/// not assessments, surveys or sign-off activities (those carry their own evidence).
pub fn counts_attendance(kind: ActivityKind, mode: DeliveryMode) -> bool {
    mode != DeliveryMode::Online
        && kind != ActivityKind::Assessment
        && kind != ActivityKind::Survey
        && !kind.requires_sign_off()
}

/// Returns the event id of the ATTENDED event of `person_id` on `activity_id` in `session_id`:
/// the same on every call, so recording attendance again is a replay.
pub fn attendance_event_id(session_id: &str, person_id: &str, activity_id: &str) -> String {
    let digest = Sha256::digest(format!("attendance|{session_id}|{person_id}|{activity_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(id: &str, certified: bool, scope: bool, practising: bool) -> TrainerStanding {
        TrainerStanding {
            person_id: id.to_owned(),
            certified_for_module: certified,
            certified_in_scope: scope,
            practising_candidate: practising,
            ..TrainerStanding::default()
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let reason = |result: Result<()>| match result {
            Err(Error::FailedPrecondition { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(check_trainers("s", &standing("a", false, false, true), &[])),
            Reason::LeadTrainerNotCertified
        );
        assert_eq!(
            reason(check_trainers("s", &standing("a", true, false, false), &[])),
            Reason::LeadTrainerOutOfScope
        );
        assert_eq!(
            reason(check_trainers(
                "s",
                &standing("a", true, true, false),
                &[standing("b", false, false, false)]
            )),
            Reason::CoTrainerNotQualified
        );
        assert!(
            check_trainers(
                "s",
                &standing("a", true, true, false),
                &[
                    standing("b", false, false, true),
                    standing("c", true, false, false)
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_lapsed_lead_is_refused_with_the_certificate_and_its_expiry_named() {
        let mut lead = standing("p1", false, false, false);
        lead.full_name = "Aminah Binti Rahman".to_owned();
        lead.lapsed_certificate = Some(LapsedCertificate {
            id: "c1".to_owned(),
            verification_code: "ABCD-EFGH".to_owned(),
            track_title: "Master trainer".to_owned(),
            status: "ACTIVE".to_owned(),
            expire_date: "2026-01-31".to_owned(),
        });
        let Err(Error::FailedPrecondition {
            message, metadata, ..
        }) = check_trainers("session/s1", &lead, &[])
        else {
            panic!("a lapsed lead must be refused");
        };
        assert!(message.contains("Aminah Binti Rahman"), "{message}");
        assert!(message.contains("certificate c1"), "{message}");
        assert!(message.contains("expired on 2026-01-31"), "{message}");
        let value = |key: &str| {
            metadata
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(value("certificate_id").as_deref(), Some("c1"));
        assert_eq!(value("expire_date").as_deref(), Some("2026-01-31"));
        assert_eq!(value("person_id").as_deref(), Some("p1"));
    }

    #[test]
    fn windows_end_after_they_start() {
        let now = crate::domain::now();
        let mut violations = Violations::new();
        assert!(validate_window(&mut violations, "s", "e", Some(now), Some(now)).is_none());
        assert_eq!(violations.as_slice()[0].field, "e");
        let mut violations = Violations::new();
        assert!(
            validate_window(
                &mut violations,
                "s",
                "e",
                Some(now),
                Some(now + Duration::days(15))
            )
            .is_none()
        );
        let mut violations = Violations::new();
        assert!(
            validate_window(
                &mut violations,
                "s",
                "e",
                Some(now),
                Some(now + Duration::hours(3))
            )
            .is_some()
        );
        assert!(violations.is_empty());
    }

    #[test]
    fn attendance_event_ids_are_stable_uuids() {
        let first = attendance_event_id("s", "p", "a");
        assert_eq!(first, attendance_event_id("s", "p", "a"));
        assert_ne!(first, attendance_event_id("s", "p", "b"));
        assert!(crate::domain::is_uuid(&first));
    }

    #[test]
    fn only_in_person_teaching_counts_as_attendance() {
        assert!(counts_attendance(
            ActivityKind::Lecture,
            DeliveryMode::InPerson
        ));
        assert!(counts_attendance(ActivityKind::Lab, DeliveryMode::Blended));
        assert!(!counts_attendance(
            ActivityKind::Lecture,
            DeliveryMode::Online
        ));
        assert!(!counts_attendance(
            ActivityKind::Assessment,
            DeliveryMode::InPerson
        ));
        assert!(!counts_attendance(
            ActivityKind::FieldVisit,
            DeliveryMode::InPerson
        ));
    }
}
