//! tonic adapters: decode → call one use case → encode. No SQL, no crypto,
//! no business branching here; `status` is the one error → Status table,
//! `connection` the accepted connections and their bounds, `transport` the
//! HTTP/2 server whose streams a session can reset alone.

pub mod admission;
pub mod connection;
pub(crate) mod convert;
mod device;
pub mod limits;
mod relying_party;
pub mod status;
pub mod tls;
pub mod transport;

pub use device::DeviceHandler;
pub use relying_party::RelyingPartyHandler;

pub(crate) use crate::domain::secure_rng;
