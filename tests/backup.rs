//! Backup and restore with the real `lms` binary (docs/backups.md): a backup taken while people
//! are being written, a restore, then the audit chain and the feed read back, and an HR system's
//! resume tokens from before and after the backup refused with FEED_HISTORY_CHANGED.
//!
//! SQLite by default (`lms backup`, `lms restore`); PostgreSQL when `LMS_TEST_DATABASE_URL` is set
//! (`pg_dump -Fc`, `pg_restore` into a new database, `lms rotate-feed-history`). Databases made
//! for the test are dropped at the end.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use lms::pb::{
    self, audit_service_client::AuditServiceClient, event_service_client::EventServiceClient,
    organization_service_client::OrganizationServiceClient,
    person_service_client::PersonServiceClient,
};
use sea_orm::{ConnectionTrait as _, Database};
use tokio::process::{Child, Command};
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt as _;

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_lms");
/// Longest wait for a started server to answer SERVING.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// `lms` with the test's data dir and database and no inherited `LMS_*` setting.
fn lms(data_dir: &Path, database_url: &str) -> Command {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LMS_") {
            command.env_remove(name);
        }
    }
    command
        .env("LMS_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion; panics with its output unless it succeeds. Returns stdout.
async fn run(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A running `lms serve`.
struct Server {
    child: Child,
    channel: Channel,
}

impl Server {
    async fn start(data_dir: &Path, database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(data_dir.join(format!("server-{port}.log"))).unwrap();
        let mut child = lms(data_dir, database_url)
            .arg("serve")
            .env("LMS_LISTEN", addr.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lms serve");
        let started = Instant::now();
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the server exited; see {}",
                data_dir.display()
            );
            if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            {
                let health = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest::default())
                    .await;
                if matches!(&health, Ok(answer) if answer.get_ref().status() == ServingStatus::Serving)
                {
                    return Self { child, channel };
                }
            }
            assert!(started.elapsed() < START_DEADLINE, "server not SERVING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop the server");
    }
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn person(external_id: &str) -> pb::PersonRecord {
    pb::PersonRecord {
        external_id: external_id.to_owned(),
        full_name: format!("Officer {external_id}"),
        email: format!("{}@agency.gov.my", external_id.to_lowercase()),
        organization_external_code: "KD".to_owned(),
        sector: pb::Sector::Public.into(),
        ..Default::default()
    }
}

async fn upsert(channel: &Channel, token: &str, prefix: &str, count: usize) {
    PersonServiceClient::new(channel.clone())
        .batch_upsert_people(authorized(
            pb::BatchUpsertPeopleRequest {
                people: (0..count)
                    .map(|index| person(&format!("{prefix}-{index:03}")))
                    .collect(),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .expect("upsert people");
}

/// Reads the feed from `request` until caught up.
async fn read_feed(
    channel: &Channel,
    token: &str,
    request: pb::WatchEventsRequest,
) -> Result<Vec<pb::DomainEvent>, tonic::Status> {
    let mut stream = EventServiceClient::new(channel.clone())
        .watch_events(authorized(
            pb::WatchEventsRequest {
                until_caught_up: true,
                ..request
            },
            token,
        ))
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

/// Returns the reason and metadata of a FAILED_PRECONDITION.
fn refusal(status: &tonic::Status) -> (String, HashMap<String, String>) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("resynchronise"),
        "{}",
        status.message()
    );
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    (info.reason, info.metadata)
}

/// For PostgreSQL: a database made for the test, dropped at the end.
struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    async fn create(admin_url: &str, suffix: &str) -> Self {
        let base = admin_url.split('?').next().unwrap();
        let (server, admin_database) = base.rsplit_once('/').expect("database URL has a path");
        let name = format!(
            "{admin_database}_backup_{}_{suffix}",
            uuid::Uuid::new_v4().simple()
        );
        let admin = Database::connect(admin_url)
            .await
            .expect("PostgreSQL answers");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        admin.close().await.ok();
        Self {
            admin_url: admin_url.to_owned(),
            url: format!("{server}/{name}"),
            name,
        }
    }

    async fn drop_database(self) {
        if let Ok(admin) = Database::connect(self.admin_url.as_str()).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

#[tokio::test]
async fn a_restored_backup_keeps_its_audit_chain_and_refuses_cursors_of_the_old_feed() {
    let temp_dir = tempfile::tempdir().unwrap();
    let data_dir = temp_dir.path().to_path_buf();
    let postgres_admin = std::env::var("LMS_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let original = match &postgres_admin {
        Some(admin) => Some(PostgresDatabase::create(admin, "original").await),
        None => None,
    };
    let url = match &original {
        Some(database) => database.url.clone(),
        None => format!("sqlite://{}?mode=rwc", data_dir.join("lms.db").display()),
    };

    let server = Server::start(&data_dir, &url).await;
    let token = |role: &str, subject: &str| {
        let mut command = lms(&data_dir, &url);
        command.args(["token", "--role", role, "--subject", subject]);
        run(command, "lms token")
    };
    let admin = token("admin", "backup-admin").await.trim().to_owned();
    let hr = token("hr_service", "hr-system").await.trim().to_owned();
    OrganizationServiceClient::new(server.channel.clone())
        .create_organization(authorized(
            pb::CreateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: "Ministry of Digital".to_owned(),
                    kind: pb::OrganizationKind::Ministry.into(),
                    external_code: "KD".to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("create organisation");
    upsert(&server.channel, &admin, "FIRST", 20).await;
    let before_backup = read_feed(&server.channel, &hr, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    assert_eq!(before_backup.len(), 20);
    let old_history = before_backup[0].history.clone();
    let token_before_backup = before_backup.last().unwrap().resume_token.clone();

    // A writer keeps importing people while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (channel, admin, stop, rounds) = (
            server.channel.clone(),
            admin.clone(),
            stop.clone(),
            rounds.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let round = rounds.load(Ordering::SeqCst);
                upsert(&channel, &admin, &format!("W{round:04}"), 10).await;
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let wait_rounds = |at_least: usize| {
        let rounds = rounds.clone();
        async move {
            while rounds.load(Ordering::SeqCst) < at_least {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_rounds(2).await;
    let backup_file = data_dir.join("backup.dump");
    let backup = match &original {
        Some(database) => {
            let mut command = Command::new("pg_dump");
            command
                .args(["-Fc", "-f"])
                .arg(&backup_file)
                .arg(&database.url);
            command
        }
        None => {
            let mut command = lms(&data_dir, &url);
            command.arg("backup").arg("--to").arg(&backup_file);
            command
        }
    };
    let rounds_at_backup_start = rounds.load(Ordering::SeqCst);
    let output = run(backup, "the backup").await;
    let rounds_at_backup_end = rounds.load(Ordering::SeqCst);
    if original.is_none() {
        assert!(output.contains("integrity ok"), "{output}");
    }
    wait_rounds(rounds_at_backup_end + 2).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    eprintln!(
        "backup: writer rounds {rounds_at_backup_start}..{rounds_at_backup_end} while it ran, {} in all",
        rounds.load(Ordering::SeqCst)
    );

    // The HR system followed the feed up to after the backup.
    let original_feed = read_feed(&server.channel, &hr, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    let token_after_backup = original_feed.last().unwrap().resume_token.clone();
    let head_after_backup = original_feed.last().unwrap().cursor;
    server.stop().await;

    // Restore.
    let restored = match (&postgres_admin, &original) {
        (Some(admin_url), Some(_)) => {
            let restored = PostgresDatabase::create(admin_url, "restored").await;
            let mut command = Command::new("pg_restore");
            command
                .args(["--no-owner", "--exit-on-error", "-d"])
                .arg(&restored.url)
                .arg(&backup_file);
            run(command, "pg_restore").await;
            let mut command = lms(&data_dir, &restored.url);
            command.arg("rotate-feed-history");
            let output = run(command, "lms rotate-feed-history").await;
            assert!(output.contains(&old_history), "{output}");
            Some(restored)
        }
        _ => {
            let mut command = lms(&data_dir, &url);
            command.arg("restore").arg("--from").arg(&backup_file);
            let output = run(command, "lms restore").await;
            assert!(output.contains("replaced by"), "{output}");
            None
        }
    };
    let restored_url = restored
        .as_ref()
        .map_or_else(|| url.clone(), |database| database.url.clone());
    let server = Server::start(&data_dir, &restored_url).await;

    let chain = AuditServiceClient::new(server.channel.clone())
        .verify_audit_chain(authorized(pb::VerifyAuditChainRequest {}, &admin))
        .await
        .expect("verify the audit chain")
        .into_inner();
    assert!(chain.valid, "audit chain after restore: {chain:?}");
    assert!(chain.entries_checked > 0);

    // A fresh watch reads the restored feed: a gap-free prefix of the original, in a new history,
    // that agrees with the restored people (the backup is one consistent snapshot).
    let restored_feed = read_feed(&server.channel, &hr, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    let restored_head = restored_feed.len() as i64;
    assert!(restored_head >= 20 + 10 * rounds_at_backup_start as i64);
    assert!(
        restored_head < head_after_backup,
        "writes after the backup are not in it"
    );
    let new_history = restored_feed[0].history.clone();
    assert_ne!(new_history, old_history);
    for (index, (restored, original)) in restored_feed.iter().zip(&original_feed).enumerate() {
        assert_eq!(restored.cursor, index as i64 + 1);
        assert_eq!(
            restored.id, original.id,
            "the restored feed is a prefix of the old one"
        );
        assert_eq!(restored.history, new_history);
    }
    let direct = Database::connect(restored_url.as_str()).await.unwrap();
    let people: i64 = direct
        .query_one_raw(sea_orm::Statement::from_string(
            direct.get_database_backend(),
            "SELECT COUNT(*) AS n FROM people",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    direct.close().await.ok();
    let created = restored_feed
        .iter()
        .filter(|event| event.r#type == "person.created")
        .count() as i64;
    assert_eq!(
        people, created,
        "people and their events were backed up together"
    );

    // The HR system's tokens from before and after the backup both belong to the old history.
    for old_token in [&token_after_backup, &token_before_backup] {
        let status = read_feed(
            &server.channel,
            &hr,
            pb::WatchEventsRequest {
                resume_token: old_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        let (reason, metadata) = refusal(&status);
        assert_eq!(reason, "FEED_HISTORY_CHANGED");
        assert_eq!(metadata["history"], new_history);
        assert_eq!(metadata["head"], restored_head.to_string());
    }
    // A bare cursor from after the backup is past the restored head.
    let status = read_feed(
        &server.channel,
        &hr,
        pb::WatchEventsRequest {
            after_cursor: head_after_backup,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let (reason, metadata) = refusal(&status);
    assert_eq!(reason, "CURSOR_BEYOND_HEAD");

    // Resynchronised, the HR system follows the new history from the head it was given.
    upsert(&server.channel, &admin, "AFTER", 5).await;
    let resumed = read_feed(
        &server.channel,
        &hr,
        pb::WatchEventsRequest {
            resume_token: metadata["head_resume_token"].clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(resumed.len(), 5);
    assert_eq!(resumed[0].cursor, restored_head + 1);
    assert!(
        resumed
            .iter()
            .all(|event| event.payload_json.contains("AFTER-"))
    );
    server.stop().await;

    if let Some(database) = restored {
        database.drop_database().await;
    }
    if let Some(database) = original {
        database.drop_database().await;
    }
}
