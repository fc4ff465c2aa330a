//! The SDK with several enrollments in one process: listed, each started as
//! its own device and answering its own pushes, one unenrolled (revoked on
//! the server at its own request; its running device hears the revocation),
//! one forgotten on the device only.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Mutex;

use std::sync::Arc;

use assent_device::{
    Answer, ConnectionState, Device, DeviceConfig, Error, Handler, KeyStore, KeyStoreError,
    Request, Withdrawn,
};
use assent_proto::v1::{
    CreatePushAuthenticationRequest, GetDeviceRequest, TransactionState, WaitTransactionRequest,
};
use assent_tests::{
    RpClient, TestApp, TestDb, TestServer, enrollment_code, rp_client, scratch_dir, within,
};
use tokio::sync::mpsc;

/// Accepts everything and reports connection changes.
struct Recorder {
    connections: Mutex<mpsc::UnboundedSender<ConnectionState>>,
}

impl Handler for Recorder {
    async fn confirm(&self, _request: Request, _withdrawn: Withdrawn) -> Answer {
        Answer::ACCEPT
    }

    fn on_connection(&self, state: &ConnectionState) {
        let _ = self.connections.lock().unwrap().send(state.clone());
    }
}

fn recorder() -> (Recorder, mpsc::UnboundedReceiver<ConnectionState>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        Recorder {
            connections: Mutex::new(sender),
        },
        receiver,
    )
}

async fn connected(states: &mut mpsc::UnboundedReceiver<ConnectionState>) {
    within(10, "the device to connect", async {
        loop {
            if let Some(ConnectionState::Connected { .. }) = states.recv().await {
                return;
            }
        }
    })
    .await;
}

async fn push_is_accepted(rp: &mut RpClient, user: &str) {
    let push = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: user.to_owned(),
            message: "Log in?".to_owned(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let settled = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: push.transaction_id,
            timeout_ms: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap();
    assert_eq!(settled.state(), TransactionState::Accepted, "{user}");
}

async fn is_revoked(rp: &mut RpClient, device_id: &str) -> bool {
    rp.get_device(GetDeviceRequest {
        device_id: device_id.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
    .device
    .unwrap()
    .revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_enrollments_are_listed_run_side_by_side_and_leave_one_by_one() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let root = scratch_dir("sdk-enrollments");
    let config = |name: &str| DeviceConfig::new(root.join(name), server.url());

    let alice = assent_device::enroll(
        &config("alice"),
        &enrollment_code(&mut rp, "alice").await,
        "laptop",
        false,
    )
    .await
    .unwrap();
    let bob = assent_device::enroll(
        &config("bob"),
        &enrollment_code(&mut rp, "bob").await,
        "phone",
        false,
    )
    .await
    .unwrap();
    let listed = assent_device::enrollments(&root).unwrap();
    let users: Vec<_> = listed.iter().map(|(_, p)| p.user_id.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(listed[0].1.device_id, alice.device_id);
    assert_eq!(listed[0].1.application_name, "Example Shop");

    // Both run in this process, each answering its own user's pushes.
    let (alice_handler, mut alice_states) = recorder();
    let mut alice_device = Device::start(config("alice"), alice_handler).unwrap();
    let (bob_handler, mut bob_states) = recorder();
    let bob_device = Device::start(config("bob"), bob_handler).unwrap();
    connected(&mut alice_states).await;
    connected(&mut bob_states).await;
    push_is_accepted(&mut rp, "alice").await;
    push_is_accepted(&mut rp, "bob").await;

    // Alice's enrollment leaves: revoked on the server at its own request,
    // gone from the device; her running device hears the revocation.
    assent_device::unenroll(&config("alice")).await.unwrap();
    assert!(is_revoked(&mut rp, &alice.device_id).await);
    let stopped = within(10, "the revoked device to stop", alice_device.stopped()).await;
    assert!(matches!(stopped, Err(Error::Revoked { .. })), "{stopped:?}");
    let listed = assent_device::enrollments(&root).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1.user_id, "bob");

    // Bob's is forgotten on the device only: the server still has it.
    bob_device.stop().await.unwrap();
    assent_device::forget(&config("bob")).unwrap();
    assert!(assent_device::enrollments(&root).unwrap().is_empty());
    assert!(!is_revoked(&mut rp, &bob.device_id).await);
    assert!(matches!(
        Device::start(config("bob"), recorder().0),
        Err(Error::NotEnrolled { .. })
    ));
    let _ = std::fs::remove_dir_all(root);
}

/// Keys in memory: what a host's platform keychain stands for.
#[derive(Debug, Default)]
struct InMemory(Mutex<std::collections::HashMap<String, [u8; 32]>>);

impl KeyStore for InMemory {
    fn store(&self, device_id: &str, seed: &[u8; 32]) -> Result<(), KeyStoreError> {
        self.0.lock().unwrap().insert(device_id.to_owned(), *seed);
        Ok(())
    }

    fn load(&self, device_id: &str) -> Result<Option<[u8; 32]>, KeyStoreError> {
        Ok(self.0.lock().unwrap().get(device_id).copied())
    }

    fn delete(&self, device_id: &str) -> Result<(), KeyStoreError> {
        self.0.lock().unwrap().remove(device_id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_store_holds_the_key_and_the_state_directory_does_not() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let root = scratch_dir("sdk-keystore");
    let keys = Arc::new(InMemory::default());
    let config = DeviceConfig::new(root.join("kiosk"), server.url()).with_key_store(keys.clone());
    let enrolled = assent_device::enroll(
        &config,
        &enrollment_code(&mut rp, "carol").await,
        "kiosk",
        false,
    )
    .await
    .unwrap();
    assert!(keys.load(&enrolled.device_id).unwrap().is_some());
    assert!(
        !root.join("kiosk/device.key").exists(),
        "no key file beside the profile"
    );
    let (handler, mut states) = recorder();
    let device = Device::start(config.clone(), handler).unwrap();
    connected(&mut states).await;
    push_is_accepted(&mut rp, "carol").await;
    device.stop().await.unwrap();
    // Without its key store the enrollment cannot start.
    let without = DeviceConfig::new(root.join("kiosk"), server.url());
    assert!(Device::start(without, recorder().0).is_err());
    assent_device::forget(&config).unwrap();
    assert!(keys.load(&enrolled.device_id).unwrap().is_none());
}
