//! sea-orm entities of programmes: programmes, phases, cohorts, enrolments.

/// Table `programmes`.
pub mod programmes {
    use sea_orm::entity::prelude::*;

    /// A row of `programmes`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "programmes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub code: String,
        pub title: String,
        pub description: String,
        pub sponsor_organization_id: String,
        pub partner_organization_ids: String,
        pub state: String,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `programme_phases`.
pub mod programme_phases {
    use sea_orm::entity::prelude::*;

    /// A row of `programme_phases`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "programme_phases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub programme_id: String,
        pub title: String,
        pub position: i32,
        pub course_version_ids: String,
        pub location: String,
        pub planned_duration_days: i32,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `cohorts`.
pub mod cohorts {
    use sea_orm::entity::prelude::*;

    /// A row of `cohorts`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cohorts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub programme_id: String,
        pub name: String,
        pub start_date: Option<String>,
        pub end_date: Option<String>,
        pub capacity: i32,
        pub state: String,
        pub enrolled_count: i32,
        pub waitlisted_count: i32,
        pub waitlist_enabled: bool,
        pub category_seats: String,
        pub eligible_organization_ids: String,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
        pub auto_advance: bool,
        pub enrollment_open_date: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `cohort_phase_windows`: when one phase of the programme runs for a cohort.
pub mod cohort_phase_windows {
    use sea_orm::entity::prelude::*;

    /// A row of `cohort_phase_windows`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cohort_phase_windows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub cohort_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub phase_id: String,
        pub position: i32,
        pub start_date: String,
        pub end_date: String,
        /// `start_date` at 00:00 UTC.
        pub opens_time: DateTimeUtc,
        /// The day after `end_date` at 00:00 UTC.
        pub closes_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `enrollments`.
pub mod enrollments {
    use sea_orm::entity::prelude::*;

    /// A row of `enrollments`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrollments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub cohort_id: String,
        pub programme_id: String,
        pub person_id: String,
        pub organization_id: String,
        pub sector: String,
        pub course_version_ids: String,
        pub state: String,
        pub enrolled_time: DateTimeUtc,
        pub completed_time: Option<DateTimeUtc>,
        pub withdrawn_time: Option<DateTimeUtc>,
        pub withdraw_reason: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `enrollment_reminders`.
pub mod enrollment_reminders {
    use sea_orm::entity::prelude::*;

    /// A row of `enrollment_reminders`: the `enrollment.due` event of one enrolment at one offset
    /// was published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrollment_reminders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub enrollment_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub days_before: i32,
        pub announced_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
