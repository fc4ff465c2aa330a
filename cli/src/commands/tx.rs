//! `assent tx get|wait|cancel`: one transaction's state, waiting for its
//! outcome, and cancelling it.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use assent_proto::v1::{Transaction, TransactionState};
use clap::Subcommand;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::client::AssentClient;
use crate::output::views::TransactionView;
use crate::output::{self, Format, text};

/// The longest single WaitTransaction call; longer waits are several.
const WAIT_CHUNK: Duration = Duration::from_secs(60);
/// Pause before waiting again after a retryable failure.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

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
        #[arg(value_name = "ID", value_parser = super::parse_id)]
        id: String,
    },
    /// Wait until a transaction ends; exit 0 only if it was ACCEPTED.
    ///
    /// Waits with WaitTransaction (the server answers the moment the outcome
    /// is decided) and prints the same object as `tx get` (also on failure). Exits 1 when it ends in any other state or when the timeout
    /// passes while it is still PENDING or SCANNED.
    Wait {
        /// The transaction id.
        #[arg(value_name = "ID", value_parser = super::parse_id)]
        id: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Cancel an open transaction and print it (now CANCELLED).
    Cancel {
        /// The transaction id.
        #[arg(value_name = "ID", value_parser = super::parse_id)]
        id: String,
    },
    /// Verify a transaction's outcome: the device's signature over its
    /// decision and the server's signature over the latest event, with
    /// public keys only. Exit 0 only if every present signature verifies.
    ///
    /// With --json: {"transaction_id","state","decision":{"verified",
    /// "device_key_id","error"} or null,"event":{"verified","key_id",
    /// "cursor","type","error"} or null}.
    Verify {
        /// The transaction id.
        #[arg(value_name = "ID", value_parser = super::parse_id)]
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
        TxCommand::Verify { id } => verify(client, &id, format).await,
    }
}

/// One signature check's result.
#[derive(Debug, serde::Serialize)]
struct Check {
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<String>,
    error: Option<String>,
}

/// What `tx verify` found.
#[derive(Debug, serde::Serialize)]
struct Verification {
    transaction_id: String,
    state: &'static str,
    decision: Option<Check>,
    event: Option<Check>,
}

/// Checks the decision and the latest event of a transaction.
async fn verify(client: &mut AssentClient, id: &str, format: Format) -> anyhow::Result<()> {
    let full = client.get_transaction_full(id).await?;
    let tx = full.transaction.context("the server sent no transaction")?;
    let keys = client.server_keys().await?;
    let decision = tx.evidence.as_ref().map(|_| {
        let checked = assent_proto::verify::verify_decision(&tx, None);
        Check {
            verified: checked.is_ok(),
            device_key_id: checked.as_ref().ok().cloned(),
            key_id: None,
            cursor: None,
            r#type: None,
            error: checked.err().map(|e| e.to_string()),
        }
    });
    let event = full.last_event.as_ref().map(|event| {
        let checked = assent_proto::verify::verify_event(event, &keys);
        Check {
            verified: checked.is_ok(),
            device_key_id: None,
            key_id: Some(event.key_id.clone()),
            cursor: Some(event.cursor),
            r#type: Some(event.r#type.clone()),
            error: checked.err().map(|e| e.to_string()),
        }
    });
    let report = Verification {
        transaction_id: tx.transaction_id.clone(),
        state: tx.state().spec_name(),
        decision,
        event,
    };
    let ok = report.decision.as_ref().is_none_or(|c| c.verified)
        && report.event.as_ref().is_some_and(|c| c.verified);
    output::write(format, &report, |r| {
        let mut text = format!("transaction {} {}\n", r.transaction_id, r.state);
        match &r.decision {
            Some(c) if c.verified => text.push_str(&format!(
                "decision: device signature valid (device key {})\n",
                c.device_key_id.as_deref().unwrap_or_default()
            )),
            Some(c) => text.push_str(&format!(
                "decision: INVALID: {}\n",
                c.error.as_deref().unwrap_or_default()
            )),
            None => text.push_str("decision: none (no device decided)\n"),
        }
        match &r.event {
            Some(c) if c.verified => text.push_str(&format!(
                "event: server signature valid (key {}, cursor {}, {})\n",
                c.key_id.as_deref().unwrap_or_default(),
                c.cursor.unwrap_or_default(),
                c.r#type.as_deref().unwrap_or_default()
            )),
            Some(c) => text.push_str(&format!(
                "event: INVALID: {}\n",
                c.error.as_deref().unwrap_or_default()
            )),
            None => text.push_str("event: none (removed by retention)\n"),
        }
        text.trim_end().to_owned()
    })?;
    if !ok {
        bail!("the transaction's outcome does not verify");
    }
    Ok(())
}

/// Waits (WaitTransaction, in chunks of at most a minute) until the
/// transaction is terminal or `timeout_secs` have passed.
///
/// Once the server has answered, a brief outage (UNAVAILABLE, e.g. a replica
/// restarting) does not end the wait; the next call retries.
async fn wait(
    client: &mut AssentClient,
    id: &str,
    timeout_secs: u64,
    format: Format,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last_seen: Option<Transaction> = None;
    let mut last_error: Option<Status>;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.try_wait_transaction(id, left.min(WAIT_CHUNK)).await {
            Ok(answer) => {
                let tx = answer
                    .transaction
                    .ok_or_else(|| anyhow!("the server sent no transaction"))?;
                if is_terminal(tx.state()) {
                    print(&tx, format)?;
                    return outcome(&tx);
                }
                last_seen = Some(tx);
                last_error = None;
            }
            Err(status) if last_seen.is_some() && status.code() == Code::Unavailable => {
                last_error = Some(status);
                tokio::time::sleep(RETRY_PAUSE.min(left)).await;
            }
            Err(status) => return Err(client.explain(&status)),
        }
        if Instant::now() >= deadline {
            break;
        }
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
        message.push_str(&format!(" (last call failed: {})", client.explain(&status)));
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
