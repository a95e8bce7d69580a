//! `lms health`: asks a running server's `grpc.health.v1.Health/Check` whether it is serving, for
//! container health checks and orchestrator exec probes that have no grpcurl.
//!
//! The exit status is the answer: 0 when the server (or the named service) is `SERVING`, 1 for
//! anything else (not serving, an unknown service, no answer within the timeout, a refused
//! connection, a TLS failure). Docker reserves 2, so it is never used for a probe result. One line
//! says why: on stdout when serving, on stderr otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::config::Config;

/// Exit status of a probe that found the server serving.
pub const EXIT_SERVING: i32 = 0;
/// Exit status of every other outcome.
pub const EXIT_NOT_SERVING: i32 = 1;

/// Options of `lms health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Server to probe, `http://host:port` or `https://host:port` (default: `http://` and the
    /// `--listen` address, with an unspecified address such as `0.0.0.0` probed on loopback).
    #[arg(long)]
    pub address: Option<String>,

    /// Service to ask about, e.g. `lms.v1.PersonService`; empty asks about the whole server.
    #[arg(long, default_value = "")]
    pub service: String,

    /// Longest the probe may take, connecting included.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// PEM file of the CA certificate(s) an `https://` server's certificate is checked against.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,

    /// Name the server's certificate must carry (default: the host of `--address`).
    #[arg(long)]
    pub server_name: Option<String>,

    /// PEM client certificate, for a listener that asks for one (mTLS).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of `--client-cert`.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// Probes the server and prints one line; returns the process exit status.
pub async fn run(config: &Config, args: HealthArgs) -> i32 {
    let address = args
        .address
        .clone()
        .unwrap_or_else(|| default_address(config.server.listen));
    let subject = if args.service.is_empty() {
        "server".to_owned()
    } else {
        format!("service {}", args.service)
    };
    match tokio::time::timeout(args.timeout, check(&address, &args)).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("SERVING: {subject} at {address}");
            EXIT_SERVING
        }
        Ok(Ok(status)) => {
            eprintln!("{}: {subject} at {address}", status.as_str_name());
            EXIT_NOT_SERVING
        }
        Ok(Err(error)) => {
            eprintln!("NOT SERVING: {subject} at {address}: {error:#}");
            EXIT_NOT_SERVING
        }
        Err(_) => {
            eprintln!(
                "NOT SERVING: {subject} at {address}: no answer within {}",
                humantime::format_duration(args.timeout)
            );
            EXIT_NOT_SERVING
        }
    }
}

/// Returns `http://` and the address a client reaches the listener at: an unspecified listen
/// address (`0.0.0.0`, `[::]`) is probed on the loopback address of its family.
pub fn default_address(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Connects to `address` and returns the status the server reports for `args.service`.
async fn check(address: &str, args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let endpoint = endpoint(address, args)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| anyhow::anyhow!("cannot connect: {}", error_chain(&error)))?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: args.service.clone(),
    });
    request.set_timeout(args.timeout);
    match HealthClient::new(channel).check(request).await {
        Ok(response) => Ok(response.into_inner().status()),
        Err(status) if status.code() == Code::NotFound => {
            anyhow::bail!("the server does not know this service")
        }
        Err(status) => {
            // A transport failure after the handshake (a client certificate refused under TLS
            // 1.3, a reset) arrives as a status whose source says what happened.
            let detail = match std::error::Error::source(&status).map(error_chain) {
                Some(chain) if chain.starts_with(status.message()) => chain,
                Some(chain) => format!("{}: {chain}", status.message()),
                None => status.message().to_owned(),
            };
            anyhow::bail!("Check answered {:?}: {detail}", status.code())
        }
    }
}

/// Builds the endpoint, with TLS for `https://` addresses.
fn endpoint(address: &str, args: &HealthArgs) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(address.to_owned())
        .with_context(|| format!("--address {address} is not a URL"))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    let https = address.starts_with("https://");
    if !https {
        if args.ca_cert.is_some() || args.client_cert.is_some() {
            anyhow::bail!("--ca-cert and --client-cert need an https:// address");
        }
        return Ok(endpoint);
    }
    let ca_path = args
        .ca_cert
        .as_ref()
        .context("an https:// address needs --ca-cert (the CA of the server's certificate)")?;
    let ca = std::fs::read(ca_path)
        .with_context(|| format!("reading --ca-cert {}", ca_path.display()))?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(name) = &args.server_name {
        tls = tls.domain_name(name.clone());
    }
    if let (Some(cert_path), Some(key_path)) = (&args.client_cert, &args.client_key) {
        let cert = std::fs::read(cert_path)
            .with_context(|| format!("reading --client-cert {}", cert_path.display()))?;
        let key = std::fs::read(key_path)
            .with_context(|| format!("reading --client-key {}", key_path.display()))?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    endpoint
        .tls_config(tls)
        .context("setting up TLS for the probe")
}

/// Returns an error and its sources on one line (`transport error: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let probe = |listen: &str| default_address(listen.parse().expect("socket address"));
        assert_eq!(probe("0.0.0.0:50051"), "http://127.0.0.1:50051");
        assert_eq!(probe("[::]:8443"), "http://[::1]:8443");
        assert_eq!(probe("10.1.2.3:50051"), "http://10.1.2.3:50051");
    }
}
