//! `lms.v1.ReportService`.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::programme::cohort_state_to_proto;
use crate::auth::{
    self, CallContext, Scope,
    scope::{self, Object},
};
use crate::domain::{
    organization::{optional_id_or_error, required_id},
    report::{self, CompletionRow},
    survey::QuestionKind,
};
use crate::error::{Error, Reason, Result};
use crate::pb;
use crate::store::{
    Store,
    programme::CohortFilter,
    report::{CompletionReport, GroupBy, ReportSubject, SurveyHeadline},
};

/// CSV bytes per export message.
const CSV_CHUNK: usize = 64 * 1024;

/// Handlers of `ReportService`.
#[derive(Clone)]
pub struct ReportApi {
    store: Store,
    clock: crate::domain::certification::Clock,
}

impl ReportApi {
    /// Returns the handlers over `store`, judging certificate validity by `clock`.
    pub fn new(store: Store, clock: crate::domain::certification::Clock) -> Self {
        Self { store, clock }
    }

    /// Resolves the organisation a report is rooted at, within the caller's scope.
    async fn report_root(
        &self,
        context: &CallContext,
        requested: &str,
    ) -> Result<Option<crate::domain::organization::Organization>> {
        let scope = report_scope(context);
        let requested = optional_id_or_error("organization_id", requested)?;
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
            _ => {
                return Err(Error::permission_denied(
                    Reason::OutsideOrganizationScope,
                    "you may not read these reports",
                ));
            }
        }
        Ok(root)
    }

    /// Resolves and checks a completion report request, then runs it.
    async fn completion_report(
        &self,
        context: &CallContext,
        request: &pb::GetCompletionReportRequest,
    ) -> Result<CompletionReport> {
        let (programme_id, course_id) = match (
            request.programme_id.is_empty(),
            request.course_id.is_empty(),
        ) {
            (false, true) => (
                Some(required_id("programme_id", &request.programme_id)?),
                None,
            ),
            (true, false) => (None, Some(required_id("course_id", &request.course_id)?)),
            (true, true) => {
                return Err(Error::invalid("programme_id", "is required (or course_id)"));
            }
            (false, false) => {
                return Err(Error::invalid(
                    "course_id",
                    "must be empty when programme_id is set: a report is of a programme or of a course",
                ));
            }
        };
        let subject = match (&programme_id, &course_id) {
            (Some(programme_id), _) => {
                self.store.get_programme(programme_id).await?;
                ReportSubject::Programme(programme_id)
            }
            (None, Some(course_id)) => {
                self.store.get_course(course_id).await?;
                ReportSubject::Course(course_id)
            }
            (None, None) => return Err(Error::internal("report subject missing")),
        };
        let group_by = match pb::ReportGrouping::try_from(request.group_by) {
            Ok(pb::ReportGrouping::Unspecified | pb::ReportGrouping::ChildOrganizations) => {
                GroupBy::ChildOrganizations
            }
            Ok(pb::ReportGrouping::Cohort) => GroupBy::Cohort,
            Ok(pb::ReportGrouping::Sector | pb::ReportGrouping::Category) => GroupBy::Category,
            Ok(pb::ReportGrouping::Phase) if course_id.is_some() => {
                return Err(Error::invalid(
                    "group_by",
                    "PHASE groups programme reports only (set programme_id)",
                ));
            }
            Ok(pb::ReportGrouping::Phase) => GroupBy::Phase,
            Err(_) => return Err(Error::invalid("group_by", "is not a known grouping")),
        };
        let root = self.report_root(context, &request.organization_id).await?;
        let root = root
            .as_ref()
            .map(|root| (root.id.as_str(), root.path.as_str(), root.name.as_str()));
        self.store.completion_report(subject, root, group_by).await
    }
}

/// Returns where in the tree the caller may read reports ([`Object::Report`]).
fn report_scope(context: &CallContext) -> Scope {
    scope::Caller::new(context.principal.clone()).tree_scope(Object::Report)
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
        window_start_date: row
            .phase
            .as_ref()
            .and_then(|phase| phase.window_start_date)
            .map(|date| date.to_string())
            .unwrap_or_default(),
        window_end_date: row
            .phase
            .as_ref()
            .and_then(|phase| phase.window_end_date)
            .map(|date| date.to_string())
            .unwrap_or_default(),
        activities_completed: row
            .phase
            .as_ref()
            .map_or(0, |phase| phase.activities_completed),
        activities_completed_early: row
            .phase
            .as_ref()
            .map_or(0, |phase| phase.activities_completed_early),
        activities_completed_late: row
            .phase
            .as_ref()
            .map_or(0, |phase| phase.activities_completed_late),
    }
}

fn headline_to_proto(headline: SurveyHeadline) -> pb::SurveyHeadline {
    pb::SurveyHeadline {
        activity_id: headline.activity_id,
        title: headline.title,
        course_version_id: headline.course_version_id,
        response_count: headline.response_count,
        questions: headline
            .questions
            .into_iter()
            .map(|question| {
                let kind = match question.question.kind {
                    QuestionKind::Scale => pb::SurveyQuestionKind::Scale,
                    QuestionKind::Number => pb::SurveyQuestionKind::Number,
                    QuestionKind::SingleChoice => pb::SurveyQuestionKind::SingleChoice,
                    QuestionKind::FreeText => pb::SurveyQuestionKind::FreeText,
                };
                let (top_option, top_option_share) = match question.top_option {
                    Some((option, share)) => (option, Some(share)),
                    None => (String::new(), None),
                };
                pb::QuestionHeadline {
                    question_id: question.question.id,
                    text: question.question.text,
                    kind: kind.into(),
                    unit: question.question.unit.unwrap_or_default(),
                    answer_count: question.answer_count,
                    mean: question.mean,
                    threshold: question.threshold,
                    share_above_threshold: question.share_above_threshold,
                    top_option,
                    top_option_share,
                }
            })
            .collect(),
    }
}

type CsvStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportReportResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::report_service_server::ReportService for ReportApi {
    async fn get_completion_report(
        &self,
        request: Request<pb::GetCompletionReportRequest>,
    ) -> Result<Response<pb::CompletionReport>, Status> {
        let context = auth::context(&request)?;
        let report = self.completion_report(&context, request.get_ref()).await?;
        Ok(Response::new(pb::CompletionReport {
            rows: report.rows.iter().map(row_to_proto).collect(),
            total: Some(row_to_proto(&report.total)),
        }))
    }

    async fn get_programme_dashboard(
        &self,
        request: Request<pb::GetProgrammeDashboardRequest>,
    ) -> Result<Response<pb::ProgrammeDashboard>, Status> {
        let context = auth::context(&request)?;
        if report_scope(&context) != Scope::All {
            return Err(Error::permission_denied(
                Reason::RoleNotAllowed,
                "dashboards are for programme managers, admins and HR services",
            )
            .into());
        }
        let programme_id = required_id("programme_id", &request.get_ref().programme_id)?;
        let programme = self.store.get_programme(&programme_id).await?;
        let by_cohort = self
            .store
            .completion_report(
                ReportSubject::Programme(&programme_id),
                None,
                GroupBy::Cohort,
            )
            .await?;
        let course_completions = self.store.course_completions(&programme_id).await?;
        let delivery = self
            .store
            .programme_delivery(&programme_id, self.clock.now())
            .await?;
        let version_ids: Vec<String> = programme
            .phases
            .iter()
            .flat_map(|phase| phase.course_version_ids.iter().cloned())
            .collect();
        let surveys = self
            .store
            .programme_survey_headlines(&programme_id, &version_ids)
            .await?;
        let mut cohorts = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = crate::domain::page::Page::parse(
                1000,
                &page_token,
                &format!("dashboard={programme_id}"),
            )?;
            let filter = CohortFilter {
                programme_id: Some(programme_id.clone()),
                state: None,
            };
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
                let row = by_cohort
                    .rows
                    .iter()
                    .find(|row| row.key == cohort.id)
                    .cloned()
                    .unwrap_or_default();
                let figures = delivery
                    .cohorts
                    .get(&cohort.id)
                    .cloned()
                    .unwrap_or_default();
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
                                    .filter(|(cohort_id, version_id, _)| {
                                        *cohort_id == cohort.id && version_id == version
                                    })
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
                    sessions_delivered: figures.sessions_delivered,
                    trainers_active: figures.trainers_active,
                    trainers_certified: figures.trainers_certified,
                }
            })
            .collect();
        Ok(Response::new(pb::ProgrammeDashboard {
            programme_id: programme.id,
            title: programme.title,
            cohorts: funnels,
            total: Some(row_to_proto(&by_cohort.total)),
            sessions_delivered: delivery.total.sessions_delivered,
            trainers_active: delivery.total.trainers_active,
            trainers_certified: delivery.total.trainers_certified,
            surveys: surveys.into_iter().map(headline_to_proto).collect(),
        }))
    }

    async fn get_certification_report(
        &self,
        request: Request<pb::GetCertificationReportRequest>,
    ) -> Result<Response<pb::CertificationReport>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let track_id = required_id("track_id", &message.track_id)?;
        let days = match message.expiring_within_days {
            0 => 30,
            days if (1..=3650).contains(&days) => days,
            _ => return Err(Error::invalid("expiring_within_days", "must be 0 to 3,650").into()),
        };
        self.store.get_track(&track_id).await?;
        let root = self.report_root(&context, &message.organization_id).await?;
        let children = self
            .store
            .child_organizations(root.as_ref().map(|root| root.id.as_str()))
            .await?;
        let records = self.store.track_records(&track_id).await?;
        let now = self.clock.now();
        let horizon = now + chrono::Duration::days(i64::from(days));
        let mut rows: Vec<report::CertificationRow> = children
            .iter()
            .map(|child| report::CertificationRow {
                key: child.id.clone(),
                name: child.name.clone(),
                ..Default::default()
            })
            .collect();
        let mut total = report::CertificationRow {
            key: "total".to_owned(),
            name: root
                .as_ref()
                .map(|root| root.name.clone())
                .unwrap_or_else(|| "All organizations".to_owned()),
            ..Default::default()
        };
        for record in &records {
            let in_selection = root
                .as_ref()
                .is_none_or(|root| record.organization_path.starts_with(&root.path));
            if !in_selection {
                continue;
            }
            let child = children
                .iter()
                .position(|child| record.organization_path.starts_with(&child.path));
            for row in std::iter::once(&mut total).chain(child.map(|index| &mut rows[index])) {
                if let Some(state) = &record.candidacy_state {
                    *row.candidacies.entry(state.clone()).or_default() += 1;
                }
                if let Some(certificate) = &record.certificate {
                    row.add_certificate(certificate, now, horizon);
                }
            }
        }
        let to_proto = |row: report::CertificationRow| pb::CertificationReportRow {
            key: row.key,
            name: row.name,
            candidacies: row.candidacies.into_iter().collect(),
            certified: row.certified,
            expiring_soon: row.expiring_soon,
            expired: row.expired,
            suspended: row.suspended,
            revoked: row.revoked,
        };
        rows.retain(|row| {
            !row.candidacies.is_empty()
                || row.certified + row.expired + row.suspended + row.revoked > 0
        });
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::CertificationReport {
            rows: rows.into_iter().map(to_proto).collect(),
            total: Some(to_proto(total)),
        }))
    }

    type ExportReportStream = CsvStream;

    async fn export_report(
        &self,
        request: Request<pb::ExportReportRequest>,
    ) -> Result<Response<Self::ExportReportStream>, Status> {
        let context = auth::context(&request)?;
        let report_request = request
            .into_inner()
            .report
            .ok_or_else(|| Error::invalid("report", "is required"))?;
        let report = self.completion_report(&context, &report_request).await?;
        let csv = report::to_csv(&report.rows, &report.total);
        let mut chunks = Vec::new();
        let mut rest = csv.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(CSV_CHUNK);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            chunks.push(Ok(pb::ExportReportResponse {
                csv: rest[..end].to_owned(),
            }));
            rest = &rest[end..];
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn rebuild_report_counters(
        &self,
        request: Request<pb::RebuildReportCountersRequest>,
    ) -> Result<Response<pb::RebuildReportCountersResponse>, Status> {
        let context = auth::context(&request)?;
        let agreed = self.store.rebuild_report_counters().await?;
        if !agreed {
            tracing::warn!(actor = %context.principal.subject, "report counters disagreed with the enrolments and were rebuilt");
        }
        Ok(Response::new(pb::RebuildReportCountersResponse { agreed }))
    }
}
