//! An in-process stand-in for the relying-party API, with canned
//! transactions, events and devices ([`fixtures`]), so the `assent` binary can
//! be tested without the real server.

mod fixtures;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use assent_proto::v1::relying_party_service_server::{
    RelyingPartyService, RelyingPartyServiceServer,
};
use assent_proto::v1::{
    CancelTransactionRequest, CancelTransactionResponse, CreateEnrollmentRequest,
    CreateEnrollmentResponse, CreateOtpAuthenticationRequest, CreateOtpAuthenticationResponse,
    CreatePushAuthenticationRequest, CreatePushAuthenticationResponse, Event, GetDeviceRequest,
    GetDeviceResponse, GetTransactionRequest, GetTransactionResponse, ListDevicesRequest,
    ListDevicesResponse, ListServerKeysRequest, ListServerKeysResponse, RevokeDeviceRequest,
    RevokeDeviceResponse, SubscribeRequest, TransactionState, WaitTransactionRequest,
    WaitTransactionResponse,
};
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use fixtures::{at, device, event, push_transaction, transaction};

/// The only API key the fake accepts.
pub const API_KEY: &str = "test-key";

/// Transaction ids the fake knows, and how each behaves.
pub const TX_ACCEPTED_ON_THIRD_POLL: &str = "11111111-0000-0000-0000-000000000001";
/// Ends DENIED with reason `not_me`.
pub const TX_DENIED: &str = "11111111-0000-0000-0000-000000000002";
/// Stays SCANNED forever.
pub const TX_SCANNED: &str = "11111111-0000-0000-0000-000000000003";
/// PENDING with no user, device or reason yet.
pub const TX_PENDING: &str = "11111111-0000-0000-0000-000000000004";
/// A PENDING push for alice with number matching; what CreatePushAuthentication returns.
pub const TX_PUSH: &str = "11111111-0000-0000-0000-000000000005";

/// The number the fake's push logins show under number matching.
pub const PUSH_NUMBER: u32 = 42;
/// A user with no device: CreatePushAuthentication fails FAILED_PRECONDITION.
pub const USER_WITHOUT_DEVICE: &str = "nobody";
/// A user with a push still open: CreatePushAuthentication fails RESOURCE_EXHAUSTED.
pub const USER_WITH_OPEN_PUSH: &str = "busy";

/// A running fake server; stopped when dropped.
pub struct FakeServer {
    /// Its `http://127.0.0.1:PORT` URL.
    pub url: String,
    /// What the last CreateOtpAuthentication asked for.
    pub last_otp_request: Arc<Mutex<Option<CreateOtpAuthenticationRequest>>>,
    /// What the last CreatePushAuthentication asked for.
    pub last_push_request: Arc<Mutex<Option<CreatePushAuthenticationRequest>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the fake on a free loopback port. `end_event_stream` makes Subscribe
/// finish after its events instead of staying open like the real server.
pub async fn start(end_event_stream: bool) -> FakeServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let fake = FakeRp {
        polls: Arc::default(),
        last_otp_request: Arc::default(),
        last_push_request: Arc::default(),
        end_event_stream,
    };
    let last_otp_request = fake.last_otp_request.clone();
    let last_push_request = fake.last_push_request.clone();
    let service = RelyingPartyServiceServer::with_interceptor(fake, check_api_key);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    FakeServer {
        url: format!("http://{address}"),
        last_otp_request,
        last_push_request,
        task,
    }
}

#[allow(clippy::result_large_err)]
fn check_api_key(request: Request<()>) -> Result<Request<()>, Status> {
    let expected = format!("Bearer {API_KEY}");
    match request.metadata().get("authorization") {
        Some(value) if value.to_str().ok() == Some(expected.as_str()) => Ok(request),
        _ => Err(Status::unauthenticated("unknown API key")),
    }
}

struct FakeRp {
    polls: Arc<Mutex<HashMap<String, u32>>>,
    last_otp_request: Arc<Mutex<Option<CreateOtpAuthenticationRequest>>>,
    last_push_request: Arc<Mutex<Option<CreatePushAuthenticationRequest>>>,
    end_event_stream: bool,
}

#[tonic::async_trait]
impl RelyingPartyService for FakeRp {
    async fn create_enrollment(
        &self,
        request: Request<CreateEnrollmentRequest>,
    ) -> Result<Response<CreateEnrollmentResponse>, Status> {
        let user_id = request.into_inner().user_id;
        Ok(Response::new(CreateEnrollmentResponse {
            code: "enroll-code-123".to_owned(),
            expires_at: at(1_700_000_600),
            user_id,
            application_name: "Example Shop".to_owned(),
        }))
    }

    async fn create_otp_authentication(
        &self,
        request: Request<CreateOtpAuthenticationRequest>,
    ) -> Result<Response<CreateOtpAuthenticationResponse>, Status> {
        let request = request.into_inner();
        if request.message.is_empty() {
            return Err(Status::invalid_argument("message must not be empty"));
        }
        *self.last_otp_request.lock().unwrap() = Some(request);
        Ok(Response::new(CreateOtpAuthenticationResponse {
            transaction_id: TX_PENDING.to_owned(),
            otp: "b3RwLXNlY3JldA==".to_owned(),
            expires_at: at(1_700_000_120),
            qr_payload: "b3RwLXNlY3JldA==".to_owned(),
        }))
    }

    /// Alice has one connected device; other users with devices have none connected.
    async fn create_push_authentication(
        &self,
        request: Request<CreatePushAuthenticationRequest>,
    ) -> Result<Response<CreatePushAuthenticationResponse>, Status> {
        let request = request.into_inner();
        if request.message.is_empty() {
            return Err(Status::invalid_argument("message must not be empty"));
        }
        let user = request.user_id.clone();
        let number_matching = request.number_matching;
        *self.last_push_request.lock().unwrap() = Some(request);
        match user.as_str() {
            USER_WITHOUT_DEVICE => {
                return Err(Status::failed_precondition(format!(
                    "user {user} has no device"
                )));
            }
            USER_WITH_OPEN_PUSH => {
                return Err(Status::resource_exhausted(format!(
                    "a push for user {user} is still open (transaction {TX_PUSH})"
                )));
            }
            _ => {}
        }
        Ok(Response::new(CreatePushAuthenticationResponse {
            transaction_id: TX_PUSH.to_owned(),
            expires_at: at(1_700_000_120),
            number: if number_matching { PUSH_NUMBER } else { 0 },
            devices_reached: u32::from(user == "alice"),
        }))
    }

    /// Like the real server's long poll, over this fake's scripted reads.
    async fn wait_transaction(
        &self,
        request: Request<WaitTransactionRequest>,
    ) -> Result<Response<WaitTransactionResponse>, Status> {
        let body = request.into_inner();
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(u64::from(body.timeout_ms));
        loop {
            let read = GetTransactionRequest {
                transaction_id: body.transaction_id.clone(),
            };
            let tx = self
                .get_transaction(Request::new(read))
                .await?
                .into_inner()
                .transaction
                .unwrap();
            let open = matches!(
                tx.state(),
                TransactionState::Pending | TransactionState::Scanned
            );
            let timed_out = tokio::time::Instant::now() >= deadline;
            if !open || timed_out {
                return Ok(Response::new(WaitTransactionResponse {
                    transaction: Some(tx),
                    last_event: None,
                    timed_out: open,
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn list_server_keys(
        &self,
        _request: Request<ListServerKeysRequest>,
    ) -> Result<Response<ListServerKeysResponse>, Status> {
        Ok(Response::new(ListServerKeysResponse::default()))
    }

    async fn get_transaction(
        &self,
        request: Request<GetTransactionRequest>,
    ) -> Result<Response<GetTransactionResponse>, Status> {
        let id = request.into_inner().transaction_id;
        let polls = {
            let mut counts = self.polls.lock().unwrap();
            let count = counts.entry(id.clone()).or_default();
            *count += 1;
            *count
        };
        let tx = match id.as_str() {
            TX_ACCEPTED_ON_THIRD_POLL => match polls {
                1 => transaction(&id, TransactionState::Pending, "", ""),
                2 => transaction(&id, TransactionState::Scanned, "d-1", ""),
                _ => transaction(&id, TransactionState::Accepted, "d-1", ""),
            },
            TX_DENIED => transaction(&id, TransactionState::Denied, "d-1", "not_me"),
            TX_SCANNED => transaction(&id, TransactionState::Scanned, "d-1", ""),
            TX_PENDING => transaction(&id, TransactionState::Pending, "", ""),
            TX_PUSH => push_transaction(&id),
            _ => return Err(Status::not_found(format!("no transaction {id}"))),
        };
        Ok(Response::new(GetTransactionResponse {
            transaction: Some(tx),
            last_event: None,
        }))
    }

    async fn cancel_transaction(
        &self,
        request: Request<CancelTransactionRequest>,
    ) -> Result<Response<CancelTransactionResponse>, Status> {
        let id = request.into_inner().transaction_id;
        if id != TX_PENDING {
            return Err(Status::failed_precondition("the transaction already ended"));
        }
        let tx = transaction(&id, TransactionState::Cancelled, "", "");
        Ok(Response::new(CancelTransactionResponse {
            transaction: Some(tx),
        }))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let after = request.into_inner().after_cursor;
        let events: Vec<Result<Event, Status>> = (1..=3u64)
            .filter(|cursor| *cursor > after)
            .map(|cursor| Ok(event(cursor)))
            .collect();
        let backlog = tokio_stream::iter(events);
        let stream: Self::SubscribeStream = if self.end_event_stream {
            Box::pin(backlog)
        } else {
            Box::pin(backlog.chain(tokio_stream::pending()))
        };
        Ok(Response::new(stream))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let devices = match request.into_inner().user_id.as_str() {
            "" | "alice" => ["d-1", "d-2"].into_iter().filter_map(device).collect(),
            _ => Vec::new(),
        };
        Ok(Response::new(ListDevicesResponse { devices }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<GetDeviceResponse>, Status> {
        let id = request.into_inner().device_id;
        let device = device(&id).ok_or_else(|| Status::not_found(format!("no device {id}")))?;
        Ok(Response::new(GetDeviceResponse {
            device: Some(device),
        }))
    }

    /// Only `d-1` can be revoked; revoking closes its stream.
    async fn revoke_device(
        &self,
        request: Request<RevokeDeviceRequest>,
    ) -> Result<Response<RevokeDeviceResponse>, Status> {
        let id = request.into_inner().device_id;
        let Some(mut device) = device(&id).filter(|device| !device.revoked) else {
            return Err(Status::not_found(format!("no device {id}")));
        };
        device.revoked = true;
        device.connected = false;
        Ok(Response::new(RevokeDeviceResponse {
            device: Some(device),
        }))
    }
}
