//! Bearer tokens: the development HS256 key, production public keys (PEM or JWKS), verification and signing.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    jwk::{Jwk, JwkSet},
};
use serde::{Deserialize, Serialize};

use super::{Principal, Role};
use crate::config::{AuthConfig, PublicKeyAlgorithm};
use crate::error::{Error, Result};

/// File in the data dir holding the development signing key.
pub const DEV_KEY_FILE: &str = "jwt-dev-hs256.key";
/// Least time between two reloads of the JWKS file on an unknown `kid`.
const JWKS_RELOAD_COOLDOWN: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// Claims of an LMS bearer token.
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
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before (seconds since the epoch).
    pub nbf: u64,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
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
    },
}

/// Verifies bearer tokens against the configured keys.
pub struct TokenVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    max_lifetime_seconds: u64,
}

impl TokenVerifier {
    /// Builds the verifier the configuration asks for: a JWKS file, a PEM key, or the development key in `data_dir`.
    pub fn from_config(config: &AuthConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let keys = if let Some(path) = &config.jwks_file {
            Keys::Jwks {
                set: RwLock::new(read_jwks(path)?),
                path: path.clone(),
                last_reload: Mutex::new(None),
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
        Ok(Self {
            keys,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            max_lifetime_seconds: config.jwt_max_lifetime.as_secs(),
        })
    }

    /// Verifies `token` and returns its principal, or UNAUTHENTICATED saying why not.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let header = decode_header(token).map_err(|_| unauthenticated("malformed token"))?;
        let claims = match &self.keys {
            Keys::Shared(key) => self.decode(token, key, Algorithm::HS256)?,
            Keys::Public(key, algorithm) => self.decode(token, key, *algorithm)?,
            Keys::Jwks { .. } => {
                let kid = header
                    .kid
                    .ok_or_else(|| unauthenticated("token has no key id (kid)"))?;
                let jwk = self.find_jwk(&kid)?;
                let algorithm = jwk_algorithm(&jwk)?;
                let key =
                    DecodingKey::from_jwk(&jwk).map_err(|_| unauthenticated("unusable key"))?;
                self.decode(token, &key, algorithm)?
            }
        };
        let now = jsonwebtoken::get_current_timestamp();
        if claims.exp > now + self.max_lifetime_seconds + LEEWAY_SECONDS {
            return Err(unauthenticated(
                "token lives longer than this server accepts (see --jwt-max-lifetime)",
            ));
        }
        principal_from_claims(claims)
    }

    fn decode(&self, token: &str, key: &DecodingKey, algorithm: Algorithm) -> Result<Claims> {
        // One pinned algorithm per key: `alg: none` and algorithm confusion are refused by jsonwebtoken.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        decode::<Claims>(token, key, &validation)
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
                Ok(fresh) => *set.write().expect("jwks lock") = fresh,
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

fn principal_from_claims(claims: Claims) -> Result<Principal> {
    let mut roles = Vec::with_capacity(claims.roles.len());
    for name in &claims.roles {
        // Unknown roles are ignored rather than refused, so issuers may add their own.
        if let Some(role) = Role::parse(name) {
            roles.push(role);
        }
    }
    if claims.sub.is_empty() {
        return Err(unauthenticated("token has an empty subject"));
    }
    if roles.contains(&Role::OrgAdmin) && claims.org.as_deref().is_none_or(str::is_empty) {
        return Err(unauthenticated(
            "an org_admin token must name its organisation (org)",
        ));
    }
    let organization_id = claims.org.filter(|org| !org.is_empty());
    if organization_id
        .as_deref()
        .is_some_and(|org| !crate::domain::is_uuid(org))
    {
        return Err(unauthenticated(
            "the org claim is not an organisation id (a UUID)",
        ));
    }
    Ok(Principal {
        subject: claims.sub,
        roles,
        organization_id,
    })
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
        aud: config.jwt_audience.clone(),
        exp: now + request.ttl.as_secs(),
        nbf: now,
        iat: now,
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key),
    )?)
}
