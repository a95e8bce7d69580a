//! `lms.v1.PersonService`.

use std::{collections::HashMap, pin::Pin};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{self, CallContext, Principal, Role, Scope};
use crate::domain::{
    category::{
        CategoryCode, CategoryField, CategoryPatch, CategoryState, NewCategory, ParticipantCategory,
    },
    field_mask,
    page::Page,
    person::{
        self, Person, PersonField, PersonPatch, PersonStatus, RawPersonRecord, RecordError,
        RecordOutcome, RecordResult, UpsertCounts, UpsertOutcome,
    },
};
use crate::error::{Error, Reason, Result};
use crate::pb;
use crate::store::{
    Store,
    person::{BatchRecord, PersonFilter},
};

/// Records applied per transaction by `ImportPeople`.
pub const IMPORT_CHUNK: usize = 2000;
/// Record errors returned by `ImportPeople` at most (the count has them all).
const MAX_IMPORT_ERRORS: usize = 1000;

/// Handlers of `PersonService`.
#[derive(Clone)]
pub struct PersonApi {
    store: Store,
}

impl PersonApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// Returns the participant category a deprecated proto sector names; `None` when unspecified or
/// unknown.
pub(crate) fn sector_from_proto(sector: i32) -> Option<CategoryCode> {
    match pb::Sector::try_from(sector).ok()? {
        pb::Sector::Unspecified => None,
        pb::Sector::Public => Some(CategoryCode::public()),
        pb::Sector::Private => Some(CategoryCode::private()),
    }
}

/// Returns the deprecated proto sector of a category: PUBLIC or PRIVATE for `public` and
/// `private`, else UNSPECIFIED.
pub(crate) fn sector_to_proto(category: &CategoryCode) -> pb::Sector {
    match category.as_str() {
        CategoryCode::PUBLIC => pb::Sector::Public,
        CategoryCode::PRIVATE => pb::Sector::Private,
        _ => pb::Sector::Unspecified,
    }
}

impl From<ParticipantCategory> for pb::ParticipantCategory {
    fn from(category: ParticipantCategory) -> Self {
        let state = match category.state {
            CategoryState::Active => pb::ParticipantCategoryState::Active,
            CategoryState::Archived => pb::ParticipantCategoryState::Archived,
        };
        Self {
            code: category.code.as_str().to_owned(),
            display_name: category.display_name,
            description: category.description,
            state: state.into(),
            etag: crate::domain::etag(category.revision),
            create_time: Some(super::timestamp(category.create_time)),
            update_time: Some(super::timestamp(category.update_time)),
        }
    }
}

fn category_state_from_proto(state: i32) -> Option<CategoryState> {
    match pb::ParticipantCategoryState::try_from(state).ok()? {
        pb::ParticipantCategoryState::Unspecified => None,
        pb::ParticipantCategoryState::Active => Some(CategoryState::Active),
        pb::ParticipantCategoryState::Archived => Some(CategoryState::Archived),
    }
}

fn status_from_proto(status: i32) -> Option<PersonStatus> {
    match pb::PersonStatus::try_from(status).ok()? {
        pb::PersonStatus::Unspecified => None,
        pb::PersonStatus::Active => Some(PersonStatus::Active),
        pb::PersonStatus::Inactive => Some(PersonStatus::Inactive),
    }
}

impl From<Person> for pb::Person {
    fn from(person: Person) -> Self {
        let sector = sector_to_proto(&person.values.category);
        let status = match person.values.status {
            PersonStatus::Active => pb::PersonStatus::Active,
            PersonStatus::Inactive => pb::PersonStatus::Inactive,
        };
        Self {
            id: person.id,
            external_id: person.external_id,
            full_name: person.values.full_name,
            email: person.values.email.unwrap_or_default(),
            organization_id: person.values.organization_id,
            sector: sector.into(),
            status: status.into(),
            etag: crate::domain::etag(person.revision),
            create_time: Some(super::timestamp(person.create_time)),
            update_time: Some(super::timestamp(person.update_time)),
            category: person.values.category.as_str().to_owned(),
        }
    }
}

impl From<UpsertCounts> for pb::UpsertCounts {
    fn from(counts: UpsertCounts) -> Self {
        Self {
            created: counts.created,
            updated: counts.updated,
            unchanged: counts.unchanged,
            failed: counts.failed,
        }
    }
}

impl From<RecordError> for pb::RecordError {
    fn from(error: RecordError) -> Self {
        Self {
            index: error.index,
            key: error.key,
            field: error.field,
            reason: error.reason,
            message: error.message,
        }
    }
}

impl From<RecordResult> for pb::PersonResult {
    fn from(result: RecordResult) -> Self {
        let outcome = match result.outcome {
            RecordOutcome::Created => pb::RecordOutcome::Created,
            RecordOutcome::Updated => pb::RecordOutcome::Updated,
            RecordOutcome::Unchanged => pb::RecordOutcome::Unchanged,
            RecordOutcome::Refused => pb::RecordOutcome::Refused,
        };
        let error = result.error.unwrap_or(RecordError {
            index: result.index,
            key: String::new(),
            field: String::new(),
            reason: String::new(),
            message: String::new(),
        });
        Self {
            index: result.index,
            external_id: result.external_id,
            id: result.id.unwrap_or_default(),
            outcome: outcome.into(),
            field: error.field,
            reason: error.reason,
            message: error.message,
        }
    }
}

/// Fails with PERMISSION_DENIED unless `principal` may read `person`, whose organisation has
/// the materialised path `organization_path` (a learner reads their own record), as `GetPerson`.
fn require_readable(
    principal: &Principal,
    person: &Person,
    organization_path: &str,
    what: &str,
) -> Result<()> {
    let is_self = principal.has(Role::Learner) && principal.subject == person.id;
    if is_self {
        return Ok(());
    }
    principal.read_scope().require_path(organization_path, what)
}

/// Returns the answer for an `external_id` no person has: NOT_FOUND for a caller who reads every
/// person, and otherwise the very refusal a person outside the caller's subtree gets (`what`
/// names the person as that refusal would), so that employee numbers cannot be probed for
/// existence outside the caller's reach.
fn missing_person(principal: &Principal, external_id: &str, what: &str) -> Error {
    if principal.read_scope() == Scope::All {
        Error::not_found("person", external_id)
    } else {
        auth::outside_organization_scope(what)
    }
}

/// Validates one record of a batch or stream at position `index`.
fn batch_record(index: i64, record: pb::PersonRecord) -> BatchRecord {
    let key = record.external_id.clone();
    let raw = RawPersonRecord {
        external_id: record.external_id,
        full_name: record.full_name,
        email: record.email,
        organization_id: record.organization_id,
        organization_external_code: record.organization_external_code,
        category: record.category,
        sector: sector_from_proto(record.sector),
        status: status_from_proto(record.status),
    };
    let validated = raw.validate().map_err(|(field, message)| RecordError {
        index,
        key,
        field: field.to_owned(),
        reason: Reason::InvalidField.as_str().to_owned(),
        message: format!("{field} {message}"),
    });
    (index, validated)
}

impl PersonApi {
    /// Returns the path prefix a listing is confined to, checking the requested subtree against the scope.
    async fn listing_prefix(
        &self,
        scope: &Scope,
        requested_root: Option<String>,
    ) -> Result<Option<String>> {
        let requested = match requested_root {
            Some(root) => Some(self.store.get_organization(&root).await?.path),
            None => None,
        };
        match (scope, requested) {
            (Scope::All, requested) => Ok(requested),
            (scope, Some(path)) => {
                scope.require_path(&path, "organization_subtree")?;
                Ok(Some(path))
            }
            (Scope::Subtree(root), None) => Ok(Some(self.store.get_organization(root).await?.path)),
            (Scope::Nothing, None) => Err(Error::permission_denied(
                Reason::OutsideOrganizationScope,
                "you may not list people",
            )),
        }
    }
}

#[tonic::async_trait]
impl pb::person_service_server::PersonService for PersonApi {
    async fn create_participant_category(
        &self,
        request: Request<pb::CreateParticipantCategoryRequest>,
    ) -> Result<Response<pb::ParticipantCategory>, Status> {
        let context = auth::context(&request)?;
        let category = request
            .into_inner()
            .category
            .ok_or_else(|| Error::invalid("category", "is required"))?;
        let new = NewCategory::parse(
            "category",
            &category.code,
            &category.display_name,
            &category.description,
        )?;
        let created = self
            .store
            .create_participant_category(context.audit(None), new)
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn list_participant_categories(
        &self,
        request: Request<pb::ListParticipantCategoriesRequest>,
    ) -> Result<Response<pb::ListParticipantCategoriesResponse>, Status> {
        let message = request.into_inner();
        let filters = format!("show_archived={}", message.show_archived);
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let (categories, next_page_token) = self
            .store
            .list_participant_categories(message.show_archived, &page)
            .await?;
        Ok(Response::new(pb::ListParticipantCategoriesResponse {
            categories: categories.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_participant_category(
        &self,
        request: Request<pb::UpdateParticipantCategoryRequest>,
    ) -> Result<Response<pb::ParticipantCategory>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let category = message
            .category
            .ok_or_else(|| Error::invalid("category", "is required"))?;
        let code = CategoryCode::parse(&category.code)
            .map_err(|why| Error::invalid("category.code", why))?;
        let paths = super::mask_paths(message.update_mask);
        if paths.iter().any(|path| path == "code") {
            return Err(Error::invalid(
                "update_mask",
                "code is the category's key and cannot change; create another category",
            )
            .into());
        }
        let state = match category.state {
            0 => None,
            value => Some(
                category_state_from_proto(value)
                    .ok_or_else(|| Error::invalid("category.state", "is not a known state"))?,
            ),
        };
        let fields = field_mask::resolve(
            &paths,
            CategoryField::parse,
            &CategoryField::OUTPUT_ONLY,
            &CategoryField::ALL,
            |field| match field {
                CategoryField::DisplayName => !category.display_name.is_empty(),
                CategoryField::Description => !category.description.is_empty(),
                CategoryField::State => state.is_some(),
            },
        )?;
        let patch = CategoryPatch::parse(
            "category",
            &fields,
            &category.display_name,
            &category.description,
            state,
        )?;
        let expected_revision = super::expected_revision("category.etag", &category.etag)?;
        let updated = self
            .store
            .update_participant_category(context.audit(None), code, patch, expected_revision)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn get_person(
        &self,
        request: Request<pb::GetPersonRequest>,
    ) -> Result<Response<pb::Person>, Status> {
        let context = auth::context(&request)?;
        let id = crate::domain::organization::required_id("id", &request.get_ref().id)?;
        let (person, organization_path) = self.store.get_person(&id).await?;
        require_readable(
            &context.principal,
            &person,
            &organization_path,
            "this person",
        )?;
        Ok(Response::new(person.into()))
    }

    async fn lookup_person(
        &self,
        request: Request<pb::LookupPersonRequest>,
    ) -> Result<Response<pb::Person>, Status> {
        let context = auth::context(&request)?;
        let external_id = person::parse_external_id("external_id", &request.get_ref().external_id)?;
        let (person, organization_path) = self
            .store
            .people_by_external_id(std::slice::from_ref(&external_id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| missing_person(&context.principal, &external_id, "this person"))?;
        require_readable(
            &context.principal,
            &person,
            &organization_path,
            "this person",
        )?;
        Ok(Response::new(person.into()))
    }

    async fn batch_lookup_people(
        &self,
        request: Request<pb::BatchLookupPeopleRequest>,
    ) -> Result<Response<pb::BatchLookupPeopleResponse>, Status> {
        let context = auth::context(&request)?;
        let keys = person::parse_lookup_keys(
            "external_ids",
            &request.get_ref().external_ids,
            person::parse_external_id,
        )?;
        let mut found: HashMap<String, (Person, String)> = self
            .store
            .people_by_external_id(&keys)
            .await?
            .into_iter()
            .map(|(person, path)| (person.external_id.clone(), (person, path)))
            .collect();
        // Every key is checked, in the order asked, before any person is returned: one out of
        // reach fails the call, and so does a missing one for a caller who does not read every
        // person (the same refusal, so existence outside the caller's reach stays hidden).
        for key in &keys {
            let what = format!("the person with external_id {key}");
            match found.get(key) {
                Some((person, path)) => require_readable(&context.principal, person, path, &what)?,
                None if context.principal.read_scope() != Scope::All => {
                    return Err(missing_person(&context.principal, key, &what).into());
                }
                None => {}
            }
        }
        let mut response = pb::BatchLookupPeopleResponse::default();
        for key in keys {
            match found.remove(&key) {
                Some((person, _)) => response.people.push(person.into()),
                None => response.missing_external_ids.push(key),
            }
        }
        Ok(Response::new(response))
    }

    async fn list_people(
        &self,
        request: Request<pb::ListPeopleRequest>,
    ) -> Result<Response<pb::ListPeopleResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let sector = match message.sector {
            0 => None,
            value => Some(
                sector_from_proto(value)
                    .ok_or_else(|| Error::invalid("sector", "is not a known sector"))?,
            ),
        };
        let category = person::resolve_category(&message.category, sector)
            .map_err(|why| Error::invalid("category", why))?;
        let status = match message.status {
            0 => None,
            value => Some(
                status_from_proto(value)
                    .ok_or_else(|| Error::invalid("status", "is not a known status"))?,
            ),
        };
        let root = crate::domain::organization::optional_id_or_error(
            "organization_subtree",
            &message.organization_subtree,
        )?;
        let external_id = match message.external_id.as_str() {
            "" => None,
            value => Some(person::parse_external_id("external_id", value)?),
        };
        let filters = format!(
            "subtree={};sector={};status={};external_id={};category={}",
            message.organization_subtree,
            message.sector,
            message.status,
            message.external_id,
            message.category
        );
        let page = Page::parse(message.page_size, &message.page_token, &filters)?;
        let filter = PersonFilter {
            organization_path_prefix: self
                .listing_prefix(&context.principal.read_scope(), root)
                .await?,
            category,
            status,
            external_id,
        };
        let (people, next_page_token) = self.store.list_people(&filter, &page).await?;
        Ok(Response::new(pb::ListPeopleResponse {
            people: people.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn update_person(
        &self,
        request: Request<pb::UpdatePersonRequest>,
    ) -> Result<Response<pb::Person>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let person = message
            .person
            .ok_or_else(|| Error::invalid("person", "is required"))?;
        let id = crate::domain::organization::required_id("person.id", &person.id)?;
        let paths = super::mask_paths(message.update_mask);
        if paths.iter().any(|path| path == "external_id") {
            return Err(Error::invalid(
                "update_mask",
                "external_id is the HR system's key and cannot change",
            )
            .into());
        }
        let sector = sector_from_proto(person.sector);
        let status = status_from_proto(person.status);
        let fields = field_mask::resolve(
            &paths,
            PersonField::parse,
            &PersonField::OUTPUT_ONLY,
            &PersonField::ALL,
            |field| match field {
                PersonField::FullName => !person.full_name.is_empty(),
                PersonField::Email => !person.email.is_empty(),
                PersonField::OrganizationId => !person.organization_id.is_empty(),
                PersonField::Category => sector.is_some() || !person.category.is_empty(),
                PersonField::Status => status.is_some(),
            },
        )?;
        let patch = PersonPatch::parse(
            "person",
            &fields,
            &person.full_name,
            &person.email,
            &person.organization_id,
            (&person.category, sector),
            status,
        )?;
        let expected_revision = super::expected_revision("person.etag", &person.etag)?;
        let updated = self
            .store
            .update_person(
                context.audit(None),
                context.principal.management_scope(),
                id,
                patch,
                expected_revision,
            )
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn batch_upsert_people(
        &self,
        request: Request<pb::BatchUpsertPeopleRequest>,
    ) -> Result<Response<pb::BatchUpsertPeopleResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        person::check_batch_size("people", message.people.len())?;
        let key = super::request_key(&context.method, &message.request_id, &message)?;
        let records: Vec<BatchRecord> = message
            .people
            .into_iter()
            .enumerate()
            .map(|(index, record)| batch_record(index as i64, record))
            .collect();
        let outcome = self
            .store
            .upsert_people(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                context.principal.management_scope(),
                records,
                key,
            )
            .await?;
        Ok(Response::new(pb::BatchUpsertPeopleResponse {
            counts: Some(outcome.counts.into()),
            errors: outcome.errors.into_iter().map(Into::into).collect(),
            results: outcome.results.into_iter().map(Into::into).collect(),
        }))
    }

    type SyncPeopleStream = SyncStream;

    async fn sync_people(
        &self,
        request: Request<Streaming<pb::SyncPeopleRequest>>,
    ) -> Result<Response<Self::SyncPeopleStream>, Status> {
        let context = auth::context(&request)?;
        let records = request.into_inner();
        // Two answers in flight at most: a client that stops reading stops the import too.
        let (sender, receiver) = mpsc::channel(2);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = sync(&store, &context, records, &sender).await {
                let _ = sender.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn import_people(
        &self,
        request: Request<Streaming<pb::ImportPeopleRequest>>,
    ) -> Result<Response<pb::ImportPeopleResponse>, Status> {
        let context = auth::context(&request)?;
        let scope = context.principal.management_scope();
        let mut total = UpsertOutcome::default();
        let incomplete = |total: &UpsertOutcome, received: i64, reason: Reason, message: String| {
            Error::Aborted {
                reason,
                message,
                metadata: vec![
                    ("received", received.to_string()),
                    ("applied", total.counts.applied().to_string()),
                    ("created", total.counts.created.to_string()),
                    ("updated", total.counts.updated.to_string()),
                    ("unchanged", total.counts.unchanged.to_string()),
                    ("failed", total.counts.failed.to_string()),
                ],
            }
        };
        // A reader task decodes the next chunk while this one is being applied.
        let mut incoming = read_import_chunks(request.into_inner());
        let (message, chunk, received) = loop {
            match incoming.recv().await {
                Some(Incoming::Chunk(records, received)) => {
                    match self
                        .store
                        .upsert_people(context.audit(None), scope.clone(), records, None)
                        .await
                    {
                        Ok(outcome) => merge(&mut total, outcome),
                        Err(error) => {
                            return Err(interrupted(&total, received, error, &incomplete).into());
                        }
                    }
                }
                Some(Incoming::Commit(commit, rest, through)) => break (commit, rest, through),
                Some(Incoming::Refused(status, through)) => {
                    return Err(refused_record(&status, through, &total).into());
                }
                Some(Incoming::Ended(through)) => {
                    return Err(incomplete(
                        &total,
                        through,
                        Reason::ImportNotCommitted,
                        "the stream ended without a commit message; the unfinished chunk was dropped".to_owned(),
                    )
                    .into());
                }
                None => return Err(Error::internal("the import reader stopped").into()),
            }
        };
        if message.record_count != received {
            return Err(incomplete(
                &total,
                received,
                Reason::ImportCountMismatch,
                format!(
                    "commit says {} records but {received} arrived; the unfinished chunk was dropped",
                    message.record_count
                ),
            )
            .into());
        }
        if !chunk.is_empty() {
            match self
                .store
                .upsert_people(context.audit(None), scope.clone(), chunk, None)
                .await
            {
                Ok(outcome) => merge(&mut total, outcome),
                Err(error) => {
                    return Err(interrupted(&total, received, error, &incomplete).into());
                }
            }
        }
        tracing::info!(
            received,
            created = total.counts.created,
            updated = total.counts.updated,
            "import committed"
        );
        Ok(Response::new(pb::ImportPeopleResponse {
            counts: Some(total.counts.into()),
            errors: total.errors.into_iter().map(Into::into).collect(),
            record_count: received,
        }))
    }
}

/// What an import's reader hands on, in stream order. Each carries how many records the stream
/// had sent by then.
enum Incoming {
    /// A full chunk, to apply.
    Chunk(Vec<BatchRecord>, i64),
    /// The commit message and the unfinished chunk before it.
    Commit(pb::ImportCommit, Vec<BatchRecord>, i64),
    /// A message refused before decoding (INVALID_ARGUMENT naming the field).
    Refused(Status, i64),
    /// The stream ended, or broke off, without a commit message.
    Ended(i64),
}

/// Reads an import stream into chunks on a task of its own, one chunk ahead of the writer:
/// decoding the next chunk overlaps applying this one, and a slow database still holds the
/// client back (the channel holds one chunk, then HTTP/2 flow control).
fn read_import_chunks(mut stream: Streaming<pb::ImportPeopleRequest>) -> mpsc::Receiver<Incoming> {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut received: i64 = 0;
        let mut chunk: Vec<BatchRecord> = Vec::with_capacity(IMPORT_CHUNK);
        let last = loop {
            let next = match stream.message().await {
                Ok(next) => next,
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    break Incoming::Refused(status, received);
                }
                Err(status) => {
                    tracing::info!(code = ?status.code(), received, "import stream broke off");
                    None
                }
            };
            match next.and_then(|request| request.message) {
                Some(pb::import_people_request::Message::Person(record)) => {
                    chunk.push(batch_record(received, record));
                    received += 1;
                    if chunk.len() == IMPORT_CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(IMPORT_CHUNK));
                        if sender.send(Incoming::Chunk(full, received)).await.is_err() {
                            // The call ended (a chunk failed): nothing more to read.
                            return;
                        }
                    }
                }
                Some(pb::import_people_request::Message::Commit(commit)) => {
                    break Incoming::Commit(commit, chunk, received);
                }
                None => break Incoming::Ended(received),
            }
        };
        let _ = sender.send(last).await;
    });
    receiver
}

/// Answers an import whose next message was refused before decoding (a control character in
/// a string): INVALID_ARGUMENT naming the field, saying which record it was and how far the
/// import got (whole chunks before it are applied; the unfinished one is dropped).
fn refused_record(status: &Status, received: i64, total: &UpsertOutcome) -> Error {
    use tonic_types::StatusExt as _;
    let processed = total.counts.applied() + total.counts.failed;
    let mut violations = crate::error::Violations::new();
    for violation in status
        .get_error_details()
        .bad_request()
        .map(|bad| bad.field_violations.clone())
        .unwrap_or_default()
    {
        violations.add(
            violation.field,
            format!(
                "record {received} of the stream {}; the first {processed} records are \
                 processed, the rest are not",
                violation.description
            ),
        );
    }
    if violations.is_empty() {
        violations.add(
            "person",
            format!("record {received} of the stream is malformed"),
        );
    }
    Error::InvalidArgument(violations)
}

/// Answers an import whose chunk could not be applied (the database refused it: full, lost,
/// busy): ABORTED with how far the import got, so the client re-sends from there; the cause's
/// reason and message ride along.
fn interrupted(
    total: &UpsertOutcome,
    received: i64,
    cause: Error,
    incomplete: &impl Fn(&UpsertOutcome, i64, Reason, String) -> Error,
) -> Error {
    let processed = total.counts.applied() + total.counts.failed;
    tracing::warn!(received, processed, error = %cause, "import interrupted by a failed chunk");
    let mut error = incomplete(
        total,
        received,
        Reason::ImportInterrupted,
        format!(
            "a chunk could not be applied ({cause}); the first {processed} records are \
             processed (applied, or refused in `errors`); re-send the rest (re-sending all is \
             safe: the import is idempotent by external_id)"
        ),
    );
    if let Error::Aborted { metadata, .. } = &mut error {
        metadata.push(("cause", cause.reason()));
    }
    error
}

/// Adds a chunk's outcome to an import's totals; per-record results are not kept (`SyncPeople`
/// sends them as each chunk commits instead).
fn merge(total: &mut UpsertOutcome, outcome: UpsertOutcome) {
    total.counts.add(outcome.counts);
    let room = MAX_IMPORT_ERRORS.saturating_sub(total.errors.len());
    total.errors.extend(outcome.errors.into_iter().take(room));
}

/// The answers of `SyncPeople`.
type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncPeopleResponse, Status>> + Send>>;

/// Returns the ABORTED answer of a sync that did not finish, with how far it got.
fn sync_incomplete(total: &UpsertOutcome, received: i64, reason: Reason, message: String) -> Error {
    Error::Aborted {
        reason,
        message,
        metadata: vec![
            ("received", received.to_string()),
            ("applied", total.counts.applied().to_string()),
            ("created", total.counts.created.to_string()),
            ("updated", total.counts.updated.to_string()),
            ("unchanged", total.counts.unchanged.to_string()),
            ("failed", total.counts.failed.to_string()),
        ],
    }
}

/// Runs one `SyncPeople` stream: applies each full chunk and answers it with its records'
/// results, then the last chunk once the commit message checks out. Returns quietly when the
/// client stops listening; an error is the stream's final status.
async fn sync(
    store: &Store,
    context: &CallContext,
    mut records: Streaming<pb::SyncPeopleRequest>,
    sender: &mpsc::Sender<Result<pb::SyncPeopleResponse, Status>>,
) -> Result<()> {
    let scope = context.principal.management_scope();
    let mut received: i64 = 0;
    let mut total = UpsertOutcome::default();
    let mut chunk: Vec<BatchRecord> = Vec::with_capacity(IMPORT_CHUNK);
    loop {
        let next = match records.message().await {
            Ok(next) => next,
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                return Err(refused_record(&status, received, &total));
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), received, "sync stream broke off");
                None
            }
        };
        let commit = match next.and_then(|request| request.message) {
            Some(pb::sync_people_request::Message::Person(record)) => {
                chunk.push(batch_record(received, record));
                received += 1;
                if chunk.len() < IMPORT_CHUNK {
                    continue;
                }
                None
            }
            Some(pb::sync_people_request::Message::Commit(commit)) => Some(commit),
            None => {
                return Err(sync_incomplete(
                    &total,
                    received,
                    Reason::ImportNotCommitted,
                    "the stream ended without a commit message; the unanswered records were dropped"
                        .to_owned(),
                ));
            }
        };
        if let Some(commit) = &commit
            && commit.record_count != received
        {
            return Err(sync_incomplete(
                &total,
                received,
                Reason::ImportCountMismatch,
                format!(
                    "commit says {} records but {received} arrived; the unanswered records were dropped",
                    commit.record_count
                ),
            ));
        }
        let mut results = Vec::new();
        if !chunk.is_empty() {
            let batch = std::mem::take(&mut chunk);
            let outcome = match store
                .upsert_people(context.audit(None), scope.clone(), batch, None)
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    return Err(interrupted(&total, received, error, &sync_incomplete));
                }
            };
            results = outcome.results.clone();
            merge(&mut total, outcome);
        }
        let committed = commit.is_some();
        let answer = pb::SyncPeopleResponse {
            results: results.into_iter().map(Into::into).collect(),
            counts: Some(total.counts.into()),
            record_count: received,
            committed,
        };
        if sender.send(Ok(answer)).await.is_err() {
            tracing::info!(received, "sync client stopped listening");
            return Ok(());
        }
        if committed {
            tracing::info!(
                received,
                created = total.counts.created,
                updated = total.counts.updated,
                "sync committed"
            );
            return Ok(());
        }
    }
}
