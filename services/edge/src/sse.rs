//! `GET /v1/sessions/{id}/events`: the session as Server-Sent Events —
//! `id:` = seq, `event:` = kind, `data:` = the event. Resumes after
//! `Last-Event-ID` or `?after=`. The body is pulled by the socket, so a
//! client that reads slowly holds at most one batch on this node.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use weir_protocol::RawEvent;

use crate::api::{parse_after, RawQuery};
use crate::error::ApiError;
use crate::sessions::{self, bearer, Resume};
use crate::subscription::Subscription;
use crate::{AppState, ConnectionGuard};

fn sse_event(e: &RawEvent) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind())
        .data(std::str::from_utf8(&e.json).unwrap_or("null"))
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
    )?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = parse_after(last_event_id.or(query.get("after").map(String::as_str)))?;
    let (s, resume) = sessions::open(&state, &id, after).await?;
    let pace = sessions::pace(&state, &s);
    let guard = ConnectionGuard::try_new(&state, "sse").ok_or_else(|| {
        ApiError::Unavailable("this node is at its connection limit or draining".into())
    })?;
    let keep_alive = KeepAlive::new().interval(state.config.heartbeat);
    if let Resume::Complete = resume {
        return Ok(Sse::new(stream::empty::<Result<SseEvent, Infallible>>()).into_response());
    }
    let notices = crate::operators::notices_for(&state, &id);
    let feed = state.hub.feed(&id).await;
    let sub = Subscription::new(id, feed, state.bus.log.clone(), after).paced(pace);
    let max = state.config.max_frame_events;
    let drain = state.drain.clone();
    let delivered = std::sync::Arc::new(crate::connection::DeliveryMetrics::new("sse"));
    // State: (subscription, done, the connection's permit, notices).
    let start = (sub, false, guard, notices);
    let batches = stream::unfold(start, move |(mut sub, done, guard, mut notices)| {
        let (drain, delivered) = (drain.clone(), delivered.clone());
        async move {
            if done {
                return None;
            }
            tokio::select! {
                _ = drain.cancelled() => {
                    let bye = SseEvent::default().event("reconnect").data(r#"{"type":"reconnect","reason":"node draining"}"#);
                    Some((vec![bye], (sub, true, guard, notices)))
                }
                // A notice has no `id:`, so `Last-Event-ID` stays the last seq.
                Some(notice) = notices.next() => {
                    let event = SseEvent::default().event("notice").data(notice);
                    Some((vec![event], (sub, false, guard, notices)))
                }
                r = sub.next(max) => match r {
                    Ok(events) => {
                        let ended = events.last().is_some_and(|e| e.end);
                        let ts: Vec<f64> = events.iter().map(|e| e.ts).collect();
                        let bytes = events.iter().map(|e| e.json.len()).sum();
                        delivered.record(&ts, bytes);
                        Some((events.iter().map(sse_event).collect(), (sub, ended, guard, notices)))
                    }
                    Err(e) => {
                        let frame = weir_protocol::ServerFrame::error("history_expired", e.to_string());
                        let err = SseEvent::default().event("error").data(frame.to_json());
                        Some((vec![err], (sub, true, guard, notices)))
                    }
                }
            }
        }
    });
    let body = batches.flat_map(|b| stream::iter(b.into_iter().map(Ok::<_, Infallible>)));
    Ok(Sse::new(body).keep_alive(keep_alive).into_response())
}
