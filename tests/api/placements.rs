//! Placements (ProgressService): the host and supervisors of an enrolment's industry attachment
//! or field visit; only a named supervisor (or an admin) signs the activity off, with evidence
//! when the activity requires it; supervisors see only the placements they supervise.

use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind, ProgressSource as Source,
    ProgressVerb as Verb,
};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{
    courses, create_programme, import_people, open_cohort, phase, published_version,
};
use crate::progress::{event, progress};

/// A cohort on a course with a lecture, an industry attachment and a field visit; learners and
/// host supervisors (people of the host company, learner role only).
struct Site {
    lecture: String,
    attachment: String,
    visit: String,
    host_id: String,
    /// (person id, enrolment id).
    learners: Vec<(String, String)>,
    supervisors: Vec<String>,
}

async fn site(app: &TestApp, learners: usize) -> Site {
    let provider = app
        .create_organization(
            "Provider",
            OrganizationKind::TrainingCentre,
            None,
            Some("PROV"),
        )
        .await;
    let host = app
        .create_organization(
            "Host company",
            OrganizationKind::Company,
            None,
            Some("HOST"),
        )
        .await;
    let version_id = published_version(
        app,
        "ATT-101",
        &provider.id,
        &[(
            "Attachment",
            &[
                (Kind::Lecture, Mode::InPerson, None),
                (
                    Kind::IndustryAttachment,
                    Mode::InPerson,
                    Some(host.id.as_str()),
                ),
                (Kind::FieldVisit, Mode::InPerson, Some(host.id.as_str())),
            ],
        )],
    )
    .await;
    let version = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let activity = |index: usize| version.modules[0].activities[index].id.clone();
    let programme = create_programme(
        app,
        "ATT",
        &provider.id,
        &[],
        vec![phase("Attachment", &[&version_id], "", 150)],
    )
    .await;
    let cohort = open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Cohort".to_owned(),
            capacity: 100,
            ..Default::default()
        },
    )
    .await;
    let people = import_people(app, "L", "PROV", learners, pb::Sector::Public).await;
    let response = crate::programmes::programmes(app)
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: cohort.id.clone(),
            person_ids: people,
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let learners = response
        .results
        .into_iter()
        .map(|result| (result.person_id, result.enrollment.expect("enrolled").id))
        .collect();
    let supervisors = import_people(app, "S", "HOST", 2, pb::Sector::Private).await;
    Site {
        lecture: activity(0),
        attachment: activity(1),
        visit: activity(2),
        host_id: host.id,
        learners,
        supervisors,
    }
}

fn external_host() -> pb::PlacementHost {
    pb::PlacementHost {
        name: "Bosch Rexroth".to_owned(),
        country_code: "DE".to_owned(),
        address: "Lohr am Main".to_owned(),
        external_code: "HRB 1234".to_owned(),
        ..Default::default()
    }
}

async fn create_placement(
    app: &TestApp,
    enrollment_id: &str,
    activity_id: &str,
    host: pb::PlacementHost,
    supervisors: &[&str],
) -> Result<pb::Placement, tonic::Status> {
    progress(app)
        .create_placement(app.admin(pb::CreatePlacementRequest {
            placement: Some(pb::Placement {
                enrollment_id: enrollment_id.to_owned(),
                activity_id: activity_id.to_owned(),
                host: Some(host),
                supervisor_person_ids: supervisors.iter().map(|id| (*id).to_owned()).collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn sign_off(enrollment_id: &str, activity_id: &str, evidence: bool) -> pb::ProgressEvent {
    let mut sign_off = event(
        enrollment_id,
        activity_id,
        Verb::Completed,
        None,
        Source::Supervisor,
        1,
    );
    if evidence {
        sign_off.evidence = Some(pb::Evidence {
            uri: "https://files.example/attachment-signed.pdf".to_owned(),
            note: "signed by the host supervisor".to_owned(),
        });
    }
    sign_off
}

async fn record(
    app: &TestApp,
    token: &str,
    event: pb::ProgressEvent,
) -> Result<pb::ProgressAck, tonic::Status> {
    progress(app)
        .record_progress(with_token(
            pb::RecordProgressRequest { event: Some(event) },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn event_count(app: &TestApp, enrollment_id: &str) -> i64 {
    progress(app)
        .get_enrollment_progress(app.admin(pb::GetEnrollmentProgressRequest {
            enrollment_id: enrollment_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .event_count
}

fn metadata(status: &tonic::Status, key: &str) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn only_a_named_supervisor_signs_off_an_attachment_and_with_evidence() {
    let (app, _database) = spawn_app().await;
    let site = site(&app, 1).await;
    let (_, enrollment) = &site.learners[0];
    let (named, other) = (&site.supervisors[0], &site.supervisors[1]);
    let placement = create_placement(
        &app,
        enrollment,
        &site.attachment,
        external_host(),
        &[named],
    )
    .await
    .unwrap();
    assert_eq!(placement.supervisor_person_ids, vec![named.clone()]);
    assert_eq!(placement.host.as_ref().unwrap().country_code, "DE");
    assert!(!placement.etag.is_empty() && placement.create_time.is_some());

    // A programme manager reaches every enrolment, and once signed attachments off: no more.
    let manager = app.token("manager-1", &[Role::ProgrammeManager], None);
    let status = record(&app, &manager, sign_off(enrollment, &site.attachment, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "NOT_PLACEMENT_SUPERVISOR");
    assert_eq!(metadata(&status, "placement_id"), placement.id);
    assert_eq!(metadata(&status, "enrollment_id"), *enrollment);

    // A supervisor of the host who is not named on this placement reaches nothing.
    let stranger = app.token(other, &[Role::Learner], None);
    let status = record(
        &app,
        &stranger,
        sign_off(enrollment, &site.attachment, true),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The named supervisor, with the learner role only, signs off; not without evidence.
    let supervisor = app.token(named, &[Role::Learner], None);
    let status = record(
        &app,
        &supervisor,
        sign_off(enrollment, &site.attachment, false),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["event.evidence".to_owned()]);
    assert_eq!(event_count(&app, enrollment).await, 0, "nothing written");

    let ack = record(
        &app,
        &supervisor,
        sign_off(enrollment, &site.attachment, true),
    )
    .await
    .unwrap();
    assert_eq!(ack.activity_state(), pb::ActivityState::Completed);
    assert_eq!(event_count(&app, enrollment).await, 1);

    // The signer is recorded: the audit chain's progress entry names the supervisor as actor.
    let entries = app
        .audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            actor: named.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        !entries.is_empty(),
        "the sign-off is audited under its supervisor"
    );
    let mut statements = progress(&app)
        .export_statements(app.admin(pb::ExportStatementsRequest {
            enrollment_id: enrollment.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let chunk = statements.message().await.unwrap().expect("one chunk");
    let statement: serde_json::Value = serde_json::from_str(&chunk.statements[0]).unwrap();
    assert_eq!(
        statement["context"]["instructor"]["account"]["name"],
        named.as_str(),
        "the xAPI statement names who signed"
    );

    // The supervisor records only sign-offs: nothing else on the learner's enrolment.
    let status = record(
        &app,
        &supervisor,
        event(
            enrollment,
            &site.lecture,
            Verb::Attended,
            None,
            Source::Trainer,
            1,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_sign_off_without_a_placement_is_a_failed_precondition_naming_what_is_missing() {
    let (app, _database) = spawn_app().await;
    let site = site(&app, 1).await;
    let (_, enrollment) = &site.learners[0];
    let manager = app.token("manager-1", &[Role::ProgrammeManager], None);
    for activity in [&site.visit, &site.attachment] {
        let status = record(&app, &manager, sign_off(enrollment, activity, true))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(error_reason(&status), "PLACEMENT_REQUIRED");
        assert_eq!(metadata(&status, "enrollment_id"), *enrollment);
        assert_eq!(metadata(&status, "activity_id"), **activity);
    }
    // A batch with one such sign-off records nothing of the call.
    let status = progress(&app)
        .batch_record_progress(with_token(
            pb::BatchRecordProgressRequest {
                events: vec![
                    event(
                        enrollment,
                        &site.lecture,
                        Verb::Attended,
                        None,
                        Source::Trainer,
                        2,
                    ),
                    sign_off(enrollment, &site.visit, false),
                ],
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "PLACEMENT_REQUIRED");
    assert_eq!(metadata(&status, "index"), "1");
    assert_eq!(event_count(&app, enrollment).await, 0);
}

#[tokio::test]
async fn supervisors_are_replaced_with_the_etag_and_the_new_one_signs_a_field_visit() {
    let (app, _database) = spawn_app().await;
    let site = site(&app, 1).await;
    let (_, enrollment) = &site.learners[0];
    let (first, second) = (&site.supervisors[0], &site.supervisors[1]);
    let host = pb::PlacementHost {
        organization_id: site.host_id.clone(),
        ..Default::default()
    };
    let placement = create_placement(&app, enrollment, &site.visit, host, &[first])
        .await
        .unwrap();
    let update = |etag: &str| {
        app.admin(pb::UpdatePlacementRequest {
            placement: Some(pb::Placement {
                id: placement.id.clone(),
                etag: etag.to_owned(),
                supervisor_person_ids: vec![second.clone()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["supervisor_person_ids".to_owned()],
            }),
        })
    };
    let updated = progress(&app)
        .update_placement(update(&placement.etag))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.supervisor_person_ids, vec![second.clone()]);
    assert_ne!(updated.etag, placement.etag);
    assert_eq!(
        updated.host, placement.host,
        "the mask leaves the host alone"
    );
    let stale = progress(&app)
        .update_placement(update(&placement.etag))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let replaced = app.token(first, &[Role::Learner], None);
    let status = record(&app, &replaced, sign_off(enrollment, &site.visit, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A field visit needs no evidence: the new supervisor's word completes it.
    let current = app.token(second, &[Role::Learner], None);
    let ack = record(&app, &current, sign_off(enrollment, &site.visit, false))
        .await
        .unwrap();
    assert_eq!(ack.activity_state(), pb::ActivityState::Completed);
}

#[tokio::test]
async fn supervisors_and_learners_see_only_their_own_placements() {
    let (app, _database) = spawn_app().await;
    let site = site(&app, 2).await;
    let (learner_a, enrollment_a) = &site.learners[0];
    let (_, enrollment_b) = &site.learners[1];
    let (supervisor_a, supervisor_b) = (&site.supervisors[0], &site.supervisors[1]);
    let placement_a = create_placement(
        &app,
        enrollment_a,
        &site.attachment,
        external_host(),
        &[supervisor_a],
    )
    .await
    .unwrap();
    let placement_b = create_placement(
        &app,
        enrollment_b,
        &site.attachment,
        external_host(),
        &[supervisor_b],
    )
    .await
    .unwrap();
    let list = |token: String| {
        let app = &app;
        async move {
            progress(app)
                .list_placements(with_token(pb::ListPlacementsRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .placements
                .into_iter()
                .map(|placement| placement.id)
                .collect::<Vec<_>>()
        }
    };
    let as_supervisor_a = app.token(supervisor_a, &[Role::Learner], None);
    assert_eq!(
        list(as_supervisor_a.clone()).await,
        vec![placement_a.id.clone()]
    );
    assert_eq!(
        list(app.token(learner_a, &[Role::Learner], None)).await,
        vec![placement_a.id.clone()]
    );
    let mut everything = list(app.admin_token()).await;
    everything.sort();
    let mut expected = vec![placement_a.id.clone(), placement_b.id.clone()];
    expected.sort();
    assert_eq!(everything, expected);
    // An org admin of another subtree sees none.
    let elsewhere = app
        .create_organization("Elsewhere", OrganizationKind::Ministry, None, Some("ELSE"))
        .await;
    assert!(
        list(app.token("org-admin-1", &[Role::OrgAdmin], Some(&elsewhere.id)))
            .await
            .is_empty()
    );

    let get = |id: String, token: String| {
        let mut client = progress(&app);
        async move {
            client
                .get_placement(with_token(pb::GetPlacementRequest { id }, &token))
                .await
        }
    };
    assert!(
        get(placement_a.id.clone(), as_supervisor_a.clone())
            .await
            .is_ok()
    );
    let status = get(placement_b.id.clone(), as_supervisor_a.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = get(uuid::Uuid::now_v7().to_string(), as_supervisor_a.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "no existence leak");

    // Pages of one, in id order, and a learner cannot create placements.
    let first = progress(&app)
        .list_placements(app.admin(pb::ListPlacementsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.placements.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let status = progress(&app)
        .create_placement(with_token(
            pb::CreatePlacementRequest::default(),
            &as_supervisor_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn bad_placements_are_refused_naming_the_field_and_a_second_one_already_exists() {
    let (app, _database) = spawn_app().await;
    let site = site(&app, 1).await;
    let (_, enrollment) = &site.learners[0];
    let supervisor = site.supervisors[0].as_str();
    let mut host = external_host();
    host.country_code = "Germany".to_owned();
    let status = create_placement(&app, enrollment, &site.attachment, host, &[supervisor])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        vec!["placement.host.country_code".to_owned()]
    );
    let status = create_placement(
        &app,
        enrollment,
        &site.lecture,
        external_host(),
        &[supervisor],
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec!["placement.activity_id".to_owned()]
    );
    let status = create_placement(&app, enrollment, &site.attachment, external_host(), &[])
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec!["placement.supervisor_person_ids".to_owned()]
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = create_placement(
        &app,
        enrollment,
        &site.attachment,
        external_host(),
        &[&unknown],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A request id makes the create safe to retry; a second placement for the pair exists already.
    let request = pb::CreatePlacementRequest {
        placement: Some(pb::Placement {
            enrollment_id: enrollment.clone(),
            activity_id: site.attachment.clone(),
            host: Some(external_host()),
            supervisor_person_ids: vec![supervisor.to_owned()],
            ..Default::default()
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = progress(&app)
        .create_placement(app.admin(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = progress(&app)
        .create_placement(app.admin(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let status = create_placement(
        &app,
        enrollment,
        &site.attachment,
        external_host(),
        &[supervisor],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(metadata(&status, "existing_id"), first.id);
}

#[tokio::test]
async fn the_migration_gives_signed_off_attachments_a_placement_under_their_signers() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let app = crate::helpers::spawn_app_on(&database).await;
    let site = site(&app, 1).await;
    let (_, enrollment) = &site.learners[0];
    let signer = &site.supervisors[0];
    create_placement(
        &app,
        enrollment,
        &site.attachment,
        external_host(),
        &[signer],
    )
    .await
    .unwrap();
    let token = app.token(signer, &[Role::Learner], None);
    record(&app, &token, sign_off(enrollment, &site.attachment, true))
        .await
        .unwrap();
    // An admin's sign-off (no person behind the token) gives no placement.
    let visit = progress(&app)
        .record_progress(app.admin(pb::RecordProgressRequest {
            event: Some(sign_off(enrollment, &site.visit, false)),
        }))
        .await;
    assert!(visit.is_ok(), "{visit:?}");
    app.stop().await;

    // Back to the database before the migration: events signed off, no placements.
    let direct = database.connect().await;
    for sql in [
        "DROP TABLE placement_supervisors",
        "DROP TABLE placements",
        "DELETE FROM seaql_migrations WHERE version = 'm20261206_000017_placements'",
    ] {
        sea_orm::ConnectionTrait::execute_unprepared(&direct, sql)
            .await
            .unwrap();
    }
    drop(direct);

    let app = crate::helpers::spawn_app_on(&database).await;
    let placements = progress(&app)
        .list_placements(app.admin(pb::ListPlacementsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .placements;
    assert_eq!(placements.len(), 1, "{placements:?}");
    let carried = &placements[0];
    assert_eq!(
        (carried.enrollment_id.as_str(), carried.activity_id.as_str()),
        (enrollment.as_str(), site.attachment.as_str())
    );
    assert_eq!(carried.supervisor_person_ids, vec![signer.clone()]);
    assert_eq!(
        carried.host.as_ref().unwrap().organization_id,
        site.host_id,
        "the activity's host"
    );
    // The same supervisor still signs off (a correction, say) after the upgrade.
    record(&app, &token, sign_off(enrollment, &site.attachment, true))
        .await
        .unwrap();
}
