//! Renewal candidacies: opened by the sweep a configurable number of days before a certificate
//! expires, once per certificate across replicas, never for a revoked one, never when switched
//! off; the renewal's certificate supersedes the one it renews.

use std::time::Duration;

use lms::pb;
use tonic::Code;

use crate::certification::{assessor, certify_directly, certs, change, holder, issue};
use crate::helpers::{TestApp, error_reason, spawn_app_with, test_config};
use crate::programmes::import_people;

fn time_of(timestamp: &prost_types::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32).unwrap()
}

/// Reads the `candidacy.renewal_opened` events of the feed until caught up: (candidacy, renewed
/// certificate).
async fn renewal_events(app: &TestApp) -> Vec<(String, String)> {
    use futures::StreamExt as _;
    let mut stream = pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["candidacy.renewal_opened".to_owned()],
            until_caught_up: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json).unwrap();
        assert_eq!(payload["candidacy_id"], event.subject_id.as_str());
        events.push((
            event.subject_id,
            payload["renews_certificate_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    events
}

async fn candidacies_of_person(app: &TestApp, person_id: &str) -> Vec<pb::Candidacy> {
    certs(app)
        .list_candidacies(app.admin(pb::ListCandidaciesRequest {
            person_id: person_id.to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .candidacies
}

async fn certificate(app: &TestApp, id: &str) -> pb::Certificate {
    certs(app)
        .get_certificate(app.admin(pb::GetCertificateRequest { id: id.to_owned() }))
        .await
        .unwrap()
        .into_inner()
}

/// Four sweeps at once by a replica of our own; returns how many they opened between them.
async fn sweep(replica: &lms::store::Store, now: chrono::DateTime<chrono::Utc>) -> usize {
    futures::future::join_all((0..4).map(|_| {
        let replica = replica.clone();
        async move { replica.open_renewal_candidacies(now, 90).await.unwrap() }
    }))
    .await
    .into_iter()
    .sum()
}

async fn app_without_sweeper() -> (TestApp, crate::helpers::TestDatabase) {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = test_config(&database);
    // No background sweep: the replica below is the only sweeper, so the counts are exact.
    config.certification.expiry_sweep_interval = Duration::ZERO;
    (spawn_app_with(config).await, database)
}

#[tokio::test]
async fn a_renewal_opens_once_before_expiry_and_its_certificate_supersedes_the_old_one() {
    let (app, _database) = app_without_sweeper().await;
    assert_eq!(
        app.config.certification.renewal_open_days.0,
        Some(90),
        "the default offset"
    );
    let world = holder(&app).await;
    let clock = app.config.certification.clock.clone();
    let expires = time_of(world.certificate.expires_time.as_ref().unwrap());
    let replica = lms::store::Store::connect(&app.config).await.unwrap();

    assert_eq!(sweep(&replica, clock.now()).await, 0, "two years ahead");
    clock.advance(expires - clock.now() - chrono::Duration::days(91));
    assert_eq!(sweep(&replica, clock.now()).await, 0, "91 days ahead");
    clock.advance(chrono::Duration::days(2));
    assert_eq!(
        sweep(&replica, clock.now()).await,
        1,
        "four sweeps open one"
    );
    assert_eq!(sweep(&replica, clock.now()).await, 0, "and never another");
    let events = renewal_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, world.certificate.id);

    let candidacies = candidacies_of_person(&app, &world.person_id).await;
    assert_eq!(candidacies.len(), 2);
    let renewal = candidacies
        .iter()
        .find(|candidacy| candidacy.id == events[0].0)
        .unwrap()
        .clone();
    assert_eq!(renewal.renews_certificate_id, world.certificate.id);
    assert_eq!(renewal.state(), pb::CandidacyState::Candidate);
    assert_eq!(renewal.cycle, world.certificate.cycle);
    // Due by the expiry, or the track's 90 candidacy days when that is later (89 days here).
    let deadline = time_of(renewal.deadline_time.as_ref().unwrap());
    assert!(deadline >= expires, "{deadline} before {expires}");
    assert!(deadline <= clock.now() + chrono::Duration::days(90));
    // The holder stays certified meanwhile; a second candidacy cannot be opened by hand.
    assert_eq!(
        certificate(&app, &world.certificate.id).await.status(),
        pb::CertificateStatus::Active
    );
    let status = certs(&app)
        .create_candidacy(app.admin(pb::CreateCandidacyRequest {
            track_id: world.certificate.track_id.clone(),
            person_id: world.person_id.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "CANDIDACY_EXISTS");

    // The renewal goes through the track's steps; its certificate supersedes the old one.
    let ids = vec![renewal.id.clone()];
    for step in [
        pb::CandidacyStep::StartTraining,
        pb::CandidacyStep::BeginSupervisedPractice,
        pb::CandidacyStep::SubmitForAssessment,
    ] {
        certs(&app)
            .batch_advance_candidacies(assessor(
                &app,
                pb::BatchAdvanceCandidaciesRequest {
                    step: step.into(),
                    candidacy_ids: ids.clone(),
                    reason: "renewal".to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let renewed = issue(&app, &renewal.id).await.unwrap();
    assert_eq!(renewed.cycle, world.certificate.cycle + 1);
    assert_eq!(renewed.candidacy_id, renewal.id);
    assert!(time_of(renewed.expires_time.as_ref().unwrap()) > expires);
    let old = certificate(&app, &world.certificate.id).await;
    assert_eq!(old.status(), pb::CertificateStatus::Superseded);
    let states: Vec<(String, pb::CandidacyState)> = candidacies_of_person(&app, &world.person_id)
        .await
        .into_iter()
        .map(|candidacy| (candidacy.id.clone(), candidacy.state()))
        .collect();
    assert!(states.contains(&(renewal.id.clone(), pb::CandidacyState::Certified)));
    assert!(states.contains(&(
        world.certificate.candidacy_id.clone(),
        pb::CandidacyState::Renewed
    )));
    let verified = certs(&app)
        .verify_certificate(pb::VerifyCertificateRequest {
            verification_code: renewed.verification_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid);
    let superseded = certs(&app)
        .verify_certificate(pb::VerifyCertificateRequest {
            verification_code: world.certificate.verification_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!superseded.valid);
    // The new certificate is two years away: nothing to open.
    assert_eq!(sweep(&replica, clock.now()).await, 0);
    replica.close().await;
}

#[tokio::test]
async fn revoked_certificates_get_no_renewal_and_an_open_renewal_ends_with_its_certificate() {
    let (app, _database) = app_without_sweeper().await;
    let world = holder(&app).await;
    let clock = app.config.certification.clock.clone();
    let replica = lms::store::Store::connect(&app.config).await.unwrap();
    // A second holder on the same track, revoked before the window opens: no renewal, ever.
    let other = import_people(&app, "OTHER", "ACAD", 1, pb::Sector::Private).await[0].clone();
    let revoked = certify_directly(&app, &world.certificate.track_id, &other).await;
    change(&app, &revoked.id, "revoke").await.unwrap();

    let expires = time_of(world.certificate.expires_time.as_ref().unwrap());
    clock.advance(expires - clock.now() - chrono::Duration::days(30));
    assert_eq!(sweep(&replica, clock.now()).await, 1, "only the active one");
    let events = renewal_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, world.certificate.id);
    assert!(
        candidacies_of_person(&app, &other)
            .await
            .iter()
            .all(|candidacy| candidacy.renews_certificate_id.is_empty())
    );

    // Revoking the renewed certificate withdraws its open renewal; issuing it is refused.
    change(&app, &world.certificate.id, "revoke").await.unwrap();
    let renewal = certs(&app)
        .get_candidacy(app.admin(pb::GetCandidacyRequest {
            id: events[0].0.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewal.state(), pb::CandidacyState::Withdrawn);
    assert!(renewal.history.last().unwrap().reason.contains("revoked"));
    assert_eq!(sweep(&replica, clock.now()).await, 0);

    // A renewal whose certificate was renewed by hand meanwhile is withdrawn, too.
    let third = import_people(&app, "THIRD", "ACAD", 1, pb::Sector::Private).await[0].clone();
    let certificate = certify_directly(&app, &world.certificate.track_id, &third).await;
    clock.advance(
        time_of(certificate.expires_time.as_ref().unwrap())
            - clock.now()
            - chrono::Duration::days(10),
    );
    assert_eq!(sweep(&replica, clock.now()).await, 1);
    let renewed = change(&app, &certificate.id, "renew").await.unwrap();
    let renewal = candidacies_of_person(&app, &third)
        .await
        .into_iter()
        .find(|candidacy| candidacy.renews_certificate_id == certificate.id)
        .unwrap();
    assert_eq!(renewal.state(), pb::CandidacyState::Withdrawn);
    assert_eq!(renewed.cycle, certificate.cycle + 1);
    // The withdrawn renewal cannot be certified.
    let status = issue(&app, &renewal.id).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    replica.close().await;
}

#[tokio::test]
async fn renewals_switched_off_open_nothing_while_the_server_sweeps() {
    use futures::StreamExt as _;

    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.certification.expiry_sweep_interval = Duration::from_millis(50);
    config.certification.renewal_open_days = lms::config::RenewalOpenDays(None);
    let app = spawn_app_with(config).await;
    let world = holder(&app).await;
    let clock = app.config.certification.clock.clone();
    let mut watcher = pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec![
                "certificate.expiring".to_owned(),
                "certificate.expired".to_owned(),
            ],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let expires = time_of(world.certificate.expires_time.as_ref().unwrap());
    clock.advance(expires - clock.now() - chrono::Duration::days(10));
    // The reminder shows the sweeper passed the window; the expiry, published at a later tick,
    // shows the tick that would have opened the renewal is over.
    let reminder = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("a reminder")
        .unwrap()
        .unwrap();
    assert_eq!(reminder.r#type, "certificate.expiring");
    clock.advance(chrono::Duration::days(11));
    let expired = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the expiry")
        .unwrap()
        .unwrap();
    assert_eq!(expired.r#type, "certificate.expired");
    assert!(renewal_events(&app).await.is_empty());
    assert_eq!(candidacies_of_person(&app, &world.person_id).await.len(), 1);
}
