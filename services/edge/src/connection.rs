//! A WebSocket client's connection, generic over its sink and stream so that
//! unit tests drive it with channels (the socket's codec is in
//! [`crate::websocket`], the endpoint in [`crate::ws`]).
//!
//! Events flow subscription → bounded buffer → socket, all in the
//! connection's one task (the write half is [`crate::writer`]). Pulling stops when
//! the buffer reaches its high watermark and starts again at the low one;
//! the writer coalesces what is buffered into one frame (up to the next
//! multiple of `max_frame_events` in seqs and `max_frame_bytes` of JSON), so
//! a client that is behind gets fewer, larger frames. The buffer holds
//! [`Batch`]es of the session's shared events, and a frame is taken from the
//! session's shared [`Frames`]: clients at one position write the same
//! bytes, encoded once on the node. A write
//! that does not finish within the write timeout closes the connection with
//! 4008; the client resumes from its last seq, fed from the log.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::future::poll_fn;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Sink, Stream, StreamExt};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use weir_protocol::frame::{close, events_frame};
use weir_protocol::{ClientFrame, ControlOp, RawEvent, ServerFrame};
use weir_telemetry::names;

use crate::frames::{frame_len, frame_room, Batch, Encoding, Frames};
use crate::subscription::{DeliveryError, Subscription};
use crate::writer::{Frame, WriteError, Writer};
pub use tungstenite::Utf8Bytes;

/// What the connection writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text frame; its bytes may be shared with other connections.
    Text(Utf8Bytes),
    /// The answer to a client's ping, with its payload.
    Pong(Bytes),
    Close(u16, String),
}

/// What the client sent, as the connection needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Text(String),
    /// A binary frame (not part of the protocol).
    Binary,
    /// A frame over the size limit.
    TooLarge,
    /// A ping, to be answered with its payload.
    Ping(Bytes),
    /// A frame that breaks the WebSocket protocol: the close code to send
    /// and why.
    Invalid(u16, &'static str),
    /// The client closed or the socket failed.
    Closed,
}

/// Acts on client frames (acks and control); implemented by the edge over
/// its store and bus, and by tests.
#[async_trait::async_trait]
pub trait ClientActions: Send + Sync {
    async fn ack(&self, seq: u64);
    /// Ok, or an error frame's `(code, message)`.
    async fn control(&self, op: ControlOp) -> Result<(), (String, String)>;
}

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub buffer: usize,
    pub high: usize,
    pub low: usize,
    pub max_frame_events: usize,
    pub max_frame_bytes: usize,
    pub heartbeat: Duration,
    pub write_timeout: Duration,
}

/// How a connection went, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnStats {
    pub events: u64,
    pub frames: u64,
    pub max_buffered: usize,
    pub backpressure_pauses: u64,
    /// The highest buffer fill at which a throttled connection pulled again.
    pub max_fill_at_resume: usize,
    pub close_code: Option<u16>,
    pub last_seq: u64,
}

/// A pull from the subscription in flight; it owns the subscription and
/// hands it back with the result, so no pull is ever dropped half-done.
type Fetch = BoxFuture<'static, (Subscription, Result<Batch, DeliveryError>)>;

/// Events pulled for the client and not yet written, in the batches they
/// came in.
struct Buffer {
    batches: VecDeque<Batch>,
    len: usize,
    /// How full it is when a frame is taken (a handle looked up once).
    fill: metrics::Histogram,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            batches: VecDeque::new(),
            len: 0,
            fill: metrics::histogram!(names::BUFFER_FILL),
        }
    }

    fn push(&mut self, batch: Batch) {
        self.len += batch.len();
        self.batches.push_back(batch);
    }

    fn iter(&self) -> impl Iterator<Item = &RawEvent> {
        self.batches.iter().flat_map(|b| b.iter())
    }

    /// Drops the first `n` events.
    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while let Some(front) = self.batches.front_mut() {
            if n < front.len() {
                front.split_to(n);
                return;
            }
            n -= front.len();
            self.batches.pop_front();
        }
    }

    /// The first `n` events, as one batch when they are in one (the usual
    /// case), else copied into one.
    fn head(&self, n: usize) -> Batch {
        match self.batches.front() {
            Some(b) if b.len() >= n => b.clone().split_to(n),
            _ => Batch::new(self.iter().take(n).cloned().collect()),
        }
    }
}

/// Frames other than events (hello, heartbeats, error replies) waiting to be
/// written; a client that keeps sending bad frames without reading is not
/// read until these are written.
const MAX_CONTROL_FRAMES: usize = 8;

/// Serves one connection until the session ends, the client leaves, a
/// limit is hit or the node drains. `hello` is written first.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S, R, N>(
    sink: S,
    mut incoming: R,
    mut notices: N,
    sub: Subscription,
    hello: ServerFrame,
    limits: Limits,
    actions: &dyn ClientActions,
    drain: CancellationToken,
) -> ConnStats
where
    S: Sink<Outgoing> + Send + Unpin + 'static,
    R: Stream<Item = Incoming> + Unpin,
    N: Stream<Item = String> + Unpin,
{
    let mut stats = ConnStats {
        last_seq: sub.cursor(),
        ..ConnStats::default()
    };
    let mut writer = Writer::new(sink, limits.write_timeout);
    let frames = sub.frames();
    let mut control: VecDeque<Outgoing> = VecDeque::from([text(hello.to_json())]);
    let mut buffer = Buffer::new();
    let mut throttled = false;
    let mut end_pulled = false;
    let mut end_written = false;
    let mut fetch: Option<Fetch> = None;
    let mut idle_since = Instant::now();
    // `sub` moves into the fetch future and comes back with its result.
    let mut parked = Some(sub);

    let close = loop {
        if !writer.is_busy() {
            if let Some(out) = control.pop_front() {
                writer.start(Frame::control(out));
            } else if end_written {
                break Some((close::DONE, None, "session ended"));
            } else if buffer.len > 0 {
                end_written = next_frame(&mut writer, &mut buffer, &frames, &limits, &mut stats);
                if throttled && buffer.len <= limits.low {
                    throttled = false;
                    stats.max_fill_at_resume = stats.max_fill_at_resume.max(buffer.len);
                }
            }
        }
        if fetch.is_none() && !throttled && !end_pulled {
            let room = limits.buffer.saturating_sub(buffer.len);
            if let (true, Some(mut s)) = (room > 0, parked.take()) {
                fetch = Some(
                    async move {
                        let r = s.next(room).await;
                        (s, r)
                    }
                    .boxed(),
                );
            }
        }
        let busy = writer.is_busy();
        let write_deadline = writer.deadline().unwrap_or_else(far_future);
        let heartbeat_at = tokio::time::Instant::from_std(idle_since + limits.heartbeat);
        tokio::select! {
            biased;
            _ = drain.cancelled() => {
                let frame = ServerFrame::Reconnect { reason: "node draining".into() };
                break Some((close::DRAINING, Some(frame), "node draining"));
            }
            written = poll_fn(|cx| writer.poll_write(cx)), if busy => {
                if written.is_err() {
                    return stats; // the client is gone
                }
                idle_since = Instant::now();
            }
            _ = tokio::time::sleep_until(write_deadline), if busy => {
                writer.close_slow().await;
                slow_consumer(&mut stats);
                return stats;
            }
            (s, result) = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                fetch = None;
                parked = Some(s);
                match result {
                    Ok(events) => {
                        end_pulled = events.last().is_some_and(|e| e.end);
                        buffer.push(events);
                        stats.max_buffered = stats.max_buffered.max(buffer.len);
                        if !throttled && buffer.len >= limits.high {
                            throttled = true;
                            stats.backpressure_pauses += 1;
                            metrics::counter!(names::BACKPRESSURE_PAUSES).increment(1);
                        }
                    }
                    Err(e @ DeliveryError::Expired { .. }) => {
                        let frame = ServerFrame::error("history_expired", e.to_string());
                        break Some((close::EXPIRED, Some(frame), "history expired"));
                    }
                }
            }
            msg = incoming.next(), if control.len() < MAX_CONTROL_FRAMES => match msg {
                None | Some(Incoming::Closed) => break None,
                Some(Incoming::TooLarge) => {
                    let frame = ServerFrame::error("frame_too_large", "client frame over the size limit");
                    break Some((close::TOO_LARGE, Some(frame), "frame too large"));
                }
                Some(Incoming::Invalid(code, reason)) => {
                    let frame = ServerFrame::error("bad_request", reason);
                    break Some((code, Some(frame), reason));
                }
                Some(Incoming::Ping(data)) => control.push_back(Outgoing::Pong(data)),
                Some(Incoming::Binary) => {
                    let frame = ServerFrame::error("bad_request", "binary frames are not part of the protocol");
                    control.push_back(text(frame.to_json()));
                }
                Some(Incoming::Text(t)) => {
                    if let Err(frame) = on_client_frame(&t, actions).await {
                        control.push_back(text(frame.to_json()));
                    }
                }
            },
            // Operators' notices (already encoded frames) go out between
            // event frames, never inside one; a client that does not read
            // them is bounded like any other control frame.
            Some(notice) = notices.next(), if control.len() < MAX_CONTROL_FRAMES => {
                control.push_back(text(notice));
            }
            _ = tokio::time::sleep_until(heartbeat_at) => {
                if !busy && control.is_empty() {
                    let beat = ServerFrame::Heartbeat { ts: weir_protocol::now_ms() };
                    control.push_back(text(beat.to_json()));
                }
                idle_since = Instant::now();
            }
        }
    };
    let Some((code, frame, reason)) = close else {
        writer.close().await;
        return stats;
    };
    // What was queued goes out first, then the reason and the close.
    control.extend(frame.map(|f| text(f.to_json())));
    control.push_back(Outgoing::Close(code, reason.into()));
    metrics::counter!(names::CLOSES, "code" => code.to_string()).increment(1);
    stats.close_code = Some(code);
    let mut written = writer.finish().await;
    while let (Ok(()), Some(out)) = (written, control.pop_front()) {
        written = writer.write(Frame::control(out)).await;
    }
    match written {
        Ok(()) => writer.close().await,
        Err(WriteError::Slow) => {
            writer.close_slow().await;
            slow_consumer(&mut stats);
        }
        Err(WriteError::Gone) => return stats,
    }
    linger(&mut incoming, stats.close_code == Some(close::TOO_LARGE)).await;
    stats
}

/// Puts the next frame of buffered events in flight, taking its bytes from
/// the session's shared frames; true if it holds `end`.
fn next_frame<S: Sink<Outgoing> + Unpin>(
    writer: &mut Writer<S>,
    buffer: &mut Buffer,
    frames: &Arc<Frames>,
    limits: &Limits,
    stats: &mut ConnStats,
) -> bool {
    buffer.fill.record(buffer.len as f64 / limits.buffer as f64);
    let room = frame_room(stats.last_seq, limits.max_frame_events).min(buffer.len);
    let n = frame_len(buffer.iter(), room, limits.max_frame_bytes);
    let events = buffer.head(n);
    buffer.advance(n);
    let frame = frames.get(Encoding::Ws, &events, |evs| events_frame(evs));
    let ts = events.iter().map(|e| e.ts).collect();
    let last = events.last().map(|e| (e.seq, e.end));
    stats.events += n as u64;
    stats.frames += 1;
    writer.start(Frame {
        out: Outgoing::Text(frame),
        ts,
    });
    let (seq, end) = last.unwrap_or((stats.last_seq, false));
    stats.last_seq = seq;
    end
}

fn text(s: String) -> Outgoing {
    Outgoing::Text(s.into())
}

fn slow_consumer(stats: &mut ConnStats) {
    metrics::counter!(names::SLOW_CONSUMERS).increment(1);
    metrics::counter!(names::CLOSES, "code" => close::SLOW_CONSUMER.to_string()).increment(1);
    stats.close_code = Some(close::SLOW_CONSUMER);
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// After our close frame, gives the client a moment to read it before the
/// socket goes: closing a socket with unread input resets it, and a reset
/// can discard the close frame on the client's side.
async fn linger<R: Stream<Item = Incoming> + Unpin>(incoming: &mut R, unreadable: bool) {
    if unreadable {
        // The rest of an oversized frame is still in the socket.
        tokio::time::sleep(Duration::from_millis(500)).await;
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Incoming::Text(_) | Incoming::Binary | Incoming::Ping(_)) =
            incoming.next().await
        {}
    })
    .await;
}

/// Handles one client text frame; Err is the error frame to send back.
async fn on_client_frame(text: &str, actions: &dyn ClientActions) -> Result<(), ServerFrame> {
    let frame = ClientFrame::parse(text).map_err(|m| ServerFrame::error("bad_request", m))?;
    match frame {
        ClientFrame::Ack { seq } => {
            actions.ack(seq).await;
            Ok(())
        }
        ClientFrame::Pause => control(actions, ControlOp::Pause).await,
        ClientFrame::Resume => control(actions, ControlOp::Resume).await,
        ClientFrame::Cancel => control(actions, ControlOp::Cancel).await,
    }
}

async fn control(actions: &dyn ClientActions, op: ControlOp) -> Result<(), ServerFrame> {
    actions
        .control(op)
        .await
        .map_err(|(code, message)| ServerFrame::Error { code, message })
}

/// The delivery metrics of one connection's transport, looked up once per
/// connection rather than once per frame.
/// Events delivered by this process, over every transport (the node's
/// load as `/v1/nodes` shows it).
pub static DELIVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct DeliveryMetrics {
    latency: metrics::Histogram,
    events: metrics::Counter,
    frames: metrics::Counter,
    events_per_frame: metrics::Histogram,
    bytes: metrics::Counter,
}

impl DeliveryMetrics {
    pub fn new(transport: &'static str) -> DeliveryMetrics {
        DeliveryMetrics {
            latency: metrics::histogram!(names::DELIVERY_LATENCY),
            events: metrics::counter!(names::EVENTS_DELIVERED, "transport" => transport),
            frames: metrics::counter!(names::FRAMES_SENT, "transport" => transport),
            events_per_frame: metrics::histogram!(names::EVENTS_PER_FRAME),
            bytes: metrics::counter!(names::BYTES_SENT, "transport" => transport),
        }
    }

    /// Counts a frame of events written to the client (`ts`: each event's `ts`).
    pub fn record(&self, ts: &[f64], bytes: usize) {
        DELIVERED.fetch_add(ts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let now = weir_protocol::now_ms();
        for t in ts {
            self.latency.record(((now - t) / 1000.0).max(0.0));
        }
        self.events.increment(ts.len() as u64);
        self.frames.increment(1);
        self.events_per_frame.record(ts.len() as f64);
        self.bytes.increment(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::channel::mpsc as fmpsc;
    use futures::SinkExt;
    use weir_bus::{Bus, BusConfig, Fence};
    use weir_protocol::{Event, SessionId};

    use super::*;
    use crate::hub::Hub;

    #[derive(Default)]
    struct Recorder {
        acks: Mutex<Vec<u64>>,
    }

    #[async_trait::async_trait]
    impl ClientActions for Recorder {
        async fn ack(&self, seq: u64) {
            self.acks.lock().unwrap().push(seq);
        }
        async fn control(&self, _op: ControlOp) -> Result<(), (String, String)> {
            Ok(())
        }
    }

    fn limits(buffer: usize, high: usize, low: usize) -> Limits {
        Limits {
            buffer,
            high,
            low,
            max_frame_events: 10,
            max_frame_bytes: 1 << 20,
            heartbeat: Duration::from_secs(60),
            write_timeout: Duration::from_secs(5),
        }
    }

    /// A session of `n` tokens and `end`, already in a memory log.
    async fn session(n: u64) -> (Bus, Hub, SessionId) {
        let bus = Bus::memory(BusConfig::default());
        let id = SessionId::parse("s").unwrap();
        let mut events: Vec<_> = (1..=n)
            .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
            .collect();
        events.push(Event::end(n + 1, weir_protocol::EndReason::Completed, None).to_raw());
        let mut fence = Fence(0);
        for chunk in events.chunks(7) {
            fence = bus.log.append(&id, chunk, fence).await.unwrap().fence;
        }
        let hub = Hub::new(bus.log.clone(), 16, 4);
        (bus, hub, id)
    }

    async fn subscription(bus: &Bus, hub: &Hub, id: &SessionId) -> Subscription {
        Subscription::new(id.clone(), hub.feed(id).await, bus.log.clone(), 0)
    }

    fn hello() -> ServerFrame {
        ServerFrame::Heartbeat { ts: 0.0 }
    }

    fn events_in(frame: &Outgoing) -> Vec<u64> {
        let Outgoing::Text(t) = frame else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        if v["type"] != "events" {
            return Vec::new();
        }
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_slow_reader_gets_coalesced_frames_within_the_watermarks() {
        let (bus, hub, id) = session(1000).await;
        let sub = subscription(&bus, &hub, &id).await;
        let (sink, mut frames) = fmpsc::channel::<Outgoing>(0);
        let (_client, incoming) = fmpsc::channel::<Incoming>(1);
        let actions = Recorder::default();
        let reader = tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut sizes = Vec::new();
            let mut close = None;
            while let Some(f) = frames.next().await {
                // A slow client: every frame takes a while to read.
                tokio::time::sleep(Duration::from_micros(300)).await;
                let s = events_in(&f);
                if !s.is_empty() {
                    sizes.push(s.len());
                }
                seqs.extend(s);
                if let Outgoing::Close(code, _) = f {
                    close = Some(code);
                }
            }
            (seqs, sizes, close)
        });
        let stats = serve(
            sink,
            incoming,
            futures::stream::pending(),
            sub,
            hello(),
            limits(100, 80, 30),
            &actions,
            CancellationToken::new(),
        )
        .await;
        let (seqs, sizes, close) = reader.await.unwrap();
        assert_eq!(seqs, (1..=1001).collect::<Vec<_>>());
        assert_eq!(close, Some(close::DONE));
        assert!(
            sizes.iter().all(|n| *n <= 10),
            "a frame over max_frame_events"
        );
        assert!(
            sizes.iter().any(|n| *n > 1),
            "nothing was coalesced: {sizes:?}"
        );
        assert!(
            stats.max_buffered <= 100,
            "buffer bound broken: {}",
            stats.max_buffered
        );
        assert!(
            stats.backpressure_pauses > 0,
            "never reached the high watermark"
        );
        assert!(
            stats.max_fill_at_resume <= 30,
            "resumed above the low watermark"
        );
        assert_eq!((stats.events, stats.close_code), (1001, Some(close::DONE)));
    }

    /// Serves a whole session to one client that reads at once; its frames.
    async fn read_all(bus: &Bus, hub: &Hub, id: &SessionId) -> Vec<Outgoing> {
        let sub = subscription(bus, hub, id).await;
        let (sink, frames) = fmpsc::channel::<Outgoing>(0);
        let (_client, incoming) = fmpsc::channel::<Incoming>(1);
        let reader = tokio::spawn(frames.collect::<Vec<_>>());
        let notices = futures::stream::pending();
        let actions = Recorder::default();
        let l = limits(100, 80, 30);
        serve(
            sink,
            incoming,
            notices,
            sub,
            hello(),
            l,
            &actions,
            CancellationToken::new(),
        )
        .await;
        reader.await.unwrap()
    }

    #[tokio::test]
    async fn subscribers_at_one_position_write_the_same_frame_bytes() {
        let (bus, hub, id) = session(300).await;
        // The feed (and its frames) lives while someone holds it: here, for
        // both, as for subscribers connected at the same time; and a third
        // subscriber holds the frames all along (a lone one keeps none).
        let feed = hub.feed(&id).await;
        let _third = feed.frames();
        let first = read_all(&bus, &hub, &id).await;
        let second = read_all(&bus, &hub, &id).await;
        let texts = |frames: &[Outgoing]| -> Vec<(usize, String)> {
            frames
                .iter()
                .filter(|f| !events_in(f).is_empty())
                .map(|f| match f {
                    Outgoing::Text(t) => (t.as_ptr() as usize, t.to_string()),
                    Outgoing::Pong(_) | Outgoing::Close(..) => {
                        unreachable!("control frames hold no events")
                    }
                })
                .collect()
        };
        let (a, b) = (texts(&first), texts(&second));
        let seqs: Vec<u64> = first.iter().flat_map(events_in).collect();
        assert_eq!(seqs, (1..=301).collect::<Vec<_>>());
        // Cut at multiples of max_frame_events (10), so both cut alike...
        assert!(a
            .iter()
            .all(|(_, t)| t.matches("\"seq\"").count() == 10 || t.contains("end")));
        assert_eq!(a.len(), b.len());
        for ((pa, ta), (pb, tb)) in a.iter().zip(&b) {
            assert_eq!(ta, tb);
            // ...and the second writes the bytes the first one's frame was
            // built in, not a copy.
            assert_eq!(pa, pb, "a frame built twice");
        }
    }

    #[tokio::test]
    async fn a_client_that_never_reads_is_closed_with_4008() {
        let (bus, hub, id) = session(100).await;
        let sub = subscription(&bus, &hub, &id).await;
        let (sink, frames) = fmpsc::channel::<Outgoing>(0);
        let (_client, incoming) = fmpsc::channel::<Incoming>(1);
        let mut l = limits(50, 40, 10);
        l.write_timeout = Duration::from_millis(200);
        let stats = serve(
            sink,
            incoming,
            futures::stream::pending(),
            sub,
            hello(),
            l,
            &Recorder::default(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(stats.close_code, Some(close::SLOW_CONSUMER));
        drop(frames);
    }

    #[tokio::test]
    async fn idle_connections_get_heartbeats_acks_are_recorded_and_drain_says_reconnect() {
        let bus = Bus::memory(BusConfig::default());
        let hub = Hub::new(bus.log.clone(), 16, 4);
        let id = SessionId::parse("idle").unwrap();
        let sub = subscription(&bus, &hub, &id).await;
        let (sink, mut frames) = fmpsc::channel::<Outgoing>(8);
        let (mut client, incoming) = fmpsc::channel::<Incoming>(4);
        let mut l = limits(50, 40, 10);
        l.heartbeat = Duration::from_millis(50);
        let drain = CancellationToken::new();
        let actions = Arc::new(Recorder::default());
        let conn = {
            let (drain, actions) = (drain.clone(), actions.clone());
            tokio::spawn(async move {
                let notices = futures::stream::pending();
                serve(
                    sink,
                    incoming,
                    notices,
                    sub,
                    hello(),
                    l,
                    actions.as_ref(),
                    drain,
                )
                .await
            })
        };
        let mut kinds = Vec::new();
        while kinds.iter().filter(|k| *k == "heartbeat").count() < 3 {
            let Some(Outgoing::Text(t)) = frames.next().await else {
                panic!("closed early")
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            kinds.push(v["type"].as_str().unwrap().to_owned());
        }
        client
            .send(Incoming::Text(r#"{"type":"ack","seq":3}"#.into()))
            .await
            .unwrap();
        client
            .send(Incoming::Text("nonsense".into()))
            .await
            .unwrap();
        let error = loop {
            let Some(Outgoing::Text(t)) = frames.next().await else {
                panic!("closed early")
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" {
                break v;
            }
        };
        assert_eq!(error["code"], "bad_request");
        assert_eq!(*actions.acks.lock().unwrap(), vec![3]);
        drain.cancel();
        let mut rest = Vec::new();
        while let Some(f) = frames.next().await {
            rest.push(f);
        }
        let Outgoing::Text(reconnect) = &rest[rest.len() - 2] else {
            panic!("{rest:?}")
        };
        assert!(reconnect.contains(r#""type":"reconnect""#));
        assert!(matches!(rest.last(), Some(Outgoing::Close(1012, _))));
        assert_eq!(conn.await.unwrap().close_code, Some(close::DRAINING));
    }

    #[tokio::test]
    async fn pings_are_answered_in_order_and_a_protocol_error_closes_with_its_code() {
        let bus = Bus::memory(BusConfig::default());
        let hub = Hub::new(bus.log.clone(), 16, 4);
        let id = SessionId::parse("pings").unwrap();
        let sub = subscription(&bus, &hub, &id).await;
        let (sink, frames) = fmpsc::channel::<Outgoing>(8);
        let (mut client, incoming) = fmpsc::channel::<Incoming>(4);
        let conn = tokio::spawn(async move {
            let notices = futures::stream::pending();
            let actions = Recorder::default();
            let drain = CancellationToken::new();
            let l = limits(50, 40, 10);
            serve(sink, incoming, notices, sub, hello(), l, &actions, drain).await
        });
        client
            .send(Incoming::Ping(Bytes::from_static(b"1")))
            .await
            .unwrap();
        client
            .send(Incoming::Ping(Bytes::from_static(b"2")))
            .await
            .unwrap();
        client
            .send(Incoming::Invalid(1007, "text frame is not UTF-8"))
            .await
            .unwrap();
        let frames: Vec<Outgoing> = frames.collect().await;
        let pongs: Vec<_> = frames
            .iter()
            .filter_map(|f| match f {
                Outgoing::Pong(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pongs, [Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
        let n = frames.len();
        let Outgoing::Text(error) = &frames[n - 2] else {
            panic!("{frames:?}")
        };
        assert!(error.contains(r#""code":"bad_request""#), "{error}");
        assert!(matches!(&frames[n - 1], Outgoing::Close(1007, _)));
        assert_eq!(conn.await.unwrap().close_code, Some(1007));
    }
}
