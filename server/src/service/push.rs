//! Push logins: creation under the anti-fatigue rules and delivery to every
//! device of the user (withdrawal is decided by the aggregate).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use tracing::instrument;

use super::{
    Caller, CreationLimiter, Refused, RefusedExt, ServiceError, TransactionWriter, reason,
};
use crate::domain::push::{NumberMatch, PushHistory, PushLimits, PushRefusal};
use crate::domain::transaction::NewPushTransaction;
use crate::domain::{Binding, Clock, Context, Message, Transaction, TransactionId, UserId};
use crate::store::Store;

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
    /// The relying party's session binding.
    pub binding: Option<Binding>,
}

/// A created push login.
#[derive(Debug, Clone)]
pub struct CreatedPush {
    /// The stored transaction.
    pub transaction: Transaction,
    /// The number to show on the login page, under number matching.
    pub number: Option<u8>,
    /// Devices of the user connected to this server that got it at once.
    pub devices_reached: usize,
}

/// Starts push logins.
pub struct PushService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    writer: Arc<TransactionWriter>,
    limiter: Arc<CreationLimiter>,
    /// The anti-fatigue rules.
    limits: PushLimits,
}

impl PushService {
    /// Push logins under `limits`, created through `writer`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        writer: Arc<TransactionWriter>,
        limiter: Arc<CreationLimiter>,
        limits: PushLimits,
    ) -> Self {
        Self {
            store,
            clock,
            writer,
            limiter,
            limits,
        }
    }

    /// Starts a push login to every device of `input.user_id`.
    #[instrument(skip_all, fields(app = %caller.application.id))]
    pub async fn create_push_authentication<R: RngCore + CryptoRng + Send>(
        &self,
        caller: &Caller,
        input: CreatePushInput,
        rng: &mut R,
    ) -> Result<CreatedPush, ServiceError> {
        self.limiter.spend(caller).await?;
        let now = self.clock.now();
        let app = caller.application.id;
        let user = &input.user_id;
        let devices: Vec<_> = self
            .store
            .list_devices(app, Some(user))
            .await?
            .into_iter()
            .filter(|d| !d.is_revoked())
            .collect();
        if devices.is_empty() {
            return Err(ServiceError::FailedPrecondition(
                Refused::new(
                    reason::NO_ENROLLED_DEVICE,
                    format!("user \"{user}\" has no enrolled device to push to; enroll one first"),
                )
                .with("user_id", user),
            ));
        }
        let history = self.history(caller, user).await?;
        self.limits
            .check(&history, now)
            .map_err(|refusal| refused(user, refusal, now))?;
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let number_match = input.number_matching.then(|| NumberMatch::generate(rng));
        let change = Transaction::create_push(
            NewPushTransaction {
                id: TransactionId::random(),
                application_id: app,
                user_id: input.user_id.clone(),
                message: input.message,
                context: input.context,
                nonce,
                number_match: number_match.clone(),
                ttl: input.ttl,
                binding: input.binding,
            },
            now,
        );
        match self.writer.commit(&change).await {
            Ok(true) => {}
            Ok(false) => return Err(ServiceError::Contention),
            Err(ServiceError::ResourceExhausted(refused))
                if refused.reason == reason::PUSH_ALREADY_OPEN =>
            {
                return Err(ServiceError::ResourceExhausted(
                    refused.with("user_id", user),
                ));
            }
            Err(other) => return Err(other),
        }
        tracing::info!(transaction_id = %change.after.id, "push created");
        // Connected anywhere: every replica holding a stream of the user
        // hands the push to it (relayed), so all of them count.
        let store = &self.store;
        let devices_reached = store.connected_devices(app, Some(user), now).await?.len();
        Ok(CreatedPush {
            transaction: change.after,
            number: number_match.map(|m| m.number),
            devices_reached,
        })
    }

    /// What the anti-fatigue rules look at; an overdue open push is
    /// expired first, so it no longer blocks.
    async fn history(&self, caller: &Caller, user: &UserId) -> Result<PushHistory, ServiceError> {
        let now = self.clock.now();
        let app = caller.application.id;
        let limits = self.limits;
        let store = &self.store;
        let open = match store.open_push(app, user).await? {
            Some(open) => self.writer.settled(app, open.id, now).await?,
            None => None,
        };
        Ok(PushHistory {
            last_fraud_report: store.last_fraud_report(app, user).await?,
            open: open
                .filter(|push| !push.state.is_terminal())
                .map(|push| (push.id, push.expires_at)),
            unanswered: store
                .count_unanswered_pushes(app, user, &limits.unanswered_at(now))
                .await?,
        })
    }
}

/// The anti-fatigue refusal as the caller reads it.
fn refused(user: &UserId, refusal: PushRefusal, now: DateTime<Utc>) -> ServiceError {
    let wait_until = |until: DateTime<Utc>| (until - now).to_std().unwrap_or_default();
    ServiceError::ResourceExhausted(match refusal {
        PushRefusal::FraudCooldown { reported, until } => Refused::new(
            reason::FRAUD_COOLDOWN,
            format!(
                "user \"{user}\" reported a login attempt as not theirs at {}; pushes to them \
                 are blocked until {}",
                rfc3339(reported),
                rfc3339(until)
            ),
        )
        .with("user_id", user)
        .with("blocked_until", rfc3339(until))
        .retry_after(wait_until(until)),
        PushRefusal::OpenPush {
            transaction_id,
            until,
        } => Refused::new(
            reason::PUSH_ALREADY_OPEN,
            format!(
                "push {transaction_id} to user \"{user}\" is still open until {}; wait for its \
                 outcome or cancel it",
                rfc3339(until)
            ),
        )
        .with("user_id", user)
        .with("transaction_id", transaction_id)
        .with("expires_at", rfc3339(until))
        .retry_after(wait_until(until)),
        PushRefusal::TooManyUnanswered { count, window } => Refused::new(
            reason::TOO_MANY_UNANSWERED_PUSHES,
            format!(
                "{count} pushes to user \"{user}\" in the last {} minutes went unaccepted; wait \
                 before sending more",
                window.as_secs() / 60
            ),
        )
        .with("user_id", user)
        .with("unanswered", count),
    })
}

/// RFC 3339 in UTC with a `Z`, to the second.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
