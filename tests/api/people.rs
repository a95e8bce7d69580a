//! PersonService: idempotent imports by external_id, per-record errors, commits, updates.

use lms::auth::Role;
use lms::pb::{self, OrganizationKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{
    TestApp, error_reason, person_record, spawn_app, violated_fields, with_token,
};

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

/// Two ministries with three officers each (`A-0000`.. under `MIN-A`, `B-0000`.. under `MIN-B`).
async fn two_ministries(app: &TestApp) -> (pb::Organization, pb::Organization) {
    let a = app
        .create_organization(
            "Ministry A",
            OrganizationKind::Ministry,
            None,
            Some("MIN-A"),
        )
        .await;
    let b = app
        .create_organization(
            "Ministry B",
            OrganizationKind::Ministry,
            None,
            Some("MIN-B"),
        )
        .await;
    let people = ["A", "B"]
        .iter()
        .flat_map(|letter| {
            (0..3).map(move |index| {
                person_record(&format!("{letter}-{index:04}"), &format!("MIN-{letter}"))
            })
        })
        .collect();
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people,
            request_id: String::new(),
        }))
        .await
        .unwrap();
    (a, b)
}

async fn lookup(
    app: &TestApp,
    token: &str,
    external_id: &str,
) -> Result<pb::Person, tonic::Status> {
    app.people
        .clone()
        .lookup_person(with_token(
            pb::LookupPersonRequest {
                external_id: external_id.to_owned(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn batch_lookup(
    app: &TestApp,
    token: &str,
    external_ids: Vec<String>,
) -> Result<pb::BatchLookupPeopleResponse, tonic::Status> {
    app.people
        .clone()
        .batch_lookup_people(with_token(
            pb::BatchLookupPeopleRequest { external_ids },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn people_are_found_by_external_id_one_or_many() {
    let (app, _database) = spawn_app().await;
    two_ministries(&app).await;
    let admin = app.admin_token();
    let person = lookup(&app, &admin, " A-0001 ").await.unwrap();
    assert_eq!(person.external_id, "A-0001");
    let by_id = app
        .people
        .clone()
        .get_person(app.admin(pb::GetPersonRequest {
            id: person.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, person);
    let status = lookup(&app, &admin, "Z-9999").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = lookup(&app, &admin, "").await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["external_id".to_owned()]);

    let keys = ["B-0002", "Z-9999", "A-0001", "B-0002", "A-0000"].map(str::to_owned);
    let batch = batch_lookup(&app, &admin, keys.to_vec()).await.unwrap();
    let found: Vec<&str> = batch
        .people
        .iter()
        .map(|person| person.external_id.as_str())
        .collect();
    assert_eq!(found, vec!["B-0002", "A-0001", "A-0000"]);
    assert_eq!(batch.people[1], person);
    assert_eq!(batch.missing_external_ids, vec!["Z-9999".to_owned()]);

    let status = batch_lookup(&app, &admin, vec!["A-0000".to_owned(); 1001])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["external_ids".to_owned()]);
    let status = batch_lookup(&app, &admin, vec!["A-0000".to_owned(), "x".repeat(65)])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["external_ids[1]".to_owned()]);
    let thousand = (0..1000).map(|index| format!("A-{index:04}")).collect();
    let most = batch_lookup(&app, &admin, thousand).await.unwrap();
    assert_eq!(
        (most.people.len(), most.missing_external_ids.len()),
        (3, 997)
    );

    let listed = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest {
            external_id: "A-0001".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.people, vec![person]);
}

#[tokio::test]
async fn an_org_admin_looks_people_up_in_their_subtree_only() {
    let (app, _database) = spawn_app().await;
    let (a, _b) = two_ministries(&app).await;
    let org_admin = app.token("org-admin-a", &[Role::OrgAdmin], Some(&a.id));
    assert_eq!(
        lookup(&app, &org_admin, "A-0000")
            .await
            .unwrap()
            .external_id,
        "A-0000"
    );
    let status = lookup(&app, &org_admin, "B-0000").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "OUTSIDE_ORGANIZATION_SCOPE");
    // A key nobody has gets the very same answer: employee numbers of other ministries cannot
    // be probed for existence.
    let missing = lookup(&app, &org_admin, "Z-0000").await.unwrap_err();
    assert_eq!(
        (missing.code(), error_reason(&missing), missing.message()),
        (status.code(), error_reason(&status), status.message())
    );
    // One key out of reach, or missing, fails the whole batch, naming the first such key.
    let status = batch_lookup(
        &app,
        &org_admin,
        vec!["A-0000".to_owned(), "B-0001".to_owned()],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("B-0001"), "{}", status.message());
    let foreign = status;
    let status = batch_lookup(
        &app,
        &org_admin,
        vec!["A-0000".to_owned(), "Z-0001".to_owned()],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status.code(), error_reason(&status)),
        (foreign.code(), error_reason(&foreign))
    );
    assert_eq!(
        status.message().replace("Z-0001", "B-0001"),
        foreign.message()
    );
    let own = batch_lookup(
        &app,
        &org_admin,
        vec!["A-0000".to_owned(), "A-0001".to_owned()],
    )
    .await
    .unwrap();
    assert_eq!(own.people.len(), 2);
    assert!(own.missing_external_ids.is_empty());

    // A learner looks up themself, and nobody else; a batch is not for learners.
    let me = lookup(&app, &app.admin_token(), "A-0002").await.unwrap();
    let learner = app.token(&me.id, &[Role::Learner], None);
    assert_eq!(lookup(&app, &learner, "A-0002").await.unwrap(), me);
    let status = lookup(&app, &learner, "A-0001").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = batch_lookup(&app, &learner, vec!["A-0002".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_batch_upsert_answers_each_record_with_its_id_and_outcome() {
    let (app, _database) = spawn_app().await;
    two_ministries(&app).await;
    let admin = app.admin_token();
    let existing = lookup(&app, &admin, "A-0001").await.unwrap();
    let renamed = pb::PersonRecord {
        full_name: "Renamed Officer".to_owned(),
        ..person_record("A-0000", "MIN-A")
    };
    let people = vec![
        person_record("A-0100", "MIN-A"),
        renamed,
        person_record("A-0001", "MIN-A"),
        pb::PersonRecord {
            email: "not-an-email".to_owned(),
            ..person_record("A-0101", "MIN-A")
        },
        person_record("A-0002", "NO-SUCH-CODE"),
        person_record("A-0100", "MIN-B"),
    ];
    let request = pb::BatchUpsertPeopleRequest {
        people,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let response = app
        .people
        .clone()
        .batch_upsert_people(app.admin(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<(i64, &str, pb::RecordOutcome, &str, &str)> = response
        .results
        .iter()
        .map(|result| {
            (
                result.index,
                result.external_id.as_str(),
                result.outcome(),
                result.reason.as_str(),
                result.field.as_str(),
            )
        })
        .collect();
    use pb::RecordOutcome::{Created, Refused, Unchanged, Updated};
    assert_eq!(
        outcomes,
        vec![
            (0, "A-0100", Created, "", ""),
            (1, "A-0000", Updated, "", ""),
            (2, "A-0001", Unchanged, "", ""),
            (3, "A-0101", Refused, "INVALID_FIELD", "email"),
            (
                4,
                "A-0002",
                Refused,
                "ORGANIZATION_NOT_FOUND",
                "organization_external_code"
            ),
            (5, "A-0100", Refused, "DUPLICATE_IN_BATCH", "external_id"),
        ]
    );
    // Every id is the one the people have now.
    let batch = batch_lookup(
        &app,
        &admin,
        ["A-0100", "A-0000", "A-0001", "A-0002"]
            .map(str::to_owned)
            .to_vec(),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = batch
        .people
        .iter()
        .map(|person| person.id.as_str())
        .collect();
    let results = &response.results;
    assert_eq!(
        ids,
        vec![
            results[0].id.as_str(),
            results[1].id.as_str(),
            results[2].id.as_str(),
            results[4].id.as_str(),
        ]
    );
    assert_eq!(results[2].id, existing.id);
    assert_eq!(results[3].id, "", "nobody has A-0101");
    assert_eq!(results[5].id, results[0].id, "a repeat names the first");
    let counts = response.counts.unwrap();
    assert_eq!(
        (
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.failed
        ),
        (1, 1, 1, 3)
    );

    // A retry with the same request id answers the same, results included.
    let replay = app
        .people
        .clone()
        .batch_upsert_people(app.admin(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.results, response.results);
}

fn sync_person(record: pb::PersonRecord) -> pb::SyncPeopleRequest {
    pb::SyncPeopleRequest {
        message: Some(pb::sync_people_request::Message::Person(record)),
    }
}

fn sync_commit(record_count: i64) -> pb::SyncPeopleRequest {
    pb::SyncPeopleRequest {
        message: Some(pb::sync_people_request::Message::Commit(pb::ImportCommit {
            record_count,
        })),
    }
}

/// Runs a sync of `messages`; returns the answers and the final status (`None` when it ended OK).
async fn sync(
    app: &TestApp,
    messages: Vec<pb::SyncPeopleRequest>,
) -> (Vec<pb::SyncPeopleResponse>, Option<tonic::Status>) {
    let mut answers = app
        .people
        .clone()
        .sync_people(app.admin(tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(answer)) => received.push(answer),
            Ok(None) => return (received, None),
            Err(status) => return (received, Some(status)),
        }
    }
}

#[tokio::test]
async fn a_sync_answers_each_committed_chunk_with_every_records_id_and_outcome() {
    let (app, _database) = spawn_app().await;
    app.create_organization("Ministry", OrganizationKind::Ministry, None, Some("MIN"))
        .await;
    let records: Vec<pb::PersonRecord> = (0..4500)
        .map(|index| {
            let record = person_record(&format!("S-{index:05}"), "MIN");
            if index % 1000 == 7 {
                pb::PersonRecord {
                    organization_external_code: "NOWHERE".to_owned(),
                    ..record
                }
            } else {
                record
            }
        })
        .collect();
    let messages: Vec<_> = records
        .iter()
        .cloned()
        .map(sync_person)
        .chain([sync_commit(4500)])
        .collect();
    let (answers, status) = sync(&app, messages.clone()).await;
    assert!(status.is_none(), "{status:?}");
    let sizes: Vec<usize> = answers.iter().map(|answer| answer.results.len()).collect();
    assert_eq!(sizes, vec![2000, 2000, 500]);
    assert_eq!(
        answers
            .iter()
            .map(|answer| answer.committed)
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    let results: Vec<&pb::PersonResult> =
        answers.iter().flat_map(|answer| &answer.results).collect();
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.index, index as i64);
        assert_eq!(result.external_id, format!("S-{index:05}"));
        let expected = if index % 1000 == 7 {
            pb::RecordOutcome::Refused
        } else {
            pb::RecordOutcome::Created
        };
        assert_eq!(result.outcome(), expected, "record {index}");
    }
    let last = answers.last().unwrap();
    let counts = last.counts.unwrap();
    assert_eq!(
        (counts.created, counts.failed, last.record_count),
        (4495, 5, 4500)
    );
    // The ids answered are the people's ids.
    let sample: Vec<String> = [0usize, 1999, 2000, 4499]
        .iter()
        .map(|index| format!("S-{index:05}"))
        .collect();
    let found = batch_lookup(&app, &app.admin_token(), sample)
        .await
        .unwrap();
    for (person, index) in found.people.iter().zip([0usize, 1999, 2000, 4499]) {
        assert_eq!(person.id, results[index].id);
    }

    // The same sync again changes nothing and says so, with the same ids.
    let (again, status) = sync(&app, messages).await;
    assert!(status.is_none(), "{status:?}");
    let again: Vec<&pb::PersonResult> = again.iter().flat_map(|answer| &answer.results).collect();
    assert_eq!(again.len(), 4500);
    for (first, second) in results.iter().zip(&again) {
        assert_eq!(first.id, second.id);
        if first.outcome() == pb::RecordOutcome::Created {
            assert_eq!(second.outcome(), pb::RecordOutcome::Unchanged);
        }
    }

    // A stream without its commit is answered for its full chunks only, then ABORTED.
    let unfinished: Vec<_> = (0..2100)
        .map(|index| sync_person(person_record(&format!("U-{index:05}"), "MIN")))
        .collect();
    let (answers, status) = sync(&app, unfinished).await;
    let status = status.expect("an unfinished sync fails");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "IMPORT_NOT_COMMITTED");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].results.len(), 2000);
    let kept = batch_lookup(
        &app,
        &app.admin_token(),
        vec!["U-01999".to_owned(), "U-02000".to_owned()],
    )
    .await
    .unwrap();
    assert_eq!(kept.missing_external_ids, vec!["U-02000".to_owned()]);
    assert_eq!(kept.people[0].id, answers[0].results[1999].id);
}
