//! TLS and client certificates on the listener (docs/tls.md): certificates made per test with
//! rcgen, the real server on a real socket, tonic and rustls clients.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lms::auth::Role;
use lms::config::{ClientAuth, Config};
use lms::pb::{
    GetIssuerKeysRequest, ListPeopleRequest,
    certification_service_client::CertificationServiceClient,
    person_service_client::PersonServiceClient,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

use crate::helpers::{
    TestApp, TestDatabase, error_reason, spawn_app_connecting, test_config, with_token,
};

/// The HR system's certificate name and the mapping that grants it `hr_service`.
const HR_DNS: &str = "hr.example.gov";
const HR_RULE: &str = "dns:hr.example.gov=hr-system:hr_service";

/// A certificate authority made for one test.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).unwrap();
        Self {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a certificate for `dns_names` (and CN `common_name`) usable as `purpose`.
    fn sign(
        &self,
        common_name: &str,
        dns_names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names = dns_names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![purpose];
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: certificate.pem(),
            key: key.serialize_pem(),
            der: certificate.der().clone(),
        }
    }

    fn server(&self) -> Leaf {
        self.sign(
            "lms test server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, common_name: &str, dns_names: &[&str]) -> Leaf {
        self.sign(common_name, dns_names, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// Certificate files of a server, in the test's data dir.
struct ServerFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl ServerFiles {
    fn write(dir: &Path, server: &Leaf, client_ca: &Authority) -> Self {
        let files = Self {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            client_ca: dir.join("client-ca.crt"),
        };
        files.replace(server);
        std::fs::write(&files.client_ca, &client_ca.pem).unwrap();
        files
    }

    /// Replaces the pair as a deployment tool would: write aside, then rename over.
    fn replace(&self, server: &Leaf) {
        for (path, contents) in [(&self.key, &server.key), (&self.cert, &server.cert)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, contents).unwrap();
            std::fs::rename(&aside, path).unwrap();
        }
    }
}

/// A TLS server with client certificates and its PKI.
struct Setup {
    app: TestApp,
    ca: Authority,
    files: ServerFiles,
    _database: TestDatabase,
}

/// Starts a TLS server trusting client certificates of its CA, mapping `rules`; `adjust` may
/// change the configuration further. Its test clients connect without a client certificate.
async fn spawn_tls_app(rules: &[&str], adjust: impl FnOnce(&mut Config)) -> Setup {
    let database = TestDatabase::fresh().await;
    let ca = Authority::new("lms test CA");
    let files = ServerFiles::write(&database.data_dir, &ca.server(), &ca);
    let mut config = test_config(&database);
    config.server.tls.tls_cert = Some(files.cert.clone());
    config.server.tls.tls_key = Some(files.key.clone());
    config.server.tls.tls_client_ca = Some(files.client_ca.clone());
    config.server.tls.tls_client_principal = rules.iter().map(|rule| (*rule).to_owned()).collect();
    adjust(&mut config);
    let ca_pem = ca.pem.clone();
    let app = spawn_app_connecting(config, |addr| async move {
        tls_channel(addr, &ca_pem, None)
            .await
            .expect("TLS connection without a client certificate")
    })
    .await;
    Setup {
        app,
        ca,
        files,
        _database: database,
    }
}

/// Opens a TLS channel trusting `ca_pem`, presenting `client` when given.
async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Lists people on `channel`, with `token` when given.
async fn list_people(channel: Channel, token: Option<&str>) -> Result<usize, tonic::Status> {
    let message = ListPeopleRequest::default();
    let request = match token {
        Some(token) => with_token(message, token),
        None => Request::new(message),
    };
    PersonServiceClient::new(channel)
        .list_people(request)
        .await
        .map(|response| response.into_inner().people.len())
}

/// Returns the end-entity certificate a new TLS connection to `addr` is served with.
async fn presented_certificate(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> CertificateDer<'static> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
}

/// Opens new connections until the server presents `expected`, for at most 10 s.
async fn wait_for_certificate(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    expected: &CertificateDer<'static>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if presented_certificate(addr, ca).await == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never presented the new certificate"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_mapped_client_certificate_calls_with_its_role() {
    let setup = spawn_tls_app(&[HR_RULE], |_| {}).await;
    let hr = setup.ca.client("HR system", &[HR_DNS]);
    let channel = tls_channel(setup.app.addr, &setup.ca.pem, Some(&hr))
        .await
        .unwrap();
    // hr_service may list people: no token needed, the certificate is the credential.
    assert_eq!(list_people(channel.clone(), None).await.unwrap(), 0);
    // The policy applies to the certificate's principal as to a token's: hr_service may not audit.
    let status = lms::pb::audit_service_client::AuditServiceClient::new(channel.clone())
        .verify_audit_chain(lms::pb::VerifyAuditChainRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(error_reason(&status), "ROLE_NOT_ALLOWED");
    setup.app.stop().await;
}

#[tokio::test]
async fn a_token_wins_over_a_client_certificate() {
    let setup = spawn_tls_app(&[HR_RULE], |_| {}).await;
    let hr = setup.ca.client("HR system", &[HR_DNS]);
    let channel = tls_channel(setup.app.addr, &setup.ca.pem, Some(&hr))
        .await
        .unwrap();
    // A learner's token over the HR system's connection: the learner's roles apply.
    let learner = setup.app.token(
        "0190a0b0-0000-7000-8000-0000000000aa",
        &[Role::Learner],
        None,
    );
    let status = list_people(channel.clone(), Some(&learner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A bad token is refused, although the certificate alone would have been enough.
    let status = list_people(channel, Some("not-a-token")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    setup.app.stop().await;
}

#[tokio::test]
async fn without_a_client_certificate_callers_need_a_token() {
    let setup = spawn_tls_app(&[HR_RULE], |_| {}).await;
    let channel = setup.app.channel.clone();
    let status = list_people(channel.clone(), None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{status:?}"
    );
    let admin = setup.app.admin_token();
    assert_eq!(list_people(channel, Some(&admin)).await.unwrap(), 0);
    setup.app.stop().await;
}

#[tokio::test]
async fn a_verified_certificate_without_a_mapping_is_denied() {
    let setup = spawn_tls_app(&[HR_RULE], |_| {}).await;
    let stranger = setup.ca.client("payroll", &["payroll.example.gov"]);
    let channel = tls_channel(setup.app.addr, &setup.ca.pem, Some(&stranger))
        .await
        .unwrap();
    let status = list_people(channel.clone(), None).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(error_reason(&status), "CLIENT_CERTIFICATE_NOT_MAPPED");
    // Public methods need no credential at all.
    CertificationServiceClient::new(channel.clone())
        .get_issuer_keys(GetIssuerKeysRequest::default())
        .await
        .expect("public call");
    // With a token the call is the token's.
    let admin = setup.app.admin_token();
    assert_eq!(list_people(channel, Some(&admin)).await.unwrap(), 0);
    setup.app.stop().await;
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_in_the_handshake() {
    let setup = spawn_tls_app(&[HR_RULE], |_| {}).await;
    let other = Authority::new("someone else's CA");
    // Same names as the mapped HR system: only the signature differs.
    let forged = other.client("HR system", &[HR_DNS]);
    let refused = match tls_channel(setup.app.addr, &setup.ca.pem, Some(&forged)).await {
        // TLS 1.3: the client may finish its side before the server's alert arrives.
        Ok(channel) => list_people(channel, None).await.unwrap_err(),
        Err(_) => tonic::Status::unavailable("connect refused"),
    };
    assert!(
        !matches!(
            refused.code(),
            Code::Ok | Code::PermissionDenied | Code::Unauthenticated
        ),
        "the call must fail at the transport, not reach the auth layer: {refused:?}"
    );
    setup.app.stop().await;
}

#[tokio::test]
async fn required_client_auth_refuses_connections_without_a_certificate() {
    let setup = spawn_tls_app(&[HR_RULE], |config| {
        config.server.tls.tls_client_auth = ClientAuth::Required;
    })
    .await;
    // The harness channel connected without a certificate: its calls fail at the transport.
    let admin = setup.app.admin_token();
    let status = list_people(setup.app.channel.clone(), Some(&admin))
        .await
        .unwrap_err();
    assert!(
        !matches!(
            status.code(),
            Code::Ok | Code::PermissionDenied | Code::Unauthenticated
        ),
        "{status:?}"
    );
    let hr = setup.ca.client("HR system", &[HR_DNS]);
    let channel = tls_channel(setup.app.addr, &setup.ca.pem, Some(&hr))
        .await
        .unwrap();
    assert_eq!(list_people(channel, None).await.unwrap(), 0);
    setup.app.stop().await;
}

#[tokio::test]
async fn a_plain_text_client_cannot_call_a_tls_listener() {
    let setup = spawn_tls_app(&[], |_| {}).await;
    let admin = setup.app.admin_token();
    let plain = Channel::from_shared(format!("http://{}", setup.app.addr))
        .unwrap()
        .connect()
        .await;
    let failed = match plain {
        Ok(channel) => list_people(channel, Some(&admin)).await.is_err(),
        Err(_) => true,
    };
    assert!(failed, "a plain-text call to a TLS listener must fail");
    // The TLS channel works meanwhile.
    assert_eq!(
        list_people(setup.app.channel.clone(), Some(&admin))
            .await
            .unwrap(),
        0
    );
    setup.app.stop().await;
}

#[tokio::test]
async fn public_calls_are_rate_limited_per_client_address_under_tls() {
    let setup = spawn_tls_app(&[], |config| {
        config.certification.verify_rate_per_second = 1;
        config.certification.verify_burst = 1;
        config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let call = |client: &'static str| {
        let channel = setup.app.channel.clone();
        async move {
            let mut request = Request::new(GetIssuerKeysRequest::default());
            request
                .metadata_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            CertificationServiceClient::new(channel)
                .get_issuer_keys(request)
                .await
        }
    };
    call("203.0.113.1").await.expect("first call of a client");
    let status = call("203.0.113.1").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Another client behind the trusted proxy has its own bucket: the peer address was seen
    // through TLS (an unknown peer would not be trusted, and every client would share one).
    call("203.0.113.2")
        .await
        .expect("another client's first call");
    setup.app.stop().await;
}

#[tokio::test]
async fn changed_certificate_files_reach_new_connections_and_spare_open_ones() {
    let setup = spawn_tls_app(&[HR_RULE], |config| {
        config.server.tls.tls_reload_interval = Duration::from_millis(100);
    })
    .await;
    let addr = setup.app.addr;
    let admin = setup.app.admin_token();
    let old = presented_certificate(addr, &setup.ca.der).await;
    let open = setup.app.channel.clone();
    assert_eq!(list_people(open.clone(), Some(&admin)).await.unwrap(), 0);

    let renewed = setup.ca.server();
    assert_ne!(renewed.der, old);
    setup.files.replace(&renewed);
    wait_for_certificate(addr, &setup.ca.der, &renewed.der).await;

    // The connection opened before the reload still works.
    assert_eq!(list_people(open, Some(&admin)).await.unwrap(), 0);
    let hr = setup.ca.client("HR system", &[HR_DNS]);
    let channel = tls_channel(addr, &setup.ca.pem, Some(&hr)).await.unwrap();
    assert_eq!(list_people(channel, None).await.unwrap(), 0);
    setup.app.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    // No polling: only SIGHUP can make the server read the files again.
    let setup = spawn_tls_app(&[], |config| {
        config.server.tls.tls_reload_interval = Duration::ZERO;
    })
    .await;
    let addr = setup.app.addr;
    let renewed = setup.ca.server();
    setup.files.replace(&renewed);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    wait_for_certificate(addr, &setup.ca.der, &renewed.der).await;
    setup.app.stop().await;
}
