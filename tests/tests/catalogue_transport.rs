//! Catalogue case #43 (docs/security.md): the caps on streams per
//! connection and on connections are reached, not only configured — a
//! connection gets 128 concurrent streams and no more (the 129th is
//! refused with RST_STREAM(REFUSED_STREAM), the others carry on, and a
//! stream that ends frees its place); the server holds 4 096 connections
//! (256 from each of 16 loopback addresses, the per-address cap) and closes
//! the next one at once, and serves again once one has gone.
//!
//! Streams are opened frame by frame ([`assent_tests::raw_http2`]), so the
//! client's own HTTP/2 stack cannot hold the 129th back. The transport is
//! the same on both engines, so SQLite serves.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assent_proto::v1::CreateOtpAuthenticationRequest;
use assent_tests::harness::rp_client_on;
use assent_tests::raw_http2::{
    CANCEL, END_HEADERS, HEADERS, PREFACE, RST_STREAM, SETTINGS, frame, literal,
};
use assent_tests::{TestApp, TestDb, TestServer, is_closed, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};

/// RST_STREAM's REFUSED_STREAM error code (RFC 9113 §7): the stream was
/// not processed, the client may retry it.
const REFUSED_STREAM: u32 = 0x7;
/// The SETTINGS flag that acknowledges the peer's settings.
const ACK: u8 = 0x1;
/// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2).
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the server has said on each stream of a raw connection.
#[derive(Default, Debug)]
struct Streams {
    /// Streams the server answered with response HEADERS.
    answered: Vec<u32>,
    /// Streams the server reset, with the error code.
    reset: HashMap<u32, u32>,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, once it said it.
    max_concurrent: Option<u32>,
}

/// A raw HTTP/2 connection that opens `Connect` streams and notes what the
/// server answers.
struct RawConnection {
    writer: OwnedWriteHalf,
    streams: Arc<Mutex<Streams>>,
    reader: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

impl RawConnection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(PREFACE).await.unwrap();
        writer.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let streams = Arc::new(Mutex::new(Streams::default()));
        let seen = Arc::clone(&streams);
        let (acks, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<()>();
        let reader = tokio::spawn(async move {
            let mut head = [0u8; 9];
            while reader.read_exact(&mut head).await.is_ok() {
                let length =
                    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0u8; length];
                if reader.read_exact(&mut payload).await.is_err() {
                    break;
                }
                let id = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
                let mut seen = seen.lock().unwrap();
                match head[3] {
                    HEADERS => seen.answered.push(id),
                    RST_STREAM if payload.len() == 4 => {
                        seen.reset
                            .insert(id, u32::from_be_bytes(payload[..4].try_into().unwrap()));
                    }
                    SETTINGS if head[4] & ACK == 0 => {
                        for setting in payload.chunks_exact(6) {
                            let name = u16::from_be_bytes([setting[0], setting[1]]);
                            if name == MAX_CONCURRENT_STREAMS {
                                let value = u32::from_be_bytes(setting[2..6].try_into().unwrap());
                                seen.max_concurrent = Some(value);
                            }
                        }
                        let _ = acks.send(());
                    }
                    _ => {}
                }
            }
        });
        let mut connection = Self {
            writer,
            streams,
            reader,
            addr,
        };
        // The server's settings first, acknowledged.
        within(5, "the server's SETTINGS", to_ack.recv()).await;
        connection.send(&frame(SETTINGS, ACK, 0, &[])).await;
        connection
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("connection open");
    }

    /// Opens stream `id` with a `Connect` call (its body stays open).
    async fn connect_stream(&mut self, id: u32) {
        let mut block = Vec::new();
        literal(&mut block, ":method", b"POST");
        literal(&mut block, ":scheme", b"http");
        literal(&mut block, ":path", b"/assent.v1.DeviceService/Connect");
        literal(&mut block, ":authority", self.addr.to_string().as_bytes());
        literal(&mut block, "content-type", b"application/grpc");
        literal(&mut block, "te", b"trailers");
        self.send(&frame(HEADERS, END_HEADERS, id, &block)).await;
    }

    /// Waits until `done` holds of what the server has said.
    async fn until(&self, what: &str, done: impl Fn(&Streams) -> bool) {
        within(5, what, async {
            while !done(&self.streams.lock().unwrap()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The id of the `n`th stream a client opens (1, 3, 5, …).
fn stream_id(n: u32) -> u32 {
    2 * n - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_43_a_connection_gets_128_concurrent_streams_and_the_129th_is_refused() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let mut connection = RawConnection::open(server.addr).await;
    assert_eq!(
        connection.streams.lock().unwrap().max_concurrent,
        Some(128),
        "the server announces its cap"
    );
    // 128 device streams, each answered (HEADERS, then its challenge).
    for n in 1..=128 {
        connection.connect_stream(stream_id(n)).await;
    }
    connection
        .until("128 streams answered", |s| s.answered.len() >= 128)
        .await;
    // The 129th is refused, without touching the 128.
    connection.connect_stream(stream_id(129)).await;
    connection
        .until("the 129th stream to be refused", |s| {
            s.reset.contains_key(&stream_id(129))
        })
        .await;
    {
        let streams = connection.streams.lock().unwrap();
        assert_eq!(streams.reset[&stream_id(129)], REFUSED_STREAM);
        assert_eq!(
            streams.reset.len(),
            1,
            "only the 129th: {:?}",
            streams.reset
        );
        assert!(!streams.answered.contains(&stream_id(129)));
    }
    // A stream that ends frees its place for the next one.
    connection
        .send(&frame(RST_STREAM, 0, stream_id(1), &CANCEL.to_be_bytes()))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    connection.connect_stream(stream_id(130)).await;
    connection
        .until("the 130th stream to be answered", |s| {
            s.answered.contains(&stream_id(130))
        })
        .await;
    assert!(
        !connection
            .streams
            .lock()
            .unwrap()
            .reset
            .contains_key(&stream_id(130))
    );
}

/// Raises the open-file limit: this test holds about 8 200 sockets.
fn allow_many_sockets() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

/// A TCP connection to `server` from the loopback address 127.0.0.`host`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
            0,
        ))
        .unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_43_the_server_holds_4096_connections_and_closes_the_next_at_once() {
    const PEERS: u8 = 16;
    const PER_PEER: usize = 256;
    allow_many_sockets();
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        soft >= 9000,
        "this test needs an open-file limit of 9 000 (server and client ends of 4 097 \
         connections); it is {soft}: raise it (ulimit -n)"
    );
    let db = TestDb::sqlite();
    // The defaults, but silent connections are kept for the test's length.
    let server = TestServer::start_with(&db, |config| config.handshake_timeout_ms = 60_000).await;
    let app = TestApp::create(&db, "Shop").await;
    // 256 silent connections from each of 127.0.0.2 … 127.0.0.17.
    let mut held = Vec::with_capacity(usize::from(PEERS) * PER_PEER);
    for host in 2..2 + PEERS {
        for _ in 0..PER_PEER {
            held.push(connect_from(host, server.addr).await);
        }
    }
    assert_eq!(held.len(), 4096);
    // All of them are held: none is closed.
    let closed = futures::future::join_all(
        held.iter_mut()
            .map(|stream| is_closed(stream, Duration::from_millis(200))),
    )
    .await;
    let closed = closed.into_iter().filter(|&c| c).count();
    assert_eq!(
        closed, 0,
        "{closed} of 4096 connections closed under the cap"
    );
    // The next one, from an address with none open, is closed at once.
    let mut next = connect_from(2 + PEERS, server.addr).await;
    assert!(
        is_closed(&mut next, Duration::from_secs(2)).await,
        "the 4097th connection must be closed"
    );
    // Once one has gone, a client (from 127.0.0.1) is served again.
    drop(held.pop());
    within(10, "a client to be served after one left", async {
        loop {
            let channel = tonic::transport::Endpoint::from_shared(server.url())
                .unwrap()
                .connect()
                .await;
            if let Ok(channel) = channel {
                let created = rp_client_on(channel, &app.api_key)
                    .create_otp_authentication(CreateOtpAuthenticationRequest {
                        message: "Log in?".to_owned(),
                        ..Default::default()
                    })
                    .await;
                if created.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    drop(held);
}
