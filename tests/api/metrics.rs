//! Metrics, request ids and traces, as an operator sees them: the Prometheus endpoint scraped over
//! HTTP after real calls, `x-request-id` in response metadata, and (through the real binary) JSON
//! log lines that carry the request id, the caller and the caller's W3C trace, with the spans
//! exported over OTLP to a local collector.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use lms::pb::{CreateOrganizationRequest, GetOrganizationRequest, Organization, OrganizationKind};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;

use crate::helpers::{
    TestDatabase, lms_binary, person_record, spawn_app, spawn_app_with, test_config, with_token,
};

const CREATE: &str = "/lms.v1.OrganizationService/CreateOrganization";

/// Returns the body of `GET /metrics` at `addr`.
pub(crate) async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Returns the value of the series `name` whose labels include every one of `labels`, or 0.
pub(crate) fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

fn organization(name: &str) -> CreateOrganizationRequest {
    CreateOrganizationRequest {
        organization: Some(Organization {
            name: name.to_owned(),
            kind: OrganizationKind::Ministry.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Adds people with `external_ids` to a new agency (each one a feed event).
async fn add_people(app: &crate::helpers::TestApp, external_ids: &[&str]) {
    let code = format!("AG-{}", external_ids.join("-"));
    app.create_organization(&code, OrganizationKind::Agency, None, Some(&code))
        .await;
    let people = external_ids
        .iter()
        .map(|external_id| person_record(external_id, &code))
        .collect();
    app.people
        .clone()
        .batch_upsert_people(app.admin(lms::pb::BatchUpsertPeopleRequest {
            people,
            request_id: String::new(),
        }))
        .await
        .expect("upsert people");
}

#[tokio::test]
async fn metrics_are_off_unless_a_listen_address_is_set() {
    let (app, _database) = spawn_app().await;
    assert_eq!(app.metrics_addr, None);
}

#[tokio::test]
async fn a_scrape_after_real_calls_shows_them_counted_and_timed() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app_with(config).await;
    let metrics = app.metrics_addr.expect("a metrics listener");

    let before = scrape(metrics).await;
    let mut organizations = app.organizations.clone();
    for name in ["Ministry of Works", "Ministry of Health"] {
        organizations
            .create_organization(app.admin(organization(name)))
            .await
            .expect("create");
    }
    let refused = organizations
        .create_organization(app.admin(organization("")))
        .await
        .expect_err("an empty name is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let after = scrape(metrics).await;

    let calls = |text: &str, code: &str| {
        sample(
            text,
            "lms_rpc_calls_total",
            &[("method", CREATE), ("code", code)],
        )
    };
    assert_eq!(calls(&after, "OK") - calls(&before, "OK"), 2.0);
    assert_eq!(
        calls(&after, "INVALID_ARGUMENT") - calls(&before, "INVALID_ARGUMENT"),
        1.0
    );
    let timed = |text: &str| {
        sample(
            text,
            "lms_rpc_duration_seconds_count",
            &[("method", CREATE)],
        )
    };
    assert_eq!(timed(&after) - timed(&before), 3.0);
    let seconds = sample(
        &after,
        "lms_rpc_duration_seconds_sum",
        &[("method", CREATE)],
    );
    assert!(seconds > 0.0, "latency recorded: {seconds}");
    assert_eq!(
        sample(&after, "lms_rpc_in_flight", &[("method", CREATE)]),
        0.0,
        "nothing is left in flight"
    );
    // Two people joined: two events, and the feed's head moved past them.
    let head = |text: &str| sample(text, "lms_outbox_head_cursor", &[]);
    let head_before = head(&after);
    add_people(&app, &["M-1", "M-2"]).await;
    let moved = scrape(metrics).await;
    assert!(head(&moved) >= head_before + 2.0, "{moved}");
    assert!(sample(&after, "lms_db_pool_max", &[]) >= 1.0);
    assert!(sample(&after, "lms_db_pool_connections", &[]) >= 1.0);
    assert!(
        sample(&after, "lms_db_write_wait_seconds_count", &[])
            > sample(&before, "lms_db_write_wait_seconds_count", &[]),
        "write transactions waited (even for zero seconds) and were counted"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_open_feed_stream_is_seen_as_a_watcher_and_an_open_stream() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app_with(config).await;
    let metrics = app.metrics_addr.expect("a metrics listener");

    let mut events = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone());
    let mut stream = events
        .watch_events(app.admin(lms::pb::WatchEventsRequest::default()))
        .await
        .expect("watch")
        .into_inner();
    add_people(&app, &["W-1"]).await;
    // The event reached the watcher: its stream is open and registered.
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event in time")
        .expect("stream")
        .expect("an event");
    let text = scrape(metrics).await;
    assert_eq!(sample(&text, "lms_feed_watchers", &[]), 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "lms_streams_open",
            &[("method", "/lms.v1.EventService/WatchEvents")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "lms_rpc_in_flight",
            &[("method", "/lms.v1.EventService/WatchEvents")]
        ),
        1.0
    );
    drop(stream);
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_is_echoed_generated_or_replaced_on_success_and_on_error() {
    let (app, _database) = spawn_app().await;
    let token = app.admin_token();
    let mut organizations = app.organizations.clone();
    let created = app
        .create_organization("Ministry", OrganizationKind::Ministry, None, None)
        .await;

    let get = |id: &str, request_id: Option<&str>| {
        let mut request = with_token(GetOrganizationRequest { id: id.to_owned() }, &token);
        if let Some(request_id) = request_id {
            request
                .metadata_mut()
                .insert("x-request-id", MetadataValue::try_from(request_id).unwrap());
        }
        request
    };

    let echoed = organizations
        .get_organization(get(&created.id, Some("hr-sync-42/7")))
        .await
        .expect("get");
    assert_eq!(
        echoed.metadata().get("x-request-id").unwrap(),
        "hr-sync-42/7"
    );

    let generated = organizations
        .get_organization(get(&created.id, None))
        .await
        .expect("get");
    let id = generated.metadata().get("x-request-id").expect("an id");
    let id = uuid::Uuid::parse_str(id.to_str().unwrap()).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);

    let too_long = "x".repeat(129);
    let replaced = organizations
        .get_organization(get(&created.id, Some(&too_long)))
        .await
        .expect("get");
    let id = replaced.metadata().get("x-request-id").expect("an id");
    assert!(
        uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok(),
        "{id:?}"
    );

    let missing = uuid::Uuid::now_v7().to_string();
    let refused = organizations
        .get_organization(get(&missing, Some("lookup-404")))
        .await
        .expect_err("no such organisation");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    assert_eq!(
        refused.metadata().get("x-request-id").unwrap(),
        "lookup-404"
    );
    app.stop().await;
}

/// A local OTLP/HTTP collector: every request body posted to `/v1/traces` goes to the channel.
async fn start_collector() -> (SocketAddr, mpsc::UnboundedReceiver<Bytes>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let sender = sender.clone();
                    async move {
                        if request.uri().path() == "/v1/traces" {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let _ = sender.send(body);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, receiver)
}

/// Returns the `lms` command over `data_dir`, with no setting of the test environment.
fn lms(data_dir: &std::path::Path) -> tokio::process::Command {
    let mut command = lms_binary();
    command.arg("--data-dir").arg(data_dir);
    command
}

/// Reads `lines` until one contains `needle`; returns it (the server's output is the evidence).
async fn line_containing(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
    seen: &mut Vec<String>,
) -> String {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read the server's output") {
            seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("the line in time");
    found.unwrap_or_else(|| {
        panic!(
            "no line with {needle}; the server wrote:\n{}",
            seen.join("\n")
        )
    })
}

#[tokio::test]
async fn log_lines_carry_request_id_caller_and_trace_and_spans_reach_the_collector() {
    let data = tempfile::tempdir().unwrap();
    let (collector, mut traces) = start_collector().await;
    let token = lms(data.path())
        .args(["token", "--subject", "ops-admin-7", "--role", "admin"])
        .output()
        .await
        .expect("lms token");
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let mut server = lms(data.path())
        .args(["--log-format", "json", "--listen", "127.0.0.1:0"])
        .arg("--otlp-endpoint")
        .arg(format!("http://{collector}"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lms");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let serving = line_containing(&mut lines, "serving gRPC", &mut seen).await;
    let serving: serde_json::Value = serde_json::from_str(&serving).expect("a JSON log line");
    let address = serving["address"].as_str().expect("the address").to_owned();

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut organizations =
        lms::pb::organization_service_client::OrganizationServiceClient::new(channel);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = with_token(organization("Ministry of Finance"), &token);
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-request-id",
        MetadataValue::from_static("import-2026-12-03"),
    );
    metadata.insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-00f067aa0ba902b7-01")).unwrap(),
    );
    organizations
        .create_organization(request)
        .await
        .expect("create");

    let finished = line_containing(&mut lines, "rpc finished", &mut seen).await;
    let finished: serde_json::Value = serde_json::from_str(&finished).unwrap();
    let span = &finished["span"];
    assert_eq!(span["method"], CREATE, "{finished}");
    assert_eq!(span["request_id"], "import-2026-12-03", "{finished}");
    assert_eq!(span["subject"], "ops-admin-7", "{finished}");
    assert_eq!(span["trace_id"], trace_id, "{finished}");
    assert_eq!(finished["grpc_status"], "OK", "{finished}");
    let latency = finished["latency_ms"].as_f64().expect("a latency");
    assert!(latency > 0.0, "{finished}");

    // SIGTERM: the server drains, and dropping its telemetry flushes the spans still batched.
    let stopped = tokio::process::Command::new("kill")
        .args(["-TERM", &server.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(stopped.success());
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let wanted = hex(trace_id);
    let mut exported = false;
    while let Ok(Some(body)) = tokio::time::timeout(Duration::from_secs(10), traces.recv()).await {
        if body.windows(wanted.len()).any(|window| window == wanted) {
            exported = true;
            break;
        }
    }
    assert!(exported, "no exported span carries the caller's trace id");
}

#[tokio::test]
async fn pretty_logs_written_to_a_pipe_have_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let mut server = lms(data.path())
        .args(["--log-format", "pretty", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lms");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let serving = line_containing(&mut lines, "serving gRPC", &mut seen).await;
    assert!(!serving.contains('\u{1b}'), "{serving:?}");
    assert!(seen.iter().all(|line| !line.contains('\u{1b}')), "{seen:?}");
    server.kill().await.unwrap();
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn public_calls_over_the_rate_limit_are_counted_as_shed() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.certification.verify_rate_per_second = 1;
    config.certification.verify_burst = 2;
    let app = spawn_app_with(config).await;
    let metrics = app.metrics_addr.expect("a metrics listener");
    let mut certification =
        lms::pb::certification_service_client::CertificationServiceClient::new(app.channel.clone());
    let mut refused = 0;
    for _ in 0..5 {
        // A public method: no token.
        match certification
            .get_issuer_keys(lms::pb::GetIssuerKeysRequest::default())
            .await
        {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 2,
        "a burst of 2 at 1/s lets at most 3 of 5 through"
    );
    let text = scrape(metrics).await;
    assert_eq!(
        sample(&text, "lms_rpc_shed_total", &[("reason", "public_rate")]),
        f64::from(refused),
        "{text}"
    );
    app.stop().await;
}
