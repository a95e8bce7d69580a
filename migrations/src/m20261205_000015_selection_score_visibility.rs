//! Score visibility of a selection call: who besides managers reads the judges' scores.
//!
//! Existing calls take the default, `HIDDEN_UNTIL_DECIDED`: a judge reads only their own score
//! of an application until it is accepted or rejected.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SelectionCalls {
    Table,
    ScoreVisibility,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SelectionCalls::Table)
                    .add_column(
                        ColumnDef::new(SelectionCalls::ScoreVisibility)
                            .string_len(32)
                            .not_null()
                            .default("HIDDEN_UNTIL_DECIDED"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SelectionCalls::Table)
                    .drop_column(SelectionCalls::ScoreVisibility)
                    .to_owned(),
            )
            .await
    }
}
