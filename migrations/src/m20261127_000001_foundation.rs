//! Organisations, people, the audit chain and idempotency keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    Kind,
    ParentId,
    Path,
    ExternalCode,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum People {
    Table,
    Id,
    ExternalId,
    FullName,
    Email,
    OrganizationId,
    Sector,
    Status,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum AuditEntries {
    Table,
    Sequence,
    Id,
    Actor,
    Action,
    ResourceType,
    ResourceId,
    RequestId,
    Time,
    ChangeDigest,
    PreviousHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Sequence,
    Hash,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    RequestId,
    Method,
    RequestHash,
    ResourceId,
    Response,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(
                        ColumnDef::new(Organizations::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Organizations::Name).string().not_null())
                    .col(
                        ColumnDef::new(Organizations::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Organizations::ParentId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(Organizations::Path).text().not_null())
                    .col(
                        ColumnDef::new(Organizations::ExternalCode)
                            .string_len(64)
                            .null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Organizations::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Organizations::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Organizations::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Organizations::Table, Organizations::ParentId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_organizations_parent_id", Organizations::ParentId),
            ("idx_organizations_path", Organizations::Path),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Organizations::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(People::Table)
                    .col(
                        ColumnDef::new(People::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(People::ExternalId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(People::FullName).string().not_null())
                    .col(ColumnDef::new(People::Email).string().null())
                    .col(
                        ColumnDef::new(People::OrganizationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(People::Sector).string_len(16).not_null())
                    .col(ColumnDef::new(People::Status).string_len(16).not_null())
                    .col(ColumnDef::new(People::Revision).big_integer().not_null())
                    .col(
                        ColumnDef::new(People::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(People::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(People::Table, People::OrganizationId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_people_organization_id")
                    .table(People::Table)
                    .col(People::OrganizationId)
                    .col(People::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEntries::Table)
                    .col(
                        ColumnDef::new(AuditEntries::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditEntries::Id).string_len(36).not_null())
                    .col(ColumnDef::new(AuditEntries::Actor).string().not_null())
                    .col(ColumnDef::new(AuditEntries::Action).string().not_null())
                    .col(
                        ColumnDef::new(AuditEntries::ResourceType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEntries::ResourceId).string().not_null())
                    .col(ColumnDef::new(AuditEntries::RequestId).string().not_null())
                    .col(
                        ColumnDef::new(AuditEntries::Time)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEntries::ChangeDigest)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEntries::PreviousHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEntries::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_audit_entries_resource",
                vec![
                    AuditEntries::ResourceType,
                    AuditEntries::ResourceId,
                    AuditEntries::Sequence,
                ],
            ),
            (
                "idx_audit_entries_actor",
                vec![AuditEntries::Actor, AuditEntries::Sequence],
            ),
            ("idx_audit_entries_time", vec![AuditEntries::Time]),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEntries::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AuditHead::Table)
                    .col(
                        ColumnDef::new(AuditHead::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditHead::Sequence).big_integer().not_null())
                    .col(ColumnDef::new(AuditHead::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AuditHead::Table)
                    .columns([AuditHead::Id, AuditHead::Sequence, AuditHead::Hash])
                    .values_panic([1.into(), 0i64.into(), "".into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::Method).string().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::ResourceId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::Response).text().null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            AuditHead::Table.into_iden(),
            AuditEntries::Table.into_iden(),
            People::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
