//! Accepted connections, bounded: how many at once (in all and per peer
//! address), how long one may take to send its first request, how long one
//! may sit with no call in progress, and closed when its peer does not
//! finish a request in time. A connection is closed only for what it does
//! itself; a stream that must end is reset alone (`transport`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one peer address at most.
    pub max_per_peer: usize,
    /// Time from accept to the first request.
    pub handshake_timeout: Duration,
    /// Time a connection may stay with no call in progress.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// These limits with the connection cap lowered to fit the process's
    /// open-file limit (`soft_limit`), keeping `reserve` descriptors for
    /// everything else (database connections, the metrics port, files):
    /// silent connections must never take the descriptors a normal client
    /// or the database needs.
    pub fn within_open_files(mut self, soft_limit: u64, reserve: u64) -> Self {
        let fit = usize::try_from(soft_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(fit.max(1));
        self.max_per_peer = self.max_per_peer.min(self.max_connections);
        self
    }
}

/// The process's soft open-file limit, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _hard)| soft)
}

/// The open connections of one server.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicUsize,
}

impl Connections {
    /// No connection yet.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            per_peer: Mutex::new(HashMap::new()),
            refused: AtomicUsize::new(0),
        })
    }

    /// Admits an accepted stream, or `None` (the stream is then closed) when
    /// a limit is reached; refusals are logged once per 100.
    pub fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<ClosableIo> {
        let peer = stream.peer_addr().ok().map(|addr| addr.ip());
        let slot = self.claim(peer);
        if slot.is_none() {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed);
            if refused.is_multiple_of(100) {
                tracing::warn!(
                    ?peer,
                    refused = refused + 1,
                    "connection limit reached; closing new connections"
                );
            }
        }
        slot.map(|slot| ClosableIo::new(stream, slot, self.limits))
    }

    fn claim(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<Slot> {
        let limits = self.limits;
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        let mut slot = Slot {
            connections: Arc::clone(self),
            peer: None,
        };
        if open >= limits.max_connections {
            return None;
        }
        if let Some(peer) = peer {
            let mut per_peer = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
            let count = per_peer.entry(peer).or_default();
            if *count >= limits.max_per_peer {
                return None;
            }
            *count += 1;
            slot.peer = Some(peer);
        }
        Some(slot)
    }
}

/// One admitted connection's place in the counts, given back on drop.
#[derive(Debug)]
struct Slot {
    connections: Arc<Connections>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(peer) = self.peer {
            let mut per_peer = self
                .connections
                .per_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_peer.get_mut(&peer) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_peer.remove(&peer);
                }
            }
        }
    }
}

/// Calls in progress on one connection, and since when none has been.
#[derive(Debug)]
struct Usage {
    calls: AtomicUsize,
    has_called: AtomicBool,
    idle_since: Mutex<Instant>,
    /// Cancelled when the peer misbehaved (a request it never finished):
    /// the connection closes.
    misbehaved: CancellationToken,
}

/// Marks the connection in use while held (by a call and its response body).
#[derive(Debug)]
pub struct InUse(Arc<Usage>);

impl Drop for InUse {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }
}

/// What a request learns about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    usage: Arc<Usage>,
}

impl ConnectionInfo {
    /// Closes the connection: its peer misbehaved (did not finish a request
    /// in time). Its other streams end too — they share the peer.
    pub fn misbehaved(&self) {
        self.usage.misbehaved.cancel();
    }

    /// Marks the connection in use until the returned guard drops.
    pub fn in_use(&self) -> InUse {
        self.usage.has_called.store(true, Ordering::Release);
        self.usage.calls.fetch_add(1, Ordering::AcqRel);
        InUse(Arc::clone(&self.usage))
    }
}

/// A TCP connection with its bounds.
pub struct ClosableIo {
    stream: TcpStream,
    misbehaved: Pin<Box<WaitForCancellationFutureOwned>>,
    usage: Arc<Usage>,
    limits: ConnectionLimits,
    accepted: Instant,
    timer: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl ClosableIo {
    fn new(stream: TcpStream, slot: Slot, limits: ConnectionLimits) -> Self {
        let accepted = Instant::now();
        let misbehaved = CancellationToken::new();
        Self {
            stream,
            misbehaved: Box::pin(misbehaved.clone().cancelled_owned()),
            usage: Arc::new(Usage {
                calls: AtomicUsize::new(0),
                has_called: AtomicBool::new(false),
                idle_since: Mutex::new(accepted),
                misbehaved,
            }),
            limits,
            accepted,
            timer: Box::pin(tokio::time::sleep_until(
                accepted + limits.handshake_timeout,
            )),
            _slot: slot,
        }
    }

    /// Ready with an error once the connection must close: its peer
    /// misbehaved, no first request in time, or idle too long. Registers
    /// the task to wake when that happens.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.misbehaved.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not finish a request in time",
            ));
        }
        if self.usage.calls.load(Ordering::Acquire) > 0 {
            return Poll::Pending;
        }
        let deadline = if self.usage.has_called.load(Ordering::Acquire) {
            *self
                .usage
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                + self.limits.idle_timeout
        } else {
            self.accepted + self.limits.handshake_timeout
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer
            .as_mut()
            .poll(cx)
            .map(|()| io::Error::new(io::ErrorKind::TimedOut, "connection idle"))
    }
}

impl Connected for ClosableIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            remote: self.stream.peer_addr().ok(),
            usage: Arc::clone(&self.usage),
        }
    }
}

impl AsyncRead for ClosableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_closed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.misbehaved.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connection a request came on, with or without TLS.
pub fn of<T>(request: &tonic::Request<T>) -> Option<ConnectionInfo> {
    request.extensions().get::<ConnectionInfo>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 4096,
            max_per_peer: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn the_cap_fits_the_open_file_limit_with_a_reserve() {
        let fitted = limits().within_open_files(1024, 200);
        assert_eq!(fitted.max_connections, 824);
        assert_eq!(fitted.max_per_peer, 256);
        let tight = limits().within_open_files(300, 200);
        assert_eq!(tight.max_connections, 100);
        assert_eq!(tight.max_per_peer, 100);
        let roomy = limits().within_open_files(1 << 20, 200);
        assert_eq!(
            roomy.max_connections, 4096,
            "a configured cap below the limit stays"
        );
        assert_eq!(limits().within_open_files(10, 200).max_connections, 1);
    }
}
