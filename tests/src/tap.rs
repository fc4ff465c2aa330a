//! A loopback TCP forwarder between a client and a server that notes when
//! the server closes a connection — how a test sees, from outside, that the
//! server let go of a peer that stopped reading.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection to `upstream`.
pub struct TcpTap {
    /// Where clients connect.
    pub addr: SocketAddr,
    closed: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl TcpTap {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let addr = listener.local_addr().expect("tap address");
        let closed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&closed);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, Arc::clone(&seen)));
            }
        });
        Self { addr, closed, task }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel through the tap whose receive windows are only `window`
    /// bytes: a client that stops reading fills them at once.
    pub async fn slow_reader_channel(&self, window: u32) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("tap url")
            .initial_stream_window_size(Some(window))
            .initial_connection_window_size(Some(window))
            .connect()
            .await
            .expect("connect through the tap")
    }

    /// When the server closed each connection it closed, in order.
    pub fn server_closes(&self) -> Vec<Instant> {
        self.closed.lock().unwrap().clone()
    }
}

impl Drop for TcpTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, closed: Arc<Mutex<Vec<Instant>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    closed.lock().unwrap().push(Instant::now());
    let _ = client_write.shutdown().await;
    upstream.abort();
}
