//! Certificate expiry announcements: when the `certificate.expired` event of a certificate was
//! published. NULL until the sweeper announces it; the sweeper's guarded update of this column is
//! what makes the announcement happen once, also with several replicas sweeping.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Certificates {
    Table,
    ExpiryAnnouncedTime,
    ExpiresTime,
}

/// Finds the unannounced certificates past expiry without scanning announced ones.
const INDEX: &str = "idx_certificates_expiry_announcement";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Certificates::Table)
                    .add_column(
                        ColumnDef::new(Certificates::ExpiryAnnouncedTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Certificates::Table)
                    .col(Certificates::ExpiryAnnouncedTime)
                    .col(Certificates::ExpiresTime)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(Certificates::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Certificates::Table)
                    .drop_column(Certificates::ExpiryAnnouncedTime)
                    .to_owned(),
            )
            .await
    }
}
