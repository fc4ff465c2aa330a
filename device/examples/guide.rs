//! The complete program of the SDK guide (`docs/sdk.md`): enrolls with a
//! code, then answers every confirmation request — accepting those of the
//! application it enrolled with, reporting anything else as not me — and
//! hands in each OTP read from standard input, printing its outcome.
//!
//! Run: `guide SERVER_URL STATE_DIR ENROLLMENT_CODE`, then paste OTPs.

use assent_device::{
    Answer, ConnectionState, DenyReason, Device, DeviceConfig, Handler, Request, Withdrawn,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The app's side: decides and hears what happens.
struct Kiosk {
    /// The application this device was enrolled for.
    application: String,
}

impl Handler for Kiosk {
    async fn confirm(&self, request: Request, _withdrawn: Withdrawn) -> Answer {
        println!(
            "confirm: {} asks {:?} ({:?})",
            request.application_name, request.message, request.kind
        );
        if request.application_name != self.application {
            return Answer::Deny(DenyReason::NotMe);
        }
        // Under number matching a real app shows the numbers and lets the
        // person pick the one the login page shows; this kiosk cannot.
        if request.number_choices.is_offered() {
            return Answer::Deny(DenyReason::Policy);
        }
        Answer::ACCEPT
    }

    fn on_withdrawn(&self, transaction_id: &str, reason: &str) {
        println!("withdrawn: {transaction_id} ({reason})");
    }

    fn on_decided(&self, transaction_id: &str, state: &str, applied: bool) {
        println!("decided: {transaction_id} {state} (applied: {applied})");
    }

    fn on_connection(&self, state: &ConnectionState) {
        match state {
            ConnectionState::Connected { server } => println!("connected: {server}"),
            ConnectionState::Disconnected { reason } => println!("disconnected: {reason}"),
            ConnectionState::Revoked { message } => println!("revoked: {message}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, state_dir, code] = args.as_slice() else {
        return Err("usage: guide SERVER_URL STATE_DIR ENROLLMENT_CODE".into());
    };
    let config = DeviceConfig::new(state_dir.into(), server.as_str());

    // 1. Enroll: a new key, kept in STATE_DIR (owner-only files).
    let enrollment = assent_device::enroll(&config, code, "guide example", false).await?;
    println!(
        "enrolled: device {} of {} for {}",
        enrollment.device_id, enrollment.user_id, enrollment.application_name
    );

    // 2. Start: connects, reconnects, asks the handler about every request
    //    (pushes included).
    let device = Device::start(
        config,
        Kiosk {
            application: enrollment.application_name,
        },
    )?;

    // 3. Hand in OTPs: each call returns the outcome (onSuccess / onError).
    let handle = device.handle();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let outcome = handle.submit_otp(line.trim()).await;
        if outcome.ok {
            println!("success: {}", outcome.transaction_id.unwrap_or_default());
        } else {
            println!("error: {}", outcome.summary(None));
        }
    }

    // 4. Stop: the stream closes; callers still waiting are told.
    device.stop().await?;
    Ok(())
}
