//! The event stream: resuming from a cursor while events are produced loses
//! nothing and repeats nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use assent_proto::v1::{CreateOtpAuthenticationRequest, SubscribeRequest};
use assent_tests::{TestApp, TestDb, TestServer, rp_client, rp_client_at, within};
use tonic::Code;

const TRANSACTIONS: usize = 300;

async fn subscribe_resumed_from_a_cursor_while_events_are_produced_has_no_gap_and_no_duplicate(
    db: TestDb,
) {
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Shop").await;

    // Producers: two concurrent writers creating transactions.
    let producer = |offset: usize| {
        let url = server.url();
        let key = app.api_key.clone();
        tokio::spawn(async move {
            let mut rp = rp_client_at(&url, &key).await;
            let mut ids = Vec::new();
            for i in 0..TRANSACTIONS / 2 {
                let created = rp
                    .create_otp_authentication(CreateOtpAuthenticationRequest {
                        message: format!("Login {}", offset + i),
                        ttl_seconds: 60,
                        ..Default::default()
                    })
                    .await
                    .expect("create")
                    .into_inner();
                ids.push(created.transaction_id);
            }
            ids
        })
    };
    let producers = [producer(0), producer(TRANSACTIONS / 2)];

    // The subscriber reads a while, drops its stream, and resumes from its
    // last cursor, several times, while the producers keep writing.
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut seen_cursors = Vec::new();
    let mut seen_created = BTreeSet::new();
    let mut cursor = 0u64;
    within(60, "all created events", async {
        while seen_created.len() < TRANSACTIONS {
            let mut stream = rp
                .subscribe(SubscribeRequest {
                    after_cursor: cursor,
                    ..Default::default()
                })
                .await
                .expect("subscribe")
                .into_inner();
            for _ in 0..37 {
                let Some(event) = stream.message().await.expect("stream") else {
                    break;
                };
                assert!(event.cursor > cursor, "cursor went backwards or repeated");
                cursor = event.cursor;
                seen_cursors.push(event.cursor);
                if event.r#type == "transaction.created" {
                    assert!(
                        seen_created.insert(event.transaction_id.clone()),
                        "duplicate event for {}",
                        event.transaction_id
                    );
                }
                if seen_created.len() == TRANSACTIONS {
                    break;
                }
            }
        }
    })
    .await;
    let mut created_ids = BTreeSet::new();
    for producer in producers {
        created_ids.extend(producer.await.expect("producer"));
    }
    assert_eq!(
        seen_created, created_ids,
        "every created transaction was seen once"
    );
    assert!(seen_cursors.windows(2).all(|w| w[0] < w[1]));
}

async fn subscribe_from_a_purged_cursor_is_out_of_range(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    for _ in 0..2 {
        rp.create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .expect("create");
    }
    // Retention of zero seconds: everything older than now is purged.
    let store = db.store().await;
    store
        .purge(chrono::Utc::now() + chrono::TimeDelta::seconds(1))
        .await
        .expect("purge");
    // Cursor 0 means "everything retained" and still works.
    let mut from_start = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribing from the start is always allowed")
        .into_inner();
    let marker = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "After the purge".to_owned(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let first = within(10, "the first retained event", from_start.message())
        .await
        .expect("stream")
        .expect("an event");
    assert_eq!(first.transaction_id, marker.transaction_id);
    // Resuming after the first event: the second one is gone.
    let status = rp
        .subscribe(SubscribeRequest {
            after_cursor: 1,
            ..Default::default()
        })
        .await
        .expect_err("resuming before the purge horizon must fail");
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(status.message().contains("retention"));
}

async fn open_streams_per_key_are_capped(db: TestDb) {
    let server = TestServer::start_with(&db, |config| config.max_subscribers_per_key = 2).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let first = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("first");
    let second = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("second");
    let third = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect_err("a third stream of the key");
    assert_eq!(third.code(), tonic::Code::ResourceExhausted);
    drop(first);
    // The slot is given back once the stream's task notices it is gone.
    assent_tests::within(5, "a free slot", async {
        loop {
            if rp
                .subscribe(SubscribeRequest {
                    after_cursor: 0,
                    ..Default::default()
                })
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    drop(second);
}

assent_tests::on_both_engines!(
    open_streams_per_key_are_capped,
    subscribe_resumed_from_a_cursor_while_events_are_produced_has_no_gap_and_no_duplicate,
    subscribe_from_a_purged_cursor_is_out_of_range,
);
