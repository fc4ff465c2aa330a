//! One push login over the relying-party API: connect, create the push,
//! tell the person what to check, wait for the outcome (WaitTransaction in
//! bounded chunks up to the overall timeout) and have [`crate::decision`]
//! verify the device's signed decision. Every network wait has a deadline.

use std::time::Duration;

use assent_proto::v1::{
    CancelTransactionRequest, CreatePushAuthenticationRequest, Transaction, TransactionState,
    WaitTransactionRequest,
};
use tokio::time::Instant;

use crate::connection::{
    CALL_TIMEOUT, Client, ConnectError, MARGIN, connect, is_unreachable, with_deadline,
};
use crate::host::Host;
use crate::login::LoginRequest;
use crate::settings::Settings;

/// Longest single WaitTransaction (the server's own default).
const WAIT_CHUNK: Duration = Duration::from_secs(25);
/// Pause before retrying a WaitTransaction that hit a brief outage.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How a login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A device of the user accepted, and its signed decision verifies.
    Accepted {
        /// The transaction.
        transaction_id: String,
        /// The device that accepted.
        device_id: String,
        /// The id of the device key that signed.
        device_key_id: String,
    },
    /// Anything else once the server was reached: denied, expired, no
    /// answer in time, a decision that does not verify, a refused request.
    Refused {
        /// The transaction, when one was created.
        transaction_id: Option<String>,
        /// Why, for the log.
        reason: String,
    },
    /// The push could not be created because the server could not be
    /// reached (the `fallback` setting decides).
    Unreachable(String),
}

fn refused(transaction_id: Option<&str>, reason: impl Into<String>) -> Outcome {
    Outcome::Refused {
        transaction_id: transaction_id.map(str::to_owned),
        reason: reason.into(),
    }
}

/// Runs one push login for `login`, talking to the person through `host`
/// unless `silent`.
pub async fn run(
    settings: &Settings,
    login: &LoginRequest,
    host: &dyn Host,
    silent: bool,
) -> Outcome {
    let deadline = Instant::now() + settings.timeout;
    let mut client = match connect(settings).await {
        Ok(client) => client,
        Err(ConnectError::Unreachable(why)) => return Outcome::Unreachable(why),
        Err(ConnectError::Misconfigured(why)) => return refused(None, why),
    };
    let created = client.create_push_authentication(with_deadline(
        CreatePushAuthenticationRequest {
            user_id: login.user_id.clone(),
            message: login.message.clone(),
            ttl_seconds: u32::try_from(settings.timeout.as_secs()).unwrap_or(600),
            context: login.context.clone(),
            number_matching: settings.number_matching,
            binding: Vec::new(),
        },
        CALL_TIMEOUT,
    ));
    let created = match tokio::time::timeout(CALL_TIMEOUT + MARGIN, created).await {
        Err(_) => {
            return Outcome::Unreachable(format!(
                "no answer to CreatePushAuthentication within {} s",
                CALL_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(status)) if is_unreachable(&status) => {
            return Outcome::Unreachable(format!(
                "CreatePushAuthentication failed: {}",
                assent_proto::report::error_chain(&status)
            ));
        }
        Ok(Err(status)) => {
            return refused(
                None,
                format!(
                    "the server refused the push ({:?}): {}",
                    status.code(),
                    status.message()
                ),
            );
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    let id = created.transaction_id.as_str();
    tell(
        host,
        silent,
        login,
        created.number,
        created.devices_reached,
        settings.wait_for_enter,
    );
    let outcome = wait(&mut client, id, deadline).await;
    let transaction = match outcome {
        Ok(transaction) => transaction,
        Err(reason) => {
            cancel(&mut client, id).await;
            return refused(Some(id), reason);
        }
    };
    match transaction.state() {
        TransactionState::Accepted => {
            match crate::decision::verify(&mut client, &transaction, id, login, created.number)
                .await
            {
                Ok(device) => Outcome::Accepted {
                    transaction_id: id.to_owned(),
                    device_id: device.device_id,
                    device_key_id: device.key_id,
                },
                Err(reason) => refused(
                    Some(id),
                    format!("the device's decision does not verify: {reason}"),
                ),
            }
        }
        state => {
            let mut reason = format!("the transaction ended {}", state.spec_name());
            if !transaction.reason.is_empty() {
                reason.push_str(&format!(" ({})", transaction.reason));
            }
            refused(Some(id), reason)
        }
    }
}

/// Tells the person what to check on the device (best effort: a failed
/// conversation does not stop the login, the device still decides).
fn tell(
    host: &dyn Host,
    silent: bool,
    login: &LoginRequest,
    number: u32,
    reached: u32,
    wait_for_enter: bool,
) {
    if silent {
        if number != 0 {
            host.log(
                crate::host::Level::Warning,
                "PAM_SILENT: the number to pick on the device was not shown",
            );
        }
        return;
    }
    let mut lines = vec![format!(
        "Assent: confirm on your device: \"{}\"",
        login.message
    )];
    if number != 0 {
        lines.push(format!("Assent: pick the number {number} on your device."));
    }
    if reached == 0 {
        lines.push(
            "Assent: no device of yours is connected right now; start it to answer.".to_owned(),
        );
    }
    let text = lines.join("\n");
    let shown = if wait_for_enter {
        host.wait_for_enter(&format!(
            "{text}\nAssent: press Enter once you have answered. "
        ))
    } else {
        host.show(&text)
    };
    if let Err(error) = shown {
        host.log(
            crate::host::Level::Warning,
            &format!("cannot tell the person what to check: {error}"),
        );
    }
}

/// Waits until the transaction is terminal or `deadline` passes; a brief
/// outage (the server restarting) is retried until the deadline.
async fn wait(client: &mut Client, id: &str, deadline: Instant) -> Result<Transaction, String> {
    let mut last_error = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let mut reason = "no answer from the device in time".to_owned();
            if let Some(error) = last_error {
                reason.push_str(&format!(" (last error: {error})"));
            }
            return Err(reason);
        }
        let chunk = remaining.min(WAIT_CHUNK);
        let request = with_deadline(
            WaitTransactionRequest {
                transaction_id: id.to_owned(),
                timeout_ms: u32::try_from(chunk.as_millis()).unwrap_or(25_000).max(1),
            },
            chunk + MARGIN,
        );
        let answer =
            tokio::time::timeout(chunk + MARGIN * 2, client.wait_transaction(request)).await;
        match answer {
            Ok(Ok(response)) => {
                // Terminal whatever `timed_out` says; open ones wait on.
                if let Some(transaction) = response.into_inner().transaction
                    && is_terminal(transaction.state())
                {
                    return Ok(transaction);
                }
            }
            Ok(Err(status)) if is_unreachable(&status) => {
                last_error = Some(assent_proto::report::error_chain(&status));
                tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
            }
            Ok(Err(status)) => {
                return Err(format!(
                    "WaitTransaction failed ({:?}): {}",
                    status.code(),
                    status.message()
                ));
            }
            Err(_) => last_error = Some("WaitTransaction got no answer in time".to_owned()),
        }
    }
}

/// Whether `state` never changes again.
fn is_terminal(state: TransactionState) -> bool {
    !matches!(
        state,
        TransactionState::Pending | TransactionState::Scanned | TransactionState::Unspecified
    )
}

/// Cancels the push so the device stops asking (best effort, bounded).
async fn cancel(client: &mut Client, id: &str) {
    let request = with_deadline(
        CancelTransactionRequest {
            transaction_id: id.to_owned(),
        },
        CALL_TIMEOUT,
    );
    let _ = tokio::time::timeout(CALL_TIMEOUT + MARGIN, client.cancel_transaction(request)).await;
}
