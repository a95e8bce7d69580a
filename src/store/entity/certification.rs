//! sea-orm entities of certification: tracks, candidacies, supervised deliveries, certificates and the cascade.

/// Table `certification_tracks`.
pub mod certification_tracks {
    use sea_orm::entity::prelude::*;

    /// A row of `certification_tracks`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certification_tracks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub code: String,
        pub title: String,
        pub level: String,
        pub qualifies_course_ids: String,
        pub qualifies_module_ids: String,
        pub trainer_course_version_ids: String,
        pub min_assessment_score: i32,
        pub supervised_deliveries_required: i32,
        pub assessor_approval_required: bool,
        pub validity_months: i32,
        pub scope: String,
        pub issuer_organization_id: String,
        pub candidacy_days: i32,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `certification_track_assessors`: who assesses which track.
pub mod certification_track_assessors {
    use sea_orm::entity::prelude::*;

    /// A row of `certification_track_assessors`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certification_track_assessors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub track_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: String,
        pub create_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `candidacies`.
pub mod candidacies {
    use sea_orm::entity::prelude::*;

    /// A row of `candidacies`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "candidacies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub track_id: String,
        pub person_id: String,
        pub state: String,
        pub cycle: i32,
        pub deadline_time: DateTimeUtc,
        pub assessment_score: Option<i32>,
        pub assessor_approved: bool,
        pub certificate_id: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub renews_certificate_id: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `candidacy_history`.
pub mod candidacy_history {
    use sea_orm::entity::prelude::*;

    /// A row of `candidacy_history`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "candidacy_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub candidacy_id: String,
        pub from_state: String,
        pub to_state: String,
        pub reason: String,
        pub actor: String,
        pub time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `supervised_deliveries`.
pub mod supervised_deliveries {
    use sea_orm::entity::prelude::*;

    /// A row of `supervised_deliveries`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "supervised_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub candidate_id: String,
        pub candidacy_id: String,
        pub supervisor_id: String,
        pub outcome: String,
        pub notes: String,
        pub record_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `certificates`.
pub mod certificates {
    use sea_orm::entity::prelude::*;

    /// A row of `certificates`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub verification_code: String,
        pub person_id: String,
        pub track_id: String,
        pub candidacy_id: String,
        pub cycle: i32,
        pub issued_time: DateTimeUtc,
        pub expires_time: DateTimeUtc,
        pub status: String,
        pub status_reason: String,
        pub issuer_organization_id: String,
        pub status_list_index: i32,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        /// When its `certificate.expired` event was published (NULL until then; added by the
        /// certificate expiry migration).
        pub expiry_announced_time: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `certificate_reminders`.
pub mod certificate_reminders {
    use sea_orm::entity::prelude::*;

    /// A row of `certificate_reminders`: the `certificate.expiring` event of one certificate at
    /// one offset was published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificate_reminders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub certificate_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub days_before: i32,
        pub announced_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `cascade_edges`.
pub mod cascade_edges {
    use sea_orm::entity::prelude::*;

    /// A row of `cascade_edges`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cascade_edges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub trainer_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub trainee_id: String,
        pub kind: String,
        pub source_id: String,
        pub create_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `cascade_lineage`.
pub mod cascade_lineage {
    use sea_orm::entity::prelude::*;

    /// A row of `cascade_lineage`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cascade_lineage")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub ancestor_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub descendant_id: String,
        pub depth: i32,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
