//! `assent-device`: the device side of Assent as a library. An app (kiosk
//! software, a desktop or phone app, the `assent-agent` daemon) enrolls a
//! device, keeps its Ed25519 key, holds the signed stream to the server and
//! answers login confirmations through a [`Handler`] it implements.
//!
//! The flow an app developer knows from other device SDKs:
//! 1. [`enroll`] with the code the application showed the user;
//! 2. [`Device::start`] with a [`Handler`]; the device connects, reconnects
//!    with back-off across the server list, and makes every decision
//!    exactly once (a decision the server did not acknowledge is re-sent
//!    after a reconnect);
//! 3. [`DeviceHandle::submit_otp`] with the OTP scanned from the login page
//!    (or [`otp_from_image`] on a picture of it): the handler's
//!    [`Handler::confirm`] is asked, and the call returns the outcome — the
//!    seed's onSuccess / onError;
//! 4. pushes arrive by themselves and go to the same handler; withdrawals,
//!    decisions and connection changes are reported to it.
//!
//! ```no_run
//! use assent_device::{Answer, Device, DeviceConfig, Handler, Request, Withdrawn};
//!
//! struct AcceptAll;
//!
//! impl Handler for AcceptAll {
//!     async fn confirm(&self, request: Request, _withdrawn: Withdrawn) -> Answer {
//!         println!("Log in to {}: {}?", request.application_name, request.message);
//!         Answer::ACCEPT
//!     }
//! }
//!
//! # async fn demo() -> Result<(), assent_device::Error> {
//! let config = DeviceConfig::new("/tmp/my-device".into(), "http://127.0.0.1:50051");
//! assent_device::enroll(&config, "CODE-FROM-THE-APPLICATION", "kiosk 7", false).await?;
//! let device = Device::start(config, AcceptAll)?;
//! let outcome = device.handle().submit_otp("OTP-FROM-THE-QR-CODE").await;
//! println!("{}", outcome.summary(None));
//! device.stop().await
//! # }
//! ```
//!
//! Where things live: [`client`] (the event loop, [`Device`],
//! [`DeviceHandle`]), `link`/`messages` inside it; `connection` (endpoint,
//! TLS, challenge-response), `backoff`, `identity` (signing), `ledger` (who
//! waits for what across reconnects), [`credentials`] (the enrollment on
//! disk), `enrollment`, [`request`] (a confirmation as a handler sees it),
//! [`answer`], [`handler`], [`outcome`], `otp` (OTP text), [`qr`] (QR
//! images), [`error`].

pub mod answer;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod handler;
pub mod key_store;
pub mod otp;
pub mod outcome;
pub mod qr;
pub mod request;

mod backoff;
mod connection;
mod enrollment;
mod identity;
mod ledger;
mod number;
mod unenroll;

pub use answer::{Answer, DenyReason};
pub use client::{Device, DeviceHandle, Status};
pub use config::{ClientIdentity, DEFAULT_SERVER, DeviceConfig, MAX_DEVICE_NAME_CHARS};
pub use credentials::DeviceProfile;
pub use enrollment::{Enrollment, enroll};
pub use error::Error;
pub use handler::{ConnectionState, Handler, Withdrawn};
pub use key_store::{FileKeyStore, KeyStore, KeyStoreError};
pub use outcome::OtpOutcome;
pub use qr::{EnrollmentQr, enrollment_from_image, otp_from_image};
pub use request::{Kind, NumberChoices, Request};
pub use unenroll::{enrollments, forget, unenroll};
