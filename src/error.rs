//! The one error type of the service and its single mapping to `tonic::Status` with google.rpc details.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// Domain reported in every `google.rpc.ErrorInfo`.
pub const ERROR_DOMAIN: &str = "lms.v1";

/// A request field that failed validation, named by its proto path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto path of the field, e.g. `organization.name`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Collects field violations while a request is validated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Returns an empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Returns true when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the recorded violations.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// Returns `Ok(value)` when nothing was recorded, else [`Error::InvalidArgument`].
    pub fn into_result<T>(self, value: T) -> Result<T> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Error::InvalidArgument(self))
        }
    }
}

/// Every way a call can fail, independent of transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("request contains invalid arguments")]
    InvalidArgument(Violations),
    /// A named resource does not exist (or the caller may not know it exists).
    #[error("{resource} not found")]
    NotFound {
        /// Kind of resource, e.g. `organization`.
        resource: &'static str,
        /// Id or key that was looked up.
        id: String,
    },
    /// A resource with the same unique key already exists.
    #[error("{resource} with this {field} already exists")]
    AlreadyExists {
        /// Kind of resource.
        resource: &'static str,
        /// Unique field that collided.
        field: &'static str,
        /// Value that collided.
        value: String,
        /// Id of the resource that holds the value, when known: sent in `ResourceInfo` and as
        /// `existing_id` in the `ErrorInfo` metadata, so a client can go on with it.
        existing_id: Option<String>,
    },
    /// The etag sent does not match the current resource (AIP-154).
    #[error("etag does not match the current {resource}")]
    EtagMismatch {
        /// Kind of resource.
        resource: &'static str,
        /// Id of the resource.
        id: String,
    },
    /// The system is not in a state that allows the call.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable UPPER_SNAKE_CASE reason.
        reason: &'static str,
        /// Resource or rule the precondition is about.
        subject: String,
        /// Developer-facing explanation.
        message: String,
    },
    /// A client-streamed operation did not finish cleanly; what was applied is in the metadata.
    #[error("{message}")]
    Aborted {
        /// Stable UPPER_SNAKE_CASE reason.
        reason: &'static str,
        /// Developer-facing explanation.
        message: String,
        /// Dynamic values of the failure.
        metadata: Vec<(&'static str, String)>,
    },
    /// The call carries no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed to do this.
    #[error("{message}")]
    PermissionDenied {
        /// Stable UPPER_SNAKE_CASE reason.
        reason: &'static str,
        /// Developer-facing explanation.
        message: String,
    },
    /// The server is overloaded or a limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The database could not write to its storage; nothing of the call was written.
    #[error("{message}")]
    Storage {
        /// True when the storage is full (disk, quota, file size limit): RESOURCE_EXHAUSTED;
        /// otherwise an I/O failure: UNAVAILABLE.
        full: bool,
        /// Developer-facing explanation.
        message: String,
    },
    /// A dependency (the database) is briefly unavailable; retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Characters of any one input value (an id, a field path, a key) an answer echoes at most.
const ECHO_CHARS: usize = 128;
/// Characters of an answer's message at most.
const MESSAGE_CHARS: usize = 1024;

/// Returns `text`, or its first `limit` characters and an ellipsis: an answer never echoes an
/// input without bound (a 1 MB field path would otherwise come back as a 1 MB trailer, which
/// clients refuse with "metadata size exceeds limit" instead of showing the real error).
fn clip(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Result with the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Returns an [`Error::InvalidArgument`] with a single violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::new();
        violations.add(field, description);
        Self::InvalidArgument(violations)
    }

    /// Returns an [`Error::NotFound`] for `resource` named `id`.
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// Returns an [`Error::PermissionDenied`] with reason `reason`.
    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    /// Returns an [`Error::Internal`] wrapping `cause`.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{cause}"))
    }

    /// Returns the stable reason reported in `ErrorInfo`.
    pub fn reason(&self) -> String {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT".to_owned(),
            Self::NotFound { resource, .. } => format!("{}_NOT_FOUND", resource.to_uppercase()),
            Self::AlreadyExists { resource, .. } => {
                format!("{}_ALREADY_EXISTS", resource.to_uppercase())
            }
            Self::EtagMismatch { .. } => "ETAG_MISMATCH".to_owned(),
            Self::FailedPrecondition { reason, .. }
            | Self::Aborted { reason, .. }
            | Self::PermissionDenied { reason, .. } => (*reason).to_owned(),
            Self::Unauthenticated(_) => "UNAUTHENTICATED".to_owned(),
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED".to_owned(),
            Self::Storage { full: true, .. } => "STORAGE_FULL".to_owned(),
            Self::Storage { full: false, .. } => "STORAGE_ERROR".to_owned(),
            Self::Unavailable(_) => "UNAVAILABLE".to_owned(),
            Self::Internal(_) => "INTERNAL".to_owned(),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let reason = error.reason();
        let mut details = ErrorDetails::new();
        let (code, message, metadata): (Code, String, Vec<(String, String)>) = match &error {
            Error::InvalidArgument(violations) => {
                for violation in violations.as_slice() {
                    details.add_bad_request_violation(
                        clip(&violation.field, ECHO_CHARS),
                        clip(&violation.description, MESSAGE_CHARS),
                    );
                }
                let fields: Vec<String> = violations
                    .as_slice()
                    .iter()
                    .map(|v| clip(&v.field, ECHO_CHARS))
                    .collect();
                let message = match violations.as_slice() {
                    [only] => format!("invalid {}: {}", only.field, only.description),
                    _ => format!("invalid fields: {}", fields.join(", ")),
                };
                (
                    Code::InvalidArgument,
                    message,
                    vec![("fields".into(), fields.join(","))],
                )
            }
            Error::NotFound { resource, id } => {
                let id = &clip(id, ECHO_CHARS);
                details.set_resource_info(*resource, id.clone(), "", "not found");
                (
                    Code::NotFound,
                    format!("{resource} {id} not found"),
                    vec![
                        ("resource".into(), (*resource).into()),
                        ("id".into(), id.clone()),
                    ],
                )
            }
            Error::AlreadyExists {
                resource,
                field,
                value,
                existing_id,
            } => {
                let value = &clip(value, ECHO_CHARS);
                let mut metadata = vec![
                    ("field".into(), (*field).into()),
                    ("value".into(), value.clone()),
                ];
                let message = match existing_id {
                    Some(id) => {
                        details.set_resource_info(
                            *resource,
                            id.clone(),
                            "",
                            format!("already exists with {field} {value}"),
                        );
                        metadata.push(("existing_id".into(), id.clone()));
                        format!("{resource} with {field} {value} already exists: {id}")
                    }
                    None => {
                        details.set_resource_info(*resource, value.clone(), "", "already exists");
                        format!("{resource} with {field} {value} already exists")
                    }
                };
                (Code::AlreadyExists, message, metadata)
            }
            Error::EtagMismatch { resource, id } => {
                let id = &clip(id, ECHO_CHARS);
                details.add_precondition_failure_violation(
                    "ETAG",
                    format!("{resource}/{id}"),
                    "the etag sent is not the current one; read the resource again",
                );
                (
                    Code::Aborted,
                    format!("etag does not match the current {resource} {id}"),
                    vec![
                        ("resource".into(), (*resource).into()),
                        ("id".into(), id.clone()),
                    ],
                )
            }
            Error::FailedPrecondition {
                reason,
                subject,
                message,
            } => {
                details.add_precondition_failure_violation(
                    *reason,
                    subject.clone(),
                    message.clone(),
                );
                (
                    Code::FailedPrecondition,
                    message.clone(),
                    vec![("subject".into(), subject.clone())],
                )
            }
            Error::Aborted {
                message, metadata, ..
            } => (
                Code::Aborted,
                message.clone(),
                metadata
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), value.clone()))
                    .collect(),
            ),
            Error::Unauthenticated(message) => (Code::Unauthenticated, message.clone(), vec![]),
            Error::PermissionDenied { message, .. } => {
                (Code::PermissionDenied, message.clone(), vec![])
            }
            Error::ResourceExhausted(message) => (Code::ResourceExhausted, message.clone(), vec![]),
            Error::Storage { full, message } => {
                tracing::warn!(error = %message, "database storage failed");
                let code = if *full {
                    Code::ResourceExhausted
                } else {
                    Code::Unavailable
                };
                (code, message.clone(), vec![])
            }
            Error::Unavailable(message) => {
                tracing::warn!(error = %message, "dependency unavailable");
                (Code::Unavailable, message.clone(), vec![])
            }
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (Code::Internal, "internal error".to_owned(), vec![])
            }
        };
        details.set_error_info(
            reason,
            ERROR_DOMAIN,
            metadata
                .into_iter()
                .map(|(key, value)| (key, clip(&value, ECHO_CHARS)))
                .collect::<std::collections::HashMap<_, _>>(),
        );
        Status::with_error_details(code, clip(&message, MESSAGE_CHARS), details)
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    #[test]
    fn answers_echo_at_most_a_short_prefix_of_any_input() {
        let long = "x".repeat(1_000_000);
        let status = Status::from(Error::invalid(long.clone(), "is not a field"));
        assert!(
            status.message().len() < 2 * MESSAGE_CHARS,
            "{}",
            status.message().len()
        );
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field.chars().count(), ECHO_CHARS + 1);
        let status = Status::from(Error::not_found("course", long));
        assert!(status.message().len() < 2 * MESSAGE_CHARS);
        assert!(status.details().len() < 4 * MESSAGE_CHARS);
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
