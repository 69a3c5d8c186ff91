//! The bus on NATS: JetStream stream `WEIR_EVENTS` (subjects `weir.ev.*`,
//! retention by age) holds every session's log; control
//! goes over core NATS on `weir.ctl.<session>`; run requests are in
//! `WEIR_RUNS`, one subject and durable consumer per agent ([`runs`]).
//!
//! Appends carry `Nats-Msg-Id` (retries are stored once) and
//! `Nats-Expected-Last-Subject-Sequence` (the fence: a writer that lost the
//! session cannot interleave). A retry of a message that was stored but
//! whose acknowledgement was lost carries a fence that is now stale: the
//! server may answer it as a duplicate, or refuse the fence (2.15.1 does, as
//! measured by the conformance suite and the Python publisher's tests; so
//! does any server once the id left the duplicate window). A refused fence
//! is resolved from the session's last stored message and its
//! `Nats-Msg-Id`: if that is this message (its id and its bytes), the
//! append is a duplicate. A duplicate acknowledgement is checked the same
//! way: the id names only the seqs, and two writers (a lapsed producer and
//! the reaper) can write the same seqs.
//! Follows are core subscriptions to the stream's republish, starting from
//! the subject's last message; reads are batched direct gets, a page per
//! request and no consumer on the server ([`reader`]), so a slow reader
//! holds at most one page. [`setup`]
//! connects, checks the server version and makes the streams.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use weir_protocol::{ControlOp, RawEvent, SessionId};

mod fence;
mod inputs;
mod leases;
mod operators;
mod reader;
mod resend;
mod runs;
mod setup;
mod watchdog;

pub use inputs::INPUTS_BUCKET;
pub use leases::LEASES_BUCKET;
pub use operators::{NODES_BUCKET, NOTICE_SUBJECT};

pub use runs::{
    consumer_config, runs_config, runs_subject, LEGACY_RUNS_CONSUMER, LEGACY_RUNS_SUBJECT,
    RUNS_CONSUMER_PREFIX, RUNS_SUBJECTS,
};
pub use setup::{check_version, server_addrs, MIN_SERVER};

use crate::{
    msg_id, Appended, BusConfig, BusError, ControlChannel, EventLog, EventStream, Fence, LastEvent,
    LogReader,
};

pub const EVENTS_STREAM: &str = "WEIR_EVENTS";
pub const RUNS_STREAM: &str = "WEIR_RUNS";
/// `WEIR_EVENTS` republishes every stored message to `weir.live.<session>`.
pub const LIVE_PREFIX: &str = "weir.live.";
/// Header with the last seq carried by a message.
pub const SEQ_HEADER: &str = "Weir-Seq";
/// The fence header of every append: the stream sequence of the subject's last message.
pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

pub struct NatsBus {
    client: Client,
    js: jetstream::Context,
    events: stream::Stream,
    runs: stream::Stream,
    runs_consumers: runs::Consumers,
    nodes: jetstream::kv::Store,
    leases: jetstream::kv::Store,
    inputs: jetstream::kv::Store,
    config: BusConfig,
    /// Counts reconnections to the server. Ordered consumers are ephemeral
    /// and die with a restarted server, so follows end on a reconnect and
    /// their callers follow again (and fill any gap from the log).
    reconnects: tokio::sync::watch::Sender<u64>,
    /// Leaves a server that stopped answering for JetStream ([`watchdog`]).
    watchdog: std::sync::Arc<watchdog::Watchdog>,
    stop_watchdog: tokio_util::sync::CancellationToken,
}

impl NatsBus {
    pub async fn connect(
        urls: &[String],
        name: &str,
        config: BusConfig,
    ) -> Result<NatsBus, BusError> {
        let reconnects = tokio::sync::watch::Sender::new(0u64);
        let dog = std::sync::Arc::new(watchdog::Watchdog::new(
            config.timings(),
            crate::Reach::default(),
        ));
        let client = setup::connect(urls, name, &config, reconnects.clone(), dog.clone()).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.request_timeout);
        let events = setup::ensure_stream(&js, setup::events_config(&config)).await?;
        let runs = setup::ensure_stream(&js, runs::runs_config(&config)).await?;
        let runs = runs::migrate_legacy(&js, runs).await?;
        let nodes = operators::nodes_bucket(&js, &config).await?;
        let leases = leases::leases_bucket(&js, &config).await?;
        let inputs = inputs::inputs_bucket(&js, &config).await?;
        let stop_watchdog = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let (dog, client, table) = (dog.clone(), client.clone(), leases.clone());
            let key = format!("watchdog.{}", crate::operators::node_key(name));
            let (moved, stop, js) = (reconnects.subscribe(), stop_watchdog.clone(), js.clone());
            async move { dog.run(client, js, table, key, moved, stop).await }
        });
        Ok(NatsBus {
            client,
            js,
            events,
            runs,
            runs_consumers: runs::Consumers::default(),
            nodes,
            leases,
            inputs,
            config,
            reconnects,
            watchdog: dog,
            stop_watchdog,
        })
    }

    /// Whether this node reaches the log, as the watchdog sees it.
    pub fn reach(&self) -> crate::Reach {
        self.watchdog.reach()
    }

    /// Resolves a refused fence against the session's last stored message
    /// ([`fence::refused`]).
    async fn stored_as_last(
        &self,
        session: &SessionId,
        id: &str,
        payload: &[u8],
        fence: Fence,
    ) -> Result<Appended, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let last = match self
            .events
            .get_last_raw_message_by_subject(&session.events_subject())
            .await
        {
            Ok(m) => Some(m),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(BusError::unavailable(e)),
        };
        let last = last.as_ref().map(|m| fence::Last {
            sequence: m.sequence,
            id: m.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            payload: &m.payload,
        });
        fence::refused(last, fence, id, payload)
    }

    /// Resolves a duplicate acknowledgement. The server deduplicates by id
    /// alone, and another writer's message for the same seqs has the same
    /// id (an old producer whose publish was in flight when its lease
    /// lapsed, and the reaper that ended the session after the same last
    /// message): the append is a duplicate only if the stored message is
    /// these bytes, and fenced otherwise.
    async fn stored_is(&self, sequence: u64, payload: &[u8]) -> Result<Appended, BusError> {
        let stored = self
            .events
            .get_raw_message(sequence)
            .await
            .map_err(BusError::unavailable)?;
        if stored.payload == payload {
            Ok(Appended {
                fence: Fence(sequence),
                duplicate: true,
            })
        } else {
            Err(BusError::Fenced)
        }
    }

    /// A core NATS publish (at most once) that is on the wire when this
    /// returns: refused at once while disconnected (never buffered for a
    /// server that may not come back soon), and bounded by the request
    /// timeout.
    async fn publish_now(&self, subject: String, payload: Vec<u8>) -> Result<(), BusError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable("not connected to NATS".into()));
        }
        let sent = async {
            self.client
                .publish(subject, payload.into())
                .await
                .map_err(BusError::unavailable)?;
            self.client.flush().await.map_err(BusError::unavailable)
        };
        tokio::time::timeout(self.config.request_timeout, sent)
            .await
            .map_err(|_| BusError::Unavailable("NATS did not answer in time".into()))?
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.stop_watchdog.cancel();
    }
}

/// The last seq a stored message carries: its `Weir-Seq` header, or its payload.
fn last_seq_in(msg: &jetstream::message::StreamMessage) -> Result<u64, BusError> {
    let header = msg
        .headers
        .get(SEQ_HEADER)
        .and_then(|v| v.as_str().parse::<u64>().ok());
    match header {
        Some(seq) => Ok(seq),
        None => Ok(parse_message(&msg.payload)?.last().map_or(0, |e| e.seq)),
    }
}

fn parse_message(payload: &[u8]) -> Result<Vec<RawEvent>, BusError> {
    Ok(RawEvent::parse_message(payload)?)
}

#[async_trait]
impl EventLog for NatsBus {
    async fn append(
        &self,
        session: &SessionId,
        events: &[RawEvent],
        fence: Fence,
    ) -> Result<Appended, BusError> {
        let last = events.last().ok_or(weir_protocol::EventError::Empty)?;
        let id = msg_id(session, events);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(SEQ_HEADER, last.seq.to_string().as_str());
        headers.insert(EXPECTED_LAST_SUBJECT_SEQ, fence.0.to_string().as_str());
        let payload = weir_protocol::event::encode_message(events);
        let copies = std::sync::atomic::AtomicU32::new(0);
        let attempt = || async {
            if copies.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                metrics::counter!(weir_telemetry::names::APPEND_RESENDS).increment(1);
            }
            let subject = session.events_subject();
            match self
                .js
                .publish_with_headers(subject, headers.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        };
        // Sent again while unanswered (a stream electing its leader drops
        // it); settled by an ack, or by a refusal that another copy cannot
        // change. Bounded, and abandoned on a reconnect: the caller retries
        // the same message (same id, same fence) on the new server.
        let settles = |r: &Result<_, jetstream::context::PublishError>| match r {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                PublishErrorKind::WrongLastSequence | PublishErrorKind::MaxPayloadExceeded
            ),
        };
        let publish = resend::resending(self.config.timings().probe_every, attempt, settles);
        let timed_out =
            |e: &jetstream::context::PublishError| e.kind() == PublishErrorKind::TimedOut;
        let ack = self
            .write(self.config.request_timeout, publish, timed_out)
            .await?;
        match ack {
            Ok(ack) if ack.duplicate => self.stored_is(ack.sequence, &payload).await,
            Ok(ack) => Ok(Appended {
                fence: Fence(ack.sequence),
                duplicate: false,
            }),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                self.stored_as_last(session, &id, &payload, fence).await
            }
            // Busy (10164: another proposal for the subject is in flight;
            // 10158: this message is), a leader election, a timeout: the
            // caller retries the same message.
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn last(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .events
            .get_last_raw_message_by_subject(&session.events_subject())
            .await
        {
            Ok(msg) => last_event(&msg.payload, msg.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn latest(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError> {
        match direct_last(&self.events, &session.events_subject()).await? {
            Some(msg) => last_event(&msg.payload, msg.sequence),
            None => Ok(None),
        }
    }

    async fn reader(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Box<dyn LogReader>, BusError> {
        Ok(Box::new(reader::NatsReader::new(
            self.client.clone(),
            self.events.clone(),
            session.events_subject(),
            after,
            self.config.request_timeout,
        )))
    }

    async fn follow(&self, session: &SessionId) -> Result<EventStream, BusError> {
        // Live messages come from the stream's republish of what it stored:
        // one core subscription, no consumer on the server, and never a
        // message the stream refused (a fenced or duplicate publish).
        let live = self
            .client
            .subscribe(format!("{LIVE_PREFIX}{session}"))
            .await
            .map_err(BusError::unavailable)?;
        // The subscription is queued on this connection, and the server
        // takes a connection's commands in order: it has the subscription
        // before anything sent after it — the request for the last message
        // (made when the stream is first read), and the run request an edge
        // queues right after following a new session. So follow returns
        // without a round trip, nothing falls between the last message and
        // the live ones, and repeats are dropped by seq. Live messages do
        // not wait for the last one: while the stream elects a leader, the
        // replicas may leave that request unanswered for the whole timeout
        // as the new leader's messages arrive (the follower drops the older
        // one, or reads a gap from the log).
        let (events, id) = (self.events.clone(), session.clone());
        let last = futures::stream::once(async move { last_message(&events, &id).await })
            .filter_map(|r| futures::future::ready(r.transpose()));
        let mut reconnected = self.reconnects.subscribe();
        reconnected.borrow_and_update();
        let live = live
            .map(|m| parse_message(&m.payload))
            .take_until(async move {
                let _ = reconnected.changed().await;
            });
        Ok(futures::stream::select(last, live).boxed())
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable("not connected to NATS".into()));
        }
        tokio::time::timeout(Duration::from_secs(2), self.events.get_info())
            .await
            .map_err(|_| BusError::Unavailable("JetStream did not answer".into()))?
            .map_err(BusError::unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl ControlChannel for NatsBus {
    async fn send(&self, session: &SessionId, op: ControlOp) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&op).expect("control ops serialise");
        self.publish_now(session.control_subject(), payload).await
    }

    async fn subscribe(
        &self,
        session: &SessionId,
    ) -> Result<BoxStream<'static, ControlOp>, BusError> {
        let sub = self
            .client
            .subscribe(session.control_subject())
            .await
            .map_err(BusError::unavailable)?;
        // The server has the subscription when this returns (an op sent
        // after it is delivered, one sent before it is in the store); while
        // disconnected, it is made on the reconnect and this does not wait.
        let _ = tokio::time::timeout(self.config.request_timeout, self.client.flush()).await;
        Ok(sub
            .filter_map(|m| async move {
                let op = serde_json::from_slice::<ControlOp>(&m.payload);
                if op.is_err() {
                    tracing::warn!(subject = %m.subject, "ignored malformed control message");
                }
                op.ok()
            })
            .boxed())
    }
}

/// The events of the session's last stored message in `events`, for a
/// follow: a direct get (`$JS.API.DIRECT.GET`), which any replica answers
/// without the JetStream API's queue or its JSON and base64. A replica that
/// lags may answer an older message; the live messages after it then show
/// a gap, which the follower fills from the log like any other. (Where an
/// answer decides something — resume checks, fences — [`EventLog::last`]
/// asks the stream's leader.)
async fn last_message(
    events: &stream::Stream,
    session: &SessionId,
) -> Result<Option<Vec<RawEvent>>, BusError> {
    Ok(
        match direct_last(events, &session.events_subject()).await? {
            Some(msg) => Some(parse_message(&msg.payload)?),
            None => None,
        },
    )
}

/// The last event of a stored message, fenced at its stream sequence.
fn last_event(payload: &[u8], sequence: u64) -> Result<Option<LastEvent>, BusError> {
    let mut events = parse_message(payload)?;
    Ok(events.pop().map(|event| LastEvent {
        event,
        fence: Fence(sequence),
    }))
}

/// The session's last stored message, from whichever replica answers a
/// direct get (no JetStream API request, no JSON).
pub(super) async fn direct_last(
    events: &stream::Stream,
    subject: &str,
) -> Result<Option<jetstream::message::StreamMessage>, BusError> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    match events.direct_get_last_for_subject(subject).await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(BusError::unavailable(e)),
    }
}
