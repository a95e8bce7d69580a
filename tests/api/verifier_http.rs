//! The plain HTTP surface on the gRPC listener (src/server/verifier.rs), over a real socket: a
//! certificate issued through the gRPC API is looked up the way people and standard verifiers
//! do: its status lists at the URLs the credential names, its issuer profile, its page in
//! English and Malay, the JSON variant, and its printable PDF, read back with poppler
//! (pdftotext, pdftoppm, pdfdetach) and a QR decoder. Hostile codes get a safe answer; the
//! public rate limit answers 429 with Retry-After.

use std::{path::Path, process::Command, time::Duration};

use lms::auth::Role;
use lms::domain::certification::credential;
use lms::pb::{self, certification_service_client::CertificationServiceClient};
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use crate::certification::{change, holder};
use crate::helpers::{TestApp, TestDatabase, spawn_app_with, test_config, with_token};

/// The public URL the test servers name in credentials: a host in front of them (a proxy) with a
/// path prefix, as in production; requests reach the server with the prefix kept.
const PUBLIC_URL: &str = "https://verify.example.gov.my/lms";

async fn spawn(configure: impl FnOnce(&mut lms::config::Config)) -> (TestApp, TestDatabase) {
    let database = TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.certification.public_url = PUBLIC_URL.to_owned();
    configure(&mut config);
    (spawn_app_with(config).await, database)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Returns where `url` (under [`PUBLIC_URL`]) reaches the test server: its path, on the server's
/// socket, the way the proxy forwards it.
fn local(app: &TestApp, url: &str) -> String {
    let origin = PUBLIC_URL.trim_end_matches("/lms");
    let path = url
        .strip_prefix(origin)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_URL}"));
    format!("http://{}{path}", app.addr)
}

fn page_url(app: &TestApp, code: &str) -> String {
    local(app, &format!("{PUBLIC_URL}/verify/{code}"))
}

struct Fetched {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn verification_json(app: &TestApp, code: &str) -> Value {
    let answer = get(&page_url(app, code), &[("accept", "application/json")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/json");
    assert_eq!(answer.header("cache-control"), "no-cache");
    assert!(answer.header("vary").contains("Accept"));
    answer.json()
}

/// Fetches the status list of `purpose` the credential names, checks it is a signed
/// BitstringStatusListCredential served as `application/vc`, and returns the credential's bit.
async fn status_bit(app: &TestApp, credential_json: &Value, purpose: &str) -> bool {
    let entry = credential_json["credentialStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["statusPurpose"] == purpose)
        .unwrap_or_else(|| panic!("a {purpose} entry"));
    let url = entry["statusListCredential"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/status-lists/")),
        "{url}"
    );
    let answer = get(&local(app, url), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{url}: {}", answer.text());
    assert_eq!(answer.header("content-type"), "application/vc");
    assert_eq!(answer.header("cache-control"), "no-cache");
    assert_eq!(answer.header("access-control-allow-origin"), "*");
    let list = answer.json();
    assert_eq!(
        list["id"], url,
        "the list is at the URL the credential names"
    );
    assert!(
        list["type"]
            .as_array()
            .unwrap()
            .contains(&"BitstringStatusListCredential".into())
    );
    let did = list["issuer"].as_str().unwrap();
    let key = credential::public_key_from_multikey(did.trim_start_matches("did:key:")).unwrap();
    assert!(credential::verify(&list, &key), "the list is signed");
    let index: i32 = entry["statusListIndex"].as_str().unwrap().parse().unwrap();
    credential::status_bit(
        list["credentialSubject"]["encodedList"].as_str().unwrap(),
        index,
    )
    .unwrap()
}

fn certs(app: &TestApp) -> CertificationServiceClient<tonic::transport::Channel> {
    CertificationServiceClient::new(app.channel.clone())
}

#[tokio::test]
async fn status_lists_pages_and_json_follow_the_certificate_over_http() {
    let (app, _database) = spawn(|_| {}).await;
    let world = holder(&app).await;
    let code = world.certificate.verification_code.clone();

    // Holders' names are data: whatever they hold is shown, escaped.
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: vec![pb::PersonRecord {
                full_name: "Nur <b>\"Aisyah\"</b> & O'Brien".to_owned(),
                ..crate::helpers::person_record("HOLDER-0000", "ACAD")
            }],
            request_id: String::new(),
        }))
        .await
        .unwrap();

    let json = verification_json(&app, &code).await;
    assert_eq!(json["status"], "valid");
    assert_eq!(json["valid"], true);
    assert_eq!(json["verificationCode"], code);
    assert_eq!(json["holderName"], "Nur <b>\"Aisyah\"</b> & O'Brien");
    assert_eq!(json["track"]["code"], "MASTER");
    assert_eq!(json["links"]["page"], format!("{PUBLIC_URL}/verify/{code}"));
    let credential_json = json["credential"].clone();
    assert_eq!(
        credential_json["credentialSubject"]["name"],
        json["holderName"]
    );
    assert!(!status_bit(&app, &credential_json, "revocation").await);
    assert!(!status_bit(&app, &credential_json, "suspension").await);

    // The issuer profile the credential links: an Open Badges Profile with the signing key.
    let profile_url = credential_json["issuer"]["url"].as_str().unwrap();
    assert_eq!(
        profile_url,
        format!("{PUBLIC_URL}/issuers/{}", world.issuer_id)
    );
    let profile = get(&local(&app, profile_url), &[]).await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.header("content-type"), "application/ld+json");
    let profile = profile.json();
    assert_eq!(profile["id"], credential_json["issuer"]["id"]);
    assert_eq!(profile["type"][0], "Profile");
    let keys = certs(&app)
        .get_issuer_keys(pb::GetIssuerKeysRequest {
            issuer_organization_id: world.issuer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(
        profile["verificationMethod"][0]["publicKeyMultibase"],
        keys[0].public_key_multibase.as_str()
    );
    assert_eq!(
        profile["assertionMethod"][0],
        credential_json["proof"]["verificationMethod"]
    );

    // The achievement the credential names resolves, to that very achievement.
    let achievement = &credential_json["credentialSubject"]["achievement"];
    let achievement_url = achievement["id"].as_str().unwrap();
    assert_eq!(
        achievement_url,
        format!("{PUBLIC_URL}/tracks/{}", world.certificate.track_id)
    );
    let served = get(&local(&app, achievement_url), &[]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.header("content-type"), "application/ld+json");
    let mut served = served.json();
    let context = served
        .as_object_mut()
        .unwrap()
        .remove("@context")
        .expect("a JSON-LD context");
    assert_eq!(context[0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(&served, achievement);
    assert_eq!(served["type"][0], "Achievement");

    // The page, in the language the browser prefers, and in the one the switch asks for.
    let malay = get(
        &page_url(&app, &code),
        &[("accept-language", "ms-MY,ms;q=0.9,en;q=0.5")],
    )
    .await;
    assert_eq!(malay.status, StatusCode::OK);
    assert_eq!(malay.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(malay.header("content-language"), "ms");
    assert_eq!(malay.header("cache-control"), "no-cache");
    assert!(
        malay
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert_eq!(malay.header("referrer-policy"), "no-referrer");
    let html = malay.text();
    assert!(
        html.starts_with("<!DOCTYPE html><html lang=\"ms\">"),
        "{html}"
    );
    assert!(html.contains("Status: Sah"), "{html}");
    assert!(html.contains(&code));
    assert!(
        html.contains("Nur &lt;b&gt;&quot;Aisyah&quot;&lt;/b&gt; &amp; O'Brien"),
        "{html}"
    );
    assert!(
        !html.contains("<b>"),
        "nothing the holder's name holds becomes markup"
    );
    assert!(!html.to_lowercase().contains("<script"), "no script");
    assert!(html.contains(&format!("href=\"/lms/verify/{code}/certificate.pdf\"")));
    assert!(html.contains(&format!("href=\"/lms/verify/{code}?lang=en\"")));
    let english = get(
        &format!("{}?lang=en", page_url(&app, &code)),
        &[("accept-language", "ms")],
    )
    .await
    .text();
    assert!(english.contains("<html lang=\"en\">"));
    assert!(english.contains("Status: Valid"));
    assert!(
        english.contains("Master trainer: Track MASTER (MASTER)"),
        "{english}"
    );
    let head = client().head(page_url(&app, &code)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(
        head.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Suspended: the page, the JSON and the suspension list say so at once.
    change(&app, &world.certificate.id, "suspend")
        .await
        .unwrap();
    assert_eq!(verification_json(&app, &code).await["status"], "suspended");
    assert!(status_bit(&app, &credential_json, "suspension").await);
    assert!(!status_bit(&app, &credential_json, "revocation").await);
    let page = get(&format!("{}?lang=ms", page_url(&app, &code)), &[])
        .await
        .text();
    assert!(page.contains("Status: Digantung"), "{page}");
    change(&app, &world.certificate.id, "reinstate")
        .await
        .unwrap();
    assert_eq!(verification_json(&app, &code).await["valid"], true);
    assert!(!status_bit(&app, &credential_json, "suspension").await);

    // Renewed: the old code is superseded, the new one valid.
    let renewed = change(&app, &world.certificate.id, "renew").await.unwrap();
    let old = verification_json(&app, &code).await;
    assert_eq!(
        (old["status"].as_str(), old["valid"].as_bool()),
        (Some("superseded"), Some(false))
    );
    assert_eq!(
        verification_json(&app, &renewed.verification_code).await["status"],
        "valid"
    );

    // Revoked: the page and the revocation list.
    change(&app, &renewed.id, "revoke").await.unwrap();
    let revoked = verification_json(&app, &renewed.verification_code).await;
    assert_eq!(revoked["status"], "revoked");
    assert!(status_bit(&app, &revoked["credential"], "revocation").await);
    let page = get(&page_url(&app, &renewed.verification_code), &[])
        .await
        .text();
    assert!(page.contains("Status: Revoked"), "{page}");

    // Expired by the clock: a fresh certificate, two years and a month later.
    let fresh = holder_on_new_track(&app, &world).await;
    assert_eq!(
        verification_json(&app, &fresh.verification_code).await["status"],
        "valid"
    );
    app.config
        .certification
        .clock
        .advance(chrono::Duration::days(25 * 31));
    assert_eq!(
        verification_json(&app, &fresh.verification_code).await["status"],
        "expired"
    );
    let page = get(
        &page_url(&app, &fresh.verification_code),
        &[("accept-language", "ms")],
    )
    .await
    .text();
    assert!(page.contains("Status: Tamat tempoh"), "{page}");
}

/// Certifies the holder of `world` again on a second track of the same issuer (a fresh, active
/// certificate).
async fn holder_on_new_track(
    app: &TestApp,
    world: &crate::certification::Holder,
) -> pb::Certificate {
    let existing = certs(app)
        .get_certification_track(app.admin(pb::GetCertificationTrackRequest {
            id: world.certificate.track_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let track = certs(app)
        .create_certification_track(app.admin(pb::CreateCertificationTrackRequest {
            track: Some(pb::CertificationTrack {
                code: "SECOND".to_owned(),
                title: "Second track".to_owned(),
                id: String::new(),
                etag: String::new(),
                create_time: None,
                update_time: None,
                ..existing
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let candidacy = certs(app)
        .create_candidacy(app.admin(pb::CreateCandidacyRequest {
            track_id: track.id,
            person_id: world.person_id.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut client = certs(app);
    client
        .start_training(app.admin(pb::StartTrainingRequest {
            id: candidacy.id.clone(),
            reason: "second track".to_owned(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    client
        .begin_supervised_practice(app.admin(pb::BeginSupervisedPracticeRequest {
            id: candidacy.id.clone(),
            reason: "second track".to_owned(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    client
        .submit_for_assessment(app.admin(pb::SubmitForAssessmentRequest {
            id: candidacy.id.clone(),
            reason: "second track".to_owned(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    client
        .issue_certificate(app.admin(pb::IssueCertificateRequest {
            candidacy_id: candidacy.id,
            reason: "second track".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
}

/// Sends `request` as written (no client normalises the path) and returns the raw answer.
async fn raw_http(app: &TestApp, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn hostile_codes_get_a_safe_answer() {
    let (app, _database) = spawn(|config| {
        config.certification.verify_burst = 1000;
        config.certification.verify_rate_per_second = 1000;
    })
    .await;
    let base = format!("http://{}", app.addr);

    // Markup in the code: 404, shown back escaped, and nothing runs.
    let script = get(
        &format!("{base}/verify/%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        &[],
    )
    .await;
    assert_eq!(script.status, StatusCode::NOT_FOUND);
    assert_eq!(script.header("content-type"), "text/html; charset=utf-8");
    let html = script.text();
    assert!(html.contains("No certificate has this code"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.to_lowercase().contains("<script"), "{html}");

    // Very long: 404, shown back cut short.
    let long = "A".repeat(20_000);
    let answer = get(&format!("{base}/verify/{long}"), &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.len() < 10_000, "{} bytes", answer.body.len());
    assert!(answer.text().contains(&format!("{}…", "A".repeat(40))));

    // Unknown but well-formed, in JSON.
    let unknown = get(
        &format!("{base}/verify/ABCD-EFGH-JKMN"),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"]["code"], 404);

    // Path traversal, as sent (no client tidies the path) and percent-encoded.
    for path in [
        "/verify/../../etc/passwd",
        "/verify/..%2F..%2Fetc%2Fpasswd",
        "/status-lists/../../../etc/passwd",
        "/issuers/..%2F..%2Fetc%2Fpasswd",
        "/verify/%00%0d%0aSet-Cookie:%20x=1",
    ] {
        let answer = raw_http(
            &app,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("root:"), "{path}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            !head.to_lowercase().contains("set-cookie"),
            "{path}: {head}"
        );
        assert!(
            !body.contains('\0'),
            "{path}: control characters are not echoed raw"
        );
    }

    // The form redirects to the page; what was typed is escaped in the Location.
    let typed = client()
        .get(format!("{base}/verify"))
        .query(&[("code", "abcd efgh jkmn"), ("lang", "ms")])
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        typed.headers()["location"],
        "/lms/verify/ABCD-EFGH-JKMN?lang=ms"
    );
    let hostile = client()
        .get(format!("{base}/verify"))
        .query(&[("code", "<x>\r\nSet-Cookie: a=b")])
        .send()
        .await
        .unwrap();
    assert_eq!(hostile.status(), StatusCode::SEE_OTHER);
    let location = hostile.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/lms/verify/%3Cx%3E%0D%0ASet-Cookie%3A%20a%3Db"),
        "{location}"
    );
    assert!(hostile.headers().get("set-cookie").is_none());
    let form = get(&format!("{base}/verify?lang=ms"), &[]).await.text();
    assert!(
        form.contains("<form action=\"/lms/verify\" method=\"get\">"),
        "{form}"
    );

    // Read-only: anything but GET and HEAD is refused; gRPC paths are not ours.
    let post = client()
        .post(format!("{base}/verify/ABCD-EFGH-JKMN"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let grpc = get(
        &format!("{base}/lms.v1.CertificationService/VerifyCertificate"),
        &[],
    )
    .await;
    assert_ne!(grpc.status, StatusCode::OK);
    let unknown_issuer = get(&format!("{base}/issuers/not-an-id"), &[]).await;
    assert_eq!(unknown_issuer.status, StatusCode::NOT_FOUND);
    let unknown_track = get(&format!("{base}/tracks/{}", uuid::Uuid::now_v7()), &[]).await;
    assert_eq!(unknown_track.status, StatusCode::NOT_FOUND);
    let not_a_track = get(&format!("{base}/tracks/not-an-id"), &[]).await;
    assert_eq!(not_a_track.status, StatusCode::NOT_FOUND);
    let unknown_list = get(
        &format!("{base}/status-lists/{}/revocation", uuid::Uuid::now_v7()),
        &[],
    )
    .await;
    assert_eq!(unknown_list.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let (app, _database) = spawn(|config| {
        config.certification.verify_burst = 3;
        config.certification.verify_rate_per_second = 1;
    })
    .await;
    let url = format!("http://{}/verify/ABCD-EFGH-JKMN", app.addr);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..8 {
        let answer = get(&url, &[("accept", "application/json")]).await;
        statuses.push(answer.status);
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
        }
    }
    assert_eq!(statuses[0], StatusCode::NOT_FOUND, "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    let retry_after: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.json()["error"]["code"], 429);
    let page = get(&url, &[]).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.text().contains("Too many requests"));
    // The bucket is the public one: gRPC verification from this address waits too.
    let grpc = certs(&app)
        .verify_certificate(pb::VerifyCertificateRequest {
            verification_code: "ABCD-EFGH-JKMN".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), Code::ResourceExhausted);
}

/// Runs a poppler tool; `None` when it is not installed (a failure under CI).
fn poppler(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{tool} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some(output)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{tool} is missing: install poppler-utils (apt-get install -y poppler-utils)"
            );
            eprintln!("skipping the PDF read-back: {tool} is missing (install poppler-utils)");
            None
        }
        Err(error) => panic!("{tool}: {error}"),
    }
}

/// Reads a binary PGM (P5, 8-bit) as written by `pdftoppm -gray`: width, height, pixels.
fn read_pgm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P5");
    let (width, height): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let pixels = bytes[at + 1..].to_vec();
    assert_eq!(pixels.len(), width * height);
    (width, height, pixels)
}

#[tokio::test]
async fn the_printable_certificate_reads_back_as_text_image_and_qr_code() {
    let (app, _database) = spawn(|_| {}).await;
    let world = holder(&app).await;
    let code = world.certificate.verification_code.clone();

    let over_http = get(&format!("{}/certificate.pdf", page_url(&app, &code)), &[]).await;
    assert_eq!(over_http.status, StatusCode::OK);
    assert_eq!(over_http.header("content-type"), "application/pdf");
    assert_eq!(
        over_http.header("content-disposition"),
        format!("inline; filename=\"certificate-{code}.pdf\"")
    );
    let holder_token = app.token(&world.person_id, &[Role::Learner], None);
    let document = certs(&app)
        .get_certificate_document(with_token(
            pb::GetCertificateDocumentRequest {
                id: world.certificate.id.clone(),
            },
            &holder_token,
        ))
        .await
        .expect("the holder reads their certificate's document")
        .into_inner();
    assert_eq!(document.content_type, "application/pdf");
    assert_eq!(document.file_name, format!("certificate-{code}.pdf"));
    assert_eq!(
        document.content, over_http.body,
        "the same document either way"
    );
    let bad = certs(&app)
        .get_certificate_document(app.admin(pb::GetCertificateDocumentRequest {
            id: "not-an-id".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(crate::helpers::violated_fields(&bad), ["id"]);

    let scratch = tempfile::tempdir().unwrap();
    let pdf = scratch.path().join("certificate.pdf");
    std::fs::write(&pdf, &document.content).unwrap();
    let pdf_path = pdf.to_str().unwrap();

    let Some(text) = poppler("pdftotext", &["-layout", pdf_path, "-"]) else {
        return;
    };
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("Officer HOLDER-0000"), "{text}");
    assert!(text.contains(&code), "{text}");
    assert!(text.contains("Vendor academy"), "{text}");
    assert!(text.contains("Track MASTER"), "{text}");
    assert!(text.contains("CERTIFICATE OF CERTIFICATION"), "{text}");
    assert!(
        !text.contains("NOT VALID"),
        "an active certificate carries no warning"
    );

    let image = scratch.path().join("page");
    poppler(
        "pdftoppm",
        &[
            "-r",
            "150",
            "-gray",
            "-singlefile",
            pdf_path,
            image.to_str().unwrap(),
        ],
    )
    .unwrap();
    let (width, height, pixels) = read_pgm(&scratch.path().join("page.pgm"));
    assert!(width > height, "landscape: {width}x{height}");
    let dark = pixels.iter().filter(|pixel| **pixel < 128).count();
    let share = dark as f64 / pixels.len() as f64;
    assert!(
        (0.01..0.5).contains(&share),
        "dark share {share}: the page is not blank"
    );

    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the page");
    let (_, content) = grids[0].decode().expect("the QR code decodes");
    assert_eq!(content, format!("{PUBLIC_URL}/verify/{code}"));

    // The signed credential travels inside the PDF, as the page's JSON gives it.
    let attachments = scratch.path().join("attachments");
    std::fs::create_dir(&attachments).unwrap();
    poppler(
        "pdfdetach",
        &["-saveall", "-o", attachments.to_str().unwrap(), pdf_path],
    )
    .unwrap();
    let attached: Value =
        serde_json::from_slice(&std::fs::read(attachments.join("credential.json")).unwrap())
            .unwrap();
    assert_eq!(attached, verification_json(&app, &code).await["credential"]);

    // Revoked: the document says so across the page.
    change(&app, &world.certificate.id, "revoke").await.unwrap();
    let revoked = get(&format!("{}/certificate.pdf", page_url(&app, &code)), &[]).await;
    std::fs::write(&pdf, &revoked.body).unwrap();
    let text = String::from_utf8(
        poppler("pdftotext", &["-layout", pdf_path, "-"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("NOT VALID: REVOKED"), "{text}");
}
