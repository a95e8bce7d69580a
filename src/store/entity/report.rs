//! sea-orm entities of report counters.

/// Table `report_counters`: enrolments per (programme, cohort, organisation, sector, state).
pub mod report_counters {
    use sea_orm::entity::prelude::*;

    /// A row of `report_counters`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "report_counters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub programme_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sector: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: String,
        pub count: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `report_durations`: completed enrolments per whole days from enrolment to completion.
pub mod report_durations {
    use sea_orm::entity::prelude::*;

    /// A row of `report_durations`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "report_durations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub programme_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub days: i32,
        pub count: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `report_course_completions`: enrolments that completed each pinned course version.
pub mod report_course_completions {
    use sea_orm::entity::prelude::*;

    /// A row of `report_course_completions`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "report_course_completions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub programme_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub course_version_id: String,
        pub count: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `report_course_counters`: per pinned course version, enrolments per (programme, cohort,
/// organisation, sector) and where they stand on that course (see `domain::report::course_standing`).
pub mod report_course_counters {
    use sea_orm::entity::prelude::*;

    /// A row of `report_course_counters`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "report_course_counters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub course_version_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub programme_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sector: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: String,
        pub count: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `report_course_durations`: enrolments that completed a course version, per whole days
/// from enrolment to the course's completion.
pub mod report_course_durations {
    use sea_orm::entity::prelude::*;

    /// A row of `report_course_durations`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "report_course_durations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub course_version_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub programme_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub days: i32,
        pub count: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
