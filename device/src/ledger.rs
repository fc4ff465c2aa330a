//! Who waits for what, across reconnects: callers waiting for an OTP's
//! outcome, and the confirmation requests being decided or whose signed
//! decision the server has not acknowledged yet. Pure bookkeeping: no I/O, so
//! every reconnect race is a unit test. The same rules hold for OTP and push
//! confirmations; a push simply has no caller waiting for it.

use std::collections::{HashMap, VecDeque};

use assent_proto::v1::{
    Cancellation, ConfirmationRequest, DecisionResult, Rejection, SignedDecision, SubmitOtp,
    TransactionState,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::otp::Otp;
use crate::outcome::OtpOutcome;

/// How far one caller's OTP got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Not sent on the current stream (not connected yet, or reconnected).
    Queued,
    /// Sent with this request id; waiting for a confirmation request or rejection.
    Submitted(u64),
    /// Bound to this transaction; waiting for its decision result.
    Confirming(String),
}

/// A caller waiting for an OTP's outcome.
#[derive(Debug)]
struct Waiter {
    otp: Otp,
    stage: Stage,
    reply: oneshot::Sender<OtpOutcome>,
}

/// A confirmation request this device holds.
#[derive(Debug)]
enum Tracked {
    /// The policy is running; the token stops it.
    Deciding {
        request: Box<ConfirmationRequest>,
        cancel: CancellationToken,
    },
    /// Signed and sent (or to be sent), not yet acknowledged.
    Decided(SignedDecision),
}

/// How many ended transactions are remembered to ignore a late copy of
/// their confirmation request (a push delivered twice across replicas).
const REMEMBERED_ENDINGS: usize = 256;

/// The daemon's bookkeeping of callers and transactions.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    last_request_id: u64,
    waiters: Vec<Waiter>,
    tracked: HashMap<String, Tracked>,
    /// Transactions the server reported terminal, newest last.
    ended: VecDeque<String>,
}

impl Ledger {
    /// Registers a caller; its OTP goes out with the next [`Self::take_submissions`].
    pub(crate) fn enqueue(&mut self, otp: Otp, reply: oneshot::Sender<OtpOutcome>) {
        self.waiters.push(Waiter {
            otp,
            stage: Stage::Queued,
            reply,
        });
    }

    /// The queued OTPs as `SubmitOtp` messages, each with a fresh nonzero
    /// request id; callers that hung up are dropped first, so their OTP is
    /// never spent.
    pub(crate) fn take_submissions(&mut self) -> Vec<SubmitOtp> {
        self.prune_closed();
        let mut submissions = Vec::new();
        for waiter in self.waiters.iter_mut().filter(|w| w.stage == Stage::Queued) {
            self.last_request_id += 1;
            waiter.stage = Stage::Submitted(self.last_request_id);
            submissions.push(SubmitOtp {
                request_id: self.last_request_id,
                otp: waiter.otp.as_str().to_owned(),
            });
        }
        submissions
    }

    /// The stream ended: OTPs without an answer must be submitted again.
    pub(crate) fn on_disconnect(&mut self) {
        for waiter in &mut self.waiters {
            if matches!(waiter.stage, Stage::Submitted(_)) {
                waiter.stage = Stage::Queued;
            }
        }
    }

    /// Decisions still awaiting a result, to re-send on a new stream.
    pub(crate) fn unacknowledged(&self) -> Vec<SignedDecision> {
        self.tracked
            .values()
            .filter_map(|tracked| match tracked {
                Tracked::Decided(decision) => Some(decision.clone()),
                Tracked::Deciding { .. } => None,
            })
            .collect()
    }

    /// Binds the waiting caller(s) to the request; returns a token when a
    /// policy must now run, `None` when one already runs, has decided, or the
    /// transaction has ended.
    pub(crate) fn on_confirmation(
        &mut self,
        request: &ConfirmationRequest,
    ) -> Option<CancellationToken> {
        let transaction_id = &request.transaction_id;
        for waiter in &mut self.waiters {
            let is_answer = match &waiter.stage {
                Stage::Submitted(id) if request.request_id != 0 => *id == request.request_id,
                // Re-sent after a reconnect: match by the id inside the OTP.
                Stage::Queued | Stage::Submitted(_) => {
                    request.request_id == 0 && waiter.otp.transaction_id() == transaction_id
                }
                Stage::Confirming(_) => false,
            };
            if is_answer {
                waiter.stage = Stage::Confirming(transaction_id.clone());
            }
        }
        match self.tracked.get_mut(transaction_id) {
            Some(Tracked::Deciding { request: held, .. }) => {
                // Keep the newest copy: its nonce is the one to sign.
                **held = request.clone();
                None
            }
            Some(Tracked::Decided(_)) => None,
            None if self.ended.contains(transaction_id) => None,
            None => {
                let cancel = CancellationToken::new();
                self.tracked.insert(
                    transaction_id.clone(),
                    Tracked::Deciding {
                        request: Box::new(request.clone()),
                        cancel: cancel.clone(),
                    },
                );
                Some(cancel)
            }
        }
    }

    /// The requests being decided now, parsed as a handler sees them.
    pub(crate) fn deciding_requests(&self) -> Vec<crate::request::Request> {
        self.tracked
            .values()
            .filter_map(|tracked| match tracked {
                Tracked::Deciding { request, .. } => {
                    crate::request::Request::from_request(request).ok()
                }
                Tracked::Decided(_) => None,
            })
            .collect()
    }

    /// The request a running handler decides on, to sign its answer against.
    pub(crate) fn deciding(&self, transaction_id: &str) -> Option<&ConfirmationRequest> {
        match self.tracked.get(transaction_id) {
            Some(Tracked::Deciding { request, .. }) => Some(request),
            _ => None,
        }
    }

    /// Records a signed decision until the server acknowledges it.
    pub(crate) fn on_decided(&mut self, decision: SignedDecision) {
        self.tracked
            .insert(decision.transaction_id.clone(), Tracked::Decided(decision));
    }

    /// The server's answer to a decision: reports it to the caller(s);
    /// returns how many callers were told.
    pub(crate) fn on_decision_result(&mut self, result: &DecisionResult) -> usize {
        let state =
            TransactionState::try_from(result.state).map_or("FAILED", TransactionState::spec_name);
        self.remember_ended(&result.transaction_id);
        self.finish(&result.transaction_id, |_| {
            OtpOutcome::finished(state, &result.transaction_id, &result.reason)
        })
    }

    /// The server withdrew a request: stop its policy, drop its unacknowledged
    /// decision and tell the caller(s); returns how many callers were told.
    pub(crate) fn on_cancellation(&mut self, cancellation: &Cancellation) -> usize {
        let transaction_id = &cancellation.transaction_id;
        let outcome = OtpOutcome::finished("CANCELLED", transaction_id, &cancellation.reason);
        self.remember_ended(transaction_id);
        self.finish(transaction_id, |_| outcome.clone())
            // Callers whose OTP is still on its way belong to the same transaction.
            + self.reply_where(
                |w| w.otp.transaction_id() == transaction_id,
                |_| outcome.clone(),
            )
    }

    /// Whether `rejection` refused a signed decision only for now (the
    /// server could not reach its database, or ran out of time): the
    /// decision may have committed or not, so it stays unacknowledged, to
    /// be re-sent on a new stream, and the server answers the re-send with
    /// the one outcome it stored. Its callers are not told anything yet.
    pub(crate) fn keeps_for_resend(&self, rejection: &Rejection) -> bool {
        let transient = matches!(
            tonic::Code::from_i32(rejection.code),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted
        );
        rejection.request_id == 0
            && transient
            && matches!(
                self.tracked.get(&rejection.transaction_id),
                Some(Tracked::Decided(_))
            )
    }

    /// A refused OTP or decision: tells the caller(s) concerned; returns how
    /// many callers were told. A refused decision is forgotten but not taken
    /// as the end of the transaction: if the server asks again, the policy
    /// runs again.
    pub(crate) fn on_rejection(&mut self, rejection: &Rejection) -> usize {
        if rejection.request_id != 0 {
            // A rejection for an OTP whose transaction was already matched by a
            // re-sent confirmation finds no submitted waiter and is ignored.
            let error = otp_rejection_error(rejection.code, &rejection.message);
            self.reply_where(
                |w| w.stage == Stage::Submitted(rejection.request_id),
                |w| OtpOutcome::failed(Some(w.otp.transaction_id()), error.clone()),
            )
        } else if !rejection.transaction_id.is_empty() {
            let error = format!("the server rejected the decision: {}", rejection.message);
            self.finish(&rejection.transaction_id, |id| {
                OtpOutcome::failed(Some(id), error.clone())
            })
        } else {
            0
        }
    }

    /// Answers every caller with `error` (shutdown, device refused).
    pub(crate) fn fail_waiters(&mut self, error: &str) {
        self.reply_where(
            |_| true,
            |w| OtpOutcome::failed(Some(w.otp.transaction_id()), error),
        );
    }

    /// Stops every running policy (shutdown).
    pub(crate) fn cancel_policies(&self) {
        for tracked in self.tracked.values() {
            if let Tracked::Deciding { cancel, .. } = tracked {
                cancel.cancel();
            }
        }
    }

    /// Forgets callers that hung up.
    pub(crate) fn prune_closed(&mut self) {
        self.waiters.retain(|waiter| !waiter.reply.is_closed());
    }

    /// Ends a transaction: stops its policy, forgets it (and any decision
    /// not yet acknowledged), answers its callers and returns their number.
    fn finish(&mut self, transaction_id: &str, outcome: impl Fn(&str) -> OtpOutcome) -> usize {
        if let Some(Tracked::Deciding { cancel, .. }) = self.tracked.remove(transaction_id) {
            cancel.cancel();
        }
        self.reply_where(
            |w| w.stage == Stage::Confirming(transaction_id.to_owned()),
            |_| outcome(transaction_id),
        )
    }

    /// Remembers that the server reported the transaction terminal.
    fn remember_ended(&mut self, transaction_id: &str) {
        if self.ended.iter().any(|ended| ended == transaction_id) {
            return;
        }
        if self.ended.len() == REMEMBERED_ENDINGS {
            self.ended.pop_front();
        }
        self.ended.push_back(transaction_id.to_owned());
    }

    /// Removes the matching waiters, sends each its outcome and returns how
    /// many there were.
    fn reply_where(
        &mut self,
        matches: impl Fn(&Waiter) -> bool,
        outcome: impl Fn(&Waiter) -> OtpOutcome,
    ) -> usize {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| matches(w));
        self.waiters = waiting;
        let count = done.len();
        for waiter in done {
            let outcome = outcome(&waiter);
            // A caller that hung up no longer cares.
            let _ = waiter.reply.send(outcome);
        }
        count
    }
}

/// The caller-facing text for a `Rejection` of a `SubmitOtp`.
fn otp_rejection_error(code: i32, message: &str) -> String {
    match tonic::Code::from_i32(code) {
        tonic::Code::InvalidArgument => "invalid OTP (malformed)".to_owned(),
        tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            "invalid OTP (unknown, already used or expired)".to_owned()
        }
        tonic::Code::ResourceExhausted => format!("too many attempts: {message}"),
        other => format!("the server refused the OTP ({other:?}): {message}"),
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
