//! Catalogue #42 at scale: a bounded, seeded fuzz run of request decoding on
//! every RPC of `assent.v1`. The list of RPCs is read from the compiled
//! descriptor set, so a new RPC fails this test until it has a seed request
//! and its documented statuses here.
//!
//! For each RPC, proptest generates requests from valid seed messages:
//! random bytes, truncations, bit flips, splices, fields with huge length
//! prefixes, and gRPC frames that lie (a length past the body, a length over
//! the 64 KiB limit, a compression flag, no message), with a valid, a wrong
//! or no API key. All of them go over ONE raw HTTP/2 connection (the `h2`
//! crate, so any bytes can be sent), and each answer must be a gRPC status:
//! HTTP 200, never `UNKNOWN` (a panicking handler), never `INTERNAL` for a
//! request that decodes (only tonic's own wire refusals are `INTERNAL`),
//! never `OK` for bytes that do not decode, and otherwise only the statuses
//! `docs/relying-party.md` documents for that RPC. `Connect` is fuzzed twice:
//! as the first message of a stream, and after a real device's signed hello.
//! At the end the same connection, and a fresh client, still get served.
//!
//! The run is seeded (`ASSENT_FUZZ_SEED`, printed with any failure, replays
//! it), has a fixed number of cases per RPC (`ASSENT_FUZZ_CASES` overrides)
//! and a time budget: cases past [`BUDGET`] are skipped, and said so.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::{
    AgentMessage, CancelTransactionRequest, CreateEnrollmentRequest,
    CreateOtpAuthenticationRequest, CreatePushAuthenticationRequest, EnrollRequest,
    GetDeviceRequest, GetTransactionRequest, Hello, ListDevicesRequest, ListServerKeysRequest,
    RevokeDeviceRequest, ServerMessage, SubmitOtp, SubscribeRequest, WaitTransactionRequest,
    agent_message, server_message,
};
use assent_tests::{RpClient, TestApp, TestDb, TestDevice, TestServer, rp_client};
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;
use tonic::Code;

/// Cases per fuzzed RPC (`ASSENT_FUZZ_CASES` overrides).
const CASES_PER_RPC: u32 = 128;
/// Cases started after this much time are skipped (and counted).
const BUDGET: Duration = Duration::from_secs(50);
/// The seed when `ASSENT_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 42;
/// Longest wait for any one answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// The server's message limit (`MAX_MESSAGE_BYTES`).
const LIMIT: u32 = 64 * 1024;

/// Every `rpc` of the `assent.v1` services, as `/package.Service/Method`
/// paths, from the descriptor set the server's reflection serves.
fn rpcs_in_descriptor() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(assent_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = BTreeSet::new();
    for file in set.file.iter().filter(|f| f.package() == "assent.v1") {
        for service in &file.service {
            for method in &service.method {
                paths.insert(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    paths
}

/// How an RPC is called and judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A unary relying-party call (API key required).
    Unary,
    /// `Subscribe`: a server stream; a stream that starts counts as OK.
    ServerStream,
    /// A unary device call (no API key).
    DeviceUnary,
    /// `Connect`, the fuzzed message first (instead of a hello).
    ConnectFirst,
    /// `Connect`, the fuzzed message after a real device's signed hello.
    ConnectAuthenticated,
}

/// One fuzzed RPC.
struct Target {
    path: &'static str,
    shape: Shape,
    /// Valid encoded requests the mutations start from.
    seeds: Vec<Vec<u8>>,
    /// Whether bytes decode as the request type.
    decodes: fn(&[u8]) -> bool,
    /// What a well-formed request with a valid key may get besides OK
    /// (docs/relying-party.md, docs/protocol.md).
    documented: &'static [Code],
}

fn decodes<T: Message + Default>(bytes: &[u8]) -> bool {
    T::decode(bytes).is_ok()
}

/// The API key a fuzzed call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Valid,
    Wrong,
    Missing,
}

/// How the fuzzed payload is framed as a gRPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Flag 0 and the payload's true length.
    Exact,
    /// A length this many bytes past the end of the body.
    Short(u16),
    /// A length over the message limit.
    Huge(u32),
    /// A compression flag other than 0 (none was negotiated).
    Flag(u8),
    /// No message at all, just the end of the request.
    Empty,
}

/// One generated request.
#[derive(Debug, Clone)]
struct Fuzzed {
    payload: Vec<u8>,
    framing: Framing,
    key: Key,
}

impl Fuzzed {
    /// Whether the server must take this as a well-formed request message.
    fn is_well_formed(&self, target: &Target) -> bool {
        self.framing == Framing::Exact && (target.decodes)(&self.payload)
    }

    /// Whether the request ends before any message byte: no message, or a
    /// frame header whose body never comes (tonic's decoder takes that as
    /// a clean end of the stream, not as a truncated message).
    fn has_no_message(&self) -> bool {
        self.framing == Framing::Empty
            || matches!(self.framing, Framing::Short(_)) && self.payload.is_empty()
    }

    /// The request body: the payload in a (possibly lying) gRPC frame.
    fn body(&self) -> Vec<u8> {
        let length = u32::try_from(self.payload.len()).unwrap();
        let (flag, length) = match self.framing {
            Framing::Empty => return Vec::new(),
            Framing::Exact => (0, length),
            Framing::Short(extra) => (0, length + u32::from(extra)),
            Framing::Huge(length) => (0, length),
            Framing::Flag(flag) => (flag, length),
        };
        let mut body = vec![flag];
        body.extend_from_slice(&length.to_be_bytes());
        body.extend_from_slice(&self.payload);
        body
    }
}

/// A gRPC frame of `message` (flag 0).
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    Fuzzed {
        payload: message.to_vec(),
        framing: Framing::Exact,
        key: Key::Valid,
    }
    .body()
}

/// Flips `bit` of the byte at `at`.
fn flip(mut bytes: Vec<u8>, flips: &[(Index, u8)]) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for (at, bit) in flips {
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
    }
    bytes
}

/// A varint (protobuf base-128).
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap() | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap());
    out
}

/// A protobuf field as it is on the wire.
#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Fixed32([u8; 4]),
}

/// Reads a varint at the start of `bytes`; the value and its length.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The fields of an encoded message, or `None` if it is not one.
fn parse_fields(mut bytes: &[u8]) -> Option<Vec<(u32, Value)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (key, used) = read_varint(bytes)?;
        bytes = &bytes[used..];
        let number = u32::try_from(key >> 3).ok().filter(|n| *n > 0)?;
        let value = match key & 7 {
            0 => {
                let (value, used) = read_varint(bytes)?;
                bytes = &bytes[used..];
                Value::Varint(value)
            }
            1 => {
                let value = bytes.get(..8)?.try_into().ok()?;
                bytes = &bytes[8..];
                Value::Fixed64(value)
            }
            2 => {
                let (length, used) = read_varint(bytes)?;
                let length = usize::try_from(length).ok()?;
                let value = bytes.get(used..used.checked_add(length)?)?.to_vec();
                bytes = &bytes[used + length..];
                Value::Bytes(value)
            }
            5 => {
                let value = bytes.get(..4)?.try_into().ok()?;
                bytes = &bytes[4..];
                Value::Fixed32(value)
            }
            _ => return None,
        };
        fields.push((number, value));
    }
    Some(fields)
}

fn encode_fields(fields: &[(u32, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        let wire = match value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32(_) => 5,
        };
        out.extend(varint(u64::from(*number) << 3 | wire));
        match value {
            Value::Varint(v) => out.extend(varint(*v)),
            Value::Fixed64(v) => out.extend_from_slice(v),
            Value::Bytes(v) => {
                out.extend(varint(u64::try_from(v.len()).unwrap()));
                out.extend_from_slice(v);
            }
            Value::Fixed32(v) => out.extend_from_slice(v),
        }
    }
    out
}

/// Every field of `bytes`, nested messages included, as index paths.
fn field_paths(bytes: &[u8], prefix: &[usize], paths: &mut Vec<Vec<usize>>) {
    let Some(fields) = parse_fields(bytes) else {
        return;
    };
    for (i, (_, value)) in fields.iter().enumerate() {
        let mut path = prefix.to_vec();
        path.push(i);
        paths.push(path.clone());
        if let Value::Bytes(inner) = value
            && prefix.len() < 3
        {
            field_paths(inner, &path, paths);
        }
    }
}

/// A change to one field of a valid request that keeps it (mostly)
/// decodable: the odd values a hostile client would pick.
#[derive(Debug, Clone)]
enum Edit {
    /// A new value: the number for a varint, the bytes for the rest.
    Set(Index, u64, Vec<u8>),
    /// The field removed.
    Drop(Index),
    /// The field sent twice.
    Repeat(Index),
    /// A field the schema does not have.
    Unknown(u32, Vec<u8>),
}

/// Applies `edit` at `path` inside `fields`; false if the path is gone.
fn apply_at(fields: &mut Vec<(u32, Value)>, path: &[usize], edit: &Edit) -> bool {
    let Some(&at) = path.first() else {
        return false;
    };
    if at >= fields.len() {
        return false;
    }
    if path.len() > 1 {
        let Value::Bytes(inner) = &fields[at].1 else {
            return false;
        };
        let Some(mut nested) = parse_fields(inner) else {
            return false;
        };
        if !apply_at(&mut nested, &path[1..], edit) {
            return false;
        }
        fields[at].1 = Value::Bytes(encode_fields(&nested));
        return true;
    }
    match edit {
        Edit::Set(_, number, bytes) => {
            fields[at].1 = match &fields[at].1 {
                Value::Varint(_) => Value::Varint(*number),
                Value::Fixed64(_) => Value::Fixed64(number.to_le_bytes()),
                Value::Fixed32(_) => Value::Fixed32(number.to_le_bytes()[..4].try_into().unwrap()),
                Value::Bytes(_) => Value::Bytes(bytes.clone()),
            };
        }
        Edit::Drop(_) => {
            fields.remove(at);
        }
        Edit::Repeat(_) => {
            let copy = fields[at].clone();
            fields.insert(at + 1, copy);
        }
        Edit::Unknown(..) => return false,
    }
    true
}

/// `seed` with `edits` applied.
fn edited(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for edit in edits {
        let Some(mut fields) = parse_fields(&bytes) else {
            break;
        };
        match edit {
            Edit::Unknown(number, value) => fields.push((*number, Value::Bytes(value.clone()))),
            Edit::Set(at, ..) | Edit::Drop(at) | Edit::Repeat(at) => {
                let mut paths = Vec::new();
                field_paths(&bytes, &[], &mut paths);
                if paths.is_empty() {
                    continue;
                }
                let path = &paths[at.index(paths.len())];
                apply_at(&mut fields, path, edit);
            }
        }
        bytes = encode_fields(&fields);
    }
    bytes
}

/// Odd numbers: zero, limits, unknown enum values, anything.
fn odd_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(i64::MIN as u64),
        0u64..200,
        any::<u64>(),
    ]
}

/// Odd texts: any Unicode, control characters, very long, not UTF-8.
fn odd_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => any::<String>().prop_map(String::into_bytes),
        1 => Just(Vec::new()),
        1 => "[\u{0}-\u{1f}\u{7f}\u{202e}a-z]{0,8}".prop_map(String::into_bytes),
        1 => (100usize..60_000, "[ -~]").prop_map(|(n, c)| c.repeat(n).into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        6 => (any::<Index>(), odd_number(), odd_bytes())
            .prop_map(|(at, number, bytes)| Edit::Set(at, number, bytes)),
        1 => any::<Index>().prop_map(Edit::Drop),
        1 => any::<Index>().prop_map(Edit::Repeat),
        1 => (1u32..1000, odd_bytes()).prop_map(|(n, bytes)| Edit::Unknown(n, bytes)),
    ];
    proptest::collection::vec(edit, 1..4)
}

/// Payloads made from `seeds`.
fn payloads(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let seed = proptest::sample::select(seeds);
    prop_oneof![
        // Random bytes, small and large (up to near the 64 KiB limit).
        3 => proptest::collection::vec(any::<u8>(), 0..48),
        1 => proptest::collection::vec(any::<u8>(), 48..4096),
        1 => (1usize..60_000, any::<u8>()).prop_map(|(n, byte)| vec![byte; n]),
        // Truncations of a valid request.
        2 => (seed.clone(), any::<Index>()).prop_map(|(s, at)| {
            let end = at.index(s.len() + 1);
            s[..end].to_vec()
        }),
        // One to three flipped bits.
        4 => (seed.clone(), proptest::collection::vec((any::<Index>(), 0u8..8), 1..4))
            .prop_map(|(s, flips)| flip(s, &flips)),
        // Random bytes spliced in.
        2 => (seed.clone(), any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(mut s, at, bytes)| {
                let at = at.index(s.len() + 1);
                s.splice(at..at, bytes);
                s
            }),
        // A length-delimited field claiming a huge length.
        2 => (seed.clone(), any::<Index>(), 1u32..40, 1u64 << 20..u64::MAX)
            .prop_map(|(mut s, at, field, length)| {
                let at = at.index(s.len() + 1);
                let mut field = varint(u64::from(field << 3 | 2));
                field.extend(varint(length));
                s.splice(at..at, field);
                s
            }),
        // Valid requests with odd field values.
        24 => (seed.clone(), edits()).prop_map(|(s, edits)| edited(&s, &edits)),
        // The seed itself.
        1 => seed,
    ]
    .boxed()
}

fn fuzzed(target: &Target) -> BoxedStrategy<Fuzzed> {
    let framing = prop_oneof![
        12 => Just(Framing::Exact),
        1 => (1u16..2000).prop_map(Framing::Short),
        1 => (LIMIT + 1..=u32::MAX).prop_map(Framing::Huge),
        1 => (1u8..=255).prop_map(Framing::Flag),
        1 => Just(Framing::Empty),
    ];
    let key = prop_oneof![
        6 => Just(Key::Valid),
        1 => Just(Key::Wrong),
        1 => Just(Key::Missing),
    ];
    (payloads(target.seeds.clone()), framing, key)
        .prop_map(|(payload, framing, key)| Fuzzed {
            payload,
            framing,
            key,
        })
        .boxed()
}

/// What came back for one call.
#[derive(Debug, Default)]
struct Answer {
    http: u16,
    code: Option<Code>,
    message: String,
    /// The response's gRPC messages (for `Connect`, after the handshake).
    messages: Vec<Vec<u8>>,
}

/// `grpc-message` is percent-encoded on the wire.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gRPC status in `map`, if any.
fn status_in(map: &http::HeaderMap) -> Option<(Code, String)> {
    let code = map.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    let message = map
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decoded)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// Reads gRPC messages off a response body.
struct Inbound {
    body: h2::RecvStream,
    buffer: Vec<u8>,
}

impl Inbound {
    /// The next message; `None` at the end of the body.
    async fn message(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if self.buffer.len() >= 5 {
                let length =
                    usize::try_from(u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()))
                        .unwrap();
                if self.buffer.len() >= 5 + length {
                    let message = self.buffer[5..5 + length].to_vec();
                    self.buffer.drain(..5 + length);
                    return Ok(Some(message));
                }
            }
            let chunk = tokio::time::timeout(ANSWER_WAIT, self.body.data())
                .await
                .map_err(|_| "no response data within 5 s".to_owned())?;
            match chunk {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.buffer.extend_from_slice(&chunk);
                }
                Some(Err(error)) => return Err(format!("the response stream failed: {error}")),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err("the response ends inside a message".to_owned()),
            }
        }
    }

    /// The remaining messages and the trailers' status.
    async fn finish(mut self, answer: &mut Answer) -> Result<(), String> {
        while let Some(message) = self.message().await? {
            answer.messages.push(message);
        }
        let trailers = tokio::time::timeout(ANSWER_WAIT, self.body.trailers())
            .await
            .map_err(|_| "no trailers within 5 s".to_owned())?
            .map_err(|error| format!("the trailers failed: {error}"))?
            .ok_or("the response ended without trailers")?;
        let (code, message) = status_in(&trailers).ok_or("trailers without grpc-status")?;
        answer.code = Some(code);
        answer.message = message;
        Ok(())
    }
}

/// One raw HTTP/2 connection to the server, shared by every fuzzed call.
struct Wire {
    addr: SocketAddr,
    client: h2::client::SendRequest<Bytes>,
    api_key: String,
}

impl Wire {
    async fn open(addr: SocketAddr, api_key: &str) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        Self {
            addr,
            client,
            api_key: api_key.to_owned(),
        }
    }

    /// Starts a call to `path`; the response and the request body's sender.
    async fn start(
        &self,
        path: &str,
        key: Key,
        body: Vec<u8>,
        end: bool,
    ) -> Result<(http::Response<h2::RecvStream>, h2::SendStream<Bytes>), String> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        match key {
            Key::Valid => {
                request = request.header("authorization", format!("Bearer {}", self.api_key))
            }
            Key::Wrong => {
                request = request.header("authorization", "Bearer assent_0000000000000000000000")
            }
            Key::Missing => {}
        }
        let mut client = tokio::time::timeout(ANSWER_WAIT, self.client.clone().ready())
            .await
            .map_err(|_| "the connection has no room for a stream within 5 s".to_owned())?
            .map_err(|error| format!("the connection is gone: {error}"))?;
        let (response, mut send) = client
            .send_request(request.body(()).unwrap(), body.is_empty() && end)
            .map_err(|error| format!("cannot open a stream: {error}"))?;
        if !body.is_empty() {
            // A stream the server already refused may be reset meanwhile.
            let _ = send.send_data(Bytes::from(body), end);
        }
        let response = tokio::time::timeout(ANSWER_WAIT, response)
            .await
            .map_err(|_| "no response headers within 5 s".to_owned())?
            .map_err(|error| format!("the stream failed before its headers: {error}"))?;
        Ok((response, send))
    }

    /// A call whose whole request goes out at once: unary calls, `Subscribe`
    /// (a started stream is dropped and counts as OK), `Connect` without a
    /// hello.
    async fn call(&self, path: &str, key: Key, body: Vec<u8>) -> Result<Answer, String> {
        let (response, _send) = self.start(path, key, body, true).await?;
        let mut answer = Answer {
            http: response.status().as_u16(),
            ..Answer::default()
        };
        if let Some((code, message)) = status_in(response.headers()) {
            answer.code = Some(code);
            answer.message = message;
            return Ok(answer);
        }
        if path.ends_with("/Subscribe") {
            // The stream started: the request was taken. Dropping both
            // halves resets it.
            answer.code = Some(Code::Ok);
            return Ok(answer);
        }
        let inbound = Inbound {
            body: response.into_body(),
            buffer: Vec::new(),
        };
        inbound.finish(&mut answer).await?;
        Ok(answer)
    }

    /// `Connect` as `device`: the challenge answered with a signed hello,
    /// Ready awaited, then `body` sent and the stream's end read.
    async fn connect_as(&self, device: &TestDevice, body: Vec<u8>) -> Result<Answer, String> {
        let path = "/assent.v1.DeviceService/Connect";
        let (response, mut send) = self.start(path, Key::Missing, Vec::new(), false).await?;
        if response.status() != 200 || status_in(response.headers()).is_some() {
            return Err(format!("Connect refused at once: {:?}", response.headers()));
        }
        let mut inbound = Inbound {
            body: response.into_body(),
            buffer: Vec::new(),
        };
        let first = inbound.message().await?.ok_or("no challenge")?;
        let Some(server_message::Body::Challenge(challenge)) =
            ServerMessage::decode(first.as_slice()).unwrap().body
        else {
            return Err("the first message is not a challenge".to_owned());
        };
        let signature = device.key.sign(&assent_proto::signing::hello_bytes(
            &device.device_id,
            &challenge.nonce,
        ));
        let hello = AgentMessage {
            body: Some(agent_message::Body::Hello(Hello {
                device_id: device.device_id.clone(),
                signature: signature.to_bytes().to_vec(),
            })),
        };
        send.send_data(Bytes::from(grpc_frame(&hello.encode_to_vec())), false)
            .map_err(|error| format!("cannot send the hello: {error}"))?;
        let ready = inbound.message().await?.ok_or("no answer to the hello")?;
        if !matches!(
            ServerMessage::decode(ready.as_slice()).unwrap().body,
            Some(server_message::Body::Ready(_))
        ) {
            return Err("the hello was not answered with Ready".to_owned());
        }
        if body.is_empty() {
            let _ = send.send_data(Bytes::new(), true);
        } else {
            let _ = send.send_data(Bytes::from(body), true);
        }
        let mut answer = Answer {
            http: 200,
            ..Answer::default()
        };
        inbound.finish(&mut answer).await?;
        Ok(answer)
    }
}

/// The beginnings of tonic's own refusals of a request that is not a
/// well-formed message: these, and only these, may be `INTERNAL`.
const WIRE_REFUSALS: &[&str] = &[
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "protocol error: received message with",
    "Missing request message",
];

/// Judges one answer.
fn judge(target: &Target, input: &Fuzzed, answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert_eq!(answer.http, 200, "a gRPC answer, not an HTTP error");
    let code = answer
        .code
        .ok_or_else(|| TestCaseError::fail("an answer without grpc-status"))?;
    let said = &answer.message;
    prop_assert_ne!(code, Code::Unknown, "UNKNOWN (a panic?): {}", said);
    let well_formed = input.is_well_formed(target);
    if input.framing != Framing::Empty && input.payload.len() > LIMIT as usize {
        // Over the message limit, whatever its bytes.
        prop_assert_eq!(
            code,
            Code::ResourceExhausted,
            "an oversized message: {}",
            said
        );
        return Ok(());
    }
    match target.shape {
        Shape::Unary | Shape::ServerStream | Shape::DeviceUnary => {
            if !well_formed {
                // Refused by the wire layer, before any handler.
                let expected = match input.framing {
                    Framing::Huge(_) => Code::ResourceExhausted,
                    _ => Code::Internal,
                };
                prop_assert_eq!(code, expected, "bytes that are no request: {}", said);
                if code == Code::Internal {
                    prop_assert!(
                        WIRE_REFUSALS.iter().any(|w| said.starts_with(w)),
                        "INTERNAL from past the decoder: {}",
                        said
                    );
                }
            } else if target.shape != Shape::DeviceUnary && input.key != Key::Valid {
                prop_assert_eq!(code, Code::Unauthenticated, "no valid key: {}", said);
            } else {
                prop_assert!(
                    code == Code::Ok || target.documented.contains(&code),
                    "{:?} is not documented for this RPC: {}",
                    code,
                    said
                );
                if code == Code::Ok && target.shape != Shape::ServerStream {
                    prop_assert_eq!(answer.messages.len(), 1, "OK with one response message");
                }
            }
        }
        Shape::ConnectFirst => {
            let expected: &[Code] = match input.framing {
                Framing::Huge(_) => &[Code::ResourceExhausted],
                // The stream ended without a hello.
                _ if input.has_no_message() => &[Code::Unauthenticated],
                _ if !well_formed => &[Code::InvalidArgument],
                _ => match AgentMessage::decode(input.payload.as_slice()).unwrap().body {
                    Some(agent_message::Body::Hello(_)) => &[
                        Code::InvalidArgument,
                        Code::NotFound,
                        Code::Unauthenticated,
                        Code::PermissionDenied,
                    ],
                    // A decision whose fields do not parse is refused as
                    // malformed before it is seen to come first.
                    Some(agent_message::Body::Decision(_)) => {
                        &[Code::Unauthenticated, Code::InvalidArgument]
                    }
                    _ => &[Code::Unauthenticated],
                },
            };
            prop_assert!(
                expected.contains(&code),
                "{:?}, expected one of {:?}: {}",
                code,
                expected,
                said
            );
            // The challenge, and nothing after it.
            prop_assert_eq!(answer.messages.len(), 1, "only the challenge");
            let first = ServerMessage::decode(answer.messages[0].as_slice());
            prop_assert!(
                matches!(
                    first.ok().and_then(|m| m.body),
                    Some(server_message::Body::Challenge(_))
                ),
                "the server speaks first with a challenge"
            );
        }
        Shape::ConnectAuthenticated => {
            let expected: &[Code] = match input.framing {
                Framing::Huge(_) => &[Code::ResourceExhausted],
                // The device ended its stream: a clean end.
                _ if input.has_no_message() => &[Code::Ok],
                _ if !well_formed => &[Code::InvalidArgument],
                _ => match AgentMessage::decode(input.payload.as_slice()).unwrap().body {
                    // Revoked: the stream ends PERMISSION_DENIED, unless the
                    // device's own end came first.
                    Some(agent_message::Body::Unenroll(_)) => &[Code::Ok, Code::PermissionDenied],
                    _ => &[Code::Ok],
                },
            };
            prop_assert!(
                expected.contains(&code),
                "{:?}, expected one of {:?}: {}",
                code,
                expected,
                said
            );
            for message in &answer.messages {
                let message = ServerMessage::decode(message.as_slice());
                prop_assert!(message.is_ok(), "an undecodable server message");
                if let Some(server_message::Body::Rejection(rejection)) = message.unwrap().body {
                    // A refusal that keeps the stream: a documented code.
                    let documented = [
                        Code::InvalidArgument,
                        Code::NotFound,
                        Code::PermissionDenied,
                        Code::FailedPrecondition,
                        Code::ResourceExhausted,
                    ];
                    prop_assert!(
                        documented.contains(&Code::from_i32(rejection.code)),
                        "a rejection with code {}: {}",
                        rejection.code,
                        rejection.message
                    );
                }
            }
        }
    }
    Ok(())
}

/// The server, its data and the shared connection.
struct World {
    _db: TestDb,
    server: TestServer,
    app: TestApp,
    rp: RpClient,
    wire: Wire,
    /// The device whose stream is fuzzed after its hello (replaced when a
    /// fuzzed message unenrolls it).
    device: Mutex<Option<TestDevice>>,
    replaced: AtomicUsize,
    targets: Vec<Target>,
    /// How often each target answered each code, for the summary.
    tally: Mutex<std::collections::BTreeMap<(usize, i32), usize>>,
}

impl World {
    async fn start() -> Self {
        let db = TestDb::sqlite();
        let server = TestServer::start_with(&db, |config| {
            // Throttles are tested elsewhere; here they would only turn
            // every later call into RESOURCE_EXHAUSTED.
            config.create_burst = 1_000_000;
            config.create_rate_per_second = 1_000_000.0;
            config.api_key_refusal_burst = 1_000_000;
            config.api_key_refusals_per_minute = 1_000_000.0;
            config.enroll_refusal_burst = 1_000_000;
            config.enroll_refusals_per_minute = 1_000_000.0;
            config.max_subscribers_per_key = 100_000;
        })
        .await;
        let app = TestApp::create(&db, "Shop").await;
        let mut rp = rp_client(&server, &app.api_key).await;
        // alice answers pushes, carol is there to be revoked, bob's stream
        // is fuzzed, dave's enrollment code seeds Enroll.
        let alice = TestDevice::enroll(&server, &app, "alice").await;
        let carol = TestDevice::enroll(&server, &app, "carol").await;
        let bob = TestDevice::enroll(&server, &app, "bob").await;
        let cancelled = otp_for(&mut rp, "").await.0;
        rp.cancel_transaction(CancelTransactionRequest {
            transaction_id: cancelled.clone(),
        })
        .await
        .unwrap();
        let (_, bob_otp) = otp_for(&mut rp, "bob").await;
        let (_, scanned_otp) = otp_for(&mut rp, "bob").await;
        let decision = {
            let mut stream = bob.connect(&server).await.unwrap();
            let request = stream.scan(&scanned_otp).await;
            bob.decision(&request, SignedVerdict::Accept, "")
        };
        let enroll = {
            let code = assent_tests::enrollment_code(&mut rp, "dave").await;
            let key = SigningKey::from_bytes(&[7; 32]);
            let public_key = key.verifying_key().to_bytes().to_vec();
            let proof = key.sign(&assent_proto::signing::enroll_bytes(
                &code,
                &public_key,
                "fuzzed",
            ));
            EnrollRequest {
                code,
                public_key,
                device_name: "fuzzed".to_owned(),
                proof: proof.to_bytes().to_vec(),
            }
        };
        let context = || [("ip".to_owned(), "192.0.2.1".to_owned())].into();
        let hello = |device: &TestDevice| AgentMessage {
            body: Some(agent_message::Body::Hello(Hello {
                device_id: device.device_id.clone(),
                signature: vec![1; 64],
            })),
        };
        let submit = AgentMessage {
            body: Some(agent_message::Body::SubmitOtp(SubmitOtp {
                request_id: 7,
                otp: bob_otp,
            })),
        };
        let decide = AgentMessage {
            body: Some(agent_message::Body::Decision(decision)),
        };
        let rp_service = |method: &str| -> &'static str {
            Box::leak(format!("/assent.v1.RelyingPartyService/{method}").into_boxed_str())
        };
        use Code::{
            FailedPrecondition, InvalidArgument, NotFound, OutOfRange, PermissionDenied,
            ResourceExhausted,
        };
        let targets = vec![
            Target {
                path: rp_service("CreateEnrollment"),
                shape: Shape::Unary,
                seeds: vec![
                    CreateEnrollmentRequest {
                        user_id: "alice".to_owned(),
                        ttl_seconds: 600,
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<CreateEnrollmentRequest>,
                documented: &[InvalidArgument, ResourceExhausted],
            },
            Target {
                path: rp_service("CreateOtpAuthentication"),
                shape: Shape::Unary,
                seeds: vec![
                    CreateOtpAuthenticationRequest {
                        message: "Log in to Shop?".to_owned(),
                        ttl_seconds: 120,
                        context: context(),
                        user_id: "alice".to_owned(),
                        binding: vec![5; 32],
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<CreateOtpAuthenticationRequest>,
                documented: &[InvalidArgument, ResourceExhausted],
            },
            Target {
                path: rp_service("CreatePushAuthentication"),
                shape: Shape::Unary,
                seeds: vec![
                    CreatePushAuthenticationRequest {
                        user_id: "alice".to_owned(),
                        message: "Log in to Shop?".to_owned(),
                        ttl_seconds: 60,
                        context: context(),
                        number_matching: true,
                        binding: vec![5; 32],
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<CreatePushAuthenticationRequest>,
                documented: &[InvalidArgument, FailedPrecondition, ResourceExhausted],
            },
            Target {
                path: rp_service("GetTransaction"),
                shape: Shape::Unary,
                seeds: vec![
                    GetTransactionRequest {
                        transaction_id: cancelled.clone(),
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<GetTransactionRequest>,
                documented: &[InvalidArgument, NotFound],
            },
            Target {
                path: rp_service("CancelTransaction"),
                shape: Shape::Unary,
                seeds: vec![
                    CancelTransactionRequest {
                        transaction_id: cancelled.clone(),
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<CancelTransactionRequest>,
                documented: &[InvalidArgument, NotFound, FailedPrecondition],
            },
            Target {
                path: rp_service("Subscribe"),
                shape: Shape::ServerStream,
                seeds: vec![
                    SubscribeRequest {
                        after_cursor: 1,
                        from_head: false,
                    }
                    .encode_to_vec(),
                    SubscribeRequest {
                        after_cursor: 0,
                        from_head: true,
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<SubscribeRequest>,
                documented: &[InvalidArgument, OutOfRange, ResourceExhausted],
            },
            Target {
                path: rp_service("ListDevices"),
                shape: Shape::Unary,
                seeds: vec![
                    ListDevicesRequest {
                        user_id: "alice".to_owned(),
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<ListDevicesRequest>,
                documented: &[InvalidArgument],
            },
            Target {
                path: rp_service("GetDevice"),
                shape: Shape::Unary,
                seeds: vec![
                    GetDeviceRequest {
                        device_id: alice.device_id.clone(),
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<GetDeviceRequest>,
                documented: &[InvalidArgument, NotFound],
            },
            Target {
                path: rp_service("RevokeDevice"),
                shape: Shape::Unary,
                seeds: vec![
                    RevokeDeviceRequest {
                        device_id: carol.device_id.clone(),
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<RevokeDeviceRequest>,
                documented: &[InvalidArgument, NotFound, FailedPrecondition],
            },
            Target {
                path: rp_service("WaitTransaction"),
                shape: Shape::Unary,
                seeds: vec![
                    // A terminal transaction: a wait never outlasts the run.
                    WaitTransactionRequest {
                        transaction_id: cancelled.clone(),
                        timeout_ms: 1_000,
                    }
                    .encode_to_vec(),
                ],
                decodes: decodes::<WaitTransactionRequest>,
                documented: &[InvalidArgument, NotFound],
            },
            Target {
                path: rp_service("ListServerKeys"),
                shape: Shape::Unary,
                seeds: vec![ListServerKeysRequest {}.encode_to_vec()],
                decodes: decodes::<ListServerKeysRequest>,
                documented: &[],
            },
            Target {
                path: "/assent.v1.DeviceService/Enroll",
                shape: Shape::DeviceUnary,
                seeds: vec![enroll.encode_to_vec()],
                decodes: decodes::<EnrollRequest>,
                documented: &[
                    InvalidArgument,
                    NotFound,
                    PermissionDenied,
                    FailedPrecondition,
                    ResourceExhausted,
                ],
            },
            Target {
                path: "/assent.v1.DeviceService/Connect",
                shape: Shape::ConnectFirst,
                seeds: vec![
                    hello(&bob).encode_to_vec(),
                    submit.encode_to_vec(),
                    decide.encode_to_vec(),
                ],
                decodes: decodes::<AgentMessage>,
                documented: &[],
            },
            Target {
                path: "/assent.v1.DeviceService/Connect",
                shape: Shape::ConnectAuthenticated,
                seeds: vec![
                    submit.encode_to_vec(),
                    decide.encode_to_vec(),
                    hello(&bob).encode_to_vec(),
                ],
                decodes: decodes::<AgentMessage>,
                documented: &[],
            },
        ];
        let wire = Wire::open(server.addr, &app.api_key).await;
        Self {
            _db: db,
            server,
            app,
            rp,
            wire,
            device: Mutex::new(Some(bob)),
            replaced: AtomicUsize::new(0),
            targets,
            tally: Mutex::default(),
        }
    }

    /// Sends one fuzzed request to `target` and judges the answer.
    async fn check(
        &self,
        index: usize,
        target: &Target,
        input: &Fuzzed,
    ) -> Result<(), TestCaseError> {
        let answer = if target.shape == Shape::ConnectAuthenticated {
            let device = self.device.lock().unwrap().take().unwrap();
            let answer = self.wire.connect_as(&device, input.body()).await;
            let unenrolled = input.is_well_formed(target)
                && matches!(
                    AgentMessage::decode(input.payload.as_slice()).unwrap().body,
                    Some(agent_message::Body::Unenroll(_))
                );
            let device = if unenrolled {
                // The fuzzed message revoked the device: a new one.
                self.replaced.fetch_add(1, Ordering::Relaxed);
                TestDevice::enroll(&self.server, &self.app, "bob").await
            } else {
                device
            };
            *self.device.lock().unwrap() = Some(device);
            answer
        } else {
            self.wire.call(target.path, input.key, input.body()).await
        };
        let answer = answer.map_err(|why| TestCaseError::fail(format!("no gRPC answer: {why}")))?;
        let code = answer.code.map_or(-1, |code| code as i32);
        *self.tally.lock().unwrap().entry((index, code)).or_default() += 1;
        judge(target, input, &answer)
    }

    /// A normal call on the fuzzed connection and on a fresh client.
    async fn still_serves(&self) {
        let request = CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        };
        let answer = self
            .wire
            .call(
                "/assent.v1.RelyingPartyService/CreateOtpAuthentication",
                Key::Valid,
                grpc_frame(&request.encode_to_vec()),
            )
            .await
            .expect("the fuzzed connection still answers");
        assert_eq!(answer.code, Some(Code::Ok), "{answer:?}");
        let mut rp = self.rp.clone();
        rp.create_otp_authentication(request)
            .await
            .expect("a normal client is served");
    }
}

/// A new OTP login, for `user` (empty: any); its id and OTP.
async fn otp_for(rp: &mut RpClient, user: &str) -> (String, String) {
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ttl_seconds: 600,
            user_id: user.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (created.transaction_id, created.otp)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn case_42_fuzzed_requests_on_every_rpc_never_crash_or_succeed_on_garbage() {
    let seed = env_number("ASSENT_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_number("ASSENT_FUZZ_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(CASES_PER_RPC);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(World::start());
    let fuzzed_paths: BTreeSet<String> = world.targets.iter().map(|t| t.path.to_owned()).collect();
    assert_eq!(
        fuzzed_paths,
        rpcs_in_descriptor(),
        "every RPC of assent.v1 is fuzzed (a new RPC needs a Target here)"
    );
    let started = Instant::now();
    let skipped = AtomicUsize::new(0);
    let mut ran = 0;
    for (index, target) in world.targets.iter().enumerate() {
        let mut rng_seed = [0u8; 32];
        rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
        rng_seed[8] = u8::try_from(index).unwrap();
        let mut config = Config::with_cases(cases);
        config.failure_persistence = None;
        config.max_shrink_iters = 200;
        config.max_shrink_time = 15_000;
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed));
        let result = runner.run(&fuzzed(target), |input| {
            if started.elapsed() > BUDGET {
                skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            runtime.block_on(world.check(index, target, &input))
        });
        if let Err(error) = result {
            panic!(
                "{} ({:?}): {error}\nreplay with ASSENT_FUZZ_SEED={seed} ASSENT_FUZZ_CASES={cases}",
                target.path, target.shape
            );
        }
        ran += cases;
    }
    runtime.block_on(world.still_serves());
    let skipped = skipped.into_inner();
    eprintln!(
        "fuzzed {} targets, {} cases ({} skipped past the {} s budget), {} device(s) \
         re-enrolled after a fuzzed Unenroll, in {:.1} s (ASSENT_FUZZ_SEED={seed})",
        world.targets.len(),
        ran,
        skipped,
        BUDGET.as_secs(),
        world.replaced.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let tally = world.tally.lock().unwrap().clone();
    for (index, target) in world.targets.iter().enumerate() {
        let codes: Vec<String> = tally
            .iter()
            .filter(|((i, _), _)| *i == index)
            .map(|((_, code), n)| format!("{:?} {n}", Code::from_i32(*code)))
            .collect();
        eprintln!(
            "  {} ({:?}): {}",
            target.path,
            target.shape,
            codes.join(", ")
        );
    }
    drop(world);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
