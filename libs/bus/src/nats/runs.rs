//! Run requests on NATS: `WEIR_RUNS` is a work-queue stream of subjects
//! `weir.runs.>`; a request for agent A goes to `weir.runs.A` and is read
//! through the durable consumer `weir-runs-A` (filtered on that subject),
//! which every worker of A shares, Rust or Python alike. A stream made by
//! an older release (one subject `weir.runs`, one consumer for every
//! agent) is migrated when a node starts: its waiting requests move to
//! their agents' subjects, and its consumer, whose filter would overlap
//! every agent's, is deleted, so that a producer of that release left
//! running reports failed takes instead of serving a queue nobody fills.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use weir_protocol::RunRequest;

use super::{NatsBus, RUNS_STREAM};
use crate::{check_agent_name, BusConfig, BusError, RunAck, RunQueue, RunTicket};

/// The subjects of `WEIR_RUNS`: `weir.runs.<agent>`.
pub const RUNS_SUBJECTS: &str = "weir.runs.>";
pub const RUNS_PREFIX: &str = "weir.runs.";
/// Each agent's durable consumer is `weir-runs-<agent>`.
pub const RUNS_CONSUMER_PREFIX: &str = "weir-runs-";
/// The one subject and consumer of releases before per-agent queues.
pub const LEGACY_RUNS_SUBJECT: &str = "weir.runs";
pub const LEGACY_RUNS_CONSUMER: &str = "weir-producers";

/// The subject of an agent's run requests.
pub fn runs_subject(agent: &str) -> String {
    format!("{RUNS_PREFIX}{agent}")
}

/// `WEIR_RUNS`: the work queue of run requests, a subject per agent.
pub fn runs_config(config: &BusConfig) -> stream::Config {
    stream::Config {
        name: RUNS_STREAM.into(),
        subjects: vec![RUNS_SUBJECTS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: config.retention,
        duplicate_window: config.duplicate_window.min(config.retention),
        storage: stream::StorageType::File,
        num_replicas: config.replicas.into(),
        ..Default::default()
    }
}

/// The consumer every worker of `agent` reads, as each of them makes it
/// (the Python package makes the same one).
pub fn consumer_config(agent: &str, config: &BusConfig) -> consumer::pull::Config {
    let name = format!("{RUNS_CONSUMER_PREFIX}{agent}");
    consumer::pull::Config {
        durable_name: Some(name.clone()),
        name: Some(name),
        filter_subject: runs_subject(agent),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.run_ack_wait,
        ..Default::default()
    }
}

/// Brings a stream of an older release to per-agent subjects (see the
/// module docs); a stream already migrated is returned as it is.
pub(super) async fn migrate_legacy(
    js: &jetstream::Context,
    runs: stream::Stream,
) -> Result<stream::Stream, BusError> {
    let have = runs.cached_info().config.clone();
    if !have.subjects.iter().any(|s| s == LEGACY_RUNS_SUBJECT) {
        return Ok(runs);
    }
    tracing::warn!(
        "stream {RUNS_STREAM} was made by an older weir release (one queue on \
         {LEGACY_RUNS_SUBJECT}); moving it to per-agent queues ({RUNS_SUBJECTS})"
    );
    let refused = |step: &str, e: &dyn std::fmt::Display| {
        BusError::Unsupported(format!(
            "stream {RUNS_STREAM} was made by an older weir release and could not be \
             migrated to per-agent queues ({step}: {e}); stop the older producers and \
             delete the stream (`nats stream rm {RUNS_STREAM}`) to start afresh"
        ))
    };
    let mut both = have.clone();
    both.subjects = vec![LEGACY_RUNS_SUBJECT.into(), RUNS_SUBJECTS.into()];
    js.update_stream(both)
        .await
        .map_err(|e| refused("adding the new subjects", &e))?;
    match runs.delete_consumer(LEGACY_RUNS_CONSUMER).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => return Err(refused("deleting the old consumer", &e)),
    }
    let moved = move_legacy_requests(js, &runs).await?;
    let mut only_new = have;
    only_new.subjects = vec![RUNS_SUBJECTS.into()];
    js.update_stream(only_new)
        .await
        .map_err(|e| refused("removing the old subject", &e))?;
    // Requests an older edge queued meanwhile are still stored: move them too.
    let moved = moved + move_legacy_requests(js, &runs).await?;
    tracing::info!(moved, "stream {RUNS_STREAM} migrated to per-agent queues");
    js.get_stream(RUNS_STREAM)
        .await
        .map_err(BusError::unavailable)
}

/// Moves every request stored on the legacy subject to its agent's
/// subject, oldest first, under its original message id.
async fn move_legacy_requests(
    js: &jetstream::Context,
    runs: &stream::Stream,
) -> Result<usize, BusError> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let mut moved = 0;
    loop {
        let msg = match runs
            .get_first_raw_message_by_subject(LEGACY_RUNS_SUBJECT, 1)
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(moved),
            Err(e) => return Err(BusError::unavailable(e)),
        };
        match serde_json::from_slice::<RunRequest>(&msg.payload) {
            Ok(run) if check_agent_name(&run.agent).is_ok() => {
                publish(js, &run).await?;
                moved += 1;
            }
            _ => tracing::warn!(seq = msg.sequence, "dropped a malformed legacy run request"),
        }
        runs.delete_message(msg.sequence)
            .await
            .map_err(BusError::unavailable)?;
    }
}

async fn publish(js: &jetstream::Context, run: &RunRequest) -> Result<(), BusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("run:{}", run.session).as_str());
    let payload = serde_json::to_vec(run).expect("run requests serialise");
    js.publish_with_headers(runs_subject(&run.agent), headers, payload.into())
        .await
        .map_err(BusError::unavailable)?
        .await
        .map_err(BusError::unavailable)?;
    Ok(())
}

/// Each agent's consumer, made on first use.
#[derive(Default)]
pub(super) struct Consumers(tokio::sync::Mutex<HashMap<String, consumer::PullConsumer>>);

impl NatsBus {
    async fn runs_consumer(&self, agent: &str) -> Result<consumer::PullConsumer, BusError> {
        let mut consumers = self.runs_consumers.0.lock().await;
        if let Some(c) = consumers.get(agent) {
            return Ok(c.clone());
        }
        let c = self
            .runs
            .get_or_create_consumer(
                &format!("{RUNS_CONSUMER_PREFIX}{agent}"),
                consumer_config(agent, &self.config),
            )
            .await
            .map_err(BusError::unavailable)?;
        consumers.insert(agent.to_owned(), c.clone());
        Ok(c)
    }
}

struct NatsAck(jetstream::Message);

#[async_trait]
impl RunAck for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.double_ack().await.map_err(BusError::unavailable)
    }

    async fn retry(self: Box<Self>, after: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(jetstream::AckKind::Nak(Some(after)))
            .await
            .map_err(BusError::unavailable)
    }
}

#[async_trait]
impl RunQueue for NatsBus {
    async fn enqueue(&self, run: &RunRequest) -> Result<(), BusError> {
        check_agent_name(&run.agent)?;
        publish(&self.js, run).await
    }

    async fn take(
        &self,
        agent: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RunTicket>, BusError> {
        check_agent_name(agent)?;
        let consumer = self.runs_consumer(agent).await?;
        // A pull's end is the server's word (its messages, or "expired"):
        // a pull sent to a consumer leader that went off the network never
        // ends. So each has a deadline of its own, past which what came is
        // taken and the pull given up.
        let timeout = self.config.request_timeout;
        // What is waiting now, in one request; else wait for the first.
        let waiting = consumer
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(BusError::unavailable)?;
        let taken = tickets(waiting, timeout).await?;
        if !taken.is_empty() {
            return Ok(taken);
        }
        let first = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(BusError::unavailable)?;
        tickets(first, wait + timeout).await
    }
}

/// The run requests of a pull, read until it ends or for `within` at most;
/// malformed ones are terminated.
async fn tickets(
    mut messages: consumer::pull::Batch,
    within: Duration,
) -> Result<Vec<RunTicket>, BusError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, messages.next()).await {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) if out.is_empty() => return Err(BusError::unavailable(e)),
            // What came before the error is taken (else it would wait out
            // the ack wait).
            Err(e) => {
                tracing::debug!(error = %e, "a pull ended early; taking what came");
                break;
            }
        };
        match serde_json::from_slice::<RunRequest>(&msg.payload) {
            Ok(request) => out.push(RunTicket {
                request,
                ack: Box::new(NatsAck(msg)),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "dropped malformed run request");
                let _ = msg.ack_with(jetstream::AckKind::Term).await;
            }
        }
    }
    Ok(out)
}
