//! `lms.v1.AuditService`.

use tonic::{Request, Response, Status};

use crate::domain::{
    audit::{AuditEntry, ProgressProblemKind},
    page::Page,
};
use crate::pb;
use crate::store::{Store, audit::AuditFilter};

/// Handlers of `AuditService`.
#[derive(Clone)]
pub struct AuditApi {
    store: Store,
}

impl AuditApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl From<AuditEntry> for pb::AuditEntry {
    fn from(entry: AuditEntry) -> Self {
        Self {
            sequence: entry.sequence,
            id: entry.id,
            actor: entry.actor,
            action: entry.action,
            resource_type: entry.resource_type,
            resource_id: entry.resource_id,
            request_id: entry.request_id,
            time: Some(super::timestamp(entry.time)),
            change_digest: entry.change_digest,
            previous_hash: entry.previous_hash,
            hash: entry.hash,
        }
    }
}

fn problem_kind_to_proto(kind: ProgressProblemKind) -> pb::ProgressIntegrityProblem {
    match kind {
        ProgressProblemKind::EventEdited => pb::ProgressIntegrityProblem::EventEdited,
        ProgressProblemKind::EventDeleted => pb::ProgressIntegrityProblem::EventDeleted,
        ProgressProblemKind::EventUnanchored => pb::ProgressIntegrityProblem::EventUnanchored,
        ProgressProblemKind::AnchorTampered => pb::ProgressIntegrityProblem::AnchorTampered,
        ProgressProblemKind::AnchorMissing => pb::ProgressIntegrityProblem::AnchorMissing,
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let message = request.into_inner();
        let filters = format!(
            "type={};id={};actor={};start={:?};end={:?}",
            message.resource_type,
            message.resource_id,
            message.actor,
            message.start_time,
            message.end_time
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = AuditFilter {
            start_time: super::optional_time("start_time", message.start_time)?,
            end_time: super::optional_time("end_time", message.end_time)?,
            resource_type: non_empty(message.resource_type),
            resource_id: non_empty(message.resource_id),
            actor: non_empty(message.actor),
        };
        let (entries, next_page_token) = self.store.list_audit_entries(&filter, &page).await?;
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries: entries.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn verify_audit_chain(
        &self,
        _request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        let report = self.store.verify_audit_chain().await?;
        let (first_broken_sequence, problem) = report.chain.broken.unwrap_or_default();
        if first_broken_sequence != 0 {
            tracing::warn!(sequence = first_broken_sequence, problem = %problem, "audit chain is broken");
        }
        let progress = report.progress;
        let mut response = pb::VerifyAuditChainResponse {
            valid: first_broken_sequence == 0 && progress.problem.is_none(),
            entries_checked: report.chain.checked,
            first_broken_sequence,
            problem,
            progress_events_checked: progress.events_checked,
            progress_anchors_checked: progress.anchors_checked,
            ..Default::default()
        };
        if let Some(bad) = progress.problem {
            tracing::warn!(
                event_id = %bad.event_id,
                anchor_sequence = bad.anchor_sequence,
                problem = %bad.message,
                "progress log does not match its anchors"
            );
            response.set_progress_problem_kind(problem_kind_to_proto(bad.kind));
            response.first_bad_progress_event_id = bad.event_id;
            response.progress_anchor_sequence = bad.anchor_sequence;
            response.progress_problem = bad.message;
        }
        Ok(Response::new(response))
    }
}
