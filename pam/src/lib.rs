//! `pam_assent.so`: a PAM module that lets ssh, sudo and console logins be
//! confirmed on the user's Assent device. On `pam_sm_authenticate` it sends
//! a push for the PAM user through the relying-party API, tells the person
//! what to check (the message and, under number matching, the number to
//! pick), waits for the outcome and succeeds only on ACCEPTED with a device
//! signature that verifies. README.md documents the settings and the
//! security choices.
//!
//! - [`ffi`]: libpam's C interface, the crate's only unsafe code.
//! - [`host`]: what the module needs from libpam, as a safe trait.
//! - [`settings`]: the module argument and the TOML settings file.
//! - [`template`]: the `message` and `user_map` placeholders.
//! - [`login`]: the push one login sends.
//! - [`push`]: one push login: create, tell the person, wait.
//! - [`connection`]: the channel, the API key, deadlines, "unreachable".
//! - [`decision`]: whether an accepted push verifies.

pub mod connection;
pub mod decision;
pub mod ffi;
pub mod host;
pub mod login;
pub mod push;
pub mod settings;
pub mod template;

use host::{Host, Level, Verdict};
use login::LoginRequest;
use push::Outcome;
use settings::Fallback;

/// One `pam_sm_authenticate` call: everything but the C types.
pub fn authenticate(host: &dyn Host, silent: bool, args: &[String]) -> Verdict {
    let settings = match settings::path_from_args(args).and_then(|path| settings::load(&path)) {
        Ok(settings) => settings,
        Err(error) => {
            host.log(Level::Error, &format!("not asking any device: {error}"));
            return Verdict::AuthError;
        }
    };
    let Some(pam_user) = host.user() else {
        host.log(Level::Error, "the application gave no user name");
        return Verdict::AuthError;
    };
    let login = match LoginRequest::new(&settings, host, &pam_user) {
        Ok(login) => login,
        Err(error) => {
            host.log(Level::Error, &format!("user {pam_user:?}: {error}"));
            return Verdict::AuthError;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            host.log(
                Level::Error,
                &format!("cannot start the I/O runtime: {error}"),
            );
            return Verdict::AuthError;
        }
    };
    let outcome = runtime.block_on(push::run(&settings, &login, host, silent));
    // Nothing of the call may linger in the application's process; a name
    // lookup still running on the blocking pool gets at most a second.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    conclude(host, silent, &settings, &login, outcome)
}

/// Logs the outcome, applies the fallback, and says it to the person.
fn conclude(
    host: &dyn Host,
    silent: bool,
    settings: &settings::Settings,
    login: &LoginRequest,
    outcome: Outcome,
) -> Verdict {
    let who = format!(
        "user {:?} (Assent user {:?})",
        login.pam_user, login.user_id
    );
    let (verdict, note) = match outcome {
        Outcome::Accepted {
            transaction_id,
            device_id,
            device_key_id,
        } => {
            host.log(
                Level::Info,
                &format!(
                    "accepted: {who}, transaction {transaction_id}, device {device_id} \
                     (key {device_key_id}); the decision signature verifies"
                ),
            );
            (Verdict::Success, None)
        }
        Outcome::Refused {
            transaction_id,
            reason,
        } => {
            let transaction = transaction_id
                .map(|id| format!(", transaction {id}"))
                .unwrap_or_default();
            host.log(
                Level::Error,
                &format!("refused: {who}{transaction}: {reason}"),
            );
            (
                Verdict::AuthError,
                Some("Assent: the login was not confirmed."),
            )
        }
        Outcome::Unreachable(why) => match settings.fallback {
            Fallback::Deny => {
                host.log(
                    Level::Error,
                    &format!(
                        "refused: {who}: the server cannot be reached ({why}); fallback = deny"
                    ),
                );
                (
                    Verdict::AuthError,
                    Some("Assent: the server cannot be reached; the login is refused."),
                )
            }
            Fallback::Allow => {
                host.log(
                    Level::Warning,
                    &format!(
                        "ALLOWED WITHOUT DEVICE CONFIRMATION: {who}: the server cannot be \
                         reached ({why}); fallback = allow"
                    ),
                );
                (
                    Verdict::Success,
                    Some("Assent: the server cannot be reached; continuing without confirmation."),
                )
            }
        },
    };
    if let (false, Some(note)) = (silent, note) {
        let _ = host.show(note);
    }
    verdict
}
