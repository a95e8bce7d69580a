//! Read-your-writes across replicas and standbys: the commit position a write call answers with
//! (`lms-commit-lsn`) and the minimum position a read call asks for (`lms-min-lsn`).
//!
//! Only with hot standbys (`DATABASE_READ_URL`): a write call's response then carries the
//! primary's WAL position after its commit, and a call that sends it back is served by a standby
//! only once that standby has replayed it (`src/store/replica.rs`). Without standbys every read
//! is served by the primary and the layer passes calls through untouched, except that a call
//! sending a position still skips the progress read cache (`src/store/progress_cache.rs`).

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderValue;
use prost::bytes::Bytes;
use tower::{Layer, Service};

use crate::error::Error;
use crate::store::{
    Store,
    replica::{ReadContext, WalPosition},
};

/// Response header of a write call: the primary's WAL position after the call's commit.
pub const COMMIT_POSITION_HEADER: &str = "lms-commit-lsn";
/// Request header of a read call: read at least up to this WAL position (an earlier
/// [`COMMIT_POSITION_HEADER`]).
pub const MIN_POSITION_HEADER: &str = "lms-min-lsn";

/// Scopes every call with its [`ReadContext`] and adds the commit position to write responses.
#[derive(Clone)]
pub struct ReadPositionLayer {
    store: Store,
}

impl ReadPositionLayer {
    /// Returns the layer over `store`; it does nothing unless the store has read replicas.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl<S> Layer<S> for ReadPositionLayer {
    type Service = ReadPosition<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadPosition {
            inner,
            store: self.store.clone(),
        }
    }
}

/// Service made by [`ReadPositionLayer`].
#[derive(Clone)]
pub struct ReadPosition<S> {
    inner: S,
    store: Store,
}

impl<S, B, ResBody> Service<http::Request<B>> for ReadPosition<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Without standbys a call that sends a position still needs its context: it asks for
        // the primary, past the progress cache.
        if !self.store.has_read_replicas() && !request.headers().contains_key(MIN_POSITION_HEADER) {
            return Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(tonic::body::Body::new))
            });
        }
        let min_position = match min_position(request.headers()) {
            Ok(position) => position,
            Err(error) => {
                let refusal = tonic::Status::from(error).into_http();
                return Box::pin(async move { Ok(refusal) });
            }
        };
        let store = self.store.clone();
        let context = ReadContext::new(min_position);
        Box::pin(async move {
            let response = context.clone().scope(inner.call(request)).await?;
            let (mut parts, body) = response.into_parts();
            if context.wrote() && store.has_read_replicas() {
                match store.commit_position().await {
                    Ok(position) => {
                        if let Ok(value) = HeaderValue::from_str(&position.to_string()) {
                            parts.headers.insert(COMMIT_POSITION_HEADER, value);
                        }
                    }
                    // The write is committed; only the hint for later reads is missing.
                    Err(error) => {
                        tracing::warn!(error = %error, "the commit position could not be read")
                    }
                }
            }
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// Returns the position the caller asks reads to reach, if any; a malformed one is refused
/// (INVALID_ARGUMENT naming the header), never read as "any position".
fn min_position(headers: &http::HeaderMap) -> Result<Option<WalPosition>, Error> {
    let Some(value) = headers.get(MIN_POSITION_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::invalid(MIN_POSITION_HEADER, "must be a WAL position"))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|why: String| Error::invalid(MIN_POSITION_HEADER, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(MIN_POSITION_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_min_position_is_read_from_its_header() {
        assert_eq!(min_position(&http::HeaderMap::new()).unwrap(), None);
        assert_eq!(
            min_position(&headers("1/A0")).unwrap(),
            Some(WalPosition((1 << 32) | 0xA0))
        );
        assert!(min_position(&headers("soon")).is_err());
    }
}
