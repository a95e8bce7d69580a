//! Train-the-trainer over the API: the TVET and AI At Work cascades, the delivery rules,
//! certificates by the clock (expiry, suspension, revocation, renewal), signed credentials and
//! status lists verified offline, exactly-once issue under a race, public rate-limited verification.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{LazyLock, Mutex},
    time::{Duration, SystemTime},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind,
    certification_service_client::CertificationServiceClient,
    delivery_service_client::DeliveryServiceClient, progress_service_client::ProgressServiceClient,
};
use sha2::{Digest as _, Sha256};
use tonic::{Code, Request, Status};

use crate::helpers::{
    StateChange, TestApp, error_reason, spawn_app, spawn_app_with, test_config, with_token,
};
use crate::programmes::{
    courses, create_programme, import_people, open_cohort, phase, programmes, published_version,
};

type Certs = CertificationServiceClient<tonic::transport::Channel>;
type Delivery = DeliveryServiceClient<tonic::transport::Channel>;

pub(crate) fn certs(app: &TestApp) -> Certs {
    CertificationServiceClient::new(app.channel.clone())
}

fn delivery(app: &TestApp) -> Delivery {
    DeliveryServiceClient::new(app.channel.clone())
}

/// The assessor every track of these tests names, per test server (by its data dir), made when
/// the server's first track is created: assessors act on the tracks that name them only.
static ASSESSORS: LazyLock<Mutex<HashMap<PathBuf, String>>> = LazyLock::new(Mutex::default);

/// Wraps `message` in a request of the assessor the tracks of `app` name.
pub(crate) fn assessor<T>(app: &TestApp, message: T) -> Request<T> {
    let assessor_id = ASSESSORS
        .lock()
        .unwrap()
        .get(&app.config.data_dir)
        .cloned()
        .expect("a track names the assessor: create one first");
    with_token(message, &app.token(&assessor_id, &[Role::Assessor], None))
}

/// Returns the person id of the assessor of `app`'s tracks, made on first use.
pub(crate) async fn assessor_id(app: &TestApp) -> String {
    if let Some(id) = ASSESSORS.lock().unwrap().get(&app.config.data_dir) {
        return id.clone();
    }
    let board = app
        .create_organization(
            "Assessment Board",
            OrganizationKind::Agency,
            None,
            Some("ASSESSORS"),
        )
        .await;
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: vec![crate::helpers::person_record("ASSESSOR-1", "ASSESSORS")],
            request_id: String::new(),
        }))
        .await
        .expect("assessor");
    let id = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest {
            organization_subtree: board.id,
            ..Default::default()
        }))
        .await
        .expect("list assessors")
        .into_inner()
        .people
        .remove(0)
        .id;
    ASSESSORS
        .lock()
        .unwrap()
        .insert(app.config.data_dir.clone(), id.clone());
    id
}

fn as_trainer<T>(app: &TestApp, person_id: &str, message: T) -> Request<T> {
    with_token(message, &app.token(person_id, &[Role::Trainer], None))
}

fn hours_ago(hours: i64) -> prost_types::Timestamp {
    let time = if hours >= 0 {
        SystemTime::now() - Duration::from_secs(hours as u64 * 3600)
    } else {
        SystemTime::now() + Duration::from_secs((-hours) as u64 * 3600)
    };
    prost_types::Timestamp::from(time)
}

/// Returns the version's course id and its modules' (id, activity ids).
pub(crate) async fn version_layout(
    app: &TestApp,
    version_id: &str,
) -> (String, Vec<(String, Vec<String>)>) {
    let version = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let modules = version
        .modules
        .into_iter()
        .map(|module| {
            (
                module.id,
                module
                    .activities
                    .into_iter()
                    .map(|activity| activity.id)
                    .collect(),
            )
        })
        .collect();
    (version.course_id, modules)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_track(
    app: &TestApp,
    code: &str,
    level: pb::TrackLevel,
    course_ids: &[&str],
    requirements: pb::TrackRequirements,
    scope: pb::TrackScope,
    issuer: &str,
    validity_months: i32,
) -> pb::CertificationTrack {
    let assessor_id = assessor_id(app).await;
    certs(app)
        .create_certification_track(app.admin(pb::CreateCertificationTrackRequest {
            track: Some(pb::CertificationTrack {
                code: code.to_owned(),
                title: format!("Track {code}"),
                level: level.into(),
                qualifies_course_ids: course_ids.iter().map(|id| (*id).to_owned()).collect(),
                requirements: Some(requirements),
                validity_months,
                scope: scope.into(),
                issuer_organization_id: issuer.to_owned(),
                assessor_ids: vec![assessor_id],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create track")
        .into_inner()
}

fn step<R: StateChange>(id: &str, reason: &str) -> R {
    R::state_change(id, reason)
}

pub(crate) async fn open_candidacy(
    app: &TestApp,
    track_id: &str,
    person_id: &str,
) -> pb::Candidacy {
    certs(app)
        .create_candidacy(app.admin(pb::CreateCandidacyRequest {
            track_id: track_id.to_owned(),
            person_id: person_id.to_owned(),
            request_id: String::new(),
        }))
        .await
        .expect("open candidacy")
        .into_inner()
}

pub(crate) async fn start_training(app: &TestApp, id: &str) -> Result<pb::Candidacy, Status> {
    certs(app)
        .start_training(assessor(app, step(id, "enrolled in the trainer course")))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) async fn begin_practice(app: &TestApp, id: &str) -> Result<pb::Candidacy, Status> {
    certs(app)
        .begin_supervised_practice(assessor(app, step(id, "trainer course done")))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) async fn submit(app: &TestApp, id: &str) -> Result<pb::Candidacy, Status> {
    certs(app)
        .submit_for_assessment(assessor(app, step(id, "practice done")))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) async fn issue(app: &TestApp, candidacy_id: &str) -> Result<pb::Certificate, Status> {
    certs(app)
        .issue_certificate(assessor(
            app,
            pb::IssueCertificateRequest {
                candidacy_id: candidacy_id.to_owned(),
                reason: "all requirements met".to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Certifies `person_id` on a track without requirements (how the first master trainers enter).
pub(crate) async fn certify_directly(
    app: &TestApp,
    track_id: &str,
    person_id: &str,
) -> pb::Certificate {
    let candidacy = open_candidacy(app, track_id, person_id).await;
    start_training(app, &candidacy.id).await.unwrap();
    begin_practice(app, &candidacy.id).await.unwrap();
    submit(app, &candidacy.id).await.unwrap();
    issue(app, &candidacy.id).await.unwrap()
}

async fn schedule(
    app: &TestApp,
    cohort_id: &str,
    module_id: &str,
    lead: &str,
    co_trainers: &[&str],
    start_hours_ago: i64,
) -> Result<pb::Session, Status> {
    delivery(app)
        .create_session(app.admin(pb::CreateSessionRequest {
            session: Some(pb::Session {
                cohort_id: cohort_id.to_owned(),
                module_id: module_id.to_owned(),
                start_time: Some(hours_ago(start_hours_ago)),
                end_time: Some(hours_ago(start_hours_ago - 1)),
                location: "Lab 2, ILP Kuala Lumpur".to_owned(),
                lead_trainer_id: lead.to_owned(),
                co_trainer_ids: co_trainers.iter().map(|id| (*id).to_owned()).collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn attend(
    app: &TestApp,
    trainer: &str,
    session_id: &str,
    people: &[String],
) -> Result<pb::RecordAttendanceResponse, Status> {
    delivery(app)
        .record_attendance(as_trainer(
            app,
            trainer,
            pb::RecordAttendanceRequest {
                session_id: session_id.to_owned(),
                person_ids: people.to_vec(),
                status: pb::AttendanceStatus::Present.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn deliver(app: &TestApp, lead: &str, session_id: &str) -> Result<pb::Session, Status> {
    delivery(app)
        .mark_delivered(as_trainer(
            app,
            lead,
            pb::MarkDeliveredRequest {
                id: session_id.to_owned(),
                etag: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Enrols `people` in a cohort; returns their enrolment ids in order.
async fn enrol(app: &TestApp, cohort_id: &str, people: &[String]) -> Vec<String> {
    let response = programmes(app)
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: cohort_id.to_owned(),
            person_ids: people.to_vec(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    response
        .results
        .into_iter()
        .map(|result| result.enrollment.expect("enrolled").id)
        .collect()
}

async fn cohort_of(
    app: &TestApp,
    code: &str,
    sponsor: &str,
    version: &str,
    name: &str,
) -> pb::Cohort {
    let programme = create_programme(
        app,
        code,
        sponsor,
        &[],
        vec![phase("Only phase", &[version], "On site", 5)],
    )
    .await;
    open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: name.to_owned(),
            capacity: 1000,
            ..Default::default()
        },
    )
    .await
}

/// Records a COMPLETED self-study event for each enrolment (the trainer course done online).
async fn complete_online(app: &TestApp, enrollments: &[String], activity_id: &str) {
    for enrollment_id in enrollments {
        ProgressServiceClient::new(app.channel.clone())
            .record_progress(app.admin(pb::RecordProgressRequest {
                event: Some(pb::ProgressEvent {
                    event_id: uuid::Uuid::new_v4().to_string(),
                    enrollment_id: enrollment_id.clone(),
                    activity_id: activity_id.to_owned(),
                    verb: pb::ProgressVerb::Completed.into(),
                    duration_seconds: 3600,
                    occurred_time: Some(hours_ago(1)),
                    source: pb::ProgressSource::App.into(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("record completion");
    }
}

async fn reach(app: &TestApp, person_id: &str, level: i32) -> pb::GetCascadeReachResponse {
    certs(app)
        .get_cascade_reach(app.admin(pb::GetCascadeReachRequest {
            person_id: person_id.to_owned(),
            organization_level: level,
        }))
        .await
        .unwrap()
        .into_inner()
}

fn levels(reach: &pb::GetCascadeReachResponse) -> Vec<(i32, i64, i64)> {
    reach
        .levels
        .iter()
        .map(|level| (level.depth, level.people, level.certified_trainers))
        .collect()
}

async fn verify_code(app: &TestApp, code: &str) -> Result<pb::VerifyCertificateResponse, Status> {
    // No token: verification is public.
    certs(app)
        .verify_certificate(pb::VerifyCertificateRequest {
            verification_code: code.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn refused_with(result: Result<impl std::fmt::Debug, Status>, reason: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(&status), reason, "{status:?}");
    assert!(
        status.message().contains(reason) || !reason.contains("TRAINER"),
        "the message names the rule: {}",
        status.message()
    );
}

#[tokio::test]
async fn tvet_master_certifies_two_of_three_local_trainers_who_then_train_forty_trainees() {
    let (app, _database) = spawn_app().await;
    let vendor = app
        .create_organization(
            "Telecom vendor academy",
            OrganizationKind::Agency,
            None,
            Some("VENDOR"),
        )
        .await;
    let jtm = app
        .create_organization(
            "Manpower Department (JTM)",
            OrganizationKind::Agency,
            None,
            Some("JTM"),
        )
        .await;
    app.create_organization(
        "ILP Kuala Lumpur",
        OrganizationKind::TrainingCentre,
        Some(&jtm.id),
        Some("ILP-KL"),
    )
    .await;
    let master = import_people(&app, "MASTER", "VENDOR", 1, pb::Sector::Private).await[0].clone();
    let candidates = import_people(&app, "CAND", "JTM", 3, pb::Sector::Public).await;
    let trainees = import_people(&app, "TRAINEE", "ILP-KL", 40, pb::Sector::Public).await;

    let trainer_course = published_version(
        &app,
        "TTT-TEL",
        &vendor.id,
        &[("Teaching telecom", &[(Kind::SelfStudy, Mode::Online, None)])],
    )
    .await;
    let telecom = published_version(
        &app,
        "TEL-101",
        &vendor.id,
        &[(
            "Fibre basics",
            &[
                (Kind::Lecture, Mode::InPerson, None),
                (Kind::Lab, Mode::InPerson, None),
            ],
        )],
    )
    .await;
    let (trainer_course_id, trainer_modules) = version_layout(&app, &trainer_course).await;
    let (telecom_course_id, telecom_modules) = version_layout(&app, &telecom).await;
    let fibre = telecom_modules[0].0.clone();

    let master_track = create_track(
        &app,
        "TEL-MASTER",
        pb::TrackLevel::MasterTrainer,
        &[&telecom_course_id, &trainer_course_id],
        pb::TrackRequirements::default(),
        pb::TrackScope::Any,
        &vendor.id,
        24,
    )
    .await;
    let local_track = create_track(
        &app,
        "TEL-TRAINER",
        pb::TrackLevel::Trainer,
        &[&telecom_course_id],
        pb::TrackRequirements {
            trainer_course_version_ids: vec![trainer_course.clone()],
            min_assessment_score: 70,
            supervised_deliveries_required: 2,
            assessor_approval_required: true,
        },
        pb::TrackScope::Any,
        &jtm.id,
        24,
    )
    .await;
    certify_directly(&app, &master_track.id, &master).await;

    // The candidates take the trainer course.
    let ttt_cohort = cohort_of(&app, "TTT-PROG", &jtm.id, &trainer_course, "Trainers 2025").await;
    let ttt_enrollments = enrol(&app, &ttt_cohort.id, &candidates).await;
    let mut candidacies = Vec::new();
    for candidate in &candidates {
        let candidacy = open_candidacy(&app, &local_track.id, candidate).await;
        assert_eq!(candidacy.state(), pb::CandidacyState::Candidate);
        start_training(&app, &candidacy.id).await.unwrap();
        candidacies.push(candidacy.id);
    }
    refused_with(
        begin_practice(&app, &candidacies[0]).await,
        "TRAINING_NOT_COMPLETED",
    );
    complete_online(&app, &ttt_enrollments, &trainer_modules[0].1[0]).await;
    for candidacy in &candidacies {
        let moved = begin_practice(&app, candidacy).await.unwrap();
        assert_eq!(moved.state(), pb::CandidacyState::SupervisedPractice);
    }

    // The rules of delivery, before anyone but the master is certified.
    let practice = cohort_of(&app, "TEL-PRACTICE", &jtm.id, &telecom, "Practice batch").await;
    refused_with(
        schedule(&app, &practice.id, &fibre, &candidates[0], &[], 200).await,
        "LEAD_TRAINER_NOT_CERTIFIED",
    );
    refused_with(
        schedule(
            &app,
            &practice.id,
            &fibre,
            &candidates[0],
            &[&candidates[1]],
            200,
        )
        .await,
        "LEAD_TRAINER_NOT_CERTIFIED",
    );
    refused_with(
        schedule(&app, &practice.id, &fibre, &master, &[&trainees[0]], 200).await,
        "CO_TRAINER_NOT_QUALIFIED",
    );

    // Each candidate co-delivers two sessions under the master, who signs them off.
    let mut hours = 190;
    for (index, candidate) in candidates.iter().enumerate() {
        for round in 0..2 {
            let session = schedule(&app, &practice.id, &fibre, &master, &[candidate], hours)
                .await
                .expect("a candidate co-delivers under a certified lead");
            hours -= 2;
            refused_with(
                schedule(&app, &practice.id, &fibre, &master, &[], hours + 2).await,
                "TRAINER_DOUBLE_BOOKED",
            );
            let outsider = deliver(&app, candidate, &session.id).await.unwrap_err();
            assert_eq!(outsider.code(), Code::PermissionDenied);
            let delivered = deliver(&app, &master, &session.id).await.unwrap();
            assert_eq!(delivered.state(), pb::SessionState::Delivered);
            certs(&app)
                .record_supervised_delivery(as_trainer(
                    &app,
                    &master,
                    pb::RecordSupervisedDeliveryRequest {
                        session_id: session.id.clone(),
                        candidate_id: candidate.clone(),
                        outcome: pb::SupervisedDeliveryOutcome::Passed.into(),
                        notes: format!("round {round}"),
                    },
                ))
                .await
                .expect("the lead signs off");
            if index == 0 && round == 0 {
                refused_with(
                    submit(&app, &candidacies[0]).await,
                    "SUPERVISED_DELIVERIES_MISSING",
                );
            }
        }
    }
    for (candidacy, (score, approved)) in
        candidacies
            .iter()
            .zip([(85, true), (78, true), (40, false)])
    {
        submit(&app, candidacy).await.unwrap();
        certs(&app)
            .record_assessment(assessor(
                &app,
                pb::RecordAssessmentRequest {
                    id: candidacy.clone(),
                    score,
                    approved,
                    reason: "practical assessment".to_owned(),
                    etag: String::new(),
                    issue_certificate: false,
                },
            ))
            .await
            .unwrap();
    }
    let first = issue(&app, &candidacies[0]).await.unwrap();
    let second = issue(&app, &candidacies[1]).await.unwrap();
    refused_with(
        issue(&app, &candidacies[2]).await,
        "ASSESSMENT_SCORE_TOO_LOW",
    );
    assert_eq!(first.status(), pb::CertificateStatus::Active);
    assert_ne!(first.verification_code, second.verification_code);
    let history = certs(&app)
        .get_candidacy(assessor(
            &app,
            pb::GetCandidacyRequest {
                id: candidacies[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.state(), pb::CandidacyState::Certified);
    assert_eq!(history.passed_supervised_deliveries, 2);
    assert!(history.history.len() >= 5, "{:?}", history.history);

    // The failed candidate cannot lead; a certified local trainer trains the batch of 40.
    let batch = cohort_of(&app, "TEL-BATCH1", &jtm.id, &telecom, "Batch 1").await;
    let batch_enrollments = enrol(&app, &batch.id, &trainees).await;
    refused_with(
        schedule(&app, &batch.id, &fibre, &candidates[2], &[], 20).await,
        "LEAD_TRAINER_NOT_CERTIFIED",
    );
    let class = schedule(&app, &batch.id, &fibre, &candidates[0], &[], 20)
        .await
        .unwrap();
    let marked = attend(&app, &candidates[0], &class.id, &trainees)
        .await
        .unwrap();
    assert_eq!(marked.events_recorded, 80, "lecture and lab for each of 40");
    let again = attend(&app, &candidates[0], &class.id, &trainees)
        .await
        .unwrap();
    assert_eq!(again.events_recorded, 0, "attendance is idempotent");
    deliver(&app, &candidates[0], &class.id).await.unwrap();
    let enrollment = programmes(&app)
        .get_enrollment(app.admin(pb::GetEnrollmentRequest {
            id: batch_enrollments[0].clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enrollment.state(), pb::EnrollmentState::Completed);

    let master_reach = reach(&app, &master, 0).await;
    assert_eq!(levels(&master_reach), vec![(1, 2, 2), (2, 40, 0)]);
    assert_eq!(master_reach.total_certified_trainers, 2);
    assert_eq!(master_reach.total_people, 42);
    let tree = certs(&app)
        .get_cascade(app.admin(pb::GetCascadeRequest {
            person_id: master.clone(),
            depth: 2,
            page_size: 30,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.nodes.len(), 30);
    assert!(!tree.next_page_token.is_empty());
    assert!(
        tree.nodes[..2]
            .iter()
            .all(|node| node.depth == 1 && node.certified && node.trained_by == [master.clone()])
    );
    assert!(
        tree.nodes[2..]
            .iter()
            .all(|node| node.depth == 2 && node.trained_by == [candidates[0].clone()])
    );

    let verified = verify_code(&app, &first.verification_code.to_lowercase())
        .await
        .unwrap();
    assert!(verified.valid);
    assert_eq!(verified.holder_name, "Officer CAND-0000");
    assert_eq!(verified.track_code, "TEL-TRAINER");
    assert_eq!(verified.issuer_name, "Manpower Department (JTM)");
}

#[tokio::test]
async fn ai_at_work_ambassadors_train_their_own_departments_and_reach_is_counted_per_ministry() {
    let (app, _database) = spawn_app().await;
    let digital = app
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            Some("KD"),
        )
        .await;
    let vendor = app
        .create_organization(
            "Cloud vendor",
            OrganizationKind::Agency,
            None,
            Some("CLOUD"),
        )
        .await;
    let mut ministries = Vec::new();
    let mut departments = Vec::new();
    for ministry_index in 0..2 {
        let ministry = app
            .create_organization(
                &format!("Ministry {ministry_index}"),
                OrganizationKind::Ministry,
                None,
                Some(&format!("M{ministry_index}")),
            )
            .await;
        for department_index in 0..5 {
            let code = format!("M{ministry_index}-D{department_index}");
            app.create_organization(
                &format!("Department {code}"),
                OrganizationKind::Department,
                Some(&ministry.id),
                Some(&code),
            )
            .await;
            departments.push(code);
        }
        ministries.push(ministry);
    }
    let master = import_people(&app, "MASTER", "CLOUD", 1, pb::Sector::Private).await[0].clone();
    let five_day = published_version(
        &app,
        "AIW-TTT",
        &vendor.id,
        &[(
            "Five days of generative AI",
            &[(Kind::Workshop, Mode::InPerson, None)],
        )],
    )
    .await;
    let officer_course = published_version(
        &app,
        "AIW-101",
        &vendor.id,
        &[("AI at work", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (five_day_course, five_day_modules) = version_layout(&app, &five_day).await;
    let (officer_course_id, officer_modules) = version_layout(&app, &officer_course).await;
    let master_track = create_track(
        &app,
        "AIW-MASTER",
        pb::TrackLevel::MasterTrainer,
        &[&five_day_course, &officer_course_id],
        pb::TrackRequirements::default(),
        pb::TrackScope::Any,
        &digital.id,
        12,
    )
    .await;
    let ambassador_track = create_track(
        &app,
        "AIW-AMBASSADOR",
        pb::TrackLevel::Ambassador,
        &[&officer_course_id],
        pb::TrackRequirements {
            trainer_course_version_ids: vec![five_day.clone()],
            ..Default::default()
        },
        pb::TrackScope::OwnOrganization,
        &digital.id,
        12,
    )
    .await;
    certify_directly(&app, &master_track.id, &master).await;

    // One ambassador per department attends the master's five-day course.
    let mut ambassadors = Vec::new();
    for code in &departments {
        ambassadors.push(
            import_people(&app, &format!("AMB-{code}"), code, 1, pb::Sector::Public).await[0]
                .clone(),
        );
    }
    let ttt = cohort_of(&app, "AIW-TTT-P", &digital.id, &five_day, "Ambassadors").await;
    enrol(&app, &ttt.id, &ambassadors).await;
    let course = schedule(&app, &ttt.id, &five_day_modules[0].0, &master, &[], 100)
        .await
        .unwrap();
    let marked = attend(&app, &master, &course.id, &ambassadors)
        .await
        .unwrap();
    assert_eq!(marked.events_recorded, 10);
    deliver(&app, &master, &course.id).await.unwrap();
    for ambassador in &ambassadors {
        let candidacy = open_candidacy(&app, &ambassador_track.id, ambassador).await;
        start_training(&app, &candidacy.id).await.unwrap();
        begin_practice(&app, &candidacy.id).await.unwrap();
        submit(&app, &candidacy.id).await.unwrap();
        issue(&app, &candidacy.id).await.unwrap();
    }

    // Each trains three officers of their own department, and is refused outside it.
    let programme = create_programme(
        &app,
        "AIW",
        &digital.id,
        &[],
        vec![phase("Officers", &[&officer_course], "Department", 1)],
    )
    .await;
    let mut cohorts = Vec::new();
    for code in &departments {
        let officers =
            import_people(&app, &format!("OFF-{code}"), code, 3, pb::Sector::Public).await;
        let cohort = open_cohort(
            &app,
            &programme.id,
            pb::Cohort {
                name: format!("Cohort {code}"),
                capacity: 50,
                ..Default::default()
            },
        )
        .await;
        enrol(&app, &cohort.id, &officers).await;
        cohorts.push((cohort.id, officers));
    }
    refused_with(
        schedule(
            &app,
            &cohorts[1].0,
            &officer_modules[0].0,
            &ambassadors[0],
            &[],
            50,
        )
        .await,
        "LEAD_TRAINER_OUT_OF_SCOPE",
    );
    for (index, (cohort_id, officers)) in cohorts.iter().enumerate() {
        let session = schedule(
            &app,
            cohort_id,
            &officer_modules[0].0,
            &ambassadors[index],
            &[],
            50,
        )
        .await
        .expect("an ambassador trains their own department");
        attend(&app, &ambassadors[index], &session.id, officers)
            .await
            .unwrap();
        deliver(&app, &ambassadors[index], &session.id)
            .await
            .unwrap();
    }

    let by_ministry = reach(&app, &master, 1).await;
    assert_eq!(levels(&by_ministry), vec![(1, 10, 10), (2, 30, 0)]);
    let mut per_ministry: Vec<(String, i64, i64)> = by_ministry
        .organizations
        .iter()
        .map(|row| (row.name.clone(), row.people, row.certified_trainers))
        .collect();
    per_ministry.sort();
    assert_eq!(
        per_ministry,
        vec![
            ("Ministry 0".to_owned(), 20, 5),
            ("Ministry 1".to_owned(), 20, 5)
        ]
    );
    let by_department = reach(&app, &ambassadors[0], 0).await;
    assert_eq!(by_department.total_people, 3);
    assert_eq!(by_department.organizations.len(), 1);
    let trainers = certs(&app)
        .list_certified_trainers(app.admin(pb::ListCertifiedTrainersRequest {
            module_id: officer_modules[0].0.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trainers.trainers.len(), 11, "10 ambassadors and the master");
}

/// A certified person on a track without requirements; returns (app-level ids).
pub(crate) struct Holder {
    pub(crate) issuer_id: String,
    pub(crate) cohort_id: String,
    pub(crate) module_id: String,
    pub(crate) person_id: String,
    pub(crate) certificate: pb::Certificate,
}

pub(crate) async fn holder(app: &TestApp) -> Holder {
    let issuer = app
        .create_organization(
            "Vendor academy",
            OrganizationKind::Agency,
            None,
            Some("ACAD"),
        )
        .await;
    let version = published_version(
        app,
        "C-1",
        &issuer.id,
        &[("Module", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (course_id, modules) = version_layout(app, &version).await;
    let track = create_track(
        app,
        "MASTER",
        pb::TrackLevel::MasterTrainer,
        &[&course_id],
        pb::TrackRequirements::default(),
        pb::TrackScope::Any,
        &issuer.id,
        24,
    )
    .await;
    let person_id = import_people(app, "HOLDER", "ACAD", 1, pb::Sector::Private).await[0].clone();
    let certificate = certify_directly(app, &track.id, &person_id).await;
    let cohort = cohort_of(app, "P-1", &issuer.id, &version, "Cohort").await;
    Holder {
        issuer_id: issuer.id,
        cohort_id: cohort.id,
        module_id: modules[0].0.clone(),
        person_id,
        certificate,
    }
}

pub(crate) async fn change(
    app: &TestApp,
    id: &str,
    action: &str,
) -> Result<pb::Certificate, Status> {
    let reason = format!("{action} by the assessor");
    let mut client = certs(app);
    let response = match action {
        "suspend" => {
            client
                .suspend_certificate(assessor(app, step(id, &reason)))
                .await
        }
        "reinstate" => {
            client
                .reinstate_certificate(assessor(app, step(id, &reason)))
                .await
        }
        "renew" => {
            client
                .renew_certificate(assessor(app, step(id, &reason)))
                .await
        }
        _ => {
            client
                .revoke_certificate(assessor(app, step(id, &reason)))
                .await
        }
    };
    response.map(tonic::Response::into_inner)
}

/// Verifies an `eddsa-jcs-2022` proof independently of the server's code: JCS is serde_json's
/// sorted-key output for these documents, the key is the raw one published by `GetIssuerKeys`.
fn proof_verifies(document: &serde_json::Value, public_key: &VerifyingKey) -> bool {
    let mut unsecured = document.clone();
    let Some(mut proof) = unsecured
        .as_object_mut()
        .and_then(|fields| fields.remove("proof"))
    else {
        return false;
    };
    let Some(value) = proof
        .as_object_mut()
        .and_then(|fields| fields.remove("proofValue"))
    else {
        return false;
    };
    let Some(bytes) = value
        .as_str()
        .and_then(|text| text.strip_prefix('z'))
        .and_then(lms::domain::certification::credential::base58_decode)
    else {
        return false;
    };
    let Ok(signature) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    let canonical = |value: &serde_json::Value| serde_json::to_string(value).unwrap();
    let mut data = Sha256::digest(canonical(&proof).as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(canonical(&unsecured).as_bytes()));
    public_key
        .verify(&data, &Signature::from_bytes(&signature))
        .is_ok()
}

async fn issuer_key(app: &TestApp, issuer_id: &str) -> (VerifyingKey, pb::IssuerKey) {
    let keys = certs(app)
        .get_issuer_keys(pb::GetIssuerKeysRequest {
            issuer_organization_id: issuer_id.to_owned(),
        })
        .await
        .expect("issuer keys are public")
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    let raw: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&keys[0].public_key_base64url)
        .unwrap()
        .try_into()
        .unwrap();
    (VerifyingKey::from_bytes(&raw).unwrap(), keys[0].clone())
}

async fn status_bit(app: &TestApp, issuer_id: &str, purpose: &str, index: i32) -> bool {
    let (key, _) = issuer_key(app, issuer_id).await;
    let json = certs(app)
        .get_status_list_credential(pb::GetStatusListCredentialRequest {
            issuer_organization_id: issuer_id.to_owned(),
            purpose: purpose.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .credential_json;
    let credential: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        proof_verifies(&credential, &key),
        "the status list is signed"
    );
    let encoded = credential["credentialSubject"]["encodedList"]
        .as_str()
        .unwrap();
    lms::domain::certification::credential::status_bit(encoded, index).unwrap()
}

#[tokio::test]
async fn certificates_expire_by_the_clock_and_are_suspended_revoked_and_renewed() {
    let (app, _database) = spawn_app().await;
    let world = holder(&app).await;
    let code = world.certificate.verification_code.clone();
    let index = world.certificate.status_list_index;

    // The signed credential verifies offline with the published key, and fails on one changed byte.
    let verified = verify_code(&app, &code).await.unwrap();
    assert!(verified.valid);
    assert_eq!(verified.status(), pb::CertificateStatus::Active);
    let (key, published) = issuer_key(&app, &world.issuer_id).await;
    let credential: serde_json::Value = serde_json::from_str(&verified.credential_json).unwrap();
    assert!(proof_verifies(&credential, &key));
    assert_eq!(credential["issuer"]["id"], published.issuer_did);
    assert_eq!(
        credential["credentialSubject"]["name"],
        "Officer HOLDER-0000"
    );
    assert!(
        !verified.credential_json.contains(&world.person_id),
        "the credential says nothing else about the person"
    );
    let text = verified.credential_json.clone();
    let position = text.find("Officer HOLDER").unwrap() + 1;
    let mut tampered = text.into_bytes();
    tampered[position] ^= 0x01;
    let tampered: serde_json::Value = serde_json::from_slice(&tampered).unwrap();
    assert!(!proof_verifies(&tampered, &key));

    // Suspension stops qualifying the holder at once and shows in the status list.
    change(&app, &world.certificate.id, "suspend")
        .await
        .unwrap();
    let suspended = verify_code(&app, &code).await.unwrap();
    assert!(!suspended.valid);
    assert_eq!(suspended.status(), pb::CertificateStatus::Suspended);
    assert!(status_bit(&app, &world.issuer_id, "suspension", index).await);
    refused_with(
        schedule(
            &app,
            &world.cohort_id,
            &world.module_id,
            &world.person_id,
            &[],
            10,
        )
        .await,
        "LEAD_TRAINER_NOT_CERTIFIED",
    );
    change(&app, &world.certificate.id, "reinstate")
        .await
        .unwrap();
    assert!(!status_bit(&app, &world.issuer_id, "suspension", index).await);
    let session = schedule(
        &app,
        &world.cohort_id,
        &world.module_id,
        &world.person_id,
        &[],
        10,
    )
    .await
    .unwrap();

    // Expiry by the clock: EXPIRED the moment it passes, no job needed.
    let clock = app.config.certification.clock.clone();
    clock.advance(chrono::Duration::days(24 * 31 + 1));
    let expired = verify_code(&app, &code).await.unwrap();
    assert_eq!(expired.status(), pb::CertificateStatus::Expired);
    assert!(!expired.valid);
    refused_with(
        deliver(&app, &world.person_id, &session.id).await,
        "LEAD_TRAINER_NOT_CERTIFIED",
    );
    // The refusal names the lapsed certificate and the day it expired, not just the rule.
    let refusal = deliver(&app, &world.person_id, &session.id)
        .await
        .unwrap_err();
    let expire_date = world
        .certificate
        .expires_time
        .as_ref()
        .map(|time| {
            chrono::DateTime::from_timestamp(time.seconds, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap();
    assert_eq!(
        crate::helpers::error_metadata(&refusal, "certificate_id").as_deref(),
        Some(world.certificate.id.as_str()),
        "{refusal:?}"
    );
    assert_eq!(
        crate::helpers::error_metadata(&refusal, "expire_date"),
        Some(expire_date.clone())
    );
    assert_eq!(
        crate::helpers::error_metadata(&refusal, "person_id").as_deref(),
        Some(world.person_id.as_str())
    );
    assert!(
        refusal.message().contains(&world.certificate.id)
            && refusal
                .message()
                .contains(&format!("expired on {expire_date}")),
        "{}",
        refusal.message()
    );
    let candidacy = certs(&app)
        .get_candidacy(assessor(
            &app,
            pb::GetCandidacyRequest {
                id: world.certificate.candidacy_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(candidacy.state(), pb::CandidacyState::Expired);
    refused_with(
        change(&app, &world.certificate.id, "suspend").await,
        "INVALID_CERTIFICATE_TRANSITION",
    );

    // Renewal: a new certificate (cycle 2); the old one is superseded; the lead qualifies again.
    let renewed = change(&app, &world.certificate.id, "renew").await.unwrap();
    assert_eq!(renewed.cycle, 2);
    assert_ne!(renewed.id, world.certificate.id);
    assert_eq!(renewed.status(), pb::CertificateStatus::Active);
    assert_eq!(
        verify_code(&app, &code).await.unwrap().status(),
        pb::CertificateStatus::Superseded
    );
    assert!(
        verify_code(&app, &renewed.verification_code)
            .await
            .unwrap()
            .valid
    );
    deliver(&app, &world.person_id, &session.id).await.unwrap();

    // Revocation is final and published.
    change(&app, &renewed.id, "revoke").await.unwrap();
    let revoked = verify_code(&app, &renewed.verification_code).await.unwrap();
    assert_eq!(revoked.status(), pb::CertificateStatus::Revoked);
    assert!(
        status_bit(
            &app,
            &world.issuer_id,
            "revocation",
            renewed.status_list_index
        )
        .await
    );
    refused_with(
        change(&app, &renewed.id, "reinstate").await,
        "INVALID_CERTIFICATE_TRANSITION",
    );
    let candidacy = certs(&app)
        .get_candidacy(assessor(
            &app,
            pb::GetCandidacyRequest {
                id: world.certificate.candidacy_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(candidacy.state(), pb::CandidacyState::Revoked);

    // Unknown and malformed codes.
    assert_eq!(
        verify_code(&app, "ZZZZ-ZZZZ-ZZZZ")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        verify_code(&app, "not a code").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn two_concurrent_issue_calls_make_one_certificate() {
    let (app, _database) = spawn_app().await;
    let issuer = app
        .create_organization("Academy", OrganizationKind::Agency, None, Some("ACAD"))
        .await;
    let version = published_version(
        &app,
        "C-1",
        &issuer.id,
        &[("Module", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (course_id, _) = version_layout(&app, &version).await;
    let track = create_track(
        &app,
        "T",
        pb::TrackLevel::Trainer,
        &[&course_id],
        pb::TrackRequirements::default(),
        pb::TrackScope::Any,
        &issuer.id,
        12,
    )
    .await;
    let people = import_people(&app, "P", "ACAD", 4, pb::Sector::Public).await;
    for person in &people {
        let candidacy = open_candidacy(&app, &track.id, person).await;
        start_training(&app, &candidacy.id).await.unwrap();
        begin_practice(&app, &candidacy.id).await.unwrap();
        submit(&app, &candidacy.id).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut client = certs(&app);
            let request = assessor(
                &app,
                pb::IssueCertificateRequest {
                    candidacy_id: candidacy.id.clone(),
                    reason: "race".to_owned(),
                },
            );
            tasks.push(tokio::spawn(async move {
                client.issue_certificate(request).await
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(
                task.await
                    .unwrap()
                    .expect("every call answers")
                    .into_inner()
                    .id,
            );
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "one certificate: {ids:?}");
        let listed = certs(&app)
            .list_certificates(assessor(
                &app,
                pb::ListCertificatesRequest {
                    person_id: person.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.certificates.len(), 1);
    }
}

#[tokio::test]
async fn verification_is_public_and_rate_limited_while_the_rest_needs_roles() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.certification.verify_burst = 3;
    config.certification.verify_rate_per_second = 1;
    let app = spawn_app_with(config).await;
    let world = holder(&app).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(verify_code(&app, &world.certificate.verification_code).await);
    }
    assert!(answers[0].is_ok());
    let limited = answers.iter().filter(|answer| {
        answer
            .as_ref()
            .is_err_and(|status| status.code() == Code::ResourceExhausted)
    });
    assert!(limited.count() >= 2, "{answers:?}");

    let learner = app.token(&world.person_id, &[Role::Learner], None);
    let denied = certs(&app)
        .revoke_certificate(with_token(
            pb::RevokeCertificateRequest {
                id: world.certificate.id.clone(),
                reason: "x".to_owned(),
                etag: String::new(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = certs(&app)
        .issue_certificate(pb::IssueCertificateRequest {
            candidacy_id: world.certificate.candidacy_id.clone(),
            reason: "x".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let missing_reason = certs(&app)
        .suspend_certificate(assessor(
            &app,
            pb::SuspendCertificateRequest {
                id: world.certificate.id.clone(),
                reason: " ".to_owned(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::violated_fields(&missing_reason), ["reason"]);
    let backwards = delivery(&app)
        .create_session(app.admin(pb::CreateSessionRequest {
            session: Some(pb::Session {
                cohort_id: world.cohort_id.clone(),
                module_id: world.module_id.clone(),
                start_time: Some(hours_ago(1)),
                end_time: Some(hours_ago(2)),
                lead_trainer_id: world.person_id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&backwards),
        ["session.end_time"]
    );
    assert_eq!(world.issuer_id.len(), 36);
}

#[tokio::test]
async fn the_certification_report_counts_candidacies_and_certificates_per_organisation() {
    let (app, _database) = spawn_app().await;
    let first = holder(&app).await;
    let track_id = first.certificate.track_id.clone();
    let others = import_people(&app, "MORE", "ACAD", 3, pb::Sector::Private).await;
    let second = certify_directly(&app, &track_id, &others[0]).await;
    let third = certify_directly(&app, &track_id, &others[1]).await;
    open_candidacy(&app, &track_id, &others[2]).await;
    change(&app, &second.id, "suspend").await.unwrap();
    change(&app, &third.id, "revoke").await.unwrap();

    let mut reports = lms::pb::report_service_client::ReportServiceClient::new(app.channel.clone());
    let report = |days: i32| pb::GetCertificationReportRequest {
        track_id: track_id.clone(),
        organization_id: String::new(),
        expiring_within_days: days,
    };
    let now = reports
        .get_certification_report(app.admin(report(3650)))
        .await
        .unwrap()
        .into_inner();
    let total = now.total.unwrap();
    assert_eq!(
        (
            total.certified,
            total.expiring_soon,
            total.suspended,
            total.revoked,
            total.expired
        ),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(total.candidacies.values().sum::<i64>(), 4);
    assert_eq!(total.candidacies.get("CANDIDATE"), Some(&1));
    assert_eq!(now.rows.len(), 1);
    assert_eq!(now.rows[0].key, first.issuer_id);
    let soon = reports
        .get_certification_report(app.admin(report(30)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        soon.total.unwrap().expiring_soon,
        0,
        "24-month certificates are not expiring within 30 days"
    );

    app.config
        .certification
        .clock
        .advance(chrono::Duration::days(800));
    let later = reports
        .get_certification_report(app.admin(report(30)))
        .await
        .unwrap()
        .into_inner();
    let total = later.total.unwrap();
    assert_eq!(
        (total.certified, total.expired),
        (0, 1),
        "expiry by time, without any job"
    );
}

/// One call of a random candidacy history.
#[derive(Debug, Clone)]
enum CandidacyCall {
    StartTraining,
    BeginPractice,
    Submit,
    Assess { score: i32, approved: bool },
    Issue,
}

fn candidacy_call() -> impl proptest::strategy::Strategy<Value = CandidacyCall> {
    use proptest::prelude::*;
    prop_oneof![
        Just(CandidacyCall::StartTraining),
        Just(CandidacyCall::BeginPractice),
        Just(CandidacyCall::Submit),
        (0i32..=100, any::<bool>())
            .prop_map(|(score, approved)| CandidacyCall::Assess { score, approved }),
        Just(CandidacyCall::Issue),
    ]
}

/// Random sequences of the candidacy RPCs, on a track that requires a supervised delivery the
/// sequences never record: no sequence may certify, whatever the scores and approvals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_call_sequence_certifies_a_candidate_missing_a_requirement() {
    use proptest::prelude::*;
    let (app, _database) = spawn_app().await;
    let issuer = app
        .create_organization("Academy", OrganizationKind::Agency, None, Some("ACAD"))
        .await;
    let version = published_version(
        &app,
        "PROP-1",
        &issuer.id,
        &[("Module", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (course_id, _) = version_layout(&app, &version).await;
    let requirements = pb::TrackRequirements {
        trainer_course_version_ids: Vec::new(),
        min_assessment_score: 70,
        supervised_deliveries_required: 1,
        assessor_approval_required: true,
    };
    let track = create_track(
        &app,
        "PROP",
        pb::TrackLevel::Trainer,
        &[&course_id],
        requirements,
        pb::TrackScope::Any,
        &issuer.id,
        12,
    )
    .await;
    let app = std::sync::Arc::new(app);
    let handle = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &proptest::collection::vec(candidacy_call(), 1..12),
            |calls| {
                let app = app.clone();
                let track_id = track.id.clone();
                let number = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::block_in_place(|| {
                    handle.block_on(async move {
                        let person = import_people(
                            &app,
                            &format!("PROP{number}"),
                            "ACAD",
                            1,
                            pb::Sector::Public,
                        )
                        .await[0]
                            .clone();
                        let candidacy = open_candidacy(&app, &track_id, &person).await;
                        for call in calls {
                            let result = match call {
                                CandidacyCall::StartTraining => {
                                    start_training(&app, &candidacy.id).await.map(|c| c.state())
                                }
                                CandidacyCall::BeginPractice => {
                                    begin_practice(&app, &candidacy.id).await.map(|c| c.state())
                                }
                                CandidacyCall::Submit => {
                                    submit(&app, &candidacy.id).await.map(|c| c.state())
                                }
                                CandidacyCall::Assess { score, approved } => certs(&app)
                                    .record_assessment(assessor(
                                        &app,
                                        pb::RecordAssessmentRequest {
                                            id: candidacy.id.clone(),
                                            score,
                                            approved,
                                            reason: "assessed".to_owned(),
                                            etag: String::new(),
                                            issue_certificate: false,
                                        },
                                    ))
                                    .await
                                    .map(|response| response.into_inner().state()),
                                CandidacyCall::Issue => {
                                    let issued = issue(&app, &candidacy.id).await;
                                    assert!(
                                        issued.is_err(),
                                        "a certificate was issued without a supervised delivery"
                                    );
                                    continue;
                                }
                            };
                            if let Ok(state) = result {
                                assert_ne!(state, pb::CandidacyState::Certified);
                            }
                        }
                        let listed = certs(&app)
                            .list_certificates(app.admin(pb::ListCertificatesRequest {
                                person_id: person.clone(),
                                ..Default::default()
                            }))
                            .await
                            .unwrap()
                            .into_inner();
                        assert!(listed.certificates.is_empty());
                    });
                });
                Ok(())
            },
        )
        .expect("no sequence certifies without every requirement");
}

/// Reads the `certificate.expired` events of the feed, until caught up.
async fn expiry_events(app: &TestApp) -> Vec<pb::DomainEvent> {
    use futures::StreamExt as _;
    let mut stream = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["certificate.expired".to_owned()],
            until_caught_up: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    events
}

#[tokio::test]
async fn an_expiring_certificate_is_announced_once_and_again_after_renewal_expires() {
    use futures::StreamExt as _;

    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = test_config(&database);
    config.certification.expiry_sweep_interval = Duration::from_millis(50);
    let app = spawn_app_with(config).await;
    let world = holder(&app).await;
    let clock = app.config.certification.clock.clone();
    let mut watcher = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["certificate.expired".to_owned()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    // A store of our own, as a second replica sweeping beside the server's background sweeper.
    let replica = lms::store::Store::connect(&app.config).await.unwrap();
    assert_eq!(
        replica
            .publish_certificate_expiries(clock.now())
            .await
            .unwrap(),
        0,
        "nothing has expired yet"
    );
    assert!(expiry_events(&app).await.is_empty());

    clock.advance(chrono::Duration::days(24 * 31 + 1));
    // Several sweeps at once (and the server's own every 50 ms) announce it once between them.
    let sweeps = futures::future::join_all((0..4).map(|_| {
        let replica = replica.clone();
        let now = clock.now();
        async move { replica.publish_certificate_expiries(now).await.unwrap() }
    }))
    .await;
    assert!(sweeps.iter().sum::<usize>() <= 1);
    let event = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the expiry reaches the watcher")
        .unwrap()
        .unwrap();
    assert_eq!(event.r#type, "certificate.expired");
    assert_eq!(event.subject_id, world.certificate.id);
    assert_eq!(event.person_id, world.person_id);
    let payload: serde_json::Value = serde_json::from_str(&event.payload_json).unwrap();
    assert_eq!(payload["certificate_id"], world.certificate.id.as_str());
    assert_eq!(payload["status"], "EXPIRED");
    assert_eq!(payload["cycle"], world.certificate.cycle);
    assert_eq!(
        replica
            .publish_certificate_expiries(clock.now())
            .await
            .unwrap(),
        0,
        "a second sweep announces nothing"
    );

    // Renewal issues a new certificate; when it expires in turn, it is announced in turn.
    let renewed = change(&app, &world.certificate.id, "renew").await.unwrap();
    assert_ne!(renewed.id, world.certificate.id);
    clock.advance(chrono::Duration::days(24 * 31 + 1));
    let event = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the renewed certificate's expiry reaches the watcher")
        .unwrap()
        .unwrap();
    assert_eq!(event.subject_id, renewed.id);
    assert_eq!(
        replica
            .publish_certificate_expiries(clock.now())
            .await
            .unwrap(),
        0
    );
    let announced: Vec<String> = expiry_events(&app)
        .await
        .into_iter()
        .map(|event| event.subject_id)
        .collect();
    assert_eq!(
        announced,
        vec![world.certificate.id.clone(), renewed.id.clone()],
        "exactly one event per expiry, in order"
    );
    replica.close().await;
}

/// Reads the `certificate.expiring` events of the feed, until caught up: (subject, days_before).
async fn reminder_events(app: &TestApp) -> Vec<(String, i64)> {
    use futures::StreamExt as _;
    let mut stream = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["certificate.expiring".to_owned()],
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
        assert_eq!(payload["certificate_id"], event.subject_id.as_str());
        assert!(payload["expires_time"].is_string());
        events.push((event.subject_id, payload["days_before"].as_i64().unwrap()));
    }
    events
}

#[tokio::test]
async fn expiry_reminders_are_published_once_per_offset_at_the_nearest_offset_reached() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = test_config(&database);
    // No background sweep: the replicas below are the only sweepers, so the counts are exact.
    config.certification.expiry_sweep_interval = Duration::ZERO;
    let app = spawn_app_with(config).await;
    let world = holder(&app).await;
    let clock = app.config.certification.clock.clone();
    let expires = {
        let time = world.certificate.expires_time.unwrap();
        chrono::DateTime::from_timestamp(time.seconds, time.nanos as u32).unwrap()
    };
    let days = &app.config.certification.expiry_reminder_days.0;
    assert_eq!(days, &vec![90, 60, 30, 7], "the default offsets");
    let replica = lms::store::Store::connect(&app.config).await.unwrap();
    let sweep = |now| {
        let replicas = (0..4).map(|_| replica.clone()).collect::<Vec<_>>();
        async move {
            futures::future::join_all(replicas.into_iter().map(|replica| async move {
                replica
                    .publish_certificate_reminders(now, &[90, 60, 30, 7])
                    .await
                    .unwrap()
            }))
            .await
            .into_iter()
            .sum::<usize>()
        }
    };

    assert_eq!(sweep(clock.now()).await, 0, "two years ahead: nothing due");
    clock.advance(expires - clock.now() - chrono::Duration::days(91));
    assert_eq!(sweep(clock.now()).await, 0, "91 days ahead: nothing due");
    clock.advance(chrono::Duration::days(2));
    assert_eq!(
        sweep(clock.now()).await,
        1,
        "four sweeps at once remind once"
    );
    assert_eq!(sweep(clock.now()).await, 0, "and never again at 90 days");
    assert_eq!(
        reminder_events(&app).await,
        vec![(world.certificate.id.clone(), 90)]
    );
    // Weeks without a sweep: at 5 days it is reminded at 7 days only, not at 60, 30 and 7.
    clock.advance(expires - clock.now() - chrono::Duration::days(5));
    assert_eq!(sweep(clock.now()).await, 1);
    assert_eq!(sweep(clock.now()).await, 0);
    assert_eq!(
        reminder_events(&app).await,
        vec![
            (world.certificate.id.clone(), 90),
            (world.certificate.id.clone(), 7)
        ]
    );
    // A renewal is a new certificate with a new expiry: its reminders come in turn; a revoked
    // certificate is never reminded.
    let renewed = change(&app, &world.certificate.id, "renew").await.unwrap();
    let renewed_expires = {
        let time = renewed.expires_time.unwrap();
        chrono::DateTime::from_timestamp(time.seconds, time.nanos as u32).unwrap()
    };
    clock.advance(renewed_expires - clock.now() - chrono::Duration::days(29));
    assert_eq!(sweep(clock.now()).await, 1);
    assert_eq!(
        reminder_events(&app).await.last(),
        Some(&(renewed.id.clone(), 30))
    );
    change(&app, &renewed.id, "revoke").await.unwrap();
    clock.advance(chrono::Duration::days(25));
    assert_eq!(sweep(clock.now()).await, 0, "revoked: no 7-day reminder");
    replica.close().await;
}

#[tokio::test]
async fn the_dashboard_counts_sessions_delivered_and_trainers_active_and_certified() {
    let (app, _database) = spawn_app().await;
    let world = holder(&app).await;
    let candidate = import_people(&app, "CAND", "ACAD", 1, pb::Sector::Private).await[0].clone();
    let candidacy = open_candidacy(&app, &world.certificate.track_id, &candidate).await;
    start_training(&app, &candidacy.id).await.unwrap();
    begin_practice(&app, &candidacy.id).await.unwrap();
    let session = schedule(
        &app,
        &world.cohort_id,
        &world.module_id,
        &world.person_id,
        &[&candidate],
        30,
    )
    .await
    .unwrap();
    deliver(&app, &world.person_id, &session.id).await.unwrap();
    schedule(
        &app,
        &world.cohort_id,
        &world.module_id,
        &world.person_id,
        &[],
        20,
    )
    .await
    .unwrap();
    let programme_id = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: world.cohort_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .programme_id;
    let dashboard = async || {
        lms::pb::report_service_client::ReportServiceClient::new(app.channel.clone())
            .get_programme_dashboard(app.admin(pb::GetProgrammeDashboardRequest {
                programme_id: programme_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let now = dashboard().await;
    let cohort = &now.cohorts[0];
    assert_eq!(cohort.cohort_id, world.cohort_id);
    assert_eq!(
        (
            cohort.sessions_delivered,
            cohort.trainers_active,
            cohort.trainers_certified
        ),
        (1, 2, 1),
        "one of two sessions delivered; the lead is certified, the co-delivering candidate not"
    );
    assert_eq!(
        (
            now.sessions_delivered,
            now.trainers_active,
            now.trainers_certified
        ),
        (1, 2, 1)
    );

    app.config
        .certification
        .clock
        .advance(chrono::Duration::days(24 * 31 + 1));
    let later = dashboard().await;
    assert_eq!(
        (
            later.sessions_delivered,
            later.trainers_active,
            later.trainers_certified
        ),
        (1, 2, 0),
        "certified is judged at the clock's now"
    );
}
