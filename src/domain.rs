//! Business rules of every area: validation, state, derivations. No tonic, no sea-orm, no I/O.

pub mod audit;
pub mod category;
pub mod certification;
pub mod competency;
pub mod course;
pub mod delivery;
pub mod event;
pub mod feed;
pub mod field_mask;
pub mod organization;
pub mod page;
pub mod person;
pub mod placement;
pub mod programme;
pub mod progress;
pub mod report;
pub mod selection;
pub mod survey;

use chrono::{DateTime, SubsecRound as _, Utc};

/// Declares an enum stored by name: `as_str`, `parse` and `ALL`.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$variant_meta])* $variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Returns the stored name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
pub(crate) use stored_enum;

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
