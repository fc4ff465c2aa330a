//! `assent login otp|push`: start a login, either with an OTP the login page
//! shows as a QR code or by pushing the request to the user's devices.

mod context;
mod otp;
mod push;

use clap::Subcommand;

use crate::client::AssentClient;
use crate::output::Format;

/// `assent login …`
#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Start an OTP login: prints the transaction id, expiry and the OTP (text and QR code).
    ///
    /// With --json prints {"transaction_id","otp","expires_at","qr_payload"}.
    /// Follow the outcome with `assent tx wait <transaction_id>`.
    Otp(otp::OtpArgs),
    /// Start a push login: the request goes to every device of the user at once
    /// (devices not connected now get it when they connect).
    ///
    /// Prints the transaction id, expiry, how many devices were reached now and,
    /// with --number-matching, the number to show on the login page.
    /// With --json prints {"transaction_id","expires_at","number","devices_reached"};
    /// number is null without number matching.
    /// Follow the outcome with `assent tx wait <transaction_id>`.
    Push(push::PushArgs),
}

impl LoginCommand {
    /// Checks what clap cannot: each context key is given once.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Otp(args) => args.check(),
            Self::Push(args) => args.check(),
        }
    }
}

/// Runs a login subcommand.
pub async fn run(
    command: LoginCommand,
    client: &mut AssentClient,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        LoginCommand::Otp(args) => otp::run(args, client, format).await,
        LoginCommand::Push(args) => push::run(args, client, format).await,
    }
}
