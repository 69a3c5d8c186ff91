//! One run: claim the session (lease), run its agent, give the agent's output
//! seqs, publish it to the log (batched, retried, fenced; [`crate::publish`]),
//! obey control ops, wait for a person's answers ([`crate::ask`]), and end
//! the session exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weir_bus::{BusError, Fence, Lease, LeaseEntry, RunAck, RunTicket};
use weir_protocol::{ControlOp, EndReason, Event, RunRequest, SessionId, Status};
use weir_store::Update;
use weir_telemetry::names;

use crate::agents::{AgentError, Emitter, Finish, Gate, Output};
use crate::ask::Asking;
use crate::progress::Progress;
use crate::publish::Publisher;
use crate::record::Recorder;
use crate::Ctx;

/// How a run stopped.
#[derive(Debug)]
pub(crate) enum Outcome {
    Finished(Result<Finish, AgentError>),
    Cancelled,
    /// The producer is shutting down and the drain grace ran out.
    Shutdown,
    /// Another node owns the session now: publish nothing more.
    Lost,
}

/// Runs in progress and events published by this process (the load that
/// `/v1/status` and the node registry show).
pub static ACTIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static PUBLISHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A run that could not start for a passing reason (the bus electing a
/// leader, the connection moving to another server) is offered again this
/// long after, to any producer, rather than at the end of the ack wait.
pub const START_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Executes one run request; every failure ends up in the session or the
/// log, or offers the request again.
pub async fn execute(ctx: Arc<Ctx>, ticket: RunTicket, hard_stop: CancellationToken) {
    let id = ticket.request.session.clone();
    let span = tracing::info_span!("run", session = %id, node = %ctx.node);
    async move {
        let RunTicket { request, ack } = ticket;
        let mut ack = Some(ack);
        match claim(&ctx, request, &mut ack).await {
            Ok(Some(claimed)) => claimed.run(&ctx, hard_stop).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, again_in = ?START_AGAIN_AFTER, "could not start the run; it will be offered again");
                if let Some(ack) = ack.take() {
                    if let Err(e) = ack.retry(START_AGAIN_AFTER).await {
                        tracing::debug!(error = %e, "run request not offered back; it comes back after the ack wait");
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

struct Claimed {
    agent: String,
    input: serde_json::Value,
    control: Option<ControlOp>,
    /// The session's control ops, subscribed to before its state was read.
    subscribed: BoxStream<'static, ControlOp>,
    publisher: Publisher,
    lease: Lease,
}

/// Whether the session's state lets this producer run it.
enum Admission {
    /// Run it, obeying the control op asked for before it started.
    Run(Option<ControlOp>),
    /// Not here: the reason, for the log.
    Skip(&'static str),
}

/// Takes the session's lease and acknowledges the request (taking `ack`);
/// `None` when the session ended, is another creation's, is already run by
/// someone else, or already runs here. The control subscription is
/// confirmed with the server before the session's state is read, so an op
/// asked for at any time is either in that state or arrives on the
/// subscription (edges store an op before they send it); the log's last
/// event is read at the same time. The lease is taken only once all of that
/// succeeded: a start that fails (the log or the subscription unreachable,
/// as while NATS elects) holds nothing, and `ack` is left for the caller to
/// offer the request again — a run never starts deaf to cancel and pause,
/// and never leaves a lease for the reapers to end a session by.
async fn claim(
    ctx: &Arc<Ctx>,
    req: RunRequest,
    ack: &mut Option<Box<dyn RunAck>>,
) -> Result<Option<Claimed>, Box<dyn std::error::Error + Send + Sync>> {
    let id = req.session.clone();
    if !ctx.running().insert(id.clone()) {
        tracing::info!("already running here; run dropped");
        if let Some(ack) = ack.take() {
            ack.ack().await?;
        }
        return Ok(None);
    }
    let claimed = claim_here(ctx, req, ack).await;
    if !matches!(claimed, Ok(Some(_))) {
        ctx.running().remove(&id);
    }
    claimed
}

/// [`claim`] for a session not running here.
async fn claim_here(
    ctx: &Arc<Ctx>,
    req: RunRequest,
    ack: &mut Option<Box<dyn RunAck>>,
) -> Result<Option<Claimed>, Box<dyn std::error::Error + Send + Sync>> {
    let id = req.session.clone();
    let subscribed_then_admitted = async {
        let subscribed = ctx.bus.control.subscribe(&id).await;
        (subscribed, admit(ctx, &req).await)
    };
    let ((subscribed, admission), last) =
        tokio::join!(subscribed_then_admitted, ctx.bus.log.last(&id));
    let control = match admission? {
        Admission::Run(control) => control,
        Admission::Skip(why) => {
            tracing::info!("{why}; run dropped");
            if let Some(ack) = ack.take() {
                ack.ack().await?;
            }
            return Ok(None);
        }
    };
    let (last, subscribed) = (last?, subscribed?);
    let Some(lease) = take_lease(ctx, &id).await? else {
        tracing::info!("session owned elsewhere; run dropped");
        if let Some(ack) = ack.take() {
            ack.ack().await?;
        }
        return Ok(None);
    };
    // Not waited for: should the ack be lost, the request comes back after
    // the ack wait, and whoever takes it finds the lease held or the
    // session ended, and drops it.
    if let Some(ack) = ack.take() {
        tokio::spawn(async move {
            if let Err(e) = ack.ack().await {
                tracing::debug!(error = %e, "run request not acknowledged; the lease keeps it here");
            }
        });
    }
    let (next_seq, fence) = last
        .as_ref()
        .map_or((1, Fence(0)), |l| (l.event.seq + 1, l.fence));
    Ok(Some(Claimed {
        publisher: Publisher {
            ctx: ctx.clone(),
            id: id.clone(),
            fence,
            next_seq,
            ended: last.is_some_and(|l| l.event.end),
            recorder: Recorder::start(ctx.clone(), id.clone()),
            progress: Progress::new(ctx.config.cluster.bus().timings().pause_bound()),
        },
        agent: req.agent,
        input: req.input,
        control,
        subscribed,
        lease,
    }))
}

/// The session's lease for this node: taken, or taken back when this node
/// holds it without running the session (an earlier start here whose
/// answer was lost stored it all the same); `None` when another node holds
/// it.
async fn take_lease(ctx: &Ctx, id: &SessionId) -> Result<Option<Lease>, BusError> {
    let entry = LeaseEntry::new(&ctx.node, ctx.config.cluster.lease_ttl, true);
    if let Some(lease) = ctx.bus.leases.acquire(id, entry.clone()).await? {
        return Ok(Some(lease));
    }
    match ctx.bus.leases.get(id).await? {
        Some(held) if held.entry.owner == ctx.node => {
            tracing::info!("taking back the lease an earlier start here left");
            ctx.bus.leases.replace(&held, entry).await
        }
        _ => Ok(None),
    }
}

/// Decides from the session's state whether to run it. While the store
/// cannot be reached the run starts anyway, from the log (the request is
/// taken only once, and the lease and the log's fence refuse a second
/// writer).
async fn admit(
    ctx: &Ctx,
    req: &RunRequest,
) -> Result<Admission, Box<dyn std::error::Error + Send + Sync>> {
    let id = &req.session;
    let state = match ctx.store.get(id).await {
        Ok(Some(state)) => Ok(Some(state)),
        Ok(None) => crate::record::recreate(ctx, req).await.map(Some),
        Err(e) => Err(e),
    };
    let control = match state {
        Ok(Some(state)) if state.status.is_ended() => return Ok(Admission::Skip("session ended")),
        // The id was taken when this request's edge created it: that edge
        // refused the creation (409), and the session is another's.
        Ok(Some(state)) if state.is_other_creation(req) => {
            return Ok(Admission::Skip("session created by another request"))
        }
        Ok(state) => state.and_then(|s| s.control),
        Err(e) if e.is_unavailable() => {
            tracing::debug!(error = %e, "store unreachable; running from the log");
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Admission::Run(control))
}

impl Claimed {
    async fn run(mut self, ctx: &Arc<Ctx>, hard_stop: CancellationToken) {
        metrics::gauge!(names::RUNS_ACTIVE).increment(1.0);
        ACTIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_lease(
            ctx.clone(),
            self.lease.clone(),
            lost.clone(),
            self.publisher.progress.clone(),
        ));
        let outcome = if self.publisher.ended {
            tracing::info!("the log already holds this session's end");
            None
        } else {
            Some(self.drive(ctx, &hard_stop, &lost).await)
        };
        let (label, end) = match &outcome {
            None => ("already_ended", None),
            Some(o) => self.finish(o).await,
        };
        lost.cancel();
        let mut lease = keeper.await.ok().flatten();
        if matches!(outcome, Some(Outcome::Lost)) && lease.is_some() {
            // The log refused a publish's fence while the lease is still
            // this node's: something this run cannot account for is in the
            // log. The lease is left to lapse, so that a reaper ends the
            // session from what the log holds; released, it would leave the
            // session without an end and without anyone to give it one.
            tracing::warn!("the log refused this run's fence while it held the lease; leaving the session to the reapers");
            lease = None;
        }
        // The end is recorded and the lease released after the run, by the
        // recorder (later, if the store is unreachable now).
        self.publisher.recorder.settle(end, lease);
        ctx.running().remove(&self.publisher.id);
        metrics::gauge!(names::RUNS_ACTIVE).decrement(1.0);
        ACTIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(names::RUNS, "outcome" => label).increment(1);
        tracing::info!(
            outcome = label,
            last_seq = self.publisher.next_seq - 1,
            "run finished"
        );
    }

    /// Runs the agent and publishes its output until it ends or is stopped.
    async fn drive(
        &mut self,
        ctx: &Arc<Ctx>,
        hard_stop: &CancellationToken,
        lost: &CancellationToken,
    ) -> Outcome {
        let Some(agent) = ctx.agents.get(&self.agent) else {
            let known = ctx.agents.names().join(", ");
            return Outcome::Finished(Err(AgentError::Failed {
                code: "unknown_agent".into(),
                message: format!(
                    "no agent {:?} on this producer (it has: {known})",
                    self.agent
                ),
            }));
        };
        let mut control =
            std::mem::replace(&mut self.subscribed, futures::stream::pending().boxed());
        let initial = match self.control {
            Some(ControlOp::Cancel) => return Outcome::Cancelled,
            Some(ControlOp::Pause) => Gate::Paused,
            _ => Gate::Open,
        };
        self.publisher.recorder.record(Update {
            status: Some(if initial == Gate::Paused {
                Status::Paused
            } else {
                Status::Streaming
            }),
            producer: Some(Some(ctx.node.clone())),
            ..Update::default()
        });
        if initial == Gate::Paused {
            if let Err(o) = self
                .publisher
                .publish(vec![status_output("paused")], lost, hard_stop)
                .await
            {
                return o;
            }
        }
        let (tx, mut rx) = mpsc::channel(ctx.config.run_buffer.max(1));
        let (gate_tx, gate_rx) = watch::channel(initial);
        let input = std::mem::take(&mut self.input);
        let (ask_tx, mut asks) = mpsc::channel(1);
        let mut asking = Asking::default();
        let mut agent_task = tokio::spawn(async move {
            let mut emitter = Emitter::new(tx, gate_rx).with_asks(ask_tx);
            agent.run(input, &mut emitter).await
        });
        let started = Instant::now();
        let mut first = true;
        let mut batch = Vec::with_capacity(ctx.config.max_batch);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = lost.cancelled() => break Outcome::Lost,
                _ = hard_stop.cancelled() => break Outcome::Shutdown,
                op = control.next() => {
                    let Some(op) = op else {
                        control = futures::stream::pending().boxed();
                        continue;
                    };
                    let current = *gate_tx.borrow();
                    let (gate, status) = match (op, current) {
                        (ControlOp::Cancel, _) => break Outcome::Cancelled,
                        (ControlOp::Pause, Gate::Open) => (Gate::Paused, Status::Paused),
                        (ControlOp::Resume, Gate::Paused) if asking.is_open() => (Gate::Open, Status::InputRequired),
                        (ControlOp::Resume, Gate::Paused) => (Gate::Open, Status::Streaming),
                        _ => continue,
                    };
                    gate_tx.send_replace(gate);
                    // What the agent made before the pause goes out before the notice.
                    let mut items = Vec::new();
                    while let Ok(o) = rx.try_recv() {
                        items.push(o);
                    }
                    items.push(status_output(if gate == Gate::Paused { "paused" } else { "resumed" }));
                    if let Err(o) = self.publisher.publish(items, lost, hard_stop).await {
                        break o;
                    }
                    self.publisher.recorder.record(Update { status: Some(status), last_seq: Some(self.publisher.next_seq - 1), ..Update::default() });
                }
                Some(ask) = asks.recv(), if !asking.is_open() => {
                    // What the agent said before asking goes out before the question.
                    let mut items = Vec::new();
                    while let Ok(o) = rx.try_recv() {
                        items.push(o);
                    }
                    let seq = self.publisher.next_seq + items.len() as u64;
                    items.push(asking.open(ctx, &self.publisher.id, seq, ask));
                    if let Err(o) = self.publisher.publish(items, lost, hard_stop).await {
                        break o;
                    }
                    let status = if *gate_tx.borrow() == Gate::Paused { Status::Paused } else { Status::InputRequired };
                    self.publisher.recorder.record(Update { status: Some(status), ..Update::default() });
                }
                // Held back while paused: the answer goes out once resumed.
                answered = asking.answered(), if *gate_tx.borrow() == Gate::Open => {
                    let (input, data) = match answered {
                        Ok(answered) => answered,
                        Err(e) => break Outcome::Finished(Err(AgentError::Failed { code: "bus_unavailable".into(), message: e.to_string() })),
                    };
                    if let Err(o) = self.publisher.publish(vec![input], lost, hard_stop).await {
                        break o;
                    }
                    self.publisher.recorder.record(Update { status: Some(Status::Streaming), ..Update::default() });
                    asking.deliver(data);
                }
                n = rx.recv_many(&mut batch, ctx.config.max_batch) => {
                    if n == 0 {
                        break match (&mut agent_task).await {
                            Ok(result) => Outcome::Finished(result),
                            Err(e) => Outcome::Finished(Err(AgentError::Failed { code: "agent_panicked".into(), message: e.to_string() })),
                        };
                    }
                    if std::mem::take(&mut first) {
                        metrics::histogram!(names::TIME_TO_FIRST_TOKEN).record(started.elapsed().as_secs_f64());
                    }
                    if let Err(o) = self.publisher.publish(std::mem::take(&mut batch), lost, hard_stop).await {
                        break o;
                    }
                }
            }
        };
        gate_tx.send_replace(Gate::Stopped);
        agent_task.abort();
        match outcome {
            // A cancel that raced with the agent's own end still cancels.
            Outcome::Finished(Err(AgentError::Stopped)) => Outcome::Cancelled,
            o => o,
        }
    }

    /// Publishes the closing events; returns the outcome label and the
    /// update that records the end.
    async fn finish(&mut self, outcome: &Outcome) -> (&'static str, Option<Update>) {
        let (reason, error, stop_reason, label) = match outcome {
            Outcome::Lost => {
                metrics::counter!(names::LEASE_LOSSES).increment(1);
                tracing::warn!("lost the session to another node; stopped without ending it");
                return ("lost", None);
            }
            Outcome::Finished(Ok(f)) => (
                EndReason::Completed,
                None,
                f.stop_reason.clone(),
                "completed",
            ),
            Outcome::Finished(Err(e)) => (
                EndReason::Failed,
                Some(e.code_and_message()),
                None,
                "failed",
            ),
            Outcome::Cancelled => (EndReason::Cancelled, None, None, "cancelled"),
            Outcome::Shutdown => (
                EndReason::Failed,
                Some((
                    "producer_shutdown".to_owned(),
                    "the producer shut down before the run finished".to_owned(),
                )),
                None,
                "shutdown",
            ),
        };
        let mut closing = Vec::new();
        if let Some((code, message)) = error {
            closing.push(Output {
                kind: "error".into(),
                source: None,
                data: serde_json::json!({"code": code, "message": message}),
                ts: weir_protocol::now_ms(),
                seq_id: None,
            });
        }
        let mut end = Event::end(0, reason, stop_reason.as_deref());
        closing.push(Output {
            kind: end.kind.clone(),
            source: None,
            data: std::mem::take(&mut end.data),
            ts: end.ts,
            seq_id: None,
        });
        // The closing events are published even while shutting down, but not
        // after the session was lost.
        let never = CancellationToken::new();
        let lost = CancellationToken::new();
        if self
            .publisher
            .publish(closing, &lost, &never)
            .await
            .is_err()
        {
            return ("lost", None);
        }
        let last = self.publisher.next_seq - 1;
        (label, Some(Update::ended(reason, last)))
    }
}

fn status_output(state: &str) -> Output {
    Output {
        kind: "status".into(),
        source: None,
        data: serde_json::json!({ "state": state }),
        ts: weir_protocol::now_ms(),
        seq_id: None,
    }
}

/// Renews the run's lease until the run is over, which cancels `lost`,
/// while the run makes `progress`; cancels `lost` itself when another node
/// took the lease over (the run stops publishing). Returns the lease, still
/// held, when the run is over.
pub(crate) async fn keep_lease(
    ctx: Arc<Ctx>,
    lease: Lease,
    lost: CancellationToken,
    progress: Progress,
) -> Option<Lease> {
    let holds = move || progress.holds();
    let kept = weir_bus::lease::keep(ctx.bus.leases.as_ref(), lease, &lost, &holds).await;
    if kept.is_none() {
        lost.cancel();
    }
    kept
}

#[cfg(test)]
mod tests;
