//! The OpenID CIBA provider end to end (docs/ciba.md), driven by a real
//! relying-party library: panva's `openid-client` with `jose`
//! (tests/ciba-client/ciba.mjs), against a server started with
//! `oidc_listen`, and a real `assent-agent` that accepts or denies.
//! Discovery, a poll-mode login whose ID token verifies against the JWKS
//! and carries the device's own signature, a denial, `slow_down`, and
//! `assent-server app ciba`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
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

/// A free loopback address for the OIDC port (the issuer names it).
fn free_address() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// A server with the CIBA provider on; returns it and the issuer URL.
async fn start(db: &TestDb) -> (TestServer, String) {
    let oidc = free_address();
    let server = TestServer::start_with(db, |config: &mut ServerConfig| {
        config.oidc_listen = Some(oidc);
    })
    .await;
    (server, format!("http://{oidc}"))
}

/// Runs `node ciba.mjs ARGS…` and parses its one JSON line.
async fn client(args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ciba-client/ciba.mjs");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = within(60, "the CIBA client", async move {
        tokio::task::spawn_blocking(move || Command::new("node").arg(script).args(args).output())
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
