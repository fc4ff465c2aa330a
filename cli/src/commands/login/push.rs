//! `assent login push`: send the login request to every device of one user,
//! optionally with number matching.

use anyhow::anyhow;
use assent_proto::v1::CreatePushAuthenticationRequest;
use clap::Args;
use tonic::{Code, Status};

use super::context;
use crate::client::AssentClient;
use crate::output::views::PushLoginView;
use crate::output::{self, Format, text};

/// Arguments of `assent login push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The user whose devices are asked (1–128 characters).
    #[arg(long, value_name = "USER")]
    user: String,
    /// The question shown on the device.
    #[arg(long, value_name = "M", default_value = "Log in?")]
    message: String,
    /// Seconds until the push expires [server default: 120; allowed 10–600].
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
    /// Show a 2-digit number on the login page that the user must pick on the device.
    #[arg(long)]
    number_matching: bool,
    /// Extra fact shown on the device, as key=value (split on the first `=`); repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    context: Vec<(String, String)>,
}

impl PushArgs {
    /// Checks what clap cannot: each context key is given once.
    pub fn check(&self) -> Result<(), String> {
        context::to_map(&self.context).map(|_| ())
    }
}

/// Creates the push login and prints it.
pub async fn run(args: PushArgs, client: &mut AssentClient, format: Format) -> anyhow::Result<()> {
    let context = context::to_map(&args.context).map_err(anyhow::Error::msg)?;
    let user = args.user;
    let request = CreatePushAuthenticationRequest {
        user_id: user.clone(),
        message: args.message,
        ttl_seconds: args.ttl.unwrap_or(0),
        context,
        number_matching: args.number_matching,
        ..Default::default()
    };
    let result = client.try_create_push_authentication(request).await;
    let response = result.map_err(|status| explain(client, &status, &user))?;
    let view = PushLoginView::from(&response);
    output::write(format, &view, human)
}

/// The usual wording of a failure, plus advice for the ones specific to push.
fn explain(client: &AssentClient, status: &Status, user: &str) -> anyhow::Error {
    let message = client.explain(status);
    match status.code() {
        Code::FailedPrecondition => {
            anyhow!("{message} (make a code for it: `assent enrollment create --user {user}`)")
        }
        Code::Unimplemented => anyhow!("{message} (this server predates push logins)"),
        _ => message,
    }
}

/// The transaction, expiry, the devices reached, the number to show and the next command.
fn human(view: &PushLoginView) -> String {
    let details = text::block(&[
        ("transaction", view.transaction_id.clone()),
        (
            "expires",
            view.expires_at.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("devices", reached(view.devices_reached)),
    ]);
    let number = view
        .number
        .map(|number| {
            format!(
                "\n\n{}",
                framed(&format!("Show this number on the login page: {number}"))
            )
        })
        .unwrap_or_default();
    format!(
        "{details}{number}\n\nThe user answers on a device; follow the outcome with:\n  assent tx wait {}",
        view.transaction_id
    )
}

/// How many devices got the request now, and what happens to the others.
fn reached(count: u32) -> String {
    if count == 0 {
        "0 connected now; devices get it when they connect".to_owned()
    } else {
        format!("{count} connected now; any others get it when they connect")
    }
}

/// `line` in a box, so it stands out in the terminal.
fn framed(line: &str) -> String {
    let rule = "═".repeat(line.chars().count() + 6);
    format!("  ╔{rule}╗\n  ║   {line}   ║\n  ╚{rule}╝")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(number: Option<u32>, devices_reached: u32) -> PushLoginView {
        PushLoginView {
            transaction_id: "t-1".into(),
            expires_at: Some("2025-01-01T00:02:00Z".into()),
            number,
            devices_reached,
        }
    }

    #[test]
    fn number_is_shown_on_its_own_framed_line() {
        let text = human(&view(Some(42), 1));
        let line = text
            .lines()
            .find(|line| line.contains("Show this number"))
            .unwrap();
        assert_eq!(line, "  ║   Show this number on the login page: 42   ║");
        let widths: Vec<usize> = text
            .lines()
            .filter(|line| line.contains('║') || line.contains('═'))
            .map(|line| line.chars().count())
            .collect();
        assert_eq!(widths.len(), 3);
        assert!(widths.iter().all(|width| *width == widths[0]));
        assert!(text.contains("1 connected now"));
        assert!(text.ends_with("assent tx wait t-1"));
    }

    #[test]
    fn without_number_matching_no_number_and_unreached_devices_explained() {
        let text = human(&view(None, 0));
        assert!(!text.contains("Show this number"), "{text}");
        assert!(text.contains("0 connected now; devices get it when they connect"));
    }
}
