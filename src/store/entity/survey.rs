//! Entities of surveys: learners' responses (the questions are a column of `course_activities`).

/// Table `survey_responses`.
pub mod survey_responses {
    use sea_orm::entity::prelude::*;

    /// A row of `survey_responses`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "survey_responses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub activity_id: String,
        pub course_version_id: String,
        pub enrollment_id: String,
        pub person_id: String,
        pub cohort_id: String,
        pub programme_id: String,
        /// JSON array of answers.
        #[sea_orm(column_type = "Text")]
        pub answers: String,
        pub actor: String,
        pub submit_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
