//! Applications, calls, panels, scores and decisions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Cohorts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum People {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SelectionCalls {
    Table,
    Id,
    CohortId,
    ProgrammeId,
    Title,
    OpensTime,
    ClosesTime,
    Questions,
    Rubric,
    Seats,
    NominationOnly,
    AcceptedCount,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum SelectionApplications {
    Table,
    Id,
    CallId,
    PersonId,
    OrganizationPath,
    Answers,
    NominatedBy,
    State,
    EnrollmentId,
    SubmitTime,
    DecideTime,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum SelectionPanels {
    Table,
    Id,
    CallId,
    JudgePersonIds,
    JudgesPerApplication,
    AssignmentCount,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum SelectionAssignments {
    Table,
    Id,
    PanelId,
    CallId,
    ApplicationId,
    JudgePersonId,
    Scores,
    Comment,
    ScoreTime,
    CreateTime,
}

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(36).not_null().to_owned()
}

fn time(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SelectionCalls::Table)
                    .col(id(SelectionCalls::Id).primary_key())
                    .col(id(SelectionCalls::CohortId))
                    .col(id(SelectionCalls::ProgrammeId))
                    .col(ColumnDef::new(SelectionCalls::Title).string().not_null())
                    .col(time(SelectionCalls::OpensTime))
                    .col(time(SelectionCalls::ClosesTime))
                    .col(ColumnDef::new(SelectionCalls::Questions).text().not_null())
                    .col(ColumnDef::new(SelectionCalls::Rubric).text().not_null())
                    .col(ColumnDef::new(SelectionCalls::Seats).integer().not_null())
                    .col(
                        ColumnDef::new(SelectionCalls::NominationOnly)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionCalls::AcceptedCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionCalls::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time(SelectionCalls::CreateTime))
                    .col(time(SelectionCalls::UpdateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SelectionCalls::Table, SelectionCalls::CohortId)
                            .to(Cohorts::Table, Cohorts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_selection_calls_cohort")
                    .table(SelectionCalls::Table)
                    .col(SelectionCalls::CohortId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SelectionApplications::Table)
                    .col(id(SelectionApplications::Id).primary_key())
                    .col(id(SelectionApplications::CallId))
                    .col(id(SelectionApplications::PersonId))
                    .col(
                        ColumnDef::new(SelectionApplications::OrganizationPath)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionApplications::Answers)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionApplications::NominatedBy)
                            .string()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(SelectionApplications::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionApplications::EnrollmentId)
                            .string_len(36)
                            .null(),
                    )
                    .col(time(SelectionApplications::SubmitTime))
                    .col(
                        ColumnDef::new(SelectionApplications::DecideTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(SelectionApplications::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time(SelectionApplications::CreateTime))
                    .col(time(SelectionApplications::UpdateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SelectionApplications::Table, SelectionApplications::CallId)
                            .to(SelectionCalls::Table, SelectionCalls::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SelectionApplications::Table,
                                SelectionApplications::PersonId,
                            )
                            .to(People::Table, People::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_selection_applications_call_person")
                    .table(SelectionApplications::Table)
                    .col(SelectionApplications::CallId)
                    .col(SelectionApplications::PersonId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SelectionPanels::Table)
                    .col(id(SelectionPanels::Id).primary_key())
                    .col(id(SelectionPanels::CallId).unique_key())
                    .col(
                        ColumnDef::new(SelectionPanels::JudgePersonIds)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionPanels::JudgesPerApplication)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionPanels::AssignmentCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SelectionPanels::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time(SelectionPanels::CreateTime))
                    .col(time(SelectionPanels::UpdateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SelectionPanels::Table, SelectionPanels::CallId)
                            .to(SelectionCalls::Table, SelectionCalls::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SelectionAssignments::Table)
                    .col(id(SelectionAssignments::Id).primary_key())
                    .col(id(SelectionAssignments::PanelId))
                    .col(id(SelectionAssignments::CallId))
                    .col(id(SelectionAssignments::ApplicationId))
                    .col(id(SelectionAssignments::JudgePersonId))
                    .col(ColumnDef::new(SelectionAssignments::Scores).text().null())
                    .col(ColumnDef::new(SelectionAssignments::Comment).text().null())
                    .col(
                        ColumnDef::new(SelectionAssignments::ScoreTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(time(SelectionAssignments::CreateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SelectionAssignments::Table, SelectionAssignments::PanelId)
                            .to(SelectionPanels::Table, SelectionPanels::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SelectionAssignments::Table,
                                SelectionAssignments::ApplicationId,
                            )
                            .to(SelectionApplications::Table, SelectionApplications::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SelectionAssignments::Table,
                                SelectionAssignments::JudgePersonId,
                            )
                            .to(People::Table, People::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "idx_selection_assignments_application_judge",
                vec![
                    SelectionAssignments::ApplicationId,
                    SelectionAssignments::JudgePersonId,
                ],
                true,
            ),
            (
                "idx_selection_assignments_judge",
                vec![
                    SelectionAssignments::JudgePersonId,
                    SelectionAssignments::Id,
                ],
                false,
            ),
            (
                "idx_selection_assignments_call",
                vec![SelectionAssignments::CallId],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(SelectionAssignments::Table);
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
            SelectionAssignments::Table.into_iden(),
            SelectionPanels::Table.into_iden(),
            SelectionApplications::Table.into_iden(),
            SelectionCalls::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
