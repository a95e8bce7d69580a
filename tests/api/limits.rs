//! Server limits and the browser path: message size, load shedding, gRPC-Web and CORS.

use std::time::Duration;

use lms::pb::{self, OrganizationKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use crate::helpers::{TestDatabase, person_record, spawn_app_with, test_config};

#[tokio::test]
async fn a_message_over_the_limit_is_refused_before_it_is_decoded() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.max_message_bytes = 4096;
    let app = spawn_app_with(config).await;
    let batch = pb::BatchUpsertPeopleRequest {
        people: (0..100)
            .map(|index| person_record(&format!("E{index}"), "MOF"))
            .collect(),
        request_id: String::new(),
    };
    let status = app
        .people
        .clone()
        .batch_upsert_people(app.admin(batch))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(app.audit_length().await, 0);
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_not_queued() {
    use crate::lockout::{bodyless_call, raw_connection};
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.concurrency_limit = 1;
    let app = spawn_app_with(config).await;

    // An authenticated unary call whose body never comes holds the only slot.
    let mut raw = raw_connection(&app).await;
    let mallory = app.token("mallory", &[lms::auth::Role::Admin], None);
    let (held, body) = bodyless_call(
        &mut raw,
        &app,
        "/lms.v1.OrganizationService/ListOrganizations",
        Some(&mallory),
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let result = app
                .organizations
                .clone()
                .list_organizations(app.admin(pb::ListOrganizationsRequest::default()))
                .await;
            match result {
                Err(status) => return status,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("a call beyond the limit is shed at once");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("concurrency limit"),
        "{}",
        status.message()
    );

    // Once the slot is free (the held call is reset), calls go through again.
    drop(body);
    drop(held);
    drop(raw);
    tokio::time::timeout(Duration::from_secs(10), async {
        while app
            .organizations
            .clone()
            .list_organizations(app.admin(pb::ListOrganizationsRequest::default()))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("served again once the slot is free");
}

/// Sends one raw HTTP/1.1 request and returns the whole response (the server closes after it).
async fn http1(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("the server answers")
            .unwrap();
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
        // A gRPC-Web body ends with its trailer frame; chunked encoding ends with 0\r\n\r\n.
        if response.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    response
}

#[tokio::test]
async fn browsers_call_over_grpc_web_with_cors_for_configured_origins() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.cors_origins = vec!["https://learn.example.gov.my".to_owned()];
    let app = spawn_app_with(config).await;
    app.create_organization(
        "Ministry of Digital",
        OrganizationKind::Ministry,
        None,
        None,
    )
    .await;

    let preflight = http1(
        app.addr,
        b"OPTIONS /lms.v1.OrganizationService/ListOrganizations HTTP/1.1\r\nHost: lms\r\n\
          Origin: https://learn.example.gov.my\r\nAccess-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: authorization,content-type,x-grpc-web\r\nConnection: close\r\n\r\n",
    )
    .await;
    let preflight = String::from_utf8_lossy(&preflight).to_lowercase();
    assert!(preflight.starts_with("http/1.1 200"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: https://learn.example.gov.my"),
        "{preflight}"
    );

    // An empty ListOrganizationsRequest framed for gRPC-Web: flag 0, length 0.
    let token = app.admin_token();
    let call = format!(
        "POST /lms.v1.OrganizationService/ListOrganizations HTTP/1.1\r\nHost: lms\r\n\
         Origin: https://learn.example.gov.my\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    );
    let mut bytes = call.into_bytes();
    bytes.extend_from_slice(&[0, 0, 0, 0, 0]);
    let response = http1(app.addr, &bytes).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("access-control-allow-origin: https://learn.example.gov.my")
    );
    assert!(
        text.contains("Ministry of Digital"),
        "the list came back: {text}"
    );
    assert!(
        text.contains("grpc-status:0"),
        "trailers in the body: {text}"
    );

    let other_origin = http1(
        app.addr,
        b"OPTIONS /lms.v1.OrganizationService/ListOrganizations HTTP/1.1\r\nHost: lms\r\n\
          Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&other_origin)
            .to_lowercase()
            .contains("access-control-allow-origin")
    );
}
