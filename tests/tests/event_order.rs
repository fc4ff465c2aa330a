//! Every event of an application reaches a subscriber exactly once, in
//! cursor order, with no gap — while many writers on several replicas
//! append concurrently and the subscriber keeps resuming from its last
//! cursor.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use assent_proto::v1::{
    CancelTransactionRequest, CreateOtpAuthenticationRequest, SubscribeRequest,
};
use assent_tests::{TestApp, TestDb, TestServer, rp_client, within};

const WRITERS: usize = 16;
const PER_WRITER: usize = 40;

async fn a_resuming_subscriber_sees_every_event_once_in_order_under_concurrent_writers(db: TestDb) {
    let burst = |config: &mut assent_server::ServerConfig| config.create_burst = 100_000;
    let a = TestServer::start_with(&db, burst).await;
    // Two replicas on PostgreSQL; the embedded engine serves one process.
    let b = if db.is_sqlite() {
        None
    } else {
        Some(TestServer::start_with(&db, burst).await)
    };
    let app = TestApp::create(&db, "Shop").await;
    let mut writers = Vec::new();
    for n in 0..WRITERS {
        let server = if n % 2 == 1 {
            b.as_ref().unwrap_or(&a)
        } else {
            &a
        };
        let mut rp = rp_client(server, &app.api_key).await;
        writers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for i in 0..PER_WRITER {
                let id = rp
                    .create_otp_authentication(CreateOtpAuthenticationRequest {
                        message: "Log in?".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("create")
                    .into_inner()
                    .transaction_id;
                // Every third one is also cancelled: two events, one transaction.
                if i % 3 == 0 {
                    rp.cancel_transaction(CancelTransactionRequest {
                        transaction_id: id.clone(),
                    })
                    .await
                    .expect("cancel");
                }
                created.push((id, i % 3 == 0));
            }
            created
        }));
    }
    let expected_events = WRITERS * PER_WRITER + WRITERS * PER_WRITER.div_ceil(3);
    // Streams that stay open beside the resuming one share the server's
    // reader of the application: each must see everything too.
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut rp = rp_client(&a, &app.api_key).await;
        watchers.push(tokio::spawn(async move {
            let mut stream = rp
                .subscribe(SubscribeRequest {
                    after_cursor: 0,
                    ..Default::default()
                })
                .await
                .expect("subscribe")
                .into_inner();
            let mut cursors = Vec::new();
            while cursors.len() < expected_events {
                let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("an event within 10 s")
                    .expect("stream")
                    .expect("open");
                cursors.push(event.cursor);
            }
            cursors
        }));
    }
    let mut rp = rp_client(&a, &app.api_key).await;
    let mut seen: Vec<(u64, String, String)> = Vec::new();
    let mut cursor = 0;
    within(60, "every event", async {
        while seen.len() < expected_events {
            // Resume from the last cursor after a handful of events.
            let mut stream = rp
                .subscribe(SubscribeRequest {
                    after_cursor: cursor,
                    ..Default::default()
                })
                .await
                .expect("subscribe")
                .into_inner();
            for _ in 0..25 {
                let Ok(Ok(Some(event))) =
                    tokio::time::timeout(Duration::from_secs(5), stream.message()).await
                else {
                    break;
                };
                assert!(
                    event.cursor > cursor,
                    "cursor went back: {} after {cursor}",
                    event.cursor
                );
                cursor = event.cursor;
                seen.push((event.cursor, event.transaction_id, event.r#type));
                if seen.len() == expected_events {
                    break;
                }
            }
        }
    })
    .await;
    let mut written = BTreeSet::new();
    for writer in writers {
        for (id, cancelled) in writer.await.unwrap() {
            written.insert((id.clone(), "transaction.created".to_owned()));
            if cancelled {
                written.insert((id, "transaction.cancelled".to_owned()));
            }
        }
    }
    let delivered: Vec<(String, String)> = seen
        .iter()
        .map(|(_, id, kind)| (id.clone(), kind.clone()))
        .collect();
    let cursors: Vec<u64> = seen.iter().map(|(cursor, _, _)| *cursor).collect();
    for watcher in watchers {
        assert_eq!(
            watcher.await.unwrap(),
            cursors,
            "a long-lived stream saw the same"
        );
    }
    let unique: BTreeSet<_> = delivered.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "an event was delivered twice"
    );
    assert_eq!(unique, written, "every event, and nothing else");
    // Nothing more arrives: no duplicate after the last.
    let mut stream = rp
        .subscribe(SubscribeRequest {
            after_cursor: cursor,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let more = tokio::time::timeout(Duration::from_millis(1500), stream.message()).await;
    assert!(more.is_err(), "an event after the last: {more:?}");
}

assent_tests::on_both_engines!(
    a_resuming_subscriber_sees_every_event_once_in_order_under_concurrent_writers
);
