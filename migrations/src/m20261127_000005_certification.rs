//! Train-the-trainer: sessions, certification tracks, candidacies, certificates and the cascade lineage.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Column types used by this migration.
#[derive(Clone, Copy)]
enum Kind {
    /// A UUID string.
    Id,
    /// A short string of at most this many characters.
    Short(u32),
    /// Unbounded text.
    Text,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Big,
    /// Boolean.
    Bool,
    /// Timestamp with time zone.
    Time,
}

/// One column: name, type, nullable.
type Column = (&'static str, Kind, bool);

const N: bool = true;
const R: bool = false;

fn column((name, kind, nullable): Column) -> ColumnDef {
    let mut definition = ColumnDef::new(Alias::new(name));
    match kind {
        Kind::Id => definition.string_len(36),
        Kind::Short(length) => definition.string_len(length),
        Kind::Text => definition.text(),
        Kind::Int => definition.integer(),
        Kind::Big => definition.big_integer(),
        Kind::Bool => definition.boolean(),
        Kind::Time => definition.timestamp_with_time_zone(),
    };
    if nullable {
        definition.null();
    } else {
        definition.not_null();
    }
    definition
}

/// Every table: name, columns, primary key columns.
const TABLES: &[(&str, &[Column], &[&str])] = &[
    (
        "training_sessions",
        &[
            ("id", Kind::Id, R),
            ("cohort_id", Kind::Id, R),
            ("module_id", Kind::Id, R),
            ("course_version_id", Kind::Id, R),
            ("start_time", Kind::Time, R),
            ("end_time", Kind::Time, R),
            ("location", Kind::Short(200), R),
            ("lead_trainer_id", Kind::Id, R),
            ("co_trainer_ids", Kind::Text, R),
            ("state", Kind::Short(16), R),
            ("cancel_reason", Kind::Text, N),
            ("delivered_time", Kind::Time, N),
            ("revision", Kind::Big, R),
            ("create_time", Kind::Time, R),
            ("update_time", Kind::Time, R),
        ],
        &["id"],
    ),
    (
        "session_trainers",
        &[
            ("session_id", Kind::Id, R),
            ("person_id", Kind::Id, R),
            ("role", Kind::Short(8), R),
            ("start_time", Kind::Time, R),
            ("end_time", Kind::Time, R),
        ],
        &["session_id", "person_id"],
    ),
    (
        "session_attendance",
        &[
            ("session_id", Kind::Id, R),
            ("person_id", Kind::Id, R),
            ("status", Kind::Short(16), R),
            ("recorded_by", Kind::Short(200), R),
            ("record_time", Kind::Time, R),
        ],
        &["session_id", "person_id"],
    ),
    (
        "certification_tracks",
        &[
            ("id", Kind::Id, R),
            ("code", Kind::Short(32), R),
            ("title", Kind::Short(200), R),
            ("level", Kind::Short(16), R),
            ("qualifies_course_ids", Kind::Text, R),
            ("qualifies_module_ids", Kind::Text, R),
            ("trainer_course_version_ids", Kind::Text, R),
            ("min_assessment_score", Kind::Int, R),
            ("supervised_deliveries_required", Kind::Int, R),
            ("assessor_approval_required", Kind::Bool, R),
            ("validity_months", Kind::Int, R),
            ("scope", Kind::Short(32), R),
            ("issuer_organization_id", Kind::Id, R),
            ("candidacy_days", Kind::Int, R),
            ("revision", Kind::Big, R),
            ("create_time", Kind::Time, R),
            ("update_time", Kind::Time, R),
        ],
        &["id"],
    ),
    (
        "candidacies",
        &[
            ("id", Kind::Id, R),
            ("track_id", Kind::Id, R),
            ("person_id", Kind::Id, R),
            ("state", Kind::Short(32), R),
            ("cycle", Kind::Int, R),
            ("deadline_time", Kind::Time, R),
            ("assessment_score", Kind::Int, N),
            ("assessor_approved", Kind::Bool, R),
            ("certificate_id", Kind::Id, N),
            ("revision", Kind::Big, R),
            ("create_time", Kind::Time, R),
            ("update_time", Kind::Time, R),
        ],
        &["id"],
    ),
    (
        "candidacy_history",
        &[
            ("id", Kind::Id, R),
            ("candidacy_id", Kind::Id, R),
            ("from_state", Kind::Short(32), R),
            ("to_state", Kind::Short(32), R),
            ("reason", Kind::Text, R),
            ("actor", Kind::Short(200), R),
            ("time", Kind::Time, R),
        ],
        &["id"],
    ),
    (
        "supervised_deliveries",
        &[
            ("session_id", Kind::Id, R),
            ("candidate_id", Kind::Id, R),
            ("candidacy_id", Kind::Id, R),
            ("supervisor_id", Kind::Id, R),
            ("outcome", Kind::Short(32), R),
            ("notes", Kind::Text, R),
            ("record_time", Kind::Time, R),
        ],
        &["session_id", "candidate_id"],
    ),
    (
        "certificates",
        &[
            ("id", Kind::Id, R),
            ("verification_code", Kind::Short(16), R),
            ("person_id", Kind::Id, R),
            ("track_id", Kind::Id, R),
            ("candidacy_id", Kind::Id, R),
            ("cycle", Kind::Int, R),
            ("issued_time", Kind::Time, R),
            ("expires_time", Kind::Time, R),
            ("status", Kind::Short(16), R),
            ("status_reason", Kind::Text, R),
            ("issuer_organization_id", Kind::Id, R),
            ("status_list_index", Kind::Int, R),
            ("revision", Kind::Big, R),
            ("create_time", Kind::Time, R),
            ("update_time", Kind::Time, R),
        ],
        &["id"],
    ),
    (
        "cascade_edges",
        &[
            ("trainer_id", Kind::Id, R),
            ("trainee_id", Kind::Id, R),
            ("kind", Kind::Short(16), R),
            ("source_id", Kind::Id, R),
            ("create_time", Kind::Time, R),
        ],
        &["trainer_id", "trainee_id"],
    ),
    (
        "cascade_lineage",
        &[
            ("ancestor_id", Kind::Id, R),
            ("descendant_id", Kind::Id, R),
            ("depth", Kind::Int, R),
        ],
        &["ancestor_id", "descendant_id"],
    ),
];

/// Secondary indexes: name, table, columns, unique.
const INDEXES: &[(&str, &str, &[&str], bool)] = &[
    (
        "idx_training_sessions_cohort",
        "training_sessions",
        &["cohort_id", "start_time", "id"],
        false,
    ),
    (
        "idx_training_sessions_start",
        "training_sessions",
        &["start_time", "id"],
        false,
    ),
    (
        "idx_session_trainers_person",
        "session_trainers",
        &["person_id", "start_time"],
        false,
    ),
    (
        "idx_certification_tracks_code",
        "certification_tracks",
        &["code"],
        true,
    ),
    (
        "idx_candidacies_person",
        "candidacies",
        &["person_id", "track_id"],
        false,
    ),
    (
        "idx_candidacies_track",
        "candidacies",
        &["track_id", "id"],
        false,
    ),
    (
        "idx_candidacy_history_candidacy",
        "candidacy_history",
        &["candidacy_id", "time"],
        false,
    ),
    (
        "idx_supervised_deliveries_candidacy",
        "supervised_deliveries",
        &["candidacy_id"],
        false,
    ),
    (
        "idx_certificates_code",
        "certificates",
        &["verification_code"],
        true,
    ),
    (
        "idx_certificates_cycle",
        "certificates",
        &["candidacy_id", "cycle"],
        true,
    ),
    (
        "idx_certificates_status_index",
        "certificates",
        &["issuer_organization_id", "status_list_index"],
        true,
    ),
    (
        "idx_certificates_person",
        "certificates",
        &["person_id", "status"],
        false,
    ),
    (
        "idx_certificates_track",
        "certificates",
        &["track_id", "id"],
        false,
    ),
    (
        "idx_cascade_edges_trainee",
        "cascade_edges",
        &["trainee_id"],
        false,
    ),
    (
        "idx_cascade_lineage_depth",
        "cascade_lineage",
        &["ancestor_id", "depth", "descendant_id"],
        false,
    ),
    (
        "idx_cascade_lineage_descendant",
        "cascade_lineage",
        &["descendant_id", "depth"],
        false,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, columns, primary_key) in TABLES {
            let mut create = Table::create();
            create.table(Alias::new(*table));
            for definition in *columns {
                create.col(column(*definition));
            }
            let mut key = Index::create();
            for name in *primary_key {
                key.col(Alias::new(*name));
            }
            create.primary_key(&mut key);
            manager.create_table(create.to_owned()).await?;
        }
        for (name, table, columns, unique) in INDEXES {
            let mut index = Index::create();
            index.name(*name).table(Alias::new(*table));
            for column_name in *columns {
                index.col(Alias::new(*column_name));
            }
            if *unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, _, _) in TABLES.iter().rev() {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(*table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
