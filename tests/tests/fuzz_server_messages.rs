//! A bounded, seeded fuzz run of the device SDK's handling of server
//! messages (catalogue #6, hostile parsers, on the device side): a fake
//! server written over raw HTTP/2 (the `h2` crate, so it can send any bytes)
//! completes a real handshake with an `assent-device` [`Device`], then sends
//! what proptest makes — arbitrary bytes in a gRPC frame, and well-formed
//! `ServerMessage`s with odd fields: transaction ids that are empty, huge or
//! repeated, unknown enum values, malformed number choices, duplicate
//! confirmations, results, rejections and cancellations for transactions the
//! device never saw, handshake messages on a ready stream, a `GoAway`.
//!
//! Then a marker confirmation request: the device answers it exactly when
//! its stream should still be up. Checked for every case: nothing panics
//! (a panic hook counts them, also in the SDK's tasks); a stream with
//! undecodable bytes or a `GoAway` is ended by the device, which tells its
//! handler why; any other stream keeps serving; the device is still running;
//! and every signed decision it sends answers a confirmation request the
//! server sent on this stream — same transaction, a signature over that
//! request's nonce and text by the enrolled key, a number among its choices,
//! and no more decisions for a transaction than requests for it.
//!
//! `ASSENT_FUZZ_SEED` replays a run; `ASSENT_FUZZ_CASES` changes its size.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent_device::{
    Answer, ConnectionState, DenyReason, Device, DeviceConfig, Handler, Request, Withdrawn,
};
use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::{
    AgentMessage, Cancellation, Challenge, ConfirmationRequest, DecisionResult, EnrollRequest,
    EnrollResponse, GoAway, Ready, Rejection, ServerMessage, SignedDecision, agent_message,
    server_message,
};
use bytes::Bytes;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;
use tokio::sync::mpsc;

/// Cases (`ASSENT_FUZZ_CASES` overrides).
const CASES: u32 = 256;
/// Cases started after this much time are skipped (and counted).
const BUDGET: Duration = Duration::from_secs(25);
/// The seed when `ASSENT_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 6;
/// Longest wait for the device to do something.
const WAIT: Duration = Duration::from_secs(5);
const DEVICE_ID: &str = "dev-1";
const APPLICATION_ID: &str = "app-1";

/// Panics anywhere in the process (the SDK's tasks included).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A gRPC frame of `message` (flag 0).
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// What the fake server sends after Ready.
#[derive(Debug, Clone)]
enum Item {
    /// Any bytes as one gRPC message.
    Raw(Vec<u8>),
    /// A well-formed server message.
    Message(Box<ServerMessage>),
}

impl Item {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Raw(bytes) => bytes.clone(),
            Self::Message(message) => message.encode_to_vec(),
        }
    }

    /// The message the device reads, or `None` if the bytes do not decode
    /// (the device must then end the stream).
    fn decoded(&self) -> Option<ServerMessage> {
        ServerMessage::decode(self.bytes().as_slice()).ok()
    }
}

/// Transaction ids: a few shared ones (so messages about the same
/// transaction meet), UUIDs, empty, odd and huge strings.
fn transaction_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..4).prop_map(|i| format!("00000000-0000-4000-8000-00000000000{i}")),
        1 => Just(String::new()),
        1 => any::<String>(),
        1 => (1000usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z ]{0,12}",
        2 => any::<String>(),
        1 => "[\u{0}-\u{1f}\u{7f}\u{202e}]{0,8}",
        1 => (1000usize..50_000).prop_map(|n| "m".repeat(n)),
    ]
}

fn odd_i32() -> impl Strategy<Value = i32> {
    prop_oneof![0i32..10, Just(i32::MAX), Just(i32::MIN), any::<i32>()]
}

fn confirmation() -> impl Strategy<Value = ConfirmationRequest> {
    let choices = prop_oneof![
        3 => Just(Vec::new()),
        2 => Just(vec![12, 45, 78]),
        1 => proptest::collection::vec(prop_oneof![10u32..100, any::<u32>()], 0..6),
    ];
    let timestamp = proptest::option::of(
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    );
    (
        (any::<u64>(), transaction_id(), odd_text(), odd_text()),
        (
            proptest::collection::btree_map(odd_text(), odd_text(), 0..3),
            timestamp,
            proptest::collection::vec(any::<u8>(), 0..40),
            odd_text(),
            odd_i32(),
            choices,
        ),
    )
        .prop_map(
            |(
                (request_id, transaction_id, application_name, message),
                (context, expires_at, nonce, user_id, kind, number_choices),
            )| ConfirmationRequest {
                request_id,
                transaction_id,
                application_id: APPLICATION_ID.to_owned(),
                application_name,
                message,
                context: context.into_iter().collect(),
                expires_at,
                nonce,
                user_id,
                kind,
                number_choices,
            },
        )
}

fn body() -> impl Strategy<Value = server_message::Body> {
    use server_message::Body;
    prop_oneof![
        6 => confirmation().prop_map(Body::ConfirmationRequest),
        2 => (transaction_id(), odd_i32(), odd_text(), any::<bool>()).prop_map(
            |(transaction_id, state, reason, applied)| Body::DecisionResult(DecisionResult {
                transaction_id,
                state,
                reason,
                applied,
            })
        ),
        2 => (prop_oneof![Just(0u64), any::<u64>()], transaction_id(), odd_i32(), odd_text()).prop_map(
            |(request_id, transaction_id, code, message)| Body::Rejection(Rejection {
                request_id,
                transaction_id,
                code,
                message,
            })
        ),
        2 => (transaction_id(), odd_text()).prop_map(|(transaction_id, reason)| {
            Body::Cancellation(Cancellation {
                transaction_id,
                reason,
            })
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|nonce| Body::Challenge(Challenge { nonce })),
        1 => (odd_text(), odd_text(), odd_text()).prop_map(|(device_id, user_id, application_name)| {
            Body::Ready(Ready {
                device_id,
                user_id,
                application_name,
            })
        }),
        // Rare: it ends the stream.
        1 => (0u32..50).prop_map(|reconnect_after_ms| Body::GoAway(GoAway { reconnect_after_ms })),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        8 => proptest::option::weighted(0.97, body())
            .prop_map(|body| Item::Message(Box::new(ServerMessage { body }))),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Item::Raw),
        // A well-formed message with a bit flipped.
        1 => (body(), any::<proptest::sample::Index>(), 0u8..8).prop_map(|(body, at, bit)| {
            let mut bytes = ServerMessage { body: Some(body) }.encode_to_vec();
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            Item::Raw(bytes)
        }),
    ]
}

/// A script: what goes out after Ready; duplicates are likely, since the
/// same message is often repeated.
fn script() -> impl Strategy<Value = Vec<Item>> {
    proptest::collection::vec(item(), 1..8).prop_flat_map(|items| {
        let n = items.len();
        (Just(items), proptest::collection::vec(0..n, 0..3)).prop_map(|(mut items, repeats)| {
            for i in repeats {
                let copy = items[i].clone();
                items.push(copy);
            }
            items
        })
    })
}

/// What the handler was told.
#[derive(Default)]
struct Heard {
    disconnects: Vec<String>,
}

/// Accepts (picking the first offered number) or denies by the message's
/// length; records connection changes.
struct Judge(Arc<Mutex<Heard>>);

impl Handler for Judge {
    async fn confirm(&self, request: Request, _withdrawn: Withdrawn) -> Answer {
        if request.message.len().is_multiple_of(2) {
            Answer::Accept {
                number: request.number_choices.as_slice().first().copied(),
            }
        } else {
            Answer::Deny(DenyReason::NotMe)
        }
    }

    fn on_connection(&self, state: &ConnectionState) {
        if let ConnectionState::Disconnected { reason } = state {
            self.0.lock().unwrap().disconnects.push(reason.clone());
        }
    }
}

/// One `Connect` stream the device opened, handed to the test.
struct Stream {
    requests: h2::RecvStream,
    respond: h2::server::SendResponse<Bytes>,
}

/// The fake server: answers `Enroll` itself, hands `Connect` streams over.
struct Fake {
    addr: SocketAddr,
    streams: tokio::sync::Mutex<mpsc::Receiver<Stream>>,
    key: Arc<Mutex<Option<VerifyingKey>>>,
}

impl Fake {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hand, streams) = mpsc::channel(4);
        let key = Arc::new(Mutex::new(None));
        let enrolled = Arc::clone(&key);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let hand = hand.clone();
                let enrolled = Arc::clone(&enrolled);
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, respond))) = connection.accept().await {
                        let path = request.uri().path().to_owned();
                        let requests = request.into_body();
                        if path.ends_with("/Enroll") {
                            tokio::spawn(enroll(requests, respond, Arc::clone(&enrolled)));
                        } else {
                            let _ = hand.send(Stream { requests, respond }).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            streams: tokio::sync::Mutex::new(streams),
            key,
        }
    }

    async fn next_stream(&self) -> Option<Stream> {
        tokio::time::timeout(WAIT, self.streams.lock().await.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Reads gRPC messages off a request body.
struct Frames {
    body: h2::RecvStream,
    buffer: Vec<u8>,
}

impl Frames {
    /// The next message; `None` once the device ended or reset its stream.
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buffer.len() >= 5 {
                let length =
                    usize::try_from(u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()))
                        .unwrap();
                if self.buffer.len() >= 5 + length {
                    let message = self.buffer[5..5 + length].to_vec();
                    self.buffer.drain(..5 + length);
                    return Some(message);
                }
            }
            let chunk = self.body.data().await?.ok()?;
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

async fn enroll(
    requests: h2::RecvStream,
    mut respond: h2::server::SendResponse<Bytes>,
    key: Arc<Mutex<Option<VerifyingKey>>>,
) {
    let mut frames = Frames {
        body: requests,
        buffer: Vec::new(),
    };
    let request = EnrollRequest::decode(frames.next().await.unwrap().as_slice()).unwrap();
    *key.lock().unwrap() =
        Some(VerifyingKey::from_bytes(&request.public_key.try_into().unwrap()).unwrap());
    let mut send = respond.send_response(grpc_response(), false).unwrap();
    let response = EnrollResponse {
        device_id: DEVICE_ID.to_owned(),
        user_id: "alice".to_owned(),
        application_id: APPLICATION_ID.to_owned(),
        application_name: "Example Shop".to_owned(),
    };
    send.send_data(grpc_frame(&response.encode_to_vec()), false)
        .unwrap();
    send.send_trailers(ok_trailers()).unwrap();
}

fn grpc_response() -> http::Response<()> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

fn ok_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers
}

/// Everything the device sent on the stream.
fn decisions(sent: &[AgentMessage]) -> Vec<&SignedDecision> {
    sent.iter()
        .filter_map(|m| match &m.body {
            Some(agent_message::Body::Decision(d)) => Some(d),
            _ => None,
        })
        .collect()
}

/// Whether `decision` is `key`'s signed answer to `request`.
fn answers(decision: &SignedDecision, request: &ConfirmationRequest, key: &VerifyingKey) -> bool {
    let verdict = match assent_proto::v1::Decision::try_from(decision.decision) {
        Ok(assent_proto::v1::Decision::Accept) => SignedVerdict::Accept,
        Ok(assent_proto::v1::Decision::Deny) => SignedVerdict::Deny,
        _ => return false,
    };
    let context: BTreeMap<String, String> = request.context.clone().into_iter().collect();
    let bytes = signing::decision_bytes(&DecisionPayload {
        application_id: &request.application_id,
        transaction_id: &request.transaction_id,
        device_id: DEVICE_ID,
        nonce: &request.nonce,
        verdict,
        reason: &decision.reason,
        display_hash: &signing::display_hash(&request.message, &context),
        number: (decision.number != 0).then_some(decision.number),
    });
    let Ok(signature) = Signature::from_slice(&decision.signature) else {
        return false;
    };
    let picked_right = match verdict {
        SignedVerdict::Accept if request.number_choices.is_empty() => decision.number == 0,
        SignedVerdict::Accept => request.number_choices.contains(&decision.number),
        SignedVerdict::Deny => decision.number == 0,
    };
    picked_right && key.verify(&bytes, &signature).is_ok()
}

struct World {
    fake: Fake,
    config: DeviceConfig,
    _state: assent_tests::ScratchDir,
    cases: AtomicUsize,
    ended: AtomicUsize,
    decided: AtomicUsize,
}

impl World {
    async fn start() -> Self {
        let fake = Fake::start().await;
        let state = assent_tests::scratch_dir("fuzz-device");
        let config = DeviceConfig::new(state.join("device"), format!("http://{}", fake.addr));
        assent_device::enroll(&config, "code", "fuzzed device", false)
            .await
            .expect("enroll with the fake server");
        Self {
            fake,
            config,
            _state: state,
            cases: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            decided: AtomicUsize::new(0),
        }
    }

    /// Runs one script against a fresh device on the enrollment.
    async fn check(&self, script: &[Item]) -> Result<(), TestCaseError> {
        let panics = PANICS.load(Ordering::SeqCst);
        let key = self.fake.key.lock().unwrap().unwrap();
        let heard = Arc::new(Mutex::new(Heard::default()));
        let device = Device::start(self.config.clone(), Judge(Arc::clone(&heard))).unwrap();
        // A stream a stopped device opened is dead: it sends no hello.
        let nonce: [u8; 32] = rand::random();
        let (mut frames, mut send, hello) = loop {
            let Stream {
                requests,
                mut respond,
            } = self
                .fake
                .next_stream()
                .await
                .ok_or_else(|| TestCaseError::fail("the device never connected"))?;
            let mut frames = Frames {
                body: requests,
                buffer: Vec::new(),
            };
            let Ok(mut send) = respond.send_response(grpc_response(), false) else {
                continue;
            };
            let challenge = ServerMessage {
                body: Some(server_message::Body::Challenge(Challenge {
                    nonce: nonce.to_vec(),
                })),
            };
            let _ = send.send_data(grpc_frame(&challenge.encode_to_vec()), false);
            if let Ok(Some(hello)) = tokio::time::timeout(WAIT, frames.next()).await {
                break (frames, send, hello);
            }
        };
        let Some(agent_message::Body::Hello(hello)) =
            AgentMessage::decode(hello.as_slice()).unwrap().body
        else {
            return Err(TestCaseError::fail("the first message is not a hello"));
        };
        let signature = Signature::from_slice(&hello.signature).unwrap();
        prop_assert!(
            key.verify(&signing::hello_bytes(DEVICE_ID, &nonce), &signature)
                .is_ok()
        );
        let ready = ServerMessage {
            body: Some(server_message::Body::Ready(Ready {
                device_id: DEVICE_ID.to_owned(),
                user_id: "alice".to_owned(),
                application_name: "Example Shop".to_owned(),
            })),
        };
        send.send_data(grpc_frame(&ready.encode_to_vec()), false)
            .unwrap();

        // The script, then the marker.
        let mut asked: Vec<ConfirmationRequest> = Vec::new();
        let mut must_end = false;
        // A transient refusal of a decision the device sent (request id
        // 0, UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED) makes it re-send the
        // decision on a new stream: it may end this one.
        let mut may_end = false;
        for item in script {
            let _ = send.send_data(grpc_frame(&item.bytes()), false);
            if let Some(ServerMessage {
                body: Some(server_message::Body::Rejection(rejection)),
            }) = item.decoded()
            {
                let transient = matches!(
                    tonic::Code::from_i32(rejection.code),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted
                );
                may_end |= rejection.request_id == 0
                    && transient
                    && asked
                        .iter()
                        .any(|r| r.transaction_id == rejection.transaction_id);
            }
            match item.decoded() {
                None => must_end = true,
                Some(ServerMessage {
                    body: Some(server_message::Body::GoAway(_)),
                }) => must_end = true,
                Some(ServerMessage {
                    body: Some(server_message::Body::ConfirmationRequest(request)),
                }) if !must_end => asked.push(request),
                Some(_) => {}
            }
            if must_end {
                break;
            }
        }
        let marker = ConfirmationRequest {
            request_id: 0,
            transaction_id: uuid::Uuid::new_v4().to_string(),
            application_id: APPLICATION_ID.to_owned(),
            application_name: "Example Shop".to_owned(),
            message: "marker".to_owned(),
            nonce: vec![3; 32],
            user_id: "alice".to_owned(),
            ..Default::default()
        };
        if !must_end {
            let marker_message = ServerMessage {
                body: Some(server_message::Body::ConfirmationRequest(marker.clone())),
            };
            let _ = send.send_data(grpc_frame(&marker_message.encode_to_vec()), false);
        }

        // Until the marker is answered or the device ends the stream.
        let mut sent = Vec::new();
        let mut marker_answered = false;
        let mut device_ended = false;
        let until = Instant::now() + WAIT;
        while !marker_answered {
            let Ok(next) =
                tokio::time::timeout_at(tokio::time::Instant::from_std(until), frames.next()).await
            else {
                break;
            };
            let Some(bytes) = next else {
                device_ended = true;
                break;
            };
            let message = AgentMessage::decode(bytes.as_slice());
            prop_assert!(message.is_ok(), "the device sent bytes that do not decode");
            let message = message.unwrap();
            if let Some(agent_message::Body::Decision(decision)) = &message.body
                && decision.transaction_id == marker.transaction_id
            {
                marker_answered = true;
            }
            sent.push(message);
        }
        let running = device.handle().status().await.is_some();
        device.stop().await.unwrap();
        // What was on its way when it stopped.
        while let Ok(Some(bytes)) = tokio::time::timeout(WAIT, frames.next()).await {
            sent.push(AgentMessage::decode(bytes.as_slice()).unwrap());
        }
        drop(send);

        prop_assert_eq!(PANICS.load(Ordering::SeqCst), panics, "something panicked");
        prop_assert!(running, "the device stopped by itself");
        if must_end || may_end && device_ended {
            prop_assert!(
                device_ended,
                "the device kept a stream that sent garbage or GoAway"
            );
            let heard = heard.lock().unwrap();
            prop_assert!(
                heard.disconnects.iter().any(|reason| !reason.is_empty()),
                "the handler was not told why the stream ended"
            );
            self.ended.fetch_add(1, Ordering::Relaxed);
        } else {
            prop_assert!(
                marker_answered,
                "the stream stopped serving (ended: {})",
                device_ended
            );
        }
        asked.push(marker);
        let mut per_transaction: HashMap<&str, usize> = HashMap::new();
        for decision in decisions(&sent) {
            let requests: Vec<&ConfirmationRequest> = asked
                .iter()
                .filter(|r| r.transaction_id == decision.transaction_id)
                .collect();
            prop_assert!(
                !requests.is_empty(),
                "a decision for a transaction never asked about: {:?}",
                decision.transaction_id
            );
            prop_assert!(
                requests.iter().any(|r| answers(decision, r, &key)),
                "a decision that answers no request sent for {:?}",
                decision.transaction_id
            );
            let count = per_transaction
                .entry(decision.transaction_id.as_str())
                .or_default();
            *count += 1;
            prop_assert!(
                *count <= requests.len(),
                "{} decisions for {} requests",
                count,
                requests.len()
            );
            self.decided.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert!(
            sent.iter()
                .all(|m| matches!(m.body, Some(agent_message::Body::Decision(_)))),
            "the device sent something other than decisions: {:?}",
            sent
        );
        self.cases.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_device_survives_fuzzed_server_messages_and_signs_only_what_it_was_asked() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let seed = env_number("ASSENT_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_number("ASSENT_FUZZ_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(CASES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(World::start());
    let mut rng_seed = [0u8; 32];
    rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
    let mut config = Config::with_cases(cases);
    config.failure_persistence = None;
    config.max_shrink_iters = 200;
    config.max_shrink_time = 15_000;
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed));
    let started = Instant::now();
    let skipped = AtomicUsize::new(0);
    let result = runner.run(&script(), |script| {
        if started.elapsed() > BUDGET {
            skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        runtime.block_on(world.check(&script))
    });
    if let Err(error) = result {
        panic!("{error}\nreplay with ASSENT_FUZZ_SEED={seed} ASSENT_FUZZ_CASES={cases}");
    }
    eprintln!(
        "{} scripts ({} skipped past the {} s budget): {} streams ended by the device, {} \
         signed decisions checked, in {:.1} s (ASSENT_FUZZ_SEED={seed})",
        world.cases.load(Ordering::Relaxed),
        skipped.into_inner(),
        BUDGET.as_secs(),
        world.ended.load(Ordering::Relaxed),
        world.decided.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    drop(world);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
