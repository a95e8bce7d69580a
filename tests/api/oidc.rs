//! Tokens from an OIDC issuer served over a real local HTTP server: discovery and JWKS with keys
//! of every kind (RS256, ES256, EdDSA), rotation, rate-limited refetches on unknown key ids,
//! `aud` arrays, no `nbf`/`iat`, Keycloak-shaped role claims and an employee number that names
//! the person.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt as _;
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use lms::config::{Config, PersonMatch};
use lms::pb;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{
    TestApp, TestDatabase, person_record, spawn_app_on, spawn_app_with, test_config, with_token,
};

const AUDIENCE: &str = "lms-api";
const REALM: &str = "/realms/ministry";

/// What the issuer serves, and how often it was asked.
struct IssuerState {
    /// Key ids in the served key set, from `tests/fixtures/oidc/public-jwks.json`.
    kids: Mutex<Vec<&'static str>>,
    /// Answer 503 to every request while set.
    down: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// A local OIDC issuer (Keycloak-shaped URLs) over HTTP/1.1.
struct Issuer {
    addr: SocketAddr,
    state: Arc<IssuerState>,
}

impl Issuer {
    async fn start(kids: &[&'static str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IssuerState {
            kids: Mutex::new(kids.to_vec()),
            down: AtomicBool::new(false),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let answer = answer(&state, addr, request.uri().path());
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}{REALM}", self.addr)
    }

    fn rotate(&self, kids: &[&'static str]) {
        *self.state.kids.lock().unwrap() = kids.to_vec();
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Waits until the server's start-up fetch has been answered and stored.
    async fn wait_for_first_fetch(&self) {
        for _ in 0..200 {
            if self.jwks_fetches() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server never fetched the key set");
    }
}

fn answer(state: &IssuerState, addr: SocketAddr, path: &str) -> Response<Full<Bytes>> {
    let json_response = |value: Value| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    if state.down.load(Ordering::SeqCst) {
        if path.ends_with("/jwks") {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        }
        return Response::builder()
            .status(503)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let issuer = format!("http://{addr}{REALM}");
    if path == format!("{REALM}/.well-known/openid-configuration") {
        state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
        return json_response(json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/protocol/openid-connect/certs/jwks"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        }));
    }
    if path == format!("{REALM}/protocol/openid-connect/certs/jwks") {
        state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        let public = public_jwks();
        let keys: Vec<Value> = state
            .kids
            .lock()
            .unwrap()
            .iter()
            .map(|kid| public[*kid].clone())
            .collect();
        return json_response(json!({ "keys": keys }));
    }
    Response::builder()
        .status(404)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oidc")
        .join(name)
}

fn public_jwks() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("public-jwks.json")).unwrap()).unwrap()
}

/// Signs `claims` with the fixture key `kid` (its kind from its name), naming `header_kid`.
fn sign_as(kid: &str, header_kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(&format!("{kid}.pem"))).unwrap();
    let (algorithm, key) = match &kid[..2] {
        "rs" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap()),
        "es" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap()),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).unwrap()),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(header_kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

fn sign(kid: &str, claims: &Value) -> String {
    sign_as(kid, kid, claims)
}

/// Claims as Keycloak sends them: `aud` an array, no `nbf`, no `iat`.
fn oidc_claims(issuer: &Issuer, extra: Value) -> Value {
    let mut claims = json!({
        "iss": issuer.url(),
        "aud": ["account", AUDIENCE],
        "sub": "5b0a7c1e-keycloak-user",
        "exp": jsonwebtoken::get_current_timestamp() + 600,
        "typ": "Bearer",
        "azp": "lms-web",
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    claims
}

fn oidc_config(database: &TestDatabase, issuer: &Issuer) -> Config {
    let mut config = test_config(database);
    config.auth.jwt_issuer = issuer.url();
    config.auth.jwt_audience = AUDIENCE.to_owned();
    config.auth.oidc_issuer_url = Some(issuer.url());
    config
}

async fn list_organizations(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.organizations
        .clone()
        .list_organizations(with_token(pb::ListOrganizationsRequest::default(), token))
        .await
        .map(|_| ())
}

/// An admin-only call.
async fn list_audit_entries(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.audit
        .clone()
        .list_audit_entries(with_token(pb::ListAuditEntriesRequest::default(), token))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn keys_of_every_kind_verify_and_a_rotated_key_is_accepted_after_one_fetch() {
    let issuer = Issuer::start(&["rs256-a", "es256-a", "eddsa-a"]).await;
    let database = TestDatabase::fresh().await;
    let app = spawn_app_with(oidc_config(&database, &issuer)).await;
    issuer.wait_for_first_fetch().await;
    assert_eq!(issuer.state.discovery_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_fetches(), 1);

    let admin = oidc_claims(&issuer, json!({ "roles": ["admin"] }));
    for kid in ["rs256-a", "es256-a", "eddsa-a"] {
        list_organizations(&app, &sign(kid, &admin))
            .await
            .unwrap_or_else(|status| panic!("{kid}: {status:?}"));
    }
    // `aud` as a plain string, and with `nbf`/`iat` present, still works.
    let now = jsonwebtoken::get_current_timestamp();
    let classic = oidc_claims(
        &issuer,
        json!({ "aud": AUDIENCE, "nbf": now, "iat": now, "roles": ["admin"] }),
    );
    list_organizations(&app, &sign("es256-a", &classic))
        .await
        .expect("string aud");
    assert_eq!(issuer.jwks_fetches(), 1, "known keys need no fetch");

    // Negative cases with a known key: wrong audience (array), future nbf, missing exp,
    // a key signing under another key's id.
    let wrong_audience = oidc_claims(&issuer, json!({ "aud": ["account", "other-api"] }));
    let future = oidc_claims(&issuer, json!({ "nbf": now + 3600 }));
    let mut no_exp = oidc_claims(&issuer, json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    for (case, token) in [
        ("wrong aud", sign("rs256-a", &wrong_audience)),
        ("future nbf", sign("rs256-a", &future)),
        ("no exp", sign("eddsa-a", &no_exp)),
        ("kid of another key", sign_as("rs256-b", "rs256-a", &admin)),
    ] {
        let status = list_organizations(&app, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }

    // The issuer rotates every key: the first token with a new kid causes one fetch.
    issuer.rotate(&["rs256-b", "es256-b", "eddsa-b"]);
    for kid in ["eddsa-b", "rs256-b", "es256-b"] {
        list_organizations(&app, &sign(kid, &admin))
            .await
            .unwrap_or_else(|status| panic!("rotated {kid}: {status:?}"));
    }
    assert_eq!(
        issuer.jwks_fetches(),
        2,
        "rotation accepted after one fetch"
    );
    // Keys rotated away are refused, and within the cooldown cause no fetch.
    let status = list_organizations(&app, &sign("rs256-a", &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("unknown key"), "{status:?}");
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_thousand_unknown_kids_cause_at_most_one_fetch_per_cooldown() {
    let issuer = Issuer::start(&["es256-a"]).await;
    let database = TestDatabase::fresh().await;
    let mut config = oidc_config(&database, &issuer);
    config.auth.oidc_issuer_url = None;
    config.auth.jwks_url = Some(format!(
        "{}/protocol/openid-connect/certs/jwks",
        issuer.url()
    ));
    let cooldown = Duration::from_secs(5);
    config.auth.jwks_refresh_cooldown = cooldown;
    let app = spawn_app_with(config).await;
    issuer.wait_for_first_fetch().await;
    let admin = oidc_claims(&issuer, json!({ "roles": ["admin"] }));

    for round in 0..2 {
        // Signed beforehand, so that the round measures the server.
        let tokens: Vec<String> = (0..1000)
            .map(|i| sign_as("es256-a", &format!("unknown-{round}-{i}"), &admin))
            .collect();
        let before = issuer.jwks_fetches();
        let started = std::time::Instant::now();
        // 64 at a time: the server sheds calls beyond 128 per connection.
        let answers: Vec<_> = futures::stream::iter(&tokens)
            .map(|token| list_organizations(&app, token))
            .buffer_unordered(64)
            .collect()
            .await;
        let elapsed = started.elapsed();
        for answer in answers {
            let status = answer.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            assert!(status.message().contains("unknown key"), "{status:?}");
        }
        let fetches = issuer.jwks_fetches() - before;
        println!(
            "round {round}: 1,000 unknown kids in {elapsed:?} caused {fetches} key-set fetch(es)"
        );
        // At most one fetch per started cooldown period.
        let periods = 1 + (elapsed.as_millis() / cooldown.as_millis()) as usize;
        assert!(
            (1..=periods).contains(&fetches),
            "round {round}: {fetches} fetches in {elapsed:?}"
        );
        list_organizations(&app, &sign("es256-a", &admin))
            .await
            .expect("the known key still works");
        tokio::time::sleep(cooldown + Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn tokens_are_refused_until_the_keys_load() {
    let issuer = Issuer::start(&["eddsa-a"]).await;
    issuer.state.down.store(true, Ordering::SeqCst);
    let database = TestDatabase::fresh().await;
    let mut config = oidc_config(&database, &issuer);
    let cooldown = Duration::from_secs(1);
    config.auth.jwks_refresh_cooldown = cooldown;
    let app = spawn_app_with(config).await;
    let admin = oidc_claims(&issuer, json!({ "roles": ["admin"] }));

    let status = list_organizations(&app, &sign("eddsa-a", &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("not loaded yet"), "{status:?}");

    issuer.state.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(cooldown + Duration::from_millis(200)).await;
    list_organizations(&app, &sign("eddsa-a", &admin))
        .await
        .expect("accepted once the issuer answers");
}

#[tokio::test]
async fn keycloak_roles_and_an_employee_number_name_the_person() {
    let issuer = Issuer::start(&["rs256-a"]).await;
    let database = TestDatabase::fresh().await;

    // The person exists first, made through the API (development key).
    let app = spawn_app_on(&database).await;
    app.create_organization(
        "Ministry",
        pb::OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: vec![
                person_record("E-12345", "MOF"),
                person_record("E-777", "MOF"),
            ],
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let people = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .people;
    let person_id = people
        .iter()
        .find(|person| person.external_id == "E-12345")
        .expect("person")
        .id
        .clone();
    app.stop().await;

    // Now the ministry's IdP issues the tokens.
    let mut config = oidc_config(&database, &issuer);
    config.auth.jwt_roles_claim = vec![
        "realm_access.roles".to_owned(),
        "resource_access.lms-api.roles".to_owned(),
    ];
    config.auth.jwt_role_map = vec!["lms-administrators=admin".to_owned()];
    config.auth.jwt_person_claim = "employee_number".to_owned();
    config.auth.jwt_person_match = PersonMatch::ExternalId;
    let app = spawn_app_with(config).await;
    issuer.wait_for_first_fetch().await;

    let keycloak_admin = oidc_claims(
        &issuer,
        json!({
            "employee_number": "E-12345",
            "realm_access": { "roles": ["offline_access", "lms-administrators"] },
            "resource_access": { "account": { "roles": ["manage-account"] } },
            "roles": ["admin"],
        }),
    );
    let token = sign("rs256-a", &keycloak_admin);
    let created = app
        .organizations
        .clone()
        .create_organization(with_token(
            pb::CreateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: "Treasury".to_owned(),
                    kind: pb::OrganizationKind::Department.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .expect("a mapped realm role is admin")
        .into_inner();
    // The audit actor is the LMS person id, not the IdP's subject.
    let entries = app
        .audit
        .clone()
        .list_audit_entries(with_token(pb::ListAuditEntriesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = entries
        .iter()
        .find(|entry| entry.resource_id == created.id)
        .expect("audit entry of the creation");
    assert_eq!(entry.actor, person_id);

    // A client role path works too; the top-level `roles` is not read when not configured.
    let client_role = oidc_claims(
        &issuer,
        json!({
            "employee_number": "E-12345",
            "resource_access": { "lms-api": { "roles": ["admin"] } },
        }),
    );
    list_audit_entries(&app, &sign("rs256-a", &client_role))
        .await
        .expect("client role");
    let top_level_only = oidc_claims(
        &issuer,
        json!({ "employee_number": "E-12345", "roles": ["admin"] }),
    );
    let status = list_audit_entries(&app, &sign("rs256-a", &top_level_only))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // An employee number nobody has is refused.
    let stranger = oidc_claims(
        &issuer,
        json!({
            "employee_number": "E-00000",
            "realm_access": { "roles": ["lms-administrators"] },
        }),
    );
    let status = list_organizations(&app, &sign("rs256-a", &stranger))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
