//! A hostile HTTP/2 client written frame by frame over a raw TCP
//! connection (RFC 9113 §4.1: a 9-byte header of a 24-bit length, type,
//! flags and 31-bit stream id), with header blocks as HPACK literals
//! without indexing or Huffman (RFC 7541 §6.2.2): what an attacker sends,
//! byte for byte, and what the server did to the connection (GOAWAY, end).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HEADERS frame type (RFC 9113 §6.2).
pub const HEADERS: u8 = 0x1;
/// RST_STREAM frame type (§6.4).
pub const RST_STREAM: u8 = 0x3;
/// SETTINGS frame type (§6.5).
pub const SETTINGS: u8 = 0x4;
/// PING frame type (§6.7).
pub const PING: u8 = 0x6;
/// GOAWAY frame type (§6.8).
pub const GOAWAY: u8 = 0x7;
/// CONTINUATION frame type (§6.10).
pub const CONTINUATION: u8 = 0x9;
/// END_HEADERS flag of HEADERS and CONTINUATION: the header block ends here.
pub const END_HEADERS: u8 = 0x4;
/// CANCEL error code (§7).
pub const CANCEL: u32 = 0x8;
/// COMPRESSION_ERROR error code (§7).
pub const COMPRESSION_ERROR: u32 = 0x9;
/// ENHANCE_YOUR_CALM error code (§7): the peer is abusive.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: its 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    assert!(length < 1 << 24, "a frame's length has 24 bits");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string: its length (7-bit prefix, RFC 7541 §5.1; no Huffman),
/// then its bytes.
fn hpack_string(block: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes.len();
    if rest < 127 {
        block.push(u8::try_from(rest).unwrap());
    } else {
        block.push(127);
        rest -= 127;
        while rest >= 128 {
            block.push(u8::try_from(rest % 128).unwrap() | 0x80);
            rest /= 128;
        }
        block.push(u8::try_from(rest).unwrap());
    }
    block.extend_from_slice(bytes);
}

/// A header field as a literal without indexing, with a new name.
pub fn literal(block: &mut Vec<u8>, name: &str, value: &[u8]) {
    block.push(0x00);
    hpack_string(block, name.as_bytes());
    hpack_string(block, value);
}

/// The header block of a unary gRPC call to `path` with `api_key`.
pub fn request_block(addr: SocketAddr, path: &str, api_key: &str) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, ":method", b"POST");
    literal(&mut block, ":scheme", b"http");
    literal(&mut block, ":path", path.as_bytes());
    literal(&mut block, ":authority", addr.to_string().as_bytes());
    literal(&mut block, "content-type", b"application/grpc");
    literal(&mut block, "te", b"trailers");
    literal(
        &mut block,
        "authorization",
        format!("Bearer {api_key}").as_bytes(),
    );
    block
}

/// What the attacker has seen the server do to its connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// The error code of the server's GOAWAY, if one came.
    pub goaway: Option<u32>,
    /// Whether the connection has ended (end of stream or an error).
    pub is_closed: bool,
}

impl Seen {
    /// Whether the server has ended the connection (GOAWAY or close).
    pub fn has_ended(&self) -> bool {
        self.goaway.is_some() || self.is_closed
    }
}

/// Opens a TCP connection and sends the client preface and an empty
/// SETTINGS frame; with `recv_buffer`, the socket's receive buffer is that
/// small (so what the attacker does not read stays at the server).
pub async fn open(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
}

/// A hostile client that writes raw frames and watches what comes back.
pub struct Attacker {
    writer: OwnedWriteHalf,
    seen: watch::Receiver<Seen>,
    reader: tokio::task::JoinHandle<()>,
}

impl Attacker {
    /// An attacker on a fresh connection (preface and SETTINGS sent).
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::reading(open(addr, None).await)
    }

    /// Starts reading `stream`'s frames (only GOAWAY and the end matter).
    pub fn reading(stream: TcpStream) -> Self {
        let (reader, writer) = stream.into_split();
        let (tell, seen) = watch::channel(Seen::default());
        let reader = tokio::spawn(read_frames(reader, tell));
        Self {
            writer,
            seen,
            reader,
        }
    }

    /// Writes `bytes`; false once the server has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    /// Whether the server has ended the connection by now.
    pub fn has_ended(&self) -> bool {
        self.seen.borrow().has_ended()
    }

    /// What the server did once it ended the connection, if it did within
    /// `wait`.
    pub async fn ended_within(&mut self, wait: Duration) -> Option<Seen> {
        tokio::time::timeout(wait, self.seen.wait_for(Seen::has_ended))
            .await
            .ok()
            .map(|seen| *seen.unwrap())
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads frames until the connection ends, telling GOAWAYs and the end.
async fn read_frames(mut reader: OwnedReadHalf, tell: watch::Sender<Seen>) {
    let mut head = [0u8; 9];
    while reader.read_exact(&mut head).await.is_ok() {
        let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; length];
        if reader.read_exact(&mut payload).await.is_err() {
            break;
        }
        if head[3] == GOAWAY && payload.len() >= 8 {
            let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
            tell.send_modify(|seen| seen.goaway = Some(code));
        }
    }
    tell.send_modify(|seen| seen.is_closed = true);
}
