//! `assent tx get|wait|cancel`: one transaction's state, waiting for its
//! outcome, and cancelling it.

use std::time::Duration;

use anyhow::{anyhow, bail};
use assent_proto::v1::{Transaction, TransactionState};
use clap::Subcommand;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::client::AssentClient;
use crate::output::views::TransactionView;
use crate::output::{self, Format, text};

/// Pause between two GetTransaction polls of `tx wait`.
const POLL_INTERVAL: Duration = Duration::from_millis(150);
/// Extra time a poll already in flight at the deadline may take.
const POLL_GRACE: Duration = Duration::from_secs(2);

/// `assent tx …`
///
/// Each prints the transaction; with --json the object is
/// {"transaction_id","state","kind","number_matching","user_id","device_id",
/// "reason","message","context","created_at","expires_at","completed_at"},
/// where state is PENDING, SCANNED, ACCEPTED, DENIED, EXPIRED, CANCELLED or
/// FAILED, kind is OTP or PUSH, and user_id, device_id, reason and unset times
/// are null (never "") while unknown.
#[derive(Debug, Subcommand)]
pub enum TxCommand {
    /// Print a transaction's current state.
    ///
    /// With --json: {"transaction_id","state","kind","number_matching","user_id",…};
    /// user_id, device_id and reason are null while empty.
    Get {
        /// The transaction id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Wait until a transaction ends; exit 0 only if it was ACCEPTED.
    ///
    /// Polls every 150 ms and prints the same object as `tx get` (also on
    /// failure). Exits 1 when it ends in any other state or when the timeout
    /// passes while it is still PENDING or SCANNED.
    Wait {
        /// The transaction id.
        #[arg(value_name = "ID")]
        id: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Cancel an open transaction and print it (now CANCELLED).
    Cancel {
        /// The transaction id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// Runs a transaction subcommand.
pub async fn run(
    command: TxCommand,
    client: &mut AssentClient,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        TxCommand::Get { id } => {
            let tx = client.get_transaction(&id).await?;
            print(&tx, format)
        }
        TxCommand::Wait { id, timeout } => wait(client, &id, timeout, format).await,
        TxCommand::Cancel { id } => {
            let tx = client.cancel_transaction(&id).await?;
            print(&tx, format)
        }
    }
}

/// Polls until the transaction is terminal or `timeout_secs` have passed.
///
/// Once the server has answered, a brief outage (UNAVAILABLE, e.g. a replica
/// restarting) does not end the wait; the next poll retries.
async fn wait(
    client: &mut AssentClient,
    id: &str,
    timeout_secs: u64,
    format: Format,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last_seen: Option<Transaction> = None;
    let mut last_error: Option<Status> = None;
    loop {
        let poll =
            tokio::time::timeout_at(deadline + POLL_GRACE, client.try_get_transaction(id)).await;
        match poll {
            Ok(Ok(tx)) if is_terminal(tx.state()) => {
                print(&tx, format)?;
                return outcome(&tx);
            }
            Ok(Ok(tx)) => {
                last_seen = Some(tx);
                last_error = None;
            }
            Ok(Err(status)) if last_seen.is_some() && status.code() == Code::Unavailable => {
                last_error = Some(status);
            }
            Ok(Err(status)) => return Err(client.explain(&status)),
            Err(_elapsed) => break,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
    let Some(tx) = last_seen else {
        bail!("timed out after {timeout_secs} s; the server did not answer");
    };
    print(&tx, format)?;
    let mut message = format!(
        "timed out after {timeout_secs} s; transaction still {}",
        tx.state().spec_name()
    );
    if let Some(status) = last_error {
        message.push_str(&format!(" (last poll failed: {})", client.explain(&status)));
    }
    Err(anyhow!(message))
}

/// Ok for ACCEPTED; otherwise the error naming the final state and reason.
fn outcome(tx: &Transaction) -> anyhow::Result<()> {
    match tx.state() {
        TransactionState::Accepted => Ok(()),
        state if tx.reason.is_empty() => bail!("transaction ended {}", state.spec_name()),
        state => bail!("transaction ended {} ({})", state.spec_name(), tx.reason),
    }
}

/// Whether the state can no longer change.
fn is_terminal(state: TransactionState) -> bool {
    matches!(
        state,
        TransactionState::Accepted
            | TransactionState::Denied
            | TransactionState::Expired
            | TransactionState::Cancelled
            | TransactionState::Failed
    )
}

/// Prints the transaction as JSON or as a labelled block.
fn print(tx: &Transaction, format: Format) -> anyhow::Result<()> {
    output::write(format, &TransactionView::from(tx), text::transaction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(state: TransactionState, reason: &str) -> Transaction {
        Transaction {
            state: state as i32,
            reason: reason.into(),
            ..Transaction::default()
        }
    }

    #[test]
    fn only_decided_expired_cancelled_or_failed_states_are_terminal() {
        assert!(!is_terminal(TransactionState::Pending));
        assert!(!is_terminal(TransactionState::Scanned));
        assert!(!is_terminal(TransactionState::Unspecified));
        assert!(is_terminal(TransactionState::Accepted));
        assert!(is_terminal(TransactionState::Denied));
        assert!(is_terminal(TransactionState::Expired));
        assert!(is_terminal(TransactionState::Cancelled));
        assert!(is_terminal(TransactionState::Failed));
    }

    #[test]
    fn only_accepted_is_a_successful_outcome() {
        assert!(outcome(&tx(TransactionState::Accepted, "")).is_ok());
        let denied = outcome(&tx(TransactionState::Denied, "not_me")).unwrap_err();
        assert_eq!(denied.to_string(), "transaction ended DENIED (not_me)");
        let expired = outcome(&tx(TransactionState::Expired, "")).unwrap_err();
        assert_eq!(expired.to_string(), "transaction ended EXPIRED");
    }
}
