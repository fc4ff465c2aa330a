//! Accepted connections with a handle to close them: the transport's part
//! of "never wait on a peer that does not read". A session that must end
//! while its stream's flow-control window stays shut cannot finish the
//! stream (HTTP/2 will not send more), so it closes the connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

/// What a request learns about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Cancelling it closes the connection.
    pub abort: CancellationToken,
}

/// A TCP connection that can be closed from a request handler.
pub struct ClosableIo {
    stream: TcpStream,
    abort: CancellationToken,
    aborted: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl ClosableIo {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream) -> Self {
        let abort = CancellationToken::new();
        Self {
            stream,
            aborted: Box::pin(abort.clone().cancelled_owned()),
            abort,
        }
    }

    /// Ready with an error once the connection was ordered closed; also
    /// registers the task to wake when that happens.
    fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.aborted
            .as_mut()
            .poll(cx)
            .map(|()| io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the server"))
    }
}

impl Connected for ClosableIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            remote: self.stream.peer_addr().ok(),
            abort: self.abort.clone(),
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
        if let Poll::Ready(error) = this.poll_aborted(cx) {
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
        if let Poll::Ready(error) = this.poll_aborted(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_aborted(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connection a request came on, with or without TLS.
pub fn of<T>(request: &tonic::Request<T>) -> Option<ConnectionInfo> {
    let extensions = request.extensions();
    extensions.get::<ConnectionInfo>().cloned().or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
            .map(|tls| tls.get_ref().clone())
    })
}
