//! Track assessors: the people who assess a certification track's candidacies and act on its
//! certificates. The link the object scope of assessors is derived from (an assessor acts on the
//! candidacies and certificates of the tracks they assess, and on nothing else).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CertificationTrackAssessors {
    Table,
    TrackId,
    PersonId,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CertificationTrackAssessors::Table)
                    .col(
                        ColumnDef::new(CertificationTrackAssessors::TrackId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CertificationTrackAssessors::PersonId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CertificationTrackAssessors::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(CertificationTrackAssessors::TrackId)
                            .col(CertificationTrackAssessors::PersonId),
                    )
                    .to_owned(),
            )
            .await?;
        // "Which tracks does this person assess?" is asked on every call an assessor makes.
        manager
            .create_index(
                Index::create()
                    .name("idx_certification_track_assessors_person")
                    .table(CertificationTrackAssessors::Table)
                    .col(CertificationTrackAssessors::PersonId)
                    .col(CertificationTrackAssessors::TrackId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CertificationTrackAssessors::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
