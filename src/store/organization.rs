//! Organisations: the tree as materialised paths, created, updated and moved in audited transactions.

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Statement, sea_query::Expr,
};

use super::entity::organizations;
use super::idempotency::{RequestKey, StoredAnswer};
use super::{Store, audit, db_error, is_unique_violation, lock_organization_tree};
use crate::auth::Scope;
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::organization::{
    NewOrganization, Organization, OrganizationKind, OrganizationPatch, check_move, child_path,
};
use crate::domain::page::Page;
use crate::error::{Error, Reason, Result};

const RESOURCE: &str = "organization";
/// Keys per `IN (...)` lookup.
const LOOKUP_BATCH: usize = 1000;

/// Filters of [`Store::list_organizations`].
#[derive(Debug, Clone, Default)]
pub struct OrganizationFilter {
    /// Only children of this organisation.
    pub parent_id: Option<String>,
    /// Only roots.
    pub roots_only: bool,
    /// Only this kind.
    pub kind: Option<OrganizationKind>,
    /// Only nodes whose path starts with this (a subtree).
    pub path_prefix: Option<String>,
}

pub(crate) fn from_model(model: organizations::Model) -> Result<Organization> {
    let kind = OrganizationKind::parse(&model.kind).ok_or_else(|| {
        Error::internal(format!(
            "stored organization kind {} is unknown",
            model.kind
        ))
    })?;
    Ok(Organization {
        id: model.id,
        name: model.name,
        kind,
        parent_id: model.parent_id,
        path: model.path,
        external_code: model.external_code,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn change_of(organization: &Organization) -> AuditChange {
    AuditChange::new(
        RESOURCE,
        &organization.id,
        &serde_json::json!({
            "name": organization.name,
            "kind": organization.kind.as_str(),
            "parent_id": organization.parent_id,
            "path": organization.path,
            "external_code": organization.external_code,
            "revision": organization.revision,
        }),
    )
}

fn external_code_taken(code: &str, existing_id: Option<String>) -> Error {
    Error::AlreadyExists {
        resource: RESOURCE,
        field: "external_code",
        value: code.to_owned(),
        existing_id,
    }
}

/// Loads an organisation inside a transaction, or NOT_FOUND.
pub(crate) async fn load(connection: &impl ConnectionTrait, id: &str) -> Result<Organization> {
    let model = organizations::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(RESOURCE, id))?;
    from_model(model)
}

async fn check_external_code_free(
    transaction: &DatabaseTransaction,
    code: &str,
    except_id: Option<&str>,
) -> Result<()> {
    let mut query =
        organizations::Entity::find().filter(organizations::Column::ExternalCode.eq(code));
    if let Some(id) = except_id {
        query = query.filter(organizations::Column::Id.ne(id));
    }
    if let Some(holder) = query.one(transaction).await.map_err(db_error)? {
        return Err(external_code_taken(code, Some(holder.id)));
    }
    Ok(())
}

impl Store {
    /// Creates an organisation; with a request key, a replay returns the organisation created first.
    pub async fn create_organization(
        &self,
        context: AuditContext,
        scope: Scope,
        new: NewOrganization,
        key: Option<RequestKey>,
    ) -> Result<Organization> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    lock_organization_tree(transaction).await?;
                    let parent = match &new.parent_id {
                        Some(parent_id) => Some(load(transaction, parent_id).await?),
                        None => None,
                    };
                    match &parent {
                        Some(parent) => {
                            scope.require_path(&parent.path, "the parent organization")?
                        }
                        None if scope != Scope::All => {
                            return Err(Error::permission_denied(
                                Reason::OutsideOrganizationScope,
                                "only admins and HR services may create root organizations",
                            ));
                        }
                        None => {}
                    }
                    if let Some(code) = &new.external_code {
                        check_external_code_free(transaction, code, None).await?;
                    }
                    let id = crate::domain::new_id();
                    let now = crate::domain::now();
                    let organization = Organization {
                        path: child_path(parent.as_ref().map(|p| p.path.as_str()), &id),
                        id,
                        name: new.name,
                        kind: new.kind,
                        parent_id: new.parent_id,
                        external_code: new.external_code,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    organizations::Entity::insert(organizations::ActiveModel {
                        id: Set(organization.id.clone()),
                        name: Set(organization.name.clone()),
                        kind: Set(organization.kind.as_str().to_owned()),
                        parent_id: Set(organization.parent_id.clone()),
                        path: Set(organization.path.clone()),
                        external_code: Set(organization.external_code.clone()),
                        revision: Set(organization.revision),
                        create_time: Set(now),
                        update_time: Set(now),
                    })
                    .exec(transaction)
                    .await
                    .map_err(|error| {
                        match (&organization.external_code, is_unique_violation(&error)) {
                            (Some(code), true) => external_code_taken(code, None),
                            _ => db_error(error),
                        }
                    })?;
                    audit::append(transaction, &context, vec![change_of(&organization)]).await?;
                    let answer = StoredAnswer {
                        resource_id: Some(organization.id.clone()),
                        response: None,
                    };
                    Ok((organization, answer))
                })
            },
            |answer| self.replayed_organization(answer),
        )
        .await
    }

    async fn replayed_organization(&self, answer: StoredAnswer) -> Result<Organization> {
        let id = answer
            .resource_id
            .ok_or_else(|| Error::internal("stored answer names no organization"))?;
        self.get_organization(&id).await
    }

    /// Returns the children of `parent_id`, or the roots when `None`.
    pub async fn child_organizations(&self, parent_id: Option<&str>) -> Result<Vec<Organization>> {
        let query = match parent_id {
            Some(parent_id) => {
                organizations::Entity::find().filter(organizations::Column::ParentId.eq(parent_id))
            }
            None => organizations::Entity::find().filter(organizations::Column::ParentId.is_null()),
        };
        let rows = query.all(self.connection()).await.map_err(db_error)?;
        rows.into_iter().map(from_model).collect()
    }

    /// Returns one organisation.
    pub async fn get_organization(&self, id: &str) -> Result<Organization> {
        load(self.connection(), id).await
    }

    /// Returns the organisations whose `external_code` is one of `codes` (in no particular
    /// order; codes that match nothing are simply absent).
    pub async fn organizations_by_external_code(
        &self,
        codes: &[String],
    ) -> Result<Vec<Organization>> {
        let mut found = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(LOOKUP_BATCH) {
            let rows = organizations::Entity::find()
                .filter(organizations::Column::ExternalCode.is_in(chunk.iter().cloned()))
                .all(self.connection())
                .await
                .map_err(db_error)?;
            for row in rows {
                found.push(from_model(row)?);
            }
        }
        Ok(found)
    }

    /// Lists organisations by id after the page's key.
    pub async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: &Page,
    ) -> Result<(Vec<Organization>, String)> {
        let mut query = organizations::Entity::find();
        if let Some(parent_id) = &filter.parent_id {
            query = query.filter(organizations::Column::ParentId.eq(parent_id.as_str()));
        }
        if filter.roots_only {
            query = query.filter(organizations::Column::ParentId.is_null());
        }
        if let Some(kind) = filter.kind {
            query = query.filter(organizations::Column::Kind.eq(kind.as_str()));
        }
        if let Some(prefix) = &filter.path_prefix {
            query = query.filter(sea_orm::sea_query::ExprTrait::like(
                Expr::col(organizations::Column::Path),
                super::like_prefix(prefix),
            ));
        }
        if let Some(after) = &page.after {
            query = query.filter(organizations::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(organizations::Column::Id)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let organizations = rows
            .into_iter()
            .map(from_model)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(organizations, |organization| organization.id.clone()))
    }

    /// Applies `patch` to an organisation; `expected_revision` (from the etag) must match when given.
    pub async fn update_organization(
        &self,
        context: AuditContext,
        scope: Scope,
        id: String,
        patch: OrganizationPatch,
        expected_revision: Option<i64>,
    ) -> Result<Organization> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut organization = load(transaction, &id).await?;
                scope.require_path(&organization.path, "this organization")?;
                if expected_revision.is_some_and(|revision| revision != organization.revision) {
                    return Err(Error::EtagMismatch {
                        resource: RESOURCE,
                        id,
                    });
                }
                if !patch.apply(&mut organization) {
                    return Ok(organization);
                }
                if let Some(Some(code)) = &patch.external_code {
                    check_external_code_free(transaction, code, Some(&id)).await?;
                }
                let previous_revision = organization.revision;
                organization.revision += 1;
                organization.update_time = crate::domain::now();
                let updated = organizations::Entity::update_many()
                    .col_expr(
                        organizations::Column::Name,
                        Expr::value(organization.name.clone()),
                    )
                    .col_expr(
                        organizations::Column::Kind,
                        Expr::value(organization.kind.as_str()),
                    )
                    .col_expr(
                        organizations::Column::ExternalCode,
                        Expr::value(organization.external_code.clone()),
                    )
                    .col_expr(
                        organizations::Column::Revision,
                        Expr::value(organization.revision),
                    )
                    .col_expr(
                        organizations::Column::UpdateTime,
                        Expr::value(organization.update_time),
                    )
                    .filter(organizations::Column::Id.eq(id.as_str()))
                    .filter(organizations::Column::Revision.eq(previous_revision))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                if updated.rows_affected == 0 {
                    return Err(Error::EtagMismatch {
                        resource: RESOURCE,
                        id,
                    });
                }
                audit::append(transaction, &context, vec![change_of(&organization)]).await?;
                Ok(organization)
            })
        })
        .await
    }

    /// Moves an organisation and its subtree under `new_parent_id` (or to the root).
    pub async fn move_organization(
        &self,
        context: AuditContext,
        scope: Scope,
        id: String,
        new_parent_id: Option<String>,
        expected_revision: Option<i64>,
    ) -> Result<Organization> {
        self.write(move |transaction| {
            Box::pin(async move {
                lock_organization_tree(transaction).await?;
                let mut organization = load(transaction, &id).await?;
                scope.require_path(&organization.path, "this organization")?;
                if expected_revision.is_some_and(|revision| revision != organization.revision) {
                    return Err(Error::EtagMismatch { resource: RESOURCE, id });
                }
                let new_parent = match &new_parent_id {
                    Some(parent_id) => Some(load(transaction, parent_id).await?),
                    None => None,
                };
                match &new_parent {
                    Some(parent) => scope.require_path(&parent.path, "the new parent organization")?,
                    None if scope != Scope::All => {
                        return Err(Error::permission_denied(
                            Reason::OutsideOrganizationScope,
                            "only admins and HR services may make an organization a root",
                        ));
                    }
                    None => {}
                }
                check_move(&organization, new_parent.as_ref().map(|parent| parent.path.as_str()))?;
                if organization.parent_id == new_parent_id {
                    return Ok(organization);
                }
                let old_path = organization.path.clone();
                let new_path = child_path(new_parent.as_ref().map(|parent| parent.path.as_str()), &id);
                let now = crate::domain::now();
                // Every node of the subtree (the moved one included) gets the new path prefix and a new
                // revision, since its ancestors, part of its representation, changed.
                // Learners' organisation paths change, and with them who may read their progress.
                super::progress_cache::touch_everything();
                let backend = transaction.get_database_backend();
                let sql = match backend {
                    sea_orm::DbBackend::Postgres => {
                        "UPDATE organizations SET path = $1 || substr(path, $2), revision = revision + 1, \
                         update_time = $3 WHERE path LIKE $4 ESCAPE '!'"
                    }
                    _ => {
                        "UPDATE organizations SET path = ? || substr(path, ?), revision = revision + 1, \
                         update_time = ? WHERE path LIKE ? ESCAPE '!'"
                    }
                };
                transaction
                    .execute_raw(Statement::from_sql_and_values(
                        backend,
                        sql,
                        [
                            new_path.clone().into(),
                            (old_path.len() as i32 + 1).into(),
                            now.into(),
                            format!("{}%", super::escape_like(&old_path)).into(),
                        ],
                    ))
                    .await
                    .map_err(db_error)?;
                organizations::Entity::update_many()
                    .col_expr(organizations::Column::ParentId, Expr::value(new_parent_id.clone()))
                    .filter(organizations::Column::Id.eq(id.as_str()))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                organization.parent_id = new_parent_id;
                organization.path = new_path;
                organization.revision += 1;
                organization.update_time = now;
                audit::append(transaction, &context, vec![change_of(&organization)]).await?;
                Ok(organization)
            })
        })
        .await
    }
}
