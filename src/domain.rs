//! Business rules of every area: validation, state, derivations. No tonic, no sea-orm, no I/O.

pub mod audit;
pub mod certification;
pub mod course;
pub mod delivery;
pub mod event;
pub mod field_mask;
pub mod organization;
pub mod page;
pub mod person;
pub mod programme;
pub mod progress;
pub mod report;
pub mod selection;
pub mod survey;

use chrono::{DateTime, SubsecRound as _, Utc};

/// Returns a new time-ordered resource id (UUIDv7, lowercase hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Returns the current time truncated to microseconds, the precision every supported database keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Returns `time` truncated to microseconds.
pub fn truncate_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// Returns the etag of a resource at `revision` (a quoted string, as RFC 7232 writes etags).
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// Returns true when `value` is a canonical UUID string.
pub fn is_uuid(value: &str) -> bool {
    uuid::Uuid::try_parse(value).is_ok()
}

/// Returns the etag's revision, or `None` when `etag` is not one this service made.
pub fn parse_etag(etag: &str) -> Option<i64> {
    etag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}
