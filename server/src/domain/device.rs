//! Enrolled devices and the rule of revoking one: the device is revoked once,
//! and every confirmation it holds fails with `device_revoked` in the same
//! atomic change.

use chrono::{DateTime, Utc};

use super::transaction::{Change, EventType, NewEvent, Notice};
use super::{ApplicationId, DeviceId, TransactionId, UserId};

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Its application.
    pub application_id: ApplicationId,
    /// The application's display name.
    pub application_name: String,
    /// Its user.
    pub user_id: UserId,
    /// Its display name.
    pub name: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Enrollment time.
    pub created_at: DateTime<Utc>,
    /// Last authenticated stream.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Device {
    /// Whether the device may no longer connect or answer.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Revokes the device. `held` are the open transactions bound to it as
    /// read before; the store applies the revocation only if that is still
    /// exactly the set at commit time. `None` if it was already revoked
    /// (revoking is idempotent and appends nothing the second time).
    pub fn revoke(
        &self,
        held: &[super::transaction::Transaction],
        now: DateTime<Utc>,
    ) -> Option<Revocation> {
        if self.is_revoked() {
            return None;
        }
        let failures = held
            .iter()
            .filter_map(|transaction| transaction.fail_for_revoked(self.id, now).ok())
            .collect();
        Some(Revocation {
            device_id: self.id,
            application_id: self.application_id,
            at: now,
            held: held.iter().map(|t| t.id).collect(),
            event: NewEvent {
                application_id: self.application_id,
                event_type: EventType::DeviceRevoked,
                transaction_id: None,
                user_id: Some(self.user_id.clone()),
                device_id: Some(self.id),
                reason: None,
                fraud_reported: false,
                at: now,
            },
            failures,
            notice: Notice::Revoked { device_id: self.id },
        })
    }
}

/// A device about to be stored.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Its new id.
    pub id: DeviceId,
    /// Its application.
    pub application_id: ApplicationId,
    /// Its user.
    pub user_id: UserId,
    /// Its display name.
    pub name: super::DeviceName,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Enrollment time.
    pub created_at: DateTime<Utc>,
}

impl NewDevice {
    /// The `device.enrolled` event this enrollment appends.
    pub fn event(&self) -> NewEvent {
        NewEvent {
            application_id: self.application_id,
            event_type: EventType::DeviceEnrolled,
            transaction_id: None,
            user_id: Some(self.user_id.clone()),
            device_id: Some(self.id),
            reason: None,
            fraud_reported: false,
            at: self.created_at,
        }
    }
}

/// Revoking one device, applied atomically by the store.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The device.
    pub device_id: DeviceId,
    /// Its application (tenant guard).
    pub application_id: ApplicationId,
    /// When.
    pub at: DateTime<Utc>,
    /// The open transactions bound to the device when this was decided; the
    /// store refuses the revocation if the set changed meanwhile.
    pub held: Vec<TransactionId>,
    /// `device.revoked`.
    pub event: NewEvent,
    /// Each held confirmation failing with `device_revoked`.
    pub failures: Vec<Change>,
    /// Ends the device's streams everywhere.
    pub notice: Notice,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::transaction::tests::{device, scanned_otp};
    use crate::domain::transaction::{Reason, TransactionState};

    #[test]
    fn revoking_fails_every_held_confirmation_and_ends_the_streams() {
        let now = Utc::now();
        let phone = device("alice");
        let held = scanned_otp(&phone, now);
        let revocation = phone.revoke(std::slice::from_ref(&held), now);
        let Some(revocation) = revocation else {
            panic!("an unrevoked device can be revoked");
        };
        assert_eq!(revocation.held, vec![held.id]);
        assert_eq!(revocation.event.event_type, EventType::DeviceRevoked);
        assert_eq!(
            revocation.notice,
            Notice::Revoked {
                device_id: phone.id
            }
        );
        let [failure] = revocation.failures.as_slice() else {
            panic!("one failure per held confirmation");
        };
        assert_eq!(failure.after.state, TransactionState::Failed);
        assert_eq!(failure.after.reason, Some(Reason::DeviceRevoked));
    }

    #[test]
    fn a_revoked_device_is_not_revoked_again() {
        let mut phone = device("alice");
        phone.revoked_at = Some(Utc::now());
        assert!(phone.revoke(&[], Utc::now()).is_none());
    }
}
