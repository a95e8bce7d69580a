//! The server as a process: data survives restarts, shutdown drains in-flight calls.

use lms::pb::{self, OrganizationKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::{TestDatabase, person_record, spawn_app_on};

#[tokio::test]
async fn data_survives_a_restart() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    let ministry = app
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            Some("KD"),
        )
        .await;
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![person_record("E-1", "KD")],
        request_id: String::new(),
    };
    app.people
        .clone()
        .batch_upsert_people(app.admin(batch))
        .await
        .unwrap();
    app.stop().await;

    let restarted = spawn_app_on(&database).await;
    let read = restarted
        .organizations
        .clone()
        .get_organization(restarted.admin(pb::GetOrganizationRequest {
            id: ministry.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, ministry);
    let people = restarted
        .people
        .clone()
        .list_people(restarted.admin(pb::ListPeopleRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .people;
    assert_eq!(people.len(), 1);
    assert_eq!(restarted.audit_length().await, 2);
    restarted.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_import_finish_and_refuses_new_calls() {
    let database = TestDatabase::fresh().await;
    let mut app = spawn_app_on(&database).await;
    app.create_organization(
        "Ministry of Digital",
        OrganizationKind::Ministry,
        None,
        Some("KD"),
    )
    .await;

    let (sender, receiver) = mpsc::channel(8);
    let mut people = app.people.clone();
    let request = app.admin(ReceiverStream::new(receiver));
    let call = tokio::spawn(async move { people.import_people(request).await });
    sender
        .send(pb::ImportPeopleRequest {
            message: Some(pb::import_people_request::Message::Person(person_record(
                "E-1", "KD",
            ))),
        })
        .await
        .unwrap();

    // The call is in flight; the server is told to stop.
    let server = app.begin_shutdown();
    // Health turns NOT_SERVING before the listener closes; wait for the drain to start.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|response| response.into_inner().status());
        match status {
            Ok(tonic_health::pb::health_check_response::ServingStatus::Serving) => {
                tokio::task::yield_now().await
            }
            _ => break,
        }
    }
    sender
        .send(pb::ImportPeopleRequest {
            message: Some(pb::import_people_request::Message::Commit(
                pb::ImportCommit { record_count: 1 },
            )),
        })
        .await
        .unwrap();
    drop(sender);
    let response = call
        .await
        .unwrap()
        .expect("the in-flight import completes")
        .into_inner();
    assert_eq!(response.counts.unwrap().created, 1);
    server.await.unwrap().expect("server stops cleanly");

    // The listener is gone: a new connection is refused.
    let connect = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await;
    assert!(
        connect.is_err(),
        "a stopped server accepts no new connections"
    );

    let restarted = spawn_app_on(&database).await;
    let people = restarted
        .people
        .clone()
        .list_people(restarted.admin(pb::ListPeopleRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .people;
    assert_eq!(people.len(), 1, "the drained import was committed");
    restarted.stop().await;
}
