//! The one streaming adapter of the front-end protocols: checks the request
//! like every other stream (token, session, expiry, connection slot), then
//! reads the session's [`Subscription`] from its first event and writes what
//! an [`Encoder`] makes of each batch as the body of a `text/event-stream`
//! response. The body is pulled by the socket, so a slow client holds at
//! most one batch on this node, as with SSE.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, Stream};
use weir_protocol::{RawEvent, SessionId};

use crate::connection::DeliveryMetrics;
use crate::error::ApiError;
use crate::sessions;
use crate::subscription::{DeliveryError, Subscription};
use crate::{AppState, ConnectionGuard};

/// Turns weir events into one protocol's SSE payloads (each a `data:` line).
pub trait Encoder: Send + 'static {
    /// Payloads before the first event.
    fn open(&mut self) -> Vec<String>;
    /// Payloads for a batch of events, contiguous and in seq order.
    fn events(&mut self, events: &[RawEvent]) -> Vec<String>;
    /// Payloads when the events after the cursor are gone from the log.
    fn expired(&mut self, e: &DeliveryError) -> Vec<String>;
    /// True once the encoder has written its last payload.
    fn done(&self) -> bool;
}

/// A checked request for a session's stream.
pub struct Request {
    pub id: SessionId,
    /// `transport` label of the metrics and of the connection counters.
    pub transport: &'static str,
    /// Extra response headers.
    pub headers: &'static [(&'static str, &'static str)],
}

/// Checks that the session exists and its events are still stored, takes a
/// connection slot, and streams the session from seq 1 through `encoder`.
pub async fn serve(
    state: &AppState,
    req: Request,
    encoder: impl Encoder,
) -> Result<Response, ApiError> {
    // From the start (a client of these protocols holds nothing): this
    // only fails when the session's events have expired (410).
    let (s, _) = sessions::open(state, &req.id, 0).await?;
    let guard = ConnectionGuard::try_new(state, req.transport).ok_or_else(|| {
        ApiError::Unavailable("this node is at its connection limit or draining".into())
    })?;
    let feed = state.hub.feed(&req.id).await;
    let pace = sessions::pace(state, &s);
    let sub = Subscription::new(req.id, feed, state.bus.log.clone(), 0).paced(pace);
    let body = body(state, sub, encoder, guard, req.transport);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must not buffer a stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (name, value) in req.headers {
        h.insert(*name, HeaderValue::from_static(value));
    }
    Ok(response)
}

struct Pump<E> {
    sub: Subscription,
    encoder: E,
    opened: bool,
    _guard: ConnectionGuard,
}

/// The response body: encoded batches, an SSE comment when idle for the
/// heartbeat interval, and the end of the body when the encoder is done or
/// the node drains (both clients reconnect by calling again).
fn body<E: Encoder>(
    state: &AppState,
    sub: Subscription,
    encoder: E,
    guard: ConnectionGuard,
    transport: &'static str,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let drain = state.drain.clone();
    let heartbeat = state.config.heartbeat;
    let max = state.config.max_frame_events;
    let delivered = Arc::new(DeliveryMetrics::new(transport));
    let pump = Pump {
        sub,
        encoder,
        opened: false,
        _guard: guard,
    };
    stream::unfold(pump, move |mut p| {
        let (drain, delivered) = (drain.clone(), delivered.clone());
        async move {
            if !p.opened {
                p.opened = true;
                return Some((Ok(frame(p.encoder.open())), p));
            }
            if p.encoder.done() || drain.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = drain.cancelled() => None,
                _ = tokio::time::sleep(heartbeat) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), p)),
                r = p.sub.next(max) => {
                    let payloads = match r {
                        Ok(events) => {
                            let payloads = p.encoder.events(&events);
                            let ts: Vec<f64> = events.iter().map(|e| e.ts).collect();
                            let bytes = payloads.iter().map(String::len).sum();
                            delivered.record(&ts, bytes);
                            payloads
                        }
                        Err(e) => p.encoder.expired(&e),
                    };
                    Some((Ok(frame(payloads)), p))
                }
            }
        }
    })
}

/// SSE `data:` lines, one event each. Payloads are single-line JSON (or
/// `[DONE]`), so one `data:` line carries each.
fn frame(payloads: Vec<String>) -> Bytes {
    let mut out = String::with_capacity(payloads.iter().map(|p| p.len() + 8).sum());
    for p in payloads {
        out.push_str("data: ");
        out.push_str(&p);
        out.push_str("\n\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_one_data_line_each() {
        let b = frame(vec![r#"{"type":"start"}"#.into(), "[DONE]".into()]);
        assert_eq!(&b[..], b"data: {\"type\":\"start\"}\n\ndata: [DONE]\n\n");
        assert!(frame(vec![]).is_empty());
    }
}
