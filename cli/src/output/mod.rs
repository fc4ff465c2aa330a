//! Everything printed on stdout: the JSON shapes ([`views`]), their
//! human-readable text ([`text`]), terminal QR codes ([`qr`]), and the
//! writer that flushes each line.

pub mod qr;
pub mod text;
pub mod views;

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

/// Whether stdout is for people or for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Friendly text.
    Human,
    /// Exactly one JSON document (one per line for event streams).
    Json,
}

/// Writes `text` and a newline to stdout and flushes, so pipes see it at once.
pub fn write_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// Writes `value` as one line of compact JSON.
pub fn write_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(value).context("cannot encode the output as JSON")?;
    write_line(&line)
}

/// Writes `value` as JSON or as the text `human` builds from it.
pub fn write<T: Serialize>(
    format: Format,
    value: &T,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => write_json(value),
        Format::Human => write_line(&human(value)),
    }
}
