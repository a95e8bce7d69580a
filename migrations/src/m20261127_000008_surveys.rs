//! Surveys: questions of SURVEY activities and learners' responses.
//!
//! The questions are a JSON column of `course_activities`, so they are frozen with a published
//! version and copied with it like every other field of an activity. Responses are one row per
//! learner and survey (unique), with the enrolment's cohort and programme for filtering.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CourseActivities {
    Table,
    Id,
    SurveyQuestions,
}

#[derive(DeriveIden)]
enum Enrollments {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum People {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SurveyResponses {
    Table,
    Id,
    ActivityId,
    CourseVersionId,
    EnrollmentId,
    PersonId,
    CohortId,
    ProgrammeId,
    Answers,
    Actor,
    SubmitTime,
}

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(36).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CourseActivities::Table)
                    .add_column(
                        ColumnDef::new(CourseActivities::SurveyQuestions)
                            .text()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SurveyResponses::Table)
                    .col(id(SurveyResponses::Id).primary_key())
                    .col(id(SurveyResponses::ActivityId))
                    .col(id(SurveyResponses::CourseVersionId))
                    .col(id(SurveyResponses::EnrollmentId))
                    .col(id(SurveyResponses::PersonId))
                    .col(id(SurveyResponses::CohortId))
                    .col(id(SurveyResponses::ProgrammeId))
                    .col(ColumnDef::new(SurveyResponses::Answers).text().not_null())
                    .col(ColumnDef::new(SurveyResponses::Actor).string().not_null())
                    .col(
                        ColumnDef::new(SurveyResponses::SubmitTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SurveyResponses::Table, SurveyResponses::ActivityId)
                            .to(CourseActivities::Table, CourseActivities::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SurveyResponses::Table, SurveyResponses::EnrollmentId)
                            .to(Enrollments::Table, Enrollments::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SurveyResponses::Table, SurveyResponses::PersonId)
                            .to(People::Table, People::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One response per learner and survey; also the index of every results query.
        manager
            .create_index(
                Index::create()
                    .name("idx_survey_responses_activity_person")
                    .table(SurveyResponses::Table)
                    .col(SurveyResponses::ActivityId)
                    .col(SurveyResponses::PersonId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_survey_responses_enrollment")
                    .table(SurveyResponses::Table)
                    .col(SurveyResponses::EnrollmentId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SurveyResponses::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CourseActivities::Table)
                    .drop_column(CourseActivities::SurveyQuestions)
                    .to_owned(),
            )
            .await
    }
}
