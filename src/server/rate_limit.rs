//! Rate limits on the public methods (those that need no token: certificate verification, the
//! issuer keys, the status lists), per client address.
//!
//! The client is the peer of the TCP connection, unless that peer is a trusted proxy
//! (`--trusted-proxies`): then it is the right-most address of `X-Forwarded-For` that is not
//! itself a trusted proxy. A client cannot reset its bucket by sending its own
//! `X-Forwarded-For`: only the hops that trusted proxies appended are believed. Over the limit,
//! a call gets RESOURCE_EXHAUSTED (reason `RATE_LIMITED`) with a `RetryInfo` saying when to retry.

use std::{
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use ipnet::IpNet;
use tonic::transport::server::TcpConnectInfo;
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};

use crate::auth::policy::{Access, METHOD_POLICY};

/// The `lms.v1` methods callable without a token, taken once from the policy: a handful of
/// paths to compare per call instead of a scan of the whole policy.
static PUBLIC_METHODS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    METHOD_POLICY
        .iter()
        .filter(|(_, access)| *access == Access::Public)
        .map(|(method, _)| *method)
        .collect()
});

/// Limits public calls per client address.
#[derive(Clone)]
pub struct PublicRateLimitLayer {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: Arc<[IpNet]>,
    /// Where refusals are counted (`lms_rpc_shed_total{reason="public_rate"}`).
    metrics: Option<super::metrics::Metrics>,
}

impl PublicRateLimitLayer {
    /// Allows each client `per_second` public calls a second on average, `burst` at once, and
    /// believes `X-Forwarded-For` from the `trusted` proxies only.
    pub fn new(per_second: u32, burst: u32, trusted: Vec<IpNet>) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            trusted: trusted.into(),
            metrics: None,
        }
    }

    /// Counts every refusal in `metrics`.
    pub fn with_metrics(mut self, metrics: super::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Takes one public call from the bucket of `request`'s client; `Err` says how long the client
    /// must wait. The plain HTTP verification surface (src/server/verifier.rs) shares the buckets.
    pub fn check<B>(&self, request: &http::Request<B>) -> Result<(), Duration> {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|address| address.ip());
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        let client = client_address(peer, &forwarded, &self.trusted);
        self.limiter.check_key(&client).map_err(|not_until| {
            if let Some(metrics) = &self.metrics {
                metrics.count_shed(super::metrics::ShedReason::PublicRate);
            }
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// Forgets clients whose buckets are full again, so the table stays as small as the set of
    /// recent clients; call it now and then.
    pub fn forget_idle_clients(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl<S> Layer<S> for PublicRateLimitLayer {
    type Service = PublicRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PublicRateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service made by [`PublicRateLimitLayer`].
#[derive(Clone)]
pub struct PublicRateLimit<S> {
    inner: S,
    layer: PublicRateLimitLayer,
}

impl<S, B> Service<http::Request<B>> for PublicRateLimit<S>
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if PUBLIC_METHODS.contains(&path)
            && let Err(wait) = self.layer.check(&request)
        {
            let response = rate_limited(wait).into_http();
            return Box::pin(async move { Ok(response) });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

/// Returns the client's address: the peer, or (when the peer is a trusted proxy) the right-most
/// address of `forwarded` that is not a trusted proxy.
fn client_address(peer: Option<IpAddr>, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    let Some(mut client) = peer else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    for hop in forwarded.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.trim().parse::<IpAddr>() {
            Ok(address) => client = address,
            // A hop a trusted proxy would not write: believe nothing further left.
            Err(_) => break,
        }
    }
    client
}

fn rate_limited(wait: Duration) -> tonic::Status {
    let mut details = ErrorDetails::with_retry_info(Some(wait));
    details.set_error_info(
        crate::error::Reason::RateLimited.as_str(),
        crate::error::ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!(
            "too many public calls from this address; retry in {} ms",
            wait.as_millis().max(1)
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // A direct client: its own X-Forwarded-For is ignored.
        assert_eq!(
            client_address(Some(ip("203.0.113.9")), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        // Behind the proxy: the hop the proxy appended.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // A spoofed left part is not believed: the right-most untrusted hop counts.
        assert_eq!(
            client_address(
                Some(ip("10.0.0.2")),
                &["6.6.6.6", " 203.0.113.9", "10.0.0.7"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["not-an-ip"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(None, &[], &trusted),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn the_bucket_refuses_past_the_burst_and_names_the_wait() {
        let layer = PublicRateLimitLayer::new(1, 3, Vec::new());
        let client = ip("198.51.100.1");
        for _ in 0..3 {
            assert!(layer.limiter.check_key(&client).is_ok());
        }
        assert!(layer.limiter.check_key(&client).is_err());
        assert!(
            layer.limiter.check_key(&ip("198.51.100.2")).is_ok(),
            "others keep their own bucket"
        );
        let status = rate_limited(Duration::from_millis(900));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.get_error_details().retry_info().unwrap().retry_delay,
            Some(Duration::from_millis(900))
        );
    }
}
