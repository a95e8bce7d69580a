//! Report roll-ups: enrolment counters and completion durations summed per programme and
//! organisation, without the cohort and category of `report_counters` / `report_durations`. The
//! national completion report grouped by organisation reads these: a few rows per organisation
//! instead of one per cohort × organisation × category × state (about 90 times fewer at national
//! scale). They are kept in the same transaction as the counters they sum, and filled here from
//! the existing counters.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ReportOrgCounters {
    Table,
    ProgrammeId,
    OrganizationId,
    State,
    Count,
}

#[derive(DeriveIden)]
enum ReportOrgDurations {
    Table,
    ProgrammeId,
    OrganizationId,
    Days,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportOrgCounters::Table)
                    .col(
                        ColumnDef::new(ReportOrgCounters::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgCounters::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgCounters::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgCounters::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportOrgCounters::ProgrammeId)
                            .col(ReportOrgCounters::OrganizationId)
                            .col(ReportOrgCounters::State),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportOrgDurations::Table)
                    .col(
                        ColumnDef::new(ReportOrgDurations::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgDurations::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgDurations::Days)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportOrgDurations::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportOrgDurations::ProgrammeId)
                            .col(ReportOrgDurations::OrganizationId)
                            .col(ReportOrgDurations::Days),
                    )
                    .to_owned(),
            )
            .await?;
        let connection = manager.get_connection();
        connection
            .execute_unprepared(
                "INSERT INTO report_org_counters (programme_id, organization_id, state, count) \
                 SELECT programme_id, organization_id, state, SUM(count) FROM report_counters \
                 GROUP BY programme_id, organization_id, state HAVING SUM(count) <> 0",
            )
            .await?;
        connection
            .execute_unprepared(
                "INSERT INTO report_org_durations (programme_id, organization_id, days, count) \
                 SELECT programme_id, organization_id, days, SUM(count) FROM report_durations \
                 GROUP BY programme_id, organization_id, days HAVING SUM(count) <> 0",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReportOrgDurations::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ReportOrgCounters::Table).to_owned())
            .await
    }
}
