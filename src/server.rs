//! The server: binds the listener, stacks the tower layers, registers every service and shuts down gracefully.

pub mod gate;
pub mod goaway;
pub mod metrics;
pub mod rate_limit;
pub mod read_position;
pub mod request_id;
pub mod tls;
pub mod verifier;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::api::{
    audit::AuditApi, course::CourseApi, organization::OrganizationApi, person::PersonApi,
    programme::ProgrammeApi,
};
use crate::auth::{layer::AuthLayer, token::TokenVerifier};
use crate::config::{Config, HTTP2_MAX_LOCAL_ERROR_RESETS, HTTP2_MAX_PENDING_ACCEPT_RESETS};
use crate::pb;
use crate::store::Store;

/// How often the database is pinged to keep the health status honest.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the database is probed while it is unhealthy.
const DEGRADED_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Services whose health is reported by name, besides the overall `""`.
const SERVICE_NAMES: &[&str] = &[
    "lms.v1.OrganizationService",
    "lms.v1.PersonService",
    "lms.v1.AuditService",
    "lms.v1.ProgrammeService",
    "lms.v1.CourseService",
    "lms.v1.ProgressService",
    "lms.v1.DeliveryService",
    "lms.v1.CertificationService",
    "lms.v1.SelectionService",
    "lms.v1.EventService",
    "lms.v1.SurveyService",
    "lms.v1.ReportService",
    "lms.v1.CompetencyService",
];

/// A bound, migrated server, ready to run.
pub struct App {
    config: Config,
    listener: TcpListener,
    store: Store,
    verifier: Arc<TokenVerifier>,
    /// TLS on the listener, when `--tls-cert` and `--tls-key` are set.
    tls: Option<tls::Tls>,
    metrics: metrics::Metrics,
    /// The metrics endpoint's listener, when `--metrics-listen` is set.
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Connects to the database, migrates it (unless `--no-migrate`), loads the token keys and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config).await?;
        if !config.server.no_migrate {
            store.migrate().await?;
        }
        let verifier = Arc::new(TokenVerifier::from_config(&config.auth, &config.data_dir)?);
        verifier.attach_store(store.clone());
        let mut tls = tls::Tls::from_config(&config.server.tls).context("TLS settings")?;
        if let Some(tls) = &mut tls {
            tls.listen_for_hangup()?;
        }
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let metrics = metrics::Metrics::new(&store);
        let metrics_listener = metrics::bind(config.telemetry.metrics_listen).await?;
        Ok(Self {
            config,
            listener,
            store,
            verifier,
            tls,
            metrics,
            metrics_listener,
        })
    }

    /// Returns the metrics endpoint's bound address, when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Returns the bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Returns the store, for tests and tools that run beside the server.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls for at most the grace period.
    ///
    /// Order at shutdown: health goes NOT_SERVING, the listener closes and HTTP/2 GOAWAY tells
    /// clients to send no new calls, in-flight calls finish; after the grace period the server
    /// returns anyway (tonic cannot force-close connections, hyper can hang on shutdown).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            store,
            verifier,
            mut tls,
            metrics,
            metrics_listener,
        } = self;
        let server_config = &config.server;
        let max_message = server_config.max_message_bytes;

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES.iter().copied().chain([""]) {
            health_reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let probe = tokio::spawn(probe_database(store.clone(), health_reporter.clone()));
        let relay = tokio::spawn(relay_feed_notifications(store.clone()));
        let replica_watch = {
            let store = store.clone();
            tokio::spawn(async move { store.watch_read_replicas().await })
        };
        let expiry_sweep = tokio::spawn(sweep_certificate_expiries(
            store.clone(),
            config.certification.clock.clone(),
            config.certification.expiry_sweep_interval,
            config.certification.expiry_reminder_days.clone(),
            config.certification.due_reminder_days.clone(),
            config.certification.renewal_open_days,
        ));

        let partition_maintenance = tokio::spawn(maintain_partitions(
            store.clone(),
            config.partitions.clone(),
        ));

        let reflection_v1 = reflection_builder().build_v1()?;
        let reflection_v1alpha = reflection_builder().build_v1alpha()?;

        let organizations = pb::organization_service_server::OrganizationServiceServer::new(
            OrganizationApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);
        let people =
            pb::person_service_server::PersonServiceServer::new(PersonApi::new(store.clone()))
                .max_decoding_message_size(max_message);
        let audit = pb::audit_service_server::AuditServiceServer::new(AuditApi::new(store.clone()))
            .max_decoding_message_size(max_message);
        let programmes = pb::programme_service_server::ProgrammeServiceServer::new(
            ProgrammeApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);
        let reports = pb::report_service_server::ReportServiceServer::new(
            crate::api::report::ReportApi::new(store.clone(), config.certification.clock.clone()),
        )
        .max_decoding_message_size(max_message);
        let events_api = crate::api::event::EventApi::new(store.clone());
        let watchers = events_api.watchers();
        let events = pb::event_service_server::EventServiceServer::new(events_api)
            .max_decoding_message_size(max_message);
        let metrics_endpoint = metrics_listener.map(|listener| {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(address = %address, "serving metrics at /metrics");
            }
            tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                store.clone(),
                watchers,
            ))
        });
        let progress = pb::progress_service_server::ProgressServiceServer::new(
            crate::api::progress::ProgressApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);
        let selection = pb::selection_service_server::SelectionServiceServer::new(
            crate::api::selection::SelectionApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);
        let delivery = pb::delivery_service_server::DeliveryServiceServer::new(
            crate::api::delivery::DeliveryApi::new(
                store.clone(),
                config.certification.clock.clone(),
            ),
        )
        .max_decoding_message_size(max_message);
        let certification_api =
            crate::api::certification::CertificationApi::new(store.clone(), &config)?;
        let certification = pb::certification_service_server::CertificationServiceServer::new(
            certification_api.clone(),
        )
        .max_decoding_message_size(max_message);
        let courses =
            pb::course_service_server::CourseServiceServer::new(CourseApi::new(store.clone()))
                .max_decoding_message_size(max_message);
        let surveys = pb::survey_service_server::SurveyServiceServer::new(
            crate::api::survey::SurveyApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);
        let competencies = pb::competency_service_server::CompetencyServiceServer::new(
            crate::api::competency::CompetencyApi::new(store.clone()),
        )
        .max_decoding_message_size(max_message);

        let public_rate_limit = rate_limit::PublicRateLimitLayer::new(
            config.certification.verify_rate_per_second,
            config.certification.verify_burst,
            server_config.trusted_proxies.clone(),
        )
        .with_metrics(metrics.clone());
        // Status lists, issuer profiles, verification pages and PDFs over plain HTTP, for people and
        // standard verifiers (src/server/verifier.rs); they share the public rate limit.
        let verifier_http = verifier::VerifierLayer::new(
            certification_api,
            public_rate_limit.clone(),
            server_config.concurrency_limit,
            server_config.request_timeout,
        );
        let forget = public_rate_limit.clone();
        let rate_limit_sweep = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticks.tick().await;
                forget.forget_idle_clients();
            }
        });

        let local_addr = listener.local_addr()?;
        // A refused HTTP/1.1 call's body is read (within bounds) so its client gets the answer.
        let mut auth =
            AuthLayer::new(verifier).with_body_drain(max_message, server_config.body_idle_timeout);
        let tls_reloader = tls.as_mut().map(|tls| {
            auth = auth.clone().with_client_principals(tls.principals());
            tls.spawn_reloader()
        });

        // Calls per connection are limited by the gate (`Limits::per_connection`), which counts
        // its refusals, instead of tower's limit and load shed inside tonic, which cannot be seen.
        let router = Server::builder()
            .max_concurrent_streams(server_config.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .http2_max_header_list_size(16 * 1024)
            // Flow-control windows sized so that bulk clients sending one small message per DATA
            // frame never exhaust h2's small-frame budget (half the connection window): see
            // DEFAULT_HTTP2_CONNECTION_WINDOW and docs/http2-limits.md. Adaptive windows stay off:
            // they would move the connection window, and with it that budget, at run time.
            .initial_stream_window_size(server_config.http2_stream_window)
            .initial_connection_window_size(server_config.http2_connection_window)
            .http2_adaptive_window(Some(false))
            // Reset floods (CVE-2023-44487, RUSTSEC-2024-0003): tonic passes `None` through to
            // hyper, which means no limit at all; these are h2's and hyper's own defaults.
            .http2_max_pending_accept_reset_streams(Some(HTTP2_MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(HTTP2_MAX_LOCAL_ERROR_RESETS))
            .accept_http1(true)
            // Outermost: request id, trace context, metrics and the call's log line see every call.
            .layer(metrics::ObserveLayer::new(metrics.clone()))
            .layer(cors_layer(&server_config.cors_origins)?)
            // Under TLS the peer address sits inside `TlsConnectInfo`: copy it out for the rate limit.
            .layer(tls::ExposeTcpConnectInfoLayer)
            // Plain HTTP GETs of the verification surface, before gRPC-Web, which answers any other
            // HTTP/1.1 request with 400.
            .layer(verifier_http)
            .layer(tonic_web::GrpcWebLayer::new())
            // Public methods are rate-limited per client address before anything else runs.
            .layer(public_rate_limit.clone())
            // Authentication first: a caller without a valid token never holds a slot.
            .layer(auth)
            .layer(gate::GateLayer::new(
                gate::Limits {
                    concurrency: server_config.concurrency_limit,
                    ceiling: server_config.request_timeout,
                    streams_per_caller: server_config.streams_per_caller,
                    max_streams: server_config.max_streams,
                    body_idle: server_config.body_idle_timeout,
                    stream_idle: server_config.stream_idle_timeout,
                    per_connection: server_config.concurrency_per_connection,
                },
                metrics.clone(),
            ))
            // Innermost: the call's reads and writes run inside its read-your-writes scope.
            .layer(read_position::ReadPositionLayer::new(store.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(organizations)
            .add_service(people)
            .add_service(audit)
            .add_service(programmes)
            .add_service(surveys)
            .add_service(courses)
            .add_service(progress)
            .add_service(delivery)
            .add_service(certification)
            .add_service(selection)
            .add_service(events)
            .add_service(reports)
            .add_service(competencies);

        let (draining_sender, draining) = tokio::sync::oneshot::channel::<()>();
        let signal_reporter = health_reporter.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            for name in SERVICE_NAMES.iter().copied().chain([""]) {
                signal_reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            let _ = draining_sender.send(());
        };
        // Every connection is watched for the GOAWAY frames the server writes, so that closing one
        // for abuse or a protocol error is logged with the reason (h2 itself logs it at debug);
        // under TLS the watch sits inside the TLS layer, where the frames are plain.
        let serve: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = if let Some(tls) = &tls {
            tracing::info!(address = %local_addr, "serving gRPC, gRPC-Web, reflection and health over TLS");
            Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), signal))
        } else {
            let incoming = TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60)));
            let incoming = futures::TryStreamExt::map_ok(incoming, goaway::Watched::tcp);
            tracing::info!(address = %local_addr, "serving gRPC, gRPC-Web, reflection and health");
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        };
        tokio::pin!(serve);
        let grace = server_config.shutdown_grace;
        tokio::select! {
            result = &mut serve => result.context("serving")?,
            () = async {
                if draining.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "calls still running after the grace period; stopping anyway");
            }
        }
        probe.abort();
        relay.abort();
        replica_watch.abort();
        rate_limit_sweep.abort();
        if let Some(endpoint) = metrics_endpoint {
            endpoint.abort();
        }
        if let Some(reloader) = tls_reloader {
            reloader.abort();
        }
        // A sweep in flight commits or rolls back as a whole: its transaction runs in a task of its own.
        expiry_sweep.abort();
        partition_maintenance.abort();
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Returns a reflection builder knowing every served proto, and google.rpc error details so that
/// grpcurl and Postman can decode them; both reflection versions list both reflection services.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// Relays other replicas' notifications (PostgreSQL LISTEN: feed wake-ups, progress cache
/// invalidations) to this process, reconnecting after a pause when the connection drops; feed
/// watchers also poll every second, and the progress cache is off while the listener is down.
async fn relay_feed_notifications(store: Store) {
    if store.backend() != sea_orm::DbBackend::Postgres {
        return;
    }
    loop {
        if let Err(error) = store.listen_for_other_replicas().await {
            tracing::warn!(error = %error, "feed listener stopped; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes `certificate.expired` events, `certificate.expiring` reminders `reminder_days`
/// before expiry, renewal candidacies `renewal_open_days` before expiry and `enrollment.due`
/// reminders `due_days` before a cohort ends, every `interval` (never when it is zero), judging expiry by
/// `clock`, the clock the certification rules read. Every replica may run it: each expiry is
/// announced once (see `Store::publish_certificate_expiries`).
async fn sweep_certificate_expiries(
    store: Store,
    clock: crate::domain::certification::Clock,
    interval: Duration,
    reminder_days: crate::config::ReminderDays,
    due_days: crate::config::ReminderDays,
    renewal_open_days: crate::config::RenewalOpenDays,
) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.publish_certificate_expiries(clock.now()).await {
            Ok(0) => {}
            Ok(announced) => tracing::info!(announced, "certificate expiries announced"),
            Err(error) => {
                tracing::warn!(error = %error, "certificate expiry sweep failed; retrying next interval")
            }
        }
        match store
            .publish_certificate_reminders(clock.now(), &reminder_days.0)
            .await
        {
            Ok(0) => {}
            Ok(announced) => tracing::info!(announced, "certificate expiry reminders announced"),
            Err(error) => {
                tracing::warn!(error = %error, "certificate reminder sweep failed; retrying next interval")
            }
        }
        if let Some(days) = renewal_open_days.0 {
            match store.open_renewal_candidacies(clock.now(), days).await {
                Ok(0) => {}
                Ok(opened) => tracing::info!(opened, "renewal candidacies opened"),
                Err(error) => {
                    tracing::warn!(error = %error, "renewal sweep failed; retrying next interval")
                }
            }
        }
        match store
            .publish_due_reminders(clock.now().date_naive(), &due_days.0)
            .await
        {
            Ok(0) => {}
            Ok(announced) => tracing::info!(announced, "enrolment due reminders announced"),
            Err(error) => {
                tracing::warn!(error = %error, "due reminder sweep failed; retrying next interval")
            }
        }
        // Cohorts with `schedule.auto_advance` open, start and close by their dates.
        match store
            .advance_scheduled_cohorts(clock.now().date_naive())
            .await
        {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "cohorts advanced by their schedules"),
            Err(error) => {
                tracing::warn!(error = %error, "cohort schedule sweep failed; retrying next interval")
            }
        }
    }
}

/// Maintains the monthly partitions and the feed's retention every `config`'s interval (never
/// when it is zero), from start-up on. Every replica may run it: one at a time does the work
/// (see `src/store/partition.rs`).
async fn maintain_partitions(store: Store, config: crate::config::PartitionConfig) {
    if config.partition_maintenance_interval.is_zero() {
        return;
    }
    let policy = crate::store::partition::PartitionPolicy {
        ahead_months: config.partition_ahead_months,
        outbox_retention: (!config.outbox_retention.is_zero()).then_some(config.outbox_retention),
    };
    let mut ticks = tokio::time::interval(config.partition_maintenance_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.maintain_partitions(policy, chrono::Utc::now()).await {
            Ok(done)
                if !done.created.is_empty() || done.removed > 0 || !done.dropped.is_empty() =>
            {
                tracing::info!(created = ?done.created, dropped = ?done.dropped, removed = done.removed, "partitions maintained")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "partition maintenance failed; retrying next interval")
            }
        }
    }
}

/// Keeps health in step with the database: NOT_SERVING while it does not answer, and while
/// writes fail on its storage (disk full, I/O errors) until a probe write commits again.
///
/// A write that fails on storage wakes the probe at once; while degraded it probes every
/// [`DEGRADED_PROBE_INTERVAL`], so writing and health resume by themselves once space returns.
async fn probe_database(store: Store, reporter: tonic_health::server::HealthReporter) {
    let mut serving = true;
    let mut storage = store.storage_failing();
    loop {
        let failing = *storage.borrow_and_update();
        if failing || !serving {
            tokio::time::sleep(DEGRADED_PROBE_INTERVAL).await;
        } else {
            tokio::select! {
                () = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
                _ = storage.changed() => {}
            }
        }
        let failing = *storage.borrow();
        let healthy =
            store.ping().await.is_ok() && (!failing || store.probe_storage().await.is_ok());
        if healthy != serving {
            serving = healthy;
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::warn!(
                healthy,
                storage_failing = failing,
                "database health changed"
            );
            for name in SERVICE_NAMES.iter().copied().chain([""]) {
                reporter.set_service_status(name, status).await;
            }
        }
    }
}

/// Returns the CORS policy for gRPC-Web callers from `origins` (`*` allows any): POST with the
/// gRPC-Web headers, a token, trace context (`traceparent`, `tracestate`, `x-request-id`) and
/// the read position (`lms-min-lsn`).
fn cors_layer(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::from(Any)
    } else {
        let values = origins
            .iter()
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                HeaderValue::from_str(origin).with_context(|| format!("bad CORS origin {origin}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    let header = HeaderName::from_static;
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header("authorization"),
            header("content-type"),
            header("grpc-timeout"),
            header("x-grpc-web"),
            header("x-user-agent"),
            header("x-request-id"),
            header("traceparent"),
            header("tracestate"),
            header(read_position::MIN_POSITION_HEADER),
        ])
        // What browser code reads: the status and its details (also in the body for gRPC-Web,
        // but a trailers-only refusal sends them as headers), the request id to quote, and where
        // the event feed stood when a WatchEvents stream opened, and a write's commit position
        // (read-your-writes across replicas, docs/operations.md).
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
            header(crate::api::event::HISTORY_HEADER),
            header(crate::api::event::HEAD_HEADER),
            header(read_position::COMMIT_POSITION_HEADER),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60)))
}
