//! Competencies: the framework (competencies with levels, roles and their requirements), the tags
//! saying which courses, activities and certification tracks confer them, and the course
//! completions a profile is derived from. Course completions are backfilled from the activity
//! progress already recorded (a course is complete when every required activity of its required
//! modules is); indexes on `activity_progress(activity_id)` and `certificates(track_id,
//! person_id)` let the holder search start from the few tagged activities and tracks.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Competencies {
    Table,
    Id,
    Code,
    Name,
    Description,
    Area,
    Levels,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum CompetencyRoles {
    Table,
    Id,
    Code,
    Name,
    Description,
    OrganizationId,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum CompetencyRoleRequirements {
    Table,
    RoleId,
    CompetencyId,
    Level,
    Position,
}

#[derive(DeriveIden)]
enum CompetencyTags {
    Table,
    TargetKind,
    TargetId,
    CompetencyId,
    Level,
}

#[derive(DeriveIden)]
enum CourseCompletions {
    Table,
    EnrollmentId,
    CourseVersionId,
    CourseId,
    PersonId,
    CompletedTime,
}

#[derive(DeriveIden)]
enum Certificates {
    Table,
    TrackId,
    PersonId,
}

#[derive(DeriveIden)]
enum ActivityProgress {
    Table,
    ActivityId,
    EnrollmentId,
}

/// Course completions of existing enrolments: per enrolment and course version, complete when
/// every required activity of the version's required modules has a completion (as
/// `domain::progress::derive` says); completed when the last of them was.
const BACKFILL: &str = "INSERT INTO course_completions \
    (enrollment_id, course_version_id, course_id, person_id, completed_time) \
    SELECT ap.enrollment_id, a.course_version_id, v.course_id, e.person_id, MAX(ap.completed_time) \
    FROM activity_progress ap \
    JOIN course_activities a ON a.id = ap.activity_id \
    JOIN course_modules m ON m.id = a.module_id \
    JOIN course_versions v ON v.id = a.course_version_id \
    JOIN enrollments e ON e.id = ap.enrollment_id \
    WHERE a.required AND m.required AND ap.completed_time IS NOT NULL \
    GROUP BY ap.enrollment_id, a.course_version_id, v.course_id, e.person_id \
    HAVING COUNT(*) = (SELECT COUNT(*) FROM course_activities a2 \
        JOIN course_modules m2 ON m2.id = a2.module_id \
        WHERE a2.course_version_id = a.course_version_id AND a2.required AND m2.required)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Competencies::Table)
                    .col(
                        ColumnDef::new(Competencies::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Competencies::Code).string().not_null())
                    .col(ColumnDef::new(Competencies::Name).string().not_null())
                    .col(ColumnDef::new(Competencies::Description).text().not_null())
                    .col(ColumnDef::new(Competencies::Area).string().not_null())
                    .col(ColumnDef::new(Competencies::Levels).text().not_null())
                    .col(
                        ColumnDef::new(Competencies::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Competencies::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Competencies::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_competencies_code")
                    .table(Competencies::Table)
                    .col(Competencies::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CompetencyRoles::Table)
                    .col(
                        ColumnDef::new(CompetencyRoles::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CompetencyRoles::Code).string().not_null())
                    .col(ColumnDef::new(CompetencyRoles::Name).string().not_null())
                    .col(
                        ColumnDef::new(CompetencyRoles::Description)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoles::OrganizationId)
                            .string_len(36)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoles::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoles::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoles::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_competency_roles_code")
                    .table(CompetencyRoles::Table)
                    .col(CompetencyRoles::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_competency_roles_organization")
                    .table(CompetencyRoles::Table)
                    .col(CompetencyRoles::OrganizationId)
                    .col(CompetencyRoles::Code)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CompetencyRoleRequirements::Table)
                    .col(
                        ColumnDef::new(CompetencyRoleRequirements::RoleId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoleRequirements::CompetencyId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoleRequirements::Level)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyRoleRequirements::Position)
                            .integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(CompetencyRoleRequirements::RoleId)
                            .col(CompetencyRoleRequirements::CompetencyId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_competency_role_requirements_competency")
                    .table(CompetencyRoleRequirements::Table)
                    .col(CompetencyRoleRequirements::CompetencyId)
                    .col(CompetencyRoleRequirements::Level)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CompetencyTags::Table)
                    .col(
                        ColumnDef::new(CompetencyTags::TargetKind)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyTags::TargetId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CompetencyTags::CompetencyId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CompetencyTags::Level).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(CompetencyTags::TargetKind)
                            .col(CompetencyTags::TargetId)
                            .col(CompetencyTags::CompetencyId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_competency_tags_competency")
                    .table(CompetencyTags::Table)
                    .col(CompetencyTags::CompetencyId)
                    .col(CompetencyTags::Level)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CourseCompletions::Table)
                    .col(
                        ColumnDef::new(CourseCompletions::EnrollmentId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseCompletions::CourseVersionId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseCompletions::CourseId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseCompletions::PersonId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CourseCompletions::CompletedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(CourseCompletions::EnrollmentId)
                            .col(CourseCompletions::CourseVersionId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_course_completions_course_person")
                    .table(CourseCompletions::Table)
                    .col(CourseCompletions::CourseId)
                    .col(CourseCompletions::PersonId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_course_completions_person")
                    .table(CourseCompletions::Table)
                    .col(CourseCompletions::PersonId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_activity_progress_activity")
                    .table(ActivityProgress::Table)
                    .col(ActivityProgress::ActivityId)
                    .col(ActivityProgress::EnrollmentId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_certificates_track_person")
                    .table(Certificates::Table)
                    .col(Certificates::TrackId)
                    .col(Certificates::PersonId)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(BACKFILL)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_certificates_track_person")
                    .table(Certificates::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_activity_progress_activity")
                    .table(ActivityProgress::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            CourseCompletions::Table.into_iden(),
            CompetencyTags::Table.into_iden(),
            CompetencyRoleRequirements::Table.into_iden(),
            CompetencyRoles::Table.into_iden(),
            Competencies::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
