//! OrganizationService: validation, etags, the tree, idempotent creates, pagination.

use lms::pb::{self, OrganizationKind};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{error_reason, spawn_app, violated_fields};

fn new_organization(
    name: &str,
    kind: OrganizationKind,
    parent_id: &str,
) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        organization: Some(pb::Organization {
            name: name.to_owned(),
            kind: kind.into(),
            parent_id: parent_id.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn an_organization_is_created_read_and_listed() {
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
            "National Digital Department",
            OrganizationKind::Department,
            Some(&ministry.id),
            Some("JDN"),
        )
        .await;
    assert_eq!(ministry.etag, "\"1\"");
    assert!(ministry.create_time.is_some());
    assert_eq!(department.ancestor_ids, vec![ministry.id.clone()]);

    let read = app
        .organizations
        .clone()
        .get_organization(app.admin(pb::GetOrganizationRequest {
            id: department.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, department);

    let children = app
        .organizations
        .clone()
        .list_organizations(app.admin(pb::ListOrganizationsRequest {
            parent_id: ministry.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(children.organizations, vec![department]);
    assert!(children.next_page_token.is_empty());
}

#[tokio::test]
async fn an_invalid_create_names_its_fields_and_writes_nothing() {
    let (app, _database) = spawn_app().await;
    let mut organizations = app.organizations.clone();

    let status = organizations
        .create_organization(app.admin(new_organization("", OrganizationKind::Unspecified, "")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["organization.name", "organization.kind"]
    );
    assert_eq!(error_reason(&status), "INVALID_ARGUMENT");

    let status = organizations
        .create_organization(app.admin(new_organization(
            "Unit",
            OrganizationKind::Unit,
            "not-a-uuid",
        )))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["organization.parent_id"]);

    let unknown_parent = uuid::Uuid::now_v7().to_string();
    let status = organizations
        .create_organization(app.admin(new_organization(
            "Unit",
            OrganizationKind::Unit,
            &unknown_parent,
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "ORGANIZATION_NOT_FOUND");
    let resource = status.get_error_details().resource_info().cloned().unwrap();
    assert_eq!(resource.resource_name, unknown_parent);

    let listed = organizations
        .list_organizations(app.admin(pb::ListOrganizationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.organizations.is_empty());
    assert_eq!(app.audit_length().await, 0);
}

#[tokio::test]
async fn a_taken_external_code_is_already_exists() {
    let (app, _database) = spawn_app().await;
    app.create_organization(
        "Ministry of Health",
        OrganizationKind::Ministry,
        None,
        Some("MOH"),
    )
    .await;
    let mut request = new_organization("Another", OrganizationKind::Ministry, "");
    request.organization.as_mut().unwrap().external_code = "MOH".to_owned();
    let status = app
        .organizations
        .clone()
        .create_organization(app.admin(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(app.audit_length().await, 1);
}

#[tokio::test]
async fn an_update_with_a_stale_etag_is_aborted() {
    let (app, _database) = spawn_app().await;
    let ministry = app
        .create_organization("Ministry of Works", OrganizationKind::Ministry, None, None)
        .await;
    let update = |name: &str, etag: &str| pb::UpdateOrganizationRequest {
        organization: Some(pb::Organization {
            id: ministry.id.clone(),
            name: name.to_owned(),
            etag: etag.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".to_owned()],
        }),
    };
    let renamed = app
        .organizations
        .clone()
        .update_organization(app.admin(update("Ministry of Works and Transport", &ministry.etag)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Ministry of Works and Transport");
    assert_ne!(renamed.etag, ministry.etag);
    assert_eq!(renamed.kind, ministry.kind, "fields outside the mask stay");

    let status = app
        .organizations
        .clone()
        .update_organization(app.admin(update("Stale", &ministry.etag)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");

    let mut unknown_path = update("X", "");
    unknown_path.update_mask = Some(prost_types::FieldMask {
        paths: vec!["budget".to_owned()],
    });
    let status = app
        .organizations
        .clone()
        .update_organization(app.admin(unknown_path))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask"]);
}

#[tokio::test]
async fn concurrent_updates_with_one_etag_let_exactly_one_win() {
    let (app, _database) = spawn_app().await;
    let ministry = app
        .create_organization("Ministry", OrganizationKind::Ministry, None, None)
        .await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let mut organizations = app.organizations.clone();
        let request = app.admin(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: ministry.id.clone(),
                name: format!("Name {writer}"),
                etag: ministry.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        });
        tasks.push(tokio::spawn(async move {
            organizations.update_organization(request).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn a_move_reparents_the_subtree_and_refuses_cycles() {
    let (app, _database) = spawn_app().await;
    let digital = app
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            None,
        )
        .await;
    let health = app
        .create_organization("Ministry of Health", OrganizationKind::Ministry, None, None)
        .await;
    let department = app
        .create_organization(
            "Department",
            OrganizationKind::Department,
            Some(&digital.id),
            None,
        )
        .await;
    let unit = app
        .create_organization("Unit", OrganizationKind::Unit, Some(&department.id), None)
        .await;
    let mut organizations = app.organizations.clone();

    for (moved, new_parent) in [
        (&digital, &unit),
        (&digital, &digital),
        (&department, &unit),
    ] {
        let status = organizations
            .move_organization(app.admin(pb::MoveOrganizationRequest {
                id: moved.id.clone(),
                new_parent_id: new_parent.id.clone(),
                etag: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(error_reason(&status), "ORGANIZATION_CYCLE");
    }

    let moved = organizations
        .move_organization(app.admin(pb::MoveOrganizationRequest {
            id: department.id.clone(),
            new_parent_id: health.id.clone(),
            etag: department.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.parent_id, health.id);
    let unit_now = organizations
        .get_organization(app.admin(pb::GetOrganizationRequest {
            id: unit.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unit_now.ancestor_ids,
        vec![health.id.clone(), department.id.clone()]
    );
    assert_ne!(unit_now.etag, unit.etag);

    let subtree = organizations
        .list_organizations(app.admin(pb::ListOrganizationsRequest {
            subtree_of: health.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(subtree.organizations.len(), 3);

    // Back to the root.
    let root = organizations
        .move_organization(app.admin(pb::MoveOrganizationRequest {
            id: department.id.clone(),
            new_parent_id: String::new(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(root.parent_id.is_empty() && root.ancestor_ids.is_empty());
}

#[tokio::test]
async fn a_retried_create_returns_the_first_organization() {
    let (app, _database) = spawn_app().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut request = new_organization("Ministry of Digital", OrganizationKind::Ministry, "");
    request.request_id = request_id.clone();

    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut organizations = app.organizations.clone();
        let request = app.admin(request.clone());
        tasks.push(tokio::spawn(async move {
            organizations.create_organization(request).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(
            task.await
                .unwrap()
                .expect("every retry succeeds")
                .into_inner()
                .id,
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all retries answer the same organization");
    assert_eq!(app.audit_length().await, 1);

    let mut different = new_organization("Ministry of Health", OrganizationKind::Ministry, "");
    different.request_id = request_id;
    let status = app
        .organizations
        .clone()
        .create_organization(app.admin(different))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["request_id"]);
}

#[tokio::test]
async fn listing_pages_through_every_organization_once() {
    let (app, _database) = spawn_app().await;
    let mut created = Vec::new();
    for index in 0..7 {
        created.push(
            app.create_organization(
                &format!("Ministry {index}"),
                OrganizationKind::Ministry,
                None,
                None,
            )
            .await
            .id,
        );
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .organizations
            .clone()
            .list_organizations(app.admin(pb::ListOrganizationsRequest {
                page_size: 3,
                page_token: page_token.clone(),
                roots_only: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.organizations.len() <= 3);
        seen.extend(
            page.organizations
                .into_iter()
                .map(|organization| organization.id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, created);

    for (page_size, page_token, field) in [(-1, "", "page_size"), (10, "forged", "page_token")] {
        let status = app
            .organizations
            .clone()
            .list_organizations(app.admin(pb::ListOrganizationsRequest {
                page_size,
                page_token: page_token.to_owned(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), [field]);
    }
}

/// Returns the `existing_id` of the ErrorInfo and the ResourceInfo name of an ALREADY_EXISTS.
fn existing_id_of(status: &tonic::Status) -> (String, String) {
    let details = status.get_error_details();
    let metadata = details
        .error_info()
        .map(|info| {
            info.metadata
                .get("existing_id")
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let resource = details
        .resource_info()
        .map(|info| info.resource_name.clone())
        .unwrap_or_default();
    (metadata, resource)
}

#[tokio::test]
async fn already_exists_names_the_resource_holding_the_key() {
    let (app, _database) = spawn_app().await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    let finance = app
        .create_organization(
            "Ministry of Finance",
            OrganizationKind::Ministry,
            None,
            Some("MOF"),
        )
        .await;
    let mut request = new_organization("Another", OrganizationKind::Ministry, "");
    request.organization.as_mut().unwrap().external_code = "MOH".to_owned();
    let status = app
        .organizations
        .clone()
        .create_organization(app.admin(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&status), "ORGANIZATION_ALREADY_EXISTS");
    assert_eq!(
        existing_id_of(&status),
        (health.id.clone(), health.id.clone())
    );

    // An update taking another organisation's code names that organisation too.
    let status = app
        .organizations
        .clone()
        .update_organization(app.admin(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: finance.id.clone(),
                external_code: "MOH".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["external_code".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(existing_id_of(&status).0, health.id);

    // Other creates keyed by a natural code do the same: a course code.
    let course = pb::CreateCourseRequest {
        course: Some(pb::Course {
            code: "DUP-101".to_owned(),
            title: "Duplicated".to_owned(),
            provider_organization_id: health.id.clone(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let first = crate::programmes::courses(&app)
        .create_course(app.admin(course.clone()))
        .await
        .unwrap()
        .into_inner();
    let status = crate::programmes::courses(&app)
        .create_course(app.admin(course))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(existing_id_of(&status), (first.id.clone(), first.id));
}

#[tokio::test]
async fn organizations_are_found_by_external_code_one_or_many() {
    let (app, _database) = spawn_app().await;
    let health = app
        .create_organization(
            "Ministry of Health",
            OrganizationKind::Ministry,
            None,
            Some("MOH"),
        )
        .await;
    let finance = app
        .create_organization(
            "Ministry of Finance",
            OrganizationKind::Ministry,
            None,
            Some("MOF"),
        )
        .await;
    app.create_organization("No code", OrganizationKind::Ministry, None, None)
        .await;
    let found = app
        .organizations
        .clone()
        .lookup_organization(app.admin(pb::LookupOrganizationRequest {
            external_code: "MOH".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found, health);
    let status = app
        .organizations
        .clone()
        .lookup_organization(app.admin(pb::LookupOrganizationRequest {
            external_code: "NOPE".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let batch = app
        .organizations
        .clone()
        .batch_lookup_organizations(app.admin(pb::BatchLookupOrganizationsRequest {
            external_codes: ["MOF", "NOPE", "MOH", "MOF"].map(str::to_owned).to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = batch
        .organizations
        .iter()
        .map(|organization| organization.id.as_str())
        .collect();
    assert_eq!(ids, vec![finance.id.as_str(), health.id.as_str()]);
    assert_eq!(batch.missing_external_codes, vec!["NOPE".to_owned()]);

    for (codes, field) in [
        (vec!["MOH".to_owned(); 1001], "external_codes"),
        (vec![], "external_codes"),
        (
            vec!["MOH".to_owned(), "bad code!".to_owned()],
            "external_codes[1]",
        ),
    ] {
        let status = app
            .organizations
            .clone()
            .batch_lookup_organizations(app.admin(pb::BatchLookupOrganizationsRequest {
                external_codes: codes,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec![field.to_owned()]);
    }
    // 1,000 keys is the limit, not above it.
    let most = app
        .organizations
        .clone()
        .batch_lookup_organizations(app.admin(pb::BatchLookupOrganizationsRequest {
            external_codes: (0..1000).map(|index| format!("C-{index}")).collect(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(most.missing_external_codes.len(), 1000);
}
