//! Competencies: the framework (competencies, roles and their requirements) and the tags, each
//! change audited in its transaction; course completions kept by the progress write path; and the
//! reads that derive profiles and holders from completions and certificates.
//!
//! Nothing is materialised per person and competency: a holder is found from the few targets
//! tagged with the competency, through indexed completions (`course_completions` by course,
//! `activity_progress` by activity) and certificates (by track, ACTIVE and unexpired at the time of
//! the read), so a certificate suspended, revoked or expired stops counting at once, a tag added
//! later counts earlier completions, and no other write path needs to know about competencies.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Statement, Value,
    sea_query::OnConflict,
};

use super::entity::catalogue::{course_activities, course_versions, courses};
use super::entity::certification::{certificates, certification_tracks};
use super::entity::competency::{
    competencies, competency_role_requirements, competency_roles, competency_tags,
    course_completions,
};
use super::entity::programme::enrollments;
use super::entity::progress::activity_progress;
use super::entity::{organizations, people};
use super::idempotency::{RequestKey, StoredAnswer};
use super::programme::for_update;
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::certification::CertificateStatus;
use crate::domain::competency::{
    Competency, CompetencyArea, CompetencyPatch, Evidence, EvidenceKind, Holder, Level,
    NewCompetency, NewRole, Requirement, Role, RolePatch, Tag, TargetKind, TargetTag,
    check_levels_exist, level_in_use_above,
};
use crate::domain::page::Page;
use crate::domain::programme::Enrollment;
use crate::error::{Error, Reason, Result};

/// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut numbered = String::with_capacity(sql.len() + 8);
        let mut index = 0;
        for character in sql.chars() {
            if character == '?' {
                index += 1;
                numbered.push_str(&format!("${index}"));
            } else {
                numbered.push(character);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

fn competency_from(model: competencies::Model) -> Result<Competency> {
    let levels: Vec<Level> = serde_json::from_str(&model.levels).map_err(Error::internal)?;
    Ok(Competency {
        area: CompetencyArea::parse(&model.area),
        id: model.id,
        code: model.code,
        name: model.name,
        description: model.description,
        levels,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn competency_change(competency: &Competency) -> AuditChange {
    AuditChange::new(
        "competency",
        &competency.id,
        &serde_json::json!({
            "code": competency.code, "name": competency.name,
            "description": competency.description,
            "area": competency.area.map(CompetencyArea::as_str),
            "levels": competency.levels, "revision": competency.revision,
        }),
    )
}

fn role_change(role: &Role) -> AuditChange {
    let requirements: Vec<serde_json::Value> = role
        .requirements
        .iter()
        .map(|requirement| {
            serde_json::json!({"competency_id": requirement.competency_id, "level": requirement.level})
        })
        .collect();
    AuditChange::new(
        "competency_role",
        &role.id,
        &serde_json::json!({
            "code": role.code, "name": role.name, "description": role.description,
            "organization_id": role.organization_id, "requirements": requirements,
            "revision": role.revision,
        }),
    )
}

fn competency_active(competency: &Competency) -> Result<competencies::ActiveModel> {
    Ok(competencies::ActiveModel {
        id: Set(competency.id.clone()),
        code: Set(competency.code.clone()),
        name: Set(competency.name.clone()),
        description: Set(competency.description.clone()),
        area: Set(competency
            .area
            .map(CompetencyArea::as_str)
            .unwrap_or_default()
            .to_owned()),
        levels: Set(serde_json::to_string(&competency.levels).map_err(Error::internal)?),
        revision: Set(competency.revision),
        create_time: Set(competency.create_time),
        update_time: Set(competency.update_time),
    })
}

/// Loads the competencies of `ids` that exist.
async fn competencies_of(
    connection: &impl ConnectionTrait,
    ids: &[String],
) -> Result<HashMap<String, Competency>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        for model in competencies::Entity::find()
            .filter(competencies::Column::Id.is_in(chunk.iter().cloned()))
            .all(connection)
            .await
            .map_err(db_error)?
        {
            let competency = competency_from(model)?;
            found.insert(competency.id.clone(), competency);
        }
    }
    Ok(found)
}

/// Fails with INVALID_ARGUMENT naming `field[i]` when a pair names an unknown competency or a
/// level above its highest.
async fn require_levels(
    connection: &impl ConnectionTrait,
    field: &str,
    pairs: &[(String, i32)],
) -> Result<()> {
    let ids: Vec<String> = pairs.iter().map(|(id, _)| id.clone()).collect();
    let known = competencies_of(connection, &ids).await?;
    check_levels_exist(field, pairs, &known)
}

async fn requirements_of(
    connection: &impl ConnectionTrait,
    role_ids: &[String],
) -> Result<HashMap<String, Vec<Requirement>>> {
    let mut found: HashMap<String, Vec<Requirement>> = HashMap::new();
    for chunk in role_ids.chunks(500) {
        for row in competency_role_requirements::Entity::find()
            .filter(competency_role_requirements::Column::RoleId.is_in(chunk.iter().cloned()))
            .order_by_asc(competency_role_requirements::Column::Position)
            .all(connection)
            .await
            .map_err(db_error)?
        {
            found.entry(row.role_id).or_default().push(Requirement {
                competency_id: row.competency_id,
                level: row.level,
            });
        }
    }
    Ok(found)
}

async fn roles_from(
    connection: &impl ConnectionTrait,
    models: Vec<competency_roles::Model>,
) -> Result<Vec<Role>> {
    let ids: Vec<String> = models.iter().map(|model| model.id.clone()).collect();
    let mut requirements = requirements_of(connection, &ids).await?;
    Ok(models
        .into_iter()
        .map(|model| Role {
            requirements: requirements.remove(&model.id).unwrap_or_default(),
            id: model.id,
            code: model.code,
            name: model.name,
            description: model.description,
            organization_id: model.organization_id,
            revision: model.revision,
            create_time: model.create_time,
            update_time: model.update_time,
        })
        .collect())
}

async fn write_requirements(
    transaction: &DatabaseTransaction,
    role_id: &str,
    requirements: &[Requirement],
) -> Result<()> {
    competency_role_requirements::Entity::delete_many()
        .filter(competency_role_requirements::Column::RoleId.eq(role_id))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    if requirements.is_empty() {
        return Ok(());
    }
    competency_role_requirements::Entity::insert_many(requirements.iter().enumerate().map(
        |(position, requirement)| competency_role_requirements::ActiveModel {
            role_id: Set(role_id.to_owned()),
            competency_id: Set(requirement.competency_id.clone()),
            level: Set(requirement.level),
            position: Set(position as i32),
        },
    ))
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn require_organization(connection: &impl ConnectionTrait, id: Option<&str>) -> Result<()> {
    if let Some(id) = id {
        organizations::Entity::find_by_id(id.to_owned())
            .one(connection)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("organization", id))?;
    }
    Ok(())
}

/// Fails with NOT_FOUND unless the target exists.
async fn require_target(
    connection: &impl ConnectionTrait,
    kind: TargetKind,
    id: &str,
) -> Result<()> {
    let found = match kind {
        TargetKind::Course => courses::Entity::find_by_id(id.to_owned())
            .one(connection)
            .await
            .map_err(db_error)?
            .is_some(),
        TargetKind::Activity => course_activities::Entity::find_by_id(id.to_owned())
            .one(connection)
            .await
            .map_err(db_error)?
            .is_some(),
        TargetKind::CertificationTrack => certification_tracks::Entity::find_by_id(id.to_owned())
            .one(connection)
            .await
            .map_err(db_error)?
            .is_some(),
    };
    if found {
        Ok(())
    } else {
        let resource = match kind {
            TargetKind::Course => "course",
            TargetKind::Activity => "activity",
            TargetKind::CertificationTrack => "certification_track",
        };
        Err(Error::not_found(resource, id))
    }
}

async fn tags_of(
    connection: &impl ConnectionTrait,
    kind: TargetKind,
    id: &str,
) -> Result<Vec<Tag>> {
    Ok(competency_tags::Entity::find()
        .filter(competency_tags::Column::TargetKind.eq(kind.as_str()))
        .filter(competency_tags::Column::TargetId.eq(id))
        .order_by_asc(competency_tags::Column::CompetencyId)
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| Tag {
            competency_id: row.competency_id,
            level: row.level,
        })
        .collect())
}

/// Records the course versions completed by a progress transaction (the progress write path
/// calls this in its transaction, with the pairs whose course moved to complete); a completion
/// already recorded stays as it was.
pub(crate) async fn record_course_completions(
    transaction: &DatabaseTransaction,
    completed: &[(&Enrollment, String)],
) -> Result<()> {
    if completed.is_empty() {
        return Ok(());
    }
    let mut version_ids: Vec<String> = completed
        .iter()
        .map(|(_, version)| version.clone())
        .collect();
    version_ids.sort();
    version_ids.dedup();
    let mut course_of: HashMap<String, String> = HashMap::with_capacity(version_ids.len());
    for chunk in version_ids.chunks(500) {
        for version in course_versions::Entity::find()
            .filter(course_versions::Column::Id.is_in(chunk.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            course_of.insert(version.id, version.course_id);
        }
    }
    let now = crate::domain::now();
    let rows: Vec<course_completions::ActiveModel> = completed
        .iter()
        .filter_map(|(enrollment, version_id)| {
            let course_id = course_of.get(version_id)?;
            Some(course_completions::ActiveModel {
                enrollment_id: Set(enrollment.id.clone()),
                course_version_id: Set(version_id.clone()),
                course_id: Set(course_id.clone()),
                person_id: Set(enrollment.person_id.clone()),
                completed_time: Set(now),
            })
        })
        .collect();
    for chunk in rows.chunks(500) {
        course_completions::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    course_completions::Column::EnrollmentId,
                    course_completions::Column::CourseVersionId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(transaction)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Which holders a search returns.
#[derive(Debug, Clone)]
pub struct HolderFilter {
    /// The competency.
    pub competency_id: String,
    /// The lowest level.
    pub min_level: i32,
    /// Only people whose organisation's path starts with this (a subtree).
    pub organization_path_prefix: Option<String>,
}

impl Store {
    /// Creates a competency; with a request key, a replay returns the competency created first.
    pub async fn create_competency(
        &self,
        context: AuditContext,
        new: NewCompetency,
        key: Option<RequestKey>,
    ) -> Result<Competency> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let taken = |existing_id: Option<String>| Error::AlreadyExists {
                        resource: "competency",
                        field: "code",
                        value: new.code.clone(),
                        existing_id,
                    };
                    if let Some(existing) = competencies::Entity::find()
                        .filter(competencies::Column::Code.eq(new.code.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                    {
                        return Err(taken(Some(existing.id)));
                    }
                    let now = crate::domain::now();
                    let competency = Competency {
                        id: crate::domain::new_id(),
                        code: new.code.clone(),
                        name: new.name.clone(),
                        description: new.description.clone(),
                        area: new.area,
                        levels: new.levels.clone(),
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    competencies::Entity::insert(competency_active(&competency)?)
                        .exec(transaction)
                        .await
                        .map_err(|error| {
                            if is_unique_violation(&error) {
                                taken(None)
                            } else {
                                db_error(error)
                            }
                        })?;
                    audit::append(transaction, &context, vec![competency_change(&competency)])
                        .await?;
                    let answer = StoredAnswer::created(&competency.id);
                    Ok((competency, answer))
                })
            },
            |answer| async move { self.get_competency(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one competency.
    pub async fn get_competency(&self, id: &str) -> Result<Competency> {
        let model = competencies::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("competency", id))?;
        competency_from(model)
    }

    /// Returns the competencies of `ids` that exist.
    pub async fn competencies_by_id(&self, ids: &[String]) -> Result<HashMap<String, Competency>> {
        competencies_of(self.connection(), ids).await
    }

    /// Lists competencies by code, keyset-paginated.
    pub async fn list_competencies(
        &self,
        area: Option<CompetencyArea>,
        page: &Page,
    ) -> Result<(Vec<Competency>, String)> {
        let mut query = competencies::Entity::find();
        if let Some(area) = area {
            query = query.filter(competencies::Column::Area.eq(area.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(competencies::Column::Code.gt(after.as_str()));
        }
        let models = query
            .order_by_asc(competencies::Column::Code)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let (models, next) = page.finish(models, |model| model.code.clone());
        let competencies = models
            .into_iter()
            .map(competency_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((competencies, next))
    }

    /// Changes a competency; a stale `expected_revision` is ABORTED; removing a level a tag or
    /// role requirement uses is FAILED_PRECONDITION.
    pub async fn update_competency(
        &self,
        context: AuditContext,
        id: String,
        patch: CompetencyPatch,
        expected_revision: Option<i64>,
    ) -> Result<Competency> {
        self.write(move |transaction| {
            Box::pin(async move {
                let locked = for_update(competencies::Entity::find_by_id(id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("competency", &id))?;
                let mut competency = competency_from(locked)?;
                if expected_revision.is_some_and(|revision| revision != competency.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "competency",
                        id,
                    });
                }
                let before = competency.clone();
                if let Some(name) = patch.name {
                    competency.name = name;
                }
                if let Some(description) = patch.description {
                    competency.description = description;
                }
                if let Some(area) = patch.area {
                    competency.area = area;
                }
                if let Some(levels) = patch.levels {
                    competency.levels = levels;
                }
                if competency == before {
                    return Ok(competency);
                }
                if competency.max_level() < before.max_level() {
                    let mut used: Vec<i32> = competency_tags::Entity::find()
                        .filter(competency_tags::Column::CompetencyId.eq(id.as_str()))
                        .all(transaction)
                        .await
                        .map_err(db_error)?
                        .into_iter()
                        .map(|row| row.level)
                        .collect();
                    used.extend(
                        competency_role_requirements::Entity::find()
                            .filter(
                                competency_role_requirements::Column::CompetencyId.eq(id.as_str()),
                            )
                            .all(transaction)
                            .await
                            .map_err(db_error)?
                            .into_iter()
                            .map(|row| row.level),
                    );
                    if let Some(level) = level_in_use_above(&used, competency.max_level()) {
                        return Err(Error::precondition(
                            Reason::CompetencyLevelInUse,
                            format!("competency/{id}"),
                            format!(
                                "level {level} of competency {} is used by a tag or a role \
                                 requirement; lower those first",
                                competency.code
                            ),
                        )
                        .with("competency_id", id.clone())
                        .with("code", competency.code.clone())
                        .with("level", level.to_string()));
                    }
                }
                competency.revision += 1;
                competency.update_time = crate::domain::now();
                competencies::Entity::update(competency_active(&competency)?)
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                audit::append(transaction, &context, vec![competency_change(&competency)]).await?;
                Ok(competency)
            })
        })
        .await
    }

    /// Creates a role; with a request key, a replay returns the role created first.
    pub async fn create_role(
        &self,
        context: AuditContext,
        new: NewRole,
        key: Option<RequestKey>,
    ) -> Result<Role> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let pairs: Vec<(String, i32)> = new
                        .requirements
                        .iter()
                        .map(|requirement| (requirement.competency_id.clone(), requirement.level))
                        .collect();
                    require_levels(transaction, "role.requirements", &pairs).await?;
                    require_organization(transaction, new.organization_id.as_deref()).await?;
                    let taken = |existing_id: Option<String>| Error::AlreadyExists {
                        resource: "competency_role",
                        field: "code",
                        value: new.code.clone(),
                        existing_id,
                    };
                    if let Some(existing) = competency_roles::Entity::find()
                        .filter(competency_roles::Column::Code.eq(new.code.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                    {
                        return Err(taken(Some(existing.id)));
                    }
                    let now = crate::domain::now();
                    let role = Role {
                        id: crate::domain::new_id(),
                        code: new.code.clone(),
                        name: new.name.clone(),
                        description: new.description.clone(),
                        organization_id: new.organization_id.clone(),
                        requirements: new.requirements.clone(),
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    competency_roles::Entity::insert(competency_roles::ActiveModel {
                        id: Set(role.id.clone()),
                        code: Set(role.code.clone()),
                        name: Set(role.name.clone()),
                        description: Set(role.description.clone()),
                        organization_id: Set(role.organization_id.clone()),
                        revision: Set(1),
                        create_time: Set(now),
                        update_time: Set(now),
                    })
                    .exec(transaction)
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            taken(None)
                        } else {
                            db_error(error)
                        }
                    })?;
                    write_requirements(transaction, &role.id, &role.requirements).await?;
                    audit::append(transaction, &context, vec![role_change(&role)]).await?;
                    let answer = StoredAnswer::created(&role.id);
                    Ok((role, answer))
                })
            },
            |answer| async move { self.get_role(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one role.
    pub async fn get_role(&self, id: &str) -> Result<Role> {
        let model = competency_roles::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("competency_role", id))?;
        roles_from(self.connection(), vec![model])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("loaded role vanished"))
    }

    /// Lists roles by code, keyset-paginated.
    pub async fn list_roles(
        &self,
        organization_id: Option<String>,
        page: &Page,
    ) -> Result<(Vec<Role>, String)> {
        let mut query = competency_roles::Entity::find();
        if let Some(organization_id) = organization_id {
            query = query.filter(competency_roles::Column::OrganizationId.eq(organization_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(competency_roles::Column::Code.gt(after.as_str()));
        }
        let reader = self.reader();
        let models = query
            .order_by_asc(competency_roles::Column::Code)
            .limit(page.size + 1)
            .all(&reader)
            .await
            .map_err(db_error)?;
        let (models, next) = page.finish(models, |model| model.code.clone());
        Ok((roles_from(&reader, models).await?, next))
    }

    /// Changes a role; a stale `expected_revision` is ABORTED.
    pub async fn update_role(
        &self,
        context: AuditContext,
        id: String,
        patch: RolePatch,
        expected_revision: Option<i64>,
    ) -> Result<Role> {
        self.write(move |transaction| {
            Box::pin(async move {
                let locked = for_update(
                    competency_roles::Entity::find_by_id(id.clone()),
                    transaction,
                )
                .one(transaction)
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("competency_role", &id))?;
                let mut role = roles_from(transaction, vec![locked])
                    .await?
                    .pop()
                    .ok_or_else(|| Error::internal("loaded role vanished"))?;
                if expected_revision.is_some_and(|revision| revision != role.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "competency_role",
                        id,
                    });
                }
                let before = role.clone();
                if let Some(name) = patch.name {
                    role.name = name;
                }
                if let Some(description) = patch.description {
                    role.description = description;
                }
                if let Some(organization_id) = patch.organization_id {
                    require_organization(transaction, organization_id.as_deref()).await?;
                    role.organization_id = organization_id;
                }
                if let Some(requirements) = patch.requirements {
                    let pairs: Vec<(String, i32)> = requirements
                        .iter()
                        .map(|requirement| (requirement.competency_id.clone(), requirement.level))
                        .collect();
                    require_levels(transaction, "role.requirements", &pairs).await?;
                    role.requirements = requirements;
                }
                if role == before {
                    return Ok(role);
                }
                role.revision += 1;
                role.update_time = crate::domain::now();
                competency_roles::Entity::update(competency_roles::ActiveModel {
                    id: Set(role.id.clone()),
                    name: Set(role.name.clone()),
                    description: Set(role.description.clone()),
                    organization_id: Set(role.organization_id.clone()),
                    revision: Set(role.revision),
                    update_time: Set(role.update_time),
                    ..Default::default()
                })
                .exec(transaction)
                .await
                .map_err(db_error)?;
                if role.requirements != before.requirements {
                    write_requirements(transaction, &role.id, &role.requirements).await?;
                }
                audit::append(transaction, &context, vec![role_change(&role)]).await?;
                Ok(role)
            })
        })
        .await
    }

    /// Replaces the tags of a target; returns them by competency id.
    pub async fn set_competency_tags(
        &self,
        context: AuditContext,
        kind: TargetKind,
        target_id: String,
        tags: Vec<Tag>,
    ) -> Result<Vec<Tag>> {
        self.write(move |transaction| {
            Box::pin(async move {
                require_target(transaction, kind, &target_id).await?;
                let pairs: Vec<(String, i32)> = tags
                    .iter()
                    .map(|tag| (tag.competency_id.clone(), tag.level))
                    .collect();
                require_levels(transaction, "tags", &pairs).await?;
                competency_tags::Entity::delete_many()
                    .filter(competency_tags::Column::TargetKind.eq(kind.as_str()))
                    .filter(competency_tags::Column::TargetId.eq(target_id.as_str()))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                if !tags.is_empty() {
                    competency_tags::Entity::insert_many(tags.iter().map(|tag| {
                        competency_tags::ActiveModel {
                            target_kind: Set(kind.as_str().to_owned()),
                            target_id: Set(target_id.clone()),
                            competency_id: Set(tag.competency_id.clone()),
                            level: Set(tag.level),
                        }
                    }))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                }
                let stored = tags_of(transaction, kind, &target_id).await?;
                let listed: Vec<serde_json::Value> = stored
                    .iter()
                    .map(|tag| serde_json::json!({"competency_id": tag.competency_id, "level": tag.level}))
                    .collect();
                audit::append(
                    transaction,
                    &context,
                    vec![AuditChange::new(
                        "competency_tags",
                        &format!("{}/{target_id}", kind.as_str()),
                        &serde_json::json!({"target_kind": kind.as_str(), "target_id": target_id, "tags": listed}),
                    )],
                )
                .await?;
                Ok(stored)
            })
        })
        .await
    }

    /// Returns the tags of a target (NOT_FOUND when the target does not exist).
    pub async fn competency_tags(&self, kind: TargetKind, target_id: &str) -> Result<Vec<Tag>> {
        require_target(self.connection(), kind, target_id).await?;
        tags_of(self.connection(), kind, target_id).await
    }

    /// Returns, per `(competency, level)` asked, the targets conferring the competency at that
    /// level or above, highest level first.
    pub async fn competency_builders(
        &self,
        wanted: &[(String, i32)],
    ) -> Result<HashMap<String, Vec<TargetTag>>> {
        let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
        let mut found: HashMap<String, Vec<TargetTag>> = HashMap::new();
        for chunk in ids.chunks(500) {
            for row in competency_tags::Entity::find()
                .filter(competency_tags::Column::CompetencyId.is_in(chunk.iter().cloned()))
                .order_by_desc(competency_tags::Column::Level)
                .order_by_asc(competency_tags::Column::TargetKind)
                .order_by_asc(competency_tags::Column::TargetId)
                .all(self.connection())
                .await
                .map_err(db_error)?
            {
                let Some(kind) = TargetKind::parse(&row.target_kind) else {
                    continue;
                };
                let minimum = wanted
                    .iter()
                    .filter(|(id, _)| *id == row.competency_id)
                    .map(|(_, level)| *level)
                    .min()
                    .unwrap_or(1);
                if row.level < minimum {
                    continue;
                }
                found
                    .entry(row.competency_id.clone())
                    .or_default()
                    .push(TargetTag {
                        kind,
                        target_id: row.target_id,
                        competency_id: row.competency_id,
                        level: row.level,
                    });
            }
        }
        Ok(found)
    }

    /// Returns the path of a person's organisation (NOT_FOUND when the person does not exist).
    pub async fn person_organization_path(&self, person_id: &str) -> Result<String> {
        let person = people::Entity::find_by_id(person_id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("person", person_id))?;
        let organization = organizations::Entity::find_by_id(person.organization_id.clone())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("organization", &person.organization_id))?;
        Ok(organization.path)
    }

    /// Returns the ids of a person's enrolments.
    pub async fn enrollment_ids_of_person(&self, person_id: &str) -> Result<Vec<String>> {
        Ok(enrollments::Entity::find()
            .filter(enrollments::Column::PersonId.eq(person_id))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|enrollment| enrollment.id)
            .collect())
    }

    /// Returns every evidence of a person's competencies at `now`: completed courses and
    /// activities tagged with a competency, and ACTIVE certificates unexpired at `now` of tracks
    /// tagged with one. Each read is one table through an index on the person (or their
    /// enrolments), so the plan never depends on the database's statistics.
    pub async fn competency_evidence(
        &self,
        person_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Evidence>> {
        let reader = self.reader();
        let enrollment_ids: Vec<String> = enrollments::Entity::find()
            .filter(enrollments::Column::PersonId.eq(person_id))
            .all(&reader)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|enrollment| enrollment.id)
            .collect();
        let mut activities = Vec::new();
        for chunk in enrollment_ids.chunks(500) {
            activities.extend(
                activity_progress::Entity::find()
                    .filter(activity_progress::Column::EnrollmentId.is_in(chunk.iter().cloned()))
                    .filter(activity_progress::Column::CompletedTime.is_not_null())
                    .all(&reader)
                    .await
                    .map_err(db_error)?,
            );
        }
        let courses = course_completions::Entity::find()
            .filter(course_completions::Column::PersonId.eq(person_id))
            .all(&reader)
            .await
            .map_err(db_error)?;
        let certificates = certificates::Entity::find()
            .filter(certificates::Column::PersonId.eq(person_id))
            .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
            .filter(certificates::Column::ExpiresTime.gt(now))
            .all(&reader)
            .await
            .map_err(db_error)?;
        let mut targets: Vec<String> = activities
            .iter()
            .map(|row| row.activity_id.clone())
            .chain(courses.iter().map(|row| row.course_id.clone()))
            .chain(certificates.iter().map(|row| row.track_id.clone()))
            .collect();
        targets.sort();
        targets.dedup();
        let mut tags: HashMap<(String, String), Vec<(String, i32)>> = HashMap::new();
        for chunk in targets.chunks(500) {
            for row in competency_tags::Entity::find()
                .filter(competency_tags::Column::TargetId.is_in(chunk.iter().cloned()))
                .all(&reader)
                .await
                .map_err(db_error)?
            {
                tags.entry((row.target_kind, row.target_id))
                    .or_default()
                    .push((row.competency_id, row.level));
            }
        }
        let tags_of = |kind: TargetKind, id: &str| {
            tags.get(&(kind.as_str().to_owned(), id.to_owned()))
                .cloned()
                .unwrap_or_default()
        };
        let mut evidence = Vec::new();
        for row in courses {
            for (competency_id, level) in tags_of(TargetKind::Course, &row.course_id) {
                evidence.push(Evidence {
                    kind: EvidenceKind::CourseCompletion,
                    competency_id,
                    level,
                    target_id: row.course_id.clone(),
                    enrollment_id: Some(row.enrollment_id.clone()),
                    course_version_id: Some(row.course_version_id.clone()),
                    certificate_id: None,
                    achieved_time: row.completed_time,
                    expire_time: None,
                });
            }
        }
        for row in activities {
            let Some(completed_time) = row.completed_time else {
                continue;
            };
            for (competency_id, level) in tags_of(TargetKind::Activity, &row.activity_id) {
                evidence.push(Evidence {
                    kind: EvidenceKind::ActivityCompletion,
                    competency_id,
                    level,
                    target_id: row.activity_id.clone(),
                    enrollment_id: Some(row.enrollment_id.clone()),
                    course_version_id: None,
                    certificate_id: None,
                    achieved_time: completed_time,
                    expire_time: None,
                });
            }
        }
        for row in certificates {
            for (competency_id, level) in tags_of(TargetKind::CertificationTrack, &row.track_id) {
                evidence.push(Evidence {
                    kind: EvidenceKind::Certificate,
                    competency_id,
                    level,
                    target_id: row.track_id.clone(),
                    enrollment_id: None,
                    course_version_id: None,
                    certificate_id: Some(row.id.clone()),
                    achieved_time: row.issued_time,
                    expire_time: Some(row.expires_time),
                });
            }
        }
        Ok(evidence)
    }

    /// Lists the people holding a competency at a level or above at `now`, by person id,
    /// keyset-paginated.
    ///
    /// Two steps. First, from each kind of evidence, the first `size + 1` people after the page
    /// key who have some of it in the subtree: each is one query from the targets tagged with
    /// the competency through the completions' (or certificates') index, in person order, so a
    /// database can stop after the page; the union of these lists holds the page. Second, the
    /// levels and names of those people only.
    pub async fn search_competency_holders(
        &self,
        filter: &HolderFilter,
        page: &Page,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Holder>, String)> {
        let reader = self.reader();
        let backend = reader.get_database_backend();
        let mut levels: HashMap<(TargetKind, String), i32> = HashMap::new();
        for row in competency_tags::Entity::find()
            .filter(competency_tags::Column::CompetencyId.eq(filter.competency_id.as_str()))
            .filter(competency_tags::Column::Level.gte(filter.min_level))
            .all(&reader)
            .await
            .map_err(db_error)?
        {
            if let Some(kind) = TargetKind::parse(&row.target_kind) {
                levels.insert((kind, row.target_id), row.level);
            }
        }
        let targets = |kind: TargetKind| -> Vec<String> {
            let mut ids: Vec<String> = levels
                .keys()
                .filter(|(target_kind, _)| *target_kind == kind)
                .map(|(_, id)| id.clone())
                .collect();
            ids.sort();
            ids
        };
        let (courses, activities, tracks) = (
            targets(TargetKind::Course),
            targets(TargetKind::Activity),
            targets(TargetKind::CertificationTrack),
        );
        let limit = page.size as i64 + 1;
        let placeholders = |count: usize| vec!["?"; count].join(", ");
        let narrowing = |values: &mut Vec<Value>, column: &str| {
            let mut sql = String::new();
            if let Some(prefix) = &filter.organization_path_prefix {
                sql.push_str(" AND o.path LIKE ?");
                values.push(format!("{prefix}%").into());
            }
            if let Some(after) = &page.after {
                sql.push_str(&format!(" AND {column} > ?"));
                values.push(after.as_str().into());
            }
            sql
        };
        let mut branches: Vec<(String, Vec<Value>)> = Vec::new();
        if !courses.is_empty() {
            let mut values: Vec<Value> = courses.iter().map(|id| id.as_str().into()).collect();
            let narrow = narrowing(&mut values, "x.person_id");
            branches.push((
                format!(
                    "SELECT DISTINCT x.person_id AS person_id FROM course_completions x \
                     JOIN people p ON p.id = x.person_id \
                     JOIN organizations o ON o.id = p.organization_id \
                     WHERE x.course_id IN ({}){narrow} ORDER BY x.person_id LIMIT ?",
                    placeholders(courses.len())
                ),
                values,
            ));
        }
        if !tracks.is_empty() {
            let mut values: Vec<Value> = tracks.iter().map(|id| id.as_str().into()).collect();
            values.push(CertificateStatus::Active.as_str().into());
            values.push(now.into());
            let narrow = narrowing(&mut values, "x.person_id");
            branches.push((
                format!(
                    "SELECT DISTINCT x.person_id AS person_id FROM certificates x \
                     JOIN people p ON p.id = x.person_id \
                     JOIN organizations o ON o.id = p.organization_id \
                     WHERE x.track_id IN ({}) AND x.status = ? AND x.expires_time > ?{narrow} \
                     ORDER BY x.person_id LIMIT ?",
                    placeholders(tracks.len())
                ),
                values,
            ));
        }
        if !activities.is_empty() {
            let mut values: Vec<Value> = activities.iter().map(|id| id.as_str().into()).collect();
            let narrow = narrowing(&mut values, "e.person_id");
            branches.push((
                format!(
                    "SELECT DISTINCT e.person_id AS person_id FROM activity_progress ap \
                     JOIN enrollments e ON e.id = ap.enrollment_id \
                     JOIN people p ON p.id = e.person_id \
                     JOIN organizations o ON o.id = p.organization_id \
                     WHERE ap.activity_id IN ({}) AND ap.completed_time IS NOT NULL{narrow} \
                     ORDER BY e.person_id LIMIT ?",
                    placeholders(activities.len())
                ),
                values,
            ));
        }
        let mut person_ids: Vec<String> = Vec::new();
        for (sql, mut values) in branches {
            values.push(limit.into());
            for row in reader
                .query_all_raw(statement(backend, &sql, values))
                .await
                .map_err(db_error)?
            {
                person_ids.push(row.try_get("", "person_id").map_err(db_error)?);
            }
        }
        person_ids.sort();
        person_ids.dedup();
        person_ids.truncate(limit as usize);
        if person_ids.is_empty() {
            return Ok((Vec::new(), String::new()));
        }
        // The levels of the page's people: the highest tag of any evidence they hold.
        let mut held: HashMap<String, i32> = HashMap::new();
        let mut raise = |person_id: String, kind: TargetKind, target_id: &str| {
            if let Some(level) = levels.get(&(kind, target_id.to_owned())) {
                let entry = held.entry(person_id).or_insert(0);
                *entry = (*entry).max(*level);
            }
        };
        for chunk in person_ids.chunks(500) {
            if !courses.is_empty() {
                for row in course_completions::Entity::find()
                    .filter(course_completions::Column::PersonId.is_in(chunk.iter().cloned()))
                    .filter(course_completions::Column::CourseId.is_in(courses.iter().cloned()))
                    .all(&reader)
                    .await
                    .map_err(db_error)?
                {
                    raise(row.person_id, TargetKind::Course, &row.course_id);
                }
            }
            if !tracks.is_empty() {
                for row in certificates::Entity::find()
                    .filter(certificates::Column::PersonId.is_in(chunk.iter().cloned()))
                    .filter(certificates::Column::TrackId.is_in(tracks.iter().cloned()))
                    .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
                    .filter(certificates::Column::ExpiresTime.gt(now))
                    .all(&reader)
                    .await
                    .map_err(db_error)?
                {
                    raise(row.person_id, TargetKind::CertificationTrack, &row.track_id);
                }
            }
            if !activities.is_empty() {
                let enrollments_of: HashMap<String, String> = enrollments::Entity::find()
                    .filter(enrollments::Column::PersonId.is_in(chunk.iter().cloned()))
                    .all(&reader)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(|enrollment| (enrollment.id, enrollment.person_id))
                    .collect();
                let ids: Vec<String> = enrollments_of.keys().cloned().collect();
                for ids in ids.chunks(500) {
                    for row in activity_progress::Entity::find()
                        .filter(activity_progress::Column::EnrollmentId.is_in(ids.iter().cloned()))
                        .filter(
                            activity_progress::Column::ActivityId.is_in(activities.iter().cloned()),
                        )
                        .filter(activity_progress::Column::CompletedTime.is_not_null())
                        .all(&reader)
                        .await
                        .map_err(db_error)?
                    {
                        if let Some(person_id) = enrollments_of.get(&row.enrollment_id) {
                            raise(person_id.clone(), TargetKind::Activity, &row.activity_id);
                        }
                    }
                }
            }
        }
        let mut found: HashMap<String, people::Model> = HashMap::new();
        for chunk in person_ids.chunks(500) {
            for person in people::Entity::find()
                .filter(people::Column::Id.is_in(chunk.iter().cloned()))
                .all(&reader)
                .await
                .map_err(db_error)?
            {
                found.insert(person.id.clone(), person);
            }
        }
        let holders: Vec<Holder> = person_ids
            .into_iter()
            .filter_map(|person_id| {
                let person = found.remove(&person_id)?;
                let level = held.get(&person_id).copied()?;
                Some(Holder {
                    person_id,
                    external_id: person.external_id,
                    full_name: person.full_name,
                    organization_id: person.organization_id,
                    level,
                })
            })
            .collect();
        Ok(page.finish(holders, |holder| holder.person_id.clone()))
    }
}
