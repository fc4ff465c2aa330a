//! Enrollment codes, devices, their revocation and their OTP strikes: the
//! contract and its one implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Database;

use super::codec::StoredTime;
use super::engine::{Engine, apply_on, connection};
use super::params::{StrikeAndLookupParams, StrikeParams};
use super::queries::Reserve;
use super::rows::{DeviceRow, ReservedRow, TransactionRow, convert};
use super::{EnrollmentRecord, NewEnrollment, StoreError, StoreResult, TransactionStore};
use crate::domain::rate::StrikeWindow;
use crate::domain::{
    ApplicationId, Device, DeviceId, EnrollmentId, NewDevice, NewEvent, Revocation, SecretHash,
    Transaction, TransactionId, UserId,
};

/// Enrollment codes and devices.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new enrollment code (its hash).
    async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()>;
    /// Marks the code used and returns it, unless it was already used or
    /// never existed. Single use holds across concurrent attempts.
    async fn consume_enrollment(
        &self,
        id: EnrollmentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<EnrollmentRecord>>;
    /// Stores a new device and appends its `device.enrolled` event.
    async fn insert_device(&self, device: &NewDevice) -> StoreResult<Device>;
    /// Any device by id (the caller checks its application).
    async fn find_device(&self, id: DeviceId) -> StoreResult<Option<Device>>;
    /// An application's devices, optionally of one user, oldest first.
    async fn list_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
    ) -> StoreResult<Vec<Device>>;
    /// Records that the device is connected; returns it as it is now
    /// (`None` if it no longer exists).
    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<Option<Device>>;
    /// The open transactions bound to the device, whatever their expiry.
    async fn held_by(&self, device: DeviceId) -> StoreResult<Vec<Transaction>>;
    /// Applies a revocation atomically: the device is revoked (if it was
    /// not already), its `held` set is still exactly the open transactions
    /// bound to it, every failure applies, and the events are appended.
    /// `false` if any of that did not hold; nothing was changed then.
    async fn apply_revocation(&self, revocation: &Revocation) -> StoreResult<bool>;
    /// Reserves one OTP lookup of the device, atomically, by the domain's
    /// strike `window`: a lookup matching an open OTP takes no strike, any
    /// other takes one. Once allowed, the transaction `lookup` names is
    /// read with it (in the same round trip where the engine can).
    async fn reserve_otp_attempt(
        &self,
        device: DeviceId,
        window: &StrikeWindow,
        lookup: Option<&OtpLookup>,
    ) -> StoreResult<Reservation>;
}

/// An OTP handed in: the transaction it names and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpLookup {
    /// The device's application (an OTP of another is unknown to it).
    pub application_id: ApplicationId,
    /// The transaction the OTP names.
    pub transaction_id: TransactionId,
    /// SHA-256 of its secret part.
    pub otp_hash: SecretHash,
}

/// What reserving an OTP lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The device has used up its strikes; nothing was reserved or read.
    CoolingOff,
    /// The lookup may go ahead (a strike was taken unless it matched an
    /// open OTP); the transaction looked up, if it exists.
    Allowed(Option<Box<Transaction>>),
}

impl Reservation {
    /// Whether a strike was taken.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }
}

type Connection<E> = <<E as Engine>::Db as Database>::Connection;

/// Appends a device event on `conn`.
async fn append_device_event<E: Engine>(conn: &mut Connection<E>, e: &NewEvent) -> StoreResult<()> {
    let row = (
        e.application_id,
        e.event_type,
        e.user_id.clone(),
        e.device_id,
        StoredTime(e.at),
    );
    let q = &E::queries().dialect;
    q.append_device_event
        .execute(conn, row)
        .await
        .map_err(E::error)?;
    Ok(())
}

/// The device with this id, read on `conn`.
async fn device_on<E: Engine>(
    conn: &mut Connection<E>,
    id: DeviceId,
) -> StoreResult<Option<Device>> {
    let row: Option<DeviceRow> = E::queries()
        .find_device
        .fetch_optional(conn, (id,))
        .await
        .map_err(E::error)?;
    row.map(TryInto::try_into).transpose()
}

#[async_trait]
impl<E: Engine> DeviceStore for E {
    async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            enrollment.id,
            enrollment.application_id,
            enrollment.user_id.clone(),
            enrollment.secret_hash.as_bytes().to_vec(),
            StoredTime(enrollment.created_at),
            StoredTime(enrollment.expires_at),
        );
        let q = E::queries();
        q.insert_enrollment
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn consume_enrollment(
        &self,
        id: EnrollmentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<EnrollmentRecord>> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row: Option<(ApplicationId, UserId, Vec<u8>, StoredTime)> = E::queries()
            .consume_enrollment
            .fetch_optional(&mut *conn, (id, StoredTime(now)))
            .await
            .map_err(E::error)?;
        row.map(|(application_id, user_id, hash, expires_at)| {
            Ok(EnrollmentRecord {
                application_id,
                user_id,
                secret_hash: SecretHash::from_slice(&hash)
                    .ok_or_else(|| StoreError::Corrupt(format!("enrollment {id}: bad hash")))?,
                expires_at: expires_at.0,
            })
        })
        .transpose()
    }

    async fn insert_device(&self, device: &NewDevice) -> StoreResult<Device> {
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let row = (
            device.id,
            device.application_id,
            device.user_id.clone(),
            device.name.as_str().to_owned(),
            device.public_key.to_vec(),
            StoredTime(device.created_at),
        );
        let q = E::queries();
        q.insert_device
            .execute(&mut *tx, row)
            .await
            .map_err(E::error)?;
        append_device_event::<E>(&mut tx, &device.event()).await?;
        let stored = device_on::<E>(&mut tx, device.id).await?;
        tx.commit().await.map_err(E::error)?;
        stored
            .ok_or_else(|| StoreError::Corrupt(format!("device {} vanished on insert", device.id)))
    }

    async fn find_device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        let mut conn = connection::<E>(self.reader()).await?;
        device_on::<E>(&mut conn, id).await
    }

    async fn list_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
    ) -> StoreResult<Vec<Device>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<DeviceRow> = E::queries()
            .list_devices
            .fetch_all(&mut *conn, (app, user.cloned()))
            .await
            .map_err(E::error)?;
        convert(rows)
    }

    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<Option<Device>> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = E::queries();
        q.touch_device
            .execute(&mut *conn, (id, StoredTime(now)))
            .await
            .map_err(E::error)?;
        device_on::<E>(&mut conn, id).await
    }

    async fn held_by(&self, device: DeviceId) -> StoreResult<Vec<Transaction>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<TransactionRow> = E::queries()
            .held_by
            .fetch_all(&mut *conn, (device,))
            .await
            .map_err(E::error)?;
        convert(rows)
    }

    async fn apply_revocation(&self, revocation: &Revocation) -> StoreResult<bool> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let row = (
            revocation.device_id,
            revocation.application_id,
            StoredTime(revocation.at),
        );
        if q.revoke_device
            .execute(&mut *tx, row)
            .await
            .map_err(E::error)?
            == 0
        {
            return Ok(false);
        }
        // A change of the device that got the row before this revocation
        // but a newer position (it started after this transaction took its
        // id) committed first: its event must not appear after the
        // revocation's. Start again with a newer id. (Only where positions
        // follow transaction ids rather than commit order.)
        if let Some(overtaken) = &q.dialect.overtaken_by_device_event {
            let ids = (revocation.device_id, revocation.application_id);
            let (overtaken,): (bool,) =
                overtaken.fetch_one(&mut *tx, ids).await.map_err(E::error)?;
            if overtaken {
                return Ok(false);
            }
        }
        append_device_event::<E>(&mut tx, &revocation.event).await?;
        // With the device row written, no scan or decision of the device
        // can commit any more: the held set read now is final, and must be
        // the one the domain decided on.
        let held: Vec<(TransactionId,)> = q
            .held_ids
            .fetch_all(&mut *tx, (revocation.device_id,))
            .await
            .map_err(E::error)?;
        let mut expected = revocation.held.clone();
        expected.sort();
        if !held.iter().map(|(id,)| *id).eq(expected) {
            return Ok(false);
        }
        for failure in &revocation.failures {
            if !apply_on::<E>(&mut tx, failure).await? {
                return Ok(false);
            }
        }
        tx.commit().await.map_err(E::error)?;
        Ok(true)
    }

    async fn reserve_otp_attempt(
        &self,
        device: DeviceId,
        window: &StrikeWindow,
        lookup: Option<&OtpLookup>,
    ) -> StoreResult<Reservation> {
        let mut conn = connection::<E>(self.writer()).await?;
        let strike = StrikeParams { device, window };
        let params = StrikeAndLookupParams { strike, lookup };
        match &E::queries().dialect.reserve_otp_attempt {
            Reserve::AndFind(reserve) => {
                let row: ReservedRow = reserve
                    .fetch_one(&mut *conn, params)
                    .await
                    .map_err(E::error)?;
                if !row.allowed {
                    return Ok(Reservation::CoolingOff);
                }
                let found = row.transaction.map(Transaction::try_from).transpose()?;
                Ok(Reservation::Allowed(found.map(Box::new)))
            }
            Reserve::Alone(reserve) => {
                if reserve
                    .execute(&mut *conn, params)
                    .await
                    .map_err(E::error)?
                    == 0
                {
                    return Ok(Reservation::CoolingOff);
                }
                drop(conn);
                Ok(Reservation::Allowed(match lookup {
                    Some(l) => self
                        .find_transaction(l.application_id, l.transaction_id)
                        .await?
                        .map(Box::new),
                    None => None,
                }))
            }
        }
    }
}
