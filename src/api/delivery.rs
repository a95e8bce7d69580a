//! `lms.v1.DeliveryService`.

use tonic::{Request, Response, Status};

use crate::auth::{
    self, CallContext,
    scope::{self, Object},
};
use crate::domain::certification::Clock;
use crate::domain::delivery::{
    AttendanceStatus, MAX_ATTENDANCE_BATCH, Session, SessionState, validate_location,
    validate_trainers, validate_window,
};
use crate::domain::organization::{optional_id_or_error, required_id};
use crate::domain::page::Page;
use crate::error::{Error, Result, Violations};
use crate::pb;
use crate::store::{
    Store,
    delivery::{AttendanceMark, NewSession, SessionFilter},
};

/// Handlers of `DeliveryService`.
#[derive(Clone)]
pub struct DeliveryApi {
    store: Store,
    clock: Clock,
}

impl DeliveryApi {
    /// Returns the handlers over `store`, deciding with `clock`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self { store, clock }
    }
}

impl From<Session> for pb::Session {
    fn from(session: Session) -> Self {
        let state = match session.state {
            SessionState::Scheduled => pb::SessionState::Scheduled,
            SessionState::Delivered => pb::SessionState::Delivered,
            SessionState::Cancelled => pb::SessionState::Cancelled,
        };
        Self {
            id: session.id,
            cohort_id: session.cohort_id,
            module_id: session.module_id,
            course_version_id: session.course_version_id,
            start_time: Some(super::timestamp(session.start_time)),
            end_time: Some(super::timestamp(session.end_time)),
            location: session.location,
            lead_trainer_id: session.lead_trainer_id,
            co_trainer_ids: session.co_trainer_ids,
            state: state.into(),
            cancel_reason: session.cancel_reason.unwrap_or_default(),
            delivered_time: session.delivered_time.map(super::timestamp),
            etag: crate::domain::etag(session.revision),
            create_time: Some(super::timestamp(session.create_time)),
            update_time: Some(super::timestamp(session.update_time)),
        }
    }
}

fn attendance_status_to_proto(status: AttendanceStatus) -> pb::AttendanceStatus {
    match status {
        AttendanceStatus::Present => pb::AttendanceStatus::Present,
        AttendanceStatus::Absent => pb::AttendanceStatus::Absent,
        AttendanceStatus::Excused => pb::AttendanceStatus::Excused,
    }
}

fn attendance_status_from_proto(status: i32) -> Option<AttendanceStatus> {
    match pb::AttendanceStatus::try_from(status).ok()? {
        pb::AttendanceStatus::Unspecified => None,
        pb::AttendanceStatus::Present => Some(AttendanceStatus::Present),
        pb::AttendanceStatus::Absent => Some(AttendanceStatus::Absent),
        pb::AttendanceStatus::Excused => Some(AttendanceStatus::Excused),
    }
}

impl From<AttendanceMark> for pb::Attendance {
    fn from(mark: AttendanceMark) -> Self {
        Self {
            session_id: mark.session_id,
            person_id: mark.person_id,
            status: attendance_status_to_proto(mark.status).into(),
            recorded_by: mark.recorded_by,
            record_time: Some(super::timestamp(mark.record_time)),
        }
    }
}

impl DeliveryApi {
    /// Fails unless the caller reaches session `id` as `object` (attendance: its lead and
    /// co-trainers; [`Object::SessionLead`]: its lead).
    async fn check_session(&self, context: &CallContext, object: Object, id: &str) -> Result<()> {
        let caller = scope::caller(&self.store, context, object).await?;
        caller.check_found(object, "session", id, self.store.get_session(id).await)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::delivery_service_server::DeliveryService for DeliveryApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(
            "lms.v1.DeliveryService/CreateSession",
            &message.request_id,
            &message,
        )?;
        let session = message
            .session
            .ok_or_else(|| Error::invalid("session", "is required"))?;
        let mut violations = Violations::new();
        for (field, id) in [
            ("session.cohort_id", &session.cohort_id),
            ("session.module_id", &session.module_id),
        ] {
            if !crate::domain::is_uuid(id) {
                violations.add(field, "is required (a UUID)");
            }
        }
        let start = super::optional_time("session.start_time", session.start_time)?;
        let end = super::optional_time("session.end_time", session.end_time)?;
        let window = validate_window(
            &mut violations,
            "session.start_time",
            "session.end_time",
            start,
            end,
        );
        let location = validate_location(&mut violations, "session.location", &session.location);
        let trainers = validate_trainers(
            &mut violations,
            "session",
            &session.lead_trainer_id,
            &session.co_trainer_ids,
        );
        violations.into_result(())?;
        let window = window.ok_or_else(|| Error::invalid("session.end_time", "is invalid"))?;
        let new = NewSession {
            cohort_id: session.cohort_id,
            module_id: session.module_id,
            window,
            location,
            trainers,
        };
        let created = self
            .store
            .create_session(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                new,
                key,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_session(&id).await?.into()))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let message = request.into_inner();
        let filter = SessionFilter {
            cohort_id: optional_id_or_error("cohort_id", &message.cohort_id)?,
            trainer_id: optional_id_or_error("trainer_id", &message.trainer_id)?,
            start_after: super::optional_time("start_after", message.start_after)?,
            start_before: super::optional_time("start_before", message.start_before)?,
        };
        let fingerprint = format!(
            "{:?}|{:?}|{:?}|{:?}",
            filter.cohort_id, filter.trainer_id, filter.start_after, filter.start_before
        );
        let page = Page::parse(message.page_size, &message.page_token, &fingerprint)?;
        let (sessions, next_page_token) = self.store.list_sessions(&filter, &page).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn reschedule_session(
        &self,
        request: Request<pb::RescheduleSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let mut violations = Violations::new();
        let start = super::optional_time("start_time", message.start_time)?;
        let end = super::optional_time("end_time", message.end_time)?;
        let window = validate_window(&mut violations, "start_time", "end_time", start, end);
        let location = validate_location(&mut violations, "location", &message.location);
        violations.into_result(())?;
        let window = window.ok_or_else(|| Error::invalid("end_time", "is invalid"))?;
        let revision = super::expected_revision("etag", &message.etag)?;
        let session = self
            .store
            .reschedule_session(
                context.audit(None),
                id,
                window,
                (!location.is_empty()).then_some(location),
                revision,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(session.into()))
    }

    async fn change_session_trainers(
        &self,
        request: Request<pb::ChangeSessionTrainersRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let mut violations = Violations::new();
        let trainers = validate_trainers(
            &mut violations,
            "",
            &message.lead_trainer_id,
            &message.co_trainer_ids,
        );
        violations.into_result(())?;
        let revision = super::expected_revision("etag", &message.etag)?;
        let session = self
            .store
            .change_session_trainers(
                context.audit(None),
                id,
                trainers,
                revision,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(session.into()))
    }

    async fn cancel_session(
        &self,
        request: Request<pb::CancelSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let reason = crate::domain::certification::validate_reason("reason", &message.reason)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        let session = self
            .store
            .cancel_session(context.audit(None), id, reason, revision, self.clock.now())
            .await?;
        Ok(Response::new(session.into()))
    }

    async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> Result<Response<pb::RecordAttendanceResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let session_id = required_id("session_id", &message.session_id)?;
        let mut violations = Violations::new();
        let status = attendance_status_from_proto(message.status);
        if status.is_none() {
            violations.add("status", "is required (PRESENT, ABSENT or EXCUSED)");
        }
        if message.person_ids.is_empty() || message.person_ids.len() > MAX_ATTENDANCE_BATCH {
            violations.add(
                "person_ids",
                format!("must hold 1 to {MAX_ATTENDANCE_BATCH} person ids"),
            );
        }
        for (index, id) in message.person_ids.iter().enumerate() {
            if !crate::domain::is_uuid(id) {
                violations.add(format!("person_ids[{index}]"), "must be a person id");
            }
        }
        let mut distinct = message.person_ids.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != message.person_ids.len() {
            violations.add("person_ids", "must not repeat a person");
        }
        violations.into_result(())?;
        let status = status.ok_or_else(|| Error::invalid("status", "is required"))?;
        self.check_session(&context, Object::Attendance, &session_id)
            .await?;
        let (marks, events_recorded) = self
            .store
            .record_attendance(
                context.audit(None),
                session_id,
                message.person_ids,
                status,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(pb::RecordAttendanceResponse {
            attendance: marks.into_iter().map(Into::into).collect(),
            events_recorded,
        }))
    }

    async fn list_attendance(
        &self,
        request: Request<pb::ListAttendanceRequest>,
    ) -> Result<Response<pb::ListAttendanceResponse>, Status> {
        let context = auth::context(&request)?;
        let session_id = required_id("session_id", &request.get_ref().session_id)?;
        self.check_session(&context, Object::Attendance, &session_id)
            .await?;
        let marks = self.store.list_attendance(&session_id).await?;
        Ok(Response::new(pb::ListAttendanceResponse {
            attendance: marks.into_iter().map(Into::into).collect(),
        }))
    }

    async fn mark_delivered(
        &self,
        request: Request<pb::MarkDeliveredRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        self.check_session(&context, Object::SessionLead, &id)
            .await?;
        let session = self
            .store
            .mark_delivered(context.audit(None), id, revision, self.clock.now())
            .await?;
        Ok(Response::new(session.into()))
    }
}
