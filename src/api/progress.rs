//! `lms.v1.ProgressService`.

use std::collections::HashSet;
use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::placement::{self, SignOffs};
use super::programme::enrollment_state_to_proto;
use crate::auth::{
    self, CallContext, Role,
    scope::{self, AsOwner as _, Caller, Object},
};
use crate::domain::{
    organization::{optional_id_or_error, required_id},
    page::Page,
    person::RecordError,
    programme::EnrollmentState,
    progress::{self, ActivityState, ProgressView, RawEvent, Source, StatementParts, Verb},
};
use crate::error::{Error, Reason, Result};
use crate::pb;
use crate::store::{
    Store,
    progress::{Ack, EventRecord, ExportFilter, ProgressFilter, ProgressOrder, Recorder},
    progress_cache::{CachedEnrollment, Encoded},
};

/// Events taken from a stream into one transaction at most.
const STREAM_CHUNK: usize = 500;
/// Statements per export message.
const EXPORT_CHUNK: u64 = 500;
/// Default base IRI of exported statements.
const DEFAULT_IRI_BASE: &str = "https://lms.example.gov.my";

/// Handlers of `ProgressService`.
#[derive(Clone)]
pub struct ProgressApi {
    store: Store,
}

impl ProgressApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn verb_from_proto(verb: i32) -> Option<Verb> {
    match pb::ProgressVerb::try_from(verb).ok()? {
        pb::ProgressVerb::Unspecified => None,
        pb::ProgressVerb::Started => Some(Verb::Started),
        pb::ProgressVerb::Attended => Some(Verb::Attended),
        pb::ProgressVerb::Progressed => Some(Verb::Progressed),
        pb::ProgressVerb::Completed => Some(Verb::Completed),
        pb::ProgressVerb::Passed => Some(Verb::Passed),
        pb::ProgressVerb::Failed => Some(Verb::Failed),
    }
}

fn source_from_proto(source: i32) -> Option<Source> {
    match pb::ProgressSource::try_from(source).ok()? {
        pb::ProgressSource::Unspecified => None,
        pb::ProgressSource::App => Some(Source::App),
        pb::ProgressSource::Trainer => Some(Source::Trainer),
        pb::ProgressSource::Supervisor => Some(Source::Supervisor),
        pb::ProgressSource::Import => Some(Source::Import),
    }
}

fn activity_state_to_proto(state: ActivityState) -> pb::ActivityState {
    match state {
        ActivityState::NotStarted => pb::ActivityState::NotStarted,
        ActivityState::InProgress => pb::ActivityState::InProgress,
        ActivityState::Completed => pb::ActivityState::Completed,
        ActivityState::Failed => pb::ActivityState::Failed,
    }
}

/// Validates one event as far as the request goes; `index` is its position in the call.
fn validate_event(
    index: usize,
    event: pb::ProgressEvent,
    now: chrono::DateTime<chrono::Utc>,
) -> EventRecord {
    let event_id = event.event_id.clone();
    let occurred_time = event
        .occurred_time
        .and_then(|time| chrono::DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32));
    let evidence = event.evidence.unwrap_or_default();
    let raw = RawEvent {
        event_id: event.event_id,
        enrollment_id: event.enrollment_id,
        activity_id: event.activity_id,
        verb: verb_from_proto(event.verb),
        score: event.score,
        duration_seconds: event.duration_seconds,
        occurred_time,
        source: source_from_proto(event.source),
        evidence_uri: evidence.uri,
        evidence_note: evidence.note,
        provenance_note: event.provenance_note,
    };
    raw.validate(now).map_err(|(field, message)| RecordError {
        index: index as i64,
        key: event_id,
        field: field.to_owned(),
        reason: Reason::InvalidField.as_str().to_owned(),
        message: format!("{field} {message}"),
    })
}

/// Returns who the caller records as: a learner (APP events), staff, or an importer. Which
/// enrolments they may record on is [`Object::Progress`], checked by [`ProgressApi::check_events`].
fn recorder(context: &CallContext) -> Recorder {
    let principal = &context.principal;
    let staff = [
        Role::Admin,
        Role::ProgrammeManager,
        Role::Trainer,
        Role::Assessor,
    ];
    if staff.iter().any(|role| principal.has(*role)) {
        Recorder::Staff
    } else if principal.has(Role::HrService) {
        Recorder::Importer
    } else {
        Recorder::Learner
    }
}

fn ack_to_proto(
    event_id: String,
    answer: std::result::Result<Ack, RecordError>,
) -> pb::ProgressAck {
    match answer {
        Ok(ack) => pb::ProgressAck {
            event_id,
            error: None,
            activity_state: activity_state_to_proto(ack.activity_state).into(),
            percent_complete: ack.percent_complete,
            enrollment_state: enrollment_state_to_proto(ack.enrollment_state).into(),
            recorded_time: Some(super::timestamp(ack.recorded_time)),
        },
        Err(error) => pb::ProgressAck {
            event_id,
            error: Some(pb::RecordError {
                index: error.index,
                key: error.key,
                field: error.field,
                reason: error.reason,
                message: error.message,
            }),
            ..Default::default()
        },
    }
}

/// Maps the refusal of a single recorded event (on enrolment `enrollment_id`) to its canonical
/// error; the per-event reason text is typed back into a [`Reason`] here, once.
fn refusal_error(error: RecordError, enrollment_id: &str) -> Error {
    let field = format!("event.{}", error.field);
    match Reason::parse(&error.reason) {
        Some(Reason::EnrollmentNotFound) => Error::not_found("enrollment", enrollment_id),
        Some(Reason::PermissionDenied) => {
            Error::permission_denied(Reason::RecordingNotAllowed, error.message)
        }
        Some(reason @ Reason::EnrollmentNotActive) => Error::FailedPrecondition {
            reason,
            subject: format!("enrollment/{enrollment_id}"),
            message: error.message,
            metadata: vec![
                ("enrollment_id", enrollment_id.to_owned()),
                ("event_id", error.key),
            ],
        },
        _ => Error::invalid(field, error.message),
    }
}

impl ProgressApi {
    /// Fails unless the caller may record every valid event of `records` on its enrolment
    /// ([`Object::Progress`]); one out of reach fails the whole call, before anything is written.
    /// On their own enrolments, callers record as learners do: APP events only. SUPERVISOR events
    /// on activities that require sign-off follow the placement rule instead
    /// ([`SignOffs`]): a supervisor named on the placement records them whatever their roles;
    /// anyone else in reach is refused with `PLACEMENT_REQUIRED` or `NOT_PLACEMENT_SUPERVISOR`.
    /// Returns the sign-offs of the call.
    async fn check_events(
        &self,
        caller: &Caller,
        records: &[EventRecord],
    ) -> std::result::Result<SignOffs, Status> {
        let sign_offs = SignOffs::of(&self.store, caller, records).await?;
        if !caller.reaches_everything(Object::Progress) {
            self.check_scope(caller, records, &sign_offs.allowed)
                .await?;
        }
        sign_offs.refuse_the_rest()?;
        Ok(sign_offs)
    }

    /// The scope part of [`Self::check_events`]; events at `supervised` positions are a named
    /// supervisor's sign-offs and need no other reach.
    async fn check_scope(
        &self,
        caller: &Caller,
        records: &[EventRecord],
        supervised: &HashSet<usize>,
    ) -> Result<()> {
        let items: Vec<(String, String)> = records
            .iter()
            .enumerate()
            .filter(|(index, _)| !supervised.contains(index))
            .filter_map(|(index, record)| {
                let event = record.as_ref().ok()?;
                Some((
                    format!("events[{index}].enrollment_id"),
                    event.enrollment_id.clone(),
                ))
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<String> = items.iter().map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let owners = self.store.enrollment_owners(&ids).await?;
        caller.check_all(Object::Progress, "enrollment", &items, &owners)?;
        for (index, record) in records.iter().enumerate() {
            let Ok(event) = record else { continue };
            if supervised.contains(&index) {
                continue;
            }
            let Some(owner) = owners.get(&event.enrollment_id) else {
                continue;
            };
            if event.facts.source != progress::Source::App
                && !caller.allows_beyond_own(Object::Progress, &owner.owner())
            {
                return Err(Error::permission_denied(
                    Reason::OwnRecordsFromAppOnly,
                    format!(
                        "events[{index}]: on your own enrolment you record APP events only; \
                         nothing of this call was done"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records `events`; `grouped` (unary calls) shares a transaction with concurrent calls.
    async fn record(
        &self,
        context: &CallContext,
        caller: &Caller,
        events: Vec<pb::ProgressEvent>,
        grouped: bool,
    ) -> std::result::Result<Vec<pb::ProgressAck>, Status> {
        let now = crate::domain::now();
        let ids: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
        let records: Vec<EventRecord> = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| validate_event(index, event, now))
            .collect();
        let sign_offs = self.check_events(caller, &records).await?;
        let recorder = if placement::records_as_supervisor(context, &sign_offs) {
            Recorder::Staff
        } else {
            recorder(context)
        };
        let actor = context.principal.subject.clone();
        let answers = if grouped {
            self.store
                .record_progress_grouped(actor, recorder, records)
                .await?
        } else {
            self.store.record_progress(actor, recorder, records).await?
        };
        Ok(ids
            .into_iter()
            .zip(answers)
            .map(|(id, answer)| ack_to_proto(id, answer))
            .collect())
    }
}

fn view_to_proto(
    enrollment: &crate::domain::programme::Enrollment,
    view: ProgressView,
) -> pb::EnrollmentProgress {
    pb::EnrollmentProgress {
        enrollment_id: enrollment.id.clone(),
        person_id: enrollment.person_id.clone(),
        cohort_id: enrollment.cohort_id.clone(),
        state: enrollment_state_to_proto(enrollment.state).into(),
        percent_complete: view.percent_complete,
        courses: view
            .courses
            .into_iter()
            .map(|course| pb::CourseProgress {
                course_version_id: course.course_version_id,
                completed: course.completed,
                percent_complete: course.percent_complete,
                modules: course
                    .modules
                    .into_iter()
                    .map(|module| pb::ModuleProgress {
                        module_id: module.module_id,
                        completed: module.completed,
                        required: module.required,
                        activities: module
                            .activities
                            .into_iter()
                            .map(|activity| pb::ActivityProgress {
                                activity_id: activity.activity_id,
                                state: activity_state_to_proto(activity.state).into(),
                                best_score: activity.tally.best_score,
                                attempts: activity.tally.attempts,
                                time_spent_seconds: activity.tally.time_spent_seconds,
                                completed_time: activity.tally.completed_time.map(super::timestamp),
                                last_event_time: activity
                                    .tally
                                    .last_event_time
                                    .map(super::timestamp),
                                required: activity.required,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        next_activity_id: view.next_activity_id.unwrap_or_default(),
        completed_time: enrollment.completed_time.map(super::timestamp),
        event_count: view.event_count,
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::ProgressAck, Status>> + Send + 'static>>;
type StatementStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportStatementsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::progress_service_server::ProgressService for ProgressApi {
    async fn record_progress(
        &self,
        request: Request<pb::RecordProgressRequest>,
    ) -> Result<Response<pb::ProgressAck>, Status> {
        let context = auth::context(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| Error::invalid("event", "is required"))?;
        let caller = scope::caller(&self.store, &context, Object::Progress).await?;
        let enrollment_id = event.enrollment_id.clone();
        let mut acks = self.record(&context, &caller, vec![event], true).await?;
        let ack = acks
            .pop()
            .ok_or_else(|| Error::internal("no ack for the event"))?;
        if let Some(error) = ack.error {
            let error = RecordError {
                index: error.index,
                key: error.key,
                field: error.field,
                reason: error.reason,
                message: error.message,
            };
            return Err(refusal_error(error, &enrollment_id).into());
        }
        Ok(Response::new(ack))
    }

    async fn batch_record_progress(
        &self,
        request: Request<pb::BatchRecordProgressRequest>,
    ) -> Result<Response<pb::BatchRecordProgressResponse>, Status> {
        let context = auth::context(&request)?;
        let events = request.into_inner().events;
        if events.is_empty() || events.len() > progress::MAX_BATCH_EVENTS {
            return Err(Error::invalid("events", "must hold 1 to 1,000 events").into());
        }
        let caller = scope::caller(&self.store, &context, Object::Progress).await?;
        let acks = self.record(&context, &caller, events, false).await?;
        Ok(Response::new(pb::BatchRecordProgressResponse { acks }))
    }

    type StreamProgressStream = AckStream;

    async fn stream_progress(
        &self,
        request: Request<Streaming<pb::ProgressEvent>>,
    ) -> Result<Response<Self::StreamProgressStream>, Status> {
        let context = auth::context(&request)?;
        // Assignments are read once, when the stream opens.
        let caller = scope::caller(&self.store, &context, Object::Progress).await?;
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel::<Result<pb::ProgressAck, Status>>(STREAM_CHUNK * 2);
        let api = self.clone();
        tokio::spawn(async move {
            // Events already waiting are taken together; acks go out in order. Each chunk joins
            // the group commit with the unary calls and the other streams' chunks: a thousand
            // streams with one event in flight each share a few transactions, not a thousand.
            let mut chunks = inbound.ready_chunks(STREAM_CHUNK);
            while let Some(chunk) = chunks.next().await {
                let mut events = Vec::with_capacity(chunk.len());
                let mut broken = None;
                for item in chunk {
                    match item {
                        Ok(event) => events.push(event),
                        Err(status) => {
                            broken = Some(status);
                            break;
                        }
                    }
                }
                if !events.is_empty() {
                    match api.record(&context, &caller, events, true).await {
                        Ok(acks) => {
                            for ack in acks {
                                if sender.send(Ok(ack)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(status) => {
                            let _ = sender.send(Err(status)).await;
                            return;
                        }
                    }
                }
                if let Some(status) = broken {
                    tracing::info!(code = ?status.code(), "progress stream broke off");
                    // A refused message (a control character in a string) ends the stream with
                    // its INVALID_ARGUMENT; every event before it has its ack already.
                    if status.code() == tonic::Code::InvalidArgument {
                        let _ = sender.send(Err(status)).await;
                    }
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_enrollment_progress(
        &self,
        request: Request<pb::GetEnrollmentProgressRequest>,
    ) -> Result<Response<pb::EnrollmentProgress>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("enrollment_id", &request.get_ref().enrollment_id)?;
        let caller = scope::caller(&self.store, &context, Object::LearnerRecord).await?;
        let cache = self.store.progress_cache();
        let ticket = match cache.enrollment(&id) {
            Ok(hit) => {
                let owner = scope::Owner {
                    cohort_id: Some(hit.cohort_id.clone()),
                    ..scope::Owner::person(hit.person_id.clone(), hit.organization_path.clone())
                };
                caller.check(Object::LearnerRecord, "enrollment", &id, &owner)?;
                return Ok(Response::new(hit.message.decode()));
            }
            Err(ticket) => ticket,
        };
        let (enrollment, view, path) = match self.store.enrollment_progress(&id).await {
            Ok(found) => found,
            Err(error) => {
                return Err(caller
                    .hide_missing(Object::LearnerRecord, "enrollment", &id, error)
                    .into());
            }
        };
        let owner = scope::Owner {
            cohort_id: Some(enrollment.cohort_id.clone()),
            ..scope::Owner::person(enrollment.person_id.clone(), path)
        };
        let message = view_to_proto(&enrollment, view);
        if let Some(ticket) = ticket {
            // Cached before the check: the answer is the same whoever asks; the check is per call.
            cache.fill_enrollment(
                ticket,
                CachedEnrollment {
                    message: Encoded::new(&message),
                    person_id: enrollment.person_id.clone(),
                    cohort_id: enrollment.cohort_id.clone(),
                    organization_path: owner.organization_path.clone().unwrap_or_default(),
                },
            );
        }
        caller.check(Object::LearnerRecord, "enrollment", &id, &owner)?;
        Ok(Response::new(message))
    }

    async fn list_progress(
        &self,
        request: Request<pb::ListProgressRequest>,
    ) -> Result<Response<pb::ListProgressResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let order = match message.order_by.trim() {
            "" => ProgressOrder::Id,
            "percent_complete desc" => ProgressOrder::PercentDescending,
            "percent_complete asc" | "percent_complete" => ProgressOrder::PercentAscending,
            _ => {
                return Err(Error::invalid(
                    "order_by",
                    "must be empty, \"percent_complete desc\" or \"percent_complete asc\"",
                )
                .into());
            }
        };
        let filters = format!(
            "person={};cohort={};subtree={};order={}",
            message.person_id, message.cohort_id, message.organization_subtree, message.order_by
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let mut filter = ProgressFilter {
            person_id: optional_id_or_error("person_id", &message.person_id)?,
            cohort_id: optional_id_or_error("cohort_id", &message.cohort_id)?,
            organization_path_prefix: None,
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
        // One cohort's pages are cached by order, page and the caller's visibility (the rows a
        // limited scope sees); lists by person or subtree are not.
        let cache = self.store.progress_cache();
        let cached_cohort = match (
            &filter.cohort_id,
            &filter.person_id,
            &filter.organization_path_prefix,
        ) {
            (Some(cohort_id), None, None) if !self.store.has_read_replicas() => {
                Some(cohort_id.clone())
            }
            _ => None,
        };
        let ticket = match &cached_cohort {
            Some(cohort_id) => {
                let key = format!(
                    "{}\u{1f}{}\u{1f}{}\u{1f}{:?}",
                    message.order_by, page.size, message.page_token, filter.visibility
                );
                match cache.cohort_page(cohort_id, &key) {
                    Ok(hit) => return Ok(Response::new(hit.decode())),
                    Err(ticket) => ticket,
                }
            }
            None => None,
        };
        let (rows, next_page_token) = self.store.list_progress(&filter, order, &page).await?;
        let progress = rows
            .into_iter()
            .map(|row| pb::ProgressSummary {
                state: EnrollmentState::parse(&row.state)
                    .map(|state| enrollment_state_to_proto(state).into())
                    .unwrap_or_default(),
                enrollment_id: row.enrollment_id,
                person_id: row.person_id,
                cohort_id: row.cohort_id,
                percent_complete: row.percent_complete,
                completed_time: row.completed_time.map(super::timestamp),
                last_event_time: row.last_event_time.map(super::timestamp),
            })
            .collect();
        let response = pb::ListProgressResponse {
            progress,
            next_page_token,
        };
        if let Some(ticket) = ticket {
            cache.fill_cohort_page(ticket, &response);
        }
        Ok(Response::new(response))
    }

    async fn recompute_progress(
        &self,
        request: Request<pb::RecomputeProgressRequest>,
    ) -> Result<Response<pb::EnrollmentProgress>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("enrollment_id", &request.get_ref().enrollment_id)?;
        let (enrollment, view) = self
            .store
            .recompute_progress(context.audit(None), id)
            .await?;
        tracing::info!(enrollment = %enrollment.id, percent = view.percent_complete, "progress recomputed");
        Ok(Response::new(view_to_proto(&enrollment, view)))
    }

    async fn create_placement(
        &self,
        request: Request<pb::CreatePlacementRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        placement::create_placement(&self.store, request).await
    }

    async fn get_placement(
        &self,
        request: Request<pb::GetPlacementRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        placement::get_placement(&self.store, request).await
    }

    async fn list_placements(
        &self,
        request: Request<pb::ListPlacementsRequest>,
    ) -> Result<Response<pb::ListPlacementsResponse>, Status> {
        placement::list_placements(&self.store, request).await
    }

    async fn update_placement(
        &self,
        request: Request<pb::UpdatePlacementRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        placement::update_placement(&self.store, request).await
    }

    type ExportStatementsStream = StatementStream;

    async fn export_statements(
        &self,
        request: Request<pb::ExportStatementsRequest>,
    ) -> Result<Response<Self::ExportStatementsStream>, Status> {
        let message = request.into_inner();
        let filter = ExportFilter {
            enrollment_id: optional_id_or_error("enrollment_id", &message.enrollment_id)?,
            cohort_id: optional_id_or_error("cohort_id", &message.cohort_id)?,
            since_time: super::optional_time("since_time", message.since_time)?,
        };
        let iri_base = match message.iri_base.trim_end_matches('/') {
            "" => DEFAULT_IRI_BASE.to_owned(),
            base if base.starts_with("https://") || base.starts_with("http://") => base.to_owned(),
            _ => return Err(Error::invalid("iri_base", "must be an http(s) IRI").into()),
        };
        let (sender, receiver) = mpsc::channel::<Result<pb::ExportStatementsResponse, Status>>(4);
        let store = self.store.clone();
        // The pages are read after the call returns: they keep its read position (lms-min-lsn).
        tokio::spawn(crate::store::replica::inherit(async move {
            let mut after = None;
            loop {
                let page = match store
                    .export_events(&filter, after.clone(), EXPORT_CHUNK)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = Some((last.event.recorded_time, last.event.event_id.clone()));
                let full = page.len() as u64 == EXPORT_CHUNK;
                let mut statements = Vec::with_capacity(page.len());
                for logged in &page {
                    let event = &logged.event;
                    let facts = progress::EventFacts {
                        verb: Verb::parse(&event.verb).unwrap_or(Verb::Progressed),
                        score: event.score,
                        duration_seconds: event.duration_seconds,
                        occurred_time: event.occurred_time,
                        source: Source::parse(&event.source).unwrap_or(Source::App),
                    };
                    let parts = StatementParts {
                        event_id: &event.event_id,
                        enrollment_id: &event.enrollment_id,
                        person_id: &logged.person_id,
                        activity_id: &event.activity_id,
                        facts: &facts,
                        recorded_time: event.recorded_time,
                        evidence_uri: event.evidence_uri.as_deref(),
                        provenance_note: event.provenance_note.as_deref(),
                        signed_by: (facts.source == Source::Supervisor)
                            .then_some(event.actor.as_str()),
                    };
                    statements.push(progress::xapi_statement(&parts, &iri_base).to_string());
                }
                if sender
                    .send(Ok(pb::ExportStatementsResponse { statements }))
                    .await
                    .is_err()
                    || !full
                {
                    return;
                }
            }
        }));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
