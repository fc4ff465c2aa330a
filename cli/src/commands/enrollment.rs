//! `assent enrollment create`: a single-use code that enrolls a device for one user.

use assent_proto::v1::CreateEnrollmentRequest;
use clap::Subcommand;

use crate::client::AssentClient;
use crate::output::views::EnrollmentView;
use crate::output::{self, Format, qr, text};

/// `assent enrollment …`
#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// Create a single-use enrollment code for one user and show it as text and QR code.
    ///
    /// The QR code holds the code, the server URL and the application's name
    /// (`assent://enroll?…`), so a device enrolls from a picture of it
    /// (`assent-agent enroll --scan`). With --json prints
    /// {"code","expires_at","user_id","application_name","qr_payload"}.
    Create {
        /// The application's own id of the user (1–128 characters).
        #[arg(long, value_name = "USER")]
        user: String,
        /// Seconds the code stays valid [server default: 600; at most 86400].
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u32>,
        /// The server URL devices use, put into the QR code [default: --server].
        #[arg(long, value_name = "URL", env = "ASSENT_DEVICE_SERVER")]
        device_server: Option<String>,
    },
}

/// Runs an enrollment subcommand.
pub async fn run(
    command: EnrollmentCommand,
    client: &mut AssentClient,
    server: &str,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        EnrollmentCommand::Create {
            user,
            ttl,
            device_server,
        } => {
            let request = CreateEnrollmentRequest {
                user_id: user,
                ttl_seconds: ttl.unwrap_or(0),
            };
            let response = client.create_enrollment(request).await?;
            let view = EnrollmentView::new(&response, device_server.as_deref().unwrap_or(server));
            match format {
                Format::Json => output::write_json(&view),
                Format::Human => output::write_line(&human(&view)?),
            }
        }
    }
}

/// The code, its expiry, its QR code and what to run on the device.
fn human(view: &EnrollmentView) -> anyhow::Result<String> {
    let details = text::block(&[
        ("code", view.code.clone()),
        (
            "user",
            view.user_id.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        (
            "expires",
            view.expires_at.clone().unwrap_or_else(|| "-".to_owned()),
        ),
    ]);
    let drawing = qr::render(&view.qr_payload)?;
    Ok(format!(
        "{details}\n\n{drawing}\nOn the device, scan the code (assent-agent enroll --scan IMAGE) or run:\n  assent-agent enroll --code {}",
        view.code
    ))
}
