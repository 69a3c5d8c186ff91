//! `GET /v1/sessions/{id}/ws`: checks, then the upgraded socket's two
//! halves ([`crate::websocket::upgrade`]) handed to
//! [`crate::websocket::connection::serve`].

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use tracing::Instrument;
use weir_protocol::frame::close;
use weir_protocol::{ControlOp, ServerFrame, SessionId};
use weir_telemetry::names;

use crate::access::SessionAuth;
use crate::delivery::{self, Opened};
use crate::error::ApiError;
use crate::request::{parse_after, RawQuery};
use crate::websocket::connection::{self, ClientActions};
use crate::websocket::upgrade::{self, Socket, Upgrade};
use crate::websocket::write::FrameSink;
use crate::websocket::writer::Outgoing;
use crate::{AppState, ConnectionGuard};

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

/// Checks `after` and opens the session the token opened (`auth`) in
/// `guard`'s slot.
async fn check(
    state: &AppState,
    guard: ConnectionGuard,
    auth: Result<SessionAuth, ApiError>,
    query: &RawQuery,
) -> Result<Opened, ApiError> {
    let SessionAuth(id) = auth.map_err(|e| match e {
        // An id that cannot exist is a session that does not.
        ApiError::BadRequest(_) => ApiError::NotFound,
        e => e,
    })?;
    let after = parse_after(query.get("after").map(String::as_str))?;
    delivery::subscribe(state, guard, "ws", id, after).await
}

pub async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    // Refusals are close codes after the upgrade, not HTTP statuses.
    auth: Result<SessionAuth, ApiError>,
    query: RawQuery,
    // Not a WebSocket request: a JSON error like every other.
    ws: Upgrade,
) -> Response {
    // A node at its limit answers before upgrading, with a JSON error.
    let guard = match delivery::admit(&state, "ws") {
        Ok(guard) => guard,
        Err(e) => return e.into_response(),
    };
    let checked = check(&state, guard, auth, &query).await;
    ws.on_upgrade(move |socket| {
        let span = tracing::info_span!("ws", session = %id, node = %state.node);
        async move {
            match checked {
                Ok(opened) => connected(state, socket, opened).await,
                Err(e) => refuse(socket, &e).await,
            }
        }
        .instrument(span)
    })
}

async fn refuse(socket: Socket, e: &ApiError) {
    let (code, name) = refusal(e);
    tracing::debug!(code, error = %e, "refused");
    metrics::counter!(names::CLOSES, "code" => code.to_string()).increment(1);
    if code == close::UNAUTHORIZED {
        metrics::counter!(names::AUTH_FAILURES).increment(1);
    }
    let mut sink = FrameSink::new(socket);
    let error = ServerFrame::error(name, e.to_string()).to_json();
    let _ = sink.send(Outgoing::Text(error.into())).await;
    let _ = sink.send(Outgoing::Close(code, name.into())).await;
    let _ = sink.close().await;
}

async fn connected(state: AppState, socket: Socket, opened: Opened) {
    let Opened {
        id,
        after,
        state: session,
        sub,
        notices,
        guard: _guard,
        ..
    } = opened;
    let hello = ServerFrame::Hello {
        session: id.to_string(),
        node: state.node.clone(),
        after,
        status: session.status.as_str().to_owned(),
    };
    let (mut sink, incoming) = upgrade::split(socket, state.config.max_client_frame);
    let Some(sub) = sub else {
        // The client already holds the whole session.
        let _ = sink.send(Outgoing::Text(hello.to_json().into())).await;
        let _ = sink
            .send(Outgoing::Close(close::DONE, "session ended".into()))
            .await;
        let _ = sink.close().await;
        return;
    };
    let actions = EdgeActions {
        state: state.clone(),
        id,
    };
    let stats = connection::serve(
        sink,
        incoming,
        notices,
        sub,
        hello,
        state.limits(),
        &actions,
        state.leave(),
    )
    .await;
    tracing::debug!(?stats, "connection closed");
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
        crate::sessions::control(&self.state, &self.id, op)
            .await
            .map_err(|e| (e.code().to_owned(), e.to_string()))
    }

    async fn input(
        &self,
        request: String,
        data: serde_json::Value,
    ) -> Result<(), (String, String)> {
        crate::inputs::answer(&self.state, &self.id, &request, data)
            .await
            .map_err(|e| (e.code().to_owned(), e.to_string()))
    }
}
