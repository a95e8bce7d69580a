//! AuditService: every mutation leaves an entry; the hash chain exposes edits behind the server's back.

use lms::pb::{self, OrganizationKind};
use sea_orm::ConnectionTrait as _;

use crate::helpers::{TestApp, person_record, spawn_app};

async fn verify(app: &TestApp) -> pb::VerifyAuditChainResponse {
    app.audit
        .clone()
        .verify_audit_chain(app.admin(pb::VerifyAuditChainRequest {}))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn mutations_write_audit_entries_with_their_actor() {
    let (app, _database) = spawn_app().await;
    let ministry = app
        .create_organization(
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
    app.people
        .clone()
        .batch_upsert_people(app.admin(batch.clone()))
        .await
        .unwrap();

    let entries = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].resource_type, "organization");
    assert_eq!(entries[0].resource_id, ministry.id);
    assert_eq!(
        entries[0].action,
        "lms.v1.OrganizationService/CreateOrganization"
    );
    assert!(entries.iter().all(|entry| entry.actor == "admin-1"));
    assert_eq!(entries[1].action, "lms.v1.PersonService/BatchUpsertPeople");
    assert_eq!(entries[1].request_id, batch.request_id);
    assert_eq!(entries[1].previous_hash, entries[0].hash);
    let sequences: Vec<i64> = entries.iter().map(|entry| entry.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);

    let only_ministry = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            resource_id: ministry.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(only_ministry.len(), 1);

    let first_page = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.entries.len(), 2);
    let second_page = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            page_size: 2,
            page_token: first_page.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second_page
            .entries
            .iter()
            .map(|entry| entry.sequence)
            .collect::<Vec<_>>(),
        [3]
    );
    assert!(second_page.next_page_token.is_empty());
}

#[tokio::test]
async fn the_chain_verifies_and_reports_a_row_changed_behind_the_servers_back() {
    let (app, database) = spawn_app().await;
    for index in 0..5 {
        app.create_organization(
            &format!("Ministry {index}"),
            OrganizationKind::Ministry,
            None,
            None,
        )
        .await;
    }
    let report = verify(&app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries_checked, 5);

    let direct = database.connect().await;
    direct
        .execute_unprepared("UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 3")
        .await
        .unwrap();
    let report = verify(&app).await;
    assert!(!report.valid);
    assert_eq!(report.first_broken_sequence, 3);

    direct
        .execute_unprepared("UPDATE audit_entries SET actor = 'admin-1' WHERE sequence = 3")
        .await
        .unwrap();
    assert!(
        verify(&app).await.valid,
        "restoring the row restores the chain"
    );

    direct
        .execute_unprepared("DELETE FROM audit_entries WHERE sequence = 4")
        .await
        .unwrap();
    let report = verify(&app).await;
    assert!(!report.valid);
    assert_eq!(report.first_broken_sequence, 4);
}

#[tokio::test]
async fn concurrent_writers_extend_one_chain() {
    let (app, _database) = spawn_app().await;
    let mut tasks = Vec::new();
    for index in 0..24 {
        let mut organizations = app.organizations.clone();
        let request = app.admin(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: format!("Agency {index}"),
                kind: OrganizationKind::Agency.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        });
        tasks.push(tokio::spawn(async move {
            organizations.create_organization(request).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("create succeeds");
    }
    let report = verify(&app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries_checked, 24);
}

#[tokio::test]
async fn a_row_inserted_beyond_the_head_is_reported_and_does_not_block_writes() {
    let (app, database) = spawn_app().await;
    for index in 0..3 {
        app.create_organization(
            &format!("Ministry {index}"),
            OrganizationKind::Ministry,
            None,
            None,
        )
        .await;
    }
    assert!(verify(&app).await.valid);

    // A forged entry two places beyond the head, copying a real row's fields.
    let direct = database.connect().await;
    direct
        .execute_unprepared(
            "INSERT INTO audit_entries (sequence, id, actor, action, resource_type, resource_id, \
             request_id, time, change_digest, previous_hash, hash) \
             SELECT 5, 'forged-entry', actor, action, resource_type, resource_id, request_id, \
             time, change_digest, previous_hash, hash FROM audit_entries WHERE sequence = 3",
        )
        .await
        .unwrap();
    let report = verify(&app).await;
    assert!(!report.valid, "a stray row beyond the head: {report:?}");
    assert_eq!(report.first_broken_sequence, 5);
    assert!(
        report.problem.contains("beyond the chain head"),
        "{report:?}"
    );

    // Writes go on (numbered after the stray row) instead of failing on its sequence.
    let ministry = app
        .create_organization("Ministry after", OrganizationKind::Ministry, None, None)
        .await;
    assert!(!ministry.id.is_empty());
    app.create_organization("Ministry after 2", OrganizationKind::Ministry, None, None)
        .await;
    let report = verify(&app).await;
    assert!(
        !report.valid,
        "the stray row is now a broken link: {report:?}"
    );
    assert_eq!(report.first_broken_sequence, 4, "{report:?}");

    // Removing the forged row leaves a gap, which is reported too.
    direct
        .execute_unprepared("DELETE FROM audit_entries WHERE id = 'forged-entry'")
        .await
        .unwrap();
    let report = verify(&app).await;
    assert!(!report.valid, "{report:?}");
    assert_eq!(report.first_broken_sequence, 4, "{report:?}");
}
