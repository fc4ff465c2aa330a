//! The tamper-evident record of every application's events: a sealer
//! appends, within seconds of commit and off the write path, signed
//! checkpoints that chain by hash and list each sealed event's hash; `verify`
//! recomputes the chain from the rows as they are now and names the first
//! event that was changed, removed or inserted. Retention removes events,
//! never checkpoints; a sealed event retention removed is not a finding.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use assent_proto::signing;
use assent_proto::verify::ed25519;
use sha2::{Digest, Sha256};

use super::ServiceError;
use super::signer::{EventSigner, event_payload_bytes};
use crate::domain::{ApplicationId, Clock};
use crate::store::{Checkpoint, EventRecord, Store};

/// Events one checkpoint seals at most.
const SEAL_PAGE: i64 = 1024;
/// Bytes per entry: the cursor and the event's hash.
const ENTRY: usize = 8 + 32;

/// What `verify` found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A sealed event's row no longer matches what was sealed.
    Changed {
        /// Its cursor.
        cursor: i64,
    },
    /// A sealed event's row is gone (and retention did not remove it).
    Removed {
        /// Its cursor.
        cursor: i64,
    },
    /// A row sits inside a sealed range but was never sealed.
    Inserted {
        /// Its cursor.
        cursor: i64,
    },
    /// A checkpoint itself was altered: its hash, chain link or signature.
    Checkpoint {
        /// Its sequence number.
        seq: i64,
        /// What does not hold.
        problem: &'static str,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Changed { cursor } => write!(f, "event {cursor} was changed after it was sealed"),
            Self::Removed { cursor } => write!(f, "event {cursor} was removed after it was sealed"),
            Self::Inserted { cursor } => {
                write!(
                    f,
                    "event {cursor} was inserted into an already sealed range"
                )
            }
            Self::Checkpoint { seq, problem } => write!(f, "checkpoint {seq}: {problem}"),
        }
    }
}

/// One application's audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The application.
    pub application_id: ApplicationId,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Sealed events found as sealed.
    pub events_verified: usize,
    /// Sealed events retention removed.
    pub events_purged: usize,
    /// Events newer than the last checkpoint (sealed within seconds).
    pub events_unsealed: usize,
    /// The first problem, if any.
    pub finding: Option<Finding>,
}

/// SHA-256 of an event's signed bytes.
fn event_hash(app: ApplicationId, event: &EventRecord) -> [u8; 32] {
    Sha256::digest(event_payload_bytes(app, event)).into()
}

fn cursor_bytes(cursor: i64) -> [u8; 8] {
    cursor.to_be_bytes()
}

/// The canonical bytes of a checkpoint.
fn bytes_of(checkpoint: &Checkpoint) -> Vec<u8> {
    let unsigned = |n: i64| u64::try_from(n).unwrap_or_default();
    signing::checkpoint_bytes(
        &checkpoint.application_id.to_string(),
        unsigned(checkpoint.seq),
        unsigned(checkpoint.from_cursor),
        unsigned(checkpoint.through_cursor),
        &checkpoint.prev_hash,
        &checkpoint.entries,
    )
}

/// Sealing and verification of the event logs.
pub struct AuditService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: Arc<EventSigner>,
}

impl AuditService {
    /// Seals and verifies the logs of `store`, signing with `signer`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, signer: Arc<EventSigner>) -> Self {
        Self {
            store,
            clock,
            signer,
        }
    }

    /// Seals every application's new events; returns how many were sealed
    /// here (another replica may seal some first).
    pub async fn seal_all(&self) -> Result<usize, ServiceError> {
        let mut sealed = 0;
        for app in self.store.list_applications().await? {
            while let Some(count) = self.seal(app.id).await? {
                sealed += count;
                if i64::try_from(count).unwrap_or(i64::MAX) < SEAL_PAGE {
                    break;
                }
            }
        }
        Ok(sealed)
    }

    /// Seals the application's events after its last checkpoint into the
    /// next one; `None` if there were none or another replica sealed first.
    pub async fn seal(&self, app: ApplicationId) -> Result<Option<usize>, ServiceError> {
        let store = &self.store;
        let last = store.last_checkpoint(app).await?;
        let (seq, from, prev_hash) = match &last {
            Some(last) => (last.seq + 1, last.through_cursor, last.hash.clone()),
            None => (1, 0, vec![0; 32]),
        };
        // Everything committed below the horizon, so nothing can later
        // appear inside the sealed range.
        let events = store.events_after(app, from, SEAL_PAGE).await?;
        let Some(through) = events.last().map(|e| e.cursor) else {
            return Ok(None);
        };
        let mut entries = Vec::with_capacity(events.len() * ENTRY);
        for event in &events {
            entries.extend_from_slice(&cursor_bytes(event.cursor));
            entries.extend_from_slice(&event_hash(app, event));
        }
        let now = self.clock.now();
        let mut checkpoint = Checkpoint {
            application_id: app,
            seq,
            from_cursor: from,
            through_cursor: through,
            entries,
            prev_hash,
            hash: Vec::new(),
            key_id: String::new(),
            signature: Vec::new(),
            created_at: now,
        };
        let bytes = bytes_of(&checkpoint);
        checkpoint.hash = Sha256::digest(&bytes).to_vec();
        let (key_id, signature) = self.signer.sign_bytes(&bytes).await?;
        checkpoint.key_id = key_id;
        checkpoint.signature = signature.to_vec();
        Ok(store
            .add_checkpoint(&checkpoint)
            .await?
            .then_some(events.len()))
    }

    /// Recomputes the application's chain against the rows as they are now.
    pub async fn verify(&self, app: ApplicationId) -> Result<AuditReport, ServiceError> {
        let store = &self.store;
        let keys: HashMap<String, [u8; 32]> = store
            .server_keys()
            .await?
            .into_iter()
            .map(|key| (key.id, key.public_key))
            .collect();
        let purged = store.purged_through().await?;
        let mut report = AuditReport {
            application_id: app,
            checkpoints: 0,
            events_verified: 0,
            events_purged: 0,
            events_unsealed: 0,
            finding: None,
        };
        let mut prev_hash = vec![0u8; 32];
        let mut prev_through = 0;
        for checkpoint in store.checkpoints(app).await? {
            report.checkpoints += 1;
            if let Some(problem) = self.check_link(&checkpoint, &keys, &prev_hash, prev_through) {
                report.finding = Some(Finding::Checkpoint {
                    seq: checkpoint.seq,
                    problem,
                });
                return Ok(report);
            }
            let sealed: BTreeMap<i64, &[u8]> = checkpoint
                .entries
                .chunks_exact(ENTRY)
                .map(|entry| {
                    let mut cursor = [0u8; 8];
                    cursor.copy_from_slice(&entry[..8]);
                    (i64::from_be_bytes(cursor), &entry[8..])
                })
                .collect();
            let rows = store
                .stored_events(app, checkpoint.from_cursor, checkpoint.through_cursor)
                .await?;
            let rows: BTreeMap<i64, EventRecord> =
                rows.into_iter().map(|e| (e.cursor, e)).collect();
            let cursors: std::collections::BTreeSet<i64> =
                sealed.keys().chain(rows.keys()).copied().collect();
            for cursor in cursors {
                let finding = match (sealed.get(&cursor), rows.get(&cursor)) {
                    (Some(hash), Some(row)) if *hash == event_hash(app, row) => {
                        report.events_verified += 1;
                        None
                    }
                    (Some(_), Some(_)) => Some(Finding::Changed { cursor }),
                    (Some(_), None) if cursor <= purged => {
                        report.events_purged += 1;
                        None
                    }
                    (Some(_), None) => Some(Finding::Removed { cursor }),
                    (None, _) => Some(Finding::Inserted { cursor }),
                };
                if finding.is_some() {
                    report.finding = finding;
                    return Ok(report);
                }
            }
            prev_hash.clone_from(&checkpoint.hash);
            prev_through = checkpoint.through_cursor;
        }
        report.events_unsealed = store
            .stored_events(app, prev_through, i64::MAX)
            .await?
            .len();
        Ok(report)
    }

    /// What is wrong with a checkpoint's own hash, link or signature.
    fn check_link(
        &self,
        checkpoint: &Checkpoint,
        keys: &HashMap<String, [u8; 32]>,
        prev_hash: &[u8],
        prev_through: i64,
    ) -> Option<&'static str> {
        if checkpoint.prev_hash != prev_hash || checkpoint.from_cursor != prev_through {
            return Some("does not follow the previous checkpoint (one was changed or removed)");
        }
        if !checkpoint.entries.len().is_multiple_of(ENTRY) {
            return Some("its entries are malformed");
        }
        let bytes = bytes_of(checkpoint);
        if Sha256::digest(&bytes).as_slice() != checkpoint.hash.as_slice() {
            return Some("its hash does not match its content");
        }
        let verified = keys
            .get(&checkpoint.key_id)
            .is_some_and(|key| ed25519(key, &bytes, &checkpoint.signature).is_ok());
        (!verified).then_some("its signature does not verify with a published server key")
    }
}
