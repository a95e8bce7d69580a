//! Logging and tracing setup: human-readable or JSON lines, filtered by `RUST_LOG`, and
//! OpenTelemetry spans that continue the caller's W3C `traceparent`, exported over OTLP
//! (http/protobuf) only when an endpoint is configured.

use std::{
    collections::HashMap,
    io::IsTerminal as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,h2=warn,hyper=warn,tower=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,reqwest=warn";

/// Keeps the trace pipeline alive; dropping it sends the spans still buffered.
#[must_use = "dropping the guard stops exporting spans"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("exporting the last spans failed: {error}");
        }
    }
}

/// Installs the global subscriber without exporting spans; a second call (as in tests) is a no-op.
pub fn init(format: LogFormat) {
    // Without an endpoint nothing can fail, and there is nothing to flush.
    drop(init_with(format, None));
}

/// Installs the global subscriber: log lines in `format` (colours only on a terminal) and
/// OpenTelemetry spans, sent to `otlp_endpoint` (the collector's base URL, e.g.
/// `http://127.0.0.1:4318`; spans go to its `/v1/traces`) when one is given.
///
/// Spans carry trace ids whether or not they are exported, so that log lines name the trace.
/// A second call (as in tests) keeps the first subscriber.
pub fn init_with(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    let mut provider = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name("lms")
            .build(),
    );
    let exporting = otlp_endpoint.filter(|endpoint| !endpoint.trim().is_empty());
    if let Some(endpoint) = exporting {
        let traces = format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces.clone())
            .build()
            .with_context(|| format!("configuring the OTLP exporter for {traces}"))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer("lms");
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(tracer));
    let result = match format {
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    if result.is_err() {
        // Already installed (tests start many servers in one process): keep the first.
        return Ok(TelemetryGuard { provider: None });
    }
    if let Some(endpoint) = exporting {
        tracing::info!(endpoint, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Makes `span` continue the caller's trace when `headers` carry a valid W3C `traceparent`
/// (and `tracestate`), and records the span's trace id in its `trace_id` field.
pub fn continue_trace(span: &Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed; the span then has no trace id.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Reads propagation headers from an HTTP header map.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The cursors of the WatchEvents streams open on this replica, for the lag gauges.
#[derive(Debug, Default)]
pub struct Watchers {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, (String, Arc<AtomicI64>)>>,
}

impl Watchers {
    /// Registers a watcher of `subject` starting after `cursor`; it leaves when the guard drops.
    pub fn register(self: &Arc<Self>, subject: String, cursor: i64) -> WatcherPosition {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let position = Arc::new(AtomicI64::new(cursor));
        self.lock().insert(id, (subject, position.clone()));
        WatcherPosition {
            watchers: self.clone(),
            id,
            cursor: position,
        }
    }

    /// Returns the subject and cursor of every open watcher.
    pub(crate) fn positions(&self) -> Vec<(String, i64)> {
        self.lock()
            .values()
            .map(|(subject, cursor)| (subject.clone(), cursor.load(Ordering::Relaxed)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Arc<AtomicI64>)>> {
        // A map of plain values, each change one step: usable after a panic elsewhere.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One watcher's place in the feed, reported to [`Watchers`] until dropped.
#[derive(Debug)]
pub struct WatcherPosition {
    watchers: Arc<Watchers>,
    id: u64,
    cursor: Arc<AtomicI64>,
}

impl WatcherPosition {
    /// Records that the watcher has passed `cursor`.
    pub fn set(&self, cursor: i64) {
        self.cursor.store(cursor, Ordering::Relaxed);
    }
}

impl Drop for WatcherPosition {
    fn drop(&mut self) {
        self.watchers.lock().remove(&self.id);
    }
}
