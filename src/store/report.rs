//! Report counters: kept current in the transactions that move enrolments, rolled up over
//! organisation subtrees by materialised path, and rebuilt from the enrolments on demand.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _, FromQueryResult, Statement,
    Value,
    sea_query::{Alias, Expr, ExprTrait as _, OnConflict},
};

use super::entity::report::{report_counters, report_course_completions, report_durations};
use super::{Store, db_error};
use crate::domain::programme::{Enrollment, EnrollmentState};
use crate::domain::report::CompletionRow;
use crate::error::Result;

/// Key of one counter.
type CounterKey = (String, String, String, String, String);
/// Key of one duration bucket.
type DurationKey = (String, String, String, i32);

fn counter_key(enrollment: &Enrollment) -> CounterKey {
    (
        enrollment.programme_id.clone(),
        enrollment.cohort_id.clone(),
        enrollment.organization_id.clone(),
        enrollment.sector.as_str().to_owned(),
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
    Ok(())
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
    /// Sectors.
    Sector,
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

impl Store {
    /// Returns the completion report of `programme_id` over the subtree at `root_path` (the whole tree when `None`).
    pub async fn completion_report(
        &self,
        programme_id: &str,
        root: Option<(&str, &str, &str)>,
        group_by: GroupBy,
    ) -> Result<CompletionReport> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let prefix = root.map(|(_, path, _)| format!("{path}%"));
        let subtree = if prefix.is_some() {
            " AND o.path LIKE ?"
        } else {
            ""
        };
        let mut values: Vec<Value> = vec![programme_id.into()];
        if let Some(prefix) = &prefix {
            values.push(prefix.clone().into());
        }
        let (count_sql, duration_sql, extra): (String, String, Vec<Value>) = match group_by {
            // Sums per organisation (an indexed GROUP BY), rolled up to the children in Rust by
            // path: no join on LIKE between organisations.
            GroupBy::ChildOrganizations => (
                format!(
                    "SELECT o.id AS group_key, o.path AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM report_counters rc JOIN organizations o ON o.id = rc.organization_id \
                     WHERE rc.programme_id = ?{subtree} GROUP BY o.id, o.path, rc.state"
                ),
                format!(
                    "SELECT o.path AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                     FROM report_durations d JOIN organizations o ON o.id = d.organization_id \
                     WHERE d.programme_id = ?{subtree} GROUP BY o.path, d.days"
                ),
                Vec::new(),
            ),
            GroupBy::Cohort => (
                format!(
                    "SELECT rc.cohort_id AS group_key, ch.name AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM report_counters rc JOIN organizations o ON o.id = rc.organization_id \
                     JOIN cohorts ch ON ch.id = rc.cohort_id \
                     WHERE rc.programme_id = ?{subtree} GROUP BY rc.cohort_id, ch.name, rc.state"
                ),
                format!(
                    "SELECT d.cohort_id AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                     FROM report_durations d JOIN organizations o ON o.id = d.organization_id \
                     WHERE d.programme_id = ?{subtree} GROUP BY d.cohort_id, d.days"
                ),
                Vec::new(),
            ),
            GroupBy::Sector => (
                format!(
                    "SELECT rc.sector AS group_key, rc.sector AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                     FROM report_counters rc JOIN organizations o ON o.id = rc.organization_id \
                     WHERE rc.programme_id = ?{subtree} GROUP BY rc.sector, rc.state"
                ),
                String::new(),
                Vec::new(),
            ),
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
        // The subtree's total, including people directly in the root organisation.
        let total_counts = GroupedCount::find_by_statement(statement(
            backend,
            &format!(
                "SELECT '' AS group_key, '' AS group_name, rc.state AS state, CAST(SUM(rc.count) AS BIGINT) AS total \
                 FROM report_counters rc JOIN organizations o ON o.id = rc.organization_id \
                 WHERE rc.programme_id = ?{subtree} GROUP BY rc.state"
            ),
            values.clone(),
        ))
        .all(db)
        .await
        .map_err(db_error)?;
        let total_durations = GroupedDuration::find_by_statement(statement(
            backend,
            &format!(
                "SELECT '' AS group_key, d.days AS days, CAST(SUM(d.count) AS BIGINT) AS total \
                 FROM report_durations d JOIN organizations o ON o.id = d.organization_id \
                 WHERE d.programme_id = ?{subtree} GROUP BY d.days"
            ),
            values,
        ))
        .all(db)
        .await
        .map_err(db_error)?;
        let mut total = CompletionRow {
            key: "total".to_owned(),
            name: root
                .map(|(_, _, name)| name.to_owned())
                .unwrap_or_else(|| "All organizations".to_owned()),
            ..CompletionRow::default()
        };
        for count in total_counts {
            total.add(&count.state, count.total);
        }
        for duration in total_durations {
            *total.durations.entry(duration.days).or_default() += duration.total;
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
        .all(self.connection())
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.cohort_id, row.course_version_id, row.total))
            .collect())
    }

    /// Rebuilds every enrolment counter from the enrolments; returns whether the incremental counters agreed.
    pub async fn rebuild_report_counters(&self) -> Result<bool> {
        self.write(|transaction| {
            Box::pin(async move {
                let before = snapshot(transaction).await?;
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
                Ok(before == after)
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
        let db = self.connection();
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
