//! Reminders: one row per certificate and reminder offset (days before expiry) whose
//! `certificate.expiring` event was published, and one per enrolment and offset (days before its
//! cohort's end date) whose `enrollment.due` event was. The primary keys are what make each
//! reminder happen once, also with several replicas sweeping.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CertificateReminders {
    Table,
    CertificateId,
    DaysBefore,
    AnnouncedTime,
}

#[derive(DeriveIden)]
enum EnrollmentReminders {
    Table,
    EnrollmentId,
    DaysBefore,
    AnnouncedTime,
}

#[derive(DeriveIden)]
enum Enrollments {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Certificates {
    Table,
    Id,
    Status,
    ExpiresTime,
}

/// Finds the active certificates expiring within a window without scanning the others.
const INDEX: &str = "idx_certificates_status_expires";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CertificateReminders::Table)
                    .col(
                        ColumnDef::new(CertificateReminders::CertificateId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CertificateReminders::DaysBefore)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CertificateReminders::AnnouncedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(CertificateReminders::CertificateId)
                            .col(CertificateReminders::DaysBefore),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                CertificateReminders::Table,
                                CertificateReminders::CertificateId,
                            )
                            .to(Certificates::Table, Certificates::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EnrollmentReminders::Table)
                    .col(
                        ColumnDef::new(EnrollmentReminders::EnrollmentId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentReminders::DaysBefore)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EnrollmentReminders::AnnouncedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EnrollmentReminders::EnrollmentId)
                            .col(EnrollmentReminders::DaysBefore),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                EnrollmentReminders::Table,
                                EnrollmentReminders::EnrollmentId,
                            )
                            .to(Enrollments::Table, Enrollments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Certificates::Table)
                    .col(Certificates::Status)
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
            .drop_table(Table::drop().table(EnrollmentReminders::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CertificateReminders::Table).to_owned())
            .await
    }
}
