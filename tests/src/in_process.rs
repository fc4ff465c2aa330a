//! The use cases called directly, without gRPC: a [`Services`] over a test
//! store with a clock the test moves, and devices whose keys the test holds.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_server::domain::transaction::Decision;
use assent_server::domain::{
    DenyReason, Device, DeviceName, EnrollmentCode, ManualClock, Transaction, UserId,
};
use assent_server::notify::Notifier;
use assent_server::service::{Caller, DecisionInput, EnrollInput, ServiceLimits, Services};
use assent_server::store::Store;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Use cases over one store, with a manual clock and no creation limit.
pub struct InProcess {
    /// The use cases.
    pub services: Arc<Services>,
    /// The clock they read.
    pub clock: Arc<ManualClock>,
    /// The store under them.
    pub store: Arc<dyn Store>,
}

impl InProcess {
    /// Use cases over `store` with the clock at `start`.
    pub fn new(store: Arc<dyn Store>, start: DateTime<Utc>) -> Self {
        let clock = Arc::new(ManualClock::new(start));
        let limits = ServiceLimits {
            create_per_second: 1e9,
            create_burst: u32::MAX,
            ..ServiceLimits::default()
        };
        let services = Services::new(
            Arc::clone(&store),
            Notifier::new(),
            Arc::clone(&clock) as _,
            limits,
        );
        Self {
            services,
            clock,
            store,
        }
    }

    /// The caller of an application created with `name`.
    pub async fn application(&self, name: &str) -> Caller {
        let (_, key) = assent_server::admin::create_application(self.store.as_ref(), name)
            .await
            .expect("create application");
        self.services
            .keys
            .authenticate(&key, None)
            .await
            .expect("the new key authenticates")
    }

    /// Enrolls a fresh key for `user` through the enrollment use cases.
    pub async fn enroll(&self, caller: &Caller, user: &str, rng: &mut StdRng) -> KeyDevice {
        let (code, _) = self
            .services
            .enrollment
            .create_enrollment(
                caller,
                UserId::parse(user).unwrap(),
                Duration::from_secs(600),
                rng,
            )
            .await
            .expect("create enrollment");
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let public_key = key.verifying_key().to_bytes();
        let code_text = code.expose();
        let proof = key.sign(&signing::enroll_bytes(&code_text, &public_key, "phone"));
        let device = self
            .services
            .enrollment
            .enroll(
                EnrollInput {
                    code: EnrollmentCode::parse(&code_text).unwrap(),
                    code_text,
                    public_key,
                    device_name: DeviceName::parse("phone").unwrap(),
                    proof,
                },
                None,
            )
            .await
            .expect("enroll");
        KeyDevice { key, device }
    }
}

/// A seeded random source for a test.
pub fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// An enrolled device with its private key.
#[derive(Clone)]
pub struct KeyDevice {
    /// The private key.
    pub key: SigningKey,
    /// The device as enrolled.
    pub device: Device,
}

impl KeyDevice {
    /// A correctly signed decision on `transaction`.
    pub fn decision(
        &self,
        transaction: &Transaction,
        verdict: SignedVerdict,
        reason: Option<DenyReason>,
        number: Option<u8>,
    ) -> DecisionInput {
        let nonce = transaction.nonce.unwrap_or_default();
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &transaction.application_id.to_string(),
            transaction_id: &transaction.id.to_string(),
            device_id: &self.device.id.to_string(),
            nonce: &nonce,
            verdict,
            reason: reason.map(DenyReason::as_str).unwrap_or_default(),
            display_hash: &signing::display_hash(&transaction.message, &transaction.context),
            number: number.map(u32::from),
        });
        DecisionInput {
            transaction_id: transaction.id,
            decision: Decision {
                verdict,
                reason,
                number,
                signature: self.key.sign(&bytes).to_bytes(),
            },
        }
    }
}
