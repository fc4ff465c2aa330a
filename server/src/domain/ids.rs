//! Typed identifiers: mixing up a device id and a transaction id does not compile.

use std::fmt;

use uuid::Uuid;

use super::input::InputError;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an id read from storage.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// Wraps the 16 id bytes carried inside a secret token.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the text form that crosses the API (hyphenated UUID).
            pub fn parse(text: &str) -> Result<Self, InputError> {
                Uuid::try_parse(text.trim())
                    .map(Self)
                    .map_err(|_| InputError::new($field, "must be a UUID such as 6f1c0e2a-9d7b-4f3e-8a51-2c9e1b7d4a10"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

typed_id!(
    /// An application (relying party, tenant).
    ApplicationId,
    "application_id"
);
typed_id!(
    /// One API key of an application; the public half of the key text.
    ApiKeyId,
    "api_key_id"
);
typed_id!(
    /// One enrolled device.
    DeviceId,
    "device_id"
);
typed_id!(
    /// One enrollment code; the public half of the code text.
    EnrollmentId,
    "enrollment_id"
);
typed_id!(
    /// One authentication transaction; also the public half of its OTP.
    TransactionId,
    "transaction_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_the_display_form() {
        let id = TransactionId::random();
        assert_eq!(TransactionId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn parse_names_the_field_on_garbage() {
        let err = DeviceId::parse("not-a-uuid").err();
        assert_eq!(err.map(|e| e.field), Some("device_id"));
    }
}
