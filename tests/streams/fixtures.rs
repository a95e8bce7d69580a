//! Fixtures made through the API: a published one-activity course, an open cohort and enrolled learners.

use lms::pb::{
    self, ActivityKind, DeliveryMode, OrganizationKind, course_service_client::CourseServiceClient,
    programme_service_client::ProgrammeServiceClient,
};

use crate::helpers::{TestApp, person_record};

/// Enrolments that progress events can be recorded against.
pub(crate) struct Classroom {
    /// The course's one activity (an online lab).
    pub(crate) activity: String,
    /// One enrolment per learner.
    pub(crate) enrollments: Vec<String>,
}

/// Sets up a course with one online lab, a programme, an open cohort and `learners` enrolled people.
pub(crate) async fn classroom(app: &TestApp, learners: usize) -> Classroom {
    let provider = app
        .create_organization(
            "Provider",
            OrganizationKind::TrainingCentre,
            None,
            Some("PROV"),
        )
        .await;
    let mut courses = CourseServiceClient::new(app.channel.clone());
    let course = courses
        .create_course(app.admin(pb::CreateCourseRequest {
            course: Some(pb::Course {
                code: "STREAM-101".to_owned(),
                title: "Streaming".to_owned(),
                provider_organization_id: provider.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create course")
        .into_inner();
    let version = courses
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: course.id,
            copy_from_version_id: String::new(),
            request_id: String::new(),
        }))
        .await
        .expect("create version")
        .into_inner();
    let module = courses
        .create_module(app.admin(pb::CreateModuleRequest {
            course_version_id: version.id.clone(),
            module: Some(pb::Module {
                title: "Only".to_owned(),
                required: true,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create module")
        .into_inner();
    let activity = courses
        .create_activity(app.admin(pb::CreateActivityRequest {
            module_id: module.id,
            activity: Some(pb::Activity {
                title: "Lab".to_owned(),
                kind: ActivityKind::Lab.into(),
                delivery_mode: DeliveryMode::Online.into(),
                required: true,
                expected_minutes: 90,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create activity")
        .into_inner();
    courses
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: version.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("publish");

    let mut programmes = ProgrammeServiceClient::new(app.channel.clone());
    let programme = programmes
        .create_programme(app.admin(pb::CreateProgrammeRequest {
            programme: Some(pb::Programme {
                code: "STREAM".to_owned(),
                title: "Streaming programme".to_owned(),
                sponsor_organization_id: provider.id.clone(),
                phases: vec![pb::Phase {
                    title: "Only".to_owned(),
                    course_version_ids: vec![version.id],
                    planned_duration_days: 30,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create programme")
        .into_inner();
    let cohort = programmes
        .create_cohort(app.admin(pb::CreateCohortRequest {
            cohort: Some(pb::Cohort {
                programme_id: programme.id,
                name: "Cohort".to_owned(),
                capacity: 100_000,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create cohort")
        .into_inner();
    let cohort = programmes
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: cohort.id,
            state: pb::CohortState::Open.into(),
            etag: cohort.etag,
        }))
        .await
        .expect("open cohort")
        .into_inner();

    let records: Vec<pb::PersonRecord> = (0..learners)
        .map(|index| person_record(&format!("L-{index:04}"), "PROV"))
        .collect();
    let outcome = app
        .people
        .clone()
        .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
            people: records,
            request_id: String::new(),
        }))
        .await
        .expect("upsert learners")
        .into_inner();
    assert_eq!(outcome.counts.expect("counts").created, learners as i64);
    let people = app
        .people
        .clone()
        .list_people(app.admin(pb::ListPeopleRequest {
            page_size: 1000,
            organization_subtree: provider.id,
            ..Default::default()
        }))
        .await
        .expect("list learners")
        .into_inner()
        .people;
    let enrolled = programmes
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: cohort.id,
            person_ids: people.into_iter().map(|person| person.id).collect(),
            request_id: String::new(),
        }))
        .await
        .expect("enrol learners")
        .into_inner();
    let enrollments: Vec<String> = enrolled
        .results
        .into_iter()
        .map(|result| result.enrollment.expect("enrolled").id)
        .collect();
    assert_eq!(enrollments.len(), learners);
    Classroom {
        activity: activity.id,
        enrollments,
    }
}
