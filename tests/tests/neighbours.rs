//! A device's stream ends alone. gRPC clients share one HTTP/2 connection
//! between calls (one channel), cancel a call when they give up or
//! reconnect, and proxies multiplex several clients over one backend
//! connection: a stream that ends — cancelled by its client at any point of
//! its life, or ended by the server (refused hello, replaced, revoked,
//! starved) — must leave every other stream on the connection serving.
//!
//! Each round ends one "victim" stream one way, then checks that a
//! neighbour device on the same connection still answers and that a
//! relying-party call on the same connection still succeeds.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use assent_proto::signing;
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    AgentMessage, CancelTransactionRequest, CreateOtpAuthenticationRequest, Hello,
    RevokeDeviceRequest, agent_message,
};
use assent_tests::{
    DeviceStream, Haproxy, RpClient, TestApp, TestDb, TestDevice, TestServer, device, rp_client_at,
    tools, until_disconnected, within,
};
use ed25519_dalek::Signer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// How a victim stream ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The client cancels after the challenge, before its hello.
    ClientBeforeHello,
    /// The client cancels right after Ready.
    ClientAfterReady,
    /// The client cancels while it holds a confirmation request.
    ClientHoldingConfirmation,
    /// The client cancels while the server is sending it cancellations.
    ClientWhileServerSends,
    /// The server refuses a hello with a wrong signature.
    RefusedHello,
    /// A newer stream of the same device replaces it.
    Replaced,
    /// The device is revoked.
    Revoked,
    /// The client stops reading; the server gives up on the stream.
    Starved,
}

/// Everything one round needs.
struct Bench {
    server: TestServer,
    app: TestApp,
    /// The connection everything shares (small stream windows, so a stream
    /// that does not read stalls quickly; a large connection window, so it
    /// does not stall the others).
    shared: Channel,
    rp: RpClient,
    neighbour: TestDevice,
    neighbour_stream: DeviceStream,
    victim: TestDevice,
}

/// A server whose streams give up on a non-reading device quickly.
async fn start(db: &TestDb) -> (TestServer, TestApp) {
    let server = TestServer::start_with(db, |config| {
        config.stream_send_timeout_ms = 300;
        config.create_burst = 1_000_000;
        config.create_rate_per_second = 1_000_000.0;
    })
    .await;
    let app = TestApp::create(db, "Shop").await;
    (server, app)
}

/// One channel (one HTTP/2 connection) to `url`.
async fn shared_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .initial_stream_window_size(Some(2048))
        .initial_connection_window_size(Some(4 * 1024 * 1024))
        .connect()
        .await
        .expect("connect")
}

impl Bench {
    async fn new(server: TestServer, app: TestApp, url: &str) -> Self {
        let shared = shared_channel(url).await;
        let rp = assent_tests::harness::rp_client_on(shared.clone(), &app.api_key);
        let neighbour = TestDevice::enroll(&server, &app, "neighbour").await;
        let neighbour_stream = neighbour.connect_on(shared.clone()).await.expect("connect");
        let victim = TestDevice::enroll(&server, &app, "victim").await;
        Self {
            server,
            app,
            shared,
            rp,
            neighbour,
            neighbour_stream,
            victim,
        }
    }

    async fn create_otp(&mut self) -> CreateOtp {
        let created = self
            .rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ..Default::default()
            })
            .await
            .expect("a relying-party call on the shared connection")
            .into_inner();
        CreateOtp {
            id: created.transaction_id,
            otp: created.otp,
        }
    }

    /// The neighbour still answers on the shared connection, and so does a
    /// relying-party call.
    async fn neighbour_answers(&mut self, round: usize, end: End) {
        let created = self.create_otp().await;
        let answer = within(5, "the neighbour to answer", async {
            self.neighbour_stream.submit(&created.otp).await
        })
        .await;
        assert!(
            matches!(answer, Body::ConfirmationRequest(_)),
            "round {round} ({end:?}): the neighbour's stream still serves, got {answer:?}"
        );
    }

    async fn run(&mut self, end: End) {
        match end {
            End::ClientBeforeHello => {
                let (_sender, mut inbound) = open(&self.shared).await;
                assert!(matches!(
                    first(&mut inbound).await,
                    Some(Body::Challenge(_))
                ));
                // Dropping both halves cancels the call (RST_STREAM).
            }
            End::ClientAfterReady => {
                let stream = self.victim.connect_on(self.shared.clone()).await.unwrap();
                drop(stream);
            }
            End::ClientHoldingConfirmation => {
                let mut stream = self.victim.connect_on(self.shared.clone()).await.unwrap();
                let created = self.create_otp().await;
                stream.scan(&created.otp).await;
                drop(stream);
            }
            End::ClientWhileServerSends => {
                let mut stream = self.victim.connect_on(self.shared.clone()).await.unwrap();
                let mut ids = Vec::new();
                for _ in 0..4 {
                    let created = self.create_otp().await;
                    stream.scan(&created.otp).await;
                    ids.push(created.id);
                }
                let mut rp = self.rp.clone();
                let cancels = tokio::spawn(async move {
                    for id in ids {
                        rp.cancel_transaction(CancelTransactionRequest { transaction_id: id })
                            .await
                            .expect("cancel on the shared connection");
                    }
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(stream);
                cancels.await.unwrap();
            }
            End::RefusedHello => {
                let (sender, mut inbound) = open(&self.shared).await;
                let Some(Body::Challenge(challenge)) = first(&mut inbound).await else {
                    panic!("no challenge");
                };
                // Signed over another nonce: refused.
                let mut nonce = challenge.nonce.clone();
                nonce[0] ^= 1;
                let signature = self
                    .victim
                    .key
                    .sign(&signing::hello_bytes(&self.victim.device_id, &nonce));
                sender
                    .send(AgentMessage {
                        body: Some(agent_message::Body::Hello(Hello {
                            device_id: self.victim.device_id.clone(),
                            signature: signature.to_bytes().to_vec(),
                        })),
                    })
                    .await
                    .unwrap();
                let status = ended(&mut inbound).await;
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            }
            End::Replaced => {
                let mut older = self.victim.connect_on(self.shared.clone()).await.unwrap();
                let newer = self.victim.connect_on(self.shared.clone()).await.unwrap();
                let status = within(5, "the older stream to end", async {
                    loop {
                        match older.next().await {
                            Ok(Some(_)) => {}
                            Ok(None) => panic!("the replaced stream ends with a status"),
                            Err(status) => return status,
                        }
                    }
                })
                .await;
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                drop(newer);
            }
            End::Revoked => {
                let device = TestDevice::enroll(&self.server, &self.app, "revoked").await;
                let mut stream = device.connect_on(self.shared.clone()).await.unwrap();
                self.rp
                    .revoke_device(RevokeDeviceRequest {
                        device_id: device.device_id.clone(),
                    })
                    .await
                    .expect("revoke on the shared connection");
                let status = within(5, "the revoked stream to end", async {
                    loop {
                        match stream.next().await {
                            Ok(Some(_)) => {}
                            Ok(None) => panic!("the revoked stream ends with a status"),
                            Err(status) => return status,
                        }
                    }
                })
                .await;
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            }
            End::Starved => self.starve().await,
        }
    }

    /// The victim scans, stops reading, and is sent more than its window
    /// and the server's queue hold: the server gives up on its stream.
    async fn starve(&mut self) {
        const SCANNED: usize = 90;
        let mut stream = self.victim.connect_on(self.shared.clone()).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..SCANNED {
            let created = self.create_otp().await;
            stream.scan(&created.otp).await;
            ids.push(created.id);
        }
        for id in ids {
            self.rp
                .cancel_transaction(CancelTransactionRequest { transaction_id: id })
                .await
                .expect("cancel on the shared connection");
        }
        let victim = self.victim.device_id.clone();
        until_disconnected(&mut self.rp, &victim, 5).await;
        // Reading again finds the stream ended by the server.
        let status = within(5, "the starved stream's end", async {
            loop {
                match stream.next().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("a starved stream ends with an error"),
                    Err(status) => return status,
                }
            }
        })
        .await;
        assert_ne!(status.code(), Code::Ok);
    }
}

struct CreateOtp {
    id: String,
    otp: String,
}

type Inbound = tonic::Streaming<assent_proto::v1::ServerMessage>;

/// Opens a raw `Connect` stream on `channel`.
async fn open(channel: &Channel) -> (mpsc::Sender<AgentMessage>, Inbound) {
    let (sender, receiver) = mpsc::channel(4);
    let inbound = DeviceServiceClient::new(channel.clone())
        .connect(ReceiverStream::new(receiver))
        .await
        .expect("Connect")
        .into_inner();
    (sender, inbound)
}

async fn first(inbound: &mut Inbound) -> Option<Body> {
    within(5, "the first server message", inbound.message())
        .await
        .expect("a message")
        .and_then(|message| message.body)
}

async fn ended(inbound: &mut Inbound) -> tonic::Status {
    within(5, "the stream to end", async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ends with a status"),
                Err(status) => return status,
            }
        }
    })
    .await
}

/// Runs `rounds` of each end, interleaved, checking the neighbour after each.
async fn rounds(bench: &mut Bench, plan: &[(End, usize)]) -> usize {
    let most = plan.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let mut done = 0;
    for round in 0..most {
        for &(end, count) in plan {
            if round < count {
                bench.run(end).await;
                bench.neighbour_answers(round, end).await;
                done += 1;
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_leave_their_neighbours_on_the_connection_serving() {
    let db = TestDb::create().await;
    let (server, app) = start(&db).await;
    let url = server.url();
    let mut bench = Bench::new(server, app, &url).await;
    let done = rounds(
        &mut bench,
        &[
            (End::ClientBeforeHello, 200),
            (End::ClientAfterReady, 200),
            (End::ClientHoldingConfirmation, 200),
            (End::ClientWhileServerSends, 100),
            (End::RefusedHello, 150),
            (End::Replaced, 80),
            (End::Revoked, 60),
            (End::Starved, 10),
        ],
    )
    .await;
    assert_eq!(done, 1000);
    let neighbour = bench.neighbour.device_id.clone();
    let shown = device(&mut bench.rp, &neighbour).await;
    assert!(shown.connected, "the neighbour stayed connected throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_behind_haproxy_leave_their_neighbours_serving() {
    if !tools::can_run("neighbours (behind HAProxy)", &[tools::HAPROXY]) {
        return;
    }
    let db = TestDb::create().await;
    let (server, app) = start(&db).await;
    let haproxy = Haproxy::start([server.addr; 3]).await;
    let mut bench = Bench::new(server, app, &haproxy.url).await;
    // Other clients of the proxy: their own connections to HAProxy, which
    // multiplexes them with the neighbour's on its backend connections.
    let done = rounds(
        &mut bench,
        &[
            (End::ClientBeforeHello, 20),
            (End::ClientAfterReady, 20),
            (End::ClientHoldingConfirmation, 20),
            (End::RefusedHello, 20),
            (End::Replaced, 10),
            (End::Revoked, 10),
        ],
    )
    .await;
    assert_eq!(done, 100);
    let mut rp = rp_client_at(&haproxy.url, &bench.app.api_key).await;
    let shown = device(&mut rp, &bench.neighbour.device_id).await;
    assert!(shown.connected, "the neighbour stayed connected throughout");
}
