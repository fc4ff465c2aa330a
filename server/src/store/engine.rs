//! The storage logic, written once: [`sql_engine!`] implements every store
//! trait for an engine from its SQL text alone. Each engine module provides
//! a `queries` module with the same constant names, a `writer()` and a
//! `reader()` pool, and `db_error` (its SQLSTATE mapping); the rows, the
//! type mapping ([`super::codec`]) and the parameter order
//! ([`super::rows`]) are shared.
//!
//! A change is applied by running the engine's statements for it in order
//! (`queries::APPLY_INSERT` or `queries::APPLY_UPDATE`), all bound to the same
//! parameters; a statement that affects no row means the compare-and-set or
//! a guard failed, and nothing is kept. PostgreSQL does it in one statement,
//! SQLite in a write transaction of two.

/// Implements the store traits for `$store` over `$db`, with SQL text from
/// the module `$q`.
macro_rules! sql_engine {
    ($store:ty, $db:ty, $q:path) => {
        mod engine_impl {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use $q as q;

            use super::db_error;
            use crate::domain::{
                ApiKeyId, ApplicationId, Change, Device, DeviceId, EnrollmentId, NewDevice,
                NewEvent, Revocation, SecretHash, Transaction, TransactionId, UserId,
            };
            use crate::store::codec::{StoredTime, StoredUuid};
            use crate::store::rows::{
                CheckpointRow, DeviceRow, EventRow, ServerKeyRow, TransactionRow, bind_answer,
                bind_event, bind_guard, bind_transaction, convert,
            };
            use crate::store::{
                ApiKeyInfo, ApiKeyRecord, Application, ApplicationStore, Checkpoint,
                CheckpointStore, DeviceStore, EnrollmentRecord, EventHead, EventRecord, EventStore,
                NewApiKey, NewEnrollment, PresenceStore, Reservation, ServerKeyRecord,
                ServerKeyStore, StoreError, StoreResult, TransactionStore,
            };
            use sqlx::{FromRow, Row};

            type Connection = <$db as sqlx::Database>::Connection;

            /// Pauses while waiting for older transactions to finish before
            /// reading events: 1 ms, doubling, about two seconds in all (a
            /// catalog change elsewhere in the cluster, such as CREATE
            /// DATABASE, can hold the horizon back that long).
            const HORIZON_PAUSES: [std::time::Duration; 12] = [
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(2),
                std::time::Duration::from_millis(4),
                std::time::Duration::from_millis(8),
                std::time::Duration::from_millis(16),
                std::time::Duration::from_millis(32),
                std::time::Duration::from_millis(64),
                std::time::Duration::from_millis(128),
                std::time::Duration::from_millis(256),
                std::time::Duration::from_millis(512),
                std::time::Duration::from_millis(1024),
            ];

            /// Runs one change's statements on `conn`; whether every one of
            /// them affected a row.
            async fn apply_on(conn: &mut Connection, change: &Change) -> StoreResult<bool> {
                let statements = if change.expected.is_none() {
                    q::APPLY_INSERT
                } else {
                    q::APPLY_UPDATE
                };
                // The first statement is the compare-and-set: if it writes
                // nothing, the rest is not run.
                for (n, &sql) in statements.iter().enumerate() {
                    let query = bind_transaction!(sqlx::query(sql), &change.after);
                    let query = bind_guard!(bind_event!(query, &change.event), change);
                    let query = bind_answer!(query, &change.after);
                    let done = query.execute(&mut *conn).await.map_err(db_error)?;
                    if n == 0 && done.rows_affected() == 0 {
                        return Ok(false);
                    }
                }
                Ok(true)
            }

            /// Appends a device event.
            async fn append_device_event(
                conn: &mut Connection,
                event: &NewEvent,
            ) -> StoreResult<()> {
                sqlx::query(q::APPEND_DEVICE_EVENT)
                    .bind(event.application_id)
                    .bind(event.event_type)
                    .bind(event.user_id.clone())
                    .bind(event.device_id)
                    .bind(StoredTime(event.at))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn device_on(conn: &mut Connection, id: DeviceId) -> StoreResult<Option<Device>> {
                let row: Option<DeviceRow> = sqlx::query_as(q::FIND_DEVICE)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_error)?;
                row.map(TryInto::try_into).transpose()
            }

            #[async_trait]
            impl ApplicationStore for $store {
                async fn create_application(
                    &self,
                    app: &Application,
                    key: &NewApiKey,
                ) -> StoreResult<()> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    sqlx::query(q::INSERT_APPLICATION)
                        .bind(app.id)
                        .bind(app.name.clone())
                        .bind(StoredTime(app.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    sqlx::query(q::INSERT_API_KEY)
                        .bind(key.id)
                        .bind(app.id)
                        .bind(key.secret_hash.as_bytes().to_vec())
                        .bind(StoredTime(key.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)
                }

                async fn list_applications(&self) -> StoreResult<Vec<Application>> {
                    let rows: Vec<(ApplicationId, String, StoredTime)> =
                        sqlx::query_as(q::LIST_APPLICATIONS)
                            .fetch_all(self.reader())
                            .await
                            .map_err(db_error)?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, name, created_at)| Application {
                            id,
                            name,
                            created_at: created_at.0,
                        })
                        .collect())
                }

                async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyRecord>> {
                    let row: Option<(Vec<u8>, ApplicationId, String, StoredTime)> =
                        sqlx::query_as(q::FIND_API_KEY)
                            .bind(id)
                            .fetch_optional(self.reader())
                            .await
                            .map_err(db_error)?;
                    row.map(|(hash, app_id, name, created_at)| {
                        Ok(ApiKeyRecord {
                            id,
                            secret_hash: SecretHash::from_slice(&hash).ok_or_else(|| {
                                StoreError::Corrupt(format!("api key {id}: bad hash"))
                            })?,
                            application: Application {
                                id: app_id,
                                name,
                                created_at: created_at.0,
                            },
                        })
                    })
                    .transpose()
                }
            }

            #[async_trait]
            impl crate::store::ApiKeyStore for $store {
                async fn add_api_key(
                    &self,
                    app: ApplicationId,
                    key: &NewApiKey,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(q::ADD_API_KEY)
                        .bind(key.id)
                        .bind(app)
                        .bind(key.secret_hash.as_bytes().to_vec())
                        .bind(StoredTime(key.created_at))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn list_api_keys(&self, app: ApplicationId) -> StoreResult<Vec<ApiKeyInfo>> {
                    let rows: Vec<(ApiKeyId, StoredTime, Option<StoredTime>)> =
                        sqlx::query_as(q::LIST_API_KEYS)
                            .bind(app)
                            .fetch_all(self.reader())
                            .await
                            .map_err(db_error)?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, created_at, revoked_at)| ApiKeyInfo {
                            id,
                            created_at: created_at.0,
                            revoked_at: revoked_at.map(|t| t.0),
                        })
                        .collect())
                }

                async fn revoke_api_key(
                    &self,
                    app: ApplicationId,
                    id: ApiKeyId,
                    now: DateTime<Utc>,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(q::REVOKE_API_KEY)
                        .bind(app)
                        .bind(id)
                        .bind(StoredTime(now))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected() == 1)
                }
            }

            #[async_trait]
            impl DeviceStore for $store {
                async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()> {
                    sqlx::query(q::INSERT_ENROLLMENT)
                        .bind(enrollment.id)
                        .bind(enrollment.application_id)
                        .bind(enrollment.user_id.clone())
                        .bind(enrollment.secret_hash.as_bytes().to_vec())
                        .bind(StoredTime(enrollment.created_at))
                        .bind(StoredTime(enrollment.expires_at))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn consume_enrollment(
                    &self,
                    id: EnrollmentId,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<EnrollmentRecord>> {
                    let row: Option<(ApplicationId, UserId, Vec<u8>, StoredTime)> =
                        sqlx::query_as(q::CONSUME_ENROLLMENT)
                            .bind(id)
                            .bind(StoredTime(now))
                            .fetch_optional(self.writer())
                            .await
                            .map_err(db_error)?;
                    row.map(|(application_id, user_id, hash, expires_at)| {
                        Ok(EnrollmentRecord {
                            application_id,
                            user_id,
                            secret_hash: SecretHash::from_slice(&hash).ok_or_else(|| {
                                StoreError::Corrupt(format!("enrollment {id}: bad hash"))
                            })?,
                            expires_at: expires_at.0,
                        })
                    })
                    .transpose()
                }

                async fn insert_device(&self, device: &NewDevice) -> StoreResult<Device> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    sqlx::query(q::INSERT_DEVICE)
                        .bind(device.id)
                        .bind(device.application_id)
                        .bind(device.user_id.clone())
                        .bind(device.name.as_str().to_owned())
                        .bind(device.public_key.to_vec())
                        .bind(StoredTime(device.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    append_device_event(&mut tx, &device.event()).await?;
                    let stored = device_on(&mut tx, device.id).await?;
                    tx.commit().await.map_err(db_error)?;
                    stored.ok_or_else(|| {
                        StoreError::Corrupt(format!("device {} vanished on insert", device.id))
                    })
                }

                async fn find_device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
                    let mut conn = self.reader().acquire().await.map_err(db_error)?;
                    device_on(&mut conn, id).await
                }

                async fn list_devices(
                    &self,
                    app: ApplicationId,
                    user: Option<&UserId>,
                ) -> StoreResult<Vec<Device>> {
                    let rows: Vec<DeviceRow> = sqlx::query_as(q::LIST_DEVICES)
                        .bind(app)
                        .bind(user.cloned())
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    convert(rows)
                }

                async fn touch_device(
                    &self,
                    id: DeviceId,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<Device>> {
                    sqlx::query(q::TOUCH_DEVICE)
                        .bind(id)
                        .bind(StoredTime(now))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    let mut conn = self.writer().acquire().await.map_err(db_error)?;
                    device_on(&mut conn, id).await
                }

                async fn held_by(&self, device: DeviceId) -> StoreResult<Vec<Transaction>> {
                    let rows: Vec<TransactionRow> = sqlx::query_as(q::HELD_BY)
                        .bind(device)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    convert(rows)
                }

                async fn apply_revocation(&self, revocation: &Revocation) -> StoreResult<bool> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    let revoked = sqlx::query(q::REVOKE_DEVICE)
                        .bind(revocation.device_id)
                        .bind(revocation.application_id)
                        .bind(StoredTime(revocation.at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if revoked.rows_affected() == 0 {
                        return Ok(false);
                    }
                    // A change of the device that got the row before this
                    // revocation but a newer position (it started after this
                    // transaction took its id) committed first: its event
                    // must not appear after the revocation's. Start again
                    // with a newer id.
                    let overtaken: bool = sqlx::query_scalar(q::OVERTAKEN_BY_DEVICE_EVENT)
                        .bind(revocation.device_id)
                        .bind(revocation.application_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if overtaken {
                        return Ok(false);
                    }
                    append_device_event(&mut tx, &revocation.event).await?;
                    // With the device row written, no scan or decision of
                    // the device can commit any more: the held set read now
                    // is final, and must be the one the domain decided on.
                    let held: Vec<TransactionId> = sqlx::query_scalar(q::HELD_IDS)
                        .bind(revocation.device_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    let mut expected = revocation.held.clone();
                    expected.sort();
                    if held != expected {
                        return Ok(false);
                    }
                    for failure in &revocation.failures {
                        if !apply_on(&mut tx, failure).await? {
                            return Ok(false);
                        }
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(true)
                }

                async fn reserve_otp_attempt(
                    &self,
                    device: DeviceId,
                    limit: i64,
                    window_opened_before: DateTime<Utc>,
                    now: DateTime<Utc>,
                    lookup: Option<(ApplicationId, TransactionId)>,
                ) -> StoreResult<Reservation> {
                    let query = sqlx::query(q::RESERVE_OTP_ATTEMPT)
                        .bind(device)
                        .bind(limit)
                        .bind(StoredTime(window_opened_before))
                        .bind(StoredTime(now));
                    if q::RESERVE_FINDS {
                        let row = query
                            .bind(lookup.map(|(_, id)| id))
                            .bind(lookup.map(|(app, _)| app))
                            .fetch_one(self.writer())
                            .await
                            .map_err(db_error)?;
                        if !row.try_get::<bool, _>("allowed").map_err(db_error)? {
                            return Ok(Reservation::CoolingOff);
                        }
                        let found: Option<TransactionId> = row.try_get("id").map_err(db_error)?;
                        if found.is_none() {
                            return Ok(Reservation::Allowed(None));
                        }
                        let transaction = TransactionRow::from_row(&row).map_err(db_error)?;
                        return Ok(Reservation::Allowed(Some(Box::new(
                            transaction.try_into()?,
                        ))));
                    }
                    let done = query.execute(self.writer()).await.map_err(db_error)?;
                    if done.rows_affected() == 0 {
                        return Ok(Reservation::CoolingOff);
                    }
                    Ok(Reservation::Allowed(match lookup {
                        Some((app, id)) => self.find_transaction(app, id).await?.map(Box::new),
                        None => None,
                    }))
                }
            }

            #[async_trait]
            impl TransactionStore for $store {
                async fn apply(&self, change: &Change) -> StoreResult<bool> {
                    let statements = if change.expected.is_none() {
                        q::APPLY_INSERT
                    } else {
                        q::APPLY_UPDATE
                    };
                    if statements.len() == 1 {
                        // One statement commits atomically on its own.
                        let mut conn = self.writer().acquire().await.map_err(db_error)?;
                        return apply_on(&mut conn, change).await;
                    }
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    if !apply_on(&mut tx, change).await? {
                        return Ok(false);
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(true)
                }

                async fn find_transaction(
                    &self,
                    app: ApplicationId,
                    id: TransactionId,
                ) -> StoreResult<Option<Transaction>> {
                    let row: Option<TransactionRow> = sqlx::query_as(q::FIND_TRANSACTION)
                        .bind(id)
                        .bind(app)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db_error)?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn overdue_transactions(
                    &self,
                    now: DateTime<Utc>,
                    limit: i64,
                ) -> StoreResult<Vec<Transaction>> {
                    let rows: Vec<TransactionRow> = sqlx::query_as(q::OVERDUE_TRANSACTIONS)
                        .bind(StoredTime(now))
                        .bind(limit)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    convert(rows)
                }

                async fn open_confirmations(
                    &self,
                    device: &Device,
                ) -> StoreResult<Vec<Transaction>> {
                    let rows: Vec<TransactionRow> = sqlx::query_as(q::OPEN_CONFIRMATIONS)
                        .bind(device.id)
                        .bind(device.application_id)
                        .bind(device.user_id.clone())
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    convert(rows)
                }

                async fn open_push(
                    &self,
                    app: ApplicationId,
                    user: &UserId,
                ) -> StoreResult<Option<Transaction>> {
                    let row: Option<TransactionRow> = sqlx::query_as(q::OPEN_PUSH)
                        .bind(app)
                        .bind(user.clone())
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db_error)?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn count_unanswered_pushes(
                    &self,
                    app: ApplicationId,
                    user: &UserId,
                    since: DateTime<Utc>,
                ) -> StoreResult<i64> {
                    sqlx::query_scalar(q::COUNT_UNANSWERED_PUSHES)
                        .bind(app)
                        .bind(user.clone())
                        .bind(StoredTime(since))
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)
                }

                async fn last_fraud_report(
                    &self,
                    app: ApplicationId,
                    user: &UserId,
                ) -> StoreResult<Option<DateTime<Utc>>> {
                    let last: Option<StoredTime> = sqlx::query_scalar(q::LAST_FRAUD_REPORT)
                        .bind(app)
                        .bind(user.clone())
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(last.map(|t| t.0))
                }
            }

            #[async_trait]
            impl EventStore for $store {
                async fn events_after(
                    &self,
                    app: ApplicationId,
                    after: i64,
                    limit: i64,
                ) -> StoreResult<Vec<EventRecord>> {
                    // Everything committed before this call is returned: wait
                    // (briefly) until the transactions older than the newest
                    // committed event have all finished.
                    let head: Option<i64> = sqlx::query_scalar(q::EVENTS_HEAD)
                        .bind(app)
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)?;
                    let Some(head) = head.filter(|&head| head > after) else {
                        return Ok(Vec::new());
                    };
                    let mut rows: Vec<EventRow> = Vec::new();
                    for pause in HORIZON_PAUSES {
                        rows = sqlx::query_as(q::EVENTS_AFTER)
                            .bind(app)
                            .bind(after)
                            .bind(limit)
                            .bind(head)
                            .fetch_all(self.reader())
                            .await
                            .map_err(db_error)?;
                        let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit
                            || rows.last().is_some_and(|row| row.position() == head);
                        if complete {
                            break;
                        }
                        tokio::time::sleep(pause).await;
                    }
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn purged_through(&self) -> StoreResult<i64> {
                    sqlx::query_scalar(q::PURGED_THROUGH)
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)
                }

                async fn database_time(&self) -> StoreResult<DateTime<Utc>> {
                    let now: StoredTime = sqlx::query_scalar(q::DATABASE_TIME)
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(now.0)
                }

                async fn purge(&self, events_before: DateTime<Utc>) -> StoreResult<u64> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    let deleted: Vec<i64> = sqlx::query_scalar(q::PURGE_EVENTS)
                        .bind(StoredTime(events_before))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if let Some(highest) = deleted.iter().max() {
                        sqlx::query(q::MARK_PURGED)
                            .bind(*highest)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(u64::try_from(deleted.len()).unwrap_or(u64::MAX))
                }

                async fn event_head(&self, app: ApplicationId) -> StoreResult<EventHead> {
                    let (newest, start): (i64, i64) = sqlx::query_as(q::EVENT_HEAD)
                        .bind(app)
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(EventHead {
                        newest,
                        start: start.max(0),
                    })
                }

                async fn last_event_of(
                    &self,
                    app: ApplicationId,
                    id: TransactionId,
                ) -> StoreResult<Option<EventRecord>> {
                    let row: Option<EventRow> = sqlx::query_as(q::LAST_EVENT_OF)
                        .bind(app)
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(row.map(Into::into))
                }
            }

            #[async_trait]
            impl CheckpointStore for $store {
                async fn last_checkpoint(
                    &self,
                    app: ApplicationId,
                ) -> StoreResult<Option<Checkpoint>> {
                    let row: Option<CheckpointRow> = sqlx::query_as(q::LAST_CHECKPOINT)
                        .bind(app)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(row.map(Into::into))
                }

                async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool> {
                    let done = sqlx::query(q::INSERT_CHECKPOINT)
                        .bind(checkpoint.application_id)
                        .bind(checkpoint.seq)
                        .bind(checkpoint.from_cursor)
                        .bind(checkpoint.through_cursor)
                        .bind(checkpoint.entries.clone())
                        .bind(checkpoint.prev_hash.clone())
                        .bind(checkpoint.hash.clone())
                        .bind(checkpoint.key_id.clone())
                        .bind(checkpoint.signature.clone())
                        .bind(StoredTime(checkpoint.created_at))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn checkpoints(&self, app: ApplicationId) -> StoreResult<Vec<Checkpoint>> {
                    let rows: Vec<CheckpointRow> = sqlx::query_as(q::CHECKPOINTS)
                        .bind(app)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn stored_events(
                    &self,
                    app: ApplicationId,
                    after: i64,
                    through: i64,
                ) -> StoreResult<Vec<EventRecord>> {
                    let rows: Vec<EventRow> = sqlx::query_as(q::STORED_EVENTS)
                        .bind(app)
                        .bind(after)
                        .bind(through)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }
            }

            #[async_trait]
            impl PresenceStore for $store {
                async fn renew_replica(
                    &self,
                    replica: uuid::Uuid,
                    expires_at: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sqlx::query(q::RENEW_REPLICA)
                        .bind(StoredUuid(replica))
                        .bind(StoredTime(expires_at))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn stream_opened(
                    &self,
                    stream: uuid::Uuid,
                    device: DeviceId,
                    replica: uuid::Uuid,
                    at: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sqlx::query(q::STREAM_OPENED)
                        .bind(StoredUuid(stream))
                        .bind(device)
                        .bind(StoredUuid(replica))
                        .bind(StoredTime(at))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn stream_closed(&self, stream: uuid::Uuid) -> StoreResult<()> {
                    sqlx::query(q::STREAM_CLOSED)
                        .bind(StoredUuid(stream))
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn replica_stopped(&self, replica: uuid::Uuid) -> StoreResult<()> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    for statement in [q::REPLICA_STREAMS_GONE, q::REPLICA_GONE] {
                        sqlx::query(statement)
                            .bind(StoredUuid(replica))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(())
                }

                async fn forget_dead_replicas(&self, before: DateTime<Utc>) -> StoreResult<u64> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    let streams = sqlx::query(q::DEAD_STREAMS_GONE)
                        .bind(StoredTime(before))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    sqlx::query(q::DEAD_REPLICAS_GONE)
                        .bind(StoredTime(before))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(streams.rows_affected())
                }

                async fn live_replicas(&self, now: DateTime<Utc>) -> StoreResult<i64> {
                    sqlx::query_scalar(q::LIVE_REPLICAS)
                        .bind(StoredTime(now))
                        .fetch_one(self.reader())
                        .await
                        .map_err(db_error)
                }

                async fn connected_devices(
                    &self,
                    app: ApplicationId,
                    user: Option<&UserId>,
                    now: DateTime<Utc>,
                ) -> StoreResult<std::collections::HashSet<DeviceId>> {
                    let ids: Vec<DeviceId> = sqlx::query_scalar(q::CONNECTED_DEVICES)
                        .bind(app)
                        .bind(user.cloned())
                        .bind(StoredTime(now))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    Ok(ids.into_iter().collect())
                }
            }

            #[async_trait]
            impl ServerKeyStore for $store {
                async fn current_server_key(&self) -> StoreResult<Option<ServerKeyRecord>> {
                    let row: Option<ServerKeyRow> = sqlx::query_as(q::CURRENT_SERVER_KEY)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db_error)?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn add_server_key(
                    &self,
                    key: &ServerKeyRecord,
                    rotate: bool,
                ) -> StoreResult<bool> {
                    let mut tx = self.writer().begin().await.map_err(db_error)?;
                    if rotate {
                        sqlx::query(q::RETIRE_SERVER_KEY)
                            .bind(StoredTime(key.created_at))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    let done = sqlx::query(q::INSERT_SERVER_KEY)
                        .bind(key.id.clone())
                        .bind(key.public_key.to_vec())
                        .bind(key.secret_key.to_vec())
                        .bind(StoredTime(key.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(true)
                }

                async fn server_keys(&self) -> StoreResult<Vec<ServerKeyRecord>> {
                    let rows: Vec<ServerKeyRow> = sqlx::query_as(q::SERVER_KEYS)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db_error)?;
                    convert(rows)
                }
            }
        }
    };
}

pub(super) use sql_engine;
