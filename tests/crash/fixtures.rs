//! Fixtures made through the API before any kill: a training centre, a published one-module
//! course (lecture, lab, exam with pass mark 70), a programme pinning it, an open cohort and one
//! enrolment per imported learner.

use std::time::Duration;

use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, course_service_client::CourseServiceClient,
    organization_service_client::OrganizationServiceClient,
    person_service_client::PersonServiceClient, programme_service_client::ProgrammeServiceClient,
};
use tonic::{
    Request,
    transport::{Channel, Endpoint},
};

/// Pass mark of the exam.
pub(crate) const PASS_SCORE: i32 = 70;

/// What the clients record progress against.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// The lecture (no score).
    pub(crate) lecture: String,
    /// The lab (no score).
    pub(crate) lab: String,
    /// The exam (scored, pass mark [`PASS_SCORE`]).
    pub(crate) exam: String,
    /// Every enrolment id.
    pub(crate) enrollments: Vec<String>,
}

/// Wraps `message` in a request carrying `token` and a deadline.
pub(crate) fn authorized<T>(message: T, token: &str, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request.set_timeout(timeout);
    request
}

/// Wraps `message` in an admin request with a generous deadline (fixtures come before any kill).
fn admin<T>(token: &str, message: T) -> Request<T> {
    authorized(message, token, Duration::from_secs(30))
}

/// Makes the fixtures on the server at `addr` with an admin `token`.
pub(crate) async fn build(addr: std::net::SocketAddr, token: &str, learners: usize) -> Fixture {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect for fixtures");
    let provider = OrganizationServiceClient::new(channel.clone())
        .create_organization(admin(
            token,
            pb::CreateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: "Crash test training centre".to_owned(),
                    kind: pb::OrganizationKind::TrainingCentre.into(),
                    external_code: "CRASH".to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create organization")
        .into_inner();
    let version = published_course(&channel, token, &provider.id).await;
    let activity = |index: usize| version.modules[0].activities[index].id.clone();
    let (lecture, lab, exam) = (activity(0), activity(1), activity(2));

    let mut programmes = ProgrammeServiceClient::new(channel.clone());
    let programme = programmes
        .create_programme(admin(
            token,
            pb::CreateProgrammeRequest {
                programme: Some(pb::Programme {
                    code: "CRASH".to_owned(),
                    title: "Crash test programme".to_owned(),
                    sponsor_organization_id: provider.id.clone(),
                    phases: vec![pb::Phase {
                        title: "Only".to_owned(),
                        course_version_ids: vec![version.id.clone()],
                        planned_duration_days: 30,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create programme")
        .into_inner();
    let cohort = programmes
        .create_cohort(admin(
            token,
            pb::CreateCohortRequest {
                cohort: Some(pb::Cohort {
                    programme_id: programme.id.clone(),
                    name: "Crash cohort".to_owned(),
                    capacity: 10_000,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create cohort")
        .into_inner();
    let cohort = programmes
        .change_cohort_state(admin(
            token,
            pb::ChangeCohortStateRequest {
                id: cohort.id,
                state: pb::CohortState::Open.into(),
                etag: cohort.etag,
            },
        ))
        .await
        .expect("open cohort")
        .into_inner();

    let people = import_learners(&channel, token, learners).await;
    let enrolled = programmes
        .batch_enroll(admin(
            token,
            pb::BatchEnrollRequest {
                cohort_id: cohort.id.clone(),
                person_ids: people,
                request_id: String::new(),
            },
        ))
        .await
        .expect("batch enroll")
        .into_inner();
    let enrollments: Vec<String> = enrolled
        .results
        .into_iter()
        .map(|result| {
            let enrollment = result
                .enrollment
                .unwrap_or_else(|| panic!("{} not enrolled: {:?}", result.person_id, result.error));
            assert_eq!(enrollment.state(), pb::EnrollmentState::Enrolled);
            enrollment.id
        })
        .collect();
    assert_eq!(enrollments.len(), learners);
    Fixture {
        lecture,
        lab,
        exam,
        enrollments,
    }
}

/// Creates course CRASH-101 with one module (lecture, lab, exam) and publishes it; returns the version.
async fn published_course(channel: &Channel, token: &str, provider_id: &str) -> pb::CourseVersion {
    let mut courses = CourseServiceClient::new(channel.clone());
    let course = courses
        .create_course(admin(
            token,
            pb::CreateCourseRequest {
                course: Some(pb::Course {
                    code: "CRASH-101".to_owned(),
                    title: "Surviving kill -9".to_owned(),
                    provider_organization_id: provider_id.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create course")
        .into_inner();
    let draft = courses
        .create_course_version(admin(
            token,
            pb::CreateCourseVersionRequest {
                course_id: course.id,
                copy_from_version_id: String::new(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create course version")
        .into_inner();
    let module = courses
        .create_module(admin(
            token,
            pb::CreateModuleRequest {
                course_version_id: draft.id.clone(),
                module: Some(pb::Module {
                    title: "Basics".to_owned(),
                    required: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create module")
        .into_inner();
    for (index, (kind, mode)) in [
        (Kind::Lecture, Mode::InPerson),
        (Kind::Lab, Mode::Online),
        (Kind::Assessment, Mode::Online),
    ]
    .into_iter()
    .enumerate()
    {
        courses
            .create_activity(admin(
                token,
                pb::CreateActivityRequest {
                    module_id: module.id.clone(),
                    activity: Some(pb::Activity {
                        title: format!("Activity {index}"),
                        kind: kind.into(),
                        delivery_mode: mode.into(),
                        required: true,
                        expected_minutes: 90,
                        pass_score: (kind == Kind::Assessment).then_some(PASS_SCORE),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .expect("create activity");
    }
    let published = courses
        .publish_course_version(admin(
            token,
            pb::PublishCourseVersionRequest {
                id: draft.id,
                etag: String::new(),
            },
        ))
        .await
        .expect("publish course version")
        .into_inner();
    let version = courses
        .get_course_version(admin(
            token,
            pb::GetCourseVersionRequest { id: published.id },
        ))
        .await
        .expect("get course version")
        .into_inner();
    assert_eq!(version.modules.len(), 1);
    assert_eq!(version.modules[0].activities.len(), 3);
    version
}

/// Imports learners CRASH-0000.. into the training centre; returns their ids in that order.
async fn import_learners(channel: &Channel, token: &str, count: usize) -> Vec<String> {
    let mut people = PersonServiceClient::new(channel.clone());
    let records: Vec<pb::PersonRecord> = (0..count)
        .map(|index| {
            let external_id = format!("CRASH-{index:04}");
            pb::PersonRecord {
                full_name: format!("Officer {external_id}"),
                email: format!("{}@agency.gov.my", external_id.to_lowercase()),
                external_id,
                organization_external_code: "CRASH".to_owned(),
                sector: pb::Sector::Public.into(),
                ..Default::default()
            }
        })
        .collect();
    let outcome = people
        .batch_upsert_people(admin(
            token,
            pb::BatchUpsertPeopleRequest {
                people: records,
                request_id: String::new(),
            },
        ))
        .await
        .expect("import learners")
        .into_inner();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = people
            .list_people(admin(
                token,
                pb::ListPeopleRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                },
            ))
            .await
            .expect("list people")
            .into_inner();
        found.extend(
            page.people
                .into_iter()
                .filter(|person| person.external_id.starts_with("CRASH-"))
                .map(|person| (person.external_id, person.id)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    found.sort();
    assert_eq!(found.len(), count);
    found.into_iter().map(|(_, id)| id).collect()
}
