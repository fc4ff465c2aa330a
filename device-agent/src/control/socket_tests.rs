//! The control socket end to end, with a fake device answering commands.

use std::time::Duration;

use assent_device::otp::Otp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::AgentError;

/// What the fake device is asked.
#[derive(Debug)]
enum ControlCommand {
    SubmitOtp {
        otp: Otp,
        reply: oneshot::Sender<OtpOutcome>,
    },
    Status {
        reply: oneshot::Sender<DaemonStatus>,
    },
}

/// A device that forwards every request to the test.
#[derive(Clone)]
struct FakeTarget(mpsc::Sender<ControlCommand>);

impl Target for FakeTarget {
    async fn submit(&self, otp: Otp) -> OtpOutcome {
        let (reply, outcome) = oneshot::channel();
        let _ = self.0.send(ControlCommand::SubmitOtp { otp, reply }).await;
        outcome
            .await
            .unwrap_or_else(|_| OtpOutcome::failed(None, "gone"))
    }

    async fn status(&self) -> Option<DaemonStatus> {
        let (reply, status) = oneshot::channel();
        self.0.send(ControlCommand::Status { reply }).await.ok()?;
        status.await.ok()
    }
}

fn finished(state: &str, reason: &str) -> OtpOutcome {
    OtpOutcome {
        ok: state == "ACCEPTED",
        state: Some(state.to_owned()),
        transaction_id: Some(TX.to_owned()),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        error: None,
    }
}

const TX: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn otp_text() -> String {
    let mut bytes = uuid::Uuid::parse_str(TX).unwrap().as_bytes().to_vec();
    bytes.extend([3u8; 32]);
    STANDARD.encode(bytes)
}

struct Harness {
    dir: tempfile::TempDir,
    commands: mpsc::Receiver<ControlCommand>,
    stop: CancellationToken,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let listener = bind(&socket_path(dir.path()), None).await.unwrap();
    let (sender, commands) = mpsc::channel(8);
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, FakeTarget(sender), stop.clone()));
    Harness {
        dir,
        commands,
        stop,
    }
}

async fn next_otp(
    commands: &mut mpsc::Receiver<ControlCommand>,
) -> (Otp, oneshot::Sender<OtpOutcome>) {
    match tokio::time::timeout(Duration::from_secs(5), commands.recv()).await {
        Ok(Some(ControlCommand::SubmitOtp { otp, reply })) => (otp, reply),
        other => panic!("expected an OTP command, got {other:?}"),
    }
}

#[tokio::test]
async fn an_otp_round_trips_through_the_socket() {
    let mut harness = harness().await;
    let state_dir = harness.dir.path().to_owned();
    let caller =
        tokio::spawn(
            async move { submit_otp(&state_dir, &otp_text(), Duration::from_secs(5)).await },
        );
    let (otp, reply) = next_otp(&mut harness.commands).await;
    assert_eq!(otp.transaction_id(), TX);
    reply.send(finished("ACCEPTED", "")).unwrap();
    let outcome = caller.await.unwrap().unwrap();
    assert!(outcome.ok);
    assert_eq!(outcome.transaction_id.as_deref(), Some(TX));
    harness.stop.cancel();
}

#[tokio::test]
async fn a_malformed_otp_is_answered_without_the_event_loop() {
    let mut harness = harness().await;
    let outcome = submit_otp(harness.dir.path(), "garbage", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome.error.as_deref(), Some("invalid OTP (malformed)"));
    assert!(harness.commands.try_recv().is_err());
}

#[tokio::test]
async fn a_caller_that_half_closes_still_gets_its_answer() {
    let mut harness = harness().await;
    let mut stream = UnixStream::connect(socket_path(harness.dir.path()))
        .await
        .unwrap();
    stream
        .write_all(format!("{{\"otp\":\"{}\"}}\n", otp_text()).as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (_, reply) = next_otp(&mut harness.commands).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    reply.send(finished("DENIED", "not_me")).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.unwrap();
    let outcome: OtpOutcome = serde_json::from_str(&line).unwrap();
    assert_eq!(outcome.reason.as_deref(), Some("not_me"));
}

#[tokio::test]
async fn a_caller_that_hangs_up_releases_its_waiter() {
    let mut harness = harness().await;
    let mut stream = UnixStream::connect(socket_path(harness.dir.path()))
        .await
        .unwrap();
    stream
        .write_all(format!("{{\"otp\":\"{}\"}}\n", otp_text()).as_bytes())
        .await
        .unwrap();
    let (_, mut reply) = next_otp(&mut harness.commands).await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), reply.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn status_is_forwarded_and_unknown_requests_are_refused() {
    let mut harness = harness().await;
    let state_dir = harness.dir.path().to_owned();
    let caller =
        tokio::spawn(async move { daemon_status(&state_dir, Duration::from_secs(5)).await });
    let Some(ControlCommand::Status { reply }) = harness.commands.recv().await else {
        panic!("expected a status command");
    };
    let status = DaemonStatus {
        ok: true,
        connected: true,
        device_id: "d".into(),
        user_id: "u".into(),
        application_name: "a".into(),
        server: "s".into(),
        policy: "deny".into(),
    };
    reply.send(status.clone()).unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), status);

    let mut stream = UnixStream::connect(socket_path(harness.dir.path()))
        .await
        .unwrap();
    stream.write_all(b"{\"hello\":1}\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.unwrap();
    assert!(line.contains("unknown request"), "{line}");
}

#[tokio::test]
async fn a_live_daemon_keeps_its_socket_and_a_stale_file_is_replaced() {
    let harness = harness().await;
    let path = socket_path(harness.dir.path());
    assert!(matches!(
        bind(&path, None).await,
        Err(AgentError::AlreadyRunning { .. })
    ));
    harness.stop.cancel();
    // Let the server drop its listener; the file stays behind, as after a crash.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(path.exists());
    assert!(bind(&path, None).await.is_ok());
}

#[tokio::test]
async fn no_daemon_means_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let error = submit_otp(dir.path(), &otp_text(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::DaemonNotRunning { .. }));
}

#[tokio::test]
async fn the_default_socket_is_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let harness = harness().await;
    let mode = std::fs::metadata(socket_path(harness.dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_group_socket_is_0660_with_its_group_in_a_directory_made_for_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    // A group this process may give files to: its own.
    let gid = std::fs::metadata(dir.path()).unwrap().gid();
    let group = SocketGroup::resolve(&gid.to_string()).unwrap();
    let path = dir.path().join("run/assent").join("agent.sock");
    let listener = bind(&path, Some(&group)).await.unwrap();
    let socket = std::fs::metadata(&path).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o660);
    assert_eq!(socket.gid(), gid);
    let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o750);
    assert_eq!(parent.gid(), gid);
    // And it is the socket callers reach.
    let (sender, mut commands) = mpsc::channel(8);
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, FakeTarget(sender), stop.clone()));
    let caller = tokio::spawn({
        let path = path.clone();
        async move { daemon_status_at(&path, Duration::from_secs(5)).await }
    });
    let Some(ControlCommand::Status { reply }) = commands.recv().await else {
        panic!("expected a status command");
    };
    let status = DaemonStatus {
        ok: true,
        connected: false,
        device_id: "d".into(),
        user_id: "u".into(),
        application_name: "a".into(),
        server: "s".into(),
        policy: "deny".into(),
    };
    reply.send(status.clone()).unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), status);
    stop.cancel();
}
