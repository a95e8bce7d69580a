//! sea-orm entities of competencies: the framework, the tags and course completions.

/// Table `competencies`.
pub mod competencies {
    use sea_orm::entity::prelude::*;

    /// A row of `competencies`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "competencies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub code: String,
        pub name: String,
        pub description: String,
        pub area: String,
        /// JSON array of `{name, description}`, lowest level first.
        pub levels: String,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `competency_roles`.
pub mod competency_roles {
    use sea_orm::entity::prelude::*;

    /// A row of `competency_roles`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "competency_roles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub code: String,
        pub name: String,
        pub description: String,
        pub organization_id: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `competency_role_requirements`.
pub mod competency_role_requirements {
    use sea_orm::entity::prelude::*;

    /// A row of `competency_role_requirements`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "competency_role_requirements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub role_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub competency_id: String,
        pub level: i32,
        pub position: i32,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `competency_tags`.
pub mod competency_tags {
    use sea_orm::entity::prelude::*;

    /// A row of `competency_tags`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "competency_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub competency_id: String,
        pub level: i32,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `course_completions`: one row per enrolment and course version completed.
pub mod course_completions {
    use sea_orm::entity::prelude::*;

    /// A row of `course_completions`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "course_completions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub enrollment_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub course_version_id: String,
        pub course_id: String,
        pub person_id: String,
        pub completed_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
