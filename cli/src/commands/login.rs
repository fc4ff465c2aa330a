//! `assent login otp`: start an OTP login and show the OTP as text and QR code.

use std::collections::BTreeMap;

use assent_proto::v1::CreateOtpAuthenticationRequest;
use clap::{Args, Subcommand};

use crate::client::AssentClient;
use crate::output::views::LoginView;
use crate::output::{self, Format, qr, text};

/// `assent login …`
#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Start an OTP login: prints the transaction id, expiry and the OTP (text and QR code).
    ///
    /// With --json prints {"transaction_id","otp","expires_at","qr_payload"}.
    /// Follow the outcome with `assent tx wait <transaction_id>`.
    Otp(OtpArgs),
}

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
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_context_pair)]
    context: Vec<(String, String)>,
}

impl LoginCommand {
    /// Checks what clap cannot: each context key is given once.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Otp(args) => context_map(&args.context).map(|_| ()),
        }
    }
}

/// Runs a login subcommand.
pub async fn run(
    command: LoginCommand,
    client: &mut AssentClient,
    format: Format,
) -> anyhow::Result<()> {
    let LoginCommand::Otp(args) = command;
    let context = context_map(&args.context).map_err(anyhow::Error::msg)?;
    let request = CreateOtpAuthenticationRequest {
        message: args.message,
        ttl_seconds: args.ttl.unwrap_or(0),
        context,
        user_id: args.user.unwrap_or_default(),
    };
    let response = client.create_otp_authentication(request).await?;
    let view = LoginView::from(&response);
    match format {
        Format::Json => output::write_json(&view),
        Format::Human => output::write_line(&human(&view)?),
    }
}

/// Parses one `--context key=value`, splitting on the first `=`.
fn parse_context_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err(format!("{raw:?} has an empty key; expected key=value")),
        None => Err(format!("{raw:?} has no `=`; expected key=value")),
    }
}

/// Collects the pairs, refusing a key given twice.
fn context_map(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("--context key {key:?} is given more than once"));
        }
    }
    Ok(map)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_splits_on_the_first_equals_sign() {
        assert_eq!(
            parse_context_pair("query=a=b").unwrap(),
            ("query".to_owned(), "a=b".to_owned())
        );
        assert_eq!(
            parse_context_pair("ip=").unwrap(),
            ("ip".to_owned(), String::new())
        );
    }

    #[test]
    fn context_without_equals_or_key_is_refused() {
        assert!(
            parse_context_pair("browser")
                .unwrap_err()
                .contains("no `=`")
        );
        assert!(
            parse_context_pair("=firefox")
                .unwrap_err()
                .contains("empty key")
        );
    }

    #[test]
    fn repeated_context_key_is_refused() {
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(context_map(&pairs).unwrap_err().contains("\"a\""));
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        assert_eq!(context_map(&pairs).unwrap().len(), 2);
    }
}
