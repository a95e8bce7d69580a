//! SelectionService: a talent-programme call with 60 applicants from 14 ministries, a panel of 5
//! judges (2 per application, conflict of interest respected), blind scoring, a ranking checked
//! against a hand-computed weighted mean, and a decision that enrols exactly the accepted; panels
//! balanced where taking applications in order is not; score visibility as a call policy.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind,
    selection_service_client::SelectionServiceClient,
};
use tonic::Code;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{
    create_programme, import_people, open_cohort, phase, programmes, published_version,
};

const MINISTRIES: usize = 14;
/// Rubric: (id, weight).
const RUBRIC: [(&str, i32); 3] = [("impact", 5), ("leadership", 3), ("fit", 2)];

fn selection(app: &TestApp) -> SelectionServiceClient<tonic::transport::Channel> {
    SelectionServiceClient::new(app.channel.clone())
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// The organisations, people, cohort and open call of one test.
struct World {
    manager: String,
    cohort_id: String,
    call: pb::Call,
    /// Ministry organisation ids, by index.
    ministries: Vec<String>,
    /// (person id, ministry index) of each applicant, in creation order.
    applicants: Vec<(String, usize)>,
    /// Judges: four from INTAN, the last from a department of ministry 0.
    judges: Vec<String>,
}

/// Builds 14 ministries (ministry 0 with a department), INTAN, `applicant_count` applicants spread
/// over the ministries, 5 judges, a programme with an open cohort of `capacity`, and an open call.
async fn world(app: &TestApp, applicant_count: usize, capacity: i32, seats: i32) -> World {
    let intan = app
        .create_organization("INTAN", OrganizationKind::Agency, None, Some("INTAN"))
        .await;
    let mut ministries = Vec::new();
    for index in 0..MINISTRIES {
        let code = format!("MIN-{index:02}");
        let ministry = app
            .create_organization(
                &format!("Ministry {index}"),
                OrganizationKind::Ministry,
                None,
                Some(&code),
            )
            .await;
        ministries.push(ministry.id);
    }
    app.create_organization(
        "Ministry 0 digital department",
        OrganizationKind::Department,
        Some(&ministries[0]),
        Some("MIN-00-D"),
    )
    .await;
    let mut applicants = Vec::new();
    for ministry in 0..MINISTRIES {
        let count = (0..applicant_count)
            .filter(|index| index % MINISTRIES == ministry)
            .count();
        if count == 0 {
            continue;
        }
        let ids = import_people(
            app,
            &format!("A{ministry:02}"),
            &format!("MIN-{ministry:02}"),
            count,
            pb::Sector::Public,
        )
        .await;
        applicants.extend(ids.into_iter().map(|id| (id, ministry)));
    }
    // Interleave ministries in submission order: applicant i is from ministry i % 14.
    let mut by_ministry: Vec<Vec<(String, usize)>> = vec![Vec::new(); MINISTRIES];
    for applicant in applicants {
        by_ministry[applicant.1].push(applicant);
    }
    let mut applicants = Vec::new();
    for index in 0..applicant_count {
        let ministry = index % MINISTRIES;
        applicants.push(by_ministry[ministry].remove(0));
    }
    let mut judges = import_people(app, "JUDGE", "INTAN", 4, pb::Sector::Public).await;
    judges.extend(import_people(app, "JUDGE-M0", "MIN-00-D", 1, pb::Sector::Public).await);

    let version = published_version(
        app,
        "DLE-TALENT",
        &intan.id,
        &[(
            "Digital leadership",
            &[(Kind::Lecture, Mode::InPerson, None)],
        )],
    )
    .await;
    let programme = create_programme(
        app,
        "DLE-TALENT",
        &intan.id,
        &[],
        vec![phase(
            "Talent programme",
            &[&version],
            "INTAN Bukit Kiara",
            30,
        )],
    )
    .await;
    let cohort = open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Talent cohort 1".to_owned(),
            capacity,
            ..Default::default()
        },
    )
    .await;
    let manager = app.token("pm-1", &[Role::ProgrammeManager], None);
    let now = SystemTime::now();
    let call = selection(app)
        .create_call(with_token(
            pb::CreateCallRequest {
                call: Some(pb::Call {
                    cohort_id: cohort.id.clone(),
                    title: "Vendor talent programme 2025".to_owned(),
                    opens_time: Some(timestamp(now - Duration::from_secs(3600))),
                    closes_time: Some(timestamp(now + Duration::from_secs(3600))),
                    questions: vec![pb::Question {
                        id: "motivation".to_owned(),
                        text: "Why do you want to join?".to_owned(),
                        required: true,
                    }],
                    rubric: RUBRIC
                        .iter()
                        .map(|(id, weight)| pb::Criterion {
                            id: (*id).to_owned(),
                            title: format!("Criterion {id}"),
                            weight: *weight,
                        })
                        .collect(),
                    seats,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .expect("create call")
        .into_inner();
    assert_eq!(call.state(), pb::CallState::Open);
    World {
        manager,
        cohort_id: cohort.id,
        call,
        ministries,
        applicants,
        judges,
    }
}

fn answers() -> Vec<pb::Answer> {
    vec![pb::Answer {
        question_id: "motivation".to_owned(),
        text: "To lead the digital transformation of my department.".to_owned(),
    }]
}

async fn apply(
    app: &TestApp,
    call_id: &str,
    person_id: &str,
) -> Result<pb::Application, tonic::Status> {
    let token = app.token(person_id, &[Role::Learner], None);
    selection(app)
        .submit_application(with_token(
            pb::SubmitApplicationRequest {
                call_id: call_id.to_owned(),
                person_id: person_id.to_owned(),
                answers: answers(),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn create_panel(app: &TestApp, world: &World, per_application: i32) -> pb::Panel {
    selection(app)
        .create_panel(with_token(
            pb::CreatePanelRequest {
                panel: Some(pb::Panel {
                    call_id: world.call.id.clone(),
                    judge_person_ids: world.judges.clone(),
                    judges_per_application: per_application,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &world.manager,
        ))
        .await
        .expect("create panel")
        .into_inner()
}

async fn my_assignments(app: &TestApp, judge: &str, call_id: &str) -> Vec<pb::Assignment> {
    let token = app.token(judge, &[Role::Assessor], None);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = selection(app)
            .list_my_assignments(with_token(
                pb::ListMyAssignmentsRequest {
                    page_size: 7,
                    page_token,
                    call_id: call_id.to_owned(),
                },
                &token,
            ))
            .await
            .expect("list my assignments")
            .into_inner();
        all.extend(page.assignments);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// The score judge `judge` gives application number `index` on criterion `criterion`.
fn planned_score(index: usize, judge: usize, criterion: usize) -> i32 {
    ((index * 7 + judge * 3 + criterion * 5 + index / 3) % 11) as i32
}

async fn score(
    app: &TestApp,
    judge: &str,
    application_id: &str,
    scores: &[i32],
) -> Result<pb::Score, tonic::Status> {
    let token = app.token(judge, &[Role::Assessor], None);
    selection(app)
        .submit_score(with_token(
            pb::SubmitScoreRequest {
                application_id: application_id.to_owned(),
                criterion_scores: RUBRIC
                    .iter()
                    .zip(scores)
                    .map(|((id, _), score)| pb::CriterionScore {
                        criterion_id: (*id).to_owned(),
                        score: *score,
                    })
                    .collect(),
                comment: "scored against the rubric".to_owned(),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn close_call(app: &TestApp, world: &World) {
    let closed = selection(app)
        .close_call(with_token(
            pb::CloseCallRequest {
                id: world.call.id.clone(),
                etag: String::new(),
            },
            &world.manager,
        ))
        .await
        .expect("close call")
        .into_inner();
    assert_eq!(closed.state(), pb::CallState::Closed);
}

async fn decide(
    app: &TestApp,
    token: &str,
    call_id: &str,
    accepted: &[String],
    waitlisted: &[String],
    rejected: &[String],
    request_id: &str,
) -> Result<pb::DecideApplicationsResponse, tonic::Status> {
    selection(app)
        .decide_applications(with_token(
            pb::DecideApplicationsRequest {
                call_id: call_id.to_owned(),
                accepted_ids: accepted.to_vec(),
                waitlisted_ids: waitlisted.to_vec(),
                rejected_ids: rejected.to_vec(),
                request_id: request_id.to_owned(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn audit_count(app: &TestApp, resource_type: &str) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = app
            .audit
            .clone()
            .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
                page_size: 1000,
                page_token,
                resource_type: resource_type.to_owned(),
                ..Default::default()
            }))
            .await
            .expect("list audit entries")
            .into_inner();
        count += page.entries.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn sixty_applicants_five_judges_two_each_rank_by_weighted_mean_and_enrol_exactly_twenty() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 60, 20, 20).await;
    let ministries: HashSet<usize> = world
        .applicants
        .iter()
        .map(|(_, ministry)| *ministry)
        .collect();
    assert_eq!(ministries.len(), MINISTRIES);

    // Applications, in order; a retried request id returns the first application.
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    let first = &world.applicants[0].0;
    let request_id = uuid::Uuid::new_v4().to_string();
    let duplicate = selection(&app)
        .submit_application(with_token(
            pb::SubmitApplicationRequest {
                call_id: world.call.id.clone(),
                person_id: first.clone(),
                answers: answers(),
                request_id: request_id.clone(),
            },
            &app.token(first, &[Role::Learner], None),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Code::AlreadyExists,
        "one application per person per call"
    );

    // The panel: 5 judges, 2 per application, spread evenly, never across a conflict of interest.
    let panel = create_panel(&app, &world, 2).await;
    assert_eq!(panel.assignment_count, 120);
    let ministry_of: HashMap<&str, usize> = applications
        .iter()
        .zip(&world.applicants)
        .map(|(application, (_, ministry))| (application.id.as_str(), *ministry))
        .collect();
    let mut judges_of: HashMap<String, Vec<usize>> = HashMap::new();
    let mut loads = Vec::new();
    for (judge_index, judge) in world.judges.iter().enumerate() {
        let assignments = my_assignments(&app, judge, &world.call.id).await;
        loads.push(assignments.len());
        for assignment in &assignments {
            let application = assignment.application.as_ref().expect("application");
            assert!(assignment.score.is_none());
            assert_eq!(assignment.judge_person_id, *judge);
            judges_of
                .entry(application.id.clone())
                .or_default()
                .push(judge_index);
            if judge_index == 4 {
                assert_ne!(
                    ministry_of[application.id.as_str()],
                    0,
                    "the judge from ministry 0 must never judge its applicants"
                );
            }
        }
    }
    assert_eq!(judges_of.len(), 60);
    for judges in judges_of.values() {
        assert_eq!(judges.len(), 2);
        assert_ne!(judges[0], judges[1]);
    }
    let (high, low) = (loads.iter().max().unwrap(), loads.iter().min().unwrap());
    assert!(high - low <= 1, "loads {loads:?} are not spread evenly");
    assert_eq!(loads.iter().sum::<usize>(), 120);

    // Every judge scores their assignments.
    let index_of: HashMap<&str, usize> = applications
        .iter()
        .enumerate()
        .map(|(index, application)| (application.id.as_str(), index))
        .collect();
    for (application_id, judges) in &judges_of {
        let index = index_of[application_id.as_str()];
        for judge in judges {
            let scores: Vec<i32> = (0..RUBRIC.len())
                .map(|c| planned_score(index, *judge, c))
                .collect();
            score(&app, &world.judges[*judge], application_id, &scores)
                .await
                .expect("score");
        }
    }
    assert_eq!(
        audit_count(&app, "selection_score").await,
        120,
        "every score is audited"
    );

    // The ranking equals a weighted mean computed by hand from the scores given.
    let total_weight: i32 = RUBRIC.iter().map(|(_, weight)| weight).sum();
    let judge_mean = |index: usize, judge: usize| -> f64 {
        let sum: i32 = RUBRIC
            .iter()
            .enumerate()
            .map(|(c, (_, weight))| weight * planned_score(index, judge, c))
            .sum();
        f64::from(sum) / f64::from(total_weight)
    };
    let mut expected: Vec<(f64, f64, (i64, i32), String)> = applications
        .iter()
        .enumerate()
        .map(|(index, application)| {
            let judges = &judges_of[&application.id];
            let means: Vec<f64> = judges
                .iter()
                .map(|judge| judge_mean(index, *judge))
                .collect();
            let mean = means.iter().sum::<f64>() / means.len() as f64;
            let spread = (means[0] - means[1]).abs();
            let submitted = application.submit_time.expect("submit time");
            (
                mean,
                spread,
                (submitted.seconds, submitted.nanos),
                application.id.clone(),
            )
        })
        .collect();
    expected.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap()
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let ranking = selection(&app)
        .rank_applications(with_token(
            pb::RankApplicationsRequest {
                call_id: world.call.id.clone(),
                spread_threshold: 0.0,
            },
            &world.manager,
        ))
        .await
        .expect("rank")
        .into_inner();
    assert_eq!(ranking.spread_threshold, 3.0);
    assert_eq!(ranking.ranking.len(), 60);
    for (position, (line, (mean, spread, _, id))) in
        ranking.ranking.iter().zip(&expected).enumerate()
    {
        assert_eq!(line.rank as usize, position + 1);
        assert_eq!(&line.application_id, id, "rank {}", position + 1);
        assert!(
            (line.weighted_mean - mean).abs() < 1e-9,
            "{} != {mean}",
            line.weighted_mean
        );
        assert!((line.spread - spread).abs() < 1e-9);
        assert_eq!(line.spread_flagged, *spread > 3.0 + 1e-9);
        assert_eq!((line.score_count, line.assigned_count), (2, 2));
    }
    assert!(
        ranking.ranking.iter().any(|line| line.spread_flagged),
        "the planned scores disagree somewhere"
    );

    // A learner cannot decide; nothing is decided before the call closes.
    let ids: Vec<String> = ranking
        .ranking
        .iter()
        .map(|line| line.application_id.clone())
        .collect();
    let learner = app.token(first, &[Role::Learner], None);
    let denied = decide(&app, &learner, &world.call.id, &ids[..20], &[], &[], "")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let early = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[..20],
        &[],
        &[],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&early), "CALL_NOT_CLOSED");

    // After the call closes: the top 20 accepted and enrolled, 10 waitlisted, 30 rejected.
    close_call(&app, &world).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let decided = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[..20],
        &ids[20..30],
        &ids[30..],
        &request_id,
    )
    .await
    .expect("decide");
    assert_eq!(decided.applications.len(), 60);
    assert_eq!(decided.enrollments.len(), 20);
    assert!(
        decided
            .enrollments
            .iter()
            .all(|enrollment| enrollment.state() == pb::EnrollmentState::Enrolled)
    );
    let states: Vec<pb::ApplicationState> = decided
        .applications
        .iter()
        .map(|application| application.state())
        .collect();
    assert!(
        states[..20]
            .iter()
            .all(|state| *state == pb::ApplicationState::Accepted)
    );
    assert!(
        states[20..30]
            .iter()
            .all(|state| *state == pb::ApplicationState::Waitlisted)
    );
    assert!(
        states[30..]
            .iter()
            .all(|state| *state == pb::ApplicationState::Rejected)
    );
    let replay = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[..20],
        &ids[20..30],
        &ids[30..],
        &request_id,
    )
    .await
    .expect("replay");
    assert_eq!(
        replay.enrollments.len(),
        20,
        "a replay answers the first decision"
    );

    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: world.cohort_id.clone(),
        }))
        .await
        .expect("get cohort")
        .into_inner();
    assert_eq!(
        cohort.enrolled_count, 20,
        "deciding 20 accepted enrols exactly 20"
    );
    let enrolled = programmes(&app)
        .list_enrollments(app.admin(pb::ListEnrollmentsRequest {
            cohort_id: world.cohort_id.clone(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .expect("list enrollments")
        .into_inner()
        .enrollments;
    let accepted_people: HashSet<String> = decided.applications[..20]
        .iter()
        .map(|application| application.person_id.clone())
        .collect();
    let enrolled_people: HashSet<String> = enrolled
        .iter()
        .map(|enrollment| enrollment.person_id.clone())
        .collect();
    assert_eq!(enrolled_people, accepted_people);
    assert_eq!(
        audit_count(&app, "selection_application").await,
        60 + 60,
        "applications and decisions are audited"
    );

    // The applicant sees their own decision.
    let top = &decided.applications[0];
    let own = selection(&app)
        .get_application(with_token(
            pb::GetApplicationRequest { id: top.id.clone() },
            &app.token(&top.person_id, &[Role::Learner], None),
        ))
        .await
        .expect("own application")
        .into_inner();
    assert_eq!(own.state(), pb::ApplicationState::Accepted);
    assert!(!own.enrollment_id.is_empty());

    // The ranking is reproducible from the stored scores.
    let again = selection(&app)
        .rank_applications(with_token(
            pb::RankApplicationsRequest {
                call_id: world.call.id.clone(),
                spread_threshold: 3.0,
            },
            &world.manager,
        ))
        .await
        .expect("rank again")
        .into_inner();
    let again_ids: Vec<&str> = again
        .ranking
        .iter()
        .map(|line| line.application_id.as_str())
        .collect();
    let first_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(again_ids, first_ids);
}

#[tokio::test]
async fn a_closed_call_refuses_applications_and_a_learner_cannot_decide() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 4, 10, 10).await;
    let accepted = apply(&app, &world.call.id, &world.applicants[0].0)
        .await
        .expect("apply while open");
    close_call(&app, &world).await;
    let refused = apply(&app, &world.call.id, &world.applicants[1].0)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "CALL_NOT_OPEN");

    let learner = app.token(&world.applicants[0].0, &[Role::Learner], None);
    let denied = decide(
        &app,
        &learner,
        &world.call.id,
        std::slice::from_ref(&accepted.id),
        &[],
        &[],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let ranking = selection(&app)
        .rank_applications(with_token(
            pb::RankApplicationsRequest {
                call_id: world.call.id.clone(),
                spread_threshold: 0.0,
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(ranking.code(), Code::PermissionDenied);
    let application = selection(&app)
        .get_application(with_token(
            pb::GetApplicationRequest {
                id: accepted.id.clone(),
            },
            &learner,
        ))
        .await
        .expect("own application")
        .into_inner();
    assert_eq!(application.state(), pb::ApplicationState::Submitted);
}

/// Lists the scores of `application_id` as `token` sees them: (judges whose scores are listed,
/// whether other judges' scores were withheld).
async fn scores_seen(app: &TestApp, token: &str, application_id: &str) -> (Vec<String>, bool) {
    let response = selection(app)
        .list_scores(with_token(
            pb::ListScoresRequest {
                application_id: application_id.to_owned(),
            },
            token,
        ))
        .await
        .expect("list scores")
        .into_inner();
    let mut judges: Vec<String> = response
        .scores
        .into_iter()
        .map(|score| score.judge_person_id)
        .collect();
    judges.sort();
    (judges, response.others_hidden)
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).clone()).collect();
    ids.sort();
    ids
}

async fn update_call(
    app: &TestApp,
    token: &str,
    call: pb::Call,
    paths: &[&str],
) -> Result<pb::Call, tonic::Status> {
    selection(app)
        .update_call(with_token(
            pb::UpdateCallRequest {
                call: Some(call),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|path| (*path).to_owned()).collect(),
                }),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_call(app: &TestApp, world: &World) -> pb::Call {
    selection(app)
        .get_call(with_token(
            pb::GetCallRequest {
                id: world.call.id.clone(),
            },
            &world.manager,
        ))
        .await
        .expect("get call")
        .into_inner()
}

#[tokio::test]
async fn a_judge_cannot_read_other_scores_before_the_decision_nor_judge_their_own_ministry() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 14, 10, 10).await;
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    // Every judge scores every application, except where in conflict of interest.
    let panel = create_panel(&app, &world, 0).await;
    assert_eq!(panel.assignment_count, 14 * 5 - 1);
    let target = &applications[1]; // ministry 1: every judge is free to judge it
    let (first_judge, second_judge) = (&world.judges[0], &world.judges[1]);
    score(&app, first_judge, &target.id, &[9, 8, 7])
        .await
        .expect("first judge scores");

    let second_token = app.token(second_judge, &[Role::Assessor], None);
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (Vec::new(), true),
        "before scoring, a judge reads no other judge's score"
    );
    let mine = my_assignments(&app, second_judge, &world.call.id).await;
    let own_view = mine
        .iter()
        .find(|assignment| {
            assignment.application.as_ref().map(|a| a.id.as_str()) == Some(target.id.as_str())
        })
        .expect("assigned");
    assert!(
        own_view.score.is_none(),
        "assignments never carry another judge's score"
    );

    score(&app, second_judge, &target.id, &[3, 4, 5])
        .await
        .expect("second judge scores");
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (vec![second_judge.clone()], true),
        "until the decision, a judge reads only their own score (the call's default)"
    );
    let again = score(&app, second_judge, &target.id, &[10, 10, 10])
        .await
        .unwrap_err();
    assert_eq!(error_reason(&again), "SCORE_ALREADY_SUBMITTED");

    // The judge from ministry 0 is not assigned its applicant, and scoring it is refused by name.
    let own_ministry = &applications[0];
    let conflicted = &world.judges[4];
    let refused = score(&app, conflicted, &own_ministry.id, &[10, 10, 10])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "CONFLICT_OF_INTEREST");
    let unrelated = score(&app, &world.applicants[2].0, &target.id, &[1, 1, 1])
        .await
        .unwrap_err();
    assert_eq!(error_reason(&unrelated), "NOT_ASSIGNED");

    // Bad scores name their fields and write nothing.
    let bad = score(&app, &world.judges[2], &target.id, &[11, 4])
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        ["criterion_scores[0].score", "criterion_scores"]
    );
    score(&app, &world.judges[2], &target.id, &[5, 5, 5])
        .await
        .expect("a valid retry is accepted");
}

#[tokio::test]
async fn a_decision_that_breaks_the_cohort_capacity_is_refused_whole() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 4, 2, 3).await;
    let mut ids = Vec::new();
    for (person_id, _) in &world.applicants {
        ids.push(
            apply(&app, &world.call.id, person_id)
                .await
                .expect("apply")
                .id,
        );
    }
    close_call(&app, &world).await;
    let before = app.audit_length().await;

    let too_many = decide(&app, &world.manager, &world.call.id, &ids, &[], &[], "")
        .await
        .unwrap_err();
    assert_eq!(error_reason(&too_many), "CALL_SEATS_EXCEEDED");
    let refused = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[..3],
        &[],
        &ids[3..],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "COHORT_FULL");
    assert!(
        refused.message().contains(&ids[2]),
        "the refused applicant is named: {}",
        refused.message()
    );

    assert_eq!(
        app.audit_length().await,
        before,
        "a refused decision writes nothing"
    );
    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: world.cohort_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cohort.enrolled_count, 0);
    let listed = selection(&app)
        .list_applications(with_token(
            pb::ListApplicationsRequest {
                call_id: world.call.id.clone(),
                ..Default::default()
            },
            &world.manager,
        ))
        .await
        .unwrap()
        .into_inner()
        .applications;
    assert!(
        listed
            .iter()
            .all(|application| application.state() == pb::ApplicationState::Submitted)
    );

    let decided = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[..2],
        &ids[2..3],
        &[],
        "",
    )
    .await
    .expect("a decision that fits");
    assert_eq!(decided.enrollments.len(), 2);
    let late = decide(
        &app,
        &world.manager,
        &world.call.id,
        &ids[2..3],
        &[],
        &[],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(
        error_reason(&late),
        "COHORT_FULL",
        "the waitlisted applicant does not fit any more"
    );
}

#[tokio::test]
async fn nominations_stay_within_the_org_admins_subtree_and_applicants_see_only_their_own() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 4, 10, 10).await;
    let (own, own_ministry) = world.applicants[1].clone();
    let (other, _) = world.applicants[2].clone();
    let org_admin = app.token(
        "min-1-admin",
        &[Role::OrgAdmin],
        Some(&world.ministries[own_ministry]),
    );

    let request = |person_id: &str, request_id: &str| pb::SubmitApplicationRequest {
        call_id: world.call.id.clone(),
        person_id: person_id.to_owned(),
        answers: answers(),
        request_id: request_id.to_owned(),
    };
    let outside = selection(&app)
        .submit_application(with_token(request(&other, ""), &org_admin))
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied);
    let request_id = uuid::Uuid::new_v4().to_string();
    let nominated = selection(&app)
        .submit_application(with_token(request(&own, &request_id), &org_admin))
        .await
        .expect("nominate")
        .into_inner();
    assert_eq!(nominated.nominated_by, "min-1-admin");
    let retried = selection(&app)
        .submit_application(with_token(request(&own, &request_id), &org_admin))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        retried.id, nominated.id,
        "a retry with the same request id returns the application"
    );

    let learner = app.token(&other, &[Role::Learner], None);
    let for_someone_else = selection(&app)
        .submit_application(with_token(request(&own, ""), &learner))
        .await
        .unwrap_err();
    assert_eq!(for_someone_else.code(), Code::PermissionDenied);
    let foreign = selection(&app)
        .get_application(with_token(
            pb::GetApplicationRequest {
                id: nominated.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let mine = apply(&app, &world.call.id, &other)
        .await
        .expect("apply for myself");
    let listed = selection(&app)
        .list_applications(with_token(
            pb::ListApplicationsRequest {
                call_id: world.call.id.clone(),
                ..Default::default()
            },
            &learner,
        ))
        .await
        .expect("list own")
        .into_inner()
        .applications;
    assert_eq!(
        listed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [mine.id.as_str()]
    );

    let withdrawn = selection(&app)
        .withdraw_application(with_token(
            pb::WithdrawApplicationRequest {
                id: mine.id.clone(),
                etag: mine.etag.clone(),
            },
            &learner,
        ))
        .await
        .expect("withdraw")
        .into_inner();
    assert_eq!(withdrawn.state(), pb::ApplicationState::Withdrawn);
}

#[tokio::test]
async fn a_withdrawn_application_leaves_the_judges_assignment_lists() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 14, 10, 10).await;
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    // Every judge is assigned every application outside their conflicts of interest.
    create_panel(&app, &world, 0).await;
    let judge = &world.judges[0];
    assert_eq!(my_assignments(&app, judge, &world.call.id).await.len(), 14);

    let target = &applications[1];
    let applicant = app.token(&world.applicants[1].0, &[Role::Learner], None);
    selection(&app)
        .withdraw_application(with_token(
            pb::WithdrawApplicationRequest {
                id: target.id.clone(),
                etag: target.etag.clone(),
            },
            &applicant,
        ))
        .await
        .expect("withdraw");

    for judge in &world.judges {
        let listed = my_assignments(&app, judge, &world.call.id).await;
        assert!(
            listed.iter().all(|assignment| {
                assignment.application.as_ref().map(|a| a.id.as_str()) != Some(target.id.as_str())
            }),
            "judge {judge} still lists the withdrawn application"
        );
    }
    assert_eq!(my_assignments(&app, judge, &world.call.id).await.len(), 13);
    let refused = score(&app, judge, &target.id, &[5, 5, 5])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn retried_calls_panels_and_scores_return_the_first_answer() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 14, 10, 10).await;
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }

    // A second call on the cohort, created twice with one request id.
    let call_request = pb::CreateCallRequest {
        call: Some(pb::Call {
            cohort_id: world.cohort_id.clone(),
            title: "Second intake".to_owned(),
            opens_time: world.call.opens_time,
            closes_time: world.call.closes_time,
            questions: world.call.questions.clone(),
            rubric: world.call.rubric.clone(),
            seats: 2,
            ..Default::default()
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut calls = Vec::new();
    for _ in 0..2 {
        let call = selection(&app)
            .create_call(with_token(call_request.clone(), &world.manager))
            .await
            .expect("create call")
            .into_inner();
        calls.push(call.id);
    }
    assert_eq!(calls[0], calls[1]);
    let mut changed = call_request;
    if let Some(call) = changed.call.as_mut() {
        call.title = "Another title".to_owned();
    }
    let reused = selection(&app)
        .create_call(with_token(changed, &world.manager))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&reused), ["request_id"]);

    // The panel of the first call, formed twice with one request id, assigns once.
    let panel_request = pb::CreatePanelRequest {
        panel: Some(pb::Panel {
            call_id: world.call.id.clone(),
            judge_person_ids: world.judges.clone(),
            judges_per_application: 2,
            ..Default::default()
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut panels = Vec::new();
    for _ in 0..2 {
        let panel = selection(&app)
            .create_panel(with_token(panel_request.clone(), &world.manager))
            .await
            .expect("create panel")
            .into_inner();
        panels.push((panel.id, panel.assignment_count));
    }
    assert_eq!(panels[0], panels[1]);
    assert_eq!(panels[0].1, 28);

    // A judge's score, sent twice with one request id, is recorded once.
    let judge = &world.judges[0];
    let assigned = my_assignments(&app, judge, &world.call.id).await;
    let application_id = assigned[0]
        .application
        .as_ref()
        .expect("application")
        .id
        .clone();
    let score_request = pb::SubmitScoreRequest {
        application_id: application_id.clone(),
        criterion_scores: RUBRIC
            .iter()
            .map(|(id, _)| pb::CriterionScore {
                criterion_id: (*id).to_owned(),
                score: 7,
            })
            .collect(),
        comment: "scored once".to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let token = app.token(judge, &[Role::Assessor], None);
    let mut scores = Vec::new();
    for _ in 0..2 {
        let score = selection(&app)
            .submit_score(with_token(score_request.clone(), &token))
            .await
            .expect("submit score")
            .into_inner();
        scores.push(score);
    }
    assert_eq!(scores[0], scores[1]);
    let fresh = score(&app, judge, &application_id, &[1, 1, 1])
        .await
        .unwrap_err();
    assert_eq!(error_reason(&fresh), "SCORE_ALREADY_SUBMITTED");
}

#[tokio::test]
async fn a_panel_that_taking_applications_in_order_loads_7_8_8_9_is_balanced_8_each() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 30, 40, 40).await;
    // Two applicants of INTAN: its three judges may not judge them, the judge of ministry 0 may.
    let intan_applicants = import_people(&app, "A-INTAN", "INTAN", 2, pb::Sector::Public).await;
    let mut applications = Vec::new();
    for person_id in world
        .applicants
        .iter()
        .map(|(person_id, _)| person_id)
        .chain(&intan_applicants)
    {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    // Three judges of INTAN, then the judge of ministry 0. Taking the applications in order, each
    // to the least loaded free judge (ties to the earlier), loads them 8/8/7/9: the last two
    // applications can only go to the judge of ministry 0. 8/8/8/8 is possible.
    let judges: Vec<String> = [0, 1, 2, 4]
        .iter()
        .map(|index| world.judges[*index].clone())
        .collect();
    let panel = selection(&app)
        .create_panel(with_token(
            pb::CreatePanelRequest {
                panel: Some(pb::Panel {
                    call_id: world.call.id.clone(),
                    judge_person_ids: judges.clone(),
                    judges_per_application: 1,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &world.manager,
        ))
        .await
        .expect("create panel")
        .into_inner();
    assert_eq!(panel.assignment_count, 32);
    assert_eq!((panel.min_judge_load, panel.max_judge_load), (8, 8));

    let ministry_zero: HashSet<&str> = applications
        .iter()
        .zip(&world.applicants)
        .filter(|(_, (_, ministry))| *ministry == 0)
        .map(|(application, _)| application.id.as_str())
        .collect();
    let from_intan: HashSet<&str> = applications[30..]
        .iter()
        .map(|application| application.id.as_str())
        .collect();
    let mut judged: HashSet<String> = HashSet::new();
    for (index, judge) in judges.iter().enumerate() {
        let assigned = my_assignments(&app, judge, &world.call.id).await;
        assert_eq!(assigned.len(), 8, "judge {index} carries 8");
        for assignment in &assigned {
            let id = assignment
                .application
                .as_ref()
                .expect("application")
                .id
                .clone();
            if index == 3 {
                assert!(!ministry_zero.contains(id.as_str()), "conflict of interest");
            } else {
                assert!(!from_intan.contains(id.as_str()), "conflict of interest");
            }
            assert!(judged.insert(id), "one judge per application");
        }
    }
    assert_eq!(judged.len(), 32);
    let last_judge = my_assignments(&app, &judges[3], &world.call.id).await;
    for id in &from_intan {
        assert!(
            last_judge.iter().any(|assignment| assignment
                .application
                .as_ref()
                .map(|a| a.id.as_str())
                == Some(*id)),
            "only the judge of ministry 0 may judge INTAN's applicants"
        );
    }

    // Assigning again makes nothing and moves nothing.
    let again = selection(&app)
        .assign_applications(with_token(
            pb::AssignApplicationsRequest {
                panel_id: panel.id.clone(),
            },
            &world.manager,
        ))
        .await
        .expect("assign again")
        .into_inner();
    assert_eq!(again.assigned, 0);
    let again_panel = again.panel.expect("panel");
    assert_eq!(again_panel.etag, panel.etag);
    assert_eq!(
        (again_panel.min_judge_load, again_panel.max_judge_load),
        (8, 8)
    );

    // A late applicant goes to one judge (8/8/8/9); withdrawn, it no longer counts.
    let late = import_people(&app, "A-LATE", "MIN-01", 1, pb::Sector::Public).await;
    let late_application = apply(&app, &world.call.id, &late[0]).await.expect("apply");
    let assigned = selection(&app)
        .assign_applications(with_token(
            pb::AssignApplicationsRequest {
                panel_id: panel.id.clone(),
            },
            &world.manager,
        ))
        .await
        .expect("assign the late application")
        .into_inner();
    assert_eq!(assigned.assigned, 1);
    let after = assigned.panel.expect("panel");
    assert_eq!((after.min_judge_load, after.max_judge_load), (8, 9));
    selection(&app)
        .withdraw_application(with_token(
            pb::WithdrawApplicationRequest {
                id: late_application.id.clone(),
                etag: String::new(),
            },
            &app.token(&late[0], &[Role::Learner], None),
        ))
        .await
        .expect("withdraw");
    let read = selection(&app)
        .get_panel(with_token(
            pb::GetPanelRequest {
                id: panel.id.clone(),
            },
            &app.token(&judges[0], &[Role::Assessor], None),
        ))
        .await
        .expect("a judge reads their panel")
        .into_inner();
    assert_eq!((read.min_judge_load, read.max_judge_load), (8, 8));
}

#[tokio::test]
async fn by_default_a_judge_reads_other_scores_only_once_the_application_is_decided() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 3, 10, 10).await;
    assert_eq!(
        world.call.score_visibility(),
        pb::ScoreVisibility::HiddenUntilDecided
    );
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    // Every judge is assigned every application outside their conflicts of interest.
    create_panel(&app, &world, 0).await;
    let (accepted, waitlisted) = (&applications[1], &applications[2]);
    let (first, second, third) = (&world.judges[0], &world.judges[1], &world.judges[2]);
    let token = |judge: &str| app.token(judge, &[Role::Assessor], None);
    for target in [accepted, waitlisted] {
        score(&app, first, &target.id, &[9, 8, 7])
            .await
            .expect("first judge scores");
    }
    assert_eq!(
        scores_seen(&app, &token(second), &accepted.id).await,
        (Vec::new(), true)
    );
    for target in [accepted, waitlisted] {
        score(&app, second, &target.id, &[3, 4, 5])
            .await
            .expect("second judge scores");
    }
    assert_eq!(
        scores_seen(&app, &token(second), &accepted.id).await,
        (vec![second.clone()], true),
        "having scored does not reveal the others' scores"
    );
    assert_eq!(
        scores_seen(&app, &token(first), &accepted.id).await,
        (vec![first.clone()], true)
    );
    let both = sorted(&[first, second]);
    assert_eq!(
        scores_seen(&app, &world.manager, &accepted.id).await,
        (both.clone(), false),
        "a programme manager reads every score"
    );
    assert_eq!(
        scores_seen(&app, &app.admin_token(), &accepted.id).await,
        (both.clone(), false),
        "an admin reads every score"
    );

    close_call(&app, &world).await;
    decide(
        &app,
        &world.manager,
        &world.call.id,
        std::slice::from_ref(&accepted.id),
        std::slice::from_ref(&waitlisted.id),
        &[],
        "",
    )
    .await
    .expect("decide");
    assert_eq!(
        scores_seen(&app, &token(second), &accepted.id).await,
        (both.clone(), false),
        "once accepted, the judges read every score"
    );
    assert_eq!(
        scores_seen(&app, &token(third), &accepted.id).await,
        (both.clone(), false),
        "a judge who never scored reads them too: nothing is left to score"
    );
    assert_eq!(
        scores_seen(&app, &token(second), &waitlisted.id).await,
        (vec![second.clone()], true),
        "a waitlisted application may still be scored: its scores stay hidden"
    );
    let outsider = app.token(&world.applicants[0].0, &[Role::Assessor], None);
    let refused = selection(&app)
        .list_scores(with_token(
            pb::ListScoresRequest {
                application_id: accepted.id.clone(),
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&refused), "NOT_YOUR_APPLICATION");
}

#[tokio::test]
async fn score_visibility_is_a_call_policy_a_manager_sets_and_changes() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 3, 10, 10).await;
    let before = get_call(&app, &world).await;
    let audited = audit_count(&app, "selection_call").await;

    let after_own = update_call(
        &app,
        &world.manager,
        pb::Call {
            id: world.call.id.clone(),
            etag: before.etag.clone(),
            score_visibility: pb::ScoreVisibility::AfterOwnScore.into(),
            // Not in the mask: ignored.
            title: "Ignored".to_owned(),
            ..Default::default()
        },
        &["score_visibility"],
    )
    .await
    .expect("update the policy");
    assert_eq!(
        after_own.score_visibility(),
        pb::ScoreVisibility::AfterOwnScore
    );
    assert_eq!(after_own.title, before.title);
    assert_eq!(after_own.seats, before.seats);
    assert_ne!(after_own.etag, before.etag);
    assert_eq!(get_call(&app, &world).await, after_own);
    assert_eq!(audit_count(&app, "selection_call").await, audited + 1);

    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &world.call.id, person_id).await.expect("apply"));
    }
    create_panel(&app, &world, 0).await;
    let target = &applications[1];
    let (first, second) = (&world.judges[0], &world.judges[1]);
    let second_token = app.token(second, &[Role::Assessor], None);
    let both = sorted(&[first, second]);
    score(&app, first, &target.id, &[9, 8, 7])
        .await
        .expect("first judge scores");
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (Vec::new(), true)
    );
    score(&app, second, &target.id, &[3, 4, 5])
        .await
        .expect("second judge scores");
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (both.clone(), false),
        "after their own score, a judge reads the others'"
    );

    // Managers only, with an empty mask (every populated field): judges read only their own,
    // even after the decision.
    let managers_only = update_call(
        &app,
        &world.manager,
        pb::Call {
            id: world.call.id.clone(),
            score_visibility: pb::ScoreVisibility::ManagersOnly.into(),
            ..Default::default()
        },
        &[],
    )
    .await
    .expect("update the policy");
    assert_eq!(
        managers_only.score_visibility(),
        pb::ScoreVisibility::ManagersOnly
    );
    assert_eq!(managers_only.title, before.title);
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (vec![second.clone()], true)
    );
    close_call(&app, &world).await;
    decide(
        &app,
        &world.manager,
        &world.call.id,
        std::slice::from_ref(&target.id),
        &[],
        &[],
        "",
    )
    .await
    .expect("decide");
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (vec![second.clone()], true),
        "managers only: a decision reveals nothing to judges"
    );
    assert_eq!(
        scores_seen(&app, &world.manager, &target.id).await,
        (both.clone(), false)
    );

    // Back to the default: the application is decided, so its judges read every score.
    update_call(
        &app,
        &world.manager,
        pb::Call {
            id: world.call.id.clone(),
            score_visibility: pb::ScoreVisibility::HiddenUntilDecided.into(),
            ..Default::default()
        },
        &["score_visibility"],
    )
    .await
    .expect("update the policy");
    assert_eq!(
        scores_seen(&app, &second_token, &target.id).await,
        (both, false)
    );

    // A call is created with its policy, or with the default when it names none.
    let mut second_call = before.clone();
    second_call.title = "Second intake".to_owned();
    second_call.score_visibility = pb::ScoreVisibility::ManagersOnly.into();
    let created = selection(&app)
        .create_call(with_token(
            pb::CreateCallRequest {
                call: Some(second_call),
                request_id: String::new(),
            },
            &world.manager,
        ))
        .await
        .expect("create a call with a policy")
        .into_inner();
    assert_eq!(
        created.score_visibility(),
        pb::ScoreVisibility::ManagersOnly
    );
}

#[tokio::test]
async fn a_bad_call_update_names_its_field_and_changes_nothing() {
    let (app, _database) = spawn_app().await;
    let world = world(&app, 2, 10, 10).await;
    let id = world.call.id.clone();
    let call = |fill: fn(&mut pb::Call)| {
        let mut call = pb::Call {
            id: id.clone(),
            ..Default::default()
        };
        fill(&mut call);
        call
    };
    let renamed = update_call(
        &app,
        &world.manager,
        call(|call| call.title = "Vendor talent programme 2025, second round".to_owned()),
        &["title"],
    )
    .await
    .expect("rename");
    assert_eq!(renamed.title, "Vendor talent programme 2025, second round");

    for (request, paths, fields) in [
        (call(|_| {}), vec!["rubric"], vec!["update_mask"]),
        (call(|_| {}), vec!["cohort_id"], vec!["update_mask"]),
        (
            call(|_| {}),
            vec!["score_visibility"],
            vec!["call.score_visibility"],
        ),
        (
            call(|call| call.score_visibility = 99),
            vec!["score_visibility"],
            vec!["call.score_visibility"],
        ),
        (
            call(|call| call.seats = -1),
            vec!["title", "seats"],
            vec!["call.title", "call.seats"],
        ),
    ] {
        let refused = update_call(&app, &world.manager, request, &paths)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{paths:?}");
        assert_eq!(violated_fields(&refused), fields, "{paths:?}");
    }
    let mut stale = call(|call| call.score_visibility = pb::ScoreVisibility::ManagersOnly.into());
    stale.etag = world.call.etag.clone();
    let aborted = update_call(&app, &world.manager, stale, &["score_visibility"])
        .await
        .unwrap_err();
    assert_eq!(aborted.code(), Code::Aborted);
    let learner = app.token(&world.applicants[0].0, &[Role::Learner], None);
    let denied = update_call(
        &app,
        &learner,
        call(|call| call.score_visibility = pb::ScoreVisibility::AfterOwnScore.into()),
        &["score_visibility"],
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let refused_create = selection(&app)
        .create_call(with_token(
            pb::CreateCallRequest {
                call: Some(pb::Call {
                    score_visibility: 42,
                    ..world.call.clone()
                }),
                request_id: String::new(),
            },
            &world.manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused_create), ["call.score_visibility"]);

    // Seats never drop below the accepted.
    let mut applications = Vec::new();
    for (person_id, _) in &world.applicants {
        applications.push(apply(&app, &id, person_id).await.expect("apply"));
    }
    close_call(&app, &world).await;
    let accepted: Vec<String> = applications.iter().map(|a| a.id.clone()).collect();
    decide(&app, &world.manager, &id, &accepted, &[], &[], "")
        .await
        .expect("accept both");
    let unchanged = get_call(&app, &world).await;
    let too_few = update_call(
        &app,
        &world.manager,
        call(|call| call.seats = 1),
        &["seats"],
    )
    .await
    .unwrap_err();
    assert_eq!(too_few.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&too_few), "PLACES_ALREADY_TAKEN");
    assert_eq!(
        get_call(&app, &world).await,
        unchanged,
        "nothing was written"
    );
    assert_eq!(
        unchanged.score_visibility(),
        pb::ScoreVisibility::HiddenUntilDecided
    );
}
