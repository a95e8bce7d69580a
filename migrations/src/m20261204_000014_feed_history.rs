//! Feed history and retention watermark on `outbox_head`.
//!
//! `history` names the feed a cursor belongs to: made with the database, and replaced by the
//! restore procedure (`lms restore`, `lms rotate-feed-history`), so a cursor kept from before a
//! restore is refused instead of pointing at different events. `pruned_through` is the last
//! cursor `lms prune-events` deleted up to: a watcher resuming below it would miss events.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OutboxHead {
    Table,
    History,
    PrunedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxHead::Table)
                    .add_column(
                        ColumnDef::new(OutboxHead::History)
                            .string_len(32)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxHead::Table)
                    .add_column(
                        ColumnDef::new(OutboxHead::PrunedThrough)
                            .big_integer()
                            .not_null()
                            .default(0i64),
                    )
                    .to_owned(),
            )
            .await?;
        // 32 random hex digits, the format `lms rotate-feed-history` writes too.
        let random_history = match manager.get_database_backend() {
            DbBackend::Postgres => "md5(random()::text || clock_timestamp()::text)",
            _ => "lower(hex(randomblob(16)))",
        };
        // Feeds pruned before this migration: everything below the oldest retained event is gone
        // (all of it when nothing is retained).
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE outbox_head SET history = {random_history}, \
                 pruned_through = COALESCE((SELECT MIN(sequence) - 1 FROM outbox_events), sequence)"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [OutboxHead::PrunedThrough, OutboxHead::History] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxHead::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
