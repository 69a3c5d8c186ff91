//! A session as the body of a `text/event-stream` response: the pump that
//! SSE and the front-end protocols share. The body is pulled by the socket,
//! so a client that reads slowly holds at most one batch on this node. The
//! pump reads the subscription, hands each batch to the transport's
//! [`Encoder`], counts what went out, writes an SSE comment when idle for
//! the heartbeat interval, relays operator notices where the protocol has a
//! place for them, and ends the body when the encoder is done or the node
//! drains (clients reconnect by calling again).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use weir_protocol::RawEvent;

use super::metrics::DeliveryMetrics;
use super::Opened;
use crate::subscription::{DeliveryError, Subscription};
use crate::{AppState, ConnectionGuard};

/// Turns a session's events into one protocol's `text/event-stream` text.
pub trait Encoder: Send + 'static {
    /// Whether operators' notices go to this protocol's clients.
    const NOTICES: bool = false;

    /// Text before the first event.
    fn open(&mut self) -> Bytes {
        Bytes::new()
    }
    /// Most events the next batch may hold (the client's cursor is at
    /// `cursor`; `max_frame_events` is the node's frame size).
    fn room(&self, _cursor: u64, max_frame_events: usize) -> usize {
        max_frame_events
    }
    /// A batch of events, contiguous and in seq order.
    fn events(&mut self, events: &[RawEvent]) -> Bytes;
    /// The events after the cursor are gone from the log: the last text.
    fn expired(&mut self, e: &DeliveryError) -> Bytes;
    /// An operator's notice (an encoded `notice` frame), when [`Self::NOTICES`].
    fn notice(&self, _frame: &str) -> Bytes {
        Bytes::new()
    }
    /// The client is to go to another node (it drains, or it cannot reach
    /// the log): the last text, if the protocol has a way to say
    /// "reconnect" (otherwise the body just ends).
    fn draining(&self, _why: crate::reach::Why) -> Option<Bytes> {
        None
    }
    /// True once the encoder has written its last text.
    fn done(&self) -> bool;
}

/// The `text/event-stream` response streaming `opened` through the encoder
/// `encoder` makes for its subscription (empty when the client already holds
/// the whole session), with `headers` added to the common ones.
pub fn respond<E: Encoder>(
    state: &AppState,
    opened: Opened,
    encoder: impl FnOnce(&Subscription) -> E,
    headers: &'static [(&'static str, &'static str)],
) -> Response {
    let body = match opened.sub {
        Some(sub) => {
            let metrics = DeliveryMetrics::new(opened.transport);
            let pump = Pump {
                encoder: encoder(&sub),
                sub,
                notices: opened.notices,
                opened: false,
                finished: false,
                metrics,
                _guard: opened.guard,
            };
            Body::from_stream(pump.run(state))
        }
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must not buffer a stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (name, value) in headers {
        h.insert(*name, HeaderValue::from_static(value));
    }
    response
}

struct Pump<E> {
    sub: Subscription,
    encoder: E,
    notices: BoxStream<'static, String>,
    opened: bool,
    finished: bool,
    metrics: DeliveryMetrics,
    _guard: ConnectionGuard,
}

impl<E: Encoder> Pump<E> {
    fn run(self, state: &AppState) -> impl Stream<Item = Result<Bytes, Infallible>> {
        let leave = state.leave();
        let heartbeat = state.config.heartbeat;
        let max = state.config.max_frame_events;
        stream::unfold(self, move |mut p| {
            let leave = leave.clone();
            async move {
                let chunk = p.next(&leave, heartbeat, max).await?;
                Some((Ok(chunk), p))
            }
        })
    }

    /// The next piece of the body; `None` ends it.
    async fn next(
        &mut self,
        leave: &crate::reach::Leave,
        heartbeat: std::time::Duration,
        max: usize,
    ) -> Option<Bytes> {
        if !self.opened {
            self.opened = true;
            let first = self.encoder.open();
            if !first.is_empty() {
                return Some(first);
            }
        }
        if self.finished || self.encoder.done() {
            return None;
        }
        if let Some(why) = leave.now() {
            self.finished = true;
            return self.encoder.draining(why);
        }
        let room = self.encoder.room(self.sub.cursor(), max);
        let chunk = tokio::select! {
            why = leave.wait() => {
                self.finished = true;
                self.encoder.draining(why)?
            }
            Some(notice) = self.notices.next(), if E::NOTICES => self.encoder.notice(&notice),
            _ = tokio::time::sleep(heartbeat) => Bytes::from_static(b": keep-alive\n\n"),
            r = self.sub.next(room) => match r {
                Ok(events) => {
                    let text = self.encoder.events(&events);
                    let ts: Vec<f64> = events.iter().map(|e| e.ts).collect();
                    self.metrics.record(&ts, text.len());
                    text
                }
                Err(e) => {
                    self.finished = true;
                    self.encoder.expired(&e)
                }
            }
        };
        Some(chunk)
    }
}
