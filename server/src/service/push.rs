//! Push logins: creation under the anti-fatigue rules, delivery to every
//! device of the user, and withdrawing a request from the devices that hold it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::{AuthService, Caller, ServiceError, span};
use crate::domain::push::NumberMatch;
use crate::domain::{
    Context, DeviceId, Message, TransactionId, TransactionKind, TransactionState, UserId,
};
use crate::notify::DeviceCommand;
use crate::store::{NewTransaction, StoreError, TransactionRecord};

/// Input of a push login.
#[derive(Debug, Clone)]
pub struct CreatePushInput {
    /// Whose devices are asked.
    pub user_id: UserId,
    /// Text shown on the device.
    pub message: Message,
    /// Lifetime.
    pub ttl: Duration,
    /// Extra facts shown.
    pub context: Context,
    /// Whether the device must pick the number shown on the login page.
    pub number_matching: bool,
}

/// A created push login.
#[derive(Debug, Clone)]
pub struct CreatedPush {
    /// The stored transaction.
    pub transaction: TransactionRecord,
    /// The number to show on the login page, under number matching.
    pub number: Option<u8>,
    /// Devices of the user connected to this server that got it at once.
    pub devices_reached: usize,
}

impl AuthService {
    /// Starts a push login to every device of `input.user_id`.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_push_authentication<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        input: CreatePushInput,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<CreatedPush, ServiceError> {
        self.check_rate(caller)?;
        let app = caller.application.id;
        let user = &input.user_id;
        let devices: Vec<DeviceId> = self
            .store
            .list_devices(app, Some(user))
            .await?
            .into_iter()
            .filter(|d| !d.is_revoked())
            .map(|d| d.id)
            .collect();
        if devices.is_empty() {
            return Err(ServiceError::FailedPrecondition(format!(
                "user {user:?} has no enrolled device to push to; enroll one first"
            )));
        }
        self.check_fatigue(caller, user, now).await?;
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let number_match = input.number_matching.then(|| NumberMatch::generate(rng));
        let inserted = self
            .store
            .insert_transaction(&NewTransaction {
                id: TransactionId::random(),
                application_id: app,
                kind: TransactionKind::Push,
                user_id: Some(input.user_id.clone()),
                message: input.message,
                context: input.context,
                otp_hash: None,
                nonce: Some(nonce),
                number_match: number_match.clone(),
                created_at: now,
                expires_at: now + span(input.ttl),
            })
            .await;
        let transaction = match inserted {
            Ok(transaction) => transaction,
            Err(StoreError::OpenPushExists) => {
                return Err(ServiceError::ResourceExhausted(
                    "another push to this user was created at the same moment; wait for its \
                     outcome or cancel it"
                        .to_owned(),
                ));
            }
            Err(other) => return Err(other.into()),
        };
        tracing::info!(transaction_id = %transaction.id, "push created");
        self.metrics.transaction_created(transaction.kind);
        self.notifier.events_appended(app);
        let mut devices_reached = 0;
        for device in devices {
            if self.notifier.is_connected(device) {
                devices_reached += 1;
            }
            self.notifier.send_to_device(
                device,
                DeviceCommand::Confirm(Box::new(transaction.clone())),
            );
        }
        Ok(CreatedPush {
            transaction,
            number: number_match.map(|m| m.number),
            devices_reached,
        })
    }

    /// The anti-fatigue rules: one open push per user, a cap on unanswered
    /// pushes, and a block after a fraud report.
    async fn check_fatigue(
        &self,
        caller: &Caller,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let app = caller.application.id;
        let limits = self.limits.push;
        if let Some(reported) = self.store.last_fraud_report(app, user).await? {
            let until = reported + span(limits.fraud_cooldown);
            if until > now {
                return Err(ServiceError::ResourceExhausted(format!(
                    "user {user:?} reported a login attempt as not theirs at {}; pushes to \
                     them are blocked until {}",
                    reported.to_rfc3339(),
                    until.to_rfc3339()
                )));
            }
        }
        if let Some(open) = self.store.open_push(app, user).await? {
            if open.state_at(now) == TransactionState::Expired {
                self.settle_overdue(open, now).await?;
            } else {
                return Err(ServiceError::ResourceExhausted(format!(
                    "push {} to user {user:?} is still open until {}; wait for its outcome \
                     or cancel it",
                    open.id,
                    open.expires_at.to_rfc3339()
                )));
            }
        }
        let recent = self
            .store
            .count_unanswered_pushes(app, user, now - span(limits.window))
            .await?;
        if recent >= limits.unanswered {
            return Err(ServiceError::ResourceExhausted(format!(
                "{recent} pushes to user {user:?} in the last {} minutes went unaccepted; \
                 wait before sending more",
                limits.window.as_secs() / 60
            )));
        }
        Ok(())
    }

    /// Publishes a transition: wakes subscribers and withdraws the request
    /// from every device still holding it — the bound device of an OTP
    /// transaction, or every device of a push's user except `decided_by`.
    pub(super) async fn after_transition(
        &self,
        record: &TransactionRecord,
        reason: &str,
        decided_by: Option<DeviceId>,
    ) {
        self.metrics.transaction_ended(record.state);
        self.notifier.events_appended(record.application_id);
        let holders: Vec<DeviceId> = match (record.kind, &record.user_id) {
            (TransactionKind::Push, Some(user)) => {
                let Ok(user) = UserId::parse(user) else {
                    return;
                };
                match self
                    .store
                    .list_devices(record.application_id, Some(&user))
                    .await
                {
                    Ok(devices) => devices.into_iter().map(|d| d.id).collect(),
                    Err(error) => {
                        // The devices learn the outcome when they next answer.
                        tracing::warn!(%error, "cannot list devices to withdraw a push");
                        return;
                    }
                }
            }
            _ => record.device_id.into_iter().collect(),
        };
        for device in holders.into_iter().filter(|d| Some(*d) != decided_by) {
            self.notifier.send_to_device(
                device,
                DeviceCommand::Cancel {
                    transaction_id: record.id,
                    reason: reason.to_owned(),
                },
            );
        }
    }
}
