//! What the device sends on an authenticated stream, handed to one use
//! case each.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{DeviceSession, ToDevice};
use crate::domain::{Device, secure_rng};
use crate::service::{DecisionInput, LookupStanding, ServiceError};

/// A refusal that keeps the stream open.
pub(super) fn rejection(request_id: u64, transaction_id: &str, error: ServiceError) -> ToDevice {
    ToDevice::Rejected {
        request_id,
        transaction_id: transaction_id.to_owned(),
        error,
    }
}

impl DeviceSession {
    /// An OTP handed in: a confirmation request, or a rejection.
    pub(super) async fn submit_otp(&self, device: &Device, request_id: u64, otp: &str) -> ToDevice {
        let standing = if self.lookups.load(Ordering::Relaxed) {
            LookupStanding::Clear
        } else {
            LookupStanding::Unknown
        };
        let scanned = self
            .services
            .confirmations
            .submit_otp_from(device, otp, &mut secure_rng(), standing)
            .await;
        self.lookups.store(scanned.is_ok(), Ordering::Relaxed);
        match scanned {
            Ok(transaction) => {
                self.remember(&transaction);
                ToDevice::Confirm {
                    transaction: Arc::new(transaction),
                    application_name: Arc::from(device.application_name.as_str()),
                    request_id,
                }
            }
            Err(error) => rejection(request_id, "", error),
        }
    }

    /// A signed decision: its result, or a rejection.
    pub(super) async fn decide(&self, device: &Device, input: DecisionInput) -> ToDevice {
        let named = input.transaction_id.to_string();
        let held = self.take_held(input.transaction_id);
        let decided = self
            .services
            .confirmations
            .decide_held(device, input, held)
            .await;
        match decided {
            Ok(outcome) => ToDevice::Decided {
                transaction: Box::new(outcome.transaction),
                applied: outcome.applied,
            },
            Err(error) => rejection(0, &named, error),
        }
    }
}
