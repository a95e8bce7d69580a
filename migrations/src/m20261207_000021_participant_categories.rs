//! Participant categories as data: the table `participant_categories` (code, display name,
//! description, state), seeded with `public` and `private`, the two values of the former sector.
//!
//! Existing data is converted in the same transaction:
//! - `people.sector` (`PUBLIC`/`PRIVATE`) becomes `people.category` (`public`/`private`), indexed
//!   for lists filtered by category;
//! - `cohorts.sector_seats` (JSON pairs of sector and seats) becomes `cohorts.category_seats`
//!   (the same pairs with category codes);
//! - the `sector` column of `enrollments`, `report_counters` and `report_course_counters` keeps
//!   its name (it is part of the counters' primary keys) and from now on holds the category code
//!   of the person at enrolment, so counters and enrolments agree with the people.
//!
//! Codes are up to 32 characters; PostgreSQL's `varchar(16)` columns are widened to 32.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ParticipantCategories {
    Table,
    Code,
    DisplayName,
    Description,
    State,
    Revision,
    CreateTime,
    UpdateTime,
}

/// Lists of people filtered by category walk this index in id order.
const INDEX: &str = "idx_people_category";

/// Tables whose `sector` column holds a category code from now on.
const SNAPSHOT_TABLES: [&str; 3] = ["enrollments", "report_counters", "report_course_counters"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ParticipantCategories::Table)
                    .col(
                        ColumnDef::new(ParticipantCategories::Code)
                            .string_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::DisplayName)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::Description)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ParticipantCategories::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        let now = chrono::Utc::now();
        let mut seed = Query::insert();
        seed.into_table(ParticipantCategories::Table).columns([
            ParticipantCategories::Code,
            ParticipantCategories::DisplayName,
            ParticipantCategories::Description,
            ParticipantCategories::State,
            ParticipantCategories::Revision,
            ParticipantCategories::CreateTime,
            ParticipantCategories::UpdateTime,
        ]);
        for (code, display_name, description) in [
            (
                "public",
                "Public sector",
                "Civil servants and officers of public bodies.",
            ),
            ("private", "Private sector", "Staff of private companies."),
        ] {
            seed.values_panic([
                code.into(),
                display_name.into(),
                description.into(),
                "ACTIVE".into(),
                1i64.into(),
                now.into(),
                now.into(),
            ]);
        }
        manager.exec_stmt(seed).await?;

        let connection = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        connection
            .execute_unprepared("ALTER TABLE people RENAME COLUMN sector TO category")
            .await?;
        connection
            .execute_unprepared("ALTER TABLE cohorts RENAME COLUMN sector_seats TO category_seats")
            .await?;
        if postgres {
            connection
                .execute_unprepared("ALTER TABLE people ALTER COLUMN category TYPE varchar(32)")
                .await?;
            for table in SNAPSHOT_TABLES {
                connection
                    .execute_unprepared(&format!(
                        "ALTER TABLE {table} ALTER COLUMN sector TYPE varchar(32)"
                    ))
                    .await?;
            }
        }
        // Stored sectors are PUBLIC or PRIVATE; their category codes are the same words in lower
        // case. Seats are JSON like [["PRIVATE",20],["PUBLIC",35]]: only the sector names are
        // letters, so lowering the whole text converts them.
        connection
            .execute_unprepared("UPDATE people SET category = LOWER(category)")
            .await?;
        connection
            .execute_unprepared("UPDATE cohorts SET category_seats = LOWER(category_seats)")
            .await?;
        for table in SNAPSHOT_TABLES {
            connection
                .execute_unprepared(&format!("UPDATE {table} SET sector = LOWER(sector)"))
                .await?;
        }
        connection
            .execute_unprepared(&format!("CREATE INDEX {INDEX} ON people (category, id)"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        connection
            .execute_unprepared(&format!("DROP INDEX {INDEX}"))
            .await?;
        // Only the two former sectors can go back; anyone of another category becomes PUBLIC.
        connection
            .execute_unprepared(
                "UPDATE people SET category = CASE category WHEN 'private' THEN 'PRIVATE' ELSE 'PUBLIC' END",
            )
            .await?;
        connection
            .execute_unprepared("UPDATE cohorts SET category_seats = UPPER(category_seats)")
            .await?;
        connection
            .execute_unprepared(
                "UPDATE enrollments SET sector = CASE sector WHEN 'private' THEN 'PRIVATE' ELSE 'PUBLIC' END",
            )
            .await?;
        // Counters of other categories would collide with the public ones: drop them and the
        // others back to sectors; `RebuildReportCounters` recounts them from the enrolments.
        for table in &SNAPSHOT_TABLES[1..] {
            connection
                .execute_unprepared(&format!(
                    "DELETE FROM {table} WHERE sector NOT IN ('public', 'private')"
                ))
                .await?;
            connection
                .execute_unprepared(&format!("UPDATE {table} SET sector = UPPER(sector)"))
                .await?;
        }
        connection
            .execute_unprepared("ALTER TABLE people RENAME COLUMN category TO sector")
            .await?;
        connection
            .execute_unprepared("ALTER TABLE cohorts RENAME COLUMN category_seats TO sector_seats")
            .await?;
        manager
            .drop_table(Table::drop().table(ParticipantCategories::Table).to_owned())
            .await
    }

    // The table, its seed and the converted data commit together, or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
