//! Programmes, their phases, cohorts and enrolments.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum People {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Programmes {
    Table,
    Id,
    Code,
    Title,
    Description,
    SponsorOrganizationId,
    PartnerOrganizationIds,
    State,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum ProgrammePhases {
    Table,
    Id,
    ProgrammeId,
    Title,
    Position,
    CourseVersionIds,
    Location,
    PlannedDurationDays,
}

#[derive(DeriveIden)]
enum Cohorts {
    Table,
    Id,
    ProgrammeId,
    Name,
    StartDate,
    EndDate,
    Capacity,
    State,
    EnrolledCount,
    WaitlistedCount,
    WaitlistEnabled,
    SectorSeats,
    EligibleOrganizationIds,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Enrollments {
    Table,
    Id,
    CohortId,
    ProgrammeId,
    PersonId,
    OrganizationId,
    Sector,
    CourseVersionIds,
    State,
    EnrolledTime,
    CompletedTime,
    WithdrawnTime,
    WithdrawReason,
    Revision,
    CreateTime,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Programmes::Table)
                    .col(
                        ColumnDef::new(Programmes::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Programmes::Code)
                            .string_len(32)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Programmes::Title).string().not_null())
                    .col(ColumnDef::new(Programmes::Description).text().not_null())
                    .col(
                        ColumnDef::new(Programmes::SponsorOrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Programmes::PartnerOrganizationIds)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Programmes::State).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Programmes::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Programmes::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Programmes::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Programmes::Table, Programmes::SponsorOrganizationId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProgrammePhases::Table)
                    .col(
                        ColumnDef::new(ProgrammePhases::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProgrammePhases::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProgrammePhases::Title).string().not_null())
                    .col(
                        ColumnDef::new(ProgrammePhases::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgrammePhases::CourseVersionIds)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgrammePhases::Location)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgrammePhases::PlannedDurationDays)
                            .integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProgrammePhases::Table, ProgrammePhases::ProgrammeId)
                            .to(Programmes::Table, Programmes::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_programme_phases_programme")
                    .table(ProgrammePhases::Table)
                    .col(ProgrammePhases::ProgrammeId)
                    .col(ProgrammePhases::Position)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Cohorts::Table)
                    .col(
                        ColumnDef::new(Cohorts::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Cohorts::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Cohorts::Name).string().not_null())
                    .col(ColumnDef::new(Cohorts::StartDate).string_len(10).null())
                    .col(ColumnDef::new(Cohorts::EndDate).string_len(10).null())
                    .col(ColumnDef::new(Cohorts::Capacity).integer().not_null())
                    .col(ColumnDef::new(Cohorts::State).string_len(16).not_null())
                    .col(ColumnDef::new(Cohorts::EnrolledCount).integer().not_null())
                    .col(
                        ColumnDef::new(Cohorts::WaitlistedCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Cohorts::WaitlistEnabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Cohorts::SectorSeats).text().not_null())
                    .col(
                        ColumnDef::new(Cohorts::EligibleOrganizationIds)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Cohorts::Revision).big_integer().not_null())
                    .col(
                        ColumnDef::new(Cohorts::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Cohorts::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Cohorts::Table, Cohorts::ProgrammeId)
                            .to(Programmes::Table, Programmes::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cohorts_programme")
                    .table(Cohorts::Table)
                    .col(Cohorts::ProgrammeId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Enrollments::Table)
                    .col(
                        ColumnDef::new(Enrollments::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::CohortId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::ProgrammeId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::PersonId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::Sector)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::CourseVersionIds)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Enrollments::State).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Enrollments::EnrolledTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::CompletedTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::WithdrawnTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Enrollments::WithdrawReason).text().null())
                    .col(
                        ColumnDef::new(Enrollments::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Enrollments::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Enrollments::Table, Enrollments::CohortId)
                            .to(Cohorts::Table, Cohorts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Enrollments::Table, Enrollments::PersonId)
                            .to(People::Table, People::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "idx_enrollments_cohort_person",
                vec![Enrollments::CohortId, Enrollments::PersonId],
                true,
            ),
            ("idx_enrollments_person", vec![Enrollments::PersonId], false),
            (
                "idx_enrollments_cohort_id",
                vec![Enrollments::CohortId, Enrollments::Id],
                false,
            ),
            (
                "idx_enrollments_cohort_state",
                vec![
                    Enrollments::CohortId,
                    Enrollments::State,
                    Enrollments::EnrolledTime,
                ],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Enrollments::Table);
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Enrollments::Table.into_iden(),
            Cohorts::Table.into_iden(),
            ProgrammePhases::Table.into_iden(),
            Programmes::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
