//! The tower layer that authenticates every call and applies the per-method policy before any handler runs.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::{
    CallContext,
    policy::{self, Access},
    token::TokenVerifier,
};
use crate::error::Error;

/// Authenticates bearer tokens and checks [`policy::METHOD_POLICY`]; fails closed.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
}

impl AuthLayer {
    /// Returns a layer verifying tokens with `verifier`.
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// Service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
}

/// Authenticates a call to `path` with the `authorization` header value, and checks the policy.
async fn authorize(
    verifier: &TokenVerifier,
    path: &str,
    authorization: Option<&str>,
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
    let token = authorization.and_then(bearer_token).ok_or_else(|| {
        Error::Unauthenticated("missing bearer token (authorization: Bearer <jwt>)".into())
    })?;
    let principal = verifier.verify(token.trim()).await?;
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
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Verification may wait for the token key set or a person lookup, so it runs in the future.
        Box::pin(async move {
            match authorize(&verifier, &path, authorization.as_deref()).await {
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
