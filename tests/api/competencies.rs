//! CompetencyService: the framework (competencies with levels, roles requiring them), tags on
//! courses, activities and tracks, profiles derived from completions and certificates (a tag set
//! later counts, a suspended certificate stops counting), gaps against a role, and the holder
//! search HR runs over an organisation subtree, paginated and scoped.

use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, CompetencyTargetKind as Target, DeliveryMode as Mode,
    OrganizationKind, ProgressSource as Source, ProgressVerb as Verb,
    competency_service_client::CompetencyServiceClient,
};
use tonic::Code;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{
    courses, create_programme, import_people, open_cohort, phase, programmes, published_version,
};
use crate::progress::{event, progress};

pub(crate) fn competencies(app: &TestApp) -> CompetencyServiceClient<tonic::transport::Channel> {
    CompetencyServiceClient::new(app.channel.clone())
}

fn levels(names: &[&str]) -> Vec<pb::CompetencyLevel> {
    names
        .iter()
        .map(|name| pb::CompetencyLevel {
            name: (*name).to_owned(),
            ..Default::default()
        })
        .collect()
}

/// Creates a competency with the four iGOT-style levels as admin.
pub(crate) async fn create_competency(app: &TestApp, code: &str) -> pb::Competency {
    competencies(app)
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: code.to_owned(),
                name: format!("Competency {code}"),
                area: pb::CompetencyArea::Functional.into(),
                levels: levels(&["Basic", "Intermediate", "Advanced", "Expert"]),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create competency")
        .into_inner()
}

pub(crate) async fn set_tags(
    app: &TestApp,
    kind: Target,
    id: &str,
    tags: &[(&str, i32)],
) -> pb::CompetencyTags {
    competencies(app)
        .set_competency_tags(
            app.admin(pb::SetCompetencyTagsRequest {
                target: Some(pb::CompetencyTarget {
                    kind: kind.into(),
                    id: id.to_owned(),
                    level: 0,
                }),
                tags: tags
                    .iter()
                    .map(|(competency_id, level)| pb::CompetencyTag {
                        competency_id: (*competency_id).to_owned(),
                        level: *level,
                    })
                    .collect(),
            }),
        )
        .await
        .expect("set tags")
        .into_inner()
}

/// A published course (one module: a lecture and a lab, both required) and an open cohort.
pub(crate) struct Course {
    pub(crate) course_id: String,
    pub(crate) lecture: String,
    pub(crate) lab: String,
    pub(crate) cohort_id: String,
}

pub(crate) async fn course(app: &TestApp, code: &str) -> Course {
    let provider = app
        .create_organization(
            &format!("Provider {code}"),
            OrganizationKind::TrainingCentre,
            None,
            Some(&format!("PROV-{code}")),
        )
        .await;
    let version_id = published_version(
        app,
        code,
        &provider.id,
        &[(
            "Data analysis",
            &[
                (Kind::Lecture, Mode::Online, None),
                (Kind::Lab, Mode::Online, None),
            ],
        )],
    )
    .await;
    let version = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.clone(),
        }))
        .await
        .expect("version")
        .into_inner();
    let programme = create_programme(
        app,
        &format!("P-{code}"),
        &provider.id,
        &[],
        vec![phase("Only", &[&version_id], "", 5)],
    )
    .await;
    let cohort = open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Cohort".to_owned(),
            capacity: 100_000,
            ..Default::default()
        },
    )
    .await;
    Course {
        course_id: version.course_id.clone(),
        lecture: version.modules[0].activities[0].id.clone(),
        lab: version.modules[0].activities[1].id.clone(),
        cohort_id: cohort.id,
    }
}

/// Enrols `people` in the course's cohort; returns their enrolment ids in order.
pub(crate) async fn enrol(app: &TestApp, course: &Course, people: &[String]) -> Vec<String> {
    let response = programmes(app)
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: course.cohort_id.clone(),
            person_ids: people.to_vec(),
            request_id: String::new(),
        }))
        .await
        .expect("enrol")
        .into_inner();
    response
        .results
        .into_iter()
        .map(|result| result.enrollment.expect("enrolled").id)
        .collect()
}

pub(crate) async fn complete(app: &TestApp, enrollments: &[String], activity_id: &str) {
    let events = enrollments
        .iter()
        .map(|enrollment| {
            event(
                enrollment,
                activity_id,
                Verb::Completed,
                None,
                Source::App,
                5,
            )
        })
        .collect();
    let acks = progress(app)
        .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
        .await
        .expect("record progress")
        .into_inner()
        .acks;
    assert_eq!(acks.len(), enrollments.len());
}

async fn profile(
    app: &TestApp,
    token: &str,
    person_id: &str,
    role_id: &str,
) -> Result<pb::CompetencyProfile, tonic::Status> {
    competencies(app)
        .get_competency_profile(with_token(
            pb::GetCompetencyProfileRequest {
                person_id: person_id.to_owned(),
                role_id: role_id.to_owned(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn held(profile: &pb::CompetencyProfile, competency_id: &str) -> i32 {
    profile
        .competencies
        .iter()
        .find(|held| held.competency_id == competency_id)
        .map_or(0, |held| held.level)
}

async fn search(
    app: &TestApp,
    token: &str,
    request: pb::SearchCompetencyHoldersRequest,
) -> Result<pb::SearchCompetencyHoldersResponse, tonic::Status> {
    competencies(app)
        .search_competency_holders(with_token(request, token))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_framework_is_created_read_listed_and_updated() {
    let (app, _database) = spawn_app().await;
    let mut client = competencies(&app);
    let data = create_competency(&app, "FUNC-DATA").await;
    assert_eq!(data.max_level, 4);
    assert_eq!(data.levels[1].level, 2);
    assert_eq!(data.levels[1].name, "Intermediate");
    let empathy = client
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: "BEH-EMPATHY".to_owned(),
                name: "Empathy".to_owned(),
                area: pb::CompetencyArea::Behavioural.into(),
                levels: levels(&["Aware", "Practising"]),
                ..Default::default()
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
        }))
        .await
        .unwrap()
        .into_inner();

    // The code is unique; the refusal names the holder.
    let duplicate = client
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: "FUNC-DATA".to_owned(),
                name: "Again".to_owned(),
                levels: levels(&["Basic"]),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    // Bad input names every field and writes nothing.
    let before = app.audit_length().await;
    let invalid = client
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: "has space".to_owned(),
                name: String::new(),
                levels: levels(&["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields = violated_fields(&invalid);
    for field in ["competency.code", "competency.name", "competency.levels"] {
        assert!(fields.contains(&field.to_owned()), "{fields:?}");
    }
    let unnamed_level = client
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: "X".to_owned(),
                name: "X".to_owned(),
                levels: levels(&["Basic", " "]),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&unnamed_level),
        vec!["competency.levels[1].name"]
    );
    assert_eq!(app.audit_length().await, before);

    // Lists page by code and filter by area.
    let first = client
        .list_competencies(app.admin(pb::ListCompetenciesRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.competencies[0].code, "BEH-EMPATHY");
    let second = client
        .list_competencies(app.admin(pb::ListCompetenciesRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.competencies[0].code, "FUNC-DATA");
    assert!(second.next_page_token.is_empty());
    let behavioural = client
        .list_competencies(app.admin(pb::ListCompetenciesRequest {
            area: pb::CompetencyArea::Behavioural.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(behavioural.competencies.len(), 1);
    assert_eq!(behavioural.competencies[0].id, empathy.id);

    // A learner reads the framework but may not write it.
    let learner = app.token("learner-1", &[Role::Learner], None);
    let read = client
        .get_competency(with_token(
            pb::GetCompetencyRequest {
                id: data.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, data);
    let refused = client
        .create_competency(with_token(
            pb::CreateCompetencyRequest {
                competency: Some(pb::Competency {
                    code: "L".to_owned(),
                    name: "L".to_owned(),
                    levels: levels(&["Basic"]),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Updates: a renamed level, then a stale etag.
    let renamed = client
        .update_competency(app.admin(pb::UpdateCompetencyRequest {
            competency: Some(pb::Competency {
                id: data.id.clone(),
                etag: data.etag.clone(),
                levels: levels(&["Foundation", "Intermediate", "Advanced", "Expert", "Master"]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["levels".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.max_level, 5);
    assert_eq!(renamed.levels[0].name, "Foundation");
    assert_eq!(renamed.name, data.name);
    assert_ne!(renamed.etag, data.etag);
    let stale = client
        .update_competency(app.admin(pb::UpdateCompetencyRequest {
            competency: Some(pb::Competency {
                id: data.id.clone(),
                etag: data.etag.clone(),
                name: "Stale".to_owned(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let unknown_path = client
        .update_competency(app.admin(pb::UpdateCompetencyRequest {
            competency: Some(pb::Competency {
                id: data.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["colour".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown_path), vec!["update_mask"]);

    // A level in use by a role requirement cannot be removed.
    let role = client
        .create_role(app.admin(pb::CreateRoleRequest {
            role: Some(pb::Role {
                code: "SO".to_owned(),
                name: "Section Officer".to_owned(),
                requirements: vec![pb::RoleRequirement {
                    competency_id: data.id.clone(),
                    level: 5,
                    builders: Vec::new(),
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let shrink = client
        .update_competency(app.admin(pb::UpdateCompetencyRequest {
            competency: Some(pb::Competency {
                id: data.id.clone(),
                levels: levels(&["Basic", "Intermediate"]),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(shrink.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&shrink), "COMPETENCY_LEVEL_IN_USE");

    // Roles: levels checked against the competency, requirements replaced on update.
    let too_high = client
        .create_role(app.admin(pb::CreateRoleRequest {
            role: Some(pb::Role {
                code: "AO".to_owned(),
                name: "Assistant Officer".to_owned(),
                requirements: vec![pb::RoleRequirement {
                    competency_id: empathy.id.clone(),
                    level: 3,
                    builders: Vec::new(),
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&too_high),
        vec!["role.requirements[0].level"]
    );
    let updated = client
        .update_role(app.admin(pb::UpdateRoleRequest {
            role: Some(pb::Role {
                id: role.id.clone(),
                etag: role.etag.clone(),
                requirements: vec![
                    pb::RoleRequirement {
                        competency_id: empathy.id.clone(),
                        level: 2,
                        builders: Vec::new(),
                    },
                    pb::RoleRequirement {
                        competency_id: data.id.clone(),
                        level: 2,
                        builders: Vec::new(),
                    },
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["requirements".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.requirements.len(), 2);
    assert_eq!(updated.requirements[0].competency_id, empathy.id);
    assert_eq!(updated.name, "Section Officer");
    let listed = client
        .list_roles(with_token(pb::ListRolesRequest::default(), &learner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.roles.len(), 1);
    assert_eq!(listed.roles[0].requirements.len(), 2);
}

#[tokio::test]
async fn profiles_derive_from_completions_and_active_certificates() {
    let (app, _database) = spawn_app().await;
    let data = create_competency(&app, "FUNC-DATA").await;
    let ai = create_competency(&app, "DOM-GENAI").await;
    let course = course(&app, "DATA-101").await;
    let people = import_people(&app, "OFF", "PROV-DATA-101", 2, pb::Sector::Public).await;
    let enrollments = enrol(&app, &course, &people).await;

    // The lab is completed before anything is tagged: a tag set later still counts.
    complete(&app, &enrollments[..1], &course.lab).await;
    let learner = app.token(&people[0], &[Role::Learner], None);
    let empty = profile(&app, &learner, &people[0], "").await.unwrap();
    assert!(empty.competencies.is_empty());
    set_tags(&app, Target::Activity, &course.lab, &[(&ai.id, 1)]).await;
    set_tags(&app, Target::Course, &course.course_id, &[(&data.id, 2)]).await;
    let tagged = profile(&app, &learner, &people[0], "").await.unwrap();
    assert_eq!(held(&tagged, &ai.id), 1);
    assert_eq!(held(&tagged, &data.id), 0, "the course is not complete yet");
    let evidence = &tagged.competencies[0].evidence[0];
    assert_eq!(
        evidence.kind(),
        pb::CompetencyEvidenceKind::ActivityCompletion
    );
    assert_eq!(evidence.enrollment_id, enrollments[0]);
    assert_eq!(evidence.target_id, course.lab);

    // Completing the lecture completes the course: DATA at level 2 (Intermediate).
    complete(&app, &enrollments[..1], &course.lecture).await;
    let complete_profile = profile(&app, &learner, &people[0], "").await.unwrap();
    assert_eq!(held(&complete_profile, &data.id), 2);
    let data_held = complete_profile
        .competencies
        .iter()
        .find(|held| held.competency_id == data.id)
        .unwrap();
    assert_eq!(data_held.level_name, "Intermediate");
    assert_eq!(data_held.code, "FUNC-DATA");
    assert_eq!(
        data_held.evidence[0].kind(),
        pb::CompetencyEvidenceKind::CourseCompletion
    );
    assert!(!data_held.evidence[0].course_version_id.is_empty());

    // A certificate of a track tagged at level 3 raises DATA to 3 while it is ACTIVE.
    let holder = crate::certification::holder(&app).await;
    set_tags(
        &app,
        Target::CertificationTrack,
        &holder.certificate.track_id,
        &[(&data.id, 3)],
    )
    .await;
    let admin = app.admin_token();
    let certified = profile(&app, &admin, &holder.person_id, "").await.unwrap();
    assert_eq!(held(&certified, &data.id), 3);
    let certificate_evidence = &certified.competencies[0].evidence[0];
    assert_eq!(certificate_evidence.certificate_id, holder.certificate.id);
    assert!(certificate_evidence.expire_time.is_some());
    crate::certification::change(&app, &holder.certificate.id, "suspend")
        .await
        .expect("suspend");
    let suspended = profile(&app, &admin, &holder.person_id, "").await.unwrap();
    assert_eq!(
        held(&suspended, &data.id),
        0,
        "a suspended certificate stops counting"
    );
    crate::certification::change(&app, &holder.certificate.id, "reinstate")
        .await
        .expect("reinstate");
    let reinstated = profile(&app, &admin, &holder.person_id, "").await.unwrap();
    assert_eq!(held(&reinstated, &data.id), 3);

    // Gaps against a role, with what builds the missing levels (role -> activity -> competency).
    let role = competencies(&app)
        .create_role(app.admin(pb::CreateRoleRequest {
            role: Some(pb::Role {
                code: "DATA-OFFICER".to_owned(),
                name: "Data Officer".to_owned(),
                requirements: vec![
                    pb::RoleRequirement {
                        competency_id: data.id.clone(),
                        level: 3,
                        builders: Vec::new(),
                    },
                    pb::RoleRequirement {
                        competency_id: ai.id.clone(),
                        level: 1,
                        builders: Vec::new(),
                    },
                ],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(role.requirements[0].builders.len(), 1);
    assert_eq!(
        role.requirements[0].builders[0].id,
        holder.certificate.track_id
    );
    assert_eq!(role.requirements[1].builders[0].id, course.lab);
    let against = profile(&app, &learner, &people[0], &role.id).await.unwrap();
    assert_eq!(against.gaps.len(), 2);
    assert!(!against.gaps[0].met);
    assert_eq!(against.gaps[0].held_level, 2);
    assert_eq!(against.gaps[0].builders[0].id, holder.certificate.track_id);
    assert!(against.gaps[1].met);
    assert!(against.gaps[1].builders.is_empty());

    // A learner reads only their own profile.
    let other = profile(&app, &learner, &people[1], "").await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let missing = profile(&app, &learner, &uuid::Uuid::now_v7().to_string(), "")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::PermissionDenied);
    let missing_for_admin = profile(&app, &admin, &uuid::Uuid::now_v7().to_string(), "")
        .await
        .unwrap_err();
    assert_eq!(missing_for_admin.code(), Code::NotFound);

    // Tags: replaced as a whole, validated against the competency, readable by anyone.
    let replaced = set_tags(&app, Target::Activity, &course.lab, &[]).await;
    assert!(replaced.tags.is_empty());
    let after = profile(&app, &learner, &people[0], "").await.unwrap();
    assert_eq!(held(&after, &ai.id), 0);
    let bad = competencies(&app)
        .set_competency_tags(app.admin(pb::SetCompetencyTagsRequest {
            target: Some(pb::CompetencyTarget {
                kind: Target::Course.into(),
                id: course.course_id.clone(),
                level: 0,
            }),
            tags: vec![
                pb::CompetencyTag {
                    competency_id: data.id.clone(),
                    level: 9,
                },
                pb::CompetencyTag {
                    competency_id: "nope".to_owned(),
                    level: 0,
                },
            ],
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        vec!["tags[1].competency_id", "tags[1].level"]
    );
    let too_high = competencies(&app)
        .set_competency_tags(app.admin(pb::SetCompetencyTagsRequest {
            target: Some(pb::CompetencyTarget {
                kind: Target::Course.into(),
                id: course.course_id.clone(),
                level: 0,
            }),
            tags: vec![pb::CompetencyTag {
                competency_id: data.id.clone(),
                level: 5,
            }],
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_high), vec!["tags[0].level"]);
    let read = competencies(&app)
        .get_competency_tags(with_token(
            pb::GetCompetencyTagsRequest {
                target: Some(pb::CompetencyTarget {
                    kind: Target::Course.into(),
                    id: course.course_id.clone(),
                    level: 0,
                }),
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.tags.len(), 1);
    assert_eq!(read.tags[0].level, 2);
    let no_course = competencies(&app)
        .get_competency_tags(app.admin(pb::GetCompetencyTagsRequest {
            target: Some(pb::CompetencyTarget {
                kind: Target::Course.into(),
                id: uuid::Uuid::now_v7().to_string(),
                level: 0,
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_course.code(), Code::NotFound);
}

#[tokio::test]
async fn hr_finds_the_holders_of_a_competency_in_a_ministry_subtree() {
    let (app, _database) = spawn_app().await;
    let data = create_competency(&app, "FUNC-DATA").await;
    let course = course(&app, "DATA-101").await;
    set_tags(&app, Target::Course, &course.course_id, &[(&data.id, 2)]).await;
    set_tags(&app, Target::Activity, &course.lab, &[(&data.id, 1)]).await;
    let ministry_a = app
        .create_organization(
            "Ministry A",
            OrganizationKind::Ministry,
            None,
            Some("MIN-A"),
        )
        .await;
    let department_a = app
        .create_organization(
            "Department A1",
            OrganizationKind::Department,
            Some(&ministry_a.id),
            Some("DEP-A1"),
        )
        .await;
    let ministry_b = app
        .create_organization(
            "Ministry B",
            OrganizationKind::Ministry,
            None,
            Some("MIN-B"),
        )
        .await;
    let in_a = import_people(&app, "A", "MIN-A", 3, pb::Sector::Public).await;
    let in_a1 = import_people(&app, "A1", "DEP-A1", 4, pb::Sector::Public).await;
    let in_b = import_people(&app, "B", "MIN-B", 3, pb::Sector::Public).await;
    let everyone: Vec<String> = in_a.iter().chain(&in_a1).chain(&in_b).cloned().collect();
    let enrollments = enrol(&app, &course, &everyone).await;
    // Everyone does the lab (level 1); all but the last of each group the lecture too (level 2).
    complete(&app, &enrollments, &course.lab).await;
    let finishers: Vec<String> =
        [&enrollments[0..2], &enrollments[3..6], &enrollments[7..9]].concat();
    complete(&app, &finishers, &course.lecture).await;

    let hr = app.token("hr-system", &[Role::HrService], None);
    let request = |subtree: &str, level: i32, page_size: i32, page_token: String| {
        pb::SearchCompetencyHoldersRequest {
            page_size,
            page_token,
            competency_id: data.id.clone(),
            min_level: level,
            organization_subtree: subtree.to_owned(),
        }
    };
    // Ministry A's subtree (the ministry and its department), level 2 or above, 2 a page.
    let mut found = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = search(&app, &hr, request(&ministry_a.id, 2, 2, token))
            .await
            .unwrap();
        pages += 1;
        assert!(page.holders.len() <= 2);
        found.extend(page.holders);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = [&in_a[0..2], &in_a1[0..3]].concat();
    expected.sort();
    let ids: Vec<String> = found
        .iter()
        .map(|holder| holder.person_id.clone())
        .collect();
    assert_eq!(ids, expected, "sorted by person id, each once");
    assert!(found.iter().all(|holder| holder.level == 2));
    assert!(found.iter().all(|holder| !holder.external_id.is_empty()));

    // Level 1 or above: everyone of the subtree.
    let level_one = search(&app, &hr, request(&ministry_a.id, 0, 100, String::new()))
        .await
        .unwrap();
    assert_eq!(level_one.holders.len(), 7);
    let departments = search(&app, &hr, request(&department_a.id, 1, 100, String::new()))
        .await
        .unwrap();
    assert_eq!(departments.holders.len(), 4);
    // Nobody holds level 3; level 5 does not exist; a token is bound to its filters.
    let level_three = search(&app, &hr, request("", 3, 100, String::new()))
        .await
        .unwrap();
    assert!(level_three.holders.is_empty());
    let no_level = search(&app, &hr, request("", 5, 100, String::new()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_level), vec!["min_level"]);
    let first = search(&app, &hr, request(&ministry_a.id, 2, 1, String::new()))
        .await
        .unwrap();
    let mismatched = search(
        &app,
        &hr,
        request(&ministry_b.id, 2, 1, first.next_page_token),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&mismatched), vec!["page_token"]);
    let negative = search(&app, &hr, request("", -1, 10, String::new()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&negative), vec!["min_level"]);

    // An org admin of ministry B: their own subtree by default, never ministry A's.
    let admin_b = app.token("admin-b", &[Role::OrgAdmin], Some(&ministry_b.id));
    let own = search(&app, &admin_b, request("", 2, 100, String::new()))
        .await
        .unwrap();
    let own_ids: Vec<&str> = own.holders.iter().map(|h| h.person_id.as_str()).collect();
    let mut expected_b: Vec<&str> = in_b[0..2].iter().map(String::as_str).collect();
    expected_b.sort();
    assert_eq!(own_ids, expected_b);
    let other = search(
        &app,
        &admin_b,
        request(&ministry_a.id, 1, 100, String::new()),
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    // Learners and trainers do not search.
    let learner = app.token(&in_a[0], &[Role::Learner], None);
    let refused = search(&app, &learner, request("", 1, 10, String::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // An org admin reads the profiles of their subtree only.
    let b_profile = profile(&app, &admin_b, &in_b[0], "").await.unwrap();
    assert_eq!(held(&b_profile, &data.id), 2);
    let a_profile = profile(&app, &admin_b, &in_a[0], "").await.unwrap_err();
    assert_eq!(a_profile.code(), Code::PermissionDenied);
}

/// Measures the holder search at national scale (`LMS_COMPETENCY_SCALE_PEOPLE`, 50,000 by
/// default, in 20 ministries; every one completes a course tagged at level 2 whose lab is tagged
/// at level 1): prints the time of a ministry's first page, of paging through a whole ministry,
/// of a national first page and of a profile. Run with
/// `cargo test --test api competency_holders_at_scale -- --ignored --nocapture`; no timing is
/// asserted, only the counts.
#[tokio::test]
#[ignore = "a measurement: tens of thousands of people"]
async fn competency_holders_at_scale() {
    use std::time::Instant;

    let people: usize = std::env::var("LMS_COMPETENCY_SCALE_PEOPLE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(50_000);
    let ministries = 20;
    let (app, _database) = spawn_app().await;
    let data = create_competency(&app, "FUNC-DATA").await;
    let course = course(&app, "DATA-101").await;
    set_tags(&app, Target::Course, &course.course_id, &[(&data.id, 2)]).await;
    set_tags(&app, Target::Activity, &course.lab, &[(&data.id, 1)]).await;
    let setup = Instant::now();
    let mut ministry_ids = Vec::new();
    for ministry in 0..ministries {
        let code = format!("MIN-{ministry:02}");
        let organization = app
            .create_organization(
                &format!("Ministry {ministry}"),
                OrganizationKind::Ministry,
                None,
                Some(&code),
            )
            .await;
        let records: Vec<pb::PersonRecord> = (0..people / ministries)
            .map(|index| crate::helpers::person_record(&format!("{code}-{index:05}"), &code))
            .collect();
        for chunk in records.chunks(1000) {
            app.people
                .clone()
                .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
                    people: chunk.to_vec(),
                    request_id: String::new(),
                }))
                .await
                .expect("import people");
        }
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = app
                .people
                .clone()
                .list_people(app.admin(pb::ListPeopleRequest {
                    page_size: 1000,
                    page_token,
                    organization_subtree: organization.id.clone(),
                    ..Default::default()
                }))
                .await
                .expect("list people")
                .into_inner();
            ids.extend(page.people.into_iter().map(|person| person.id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        for chunk in ids.chunks(1000) {
            let enrollments = enrol(&app, &course, chunk).await;
            complete(&app, &enrollments, &course.lab).await;
            complete(&app, &enrollments, &course.lecture).await;
        }
        ministry_ids.push(organization.id);
    }
    println!(
        "setup: {people} people, {} holders, in {:?}",
        people / ministries * ministries,
        setup.elapsed()
    );
    let hr = app.token("hr-system", &[Role::HrService], None);
    let request = |subtree: &str, page_token: String| pb::SearchCompetencyHoldersRequest {
        page_size: 50,
        page_token,
        competency_id: data.id.clone(),
        min_level: 2,
        organization_subtree: subtree.to_owned(),
    };
    for round in 0..3 {
        let started = Instant::now();
        let first = search(&app, &hr, request(&ministry_ids[7], String::new()))
            .await
            .unwrap();
        println!(
            "round {round}: first page of a ministry: {:?}",
            started.elapsed()
        );
        assert_eq!(first.holders.len(), 50);
        let started = Instant::now();
        let national = search(&app, &hr, request("", String::new())).await.unwrap();
        println!(
            "round {round}: first page of the country: {:?}",
            started.elapsed()
        );
        assert_eq!(national.holders.len(), 50);
        let started = Instant::now();
        let mut count = 0;
        let mut token = String::new();
        loop {
            let page = search(&app, &hr, request(&ministry_ids[3], token))
                .await
                .unwrap();
            count += page.holders.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        println!(
            "round {round}: every page of a ministry ({count} holders): {:?}",
            started.elapsed()
        );
        assert_eq!(count, people / ministries);
        let started = Instant::now();
        let admin = app.admin_token();
        let one = profile(&app, &admin, &first.holders[0].person_id, "")
            .await
            .unwrap();
        println!("round {round}: one profile: {:?}", started.elapsed());
        assert_eq!(held(&one, &data.id), 2);
    }
}
