//! Cohort phase windows and schedules: when each phase of the programme runs for a cohort (one row
//! per cohort and phase, with the window's bounds also as instants so reports can classify
//! progress as early, in the window or late in SQL), and whether the periodic sweep moves the
//! cohort along its lifecycle by its dates. Existing cohorts keep their manual lifecycle
//! (`auto_advance` false) and have no windows.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CohortPhaseWindows {
    Table,
    CohortId,
    PhaseId,
    Position,
    StartDate,
    EndDate,
    OpensTime,
    ClosesTime,
}

#[derive(DeriveIden)]
enum Cohorts {
    Table,
    Id,
    State,
    AutoAdvance,
    EnrollmentOpenDate,
}

/// Finds the cohorts the sweep may move without scanning the others.
const INDEX: &str = "idx_cohorts_auto_advance_state";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CohortPhaseWindows::Table)
                    .col(
                        ColumnDef::new(CohortPhaseWindows::CohortId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::PhaseId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::StartDate)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::EndDate)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::OpensTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CohortPhaseWindows::ClosesTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(CohortPhaseWindows::CohortId)
                            .col(CohortPhaseWindows::PhaseId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CohortPhaseWindows::Table, CohortPhaseWindows::CohortId)
                            .to(Cohorts::Table, Cohorts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Cohorts::Table)
                    .add_column(
                        ColumnDef::new(Cohorts::AutoAdvance)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Cohorts::Table)
                    .add_column(ColumnDef::new(Cohorts::EnrollmentOpenDate).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Cohorts::Table)
                    .col(Cohorts::AutoAdvance)
                    .col(Cohorts::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Cohorts::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Cohorts::Table)
                    .drop_column(Cohorts::EnrollmentOpenDate)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Cohorts::Table)
                    .drop_column(Cohorts::AutoAdvance)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(CohortPhaseWindows::Table).to_owned())
            .await
    }
}
