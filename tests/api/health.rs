//! `lms health`: the real binary probes a started server, as a container HEALTHCHECK or a
//! Kubernetes exec probe would; its exit status is the answer.

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::helpers::{lms_binary, spawn_app};

/// Runs `lms health` with `args` and an environment holding only `env` of the `LMS_*` settings.
async fn probe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = lms_binary();
    command.arg("health").args(args);
    command.envs(env.iter().copied());
    command.output().await.expect("run lms health")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_serving_server_and_each_named_service_exit_zero() {
    let (app, _database) = spawn_app().await;
    let address = format!("http://{}", app.addr);

    let whole = probe(&["--address", &address], &[]).await;
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    let line = stdout(&whole);
    assert_eq!(line, format!("SERVING: server at {address}\n"));

    let named = ["--address", &address, "--service", "lms.v1.PersonService"];
    let service = probe(&named, &[]).await;
    assert_eq!(service.status.code(), Some(0), "{}", stderr(&service));
    let line = stdout(&service);
    assert!(line.contains("service lms.v1.PersonService"), "{line}");
}

#[tokio::test]
async fn without_an_address_the_listen_setting_is_probed_on_loopback() {
    // The container sets LMS_LISTEN=0.0.0.0:50051 and its HEALTHCHECK is plain `lms health`.
    let (app, _database) = spawn_app().await;
    let listen = SocketAddr::from(([0, 0, 0, 0], app.addr.port())).to_string();

    let output = probe(&[], &[("LMS_LISTEN", &listen)]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("http://127.0.0.1:{}", app.addr.port())));
}

#[tokio::test]
async fn an_unknown_service_exits_one() {
    let (app, _database) = spawn_app().await;
    let address = format!("http://{}", app.addr);

    let unknown = ["--address", &address, "--service", "lms.v1.NoSuchService"];
    let output = probe(&unknown, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).is_empty());
    let line = stderr(&output);
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains("does not know this service"), "{line}");
}

#[tokio::test]
async fn a_closed_port_exits_one() {
    // Bound but not listening: connections are refused, and no other process can take the port
    // while the socket is held.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let port = socket
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an IP socket")
        .port();

    let output = probe(&["--address", &format!("http://127.0.0.1:{port}")], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let line = stderr(&output);
    assert!(line.starts_with("NOT SERVING: server at"), "{line}");
    assert!(line.contains("cannot connect"), "{line}");
    drop(socket);
}

#[tokio::test]
async fn a_server_that_never_answers_exits_one_after_the_timeout() {
    // Accepted by the kernel's backlog, never served: the HTTP/2 handshake gets no answer.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", silent.local_addr().expect("local address"));

    let started = Instant::now();
    let output = probe(&["--address", &address, "--timeout", "300ms"], &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let line = stderr(&output);
    assert!(line.starts_with("NOT SERVING: server at"), "{line}");
    // The probe gives up near its timeout rather than waiting on the silent peer.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    drop(silent);
}

#[tokio::test]
async fn an_https_address_without_a_ca_exits_one_and_says_why() {
    let output = probe(&["--address", "https://127.0.0.1:1"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let line = stderr(&output);
    assert!(line.contains("needs --ca-cert"), "{line}");
}

/// Writes `contents` to `name` in `dir` and returns the path as a string argument.
fn write_pem(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a PEM file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[tokio::test]
async fn an_https_server_requiring_client_certificates_is_probed_with_ca_name_and_identity() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

    let database = crate::helpers::TestDatabase::fresh().await;
    let dir = database.data_dir.clone();
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "health test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca_params.self_signed(&ca_key).expect("CA").pem();
    let ca = Issuer::new(ca_params, ca_key);
    // Certificate and key of `purpose`, for the DNS name `localhost`.
    let leaf = |purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &ca).expect("leaf").pem();
        (cert, key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth);
    let ca_file = write_pem(&dir, "ca.crt", &ca_pem);
    let client_cert_file = write_pem(&dir, "probe.crt", &client_cert);
    let client_key_file = write_pem(&dir, "probe.key", &client_key);

    let mut config = crate::helpers::test_config(&database);
    config.server.tls.tls_cert = Some(write_pem(&dir, "server.crt", &server_cert).into());
    config.server.tls.tls_key = Some(write_pem(&dir, "server.key", &server_key).into());
    config.server.tls.tls_client_ca = Some(ca_file.clone().into());
    config.server.tls.tls_client_auth = lms::config::ClientAuth::Required;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(&client_cert, &client_key));
    let app = crate::helpers::spawn_app_connecting(config, |addr| async move {
        Channel::from_shared(format!("https://{addr}"))
            .expect("URL")
            .tls_config(tls)
            .expect("TLS settings")
            .connect()
            .await
            .expect("connect over TLS")
    })
    .await;
    let address = format!("https://{}", app.addr);
    let trust = ["--address", &address, "--ca-cert", &ca_file];
    let identity = [
        "--client-cert",
        &client_cert_file,
        "--client-key",
        &client_key_file,
    ];

    let complete = [&trust[..], &["--server-name", "localhost"], &identity].concat();
    let output = probe(&complete, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("SERVING: server at {address}\n"));

    // The certificate names `localhost`, not the address's 127.0.0.1.
    let unnamed = [&trust[..], &identity].concat();
    let output = probe(&unnamed, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let line = stderr(&output);
    assert!(line.contains(r#"not valid for name "127.0.0.1""#), "{line}");

    // The listener requires a client certificate.
    let anonymous = [&trust[..], &["--server-name", "localhost"]].concat();
    let output = probe(&anonymous, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let line = stderr(&output);
    assert!(
        line.starts_with("NOT SERVING: server at https://"),
        "{line}"
    );
}
