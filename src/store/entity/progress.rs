//! sea-orm entities of progress: the event log, derived state and the outbox.

/// Table `progress_events`.
pub mod progress_events {
    use sea_orm::entity::prelude::*;

    /// A row of `progress_events`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "progress_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub enrollment_id: String,
        pub activity_id: String,
        pub verb: String,
        pub score: Option<i32>,
        pub duration_seconds: i64,
        pub occurred_time: DateTimeUtc,
        pub source: String,
        pub evidence_uri: Option<String>,
        pub evidence_note: Option<String>,
        pub provenance_note: Option<String>,
        pub actor: String,
        pub payload_hash: String,
        pub recorded_time: DateTimeUtc,
        pub ack_activity_state: String,
        pub ack_percent_complete: f64,
        pub ack_enrollment_state: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `activity_progress`.
pub mod activity_progress {
    use sea_orm::entity::prelude::*;

    /// A row of `activity_progress`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "activity_progress")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub enrollment_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub activity_id: String,
        pub events: i64,
        pub best_score: Option<i32>,
        pub attempts: i32,
        pub time_spent_seconds: i64,
        pub completed_time: Option<DateTimeUtc>,
        pub last_event_time: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `enrollment_progress`.
pub mod enrollment_progress {
    use sea_orm::entity::prelude::*;

    /// A row of `enrollment_progress`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrollment_progress")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub enrollment_id: String,
        pub percent_complete: f64,
        pub event_count: i64,
        pub last_event_time: Option<DateTimeUtc>,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `outbox_events`: domain events written with the change they describe.
pub mod outbox_events {
    use sea_orm::entity::prelude::*;

    /// A row of `outbox_events`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub id: String,
        pub event_type: String,
        pub subject_id: String,
        pub person_id: Option<String>,
        pub organization_path: Option<String>,
        pub payload: String,
        pub create_time: DateTimeUtc,
        pub person_external_id: Option<String>,
        pub organization_external_code: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `outbox_head`: the single row holding the last assigned outbox sequence.
pub mod outbox_head {
    use sea_orm::entity::prelude::*;

    /// The row of `outbox_head`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_head")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub sequence: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `placements`: the host of an enrolment's attachment or field visit.
pub mod placements {
    use sea_orm::entity::prelude::*;

    /// A row of `placements`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "placements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub enrollment_id: String,
        pub activity_id: String,
        pub host_organization_id: Option<String>,
        pub host_name: Option<String>,
        pub host_country_code: Option<String>,
        pub host_address: Option<String>,
        pub host_external_code: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `placement_supervisors`: who may sign a placement's activity off.
pub mod placement_supervisors {
    use sea_orm::entity::prelude::*;

    /// A row of `placement_supervisors`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "placement_supervisors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub placement_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
