//! Fan-out of applied changes to the tasks that care: subscribers of an
//! application's event log and connected device sessions.
//!
//! There is one notification type, the domain's [`Notice`]; a [`Notifier`]
//! publishes what a [`Change`] decided once the store has applied it, and
//! nothing else wakes anyone. The events table stays the truth: a wake-up
//! only says "look again". A notifier built with [`Notifier::with_relay`]
//! also hands every notice to a relay, which [`postgres`] carries to the
//! other replicas; what arrives from them is delivered locally only
//! ([`Notifier::deliver_remote`]).
//!
//! A notice a device must act on (a withdrawal, a push, a revocation) is
//! never dropped: a revocation ends the device's sessions at once, and a
//! session whose bounded inbox is full is ended (its agent reconnects and
//! re-reads what is open) rather than left to act on stale authority.

mod hub;
mod listeners;
mod outcomes;
pub mod postgres;
mod sessions;
#[cfg(test)]
mod tests;

pub use hub::{Notifier, RelayCounts};
pub use listeners::{LISTENER_IDLE, Listening};
pub use outcomes::OutcomeWatch;
pub use sessions::{Delivery, DeviceRegistration, SESSION_INBOX, SessionEnd};
