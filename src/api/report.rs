//! `lms.v1.ReportService`.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{self, CallContext, Role, Scope};
use crate::domain::{organization::{optional_id_or_error, required_id}, programme::CohortState, report::{self, CompletionRow}};
use crate::error::{Error, Result};
use crate::pb;
use crate::store::{Store, programme::CohortFilter, report::{CompletionReport, GroupBy}};

/// CSV bytes per export message.
const CSV_CHUNK: usize = 64 * 1024;

/// Handlers of `ReportService`.
#[derive(Clone)]
pub struct ReportApi {
    store: Store,
}

impl ReportApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Resolves and checks a completion report request, then runs it.
    async fn completion_report(&self, context: &CallContext, request: &pb::GetCompletionReportRequest) -> Result<CompletionReport> {
        let programme_id = required_id("programme_id", &request.programme_id)?;
        self.store.get_programme(&programme_id).await?;
        let group_by = match pb::ReportGrouping::try_from(request.group_by) {
            Ok(pb::ReportGrouping::Unspecified | pb::ReportGrouping::ChildOrganizations) => GroupBy::ChildOrganizations,
            Ok(pb::ReportGrouping::Cohort) => GroupBy::Cohort,
            Ok(pb::ReportGrouping::Sector) => GroupBy::Sector,
            Err(_) => return Err(Error::invalid("group_by", "is not a known grouping")),
        };
        let scope = report_scope(context);
        let requested = optional_id_or_error("organization_id", &request.organization_id)?;
        let root_id = match (&scope, requested) {
            (Scope::Subtree(own), None) => Some(own.clone()),
            (_, requested) => requested,
        };
        let root = match &root_id {
            Some(id) => Some(self.store.get_organization(id).await?),
            None => None,
        };
        match (&scope, &root) {
            (Scope::All, _) => {}
            (Scope::Subtree(_), Some(root)) => scope.require_path(&root.path, "organization_id")?,
            _ => return Err(Error::permission_denied("OUTSIDE_ORGANIZATION_SCOPE", "you may not read these reports")),
        }
        let root = root.as_ref().map(|root| (root.id.as_str(), root.path.as_str(), root.name.as_str()));
        self.store.completion_report(&programme_id, root, group_by).await
    }
}

/// Returns where in the tree the caller may read reports.
fn report_scope(context: &CallContext) -> Scope {
    let principal = &context.principal;
    if [Role::Admin, Role::ProgrammeManager, Role::HrService].iter().any(|role| principal.has(*role)) {
        return Scope::All;
    }
    principal.management_scope()
}

fn row_to_proto(row: &CompletionRow) -> pb::CompletionReportRow {
    pb::CompletionReportRow {
        key: row.key.clone(),
        name: row.name.clone(),
        enrolled: row.enrolled,
        in_progress: row.in_progress,
        completed: row.completed,
        withdrawn: row.withdrawn,
        waitlisted: row.waitlisted,
        completion_rate: row.completion_rate(),
        median_days_to_complete: row.median_days(),
    }
}

fn cohort_state_to_proto(state: CohortState) -> pb::CohortState {
    match state {
        CohortState::Planned => pb::CohortState::Planned,
        CohortState::Open => pb::CohortState::Open,
        CohortState::Running => pb::CohortState::Running,
        CohortState::Closed => pb::CohortState::Closed,
    }
}

type CsvStream = Pin<Box<dyn Stream<Item = Result<pb::ExportReportResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::report_service_server::ReportService for ReportApi {
    async fn get_completion_report(&self, request: Request<pb::GetCompletionReportRequest>) -> Result<Response<pb::CompletionReport>, Status> {
        let context = auth::context(&request)?;
        let report = self.completion_report(&context, request.get_ref()).await?;
        Ok(Response::new(pb::CompletionReport {
            rows: report.rows.iter().map(row_to_proto).collect(),
            total: Some(row_to_proto(&report.total)),
        }))
    }

    async fn get_programme_dashboard(&self, request: Request<pb::GetProgrammeDashboardRequest>) -> Result<Response<pb::ProgrammeDashboard>, Status> {
        let context = auth::context(&request)?;
        if report_scope(&context) != Scope::All {
            return Err(Error::permission_denied("ROLE_NOT_ALLOWED", "dashboards are for programme managers, admins and HR services").into());
        }
        let programme_id = required_id("programme_id", &request.get_ref().programme_id)?;
        let programme = self.store.get_programme(&programme_id).await?;
        let by_cohort = self.store.completion_report(&programme_id, None, GroupBy::Cohort).await?;
        let course_completions = self.store.course_completions(&programme_id).await?;
        let mut cohorts = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = crate::domain::page::Page::parse(1000, &page_token, &format!("dashboard={programme_id}"))?;
            let filter = CohortFilter { programme_id: Some(programme_id.clone()), state: None };
            let (list, next) = self.store.list_cohorts(&filter, &page).await?;
            cohorts.extend(list);
            if next.is_empty() {
                break;
            }
            page_token = next;
        }
        let funnels = cohorts
            .into_iter()
            .map(|cohort| {
                let row = by_cohort.rows.iter().find(|row| row.key == cohort.id).cloned().unwrap_or_default();
                let phases = programme
                    .phases
                    .iter()
                    .map(|phase| pb::PhaseProgress {
                        phase_id: phase.id.clone(),
                        title: phase.title.clone(),
                        courses: phase
                            .course_version_ids
                            .iter()
                            .map(|version| pb::CourseCompletions {
                                course_version_id: version.clone(),
                                completed: course_completions
                                    .iter()
                                    .filter(|(cohort_id, version_id, _)| *cohort_id == cohort.id && version_id == version)
                                    .map(|(_, _, count)| count)
                                    .sum(),
                            })
                            .collect(),
                    })
                    .collect();
                pb::CohortFunnel {
                    cohort_id: cohort.id.clone(),
                    name: cohort.settings.name.clone(),
                    state: cohort_state_to_proto(cohort.state).into(),
                    capacity: cohort.settings.capacity,
                    enrolled: row.holding_places(),
                    started: row.in_progress + row.completed,
                    completed: row.completed,
                    withdrawn: row.withdrawn,
                    waitlisted: row.waitlisted,
                    phases,
                }
            })
            .collect();
        Ok(Response::new(pb::ProgrammeDashboard {
            programme_id: programme.id,
            title: programme.title,
            cohorts: funnels,
            total: Some(row_to_proto(&by_cohort.total)),
        }))
    }

    type ExportReportStream = CsvStream;

    async fn export_report(&self, request: Request<pb::ExportReportRequest>) -> Result<Response<Self::ExportReportStream>, Status> {
        let context = auth::context(&request)?;
        let report_request = request.into_inner().report.ok_or_else(|| Error::invalid("report", "is required"))?;
        let report = self.completion_report(&context, &report_request).await?;
        let csv = report::to_csv(&report.rows, &report.total);
        let mut chunks = Vec::new();
        let mut rest = csv.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(CSV_CHUNK);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            chunks.push(Ok(pb::ExportReportResponse { csv: rest[..end].to_owned() }));
            rest = &rest[end..];
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn rebuild_report_counters(&self, request: Request<pb::RebuildReportCountersRequest>) -> Result<Response<pb::RebuildReportCountersResponse>, Status> {
        let context = auth::context(&request)?;
        let agreed = self.store.rebuild_report_counters().await?;
        if !agreed {
            tracing::warn!(actor = %context.principal.subject, "report counters disagreed with the enrolments and were rebuilt");
        }
        Ok(Response::new(pb::RebuildReportCountersResponse { agreed }))
    }
}
