//! `RelyingPartyService` adapters: authenticate, parse, call one use case, encode.

use std::sync::Arc;

use assent_proto::v1::relying_party_service_server::RelyingPartyService;
use assent_proto::v1::{
    CancelTransactionRequest, CancelTransactionResponse, CreateEnrollmentRequest,
    CreateEnrollmentResponse, CreateOtpAuthenticationRequest, CreateOtpAuthenticationResponse,
    CreatePushAuthenticationRequest, CreatePushAuthenticationResponse, Event, GetDeviceRequest,
    GetDeviceResponse, GetTransactionRequest, GetTransactionResponse, ListDevicesRequest,
    ListDevicesResponse, ListServerKeysRequest, ListServerKeysResponse, RevokeDeviceRequest,
    RevokeDeviceResponse, SubscribeRequest, WaitTransactionRequest, WaitTransactionResponse,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::{Instrument, instrument};

use super::{convert, secure_rng};
use crate::domain::input::{ENROLLMENT_TTL, OTP_TTL, wait_timeout};
use crate::domain::{Binding, Context, DeviceId, InputError, Message, TransactionId, UserId};
use crate::service::{Caller, CreateOtpInput, CreatePushInput, ServiceError, Services};

/// Serves relying parties.
pub struct RelyingPartyHandler {
    services: Arc<Services>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl RelyingPartyHandler {
    /// An adapter over `service`; streams end when `shutdown` fires.
    pub fn new(services: Arc<Services>, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            services,
            tasks,
            shutdown,
        }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let key = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "missing API key: send metadata `authorization: Bearer <api key>` \
                     (the CLI takes --api-key or ASSENT_API_KEY)"
                        .to_owned(),
                )
            })?;
        let source = super::connection::of(request)
            .and_then(|info| info.remote)
            .map(|addr| addr.ip());
        Ok(self.services.keys.authenticate(key, source).await?)
    }
}

/// The token of an `authorization` value with the `Bearer` scheme, whose
/// name is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
        .filter(|token| !token.is_empty())
}

/// Parses an optional user id (empty means none).
fn optional_user(text: &str) -> Result<Option<UserId>, InputError> {
    (!text.is_empty()).then(|| UserId::parse(text)).transpose()
}

type EventStream = futures::stream::BoxStream<'static, Result<Event, Status>>;

#[tonic::async_trait]
impl RelyingPartyService for RelyingPartyHandler {
    #[instrument(skip_all, fields(rpc = "CreateEnrollment"))]
    async fn create_enrollment(
        &self,
        request: Request<CreateEnrollmentRequest>,
    ) -> Result<Response<CreateEnrollmentResponse>, Status> {
        let caller = self.caller(&request).await?;
        let body = request.into_inner();
        let user = UserId::parse(&body.user_id)?;
        let ttl = ENROLLMENT_TTL.parse(body.ttl_seconds)?;
        let (code, expires_at) = self
            .services
            .enrollment
            .create_enrollment(&caller, user.clone(), ttl, &mut secure_rng())
            .await?;
        Ok(Response::new(CreateEnrollmentResponse {
            code: code.expose(),
            expires_at: Some(convert::timestamp(expires_at)),
            user_id: user.to_string(),
            application_name: caller.application.name.clone(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CreateOtpAuthentication"))]
    async fn create_otp_authentication(
        &self,
        request: Request<CreateOtpAuthenticationRequest>,
    ) -> Result<Response<CreateOtpAuthenticationResponse>, Status> {
        let caller = self.caller(&request).await?;
        let body = request.into_inner();
        let input = (|| {
            Ok::<_, InputError>(CreateOtpInput {
                message: Message::parse(&body.message)?,
                ttl: OTP_TTL.parse(body.ttl_seconds)?,
                context: Context::parse(body.context)?,
                user_id: optional_user(&body.user_id)?,
                binding: Binding::parse(&body.binding)?,
            })
        })()?;
        let created = self
            .services
            .logins
            .create_otp_authentication(&caller, input, &mut secure_rng())
            .await?;
        let otp = created.otp.expose();
        Ok(Response::new(CreateOtpAuthenticationResponse {
            transaction_id: created.transaction.id.to_string(),
            qr_payload: otp.clone(),
            otp,
            expires_at: Some(convert::timestamp(created.transaction.expires_at)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CreatePushAuthentication"))]
    async fn create_push_authentication(
        &self,
        request: Request<CreatePushAuthenticationRequest>,
    ) -> Result<Response<CreatePushAuthenticationResponse>, Status> {
        let caller = self.caller(&request).await?;
        let body = request.into_inner();
        let input = CreatePushInput {
            user_id: UserId::parse(&body.user_id)?,
            message: Message::parse(&body.message)?,
            ttl: OTP_TTL.parse(body.ttl_seconds)?,
            context: Context::parse(body.context)?,
            number_matching: body.number_matching,
            binding: Binding::parse(&body.binding)?,
        };
        let created = self
            .services
            .push
            .create_push_authentication(&caller, input, &mut secure_rng())
            .await?;
        Ok(Response::new(CreatePushAuthenticationResponse {
            transaction_id: created.transaction.id.to_string(),
            expires_at: Some(convert::timestamp(created.transaction.expires_at)),
            number: created.number.map(u32::from).unwrap_or_default(),
            devices_reached: u32::try_from(created.devices_reached).unwrap_or(u32::MAX),
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetDevice"))]
    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<GetDeviceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = DeviceId::parse(&request.get_ref().device_id)?;
        let device = self.services.directory.get_device(&caller, id).await?;
        Ok(Response::new(GetDeviceResponse {
            device: Some(convert::device(&device)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetTransaction"))]
    async fn get_transaction(
        &self,
        request: Request<GetTransactionRequest>,
    ) -> Result<Response<GetTransactionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = TransactionId::parse(&request.get_ref().transaction_id)?;
        let logins = &self.services.logins;
        let record = logins.get_transaction(&caller, id).await?;
        let (transaction, last_event) = convert::view(&logins.view(record).await?);
        Ok(Response::new(GetTransactionResponse {
            transaction: Some(transaction),
            last_event,
        }))
    }

    #[instrument(skip_all, fields(rpc = "WaitTransaction"))]
    async fn wait_transaction(
        &self,
        request: Request<WaitTransactionRequest>,
    ) -> Result<Response<WaitTransactionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let body = request.get_ref();
        let id = TransactionId::parse(&body.transaction_id)?;
        let timeout = wait_timeout(body.timeout_ms)?;
        let logins = &self.services.logins;
        let (record, timed_out) = logins.wait_transaction(&caller, id, timeout).await?;
        let (transaction, last_event) = convert::view(&logins.view(record).await?);
        Ok(Response::new(WaitTransactionResponse {
            transaction: Some(transaction),
            last_event,
            timed_out,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListServerKeys"))]
    async fn list_server_keys(
        &self,
        request: Request<ListServerKeysRequest>,
    ) -> Result<Response<ListServerKeysResponse>, Status> {
        let _caller = self.caller(&request).await?;
        let keys = self.services.events.server_keys().await?;
        Ok(Response::new(ListServerKeysResponse {
            keys: keys.iter().map(convert::server_key).collect(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CancelTransaction"))]
    async fn cancel_transaction(
        &self,
        request: Request<CancelTransactionRequest>,
    ) -> Result<Response<CancelTransactionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = TransactionId::parse(&request.get_ref().transaction_id)?;
        let record = self.services.logins.cancel_transaction(&caller, id).await?;
        Ok(Response::new(CancelTransactionResponse {
            transaction: Some(convert::transaction(&record)),
        }))
    }

    type SubscribeStream = EventStream;

    #[instrument(skip_all, fields(rpc = "Subscribe"))]
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.caller(&request).await?;
        let requested = i64::try_from(request.get_ref().after_cursor).unwrap_or(i64::MAX);
        let from_head = request.get_ref().from_head;
        let slot = self.services.events.admit(&caller)?;
        let after = self
            .services
            .events
            .start_cursor(&caller, requested, from_head)
            .await?;
        let (sender, receiver) = mpsc::channel(64);
        let services = Arc::clone(&self.services);
        let stop = self.shutdown.child_token();
        // Read while the handler runs inside its stream's task.
        let reset = super::transport::StreamReset::current().into_token();
        let app = caller.application.id;
        self.tasks.spawn(
            async move {
                // The stream counts against its key until the pump ends.
                let _slot = slot;
                services
                    .events
                    .pump_events(caller, after, sender, stop, reset)
                    .await;
            }
            .instrument(tracing::info_span!("subscribe", app = %app)),
        );
        let stream = ReceiverStream::new(receiver)
            .map(|item| item.map(convert::event).map_err(Status::from))
            .boxed();
        Ok(Response::new(stream))
    }

    #[instrument(skip_all, fields(rpc = "ListDevices"))]
    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let caller = self.caller(&request).await?;
        let user = optional_user(&request.get_ref().user_id)?;
        let devices = self
            .services
            .directory
            .list_devices(&caller, user.as_ref())
            .await?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices.iter().map(convert::device).collect(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "RevokeDevice"))]
    async fn revoke_device(
        &self,
        request: Request<RevokeDeviceRequest>,
    ) -> Result<Response<RevokeDeviceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = DeviceId::parse(&request.get_ref().device_id)?;
        let device = self.services.directory.revoke_device(&caller, id).await?;
        Ok(Response::new(RevokeDeviceResponse {
            device: Some(convert::device(&device)),
        }))
    }
}
