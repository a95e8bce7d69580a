//! The BOLA matrix (RELIABILITY.md row 16, OWASP API1): every method that touches someone's
//! object, called by every role its method policy admits, on the caller's own object, on an
//! object of another ministry, and on an id that does not exist.
//!
//! The world has two mirrored sides, A and B: a ministry with a learner, a cohort, a session led
//! by a trainer, a track assessed by an assessor, candidacies, certificates, a selection call,
//! its application and panel. Every caller is on side A. What each role may reach comes from
//! `lms::auth::scope` (the tables the server enforces); this test checks that the server does
//! what they say, over a real socket:
//! - own object: the call is not refused for scope (it may fail for state, never for scope);
//! - someone else's object, or a missing id: PERMISSION_DENIED, the same answer, unless the role
//!   reaches everything of the kind; and nothing is written;
//! - lists: someone else's rows never come back; an organisation subtree outside the caller's
//!   is refused.
//!
//! A method with an object rule and no case here fails the test.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use lms::auth::{
    Role,
    policy::{Access, METHOD_POLICY},
    scope::{OBJECT_RULES, Object, Reach, Rule, reach_of},
};
use lms::pb::{
    self, OrganizationKind, ProgressSource as Source, ProgressVerb as Verb, SurveyQuestionKind,
    certification_service_client::CertificationServiceClient,
    delivery_service_client::DeliveryServiceClient, progress_service_client::ProgressServiceClient,
    report_service_client::ReportServiceClient, selection_service_client::SelectionServiceClient,
    survey_service_client::SurveyServiceClient,
};
use tonic::{Code, Request, Response, Status};

use crate::helpers::{
    StateChange, TestApp, TestDatabase, error_reason, person_record, spawn_app, with_token,
};
use crate::programmes::{create_programme, import_people, open_cohort, phase, programmes};

/// The objects of one side of the world; for the missing side, fresh ids of nothing.
#[derive(Debug, Clone, Default)]
struct Side {
    ministry: String,
    ministry_code: String,
    department: String,
    learner: String,
    spare: String,
    leaver: String,
    trainer: String,
    assessor: String,
    cohort: String,
    enrollment: String,
    assessor_enrollment: String,
    leaver_enrollment: String,
    session: String,
    track: String,
    candidacy: String,
    certificate: String,
    trainer_candidacy: String,
    trainer_certificate: String,
    call: String,
    application: String,
    panel: String,
    /// The placement of `enrollment` on the world's attachment, supervised by `trainer`.
    placement: String,
}

impl Side {
    fn missing() -> Self {
        let id = || uuid::Uuid::now_v7().to_string();
        Self {
            ministry: id(),
            ministry_code: "NOWHERE".to_owned(),
            department: id(),
            learner: id(),
            spare: id(),
            leaver: id(),
            trainer: id(),
            assessor: id(),
            cohort: id(),
            enrollment: id(),
            assessor_enrollment: id(),
            leaver_enrollment: id(),
            session: id(),
            track: id(),
            candidacy: id(),
            certificate: id(),
            trainer_candidacy: id(),
            trainer_certificate: id(),
            call: id(),
            application: id(),
            panel: id(),
            placement: id(),
        }
    }

    /// The person whose records a role reaches on this side, for `object`.
    fn person_for(&self, role: Role, object: Object) -> &str {
        match (object, role) {
            (Object::CandidacyRead | Object::CertificateRead | Object::Cascade, Role::Trainer) => {
                &self.trainer
            }
            (Object::Cascade, Role::Assessor) => &self.assessor,
            _ => &self.learner,
        }
    }

    fn candidacy_for(&self, role: Role) -> &str {
        if role == Role::Trainer {
            &self.trainer_candidacy
        } else {
            &self.candidacy
        }
    }

    fn certificate_for(&self, role: Role) -> &str {
        if role == Role::Trainer {
            &self.trainer_certificate
        } else {
            &self.certificate
        }
    }

    /// The enrolment a role answers a survey for: assessors answer only their own.
    fn survey_enrollment_for(&self, role: Role) -> &str {
        if role == Role::Assessor {
            &self.assessor_enrollment
        } else {
            &self.enrollment
        }
    }
}

/// Everything the cases need.
struct World {
    app: TestApp,
    _database: TestDatabase,
    a: Side,
    b: Side,
    missing: Side,
    programme: String,
    lecture: String,
    survey: String,
    tokens: HashMap<Role, String>,
    /// An optional industry attachment of the course (placements).
    attachment: String,
}

/// Which side's objects a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Foreign,
    Missing,
}

impl World {
    fn side(&self, target: Target) -> &Side {
        match target {
            Target::Own => &self.a,
            Target::Foreign => &self.b,
            Target::Missing => &self.missing,
        }
    }

    fn request<T>(&self, role: Role, message: T) -> Request<T> {
        with_token(message, &self.tokens[&role])
    }

    fn certs(&self) -> CertificationServiceClient<tonic::transport::Channel> {
        CertificationServiceClient::new(self.app.channel.clone())
    }

    fn delivery(&self) -> DeliveryServiceClient<tonic::transport::Channel> {
        DeliveryServiceClient::new(self.app.channel.clone())
    }

    fn progress(&self) -> ProgressServiceClient<tonic::transport::Channel> {
        ProgressServiceClient::new(self.app.channel.clone())
    }

    fn surveys(&self) -> SurveyServiceClient<tonic::transport::Channel> {
        SurveyServiceClient::new(self.app.channel.clone())
    }

    fn reports(&self) -> ReportServiceClient<tonic::transport::Channel> {
        ReportServiceClient::new(self.app.channel.clone())
    }

    fn selection(&self) -> SelectionServiceClient<tonic::transport::Channel> {
        SelectionServiceClient::new(self.app.channel.clone())
    }
}

/// What a call answered, as far as the matrix cares.
#[derive(Debug)]
enum Outcome {
    /// It went through; for lists, how many rows came back.
    Done(Option<usize>),
    /// It failed with this status.
    Failed(Status),
    /// A per-record batch (people) refused every record for this reason, writing nothing.
    RecordsRefused(String),
    /// The test has no case for the method.
    NoCase,
}

fn done<T>(result: Result<Response<T>, Status>, rows: impl FnOnce(&T) -> usize) -> Outcome {
    match result {
        Ok(response) => Outcome::Done(Some(rows(response.get_ref()))),
        Err(status) => Outcome::Failed(status),
    }
}

fn unit<T>(result: Result<Response<T>, Status>) -> Outcome {
    match result {
        Ok(_) => Outcome::Done(None),
        Err(status) => Outcome::Failed(status),
    }
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

fn hours_from_now(hours: i64) -> prost_types::Timestamp {
    let now = SystemTime::now();
    let shift = Duration::from_secs(hours.unsigned_abs() * 3600);
    timestamp(if hours >= 0 { now + shift } else { now - shift })
}

/// A progress event on `enrollment` of the lecture, from the source the role records.
fn event(world: &World, role: Role, enrollment: &str) -> pb::ProgressEvent {
    let source = match role {
        Role::Learner => Source::App,
        Role::HrService => Source::Import,
        _ => Source::Trainer,
    };
    pb::ProgressEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        enrollment_id: enrollment.to_owned(),
        activity_id: world.lecture.clone(),
        verb: Verb::Started.into(),
        duration_seconds: 60,
        occurred_time: Some(hours_from_now(-1)),
        source: source.into(),
        provenance_note: if source == Source::Import {
            "HRMIS export".to_owned()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// Ids of a batch: the own object alone, or the own one followed by the target's.
fn batch(own: &str, target: &str) -> Vec<String> {
    if own == target {
        vec![own.to_owned()]
    } else {
        vec![own.to_owned(), target.to_owned()]
    }
}

fn transition<R: StateChange>(id: &str) -> R {
    R::state_change(id, "bola matrix")
}

fn change<R: StateChange>(id: &str) -> R {
    R::state_change(id, "bola matrix")
}

fn completion_report(world: &World, side: &Side) -> pb::GetCompletionReportRequest {
    pb::GetCompletionReportRequest {
        programme_id: world.programme.clone(),
        organization_id: side.ministry.clone(),
        ..Default::default()
    }
}

/// Calls `method` as `role` on the objects of `side` (`own` is the caller's side).
#[allow(clippy::too_many_lines)]
async fn call(world: &World, method: &str, role: Role, side: &Side) -> Outcome {
    let own = &world.a;
    let name = method.rsplit('/').next().unwrap_or_default();
    match name {
        // Organisations and people.
        "CreateOrganization" => unit(
            world
                .app
                .organizations
                .clone()
                .create_organization(world.request(
                    role,
                    pb::CreateOrganizationRequest {
                        organization: Some(pb::Organization {
                            name: "Unit under test".to_owned(),
                            kind: OrganizationKind::Unit.into(),
                            parent_id: side.ministry.clone(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "UpdateOrganization" => unit(
            world
                .app
                .organizations
                .clone()
                .update_organization(world.request(
                    role,
                    pb::UpdateOrganizationRequest {
                        organization: Some(pb::Organization {
                            id: side.department.clone(),
                            name: "Renamed department".to_owned(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["name".to_owned()],
                        }),
                    },
                ))
                .await,
        ),
        "MoveOrganization" => unit(
            world
                .app
                .organizations
                .clone()
                .move_organization(world.request(
                    role,
                    pb::MoveOrganizationRequest {
                        id: side.department.clone(),
                        new_parent_id: side.ministry.clone(),
                        etag: String::new(),
                    },
                ))
                .await,
        ),
        "GetPerson" => unit(
            world
                .app
                .people
                .clone()
                .get_person(world.request(
                    role,
                    pb::GetPersonRequest {
                        id: side.learner.clone(),
                    },
                ))
                .await,
        ),
        "LookupPerson" => unit(
            world
                .app
                .people
                .clone()
                .lookup_person(world.request(
                    role,
                    pb::LookupPersonRequest {
                        external_id: external_id_of(world, &side.learner).await,
                    },
                ))
                .await,
        ),
        "BatchLookupPeople" => unit(
            world
                .app
                .people
                .clone()
                .batch_lookup_people(world.request(
                    role,
                    pb::BatchLookupPeopleRequest {
                        external_ids: vec![
                            external_id_of(world, &own.learner).await,
                            external_id_of(world, &side.learner).await,
                        ],
                    },
                ))
                .await,
        ),
        "ListPeople" => done(
            world
                .app
                .people
                .clone()
                .list_people(world.request(
                    role,
                    pb::ListPeopleRequest {
                        organization_subtree: side.ministry.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.people.len(),
        ),
        "UpdatePerson" => unit(
            world
                .app
                .people
                .clone()
                .update_person(world.request(
                    role,
                    pb::UpdatePersonRequest {
                        person: Some(pb::Person {
                            id: side.learner.clone(),
                            full_name: "Renamed Officer".to_owned(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["full_name".to_owned()],
                        }),
                    },
                ))
                .await,
        ),
        // HR imports answer per record (a refused record is reported, the others are taken):
        // the foreign call sends the foreign record alone.
        "BatchUpsertPeople" => {
            let records = [side.ministry_code.clone()]
                .into_iter()
                .enumerate()
                .map(|(index, code)| person_record(&format!("UPSERT-{code}-{index}"), &code))
                .collect();
            match world
                .app
                .people
                .clone()
                .batch_upsert_people(world.request(
                    role,
                    pb::BatchUpsertPeopleRequest {
                        people: records,
                        request_id: String::new(),
                    },
                ))
                .await
            {
                Ok(response) => match response.into_inner().errors.first() {
                    Some(error) => Outcome::RecordsRefused(error.reason.clone()),
                    None => Outcome::Done(None),
                },
                Err(status) => Outcome::Failed(status),
            }
        }
        "ImportPeople" => {
            let records: Vec<pb::ImportPeopleRequest> = [side.ministry_code.clone()]
                .into_iter()
                .enumerate()
                .map(|(index, code)| pb::ImportPeopleRequest {
                    message: Some(pb::import_people_request::Message::Person(person_record(
                        &format!("IMPORT-{code}-{index}"),
                        &code,
                    ))),
                })
                .collect();
            let count = records.len() as i64;
            let messages = records
                .into_iter()
                .chain(std::iter::once(pb::ImportPeopleRequest {
                    message: Some(pb::import_people_request::Message::Commit(
                        pb::ImportCommit {
                            record_count: count,
                        },
                    )),
                }));
            match world
                .app
                .people
                .clone()
                .import_people(world.request(role, tokio_stream::iter(messages)))
                .await
            {
                Ok(response) => match response.into_inner().errors.first() {
                    Some(error) => Outcome::RecordsRefused(error.reason.clone()),
                    None => Outcome::Done(None),
                },
                Err(status) => Outcome::Failed(status),
            }
        }
        "SyncPeople" => {
            let code = side.ministry_code.clone();
            let messages = [
                pb::SyncPeopleRequest {
                    message: Some(pb::sync_people_request::Message::Person(person_record(
                        &format!("SYNC-{code}-0"),
                        &code,
                    ))),
                },
                pb::SyncPeopleRequest {
                    message: Some(pb::sync_people_request::Message::Commit(pb::ImportCommit {
                        record_count: 1,
                    })),
                },
            ];
            match world
                .app
                .people
                .clone()
                .sync_people(world.request(role, tokio_stream::iter(messages)))
                .await
            {
                Ok(response) => {
                    let mut answers = response.into_inner();
                    let mut outcome = Outcome::Done(None);
                    loop {
                        match answers.message().await {
                            Ok(Some(answer)) => {
                                if let Some(refused) = answer
                                    .results
                                    .iter()
                                    .find(|result| !result.reason.is_empty())
                                {
                                    outcome = Outcome::RecordsRefused(refused.reason.clone());
                                }
                            }
                            Ok(None) => break outcome,
                            Err(status) => break Outcome::Failed(status),
                        }
                    }
                }
                Err(status) => Outcome::Failed(status),
            }
        }
        // Enrolments and progress.
        "Enroll" => unit(
            programmes(&world.app)
                .enroll(world.request(
                    role,
                    pb::EnrollRequest {
                        cohort_id: own.cohort.clone(),
                        person_id: side.spare.clone(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "BatchEnroll" => unit(
            programmes(&world.app)
                .batch_enroll(world.request(
                    role,
                    pb::BatchEnrollRequest {
                        cohort_id: own.cohort.clone(),
                        person_ids: batch(&own.spare, &side.spare),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "Withdraw" => unit(
            programmes(&world.app)
                .withdraw(world.request(
                    role,
                    pb::WithdrawRequest {
                        enrollment_id: side.leaver_enrollment.clone(),
                        reason: "bola matrix".to_owned(),
                        etag: String::new(),
                    },
                ))
                .await,
        ),
        "GetEnrollment" => unit(
            programmes(&world.app)
                .get_enrollment(world.request(
                    role,
                    pb::GetEnrollmentRequest {
                        id: side.enrollment.clone(),
                    },
                ))
                .await,
        ),
        "ListEnrollments" => done(
            programmes(&world.app)
                .list_enrollments(world.request(
                    role,
                    pb::ListEnrollmentsRequest {
                        person_id: side.person_for(role, Object::LearnerRecord).to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.enrollments.len(),
        ),
        "RecordProgress" => unit(
            world
                .progress()
                .record_progress(world.request(
                    role,
                    pb::RecordProgressRequest {
                        event: Some(event(world, role, &side.enrollment)),
                    },
                ))
                .await,
        ),
        "BatchRecordProgress" => unit(
            world
                .progress()
                .batch_record_progress(
                    world.request(
                        role,
                        pb::BatchRecordProgressRequest {
                            events: batch(&own.enrollment, &side.enrollment)
                                .iter()
                                .map(|enrollment| event(world, role, enrollment))
                                .collect(),
                        },
                    ),
                )
                .await,
        ),
        "StreamProgress" => {
            let events: Vec<pb::ProgressEvent> = batch(&own.enrollment, &side.enrollment)
                .iter()
                .map(|enrollment| event(world, role, enrollment))
                .collect();
            match world
                .progress()
                .stream_progress(world.request(role, tokio_stream::iter(events)))
                .await
            {
                Ok(response) => {
                    let mut acks = response.into_inner();
                    match acks.message().await {
                        Ok(_) => Outcome::Done(None),
                        Err(status) => Outcome::Failed(status),
                    }
                }
                Err(status) => Outcome::Failed(status),
            }
        }
        "GetEnrollmentProgress" => unit(
            world
                .progress()
                .get_enrollment_progress(world.request(
                    role,
                    pb::GetEnrollmentProgressRequest {
                        enrollment_id: side.enrollment.clone(),
                    },
                ))
                .await,
        ),
        "ListProgress" => done(
            world
                .progress()
                .list_progress(world.request(
                    role,
                    pb::ListProgressRequest {
                        person_id: side.person_for(role, Object::LearnerRecord).to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.progress.len(),
        ),
        // Placements: the sides' own already exist (ALREADY_EXISTS passes the scope check).
        "CreatePlacement" => unit(
            world
                .progress()
                .create_placement(world.request(
                    role,
                    pb::CreatePlacementRequest {
                        placement: Some(placement_of(
                            &side.enrollment,
                            &world.attachment,
                            &side.trainer,
                        )),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "GetPlacement" => unit(
            world
                .progress()
                .get_placement(world.request(
                    role,
                    pb::GetPlacementRequest {
                        id: side.placement.clone(),
                    },
                ))
                .await,
        ),
        "ListPlacements" => done(
            world
                .progress()
                .list_placements(world.request(
                    role,
                    pb::ListPlacementsRequest {
                        enrollment_id: side.enrollment.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.placements.len(),
        ),
        "UpdatePlacement" => unit(
            world
                .progress()
                .update_placement(world.request(
                    role,
                    pb::UpdatePlacementRequest {
                        placement: Some(pb::Placement {
                            id: side.placement.clone(),
                            supervisor_person_ids: vec![side.trainer.clone()],
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["supervisor_person_ids".to_owned()],
                        }),
                    },
                ))
                .await,
        ),
        // Surveys.
        "SubmitSurveyResponse" => unit(
            world
                .surveys()
                .submit_survey_response(world.request(
                    role,
                    pb::SubmitSurveyResponseRequest {
                        enrollment_id: side.survey_enrollment_for(role).to_owned(),
                        activity_id: world.survey.clone(),
                        answers: vec![pb::SurveyAnswer {
                            question_id: "useful".to_owned(),
                            value: Some(pb::survey_answer::Value::Scale(2)),
                        }],
                    },
                ))
                .await,
        ),
        "BatchSubmitSurveyResponses" => unit(
            world
                .surveys()
                .batch_submit_survey_responses(world.request(
                    role,
                    pb::BatchSubmitSurveyResponsesRequest {
                        requests: vec![pb::SubmitSurveyResponseRequest {
                            enrollment_id: side.survey_enrollment_for(role).to_owned(),
                            activity_id: world.survey.clone(),
                            answers: vec![pb::SurveyAnswer {
                                question_id: "useful".to_owned(),
                                value: Some(pb::survey_answer::Value::Scale(2)),
                            }],
                        }],
                    },
                ))
                .await,
        ),
        "GetSurveyResults" => done(
            world
                .surveys()
                .get_survey_results(world.request(
                    role,
                    pb::GetSurveyResultsRequest {
                        activity_id: world.survey.clone(),
                        organization_subtree: side.ministry.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            |results| results.response_count as usize,
        ),
        // Sessions.
        "RecordAttendance" => unit(
            world
                .delivery()
                .record_attendance(world.request(
                    role,
                    pb::RecordAttendanceRequest {
                        session_id: side.session.clone(),
                        person_ids: vec![side.learner.clone()],
                        status: pb::AttendanceStatus::Present.into(),
                    },
                ))
                .await,
        ),
        "ListAttendance" => unit(
            world
                .delivery()
                .list_attendance(world.request(
                    role,
                    pb::ListAttendanceRequest {
                        session_id: side.session.clone(),
                    },
                ))
                .await,
        ),
        "MarkDelivered" => unit(
            world
                .delivery()
                .mark_delivered(world.request(
                    role,
                    pb::MarkDeliveredRequest {
                        id: side.session.clone(),
                        etag: String::new(),
                    },
                ))
                .await,
        ),
        // Certification.
        "CreateCandidacy" => unit(
            world
                .certs()
                .create_candidacy(world.request(
                    role,
                    pb::CreateCandidacyRequest {
                        track_id: side.track.clone(),
                        person_id: side.spare.clone(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "GetCandidacy" => unit(
            world
                .certs()
                .get_candidacy(world.request(
                    role,
                    pb::GetCandidacyRequest {
                        id: side.candidacy_for(role).to_owned(),
                    },
                ))
                .await,
        ),
        "ListCandidacies" => done(
            world
                .certs()
                .list_candidacies(world.request(
                    role,
                    pb::ListCandidaciesRequest {
                        person_id: side.person_for(role, Object::CandidacyRead).to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.candidacies.len(),
        ),
        "StartTraining" => unit(
            world
                .certs()
                .start_training(world.request(role, transition(&side.candidacy)))
                .await,
        ),
        "BeginSupervisedPractice" => unit(
            world
                .certs()
                .begin_supervised_practice(world.request(role, transition(&side.candidacy)))
                .await,
        ),
        "SubmitForAssessment" => unit(
            world
                .certs()
                .submit_for_assessment(world.request(role, transition(&side.candidacy)))
                .await,
        ),
        "WithdrawCandidacy" => unit(
            world
                .certs()
                .withdraw_candidacy(world.request(role, transition(&side.candidacy)))
                .await,
        ),
        "RevokeCandidacy" => unit(
            world
                .certs()
                .revoke_candidacy(world.request(role, transition(&side.candidacy)))
                .await,
        ),
        "BatchCreateCandidacies" => unit(
            world
                .certs()
                .batch_create_candidacies(
                    world.request(
                        role,
                        pb::BatchCreateCandidaciesRequest {
                            track_id: side.track.clone(),
                            requests: batch(&own.spare, &side.spare)
                                .into_iter()
                                .map(|person_id| pb::CreateCandidacyRequest {
                                    person_id,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        },
                    ),
                )
                .await,
        ),
        "BatchAdvanceCandidacies" => unit(
            world
                .certs()
                .batch_advance_candidacies(world.request(
                    role,
                    pb::BatchAdvanceCandidaciesRequest {
                        step: pb::CandidacyStep::StartTraining.into(),
                        candidacy_ids: batch(&own.candidacy, &side.candidacy),
                        reason: "bola matrix".to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "RecordAssessment" => unit(
            world
                .certs()
                .record_assessment(world.request(
                    role,
                    pb::RecordAssessmentRequest {
                        id: side.candidacy.clone(),
                        score: 80,
                        approved: true,
                        reason: "bola matrix".to_owned(),
                        etag: String::new(),
                        issue_certificate: false,
                    },
                ))
                .await,
        ),
        "ExtendCandidacyDeadline" => unit(
            world
                .certs()
                .extend_candidacy_deadline(world.request(
                    role,
                    pb::ExtendCandidacyDeadlineRequest {
                        id: side.candidacy.clone(),
                        deadline_time: Some(hours_from_now(24 * 700)),
                        reason: "bola matrix".to_owned(),
                        etag: String::new(),
                    },
                ))
                .await,
        ),
        "IssueCertificate" => unit(
            world
                .certs()
                .issue_certificate(world.request(
                    role,
                    pb::IssueCertificateRequest {
                        candidacy_id: side.candidacy.clone(),
                        reason: "bola matrix".to_owned(),
                    },
                ))
                .await,
        ),
        "RecordSupervisedDelivery" => unit(
            world
                .certs()
                .record_supervised_delivery(world.request(
                    role,
                    pb::RecordSupervisedDeliveryRequest {
                        session_id: side.session.clone(),
                        candidate_id: side.learner.clone(),
                        outcome: pb::SupervisedDeliveryOutcome::Passed.into(),
                        notes: String::new(),
                    },
                ))
                .await,
        ),
        "GetCertificate" => unit(
            world
                .certs()
                .get_certificate(world.request(
                    role,
                    pb::GetCertificateRequest {
                        id: side.certificate_for(role).to_owned(),
                    },
                ))
                .await,
        ),
        "GetCertificateDocument" => unit(
            world
                .certs()
                .get_certificate_document(world.request(
                    role,
                    pb::GetCertificateDocumentRequest {
                        id: side.certificate_for(role).to_owned(),
                    },
                ))
                .await,
        ),
        "ListCertificates" => done(
            world
                .certs()
                .list_certificates(world.request(
                    role,
                    pb::ListCertificatesRequest {
                        person_id: side.person_for(role, Object::CertificateRead).to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.certificates.len(),
        ),
        "RenewCertificate" => unit(
            world
                .certs()
                .renew_certificate(world.request(role, change(&side.certificate)))
                .await,
        ),
        "SuspendCertificate" => unit(
            world
                .certs()
                .suspend_certificate(world.request(role, change(&side.certificate)))
                .await,
        ),
        "ReinstateCertificate" => unit(
            world
                .certs()
                .reinstate_certificate(world.request(role, change(&side.certificate)))
                .await,
        ),
        "RevokeCertificate" => unit(
            world
                .certs()
                .revoke_certificate(world.request(role, change(&side.certificate)))
                .await,
        ),
        "GetCascade" => unit(
            world
                .certs()
                .get_cascade(world.request(
                    role,
                    pb::GetCascadeRequest {
                        person_id: side.person_for(role, Object::Cascade).to_owned(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "GetCascadeReach" => unit(
            world
                .certs()
                .get_cascade_reach(world.request(
                    role,
                    pb::GetCascadeReachRequest {
                        person_id: side.person_for(role, Object::Cascade).to_owned(),
                        organization_level: 1,
                    },
                ))
                .await,
        ),
        // Reports.
        "GetCompletionReport" => unit(
            world
                .reports()
                .get_completion_report(world.request(role, completion_report(world, side)))
                .await,
        ),
        "GetCertificationReport" => unit(
            world
                .reports()
                .get_certification_report(world.request(
                    role,
                    pb::GetCertificationReportRequest {
                        track_id: own.track.clone(),
                        organization_id: side.ministry.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "ExportReport" => match world
            .reports()
            .export_report(world.request(
                role,
                pb::ExportReportRequest {
                    report: Some(completion_report(world, side)),
                },
            ))
            .await
        {
            Ok(response) => match response.into_inner().message().await {
                Ok(_) => Outcome::Done(None),
                Err(status) => Outcome::Failed(status),
            },
            Err(status) => Outcome::Failed(status),
        },
        // Selection.
        "SubmitApplication" => unit(
            world
                .selection()
                .submit_application(world.request(
                    role,
                    pb::SubmitApplicationRequest {
                        call_id: own.call.clone(),
                        person_id: if role == Role::Learner {
                            side.learner.clone()
                        } else {
                            side.spare.clone()
                        },
                        answers: vec![pb::Answer {
                            question_id: "motivation".to_owned(),
                            text: "To serve better".to_owned(),
                        }],
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "WithdrawApplication" => unit(
            world
                .selection()
                .withdraw_application(world.request(
                    role,
                    pb::WithdrawApplicationRequest {
                        id: side.application.clone(),
                        etag: String::new(),
                    },
                ))
                .await,
        ),
        "GetApplication" => unit(
            world
                .selection()
                .get_application(world.request(
                    role,
                    pb::GetApplicationRequest {
                        id: side.application.clone(),
                    },
                ))
                .await,
        ),
        "ListApplications" => done(
            world
                .selection()
                .list_applications(world.request(
                    role,
                    pb::ListApplicationsRequest {
                        call_id: side.call.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            |response| response.applications.len(),
        ),
        "GetPanel" => unit(
            world
                .selection()
                .get_panel(world.request(
                    role,
                    pb::GetPanelRequest {
                        id: side.panel.clone(),
                    },
                ))
                .await,
        ),
        "SubmitScore" => unit(
            world
                .selection()
                .submit_score(world.request(
                    role,
                    pb::SubmitScoreRequest {
                        application_id: side.application.clone(),
                        criterion_scores: vec![pb::CriterionScore {
                            criterion_id: "impact".to_owned(),
                            score: 7,
                        }],
                        comment: String::new(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "ListScores" => unit(
            world
                .selection()
                .list_scores(world.request(
                    role,
                    pb::ListScoresRequest {
                        application_id: side.application.clone(),
                    },
                ))
                .await,
        ),
        // Competencies.
        "GetCompetencyProfile" => unit(
            pb::competency_service_client::CompetencyServiceClient::new(world.app.channel.clone())
                .get_competency_profile(world.request(
                    role,
                    pb::GetCompetencyProfileRequest {
                        person_id: side.person_for(role, Object::LearnerRecord).to_owned(),
                        role_id: String::new(),
                    },
                ))
                .await,
        ),
        "SearchCompetencyHolders" => {
            let competency_id = bola_competency(&world.app).await;
            unit(
                pb::competency_service_client::CompetencyServiceClient::new(
                    world.app.channel.clone(),
                )
                .search_competency_holders(world.request(
                    role,
                    pb::SearchCompetencyHoldersRequest {
                        competency_id,
                        min_level: 1,
                        organization_subtree: side.ministry.clone(),
                        ..Default::default()
                    },
                ))
                .await,
            )
        }
        _ => Outcome::NoCase,
    }
}

/// Returns the id of the competency the holder-search cases ask about, created by an admin on
/// first use (when the world is built).
async fn bola_competency(app: &TestApp) -> String {
    let mut client =
        pb::competency_service_client::CompetencyServiceClient::new(app.channel.clone());
    let listed = client
        .list_competencies(app.admin(pb::ListCompetenciesRequest::default()))
        .await
        .expect("list competencies")
        .into_inner();
    if let Some(competency) = listed.competencies.into_iter().next() {
        return competency.id;
    }
    client
        .create_competency(app.admin(pb::CreateCompetencyRequest {
            competency: Some(pb::Competency {
                code: "BOLA-DATA".to_owned(),
                name: "Data analysis".to_owned(),
                levels: vec![pb::CompetencyLevel {
                    name: "Basic".to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create competency")
        .into_inner()
        .id
}

/// Returns the `external_id` of person `id`, read as admin; a made-up key for a missing person.
async fn external_id_of(world: &World, id: &str) -> String {
    match world
        .app
        .people
        .clone()
        .get_person(world.app.admin(pb::GetPersonRequest { id: id.to_owned() }))
        .await
    {
        Ok(person) => person.into_inner().external_id,
        Err(_) => format!("MISSING-{id}"),
    }
}

/// Methods in the order the own-object calls run: reads and mild changes first, then what ends
/// an object's life (a withdrawn application takes no score; a revoked certificate no renewal).
const LAST: &[&str] = &[
    "SubmitScore",
    "ListScores",
    "WithdrawApplication",
    "Withdraw",
    "RevokeCertificate",
    "WithdrawCandidacy",
    "RevokeCandidacy",
];

fn ordered_methods() -> Vec<(&'static str, Rule)> {
    let short = |method: &str| method.rsplit('/').next().unwrap_or_default().to_owned();
    let mut methods: Vec<(&'static str, Rule)> = OBJECT_RULES
        .iter()
        .filter(|(_, rule)| matches!(rule, Rule::Object(_) | Rule::Batch(_) | Rule::List(_)))
        .copied()
        .collect();
    methods.sort_by_key(|(method, _)| {
        LAST.iter()
            .position(|last| *last == short(method))
            .map_or(0, |position| position + 1)
    });
    methods
}

fn roles_of(method: &str) -> &'static [Role] {
    match METHOD_POLICY.iter().find(|(name, _)| *name == method) {
        Some((_, Access::Roles(roles))) => roles,
        _ => &Role::ALL,
    }
}

/// Returns true when the world makes the role reach its own-side object of `object`: every reach
/// the scope table gives is backed by data, except that only the side's trainer and assessor sit
/// on its panel (the other roles' "assigned" selection reach has no assignment behind it).
fn reaches_own(role: Role, object: Object) -> bool {
    let reach = reach_of(role, object);
    if reach.is_empty() {
        return false;
    }
    let judge_only = matches!(object, Object::Assignment | Object::Scores)
        && !reach.contains(&Reach::Everything);
    !judge_only || matches!(role, Role::Trainer | Role::Assessor)
}

fn kind_of(rule: Rule) -> Object {
    match rule {
        Rule::Object(object) | Rule::Batch(object) | Rule::List(object) => object,
        other => panic!("{other:?} touches no object"),
    }
}

/// Lists filtered by an organisation subtree refuse one outside the caller's; the others narrow.
fn refuses_foreign_filter(object: Object) -> bool {
    matches!(object, Object::Report | Object::PersonRead)
}

/// Organisations are a public directory, and the people handlers keep their own checks: a
/// missing id there answers NOT_FOUND (see docs/security.md); their missing ids are not asked.
fn asks_missing(object: Object) -> bool {
    !matches!(
        object,
        Object::Organization | Object::PersonRead | Object::PersonWrite | Object::Report
    )
}

fn is_denied(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Failed(status) => {
            status.code() == Code::PermissionDenied
                // A judge-to-be of the applicant's own ministry is told why they are not one.
                || error_reason(status) == "CONFLICT_OF_INTEREST"
        }
        Outcome::RecordsRefused(reason) => reason == "OUTSIDE_ORGANIZATION_SCOPE",
        _ => false,
    }
}

/// Checks one call against what the scope table says; returns a complaint, if any.
fn judge(
    method: &str,
    rule: Rule,
    role: Role,
    target: Target,
    outcome: &Outcome,
) -> Option<String> {
    let object = kind_of(rule);
    let everything = reach_of(role, object).contains(&Reach::Everything);
    let list = matches!(rule, Rule::List(_));
    let complaint = |what: &str| {
        Some(format!(
            "{method} as {role} on {target:?}: {what}, got {outcome:?}"
        ))
    };
    if let Outcome::NoCase = outcome {
        return Some(format!(
            "{method} has an object rule but no BOLA case in tests/api/bola.rs"
        ));
    }
    let allowed = match target {
        Target::Own => reaches_own(role, object),
        Target::Foreign | Target::Missing => everything,
    };
    if allowed {
        return match outcome {
            Outcome::Failed(status)
                if matches!(
                    status.code(),
                    Code::PermissionDenied
                        | Code::InvalidArgument
                        | Code::Unauthenticated
                        | Code::Internal
                ) || (target == Target::Own && status.code() == Code::NotFound) =>
            {
                complaint("expected it to pass the scope check")
            }
            Outcome::RecordsRefused(_) => complaint("expected the records to be taken"),
            Outcome::Done(Some(0)) if list && target != Target::Missing => {
                complaint("expected rows the caller reaches")
            }
            _ => None,
        };
    }
    if list && !refuses_foreign_filter(object) {
        return match outcome {
            Outcome::Done(Some(0)) => None,
            _ => complaint("expected no row of someone else"),
        };
    }
    if is_denied(outcome) {
        if let Outcome::Failed(status) = outcome
            && !matches!(
                error_reason(status).as_str(),
                "OUT_OF_SCOPE"
                    | "OUTSIDE_ORGANIZATION_SCOPE"
                    | "NOT_YOUR_APPLICATION"
                    | "OWN_APPLICATION_ONLY"
                    | "NOT_ASSIGNED"
                    | "NOT_YOUR_PANEL"
                    | "BLIND_SCORING"
                    | "CONFLICT_OF_INTEREST"
            )
        {
            return complaint("expected a scope refusal");
        }
        return None;
    }
    complaint("expected PERMISSION_DENIED")
}

/// Builds the two sides and the shared catalogue.
async fn world() -> World {
    let (app, database) = spawn_app().await;
    let academy = app
        .create_organization(
            "Trainer Academy",
            OrganizationKind::TrainingCentre,
            None,
            Some("ACADEMY"),
        )
        .await;
    let version = crate::surveys::draft_with_survey(
        &app,
        "BOLA",
        &academy.id,
        vec![pb::SurveyQuestion {
            id: "useful".to_owned(),
            text: "How useful was it?".to_owned(),
            kind: SurveyQuestionKind::Scale.into(),
            required: true,
            ..Default::default()
        }],
    )
    .await;
    let (course_id, version_id, module_id, lecture, survey) = version;
    let attachment = crate::programmes::courses(&app)
        .create_activity(app.admin(pb::CreateActivityRequest {
            module_id: module_id.clone(),
            activity: Some(pb::Activity {
                title: "Attachment".to_owned(),
                kind: pb::ActivityKind::IndustryAttachment.into(),
                delivery_mode: pb::DeliveryMode::InPerson.into(),
                host_organization_id: academy.id.clone(),
                required: false,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("attachment")
        .into_inner()
        .id;
    crate::surveys::publish(&app, &version_id).await;
    let programme = create_programme(
        &app,
        "BOLA",
        &academy.id,
        &[],
        vec![phase("Only", &[&version_id], "", 5)],
    )
    .await;
    let admin = app.admin_token();
    let mut tokens = HashMap::new();
    let mut sides = Vec::new();
    for (letter, name) in [("A", "Ministry A"), ("B", "Ministry B")] {
        let code = format!("MIN-{letter}");
        let ministry = app
            .create_organization(name, OrganizationKind::Ministry, None, Some(&code))
            .await;
        let department_code = format!("DEP-{letter}");
        let department = app
            .create_organization(
                &format!("{name} department"),
                OrganizationKind::Department,
                Some(&ministry.id),
                Some(&department_code),
            )
            .await;
        let officers = import_people(
            &app,
            &format!("{letter}-OFF"),
            &department_code,
            3,
            pb::Sector::Public,
        )
        .await;
        let staff = import_people(
            &app,
            &format!("{letter}-ACA"),
            "ACADEMY",
            2,
            pb::Sector::Public,
        )
        .await;
        let mut side = Side {
            ministry: ministry.id.clone(),
            ministry_code: code,
            department: department.id,
            learner: officers[0].clone(),
            spare: officers[1].clone(),
            leaver: officers[2].clone(),
            trainer: staff[0].clone(),
            assessor: staff[1].clone(),
            ..Side::default()
        };
        let certs = CertificationServiceClient::new(app.channel.clone());
        let track = certs
            .clone()
            .create_certification_track(app.admin(pb::CreateCertificationTrackRequest {
                track: Some(pb::CertificationTrack {
                    code: format!("BOLA-{letter}"),
                    title: format!("Track {letter}"),
                    level: pb::TrackLevel::Trainer.into(),
                    qualifies_course_ids: vec![course_id.clone()],
                    requirements: Some(pb::TrackRequirements::default()),
                    validity_months: 24,
                    scope: pb::TrackScope::Any.into(),
                    issuer_organization_id: academy.id.clone(),
                    assessor_ids: vec![side.assessor.clone()],
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("track")
            .into_inner();
        side.track = track.id.clone();
        for person in [side.trainer.clone(), side.learner.clone()] {
            let candidacy = certs
                .clone()
                .create_candidacy(app.admin(pb::CreateCandidacyRequest {
                    track_id: track.id.clone(),
                    person_id: person.clone(),
                    request_id: String::new(),
                }))
                .await
                .expect("candidacy")
                .into_inner();
            certs
                .clone()
                .start_training(app.admin(transition(&candidacy.id)))
                .await
                .unwrap();
            certs
                .clone()
                .begin_supervised_practice(app.admin(transition(&candidacy.id)))
                .await
                .unwrap();
            certs
                .clone()
                .submit_for_assessment(app.admin(transition(&candidacy.id)))
                .await
                .unwrap();
            let certificate = certs
                .clone()
                .issue_certificate(app.admin(pb::IssueCertificateRequest {
                    candidacy_id: candidacy.id.clone(),
                    reason: "certified".to_owned(),
                }))
                .await
                .expect("certificate")
                .into_inner();
            if person == side.trainer {
                side.trainer_candidacy = candidacy.id;
                side.trainer_certificate = certificate.id;
            } else {
                side.candidacy = candidacy.id;
                side.certificate = certificate.id;
            }
        }
        let cohort = open_cohort(
            &app,
            &programme.id,
            pb::Cohort {
                name: format!("Cohort {letter}"),
                capacity: 100,
                ..Default::default()
            },
        )
        .await;
        side.cohort = cohort.id.clone();
        let enrolled = programmes(&app)
            .batch_enroll(app.admin(pb::BatchEnrollRequest {
                cohort_id: cohort.id.clone(),
                person_ids: vec![
                    side.learner.clone(),
                    side.leaver.clone(),
                    side.assessor.clone(),
                ],
                request_id: String::new(),
            }))
            .await
            .expect("enrol")
            .into_inner();
        let ids: Vec<String> = enrolled
            .results
            .into_iter()
            .map(|result| result.enrollment.expect("enrolled").id)
            .collect();
        side.enrollment = ids[0].clone();
        side.leaver_enrollment = ids[1].clone();
        side.assessor_enrollment = ids[2].clone();
        side.placement = ProgressServiceClient::new(app.channel.clone())
            .create_placement(app.admin(pb::CreatePlacementRequest {
                placement: Some(placement_of(&side.enrollment, &attachment, &side.trainer)),
                request_id: String::new(),
            }))
            .await
            .expect("placement")
            .into_inner()
            .id;
        let session = DeliveryServiceClient::new(app.channel.clone())
            .create_session(app.admin(pb::CreateSessionRequest {
                session: Some(pb::Session {
                    cohort_id: cohort.id.clone(),
                    module_id: module_id.clone(),
                    start_time: Some(hours_from_now(-3)),
                    end_time: Some(hours_from_now(-2)),
                    location: format!("Room {letter}"),
                    lead_trainer_id: side.trainer.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("session")
            .into_inner();
        side.session = session.id;
        let learner = app.token(&side.learner, &[Role::Learner], None);
        SurveyServiceClient::new(app.channel.clone())
            .submit_survey_response(with_token(
                pb::SubmitSurveyResponseRequest {
                    enrollment_id: side.enrollment.clone(),
                    activity_id: survey.clone(),
                    answers: vec![pb::SurveyAnswer {
                        question_id: "useful".to_owned(),
                        value: Some(pb::survey_answer::Value::Scale(4)),
                    }],
                },
                &learner,
            ))
            .await
            .expect("the learner's own answers");
        let selection = SelectionServiceClient::new(app.channel.clone());
        let call = selection
            .clone()
            .create_call(app.admin(pb::CreateCallRequest {
                call: Some(pb::Call {
                    cohort_id: cohort.id.clone(),
                    title: format!("Call {letter}"),
                    opens_time: Some(hours_from_now(-1)),
                    closes_time: Some(hours_from_now(24)),
                    questions: vec![pb::Question {
                        id: "motivation".to_owned(),
                        text: "Why?".to_owned(),
                        required: true,
                    }],
                    rubric: vec![pb::Criterion {
                        id: "impact".to_owned(),
                        title: "Impact".to_owned(),
                        weight: 1,
                    }],
                    seats: 10,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("call")
            .into_inner();
        side.call = call.id.clone();
        let application = selection
            .clone()
            .submit_application(with_token(
                pb::SubmitApplicationRequest {
                    call_id: call.id.clone(),
                    person_id: side.learner.clone(),
                    answers: vec![pb::Answer {
                        question_id: "motivation".to_owned(),
                        text: "To lead change".to_owned(),
                    }],
                    request_id: String::new(),
                },
                &learner,
            ))
            .await
            .expect("application")
            .into_inner();
        side.application = application.id;
        let panel = selection
            .clone()
            .create_panel(app.admin(pb::CreatePanelRequest {
                panel: Some(pb::Panel {
                    call_id: call.id.clone(),
                    judge_person_ids: vec![side.trainer.clone(), side.assessor.clone()],
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("panel")
            .into_inner();
        side.panel = panel.id;
        if letter == "A" {
            tokens.insert(Role::Admin, admin.clone());
            tokens.insert(
                Role::ProgrammeManager,
                app.token("pm-1", &[Role::ProgrammeManager], None),
            );
            tokens.insert(Role::HrService, app.token("hr-1", &[Role::HrService], None));
            tokens.insert(
                Role::OrgAdmin,
                app.token("org-admin-a", &[Role::OrgAdmin], Some(&ministry.id)),
            );
            tokens.insert(
                Role::Trainer,
                app.token(&side.trainer, &[Role::Trainer], None),
            );
            tokens.insert(
                Role::Assessor,
                app.token(&side.assessor, &[Role::Assessor], None),
            );
            tokens.insert(Role::Learner, learner);
        }
        sides.push(side);
    }
    let b = sides.pop().unwrap();
    let a = sides.pop().unwrap();
    // Created before any counted call, so that the holder-search cases write nothing.
    bola_competency(&app).await;
    World {
        app,
        _database: database,
        a,
        b,
        missing: Side::missing(),
        programme: programme.id,
        lecture,
        survey,
        tokens,
        attachment,
    }
}

/// Returns a placement of `enrollment` on `activity` at an external host, under `supervisor`.
fn placement_of(enrollment: &str, activity: &str, supervisor: &str) -> pb::Placement {
    pb::Placement {
        enrollment_id: enrollment.to_owned(),
        activity_id: activity.to_owned(),
        host: Some(pb::PlacementHost {
            name: "Host GmbH".to_owned(),
            country_code: "DE".to_owned(),
            ..Default::default()
        }),
        supervisor_person_ids: vec![supervisor.to_owned()],
        ..Default::default()
    }
}

/// Returns the number of progress events of the enrolments of both sides.
async fn event_counts(world: &World) -> Vec<i64> {
    let mut counts = Vec::new();
    for side in [&world.a, &world.b] {
        for enrollment in [
            &side.enrollment,
            &side.assessor_enrollment,
            &side.leaver_enrollment,
        ] {
            let view = world
                .progress()
                .get_enrollment_progress(world.app.admin(pb::GetEnrollmentProgressRequest {
                    enrollment_id: enrollment.clone(),
                }))
                .await
                .expect("progress")
                .into_inner();
            counts.push(view.event_count);
        }
    }
    counts
}

#[tokio::test]
async fn every_object_method_refuses_someone_elses_object_and_missing_ids_alike() {
    let started = Instant::now();
    let world = world().await;
    let methods = ordered_methods();
    let mut complaints = Vec::new();
    let mut calls = 0;

    // First every call that must be refused: none may write anything (an audit entry, or
    // progress: a batch with one foreign id records nothing, not even its own events).
    let events_before = event_counts(&world).await;
    for (method, rule) in &methods {
        let object = kind_of(*rule);
        let audit_before = world.app.audit_length().await;
        for role in roles_of(method) {
            if reach_of(*role, object).contains(&Reach::Everything) {
                continue;
            }
            for target in [Target::Foreign, Target::Missing] {
                if target == Target::Missing && !asks_missing(object) {
                    continue;
                }
                let outcome = call(&world, method, *role, world.side(target)).await;
                calls += 1;
                complaints.extend(judge(method, *rule, *role, target, &outcome));
            }
        }
        let audit_after = world.app.audit_length().await;
        if audit_after != audit_before {
            complaints.push(format!(
                "{method}: refused calls wrote {} audit entries",
                audit_after - audit_before
            ));
        }
    }
    assert_eq!(
        event_counts(&world).await,
        events_before,
        "a refused call recorded progress"
    );

    // Then the callers' own objects, and everyone's for the roles that reach everything.
    for target in [Target::Own, Target::Foreign, Target::Missing] {
        for (method, rule) in &methods {
            let object = kind_of(*rule);
            for role in roles_of(method) {
                let everything = reach_of(*role, object).contains(&Reach::Everything);
                if target != Target::Own && (!everything || !asks_missing(object)) {
                    continue;
                }
                let outcome = call(&world, method, *role, world.side(target)).await;
                calls += 1;
                complaints.extend(judge(method, *rule, *role, target, &outcome));
            }
        }
    }
    assert!(
        complaints.is_empty(),
        "{} of {calls} calls broke the scope rules:\n{}",
        complaints.len(),
        complaints.join("\n")
    );
    eprintln!("bola matrix: {calls} calls in {:?}", started.elapsed());
}

#[test]
fn every_method_with_an_object_rule_is_in_the_matrix() {
    // The matrix enumerates OBJECT_RULES, so a new method is called; `call` then answers NoCase
    // unless it has a case, and the matrix fails naming it. This keeps that promise honest: the
    // rules cover every method of the policy (the unit tests of `lms::auth::scope` check it too).
    for (method, _) in METHOD_POLICY {
        assert!(
            OBJECT_RULES.iter().any(|(name, _)| name == method),
            "{method} has no object rule"
        );
    }
}

#[tokio::test]
async fn lists_without_filters_return_only_what_the_caller_reaches() {
    let world = world().await;
    let as_role = |role: Role| world.tokens[&role].clone();

    let certificates = world
        .certs()
        .list_certificates(with_token(
            pb::ListCertificatesRequest::default(),
            &as_role(Role::OrgAdmin),
        ))
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert!(!certificates.is_empty());
    assert!(
        certificates
            .iter()
            .all(|certificate| certificate.person_id == world.a.learner),
        "an org admin lists the certificates of their subtree only"
    );

    let candidacies = world
        .certs()
        .list_candidacies(with_token(
            pb::ListCandidaciesRequest::default(),
            &as_role(Role::Assessor),
        ))
        .await
        .unwrap()
        .into_inner()
        .candidacies;
    assert_eq!(
        candidacies.len(),
        2,
        "the two candidacies of the track they assess"
    );
    assert!(
        candidacies
            .iter()
            .all(|candidacy| candidacy.track_id == world.a.track)
    );

    let progress = world
        .progress()
        .list_progress(with_token(
            pb::ListProgressRequest {
                cohort_id: world.b.cohort.clone(),
                ..Default::default()
            },
            &as_role(Role::Trainer),
        ))
        .await
        .unwrap()
        .into_inner()
        .progress;
    assert!(
        progress.is_empty(),
        "a trainer sees nothing of a cohort they do not train"
    );
    let progress = world
        .progress()
        .list_progress(with_token(
            pb::ListProgressRequest::default(),
            &as_role(Role::Trainer),
        ))
        .await
        .unwrap()
        .into_inner()
        .progress;
    assert_eq!(progress.len(), 3);
    assert!(progress.iter().all(|row| row.cohort_id == world.a.cohort));

    let enrollments = programmes(&world.app)
        .list_enrollments(with_token(
            pb::ListEnrollmentsRequest::default(),
            &as_role(Role::Assessor),
        ))
        .await
        .unwrap()
        .into_inner()
        .enrollments;
    let people: Vec<&str> = enrollments.iter().map(|e| e.person_id.as_str()).collect();
    assert_eq!(
        people.len(),
        2,
        "an assessor sees their own enrolment and their candidates': {people:?}"
    );
    assert!(people.contains(&world.a.learner.as_str()));
    assert!(people.contains(&world.a.assessor.as_str()));
}

#[tokio::test]
async fn certified_trainers_are_listed_to_a_verifier_with_what_a_verifier_needs_only() {
    let world = world().await;
    let list = |role: Role| {
        let world = &world;
        async move {
            world
                .certs()
                .list_certified_trainers(
                    world.request(role, pb::ListCertifiedTrainersRequest::default()),
                )
                .await
                .unwrap()
                .into_inner()
                .trainers
        }
    };
    let full = list(Role::ProgrammeManager).await;
    assert_eq!(full.len(), 4, "two certified people per side");
    assert!(full.iter().all(|row| {
        !row.person_id.is_empty()
            && !row.organization_id.is_empty()
            && !row
                .certificate
                .as_ref()
                .unwrap()
                .verification_code
                .is_empty()
    }));

    let minimal = list(Role::Learner).await;
    assert_eq!(minimal.len(), 4);
    for row in &minimal {
        let certificate = row.certificate.as_ref().unwrap();
        let own = row.person_id == world.a.learner;
        if own {
            continue;
        }
        assert!(!row.full_name.is_empty(), "a verifier needs the name");
        assert!(
            row.person_id.is_empty() && row.organization_id.is_empty(),
            "{row:?}"
        );
        assert!(
            certificate.verification_code.is_empty()
                && certificate.id.is_empty()
                && certificate.candidacy_id.is_empty()
                && certificate.person_id.is_empty(),
            "{row:?}"
        );
        assert!(!certificate.track_id.is_empty() && certificate.expires_time.is_some());
        assert_eq!(certificate.status(), pb::CertificateStatus::Active);
    }
    assert_eq!(
        minimal
            .iter()
            .filter(|row| !row.person_id.is_empty())
            .count(),
        1,
        "a learner sees their own certificate in full, nobody else's"
    );

    // An org admin sees the holders of their subtree in full, the others as a verifier does.
    let by_org_admin = list(Role::OrgAdmin).await;
    let full_rows: Vec<&str> = by_org_admin
        .iter()
        .filter(|row| !row.person_id.is_empty())
        .map(|row| row.person_id.as_str())
        .collect();
    assert_eq!(full_rows, vec![world.a.learner.as_str()]);
}

#[tokio::test]
async fn an_assessor_acts_only_on_the_tracks_that_name_them_and_managers_set_who_they_are() {
    let world = world().await;
    let assessor = world.tokens[&Role::Assessor].clone();
    let suspend = |id: String| {
        let world = &world;
        let assessor = assessor.clone();
        async move {
            world
                .certs()
                .suspend_certificate(with_token(change(&id), &assessor))
                .await
        }
    };
    let refused = suspend(world.b.certificate.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A manager names them on track B too: now they may; without it again, no more.
    let certs = world.certs();
    let named = certs
        .clone()
        .set_track_assessors(world.request(
            Role::ProgrammeManager,
            pb::SetTrackAssessorsRequest {
                track_id: world.b.track.clone(),
                assessor_ids: vec![world.b.assessor.clone(), world.a.assessor.clone()],
                etag: String::new(),
            },
        ))
        .await
        .expect("set assessors")
        .into_inner();
    assert_eq!(named.assessor_ids.len(), 2);
    suspend(world.b.certificate.clone())
        .await
        .expect("an assessor of track B suspends its certificate");
    let stale = certs
        .clone()
        .set_track_assessors(world.request(
            Role::ProgrammeManager,
            pb::SetTrackAssessorsRequest {
                track_id: world.b.track.clone(),
                assessor_ids: vec![world.b.assessor.clone()],
                etag: "\"1\"".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "a stale etag");
    certs
        .clone()
        .set_track_assessors(world.request(
            Role::ProgrammeManager,
            pb::SetTrackAssessorsRequest {
                track_id: world.b.track.clone(),
                assessor_ids: vec![world.b.assessor.clone()],
                etag: named.etag,
            },
        ))
        .await
        .expect("unname");
    let refused = world
        .certs()
        .reinstate_certificate(with_token(change(&world.b.certificate), &assessor))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Assessors are people who exist; an assessor never assesses themself.
    let unknown = certs
        .clone()
        .set_track_assessors(world.app.admin(pb::SetTrackAssessorsRequest {
            track_id: world.b.track.clone(),
            assessor_ids: vec![uuid::Uuid::now_v7().to_string()],
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let learner_as_assessor = world.app.token(&world.a.learner, &[Role::Assessor], None);
    certs
        .clone()
        .set_track_assessors(world.app.admin(pb::SetTrackAssessorsRequest {
            track_id: world.a.track.clone(),
            assessor_ids: vec![world.a.assessor.clone(), world.a.learner.clone()],
            etag: String::new(),
        }))
        .await
        .expect("name the learner an assessor of the track they hold");
    let own = world
        .certs()
        .suspend_certificate(with_token(
            change(&world.a.certificate),
            &learner_as_assessor,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        own.code(),
        Code::PermissionDenied,
        "no assessor acts on their own certificate"
    );
    world
        .certs()
        .suspend_certificate(with_token(
            change(&world.a.trainer_certificate),
            &learner_as_assessor,
        ))
        .await
        .expect("but on the others of the track");
}

#[tokio::test]
async fn an_org_admin_sees_the_cascade_of_their_people_without_the_names_of_others() {
    let world = world().await;
    // The learner of side A holds a trainer certificate: they lead a session of cohort B, whose
    // learner attends, so the B learner is in the A learner's cascade.
    let lead = world.app.token(&world.a.learner, &[Role::Trainer], None);
    let session = world
        .delivery()
        .create_session(
            world.app.admin(pb::CreateSessionRequest {
                session: Some(pb::Session {
                    cohort_id: world.b.cohort.clone(),
                    module_id: world
                        .delivery()
                        .get_session(world.app.admin(pb::GetSessionRequest {
                            id: world.b.session.clone(),
                        }))
                        .await
                        .unwrap()
                        .into_inner()
                        .module_id,
                    start_time: Some(hours_from_now(-6)),
                    end_time: Some(hours_from_now(-5)),
                    location: "Room C".to_owned(),
                    lead_trainer_id: world.a.learner.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }),
        )
        .await
        .expect("session led by the A learner")
        .into_inner();
    world
        .delivery()
        .record_attendance(with_token(
            pb::RecordAttendanceRequest {
                session_id: session.id.clone(),
                person_ids: vec![world.b.learner.clone()],
                status: pb::AttendanceStatus::Present.into(),
            },
            &lead,
        ))
        .await
        .expect("attendance");
    world
        .delivery()
        .mark_delivered(with_token(
            pb::MarkDeliveredRequest {
                id: session.id,
                etag: String::new(),
            },
            &lead,
        ))
        .await
        .expect("delivered");

    let cascade = |token: String, root: String| {
        let world = &world;
        async move {
            world
                .certs()
                .get_cascade(with_token(
                    pb::GetCascadeRequest {
                        person_id: root,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
        }
    };
    let by_admin = cascade(world.app.admin_token(), world.a.learner.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_admin.nodes.len(), 1);
    assert!(!by_admin.nodes[0].full_name.is_empty());
    let by_root = cascade(lead.clone(), world.a.learner.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_root.nodes, by_admin.nodes,
        "a trainer sees their own cascade whole"
    );
    let by_org_admin = cascade(
        world.tokens[&Role::OrgAdmin].clone(),
        world.a.learner.clone(),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(by_org_admin.nodes.len(), 1);
    assert_eq!(by_org_admin.nodes[0].person_id, world.b.learner);
    assert!(
        by_org_admin.nodes[0].full_name.is_empty(),
        "a person of another ministry appears without their name"
    );
    let refused = cascade(
        world.tokens[&Role::OrgAdmin].clone(),
        world.b.learner.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
