//! The view of one enrolled device, with its presence.

use assent_proto::v1::Device;
use serde::Serialize;

use super::rfc3339;

/// `assent devices list|get|revoke`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    /// The device's id.
    pub device_id: String,
    /// The user it belongs to.
    pub user_id: String,
    /// The name it gave itself.
    pub name: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it enrolled.
    pub created_at: Option<String>,
    /// When it was last seen (null if never); kept beside `last_seen` for older scripts.
    pub last_seen_at: Option<String>,
    /// Whether it holds a live connection to the server right now.
    pub connected: bool,
    /// When it was last seen (null if never).
    pub last_seen: Option<String>,
}

impl From<&Device> for DeviceView {
    fn from(device: &Device) -> Self {
        let last_seen = rfc3339(device.last_seen_at.as_ref());
        Self {
            device_id: device.device_id.clone(),
            user_id: device.user_id.clone(),
            name: device.name.clone(),
            revoked: device.revoked,
            created_at: rfc3339(device.created_at.as_ref()),
            last_seen_at: last_seen.clone(),
            connected: device.connected,
            last_seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;
    use serde_json::json;

    use super::*;

    #[test]
    fn device_carries_presence_and_both_last_seen_keys() {
        let device = Device {
            device_id: "d-1".into(),
            user_id: "alice".into(),
            name: "laptop".into(),
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            last_seen_at: Some(Timestamp {
                seconds: 1_700_000_060,
                nanos: 0,
            }),
            connected: true,
            ..Device::default()
        };
        let value = serde_json::to_value(DeviceView::from(&device)).unwrap();
        assert_eq!(
            value,
            json!({
                "device_id": "d-1",
                "user_id": "alice",
                "name": "laptop",
                "revoked": false,
                "created_at": "2023-11-14T22:13:20Z",
                "last_seen_at": "2023-11-14T22:14:20Z",
                "connected": true,
                "last_seen": "2023-11-14T22:14:20Z",
            })
        );
    }

    #[test]
    fn never_seen_device_has_null_last_seen() {
        let value = serde_json::to_value(DeviceView::from(&Device::default())).unwrap();
        assert_eq!(value["connected"], false);
        assert_eq!(value["last_seen"], json!(null));
        assert_eq!(value["last_seen_at"], json!(null));
    }
}
