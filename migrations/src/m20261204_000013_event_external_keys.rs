//! HR keys on feed events: the person's `external_id` and their organisation's `external_code`,
//! stored with each outbox event when it is written, so a consumer maps events without looking
//! anyone up and the feed says what the keys were when the event happened.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    PersonExternalId,
    OrganizationExternalCode,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE. Events written before this migration keep
        // empty keys: the feed is a record of what was published.
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEvents::Table)
                    .add_column(
                        ColumnDef::new(OutboxEvents::PersonExternalId)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEvents::Table)
                    .add_column(
                        ColumnDef::new(OutboxEvents::OrganizationExternalCode)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            OutboxEvents::PersonExternalId,
            OutboxEvents::OrganizationExternalCode,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxEvents::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
