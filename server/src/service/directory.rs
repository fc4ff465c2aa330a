//! A relying party's view of its devices: listing, presence, revocation.

use std::sync::Arc;

use tracing::instrument;

use super::{Caller, Deps, ServiceError};
use crate::domain::{Device, DeviceId, Notice, UserId};

/// How often a revocation is decided again after the device's confirmations
/// changed under it.
const ATTEMPTS: usize = 4;

/// A device and whether it is connected now.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// The stored device.
    pub record: Device,
    /// Whether it holds a live authenticated stream on this server.
    pub is_connected: bool,
}

/// Lists and revokes a relying party's devices.
pub struct DirectoryService {
    deps: Arc<Deps>,
}

impl DirectoryService {
    /// The use case over shared dependencies.
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }

    /// The caller's devices, optionally of one user, with their presence.
    pub async fn list_devices(
        &self,
        caller: &Caller,
        user: Option<&UserId>,
    ) -> Result<Vec<DeviceView>, ServiceError> {
        let devices = self
            .deps
            .store
            .list_devices(caller.application.id, user)
            .await?;
        Ok(devices.into_iter().map(|d| self.view(d)).collect())
    }

    /// One of the caller's devices with its presence.
    pub async fn get_device(
        &self,
        caller: &Caller,
        id: DeviceId,
    ) -> Result<DeviceView, ServiceError> {
        Ok(self.view(self.find(caller, id).await?))
    }

    async fn find(&self, caller: &Caller, id: DeviceId) -> Result<Device, ServiceError> {
        self.deps
            .store
            .find_device(id)
            .await?
            .filter(|d| d.application_id == caller.application.id)
            .ok_or(ServiceError::NotFound("device"))
    }

    fn view(&self, record: Device) -> DeviceView {
        DeviceView {
            is_connected: self.deps.notifier.is_connected(record.id),
            record,
        }
    }

    /// Revokes a device at once: its held confirmations fail with
    /// `device_revoked` in the same atomic write, its streams end, and no
    /// decision of it commits afterwards.
    #[instrument(skip_all, fields(device_id = %id))]
    pub async fn revoke_device(
        &self,
        caller: &Caller,
        id: DeviceId,
    ) -> Result<DeviceView, ServiceError> {
        for _ in 0..ATTEMPTS {
            let device = self.find(caller, id).await?;
            let held = self.deps.store.held_by(device.id).await?;
            let Some(revocation) = device.revoke(&held, self.deps.clock.now()) else {
                // Already revoked: the streams end all the same.
                self.deps.notifier.publish(Notice::Revoked {
                    device_id: device.id,
                });
                return Ok(self.view(device));
            };
            if !self.deps.store.apply_revocation(&revocation).await? {
                continue;
            }
            // The held confirmations are withdrawn first, then the streams
            // end (the revocation outranks a session that fell behind).
            for failure in &revocation.failures {
                self.deps.metrics.transaction_ended(failure.after.state);
                self.deps.notifier.applied(failure);
            }
            self.deps.notifier.publish(revocation.notice.clone());
            self.deps.notifier.publish(Notice::EventsAppended {
                application_id: device.application_id,
            });
            tracing::info!(failed = revocation.failures.len(), "device revoked");
            return Ok(self.view(self.find(caller, id).await?));
        }
        Err(ServiceError::Contention)
    }
}
