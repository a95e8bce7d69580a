//! ReportService: counters kept in the writing transactions equal a direct count, roll up over
//! subtrees, rebuild to the same figures, and stay within the caller's scope.

use std::collections::HashMap;

use futures::StreamExt as _;
use lms::auth::Role;
use lms::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind, ProgressSource as Source,
    ProgressVerb as Verb, progress_service_client::ProgressServiceClient,
    report_service_client::ReportServiceClient,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use sea_orm::{ConnectionTrait as _, Statement};
use tonic::Code;

use crate::helpers::{TestApp, TestDatabase, spawn_app_on, with_token};
use crate::programmes::{
    courses, create_programme, import_people, open_cohort, phase, programmes, published_version,
};

fn reports(app: &TestApp) -> ReportServiceClient<tonic::transport::Channel> {
    ReportServiceClient::new(app.channel.clone())
}

fn completed_event(enrollment: &str, activity: &str) -> pb::ProgressEvent {
    pb::ProgressEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        enrollment_id: enrollment.to_owned(),
        activity_id: activity.to_owned(),
        verb: Verb::Completed.into(),
        occurred_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        source: Source::App.into(),
        ..Default::default()
    }
}

struct Country {
    programme_id: String,
    ministries: Vec<pb::Organization>,
    cohorts: Vec<String>,
}

/// Three ministries with two departments each; 90 officers; two cohorts; a random mix of
/// enrolments (some waitlisted), withdrawals, partial and full progress.
async fn random_country(app: &TestApp, seed: u64) -> Country {
    let mut rng = StdRng::seed_from_u64(seed);
    let provider = app
        .create_organization("Academy", OrganizationKind::Partner, None, Some("ACAD"))
        .await;
    let mut ministries = Vec::new();
    for ministry in ["MOF", "MOH", "MOE"] {
        let top = app
            .create_organization(
                &format!("Ministry {ministry}"),
                OrganizationKind::Ministry,
                None,
                Some(ministry),
            )
            .await;
        for department in ["A", "B"] {
            app.create_organization(
                &format!("{ministry} department {department}"),
                OrganizationKind::Department,
                Some(&top.id),
                Some(&format!("{ministry}-{department}")),
            )
            .await;
        }
        ministries.push(top);
    }
    let version = published_version(
        app,
        "RPT-1",
        &provider.id,
        &[(
            "Only",
            &[
                (Kind::Lecture, Mode::Online, None),
                (Kind::Lab, Mode::Online, None),
            ],
        )],
    )
    .await;
    let activities: Vec<String> = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .modules[0]
        .activities
        .iter()
        .map(|activity| activity.id.clone())
        .collect();
    let programme = create_programme(
        app,
        "RPT",
        &provider.id,
        &[],
        vec![phase("Only", &[&version], "", 10)],
    )
    .await;
    let mut cohorts = Vec::new();
    for name in ["Cohort 1", "Cohort 2"] {
        let cohort = open_cohort(
            app,
            &programme.id,
            pb::Cohort {
                name: name.to_owned(),
                capacity: 40,
                waitlist_enabled: true,
                ..Default::default()
            },
        )
        .await;
        cohorts.push(cohort.id);
    }
    let mut people = Vec::new();
    for code in ["MOF-A", "MOF-B", "MOH-A", "MOH-B", "MOE-A", "MOE"] {
        let sector = if rng.random_bool(0.3) {
            pb::Sector::Private
        } else {
            pb::Sector::Public
        };
        people.extend(import_people(app, &format!("P{code}"), code, 15, sector).await);
    }
    let mut progress = ProgressServiceClient::new(app.channel.clone());
    for person in people {
        let cohort = &cohorts[rng.random_range(0..cohorts.len())];
        let Ok(enrollment) = programmes(app)
            .enroll(app.admin(pb::EnrollRequest {
                cohort_id: cohort.clone(),
                person_id: person,
                request_id: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
        else {
            continue;
        };
        let roll: f64 = rng.random();
        if enrollment.state() == pb::EnrollmentState::Waitlisted {
            continue;
        }
        if roll < 0.15 {
            programmes(app)
                .withdraw(app.admin(pb::WithdrawRequest {
                    enrollment_id: enrollment.id,
                    reason: "random".to_owned(),
                    etag: String::new(),
                }))
                .await
                .unwrap();
        } else if roll < 0.5 {
            let events = activities
                .iter()
                .map(|activity| completed_event(&enrollment.id, activity))
                .collect();
            progress
                .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
                .await
                .unwrap();
        } else if roll < 0.75 {
            let events = vec![completed_event(&enrollment.id, &activities[0])];
            progress
                .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
                .await
                .unwrap();
        }
    }
    Country {
        programme_id: programme.id,
        ministries,
        cohorts,
    }
}

/// Counts enrolments by state straight from the table, for a subtree (or everything).
async fn direct_counts(
    database: &TestDatabase,
    programme_id: &str,
    path_prefix: Option<&str>,
) -> HashMap<String, i64> {
    let connection = database.connect().await;
    let backend = connection.get_database_backend();
    let filter = path_prefix
        .map(|prefix| format!(" AND o.path LIKE '{prefix}%'"))
        .unwrap_or_default();
    let rows = connection
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT e.state AS state, COUNT(*) AS total FROM enrollments e \
                 JOIN organizations o ON o.id = e.organization_id \
                 WHERE e.programme_id = '{programme_id}'{filter} GROUP BY e.state"
            ),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "state").unwrap(),
                row.try_get::<i64>("", "total").unwrap(),
            )
        })
        .collect()
}

fn counts_of(row: &pb::CompletionReportRow) -> HashMap<String, i64> {
    [
        ("ENROLLED", row.enrolled),
        ("IN_PROGRESS", row.in_progress),
        ("COMPLETED", row.completed),
        ("WITHDRAWN", row.withdrawn),
        ("WAITLISTED", row.waitlisted),
    ]
    .into_iter()
    .filter(|(_, count)| *count != 0)
    .map(|(state, count)| (state.to_owned(), count))
    .collect()
}

#[tokio::test]
async fn report_figures_equal_a_direct_count_and_a_rebuild() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    let country = random_country(&app, 7).await;
    let request =
        |organization_id: &str, group_by: pb::ReportGrouping| pb::GetCompletionReportRequest {
            programme_id: country.programme_id.clone(),
            organization_id: organization_id.to_owned(),
            group_by: group_by.into(),
        };

    let national = reports(&app)
        .get_completion_report(app.admin(request("", pb::ReportGrouping::ChildOrganizations)))
        .await
        .unwrap()
        .into_inner();
    let total = national.total.clone().unwrap();
    assert_eq!(
        counts_of(&total),
        direct_counts(&database, &country.programme_id, None).await
    );
    for ministry in &country.ministries {
        let row = national
            .rows
            .iter()
            .find(|row| row.key == ministry.id)
            .expect("a row per ministry");
        let path = format!("/{}/", ministry.id);
        assert_eq!(
            counts_of(row),
            direct_counts(&database, &country.programme_id, Some(&path)).await,
            "{}",
            ministry.name
        );
    }
    let sum: i64 = national.rows.iter().map(|row| row.completed).sum();
    assert_eq!(sum, total.completed);
    if total.completed > 0 {
        assert!(total.median_days_to_complete.is_some());
        let places = total.enrolled + total.in_progress + total.completed;
        assert_eq!(
            total.completion_rate,
            (total.completed as f64 * 10_000.0 / places as f64).round() / 100.0
        );
    }

    // Within a ministry: its departments, plus the people attached to the ministry itself.
    let moe = &country.ministries[2];
    let by_department = reports(&app)
        .get_completion_report(app.admin(request(&moe.id, pb::ReportGrouping::ChildOrganizations)))
        .await
        .unwrap()
        .into_inner();
    assert!(
        by_department
            .rows
            .iter()
            .any(|row| row.name.ends_with("(directly)"))
    );
    let moe_total = counts_of(by_department.total.as_ref().unwrap());
    assert_eq!(
        moe_total,
        direct_counts(
            &database,
            &country.programme_id,
            Some(&format!("/{}/", moe.id))
        )
        .await
    );

    for grouping in [pb::ReportGrouping::Cohort, pb::ReportGrouping::Sector] {
        let grouped = reports(&app)
            .get_completion_report(app.admin(request("", grouping)))
            .await
            .unwrap()
            .into_inner();
        let mut summed = pb::CompletionReportRow::default();
        for row in &grouped.rows {
            summed.enrolled += row.enrolled;
            summed.in_progress += row.in_progress;
            summed.completed += row.completed;
            summed.withdrawn += row.withdrawn;
            summed.waitlisted += row.waitlisted;
        }
        assert_eq!(
            counts_of(&summed),
            counts_of(&total),
            "{grouping:?} rows add up to the total"
        );
    }

    let dashboard = reports(&app)
        .get_programme_dashboard(app.admin(pb::GetProgrammeDashboardRequest {
            programme_id: country.programme_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dashboard.cohorts.len(), country.cohorts.len());
    let completed: i64 = dashboard
        .cohorts
        .iter()
        .map(|cohort| cohort.completed)
        .sum();
    assert_eq!(completed, total.completed);
    let course_completed: i64 = dashboard
        .cohorts
        .iter()
        .map(|cohort| cohort.phases[0].courses[0].completed)
        .sum();
    assert_eq!(
        course_completed, total.completed,
        "one course: its completions are the programme's"
    );

    let rebuilt = reports(&app)
        .rebuild_report_counters(app.admin(pb::RebuildReportCountersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        rebuilt.agreed,
        "incremental counters equal the rebuilt ones"
    );
    let again = reports(&app)
        .get_completion_report(app.admin(request("", pb::ReportGrouping::ChildOrganizations)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, national);

    // Corrupt a counter behind the server's back: the rebuild notices and repairs it.
    database
        .connect()
        .await
        .execute_unprepared("UPDATE report_counters SET count = count + 5")
        .await
        .unwrap();
    let repaired = reports(&app)
        .rebuild_report_counters(app.admin(pb::RebuildReportCountersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!repaired.agreed);
    let after_repair = reports(&app)
        .get_completion_report(app.admin(request("", pb::ReportGrouping::ChildOrganizations)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_repair, national);
}

#[tokio::test]
async fn reports_stay_within_the_callers_scope_and_export_as_csv() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    let country = random_country(&app, 11).await;
    let finance = &country.ministries[0];
    let health = &country.ministries[1];
    let org_admin = app.token("mof-admin", &[Role::OrgAdmin], Some(&finance.id));
    let learner = app.token("learner", &[Role::Learner], None);
    let request = |organization_id: &str| pb::GetCompletionReportRequest {
        programme_id: country.programme_id.clone(),
        organization_id: organization_id.to_owned(),
        group_by: pb::ReportGrouping::ChildOrganizations.into(),
    };

    let own = reports(&app)
        .get_completion_report(with_token(request(""), &org_admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        own.total.unwrap().name,
        finance.name,
        "an org admin's default is their own organisation"
    );
    let status = reports(&app)
        .get_completion_report(with_token(request(&health.id), &org_admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = reports(&app)
        .get_completion_report(with_token(request(""), &learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = reports(&app)
        .rebuild_report_counters(with_token(pb::RebuildReportCountersRequest {}, &org_admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut stream = reports(&app)
        .export_report(app.admin(pb::ExportReportRequest {
            report: Some(request("")),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.next().await {
        csv.push_str(&chunk.unwrap().csv);
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("group,name,enrolled,in_progress,completed,withdrawn,waitlisted"));
    assert_eq!(
        lines.len(),
        1 + country.ministries.len() + 1,
        "header, a row per ministry, the total"
    );
    assert!(lines.last().unwrap().starts_with("total,"));
}
