//! People: reads by subtree, audited updates, and idempotent batch upserts by `external_id`.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
    sea_query::{Expr, Query},
};

use super::entity::{organizations, people};
use super::idempotency::{self, RequestKey, StoredAnswer};
use super::{Store, audit, db_error};
use crate::auth::Scope;
use crate::config::PersonMatch;
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::category::CategoryCode;
use crate::domain::event::NewEvent;
use crate::domain::page::Page;
use crate::domain::person::{
    OrganizationRef, Person, PersonPatch, PersonRecord, PersonStatus, PersonValues, RecordError,
    RecordOutcome, RecordResult, UpsertOutcome,
};
use crate::error::{Error, Reason, Result};

const RESOURCE: &str = "person";
/// Rows per multi-row insert: 10 columns each keeps a statement under every backend's bind limit.
const INSERT_BATCH: usize = 500;
/// Keys per `IN (...)` lookup.
const LOOKUP_BATCH: usize = 1000;

/// Filters of [`Store::list_people`].
#[derive(Debug, Clone, Default)]
pub struct PersonFilter {
    /// Only people whose organisation's path starts with this.
    pub organization_path_prefix: Option<String>,
    /// Only this participant category.
    pub category: Option<CategoryCode>,
    /// Only this status.
    pub status: Option<PersonStatus>,
    /// Only the person with this `external_id`.
    pub external_id: Option<String>,
}

/// One record of a batch: its position and either a validated record or why it is invalid.
pub type BatchRecord = (i64, std::result::Result<PersonRecord, RecordError>);

fn from_model(model: people::Model) -> Result<Person> {
    let status = PersonStatus::parse(&model.status)
        .ok_or_else(|| Error::internal(format!("stored status {} is unknown", model.status)))?;
    Ok(Person {
        id: model.id,
        external_id: model.external_id,
        values: PersonValues {
            full_name: model.full_name,
            email: model.email,
            organization_id: model.organization_id,
            category: CategoryCode::from_stored(model.category),
            status,
        },
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn change_of(person: &Person) -> AuditChange {
    AuditChange::new(
        RESOURCE,
        &person.id,
        &serde_json::json!({
            "external_id": person.external_id,
            "values": person.values,
            "revision": person.revision,
        }),
    )
}

fn person_event(event_type: &'static str, person: &Person, organization_path: &str) -> NewEvent {
    NewEvent {
        event_type,
        subject_id: person.id.clone(),
        person_id: Some(person.id.clone()),
        organization_path: Some(organization_path.to_owned()),
        payload: serde_json::json!({
            "person_id": person.id,
            "external_id": person.external_id,
            "organization_id": person.values.organization_id,
            "status": person.values.status.as_str(),
        }),
    }
}

fn to_active(person: &Person) -> people::ActiveModel {
    people::ActiveModel {
        id: Set(person.id.clone()),
        external_id: Set(person.external_id.clone()),
        full_name: Set(person.values.full_name.clone()),
        email: Set(person.values.email.clone()),
        organization_id: Set(person.values.organization_id.clone()),
        category: Set(person.values.category.as_str().to_owned()),
        status: Set(person.values.status.as_str().to_owned()),
        revision: Set(person.revision),
        create_time: Set(person.create_time),
        update_time: Set(person.update_time),
    }
}

/// Writes a changed person guarded by its previous revision; false when someone else changed it first.
async fn write_update(
    transaction: &DatabaseTransaction,
    person: &Person,
    previous_revision: i64,
) -> Result<bool> {
    let values = &person.values;
    let updated = people::Entity::update_many()
        .col_expr(
            people::Column::FullName,
            Expr::value(values.full_name.clone()),
        )
        .col_expr(people::Column::Email, Expr::value(values.email.clone()))
        .col_expr(
            people::Column::OrganizationId,
            Expr::value(values.organization_id.clone()),
        )
        .col_expr(
            people::Column::Category,
            Expr::value(values.category.as_str()),
        )
        .col_expr(people::Column::Status, Expr::value(values.status.as_str()))
        .col_expr(people::Column::Revision, Expr::value(person.revision))
        .col_expr(people::Column::UpdateTime, Expr::value(person.update_time))
        .filter(people::Column::Id.eq(person.id.as_str()))
        .filter(people::Column::Revision.eq(previous_revision))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(updated.rows_affected == 1)
}

async fn organization_paths(
    connection: &impl ConnectionTrait,
    ids: Vec<String>,
    codes: Vec<String>,
) -> Result<(HashMap<String, String>, HashMap<String, (String, String)>)> {
    let mut by_id = HashMap::new();
    let mut by_code = HashMap::new();
    for chunk in ids.chunks(LOOKUP_BATCH) {
        let rows = organizations::Entity::find()
            .filter(organizations::Column::Id.is_in(chunk.iter().cloned()))
            .all(connection)
            .await
            .map_err(db_error)?;
        for row in rows {
            by_id.insert(row.id, row.path);
        }
    }
    for chunk in codes.chunks(LOOKUP_BATCH) {
        let rows = organizations::Entity::find()
            .filter(organizations::Column::ExternalCode.is_in(chunk.iter().cloned()))
            .all(connection)
            .await
            .map_err(db_error)?;
        for row in rows {
            if let Some(code) = row.external_code {
                by_code.insert(code, (row.id, row.path));
            }
        }
    }
    Ok((by_id, by_code))
}

/// Returns the result of a refused record; `id` names the existing person the caller may see.
fn refused(error: &RecordError, id: Option<String>) -> RecordResult {
    RecordResult {
        index: error.index,
        external_id: error.key.clone(),
        id,
        outcome: RecordOutcome::Refused,
        error: Some(error.clone()),
    }
}

fn applied(index: i64, person: &Person, outcome: RecordOutcome) -> RecordResult {
    RecordResult {
        index,
        external_id: person.external_id.clone(),
        id: Some(person.id.clone()),
        outcome,
        error: None,
    }
}

fn record_error(
    index: i64,
    key: &str,
    field: &str,
    reason: Reason,
    message: String,
) -> RecordError {
    RecordError {
        index,
        key: key.to_owned(),
        field: field.to_owned(),
        reason: reason.as_str().to_owned(),
        message,
    }
}

/// Applies one batch of records inside `transaction` and returns what it did.
async fn upsert_in_transaction(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    scope: &Scope,
    records: Vec<BatchRecord>,
) -> Result<UpsertOutcome> {
    let mut outcome = UpsertOutcome::default();
    let mut valid = Vec::with_capacity(records.len());
    let mut seen = HashSet::new();
    for (index, record) in records {
        match record {
            Err(error) => {
                outcome.results.push(refused(&error, None));
                outcome.errors.push(error);
            }
            Ok(record) if !seen.insert(record.external_id.clone()) => {
                let error = record_error(
                    index,
                    &record.external_id,
                    "external_id",
                    Reason::DuplicateInBatch,
                    "this external_id appears earlier in the same batch".to_owned(),
                );
                // The id is the first occurrence's, filled in once that one is decided.
                outcome.results.push(refused(&error, None));
                outcome.errors.push(error);
            }
            Ok(record) => valid.push((index, record)),
        }
    }

    let mut organization_ids = Vec::new();
    let mut organization_codes = Vec::new();
    for (_, record) in &valid {
        match &record.organization {
            OrganizationRef::Id(id) => organization_ids.push(id.clone()),
            OrganizationRef::ExternalCode(code) => organization_codes.push(code.clone()),
        }
    }
    organization_ids.sort();
    organization_ids.dedup();
    organization_codes.sort();
    organization_codes.dedup();
    let (paths_by_id, organizations_by_code) =
        organization_paths(transaction, organization_ids, organization_codes).await?;

    let external_ids: Vec<String> = valid
        .iter()
        .map(|(_, record)| record.external_id.clone())
        .collect();
    let mut existing: HashMap<String, Person> = HashMap::new();
    for chunk in external_ids.chunks(LOOKUP_BATCH) {
        let rows = people::Entity::find()
            .filter(people::Column::ExternalId.is_in(chunk.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?;
        for row in rows {
            let person = from_model(row)?;
            existing.insert(person.external_id.clone(), person);
        }
    }
    // Paths of the organisations existing people are in now, for the scope check of a move.
    let mut current_paths = paths_by_id.clone();
    if *scope != Scope::All {
        let missing: Vec<String> = existing
            .values()
            .map(|person| person.values.organization_id.clone())
            .filter(|id| !current_paths.contains_key(id))
            .collect();
        let (more, _) = organization_paths(transaction, missing, Vec::new()).await?;
        current_paths.extend(more);
    }

    let category_states = super::category::category_states(
        transaction,
        valid
            .iter()
            .map(|(_, record)| record.category.as_str().to_owned()),
    )
    .await?;

    let now = crate::domain::now();
    let mut inserts = Vec::new();
    let mut changes = Vec::new();
    let mut published = Vec::new();
    for (index, record) in valid {
        let key = record.external_id.clone();
        let resolved = match &record.organization {
            OrganizationRef::Id(id) => paths_by_id.get(id).map(|path| (id.clone(), path.clone())),
            OrganizationRef::ExternalCode(code) => organizations_by_code.get(code).cloned(),
        };
        let Some((organization_id, path)) = resolved else {
            let (field, value) = match &record.organization {
                OrganizationRef::Id(id) => ("organization_id", id),
                OrganizationRef::ExternalCode(code) => ("organization_external_code", code),
            };
            let error = record_error(
                index,
                &key,
                field,
                Reason::OrganizationNotFound,
                format!("no organization {value}"),
            );
            outcome.results.push(refused(
                &error,
                visible_id(&existing, &current_paths, scope, &key),
            ));
            outcome.errors.push(error);
            continue;
        };
        let current_path = existing
            .get(&key)
            .and_then(|person| current_paths.get(&person.values.organization_id));
        let in_scope =
            scope.allows_path(&path) && current_path.is_none_or(|path| scope.allows_path(path));
        if !in_scope {
            let error = record_error(
                index,
                &key,
                "organization_id",
                Reason::OutsideOrganizationScope,
                "the person's organization is outside the organisations you manage".to_owned(),
            );
            outcome.results.push(refused(
                &error,
                visible_id(&existing, &current_paths, scope, &key),
            ));
            outcome.errors.push(error);
            continue;
        }
        let current = existing
            .get(&key)
            .is_some_and(|person| person.values.category == record.category);
        if let Err((reason, why)) = crate::domain::category::check_assignable(
            category_states.get(record.category.as_str()).copied(),
            current,
        ) {
            let error = record_error(
                index,
                &key,
                "category",
                reason,
                format!("{} {why}", record.category),
            );
            outcome.results.push(refused(
                &error,
                visible_id(&existing, &current_paths, scope, &key),
            ));
            outcome.errors.push(error);
            continue;
        }
        let values = record.values(organization_id);
        match existing.get_mut(&key) {
            Some(person) if person.values == values => {
                outcome
                    .results
                    .push(applied(index, person, RecordOutcome::Unchanged));
                outcome.counts.unchanged += 1;
            }
            Some(person) => {
                let previous_revision = person.revision;
                if person.values.organization_id != values.organization_id {
                    // Who may read this learner's progress changes with the organisation path.
                    super::progress_cache::touch_everything();
                }
                person.values = values;
                person.revision += 1;
                person.update_time = now;
                if !write_update(transaction, person, previous_revision).await? {
                    return Err(Error::Unavailable(
                        "a person in this batch changed concurrently; retry the batch".to_owned(),
                    ));
                }
                changes.push(change_of(person));
                published.push(person_event("person.updated", person, &path));
                outcome
                    .results
                    .push(applied(index, person, RecordOutcome::Updated));
                outcome.counts.updated += 1;
            }
            None => {
                let person = Person {
                    id: crate::domain::new_id(),
                    external_id: key.clone(),
                    values,
                    revision: 1,
                    create_time: now,
                    update_time: now,
                };
                changes.push(change_of(&person));
                published.push(person_event("person.created", &person, &path));
                inserts.push(to_active(&person));
                outcome
                    .results
                    .push(applied(index, &person, RecordOutcome::Created));
                // A later duplicate would have been refused above, so this key is final.
                existing.insert(key, person);
                outcome.counts.created += 1;
            }
        }
    }
    let mut pending = inserts.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<_> = pending.by_ref().take(INSERT_BATCH).collect();
        people::Entity::insert_many(batch)
            .exec(transaction)
            .await
            .map_err(|error| {
                if super::is_unique_violation(&error) {
                    // Another call created one of these people since this batch looked them up.
                    Error::Aborted {
                        reason: Reason::ConcurrentUpsert,
                        message: "a person in this batch was created concurrently; retry the batch"
                            .to_owned(),
                        metadata: Vec::new(),
                    }
                } else {
                    db_error(error)
                }
            })?;
    }
    audit::append(transaction, context, changes).await?;
    super::event::append(transaction, published).await?;
    outcome.counts.failed = outcome.errors.len() as i64;
    outcome.errors.sort_by_key(|error| error.index);
    outcome.results.sort_by_key(|result| result.index);
    name_repeats(&mut outcome.results);
    Ok(outcome)
}

/// Returns the id of the existing person with `key` when the caller's scope reaches them.
fn visible_id(
    existing: &HashMap<String, Person>,
    current_paths: &HashMap<String, String>,
    scope: &Scope,
    key: &str,
) -> Option<String> {
    let person = existing.get(key)?;
    let path = current_paths.get(&person.values.organization_id);
    let visible = match path {
        Some(path) => scope.allows_path(path),
        None => *scope == Scope::All,
    };
    visible.then(|| person.id.clone())
}

/// Gives each record refused as a repeat in its batch the id of the first occurrence's result.
fn name_repeats(results: &mut [RecordResult]) {
    let mut first: HashMap<String, Option<String>> = HashMap::new();
    for result in results.iter_mut() {
        match first.get(&result.external_id) {
            Some(id) => {
                let repeat = result
                    .error
                    .as_ref()
                    .is_some_and(|error| error.reason == Reason::DuplicateInBatch.as_str());
                if repeat && result.id.is_none() {
                    result.id.clone_from(id);
                }
            }
            None => {
                first.insert(result.external_id.clone(), result.id.clone());
            }
        }
    }
}

/// Returns the materialised organisation path of each of `person_ids` that exists.
pub(crate) async fn organization_paths_of_people(
    connection: &impl ConnectionTrait,
    mut person_ids: Vec<String>,
) -> Result<HashMap<String, String>> {
    person_ids.sort();
    person_ids.dedup();
    let mut paths = HashMap::new();
    for chunk in person_ids.chunks(LOOKUP_BATCH) {
        let people = people::Entity::find()
            .filter(people::Column::Id.is_in(chunk.iter().cloned()))
            .all(connection)
            .await
            .map_err(db_error)?;
        let organization_ids: Vec<String> = people
            .iter()
            .map(|person| person.organization_id.clone())
            .collect();
        let (by_id, _) = organization_paths(connection, organization_ids, Vec::new()).await?;
        for person in people {
            if let Some(path) = by_id.get(&person.organization_id) {
                paths.insert(person.id, path.clone());
            }
        }
    }
    Ok(paths)
}

impl Store {
    /// Returns one person and the materialised path of their organisation.
    pub async fn get_person(&self, id: &str) -> Result<(Person, String)> {
        let model = people::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(RESOURCE, id))?;
        let person = from_model(model)?;
        let organization =
            super::organization::load(self.connection(), &person.values.organization_id).await?;
        Ok((person, organization.path))
    }

    /// Returns the people whose `external_id` is one of `external_ids`, each with the
    /// materialised path of their organisation (in no particular order; keys that match nobody
    /// are simply absent).
    pub async fn people_by_external_id(
        &self,
        external_ids: &[String],
    ) -> Result<Vec<(Person, String)>> {
        let mut found = Vec::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(LOOKUP_BATCH) {
            let rows = people::Entity::find()
                .filter(people::Column::ExternalId.is_in(chunk.iter().cloned()))
                .all(self.connection())
                .await
                .map_err(db_error)?;
            let mut organization_ids: Vec<String> =
                rows.iter().map(|row| row.organization_id.clone()).collect();
            organization_ids.sort();
            organization_ids.dedup();
            let (paths, _) =
                organization_paths(self.connection(), organization_ids, Vec::new()).await?;
            for row in rows {
                let person = from_model(row)?;
                let path = paths
                    .get(&person.values.organization_id)
                    .cloned()
                    .ok_or_else(|| {
                        Error::internal(format!("person {} has no organization", person.id))
                    })?;
                found.push((person, path));
            }
        }
        Ok(found)
    }

    /// Lists people by id after the page's key.
    pub async fn list_people(
        &self,
        filter: &PersonFilter,
        page: &Page,
    ) -> Result<(Vec<Person>, String)> {
        let mut query = people::Entity::find();
        if let Some(prefix) = &filter.organization_path_prefix {
            let subtree = Query::select()
                .column(organizations::Column::Id)
                .from(organizations::Entity)
                .and_where(sea_orm::sea_query::ExprTrait::like(
                    Expr::col(organizations::Column::Path),
                    super::like_prefix(prefix),
                ))
                .to_owned();
            query = query.filter(people::Column::OrganizationId.in_subquery(subtree));
        }
        if let Some(category) = &filter.category {
            query = query.filter(people::Column::Category.eq(category.as_str()));
        }
        if let Some(status) = filter.status {
            query = query.filter(people::Column::Status.eq(status.as_str()));
        }
        if let Some(external_id) = &filter.external_id {
            query = query.filter(people::Column::ExternalId.eq(external_id.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(people::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(people::Column::Id)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        let people = rows
            .into_iter()
            .map(from_model)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(people, |person| person.id.clone()))
    }

    /// Returns the number of people.
    pub async fn count_people(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait as _;
        people::Entity::find()
            .count(self.connection())
            .await
            .map_err(db_error)
    }

    /// Applies `patch` to a person; `expected_revision` (from the etag) must match when given.
    pub async fn update_person(
        &self,
        context: AuditContext,
        scope: Scope,
        id: String,
        patch: PersonPatch,
        expected_revision: Option<i64>,
    ) -> Result<Person> {
        self.write(move |transaction| {
            Box::pin(async move {
                let model = people::Entity::find_by_id(id.clone())
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found(RESOURCE, &id))?;
                let mut person = from_model(model)?;
                let current =
                    super::organization::load(transaction, &person.values.organization_id).await?;
                scope.require_path(&current.path, "this person")?;
                if expected_revision.is_some_and(|revision| revision != person.revision) {
                    return Err(Error::EtagMismatch {
                        resource: RESOURCE,
                        id,
                    });
                }
                if let Some(organization_id) = &patch.organization_id {
                    let target = super::organization::load(transaction, organization_id).await?;
                    scope.require_path(&target.path, "the new organization")?;
                }
                if let Some(category) = &patch.category {
                    super::category::require_assignable(
                        transaction,
                        "person.category",
                        category,
                        *category == person.values.category,
                    )
                    .await?;
                }
                let organization_before = person.values.organization_id.clone();
                if !patch.apply(&mut person.values) {
                    return Ok(person);
                }
                if person.values.organization_id != organization_before {
                    // Who may read this learner's progress changes with the organisation path.
                    super::progress_cache::touch_everything();
                }
                let previous_revision = person.revision;
                person.revision += 1;
                person.update_time = crate::domain::now();
                if !write_update(transaction, &person, previous_revision).await? {
                    return Err(Error::EtagMismatch {
                        resource: RESOURCE,
                        id,
                    });
                }
                audit::append(transaction, &context, vec![change_of(&person)]).await?;
                let path = match &patch.organization_id {
                    Some(organization_id) => {
                        super::organization::load(transaction, organization_id)
                            .await?
                            .path
                    }
                    None => current.path.clone(),
                };
                super::event::append(
                    transaction,
                    vec![person_event("person.updated", &person, &path)],
                )
                .await?;
                Ok(person)
            })
        })
        .await
    }

    /// Upserts a batch of records in one transaction; with a request key, a replay returns the first answer.
    pub async fn upsert_people(
        &self,
        context: AuditContext,
        scope: Scope,
        records: Vec<BatchRecord>,
        key: Option<RequestKey>,
    ) -> Result<UpsertOutcome> {
        if let Some(key) = &key
            && let Some(answer) = self.stored_answer(key).await?
        {
            return replayed_outcome(answer);
        }
        let claimed_key = key.clone();
        let result = self
            .write(move |transaction| {
                Box::pin(async move {
                    if let Some(key) = &claimed_key
                        && !idempotency::claim(transaction, key).await?
                    {
                        return Err(idempotency::already_claimed());
                    }
                    let outcome =
                        upsert_in_transaction(transaction, &context, &scope, records).await?;
                    if let Some(key) = &claimed_key {
                        let response = serde_json::to_string(&outcome).map_err(Error::internal)?;
                        let answer = StoredAnswer {
                            resource_id: None,
                            response: Some(response),
                        };
                        idempotency::record_answer(transaction, &key.request_id, answer).await?;
                    }
                    Ok(outcome)
                })
            })
            .await;
        match (result, key) {
            (Err(error), Some(key)) if idempotency::is_already_claimed(&error) => {
                let answer = self
                    .stored_answer(&key)
                    .await?
                    .ok_or_else(|| Error::internal("claimed request id has no record"))?;
                replayed_outcome(answer)
            }
            (result, _) => result,
        }
    }
}

fn replayed_outcome(answer: StoredAnswer) -> Result<UpsertOutcome> {
    let response = answer
        .response
        .ok_or_else(|| Error::internal("stored answer has no response"))?;
    serde_json::from_str(&response).map_err(Error::internal)
}

impl Store {
    /// Returns the ids of at most two people whose `external_id` (or email, compared without
    /// case) is `value`: what a token's person claim resolves to (`--jwt-person-match`). Two
    /// ids mean the value is ambiguous; [`PersonMatch::Id`] looks nothing up and returns `value`.
    pub async fn person_ids_matching(&self, by: PersonMatch, value: &str) -> Result<Vec<String>> {
        let condition = match by {
            PersonMatch::Id => return Ok(vec![value.to_owned()]),
            PersonMatch::ExternalId => people::Column::ExternalId.eq(value),
            PersonMatch::Email => sea_orm::sea_query::ExprTrait::eq(
                sea_orm::sea_query::Func::lower(Expr::col(people::Column::Email)),
                value.to_lowercase(),
            ),
        };
        people::Entity::find()
            .select_only()
            .column(people::Column::Id)
            .filter(condition)
            .limit(2)
            .into_tuple::<String>()
            .all(self.connection())
            .await
            .map_err(db_error)
    }
}
