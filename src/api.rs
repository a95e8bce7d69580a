//! gRPC handlers: translate proto to domain, call the store, translate back. No business rules here.

pub mod audit;
pub mod certification;
pub mod codec;
pub mod competency;
pub mod course;
pub mod delivery;
pub mod event;
pub mod organization;
pub mod person;
pub mod placement;
pub mod programme;
pub mod progress;
pub mod report;
pub mod selection;
pub mod survey;

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::store::idempotency::RequestKey;

/// Returns the proto timestamp of `time`.
pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Returns the time of an optional proto timestamp, validating it.
pub(crate) fn optional_time(
    field: &str,
    timestamp: Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>> {
    timestamp
        .map(|timestamp| {
            DateTime::from_timestamp(timestamp.seconds, timestamp.nanos.max(0) as u32)
                .ok_or_else(|| Error::invalid(field, "is not a valid timestamp"))
        })
        .transpose()
}

/// Returns the idempotency key of a request, or `None` when it carries no `request_id`.
pub(crate) fn request_key(
    method: &str,
    request_id: &str,
    request: &impl Message,
) -> Result<Option<RequestKey>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    if !crate::domain::is_uuid(request_id) {
        return Err(Error::invalid("request_id", "must be a UUID"));
    }
    Ok(Some(RequestKey {
        request_id: request_id.to_owned(),
        method: method.to_owned(),
        request_hash: hex::encode(Sha256::digest(request.encode_to_vec())),
    }))
}

/// Returns the paths of an optional field mask.
pub(crate) fn mask_paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|mask| mask.paths).unwrap_or_default()
}

/// Returns the revision named by an optional etag; INVALID_ARGUMENT on `field` when it is not ours.
pub(crate) fn expected_revision(field: &str, etag: &str) -> Result<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    crate::domain::parse_etag(etag)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is not an etag this service issued"))
}
