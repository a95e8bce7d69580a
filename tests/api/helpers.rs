//! Test harness: starts the real server in-process on an ephemeral port over a fresh database
//! (SQLite in a temp dir, or PostgreSQL when `LMS_TEST_DATABASE_URL` is set) and gives typed clients.

use std::{path::PathBuf, sync::LazyLock, time::Duration};

use lms::auth::{Role, token};
use lms::config::Config;
use lms::pb::{
    audit_service_client::AuditServiceClient,
    organization_service_client::OrganizationServiceClient,
    person_service_client::PersonServiceClient,
};
use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Request, transport::Channel};

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        lms::telemetry::init(lms::config::LogFormat::Pretty);
    }
});

/// Where a test's data lives; kept across a restart of the server.
pub(crate) struct TestDatabase {
    /// Data dir (SQLite file and dev signing key).
    pub(crate) data_dir: PathBuf,
    /// `DATABASE_URL` of the server.
    pub(crate) url: String,
    /// For PostgreSQL: the admin URL and the name of the database made for this test.
    postgres: Option<(String, String)>,
    _temp_dir: tempfile::TempDir,
}

impl TestDatabase {
    /// Makes a fresh, empty database for one test.
    pub(crate) async fn fresh() -> Self {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let data_dir = temp_dir.path().to_path_buf();
        let (url, postgres) = match std::env::var("LMS_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let (url, name) = create_postgres_database(&admin_url).await;
                (url, Some((admin_url, name)))
            }
            _ => (
                format!("sqlite://{}?mode=rwc", data_dir.join("lms.db").display()),
                None,
            ),
        };
        Self {
            data_dir,
            url,
            postgres,
            _temp_dir: temp_dir,
        }
    }

    /// Opens a direct connection, for checks behind the server's back.
    pub(crate) async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .expect("direct connection")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(admin_url.as_str()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop a test database; .ci/run drops leftovers");
        }
    }
}

/// Creates `<admin database>_<uuid>` beside the database named by `admin_url`; returns its URL and name.
async fn create_postgres_database(admin_url: &str) -> (String, String) {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let (server, admin_database) = base.rsplit_once('/').expect("database URL has a path");
    let name = format!("{admin_database}_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("LMS_TEST_DATABASE_URL is set but PostgreSQL does not answer there");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    (format!("{server}/{name}{query}"), name)
}

/// A running server and clients to call it.
pub(crate) struct TestApp {
    /// Bound address.
    pub(crate) addr: std::net::SocketAddr,
    /// The metrics endpoint's address, when `--metrics-listen` is set.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// The server's configuration.
    pub(crate) config: Config,
    /// `OrganizationService` client.
    pub(crate) organizations: OrganizationServiceClient<Channel>,
    /// `PersonService` client.
    pub(crate) people: PersonServiceClient<Channel>,
    /// `AuditService` client.
    pub(crate) audit: AuditServiceClient<Channel>,
    /// The channel, for other clients (health).
    pub(crate) channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Returns the configuration a test server runs with.
pub(crate) fn test_config(database: &TestDatabase) -> Config {
    let mut config = Config::with_data_dir(database.data_dir.clone());
    config.database_url = Some(database.url.clone());
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace = Duration::from_secs(5);
    config
}

/// Starts a server over a fresh database; returns it with the database (keep both alive).
pub(crate) async fn spawn_app() -> (TestApp, TestDatabase) {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    (app, database)
}

/// Starts a server over `database`.
pub(crate) async fn spawn_app_on(database: &TestDatabase) -> TestApp {
    spawn_app_with(test_config(database)).await
}

/// Starts a server with `config`.
pub(crate) async fn spawn_app_with(config: Config) -> TestApp {
    spawn_app_connecting(config, |addr| async move {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the test server")
    })
    .await
}

/// Starts a server with `config`; its clients use the channel `connect` opens to its address
/// (a TLS server needs a TLS channel).
pub(crate) async fn spawn_app_connecting<F, C>(config: Config, connect: F) -> TestApp
where
    F: FnOnce(std::net::SocketAddr) -> C,
    C: std::future::Future<Output = Channel>,
{
    LazyLock::force(&TRACING);
    let app = lms::App::build(config.clone())
        .await
        .expect("server builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let (shutdown, shutdown_signal) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = shutdown_signal.await;
    }));
    // The listener is bound already: connecting needs no sleep.
    let channel = connect(addr).await;
    TestApp {
        addr,
        metrics_addr,
        config,
        organizations: OrganizationServiceClient::new(channel.clone()),
        people: PersonServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel.clone()),
        channel,
        shutdown: Some(shutdown),
        handle: Some(handle),
    }
}

impl TestApp {
    /// Signs a token for `subject` with `roles` (and, for org admins, `organization`).
    pub(crate) fn token(
        &self,
        subject: &str,
        roles: &[Role],
        organization: Option<&str>,
    ) -> String {
        let request = token::TokenRequest {
            subject: subject.to_owned(),
            roles: roles.to_vec(),
            organization_id: organization.map(str::to_owned),
            ttl: Duration::from_secs(600),
        };
        token::sign_dev_token(&self.config.auth, &self.config.data_dir, &request)
            .expect("sign token")
    }

    /// Returns an admin token.
    pub(crate) fn admin_token(&self) -> String {
        self.token("admin-1", &[Role::Admin], None)
    }

    /// Wraps `message` in a request carrying an admin token.
    pub(crate) fn admin<T>(&self, message: T) -> Request<T> {
        with_token(message, &self.admin_token())
    }

    /// Asks the server to shut down and waits until it has.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Sends the shutdown signal without waiting; returns the server task.
    pub(crate) fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.handle.take().expect("server task")
    }

    /// Returns the number of audit entries, read through the API.
    pub(crate) async fn audit_length(&self) -> i64 {
        let response = self
            .audit
            .clone()
            .verify_audit_chain(self.admin(lms::pb::VerifyAuditChainRequest {}))
            .await
            .expect("verify chain")
            .into_inner();
        response.entries_checked
    }

    /// Creates an organisation as admin and returns it.
    pub(crate) async fn create_organization(
        &self,
        name: &str,
        kind: lms::pb::OrganizationKind,
        parent_id: Option<&str>,
        external_code: Option<&str>,
    ) -> lms::pb::Organization {
        self.organizations
            .clone()
            .create_organization(self.admin(lms::pb::CreateOrganizationRequest {
                organization: Some(lms::pb::Organization {
                    name: name.to_owned(),
                    kind: kind.into(),
                    parent_id: parent_id.unwrap_or_default().to_owned(),
                    external_code: external_code.unwrap_or_default().to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("create organization")
            .into_inner()
    }
}

/// A request of a candidacy transition or a certificate status change: each RPC has its own
/// message, all with `id`, `reason` and `etag`; tests build any of them from an id and a reason.
pub(crate) trait StateChange {
    /// Returns the request moving `id`, giving `reason`, with no etag.
    fn state_change(id: &str, reason: &str) -> Self;
}

macro_rules! impl_state_change {
    ($($message:ty),+ $(,)?) => {
        $(impl StateChange for $message {
            fn state_change(id: &str, reason: &str) -> Self {
                Self { id: id.to_owned(), reason: reason.to_owned(), etag: String::new() }
            }
        })+
    };
}

impl_state_change!(
    lms::pb::StartTrainingRequest,
    lms::pb::BeginSupervisedPracticeRequest,
    lms::pb::SubmitForAssessmentRequest,
    lms::pb::WithdrawCandidacyRequest,
    lms::pb::RevokeCandidacyRequest,
    lms::pb::RenewCertificateRequest,
    lms::pb::SuspendCertificateRequest,
    lms::pb::ReinstateCertificateRequest,
    lms::pb::RevokeCertificateRequest,
);

/// Wraps `message` in a request carrying `token`.
pub(crate) fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

/// Returns the field paths of the BadRequest detail of `status`.
pub(crate) fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Returns the ErrorInfo reason of `status`.
pub(crate) fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// Returns the value of `key` in the `ErrorInfo` metadata of `status`: what blocks the call.
pub(crate) fn error_metadata(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// Returns a person record for imports.
pub(crate) fn person_record(external_id: &str, organization_code: &str) -> lms::pb::PersonRecord {
    lms::pb::PersonRecord {
        external_id: external_id.to_owned(),
        full_name: format!("Officer {external_id}"),
        email: format!("{}@agency.gov.my", external_id.to_lowercase()),
        organization_external_code: organization_code.to_owned(),
        sector: lms::pb::Sector::Public.into(),
        ..Default::default()
    }
}

/// Returns a command running the real `lms` binary with none of the test environment's server
/// settings (`LMS_*`, `DATABASE_URL`, `OTEL_*`), so a test says every setting it relies on.
pub(crate) fn lms_binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lms"));
    for (name, _) in std::env::vars() {
        if name.starts_with("LMS_") || name == "DATABASE_URL" || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
}
