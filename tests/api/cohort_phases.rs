//! Cohort phase windows (validated, kept in phase order, progress outside them accepted and
//! reported as early or late, reports grouped by phase) and cohorts that open, start and close by
//! their dates through the replica-safe sweep.

use chrono::{Duration, NaiveDate};
use futures::StreamExt as _;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind, ProgressSource as Source,
    ProgressVerb as Verb, report_service_client::ReportServiceClient,
};
use tonic::Code;

use crate::helpers::{TestApp, spawn_app, violated_fields};
use crate::programmes::{
    courses, create_programme, import_people, phase, programmes, published_version,
};
use crate::progress::{event, progress};

/// A two-phase programme ("one month of local training, then a five-month attachment"), each
/// phase one course of one required activity.
struct TwoPhases {
    programme: pb::Programme,
    /// The activity of phase 1.
    training: String,
    /// The activity of phase 2.
    attachment: String,
}

async fn first_activity(app: &TestApp, version_id: &str) -> String {
    courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .modules[0]
        .activities[0]
        .id
        .clone()
}

async fn two_phases(app: &TestApp) -> TwoPhases {
    let provider = app
        .create_organization(
            "University",
            OrganizationKind::University,
            None,
            Some("UNI"),
        )
        .await;
    let training = published_version(
        app,
        "LOCAL",
        &provider.id,
        &[("Labs", &[(Kind::Lecture, Mode::InPerson, None)])],
    )
    .await;
    let attachment = published_version(
        app,
        "ABROAD",
        &provider.id,
        &[("Visits", &[(Kind::Workshop, Mode::InPerson, None)])],
    )
    .await;
    let programme = create_programme(
        app,
        "FFPS",
        &provider.id,
        &[],
        vec![
            phase("Local training", &[&training], "University", 30),
            phase("Attachment", &[&attachment], "Abroad", 150),
        ],
    )
    .await;
    TwoPhases {
        training: first_activity(app, &training).await,
        attachment: first_activity(app, &attachment).await,
        programme,
    }
}

fn window(phase_id: &str, start: NaiveDate, end: NaiveDate) -> pb::CohortPhaseWindow {
    pb::CohortPhaseWindow {
        phase_id: phase_id.to_owned(),
        start_date: start.to_string(),
        end_date: end.to_string(),
    }
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

async fn create_cohort(app: &TestApp, cohort: pb::Cohort) -> Result<pb::Cohort, tonic::Status> {
    programmes(app)
        .create_cohort(app.admin(pb::CreateCohortRequest {
            cohort: Some(cohort),
            request_id: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn update_cohort(
    app: &TestApp,
    cohort: pb::Cohort,
    paths: &[&str],
) -> Result<pb::Cohort, tonic::Status> {
    programmes(app)
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(cohort),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn window_ids(cohort: &pb::Cohort) -> Vec<String> {
    cohort
        .phase_windows
        .iter()
        .map(|window| window.phase_id.clone())
        .collect()
}

#[tokio::test]
async fn phase_windows_are_validated_kept_in_phase_order_and_follow_the_programme() {
    let (app, _database) = spawn_app().await;
    let ffps = two_phases(&app).await;
    let (local, abroad) = (
        ffps.programme.phases[0].id.clone(),
        ffps.programme.phases[1].id.clone(),
    );
    let cohort = |windows: Vec<pb::CohortPhaseWindow>| pb::Cohort {
        programme_id: ffps.programme.id.clone(),
        name: "Cohort 1".to_owned(),
        start_date: "2025-05-01".to_owned(),
        end_date: "2025-11-30".to_owned(),
        capacity: 20,
        phase_windows: windows,
        ..Default::default()
    };
    // Listed attachment first: stored and answered in phase order.
    let created = create_cohort(
        &app,
        cohort(vec![
            window(&abroad, date("2025-06-01"), date("2025-11-30")),
            window(&local, date("2025-05-01"), date("2025-05-31")),
        ]),
    )
    .await
    .expect("create with windows");
    assert_eq!(window_ids(&created), [local.clone(), abroad.clone()]);
    assert_eq!(created.phase_windows[0].end_date, "2025-05-31");
    let read = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: created.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.phase_windows, created.phase_windows);

    let stranger = uuid::Uuid::now_v7().to_string();
    let bad: Vec<(Vec<pb::CohortPhaseWindow>, &str)> = vec![
        (
            vec![window(&stranger, date("2025-05-01"), date("2025-05-31"))],
            "cohort.phase_windows[0].phase_id",
        ),
        (
            vec![
                window(&local, date("2025-05-01"), date("2025-05-10")),
                window(&local, date("2025-05-20"), date("2025-05-31")),
            ],
            "cohort.phase_windows[1].phase_id",
        ),
        (
            vec![
                window(&local, date("2025-05-01"), date("2025-06-10")),
                window(&abroad, date("2025-06-10"), date("2025-11-30")),
            ],
            "cohort.phase_windows[1].start_date",
        ),
        (
            vec![window(&local, date("2025-04-20"), date("2025-05-31"))],
            "cohort.phase_windows[0].start_date",
        ),
        (
            vec![window(&abroad, date("2025-06-01"), date("2025-12-31"))],
            "cohort.phase_windows[0].end_date",
        ),
        (
            vec![window(&local, date("2025-05-31"), date("2025-05-01"))],
            "cohort.phase_windows[0].end_date",
        ),
        (
            vec![pb::CohortPhaseWindow {
                phase_id: local.clone(),
                start_date: "2025-13-01".to_owned(),
                end_date: "2025-05-31".to_owned(),
            }],
            "cohort.phase_windows[0].start_date",
        ),
        (
            vec![pb::CohortPhaseWindow {
                phase_id: local.clone(),
                start_date: "2025-05-01".to_owned(),
                end_date: String::new(),
            }],
            "cohort.phase_windows[0].end_date",
        ),
    ];
    for (windows, field) in bad {
        let status = create_cohort(&app, cohort(windows.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{windows:?}");
        assert!(
            violated_fields(&status).iter().any(|path| path == field),
            "{field} in {:?}",
            violated_fields(&status)
        );
    }
    let status = create_cohort(
        &app,
        pb::Cohort {
            schedule: Some(pb::CohortSchedule {
                auto_advance: true,
                enrollment_open_date: "2025-05-02".to_owned(),
            }),
            ..cohort(Vec::new())
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["cohort.schedule.enrollment_open_date"]
    );
    // Nothing of the refused calls was written.
    let listed = programmes(&app)
        .list_cohorts(app.admin(pb::ListCohortsRequest {
            programme_id: ffps.programme.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cohorts.len(), 1);
    assert_eq!(listed.cohorts[0].phase_windows, created.phase_windows);

    // Shortening the cohort past a window is refused; the mask path replaces the whole list.
    let status = update_cohort(
        &app,
        pb::Cohort {
            id: created.id.clone(),
            end_date: "2025-10-31".to_owned(),
            ..Default::default()
        },
        &["end_date"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["cohort.phase_windows[1].end_date"]
    );
    let updated = update_cohort(
        &app,
        pb::Cohort {
            id: created.id.clone(),
            etag: created.etag.clone(),
            phase_windows: vec![window(&abroad, date("2025-07-01"), date("2025-11-15"))],
            ..Default::default()
        },
        &["phase_windows"],
    )
    .await
    .expect("replace the windows");
    assert_eq!(window_ids(&updated), std::slice::from_ref(&abroad));
    assert_eq!(updated.phase_windows[0].start_date, "2025-07-01");
    assert_ne!(updated.etag, created.etag);
    let cleared = update_cohort(
        &app,
        pb::Cohort {
            id: created.id.clone(),
            ..Default::default()
        },
        &["phase_windows"],
    )
    .await
    .expect("clear the windows");
    assert!(cleared.phase_windows.is_empty());
    update_cohort(
        &app,
        pb::Cohort {
            id: created.id.clone(),
            phase_windows: vec![
                window(&local, date("2025-05-01"), date("2025-05-31")),
                window(&abroad, date("2025-06-01"), date("2025-11-30")),
            ],
            ..Default::default()
        },
        &["phase_windows"],
    )
    .await
    .expect("set both windows again");

    // A phase dropped from the programme takes its windows along.
    let kept = pb::Phase {
        id: local.clone(),
        ..ffps.programme.phases[0].clone()
    };
    programmes(&app)
        .update_programme(app.admin(pb::UpdateProgrammeRequest {
            programme: Some(pb::Programme {
                id: ffps.programme.id.clone(),
                phases: vec![kept],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phases".to_owned()],
            }),
        }))
        .await
        .expect("drop the attachment phase");
    let read = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: created.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(window_ids(&read), [local]);
}

async fn record(app: &TestApp, events: Vec<pb::ProgressEvent>) {
    let acks = progress(app)
        .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
        .await
        .expect("record progress")
        .into_inner()
        .acks;
    for ack in acks {
        assert!(ack.error.is_none(), "accepted: {ack:?}");
    }
}

/// Key, name, enrolled, in progress, completed, activities completed, early, late.
type PhaseRow = (String, String, i64, i64, i64, i64, i64, i64);

fn reports(app: &TestApp) -> ReportServiceClient<tonic::transport::Channel> {
    ReportServiceClient::new(app.channel.clone())
}

#[tokio::test]
async fn progress_outside_a_window_is_accepted_and_reports_group_it_by_phase() {
    let (app, _database) = spawn_app().await;
    let ffps = two_phases(&app).await;
    let (local, abroad) = (
        ffps.programme.phases[0].id.clone(),
        ffps.programme.phases[1].id.clone(),
    );
    let today = chrono::Utc::now().date_naive();
    let cohort = create_cohort(
        &app,
        pb::Cohort {
            programme_id: ffps.programme.id.clone(),
            name: "Cohort 1".to_owned(),
            start_date: (today - Duration::days(60)).to_string(),
            end_date: (today + Duration::days(100)).to_string(),
            capacity: 20,
            phase_windows: vec![
                window(
                    &local,
                    today - Duration::days(60),
                    today - Duration::days(30),
                ),
                window(
                    &abroad,
                    today + Duration::days(10),
                    today + Duration::days(100),
                ),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    programmes(&app)
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: cohort.id.clone(),
            state: pb::CohortState::Running.into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let people = import_people(&app, "FFPS", "UNI", 3, pb::Sector::Public).await;
    let mut enrollments = Vec::new();
    for person in &people {
        enrollments.push(
            programmes(&app)
                .enroll(app.admin(pb::EnrollRequest {
                    cohort_id: cohort.id.clone(),
                    person_id: person.clone(),
                    request_id: String::new(),
                }))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let days_ago = |days: i64| days * 24 * 60;
    // The first learner trained in the window and started the attachment early; the second's
    // device synced the training a month after its window closed; the third did nothing.
    record(
        &app,
        vec![
            event(
                &enrollments[0],
                &ffps.training,
                Verb::Completed,
                None,
                Source::App,
                days_ago(40),
            ),
            event(
                &enrollments[0],
                &ffps.attachment,
                Verb::Completed,
                None,
                Source::App,
                0,
            ),
            event(
                &enrollments[1],
                &ffps.training,
                Verb::Completed,
                None,
                Source::App,
                0,
            ),
        ],
    )
    .await;

    let request = pb::GetCompletionReportRequest {
        programme_id: ffps.programme.id.clone(),
        group_by: pb::ReportGrouping::Phase.into(),
        ..Default::default()
    };
    let report = reports(&app)
        .get_completion_report(app.admin(request.clone()))
        .await
        .expect("phase report")
        .into_inner();
    let rows: Vec<PhaseRow> = report
        .rows
        .iter()
        .map(|row| {
            (
                row.key.clone(),
                row.name.clone(),
                row.enrolled,
                row.in_progress,
                row.completed,
                row.activities_completed,
                row.activities_completed_early,
                row.activities_completed_late,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                local.clone(),
                "1. Local training".to_owned(),
                1,
                0,
                2,
                2,
                0,
                1
            ),
            (abroad.clone(), "2. Attachment".to_owned(), 2, 0, 1, 1, 1, 0),
        ]
    );
    assert_eq!(
        (
            report.rows[0].window_start_date.as_str(),
            report.rows[0].window_end_date.as_str()
        ),
        (
            (today - Duration::days(60)).to_string().as_str(),
            (today - Duration::days(30)).to_string().as_str()
        )
    );
    assert_eq!(report.rows[0].completion_rate, 66.67);
    assert_eq!(
        report.rows[1].window_start_date,
        (today + Duration::days(10)).to_string()
    );
    // The total counts each enrolment once by its state, and every activity completion.
    let total = report.total.unwrap();
    assert_eq!(
        (
            total.enrolled,
            total.in_progress,
            total.completed,
            total.activities_completed,
            total.activities_completed_early,
            total.activities_completed_late
        ),
        (1, 1, 1, 3, 1, 1)
    );

    // Rooted at an organisation: the learners' own counts them all, another none.
    let university = app
        .organizations
        .clone()
        .list_organizations(app.admin(pb::ListOrganizationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .organizations
        .into_iter()
        .find(|organization| organization.external_code == "UNI")
        .unwrap();
    let elsewhere = app
        .create_organization("Elsewhere", OrganizationKind::Ministry, None, Some("ELSE"))
        .await;
    for (root, expected) in [
        (&university.id, [(2, 2, 1), (1, 1, 0)]),
        (&elsewhere.id, [(0, 0, 0); 2]),
    ] {
        let rooted = reports(&app)
            .get_completion_report(app.admin(pb::GetCompletionReportRequest {
                organization_id: root.clone(),
                ..request.clone()
            }))
            .await
            .unwrap()
            .into_inner();
        let figures: Vec<(i64, i64, i64)> = rooted
            .rows
            .iter()
            .map(|row| {
                (
                    row.completed,
                    row.activities_completed,
                    row.activities_completed_late,
                )
            })
            .collect();
        assert_eq!(figures, expected, "rooted at {root}");
    }

    let mut stream = reports(&app)
        .export_report(app.admin(pb::ExportReportRequest {
            report: Some(request),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.next().await {
        csv.push_str(&chunk.unwrap().csv);
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(
            ",window_start_date,window_end_date,activities_completed,activities_completed_early,activities_completed_late"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 4, "header, two phases, the total: {csv}");
    assert!(
        lines[1].ends_with(&format!(
            ",{},{},2,0,1",
            today - Duration::days(60),
            today - Duration::days(30)
        )),
        "{}",
        lines[1]
    );

    // Phases belong to programmes: a course report cannot group by them.
    let course_id = courses(&app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: ffps.programme.phases[0].course_version_ids[0].clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .course_id;
    let status = reports(&app)
        .get_completion_report(app.admin(pb::GetCompletionReportRequest {
            course_id,
            group_by: pb::ReportGrouping::Phase.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["group_by"]);
}

/// Reads the `cohort.changed` events of the feed, until caught up: (cohort, previous state,
/// state, automatic).
async fn cohort_events(app: &TestApp) -> Vec<(String, String, String, bool)> {
    let mut stream = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["cohort.changed".to_owned()],
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
        assert_eq!(payload["cohort_id"], event.subject_id.as_str());
        events.push((
            event.subject_id,
            payload["previous_state"].as_str().unwrap().to_owned(),
            payload["state"].as_str().unwrap().to_owned(),
            payload["automatic"].as_bool().unwrap(),
        ));
    }
    events
}

#[tokio::test]
async fn four_racing_sweeps_move_a_due_cohort_once_and_leave_the_rest_alone() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = crate::helpers::test_config(&database);
    // No background sweep: the replicas below are the only sweepers, so the counts are exact.
    config.certification.expiry_sweep_interval = std::time::Duration::ZERO;
    let app = crate::helpers::spawn_app_with(config).await;
    let ffps = two_phases(&app).await;
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + Duration::days(offset)).to_string();
    let scheduled = |name: &str, open: String, start: String, end: String, auto: bool| pb::Cohort {
        programme_id: ffps.programme.id.clone(),
        name: name.to_owned(),
        start_date: start,
        end_date: end,
        capacity: 30,
        schedule: Some(pb::CohortSchedule {
            auto_advance: auto,
            enrollment_open_date: open,
        }),
        ..Default::default()
    };
    let due = create_cohort(&app, scheduled("Due", day(-1), day(5), day(30), true))
        .await
        .unwrap();
    assert_eq!(due.schedule.as_ref().unwrap().enrollment_open_date, day(-1));
    assert!(due.schedule.as_ref().unwrap().auto_advance);
    let later = create_cohort(&app, scheduled("Later", day(3), day(20), day(40), true))
        .await
        .unwrap();
    let by_hand = create_cohort(
        &app,
        scheduled("By hand", day(-2), day(10), String::new(), true),
    )
    .await
    .unwrap();
    let closed = create_cohort(
        &app,
        scheduled("Cancelled", day(-9), day(-5), day(10), true),
    )
    .await
    .unwrap();
    let manual = create_cohort(&app, scheduled("Manual", day(-9), day(-5), day(-1), false))
        .await
        .unwrap();
    // A manager starts one ahead of its schedule and cancels another.
    for (cohort, state) in [
        (&by_hand, pb::CohortState::Running),
        (&closed, pb::CohortState::Closed),
    ] {
        programmes(&app)
            .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
                id: cohort.id.clone(),
                state: state.into(),
                etag: String::new(),
            }))
            .await
            .unwrap();
    }

    let replica = lms::store::Store::connect(&app.config).await.unwrap();
    let sweep =
        |on: NaiveDate| {
            let replicas = (0..4).map(|_| replica.clone()).collect::<Vec<_>>();
            async move {
                futures::future::join_all(replicas.into_iter().map(|replica| async move {
                    replica.advance_scheduled_cohorts(on).await.unwrap()
                }))
                .await
                .into_iter()
                .sum::<usize>()
            }
        };
    let state_of = |id: String| {
        let mut client = programmes(&app);
        let request = app.admin(pb::GetCohortRequest { id });
        async move {
            let cohort = client.get_cohort(request).await.unwrap().into_inner();
            (cohort.state(), cohort.etag)
        }
    };
    let before_later = state_of(later.id.clone()).await;
    let before_by_hand = state_of(by_hand.id.clone()).await;
    let before_closed = state_of(closed.id.clone()).await;
    let before_manual = state_of(manual.id.clone()).await;

    assert_eq!(
        sweep(today).await,
        1,
        "four sweeps move the due cohort once"
    );
    assert_eq!(sweep(today).await, 0, "and nothing is left to do");
    assert_eq!(state_of(due.id.clone()).await.0, pb::CohortState::Open);
    // Not yet due, started by hand, cancelled, or not scheduled: untouched (same etag).
    assert_eq!(state_of(later.id.clone()).await, before_later);
    assert_eq!(state_of(by_hand.id.clone()).await, before_by_hand);
    assert_eq!(state_of(closed.id.clone()).await, before_closed);
    assert_eq!(state_of(manual.id.clone()).await, before_manual);
    assert_eq!(before_manual.0, pb::CohortState::Planned);

    let moved =
        |id: &str, from: &str, to: &str| (id.to_owned(), from.to_owned(), to.to_owned(), true);
    let by_manager =
        |id: &str, to: &str| (id.to_owned(), "PLANNED".to_owned(), to.to_owned(), false);
    assert_eq!(
        cohort_events(&app).await,
        [
            by_manager(&by_hand.id, "RUNNING"),
            by_manager(&closed.id, "CLOSED"),
            moved(&due.id, "PLANNED", "OPEN"),
        ]
    );
    // The move is audited like a manual one, by the schedule.
    let entries = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            resource_id: due.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let last = entries.last().unwrap();
    assert_eq!(last.actor, "system:cohort-schedule");
    assert_eq!(last.action, "lms.v1.ProgrammeService/ChangeCohortState");
    assert_eq!(entries.len(), 2, "created, then opened");

    // On its first day the due cohort starts and the later one opens; after their ends, they
    // close, one date at a time.
    assert_eq!(sweep(today + Duration::days(5)).await, 2);
    assert_eq!(state_of(due.id.clone()).await.0, pb::CohortState::Running);
    assert_eq!(state_of(later.id.clone()).await.0, pb::CohortState::Open);
    assert_eq!(sweep(today + Duration::days(31)).await, 2);
    assert_eq!(state_of(due.id.clone()).await.0, pb::CohortState::Closed);
    assert_eq!(state_of(later.id.clone()).await.0, pb::CohortState::Running);
    assert_eq!(sweep(today + Duration::days(100)).await, 1);
    assert_eq!(state_of(later.id.clone()).await.0, pb::CohortState::Closed);
    assert_eq!(state_of(by_hand.id.clone()).await, before_by_hand);
    // One event per move; within one sweep date two cohorts may be moved by two replicas, so
    // the feed's order between them is not fixed.
    let mut events = cohort_events(&app).await.split_off(3);
    events.sort();
    let mut expected = vec![
        moved(&due.id, "OPEN", "RUNNING"),
        moved(&later.id, "PLANNED", "OPEN"),
        moved(&due.id, "RUNNING", "CLOSED"),
        moved(&later.id, "OPEN", "RUNNING"),
        moved(&later.id, "RUNNING", "CLOSED"),
    ];
    expected.sort();
    assert_eq!(events, expected);
    replica.close().await;
}
