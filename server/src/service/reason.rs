//! The stable reason codes of refusals (`google.rpc.ErrorInfo.reason`),
//! each defined once here; docs/relying-party.md lists them for callers.
//! Programs act on these, never on messages, so a code never changes.

/// A request field is malformed.
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
/// No valid API key or device signature.
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
/// Nothing of that kind exists for this caller.
pub const NOT_FOUND: &str = "NOT_FOUND";
/// The OTP is unknown, used, expired or foreign.
pub const OTP_REFUSED: &str = "OTP_REFUSED";
/// The enrollment code is unknown, used or expired.
pub const ENROLLMENT_CODE_REFUSED: &str = "ENROLLMENT_CODE_REFUSED";
/// A peer address made too many refused enrollment attempts.
pub const ENROLLMENT_RATE_LIMITED: &str = "ENROLLMENT_RATE_LIMITED";
/// A source address made too many refused API-key attempts.
pub const API_KEY_RATE_LIMITED: &str = "API_KEY_RATE_LIMITED";
/// The enrollment proof does not verify with the new key.
pub const ENROLLMENT_PROOF_INVALID: &str = "ENROLLMENT_PROOF_INVALID";
/// The public key is enrolled as another device already.
pub const PUBLIC_KEY_IN_USE: &str = "PUBLIC_KEY_IN_USE";
/// The user has no device to push to.
pub const NO_ENROLLED_DEVICE: &str = "NO_ENROLLED_DEVICE";
/// The transaction already ended.
pub const TRANSACTION_ENDED: &str = "TRANSACTION_ENDED";
/// Another push to the user is still open.
pub const PUSH_ALREADY_OPEN: &str = "PUSH_ALREADY_OPEN";
/// The user reported a login as not theirs; pushes wait.
pub const FRAUD_COOLDOWN: &str = "FRAUD_COOLDOWN";
/// Too many pushes to the user went unaccepted.
pub const TOO_MANY_UNANSWERED_PUSHES: &str = "TOO_MANY_UNANSWERED_PUSHES";
/// The API key's creation rate is used up.
pub const CREATION_RATE_LIMITED: &str = "CREATION_RATE_LIMITED";
/// The API key has as many event streams open as allowed.
pub const TOO_MANY_SUBSCRIBERS: &str = "TOO_MANY_SUBSCRIBERS";
/// The server has as many calls waiting for outcomes as allowed.
pub const TOO_MANY_WAITS: &str = "TOO_MANY_WAITS";
/// The device handed in too many invalid OTPs.
pub const OTP_ATTEMPTS_EXHAUSTED: &str = "OTP_ATTEMPTS_EXHAUSTED";
/// A device's message is over the size limit.
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
/// The decision signature does not verify.
pub const DECISION_SIGNATURE_INVALID: &str = "DECISION_SIGNATURE_INVALID";
/// Too many of the device's signatures failed to verify; it waits.
pub const SIGNATURE_ATTEMPTS_EXHAUSTED: &str = "SIGNATURE_ATTEMPTS_EXHAUSTED";
/// The device has been revoked.
pub const DEVICE_REVOKED: &str = "DEVICE_REVOKED";
/// The device's stream said hello twice.
pub const ALREADY_AUTHENTICATED: &str = "ALREADY_AUTHENTICATED";
/// A newer stream of the device replaced this one.
pub const STREAM_REPLACED: &str = "STREAM_REPLACED";
/// The event cursor is outside the retained range.
pub const CURSOR_OUT_OF_RANGE: &str = "CURSOR_OUT_OF_RANGE";
/// Transient: retry after the hinted delay.
pub const TRY_AGAIN: &str = "TRY_AGAIN";
/// The transaction kept changing while the request was decided.
pub const CONTENTION: &str = "CONTENTION";
/// The database cannot be reached.
pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
/// The server is at its limit of calls in progress.
pub const SERVER_BUSY: &str = "SERVER_BUSY";
/// The call did not finish within its deadline.
pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
/// A bug; the server logged the cause.
pub const INTERNAL: &str = "INTERNAL";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code, for the check against the documentation.
    const ALL: &[&str] = &[
        INVALID_ARGUMENT,
        UNAUTHENTICATED,
        NOT_FOUND,
        OTP_REFUSED,
        ENROLLMENT_CODE_REFUSED,
        ENROLLMENT_RATE_LIMITED,
        API_KEY_RATE_LIMITED,
        ENROLLMENT_PROOF_INVALID,
        PUBLIC_KEY_IN_USE,
        NO_ENROLLED_DEVICE,
        TRANSACTION_ENDED,
        PUSH_ALREADY_OPEN,
        FRAUD_COOLDOWN,
        TOO_MANY_UNANSWERED_PUSHES,
        CREATION_RATE_LIMITED,
        TOO_MANY_SUBSCRIBERS,
        TOO_MANY_WAITS,
        OTP_ATTEMPTS_EXHAUSTED,
        MESSAGE_TOO_LARGE,
        DECISION_SIGNATURE_INVALID,
        SIGNATURE_ATTEMPTS_EXHAUSTED,
        DEVICE_REVOKED,
        ALREADY_AUTHENTICATED,
        STREAM_REPLACED,
        CURSOR_OUT_OF_RANGE,
        TRY_AGAIN,
        CONTENTION,
        DATABASE_UNAVAILABLE,
        SERVER_BUSY,
        DEADLINE_EXCEEDED,
        INTERNAL,
    ];

    #[test]
    fn every_reason_code_is_documented_for_callers() {
        let docs = include_str!("../../../docs/relying-party.md");
        for code in ALL {
            assert!(
                docs.contains(&format!("| `{code}` |")),
                "{code} is not in the table"
            );
        }
    }
}
