//! HTTP/2 attacks at the gRPC port, frame by frame (catalogue cases #42,
//! #45, #46, #47, #48): each test sends what a hostile client would, asserts
//! what becomes of the attacking connection within a bounded time, and that
//! a normal client on its own connection is served meanwhile.
//!
//! Frames are written by hand ([`assent_tests::raw_http2`]), so each attack
//! is exactly the bytes it names. Where a case needs a well-behaved client
//! that reads responses (#42, the 431 of #46), the `h2` crate is that
//! client. The transport is the same on both engines, so SQLite serves.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use assent_proto::v1::CreateOtpAuthenticationRequest;
use assent_server::ServerConfig;
use assent_tests::harness::rp_client_on;
use assent_tests::raw_http2::{
    Attacker, CANCEL, COMPRESSION_ERROR, CONTINUATION, END_HEADERS, ENHANCE_YOUR_CALM, HEADERS,
    PING, RST_STREAM, frame, literal, open, request_block,
};
use assent_tests::{RpClient, TestApp, TestDb, TestServer, rp_client, within};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CALL: &str = "/assent.v1.RelyingPartyService/CreateOtpAuthentication";

/// A normal client's call on its own connection is answered within 5 s.
async fn assert_served(rp: &mut RpClient) {
    within(
        5,
        "a normal client's call",
        rp.create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        }),
    )
    .await
    .expect("a normal client is served");
}

/// A server with `adjust`ed settings, an application and a connected
/// normal client.
async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> (TestDb, TestServer, TestApp, RpClient) {
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, adjust).await;
    let app = TestApp::create(&db, "Shop").await;
    let rp = rp_client(&server, &app.api_key).await;
    (db, server, app, rp)
}

/// A well-behaved `h2` client on its own connection.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A `CreateOtpAuthentication` call carrying `message` (whatever its bytes)
/// in one gRPC frame, with `extra` headers: the HTTP status and the
/// `grpc-status` (from the headers of a trailers-only response, or the
/// trailers).
async fn call(
    client: &h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    api_key: &str,
    extra: &[(String, String)],
    message: &[u8],
) -> (u16, Option<String>) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{CALL}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {api_key}"));
    for (name, value) in extra {
        request = request.header(name, value);
    }
    let mut client = client.clone().ready().await.unwrap();
    let (response, mut body) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    // A refused stream may be reset before its body goes out.
    let _ = body.send_data(Bytes::from(framed), true);
    let response = within(5, "the response", response).await.unwrap();
    let status = response.status().as_u16();
    let header = |map: &http::HeaderMap| {
        map.get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    if let Some(grpc) = header(response.headers()) {
        return (status, Some(grpc));
    }
    let mut body = response.into_body();
    within(5, "the response body", async {
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    })
    .await;
    let trailers = within(5, "the trailers", body.trailers()).await;
    (status, trailers.ok().flatten().as_ref().and_then(header))
}

/// `CreateOtpAuthenticationRequest { message: "Log in?" }`, encoded.
const WELL_FORMED: &[u8] = b"\x0a\x07Log in?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_42_malformed_protobuf_is_internal_and_the_connection_stays_usable() {
    let (_db, server, app, mut rp) = start(|_| {}).await;
    let client = h2_client(server.addr).await;
    let malformed: [(&str, &[u8]); 4] = [
        // Field 1 is a string (wire type 2), sent as fixed32 (wire type 5).
        ("a field with a wrong wire type", b"\x0d\x01\x02\x03\x04"),
        ("a truncated varint", b"\x10\xff"),
        ("a length past the end", b"\x0a\x20Lo"),
        ("a string that is not UTF-8", b"\x0a\x01\xff"),
    ];
    for (what, message) in malformed {
        let (status, grpc) = call(&client, server.addr, &app.api_key, &[], message).await;
        assert_eq!(status, 200, "{what}: a gRPC answer, not an HTTP error");
        // INTERNAL: gRPC's code for a request that does not parse
        // (statuscodes.md, "Error parsing request proto"); never OK.
        assert_eq!(grpc.as_deref(), Some("13"), "{what}");
        assert_served(&mut rp).await;
    }
    let (_, grpc) = call(&client, server.addr, &app.api_key, &[], WELL_FORMED).await;
    assert_eq!(
        grpc.as_deref(),
        Some("0"),
        "the same connection serves a good call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_45_rapid_reset_ends_the_connection_with_enhance_your_calm() {
    const PAIRS: u32 = 10_000;
    const BATCH: u32 = 50;
    let (_db, server, app, mut rp) = start(|_| {}).await;
    let block = request_block(server.addr, CALL, &app.api_key);
    let mut attacker = Attacker::connect(server.addr).await;
    let started = Instant::now();
    let mut sent = 0;
    while sent < PAIRS && !attacker.has_ended() && started.elapsed() < Duration::from_secs(10) {
        let mut batch = Vec::new();
        for stream in (sent..sent + BATCH).map(|i| 2 * i + 1) {
            batch.extend(frame(HEADERS, END_HEADERS, stream, &block));
            batch.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        }
        if !attacker.send(&batch).await {
            break;
        }
        sent += BATCH;
        // A pause between batches, so the pairs counted before the GOAWAY
        // are about the pairs the server read.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = attacker
        .ended_within(Duration::from_secs(5))
        .await
        .expect("the server ends a rapid-reset connection");
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert!(
        sent <= PAIRS / 10,
        "ended after {sent} of {PAIRS} HEADERS+RST_STREAM pairs"
    );
    assert_served(&mut rp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_46_a_continuation_flood_is_cut_off_at_the_header_list_limit() {
    const FRAMES: usize = 2_000;
    const VALUE: usize = 1_000;
    let (_db, server, app, mut rp) = start(|_| {}).await;
    let mut attacker = Attacker::connect(server.addr).await;
    let block = request_block(server.addr, CALL, &app.api_key);
    assert!(attacker.send(&frame(HEADERS, 0, 1, &block)).await);
    let mut sent = 0;
    let started = Instant::now();
    while sent < FRAMES && !attacker.has_ended() && started.elapsed() < Duration::from_secs(10) {
        let mut field = Vec::new();
        literal(&mut field, &format!("x-flood-{sent}"), &[b'a'; VALUE]);
        if !attacker.send(&frame(CONTINUATION, 0, 1, &field)).await {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        if sent % 8 == 0 {
            assert_served(&mut rp).await;
        }
    }
    let seen = attacker
        .ended_within(Duration::from_secs(5))
        .await
        .expect("the server ends a CONTINUATION flood");
    assert!(
        matches!(seen.goaway, Some(ENHANCE_YOUR_CALM | COMPRESSION_ERROR)),
        "{seen:?}"
    );
    // The header list limit is 16 KiB: the flood ends at the latest a few
    // frames past it, long before the 2 MB it would have sent.
    let flooded = sent * (VALUE + 16);
    assert!(
        flooded <= 32 * 1024,
        "ended after {sent} CONTINUATION frames ({flooded} bytes)"
    );
    assert_served(&mut rp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_46_a_header_block_over_the_limit_is_refused_with_431_and_the_connection_kept() {
    let (_db, server, app, mut rp) = start(|_| {}).await;
    let client = h2_client(server.addr).await;
    // 24 fields of 1 000 bytes: about 24 KiB, over the 16 KiB limit.
    let padding: Vec<(String, String)> = (0..24)
        .map(|i| (format!("x-pad-{i}"), "p".repeat(1_000)))
        .collect();
    let (status, grpc) = call(&client, server.addr, &app.api_key, &padding, WELL_FORMED).await;
    assert_eq!(status, 431, "refused: Request Header Fields Too Large");
    assert_eq!(grpc, None, "no handler ran");
    assert_served(&mut rp).await;
    // Only that stream was refused: the connection carries the next call.
    let (status, grpc) = call(&client, server.addr, &app.api_key, &[], WELL_FORMED).await;
    assert_eq!((status, grpc.as_deref()), (200, Some("0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_47_a_ping_flood_that_never_reads_is_held_back_and_closed() {
    const BATCHES: usize = 300;
    const PER_BATCH: usize = 10_000;
    let (_db, server, _app, mut rp) = start(|config| config.handshake_timeout_ms = 2_000).await;
    let mut stream = open(server.addr, Some(4 * 1024)).await;
    let batch = frame(PING, 0, 0, b"pingpong").repeat(PER_BATCH);
    let started = Instant::now();
    let mut sent = 0;
    let mut is_held_back = false;
    let mut is_closed = false;
    for _ in 0..BATCHES {
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.write_all(&batch)).await {
            Ok(Ok(())) => sent += PER_BATCH,
            Ok(Err(_)) => {
                is_closed = true;
                break;
            }
            Err(_) => {
                is_held_back = true;
                break;
            }
        }
    }
    // The server answers a ping only once its pong can be written (h2 holds
    // one pong at most): when the pongs go unread and the socket buffers
    // are full, it stops reading, so the flood waits in the kernel's
    // buffers (a few MB on loopback), not in the server.
    assert!(
        is_held_back || is_closed,
        "all {sent} pings were taken without their pongs being read"
    );
    assert!(sent < BATCHES * PER_BATCH, "{sent} pings taken");
    // Others are served while the attacker still does not read.
    assert_served(&mut rp).await;
    // And the connection, which never made a request, is closed.
    let mut attacker = Attacker::reading(stream);
    let seen = attacker.ended_within(Duration::from_secs(40)).await;
    let elapsed = started.elapsed();
    assert!(seen.is_some(), "the flooding connection was not closed");
    assert!(
        elapsed < Duration::from_secs(4),
        "closed after {elapsed:?} ({sent} pings, held back: {is_held_back})"
    );
    assert_served(&mut rp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_48_headers_dribbled_a_continuation_a_second_are_closed_at_the_handshake_timeout() {
    let (_db, server, app, mut rp) = start(|config| config.handshake_timeout_ms = 1_500).await;
    let mut attacker = Attacker::connect(server.addr).await;
    let started = Instant::now();
    let block = request_block(server.addr, CALL, &app.api_key);
    assert!(attacker.send(&frame(HEADERS, 0, 1, &block[..10])).await);
    assert_served(&mut rp).await;
    let mut dribbled = 0;
    for byte in block[10..].iter().take(30) {
        if attacker
            .ended_within(Duration::from_secs(1))
            .await
            .is_some()
            || !attacker.send(&frame(CONTINUATION, 0, 1, &[*byte])).await
        {
            break;
        }
        dribbled += 1;
    }
    let seen = attacker.ended_within(Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert!(seen.is_some(), "the dribbling connection was not closed");
    assert!(
        elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?} ({dribbled} CONTINUATION frames)"
    );
    // Closed by the timeout, before h2's own cap on CONTINUATION frames
    // per header block (5 at a 16 KiB limit) would have ended it.
    assert!(dribbled < 5, "{dribbled} CONTINUATION frames");
    assert_served(&mut rp).await;
}

/// A CA made for the TLS case and the server certificate it signs (PEM):
/// (CA, certificate, key).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_48_a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Shop").await;
    let dir = assent_tests::scratch_dir("h2tls");
    let (ca, cert, key) = certificates();
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        database_url: Some(db.url.clone()),
        listen: addr,
        metrics_listen: None,
        drain_timeout_seconds: 1,
        handshake_timeout_ms: 1_000,
        tls_cert: Some(dir.join("server.pem")),
        tls_key: Some(dir.join("server.key")),
        ..ServerConfig::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let run = assent_server::run(config, listener, stop);
    tokio::spawn(async move { run.await.expect("TLS test server") });
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(3));
    let channel = within(15, "the TLS server to accept", async {
        loop {
            if let Ok(channel) = endpoint.connect().await {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut rp = rp_client_on(channel, &app.api_key);
    assert_served(&mut rp).await;

    let started = Instant::now();
    // TCP connect, then nothing.
    let mut silent = Attacker::reading(TcpStream::connect(addr).await.unwrap());
    // The start of a ClientHello: a record announcing 512 bytes, a
    // handshake header announcing 508, the version and part of a random.
    let mut partial = Attacker::reading(TcpStream::connect(addr).await.unwrap());
    assert!(
        partial
            .send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x11\x22\x33\x44")
            .await
    );
    assert_served(&mut rp).await;
    for (what, attacker) in [("silent", &mut silent), ("partial", &mut partial)] {
        let seen = attacker.ended_within(Duration::from_secs(5)).await;
        let elapsed = started.elapsed();
        assert!(seen.is_some(), "{what}: not closed");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(2),
            "{what}: closed after {elapsed:?}"
        );
    }
    assert_served(&mut rp).await;
}
