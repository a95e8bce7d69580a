//! Health probe: a table the server writes to (and empties again) to learn whether the database
//! can commit, after a write failed for lack of space. Never holds a row outside a probe.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    Payload,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthProbe::Table)
                    .col(
                        ColumnDef::new(HealthProbe::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(HealthProbe::Payload).blob().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthProbe::Table).to_owned())
            .await
    }
}
