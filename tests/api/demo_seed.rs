//! The demo data set tells the train-the-trainer story: `lms seed --profile demo` (run twice: a
//! second run changes nothing) leaves certified master trainers, candidates certified after
//! supervised co-deliveries and one still practising, a cascade with reach, verifiable
//! certificates, a certification report with rows and a renewal opened before an expiry.

use lms::pb::{self, certification_service_client::CertificationServiceClient};
use lms::tools::seed::{Profile, SeedArgs};

use crate::helpers::{TestApp, TestDatabase, spawn_app_with, test_config};

fn certs(app: &TestApp) -> CertificationServiceClient<tonic::transport::Channel> {
    CertificationServiceClient::new(app.channel.clone())
}

async fn seed_demo(database: &TestDatabase) {
    lms::tools::seed::run(
        test_config(database),
        SeedArgs {
            profile: Profile::Demo,
            seed: 42,
            officers: 0,
            ambassadors: 0,
            concurrency: 8,
            json: None,
        },
    )
    .await
    .expect("seed the demo");
}

async fn track(app: &TestApp, code: &str) -> pb::CertificationTrack {
    certs(app)
        .list_certification_tracks(app.admin(pb::ListCertificationTracksRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tracks
        .into_iter()
        .find(|track| track.code == code)
        .unwrap_or_else(|| panic!("track {code} is seeded"))
}

async fn certificates(app: &TestApp, track_id: &str) -> Vec<pb::Certificate> {
    certs(app)
        .list_certificates(app.admin(pb::ListCertificatesRequest {
            track_id: track_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .certificates
}

async fn candidacies(app: &TestApp, track_id: &str) -> Vec<pb::Candidacy> {
    certs(app)
        .list_candidacies(app.admin(pb::ListCandidaciesRequest {
            track_id: track_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .candidacies
}

async fn reach(app: &TestApp, person_id: &str) -> pb::GetCascadeReachResponse {
    certs(app)
        .get_cascade_reach(app.admin(pb::GetCascadeReachRequest {
            person_id: person_id.to_owned(),
            organization_level: 0,
        }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_demo_certifies_master_trainers_candidates_and_ambassadors_with_a_cascade() {
    let database = TestDatabase::fresh().await;
    seed_demo(&database).await;
    seed_demo(&database).await;
    let app = spawn_app_with(test_config(&database)).await;

    // The TVET vendor's master trainer.
    let master_track = track(&app, "TVET-MASTER").await;
    assert_eq!(master_track.level(), pb::TrackLevel::MasterTrainer);
    let masters = certificates(&app, &master_track.id).await;
    assert_eq!(masters.len(), 1, "one master trainer, once across two runs");
    assert_eq!(masters[0].status(), pb::CertificateStatus::Active);
    let master = masters[0].person_id.clone();

    // The three JTM candidates: two certified after supervised co-deliveries, one practising.
    let trainer_track = track(&app, "TVET-TRAINER").await;
    let mut states: Vec<(pb::CandidacyState, i32)> = candidacies(&app, &trainer_track.id)
        .await
        .iter()
        .map(|candidacy| (candidacy.state(), candidacy.passed_supervised_deliveries))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            (pb::CandidacyState::SupervisedPractice, 1),
            (pb::CandidacyState::Certified, 2),
            (pb::CandidacyState::Certified, 2),
        ]
    );
    let trainers = certificates(&app, &trainer_track.id).await;
    assert_eq!(trainers.len(), 2);

    // Who trained whom: the candidates and the trainees, below the master trainer.
    let tvet = reach(&app, &master).await;
    assert!(tvet.total_people > 3, "{tvet:?}");
    assert_eq!(tvet.total_certified_trainers, 2, "{tvet:?}");
    assert!(
        tvet.levels.len() >= 2,
        "the certified trainers trained in turn: {tvet:?}"
    );

    // AI At Work: 200 ambassadors certified, 270 officers trained by them.
    let ambassador_track = track(&app, "AIW-AMB").await;
    assert_eq!(certificates(&app, &ambassador_track.id).await.len(), 200);
    let aiw_master = certificates(&app, &track(&app, "AIW-MASTER").await.id).await[0]
        .person_id
        .clone();
    let aiw = reach(&app, &aiw_master).await;
    assert_eq!(aiw.total_certified_trainers, 200, "{aiw:?}");
    assert!(aiw.total_people >= 200 + 270, "{aiw:?}");

    // Anyone verifies a certificate by its code.
    let verified = certs(&app)
        .verify_certificate(pb::VerifyCertificateRequest {
            verification_code: trainers[0].verification_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid);
    assert_eq!(verified.track_code, "TVET-TRAINER");

    // The one-month refresher is close to expiry: its renewal candidacy is open.
    let safety = track(&app, "TVET-SAFETY").await;
    let refresher = certificates(&app, &safety.id).await;
    assert_eq!(refresher.len(), 1);
    let renewal: Vec<pb::Candidacy> = candidacies(&app, &safety.id)
        .await
        .into_iter()
        .filter(|candidacy| candidacy.renews_certificate_id == refresher[0].id)
        .collect();
    assert_eq!(renewal.len(), 1);
    assert_eq!(renewal[0].state(), pb::CandidacyState::Candidate);

    // The certification report has rows to show.
    let report = lms::pb::report_service_client::ReportServiceClient::new(app.channel.clone())
        .get_certification_report(app.admin(pb::GetCertificationReportRequest {
            track_id: trainer_track.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let total = report.total.unwrap();
    assert_eq!(total.certified, 2);
    assert_eq!(total.candidacies.get("SUPERVISED_PRACTICE"), Some(&1));
    app.stop().await;
}
