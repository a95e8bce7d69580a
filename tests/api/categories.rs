//! Participant categories as data: the deployment's list (seeded with `public` and `private`),
//! people and seat rules over any category, the deprecated sector still working both ways,
//! reports grouped and named by category, and the migration that turned sectors into categories.

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind,
    report_service_client::ReportServiceClient,
};
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{ConnectionTrait as _, Statement};
use tonic::Code;

use crate::helpers::{
    TestApp, TestDatabase, error_metadata, error_reason, person_record, spawn_app, spawn_app_on,
    violated_fields, with_token,
};
use crate::programmes::{create_programme, open_cohort, phase, programmes, published_version};

fn category(code: &str, display_name: &str) -> pb::ParticipantCategory {
    pb::ParticipantCategory {
        code: code.to_owned(),
        display_name: display_name.to_owned(),
        ..Default::default()
    }
}

async fn create_category(app: &TestApp, code: &str, display_name: &str) -> pb::ParticipantCategory {
    app.people
        .clone()
        .create_participant_category(app.admin(pb::CreateParticipantCategoryRequest {
            category: Some(category(code, display_name)),
        }))
        .await
        .expect("create category")
        .into_inner()
}

async fn list_codes(app: &TestApp, token: &str, show_archived: bool) -> Vec<String> {
    app.people
        .clone()
        .list_participant_categories(with_token(
            pb::ListParticipantCategoriesRequest {
                show_archived,
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("list categories")
        .into_inner()
        .categories
        .into_iter()
        .map(|category| category.code)
        .collect()
}

/// Upserts `records` as admin; returns the response.
async fn upsert(app: &TestApp, records: Vec<pb::PersonRecord>) -> pb::BatchUpsertPeopleResponse {
    app.people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: records,
            request_id: String::new(),
        }))
        .await
        .expect("upsert")
        .into_inner()
}

/// A record of `category` (code), with no sector.
fn record_of(external_id: &str, organization_code: &str, code: &str) -> pb::PersonRecord {
    pb::PersonRecord {
        sector: pb::Sector::Unspecified.into(),
        category: code.to_owned(),
        ..person_record(external_id, organization_code)
    }
}

/// Upserts people `prefix-0..count` of category `code`; returns their ids in order.
async fn people_of(
    app: &TestApp,
    prefix: &str,
    organization_code: &str,
    code: &str,
    count: usize,
) -> Vec<String> {
    let records = (0..count)
        .map(|index| record_of(&format!("{prefix}-{index}"), organization_code, code))
        .collect();
    let response = upsert(app, records).await;
    assert_eq!(response.counts.unwrap().failed, 0, "{:?}", response.errors);
    response
        .results
        .into_iter()
        .map(|result| result.id)
        .collect()
}

#[tokio::test]
async fn categories_are_data_seeded_with_public_and_private_and_only_admins_change_them() {
    let (app, _database) = spawn_app().await;
    let admin = app.admin_token();
    assert_eq!(list_codes(&app, &admin, false).await, ["private", "public"]);

    let trainee = create_category(&app, "tvet_trainee", "TVET trainees").await;
    assert_eq!(trainee.state(), pb::ParticipantCategoryState::Active);
    assert!(!trainee.etag.is_empty());
    // Anyone signed in may list them, a learner too.
    let learner = app.token("someone", &[Role::Learner], None);
    assert_eq!(
        list_codes(&app, &learner, false).await,
        ["private", "public", "tvet_trainee"]
    );

    let mut people = app.people.clone();
    let again = people
        .create_participant_category(app.admin(pb::CreateParticipantCategoryRequest {
            category: Some(category("tvet_trainee", "Another name")),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let bad = people
        .create_participant_category(app.admin(pb::CreateParticipantCategoryRequest {
            category: Some(category("NGO staff", "")),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        ["category.code", "category.display_name"]
    );

    // Writing is for admins only: an org admin and an HR service are refused, and nothing changes.
    let org_admin = app.token("oa", &[Role::OrgAdmin], Some(&lms::domain::new_id()));
    let hr = app.token("hr", &[Role::HrService], None);
    for token in [&org_admin, &hr] {
        let refused = people
            .create_participant_category(with_token(
                pb::CreateParticipantCategoryRequest {
                    category: Some(category("ngo", "NGO participants")),
                },
                token,
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let refused = people
            .update_participant_category(with_token(
                pb::UpdateParticipantCategoryRequest {
                    category: Some(category("public", "Renamed")),
                    update_mask: None,
                },
                token,
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    assert_eq!(list_codes(&app, &admin, true).await.len(), 3);

    // Renaming needs the current etag; a stale one is ABORTED.
    let renamed = people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(pb::ParticipantCategory {
                display_name: "TVET trainees (JTM)".to_owned(),
                etag: trainee.etag.clone(),
                ..category("tvet_trainee", "")
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "TVET trainees (JTM)");
    let stale = people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(pb::ParticipantCategory {
                description: "Trainees of industrial training institutes".to_owned(),
                etag: trainee.etag.clone(),
                ..category("tvet_trainee", "")
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let immutable = people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(category("tvet_trainee", "")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["code".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&immutable), ["update_mask"]);
    let missing = people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(category("student", "Students")),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Archived categories leave the default list but stay listed on request.
    people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(pb::ParticipantCategory {
                state: pb::ParticipantCategoryState::Archived.into(),
                ..category("tvet_trainee", "")
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["state".to_owned()],
            }),
        }))
        .await
        .unwrap();
    assert_eq!(list_codes(&app, &admin, false).await, ["private", "public"]);
    assert_eq!(
        list_codes(&app, &admin, true).await,
        ["private", "public", "tvet_trainee"]
    );
    // Paging walks the codes in order.
    let first = people
        .list_participant_categories(app.admin(pb::ListParticipantCategoriesRequest {
            page_size: 2,
            show_archived: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.categories.len(), 2);
    let second = people
        .list_participant_categories(app.admin(pb::ListParticipantCategoriesRequest {
            page_size: 2,
            page_token: first.next_page_token,
            show_archived: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.categories[0].code, "tvet_trainee");
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn people_take_any_category_and_the_deprecated_sector_still_works_both_ways() {
    let (app, _database) = spawn_app().await;
    app.create_organization("JTM", OrganizationKind::Department, None, Some("JTM"))
        .await;
    create_category(&app, "tvet_trainee", "TVET trainees").await;
    create_category(&app, "ngo", "NGO participants").await;

    let response = upsert(
        &app,
        vec![
            record_of("T-1", "JTM", "tvet_trainee"),
            // An old client: sector only.
            pb::PersonRecord {
                sector: pb::Sector::Private.into(),
                ..person_record("P-1", "JTM")
            },
            // Both, agreeing.
            pb::PersonRecord {
                category: "public".to_owned(),
                ..person_record("G-1", "JTM")
            },
            record_of("X-1", "JTM", "astronaut"),
            pb::PersonRecord {
                category: "ngo".to_owned(),
                ..person_record("X-2", "JTM")
            },
            record_of("X-3", "JTM", "Not A Code"),
            record_of("X-4", "JTM", ""),
        ],
    )
    .await;
    let counts = response.counts.unwrap();
    assert_eq!((counts.created, counts.failed), (3, 4));
    let refused: Vec<(&str, &str, &str)> = response
        .errors
        .iter()
        .map(|error| {
            (
                error.key.as_str(),
                error.field.as_str(),
                error.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("X-1", "category", "CATEGORY_NOT_FOUND"),
            ("X-2", "category", "INVALID_FIELD"),
            ("X-3", "category", "INVALID_FIELD"),
            ("X-4", "category", "INVALID_FIELD"),
        ]
    );
    let mut people = app.people.clone();
    let get = |id: String| {
        let mut people = app.people.clone();
        let request = app.admin(pb::GetPersonRequest { id });
        async move { people.get_person(request).await.unwrap().into_inner() }
    };
    let trainee = get(response.results[0].id.clone()).await;
    assert_eq!(trainee.category, "tvet_trainee");
    assert_eq!(trainee.sector(), pb::Sector::Unspecified);
    let private = get(response.results[1].id.clone()).await;
    assert_eq!(
        (private.category.as_str(), private.sector()),
        ("private", pb::Sector::Private)
    );
    let public = get(response.results[2].id.clone()).await;
    assert_eq!(
        (public.category.as_str(), public.sector()),
        ("public", pb::Sector::Public)
    );

    // ListPeople filters by category, or by the sector's category.
    let listed = |category: &str, sector: pb::Sector| {
        let mut people = app.people.clone();
        let request = app.admin(pb::ListPeopleRequest {
            category: category.to_owned(),
            sector: sector.into(),
            ..Default::default()
        });
        async move {
            people.list_people(request).await.map(|response| {
                response
                    .into_inner()
                    .people
                    .into_iter()
                    .map(|person| person.external_id)
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        listed("tvet_trainee", pb::Sector::Unspecified)
            .await
            .unwrap(),
        ["T-1"]
    );
    assert_eq!(listed("", pb::Sector::Private).await.unwrap(), ["P-1"]);
    let contradictory = listed("ngo", pb::Sector::Public).await.unwrap_err();
    assert_eq!(violated_fields(&contradictory), ["category"]);

    // UpdatePerson: `category`, or the deprecated `sector` path; an unknown code names the field.
    let moved = people
        .update_person(app.admin(pb::UpdatePersonRequest {
            person: Some(pb::Person {
                id: trainee.id.clone(),
                category: "ngo".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["category".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.category, "ngo");
    let back = people
        .update_person(app.admin(pb::UpdatePersonRequest {
            person: Some(pb::Person {
                id: trainee.id.clone(),
                sector: pb::Sector::Public.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["sector".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (back.category.as_str(), back.sector()),
        ("public", pb::Sector::Public)
    );
    let unknown = people
        .update_person(app.admin(pb::UpdatePersonRequest {
            person: Some(pb::Person {
                id: trainee.id.clone(),
                category: "astronaut".to_owned(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), ["person.category"]);
    assert_eq!(get(trainee.id.clone()).await.category, "public");

    // An archived category stays with who has it (a nightly re-sync is unchanged) but is not
    // given anew.
    people
        .update_participant_category(app.admin(pb::UpdateParticipantCategoryRequest {
            category: Some(pb::ParticipantCategory {
                code: "private".to_owned(),
                state: pb::ParticipantCategoryState::Archived.into(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap();
    let response = upsert(
        &app,
        vec![
            pb::PersonRecord {
                sector: pb::Sector::Private.into(),
                ..person_record("P-1", "JTM")
            },
            record_of("P-2", "JTM", "private"),
        ],
    )
    .await;
    assert_eq!(response.results[0].outcome(), pb::RecordOutcome::Unchanged);
    assert_eq!(response.results[1].reason, "CATEGORY_ARCHIVED");
    let archived = people
        .update_person(app.admin(pb::UpdatePersonRequest {
            person: Some(pb::Person {
                id: trainee.id.clone(),
                category: "private".to_owned(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&archived), ["person.category"]);
}

/// An open cohort of a fresh programme with `settings`; returns it.
async fn cohort_with(app: &TestApp, settings: pb::Cohort) -> pb::Cohort {
    let centre = app
        .create_organization("ILP", OrganizationKind::TrainingCentre, None, Some("ILP"))
        .await;
    let version = published_version(
        app,
        "TEL-1",
        &centre.id,
        &[("Fibre", &[(Kind::Lab, Mode::InPerson, None)])],
    )
    .await;
    let programme = create_programme(
        app,
        "TVET",
        &centre.id,
        &[],
        vec![phase("Centre", &[&version], "ILP", 30)],
    )
    .await;
    open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Batch 1".to_owned(),
            ..settings
        },
    )
    .await
}

fn seats(list: &[(&str, i32)]) -> Vec<pb::CategorySeats> {
    list.iter()
        .map(|(category, seats)| pb::CategorySeats {
            category: (*category).to_owned(),
            seats: *seats,
        })
        .collect()
}

async fn enroll(app: &TestApp, cohort_id: &str, person_id: &str) -> Result<(), tonic::Status> {
    programmes(app)
        .enroll(app.admin(pb::EnrollRequest {
            cohort_id: cohort_id.to_owned(),
            person_id: person_id.to_owned(),
            request_id: String::new(),
        }))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn seats_per_category_refuse_naming_the_category_its_seats_and_the_cohort() {
    let (app, _database) = spawn_app().await;
    create_category(&app, "tvet_trainee", "TVET trainees").await;
    create_category(&app, "academic", "Educators").await;
    create_category(&app, "ngo", "NGO participants").await;
    let cohort = cohort_with(
        &app,
        pb::Cohort {
            capacity: 10,
            category_seats: seats(&[("tvet_trainee", 2), ("academic", 1), ("public", 1)]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        cohort.category_seats,
        seats(&[("academic", 1), ("public", 1), ("tvet_trainee", 2)])
    );
    // Not every category is a sector: the deprecated list stays empty.
    assert!(cohort.sector_seats.is_empty());

    let trainees = people_of(&app, "T", "ILP", "tvet_trainee", 3).await;
    let ngo = people_of(&app, "N", "ILP", "ngo", 1).await;
    let officers = people_of(&app, "G", "ILP", "public", 2).await;
    enroll(&app, &cohort.id, &trainees[0]).await.unwrap();
    enroll(&app, &cohort.id, &trainees[1]).await.unwrap();
    let full = enroll(&app, &cohort.id, &trainees[2]).await.unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&full), "CATEGORY_SEATS_FULL");
    assert_eq!(
        error_metadata(&full, "category").as_deref(),
        Some("tvet_trainee")
    );
    assert_eq!(error_metadata(&full, "seats").as_deref(), Some("2"));
    assert_eq!(
        error_metadata(&full, "cohort_id").as_deref(),
        Some(cohort.id.as_str())
    );
    // A category not listed has no places.
    let unlisted = enroll(&app, &cohort.id, &ngo[0]).await.unwrap_err();
    assert_eq!(error_reason(&unlisted), "CATEGORY_SEATS_FULL");
    assert_eq!(error_metadata(&unlisted, "seats").as_deref(), Some("0"));
    // The former sectors keep their reason.
    enroll(&app, &cohort.id, &officers[0]).await.unwrap();
    let sector_full = enroll(&app, &cohort.id, &officers[1]).await.unwrap_err();
    assert_eq!(error_reason(&sector_full), "SECTOR_SEATS_FULL");
    assert_eq!(
        error_metadata(&sector_full, "category").as_deref(),
        Some("public")
    );

    // Seats may not drop below the places taken, nor name unknown categories, nor come twice.
    let mut client = programmes(&app);
    let below = client
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(pb::Cohort {
                id: cohort.id.clone(),
                category_seats: seats(&[("tvet_trainee", 1)]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["category_seats".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(below.code(), Code::FailedPrecondition);
    let unknown = client
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(pb::Cohort {
                id: cohort.id.clone(),
                category_seats: seats(&[("tvet_trainee", 2), ("astronaut", 1)]),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), ["cohort.category_seats"]);
    let both = client
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(pb::Cohort {
                id: cohort.id.clone(),
                category_seats: seats(&[("tvet_trainee", 2)]),
                sector_seats: vec![pb::SectorSeats {
                    sector: pb::Sector::Public.into(),
                    seats: 1,
                }],
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&both), ["cohort.sector_seats"]);

    // The deprecated list still sets seats, as the categories public and private.
    let by_sector = client
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(pb::Cohort {
                id: cohort.id.clone(),
                capacity: 10,
                sector_seats: vec![
                    pb::SectorSeats {
                        sector: pb::Sector::Public.into(),
                        seats: 5,
                    },
                    pb::SectorSeats {
                        sector: pb::Sector::Private.into(),
                        seats: 5,
                    },
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["sector_seats".to_owned()],
            }),
        }))
        .await;
    // Places already taken by other categories stay taken.
    let by_sector = by_sector.unwrap().into_inner();
    assert_eq!(
        by_sector.category_seats,
        seats(&[("private", 5), ("public", 5)])
    );
    assert_eq!(by_sector.sector_seats.len(), 2);
}

fn reports(app: &TestApp) -> ReportServiceClient<tonic::transport::Channel> {
    ReportServiceClient::new(app.channel.clone())
}

#[tokio::test]
async fn reports_group_by_category_named_by_display_name_with_a_total_named_for_the_grouping() {
    let (app, _database) = spawn_app().await;
    create_category(&app, "tvet_trainee", "TVET trainees").await;
    let cohort = cohort_with(
        &app,
        pb::Cohort {
            capacity: 10,
            ..Default::default()
        },
    )
    .await;
    let trainees = people_of(&app, "T", "ILP", "tvet_trainee", 2).await;
    let officers = people_of(&app, "G", "ILP", "public", 1).await;
    for person in trainees.iter().chain(&officers) {
        enroll(&app, &cohort.id, person).await.unwrap();
    }
    let request = |grouping: pb::ReportGrouping| pb::GetCompletionReportRequest {
        programme_id: cohort.programme_id.clone(),
        group_by: grouping.into(),
        ..Default::default()
    };
    for grouping in [pb::ReportGrouping::Category, pb::ReportGrouping::Sector] {
        let report = reports(&app)
            .get_completion_report(app.admin(request(grouping)))
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(&str, &str, i64)> = report
            .rows
            .iter()
            .map(|row| (row.key.as_str(), row.name.as_str(), row.enrolled))
            .collect();
        assert_eq!(
            rows,
            [
                ("public", "Public sector", 1),
                ("tvet_trainee", "TVET trainees", 2)
            ],
            "{grouping:?}"
        );
        assert_eq!(report.total.unwrap().name, "All categories");
    }
    for (grouping, total) in [
        (pb::ReportGrouping::Cohort, "All cohorts"),
        (pb::ReportGrouping::ChildOrganizations, "All organizations"),
    ] {
        let report = reports(&app)
            .get_completion_report(app.admin(request(grouping)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(report.total.unwrap().name, total);
    }
    let mut stream = reports(&app)
        .export_report(app.admin(pb::ExportReportRequest {
            report: Some(request(pb::ReportGrouping::Category)),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.next().await {
        csv.push_str(&chunk.unwrap().csv);
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1].starts_with("\"public\",\"Public sector\",1,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("\"tvet_trainee\",\"TVET trainees\",2,"),
        "{csv}"
    );
    assert!(
        lines[3].starts_with("\"total\",\"All categories\",3,"),
        "{csv}"
    );
}

/// Runs `sql` on `database` behind the server's back.
async fn execute(database: &TestDatabase, sql: &str) {
    let db = database.connect().await;
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect(sql);
}

/// Returns the text column `column` of the first row of `sql`.
async fn text(database: &TestDatabase, sql: &str, column: &str) -> String {
    let db = database.connect().await;
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect(sql)
        .expect("a row")
        .try_get("", column)
        .expect(column)
}

#[tokio::test]
async fn the_migration_turns_sectors_into_categories_and_back() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    app.create_organization("MAMPU", OrganizationKind::Agency, None, Some("MAMPU"))
        .await;
    let cohort = cohort_with(
        &app,
        pb::Cohort {
            capacity: 4,
            sector_seats: vec![
                pb::SectorSeats {
                    sector: pb::Sector::Public.into(),
                    seats: 2,
                },
                pb::SectorSeats {
                    sector: pb::Sector::Private.into(),
                    seats: 1,
                },
            ],
            ..Default::default()
        },
    )
    .await;
    let response = upsert(
        &app,
        vec![
            person_record("PUB-1", "MAMPU"),
            person_record("PUB-2", "MAMPU"),
            pb::PersonRecord {
                sector: pb::Sector::Private.into(),
                ..person_record("PRIV-1", "MAMPU")
            },
            pb::PersonRecord {
                sector: pb::Sector::Private.into(),
                ..person_record("PRIV-2", "MAMPU")
            },
        ],
    )
    .await;
    let ids: Vec<String> = response
        .results
        .into_iter()
        .map(|result| result.id)
        .collect();
    for id in &ids[..3] {
        enroll(&app, &cohort.id, id).await.unwrap();
    }
    app.stop().await;

    // Down to the level before the migration: the data is as the sector code wrote it.
    let db = database.connect().await;
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|migration| migration.name() == "m20261207_000021_participant_categories")
        .expect("the migration is registered")
        + 1;
    Migrator::down(&db, Some(steps as u32)).await.expect("down");
    drop(db);
    let person_sql = |external_id: &str, column: &str| {
        format!("SELECT {column} FROM people WHERE external_id = '{external_id}'")
    };
    assert_eq!(
        text(&database, &person_sql("PUB-1", "sector"), "sector").await,
        "PUBLIC"
    );
    assert_eq!(
        text(&database, &person_sql("PRIV-1", "sector"), "sector").await,
        "PRIVATE"
    );
    let seats_sql = format!(
        "SELECT sector_seats FROM cohorts WHERE id = '{}'",
        cohort.id
    );
    assert_eq!(
        text(&database, &seats_sql, "sector_seats").await,
        r#"[["PRIVATE",1],["PUBLIC",2]]"#
    );
    // As an older server would have written it: one more PUBLIC officer, recorded in upper case.
    execute(
        &database,
        &format!(
            "UPDATE people SET sector = 'PUBLIC' WHERE external_id = 'PRIV-2' AND id = '{}'",
            ids[3]
        ),
    )
    .await;

    // Up again, through the server's own start.
    let app = spawn_app_on(&database).await;
    let person = |id: &str| {
        let mut people = app.people.clone();
        let request = app.admin(pb::GetPersonRequest { id: id.to_owned() });
        async move { people.get_person(request).await }
    };
    let officer = person(&ids[0]).await.unwrap().into_inner();
    assert_eq!(
        (officer.category.as_str(), officer.sector()),
        ("public", pb::Sector::Public)
    );
    let partner = person(&ids[2]).await.unwrap().into_inner();
    assert_eq!(partner.category, "private");
    let converted = person(&ids[3]).await.unwrap().into_inner();
    assert_eq!(converted.category, "public");
    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: cohort.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cohort.category_seats,
        seats(&[("private", 1), ("public", 2)])
    );
    assert_eq!(cohort.enrolled_count, 3);
    // Enrolments and counters were converted too: the two public places count as taken (a free
    // place is left, but not for the public category), and the report names the categories.
    let full = enroll(&app, &cohort.id, &ids[3]).await.unwrap_err();
    assert_eq!(error_reason(&full), "SECTOR_SEATS_FULL");
    assert_eq!(error_metadata(&full, "seats").as_deref(), Some("2"));
    let report = reports(&app)
        .get_completion_report(app.admin(pb::GetCompletionReportRequest {
            programme_id: cohort.programme_id.clone(),
            group_by: pb::ReportGrouping::Category.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(&str, &str, i64)> = report
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.name.as_str(), row.enrolled))
        .collect();
    assert_eq!(
        rows,
        [
            ("private", "Private sector", 1),
            ("public", "Public sector", 2)
        ]
    );
    let rebuilt = reports(&app)
        .rebuild_report_counters(app.admin(pb::RebuildReportCountersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(rebuilt.agreed, "the converted counters equal a recount");
}
