//! The SDK guide's program (`device/examples/guide.rs`, printed verbatim in
//! `docs/sdk.md`) against a real server: it enrolls, completes an OTP login
//! handed in on its standard input, and a push login that arrives by
//! itself, answering both with its own handler.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;

use assent_proto::v1::{
    CreateOtpAuthenticationRequest, CreatePushAuthenticationRequest, TransactionState,
    WaitTransactionRequest,
};
use assent_tests::{
    RpClient, TestApp, TestDb, TestServer, binary, enrollment_code, rp_client, scratch_dir, within,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

#[test]
fn the_guide_prints_the_example_program_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let program = std::fs::read_to_string(root.join("device/examples/guide.rs")).unwrap();
    let guide = std::fs::read_to_string(root.join("docs/sdk.md")).unwrap();
    assert!(
        guide.contains(&format!("```rust\n{program}```")),
        "docs/sdk.md must show device/examples/guide.rs verbatim in a ```rust block"
    );
}

/// Reads the program's output until a line starts with `prefix`.
async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    line_with(lines, prefix, "").await
}

/// Reads the program's output until a line starts with `prefix` and
/// contains `needle`.
async fn line_with(
    lines: &mut Lines<BufReader<ChildStdout>>,
    prefix: &str,
    needle: &str,
) -> String {
    within(20, prefix, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("the program ended before printing {prefix:?}"));
            if line.starts_with(prefix) && line.contains(needle) {
                return line;
            }
        }
    })
    .await
}

async fn settled(rp: &mut RpClient, id: &str) -> assent_proto::v1::Transaction {
    rp.wait_transaction(WaitTransactionRequest {
        transaction_id: id.to_owned(),
        timeout_ms: 10_000,
    })
    .await
    .unwrap()
    .into_inner()
    .transaction
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_program_completes_an_otp_login_and_a_push_login() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let code = enrollment_code(&mut rp, "alice").await;
    let state_dir = scratch_dir("guide");
    let mut program = Command::new(binary("examples/guide"))
        .arg(server.url())
        .arg(state_dir.join("device"))
        .arg(&code)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = program.stdin.take().unwrap();
    let mut lines = BufReader::new(program.stdout.take().unwrap()).lines();
    let enrolled = line_starting(&mut lines, "enrolled:").await;
    assert!(enrolled.contains("Example Shop"), "{enrolled}");
    line_starting(&mut lines, "connected:").await;

    // An OTP login: the page's OTP handed in, the handler asked, success.
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in from Firefox?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stdin
        .write_all(format!("{}\n", created.otp).as_bytes())
        .await
        .unwrap();
    let asked = line_starting(&mut lines, "confirm:").await;
    assert!(asked.contains("Log in from Firefox?"), "{asked}");
    let success = line_starting(&mut lines, "success:").await;
    assert!(success.contains(&created.transaction_id), "{success}");
    let otp_login = settled(&mut rp, &created.transaction_id).await;
    assert_eq!(otp_login.state(), TransactionState::Accepted);
    assert_eq!(otp_login.user_id, "alice");

    // A push login: it arrives by itself and the same handler accepts it.
    let push = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "alice".to_owned(),
            message: "Log in at the kiosk?".to_owned(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    line_with(&mut lines, "confirm:", "Log in at the kiosk?").await;
    let decided = line_with(&mut lines, "decided:", &push.transaction_id).await;
    assert!(decided.contains("ACCEPTED"), "{decided}");
    let push_login = settled(&mut rp, &push.transaction_id).await;
    assert_eq!(push_login.state(), TransactionState::Accepted);

    // The end of input stops it cleanly.
    drop(stdin);
    let status = within(10, "the program to stop", program.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(state_dir);
}
