//! Request ids: the caller's `x-request-id` when it is sane, a fresh UUIDv7 otherwise.
//!
//! The id names one call in every log line of it and comes back in the response headers, so a
//! caller can quote it. It is a correlation id only: retries stay safe through the `request_id`
//! field of write requests (AIP-155), never through this header.

use http::{HeaderMap, HeaderValue};

/// Header carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id accepted from a caller, in bytes; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Where a call's request id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestIdSource {
    /// The caller sent a sane one.
    Caller,
    /// The caller sent none; one was generated.
    Generated,
    /// The caller sent one that was too long or not printable; one was generated instead.
    Replaced,
}

/// Returns the call's request id: the caller's `x-request-id` when it is 1 to
/// [`MAX_REQUEST_ID_LEN`] printable ASCII characters without spaces, a new UUIDv7 otherwise.
pub fn request_id(headers: &HeaderMap) -> (HeaderValue, RequestIdSource) {
    let mut sent = headers.get_all(REQUEST_ID_HEADER).iter();
    let source = match (sent.next(), sent.next()) {
        (Some(value), None) if is_sane(value.as_bytes()) => {
            return (value.clone(), RequestIdSource::Caller);
        }
        (None, _) => RequestIdSource::Generated,
        _ => RequestIdSource::Replaced,
    };
    let generated = uuid::Uuid::now_v7().to_string();
    let value = HeaderValue::from_str(&generated).expect("a UUID is a valid header value");
    (value, source)
}

/// Returns true for 1 to [`MAX_REQUEST_ID_LEN`] bytes of visible ASCII (`!` to `~`): safe in a
/// log line and in a header, never a place to smuggle a line break or an escape sequence.
fn is_sane(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                REQUEST_ID_HEADER,
                HeaderValue::from_bytes(value).expect("valid header value"),
            );
        }
        headers
    }

    #[test]
    fn a_sane_request_id_is_kept() {
        let (id, source) = request_id(&headers(&[b"req-42/abc"]));
        assert_eq!(id, "req-42/abc");
        assert_eq!(source, RequestIdSource::Caller);
    }

    #[test]
    fn a_missing_request_id_is_generated_as_a_uuid_v7() {
        let (id, source) = request_id(&HeaderMap::new());
        assert_eq!(source, RequestIdSource::Generated);
        let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn hostile_request_ids_are_replaced() {
        // Control characters such as ESC never reach us: `http` refuses them in a header value.
        let long = vec![b'a'; MAX_REQUEST_ID_LEN + 1];
        for hostile in [
            long.as_slice(),
            b"with space".as_slice(),
            b"tab\there".as_slice(),
            b"caf\xc3\xa9".as_slice(),
        ] {
            let (id, source) = request_id(&headers(&[hostile]));
            assert_eq!(source, RequestIdSource::Replaced, "{hostile:?}");
            assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
        }
        let longest = vec![b'a'; MAX_REQUEST_ID_LEN];
        assert_eq!(
            request_id(&headers(&[longest.as_slice()])).1,
            RequestIdSource::Caller
        );
        assert_eq!(
            request_id(&headers(&[b"one", b"two"])).1,
            RequestIdSource::Replaced
        );
    }
}
