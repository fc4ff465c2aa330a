//! The session's life: authenticate, resend what is open, then serve the
//! device, the notifier and the heartbeat until one of them ends it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::stream::BoxStream;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use super::messages::{cancellation, ended, flooded};
use super::{
    CLOSE_GRACE, FromDevice, HEARTBEAT, HELLO_TIMEOUT, MESSAGE_BURST, MESSAGES_PER_SECOND,
    Outbound, RECONNECT_AFTER_MS, SessionIo, ToDevice,
};
use crate::domain::rate::TokenBucket;
use crate::domain::{Device, Notice, Transaction, TransactionId, secure_rng};
use crate::notify::{Delivery, DeviceRegistration};
use crate::service::{Refused, ServiceError, Services, reason};

/// The state of one device stream (its inbound half is owned by
/// [`DeviceSession::run`]).
pub struct DeviceSession {
    pub(super) services: Arc<Services>,
    outbound: Outbound,
    reset: CancellationToken,
    shutdown: CancellationToken,
    send_deadline: std::time::Duration,
    /// Cancelled when the session must stop sending (the notifier ended it).
    ending: CancellationToken,
    /// The confirmations this device was last sent, as sent: a decision on
    /// one of them starts from it instead of reading it again.
    held: Mutex<HashMap<TransactionId, Transaction>>,
    /// Whether every OTP this stream handed in since one was allowed
    /// after a reservation was valid: only then may the next skip the
    /// reservation (see [`crate::service::LookupStanding`]).
    pub(super) lookups: AtomicBool,
}

/// Confirmations remembered per session at most.
const HELD_MAX: usize = 256;

/// Messages from the device.
type Inbound = BoxStream<'static, Result<FromDevice, ServiceError>>;

impl DeviceSession {
    /// Remembers a confirmation as it is sent to the device.
    pub(super) fn remember(&self, transaction: &Transaction) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() < HELD_MAX || held.contains_key(&transaction.id) {
            held.insert(transaction.id, transaction.clone());
        }
    }

    /// Takes the remembered copy of a confirmation, if any.
    pub(super) fn take_held(&self, id: TransactionId) -> Option<Transaction> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(&id)
    }
    /// Sends one message; false once the device is gone, has stopped
    /// reading for [`SEND_DEADLINE`], or the session is ending.
    pub(super) async fn send(&self, message: ToDevice) -> bool {
        let message = Box::new(Ok(message));
        tokio::select! {
            biased;
            () = self.ending.cancelled() => false,
            sent = self.outbound.send_timeout(message, self.send_deadline) => {
                if sent.is_err() && !self.outbound.is_closed() {
                    // The device stopped reading: let go of its stream.
                    tracing::info!("device does not read its stream; resetting it");
                    self.reset.cancel();
                }
                sent.is_ok()
            }
        }
    }

    /// Ends the stream with `error`. If the device does not take it within
    /// [`CLOSE_GRACE`] (it stopped reading), the stream is reset; a stream
    /// the client already ended needs nothing more.
    async fn close(&self, error: ServiceError) {
        let outbound = &self.outbound;
        let left = match outbound.try_send(Box::new(Err(error))) {
            Ok(()) => tokio::time::timeout(CLOSE_GRACE, outbound.closed())
                .await
                .is_ok(),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => false,
        };
        if !left {
            tracing::info!("resetting a stream that does not read");
            self.reset.cancel();
        }
    }

    /// Runs a session over one stream to its end.
    pub async fn run(services: Arc<Services>, io: SessionIo) {
        let SessionIo {
            mut inbound,
            outbound,
            reset,
            shutdown,
            send_deadline,
        } = io;
        let mut session = Self {
            services,
            outbound,
            reset,
            shutdown,
            send_deadline,
            ending: CancellationToken::new(),
            held: Mutex::new(HashMap::new()),
            lookups: AtomicBool::new(false),
        };
        session.serve(&mut inbound).await;
    }

    async fn serve(&mut self, inbound: &mut Inbound) {
        let mut nonce = [0u8; 32];
        secure_rng().fill_bytes(&mut nonce);
        if !Box::pin(self.send(ToDevice::Challenge { nonce })).await {
            return;
        }
        // Every step but the wait for the next message is boxed: a session
        // spends its life idle in `connected`'s select, and an async fn is as
        // large as its largest step (issue 21: memory per idle agent).
        let device = match Box::pin(self.authenticate(inbound, &nonce)).await {
            Ok(device) => device,
            Err(error) => return Box::pin(self.close(error)).await,
        };
        tracing::Span::current().record("device_id", tracing::field::display(device.id));
        tracing::info!(device_id = %device.id, "device connected");
        let now = self.services.clock().now();
        let mut registration = self.services.notifier().register_device(&device, now);
        self.ending = registration.end_token();
        // Shown connected on every replica until this stream ends, however
        // it ends.
        let stream = registration.stream();
        Box::pin(self.services.directory.stream_opened(stream, &device)).await;
        let end = self.connected(&device, &mut registration, inbound).await;
        // Unregister before the last word, so the device is shown
        // disconnected at once; withdrawals already queued still go out
        // if the stream has room (never waiting for it).
        let end = end.or_else(|| registration.end_reason().map(ended));
        let withdrawals = registration.queued_withdrawals();
        drop(registration);
        Box::pin(self.services.directory.stream_closed(stream)).await;
        if let Some(error) = end {
            for notice in withdrawals {
                if let Some(message) = cancellation(&notice)
                    && self.outbound.try_send(Box::new(Ok(message))).is_err()
                {
                    break;
                }
            }
            Box::pin(self.close(error)).await;
        }
        if let Err(error) = Box::pin(self.services.confirmations.heartbeat(device.id)).await {
            tracing::debug!(%error, "last_seen not recorded at disconnect");
        }
        tracing::info!(device_id = %device.id, "device disconnected");
    }

    /// Serves a registered device until its stream ends; the error to end
    /// it with, if any.
    async fn connected(
        &mut self,
        device: &Device,
        registration: &mut DeviceRegistration,
        inbound: &mut Inbound,
    ) -> Option<ServiceError> {
        let ready = ToDevice::Ready {
            device: Arc::new(device.clone()),
        };
        if !Box::pin(self.send(ready)).await {
            return None;
        }
        // A push created while this query runs is both in its result and in
        // the inbox: remember what was sent so it goes out once.
        let mut already_sent = match Box::pin(self.resend_open(device)).await {
            Ok(Some(sent)) => sent,
            Ok(None) => return None,
            Err(error) => return Some(error),
        };
        let refresh = registration.refresh();
        let mut rate = TokenBucket::new(
            MESSAGES_PER_SECOND,
            MESSAGE_BURST,
            self.services.clock().now(),
        );
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    let go_away = ToDevice::GoAway { reconnect_after_ms: RECONNECT_AFTER_MS };
                    Box::pin(self.send(go_away)).await;
                    break None;
                }
                delivery = registration.recv() => {
                    // `None`: the notifier ended the session.
                    let Some(delivery) = delivery else {
                        break registration.end_reason().map(ended);
                    };
                    if !Box::pin(self.deliver(device, delivery, &mut already_sent)).await {
                        break None;
                    }
                }
                () = refresh.notified() => {
                    // Notices from other replicas may have been lost: send
                    // what is open now (the agent ignores what it holds).
                    match Box::pin(self.resend_open(device)).await {
                        Ok(Some(sent)) => already_sent.extend(sent),
                        Ok(None) => break None,
                        Err(error) => break Some(error),
                    }
                }
                _ = heartbeat.tick() => {
                    let beat = Box::pin(self.services.confirmations.heartbeat(device.id));
                    if let Err(error) = beat.await {
                        break Some(error);
                    }
                }
                message = inbound.next() => match message {
                    Some(Ok(message)) => {
                        if let Err(wait) = rate.take(self.services.clock().now()) {
                            break Some(flooded(wait));
                        }
                        if !Box::pin(self.handle(device, message)).await {
                            break None;
                        }
                    }
                    Some(Err(error)) => break Some(error),
                    None => break None,
                },
            }
        }
    }

    async fn authenticate(
        &self,
        inbound: &mut Inbound,
        nonce: &[u8],
    ) -> Result<Device, ServiceError> {
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| {
                ServiceError::Unauthenticated("no hello within 10 s of the challenge".to_owned())
            })?;
        let (device_id, signature) = match first {
            Some(Ok(FromDevice::Hello {
                device_id,
                signature,
            })) => (device_id, signature),
            Some(Ok(FromDevice::Invalid { error, .. })) => return Err(error.into()),
            Some(Err(error)) => return Err(error),
            _ => {
                return Err(ServiceError::Unauthenticated(
                    "the first message on Connect must be a signed Hello".to_owned(),
                ));
            }
        };
        self.services
            .confirmations
            .authenticate_device(device_id, nonce, &signature)
            .await
    }

    /// Sends what the device should be asked now, so a reconnect never
    /// strands a login. The transactions sent, or `None` once it is gone.
    async fn resend_open(
        &self,
        device: &Device,
    ) -> Result<Option<HashSet<TransactionId>>, ServiceError> {
        let open = self
            .services
            .confirmations
            .open_confirmations(device)
            .await?;
        let mut sent = HashSet::with_capacity(open.len());
        let application_name: Arc<str> = Arc::from(device.application_name.as_str());
        for transaction in open {
            self.remember(&transaction);
            let id = transaction.id;
            let request = ToDevice::Confirm {
                transaction: Arc::new(transaction),
                application_name: Arc::clone(&application_name),
                request_id: 0,
            };
            if !self.send(request).await {
                return Ok(None);
            }
            sent.insert(id);
        }
        Ok(Some(sent))
    }

    /// Passes one notice on to the device; false once it is gone.
    async fn deliver(
        &self,
        device: &Device,
        delivery: Delivery,
        already_sent: &mut HashSet<TransactionId>,
    ) -> bool {
        match (&delivery.notice, delivery.transaction) {
            (Notice::Withdraw { transaction_id, .. }, _) => {
                self.take_held(*transaction_id);
                match cancellation(&delivery.notice) {
                    Some(message) => self.send(message).await,
                    None => true,
                }
            }
            (Notice::Confirm { transaction_id, .. }, _) if already_sent.remove(transaction_id) => {
                true
            }
            (Notice::Confirm { .. }, Some(transaction)) => {
                self.remember(&transaction);
                self.send(ToDevice::Confirm {
                    transaction,
                    application_name: Arc::from(device.application_name.as_str()),
                    request_id: 0,
                })
                .await
            }
            // Revocations end the session through the notifier; wake-ups
            // are for subscribers.
            _ => true,
        }
    }

    /// Handles one message of the device; false once the device is gone.
    async fn handle(&self, device: &Device, message: FromDevice) -> bool {
        let answer = match message {
            FromDevice::SubmitOtp { request_id, otp } => {
                self.submit_otp(device, request_id, &otp).await
            }
            FromDevice::Decision(input) => self.decide(device, input).await,
            FromDevice::Unenroll => {
                // The revocation's notice ends this session (PERMISSION_DENIED,
                // DEVICE_REVOKED); nothing to answer before that.
                match self.services.directory.unenroll(device).await {
                    Ok(()) => return true,
                    Err(error) => super::inbound::rejection(0, "", error),
                }
            }
            FromDevice::Invalid {
                transaction_id,
                error,
            } => super::inbound::rejection(0, &transaction_id, error.into()),
            FromDevice::Hello { .. } | FromDevice::Unexpected => super::inbound::rejection(
                0,
                "",
                ServiceError::FailedPrecondition(Refused::new(
                    reason::ALREADY_AUTHENTICATED,
                    "the stream is already authenticated; send SubmitOtp or SignedDecision",
                )),
            ),
        };
        self.send(answer).await
    }
}
