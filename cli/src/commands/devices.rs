//! `assent devices list|get|revoke`: the application's enrolled devices and
//! whether they are connected now.

use clap::Subcommand;

use crate::client::AssentClient;
use crate::output::views::DeviceView;
use crate::output::{self, Format, text};

/// `assent devices …`
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List enrolled devices (oldest first) as a table.
    ///
    /// With --json prints an array of
    /// {"device_id","user_id","name","revoked","created_at","last_seen_at","connected","last_seen"};
    /// connected tells whether the device holds a live connection now;
    /// last_seen (and its older alias last_seen_at) is null if it never connected.
    List {
        /// Only this user's devices.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Print one device, with whether it is connected now.
    ///
    /// With --json prints the same object as one item of `devices list`.
    Get {
        /// The device id.
        #[arg(value_name = "DEVICE_ID")]
        device_id: String,
    },
    /// Revoke a device at once and print it. Its open confirmations fail with `device_revoked`.
    Revoke {
        /// The device id.
        #[arg(value_name = "DEVICE_ID")]
        device_id: String,
    },
}

/// Runs a devices subcommand.
pub async fn run(
    command: DevicesCommand,
    client: &mut AssentClient,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        DevicesCommand::List { user } => {
            let devices = client.list_devices(user.unwrap_or_default()).await?;
            let views: Vec<DeviceView> = devices.iter().map(DeviceView::from).collect();
            output::write(format, &views, |views| text::devices_table(views))
        }
        DevicesCommand::Get { device_id } => {
            let device = client.get_device(&device_id).await?;
            output::write(format, &DeviceView::from(&device), text::device)
        }
        DevicesCommand::Revoke { device_id } => {
            let device = client.revoke_device(&device_id).await?;
            output::write(format, &DeviceView::from(&device), text::device)
        }
    }
}
