//! The tower layer that authenticates every call and applies the per-method policy before any handler runs.
//!
//! A caller is authenticated by a bearer token, or by a client certificate verified in the TLS
//! handshake and mapped to a principal (`--tls-client-principal`, [`ClientPrincipals`]). When a
//! call carries both, the token wins: a gateway holding a certificate may call on behalf of the
//! user whose token it forwards. A verified certificate that no rule maps gets PERMISSION_DENIED
//! (`CLIENT_CERTIFICATE_NOT_MAPPED`): the caller is known, but granted nothing.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::{
    CallContext, Principal,
    policy::{self, Access},
    token::TokenVerifier,
};
use crate::error::Error;
use crate::server::tls::{self, ClientPrincipals};

/// Authenticates bearer tokens and checks [`policy::METHOD_POLICY`]; fails closed.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
    principals: Option<Arc<ClientPrincipals>>,
}

impl AuthLayer {
    /// Returns a layer verifying tokens with `verifier`.
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self {
            verifier,
            principals: None,
        }
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
        }
    }
}

/// Service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
    principals: Option<Arc<ClientPrincipals>>,
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
            "METHOD_NOT_ALLOWED",
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
                "CLIENT_CERTIFICATE_NOT_MAPPED",
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
            "ROLE_NOT_ALLOWED",
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
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
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
