//! Certification: tracks, candidacies and their audited transitions, supervised deliveries,
//! certificates (issued exactly once per cycle), status lists, the trainer standings the delivery
//! rules read, and the cascade lineage (a closure table kept up to date as edges are added).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait as _, FromQueryResult, PaginatorTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Statement,
};
use serde_json::json;

use super::entity::certification::{
    candidacies, candidacy_history, cascade_edges, cascade_lineage, certificates,
    certification_track_assessors, certification_tracks, supervised_deliveries,
};
use super::entity::delivery::training_sessions;
use super::entity::programme::enrollments;
use super::entity::{organizations, people};
use super::idempotency::{RequestKey, StoredAnswer};
use super::programme::for_update;
use super::{Store, audit, db_error, is_unique_violation, statement};
use crate::domain::audit::{AuditChange, AuditContext};
use crate::domain::certification::Candidacy;
use crate::domain::certification::{
    CandidacyEvent, CandidacyState, CandidacyTransition, CandidacyView, CascadeNode, CascadeReach,
    Certificate, CertificateAction, CertificateStatus, Evidence, Requirements, STATUS_LIST_SIZE,
    SupervisedDelivery, SupervisedOutcome, Track, TrackLevel, TrackScope, Verification,
    certificate_change, certificate_status_at, effective_candidacy_state, expiry_after,
    new_verification_code, normalize_verification_code, renewal_deadline, scope_covers, transition,
};
use crate::domain::delivery::{LapsedCertificate, SessionState, TrainerStanding};
use crate::domain::event::NewEvent;
use crate::domain::page::Page;
use crate::domain::programme::{EnrollmentState, Visibility};
use crate::error::{Error, Reason, Result};

/// Advisory lock serialising cascade lineage updates on PostgreSQL (closure rows derive from
/// each other, so two concurrent edge inserts must see each other's rows).
const LINEAGE_LOCK: i64 = 72010005;
/// Largest cascade depth returned by `GetCascade`.
pub const MAX_CASCADE_DEPTH: i32 = 10;

fn json_list(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

fn parse_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|error| Error::internal(format!("stored id list is not JSON: {error}")))
}

pub(crate) async fn advisory_lock(transaction: &DatabaseTransaction, key: i64) -> Result<()> {
    if transaction.get_database_backend() == DbBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [key.into()],
            ))
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversions

pub(crate) fn track_from(model: certification_tracks::Model) -> Result<Track> {
    Ok(Track {
        level: TrackLevel::parse(&model.level)
            .ok_or_else(|| Error::internal("stored track level is unknown"))?,
        scope: TrackScope::parse(&model.scope)
            .ok_or_else(|| Error::internal("stored track scope is unknown"))?,
        qualifies_course_ids: parse_list(&model.qualifies_course_ids)?,
        qualifies_module_ids: parse_list(&model.qualifies_module_ids)?,
        requirements: Requirements {
            trainer_course_version_ids: parse_list(&model.trainer_course_version_ids)?,
            min_assessment_score: model.min_assessment_score,
            supervised_deliveries_required: model.supervised_deliveries_required,
            assessor_approval_required: model.assessor_approval_required,
        },
        id: model.id,
        code: model.code,
        title: model.title,
        validity_months: model.validity_months,
        issuer_organization_id: model.issuer_organization_id,
        candidacy_days: model.candidacy_days,
        assessor_ids: Vec::new(),
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn track_active(track: &Track) -> certification_tracks::ActiveModel {
    certification_tracks::ActiveModel {
        id: Set(track.id.clone()),
        code: Set(track.code.clone()),
        title: Set(track.title.clone()),
        level: Set(track.level.as_str().to_owned()),
        qualifies_course_ids: Set(json_list(&track.qualifies_course_ids)),
        qualifies_module_ids: Set(json_list(&track.qualifies_module_ids)),
        trainer_course_version_ids: Set(json_list(&track.requirements.trainer_course_version_ids)),
        min_assessment_score: Set(track.requirements.min_assessment_score),
        supervised_deliveries_required: Set(track.requirements.supervised_deliveries_required),
        assessor_approval_required: Set(track.requirements.assessor_approval_required),
        validity_months: Set(track.validity_months),
        scope: Set(track.scope.as_str().to_owned()),
        issuer_organization_id: Set(track.issuer_organization_id.clone()),
        candidacy_days: Set(track.candidacy_days),
        revision: Set(track.revision),
        create_time: Set(track.create_time),
        update_time: Set(track.update_time),
    }
}

fn candidacy_from(model: candidacies::Model) -> Result<Candidacy> {
    Ok(Candidacy {
        state: CandidacyState::parse(&model.state)
            .ok_or_else(|| Error::internal("stored candidacy state is unknown"))?,
        id: model.id,
        track_id: model.track_id,
        person_id: model.person_id,
        cycle: model.cycle,
        deadline_time: model.deadline_time,
        assessment_score: model.assessment_score,
        assessor_approved: model.assessor_approved,
        certificate_id: model.certificate_id,
        renews_certificate_id: model.renews_certificate_id,
        revision: model.revision,
        create_time: model.create_time,
        update_time: model.update_time,
    })
}

fn candidacy_active(candidacy: &Candidacy) -> candidacies::ActiveModel {
    candidacies::ActiveModel {
        id: Set(candidacy.id.clone()),
        track_id: Set(candidacy.track_id.clone()),
        person_id: Set(candidacy.person_id.clone()),
        state: Set(candidacy.state.as_str().to_owned()),
        cycle: Set(candidacy.cycle),
        deadline_time: Set(candidacy.deadline_time),
        assessment_score: Set(candidacy.assessment_score),
        assessor_approved: Set(candidacy.assessor_approved),
        certificate_id: Set(candidacy.certificate_id.clone()),
        revision: Set(candidacy.revision),
        create_time: Set(candidacy.create_time),
        update_time: Set(candidacy.update_time),
        renews_certificate_id: Set(candidacy.renews_certificate_id.clone()),
    }
}

pub(crate) fn certificate_from(model: certificates::Model) -> Result<Certificate> {
    Ok(Certificate {
        status: CertificateStatus::parse(&model.status)
            .ok_or_else(|| Error::internal("stored certificate status is unknown"))?,
        id: model.id,
        verification_code: model.verification_code,
        person_id: model.person_id,
        track_id: model.track_id,
        candidacy_id: model.candidacy_id,
        cycle: model.cycle,
        issued_time: model.issued_time,
        expires_time: model.expires_time,
        status_reason: model.status_reason,
        issuer_organization_id: model.issuer_organization_id,
        status_list_index: model.status_list_index,
        revision: model.revision,
    })
}

fn certificate_active(certificate: &Certificate, now: DateTime<Utc>) -> certificates::ActiveModel {
    certificates::ActiveModel {
        id: Set(certificate.id.clone()),
        verification_code: Set(certificate.verification_code.clone()),
        person_id: Set(certificate.person_id.clone()),
        track_id: Set(certificate.track_id.clone()),
        candidacy_id: Set(certificate.candidacy_id.clone()),
        cycle: Set(certificate.cycle),
        issued_time: Set(certificate.issued_time),
        expires_time: Set(certificate.expires_time),
        status: Set(certificate.status.as_str().to_owned()),
        status_reason: Set(certificate.status_reason.clone()),
        issuer_organization_id: Set(certificate.issuer_organization_id.clone()),
        status_list_index: Set(certificate.status_list_index),
        revision: Set(certificate.revision),
        create_time: Set(now),
        update_time: Set(now),
        expiry_announced_time: Set(None),
    }
}

fn certificate_json(certificate: &Certificate) -> serde_json::Value {
    json!({
        "id": certificate.id, "person_id": certificate.person_id, "track_id": certificate.track_id,
        "candidacy_id": certificate.candidacy_id, "cycle": certificate.cycle,
        "status": certificate.status.as_str(), "status_reason": certificate.status_reason,
        "expires_time": certificate.expires_time.to_rfc3339(),
    })
}

fn candidacy_json(candidacy: &Candidacy) -> serde_json::Value {
    json!({
        "id": candidacy.id, "track_id": candidacy.track_id, "person_id": candidacy.person_id,
        "state": candidacy.state.as_str(), "cycle": candidacy.cycle,
        "deadline_time": candidacy.deadline_time.to_rfc3339(),
        "assessment_score": candidacy.assessment_score, "assessor_approved": candidacy.assessor_approved,
        "renews_certificate_id": candidacy.renews_certificate_id,
    })
}

// ---------------------------------------------------------------------------------------------
// Loading

async fn load_track(connection: &impl ConnectionTrait, id: &str) -> Result<Track> {
    let model = certification_tracks::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("certification_track", id))?;
    track_from(model)
}

/// Fills the assessor ids of `tracks` (one query).
async fn fill_assessors(connection: &impl ConnectionTrait, tracks: &mut [Track]) -> Result<()> {
    if tracks.is_empty() {
        return Ok(());
    }
    let rows = certification_track_assessors::Entity::find()
        .filter(
            certification_track_assessors::Column::TrackId
                .is_in(tracks.iter().map(|track| track.id.clone())),
        )
        .order_by_asc(certification_track_assessors::Column::PersonId)
        .all(connection)
        .await
        .map_err(db_error)?;
    for track in tracks.iter_mut() {
        track.assessor_ids = rows
            .iter()
            .filter(|row| row.track_id == track.id)
            .map(|row| row.person_id.clone())
            .collect();
    }
    Ok(())
}

/// Replaces the assessor rows of `track` with its `assessor_ids`, which must name existing people.
async fn save_assessors(
    transaction: &DatabaseTransaction,
    track: &Track,
    field: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let found = people::Entity::find()
        .filter(people::Column::Id.is_in(track.assessor_ids.iter().cloned()))
        .count(transaction)
        .await
        .map_err(db_error)?;
    if found != track.assessor_ids.len() as u64 {
        return Err(Error::invalid(field, "must name existing people"));
    }
    certification_track_assessors::Entity::delete_many()
        .filter(certification_track_assessors::Column::TrackId.eq(track.id.as_str()))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    if track.assessor_ids.is_empty() {
        return Ok(());
    }
    certification_track_assessors::Entity::insert_many(track.assessor_ids.iter().map(
        |person_id| certification_track_assessors::ActiveModel {
            track_id: Set(track.id.clone()),
            person_id: Set(person_id.clone()),
            create_time: Set(now),
        },
    ))
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Who a candidacy or certificate is about, for the scope checks of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The candidate or holder.
    pub person_id: String,
    /// The materialised path of their organisation.
    pub organization_path: String,
    /// The track.
    pub track_id: String,
}

#[derive(Debug, FromQueryResult)]
struct HoldingRow {
    person_id: String,
    organization_path: String,
    track_id: String,
}

async fn lock_candidacy(transaction: &DatabaseTransaction, id: &str) -> Result<Candidacy> {
    let model = for_update(candidacies::Entity::find_by_id(id.to_owned()), transaction)
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("candidacy", id))?;
    candidacy_from(model)
}

async fn lock_certificate(transaction: &DatabaseTransaction, id: &str) -> Result<Certificate> {
    let model = for_update(certificates::Entity::find_by_id(id.to_owned()), transaction)
        .one(transaction)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("certificate", id))?;
    certificate_from(model)
}

async fn load_certificate(connection: &impl ConnectionTrait, id: &str) -> Result<Certificate> {
    let model = certificates::Entity::find_by_id(id.to_owned())
        .one(connection)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("certificate", id))?;
    certificate_from(model)
}

async fn certificate_expiry(
    connection: &impl ConnectionTrait,
    candidacy: &Candidacy,
) -> Result<Option<DateTime<Utc>>> {
    let Some(id) = &candidacy.certificate_id else {
        return Ok(None);
    };
    Ok(certificates::Entity::find_by_id(id.clone())
        .one(connection)
        .await
        .map_err(db_error)?
        .map(|model| model.expires_time))
}

async fn passed_supervised_deliveries(
    connection: &impl ConnectionTrait,
    candidacy_id: &str,
) -> Result<i32> {
    let count = supervised_deliveries::Entity::find()
        .filter(supervised_deliveries::Column::CandidacyId.eq(candidacy_id))
        .filter(supervised_deliveries::Column::Outcome.eq(SupervisedOutcome::Passed.as_str()))
        .count(connection)
        .await
        .map_err(db_error)?;
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

async fn effective_state(
    connection: &impl ConnectionTrait,
    candidacy: &Candidacy,
    now: DateTime<Utc>,
) -> Result<CandidacyState> {
    let expiry = certificate_expiry(connection, candidacy).await?;
    Ok(effective_candidacy_state(
        candidacy.state,
        candidacy.deadline_time,
        expiry,
        now,
    ))
}

async fn person_path(connection: &impl ConnectionTrait, person_id: &str) -> Result<String> {
    super::programme::person_organization_path(connection, person_id).await
}

fn new_event(
    event_type: &'static str,
    subject_id: &str,
    person_id: &str,
    path: Option<String>,
    payload: serde_json::Value,
) -> NewEvent {
    NewEvent {
        event_type,
        subject_id: subject_id.to_owned(),
        person_id: Some(person_id.to_owned()),
        organization_path: path,
        payload,
    }
}

/// Appends a history row of a candidacy moving `from` -> `to`.
async fn append_history(
    transaction: &DatabaseTransaction,
    candidacy_id: &str,
    from: CandidacyState,
    to: CandidacyState,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    candidacy_history::Entity::insert(candidacy_history::ActiveModel {
        id: Set(crate::domain::new_id()),
        candidacy_id: Set(candidacy_id.to_owned()),
        from_state: Set(from.as_str().to_owned()),
        to_state: Set(to.as_str().to_owned()),
        reason: Set(reason.to_owned()),
        actor: Set(actor.to_owned()),
        time: Set(now),
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

fn check_revision(
    resource: &'static str,
    id: &str,
    current: i64,
    expected: Option<i64>,
) -> Result<()> {
    match expected {
        Some(expected) if expected != current => Err(Error::EtagMismatch {
            resource,
            id: id.to_owned(),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Trainer standings (read by the delivery rules)

/// What the delivery rules need to know about a session.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryFacts {
    /// Module delivered.
    pub(crate) module_id: String,
    /// Its course.
    pub(crate) course_id: String,
    /// Organisation paths of the cohort's active learners.
    pub(crate) learner_paths: Vec<String>,
}

/// Returns the standing of each of `person_ids` for a session with `facts`, at `now`.
pub(crate) async fn trainer_standings(
    connection: &impl ConnectionTrait,
    facts: &DeliveryFacts,
    person_ids: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<TrainerStanding>> {
    let ids: Vec<String> = person_ids.to_vec();
    let people_found = people::Entity::find()
        .filter(people::Column::Id.is_in(ids.clone()))
        .all(connection)
        .await
        .map_err(db_error)?;
    let names: HashMap<String, String> = people_found
        .iter()
        .map(|person| (person.id.clone(), person.full_name.clone()))
        .collect();
    let holders: HashMap<String, String> = people_found
        .into_iter()
        .map(|person| (person.id, person.organization_id))
        .collect();
    for id in &ids {
        if !holders.contains_key(id) {
            return Err(Error::not_found("person", id));
        }
    }
    // Every certificate of the trainers (a handful each): the current ones decide, the others
    // name what lapsed when none is current.
    let (certificates, former): (Vec<_>, Vec<_>) = certificates::Entity::find()
        .filter(certificates::Column::PersonId.is_in(ids.clone()))
        .all(connection)
        .await
        .map_err(db_error)?
        .into_iter()
        .partition(|certificate| {
            certificate.status == CertificateStatus::Active.as_str()
                && certificate.expires_time > now
        });
    let practising = candidacies::Entity::find()
        .filter(candidacies::Column::PersonId.is_in(ids.clone()))
        .filter(candidacies::Column::State.eq(CandidacyState::SupervisedPractice.as_str()))
        .filter(candidacies::Column::DeadlineTime.gte(now))
        .all(connection)
        .await
        .map_err(db_error)?;
    let track_ids: HashSet<String> = certificates
        .iter()
        .chain(former.iter())
        .map(|certificate| certificate.track_id.clone())
        .chain(
            practising
                .iter()
                .map(|candidacy| candidacy.track_id.clone()),
        )
        .collect();
    let tracks: HashMap<String, Track> = if track_ids.is_empty() {
        HashMap::new()
    } else {
        certification_tracks::Entity::find()
            .filter(certification_tracks::Column::Id.is_in(track_ids))
            .all(connection)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|model| track_from(model).map(|track| (track.id.clone(), track)))
            .collect::<Result<_>>()?
    };
    let qualifies = |track_id: &str| {
        tracks
            .get(track_id)
            .is_some_and(|track| track.qualifies_for(&facts.module_id, &facts.course_id))
    };
    Ok(ids
        .iter()
        .map(|person_id| {
            let holder_organization = holders.get(person_id).cloned().unwrap_or_default();
            let mine = certificates
                .iter()
                .filter(|certificate| &certificate.person_id == person_id)
                .filter(|certificate| qualifies(&certificate.track_id));
            let mut certified_for_module = false;
            let mut certified_in_scope = false;
            for certificate in mine {
                certified_for_module = true;
                if let Some(track) = tracks.get(&certificate.track_id)
                    && scope_covers(track.scope, &holder_organization, &facts.learner_paths)
                {
                    certified_in_scope = true;
                }
            }
            let lapsed_certificate = if certified_for_module {
                None
            } else {
                former
                    .iter()
                    .filter(|certificate| &certificate.person_id == person_id)
                    .filter(|certificate| qualifies(&certificate.track_id))
                    .max_by_key(|certificate| certificate.expires_time)
                    .map(|certificate| LapsedCertificate {
                        id: certificate.id.clone(),
                        verification_code: certificate.verification_code.clone(),
                        track_title: tracks
                            .get(&certificate.track_id)
                            .map(|track| track.title.clone())
                            .unwrap_or_default(),
                        status: certificate.status.clone(),
                        expire_date: certificate.expires_time.format("%Y-%m-%d").to_string(),
                    })
            };
            TrainerStanding {
                person_id: person_id.clone(),
                full_name: names.get(person_id).cloned().unwrap_or_default(),
                lapsed_certificate,
                certified_for_module,
                certified_in_scope,
                practising_candidate: practising.iter().any(|candidacy| {
                    &candidacy.person_id == person_id && qualifies(&candidacy.track_id)
                }),
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Cascade

/// Records that `trainer_id` trained `trainee_id` (`kind`: SESSION or SUPERVISION, from
/// `source_id`) and extends the lineage: every ancestor of the trainer becomes an ancestor of
/// the trainee and of the trainee's descendants, at the shortest depth. An edge that would close
/// a cycle is kept as an edge but does not enter the lineage.
pub(crate) async fn add_cascade_edge(
    transaction: &DatabaseTransaction,
    trainer_id: &str,
    trainee_id: &str,
    kind: &str,
    source_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if trainer_id == trainee_id {
        return Ok(());
    }
    let backend = transaction.get_database_backend();
    let inserted = transaction
        .execute_raw(statement(
            backend,
            "INSERT INTO cascade_edges (trainer_id, trainee_id, kind, source_id, create_time) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (trainer_id, trainee_id) DO NOTHING",
            vec![
                trainer_id.into(),
                trainee_id.into(),
                kind.into(),
                source_id.into(),
                now.into(),
            ],
        ))
        .await
        .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Ok(());
    }
    advisory_lock(transaction, LINEAGE_LOCK).await?;
    let closes_cycle =
        cascade_lineage::Entity::find_by_id((trainee_id.to_owned(), trainer_id.to_owned()))
            .one(transaction)
            .await
            .map_err(db_error)?
            .is_some();
    if closes_cycle {
        return Ok(());
    }
    let keep_shortest = if backend == DbBackend::Postgres {
        "LEAST(cascade_lineage.depth, excluded.depth)"
    } else {
        "MIN(cascade_lineage.depth, excluded.depth)"
    };
    let sql = format!(
        "INSERT INTO cascade_lineage (ancestor_id, descendant_id, depth) \
         SELECT a.ancestor_id, d.descendant_id, MIN(a.depth + 1 + d.depth) \
         FROM (SELECT ancestor_id, depth FROM cascade_lineage WHERE descendant_id = $1 \
               UNION ALL SELECT CAST($1 AS VARCHAR(36)), 0) a \
         CROSS JOIN (SELECT descendant_id, depth FROM cascade_lineage WHERE ancestor_id = $2 \
               UNION ALL SELECT CAST($2 AS VARCHAR(36)), 0) d \
         WHERE a.ancestor_id <> d.descendant_id \
         GROUP BY a.ancestor_id, d.descendant_id \
         ON CONFLICT (ancestor_id, descendant_id) DO UPDATE SET depth = {keep_shortest}"
    );
    transaction
        .execute_raw(statement(
            backend,
            &sql,
            vec![trainer_id.into(), trainee_id.into()],
        ))
        .await
        .map_err(db_error)?;
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct ReachRow {
    depth: i32,
    organization_id: String,
    people: i64,
    certified: i64,
}

#[derive(Debug, FromQueryResult)]
struct NodeRow {
    person_id: String,
    depth: i32,
    full_name: String,
    organization_id: String,
    organization_path: String,
}

// ---------------------------------------------------------------------------------------------
// Store methods

/// New track, validated.
pub type NewTrack = Track;

impl Store {
    /// Creates a track; its issuer, trainer course versions (published) and qualifying courses and
    /// modules must exist.
    pub async fn create_track(
        &self,
        context: AuditContext,
        track: NewTrack,
        key: Option<RequestKey>,
    ) -> Result<Track> {
        self.write_once(
            key,
            move |transaction| {
                Box::pin(async move {
                    super::organization::load(transaction, &track.issuer_organization_id).await?;
                    check_references(transaction, &track).await?;
                    let taken = certification_tracks::Entity::find()
                        .filter(certification_tracks::Column::Code.eq(track.code.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?;
                    if let Some(taken) = taken {
                        return Err(Error::AlreadyExists {
                            resource: "certification_track",
                            field: "code",
                            value: track.code.clone(),
                            existing_id: Some(taken.id),
                        });
                    }
                    certification_tracks::Entity::insert(track_active(&track))
                        .exec(transaction)
                        .await
                        .map_err(|error| {
                            if is_unique_violation(&error) {
                                Error::AlreadyExists {
                                    resource: "certification_track",
                                    field: "code",
                                    value: track.code.clone(),
                                    existing_id: None,
                                }
                            } else {
                                db_error(error)
                            }
                        })?;
                    save_assessors(transaction, &track, "track.assessor_ids", track.create_time)
                        .await?;
                    let change = AuditChange::new(
                        "certification_track",
                        &track.id,
                        &json!({"code": track.code, "title": track.title, "level": track.level.as_str(), "assessor_ids": track.assessor_ids}),
                    );
                    audit::append(transaction, &context, vec![change]).await?;
                    let answer = StoredAnswer::created(&track.id);
                    Ok((track, answer))
                })
            },
            |answer| async move { self.get_track(&answer.into_resource_id()?).await },
        )
        .await
    }

    /// Returns one track with its assessors.
    pub async fn get_track(&self, id: &str) -> Result<Track> {
        let mut track = load_track(self.connection(), id).await?;
        fill_assessors(self.connection(), std::slice::from_mut(&mut track)).await?;
        Ok(track)
    }

    /// Replaces the assessors of a track (people who must exist); bumps its revision.
    pub async fn set_track_assessors(
        &self,
        context: AuditContext,
        id: String,
        assessor_ids: Vec<String>,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Track> {
        self.write(move |transaction| {
            Box::pin(async move {
                let model = for_update(
                    certification_tracks::Entity::find_by_id(id.clone()),
                    transaction,
                )
                .one(transaction)
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("certification_track", &id))?;
                let mut track = track_from(model)?;
                check_revision(
                    "certification_track",
                    &id,
                    track.revision,
                    expected_revision,
                )?;
                track.assessor_ids = assessor_ids;
                track.revision += 1;
                track.update_time = now;
                certification_tracks::Entity::update(track_active(&track))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                save_assessors(transaction, &track, "assessor_ids", now).await?;
                let change = AuditChange::new(
                    "certification_track",
                    &track.id,
                    &json!({"assessor_ids": track.assessor_ids}),
                );
                audit::append(transaction, &context, vec![change]).await?;
                Ok(track)
            })
        })
        .await
    }

    /// Returns the tracks naming `person_id` as an assessor.
    pub async fn assessed_track_ids(&self, person_id: &str) -> Result<HashSet<String>> {
        let rows = certification_track_assessors::Entity::find()
            .filter(certification_track_assessors::Column::PersonId.eq(person_id))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(|row| row.track_id).collect())
    }

    /// Returns the people holding a candidacy (in any state) on a track `person_id` assesses.
    pub async fn assessed_candidate_ids(&self, person_id: &str) -> Result<HashSet<String>> {
        #[derive(Debug, FromQueryResult)]
        struct CandidateRow {
            person_id: String,
        }
        let rows = CandidateRow::find_by_statement(statement(
            self.backend(),
            "SELECT DISTINCT c.person_id AS person_id FROM candidacies c \
             JOIN certification_track_assessors a ON a.track_id = c.track_id \
             WHERE a.person_id = $1",
            vec![person_id.into()],
        ))
        .all(self.connection())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|row| row.person_id).collect())
    }

    /// Returns who candidacy `id` is about.
    pub async fn candidacy_holding(&self, id: &str) -> Result<Holding> {
        self.holding(
            "SELECT c.person_id AS person_id, o.path AS organization_path, c.track_id AS track_id \
             FROM candidacies c JOIN people p ON p.id = c.person_id \
             JOIN organizations o ON o.id = p.organization_id WHERE c.id = $1",
            id,
        )
        .await?
        .ok_or_else(|| Error::not_found("candidacy", id))
    }

    /// Returns who certificate `id` is about.
    pub async fn certificate_holding(&self, id: &str) -> Result<Holding> {
        self.holding(
            "SELECT c.person_id AS person_id, o.path AS organization_path, c.track_id AS track_id \
             FROM certificates c JOIN people p ON p.id = c.person_id \
             JOIN organizations o ON o.id = p.organization_id WHERE c.id = $1",
            id,
        )
        .await?
        .ok_or_else(|| Error::not_found("certificate", id))
    }

    async fn holding(&self, sql: &str, id: &str) -> Result<Option<Holding>> {
        let row = HoldingRow::find_by_statement(statement(self.backend(), sql, vec![id.into()]))
            .one(self.connection())
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| Holding {
            person_id: row.person_id,
            organization_path: row.organization_path,
            track_id: row.track_id,
        }))
    }

    /// Lists tracks by id.
    pub async fn list_tracks(&self, page: &Page) -> Result<(Vec<Track>, String)> {
        let mut query = certification_tracks::Entity::find();
        if let Some(after) = &page.after {
            query = query.filter(certification_tracks::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(certification_tracks::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(track_from)
            .collect::<Result<Vec<_>>>()?;
        let (mut tracks, next) = page.finish(rows, |track| track.id.clone());
        fill_assessors(self.connection(), &mut tracks).await?;
        Ok((tracks, next))
    }

    /// Opens a candidacy in state CANDIDATE with a deadline `candidacy_days` after `now`.
    pub async fn create_candidacy(
        &self,
        context: AuditContext,
        track_id: String,
        person_id: String,
        key: Option<RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<CandidacyView> {
        let id = self
            .write_once(
                key,
                move |transaction| {
                    Box::pin(async move {
                        let track = load_track(transaction, &track_id).await?;
                        let path = person_path(transaction, &person_id).await?;
                        // One open candidacy per person and track: serialise openings of one person.
                        for_update(people::Entity::find_by_id(person_id.clone()), transaction)
                            .one(transaction)
                            .await
                            .map_err(db_error)?;
                        let existing = candidacies::Entity::find()
                            .filter(candidacies::Column::PersonId.eq(person_id.as_str()))
                            .filter(candidacies::Column::TrackId.eq(track_id.as_str()))
                            .all(transaction)
                            .await
                            .map_err(db_error)?;
                        for model in existing {
                            let candidacy = candidacy_from(model)?;
                            let state = effective_state(transaction, &candidacy, now).await?;
                            if state.is_unfinished()
                                || matches!(state, CandidacyState::Certified | CandidacyState::Suspended)
                            {
                                return Err(Error::FailedPrecondition {
                                    metadata: Vec::new(),
                                    reason: Reason::CandidacyExists,
                                    subject: format!("candidacy/{}", candidacy.id),
                                    message: format!(
                                        "the person already has a candidacy on this track in state {}",
                                        state.as_str()
                                    ),
                                });
                            }
                        }
                        let candidacy = Candidacy {
                            id: crate::domain::new_id(),
                            track_id,
                            person_id,
                            state: CandidacyState::Candidate,
                            cycle: 0,
                            deadline_time: now + chrono::Duration::days(i64::from(track.candidacy_days)),
                            assessment_score: None,
                            assessor_approved: false,
                            certificate_id: None,
                            renews_certificate_id: None,
                            revision: 1,
                            create_time: now,
                            update_time: now,
                        };
                        candidacies::Entity::insert(candidacy_active(&candidacy))
                            .exec(transaction)
                            .await
                            .map_err(db_error)?;
                        append_history(
                            transaction,
                            &candidacy.id,
                            CandidacyState::Candidate,
                            CandidacyState::Candidate,
                            "candidacy opened",
                            &context.actor,
                            now,
                        )
                        .await?;
                        audit::append(
                            transaction,
                            &context,
                            vec![AuditChange::new("candidacy", &candidacy.id, &candidacy_json(&candidacy))],
                        )
                        .await?;
                        super::event::append(
                            transaction,
                            vec![new_event(
                                "candidacy.changed",
                                &candidacy.id,
                                &candidacy.person_id,
                                Some(path),
                                json!({"candidacy_id": candidacy.id, "track_id": candidacy.track_id, "state": "CANDIDATE"}),
                            )],
                        )
                        .await?;
                        let answer = StoredAnswer::created(&candidacy.id);
                        Ok((candidacy.id, answer))
                    })
                },
                |answer| async move { answer.into_resource_id() },
            )
            .await?;
        self.get_candidacy(&id, now).await
    }

    /// Returns a candidacy with its state at `now`, its evidence counts and history.
    pub async fn get_candidacy(&self, id: &str, now: DateTime<Utc>) -> Result<CandidacyView> {
        let model = candidacies::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("candidacy", id))?;
        let candidacy = candidacy_from(model)?;
        let history = candidacy_history::Entity::find()
            .filter(candidacy_history::Column::CandidacyId.eq(id))
            .order_by_asc(candidacy_history::Column::Time)
            .order_by_asc(candidacy_history::Column::Id)
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| {
                Ok(CandidacyTransition {
                    from_state: CandidacyState::parse(&row.from_state)
                        .ok_or_else(|| Error::internal("stored state is unknown"))?,
                    to_state: CandidacyState::parse(&row.to_state)
                        .ok_or_else(|| Error::internal("stored state is unknown"))?,
                    reason: row.reason,
                    actor: row.actor,
                    time: row.time,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut view = self.candidacy_view(candidacy, now).await?;
        view.history = history;
        Ok(view)
    }

    async fn candidacy_view(
        &self,
        candidacy: Candidacy,
        now: DateTime<Utc>,
    ) -> Result<CandidacyView> {
        let effective_state = effective_state(self.connection(), &candidacy, now).await?;
        let passed = passed_supervised_deliveries(self.connection(), &candidacy.id).await?;
        Ok(CandidacyView {
            candidacy,
            effective_state,
            passed_supervised_deliveries: passed,
            history: Vec::new(),
        })
    }

    /// Lists candidacies by id, optionally of one track and/or person, of the rows `visibility`
    /// shows (`None`: every row).
    pub async fn list_candidacies(
        &self,
        track_id: Option<&str>,
        person_id: Option<&str>,
        visibility: Option<&Visibility>,
        page: &Page,
        now: DateTime<Utc>,
    ) -> Result<(Vec<CandidacyView>, String)> {
        let mut query = candidacies::Entity::find();
        if let Some(visibility) = visibility {
            query = query.filter(super::programme::visible_rows(
                visibility,
                "candidacies",
                "person_id",
                None,
                Some("track_id"),
            ));
        }
        if let Some(track_id) = track_id {
            query = query.filter(candidacies::Column::TrackId.eq(track_id));
        }
        if let Some(person_id) = person_id {
            query = query.filter(candidacies::Column::PersonId.eq(person_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(candidacies::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(candidacies::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let (rows, next) = page.finish(rows, |row| row.id.clone());
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.candidacy_view(candidacy_from(row)?, now).await?);
        }
        Ok((views, next))
    }

    /// Returns true when `person_id` completed every course version of `version_ids` (from the
    /// enrolments' state or their derived progress).
    async fn training_complete(&self, person_id: &str, version_ids: &[String]) -> Result<bool> {
        if version_ids.is_empty() {
            return Ok(true);
        }
        let enrollments = enrollments::Entity::find()
            .filter(enrollments::Column::PersonId.eq(person_id))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let mut completed: HashSet<String> = HashSet::new();
        for enrollment in enrollments {
            if matches!(
                EnrollmentState::parse(&enrollment.state),
                Some(EnrollmentState::Withdrawn | EnrollmentState::Waitlisted) | None
            ) {
                continue;
            }
            let pinned = parse_list(&enrollment.course_version_ids)?;
            if !pinned.iter().any(|id| version_ids.contains(id)) {
                continue;
            }
            if EnrollmentState::parse(&enrollment.state) == Some(EnrollmentState::Completed) {
                completed.extend(pinned);
                continue;
            }
            let (_, view, _) = self.enrollment_progress(&enrollment.id).await?;
            completed.extend(
                view.courses
                    .into_iter()
                    .filter(|course| course.completed)
                    .map(|course| course.course_version_id),
            );
        }
        Ok(version_ids.iter().all(|id| completed.contains(id)))
    }

    /// Applies `event` (a transition RPC with `reason`) to candidacy `id` at `now`.
    ///
    /// The evidence is gathered, the pure state machine decides, and the change, its history row,
    /// the audit entry and the feed event are written in one transaction. Revoking or withdrawing
    /// a certified candidacy revokes its current certificate too. With `then_issue`, the
    /// certificate is issued in the same transaction (as [`Store::issue_certificate`]): all or
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_candidacy(
        &self,
        context: AuditContext,
        id: String,
        event: CandidacyEvent,
        reason: String,
        expected_revision: Option<i64>,
        assessment: Option<(i32, bool)>,
        new_deadline: Option<DateTime<Utc>>,
        then_issue: bool,
        now: DateTime<Utc>,
    ) -> Result<CandidacyView> {
        let snapshot = candidacies::Entity::find_by_id(id.clone())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("candidacy", &id))?;
        let track = load_track(self.connection(), &snapshot.track_id).await?;
        let training_complete = self
            .training_complete(
                &snapshot.person_id,
                &track.requirements.trainer_course_version_ids,
            )
            .await?;
        let candidacy_id = id.clone();
        self.write(move |transaction| {
            Box::pin(async move {
                let mut candidacy = lock_candidacy(transaction, &id).await?;
                check_revision("candidacy", &id, candidacy.revision, expected_revision)?;
                let state = effective_state(transaction, &candidacy, now).await?;
                let evidence = Evidence {
                    training_complete,
                    passed_supervised_deliveries: passed_supervised_deliveries(transaction, &id)
                        .await?,
                    assessment_score: candidacy.assessment_score,
                    assessor_approved: candidacy.assessor_approved,
                };
                let next = transition(state, event, &track.requirements, &evidence)
                    .map_err(|refusal| refusal.into_error(format!("candidacy/{id}")))?;
                if let Some((score, approved)) = assessment {
                    candidacy.assessment_score = Some(score);
                    candidacy.assessor_approved = approved;
                }
                if let Some(deadline) = new_deadline {
                    if deadline <= candidacy.deadline_time || deadline <= now {
                        return Err(Error::invalid(
                            "deadline_time",
                            "must be later than the current deadline and than now",
                        ));
                    }
                    candidacy.deadline_time = deadline;
                }
                let stored_next = match next {
                    // Derived states are never stored: an extension revives a lapsed candidacy.
                    CandidacyState::Lapsed | CandidacyState::Expired => candidacy.state,
                    other => other,
                };
                let mut changes = Vec::new();
                let mut events = Vec::new();
                let path = person_path(transaction, &candidacy.person_id).await?;
                if matches!(next, CandidacyState::Revoked | CandidacyState::Withdrawn)
                    && let Some(certificate_id) = candidacy.certificate_id.clone()
                {
                    let mut certificate = lock_certificate(transaction, &certificate_id).await?;
                    if matches!(
                        certificate.status,
                        CertificateStatus::Active | CertificateStatus::Suspended
                    ) {
                        certificate.status = CertificateStatus::Revoked;
                        certificate.status_reason = reason.clone();
                        certificate.revision += 1;
                        save_certificate_status(transaction, &certificate, now).await?;
                        changes.push(AuditChange::new(
                            "certificate",
                            &certificate.id,
                            &certificate_json(&certificate),
                        ));
                        events.push(new_event(
                            "certificate.changed",
                            &certificate.id,
                            &certificate.person_id,
                            Some(path.clone()),
                            json!({"certificate_id": certificate.id, "status": "REVOKED", "reason": reason}),
                        ));
                    }
                }
                let from = state;
                candidacy.state = stored_next;
                candidacy.revision += 1;
                candidacy.update_time = now;
                candidacies::Entity::update(candidacy_active(&candidacy))
                    .exec(transaction)
                    .await
                    .map_err(db_error)?;
                append_history(transaction, &id, from, next, &reason, &context.actor, now).await?;
                changes.push(AuditChange::new(
                    "candidacy",
                    &id,
                    &json!({"candidacy": candidacy_json(&candidacy), "reason": reason}),
                ));
                events.push(new_event(
                    "candidacy.changed",
                    &id,
                    &candidacy.person_id,
                    Some(path),
                    json!({"candidacy_id": id, "track_id": candidacy.track_id, "from_state": from.as_str(), "state": next.as_str()}),
                ));
                audit::append(transaction, &context, changes).await?;
                super::event::append(transaction, events).await?;
                if then_issue {
                    certify_in(transaction, &context, &track, training_complete, &id, &reason, now)
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
        self.get_candidacy(&candidacy_id, now).await
    }

    /// Records the lead's sign-off of a candidate's co-delivery of a delivered session. Who may
    /// (the session's lead, or an admin) is checked before (`auth::scope`).
    pub async fn record_supervised_delivery(
        &self,
        context: AuditContext,
        session_id: String,
        candidate_id: String,
        outcome: SupervisedOutcome,
        notes: String,
        now: DateTime<Utc>,
    ) -> Result<SupervisedDelivery> {
        self.write(move |transaction| {
            Box::pin(async move {
                let session = for_update(
                    training_sessions::Entity::find_by_id(session_id.clone()),
                    transaction,
                )
                .one(transaction)
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("session", &session_id))?;
                if SessionState::parse(&session.state) != Some(SessionState::Delivered) {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::SessionNotDelivered,
                        subject: format!("session/{session_id}"),
                        message: "a supervised delivery is signed off after the session is marked delivered".to_owned(),
                    });
                }
                let co_trainers = parse_list(&session.co_trainer_ids)?;
                if !co_trainers.contains(&candidate_id) {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::NotACoTrainer,
                        subject: format!("person/{candidate_id}"),
                        message: "the candidate did not co-deliver this session".to_owned(),
                    });
                }
                let course_id = super::delivery::course_of_version(transaction, &session.course_version_id).await?;
                let mut chosen = None;
                for model in candidacies::Entity::find()
                    .filter(candidacies::Column::PersonId.eq(candidate_id.as_str()))
                    .order_by_asc(candidacies::Column::Id)
                    .all(transaction)
                    .await
                    .map_err(db_error)?
                {
                    let candidacy = candidacy_from(model)?;
                    let track = load_track(transaction, &candidacy.track_id).await?;
                    let state = effective_state(transaction, &candidacy, now).await?;
                    if state == CandidacyState::SupervisedPractice
                        && track.qualifies_for(&session.module_id, &course_id)
                    {
                        chosen = Some(candidacy);
                        break;
                    }
                }
                let candidacy = chosen.ok_or_else(|| Error::FailedPrecondition {
                    metadata: Vec::new(),
                    reason: Reason::NoCandidacyInPractice,
                    subject: format!("person/{candidate_id}"),
                    message: "the person has no candidacy in SUPERVISED_PRACTICE on a track qualifying for this module".to_owned(),
                })?;
                let delivery = SupervisedDelivery {
                    session_id: session_id.clone(),
                    candidate_id: candidate_id.clone(),
                    candidacy_id: candidacy.id.clone(),
                    supervisor_id: session.lead_trainer_id.clone(),
                    outcome,
                    notes,
                    record_time: now,
                };
                let existing = supervised_deliveries::Entity::find_by_id((session_id.clone(), candidate_id.clone()))
                    .one(transaction)
                    .await
                    .map_err(db_error)?;
                let row = supervised_deliveries::ActiveModel {
                    session_id: Set(delivery.session_id.clone()),
                    candidate_id: Set(delivery.candidate_id.clone()),
                    candidacy_id: Set(delivery.candidacy_id.clone()),
                    supervisor_id: Set(delivery.supervisor_id.clone()),
                    outcome: Set(delivery.outcome.as_str().to_owned()),
                    notes: Set(delivery.notes.clone()),
                    record_time: Set(now),
                };
                if existing.is_some() {
                    supervised_deliveries::Entity::update(row).exec(transaction).await.map_err(db_error)?;
                } else {
                    supervised_deliveries::Entity::insert(row).exec(transaction).await.map_err(db_error)?;
                }
                let change = AuditChange::new(
                    "supervised_delivery",
                    &format!("{session_id}/{candidate_id}"),
                    &json!({"candidacy_id": delivery.candidacy_id, "outcome": delivery.outcome.as_str(), "supervisor_id": delivery.supervisor_id}),
                );
                audit::append(transaction, &context, vec![change]).await?;
                Ok(delivery)
            })
        })
        .await
    }

    /// Certifies a candidacy AWAITING_ASSESSMENT whose every requirement is met and issues its
    /// certificate: exactly one per candidacy and cycle. The candidacy row is locked, so a racing
    /// call waits and then returns the certificate the first one issued; the unique
    /// (candidacy, cycle) index is the backstop across replicas. A renewal candidacy's certificate
    /// supersedes the certificate it renews (see [`certify_in`]).
    pub async fn issue_certificate(
        &self,
        context: AuditContext,
        candidacy_id: String,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Certificate> {
        let snapshot = candidacies::Entity::find_by_id(candidacy_id.clone())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("candidacy", &candidacy_id))?;
        let track = load_track(self.connection(), &snapshot.track_id).await?;
        let training_complete = self
            .training_complete(
                &snapshot.person_id,
                &track.requirements.trainer_course_version_ids,
            )
            .await?;
        let id = candidacy_id.clone();
        let result = self
            .write(move |transaction| {
                Box::pin(async move {
                    certify_in(
                        transaction,
                        &context,
                        &track,
                        training_complete,
                        &id,
                        &reason,
                        now,
                    )
                    .await
                })
            })
            .await;
        match result {
            Err(Error::AlreadyExists { .. }) => {
                // Another replica won the race on the unique (candidacy, cycle) index.
                let model = candidacies::Entity::find_by_id(candidacy_id.clone())
                    .one(self.connection())
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("candidacy", &candidacy_id))?;
                let certificate_id = model
                    .certificate_id
                    .ok_or_else(|| Error::internal("certificate race left no certificate"))?;
                load_certificate(self.connection(), &certificate_id).await
            }
            other => other,
        }
    }

    /// Returns one certificate.
    pub async fn get_certificate(&self, id: &str) -> Result<Certificate> {
        load_certificate(self.connection(), id).await
    }

    /// Lists certificates by id, optionally of one person and/or track, of the rows `visibility`
    /// shows (`None`: every row).
    pub async fn list_certificates(
        &self,
        person_id: Option<&str>,
        track_id: Option<&str>,
        visibility: Option<&Visibility>,
        page: &Page,
    ) -> Result<(Vec<Certificate>, String)> {
        let mut query = certificates::Entity::find();
        if let Some(visibility) = visibility {
            query = query.filter(super::programme::visible_rows(
                visibility,
                "certificates",
                "person_id",
                None,
                Some("track_id"),
            ));
        }
        if let Some(person_id) = person_id {
            query = query.filter(certificates::Column::PersonId.eq(person_id));
        }
        if let Some(track_id) = track_id {
            query = query.filter(certificates::Column::TrackId.eq(track_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(certificates::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(certificates::Column::Id)
            .limit(page.size + 1)
            .all(&self.reader())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(certificate_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(rows, |certificate| certificate.id.clone()))
    }

    /// Renews, suspends, reinstates or revokes a certificate at `now`; the candidacy follows.
    /// Returns the certificate now current (the new one, after a renewal).
    pub async fn change_certificate(
        &self,
        context: AuditContext,
        id: String,
        action: CertificateAction,
        reason: String,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Certificate> {
        self.write(move |transaction| {
            Box::pin(async move {
                // An open renewal candidacy of a certificate renewed or revoked here ends with it;
                // it is locked first, the order `certify_in` takes the rows in.
                let renewal = if matches!(action, CertificateAction::Renew | CertificateAction::Revoke) {
                    match candidacies::Entity::find()
                        .filter(candidacies::Column::RenewsCertificateId.eq(id.as_str()))
                        .one(transaction)
                        .await
                        .map_err(db_error)?
                    {
                        Some(model) => Some(lock_candidacy(transaction, &model.id).await?),
                        None => None,
                    }
                } else {
                    None
                };
                let snapshot = load_certificate(transaction, &id).await?;
                let mut candidacy = lock_candidacy(transaction, &snapshot.candidacy_id).await?;
                let mut certificate = lock_certificate(transaction, &id).await?;
                check_revision("certificate", &id, certificate.revision, expected_revision)?;
                let track = load_track(transaction, &certificate.track_id).await?;
                let status_now = certificate_status_at(certificate.status, certificate.expires_time, now);
                let new_status = certificate_change(status_now, action)
                    .map_err(|refusal| refusal.into_error(format!("certificate/{id}")))?;
                let candidacy_event = match action {
                    CertificateAction::Renew => CandidacyEvent::Renew,
                    CertificateAction::Suspend => CandidacyEvent::Suspend,
                    CertificateAction::Reinstate => CandidacyEvent::Reinstate,
                    CertificateAction::Revoke => CandidacyEvent::Revoke,
                };
                let is_current = candidacy.certificate_id.as_deref() == Some(id.as_str());
                let candidacy_before = effective_state(transaction, &candidacy, now).await?;
                let mut changes = Vec::new();
                let path = person_path(transaction, &certificate.person_id).await?;
                let mut events = Vec::new();
                certificate.status = new_status;
                certificate.status_reason = reason.clone();
                certificate.revision += 1;
                save_certificate_status(transaction, &certificate, now).await?;
                changes.push(AuditChange::new("certificate", &certificate.id, &json!({"certificate": certificate_json(&certificate), "reason": reason})));
                events.push(new_event(
                    "certificate.changed",
                    &certificate.id,
                    &certificate.person_id,
                    Some(path.clone()),
                    json!({"certificate_id": certificate.id, "status": new_status.as_str(), "reason": reason}),
                ));
                let mut current = certificate.clone();
                if is_current {
                    let candidacy_after = transition(
                        candidacy_before,
                        candidacy_event,
                        &track.requirements,
                        &Evidence::default(),
                    )
                    .map_err(|refusal| refusal.into_error(format!("candidacy/{}", candidacy.id)))?;
                    if action == CertificateAction::Renew {
                        let renewed = new_certificate(transaction, &track, &candidacy, candidacy.cycle + 1, now).await?;
                        candidacy.cycle = renewed.cycle;
                        candidacy.certificate_id = Some(renewed.id.clone());
                        changes.push(AuditChange::new("certificate", &renewed.id, &certificate_json(&renewed)));
                        events.push(new_event(
                            "certificate.issued",
                            &renewed.id,
                            &renewed.person_id,
                            Some(path.clone()),
                            json!({"certificate_id": renewed.id, "candidacy_id": candidacy.id, "track_id": renewed.track_id,
                                   "cycle": renewed.cycle, "renews": certificate.id, "expires_time": renewed.expires_time.to_rfc3339()}),
                        ));
                        current = renewed;
                    }
                    candidacy.state = candidacy_after;
                    candidacy.revision += 1;
                    candidacy.update_time = now;
                    candidacies::Entity::update(candidacy_active(&candidacy))
                        .exec(transaction)
                        .await
                        .map_err(db_error)?;
                    append_history(transaction, &candidacy.id, candidacy_before, candidacy_after, &reason, &context.actor, now).await?;
                    changes.push(AuditChange::new("candidacy", &candidacy.id, &candidacy_json(&candidacy)));
                } else if action == CertificateAction::Renew {
                    return Err(Error::FailedPrecondition {
                        metadata: Vec::new(),
                        reason: Reason::CertificateNotCurrent,
                        subject: format!("certificate/{id}"),
                        message: "only the candidacy's current certificate can be renewed".to_owned(),
                    });
                }
                if let Some(mut renewal) = renewal {
                    let before = effective_state(transaction, &renewal, now).await?;
                    if renewal.state.is_unfinished() {
                        renewal.state = CandidacyState::Withdrawn;
                        renewal.revision += 1;
                        renewal.update_time = now;
                        candidacies::Entity::update(candidacy_active(&renewal))
                            .exec(transaction)
                            .await
                            .map_err(db_error)?;
                        let why = format!("the certificate it renews was {}: {reason}", new_status.as_str().to_lowercase());
                        append_history(transaction, &renewal.id, before, CandidacyState::Withdrawn, &why, &context.actor, now).await?;
                        changes.push(AuditChange::new("candidacy", &renewal.id, &json!({"candidacy": candidacy_json(&renewal), "reason": why})));
                        events.push(new_event(
                            "candidacy.changed",
                            &renewal.id,
                            &renewal.person_id,
                            Some(path.clone()),
                            json!({"candidacy_id": renewal.id, "track_id": renewal.track_id, "from_state": before.as_str(),
                                   "state": CandidacyState::Withdrawn.as_str()}),
                        ));
                    }
                }
                audit::append(transaction, &context, changes).await?;
                super::event::append(transaction, events).await?;
                Ok(current)
            })
        })
        .await
    }

    /// Returns what a verifier may learn about the certificate with verification code `typed`.
    pub async fn verify_certificate(
        &self,
        typed: &str,
        now: DateTime<Utc>,
    ) -> Result<Verification> {
        let code = normalize_verification_code(typed).ok_or_else(|| {
            Error::invalid(
                "verification_code",
                "is not a verification code (XXXX-XXXX-XXXX)",
            )
        })?;
        let model = certificates::Entity::find()
            .filter(certificates::Column::VerificationCode.eq(code.as_str()))
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("certificate", &code))?;
        let certificate = certificate_from(model)?;
        let holder = people::Entity::find_by_id(certificate.person_id.clone())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("certificate holder is missing"))?;
        let track = load_track(self.connection(), &certificate.track_id).await?;
        let issuer =
            super::organization::load(self.connection(), &certificate.issuer_organization_id)
                .await?;
        Ok(Verification {
            status: certificate_status_at(certificate.status, certificate.expires_time, now),
            certificate,
            holder_name: holder.full_name,
            track,
            issuer_name: issuer.name,
        })
    }

    /// Returns the issuing organisations of every track (id and name), by id.
    pub async fn issuer_organizations(&self, only: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut query = certification_tracks::Entity::find();
        if let Some(only) = only {
            query = query.filter(certification_tracks::Column::IssuerOrganizationId.eq(only));
        }
        let ids: HashSet<String> = query
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|track| track.issuer_organization_id)
            .collect();
        let mut issuers = Vec::new();
        for id in ids {
            let organization = super::organization::load(self.connection(), &id).await?;
            issuers.push((organization.id, organization.name));
        }
        issuers.sort();
        Ok(issuers)
    }

    /// Returns the status-list positions of an issuer's certificates whose stored status is `status`.
    pub async fn status_list_positions(
        &self,
        issuer_organization_id: &str,
        status: CertificateStatus,
    ) -> Result<Vec<i32>> {
        Ok(certificates::Entity::find()
            .filter(certificates::Column::IssuerOrganizationId.eq(issuer_organization_id))
            .filter(certificates::Column::Status.eq(status.as_str()))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|certificate| certificate.status_list_index)
            .collect())
    }

    /// Lists holders of an active, unexpired certificate, by certificate id; of one track, or of
    /// tracks qualifying for one module.
    pub async fn list_certified_trainers(
        &self,
        track_id: Option<&str>,
        module_id: Option<&str>,
        page: &Page,
        now: DateTime<Utc>,
    ) -> Result<(Vec<(Certificate, people::Model, String)>, String)> {
        let mut query = certificates::Entity::find()
            .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
            .filter(certificates::Column::ExpiresTime.gt(now));
        if let Some(track_id) = track_id {
            query = query.filter(certificates::Column::TrackId.eq(track_id));
        }
        if let Some(module_id) = module_id {
            let module =
                super::entity::catalogue::course_modules::Entity::find_by_id(module_id.to_owned())
                    .one(self.connection())
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::not_found("module", module_id))?;
            let course_id =
                super::delivery::course_of_version(self.connection(), &module.course_version_id)
                    .await?;
            let qualifying: Vec<String> = certification_tracks::Entity::find()
                .all(self.connection())
                .await
                .map_err(db_error)?
                .into_iter()
                .map(track_from)
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|track| track.qualifies_for(module_id, &course_id))
                .map(|track| track.id)
                .collect();
            query = query.filter(certificates::Column::TrackId.is_in(qualifying));
        }
        if let Some(after) = &page.after {
            query = query.filter(certificates::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(certificates::Column::Id)
            .limit(page.size + 1)
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let (rows, next) = page.finish(rows, |row| row.id.clone());
        let person_ids: Vec<String> = rows.iter().map(|row| row.person_id.clone()).collect();
        let people_by_id: HashMap<String, people::Model> = people::Entity::find()
            .filter(people::Column::Id.is_in(person_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|person| (person.id.clone(), person))
            .collect();
        let organization_ids: HashSet<String> = people_by_id
            .values()
            .map(|person| person.organization_id.clone())
            .collect();
        let paths: HashMap<String, String> = organizations::Entity::find()
            .filter(organizations::Column::Id.is_in(organization_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|organization| (organization.id, organization.path))
            .collect();
        let mut trainers = Vec::with_capacity(rows.len());
        for row in rows {
            let person = people_by_id
                .get(&row.person_id)
                .cloned()
                .ok_or_else(|| Error::internal("certificate holder is missing"))?;
            let path = paths
                .get(&person.organization_id)
                .cloned()
                .unwrap_or_default();
            trainers.push((certificate_from(row)?, person, path));
        }
        Ok((trainers, next))
    }

    /// Returns the people below `person_id` down to `depth` levels, by level then person id.
    pub async fn cascade(
        &self,
        person_id: &str,
        depth: i32,
        page: &Page,
    ) -> Result<(Vec<CascadeNode>, String)> {
        people::Entity::find_by_id(person_id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("person", person_id))?;
        let (after_depth, after_id) = match &page.after {
            Some(key) => key
                .split_once('|')
                .and_then(|(depth, id)| {
                    depth
                        .parse::<i32>()
                        .ok()
                        .map(|depth| (depth, id.to_owned()))
                })
                .ok_or_else(|| {
                    Error::invalid("page_token", "is not a token this service issued")
                })?,
            None => (0, String::new()),
        };
        let backend = self.backend();
        let rows = NodeRow::find_by_statement(statement(
            backend,
            "SELECT l.descendant_id AS person_id, l.depth AS depth, p.full_name AS full_name, \
                    p.organization_id AS organization_id, o.path AS organization_path \
             FROM cascade_lineage l JOIN people p ON p.id = l.descendant_id \
             JOIN organizations o ON o.id = p.organization_id \
             WHERE l.ancestor_id = $1 AND l.depth <= $2 \
               AND (l.depth > $3 OR (l.depth = $3 AND l.descendant_id > $4)) \
             ORDER BY l.depth, l.descendant_id LIMIT $5",
            vec![
                person_id.into(),
                depth.into(),
                after_depth.into(),
                after_id.into(),
                i64::try_from(page.size + 1).unwrap_or(i64::MAX).into(),
            ],
        ))
        .all(self.connection())
        .await
        .map_err(db_error)?;
        let (rows, next) = page.finish(rows, |row| format!("{}|{}", row.depth, row.person_id));
        let ids: Vec<String> = rows.iter().map(|row| row.person_id.clone()).collect();
        let edges = cascade_edges::Entity::find()
            .filter(cascade_edges::Column::TraineeId.is_in(ids.clone()))
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let trainer_ids: Vec<String> = edges.iter().map(|edge| edge.trainer_id.clone()).collect();
        let trainer_depths: HashMap<String, i32> = cascade_lineage::Entity::find()
            .filter(cascade_lineage::Column::AncestorId.eq(person_id))
            .filter(cascade_lineage::Column::DescendantId.is_in(trainer_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| (row.descendant_id, row.depth))
            .chain(std::iter::once((person_id.to_owned(), 0)))
            .collect();
        let certified: HashSet<String> = certificates::Entity::find()
            .filter(certificates::Column::PersonId.is_in(ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|certificate| certificate.person_id)
            .collect();
        Ok((
            rows.into_iter()
                .map(|row| {
                    let mut trained_by: Vec<String> = edges
                        .iter()
                        .filter(|edge| edge.trainee_id == row.person_id)
                        .filter(|edge| {
                            trainer_depths.get(&edge.trainer_id) == Some(&(row.depth - 1))
                        })
                        .map(|edge| edge.trainer_id.clone())
                        .collect();
                    trained_by.sort();
                    CascadeNode {
                        certified: certified.contains(&row.person_id),
                        person_id: row.person_id,
                        full_name: row.full_name,
                        organization_id: row.organization_id,
                        organization_path: row.organization_path,
                        depth: row.depth,
                        trained_by,
                    }
                })
                .collect(),
            next,
        ))
    }

    /// Returns how many people `person_id` reached, per level and per organisation (rolled up to
    /// `organization_level` of the tree: 1 = top-level organisations; 0 = own organisation).
    /// One grouped query over the lineage (no graph walk); the roll-up is over organisations only.
    pub async fn cascade_reach(
        &self,
        person_id: &str,
        organization_level: i32,
    ) -> Result<CascadeReach> {
        people::Entity::find_by_id(person_id.to_owned())
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found("person", person_id))?;
        // One pass over the trainer's lineage rows (an index range on ancestor_id), joined to
        // people for their current organisation: counts per (level, organisation).
        let rows = ReachRow::find_by_statement(statement(
            self.backend(),
            "SELECT l.depth AS depth, p.organization_id AS organization_id, COUNT(*) AS people, \
                    COUNT(c.person_id) AS certified \
             FROM cascade_lineage l JOIN people p ON p.id = l.descendant_id \
             LEFT JOIN (SELECT DISTINCT person_id FROM certificates) c ON c.person_id = l.descendant_id \
             WHERE l.ancestor_id = $1 GROUP BY l.depth, p.organization_id",
            vec![person_id.into()],
        ))
        .all(self.connection())
        .await
        .map_err(db_error)?;
        let mut levels: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        let mut by_organization: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in &rows {
            let level = levels.entry(row.depth).or_default();
            level.0 += row.people;
            level.1 += row.certified;
            let organization = by_organization
                .entry(row.organization_id.clone())
                .or_default();
            organization.0 += row.people;
            organization.1 += row.certified;
        }
        let organization_ids: Vec<String> = by_organization.keys().cloned().collect();
        let paths: HashMap<String, String> = organizations::Entity::find()
            .filter(organizations::Column::Id.is_in(organization_ids))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|organization| (organization.id, organization.path))
            .collect();
        let mut rolled: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (organization_id, (people, certified)) in &by_organization {
            let target = match (organization_level, paths.get(organization_id)) {
                (level, Some(path)) if level > 0 => path
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .nth(usize::try_from(level - 1).unwrap_or(0))
                    .map(str::to_owned)
                    .unwrap_or_else(|| organization_id.clone()),
                _ => organization_id.clone(),
            };
            let entry = rolled.entry(target).or_default();
            entry.0 += people;
            entry.1 += certified;
        }
        let names: HashMap<String, String> = organizations::Entity::find()
            .filter(organizations::Column::Id.is_in(rolled.keys().cloned().collect::<Vec<_>>()))
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|organization| (organization.id, organization.name))
            .collect();
        let mut organizations: Vec<(String, String, i64, i64)> = rolled
            .into_iter()
            .map(|(id, (people, certified))| {
                let name = names.get(&id).cloned().unwrap_or_default();
                (id, name, people, certified)
            })
            .collect();
        organizations.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        Ok(CascadeReach {
            total_people: levels.values().map(|level| level.0).sum(),
            total_certified_trainers: levels.values().map(|level| level.1).sum(),
            levels: levels
                .into_iter()
                .map(|(depth, (people, certified))| (depth, people, certified))
                .collect(),
            organizations,
        })
    }
}

async fn save_certificate_status(
    transaction: &DatabaseTransaction,
    certificate: &Certificate,
    now: DateTime<Utc>,
) -> Result<()> {
    certificates::Entity::update(certificates::ActiveModel {
        id: Set(certificate.id.clone()),
        status: Set(certificate.status.as_str().to_owned()),
        status_reason: Set(certificate.status_reason.clone()),
        revision: Set(certificate.revision),
        update_time: Set(now),
        ..Default::default()
    })
    .exec(transaction)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Certifies candidacy `id` in `transaction` (the body of [`Store::issue_certificate`]): checks
/// every requirement, issues the certificate, records the cascade edges from the supervisors of
/// its passed deliveries, and writes the history, audit entry and events. A candidacy certified
/// already in this cycle returns its certificate.
///
/// A renewal candidacy (`renews_certificate_id`) continues the certification it renews: its
/// certificate takes the next cycle, the renewed certificate (ACTIVE or EXPIRED, else
/// CERTIFICATE_NOT_CURRENT) becomes SUPERSEDED and the candidacy holding it RENEWED. Rows are
/// locked renewal candidacy, renewed candidacy, renewed certificate: the order
/// [`Store::change_certificate`] takes them in.
async fn certify_in(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    track: &Track,
    training_complete: bool,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Certificate> {
    let mut candidacy = lock_candidacy(transaction, id).await?;
    if candidacy.state == CandidacyState::Certified
        && let Some(certificate_id) = &candidacy.certificate_id
    {
        // Issued already in this cycle (a retry or a racing call): that certificate.
        return load_certificate(transaction, certificate_id).await;
    }
    let state = effective_state(transaction, &candidacy, now).await?;
    let evidence = Evidence {
        training_complete,
        passed_supervised_deliveries: passed_supervised_deliveries(transaction, id).await?,
        assessment_score: candidacy.assessment_score,
        assessor_approved: candidacy.assessor_approved,
    };
    transition(
        state,
        CandidacyEvent::Certify,
        &track.requirements,
        &evidence,
    )
    .map_err(|refusal| refusal.into_error(format!("candidacy/{id}")))?;
    let path = person_path(transaction, &candidacy.person_id).await?;
    let mut changes = Vec::new();
    let mut events = Vec::new();
    let renewed = match candidacy.renews_certificate_id.clone() {
        Some(renewed_id) => {
            let snapshot = load_certificate(transaction, &renewed_id).await?;
            let mut holder = lock_candidacy(transaction, &snapshot.candidacy_id).await?;
            let mut old = lock_certificate(transaction, &renewed_id).await?;
            let status_now = certificate_status_at(old.status, old.expires_time, now);
            let current = holder.certificate_id.as_deref() == Some(renewed_id.as_str());
            if !current
                || !matches!(
                    status_now,
                    CertificateStatus::Active | CertificateStatus::Expired
                )
            {
                return Err(Error::FailedPrecondition {
                    reason: Reason::CertificateNotCurrent,
                    subject: format!("certificate/{renewed_id}"),
                    message: format!(
                        "the certificate this candidacy renews is {}; only an active or expired current certificate is renewed",
                        status_now.as_str()
                    ),
                    metadata: vec![
                        ("certificate_id", renewed_id.clone()),
                        ("certificate_status", status_now.as_str().to_owned()),
                        ("expire_time", old.expires_time.to_rfc3339()),
                    ],
                });
            }
            let holder_before = effective_state(transaction, &holder, now).await?;
            old.status = CertificateStatus::Superseded;
            old.status_reason = format!("renewed by candidacy {id}");
            old.revision += 1;
            save_certificate_status(transaction, &old, now).await?;
            holder.state = CandidacyState::Renewed;
            holder.revision += 1;
            holder.update_time = now;
            candidacies::Entity::update(candidacy_active(&holder))
                .exec(transaction)
                .await
                .map_err(db_error)?;
            let history_reason = format!("certificate renewed by candidacy {id}");
            append_history(
                transaction,
                &holder.id,
                holder_before,
                CandidacyState::Renewed,
                &history_reason,
                &context.actor,
                now,
            )
            .await?;
            changes.push(AuditChange::new(
                "certificate",
                &old.id,
                &json!({"certificate": certificate_json(&old), "reason": reason}),
            ));
            changes.push(AuditChange::new(
                "candidacy",
                &holder.id,
                &candidacy_json(&holder),
            ));
            events.push(new_event(
                "certificate.changed",
                &old.id,
                &old.person_id,
                Some(path.clone()),
                json!({"certificate_id": old.id, "status": CertificateStatus::Superseded.as_str(), "reason": old.status_reason}),
            ));
            events.push(new_event(
                "candidacy.changed",
                &holder.id,
                &holder.person_id,
                Some(path.clone()),
                json!({"candidacy_id": holder.id, "track_id": holder.track_id, "from_state": holder_before.as_str(),
                       "state": CandidacyState::Renewed.as_str()}),
            ));
            Some(old.id)
        }
        None => None,
    };
    let certificate =
        new_certificate(transaction, track, &candidacy, candidacy.cycle + 1, now).await?;
    candidacy.state = CandidacyState::Certified;
    candidacy.cycle = certificate.cycle;
    candidacy.certificate_id = Some(certificate.id.clone());
    candidacy.revision += 1;
    candidacy.update_time = now;
    candidacies::Entity::update(candidacy_active(&candidacy))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    append_history(
        transaction,
        id,
        state,
        CandidacyState::Certified,
        reason,
        &context.actor,
        now,
    )
    .await?;
    let supervisors: Vec<String> = supervised_deliveries::Entity::find()
        .filter(supervised_deliveries::Column::CandidacyId.eq(id))
        .filter(supervised_deliveries::Column::Outcome.eq(SupervisedOutcome::Passed.as_str()))
        .order_by_asc(supervised_deliveries::Column::RecordTime)
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| row.supervisor_id)
        .collect();
    let mut seen = HashSet::new();
    for supervisor in supervisors {
        if seen.insert(supervisor.clone()) {
            add_cascade_edge(
                transaction,
                &supervisor,
                &candidacy.person_id,
                "SUPERVISION",
                &certificate.id,
                now,
            )
            .await?;
        }
    }
    changes.push(AuditChange::new(
        "certificate",
        &certificate.id,
        &certificate_json(&certificate),
    ));
    changes.push(AuditChange::new(
        "candidacy",
        id,
        &json!({"candidacy": candidacy_json(&candidacy), "reason": reason}),
    ));
    let mut payload = json!({"certificate_id": certificate.id, "candidacy_id": id, "track_id": certificate.track_id,
                             "cycle": certificate.cycle, "expires_time": certificate.expires_time.to_rfc3339()});
    if let Some(renewed) = renewed {
        payload["renews"] = json!(renewed);
    }
    events.push(new_event(
        "certificate.issued",
        &certificate.id,
        &certificate.person_id,
        Some(path),
        payload,
    ));
    audit::append(transaction, context, changes).await?;
    super::event::append(transaction, events).await?;
    Ok(certificate)
}

/// Inserts a new ACTIVE certificate of `candidacy` for `cycle`, valid `validity_months` from `now`,
/// at a random free position of the issuer's status lists (random, as the W3C recommends, so a
/// position tells nothing about issue order).
async fn new_certificate(
    transaction: &DatabaseTransaction,
    track: &Track,
    candidacy: &Candidacy,
    cycle: i32,
    now: DateTime<Utc>,
) -> Result<Certificate> {
    let mut position = None;
    for _ in 0..16 {
        let candidate = (rand::random::<u32>() % STATUS_LIST_SIZE as u32) as i32;
        let taken = certificates::Entity::find()
            .filter(
                certificates::Column::IssuerOrganizationId
                    .eq(track.issuer_organization_id.as_str()),
            )
            .filter(certificates::Column::StatusListIndex.eq(candidate))
            .one(transaction)
            .await
            .map_err(db_error)?
            .is_some();
        if !taken {
            position = Some(candidate);
            break;
        }
    }
    let status_list_index = position.ok_or_else(|| {
        Error::Unavailable("the issuer's status list is nearly full; retry".to_owned())
    })?;
    let certificate = Certificate {
        id: crate::domain::new_id(),
        verification_code: new_verification_code(),
        person_id: candidacy.person_id.clone(),
        track_id: track.id.clone(),
        candidacy_id: candidacy.id.clone(),
        cycle,
        issued_time: now,
        expires_time: expiry_after(now, track.validity_months),
        status: CertificateStatus::Active,
        status_reason: String::new(),
        issuer_organization_id: track.issuer_organization_id.clone(),
        status_list_index,
        revision: 1,
    };
    certificates::Entity::insert(certificate_active(&certificate, now))
        .exec(transaction)
        .await
        .map_err(db_error)?;
    Ok(certificate)
}

/// Checks that a track's references exist: published trainer course versions, courses, modules.
async fn check_references(transaction: &DatabaseTransaction, track: &Track) -> Result<()> {
    use super::entity::catalogue::{course_modules, course_versions, courses};
    for (index, id) in track
        .requirements
        .trainer_course_version_ids
        .iter()
        .enumerate()
    {
        let version = course_versions::Entity::find_by_id(id.clone())
            .one(transaction)
            .await
            .map_err(db_error)?;
        match version {
            Some(version) if version.state == "PUBLISHED" => {}
            Some(_) => {
                return Err(Error::invalid(
                    format!("track.requirements.trainer_course_version_ids[{index}]"),
                    "is not a published course version",
                ));
            }
            None => {
                return Err(Error::invalid(
                    format!("track.requirements.trainer_course_version_ids[{index}]"),
                    "is not a course version",
                ));
            }
        }
    }
    for (index, id) in track.qualifies_course_ids.iter().enumerate() {
        if courses::Entity::find_by_id(id.clone())
            .one(transaction)
            .await
            .map_err(db_error)?
            .is_none()
        {
            return Err(Error::invalid(
                format!("track.qualifies_course_ids[{index}]"),
                "is not a course",
            ));
        }
    }
    for (index, id) in track.qualifies_module_ids.iter().enumerate() {
        if course_modules::Entity::find_by_id(id.clone())
            .one(transaction)
            .await
            .map_err(db_error)?
            .is_none()
        {
            return Err(Error::invalid(
                format!("track.qualifies_module_ids[{index}]"),
                "is not a module",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Expiry announcements

/// Certificates announced per sweep transaction.
const EXPIRY_SWEEP_BATCH: u64 = 500;

impl Store {
    /// Publishes one `certificate.expired` event for every ACTIVE certificate whose expiry is at
    /// or before `now` and that was not announced yet; returns how many were announced.
    ///
    /// Exactly once, also with several replicas sweeping at the same moment. Each batch is one
    /// write transaction that selects unannounced certificates past expiry, marks them
    /// (`UPDATE ... SET expiry_announced_time WHERE expiry_announced_time IS NULL`) and appends
    /// their events; the mark and the events commit together or not at all.
    /// - PostgreSQL: the select takes the rows `FOR UPDATE SKIP LOCKED`. A concurrent sweeper
    ///   skips rows another one holds (it announces others, or none), and a certificate being
    ///   renewed, suspended or revoked right now (its row locked by that transaction) waits for
    ///   the next sweep. A row locked here is re-read at its latest committed version, so the
    ///   status and mark are judged on current data. The guarded update is the second fence: if
    ///   it marks fewer rows than were selected, the batch rolls back instead of announcing twice.
    /// - SQLite: write transactions are serial (`BEGIN IMMEDIATE`), so a second sweeper starts
    ///   after the first committed and sees its marks.
    ///
    /// Renewal issues a new certificate row (mark NULL), so a renewed certificate that expires
    /// again is announced again; a suspended certificate is not announced (it is not ACTIVE) until
    /// it is reinstated.
    pub async fn publish_certificate_expiries(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut total = 0;
        loop {
            let announced = self
                .write(move |transaction| Box::pin(announce_expiries(transaction, now)))
                .await?;
            total += announced;
            if (announced as u64) < EXPIRY_SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

impl Store {
    /// Publishes one `certificate.expiring` event per ACTIVE certificate and reminder offset
    /// (`days_before`, e.g. 90, 60, 30, 7) whose window it has entered, and returns how many.
    ///
    /// A certificate is reminded once per offset, and only at the nearest offset it has reached:
    /// one that already expires within 7 days when it is first seen (issued for a short period, or
    /// reminders switched on late) gets the 7-day reminder, not four at once. Exactly once across
    /// replicas, as [`Store::publish_certificate_expiries`]: rows are selected `FOR UPDATE SKIP
    /// LOCKED` on PostgreSQL (serial write transactions on SQLite), and the reminder rows are
    /// inserted in the same transaction as the events; should another sweep have inserted one in
    /// the meantime, the batch rolls back instead of announcing twice.
    pub async fn publish_certificate_reminders(
        &self,
        now: DateTime<Utc>,
        days_before: &[u32],
    ) -> Result<usize> {
        let mut offsets: Vec<i64> = days_before.iter().map(|&days| i64::from(days)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let mut total = 0;
        let mut nearer = 0;
        for offset in offsets {
            loop {
                let announced = self
                    .write(move |transaction| {
                        Box::pin(announce_reminders(transaction, now, nearer, offset))
                    })
                    .await;
                let announced = match announced {
                    // Another replica is sweeping the same reminders: it announces them.
                    Err(Error::Aborted { reason, .. }) if reason == super::CONCURRENT_SWEEP => 0,
                    other => other?,
                };
                total += announced;
                if (announced as u64) < EXPIRY_SWEEP_BATCH {
                    break;
                }
            }
            nearer = offset;
        }
        Ok(total)
    }
}

/// Marks and announces one batch of `offset`-day reminders in `transaction`: ACTIVE certificates
/// expiring after `nearer` days and within `offset` days of `now` that have no reminder at this
/// offset or a nearer one yet. Returns how many.
async fn announce_reminders(
    transaction: &DatabaseTransaction,
    now: DateTime<Utc>,
    nearer: i64,
    offset: i64,
) -> Result<usize> {
    use super::entity::certification::certificate_reminders as reminders;
    use sea_orm::sea_query::{Expr, ExprTrait as _, LockBehavior, LockType, Query};

    let reminded = Query::select()
        .column(reminders::Column::CertificateId)
        .from(reminders::Entity)
        .and_where(Expr::col(reminders::Column::DaysBefore).lte(offset))
        .to_owned();
    let mut select = certificates::Entity::find()
        .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
        .filter(certificates::Column::ExpiresTime.gt(now + chrono::Duration::days(nearer)))
        .filter(certificates::Column::ExpiresTime.lte(now + chrono::Duration::days(offset)))
        .filter(certificates::Column::Id.not_in_subquery(reminded))
        .order_by_asc(certificates::Column::ExpiresTime)
        .order_by_asc(certificates::Column::Id)
        .limit(EXPIRY_SWEEP_BATCH);
    if transaction.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let due = select.all(transaction).await.map_err(db_error)?;
    if due.is_empty() {
        return Ok(0);
    }
    let days = i32::try_from(offset).map_err(Error::internal)?;
    let inserted = reminders::Entity::insert_many(due.iter().map(|model| reminders::ActiveModel {
        certificate_id: Set(model.id.clone()),
        days_before: Set(days),
        announced_time: Set(now),
    }))
    .on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            reminders::Column::CertificateId,
            reminders::Column::DaysBefore,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(transaction)
    .await
    .map_err(db_error)?;
    if inserted != due.len() as u64 {
        return Err(Error::Aborted {
            reason: super::CONCURRENT_SWEEP,
            message:
                "certificates were reminded by another sweep in the meantime; batch rolled back"
                    .to_owned(),
            metadata: Vec::new(),
        });
    }
    let paths = super::person::organization_paths_of_people(
        transaction,
        due.iter().map(|model| model.person_id.clone()).collect(),
    )
    .await?;
    let events = due
        .iter()
        .map(|model| {
            new_event(
                "certificate.expiring",
                &model.id,
                &model.person_id,
                paths.get(&model.person_id).cloned(),
                json!({"certificate_id": model.id, "candidacy_id": model.candidacy_id, "track_id": model.track_id,
                       "cycle": model.cycle, "status": model.status, "days_before": offset,
                       "expires_time": model.expires_time.to_rfc3339()}),
            )
        })
        .collect();
    super::event::append(transaction, events).await?;
    Ok(due.len())
}

/// Marks and announces one batch of expired certificates in `transaction`; returns how many.
async fn announce_expiries(transaction: &DatabaseTransaction, now: DateTime<Utc>) -> Result<usize> {
    use sea_orm::sea_query::{Expr, LockBehavior, LockType};

    let mut select = certificates::Entity::find()
        .filter(certificates::Column::ExpiryAnnouncedTime.is_null())
        .filter(certificates::Column::ExpiresTime.lte(now))
        .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
        .order_by_asc(certificates::Column::ExpiresTime)
        .order_by_asc(certificates::Column::Id)
        .limit(EXPIRY_SWEEP_BATCH);
    if transaction.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let expired = select.all(transaction).await.map_err(db_error)?;
    if expired.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = expired.iter().map(|model| model.id.clone()).collect();
    let marked = certificates::Entity::update_many()
        .col_expr(certificates::Column::ExpiryAnnouncedTime, Expr::value(now))
        .filter(certificates::Column::Id.is_in(ids.clone()))
        .filter(certificates::Column::ExpiryAnnouncedTime.is_null())
        .exec(transaction)
        .await
        .map_err(db_error)?;
    if marked.rows_affected != ids.len() as u64 {
        return Err(Error::internal(
            "certificates were announced by another sweep in the meantime; batch rolled back",
        ));
    }
    let paths = super::person::organization_paths_of_people(
        transaction,
        expired
            .iter()
            .map(|model| model.person_id.clone())
            .collect(),
    )
    .await?;
    let events = expired
        .iter()
        .map(|model| {
            new_event(
                "certificate.expired",
                &model.id,
                &model.person_id,
                paths.get(&model.person_id).cloned(),
                json!({"certificate_id": model.id, "candidacy_id": model.candidacy_id, "track_id": model.track_id,
                       "cycle": model.cycle, "status": CertificateStatus::Expired.as_str(),
                       "expires_time": model.expires_time.to_rfc3339()}),
            )
        })
        .collect();
    super::event::append(transaction, events).await?;
    Ok(expired.len())
}

// ---------------------------------------------------------------------------------------------
// Candidacy batches

/// What a candidacy batch did.
#[derive(Debug, Clone)]
pub struct CandidacyBatch {
    /// One candidacy per item, in request order (without history).
    pub candidacies: Vec<CandidacyView>,
    /// Candidacies the call opened or moved.
    pub changed: i64,
    /// Candidacies returned as they were.
    pub unchanged: i64,
}

/// Ids of a batch's candidacies and its counts, as stored for a replay.
fn batch_answer(ids: &[String], changed: i64, unchanged: i64) -> StoredAnswer {
    StoredAnswer {
        resource_id: None,
        response: Some(json!({"ids": ids, "changed": changed, "unchanged": unchanged}).to_string()),
    }
}

/// Returns the ids and counts of a stored batch answer.
fn parse_batch_answer(answer: StoredAnswer) -> Result<(Vec<String>, i64, i64)> {
    let text = answer
        .response
        .ok_or_else(|| Error::internal("stored batch answer has no response"))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(Error::internal)?;
    let ids = value["ids"]
        .as_array()
        .ok_or_else(|| Error::internal("stored batch answer has no ids"))?
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect();
    Ok((
        ids,
        value["changed"].as_i64().unwrap_or_default(),
        value["unchanged"].as_i64().unwrap_or_default(),
    ))
}

/// Returns `error` about one item of a batch (`item`, e.g. `requests[3]`): field violations are
/// put under the item, refusals name it in their message and metadata.
pub(crate) fn at_item(error: Error, item: &str) -> Error {
    match error {
        Error::InvalidArgument(violations) => {
            let mut prefixed = crate::error::Violations::new();
            for violation in violations.as_slice() {
                prefixed.add(
                    format!("{item}.{}", violation.field),
                    violation.description.clone(),
                );
            }
            Error::InvalidArgument(prefixed)
        }
        Error::FailedPrecondition {
            reason,
            subject,
            message,
            mut metadata,
        } => {
            metadata.push(("item", item.to_owned()));
            Error::FailedPrecondition {
                reason,
                subject,
                message: format!("{item}: {message}"),
                metadata,
            }
        }
        Error::PermissionDenied { reason, message } => Error::PermissionDenied {
            reason,
            message: format!("{item}: {message}"),
        },
        other => other,
    }
}

/// Loads candidacies `ids` (one query per 500) as views without history, in the order of `ids`:
/// states at `now` (one query for their certificates' expiries) and passed supervised deliveries
/// (one grouped query).
async fn candidacy_views_of(
    connection: &impl ConnectionTrait,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<CandidacyView>> {
    let mut by_id: HashMap<String, Candidacy> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        for model in candidacies::Entity::find()
            .filter(candidacies::Column::Id.is_in(chunk.iter().cloned()))
            .all(connection)
            .await
            .map_err(db_error)?
        {
            let candidacy = candidacy_from(model)?;
            by_id.insert(candidacy.id.clone(), candidacy);
        }
    }
    let certificate_ids: Vec<String> = by_id
        .values()
        .filter_map(|candidacy| candidacy.certificate_id.clone())
        .collect();
    let mut expiries: HashMap<String, DateTime<Utc>> = HashMap::new();
    for chunk in certificate_ids.chunks(500) {
        let rows: Vec<(String, DateTime<Utc>)> = certificates::Entity::find()
            .select_only()
            .column(certificates::Column::Id)
            .column(certificates::Column::ExpiresTime)
            .filter(certificates::Column::Id.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(connection)
            .await
            .map_err(db_error)?;
        expiries.extend(rows);
    }
    let mut passed: HashMap<String, i64> = HashMap::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, i64)> = supervised_deliveries::Entity::find()
            .select_only()
            .column(supervised_deliveries::Column::CandidacyId)
            .column_as(supervised_deliveries::Column::SessionId.count(), "passed")
            .filter(supervised_deliveries::Column::CandidacyId.is_in(chunk.iter().cloned()))
            .filter(supervised_deliveries::Column::Outcome.eq(SupervisedOutcome::Passed.as_str()))
            .group_by(supervised_deliveries::Column::CandidacyId)
            .into_tuple()
            .all(connection)
            .await
            .map_err(db_error)?;
        passed.extend(rows);
    }
    ids.iter()
        .map(|id| {
            let candidacy = by_id
                .get(id)
                .cloned()
                .ok_or_else(|| Error::not_found("candidacy", id))?;
            let expiry = candidacy
                .certificate_id
                .as_ref()
                .and_then(|certificate_id| expiries.get(certificate_id).copied());
            Ok(CandidacyView {
                effective_state: effective_candidacy_state(
                    candidacy.state,
                    candidacy.deadline_time,
                    expiry,
                    now,
                ),
                passed_supervised_deliveries: i32::try_from(
                    passed.get(id).copied().unwrap_or_default(),
                )
                .unwrap_or(i32::MAX),
                history: Vec::new(),
                candidacy,
            })
        })
        .collect()
}

/// Returns the history row of a candidacy moving `from` -> `to`, to insert with others.
fn history_row(
    candidacy_id: &str,
    from: CandidacyState,
    to: CandidacyState,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> candidacy_history::ActiveModel {
    candidacy_history::ActiveModel {
        id: Set(crate::domain::new_id()),
        candidacy_id: Set(candidacy_id.to_owned()),
        from_state: Set(from.as_str().to_owned()),
        to_state: Set(to.as_str().to_owned()),
        reason: Set(reason.to_owned()),
        actor: Set(actor.to_owned()),
        time: Set(now),
    }
}

/// Inserts history rows, 200 a statement.
async fn insert_history(
    transaction: &DatabaseTransaction,
    rows: Vec<candidacy_history::ActiveModel>,
) -> Result<()> {
    for chunk in rows.chunks(200) {
        candidacy_history::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(transaction)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

impl Store {
    /// Returns who each of candidacies `ids` is about (a missing one is absent): two queries.
    pub async fn candidacy_holdings(&self, ids: &[String]) -> Result<HashMap<String, Holding>> {
        let mut rows: Vec<(String, String, String)> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let found: Vec<(String, String, String)> = candidacies::Entity::find()
                .select_only()
                .column(candidacies::Column::Id)
                .column(candidacies::Column::PersonId)
                .column(candidacies::Column::TrackId)
                .filter(candidacies::Column::Id.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(self.connection())
                .await
                .map_err(db_error)?;
            rows.extend(found);
        }
        let person_ids: Vec<String> = rows.iter().map(|(_, person, _)| person.clone()).collect();
        let paths =
            super::person::organization_paths_of_people(self.connection(), person_ids).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, person_id, track_id)| {
                let organization_path = paths.get(&person_id)?.clone();
                Some((
                    id,
                    Holding {
                        person_id,
                        organization_path,
                        track_id,
                    },
                ))
            })
            .collect())
    }

    /// Opens the candidacies of `person_ids` (distinct, 1 to 1,000) on track `track_id` in one
    /// transaction, each as [`Store::create_candidacy`] would, optionally moved on to TRAINING
    /// with `start_reason`: all of them or none. A person with an unfinished candidacy on the
    /// track gets it back unchanged; one certified (or suspended) on it is refused
    /// (CANDIDACY_EXISTS, naming `requests[i]`). People are locked in id order whatever the
    /// request order, so two batches (or a batch and `CreateCandidacy`) over the same people
    /// queue instead of deadlocking. Statements per batch: people locked, earlier candidacies and
    /// their certificates read, candidacies and history inserted 200 at a time, one audit append,
    /// one event append.
    pub async fn batch_create_candidacies(
        &self,
        context: AuditContext,
        track_id: String,
        person_ids: Vec<String>,
        start_reason: Option<String>,
        key: Option<RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<CandidacyBatch> {
        let (ids, changed, unchanged) = self
            .write_once(
                key,
                move |transaction| {
                    Box::pin(async move {
                        let (ids, changed, unchanged) = create_batch(
                            transaction,
                            &context,
                            &track_id,
                            &person_ids,
                            start_reason.as_deref(),
                            now,
                        )
                        .await?;
                        let answer = batch_answer(&ids, changed, unchanged);
                        Ok(((ids, changed, unchanged), answer))
                    })
                },
                |answer| async move { parse_batch_answer(answer) },
            )
            .await?;
        Ok(CandidacyBatch {
            candidacies: candidacy_views_of(self.connection(), &ids, now).await?,
            changed,
            unchanged,
        })
    }

    /// Takes candidacies `items` (distinct ids with their expected revisions) one `event` step
    /// (START_TRAINING, BEGIN_SUPERVISED_PRACTICE or SUBMIT_FOR_ASSESSMENT) in one transaction,
    /// each judged by the state machine as [`Store::transition_candidacy`] judges it: all of them
    /// or none, the first refusal naming `candidacy_ids[i]`. A candidacy already in the step's
    /// target state is returned unchanged. Candidacies are locked in id order. Statements per
    /// batch: candidacies locked, certificates and passed deliveries read, one update of every
    /// moved row, history inserted 200 at a time, one audit append, one event append; the
    /// training evidence is read before the transaction, once per candidate and track (as the
    /// single call does).
    #[allow(clippy::too_many_arguments)]
    pub async fn batch_advance_candidacies(
        &self,
        context: AuditContext,
        event: CandidacyEvent,
        items: Vec<(String, Option<i64>)>,
        reason: String,
        key: Option<RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<CandidacyBatch> {
        let target = event
            .batch_target()
            .ok_or_else(|| Error::invalid("step", "is not a step a batch takes"))?;
        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
        // Training evidence, read outside the transaction like the single call reads it.
        let mut training: HashMap<String, bool> = HashMap::new();
        if event != CandidacyEvent::StartTraining {
            let mut models = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                models.extend(
                    candidacies::Entity::find()
                        .filter(candidacies::Column::Id.is_in(chunk.iter().cloned()))
                        .all(self.connection())
                        .await
                        .map_err(db_error)?,
                );
            }
            let track_ids: HashSet<String> =
                models.iter().map(|model| model.track_id.clone()).collect();
            let mut tracks: HashMap<String, Track> = HashMap::new();
            for track_id in track_ids {
                tracks.insert(
                    track_id.clone(),
                    load_track(self.connection(), &track_id).await?,
                );
            }
            let mut by_person_track: HashMap<(String, String), bool> = HashMap::new();
            for model in models {
                let pair = (model.person_id.clone(), model.track_id.clone());
                let complete = match by_person_track.get(&pair) {
                    Some(&complete) => complete,
                    None => {
                        let versions = &tracks[&model.track_id]
                            .requirements
                            .trainer_course_version_ids;
                        let complete = self.training_complete(&model.person_id, versions).await?;
                        by_person_track.insert(pair, complete);
                        complete
                    }
                };
                training.insert(model.id, complete);
            }
        }
        let (answer_ids, changed, unchanged) = self
            .write_once(
                key,
                move |transaction| {
                    Box::pin(async move {
                        let (changed, unchanged) = advance_batch(
                            transaction,
                            &context,
                            event,
                            target,
                            &items,
                            &training,
                            &reason,
                            now,
                        )
                        .await?;
                        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
                        let answer = batch_answer(&ids, changed, unchanged);
                        Ok(((ids, changed, unchanged), answer))
                    })
                },
                |answer| async move { parse_batch_answer(answer) },
            )
            .await?;
        Ok(CandidacyBatch {
            candidacies: candidacy_views_of(self.connection(), &answer_ids, now).await?,
            changed,
            unchanged,
        })
    }
}

/// Opens the candidacies of a batch in `transaction`; returns their ids in request order and the
/// counts (opened, returned unchanged).
async fn create_batch(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    track_id: &str,
    person_ids: &[String],
    start_reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, i64, i64)> {
    let track = load_track(transaction, track_id).await?;
    let mut sorted: Vec<String> = person_ids.to_vec();
    sorted.sort();
    // One open candidacy per person and track: the people are locked (in id order) as
    // `create_candidacy` locks one.
    let mut found: HashSet<String> = HashSet::with_capacity(sorted.len());
    for chunk in sorted.chunks(500) {
        let select = people::Entity::find()
            .select_only()
            .column(people::Column::Id)
            .filter(people::Column::Id.is_in(chunk.iter().cloned()))
            .order_by_asc(people::Column::Id);
        let rows: Vec<String> = for_update(select, transaction)
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
        found.extend(rows);
    }
    let mut existing: HashMap<String, Vec<Candidacy>> = HashMap::new();
    for chunk in sorted.chunks(500) {
        for model in candidacies::Entity::find()
            .filter(candidacies::Column::TrackId.eq(track_id))
            .filter(candidacies::Column::PersonId.is_in(chunk.iter().cloned()))
            .order_by_asc(candidacies::Column::Id)
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            let candidacy = candidacy_from(model)?;
            existing
                .entry(candidacy.person_id.clone())
                .or_default()
                .push(candidacy);
        }
    }
    let certificate_ids: Vec<String> = existing
        .values()
        .flatten()
        .filter_map(|candidacy| candidacy.certificate_id.clone())
        .collect();
    let mut expiries: HashMap<String, DateTime<Utc>> = HashMap::new();
    for chunk in certificate_ids.chunks(500) {
        let rows: Vec<(String, DateTime<Utc>)> = certificates::Entity::find()
            .select_only()
            .column(certificates::Column::Id)
            .column(certificates::Column::ExpiresTime)
            .filter(certificates::Column::Id.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
        expiries.extend(rows);
    }
    let paths = super::person::organization_paths_of_people(transaction, sorted.clone()).await?;
    let mut ids = Vec::with_capacity(person_ids.len());
    let mut rows = Vec::new();
    let mut history = Vec::new();
    let mut changes = Vec::new();
    let mut events = Vec::new();
    let mut unchanged = 0;
    for (index, person_id) in person_ids.iter().enumerate() {
        let item = format!("requests[{index}]");
        if !found.contains(person_id) {
            return Err(at_item(
                Error::invalid("person_id", "is not the id of a person"),
                &item,
            ));
        }
        let mut open = None;
        for candidacy in existing.get(person_id).into_iter().flatten() {
            let expiry = candidacy
                .certificate_id
                .as_ref()
                .and_then(|id| expiries.get(id).copied());
            let state =
                effective_candidacy_state(candidacy.state, candidacy.deadline_time, expiry, now);
            if state.is_unfinished() {
                open = Some(candidacy.id.clone());
            } else if matches!(state, CandidacyState::Certified | CandidacyState::Suspended) {
                return Err(at_item(
                    Error::FailedPrecondition {
                        reason: Reason::CandidacyExists,
                        subject: format!("candidacy/{}", candidacy.id),
                        message: format!(
                            "the person already has a candidacy on this track in state {}",
                            state.as_str()
                        ),
                        metadata: vec![
                            ("candidacy_id", candidacy.id.clone()),
                            ("person_id", person_id.clone()),
                            ("state", state.as_str().to_owned()),
                        ],
                    },
                    &item,
                ));
            }
        }
        if let Some(id) = open {
            unchanged += 1;
            ids.push(id);
            continue;
        }
        let state = if start_reason.is_some() {
            CandidacyState::Training
        } else {
            CandidacyState::Candidate
        };
        let candidacy = Candidacy {
            id: crate::domain::new_id(),
            track_id: track_id.to_owned(),
            person_id: person_id.clone(),
            state,
            cycle: 0,
            deadline_time: now + chrono::Duration::days(i64::from(track.candidacy_days)),
            assessment_score: None,
            assessor_approved: false,
            certificate_id: None,
            renews_certificate_id: None,
            revision: 1,
            create_time: now,
            update_time: now,
        };
        history.push(history_row(
            &candidacy.id,
            CandidacyState::Candidate,
            CandidacyState::Candidate,
            "candidacy opened",
            &context.actor,
            now,
        ));
        if let Some(reason) = start_reason {
            history.push(history_row(
                &candidacy.id,
                CandidacyState::Candidate,
                CandidacyState::Training,
                reason,
                &context.actor,
                now,
            ));
        }
        changes.push(AuditChange::new(
            "candidacy",
            &candidacy.id,
            &candidacy_json(&candidacy),
        ));
        events.push(new_event(
            "candidacy.changed",
            &candidacy.id,
            &candidacy.person_id,
            paths.get(person_id).cloned(),
            json!({"candidacy_id": candidacy.id, "track_id": candidacy.track_id, "state": state.as_str()}),
        ));
        ids.push(candidacy.id.clone());
        rows.push(candidacy_active(&candidacy));
    }
    let created = rows.len() as i64;
    for chunk in rows.chunks(200) {
        candidacies::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(transaction)
            .await
            .map_err(db_error)?;
    }
    insert_history(transaction, history).await?;
    if !changes.is_empty() {
        audit::append(transaction, context, changes).await?;
        super::event::append(transaction, events).await?;
    }
    Ok((ids, created, unchanged))
}

/// Moves the candidacies of a batch in `transaction`; returns the counts (moved, unchanged).
#[allow(clippy::too_many_arguments)]
async fn advance_batch(
    transaction: &DatabaseTransaction,
    context: &AuditContext,
    event: CandidacyEvent,
    target: CandidacyState,
    items: &[(String, Option<i64>)],
    training: &HashMap<String, bool>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(i64, i64)> {
    let mut sorted: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
    sorted.sort();
    let mut locked: HashMap<String, Candidacy> = HashMap::with_capacity(sorted.len());
    for chunk in sorted.chunks(500) {
        let select = candidacies::Entity::find()
            .filter(candidacies::Column::Id.is_in(chunk.iter().cloned()))
            .order_by_asc(candidacies::Column::Id);
        for model in for_update(select, transaction)
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            let candidacy = candidacy_from(model)?;
            locked.insert(candidacy.id.clone(), candidacy);
        }
    }
    let track_ids: HashSet<String> = locked
        .values()
        .map(|candidacy| candidacy.track_id.clone())
        .collect();
    let mut tracks: HashMap<String, Track> = HashMap::new();
    for chunk in track_ids.into_iter().collect::<Vec<_>>().chunks(500) {
        for model in certification_tracks::Entity::find()
            .filter(certification_tracks::Column::Id.is_in(chunk.iter().cloned()))
            .all(transaction)
            .await
            .map_err(db_error)?
        {
            let track = track_from(model)?;
            tracks.insert(track.id.clone(), track);
        }
    }
    let views = {
        let present: Vec<String> = sorted
            .iter()
            .filter(|id| locked.contains_key(*id))
            .cloned()
            .collect();
        candidacy_views_of(transaction, &present, now)
            .await?
            .into_iter()
            .map(|view| (view.candidacy.id.clone(), view))
            .collect::<HashMap<_, _>>()
    };
    let mut moved: Vec<String> = Vec::new();
    let mut history = Vec::new();
    let mut changes = Vec::new();
    let mut events = Vec::new();
    let mut unchanged = 0;
    let person_ids: Vec<String> = locked
        .values()
        .map(|candidacy| candidacy.person_id.clone())
        .collect();
    let paths = super::person::organization_paths_of_people(transaction, person_ids).await?;
    for (index, (id, expected_revision)) in items.iter().enumerate() {
        let item = format!("candidacy_ids[{index}]");
        let Some(view) = views.get(id) else {
            return Err(Error::not_found("candidacy", id));
        };
        let candidacy = &view.candidacy;
        check_revision("candidacy", id, candidacy.revision, *expected_revision)?;
        let state = view.effective_state;
        if state == target {
            unchanged += 1;
            continue;
        }
        let track = tracks
            .get(&candidacy.track_id)
            .ok_or_else(|| Error::internal("candidacy of a missing track"))?;
        let evidence = Evidence {
            training_complete: training.get(id).copied().unwrap_or(false),
            passed_supervised_deliveries: view.passed_supervised_deliveries,
            assessment_score: candidacy.assessment_score,
            assessor_approved: candidacy.assessor_approved,
        };
        let next = transition(state, event, &track.requirements, &evidence)
            .map_err(|refusal| at_item(refusal.into_error(format!("candidacy/{id}")), &item))?;
        debug_assert_eq!(next, target);
        let mut after = candidacy.clone();
        after.state = next;
        after.revision += 1;
        after.update_time = now;
        history.push(history_row(id, state, next, reason, &context.actor, now));
        changes.push(AuditChange::new(
            "candidacy",
            id,
            &json!({"candidacy": candidacy_json(&after), "reason": reason}),
        ));
        events.push(new_event(
            "candidacy.changed",
            id,
            &candidacy.person_id,
            paths.get(&candidacy.person_id).cloned(),
            json!({"candidacy_id": id, "track_id": candidacy.track_id, "from_state": state.as_str(), "state": next.as_str()}),
        ));
        moved.push(id.clone());
    }
    use sea_orm::sea_query::{Expr, ExprTrait as _};
    for chunk in moved.chunks(500) {
        candidacies::Entity::update_many()
            .col_expr(candidacies::Column::State, Expr::value(target.as_str()))
            .col_expr(
                candidacies::Column::Revision,
                Expr::col(candidacies::Column::Revision).add(1),
            )
            .col_expr(candidacies::Column::UpdateTime, Expr::value(now))
            .filter(candidacies::Column::Id.is_in(chunk.iter().cloned()))
            .exec(transaction)
            .await
            .map_err(db_error)?;
    }
    insert_history(transaction, history).await?;
    if !changes.is_empty() {
        audit::append(transaction, context, changes).await?;
        super::event::append(transaction, events).await?;
    }
    Ok((moved.len() as i64, unchanged))
}

// ---------------------------------------------------------------------------------------------
// Renewal candidacies

/// Actor of the renewal candidacies the sweep opens, in their history and the audit log.
pub const RENEWAL_ACTOR: &str = "system:renewal-sweep";

/// Candidacy states before certification, as stored.
const UNFINISHED_STATES: [&str; 4] = [
    "CANDIDATE",
    "TRAINING",
    "SUPERVISED_PRACTICE",
    "AWAITING_ASSESSMENT",
];

impl Store {
    /// Opens a renewal candidacy (state CANDIDATE, `renews_certificate_id` set, deadline from
    /// [`renewal_deadline`]) for every ACTIVE certificate that expires within `days_before` days
    /// of `now` and has none yet, with a `candidacy.renewal_opened` event, a history row and an
    /// audit entry each; returns how many. A holder with an unfinished candidacy on the track
    /// gets none (one open candidacy per person and track); a suspended, revoked, superseded or
    /// expired certificate gets none.
    ///
    /// Once per certificate across replicas, as [`Store::publish_certificate_reminders`]: the
    /// certificates are selected `FOR UPDATE SKIP LOCKED` on PostgreSQL (serial write
    /// transactions on SQLite), the holders locked in id order as `CreateCandidacy` locks them,
    /// and the candidacies inserted `ON CONFLICT DO NOTHING` on the unique
    /// `renews_certificate_id`; should another sweep have opened one in the meantime, the batch
    /// rolls back instead of opening twice.
    pub async fn open_renewal_candidacies(
        &self,
        now: DateTime<Utc>,
        days_before: u32,
    ) -> Result<usize> {
        let mut total = 0;
        loop {
            let opened = self
                .write(move |transaction| {
                    Box::pin(open_renewals(transaction, now, i64::from(days_before)))
                })
                .await;
            let opened = match opened {
                // Another replica is opening the same renewals: it announces them.
                Err(Error::Aborted { reason, .. }) if reason == super::CONCURRENT_SWEEP => 0,
                other => other?,
            };
            total += opened;
            if (opened as u64) < EXPIRY_SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Opens one batch of renewal candidacies in `transaction`; returns how many.
async fn open_renewals(
    transaction: &DatabaseTransaction,
    now: DateTime<Utc>,
    days_before: i64,
) -> Result<usize> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, LockBehavior, LockType, Query};

    let open = Alias::new("open_candidacies");
    let renewing = Query::select()
        .column(candidacies::Column::RenewsCertificateId)
        .from(candidacies::Entity)
        .and_where(Expr::col(candidacies::Column::RenewsCertificateId).is_not_null())
        .to_owned();
    let unfinished = Query::select()
        .expr(Expr::val(1))
        .from_as(candidacies::Entity, open.clone())
        .and_where(
            Expr::col((open.clone(), candidacies::Column::PersonId))
                .equals((certificates::Entity, certificates::Column::PersonId)),
        )
        .and_where(
            Expr::col((open.clone(), candidacies::Column::TrackId))
                .equals((certificates::Entity, certificates::Column::TrackId)),
        )
        .and_where(Expr::col((open.clone(), candidacies::Column::State)).is_in(UNFINISHED_STATES))
        .and_where(Expr::col((open.clone(), candidacies::Column::DeadlineTime)).gte(now))
        .to_owned();
    let mut select = certificates::Entity::find()
        .filter(certificates::Column::Status.eq(CertificateStatus::Active.as_str()))
        .filter(certificates::Column::ExpiresTime.gt(now))
        .filter(certificates::Column::ExpiresTime.lte(now + chrono::Duration::days(days_before)))
        .filter(certificates::Column::Id.not_in_subquery(renewing))
        .filter(Expr::exists(unfinished).not())
        .order_by_asc(certificates::Column::ExpiresTime)
        .order_by_asc(certificates::Column::Id)
        .limit(EXPIRY_SWEEP_BATCH);
    if transaction.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let due = select.all(transaction).await.map_err(db_error)?;
    if due.is_empty() {
        return Ok(0);
    }
    // The holders, locked in id order as `create_candidacy` locks one, then read again: a
    // candidacy opened by a call since the select above wins.
    let mut holders: Vec<String> = due.iter().map(|model| model.person_id.clone()).collect();
    holders.sort();
    holders.dedup();
    for chunk in holders.chunks(500) {
        let select = people::Entity::find()
            .select_only()
            .column(people::Column::Id)
            .filter(people::Column::Id.is_in(chunk.iter().cloned()))
            .order_by_asc(people::Column::Id);
        let _: Vec<String> = for_update(select, transaction)
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
    }
    let mut busy: HashSet<(String, String)> = HashSet::new();
    for chunk in holders.chunks(500) {
        let rows: Vec<(String, String)> = candidacies::Entity::find()
            .select_only()
            .column(candidacies::Column::PersonId)
            .column(candidacies::Column::TrackId)
            .filter(candidacies::Column::PersonId.is_in(chunk.iter().cloned()))
            .filter(candidacies::Column::State.is_in(UNFINISHED_STATES))
            .filter(candidacies::Column::DeadlineTime.gte(now))
            .into_tuple()
            .all(transaction)
            .await
            .map_err(db_error)?;
        busy.extend(rows);
    }
    let due: Vec<certificates::Model> = due
        .into_iter()
        .filter(|model| !busy.contains(&(model.person_id.clone(), model.track_id.clone())))
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let track_ids: HashSet<String> = due.iter().map(|model| model.track_id.clone()).collect();
    let tracks: HashMap<String, Track> = certification_tracks::Entity::find()
        .filter(certification_tracks::Column::Id.is_in(track_ids))
        .all(transaction)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|model| track_from(model).map(|track| (track.id.clone(), track)))
        .collect::<Result<_>>()?;
    let paths = super::person::organization_paths_of_people(transaction, holders).await?;
    let context = AuditContext {
        actor: RENEWAL_ACTOR.to_owned(),
        action: "lms.v1.CertificationService/CreateCandidacy".to_owned(),
        request_id: None,
    };
    let mut rows = Vec::with_capacity(due.len());
    let mut history = Vec::with_capacity(due.len());
    let mut changes = Vec::with_capacity(due.len());
    let mut events = Vec::with_capacity(due.len() * 2);
    for model in &due {
        let track = tracks
            .get(&model.track_id)
            .ok_or_else(|| Error::internal("certificate of a missing track"))?;
        let candidacy = Candidacy {
            id: crate::domain::new_id(),
            track_id: model.track_id.clone(),
            person_id: model.person_id.clone(),
            state: CandidacyState::Candidate,
            cycle: model.cycle,
            deadline_time: renewal_deadline(model.expires_time, now, track.candidacy_days),
            assessment_score: None,
            assessor_approved: false,
            certificate_id: None,
            renews_certificate_id: Some(model.id.clone()),
            revision: 1,
            create_time: now,
            update_time: now,
        };
        let reason = format!(
            "renewal of certificate {} opened {days_before} days before its expiry",
            model.id
        );
        history.push(history_row(
            &candidacy.id,
            CandidacyState::Candidate,
            CandidacyState::Candidate,
            &reason,
            RENEWAL_ACTOR,
            now,
        ));
        changes.push(AuditChange::new(
            "candidacy",
            &candidacy.id,
            &json!({"candidacy": candidacy_json(&candidacy), "reason": reason}),
        ));
        let path = paths.get(&model.person_id).cloned();
        events.push(new_event(
            "candidacy.renewal_opened",
            &candidacy.id,
            &candidacy.person_id,
            path.clone(),
            json!({"candidacy_id": candidacy.id, "track_id": candidacy.track_id,
                   "renews_certificate_id": model.id, "certificate_expires_time": model.expires_time.to_rfc3339(),
                   "deadline_time": candidacy.deadline_time.to_rfc3339(), "days_before": days_before,
                   "state": CandidacyState::Candidate.as_str()}),
        ));
        events.push(new_event(
            "candidacy.changed",
            &candidacy.id,
            &candidacy.person_id,
            path,
            json!({"candidacy_id": candidacy.id, "track_id": candidacy.track_id, "state": CandidacyState::Candidate.as_str(),
                   "renews_certificate_id": model.id}),
        ));
        rows.push(candidacy_active(&candidacy));
    }
    let mut inserted = 0;
    for chunk in rows.chunks(200) {
        inserted += candidacies::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(candidacies::Column::RenewsCertificateId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(transaction)
            .await
            .map_err(db_error)?;
    }
    if inserted != due.len() as u64 {
        return Err(Error::Aborted {
            reason: super::CONCURRENT_SWEEP,
            message: "renewals were opened by another sweep in the meantime; batch rolled back"
                .to_owned(),
            metadata: Vec::new(),
        });
    }
    insert_history(transaction, history).await?;
    audit::append(transaction, &context, changes).await?;
    super::event::append(transaction, events).await?;
    Ok(due.len())
}
