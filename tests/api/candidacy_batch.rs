//! Candidacy batches: a master trainer opens and moves a cohort of candidates in a few calls,
//! all or nothing, refusals naming the item; request ids replay; concurrent batches over the same
//! people and candidacies queue instead of deadlocking; an assessment that certifies in one call.

use lms::auth::Role;
use lms::pb::{self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind};
use tonic::{Code, Status};

use crate::certification::{
    assessor, assessor_id, certs, create_track, issue, open_candidacy, version_layout,
};
use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{import_people, published_version};

/// A track (no requirements unless `trainer_course`) and `count` people of organisation TTT.
struct Cohort {
    track: pb::CertificationTrack,
    people: Vec<String>,
}

async fn cohort(app: &TestApp, code: &str, count: usize, trainer_course: bool) -> Cohort {
    let academy = app
        .create_organization("Academy", OrganizationKind::Agency, None, Some("TTT"))
        .await;
    let version = published_version(
        app,
        &format!("{code}-C"),
        &academy.id,
        &[("Module", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (course_id, _) = version_layout(app, &version).await;
    let requirements = pb::TrackRequirements {
        trainer_course_version_ids: if trainer_course {
            vec![version.clone()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let track = create_track(
        app,
        code,
        pb::TrackLevel::Trainer,
        &[&course_id],
        requirements,
        pb::TrackScope::Any,
        &academy.id,
        24,
    )
    .await;
    let people = import_people(app, "CAND", "TTT", count, pb::Sector::Public).await;
    Cohort { track, people }
}

fn create_request(
    track_id: &str,
    people: &[String],
    start: bool,
) -> pb::BatchCreateCandidaciesRequest {
    pb::BatchCreateCandidaciesRequest {
        track_id: track_id.to_owned(),
        requests: people
            .iter()
            .map(|person_id| pb::CreateCandidacyRequest {
                person_id: person_id.clone(),
                ..Default::default()
            })
            .collect(),
        start_training: start,
        reason: if start {
            "cohort enrolled in the trainer course".to_owned()
        } else {
            String::new()
        },
        request_id: String::new(),
    }
}

fn advance_request(step: pb::CandidacyStep, ids: &[String]) -> pb::BatchAdvanceCandidaciesRequest {
    pb::BatchAdvanceCandidaciesRequest {
        step: step.into(),
        candidacy_ids: ids.to_vec(),
        etags: Vec::new(),
        reason: "the cohort moves on".to_owned(),
        request_id: String::new(),
    }
}

async fn create(
    app: &TestApp,
    request: pb::BatchCreateCandidaciesRequest,
) -> Result<pb::BatchCreateCandidaciesResponse, Status> {
    certs(app)
        .batch_create_candidacies(app.admin(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn advance(
    app: &TestApp,
    request: pb::BatchAdvanceCandidaciesRequest,
) -> Result<pb::BatchAdvanceCandidaciesResponse, Status> {
    certs(app)
        .batch_advance_candidacies(assessor(app, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn candidacies_of(app: &TestApp, track_id: &str) -> Vec<pb::Candidacy> {
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

fn states(candidacies: &[pb::Candidacy]) -> Vec<pb::CandidacyState> {
    candidacies.iter().map(pb::Candidacy::state).collect()
}

#[tokio::test]
async fn a_cohort_of_candidates_is_opened_and_taken_to_assessment_in_three_calls() {
    let (app, _database) = spawn_app().await;
    let world = cohort(&app, "BATCH", 30, false).await;
    let mut request = create_request(&world.track.id, &world.people, true);
    request.request_id = "5a1d8d2e-8a0b-4c55-9d59-3c4e9a2b1f01".to_owned();
    let opened = create(&app, request.clone()).await.unwrap();
    assert_eq!((opened.created_count, opened.unchanged_count), (30, 0));
    assert_eq!(opened.candidacies.len(), 30);
    for (candidacy, person_id) in opened.candidacies.iter().zip(&world.people) {
        assert_eq!(&candidacy.person_id, person_id, "request order");
        assert_eq!(candidacy.state(), pb::CandidacyState::Training);
        assert_eq!(candidacy.track_id, world.track.id);
    }
    // The same request id replays the first answer and writes nothing.
    let replayed = create(&app, request).await.unwrap();
    assert_eq!(replayed.created_count, 30);
    let ids: Vec<String> = opened.candidacies.iter().map(|c| c.id.clone()).collect();
    assert_eq!(
        replayed
            .candidacies
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    // Without a request id, the open candidacies come back unchanged.
    let again = create(&app, create_request(&world.track.id, &world.people, false))
        .await
        .unwrap();
    assert_eq!((again.created_count, again.unchanged_count), (0, 30));
    assert_eq!(
        again
            .candidacies
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(candidacies_of(&app, &world.track.id).await.len(), 30);

    let practice = advance(
        &app,
        advance_request(pb::CandidacyStep::BeginSupervisedPractice, &ids),
    )
    .await
    .unwrap();
    assert_eq!((practice.advanced_count, practice.unchanged_count), (30, 0));
    assert!(
        states(&practice.candidacies)
            .iter()
            .all(|state| *state == pb::CandidacyState::SupervisedPractice)
    );
    // With etags: the current ones pass.
    let mut submit = advance_request(pb::CandidacyStep::SubmitForAssessment, &ids);
    submit.etags = practice
        .candidacies
        .iter()
        .map(|c| c.etag.clone())
        .collect();
    let awaiting = advance(&app, submit.clone()).await.unwrap();
    assert_eq!(awaiting.advanced_count, 30);
    assert!(
        states(&awaiting.candidacies)
            .iter()
            .all(|state| *state == pb::CandidacyState::AwaitingAssessment)
    );
    // The same step again with the old etags is ABORTED; without etags it changes nothing.
    let stale = advance(&app, submit).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let unchanged = advance(
        &app,
        advance_request(pb::CandidacyStep::SubmitForAssessment, &ids),
    )
    .await
    .unwrap();
    assert_eq!(
        (unchanged.advanced_count, unchanged.unchanged_count),
        (0, 30)
    );
    assert_eq!(
        unchanged
            .candidacies
            .iter()
            .map(|c| c.etag.clone())
            .collect::<Vec<_>>(),
        awaiting
            .candidacies
            .iter()
            .map(|c| c.etag.clone())
            .collect::<Vec<_>>(),
        "an unchanged candidacy keeps its etag"
    );

    // Each candidacy's history has every step, by the batch's actor and reason.
    let one = certs(&app)
        .get_candidacy(app.admin(pb::GetCandidacyRequest { id: ids[7].clone() }))
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<(i32, i32)> = one
        .history
        .iter()
        .map(|step| (step.from_state, step.to_state))
        .collect();
    use pb::CandidacyState as S;
    assert_eq!(
        steps,
        vec![
            (S::Candidate as i32, S::Candidate as i32),
            (S::Candidate as i32, S::Training as i32),
            (S::Training as i32, S::SupervisedPractice as i32),
            (S::SupervisedPractice as i32, S::AwaitingAssessment as i32),
        ]
    );
    assert_eq!(one.history[3].reason, "the cohort moves on");

    // An assessment that passes certifies in the same call.
    let certified = certs(&app)
        .record_assessment(assessor(
            &app,
            pb::RecordAssessmentRequest {
                id: ids[0].clone(),
                score: 90,
                approved: true,
                reason: "teach-back passed".to_owned(),
                etag: String::new(),
                issue_certificate: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(certified.state(), S::Certified);
    assert!(!certified.certificate_id.is_empty());
    assert_eq!(certified.cycle, 1);
}

#[tokio::test]
async fn a_refused_item_refuses_the_whole_batch_and_is_named() {
    let (app, _database) = spawn_app().await;
    let world = cohort(&app, "REFUSE", 4, true).await;
    // Person 2 has an unfinished candidacy on the track already: it is returned unchanged.
    let held = open_candidacy(&app, &world.track.id, &world.people[2]).await;
    let ok = create(&app, create_request(&world.track.id, &world.people, false))
        .await
        .expect("an unfinished candidacy is returned unchanged");
    assert_eq!((ok.created_count, ok.unchanged_count), (3, 1));
    assert_eq!(ok.candidacies[2].id, held.id);
    let ids: Vec<String> = ok.candidacies.iter().map(|c| c.id.clone()).collect();

    // Training is required: BEGIN_SUPERVISED_PRACTICE refuses the first candidacy in request
    // order that lacks it, naming it, and moves none.
    let started = advance(
        &app,
        advance_request(pb::CandidacyStep::StartTraining, &ids),
    )
    .await
    .unwrap();
    assert_eq!(started.advanced_count, 4);
    let status = advance(
        &app,
        advance_request(pb::CandidacyStep::BeginSupervisedPractice, &ids),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(&status), "TRAINING_NOT_COMPLETED");
    assert!(
        status.message().starts_with("candidacy_ids[0]"),
        "{}",
        status.message()
    );
    assert_eq!(
        crate::helpers::error_metadata(&status, "item").as_deref(),
        Some("candidacy_ids[0]")
    );
    assert!(
        states(&candidacies_of(&app, &world.track.id).await)
            .iter()
            .all(|state| *state == pb::CandidacyState::Training)
    );

    // A certified holder refuses the batch naming them (CANDIDACY_EXISTS), which opens nothing.
    let other = cohort_people(&app, 2).await;
    let holder_track = create_track(
        &app,
        "OPEN",
        pb::TrackLevel::Trainer,
        &[&world.track.qualifies_course_ids[0]],
        pb::TrackRequirements::default(),
        pb::TrackScope::Any,
        &world.track.issuer_organization_id,
        24,
    )
    .await;
    let candidacy = open_candidacy(&app, &holder_track.id, &other[1]).await;
    for step in [
        pb::CandidacyStep::StartTraining,
        pb::CandidacyStep::BeginSupervisedPractice,
        pb::CandidacyStep::SubmitForAssessment,
    ] {
        advance(
            &app,
            advance_request(step, std::slice::from_ref(&candidacy.id)),
        )
        .await
        .unwrap();
    }
    issue(&app, &candidacy.id).await.unwrap();
    let status = create(&app, create_request(&holder_track.id, &other, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "CANDIDACY_EXISTS");
    assert!(
        status.message().starts_with("requests[1]"),
        "{}",
        status.message()
    );
    assert_eq!(
        candidacies_of(&app, &holder_track.id).await.len(),
        1,
        "person 0 was not opened either"
    );
}

/// Imports `count` more people into TTT (a second prefix).
async fn cohort_people(app: &TestApp, count: usize) -> Vec<String> {
    import_people(app, "MORE", "TTT", count, pb::Sector::Public).await
}

#[tokio::test]
async fn bad_batches_are_invalid_arguments_naming_the_field_and_write_nothing() {
    let (app, _database) = spawn_app().await;
    let world = cohort(&app, "BAD", 3, false).await;
    let mut request = create_request(&world.track.id, &world.people, true);
    request.requests[2].person_id = world.people[0].clone();
    request.requests[1].request_id = "x".to_owned();
    request.reason = String::new();
    let status = create(&app, request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["reason".to_owned()]);
    let mut request = create_request(&world.track.id, &world.people, false);
    request.requests[2].person_id = world.people[0].clone();
    request.requests[1].request_id = "x".to_owned();
    request.requests[0].track_id = "0193a2b4-0000-7000-8000-000000000000".to_owned();
    let status = create(&app, request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        vec![
            "requests[0].track_id".to_owned(),
            "requests[1].request_id".to_owned(),
            "requests[2].person_id".to_owned(),
        ]
    );
    let status = create(&app, create_request(&world.track.id, &[], false))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["requests".to_owned()]);
    let too_many: Vec<String> = (0..1001).map(|_| world.people[0].clone()).collect();
    let status = create(&app, create_request(&world.track.id, &too_many, false))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["requests".to_owned()]);
    assert!(candidacies_of(&app, &world.track.id).await.is_empty());

    let opened = create(&app, create_request(&world.track.id, &world.people, false))
        .await
        .unwrap();
    let ids: Vec<String> = opened.candidacies.iter().map(|c| c.id.clone()).collect();
    let status = advance(&app, advance_request(pb::CandidacyStep::Unspecified, &ids))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["step".to_owned()]);
    let mut request = advance_request(pb::CandidacyStep::StartTraining, &ids);
    request.etags = vec![String::new()];
    let status = advance(&app, request).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["etags".to_owned()]);
    let mut request = advance_request(pb::CandidacyStep::StartTraining, &ids);
    request.candidacy_ids[2] = ids[0].clone();
    request.candidacy_ids[1] = "not-an-id".to_owned();
    let status = advance(&app, request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        vec!["candidacy_ids[1]".to_owned(), "candidacy_ids[2]".to_owned()]
    );
    assert!(
        states(&candidacies_of(&app, &world.track.id).await)
            .iter()
            .all(|state| *state == pb::CandidacyState::Candidate)
    );
}

#[tokio::test]
async fn concurrent_batches_over_the_same_people_and_candidacies_queue_without_deadlock() {
    let (app, _database) = spawn_app().await;
    let world = cohort(&app, "RACE", 40, false).await;
    let mut reversed = world.people.clone();
    reversed.reverse();
    let (first, second) = tokio::join!(
        create(&app, create_request(&world.track.id, &world.people, false)),
        create(&app, create_request(&world.track.id, &reversed, false)),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.created_count + second.created_count,
        40,
        "each person opened once"
    );
    assert_eq!(first.unchanged_count + second.unchanged_count, 40);
    assert_eq!(candidacies_of(&app, &world.track.id).await.len(), 40);
    let ids: Vec<String> = first.candidacies.iter().map(|c| c.id.clone()).collect();
    let mut reversed_ids = ids.clone();
    reversed_ids.reverse();
    let (first, second) = tokio::join!(
        advance(
            &app,
            advance_request(pb::CandidacyStep::StartTraining, &ids)
        ),
        advance(
            &app,
            advance_request(pb::CandidacyStep::StartTraining, &reversed_ids)
        ),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.advanced_count + second.advanced_count,
        40,
        "each moved once"
    );
    let one = certs(&app)
        .get_candidacy(app.admin(pb::GetCandidacyRequest { id: ids[3].clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        one.history.len(),
        2,
        "one opening, one step: {:?}",
        one.history
    );
}

#[tokio::test]
async fn a_failing_assessment_with_issue_certificate_records_nothing() {
    let (app, _database) = spawn_app().await;
    let academy = app
        .create_organization("Academy", OrganizationKind::Agency, None, Some("TTT"))
        .await;
    let version = published_version(
        &app,
        "SCORE-C",
        &academy.id,
        &[("Module", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let (course_id, _) = version_layout(&app, &version).await;
    let track = create_track(
        &app,
        "SCORE",
        pb::TrackLevel::Trainer,
        &[&course_id],
        pb::TrackRequirements {
            min_assessment_score: 70,
            ..Default::default()
        },
        pb::TrackScope::Any,
        &academy.id,
        24,
    )
    .await;
    let people = import_people(&app, "CAND", "TTT", 1, pb::Sector::Public).await;
    let opened = create(&app, create_request(&track.id, &people, true))
        .await
        .unwrap();
    let ids = vec![opened.candidacies[0].id.clone()];
    for step in [
        pb::CandidacyStep::BeginSupervisedPractice,
        pb::CandidacyStep::SubmitForAssessment,
    ] {
        advance(&app, advance_request(step, &ids)).await.unwrap();
    }
    let record = |score| pb::RecordAssessmentRequest {
        id: ids[0].clone(),
        score,
        approved: true,
        reason: "teach-back".to_owned(),
        etag: String::new(),
        issue_certificate: true,
    };
    let status = certs(&app)
        .record_assessment(assessor(&app, record(50)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "ASSESSMENT_SCORE_TOO_LOW");
    let candidacy = certs(&app)
        .get_candidacy(app.admin(pb::GetCandidacyRequest { id: ids[0].clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(candidacy.assessment_score, None, "nothing recorded");
    assert_eq!(candidacy.state(), pb::CandidacyState::AwaitingAssessment);
    let certified = certs(&app)
        .record_assessment(assessor(&app, record(80)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(certified.state(), pb::CandidacyState::Certified);
    assert_eq!(certified.assessment_score, Some(80));
}

#[tokio::test]
async fn an_org_admin_cannot_batch_people_outside_their_subtree() {
    let (app, _database) = spawn_app().await;
    let world = cohort(&app, "SCOPE", 2, false).await;
    let elsewhere = app
        .create_organization("Elsewhere", OrganizationKind::Ministry, None, Some("ELSE"))
        .await;
    let token = app.token("org-admin-else", &[Role::OrgAdmin], Some(&elsewhere.id));
    let status = certs(&app)
        .batch_create_candidacies(with_token(
            create_request(&world.track.id, &world.people, false),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // An assessor of another track reaches neither the people nor the candidacies.
    let opened = create(&app, create_request(&world.track.id, &world.people, false))
        .await
        .unwrap();
    let ids: Vec<String> = opened.candidacies.iter().map(|c| c.id.clone()).collect();
    let _ = assessor_id(&app).await;
    let stranger = app.token("assessor-stranger", &[Role::Assessor], None);
    let status = certs(&app)
        .batch_advance_candidacies(with_token(
            advance_request(pb::CandidacyStep::StartTraining, &ids),
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().starts_with("candidacy_ids[0]"),
        "{}",
        status.message()
    );
    let missing = advance(
        &app,
        advance_request(
            pb::CandidacyStep::StartTraining,
            &[
                ids[0].clone(),
                "0193a2b4-0000-7000-8000-000000000000".to_owned(),
            ],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::PermissionDenied,
        "an assessor does not learn it is missing"
    );
    assert!(
        missing.message().starts_with("candidacy_ids[1]"),
        "{}",
        missing.message()
    );
}
