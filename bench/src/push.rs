//! `push` mode: push logins to connected devices, each of its own user (one
//! open push per user). Each worker owns every C-th device and cycles
//! through them: CreatePushAuthentication → the device receives the
//! ConfirmationRequest (kind PUSH) → signed accept → DecisionResult → event.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CreatePushAuthenticationRequest, TransactionKind, TransactionState, agent_message,
};
use serde_json::{Map, Value};

use crate::cli::Args;
use crate::device::STEP_TIMEOUT;
use crate::flows::{describe, reconnect};
use crate::load::{self, Held, WorkerKit};
use crate::report::Recorder;
use crate::server::Target;

/// Steps of one push: create = the RPC, deliver = from the RPC's start to
/// the ConfirmationRequest on the device, decide = SignedDecision →
/// DecisionResult, notify = DecisionResult → the event at the relying party.
pub const STEPS: &[&str] = &["create", "deliver", "decide", "notify"];

/// Runs the `push` mode and returns the report fields.
pub async fn run(
    args: &Args,
    target: &Target,
    database_url: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    load::run(
        args,
        target,
        database_url,
        |i| format!("push-user-{i}"),
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
    let mut next = 0usize;
    while Instant::now() < kit.window.end {
        let started = Instant::now();
        let is_counted = started >= kit.window.measure_from;
        let count = held.len();
        let device = &mut held[next % count];
        next += 1;
        match one_push(&mut kit, device).await {
            Ok((steps, total)) => {
                if is_counted {
                    recorder.flow(&steps, total);
                }
            }
            Err(error) => {
                if is_counted {
                    recorder.error(format!("{error:#}"));
                }
                reconnect(&kit, device).await;
            }
        }
    }
    Ok(recorder)
}

async fn one_push(
    kit: &mut WorkerKit,
    held: &mut Held,
) -> anyhow::Result<([Duration; 4], Duration)> {
    let t0 = Instant::now();
    let request = CreatePushAuthenticationRequest {
        user_id: held.device.user_id.clone(),
        message: "Log in to the assent-bench shop?".to_owned(),
        ttl_seconds: 120,
        context: [("bench".to_owned(), "push".to_owned())].into(),
        number_matching: false,
        ..Default::default()
    };
    // Read the device while the create call runs: the request may arrive first.
    let create = async {
        let response =
            tokio::time::timeout(STEP_TIMEOUT, kit.rp.create_push_authentication(request))
                .await
                .map_err(|_| anyhow!("create: timed out"))?
                .map_err(|status| anyhow!("create: {:?}", status.code()))?;
        Ok::<_, anyhow::Error>((response.into_inner(), Instant::now()))
    };
    let deliver = async {
        let body = held.stream.next().await;
        (body, Instant::now())
    };
    let (created, (delivered, t_deliver)) = tokio::join!(create, deliver);
    let (created, t1) = created?;
    let transaction_id = created.transaction_id;
    let confirmation = match delivered? {
        Some(Body::ConfirmationRequest(c))
            if c.transaction_id == transaction_id && c.kind == TransactionKind::Push as i32 =>
        {
            c
        }
        other => bail!("deliver: unexpected {}", describe(other.as_ref())),
    };
    let outcome = kit.router.expect(&transaction_id);
    let decided = async {
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
    let (t2, t3) = match decided {
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
    let steps = [t1 - t0, t_deliver - t0, t3 - t2, end - t3];
    Ok((steps, end - t0))
}
