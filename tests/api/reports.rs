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
            course_id: String::new(),
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

    // The report by organisation reads the per-organisation roll-ups: corrupting them shows in
    // the report, and the rebuild notices and repairs them too.
    database
        .connect()
        .await
        .execute_unprepared("UPDATE report_org_counters SET count = count + 7")
        .await
        .unwrap();
    let skewed = reports(&app)
        .get_completion_report(app.admin(request("", pb::ReportGrouping::ChildOrganizations)))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(skewed, national, "the report reads the roll-ups");
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
        course_id: String::new(),
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

    // A name a spreadsheet would run as a formula (CSV injection) is exported as text.
    let formula = "=HYPERLINK(\"http://evil.example\",\"Click\")";
    app.organizations
        .clone()
        .update_organization(app.admin(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: finance.id.clone(),
                name: formula.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        }))
        .await
        .unwrap();
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
    assert!(lines.last().unwrap().starts_with("\"total\","));
    let finance_line = lines
        .iter()
        .find(|line| line.contains("HYPERLINK"))
        .expect("the renamed ministry's row");
    assert!(
        finance_line.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"Click\"\")\","),
        "the formula is neutralised and quoted: {finance_line}"
    );
    assert!(
        !csv.contains(",=") && !csv.contains(",\"="),
        "no cell starts with a formula"
    );
}

/// A published version with its course id and activity ids.
async fn course_layout(app: &TestApp, version_id: &str) -> (String, Vec<String>) {
    let version = courses(app)
        .get_course_version(app.admin(pb::GetCourseVersionRequest {
            id: version_id.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let activities = version
        .modules
        .iter()
        .flat_map(|module| module.activities.iter().map(|activity| activity.id.clone()))
        .collect();
    (version.course_id, activities)
}

/// Where each enrolment pinning `version_id` stands on it, counted straight from the tables with
/// the rule written out by hand: every activity completed -> COMPLETED (also when withdrawn
/// later), else withdrawn or waitlisted as the enrolment is, else IN_PROGRESS once any activity
/// has an event, else ENROLLED.
async fn direct_course_counts(
    database: &TestDatabase,
    version_id: &str,
    activity_count: i64,
) -> HashMap<String, i64> {
    let connection = database.connect().await;
    let rows = connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            format!(
                "SELECT e.state AS state, \
                 (SELECT COUNT(*) FROM activity_progress ap JOIN course_activities a ON a.id = ap.activity_id \
                  WHERE ap.enrollment_id = e.id AND a.course_version_id = '{version_id}' AND ap.events > 0) AS started, \
                 (SELECT COUNT(*) FROM activity_progress ap JOIN course_activities a ON a.id = ap.activity_id \
                  WHERE ap.enrollment_id = e.id AND a.course_version_id = '{version_id}' AND ap.completed_time IS NOT NULL) AS done \
                 FROM enrollments e WHERE e.course_version_ids LIKE '%{version_id}%'"
            ),
        ))
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for row in rows {
        let state: String = row.try_get("", "state").unwrap();
        let started: i64 = row.try_get("", "started").unwrap();
        let done: i64 = row.try_get("", "done").unwrap();
        let standing = if done == activity_count {
            "COMPLETED".to_owned()
        } else if state == "WITHDRAWN" || state == "WAITLISTED" {
            state
        } else if started > 0 {
            "IN_PROGRESS".to_owned()
        } else {
            "ENROLLED".to_owned()
        };
        *counts.entry(standing).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn course_reports_equal_a_direct_count_and_a_rebuild() {
    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    let mut rng = StdRng::seed_from_u64(23);
    let provider = app
        .create_organization("Academy", OrganizationKind::Partner, None, Some("ACAD"))
        .await;
    let ministry = app
        .create_organization(
            "Ministry MOF",
            OrganizationKind::Ministry,
            None,
            Some("MOF"),
        )
        .await;
    app.create_organization(
        "MOF department A",
        OrganizationKind::Department,
        Some(&ministry.id),
        Some("MOF-A"),
    )
    .await;
    let version_a = published_version(
        &app,
        "CRS-A",
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
    let version_b = published_version(
        &app,
        "CRS-B",
        &provider.id,
        &[("Only", &[(Kind::Lecture, Mode::Online, None)])],
    )
    .await;
    let (course_a, activities_a) = course_layout(&app, &version_a).await;
    let (course_b, activities_b) = course_layout(&app, &version_b).await;
    // Course A is in both programmes, course B in one.
    let both = create_programme(
        &app,
        "CRS-BOTH",
        &provider.id,
        &[],
        vec![
            phase("One", &[&version_a], "", 5),
            phase("Two", &[&version_b], "", 5),
        ],
    )
    .await;
    let only_a = create_programme(
        &app,
        "CRS-ONE",
        &provider.id,
        &[],
        vec![phase("Only", &[&version_a], "", 5)],
    )
    .await;
    let mut cohorts = Vec::new();
    for (programme, capacity) in [(&both.id, 25), (&only_a.id, 40)] {
        let cohort = open_cohort(
            &app,
            programme,
            pb::Cohort {
                name: format!("Cohort of {programme}"),
                capacity,
                waitlist_enabled: true,
                ..Default::default()
            },
        )
        .await;
        cohorts.push((cohort.id, programme == &both.id));
    }
    let mut people = import_people(&app, "CRS", "MOF-A", 30, pb::Sector::Public).await;
    people.extend(import_people(&app, "CRSM", "MOF", 15, pb::Sector::Private).await);
    let mut progress = ProgressServiceClient::new(app.channel.clone());
    let mut record = async |events: Vec<pb::ProgressEvent>| {
        progress
            .batch_record_progress(app.admin(pb::BatchRecordProgressRequest { events }))
            .await
            .unwrap();
    };
    for person in people {
        let (cohort, has_b) = cohorts[rng.random_range(0..cohorts.len())].clone();
        let enrollment = programmes(&app)
            .enroll(app.admin(pb::EnrollRequest {
                cohort_id: cohort,
                person_id: person,
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        if enrollment.state() == pb::EnrollmentState::Waitlisted {
            continue;
        }
        let id = enrollment.id.clone();
        let roll: f64 = rng.random();
        let all_a: Vec<pb::ProgressEvent> = activities_a
            .iter()
            .map(|activity| completed_event(&id, activity))
            .collect();
        let all_b: Vec<pb::ProgressEvent> = activities_b
            .iter()
            .map(|activity| completed_event(&id, activity))
            .collect();
        if roll < 0.15 {
            // Nothing: enrolled, not started.
        } else if roll < 0.35 {
            record(vec![completed_event(&id, &activities_a[0])]).await;
        } else if roll < 0.55 {
            record(all_a).await;
        } else if roll < 0.7 && has_b {
            record(all_b).await;
        } else {
            let mut events = all_a;
            if has_b {
                events.extend(all_b);
            }
            record(events).await;
        }
        if rng.random_bool(0.25) {
            // Withdrawing someone who completed the programme is refused; that is fine here.
            let _ = programmes(&app)
                .withdraw(app.admin(pb::WithdrawRequest {
                    enrollment_id: id,
                    reason: "random".to_owned(),
                    etag: String::new(),
                }))
                .await;
        }
    }

    let report = async |course_id: &str, group_by: pb::ReportGrouping| {
        reports(&app)
            .get_completion_report(app.admin(pb::GetCompletionReportRequest {
                course_id: course_id.to_owned(),
                group_by: group_by.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let by_a = report(&course_a, pb::ReportGrouping::ChildOrganizations).await;
    let by_b = report(&course_b, pb::ReportGrouping::ChildOrganizations).await;
    let total_a = by_a.total.clone().unwrap();
    let total_b = by_b.total.clone().unwrap();
    let direct_a = direct_course_counts(&database, &version_a, 2).await;
    let direct_b = direct_course_counts(&database, &version_b, 1).await;
    assert_eq!(counts_of(&total_a), direct_a);
    assert_eq!(counts_of(&total_b), direct_b);
    for state in ["ENROLLED", "IN_PROGRESS", "COMPLETED", "WITHDRAWN"] {
        assert!(
            direct_a.contains_key(state),
            "the mix reaches {state} on course A: {direct_a:?}"
        );
    }
    assert!(total_a.median_days_to_complete.is_some());
    assert_eq!(
        by_a.rows.len(),
        1,
        "one top-level organisation has enrolments"
    );
    assert_eq!(counts_of(&by_a.rows[0]), direct_a);
    let by_cohort = report(&course_a, pb::ReportGrouping::Cohort).await;
    assert_eq!(by_cohort.rows.len(), 2, "cohorts of both programmes");
    let completed: i64 = by_cohort.rows.iter().map(|row| row.completed).sum();
    assert_eq!(completed, total_a.completed);
    // The dashboards' per-version completions, kept by a different path, agree.
    let mut dashboard_completed = 0;
    for programme in [&both.id, &only_a.id] {
        let dashboard = reports(&app)
            .get_programme_dashboard(app.admin(pb::GetProgrammeDashboardRequest {
                programme_id: programme.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        dashboard_completed += dashboard
            .cohorts
            .iter()
            .flat_map(|cohort| &cohort.phases)
            .flat_map(|phase| &phase.courses)
            .filter(|course| course.course_version_id == version_a)
            .map(|course| course.completed)
            .sum::<i64>();
    }
    assert_eq!(dashboard_completed, total_a.completed);

    let rebuilt = reports(&app)
        .rebuild_report_counters(app.admin(pb::RebuildReportCountersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        rebuilt.agreed,
        "incremental course counters equal the rebuilt ones"
    );
    assert_eq!(
        report(&course_a, pb::ReportGrouping::ChildOrganizations).await,
        by_a
    );
    database
        .connect()
        .await
        .execute_unprepared("UPDATE report_course_counters SET count = count + 1")
        .await
        .unwrap();
    let repaired = reports(&app)
        .rebuild_report_counters(app.admin(pb::RebuildReportCountersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!repaired.agreed, "a corrupted course counter is noticed");
    assert_eq!(
        report(&course_b, pb::ReportGrouping::ChildOrganizations).await,
        by_b
    );

    // Exactly one of programme_id and course_id.
    let status = reports(&app)
        .get_completion_report(app.admin(pb::GetCompletionReportRequest {
            programme_id: both.id.clone(),
            course_id: course_a.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(crate::helpers::violated_fields(&status), ["course_id"]);
    let status = reports(&app)
        .get_completion_report(app.admin(pb::GetCompletionReportRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::violated_fields(&status), ["programme_id"]);

    let mut stream = reports(&app)
        .export_report(app.admin(pb::ExportReportRequest {
            report: Some(pb::GetCompletionReportRequest {
                course_id: course_b.clone(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.next().await {
        csv.push_str(&chunk.unwrap().csv);
    }
    let total_line = csv.lines().last().unwrap().to_owned();
    assert!(
        total_line.starts_with(&format!(
            "\"total\",\"All organizations\",{},{},{},{}",
            total_b.enrolled, total_b.in_progress, total_b.completed, total_b.withdrawn
        )),
        "{total_line}"
    );
}

#[tokio::test]
async fn the_dashboard_shows_survey_headlines_without_free_text() {
    use lms::pb::{SurveyQuestionKind as Q, survey_answer::Value};

    let database = TestDatabase::fresh().await;
    let app = spawn_app_on(&database).await;
    let provider = app
        .create_organization(
            "MyGovUC",
            OrganizationKind::TrainingCentre,
            None,
            Some("MYGOVUC"),
        )
        .await;
    let mut client = courses(&app);
    let course = client
        .create_course(app.admin(pb::CreateCourseRequest {
            course: Some(pb::Course {
                code: "AIW-DASH".to_owned(),
                title: "AI at work".to_owned(),
                provider_organization_id: provider.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let version = client
        .create_course_version(app.admin(pb::CreateCourseVersionRequest {
            course_id: course.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let module = client
        .create_module(app.admin(pb::CreateModuleRequest {
            course_version_id: version.id.clone(),
            module: Some(pb::Module {
                title: "Generative AI".to_owned(),
                required: true,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let question = |id: &str, kind: Q| pb::SurveyQuestion {
        id: id.to_owned(),
        text: format!("Question {id}"),
        kind: kind.into(),
        required: kind != Q::FreeText,
        ..Default::default()
    };
    let survey = client
        .create_activity(app.admin(pb::CreateActivityRequest {
            module_id: module.id.clone(),
            activity: Some(pb::Activity {
                title: "Pilot survey".to_owned(),
                kind: Kind::Survey.into(),
                delivery_mode: Mode::Online.into(),
                required: true,
                survey_questions: vec![
                    pb::SurveyQuestion {
                        options: vec!["Yes".to_owned(), "No".to_owned()],
                        ..question("saved_time", Q::SingleChoice)
                    },
                    pb::SurveyQuestion {
                        unit: "hours saved per week".to_owned(),
                        min: Some(0.0),
                        max: Some(40.0),
                        ..question("hours_saved", Q::Number)
                    },
                    question("usefulness", Q::Scale),
                    question("comments", Q::FreeText),
                ],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    client
        .publish_course_version(app.admin(pb::PublishCourseVersionRequest {
            id: version.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let programme = create_programme(
        &app,
        "AIW-DASH",
        &provider.id,
        &[],
        vec![phase("Pilot", &[&version.id], "", 5)],
    )
    .await;
    let cohort = open_cohort(
        &app,
        &programme.id,
        pb::Cohort {
            name: "Pilot".to_owned(),
            capacity: 100,
            ..Default::default()
        },
    )
    .await;
    let people = import_people(&app, "DASH", "MYGOVUC", 6, pb::Sector::Public).await;
    let enrolled = programmes(&app)
        .batch_enroll(app.admin(pb::BatchEnrollRequest {
            cohort_id: cohort.id.clone(),
            person_ids: people.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let hours = [4.0, 3.5, 3.5, 0.0, 3.5, 5.0];
    let usefulness = [4, 5, 2, 3, 4, 5];
    for (index, result) in enrolled.results.iter().enumerate() {
        let answer = |question_id: &str, value: Value| pb::SurveyAnswer {
            question_id: question_id.to_owned(),
            value: Some(value),
        };
        let saved = if hours[index] > 0.0 { "Yes" } else { "No" };
        let mut answers = vec![
            answer("saved_time", Value::Choice(saved.to_owned())),
            answer("hours_saved", Value::Number(hours[index])),
            answer("usefulness", Value::Scale(usefulness[index])),
        ];
        if index % 2 == 0 {
            answers.push(answer(
                "comments",
                Value::Text(format!("secret note {index}")),
            ));
        }
        let learner = app.token(&result.person_id, &[Role::Learner], None);
        lms::pb::survey_service_client::SurveyServiceClient::new(app.channel.clone())
            .submit_survey_response(with_token(
                pb::SubmitSurveyResponseRequest {
                    enrollment_id: result.enrollment.as_ref().unwrap().id.clone(),
                    activity_id: survey.id.clone(),
                    answers,
                },
                &learner,
            ))
            .await
            .unwrap();
    }

    let dashboard = reports(&app)
        .get_programme_dashboard(app.admin(pb::GetProgrammeDashboardRequest {
            programme_id: programme.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dashboard.surveys.len(), 1);
    let headline = &dashboard.surveys[0];
    assert_eq!(headline.activity_id, survey.id);
    assert_eq!(headline.course_version_id, version.id);
    assert_eq!(headline.response_count, 6);
    let find = |id: &str| {
        headline
            .questions
            .iter()
            .find(|question| question.question_id == id)
            .unwrap()
    };
    let hours_saved = find("hours_saved");
    assert_eq!(hours_saved.unit, "hours saved per week");
    assert_eq!(hours_saved.answer_count, 6);
    assert!(
        (hours_saved.mean.unwrap() - 3.25).abs() < 1e-12,
        "the mean entered"
    );
    assert_eq!(hours_saved.threshold, Some(0.0));
    assert!((hours_saved.share_above_threshold.unwrap() - 5.0 / 6.0).abs() < 1e-12);
    let scale = find("usefulness");
    assert!((scale.mean.unwrap() - 23.0 / 6.0).abs() < 1e-12);
    assert_eq!(scale.threshold, Some(3.0));
    assert!((scale.share_above_threshold.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    let choice = find("saved_time");
    assert_eq!(choice.top_option, "Yes");
    assert!((choice.top_option_share.unwrap() - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(choice.mean, None);
    let comments = find("comments");
    assert_eq!(comments.kind(), Q::FreeText);
    assert_eq!(comments.answer_count, 3);
    assert_eq!(comments.mean, None);
    let encoded = format!("{dashboard:?}");
    assert!(
        !encoded.contains("secret note"),
        "free text never reaches a dashboard"
    );
    // No sessions yet: the delivery figures are zero, per cohort and in total.
    assert_eq!(dashboard.sessions_delivered, 0);
    assert_eq!(dashboard.trainers_active, 0);
    assert_eq!(dashboard.cohorts[0].sessions_delivered, 0);
}
