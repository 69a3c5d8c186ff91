//! A WebSocket client's connection, generic over its sink and stream so that
//! unit tests drive it with channels (the socket's codec is in
//! [`crate::websocket::read`] and [`crate::websocket::write`], the endpoint in
//! [`crate::websocket::endpoint`]).
//!
//! Events flow subscription → bounded buffer → socket, all in the
//! connection's one task (the write half is [`crate::websocket::writer`]). Pulling stops when
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
use weir_protocol::frame::{close, events_frame};
use weir_protocol::{ClientFrame, ControlOp, RawEvent, ServerFrame};
use weir_telemetry::names;

use crate::frames::{frame_len, frame_room, Batch, Encoding, Frames};
pub use crate::reach::Leave;
use crate::subscription::{DeliveryError, Source};
pub use crate::websocket::writer::Outgoing;
use crate::websocket::writer::{Frame, WriteError, Writer};

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

/// Acts on client frames (acks, control and answers); implemented by the edge over
/// its store and bus, and by tests.
#[async_trait::async_trait]
pub trait ClientActions: Send + Sync {
    async fn ack(&self, seq: u64);
    /// Ok, or an error frame's `(code, message)`.
    async fn control(&self, op: ControlOp) -> Result<(), (String, String)>;
    /// Answers the session's open input request, like
    /// `POST /v1/sessions/{id}/input`: Ok, or an error frame's `(code, message)`.
    async fn input(&self, request: String, data: serde_json::Value)
        -> Result<(), (String, String)>;
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
    pub close_code: Option<u16>,
    pub last_seq: u64,
}

/// A pull from the subscription in flight; it owns the subscription and
/// hands it back with the result, so no pull is ever dropped half-done.
type Fetch<P> = BoxFuture<'static, (P, Result<Batch, DeliveryError>)>;

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
pub async fn serve<S, R, N, P>(
    sink: S,
    mut incoming: R,
    mut notices: N,
    sub: P,
    hello: ServerFrame,
    limits: Limits,
    actions: &dyn ClientActions,
    leave: Leave,
) -> ConnStats
where
    S: Sink<Outgoing> + Send + Unpin + 'static,
    R: Stream<Item = Incoming> + Unpin,
    N: Stream<Item = String> + Unpin,
    P: Source,
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
    let mut fetch: Option<Fetch<P>> = None;
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
            why = leave.wait() => {
                let frame = ServerFrame::Reconnect { reason: why.reason().into() };
                break Some((close::DRAINING, Some(frame), why.reason()));
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
        ClientFrame::Input { request, data } => actions
            .input(request, data)
            .await
            .map_err(|(code, message)| ServerFrame::Error { code, message }),
    }
}

async fn control(actions: &dyn ClientActions, op: ControlOp) -> Result<(), ServerFrame> {
    actions
        .control(op)
        .await
        .map_err(|(code, message)| ServerFrame::Error { code, message })
}

#[cfg(test)]
mod tests;
