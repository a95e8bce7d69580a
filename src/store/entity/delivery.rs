//! sea-orm entities of delivery: sessions, their trainers and attendance.

/// Table `training_sessions`.
pub mod training_sessions {
    use sea_orm::entity::prelude::*;

    /// A row of `training_sessions`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "training_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub cohort_id: String,
        pub module_id: String,
        pub course_version_id: String,
        pub start_time: DateTimeUtc,
        pub end_time: DateTimeUtc,
        pub location: String,
        pub lead_trainer_id: String,
        pub co_trainer_ids: String,
        pub state: String,
        pub cancel_reason: Option<String>,
        pub delivered_time: Option<DateTimeUtc>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `session_trainers`.
pub mod session_trainers {
    use sea_orm::entity::prelude::*;

    /// A row of `session_trainers`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_trainers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: String,
        pub role: String,
        pub start_time: DateTimeUtc,
        pub end_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `session_attendance`.
pub mod session_attendance {
    use sea_orm::entity::prelude::*;

    /// A row of `session_attendance`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_attendance")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: String,
        pub status: String,
        pub recorded_by: String,
        pub record_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
