//! A WebSocket client's connection, generic over its sink and stream so that
//! unit tests drive it with channels (the axum adapter is in [`crate::ws`]).
//!
//! Events flow subscription → bounded buffer → writer. Pulling stops when
//! the buffer reaches its high watermark and starts again at the low one;
//! the writer coalesces everything buffered (up to `max_frame_events`) into
//! one frame, so a client that is behind gets fewer, larger frames. A write
//! that does not finish within the write timeout closes the connection with
//! 4008; the client resumes from its last seq, fed from the log.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_protocol::frame::{close, events_frame};
use weir_protocol::{ClientFrame, ControlOp, RawEvent, ServerFrame};
use weir_telemetry::names;

use crate::subscription::{DeliveryError, Subscription};

/// What the connection writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(String),
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
type Fetch = BoxFuture<'static, (Subscription, Result<Vec<RawEvent>, DeliveryError>)>;

struct Frame {
    out: Outgoing,
    /// `ts` of each event in the frame, for the delivery latency.
    ts: Vec<f64>,
}

enum WriterEnd {
    /// Everything written, the close included.
    Done,
    /// The client did not take a frame within the write timeout.
    Slow,
    /// The socket failed.
    Gone,
}

/// Serves one connection until the session ends, the client leaves, a
/// limit is hit or the node drains. `hello` is written first.
pub async fn serve<S, R>(
    sink: S,
    mut incoming: R,
    sub: Subscription,
    hello: ServerFrame,
    limits: Limits,
    actions: &dyn ClientActions,
    drain: CancellationToken,
) -> ConnStats
where
    S: Sink<Outgoing> + Send + Unpin + 'static,
    R: Stream<Item = Incoming> + Unpin,
{
    let mut stats = ConnStats {
        last_seq: sub.cursor(),
        ..ConnStats::default()
    };
    let (tx, rx) = mpsc::channel::<Frame>(1);
    let mut writer = tokio::spawn(write_frames(sink, rx, limits.write_timeout));
    let _ = tx
        .send(Frame {
            out: Outgoing::Text(hello.to_json()),
            ts: Vec::new(),
        })
        .await;

    let mut buffer: VecDeque<RawEvent> = VecDeque::new();
    let mut throttled = false;
    let mut end_pulled = false;
    let mut fetch: Option<Fetch> = None;
    let mut idle_since = Instant::now();
    // `sub` moves into the fetch future and comes back with its result.
    let mut parked = Some(sub);

    let close = loop {
        if fetch.is_none() && !throttled && !end_pulled {
            let room = limits.buffer.saturating_sub(buffer.len());
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
        let heartbeat_at = tokio::time::Instant::from_std(idle_since + limits.heartbeat);
        tokio::select! {
            biased;
            _ = drain.cancelled() => {
                let frame = ServerFrame::Reconnect { reason: "node draining".into() };
                break Some((close::DRAINING, Some(frame), "node draining"));
            }
            end = &mut writer => {
                if let Ok(WriterEnd::Slow) = end {
                    metrics::counter!(names::SLOW_CONSUMERS).increment(1);
                    metrics::counter!(names::CLOSES, "code" => close::SLOW_CONSUMER.to_string()).increment(1);
                    stats.close_code = Some(close::SLOW_CONSUMER);
                }
                return stats;
            }
            permit = tx.reserve(), if !buffer.is_empty() => {
                let Ok(permit) = permit else { return stats };
                let n = buffer.len().min(limits.max_frame_events);
                metrics::histogram!(names::BUFFER_FILL).record(buffer.len() as f64 / limits.buffer as f64);
                let events: Vec<RawEvent> = buffer.drain(..n).collect();
                let ended = events.last().is_some_and(|e| e.end);
                stats.events += n as u64;
                stats.frames += 1;
                stats.last_seq = events.last().map_or(stats.last_seq, |e| e.seq);
                permit.send(Frame { out: Outgoing::Text(events_frame(&events)), ts: events.iter().map(|e| e.ts).collect() });
                idle_since = Instant::now();
                if throttled && buffer.len() <= limits.low {
                    throttled = false;
                }
                if ended {
                    break Some((close::DONE, None, "session ended"));
                }
            }
            (s, result) = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                fetch = None;
                parked = Some(s);
                match result {
                    Ok(events) => {
                        end_pulled = events.last().is_some_and(|e| e.end);
                        buffer.extend(events);
                        stats.max_buffered = stats.max_buffered.max(buffer.len());
                        if !throttled && buffer.len() >= limits.high {
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
            msg = incoming.next() => match msg {
                None | Some(Incoming::Closed) => break None,
                Some(Incoming::TooLarge) => {
                    let frame = ServerFrame::error("frame_too_large", "client frame over the size limit");
                    break Some((close::TOO_LARGE, Some(frame), "frame too large"));
                }
                Some(Incoming::Binary) => {
                    reply(&tx, ServerFrame::error("bad_request", "binary frames are not part of the protocol")).await;
                }
                Some(Incoming::Text(text)) => {
                    if let Err(frame) = on_client_frame(&text, actions).await {
                        reply(&tx, frame).await;
                    }
                }
            },
            _ = tokio::time::sleep_until(heartbeat_at) => {
                if let Ok(permit) = tx.try_reserve() {
                    permit.send(Frame { out: Outgoing::Text(ServerFrame::Heartbeat { ts: weir_protocol::now_ms() }.to_json()), ts: Vec::new() });
                }
                idle_since = Instant::now();
            }
        }
    };
    if let Some((code, frame, reason)) = close {
        if let Some(frame) = frame {
            let _ = tx
                .send(Frame {
                    out: Outgoing::Text(frame.to_json()),
                    ts: Vec::new(),
                })
                .await;
        }
        let _ = tx
            .send(Frame {
                out: Outgoing::Close(code, reason.into()),
                ts: Vec::new(),
            })
            .await;
        metrics::counter!(names::CLOSES, "code" => code.to_string()).increment(1);
        stats.close_code = Some(code);
    }
    drop(tx);
    // The writer ends by itself: after the close, or at the write timeout.
    if let Ok(WriterEnd::Slow) = writer.await {
        metrics::counter!(names::SLOW_CONSUMERS).increment(1);
    }
    if stats.close_code.is_some() {
        linger(&mut incoming, stats.close_code == Some(close::TOO_LARGE)).await;
    }
    stats
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
        while let Some(Incoming::Text(_) | Incoming::Binary) = incoming.next().await {}
    })
    .await;
}

async fn reply(tx: &mpsc::Sender<Frame>, frame: ServerFrame) {
    let _ = tx
        .send(Frame {
            out: Outgoing::Text(frame.to_json()),
            ts: Vec::new(),
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

/// Writes frames in order; each write has `timeout` to complete.
async fn write_frames<S>(mut sink: S, mut rx: mpsc::Receiver<Frame>, timeout: Duration) -> WriterEnd
where
    S: Sink<Outgoing> + Unpin,
{
    while let Some(frame) = rx.recv().await {
        let is_close = matches!(frame.out, Outgoing::Close(..));
        let bytes = match &frame.out {
            Outgoing::Text(t) => t.len(),
            Outgoing::Close(..) => 0,
        };
        let sent = tokio::time::timeout(timeout, sink.send(frame.out))
            .await
            .map(|r| r.is_ok());
        match sent {
            Ok(true) => {}
            Ok(false) => return WriterEnd::Gone,
            Err(_) => {
                // Best effort: the close may not get through a full socket.
                let close = Outgoing::Close(close::SLOW_CONSUMER, "slow consumer".into());
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
                return WriterEnd::Slow;
            }
        }
        if !frame.ts.is_empty() {
            let now = weir_protocol::now_ms();
            let latency = metrics::histogram!(names::DELIVERY_LATENCY);
            for ts in &frame.ts {
                latency.record(((now - ts) / 1000.0).max(0.0));
            }
            metrics::counter!(names::EVENTS_DELIVERED).increment(frame.ts.len() as u64);
            metrics::counter!(names::FRAMES_SENT).increment(1);
            metrics::histogram!(names::EVENTS_PER_FRAME).record(frame.ts.len() as f64);
            metrics::counter!(names::BYTES_SENT).increment(bytes as u64);
        }
        if is_close {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            return WriterEnd::Done;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    WriterEnd::Done
}
