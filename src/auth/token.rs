//! Bearer tokens: the development HS256 key, production public keys (PEM, a JWKS file, a JWKS
//! URL or OIDC discovery), verification of OIDC-shaped claims, and signing.

use std::{
    collections::HashMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, RwLock, Weak},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    jwk::{Jwk, JwkSet},
};
use serde::{Deserialize, Serialize};

use super::{Principal, Role};
use crate::config::{AuthConfig, PersonMatch, PublicKeyAlgorithm};
use crate::error::{Error, Result};
use crate::store::Store;

/// File in the data dir holding the development signing key.
pub const DEV_KEY_FILE: &str = "jwt-dev-hs256.key";
/// Least time between two reloads of the JWKS file on an unknown `kid`.
const JWKS_RELOAD_COOLDOWN: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// Time between two background fetches of a remote key set that loaded.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Time between two background fetches of a remote key set while none has loaded yet.
const JWKS_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait for a discovery document or key set.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or key set accepted.
const FETCH_MAX_BYTES: usize = 1024 * 1024;
/// How long a person claim resolved through the store stays cached.
const PERSON_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most person claims cached at once (the cache is emptied when full).
const PERSON_CACHE_MAX: usize = 100_000;
/// How long a verified token's principal is reused without checking its signature again (its
/// expiry is checked on every call; a new key set forgets every one).
const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most verified tokens remembered at once (by SHA-256 of the token).
const VERIFIED_CACHE_MAX: usize = 20_000;

/// A token that verified: its principal and the times that bound its use.
#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
    at: Instant,
    /// The key set's generation it verified under.
    generation: u64,
}

/// The `aud` claim: one audience or several (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience, as a string.
    One(String),
    /// Several audiences, as an array.
    Many(Vec<String>),
}

impl From<String> for Audience {
    fn from(audience: String) -> Self {
        Self::One(audience)
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Self::One(audience.to_owned())
    }
}

/// Claims of an LMS bearer token, as `lms token` signs them.
///
/// Verification reads more shapes than this: `aud` as a string or an array, `nbf` and `iat`
/// optional, roles at configured claim paths and the person at a configured claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: a person id or a service name.
    pub sub: String,
    /// Granted roles (`admin`, `org_admin`, ...).
    #[serde(default)]
    pub roles: Vec<String>,
    /// For `org_admin`: the organisation whose subtree they manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Issuer.
    pub iss: String,
    /// Audience: a string or an array.
    pub aud: Audience,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before (seconds since the epoch), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at (seconds since the epoch), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

enum Keys {
    /// The development key: HS256 only.
    Shared(DecodingKey),
    /// One production public key, with its pinned algorithm.
    Public(DecodingKey, Algorithm),
    /// A JWKS file; each key pins its own algorithm.
    Jwks {
        path: PathBuf,
        set: RwLock<JwkSet>,
        last_reload: Mutex<Option<Instant>>,
        /// Bumped whenever the set is read again: remembered tokens verified before are not reused.
        generation: std::sync::atomic::AtomicU64,
    },
    /// A JWKS fetched over HTTP(S), directly or through OIDC discovery.
    Remote(Arc<RemoteKeys>),
}

/// Where a remote key set is found.
enum RemoteSource {
    /// The JWKS URL itself.
    Jwks(String),
    /// An OIDC issuer: its discovery document names the JWKS URL.
    Discovery(String),
}

/// A remote key set: fetched at start and every [`JWKS_REFRESH_INTERVAL`], and on an unknown
/// `kid` at most once per cooldown, one fetch at a time.
struct RemoteKeys {
    source: RemoteSource,
    client: reqwest::Client,
    /// `None` until a fetch succeeded.
    set: RwLock<Option<JwkSet>>,
    /// The JWKS URL once discovery found it.
    jwks_uri: Mutex<Option<String>>,
    /// When a token with an unknown `kid` last caused a fetch; held during that fetch, so
    /// concurrent unknown kids wait for it instead of fetching again (single flight).
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    cooldown: Duration,
    /// Bumped whenever a fetch replaces the set: remembered tokens verified before are not reused.
    generation: std::sync::atomic::AtomicU64,
}

impl RemoteKeys {
    fn find(&self, kid: &str) -> Option<Jwk> {
        self.set
            .read()
            .expect("jwks lock")
            .as_ref()
            .and_then(|set| set.find(kid).cloned())
    }

    fn loaded(&self) -> bool {
        self.set.read().expect("jwks lock").is_some()
    }

    /// Returns the key `kid`, fetching the set again if it is unknown and the cooldown allows.
    async fn find_or_refetch(&self, kid: &str) -> Result<Jwk> {
        if let Some(jwk) = self.find(kid) {
            return Ok(jwk);
        }
        let mut last = self.last_refetch.lock().await;
        // A fetch we waited for may have brought the key.
        if let Some(jwk) = self.find(kid) {
            return Ok(jwk);
        }
        if last.is_none_or(|at| at.elapsed() >= self.cooldown) {
            *last = Some(Instant::now());
            if let Err(error) = self.fetch().await {
                tracing::warn!(error = %format!("{error:#}"), "fetching the token key set failed");
            }
        }
        drop(last);
        match self.find(kid) {
            Some(jwk) => Ok(jwk),
            None if !self.loaded() => Err(unauthenticated("token keys not loaded yet")),
            None => Err(unauthenticated("token signed by an unknown key")),
        }
    }

    /// Fetches the key set (after discovery, the first time) and replaces the cached one.
    async fn fetch(&self) -> anyhow::Result<()> {
        let url = self.jwks_url().await?;
        let body = self.get(&url).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .with_context(|| format!("parsing the key set at {url} as a JWK set"))?;
        tracing::info!(url = %url, keys = set.keys.len(), "token key set loaded");
        *self.set.write().expect("jwks lock") = Some(set);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn jwks_url(&self) -> anyhow::Result<String> {
        let issuer = match &self.source {
            RemoteSource::Jwks(url) => return Ok(url.clone()),
            RemoteSource::Discovery(issuer) => issuer,
        };
        if let Some(url) = self.jwks_uri.lock().expect("jwks uri lock").clone() {
            return Ok(url);
        }
        #[derive(Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .with_context(|| format!("{url} is not an OIDC discovery document with a jwks_uri"))?;
        *self.jwks_uri.lock().expect("jwks uri lock") = Some(discovery.jwks_uri.clone());
        Ok(discovery.jwks_uri)
    }

    async fn get(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?
            .error_for_status()
            .with_context(|| format!("fetching {url}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading {url}"))?
        {
            if body.len() + chunk.len() > FETCH_MAX_BYTES {
                anyhow::bail!("{url} answered more than {FETCH_MAX_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Fetches `keys` now and then every [`JWKS_REFRESH_INTERVAL`] (every [`JWKS_RETRY_INTERVAL`]
/// while none loaded), until the verifier is dropped.
async fn refresh_in_background(keys: Weak<RemoteKeys>) {
    loop {
        let Some(strong) = keys.upgrade() else { return };
        // Under the single-flight lock: tokens with an unknown kid wait for this fetch rather
        // than start another; the refetch cooldown is left to them.
        let fetched = {
            let _flight = strong.last_refetch.lock().await;
            strong.fetch().await
        };
        let wait = match fetched {
            Ok(()) => JWKS_REFRESH_INTERVAL,
            Err(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    "fetching the token key set failed; tokens are refused until it loads"
                );
                if strong.loaded() {
                    JWKS_REFRESH_INTERVAL
                } else {
                    JWKS_RETRY_INTERVAL
                }
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}

/// Verifies bearer tokens against the configured keys.
pub struct TokenVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    max_lifetime_seconds: u64,
    /// Dotted claim paths holding role or group names.
    role_paths: Vec<String>,
    /// Issuer role or group names to LMS roles.
    role_map: HashMap<String, Vec<Role>>,
    /// Dotted claim path naming the person.
    person_claim: String,
    person_match: PersonMatch,
    /// Where person claims are looked up (see [`TokenVerifier::attach_store`]).
    store: OnceLock<Store>,
    /// Person claim value to person id, with when it was looked up.
    person_cache: Mutex<HashMap<String, (String, Instant)>>,
    /// Tokens verified lately, by SHA-256: a client sends the same token with every call, and
    /// checking its signature and parsing its claims again cost more than the rest of a cached
    /// read.
    verified: quick_cache::sync::Cache<[u8; 32], Verified>,
}

impl TokenVerifier {
    /// Builds the verifier the configuration asks for: a JWKS URL or OIDC discovery, a JWKS file,
    /// a PEM key, or the development key in `data_dir`.
    ///
    /// A remote key set is fetched in the background (when called inside a Tokio runtime): the
    /// server starts even if the issuer is unreachable, and refuses tokens as UNAUTHENTICATED
    /// ("token keys not loaded yet") until a fetch succeeds.
    pub fn from_config(config: &AuthConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let remote = match (&config.jwks_url, &config.oidc_issuer_url) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set --jwks-url or --oidc-issuer-url, not both")
            }
            (Some(url), None) => Some(RemoteSource::Jwks(check_url(url, "--jwks-url")?)),
            (None, Some(url)) => Some(RemoteSource::Discovery(check_url(
                url,
                "--oidc-issuer-url",
            )?)),
            (None, None) => None,
        };
        let keys = if let Some(source) = remote {
            if config.jwks_file.is_some() || config.jwt_public_key.is_some() {
                anyhow::bail!(
                    "a JWKS URL or OIDC issuer excludes --jwks-file and --jwt-public-key"
                );
            }
            let client = reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(FETCH_TIMEOUT)
                .build()
                .context("building the HTTP client for the token key set")?;
            let remote = Arc::new(RemoteKeys {
                source,
                client,
                set: RwLock::new(None),
                jwks_uri: Mutex::new(None),
                last_refetch: tokio::sync::Mutex::new(None),
                cooldown: config.jwks_refresh_cooldown,
                generation: std::sync::atomic::AtomicU64::new(0),
            });
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(refresh_in_background(Arc::downgrade(&remote)));
            }
            Keys::Remote(remote)
        } else if let Some(path) = &config.jwks_file {
            Keys::Jwks {
                set: RwLock::new(read_jwks(path)?),
                path: path.clone(),
                last_reload: Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
            }
        } else if let Some(path) = &config.jwt_public_key {
            let pem = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let (key, algorithm) = match config.jwt_algorithm {
                PublicKeyAlgorithm::Rs256 => (DecodingKey::from_rsa_pem(&pem)?, Algorithm::RS256),
                PublicKeyAlgorithm::Es256 => (DecodingKey::from_ec_pem(&pem)?, Algorithm::ES256),
                PublicKeyAlgorithm::EdDsa => (DecodingKey::from_ed_pem(&pem)?, Algorithm::EdDSA),
            };
            Keys::Public(key, algorithm)
        } else {
            Keys::Shared(DecodingKey::from_secret(&load_or_create_dev_key(data_dir)?))
        };
        let role_paths: Vec<String> = config
            .jwt_roles_claim
            .iter()
            .map(|path| path.trim().to_owned())
            .filter(|path| !path.is_empty())
            .collect();
        if role_paths.is_empty() {
            anyhow::bail!("--jwt-roles-claim names no claim");
        }
        let person_claim = config.jwt_person_claim.trim().to_owned();
        if person_claim.is_empty() {
            anyhow::bail!("--jwt-person-claim names no claim");
        }
        Ok(Self {
            keys,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            max_lifetime_seconds: config.jwt_max_lifetime.as_secs(),
            role_paths,
            role_map: parse_role_map(&config.jwt_role_map)?,
            person_claim,
            person_match: config.jwt_person_match,
            store: OnceLock::new(),
            person_cache: Mutex::new(HashMap::new()),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_MAX),
        })
    }

    /// Gives the verifier the store in which `--jwt-person-match external_id|email` looks
    /// people up; without it such tokens are refused. Only the first store given is kept.
    pub fn attach_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// Verifies `token` and returns its principal, or UNAUTHENTICATED saying why not.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.verified.get(&digest) {
            // The same checks of time the full verification makes, with the same leeway.
            if hit.at.elapsed() < VERIFIED_CACHE_TTL
                && hit.generation == self.key_generation()
                && hit.exp + LEEWAY_SECONDS >= now
                && hit.nbf.is_none_or(|nbf| nbf <= now + LEEWAY_SECONDS)
            {
                return Ok(hit.principal);
            }
            self.verified.remove(&digest);
        }
        self.verify_afresh(token).await
    }

    /// Returns the generation of the key set: it changes whenever the set is read again.
    fn key_generation(&self) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        match &self.keys {
            Keys::Remote(remote) => remote.generation.load(SeqCst),
            Keys::Jwks { generation, .. } => generation.load(SeqCst),
            Keys::Shared(_) | Keys::Public(..) => 0,
        }
    }

    /// Verifies `token` completely (signature, claims, person lookup) and remembers the result.
    async fn verify_afresh(&self, token: &str) -> Result<Principal> {
        use sha2::Digest as _;
        // Read before verifying: a set replaced meanwhile makes this entry stale, never reused.
        let generation = self.key_generation();
        let header = decode_header(token).map_err(|_| unauthenticated("malformed token"))?;
        let claims = match &self.keys {
            Keys::Shared(key) => self.decode(token, key, Algorithm::HS256)?,
            Keys::Public(key, algorithm) => self.decode(token, key, *algorithm)?,
            Keys::Jwks { .. } | Keys::Remote(_) => {
                let kid = header
                    .kid
                    .ok_or_else(|| unauthenticated("token has no key id (kid)"))?;
                let jwk = match &self.keys {
                    Keys::Remote(remote) => remote.find_or_refetch(&kid).await?,
                    _ => self.find_jwk(&kid)?,
                };
                let algorithm = jwk_algorithm(&jwk)?;
                let key =
                    DecodingKey::from_jwk(&jwk).map_err(|_| unauthenticated("unusable key"))?;
                self.decode(token, &key, algorithm)?
            }
        };
        let now = jsonwebtoken::get_current_timestamp();
        let exp = claims.get("exp").and_then(serde_json::Value::as_u64);
        if exp.is_none_or(|exp| exp > now + self.max_lifetime_seconds + LEEWAY_SECONDS) {
            return Err(unauthenticated(
                "token lives longer than this server accepts (see --jwt-max-lifetime)",
            ));
        }
        let mut principal = self.principal_from_claims(&claims)?;
        principal.subject = self.person_id(&claims, principal.subject).await?;
        if let Some(exp) = exp {
            self.verified.insert(
                sha2::Sha256::digest(token.as_bytes()).into(),
                Verified {
                    principal: principal.clone(),
                    exp,
                    nbf: claims.get("nbf").and_then(serde_json::Value::as_u64),
                    at: Instant::now(),
                    generation,
                },
            );
        }
        Ok(principal)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<serde_json::Value> {
        // One pinned algorithm per key: `alg: none` and algorithm confusion are refused by jsonwebtoken.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        // `aud` may be a string or an array; one of its values must be ours.
        validation.set_audience(&[&self.audience]);
        // `nbf` and `iat` are optional (OIDC issuers often omit `nbf`); `nbf` is checked when present.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        decode::<serde_json::Value>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match error.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
                    ErrorKind::InvalidAudience => "token has the wrong audience",
                    ErrorKind::InvalidIssuer => "token has the wrong issuer",
                    ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
                    ErrorKind::InvalidSignature => "token signature does not verify",
                    ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                    _ => "invalid token",
                };
                unauthenticated(why)
            })
    }

    fn find_jwk(&self, kid: &str) -> Result<Jwk> {
        let Keys::Jwks {
            path,
            set,
            last_reload,
            generation,
        } = &self.keys
        else {
            return Err(unauthenticated("no key set configured"));
        };
        if let Some(jwk) = set.read().expect("jwks lock").find(kid) {
            return Ok(jwk.clone());
        }
        // Unknown kid: reload the file at most once per cooldown (single flight under the mutex).
        let mut last = last_reload.lock().expect("jwks reload lock");
        if last.is_none_or(|at| at.elapsed() >= JWKS_RELOAD_COOLDOWN) {
            *last = Some(Instant::now());
            match read_jwks(path) {
                Ok(fresh) => {
                    *set.write().expect("jwks lock") = fresh;
                    generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(error) => tracing::warn!(error = %error, "reloading the jwks file failed"),
            }
        }
        drop(last);
        set.read()
            .expect("jwks lock")
            .find(kid)
            .cloned()
            .ok_or_else(|| unauthenticated("token signed by an unknown key"))
    }

    /// Reads subject, roles (at every configured path, through the role map) and organisation.
    fn principal_from_claims(&self, claims: &serde_json::Value) -> Result<Principal> {
        let subject = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(unauthenticated("token has an empty subject")),
        };
        let mut roles = Vec::new();
        for path in &self.role_paths {
            for name in names_at(claims, path) {
                // Unknown names are ignored rather than refused, so issuers may add their own.
                let mapped = self.role_map.get(name).map(Vec::as_slice);
                let parsed = Role::parse(name);
                for role in mapped.unwrap_or_default().iter().copied().chain(parsed) {
                    if !roles.contains(&role) {
                        roles.push(role);
                    }
                }
            }
        }
        let organization_id = match claims.get("org") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(org)) if org.is_empty() => None,
            Some(serde_json::Value::String(org)) if crate::domain::is_uuid(org) => {
                Some(org.clone())
            }
            Some(_) => {
                return Err(unauthenticated(
                    "the org claim is not an organisation id (a UUID)",
                ));
            }
        };
        if roles.contains(&Role::OrgAdmin) && organization_id.is_none() {
            return Err(unauthenticated(
                "an org_admin token must name its organisation (org)",
            ));
        }
        Ok(Principal {
            subject,
            roles,
            organization_id,
        })
    }

    /// Returns the LMS person id the token names: its person claim, looked up as configured;
    /// a token without the person claim (a service) keeps its `sub`.
    async fn person_id(&self, claims: &serde_json::Value, sub: String) -> Result<String> {
        let value = match claim_at(claims, &self.person_claim) {
            None | Some(serde_json::Value::Null) => return Ok(sub),
            Some(serde_json::Value::String(value)) if !value.is_empty() => value.clone(),
            Some(serde_json::Value::Number(number)) => number.to_string(),
            Some(_) => {
                return Err(unauthenticated(
                    "the token's person claim is not a string (see --jwt-person-claim)",
                ));
            }
        };
        if self.person_match == PersonMatch::Id {
            return Ok(value);
        }
        if let Some((id, at)) = self
            .person_cache
            .lock()
            .expect("person cache lock")
            .get(&value)
            && at.elapsed() < PERSON_CACHE_TTL
        {
            return Ok(id.clone());
        }
        let store = self
            .store
            .get()
            .ok_or_else(|| unauthenticated("person lookup is not available"))?;
        let ids = store
            .person_ids_matching(self.person_match, &value)
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "looking up a token's person failed");
                Error::Unavailable("could not look up the token's person; retry".to_owned())
            })?;
        let [id] = ids.as_slice() else {
            return Err(unauthenticated(if ids.is_empty() {
                "no person matches the token's person claim"
            } else {
                "several people match the token's person claim"
            }));
        };
        let mut cache = self.person_cache.lock().expect("person cache lock");
        if cache.len() >= PERSON_CACHE_MAX {
            cache.clear();
        }
        cache.insert(value, (id.clone(), Instant::now()));
        Ok(id.clone())
    }
}

/// Returns `url` if it is an http(s) URL.
fn check_url(url: &str, setting: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{setting} {url}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        anyhow::bail!("{setting} must be an https (or http) URL, not {url}");
    }
    Ok(url.to_owned())
}

/// Parses `name=role` pairs into issuer name → LMS roles.
fn parse_role_map(pairs: &[String]) -> anyhow::Result<HashMap<String, Vec<Role>>> {
    let mut map: HashMap<String, Vec<Role>> = HashMap::new();
    for pair in pairs
        .iter()
        .map(|pair| pair.trim())
        .filter(|pair| !pair.is_empty())
    {
        let Some((name, role)) = pair.rsplit_once('=') else {
            anyhow::bail!("--jwt-role-map wants name=role, not {pair}");
        };
        let Some(role) = Role::parse(role.trim()) else {
            anyhow::bail!("--jwt-role-map: {role} is not an LMS role (in {pair})");
        };
        let roles = map.entry(name.trim().to_owned()).or_default();
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(map)
}

/// Returns the claim at a dotted `path`. At each level the longest key that matches is taken, so
/// keys that themselves hold dots (`https://example.com/roles`) are found too.
fn claim_at<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    fn walk<'a>(value: &'a serde_json::Value, segments: &[&str]) -> Option<&'a serde_json::Value> {
        if segments.is_empty() {
            return Some(value);
        }
        let object = value.as_object()?;
        (1..=segments.len()).rev().find_map(|take| {
            object
                .get(&segments[..take].join("."))
                .and_then(|inner| walk(inner, &segments[take..]))
        })
    }
    let segments: Vec<&str> = path.split('.').collect();
    walk(claims, &segments)
}

/// Returns the names at `path`: an array of strings, or one string.
fn names_at<'a>(claims: &'a serde_json::Value, path: &str) -> Vec<&'a str> {
    match claim_at(claims, path) {
        Some(serde_json::Value::String(name)) => vec![name.as_str()],
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(serde_json::Value::as_str).collect()
        }
        _ => Vec::new(),
    }
}

fn unauthenticated(why: &str) -> Error {
    Error::Unauthenticated(why.to_owned())
}

fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm};
    if let Some(algorithm) = jwk.common.key_algorithm {
        return match algorithm {
            KeyAlgorithm::RS256 => Ok(Algorithm::RS256),
            KeyAlgorithm::ES256 => Ok(Algorithm::ES256),
            KeyAlgorithm::EdDSA => Ok(Algorithm::EdDSA),
            _ => Err(unauthenticated("key algorithm not accepted")),
        };
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Ok(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(_) => Ok(Algorithm::ES256),
        AlgorithmParameters::OctetKeyPair(_) => Ok(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => Err(unauthenticated(
            "symmetric keys are not accepted from a key set",
        )),
    }
}

fn read_jwks(path: &Path) -> anyhow::Result<JwkSet> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {} as a JWK set", path.display()))
}

/// Returns the development signing key from `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create_dev_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    let path = data_dir.join(DEV_KEY_FILE);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key: [u8; 32] = rand::random();
            file.write_all(hex::encode(key).as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created a development signing key");
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    hex::decode(text.trim()).with_context(|| format!("{} is not a hex key", path.display()))
}

/// What a token should say.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Subject.
    pub subject: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Organisation (for `org_admin`).
    pub organization_id: Option<String>,
    /// Lifetime.
    pub ttl: Duration,
}

/// Signs a token with the development key of `data_dir`.
pub fn sign_dev_token(
    config: &AuthConfig,
    data_dir: &Path,
    request: &TokenRequest,
) -> anyhow::Result<String> {
    let key = load_or_create_dev_key(data_dir)?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: request.subject.clone(),
        roles: request
            .roles
            .iter()
            .map(|role| role.as_str().to_owned())
            .collect(),
        org: request.organization_id.clone(),
        iss: config.jwt_issuer.clone(),
        aud: Audience::One(config.jwt_audience.clone()),
        exp: now + request.ttl.as_secs(),
        nbf: Some(now),
        iat: Some(now),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key),
    )?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Role, claim_at, names_at, parse_role_map};

    #[tokio::test]
    async fn a_remembered_token_is_still_refused_once_expired() {
        use sha2::Digest as _;
        let data_dir =
            std::env::temp_dir().join(format!("lms-token-cache-{}", uuid::Uuid::new_v4()));
        let config = crate::config::Config::with_data_dir(data_dir.clone());
        let verifier = super::TokenVerifier::from_config(&config.auth, &data_dir).unwrap();
        let token = super::sign_dev_token(
            &config.auth,
            &data_dir,
            &super::TokenRequest {
                subject: "someone".to_owned(),
                roles: vec![Role::Learner],
                organization_id: None,
                ttl: std::time::Duration::from_secs(600),
            },
        )
        .unwrap();
        let principal = verifier.verify(&token).await.unwrap();
        assert_eq!(principal.subject, "someone");
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let mut remembered = verifier
            .verified
            .get(&digest)
            .expect("remembered after verifying");
        assert_eq!(verifier.verify(&token).await.unwrap(), principal);
        // Remembered as expired (beyond the leeway), the entry is not served: the cache skips
        // the signature check, never the expiry.
        remembered.exp = jsonwebtoken::get_current_timestamp() - super::LEEWAY_SECONDS - 1;
        remembered.principal.subject = "forged".to_owned();
        verifier.verified.insert(digest, remembered);
        // Served from the cache, it would say "forged"; verified afresh, it says who signed.
        assert_eq!(verifier.verify(&token).await.unwrap().subject, "someone");
        let _ = std::fs::remove_dir_all(data_dir);
    }

    #[test]
    fn claim_paths_walk_objects_and_keys_holding_dots() {
        let claims = json!({
            "realm_access": { "roles": ["offline_access", "lms-administrators"] },
            "resource_access": { "lms-api": { "roles": ["trainer"] } },
            "https://example.com/roles": ["assessor"],
            "groups": "hr",
            "employee_number": 12345,
        });
        assert_eq!(
            names_at(&claims, "realm_access.roles"),
            ["offline_access", "lms-administrators"]
        );
        assert_eq!(
            names_at(&claims, "resource_access.lms-api.roles"),
            ["trainer"]
        );
        assert_eq!(names_at(&claims, "https://example.com/roles"), ["assessor"]);
        assert_eq!(names_at(&claims, "groups"), ["hr"]);
        assert!(names_at(&claims, "roles").is_empty());
        assert!(names_at(&claims, "realm_access.roles.more").is_empty());
        assert_eq!(claim_at(&claims, "employee_number"), Some(&json!(12345)));
    }

    #[test]
    fn the_role_map_refuses_what_is_not_an_lms_role() {
        let map = parse_role_map(&[
            "lms-administrators=admin".to_owned(),
            " /hr/sync = hr_service ".to_owned(),
            "lms-administrators=programme_manager".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            map["lms-administrators"],
            [Role::Admin, Role::ProgrammeManager]
        );
        assert_eq!(map["/hr/sync"], [Role::HrService]);
        assert!(parse_role_map(&["group=superuser".to_owned()]).is_err());
        assert!(parse_role_map(&["no-equals-sign".to_owned()]).is_err());
    }
}
