//! The front-end protocols over the one delivery path: a request is checked
//! and opened like every other stream ([`crate::delivery::subscribe`], from
//! the session's first event: a client of these protocols holds nothing),
//! and each protocol is an [`Encoder`] of payloads that [`Payloads`] writes
//! as SSE `data:` lines through the shared event-stream pump
//! ([`crate::delivery::body`]).

use axum::response::Response;
use bytes::Bytes;
use weir_protocol::{RawEvent, SessionId};

use crate::delivery::{self, body};
use crate::error::ApiError;
use crate::subscription::DeliveryError;
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

/// Takes a connection slot, checks that the session's events are still
/// stored (410 otherwise), and streams the session from seq 1 through
/// `encoder`.
pub async fn serve(
    state: &AppState,
    req: Request,
    encoder: impl Encoder,
) -> Result<Response, ApiError> {
    let guard = delivery::admit(state, req.transport)?;
    serve_in(state, guard, req, encoder).await
}

/// [`serve`] in a slot already taken (a handler that does work for the
/// stream first, such as starting a run, takes its slot before that work).
pub async fn serve_in(
    state: &AppState,
    guard: ConnectionGuard,
    req: Request,
    encoder: impl Encoder,
) -> Result<Response, ApiError> {
    let opened = delivery::subscribe(state, guard, req.transport, req.id, 0).await?;
    let encoder = |_: &_| Payloads(encoder);
    Ok(body::respond(state, opened, encoder, req.headers))
}

/// A payload encoder as an event-stream encoder: one `data:` line each.
struct Payloads<E>(E);

impl<E: Encoder> body::Encoder for Payloads<E> {
    fn open(&mut self) -> Bytes {
        frame(self.0.open())
    }
    fn events(&mut self, events: &[RawEvent]) -> Bytes {
        frame(self.0.events(events))
    }
    fn expired(&mut self, e: &DeliveryError) -> Bytes {
        frame(self.0.expired(e))
    }
    fn done(&self) -> bool {
        self.0.done()
    }
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
