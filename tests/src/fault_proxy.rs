//! A loopback TCP proxy in front of a server (PostgreSQL, in the fault
//! tests) that can cut every connection and refuse new ones for a while —
//! a database restart as the server sees it, without touching the shared
//! database. A trap ([`FaultProxy::cut_on`]) cuts at one exact message:
//! the first one that carries given bytes (a decision's signature, say),
//! either before it reaches the database or after the database has
//! answered it, with the answer withheld from the client.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Where a trap cuts, relative to the message that sets it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutAt {
    /// The message never reaches the server: the cut happens instead.
    Before,
    /// The message reaches the server; once the server has answered it
    /// (PostgreSQL's `ReadyForQuery`: the statement's implicit transaction
    /// has committed or failed) the cut happens and the answer is dropped,
    /// so the client sees a broken connection.
    AfterReply,
}

/// A cut waiting for its message.
struct Trap {
    needle: Vec<u8>,
    at: CutAt,
    /// Every connection, leaving the proxy down; or only the one that
    /// carried the message (a single broken connection; the others and new
    /// ones are served).
    everything: bool,
    fired: oneshot::Sender<()>,
}

/// A trap that went off on a connection after its message was forwarded.
struct Sprung {
    everything: bool,
    fired: oneshot::Sender<()>,
}

/// What the connections share.
struct Shared {
    down: AtomicBool,
    cuts: watch::Sender<u64>,
    trap: Mutex<Option<Trap>>,
}

impl Shared {
    fn cut(&self) {
        self.down.store(true, Ordering::Release);
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Forwards connections to `upstream` until told otherwise.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            down: AtomicBool::new(false),
            cuts,
            trap: Mutex::new(None),
        });
        let task = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if shared.down.load(Ordering::Acquire) {
                        drop(client);
                        continue;
                    }
                    let shared = Arc::clone(&shared);
                    let mut cut = shared.cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        let holding = Arc::new(Mutex::new(None));
                        tokio::select! {
                            () = upstream_pump(client_read, server_write, &shared, &holding) => {}
                            () = downstream_pump(server_read, client_write, &shared, &holding) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self { addr, shared, task }
    }

    /// Cuts every open connection and refuses new ones until [`FaultProxy::up`].
    pub fn down(&self) {
        self.shared.cut();
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::Release);
    }

    /// Arms a trap: the first client message that carries `needle` cuts
    /// every connection ([`CutAt`] says when) and leaves the proxy down
    /// until [`FaultProxy::up`]. The receiver fires once it has cut. A new
    /// trap replaces one that has not fired.
    pub fn cut_on(&self, needle: &[u8], at: CutAt) -> oneshot::Receiver<()> {
        self.arm(needle, at, true)
    }

    /// Like [`FaultProxy::cut_on`], but cuts only the connection that
    /// carries `needle`; the proxy stays up.
    pub fn cut_connection_on(&self, needle: &[u8], at: CutAt) -> oneshot::Receiver<()> {
        self.arm(needle, at, false)
    }

    fn arm(&self, needle: &[u8], at: CutAt, everything: bool) -> oneshot::Receiver<()> {
        assert!(!needle.is_empty(), "an empty needle matches everything");
        let (fired, receiver) = oneshot::channel();
        *self.shared.trap.lock().unwrap() = Some(Trap {
            needle: needle.to_vec(),
            at,
            everything,
            fired,
        });
        receiver
    }

    /// Disarms a trap that has not fired; whether one was armed.
    pub fn disarm(&self) -> bool {
        self.shared.trap.lock().unwrap().take().is_some()
    }

    /// A PostgreSQL URL like `url` but through this proxy.
    pub fn postgres_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"));
        format!(
            "{scheme}://{}{}/{path}",
            user.unwrap_or_default(),
            self.addr
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

/// A trap that went off after its message was forwarded: the connection's
/// answers are withheld until the cut.
type Holding = Arc<Mutex<Option<Sprung>>>;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Client to server, watching for the armed trap's needle (also across two
/// reads: the tail of the previous read is searched with the next).
async fn upstream_pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    holding: &Holding,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        let chunk = &buffer[..read];
        let sprung = {
            let mut trap = shared.trap.lock().unwrap();
            let hit = trap.as_ref().is_some_and(|trap| {
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(chunk);
                let found = contains(&window, &trap.needle);
                let keep = trap.needle.len().saturating_sub(1).min(window.len());
                tail = window.split_off(window.len() - keep);
                found
            });
            if hit { trap.take() } else { None }
        };
        match sprung {
            Some(Trap {
                at: CutAt::Before,
                everything,
                fired,
                ..
            }) => {
                if everything {
                    shared.cut();
                }
                let _ = fired.send(());
                return;
            }
            Some(Trap {
                at: CutAt::AfterReply,
                everything,
                fired,
                ..
            }) => {
                *holding.lock().unwrap() = Some(Sprung { everything, fired });
                if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
            None => {
                if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// PostgreSQL's `ReadyForQuery` message: type `Z`, length 5, then a status.
const READY_FOR_QUERY: &[u8] = b"Z\0\0\0\x05";

/// Server to client; once a trap holds this connection, nothing more is
/// forwarded, and the trap cuts when the server has answered (or after a
/// second at most).
async fn downstream_pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    holding: &Holding,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut withheld: Vec<u8> = Vec::new();
    loop {
        let held = holding.lock().unwrap().is_some();
        let read = if held {
            match tokio::time::timeout(Duration::from_secs(1), from.read(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => Ok(0),
            }
        } else {
            from.read(&mut buffer).await
        };
        let read = read.unwrap_or(0);
        // The hold may have started while this read waited: check again.
        let held = holding.lock().unwrap().is_some();
        if held {
            withheld.extend_from_slice(&buffer[..read]);
            if read == 0 || contains(&withheld, READY_FOR_QUERY) {
                if let Some(sprung) = holding.lock().unwrap().take() {
                    if sprung.everything {
                        shared.cut();
                    }
                    let _ = sprung.fired.send(());
                }
                return;
            }
            continue;
        }
        if read == 0 || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
