//! `lms.v1.CertificationService`: tracks, candidacies, certificates, public verification with
//! signed credentials and status lists, and the cascade.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tonic::{Request, Response, Status};

use crate::auth::{
    self, CallContext,
    scope::{self, Caller, Object, Owner},
};
use crate::config::Config;
use crate::domain::certification::{
    CandidacyEvent, CandidacyState, CandidacyView, Certificate, CertificateAction,
    CertificateStatus, Clock, MAX_BATCH_CANDIDACIES, RawTrack, Requirements, SupervisedOutcome,
    Track, TrackLevel, TrackScope, Verification, certificate_status_at,
    credential::{self, CertificateClaims, Issuer, IssuerSeed},
    document::{self, DocumentClaims},
    validate_assessor_ids, validate_reason,
};
use crate::domain::organization::{optional_id_or_error, required_id};
use crate::domain::page::Page;
use crate::error::{Error, Result};
use crate::pb;
use crate::store::{
    Store,
    certification::{MAX_CASCADE_DEPTH, at_item},
};

/// What every candidacy transition and certificate status change carries: each RPC has its own
/// request message (docs/api-style.md), all with these three fields.
struct StateChange {
    id: String,
    reason: String,
    etag: String,
}

macro_rules! state_change_from {
    ($($message:ty),+ $(,)?) => {
        $(impl From<$message> for StateChange {
            fn from(message: $message) -> Self {
                Self { id: message.id, reason: message.reason, etag: message.etag }
            }
        })+
    };
}

state_change_from!(
    pb::StartTrainingRequest,
    pb::BeginSupervisedPracticeRequest,
    pb::SubmitForAssessmentRequest,
    pb::WithdrawCandidacyRequest,
    pb::RevokeCandidacyRequest,
    pb::RenewCertificateRequest,
    pb::SuspendCertificateRequest,
    pb::ReinstateCertificateRequest,
    pb::RevokeCertificateRequest,
);

/// File in the data dir holding the issuer seed when none is configured.
pub const ISSUER_SEED_FILE: &str = "issuer-ed25519.seed";
/// Returns the issuer seed from `path`, creating it (mode 0600) on first use.
pub fn load_or_create_issuer_seed(path: &Path) -> anyhow::Result<IssuerSeed> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let seed: [u8; 32] = rand::random();
            file.write_all(hex::encode(seed).as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created the issuer key seed");
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("{} is not a 32-byte hex seed", path.display()))?;
    Ok(IssuerSeed::new(bytes))
}

/// Handlers of `CertificationService`.
#[derive(Clone)]
pub struct CertificationApi {
    store: Store,
    clock: Clock,
    seed: IssuerSeed,
    public_url: String,
}

impl CertificationApi {
    /// Returns the handlers over `store`, with the issuer seed, clock and limits of `config`.
    pub fn new(store: Store, config: &Config) -> anyhow::Result<Self> {
        let settings = &config.certification;
        let path: PathBuf = settings
            .issuer_seed_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join(ISSUER_SEED_FILE));
        Ok(Self {
            store,
            clock: settings.clock.clone(),
            seed: load_or_create_issuer_seed(&path)?,
            public_url: settings.public_url.clone(),
        })
    }

    /// Returns the public base URL credentials and status lists are named under.
    pub fn public_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// Returns the verification page of the certificate with `code`: `<public url>/verify/<code>`.
    pub fn verify_url(&self, code: &str) -> String {
        format!("{}/verify/{code}", self.public_url())
    }

    /// Returns the URL of issuer `organization_id`'s profile: `<public url>/issuers/<id>`.
    pub fn issuer_profile_url(&self, organization_id: &str) -> String {
        format!("{}/issuers/{organization_id}", self.public_url())
    }

    /// Returns what anyone holding its verification code may know of a certificate, with its
    /// signed credential; INVALID_ARGUMENT for a string that is no code, NOT_FOUND for an unknown code.
    pub async fn public_certificate(&self, code: &str) -> Result<PublicCertificate> {
        let checked_time = self.clock.now();
        let verification = self.store.verify_certificate(code, checked_time).await?;
        let certificate = &verification.certificate;
        let organization_id = &certificate.issuer_organization_id;
        let issuer = self.seed.issuer(organization_id);
        let claims = CertificateClaims {
            certificate_id: &certificate.id,
            holder_name: &verification.holder_name,
            track_id: &verification.track.id,
            track_code: &verification.track.code,
            track_title: &verification.track.title,
            level: verification.track.level.as_str(),
            issuer_name: &verification.issuer_name,
            issuer_url: &self.issuer_profile_url(organization_id),
            issued_time: certificate.issued_time,
            expires_time: certificate.expires_time,
            status_list_index: certificate.status_list_index,
            base_url: &self.public_url,
        };
        let credential = credential::sign(
            credential::certificate_credential(&claims, &issuer),
            &self.seed.signing_key(organization_id),
            &issuer,
            certificate.issued_time,
        );
        Ok(PublicCertificate {
            verification,
            issuer,
            credential,
            checked_time,
        })
    }

    /// Returns the signed BitstringStatusListCredential (JSON) of issuer `organization_id` for
    /// `purpose` (`revocation` or `suspension`); NOT_FOUND when the organisation issues nothing.
    pub async fn status_list(&self, organization_id: &str, purpose: &str) -> Result<String> {
        let organization_id = required_id("issuer_organization_id", organization_id)?;
        let status = match purpose {
            "revocation" => CertificateStatus::Revoked,
            "suspension" => CertificateStatus::Suspended,
            _ => {
                return Err(Error::invalid(
                    "purpose",
                    "must be `revocation` or `suspension`",
                ));
            }
        };
        if self
            .store
            .issuer_organizations(Some(&organization_id))
            .await?
            .is_empty()
        {
            return Err(Error::not_found("issuer", organization_id));
        }
        let positions = self
            .store
            .status_list_positions(&organization_id, status)
            .await?;
        Ok(self.status_list_json(&organization_id, purpose, &positions))
    }

    /// Returns the Open Badges 3.0 Achievement of track `track_id` (JSON-LD), the document at the
    /// `achievement.id` every credential of the track names; NOT_FOUND for an unknown track.
    pub async fn track_achievement(&self, track_id: &str) -> Result<serde_json::Value> {
        let track_id = required_id("track_id", track_id)?;
        let track = self.store.get_track(&track_id).await?;
        Ok(credential::achievement_document(
            &self.public_url,
            &track.id,
            &track.code,
            &track.title,
            track.level.as_str(),
        ))
    }

    /// Returns the Open Badges 3.0 Profile of issuer `organization_id` (JSON-LD): its `did:key`
    /// id, name, and public key as a Multikey verification method for assertions, the way a DID
    /// document lists it; NOT_FOUND when the organisation issues nothing.
    pub async fn issuer_profile(&self, organization_id: &str) -> Result<serde_json::Value> {
        let organization_id = required_id("issuer_organization_id", organization_id)?;
        let Some((_, name)) = self
            .store
            .issuer_organizations(Some(&organization_id))
            .await?
            .into_iter()
            .next()
        else {
            return Err(Error::not_found("issuer", organization_id));
        };
        let issuer = self.seed.issuer(&organization_id);
        Ok(credential::issuer_profile(
            &issuer,
            &name,
            &self.issuer_profile_url(&organization_id),
        ))
    }

    /// Returns the printable PDF of a certificate.
    pub fn certificate_document(&self, public: &PublicCertificate) -> Result<Vec<u8>> {
        let verification = &public.verification;
        let certificate = &verification.certificate;
        let credential_json = public.credential.to_string();
        let verify_url = self.verify_url(&certificate.verification_code);
        document::certificate_pdf(&DocumentClaims {
            holder_name: &verification.holder_name,
            track_title: &verification.track.title,
            track_code: &verification.track.code,
            level: verification.track.level,
            issuer_name: &verification.issuer_name,
            issued_time: certificate.issued_time,
            expires_time: certificate.expires_time,
            verification_code: &certificate.verification_code,
            status: verification.status,
            verify_url: &verify_url,
            credential_json: &credential_json,
        })
        .map_err(|error| Error::internal(error.to_string()))
    }
}

/// A certificate as its verification code shows it to anyone: the verification (status judged
/// at `checked_time`), the issuer's key and the signed credential.
#[derive(Debug, Clone)]
pub struct PublicCertificate {
    /// Certificate, holder's name, track and issuer's name, with the status now.
    pub verification: Verification,
    /// The issuer's public identity.
    pub issuer: Issuer,
    /// The Open Badges 3.0 credential with its `eddsa-jcs-2022` proof.
    pub credential: serde_json::Value,
    /// When the status was judged.
    pub checked_time: chrono::DateTime<chrono::Utc>,
}

impl PublicCertificate {
    /// Whether the certificate is valid now (ACTIVE and not expired).
    pub fn valid(&self) -> bool {
        self.verification.status == CertificateStatus::Active
    }
}

fn level_to_proto(level: TrackLevel) -> pb::TrackLevel {
    match level {
        TrackLevel::MasterTrainer => pb::TrackLevel::MasterTrainer,
        TrackLevel::Trainer => pb::TrackLevel::Trainer,
        TrackLevel::Ambassador => pb::TrackLevel::Ambassador,
    }
}

fn candidacy_state_to_proto(state: CandidacyState) -> pb::CandidacyState {
    match state {
        CandidacyState::Candidate => pb::CandidacyState::Candidate,
        CandidacyState::Training => pb::CandidacyState::Training,
        CandidacyState::SupervisedPractice => pb::CandidacyState::SupervisedPractice,
        CandidacyState::AwaitingAssessment => pb::CandidacyState::AwaitingAssessment,
        CandidacyState::Certified => pb::CandidacyState::Certified,
        CandidacyState::Suspended => pb::CandidacyState::Suspended,
        CandidacyState::Expired => pb::CandidacyState::Expired,
        CandidacyState::Revoked => pb::CandidacyState::Revoked,
        CandidacyState::Withdrawn => pb::CandidacyState::Withdrawn,
        CandidacyState::Lapsed => pb::CandidacyState::Lapsed,
        CandidacyState::Renewed => pb::CandidacyState::Renewed,
    }
}

fn certificate_status_to_proto(status: CertificateStatus) -> pb::CertificateStatus {
    match status {
        CertificateStatus::Active => pb::CertificateStatus::Active,
        CertificateStatus::Suspended => pb::CertificateStatus::Suspended,
        CertificateStatus::Revoked => pb::CertificateStatus::Revoked,
        CertificateStatus::Expired => pb::CertificateStatus::Expired,
        CertificateStatus::Superseded => pb::CertificateStatus::Superseded,
    }
}

impl From<Track> for pb::CertificationTrack {
    fn from(track: Track) -> Self {
        let scope = match track.scope {
            TrackScope::Any => pb::TrackScope::Any,
            TrackScope::OwnOrganization => pb::TrackScope::OwnOrganization,
        };
        Self {
            id: track.id,
            code: track.code,
            title: track.title,
            level: level_to_proto(track.level).into(),
            qualifies_course_ids: track.qualifies_course_ids,
            qualifies_module_ids: track.qualifies_module_ids,
            requirements: Some(pb::TrackRequirements {
                trainer_course_version_ids: track.requirements.trainer_course_version_ids,
                min_assessment_score: track.requirements.min_assessment_score,
                supervised_deliveries_required: track.requirements.supervised_deliveries_required,
                assessor_approval_required: track.requirements.assessor_approval_required,
            }),
            validity_months: track.validity_months,
            scope: scope.into(),
            issuer_organization_id: track.issuer_organization_id,
            candidacy_days: track.candidacy_days,
            assessor_ids: track.assessor_ids,
            etag: crate::domain::etag(track.revision),
            create_time: Some(super::timestamp(track.create_time)),
            update_time: Some(super::timestamp(track.update_time)),
        }
    }
}

impl From<CandidacyView> for pb::Candidacy {
    fn from(view: CandidacyView) -> Self {
        let candidacy = view.candidacy;
        Self {
            id: candidacy.id,
            track_id: candidacy.track_id,
            person_id: candidacy.person_id,
            state: candidacy_state_to_proto(view.effective_state).into(),
            cycle: candidacy.cycle,
            deadline_time: Some(super::timestamp(candidacy.deadline_time)),
            assessment_score: candidacy.assessment_score,
            assessor_approved: candidacy.assessor_approved,
            passed_supervised_deliveries: view.passed_supervised_deliveries,
            certificate_id: candidacy.certificate_id.unwrap_or_default(),
            renews_certificate_id: candidacy.renews_certificate_id.unwrap_or_default(),
            history: view
                .history
                .into_iter()
                .map(|step| pb::CandidacyTransition {
                    from_state: candidacy_state_to_proto(step.from_state).into(),
                    to_state: candidacy_state_to_proto(step.to_state).into(),
                    reason: step.reason,
                    actor: step.actor,
                    time: Some(super::timestamp(step.time)),
                })
                .collect(),
            etag: crate::domain::etag(candidacy.revision),
            create_time: Some(super::timestamp(candidacy.create_time)),
            update_time: Some(super::timestamp(candidacy.update_time)),
        }
    }
}

fn certificate_to_proto(
    certificate: Certificate,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::Certificate {
    let status = certificate_status_at(certificate.status, certificate.expires_time, now);
    pb::Certificate {
        id: certificate.id,
        verification_code: certificate.verification_code,
        person_id: certificate.person_id,
        track_id: certificate.track_id,
        candidacy_id: certificate.candidacy_id,
        cycle: certificate.cycle,
        issued_time: Some(super::timestamp(certificate.issued_time)),
        expires_time: Some(super::timestamp(certificate.expires_time)),
        status: certificate_status_to_proto(status).into(),
        issuer_organization_id: certificate.issuer_organization_id,
        status_reason: certificate.status_reason,
        status_list_index: certificate.status_list_index,
        etag: crate::domain::etag(certificate.revision),
    }
}

fn raw_track(track: pb::CertificationTrack) -> RawTrack {
    let requirements = track.requirements.unwrap_or_default();
    RawTrack {
        code: track.code,
        title: track.title,
        level: match pb::TrackLevel::try_from(track.level) {
            Ok(pb::TrackLevel::MasterTrainer) => Some(TrackLevel::MasterTrainer),
            Ok(pb::TrackLevel::Trainer) => Some(TrackLevel::Trainer),
            Ok(pb::TrackLevel::Ambassador) => Some(TrackLevel::Ambassador),
            _ => None,
        },
        qualifies_course_ids: track.qualifies_course_ids,
        qualifies_module_ids: track.qualifies_module_ids,
        requirements: Requirements {
            trainer_course_version_ids: requirements.trainer_course_version_ids,
            min_assessment_score: requirements.min_assessment_score,
            supervised_deliveries_required: requirements.supervised_deliveries_required,
            assessor_approval_required: requirements.assessor_approval_required,
        },
        validity_months: track.validity_months,
        scope: match pb::TrackScope::try_from(track.scope) {
            Ok(pb::TrackScope::OwnOrganization) => Some(TrackScope::OwnOrganization),
            _ => Some(TrackScope::Any),
        },
        issuer_organization_id: track.issuer_organization_id,
        candidacy_days: track.candidacy_days,
        assessor_ids: track.assessor_ids,
    }
}

/// Returns what a verifier needs of a certified trainer whose certificate the caller may not
/// read: the holder's name and the certificate's track, status and validity.
fn verifier_view(full_name: String, certificate: pb::Certificate) -> pb::CertifiedTrainer {
    pb::CertifiedTrainer {
        full_name,
        certificate: Some(pb::Certificate {
            track_id: certificate.track_id,
            status: certificate.status,
            issued_time: certificate.issued_time,
            expires_time: certificate.expires_time,
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl CertificationApi {
    /// Fails unless the caller reaches candidacy `id` as `object`.
    async fn check_candidacy(&self, context: &CallContext, object: Object, id: &str) -> Result<()> {
        let caller = scope::caller(&self.store, context, object).await?;
        caller.check_found(
            object,
            "candidacy",
            id,
            self.store.candidacy_holding(id).await,
        )?;
        Ok(())
    }

    /// Fails unless the caller reaches certificate `id` as `object`.
    async fn check_certificate(
        &self,
        context: &CallContext,
        object: Object,
        id: &str,
    ) -> Result<()> {
        let caller = scope::caller(&self.store, context, object).await?;
        caller.check_found(
            object,
            "certificate",
            id,
            self.store.certificate_holding(id).await,
        )?;
        Ok(())
    }

    /// Returns the caller after checking they reach the cascade of `person_id`.
    async fn check_cascade(&self, context: &CallContext, person_id: &str) -> Result<Caller> {
        let caller = scope::caller(&self.store, context, Object::Cascade).await?;
        let found = self
            .store
            .person_path(person_id)
            .await
            .map(|path| Owner::person(person_id, path));
        caller.check_found(Object::Cascade, "person", person_id, found)?;
        Ok(caller)
    }

    async fn transition(
        &self,
        context: CallContext,
        message: StateChange,
        event: CandidacyEvent,
    ) -> Result<pb::Candidacy> {
        let id = required_id("id", &message.id)?;
        let reason = validate_reason("reason", &message.reason)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        let object = match event {
            CandidacyEvent::StartTraining
            | CandidacyEvent::BeginSupervisedPractice
            | CandidacyEvent::SubmitForAssessment
            | CandidacyEvent::Withdraw => Object::CandidacyMove,
            _ => Object::CandidacyAssess,
        };
        self.check_candidacy(&context, object, &id).await?;
        let view = self
            .store
            .transition_candidacy(
                context.audit(None),
                id,
                event,
                reason,
                revision,
                None,
                None,
                false,
                self.clock.now(),
            )
            .await?;
        Ok(view.into())
    }

    async fn change(
        &self,
        context: CallContext,
        message: StateChange,
        action: CertificateAction,
    ) -> Result<pb::Certificate> {
        let id = required_id("id", &message.id)?;
        let reason = validate_reason("reason", &message.reason)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        self.check_certificate(&context, Object::CertificateChange, &id)
            .await?;
        let now = self.clock.now();
        let certificate = self
            .store
            .change_certificate(context.audit(None), id, action, reason, revision, now)
            .await?;
        Ok(certificate_to_proto(certificate, now))
    }

    /// Returns the signed status list credential of an issuer for `purpose`.
    fn status_list_json(&self, organization_id: &str, purpose: &str, positions: &[i32]) -> String {
        let issuer = self.seed.issuer(organization_id);
        let encoded = credential::encoded_status_list(
            crate::domain::certification::STATUS_LIST_SIZE,
            positions,
        );
        let now = self.clock.now();
        let unsigned =
            credential::status_list_credential(&issuer, &self.public_url, purpose, &encoded, now);
        credential::sign(
            unsigned,
            &self.seed.signing_key(organization_id),
            &issuer,
            now,
        )
        .to_string()
    }
}

#[tonic::async_trait]
impl pb::certification_service_server::CertificationService for CertificationApi {
    async fn create_certification_track(
        &self,
        request: Request<pb::CreateCertificationTrackRequest>,
    ) -> Result<Response<pb::CertificationTrack>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(
            "lms.v1.CertificationService/CreateCertificationTrack",
            &message.request_id,
            &message,
        )?;
        let track = message
            .track
            .ok_or_else(|| Error::invalid("track", "is required"))?;
        let track = raw_track(track).validate("track", self.clock.now())?;
        let created = self
            .store
            .create_track(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                track,
                key,
            )
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn set_track_assessors(
        &self,
        request: Request<pb::SetTrackAssessorsRequest>,
    ) -> Result<Response<pb::CertificationTrack>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("track_id", &message.track_id)?;
        let assessor_ids = validate_assessor_ids("assessor_ids", &message.assessor_ids)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        let track = self
            .store
            .set_track_assessors(
                context.audit(None),
                id,
                assessor_ids,
                revision,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(track.into()))
    }

    async fn get_certification_track(
        &self,
        request: Request<pb::GetCertificationTrackRequest>,
    ) -> Result<Response<pb::CertificationTrack>, Status> {
        let id = required_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_track(&id).await?.into()))
    }

    async fn list_certification_tracks(
        &self,
        request: Request<pb::ListCertificationTracksRequest>,
    ) -> Result<Response<pb::ListCertificationTracksResponse>, Status> {
        let message = request.into_inner();
        let page = Page::parse(message.page_size, &message.page_token, "tracks")?;
        let (tracks, next_page_token) = self.store.list_tracks(&page).await?;
        Ok(Response::new(pb::ListCertificationTracksResponse {
            tracks: tracks.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn create_candidacy(
        &self,
        request: Request<pb::CreateCandidacyRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(
            "lms.v1.CertificationService/CreateCandidacy",
            &message.request_id,
            &message,
        )?;
        let track_id = required_id("track_id", &message.track_id)?;
        let person_id = required_id("person_id", &message.person_id)?;
        let caller = scope::caller(&self.store, &context, Object::CandidacyMove).await?;
        let found = self.store.person_path(&person_id).await.map(|path| Owner {
            track_id: Some(track_id.clone()),
            ..Owner::person(person_id.clone(), path)
        });
        caller.check_found(Object::CandidacyMove, "person", &person_id, found)?;
        let view = self
            .store
            .create_candidacy(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                track_id,
                person_id,
                key,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(view.into()))
    }

    async fn get_candidacy(
        &self,
        request: Request<pb::GetCandidacyRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        self.check_candidacy(&context, Object::CandidacyRead, &id)
            .await?;
        let view = self.store.get_candidacy(&id, self.clock.now()).await?;
        Ok(Response::new(view.into()))
    }

    async fn list_candidacies(
        &self,
        request: Request<pb::ListCandidaciesRequest>,
    ) -> Result<Response<pb::ListCandidaciesResponse>, Status> {
        let context = auth::context(&request)?;
        let caller = scope::list_caller(&self.store, &context, Object::CandidacyRead).await?;
        let visibility = caller.visibility(Object::CandidacyRead);
        let message = request.into_inner();
        let track_id = optional_id_or_error("track_id", &message.track_id)?;
        let person_id = optional_id_or_error("person_id", &message.person_id)?;
        let page = Page::parse(
            message.page_size,
            &message.page_token,
            &format!("{track_id:?}|{person_id:?}"),
        )?;
        let (views, next_page_token) = self
            .store
            .list_candidacies(
                track_id.as_deref(),
                person_id.as_deref(),
                visibility.as_ref(),
                &page,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(pb::ListCandidaciesResponse {
            candidacies: views.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn start_training(
        &self,
        request: Request<pb::StartTrainingRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .transition(
                context,
                request.into_inner().into(),
                CandidacyEvent::StartTraining,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn begin_supervised_practice(
        &self,
        request: Request<pb::BeginSupervisedPracticeRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .transition(
                context,
                request.into_inner().into(),
                CandidacyEvent::BeginSupervisedPractice,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn submit_for_assessment(
        &self,
        request: Request<pb::SubmitForAssessmentRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .transition(
                context,
                request.into_inner().into(),
                CandidacyEvent::SubmitForAssessment,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn record_assessment(
        &self,
        request: Request<pb::RecordAssessmentRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        if !(0..=100).contains(&message.score) {
            return Err(Error::invalid("score", "must be 0 to 100").into());
        }
        let reason = validate_reason("reason", &message.reason)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        self.check_candidacy(&context, Object::CandidacyAssess, &id)
            .await?;
        let view = self
            .store
            .transition_candidacy(
                context.audit(None),
                id,
                CandidacyEvent::RecordAssessment,
                reason,
                revision,
                Some((message.score, message.approved)),
                None,
                message.issue_certificate,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(view.into()))
    }

    async fn extend_candidacy_deadline(
        &self,
        request: Request<pb::ExtendCandidacyDeadlineRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let id = required_id("id", &message.id)?;
        let deadline = super::optional_time("deadline_time", message.deadline_time)?
            .ok_or_else(|| Error::invalid("deadline_time", "is required"))?;
        let reason = validate_reason("reason", &message.reason)?;
        let revision = super::expected_revision("etag", &message.etag)?;
        self.check_candidacy(&context, Object::CandidacyAssess, &id)
            .await?;
        let view = self
            .store
            .transition_candidacy(
                context.audit(None),
                id,
                CandidacyEvent::ExtendDeadline,
                reason,
                revision,
                None,
                Some(crate::domain::truncate_micros(deadline)),
                false,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(view.into()))
    }

    async fn withdraw_candidacy(
        &self,
        request: Request<pb::WithdrawCandidacyRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .transition(
                context,
                request.into_inner().into(),
                CandidacyEvent::Withdraw,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn revoke_candidacy(
        &self,
        request: Request<pb::RevokeCandidacyRequest>,
    ) -> Result<Response<pb::Candidacy>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .transition(context, request.into_inner().into(), CandidacyEvent::Revoke)
            .await?;
        Ok(Response::new(reply))
    }

    async fn batch_create_candidacies(
        &self,
        request: Request<pb::BatchCreateCandidaciesRequest>,
    ) -> Result<Response<pb::BatchCreateCandidaciesResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(
            "lms.v1.CertificationService/BatchCreateCandidacies",
            &message.request_id,
            &message,
        )?;
        let track_id = required_id("track_id", &message.track_id)?;
        if message.requests.is_empty() || message.requests.len() > MAX_BATCH_CANDIDACIES {
            return Err(Error::invalid(
                "requests",
                format!("must hold 1 to {MAX_BATCH_CANDIDACIES} candidacies"),
            )
            .into());
        }
        let start_reason = if message.start_training {
            Some(validate_reason("reason", &message.reason)?)
        } else {
            None
        };
        let mut violations = crate::error::Violations::new();
        let mut seen = std::collections::HashMap::new();
        let mut person_ids = Vec::with_capacity(message.requests.len());
        for (index, item) in message.requests.iter().enumerate() {
            let field = |name: &str| format!("requests[{index}].{name}");
            if !item.track_id.is_empty() && item.track_id != message.track_id {
                violations.add(field("track_id"), "must be empty or the batch's track_id");
            }
            if !item.request_id.is_empty() {
                violations.add(
                    field("request_id"),
                    "must be empty: the batch's request_id covers every request",
                );
            }
            match required_id(&field("person_id"), &item.person_id) {
                Ok(person_id) => {
                    if let Some(first) = seen.insert(person_id.clone(), index) {
                        violations.add(
                            field("person_id"),
                            format!("repeats requests[{first}]: one candidacy per person"),
                        );
                    }
                    person_ids.push(person_id);
                }
                Err(Error::InvalidArgument(found)) => {
                    for violation in found.as_slice() {
                        violations.add(&violation.field, &violation.description);
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        violations.into_result(())?;
        let caller = scope::caller(&self.store, &context, Object::CandidacyMove).await?;
        let paths = self.store.person_paths(&person_ids).await?;
        for (index, person_id) in person_ids.iter().enumerate() {
            let found = paths
                .get(person_id)
                .map(|path| Owner {
                    track_id: Some(track_id.clone()),
                    ..Owner::person(person_id.clone(), path.clone())
                })
                .ok_or_else(|| Error::not_found("person", person_id));
            caller
                .check_found(Object::CandidacyMove, "person", person_id, found)
                .map_err(|error| at_item(error, &format!("requests[{index}]")))?;
        }
        let batch = self
            .store
            .batch_create_candidacies(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                track_id,
                person_ids,
                start_reason,
                key,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(pb::BatchCreateCandidaciesResponse {
            candidacies: batch.candidacies.into_iter().map(Into::into).collect(),
            created_count: batch.changed,
            unchanged_count: batch.unchanged,
        }))
    }

    async fn batch_advance_candidacies(
        &self,
        request: Request<pb::BatchAdvanceCandidaciesRequest>,
    ) -> Result<Response<pb::BatchAdvanceCandidaciesResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let key = super::request_key(
            "lms.v1.CertificationService/BatchAdvanceCandidacies",
            &message.request_id,
            &message,
        )?;
        let event = match pb::CandidacyStep::try_from(message.step) {
            Ok(pb::CandidacyStep::StartTraining) => CandidacyEvent::StartTraining,
            Ok(pb::CandidacyStep::BeginSupervisedPractice) => {
                CandidacyEvent::BeginSupervisedPractice
            }
            Ok(pb::CandidacyStep::SubmitForAssessment) => CandidacyEvent::SubmitForAssessment,
            _ => {
                return Err(Error::invalid(
                    "step",
                    "is required: START_TRAINING, BEGIN_SUPERVISED_PRACTICE or SUBMIT_FOR_ASSESSMENT",
                )
                .into());
            }
        };
        if message.candidacy_ids.is_empty() || message.candidacy_ids.len() > MAX_BATCH_CANDIDACIES {
            return Err(Error::invalid(
                "candidacy_ids",
                format!("must hold 1 to {MAX_BATCH_CANDIDACIES} ids"),
            )
            .into());
        }
        if !message.etags.is_empty() && message.etags.len() != message.candidacy_ids.len() {
            return Err(
                Error::invalid("etags", "must be empty or hold one etag per candidacy id").into(),
            );
        }
        let reason = validate_reason("reason", &message.reason)?;
        let mut violations = crate::error::Violations::new();
        let mut seen = std::collections::HashMap::new();
        let mut items = Vec::with_capacity(message.candidacy_ids.len());
        for (index, id) in message.candidacy_ids.iter().enumerate() {
            let field = format!("candidacy_ids[{index}]");
            let etag = message.etags.get(index).map(String::as_str).unwrap_or("");
            let parsed = required_id(&field, id).and_then(|id| {
                super::expected_revision(&format!("etags[{index}]"), etag)
                    .map(|revision| (id, revision))
            });
            match parsed {
                Ok((id, revision)) => {
                    if let Some(first) = seen.insert(id.clone(), index) {
                        violations.add(&field, format!("repeats candidacy_ids[{first}]"));
                    }
                    items.push((id, revision));
                }
                Err(Error::InvalidArgument(found)) => {
                    for violation in found.as_slice() {
                        violations.add(&violation.field, &violation.description);
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        violations.into_result(())?;
        let caller = scope::caller(&self.store, &context, Object::CandidacyMove).await?;
        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
        let holdings = self.store.candidacy_holdings(&ids).await?;
        for (index, id) in ids.iter().enumerate() {
            let found = holdings
                .get(id)
                .cloned()
                .ok_or_else(|| Error::not_found("candidacy", id));
            caller
                .check_found(Object::CandidacyMove, "candidacy", id, found)
                .map_err(|error| at_item(error, &format!("candidacy_ids[{index}]")))?;
        }
        let batch = self
            .store
            .batch_advance_candidacies(
                context.audit(key.as_ref().map(|key| key.request_id.clone())),
                event,
                items,
                reason,
                key,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(pb::BatchAdvanceCandidaciesResponse {
            candidacies: batch.candidacies.into_iter().map(Into::into).collect(),
            advanced_count: batch.changed,
            unchanged_count: batch.unchanged,
        }))
    }

    async fn record_supervised_delivery(
        &self,
        request: Request<pb::RecordSupervisedDeliveryRequest>,
    ) -> Result<Response<pb::SupervisedDelivery>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let session_id = required_id("session_id", &message.session_id)?;
        let candidate_id = required_id("candidate_id", &message.candidate_id)?;
        let outcome = match pb::SupervisedDeliveryOutcome::try_from(message.outcome) {
            Ok(pb::SupervisedDeliveryOutcome::Passed) => SupervisedOutcome::Passed,
            Ok(pb::SupervisedDeliveryOutcome::NeedsImprovement) => {
                SupervisedOutcome::NeedsImprovement
            }
            _ => {
                return Err(
                    Error::invalid("outcome", "is required (PASSED or NEEDS_IMPROVEMENT)").into(),
                );
            }
        };
        if message.notes.chars().count() > 2000 {
            return Err(Error::invalid("notes", "must be at most 2,000 characters").into());
        }
        let caller = scope::caller(&self.store, &context, Object::SessionLead).await?;
        caller.check_found(
            Object::SessionLead,
            "session",
            &session_id,
            self.store.get_session(&session_id).await,
        )?;
        let delivery = self
            .store
            .record_supervised_delivery(
                context.audit(None),
                session_id,
                candidate_id,
                outcome,
                message.notes.trim().to_owned(),
                self.clock.now(),
            )
            .await?;
        let outcome = match delivery.outcome {
            SupervisedOutcome::Passed => pb::SupervisedDeliveryOutcome::Passed,
            SupervisedOutcome::NeedsImprovement => pb::SupervisedDeliveryOutcome::NeedsImprovement,
        };
        Ok(Response::new(pb::SupervisedDelivery {
            session_id: delivery.session_id,
            candidate_id: delivery.candidate_id,
            candidacy_id: delivery.candidacy_id,
            supervisor_id: delivery.supervisor_id,
            outcome: outcome.into(),
            notes: delivery.notes,
            record_time: Some(super::timestamp(delivery.record_time)),
        }))
    }

    async fn issue_certificate(
        &self,
        request: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let candidacy_id = required_id("candidacy_id", &message.candidacy_id)?;
        let reason = validate_reason("reason", &message.reason)?;
        self.check_candidacy(&context, Object::CandidacyAssess, &candidacy_id)
            .await?;
        let now = self.clock.now();
        let certificate = self
            .store
            .issue_certificate(context.audit(None), candidacy_id, reason, now)
            .await?;
        Ok(Response::new(certificate_to_proto(certificate, now)))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        self.check_certificate(&context, Object::CertificateRead, &id)
            .await?;
        let certificate = self.store.get_certificate(&id).await?;
        Ok(Response::new(certificate_to_proto(
            certificate,
            self.clock.now(),
        )))
    }

    async fn get_certificate_document(
        &self,
        request: Request<pb::GetCertificateDocumentRequest>,
    ) -> Result<Response<pb::CertificateDocument>, Status> {
        let context = auth::context(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        self.check_certificate(&context, Object::CertificateRead, &id)
            .await?;
        let certificate = self.store.get_certificate(&id).await?;
        let public = self
            .public_certificate(&certificate.verification_code)
            .await?;
        let content = self.certificate_document(&public)?;
        Ok(Response::new(pb::CertificateDocument {
            content,
            content_type: document::PDF_MEDIA_TYPE.to_owned(),
            file_name: format!("certificate-{}.pdf", certificate.verification_code),
        }))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let context = auth::context(&request)?;
        let caller = scope::list_caller(&self.store, &context, Object::CertificateRead).await?;
        let visibility = caller.visibility(Object::CertificateRead);
        let message = request.into_inner();
        let person_id = optional_id_or_error("person_id", &message.person_id)?;
        let track_id = optional_id_or_error("track_id", &message.track_id)?;
        let page = Page::parse(
            message.page_size,
            &message.page_token,
            &format!("{person_id:?}|{track_id:?}"),
        )?;
        let (certificates, next_page_token) = self
            .store
            .list_certificates(
                person_id.as_deref(),
                track_id.as_deref(),
                visibility.as_ref(),
                &page,
            )
            .await?;
        let now = self.clock.now();
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: certificates
                .into_iter()
                .map(|certificate| certificate_to_proto(certificate, now))
                .collect(),
            next_page_token,
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .change(
                context,
                request.into_inner().into(),
                CertificateAction::Renew,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn suspend_certificate(
        &self,
        request: Request<pb::SuspendCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .change(
                context,
                request.into_inner().into(),
                CertificateAction::Suspend,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn reinstate_certificate(
        &self,
        request: Request<pb::ReinstateCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .change(
                context,
                request.into_inner().into(),
                CertificateAction::Reinstate,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let context = auth::context(&request)?;
        let reply = self
            .change(
                context,
                request.into_inner().into(),
                CertificateAction::Revoke,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn verify_certificate(
        &self,
        request: Request<pb::VerifyCertificateRequest>,
    ) -> Result<Response<pb::VerifyCertificateResponse>, Status> {
        // Rate-limited per client address with the other public methods, before the call
        // gets here (src/server/rate_limit.rs).
        let public = self
            .public_certificate(&request.get_ref().verification_code)
            .await?;
        let valid = public.valid();
        let PublicCertificate {
            verification,
            credential,
            ..
        } = public;
        let certificate = &verification.certificate;
        Ok(Response::new(pb::VerifyCertificateResponse {
            valid,
            status: certificate_status_to_proto(verification.status).into(),
            holder_name: verification.holder_name.clone(),
            track_code: verification.track.code.clone(),
            track_title: verification.track.title.clone(),
            level: level_to_proto(verification.track.level).into(),
            issuer_name: verification.issuer_name.clone(),
            issued_time: Some(super::timestamp(certificate.issued_time)),
            expires_time: Some(super::timestamp(certificate.expires_time)),
            credential_json: credential.to_string(),
        }))
    }

    async fn get_issuer_keys(
        &self,
        request: Request<pb::GetIssuerKeysRequest>,
    ) -> Result<Response<pb::GetIssuerKeysResponse>, Status> {
        let only = optional_id_or_error(
            "issuer_organization_id",
            &request.get_ref().issuer_organization_id,
        )?;
        let issuers = self.store.issuer_organizations(only.as_deref()).await?;
        Ok(Response::new(pb::GetIssuerKeysResponse {
            keys: issuers
                .into_iter()
                .map(|(organization_id, _)| {
                    let issuer = self.seed.issuer(&organization_id);
                    pb::IssuerKey {
                        issuer_organization_id: organization_id,
                        issuer_did: issuer.did,
                        verification_method: issuer.verification_method,
                        public_key_multibase: issuer.public_key_multibase,
                        public_key_base64url: issuer.public_key_base64url,
                    }
                })
                .collect(),
        }))
    }

    async fn get_status_list_credential(
        &self,
        request: Request<pb::GetStatusListCredentialRequest>,
    ) -> Result<Response<pb::GetStatusListCredentialResponse>, Status> {
        let message = request.into_inner();
        let credential_json = self
            .status_list(&message.issuer_organization_id, &message.purpose)
            .await?;
        Ok(Response::new(pb::GetStatusListCredentialResponse {
            credential_json,
        }))
    }

    async fn list_certified_trainers(
        &self,
        request: Request<pb::ListCertifiedTrainersRequest>,
    ) -> Result<Response<pb::ListCertifiedTrainersResponse>, Status> {
        let context = auth::context(&request)?;
        let caller = scope::caller(&self.store, &context, Object::CertificateRead).await?;
        let message = request.into_inner();
        let track_id = optional_id_or_error("track_id", &message.track_id)?;
        let module_id = optional_id_or_error("module_id", &message.module_id)?;
        let page = Page::parse(
            message.page_size,
            &message.page_token,
            &format!("{track_id:?}|{module_id:?}"),
        )?;
        let now = self.clock.now();
        let (trainers, next_page_token) = self
            .store
            .list_certified_trainers(track_id.as_deref(), module_id.as_deref(), &page, now)
            .await?;
        Ok(Response::new(pb::ListCertifiedTrainersResponse {
            trainers: trainers
                .into_iter()
                .map(|(certificate, person, path)| {
                    let owner = Owner {
                        track_id: Some(certificate.track_id.clone()),
                        ..Owner::person(person.id.clone(), path)
                    };
                    let readable = caller.allows(Object::CertificateRead, &owner);
                    let certificate = certificate_to_proto(certificate, now);
                    if readable {
                        pb::CertifiedTrainer {
                            person_id: person.id,
                            full_name: person.full_name,
                            organization_id: person.organization_id,
                            certificate: Some(certificate),
                        }
                    } else {
                        verifier_view(person.full_name, certificate)
                    }
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_cascade(
        &self,
        request: Request<pb::GetCascadeRequest>,
    ) -> Result<Response<pb::GetCascadeResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let person_id = required_id("person_id", &message.person_id)?;
        let depth = match message.depth {
            0 => 2,
            depth if (1..=MAX_CASCADE_DEPTH).contains(&depth) => depth,
            _ => {
                return Err(Error::invalid(
                    "depth",
                    format!("must be 0 (2) to {MAX_CASCADE_DEPTH}"),
                )
                .into());
            }
        };
        let page = Page::parse(
            message.page_size,
            &message.page_token,
            &format!("{person_id}|{depth}"),
        )?;
        let caller = self.check_cascade(&context, &person_id).await?;
        // A cascade shows whom its root trained; to an org admin, people of other organisations
        // in it appear without their names.
        let whole =
            caller.reaches_everything(Object::Cascade) || caller.subject() == person_id.as_str();
        let (nodes, next_page_token) = self.store.cascade(&person_id, depth, &page).await?;
        Ok(Response::new(pb::GetCascadeResponse {
            nodes: nodes
                .into_iter()
                .map(|node| pb::CascadeNode {
                    full_name: if whole
                        || caller.allows(
                            Object::Cascade,
                            &Owner::person(node.person_id.clone(), node.organization_path),
                        ) {
                        node.full_name
                    } else {
                        String::new()
                    },
                    person_id: node.person_id,
                    organization_id: node.organization_id,
                    depth: node.depth,
                    trained_by: node.trained_by,
                    certified: node.certified,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_cascade_reach(
        &self,
        request: Request<pb::GetCascadeReachRequest>,
    ) -> Result<Response<pb::GetCascadeReachResponse>, Status> {
        let context = auth::context(&request)?;
        let message = request.into_inner();
        let person_id = required_id("person_id", &message.person_id)?;
        if !(0..=20).contains(&message.organization_level) {
            return Err(Error::invalid("organization_level", "must be 0 to 20").into());
        }
        self.check_cascade(&context, &person_id).await?;
        let reach = self
            .store
            .cascade_reach(&person_id, message.organization_level)
            .await?;
        Ok(Response::new(pb::GetCascadeReachResponse {
            total_people: reach.total_people,
            total_certified_trainers: reach.total_certified_trainers,
            levels: reach
                .levels
                .into_iter()
                .map(|(depth, people, certified_trainers)| pb::CascadeLevel {
                    depth,
                    people,
                    certified_trainers,
                })
                .collect(),
            organizations: reach
                .organizations
                .into_iter()
                .map(|(organization_id, name, people, certified_trainers)| {
                    pb::CascadeOrganization {
                        organization_id,
                        name,
                        people,
                        certified_trainers,
                    }
                })
                .collect(),
        }))
    }
}
