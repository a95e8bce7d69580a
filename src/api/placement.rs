//! Placements of `lms.v1.ProgressService` (create, get, list, update) and the sign-off rule of
//! recorded events: on an activity that requires sign-off, a SUPERVISOR event is recorded only
//! by a supervisor named on the enrolment's placement for that activity, or by an admin.

use std::collections::{HashMap, HashSet};

use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::auth::{
    self, CallContext, Role,
    scope::{self, AsOwner as _, Caller, Object},
};
use crate::domain::{
    field_mask,
    organization::{optional_id_or_error, required_id},
    page::Page,
    placement::{
        Host, NewPlacement, Placement, PlacementField, PlacementPatch, RawHost, parse_host,
        parse_supervisors,
    },
    progress::Source,
};
use crate::error::{ERROR_DOMAIN, Error, Result, Violations};
use crate::pb;
use crate::store::{Store, placement::PlacementFilter, progress::EventRecord};

/// Returns the proto of `placement`.
fn placement_to_proto(placement: Placement) -> pb::Placement {
    let host = match placement.host {
        Host::Organization(organization_id) => pb::PlacementHost {
            organization_id,
            ..Default::default()
        },
        Host::External(external) => pb::PlacementHost {
            organization_id: String::new(),
            name: external.name,
            country_code: external.country_code,
            address: external.address.unwrap_or_default(),
            external_code: external.external_code.unwrap_or_default(),
        },
    };
    pb::Placement {
        id: placement.id,
        enrollment_id: placement.enrollment_id,
        activity_id: placement.activity_id,
        host: Some(host),
        supervisor_person_ids: placement.supervisor_person_ids,
        etag: crate::domain::etag(placement.revision),
        create_time: Some(super::timestamp(placement.create_time)),
        update_time: Some(super::timestamp(placement.update_time)),
    }
}

fn raw_host(host: &pb::PlacementHost) -> RawHost<'_> {
    RawHost {
        organization_id: &host.organization_id,
        name: &host.name,
        country_code: &host.country_code,
        address: &host.address,
        external_code: &host.external_code,
    }
}

/// Fails unless the caller reaches `enrollment_id` for `object` (a missing enrolment is hidden
/// as the scope rules say).
async fn check_enrollment(
    store: &Store,
    caller: &Caller,
    object: Object,
    enrollment_id: &str,
) -> Result<()> {
    if caller.reaches_everything(object) {
        return Ok(());
    }
    let owners = store.enrollment_owners(&[enrollment_id.to_owned()]).await?;
    let Some(owner) = owners.get(enrollment_id) else {
        return Err(scope::out_of_scope("enrollment", enrollment_id));
    };
    caller.check(object, "enrollment", enrollment_id, &owner.owner())
}

/// `CreatePlacement`: managers of the learner's enrolments ([`Object::Enrolment`]).
pub(crate) async fn create_placement(
    store: &Store,
    request: Request<pb::CreatePlacementRequest>,
) -> Result<Response<pb::Placement>, Status> {
    let context = auth::context(&request)?;
    let message = request.into_inner();
    let key = super::request_key(&context.method, &message.request_id, &message)?;
    let placement = message
        .placement
        .ok_or_else(|| Error::invalid("placement", "is required"))?;
    let new = NewPlacement::parse(
        &placement.enrollment_id,
        &placement.activity_id,
        placement.host.as_ref().map(raw_host),
        &placement.supervisor_person_ids,
    )?;
    let caller = scope::caller(store, &context, Object::Enrolment).await?;
    check_enrollment(store, &caller, Object::Enrolment, &new.enrollment_id).await?;
    let audit = context.audit(key.as_ref().map(|key| key.request_id.clone()));
    let created = store.create_placement(audit, new, key).await?;
    tracing::info!(placement = %created.id, enrollment = %created.enrollment_id, "placement created");
    Ok(Response::new(placement_to_proto(created)))
}

/// `GetPlacement`: its supervisors, and whoever reaches the learner's records.
pub(crate) async fn get_placement(
    store: &Store,
    request: Request<pb::GetPlacementRequest>,
) -> Result<Response<pb::Placement>, Status> {
    let context = auth::context(&request)?;
    let id = required_id("id", &request.get_ref().id)?;
    let caller = scope::caller(store, &context, Object::LearnerRecord).await?;
    let placement = match store.get_placement(&id).await {
        Ok(placement) => placement,
        Err(error) => {
            return Err(caller
                .hide_missing(Object::LearnerRecord, "placement", &id, error)
                .into());
        }
    };
    if !placement.is_supervised_by(caller.subject()) {
        check_enrollment(
            store,
            &caller,
            Object::LearnerRecord,
            &placement.enrollment_id,
        )
        .await
        .map_err(|_| scope::out_of_scope("placement", &id))?;
    }
    Ok(Response::new(placement_to_proto(placement)))
}

/// `ListPlacements`: only the placements the caller reaches, or supervises.
pub(crate) async fn list_placements(
    store: &Store,
    request: Request<pb::ListPlacementsRequest>,
) -> Result<Response<pb::ListPlacementsResponse>, Status> {
    let context = auth::context(&request)?;
    let message = request.into_inner();
    let filters = format!(
        "enrollment={};supervisor={}",
        message.enrollment_id, message.supervisor_person_id
    );
    let page = Page::parse(message.page_size, &message.page_token, &filters)?;
    let caller = scope::list_caller(store, &context, Object::LearnerRecord).await?;
    let filter = PlacementFilter {
        enrollment_id: optional_id_or_error("enrollment_id", &message.enrollment_id)?,
        supervisor_person_id: optional_id_or_error(
            "supervisor_person_id",
            &message.supervisor_person_id,
        )?,
        visibility: caller
            .visibility(Object::LearnerRecord)
            .map(|visibility| (visibility, caller.subject().to_owned())),
    };
    let (placements, next_page_token) = store.list_placements(&filter, &page).await?;
    Ok(Response::new(pb::ListPlacementsResponse {
        placements: placements.into_iter().map(placement_to_proto).collect(),
        next_page_token,
    }))
}

/// `UpdatePlacement`: the host, or the supervisors (replaced as a whole).
pub(crate) async fn update_placement(
    store: &Store,
    request: Request<pb::UpdatePlacementRequest>,
) -> Result<Response<pb::Placement>, Status> {
    let context = auth::context(&request)?;
    let message = request.into_inner();
    let placement = message
        .placement
        .ok_or_else(|| Error::invalid("placement", "is required"))?;
    let id = required_id("placement.id", &placement.id)?;
    let expected = super::expected_revision("placement.etag", &placement.etag)?;
    let paths = super::mask_paths(message.update_mask);
    let fields = field_mask::resolve(
        &paths,
        PlacementField::parse,
        &PlacementField::OUTPUT_ONLY,
        &PlacementField::ALL,
        |field| match field {
            PlacementField::Host => placement.host.is_some(),
            PlacementField::SupervisorPersonIds => !placement.supervisor_person_ids.is_empty(),
        },
    )?;
    let mut violations = Violations::new();
    let mut patch = PlacementPatch::default();
    for field in fields {
        match field {
            PlacementField::Host => {
                let host = placement.host.clone().unwrap_or_default();
                patch.host = parse_host(&mut violations, "placement.host", raw_host(&host));
            }
            PlacementField::SupervisorPersonIds => {
                patch.supervisor_person_ids = parse_supervisors(
                    &mut violations,
                    "placement.supervisor_person_ids",
                    &placement.supervisor_person_ids,
                );
            }
        }
    }
    let patch = violations.into_result(patch)?;
    let caller = scope::caller(store, &context, Object::Enrolment).await?;
    let current = match store.get_placement(&id).await {
        Ok(current) => current,
        Err(error) => {
            return Err(caller
                .hide_missing(Object::Enrolment, "placement", &id, error)
                .into());
        }
    };
    check_enrollment(store, &caller, Object::Enrolment, &current.enrollment_id)
        .await
        .map_err(|_| scope::out_of_scope("placement", &id))?;
    let updated = store
        .update_placement(context.audit(None), id, patch, expected)
        .await?;
    tracing::info!(placement = %updated.id, revision = updated.revision, "placement updated");
    Ok(Response::new(placement_to_proto(updated)))
}

/// A SUPERVISOR event of a call on an activity that requires sign-off.
#[derive(Debug, Clone)]
pub(crate) struct SignOff {
    /// Position of the event in the call.
    pub index: usize,
    /// The enrolment.
    pub enrollment_id: String,
    /// The activity.
    pub activity_id: String,
}

/// The sign-offs of a call and the placements they fall under.
#[derive(Debug, Default)]
pub(crate) struct SignOffs {
    /// Every sign-off event of the call.
    pub events: Vec<SignOff>,
    /// Positions of those the caller may record (a named supervisor, or an admin).
    pub allowed: HashSet<usize>,
    placements: HashMap<(String, String), Placement>,
}

impl SignOffs {
    /// Finds the sign-off events of `records` and which of them `caller` may record.
    pub(crate) async fn of(
        store: &Store,
        caller: &Caller,
        records: &[EventRecord],
    ) -> Result<Self> {
        let candidates: Vec<SignOff> = records
            .iter()
            .enumerate()
            .filter_map(|(index, record)| {
                let event = record.as_ref().ok()?;
                (event.facts.source == Source::Supervisor).then(|| SignOff {
                    index,
                    enrollment_id: event.enrollment_id.clone(),
                    activity_id: event.activity_id.clone(),
                })
            })
            .collect();
        if candidates.is_empty() {
            return Ok(Self::default());
        }
        let mut activity_ids: Vec<String> = candidates
            .iter()
            .map(|sign_off| sign_off.activity_id.clone())
            .collect();
        activity_ids.sort();
        activity_ids.dedup();
        let kinds = store.activity_kinds(&activity_ids).await?;
        let events: Vec<SignOff> = candidates
            .into_iter()
            .filter(|sign_off| {
                kinds.get(&sign_off.activity_id).is_some_and(|kind| {
                    crate::domain::placement::needs_placement_supervisor(*kind, Source::Supervisor)
                })
            })
            .collect();
        if events.is_empty() {
            return Ok(Self::default());
        }
        if caller.principal().has(Role::Admin) {
            let allowed = events.iter().map(|sign_off| sign_off.index).collect();
            return Ok(Self {
                events,
                allowed,
                placements: HashMap::new(),
            });
        }
        let pairs: Vec<(String, String)> = events
            .iter()
            .map(|sign_off| (sign_off.enrollment_id.clone(), sign_off.activity_id.clone()))
            .collect();
        let placements = store.placements_of(&pairs).await?;
        let allowed = events
            .iter()
            .filter(|sign_off| {
                placements
                    .get(&(sign_off.enrollment_id.clone(), sign_off.activity_id.clone()))
                    .is_some_and(|placement| placement.is_supervised_by(caller.subject()))
            })
            .map(|sign_off| sign_off.index)
            .collect();
        Ok(Self {
            events,
            allowed,
            placements,
        })
    }

    /// Fails with the refusal of the first sign-off the caller may not record: FAILED_PRECONDITION
    /// `PLACEMENT_REQUIRED` when the enrolment has no placement for the activity, else
    /// PERMISSION_DENIED `NOT_PLACEMENT_SUPERVISOR`; each names the ids in its `ErrorInfo`.
    pub(crate) fn refuse_the_rest(&self) -> Result<(), Status> {
        let Some(refused) = self
            .events
            .iter()
            .find(|sign_off| !self.allowed.contains(&sign_off.index))
        else {
            return Ok(());
        };
        let key = (refused.enrollment_id.clone(), refused.activity_id.clone());
        let mut details = ErrorDetails::new();
        let index = refused.index.to_string();
        let status = match self.placements.get(&key) {
            None => {
                let message = format!(
                    "events[{index}]: enrollment {} has no placement for activity {}; create one \
                     (CreatePlacement) naming its supervisors; nothing of this call was done",
                    refused.enrollment_id, refused.activity_id
                );
                details.add_precondition_failure_violation(
                    "PLACEMENT_REQUIRED",
                    format!("enrollment/{}", refused.enrollment_id),
                    message.clone(),
                );
                details.set_error_info(
                    "PLACEMENT_REQUIRED",
                    ERROR_DOMAIN,
                    HashMap::from([
                        ("enrollment_id".to_owned(), refused.enrollment_id.clone()),
                        ("activity_id".to_owned(), refused.activity_id.clone()),
                        ("index".to_owned(), index),
                    ]),
                );
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Some(placement) => {
                let message = format!(
                    "events[{index}]: only a supervisor named on placement {} (or an admin) \
                     signs off activity {} of enrollment {}; nothing of this call was done",
                    placement.id, refused.activity_id, refused.enrollment_id
                );
                details.set_error_info(
                    "NOT_PLACEMENT_SUPERVISOR",
                    ERROR_DOMAIN,
                    HashMap::from([
                        ("placement_id".to_owned(), placement.id.clone()),
                        ("enrollment_id".to_owned(), refused.enrollment_id.clone()),
                        ("activity_id".to_owned(), refused.activity_id.clone()),
                        ("index".to_owned(), index),
                    ]),
                );
                Status::with_error_details(Code::PermissionDenied, message, details)
            }
        };
        Err(status)
    }
}

/// Returns true when the call records as a placement supervisor: it may then record SUPERVISOR
/// events even without a staff role (every other event of the call passed the scope rules).
pub(crate) fn records_as_supervisor(context: &CallContext, sign_offs: &SignOffs) -> bool {
    !sign_offs.allowed.is_empty() && !context.principal.has(Role::HrService)
}
