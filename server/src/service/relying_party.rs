//! Use cases of relying parties: enrollment codes, OTP logins, reading and
//! cancelling transactions, managing devices.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::{AuthService, ServiceError, span};
use crate::domain::rate::TokenBucket;
use crate::domain::{
    ApiKey, ApiKeyId, Context, DeviceId, EnrollmentCode, EnrollmentId, Message, Otp, TransactionId,
    TransactionKind, TransactionState, UserId,
};
use crate::notify::DeviceCommand;
use crate::store::{
    Application, DeviceRecord, ExpiryGuard, NewEnrollment, NewTransaction, Revocation,
    TransactionRecord, Transition,
};

/// An authenticated relying party.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key it used.
    pub key_id: ApiKeyId,
    /// Its application.
    pub application: Application,
}

/// Input of an OTP login.
#[derive(Debug, Clone)]
pub struct CreateOtpInput {
    /// Text shown on the device.
    pub message: Message,
    /// Lifetime.
    pub ttl: Duration,
    /// Extra facts shown.
    pub context: Context,
    /// Restrict to one user's devices.
    pub user_id: Option<UserId>,
}

/// A device and whether it is connected now.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// The stored device.
    pub record: DeviceRecord,
    /// Whether it holds a live authenticated stream on this server.
    pub is_connected: bool,
}

/// A created OTP login.
#[derive(Debug, Clone)]
pub struct CreatedOtp {
    /// The stored transaction.
    pub transaction: TransactionRecord,
    /// The OTP, returned once and never stored.
    pub otp: Otp,
}

impl AuthService {
    /// Checks an API key (constant-time) and returns its application.
    pub async fn authenticate(&self, key_text: &str) -> Result<Caller, ServiceError> {
        let refused = || {
            ServiceError::Unauthenticated(
                "the API key is not valid; pass `authorization: Bearer <api key>`".to_owned(),
            )
        };
        let key = ApiKey::parse(key_text).map_err(|_| refused())?;
        let record = self
            .store
            .find_api_key(key.id())
            .await?
            .ok_or_else(refused)?;
        if !key.matches(&record.secret_hash) {
            return Err(refused());
        }
        Ok(Caller {
            key_id: record.id,
            application: record.application,
        })
    }

    /// Spends one creation token of the caller's key.
    pub(super) fn check_rate(&self, caller: &Caller) -> Result<(), ServiceError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(caller.key_id).or_insert_with(|| {
            TokenBucket::new(self.limits.create_per_second, self.limits.create_burst, now)
        });
        bucket.take(now).map_err(|retry| {
            ServiceError::ResourceExhausted(format!(
                "creation rate limit of this API key reached; retry in {} ms",
                retry.as_millis().max(1)
            ))
        })
    }

    /// Creates a single-use enrollment code for `user`.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_enrollment<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        user: UserId,
        ttl: Duration,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<(EnrollmentCode, DateTime<Utc>), ServiceError> {
        self.check_rate(caller)?;
        let code = EnrollmentCode::generate(rng, EnrollmentId::random());
        let expires_at = now + span(ttl);
        self.store
            .create_enrollment(&NewEnrollment {
                id: code.id(),
                application_id: caller.application.id,
                user_id: user,
                secret_hash: code.hash(),
                created_at: now,
                expires_at,
            })
            .await?;
        Ok((code, expires_at))
    }

    /// Starts an OTP login.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_otp_authentication<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        input: CreateOtpInput,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<CreatedOtp, ServiceError> {
        self.check_rate(caller)?;
        let otp = Otp::generate(rng, TransactionId::random());
        let transaction = self
            .store
            .insert_transaction(&NewTransaction {
                id: otp.id(),
                application_id: caller.application.id,
                kind: TransactionKind::Otp,
                user_id: input.user_id,
                message: input.message,
                context: input.context,
                otp_hash: Some(otp.hash()),
                nonce: None,
                number_match: None,
                created_at: now,
                expires_at: now + span(input.ttl),
            })
            .await?;
        tracing::info!(transaction_id = %transaction.id, "transaction created");
        self.metrics.transaction_created(transaction.kind);
        self.notifier.events_appended(caller.application.id);
        Ok(CreatedOtp { transaction, otp })
    }

    /// The transaction as it is now; an overdue one is expired on the spot.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn get_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
        now: DateTime<Utc>,
    ) -> Result<TransactionRecord, ServiceError> {
        let record = self
            .store
            .find_transaction(caller.application.id, id)
            .await?
            .ok_or(ServiceError::NotFound("transaction"))?;
        if record.state_at(now) == TransactionState::Expired && !record.state.is_terminal() {
            return self.settle_overdue(record, now).await;
        }
        Ok(record)
    }

    /// Cancels an open transaction and tells the device holding it.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn cancel_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
        now: DateTime<Utc>,
    ) -> Result<TransactionRecord, ServiceError> {
        let cancelled = self
            .store
            .transition(&Transition {
                id,
                application_id: caller.application.id,
                to: TransactionState::Cancelled,
                reason: None,
                bound_device: None,
                bound_user: None,
                signature: None,
                expiry: ExpiryGuard::Unexpired,
                now,
            })
            .await?;
        match cancelled {
            Some(record) => {
                self.after_transition(&record, "cancelled", None).await;
                Ok(record)
            }
            None => {
                let current = self.get_transaction(caller, id, now).await?;
                Err(ServiceError::FailedPrecondition(format!(
                    "the transaction already ended: {}",
                    current.state.as_str()
                )))
            }
        }
    }

    /// The caller's devices, optionally of one user, with their presence.
    pub async fn list_devices(
        &self,
        caller: &Caller,
        user: Option<&UserId>,
    ) -> Result<Vec<DeviceView>, ServiceError> {
        let devices = self.store.list_devices(caller.application.id, user).await?;
        Ok(devices.into_iter().map(|d| self.view(d)).collect())
    }

    /// One of the caller's devices with its presence.
    pub async fn get_device(
        &self,
        caller: &Caller,
        id: DeviceId,
    ) -> Result<DeviceView, ServiceError> {
        let device = self
            .store
            .find_device(id)
            .await?
            .filter(|d| d.application_id == caller.application.id)
            .ok_or(ServiceError::NotFound("device"))?;
        Ok(self.view(device))
    }

    fn view(&self, record: DeviceRecord) -> DeviceView {
        DeviceView {
            is_connected: self.notifier.is_connected(record.id),
            record,
        }
    }

    /// Revokes a device at once: withdraws its confirmations, closes its
    /// streams, fails its open transactions.
    #[instrument(skip_all, fields(device_id = %device))]
    pub async fn revoke_device(
        &self,
        caller: &Caller,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<DeviceView, ServiceError> {
        let Revocation { device, failed } = self
            .store
            .revoke_device(caller.application.id, device, now)
            .await?
            .ok_or(ServiceError::NotFound("device"))?;
        // Withdraw its confirmations first, then close its streams.
        for record in &failed {
            self.metrics.transaction_ended(record.state);
            self.notifier.send_to_device(
                device.id,
                DeviceCommand::Cancel {
                    transaction_id: record.id,
                    reason: "device_revoked".to_owned(),
                },
            );
        }
        self.notifier
            .send_to_device(device.id, DeviceCommand::Revoked);
        self.notifier.events_appended(caller.application.id);
        tracing::info!(failed = failed.len(), "device revoked");
        Ok(self.view(device))
    }
}
