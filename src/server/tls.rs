//! TLS on the listener, client certificates and the principals they map to (docs/tls.md).
//!
//! With `--tls-cert` and `--tls-key` the listener speaks TLS only, offering `h2` (gRPC) and
//! `http/1.1` (gRPC-Web) by ALPN. [`Tls`] holds the current rustls configuration: every new
//! connection takes the configuration current at its accept, so a reload (the files changed, or
//! SIGHUP) reaches new connections while open ones keep the certificate they were served with.
//! A reload that fails (a half-written file, a key that does not match the certificate) keeps the
//! previous pair and logs an error.
//!
//! Handshakes run in tasks of their own, at most [`MAX_HANDSHAKES`] at once, each for at most the
//! handshake timeout, so a slow or silent client never holds up the accept loop. The accepted
//! stream is wrapped in [`Watched`] *inside* TLS: GOAWAY logging reads the plaintext frames.
//!
//! With `--tls-client-ca` the server asks for a client certificate and verifies it against that
//! CA; a certificate that does not verify fails the handshake. A verified certificate is mapped
//! to a [`Principal`] by [`ClientPrincipals`], matched on its subject CN and its SANs (DNS, URI,
//! email); the auth layer ([`crate::auth::layer`]) applies it like a token's principal.

use std::{
    fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::goaway::Watched;
use crate::auth::{Principal, Role};
use crate::config::{ClientAuth, TlsConfig};

/// Largest number of TLS handshakes in progress at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 1024;
/// TCP keepalive of accepted connections, as on the plain-text listener.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A connection accepted and handshaken by the TLS listener.
pub type TlsConnection = Watched<TlsStream<TcpStream>>;

/// The files a TLS configuration is read from.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    client_auth: ClientAuth,
}

impl Files {
    /// Returns the contents of every file, in one buffer, to tell whether any changed.
    fn read_all(&self) -> anyhow::Result<Vec<u8>> {
        let mut contents = Vec::new();
        for path in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            contents.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            contents.extend_from_slice(&bytes);
        }
        Ok(contents)
    }

    /// Reads and checks the files; returns a rustls configuration for new connections.
    fn load(&self) -> anyhow::Result<ServerConfig> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let chain = read_certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("{}: no PEM private key", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(
                path,
                self.client_auth,
                provider.clone(),
            )?),
        };
        let mut config = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "{} and {} are not a certificate and its private key",
                self.cert.display(),
                self.key.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Reads every certificate of a PEM file; fails when there is none.
fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: malformed PEM", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{}: no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certificates)
}

/// Returns the verifier of client certificates signed by the CA(s) in `path`.
fn client_verifier(
    path: &Path,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots
            .add(certificate)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    builder
        .build()
        .with_context(|| format!("{}: client CA", path.display()))
}

/// The configuration new connections are served with, and what it was read from.
struct Current {
    files: Files,
    config: RwLock<Arc<ServerConfig>>,
    /// The file contents last read, loaded or not: a broken file is reported once, not every poll.
    last_seen: Mutex<Vec<u8>>,
}

impl Current {
    /// Reloads the files; when `force` is false, only if they changed since last read.
    ///
    /// Returns whether a new configuration is in use; a failure keeps the previous one.
    fn reload(&self, force: bool) -> anyhow::Result<bool> {
        let contents = self.files.read_all()?;
        {
            let mut last_seen = self.last_seen.lock().expect("tls files lock");
            if !force && *last_seen == contents {
                return Ok(false);
            }
            *last_seen = contents;
        }
        let config = self.files.load()?;
        *self.config.write().expect("tls config lock") = Arc::new(config);
        Ok(true)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().expect("tls config lock").clone())
    }
}

/// TLS on the listener: the current configuration, its reloading and the accept loop.
pub struct Tls {
    current: Arc<Current>,
    reload_interval: Duration,
    handshake_timeout: Duration,
    principals: Arc<ClientPrincipals>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Tls {
    /// Reads and checks the TLS settings and files; `None` when TLS is off (no `--tls-cert`).
    ///
    /// Fails, with a message naming the setting, when the settings do not fit together, a file
    /// cannot be read or parsed, or a client principal mapping is malformed.
    pub fn from_config(config: &TlsConfig) -> anyhow::Result<Option<Self>> {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (None, None) => {
                anyhow::ensure!(
                    config.tls_client_ca.is_none(),
                    "--tls-client-ca needs --tls-cert and --tls-key (client certificates need TLS)"
                );
                anyhow::ensure!(
                    config.tls_client_principal.is_empty(),
                    "--tls-client-principal needs --tls-cert, --tls-key and --tls-client-ca"
                );
                return Ok(None);
            }
            (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
            (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        };
        anyhow::ensure!(
            config.tls_client_ca.is_some() || config.tls_client_principal.is_empty(),
            "--tls-client-principal needs --tls-client-ca: without it no client certificate is verified"
        );
        anyhow::ensure!(
            config.tls_client_ca.is_some() || config.tls_client_auth == ClientAuth::Optional,
            "--tls-client-auth required needs --tls-client-ca"
        );
        anyhow::ensure!(
            !config.tls_handshake_timeout.is_zero(),
            "--tls-handshake-timeout must be more than 0s"
        );
        let principals = ClientPrincipals::parse(&config.tls_client_principal)?;
        let files = Files {
            cert,
            key,
            client_ca: config.tls_client_ca.clone(),
            client_auth: config.tls_client_auth,
        };
        let last_seen = files.read_all()?;
        let loaded = files.load()?;
        Ok(Some(Self {
            current: Arc::new(Current {
                files,
                config: RwLock::new(Arc::new(loaded)),
                last_seen: Mutex::new(last_seen),
            }),
            reload_interval: config.tls_reload_interval,
            handshake_timeout: config.tls_handshake_timeout,
            principals: Arc::new(principals),
            hangup: None,
        }))
    }

    /// Starts listening for SIGHUP, which reloads the files; call it before serving, inside the
    /// runtime, so that a SIGHUP sent once the server is up is never lost.
    pub fn listen_for_hangup(&mut self) -> anyhow::Result<()> {
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        self.hangup = Some(signal);
        Ok(())
    }

    /// Returns the mapping of client certificates to principals.
    pub fn principals(&self) -> Arc<ClientPrincipals> {
        self.principals.clone()
    }

    /// Reloads the files now, whether they changed or not (what SIGHUP does).
    pub fn reload(&self) -> anyhow::Result<()> {
        self.current.reload(true).map(|_| ())
    }

    /// Spawns the task that reloads the files when they change (checked every reload interval;
    /// never when it is zero) and on SIGHUP.
    pub fn spawn_reloader(&mut self) -> tokio::task::JoinHandle<()> {
        let current = self.current.clone();
        let interval = self.reload_interval;
        let mut hangup = self.hangup.take();
        tokio::spawn(async move {
            let mut ticks = (!interval.is_zero()).then(|| {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            loop {
                let force = tokio::select! {
                    _ = async {
                        match &mut ticks {
                            Some(ticks) => { ticks.tick().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => false,
                    received = async {
                        match &mut hangup {
                            Some(hangup) => hangup.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if received.is_none() {
                            hangup = None;
                            continue;
                        }
                        true
                    }
                };
                let files = &current.files;
                match current.reload(force) {
                    Ok(true) => tracing::info!(
                        cert = %files.cert.display(),
                        key = %files.key.display(),
                        sighup = force,
                        "TLS certificate reloaded; new connections use it"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::error!(
                        error = format!("{error:#}"),
                        cert = %files.cert.display(),
                        key = %files.key.display(),
                        "TLS reload failed; new connections keep the previous certificate"
                    ),
                }
            }
        })
    }

    /// Accepts connections on `listener` and completes their TLS handshakes; yields each
    /// connection ready for HTTP/2 or HTTP/1.1. Stops (and closes the listener) once the returned
    /// stream is dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsConnection>> {
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(accept_loop(
            listener,
            self.current.clone(),
            self.handshake_timeout,
            sender,
        ));
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}

/// Accepts TCP connections and hands each to a handshake task, until `sender` is closed.
async fn accept_loop(
    listener: TcpListener,
    current: Arc<Current>,
    handshake_timeout: Duration,
    sender: mpsc::Sender<io::Result<TlsConnection>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = sender.closed() => return,
            permit = handshakes.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let acceptor = current.acceptor();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send(Ok(Watched::new(tls, Some(peer)))).await;
                }
                Ok(Err(error)) => log_handshake_failure(peer, &error),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out; connection closed"),
            }
        });
    }
}

/// Logs a failed handshake: a refused client certificate at info (the operator may want to
/// know), anything else (scanners, plain-text clients) at debug.
fn log_handshake_failure(peer: SocketAddr, error: &io::Error) {
    use tokio_rustls::rustls::Error;
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>());
    match cause {
        Some(Error::InvalidCertificate(_) | Error::NoCertificatesPresented) => {
            tracing::info!(%peer, error = %error, "TLS handshake refused a client certificate");
        }
        _ => tracing::debug!(%peer, error = %error, "TLS handshake failed"),
    }
}

/// Makes the TCP connect info of a TLS connection visible as plain [`TcpConnectInfo`] too, so
/// that layers keyed on the peer address (the public rate limit) work alike with and without TLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExposeTcpConnectInfoLayer;

impl<S> Layer<S> for ExposeTcpConnectInfoLayer {
    type Service = ExposeTcpConnectInfo<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExposeTcpConnectInfo { inner }
    }
}

/// Service made by [`ExposeTcpConnectInfoLayer`].
#[derive(Debug, Clone)]
pub struct ExposeTcpConnectInfo<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ExposeTcpConnectInfo<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let tcp = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|info| info.get_ref().clone());
        if let Some(tcp) = tcp {
            request.extensions_mut().insert(tcp);
        }
        self.inner.call(request)
    }
}

/// Returns the verified client certificate (the leaf) of a request's connection, if any.
pub fn client_certificate<B>(request: &http::Request<B>) -> Option<CertificateDer<'static>> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(|certificates| certificates.first().cloned())
}

/// Which name of a client certificate a mapping matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A common name (CN) of the subject; compared exactly.
    CommonName,
    /// A DNS name in the subject alternative names; compared ignoring ASCII case.
    Dns,
    /// A URI in the subject alternative names (e.g. a SPIFFE id); compared exactly.
    Uri,
    /// An email address (rfc822Name) in the subject alternative names; compared ignoring ASCII case.
    Email,
}

impl NameKind {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "cn" => Some(Self::CommonName),
            "dns" => Some(Self::Dns),
            "uri" => Some(Self::Uri),
            "email" => Some(Self::Email),
            _ => None,
        }
    }

    fn matches(self, expected: &str, actual: &str) -> bool {
        match self {
            Self::CommonName | Self::Uri => expected == actual,
            Self::Dns | Self::Email => expected.eq_ignore_ascii_case(actual),
        }
    }
}

/// One `--tls-client-principal` rule: a certificate name and the principal it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRule {
    /// Which name of the certificate is matched.
    pub kind: NameKind,
    /// The name the certificate must carry.
    pub value: String,
    /// The principal of a matching certificate.
    pub principal: Principal,
}

/// The syntax of a rule, for error messages.
const RULE_SYNTAX: &str = "KIND:VALUE=SUBJECT:ROLE[,ROLE...][@ORGANIZATION_ID] with KIND one of \
     cn, dns, uri, email (e.g. dns:hr.example.gov=hr-system:hr_service)";

impl PrincipalRule {
    /// Parses `KIND:VALUE=SUBJECT:ROLE[,ROLE...][@ORGANIZATION_ID]`.
    ///
    /// The value ends at the last `=`, so a URI value may hold `=`; subject, roles and
    /// organisation may not.
    pub fn parse(rule: &str) -> anyhow::Result<Self> {
        let fail = |why: &str| {
            anyhow::anyhow!("--tls-client-principal {rule:?}: {why}; expected {RULE_SYNTAX}")
        };
        let (name, grant) = rule.trim().rsplit_once('=').ok_or_else(|| fail("no `=`"))?;
        let (kind, value) = name
            .split_once(':')
            .ok_or_else(|| fail("no `:` after the kind"))?;
        let kind = NameKind::parse(kind.trim())
            .ok_or_else(|| fail(&format!("unknown kind {:?}", kind.trim())))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(fail("empty certificate name"));
        }
        let (grant, organization_id) = match grant.split_once('@') {
            Some((grant, organization)) => (grant, Some(organization.trim())),
            None => (grant, None),
        };
        let (subject, roles) = grant
            .split_once(':')
            .ok_or_else(|| fail("no `:` between subject and roles"))?;
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().any(char::is_whitespace) {
            return Err(fail("the subject must be non-empty, without spaces"));
        }
        let mut parsed = Vec::new();
        for role in roles.split(',').map(str::trim) {
            let role = Role::parse(role).ok_or_else(|| {
                let known = Role::ALL.map(Role::as_str).join(", ");
                fail(&format!("unknown role {role:?} (roles: {known})"))
            })?;
            if !parsed.contains(&role) {
                parsed.push(role);
            }
        }
        let organization_id = match organization_id {
            None => None,
            Some(id) if crate::domain::is_uuid(id) => Some(id.to_owned()),
            Some(id) => return Err(fail(&format!("organisation {id:?} is not an id (a UUID)"))),
        };
        if parsed.contains(&Role::OrgAdmin) && organization_id.is_none() {
            return Err(fail("org_admin needs its organisation (@ORGANIZATION_ID)"));
        }
        Ok(Self {
            kind,
            value: value.to_owned(),
            principal: Principal {
                subject: subject.to_owned(),
                roles: parsed,
                organization_id,
            },
        })
    }
}

/// The names of a certificate that rules match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateNames {
    /// Subject common names.
    pub common_names: Vec<String>,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
    /// SAN email addresses.
    pub emails: Vec<String>,
}

impl CertificateNames {
    /// Reads the names of a DER certificate; `None` when it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let mut names = Self {
            common_names: certificate
                .subject()
                .iter_common_name()
                .filter_map(|name| name.as_str().ok())
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        };
        if let Ok(Some(alternative)) = certificate.subject_alternative_name() {
            for name in &alternative.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                    GeneralName::URI(uri) => names.uris.push((*uri).to_owned()),
                    GeneralName::RFC822Name(email) => names.emails.push((*email).to_owned()),
                    _ => {}
                }
            }
        }
        Some(names)
    }

    fn of_kind(&self, kind: NameKind) -> &[String] {
        match kind {
            NameKind::CommonName => &self.common_names,
            NameKind::Dns => &self.dns,
            NameKind::Uri => &self.uris,
            NameKind::Email => &self.emails,
        }
    }
}

/// Maps verified client certificates to principals: the first rule, in configured order, that
/// matches one of the certificate's names.
#[derive(Debug, Clone, Default)]
pub struct ClientPrincipals {
    rules: Vec<PrincipalRule>,
}

impl ClientPrincipals {
    /// Parses every `--tls-client-principal` rule; fails on the first malformed or repeated one.
    pub fn parse(rules: &[String]) -> anyhow::Result<Self> {
        let mut parsed: Vec<PrincipalRule> = Vec::new();
        for rule in rules.iter().filter(|rule| !rule.trim().is_empty()) {
            let rule = PrincipalRule::parse(rule)?;
            if let Some(earlier) = parsed.iter().find(|earlier| {
                earlier.kind == rule.kind && rule.kind.matches(&earlier.value, &rule.value)
            }) {
                anyhow::bail!(
                    "--tls-client-principal maps the certificate name {:?} twice (to {} and {})",
                    rule.value,
                    earlier.principal.subject,
                    rule.principal.subject
                );
            }
            parsed.push(rule);
        }
        Ok(Self { rules: parsed })
    }

    /// Returns the number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Returns true when there is no rule: no certificate maps to a principal.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Returns the principal of a verified certificate (DER), or `None` when no rule matches.
    pub fn principal_for(&self, certificate: &[u8]) -> Option<Principal> {
        if self.rules.is_empty() {
            return None;
        }
        let names = CertificateNames::from_der(certificate)?;
        self.principal_for_names(&names)
    }

    /// Returns the principal of the first rule matching one of `names`.
    pub fn principal_for_names(&self, names: &CertificateNames) -> Option<Principal> {
        self.rules
            .iter()
            .find(|rule| {
                names
                    .of_kind(rule.kind)
                    .iter()
                    .any(|name| rule.kind.matches(&rule.value, name))
            })
            .map(|rule| rule.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rules: &[&str]) -> anyhow::Result<ClientPrincipals> {
        ClientPrincipals::parse(
            &rules
                .iter()
                .map(|rule| (*rule).to_owned())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn parses_every_kind_and_the_organisation() {
        let rule = PrincipalRule::parse("dns:hr.example.gov=hr-system:hr_service").unwrap();
        assert_eq!(rule.kind, NameKind::Dns);
        assert_eq!(rule.value, "hr.example.gov");
        assert_eq!(rule.principal.subject, "hr-system");
        assert_eq!(rule.principal.roles, vec![Role::HrService]);
        // A URI holding `:` and `=`: the value ends at the last `=`.
        let rule =
            PrincipalRule::parse("uri:spiffe://gov.example/hr?x=1=hr-sync:hr_service,learner")
                .unwrap();
        assert_eq!(rule.value, "spiffe://gov.example/hr?x=1");
        assert_eq!(rule.principal.roles, vec![Role::HrService, Role::Learner]);
        let organization = "0190a0b0-0000-7000-8000-000000000001";
        let rule =
            PrincipalRule::parse(&format!("cn:Agency Portal=portal:org_admin@{organization}"))
                .unwrap();
        assert_eq!(rule.kind, NameKind::CommonName);
        assert_eq!(rule.value, "Agency Portal");
        assert_eq!(
            rule.principal.organization_id.as_deref(),
            Some(organization)
        );
        assert_eq!(
            PrincipalRule::parse("email:ops@example.gov=ops:admin")
                .unwrap()
                .kind,
            NameKind::Email
        );
    }

    #[test]
    fn refuses_malformed_rules_saying_why() {
        for (rule, why) in [
            ("hr.example.gov", "no `=`"),
            ("hr.example.gov=hr:hr_service", "no `:` after the kind"),
            ("ip:10.0.0.1=hr:hr_service", "unknown kind"),
            ("dns:=hr:hr_service", "empty certificate name"),
            (
                "dns:hr.example.gov=hr_service",
                "no `:` between subject and roles",
            ),
            (
                "dns:hr.example.gov=:hr_service",
                "subject must be non-empty",
            ),
            (
                "dns:hr.example.gov=hr:superuser",
                "unknown role \"superuser\"",
            ),
            ("dns:hr.example.gov=hr:", "unknown role \"\""),
            (
                "dns:hr.example.gov=hr:org_admin",
                "org_admin needs its organisation",
            ),
            ("dns:hr.example.gov=hr:org_admin@42", "is not an id"),
        ] {
            let error = PrincipalRule::parse(rule).unwrap_err().to_string();
            assert!(error.contains(why), "{rule}: {error}");
            assert!(error.contains("expected KIND:VALUE="), "{rule}: {error}");
        }
        let error = rules(&["dns:HR.example.gov=a:admin", "dns:hr.example.gov=b:learner"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("twice"), "{error}");
    }

    #[test]
    fn the_first_matching_rule_wins_and_case_matters_only_where_it_should() {
        let principals = rules(&[
            "cn:HR Sync=cn-subject:learner",
            "dns:hr.example.gov=hr-system:hr_service",
            "uri:spiffe://gov.example/hr=spiffe-subject:admin",
            "email:ops@example.gov=ops:programme_manager",
        ])
        .unwrap();
        let names = |common: &[&str], dns: &[&str], uris: &[&str], emails: &[&str]| {
            let owned = |list: &[&str]| list.iter().map(|name| (*name).to_owned()).collect();
            CertificateNames {
                common_names: owned(common),
                dns: owned(dns),
                uris: owned(uris),
                emails: owned(emails),
            }
        };
        let subject = |names: CertificateNames| {
            principals
                .principal_for_names(&names)
                .map(|principal| principal.subject)
        };
        assert_eq!(
            subject(names(&[], &["HR.Example.GOV"], &[], &[])).as_deref(),
            Some("hr-system")
        );
        assert_eq!(
            subject(names(&["hr sync"], &[], &[], &[])),
            None,
            "CN is exact"
        );
        assert_eq!(
            subject(names(&["HR Sync"], &["hr.example.gov"], &[], &[])).as_deref(),
            Some("cn-subject"),
            "rules are tried in order"
        );
        assert_eq!(
            subject(names(&[], &[], &["spiffe://gov.example/HR"], &[])),
            None
        );
        assert_eq!(
            subject(names(&[], &[], &["spiffe://gov.example/hr"], &[])).as_deref(),
            Some("spiffe-subject")
        );
        assert_eq!(
            subject(names(&[], &[], &[], &["OPS@example.gov"])).as_deref(),
            Some("ops")
        );
        // A name of one kind never matches a rule of another.
        assert_eq!(subject(names(&["hr.example.gov"], &[], &[], &[])), None);
    }

    #[test]
    fn reads_names_from_a_real_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["hr.example.gov".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "HR Sync");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://gov.example/hr").unwrap(),
        ));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            rcgen::string::Ia5String::try_from("ops@example.gov").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let names = CertificateNames::from_der(certificate.der()).unwrap();
        assert_eq!(names.common_names, vec!["HR Sync"]);
        assert_eq!(names.dns, vec!["hr.example.gov"]);
        assert_eq!(names.uris, vec!["spiffe://gov.example/hr"]);
        assert_eq!(names.emails, vec!["ops@example.gov"]);
        let principals = rules(&["email:ops@example.gov=ops:admin"]).unwrap();
        assert_eq!(
            principals.principal_for(certificate.der()).unwrap().roles,
            vec![Role::Admin]
        );
        assert!(CertificateNames::from_der(b"not a certificate").is_none());
    }

    /// Writes a self-signed certificate for `localhost` and its key to `dir`; returns its DER.
    fn write_pair(dir: &Path) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        fs::write(dir.join("server.crt"), certificate.pem()).unwrap();
        fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        certificate.der().to_vec()
    }

    #[test]
    fn a_failed_reload_keeps_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let config = TlsConfig {
            tls_cert: Some(dir.path().join("server.crt")),
            tls_key: Some(dir.path().join("server.key")),
            ..TlsConfig::default()
        };
        let tls = Tls::from_config(&config).unwrap().expect("TLS on");
        let config_now = || tls.current.config.read().unwrap().clone();
        let first = config_now();
        assert_eq!(
            first.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // Unchanged files: nothing to do.
        assert!(!tls.current.reload(false).unwrap());
        assert!(Arc::ptr_eq(&first, &config_now()));
        // A half-written certificate: the error names the file, the previous pair stays.
        fs::write(
            dir.path().join("server.crt"),
            "-----BEGIN CERTIFICATE-----\nAAAA",
        )
        .unwrap();
        let error = format!("{:#}", tls.current.reload(false).unwrap_err());
        assert!(error.contains("server.crt"), "{error}");
        assert!(Arc::ptr_eq(&first, &config_now()));
        // A key of another certificate: refused as well.
        let other = tempfile::tempdir().unwrap();
        write_pair(other.path());
        write_pair(dir.path());
        fs::copy(
            other.path().join("server.key"),
            dir.path().join("server.key"),
        )
        .unwrap();
        let error = format!("{:#}", tls.current.reload(false).unwrap_err());
        assert!(
            error.contains("not a certificate and its private key"),
            "{error}"
        );
        assert!(Arc::ptr_eq(&first, &config_now()));
        // A good pair again: in use.
        write_pair(dir.path());
        assert!(tls.current.reload(false).unwrap());
        assert!(!Arc::ptr_eq(&first, &config_now()));
        // SIGHUP reloads unchanged files too.
        let second = config_now();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&second, &config_now()));
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused() {
        let with = |change: fn(&mut TlsConfig)| {
            let mut config = TlsConfig::default();
            change(&mut config);
            Tls::from_config(&config)
                .err()
                .map(|error| error.to_string())
        };
        assert!(with(|_| {}).is_none(), "TLS off by default");
        assert!(
            with(|c| c.tls_cert = Some("c.pem".into()))
                .unwrap()
                .contains("--tls-key")
        );
        assert!(
            with(|c| c.tls_key = Some("k.pem".into()))
                .unwrap()
                .contains("--tls-cert")
        );
        assert!(
            with(|c| c.tls_client_ca = Some("ca.pem".into()))
                .unwrap()
                .contains("needs --tls-cert")
        );
        let error = with(|c| {
            c.tls_cert = Some("c.pem".into());
            c.tls_key = Some("k.pem".into());
            c.tls_client_principal = vec!["dns:a=b:admin".into()];
        })
        .unwrap();
        assert!(error.contains("needs --tls-client-ca"), "{error}");
        let error = with(|c| {
            c.tls_cert = Some("/nonexistent/c.pem".into());
            c.tls_key = Some("/nonexistent/k.pem".into());
        })
        .unwrap();
        assert!(error.contains("/nonexistent/c.pem"), "{error}");
    }
}
