//! API keys have a life: an application holds two keys while it rotates,
//! and a revoked key stops working at once, on every replica, and ends the
//! event streams opened with it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use assent_proto::v1::{ListDevicesRequest, SubscribeRequest};
use assent_server::domain::ApplicationId;
use assent_tests::{TestApp, TestDb, TestServer, rp_client, within};
use tonic::Code;

async fn a_key_can_be_rotated_and_a_revoked_key_stops_at_once(db: TestDb) {
    let server = TestServer::start(&db).await;
    // A second replica on the same database, where there is one to share.
    let other = if db.is_sqlite() {
        None
    } else {
        Some(TestServer::start(&db).await)
    };
    let app = TestApp::create(&db, "Shop").await;
    let app_id = ApplicationId::parse(&app.id).unwrap();
    let store = db.store().await;
    let (new_id, new_key) = assent_server::admin::add_api_key(store.as_ref(), app_id)
        .await
        .expect("add a key");
    let mut old = rp_client(&server, &app.api_key).await;
    let mut new = rp_client(&server, &new_key).await;
    for client in [&mut old, &mut new] {
        client
            .list_devices(ListDevicesRequest::default())
            .await
            .expect("both keys work during the rotation");
    }
    let mut stream = old
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe with the old key")
        .into_inner();

    let old_id = assent_server::admin::key_id(&app.api_key).unwrap();
    assert_ne!(old_id, new_id);
    assent_server::admin::revoke_api_key(store.as_ref(), app_id, old_id)
        .await
        .expect("revoke the old key");
    let revoked_at = Instant::now();
    // Keys are trusted for at most half a second once read: a revoked key
    // is refused within a second on every replica.
    let refused_within = |mut client: assent_tests::RpClient| async move {
        loop {
            match client.list_devices(ListDevicesRequest::default()).await {
                Err(status) if status.code() == Code::Unauthenticated => break,
                Err(status) => panic!("unexpected {status:?}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "still accepted"
            );
        }
    };
    refused_within(old.clone()).await;
    if let Some(other) = &other {
        refused_within(rp_client(other, &app.api_key).await).await;
        rp_client(other, &new_key)
            .await
            .list_devices(ListDevicesRequest::default())
            .await
            .expect("the new key works on the other replica");
    }
    new.list_devices(ListDevicesRequest::default())
        .await
        .expect("the new key still works");
    let ended = within(3, "the old key's stream to end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert_eq!(
        ended.expect_err("an error, not a clean end").code(),
        Code::Unauthenticated
    );
    assert!(
        revoked_at.elapsed() < Duration::from_millis(1500),
        "the stream ended only after {:?}",
        revoked_at.elapsed()
    );
    let keys = store.list_api_keys(app_id).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .any(|k| k.id == old_id && k.revoked_at.is_some())
    );
    assert!(
        keys.iter()
            .any(|k| k.id == new_id && k.revoked_at.is_none())
    );
    let again = assent_server::admin::revoke_api_key(store.as_ref(), app_id, old_id).await;
    assert!(again.is_err(), "a key is revoked once");
}

assent_tests::on_both_engines!(a_key_can_be_rotated_and_a_revoked_key_stops_at_once);
