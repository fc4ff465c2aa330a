//! Human-readable text for each view: labelled blocks, one line per event,
//! and the devices table. Missing values are shown as `-`.

use std::fmt::Write;

use crate::output::views::{DeviceView, EventView, TransactionView};

/// Placeholder for a missing value.
const NONE: &str = "-";

/// A labelled block describing one transaction.
pub fn transaction(view: &TransactionView) -> String {
    let mut rows = vec![
        ("transaction", view.transaction_id.clone()),
        ("state", view.state.to_owned()),
        ("kind", shown(view.kind)),
        ("number matching", yes_no(view.number_matching).to_owned()),
        ("user", shown(view.user_id.as_deref())),
        ("device", shown(view.device_id.as_deref())),
        ("reason", shown(view.reason.as_deref())),
        ("message", view.message.clone()),
    ];
    rows.extend(
        view.context
            .iter()
            .map(|(key, value)| ("context", format!("{key}={value}"))),
    );
    rows.push(("created", shown(view.created_at.as_deref())));
    rows.push(("expires", shown(view.expires_at.as_deref())));
    rows.push(("completed", shown(view.completed_at.as_deref())));
    block(&rows)
}

/// A labelled block describing one device.
pub fn device(view: &DeviceView) -> String {
    block(&[
        ("device", view.device_id.clone()),
        ("user", view.user_id.clone()),
        ("name", view.name.clone()),
        ("status", status(view.revoked).to_owned()),
        ("connected", yes_no(view.connected).to_owned()),
        ("created", shown(view.created_at.as_deref())),
        ("last seen", shown(view.last_seen.as_deref())),
    ])
}

/// One line per event: cursor, time, type, then only the fields that are set.
pub fn event(view: &EventView) -> String {
    let mut line = format!(
        "{:>6}  {}  {}",
        view.cursor,
        shown(view.occurred_at.as_deref()),
        view.kind
    );
    let fields = [
        ("tx", &view.transaction_id),
        ("user", &view.user_id),
        ("device", &view.device_id),
        ("reason", &view.reason),
    ];
    for (label, value) in fields {
        if let Some(value) = value {
            let _ = write!(line, "  {label}={value}");
        }
    }
    if view.fraud_reported {
        line.push_str("  FRAUD REPORTED");
    }
    line
}

/// The devices as an aligned table, or a sentence when there are none.
pub fn devices_table(views: &[DeviceView]) -> String {
    if views.is_empty() {
        return "no devices".to_owned();
    }
    let header = [
        "DEVICE ID",
        "USER",
        "NAME",
        "STATUS",
        "CONNECTED",
        "CREATED",
        "LAST SEEN",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|view| {
            [
                view.device_id.clone(),
                view.user_id.clone(),
                view.name.clone(),
                status(view.revoked).to_owned(),
                yes_no(view.connected).to_owned(),
                shown(view.created_at.as_deref()),
                shown(view.last_seen.as_deref()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `label  value` rows with the values aligned.
pub fn block(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(label, value)| format!("{label:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value, or `-` when missing.
fn shown(value: Option<&str>) -> String {
    value.unwrap_or(NONE).to_owned()
}

/// `yes` or `no`.
fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// A device's status word.
fn status(is_revoked: bool) -> &'static str {
    if is_revoked { "revoked" } else { "active" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_view(id: &str, name: &str, revoked: bool) -> DeviceView {
        DeviceView {
            device_id: id.into(),
            user_id: "alice".into(),
            name: name.into(),
            revoked,
            created_at: Some("2025-01-01T00:00:00Z".into()),
            last_seen_at: None,
            connected: !revoked,
            last_seen: None,
        }
    }

    #[test]
    fn devices_table_aligns_columns_and_marks_revoked() {
        let table = devices_table(&[
            device_view("d-1", "laptop", false),
            device_view("d-22", "a much longer name", true),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let status_column = lines[0].find("STATUS").unwrap();
        assert_eq!(&lines[1][status_column..status_column + 6], "active");
        assert_eq!(&lines[2][status_column..status_column + 7], "revoked");
        let connected_column = lines[0].find("CONNECTED").unwrap();
        assert_eq!(&lines[1][connected_column..connected_column + 3], "yes");
        assert_eq!(&lines[2][connected_column..connected_column + 2], "no");
    }

    #[test]
    fn empty_device_list_says_so() {
        assert_eq!(devices_table(&[]), "no devices");
    }

    #[test]
    fn event_line_omits_missing_fields() {
        let line = event(&EventView {
            cursor: 7,
            kind: "transaction.denied".into(),
            transaction_id: Some("t-1".into()),
            user_id: None,
            device_id: Some("d-1".into()),
            reason: Some("not_me".into()),
            occurred_at: Some("2025-01-01T00:00:00Z".into()),
            fraud_reported: true,
        });
        assert_eq!(
            line,
            "     7  2025-01-01T00:00:00Z  transaction.denied  tx=t-1  device=d-1  reason=not_me  \
             FRAUD REPORTED"
        );
    }
}
