//! Authentication and authorisation at the edge: tokens, roles and organisation scope.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use lms::auth::{Role, token::Claims};
use lms::pb::{self, OrganizationKind};
use tonic::Code;

use crate::helpers::{TestApp, error_reason, spawn_app, with_token};

fn claims(app: &TestApp, roles: &[&str]) -> Claims {
    let now = jsonwebtoken::get_current_timestamp();
    Claims {
        sub: "someone".to_owned(),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        org: None,
        iss: app.config.auth.jwt_issuer.clone(),
        aud: app.config.auth.jwt_audience.clone().into(),
        exp: now + 600,
        nbf: Some(now),
        iat: Some(now),
    }
}

fn sign(app: &TestApp, claims: &Claims) -> String {
    let key = lms::auth::token::load_or_create_dev_key(&app.config.data_dir).unwrap();
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&key),
    )
    .unwrap()
}

async fn list_organizations_with(app: &TestApp, token: Option<&str>) -> Result<(), tonic::Status> {
    let message = pb::ListOrganizationsRequest::default();
    let request = match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    };
    app.organizations
        .clone()
        .list_organizations(request)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let (app, _database) = spawn_app().await;
    let status = list_organizations_with(&app, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&status), "UNAUTHENTICATED");
    list_organizations_with(&app, Some(&app.admin_token()))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let (app, _database) = spawn_app().await;
    let token = app.admin_token();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let mut request = tonic::Request::new(pb::ListOrganizationsRequest::default());
        request.metadata_mut().insert(
            "authorization",
            format!("{scheme} {token}").parse().unwrap(),
        );
        app.organizations
            .clone()
            .list_organizations(request)
            .await
            .unwrap_or_else(|status| panic!("{scheme}: {status:?}"));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let a_day = Claims {
        exp: now + 24 * 3600,
        ..claims(&app, &["admin"])
    };
    list_organizations_with(&app, Some(&sign(&app, &a_day)))
        .await
        .expect("a token within the maximum lifetime is accepted");
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let (app, _database) = spawn_app().await;
    let now = jsonwebtoken::get_current_timestamp();

    let expired = Claims {
        exp: now - 3600,
        nbf: Some(now - 7200),
        ..claims(&app, &["admin"])
    };
    let wrong_audience = Claims {
        aud: "someone-else".into(),
        ..claims(&app, &["admin"])
    };
    let wrong_issuer = Claims {
        iss: "evil".to_owned(),
        ..claims(&app, &["admin"])
    };
    let not_yet_valid = Claims {
        nbf: Some(now + 3600),
        ..claims(&app, &["admin"])
    };
    // Signed by the right key, but valid until the year 2999: longer than --jwt-max-lifetime.
    let everlasting = Claims {
        exp: 32_503_680_000,
        ..claims(&app, &["admin"])
    };
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &claims(&app, &["admin"]),
        &EncodingKey::from_secret(b"not the server's key"),
    )
    .unwrap();
    // `alg: none`: a token with no signature at all.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&app, &["admin"])).unwrap()),
    );
    // HS512 with the right key: right secret, wrong (unpinned) algorithm.
    let key = lms::auth::token::load_or_create_dev_key(&app.config.data_dir).unwrap();
    let other_algorithm = encode(
        &Header::new(Algorithm::HS512),
        &claims(&app, &["admin"]),
        &EncodingKey::from_secret(&key),
    )
    .unwrap();

    let tokens = [
        ("expired", sign(&app, &expired)),
        ("wrong audience", sign(&app, &wrong_audience)),
        ("wrong issuer", sign(&app, &wrong_issuer)),
        ("not yet valid", sign(&app, &not_yet_valid)),
        ("lives until 2999", sign(&app, &everlasting)),
        ("other key", other_key),
        ("alg none", unsigned),
        ("other algorithm", other_algorithm),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (case, token) in tokens {
        let status = list_organizations_with(&app, Some(&token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
}

#[tokio::test]
async fn a_learner_cannot_create_an_organization_and_nothing_is_written() {
    let (app, _database) = spawn_app().await;
    let learner = app.token("learner-1", &[Role::Learner], None);
    let request = pb::CreateOrganizationRequest {
        organization: Some(pb::Organization {
            name: "Ministry of Finance".to_owned(),
            kind: OrganizationKind::Ministry.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let status = app
        .organizations
        .clone()
        .create_organization(with_token(request, &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "ROLE_NOT_ALLOWED");
    assert_eq!(app.audit_length().await, 0);
    // The audit log is for admins only.
    let status = app
        .audit
        .clone()
        .list_audit_entries(with_token(pb::ListAuditEntriesRequest::default(), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_org_admin_acts_only_inside_their_subtree() {
    let (app, _database) = spawn_app().await;
    let finance = app
        .create_organization(
            "Ministry of Finance",
            OrganizationKind::Ministry,
            None,
            Some("MOF"),
        )
        .await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    let admin_of_finance = app.token("officer-mof", &[Role::OrgAdmin], Some(&finance.id));

    let create_under = |parent: &str| pb::CreateOrganizationRequest {
        organization: Some(pb::Organization {
            name: "Budget Division".to_owned(),
            kind: OrganizationKind::Department.into(),
            parent_id: parent.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let inside = app
        .organizations
        .clone()
        .create_organization(with_token(create_under(&finance.id), &admin_of_finance))
        .await
        .expect("inside the subtree");
    assert_eq!(inside.get_ref().parent_id, finance.id);

    let status = app
        .organizations
        .clone()
        .create_organization(with_token(create_under(&health.id), &admin_of_finance))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "OUTSIDE_ORGANIZATION_SCOPE");

    // Moving their department under another ministry takes it out of their reach: refused.
    let status = app
        .organizations
        .clone()
        .move_organization(with_token(
            pb::MoveOrganizationRequest {
                id: inside.get_ref().id.clone(),
                new_parent_id: health.id.clone(),
                etag: String::new(),
            },
            &admin_of_finance,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // People of another ministry are neither listed nor imported.
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![
            crate::helpers::person_record("MOF-1", "MOF"),
            crate::helpers::person_record("MOH-1", "MOH"),
        ],
        request_id: String::new(),
    };
    let outcome = app
        .people
        .clone()
        .batch_upsert_people(with_token(batch, &admin_of_finance))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.counts.unwrap().created, 1);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].key, "MOH-1");
    assert_eq!(outcome.errors[0].reason, "OUTSIDE_ORGANIZATION_SCOPE");

    let status = app
        .people
        .clone()
        .list_people(with_token(
            pb::ListPeopleRequest {
                organization_subtree: health.id.clone(),
                ..Default::default()
            },
            &admin_of_finance,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let listed = app
        .people
        .clone()
        .list_people(with_token(
            pb::ListPeopleRequest::default(),
            &admin_of_finance,
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .people
        .iter()
        .map(|person| person.external_id.as_str())
        .collect();
    assert_eq!(ids, ["MOF-1"]);
}

#[tokio::test]
async fn a_learner_reads_their_own_record_only() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![
            crate::helpers::person_record("E-1", "MOF"),
            crate::helpers::person_record("E-2", "MOF"),
        ],
        request_id: String::new(),
    };
    app.people
        .clone()
        .batch_upsert_people(app.admin(batch))
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
    let (me, other) = (&people[0], &people[1]);
    let learner = app.token(&me.id, &[Role::Learner], None);
    let own = app
        .people
        .clone()
        .get_person(with_token(
            pb::GetPersonRequest { id: me.id.clone() },
            &learner,
        ))
        .await
        .unwrap();
    assert_eq!(own.get_ref().external_id, me.external_id);
    let status = app
        .people
        .clone()
        .get_person(with_token(
            pb::GetPersonRequest {
                id: other.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let (app, _database) = spawn_app().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        response.get_ref().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "lms.v1.PersonService".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        response.get_ref().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn issuer_token(app: &TestApp, kid: Option<&str>) -> String {
    let private = std::fs::read(fixture("issuer-ed25519-private.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims(app, &["admin"]),
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_production_public_key_replaces_the_development_key() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = crate::helpers::test_config(&database);
    config.auth.jwt_public_key = Some(fixture("issuer-ed25519-public.pem"));
    config.auth.jwt_algorithm = lms::config::PublicKeyAlgorithm::EdDsa;
    let app = crate::helpers::spawn_app_with(config).await;

    list_organizations_with(&app, Some(&issuer_token(&app, None)))
        .await
        .expect("issuer token");
    // The development key no longer opens the door, nor does any other algorithm.
    let status = list_organizations_with(&app, Some(&app.admin_token()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_jwks_file_verifies_tokens_by_key_id() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = crate::helpers::test_config(&database);
    config.auth.jwks_file = Some(fixture("issuer-jwks.json"));
    let app = crate::helpers::spawn_app_with(config).await;

    list_organizations_with(&app, Some(&issuer_token(&app, Some("issuer-2026"))))
        .await
        .expect("known kid");
    for token in [
        issuer_token(&app, Some("rotated-away")),
        issuer_token(&app, None),
        app.admin_token(),
    ] {
        let status = list_organizations_with(&app, Some(&token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
}
