//! Report counters: kept current in the transactions that move enrolments, rolled up over
//! organisation subtrees by materialised path, and rebuilt from the enrolments on demand.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _, FromQueryResult, Statement,
    Value,
    sea_query::{Alias, Expr, ExprTrait as _, OnConflict},
};

use super::entity::report::{
    report_counters, report_course_completions, report_course_counters, report_course_durations,
    report_durations,
};
use super::{Store, db_error};
use crate::domain::programme::{Enrollment, EnrollmentState};
use crate::domain::progress::ProgressView;
use crate::domain::report::{CompletionRow, CourseStanding, course_standing};
use crate::error::{Error, Result};

/// Key of one counter.
type CounterKey = (String, String, String, String, String);
/// Key of one duration bucket.
type DurationKey = (String, String, String, i32);

fn counter_key(enrollment: &Enrollment) -> CounterKey {
    (
        enrollment.programme_id.clone(),
        enrollment.cohort_id.clone(),
        enrollment.organization_id.clone(),
        enrollment.category.as_str().to_owned(),
        enrollment.state.as_str().to_owned(),
    )
}

fn days_to_complete(enrollment: &Enrollment) -> Option<DurationKey> {
    let completed = enrollment.completed_time?;
    let days = std::cmp::max((completed - enrollment.enrolled_time).num_days(), 0) as i32;
    Some((
        enrollment.programme_id.clone(),
        enrollment.cohort_id.clone(),
        enrollment.organization_id.clone(),
        days,
    ))
}

/// Returns `<table>.<column> + excluded.<column>`: the upsert adds the delta to the stored count.
fn increment(table: &str, column: impl sea_orm::sea_query::IntoIden + Copy) -> Expr {
    Expr::col((Alias::new(table), column)).add(Expr::col((Alias::new("excluded"), column)))
}

/// Applies counter changes for enrolments that moved from `before` (none for new ones) to `after`.
///
/// Keys are applied in sorted order, so concurrent transactions lock counter rows in the same
/// order and cannot deadlock on them.
pub(crate) async fn record_moves(
    transaction: &DatabaseTransaction,
    moves: &[(Option<Enrollment>, Enrollment)],
) -> Result<()> {
    let mut counters: BTreeMap<CounterKey, i64> = BTreeMap::new();
    let mut durations: BTreeMap<DurationKey, i64> = BTreeMap::new();
    for (before, after) in moves {
        if let Some(before) = before {
            *counters.entry(counter_key(before)).or_default() -= 1;
            if before.state == EnrollmentState::Completed
                && let Some(key) = days_to_complete(before)
            {
                *durations.entry(key).or_default() -= 1;
            }
        }
        *counters.entry(counter_key(after)).or_default() += 1;
        if after.state == EnrollmentState::Completed
            && let Some(key) = days_to_complete(after)
        {
            *durations.entry(key).or_default() += 1;
        }
    }
    record_rollups(transaction, &counters, &durations).await?;
    let counter_rows: Vec<report_counters::ActiveModel> = counters
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(
            |((programme_id, cohort_id, organization_id, sector, state), delta)| {
                report_counters::ActiveModel {
                    programme_id: Set(programme_id),
                    cohort_id: Set(cohort_id),
                    organization_id: Set(organization_id),
                    sector: Set(sector),
                    state: Set(state),
                    count: Set(delta),
                }
            },
        )
        .collect();
    if !counter_rows.is_empty() {
        report_counters::Entity::insert_many(counter_rows)
            .on_conflict(
                OnConflict::columns([
                    report_counters::Column::ProgrammeId,
                    report_counters::Column::CohortId,
                    report_counters::Column::OrganizationId,
                    report_counters::Column::Sector,
                    report_counters::Column::State,
                ])
                .value(
                    report_counters::Column::Count,
                    increment("report_counters", report_counters::Column::Count),
                )
                .to_owned(),
            )
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    let duration_rows: Vec<report_durations::ActiveModel> = durations
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(
            |((programme_id, cohort_id, organization_id, days), delta)| {
                report_durations::ActiveModel {
                    programme_id: Set(programme_id),
                    cohort_id: Set(cohort_id),
                    organization_id: Set(organization_id),
                    days: Set(days),
                    count: Set(delta),
                }
            },
        )
        .collect();
    if !duration_rows.is_empty() {
        report_durations::Entity::insert_many(duration_rows)
            .on_conflict(
                OnConflict::columns([
                    report_durations::Column::ProgrammeId,
                    report_durations::Column::CohortId,
                    report_durations::Column::OrganizationId,
                    report_durations::Column::Days,
                ])
                .value(
                    report_durations::Column::Count,
                    increment("report_durations", report_durations::Column::Count),
                )
                .to_owned(),
            )
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    record_course_standings_of_moves(transaction, moves).await
}

/// Adds the counter and duration changes of a transaction to the per-organisation roll-ups
/// (`report_org_counters`, `report_org_durations`): the same deltas without cohort and category.
/// Keys are applied in sorted order, as the counters are.
async fn record_rollups(
    transaction: &DatabaseTransaction,
    counters: &BTreeMap<CounterKey, i64>,
    durations: &BTreeMap<DurationKey, i64>,
) -> Result<()> {
    let mut by_organization: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for ((programme_id, _, organization_id, _, state), delta) in counters {
        *by_organization
            .entry((
                programme_id.as_str(),
                organization_id.as_str(),
                state.as_str(),
            ))
            .or_default() += delta;
    }
    let mut durations_by_organization: BTreeMap<(&str, &str, i32), i64> = BTreeMap::new();
    for ((programme_id, _, organization_id, days), delta) in durations {
        *durations_by_organization
            .entry((programme_id.as_str(), organization_id.as_str(), *days))
            .or_default() += delta;
    }
    let backend = transaction.get_database_backend();
    let counter_values: Vec<Vec<Value>> = by_organization
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|((programme_id, organization_id, state), delta)| {
            vec![
                programme_id.into(),
                organization_id.into(),
                state.into(),
                delta.into(),
            ]
        })
        .collect();
    let duration_values: Vec<Vec<Value>> = durations_by_organization
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|((programme_id, organization_id, days), delta)| {
            vec![
                programme_id.into(),
                organization_id.into(),
                days.into(),
                delta.into(),
            ]
        })
        .collect();
    for (table, key, rows) in [
        ("report_org_counters", "state", counter_values),
        ("report_org_durations", "days", duration_values),
    ] {
        if rows.is_empty() {
            continue;
        }
        let placeholders = vec!["(?, ?, ?, ?)"; rows.len()].join(", ");
        let sql = format!(
            "INSERT INTO {table} (programme_id, organization_id, {key}, count) VALUES {placeholders} \
             ON CONFLICT (programme_id, organization_id, {key}) DO UPDATE SET count = {table}.count + excluded.count"
        );
        transaction
            .execute_raw(statement(
                backend,
                &sql,
                rows.into_iter().flatten().collect(),
            ))
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Rebuilds the per-organisation roll-ups from the counters and durations they sum.
async fn rebuild_rollups(transaction: &DatabaseTransaction) -> Result<()> {
    let backend = transaction.get_database_backend();
    for sql in [
        "DELETE FROM report_org_counters",
        "DELETE FROM report_org_durations",
        "INSERT INTO report_org_counters (programme_id, organization_id, state, count) \
         SELECT programme_id, organization_id, state, SUM(count) FROM report_counters \
         GROUP BY programme_id, organization_id, state HAVING SUM(count) <> 0",
        "INSERT INTO report_org_durations (programme_id, organization_id, days, count) \
         SELECT programme_id, organization_id, days, SUM(count) FROM report_durations \
         GROUP BY programme_id, organization_id, days HAVING SUM(count) <> 0",
    ] {
        transaction
            .execute_raw(Statement::from_string(backend, sql))
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Returns every non-zero roll-up row, keyed by table, programme, organisation and state or days.
async fn rollup_snapshot(
    connection: &impl ConnectionTrait,
) -> Result<BTreeMap<(String, String, String, String), i64>> {
    #[derive(Debug, FromQueryResult)]
    struct RollupRow {
        kind: String,
        programme_id: String,
        organization_id: String,
        bucket: String,
        count: i64,
    }
    let backend = connection.get_database_backend();
    let rows = RollupRow::find_by_statement(Statement::from_string(
        backend,
        "SELECT 'state' AS kind, programme_id, organization_id, state AS bucket, CAST(count AS BIGINT) AS count \
         FROM report_org_counters WHERE count <> 0 UNION ALL \
         SELECT 'days' AS kind, programme_id, organization_id, CAST(days AS VARCHAR(16)) AS bucket, CAST(count AS BIGINT) AS count \
         FROM report_org_durations WHERE count <> 0",
    ))
    .all(connection)
    .await
    .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.kind, row.programme_id, row.organization_id, row.bucket),
                row.count,
            )
        })
        .collect())
}

/// Counts completions of course versions by enrolments (for the programme dashboard).
pub(crate) async fn record_course_completions(
    transaction: &DatabaseTransaction,
    completions: &[(&Enrollment, String)],
) -> Result<()> {
    let mut counts: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
    for (enrollment, version_id) in completions {
        let key = (
            enrollment.programme_id.clone(),
            enrollment.cohort_id.clone(),
            enrollment.organization_id.clone(),
            version_id.clone(),
        );
        *counts.entry(key).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let rows: Vec<report_course_completions::ActiveModel> = counts
        .into_iter()
        .map(
            |((programme_id, cohort_id, organization_id, course_version_id), count)| {
                report_course_completions::ActiveModel {
                    programme_id: Set(programme_id),
                    cohort_id: Set(cohort_id),
                    organization_id: Set(organization_id),
                    course_version_id: Set(course_version_id),
                    count: Set(count),
                }
            },
        )
        .collect();
    report_course_completions::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([
                report_course_completions::Column::ProgrammeId,
                report_course_completions::Column::CohortId,
                report_course_completions::Column::OrganizationId,
                report_course_completions::Column::CourseVersionId,
            ])
            .value(
                report_course_completions::Column::Count,
                increment(
                    "report_course_completions",
                    report_course_completions::Column::Count,
                ),
            )
            .to_owned(),
        )
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// How a completion report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The organisation's children (the whole country: the top-level organisations).
    ChildOrganizations,
    /// Cohorts.
    Cohort,
    /// Participant categories (also the deprecated sector grouping).
    Category,
    /// Phases of the programme (programme reports only; see [`Store::phase_report`]).
    Phase,
}

#[derive(Debug, FromQueryResult)]
struct GroupedCount {
    group_key: String,
    group_name: String,
    state: String,
    total: i64,
}

#[derive(Debug, FromQueryResult)]
struct GroupedDuration {
    group_key: String,
    days: i32,
    total: i64,
}

/// Returns the id of the child of `root` (of the tree, when `None`) that a node with `path` lies under;
/// `None` for the root itself or a node outside it.
fn child_in_path(path: &str, root: Option<&str>) -> Option<String> {
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    match root {
        None => segments.next().map(str::to_owned),
        Some(root) => {
            segments.by_ref().find(|segment| *segment == root)?;
            segments.next().map(str::to_owned)
        }
    }
}

/// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut numbered = String::with_capacity(sql.len() + 8);
        let mut index = 0;
        for character in sql.chars() {
            if character == '?' {
                index += 1;
                numbered.push_str(&format!("${index}"));
            } else {
                numbered.push(character);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A completion report: one row per group and the total of the whole selection.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionReport {
    /// Rows, ordered by name.
    pub rows: Vec<CompletionRow>,
    /// The whole selection.
    pub total: CompletionRow,
}

/// What a completion report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSubject<'a> {
    /// Enrolments of a programme, by enrolment state.
    Programme(&'a str),
    /// Enrolments whose pinned programme includes a version of a course, by where they stand on
    /// that course (see `domain::report::course_standing`).
    Course(&'a str),
}

impl ReportSubject<'_> {
    /// Returns the counter tables (aliases `rc` and `d`) and the filter on each (one `?`).
    fn sources(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Programme(_) => (
                "report_counters rc",
                "rc.programme_id = ?",
                "report_durations d",
                "d.programme_id = ?",
            ),
            Self::Course(_) => (
                "report_course_counters rc JOIN course_versions cv ON cv.id = rc.course_version_id",
                "cv.course_id = ?",
                "report_course_durations d JOIN course_versions cv ON cv.id = d.course_version_id",
                "cv.course_id = ?",
            ),
        }
    }

    fn id(self) -> String {
        match self {
            Self::Programme(id) | Self::Course(id) => id.to_owned(),
        }
    }
}

impl Store {
    /// Returns the completion report of `subject` over the subtree of `root` (id, path, name;
    /// the whole tree when `None`).
    pub async fn completion_report(
        &self,
        subject: ReportSubject<'_>,
        root: Option<(&str, &str, &str)>,
        group_by: GroupBy,
    ) -> Result<CompletionReport> {
        if group_by == GroupBy::Phase {
            return match subject {
                ReportSubject::Programme(programme_id) => {
                    self.phase_report(programme_id, root).await
                }
                ReportSubject::Course(_) => Err(Error::invalid(
                    "group_by",
                    "PHASE groups programme reports only",
                )),
            };
        }
        // Reports may be served by a hot standby (bounded staleness, read-your-writes).
        let db = &self.reader();
        let backend = db.get_database_backend();
        let prefix = root.map(|(_, path, _)| format!("{}%", super::escape_like(path)));
        let subtree = if prefix.is_some() {
            " AND o.path LIKE ? ESCAPE '!'"
        } else {
            ""
        };
        let (counters, counters_filter, durations_from, durations_filter) =
            match (subject, group_by) {
                // By organisation, a programme's report sums the per-organisation roll-ups: a few
                // rows per organisation instead of one per cohort, category and state.
                (ReportSubject::Programme(_), GroupBy::ChildOrganizations) => (
                    "report_org_counters rc",
                    "rc.programme_id = ?",
                    "report_org_durations d",
                    "d.programme_id = ?",
                ),
                _ => subject.sources(),
            };
        let mut values: Vec<Value> = vec![subject.id().into()];
        if let Some(prefix) = &prefix {
            values.push(prefix.clone().into());
        }
        let (count_sql, duration_sql, extra): (String, String, Vec<Value>) = match group_by {
            // Sums per organisation (an indexed GROUP BY), rolled up to the children in Rust by
            // path: no join on LIKE between organisations.
            GroupBy::ChildOrganizations => (
                format!(
                    "SELECT o.id AS group_key, o.path AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM {counters} JOIN organizations o ON o.id = rc.organization_id \
                     WHERE {counters_filter}{subtree} GROUP BY o.id, o.path, rc.state"
                ),
                format!(
                    "SELECT o.path AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                     FROM {durations_from} JOIN organizations o ON o.id = d.organization_id \
                     WHERE {durations_filter}{subtree} GROUP BY o.path, d.days"
                ),
                Vec::new(),
            ),
            GroupBy::Cohort => (
                format!(
                    "SELECT rc.cohort_id AS group_key, ch.name AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM {counters} JOIN organizations o ON o.id = rc.organization_id \
                     JOIN cohorts ch ON ch.id = rc.cohort_id \
                     WHERE {counters_filter}{subtree} GROUP BY rc.cohort_id, ch.name, rc.state"
                ),
                format!(
                    "SELECT d.cohort_id AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                     FROM {durations_from} JOIN organizations o ON o.id = d.organization_id \
                     WHERE {durations_filter}{subtree} GROUP BY d.cohort_id, d.days"
                ),
                Vec::new(),
            ),
            // The counters' `sector` column holds the category code; rows are named by the
            // category's display name (its code if the category were ever missing).
            GroupBy::Category => (
                format!(
                    "SELECT rc.sector AS group_key, COALESCE(pc.display_name, rc.sector) AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM {counters} JOIN organizations o ON o.id = rc.organization_id \
                     LEFT JOIN participant_categories pc ON pc.code = rc.sector \
                     WHERE {counters_filter}{subtree} GROUP BY rc.sector, pc.display_name, rc.state"
                ),
                String::new(),
                Vec::new(),
            ),
            GroupBy::Phase => {
                return Err(Error::internal("phase reports are built by phase_report"));
            }
        };
        let mut count_values = values.clone();
        count_values.extend(extra.iter().cloned());
        let counts = GroupedCount::find_by_statement(statement(backend, &count_sql, count_values))
            .all(db)
            .await
            .map_err(db_error)?;
        let durations = if duration_sql.is_empty() {
            Vec::new()
        } else {
            let mut duration_values = values.clone();
            duration_values.extend(extra);
            GroupedDuration::find_by_statement(statement(backend, &duration_sql, duration_values))
                .all(db)
                .await
                .map_err(db_error)?
        };
        // The subtree's total, including people directly in the root organisation: every
        // counter of the subtree falls in exactly one group, so it is the sum of the groups
        // (no second pass over the counters).
        let mut total = CompletionRow {
            key: "total".to_owned(),
            name: root.map(|(_, _, name)| name.to_owned()).unwrap_or_else(|| {
                match group_by {
                    GroupBy::ChildOrganizations => "All organizations",
                    GroupBy::Cohort => "All cohorts",
                    GroupBy::Category => "All categories",
                    GroupBy::Phase => "All phases",
                }
                .to_owned()
            }),
            ..CompletionRow::default()
        };
        for count in &counts {
            total.add(&count.state, count.total);
        }
        let total_durations = if duration_sql.is_empty() {
            // Grouped by category, durations are not read per group: sum them once for the total.
            GroupedDuration::find_by_statement(statement(
                backend,
                &format!(
                    "SELECT '' AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                     FROM {durations_from} JOIN organizations o ON o.id = d.organization_id \
                     WHERE {durations_filter}{subtree} GROUP BY d.days"
                ),
                values,
            ))
            .all(db)
            .await
            .map_err(db_error)?
        } else {
            Vec::new()
        };
        for duration in durations.iter().chain(&total_durations) {
            *total.durations.entry(duration.days).or_default() += duration.total;
        }
        let mut rows: HashMap<String, CompletionRow> = HashMap::new();
        let counts = if group_by == GroupBy::ChildOrganizations {
            let children: HashMap<String, String> = self
                .child_organizations(root.map(|(id, _, _)| id))
                .await?
                .into_iter()
                .map(|child| (child.id, child.name))
                .collect();
            let child_of = |path: &str| child_in_path(path, root.map(|(id, _, _)| id));
            let mut rolled = Vec::with_capacity(counts.len());
            for count in counts {
                // Counts of the root itself stay out of the child rows; the "directly" row takes them.
                let Some(child) = child_of(&count.group_name) else {
                    continue;
                };
                let name = children.get(&child).cloned().unwrap_or_default();
                rolled.push(GroupedCount {
                    group_key: child,
                    group_name: name,
                    state: count.state,
                    total: count.total,
                });
            }
            rolled
        } else {
            counts
        };
        let durations: Vec<GroupedDuration> = if group_by == GroupBy::ChildOrganizations {
            durations
                .into_iter()
                .filter_map(|duration| {
                    let child = child_in_path(&duration.group_key, root.map(|(id, _, _)| id))?;
                    Some(GroupedDuration {
                        group_key: child,
                        days: duration.days,
                        total: duration.total,
                    })
                })
                .collect()
        } else {
            durations
        };
        for count in counts {
            let row = rows
                .entry(count.group_key.clone())
                .or_insert_with(|| CompletionRow {
                    key: count.group_key.clone(),
                    name: count.group_name.clone(),
                    ..CompletionRow::default()
                });
            row.add(&count.state, count.total);
        }
        for duration in durations {
            if let Some(row) = rows.get_mut(&duration.group_key) {
                *row.durations.entry(duration.days).or_default() += duration.total;
            }
        }
        if group_by == GroupBy::ChildOrganizations
            && let Some((root_id, _, root_name)) = root
        {
            // People attached to the root itself, not to any child.
            let mut children = CompletionRow::default();
            for row in rows.values() {
                children.merge(row);
            }
            let mut direct = CompletionRow {
                key: root_id.to_owned(),
                name: format!("{root_name} (directly)"),
                enrolled: total.enrolled - children.enrolled,
                in_progress: total.in_progress - children.in_progress,
                completed: total.completed - children.completed,
                withdrawn: total.withdrawn - children.withdrawn,
                waitlisted: total.waitlisted - children.waitlisted,
                durations: BTreeMap::new(),
                phase: None,
            };
            for (days, count) in &total.durations {
                let remaining = count - children.durations.get(days).copied().unwrap_or(0);
                if remaining > 0 {
                    direct.durations.insert(*days, remaining);
                }
            }
            if direct.holding_places() + direct.withdrawn + direct.waitlisted > 0 {
                rows.insert(root_id.to_owned(), direct);
            }
        }
        let mut rows: Vec<CompletionRow> = rows.into_values().collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.key.cmp(&b.key)));
        Ok(CompletionReport { rows, total })
    }

    /// Returns, per cohort of a programme, course completions per course version.
    pub async fn course_completions(
        &self,
        programme_id: &str,
    ) -> Result<Vec<(String, String, i64)>> {
        #[derive(Debug, FromQueryResult)]
        struct Row {
            cohort_id: String,
            course_version_id: String,
            total: i64,
        }
        let rows = Row::find_by_statement(statement(
            self.connection().get_database_backend(),
            "SELECT cohort_id, course_version_id, CAST(SUM(count) AS BIGINT) AS total FROM report_course_completions \
             WHERE programme_id = ? GROUP BY cohort_id, course_version_id",
            vec![programme_id.into()],
        ))
        .all(&self.reader())
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.cohort_id, row.course_version_id, row.total))
            .collect())
    }

    /// Rebuilds every enrolment and course counter from the enrolments and their progress; returns
    /// whether the incremental counters agreed.
    pub async fn rebuild_report_counters(&self) -> Result<bool> {
        self.write(|transaction| {
            Box::pin(async move {
                let before = snapshot(transaction).await?;
                let rollups_before = rollup_snapshot(transaction).await?;
                let courses_before = course_snapshot(transaction).await?;
                report_counters::Entity::delete_many().exec(transaction).await.map_err(db_error)?;
                report_durations::Entity::delete_many().exec(transaction).await.map_err(db_error)?;
                transaction
                    .execute_raw(Statement::from_string(
                        transaction.get_database_backend(),
                        "INSERT INTO report_counters (programme_id, cohort_id, organization_id, sector, state, count) \
                         SELECT programme_id, cohort_id, organization_id, sector, state, COUNT(*) FROM enrollments \
                         GROUP BY programme_id, cohort_id, organization_id, sector, state",
                    ))
                    .await
                    .map_err(db_error)?;
                // Durations need date arithmetic that differs by backend: computed here, page by page.
                let mut after_id = String::new();
                loop {
                    use sea_orm::{ColumnTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _};
                    use super::entity::programme::enrollments;
                    let page = enrollments::Entity::find()
                        .filter(enrollments::Column::State.eq(EnrollmentState::Completed.as_str()))
                        .filter(enrollments::Column::Id.gt(after_id.as_str()))
                        .order_by_asc(enrollments::Column::Id)
                        .limit(2000)
                        .all(transaction)
                        .await
                        .map_err(db_error)?;
                    let Some(last) = page.last() else { break };
                    after_id = last.id.clone();
                    let moves: Vec<(Option<Enrollment>, Enrollment)> = page
                        .into_iter()
                        .map(super::programme::enrollment_from)
                        .collect::<Result<Vec<_>>>()?
                        .into_iter()
                        .map(|enrollment| (None, enrollment))
                        .collect();
                    // Counters were rebuilt above; only the duration buckets are wanted from these moves.
                    let mut durations: BTreeMap<DurationKey, i64> = BTreeMap::new();
                    for (_, enrollment) in &moves {
                        if let Some(key) = days_to_complete(enrollment) {
                            *durations.entry(key).or_default() += 1;
                        }
                    }
                    let rows: Vec<report_durations::ActiveModel> = durations
                        .into_iter()
                        .map(|((programme_id, cohort_id, organization_id, days), count)| report_durations::ActiveModel {
                            programme_id: Set(programme_id),
                            cohort_id: Set(cohort_id),
                            organization_id: Set(organization_id),
                            days: Set(days),
                            count: Set(count),
                        })
                        .collect();
                    report_durations::Entity::insert_many(rows)
                        .on_conflict(
                            OnConflict::columns([
                                report_durations::Column::ProgrammeId,
                                report_durations::Column::CohortId,
                                report_durations::Column::OrganizationId,
                                report_durations::Column::Days,
                            ])
                            .value(report_durations::Column::Count, increment("report_durations", report_durations::Column::Count))
                            .to_owned(),
                        )
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                }
                let after = snapshot(transaction).await?;
                rebuild_rollups(transaction).await?;
                let rollups_after = rollup_snapshot(transaction).await?;
                rebuild_course_counters(transaction).await?;
                let courses_after = course_snapshot(transaction).await?;
                Ok(before == after
                    && rollups_before == rollups_after
                    && courses_before == courses_after)
            })
        })
        .await
    }
}

/// Returns every non-zero counter and duration bucket, for comparing incremental and rebuilt counters.
async fn snapshot(
    connection: &impl ConnectionTrait,
) -> Result<(BTreeMap<CounterKey, i64>, BTreeMap<DurationKey, i64>)> {
    let counters = report_counters::Entity::find()
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|row| row.count != 0)
        .map(|row| {
            (
                (
                    row.programme_id,
                    row.cohort_id,
                    row.organization_id,
                    row.sector,
                    row.state,
                ),
                row.count,
            )
        })
        .collect();
    let durations = report_durations::Entity::find()
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|row| row.count != 0)
        .map(|row| {
            (
                (
                    row.programme_id,
                    row.cohort_id,
                    row.organization_id,
                    row.days,
                ),
                row.count,
            )
        })
        .collect();
    Ok((counters, durations))
}

/// A candidacy or certificate of a track, with the holder's organisation path.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRecord {
    /// Materialised path of the person's organisation.
    pub organization_path: String,
    /// For candidacies: the state.
    pub candidacy_state: Option<String>,
    /// For certificates: status and expiry.
    pub certificate: Option<crate::domain::report::CertificateFacts>,
}

impl Store {
    /// Returns every candidacy and certificate of a track with the holder's organisation path.
    pub async fn track_records(&self, track_id: &str) -> Result<Vec<TrackRecord>> {
        use sea_orm::{ColumnTrait as _, QueryFilter as _};

        use super::entity::certification::{candidacies, certificates};
        // Reports may be served by a hot standby (bounded staleness, read-your-writes).
        let db = &self.reader();
        let candidacies = candidacies::Entity::find()
            .filter(candidacies::Column::TrackId.eq(track_id))
            .all(db)
            .await
            .map_err(db_error)?;
        let certificates = certificates::Entity::find()
            .filter(certificates::Column::TrackId.eq(track_id))
            .all(db)
            .await
            .map_err(db_error)?;
        let people: Vec<String> = candidacies
            .iter()
            .map(|candidacy| candidacy.person_id.clone())
            .chain(
                certificates
                    .iter()
                    .map(|certificate| certificate.person_id.clone()),
            )
            .collect();
        let paths = super::person::organization_paths_of_people(db, people).await?;
        let path_of = |person: &str| paths.get(person).cloned().unwrap_or_default();
        let mut records: Vec<TrackRecord> = candidacies
            .into_iter()
            .map(|candidacy| TrackRecord {
                organization_path: path_of(&candidacy.person_id),
                candidacy_state: Some(candidacy.state),
                certificate: None,
            })
            .collect();
        records.extend(certificates.into_iter().map(|certificate| TrackRecord {
            organization_path: path_of(&certificate.person_id),
            candidacy_state: None,
            certificate: Some(crate::domain::report::CertificateFacts {
                status: certificate.status,
                expires_time: certificate.expires_time,
            }),
        }));
        Ok(records)
    }
}

// ---------------------------------------------------------------------------------------------
// Course counters: where each enrolment stands on each pinned course version.
//
// A course standing (domain::report::course_standing) depends on the enrolment's state only
// through "withdrawn", "waitlisted" or neither, and otherwise on its progress in the course. So:
// - progress moves it: `save_ledgers` in progress.rs hands each touched enrolment's views before
//   and after to [`course_moves`] and applies them with [`record_course_moves`];
// - enrolling, withdrawing and promoting from the waitlist move it: [`record_moves`] derives the
//   enrolment's progress from its activity tallies (already written in the transaction) for the
//   few moves that change withdrawn/waitlisted/neither, organisation or sector. Progress moves
//   (ENROLLED -> IN_PROGRESS -> COMPLETED) never do, so the progress hot path reads nothing here.

/// Key of one course counter: version, programme, cohort, organisation, sector, standing.
type CourseCounterKey = (String, String, String, String, String, String);
/// Key of one course duration bucket: version, programme, cohort, organisation, days.
type CourseDurationKey = (String, String, String, String, i32);

/// Where one enrolment stood on one course version before and after a change of its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CourseMove {
    /// Version, programme, cohort, organisation and sector of the enrolment.
    key: (String, String, String, String, String),
    before: CourseStanding,
    after: CourseStanding,
}

/// Returns the course standings of `enrollment` that its progress changed from `before` to
/// `after` (the views of one ledger, derived from the same pinned rules).
pub(crate) fn course_moves(
    enrollment: &Enrollment,
    before: &ProgressView,
    after: &ProgressView,
) -> Vec<CourseMove> {
    before
        .courses
        .iter()
        .zip(&after.courses)
        .filter_map(|(course_before, course_after)| {
            let standing_before = course_standing(
                enrollment.state,
                enrollment.enrolled_time,
                Some((before, course_before)),
            );
            let standing_after = course_standing(
                enrollment.state,
                enrollment.enrolled_time,
                Some((after, course_after)),
            );
            (standing_before != standing_after).then(|| CourseMove {
                key: course_key_base(enrollment, &course_after.course_version_id),
                before: standing_before,
                after: standing_after,
            })
        })
        .collect()
}

fn course_key_base(
    enrollment: &Enrollment,
    version_id: &str,
) -> (String, String, String, String, String) {
    (
        version_id.to_owned(),
        enrollment.programme_id.clone(),
        enrollment.cohort_id.clone(),
        enrollment.organization_id.clone(),
        enrollment.category.as_str().to_owned(),
    )
}

/// Course counter and duration deltas, summed before they are written.
#[derive(Debug, Default)]
struct CourseDeltas {
    counters: BTreeMap<CourseCounterKey, i64>,
    durations: BTreeMap<CourseDurationKey, i64>,
}

impl CourseDeltas {
    fn add(
        &mut self,
        (version, programme, cohort, organization, sector): (
            String,
            String,
            String,
            String,
            String,
        ),
        standing: CourseStanding,
        delta: i64,
    ) {
        if let Some(days) = standing.days_to_complete {
            *self
                .durations
                .entry((
                    version.clone(),
                    programme.clone(),
                    cohort.clone(),
                    organization.clone(),
                    days,
                ))
                .or_default() += delta;
        }
        *self
            .counters
            .entry((
                version,
                programme,
                cohort,
                organization,
                sector,
                standing.state.as_str().to_owned(),
            ))
            .or_default() += delta;
    }

    /// Writes the non-zero deltas, in key order (so concurrent writers lock rows in one order).
    async fn write(self, transaction: &DatabaseTransaction) -> Result<()> {
        let counter_rows: Vec<report_course_counters::ActiveModel> = self
            .counters
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .map(
                |(
                    (course_version_id, programme_id, cohort_id, organization_id, sector, state),
                    delta,
                )| {
                    report_course_counters::ActiveModel {
                        course_version_id: Set(course_version_id),
                        programme_id: Set(programme_id),
                        cohort_id: Set(cohort_id),
                        organization_id: Set(organization_id),
                        sector: Set(sector),
                        state: Set(state),
                        count: Set(delta),
                    }
                },
            )
            .collect();
        for chunk in counter_rows.chunks(500) {
            report_course_counters::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        report_course_counters::Column::CourseVersionId,
                        report_course_counters::Column::ProgrammeId,
                        report_course_counters::Column::CohortId,
                        report_course_counters::Column::OrganizationId,
                        report_course_counters::Column::Sector,
                        report_course_counters::Column::State,
                    ])
                    .value(
                        report_course_counters::Column::Count,
                        increment(
                            "report_course_counters",
                            report_course_counters::Column::Count,
                        ),
                    )
                    .to_owned(),
                )
                .exec(transaction)
                .await
                .map_err(db_error)?;
        }
        let duration_rows: Vec<report_course_durations::ActiveModel> = self
            .durations
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .map(
                |((course_version_id, programme_id, cohort_id, organization_id, days), delta)| {
                    report_course_durations::ActiveModel {
                        course_version_id: Set(course_version_id),
                        programme_id: Set(programme_id),
                        cohort_id: Set(cohort_id),
                        organization_id: Set(organization_id),
                        days: Set(days),
                        count: Set(delta),
                    }
                },
            )
            .collect();
        for chunk in duration_rows.chunks(500) {
            report_course_durations::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        report_course_durations::Column::CourseVersionId,
                        report_course_durations::Column::ProgrammeId,
                        report_course_durations::Column::CohortId,
                        report_course_durations::Column::OrganizationId,
                        report_course_durations::Column::Days,
                    ])
                    .value(
                        report_course_durations::Column::Count,
                        increment(
                            "report_course_durations",
                            report_course_durations::Column::Count,
                        ),
                    )
                    .to_owned(),
                )
                .exec(transaction)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}

/// Applies the course standings progress moved (from [`course_moves`]), in the caller's transaction.
pub(crate) async fn record_course_moves(
    transaction: &DatabaseTransaction,
    moves: &[CourseMove],
) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut deltas = CourseDeltas::default();
    for course_move in moves {
        deltas.add(course_move.key.clone(), course_move.before, -1);
        deltas.add(course_move.key.clone(), course_move.after, 1);
    }
    deltas.write(transaction).await
}

/// Withdrawn, waitlisted or neither: the only part of an enrolment's state a course standing reads.
fn standing_class(state: EnrollmentState) -> u8 {
    match state {
        EnrollmentState::Withdrawn => 1,
        EnrollmentState::Waitlisted => 2,
        _ => 0,
    }
}

/// Moves course counters for enrolment moves that change what a course standing reads.
async fn record_course_standings_of_moves(
    transaction: &DatabaseTransaction,
    moves: &[(Option<Enrollment>, Enrollment)],
) -> Result<()> {
    let relevant: Vec<&(Option<Enrollment>, Enrollment)> = moves
        .iter()
        .filter(|(before, after)| {
            before.as_ref().is_none_or(|before| {
                standing_class(before.state) != standing_class(after.state)
                    || before.organization_id != after.organization_id
                    || before.category != after.category
                    || before.cohort_id != after.cohort_id
                    || before.enrolled_time != after.enrolled_time
            })
        })
        .collect();
    if relevant.is_empty() {
        return Ok(());
    }
    let existing: Vec<&Enrollment> = relevant
        .iter()
        .filter(|(before, _)| before.is_some())
        .map(|(_, after)| after)
        .collect();
    let views = progress_views(transaction, &existing).await?;
    let mut deltas = CourseDeltas::default();
    for (before, after) in relevant {
        let view = views.get(&after.id);
        for version_id in &after.course_version_ids {
            let progress = view.and_then(|view| {
                view.courses
                    .iter()
                    .find(|course| &course.course_version_id == version_id)
                    .map(|course| (view, course))
            });
            if let Some(before) = before {
                let standing = course_standing(before.state, before.enrolled_time, progress);
                deltas.add(course_key_base(before, version_id), standing, -1);
            }
            let standing = course_standing(after.state, after.enrolled_time, progress);
            deltas.add(course_key_base(after, version_id), standing, 1);
        }
    }
    deltas.write(transaction).await
}

/// Derives the progress of `enrollments` from their activity tallies and pinned rules; enrolments
/// without any tally are left out (they have no progress). Like the progress store, versions
/// without a published rule are left out of the derived courses.
async fn progress_views(
    connection: &impl ConnectionTrait,
    enrollments: &[&Enrollment],
) -> Result<HashMap<String, ProgressView>> {
    use sea_orm::{ColumnTrait as _, QueryFilter as _};

    use super::entity::progress::activity_progress;
    use crate::domain::course::CompletionRule;
    use crate::domain::progress::{ActivityTally, derive};

    let mut tallies: HashMap<String, HashMap<String, ActivityTally>> = HashMap::new();
    let ids: Vec<String> = enrollments
        .iter()
        .map(|enrollment| enrollment.id.clone())
        .collect();
    for chunk in ids.chunks(500) {
        for row in activity_progress::Entity::find()
            .filter(activity_progress::Column::EnrollmentId.is_in(chunk.to_vec()))
            .all(connection)
            .await
            .map_err(db_error)?
        {
            tallies.entry(row.enrollment_id).or_default().insert(
                row.activity_id,
                ActivityTally {
                    events: row.events,
                    best_score: row.best_score,
                    attempts: row.attempts,
                    time_spent_seconds: row.time_spent_seconds,
                    completed_time: row.completed_time,
                    last_event_time: row.last_event_time,
                },
            );
        }
    }
    if tallies.is_empty() {
        return Ok(HashMap::new());
    }
    let mut version_ids: Vec<String> = enrollments
        .iter()
        .filter(|enrollment| tallies.contains_key(&enrollment.id))
        .flat_map(|enrollment| enrollment.course_version_ids.iter().cloned())
        .collect();
    version_ids.sort();
    version_ids.dedup();
    let mut rules: HashMap<String, CompletionRule> = HashMap::new();
    for chunk in version_ids.chunks(500) {
        use super::entity::catalogue::course_versions;
        for version in course_versions::Entity::find()
            .filter(course_versions::Column::Id.is_in(chunk.to_vec()))
            .filter(course_versions::Column::State.eq("PUBLISHED"))
            .all(connection)
            .await
            .map_err(db_error)?
        {
            let Some(text) = version.completion_rule else {
                continue;
            };
            let rule: CompletionRule = serde_json::from_str(&text).map_err(|error| {
                Error::internal(format!("stored completion rule is not JSON: {error}"))
            })?;
            rules.insert(version.id, rule);
        }
    }
    let mut views = HashMap::new();
    for enrollment in enrollments {
        let Some(enrollment_tallies) = tallies.get(&enrollment.id) else {
            continue;
        };
        let pinned: Vec<(String, &CompletionRule)> = enrollment
            .course_version_ids
            .iter()
            .filter_map(|id| rules.get(id).map(|rule| (id.clone(), rule)))
            .collect();
        views.insert(enrollment.id.clone(), derive(&pinned, enrollment_tallies));
    }
    Ok(views)
}

/// Recomputes the course counters from every enrolment and its activity tallies.
async fn rebuild_course_counters(transaction: &DatabaseTransaction) -> Result<()> {
    use sea_orm::{ColumnTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _};

    use super::entity::programme::enrollments;

    report_course_counters::Entity::delete_many()
        .exec(transaction)
        .await
        .map_err(db_error)?;
    report_course_durations::Entity::delete_many()
        .exec(transaction)
        .await
        .map_err(db_error)?;
    let mut deltas = CourseDeltas::default();
    let mut after_id = String::new();
    loop {
        let page = enrollments::Entity::find()
            .filter(enrollments::Column::Id.gt(after_id.as_str()))
            .order_by_asc(enrollments::Column::Id)
            .limit(2000)
            .all(transaction)
            .await
            .map_err(db_error)?;
        let Some(last) = page.last() else { break };
        after_id = last.id.clone();
        let page: Vec<Enrollment> = page
            .into_iter()
            .map(super::programme::enrollment_from)
            .collect::<Result<_>>()?;
        let views = progress_views(transaction, &page.iter().collect::<Vec<_>>()).await?;
        for enrollment in &page {
            let view = views.get(&enrollment.id);
            for version_id in &enrollment.course_version_ids {
                let progress = view.and_then(|view| {
                    view.courses
                        .iter()
                        .find(|course| &course.course_version_id == version_id)
                        .map(|course| (view, course))
                });
                let standing =
                    course_standing(enrollment.state, enrollment.enrolled_time, progress);
                deltas.add(course_key_base(enrollment, version_id), standing, 1);
            }
        }
    }
    deltas.write(transaction).await
}

/// Returns every non-zero course counter and duration bucket.
async fn course_snapshot(
    connection: &impl ConnectionTrait,
) -> Result<(
    BTreeMap<CourseCounterKey, i64>,
    BTreeMap<CourseDurationKey, i64>,
)> {
    let counters = report_course_counters::Entity::find()
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|row| row.count != 0)
        .map(|row| {
            (
                (
                    row.course_version_id,
                    row.programme_id,
                    row.cohort_id,
                    row.organization_id,
                    row.sector,
                    row.state,
                ),
                row.count,
            )
        })
        .collect();
    let durations = report_course_durations::Entity::find()
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|row| row.count != 0)
        .map(|row| {
            (
                (
                    row.course_version_id,
                    row.programme_id,
                    row.cohort_id,
                    row.organization_id,
                    row.days,
                ),
                row.count,
            )
        })
        .collect();
    Ok((counters, durations))
}

// ---------------------------------------------------------------------------------------------
// Dashboard: delivery figures and survey headlines.

/// Sessions and trainers of one cohort (or of the whole programme).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFigures {
    /// Sessions DELIVERED.
    pub sessions_delivered: i64,
    /// Distinct lead and co-trainers of DELIVERED or SCHEDULED sessions.
    pub trainers_active: i64,
    /// Of those, holding a certificate valid at the time asked.
    pub trainers_certified: i64,
}

/// Delivery figures of a programme: per cohort, and over every cohort (trainers counted once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammeDelivery {
    /// Per cohort id; cohorts without sessions are absent.
    pub cohorts: HashMap<String, DeliveryFigures>,
    /// The whole programme.
    pub total: DeliveryFigures,
}

/// Headline figures of one SURVEY activity over a programme's responses.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyHeadline {
    /// The activity.
    pub activity_id: String,
    /// Its title.
    pub title: String,
    /// Its course version.
    pub course_version_id: String,
    /// Responses.
    pub response_count: i64,
    /// Per question, in order.
    pub questions: Vec<crate::domain::report::QuestionHeadline>,
}

impl Store {
    /// Returns sessions delivered and trainers active and certified (valid at `now`) per cohort of
    /// `programme_id`, in three grouped queries.
    pub async fn programme_delivery(
        &self,
        programme_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<ProgrammeDelivery> {
        use std::collections::HashSet;

        use sea_orm::{ColumnTrait as _, QueryFilter as _, QuerySelect as _};

        use super::entity::certification::certificates;
        use crate::domain::certification::CertificateStatus;
        use crate::domain::delivery::SessionState;

        #[derive(Debug, FromQueryResult)]
        struct Delivered {
            cohort_id: String,
            total: i64,
        }
        #[derive(Debug, FromQueryResult)]
        struct Trainer {
            cohort_id: String,
            person_id: String,
        }
        // Reports may be served by a hot standby (bounded staleness, read-your-writes).
        let db = &self.reader();
        let backend = db.get_database_backend();
        let delivered = Delivered::find_by_statement(statement(
            backend,
            "SELECT s.cohort_id AS cohort_id, CAST(COUNT(*) AS BIGINT) AS total \
             FROM training_sessions s JOIN cohorts c ON c.id = s.cohort_id \
             WHERE c.programme_id = ? AND s.state = ? GROUP BY s.cohort_id",
            vec![programme_id.into(), SessionState::Delivered.as_str().into()],
        ))
        .all(db)
        .await
        .map_err(db_error)?;
        let trainers = Trainer::find_by_statement(statement(
            backend,
            "SELECT DISTINCT s.cohort_id AS cohort_id, st.person_id AS person_id \
             FROM training_sessions s JOIN cohorts c ON c.id = s.cohort_id \
             JOIN session_trainers st ON st.session_id = s.id \
             WHERE c.programme_id = ? AND s.state IN (?, ?)",
            vec![
                programme_id.into(),
                SessionState::Delivered.as_str().into(),
                SessionState::Scheduled.as_str().into(),
            ],
        ))
        .all(db)
        .await
        .map_err(db_error)?;
        let mut people: Vec<String> = trainers
            .iter()
            .map(|trainer| trainer.person_id.clone())
            .collect();
        people.sort();
        people.dedup();
        let mut certified: HashSet<String> = HashSet::new();
        for chunk in people.chunks(500) {
            let holders: Vec<String> = certificates::Entity::find()
                .select_only()
                .column(certificates::Column::PersonId)
                .distinct()
                .filter(certificates::Column::PersonId.is_in(chunk.to_vec()))
                .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
                .filter(certificates::Column::ExpiresTime.gt(now))
                .into_tuple()
                .all(db)
                .await
                .map_err(db_error)?;
            certified.extend(holders);
        }
        let mut delivery = ProgrammeDelivery::default();
        for row in delivered {
            delivery.total.sessions_delivered += row.total;
            delivery
                .cohorts
                .entry(row.cohort_id)
                .or_default()
                .sessions_delivered += row.total;
        }
        for trainer in &trainers {
            let figures = delivery
                .cohorts
                .entry(trainer.cohort_id.clone())
                .or_default();
            figures.trainers_active += 1;
            if certified.contains(&trainer.person_id) {
                figures.trainers_certified += 1;
            }
        }
        delivery.total.trainers_active = people.len() as i64;
        delivery.total.trainers_certified = people
            .iter()
            .filter(|person| certified.contains(*person))
            .count() as i64;
        Ok(delivery)
    }

    /// Returns the headline figures of every SURVEY activity of `course_version_ids` over the
    /// responses of `programme_id`'s enrolments, in two queries.
    pub async fn programme_survey_headlines(
        &self,
        programme_id: &str,
        course_version_ids: &[String],
    ) -> Result<Vec<SurveyHeadline>> {
        use sea_orm::{ColumnTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _};

        use super::entity::catalogue::course_activities;
        use super::entity::survey::survey_responses;
        use crate::domain::course::ActivityKind;
        use crate::domain::survey::{Answer, SurveyQuestion};

        if course_version_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Reports may be served by a hot standby (bounded staleness, read-your-writes).
        let db = &self.reader();
        let activities = course_activities::Entity::find()
            .filter(course_activities::Column::CourseVersionId.is_in(course_version_ids.to_vec()))
            .filter(course_activities::Column::Kind.eq(ActivityKind::Survey.as_str()))
            .all(db)
            .await
            .map_err(db_error)?;
        if activities.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String)> = survey_responses::Entity::find()
            .select_only()
            .column(survey_responses::Column::ActivityId)
            .column(survey_responses::Column::Answers)
            .filter(survey_responses::Column::ProgrammeId.eq(programme_id))
            .filter(
                survey_responses::Column::ActivityId
                    .is_in(activities.iter().map(|activity| activity.id.clone())),
            )
            .order_by_asc(survey_responses::Column::Id)
            .into_tuple()
            .all(db)
            .await
            .map_err(db_error)?;
        let mut responses: HashMap<String, Vec<Vec<Answer>>> = HashMap::new();
        for (activity_id, text) in rows {
            let answers: Vec<Answer> = serde_json::from_str(&text).map_err(|error| {
                Error::internal(format!("stored survey answers are invalid: {error}"))
            })?;
            responses.entry(activity_id).or_default().push(answers);
        }
        // In programme order: by the version's place among the phases, then module and activity.
        let mut activities = activities;
        activities.sort_by_key(|activity| {
            (
                course_version_ids
                    .iter()
                    .position(|id| *id == activity.course_version_id),
                activity.module_id.clone(),
                activity.position,
            )
        });
        activities
            .into_iter()
            .map(|activity| {
                let questions: Vec<SurveyQuestion> = match &activity.survey_questions {
                    Some(text) => serde_json::from_str(text).map_err(|error| {
                        Error::internal(format!("stored survey questions are invalid: {error}"))
                    })?,
                    None => Vec::new(),
                };
                let (response_count, questions) = crate::domain::report::survey_headlines(
                    &questions,
                    responses
                        .get(&activity.id)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
                Ok(SurveyHeadline {
                    activity_id: activity.id,
                    title: activity.title,
                    course_version_id: activity.course_version_id,
                    response_count,
                    questions,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Phase reports: computed at read time from indexed rows (the programme's enrolments, their
// activity tallies by primary key, and the cohorts' phase windows), not from counters: a phase's
// standing needs every course of the phase for the same enrolment, which no counter holds.

/// The activities of one phase, for the enrolments that pinned one set of course versions.
#[derive(Debug, Default)]
struct PhaseActivities {
    /// Activities whose completion the phase's courses need (required, in a required module).
    counted: Vec<String>,
    /// Every activity of the phase's courses.
    all: Vec<String>,
}

#[derive(Debug, FromQueryResult)]
struct PhaseStandingCount {
    pins: String,
    state: String,
    done: i64,
    started: i64,
    total: i64,
}

#[derive(Debug, FromQueryResult)]
struct PhaseTimingCount {
    completed: i64,
    early: i64,
    late: i64,
}

#[derive(Debug, FromQueryResult)]
struct PhaseWindowSpan {
    phase_id: String,
    first_day: String,
    last_day: String,
}

/// Returns `count` placeholders `?, ?, ...` (at least one: an empty list matches nothing).
fn placeholders(count: usize) -> String {
    if count == 0 {
        return "NULL".to_owned();
    }
    vec!["?"; count].join(", ")
}

impl Store {
    /// Returns the completion report of a programme grouped by phase over the subtree of `root`:
    /// one row per phase, in phase order, counting each enrolment once by where it stands on the
    /// phase ([`crate::domain::report::phase_standing`]): a pinned course version belongs to the
    /// phase that lists a version of its course, and the phase is completed when every activity
    /// its pinned courses need is. The row carries the phase's window dates over the programme's
    /// cohorts and its activity completions, early or late against the window of each learner's
    /// cohort. The total counts each enrolment once by its state, as other groupings do.
    pub async fn phase_report(
        &self,
        programme_id: &str,
        root: Option<(&str, &str, &str)>,
    ) -> Result<CompletionReport> {
        use sea_orm::{ColumnTrait as _, QueryFilter as _};

        use super::entity::catalogue::course_versions;
        use crate::domain::course::CompletionRule;
        use crate::domain::report::{PhaseFigures, phase_standing};

        let programme = self.get_programme(programme_id).await?;
        // Boxed: `completion_report` calls this function for PHASE, so the futures nest.
        let mut report = Box::pin(self.completion_report(
            ReportSubject::Programme(programme_id),
            root,
            GroupBy::Cohort,
        ))
        .await?;
        let db = &self.reader();
        let backend = db.get_database_backend();
        let prefix = root.map(|(_, path, _)| format!("{}%", super::escape_like(path)));
        let subtree = if prefix.is_some() {
            " AND o.path LIKE ? ESCAPE '!'"
        } else {
            ""
        };
        let scope_values = || {
            let mut values: Vec<Value> = vec![programme_id.into()];
            if let Some(prefix) = &prefix {
                values.push(prefix.clone().into());
            }
            values
        };

        #[derive(Debug, FromQueryResult)]
        struct Pins {
            pins: String,
        }
        let pin_lists: Vec<String> = Pins::find_by_statement(statement(
            backend,
            "SELECT DISTINCT course_version_ids AS pins FROM enrollments WHERE programme_id = ?",
            vec![programme_id.into()],
        ))
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| row.pins)
        .collect();
        let mut pinned: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pins in &pin_lists {
            let ids: Vec<String> = serde_json::from_str(pins).map_err(|error| {
                Error::internal(format!("stored pinned versions are not JSON: {error}"))
            })?;
            pinned.insert(pins.clone(), ids);
        }
        let mut version_ids: Vec<String> = pinned
            .values()
            .flatten()
            .chain(
                programme
                    .phases
                    .iter()
                    .flat_map(|phase| &phase.course_version_ids),
            )
            .cloned()
            .collect();
        version_ids.sort();
        version_ids.dedup();
        let mut versions: HashMap<String, course_versions::Model> = HashMap::new();
        for chunk in version_ids.chunks(500) {
            for version in course_versions::Entity::find()
                .filter(course_versions::Column::Id.is_in(chunk.to_vec()))
                .all(db)
                .await
                .map_err(db_error)?
            {
                versions.insert(version.id.clone(), version);
            }
        }
        // The phase of a course: the first phase listing a version of it.
        let mut phase_of_course: HashMap<String, String> = HashMap::new();
        for phase in &programme.phases {
            for version_id in &phase.course_version_ids {
                if let Some(version) = versions.get(version_id) {
                    phase_of_course
                        .entry(version.course_id.clone())
                        .or_insert_with(|| phase.id.clone());
                }
            }
        }
        // Per phase and pinned list: the activities counted and all of them.
        let mut activities: HashMap<(String, String), PhaseActivities> = HashMap::new();
        for (pins, ids) in &pinned {
            for version_id in ids {
                let Some(version) = versions.get(version_id) else {
                    continue;
                };
                let Some(phase_id) = phase_of_course.get(&version.course_id) else {
                    continue;
                };
                let Some(text) = &version.completion_rule else {
                    continue;
                };
                let rule: CompletionRule = serde_json::from_str(text).map_err(|error| {
                    Error::internal(format!("stored completion rule is not JSON: {error}"))
                })?;
                let entry = activities
                    .entry((phase_id.clone(), pins.clone()))
                    .or_default();
                for module in &rule.modules {
                    for activity in &module.activities {
                        entry.all.push(activity.activity_id.clone());
                        if module.required && activity.required {
                            entry.counted.push(activity.activity_id.clone());
                        }
                    }
                }
            }
        }
        let spans: HashMap<String, PhaseWindowSpan> = PhaseWindowSpan::find_by_statement(statement(
            backend,
            "SELECT w.phase_id AS phase_id, MIN(w.start_date) AS first_day, MAX(w.end_date) AS last_day \
             FROM cohort_phase_windows w JOIN cohorts c ON c.id = w.cohort_id \
             WHERE c.programme_id = ? GROUP BY w.phase_id",
            vec![programme_id.into()],
        ))
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|span| (span.phase_id.clone(), span))
        .collect();
        let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();

        let mut rows = Vec::with_capacity(programme.phases.len());
        let mut total_figures = PhaseFigures::default();
        for phase in &programme.phases {
            let mut all: Vec<String> = activities
                .iter()
                .filter(|((phase_id, _), _)| *phase_id == phase.id)
                .flat_map(|(_, list)| list.all.iter().cloned())
                .collect();
            all.sort();
            all.dedup();
            let mut counted: Vec<String> = activities
                .iter()
                .filter(|((phase_id, _), _)| *phase_id == phase.id)
                .flat_map(|(_, list)| list.counted.iter().cloned())
                .collect();
            counted.sort();
            counted.dedup();
            let mut row = CompletionRow {
                key: phase.id.clone(),
                name: format!("{}. {}", phase.position, phase.title),
                ..CompletionRow::default()
            };
            // An enrolment pins one version per course, so completions over the union of the
            // phase's activities are completions of its own.
            let mut values: Vec<Value> = counted.iter().map(|id| id.clone().into()).collect();
            values.extend(all.iter().map(|id| Value::from(id.clone())));
            values.extend(scope_values());
            let standings = PhaseStandingCount::find_by_statement(statement(
                backend,
                &format!(
                    "SELECT s.pins AS pins, s.state AS state, s.done AS done, s.started AS started, \
                     CAST(COUNT(*) AS BIGINT) AS total FROM ( \
                       SELECT e.course_version_ids AS pins, e.state AS state, \
                         CAST((SELECT COUNT(*) FROM activity_progress ap WHERE ap.enrollment_id = e.id \
                           AND ap.completed_time IS NOT NULL AND ap.activity_id IN ({})) AS BIGINT) AS done, \
                         CAST(CASE WHEN EXISTS (SELECT 1 FROM activity_progress ap WHERE ap.enrollment_id = e.id \
                           AND ap.events > 0 AND ap.activity_id IN ({})) THEN 1 ELSE 0 END AS BIGINT) AS started \
                       FROM enrollments e JOIN organizations o ON o.id = e.organization_id \
                       WHERE e.programme_id = ?{subtree} \
                     ) s GROUP BY s.pins, s.state, s.done, s.started",
                    placeholders(counted.len()),
                    placeholders(all.len()),
                ),
                values,
            ))
            .all(db)
            .await
            .map_err(db_error)?;
            for standing in standings {
                let needed = activities
                    .get(&(phase.id.clone(), standing.pins.clone()))
                    .map(|list| list.counted.len() as i64)
                    .unwrap_or(0);
                let started = standing.started > 0;
                let completed = if needed == 0 {
                    started
                } else {
                    standing.done >= needed
                };
                let Some(state) = EnrollmentState::parse(&standing.state) else {
                    continue;
                };
                row.add(
                    phase_standing(state, started, completed).as_str(),
                    standing.total,
                );
            }
            let mut values: Vec<Value> = vec![phase.id.clone().into()];
            values.extend(scope_values());
            values.extend(all.iter().map(|id| Value::from(id.clone())));
            let timing = PhaseTimingCount::find_by_statement(statement(
                backend,
                &format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS completed, \
                     CAST(COALESCE(SUM(CASE WHEN ap.completed_time < w.opens_time THEN 1 ELSE 0 END), 0) AS BIGINT) AS early, \
                     CAST(COALESCE(SUM(CASE WHEN ap.completed_time >= w.closes_time THEN 1 ELSE 0 END), 0) AS BIGINT) AS late \
                     FROM activity_progress ap JOIN enrollments e ON e.id = ap.enrollment_id \
                     JOIN organizations o ON o.id = e.organization_id \
                     LEFT JOIN cohort_phase_windows w ON w.cohort_id = e.cohort_id AND w.phase_id = ? \
                     WHERE e.programme_id = ?{subtree} AND ap.completed_time IS NOT NULL \
                     AND ap.activity_id IN ({})",
                    placeholders(all.len()),
                ),
                values,
            ))
            .one(db)
            .await
            .map_err(db_error)?
            .unwrap_or(PhaseTimingCount {
                completed: 0,
                early: 0,
                late: 0,
            });
            let span = spans.get(&phase.id);
            let figures = PhaseFigures {
                window_start_date: span.and_then(|span| day(&span.first_day)),
                window_end_date: span.and_then(|span| day(&span.last_day)),
                activities_completed: timing.completed,
                activities_completed_early: timing.early,
                activities_completed_late: timing.late,
            };
            total_figures.merge(&figures);
            row.phase = Some(figures);
            rows.push(row);
        }
        report.total.phase = Some(total_figures);
        report.rows = rows;
        Ok(report)
    }
}
