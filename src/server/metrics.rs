//! Metrics in the Prometheus text format (OpenMetrics) on a listener of their own, and the layer
//! that observes every call: its request id, trace context, status, latency and log line.
//!
//! Each server has its own [`Metrics`] registry (no process-wide recorder), so servers started
//! side by side in one process keep their own numbers. Most series move as calls run; the pool,
//! the outbox head and the watchers' lag are sampled when the endpoint is scraped.
//! docs/monitoring.md lists every series and what to alert on.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http_body::Frame;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use prost::bytes::Bytes;
use tokio::net::TcpListener;
use tower::{Layer, Service};
use tracing::{Instrument as _, Span};

use super::request_id::{REQUEST_ID_HEADER, RequestIdSource, request_id};
use crate::store::Store;
use crate::telemetry::Watchers;

/// Upper bounds of the call latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Methods outside `lms.v1` that get a series of their own; any other unknown path counts as
/// `other`, so that a caller inventing paths cannot create series without end.
const OTHER_KNOWN_METHODS: [&str; 5] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.health.v1.Health/List",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Content type of the exposition.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the gate refused a call (the `reason` label of `lms_rpc_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The server-wide limit of unary calls in progress (`--concurrency-limit`).
    ServerConcurrency,
    /// One caller's share of the unary calls (half of `--concurrency-limit`).
    CallerConcurrency,
    /// Calls in progress on one connection (`--concurrency-per-connection`).
    ConnectionConcurrency,
    /// The server-wide limit of open streams (`--max-streams`).
    ServerStreams,
    /// One caller's open streams (`--streams-per-caller`).
    CallerStreams,
    /// One client address's public calls and verification pages (`--verify-rate`,
    /// `--verify-burst`).
    PublicRate,
}

impl ShedReason {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerConcurrency => "server_concurrency",
            Self::CallerConcurrency => "caller_concurrency",
            Self::ConnectionConcurrency => "connection_concurrency",
            Self::ServerStreams => "server_streams",
            Self::CallerStreams => "caller_streams",
            Self::PublicRate => "public_rate",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubjectLabels {
    subject: String,
}

type LatencyFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one server; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    known_methods: std::collections::HashSet<String>,
    calls: Family<CallLabels, Counter>,
    latency: LatencyFamily,
    in_flight: Family<MethodLabels, Gauge>,
    shed: Family<ReasonLabels, Counter>,
    streams_open: Family<MethodLabels, Gauge>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_in_use: Gauge,
    pool_max: Gauge,
    outbox_head: Gauge,
    watchers: Gauge,
    watcher_lag: Family<SubjectLabels, Gauge>,
    watcher_lag_max: Gauge,
    scrape_errors: Counter,
}

impl Metrics {
    /// Returns the metrics of a server over `store`, with the store's own measurements registered.
    pub fn new(store: &Store) -> Self {
        let mut registry = Registry::with_prefix("lms");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "rpc_calls",
            "Calls finished, by method and gRPC status code (CANCELLED: the response was dropped before it ended)",
            calls.clone(),
        );
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "rpc_duration_seconds",
            "Time from a call's arrival to the end of its response, by method",
            latency.clone(),
        );
        let in_flight = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "rpc_in_flight",
            "Calls in progress (streams included), by method",
            in_flight.clone(),
        );
        let shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rpc_shed",
            "Calls refused with RESOURCE_EXHAUSTED by the server's limits, by the limit reached",
            shed.clone(),
        );
        let streams_open = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "streams_open",
            "Streams holding a stream slot, by method",
            streams_open.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Database connections open (idle or in use)",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle",
            "Database connections open and idle",
            pool_idle.clone(),
        );
        let pool_in_use = Gauge::default();
        registry.register(
            "db_pool_in_use",
            "Database connections in use",
            pool_in_use.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max",
            "Most database connections the pool opens",
            pool_max.clone(),
        );
        registry.register(
            "db_write_wait_seconds",
            "Time a write transaction waited for its turn and a pooled connection before BEGIN returned",
            store.metrics().write_wait.clone(),
        );
        registry.register(
            "group_commit_calls",
            "Unary RecordProgress calls committed together per group-commit transaction",
            store.metrics().group_sizes.clone(),
        );
        registry.register(
            "progress_cache_requests",
            "Progress reads by cache outcome: hit, miss (read from the primary) or bypass (cache off, its listener down, or the call carried a commit position)",
            store.progress_cache().requests(),
        );
        registry.register(
            "db_routed_reads",
            "Statements of reads that may use a hot standby (reports, lists, exports, feed backlog), by the server that answered",
            store.metrics().replicas.reads.clone(),
        );
        registry.register(
            "db_standby_lag_milliseconds",
            "Staleness of each hot standby at its last sample (-1: unknown or failing)",
            store.metrics().replicas.lag_milliseconds.clone(),
        );
        registry.register(
            "db_standby_usable",
            "1 while a hot standby serves reads, 0 while it is skipped (lagging or failing)",
            store.metrics().replicas.usable.clone(),
        );
        let outbox_head = Gauge::default();
        registry.register(
            "outbox_head_cursor",
            "Cursor of the newest event in the outbox (the feed's head)",
            outbox_head.clone(),
        );
        let watchers = Gauge::default();
        registry.register(
            "feed_watchers",
            "WatchEvents streams open on this replica",
            watchers.clone(),
        );
        let watcher_lag = Family::<SubjectLabels, Gauge>::default();
        registry.register(
            "feed_watcher_lag_events",
            "Events between the outbox head and the cursor of the caller's furthest-behind watcher",
            watcher_lag.clone(),
        );
        let watcher_lag_max = Gauge::default();
        registry.register(
            "feed_watcher_lag_max_events",
            "Events between the outbox head and the cursor of the furthest-behind watcher",
            watcher_lag_max.clone(),
        );
        let scrape_errors = Counter::default();
        registry.register(
            "metrics_sample_errors",
            "Scrapes whose database sample (the outbox head) failed",
            scrape_errors.clone(),
        );
        let known_methods = crate::auth::policy::METHOD_POLICY
            .iter()
            .map(|(method, _)| method_path(method))
            .chain(OTHER_KNOWN_METHODS.iter().map(|path| (*path).to_owned()))
            .collect();
        Self {
            inner: Arc::new(Inner {
                registry,
                known_methods,
                calls,
                latency,
                in_flight,
                shed,
                streams_open,
                pool_connections,
                pool_idle,
                pool_in_use,
                pool_max,
                outbox_head,
                watchers,
                watcher_lag,
                watcher_lag_max,
                scrape_errors,
            }),
        }
    }

    /// Counts a call refused for `reason`.
    pub fn count_shed(&self, reason: ShedReason) {
        self.inner
            .shed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Returns the gauge of streams open for `path`.
    pub fn streams_open(&self, path: &str) -> Gauge {
        self.inner.streams_open.get_or_create_owned(&MethodLabels {
            method: self.method_label(path),
        })
    }

    /// Returns `path` when it names a served method, `other` otherwise.
    fn method_label(&self, path: &str) -> String {
        if self.inner.known_methods.contains(path) {
            path.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Returns the exposition of every series.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(error = %error, "encoding the metrics failed");
        }
        text
    }

    /// Sets the sampled series (pool, outbox head, watchers' lag) from `store` and `watchers`.
    pub async fn sample(&self, store: &Store, watchers: &Watchers) {
        let inner = &self.inner;
        let pool = store.pool_stats();
        inner.pool_connections.set(i64::from(pool.size));
        inner.pool_idle.set(i64::from(pool.idle));
        inner
            .pool_in_use
            .set(i64::from(pool.size.saturating_sub(pool.idle)));
        inner.pool_max.set(i64::from(pool.max));
        let head = match store.last_event_cursor().await {
            Ok(head) => head,
            Err(error) => {
                inner.scrape_errors.inc();
                tracing::warn!(error = %error, "metrics could not read the outbox head");
                inner.outbox_head.get()
            }
        };
        inner.outbox_head.set(head);
        let positions = watchers.positions();
        inner.watchers.set(positions.len() as i64);
        let mut lag_by_subject: HashMap<String, i64> = HashMap::new();
        for (subject, cursor) in positions {
            let lag = head.saturating_sub(cursor).max(0);
            let entry = lag_by_subject.entry(subject).or_default();
            *entry = (*entry).max(lag);
        }
        inner.watcher_lag.clear();
        let mut max = 0;
        for (subject, lag) in lag_by_subject {
            max = max.max(lag);
            inner
                .watcher_lag
                .get_or_create(&SubjectLabels { subject })
                .set(lag);
        }
        inner.watcher_lag_max.set(max);
    }
}

/// Returns `/package.Service/Method` for a policy entry written `package.Service/Method`.
fn method_path(method: &str) -> String {
    if method.starts_with('/') {
        method.to_owned()
    } else {
        format!("/{method}")
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped, sampling `store` and
/// `watchers` at each scrape.
pub async fn serve(listener: TcpListener, metrics: Metrics, store: Store, watchers: Arc<Watchers>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: wait instead of spinning.
                tracing::warn!(error = %error, "the metrics listener could not accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let store = store.clone();
        let watchers = watchers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let metrics = metrics.clone();
                let store = store.clone();
                let watchers = watchers.clone();
                async move { Ok::<_, Infallible>(scrape(&request, &metrics, &store, &watchers).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "metrics connection ended with an error");
            }
        });
    }
}

/// Answers one request to the metrics listener.
async fn scrape<B>(
    request: &http::Request<B>,
    metrics: &Metrics,
    store: &Store,
    watchers: &Watchers,
) -> http::Response<http_body_util::Full<Bytes>> {
    let plain = |status: http::StatusCode, text: &'static str| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(http_body_util::Full::new(Bytes::from_static(
                text.as_bytes(),
            )))
            .expect("a static response is valid")
    };
    if request.uri().path() != "/metrics" {
        return plain(http::StatusCode::NOT_FOUND, "metrics are at /metrics\n");
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return plain(http::StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    metrics.sample(store, watchers).await;
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)
        .body(http_body_util::Full::new(Bytes::from(metrics.encode())))
        .expect("a text response is valid")
}

/// Observes every gRPC call: request id, trace context, metrics, latency and one log line.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Metrics,
}

impl ObserveLayer {
    /// Returns the layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Service made by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, ResBody> Service<http::Request<B>> for Observe<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.method() != http::Method::POST {
            // CORS preflights and stray HTTP requests: not calls.
            return Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(tonic::body::Body::new))
            });
        }
        let method = self.metrics.method_label(request.uri().path());
        let (id, source) = request_id(request.headers());
        request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            request_id = id.to_str().unwrap_or_default(),
            subject = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, request.headers());
        if source == RequestIdSource::Replaced {
            span.in_scope(|| {
                tracing::info!(
                    "x-request-id refused (too long, repeated or not printable); replaced"
                )
            });
        }
        let mut call = CallRecord::start(self.metrics.clone(), method, span.clone());
        let future = span.in_scope(|| inner.call(request));
        Box::pin(
            async move {
                let response = match future.await {
                    Ok(response) => response,
                    Err(error) => {
                        call.finish(Some(tonic::Code::Unknown));
                        return Err(error);
                    }
                };
                let (mut parts, body) = response.into_parts();
                parts.headers.insert(REQUEST_ID_HEADER, id);
                // Trailers-only responses (errors) carry the status in the headers.
                call.header_code = parts.headers.get("grpc-status").and_then(parse_code);
                let body = ObservedBody {
                    body: Box::pin(body),
                    call,
                };
                Ok(http::Response::from_parts(
                    parts,
                    tonic::body::Body::new(body),
                ))
            }
            .instrument(span),
        )
    }
}

/// A call being observed; finished once, at the end of its response or when it is dropped.
struct CallRecord {
    metrics: Metrics,
    method: String,
    span: Span,
    started: Instant,
    in_flight: Gauge,
    header_code: Option<tonic::Code>,
    web_code: Option<tonic::Code>,
    finished: bool,
}

impl CallRecord {
    fn start(metrics: Metrics, method: String, span: Span) -> Self {
        let in_flight = metrics.inner.in_flight.get_or_create_owned(&MethodLabels {
            method: method.clone(),
        });
        in_flight.inc();
        Self {
            metrics,
            method,
            span,
            started: Instant::now(),
            in_flight,
            header_code: None,
            web_code: None,
            finished: false,
        }
    }

    /// Counts, times and logs the call with `code` (`None`: the response was dropped unfinished).
    fn finish(&mut self, code: Option<tonic::Code>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let latency = self.started.elapsed();
        self.in_flight.dec();
        let inner = &self.metrics.inner;
        let name = code.map_or("CANCELLED", code_name);
        inner
            .calls
            .get_or_create(&CallLabels {
                method: self.method.clone(),
                code: name,
            })
            .inc();
        inner
            .latency
            .get_or_create(&MethodLabels {
                method: self.method.clone(),
            })
            .observe(latency.as_secs_f64());
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let _entered = self.span.enter();
        match code {
            None => tracing::info!(
                grpc_status = name,
                latency_ms,
                "rpc cancelled: the response was dropped before it ended"
            ),
            Some(code) if is_server_fault(code) => {
                tracing::warn!(grpc_status = name, latency_ms, "rpc failed")
            }
            Some(tonic::Code::Ok) => tracing::info!(grpc_status = name, latency_ms, "rpc finished"),
            Some(_) => tracing::info!(grpc_status = name, latency_ms, "rpc failed"),
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = self.header_code.or(self.web_code);
        self.finish(code);
    }
}

/// A response body that finishes its call when it ends (trailers or end of stream) or is dropped.
struct ObservedBody<B> {
    body: Pin<Box<B>>,
    call: CallRecord,
}

impl<B> http_body::Body for ObservedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tower::BoxError>>> {
        let this = self.get_mut();
        let polled = match this.body.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(polled) => polled,
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers.get("grpc-status").and_then(parse_code);
                    this.call.finish(code.or(Some(tonic::Code::Unknown)));
                } else if let Some(data) = frame.data_ref() {
                    // gRPC-Web sends its trailers in the body, in a frame flagged 0x80.
                    if let Some(code) = grpc_web_trailer_code(data) {
                        this.call.web_code = Some(code);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error: tower::BoxError = error.into();
                let code = error
                    .downcast_ref::<tonic::Status>()
                    .map_or(tonic::Code::Unknown, tonic::Status::code);
                this.call.finish(Some(code));
                Poll::Ready(Some(Err(error)))
            }
            None => {
                let code = this
                    .call
                    .header_code
                    .or(this.call.web_code)
                    .unwrap_or(tonic::Code::Unknown);
                this.call.finish(Some(code));
                Poll::Ready(None)
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

/// Returns the code of a `grpc-status` value.
fn parse_code(value: &http::HeaderValue) -> Option<tonic::Code> {
    let number: i32 = value.to_str().ok()?.trim().parse().ok()?;
    (0..=16)
        .contains(&number)
        .then(|| tonic::Code::from_i32(number))
}

/// Returns the status of a gRPC-Web trailer frame (`0x80`, length, `grpc-status:N` lines).
fn grpc_web_trailer_code(data: &Bytes) -> Option<tonic::Code> {
    if data.first() != Some(&0x80) || data.len() < 5 {
        return None;
    }
    let text = std::str::from_utf8(&data[5..]).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("grpc-status") {
            return None;
        }
        let number: i32 = value.trim().parse().ok()?;
        (0..=16)
            .contains(&number)
            .then(|| tonic::Code::from_i32(number))
    })
}

/// Returns true for codes that speak of the server rather than the call: logged at WARN.
fn is_server_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    )
}

/// Returns the canonical name of `code`, as gRPC writes it (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Binds the metrics listener when an address is configured.
pub async fn bind(address: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    use anyhow::Context as _;
    match address {
        None => Ok(None),
        Some(address) => TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the metrics listener {address}"))
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_web_trailer_frames_give_their_status() {
        let text = b"grpc-status:5\r\ngrpc-message:missing\r\n";
        let mut frame = vec![0x80, 0, 0, 0, text.len() as u8];
        frame.extend_from_slice(text);
        assert_eq!(
            grpc_web_trailer_code(&Bytes::from(frame)),
            Some(tonic::Code::NotFound)
        );
        assert_eq!(
            grpc_web_trailer_code(&Bytes::from_static(b"\x00\x00\x00\x00\x01x")),
            None
        );
    }

    #[test]
    fn every_code_has_its_canonical_name() {
        assert_eq!(code_name(tonic::Code::from_i32(3)), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::from_i32(16)), "UNAUTHENTICATED");
    }
}
