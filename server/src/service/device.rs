//! Use cases of device agents: enrollment, stream authentication, OTP
//! submission and signed decisions.

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::{AuthService, ServiceError, span};
use crate::domain::rate::{OTP_FAILURE_LIMIT, OTP_FAILURE_WINDOW};
use crate::domain::{
    DenyReason, DeviceId, DeviceName, EnrollmentCode, InputError, Otp, TransactionId,
    TransactionKind, TransactionState,
};
use crate::store::{DeviceRecord, ExpiryGuard, NewDevice, Scan, TransactionRecord, Transition};

/// A parsed `Enroll` request.
#[derive(Debug, Clone)]
pub struct EnrollInput {
    /// The code exactly as sent (the proof signs these bytes).
    pub code_text: String,
    /// The parsed code.
    pub code: EnrollmentCode,
    /// The new public key.
    pub public_key: [u8; 32],
    /// The device's name.
    pub device_name: DeviceName,
    /// Signature over the enrollment proof bytes.
    pub proof: Signature,
}

/// A parsed signed decision.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    /// The transaction decided on.
    pub transaction_id: TransactionId,
    /// Accept or deny.
    pub verdict: SignedVerdict,
    /// The reason of a denial.
    pub reason: Option<DenyReason>,
    /// The number picked under number matching.
    pub number: Option<u8>,
    /// The signature over the canonical decision bytes.
    pub signature: Signature,
}

/// What a decision led to.
#[derive(Debug, Clone)]
pub struct DecisionOutcome {
    /// The transaction afterwards.
    pub transaction: TransactionRecord,
    /// Whether this decision produced the outcome.
    pub applied: bool,
}

/// Parses a public key, refusing malformed and small-order (weak) keys.
fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, InputError> {
    let key = VerifyingKey::from_bytes(bytes)
        .map_err(|_| InputError::new("public_key", "is not a valid Ed25519 public key"))?;
    if key.is_weak() {
        return Err(InputError::new(
            "public_key",
            "is a weak (small-order) Ed25519 key; generate a fresh key pair",
        ));
    }
    Ok(key)
}

/// Whether `device` may decide `record`: the device that scanned an OTP
/// transaction, or any device of a push's user until one claims it.
fn is_held_by(record: &TransactionRecord, device: &DeviceRecord) -> bool {
    match record.kind {
        TransactionKind::Otp => record.device_id == Some(device.id),
        TransactionKind::Push => {
            record.user_id.as_deref() == Some(device.user_id.as_str())
                && record.device_id.is_none_or(|bound| bound == device.id)
        }
    }
}

impl AuthService {
    /// Turns an enrollment code into a device. The code is used up by any
    /// attempt that names it, whatever the outcome.
    #[instrument(skip_all)]
    pub async fn enroll(
        &self,
        input: EnrollInput,
        now: DateTime<Utc>,
    ) -> Result<DeviceRecord, ServiceError> {
        let key = verifying_key(&input.public_key)?;
        let enrollment = self
            .store
            .consume_enrollment(input.code.id(), now)
            .await?
            .ok_or(ServiceError::EnrollmentRefused)?;
        if !input.code.matches(&enrollment.secret_hash) || enrollment.expires_at <= now {
            return Err(ServiceError::EnrollmentRefused);
        }
        let proof = signing::enroll_bytes(
            &input.code_text,
            &input.public_key,
            input.device_name.as_str(),
        );
        key.verify_strict(&proof, &input.proof).map_err(|_| {
            ServiceError::PermissionDenied(
                "the enrollment proof does not verify with public_key; sign the enrollment \
                 bytes with the new key (docs/protocol.md)"
                    .to_owned(),
            )
        })?;
        let device = self
            .store
            .insert_device(&NewDevice {
                id: DeviceId::random(),
                application_id: enrollment.application_id,
                user_id: enrollment.user_id,
                name: input.device_name,
                public_key: input.public_key,
                created_at: now,
            })
            .await?;
        tracing::info!(device_id = %device.id, "device enrolled");
        self.metrics.device_enrolled();
        self.notifier.events_appended(device.application_id);
        Ok(device)
    }

    /// Verifies a stream's hello: known, unrevoked device, valid signature.
    #[instrument(skip_all, fields(device_id = %device_id))]
    pub async fn authenticate_device(
        &self,
        device_id: DeviceId,
        challenge: &[u8],
        signature: &Signature,
        now: DateTime<Utc>,
    ) -> Result<DeviceRecord, ServiceError> {
        let device = self
            .store
            .find_device(device_id)
            .await?
            .ok_or(ServiceError::NotFound("device (enroll it again)"))?;
        if device.is_revoked() {
            return Err(ServiceError::PermissionDenied(
                "this device has been revoked; enroll it again with a new code".to_owned(),
            ));
        }
        let key = verifying_key(&device.public_key)?;
        key.verify_strict(
            &signing::hello_bytes(&device_id.to_string(), challenge),
            signature,
        )
        .map_err(|_| {
            ServiceError::Unauthenticated(
                "the hello signature does not verify with this device's key".to_owned(),
            )
        })?;
        self.store.touch_device(device_id, now).await?;
        Ok(device)
    }

    /// Binds the OTP's transaction to `device` (PENDING → SCANNED) and
    /// returns it with a fresh confirmation nonce.
    #[instrument(skip_all, fields(device_id = %device.id))]
    pub async fn submit_otp<R: RngCore + CryptoRng + Send>(
        &self,
        device: &DeviceRecord,
        otp_text: &str,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<TransactionRecord, ServiceError> {
        let failures = self
            .store
            .count_otp_failures(device.id, now - span(OTP_FAILURE_WINDOW))
            .await?;
        if failures >= OTP_FAILURE_LIMIT {
            return Err(ServiceError::ResourceExhausted(format!(
                "too many invalid OTPs from this device; wait {} minutes before trying again",
                OTP_FAILURE_WINDOW.as_secs() / 60
            )));
        }
        match self.try_scan(device, otp_text, now, rng).await {
            Ok(record) => {
                tracing::info!(transaction_id = %record.id, "transaction scanned");
                self.notifier.events_appended(record.application_id);
                Ok(record)
            }
            Err(error @ (ServiceError::OtpRefused | ServiceError::Input(_))) => {
                self.metrics.otp_refused();
                self.store.record_otp_failure(device.id, now).await?;
                Err(error)
            }
            Err(other) => Err(other),
        }
    }

    async fn try_scan<R: RngCore + CryptoRng + Send>(
        &self,
        device: &DeviceRecord,
        otp_text: &str,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<TransactionRecord, ServiceError> {
        let otp = Otp::parse(otp_text)?;
        // Foreign, unknown, used and expired OTPs all end in the same error.
        let record = self
            .store
            .find_transaction(device.application_id, otp.id())
            .await?
            .ok_or(ServiceError::OtpRefused)?;
        let is_genuine = record
            .otp_hash
            .as_ref()
            .is_some_and(|hash| otp.matches(hash));
        if !is_genuine || record.state_at(now) != TransactionState::Pending {
            return Err(ServiceError::OtpRefused);
        }
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        self.store
            .scan_transaction(&Scan {
                id: record.id,
                application_id: device.application_id,
                device_id: device.id,
                user_id: device.user_id.clone(),
                nonce,
                now,
            })
            .await?
            .ok_or(ServiceError::OtpRefused)
    }

    /// Applies a signed decision of the bound device.
    #[instrument(skip_all, fields(device_id = %device.id, transaction_id = %input.transaction_id))]
    pub async fn decide(
        &self,
        device: &DeviceRecord,
        input: DecisionInput,
        now: DateTime<Utc>,
    ) -> Result<DecisionOutcome, ServiceError> {
        let not_held = ServiceError::NotFound("confirmation for this transaction on this device");
        let record = self
            .store
            .find_transaction(device.application_id, input.transaction_id)
            .await?
            .filter(|record| is_held_by(record, device))
            .ok_or(not_held)?;
        let nonce = record
            .nonce
            .as_deref()
            .ok_or(ServiceError::NotFound("confirmation nonce"))?;
        let number = match (record.match_number, input.number, input.verdict) {
            (Some(_), None, SignedVerdict::Accept) => {
                return Err(InputError::new(
                    "number",
                    "number matching is on: pick the number the login page shows",
                )
                .into());
            }
            (None, Some(_), _) => {
                return Err(InputError::new("number", "must be 0: no number matching here").into());
            }
            (_, number, _) => number,
        };
        let reason = input.reason.map(DenyReason::as_str);
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &record.application_id.to_string(),
            transaction_id: &record.id.to_string(),
            device_id: &device.id.to_string(),
            nonce,
            verdict: input.verdict,
            reason: reason.unwrap_or_default(),
            display_hash: &signing::display_hash(&record.message, &record.context),
            number: number.map(u32::from),
        });
        verifying_key(&device.public_key)?
            .verify_strict(&bytes, &input.signature)
            .map_err(|_| {
                ServiceError::PermissionDenied(
                    "the decision signature does not verify for this transaction and nonce"
                        .to_owned(),
                )
            })?;
        let (to, reason) = match input.verdict {
            SignedVerdict::Accept if number != record.match_number => {
                (TransactionState::Denied, Some("wrong_number"))
            }
            SignedVerdict::Accept => (TransactionState::Accepted, None),
            SignedVerdict::Deny => (TransactionState::Denied, reason),
        };
        let decided = self
            .store
            .transition(&Transition {
                id: record.id,
                application_id: record.application_id,
                to,
                reason: reason.map(str::to_owned),
                bound_device: Some(device.id),
                bound_user: Some(device.user_id.clone()),
                signature: Some(input.signature.to_bytes().to_vec()),
                expiry: ExpiryGuard::Unexpired,
                now,
            })
            .await?;
        if let Some(transaction) = decided {
            tracing::info!(state = to.as_str(), "transaction decided");
            self.after_transition(&transaction, "answered_elsewhere", Some(device.id))
                .await;
            return Ok(DecisionOutcome {
                transaction,
                applied: true,
            });
        }
        let transaction = if record.state_at(now) == TransactionState::Expired {
            self.settle_overdue(record, now).await?
        } else {
            self.store
                .find_transaction(record.application_id, record.id)
                .await?
                .ok_or(ServiceError::NotFound("transaction"))?
        };
        Ok(DecisionOutcome {
            transaction,
            applied: false,
        })
    }

    /// What the device should be asked now: OTP transactions it scanned
    /// and has not answered, and pending pushes to its user.
    pub async fn open_confirmations(
        &self,
        device: &DeviceRecord,
        now: DateTime<Utc>,
    ) -> Result<Vec<TransactionRecord>, ServiceError> {
        Ok(self.store.open_confirmations(device, now).await?)
    }

    /// Records that a connected device is still there.
    pub async fn touch_device(
        &self,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        Ok(self.store.touch_device(device, now).await?)
    }
}
