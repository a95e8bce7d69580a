//! The plain HTTP surface for people and standard verifiers, on the gRPC listener: read-only GET
//! (and HEAD) routes, rate-limited per client address with the public gRPC methods.
//!
//! | path (under the path of `--public-url`) | what | media type |
//! |---|---|---|
//! | `/status-lists/<issuer id>/<revocation\|suspension>` | the signed BitstringStatusListCredential, at the URL the credentials name | `application/vc` |
//! | `/issuers/<issuer id>` | the issuer's Open Badges Profile with its public key | `application/ld+json` |
//! | `/tracks/<track id>` | the track's Open Badges Achievement, which every credential of it names | `application/ld+json` |
//! | `/verify` | a form to type a code (`?code=` redirects to the page) | `text/html` |
//! | `/verify/<code>` | the verification page (English or Malay), or JSON by `Accept` | `text/html`, `application/json` |
//! | `/verify/<code>/certificate.pdf` | the printable certificate | `application/pdf` |
//!
//! The layer sits in front of gRPC-Web (which answers any other HTTP/1.1 request with 400) and
//! lets everything that is not one of these paths through untouched: gRPC paths
//! (`/package.Service/Method`) never start like them. Requests here are not calls: they skip the
//! token check and the gate, so they carry their own limits (the public rate limit, a concurrency
//! limit and the request timeout). docs/verification.md describes the surface.

pub mod page;

use std::{
    borrow::Cow,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use prost::bytes::Bytes;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::rate_limit::PublicRateLimitLayer;
use crate::api::certification::{CertificationApi, PublicCertificate};
use crate::domain::certification::{
    CertificateStatus,
    credential::rfc3339,
    document::{CREDENTIAL_MEDIA_TYPE, Language, PDF_MEDIA_TYPE},
    normalize_verification_code,
};

/// Media type of the status lists: a verifiable credential secured with an embedded proof
/// (VC Data Model 2.0, §6.3; it replaced the earlier `application/vc+ld+json`).
pub const STATUS_LIST_MEDIA_TYPE: &str = CREDENTIAL_MEDIA_TYPE;
/// Media type of the issuer profile (JSON-LD).
pub const PROFILE_MEDIA_TYPE: &str = "application/ld+json";
/// Longest path segment echoed back on a page (a hostile code may be megabytes long).
const ECHO_LIMIT: usize = 40;
/// Characters escaped when a typed code is put back into a path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-');

/// Settings of the HTTP surface.
#[derive(Clone)]
pub struct VerifierLayer {
    shared: Arc<Shared>,
}

struct Shared {
    api: CertificationApi,
    rate_limit: PublicRateLimitLayer,
    /// The path of `--public-url` (`""` or `/prefix`): requests may come with it (a proxy that
    /// keeps the prefix) or without (one that strips it).
    base_path: String,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl VerifierLayer {
    /// Serves the surface from `api`, rate-limited by `rate_limit` (shared with the public gRPC
    /// methods), at most `concurrency` requests at once, each within `timeout`.
    pub fn new(
        api: CertificationApi,
        rate_limit: PublicRateLimitLayer,
        concurrency: usize,
        timeout: Duration,
    ) -> Self {
        let base_path = base_path(api.public_url());
        Self {
            shared: Arc::new(Shared {
                api,
                rate_limit,
                base_path,
                timeout,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
            }),
        }
    }
}

/// Returns the path of a base URL without its trailing slash (`https://x/lms/` -> `/lms`).
fn base_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |index| &after_scheme[index..]);
    path.trim_end_matches('/').to_owned()
}

impl<S> Layer<S> for VerifierLayer {
    type Service = Verifier<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verifier {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Service made by [`VerifierLayer`].
#[derive(Clone)]
pub struct Verifier<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, ResBody> Service<http::Request<B>> for Verifier<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(route) = Route::parse(request.uri().path(), &self.shared.base_path) else {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(tonic::body::Body::new))
            });
        };
        let shared = self.shared.clone();
        let (parts, _body) = request.into_parts();
        let request = http::Request::from_parts(parts, ());
        Box::pin(async move { Ok(shared.answer(route, request).await) })
    }
}

/// A path of the surface.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    StatusList {
        organization_id: String,
        purpose: String,
    },
    Issuer {
        organization_id: String,
    },
    Track {
        track_id: String,
    },
    Landing,
    Page {
        code: String,
    },
    Pdf {
        code: String,
    },
    /// Under one of our prefixes, but nothing is there.
    Nothing,
}

impl Route {
    /// Returns the route of `path`, or `None` when the path is not ours (gRPC and the rest).
    fn parse(path: &str, base_path: &str) -> Option<Self> {
        let path = if base_path.is_empty() {
            path
        } else {
            path.strip_prefix(base_path)
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(path)
        };
        let segments: Vec<Cow<'_, str>> = path
            .trim_start_matches('/')
            .split('/')
            .map(|segment| percent_decode_str(segment).decode_utf8_lossy())
            .collect();
        let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
        let route = match segments.as_slice() {
            ["verify"] | ["verify", ""] => Self::Landing,
            ["verify", code] => Self::Page {
                code: (*code).to_owned(),
            },
            ["verify", code, "certificate.pdf"] => Self::Pdf {
                code: (*code).to_owned(),
            },
            ["status-lists", organization_id, purpose] => Self::StatusList {
                organization_id: (*organization_id).to_owned(),
                purpose: (*purpose).to_owned(),
            },
            ["issuers", organization_id] => Self::Issuer {
                organization_id: (*organization_id).to_owned(),
            },
            ["tracks", track_id] => Self::Track {
                track_id: (*track_id).to_owned(),
            },
            ["verify" | "status-lists" | "issuers" | "tracks", ..] => Self::Nothing,
            _ => return None,
        };
        Some(route)
    }

    /// The route's name in logs (never the code or id, which grant access or identify).
    fn name(&self) -> &'static str {
        match self {
            Self::StatusList { .. } => "status_list",
            Self::Issuer { .. } => "issuer_profile",
            Self::Track { .. } => "track_achievement",
            Self::Landing => "verify_form",
            Self::Page { .. } => "verify_page",
            Self::Pdf { .. } => "certificate_pdf",
            Self::Nothing => "not_found",
        }
    }
}

/// What a request asks of a page: its language and whether it wants JSON.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    language: Language,
    json: bool,
}

impl Negotiated {
    fn of(request: &http::Request<()>) -> Self {
        let query = request.uri().query().unwrap_or_default();
        let asked = form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "lang")
            .and_then(|(_, value)| Language::from_tag(&value));
        let header_text = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let language = asked
            .or_else(|| {
                header_text(header::ACCEPT_LANGUAGE).and_then(|accept| {
                    ranked(&accept)
                        .into_iter()
                        .find_map(|range| Language::from_tag(&range))
                })
            })
            .unwrap_or(Language::English);
        let json = header_text(header::ACCEPT).is_some_and(|accept| {
            preferred_media_type(&accept, &["text/html", "application/json"])
                == Some("application/json")
        });
        Self { language, json }
    }
}

/// Returns the values of a header like `Accept` or `Accept-Language` by quality, best first
/// (ties keep their order); values with `q=0` are left out.
fn ranked(header: &str) -> Vec<String> {
    let mut values: Vec<(f32, usize, String)> = header
        .split(',')
        .enumerate()
        .filter_map(|(position, item)| {
            let mut parts = item.split(';');
            let value = parts.next()?.trim().to_ascii_lowercase();
            if value.is_empty() {
                return None;
            }
            let quality = parts
                .filter_map(|parameter| {
                    let (name, number) = parameter.split_once('=')?;
                    (name.trim() == "q").then(|| number.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0);
            (quality > 0.0).then_some((quality, position, value))
        })
        .collect();
    values.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    values.into_iter().map(|(_, _, value)| value).collect()
}

/// Returns the first of `offers` that the best-ranked media range of `accept` matches.
fn preferred_media_type<'a>(accept: &str, offers: &[&'a str]) -> Option<&'a str> {
    ranked(accept).iter().find_map(|range| {
        offers.iter().copied().find(|offer| {
            let (kind, _) = offer.split_once('/').unwrap_or((offer, ""));
            range == offer || range == "*/*" || range == &format!("{kind}/*")
        })
    })
}

/// A finished answer, before HEAD drops its body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Verification codes travel in these URLs: never leak them to another site.
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        // Status can change at any moment (rule 7): caches must ask again every time.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Self {
            status,
            headers,
            body: body.into(),
        }
    }

    fn html(status: StatusCode, language: Language, body: String) -> Self {
        let mut answer = Self::new(status, "text/html; charset=utf-8", body);
        answer.headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&page::content_security_policy())
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
        );
        answer.headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(language.tag()),
        );
        // A holder's name is no search result.
        answer.headers.insert(
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex, nofollow"),
        );
        answer
    }

    fn json(status: StatusCode, content_type: &str, value: &serde_json::Value) -> Self {
        let mut answer = Self::new(status, content_type, value.to_string());
        // Public, read-only documents: any web verifier may fetch them.
        answer.headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        answer
    }

    fn vary(mut self, on: &'static str) -> Self {
        self.headers
            .insert(header::VARY, HeaderValue::from_static(on));
        self
    }

    fn retry_after(mut self, wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        self
    }

    fn into_response(self, head: bool) -> http::Response<tonic::body::Body> {
        let mut response = http::Response::new(tonic::body::Body::empty());
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        if !head {
            *response.body_mut() = tonic::body::Body::new(Full::new(Bytes::from(self.body)));
        }
        response
    }
}

/// Returns `text` without control characters, cut to [`ECHO_LIMIT`] characters, for showing a
/// typed code back (the page escapes it too).
fn echo(text: &str) -> String {
    let visible = text.chars().filter(|character| !character.is_control());
    let mut shown: String = visible.clone().take(ECHO_LIMIT).collect();
    if visible.count() > ECHO_LIMIT {
        shown.push('…');
    }
    shown
}

impl Shared {
    async fn answer(
        &self,
        route: Route,
        request: http::Request<()>,
    ) -> http::Response<tonic::body::Body> {
        let started = Instant::now();
        let head = request.method() == Method::HEAD;
        let negotiated = Negotiated::of(&request);
        let answer = if request.method() != Method::GET && !head {
            let mut answer = Answer::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "only GET and HEAD are served here\n",
            );
            answer
                .headers
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            answer
        } else if let Err(wait) = self.rate_limit.check(&request) {
            self.refusal(StatusCode::TOO_MANY_REQUESTS, negotiated)
                .retry_after(wait)
        } else if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            let answer =
                tokio::time::timeout(self.timeout, self.route(&route, &request, negotiated)).await;
            drop(permit);
            answer.unwrap_or_else(|_| {
                tracing::warn!(route = route.name(), "verification request timed out");
                self.refusal(StatusCode::SERVICE_UNAVAILABLE, negotiated)
                    .retry_after(Duration::from_secs(1))
            })
        } else {
            self.refusal(StatusCode::SERVICE_UNAVAILABLE, negotiated)
                .retry_after(Duration::from_secs(1))
        };
        tracing::info!(
            route = route.name(),
            status = answer.status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "http request"
        );
        answer.into_response(head)
    }

    /// Returns a refusal (429, 503) as the request wants it: a page or JSON.
    fn refusal(&self, status: StatusCode, negotiated: Negotiated) -> Answer {
        if negotiated.json {
            let message = if status == StatusCode::TOO_MANY_REQUESTS {
                "too many requests from this address; retry later"
            } else {
                "the service is busy or unavailable; retry later"
            };
            Answer::json(status, "application/json", &error_json(status, message))
        } else {
            Answer::html(
                status,
                negotiated.language,
                page::refusal_page(status, negotiated.language, &self.base_path),
            )
        }
        .vary("Accept, Accept-Language")
    }

    fn not_found(&self, negotiated: Negotiated, typed: Option<&str>) -> Answer {
        if negotiated.json {
            Answer::json(
                StatusCode::NOT_FOUND,
                "application/json",
                &error_json(StatusCode::NOT_FOUND, "no certificate has this code"),
            )
        } else {
            Answer::html(
                StatusCode::NOT_FOUND,
                negotiated.language,
                page::not_found_page(
                    negotiated.language,
                    typed.map(echo).as_deref(),
                    &self.base_path,
                ),
            )
        }
        .vary("Accept, Accept-Language")
    }

    /// Maps a failure of the API to an answer: a bad or unknown id is 404 (whatever the reason,
    /// nothing is there), anything else is the server's fault.
    fn failure(
        &self,
        error: crate::error::Error,
        negotiated: Negotiated,
        typed: Option<&str>,
    ) -> Answer {
        let status = tonic::Status::from(error);
        match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                self.not_found(negotiated, typed)
            }
            tonic::Code::ResourceExhausted | tonic::Code::Unavailable => self
                .refusal(StatusCode::SERVICE_UNAVAILABLE, negotiated)
                .retry_after(Duration::from_secs(1)),
            _ => {
                tracing::warn!(code = ?status.code(), "verification request failed");
                self.refusal(StatusCode::INTERNAL_SERVER_ERROR, negotiated)
            }
        }
    }

    async fn route(
        &self,
        route: &Route,
        request: &http::Request<()>,
        negotiated: Negotiated,
    ) -> Answer {
        match route {
            Route::StatusList {
                organization_id,
                purpose,
            } => match self.api.status_list(organization_id, purpose).await {
                Ok(credential) => {
                    let mut answer =
                        Answer::new(StatusCode::OK, STATUS_LIST_MEDIA_TYPE, credential);
                    answer.headers.insert(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    );
                    answer
                }
                Err(error) => self.failure(
                    error,
                    Negotiated {
                        json: true,
                        ..negotiated
                    },
                    None,
                ),
            },
            Route::Issuer { organization_id } => {
                match self.api.issuer_profile(organization_id).await {
                    Ok(profile) => {
                        let mut answer = Answer::json(StatusCode::OK, PROFILE_MEDIA_TYPE, &profile);
                        // The key follows from the server's seed and does not change.
                        answer.headers.insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        );
                        answer
                    }
                    Err(error) => self.failure(
                        error,
                        Negotiated {
                            json: true,
                            ..negotiated
                        },
                        None,
                    ),
                }
            }
            Route::Track { track_id } => match self.api.track_achievement(track_id).await {
                Ok(achievement) => {
                    let mut answer = Answer::json(StatusCode::OK, PROFILE_MEDIA_TYPE, &achievement);
                    answer.headers.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    );
                    answer.headers.insert(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    );
                    answer
                }
                Err(error) => self.failure(
                    error,
                    Negotiated {
                        json: true,
                        ..negotiated
                    },
                    None,
                ),
            },
            Route::Landing => self.landing(request, negotiated),
            Route::Page { code } => match self.api.public_certificate(code).await {
                Ok(public) => self.certificate_page(&public, negotiated),
                Err(error) => self.failure(error, negotiated, Some(code)),
            },
            Route::Pdf { code } => match self.api.public_certificate(code).await {
                Ok(public) => match self.api.certificate_document(&public) {
                    Ok(pdf) => {
                        let mut answer = Answer::new(StatusCode::OK, PDF_MEDIA_TYPE, pdf);
                        let disposition = format!(
                            "inline; filename=\"certificate-{}.pdf\"",
                            public.verification.certificate.verification_code
                        );
                        if let Ok(value) = HeaderValue::from_str(&disposition) {
                            answer.headers.insert(header::CONTENT_DISPOSITION, value);
                        }
                        answer
                    }
                    Err(error) => self.failure(error, negotiated, Some(code)),
                },
                Err(error) => self.failure(error, negotiated, Some(code)),
            },
            Route::Nothing => self.not_found(negotiated, None),
        }
    }

    /// `/verify`: the form, or (with `?code=`) a redirect to the code's page.
    fn landing(&self, request: &http::Request<()>, negotiated: Negotiated) -> Answer {
        let query = request.uri().query().unwrap_or_default();
        let typed = form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "code")
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        let Some(typed) = typed else {
            return Answer::html(
                StatusCode::OK,
                negotiated.language,
                page::landing_page(negotiated.language, &self.base_path),
            )
            .vary("Accept-Language");
        };
        let segment = normalize_verification_code(&typed)
            .unwrap_or_else(|| utf8_percent_encode(&typed, PATH_SEGMENT).to_string());
        let location = format!(
            "{}/verify/{segment}?lang={}",
            self.base_path,
            negotiated.language.tag()
        );
        let mut answer = Answer::new(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
        if let Ok(value) = HeaderValue::from_str(&location) {
            answer.headers.insert(header::LOCATION, value);
        }
        answer
    }

    fn certificate_page(&self, public: &PublicCertificate, negotiated: Negotiated) -> Answer {
        let links = self.links(public);
        if negotiated.json {
            Answer::json(
                StatusCode::OK,
                "application/json",
                &verification_json(public, &links),
            )
        } else {
            Answer::html(
                StatusCode::OK,
                negotiated.language,
                page::certificate_page(public, &links, negotiated.language),
            )
        }
        .vary("Accept, Accept-Language")
    }

    fn links(&self, public: &PublicCertificate) -> page::Links {
        let certificate = &public.verification.certificate;
        let code = &certificate.verification_code;
        let page = format!("{}/verify/{code}", self.base_path);
        let status_lists = public.credential["credentialStatus"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| entry["statusListCredential"].as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        page::Links {
            pdf: format!("{page}/certificate.pdf"),
            english: format!("{page}?lang=en"),
            malay: format!("{page}?lang=ms"),
            page,
            absolute: self.api.verify_url(code),
            issuer_profile: self
                .api
                .issuer_profile_url(&certificate.issuer_organization_id),
            status_lists,
        }
    }
}

/// Returns the word a status goes by on this surface: `valid`, `suspended`, `revoked`,
/// `expired` or `superseded`.
pub fn status_word(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Active => "valid",
        CertificateStatus::Suspended => "suspended",
        CertificateStatus::Revoked => "revoked",
        CertificateStatus::Expired => "expired",
        CertificateStatus::Superseded => "superseded",
    }
}

fn error_json(status: StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": status.as_u16(), "message": message}})
}

/// The JSON variant of the verification page.
fn verification_json(public: &PublicCertificate, links: &page::Links) -> serde_json::Value {
    let verification = &public.verification;
    let certificate = &verification.certificate;
    serde_json::json!({
        "verificationCode": certificate.verification_code,
        "valid": public.valid(),
        "status": status_word(verification.status),
        "holderName": verification.holder_name,
        "track": {
            "code": verification.track.code,
            "title": verification.track.title,
            "level": verification.track.level.as_str(),
        },
        "issuer": {
            "id": public.issuer.did,
            "name": verification.issuer_name,
            "profile": links.issuer_profile,
        },
        "issuedTime": rfc3339(certificate.issued_time),
        "expiresTime": rfc3339(certificate.expires_time),
        "checkedTime": rfc3339(public.checked_time),
        "credential": public.credential,
        "links": {
            "page": links.absolute,
            "pdf": format!("{}/certificate.pdf", links.absolute),
            "statusLists": links.status_lists,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_ours_only_under_our_prefixes() {
        assert_eq!(
            Route::parse("/lms.v1.CertificationService/VerifyCertificate", ""),
            None
        );
        assert_eq!(Route::parse("/", ""), None);
        assert_eq!(
            Route::parse("/verify/ABCD-EFGH-JKMN", ""),
            Some(Route::Page {
                code: "ABCD-EFGH-JKMN".to_owned()
            })
        );
        assert_eq!(
            Route::parse("/lms/verify/ABCD/certificate.pdf", "/lms"),
            Some(Route::Pdf {
                code: "ABCD".to_owned()
            })
        );
        assert_eq!(
            Route::parse("/status-lists/org/revocation", "/lms"),
            Some(Route::StatusList {
                organization_id: "org".to_owned(),
                purpose: "revocation".to_owned()
            })
        );
        assert_eq!(
            Route::parse("/verify/../../etc/passwd", ""),
            Some(Route::Nothing)
        );
        assert_eq!(
            Route::parse("/verify/%3Cscript%3E", ""),
            Some(Route::Page {
                code: "<script>".to_owned()
            })
        );
        assert_eq!(Route::parse("/verify", ""), Some(Route::Landing));
        assert_eq!(base_path("https://lms.example.gov.my/lms/"), "/lms");
        assert_eq!(base_path("http://127.0.0.1:50051"), "");
    }

    #[test]
    fn negotiation_follows_quality_then_order() {
        let offers = ["text/html", "application/json"];
        assert_eq!(
            preferred_media_type("application/json", &offers),
            Some("application/json")
        );
        assert_eq!(
            preferred_media_type(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                &offers
            ),
            Some("text/html")
        );
        assert_eq!(preferred_media_type("*/*", &offers), Some("text/html"));
        assert_eq!(
            preferred_media_type("text/html;q=0.5, application/json", &offers),
            Some("application/json")
        );
        assert_eq!(preferred_media_type("image/png", &offers), None);
        assert_eq!(
            ranked("en-GB;q=0.4, ms-MY, fr;q=0"),
            vec!["ms-my".to_owned(), "en-gb".to_owned()]
        );
    }
}
