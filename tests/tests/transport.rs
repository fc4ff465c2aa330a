//! Hostile clients at the transport: connections that never speak, too many
//! connections from one address, a stream whose window never opens, an
//! oversized message on an authenticated stream. Each is bounded and the
//! server keeps serving everyone else.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use assent_proto::v1::{CancelTransactionRequest, CreateOtpAuthenticationRequest, agent_message};
use assent_tests::{
    TcpTap, TestApp, TestDb, TestDevice, TestServer, is_closed, rp_client, until_disconnected,
    within,
};
use tokio::net::TcpStream;
use tonic::Code;

/// Raises the open-file limit for tests that hold thousands of sockets.
fn allow_many_sockets() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

async fn connections_that_never_speak_are_closed_and_others_are_served(db: TestDb) {
    const SILENT: usize = 2000;
    allow_many_sockets();
    let server = TestServer::start_with(&db, |config| {
        config.handshake_timeout_ms = 1000;
        config.max_connections_per_peer = 4096;
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let opened = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // Meanwhile a normal client is served.
    let mut rp = rp_client(&server, &app.api_key).await;
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .expect("a normal call while silent connections are open");
    let closes = futures::future::join_all(
        silent
            .iter_mut()
            .map(|stream| is_closed(stream, Duration::from_secs(5))),
    )
    .await;
    let closed = closes.iter().filter(|&&c| c).count();
    assert_eq!(closed, SILENT, "every silent connection is closed");
    assert!(
        opened.elapsed() < Duration::from_secs(6),
        "closed within the handshake timeout (plus the time to open them)"
    );
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .expect("the normal client is still served");
}

async fn connections_beyond_the_limit_per_address_are_closed_at_once(db: TestDb) {
    let server = TestServer::start_with(&db, |config| config.max_connections_per_peer = 3).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let mut fourth = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        is_closed(&mut fourth, Duration::from_secs(2)).await,
        "a fourth connection from one address is closed"
    );
    for stream in &mut held {
        assert!(!is_closed(stream, Duration::from_millis(100)).await);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rp = rp_client(&server, &app.api_key).await;
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .expect("served once the address is under its limit");
}

async fn a_stream_whose_window_never_opens_is_reset_and_its_connection_kept(db: TestDb) {
    const SCANNED: usize = 150;
    let server = TestServer::start_with(&db, |config| {
        config.stream_send_timeout_ms = 500;
        config.create_burst = 10_000;
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let tap = TcpTap::start(server.addr).await;
    let channel = tap.slow_reader_channel(1024).await;
    let mut stream = device.connect_on(channel).await.expect("connect");
    let mut ids = Vec::new();
    for _ in 0..SCANNED {
        let created = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stream.scan(&created.otp).await;
        ids.push(created.transaction_id);
    }
    // The device stops reading; the server has more and more to tell it.
    let stalled = Instant::now();
    for id in ids {
        rp.cancel_transaction(CancelTransactionRequest { transaction_id: id })
            .await
            .expect("cancel");
    }
    until_disconnected(&mut rp, &device.device_id, 5).await;
    assert!(stalled.elapsed() < Duration::from_secs(5));
    // Only the stream was reset: the connection is still open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tap.server_closes().is_empty(),
        "the server reset the stream, not the connection"
    );
    drop(stream);
}

async fn an_oversized_message_on_an_authenticated_stream_ends_it_with_resource_exhausted(
    db: TestDb,
) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    stream
        .send(agent_message::Body::SubmitOtp(
            assent_proto::v1::SubmitOtp {
                request_id: 1,
                otp: "A".repeat(70 * 1024),
            },
        ))
        .await;
    let ended = within(5, "the stream to end", async {
        loop {
            match stream.next().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    let status = ended.expect_err("an error status, not OK");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

async fn case_44_a_device_stream_that_floods_is_ended_alone(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let flooder = TestDevice::enroll(&server, &app, "alice").await;
    let neighbour = TestDevice::enroll(&server, &app, "bob").await;
    let shared = server.channel().await;
    let mut flood = flooder.connect_on(shared.clone()).await.expect("connect");
    let mut calm = neighbour.connect_on(shared).await.expect("connect");
    // Far more messages than a person's logins need, as fast as possible.
    let hello = hello_for(&flooder);
    for _ in 0..50_000 {
        if !flood.offer(hello.clone()).await {
            break;
        }
    }
    let ended = within(10, "the flooding stream to end", async {
        loop {
            match flood.next().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    let status = ended.expect_err("an error status");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("messages"), "{status:?}");
    // The neighbour on the same connection still answers.
    calm.send(hello_for(&neighbour)).await;
    assert!(matches!(
        within(5, "the neighbour's answer", calm.next()).await,
        Ok(Some(assent_proto::v1::server_message::Body::Rejection(_)))
    ));
}

/// A second hello: answered with a rejection that keeps the stream open.
fn hello_for(device: &TestDevice) -> agent_message::Body {
    agent_message::Body::Hello(assent_proto::v1::Hello {
        device_id: device.device_id.clone(),
        signature: vec![0; 64],
    })
}

assent_tests::on_both_engines!(
    case_44_a_device_stream_that_floods_is_ended_alone,
    connections_that_never_speak_are_closed_and_others_are_served,
    connections_beyond_the_limit_per_address_are_closed_at_once,
    a_stream_whose_window_never_opens_is_reset_and_its_connection_kept,
    an_oversized_message_on_an_authenticated_stream_ends_it_with_resource_exhausted,
);
