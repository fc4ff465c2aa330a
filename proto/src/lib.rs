//! The `assent.v1` API shared by the server, the device agent and the
//! relying-party command line: generated messages and gRPC stubs (module
//! [`v1`]), the encoded descriptor set for server reflection, and
//! ([`signing`]) the canonical byte strings a device signs, which server and
//! agent must build identically.

pub mod codec;
pub mod enrollment_qr;
pub mod report;
pub mod signing;
pub mod tls;
pub mod token;
pub mod verify;

/// Generated `assent.v1` messages, clients and servers.
#[allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]
pub mod v1 {
    tonic::include_proto!("assent.v1");
}

/// The encoded `FileDescriptorSet` of every `assent.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("assent_descriptor");

impl v1::TransactionState {
    /// The SPEC name of the state (`PENDING`, `ACCEPTED`, …).
    pub fn spec_name(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::Pending => "PENDING",
            Self::Scanned => "SCANNED",
            Self::Accepted => "ACCEPTED",
            Self::Denied => "DENIED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
        }
    }
}
