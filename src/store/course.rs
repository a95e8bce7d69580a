//! The catalogue: courses, versions, modules and activities, written in audited transactions.
//!
//! Every edit of a version's modules or activities locks the version row first (`FOR UPDATE` on
//! PostgreSQL; SQLite write transactions are serial) and re-reads its state under that lock, so an
//! edit racing a publication either lands before it or is refused with `VERSION_PUBLISHED`. The
//! edit then bumps the version's revision: a version's etag covers its modules and activities.
//! Course-level writes (updates, archiving, new versions, publication) lock the course row the
//! same way; publication takes the course lock before the version lock, and nothing takes them
//! the other way round.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
    sea_query::{Expr, ExprTrait as _, Func, LikeExpr, LockType},
};

use super::entity::catalogue::{course_activities, course_modules, course_versions, courses};
use super::idempotency::{RequestKey, StoredAnswer};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::course::{
    ACTIVITY, Activity, ActivityKind, ActivityPatch, ActivityValues, COURSE, COURSE_VERSION,
    Course, CoursePatch, CourseState, CourseValues, CourseVersion, DeliveryMode, MODULE, Module,
    ModulePatch, ModuleValues, NewCourse, VersionState, check_complete_order, check_no_open_draft,
    check_prerequisites, check_revision, copy_modules, next_position, next_version_number,
    position_changes,
};
use crate::domain::page::Page;
use crate::error::{Error, Result};

/// Rows inserted per statement when a version is copied.
const INSERT_BATCH: usize = 500;
/// Filters of [`Store::list_courses`].
#[derive(Debug, Clone, Default)]
pub struct CourseFilter {
    /// Only courses in this state.
    pub state: Option<CourseState>,
    /// Only courses of this provider.
    pub provider_organization_id: Option<String>,
    /// Only courses whose lowercased code or title contains this (lowercase) text.
    pub query: Option<String>,
}

fn course_from_model(model: courses::Model) -> Result<Course> {
    let state = CourseState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!("stored course state {} is unknown", model.state))
    })?;
    Ok(Course {
        id: model.id,
        code: model.code,
        values: CourseValues {
            title: model.title,
            description: model.description,
            provider_organization_id: model.provider_organization_id,
        },
        state,
        latest_version: model.latest_version,
        latest_version_id: model.latest_version_id,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn course_row(course: &Course) -> courses::ActiveModel {
    courses::ActiveModel {
        id: Set(course.id.clone()),
        code: Set(course.code.clone()),
        title: Set(course.values.title.clone()),
        description: Set(course.values.description.clone()),
        provider_organization_id: Set(course.values.provider_organization_id.clone()),
        state: Set(course.state.as_str().to_owned()),
        latest_version: Set(course.latest_version),
        latest_version_id: Set(course.latest_version_id.clone()),
        revision: Set(course.revision),
        create_time: Set(course.create_time),
        update_time: Set(course.update_time),
    }
}

fn version_from_model(model: course_versions::Model) -> Result<CourseVersion> {
    let state = VersionState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!("stored version state {} is unknown", model.state))
    })?;
    let completion_rule = model
        .completion_rule
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|error| Error::internal(format!("stored completion rule is invalid: {error}")))?;
    Ok(CourseVersion {
        id: model.id,
        course_id: model.course_id,
        version: model.version,
        state,
        completion_rule,
        copied_from_version_id: model.copied_from_version_id,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
        publish_time: model.publish_time,
        modules: Vec::new(),
    })
}

fn version_row(version: &CourseVersion) -> Result<course_versions::ActiveModel> {
    let completion_rule = version
        .completion_rule
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(Error::internal)?;
    Ok(course_versions::ActiveModel {
        id: Set(version.id.clone()),
        course_id: Set(version.course_id.clone()),
        version: Set(version.version),
        state: Set(version.state.as_str().to_owned()),
        completion_rule: Set(completion_rule),
        copied_from_version_id: Set(version.copied_from_version_id.clone()),
        revision: Set(version.revision),
        create_time: Set(version.create_time),
        update_time: Set(version.update_time),
        publish_time: Set(version.publish_time),
    })
}

fn module_from_model(model: course_modules::Model) -> Result<Module> {
    let prerequisite_module_ids: Vec<String> = serde_json::from_str(&model.prerequisite_module_ids)
        .map_err(|error| Error::internal(format!("stored prerequisites are invalid: {error}")))?;
    Ok(Module {
        id: model.id,
        course_version_id: model.course_version_id,
        position: model.position,
        values: ModuleValues {
            title: model.title,
            required: model.required,
            prerequisite_module_ids,
        },
        activities: Vec::new(),
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn module_row(module: &Module) -> Result<course_modules::ActiveModel> {
    let prerequisites =
        serde_json::to_string(&module.values.prerequisite_module_ids).map_err(Error::internal)?;
    Ok(course_modules::ActiveModel {
        id: Set(module.id.clone()),
        course_version_id: Set(module.course_version_id.clone()),
        title: Set(module.values.title.clone()),
        position: Set(module.position),
        required: Set(module.values.required),
        prerequisite_module_ids: Set(prerequisites),
        revision: Set(module.revision),
        create_time: Set(module.create_time),
        update_time: Set(module.update_time),
    })
}

fn activity_from_model(model: course_activities::Model) -> Result<Activity> {
    let kind = ActivityKind::parse(&model.kind).ok_or_else(|| {
        Error::internal(format!("stored activity kind {} is unknown", model.kind))
    })?;
    let delivery_mode = DeliveryMode::parse(&model.delivery_mode).ok_or_else(|| {
        Error::internal(format!(
            "stored delivery mode {} is unknown",
            model.delivery_mode
        ))
    })?;
    let survey_questions = model
        .survey_questions
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|error| Error::internal(format!("stored survey questions are invalid: {error}")))?
        .unwrap_or_default();
    Ok(Activity {
        id: model.id,
        module_id: model.module_id,
        course_version_id: model.course_version_id,
        position: model.position,
        values: ActivityValues {
            title: model.title,
            kind,
            required: model.required,
            delivery_mode,
            expected_minutes: model.expected_minutes,
            pass_score: model.pass_score,
            host_organization_id: model.host_organization_id,
            survey_questions,
        },
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn activity_row(activity: &Activity) -> course_activities::ActiveModel {
    let values = &activity.values;
    // Serialising plain data cannot fail; an empty list is stored as NULL.
    let survey_questions = (!values.survey_questions.is_empty())
        .then(|| serde_json::to_string(&values.survey_questions).ok())
        .flatten();
    course_activities::ActiveModel {
        id: Set(activity.id.clone()),
        course_version_id: Set(activity.course_version_id.clone()),
        module_id: Set(activity.module_id.clone()),
        title: Set(values.title.clone()),
        kind: Set(values.kind.as_str().to_owned()),
        position: Set(activity.position),
        required: Set(values.required),
        delivery_mode: Set(values.delivery_mode.as_str().to_owned()),
        expected_minutes: Set(values.expected_minutes),
        pass_score: Set(values.pass_score),
        host_organization_id: Set(values.host_organization_id.clone()),
        survey_questions: Set(survey_questions),
        revision: Set(activity.revision),
        create_time: Set(activity.create_time),
        update_time: Set(activity.update_time),
    }
}

fn course_change(course: &Course) -> AuditChange {
    AuditChange::new(
        COURSE,
        &course.id,
        &serde_json::json!({
            "code": course.code,
            "title": course.values.title,
            "description": course.values.description,
            "provider_organization_id": course.values.provider_organization_id,
            "state": course.state.as_str(),
            "latest_version": course.latest_version,
            "latest_version_id": course.latest_version_id,
            "revision": course.revision,
        }),
    )
}

fn version_change(version: &CourseVersion) -> AuditChange {
    AuditChange::new(
        COURSE_VERSION,
        &version.id,
        &serde_json::json!({
            "course_id": version.course_id,
            "version": version.version,
            "state": version.state.as_str(),
            "copied_from_version_id": version.copied_from_version_id,
            "completion_rule": version.completion_rule,
            "publish_time": version.publish_time.map(|time| time.to_rfc3339()),
            "revision": version.revision,
        }),
    )
}

fn module_change(module: &Module, deleted: bool) -> AuditChange {
    AuditChange::new(
        MODULE,
        &module.id,
        &serde_json::json!({
            "course_version_id": module.course_version_id,
            "title": module.values.title,
            "position": module.position,
            "required": module.values.required,
            "prerequisite_module_ids": module.values.prerequisite_module_ids,
            "revision": module.revision,
            "deleted": deleted,
        }),
    )
}

fn activity_change(activity: &Activity, deleted: bool) -> AuditChange {
    let values = &activity.values;
    AuditChange::new(
        ACTIVITY,
        &activity.id,
        &serde_json::json!({
            "module_id": activity.module_id,
            "course_version_id": activity.course_version_id,
            "title": values.title,
            "kind": values.kind.as_str(),
            "position": activity.position,
            "required": values.required,
            "delivery_mode": values.delivery_mode.as_str(),
            "expected_minutes": values.expected_minutes,
            "pass_score": values.pass_score,
            "host_organization_id": values.host_organization_id,
            "survey_questions": values.survey_questions,
            "revision": activity.revision,
            "deleted": deleted,
        }),
    )
}

fn code_taken(code: &str, existing_id: Option<String>) -> Error {
    Error::AlreadyExists {
        resource: COURSE,
        field: "code",
        value: code.to_owned(),
        existing_id,
    }
}

/// Returns `text` as a `LIKE` pattern matching any string that contains it.
fn contains_pattern(text: &str) -> String {
    format!("%{}%", super::escape_like(text))
}

/// Returns true when row locks must be taken explicitly (PostgreSQL); SQLite writes are serial.
fn needs_row_locks(connection: &impl ConnectionTrait) -> bool {
    connection.get_database_backend() == DbBackend::Postgres
}

/// Loads a course, or NOT_FOUND.
pub(crate) async fn load_course(connection: &impl ConnectionTrait, id: &str) -> Result<Course> {
    let model = courses::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(COURSE, id))?;
    course_from_model(model)
}

/// Loads a course and locks its row for the rest of the transaction.
async fn lock_course(transaction: &DatabaseTransaction, id: &str) -> Result<Course> {
    let mut query = courses::Entity::find_by_id(id.to_owned());
    if needs_row_locks(transaction) {
        query = query.lock(LockType::Update);
    }
    let model = query
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(COURSE, id))?;
    course_from_model(model)
}

/// Loads a version (without modules), or NOT_FOUND.
pub(crate) async fn load_version(
    connection: &impl ConnectionTrait,
    id: &str,
) -> Result<CourseVersion> {
    let model = course_versions::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(COURSE_VERSION, id))?;
    version_from_model(model)
}

/// Loads a version (without modules) and locks its row for the rest of the transaction.
async fn lock_version(transaction: &DatabaseTransaction, id: &str) -> Result<CourseVersion> {
    let mut query = course_versions::Entity::find_by_id(id.to_owned());
    if needs_row_locks(transaction) {
        query = query.lock(LockType::Update);
    }
    let model = query
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(COURSE_VERSION, id))?;
    version_from_model(model)
}

/// Loads the modules of a version in order, without their activities.
async fn load_module_rows(
    connection: &impl ConnectionTrait,
    version_id: &str,
) -> Result<Vec<Module>> {
    course_modules::Entity::find()
        .filter(course_modules::Column::CourseVersionId.eq(version_id))
        .order_by_asc(course_modules::Column::Position)
        .order_by_asc(course_modules::Column::Id)
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(module_from_model)
        .collect()
}

/// Loads the modules of a version in order, each with its activities in order: two queries.
pub(crate) async fn load_version_modules(
    connection: &impl ConnectionTrait,
    version_id: &str,
) -> Result<Vec<Module>> {
    let mut modules = load_module_rows(connection, version_id).await?;
    let activities = course_activities::Entity::find()
        .filter(course_activities::Column::CourseVersionId.eq(version_id))
        .order_by_asc(course_activities::Column::ModuleId)
        .order_by_asc(course_activities::Column::Position)
        .order_by_asc(course_activities::Column::Id)
        .all(connection)
        .await
        .map_err(db_error)?;
    let mut by_module: HashMap<String, Vec<Activity>> = HashMap::new();
    for row in activities {
        let activity = activity_from_model(row)?;
        by_module
            .entry(activity.module_id.clone())
            .or_default()
            .push(activity);
    }
    for module in &mut modules {
        module.activities = by_module.remove(&module.id).unwrap_or_default();
    }
    Ok(modules)
}

/// Loads a module (without activities), or NOT_FOUND.
async fn load_module(connection: &impl ConnectionTrait, id: &str) -> Result<Module> {
    let model = course_modules::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(MODULE, id))?;
    module_from_model(model)
}

/// Loads the activities of a module in order.
async fn load_module_activities(
    connection: &impl ConnectionTrait,
    module_id: &str,
) -> Result<Vec<Activity>> {
    course_activities::Entity::find()
        .filter(course_activities::Column::ModuleId.eq(module_id))
        .order_by_asc(course_activities::Column::Position)
        .order_by_asc(course_activities::Column::Id)
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(activity_from_model)
        .collect()
}

/// Loads an activity, or NOT_FOUND.
pub(crate) async fn load_activity(connection: &impl ConnectionTrait, id: &str) -> Result<Activity> {
    let model = course_activities::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(ACTIVITY, id))?;
    activity_from_model(model)
}

/// Locks the version of an item (`version_id`, read before the lock) and re-reads its state:
/// fails with `VERSION_PUBLISHED` when the version may no longer change.
async fn lock_editable_version(
    transaction: &DatabaseTransaction,
    version_id: &str,
) -> Result<CourseVersion> {
    let version = lock_version(transaction, version_id).await?;
    version.check_editable()?;
    Ok(version)
}

/// Records that the version's content changed: a new revision (its etag covers its modules).
async fn touch_version(
    transaction: &DatabaseTransaction,
    version: &mut CourseVersion,
) -> Result<()> {
    version.revision += 1;
    version.update_time = crate::domain::now();
    course_versions::Entity::update(course_versions::ActiveModel {
        id: Set(version.id.clone()),
        revision: Set(version.revision),
        update_time: Set(version.update_time),
        ..Default::default()
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn update_course_row(transaction: &DatabaseTransaction, course: &Course) -> Result<()> {
    courses::Entity::update(course_row(course))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn update_module_row(transaction: &DatabaseTransaction, module: &Module) -> Result<()> {
    course_modules::Entity::update(module_row(module)?)
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn update_activity_row(transaction: &DatabaseTransaction, activity: &Activity) -> Result<()> {
    course_activities::Entity::update(activity_row(activity))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(())
}

impl Store {
    /// Creates a course in state DRAFT; with a request key, a replay returns the current course.
    pub async fn create_course(
        &self,
        context: AuditContext,
        new: NewCourse,
        key: Option<RequestKey>,
    ) -> Result<Course> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    super::organization::load(transaction, &new.values.provider_organization_id)
                        .await?;
                    let taken = courses::Entity::find()
                        .filter(courses::Column::Code.eq(new.code.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?;
                    if let Some(taken) = taken {
                        return Err(code_taken(&new.code, Some(taken.id)));
                    }
                    let now = crate::domain::now();
                    let course = Course {
                        id: crate::domain::new_id(),
                        code: new.code,
                        values: new.values,
                        state: CourseState::Draft,
                        latest_version: 0,
                        latest_version_id: None,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    courses::Entity::insert(course_row(&course))
                        .exec(transaction)
                        .await
                        .map_err(|error| {
                            if is_unique_violation(&error) {
                                code_taken(&course.code, None)
                            } else {
                                db_error(error)
                            }
                        })?;
                    audit::append(transaction, &context, vec![course_change(&course)]).await?;
                    let answer = StoredAnswer::created(&course.id);
                    Ok((course, answer))
                })
            },
            |answer| async move { self.get_course(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one course.
    pub async fn get_course(&self, id: &str) -> Result<Course> {
        load_course(self.connection(), id).await
    }

    /// Lists courses by id after the page's key.
    pub async fn list_courses(
        &self,
        filter: &CourseFilter,
        page: &Page,
    ) -> Result<(Vec<Course>, String)> {
        let mut query = courses::Entity::find();
        if let Some(state) = filter.state {
            query = query.filter(courses::Column::State.eq(state.as_str()));
        }
        if let Some(provider) = &filter.provider_organization_id {
            query = query.filter(courses::Column::ProviderOrganizationId.eq(provider.as_str()));
        }
        if let Some(text) = &filter.query {
            let pattern = contains_pattern(text);
            let contains = |column: courses::Column| {
                Expr::expr(Func::lower(Expr::col(column)))
                    .like(LikeExpr::new(pattern.clone()).escape(super::LIKE_ESCAPE))
            };
            query = query.filter(
                Condition::any()
                    .add(contains(courses::Column::Code))
                    .add(contains(courses::Column::Title)),
            );
        }
        if let Some(after) = &page.after {
            query = query.filter(courses::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(courses::Column::Id)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let courses = rows
            .into_iter()
            .map(course_from_model)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(courses, |course| course.id.clone()))
    }

    /// Applies `patch` to a course that is not archived; `expected_revision` must match when given.
    pub async fn update_course(
        &self,
        context: AuditContext,
        id: String,
        patch: CoursePatch,
        expected_revision: Option<i64>,
    ) -> Result<Course> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut course = lock_course(transaction, &id).await?;
                check_revision(COURSE, &id, expected_revision, course.revision)?;
                course.check_editable()?;
                if !patch.apply(&mut course.values) {
                    return Ok(course);
                }
                if let Some(provider) = &patch.provider_organization_id {
                    super::organization::load(transaction, provider).await?;
                }
                course.revision += 1;
                course.update_time = crate::domain::now();
                update_course_row(transaction, &course).await?;
                audit::append(transaction, &context, vec![course_change(&course)]).await?;
                Ok(course)
            })
        })
        .await
    }

    /// Archives a course; archiving an archived course changes nothing and returns it.
    pub async fn archive_course(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<Course> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut course = lock_course(transaction, &id).await?;
                check_revision(COURSE, &id, expected_revision, course.revision)?;
                if !course.archive() {
                    return Ok(course);
                }
                course.revision += 1;
                course.update_time = crate::domain::now();
                update_course_row(transaction, &course).await?;
                audit::append(transaction, &context, vec![course_change(&course)]).await?;
                Ok(course)
            })
        })
        .await
    }

    /// Starts the next DRAFT version of a course, empty or copied from one of its published
    /// versions; with a request key, a replay returns the current version.
    pub async fn create_course_version(
        &self,
        context: AuditContext,
        course_id: String,
        copy_from_version_id: Option<String>,
        key: Option<RequestKey>,
    ) -> Result<CourseVersion> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    // The course lock serialises version numbering and the one-draft rule.
                    let course = lock_course(transaction, &course_id).await?;
                    course.check_editable()?;
                    let open_draft = course_versions::Entity::find()
                        .filter(course_versions::Column::CourseId.eq(course_id.as_str()))
                        .filter(course_versions::Column::State.eq(VersionState::Draft.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .map(version_from_model)
                        .transpose()?;
                    check_no_open_draft(&course, open_draft.as_ref())?;
                    let source = match &copy_from_version_id {
                        Some(source_id) => {
                            let mut source = load_version(transaction, source_id).await?;
                            source.check_copy_source(&course.id)?;
                            source.modules = load_version_modules(transaction, source_id).await?;
                            Some(source)
                        }
                        None => None,
                    };
                    let highest = course_versions::Entity::find()
                        .filter(course_versions::Column::CourseId.eq(course_id.as_str()))
                        .order_by_desc(course_versions::Column::Version)
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .map(|row| row.version);
                    let now = crate::domain::now();
                    let mut version = CourseVersion::new_draft(
                        &course.id,
                        next_version_number(highest),
                        copy_from_version_id,
                        now,
                    );
                    if let Some(source) = &source {
                        version.modules = copy_modules(&source.modules, &version.id, now);
                    }
                    course_versions::Entity::insert(version_row(&version)?)
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    let mut changes = vec![version_change(&version)];
                    let mut module_rows = Vec::with_capacity(version.modules.len());
                    let mut activity_rows = Vec::new();
                    for module in &version.modules {
                        module_rows.push(module_row(module)?);
                        changes.push(module_change(module, false));
                        for activity in &module.activities {
                            activity_rows.push(activity_row(activity));
                            changes.push(activity_change(activity, false));
                        }
                    }
                    insert_in_batches(transaction, module_rows).await?;
                    insert_in_batches(transaction, activity_rows).await?;
                    audit::append(transaction, &context, changes).await?;
                    let answer = StoredAnswer::created(&version.id);
                    Ok((version, answer))
                })
            },
            |answer| async move { self.get_course_version(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one version with its modules and their activities, in order (three queries).
    pub async fn get_course_version(&self, id: &str) -> Result<CourseVersion> {
        let mut version = load_version(self.connection(), id).await?;
        version.modules = load_version_modules(self.connection(), id).await?;
        Ok(version)
    }

    /// Lists the versions of a course in `states`, newest first, without modules.
    pub async fn list_course_versions(
        &self,
        course_id: &str,
        states: &[VersionState],
        page: &Page,
    ) -> Result<(Vec<CourseVersion>, String)> {
        load_course(self.connection(), course_id).await?;
        if states.is_empty() {
            return Ok((Vec::new(), String::new()));
        }
        let mut query = course_versions::Entity::find()
            .filter(course_versions::Column::CourseId.eq(course_id))
            .filter(
                course_versions::Column::State
                    .is_in(states.iter().map(|state| state.as_str().to_owned())),
            );
        if let Some(after) = &page.after {
            let after: i32 = after
                .parse()
                .map_err(|_| Error::invalid("page_token", "is not a token this service issued"))?;
            query = query.filter(course_versions::Column::Version.lt(after));
        }
        let rows = query
            .order_by_desc(course_versions::Column::Version)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let versions = rows
            .into_iter()
            .map(version_from_model)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(versions, |version| version.version.to_string()))
    }

    /// Validates a DRAFT version and publishes it: it is frozen, gets its completion rule and
    /// becomes its course's latest version.
    pub async fn publish_course_version(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<CourseVersion> {
        self.write(move |transaction| {
            Box::pin(async move {
                let course_id = load_version(transaction, &id).await?.course_id;
                let mut course = lock_course(transaction, &course_id).await?;
                let mut version = lock_version(transaction, &id).await?;
                version.check_editable()?;
                check_revision(COURSE_VERSION, &id, expected_revision, version.revision)?;
                course.check_editable()?;
                version.modules = load_version_modules(transaction, &id).await?;
                let rule = version.completion_rule_for_publication()?;
                let now = crate::domain::now();
                version.publish(rule, now);
                course_versions::Entity::update(version_row(&version)?)
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                course.record_publication(&version);
                course.revision += 1;
                course.update_time = now;
                update_course_row(transaction, &course).await?;
                audit::append(
                    transaction,
                    &context,
                    vec![version_change(&version), course_change(&course)],
                )
                .await?;
                Ok(version)
            })
        })
        .await
    }

    /// Adds a module at the end of a DRAFT version; with a request key, a replay returns the
    /// current module.
    pub async fn create_module(
        &self,
        context: AuditContext,
        version_id: String,
        values: ModuleValues,
        key: Option<RequestKey>,
    ) -> Result<Module> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let mut version = lock_editable_version(transaction, &version_id).await?;
                    let modules = load_module_rows(transaction, &version_id).await?;
                    let now = crate::domain::now();
                    let module = Module {
                        id: crate::domain::new_id(),
                        course_version_id: version_id.clone(),
                        position: next_position(modules.last().map(|last| last.position)),
                        values,
                        activities: Vec::new(),
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    check_prerequisites(
                        "module.prerequisite_module_ids",
                        &module.id,
                        &module.values.prerequisite_module_ids,
                        &modules,
                    )?;
                    course_modules::Entity::insert(module_row(&module)?)
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    touch_version(transaction, &mut version).await?;
                    audit::append(transaction, &context, vec![module_change(&module, false)])
                        .await?;
                    let answer = StoredAnswer::created(&module.id);
                    Ok((module, answer))
                })
            },
            |answer| async move { self.get_module(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one module with its activities.
    async fn get_module(&self, id: &str) -> Result<Module> {
        let mut module = load_module(self.connection(), id).await?;
        module.activities = load_module_activities(self.connection(), id).await?;
        Ok(module)
    }

    /// Applies `patch` to a module of a DRAFT version; prerequisites stay inside the version and
    /// acyclic. Returns the module with its activities.
    pub async fn update_module(
        &self,
        context: AuditContext,
        id: String,
        patch: ModulePatch,
        expected_revision: Option<i64>,
    ) -> Result<Module> {
        self.write(move |transaction| {
            Box::pin(async move {
                let version_id = load_module(transaction, &id).await?.course_version_id;
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let modules = load_module_rows(transaction, &version_id).await?;
                let mut module = modules
                    .iter()
                    .find(|module| module.id == id)
                    .cloned()
                    .ok_or_else(|| Error::not_found(MODULE, &id))?;
                check_revision(MODULE, &id, expected_revision, module.revision)?;
                let changed = patch.apply(&mut module.values);
                if changed {
                    if patch.prerequisite_module_ids.is_some() {
                        check_prerequisites(
                            "module.prerequisite_module_ids",
                            &module.id,
                            &module.values.prerequisite_module_ids,
                            &modules,
                        )?;
                    }
                    module.revision += 1;
                    module.update_time = crate::domain::now();
                    update_module_row(transaction, &module).await?;
                    touch_version(transaction, &mut version).await?;
                    audit::append(transaction, &context, vec![module_change(&module, false)])
                        .await?;
                }
                module.activities = load_module_activities(transaction, &id).await?;
                Ok(module)
            })
        })
        .await
    }

    /// Removes a module and its activities from a DRAFT version, renumbers the modules after it
    /// and removes it from the other modules' prerequisites.
    pub async fn delete_module(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<()> {
        self.write(move |transaction| {
            Box::pin(async move {
                let version_id = load_module(transaction, &id).await?.course_version_id;
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let modules = load_module_rows(transaction, &version_id).await?;
                let module = modules
                    .iter()
                    .find(|module| module.id == id)
                    .cloned()
                    .ok_or_else(|| Error::not_found(MODULE, &id))?;
                check_revision(MODULE, &id, expected_revision, module.revision)?;
                let activities = load_module_activities(transaction, &id).await?;
                course_activities::Entity::delete_many()
                    .filter(course_activities::Column::ModuleId.eq(id.as_str()))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                course_modules::Entity::delete_by_id(id.clone())
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                let mut changes = vec![module_change(&module, true)];
                changes.extend(
                    activities
                        .iter()
                        .map(|activity| activity_change(activity, true)),
                );
                let remaining: Vec<Module> =
                    modules.into_iter().filter(|other| other.id != id).collect();
                let current: Vec<(String, i32)> = remaining
                    .iter()
                    .map(|other| (other.id.clone(), other.position))
                    .collect();
                let order: Vec<String> = remaining.iter().map(|other| other.id.clone()).collect();
                let moves: HashMap<String, i32> =
                    position_changes(&current, &order).into_iter().collect();
                let now = crate::domain::now();
                for mut other in remaining {
                    let moved = moves.get(&other.id).copied();
                    let prerequisites_before = other.values.prerequisite_module_ids.len();
                    other
                        .values
                        .prerequisite_module_ids
                        .retain(|prerequisite| prerequisite != &id);
                    let lost_prerequisite =
                        other.values.prerequisite_module_ids.len() != prerequisites_before;
                    if moved.is_none() && !lost_prerequisite {
                        continue;
                    }
                    if let Some(position) = moved {
                        other.position = position;
                    }
                    other.revision += 1;
                    other.update_time = now;
                    update_module_row(transaction, &other).await?;
                    changes.push(module_change(&other, false));
                }
                touch_version(transaction, &mut version).await?;
                audit::append(transaction, &context, changes).await?;
                Ok(())
            })
        })
        .await
    }

    /// Puts the modules of a DRAFT version in the order of `module_ids` (every module, once);
    /// returns the version with its modules.
    pub async fn reorder_modules(
        &self,
        context: AuditContext,
        version_id: String,
        module_ids: Vec<String>,
    ) -> Result<CourseVersion> {
        self.write(move |transaction| {
            Box::pin(async move {
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let mut modules = load_version_modules(transaction, &version_id).await?;
                let current_ids: Vec<String> =
                    modules.iter().map(|module| module.id.clone()).collect();
                check_complete_order("module_ids", &current_ids, &module_ids)?;
                let current: Vec<(String, i32)> = modules
                    .iter()
                    .map(|module| (module.id.clone(), module.position))
                    .collect();
                let moves: HashMap<String, i32> = position_changes(&current, &module_ids)
                    .into_iter()
                    .collect();
                let now = crate::domain::now();
                let mut changes = Vec::new();
                for module in &mut modules {
                    if let Some(position) = moves.get(&module.id) {
                        module.position = *position;
                        module.revision += 1;
                        module.update_time = now;
                        update_module_row(transaction, module).await?;
                        changes.push(module_change(module, false));
                    }
                }
                modules.sort_by_key(|module| module.position);
                if !changes.is_empty() {
                    touch_version(transaction, &mut version).await?;
                    audit::append(transaction, &context, changes).await?;
                }
                version.modules = modules;
                Ok(version)
            })
        })
        .await
    }

    /// Adds an activity at the end of a module of a DRAFT version; with a request key, a replay
    /// returns the current activity.
    pub async fn create_activity(
        &self,
        context: AuditContext,
        module_id: String,
        values: ActivityValues,
        key: Option<RequestKey>,
    ) -> Result<Activity> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let version_id = load_module(transaction, &module_id)
                        .await?
                        .course_version_id;
                    let mut version = lock_editable_version(transaction, &version_id).await?;
                    // Re-read under the version lock: the module may have been deleted meanwhile.
                    load_module(transaction, &module_id).await?;
                    if let Some(host) = &values.host_organization_id {
                        super::organization::load(transaction, host).await?;
                    }
                    let existing = load_module_activities(transaction, &module_id).await?;
                    let now = crate::domain::now();
                    let activity = Activity {
                        id: crate::domain::new_id(),
                        module_id,
                        course_version_id: version_id,
                        position: next_position(existing.last().map(|last| last.position)),
                        values,
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    course_activities::Entity::insert(activity_row(&activity))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    touch_version(transaction, &mut version).await?;
                    audit::append(
                        transaction,
                        &context,
                        vec![activity_change(&activity, false)],
                    )
                    .await?;
                    let answer = StoredAnswer::created(&activity.id);
                    Ok((activity, answer))
                })
            },
            |answer| async move { load_activity(self.connection(), &answer.into_resource_id()?).await },
        )
        .await
    }

    /// Applies `patch` to an activity of a DRAFT version; the result must follow the rules of
    /// its kind.
    pub async fn update_activity(
        &self,
        context: AuditContext,
        id: String,
        patch: ActivityPatch,
        expected_revision: Option<i64>,
    ) -> Result<Activity> {
        self.write(move |transaction| {
            Box::pin(async move {
                let version_id = load_activity(transaction, &id).await?.course_version_id;
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let mut activity = load_activity(transaction, &id).await?;
                check_revision(ACTIVITY, &id, expected_revision, activity.revision)?;
                if !patch.apply("activity", &mut activity.values)? {
                    return Ok(activity);
                }
                if patch.host_organization_id.is_some()
                    && let Some(host) = &activity.values.host_organization_id
                {
                    super::organization::load(transaction, host).await?;
                }
                activity.revision += 1;
                activity.update_time = crate::domain::now();
                update_activity_row(transaction, &activity).await?;
                touch_version(transaction, &mut version).await?;
                audit::append(
                    transaction,
                    &context,
                    vec![activity_change(&activity, false)],
                )
                .await?;
                Ok(activity)
            })
        })
        .await
    }

    /// Removes an activity from a DRAFT version and renumbers the activities after it.
    pub async fn delete_activity(
        &self,
        context: AuditContext,
        id: String,
        expected_revision: Option<i64>,
    ) -> Result<()> {
        self.write(move |transaction| {
            Box::pin(async move {
                let version_id = load_activity(transaction, &id).await?.course_version_id;
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let activity = load_activity(transaction, &id).await?;
                check_revision(ACTIVITY, &id, expected_revision, activity.revision)?;
                course_activities::Entity::delete_by_id(id.clone())
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                let mut changes = vec![activity_change(&activity, true)];
                let remaining = load_module_activities(transaction, &activity.module_id).await?;
                let current: Vec<(String, i32)> = remaining
                    .iter()
                    .map(|other| (other.id.clone(), other.position))
                    .collect();
                let order: Vec<String> = remaining.iter().map(|other| other.id.clone()).collect();
                let moves: HashMap<String, i32> =
                    position_changes(&current, &order).into_iter().collect();
                let now = crate::domain::now();
                for mut other in remaining {
                    if let Some(position) = moves.get(&other.id) {
                        other.position = *position;
                        other.revision += 1;
                        other.update_time = now;
                        update_activity_row(transaction, &other).await?;
                        changes.push(activity_change(&other, false));
                    }
                }
                touch_version(transaction, &mut version).await?;
                audit::append(transaction, &context, changes).await?;
                Ok(())
            })
        })
        .await
    }

    /// Puts the activities of a module of a DRAFT version in the order of `activity_ids` (every
    /// activity, once); returns the module with its activities.
    pub async fn reorder_activities(
        &self,
        context: AuditContext,
        module_id: String,
        activity_ids: Vec<String>,
    ) -> Result<Module> {
        self.write(move |transaction| {
            Box::pin(async move {
                let version_id = load_module(transaction, &module_id)
                    .await?
                    .course_version_id;
                let mut version = lock_editable_version(transaction, &version_id).await?;
                let mut module = load_module(transaction, &module_id).await?;
                let mut activities = load_module_activities(transaction, &module_id).await?;
                let current_ids: Vec<String> = activities
                    .iter()
                    .map(|activity| activity.id.clone())
                    .collect();
                check_complete_order("activity_ids", &current_ids, &activity_ids)?;
                let current: Vec<(String, i32)> = activities
                    .iter()
                    .map(|activity| (activity.id.clone(), activity.position))
                    .collect();
                let moves: HashMap<String, i32> = position_changes(&current, &activity_ids)
                    .into_iter()
                    .collect();
                let now = crate::domain::now();
                let mut changes = Vec::new();
                for activity in &mut activities {
                    if let Some(position) = moves.get(&activity.id) {
                        activity.position = *position;
                        activity.revision += 1;
                        activity.update_time = now;
                        update_activity_row(transaction, activity).await?;
                        changes.push(activity_change(activity, false));
                    }
                }
                activities.sort_by_key(|activity| activity.position);
                if !changes.is_empty() {
                    touch_version(transaction, &mut version).await?;
                    audit::append(transaction, &context, changes).await?;
                }
                module.activities = activities;
                Ok(module)
            })
        })
        .await
    }
}

/// Inserts `rows` a batch at a time (SQLite limits the number of bound values per statement).
async fn insert_in_batches<A>(transaction: &DatabaseTransaction, rows: Vec<A>) -> Result<()>
where
    A: sea_orm::ActiveModelTrait + Send,
{
    let mut pending = rows.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<A> = pending.by_ref().take(INSERT_BATCH).collect();
        <A::Entity as sea_orm::EntityTrait>::insert_many(batch)
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("aiw"), "%aiw%");
        assert_eq!(contains_pattern("a_b%c!"), "%a!_b!%c!!%");
    }
}
