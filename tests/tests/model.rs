//! Model-based test of the transaction rules: random sequences of
//! operations — create OTP and push logins, scan, decide (right, wrong
//! number, not me, policy), cancel, read, move the clock, sweep, revoke —
//! over two applications, their users and devices, are applied to each
//! engine through the use cases and to a small in-memory reference model
//! written from SPEC §2–§6. Both must give the same answers, the same final
//! states and the same events. A failing sequence is shrunk and printed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use assent_server::domain::transaction::Reason;
use assent_server::domain::{
    Context, DenyReason, EventType, Message, Transaction, TransactionKind, TransactionState as S,
    UserId,
};
use assent_server::service::{Caller, CreateOtpInput, CreatePushInput, ServiceError};
use assent_server::store::Store;
use assent_tests::{InProcess, KeyDevice, TestDb, seeded};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Generated cases per engine (`ASSENT_MODEL_CASES` overrides it for a
/// quick local run).
const CASES: u32 = 1000;
/// Operations per case, at most.
const MAX_OPS: usize = 24;

/// Devices of the model world: (application, user) of each.
const DEVICES: [(usize, usize); 4] = [(0, 0), (0, 0), (0, 1), (1, 0)];

#[derive(Debug, Clone, Copy)]
enum Choice {
    Accept,
    AcceptWrongNumber,
    AcceptWithoutNumber,
    DenyNotMe,
    DenyPolicy,
}

#[derive(Debug, Clone)]
enum Op {
    CreateOtp {
        app: usize,
        restrict: Option<usize>,
        ttl: u64,
    },
    CreatePush {
        app: usize,
        user: usize,
        numbers: bool,
        ttl: u64,
    },
    Scan {
        device: usize,
        tx: usize,
        genuine: bool,
    },
    Decide {
        device: usize,
        tx: usize,
        choice: Choice,
    },
    Cancel {
        app: usize,
        tx: usize,
    },
    Get {
        app: usize,
        tx: usize,
    },
    Advance {
        secs: u64,
    },
    Sweep,
    Revoke {
        app: usize,
        device: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = prop::sample::select(vec![10u64, 30, 120]);
    let choice = prop::sample::select(vec![
        Choice::Accept,
        Choice::AcceptWrongNumber,
        Choice::AcceptWithoutNumber,
        Choice::DenyNotMe,
        Choice::DenyPolicy,
    ]);
    prop_oneof![
        3 => (0..2usize, prop::option::of(0..2usize), ttl.clone())
            .prop_map(|(app, restrict, ttl)| Op::CreateOtp { app, restrict, ttl }),
        3 => (0..2usize, 0..2usize, any::<bool>(), ttl)
            .prop_map(|(app, user, numbers, ttl)| Op::CreatePush { app, user, numbers, ttl }),
        4 => (0..4usize, 0..8usize, prop::bool::weighted(0.85))
            .prop_map(|(device, tx, genuine)| Op::Scan { device, tx, genuine }),
        4 => (0..4usize, 0..8usize, choice).prop_map(|(device, tx, choice)| Op::Decide { device, tx, choice }),
        1 => (0..2usize, 0..8usize).prop_map(|(app, tx)| Op::Cancel { app, tx }),
        1 => (0..2usize, 0..8usize).prop_map(|(app, tx)| Op::Get { app, tx }),
        2 => prop::sample::select(vec![1u64, 5, 29, 61, 301, 700, 3601])
            .prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Sweep),
        1 => (0..2usize, 0..4usize).prop_map(|(app, device)| Op::Revoke { app, device }),
    ]
}

/// What an operation answered, coarsely enough to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Skipped,
    Created,
    State(S),
    Decided { applied: bool, state: S },
    Revoked,
    Swept(usize),
    NotFound,
    OtpRefused,
    FailedPrecondition,
    ResourceExhausted,
    InvalidArgument,
    PermissionDenied,
    Other(String),
}

impl From<ServiceError> for Answer {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound(_) => Self::NotFound,
            ServiceError::OtpRefused => Self::OtpRefused,
            ServiceError::FailedPrecondition(_) => Self::FailedPrecondition,
            ServiceError::ResourceExhausted(_) => Self::ResourceExhausted,
            ServiceError::Input(_) => Self::InvalidArgument,
            ServiceError::PermissionDenied(_) => Self::PermissionDenied,
            other => Self::Other(other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone)]
struct MTx {
    app: usize,
    kind: TransactionKind,
    state: S,
    user: Option<usize>,
    device: Option<usize>,
    reason: Option<Reason>,
    created: i64,
    expires: i64,
    completed: Option<i64>,
    /// Under number matching: the number shown and a wrong choice.
    numbers: Option<(u8, u8)>,
    events: Vec<EventType>,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    txs: Vec<MTx>,
    revoked: [bool; 4],
    /// OTP strikes per device: (window start, strikes in it).
    strikes: [Option<(i64, u32)>; 4],
    fraud_reports: Vec<(usize, usize, i64)>,
    device_events: Vec<(usize, EventType)>,
}

impl Model {
    fn is_open(tx: &MTx) -> bool {
        matches!(tx.state, S::Pending | S::Scanned)
    }

    fn end(&mut self, i: usize, state: S, reason: Option<Reason>) {
        let now = self.now;
        let tx = &mut self.txs[i];
        tx.state = state;
        tx.reason = reason;
        tx.completed = Some(now);
        tx.events.push(state.event());
    }

    /// Every use case expires an overdue transaction it reads.
    fn settle(&mut self, i: usize) {
        if Self::is_open(&self.txs[i]) && self.txs[i].expires <= self.now {
            self.end(i, S::Expired, None);
        }
    }

    fn create(&mut self, app: usize, kind: TransactionKind, user: Option<usize>, ttl: u64) {
        self.txs.push(MTx {
            app,
            kind,
            state: S::Pending,
            user,
            device: None,
            reason: None,
            created: self.now,
            expires: self.now + i64::try_from(ttl).unwrap(),
            completed: None,
            numbers: None,
            events: vec![EventType::TransactionCreated],
        });
    }

    fn create_push(&mut self, app: usize, user: usize, ttl: u64) -> Answer {
        let has_device = DEVICES
            .iter()
            .enumerate()
            .any(|(d, &(a, u))| a == app && u == user && !self.revoked[d]);
        if !has_device {
            return Answer::FailedPrecondition;
        }
        if let Some(open) = self.txs.iter().position(|t| {
            t.app == app
                && t.user == Some(user)
                && t.kind == TransactionKind::Push
                && t.state == S::Pending
        }) {
            self.settle(open);
        }
        let now = self.now;
        let reported = self
            .fraud_reports
            .iter()
            .any(|&(a, u, at)| a == app && u == user && at + 3600 > now);
        let pushes = || {
            self.txs.iter().filter(move |t| {
                t.app == app && t.user == Some(user) && t.kind == TransactionKind::Push
            })
        };
        let open = pushes().any(|t| t.state == S::Pending);
        let last_accepted = pushes()
            .filter(|t| t.state == S::Accepted)
            .filter_map(|t| t.completed)
            .max()
            .unwrap_or(i64::MIN);
        let unanswered = pushes()
            .filter(|t| t.created > now - 600 && t.created > last_accepted)
            .count();
        if reported || open || unanswered >= 5 {
            return Answer::ResourceExhausted;
        }
        self.create(app, TransactionKind::Push, Some(user), ttl);
        Answer::Created
    }

    /// A lookup is allowed while the device has fewer than five strikes in
    /// the window opened by the first (reopened 300 s later); one that
    /// matches an open OTP (`hits`) takes none, any other takes one.
    fn reserve(&mut self, device: usize, hits: bool) -> bool {
        let now = self.now;
        let strike = u32::from(!hits);
        match &mut self.strikes[device] {
            Some((start, strikes)) if *start > now - 300 => {
                if *strikes >= 5 {
                    return false;
                }
                *strikes += strike;
            }
            slot => *slot = Some((now, strike)),
        }
        true
    }

    fn scan(&mut self, device: usize, i: usize, genuine: bool) -> Answer {
        // Matching an open OTP: the right secret of a pending OTP login of
        // the device's application (the store's check, before the domain's).
        let hits = {
            let tx = &self.txs[i];
            genuine
                && tx.app == DEVICES[device].0
                && tx.kind == TransactionKind::Otp
                && tx.state == S::Pending
        };
        if !self.reserve(device, hits) {
            return Answer::ResourceExhausted;
        }
        let (app, user) = DEVICES[device];
        // A refused scan writes nothing (every refusal takes the same path
        // in time): an overdue transaction is refused as it stands and
        // expired by the sweeper, not by the scan.
        let tx = &self.txs[i];
        let is_valid = genuine
            && tx.app == app
            && tx.kind == TransactionKind::Otp
            && tx.state == S::Pending
            && tx.expires > self.now
            && tx.user.is_none_or(|u| u == user)
            && !self.revoked[device];
        if !is_valid {
            return Answer::OtpRefused;
        }
        let tx = &mut self.txs[i];
        tx.state = S::Scanned;
        tx.device = Some(device);
        tx.user = Some(user);
        tx.events.push(EventType::TransactionScanned);
        Answer::State(S::Scanned)
    }

    fn decide(&mut self, device: usize, i: usize, choice: Choice) -> Answer {
        let (app, user) = DEVICES[device];
        if self.txs[i].app != app {
            return Answer::NotFound;
        }
        self.settle(i);
        let tx = &self.txs[i];
        let is_held = match tx.kind {
            TransactionKind::Otp => tx.device == Some(device),
            TransactionKind::Push => tx.user == Some(user) && tx.device.is_none_or(|d| d == device),
        };
        if !is_held {
            return Answer::NotFound;
        }
        let decided_from = match tx.kind {
            TransactionKind::Otp => S::Scanned,
            TransactionKind::Push => S::Pending,
        };
        if tx.state != decided_from {
            return if Self::is_open(tx) {
                Answer::NotFound
            } else {
                Answer::Decided {
                    applied: false,
                    state: tx.state,
                }
            };
        }
        let (state, reason) = match (choice, tx.numbers) {
            (Choice::Accept, _) => (S::Accepted, None),
            (Choice::AcceptWrongNumber, Some(_)) => (S::Denied, Some(Reason::WrongNumber)),
            (Choice::AcceptWrongNumber, None) => return Answer::InvalidArgument,
            (Choice::AcceptWithoutNumber, Some(_)) => return Answer::InvalidArgument,
            (Choice::AcceptWithoutNumber, None) => (S::Accepted, None),
            (Choice::DenyNotMe, _) => (S::Denied, Some(Reason::NotMe)),
            (Choice::DenyPolicy, _) => (S::Denied, Some(Reason::Policy)),
        };
        if self.revoked[device] {
            return Answer::PermissionDenied;
        }
        if reason == Some(Reason::NotMe) {
            self.fraud_reports.push((app, user, self.now));
        }
        self.txs[i].device = Some(device);
        self.txs[i].user = Some(user);
        self.end(i, state, reason);
        Answer::Decided {
            applied: true,
            state,
        }
    }

    fn cancel(&mut self, app: usize, i: usize) -> Answer {
        if self.txs[i].app != app {
            return Answer::NotFound;
        }
        self.settle(i);
        if !Self::is_open(&self.txs[i]) {
            return Answer::FailedPrecondition;
        }
        self.end(i, S::Cancelled, None);
        Answer::State(S::Cancelled)
    }

    fn get(&mut self, app: usize, i: usize) -> Answer {
        if self.txs[i].app != app {
            return Answer::NotFound;
        }
        self.settle(i);
        Answer::State(self.txs[i].state)
    }

    fn sweep(&mut self) -> Answer {
        let overdue: Vec<usize> = (0..self.txs.len())
            .filter(|&i| Self::is_open(&self.txs[i]) && self.txs[i].expires <= self.now)
            .collect();
        for &i in &overdue {
            self.end(i, S::Expired, None);
        }
        Answer::Swept(overdue.len())
    }

    fn revoke(&mut self, app: usize, device: usize) -> Answer {
        if DEVICES[device].0 != app {
            return Answer::NotFound;
        }
        if self.revoked[device] {
            return Answer::Revoked;
        }
        self.revoked[device] = true;
        self.device_events.push((device, EventType::DeviceRevoked));
        for i in 0..self.txs.len() {
            if self.txs[i].device == Some(device) && Self::is_open(&self.txs[i]) {
                self.end(i, S::Failed, Some(Reason::DeviceRevoked));
            }
        }
        Answer::Revoked
    }
}

// ---------------------------------------------------------------------------
// The real system.

struct Real {
    world: InProcess,
    callers: Vec<Caller>,
    devices: Vec<KeyDevice>,
    /// Created transactions with their OTP text.
    txs: Vec<(Transaction, Option<String>)>,
}

fn user(index: usize) -> UserId {
    UserId::parse(&format!("user-{index}")).unwrap()
}

impl Real {
    async fn new(store: Arc<dyn Store>, start: DateTime<Utc>, case: u64) -> Self {
        let world = InProcess::new(store, start);
        // Settle what earlier cases left open, so sweeps count this case only.
        while world.services.upkeep.sweep().await.unwrap() > 0 {}
        let mut callers = Vec::new();
        for app in 0..2 {
            callers.push(world.application(&format!("Shop {case}.{app}")).await);
        }
        let mut rng = seeded(case);
        let mut devices = Vec::new();
        for (app, u) in DEVICES {
            let name = format!("user-{u}");
            devices.push(world.enroll(&callers[app], &name, &mut rng).await);
        }
        Self {
            world,
            callers,
            devices,
            txs: Vec::new(),
        }
    }

    async fn apply(&mut self, op: &Op, rng: &mut rand::rngs::StdRng) -> Answer {
        let services = &self.world.services;
        let answer = |result: Result<Answer, ServiceError>| result.unwrap_or_else(Answer::from);
        match *op {
            Op::CreateOtp { app, restrict, ttl } => {
                let input = CreateOtpInput {
                    message: Message::parse("Log in?").unwrap(),
                    ttl: Duration::from_secs(ttl),
                    context: Context::default(),
                    user_id: restrict.map(user),
                    binding: None,
                };
                let created = services
                    .logins
                    .create_otp_authentication(&self.callers[app], input, rng)
                    .await;
                answer(created.map(|c| {
                    self.txs.push((c.transaction, Some(c.otp.expose())));
                    Answer::Created
                }))
            }
            Op::CreatePush {
                app,
                user: u,
                numbers,
                ttl,
            } => {
                let input = CreatePushInput {
                    user_id: user(u),
                    message: Message::parse("Log in?").unwrap(),
                    ttl: Duration::from_secs(ttl),
                    context: Context::default(),
                    number_matching: numbers,
                    binding: None,
                };
                let created = services
                    .push
                    .create_push_authentication(&self.callers[app], input, rng)
                    .await;
                answer(created.map(|c| {
                    self.txs.push((c.transaction, None));
                    Answer::Created
                }))
            }
            Op::Scan {
                device,
                tx,
                genuine,
            } => {
                let (transaction, otp) = &self.txs[tx];
                let text = match (otp, genuine) {
                    (Some(otp), true) => otp.clone(),
                    _ => assent_server::domain::Otp::generate(rng, transaction.id).expose(),
                };
                let scanned = services
                    .confirmations
                    .submit_otp(&self.devices[device].device, &text, rng)
                    .await;
                answer(scanned.map(|t| {
                    self.txs[tx].0 = t;
                    Answer::State(S::Scanned)
                }))
            }
            Op::Decide { device, tx, choice } => {
                let key = &self.devices[device];
                let current = self.txs[tx].0.clone();
                let shown = current.match_number;
                let wrong = current
                    .number_choices
                    .iter()
                    .copied()
                    .find(|&n| Some(n) != shown);
                let (verdict, reason, number) = match choice {
                    Choice::Accept => (SignedVerdict::Accept, None, shown),
                    Choice::AcceptWrongNumber => (SignedVerdict::Accept, None, wrong.or(Some(42))),
                    Choice::AcceptWithoutNumber => (SignedVerdict::Accept, None, None),
                    Choice::DenyNotMe => (SignedVerdict::Deny, Some(DenyReason::NotMe), None),
                    Choice::DenyPolicy => (SignedVerdict::Deny, Some(DenyReason::Policy), None),
                };
                let input = key.decision(&current, verdict, reason, number);
                let decided = services.confirmations.decide(&key.device, input).await;
                answer(decided.map(|o| Answer::Decided {
                    applied: o.applied,
                    state: o.transaction.state,
                }))
            }
            Op::Cancel { app, tx } => {
                let id = self.txs[tx].0.id;
                let cancelled = services
                    .logins
                    .cancel_transaction(&self.callers[app], id)
                    .await;
                answer(cancelled.map(|t| Answer::State(t.state)))
            }
            Op::Get { app, tx } => {
                let id = self.txs[tx].0.id;
                let read = services
                    .logins
                    .get_transaction(&self.callers[app], id)
                    .await;
                answer(read.map(|t| Answer::State(t.state)))
            }
            Op::Advance { secs } => {
                self.world.clock.advance(Duration::from_secs(secs));
                Answer::Skipped
            }
            Op::Sweep => answer(services.upkeep.sweep().await.map(Answer::Swept)),
            Op::Revoke { app, device } => {
                let id = self.devices[device].device.id;
                let revoked = services
                    .directory
                    .revoke_device(&self.callers[app], id)
                    .await;
                answer(revoked.map(|_| Answer::Revoked))
            }
        }
    }
}

/// How often each kind of answer came up, to show the cases reach the rules.
type Coverage = std::sync::Mutex<BTreeMap<String, usize>>;

fn kind_of(answer: &Answer) -> String {
    let text = format!("{answer:?}");
    match answer {
        Answer::Swept(0) => "Swept(0)".to_owned(),
        Answer::Swept(_) => "Swept(n)".to_owned(),
        Answer::Decided { .. } | Answer::State(_) => text,
        _ => text.split(['(', ' ']).next().unwrap_or_default().to_owned(),
    }
}

/// Runs one sequence on both sides; the first difference fails the case.
async fn run_case(
    store: Arc<dyn Store>,
    start: DateTime<Utc>,
    case: u64,
    ops: &[Op],
    coverage: &Coverage,
) -> Result<(), TestCaseError> {
    let mut real = Real::new(store, start, case).await;
    let mut model = Model::default();
    let mut rng = seeded(case ^ 0x5eed);
    for (step, op) in ops.iter().enumerate() {
        let op = match op {
            Op::Scan { tx, .. }
            | Op::Decide { tx, .. }
            | Op::Cancel { tx, .. }
            | Op::Get { tx, .. }
                if real.txs.is_empty() =>
            {
                let _ = tx;
                continue;
            }
            other => retarget(other, real.txs.len()),
        };
        let expected = match op {
            Op::CreateOtp { app, restrict, ttl } => {
                model.create(app, TransactionKind::Otp, restrict, ttl);
                Answer::Created
            }
            Op::CreatePush { app, user, ttl, .. } => model.create_push(app, user, ttl),
            Op::Scan {
                device,
                tx,
                genuine,
            } => model.scan(device, tx, genuine),
            Op::Decide { device, tx, choice } => model.decide(device, tx, choice),
            Op::Cancel { app, tx } => model.cancel(app, tx),
            Op::Get { app, tx } => model.get(app, tx),
            Op::Advance { secs } => {
                model.now += i64::try_from(secs).unwrap();
                Answer::Skipped
            }
            Op::Sweep => model.sweep(),
            Op::Revoke { app, device } => model.revoke(app, device),
        };
        let actual = real.apply(&op, &mut rng).await;
        prop_assert_eq!(&actual, &expected, "step {}: {:?}", step, op);
        *coverage
            .lock()
            .unwrap()
            .entry(kind_of(&actual))
            .or_default() += 1;
        // The model learns the numbers the server drew for a push.
        if let (Op::CreatePush { numbers: true, .. }, Answer::Created) = (&op, &actual) {
            let created = &real.txs.last().unwrap().0;
            let shown = created.match_number.unwrap();
            let wrong = created
                .number_choices
                .iter()
                .copied()
                .find(|&n| n != shown)
                .unwrap();
            model.txs.last_mut().unwrap().numbers = Some((shown, wrong));
        }
    }
    compare_final(&real, &model).await
}

/// Points a transaction index at an existing transaction.
fn retarget(op: &Op, created: usize) -> Op {
    let at = |tx: usize| tx % created.max(1);
    match op.clone() {
        Op::Scan {
            device,
            tx,
            genuine,
        } => Op::Scan {
            device,
            tx: at(tx),
            genuine,
        },
        Op::Decide { device, tx, choice } => Op::Decide {
            device,
            tx: at(tx),
            choice,
        },
        Op::Cancel { app, tx } => Op::Cancel { app, tx: at(tx) },
        Op::Get { app, tx } => Op::Get { app, tx: at(tx) },
        other => other,
    }
}

/// Same stored states, reasons, bindings and events per transaction and device.
async fn compare_final(real: &Real, model: &Model) -> Result<(), TestCaseError> {
    let store = &real.world.store;
    let mut events = BTreeMap::new();
    let mut device_events = Vec::new();
    for caller in &real.callers {
        for event in store
            .events_after(caller.application.id, 0, 100_000)
            .await
            .unwrap()
        {
            match event.transaction_id {
                Some(id) => events
                    .entry(id)
                    .or_insert_with(Vec::new)
                    .push(event.event_type),
                None if event.event_type == EventType::DeviceRevoked => {
                    let index = real
                        .devices
                        .iter()
                        .position(|d| Some(d.device.id) == event.device_id);
                    device_events.push((index.unwrap(), event.event_type));
                }
                None => {}
            }
        }
    }
    for ((created, _), expected) in real.txs.iter().zip(&model.txs) {
        let stored = store
            .find_transaction(created.application_id, created.id)
            .await
            .unwrap()
            .unwrap();
        let device = stored
            .device_id
            .map(|id| real.devices.iter().position(|d| d.device.id == id).unwrap());
        prop_assert_eq!(stored.state, expected.state, "state of {:?}", expected);
        prop_assert_eq!(stored.reason, expected.reason, "reason of {:?}", expected);
        prop_assert_eq!(device, expected.device, "device of {:?}", expected);
        prop_assert_eq!(
            events.get(&stored.id).cloned().unwrap_or_default(),
            expected.events.clone(),
            "events of {:?}",
            expected
        );
    }
    device_events.sort_by_key(|(d, _)| *d);
    let mut expected_devices = model.device_events.clone();
    expected_devices.sort_by_key(|(d, _)| *d);
    prop_assert_eq!(device_events, expected_devices);
    Ok(())
}

fn run_model(engine: &str, db: impl FnOnce(&tokio::runtime::Runtime) -> TestDb) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = db(&runtime);
    let store = runtime.block_on(db.store());
    let base = Utc::now();
    let case = std::cell::Cell::new(0u64);
    let coverage = Coverage::default();
    let cases = std::env::var("ASSENT_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    // Seeded, so a CI run is repeatable (the rarest rule, a revoked
    // device's decision, is reached ~5 times per 1 000 random cases: an
    // unseeded run missed it about once in 150). ASSENT_MODEL_SEED explores
    // other sequences.
    let seed: u64 = std::env::var("ASSENT_MODEL_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x00a5_5e47);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&prop::collection::vec(op(), 1..MAX_OPS), |ops| {
        case.set(case.get() + 1);
        // Each case starts a day after the last one could have ended.
        let start = base + TimeDelta::days(i64::try_from(case.get()).unwrap() * 2);
        runtime.block_on(run_case(
            Arc::clone(&store),
            start,
            case.get(),
            &ops,
            &coverage,
        ))
    });
    if let Err(failure) = result {
        panic!("{engine}: the engine and the model disagree: {failure}");
    }
    let coverage = coverage.into_inner().unwrap();
    eprintln!("{engine}: answers over {} cases: {coverage:?}", case.get());
    // The generated sequences must reach every rule, or agreeing proves little.
    if cases >= CASES {
        for wanted in [
            "Decided { applied: true, state: Accepted }",
            "Decided { applied: true, state: Denied }",
            "Decided { applied: false, state: Expired }",
            "State(Scanned)",
            "State(Cancelled)",
            "Swept(n)",
            "Revoked",
            "NotFound",
            "OtpRefused",
            "FailedPrecondition",
            "ResourceExhausted",
            "InvalidArgument",
            "PermissionDenied",
        ] {
            assert!(
                coverage.get(wanted).is_some_and(|&n| n > 0),
                "{engine}: no case reached {wanted}: {coverage:?}"
            );
        }
    }
}

#[test]
fn postgres_agrees_with_the_model() {
    run_model("postgres", |runtime| runtime.block_on(TestDb::create()));
}

#[test]
fn sqlite_agrees_with_the_model() {
    run_model("sqlite", |_| TestDb::sqlite());
}
