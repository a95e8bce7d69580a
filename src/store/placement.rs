//! Placements: created, read, listed and changed, each change audited in its transaction; and
//! the lookups the sign-off check needs (activity kinds, the placements of enrolment-activity
//! pairs).

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DatabaseTransaction, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
    sea_query::{Alias, Expr, ExprTrait as _, JoinType, Query},
};

use super::entity::catalogue::course_activities;
use super::entity::programme::enrollments;
use super::entity::progress::{placement_supervisors, placements};
use super::entity::{organizations, people};
use super::idempotency::{RequestKey, StoredAnswer};
use super::programme::{for_update, visible_rows};
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::course::ActivityKind;
use crate::domain::page::Page;
use crate::domain::placement::{ExternalHost, Host, NewPlacement, Placement, PlacementPatch};
use crate::domain::programme::Visibility;
use crate::error::{Error, Result};

/// Which placements a list returns.
#[derive(Debug, Clone, Default)]
pub struct PlacementFilter {
    /// Only this enrolment's.
    pub enrollment_id: Option<String>,
    /// Only those naming this supervisor.
    pub supervisor_person_id: Option<String>,
    /// Only those the caller reaches: `None` is everything; else the rows `visibility` allows,
    /// plus those naming `viewer` as a supervisor.
    pub visibility: Option<(Visibility, String)>,
}

fn host_from(model: &placements::Model) -> Host {
    match &model.host_organization_id {
        Some(id) => Host::Organization(id.clone()),
        None => Host::External(ExternalHost {
            name: model.host_name.clone().unwrap_or_default(),
            country_code: model.host_country_code.clone().unwrap_or_default(),
            address: model.host_address.clone(),
            external_code: model.host_external_code.clone(),
        }),
    }
}

fn placement_from(model: placements::Model, supervisor_person_ids: Vec<String>) -> Placement {
    Placement {
        host: host_from(&model),
        id: model.id,
        enrollment_id: model.enrollment_id,
        activity_id: model.activity_id,
        supervisor_person_ids,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    }
}

/// Returns the host columns of `host`: organisation, name, country, address, code.
type HostColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn host_columns(host: &Host) -> HostColumns {
    match host {
        Host::Organization(id) => (Some(id.clone()), None, None, None, None),
        Host::External(external) => (
            None,
            Some(external.name.clone()),
            Some(external.country_code.clone()),
            external.address.clone(),
            external.external_code.clone(),
        ),
    }
}

fn placement_change(placement: &Placement) -> AuditChange {
    let host = match &placement.host {
        Host::Organization(id) => serde_json::json!({ "organization_id": id }),
        Host::External(external) => serde_json::json!({
            "name": external.name, "country_code": external.country_code,
            "address": external.address, "external_code": external.external_code,
        }),
    };
    AuditChange::new(
        "placement",
        &placement.id,
        &serde_json::json!({
            "enrollment_id": placement.enrollment_id, "activity_id": placement.activity_id,
            "host": host, "supervisor_person_ids": placement.supervisor_person_ids,
            "revision": placement.revision,
        }),
    )
}

/// Loads the supervisors of `ids`, each list sorted.
async fn supervisors_of(
    connection: &impl ConnectionTrait,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for row in placement_supervisors::Entity::find()
            .filter(placement_supervisors::Column::PlacementId.is_in(chunk.iter().cloned()))
            .order_by_asc(placement_supervisors::Column::PersonId)
            .all(connection)
            .await
            .map_err(db_error)?
        {
            found
                .entry(row.placement_id)
                .or_default()
                .push(row.person_id);
        }
    }
    Ok(found)
}

async fn complete(
    connection: &impl ConnectionTrait,
    models: Vec<placements::Model>,
) -> Result<Vec<Placement>> {
    let ids: Vec<String> = models.iter().map(|model| model.id.clone()).collect();
    let mut supervisors = supervisors_of(connection, &ids).await?;
    Ok(models
        .into_iter()
        .map(|model| {
            let people = supervisors.remove(&model.id).unwrap_or_default();
            placement_from(model, people)
        })
        .collect())
}

/// Fails unless the host organisation (if any) and every supervisor exist.
async fn require_host_and_supervisors(
    transaction: &DatabaseTransaction,
    host: Option<&Host>,
    supervisors: Option<&[String]>,
) -> Result<()> {
    if let Some(Host::Organization(id)) = host {
        organizations::Entity::find_by_id(id.clone())
            .one(transaction)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("organization", id))?;
    }
    if let Some(supervisors) = supervisors {
        let known: Vec<String> = people::Entity::find()
            .filter(people::Column::Id.is_in(supervisors.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|person| person.id)
            .collect();
        if let Some(missing) = supervisors.iter().find(|id| !known.contains(id)) {
            return Err(Error::not_found("person", missing));
        }
    }
    Ok(())
}

/// Fails unless `activity_id` requires sign-off and is in a course version `enrollment` pinned.
async fn require_sign_off_activity(
    transaction: &DatabaseTransaction,
    enrollment: &enrollments::Model,
    activity_id: &str,
) -> Result<()> {
    let pinned: Vec<String> =
        serde_json::from_str(&enrollment.course_version_ids).map_err(Error::internal)?;
    let activity = course_activities::Entity::find_by_id(activity_id.to_owned())
        .one(transaction)
        .await
        .map_err(db_error)?
        .filter(|activity| pinned.contains(&activity.course_version_id))
        .ok_or_else(|| {
            Error::invalid(
                "placement.activity_id",
                "is not an activity of the course versions this enrolment pinned",
            )
        })?;
    let requires = ActivityKind::parse(&activity.kind).is_some_and(ActivityKind::requires_sign_off);
    if !requires {
        return Err(Error::invalid(
            "placement.activity_id",
            "must be an INDUSTRY_ATTACHMENT or FIELD_VISIT activity (one that requires sign-off)",
        ));
    }
    Ok(())
}

async fn write_supervisors(
    transaction: &DatabaseTransaction,
    placement_id: &str,
    supervisors: &[String],
) -> Result<()> {
    placement_supervisors::Entity::delete_many()
        .filter(placement_supervisors::Column::PlacementId.eq(placement_id))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    placement_supervisors::Entity::insert_many(supervisors.iter().map(|person_id| {
        placement_supervisors::ActiveModel {
            placement_id: Set(placement_id.to_owned()),
            person_id: Set(person_id.clone()),
        }
    }))
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

impl Store {
    /// Creates a placement; one per enrolment and activity (a second is ALREADY_EXISTS naming the
    /// first). The enrolment's owner facts are checked by the caller first.
    pub async fn create_placement(
        &self,
        context: AuditContext,
        new: NewPlacement,
        key: Option<RequestKey>,
    ) -> Result<Placement> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    let enrollment = enrollments::Entity::find_by_id(new.enrollment_id.clone())
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                        .ok_or_else(|| Error::not_found("enrollment", &new.enrollment_id))?;
                    require_sign_off_activity(transaction, &enrollment, &new.activity_id).await?;
                    require_host_and_supervisors(
                        transaction,
                        Some(&new.host),
                        Some(&new.supervisor_person_ids),
                    )
                    .await?;
                    let existing = placements::Entity::find()
                        .filter(placements::Column::EnrollmentId.eq(new.enrollment_id.as_str()))
                        .filter(placements::Column::ActivityId.eq(new.activity_id.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?;
                    let taken = |existing_id: Option<String>| Error::AlreadyExists {
                        resource: "placement",
                        field: "activity_id",
                        value: new.activity_id.clone(),
                        existing_id,
                    };
                    if let Some(existing) = existing {
                        return Err(taken(Some(existing.id)));
                    }
                    let now = crate::domain::now();
                    let placement = Placement {
                        id: crate::domain::new_id(),
                        enrollment_id: new.enrollment_id.clone(),
                        activity_id: new.activity_id.clone(),
                        host: new.host.clone(),
                        supervisor_person_ids: new.supervisor_person_ids.clone(),
                        revision: 1,
                        create_time: now,
                        update_time: now,
                    };
                    let (organization, name, country, address, code) =
                        host_columns(&placement.host);
                    placements::Entity::insert(placements::ActiveModel {
                        id: Set(placement.id.clone()),
                        enrollment_id: Set(placement.enrollment_id.clone()),
                        activity_id: Set(placement.activity_id.clone()),
                        host_organization_id: Set(organization),
                        host_name: Set(name),
                        host_country_code: Set(country),
                        host_address: Set(address),
                        host_external_code: Set(code),
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
                    write_supervisors(transaction, &placement.id, &placement.supervisor_person_ids)
                        .await?;
                    audit::append(transaction, &context, vec![placement_change(&placement)])
                        .await?;
                    let answer = StoredAnswer::created(&placement.id);
                    Ok((placement, answer))
                })
            },
            |answer| async move { self.get_placement(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one placement.
    pub async fn get_placement(&self, id: &str) -> Result<Placement> {
        let model = placements::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("placement", id))?;
        complete(self.connection(), vec![model])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("loaded placement vanished"))
    }

    /// Changes a placement's host or supervisors (replaced as a whole); a stale
    /// `expected_revision` is ABORTED.
    pub async fn update_placement(
        &self,
        context: AuditContext,
        id: String,
        patch: PlacementPatch,
        expected_revision: Option<i64>,
    ) -> Result<Placement> {
        self.write(move |transaction| {
            Box::pin(async move {
                let locked = for_update(placements::Entity::find_by_id(id.clone()), transaction)
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("placement", &id))?;
                let mut placement = complete(transaction, vec![locked])
                    .await?
                    .pop()
                    .ok_or_else(|| Error::internal("loaded placement vanished"))?;
                if expected_revision.is_some_and(|revision| revision != placement.revision) {
                    return Err(Error::EtagMismatch {
                        resource: "placement",
                        id,
                    });
                }
                require_host_and_supervisors(
                    transaction,
                    patch.host.as_ref(),
                    patch.supervisor_person_ids.as_deref(),
                )
                .await?;
                let before = placement.clone();
                if let Some(host) = patch.host {
                    placement.host = host;
                }
                if let Some(supervisors) = patch.supervisor_person_ids {
                    placement.supervisor_person_ids = supervisors;
                }
                if placement == before {
                    return Ok(placement);
                }
                placement.revision += 1;
                placement.update_time = crate::domain::now();
                let (organization, name, country, address, code) = host_columns(&placement.host);
                placements::Entity::update(placements::ActiveModel {
                    id: Set(placement.id.clone()),
                    host_organization_id: Set(organization),
                    host_name: Set(name),
                    host_country_code: Set(country),
                    host_address: Set(address),
                    host_external_code: Set(code),
                    revision: Set(placement.revision),
                    update_time: Set(placement.update_time),
                    ..Default::default()
                })
                .exec(transaction)
                .await
                .map_err(db_error)?;
                if placement.supervisor_person_ids != before.supervisor_person_ids {
                    write_supervisors(transaction, &placement.id, &placement.supervisor_person_ids)
                        .await?;
                }
                audit::append(transaction, &context, vec![placement_change(&placement)]).await?;
                Ok(placement)
            })
        })
        .await
    }

    /// Lists placements by id, keyset-paginated, narrowed by `filter`.
    pub async fn list_placements(
        &self,
        filter: &PlacementFilter,
        page: &Page,
    ) -> Result<(Vec<Placement>, String)> {
        let p = Alias::new("p");
        let e = Alias::new("e");
        let supervised_by = |person_id: &str| {
            Query::select()
                .column(placement_supervisors::Column::PlacementId)
                .from(placement_supervisors::Entity)
                .and_where(placement_supervisors::Column::PersonId.eq(person_id))
                .to_owned()
        };
        let mut query = Query::select();
        query
            .column((p.clone(), Alias::new("id")))
            .from_as(placements::Entity, p.clone())
            .join_as(
                JoinType::InnerJoin,
                enrollments::Entity,
                e.clone(),
                Expr::col((e.clone(), Alias::new("id")))
                    .equals((p.clone(), Alias::new("enrollment_id"))),
            );
        let id = Expr::col((p.clone(), Alias::new("id")));
        if let Some(enrollment_id) = &filter.enrollment_id {
            query.and_where(
                Expr::col((p.clone(), Alias::new("enrollment_id"))).eq(enrollment_id.as_str()),
            );
        }
        if let Some(person_id) = &filter.supervisor_person_id {
            query.and_where(id.clone().in_subquery(supervised_by(person_id)));
        }
        if let Some((visibility, viewer)) = &filter.visibility {
            query.cond_where(
                sea_orm::Condition::any()
                    .add(id.clone().in_subquery(supervised_by(viewer)))
                    .add(visible_rows(
                        visibility,
                        "e",
                        "person_id",
                        Some("cohort_id"),
                        None,
                    )),
            );
        }
        if let Some(after) = &page.after {
            query.and_where(id.clone().gt(after.as_str()));
        }
        query
            .order_by_expr(id, sea_orm::sea_query::Order::Asc)
            .limit(page.size + 1);
        let backend = self.connection().get_database_backend();
        let ids: Vec<String> = self
            .connection()
            .query_all_raw(backend.build(&query))
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| row.try_get::<String>("", "id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)?;
        let (ids, next_page_token) = page.finish(ids, String::clone);
        let mut models: Vec<placements::Model> = placements::Entity::find()
            .filter(placements::Column::Id.is_in(ids))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        models.sort_by(|left, right| left.id.cmp(&right.id));
        Ok((complete(self.connection(), models).await?, next_page_token))
    }

    /// Returns the kind of each of `activity_ids` that exists.
    pub async fn activity_kinds(
        &self,
        activity_ids: &[String],
    ) -> Result<HashMap<String, ActivityKind>> {
        let mut kinds = HashMap::with_capacity(activity_ids.len());
        for chunk in activity_ids.chunks(500) {
            for row in course_activities::Entity::find()
                .filter(course_activities::Column::Id.is_in(chunk.iter().cloned()))
                .all(self.connection())
                .await
                .map_err(db_error)?
            {
                if let Some(kind) = ActivityKind::parse(&row.kind) {
                    kinds.insert(row.id, kind);
                }
            }
        }
        Ok(kinds)
    }

    /// Returns the placements of the (enrolment, activity) `pairs` that have one.
    pub async fn placements_of(
        &self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), Placement>> {
        let mut enrollment_ids: Vec<String> = pairs.iter().map(|(id, _)| id.clone()).collect();
        enrollment_ids.sort();
        enrollment_ids.dedup();
        let mut models = Vec::new();
        for chunk in enrollment_ids.chunks(500) {
            models.extend(
                placements::Entity::find()
                    .filter(placements::Column::EnrollmentId.is_in(chunk.iter().cloned()))
                    .all(self.connection())
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .filter(|model| {
                        pairs.iter().any(|(enrollment, activity)| {
                            *enrollment == model.enrollment_id && *activity == model.activity_id
                        })
                    }),
            );
        }
        Ok(complete(self.connection(), models)
            .await?
            .into_iter()
            .map(|placement| {
                (
                    (
                        placement.enrollment_id.clone(),
                        placement.activity_id.clone(),
                    ),
                    placement,
                )
            })
            .collect())
    }
}
