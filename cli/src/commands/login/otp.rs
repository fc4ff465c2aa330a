//! `assent login otp`: start an OTP login and show the OTP as text and QR code.

use assent_proto::v1::CreateOtpAuthenticationRequest;
use clap::Args;

use super::context;
use crate::client::AssentClient;
use crate::output::views::LoginView;
use crate::output::{self, Format, qr, text};

/// Arguments of `assent login otp`.
#[derive(Debug, Args)]
pub struct OtpArgs {
    /// Only this user's devices may answer; without it any device of the application may.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// The question shown on the device.
    #[arg(long, value_name = "M", default_value = "Log in?")]
    message: String,
    /// Seconds until the OTP expires [server default: 120; allowed 10–600].
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
    /// Extra fact shown on the device, as key=value (split on the first `=`); repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    context: Vec<(String, String)>,
    /// Also write the QR code as a PNG image to FILE (as a login page shows it).
    #[arg(long, value_name = "FILE")]
    qr_png: Option<std::path::PathBuf>,
    /// Bind the login to a browser session: an opaque value of at most 64
    /// bytes, given as hex (e.g. SHA-256 of the session id).
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    binding: Option<Vec<u8>>,
}

/// Parses hex text into bytes.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected an even number of hex digits".to_owned());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

impl OtpArgs {
    /// Checks what clap cannot: each context key is given once.
    pub fn check(&self) -> Result<(), String> {
        context::to_map(&self.context).map(|_| ())
    }
}

/// Creates the OTP login and prints it.
pub async fn run(args: OtpArgs, client: &mut AssentClient, format: Format) -> anyhow::Result<()> {
    let context = context::to_map(&args.context).map_err(anyhow::Error::msg)?;
    let request = CreateOtpAuthenticationRequest {
        message: args.message,
        ttl_seconds: args.ttl.unwrap_or(0),
        context,
        user_id: args.user.unwrap_or_default(),
        binding: args.binding.unwrap_or_default(),
    };
    let response = client.create_otp_authentication(request).await?;
    if let Some(path) = &args.qr_png {
        qr::write_png(&response.qr_payload, path)?;
    }
    let view = LoginView::from(&response);
    match format {
        Format::Json => output::write_json(&view),
        Format::Human => output::write_line(&human(&view)?),
    }
}

/// The transaction, expiry, OTP, its QR code and the next command.
fn human(view: &LoginView) -> anyhow::Result<String> {
    let details = text::block(&[
        ("transaction", view.transaction_id.clone()),
        (
            "expires",
            view.expires_at.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("otp", view.otp.clone()),
    ]);
    let drawing = qr::render(&view.qr_payload)?;
    Ok(format!(
        "{details}\n\n{drawing}\nScan it with the device (or run `assent-agent otp <otp>` there), then:\n  \
         assent tx wait {}",
        view.transaction_id
    ))
}
