//! sea-orm entities: one module per table. Only the store sees these types.

// Columns mirror the migration one to one; the derive macros also generate undocumented items.
#![allow(missing_docs)]

pub mod catalogue;
pub mod category;
pub mod certification;
pub mod competency;
pub mod delivery;
pub mod programme;
pub mod progress;
pub mod report;
pub mod selection;
pub mod survey;

/// Table `organizations`.
pub mod organizations {
    use sea_orm::entity::prelude::*;

    /// A row of `organizations`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub kind: String,
        pub parent_id: Option<String>,
        pub path: String,
        pub external_code: Option<String>,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `people`.
pub mod people {
    use sea_orm::entity::prelude::*;

    /// A row of `people`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "people")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub external_id: String,
        pub full_name: String,
        pub email: Option<String>,
        pub organization_id: String,
        pub category: String,
        pub status: String,
        pub revision: i64,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `audit_entries`.
pub mod audit_entries {
    use sea_orm::entity::prelude::*;

    /// A row of `audit_entries`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub id: String,
        pub actor: String,
        pub action: String,
        pub resource_type: String,
        pub resource_id: String,
        pub request_id: String,
        pub time: DateTimeUtc,
        pub change_digest: String,
        pub previous_hash: String,
        pub hash: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `audit_head`: the single row holding the chain's last sequence and hash.
pub mod audit_head {
    use sea_orm::entity::prelude::*;

    /// The row of `audit_head`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_head")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub sequence: i64,
        pub hash: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Table `idempotency_keys`.
pub mod idempotency_keys {
    use sea_orm::entity::prelude::*;

    /// A row of `idempotency_keys`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub method: String,
        pub request_hash: String,
        pub resource_id: Option<String>,
        pub response: Option<String>,
        pub create_time: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
