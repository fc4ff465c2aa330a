//! Pure types and rules: typed ids, parsed inputs, secrets, the transaction
//! aggregate (every rule of a transaction's life), devices and revocation,
//! push fatigue, rate limits, and the clock as an input.
//!
//! Nothing here does I/O or knows about tonic, sqlx or tokio; `.ci/run`
//! greps to keep it that way. Functions that need the time or randomness take
//! them as arguments.

pub mod ciba;
pub mod clock;
pub mod device;
pub mod ids;
pub mod input;
#[cfg(test)]
mod properties;
pub mod push;
pub mod random;
pub mod rate;
pub mod secret;
pub mod text;
pub mod transaction;
pub mod webhook;

pub use clock::{Clock, ManualClock, SystemClock};
pub use device::{Device, NewDevice, Revocation};
pub use ids::{ApiKeyId, ApplicationId, DeviceId, EnrollmentId, TransactionId};
pub use input::{Binding, Context, DenyReason, DeviceName, InputError, Message, UserId};
pub use random::secure_rng;
pub use secret::{ApiKey, EnrollmentCode, Otp, SecretHash};
pub use transaction::{
    Change, EventType, NewEvent, Notice, Reason, Refusal, Transaction, TransactionKind,
    TransactionState,
};
