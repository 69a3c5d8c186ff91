//! `GET /v1/sessions/{id}/ws`: checks, then the axum socket adapted to
//! [`crate::connection::serve`].

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tracing::Instrument;
use weir_protocol::frame::close;
use weir_protocol::{ControlOp, ServerFrame, SessionId};
use weir_telemetry::names;

use crate::api::{parse_after, RawQuery};
use crate::connection::{self, ClientActions, Incoming, Outgoing};
use crate::error::ApiError;
use crate::sessions::{self, bearer, Resume};
use crate::subscription::Subscription;
use crate::{AppState, ConnectionGuard};

const READ_BUFFER: usize = 1024;

/// Close code and error frame for a failed check.
fn refusal(e: &ApiError) -> (u16, &'static str) {
    match e {
        ApiError::Unauthorized(_) => (close::UNAUTHORIZED, "unauthorized"),
        ApiError::NotFound => (close::NO_SUCH_SESSION, "not_found"),
        ApiError::Expired(_) => (close::EXPIRED, "history_expired"),
        ApiError::BadRequest(_) => (1008, "bad_request"),
        _ => (1011, "unavailable"),
    }
}

struct Checked {
    id: SessionId,
    after: u64,
    status: String,
    resume: Resume,
    pace: u32,
}

async fn check(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    query: &RawQuery,
) -> Result<Checked, ApiError> {
    let token = bearer(headers, query.get("token").map(String::as_str));
    let id = sessions::authorize(state, id, token).map_err(|e| match e {
        // An id that cannot exist is a session that does not.
        ApiError::BadRequest(_) => ApiError::NotFound,
        e => e,
    })?;
    let after = parse_after(query.get("after").map(String::as_str))?;
    let (s, resume) = sessions::open(state, &id, after).await?;
    Ok(Checked {
        id,
        after,
        status: s.status.as_str().to_owned(),
        resume,
        pace: sessions::pace(state, &s),
    })
}

pub async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Not a WebSocket request: a JSON error like every other.
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return ApiError::BadRequest(e.body_text()).into_response(),
    };
    let Some(guard) = ConnectionGuard::try_new(&state, "ws") else {
        return ApiError::Unavailable("this node is at its connection limit or draining".into())
            .into_response();
    };
    let checked = check(&state, &id, &headers, &query).await;
    let limit = state.config.max_client_frame;
    // Client frames are small: a small read buffer keeps idle connections
    // cheap (tungstenite's default is 128 KiB per connection).
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("ws", session = %id, node = %state.node);
            async move {
                match checked {
                    Ok(c) => connected(state, socket, c).await,
                    Err(e) => refuse(socket, &e).await,
                }
                drop(guard);
            }
            .instrument(span)
        })
}

async fn refuse(mut socket: WebSocket, e: &ApiError) {
    let (code, name) = refusal(e);
    tracing::debug!(code, error = %e, "refused");
    metrics::counter!(names::CLOSES, "code" => code.to_string()).increment(1);
    if code == close::UNAUTHORIZED {
        metrics::counter!(names::AUTH_FAILURES).increment(1);
    }
    let _ = socket
        .send(Message::Text(
            ServerFrame::error(name, e.to_string()).to_json().into(),
        ))
        .await;
    let _ = socket.send(close_message(code, name)).await;
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn connected(state: AppState, socket: WebSocket, c: Checked) {
    let hello = ServerFrame::Hello {
        session: c.id.to_string(),
        node: state.node.clone(),
        after: c.after,
        status: c.status,
    };
    let (mut sink, stream) = socket.split();
    if let Resume::Complete = c.resume {
        let _ = sink.send(Message::Text(hello.to_json().into())).await;
        let _ = sink.send(close_message(close::DONE, "session ended")).await;
        return;
    }
    let feed = state.hub.feed(&c.id).await;
    let sub = Subscription::new(c.id.clone(), feed, state.bus.log.clone(), c.after).paced(c.pace);
    let sink = sink.with(|o: Outgoing| {
        futures::future::ready(Ok::<_, axum::Error>(match o {
            Outgoing::Text(t) => Message::Text(t),
            Outgoing::Close(code, reason) => close_message(code, &reason),
        }))
    });
    let incoming = stream.filter_map(|m| {
        futures::future::ready(match m {
            Ok(Message::Text(t)) => Some(Incoming::Text(t.to_string())),
            Ok(Message::Binary(_)) => Some(Incoming::Binary),
            Ok(Message::Ping(_) | Message::Pong(_)) => None,
            Ok(Message::Close(_)) => Some(Incoming::Closed),
            Err(e) => Some(if too_large(e) {
                Incoming::TooLarge
            } else {
                Incoming::Closed
            }),
        })
    });
    let actions = EdgeActions {
        state: state.clone(),
        id: c.id.clone(),
    };
    let notices = crate::operators::notices_for(&state, &c.id);
    let stats = connection::serve(
        Box::pin(sink),
        Box::pin(incoming),
        notices,
        sub,
        hello,
        state.limits(),
        &actions,
        state.drain.clone(),
    )
    .await;
    tracing::debug!(?stats, "connection closed");
}

fn too_large(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

struct EdgeActions {
    state: AppState,
    id: SessionId,
}

#[async_trait::async_trait]
impl ClientActions for EdgeActions {
    async fn ack(&self, seq: u64) {
        if let Err(e) = self.state.store.ack(&self.id, seq).await {
            tracing::debug!(error = %e, "ack not stored");
        }
    }

    async fn control(&self, op: ControlOp) -> Result<(), (String, String)> {
        sessions::control(&self.state, &self.id, op)
            .await
            .map_err(|e| (e.code().to_owned(), e.to_string()))
    }
}
