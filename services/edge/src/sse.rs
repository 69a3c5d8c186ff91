//! `GET /v1/sessions/{id}/events`: the session as Server-Sent Events —
//! `id:` = seq, `event:` = kind, `data:` = the event. Resumes after
//! `Last-Event-ID` or `?after=`. The body is pulled by the socket, so a
//! client that reads slowly holds at most one batch on this node; the text
//! of a batch comes from the session's shared frames, so clients at one
//! position send the same bytes, encoded once on the node.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use weir_protocol::{RawEvent, ServerFrame};

use crate::api::{parse_after, RawQuery};
use crate::connection::DeliveryMetrics;
use crate::error::ApiError;
use crate::frames::{frame_room, Encoding, Frames};
use crate::sessions::{self, bearer, Resume};
use crate::subscription::Subscription;
use crate::{AppState, ConnectionGuard};

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
    Path(id): Path<String>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let id = sessions::authorize(
        &state,
        &id,
        bearer(&headers, query.get("token").map(String::as_str)),
    )
    .await?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID must be a seq (digits)".into()))
        })
        .transpose()?;
    let after = parse_after(last_event_id.or(query.get("after").map(String::as_str)))?;
    let (s, resume) = sessions::open(&state, &id, after).await?;
    let pace = sessions::pace(&state, &s);
    let guard = ConnectionGuard::try_new(&state, "sse").ok_or_else(|| {
        ApiError::Unavailable("this node is at its connection limit or draining".into())
    })?;
    if let Resume::Complete = resume {
        return Ok(response(Body::empty()));
    }
    let feed = state.hub.feed(&id).await;
    let notices = crate::operators::notices_for(&state, &id);
    let sub = Subscription::new(id, feed, state.bus.log.clone(), after).paced(pace);
    let pump = Pump {
        frames: sub.frames(),
        sub,
        done: false,
        _guard: guard,
        notices,
    };
    Ok(response(Body::from_stream(body(&state, pump))))
}

fn response(body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

struct Pump<N> {
    sub: Subscription,
    frames: Arc<Frames>,
    done: bool,
    _guard: ConnectionGuard,
    notices: N,
}

/// Batches of events as shared SSE text, operator notices between them, a
/// comment when idle for the heartbeat interval, `reconnect` when the node
/// drains.
fn body<N>(state: &AppState, pump: Pump<N>) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    N: Stream<Item = String> + Unpin + Send + 'static,
{
    let max = state.config.max_frame_events;
    let heartbeat = state.config.heartbeat;
    let drain = state.drain.clone();
    let delivered = Arc::new(DeliveryMetrics::new("sse"));
    stream::unfold(pump, move |mut p| {
        let (drain, delivered) = (drain.clone(), delivered.clone());
        async move {
            if p.done {
                return None;
            }
            let room = frame_room(p.sub.cursor(), max);
            let chunk = tokio::select! {
                _ = drain.cancelled() => {
                    p.done = true;
                    other("reconnect", r#"{"type":"reconnect","reason":"node draining"}"#)
                }
                // A notice has no `id:`, so `Last-Event-ID` stays the last seq.
                Some(notice) = p.notices.next() => other("notice", &notice),
                _ = tokio::time::sleep(heartbeat) => Bytes::from_static(b": keep-alive\n\n"),
                r = p.sub.next(room) => match r {
                    Ok(events) => {
                        p.done = events.last().is_some_and(|e| e.end);
                        let text = p.frames.get(Encoding::Sse, &events, encode);
                        let ts: Vec<f64> = events.iter().map(|e| e.ts).collect();
                        delivered.record(&ts, text.len());
                        Bytes::from(text)
                    }
                    Err(e) => {
                        p.done = true;
                        let frame = ServerFrame::error("history_expired", e.to_string());
                        other("error", &frame.to_json())
                    }
                }
            };
            Some((Ok(chunk), p))
        }
    })
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
