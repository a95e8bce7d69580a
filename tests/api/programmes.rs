//! ProgrammeService: the five programmes of DOMAIN.md set up through the API, capacity under
//! concurrency, sector seats, eligibility, waitlists, pinned versions and who may do what.

use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind,
    course_service_client::CourseServiceClient, programme_service_client::ProgrammeServiceClient,
};
use tonic::Code;

use crate::helpers::{TestApp, error_reason, person_record, spawn_app, with_token};

/// One activity of a module: its kind, how it is delivered, and (for attachments and visits) its host.
pub(crate) type ActivitySpec<'a> = (Kind, Mode, Option<&'a str>);

/// Returns a `CourseService` client on the app's channel.
pub(crate) fn courses(app: &TestApp) -> CourseServiceClient<tonic::transport::Channel> {
    CourseServiceClient::new(app.channel.clone())
}

pub(crate) fn programmes(app: &TestApp) -> ProgrammeServiceClient<tonic::transport::Channel> {
    ProgrammeServiceClient::new(app.channel.clone())
}

/// Creates a course with one module per entry of `modules` and publishes it; returns the version id.
pub(crate) async fn published_version(
    app: &TestApp,
    code: &str,
    provider_id: &str,
    modules: &[(&str, &[ActivitySpec<'_>])],
) -> String {
    let mut client = courses(app);
    let course = client
        .create_course(app.admin(pb::CreateCourseRequest {
            course: Some(pb::Course {
                code: code.to_owned(),
                title: format!("Course {code}"),
                provider_organization_id: provider_id.to_owned(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create course")
        .into_inner();
    let version = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: course.id.clone(),
            copy_from_version_id: String::new(),
            request_id: String::new(),
        }))
        .await
        .expect("create version")
        .into_inner();
    for (title, activities) in modules {
        let module = client
            .create_module(app.admin(pb::CreateModuleRequest {
                course_version_id: version.id.clone(),
                module: Some(pb::Module {
                    title: (*title).to_owned(),
                    required: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("create module")
            .into_inner();
        for (index, (kind, mode, host)) in activities.iter().enumerate() {
            client
                .create_activity(app.admin(pb::CreateActivityRequest {
                    module_id: module.id.clone(),
                    activity: Some(pb::Activity {
                        title: format!("{title} activity {index}"),
                        kind: (*kind).into(),
                        delivery_mode: (*mode).into(),
                        required: true,
                        expected_minutes: 90,
                        pass_score: (*kind == Kind::Assessment).then_some(70),
                        host_organization_id: host.unwrap_or_default().to_owned(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                }))
                .await
                .expect("create activity");
        }
    }
    client
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: version.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("publish")
        .into_inner()
        .id
}

pub(crate) async fn create_programme(
    app: &TestApp,
    code: &str,
    sponsor: &str,
    partners: &[&str],
    phases: Vec<pb::Phase>,
) -> pb::Programme {
    programmes(app)
        .create_programme(app.admin(pb::CreateProgrammeRequest {
            programme: Some(pb::Programme {
                code: code.to_owned(),
                title: format!("Programme {code}"),
                sponsor_organization_id: sponsor.to_owned(),
                partner_organization_ids: partners.iter().map(|id| (*id).to_owned()).collect(),
                phases,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create programme")
        .into_inner()
}

pub(crate) fn phase(title: &str, versions: &[&str], location: &str, days: i32) -> pb::Phase {
    pb::Phase {
        title: title.to_owned(),
        course_version_ids: versions.iter().map(|id| (*id).to_owned()).collect(),
        location: location.to_owned(),
        planned_duration_days: days,
        ..Default::default()
    }
}

/// Creates a cohort and opens it.
pub(crate) async fn open_cohort(
    app: &TestApp,
    programme_id: &str,
    settings: pb::Cohort,
) -> pb::Cohort {
    let mut client = programmes(app);
    let cohort = client
        .create_cohort(app.admin(pb::CreateCohortRequest {
            cohort: Some(pb::Cohort {
                programme_id: programme_id.to_owned(),
                ..settings
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create cohort")
        .into_inner();
    assert_eq!(cohort.state(), pb::CohortState::Planned);
    client
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: cohort.id,
            state: pb::CohortState::Open.into(),
            etag: cohort.etag,
        }))
        .await
        .expect("open cohort")
        .into_inner()
}

/// Imports people `prefix-0..count` into the organisation with `code`, of `sector`; returns their ids in order.
pub(crate) async fn import_people(
    app: &TestApp,
    prefix: &str,
    code: &str,
    count: usize,
    sector: pb::Sector,
) -> Vec<String> {
    let records: Vec<pb::PersonRecord> = (0..count)
        .map(|index| pb::PersonRecord {
            sector: sector.into(),
            ..person_record(&format!("{prefix}-{index:04}"), code)
        })
        .collect();
    for chunk in records.chunks(1000) {
        let outcome = app
            .people
            .clone()
            .batch_upsert_people(app.admin(pb::BatchUpsertPeopleRequest {
                people: chunk.to_vec(),
                request_id: String::new(),
            }))
            .await
            .expect("import people")
            .into_inner();
        assert_eq!(outcome.counts.unwrap().failed, 0, "{:?}", outcome.errors);
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
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        ids.extend(
            page.people
                .into_iter()
                .filter(|person| person.external_id.starts_with(&format!("{prefix}-")))
                .map(|person| (person.external_id, person.id)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut ids: Vec<(String, String)> = ids;
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

async fn batch_enroll(
    app: &TestApp,
    cohort_id: &str,
    person_ids: &[String],
) -> pb::BatchEnrollResponse {
    programmes(app)
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: cohort_id.to_owned(),
            person_ids: person_ids.to_vec(),
            request_id: String::new(),
        }))
        .await
        .expect("batch enroll")
        .into_inner()
}

async fn enroll(
    app: &TestApp,
    cohort_id: &str,
    person_id: &str,
) -> Result<pb::Enrollment, tonic::Status> {
    programmes(app)
        .enroll(app.admin(pb::EnrollRequest {
            cohort_id: cohort_id.to_owned(),
            person_id: person_id.to_owned(),
            request_id: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

const FUTURE_FIT_MINISTRIES: [&str; 15] = [
    "MOF", "MOH", "MOE", "KD", "MITI", "MOT", "KPKT", "MOSTI", "KPWKM", "MOHA", "KLN", "MOD",
    "KPDN", "MECD", "MOA",
];

#[tokio::test]
async fn future_fit_two_phases_twenty_officers_from_fourteen_ministries() {
    let (app, _database) = spawn_app().await;
    let jpa = app
        .create_organization(
            "Public Service Department",
            OrganizationKind::Agency,
            None,
            Some("JPA"),
        )
        .await;
    let telecom = app
        .create_organization(
            "Telecom vendor",
            OrganizationKind::Company,
            None,
            Some("VENDOR"),
        )
        .await;
    let university = app
        .create_organization(
            "University",
            OrganizationKind::University,
            None,
            Some("UNI"),
        )
        .await;
    let host = app
        .create_organization(
            "Smart City Authority (abroad)",
            OrganizationKind::Partner,
            None,
            None,
        )
        .await;
    let mut ministries = Vec::new();
    for code in FUTURE_FIT_MINISTRIES {
        ministries.push(
            app.create_organization(
                &format!("Ministry {code}"),
                OrganizationKind::Ministry,
                None,
                Some(code),
            )
            .await,
        );
    }

    let intensive = published_version(
        &app,
        "FFPS-UNI",
        &university.id,
        &[
            (
                "Generative AI",
                &[
                    (Kind::Lecture, Mode::InPerson, None),
                    (Kind::Lab, Mode::InPerson, None),
                ],
            ),
            (
                "AI governance",
                &[
                    (Kind::Lecture, Mode::InPerson, None),
                    (Kind::Simulation, Mode::InPerson, None),
                ],
            ),
            ("Assessment", &[(Kind::Assessment, Mode::Online, None)]),
        ],
    )
    .await;
    let attachment = published_version(
        &app,
        "FFPS-ATTACH",
        &telecom.id,
        &[
            (
                "Smart cities",
                &[
                    (Kind::FieldVisit, Mode::InPerson, Some(host.id.as_str())),
                    (Kind::CaseStudy, Mode::Blended, None),
                ],
            ),
            (
                "Cybersecurity",
                &[
                    (Kind::Workshop, Mode::InPerson, None),
                    (
                        Kind::IndustryAttachment,
                        Mode::InPerson,
                        Some(host.id.as_str()),
                    ),
                ],
            ),
        ],
    )
    .await;
    let programme = create_programme(
        &app,
        "FFPS-2025",
        &jpa.id,
        &[&telecom.id, &university.id],
        vec![
            phase(
                "1 month at the university",
                &[&intensive],
                "University campus",
                30,
            ),
            phase("5-month industry attachment", &[&attachment], "Abroad", 150),
        ],
    )
    .await;
    assert_eq!(programme.phases.len(), 2);
    assert_eq!(programme.phases[1].position, 2);

    let eligible: Vec<String> = ministries[..14]
        .iter()
        .map(|ministry| ministry.id.clone())
        .collect();
    let cohort = open_cohort(
        &app,
        &programme.id,
        pb::Cohort {
            name: "Cohort 1".to_owned(),
            start_date: "2025-05-01".to_owned(),
            end_date: "2025-11-30".to_owned(),
            capacity: 20,
            eligible_organization_ids: eligible,
            ..Default::default()
        },
    )
    .await;

    // Twenty senior officers: two from each of the first six ministries, one from the next eight.
    let mut officers = Vec::new();
    for (index, code) in FUTURE_FIT_MINISTRIES[..14].iter().enumerate() {
        let count = if index < 6 { 2 } else { 1 };
        officers.extend(
            import_people(&app, &format!("FF-{code}"), code, count, pb::Sector::Public).await,
        );
    }
    assert_eq!(officers.len(), 20);
    let outside = import_people(&app, "FF-MOA", "MOA", 1, pb::Sector::Public).await;
    let extra = import_people(&app, "FF-EXTRA", "MOF", 1, pb::Sector::Public).await;

    let response = batch_enroll(&app, &cohort.id, &officers).await;
    assert_eq!(
        (response.enrolled, response.waitlisted, response.failed),
        (20, 0, 0)
    );
    let pinned = &response.results[0]
        .enrollment
        .as_ref()
        .unwrap()
        .course_version_ids;
    assert_eq!(pinned, &vec![intensive.clone(), attachment.clone()]);

    let status = enroll(&app, &cohort.id, &extra[0]).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "COHORT_FULL");
    let status = enroll(&app, &cohort.id, &outside[0]).await.unwrap_err();
    assert_eq!(error_reason(&status), "ORGANIZATION_NOT_ELIGIBLE");
    let status = enroll(&app, &cohort.id, &officers[0]).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest {
            id: cohort.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cohort.enrolled_count, 20);
}

#[tokio::test]
async fn edl_fifty_five_participants_thirty_five_public_twenty_private() {
    let (app, _database) = spawn_app().await;
    let mampu = app
        .create_organization("MAMPU", OrganizationKind::Agency, None, Some("MAMPU"))
        .await;
    app.create_organization(
        "Private sector partners",
        OrganizationKind::Company,
        None,
        Some("PRIV"),
    )
    .await;
    let version = published_version(
        &app,
        "EDL-1",
        &mampu.id,
        &[(
            "Digital leadership",
            &[
                (Kind::Workshop, Mode::InPerson, None),
                (Kind::CaseStudy, Mode::Blended, None),
            ],
        )],
    )
    .await;
    let programme = create_programme(
        &app,
        "EDL",
        &mampu.id,
        &[],
        vec![phase("Three months", &[&version], "INTAN", 90)],
    )
    .await;
    let cohort = open_cohort(
        &app,
        &programme.id,
        pb::Cohort {
            name: "Cohort 1".to_owned(),
            capacity: 55,
            sector_seats: vec![
                pb::SectorSeats {
                    sector: pb::Sector::Public.into(),
                    seats: 35,
                },
                pb::SectorSeats {
                    sector: pb::Sector::Private.into(),
                    seats: 20,
                },
            ],
            ..Default::default()
        },
    )
    .await;
    let public = import_people(&app, "EDL-PUB", "MAMPU", 36, pb::Sector::Public).await;
    let private = import_people(&app, "EDL-PRIV", "PRIV", 21, pb::Sector::Private).await;

    let response = batch_enroll(&app, &cohort.id, &public).await;
    assert_eq!((response.enrolled, response.failed), (35, 1));
    let refused = response
        .results
        .iter()
        .find_map(|result| result.error.as_ref())
        .unwrap();
    assert_eq!(refused.reason, "SECTOR_SEATS_FULL");
    let response = batch_enroll(&app, &cohort.id, &private[..20]).await;
    assert_eq!(response.enrolled, 20);
    // The fifty-sixth participant is refused, naming the rule.
    let status = enroll(&app, &cohort.id, &private[20]).await.unwrap_err();
    assert_eq!(error_reason(&status), "COHORT_FULL");
}

#[tokio::test]
async fn ai_at_work_tvet_and_dle_programmes_are_set_up_through_the_api() {
    let (app, _database) = spawn_app().await;
    let digital = app
        .create_organization(
            "Ministry of Digital",
            OrganizationKind::Ministry,
            None,
            Some("KD"),
        )
        .await;
    let jdn = app
        .create_organization(
            "JDN",
            OrganizationKind::Department,
            Some(&digital.id),
            Some("JDN"),
        )
        .await;
    let vendor = app
        .create_organization(
            "Cloud vendor",
            OrganizationKind::Company,
            None,
            Some("CLOUD"),
        )
        .await;
    let kesuma = app
        .create_organization("KESUMA", OrganizationKind::Ministry, None, Some("KESUMA"))
        .await;
    let institute = app
        .create_organization(
            "Industrial Training Institute",
            OrganizationKind::TrainingCentre,
            Some(&kesuma.id),
            Some("ILP"),
        )
        .await;
    let intan = app
        .create_organization(
            "INTAN",
            OrganizationKind::TrainingCentre,
            None,
            Some("INTAN"),
        )
        .await;

    // AI At Work 2.0: a 5-day train-the-trainer course for ~200 change ambassadors, then a pilot of 270 officers.
    let ambassador_course = published_version(
        &app,
        "AIW-TTT",
        &vendor.id,
        &[
            (
                "Generative AI for content",
                &[
                    (Kind::Workshop, Mode::InPerson, None),
                    (Kind::Lab, Mode::InPerson, None),
                ],
            ),
            (
                "Teaching it back",
                &[
                    (Kind::Workshop, Mode::InPerson, None),
                    (Kind::Assessment, Mode::InPerson, None),
                ],
            ),
        ],
    )
    .await;
    let officer_course = published_version(
        &app,
        "AIW-OFFICER",
        &vendor.id,
        &[(
            "AI at work",
            &[
                (Kind::SelfStudy, Mode::Online, None),
                (Kind::Survey, Mode::Online, None),
            ],
        )],
    )
    .await;
    let aiw = create_programme(
        &app,
        "AIW-2",
        &digital.id,
        &[&vendor.id],
        vec![
            phase("Train the trainers", &[&ambassador_course], "JDN", 5),
            phase("Cascade", &[&officer_course], "Departments", 60),
        ],
    )
    .await;
    let ambassadors = open_cohort(
        &app,
        &aiw.id,
        pb::Cohort {
            name: "Ambassadors".to_owned(),
            capacity: 200,
            ..Default::default()
        },
    )
    .await;
    let pilot = open_cohort(
        &app,
        &aiw.id,
        pb::Cohort {
            name: "Pilot".to_owned(),
            capacity: 270,
            eligible_organization_ids: vec![digital.id.clone()],
            ..Default::default()
        },
    )
    .await;
    let ambassador_ids = import_people(&app, "AMB", "JDN", 200, pb::Sector::Public).await;
    let officer_ids = import_people(&app, "OFF", "JDN", 270, pb::Sector::Public).await;
    assert_eq!(
        batch_enroll(&app, &ambassadors.id, &ambassador_ids)
            .await
            .enrolled,
        200
    );
    assert_eq!(
        batch_enroll(&app, &pilot.id, &officer_ids).await.enrolled,
        270
    );
    let _ = jdn;

    // TVET Learning Centre: certified telecom courses, a first batch of 2,000 trainees.
    let telecom = published_version(
        &app,
        "TVET-5G",
        &vendor.id,
        &[
            (
                "Fibre and 5G",
                &[
                    (Kind::Lecture, Mode::InPerson, None),
                    (Kind::Lab, Mode::InPerson, None),
                ],
            ),
            (
                "Certification exam",
                &[(Kind::Assessment, Mode::InPerson, None)],
            ),
        ],
    )
    .await;
    let tvet = create_programme(
        &app,
        "TVET-TLC",
        &kesuma.id,
        &[&vendor.id],
        vec![phase("Telecom modules", &[&telecom], "ILP", 120)],
    )
    .await;
    let batch = open_cohort(
        &app,
        &tvet.id,
        pb::Cohort {
            name: "Batch 1".to_owned(),
            capacity: 2000,
            ..Default::default()
        },
    )
    .await;
    let trainees = import_people(&app, "TVET", "ILP", 2000, pb::Sector::Private).await;
    let first = batch_enroll(&app, &batch.id, &trainees[..1000]).await;
    let second = batch_enroll(&app, &batch.id, &trainees[1000..]).await;
    assert_eq!(first.enrolled + second.enrolled, 2000);
    let _ = institute;

    // Digital Leadership Excellence: cohorts of tens; the second one is running.
    let leadership = published_version(
        &app,
        "DLE",
        &intan.id,
        &[(
            "Leading digital change",
            &[
                (Kind::Workshop, Mode::InPerson, None),
                (Kind::CaseStudy, Mode::InPerson, None),
            ],
        )],
    )
    .await;
    let dle = create_programme(
        &app,
        "DLE",
        &intan.id,
        &[],
        vec![phase("Leadership", &[&leadership], "INTAN", 60)],
    )
    .await;
    let second_cohort = open_cohort(
        &app,
        &dle.id,
        pb::Cohort {
            name: "Cohort 2".to_owned(),
            capacity: 30,
            ..Default::default()
        },
    )
    .await;
    let leaders = import_people(&app, "DLE", "INTAN", 30, pb::Sector::Public).await;
    assert_eq!(
        batch_enroll(&app, &second_cohort.id, &leaders)
            .await
            .enrolled,
        30
    );
    let running = programmes(&app)
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: second_cohort.id.clone(),
            state: pb::CohortState::Running.into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.state(), pb::CohortState::Running);
    assert_eq!(running.enrolled_count, 30);
}

/// Sets up a one-phase programme with an open cohort of `capacity`; returns (programme, cohort, provider).
async fn simple_cohort(
    app: &TestApp,
    capacity: i32,
    waitlist: bool,
) -> (pb::Programme, pb::Cohort, pb::Organization) {
    let provider = app
        .create_organization(
            "Provider",
            OrganizationKind::TrainingCentre,
            None,
            Some("PROV"),
        )
        .await;
    let version = published_version(
        app,
        "C-1",
        &provider.id,
        &[("Module", &[(Kind::Lecture, Mode::Online, None)])],
    )
    .await;
    let programme = create_programme(
        app,
        "P-1",
        &provider.id,
        &[],
        vec![phase("Only phase", &[&version], "Online", 10)],
    )
    .await;
    let cohort = open_cohort(
        app,
        &programme.id,
        pb::Cohort {
            name: "Cohort".to_owned(),
            capacity,
            waitlist_enabled: waitlist,
            ..Default::default()
        },
    )
    .await;
    (programme, cohort, provider)
}

#[tokio::test]
async fn fifty_racing_enrolments_into_ten_seats_make_exactly_ten() {
    let (app, _database) = spawn_app().await;
    let (_, cohort, _) = simple_cohort(&app, 10, false).await;
    let people = import_people(&app, "RACE", "PROV", 50, pb::Sector::Public).await;
    let mut tasks = Vec::new();
    for person_id in people {
        let mut client = programmes(&app);
        let request = app.admin(pb::EnrollRequest {
            cohort_id: cohort.id.clone(),
            person_id,
            request_id: String::new(),
        });
        tasks.push(tokio::spawn(async move { client.enroll(request).await }));
    }
    let mut enrolled = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => enrolled += 1,
            Err(status) => assert_eq!(error_reason(&status), "COHORT_FULL", "{status:?}"),
        }
    }
    assert_eq!(enrolled, 10);
    let listed = programmes(&app)
        .list_enrollments(app.admin(pb::ListEnrollmentsRequest {
            cohort_id: cohort.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.enrollments.len(), 10);
    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest { id: cohort.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cohort.enrolled_count, 10);
}

#[tokio::test]
async fn a_withdrawal_promotes_the_first_in_line() {
    let (app, _database) = spawn_app().await;
    let (_, cohort, _) = simple_cohort(&app, 2, true).await;
    let people = import_people(&app, "WL", "PROV", 4, pb::Sector::Public).await;
    let mut enrollments = Vec::new();
    for person in &people {
        enrollments.push(enroll(&app, &cohort.id, person).await.unwrap());
    }
    let states: Vec<(pb::EnrollmentState, i32)> = enrollments
        .iter()
        .map(|enrollment| (enrollment.state(), enrollment.waitlist_position))
        .collect();
    assert_eq!(
        states,
        [
            (pb::EnrollmentState::Enrolled, 0),
            (pb::EnrollmentState::Enrolled, 0),
            (pb::EnrollmentState::Waitlisted, 1),
            (pb::EnrollmentState::Waitlisted, 2),
        ]
    );

    let withdrawn = programmes(&app)
        .withdraw(app.admin(pb::WithdrawRequest {
            enrollment_id: enrollments[0].id.clone(),
            reason: "posted abroad".to_owned(),
            etag: enrollments[0].etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.state(), pb::EnrollmentState::Withdrawn);
    assert_eq!(withdrawn.withdraw_reason, "posted abroad");

    let get = |id: String| {
        let mut client = programmes(&app);
        let request = app.admin(pb::GetEnrollmentRequest { id });
        async move { client.get_enrollment(request).await.unwrap().into_inner() }
    };
    let promoted = get(enrollments[2].id.clone()).await;
    assert_eq!(promoted.state(), pb::EnrollmentState::Enrolled);
    let still_waiting = get(enrollments[3].id.clone()).await;
    assert_eq!(
        (still_waiting.state(), still_waiting.waitlist_position),
        (pb::EnrollmentState::Waitlisted, 1)
    );

    let status = programmes(&app)
        .withdraw(app.admin(pb::WithdrawRequest {
            enrollment_id: enrollments[0].id.clone(),
            reason: "again".to_owned(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "ALREADY_WITHDRAWN");
    let cohort = programmes(&app)
        .get_cohort(app.admin(pb::GetCohortRequest { id: cohort.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cohort.enrolled_count, cohort.waitlisted_count), (2, 1));
}

#[tokio::test]
async fn closed_cohorts_archived_courses_and_drafts_refuse_with_the_rule() {
    let (app, _database) = spawn_app().await;
    let (programme, cohort, provider) = simple_cohort(&app, 5, false).await;
    let people = import_people(&app, "X", "PROV", 3, pb::Sector::Public).await;

    // A replayed enrolment returns the first one.
    let request = pb::EnrollRequest {
        cohort_id: cohort.id.clone(),
        person_id: people[0].clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = programmes(&app)
        .enroll(app.admin(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let replay = programmes(&app)
        .enroll(app.admin(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, replay.id);

    // A phase may only take published versions.
    let mut client = courses(&app);
    let draft_course = client
        .create_course(app.admin(pb::CreateCourseRequest {
            course: Some(pb::Course {
                code: "DRAFTY".to_owned(),
                title: "Drafty".to_owned(),
                provider_organization_id: provider.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let draft = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: draft_course.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let status = programmes(&app)
        .create_programme(app.admin(pb::CreateProgrammeRequest {
            programme: Some(pb::Programme {
                code: "BAD".to_owned(),
                title: "Bad".to_owned(),
                sponsor_organization_id: provider.id.clone(),
                phases: vec![phase("Draft phase", &[&draft.id], "", 1)],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "VERSION_NOT_PUBLISHED");

    // An archived course takes no new enrolments.
    let course_id = {
        let version_id = &programme.phases[0].course_version_ids[0];
        client
            .get_course_version(app.admin(pb::GetCourseVersionRequest {
                id: version_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .course_id
    };
    client
        .archive_course(app.admin(pb::ArchiveCourseRequest {
            id: course_id,
            etag: String::new(),
        }))
        .await
        .unwrap();
    let status = enroll(&app, &cohort.id, &people[1]).await.unwrap_err();
    assert_eq!(error_reason(&status), "COURSE_ARCHIVED");

    // A closed cohort takes none either, and cannot reopen.
    let closed = programmes(&app)
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: cohort.id.clone(),
            state: pb::CohortState::Closed.into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state(), pb::CohortState::Closed);
    let status = programmes(&app)
        .change_cohort_state(app.admin(pb::ChangeCohortStateRequest {
            id: cohort.id.clone(),
            state: pb::CohortState::Open.into(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "COHORT_STATE_TRANSITION");
}

#[tokio::test]
async fn enrolments_keep_the_version_they_pinned_when_the_programme_moves_on() {
    let (app, _database) = spawn_app().await;
    let (programme, cohort, _) = simple_cohort(&app, 5, false).await;
    let people = import_people(&app, "PIN", "PROV", 2, pb::Sector::Public).await;
    let before = enroll(&app, &cohort.id, &people[0]).await.unwrap();
    let old_version = programme.phases[0].course_version_ids[0].clone();

    let mut client = courses(&app);
    let old = client
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: old_version.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let draft = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: old.course_id.clone(),
            copy_from_version_id: old_version.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let new_version = client
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: draft.id,
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut phases = programme.phases.clone();
    phases[0].course_version_ids = vec![new_version.clone()];
    let updated = programmes(&app)
        .update_programme(app.admin(pb::UpdateProgrammeRequest {
            programme: Some(pb::Programme {
                id: programme.id.clone(),
                phases,
                etag: programme.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phases".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.phases[0].id, programme.phases[0].id,
        "a phase sent with its id keeps it"
    );

    let after = enroll(&app, &cohort.id, &people[1]).await.unwrap();
    assert_eq!(after.course_version_ids, vec![new_version]);
    let before_now = programmes(&app)
        .get_enrollment(app.admin(pb::GetEnrollmentRequest { id: before.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before_now.course_version_ids, vec![old_version]);
}

#[tokio::test]
async fn who_may_enrol_and_read_enrolments() {
    let (app, _database) = spawn_app().await;
    let (_, cohort, _) = simple_cohort(&app, 10, false).await;
    let finance = app
        .create_organization(
            "Ministry of Finance",
            OrganizationKind::Ministry,
            None,
            Some("MOF"),
        )
        .await;
    let mine = import_people(&app, "MOF", "MOF", 1, pb::Sector::Public).await;
    let others = import_people(&app, "OTHER", "PROV", 1, pb::Sector::Public).await;
    let org_admin = app.token("mof-admin", &[Role::OrgAdmin], Some(&finance.id));
    let learner = app.token(&mine[0], &[Role::Learner], None);
    let hr = app.token("hr-system", &[Role::HrService], None);

    let request = |person: &str| pb::EnrollRequest {
        cohort_id: cohort.id.clone(),
        person_id: person.to_owned(),
        request_id: String::new(),
    };
    let status = programmes(&app)
        .enroll(with_token(request(&mine[0]), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = programmes(&app)
        .enroll(with_token(request(&others[0]), &org_admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let own = programmes(&app)
        .enroll(with_token(request(&mine[0]), &org_admin))
        .await
        .unwrap()
        .into_inner();
    let other = enroll(&app, &cohort.id, &others[0]).await.unwrap();

    programmes(&app)
        .get_enrollment(with_token(
            pb::GetEnrollmentRequest { id: own.id.clone() },
            &learner,
        ))
        .await
        .expect("a learner reads their own enrolment");
    let status = programmes(&app)
        .get_enrollment(with_token(
            pb::GetEnrollmentRequest {
                id: other.id.clone(),
            },
            &learner,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A list is narrowed to what the caller reaches: a learner's to their own enrolments.
    let unfiltered = programmes(&app)
        .list_enrollments(with_token(pb::ListEnrollmentsRequest::default(), &learner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unfiltered
            .enrollments
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>(),
        vec![own.id.clone()]
    );
    let listed = programmes(&app)
        .list_enrollments(with_token(
            pb::ListEnrollmentsRequest {
                person_id: mine[0].clone(),
                ..Default::default()
            },
            &learner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.enrollments.len(), 1);

    let by_admin = programmes(&app)
        .list_enrollments(with_token(
            pb::ListEnrollmentsRequest::default(),
            &org_admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_admin
            .enrollments
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>(),
        vec![own.id.clone()]
    );
    let by_hr = programmes(&app)
        .list_enrollments(with_token(
            pb::ListEnrollmentsRequest {
                cohort_id: cohort.id.clone(),
                ..Default::default()
            },
            &hr,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_hr.enrollments.len(), 2);
    let status = programmes(&app)
        .withdraw(with_token(
            pb::WithdrawRequest {
                enrollment_id: other.id,
                reason: "no".to_owned(),
                etag: String::new(),
            },
            &hr,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// Reads the `enrollment.due` events of the feed, until caught up: (enrolment, days_before).
async fn due_events(app: &TestApp) -> Vec<(String, i64)> {
    use futures::StreamExt as _;
    let mut stream = lms::pb::event_service_client::EventServiceClient::new(app.channel.clone())
        .watch_events(app.admin(pb::WatchEventsRequest {
            types: vec!["enrollment.due".to_owned()],
            until_caught_up: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json).unwrap();
        assert_eq!(payload["enrollment_id"], event.subject_id.as_str());
        events.push((event.subject_id, payload["days_before"].as_i64().unwrap()));
    }
    events.sort();
    events
}

#[tokio::test]
async fn unfinished_enrolments_are_reminded_before_their_cohort_ends_once_per_offset() {
    let database = crate::helpers::TestDatabase::fresh().await;
    let mut config = crate::helpers::test_config(&database);
    // No background sweep: the replicas below are the only sweepers, so the counts are exact.
    config.certification.expiry_sweep_interval = std::time::Duration::ZERO;
    let app = crate::helpers::spawn_app_with(config).await;
    assert_eq!(app.config.certification.due_reminder_days.0, vec![7, 1]);
    let clock = app.config.certification.clock.clone();
    let (_, cohort, _) = simple_cohort(&app, 10, false).await;
    let end = clock.now().date_naive() + chrono::Duration::days(20);
    programmes(&app)
        .update_cohort(app.admin(pb::UpdateCohortRequest {
            cohort: Some(pb::Cohort {
                id: cohort.id.clone(),
                end_date: end.to_string(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["end_date".to_owned()],
            }),
        }))
        .await
        .expect("set the end date");
    let people = import_people(&app, "DUE", "PROV", 3, pb::Sector::Public).await;
    let mut enrollments = Vec::new();
    for person in &people {
        enrollments.push(enroll(&app, &cohort.id, person).await.unwrap());
    }
    programmes(&app)
        .withdraw(app.admin(pb::WithdrawRequest {
            enrollment_id: enrollments[2].id.clone(),
            reason: "posted abroad".to_owned(),
            etag: enrollments[2].etag.clone(),
        }))
        .await
        .unwrap();
    let replica = lms::store::Store::connect(&app.config).await.unwrap();
    let sweep = |today: chrono::NaiveDate| {
        let replicas = (0..4).map(|_| replica.clone()).collect::<Vec<_>>();
        async move {
            futures::future::join_all(replicas.into_iter().map(|replica| async move {
                replica.publish_due_reminders(today, &[7, 1]).await.unwrap()
            }))
            .await
            .into_iter()
            .sum::<usize>()
        }
    };
    let today = clock.now().date_naive();
    assert_eq!(sweep(today).await, 0, "20 days ahead: nothing due");
    assert_eq!(sweep(end - chrono::Duration::days(8)).await, 0);
    // Four sweeps at once remind each unfinished enrolment once; the withdrawn one never.
    assert_eq!(sweep(end - chrono::Duration::days(6)).await, 2);
    assert_eq!(sweep(end - chrono::Duration::days(5)).await, 0);
    let mut expected = vec![
        (enrollments[0].id.clone(), 7),
        (enrollments[1].id.clone(), 7),
    ];
    expected.sort();
    assert_eq!(due_events(&app).await, expected);
    // On the last day, the 1-day reminder; after the end, nothing more.
    assert_eq!(sweep(end).await, 2);
    assert_eq!(sweep(end + chrono::Duration::days(1)).await, 0);
    expected.extend([
        (enrollments[0].id.clone(), 1),
        (enrollments[1].id.clone(), 1),
    ]);
    expected.sort();
    assert_eq!(due_events(&app).await, expected);
    replica.close().await;
}
