//! The OpenID CIBA provider end to end (docs/ciba.md), driven by a real
//! relying-party library: panva's `openid-client` with `jose`
//! (tests/ciba-client/ciba.mjs), against a server started with
//! `oidc_listen`, and a real `assent-agent` that accepts or denies.
//! Discovery, a poll-mode login whose ID token verifies against the JWKS
//! and carries the device's own signature, a denial, `slow_down`, and
//! `assent-server app ciba`; ping mode (a receiver in the client answers
//! the first ping 503, so the retry is seen) and push mode (its ID token
//! verified with `jose`, its `at_hash` checked; a denial pushed as
//! `access_denied`) on PostgreSQL; an `auth_req_id` answered by another
//! replica; the provider over TLS with the gRPC port's certificate.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_tests::ports::free_address;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_server::ServerConfig;
use assent_tests::agent::EnrolledAgent;
use assent_tests::{TestApp, TestDb, TestServer, binary, device, rp_client, tools, within};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Whether the client's packages are installed (else "not run").
fn can_run(test: &str) -> bool {
    tools::can_run(test, &[tools::CIBA_CLIENT_PACKAGES])
}

/// A server with the CIBA provider on; returns it and the issuer URL.
async fn start(db: &TestDb) -> (TestServer, String) {
    start_with(db, |_| {}).await
}

/// [`start`], the configuration adjusted.
async fn start_with(db: &TestDb, adjust: impl FnOnce(&mut ServerConfig)) -> (TestServer, String) {
    let oidc = free_address();
    let server = TestServer::start_with(db, |config: &mut ServerConfig| {
        config.oidc_listen = Some(oidc);
        adjust(config);
    })
    .await;
    (server, format!("http://{oidc}"))
}

/// Runs `node ciba.mjs ARGS…` and parses its one JSON line.
async fn client(args: &[&str]) -> Value {
    client_with(args, &[]).await
}

/// [`client`] with environment variables.
async fn client_with(args: &[&str], env: &[(&str, &str)]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ciba-client/ciba.mjs");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let output = within(90, "the CIBA client", async move {
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .args(args)
                .envs(env)
                .output()
        })
        .await
        .unwrap()
        .unwrap()
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "client printed {stdout:?}; stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `assent-server app ciba ARGS… --json` against `db`.
fn app_ciba(db: &TestDb, args: &[&str], allow_private: bool) -> Result<Value, String> {
    let mut command = Command::new(binary("assent-server"));
    command
        .args(["--database-url", &db.url, "app", "ciba"])
        .args(args)
        .arg("--json")
        .env_remove("ASSENT_OIDC_ALLOW_PRIVATE");
    if allow_private {
        command.env("ASSENT_OIDC_ALLOW_PRIVATE", "true");
    }
    let output = command.output().unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Checks the ID token's `assent_evidence` with the device's key, as a
/// relying party would offline, and that key against `GetDevice`'s.
fn verify_evidence(evidence: &Value, public_key: &[u8]) {
    let text = |name: &str| evidence[name].as_str().unwrap().to_owned();
    let bytes = |name: &str| STANDARD.decode(text(name)).unwrap();
    assert_eq!(bytes("device_public_key"), public_key, "{evidence}");
    assert_eq!(text("decision"), "accept");
    let context: BTreeMap<String, String> =
        serde_json::from_value(evidence["context"].clone()).unwrap();
    let display_hash = signing::display_hash(&text("message"), &context);
    assert_eq!(bytes("display_hash"), display_hash.to_vec());
    let payload = DecisionPayload {
        application_id: &text("application_id"),
        transaction_id: &text("transaction_id"),
        device_id: &text("device_id"),
        nonce: &bytes("nonce"),
        verdict: SignedVerdict::Accept,
        reason: &text("reason"),
        display_hash: &display_hash,
        number: evidence["picked_number"]
            .as_u64()
            .map(|n| u32::try_from(n).unwrap()),
    };
    let signed = signing::decision_bytes(&payload);
    assent_proto::verify::ed25519(public_key, &signed, &bytes("signature"))
        .expect("the device's signature verifies");
    // A changed field no longer verifies: the signature covers it.
    let forged = signing::decision_bytes(&DecisionPayload {
        transaction_id: "tx_forged",
        ..payload
    });
    assert!(assent_proto::verify::ed25519(public_key, &forged, &bytes("signature")).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_login_with_openid_client_yields_a_verified_id_token_carrying_the_device_signature() {
    if !can_run("ciba") {
        return;
    }
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;
    let (server, issuer) = start(&db).await;

    let found = client(&["discover", &issuer]).await;
    let metadata = &found["metadata"];
    assert_eq!(metadata["issuer"], issuer.as_str(), "{found}");
    assert_eq!(
        metadata["backchannel_authentication_endpoint"],
        format!("{issuer}/bc-authorize")
    );
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&Value::from("urn:openid:params:grant-type:ciba"))
    );

    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let _daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let login = client(&[
        "login",
        &issuer,
        &app.id,
        &app.api_key,
        "alice",
        "RS256",
        "Sign in to Example Shop",
    ])
    .await;
    assert_eq!(login["ok"], true, "{login}");
    assert_eq!(
        login["token_type"].as_str().unwrap().to_lowercase(),
        "bearer"
    );
    assert_eq!(login["has_access_token"], true);
    assert_eq!(login["header"]["alg"], "RS256");
    let claims = &login["claims"];
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], app.id.as_str());
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        login["auth_req_id"]
    );
    let evidence = &claims["assent_evidence"];
    assert_eq!(evidence["device_id"], agent.device_id.as_str());
    assert_eq!(evidence["application_id"], app.id.as_str());
    assert_eq!(evidence["message"], "Sign in to Example Shop");
    let mut rp = rp_client(&server, &app.api_key).await;
    let device = device(&mut rp, &agent.device_id).await;
    verify_evidence(evidence, &device.public_key);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_is_access_denied_and_a_fast_second_poll_is_slow_down() {
    if !can_run("ciba") {
        return;
    }
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;
    let (server, issuer) = start(&db).await;

    let denier = EnrolledAgent::enroll(&server, &app, "bob").await;
    let _daemon = denier.run(&server.url(), &["--policy", "deny"]);
    denier.wait_connected().await;
    let denied = client(&[
        "login",
        &issuer,
        &app.id,
        &app.api_key,
        "bob",
        "RS256",
        "Sign in",
    ])
    .await;
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["error"], "access_denied", "{denied}");

    // Carol's device is enrolled but not running: her request stays pending.
    let _idle = EnrolledAgent::enroll(&server, &app, "carol").await;
    let polled = client(&["slow-down", &issuer, &app.id, &app.api_key, "carol"]).await;
    assert_eq!(polled["interval"], 2, "{polled}");
    assert_eq!(polled["first"]["status"], 400, "{polled}");
    assert_eq!(polled["first"]["body"]["error"], "authorization_pending");
    assert_eq!(polled["second"]["status"], 400, "{polled}");
    assert_eq!(polled["second"]["body"]["error"], "slow_down");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_ciba_sets_the_algorithm_and_refuses_unsafe_notification_endpoints() {
    if !can_run("ciba") {
        return;
    }
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;

    let refused = app_ciba(
        &db,
        &[
            "--app",
            &app.id,
            "--mode",
            "ping",
            "--notification-endpoint",
            "http://example.com/cb",
        ],
        false,
    );
    assert!(refused.unwrap_err().contains("https"));
    let private = [
        "--app",
        &app.id,
        "--mode",
        "push",
        "--notification-endpoint",
        "https://10.1.2.3/cb",
    ];
    assert!(
        app_ciba(&db, &private, false)
            .unwrap_err()
            .contains("oidc_allow_private")
    );
    assert_eq!(app_ciba(&db, &private, true).unwrap()["mode"], "push");
    let missing = app_ciba(&db, &["--app", &app.id, "--mode", "ping"], false);
    assert!(missing.unwrap_err().contains("--notification-endpoint"));
    let set = app_ciba(
        &db,
        &["--app", &app.id, "--mode", "poll", "--alg", "ES256"],
        false,
    );
    assert_eq!(set.unwrap()["alg"], "ES256");

    let (server, issuer) = start(&db).await;
    let agent = EnrolledAgent::enroll(&server, &app, "dora").await;
    let _daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let login = client(&[
        "login",
        &issuer,
        &app.id,
        &app.api_key,
        "dora",
        "ES256",
        "Sign in",
    ])
    .await;
    assert_eq!(login["ok"], true, "{login}");
    assert_eq!(login["header"]["alg"], "ES256");
    assert_eq!(login["claims"]["sub"], "dora");
}

/// The application as a `mode` client notified at `127.0.0.1:port/cb`.
fn notified_client(db: &TestDb, app: &TestApp, mode: &str, alg: &str, port: u16) {
    let endpoint = format!("http://127.0.0.1:{port}/cb");
    let set = app_ciba(
        db,
        &[
            "--app",
            &app.id,
            "--mode",
            mode,
            "--notification-endpoint",
            &endpoint,
            "--alg",
            alg,
        ],
        true,
    )
    .unwrap();
    assert_eq!(set["mode"], mode, "{set}");
}

/// A ping or push client on PostgreSQL, notified at a port of its own, and
/// alice's accepting agent connected.
struct Notified {
    db: TestDb,
    app: TestApp,
    port: String,
    server: TestServer,
    issuer: String,
    agent: EnrolledAgent,
    daemon: assent_tests::AgentProcess,
}

impl Notified {
    async fn start(mode: &str, alg: &str) -> Self {
        let db = TestDb::create().await;
        let app = TestApp::create(&db, "Example Shop").await;
        let port = free_address().port();
        notified_client(&db, &app, mode, alg, port);
        let (server, issuer) = start_with(&db, |c| c.oidc_allow_private = true).await;
        let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
        let daemon = agent.run(&server.url(), &["--policy", "accept"]);
        agent.wait_connected().await;
        Self {
            db,
            app,
            port: port.to_string(),
            server,
            issuer,
            agent,
            daemon,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_mode_notifies_with_the_bearer_token_retries_a_failed_ping_and_the_client_fetches() {
    if !can_run("ciba") {
        return;
    }
    let Notified {
        db: _db,
        app,
        port,
        server,
        issuer,
        agent,
        daemon: _daemon,
    } = Notified::start("ping", "RS256").await;
    let pinged = client(&[
        "ping",
        &issuer,
        &app.id,
        &app.api_key,
        "alice",
        "RS256",
        "Sign in to Example Shop",
        &port,
        "1",
    ])
    .await;
    assert_eq!(pinged["ok"], true, "{pinged}");
    // The first ping was answered 503 and sent again; each carried the
    // client's token and only the auth_req_id.
    let received = pinged["received"].as_array().unwrap();
    assert_eq!(received.len(), 2, "{pinged}");
    assert_eq!(pinged["token_matches"], true, "{pinged}");
    for ping in received {
        assert_eq!(ping["path"], "/cb");
        assert_eq!(ping["content_type"], "application/json");
        assert_eq!(
            ping["body"],
            serde_json::json!({ "auth_req_id": pinged["auth_req_id"] })
        );
    }
    let claims = &pinged["claims"];
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        pinged["auth_req_id"]
    );
    let mut rp = rp_client(&server, &app.api_key).await;
    let device = device(&mut rp, &agent.device_id).await;
    verify_evidence(&claims["assent_evidence"], &device.public_key);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_mode_delivers_an_id_token_jose_verifies_and_pushes_a_denial_as_access_denied() {
    if !can_run("ciba") {
        return;
    }
    let Notified {
        db: _db,
        app,
        port,
        server,
        issuer,
        agent,
        daemon: _daemon,
    } = Notified::start("push", "EdDSA").await;
    let pushed = client(&[
        "push",
        &issuer,
        &app.id,
        &app.api_key,
        "alice",
        "EdDSA",
        "Sign in to Example Shop",
        &port,
    ])
    .await;
    assert_eq!(pushed["ok"], true, "{pushed}");
    assert_eq!(pushed["token_matches"], true, "{pushed}");
    assert_eq!(pushed["header"]["alg"], "EdDSA");
    assert_eq!(pushed["at_hash_matches"], true, "{pushed}");
    let claims = &pushed["claims"];
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        pushed["auth_req_id"]
    );
    assert_eq!(
        pushed["received"][0]["body"]["auth_req_id"],
        pushed["auth_req_id"]
    );
    let mut rp = rp_client(&server, &app.api_key).await;
    let device = device(&mut rp, &agent.device_id).await;
    verify_evidence(&claims["assent_evidence"], &device.public_key);

    let denier = EnrolledAgent::enroll(&server, &app, "bob").await;
    let _denying = denier.run(&server.url(), &["--policy", "deny"]);
    denier.wait_connected().await;
    let denied = client(&[
        "push",
        &issuer,
        &app.id,
        &app.api_key,
        "bob",
        "EdDSA",
        "Sign in",
        &port,
    ])
    .await;
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["error"], "access_denied", "{denied}");
    assert_eq!(
        denied["received"][0]["body"]["auth_req_id"],
        denied["auth_req_id"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auth_req_id_started_on_one_replica_is_answered_by_another() {
    if !can_run("ciba") {
        return;
    }
    let db = TestDb::create().await;
    let app = TestApp::create(&db, "Example Shop").await;
    let (first, issuer) = start(&db).await;
    // Behind one public URL in production: here both name the first's.
    let shared = issuer.clone();
    let (_second, other) = start_with(&db, |c| c.issuer = Some(shared)).await;
    let agent = EnrolledAgent::enroll(&first, &app, "alice").await;
    let _daemon = agent.run(&first.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let answered = client(&[
        "replica",
        &issuer,
        &app.id,
        &app.api_key,
        "alice",
        "RS256",
        "Sign in",
        &other,
    ])
    .await;
    assert_eq!(answered["ok"], true, "{answered}");
    assert_eq!(answered["claims"]["sub"], "alice");
    assert_eq!(answered["header"]["alg"], "RS256");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_provider_serves_https_with_the_grpc_ports_certificate_and_refuses_plaintext() {
    if !can_run("ciba") {
        return;
    }
    let authority = assent_tests::pki::Authority::new("Assent CIBA test CA");
    let (cert, key) = authority.issue("assent-server", false);
    let dir = assent_tests::scratch_dir("ciba-tls");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &authority.pem());
    let cert = write("server.pem", &cert);
    let key = write("server.key", &key);
    let db = TestDb::sqlite();
    let _app = TestApp::create(&db, "Example Shop").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let oidc = free_address();
    let config = ServerConfig {
        database_url: Some(db.url.clone()),
        listen: listener.local_addr().unwrap(),
        metrics_listen: None,
        drain_timeout_seconds: 1,
        oidc_listen: Some(oidc),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..ServerConfig::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(assent_server::run(config, listener, stop.clone()));
    let issuer = format!("https://{oidc}");
    let ca = ca.to_str().unwrap();
    let mut found = Value::Null;
    for _ in 0..50 {
        found = client_with(&["discover", &issuer], &[("NODE_EXTRA_CA_CERTS", ca)]).await;
        if found["metadata"]["issuer"] == issuer.as_str() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found["metadata"]["issuer"], issuer.as_str(), "{found}");
    assert_eq!(
        found["metadata"]["token_endpoint"],
        format!("{issuer}/token")
    );
    // Without the CA the client refuses the certificate; plain HTTP to the
    // TLS port gets no answer.
    let untrusted = client(&["discover", &issuer]).await;
    assert!(untrusted.get("metadata").is_none(), "{untrusted}");
    let plain = client(&["discover", &format!("http://{oidc}")]).await;
    assert!(plain.get("metadata").is_none(), "{plain}");
    stop.cancel();
    within(10, "the TLS server's stop", server)
        .await
        .unwrap()
        .unwrap();
}
