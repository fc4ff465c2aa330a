//! The connection to the Assent server: channel (plain or TLS), the API-key
//! interceptor, and [`AssentClient`], which makes each RPC and turns failures
//! into messages a person can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use assent_proto::v1::relying_party_service_client::RelyingPartyServiceClient;
use assent_proto::v1::{
    CancelTransactionRequest, CreateEnrollmentRequest, CreateEnrollmentResponse,
    CreateOtpAuthenticationRequest, CreateOtpAuthenticationResponse,
    CreatePushAuthenticationRequest, CreatePushAuthenticationResponse, Device, Event,
    GetDeviceRequest, GetTransactionRequest, GetTransactionResponse, ListDevicesRequest,
    ListServerKeysRequest, RevokeDeviceRequest, ServerKey, SubscribeRequest, Transaction,
    WaitTransactionRequest, WaitTransactionResponse,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status, Streaming};

use crate::status;

/// How long to wait for the TCP (and TLS) connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of every unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive, so `events --follow` notices a server that vanished.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Where and how to reach the server.
pub struct ClientConfig {
    /// Server URL, `http://` or `https://`.
    pub server: String,
    /// The application's API key.
    pub api_key: String,
    /// PEM file of the CA that signed the server certificate.
    pub ca_cert: Option<PathBuf>,
    /// PEM files of the client certificate and its key, presented when the
    /// server asks for one (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("api_key", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .field("client_identity", &self.client_identity)
            .finish()
    }
}

/// Adds `authorization: Bearer <api key>` to every request.
#[derive(Clone)]
pub struct ApiKeyInterceptor {
    header: MetadataValue<Ascii>,
}

impl ApiKeyInterceptor {
    /// Builds the header value once; refuses keys that cannot travel in a header.
    pub fn new(api_key: &str) -> anyhow::Result<Self> {
        let mut header: MetadataValue<Ascii> =
            format!("Bearer {api_key}").parse().map_err(|_| {
                anyhow!("the API key contains characters that cannot be sent in a header")
            })?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

impl Interceptor for ApiKeyInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// A connected relying-party client; every method returns a ready-to-print error.
pub struct AssentClient {
    rpc: RelyingPartyServiceClient<InterceptedService<Channel, ApiKeyInterceptor>>,
    server: String,
}

impl AssentClient {
    /// Opens the channel to the server (TLS for https:// URLs).
    pub async fn connect(config: &ClientConfig) -> anyhow::Result<Self> {
        let interceptor = ApiKeyInterceptor::new(&config.api_key)?;
        let endpoint = endpoint(config)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| anyhow!(status::describe_connect_error(&error, &config.server)))?;
        Ok(Self {
            rpc: RelyingPartyServiceClient::with_interceptor(channel, interceptor),
            server: config.server.clone(),
        })
    }

    /// Turns a failed call into the message shown to the user.
    pub fn explain(&self, status: &Status) -> anyhow::Error {
        anyhow!(status::describe(status, &self.server))
    }

    /// CreateEnrollment.
    pub async fn create_enrollment(
        &mut self,
        request: CreateEnrollmentRequest,
    ) -> anyhow::Result<CreateEnrollmentResponse> {
        let result = self.rpc.create_enrollment(deadline(request)).await;
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.explain(&s))
    }

    /// CreateOtpAuthentication.
    pub async fn create_otp_authentication(
        &mut self,
        request: CreateOtpAuthenticationRequest,
    ) -> anyhow::Result<CreateOtpAuthenticationResponse> {
        let result = self.rpc.create_otp_authentication(deadline(request)).await;
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.explain(&s))
    }

    /// CreatePushAuthentication, keeping the raw status so the caller can add
    /// advice for the failures it understands.
    pub async fn try_create_push_authentication(
        &mut self,
        request: CreatePushAuthenticationRequest,
    ) -> Result<CreatePushAuthenticationResponse, Status> {
        let response = self
            .rpc
            .create_push_authentication(deadline(request))
            .await?;
        Ok(response.into_inner())
    }

    /// GetTransaction, keeping the raw status so callers can decide to retry.
    pub async fn try_get_transaction(&mut self, id: &str) -> Result<Transaction, Status> {
        let request = GetTransactionRequest {
            transaction_id: id.to_owned(),
        };
        let response = self.rpc.get_transaction(deadline(request)).await?;
        response
            .into_inner()
            .transaction
            .ok_or_else(|| Status::internal("the server sent no transaction"))
    }

    /// GetTransaction with its latest signed event.
    pub async fn get_transaction_full(
        &mut self,
        id: &str,
    ) -> anyhow::Result<GetTransactionResponse> {
        let request = GetTransactionRequest {
            transaction_id: id.to_owned(),
        };
        let result = self.rpc.get_transaction(deadline(request)).await;
        Ok(result.map_err(|s| self.explain(&s))?.into_inner())
    }

    /// WaitTransaction for at most `timeout`, keeping the raw status.
    pub async fn try_wait_transaction(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<WaitTransactionResponse, Status> {
        let mut request = Request::new(WaitTransactionRequest {
            transaction_id: id.to_owned(),
            timeout_ms: u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
        });
        request.set_timeout(timeout + CALL_TIMEOUT);
        Ok(self.rpc.wait_transaction(request).await?.into_inner())
    }

    /// ListServerKeys.
    pub async fn server_keys(&mut self) -> anyhow::Result<Vec<ServerKey>> {
        let result = self
            .rpc
            .list_server_keys(deadline(ListServerKeysRequest {}))
            .await;
        Ok(result.map_err(|s| self.explain(&s))?.into_inner().keys)
    }

    /// GetTransaction.
    pub async fn get_transaction(&mut self, id: &str) -> anyhow::Result<Transaction> {
        let result = self.try_get_transaction(id).await;
        result.map_err(|s| self.explain(&s))
    }

    /// CancelTransaction.
    pub async fn cancel_transaction(&mut self, id: &str) -> anyhow::Result<Transaction> {
        let request = CancelTransactionRequest {
            transaction_id: id.to_owned(),
        };
        let result = self.rpc.cancel_transaction(deadline(request)).await;
        let response = result.map_err(|s| self.explain(&s))?;
        response
            .into_inner()
            .transaction
            .context("the server sent no transaction")
    }

    /// Subscribe: the event stream after `after_cursor`.
    pub async fn subscribe(
        &mut self,
        after_cursor: u64,
        from_head: bool,
    ) -> anyhow::Result<Streaming<Event>> {
        let request = Request::new(SubscribeRequest {
            after_cursor,
            from_head,
        });
        let result = self.rpc.subscribe(request).await;
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.explain(&s))
    }

    /// ListDevices; an empty `user_id` lists every device of the application.
    pub async fn list_devices(&mut self, user_id: String) -> anyhow::Result<Vec<Device>> {
        let request = ListDevicesRequest { user_id };
        let result = self.rpc.list_devices(deadline(request)).await;
        result
            .map(|response| response.into_inner().devices)
            .map_err(|s| self.explain(&s))
    }

    /// GetDevice.
    pub async fn get_device(&mut self, device_id: &str) -> anyhow::Result<Device> {
        let request = GetDeviceRequest {
            device_id: device_id.to_owned(),
        };
        let result = self.rpc.get_device(deadline(request)).await;
        let response = result.map_err(|s| self.explain(&s))?;
        response
            .into_inner()
            .device
            .context("the server sent no device")
    }

    /// RevokeDevice.
    pub async fn revoke_device(&mut self, device_id: &str) -> anyhow::Result<Device> {
        let request = RevokeDeviceRequest {
            device_id: device_id.to_owned(),
        };
        let result = self.rpc.revoke_device(deadline(request)).await;
        let response = result.map_err(|s| self.explain(&s))?;
        response
            .into_inner()
            .device
            .context("the server sent no device")
    }
}

/// Wraps a unary request with the call deadline.
fn deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// Builds the endpoint for the configured URL, with TLS when it is https://.
fn endpoint(config: &ClientConfig) -> anyhow::Result<Endpoint> {
    let url = config.server.as_str();
    let is_tls = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("https") => true,
        Some("http") => false,
        _ => bail!("the server URL {url:?} must start with http:// or https://"),
    };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("the server URL {url:?} is not a valid URL"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_while_idle(true);
    if !is_tls {
        if let Some((path, _)) = &config.client_identity {
            bail!(
                "a client certificate ({}) was given but the server URL {url} is plain \
                 http://; use https:// or drop --client-cert / ASSENT_CLIENT_CERT",
                path.display()
            );
        }
        if let Some(path) = &config.ca_cert {
            bail!(
                "a CA certificate ({}) was given but the server URL {url} is plain http://; \
                 use https:// or drop --ca-cert / ASSENT_CA_CERT",
                path.display()
            );
        }
        return Ok(endpoint);
    }
    let ca = match &config.ca_cert {
        Some(path) => Some(read_ca(path)?),
        None => assent_proto::tls::system_ca_bundle()
            .map(read_ca)
            .transpose()?,
    };
    let mut tls = match ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(ca),
        None => ClientTlsConfig::new(),
    };
    if let Some((cert, key)) = &config.client_identity {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the client {what} {}", path.display()))
        };
        tls = tls.identity(Identity::from_pem(
            read(cert, "certificate")?,
            read(key, "key")?,
        ));
    }
    endpoint
        .tls_config(tls)
        .context("cannot set up TLS for the server connection")
}

/// Reads a PEM CA certificate (or bundle).
fn read_ca(path: &Path) -> anyhow::Result<Certificate> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
    Ok(Certificate::from_pem(pem))
}
