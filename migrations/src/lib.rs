//! Schema migrations of the LMS backend, applied by `lms migrate` and on `lms serve` start.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_foundation;
mod m20261127_000002_catalogue;
mod m20261127_000003_programmes;
mod m20261127_000004_progress;
mod m20261127_000005_certification;
mod m20261127_000006_events;
mod m20261127_000007_selection;
mod m20261127_000008_surveys;
mod m20261128_000009_certificate_expiry;
mod m20261128_000010_course_report_counters;
mod m20261202_000011_health_probe;
mod m20261203_000012_track_assessors;
mod m20261204_000013_event_external_keys;
mod m20261204_000014_feed_history;
mod m20261205_000015_selection_score_visibility;
mod m20261205_000016_progress_anchors;
mod m20261206_000017_placements;
mod m20261206_000018_partitioning;
mod m20261206_000019_reminders;
mod m20261207_000020_cohort_phases;
mod m20261207_000021_participant_categories;
mod m20261207_000022_competencies;
mod m20261207_000023_renewal_candidacies;
mod m20261207_000024_report_rollups;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_foundation::Migration),
            Box::new(m20261127_000002_catalogue::Migration),
            Box::new(m20261127_000003_programmes::Migration),
            Box::new(m20261127_000004_progress::Migration),
            Box::new(m20261127_000005_certification::Migration),
            Box::new(m20261127_000006_events::Migration),
            Box::new(m20261127_000007_selection::Migration),
            Box::new(m20261127_000008_surveys::Migration),
            Box::new(m20261128_000009_certificate_expiry::Migration),
            Box::new(m20261128_000010_course_report_counters::Migration),
            Box::new(m20261202_000011_health_probe::Migration),
            Box::new(m20261203_000012_track_assessors::Migration),
            Box::new(m20261204_000013_event_external_keys::Migration),
            Box::new(m20261204_000014_feed_history::Migration),
            Box::new(m20261205_000015_selection_score_visibility::Migration),
            Box::new(m20261205_000016_progress_anchors::Migration),
            Box::new(m20261206_000017_placements::Migration),
            Box::new(m20261206_000018_partitioning::Migration),
            Box::new(m20261206_000019_reminders::Migration),
            Box::new(m20261207_000020_cohort_phases::Migration),
            Box::new(m20261207_000021_participant_categories::Migration),
            Box::new(m20261207_000022_competencies::Migration),
            Box::new(m20261207_000023_renewal_candidacies::Migration),
            Box::new(m20261207_000024_report_rollups::Migration),
        ]
    }
}
