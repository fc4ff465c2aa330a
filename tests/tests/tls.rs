//! TLS for real, with certificates made in the test (rcgen): the server,
//! the CLI and the agent complete a login over TLS; plaintext HTTP/2 to the
//! TLS port is refused; mutual TLS (`tls_client_ca`) refuses a client
//! without a certificate or with one from another CA and serves the right
//! one; a new certificate written over the files is served without a
//! restart.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use assent_server::ServerConfig;
use assent_tests::pki::Authority;
use assent_tests::{ChildGuard, ScratchDir, TestApp, TestDb, binary, scratch_dir, within};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Files of one test's PKI.
struct Files {
    dir: ScratchDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: scratch_dir("tls"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        // Written whole, then renamed: the server never reads half a file.
        let temp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        path
    }
}

/// An embedded server with TLS settings; stopped when dropped.
struct TlsServer {
    port: u16,
    stop: CancellationToken,
    _db: TestDb,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TlsServer {
    async fn start(db: TestDb, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = ServerConfig {
            database_url: Some(db.url.clone()),
            listen: listener.local_addr().unwrap(),
            metrics_listen: None,
            drain_timeout_seconds: 1,
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let stop = CancellationToken::new();
        let run = assent_server::run(config, listener, stop.clone());
        tokio::spawn(async move {
            if let Err(error) = run.await {
                panic!("TLS test server failed: {error:?}");
            }
        });
        Self {
            port,
            stop,
            _db: db,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// One health check over TLS trusting `ca`, presenting `identity` if any.
async fn health(url: &str, ca: &str, identity: Option<(&str, &str)>) -> Result<i32, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status)
        .map_err(|status| format!("{status:?}"))
}

async fn until_serving(url: &str, ca: &str, identity: Option<(&str, &str)>) {
    within(15, "the TLS server to serve", async {
        while health(url, ca, identity).await != Ok(1) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary(program)).args(args).output().unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The CLI creates an enrollment code over TLS, the agent enrolls with it,
/// connects and accepts a push the CLI starts and waits for; both present
/// `identity` (extra arguments: a client certificate) when given.
async fn complete_a_login(
    files: &Files,
    url: &str,
    ca: &std::path::Path,
    api_key: &str,
    identity: &[&str],
) {
    let ca_arg = ca.to_str().unwrap();
    let cli = |args: &[&str]| {
        let trusted = ["--server", url, "--ca-cert", ca_arg, "--api-key", api_key];
        run("assent", &[&trusted[..], identity, args].concat())
    };
    let created = cli(&["--json", "enrollment", "create", "--user", "alice"]);
    assert!(created.status.success(), "{}", text(&created));
    let code: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let code = code["code"].as_str().unwrap().to_owned();

    // The agent enrolls and connects over TLS, and accepts a push.
    let state = files.dir.join("agent");
    let state_arg = state.to_str().unwrap();
    let agent_args = [
        &[
            "--state-dir",
            state_arg,
            "--server",
            url,
            "--ca-cert",
            ca_arg,
        ][..],
        identity,
    ]
    .concat();
    let enrolled = run(
        "assent-agent",
        &[&agent_args[..], &["enroll", "--code", &code]].concat(),
    );
    assert!(enrolled.status.success(), "{}", text(&enrolled));
    let _daemon = ChildGuard(
        Command::new(binary("assent-agent"))
            .args(&agent_args)
            .args(["run", "--policy", "accept"])
            .spawn()
            .unwrap(),
    );
    within(15, "the agent to connect over TLS", async {
        loop {
            let status = run(
                "assent-agent",
                &[&agent_args[..], &["--json", "status"]].concat(),
            );
            let report: serde_json::Value =
                serde_json::from_slice(&status.stdout).unwrap_or_default();
            if report["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let push = cli(&[
        "--json",
        "login",
        "push",
        "--user",
        "alice",
        "--message",
        "Log in over TLS?",
    ]);
    assert!(push.status.success(), "{}", text(&push));
    let push: serde_json::Value = serde_json::from_slice(&push.stdout).unwrap();
    let waited = cli(&[
        "tx",
        "wait",
        push["transaction_id"].as_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert!(
        waited.status.success(),
        "accepted over TLS: {}",
        text(&waited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cli_and_agent_complete_a_login_over_tls() {
    let files = Files::new();
    let authority = Authority::new("Assent test CA");
    let (cert, key) = authority.issue("assent-server", false);
    let ca = files.write("ca.pem", &authority.pem());
    let cert_path = files.write("server.pem", &cert);
    let key_path = files.write("server.key", &key);
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;
    let server = TlsServer::start(db, |config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
    })
    .await;
    let url = server.url();
    until_serving(&url, &authority.pem(), None).await;
    complete_a_login(&files, &url, &ca, &app.api_key, &[]).await;

    // Without the CA the CLI refuses the server's certificate.
    let untrusted = run(
        "assent",
        &[
            "--server",
            &url,
            "--api-key",
            &app.api_key,
            "enrollment",
            "create",
            "--user",
            "bob",
        ],
    );
    assert_eq!(untrusted.status.code(), Some(1), "{}", text(&untrusted));

    // Plaintext HTTP/2 to the TLS port is refused.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.port))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "plaintext h2 must not be served on the TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_a_certificate_its_ca_signed() {
    let files = Files::new();
    let servers = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let strangers = Authority::new("another CA");
    let (cert, key) = servers.issue("assent-server", false);
    let cert_path = files.write("server.pem", &cert);
    let key_path = files.write("server.key", &key);
    let client_ca = files.write("clients.pem", &clients.pem());
    let server = TlsServer::start(TestDb::sqlite(), |config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
        config.tls_client_ca = Some(client_ca);
    })
    .await;
    let url = server.url();
    let (right_cert, right_key) = clients.issue("backend", true);
    until_serving(&url, &servers.pem(), Some((&right_cert, &right_key))).await;

    assert!(
        health(&url, &servers.pem(), None).await.is_err(),
        "a client without a certificate is refused"
    );
    let (wrong_cert, wrong_key) = strangers.issue("intruder", true);
    assert!(
        health(&url, &servers.pem(), Some((&wrong_cert, &wrong_key)))
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
    assert_eq!(
        health(&url, &servers.pem(), Some((&right_cert, &right_key))).await,
        Ok(1),
        "the right certificate is served"
    );
}

/// The certificate the server presents to a new connection (DER).
async fn presented(port: u16, ca: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn der_of(pem: &str) -> Vec<u8> {
    rustls_pemfile_certs(pem)[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_served_without_a_restart() {
    let files = Files::new();
    let authority = Authority::new("Assent test CA");
    let (first, first_key) = authority.issue("first", false);
    let cert_path = files.write("server.pem", &first);
    let key_path = files.write("server.key", &first_key);
    let server = TlsServer::start(TestDb::sqlite(), |config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
    })
    .await;
    until_serving(&server.url(), &authority.pem(), None).await;
    assert_eq!(
        presented(server.port, &authority.pem()).await,
        der_of(&first)
    );

    // A renewed certificate and key are written over the files.
    let (second, second_key) = authority.issue("second", false);
    // The key first: a certificate that does not match its key is not
    // taken, and the old pair stays in use meanwhile.
    files.write("server.key", &second_key);
    files.write("server.pem", &second);
    within(10, "the new certificate to be served", async {
        while presented(server.port, &authority.pem()).await != der_of(&second) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(health(&server.url(), &authority.pem(), None).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_agent_present_client_certificates_under_mutual_tls() {
    let files = Files::new();
    let servers = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let (cert, key) = servers.issue("assent-server", false);
    let (client_cert, client_key) = clients.issue("kiosk-7", true);
    let ca = files.write("ca.pem", &servers.pem());
    let client_ca = files.write("client-ca.pem", &clients.pem());
    let cert_path = files.write("server.pem", &cert);
    let key_path = files.write("server.key", &key);
    let client_cert = files.write("client.pem", &client_cert);
    let client_key = files.write("client.key", &client_key);
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;
    let server = TlsServer::start(db, |config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
        config.tls_client_ca = Some(client_ca);
    })
    .await;
    let url = server.url();
    let identity = [
        "--client-cert",
        client_cert.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
    ];
    until_serving(
        &url,
        &servers.pem(),
        Some((
            &std::fs::read_to_string(&client_cert).unwrap(),
            &std::fs::read_to_string(&client_key).unwrap(),
        )),
    )
    .await;
    complete_a_login(&files, &url, &ca, &app.api_key, &identity).await;
    // Without its certificate the CLI is refused by the server.
    let bare = run(
        "assent",
        &[
            "--server",
            &url,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--api-key",
            &app.api_key,
            "devices",
            "list",
        ],
    );
    assert_eq!(bare.status.code(), Some(1), "{}", text(&bare));
}
