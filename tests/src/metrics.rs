//! A server's Prometheus endpoint as the tests read it: a port of its own,
//! a plain HTTP GET, one sample's value.

use crate::{TestDb, TestServer};

pub use crate::ports::free_port;

/// An embedded server with its metrics on a port of its own.
pub async fn server_with_metrics(db: &TestDb) -> (TestServer, u16) {
    let port = free_port();
    let server = TestServer::start_with(db, |config| {
        config.metrics_listen = Some(([127, 0, 0, 1], port).into());
    })
    .await;
    (server, port)
}

/// The whole response to `GET path` on 127.0.0.1:`port` (status line and
/// headers included); `None` if nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// The value of the unlabelled sample `name` on the server's `/metrics`;
/// `None` if the server or the sample is missing.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let response = http_get(port, "/metrics").await?;
    let prefix = format!("{name} ");
    response
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
}
