//! The call gate: concurrency limits that shed load, per-call deadlines, idle timeouts on
//! request bodies, and caps on open streams per caller.
//!
//! It runs after authentication (an anonymous caller never holds a slot) and never limits
//! health or reflection, so probes answer whatever callers do. Unary calls share
//! `--concurrency-limit`; beyond it they get RESOURCE_EXHAUSTED at once instead of waiting in a
//! queue, and each ends at the sooner of the client's `grpc-timeout` and the server's ceiling;
//! one caller may hold at most half of them.
//! Streams (imports run for minutes, feeds for days) are counted apart: at most
//! `--streams-per-caller` open per authenticated subject and `--max-streams` in all, held until
//! the stream ends, and ended only at the client's deadline. A request body that sends nothing
//! for too long ends the call (`--body-idle-timeout` for unary calls, `--stream-idle-timeout`
//! between the messages of a client stream), so a connection that opens calls and never sends
//! a body cannot hold anything for long.
//! One connection may have at most `--concurrency-per-connection` calls waiting for their
//! response headers (tower's per-connection limit, kept here so that its refusals are counted).
//! Every refusal is counted in `lms_rpc_shed_total` by the limit reached, and every open stream
//! in `lms_streams_open`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http_body::Frame;
use prometheus_client::metrics::gauge::Gauge;
use prost::bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::metrics::{Metrics, ShedReason};
use crate::auth::CallContext;
use crate::error::Error;

/// Methods that stream requests or responses: exempt from the server's ceiling.
const STREAMING_METHODS: [&str; 4] = [
    "/lms.v1.EventService/WatchEvents",
    "/lms.v1.PersonService/ImportPeople",
    "/lms.v1.ProgressService/StreamProgress",
    "/lms.v1.ProgressService/ExportStatements",
];

/// Methods whose requests are streams (the idle timeout applies between messages).
const CLIENT_STREAMING_METHODS: [&str; 2] = [
    "/lms.v1.PersonService/ImportPeople",
    "/lms.v1.ProgressService/StreamProgress",
];

/// Path prefixes never limited: health probes and reflection must answer under any load.
const UNLIMITED_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The gate's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Unary calls in progress at once, server-wide.
    pub concurrency: usize,
    /// Longest a unary call may run.
    pub ceiling: Duration,
    /// Streams open at once per authenticated subject.
    pub streams_per_caller: usize,
    /// Streams open at once, server-wide.
    pub max_streams: usize,
    /// Longest a unary call's request body may send nothing.
    pub body_idle: Duration,
    /// Longest a client stream may send no message.
    pub stream_idle: Duration,
    /// Calls on one connection waiting for their response headers at once.
    pub per_connection: usize,
}

/// Applies the concurrency limits, stream caps, idle timeouts and deadlines.
#[derive(Clone)]
pub struct GateLayer {
    calls: Arc<Caps>,
    streams: Arc<Caps>,
    connections: Arc<ConnectionCaps>,
    limits: Limits,
    metrics: Metrics,
}

impl GateLayer {
    /// Returns a gate applying `limits`, counting refusals and open streams in `metrics`.
    pub fn new(limits: Limits, metrics: Metrics) -> Self {
        Self {
            calls: Arc::new(Caps::new(
                limits.concurrency,
                // One caller may take half the unary slots, never all of them.
                (limits.concurrency / 2).max(1),
                (
                    ShedReason::ServerConcurrency,
                    "the server is at its concurrency limit; retry with backoff",
                ),
                (
                    ShedReason::CallerConcurrency,
                    "you have as many calls in progress as one caller may; retry with backoff",
                ),
            )),
            streams: Arc::new(Caps::new(
                limits.max_streams,
                limits.streams_per_caller,
                (
                    ShedReason::ServerStreams,
                    "the server has as many streams open as it allows; retry later",
                ),
                (
                    ShedReason::CallerStreams,
                    "you have as many streams open as one caller may; close one first",
                ),
            )),
            connections: Arc::new(ConnectionCaps {
                limit: limits.per_connection.max(1),
                open: Mutex::default(),
            }),
            limits,
            metrics,
        }
    }
}

/// A refusal: the limit reached and the message the caller gets.
type Refusal = (ShedReason, &'static str);

/// Calls waiting for their response headers, per connection.
struct ConnectionCaps {
    limit: usize,
    open: Mutex<HashMap<(SocketAddr, SocketAddr), usize>>,
}

impl ConnectionCaps {
    /// Takes a slot on `connection` (local and remote address); `None` when it has none left.
    fn take(self: &Arc<Self>, connection: (SocketAddr, SocketAddr)) -> Option<ConnectionSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = open.entry(connection).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            caps: self.clone(),
            connection,
        })
    }
}

/// A call's slot on its connection, released when its response headers are ready.
struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    connection: (SocketAddr, SocketAddr),
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = open.get_mut(&self.connection) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.connection);
            }
        }
    }
}

/// Returns the local and remote address of the connection a request came on, plain or TLS.
fn connection_of<B>(request: &http::Request<B>) -> Option<(SocketAddr, SocketAddr)> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(TlsConnectInfo::get_ref)
    })?;
    Some((tcp.local_addr()?, tcp.remote_addr()?))
}

/// An open stream, counted in `lms_streams_open` until dropped.
struct OpenStream(Gauge);

impl OpenStream {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Slots in use, in all and per caller.
struct Caps {
    total: Arc<Semaphore>,
    per_caller: usize,
    open: Mutex<HashMap<String, usize>>,
    full: Refusal,
    caller_full: Refusal,
}

impl Caps {
    fn new(total: usize, per_caller: usize, full: Refusal, caller_full: Refusal) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_caller,
            open: Mutex::default(),
            full,
            caller_full,
        }
    }

    /// Takes a slot for `caller`, or says which cap is reached.
    fn take(self: &Arc<Self>, caller: &str) -> Result<Slot, Refusal> {
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            return Err(self.full);
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = open.entry(caller.to_owned()).or_default();
        if *count >= self.per_caller {
            return Err(self.caller_full);
        }
        *count += 1;
        Ok(Slot {
            caps: self.clone(),
            caller: caller.to_owned(),
            _total: total,
        })
    }
}

/// A call's or a stream's slot, released when dropped (a stream's: when its response ends).
struct Slot {
    caps: Arc<Caps>,
    caller: String,
    _total: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service made by [`GateLayer`].
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        if UNLIMITED_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            let request = request.map(tonic::body::Body::new);
            return Box::pin(inner.call(request));
        }
        let limits = self.layer.limits;
        let caller = request
            .extensions()
            .get::<CallContext>()
            .map(|context| context.principal.subject.clone())
            .unwrap_or_default();
        // The observing layer's span is current: every later log line of the call names the caller.
        tracing::Span::current().record("subject", caller.as_str());
        let connection_slot = match connection_of(&request) {
            Some(connection) => match self.layer.connections.take(connection) {
                Some(slot) => Some(slot),
                None => {
                    let response = self.shed(
                        &caller,
                        &path,
                        (
                            ShedReason::ConnectionConcurrency,
                            "this connection has as many calls in progress as it may; retry with backoff",
                        ),
                    );
                    return Box::pin(async move { Ok(response) });
                }
            },
            None => None,
        };
        let client_deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let streaming = STREAMING_METHODS.contains(&path.as_str());
        let caps = if streaming {
            &self.layer.streams
        } else {
            &self.layer.calls
        };
        let slot = match caps.take(&caller) {
            Ok(slot) => slot,
            Err(refusal) => {
                let response = self.shed(&caller, &path, refusal);
                return Box::pin(async move { Ok(response) });
            }
        };
        if streaming {
            let idle = CLIENT_STREAMING_METHODS
                .contains(&path.as_str())
                .then_some(limits.stream_idle);
            let request = request.map(|body| tonic::body::Body::new(IdleBody::new(body, idle)));
            let open = OpenStream::new(self.layer.metrics.streams_open(&path));
            return Box::pin(async move {
                let call = inner.call(request);
                let response = match client_deadline {
                    Some(deadline) => match tokio::time::timeout(deadline, call).await {
                        Ok(response) => response?,
                        Err(_) => return Ok(deadline_exceeded().into_http()),
                    },
                    None => call.await?,
                };
                drop(connection_slot);
                // The slot is held by the response body: until the stream ends or is dropped.
                Ok(response.map(|body| {
                    tonic::body::Body::new(HoldingBody {
                        body,
                        _slot: slot,
                        _open: open,
                    })
                }))
            });
        }
        let deadline = client_deadline.map_or(limits.ceiling, |client| client.min(limits.ceiling));
        let request =
            request.map(|body| tonic::body::Body::new(IdleBody::new(body, Some(limits.body_idle))));
        Box::pin(async move {
            let response = match tokio::time::timeout(deadline, inner.call(request)).await {
                Ok(response) => response,
                Err(_) => Ok(deadline_exceeded().into_http()),
            };
            drop(slot);
            drop(connection_slot);
            response
        })
    }
}

impl<S> Gate<S> {
    /// Returns the RESOURCE_EXHAUSTED answer to a refused call, counting and logging why.
    fn shed(
        &self,
        caller: &str,
        path: &str,
        (reason, why): Refusal,
    ) -> http::Response<tonic::body::Body> {
        self.layer.metrics.count_shed(reason);
        tracing::warn!(
            caller,
            method = path,
            reason = reason.as_str(),
            why,
            "call shed"
        );
        tonic::Status::from(Error::ResourceExhausted(why.into())).into_http()
    }
}

/// A request body that fails when no frame arrives for `idle` (never, when `None`).
struct IdleBody<B> {
    body: Pin<Box<B>>,
    idle: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleBody<B> {
    fn new(body: B, idle: Option<Duration>) -> Self {
        Self {
            body: Box::pin(body),
            idle,
            timer: idle.map(|idle| Box::pin(tokio::time::sleep(idle))),
        }
    }
}

impl<B> http_body::Body for IdleBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(timer), Some(idle)) = (this.timer.as_mut(), this.idle) {
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Poll::Ready(
                    frame.map(|frame| {
                        frame.map_err(|error| tonic::Status::from_error(error.into()))
                    }),
                )
            }
            Poll::Pending => {
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                let idle = this.idle.unwrap_or_default();
                tracing::info!(
                    idle_seconds = idle.as_secs(),
                    "request body idle; ending the call"
                );
                Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(format!(
                    "no request data arrived for {} s; the call was ended as idle",
                    idle.as_secs()
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A response body holding its stream's slot until it ends or is dropped.
struct HoldingBody {
    body: tonic::body::Body,
    _slot: Slot,
    _open: OpenStream,
}

impl http_body::Body for HoldingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
