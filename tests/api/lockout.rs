//! No lockout: connections that open calls and never send a body, idle streams and thousands of
//! watchers must not stop other callers or health probes, nor exhaust the database pool.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{self, OrganizationKind, event_service_client::EventServiceClient};
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{
    TestApp, TestDatabase, error_reason, person_record, spawn_app, spawn_app_with, test_config,
    with_token,
};
use crate::people::{commit_message, person_message};

/// Opens a raw HTTP/2 connection to the server.
pub(crate) async fn raw_connection(app: &TestApp) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// Starts a call to `path` and never sends its body; keep the returned stream to hold it open.
pub(crate) async fn bodyless_call(
    client: &mut h2::client::SendRequest<Bytes>,
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut request = http::Request::post(format!("http://{}{path}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    *client = client.clone().ready().await.unwrap();
    client
        .send_request(request.body(()).unwrap(), false)
        .unwrap()
}

/// The grpc-status of a response (headers of a trailers-only answer, else the trailers).
async fn grpc_status(response: h2::client::ResponseFuture) -> Option<String> {
    let response = response.await.ok()?;
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().ok().map(str::to_owned);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.ok()?;
    }
    let trailers = body.trailers().await.ok()??;
    trailers
        .get("grpc-status")
        .and_then(|status| status.to_str().ok())
        .map(str::to_owned)
}

async fn health(app: &TestApp) -> ServingStatus {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn two_hundred_connections_of_bodyless_streams_lock_no_one_out() {
    let (app, _database) = spawn_app().await;
    let mallory = app.token("mallory", &[Role::Admin], None);
    let paths = [
        "/lms.v1.OrganizationService/ListOrganizations",
        "/lms.v1.PersonService/ImportPeople",
    ];
    // 200 connections x 16 streams: half without a token, half with one caller's valid token.
    let mut held = Vec::new();
    let mut mallory_unary = Vec::new();
    for connection in 0..200 {
        let mut client = raw_connection(&app).await;
        let token = (connection % 2 == 1).then_some(mallory.as_str());
        for stream in 0..16 {
            let path = paths[stream % 2];
            let (response, body) = bodyless_call(&mut client, &app, path, token).await;
            if token.is_some() && stream % 2 == 0 {
                mallory_unary.push(response);
            }
            held.push((client.clone(), body));
        }
    }
    // While all of that is open, another caller and a health probe are served at once.
    let started = Instant::now();
    app.create_organization("Ministry", OrganizationKind::Ministry, None, None)
        .await;
    assert_eq!(health(&app).await, ServingStatus::Serving);
    let served_in = started.elapsed();
    assert!(
        served_in < Duration::from_secs(2),
        "served in {served_in:?}"
    );

    // The held unary calls end by themselves once their body has been idle too long.
    let mut ended = 0;
    for response in mallory_unary {
        let status = tokio::time::timeout(Duration::from_secs(20), grpc_status(response))
            .await
            .expect("an idle unary call is ended by the server");
        assert!(
            matches!(status.as_deref(), Some("4" | "8")),
            "DEADLINE_EXCEEDED (idle body) or RESOURCE_EXHAUSTED (over the caller's share): {status:?}"
        );
        ended += 1;
    }
    assert!(ended > 0);
    app.create_organization("Ministry 2", OrganizationKind::Ministry, None, None)
        .await;
    assert_eq!(health(&app).await, ServingStatus::Serving);
    eprintln!(
        "lockout: {} streams opened on 200 connections ({ended} of one caller's unary calls ended or shed); another caller served in {served_in:?}",
        held.len()
    );
    drop(held);
}

#[tokio::test]
async fn streams_are_capped_per_caller_and_idle_ones_are_ended() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.streams_per_caller = 2;
    config.server.stream_idle_timeout = Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    app.create_organization("Ministry", OrganizationKind::Ministry, None, Some("MOF"))
        .await;
    let token = app.admin_token();
    let open_import = |token: String| {
        let (sender, receiver) = mpsc::channel::<pb::ImportPeopleRequest>(4);
        let mut people = app.people.clone();
        let call = tokio::spawn(async move {
            people
                .import_people(with_token(ReceiverStream::new(receiver), &token))
                .await
        });
        (sender, call)
    };
    let (first_sender, first) = open_import(token.clone());
    first_sender
        .send(person_message(person_record("E-1", "MOF")))
        .await
        .unwrap();
    let (_second_sender, second) = open_import(token.clone());
    // Wait until both hold their slots: a third from the same caller is then refused.
    let third = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (sender, call) = open_import(token.clone());
            sender.send(commit_message(0)).await.ok();
            match call.await.unwrap() {
                Err(status) if status.code() == Code::ResourceExhausted => return status,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("a third stream of one caller is refused");
    assert!(
        third.message().contains("one caller"),
        "{}",
        third.message()
    );
    // Another caller is not affected.
    let other = app.token("hr-sync", &[Role::HrService], None);
    let (sender, call) = open_import(other);
    sender.send(commit_message(0)).await.unwrap();
    call.await.unwrap().expect("another caller opens a stream");

    // The idle streams are ended by the server, saying how far they got.
    for call in [first, second] {
        let status = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("an idle stream is ended by the server")
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert_eq!(error_reason(&status), "IMPORT_NOT_COMMITTED");
    }
    drop(first_sender);
    let (sender, call) = open_import(token);
    sender.send(commit_message(0)).await.unwrap();
    call.await.unwrap().expect("slots are free again");
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn thousands_of_idle_watchers_share_one_database_reader() {
    let watchers: usize = std::env::var("LMS_TEST_WATCHERS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(2_000);
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.streams_per_caller = watchers + 10;
    let app = spawn_app_with(config).await;
    app.create_organization("Ministry", OrganizationKind::Ministry, None, Some("MOF"))
        .await;
    let before = resident_kib();
    // 150 streams per connection, under the server's 200.
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(150) {
        channels.push(
            tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let token = app.admin_token();
    let mut streams = Vec::with_capacity(watchers);
    for index in 0..watchers {
        let mut client = EventServiceClient::new(channels[index / 150].clone());
        let stream = client
            .watch_events(with_token(pb::WatchEventsRequest::default(), &token))
            .await
            .expect("a watcher opens")
            .into_inner();
        streams.push(stream);
    }
    // All idle: ordinary calls are served at once, the pool is free.
    let started = Instant::now();
    for index in 0..20 {
        app.people
            .clone()
            .get_person(app.admin(pb::GetPersonRequest {
                id: uuid::Uuid::new_v4().to_string(),
            }))
            .await
            .map(|_| ())
            .or_else(|status| {
                (status.code() == Code::NotFound)
                    .then_some(())
                    .ok_or(status)
            })
            .unwrap_or_else(|status| panic!("call {index}: {status:?}"));
    }
    let twenty_calls = started.elapsed();
    let resident = resident_kib().saturating_sub(before);
    // One new event reaches every watcher.
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: vec![person_record("E-1", "MOF")],
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let delivered = futures::future::join_all(streams.iter_mut().map(|stream| async {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(Ok(event)) = stream.next().await {
                if event.r#type == "person.created" {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }))
    .await;
    let reached = delivered.iter().filter(|reached| **reached).count();
    eprintln!(
        "{watchers} idle watchers: 20 calls in {twenty_calls:?}, {resident} KiB resident more (server and clients in one process), event delivered to {reached}"
    );
    assert_eq!(reached, watchers, "every watcher gets the new event");
    assert!(
        twenty_calls < Duration::from_secs(5),
        "calls wait behind the watchers: {twenty_calls:?}"
    );
}

#[tokio::test]
async fn public_calls_are_limited_per_client_and_forwarded_addresses_count_only_from_trusted_proxies()
 {
    use lms::pb::certification_service_client::CertificationServiceClient;
    let keys = |app: &TestApp, forwarded: &str| {
        let mut client = CertificationServiceClient::new(app.channel.clone());
        let mut request = tonic::Request::new(pb::GetIssuerKeysRequest::default());
        request
            .metadata_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        async move { client.get_issuer_keys(request).await.map(|_| ()) }
    };
    // Direct clients: a forged X-Forwarded-For does not give a fresh bucket.
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.certification.verify_rate_per_second = 1;
    config.certification.verify_burst = 2;
    let app = spawn_app_with(config.clone()).await;
    keys(&app, "198.51.100.1").await.unwrap();
    keys(&app, "198.51.100.2").await.unwrap();
    let status = keys(&app, "198.51.100.3").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(error_reason(&status), "RATE_LIMITED");
    {
        use tonic_types::StatusExt as _;
        assert!(status.get_error_details().retry_info().is_some());
    }
    app.stop().await;

    // Behind a trusted proxy (the test's loopback): each forwarded client has its own bucket.
    config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let app = spawn_app_with(config).await;
    for _ in 0..2 {
        keys(&app, "198.51.100.1").await.unwrap();
    }
    assert_eq!(
        keys(&app, "198.51.100.1").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    keys(&app, "198.51.100.2")
        .await
        .expect("another client behind the same proxy has its own bucket");
    // A client forging a left-hand hop is still judged by the hop the proxy added.
    assert_eq!(
        keys(&app, "203.0.113.50, 198.51.100.1")
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
    app.stop().await;
}
