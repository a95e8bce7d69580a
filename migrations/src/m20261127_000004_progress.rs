//! Progress: the event log, derived per-activity and per-enrolment state, and the outbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProgressEvents {
    Table,
    EventId,
    EnrollmentId,
    ActivityId,
    Verb,
    Score,
    DurationSeconds,
    OccurredTime,
    Source,
    EvidenceUri,
    EvidenceNote,
    ProvenanceNote,
    Actor,
    PayloadHash,
    RecordedTime,
    AckActivityState,
    AckPercentComplete,
    AckEnrollmentState,
}

#[derive(DeriveIden)]
enum ActivityProgress {
    Table,
    EnrollmentId,
    ActivityId,
    Events,
    BestScore,
    Attempts,
    TimeSpentSeconds,
    CompletedTime,
    LastEventTime,
}

#[derive(DeriveIden)]
enum EnrollmentProgress {
    Table,
    EnrollmentId,
    PercentComplete,
    EventCount,
    LastEventTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Sequence,
    Id,
    EventType,
    SubjectId,
    PersonId,
    OrganizationPath,
    Payload,
    CreateTime,
}

#[derive(DeriveIden)]
enum OutboxHead {
    Table,
    Id,
    Sequence,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProgressEvents::Table)
                    .col(
                        ColumnDef::new(ProgressEvents::EventId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::EnrollmentId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::ActivityId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::Verb)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProgressEvents::Score).integer().null())
                    .col(
                        ColumnDef::new(ProgressEvents::DurationSeconds)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::OccurredTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::Source)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProgressEvents::EvidenceUri).text().null())
                    .col(ColumnDef::new(ProgressEvents::EvidenceNote).text().null())
                    .col(ColumnDef::new(ProgressEvents::ProvenanceNote).text().null())
                    .col(ColumnDef::new(ProgressEvents::Actor).string().not_null())
                    .col(
                        ColumnDef::new(ProgressEvents::PayloadHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::RecordedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::AckActivityState)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::AckPercentComplete)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProgressEvents::AckEnrollmentState)
                            .string_len(16)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_progress_events_enrollment",
                vec![ProgressEvents::EnrollmentId, ProgressEvents::RecordedTime],
            ),
            (
                "idx_progress_events_recorded",
                vec![ProgressEvents::RecordedTime, ProgressEvents::EventId],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(ProgressEvents::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ActivityProgress::Table)
                    .col(
                        ColumnDef::new(ActivityProgress::EnrollmentId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ActivityProgress::ActivityId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ActivityProgress::Events)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ActivityProgress::BestScore).integer().null())
                    .col(
                        ColumnDef::new(ActivityProgress::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ActivityProgress::TimeSpentSeconds)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ActivityProgress::CompletedTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ActivityProgress::LastEventTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ActivityProgress::EnrollmentId)
                            .col(ActivityProgress::ActivityId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EnrollmentProgress::Table)
                    .col(
                        ColumnDef::new(EnrollmentProgress::EnrollmentId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentProgress::PercentComplete)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentProgress::EventCount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentProgress::LastEventTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentProgress::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_enrollment_progress_percent")
                    .table(EnrollmentProgress::Table)
                    .col(EnrollmentProgress::PercentComplete)
                    .col(EnrollmentProgress::EnrollmentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(ColumnDef::new(OutboxEvents::Sequence).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(OutboxEvents::Id).string_len(36).not_null().unique_key())
                    .col(ColumnDef::new(OutboxEvents::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(OutboxEvents::SubjectId).string_len(36).not_null())
                    .col(ColumnDef::new(OutboxEvents::PersonId).string_len(36).null())
                    .col(ColumnDef::new(OutboxEvents::OrganizationPath).text().null())
                    .col(ColumnDef::new(OutboxEvents::Payload).text().not_null())
                    .col(ColumnDef::new(OutboxEvents::CreateTime).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_events_type")
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::EventType)
                    .col(OutboxEvents::Sequence)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_events_create_time")
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::CreateTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxHead::Table)
                    .col(ColumnDef::new(OutboxHead::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(OutboxHead::Sequence).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(OutboxHead::Table)
                    .columns([OutboxHead::Id, OutboxHead::Sequence])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OutboxHead::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
            EnrollmentProgress::Table.into_iden(),
            ActivityProgress::Table.into_iden(),
            ProgressEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
