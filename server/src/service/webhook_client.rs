//! One outgoing POST (a webhook delivery, a CIBA ping or push), bounded:
//! the destination's addresses resolved and
//! checked again right before connecting (a name may point elsewhere since
//! creation: DNS rebinding), the connection made to the checked address,
//! HTTP/1.1 over rustls (webpki roots) or plain HTTP to loopback, no
//! redirect followed (a 3xx is a failure), the whole exchange within a
//! timeout and at most [`MAX_ANSWER`] bytes of the answer read.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::webhooks::resolve;
use crate::domain::webhook::{WebhookUrl, check_addresses};

/// Bytes of a receiver's answer read at most.
pub const MAX_ANSWER: usize = 64 * 1024;

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: why (no secret in it).
    Failed(String),
}

/// The headers of one POST beyond `Host`, `Content-Type: application/json`
/// and `User-Agent`: names and values (values may be secrets, never logged).
pub type Headers = [(&'static str, String)];

/// POSTs `body` to `url` with `headers` within `timeout`.
pub async fn post(
    url: &WebhookUrl,
    allow_private: bool,
    headers: &Headers,
    body: Bytes,
    timeout: Duration,
) -> PostOutcome {
    match tokio::time::timeout(timeout, exchange(url, allow_private, headers, body)).await {
        Ok(Ok(status)) => PostOutcome::Answered(status),
        Ok(Err(why)) => PostOutcome::Failed(why),
        Err(_) => PostOutcome::Failed(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn exchange(
    url: &WebhookUrl,
    allow_private: bool,
    headers: &Headers,
    body: Bytes,
) -> Result<u16, String> {
    let addresses = resolve(url).await.map_err(|e| e.to_string())?;
    let host = url.host();
    check_addresses(&host, &addresses, allow_private).map_err(|e| e.to_string())?;
    let targets: Vec<SocketAddr> = addresses
        .iter()
        .map(|ip| SocketAddr::new(*ip, url.port()))
        .collect();
    let tcp = TcpStream::connect(&targets[..])
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let authority = match url.port() {
        443 if url.is_https() => host.clone(),
        80 if !url.is_https() => host.clone(),
        port if host.contains(':') => format!("[{host}]:{port}"),
        port => format!("{host}:{port}"),
    };
    let mut request = Request::post(url.path_and_query())
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "assent/1");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    if url.is_https() {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| format!("bad server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        send(tls, request).await
    } else {
        send(tcp, request).await
    }
}

/// One request on a fresh HTTP/1.1 connection; the status, after reading
/// at most [`MAX_ANSWER`] bytes of the answer.
async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let exchange = async move {
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = answer.status().as_u16();
        let mut body = answer.into_body();
        let mut read = 0usize;
        while read < MAX_ANSWER {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
        Ok(status)
    };
    tokio::pin!(connection);
    tokio::select! {
        result = exchange => result,
        ended = &mut connection => match ended {
            Ok(()) => Err("the receiver closed the connection".to_owned()),
            Err(e) => Err(format!("connection failed: {e}")),
        },
    }
}

/// The TLS settings of every delivery: the webpki roots, ring.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| {
                builder
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth()
            });
        Arc::new(config.unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }))
    }))
}
