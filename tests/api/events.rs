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

#[tokio::test]
async fn feed_events_carry_the_hr_keys_of_the_person_and_their_organisation() {
    let (app, _database) = spawn_app().await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    upsert(&app, "H", 2, "MOH").await;
    // The code changes: later events carry the new one, earlier ones keep the code they had.
    app.organizations
        .clone()
        .update_organization(app.admin(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: health.id.clone(),
                external_code: "KKM".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["external_code".to_owned()],
            }),
        }))
        .await
        .unwrap();
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: vec![pb::PersonRecord {
                full_name: "Renamed".to_owned(),
                ..person_record("H-00000", "KKM")
            }],
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let seen = backlog(&app, pb::WatchEventsRequest::default()).await;
    let keys: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|event| {
            (
                event.r#type.as_str(),
                event.person_external_id.as_str(),
                event.organization_external_code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("person.created", "H-00000", "MOH"),
            ("person.created", "H-00001", "MOH"),
            ("person.updated", "H-00000", "KKM"),
        ]
    );
    assert!(seen.iter().all(|event| event.organization_id == health.id));
}

/// Returns the reason and `ErrorInfo` metadata of a refused watch.
fn feed_refusal(status: &tonic::Status) -> (String, std::collections::HashMap<String, String>) {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    (info.reason, info.metadata)
}

/// Opens a watch that is expected to be refused; returns the status.
async fn refused(app: &TestApp, request: pb::WatchEventsRequest) -> tonic::Status {
    events(app)
        .watch_events(app.admin(pb::WatchEventsRequest {
            until_caught_up: true,
            ..request
        }))
        .await
        .expect_err("the watch is refused")
}

#[tokio::test]
async fn resume_tokens_carry_the_feed_history_and_positions_the_feed_cannot_honour_are_refused() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Digital",
        OrganizationKind::Ministry,
        None,
        Some("KD"),
    )
    .await;
    upsert(&app, "A", 5, "KD").await;
    let all = backlog(&app, pb::WatchEventsRequest::default()).await;
    assert_eq!(all.len(), 5);
    let history = all[0].history.clone();
    assert_eq!(history.len(), 32);
    for event in &all {
        assert_eq!(event.history, history);
        assert_eq!(event.resume_token, format!("{history}.{}", event.cursor));
    }

    // A token resumes after its event; so does a cursor with its history.
    let rest = backlog(
        &app,
        pb::WatchEventsRequest {
            resume_token: all[1].resume_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_gap_free(&rest, 2);
    assert_eq!(rest.len(), 3);
    let last = backlog(
        &app,
        pb::WatchEventsRequest {
            after_cursor: 4,
            history: history.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(last.len(), 1);

    // The stream's headers name the history and the head.
    let opened = events(&app)
        .watch_events(app.admin(pb::WatchEventsRequest {
            until_caught_up: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        opened.metadata().get("lms-feed-history").unwrap(),
        history.as_str()
    );
    assert_eq!(opened.metadata().get("lms-feed-head").unwrap(), "5");

    // Past the head.
    let status = refused(
        &app,
        pb::WatchEventsRequest {
            resume_token: format!("{history}.6"),
            ..Default::default()
        },
    )
    .await;
    let (reason, metadata) = feed_refusal(&status);
    assert_eq!(reason, "CURSOR_BEYOND_HEAD");
    assert_eq!(metadata["head"], "5");
    assert_eq!(metadata["history"], history);
    assert_eq!(metadata["head_resume_token"], format!("{history}.5"));

    // Malformed or conflicting positions name the field and are not served.
    for (request, field) in [
        (
            pb::WatchEventsRequest {
                resume_token: "5".to_owned(),
                ..Default::default()
            },
            "resume_token",
        ),
        (
            pb::WatchEventsRequest {
                resume_token: all[0].resume_token.clone(),
                after_cursor: 1,
                ..Default::default()
            },
            "resume_token",
        ),
        (
            pb::WatchEventsRequest {
                after_cursor: 1,
                history: "not-a-history".to_owned(),
                ..Default::default()
            },
            "history",
        ),
    ] {
        let status = refused(&app, request).await;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }

    // After the restore procedure gives the feed a new history, old tokens are refused.
    let store = lms::store::Store::connect(&app.config).await.unwrap();
    let (old, new) = store.rotate_feed_history().await.unwrap();
    assert_eq!(old, history);
    for request in [
        pb::WatchEventsRequest {
            resume_token: all[2].resume_token.clone(),
            ..Default::default()
        },
        pb::WatchEventsRequest {
            after_cursor: 2,
            history: history.clone(),
            ..Default::default()
        },
    ] {
        let (reason, metadata) = feed_refusal(&refused(&app, request).await);
        assert_eq!(reason, "FEED_HISTORY_CHANGED");
        assert_eq!(metadata["history"], new);
    }
    let renamed = backlog(&app, pb::WatchEventsRequest::default()).await;
    assert!(renamed.iter().all(|event| event.history == new));

    // Retention: below the pruned tail is CURSOR_EXPIRED; the head and the start are served.
    let deleted = store
        .prune_events(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    let (reason, metadata) = feed_refusal(
        &refused(
            &app,
            pb::WatchEventsRequest {
                resume_token: format!("{new}.2"),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(reason, "CURSOR_EXPIRED");
    assert_eq!(metadata["pruned_through"], "5");
    let at_head = backlog(
        &app,
        pb::WatchEventsRequest {
            resume_token: format!("{new}.5"),
            ..Default::default()
        },
    )
    .await;
    assert!(at_head.is_empty());
    upsert(&app, "B", 2, "KD").await;
    let from_start = backlog(&app, pb::WatchEventsRequest::default()).await;
    assert_gap_free(&from_start, 5);
    assert_eq!(from_start.len(), 2);
    store.close().await;
}
