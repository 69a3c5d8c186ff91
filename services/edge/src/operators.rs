//! The operator API on the edge (protocol.md §7): `GET /v1/status`,
//! `GET /v1/nodes`, `POST /v1/broadcast`; the notices relayed from the bus
//! to this node's connections; and this node's entry in the cluster's node
//! registry, refreshed every third of its TTL.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use weir_bus::{NodeEntry, Notice};
use weir_protocol::{ServerFrame, SessionId, Status};

use crate::access::ApiKey;
use crate::error::ApiError;
use crate::request::{JsonObject, RawQuery};
use crate::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Notices waiting for a connection that is not reading them; beyond
/// this, a connection misses the oldest (notices are at most once).
pub const NOTICE_BACKLOG: usize = 64;

fn health<E>(r: &Result<(), E>) -> &'static str {
    if r.is_ok() {
        "ok"
    } else {
        "down"
    }
}

/// `GET /v1/status`
pub async fn status(
    State(state): State<AppState>,
    _: ApiKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (bus, store) = tokio::join!(state.bus.log.ping(), state.store.ping());
    Ok(Json(serde_json::json!({
        "node": state.node,
        "role": "edge",
        "version": VERSION,
        "uptime_s": state.started.elapsed().as_secs(),
        "connections": connections(&state),
        "sessions_followed": state.hub.followed().len(),
        "bus": health(&bus),
        "store": health(&store),
        "draining": state.drain.is_cancelled(),
        "jwks": state.auth.jwks.as_ref().map(|j| j.health()),
    })))
}

fn connections(state: &AppState) -> usize {
    state.config.max_connections - state.permits.available_permits()
}

/// `GET /v1/nodes`
pub async fn nodes(
    State(state): State<AppState>,
    _: ApiKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes = state.bus.nodes.list().await?;
    Ok(Json(serde_json::json!({ "nodes": nodes })))
}

/// Most sessions in one page of `GET /v1/sessions`.
pub const MAX_PAGE: usize = 1000;

/// `GET /v1/sessions?status=S&limit=N&cursor=C`
pub async fn list_sessions(
    State(state): State<AppState>,
    _: ApiKey,
    query: RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(k) = query
        .keys()
        .find(|k| !["status", "limit", "cursor"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "{k}: unknown parameter (status, limit, cursor)"
        )));
    }
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status: {s:?} is not one of queued, streaming, paused, completed, cancelled, failed"
            ))
        })?),
    };
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::BadRequest(format!("limit: {l:?} is not 1 to {MAX_PAGE}")))?,
    };
    let cursor = match query.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            weir_store::parse_cursor(c)
                .map_err(|e| ApiError::BadRequest(format!("cursor: {e}")))?,
        ),
        None => None,
    };
    let page = state.store.list(status, limit, cursor.as_deref()).await?;
    let subscribers = subscribers_by_session(&state).await;
    // Live sessions are reconciled with their log (the truth), like a GET.
    let sessions = futures::future::join_all(page.sessions.into_iter().map(|s| {
        let state = state.clone();
        async move {
            if s.status.is_ended() {
                return s;
            }
            let fallback = s.clone();
            crate::sessions::reconcile(&state, s)
                .await
                .unwrap_or(fallback)
        }
    }))
    .await;
    let sessions: Vec<serde_json::Value> = sessions
        .into_iter()
        .filter(|s| status.is_none_or(|want| s.status == want))
        .map(|s| {
            let subs = subscribers.get(s.id.as_str()).copied().unwrap_or(0);
            serde_json::json!({
                "id": s.id,
                "status": s.status.as_str(),
                "agent": s.agent,
                "producer": s.producer,
                "last_seq": s.last_seq,
                "created": s.created,
                "updated": s.updated,
                "end_reason": s.end_reason.map(|r| r.as_str()),
                "pace": s.pace,
                "thread": s.thread,
                "subscribers": subs,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "sessions": sessions,
        "next_cursor": page.next_cursor,
    })))
}

/// Subscribers per session over every edge, as their registry entries say.
async fn subscribers_by_session(state: &AppState) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let nodes = state.bus.nodes.list().await.unwrap_or_default();
    for n in nodes.iter().filter(|n| n.role == "edge") {
        if let Some(subs) = n.load.get("subscribers").and_then(|v| v.as_object()) {
            for (id, count) in subs {
                *out.entry(id.clone()).or_insert(0) += count.as_u64().unwrap_or(0);
            }
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    data: serde_json::Value,
    #[serde(default)]
    session: Option<String>,
}

/// `POST /v1/broadcast`
pub async fn broadcast(
    State(state): State<AppState>,
    _: ApiKey,
    body: Result<JsonObject<BroadcastBody>, ApiError>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let JsonObject(body) = body?;
    if !body.data.is_object() {
        return Err(ApiError::BadRequest("data must be a JSON object".into()));
    }
    let session = match &body.session {
        Some(id) => {
            Some(SessionId::parse(id).map_err(|e| ApiError::BadRequest(format!("session: {e}")))?)
        }
        None => None,
    };
    let notice = Notice {
        session: session.clone(),
        data: body.data,
    };
    state.bus.notices.broadcast(&notice).await?;
    metrics::counter!(weir_telemetry::names::NOTICES_SENT).increment(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "session": session })),
    ))
}

/// A notice as this node delivers it: for whom, and its frame.
pub type Relayed = Arc<(Option<SessionId>, String)>;

/// Relays the bus's notices to this node's connections until `stop`.
pub async fn relay_notices(state: AppState, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match state.bus.notices.subscribe().await {
            Ok(mut notices) => {
                backoff = Duration::from_millis(100);
                loop {
                    let notice = tokio::select! {
                        _ = stop.cancelled() => return,
                        n = notices.next() => n,
                    };
                    let Some(n) = notice else { break };
                    let frame = ServerFrame::Notice { data: n.data }.to_json();
                    let _ = state.notices.send(Arc::new((n.session, frame)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot receive notices; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A channel for [`relay_notices`] to fill.
pub fn notice_channel() -> broadcast::Sender<Relayed> {
    broadcast::channel(NOTICE_BACKLOG).0
}

/// Keeps this node's entry in the registry fresh until `stop`, then
/// withdraws it.
pub async fn announce(state: AppState, ttl: Duration, stop: CancellationToken) {
    let node = NodeEntry {
        id: state.node.clone(),
        role: "edge".into(),
        version: VERSION.into(),
        started: weir_store::unix_ms() - state.started.elapsed().as_millis() as u64,
        last_seen: 0,
        load: serde_json::Map::new(),
    };
    let load = || {
        let followed = state.hub.followed();
        let mut load = serde_json::Map::new();
        load.insert("connections".into(), connections(&state).into());
        load.insert("sessions_followed".into(), followed.len().into());
        load.insert("subscribers".into(), subscribers(followed));
        load
    };
    let nodes = state.bus.nodes.clone();
    let delivered = &crate::delivery::metrics::DELIVERED;
    weir_bus::operators::keep_announced(nodes, node, ttl, delivered, load, stop).await;
}

/// Most sessions whose subscriber counts a node announces (the busiest).
const MAX_ANNOUNCED_SESSIONS: usize = 500;

/// `{session: subscribers on this node}` for the busiest sessions.
fn subscribers(mut followed: Vec<(SessionId, usize)>) -> serde_json::Value {
    followed.sort_by_key(|f| std::cmp::Reverse(f.1));
    followed.truncate(MAX_ANNOUNCED_SESSIONS);
    followed
        .into_iter()
        .map(|(id, n)| (id.to_string(), serde_json::Value::from(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
