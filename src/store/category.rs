//! Participant categories: create, list and update (audited), and the look-ups people, cohorts and
//! reports use to check and name categories.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, sea_query::Expr,
};

use super::entity::category::participant_categories;
use super::{Store, audit, db_error, is_unique_violation};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::category::{
    CategoryCode, CategoryPatch, CategoryState, NewCategory, ParticipantCategory,
};
use crate::domain::page::Page;
use crate::error::{Error, Result};

const RESOURCE: &str = "participant_category";

fn from_model(model: participant_categories::Model) -> Result<ParticipantCategory> {
    let state = CategoryState::parse(&model.state).ok_or_else(|| {
        Error::internal(format!("stored category state {} is unknown", model.state))
    })?;
    Ok(ParticipantCategory {
        code: CategoryCode::from_stored(model.code),
        display_name: model.display_name,
        description: model.description,
        state,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn change_of(category: &ParticipantCategory) -> AuditChange {
    AuditChange::new(
        RESOURCE,
        category.code.as_str(),
        &serde_json::json!({
            "code": category.code,
            "display_name": category.display_name,
            "description": category.description,
            "state": category.state.as_str(),
            "revision": category.revision,
        }),
    )
}

/// Returns the state of each of `codes` that names a stored category.
pub(crate) async fn category_states(
    connection: &impl ConnectionTrait,
    codes: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, CategoryState>> {
    let mut codes: Vec<String> = codes.into_iter().collect();
    codes.sort();
    codes.dedup();
    if codes.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = participant_categories::Entity::find()
        .filter(participant_categories::Column::Code.is_in(codes))
        .all(connection)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|row| {
            let category = from_model(row)?;
            Ok((category.code.as_str().to_owned(), category.state))
        })
        .collect()
}

/// Checks that `code` may be given (see [`crate::domain::category::check_assignable`]); a refusal
/// is INVALID_ARGUMENT on `field`.
pub(crate) async fn require_assignable(
    connection: &impl ConnectionTrait,
    field: &str,
    code: &CategoryCode,
    current: bool,
) -> Result<()> {
    let states = category_states(connection, [code.as_str().to_owned()]).await?;
    crate::domain::category::check_assignable(states.get(code.as_str()).copied(), current)
        .map_err(|(_, why)| Error::invalid(field, format!("{code} {why}")))
}

/// Checks that every category of a cohort's seats may be given: it exists, and is active unless
/// the cohort already had seats for it (`previous`). A refusal is INVALID_ARGUMENT on `field`.
pub(crate) async fn require_seat_categories(
    connection: &impl ConnectionTrait,
    field: &str,
    seats: &[(CategoryCode, i32)],
    previous: &[(CategoryCode, i32)],
) -> Result<()> {
    let states = category_states(
        connection,
        seats.iter().map(|(code, _)| code.as_str().to_owned()),
    )
    .await?;
    let mut violations = crate::error::Violations::new();
    for (code, _) in seats {
        let current = previous.iter().any(|(had, _)| had == code);
        if let Err((_, why)) =
            crate::domain::category::check_assignable(states.get(code.as_str()).copied(), current)
        {
            violations.add(field, format!("{code} {why}"));
        }
    }
    violations.into_result(())
}

impl Store {
    /// Creates a participant category; a code already taken is ALREADY_EXISTS.
    pub async fn create_participant_category(
        &self,
        context: AuditContext,
        new: NewCategory,
    ) -> Result<ParticipantCategory> {
        self.write(move |transaction| {
            Box::pin(async move {
                let now = crate::domain::now();
                let category = ParticipantCategory {
                    code: new.code.clone(),
                    display_name: new.display_name.clone(),
                    description: new.description.clone(),
                    state: CategoryState::Active,
                    revision: 1,
                    create_time: now,
                    update_time: now,
                };
                let taken = || Error::AlreadyExists {
                    resource: RESOURCE,
                    field: "code",
                    value: category.code.as_str().to_owned(),
                    existing_id: Some(category.code.as_str().to_owned()),
                };
                let existing = participant_categories::Entity::find_by_id(category.code.as_str())
                    .one(transaction)
                    .await
                    .map_err(db_error)?;
                if existing.is_some() {
                    return Err(taken());
                }
                participant_categories::Entity::insert(participant_categories::ActiveModel {
                    code: Set(category.code.as_str().to_owned()),
                    display_name: Set(category.display_name.clone()),
                    description: Set(category.description.clone()),
                    state: Set(category.state.as_str().to_owned()),
                    revision: Set(category.revision),
                    create_time: Set(now),
                    update_time: Set(now),
                })
                .exec(transaction)
                .await
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        taken()
                    } else {
                        db_error(error)
                    }
                })?;
                audit::append(transaction, &context, vec![change_of(&category)]).await?;
                Ok(category)
            })
        })
        .await
    }

    /// Lists categories by code after the page's key; archived ones only with `show_archived`.
    pub async fn list_participant_categories(
        &self,
        show_archived: bool,
        page: &Page,
    ) -> Result<(Vec<ParticipantCategory>, String)> {
        let mut query = participant_categories::Entity::find();
        if !show_archived {
            query = query
                .filter(participant_categories::Column::State.eq(CategoryState::Active.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(participant_categories::Column::Code.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(participant_categories::Column::Code)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let categories = rows
            .into_iter()
            .map(from_model)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(categories, |category| category.code.as_str().to_owned()))
    }

    /// Returns the display name of every category, by code (for report rows).
    pub async fn participant_category_names(&self) -> Result<HashMap<String, String>> {
        let rows = participant_categories::Entity::find()
            .all(&self.reader())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.code, row.display_name))
            .collect())
    }

    /// Applies `patch` to a category; `expected_revision` (from the etag) must match when given.
    pub async fn update_participant_category(
        &self,
        context: AuditContext,
        code: CategoryCode,
        patch: CategoryPatch,
        expected_revision: Option<i64>,
    ) -> Result<ParticipantCategory> {
        self.write(move |transaction| {
            Box::pin(async move {
                let model = participant_categories::Entity::find_by_id(code.as_str())
                    .one(transaction)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found(RESOURCE, code.as_str()))?;
                let mut category = from_model(model)?;
                let mismatch = || Error::EtagMismatch {
                    resource: RESOURCE,
                    id: code.as_str().to_owned(),
                };
                if expected_revision.is_some_and(|revision| revision != category.revision) {
                    return Err(mismatch());
                }
                if !patch.apply(&mut category) {
                    return Ok(category);
                }
                let previous_revision = category.revision;
                category.revision += 1;
                category.update_time = crate::domain::now();
                let updated = participant_categories::Entity::update_many()
                    .col_expr(
                        participant_categories::Column::DisplayName,
                        Expr::value(category.display_name.clone()),
                    )
                    .col_expr(
                        participant_categories::Column::Description,
                        Expr::value(category.description.clone()),
                    )
                    .col_expr(
                        participant_categories::Column::State,
                        Expr::value(category.state.as_str()),
                    )
                    .col_expr(
                        participant_categories::Column::Revision,
                        Expr::value(category.revision),
                    )
                    .col_expr(
                        participant_categories::Column::UpdateTime,
                        Expr::value(category.update_time),
                    )
                    .filter(participant_categories::Column::Code.eq(code.as_str()))
                    .filter(participant_categories::Column::Revision.eq(previous_revision))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                if updated.rows_affected == 0 {
                    return Err(mismatch());
                }
                audit::append(transaction, &context, vec![change_of(&category)]).await?;
                Ok(category)
            })
        })
        .await
    }
}
