//! Enrollment: codes created by relying parties, redeemed by new devices.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing;
use assent_proto::verify::ed25519;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::{Caller, CreationLimiter, Refused, ServiceError, SourceThrottle, reason};
use crate::domain::clock::span;
use crate::domain::{
    Clock, Device, DeviceId, DeviceName, EnrollmentCode, EnrollmentId, InputError, NewDevice,
    Notice, UserId,
};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{NewEnrollment, Store};

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

/// Parses a public key, refusing malformed and small-order (weak) keys.
pub(super) fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, InputError> {
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

/// Creates enrollment codes and turns them into devices.
pub struct EnrollmentService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    limiter: Arc<CreationLimiter>,
    /// Refused attempts per peer address, across the replicas: guessing
    /// codes is throttled.
    refusals: SourceThrottle,
}

impl EnrollmentService {
    /// Enrollment into `store`, a peer refused `refusals`' burst at once
    /// regaining its rate (across the replicas).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        limiter: Arc<CreationLimiter>,
        refusals: SourceThrottle,
    ) -> Self {
        Self {
            store,
            clock,
            notifier,
            metrics,
            limiter,
            refusals,
        }
    }

    /// Counts one refused attempt of `peer`, and logs it.
    async fn refused(&self, peer: Option<IpAddr>, error: ServiceError) -> ServiceError {
        tracing::warn!(peer = ?peer, reason = %error, "enrollment refused");
        self.refusals.refused(peer).await;
        error
    }

    /// Creates a single-use enrollment code for `user`.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_enrollment<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        user: UserId,
        ttl: Duration,
        rng: &mut R,
    ) -> Result<(EnrollmentCode, DateTime<Utc>), ServiceError> {
        self.limiter.spend(caller).await?;
        let now = self.clock.now();
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

    /// Turns an enrollment code into a device. The code is used up by any
    /// attempt that names it, whatever the outcome. Refused attempts are
    /// logged and counted per peer address: a peer that keeps guessing is
    /// refused for a while before its codes are even looked up.
    #[instrument(skip_all)]
    pub async fn enroll(
        &self,
        input: EnrollInput,
        peer: Option<IpAddr>,
    ) -> Result<Device, ServiceError> {
        self.refusals.check(peer)?;
        match self.redeem(input).await {
            Ok(device) => Ok(device),
            Err(error @ (ServiceError::Unavailable(_) | ServiceError::Internal(_))) => Err(error),
            Err(refused) => Err(self.refused(peer, refused).await),
        }
    }

    async fn redeem(&self, input: EnrollInput) -> Result<Device, ServiceError> {
        let now = self.clock.now();
        // The code is used up first: a weak or invalid key, a bad proof or
        // a wrong secret all spend it.
        let enrollment = self
            .store
            .consume_enrollment(input.code.id(), now)
            .await?
            .ok_or(ServiceError::EnrollmentRefused)?;
        if !input.code.matches(&enrollment.secret_hash) || enrollment.expires_at <= now {
            return Err(ServiceError::EnrollmentRefused);
        }
        let key = verifying_key(&input.public_key)?;
        let proof = signing::enroll_bytes(
            &input.code_text,
            &input.public_key,
            input.device_name.as_str(),
        );
        ed25519(key.as_bytes(), &proof, &input.proof.to_bytes()).map_err(|_| {
            ServiceError::PermissionDenied(Refused::new(
                reason::ENROLLMENT_PROOF_INVALID,
                "the enrollment proof does not verify with public_key; sign the enrollment \
                 bytes with the new key (docs/protocol.md)",
            ))
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
        self.notifier.publish(Notice::EventsAppended {
            application_id: device.application_id,
        });
        Ok(device)
    }
}
