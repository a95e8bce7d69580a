//! Hostile strings at the API boundary: control characters are refused naming the field, on both
//! databases, before anything is written; answers never echo an input without bound; ids in
//! tokens are ids.

use lms::auth::Role;
use lms::pb::{self, OrganizationKind};
use tonic::Code;

use crate::helpers::{
    TestApp, error_reason, person_record, spawn_app, violated_fields, with_token,
};
use crate::people::{commit_message, count_people, person_message};
use crate::programmes::courses;

async fn ministry(app: &TestApp) -> pb::Organization {
    app.create_organization("Ministry", OrganizationKind::Ministry, None, Some("MOF"))
        .await
}

#[tokio::test]
async fn a_nul_in_a_batch_is_invalid_argument_naming_the_record_and_writes_nothing() {
    let (app, _database) = spawn_app().await;
    ministry(&app).await;
    let mut people = vec![person_record("E-1", "MOF"), person_record("E-2", "MOF")];
    people[1].full_name = "Siti\0Aminah".to_owned();
    let status = app
        .people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people,
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["people[1].full_name"]);
    assert_eq!(
        count_people(&app).await,
        0,
        "nothing of the batch is written"
    );

    // Other control characters too, in a stream message, and outside free-text fields.
    let mut record = person_record("E-3", "MOF");
    record.email = "e3@agency.gov.my\u{1b}[31m".to_owned();
    let stream = tokio_stream::iter(vec![person_message(record), commit_message(1)]);
    let status = app
        .people
        .clone()
        .import_people(app.admin(stream))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["person.email"]);
    assert_eq!(count_people(&app).await, 0);
}

#[tokio::test]
async fn a_nul_in_a_search_is_refused_and_wildcards_match_themselves() {
    let (app, _database) = spawn_app().await;
    let status = courses(&app)
        .list_courses(app.admin(pb::ListCoursesRequest {
            query: "\0".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["query"]);
    for wildcard in ["%", "_", "!"] {
        let listed = courses(&app)
            .list_courses(app.admin(pb::ListCoursesRequest {
                query: wildcard.to_owned(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.courses.is_empty(), "{wildcard} matches itself only");
    }
}

#[tokio::test]
async fn a_megabyte_field_path_comes_back_as_a_short_error() {
    let (app, _database) = spawn_app().await;
    let organization = ministry(&app).await;
    let status = app
        .organizations
        .clone()
        .update_organization(app.admin(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "Renamed".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["n".repeat(1024 * 1024)],
            }),
        }))
        .await
        .unwrap_err();
    // A standard client sees the real error, not "metadata size exceeds limit".
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().len() < 2048, "{}", status.message().len());
    assert!(status.details().len() < 8192, "{}", status.details().len());
}

#[tokio::test]
async fn an_org_claim_that_is_not_an_id_is_refused() {
    let (app, _database) = spawn_app().await;
    ministry(&app).await;
    for org in ["%", "_", "/", "x/y"] {
        let token = app.token("org-admin", &[Role::OrgAdmin], Some(org));
        let status = app
            .people
            .clone()
            .list_people(with_token(pb::ListPeopleRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{org}: {status:?}");
        assert_eq!(error_reason(&status), "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn a_refused_stream_message_ends_the_stream_with_its_error_after_the_acks_before_it() {
    use futures::StreamExt as _;
    use lms::pb::{ProgressSource as Source, ProgressVerb as Verb};
    let (app, _database) = spawn_app().await;
    let room = crate::progress::classroom(&app, 2).await;
    let good = |minutes| {
        crate::progress::event(
            &room.learners[0].1,
            &room.lecture,
            Verb::Progressed,
            None,
            Source::App,
            minutes,
        )
    };
    let mut bad = good(1);
    bad.provenance_note = "note\0".to_owned();
    let events = vec![good(3), good(2), bad, good(0)];
    let mut acks = crate::progress::progress(&app)
        .stream_progress(app.admin(tokio_stream::iter(events)))
        .await
        .unwrap()
        .into_inner();
    let mut acked = 0;
    let status = loop {
        match acks.next().await {
            Some(Ok(ack)) => {
                assert!(ack.error.is_none());
                acked += 1;
            }
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why the third event was refused"),
        }
    };
    assert_eq!(
        acked, 2,
        "the events before the refused one are acknowledged"
    );
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["provenance_note"]);
}
