//! OTP logins of relying parties, and reading and cancelling any login.

use std::sync::Arc;
use std::time::Duration;

use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::deps::NotApplied;
use super::{Caller, Deps, ServiceError};
use crate::domain::transaction::NewOtpTransaction;
use crate::domain::{Context, Message, Otp, Refusal, Transaction, TransactionId, UserId};

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

/// A created OTP login.
#[derive(Debug, Clone)]
pub struct CreatedOtp {
    /// The stored transaction.
    pub transaction: Transaction,
    /// The OTP, returned once and never stored.
    pub otp: Otp,
}

/// Starts OTP logins; reads and cancels logins of either kind.
pub struct LoginService {
    deps: Arc<Deps>,
}

impl LoginService {
    /// The use case over shared dependencies.
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }

    /// Starts an OTP login.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_otp_authentication<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        input: CreateOtpInput,
        rng: &mut R,
    ) -> Result<CreatedOtp, ServiceError> {
        self.deps.spend_creation(caller)?;
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
            },
            self.deps.clock.now(),
        );
        if !self.deps.commit(&change).await? {
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
        let now = self.deps.clock.now();
        self.deps
            .settled(caller.application.id, id, now)
            .await?
            .ok_or(ServiceError::NotFound("transaction"))
    }

    /// Cancels an open transaction; whoever holds it is told.
    #[instrument(skip_all, fields(transaction_id = %id))]
    pub async fn cancel_transaction(
        &self,
        caller: &Caller,
        id: TransactionId,
    ) -> Result<Transaction, ServiceError> {
        let now = self.deps.clock.now();
        let cancelled = self
            .deps
            .update(caller.application.id, id, now, |t| t.cancel(now))
            .await?;
        match cancelled {
            Ok(transaction) => Ok(transaction),
            Err(NotApplied::Missing) => Err(ServiceError::NotFound("transaction")),
            Err(NotApplied::Refused(Refusal::Ended(state), _)) => {
                Err(ServiceError::FailedPrecondition(format!(
                    "the transaction already ended: {}",
                    state.as_str()
                )))
            }
            Err(NotApplied::Refused(..) | NotApplied::Guard(_)) => Err(ServiceError::Contention),
        }
    }
}
