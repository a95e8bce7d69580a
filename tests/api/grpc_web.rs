//! gRPC-Web over HTTP/1.1, as browsers and Node backends call it: the CORS preflight and what
//! responses expose, and refusals that reach a client still writing a large request body.

use std::time::Duration;

use lms::pb;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{TestDatabase, person_record, spawn_app_with, test_config};

const ORIGIN: &str = "https://learn.example.gov.my";

/// Longest a test waits for the server to answer or to close a connection.
const PATIENCE: Duration = Duration::from_secs(10);

/// One HTTP/1.1 response: status code, headers (names lowercase) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Returns the values of header `name`, comma-separated lists split and trimmed, lowercase.
    fn list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .map(|item| item.trim().to_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// Returns the first value of header `name`.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Returns the gRPC status: from the headers of a trailers-only answer, else from the
    /// gRPC-Web trailer frame at the end of the body.
    fn grpc_status(&self) -> Option<String> {
        if let Some(status) = self.header("grpc-status") {
            return Some(status.to_owned());
        }
        // Frames: a flag byte (0x80 marks the trailers), a big-endian length, the bytes.
        let mut rest = self.body.as_slice();
        while rest.len() >= 5 {
            let length = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            let (flag, bytes) = (rest[0], rest.get(5..5 + length)?);
            if flag & 0x80 != 0 {
                return String::from_utf8_lossy(bytes)
                    .split("\r\n")
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("grpc-status"))
                    .map(|(_, value)| value.trim().to_owned());
            }
            rest = &rest[5 + length..];
        }
        None
    }
}

/// Reads one whole HTTP/1.1 response from `stream` (bytes of a next one stay in `buffer`).
async fn read_response(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> std::io::Result<Response> {
    async fn fill(
        stream: &mut (impl AsyncRead + Unpin),
        buffer: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    }

    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        fill(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(end) = find(buffer, b"\r\n") {
                    break end;
                }
                fill(stream, buffer).await?;
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("a chunk size");
            buffer.drain(..line_end + 2);
            if size == 0 {
                // No HTTP trailers here (gRPC-Web sends them in the body): the final CRLF.
                while buffer.len() < 2 {
                    fill(stream, buffer).await?;
                }
                buffer.drain(..2);
                break;
            }
            while buffer.len() < size + 2 {
                fill(stream, buffer).await?;
            }
            body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
        }
    } else {
        let length: usize = header("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            fill(stream, buffer).await?;
        }
        body.extend(buffer.drain(..length));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Returns the head of a gRPC-Web POST to `path` with a body of `length` bytes.
fn grpc_web_head(path: &str, token: Option<&str>, length: usize, extra: &str) -> Vec<u8> {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: lms\r\nOrigin: {ORIGIN}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n{authorization}{extra}\
         Content-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Frames `message` for gRPC-Web: flag 0, big-endian length, bytes.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut framed = Vec::with_capacity(bytes.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&bytes);
    framed
}

/// A BatchUpsertPeople request of about 1 MB, framed: a Node HR backend's nightly batch.
fn large_batch() -> Vec<u8> {
    let people = (0..8_000)
        .map(|index| {
            let mut record = person_record(&format!("E{index:05}"), "KD");
            record.full_name = format!("{:<100}", record.full_name);
            record
        })
        .collect();
    frame(&pb::BatchUpsertPeopleRequest {
        people,
        request_id: String::new(),
    })
}

#[tokio::test]
async fn a_preflight_allows_trace_headers_and_responses_expose_what_browser_code_reads() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.server.cors_origins = vec![ORIGIN.to_owned()];
    let app = spawn_app_with(config).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let mut buffer = Vec::new();

    // What connect-web's gRPC-Web transport sends, plus trace context and a request id.
    let asked = [
        "authorization",
        "content-type",
        "grpc-timeout",
        "x-grpc-web",
        "x-user-agent",
        "traceparent",
        "tracestate",
        "x-request-id",
        "lms-min-lsn",
    ];
    let preflight = format!(
        "OPTIONS /lms.v1.OrganizationService/ListOrganizations HTTP/1.1\r\nHost: lms\r\n\
         Origin: {ORIGIN}\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: {}\r\n\r\n",
        asked.join(",")
    );
    stream.write_all(preflight.as_bytes()).await.unwrap();
    let response = tokio::time::timeout(PATIENCE, read_response(&mut stream, &mut buffer))
        .await
        .expect("the preflight is answered")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        response
            .list("access-control-allow-methods")
            .contains(&"post".to_owned())
    );
    let allowed = response.list("access-control-allow-headers");
    for header in asked {
        assert!(
            allowed.contains(&header.to_owned()),
            "{header} is not allowed: {allowed:?}"
        );
    }
    assert!(response.header("access-control-max-age").is_some());

    // The call itself, on the same connection, with trace context and the caller's request id.
    let token = app.admin_token();
    let mut call = grpc_web_head(
        "/lms.v1.OrganizationService/ListOrganizations",
        Some(&token),
        5,
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
         X-Request-Id: browser-call-1\r\n",
    );
    call.extend_from_slice(&frame(&pb::ListOrganizationsRequest::default()));
    stream.write_all(&call).await.unwrap();
    let response = tokio::time::timeout(PATIENCE, read_response(&mut stream, &mut buffer))
        .await
        .expect("the call is answered")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.grpc_status().as_deref(), Some("0"));
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(response.header("x-request-id"), Some("browser-call-1"));
    let exposed = response.list("access-control-expose-headers");
    for header in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
        "lms-feed-history",
        "lms-feed-head",
        "lms-commit-lsn",
    ] {
        assert!(
            exposed.contains(&header.to_owned()),
            "{header} is not exposed: {exposed:?}"
        );
    }
}

#[tokio::test]
async fn a_refusal_over_http1_reaches_a_client_still_writing_a_large_body() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_with(test_config(&database)).await;
    let body = large_batch();
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();

    // No token: the server refuses from the headers alone, before it reads the body. The client
    // sends its head, then its body slowly, as a backend on a busy network does.
    let head = grpc_web_head(
        "/lms.v1.PersonService/BatchUpsertPeople",
        None,
        body.len(),
        "",
    );
    let sending = tokio::spawn(async move {
        writer.write_all(&head).await?;
        for chunk in body.chunks(64 * 1024) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            writer.write_all(chunk).await?;
        }
        writer.flush().await?;
        Ok::<_, std::io::Error>(writer)
    });
    let mut buffer = Vec::new();
    let response = tokio::time::timeout(PATIENCE, read_response(&mut reader, &mut buffer))
        .await
        .expect("the refusal comes")
        .expect("the refusal is read whole, not cut by a reset connection");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.grpc_status().as_deref(),
        Some("16"),
        "UNAUTHENTICATED"
    );
    let mut writer = tokio::time::timeout(PATIENCE, sending)
        .await
        .expect("the body is sent")
        .unwrap()
        .expect("the whole body is written: no EPIPE, no reset");

    // The body was read to its end, so the connection is still good for the next call.
    let token = app.admin_token();
    let mut call = grpc_web_head(
        "/lms.v1.OrganizationService/ListOrganizations",
        Some(&token),
        5,
        "",
    );
    call.extend_from_slice(&frame(&pb::ListOrganizationsRequest::default()));
    writer.write_all(&call).await.unwrap();
    let response = tokio::time::timeout(PATIENCE, read_response(&mut reader, &mut buffer))
        .await
        .expect("the next call is answered")
        .unwrap();
    assert_eq!(response.grpc_status().as_deref(), Some("0"));
    assert_eq!(
        app.audit_length().await,
        0,
        "the refused batch wrote nothing"
    );
}

#[tokio::test]
async fn a_client_that_never_sends_its_body_gets_the_refusal_and_is_cut_off() {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    // The drain of a refused body lasts at most this long.
    config.server.body_idle_timeout = Duration::from_millis(500);
    let app = spawn_app_with(config).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();

    // Announces a megabyte, sends ten bytes, then nothing.
    let mut head = grpc_web_head(
        "/lms.v1.PersonService/BatchUpsertPeople",
        Some("not-a-token"),
        1_000_000,
        "",
    );
    head.extend_from_slice(&[0u8; 10]);
    stream.write_all(&head).await.unwrap();
    let mut buffer = Vec::new();
    let response = tokio::time::timeout(PATIENCE, read_response(&mut stream, &mut buffer))
        .await
        .expect("the refusal does not wait for the body")
        .unwrap();
    assert_eq!(response.grpc_status().as_deref(), Some("16"));

    // Then the server stops waiting for the body and closes the connection.
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut rest = [0u8; 1024];
        loop {
            match stream.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never finishes its body does not hold the connection"
    );
}
