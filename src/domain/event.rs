//! Domain events for the HR feed: what a change publishes, and who may follow which events.

use serde_json::Value;

/// Every event type the feed carries.
pub const EVENT_TYPES: [&str; 16] = [
    "person.created",
    "person.updated",
    "enrollment.created",
    "enrollment.withdrawn",
    "enrollment.promoted",
    "enrollment.due",
    "cohort.changed",
    "module.completed",
    "course.completed",
    "programme.completed",
    "candidacy.changed",
    "candidacy.renewal_opened",
    "certificate.issued",
    "certificate.changed",
    "certificate.expiring",
    "certificate.expired",
];

/// A change to publish, written to the outbox in the transaction that makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// One of [`EVENT_TYPES`].
    pub event_type: &'static str,
    /// The resource the event is about (person, enrolment, certificate...).
    pub subject_id: String,
    /// The person concerned, if any.
    pub person_id: Option<String>,
    /// Materialised path of the person's organisation, for subtree filters.
    pub organization_path: Option<String>,
    /// Event body.
    pub payload: Value,
}

/// A published event, as readers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Position in the feed: increasing, gap-free, in commit order.
    pub cursor: i64,
    /// UUIDv7 of the event.
    pub id: String,
    /// Type.
    pub event_type: String,
    /// Subject.
    pub subject_id: String,
    /// Person concerned.
    pub person_id: Option<String>,
    /// The organisation of the person (last id of the path).
    pub organization_id: Option<String>,
    /// Materialised path of that organisation, for subtree filters.
    pub organization_path: Option<String>,
    /// Commit time.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Body (JSON).
    pub payload: String,
    /// The person's `external_id` when the event was written, if there is a person.
    pub person_external_id: Option<String>,
    /// The `external_code` of the person's organisation when the event was written, if any.
    pub organization_external_code: Option<String>,
}

/// Returns the id of the organisation a materialised path ends with.
pub fn organization_of(path: &str) -> Option<String> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Validates the requested event types: each must be known.
pub fn validate_types(types: &[String]) -> crate::error::Result<Vec<String>> {
    for (index, event_type) in types.iter().enumerate() {
        if !EVENT_TYPES.contains(&event_type.as_str()) {
            return Err(crate::error::Error::invalid(
                format!("types[{index}]"),
                format!("unknown event type; one of {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(types.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_organisation_is_the_last_path_segment() {
        assert_eq!(organization_of("/a/b/c/").as_deref(), Some("c"));
        assert_eq!(organization_of("/"), None);
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(validate_types(&["person.created".to_owned()]).is_ok());
        assert!(validate_types(&["person.deleted".to_owned()]).is_err());
    }
}
