//! The channel to the server: plain or TLS, the API key on every request,
//! deadlines on every call, and which failures mean "the server cannot be
//! reached" (what the `fallback` setting is about).

use std::time::Duration;

use assent_proto::v1::relying_party_service_client::RelyingPartyServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::settings::Settings;

/// How long the TCP (and TLS) connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of the short calls (create, get device, cancel).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Margin over a call's deadline before the local timer gives up on it.
pub const MARGIN: Duration = Duration::from_secs(2);

/// A relying-party client that sends the API key.
pub type Client = RelyingPartyServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <api key>` to every request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Why there is no channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The server did not answer (the fallback applies).
    Unreachable(String),
    /// The settings cannot work (no fallback: a refusal).
    Misconfigured(String),
}

/// A request with a deadline the server sees too.
pub fn with_deadline<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Whether a failed call means "the server cannot be reached" rather than
/// an answer from it (tonic reports its own deadline as CANCELLED).
pub fn is_unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
    )
}

/// Opens the channel (TLS for https://), within `CONNECT_TIMEOUT`.
pub async fn connect(settings: &Settings) -> Result<Client, ConnectError> {
    let misconfigured = |text: String| ConnectError::Misconfigured(text);
    let mut header: MetadataValue<Ascii> = format!("Bearer {}", settings.api_key.expose())
        .parse()
        .map_err(|_| misconfigured("the API key cannot be sent in a header".to_owned()))?;
    header.set_sensitive(true);
    let mut endpoint = Endpoint::from_shared(settings.server.clone())
        .map_err(|_| misconfigured(format!("the server URL {:?} is not valid", settings.server)))?
        .connect_timeout(CONNECT_TIMEOUT);
    if settings.server.starts_with("https://") {
        let ca = match &settings.ca_cert {
            Some(path) => Some(path.as_path()),
            None => assent_proto::tls::system_ca_bundle(),
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|error| {
                misconfigured(format!(
                    "cannot read the CA certificate {}: {error}",
                    path.display()
                ))
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &settings.client_identity {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read(path).map_err(|error| {
                    misconfigured(format!(
                        "cannot read the client {what} {}: {error}",
                        path.display()
                    ))
                })
            };
            tls = tls.identity(Identity::from_pem(
                read(cert, "certificate")?,
                read(key, "key")?,
            ));
        }
        endpoint = endpoint.tls_config(tls).map_err(|error| {
            misconfigured(format!(
                "cannot set up TLS: {}",
                assent_proto::report::error_chain(&error)
            ))
        })?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT + MARGIN, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(RelyingPartyServiceClient::with_interceptor(
            channel,
            Bearer(header),
        )),
        Ok(Err(error)) => Err(ConnectError::Unreachable(format!(
            "cannot connect to {}: {}",
            settings.server,
            assent_proto::report::error_chain(&error)
        ))),
        Err(_) => Err(ConnectError::Unreachable(format!(
            "no connection to {} within {} s",
            settings.server,
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_count_as_unreachable() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            assert!(is_unreachable(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::Internal,
            Code::NotFound,
        ] {
            assert!(!is_unreachable(&Status::new(code, "x")), "{code:?}");
        }
    }
}
