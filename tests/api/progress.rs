//! ProgressService: exactly-once events, derived completion that never goes backwards, reads
//! guarded per learner, recompute agreeing with the incremental state, streaming, xAPI export.

use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind, ProgressSource as Source,
    ProgressVerb as Verb, progress_service_client::ProgressServiceClient,
};
use proptest::prelude::*;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{
    courses, create_programme, import_people, open_cohort, phase, programmes, published_version,
};

pub(crate) fn progress(app: &TestApp) -> ProgressServiceClient<tonic::transport::Channel> {
    ProgressServiceClient::new(app.channel.clone()).max_decoding_message_size(64 * 1024 * 1024)
}

/// A cohort of enrolled learners on a two-module course: lecture, lab and exam (pass 70), then a
/// supervised industry attachment.
pub(crate) struct Classroom {
    pub(crate) cohort_id: String,
    pub(crate) lecture: String,
    lab: String,
    exam: String,
    attachment: String,
    /// (person id, enrolment id), in import order.
    pub(crate) learners: Vec<(String, String)>,
    host: String,
}

pub(crate) async fn classroom(app: &TestApp, learners: usize) -> Classroom {
    let provider = app
        .create_organization(
            "Provider",
            OrganizationKind::TrainingCentre,
            None,
            Some("PROV"),
        )
        .await;
    let host = app
        .create_organization(
            "Host company",
            OrganizationKind::Company,
            None,
            Some("HOST"),
        )
        .await;
    let version_id = published_version(
        app,
        "PROG-101",
        &provider.id,
        &[
            (
                "Basics",
                &[
                    (Kind::Lecture, Mode::InPerson, None),
                    (Kind::Lab, Mode::Online, None),
                    (Kind::Assessment, Mode::Online, None),
                ],
            ),
            (
                "Attachment",
                &[(
                    Kind::IndustryAttachment,
                    Mode::InPerson,
                    Some(host.id.as_str()),
                )],
            ),
        ],
    )
    .await;
    let version = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let activity =
        |module: usize, index: usize| version.modules[module].activities[index].id.clone();
    let programme = create_programme(
        app,
        "PROG",
        &provider.id,
        &[],
        vec![phase("Only", &[&version_id], "", 30)],
    )
    .await;
    let cohort = open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Cohort".to_owned(),
            capacity: 100_000,
            ..Default::default()
        },
    )
    .await;
    let classroom = Classroom {
        cohort_id: cohort.id,
        lecture: activity(0, 0),
        lab: activity(0, 1),
        exam: activity(0, 2),
        attachment: activity(1, 0),
        learners: Vec::new(),
        host: host.id,
    };
    add_learners(app, classroom, learners, "L").await
}

async fn add_learners(
    app: &TestApp,
    mut classroom: Classroom,
    count: usize,
    prefix: &str,
) -> Classroom {
    if count == 0 {
        return classroom;
    }
    let people = import_people(app, prefix, "PROV", count, pb::Sector::Public).await;
    for chunk in people.chunks(1000) {
        let response = programmes(app)
            .batch_enroll(app.admin(pb::BatchEnrollRequest {
                cohort_id: classroom.cohort_id.clone(),
                person_ids: chunk.to_vec(),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        for result in response.results {
            classroom
                .learners
                .push((result.person_id, result.enrollment.expect("enrolled").id));
        }
    }
    classroom
}

fn minutes_ago(minutes: i64) -> prost_types::Timestamp {
    let time = SystemTime::now() - Duration::from_secs((minutes.max(0) as u64) * 60);
    prost_types::Timestamp::from(time)
}

pub(crate) fn event(
    enrollment_id: &str,
    activity_id: &str,
    verb: Verb,
    score: Option<i32>,
    source: Source,
    minutes: i64,
) -> pb::ProgressEvent {
    pb::ProgressEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        enrollment_id: enrollment_id.to_owned(),
        activity_id: activity_id.to_owned(),
        verb: verb.into(),
        score,
        duration_seconds: 120,
        occurred_time: Some(minutes_ago(minutes)),
        source: source.into(),
        evidence: None,
        provenance_note: if source == Source::Import {
            "HRMIS export 2019".to_owned()
        } else {
            String::new()
        },
    }
}

async fn get_progress(app: &TestApp, enrollment_id: &str) -> pb::EnrollmentProgress {
    progress(app)
        .get_enrollment_progress(app.admin(pb::GetEnrollmentProgressRequest {
            enrollment_id: enrollment_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn batch(app: &TestApp, events: Vec<pb::ProgressEvent>) -> Vec<pb::ProgressAck> {
    progress(app)
        .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
        .await
        .unwrap()
        .into_inner()
        .acks
}

fn activity_state(progress: &pb::EnrollmentProgress, activity_id: &str) -> pb::ActivityState {
    progress
        .courses
        .iter()
        .flat_map(|course| &course.modules)
        .flat_map(|module| &module.activities)
        .find(|activity| activity.activity_id == activity_id)
        .map(|activity| activity.state())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_same_thousand_event_batch_sent_three_times_is_stored_once() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 10).await;
    let activities = [&room.lecture, &room.lab];
    let events: Vec<pb::ProgressEvent> = (0..1000)
        .map(|index| {
            let (_, enrollment) = &room.learners[index % 10];
            event(
                enrollment,
                activities[index % 2],
                Verb::Progressed,
                None,
                Source::App,
                (index % 60) as i64,
            )
        })
        .collect();
    let first = batch(&app, events.clone()).await;
    assert!(
        first.iter().all(|ack| ack.error.is_none()),
        "{:?}",
        first.iter().find(|ack| ack.error.is_some())
    );
    let before: Vec<pb::EnrollmentProgress> =
        futures::future::join_all(room.learners.iter().map(|(_, id)| get_progress(&app, id))).await;
    let second = batch(&app, events.clone()).await;
    let third = batch(&app, events).await;
    assert_eq!(first, second, "a replay answers with the first acks");
    assert_eq!(first, third);
    let after: Vec<pb::EnrollmentProgress> =
        futures::future::join_all(room.learners.iter().map(|(_, id)| get_progress(&app, id))).await;
    assert_eq!(before, after, "replays change nothing");
    assert_eq!(
        after
            .iter()
            .map(|progress| progress.event_count)
            .sum::<i64>(),
        1000
    );
}

#[tokio::test]
async fn a_hundred_concurrent_copies_of_one_event_make_one_row_and_one_answer() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 1).await;
    let (_, enrollment) = &room.learners[0];
    let copy = event(
        enrollment,
        &room.lecture,
        Verb::Attended,
        None,
        Source::Trainer,
        1,
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut client = progress(&app);
        let request = app.admin(pb::RecordProgressRequest {
            event: Some(copy.clone()),
        });
        tasks.push(tokio::spawn(async move {
            client.record_progress(request).await
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(
            task.await
                .unwrap()
                .expect("every copy is acknowledged")
                .into_inner(),
        );
    }
    assert!(
        acks.windows(2).all(|pair| pair[0] == pair[1]),
        "every copy gets the same answer"
    );
    let state = get_progress(&app, enrollment).await;
    assert_eq!(state.event_count, 1);
    assert_eq!(
        activity_state(&state, &room.lecture),
        pb::ActivityState::Completed
    );

    let mut changed = copy.clone();
    changed.duration_seconds = 999;
    let status = progress(&app)
        .record_progress(app.admin(pb::RecordProgressRequest {
            event: Some(changed),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["event.event_id"]);
}

#[tokio::test]
async fn concurrent_unary_calls_committed_together_keep_their_own_answers() {
    // Unary RecordProgress calls that arrive together share a transaction (group commit); each
    // must still get its own answer, a refused one must not take its neighbours down, and every
    // acknowledged event must be stored once.
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 20).await;
    let mut tasks = Vec::new();
    for (number, (_, enrollment)) in room.learners.iter().enumerate() {
        for copy in 0..3 {
            // Every third learner's second call names an activity of no course: refused alone.
            let activity = if number % 3 == 0 && copy == 1 {
                uuid::Uuid::new_v4().to_string()
            } else {
                room.lecture.clone()
            };
            let event = event(
                enrollment,
                &activity,
                Verb::Attended,
                None,
                Source::Trainer,
                1,
            );
            let mut client = progress(&app);
            let request = app.admin(pb::RecordProgressRequest { event: Some(event) });
            let refused = activity != room.lecture;
            tasks.push(tokio::spawn(async move {
                (refused, client.record_progress(request).await)
            }));
        }
    }
    let (mut acknowledged, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (false, Ok(ack)) => {
                assert_eq!(
                    ack.into_inner().activity_state(),
                    pb::ActivityState::Completed
                );
                acknowledged += 1;
            }
            (true, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                assert_eq!(violated_fields(&status), ["event.activity_id"]);
                refused += 1;
            }
            (expected_refusal, answer) => {
                panic!("expected refusal {expected_refusal}, got {answer:?}")
            }
        }
    }
    assert_eq!((acknowledged, refused), (53, 7));
    let mut stored = 0;
    for (number, (_, enrollment)) in room.learners.iter().enumerate() {
        let state = get_progress(&app, enrollment).await;
        let expected = if number % 3 == 0 { 2 } else { 3 };
        assert_eq!(state.event_count, expected, "learner {number}");
        stored += state.event_count;
    }
    assert_eq!(stored, acknowledged);
}

#[tokio::test]
async fn completion_follows_the_rule_and_never_goes_backwards() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 1).await;
    let (_, enrollment) = &room.learners[0];

    // Below the pass mark, then above, then a late older failure: still passed.
    batch(
        &app,
        vec![event(
            enrollment,
            &room.exam,
            Verb::Failed,
            Some(55),
            Source::App,
            50,
        )],
    )
    .await;
    assert_eq!(
        activity_state(&get_progress(&app, enrollment).await, &room.exam),
        pb::ActivityState::Failed
    );
    batch(
        &app,
        vec![event(
            enrollment,
            &room.exam,
            Verb::Passed,
            Some(85),
            Source::App,
            40,
        )],
    )
    .await;
    batch(
        &app,
        vec![event(
            enrollment,
            &room.exam,
            Verb::Failed,
            Some(10),
            Source::App,
            45,
        )],
    )
    .await;
    let state = get_progress(&app, enrollment).await;
    let exam = state.courses[0].modules[0]
        .activities
        .iter()
        .find(|activity| activity.activity_id == room.exam)
        .unwrap();
    assert_eq!(
        (exam.state(), exam.best_score, exam.attempts),
        (pb::ActivityState::Completed, Some(85), 3)
    );
    assert_eq!(state.next_activity_id, room.lecture);

    // The attachment needs a supervisor: the learner's own COMPLETED does not complete it.
    batch(
        &app,
        vec![
            event(
                enrollment,
                &room.lecture,
                Verb::Attended,
                None,
                Source::Trainer,
                30,
            ),
            event(
                enrollment,
                &room.lab,
                Verb::Completed,
                None,
                Source::App,
                20,
            ),
            event(
                enrollment,
                &room.attachment,
                Verb::Completed,
                None,
                Source::App,
                10,
            ),
        ],
    )
    .await;
    let state = get_progress(&app, enrollment).await;
    assert_eq!(state.state(), pb::EnrollmentState::InProgress);
    assert_eq!(state.percent_complete, 75.0);
    assert_eq!(state.next_activity_id, room.attachment);

    let mut sign_off = event(
        enrollment,
        &room.attachment,
        Verb::Completed,
        None,
        Source::Supervisor,
        5,
    );
    sign_off.evidence = Some(pb::Evidence {
        uri: "https://files.example/signoff.pdf".to_owned(),
        note: "host supervisor".to_owned(),
    });
    let ack = batch(&app, vec![sign_off]).await.remove(0);
    assert_eq!(ack.enrollment_state(), pb::EnrollmentState::Completed);
    assert_eq!(ack.percent_complete, 100.0);
    let state = get_progress(&app, enrollment).await;
    assert!(state.courses[0].completed && state.completed_time.is_some());
    assert!(state.next_activity_id.is_empty());

    // A late, older event after completion changes nothing about completion.
    batch(
        &app,
        vec![event(
            enrollment,
            &room.lab,
            Verb::Started,
            None,
            Source::App,
            600,
        )],
    )
    .await;
    let later = get_progress(&app, enrollment).await;
    assert_eq!(
        (later.state(), later.percent_complete, later.completed_time),
        (pb::EnrollmentState::Completed, 100.0, state.completed_time)
    );
    let enrollment_record = programmes(&app)
        .get_enrollment(app.admin(pb::GetEnrollmentRequest {
            id: enrollment.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enrollment_record.state(), pb::EnrollmentState::Completed);
}

#[tokio::test]
async fn bad_events_get_their_own_errors_and_good_neighbours_land() {
    let (app, _database) = spawn_app().await;
    let room = add_learners(&app, classroom(&app, 2).await, 0, "").await;
    let (_, first) = &room.learners[0];
    let (_, second) = &room.learners[1];
    programmes(&app)
        .withdraw(app.admin(pb::WithdrawRequest {
            enrollment_id: second.clone(),
            reason: "left".to_owned(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let mut future = event(first, &room.lab, Verb::Started, None, Source::App, 0);
    future.occurred_time = Some(prost_types::Timestamp::from(
        SystemTime::now() + Duration::from_secs(3600),
    ));
    let events = vec![
        event(
            first,
            &room.lecture,
            Verb::Attended,
            None,
            Source::Trainer,
            5,
        ),
        event(
            second,
            &room.lecture,
            Verb::Attended,
            None,
            Source::Trainer,
            5,
        ),
        event(
            first,
            &uuid::Uuid::now_v7().to_string(),
            Verb::Completed,
            None,
            Source::App,
            5,
        ),
        event(first, &room.lab, Verb::Completed, Some(80), Source::App, 5),
        event(first, &room.exam, Verb::Passed, None, Source::App, 5),
        future,
        event(first, &room.lab, Verb::Completed, None, Source::App, 5),
    ];
    let acks = batch(&app, events).await;
    let reasons: Vec<(String, String)> = acks
        .iter()
        .map(|ack| {
            ack.error
                .as_ref()
                .map(|error| (error.reason.clone(), error.field.clone()))
                .unwrap_or_default()
        })
        .collect();
    let expected = [
        ("", ""),
        ("ENROLLMENT_NOT_ACTIVE", "enrollment_id"),
        ("ACTIVITY_NOT_IN_ENROLLMENT", "activity_id"),
        ("INVALID_FIELD", "score"),
        ("INVALID_FIELD", "score"),
        ("INVALID_FIELD", "occurred_time"),
        ("", ""),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(reason, field)| ((*reason).to_owned(), (*field).to_owned()))
        .collect();
    assert_eq!(reasons, expected);
    assert_eq!(get_progress(&app, first).await.event_count, 2);

    let status = progress(&app)
        .record_progress(app.admin(pb::RecordProgressRequest {
            event: Some(event(
                second,
                &room.lab,
                Verb::Started,
                None,
                Source::App,
                1,
            )),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "ENROLLMENT_NOT_ACTIVE");
    // The refusal names the enrolment where the enrolment belongs, and the event beside it.
    let subject = status
        .get_error_details()
        .precondition_failure()
        .map(|failure| failure.violations[0].subject.clone())
        .unwrap_or_default();
    assert_eq!(subject, format!("enrollment/{second}"), "{status:?}");
    assert_eq!(
        crate::helpers::error_metadata(&status, "enrollment_id").as_deref(),
        Some(second.as_str())
    );
    assert!(
        crate::helpers::error_metadata(&status, "event_id").is_some_and(|id| !id.is_empty()),
        "{status:?}"
    );
    assert!(
        status.message().contains(second.as_str()),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn learners_record_their_own_app_events_and_read_only_their_own_progress() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 2).await;
    let (me, mine) = &room.learners[0];
    let (_, theirs) = &room.learners[1];
    let learner = app.token(me, &[Role::Learner], None);

    let own = progress(&app)
        .record_progress(with_token(
            pb::RecordProgressRequest {
                event: Some(event(mine, &room.lab, Verb::Started, None, Source::App, 1)),
            },
            &learner,
        ))
        .await;
    assert!(own.is_ok(), "{own:?}");
    for (enrollment, source) in [(theirs, Source::App), (mine, Source::Supervisor)] {
        let status = progress(&app)
            .record_progress(with_token(
                pb::RecordProgressRequest {
                    event: Some(event(
                        enrollment,
                        &room.attachment,
                        Verb::Completed,
                        None,
                        source,
                        1,
                    )),
                },
                &learner,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    progress(&app)
        .get_enrollment_progress(with_token(
            pb::GetEnrollmentProgressRequest {
                enrollment_id: mine.clone(),
            },
            &learner,
        ))
        .await
        .expect("own progress");
    let status = progress(&app)
        .get_enrollment_progress(with_token(
            pb::GetEnrollmentProgressRequest {
                enrollment_id: theirs.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A list is narrowed to what the caller reaches: the cohort's list shows the learner only
    // their own row.
    let cohort_list = progress(&app)
        .list_progress(with_token(
            pb::ListProgressRequest {
                cohort_id: room.cohort_id.clone(),
                ..Default::default()
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cohort_list
            .progress
            .iter()
            .map(|row| row.enrollment_id.clone())
            .collect::<Vec<_>>(),
        vec![mine.clone()]
    );
    let own_list = progress(&app)
        .list_progress(with_token(
            pb::ListProgressRequest {
                person_id: me.clone(),
                ..Default::default()
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own_list.progress.len(), 1);
    let status = progress(&app)
        .export_statements(with_token(
            pb::ExportStatementsRequest {
                enrollment_id: theirs.clone(),
                ..Default::default()
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = progress(&app)
        .recompute_progress(with_token(
            pb::RecomputeProgressRequest {
                enrollment_id: mine.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_cohort_lists_by_percent_and_imports_keep_their_history() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 3).await;
    let ids: Vec<&String> = room
        .learners
        .iter()
        .map(|(_, enrollment)| enrollment)
        .collect();
    let hr = app.token("hr-system", &[Role::HrService], None);
    let old = event(
        ids[1],
        &room.lecture,
        Verb::Completed,
        None,
        Source::Import,
        60 * 24 * 365 * 3,
    );
    let acks = progress(&app)
        .batch_record_progress(with_token(
            pb::BatchRecordProgressRequest {
                events: vec![
                    old.clone(),
                    event(ids[2], &room.lab, Verb::Started, None, Source::App, 1),
                ],
            },
            &hr,
        ))
        .await
        .unwrap()
        .into_inner()
        .acks;
    assert!(acks[0].error.is_none());
    assert_eq!(
        acks[1].error.as_ref().unwrap().reason,
        "PERMISSION_DENIED",
        "HR services import only"
    );
    batch(
        &app,
        vec![
            event(
                ids[0],
                &room.lecture,
                Verb::Attended,
                None,
                Source::Trainer,
                1,
            ),
            event(ids[0], &room.lab, Verb::Completed, None, Source::App, 1),
        ],
    )
    .await;

    let listed = progress(&app)
        .list_progress(app.admin(pb::ListProgressRequest {
            cohort_id: room.cohort_id.clone(),
            order_by: "percent_complete desc".to_owned(),
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let percents: Vec<f64> = listed
        .progress
        .iter()
        .map(|row| row.percent_complete)
        .collect();
    assert_eq!(percents, [50.0, 25.0]);
    let rest = progress(&app)
        .list_progress(app.admin(pb::ListProgressRequest {
            cohort_id: room.cohort_id.clone(),
            order_by: "percent_complete desc".to_owned(),
            page_size: 2,
            page_token: listed.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.progress
            .iter()
            .map(|row| row.percent_complete)
            .collect::<Vec<_>>(),
        [0.0]
    );
    assert!(rest.next_page_token.is_empty());

    let state = get_progress(&app, ids[1]).await;
    let lecture = &state.courses[0].modules[0].activities[0];
    assert_eq!(
        lecture.completed_time,
        old.occurred_time.map(|time| prost_types::Timestamp {
            nanos: time.nanos / 1000 * 1000,
            ..time
        })
    );
}

#[tokio::test]
async fn a_stream_of_ten_thousand_events_gets_ten_thousand_acks_in_order() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 20).await;
    let events: Vec<pb::ProgressEvent> = (0..10_000)
        .map(|index| {
            let (_, enrollment) = &room.learners[index % 20];
            event(
                enrollment,
                &room.lab,
                Verb::Progressed,
                None,
                Source::App,
                (index % 100) as i64,
            )
        })
        .collect();
    let ids: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
    let outbound = tokio_stream::iter(events);
    let mut acks = progress(&app)
        .stream_progress(app.admin(outbound))
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::with_capacity(10_000);
    while let Some(ack) = acks.next().await {
        let ack = ack.expect("ack");
        assert!(ack.error.is_none(), "{:?}", ack.error);
        received.push(ack.event_id);
    }
    assert_eq!(received, ids);
    let total: i64 =
        futures::future::join_all(room.learners.iter().map(|(_, id)| get_progress(&app, id)))
            .await
            .iter()
            .map(|progress| progress.event_count)
            .sum();
    assert_eq!(total, 10_000);
}

#[tokio::test]
async fn exported_statements_are_xapi() {
    let (app, _database) = spawn_app().await;
    let room = classroom(&app, 1).await;
    let (person, enrollment) = &room.learners[0];
    let mut sign_off = event(
        enrollment,
        &room.attachment,
        Verb::Completed,
        None,
        Source::Supervisor,
        1,
    );
    sign_off.evidence = Some(pb::Evidence {
        uri: "https://files.example/s.pdf".to_owned(),
        note: String::new(),
    });
    batch(
        &app,
        vec![
            event(
                enrollment,
                &room.exam,
                Verb::Passed,
                Some(90),
                Source::App,
                3,
            ),
            event(
                enrollment,
                &room.lecture,
                Verb::Attended,
                None,
                Source::Trainer,
                2,
            ),
            sign_off,
        ],
    )
    .await;
    let mut stream = progress(&app)
        .export_statements(app.admin(pb::ExportStatementsRequest {
            cohort_id: room.cohort_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut statements = Vec::new();
    while let Some(chunk) = stream.next().await {
        statements.extend(chunk.unwrap().statements);
    }
    assert_eq!(statements.len(), 3);
    for text in &statements {
        let statement: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(uuid::Uuid::parse_str(statement["id"].as_str().unwrap()).is_ok());
        assert_eq!(statement["actor"]["objectType"], "Agent");
        assert_eq!(statement["actor"]["account"]["name"], person.as_str());
        assert!(
            statement["actor"]["account"]["homePage"]
                .as_str()
                .unwrap()
                .starts_with("https://")
        );
        let verb = statement["verb"]["id"].as_str().unwrap();
        assert!(
            verb.starts_with("http://adlnet.gov/expapi/verbs/"),
            "{verb}"
        );
        assert!(statement["verb"]["display"]["en-US"].is_string());
        assert_eq!(statement["object"]["objectType"], "Activity");
        assert!(
            statement["object"]["id"]
                .as_str()
                .unwrap()
                .starts_with("https://")
        );
        assert!(statement["result"].is_object());
        assert!(
            chrono::DateTime::parse_from_rfc3339(statement["timestamp"].as_str().unwrap()).is_ok()
        );
        assert_eq!(statement["context"]["registration"], enrollment.as_str());
    }
    let passed: serde_json::Value = statements
        .iter()
        .map(|text| serde_json::from_str::<serde_json::Value>(text).unwrap())
        .find(|statement| statement["verb"]["display"]["en-US"] == "passed")
        .unwrap();
    assert_eq!(passed["result"]["score"]["scaled"], 0.9);
    assert_eq!(passed["result"]["success"], true);
}

/// A random learner history: (activity 0..4, verb, score, source, minutes ago), some sent twice.
fn history() -> impl Strategy<Value = Vec<(usize, Verb, i32, Source, i64, bool)>> {
    let verb = prop_oneof![
        Just(Verb::Started),
        Just(Verb::Attended),
        Just(Verb::Progressed),
        Just(Verb::Completed),
        Just(Verb::Passed),
        Just(Verb::Failed)
    ];
    let source = prop_oneof![
        Just(Source::App),
        Just(Source::Trainer),
        Just(Source::Supervisor)
    ];
    proptest::collection::vec(
        (
            0usize..4,
            verb,
            0i32..=100,
            source,
            0i64..10_000,
            any::<bool>(),
        ),
        0..25,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_progress_equals_recompute_on_random_histories() {
    let (app, _database) = spawn_app().await;
    let room = std::sync::Arc::new(tokio::sync::Mutex::new(classroom(&app, 0).await));
    let app = std::sync::Arc::new(app);
    let handle = tokio::runtime::Handle::current();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&history(), |history| {
            let app = app.clone();
            let room = room.clone();
            let number = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::block_in_place(|| {
                handle.block_on(async move {
                    let mut guard = room.lock().await;
                    let taken = std::mem::replace(
                        &mut *guard,
                        Classroom {
                            cohort_id: String::new(),
                            lecture: String::new(),
                            lab: String::new(),
                            exam: String::new(),
                            attachment: String::new(),
                            learners: Vec::new(),
                            host: String::new(),
                        },
                    );
                    *guard = add_learners(&app, taken, 1, &format!("P{number}")).await;
                    let (_, enrollment) = guard.learners.last().cloned().unwrap();
                    let activities = [
                        guard.lecture.clone(),
                        guard.lab.clone(),
                        guard.exam.clone(),
                        guard.attachment.clone(),
                    ];
                    let mut events = Vec::new();
                    for (activity, verb, score, source, minutes, twice) in history {
                        let scored = activity == 2
                            && matches!(verb, Verb::Passed | Verb::Failed | Verb::Completed);
                        let event = event(
                            &enrollment,
                            &activities[activity],
                            verb,
                            scored.then_some(score),
                            source,
                            minutes,
                        );
                        if twice {
                            events.push(event.clone());
                        }
                        events.push(event);
                    }
                    // Sent in small batches, so the incremental state is built across transactions.
                    for chunk in events.chunks(4) {
                        batch(&app, chunk.to_vec()).await;
                    }
                    let incremental = get_progress(&app, &enrollment).await;
                    let recomputed = progress(&app)
                        .recompute_progress(app.admin(pb::RecomputeProgressRequest {
                            enrollment_id: enrollment.clone(),
                        }))
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(incremental, recomputed);
                    assert_eq!(get_progress(&app, &enrollment).await, incremental);
                    let _ = &guard.host;
                });
            });
            Ok(())
        })
        .expect("incremental and recomputed progress agree");
}
