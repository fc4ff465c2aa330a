//! The transaction aggregate: the one place where the rules of a
//! transaction's life are decided (SPEC §3).
//!
//! Each operation (`scan`, `decide`, `cancel`, `expire`, failing on
//! revocation, creation) looks at the transaction as read and returns either
//! a typed [`Refusal`] or a [`Change`]: the version it expects, the record it
//! produces, the guards the store must check at commit time, the event to
//! append and the notices to publish. The store applies a change atomically
//! and nothing else; notifications are derived from the applied change.

mod aggregate;
mod change;
mod creation;
mod decision;
mod ending;
mod state;
#[cfg(test)]
pub(crate) mod tests;

pub use aggregate::{Refusal, SignedAnswer, Transaction};
pub use change::{Audience, Change, Guard, NewEvent, Notice};
pub use creation::{NewOtpTransaction, NewPushTransaction};
pub use decision::Decision;
pub use state::{EventType, Reason, TransactionKind, TransactionState, WithdrawReason};
