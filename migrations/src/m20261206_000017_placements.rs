//! Placements: the host and supervisors of an enrolment's industry attachment or field visit
//! (issue 18, point 1).
//!
//! Creates `placements` (one per enrolment and activity; the host is an organisation of the
//! tree or an external host with its country) and `placement_supervisors` (the people who may
//! sign the activity off). Existing data is carried over: every (enrolment, activity) that
//! already holds a SUPERVISOR sign-off on an activity with a host organisation gets a placement
//! at that host, supervised by the people who recorded those sign-offs (actors that are people
//! of the system), so a later sign-off by the same supervisor still passes. Pairs whose
//! sign-offs were recorded by no person (a service, an unknown subject) get no placement: an
//! admin creates it when the next sign-off is due.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement, Value};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Placements {
    Table,
    Id,
    EnrollmentId,
    ActivityId,
    HostOrganizationId,
    HostName,
    HostCountryCode,
    HostAddress,
    HostExternalCode,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum PlacementSupervisors {
    Table,
    PlacementId,
    PersonId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Placements::Table)
                    .col(
                        ColumnDef::new(Placements::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Placements::EnrollmentId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Placements::ActivityId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Placements::HostOrganizationId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(Placements::HostName).string_len(200).null())
                    .col(
                        ColumnDef::new(Placements::HostCountryCode)
                            .string_len(2)
                            .null(),
                    )
                    .col(ColumnDef::new(Placements::HostAddress).text().null())
                    .col(
                        ColumnDef::new(Placements::HostExternalCode)
                            .string_len(100)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Placements::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Placements::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Placements::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_placements_enrollment_activity")
                    .table(Placements::Table)
                    .col(Placements::EnrollmentId)
                    .col(Placements::ActivityId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PlacementSupervisors::Table)
                    .col(
                        ColumnDef::new(PlacementSupervisors::PlacementId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PlacementSupervisors::PersonId)
                            .string_len(36)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(PlacementSupervisors::PlacementId)
                            .col(PlacementSupervisors::PersonId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_placement_supervisors_person")
                    .table(PlacementSupervisors::Table)
                    .col(PlacementSupervisors::PersonId)
                    .col(PlacementSupervisors::PlacementId)
                    .to_owned(),
            )
            .await?;
        carry_over_sign_offs(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PlacementSupervisors::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Placements::Table).to_owned())
            .await
    }

    // The tables and the carried-over placements commit together, or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// Creates a placement for every (enrolment, activity) already signed off by a person.
async fn carry_over_sign_offs(connection: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = connection.get_database_backend();
    let rows = connection
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT DISTINCT e.enrollment_id, e.activity_id, a.host_organization_id, e.actor \
             FROM progress_events e \
             JOIN course_activities a ON a.id = e.activity_id \
             JOIN people p ON p.id = e.actor \
             WHERE e.source = 'SUPERVISOR' AND a.host_organization_id IS NOT NULL \
             ORDER BY e.enrollment_id, e.activity_id, e.actor",
        ))
        .await?;
    let now = chrono::Utc::now();
    let mut current: Option<(String, String, String)> = None;
    for row in rows {
        let enrollment_id: String = row.try_get("", "enrollment_id")?;
        let activity_id: String = row.try_get("", "activity_id")?;
        let host: String = row.try_get("", "host_organization_id")?;
        let actor: String = row.try_get("", "actor")?;
        let same = current.as_ref().is_some_and(|(_, enrollment, activity)| {
            *enrollment == enrollment_id && *activity == activity_id
        });
        if !same {
            let id = uuid::Uuid::now_v7().to_string();
            connection
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql(
                        backend,
                        "INSERT INTO placements (id, enrollment_id, activity_id, \
                         host_organization_id, revision, create_time, update_time) \
                         VALUES (?, ?, ?, ?, 1, ?, ?)",
                    ),
                    [
                        Value::from(id.clone()),
                        Value::from(enrollment_id.clone()),
                        Value::from(activity_id.clone()),
                        Value::from(host),
                        Value::from(now),
                        Value::from(now),
                    ],
                ))
                .await?;
            current = Some((id, enrollment_id, activity_id));
        }
        let Some((placement_id, _, _)) = &current else {
            continue;
        };
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql(
                    backend,
                    "INSERT INTO placement_supervisors (placement_id, person_id) VALUES (?, ?)",
                ),
                [Value::from(placement_id.clone()), Value::from(actor)],
            ))
            .await?;
    }
    Ok(())
}

/// Returns `text` with `?` placeholders numbered for PostgreSQL.
fn sql(backend: sea_orm_migration::sea_orm::DbBackend, text: &str) -> String {
    if backend != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return text.to_owned();
    }
    let mut numbered = String::with_capacity(text.len() + 8);
    let mut count = 0;
    for character in text.chars() {
        if character == '?' {
            count += 1;
            numbered.push_str(&format!("${count}"));
        } else {
            numbered.push(character);
        }
    }
    numbered
}
