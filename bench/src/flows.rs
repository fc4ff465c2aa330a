//! `flows` mode: full OTP logins. Each worker owns every C-th device and
//! repeats, with its devices in turn: CreateOtpAuthentication → the device
//! submits the OTP → ConfirmationRequest → signed accept → DecisionResult →
//! `transaction.accepted` seen on the relying party's Subscribe stream.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CreateOtpAuthenticationRequest, SubmitOtp, TransactionState, agent_message,
};
use serde_json::{Map, Value};

use crate::cli::Args;
use crate::device::STEP_TIMEOUT;
use crate::load::{self, Held, WorkerKit};
use crate::report::Recorder;
use crate::server::Target;

/// Steps of one flow, in order: create = the RPC, scan = SubmitOtp →
/// ConfirmationRequest, decide = SignedDecision → DecisionResult, notify =
/// DecisionResult → the event reaching the relying party.
pub const STEPS: &[&str] = &["create", "scan", "decide", "notify"];

/// Runs the `flows` mode and returns the report fields.
pub async fn run(
    args: &Args,
    target: &Target,
    database_url: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    load::run(
        args,
        target,
        database_url,
        |i| format!("flow-user-{i}"),
        worker,
    )
    .await
}

async fn worker(mut kit: WorkerKit) -> anyhow::Result<Recorder> {
    let mut recorder = Recorder::new(STEPS)?;
    let mut held = std::mem::take(&mut kit.held);
    if held.is_empty() {
        return Ok(recorder);
    }
    let mut request_id = 0u64;
    // Bounded by the window: every step below has a timeout.
    while Instant::now() < kit.window.end {
        let started = Instant::now();
        let is_counted = started >= kit.window.measure_from;
        // The worker's devices in turn: one device stream may carry only
        // so many messages a second (the server's MESSAGES_PER_SECOND).
        let count = held.len();
        let Some(device) = held.get_mut(usize::try_from(request_id).unwrap_or(0) % count) else {
            break;
        };
        request_id += 1;
        match one_flow(&mut kit, device, request_id).await {
            Ok((steps, total)) => {
                if is_counted {
                    recorder.flow(&steps, total);
                }
            }
            Err(error) => {
                if is_counted {
                    recorder.error(format!("{error:#}"));
                }
                // The stream may hold a stale answer: start a fresh one.
                reconnect(&kit, device).await;
            }
        }
    }
    Ok(recorder)
}

/// Replaces a device's stream after a failure (one attempt; the next flow
/// reports it if it still fails).
pub async fn reconnect(kit: &WorkerKit, held: &mut Held) {
    let Ok(endpoint) = crate::client::endpoint(crate::client::first(&kit.url)) else {
        return;
    };
    if let Ok(channel) = endpoint.connect().await
        && let Ok(stream) = held.device.connect(channel).await
    {
        held.stream = stream;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn one_flow(
    kit: &mut WorkerKit,
    held: &mut Held,
    request_id: u64,
) -> anyhow::Result<([Duration; 4], Duration)> {
    let t0 = Instant::now();
    let request = CreateOtpAuthenticationRequest {
        message: "Log in to the assent-bench shop?".to_owned(),
        ttl_seconds: 120,
        context: [("bench".to_owned(), "flows".to_owned())].into(),
        user_id: held.device.user_id.clone(),
        ..Default::default()
    };
    let created = tokio::time::timeout(STEP_TIMEOUT, kit.rp.create_otp_authentication(request))
        .await
        .map_err(|_| anyhow!("create: timed out"))?
        .map_err(|status| anyhow!("create: {:?}", status.code()))?
        .into_inner();
    let t1 = Instant::now();
    let transaction_id = created.transaction_id;
    let outcome = kit.router.expect(&transaction_id);
    let result = async {
        held.stream
            .send(agent_message::Body::SubmitOtp(SubmitOtp {
                request_id,
                otp: created.otp,
            }))
            .await?;
        let confirmation = match held.stream.next().await? {
            Some(Body::ConfirmationRequest(c))
                if c.request_id == request_id && c.transaction_id == transaction_id =>
            {
                c
            }
            Some(Body::Rejection(r)) => bail!("scan: rejected with code {}", r.code),
            other => bail!("scan: unexpected {}", describe(other.as_ref())),
        };
        let t2 = Instant::now();
        held.stream
            .send(agent_message::Body::Decision(
                held.device.accept(&confirmation),
            ))
            .await?;
        match held.stream.next().await? {
            Some(Body::DecisionResult(r)) if r.transaction_id == transaction_id => {
                if r.state != TransactionState::Accepted as i32 || !r.applied {
                    bail!("decide: ended in state {} (applied {})", r.state, r.applied);
                }
            }
            Some(Body::Rejection(r)) => bail!("decide: rejected with code {}", r.code),
            other => bail!("decide: unexpected {}", describe(other.as_ref())),
        }
        Ok((t2, Instant::now()))
    }
    .await;
    let (t2, t3) = match result {
        Ok(times) => times,
        Err(error) => {
            kit.router.forget(&transaction_id);
            return Err(error);
        }
    };
    let seen = match tokio::time::timeout(STEP_TIMEOUT, outcome).await {
        Ok(Ok(seen)) => seen,
        _ => {
            kit.router.forget(&transaction_id);
            bail!("notify: no outcome event within the step timeout");
        }
    };
    if seen.kind != "transaction.accepted" {
        bail!("notify: the relying party saw {}", seen.kind);
    }
    let end = seen.seen_at.max(t3);
    let steps = [t1 - t0, t2 - t1, t3 - t2, end - t3];
    Ok((steps, end - t0))
}

/// A short name of a server message for error reports.
pub fn describe(body: Option<&Body>) -> &'static str {
    match body {
        None => "end of stream",
        Some(Body::Challenge(_)) => "Challenge",
        Some(Body::Ready(_)) => "Ready",
        Some(Body::ConfirmationRequest(_)) => "ConfirmationRequest",
        Some(Body::DecisionResult(_)) => "DecisionResult",
        Some(Body::Rejection(_)) => "Rejection",
        Some(Body::Cancellation(_)) => "Cancellation",
        Some(Body::GoAway(_)) => "GoAway",
    }
}
