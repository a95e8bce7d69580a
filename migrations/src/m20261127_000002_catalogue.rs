//! The catalogue: courses, their versions, modules and activities.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Courses {
    Table,
    Id,
    Code,
    Title,
    Description,
    ProviderOrganizationId,
    State,
    LatestVersion,
    LatestVersionId,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum CourseVersions {
    Table,
    Id,
    CourseId,
    Version,
    State,
    CompletionRule,
    CopiedFromVersionId,
    Revision,
    CreateTime,
    UpdateTime,
    PublishTime,
}

#[derive(DeriveIden)]
enum CourseModules {
    Table,
    Id,
    CourseVersionId,
    Title,
    Position,
    Required,
    PrerequisiteModuleIds,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum CourseActivities {
    Table,
    Id,
    CourseVersionId,
    ModuleId,
    Title,
    Kind,
    Position,
    Required,
    DeliveryMode,
    ExpectedMinutes,
    PassScore,
    HostOrganizationId,
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
                    .table(Courses::Table)
                    .col(
                        ColumnDef::new(Courses::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Courses::Code)
                            .string_len(32)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Courses::Title).string().not_null())
                    .col(ColumnDef::new(Courses::Description).text().not_null())
                    .col(
                        ColumnDef::new(Courses::ProviderOrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Courses::State).string_len(16).not_null())
                    .col(ColumnDef::new(Courses::LatestVersion).integer().not_null())
                    .col(
                        ColumnDef::new(Courses::LatestVersionId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(Courses::Revision).big_integer().not_null())
                    .col(
                        ColumnDef::new(Courses::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Courses::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Courses::Table, Courses::ProviderOrganizationId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CourseVersions::Table)
                    .col(
                        ColumnDef::new(CourseVersions::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CourseVersions::CourseId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CourseVersions::Version).integer().not_null())
                    .col(
                        ColumnDef::new(CourseVersions::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CourseVersions::CompletionRule).text().null())
                    .col(
                        ColumnDef::new(CourseVersions::CopiedFromVersionId)
                            .string_len(36)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CourseVersions::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseVersions::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseVersions::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseVersions::PublishTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CourseVersions::Table, CourseVersions::CourseId)
                            .to(Courses::Table, Courses::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_course_versions_course_version")
                    .table(CourseVersions::Table)
                    .col(CourseVersions::CourseId)
                    .col(CourseVersions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CourseModules::Table)
                    .col(
                        ColumnDef::new(CourseModules::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CourseModules::CourseVersionId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CourseModules::Title).string().not_null())
                    .col(ColumnDef::new(CourseModules::Position).integer().not_null())
                    .col(ColumnDef::new(CourseModules::Required).boolean().not_null())
                    .col(
                        ColumnDef::new(CourseModules::PrerequisiteModuleIds)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseModules::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseModules::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseModules::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CourseModules::Table, CourseModules::CourseVersionId)
                            .to(CourseVersions::Table, CourseVersions::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_course_modules_version")
                    .table(CourseModules::Table)
                    .col(CourseModules::CourseVersionId)
                    .col(CourseModules::Position)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CourseActivities::Table)
                    .col(
                        ColumnDef::new(CourseActivities::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::CourseVersionId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::ModuleId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CourseActivities::Title).string().not_null())
                    .col(
                        ColumnDef::new(CourseActivities::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::Required)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::DeliveryMode)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::ExpectedMinutes)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CourseActivities::PassScore).integer().null())
                    .col(
                        ColumnDef::new(CourseActivities::HostOrganizationId)
                            .string_len(36)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseActivities::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CourseActivities::Table, CourseActivities::ModuleId)
                            .to(CourseModules::Table, CourseModules::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                CourseActivities::Table,
                                CourseActivities::HostOrganizationId,
                            )
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_course_activities_module",
                vec![CourseActivities::ModuleId, CourseActivities::Position],
            ),
            (
                "idx_course_activities_version",
                vec![CourseActivities::CourseVersionId],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(CourseActivities::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CourseActivities::Table.into_iden(),
            CourseModules::Table.into_iden(),
            CourseVersions::Table.into_iden(),
            Courses::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
