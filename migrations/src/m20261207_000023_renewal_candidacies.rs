//! Renewal candidacies: a candidacy may renew a certificate (`renews_certificate_id`), opened by
//! the server's renewal sweep before the certificate expires. The unique index is what makes the
//! sweep open one renewal candidacy per certificate, also with several replicas sweeping.
//! Existing candidacies renew nothing (NULL).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Candidacies {
    Table,
    RenewsCertificateId,
}

/// One renewal candidacy per certificate (NULLs, the candidacies renewing nothing, are distinct).
const INDEX: &str = "idx_candidacies_renews_certificate";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Candidacies::Table)
                    .add_column(
                        ColumnDef::new(Candidacies::RenewsCertificateId)
                            .string()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Candidacies::Table)
                    .col(Candidacies::RenewsCertificateId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(Candidacies::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Candidacies::Table)
                    .drop_column(Candidacies::RenewsCertificateId)
                    .to_owned(),
            )
            .await
    }
}
