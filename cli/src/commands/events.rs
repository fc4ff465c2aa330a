//! `assent events`: the application's event log, as a backlog or followed live.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::client::AssentClient;
use crate::output::views::EventView;
use crate::output::{self, Format, text};

/// Without --follow, the backlog is over once no event arrived for this long.
const BACKLOG_IDLE: Duration = Duration::from_secs(1);

/// Arguments of `assent events`.
///
/// Subscribe never ends by itself, so without --follow the command stops once
/// no event has arrived for 1 s (after the last one, or from the start).
/// With --follow it runs until the server ends the stream or Ctrl-C (exit 0).
/// With --json each event is one line:
/// {"cursor","type","transaction_id","user_id","device_id","reason","occurred_at","fraud_reported"},
/// cursor a number, empty fields null, fraud_reported true on a `not_me` denial.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this cursor (0: every retained event).
    #[arg(long, value_name = "CURSOR", default_value_t = 0)]
    after: u64,
    /// Keep printing live events until the stream ends or Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// Start at the head: only events from now on (implies --follow).
    #[arg(long, conflicts_with = "after")]
    from_now: bool,
}

/// Streams events and prints one line per event.
pub async fn run(
    args: EventsArgs,
    client: &mut AssentClient,
    format: Format,
) -> anyhow::Result<()> {
    let follow = args.follow || args.from_now;
    let mut stream = client.subscribe(args.after, args.from_now).await?;
    let mut cursor = args.after;
    let mut received = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = if follow {
            tokio::select! {
                next = stream.message() => next,
                _ = &mut ctrl_c => return Ok(()),
            }
        } else {
            match tokio::time::timeout(BACKLOG_IDLE, stream.message()).await {
                Ok(next) => next,
                Err(_idle) => return Ok(()),
            }
        };
        let event = match next {
            Ok(event) => event,
            // Nothing came yet: the stream never worked, nothing to resume.
            Err(status) if !received => return Err(client.explain(&status)),
            Err(status) => {
                return Err(client.explain(&status)).with_context(|| {
                    format!("the event stream broke (resume with --after {cursor})")
                });
            }
        };
        let Some(event) = event else {
            if follow {
                eprintln!("the server ended the event stream; resume with --after {cursor}");
            }
            return Ok(());
        };
        received = true;
        cursor = cursor.max(event.cursor);
        let view = EventView::from(&event);
        match format {
            Format::Json => output::write_json(&view)?,
            Format::Human => output::write_line(&text::event(&view))?,
        }
    }
}
