//! Course report counters: per pinned course version, enrolments by where they stand on that
//! course, and days to complete it; kept current in the transactions that enrol, withdraw and
//! record progress, like the programme counters of the events migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ReportCourseCounters {
    Table,
    CourseVersionId,
    ProgrammeId,
    CohortId,
    OrganizationId,
    Sector,
    State,
    Count,
}

#[derive(DeriveIden)]
enum ReportCourseDurations {
    Table,
    CourseVersionId,
    ProgrammeId,
    CohortId,
    OrganizationId,
    Days,
    Count,
}

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(36).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportCourseCounters::Table)
                    .col(id(ReportCourseCounters::CourseVersionId))
                    .col(id(ReportCourseCounters::ProgrammeId))
                    .col(id(ReportCourseCounters::CohortId))
                    .col(id(ReportCourseCounters::OrganizationId))
                    .col(
                        ColumnDef::new(ReportCourseCounters::Sector)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCounters::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseCounters::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportCourseCounters::CourseVersionId)
                            .col(ReportCourseCounters::ProgrammeId)
                            .col(ReportCourseCounters::CohortId)
                            .col(ReportCourseCounters::OrganizationId)
                            .col(ReportCourseCounters::Sector)
                            .col(ReportCourseCounters::State),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportCourseDurations::Table)
                    .col(id(ReportCourseDurations::CourseVersionId))
                    .col(id(ReportCourseDurations::ProgrammeId))
                    .col(id(ReportCourseDurations::CohortId))
                    .col(id(ReportCourseDurations::OrganizationId))
                    .col(
                        ColumnDef::new(ReportCourseDurations::Days)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportCourseDurations::Count)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReportCourseDurations::CourseVersionId)
                            .col(ReportCourseDurations::ProgrammeId)
                            .col(ReportCourseDurations::CohortId)
                            .col(ReportCourseDurations::OrganizationId)
                            .col(ReportCourseDurations::Days),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReportCourseDurations::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ReportCourseCounters::Table).to_owned())
            .await
    }
}
