//! EventService: a resumable, gap-free feed in commit order, also with two servers writing.

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{self, OrganizationKind, event_service_client::EventServiceClient};
use tonic::Code;

use crate::helpers::{TestApp, TestDatabase, person_record, spawn_app, spawn_app_on, with_token};

fn events(app: &TestApp) -> EventServiceClient<tonic::transport::Channel> {
    EventServiceClient::new(app.channel.clone())
}

async fn upsert(app: &TestApp, prefix: &str, count: usize, code: &str) {
    for chunk_start in (0..count).step_by(1000) {
        let people = (chunk_start..count.min(chunk_start + 1000))
            .map(|index| person_record(&format!("{prefix}-{index:05}"), code))
            .collect();
        app.people
            .clone()
            .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
                people,
                request_id: String::new(),
            }))
            .await
            .unwrap();
    }
}

/// Reads the feed after `cursor` until caught up.
async fn backlog(app: &TestApp, request: pb::WatchEventsRequest) -> Vec<pb::DomainEvent> {
    let mut stream = events(app)
        .watch_events(app.admin(pb::WatchEventsRequest {
            until_caught_up: true,
            ..request
        }))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        seen.push(event.unwrap());
    }
    seen
}

fn assert_gap_free(events: &[pb::DomainEvent], after: i64) {
    for (offset, event) in events.iter().enumerate() {
        assert_eq!(
            event.cursor,
            after + 1 + offset as i64,
            "cursors are consecutive"
        );
    }
}

#[tokio::test]
async fn a_watcher_resumes_from_its_cursor_with_nothing_missed_or_repeated() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Digital",
        OrganizationKind::Ministry,
        None,
        Some("KD"),
    )
    .await;
    upsert(&app, "A", 10, "KD").await;

    // A live watcher reads the first events, then dies.
    let mut live = events(&app)
        .watch_events(app.admin(pb::WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    for _ in 0..4 {
        let event = live.next().await.unwrap().unwrap();
        assert_eq!(event.r#type, "person.created");
        last = event.cursor;
    }
    drop(live);

    // While it is gone, 1,000 changes are written.
    upsert(&app, "B", 1000, "KD").await;

    let resumed = backlog(
        &app,
        pb::WatchEventsRequest {
            after_cursor: last,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(resumed.len(), 6 + 1000);
    assert_gap_free(&resumed, last);
    let b_events = resumed
        .iter()
        .filter(|event| event.payload_json.contains("\"B-"))
        .count();
    assert_eq!(b_events, 1000);
}

#[tokio::test]
async fn a_following_watcher_sees_new_events_as_they_commit() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Digital",
        OrganizationKind::Ministry,
        None,
        Some("KD"),
    )
    .await;
    let mut live = events(&app)
        .watch_events(app.admin(pb::WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let writer = {
        let people = app.people.clone();
        let token = app.admin_token();
        tokio::spawn(async move {
            for round in 0..20 {
                let batch = pb::BatchUpsertPeopleRequest {
                    people: (0..25)
                        .map(|index| person_record(&format!("R{round:02}-{index:02}"), "KD"))
                        .collect(),
                    request_id: String::new(),
                };
                people
                    .clone()
                    .batch_upsert_people(with_token(batch, &token))
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 500 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), live.next())
            .await
            .expect("a committed event reaches the watcher")
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    writer.await.unwrap();
    assert_gap_free(&seen, 0);
}

#[tokio::test]
async fn two_servers_writing_at_once_give_one_gap_free_order() {
    let database = TestDatabase::fresh().await;
    let first = spawn_app_on(&database).await;
    let second = spawn_app_on(&database).await;
    first
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            Some("KD"),
        )
        .await;
    let mut writers = Vec::new();
    for (name, app) in [("X", &first), ("Y", &second)] {
        for round in 0..5 {
            let people = app.people.clone();
            let token = app.admin_token();
            let batch = pb::BatchUpsertPeopleRequest {
                people: (0..40)
                    .map(|index| person_record(&format!("{name}{round}-{index:02}"), "KD"))
                    .collect(),
                request_id: String::new(),
            };
            writers.push(tokio::spawn(async move {
                people
                    .clone()
                    .batch_upsert_people(with_token(batch, &token))
                    .await
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap().expect("both servers write");
    }
    let from_first = backlog(&first, pb::WatchEventsRequest::default()).await;
    let from_second = backlog(&second, pb::WatchEventsRequest::default()).await;
    assert_eq!(from_first.len(), 400);
    assert_gap_free(&from_first, 0);
    let order = |events: &[pb::DomainEvent]| {
        events
            .iter()
            .map(|event| event.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order(&from_first),
        order(&from_second),
        "every reader sees the same order"
    );
}

#[tokio::test]
async fn enrolment_and_completion_events_can_be_filtered_by_type_and_subtree() {
    let (app, _database) = spawn_app().await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    upsert(&app, "H", 3, "MOH").await;
    upsert(&app, "F", 2, "MOF").await;
    let subtree = backlog(
        &app,
        pb::WatchEventsRequest {
            organization_subtree: health.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(subtree.len(), 3);
    assert!(
        subtree
            .iter()
            .all(|event| event.organization_id == health.id)
    );
    let none = backlog(
        &app,
        pb::WatchEventsRequest {
            types: vec!["programme.completed".to_owned()],
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());

    let status = events(&app)
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["person.deleted".to_owned()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let learner = app.token("someone", &[Role::Learner], None);
    let status = events(&app)
        .watch_events(with_token(pb::WatchEventsRequest::default(), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let hr = app.token("hr-system", &[Role::HrService], None);
    let mut stream = events(&app)
        .watch_events(with_token(
            pb::WatchEventsRequest {
                until_caught_up: true,
                ..Default::default()
            },
            &hr,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.is_some(), "HR services may watch");
}
