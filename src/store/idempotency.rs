//! Request ids (AIP-155): a retried create or batch returns the first call's answer and changes nothing.

use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait as _};

use super::entity::idempotency_keys;
use super::{Store, db_error, is_unique_violation};
use crate::error::{Error, Reason, Result};

/// A request id with what identifies the request it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The client's `request_id`.
    pub request_id: String,
    /// Full RPC name.
    pub method: String,
    /// SHA-256 (hex) of the request message.
    pub request_hash: String,
}

/// What the first call with a request id answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// Id of the resource it created, if any.
    pub resource_id: Option<String>,
    /// Its serialised response, if the method stores one.
    pub response: Option<String>,
}

impl StoredAnswer {
    /// Returns the answer of a call that created the resource `resource_id`.
    pub fn created(resource_id: &str) -> Self {
        Self {
            resource_id: Some(resource_id.to_owned()),
            response: None,
        }
    }

    /// Returns the id of the resource the call created, or INTERNAL when it names none.
    pub fn into_resource_id(self) -> Result<String> {
        self.resource_id
            .ok_or_else(|| Error::internal("stored answer names no resource"))
    }
}

/// Claims `key` in the caller's transaction.
///
/// Returns `Ok(false)` when another call holds it already: the caller must then roll back and
/// answer with [`Store::stored_answer`]. On PostgreSQL a concurrent duplicate waits here until the
/// first call commits.
pub(crate) async fn claim(transaction: &DatabaseTransaction, key: &RequestKey) -> Result<bool> {
    let row = idempotency_keys::ActiveModel {
        request_id: Set(key.request_id.clone()),
        method: Set(key.method.clone()),
        request_hash: Set(key.request_hash.clone()),
        resource_id: Set(None),
        response: Set(None),
        create_time: Set(crate::domain::now()),
    };
    match idempotency_keys::Entity::insert(row)
        .exec(transaction)
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if is_unique_violation(&error) => Ok(false),
        Err(error) => Err(db_error(error)),
    }
}

/// Records the answer of the call holding `request_id`, in its transaction.
pub(crate) async fn record_answer(
    transaction: &DatabaseTransaction,
    request_id: &str,
    answer: StoredAnswer,
) -> Result<()> {
    idempotency_keys::Entity::update(idempotency_keys::ActiveModel {
        request_id: Set(request_id.to_owned()),
        resource_id: Set(answer.resource_id),
        response: Set(answer.response),
        ..Default::default()
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Marker error: the request id was already claimed; answer from the stored record.
pub(crate) fn already_claimed() -> Error {
    Error::Aborted {
        reason: Reason::RequestIdClaimed,
        message: "request id claimed by an earlier call".to_owned(),
        metadata: Vec::new(),
    }
}

/// Returns true for the marker of [`already_claimed`].
pub(crate) fn is_already_claimed(error: &Error) -> bool {
    matches!(
        error,
        Error::Aborted {
            reason: Reason::RequestIdClaimed,
            ..
        }
    )
}

impl Store {
    /// Returns the stored answer of an earlier call with `key.request_id`, if any.
    ///
    /// Fails with INVALID_ARGUMENT on `request_id` when the earlier call was a different request.
    pub async fn stored_answer(&self, key: &RequestKey) -> Result<Option<StoredAnswer>> {
        let Some(row) = idempotency_keys::Entity::find_by_id(key.request_id.clone())
            .one(self.connection())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        if row.method != key.method || row.request_hash != key.request_hash {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request; use a new UUID per request",
            ));
        }
        Ok(Some(StoredAnswer {
            resource_id: row.resource_id,
            response: row.response,
        }))
    }
}

impl Store {
    /// Runs a create or batch in one write transaction, at most once per request key.
    ///
    /// `work` returns the value and the answer to store with the key. A call whose key was seen
    /// before, or that loses a race for it to a concurrent copy, returns `replay(stored answer)`;
    /// a key reused for a different request is INVALID_ARGUMENT on `request_id`.
    pub(crate) async fn write_once<T, F, R, Fut>(
        &self,
        key: Option<RequestKey>,
        work: F,
        replay: R,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c sea_orm::DatabaseTransaction,
            ) -> super::TxFuture<'c, (T, StoredAnswer)>
            + Send
            + 'static,
        R: Fn(StoredAnswer) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        if let Some(key) = &key
            && let Some(answer) = self.stored_answer(key).await?
        {
            return replay(answer).await;
        }
        let claimed_key = key.clone();
        let result = self
            .write(move |transaction| {
                Box::pin(async move {
                    if let Some(key) = &claimed_key
                        && !claim(transaction, key).await?
                    {
                        return Err(already_claimed());
                    }
                    let (value, answer) = work(transaction).await?;
                    if let Some(key) = &claimed_key {
                        record_answer(transaction, &key.request_id, answer).await?;
                    }
                    Ok(value)
                })
            })
            .await;
        match (result, key) {
            (Err(error), Some(key)) if is_already_claimed(&error) => {
                let answer = self
                    .stored_answer(&key)
                    .await?
                    .ok_or_else(|| Error::internal("claimed request id has no record"))?;
                replay(answer).await
            }
            (result, _) => result,
        }
    }
}
