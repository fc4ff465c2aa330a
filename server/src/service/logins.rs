//! OTP logins of relying parties, and reading and cancelling any login.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::signer::EventSigner;
use super::writer::NotApplied;
use super::{
    Caller, CreationLimiter, Refused, RefusedExt, ServiceError, SignedEvent, TransactionWriter,
    reason,
};
use crate::domain::transaction::NewOtpTransaction;
use crate::domain::{
    ApplicationId, Binding, Clock, Context, Message, Otp, Refusal, Transaction, TransactionId,
    UserId,
};
use crate::metrics::Metrics;
use crate::notify::{Notifier, OutcomeWatch};
use crate::store::{Interest, Store};

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
    /// The relying party's session binding.
    pub binding: Option<Binding>,
}

/// A created OTP login.
#[derive(Debug, Clone)]
pub struct CreatedOtp {
    /// The stored transaction.
    pub transaction: Transaction,
    /// The OTP, returned once and never stored.
    pub otp: Otp,
}

/// The longest a `WaitTransaction` may wait.
pub const MAX_WAIT: Duration = Duration::from_millis(crate::domain::input::MAX_WAIT_MS as u64);
/// Calls waiting for an outcome at once, per replica.
const MAX_WAITS: usize = 10_000;
/// A waiting call re-reads at least this often, in case a notice from
/// another replica was lost (LISTEN reconnecting).
const WAIT_SAFETY_NET: Duration = Duration::from_secs(5);

/// A transaction with what a relying party needs to verify it: the
/// deciding device's public key and the latest event, server-signed.
#[derive(Debug, Clone)]
pub struct TransactionView {
    /// The transaction.
    pub transaction: Transaction,
    /// The public key of the device that decided it, if one did.
    pub device_public_key: Option<[u8; 32]>,
    /// Its latest event, signed.
    pub last_event: Option<SignedEvent>,
}

/// Starts OTP logins; reads, waits for and cancels logins of either kind.
pub struct LoginService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    writer: Arc<TransactionWriter>,
    limiter: Arc<CreationLimiter>,
    signer: Arc<EventSigner>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    waits: AtomicUsize,
}

/// One waiting call, counted until dropped.
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoginService {
    /// Logins of `store`, changed through `writer`, waited on through `notifier`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        writer: Arc<TransactionWriter>,
        limiter: Arc<CreationLimiter>,
        signer: Arc<EventSigner>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            clock,
            writer,
            limiter,
            signer,
            notifier,
            metrics,
            waits: AtomicUsize::new(0),
        }
    }

    /// Starts an OTP login.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_otp_authentication<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        input: CreateOtpInput,
        rng: &mut R,
    ) -> Result<CreatedOtp, ServiceError> {
        self.limiter.spend(caller).await?;
        let otp = Otp::generate(rng, TransactionId::random());
        let change = Transaction::create_otp(
            NewOtpTransaction {
                id: otp.id(),
                application_id: caller.application.id,
                user_id: input.user_id,
                message: input.message,
                context: input.context,
                otp_hash: otp.hash(),
                ttl: input.ttl,
                binding: input.binding,
            },
            self.clock.now(),
        );
        if !self.writer.commit(&change).await? {
            return Err(ServiceError::Contention);
        }
        tracing::info!(transaction_id = %change.after.id, "transaction created");
        Ok(CreatedOtp {
            transaction: change.after,
            otp,
        })
    }

    /// The transaction as it is now; an overdue one is expired on the spot.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn get_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
    ) -> Result<Transaction, ServiceError> {
        let now = self.clock.now();
        self.writer
            .settled(caller.application.id, id, now)
            .await?
            .ok_or(ServiceError::NotFound("transaction"))
    }

    /// The transaction as soon as it is terminal, or as it is once
    /// `timeout` has passed (then `true`). Woken by the outcome's notice
    /// (from any replica) or at the transaction's expiry; a slow re-read
    /// is only a safety net for a lost cross-replica notice.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn wait_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
        timeout: Duration,
    ) -> Result<(Transaction, bool), ServiceError> {
        let waiting = self.waits.fetch_add(1, Ordering::AcqRel);
        let _slot = WaitSlot(&self.waits);
        if waiting >= MAX_WAITS {
            return Err(ServiceError::ResourceExhausted(
                Refused::new(
                    reason::TOO_MANY_WAITS,
                    format!(
                        "this server already has {MAX_WAITS} calls waiting for outcomes; retry \
                         shortly or subscribe to the event stream"
                    ),
                )
                .retry_after(Duration::from_secs(1)),
            ));
        }
        let _waiting = self.metrics.wait_started();
        // Outcomes decided on other replicas come here from now on.
        let _listening = self
            .notifier
            .listen_application(caller.application.id, Interest::Outcomes)
            .await;
        let mut watch = self.notifier.watch_outcome(id);
        self.wait_on(caller, id, timeout, &mut watch).await
    }

    async fn wait_on(
        &self,
        caller: &Caller,
        id: TransactionId,
        timeout: Duration,
        watch: &mut OutcomeWatch<'_>,
    ) -> Result<(Transaction, bool), ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Marked seen before reading: an outcome during the read is kept.
            watch.mark_seen();
            let current = self.get_transaction(caller, id).await?;
            if current.state.is_terminal() {
                return Ok((current, false));
            }
            let now = self.clock.now();
            let until_expiry = (current.expires_at - now)
                .to_std()
                .unwrap_or_default()
                .saturating_add(Duration::from_millis(1));
            tokio::select! {
                changed = watch.changed() => {
                    if changed.is_err() {
                        // The notifier is gone (shutting down): read once more.
                        tokio::time::sleep(WAIT_SAFETY_NET.min(timeout)).await;
                    }
                }
                () = tokio::time::sleep(until_expiry) => {}
                () = tokio::time::sleep(WAIT_SAFETY_NET) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let current = self.get_transaction(caller, id).await?;
                    let open = !current.state.is_terminal();
                    return Ok((current, open));
                }
            }
        }
    }

    /// The transaction with its evidence (two more reads: the deciding
    /// device's key, the latest event).
    pub async fn view(&self, transaction: Transaction) -> Result<TransactionView, ServiceError> {
        let device_public_key = match (transaction.answer, transaction.device_id) {
            (Some(_), Some(device)) => self
                .store
                .find_device(device)
                .await?
                .filter(|d| d.application_id == transaction.application_id)
                .map(|d| d.public_key),
            _ => None,
        };
        let last_event = self
            .last_event(transaction.application_id, transaction.id)
            .await?;
        Ok(TransactionView {
            transaction,
            device_public_key,
            last_event,
        })
    }

    /// The transaction's latest event, signed.
    async fn last_event(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> Result<Option<SignedEvent>, ServiceError> {
        let Some(record) = self.store.last_event_of(app, id).await? else {
            return Ok(None);
        };
        Ok(self.signer.sign(app, vec![record]).await?.pop())
    }

    /// Cancels an open transaction; whoever holds it is told.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn cancel_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
    ) -> Result<Transaction, ServiceError> {
        let now = self.clock.now();
        let cancelled = self
            .writer
            .update(caller.application.id, id, now, |t| t.cancel(now))
            .await?;
        match cancelled {
            Ok(transaction) => Ok(transaction),
            Err(NotApplied::Missing) => Err(ServiceError::NotFound("transaction")),
            Err(NotApplied::Refused(Refusal::Ended(state), _)) => {
                Err(ServiceError::FailedPrecondition(
                    Refused::new(
                        reason::TRANSACTION_ENDED,
                        format!("the transaction already ended: {}", state.as_str()),
                    )
                    .with("state", state.as_str()),
                ))
            }
            Err(NotApplied::Refused(..) | NotApplied::Guard(_)) => Err(ServiceError::Contention),
        }
    }
}
