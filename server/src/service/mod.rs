//! Use cases, one type per use case, each given only the collaborators it
//! calls: the store, the clock, the one write path of transactions
//! ([`TransactionWriter`]), the [`KeyCache`], the [`CreationLimiter`], the
//! [`signer::EventSigner`], the notifier and the counters. Each takes typed
//! input, reads the time from the clock, lets the domain decide, applies
//! the decided change through the writer, and returns records or a
//! [`ServiceError`] whose reason code is one of [`reason`]; none knows
//! about gRPC.

pub mod admin;
mod audit;
pub mod ciba;
pub mod ciba_clients;
mod ciba_notify;
mod ciba_tokens;
mod ciba_types;
mod confirmations;
mod creation_limiter;
mod directory;
mod enrollment;
mod error;
mod events;
mod feed;
mod key_cache;
mod keys;
mod limits;
mod logins;
mod push;
pub mod reason;
mod services;
pub mod signer;
mod throttle;
mod upkeep;
mod webhook_client;
mod webhook_delivery;
pub mod webhooks;
mod writer;

pub use audit::{AuditReport, AuditService, Finding};
pub use ciba::{CibaError, CibaService};
pub use ciba_notify::{CibaNotifier, NotifySettings};
pub use ciba_tokens::IdTokenSigner;
pub use confirmations::{ConfirmationService, DecisionInput, DecisionOutcome, LookupStanding};
pub use creation_limiter::CreationLimiter;
pub use directory::{DeviceView, DirectoryService, LEASE_RENEWAL, REPLICA_LEASE};
pub use enrollment::{EnrollInput, EnrollmentService};
pub use error::{Refused, RefusedExt, ServiceError};
pub use events::{EventService, StreamSlot};
pub use key_cache::{KEY_CACHE_TTL, KeyCache};
pub use keys::{Caller, KeyService};
pub use limits::ServiceLimits;
pub use logins::{CreateOtpInput, CreatedOtp, LoginService, MAX_WAIT, TransactionView};
pub use push::{CreatePushInput, CreatedPush, PushService};
pub use services::Services;
pub use signer::{EventSigner, SignedEvent};
pub use throttle::{ReplicaShare, SharedBuckets, SourceThrottle};
pub use upkeep::UpkeepService;
pub use webhook_delivery::{WebhookDelivery, WebhookSettings};
pub use writer::{NotApplied, TransactionWriter};
