//! Whether an ACCEPTED push may log the user in: it must be the push this
//! login sent, accepted by an unrevoked device of the user picking the
//! number shown, with a device signature over the decision that verifies
//! (`assent_proto::verify::verify_decision`, as `assent tx verify` checks).

use assent_proto::v1::{
    Decision, DecisionEvidence, GetDeviceRequest, Transaction, TransactionState,
};

use crate::connection::{CALL_TIMEOUT, Client, MARGIN, with_deadline};
use crate::login::LoginRequest;

/// The deciding device, once its decision verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// Its id.
    pub device_id: String,
    /// The id of the key that signed.
    pub key_id: String,
}

/// The checks that need no server: the transaction is this login's push
/// (id, user, message, context), ACCEPTED with an ACCEPT verdict picking the
/// number shown (`number`, 0 without number matching). Returns its
/// evidence.
fn check_transaction<'t>(
    transaction: &'t Transaction,
    transaction_id: &str,
    login: &LoginRequest,
    number: u32,
) -> Result<&'t DecisionEvidence, String> {
    // An older accepted push with the same text must not stand in for this one.
    if transaction.transaction_id != transaction_id {
        return Err(format!(
            "the server answered for transaction {:?}",
            transaction.transaction_id
        ));
    }
    if transaction.state() != TransactionState::Accepted {
        return Err(format!(
            "the transaction is {}",
            transaction.state().spec_name()
        ));
    }
    if transaction.user_id != login.user_id {
        return Err(format!(
            "it was answered for user {:?}",
            transaction.user_id
        ));
    }
    if transaction.message != login.message || transaction.context != login.context {
        return Err("the message or context is not the one sent".to_owned());
    }
    let evidence = transaction
        .evidence
        .as_ref()
        .ok_or("the transaction carries no decision evidence")?;
    if evidence.decision() != Decision::Accept {
        return Err("the signed verdict is not ACCEPT".to_owned());
    }
    let expected_pick = (number != 0).then_some(number);
    if evidence.picked_number != expected_pick {
        return Err(format!(
            "the device picked {:?}, the number shown was {expected_pick:?}",
            evidence.picked_number
        ));
    }
    Ok(evidence)
}

/// Checks that the accepted transaction is the push this login sent,
/// accepted by an unrevoked device of the user (picking the number shown),
/// and that the device's signature over its decision verifies with that
/// device's public key. Returns the device id and key id.
pub async fn verify(
    client: &mut Client,
    transaction: &Transaction,
    transaction_id: &str,
    login: &LoginRequest,
    number: u32,
) -> Result<VerifiedDevice, String> {
    let evidence = check_transaction(transaction, transaction_id, login, number)?;
    let request = with_deadline(
        GetDeviceRequest {
            device_id: evidence.device_id.clone(),
        },
        CALL_TIMEOUT,
    );
    let device = match tokio::time::timeout(CALL_TIMEOUT + MARGIN, client.get_device(request)).await
    {
        Ok(Ok(response)) => response.into_inner().device,
        Ok(Err(status)) => {
            return Err(format!(
                "GetDevice failed ({:?}): {}",
                status.code(),
                status.message()
            ));
        }
        Err(_) => return Err("GetDevice got no answer in time".to_owned()),
    };
    let device = device.ok_or("GetDevice returned no device")?;
    if device.user_id != login.user_id || device.revoked {
        return Err(format!(
            "device {} is not an unrevoked device of {:?}",
            device.device_id, login.user_id
        ));
    }
    let key_id = assent_proto::verify::verify_decision(transaction, Some(&device.public_key))
        .map_err(|error| error.to_string())?;
    Ok(VerifiedDevice {
        device_id: device.device_id,
        key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check_transaction_t<'t>(
        transaction: &'t Transaction,
        login: &LoginRequest,
        number: u32,
    ) -> Result<&'t DecisionEvidence, String> {
        check_transaction(transaction, "t", login, number)
    }

    fn login() -> LoginRequest {
        LoginRequest {
            pam_user: "alice".to_owned(),
            user_id: "alice@corp".to_owned(),
            message: "Log in?".to_owned(),
            context: BTreeMap::from([("host".to_owned(), "web1".to_owned())]),
        }
    }

    fn accepted(picked_number: Option<u32>) -> Transaction {
        let login = login();
        let mut transaction = Transaction {
            transaction_id: "t".to_owned(),
            user_id: login.user_id,
            message: login.message,
            context: login.context.into_iter().collect(),
            evidence: Some(DecisionEvidence {
                picked_number,
                ..DecisionEvidence::default()
            }),
            ..Transaction::default()
        };
        transaction.set_state(TransactionState::Accepted);
        if let Some(evidence) = transaction.evidence.as_mut() {
            evidence.set_decision(Decision::Accept);
        }
        transaction
    }

    #[test]
    fn this_logins_accepted_push_passes_the_local_checks() {
        assert!(check_transaction_t(&accepted(None), &login(), 0).is_ok());
        assert!(check_transaction_t(&accepted(Some(42)), &login(), 42).is_ok());
    }

    #[test]
    fn another_number_or_no_number_is_refused() {
        let error = check_transaction_t(&accepted(Some(17)), &login(), 42).unwrap_err();
        assert!(error.contains("picked Some(17)"), "{error}");
        assert!(check_transaction_t(&accepted(None), &login(), 42).is_err());
        assert!(check_transaction_t(&accepted(Some(42)), &login(), 0).is_err());
    }

    #[test]
    fn another_user_message_or_context_is_refused() {
        let mut other_user = accepted(None);
        other_user.user_id = "mallory".to_owned();
        assert!(check_transaction_t(&other_user, &login(), 0).is_err());
        let mut other_message = accepted(None);
        other_message.message = "Pay 1000 EUR?".to_owned();
        assert!(check_transaction_t(&other_message, &login(), 0).is_err());
        let mut other_context = accepted(None);
        other_context
            .context
            .insert("rhost".to_owned(), "evil".to_owned());
        assert!(check_transaction_t(&other_context, &login(), 0).is_err());
    }

    #[test]
    fn a_deny_verdict_or_missing_evidence_is_refused() {
        let mut denied_verdict = accepted(None);
        if let Some(evidence) = denied_verdict.evidence.as_mut() {
            evidence.set_decision(Decision::Deny);
        }
        assert!(check_transaction_t(&denied_verdict, &login(), 0).is_err());
        let mut no_evidence = accepted(None);
        no_evidence.evidence = None;
        assert!(check_transaction_t(&no_evidence, &login(), 0).is_err());
        let mut another_push = accepted(None);
        another_push.transaction_id = "an older one".to_owned();
        assert!(check_transaction_t(&another_push, &login(), 0).is_err());
        let mut open = accepted(None);
        open.set_state(TransactionState::Pending);
        assert!(check_transaction_t(&open, &login(), 0).is_err());
    }
}
