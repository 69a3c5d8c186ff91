//! The HTTP API (protocol.md §4), except the streams (`ws`, `sse`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use weir_bus::LeaseEntry;
use weir_protocol::mock::MockInput;
use weir_protocol::{ControlOp, SessionId, EXTERNAL_AGENT};
use weir_store::SessionState;
use weir_telemetry::names;

use crate::access::{ApiKey, SessionAuth, SessionOrOperator};
use crate::error::ApiError;
use crate::request::{JsonObject, Params};
use crate::sessions;
use crate::{launch, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    agent: String,
    #[serde(default)]
    input: serde_json::Value,
    /// Optional caller-chosen id (idempotent creation); random otherwise.
    #[serde(default)]
    id: Option<String>,
    /// Events per second each client receives at most (0 = unpaced).
    #[serde(default)]
    pace: Option<u32>,
}

/// The highest `pace` a session may ask for.
pub const MAX_PACE: u32 = 10_000;

/// `POST /v1/sessions`
pub async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    // The client's address, when the server was started with connect info.
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Result<JsonObject<CreateBody>, ApiError>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if let Some(limits) = &state.create_limits {
        let key = state.config.api_key.as_deref();
        limits.check(key, peer.map(|p| p.0 .0.ip()))?;
    }
    let JsonObject(body) = body?;
    let agent = body.agent.as_str();
    check_agent(&state, agent).await?;
    if !(body.input.is_object() || body.input.is_null()) {
        return Err(ApiError::BadRequest("input must be a JSON object".into()));
    }
    if agent == "mock" {
        MockInput::parse(&body.input).map_err(ApiError::BadRequest)?;
    }
    let id = match &body.id {
        Some(id) => SessionId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => SessionId::random(),
    };
    if body.pace.is_some_and(|p| p > MAX_PACE) {
        return Err(ApiError::BadRequest(format!(
            "pace must be 0 to {MAX_PACE} events/s"
        )));
    }
    let mut new = SessionState::new(id.clone(), agent);
    new.pace = body.pace;
    if agent == EXTERNAL_AGENT {
        let (created, ()) = tokio::join!(state.store.create(&new), launch::warm(&state, &new));
        if !created? {
            return Err(ApiError::Conflict(format!("session {id} already exists")));
        }
        // Its producer claims this lease; unclaimed, it lapses and a
        // reaper ends the session (protocol.md §2).
        let unclaimed = LeaseEntry::unclaimed(state.config.claim_timeout);
        state.bus.leases.acquire(&id, unclaimed).await?;
    } else {
        let origin = match body.id {
            Some(_) => launch::Id::Chosen,
            None => launch::Id::Random,
        };
        launch::launch(&state, &new, body.input, origin).await?;
    }
    metrics::counter!(names::SESSIONS_CREATED, "agent" => agent.to_owned()).increment(1);
    let token = state.auth.keys.issue(&id, state.config.token_ttl.as_secs());
    Ok((
        StatusCode::CREATED,
        Json(created_body(&state, &headers, &id, &token)),
    ))
}

/// The answer to a new session (`POST /v1/sessions`, a thread's run):
/// `{"id", "token", "ws_url", "events_url"}`.
pub(crate) fn created_body(
    state: &AppState,
    headers: &HeaderMap,
    id: &SessionId,
    token: &str,
) -> serde_json::Value {
    let base = public_base(state, headers);
    let ws_base = base.replacen("http", "ws", 1);
    serde_json::json!({
        "id": id,
        "token": token,
        "ws_url": format!("{ws_base}/v1/sessions/{id}/ws?token={token}"),
        "events_url": format!("{base}/v1/sessions/{id}/events?token={token}"),
    })
}

/// How long agents found in the node registry are taken as served without
/// listing it again (an agent not found is always looked up afresh).
const ANNOUNCED_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Accepts `external`, an agent in this edge's `--agents`, or one that a
/// live worker announces in the node registry (protocol.md §2); otherwise
/// 400 naming the agents the cluster runs.
pub(crate) async fn check_agent(state: &AppState, agent: &str) -> Result<(), ApiError> {
    if agent == EXTERNAL_AGENT || state.config.agents.iter().any(|a| a == agent) {
        return Ok(());
    }
    weir_bus::check_agent_name(agent).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let cached = |state: &AppState| {
        let announced = state.announced.lock().expect("announced lock");
        announced.as_ref().is_some_and(|(at, agents)| {
            at.elapsed() < ANNOUNCED_FRESH && agents.iter().any(|a| a == agent)
        })
    };
    if cached(state) {
        return Ok(());
    }
    let nodes = state.bus.nodes.list().await?;
    let mut announced: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.load.get("agents").and_then(|a| a.as_array()))
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    announced.sort_unstable();
    announced.dedup();
    let served = announced.iter().any(|a| a == agent);
    let mut known: Vec<&str> = state.config.agents.iter().map(String::as_str).collect();
    known.extend(announced.iter().map(String::as_str));
    known.sort_unstable();
    known.dedup();
    let message = format!(
        "unknown agent {agent:?}: no live worker serves it; this cluster runs: external, {}",
        known.join(", ")
    );
    *state.announced.lock().expect("announced lock") = Some((std::time::Instant::now(), announced));
    if served {
        Ok(())
    } else {
        Err(ApiError::BadRequest(message))
    }
}

/// `http(s)://host` as clients reach this edge.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.listen.to_string());
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// `GET /v1/sessions/{id}`
pub async fn get(
    State(state): State<AppState>,
    SessionAuth(id): SessionAuth,
) -> Result<Json<SessionState>, ApiError> {
    Ok(Json(sessions::describe(&state, &id).await?))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

pub const MAX_HISTORY_PAGE: usize = 1000;

/// `GET /v1/sessions/{id}/history?after=N&limit=M`
pub async fn history(
    State(state): State<AppState>,
    Params(q): Params<HistoryQuery>,
    SessionAuth(id): SessionAuth,
) -> Result<Response, ApiError> {
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100));
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_HISTORY_PAGE}"
        )));
    }
    let (_, resume) = sessions::open(&state, &id, after).await?;
    let events = match resume {
        sessions::Resume::Complete => Vec::new(),
        sessions::Resume::Stream => {
            state
                .bus
                .log
                .reader(&id, after)
                .await?
                .next_page(limit)
                .await?
        }
    };
    if let Some(first) = events.first() {
        crate::expiry::check_first(after, first.seq)?;
    }
    let next_after = events.last().map_or(after, |e| e.seq);
    // The events' own bytes, not re-encoded.
    let mut body = String::from(r#"{"events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(std::str::from_utf8(&e.json).unwrap_or("null"));
    }
    body.push_str(&format!(r#"],"next_after":{next_after}}}"#));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /v1/sessions/{id}/{pause|resume|cancel}`
/// (`op` is the route's: one route per op).
pub async fn control(
    State(state): State<AppState>,
    // An operator (the API key) may control any session; others need its token.
    SessionOrOperator(id): SessionOrOperator,
    op: ControlOp,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    sessions::control(&state, &id, op).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "op": op.as_str() })),
    ))
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when both the bus and the store answer.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (bus, store) = tokio::join!(state.bus.log.ping(), state.store.ping());
    let body = serde_json::json!({
        "bus": bus.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "store": store.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "draining": state.drain.is_cancelled(),
    });
    let ok = bus.is_ok() && store.is_ok() && !state.drain.is_cancelled();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        weir_telemetry::render_with_tasks(weir_telemetry::names::EDGE_TASKS),
    )
        .into_response()
}

pub async fn demo_page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

/// The operator page: nodes, sessions, broadcasts; it uses only the public
/// operator API, with the key the operator types in. Its script and style
/// are [`OPS_ASSETS`].
pub async fn ops_page() -> Html<&'static str> {
    Html(include_str!("../static/ops.html"))
}

/// The operator page's script and style, served at `/ops/{asset}`:
/// (name, content type, source).
pub const OPS_ASSETS: [(&str, &str, &str); 2] = [
    (
        "ops.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/ops.js"),
    ),
    (
        "ops.css",
        "text/css; charset=utf-8",
        include_str!("../static/ops.css"),
    ),
];

/// `GET /ops/{asset}`: the page's script or style; any other name is a 404.
pub async fn ops_asset(
    axum::extract::Path(asset): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    OPS_ASSETS
        .iter()
        .find(|(name, _, _)| *name == asset)
        .map(|(_, kind, source)| {
            (
                [
                    (header::CONTENT_TYPE, *kind),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                *source,
            )
                .into_response()
        })
        .ok_or_else(|| ApiError::NoRoute(format!("no operator page asset {asset}")))
}

/// The OpenAPI 3.1 document of this API (services/edge/openapi.json).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /weir-client.js`: the browser client's entry module, which imports the
/// modules of [`CLIENT_MODULES`] from `/weir-client/`.
pub async fn client_js() -> Response {
    javascript(include_str!("../../../clients/js/weir-client.js"))
}

/// The client's modules by concept (clients/js/weir-client/), served at `/weir-client/{module}`.
pub const CLIENT_MODULES: [(&str, &str); 7] = [
    (
        "http.js",
        include_str!("../../../clients/js/weir-client/http.js"),
    ),
    (
        "wire.js",
        include_str!("../../../clients/js/weir-client/wire.js"),
    ),
    (
        "session.js",
        include_str!("../../../clients/js/weir-client/session.js"),
    ),
    (
        "frames.js",
        include_str!("../../../clients/js/weir-client/frames.js"),
    ),
    (
        "iterate.js",
        include_str!("../../../clients/js/weir-client/iterate.js"),
    ),
    (
        "inputs.js",
        include_str!("../../../clients/js/weir-client/inputs.js"),
    ),
    (
        "thread.js",
        include_str!("../../../clients/js/weir-client/thread.js"),
    ),
];

/// `GET /weir-client/{module}`: one module of the client; any other name is a 404.
pub async fn client_module(
    axum::extract::Path(module): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    CLIENT_MODULES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, source)| javascript(source))
        .ok_or_else(|| ApiError::NoRoute(format!("no client module {module}")))
}

fn javascript(source: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        source,
    )
        .into_response()
}

/// Unknown routes get a JSON 404 like every other error.
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(format!("no route {method} {}", uri.path()))
}

/// A known path with a method it does not take: 405, saying so.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// Counts requests by route and status.
pub async fn count_requests(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_bus::{Bus, BusConfig, NodeEntry};
    use weir_store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn an_agent_is_accepted_when_configured_or_announced_by_a_live_worker_and_named_otherwise(
    ) {
        let bus = Bus::memory(BusConfig::default());
        let store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(60)));
        let config = crate::EdgeConfig::local("agents-test-secret-of-at-least-32-bytes");
        let state = AppState::new(config, bus.clone(), store).unwrap();
        let mut load = serde_json::Map::new();
        load.insert("agents".into(), serde_json::json!(["support-team"]));
        let worker = NodeEntry {
            id: "py-1".into(),
            role: "producer".into(),
            version: "0.1.0".into(),
            started: 0,
            last_seen: 0,
            load,
        };
        for ok in ["external", "mock"] {
            assert!(check_agent(&state, ok).await.is_ok(), "{ok}");
        }
        let unknown = |agent: &'static str| {
            let state = state.clone();
            async move {
                match check_agent(&state, agent).await {
                    Err(ApiError::BadRequest(m)) => m,
                    other => panic!("{agent}: {other:?}"),
                }
            }
        };
        let m = unknown("support-team").await;
        assert!(m.contains("\"support-team\"") && m.contains("mock"), "{m}");
        bus.nodes.announce(&worker).await.unwrap();
        assert!(check_agent(&state, "support-team").await.is_ok());
        let m = unknown("writer").await;
        assert!(
            m.contains("\"writer\"") && m.contains("support-team"),
            "{m}"
        );
        let m = unknown("no.dots").await;
        assert!(m.contains("[A-Za-z0-9_-]"), "{m}");
        bus.nodes.withdraw("py-1").await.unwrap();
        // Found a moment ago: still served for a little while, then refused.
        assert!(check_agent(&state, "support-team").await.is_ok());
        tokio::time::sleep(ANNOUNCED_FRESH).await;
        unknown("support-team").await;
    }
}
