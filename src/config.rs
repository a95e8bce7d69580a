//! Every setting of the server: its flag, its `LMS_*` environment variable and its default, in one place.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// Default address of the gRPC listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default per-call ceiling; a shorter client deadline wins.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of calls served at once across all connections.
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 512;
/// Default number of calls served at once on one connection.
pub const DEFAULT_CONCURRENCY_PER_CONNECTION: usize = 128;
/// Default HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;
/// Default HTTP/2 receive window of one stream (`SETTINGS_INITIAL_WINDOW_SIZE`), in bytes.
///
/// It bounds what one stream can have buffered unread in the server: 256 KiB, so at most
/// 200 streams × 256 KiB = 50 MiB per connection, and at most 262,144 DATA frames (1 byte each)
/// per stream. At 50 ms round trip it still carries 5 MB/s per stream, above the rate an import
/// commits. See docs/http2-limits.md for the arithmetic.
pub const DEFAULT_HTTP2_STREAM_WINDOW: u32 = 256 * 1024;
/// Default HTTP/2 receive window of a whole connection, in bytes.
///
/// It allocates nothing by itself (the stream windows bound the buffered bytes), but h2 0.4 sizes
/// its per-connection budget for small DATA frames from it: half the connection window, 128 MiB.
/// Each unread DATA frame below 256 bytes costs `256 - len` of that budget; exhausting it closes
/// the connection (GOAWAY ENHANCE_YOUR_CALM `too_many_data_frames`). 128 MiB is 512 stream
/// windows: one stream can never exhaust it (1-byte frames cost at most 255 × 256 KiB =
/// 63.75 MiB), and 200 streams can only with DATA frames under 72 bytes, all unread at once.
pub const DEFAULT_HTTP2_CONNECTION_WINDOW: u32 = 256 * 1024 * 1024;
/// Streams a client may reset before the server accepted them, at once, per connection (h2's
/// default); beyond it the connection is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset).
pub const HTTP2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset for the client's protocol errors over a connection's life
/// (hyper's default, which tonic would otherwise lift); beyond it GOAWAY ENHANCE_YOUR_CALM.
pub const HTTP2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Smallest HTTP/2 window accepted by the settings: the protocol's initial window.
pub const MIN_HTTP2_WINDOW: u32 = 65_535;
/// Largest HTTP/2 window the protocol allows (2^31 - 1).
pub const MAX_HTTP2_WINDOW: u32 = 2_147_483_647;
/// Default largest decoded request message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default time given to in-flight calls at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Default streams one caller may hold open.
pub const DEFAULT_STREAMS_PER_CALLER: usize = 64;
/// Default streams open at once, server-wide (watchers share one database reader).
pub const DEFAULT_MAX_STREAMS: usize = 20_000;
/// Default longest silence of a unary request body.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest silence of a client stream.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default interval of the certificate expiry sweep.
pub const DEFAULT_EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Default days before expiry at which `certificate.expiring` reminders are published.
pub const DEFAULT_EXPIRY_REMINDER_DAYS: [u32; 4] = [90, 60, 30, 7];
/// Default days before a cohort's end at which `enrollment.due` reminders are published.
pub const DEFAULT_DUE_REMINDER_DAYS: [u32; 2] = [7, 1];

/// Days before a certificate's expiry at which a `certificate.expiring` event is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderDays(pub Vec<u32>);

impl Default for ReminderDays {
    fn default() -> Self {
        Self(DEFAULT_EXPIRY_REMINDER_DAYS.to_vec())
    }
}

/// Default days before a certificate's expiry at which its renewal candidacy is opened.
pub const DEFAULT_RENEWAL_OPEN_DAYS: u32 = 90;

/// Days before a certificate's expiry at which its renewal candidacy is opened; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalOpenDays(pub Option<u32>);

impl Default for RenewalOpenDays {
    fn default() -> Self {
        Self(Some(DEFAULT_RENEWAL_OPEN_DAYS))
    }
}

/// Parses a number of days (1 to 3,650) before expiry at which renewal candidacies open, or
/// `off` for none.
fn parse_renewal_open_days(text: &str) -> Result<RenewalOpenDays, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(RenewalOpenDays(None));
    }
    let value: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of days (or `off`)"))?;
    if !(1..=3_650).contains(&value) {
        return Err(format!("{value} days is not between 1 and 3650"));
    }
    Ok(RenewalOpenDays(Some(value)))
}

/// Parses `90,60,30,7` (1 to 3,650 days each, at most 12), or `off` (or nothing) for none.
fn parse_reminder_days(text: &str) -> Result<ReminderDays, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(ReminderDays(Vec::new()));
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        let value: u32 = part
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a number of days", part.trim()))?;
        if !(1..=3_650).contains(&value) {
            return Err(format!("{value} days is not between 1 and 3650"));
        }
        days.push(value);
    }
    if days.len() > 12 {
        return Err("at most 12 reminder offsets".to_owned());
    }
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    Ok(ReminderDays(days))
}
/// Default wait for a pooled database connection; shorter than the call timeout.
pub const DEFAULT_DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Default memory of the progress read cache, in MiB.
pub const DEFAULT_PROGRESS_CACHE_MB: u64 = 32;

/// Default longest age of a cached progress answer.
pub const DEFAULT_PROGRESS_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default largest staleness of a hot standby still used for reads.
pub const DEFAULT_READ_MAX_LAG: Duration = Duration::from_secs(5);
/// Default SQLite busy timeout; writers wait this long for the write lock.
pub const DEFAULT_SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default public base URL of the service (credential and status-list ids).
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:50051";
/// Default `VerifyCertificate` calls per second per client address.
pub const DEFAULT_VERIFY_RATE: u32 = 5;
/// Default `VerifyCertificate` burst per client address.
pub const DEFAULT_VERIFY_BURST: u32 = 30;
/// Default issuer (`iss`) of tokens.
pub const DEFAULT_JWT_ISSUER: &str = "lms";
/// Default audience (`aud`) of tokens.
pub const DEFAULT_JWT_AUDIENCE: &str = "lms";
/// Default longest remaining lifetime of a presented token.
pub const DEFAULT_JWT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Folder for the SQLite database and the development signing key.
    #[arg(long, env = "LMS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL (`sqlite://path?mode=rwc` or `postgres://user@host/db`); default: `lms.db` in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, env = "LMS_LOG_FORMAT", default_value = "pretty", global = true)]
    pub log_format: LogFormat,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub telemetry: TelemetryConfig,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerConfig,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: AuthConfig,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub certification: CertificationConfig,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub partitions: PartitionConfig,
}

/// Settings of the monthly partitions and the feed's retention (docs/operations.md, "Partitions
/// and retention").
#[derive(Debug, Clone, Args)]
pub struct PartitionConfig {
    /// Age after which feed (outbox) events are removed: on PostgreSQL whole monthly partitions
    /// older than it are dropped, on SQLite the same months are deleted in batches; cursors below
    /// get CURSOR_EXPIRED. `0s` (the default) keeps every event. Progress events are never removed.
    #[arg(long, env = "LMS_OUTBOX_RETENTION", default_value = "0s", value_parser = humantime::parse_duration, global = true)]
    pub outbox_retention: Duration,

    /// Months ahead of the current one whose partitions are made in advance (PostgreSQL).
    #[arg(
        long,
        env = "LMS_PARTITION_AHEAD_MONTHS",
        default_value_t = 3,
        global = true
    )]
    pub partition_ahead_months: u32,

    /// Interval of partition maintenance (every replica may run it; one at a time does the
    /// work); `0s` turns it off.
    #[arg(long, env = "LMS_PARTITION_MAINTENANCE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration, global = true)]
    pub partition_maintenance_interval: Duration,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            outbox_retention: Duration::ZERO,
            partition_ahead_months: 3,
            partition_maintenance_interval: Duration::from_secs(3600),
        }
    }
}

/// Settings of certificates: where verifiers find them, the issuer key, verification limits, the clock.
#[derive(Debug, Clone, Args)]
pub struct CertificationConfig {
    /// Public base URL of this service, used in credential and status-list ids.
    #[arg(long, env = "LMS_PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL, global = true)]
    pub public_url: String,

    /// File holding the 32-byte hex seed every issuer organisation's Ed25519 key derives from
    /// (default: `issuer-ed25519.seed` in the data dir, made on first use). Replicas must share it.
    #[arg(long, env = "LMS_ISSUER_SEED_FILE", global = true)]
    pub issuer_seed_file: Option<PathBuf>,

    /// Calls per second to the public methods (VerifyCertificate, GetIssuerKeys,
    /// GetStatusListCredential) allowed per client address (refilled continuously).
    #[arg(long, env = "LMS_VERIFY_RATE", default_value_t = DEFAULT_VERIFY_RATE, global = true)]
    pub verify_rate_per_second: u32,

    /// Burst of public calls allowed per client address.
    #[arg(long, env = "LMS_VERIFY_BURST", default_value_t = DEFAULT_VERIFY_BURST, global = true)]
    pub verify_burst: u32,

    /// How often each replica publishes `certificate.expired` events for certificates past
    /// expiry, the reminders, and moves cohorts with `schedule.auto_advance` by their dates
    /// (replicas may all sweep: each expiry is announced, each cohort moved, once); `0s` turns
    /// sweeping off.
    #[arg(long, env = "LMS_EXPIRY_SWEEP_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub expiry_sweep_interval: Duration,

    /// Days before expiry at which the sweep publishes a `certificate.expiring` event for each
    /// active certificate (comma-separated, each once per certificate across replicas); `off`
    /// for none.
    #[arg(long, env = "LMS_EXPIRY_REMINDER_DAYS", default_value = "90,60,30,7", value_parser = parse_reminder_days, global = true)]
    pub expiry_reminder_days: ReminderDays,

    /// Days before a cohort's end date at which the sweep publishes an `enrollment.due` event
    /// for each of its unfinished enrolments (comma-separated, each once per enrolment across
    /// replicas); `off` for none.
    #[arg(long, env = "LMS_DUE_REMINDER_DAYS", default_value = "7,1", value_parser = parse_reminder_days, global = true)]
    pub due_reminder_days: ReminderDays,

    /// Days before an active certificate's expiry at which the sweep opens a renewal candidacy
    /// for its holder (once per certificate across replicas, with a `candidacy.renewal_opened`
    /// event); `off` for none.
    #[arg(long, env = "LMS_RENEWAL_OPEN_DAYS", default_value = "90", value_parser = parse_renewal_open_days, global = true)]
    pub renewal_open_days: RenewalOpenDays,

    /// The clock certification and delivery rules read; tests move it forward.
    #[arg(skip)]
    pub clock: crate::domain::certification::Clock,
}

impl Default for CertificationConfig {
    fn default() -> Self {
        Self {
            public_url: DEFAULT_PUBLIC_URL.to_owned(),
            issuer_seed_file: None,
            verify_rate_per_second: DEFAULT_VERIFY_RATE,
            verify_burst: DEFAULT_VERIFY_BURST,
            expiry_sweep_interval: DEFAULT_EXPIRY_SWEEP_INTERVAL,
            expiry_reminder_days: ReminderDays::default(),
            due_reminder_days: ReminderDays(DEFAULT_DUE_REMINDER_DAYS.to_vec()),
            renewal_open_days: RenewalOpenDays::default(),
            clock: crate::domain::certification::Clock::default(),
        }
    }
}

/// Settings of metrics and traces (docs/monitoring.md).
#[derive(Debug, Clone, Default, Args)]
pub struct TelemetryConfig {
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), e.g. `127.0.0.1:9464`; off
    /// when unset. It has no authentication: bind it to localhost or a private network.
    #[arg(long, env = "LMS_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver (e.g.
    /// `http://127.0.0.1:4318`); spans are exported to its `/v1/traces` when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

/// Settings of the gRPC server.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on (gRPC, gRPC-Web, reflection and health share it).
    #[arg(long, env = "LMS_LISTEN", default_value = DEFAULT_LISTEN, global = true)]
    pub listen: SocketAddr,

    /// Do not apply migrations on start.
    #[arg(
        long,
        env = "LMS_NO_MIGRATE",
        global = true,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_migrate: bool,

    /// Browser origins allowed to call over gRPC-Web (comma-separated; `*` for any).
    #[arg(long, env = "LMS_CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// Per-call ceiling; a shorter client deadline (`grpc-timeout`) wins.
    #[arg(long, env = "LMS_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub request_timeout: Duration,

    /// Calls served at once across all connections; beyond it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "LMS_CONCURRENCY_LIMIT", default_value_t = DEFAULT_CONCURRENCY_LIMIT, global = true)]
    pub concurrency_limit: usize,

    /// Calls served at once on one connection; beyond it calls are shed.
    #[arg(long, env = "LMS_CONCURRENCY_PER_CONNECTION", default_value_t = DEFAULT_CONCURRENCY_PER_CONNECTION, global = true)]
    pub concurrency_per_connection: usize,

    /// HTTP/2 streams a client may open at once on one connection.
    #[arg(long, env = "LMS_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS, global = true)]
    pub max_concurrent_streams: u32,

    /// HTTP/2 receive window of one stream, in bytes: what one call may have in flight unread.
    #[arg(
        long,
        env = "LMS_HTTP2_STREAM_WINDOW",
        default_value_t = DEFAULT_HTTP2_STREAM_WINDOW,
        value_parser = clap::value_parser!(u32).range(MIN_HTTP2_WINDOW as i64..=MAX_HTTP2_WINDOW as i64),
        global = true
    )]
    pub http2_stream_window: u32,

    /// HTTP/2 receive window of a connection, in bytes; half of it is the connection's budget
    /// for small unread DATA frames (docs/http2-limits.md).
    #[arg(
        long,
        env = "LMS_HTTP2_CONNECTION_WINDOW",
        default_value_t = DEFAULT_HTTP2_CONNECTION_WINDOW,
        value_parser = clap::value_parser!(u32).range(MIN_HTTP2_WINDOW as i64..=MAX_HTTP2_WINDOW as i64),
        global = true
    )]
    pub http2_connection_window: u32,

    /// Largest request message accepted, in bytes (after decompression).
    #[arg(long, env = "LMS_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES, global = true)]
    pub max_message_bytes: usize,

    /// Time in-flight calls get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "LMS_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// Streams (WatchEvents, ImportPeople, StreamProgress, ExportStatements) one authenticated
    /// subject may hold open at once.
    #[arg(long, env = "LMS_STREAMS_PER_CALLER", default_value_t = DEFAULT_STREAMS_PER_CALLER, global = true)]
    pub streams_per_caller: usize,

    /// Streams open at once, server-wide.
    #[arg(long, env = "LMS_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS, global = true)]
    pub max_streams: usize,

    /// Longest a unary call's request body may send nothing before the call is ended.
    #[arg(long, env = "LMS_BODY_IDLE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub body_idle_timeout: Duration,

    /// Longest a client stream (ImportPeople, StreamProgress) may send no message before it is
    /// ended.
    #[arg(long, env = "LMS_STREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub stream_idle_timeout: Duration,

    /// Proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For` is believed
    /// when rate-limiting public calls per client address.
    #[arg(
        long,
        env = "LMS_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsConfig,
}

/// Default interval at which the TLS certificate, key and client CA files are checked for changes.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Default longest time a client may take to complete the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of TLS on the listener and of client certificates (docs/tls.md).
#[derive(Debug, Clone, Args)]
pub struct TlsConfig {
    /// PEM certificate chain of the server (leaf first); with `--tls-key`, the listener speaks
    /// TLS only. Reloaded when the file changes and on SIGHUP.
    #[arg(long, env = "LMS_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "LMS_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate(s) of the CA(s) that sign client certificates; turns on mTLS.
    #[arg(long, env = "LMS_TLS_CLIENT_CA", global = true)]
    pub tls_client_ca: Option<PathBuf>,

    /// Whether a client must present a certificate signed by `--tls-client-ca`: `optional` lets
    /// clients that call with a bearer token (or only public methods) connect without one.
    #[arg(
        long,
        env = "LMS_TLS_CLIENT_AUTH",
        default_value = "optional",
        global = true
    )]
    pub tls_client_auth: ClientAuth,

    /// Client certificate mapped to a principal, as `KIND:VALUE=SUBJECT:ROLE[,ROLE...][@ORG]`
    /// with KIND one of `cn`, `dns`, `uri`, `email` (repeatable; `;`-separated in the variable).
    #[arg(
        long,
        env = "LMS_TLS_CLIENT_PRINCIPAL",
        value_delimiter = ';',
        global = true
    )]
    pub tls_client_principal: Vec<String>,

    /// How often the certificate, key and client CA files are checked for changes.
    #[arg(long, env = "LMS_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub tls_reload_interval: Duration,

    /// Longest a new connection may take to complete the TLS handshake before it is closed.
    #[arg(long, env = "LMS_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub tls_handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: ClientAuth::Optional,
            tls_client_principal: Vec::new(),
            tls_reload_interval: DEFAULT_TLS_RELOAD_INTERVAL,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Whether the TLS listener requires a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// A client certificate is verified when presented; clients may also connect without one.
    #[default]
    Optional,
    /// Every connection must present a certificate that verifies against the client CA.
    Required,
}

/// Settings of the database pool.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Largest number of pooled connections (default: 32 for PostgreSQL, 8 for SQLite).
    #[arg(long, env = "LMS_DB_MAX_CONNECTIONS", global = true)]
    pub db_max_connections: Option<u32>,

    /// Transactions that commit concurrent unary RecordProgress calls together, at most (default:
    /// 2 for PostgreSQL, 1 for SQLite). Fewer make larger groups: fewer commits per event.
    #[arg(long, env = "LMS_GROUP_COMMIT_FLUSHERS", global = true)]
    pub group_commit_flushers: Option<usize>,

    /// Wait for a pooled connection before answering UNAVAILABLE.
    #[arg(long, env = "LMS_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration, global = true)]
    pub db_acquire_timeout: Duration,

    /// SQLite `synchronous` mode: `full` survives power loss, `normal` only a process crash.
    #[arg(
        long,
        env = "LMS_SQLITE_SYNCHRONOUS",
        default_value = "full",
        global = true
    )]
    pub sqlite_synchronous: SqliteSynchronous,

    /// Hot standbys of the PostgreSQL primary (comma-separated `postgres://` URLs) that serve
    /// reports, lists, exports and the feed backlog; writes always go to `DATABASE_URL`.
    /// Refused with SQLite. See docs/operations.md, "Read replicas".
    #[arg(long, env = "DATABASE_READ_URL", value_delimiter = ',', global = true)]
    pub database_read_url: Vec<String>,

    /// Largest staleness of a standby still used for reads; a standby further behind the
    /// primary is skipped until it catches up.
    #[arg(long, env = "LMS_READ_MAX_LAG", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub read_max_lag: Duration,

    /// Memory for the progress read cache (GetEnrollmentProgress, ListProgress of one cohort),
    /// in MiB; 0 turns it off. Every write invalidates what it changed, on every replica (see
    /// docs/progress.md, "The read cache").
    #[arg(long, env = "LMS_PROGRESS_CACHE_MB", default_value_t = DEFAULT_PROGRESS_CACHE_MB, global = true)]
    pub progress_cache_mb: u64,

    /// Longest a cached progress answer is served: the bound on staleness for changes made
    /// outside the server (SQL by hand, a replica of an older version during a rolling upgrade).
    #[arg(long, env = "LMS_PROGRESS_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub progress_cache_ttl: Duration,
}

/// Settings of token verification.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Required `iss` claim.
    #[arg(long, env = "LMS_JWT_ISSUER", default_value = DEFAULT_JWT_ISSUER, global = true)]
    pub jwt_issuer: String,

    /// Required `aud` claim.
    #[arg(long, env = "LMS_JWT_AUDIENCE", default_value = DEFAULT_JWT_AUDIENCE, global = true)]
    pub jwt_audience: String,

    /// PEM public key of the production token issuer (disables the development HS256 key).
    #[arg(long, env = "LMS_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// Algorithm of `--jwt-public-key`.
    #[arg(
        long,
        env = "LMS_JWT_ALGORITHM",
        default_value = "rs256",
        global = true
    )]
    pub jwt_algorithm: PublicKeyAlgorithm,

    /// JWKS file of the production token issuer (disables the development HS256 key).
    #[arg(long, env = "LMS_JWKS_FILE", global = true)]
    pub jwks_file: Option<PathBuf>,

    /// Longest a token may still be valid when presented (`exp` minus now): a token minted to
    /// last longer (a leaked "never expires" token) is refused.
    #[arg(long, env = "LMS_JWT_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration, global = true)]
    pub jwt_max_lifetime: Duration,

    /// JWKS URL of the production token issuer (disables the development HS256 key); fetched at
    /// start, every 15 minutes, and again on an unknown `kid` (at most once per cooldown).
    #[arg(long, env = "LMS_JWKS_URL", global = true)]
    pub jwks_url: Option<String>,

    /// OIDC issuer URL: its `/.well-known/openid-configuration` names the JWKS URL (`jwks_uri`).
    #[arg(long, env = "LMS_OIDC_ISSUER_URL", global = true)]
    pub oidc_issuer_url: Option<String>,

    /// Least time between two key-set fetches caused by tokens with an unknown `kid`.
    #[arg(long, env = "LMS_JWKS_REFRESH_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub jwks_refresh_cooldown: Duration,

    /// Dotted claim path(s) holding role or group names, e.g. `realm_access.roles`,
    /// `resource_access.lms-api.roles`, `groups`; every path is read and the names joined.
    #[arg(
        long,
        env = "LMS_JWT_ROLES_CLAIM",
        value_delimiter = ',',
        default_value = "roles",
        global = true
    )]
    pub jwt_roles_claim: Vec<String>,

    /// Issuer group or role name mapped to an LMS role, as `name=role` (repeatable or
    /// comma-separated); names not mapped still count when they are LMS role names.
    #[arg(long, env = "LMS_JWT_ROLE_MAP", value_delimiter = ',', global = true)]
    pub jwt_role_map: Vec<String>,

    /// Dotted claim path naming the person (default `sub`).
    #[arg(
        long,
        env = "LMS_JWT_PERSON_CLAIM",
        default_value = "sub",
        global = true
    )]
    pub jwt_person_claim: String,

    /// What the person claim holds: the LMS person id, the person's `external_id` or email.
    #[arg(
        long,
        env = "LMS_JWT_PERSON_MATCH",
        default_value = "id",
        global = true
    )]
    pub jwt_person_match: PersonMatch,
}

/// What the person claim of a token is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PersonMatch {
    /// The LMS person id itself.
    Id,
    /// The person's `external_id` (an HR employee number).
    #[value(name = "external_id")]
    ExternalId,
    /// The person's email (case-insensitive; must be unique).
    Email,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// SQLite `synchronous` pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    /// Every commit is fsynced: an acknowledged write survives power loss.
    Full,
    /// WAL is fsynced at checkpoints: an acknowledged write survives a process crash.
    Normal,
}

/// Asymmetric algorithm of a configured PEM public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublicKeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    #[value(name = "eddsa")]
    EdDsa,
}

impl Config {
    /// Returns a configuration with every default, rooted at `data_dir`; used by tests and embedders.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            database_url: None,
            log_format: LogFormat::Pretty,
            telemetry: TelemetryConfig::default(),
            server: ServerConfig {
                listen: DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses"),
                no_migrate: false,
                cors_origins: Vec::new(),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                concurrency_limit: DEFAULT_CONCURRENCY_LIMIT,
                concurrency_per_connection: DEFAULT_CONCURRENCY_PER_CONNECTION,
                max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
                http2_stream_window: DEFAULT_HTTP2_STREAM_WINDOW,
                http2_connection_window: DEFAULT_HTTP2_CONNECTION_WINDOW,
                max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                streams_per_caller: DEFAULT_STREAMS_PER_CALLER,
                max_streams: DEFAULT_MAX_STREAMS,
                body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
                stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
                trusted_proxies: Vec::new(),
                tls: TlsConfig::default(),
            },
            database: DatabaseConfig {
                db_max_connections: None,
                group_commit_flushers: None,
                db_acquire_timeout: DEFAULT_DB_ACQUIRE_TIMEOUT,
                progress_cache_mb: DEFAULT_PROGRESS_CACHE_MB,
                progress_cache_ttl: DEFAULT_PROGRESS_CACHE_TTL,
                sqlite_synchronous: SqliteSynchronous::Full,
                database_read_url: Vec::new(),
                read_max_lag: DEFAULT_READ_MAX_LAG,
            },
            auth: AuthConfig {
                jwt_issuer: DEFAULT_JWT_ISSUER.to_owned(),
                jwt_audience: DEFAULT_JWT_AUDIENCE.to_owned(),
                jwt_public_key: None,
                jwt_algorithm: PublicKeyAlgorithm::Rs256,
                jwks_file: None,
                jwt_max_lifetime: DEFAULT_JWT_MAX_LIFETIME,
                jwks_url: None,
                oidc_issuer_url: None,
                jwks_refresh_cooldown: Duration::from_secs(30),
                jwt_roles_claim: vec!["roles".to_owned()],
                jwt_role_map: Vec::new(),
                jwt_person_claim: "sub".to_owned(),
                jwt_person_match: PersonMatch::Id,
            },
            certification: CertificationConfig::default(),
            partitions: PartitionConfig::default(),
        }
    }

    /// Returns the database URL: the configured one, or `lms.db` in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("lms.db").display()
            ),
        }
    }
}
