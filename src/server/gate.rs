//! The call gate: a server-wide concurrency limit that sheds load, and a per-call deadline.
//!
//! Calls beyond the limit get RESOURCE_EXHAUSTED at once instead of waiting in a queue. Unary
//! calls end at the sooner of the client's `grpc-timeout` and the server's ceiling; streaming
//! calls (imports run for minutes) only at the client's deadline.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::error::Error;

/// Methods that stream requests or responses: exempt from the server's ceiling.
const STREAMING_METHODS: [&str; 6] = [
    "/lms.v1.EventService/WatchEvents",
    "/lms.v1.PersonService/ImportPeople",
    "/lms.v1.ProgressService/StreamProgress",
    "/lms.v1.ProgressService/ExportStatements",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// Applies the concurrency limit and deadlines.
#[derive(Clone)]
pub struct GateLayer {
    permits: Arc<Semaphore>,
    ceiling: Duration,
}

impl GateLayer {
    /// Returns a gate admitting `limit` calls at once, each unary call ending after at most `ceiling`.
    pub fn new(limit: usize, ceiling: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            ceiling,
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            permits: self.permits.clone(),
            ceiling: self.ceiling,
        }
    }
}

/// Service made by [`GateLayer`].
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    permits: Arc<Semaphore>,
    ceiling: Duration,
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let error = Error::ResourceExhausted(
                "the server is at its concurrency limit; retry with backoff".into(),
            );
            let response = tonic::Status::from(error).into_http();
            return Box::pin(async move { Ok(response) });
        };
        let client_deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let streaming = STREAMING_METHODS.contains(&request.uri().path());
        let deadline = match (client_deadline, streaming) {
            (Some(client), false) => Some(client.min(self.ceiling)),
            (None, false) => Some(self.ceiling),
            (client, true) => client,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let call = inner.call(request);
            let response = match deadline {
                Some(deadline) => match tokio::time::timeout(deadline, call).await {
                    Ok(response) => response,
                    Err(_) => Ok(deadline_exceeded().into_http()),
                },
                None => call.await,
            };
            drop(permit);
            response
        })
    }
}

/// Returns DEADLINE_EXCEEDED with an ErrorInfo, like every other error of the service.
fn deadline_exceeded() -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "DEADLINE_EXCEEDED",
        crate::error::ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    tonic::Status::with_error_details(
        tonic::Code::DeadlineExceeded,
        "the call's deadline passed",
        details,
    )
}

/// Parses a `grpc-timeout` header value (`100m`, `5S`, ...) as the gRPC spec defines it.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
    }
}
