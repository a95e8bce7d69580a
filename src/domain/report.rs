//! Reports: turning counters into completion rows (rates, medians) and CSV.

use std::collections::BTreeMap;

use crate::domain::programme::EnrollmentState;

/// One row of a completion report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionRow {
    /// Group key: organisation id, cohort id or sector.
    pub key: String,
    /// Display name of the group.
    pub name: String,
    /// Enrolled, not started.
    pub enrolled: i64,
    /// Started, not completed.
    pub in_progress: i64,
    /// Completed.
    pub completed: i64,
    /// Withdrawn.
    pub withdrawn: i64,
    /// On a waitlist.
    pub waitlisted: i64,
    /// Days from enrolment to completion: days -> count.
    pub durations: BTreeMap<i32, i64>,
}

impl CompletionRow {
    /// Adds `count` enrolments in `state`.
    pub fn add(&mut self, state: &str, count: i64) {
        match EnrollmentState::parse(state) {
            Some(EnrollmentState::Enrolled) => self.enrolled += count,
            Some(EnrollmentState::InProgress) => self.in_progress += count,
            Some(EnrollmentState::Completed) => self.completed += count,
            Some(EnrollmentState::Withdrawn) => self.withdrawn += count,
            Some(EnrollmentState::Waitlisted) => self.waitlisted += count,
            None => {}
        }
    }

    /// Returns the people holding a place (enrolled, in progress or completed).
    pub fn holding_places(&self) -> i64 {
        self.enrolled + self.in_progress + self.completed
    }

    /// Returns completed / holding places, 0-100 (0 when nobody holds a place).
    pub fn completion_rate(&self) -> f64 {
        let places = self.holding_places();
        if places == 0 {
            0.0
        } else {
            (self.completed as f64 * 10_000.0 / places as f64).round() / 100.0
        }
    }

    /// Returns the median of the days to complete (the lower middle for an even count), if any completed.
    pub fn median_days(&self) -> Option<f64> {
        median(&self.durations)
    }

    /// Adds every figure of `other` into this row.
    pub fn merge(&mut self, other: &Self) {
        self.enrolled += other.enrolled;
        self.in_progress += other.in_progress;
        self.completed += other.completed;
        self.withdrawn += other.withdrawn;
        self.waitlisted += other.waitlisted;
        for (days, count) in &other.durations {
            *self.durations.entry(*days).or_default() += count;
        }
    }
}

/// One row of a certification report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificationRow {
    /// Organisation id, or `total`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Candidacies per state.
    pub candidacies: BTreeMap<String, i64>,
    /// Valid now.
    pub certified: i64,
    /// Valid now and expiring within the horizon.
    pub expiring_soon: i64,
    /// Past expiry.
    pub expired: i64,
    /// Suspended.
    pub suspended: i64,
    /// Revoked.
    pub revoked: i64,
}

/// A certificate as a report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Stored status (ACTIVE, SUSPENDED, REVOKED, SUPERSEDED, ...).
    pub status: String,
    /// Expiry.
    pub expires_time: chrono::DateTime<chrono::Utc>,
}

impl CertificationRow {
    /// Counts a certificate, judging validity at `now` and "soon" up to `horizon`.
    pub fn add_certificate(
        &mut self,
        certificate: &CertificateFacts,
        now: chrono::DateTime<chrono::Utc>,
        horizon: chrono::DateTime<chrono::Utc>,
    ) {
        match certificate.status.as_str() {
            "REVOKED" => self.revoked += 1,
            "SUSPENDED" => self.suspended += 1,
            "ACTIVE" if certificate.expires_time <= now => self.expired += 1,
            "ACTIVE" => {
                self.certified += 1;
                if certificate.expires_time <= horizon {
                    self.expiring_soon += 1;
                }
            }
            "EXPIRED" => self.expired += 1,
            _ => {}
        }
    }
}

/// Returns the median of a histogram (value -> count); the mean of the two middle values for an even total.
pub fn median(histogram: &BTreeMap<i32, i64>) -> Option<f64> {
    let total: i64 = histogram.values().sum();
    if total <= 0 {
        return None;
    }
    let value_at = |rank: i64| {
        let mut seen = 0;
        for (value, count) in histogram {
            seen += count;
            if seen > rank {
                return f64::from(*value);
            }
        }
        0.0
    };
    if total % 2 == 1 {
        Some(value_at(total / 2))
    } else {
        Some((value_at(total / 2 - 1) + value_at(total / 2)) / 2.0)
    }
}

/// Returns `rows` and `total` as CSV, with a header line.
pub fn to_csv(rows: &[CompletionRow], total: &CompletionRow) -> String {
    let mut csv = String::from(
        "group,name,enrolled,in_progress,completed,withdrawn,waitlisted,completion_rate,median_days_to_complete\n",
    );
    for row in rows.iter().chain(std::iter::once(total)) {
        let name = row.name.replace('"', "\"\"");
        let median = row
            .median_days()
            .map(|days| days.to_string())
            .unwrap_or_default();
        csv.push_str(&format!(
            "{},\"{name}\",{},{},{},{},{},{},{median}\n",
            row.key,
            row.enrolled,
            row.in_progress,
            row.completed,
            row.withdrawn,
            row.waitlisted,
            row.completion_rate()
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rates_and_medians() {
        let mut row = CompletionRow::default();
        row.add("ENROLLED", 2);
        row.add("IN_PROGRESS", 1);
        row.add("COMPLETED", 1);
        row.add("WITHDRAWN", 5);
        assert_eq!(row.completion_rate(), 25.0);
        row.durations = BTreeMap::from([(10, 1), (20, 2), (40, 1)]);
        assert_eq!(row.median_days(), Some(20.0));
        row.durations = BTreeMap::from([(10, 1), (30, 1)]);
        assert_eq!(row.median_days(), Some(20.0));
    }

    proptest! {
        #[test]
        fn the_histogram_median_equals_the_sorted_median(values in proptest::collection::vec(0i32..400, 1..200)) {
            let mut histogram = BTreeMap::new();
            for value in &values {
                *histogram.entry(*value).or_insert(0i64) += 1;
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let middle = sorted.len() / 2;
            let expected = if sorted.len() % 2 == 1 {
                f64::from(sorted[middle])
            } else {
                (f64::from(sorted[middle - 1]) + f64::from(sorted[middle])) / 2.0
            };
            prop_assert_eq!(median(&histogram), Some(expected));
        }
    }
}
