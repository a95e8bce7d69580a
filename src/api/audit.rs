//! `lms.v1.AuditService`.

use tonic::{Request, Response, Status};

use crate::domain::{audit::AuditEntry, page::Page};
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
        let (first_broken_sequence, problem) = report.broken.unwrap_or_default();
        if first_broken_sequence != 0 {
            tracing::warn!(sequence = first_broken_sequence, problem = %problem, "audit chain is broken");
        }
        Ok(Response::new(pb::VerifyAuditChainResponse {
            valid: first_broken_sequence == 0,
            entries_checked: report.checked,
            first_broken_sequence,
            problem,
        }))
    }
}
