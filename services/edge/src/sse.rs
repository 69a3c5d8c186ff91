//! `GET /v1/sessions/{id}/events`: the session as Server-Sent Events —
//! `id:` = seq, `event:` = kind, `data:` = the event. Resumes after
//! `Last-Event-ID` or `?after=`. The body is pulled by the socket, so a
//! client that reads slowly holds at most one batch on this node; the text
//! of a batch comes from the session's shared frames, so clients at one
//! position send the same bytes, encoded once on the node.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use weir_protocol::{RawEvent, ServerFrame};

use crate::access::SessionAuth;
use crate::delivery;
use crate::delivery::body::{self, Encoder};
use crate::error::ApiError;
use crate::frames::{frame_room, Encoding, Frames};
use crate::reach::Why;
use crate::request::{parse_after, RawQuery};
use crate::subscription::{DeliveryError, Subscription};
use crate::AppState;

/// The SSE text of a batch of events, one SSE event each.
pub fn encode(events: &[RawEvent]) -> String {
    let mut out = String::with_capacity(events.iter().map(|e| e.json.len() + 40).sum());
    for e in events {
        out.push_str("id: ");
        out.push_str(&e.seq.to_string());
        out.push('\n');
        let kind = e.kind();
        // A kind is a JSON string: one with a line break cannot be a field.
        if !kind.contains(['\r', '\n']) {
            out.push_str("event: ");
            out.push_str(&kind);
            out.push('\n');
        }
        // Event bytes came from a JSON parser, so they are valid UTF-8.
        data_lines(&mut out, std::str::from_utf8(&e.json).unwrap_or("null"));
        out.push('\n');
    }
    out
}

/// `data:` lines of `text` (JSON written over several lines takes several).
fn data_lines(out: &mut String, text: &str) {
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
}

/// An SSE event that is not an event of the log (no `id:`).
fn other(event: &str, data: &str) -> Bytes {
    let mut out = format!("event: {event}\n");
    data_lines(&mut out, data);
    out.push('\n');
    Bytes::from(out)
}

pub async fn events(
    State(state): State<AppState>,
    SessionAuth(id): SessionAuth,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID must be a seq (digits)".into()))
        })
        .transpose()?;
    let after = parse_after(last_event_id.or(query.get("after").map(String::as_str)))?;
    let guard = delivery::admit(&state, "sse")?;
    let opened = delivery::subscribe(&state, guard, "sse", id, after).await?;
    let encoder = |sub: &Subscription| Sse {
        frames: sub.frames(),
        done: false,
    };
    Ok(body::respond(&state, opened, encoder, &[]))
}

/// SSE's encoder: batches of events as the session's shared SSE text,
/// operators' notices, and `reconnect` when the node drains.
struct Sse {
    /// The session's shared frames.
    frames: Arc<Frames>,
    done: bool,
}

impl Encoder for Sse {
    const NOTICES: bool = true;

    fn room(&self, cursor: u64, max_frame_events: usize) -> usize {
        frame_room(cursor, max_frame_events)
    }

    fn events(&mut self, events: &[RawEvent]) -> Bytes {
        self.done = events.last().is_some_and(|e| e.end);
        Bytes::from(self.frames.get(Encoding::Sse, events, encode))
    }

    fn expired(&mut self, e: &DeliveryError) -> Bytes {
        self.done = true;
        let frame = ServerFrame::error("history_expired", e.to_string());
        other("error", &frame.to_json())
    }

    // A notice has no `id:`, so `Last-Event-ID` stays the last seq.
    fn notice(&self, frame: &str) -> Bytes {
        other("notice", frame)
    }

    fn draining(&self, why: Why) -> Option<Bytes> {
        Some(other("reconnect", &why.frame_json()))
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::Event;

    #[test]
    fn events_become_sse_events_with_their_seq_kind_and_json() {
        let one = Event::new(7, "token", None, serde_json::json!({"text": "a"})).to_raw();
        let two = RawEvent::parse(b"{\"seq\": 8,\n \"kind\": \"end\"}").unwrap();
        let text = encode(&[one.clone(), two]);
        let json = std::str::from_utf8(&one.json).unwrap();
        assert_eq!(
            text,
            format!(
                "id: 7\nevent: token\ndata: {json}\n\nid: 8\nevent: end\ndata: {{\"seq\": 8,\ndata:  \"kind\": \"end\"}}\n\n"
            )
        );
        assert_eq!(
            &other("notice", "{\"a\":1}")[..],
            b"event: notice\ndata: {\"a\":1}\n\n"
        );
    }
}
