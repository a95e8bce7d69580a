//! PersonService: idempotent imports by external_id, per-record errors, commits, updates.

use lms::pb::{self, OrganizationKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, error_reason, person_record, spawn_app, violated_fields};

pub(crate) fn person_message(record: pb::PersonRecord) -> pb::ImportPeopleRequest {
    pb::ImportPeopleRequest {
        message: Some(pb::import_people_request::Message::Person(record)),
    }
}

pub(crate) fn commit_message(record_count: i64) -> pb::ImportPeopleRequest {
    pb::ImportPeopleRequest {
        message: Some(pb::import_people_request::Message::Commit(
            pb::ImportCommit { record_count },
        )),
    }
}

async fn import(
    app: &TestApp,
    messages: Vec<pb::ImportPeopleRequest>,
) -> Result<pb::ImportPeopleResponse, tonic::Status> {
    let stream = tokio_stream::iter(messages);
    app.people
        .clone()
        .import_people(app.admin(stream))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) async fn count_people(app: &TestApp) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = app
            .people
            .clone()
            .list_people(app.admin(pb::ListPeopleRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        count += page.people.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn importing_the_same_ten_thousand_people_twice_changes_nothing_the_second_time() {
    let (app, _database) = spawn_app().await;
    let ministry = app
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            Some("KD"),
        )
        .await;
    let department = app
        .create_organization(
            "JDN",
            OrganizationKind::Department,
            Some(&ministry.id),
            Some("JDN"),
        )
        .await;
    let records: Vec<pb::PersonRecord> = (0..10_000)
        .map(|index| {
            let mut record = person_record(
                &format!("E{index:05}"),
                if index % 2 == 0 { "KD" } else { "" },
            );
            if index % 2 == 1 {
                record.organization_id = department.id.clone();
            }
            record
        })
        .collect();
    let messages = || {
        let mut messages: Vec<_> = records.iter().cloned().map(person_message).collect();
        messages.push(commit_message(records.len() as i64));
        messages
    };

    let first = import(&app, messages()).await.unwrap();
    let counts = first.counts.unwrap();
    assert_eq!(
        (
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.failed
        ),
        (10_000, 0, 0, 0)
    );
    assert_eq!(first.record_count, 10_000);

    let audit_after_first = app.audit_length().await;
    let second = import(&app, messages()).await.unwrap();
    let counts = second.counts.unwrap();
    assert_eq!(
        (
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.failed
        ),
        (0, 0, 10_000, 0)
    );
    assert_eq!(count_people(&app).await, 10_000);
    assert_eq!(
        app.audit_length().await,
        audit_after_first,
        "an unchanged import writes no audit"
    );
    assert_eq!(audit_after_first, 2 + 10_000);
}

#[tokio::test]
async fn one_bad_record_is_reported_and_its_good_neighbours_land() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let mut bad_email = person_record("E-2", "MOF");
    bad_email.email = "not an email".to_owned();
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![
            person_record("E-1", "MOF"),
            bad_email,
            person_record("E-3", "NO-SUCH-CODE"),
            person_record("E-1", "MOF"),
            person_record("E-4", "MOF"),
        ],
        request_id: String::new(),
    };
    let outcome = app
        .people
        .clone()
        .batch_upsert_people(app.admin(batch))
        .await
        .unwrap()
        .into_inner();
    let counts = outcome.counts.unwrap();
    assert_eq!((counts.created, counts.failed), (2, 3));
    let errors: Vec<(i64, &str, &str, &str)> = outcome
        .errors
        .iter()
        .map(|error| {
            (
                error.index,
                error.key.as_str(),
                error.field.as_str(),
                error.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (1, "E-2", "email", "INVALID_FIELD"),
            (
                2,
                "E-3",
                "organization_external_code",
                "ORGANIZATION_NOT_FOUND"
            ),
            (3, "E-1", "external_id", "DUPLICATE_IN_BATCH"),
        ]
    );
    assert_eq!(count_people(&app).await, 2);
}

#[tokio::test]
async fn a_batch_is_bounded_and_an_empty_one_is_invalid() {
    let (app, _database) = spawn_app().await;
    let too_many = pb::BatchUpsertPeopleRequest {
        people: (0..1001)
            .map(|index| person_record(&format!("E{index}"), "X"))
            .collect(),
        request_id: String::new(),
    };
    for request in [too_many, pb::BatchUpsertPeopleRequest::default()] {
        let status = app
            .people
            .clone()
            .batch_upsert_people(app.admin(request))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["people"]);
    }
    assert_eq!(app.audit_length().await, 0);
}

#[tokio::test]
async fn a_replayed_batch_returns_the_first_answer() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![person_record("E-1", "MOF"), person_record("E-2", "MOF")],
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = app
        .people
        .clone()
        .batch_upsert_people(app.admin(batch.clone()))
        .await
        .unwrap()
        .into_inner();
    let replay = app
        .people
        .clone()
        .batch_upsert_people(app.admin(batch.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, replay);
    assert_eq!(first.counts.unwrap().created, 2);
    assert_eq!(app.audit_length().await, 1 + 2);

    // Without the request id, the same records are simply unchanged.
    let fresh = pb::BatchUpsertPeopleRequest {
        request_id: String::new(),
        ..batch
    };
    let again = app
        .people
        .clone()
        .batch_upsert_people(app.admin(fresh))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.counts.unwrap().unchanged, 2);
}

#[tokio::test]
async fn an_import_without_its_commit_keeps_only_whole_chunks() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let chunk = lms::api::person::IMPORT_CHUNK;
    let sent = chunk + 7;
    let records: Vec<_> = (0..sent)
        .map(|index| person_message(person_record(&format!("E{index}"), "MOF")))
        .collect();

    let status = import(&app, records.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "IMPORT_NOT_COMMITTED");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["applied"], chunk.to_string());
    assert_eq!(info.metadata["received"], sent.to_string());
    assert_eq!(count_people(&app).await, chunk);

    let mut wrong_count = records.clone();
    wrong_count.push(commit_message(sent as i64 + 1));
    let status = import(&app, wrong_count).await.unwrap_err();
    assert_eq!(error_reason(&status), "IMPORT_COUNT_MISMATCH");
    assert_eq!(count_people(&app).await, chunk);

    // Sending it all again with the right commit completes it, idempotently.
    let mut complete = records;
    complete.push(commit_message(sent as i64));
    let response = import(&app, complete).await.unwrap();
    let counts = response.counts.unwrap();
    assert_eq!((counts.created, counts.unchanged), (7, chunk as i64));
    assert_eq!(count_people(&app).await, sent);
}

#[tokio::test]
async fn a_cancelled_import_keeps_only_whole_chunks() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let chunk = lms::api::person::IMPORT_CHUNK;
    let (sender, receiver) = mpsc::channel(16);
    let mut people = app.people.clone();
    let request = app.admin(ReceiverStream::new(receiver));
    let call = tokio::spawn(async move { people.import_people(request).await });
    for index in 0..chunk + 3 {
        sender
            .send(person_message(person_record(&format!("E{index}"), "MOF")))
            .await
            .unwrap();
    }
    // Wait until the first chunk is visible, then cut the stream off by aborting the client call.
    let mut waited = 0;
    while count_people(&app).await < chunk {
        tokio::task::yield_now().await;
        waited += 1;
        assert!(waited < 100_000, "first chunk never landed");
    }
    call.abort();
    drop(sender);
    let _ = call.await;
    assert_eq!(count_people(&app).await, chunk);
}

#[tokio::test]
async fn updating_a_person_checks_the_etag_and_the_mask() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Finance",
        OrganizationKind::Ministry,
        None,
        Some("MOF"),
    )
    .await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    let batch = pb::BatchUpsertPeopleRequest {
        people: vec![person_record("E-1", "MOF")],
        request_id: String::new(),
    };
    app.people
        .clone()
        .batch_upsert_people(app.admin(batch))
        .await
        .unwrap();
    let person = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .people
        .remove(0);

    let update = |etag: &str, paths: &[&str]| pb::UpdatePersonRequest {
        person: Some(pb::Person {
            id: person.id.clone(),
            organization_id: health.id.clone(),
            status: pb::PersonStatus::Inactive.into(),
            etag: etag.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }),
    };
    let updated = app
        .people
        .clone()
        .update_person(app.admin(update(&person.etag, &["organization_id", "status"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.organization_id, health.id);
    assert_eq!(updated.status(), pb::PersonStatus::Inactive);
    assert_eq!(updated.full_name, person.full_name);

    let status = app
        .people
        .clone()
        .update_person(app.admin(update(&person.etag, &["status"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    let status = app
        .people
        .clone()
        .update_person(app.admin(update("", &["external_id"])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask"]);

    let mut bad_name = update("", &["full_name"]);
    bad_name.person.as_mut().unwrap().full_name = " ".to_owned();
    let status = app
        .people
        .clone()
        .update_person(app.admin(bad_name))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["person.full_name"]);

    let subtree = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest {
            organization_subtree: health.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(subtree.people, vec![updated]);
}
