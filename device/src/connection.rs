//! The transport to the server: the gRPC endpoint (keepalive, TLS with a
//! private CA) and the opening of one authenticated `Connect` stream
//! (challenge → signed hello → ready).

use std::path::Path;
use std::time::Duration;

use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::{AgentMessage, Hello, Ready, ServerMessage, agent_message, server_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

use crate::config::{ClientIdentity, DeviceConfig};
use crate::error::Error;
use crate::identity::Identity;

/// Longest wait for the challenge and the ready message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing messages buffered while HTTP/2 flow control holds them.
const OUTBOUND_BUFFER: usize = 64;

/// What TLS connections trust and present.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TlsFiles<'a> {
    /// The CA of the server's certificate (else the system's bundle).
    pub ca_cert: Option<&'a Path>,
    /// The certificate and key presented to a server that asks (mutual TLS).
    pub identity: Option<&'a ClientIdentity>,
}

impl<'a> TlsFiles<'a> {
    /// The TLS files of `config`.
    pub(crate) fn of(config: &'a DeviceConfig) -> Self {
        Self {
            ca_cert: config.ca_cert.as_deref(),
            identity: config.client_identity.as_ref(),
        }
    }
}

/// Reads a PEM file the TLS settings name.
fn read_pem(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Storage {
        path: path.to_owned(),
        source,
    })
}

/// The gRPC endpoint for `server`, with the keepalive settings of a
/// long-lived device stream; `https://` URLs trust the PEM CA in `tls` and
/// present its client certificate, if any.
pub(crate) fn endpoint(server: &str, files: TlsFiles<'_>) -> Result<Endpoint, Error> {
    let invalid = |reason: String| Error::InvalidServerUrl {
        url: server.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|error| invalid(error.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match endpoint.uri().scheme_str() {
        Some("http") => Ok(endpoint),
        Some("https") => {
            // The given CA narrows trust to it; otherwise the system's roots.
            let Some(path) = files.ca_cert.or_else(assent_proto::tls::system_ca_bundle) else {
                return Err(invalid(format!(
                    "https:// needs the system's CA bundle (none of {}) or --ca-cert FILE \
                     (ASSENT_CA_CERT)",
                    assent_proto::tls::SYSTEM_CA_BUNDLES.join(", ")
                )));
            };
            let mut tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(path)?));
            if let Some(identity) = files.identity {
                tls = tls.identity(TlsIdentity::from_pem(
                    read_pem(&identity.cert)?,
                    read_pem(&identity.key)?,
                ));
            }
            endpoint
                .tls_config(tls)
                .map_err(|error| invalid(error.to_string()))
        }
        _ => Err(invalid("expected an http:// or https:// URL".to_owned())),
    }
}

/// The endpoints of a server list: URLs separated by commas (replicas,
/// or load balancers in front of them), each checked like [`endpoint`].
pub(crate) fn endpoints(servers: &str, files: TlsFiles<'_>) -> Result<Vec<Endpoint>, Error> {
    let list: Vec<Endpoint> = servers
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(|server| endpoint(server, files))
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(Error::InvalidServerUrl {
            url: servers.to_owned(),
            reason: "no server URL given".to_owned(),
        });
    }
    Ok(list)
}

/// A channel to the first server of `endpoints` that answers.
pub(crate) async fn first_channel(endpoints: &[Endpoint]) -> Result<Channel, Error> {
    let mut last = None;
    for endpoint in endpoints {
        match channel(endpoint).await {
            Ok(channel) => return Ok(channel),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(Error::InvalidServerUrl {
        url: String::new(),
        reason: "no server URL given".to_owned(),
    }))
}

/// Opens a channel, mapping failures to [`Error::ServerUnreachable`].
pub(crate) async fn channel(endpoint: &Endpoint) -> Result<Channel, Error> {
    endpoint
        .connect()
        .await
        .map_err(|error| Error::ServerUnreachable {
            server: endpoint.uri().to_string(),
            detail: assent_proto::report::error_chain(&error),
        })
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Network, TLS, timeout or an unexpected server answer: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The server refused this device (revoked, unknown, bad signature).
    #[error("the server refused this device: {}", .0.message())]
    Refused(tonic::Status),
}

/// One authenticated `Connect` stream.
#[derive(Debug)]
pub(crate) struct Session {
    /// The sending half, shareable with the handlers.
    pub(crate) sender: SessionSender,
    /// The server's messages.
    pub(crate) inbound: Streaming<ServerMessage>,
    /// What the server confirmed about this device.
    pub(crate) ready: Ready,
}

/// The sending half of a session (`Sync`, unlike the receiving half, so
/// handlers can hold it across awaits).
#[derive(Debug, Clone)]
pub(crate) struct SessionSender(mpsc::Sender<AgentMessage>);

impl SessionSender {
    /// Queues a message to the server; a closed stream shows up on the
    /// receiving side, so a failed send needs no handling here.
    pub(crate) async fn send(&self, body: agent_message::Body) {
        let _ = self.0.send(AgentMessage { body: Some(body) }).await;
    }
}

/// Connects and authenticates: answers the challenge with a signed hello
/// and waits for ready.
pub(crate) async fn establish(
    endpoint: Endpoint,
    identity: Identity,
) -> Result<Session, ConnectError> {
    let channel = channel(&endpoint)
        .await
        .map_err(|error| ConnectError::Unavailable(error.to_string()))?;
    let (outbound, receiver) = mpsc::channel(OUTBOUND_BUFFER);
    let handshake = async {
        let mut client = DeviceServiceClient::new(channel);
        let mut inbound = client
            .connect(ReceiverStream::new(receiver))
            .await
            .map_err(classify)?
            .into_inner();
        let nonce = match expect_message(&mut inbound).await? {
            server_message::Body::Challenge(challenge) => challenge.nonce,
            other => return Err(unexpected(&other)),
        };
        let hello = Hello {
            device_id: identity.device_id().to_owned(),
            signature: identity.sign_hello(&nonce),
        };
        let sent = outbound.send(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        });
        sent.await.map_err(|_| {
            ConnectError::Unavailable("the stream closed during the handshake".to_owned())
        })?;
        match expect_message(&mut inbound).await? {
            server_message::Body::Ready(ready) => Ok((inbound, ready)),
            other => Err(unexpected(&other)),
        }
    };
    let (inbound, ready) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            ConnectError::Unavailable("no answer to the handshake in time".to_owned())
        })??;
    Ok(Session {
        sender: SessionSender(outbound),
        inbound,
        ready,
    })
}

async fn expect_message(
    inbound: &mut Streaming<ServerMessage>,
) -> Result<server_message::Body, ConnectError> {
    match inbound.message().await.map_err(classify)? {
        Some(ServerMessage { body: Some(body) }) => Ok(body),
        Some(ServerMessage { body: None }) => {
            Err(ConnectError::Unavailable("empty message".to_owned()))
        }
        None => Err(ConnectError::Unavailable(
            "the server ended the stream during the handshake".to_owned(),
        )),
    }
}

fn unexpected(body: &server_message::Body) -> ConnectError {
    let name = match body {
        server_message::Body::Challenge(_) => "challenge",
        server_message::Body::Ready(_) => "ready",
        server_message::Body::ConfirmationRequest(_) => "confirmation request",
        server_message::Body::DecisionResult(_) => "decision result",
        server_message::Body::Rejection(_) => "rejection",
        server_message::Body::Cancellation(_) => "cancellation",
        server_message::Body::GoAway(_) => "go-away",
    };
    ConnectError::Unavailable(format!("unexpected {name} during the handshake"))
}

/// Statuses that say "this device may not connect" stop being transient.
fn classify(status: tonic::Status) -> ConnectError {
    match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated | tonic::Code::NotFound => {
            ConnectError::Refused(status)
        }
        _ => ConnectError::Unavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_are_checked() {
        assert!(endpoint("http://127.0.0.1:50051", TlsFiles::default()).is_ok());
        // https:// trusts the system's roots unless a CA file narrows it.
        assert_eq!(
            endpoint("https://assent.example", TlsFiles::default()).is_ok(),
            assent_proto::tls::system_ca_bundle().is_some()
        );
        assert!(matches!(
            endpoint("ftp://assent.example", TlsFiles::default()),
            Err(Error::InvalidServerUrl { .. })
        ));
        assert!(endpoint("not a url", TlsFiles::default()).is_err());
        let list = endpoints("http://a:1, http://b:2,", TlsFiles::default()).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].uri().to_string(), "http://b:2/");
        assert!(endpoints(" , ", TlsFiles::default()).is_err());
        assert!(endpoints("http://a:1,ftp://b", TlsFiles::default()).is_err());
    }

    #[test]
    fn device_refusals_are_told_apart_from_outages() {
        assert!(matches!(
            classify(tonic::Status::permission_denied("device revoked")),
            ConnectError::Refused(_)
        ));
        assert!(matches!(
            classify(tonic::Status::unavailable("draining")),
            ConnectError::Unavailable(_)
        ));
    }
}
