//! sea-orm entities of the catalogue: courses, versions, modules, activities.

/// Table `courses`.
pub mod courses {
    use sea_orm::entity::prelude::*;

    /// A row of `courses`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "courses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub code: String,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub description: String,
        pub provider_organization_id: String,
        pub state: String,
        pub latest_version: i32,
        pub latest_version_id: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `course_versions`.
pub mod course_versions {
    use sea_orm::entity::prelude::*;

    /// A row of `course_versions`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "course_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub course_id: String,
        pub version: i32,
        pub state: String,
        /// JSON of `domain::course::CompletionRule`, set at publication.
        #[sea_orm(column_type = "Text", nullable)]
        pub completion_rule: Option<String>,
        pub copied_from_version_id: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub publish_time: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `course_modules`.
pub mod course_modules {
    use sea_orm::entity::prelude::*;

    /// A row of `course_modules`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "course_modules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub course_version_id: String,
        pub title: String,
        pub position: i32,
        pub required: bool,
        /// JSON array of module ids.
        #[sea_orm(column_type = "Text")]
        pub prerequisite_module_ids: String,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `course_activities`.
pub mod course_activities {
    use sea_orm::entity::prelude::*;

    /// A row of `course_activities`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "course_activities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub course_version_id: String,
        pub module_id: String,
        pub title: String,
        pub kind: String,
        pub position: i32,
        pub required: bool,
        pub delivery_mode: String,
        pub expected_minutes: i32,
        pub pass_score: Option<i32>,
        pub host_organization_id: Option<String>,
        /// JSON array of survey questions (SURVEY activities only; added by the surveys migration).
        #[sea_orm(column_type = "Text", nullable)]
        pub survey_questions: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
