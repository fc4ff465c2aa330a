//! What a connected device does: authenticate its stream, hand in OTPs,
//! send signed decisions, learn what it should be asked.

use std::sync::Arc;

use assent_proto::signing;
use assent_proto::verify::ed25519;
use chrono::{DateTime, Utc};
use ed25519_dalek::Signature;
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::enrollment::verifying_key;
use super::throttle::{ReplicaShare, SharedBuckets};
use super::writer::NotApplied;
use super::{Refused, RefusedExt, ServiceError, TransactionWriter, reason};
use crate::domain::rate::{
    OTP_FAILURE_WINDOW, SIGNATURE_FAILURE_LIMIT, SIGNATURE_FAILURE_REFILL, StrikeWindow,
};
use crate::domain::transaction::Decision;
use crate::domain::{Clock, Device, DeviceId, Otp, Refusal, Transaction, TransactionId};
use crate::metrics::Metrics;
use crate::store::{OtpLookup, Reservation, Store};

/// The least time an OTP refusal takes, from the submission's arrival:
/// above the refused paths' own work, so how long a refusal takes tells
/// nothing about why it was refused (unknown, used, expired, cancelled,
/// another application's or another user's); it also slows guessing.
///
/// 10 ms rather than the 3 ms it was: the refused paths' work stays well
/// under 3 ms (median 0.5–0.6 ms, p99 1.6 ms in a debug build), but the
/// wake-up after the floor still carried a class-dependent shift of
/// ≈ 60 µs (a refusal whose transaction was found woke later: p10 3 624
/// against 3 558 µs, measured in the server), enough for `timing.rs`'s
/// classifier to tell the classes apart (Kolmogorov–Smirnov 0.15–0.17, the
/// line 0.15). Behind a 10 ms floor the same shift is lost in the wake-up's
/// own spread (0.03–0.10).
pub const OTP_REFUSAL_FLOOR: std::time::Duration = std::time::Duration::from_millis(10);

/// What a device's stream knows of the device's OTP lookups when it hands
/// in the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStanding {
    /// Nothing (a new stream, or its last OTP was refused): the submission
    /// is reserved first, like every lookup.
    Unknown,
    /// Every OTP this stream handed in since one was allowed after a
    /// reservation was valid. A valid OTP of a transaction created on this
    /// replica may then be scanned without the reservation's round trip:
    /// the scan's commit itself requires that the device is not cooling
    /// off. Only such a stream may skip it, so a device cooling off cannot
    /// learn from how long a refusal takes whether its guess was right
    /// (a right guess would have tried the commit first).
    Clear,
}

/// A parsed signed decision.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    /// The transaction decided on.
    pub transaction_id: TransactionId,
    /// What the device decided and signed.
    pub decision: Decision,
}

/// What a decision led to.
#[derive(Debug, Clone)]
pub struct DecisionOutcome {
    /// The transaction afterwards.
    pub transaction: Transaction,
    /// Whether this decision produced the outcome.
    pub applied: bool,
}

/// The use cases of a device's stream.
pub struct ConfirmationService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    writer: Arc<TransactionWriter>,
    metrics: Arc<Metrics>,
    /// Failed decision signatures per device (sent on its authenticated
    /// stream, so only the key holder spends them), across the replicas
    /// `share` counts.
    share: Arc<ReplicaShare>,
    signature_failures: SharedBuckets<DeviceId>,
}

/// Devices whose failed signatures are remembered at most.
const SIGNATURE_LOCKS: usize = 100_000;

impl ConfirmationService {
    /// The device use cases over `store`, deciding through `writer`,
    /// failed signatures counted across the replicas `share` counts.
    pub fn new(
        store: Arc<dyn Store>,
        writer: Arc<TransactionWriter>,
        metrics: Arc<Metrics>,
        share: Arc<ReplicaShare>,
    ) -> Self {
        Self {
            store,
            clock: share.clock(),
            writer,
            metrics,
            share,
            signature_failures: SharedBuckets::new(
                1.0 / SIGNATURE_FAILURE_REFILL.as_secs_f64(),
                SIGNATURE_FAILURE_LIMIT,
                SIGNATURE_LOCKS,
            ),
        }
    }

    /// Refuses a device locked out by failed decision signatures.
    fn check_signature_lock(&self, device: DeviceId) -> Result<(), ServiceError> {
        self.signature_failures
            .check(&device, self.clock.now())
            .map_err(|retry| {
                ServiceError::ResourceExhausted(
                    Refused::new(
                        reason::SIGNATURE_ATTEMPTS_EXHAUSTED,
                        format!(
                            "too many of this device's signatures failed to verify; retry in {} s",
                            retry.as_secs().max(1)
                        ),
                    )
                    .retry_after(retry),
                )
            })
    }

    /// Counts a decision signature of `device` that failed to verify.
    async fn signature_failed(&self, device: DeviceId) {
        tracing::warn!(device_id = %device, "a device signature failed to verify");
        let now = self.clock.now();
        let replicas = self.share.replicas(now).await;
        let _ = self.signature_failures.take(&device, replicas, now);
    }

    /// Verifies a stream's hello: known, unrevoked device, valid signature.
    /// A failed hello locks nothing: device ids are public, so counting
    /// failures per device would let anyone lock a device out, and per
    /// address would let one client behind a proxy lock every device out;
    /// each costs one signature check and ends its stream (bounded by the
    /// connection caps and the handshake timeout).
    #[instrument(skip_all, fields(device_id = %device_id))]
    pub async fn authenticate_device(
        &self,
        device_id: DeviceId,
        challenge: &[u8],
        signature: &Signature,
    ) -> Result<Device, ServiceError> {
        let device = self
            .store
            .find_device(device_id)
            .await?
            .ok_or(ServiceError::NotFound("device (enroll it again)"))?;
        if device.is_revoked() {
            return Err(ServiceError::device_revoked());
        }
        let key = verifying_key(&device.public_key)?;
        let signed = signing::hello_bytes(&device_id.to_string(), challenge);
        if ed25519(key.as_bytes(), &signed, &signature.to_bytes()).is_err() {
            tracing::warn!("a hello signature failed to verify");
            return Err(ServiceError::Unauthenticated(
                "the hello signature does not verify with this device's key".to_owned(),
            ));
        }
        self.heartbeat(device_id).await
    }

    /// Records that the device is still connected and returns it as stored
    /// now; a device revoked meanwhile is refused.
    pub async fn heartbeat(&self, device_id: DeviceId) -> Result<Device, ServiceError> {
        let now = self.clock.now();
        let device = self
            .store
            .touch_device(device_id, now)
            .await?
            .ok_or(ServiceError::NotFound("device (enroll it again)"))?;
        if device.is_revoked() {
            return Err(ServiceError::device_revoked());
        }
        Ok(device)
    }

    /// Binds the OTP's transaction to `device` (PENDING → SCANNED) and
    /// returns it with a fresh confirmation nonce.
    pub async fn submit_otp<R: RngCore + CryptoRng + Send>(
        &self,
        device: &Device,
        otp_text: &str,
        rng: &mut R,
    ) -> Result<Transaction, ServiceError> {
        self.submit_otp_from(device, otp_text, rng, LookupStanding::Unknown)
            .await
    }

    /// [`ConfirmationService::submit_otp`] from a stream whose `standing`
    /// may let a valid OTP skip its reservation.
    #[instrument(skip_all, fields(device_id = %device.id))]
    pub async fn submit_otp_from<R: RngCore + CryptoRng + Send>(
        &self,
        device: &Device,
        otp_text: &str,
        rng: &mut R,
        standing: LookupStanding,
    ) -> Result<Transaction, ServiceError> {
        let arrived = tokio::time::Instant::now();
        let now = self.clock.now();
        if standing == LookupStanding::Clear
            && let Some(scanned) = self.scan_unreserved(device, otp_text, rng, now).await?
        {
            return Ok(scanned);
        }
        // Every submission is reserved first, atomically: one that does not
        // match an open OTP takes a strike, so parallel streams of one
        // device cannot look up more wrong OTPs than the limit, while its
        // valid ones, however many are in flight, take none. The OTP's
        // transaction is read in the same round trip.
        let otp = Otp::parse(otp_text);
        let lookup = otp.as_ref().ok().map(|otp| OtpLookup {
            application_id: device.application_id,
            transaction_id: otp.id(),
            otp_hash: otp.hash(),
        });
        let reservation = self
            .store
            .reserve_otp_attempt(device.id, &StrikeWindow::at(now), lookup.as_ref())
            .await?;
        let Reservation::Allowed(found) = reservation else {
            return Err(ServiceError::ResourceExhausted(
                Refused::new(
                    reason::OTP_ATTEMPTS_EXHAUSTED,
                    format!(
                        "too many invalid OTPs from this device; wait {} minutes before trying \
                         again",
                        OTP_FAILURE_WINDOW.as_secs() / 60
                    ),
                )
                .retry_after(OTP_FAILURE_WINDOW),
            ));
        };
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        // Every refusal class (unknown, used, expired, cancelled, another
        // application's, another user's) takes the same path in time too:
        // one round trip, the secret hashed once, no second read.
        let scanned = match otp {
            Ok(otp) => match found {
                None => {
                    std::hint::black_box(otp.hash());
                    Err(ServiceError::OtpRefused)
                }
                Some(found) => self
                    .writer
                    .update_fresh(*found, now, |t| t.scan(device, &otp, nonce, now))
                    .await?
                    .map_err(|_| ServiceError::OtpRefused),
            },
            Err(error) => Err(error.into()),
        };
        match scanned {
            Ok(transaction) => {
                tracing::info!(transaction_id = %transaction.id, "transaction scanned");
                Ok(transaction)
            }
            Err(error) => {
                // Every refused OTP is answered no sooner than the floor,
                // whatever the reason (an open OTP refused — expired, another
                // user's — took no strike; an unknown, used or foreign one
                // did).
                self.metrics.otp_refused();
                tokio::time::sleep_until(arrived + OTP_REFUSAL_FLOOR).await;
                Err(error)
            }
        }
    }

    /// The scan of a valid OTP of a transaction this replica created,
    /// decided on the copy it kept and committed with the reservation's
    /// condition as a guard (one round trip instead of two). `None` if
    /// anything is off — no copy, an invalid OTP, the transaction changed,
    /// a guard failed — and then nothing was changed: the reserved path
    /// decides the submission.
    async fn scan_unreserved<R: RngCore + CryptoRng + Send>(
        &self,
        device: &Device,
        otp_text: &str,
        rng: &mut R,
        now: DateTime<Utc>,
    ) -> Result<Option<Transaction>, ServiceError> {
        let Ok(otp) = Otp::parse(otp_text) else {
            return Ok(None);
        };
        let Some(copy) = self
            .writer
            .take_created_otp(device.application_id, otp.id())
        else {
            return Ok(None);
        };
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let window = StrikeWindow::at(now);
        let Ok(change) = copy.scan_unreserved(device, &otp, nonce, window) else {
            return Ok(None);
        };
        if !self.writer.commit(&change).await? {
            return Ok(None);
        }
        self.metrics.otp_scanned_unreserved();
        tracing::info!(transaction_id = %change.after.id, "transaction scanned");
        Ok(Some(change.after))
    }

    /// Applies a signed decision of a device holding the confirmation.
    pub async fn decide(
        &self,
        device: &Device,
        input: DecisionInput,
    ) -> Result<DecisionOutcome, ServiceError> {
        self.decide_held(device, input, None).await
    }

    /// [`ConfirmationService::decide`], starting from the transaction as the
    /// device's session last sent it (one read fewer when it is current).
    #[instrument(skip_all, fields(device_id = %device.id, transaction_id = %input.transaction_id))]
    pub async fn decide_held(
        &self,
        device: &Device,
        input: DecisionInput,
        held: Option<Transaction>,
    ) -> Result<DecisionOutcome, ServiceError> {
        self.check_signature_lock(device.id)?;
        let now = self.clock.now();
        let key = verifying_key(&device.public_key)?;
        let signature = input.decision.signature;
        let verify = |bytes: &[u8]| ed25519(key.as_bytes(), bytes, &signature).is_ok();
        let decided = self
            .writer
            .update_from(
                held,
                device.application_id,
                input.transaction_id,
                now,
                |t| t.decide(device, &input.decision, verify, now),
            )
            .await?;
        let not_held = ServiceError::NotFound("confirmation for this transaction on this device");
        match decided {
            Ok(transaction) => {
                tracing::info!(state = transaction.state.as_str(), "transaction decided");
                Ok(DecisionOutcome {
                    transaction,
                    applied: true,
                })
            }
            Err(NotApplied::Refused(Refusal::Ended(_), transaction)) => Ok(DecisionOutcome {
                transaction: *transaction,
                applied: false,
            }),
            Err(NotApplied::Refused(Refusal::Input(error), _)) => Err(error.into()),
            Err(NotApplied::Refused(Refusal::BadSignature, _)) => {
                self.signature_failed(device.id).await;
                Err(ServiceError::PermissionDenied(Refused::new(
                    reason::DECISION_SIGNATURE_INVALID,
                    "the decision signature does not verify for this transaction and nonce",
                )))
            }
            Err(NotApplied::Guard(_)) => Err(ServiceError::device_revoked()),
            Err(NotApplied::Missing | NotApplied::Refused(..)) => Err(not_held),
        }
    }

    /// What the device should be asked now: OTP transactions it scanned
    /// and has not answered, and pending pushes to its user.
    pub async fn open_confirmations(
        &self,
        device: &Device,
    ) -> Result<Vec<Transaction>, ServiceError> {
        let now = self.clock.now();
        let candidates = self.store.open_confirmations(device).await?;
        Ok(candidates
            .into_iter()
            .filter(|t| t.awaits_answer_from(device, now))
            .collect())
    }
}
