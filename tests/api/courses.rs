//! CourseService: courses, draft and published versions, modules, activities and prerequisites,
//! over a real socket. [`publish_course`] is the fixture other areas (programmes) reuse.

use lms::auth::Role;
use lms::pb::{
    self, ActivityKind, CourseState, CourseVersionState, DeliveryMode, OrganizationKind,
};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::courses;

/// Creates course `code` (titled after its code) of the organisation `provider_id`, adds one
/// DRAFT version with `modules` — each a title and its activities as (kind, delivery mode) — and
/// publishes it. Returns the course as it is after publication and the published version with
/// its modules and activities.
///
/// Every module and activity is required; assessments get `pass_score` 50; field visits and
/// industry attachments are hosted by the provider itself. Panics on any failure.
pub(crate) async fn publish_course(
    app: &TestApp,
    code: &str,
    provider_id: &str,
    modules: &[(&str, &[(ActivityKind, DeliveryMode)])],
) -> (pb::Course, pb::CourseVersion) {
    let course = create_course(app, code, provider_id).await;
    let draft = create_version(app, &course.id, "").await;
    for (title, activities) in modules {
        let module = create_module(app, &draft.id, title, &[]).await;
        for (kind, delivery_mode) in *activities {
            create_activity(app, &module.id, *kind, *delivery_mode, provider_id).await;
        }
    }
    let mut client = courses(app);
    let published = client
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: draft.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("publish course version")
        .into_inner();
    let course = get_course(app, &course.id).await;
    (course, published)
}

async fn create_course(app: &TestApp, code: &str, provider_id: &str) -> pb::Course {
    courses(app)
        .create_course(app.admin(new_course(code, provider_id)))
        .await
        .expect("create course")
        .into_inner()
}

fn new_course(code: &str, provider_id: &str) -> pb::CreateCourseRequest {
    pb::CreateCourseRequest {
        course: Some(pb::Course {
            code: code.to_owned(),
            title: format!("Course {code}"),
            description: "Part of the Future-Fit programme".to_owned(),
            provider_organization_id: provider_id.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn get_course(app: &TestApp, id: &str) -> pb::Course {
    courses(app)
        .get_course(app.admin(pb::GetCourseRequest { id: id.to_owned() }))
        .await
        .expect("get course")
        .into_inner()
}

async fn create_version(app: &TestApp, course_id: &str, copy_from: &str) -> pb::CourseVersion {
    courses(app)
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: course_id.to_owned(),
            copy_from_version_id: copy_from.to_owned(),
            request_id: String::new(),
        }))
        .await
        .expect("create course version")
        .into_inner()
}

async fn get_version(app: &TestApp, id: &str) -> pb::CourseVersion {
    courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest { id: id.to_owned() }))
        .await
        .expect("get course version")
        .into_inner()
}

fn new_module(version_id: &str, title: &str, prerequisites: &[&str]) -> pb::CreateModuleRequest {
    pb::CreateModuleRequest {
        course_version_id: version_id.to_owned(),
        module: Some(pb::Module {
            title: title.to_owned(),
            required: true,
            prerequisite_module_ids: prerequisites.iter().map(|id| (*id).to_owned()).collect(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn create_module(
    app: &TestApp,
    version_id: &str,
    title: &str,
    prerequisites: &[&str],
) -> pb::Module {
    courses(app)
        .create_module(app.admin(new_module(version_id, title, prerequisites)))
        .await
        .expect("create module")
        .into_inner()
}

/// Returns a valid activity of `kind`: assessments pass at 50, visits and attachments are hosted by `host_id`.
fn activity_of(kind: ActivityKind, delivery_mode: DeliveryMode, host_id: &str) -> pb::Activity {
    let hosted = matches!(
        kind,
        ActivityKind::FieldVisit | ActivityKind::IndustryAttachment
    );
    pb::Activity {
        title: format!("{} activity", kind.as_str_name()),
        kind: kind.into(),
        required: true,
        delivery_mode: delivery_mode.into(),
        expected_minutes: 90,
        pass_score: (kind == ActivityKind::Assessment).then_some(50),
        host_organization_id: if hosted {
            host_id.to_owned()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn new_activity(module_id: &str, activity: pb::Activity) -> pb::CreateActivityRequest {
    pb::CreateActivityRequest {
        module_id: module_id.to_owned(),
        activity: Some(activity),
        request_id: String::new(),
    }
}

async fn create_activity(
    app: &TestApp,
    module_id: &str,
    kind: ActivityKind,
    delivery_mode: DeliveryMode,
    host_id: &str,
) -> pb::Activity {
    courses(app)
        .create_activity(app.admin(new_activity(
            module_id,
            activity_of(kind, delivery_mode, host_id),
        )))
        .await
        .expect("create activity")
        .into_inner()
}

async fn publish(app: &TestApp, version_id: &str, etag: &str) -> Result<pb::CourseVersion, Status> {
    courses(app)
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: version_id.to_owned(),
            etag: etag.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn provider(app: &TestApp) -> pb::Organization {
    app.create_organization(
        "Institute of Future Skills",
        OrganizationKind::TrainingCentre,
        None,
        None,
    )
    .await
}

fn assert_failed_precondition(status: &Status, reason: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(status), reason, "{status:?}");
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

async fn audit_entries_of(app: &TestApp, resource_type: &str) -> Vec<pb::AuditEntry> {
    app.audit
        .clone()
        .list_audit_entries(app.admin(pb::ListAuditEntriesRequest {
            page_size: 1000,
            resource_type: resource_type.to_owned(),
            ..Default::default()
        }))
        .await
        .expect("list audit entries")
        .into_inner()
        .entries
}

#[tokio::test]
async fn a_course_goes_from_draft_to_published_with_every_future_fit_activity_kind() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let factory = app
        .create_organization(
            "Smart Factory Sdn Bhd",
            OrganizationKind::Company,
            None,
            None,
        )
        .await;
    let mut client = courses(&app);

    let course = create_course(&app, "FF-AI-101", &institute.id).await;
    assert_eq!(course.state(), CourseState::Draft);
    assert_eq!(
        (course.latest_version, course.latest_version_id.as_str()),
        (0, "")
    );
    assert_eq!(course.etag, "\"1\"");

    let draft = create_version(&app, &course.id, "").await;
    assert_eq!(
        (draft.version, draft.state()),
        (1, CourseVersionState::Draft)
    );
    assert!(draft.modules.is_empty() && draft.publish_time.is_none());

    let foundations = create_module(&app, &draft.id, "AI foundations", &[]).await;
    let practice = create_module(&app, &draft.id, "AI in practice", &[&foundations.id]).await;
    let attachment = create_module(&app, &draft.id, "Industry attachment", &[&practice.id]).await;
    assert_eq!(
        [foundations.position, practice.position, attachment.position],
        [1, 2, 3]
    );
    for (module, kind, delivery_mode) in [
        (&foundations, ActivityKind::Lecture, DeliveryMode::Online),
        (&foundations, ActivityKind::Lab, DeliveryMode::InPerson),
        (
            &foundations,
            ActivityKind::Simulation,
            DeliveryMode::Blended,
        ),
        (&practice, ActivityKind::CaseStudy, DeliveryMode::Online),
        (&practice, ActivityKind::Workshop, DeliveryMode::InPerson),
        (&practice, ActivityKind::FieldVisit, DeliveryMode::InPerson),
        (
            &attachment,
            ActivityKind::IndustryAttachment,
            DeliveryMode::InPerson,
        ),
        (&attachment, ActivityKind::Assessment, DeliveryMode::Online),
    ] {
        let activity = create_activity(&app, &module.id, kind, delivery_mode, &factory.id).await;
        assert_eq!(activity.kind(), kind);
        assert_eq!(
            activity.requires_sign_off,
            matches!(
                kind,
                ActivityKind::FieldVisit | ActivityKind::IndustryAttachment
            )
        );
    }

    let read = get_version(&app, &draft.id).await;
    let titles: Vec<&str> = read
        .modules
        .iter()
        .map(|module| module.title.as_str())
        .collect();
    assert_eq!(
        titles,
        ["AI foundations", "AI in practice", "Industry attachment"]
    );
    let kinds: Vec<Vec<ActivityKind>> = read
        .modules
        .iter()
        .map(|module| module.activities.iter().map(pb::Activity::kind).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec![
                ActivityKind::Lecture,
                ActivityKind::Lab,
                ActivityKind::Simulation
            ],
            vec![
                ActivityKind::CaseStudy,
                ActivityKind::Workshop,
                ActivityKind::FieldVisit
            ],
            vec![ActivityKind::IndustryAttachment, ActivityKind::Assessment],
        ]
    );
    let positions: Vec<i32> = read.modules[1]
        .activities
        .iter()
        .map(|activity| activity.position)
        .collect();
    assert_eq!(positions, [1, 2, 3]);
    assert_eq!(
        read.modules[1].activities[2].host_organization_id,
        factory.id
    );
    assert_eq!(
        read.modules[2].prerequisite_module_ids,
        std::slice::from_ref(&practice.id)
    );

    let published = publish(&app, &draft.id, &read.etag).await.unwrap();
    assert_eq!(published.state(), CourseVersionState::Published);
    assert!(published.publish_time.is_some());
    assert_ne!(published.etag, read.etag);
    let rule = published.completion_rule.clone().expect("completion rule");
    assert_eq!(rule.modules.len(), 3);
    assert_eq!(rule.modules[0].module_id, foundations.id);
    assert_eq!(
        rule.modules[2].prerequisite_module_ids,
        std::slice::from_ref(&practice.id)
    );
    let last = &rule.modules[2].activities;
    assert_eq!(
        (
            last[0].kind(),
            last[0].requires_sign_off,
            last[0].pass_score
        ),
        (ActivityKind::IndustryAttachment, true, None)
    );
    assert_eq!(
        (
            last[1].kind(),
            last[1].requires_sign_off,
            last[1].pass_score
        ),
        (ActivityKind::Assessment, false, Some(50))
    );
    assert_eq!(get_version(&app, &draft.id).await, published);

    let course_now = get_course(&app, &course.id).await;
    assert_eq!(course_now.state(), CourseState::Published);
    assert_eq!(course_now.latest_version, 1);
    assert_eq!(course_now.latest_version_id, draft.id);

    let listed = client
        .list_course_versions(app.admin(pb::ListCourseVersionsRequest {
            course_id: course.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.course_versions.len(), 1);
    assert!(listed.course_versions[0].modules.is_empty());

    assert_eq!(audit_entries_of(&app, "course").await.len(), 2);
    assert_eq!(audit_entries_of(&app, "course_version").await.len(), 2);
    assert_eq!(audit_entries_of(&app, "module").await.len(), 3);
    assert_eq!(audit_entries_of(&app, "activity").await.len(), 8);
}

#[tokio::test]
async fn publishing_refuses_an_invalid_version_and_names_each_problem() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-DATA-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;

    let status = publish(&app, &draft.id, "").await.unwrap_err();
    assert_failed_precondition(&status, "VERSION_INVALID");
    assert!(
        status.message().contains("no modules"),
        "{}",
        status.message()
    );

    let mut client = courses(&app);
    let mut optional = new_module(&draft.id, "Optional reading", &[]);
    optional.module.as_mut().unwrap().required = false;
    client.create_module(app.admin(optional)).await.unwrap();
    let before = app.audit_length().await;

    let status = publish(&app, &draft.id, "").await.unwrap_err();
    assert_failed_precondition(&status, "VERSION_INVALID");
    for problem in [
        "module 1 \"Optional reading\" has no activities",
        "no module is required",
    ] {
        assert!(status.message().contains(problem), "{}", status.message());
    }
    let failure = status
        .get_error_details()
        .precondition_failure()
        .cloned()
        .unwrap();
    assert_eq!(failure.violations[0].r#type, "VERSION_INVALID");
    assert_eq!(
        failure.violations[0].subject,
        format!("course_version/{}", draft.id)
    );

    let unchanged = get_version(&app, &draft.id).await;
    assert_eq!(unchanged.state(), CourseVersionState::Draft);
    assert!(unchanged.completion_rule.is_none());
    assert_eq!(
        get_course(&app, &course.id).await.state(),
        CourseState::Draft
    );
    assert_eq!(app.audit_length().await, before);
}

#[tokio::test]
async fn a_published_version_refuses_every_edit_and_nothing_changes() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let (_course, published) = publish_course(
        &app,
        "FF-CLOUD-101",
        &institute.id,
        &[
            (
                "Cloud basics",
                &[
                    (ActivityKind::Lecture, DeliveryMode::Online),
                    (ActivityKind::Lab, DeliveryMode::Online),
                ],
            ),
            (
                "Site visit",
                &[(ActivityKind::FieldVisit, DeliveryMode::InPerson)],
            ),
        ],
    )
    .await;
    let first = published.modules[0].clone();
    let second = published.modules[1].clone();
    let lecture = first.activities[0].clone();
    let lab = first.activities[1].clone();
    let before = app.audit_length().await;
    let mut client = courses(&app);

    let refusals: Vec<(&str, Status)> = vec![
        (
            "create module",
            client
                .create_module(app.admin(new_module(&published.id, "Extra", &[])))
                .await
                .unwrap_err(),
        ),
        (
            "update module",
            client
                .update_module(app.admin(pb::UpdateModuleRequest {
                    module: Some(pb::Module {
                        id: first.id.clone(),
                        title: "Renamed".to_owned(),
                        etag: first.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["title"]),
                }))
                .await
                .unwrap_err(),
        ),
        (
            "delete module",
            client
                .delete_module(app.admin(pb::DeleteModuleRequest {
                    id: second.id.clone(),
                    etag: String::new(),
                }))
                .await
                .unwrap_err(),
        ),
        (
            "reorder modules",
            client
                .reorder_modules(app.admin(pb::ReorderModulesRequest {
                    course_version_id: published.id.clone(),
                    module_ids: vec![second.id.clone(), first.id.clone()],
                }))
                .await
                .unwrap_err(),
        ),
        (
            "create activity",
            client
                .create_activity(app.admin(new_activity(
                    &first.id,
                    activity_of(ActivityKind::Workshop, DeliveryMode::InPerson, ""),
                )))
                .await
                .unwrap_err(),
        ),
        (
            "update activity",
            client
                .update_activity(app.admin(pb::UpdateActivityRequest {
                    activity: Some(pb::Activity {
                        id: lecture.id.clone(),
                        expected_minutes: 5,
                        ..Default::default()
                    }),
                    update_mask: mask(&["expected_minutes"]),
                }))
                .await
                .unwrap_err(),
        ),
        (
            "delete activity",
            client
                .delete_activity(app.admin(pb::DeleteActivityRequest {
                    id: lab.id.clone(),
                    etag: lab.etag.clone(),
                }))
                .await
                .unwrap_err(),
        ),
        (
            "reorder activities",
            client
                .reorder_activities(app.admin(pb::ReorderActivitiesRequest {
                    module_id: first.id.clone(),
                    activity_ids: vec![lab.id.clone(), lecture.id.clone()],
                }))
                .await
                .unwrap_err(),
        ),
        (
            "publish again",
            publish(&app, &published.id, "").await.unwrap_err(),
        ),
    ];
    for (edit, status) in &refusals {
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{edit}: {status:?}"
        );
        assert_eq!(error_reason(status), "VERSION_PUBLISHED", "{edit}");
    }
    assert_eq!(get_version(&app, &published.id).await, published);
    assert_eq!(app.audit_length().await, before);
}

#[tokio::test]
async fn a_draft_copied_from_a_published_version_is_editable_and_independent() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-CYBER-101", &institute.id).await;
    let first_draft = create_version(&app, &course.id, "").await;
    let basics = create_module(&app, &first_draft.id, "Threats", &[]).await;
    let defence = create_module(&app, &first_draft.id, "Defence", &[&basics.id]).await;
    for module in [&basics, &defence] {
        create_activity(
            &app,
            &module.id,
            ActivityKind::Lecture,
            DeliveryMode::Online,
            "",
        )
        .await;
        create_activity(
            &app,
            &module.id,
            ActivityKind::Simulation,
            DeliveryMode::Online,
            "",
        )
        .await;
    }

    // A draft cannot be copied, and a course has one draft at a time.
    let mut client = courses(&app);
    let copy_request = |copy_from: &str| pb::CreateCourseVersionRequest {
        course_id: course.id.clone(),
        copy_from_version_id: copy_from.to_owned(),
        request_id: String::new(),
    };
    let status = client
        .create_course_version(app.admin(copy_request("")))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "DRAFT_EXISTS");
    let v1 = publish(&app, &first_draft.id, "").await.unwrap();

    let status = client
        .create_course_version(app.admin(copy_request(&uuid::Uuid::now_v7().to_string())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "COURSE_VERSION_NOT_FOUND");

    let v2 = create_version(&app, &course.id, &v1.id).await;
    assert_eq!((v2.version, v2.state()), (2, CourseVersionState::Draft));
    assert_eq!(v2.copied_from_version_id, v1.id);
    assert!(v2.completion_rule.is_none());
    assert_eq!(v2.modules.len(), 2);
    for (copy, original) in v2.modules.iter().zip(&v1.modules) {
        assert_ne!(copy.id, original.id);
        assert_eq!(copy.course_version_id, v2.id);
        assert_eq!(
            (&copy.title, copy.position),
            (&original.title, original.position)
        );
        assert_eq!(copy.activities.len(), original.activities.len());
        for (copied_activity, original_activity) in copy.activities.iter().zip(&original.activities)
        {
            assert_ne!(copied_activity.id, original_activity.id);
            assert_eq!(copied_activity.module_id, copy.id);
            assert_eq!(copied_activity.kind, original_activity.kind);
        }
    }
    assert_eq!(
        v2.modules[1].prerequisite_module_ids,
        [v2.modules[0].id.clone()],
        "prerequisites point at the copies"
    );
    assert_eq!(get_version(&app, &v2.id).await, v2);

    let status = client
        .create_course_version(app.admin(copy_request(&v2.id)))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "DRAFT_EXISTS");

    // Edit the copy: rename a module, drop an activity, add a module.
    client
        .update_module(app.admin(pb::UpdateModuleRequest {
            module: Some(pb::Module {
                id: v2.modules[0].id.clone(),
                title: "Threats and risks".to_owned(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap();
    client
        .delete_activity(app.admin(pb::DeleteActivityRequest {
            id: v2.modules[1].activities[0].id.clone(),
            etag: v2.modules[1].activities[0].etag.clone(),
        }))
        .await
        .unwrap();
    let capstone = create_module(&app, &v2.id, "Capstone", &[&v2.modules[1].id]).await;
    create_activity(
        &app,
        &capstone.id,
        ActivityKind::Assessment,
        DeliveryMode::Online,
        "",
    )
    .await;

    assert_eq!(
        get_version(&app, &v1.id).await,
        v1,
        "the published version is untouched"
    );
    let v2_published = publish(&app, &v2.id, "").await.unwrap();
    assert_eq!(v2_published.modules[0].title, "Threats and risks");
    assert_eq!(v2_published.modules[1].activities.len(), 1);
    assert_eq!(v2_published.modules[1].activities[0].position, 1);
    assert_eq!(v2_published.modules.len(), 3);
    let course_now = get_course(&app, &course.id).await;
    assert_eq!(
        (course_now.latest_version, course_now.latest_version_id),
        (2, v2.id.clone())
    );

    // A version of another course cannot be copied.
    let other = create_course(&app, "FF-OTHER", &institute.id).await;
    let status = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: other.id.clone(),
            copy_from_version_id: v1.id.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "VERSION_OF_ANOTHER_COURSE");
}

#[tokio::test]
async fn reorders_must_list_every_item_exactly_once_and_deletes_renumber() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-IOT-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;
    let a = create_module(&app, &draft.id, "A", &[]).await;
    let b = create_module(&app, &draft.id, "B", &[&a.id]).await;
    let c = create_module(&app, &draft.id, "C", &[&a.id, &b.id]).await;
    let mut client = courses(&app);
    let before = app.audit_length().await;

    let unknown = uuid::Uuid::now_v7().to_string();
    for module_ids in [
        vec![a.id.clone(), b.id.clone()],
        vec![a.id.clone(), b.id.clone(), b.id.clone()],
        vec![a.id.clone(), b.id.clone(), c.id.clone(), unknown],
        vec![],
    ] {
        let status = client
            .reorder_modules(app.admin(pb::ReorderModulesRequest {
                course_version_id: draft.id.clone(),
                module_ids: module_ids.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{module_ids:?}");
        assert!(
            violated_fields(&status)
                .iter()
                .all(|field| field == "module_ids"),
            "{status:?}"
        );
    }
    assert_eq!(
        app.audit_length().await,
        before,
        "refused reorders write nothing"
    );

    let reordered = client
        .reorder_modules(app.admin(pb::ReorderModulesRequest {
            course_version_id: draft.id.clone(),
            module_ids: vec![c.id.clone(), a.id.clone(), b.id.clone()],
        }))
        .await
        .unwrap()
        .into_inner();
    let order: Vec<(&str, i32)> = reordered
        .modules
        .iter()
        .map(|module| (module.title.as_str(), module.position))
        .collect();
    assert_eq!(order, [("C", 1), ("A", 2), ("B", 3)]);
    assert_ne!(
        reordered.etag, draft.etag,
        "the version's etag covers its modules"
    );

    client
        .delete_module(app.admin(pb::DeleteModuleRequest {
            id: a.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let after_delete = get_version(&app, &draft.id).await;
    let order: Vec<(&str, i32)> = after_delete
        .modules
        .iter()
        .map(|module| (module.title.as_str(), module.position))
        .collect();
    assert_eq!(order, [("C", 1), ("B", 2)]);
    assert_eq!(
        after_delete.modules[0].prerequisite_module_ids,
        std::slice::from_ref(&b.id)
    );
    assert!(after_delete.modules[1].prerequisite_module_ids.is_empty());

    // Activities follow the same rules within their module.
    let lecture =
        create_activity(&app, &b.id, ActivityKind::Lecture, DeliveryMode::Online, "").await;
    let lab = create_activity(&app, &b.id, ActivityKind::Lab, DeliveryMode::InPerson, "").await;
    let status = client
        .reorder_activities(app.admin(pb::ReorderActivitiesRequest {
            module_id: b.id.clone(),
            activity_ids: vec![lab.id.clone()],
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["activity_ids"]);
    let module = client
        .reorder_activities(app.admin(pb::ReorderActivitiesRequest {
            module_id: b.id.clone(),
            activity_ids: vec![lab.id.clone(), lecture.id.clone()],
        }))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<(&str, i32)> = module
        .activities
        .iter()
        .map(|activity| (activity.id.as_str(), activity.position))
        .collect();
    assert_eq!(ids, [(lab.id.as_str(), 1), (lecture.id.as_str(), 2)]);
}

#[tokio::test]
async fn prerequisites_stay_inside_the_version_and_acyclic() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-5G-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;
    let a = create_module(&app, &draft.id, "Radio", &[]).await;
    let b = create_module(&app, &draft.id, "Core", &[&a.id]).await;
    let c = create_module(&app, &draft.id, "Edge", &[&b.id]).await;
    let mut client = courses(&app);
    let before = app.audit_length().await;

    let set_prerequisites = |module: &pb::Module, prerequisites: &[&str]| pb::UpdateModuleRequest {
        module: Some(pb::Module {
            id: module.id.clone(),
            prerequisite_module_ids: prerequisites.iter().map(|id| (*id).to_owned()).collect(),
            ..Default::default()
        }),
        update_mask: mask(&["prerequisite_module_ids"]),
    };
    let status = client
        .update_module(app.admin(set_prerequisites(&a, &[&c.id])))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "PREREQUISITE_CYCLE");
    assert!(
        status.message().contains("\"Radio\""),
        "{}",
        status.message()
    );

    let other_course = create_course(&app, "FF-OTHER", &institute.id).await;
    let other_draft = create_version(&app, &other_course.id, "").await;
    let foreign = create_module(&app, &other_draft.id, "Foreign", &[]).await;
    let before_refusals = app.audit_length().await;
    for prerequisites in [
        vec![a.id.as_str()],
        vec![foreign.id.as_str()],
        vec!["not-a-uuid"],
    ] {
        let status = client
            .update_module(app.admin(set_prerequisites(&a, &prerequisites)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{prerequisites:?}");
        assert_eq!(violated_fields(&status), ["module.prerequisite_module_ids"]);
    }
    let status = client
        .create_module(app.admin(new_module(&draft.id, "Elsewhere", &[&foreign.id])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["module.prerequisite_module_ids"]);
    assert_eq!(app.audit_length().await, before_refusals);
    assert!(before_refusals > before);

    // Clearing needs the field in the mask (an empty mask ignores empty lists).
    let cleared = client
        .update_module(app.admin(set_prerequisites(&c, &[])))
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.prerequisite_module_ids.is_empty());
    let rewired = client
        .update_module(app.admin(set_prerequisites(&a, &[&c.id])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rewired.prerequisite_module_ids, std::slice::from_ref(&c.id));
    assert_ne!(rewired.etag, a.etag);
}

#[tokio::test]
async fn pass_scores_and_host_organizations_follow_the_activity_kind() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-ROBOT-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;
    let module = create_module(&app, &draft.id, "Robotics", &[]).await;
    let mut client = courses(&app);
    let before = app.audit_length().await;

    let with = |kind: ActivityKind, pass_score: Option<i32>, host: &str| {
        let mut activity = activity_of(kind, DeliveryMode::InPerson, host);
        activity.pass_score = pass_score;
        activity.host_organization_id = host.to_owned();
        new_activity(&module.id, activity)
    };
    let cases = [
        (
            with(ActivityKind::Assessment, None, ""),
            "activity.pass_score",
        ),
        (
            with(ActivityKind::Assessment, Some(101), ""),
            "activity.pass_score",
        ),
        (
            with(ActivityKind::Assessment, Some(-5), ""),
            "activity.pass_score",
        ),
        (
            with(ActivityKind::Lecture, Some(50), ""),
            "activity.pass_score",
        ),
        (
            with(ActivityKind::FieldVisit, None, ""),
            "activity.host_organization_id",
        ),
        (
            with(ActivityKind::IndustryAttachment, None, ""),
            "activity.host_organization_id",
        ),
        (
            with(ActivityKind::Lab, None, &institute.id),
            "activity.host_organization_id",
        ),
        (with(ActivityKind::Unspecified, None, ""), "activity.kind"),
    ];
    for (request, field) in cases {
        let status = client
            .create_activity(app.admin(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), [field]);
    }
    let mut no_delivery = with(ActivityKind::Lecture, None, "");
    no_delivery.activity.as_mut().unwrap().delivery_mode = 0;
    no_delivery.activity.as_mut().unwrap().expected_minutes = 525_601;
    let status = client
        .create_activity(app.admin(no_delivery))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["activity.delivery_mode", "activity.expected_minutes"]
    );
    let unknown_host = uuid::Uuid::now_v7().to_string();
    let status = client
        .create_activity(app.admin(with(ActivityKind::FieldVisit, None, &unknown_host)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "ORGANIZATION_NOT_FOUND");
    assert_eq!(
        app.audit_length().await,
        before,
        "refused creates write nothing"
    );

    let quiz = client
        .create_activity(app.admin(with(ActivityKind::Assessment, Some(0), "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quiz.pass_score, Some(0));
    assert!(!quiz.requires_sign_off);

    // Turning the assessment into a lecture needs its pass score cleared in the same update.
    let to_lecture = |paths: &[&str]| pb::UpdateActivityRequest {
        activity: Some(pb::Activity {
            id: quiz.id.clone(),
            kind: ActivityKind::Lecture.into(),
            etag: quiz.etag.clone(),
            ..Default::default()
        }),
        update_mask: mask(paths),
    };
    let status = client
        .update_activity(app.admin(to_lecture(&["kind"])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["activity.pass_score"]);
    let lecture = client
        .update_activity(app.admin(to_lecture(&["kind", "pass_score"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (lecture.kind(), lecture.pass_score),
        (ActivityKind::Lecture, None)
    );
    let status = client
        .update_activity(app.admin(to_lecture(&["kind", "pass_score"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "the etag is stale now");
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");
}

#[tokio::test]
async fn a_learner_cannot_manage_the_catalogue_nor_see_drafts() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let (course, published) = publish_course(
        &app,
        "FF-BLOCK-101",
        &institute.id,
        &[("Ledgers", &[(ActivityKind::Lecture, DeliveryMode::Online)])],
    )
    .await;
    let draft = create_version(&app, &course.id, &published.id).await;
    let learner = app.token("learner-1", &[Role::Learner], None);
    let manager = app.token("manager-1", &[Role::ProgrammeManager], None);
    let mut client = courses(&app);

    let status = client
        .create_course(with_token(new_course("FF-NOPE", &institute.id), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client
        .create_module(with_token(new_module(&draft.id, "Sneaky", &[]), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let read = client
        .get_course(with_token(
            pb::GetCourseRequest {
                id: course.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, course);
    let seen = client
        .get_course_version(with_token(
            pb::GetCourseVersionRequest {
                id: published.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen, published);
    let status = client
        .get_course_version(with_token(
            pb::GetCourseVersionRequest {
                id: draft.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "COURSE_VERSION_NOT_FOUND");

    let list = |token: &str, state: CourseVersionState| {
        with_token(
            pb::ListCourseVersionsRequest {
                course_id: course.id.clone(),
                state: state.into(),
                ..Default::default()
            },
            token,
        )
    };
    let versions = |response: pb::ListCourseVersionsResponse| -> Vec<i32> {
        response
            .course_versions
            .iter()
            .map(|version| version.version)
            .collect()
    };
    let learner_view = client
        .list_course_versions(list(&learner, CourseVersionState::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions(learner_view), [1]);
    let learner_drafts = client
        .list_course_versions(list(&learner, CourseVersionState::Draft))
        .await
        .unwrap()
        .into_inner();
    assert!(learner_drafts.course_versions.is_empty());
    let manager_view = client
        .list_course_versions(list(&manager, CourseVersionState::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions(manager_view), [2, 1], "newest first");
    client
        .get_course_version(with_token(
            pb::GetCourseVersionRequest {
                id: draft.id.clone(),
            },
            &manager,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_create_course_returns_the_first_course() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let before = app.audit_length().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut request = new_course("FF-QC-101", &institute.id);
    request.request_id = request_id.clone();

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = courses(&app);
        let request = app.admin(request.clone());
        tasks.push(tokio::spawn(
            async move { client.create_course(request).await },
        ));
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
    assert_eq!(ids.len(), 1, "all retries answer the same course");
    assert_eq!(app.audit_length().await, before + 1);

    let mut client = courses(&app);
    let mut different = new_course("FF-QC-102", &institute.id);
    different.request_id = request_id;
    let status = client
        .create_course(app.admin(different))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["request_id"]);

    let status = client
        .create_course(app.admin(new_course("FF-QC-101", &institute.id)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(error_reason(&status), "COURSE_ALREADY_EXISTS");
    assert_eq!(app.audit_length().await, before + 1);
}

#[tokio::test]
async fn retried_creates_of_versions_modules_and_activities_return_the_first() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-AR-101", &institute.id).await;
    let mut client = courses(&app);

    let version_request = pb::CreateCourseVersionRequest {
        course_id: course.id.clone(),
        copy_from_version_id: String::new(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let version = client
        .create_course_version(app.admin(version_request.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut module_request = new_module(&version.id, "Augmented reality", &[]);
    module_request.request_id = uuid::Uuid::new_v4().to_string();
    let module = client
        .create_module(app.admin(module_request.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut activity_request = new_activity(
        &module.id,
        activity_of(ActivityKind::Workshop, DeliveryMode::Blended, ""),
    );
    activity_request.request_id = uuid::Uuid::new_v4().to_string();
    let activity = client
        .create_activity(app.admin(activity_request.clone()))
        .await
        .unwrap()
        .into_inner();
    let length = app.audit_length().await;

    // Replays answer the resource as it is now.
    let version_again = client
        .create_course_version(app.admin(version_request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version_again.id, version.id);
    assert_eq!(version_again.modules.len(), 1);
    let module_again = client
        .create_module(app.admin(module_request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(module_again.id, module.id);
    assert_eq!(module_again.activities, std::slice::from_ref(&activity));
    let activity_again = client
        .create_activity(app.admin(activity_request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(activity_again, activity);
    assert_eq!(app.audit_length().await, length);
    assert_eq!(get_version(&app, &version.id).await.modules.len(), 1);
}

#[tokio::test]
async fn concurrent_version_creation_never_duplicates_version_numbers() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let (course, mut latest) = publish_course(
        &app,
        "FF-EV-101",
        &institute.id,
        &[("Batteries", &[(ActivityKind::Lab, DeliveryMode::InPerson)])],
    )
    .await;
    for round in 0..4 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut client = courses(&app);
            let request = app.admin(pb::CreateCourseVersionRequest {
                course_id: course.id.clone(),
                copy_from_version_id: latest.id.clone(),
                request_id: String::new(),
            });
            tasks.push(tokio::spawn(async move {
                client.create_course_version(request).await
            }));
        }
        let mut created = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(version) => created.push(version.into_inner()),
                Err(status) => assert_failed_precondition(&status, "DRAFT_EXISTS"),
            }
        }
        assert_eq!(created.len(), 1, "round {round}: exactly one draft");
        assert_eq!(created[0].version, round + 2);
        latest = publish(&app, &created[0].id, "").await.unwrap();
    }
    let listed = courses(&app)
        .list_course_versions(app.admin(pb::ListCourseVersionsRequest {
            course_id: course.id.clone(),
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let numbers: Vec<i32> = listed.course_versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [5, 4]);
    let rest = courses(&app)
        .list_course_versions(app.admin(pb::ListCourseVersionsRequest {
            course_id: course.id.clone(),
            page_size: 10,
            page_token: listed.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let numbers: Vec<i32> = rest.course_versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(rest.next_page_token.is_empty());
    assert_eq!(get_course(&app, &course.id).await.latest_version, 5);
}

#[tokio::test]
async fn courses_are_listed_by_state_provider_and_query_page_by_page() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let university = app
        .create_organization(
            "National University",
            OrganizationKind::University,
            None,
            None,
        )
        .await;
    let mut created = Vec::new();
    for (code, provider_id) in [
        ("AIW-201", &institute.id),
        ("DATA_101", &institute.id),
        ("DATAX101", &university.id),
        ("cyber.1", &university.id),
        ("aiw-301", &university.id),
    ] {
        created.push(create_course(&app, code, provider_id).await);
    }
    publish_course(
        &app,
        "PUB-1",
        &institute.id,
        &[("Only", &[(ActivityKind::Lecture, DeliveryMode::Online)])],
    )
    .await;
    let mut client = courses(&app);
    let list = |request: pb::ListCoursesRequest| {
        let mut client = client.clone();
        let request = app.admin(request);
        async move {
            let response = client.list_courses(request).await.unwrap().into_inner();
            response
                .courses
                .into_iter()
                .map(|course| course.code)
                .collect::<Vec<_>>()
        }
    };
    let query = |text: &str| pb::ListCoursesRequest {
        query: text.to_owned(),
        ..Default::default()
    };
    assert_eq!(list(query("AiW")).await, ["AIW-201", "aiw-301"]);
    assert_eq!(
        list(query("data_")).await,
        ["DATA_101"],
        "_ is not a wildcard"
    );
    assert_eq!(
        list(query("course cyber")).await,
        ["cyber.1"],
        "titles match too"
    );
    assert_eq!(
        list(pb::ListCoursesRequest {
            provider_organization_id: university.id.clone(),
            ..Default::default()
        })
        .await,
        ["DATAX101", "cyber.1", "aiw-301"]
    );
    assert_eq!(
        list(pb::ListCoursesRequest {
            state: CourseState::Published.into(),
            ..Default::default()
        })
        .await,
        ["PUB-1"]
    );

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_courses(app.admin(pb::ListCoursesRequest {
                page_size: 2,
                page_token: page_token.clone(),
                state: CourseState::Draft.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.courses.len() <= 2);
        seen.extend(page.courses.into_iter().map(|course| course.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let created_ids: Vec<String> = created.into_iter().map(|course| course.id).collect();
    assert_eq!(seen, created_ids);

    for (request, field) in [
        (
            pb::ListCoursesRequest {
                state: 42,
                ..Default::default()
            },
            "state",
        ),
        (
            pb::ListCoursesRequest {
                provider_organization_id: "nope".to_owned(),
                ..Default::default()
            },
            "provider_organization_id",
        ),
        (
            pb::ListCoursesRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
    ] {
        let status = client.list_courses(app.admin(request)).await.unwrap_err();
        assert_eq!(violated_fields(&status), [field]);
    }
}

#[tokio::test]
async fn invalid_courses_name_their_fields_and_write_nothing() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let before = app.audit_length().await;
    let mut client = courses(&app);

    let status = client
        .create_course(app.admin(pb::CreateCourseRequest {
            course: Some(pb::Course {
                code: "has spaces".to_owned(),
                title: " ".to_owned(),
                provider_organization_id: "x".to_owned(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "course.code",
            "course.title",
            "course.provider_organization_id"
        ]
    );
    let status = client
        .create_course(app.admin(new_course("FF-X", &uuid::Uuid::now_v7().to_string())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "ORGANIZATION_NOT_FOUND");
    let status = client
        .create_module(app.admin(new_module(&uuid::Uuid::now_v7().to_string(), "M", &[])))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "COURSE_VERSION_NOT_FOUND");
    let status = client
        .create_module(app.admin(new_module(&institute.id, "", &[])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["module.title"]);

    let listed = client
        .list_courses(app.admin(pb::ListCoursesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.courses.is_empty());
    assert_eq!(app.audit_length().await, before);
}

#[tokio::test]
async fn course_updates_check_etags_and_archived_courses_are_frozen() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let university = app
        .create_organization("University", OrganizationKind::University, None, None)
        .await;
    let course = create_course(&app, "FF-QUANT-101", &institute.id).await;
    let mut client = courses(&app);
    let update = |title: &str, etag: &str, paths: &[&str]| pb::UpdateCourseRequest {
        course: Some(pb::Course {
            id: course.id.clone(),
            title: title.to_owned(),
            provider_organization_id: university.id.clone(),
            etag: etag.to_owned(),
            ..Default::default()
        }),
        update_mask: mask(paths),
    };

    let updated = client
        .update_course(app.admin(update("Quantum computing", &course.etag, &[])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "Quantum computing");
    assert_eq!(updated.provider_organization_id, university.id);
    assert_eq!(updated.description, course.description, "empty fields stay");
    assert_eq!(updated.code, course.code);
    assert_ne!(updated.etag, course.etag);

    let status = client
        .update_course(app.admin(update("Stale", &course.etag, &["title"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");
    let status = client
        .update_course(app.admin(update("Recode", "", &["code"])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask"]);
    let mut unknown_provider = update("T", "", &["provider_organization_id"]);
    unknown_provider
        .course
        .as_mut()
        .unwrap()
        .provider_organization_id = uuid::Uuid::now_v7().to_string();
    let status = client
        .update_course(app.admin(unknown_provider))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "ORGANIZATION_NOT_FOUND");

    let archive = |etag: &str| {
        app.admin(pb::ArchiveCourseRequest {
            id: course.id.clone(),
            etag: etag.to_owned(),
        })
    };
    let status = client
        .archive_course(archive(&course.etag))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let archived = client
        .archive_course(archive(&updated.etag))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.state(), CourseState::Archived);
    let length = app.audit_length().await;
    let again = client
        .archive_course(archive(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, archived, "archiving twice changes nothing");
    assert_eq!(app.audit_length().await, length);

    let status = client
        .update_course(app.admin(update("Too late", "", &["title"])))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "COURSE_ARCHIVED");
    let status = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: course.id.clone(),
            copy_from_version_id: String::new(),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_failed_precondition(&status, "COURSE_ARCHIVED");
    assert_eq!(app.audit_length().await, length);
}

#[tokio::test]
async fn version_module_and_activity_etags_guard_against_stale_edits() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-NANO-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;
    let module = create_module(&app, &draft.id, "Materials", &[]).await;
    let activity = create_activity(
        &app,
        &module.id,
        ActivityKind::Lecture,
        DeliveryMode::Online,
        "",
    )
    .await;
    let mut client = courses(&app);

    // The draft changed since it was read: publishing what was reviewed is refused.
    let status = publish(&app, &draft.id, &draft.etag).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");

    let renamed = client
        .update_module(app.admin(pb::UpdateModuleRequest {
            module: Some(pb::Module {
                id: module.id.clone(),
                title: "Nanomaterials".to_owned(),
                etag: module.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.activities, std::slice::from_ref(&activity));
    let status = client
        .delete_module(app.admin(pb::DeleteModuleRequest {
            id: module.id.clone(),
            etag: module.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let status = client
        .delete_activity(app.admin(pb::DeleteActivityRequest {
            id: activity.id.clone(),
            etag: "\"99\"".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let status = client
        .delete_activity(app.admin(pb::DeleteActivityRequest {
            id: activity.id.clone(),
            etag: "garbage".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["etag"]);

    let current = get_version(&app, &draft.id).await;
    let published = publish(&app, &draft.id, &current.etag).await.unwrap();
    assert_eq!(published.modules[0].title, "Nanomaterials");
}

#[tokio::test]
async fn edits_racing_a_publication_land_before_it_or_are_refused() {
    let (app, _database) = spawn_app().await;
    let institute = provider(&app).await;
    let course = create_course(&app, "FF-RACE-101", &institute.id).await;
    let draft = create_version(&app, &course.id, "").await;
    let module = create_module(&app, &draft.id, "Racing", &[]).await;
    create_activity(
        &app,
        &module.id,
        ActivityKind::Lecture,
        DeliveryMode::Online,
        "",
    )
    .await;

    let mut creates = Vec::new();
    for _ in 0..12 {
        let mut client = courses(&app);
        let request = app.admin(new_activity(
            &module.id,
            activity_of(ActivityKind::Workshop, DeliveryMode::InPerson, ""),
        ));
        creates.push(tokio::spawn(async move {
            client.create_activity(request).await
        }));
    }
    let published = publish(&app, &draft.id, "").await.unwrap();
    let mut landed = Vec::new();
    for task in creates {
        match task.await.unwrap() {
            Ok(activity) => landed.push(activity.into_inner().id),
            Err(status) => assert_failed_precondition(&status, "VERSION_PUBLISHED"),
        }
    }
    let stored = get_version(&app, &draft.id).await;
    let stored_ids: Vec<String> = stored.modules[0]
        .activities
        .iter()
        .map(|activity| activity.id.clone())
        .collect();
    let rule_ids: Vec<String> = published.completion_rule.unwrap().modules[0]
        .activities
        .iter()
        .map(|rule| rule.activity_id.clone())
        .collect();
    assert_eq!(stored_ids, rule_ids, "nothing was added after publication");
    assert_eq!(stored_ids.len(), landed.len() + 1);
    assert!(landed.iter().all(|id| stored_ids.contains(id)));
}
