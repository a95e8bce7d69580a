//! sea-orm entities of selection: calls, applications, panels and assignments (with their scores).

/// Table `selection_calls`.
pub mod selection_calls {
    use sea_orm::entity::prelude::*;

    /// A row of `selection_calls`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "selection_calls")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub cohort_id: String,
        pub programme_id: String,
        pub title: String,
        pub opens_time: DateTimeUtc,
        pub closes_time: DateTimeUtc,
        pub questions: String,
        pub rubric: String,
        pub seats: i32,
        pub nomination_only: bool,
        pub score_visibility: String,
        pub accepted_count: i32,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `selection_applications`.
pub mod selection_applications {
    use sea_orm::entity::prelude::*;

    /// A row of `selection_applications`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "selection_applications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub call_id: String,
        pub person_id: String,
        pub organization_path: String,
        pub answers: String,
        pub nominated_by: Option<String>,
        pub state: String,
        pub enrollment_id: Option<String>,
        pub submit_time: DateTimeUtc,
        pub decide_time: Option<DateTimeUtc>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `selection_panels`.
pub mod selection_panels {
    use sea_orm::entity::prelude::*;

    /// A row of `selection_panels`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "selection_panels")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub call_id: String,
        pub judge_person_ids: String,
        pub judges_per_application: i32,
        pub assignment_count: i32,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `selection_assignments`: an application assigned to a judge, and the judge's score.
pub mod selection_assignments {
    use sea_orm::entity::prelude::*;

    /// A row of `selection_assignments`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "selection_assignments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub panel_id: String,
        pub call_id: String,
        pub application_id: String,
        pub judge_person_id: String,
        pub scores: Option<String>,
        pub comment: Option<String>,
        pub score_time: Option<DateTimeUtc>,
        pub create_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
