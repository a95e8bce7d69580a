//! `lms.v1.ProgrammeService`.

use tonic::{Request, Response, Status};

use super::person::{sector_from_proto, sector_to_proto};
use crate::auth::{
    self, CallContext,
    scope::{self, Object},
};
use crate::domain::{
    field_mask,
    organization::{optional_id_or_error, required_id},
    page::Page,
    programme::{
        self, Cohort, CohortField, CohortSettings, CohortState, Enrollment, EnrollmentState,
        NewProgramme, PhaseDraft, Programme, ProgrammeField, ProgrammePatch, ProgrammeState,
        RawCohortSettings, RawPhaseWindow, Refusal,
    },
};
use crate::error::{Error, Reason, Result};
use crate::pb;
use crate::store::{
    Store,
    programme::{CohortFilter, EnrollOutcome, EnrollmentFilter, ProgrammeFilter},
};

/// Handlers of `ProgrammeService`.
#[derive(Clone)]
pub struct ProgrammeApi {
    store: Store,
}

impl ProgrammeApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn programme_state_from_proto(state: i32) -> Option<ProgrammeState> {
    match pb::ProgrammeState::try_from(state).ok()? {
        pb::ProgrammeState::Unspecified => None,
        pb::ProgrammeState::Active => Some(ProgrammeState::Active),
        pb::ProgrammeState::Archived => Some(ProgrammeState::Archived),
    }
}

fn cohort_state_from_proto(state: i32) -> Option<CohortState> {
    match pb::CohortState::try_from(state).ok()? {
        pb::CohortState::Unspecified => None,
        pb::CohortState::Planned => Some(CohortState::Planned),
        pb::CohortState::Open => Some(CohortState::Open),
        pb::CohortState::Running => Some(CohortState::Running),
        pb::CohortState::Closed => Some(CohortState::Closed),
    }
}

/// Returns the proto value of a cohort state.
pub(crate) fn cohort_state_to_proto(state: CohortState) -> pb::CohortState {
    match state {
        CohortState::Planned => pb::CohortState::Planned,
        CohortState::Open => pb::CohortState::Open,
        CohortState::Running => pb::CohortState::Running,
        CohortState::Closed => pb::CohortState::Closed,
    }
}

fn enrollment_state_from_proto(state: i32) -> Option<EnrollmentState> {
    match pb::EnrollmentState::try_from(state).ok()? {
        pb::EnrollmentState::Unspecified => None,
        pb::EnrollmentState::Enrolled => Some(EnrollmentState::Enrolled),
        pb::EnrollmentState::InProgress => Some(EnrollmentState::InProgress),
        pb::EnrollmentState::Completed => Some(EnrollmentState::Completed),
        pb::EnrollmentState::Withdrawn => Some(EnrollmentState::Withdrawn),
        pb::EnrollmentState::Waitlisted => Some(EnrollmentState::Waitlisted),
    }
}

/// Returns the proto value of an enrolment state.
pub(crate) fn enrollment_state_to_proto(state: EnrollmentState) -> pb::EnrollmentState {
    match state {
        EnrollmentState::Enrolled => pb::EnrollmentState::Enrolled,
        EnrollmentState::InProgress => pb::EnrollmentState::InProgress,
        EnrollmentState::Completed => pb::EnrollmentState::Completed,
        EnrollmentState::Withdrawn => pb::EnrollmentState::Withdrawn,
        EnrollmentState::Waitlisted => pb::EnrollmentState::Waitlisted,
    }
}

/// Parses an optional enum filter: 0 means none, an unknown value is INVALID_ARGUMENT on `field`.
fn enum_filter<T>(field: &str, value: i32, parse: impl Fn(i32) -> Option<T>) -> Result<Option<T>> {
    match value {
        0 => Ok(None),
        value => parse(value)
            .map(Some)
            .ok_or_else(|| Error::invalid(field, "is not a known value")),
    }
}

impl From<Programme> for pb::Programme {
    fn from(programme: Programme) -> Self {
        let state = match programme.state {
            ProgrammeState::Active => pb::ProgrammeState::Active,
            ProgrammeState::Archived => pb::ProgrammeState::Archived,
        };
        Self {
            id: programme.id,
            code: programme.code,
            title: programme.title,
            description: programme.description,
            sponsor_organization_id: programme.sponsor_organization_id,
            partner_organization_ids: programme.partner_organization_ids,
            phases: programme
                .phases
                .into_iter()
                .map(|phase| pb::Phase {
                    id: phase.id,
                    title: phase.title,
                    position: phase.position,
                    course_version_ids: phase.course_version_ids,
                    location: phase.location,
                    planned_duration_days: phase.planned_duration_days,
                })
                .collect(),
            state: state.into(),
            etag: crate::domain::etag(programme.revision),
            create_time: Some(super::timestamp(programme.create_time)),
            update_time: Some(super::timestamp(programme.update_time)),
        }
    }
}

impl From<Cohort> for pb::Cohort {
    fn from(cohort: Cohort) -> Self {
        let settings = cohort.settings;
        Self {
            id: cohort.id,
            programme_id: cohort.programme_id,
            name: settings.name,
            start_date: settings
                .start_date
                .map(|date| date.to_string())
                .unwrap_or_default(),
            end_date: settings
                .end_date
                .map(|date| date.to_string())
                .unwrap_or_default(),
            capacity: settings.capacity,
            state: cohort_state_to_proto(cohort.state).into(),
            enrolled_count: cohort.enrolled_count,
            waitlisted_count: cohort.waitlisted_count,
            waitlist_enabled: settings.waitlist_enabled,
            // The deprecated list, when every category with seats is one of the two sectors.
            sector_seats: if settings
                .category_seats
                .iter()
                .all(|(category, _)| category.is_sector())
            {
                settings
                    .category_seats
                    .iter()
                    .map(|(category, seats)| pb::SectorSeats {
                        sector: sector_to_proto(category).into(),
                        seats: *seats,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            category_seats: settings
                .category_seats
                .into_iter()
                .map(|(category, seats)| pb::CategorySeats {
                    category: category.as_str().to_owned(),
                    seats,
                })
                .collect(),
            eligible_organization_ids: settings.eligible_organization_ids,
            etag: crate::domain::etag(cohort.revision),
            create_time: Some(super::timestamp(cohort.create_time)),
            update_time: Some(super::timestamp(cohort.update_time)),
            phase_windows: settings
                .phase_windows
                .into_iter()
                .map(|window| pb::CohortPhaseWindow {
                    phase_id: window.phase_id,
                    start_date: window.start_date.to_string(),
                    end_date: window.end_date.to_string(),
                })
                .collect(),
            schedule: Some(pb::CohortSchedule {
                auto_advance: settings.schedule.auto_advance,
                enrollment_open_date: settings
                    .schedule
                    .enrollment_open_date
                    .map(|date| date.to_string())
                    .unwrap_or_default(),
            }),
        }
    }
}

impl From<Enrollment> for pb::Enrollment {
    fn from(enrollment: Enrollment) -> Self {
        Self {
            id: enrollment.id,
            cohort_id: enrollment.cohort_id,
            programme_id: enrollment.programme_id,
            person_id: enrollment.person_id,
            course_version_ids: enrollment.course_version_ids,
            state: enrollment_state_to_proto(enrollment.state).into(),
            waitlist_position: enrollment.waitlist_position,
            enrolled_time: Some(super::timestamp(enrollment.enrolled_time)),
            completed_time: enrollment.completed_time.map(super::timestamp),
            withdrawn_time: enrollment.withdrawn_time.map(super::timestamp),
            withdraw_reason: enrollment.withdraw_reason.unwrap_or_default(),
            etag: crate::domain::etag(enrollment.revision),
            create_time: Some(super::timestamp(enrollment.create_time)),
            update_time: Some(super::timestamp(enrollment.update_time)),
        }
    }
}

fn phase_drafts(phases: Vec<pb::Phase>) -> Vec<PhaseDraft> {
    phases
        .into_iter()
        .map(|phase| PhaseDraft {
            id: (!phase.id.is_empty()).then_some(phase.id),
            title: phase.title,
            course_version_ids: phase.course_version_ids,
            location: phase.location,
            planned_duration_days: phase.planned_duration_days,
        })
        .collect()
}

fn raw_cohort(cohort: &pb::Cohort) -> RawCohortSettings {
    RawCohortSettings {
        name: cohort.name.clone(),
        start_date: cohort.start_date.clone(),
        end_date: cohort.end_date.clone(),
        capacity: cohort.capacity,
        waitlist_enabled: cohort.waitlist_enabled,
        category_seats: cohort
            .category_seats
            .iter()
            .map(|seats| (seats.category.clone(), seats.seats))
            .collect(),
        sector_seats: cohort
            .sector_seats
            .iter()
            .map(|seats| (sector_from_proto(seats.sector), seats.seats))
            .collect(),
        eligible_organization_ids: cohort.eligible_organization_ids.clone(),
        phase_windows: cohort
            .phase_windows
            .iter()
            .map(|window| RawPhaseWindow {
                phase_id: window.phase_id.clone(),
                start_date: window.start_date.clone(),
                end_date: window.end_date.clone(),
            })
            .collect(),
        auto_advance: cohort
            .schedule
            .as_ref()
            .is_some_and(|schedule| schedule.auto_advance),
        enrollment_open_date: cohort
            .schedule
            .as_ref()
            .map(|schedule| schedule.enrollment_open_date.clone())
            .unwrap_or_default(),
    }
}

/// Maps a refusal of a single `Enroll` to its canonical error.
fn refusal_error(
    person_id: &str,
    cohort_id: &str,
    reason: Reason,
    message: String,
    metadata: Vec<(String, String)>,
) -> Error {
    match reason {
        Reason::PersonNotFound => Error::not_found("person", person_id),
        Reason::AlreadyEnrolled => Error::AlreadyExists {
            resource: "enrollment",
            field: "person_id",
            value: person_id.to_owned(),
            existing_id: None,
        },
        _ => metadata
            .into_iter()
            .filter_map(|(key, value)| {
                let key = programme::REFUSAL_METADATA_KEYS
                    .into_iter()
                    .find(|known| *known == key)?;
                Some((key, value))
            })
            .fold(Refusal::new(reason, message), |refusal, (key, value)| {
                refusal.with(key, value)
            })
            .into_error(format!("cohort/{cohort_id}"))
            .with("cohort_id", cohort_id)
            .with("person_id", person_id),
    }
}

impl ProgrammeApi {
    /// Fails unless the caller may enrol every one of `person_ids` (`Object::Enrolment`); one
    /// out of reach fails the whole call before anything is written.
    async fn check_enrolment(&self, context: &CallContext, person_ids: &[String]) -> Result<()> {
        let caller = scope::caller(&self.store, context, Object::Enrolment).await?;
        if caller.reaches_everything(Object::Enrolment) {
            return Ok(());
        }
        let paths = self.store.person_paths(person_ids).await?;
        let found = paths
            .into_iter()
            .map(|(id, path)| (id.clone(), scope::Owner::person(id, path)))
            .collect();
        let items: Vec<(String, String)> = person_ids
            .iter()
            .enumerate()
            .map(|(index, id)| (format!("person_ids[{index}]"), id.clone()))
            .collect();
        caller.check_all(Object::Enrolment, "person", &items, &found)
    }
}

#[tonic::async_trait]
impl pb::programme_service_server::ProgrammeService for ProgrammeApi {
    async fn create_programme(
        &self,
        request: Request<pb::CreateProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let programme = message
            .programme
            .ok_or_else(|| Error::invalid("programme", "is required"))?;
        let new = NewProgramme::parse(
            "programme",
            &programme.code,
            &programme.title,
            &programme.description,
            &programme.sponsor_organization_id,
            &programme.partner_organization_ids,
            phase_drafts(programme.phases),
        )?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self.store.create_programme(audit, new, key).await?;
        tracing::info!(programme = %created.id, "programme created");
        Ok(Response::new(created.into()))
    }

    async fn get_programme(
        &self,
        request: Request<pb::GetProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_programme(&id).await?.into()))
    }

    async fn list_programmes(
        &self,
        request: Request<pb::ListProgrammesRequest>,
    ) -> Result<Response<pb::ListProgrammesResponse>, Status> {
        let message = request.into_inner();
        let filters = format!(
            "sponsor={};state={}",
            message.sponsor_organization_id, message.state
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = ProgrammeFilter {
            sponsor_organization_id: optional_id_or_error(
                "sponsor_organization_id",
                &message.sponsor_organization_id,
            )?,
            state: enum_filter("state", message.state, programme_state_from_proto)?,
        };
        let (programmes, next_page_token) = self.store.list_programmes(&filter, &page).await?;
        Ok(Response::new(pb::ListProgrammesResponse {
            programmes: programmes.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_programme(
        &self,
        request: Request<pb::UpdateProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let programme = message
            .programme
            .ok_or_else(|| Error::invalid("programme", "is required"))?;
        let id = required_id("programme.id", &programme.id)?;
        let paths = super::mask_paths(message.update_mask);
        if paths.iter().any(|path| path == "sponsor_organization_id") {
            return Err(
                Error::invalid("update_mask", "sponsor_organization_id cannot change").into(),
            );
        }
        let fields = field_mask::resolve(
            &paths,
            ProgrammeField::parse,
            &ProgrammeField::OUTPUT_ONLY,
            &ProgrammeField::ALL,
            |field| match field {
                ProgrammeField::Title => !programme.title.is_empty(),
                ProgrammeField::Description => !programme.description.is_empty(),
                ProgrammeField::PartnerOrganizationIds => {
                    !programme.partner_organization_ids.is_empty()
                }
                ProgrammeField::Phases => !programme.phases.is_empty(),
            },
        )?;
        let patch = ProgrammePatch::parse(
            "programme",
            &fields,
            &programme.title,
            &programme.description,
            &programme.partner_organization_ids,
            phase_drafts(programme.phases.clone()),
        )?;
        let expected_revision = super::expected_revision("programme.etag", &programme.etag)?;
        let updated = self
            .store
            .update_programme(context.audit(None), id, patch, false, expected_revision)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn archive_programme(
        &self,
        request: Request<pb::ArchiveProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let archived = self
            .store
            .update_programme(
                context.audit(None),
                id,
                ProgrammePatch::default(),
                true,
                expected_revision,
            )
            .await?;
        Ok(Response::new(archived.into()))
    }

    async fn create_cohort(
        &self,
        request: Request<pb::CreateCohortRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let cohort = message
            .cohort
            .ok_or_else(|| Error::invalid("cohort", "is required"))?;
        let programme_id = required_id("cohort.programme_id", &cohort.programme_id)?;
        let settings = CohortSettings::parse("cohort", &raw_cohort(&cohort))?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let created = self
            .store
            .create_cohort(audit, programme_id, settings, key)
            .await?;
        tracing::info!(cohort = %created.id, "cohort created");
        Ok(Response::new(created.into()))
    }

    async fn get_cohort(
        &self,
        request: Request<pb::GetCohortRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_cohort(&id).await?.into()))
    }

    async fn list_cohorts(
        &self,
        request: Request<pb::ListCohortsRequest>,
    ) -> Result<Response<pb::ListCohortsResponse>, Status> {
        let message = request.into_inner();
        let filters = format!("programme={};state={}", message.programme_id, message.state);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = CohortFilter {
            programme_id: optional_id_or_error("programme_id", &message.programme_id)?,
            state: enum_filter("state", message.state, cohort_state_from_proto)?,
        };
        let (cohorts, next_page_token) = self.store.list_cohorts(&filter, &page).await?;
        Ok(Response::new(pb::ListCohortsResponse {
            cohorts: cohorts.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_cohort(
        &self,
        request: Request<pb::UpdateCohortRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let cohort = message
            .cohort
            .ok_or_else(|| Error::invalid("cohort", "is required"))?;
        let id = required_id("cohort.id", &cohort.id)?;
        let paths = super::mask_paths(message.update_mask);
        let fields = field_mask::resolve(
            &paths,
            CohortField::parse,
            &CohortField::OUTPUT_ONLY,
            &CohortField::ALL,
            |field| match field {
                CohortField::Name => !cohort.name.is_empty(),
                CohortField::StartDate => !cohort.start_date.is_empty(),
                CohortField::EndDate => !cohort.end_date.is_empty(),
                CohortField::Capacity => cohort.capacity != 0,
                CohortField::WaitlistEnabled => cohort.waitlist_enabled,
                CohortField::CategorySeats => {
                    !cohort.sector_seats.is_empty() || !cohort.category_seats.is_empty()
                }
                CohortField::EligibleOrganizationIds => {
                    !cohort.eligible_organization_ids.is_empty()
                }
                CohortField::PhaseWindows => !cohort.phase_windows.is_empty(),
                CohortField::Schedule => cohort.schedule.is_some(),
            },
        )?;
        let expected_revision = super::expected_revision("cohort.etag", &cohort.etag)?;
        let updated = self
            .store
            .update_cohort(
                context.audit(None),
                id,
                fields,
                raw_cohort(&cohort),
                expected_revision,
            )
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn change_cohort_state(
        &self,
        request: Request<pb::ChangeCohortStateRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let state = cohort_state_from_proto(message.state)
            .ok_or_else(|| Error::invalid("state", "is required"))?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let changed = self
            .store
            .change_cohort_state(context.audit(None), id, state, expected_revision)
            .await?;
        tracing::info!(cohort = %changed.id, state = changed.state.as_str(), "cohort state changed");
        Ok(Response::new(changed.into()))
    }

    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::Enrollment>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let cohort_id = required_id("cohort_id", &message.cohort_id)?;
        let person_id = required_id("person_id", &message.person_id)?;
        self.check_enrolment(&context, std::slice::from_ref(&person_id))
            .await?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let mut result = self
            .store
            .enroll(audit, cohort_id.clone(), vec![person_id.clone()], key)
            .await?;
        let outcome = result
            .outcomes
            .pop()
            .ok_or_else(|| Error::internal("an enrolment call answered nothing"))?;
        if let Some((reason, message)) = outcome.refusal {
            return Err(refusal_error(
                &person_id,
                &cohort_id,
                reason,
                message,
                outcome.refusal_metadata,
            )
            .into());
        }
        let enrollment = outcome
            .enrollment_id
            .and_then(|id| result.enrollments.remove(&id))
            .ok_or_else(|| Error::internal("an enrolment vanished"))?;
        Ok(Response::new(enrollment.into()))
    }

    async fn batch_enroll(
        &self,
        request: Request<pb::BatchEnrollRequest>,
    ) -> Result<Response<pb::BatchEnrollResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let cohort_id = required_id("cohort_id", &message.cohort_id)?;
        if message.person_ids.is_empty() || message.person_ids.len() > programme::MAX_BATCH_ENROLL {
            return Err(Error::invalid("person_ids", "must hold 1 to 1,000 person ids").into());
        }
        for (index, person_id) in message.person_ids.iter().enumerate() {
            required_id(&format!("person_ids[{index}]"), person_id)?;
        }
        self.check_enrolment(&context, &message.person_ids).await?;
        let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
        let mut result = self
            .store
            .enroll(audit, cohort_id, message.person_ids, key)
            .await?;
        let mut response = pb::BatchEnrollResponse::default();
        for (
            index,
            EnrollOutcome {
                person_id,
                enrollment_id,
                refusal,
                ..
            },
        ) in result.outcomes.into_iter().enumerate()
        {
            let enrollment = enrollment_id.and_then(|id| result.enrollments.remove(&id));
            match (&enrollment, &refusal) {
                (Some(made), _) if made.state == EnrollmentState::Waitlisted => {
                    response.waitlisted += 1
                }
                (Some(_), _) => response.enrolled += 1,
                (None, _) => response.failed += 1,
            }
            response.results.push(pb::EnrollResult {
                error: refusal.map(|(reason, message)| pb::RecordError {
                    index: index as i64,
                    key: person_id.clone(),
                    field: "person_ids".to_owned(),
                    reason: reason.as_str().to_owned(),
                    message,
                }),
                person_id,
                enrollment: enrollment.map(Into::into),
            });
        }
        Ok(Response::new(response))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::Enrollment>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("enrollment_id", &message.enrollment_id)?;
        let reason = programme::validate_withdraw_reason(&message.reason)?;
        let expected_revision = super::expected_revision("etag", &message.etag)?;
        let caller = scope::caller(&self.store, &context, Object::Enrolment).await?;
        caller.check_found(
            Object::Enrolment,
            "enrollment",
            &id,
            self.store.enrollment_owner(&id).await,
        )?;
        let withdrawn = self
            .store
            .withdraw(context.audit(None), id, reason, expected_revision)
            .await?;
        tracing::info!(enrollment = %withdrawn.id, "enrollment withdrawn");
        Ok(Response::new(withdrawn.into()))
    }

    async fn get_enrollment(
        &self,
        request: Request<pb::GetEnrollmentRequest>,
    ) -> Result<Response<pb::Enrollment>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let caller = scope::caller(&self.store, &context, Object::LearnerRecord).await?;
        caller.check_found(
            Object::LearnerRecord,
            "enrollment",
            &id,
            self.store.enrollment_owner(&id).await,
        )?;
        let (enrollment, _) = self.store.get_enrollment(&id).await?;
        Ok(Response::new(enrollment.into()))
    }

    async fn list_enrollments(
        &self,
        request: Request<pb::ListEnrollmentsRequest>,
    ) -> Result<Response<pb::ListEnrollmentsResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let filters = format!(
            "cohort={};person={};subtree={};state={}",
            message.cohort_id, message.person_id, message.organization_subtree, message.state
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let mut filter = EnrollmentFilter {
            cohort_id: optional_id_or_error("cohort_id", &message.cohort_id)?,
            person_id: optional_id_or_error("person_id", &message.person_id)?,
            organization_path_prefix: None,
            state: enum_filter("state", message.state, enrollment_state_from_proto)?,
            visibility: None,
        };
        let caller = scope::list_caller(&self.store, &context, Object::LearnerRecord).await?;
        if let Some(root) =
            optional_id_or_error("organization_subtree", &message.organization_subtree)?
        {
            let path = self.store.get_organization(&root).await?.path;
            caller.check_subtree(Object::LearnerRecord, &path)?;
            filter.organization_path_prefix = Some(path);
        }
        filter.visibility = caller.visibility(Object::LearnerRecord);
        let (enrollments, next_page_token) = self.store.list_enrollments(&filter, &page).await?;
        Ok(Response::new(pb::ListEnrollmentsResponse {
            enrollments: enrollments.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
