//! Report counters, kept current in the transactions that change enrolments.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ReportCounters {
    Table,
    ProgrammeId,
    CohortId,
    OrganizationId,
    Sector,
    State,
    Count,
}

#[derive(DeriveIden)]
enum ReportDurations {
    Table,
    ProgrammeId,
    CohortId,
    OrganizationId,
    Days,
    Count,
}

#[derive(DeriveIden)]
enum ReportCourseCompletions {
    Table,
    ProgrammeId,
    CohortId,
    OrganizationId,
    CourseVersionId,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportCounters::Table)
                    .col(
                        ColumnDef::new(ReportCounters::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCounters::CohortId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCounters::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCounters::Sector)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCounters::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCounters::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportCounters::ProgrammeId)
                            .col(ReportCounters::CohortId)
                            .col(ReportCounters::OrganizationId)
                            .col(ReportCounters::Sector)
                            .col(ReportCounters::State),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_report_counters_organization")
                    .table(ReportCounters::Table)
                    .col(ReportCounters::OrganizationId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportDurations::Table)
                    .col(
                        ColumnDef::new(ReportDurations::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportDurations::CohortId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportDurations::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ReportDurations::Days).integer().not_null())
                    .col(
                        ColumnDef::new(ReportDurations::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportDurations::ProgrammeId)
                            .col(ReportDurations::CohortId)
                            .col(ReportDurations::OrganizationId)
                            .col(ReportDurations::Days),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportCourseCompletions::Table)
                    .col(
                        ColumnDef::new(ReportCourseCompletions::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCompletions::CohortId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCompletions::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCompletions::CourseVersionId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCompletions::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportCourseCompletions::ProgrammeId)
                            .col(ReportCourseCompletions::CohortId)
                            .col(ReportCourseCompletions::OrganizationId)
                            .col(ReportCourseCompletions::CourseVersionId),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReportCourseCompletions::Table.into_iden(),
            ReportDurations::Table.into_iden(),
            ReportCounters::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
