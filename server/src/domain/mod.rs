//! Pure types and rules: typed ids, parsed inputs, secrets, transaction
//! states and transitions, rate limits.
//!
//! Nothing here does I/O or knows about tonic, sqlx or tokio; `.ci/run`
//! greps to keep it that way. Functions that need the time or randomness take
//! them as arguments.

pub mod ids;
pub mod input;
pub mod push;
pub mod rate;
pub mod secret;
pub mod transaction;

pub use ids::{ApiKeyId, ApplicationId, DeviceId, EnrollmentId, TransactionId};
pub use input::{Context, DenyReason, DeviceName, InputError, Message, UserId};
pub use secret::{ApiKey, EnrollmentCode, Otp, SecretHash};
pub use transaction::{EventType, TransactionKind, TransactionState};
