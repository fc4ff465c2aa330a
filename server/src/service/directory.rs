//! A relying party's view of its devices: listing, presence, revocation.

use std::sync::Arc;

use tracing::instrument;

use super::{Caller, ServiceError};
use crate::domain::{ApplicationId, Clock, Device, DeviceId, Notice, UserId};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;

/// How often a revocation is decided again after the device's confirmations
/// changed under it.
const ATTEMPTS: usize = 4;

/// A device and whether it is connected now.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// The stored device.
    pub record: Device,
    /// Whether it holds a live authenticated stream on any replica.
    pub is_connected: bool,
}

/// How long a replica's lease lasts: its streams stop counting this long
/// after it died.
pub const REPLICA_LEASE: std::time::Duration = std::time::Duration::from_secs(30);
/// How often a replica renews its lease.
pub const LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Lists and revokes a relying party's devices.
pub struct DirectoryService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    /// This replica's id in the shared presence table.
    replica: uuid::Uuid,
}

impl DirectoryService {
    /// The directory of `store`, recording presence as `replica`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        replica: uuid::Uuid,
    ) -> Self {
        Self {
            store,
            clock,
            notifier,
            metrics,
            replica,
        }
    }

    /// The caller's devices, optionally of one user, with their presence.
    pub async fn list_devices(
        &self,
        caller: &Caller,
        user: Option<&UserId>,
    ) -> Result<Vec<DeviceView>, ServiceError> {
        let app = caller.application.id;
        let devices = self.store.list_devices(app, user).await?;
        let now = self.clock.now();
        let connected = self.store.connected_devices(app, user, now).await?;
        Ok(devices
            .into_iter()
            .map(|record| DeviceView {
                is_connected: connected.contains(&record.id),
                record,
            })
            .collect())
    }

    /// Records a live stream of `device` held by this replica (presence is
    /// best effort: a failure is logged, the stream goes on).
    pub async fn stream_opened(&self, stream: uuid::Uuid, device: &Device) {
        let opened = self
            .store
            .stream_opened(stream, device.id, self.replica, self.clock.now())
            .await;
        if let Err(error) = opened {
            tracing::warn!(%error, "presence not recorded");
        }
    }

    /// Forgets a stream that ended.
    pub async fn stream_closed(&self, stream: uuid::Uuid) {
        if let Err(error) = self.store.stream_closed(stream).await {
            tracing::warn!(%error, "presence not cleared (the replica's lease ends it)");
        }
    }

    /// Renews this replica's lease and forgets the streams of replicas
    /// whose lease ended (they died without saying so).
    pub async fn renew_presence(&self) -> Result<u64, ServiceError> {
        let now = self.clock.now();
        let lease = crate::domain::clock::span(REPLICA_LEASE);
        self.store.renew_replica(self.replica, now + lease).await?;
        Ok(self.store.forget_dead_replicas(now).await?)
    }

    /// Forgets this replica's streams and lease (a clean stop).
    pub async fn presence_stopped(&self) {
        if let Err(error) = self.store.replica_stopped(self.replica).await {
            tracing::warn!(%error, "presence of this replica not cleared (its lease ends it)");
        }
    }

    /// One of the caller's devices with its presence.
    pub async fn get_device(
        &self,
        caller: &Caller,
        id: DeviceId,
    ) -> Result<DeviceView, ServiceError> {
        self.view(self.find(caller, id).await?).await
    }

    async fn find(&self, caller: &Caller, id: DeviceId) -> Result<Device, ServiceError> {
        self.find_in(caller.application.id, id).await
    }

    /// A device of `application`; another application's is not found.
    async fn find_in(
        &self,
        application: ApplicationId,
        id: DeviceId,
    ) -> Result<Device, ServiceError> {
        self.store
            .find_device(id)
            .await?
            .filter(|d| d.application_id == application)
            .ok_or(ServiceError::NotFound("device"))
    }

    async fn view(&self, record: Device) -> Result<DeviceView, ServiceError> {
        let now = self.clock.now();
        let connected = self
            .store
            .connected_devices(record.application_id, Some(&record.user_id), now)
            .await?;
        Ok(DeviceView {
            is_connected: connected.contains(&record.id),
            record,
        })
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
        let device = self.revoke(caller.application.id, id).await?;
        self.view(device).await
    }

    /// Revokes a device at its own request (made on its authenticated
    /// stream, so only the key holder can): exactly as
    /// [`DirectoryService::revoke_device`].
    #[instrument(skip_all, fields(device_id = %device.id))]
    pub async fn unenroll(&self, device: &Device) -> Result<(), ServiceError> {
        self.revoke(device.application_id, device.id).await?;
        tracing::info!("device unenrolled itself");
        Ok(())
    }

    /// The revocation both entries share; the device as stored after it.
    async fn revoke(
        &self,
        application: ApplicationId,
        id: DeviceId,
    ) -> Result<Device, ServiceError> {
        for _ in 0..ATTEMPTS {
            let device = self.find_in(application, id).await?;
            let held = self.store.held_by(device.id).await?;
            let Some(revocation) = device.revoke(&held, self.clock.now()) else {
                // Already revoked: the streams end all the same.
                self.notifier.publish(Notice::Revoked {
                    device_id: device.id,
                });
                return Ok(device);
            };
            if !self.store.apply_revocation(&revocation).await? {
                continue;
            }
            // The held confirmations are withdrawn first, then the streams
            // end (the revocation outranks a session that fell behind).
            for failure in &revocation.failures {
                self.metrics.transaction_ended(failure.after.state);
                self.notifier.applied(failure);
            }
            self.notifier.publish(revocation.notice.clone());
            self.notifier.publish(Notice::EventsAppended {
                application_id: device.application_id,
            });
            tracing::info!(failed = revocation.failures.len(), "device revoked");
            return self.find_in(application, id).await;
        }
        Err(ServiceError::Contention)
    }
}
