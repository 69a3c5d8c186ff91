//! The bus on NATS: JetStream stream `WEIR_EVENTS` (subjects `weir.ev.*`,
//! retention by age) holds every session's log; `WEIR_RUNS` is a work queue
//! read through one durable consumer shared by all producer workers; control
//! goes over core NATS on `weir.ctl.<session>`.
//!
//! Appends carry `Nats-Msg-Id` (retries are stored once) and
//! `Nats-Expected-Last-Subject-Sequence` (the fence: a writer that lost the
//! session cannot interleave). Follows are ordered push consumers starting
//! at the subject's last message; reads are pull consumers fetched page by
//! page, so a slow reader holds at most one page.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::OnceCell;
use weir_protocol::{ControlOp, RawEvent, RunRequest, SessionId};

use crate::{
    msg_id, Appended, BusConfig, BusError, ControlChannel, EventLog, EventStream, Fence, LastEvent,
    LogReader, RunAck, RunQueue, RunTicket,
};

pub const EVENTS_STREAM: &str = "WEIR_EVENTS";
pub const RUNS_STREAM: &str = "WEIR_RUNS";
/// `WEIR_EVENTS` republishes every stored message to `weir.live.<session>`.
pub const LIVE_PREFIX: &str = "weir.live.";
pub const RUNS_SUBJECT: &str = "weir.runs";
pub const RUNS_CONSUMER: &str = "weir-producers";
/// Header with the last seq carried by a message.
pub const SEQ_HEADER: &str = "Weir-Seq";
const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

pub struct NatsBus {
    client: Client,
    js: jetstream::Context,
    events: stream::Stream,
    runs: stream::Stream,
    runs_consumer: OnceCell<consumer::PullConsumer>,
    config: BusConfig,
    /// Counts reconnections to the server. Ordered consumers are ephemeral
    /// and die with a restarted server, so follows end on a reconnect and
    /// their callers follow again (and fill any gap from the log).
    reconnects: tokio::sync::watch::Sender<u64>,
}

impl NatsBus {
    pub async fn connect(url: &str, name: &str, config: BusConfig) -> Result<NatsBus, BusError> {
        let reconnects = tokio::sync::watch::Sender::new(0u64);
        let on_event = reconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let on_event = on_event.clone();
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS disconnected");
                            metrics::counter!(weir_telemetry::names::BUS_DISCONNECTS).increment(1);
                        }
                        async_nats::Event::Connected => {
                            tracing::info!("NATS connected");
                            on_event.send_modify(|n| *n += 1);
                            if *on_event.borrow() > 1 {
                                metrics::counter!(weir_telemetry::names::BUS_RECONNECTS)
                                    .increment(1);
                            }
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(BusError::unavailable)?;
        let js = jetstream::new(client.clone());
        let events = ensure_stream(
            &js,
            stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["weir.ev.*".into()],
                max_age: config.retention,
                duplicate_window: config.duplicate_window.min(config.retention),
                storage: stream::StorageType::File,
                allow_direct: true,
                republish: Some(stream::Republish {
                    source: "weir.ev.*".into(),
                    destination: format!("{LIVE_PREFIX}{{{{wildcard(1)}}}}"),
                    headers_only: false,
                }),
                ..Default::default()
            },
        )
        .await?;
        let runs = ensure_stream(
            &js,
            stream::Config {
                name: RUNS_STREAM.into(),
                subjects: vec![RUNS_SUBJECT.into()],
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: config.retention,
                duplicate_window: config.duplicate_window.min(config.retention),
                storage: stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(NatsBus {
            client,
            js,
            events,
            runs,
            runs_consumer: OnceCell::new(),
            config,
            reconnects,
        })
    }

    /// The events of the session's last stored message.
    async fn last_message(&self, session: &SessionId) -> Result<Option<Vec<RawEvent>>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .events
            .get_last_raw_message_by_subject(&session.events_subject())
            .await
        {
            Ok(msg) => Ok(Some(parse_message(&msg.payload)?)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn runs_consumer(&self) -> Result<&consumer::PullConsumer, BusError> {
        self.runs_consumer
            .get_or_try_init(|| async {
                self.runs
                    .get_or_create_consumer(
                        RUNS_CONSUMER,
                        consumer::pull::Config {
                            durable_name: Some(RUNS_CONSUMER.into()),
                            ack_policy: consumer::AckPolicy::Explicit,
                            ack_wait: self.config.run_ack_wait,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(BusError::unavailable)
            })
            .await
    }
}

/// Creates the stream, or takes the existing one as it is (the first node to
/// start decides its settings; changing them is an operator's act).
async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, BusError> {
    let mut last_err = None;
    // Creation races between nodes starting together resolve on a retry.
    for _ in 0..5 {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) if s.cached_info().config.republish != config.republish => {
                // A stream made by an older weir: add the live republish.
                let mut updated = s.cached_info().config.clone();
                updated.republish = config.republish.clone();
                js.update_stream(updated)
                    .await
                    .map_err(BusError::unavailable)?;
                return js
                    .get_stream(&config.name)
                    .await
                    .map_err(BusError::unavailable);
            }
            Ok(s) => return Ok(s),
            Err(e) => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err(BusError::unavailable(last_err.expect("set in the loop")))
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
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id(session, events).as_str());
        headers.insert(SEQ_HEADER, last.seq.to_string().as_str());
        headers.insert(EXPECTED_LAST_SUBJECT_SEQ, fence.0.to_string().as_str());
        let payload = weir_protocol::event::encode_message(events);
        let ack = self
            .js
            .publish_with_headers(session.events_subject(), headers, payload)
            .await
            .map_err(BusError::unavailable)?
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::WrongLastSequence => BusError::Fenced,
                _ => BusError::unavailable(e),
            })?;
        Ok(Appended {
            fence: Fence(ack.sequence),
            duplicate: ack.duplicate,
        })
    }

    async fn last(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .events
            .get_last_raw_message_by_subject(&session.events_subject())
            .await
        {
            Ok(msg) => {
                let mut events = parse_message(&msg.payload)?;
                Ok(events.pop().map(|event| LastEvent {
                    event,
                    fence: Fence(msg.sequence),
                }))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn reader(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Box<dyn LogReader>, BusError> {
        Ok(Box::new(NatsReader {
            events: self.events.clone(),
            subject: session.events_subject(),
            cursor: after,
            next_stream_seq: None,
            consumer: None,
            leftover: VecDeque::new(),
        }))
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
        // The server has the subscription before the last message is read,
        // so nothing falls between the two; repeats are dropped by seq.
        self.client.flush().await.map_err(BusError::unavailable)?;
        let last = self.last_message(session).await?;
        let mut reconnected = self.reconnects.subscribe();
        reconnected.borrow_and_update();
        let live = live
            .map(|m| parse_message(&m.payload))
            .take_until(async move {
                let _ = reconnected.changed().await;
            });
        Ok(futures::stream::iter(last.map(Ok)).chain(live).boxed())
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

/// Reads a session's log page by page through an ephemeral pull consumer,
/// re-created from where it stopped if the server forgot it.
struct NatsReader {
    events: stream::Stream,
    subject: String,
    cursor: u64,
    next_stream_seq: Option<u64>,
    consumer: Option<consumer::PullConsumer>,
    leftover: VecDeque<RawEvent>,
}

impl NatsReader {
    async fn consumer(&mut self) -> Result<consumer::PullConsumer, BusError> {
        if let Some(c) = &self.consumer {
            return Ok(c.clone());
        }
        if self.next_stream_seq.is_none() && self.cursor > 0 {
            self.next_stream_seq = self.locate().await?;
        }
        let deliver_policy = match self.next_stream_seq {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::All,
        };
        let c = self
            .events
            .create_consumer(consumer::pull::Config {
                filter_subject: self.subject.clone(),
                deliver_policy,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(BusError::unavailable)?;
        self.consumer = Some(c.clone());
        Ok(c)
    }

    /// The stream sequence of the first message holding a seq after the
    /// cursor, found by bisection over the stream (a few direct reads)
    /// instead of replaying the session from its start.
    async fn locate(&self) -> Result<Option<u64>, BusError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let last = match self
            .events
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None)
            }
            Err(e) => return Err(BusError::unavailable(e)),
        };
        if last_seq_in(&last)? <= self.cursor {
            return Ok(Some(last.sequence + 1));
        }
        let (mut lo, mut hi) = (1, last.sequence);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next = self
                .events
                .raw_message_builder()
                .sequence(mid)
                .next_by_subject(self.subject.clone())
                .send()
                .await;
            match next {
                Ok(m) if last_seq_in(&m)? <= self.cursor => lo = m.sequence + 1,
                Ok(_) => hi = mid,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => hi = mid,
                Err(e) => return Err(BusError::unavailable(e)),
            }
        }
        Ok(Some(lo))
    }

    /// One fetch of up to `max` messages; false when the log had nothing more.
    async fn fetch(&mut self, max: usize) -> Result<bool, BusError> {
        let consumer = self.consumer().await?;
        let mut messages = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(BusError::unavailable)?;
        let mut got = false;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(BusError::unavailable)?;
            if let Ok(info) = msg.info() {
                self.next_stream_seq = Some(info.stream_sequence + 1);
            }
            got = true;
            for ev in parse_message(&msg.payload)? {
                if ev.seq > self.cursor {
                    self.cursor = ev.seq;
                    self.leftover.push_back(ev);
                }
            }
        }
        Ok(got)
    }
}

#[async_trait]
impl LogReader for NatsReader {
    async fn next_page(&mut self, max: usize) -> Result<Vec<RawEvent>, BusError> {
        let max = max.max(1);
        while self.leftover.is_empty() {
            let fetched = match self.fetch(max).await {
                Ok(f) => f,
                Err(first) => {
                    // The server may have dropped an idle consumer: start a
                    // new one where this one stopped, once.
                    tracing::debug!(error = %first, "log reader re-created");
                    self.consumer = None;
                    self.fetch(max).await?
                }
            };
            if !fetched {
                break;
            }
        }
        let n = self.leftover.len().min(max);
        Ok(self.leftover.drain(..n).collect())
    }
}

impl Drop for NatsReader {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            let name = c.cached_info().name.clone();
            let events = self.events.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = events.delete_consumer(&name).await;
                });
            }
        }
    }
}

#[async_trait]
impl ControlChannel for NatsBus {
    async fn send(&self, session: &SessionId, op: ControlOp) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&op).expect("control ops serialise");
        self.client
            .publish(session.control_subject(), payload.into())
            .await
            .map_err(BusError::unavailable)?;
        self.client.flush().await.map_err(BusError::unavailable)
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

struct NatsAck(jetstream::Message);

#[async_trait]
impl RunAck for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.double_ack().await.map_err(BusError::unavailable)
    }
}

#[async_trait]
impl RunQueue for NatsBus {
    async fn enqueue(&self, run: &RunRequest) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("run:{}", run.session).as_str());
        let payload = serde_json::to_vec(run).expect("run requests serialise");
        self.js
            .publish_with_headers(RUNS_SUBJECT, headers, payload.into())
            .await
            .map_err(BusError::unavailable)?
            .await
            .map_err(BusError::unavailable)?;
        Ok(())
    }

    async fn take(&self, max: usize, wait: Duration) -> Result<Vec<RunTicket>, BusError> {
        let consumer = self.runs_consumer().await?;
        // What is waiting now, in one request; else wait for the first.
        let waiting = consumer
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(BusError::unavailable)?;
        let taken = tickets(waiting).await?;
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
        tickets(first).await
    }
}

/// The run requests of a pull; malformed ones are terminated.
async fn tickets(mut messages: consumer::pull::Batch) -> Result<Vec<RunTicket>, BusError> {
    let mut out = Vec::new();
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(BusError::unavailable)?;
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
