//! Mutated bodies to every `lms.v1` method: random well-formed messages built from the
//! descriptors (odd strings, extreme numbers, unknown enum values, nested messages) and byte-level
//! mutations of them, as an admin and as a learner. No answer may be INTERNAL or UNKNOWN (a bug
//! or a panic), and health stays SERVING.
//!
//! Bounded: `LMS_FUZZ_CASES` cases per method (default 12); the seed is printed, and
//! `LMS_FUZZ_SEED` replays a run.

use std::{str::FromStr as _, time::Duration};

use futures::StreamExt as _;
use lms::auth::Role;
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use rand::{Rng, SeedableRng as _, rngs::StdRng};
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

use crate::helpers::{TestApp, spawn_app};

/// Passes message bytes through unchanged, so any body can be sent.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        Self
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..14) {
        0 => String::new(),
        1 | 2 => uuid::Uuid::new_v4().to_string(),
        3 => uuid::Uuid::now_v7().to_string(),
        4 => "x".repeat(rng.random_range(1..400)),
        5 => "Kecerdasan Buatan — AI 入门 🙂 \u{202e}".to_owned(),
        6 => "%_!\\'\"; DROP TABLE people; --".to_owned(),
        7 => "<script>alert(1)</script>".to_owned(),
        8 => "2026-13-45T25:61:61Z".to_owned(),
        9 => "a\0b".to_owned(),
        10 => "line\nbreak\ttab".to_owned(),
        11 => "é".repeat(rng.random_range(1..5000)),
        12 => "=HYPERLINK(\"http://x\")".to_owned(),
        _ => (0..rng.random_range(1..20))
            .map(|_| char::from(rng.random_range(b' '..=b'~')))
            .collect(),
    }
}

fn random_value(rng: &mut StdRng, kind: &Kind, depth: usize) -> Value {
    let int = |rng: &mut StdRng| -> i64 {
        match rng.random_range(0..6) {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => i64::MAX,
            4 => i64::MIN,
            _ => rng.random_range(-10_000..10_000),
        }
    };
    match kind {
        Kind::String => Value::String(random_string(rng)),
        Kind::Bool => Value::Bool(rng.random()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(int(rng).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(int(rng)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(rng.random()),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(rng.random()),
        Kind::Float => {
            Value::F32([0.0, -1.5, f32::NAN, f32::INFINITY, 1e30][rng.random_range(0..5)])
        }
        Kind::Double => {
            Value::F64([0.0, -1.5, f64::NAN, f64::INFINITY, 1e300][rng.random_range(0..5)])
        }
        Kind::Bytes => Value::Bytes(
            (0..rng.random_range(0..64))
                .map(|_| rng.random::<u8>())
                .collect(),
        ),
        Kind::Enum(descriptor) => {
            let values: Vec<i32> = descriptor.values().map(|value| value.number()).collect();
            if rng.random_bool(0.8) && !values.is_empty() {
                Value::EnumNumber(values[rng.random_range(0..values.len())])
            } else {
                Value::EnumNumber(rng.random_range(-5..1000))
            }
        }
        Kind::Message(descriptor) => Value::Message(random_message(rng, descriptor, depth + 1)),
    }
}

fn random_message(
    rng: &mut StdRng,
    descriptor: &MessageDescriptor,
    depth: usize,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    if depth > 3 {
        return message;
    }
    for field in descriptor.fields() {
        if field.is_map() || rng.random_bool(0.35) {
            continue;
        }
        let value = if field.is_list() {
            Value::List(
                (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, &field.kind(), depth))
                    .collect(),
            )
        } else {
            random_value(rng, &field.kind(), depth)
        };
        message.set_field(&field, value);
    }
    message
}

/// A random body for `descriptor`: well-formed mostly, byte-mutated sometimes.
fn random_body(rng: &mut StdRng, descriptor: &MessageDescriptor) -> Vec<u8> {
    let mut bytes = random_message(rng, descriptor, 0).encode_to_vec();
    match rng.random_range(0..6) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if !bytes.is_empty() => bytes.truncate(rng.random_range(0..bytes.len())),
        2 => bytes.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>())),
        _ => {}
    }
    bytes
}

fn authorize<T>(request: &mut Request<T>, token: &str) {
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.set_timeout(Duration::from_secs(5));
}

/// Calls `path` with `bodies`; returns the final status (OK when the call succeeded).
async fn call(
    channel: &Channel,
    path: &str,
    client_streaming: bool,
    server_streaming: bool,
    bodies: Vec<Vec<u8>>,
    token: &str,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match (client_streaming, server_streaming) {
        (false, false) => {
            let mut request = Request::new(bodies.into_iter().next().unwrap_or_default());
            authorize(&mut request, token);
            grpc.unary(request, path, RawCodec).await.map(|_| ())
        }
        (false, true) => {
            let mut request = Request::new(bodies.into_iter().next().unwrap_or_default());
            authorize(&mut request, token);
            let mut stream = grpc
                .server_streaming(request, path, RawCodec)
                .await?
                .into_inner();
            // Feeds stay open: read what comes within a moment, then hang up.
            let read = tokio::time::timeout(Duration::from_millis(300), async {
                while let Some(item) = stream.next().await {
                    item?;
                }
                Ok::<(), Status>(())
            })
            .await;
            read.unwrap_or(Ok(()))
        }
        (true, false) => {
            let mut request = Request::new(tokio_stream::iter(bodies));
            authorize(&mut request, token);
            grpc.client_streaming(request, path, RawCodec)
                .await
                .map(|_| ())
        }
        (true, true) => {
            let mut request = Request::new(tokio_stream::iter(bodies));
            authorize(&mut request, token);
            let mut stream = grpc.streaming(request, path, RawCodec).await?.into_inner();
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn mutated_bodies_to_every_method_never_answer_internal() {
    let (app, _database) = spawn_app().await;
    let seed: u64 = std::env::var("LMS_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    let cases: usize = std::env::var("LMS_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(12);
    eprintln!("fuzz seed {seed} (replay with LMS_FUZZ_SEED={seed}), {cases} cases per method");
    let mut rng = StdRng::seed_from_u64(seed);
    let pool = DescriptorPool::decode(lms::pb::FILE_DESCRIPTOR_SET).unwrap();
    let tokens = [
        app.admin_token(),
        app.token("fuzz-learner", &[Role::Learner], None),
    ];
    let (mut calls, mut refused) = (0usize, 0usize);
    let mut failures = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            for case in 0..cases {
                let count = if method.is_client_streaming() {
                    rng.random_range(0..4)
                } else {
                    1
                };
                let bodies = (0..count)
                    .map(|_| random_body(&mut rng, &method.input()))
                    .collect();
                let token = &tokens[usize::from(case % 4 == 3)];
                let outcome = call(
                    &app.channel,
                    &path,
                    method.is_client_streaming(),
                    method.is_server_streaming(),
                    bodies,
                    token,
                )
                .await;
                calls += 1;
                if let Err(status) = outcome {
                    refused += 1;
                    if matches!(
                        status.code(),
                        Code::Internal | Code::Unknown | Code::DataLoss
                    ) {
                        failures.push(format!("{path} case {case}: {status:?}"));
                    }
                }
            }
        }
    }
    eprintln!(
        "fuzz: {calls} calls, {refused} refused, {} INTERNAL/UNKNOWN",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} calls answered INTERNAL or UNKNOWN:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_serving(&app).await;
}

async fn assert_serving(app: &TestApp) {
    let status = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    app.organizations
        .clone()
        .list_organizations(app.admin(lms::pb::ListOrganizationsRequest::default()))
        .await
        .expect("the server still answers ordinary calls");
}
