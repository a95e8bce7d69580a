//! Read replicas (`DATABASE_READ_URL`): refused on SQLite; on PostgreSQL, with the read URL on the
//! primary's own database (a "standby" with zero lag), writes answer with their commit position,
//! reads that carry it see the writes, routed reads are answered by the standby pool, and a
//! malformed position is refused. The real streaming standby is exercised by
//! deploy/standby-check.sh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lms::pb::{ListOrganizationsRequest, OrganizationKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::metadata::MetadataValue;

use crate::helpers::{TestDatabase, spawn_app_with, test_config};

const COMMIT_HEADER: &str = "lms-commit-lsn";
const MIN_HEADER: &str = "lms-min-lsn";

/// Returns the body of `GET /metrics` at `addr`.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    body.to_owned()
}

/// Returns the value of the series `name` with label `server="<server>"`, or 0.
fn sample(exposition: &str, name: &str, server: &str) -> f64 {
    let wanted = format!("server=\"{server}\"");
    exposition
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(&wanted))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

#[tokio::test]
async fn read_replicas_are_refused_on_sqlite() {
    let database = TestDatabase::fresh().await;
    if !database.url.starts_with("sqlite:") {
        return;
    }
    let mut config = test_config(&database);
    config.database.database_read_url = vec!["postgres://postgres@127.0.0.1:5432/standby".into()];
    let Err(error) = lms::App::build(config).await else {
        panic!("a SQLite server started with DATABASE_READ_URL");
    };
    let message = format!("{error:#}");
    assert!(
        message.contains("DATABASE_READ_URL") && message.contains("PostgreSQL"),
        "{message}"
    );
}

#[tokio::test]
async fn writes_answer_with_their_commit_position_and_reads_carrying_it_see_them() {
    let database = TestDatabase::fresh().await;
    if database.url.starts_with("sqlite:") {
        return;
    }
    let mut config = test_config(&database);
    config.database.database_read_url = vec![database.url.clone()];
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app_with(config).await;
    let metrics = app.metrics_addr.expect("metrics listener");

    // A write answers with the primary's WAL position after its commit.
    let mut organizations = app.organizations.clone();
    let created = organizations
        .create_organization(app.admin(lms::pb::CreateOrganizationRequest {
            organization: Some(lms::pb::Organization {
                name: "Ministry of Replicas".to_owned(),
                kind: OrganizationKind::Ministry.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create organization");
    let position = created
        .metadata()
        .get(COMMIT_HEADER)
        .expect("a write carries its commit position")
        .to_str()
        .unwrap()
        .to_owned();
    let (high, low) = position.split_once('/').expect("a WAL position");
    assert!(u32::from_str_radix(high, 16).is_ok() && u32::from_str_radix(low, 16).is_ok());
    let created = created.into_inner();

    // A read carrying the position sees the write, wherever it is served.
    let mut read = app.admin(ListOrganizationsRequest::default());
    read.metadata_mut().insert(
        MIN_HEADER,
        MetadataValue::try_from(position.as_str()).unwrap(),
    );
    let listed = organizations
        .list_organizations(read)
        .await
        .expect("list with a position")
        .into_inner();
    assert!(
        listed
            .organizations
            .iter()
            .any(|found| found.id == created.id),
        "the caller's own write is missing from its read"
    );
    // Reads answer without a commit position: they wrote nothing.
    let plain = organizations
        .list_organizations(app.admin(ListOrganizationsRequest::default()))
        .await
        .expect("list");
    assert!(plain.metadata().get(COMMIT_HEADER).is_none());

    // Once sampled, the standby serves routed reads, including ones carrying the position.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&scrape(metrics).await, "lms_db_standby_usable", "standby-0") < 1.0 {
        assert!(Instant::now() < deadline, "the standby never became usable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The position is judged against the standby's sampled replay position (every 500 ms), so
    // the first reads after the write may still go to the primary: within the deadline, one is
    // served by the standby, and every read, wherever served, sees the write.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = sample(
            &scrape(metrics).await,
            "lms_db_routed_reads_total",
            "standby-0",
        );
        let mut read = app.admin(ListOrganizationsRequest::default());
        read.metadata_mut().insert(
            MIN_HEADER,
            MetadataValue::try_from(position.as_str()).unwrap(),
        );
        let listed = organizations
            .list_organizations(read)
            .await
            .expect("list from the standby")
            .into_inner();
        assert!(
            listed
                .organizations
                .iter()
                .any(|found| found.id == created.id)
        );
        let after = sample(
            &scrape(metrics).await,
            "lms_db_routed_reads_total",
            "standby-0",
        );
        if after > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the read was never served by the standby ({before} -> {after})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A position the standby has not reached sends the read to the primary.
    let primary_before = sample(
        &scrape(metrics).await,
        "lms_db_routed_reads_total",
        "primary",
    );
    let mut read = app.admin(ListOrganizationsRequest::default());
    read.metadata_mut()
        .insert(MIN_HEADER, MetadataValue::from_static("FFFFFFFF/0"));
    organizations
        .list_organizations(read)
        .await
        .expect("list from the primary");
    let primary_after = sample(
        &scrape(metrics).await,
        "lms_db_routed_reads_total",
        "primary",
    );
    assert!(primary_after > primary_before);

    // A malformed position is refused, naming the header.
    let mut read = app.admin(ListOrganizationsRequest::default());
    read.metadata_mut()
        .insert(MIN_HEADER, MetadataValue::from_static("yesterday"));
    let refused = organizations
        .list_organizations(read)
        .await
        .expect_err("a malformed position is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&refused);
    let violations = details
        .bad_request()
        .expect("a BadRequest")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, MIN_HEADER);
    app.stop().await;
}
