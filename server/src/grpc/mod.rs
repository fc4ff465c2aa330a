//! tonic adapters: decode → call one use case → encode. No SQL, no crypto,
//! no business branching here; `status` is the one error → Status table,
//! `connection` the accepted connections (closable by a session).

pub mod admission;
pub mod connection;
pub(crate) mod convert;
mod device;
pub mod limits;
mod relying_party;
pub mod status;

pub use device::DeviceHandler;
pub use relying_party::RelyingPartyHandler;

pub(crate) use crate::secure_rng;
