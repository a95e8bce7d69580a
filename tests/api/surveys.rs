//! SurveyService: the AI At Work pilot figures reproduced from 270 responses, by programme, cohort
//! and organisation subtree; the k-anonymity floor of free text; validation that names the field
//! and writes nothing; idempotent submissions; completion of the SURVEY activity; survey questions
//! in the catalogue (drafts only, frozen on publication, copied with the version); who may do what.

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind, SurveyQuestionKind,
    progress_service_client::ProgressServiceClient, survey_answer::Value,
    survey_service_client::SurveyServiceClient,
};
use tonic::Code;

use crate::helpers::{TestApp, error_reason, spawn_app, violated_fields, with_token};
use crate::programmes::{courses, create_programme, import_people, open_cohort, phase, programmes};

fn surveys(app: &TestApp) -> SurveyServiceClient<tonic::transport::Channel> {
    SurveyServiceClient::new(app.channel.clone())
}

fn progress(app: &TestApp) -> ProgressServiceClient<tonic::transport::Channel> {
    ProgressServiceClient::new(app.channel.clone())
}

fn question(id: &str, kind: SurveyQuestionKind, required: bool) -> pb::SurveyQuestion {
    pb::SurveyQuestion {
        id: id.to_owned(),
        text: format!("Question {id}"),
        kind: kind.into(),
        required,
        ..Default::default()
    }
}

/// The pilot questionnaire: did it save time (Yes/No), hours saved per week (0-40), usefulness
/// 1-5 (optional), comments (optional).
fn pilot_questions() -> Vec<pb::SurveyQuestion> {
    vec![
        pb::SurveyQuestion {
            text: "Did the AI tools save you time?".to_owned(),
            options: vec!["Yes".to_owned(), "No".to_owned()],
            ..question("saved_time", SurveyQuestionKind::SingleChoice, true)
        },
        pb::SurveyQuestion {
            text: "How many hours a week did they save you?".to_owned(),
            unit: "hours saved per week".to_owned(),
            min: Some(0.0),
            max: Some(40.0),
            ..question("hours_saved", SurveyQuestionKind::Number, true)
        },
        question("usefulness", SurveyQuestionKind::Scale, false),
        question("comments", SurveyQuestionKind::FreeText, false),
    ]
}

fn answer(question_id: &str, value: Value) -> pb::SurveyAnswer {
    pb::SurveyAnswer {
        question_id: question_id.to_owned(),
        value: Some(value),
    }
}

/// A published course (a lecture, then the survey), a programme with one cohort per ministry,
/// and officers enrolled.
struct Pilot {
    lecture_id: String,
    survey_id: String,
    programme_id: String,
    /// (organisation id, cohort id) per ministry.
    ministries: Vec<(String, String)>,
    /// (person id, enrolment id, ministry index), in import order per ministry.
    officers: Vec<(String, String, usize)>,
}

/// Creates a DRAFT version with a lecture and a survey carrying `questions`; returns
/// (course id, version id, module id, lecture id, survey id).
pub(crate) async fn draft_with_survey(
    app: &TestApp,
    code: &str,
    provider_id: &str,
    questions: Vec<pb::SurveyQuestion>,
) -> (String, String, String, String, String) {
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
            ..Default::default()
        }))
        .await
        .expect("create version")
        .into_inner();
    let module = client
        .create_module(app.admin(pb::CreateModuleRequest {
            course_version_id: version.id.clone(),
            module: Some(pb::Module {
                title: "Generative AI at work".to_owned(),
                required: true,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create module")
        .into_inner();
    let mut ids = Vec::new();
    for (title, kind, questions) in [
        ("Summaries and meeting notes", Kind::Lecture, Vec::new()),
        ("Pilot survey", Kind::Survey, questions),
    ] {
        let activity = client
            .create_activity(app.admin(pb::CreateActivityRequest {
                module_id: module.id.clone(),
                activity: Some(pb::Activity {
                    title: title.to_owned(),
                    kind: kind.into(),
                    delivery_mode: Mode::Online.into(),
                    required: true,
                    survey_questions: questions,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("create activity")
            .into_inner();
        ids.push(activity.id);
    }
    let survey_id = ids.pop().unwrap();
    let lecture_id = ids.pop().unwrap();
    (course.id, version.id, module.id, lecture_id, survey_id)
}

pub(crate) async fn publish(app: &TestApp, version_id: &str) -> pb::CourseVersion {
    courses(app)
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: version_id.to_owned(),
            etag: String::new(),
        }))
        .await
        .expect("publish")
        .into_inner()
}

/// Sets up the pilot with `per_ministry[i]` officers in ministry `i`.
async fn pilot(app: &TestApp, per_ministry: &[usize]) -> Pilot {
    let provider = app
        .create_organization(
            "MyGovUC",
            OrganizationKind::TrainingCentre,
            None,
            Some("MYGOVUC"),
        )
        .await;
    let (_, version_id, _, lecture_id, survey_id) =
        draft_with_survey(app, "AIW-PILOT", &provider.id, pilot_questions()).await;
    publish(app, &version_id).await;
    let programme = create_programme(
        app,
        "AIW2",
        &provider.id,
        &[],
        vec![phase("Pilot", &[&version_id], "", 5)],
    )
    .await;
    let mut pilot = Pilot {
        lecture_id,
        survey_id,
        programme_id: programme.id.clone(),
        ministries: Vec::new(),
        officers: Vec::new(),
    };
    for (index, count) in per_ministry.iter().enumerate() {
        let code = format!("MIN-{index}");
        let ministry = app
            .create_organization(
                &format!("Ministry {index}"),
                OrganizationKind::Ministry,
                None,
                Some(&code),
            )
            .await;
        let cohort = open_cohort(
            app,
            &programme.id,
            pb::Cohort {
                name: format!("Pilot cohort {index}"),
                capacity: 10_000,
                ..Default::default()
            },
        )
        .await;
        let people =
            import_people(app, &format!("M{index}"), &code, *count, pb::Sector::Public).await;
        let response = programmes(app)
            .batch_enroll(app.admin(pb::BatchEnrollRequest {
                cohort_id: cohort.id.clone(),
                person_ids: people,
                request_id: String::new(),
            }))
            .await
            .expect("enrol")
            .into_inner();
        assert_eq!(response.failed, 0);
        for result in response.results {
            pilot.officers.push((
                result.person_id,
                result.enrollment.expect("enrolled").id,
                index,
            ));
        }
        pilot.ministries.push((ministry.id, cohort.id));
    }
    pilot
}

async fn submit(
    app: &TestApp,
    token: &str,
    enrollment_id: &str,
    activity_id: &str,
    answers: Vec<pb::SurveyAnswer>,
) -> Result<pb::SurveyResponse, tonic::Status> {
    surveys(app)
        .submit_survey_response(with_token(
            pb::SubmitSurveyResponseRequest {
                enrollment_id: enrollment_id.to_owned(),
                activity_id: activity_id.to_owned(),
                answers,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn results(
    app: &TestApp,
    token: &str,
    request: pb::GetSurveyResultsRequest,
) -> Result<pb::SurveyResults, tonic::Status> {
    surveys(app)
        .get_survey_results(with_token(request, token))
        .await
        .map(tonic::Response::into_inner)
}

fn question_result<'r>(results: &'r pb::SurveyResults, id: &str) -> &'r pb::QuestionResult {
    results
        .questions
        .iter()
        .find(|question| question.question_id == id)
        .unwrap_or_else(|| panic!("no result for {id}"))
}

async fn activity_state(
    app: &TestApp,
    enrollment_id: &str,
    activity_id: &str,
) -> pb::ActivityState {
    let view = progress(app)
        .get_enrollment_progress(app.admin(pb::GetEnrollmentProgressRequest {
            enrollment_id: enrollment_id.to_owned(),
        }))
        .await
        .expect("progress")
        .into_inner();
    view.courses
        .iter()
        .flat_map(|course| &course.modules)
        .flat_map(|module| &module.activities)
        .find(|activity| activity.activity_id == activity_id)
        .map(|activity| activity.state())
        .expect("activity in progress view")
}

/// Hours entered by officer `index` of 270: 246 saved time (the first 33 four hours, the next
/// 213 three and a half), 24 saved none.
fn pilot_hours(index: usize) -> f64 {
    match index {
        0..33 => 4.0,
        33..246 => 3.5,
        _ => 0.0,
    }
}

#[tokio::test]
async fn the_ai_at_work_pilot_reproduces_the_share_and_mean_entered() {
    let (app, _database) = spawn_app().await;
    // 200 officers of one ministry, 70 of another: 270 in the pilot.
    let pilot = pilot(&app, &[200, 70]).await;
    assert_eq!(pilot.officers.len(), 270);

    let submissions =
        pilot
            .officers
            .iter()
            .enumerate()
            .map(|(index, (person_id, enrollment_id, _))| {
                let app = &app;
                let survey_id = pilot.survey_id.clone();
                async move {
                    let hours = pilot_hours(index);
                    let saved = if hours > 0.0 { "Yes" } else { "No" };
                    let mut answers = vec![
                        answer("saved_time", Value::Choice(saved.to_owned())),
                        answer("hours_saved", Value::Number(hours)),
                        answer("usefulness", Value::Scale(if hours > 0.0 { 4 } else { 2 })),
                    ];
                    if index % 10 == 0 {
                        answers.push(answer("comments", Value::Text(format!("note {index:03}"))));
                    }
                    let learner = app.token(person_id, &[Role::Learner], None);
                    submit(app, &learner, enrollment_id, &survey_id, answers)
                        .await
                        .expect("submit")
                }
            });
    let responses: Vec<pb::SurveyResponse> = futures::stream::iter(submissions)
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(responses.len(), 270);

    let entered: Vec<f64> = (0..270).map(pilot_hours).collect();
    let entered_mean = entered.iter().sum::<f64>() / entered.len() as f64;
    let entered_savers = entered.iter().filter(|hours| **hours > 0.0).count();
    assert_eq!(entered_mean, 3.25, "the data set is the pilot's");

    let everyone = results(
        &app,
        &app.admin_token(),
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            programme_id: pilot.programme_id.clone(),
            threshold: Some(0.0),
            ..Default::default()
        },
    )
    .await
    .expect("results");
    assert_eq!(everyone.response_count, 270);
    let hours = question_result(&everyone, "hours_saved");
    assert_eq!(hours.unit, "hours saved per week");
    assert_eq!(hours.answer_count, 270);
    assert!((hours.mean.unwrap() - entered_mean).abs() < 1e-12);
    assert_eq!(hours.median, Some(3.5));
    let share = hours.share_above_threshold.unwrap();
    assert_eq!(share, entered_savers as f64 / 270.0);
    assert_eq!((share * 100.0).round(), 91.0, "91% saved time");
    assert_eq!(
        hours
            .distribution
            .iter()
            .map(|bucket| (bucket.lower, bucket.count))
            .collect::<Vec<_>>(),
        [(0.0, 24), (3.5, 213), (4.0, 33)]
    );
    let saved = question_result(&everyone, "saved_time");
    assert_eq!(saved.option_counts[0].option, "Yes");
    assert_eq!(saved.option_counts[0].count, entered_savers as i64);
    assert_eq!(saved.option_counts[1].count, 270 - entered_savers as i64);
    let usefulness = question_result(&everyone, "usefulness");
    assert_eq!(
        usefulness
            .distribution
            .iter()
            .map(|b| b.count)
            .collect::<Vec<_>>(),
        [0, 24, 0, 246, 0]
    );
    let comments = question_result(&everyone, "comments");
    assert!(!comments.free_text_withheld);
    assert_eq!(comments.answer_count, 27);
    let mut sorted = comments.free_text_answers.clone();
    sorted.sort();
    assert_eq!(comments.free_text_answers, sorted, "free text comes sorted");

    // The second ministry alone: by cohort and by organisation subtree, the same selection.
    let (ministry_b, cohort_b) = &pilot.ministries[1];
    let b_hours: Vec<f64> = (200..270).map(pilot_hours).collect();
    let b_mean = b_hours.iter().sum::<f64>() / b_hours.len() as f64;
    let b_share = b_hours.iter().filter(|hours| **hours > 0.0).count() as f64 / 70.0;
    for request in [
        pb::GetSurveyResultsRequest {
            cohort_id: cohort_b.clone(),
            ..Default::default()
        },
        pb::GetSurveyResultsRequest {
            organization_subtree: ministry_b.clone(),
            ..Default::default()
        },
    ] {
        let selection = results(
            &app,
            &app.token("hr-system", &[Role::HrService], None),
            pb::GetSurveyResultsRequest {
                activity_id: pilot.survey_id.clone(),
                threshold: Some(0.0),
                ..request
            },
        )
        .await
        .expect("results of one ministry");
        assert_eq!(selection.response_count, 70);
        let hours = question_result(&selection, "hours_saved");
        assert!((hours.mean.unwrap() - b_mean).abs() < 1e-12);
        assert_eq!(hours.share_above_threshold, Some(b_share));
    }

    // An org admin of the second ministry sees their subtree by default, nothing above it.
    let org_admin = app.token("org-admin-b", &[Role::OrgAdmin], Some(ministry_b));
    let own = results(
        &app,
        &org_admin,
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("own subtree");
    assert_eq!(own.response_count, 70);
    let status = results(
        &app,
        &org_admin,
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            organization_subtree: pilot.ministries[0].0.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Learners never read aggregates.
    let (person_id, enrollment_id, _) = &pilot.officers[0];
    let learner = app.token(person_id, &[Role::Learner], None);
    let status = results(
        &app,
        &learner,
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Answering completed the survey activity, and nothing else.
    assert_eq!(
        activity_state(&app, enrollment_id, &pilot.survey_id).await,
        pb::ActivityState::Completed
    );
    assert_eq!(
        activity_state(&app, enrollment_id, &pilot.lecture_id).await,
        pb::ActivityState::NotStarted
    );
}

#[tokio::test]
async fn free_text_is_withheld_below_five_responses() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[5]).await;
    let request = pb::GetSurveyResultsRequest {
        activity_id: pilot.survey_id.clone(),
        cohort_id: pilot.ministries[0].1.clone(),
        ..Default::default()
    };
    for (index, (person_id, enrollment_id, _)) in pilot.officers.iter().enumerate() {
        let learner = app.token(person_id, &[Role::Learner], None);
        submit(
            &app,
            &learner,
            enrollment_id,
            &pilot.survey_id,
            vec![
                answer("saved_time", Value::Choice("Yes".to_owned())),
                answer("hours_saved", Value::Number(2.0)),
                answer("comments", Value::Text(format!("comment {index}"))),
            ],
        )
        .await
        .expect("submit");
        let results = results(&app, &app.admin_token(), request.clone())
            .await
            .expect("results");
        let comments = question_result(&results, "comments");
        assert_eq!(results.response_count, index as i64 + 1);
        assert_eq!(comments.answer_count, index as i64 + 1);
        if index < 4 {
            assert!(comments.free_text_withheld, "{} responses", index + 1);
            assert!(comments.free_text_answers.is_empty());
        } else {
            assert!(!comments.free_text_withheld);
            assert_eq!(
                comments.free_text_answers,
                (0..5).map(|i| format!("comment {i}")).collect::<Vec<_>>()
            );
        }
    }
    // A narrower selection of the same survey falls below the floor again.
    let (other_root, _) = &pilot.ministries[0];
    let narrower = results(
        &app,
        &app.admin_token(),
        pb::GetSurveyResultsRequest {
            organization_subtree: other_root.clone(),
            programme_id: uuid::Uuid::now_v7().to_string(),
            ..request
        },
    )
    .await
    .expect("results");
    assert_eq!(narrower.response_count, 0);
    assert!(question_result(&narrower, "comments").free_text_withheld);
}

#[tokio::test]
async fn bad_answers_name_the_field_and_write_nothing() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[2]).await;
    let (person_id, enrollment_id, _) = &pilot.officers[0];
    let learner = app.token(person_id, &[Role::Learner], None);
    let audit_before = app.audit_length().await;

    let cases: Vec<(Vec<pb::SurveyAnswer>, Vec<&str>)> = vec![
        (
            vec![
                answer("saved_time", Value::Choice("Maybe".to_owned())),
                answer("hours_saved", Value::Number(41.0)),
                answer("usefulness", Value::Scale(6)),
                answer("comments", Value::Text("x".repeat(2_001))),
            ],
            vec![
                "answers[0].choice",
                "answers[1].number",
                "answers[2].scale",
                "answers[3].text",
            ],
        ),
        (
            vec![
                answer("saved_time", Value::Scale(1)),
                answer("hours_saved", Value::Number(-1.0)),
                answer("no_such_question", Value::Scale(3)),
            ],
            vec![
                "answers[0].scale",
                "answers[1].number",
                "answers[2].question_id",
            ],
        ),
        (
            vec![answer("usefulness", Value::Scale(3))],
            vec!["answers", "answers"],
        ),
        (
            vec![
                answer("saved_time", Value::Choice("Yes".to_owned())),
                answer("hours_saved", Value::Number(f64::NAN)),
                pb::SurveyAnswer {
                    question_id: "usefulness".to_owned(),
                    value: None,
                },
            ],
            vec!["answers[1].number", "answers[2].scale"],
        ),
    ];
    for (answers, fields) in cases {
        let status = submit(&app, &learner, enrollment_id, &pilot.survey_id, answers)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), fields);
    }
    // Not a survey; not the learner's enrolment; a learner's own enrolment of another course.
    let status = submit(&app, &learner, enrollment_id, &pilot.lecture_id, Vec::new())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["activity_id"]);
    let (_, other_enrollment, _) = &pilot.officers[1];
    let status = submit(
        &app,
        &learner,
        other_enrollment,
        &pilot.survey_id,
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = submit(&app, &learner, "not-a-uuid", &pilot.survey_id, Vec::new())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["enrollment_id"]);
    let status = submit(
        &app,
        &app.token("hr-system", &[Role::HrService], None),
        enrollment_id,
        &pilot.survey_id,
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Nothing was written: no audit entry, no response, no progress.
    assert_eq!(app.audit_length().await, audit_before);
    let results = results(
        &app,
        &app.admin_token(),
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(results.response_count, 0);
    assert_eq!(
        activity_state(&app, enrollment_id, &pilot.survey_id).await,
        pb::ActivityState::NotStarted
    );
    // Thresholds must name SCALE or NUMBER questions of the survey.
    let status = surveys(&app)
        .get_survey_results(
            app.admin(pb::GetSurveyResultsRequest {
                activity_id: pilot.survey_id.clone(),
                question_thresholds: [("comments".to_owned(), 1.0), ("nope".to_owned(), 1.0)]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        ["question_thresholds[comments]", "question_thresholds[nope]"]
    );
}

#[tokio::test]
async fn a_second_submission_returns_the_first_response_unchanged() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[1]).await;
    let (person_id, enrollment_id, _) = &pilot.officers[0];
    let learner = app.token(person_id, &[Role::Learner], None);
    let first_answers = vec![
        answer("saved_time", Value::Choice("Yes".to_owned())),
        answer("hours_saved", Value::Number(3.25)),
    ];
    let audit_before = app.audit_length().await;
    let first = submit(
        &app,
        &learner,
        enrollment_id,
        &pilot.survey_id,
        first_answers.clone(),
    )
    .await
    .expect("first");
    assert_eq!(first.answers, first_answers);
    assert_eq!(&first.person_id, person_id);
    let audit_after_first = app.audit_length().await;
    assert!(
        audit_after_first > audit_before,
        "the submission is audited"
    );

    assert_eq!(&first.submitted_by, person_id, "the learner's own answers");

    // The same call again, then different answers: the first response comes back.
    let other_answers = vec![
        answer("saved_time", Value::Choice("No".to_owned())),
        answer("hours_saved", Value::Number(0.0)),
    ];
    for answers in [first_answers.clone(), other_answers.clone()] {
        let again = submit(&app, &learner, enrollment_id, &pilot.survey_id, answers)
            .await
            .expect("again");
        assert_eq!(again, first);
    }
    // Staff never replace the learner's own answers: a trainer of no session of the cohort may
    // not answer for them at all, and a manager who may is refused, not silently ignored.
    let trainer = app.token(&uuid::Uuid::now_v7().to_string(), &[Role::Trainer], None);
    let foreign = submit(
        &app,
        &trainer,
        enrollment_id,
        &pilot.survey_id,
        other_answers.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let on_behalf = submit(
        &app,
        &app.admin_token(),
        enrollment_id,
        &pilot.survey_id,
        other_answers,
    )
    .await
    .unwrap_err();
    assert_eq!(on_behalf.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&on_behalf), "SURVEY_ALREADY_ANSWERED");
    assert_eq!(
        app.audit_length().await,
        audit_after_first,
        "replays write nothing"
    );

    let view = progress(&app)
        .get_enrollment_progress(app.admin(pb::GetEnrollmentProgressRequest {
            enrollment_id: enrollment_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        view.event_count, 1,
        "one completion event, however many submissions"
    );
    assert_eq!(
        activity_state(&app, enrollment_id, &pilot.survey_id).await,
        pb::ActivityState::Completed
    );
    let results = results(
        &app,
        &app.admin_token(),
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(results.response_count, 1);
    assert_eq!(question_result(&results, "hours_saved").mean, Some(3.25));
}

#[tokio::test]
async fn answers_entered_on_a_learners_behalf_are_marked_and_the_learner_is_told_not_ignored() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[1]).await;
    let (person_id, enrollment_id, _) = &pilot.officers[0];
    let staff_answers = vec![
        answer("saved_time", Value::Choice("Yes".to_owned())),
        answer("hours_saved", Value::Number(2.0)),
    ];
    let entered = submit(
        &app,
        &app.admin_token(),
        enrollment_id,
        &pilot.survey_id,
        staff_answers.clone(),
    )
    .await
    .expect("entered on the learner's behalf");
    assert_eq!(&entered.person_id, person_id);
    assert_eq!(entered.submitted_by, "admin-1");

    let learner = app.token(person_id, &[Role::Learner], None);
    let audit_before = app.audit_length().await;
    let refused = submit(
        &app,
        &learner,
        enrollment_id,
        &pilot.survey_id,
        vec![
            answer("saved_time", Value::Choice("No".to_owned())),
            answer("hours_saved", Value::Number(0.0)),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "SURVEY_ALREADY_ANSWERED");
    assert_eq!(app.audit_length().await, audit_before, "nothing written");

    // The staff member's retry is a replay.
    let again = submit(
        &app,
        &app.admin_token(),
        enrollment_id,
        &pilot.survey_id,
        staff_answers,
    )
    .await
    .expect("replay");
    assert_eq!(again, entered);
}

#[tokio::test]
async fn concurrent_copies_of_one_submission_store_one_response() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[1]).await;
    let (person_id, enrollment_id, _) = &pilot.officers[0];
    let learner = app.token(person_id, &[Role::Learner], None);
    let copies = (0..16).map(|index| {
        let app = &app;
        let learner = learner.clone();
        let survey_id = pilot.survey_id.clone();
        async move {
            submit(
                app,
                &learner,
                enrollment_id,
                &survey_id,
                vec![
                    answer("saved_time", Value::Choice("Yes".to_owned())),
                    answer("hours_saved", Value::Number(f64::from(index))),
                ],
            )
            .await
            .expect("submit")
        }
    });
    let answers: Vec<pb::SurveyResponse> = futures::future::join_all(copies).await;
    assert!(answers.iter().all(|answer| *answer == answers[0]));
    let results = results(
        &app,
        &app.admin_token(),
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(results.response_count, 1);
}

#[tokio::test]
async fn survey_questions_are_set_on_drafts_frozen_on_publication_and_copied() {
    let (app, _database) = spawn_app().await;
    let provider = app
        .create_organization(
            "Vendor",
            OrganizationKind::TrainingCentre,
            None,
            Some("VEND"),
        )
        .await;
    let (course_id, version_id, module_id, lecture_id, survey_id) =
        draft_with_survey(&app, "SURV-1", &provider.id, pilot_questions()).await;
    let mut client = courses(&app);

    // Only SURVEY activities take questions; questions are validated field by field.
    let status = client
        .create_activity(app.admin(pb::CreateActivityRequest {
            module_id: module_id.clone(),
            activity: Some(pb::Activity {
                title: "A lab with questions".to_owned(),
                kind: Kind::Lab.into(),
                delivery_mode: Mode::Online.into(),
                survey_questions: pilot_questions(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["activity.survey_questions"]);
    let status = client
        .create_activity(app.admin(pb::CreateActivityRequest {
            module_id: module_id.clone(),
            activity: Some(pb::Activity {
                title: "A bad survey".to_owned(),
                kind: Kind::Survey.into(),
                delivery_mode: Mode::Online.into(),
                survey_questions: vec![
                    pb::SurveyQuestion {
                        options: vec!["Only one".to_owned()],
                        ..question("choice", SurveyQuestionKind::SingleChoice, true)
                    },
                    pb::SurveyQuestion {
                        min: Some(10.0),
                        max: Some(1.0),
                        ..question("choice", SurveyQuestionKind::Number, true)
                    },
                ],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "activity.survey_questions[0].options",
            "activity.survey_questions[1].id",
            "activity.survey_questions[1].max",
        ]
    );
    let status = client
        .update_activity(app.admin(pb::UpdateActivityRequest {
            activity: Some(pb::Activity {
                id: lecture_id.clone(),
                survey_questions: pilot_questions(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["survey_questions".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["activity.survey_questions"]);

    // A draft's questions may be replaced; positions follow the order sent.
    let mut reordered = pilot_questions();
    reordered.reverse();
    let updated = client
        .update_activity(app.admin(pb::UpdateActivityRequest {
            activity: Some(pb::Activity {
                id: survey_id.clone(),
                survey_questions: reordered,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["survey_questions".to_owned()],
            }),
        }))
        .await
        .expect("update questions")
        .into_inner();
    assert_eq!(updated.survey_questions[0].id, "comments");
    assert_eq!(
        updated
            .survey_questions
            .iter()
            .map(|question| question.position)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    // Published: frozen.
    let published = publish(&app, &version_id).await;
    let activity = &published.modules[0].activities[1];
    assert_eq!(activity.survey_questions, updated.survey_questions);
    let status = client
        .update_activity(app.admin(pb::UpdateActivityRequest {
            activity: Some(pb::Activity {
                id: survey_id.clone(),
                survey_questions: pilot_questions(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["survey_questions".to_owned()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "VERSION_PUBLISHED");

    // Copied with the version, to a new activity id.
    let copy = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id,
            copy_from_version_id: version_id,
            request_id: String::new(),
        }))
        .await
        .expect("copy")
        .into_inner();
    let copied = &copy.modules[0].activities[1];
    assert_ne!(copied.id, survey_id);
    assert_eq!(copied.survey_questions, updated.survey_questions);
}

async fn batch_submit(
    app: &TestApp,
    token: &str,
    requests: Vec<pb::SubmitSurveyResponseRequest>,
) -> Result<pb::BatchSubmitSurveyResponsesResponse, tonic::Status> {
    surveys(app)
        .batch_submit_survey_responses(with_token(
            pb::BatchSubmitSurveyResponsesRequest { requests },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_cohorts_paper_forms_go_in_one_call_all_or_nothing() {
    let (app, _database) = spawn_app().await;
    let pilot = pilot(&app, &[150, 120]).await;
    let admin = app.admin_token();
    let form = |index: usize| pb::SubmitSurveyResponseRequest {
        enrollment_id: pilot.officers[index].1.clone(),
        activity_id: pilot.survey_id.clone(),
        answers: vec![
            answer(
                "saved_time",
                Value::Choice(
                    if pilot_hours(index) > 0.0 {
                        "Yes"
                    } else {
                        "No"
                    }
                    .to_owned(),
                ),
            ),
            answer("hours_saved", Value::Number(pilot_hours(index))),
        ],
    };
    // In reverse order, so the answers must come back in request order, not lock order.
    let all: Vec<_> = (0..pilot.officers.len()).rev().map(form).collect();
    let audit_before = app.audit_length().await;

    // One bad answer refuses the whole batch and names it.
    let mut bad = all.clone();
    bad[200].answers[1] = answer("hours_saved", Value::Number(99.0));
    let refused = batch_submit(&app, &admin, bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let fields = violated_fields(&refused);
    assert!(
        fields
            .iter()
            .all(|field| field.starts_with("requests[200].answers[1]")),
        "{fields:?}"
    );
    // A repeated pair, an empty batch, an oversized one.
    let mut repeated = all.clone();
    repeated.push(all[3].clone());
    let refused = batch_submit(&app, &admin, repeated).await.unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        vec![format!("requests[{}].activity_id", all.len())]
    );
    for requests in [Vec::new(), vec![all[0].clone(); 1_001]] {
        let refused = batch_submit(&app, &admin, requests).await.unwrap_err();
        assert_eq!(violated_fields(&refused), vec!["requests".to_owned()]);
    }
    // Someone outside the cohorts may not answer for any of them.
    let stranger = app.token(&uuid::Uuid::now_v7().to_string(), &[Role::Trainer], None);
    let refused = batch_submit(&app, &stranger, all[..5].to_vec())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // One officer answered online first: the batch naming them is refused as a whole.
    let (own_person, own_enrollment, _) = &pilot.officers[7];
    let learner = app.token(own_person, &[Role::Learner], None);
    submit(
        &app,
        &learner,
        own_enrollment,
        &pilot.survey_id,
        form(7).answers,
    )
    .await
    .expect("the officer's own answers");
    let audit_after_own = app.audit_length().await;
    assert!(audit_after_own > audit_before);
    let position = all.len() - 1 - 7;
    let refused = batch_submit(&app, &admin, all.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "SURVEY_ALREADY_ANSWERED");
    assert!(
        refused
            .message()
            .starts_with(&format!("requests[{position}]")),
        "{}",
        refused.message()
    );
    assert_eq!(app.audit_length().await, audit_after_own, "nothing written");

    // Without them: every other form in one call, answers in request order.
    let mut rest = all.clone();
    rest.remove(position);
    let stored = batch_submit(&app, &admin, rest.clone())
        .await
        .expect("batch");
    assert_eq!(stored.created_count, 269);
    assert_eq!(stored.unchanged_count, 0);
    assert_eq!(stored.responses.len(), 269);
    for (request, response) in rest.iter().zip(&stored.responses) {
        assert_eq!(response.enrollment_id, request.enrollment_id);
        assert_eq!(response.answers, request.answers);
    }
    assert_eq!(
        activity_state(&app, &pilot.officers[0].1, &pilot.survey_id).await,
        pb::ActivityState::Completed
    );
    let summary = results(
        &app,
        &admin,
        pb::GetSurveyResultsRequest {
            activity_id: pilot.survey_id.clone(),
            threshold: Some(0.5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.response_count, 270);
    let hours = question_result(&summary, "hours_saved");
    let expected_mean = (0..270).map(pilot_hours).sum::<f64>() / 270.0;
    assert!((hours.mean.unwrap() - expected_mean).abs() < 1e-9);

    // The whole batch again (a retry after a lost answer) changes nothing.
    let audit_after_batch = app.audit_length().await;
    let replay = batch_submit(&app, &admin, rest).await.expect("replay");
    assert_eq!((replay.created_count, replay.unchanged_count), (0, 269));
    assert_eq!(replay.responses, stored.responses);
    assert_eq!(app.audit_length().await, audit_after_batch);
}
