//! The tower layer that authenticates every call and applies the per-method policy before any handler runs.
//!
//! A caller is authenticated by a bearer token, or by a client certificate verified in the TLS
//! handshake and mapped to a principal (`--tls-client-principal`, [`ClientPrincipals`]). When a
//! call carries both, the token wins: a gateway holding a certificate may call on behalf of the
//! user whose token it forwards. A verified certificate that no rule maps gets PERMISSION_DENIED
//! (`CLIENT_CERTIFICATE_NOT_MAPPED`): the caller is known, but granted nothing.
//!
//! On HTTP/1.1 (gRPC-Web without HTTP/2), a refusal is answered before the request body is
//! read. Were the body then dropped, hyper would close the connection with the body still
//! arriving, the kernel would reset it, and a client still writing (a Node backend sending a
//! large batch with an expired token) would see "write EPIPE" instead of UNAUTHENTICATED. So the
//! layer hands every HTTP/1.x call on with a `DrainOnDrop` body: dropped before its end (by
//! this layer's refusal, the gate's, a handler's or tonic's), it is read to its end in the
//! background, and the connection stays open for the client to read its answer. The drain is
//! bounded by the largest message the server accepts and by a short time, so a hostile client
//! cannot hold it open; past either bound the connection is closed as before.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use prost::bytes::Bytes;
use tower::{Layer, Service};

use super::{
    CallContext, Principal,
    policy::{self, Access},
    token::TokenVerifier,
};
use crate::error::{Error, Reason};
use crate::server::tls::{self, ClientPrincipals};

/// Longest time an HTTP/1.x request body dropped before its end is read in the background,
/// unless [`AuthLayer::with_body_drain`] says otherwise.
pub const DEFAULT_DRAIN_TIME: Duration = crate::config::DEFAULT_BODY_IDLE_TIMEOUT;

/// Authenticates bearer tokens and checks [`policy::METHOD_POLICY`]; fails closed.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
    principals: Option<Arc<ClientPrincipals>>,
    drain: DrainLimits,
}

/// How much of an HTTP/1.x request body dropped before its end is read in the background.
#[derive(Debug, Clone, Copy)]
struct DrainLimits {
    bytes: usize,
    time: Duration,
}

impl AuthLayer {
    /// Returns a layer verifying tokens with `verifier`.
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self {
            verifier,
            principals: None,
            drain: DrainLimits {
                bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
                time: DEFAULT_DRAIN_TIME,
            },
        }
    }

    /// Reads an HTTP/1.x request body dropped before its end (a refused call's) in the
    /// background, up to `max_message_bytes` (and its framing) and for at most `time`, so the
    /// client gets its answer instead of a reset connection (see the module docs).
    pub fn with_body_drain(mut self, max_message_bytes: usize, time: Duration) -> Self {
        self.drain = DrainLimits {
            // gRPC frames one message with 5 bytes; gRPC-Web trailers and chunking add a little.
            bytes: max_message_bytes.saturating_add(64 * 1024),
            time,
        };
        self
    }

    /// Also authenticates calls without a token by their verified client certificate, mapped
    /// with `principals`.
    pub fn with_client_principals(mut self, principals: Arc<ClientPrincipals>) -> Self {
        self.principals = Some(principals);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            principals: self.principals.clone(),
            drain: self.drain,
        }
    }
}

/// Service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
    principals: Option<Arc<ClientPrincipals>>,
    drain: DrainLimits,
}

/// How a call presents itself: its `authorization` header value and its connection's verified
/// client certificate mapped to a principal (`Some(None)`: verified, but mapped by no rule).
struct Credentials {
    authorization: Option<String>,
    certificate: Option<Option<Principal>>,
}

/// Authenticates a call to `path` with its credentials, and checks the policy.
async fn authorize(
    verifier: &TokenVerifier,
    path: &str,
    credentials: Credentials,
) -> Result<Option<CallContext>, Error> {
    let Some(access) = policy::method_access(path) else {
        return Err(Error::permission_denied(
            Reason::MethodNotAllowed,
            format!("no caller may call {path}"),
        ));
    };
    if access == Access::Public {
        return Ok(None);
    }
    let token = credentials.authorization.as_deref().and_then(bearer_token);
    let principal = match (token, credentials.certificate) {
        // The token wins over a certificate (see the module docs).
        (Some(token), _) => verifier.verify(token.trim()).await?,
        (None, Some(Some(principal))) => principal,
        (None, Some(None)) => {
            return Err(Error::permission_denied(
                Reason::ClientCertificateNotMapped,
                "your client certificate is verified but maps to no principal (see --tls-client-principal)",
            ));
        }
        (None, None) => {
            return Err(Error::Unauthenticated(
                "missing bearer token (authorization: Bearer <jwt>) or client certificate".into(),
            ));
        }
    };
    if !policy::allows(access, &principal.roles) {
        return Err(Error::permission_denied(
            Reason::RoleNotAllowed,
            format!("your roles may not call {path}"),
        ));
    }
    Ok(Some(CallContext {
        principal,
        method: path.trim_start_matches('/').to_owned(),
    }))
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Only HTTP/1.x closes the connection over a body left unread; HTTP/2 resets the stream.
        let drain = self.drain;
        let mut request = if request.version() <= http::Version::HTTP_11 {
            request.map(|body| tonic::body::Body::new(DrainOnDrop::new(body, drain)))
        } else {
            request.map(tonic::body::Body::new)
        };
        let verifier = self.verifier.clone();
        let path = request.uri().path().to_owned();
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // A certificate is only there when the handshake verified it against the client CA.
        let certificate = tls::client_certificate(&request).map(|certificate| {
            self.principals
                .as_ref()
                .and_then(|principals| principals.principal_for(&certificate))
        });
        let credentials = Credentials {
            authorization,
            certificate,
        };
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Verification may wait for the token key set or a person lookup, so it runs in the future.
        Box::pin(async move {
            match authorize(&verifier, &path, credentials).await {
                Ok(context) => {
                    if let Some(context) = context {
                        request.extensions_mut().insert(context);
                    }
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

/// A request body that, dropped before its end, is read to its end in a background task (at most
/// `limits.bytes` more bytes, for at most `limits.time`), so that an HTTP/1.1 connection is not
/// closed while the client is still sending (see the module docs).
struct DrainOnDrop<B: http_body::Body<Data = Bytes> + Send + 'static> {
    /// `None` once handed to the drain task.
    body: Option<Pin<Box<B>>>,
    ended: bool,
    limits: DrainLimits,
}

impl<B: http_body::Body<Data = Bytes> + Send + 'static> DrainOnDrop<B> {
    fn new(body: B, limits: DrainLimits) -> Self {
        Self {
            body: Some(Box::pin(body)),
            ended: false,
            limits,
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Send + 'static> http_body::Body for DrainOnDrop<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = body.as_mut().poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |body| body.size_hint(),
        )
    }
}

impl<B: http_body::Body<Data = Bytes> + Send + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if self.ended || body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limits = self.limits;
        runtime.spawn(drain(body, limits));
    }
}

/// Reads `body` to its end and throws it away, within `limits`; dropping it past them (or on a
/// transport error) lets hyper close the connection.
async fn drain<B>(mut body: Pin<Box<B>>, limits: DrainLimits)
where
    B: http_body::Body<Data = Bytes>,
{
    let mut drained = 0usize;
    let read_to_end = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                drained = drained.saturating_add(data.len());
                if drained > limits.bytes {
                    return false;
                }
            }
        }
        true
    };
    match tokio::time::timeout(limits.time, read_to_end).await {
        Ok(true) => tracing::debug!(drained, "unread request body drained"),
        Ok(false) => tracing::debug!(
            drained,
            "unread request body too large, or the client stopped sending it; closing the connection"
        ),
        Err(_) => tracing::debug!(
            drained,
            seconds = limits.time.as_secs(),
            "unread request body still arriving after the drain time; closing the connection"
        ),
    }
}

/// Returns the token of an `authorization` value in the `Bearer` scheme, whose name is
/// case-insensitive (RFC 7235 section 2.1), separated from the token by spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
