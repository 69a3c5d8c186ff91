//! The thread endpoints of protocol.md §9: `POST /v1/threads`,
//! `GET /v1/threads/{t}`, `POST /v1/threads/{t}/runs`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use weir_protocol::{ThreadId, EXTERNAL_AGENT};
use weir_store::Thread;

use super::{ended_status, RunStart};
use crate::access::{ApiKey, ThreadAuth};
use crate::error::ApiError;
use crate::request::JsonObject;
use crate::AppState;

/// The thread routes, for [`crate::routes`].
pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/threads", post(create)),
        ("/v1/threads/{t}", get(show)),
        ("/v1/threads/{t}/runs", post(run)),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    agent: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    id: Option<String>,
}

/// `POST /v1/threads` (API key): a thread with one agent, fixed here.
pub(crate) async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    body: Result<JsonObject<CreateBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonObject(body) = body?;
    if body.agent == EXTERNAL_AGENT {
        return Err(ApiError::BadRequest(
            "a thread's runs need an agent that workers run, not external".into(),
        ));
    }
    crate::api::check_agent(&state, &body.agent).await?;
    let input = object(body.input, "input")?;
    if body.agent == "mock" {
        weir_protocol::mock::MockInput::parse(&Value::Object(input.clone()))
            .map_err(ApiError::BadRequest)?;
    }
    let id = match &body.id {
        Some(id) => ThreadId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => ThreadId::random(),
    };
    let thread = Thread {
        id: id.clone(),
        agent: body.agent,
        input,
        created: weir_store::unix_ms(),
    };
    if !state.store.create_thread(&thread).await? {
        return Err(ApiError::Conflict(format!("thread {id} already exists")));
    }
    let token = state
        .auth
        .keys
        .issue_thread(&id, state.config.token_ttl.as_secs());
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token}))))
}

/// `GET /v1/threads/{t}`: the thread, its runs oldest first with their
/// statuses (the log's word), and the active run.
pub(crate) async fn show(
    State(state): State<AppState>,
    ThreadAuth(id): ThreadAuth,
) -> Result<Json<Value>, ApiError> {
    let record = super::get(&state, &id).await?;
    let statuses =
        futures::future::join_all(record.runs.iter().map(|r| ended_status(&state, &r.session)))
            .await;
    let mut runs = Vec::with_capacity(record.runs.len());
    let mut active = None;
    for (run, status) in record.runs.iter().zip(statuses) {
        let (status, ended) = status?;
        if !ended && Some(&run.session) == record.latest() {
            active = Some(run.session.clone());
        }
        runs.push(json!({"id": run.session, "status": status, "created": run.created}));
    }
    Ok(Json(json!({
        "id": id,
        "agent": record.thread.agent,
        "created": record.thread.created,
        "runs": runs,
        "active": active,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    messages: Value,
    #[serde(default)]
    tools: Value,
    #[serde(default)]
    input: Value,
}

/// `POST /v1/threads/{t}/runs` (thread token or API key).
pub(crate) async fn run(
    State(state): State<AppState>,
    ThreadAuth(id): ThreadAuth,
    headers: HeaderMap,
    body: Result<JsonObject<RunBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonObject(body) = body?;
    let start = RunStart {
        messages: array(body.messages, "messages")?,
        tools: array(body.tools, "tools")?,
        input: object(body.input, "input")?,
        message_id: None,
        alias: None,
    };
    let started = super::start_run(&state, &id, start).await?;
    let body = crate::api::created_body(&state, &headers, &started.session, &started.token);
    Ok((StatusCode::CREATED, Json(body)))
}

/// An optional JSON object field (`null` or absent: empty).
fn object(v: Value, field: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::BadRequest(format!(
            "{field} must be a JSON object"
        ))),
    }
}

/// A JSON array field (`null` or absent: empty).
fn array(v: Value, field: &str) -> Result<Vec<Value>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => Ok(a),
        _ => Err(ApiError::BadRequest(format!("{field} must be an array"))),
    }
}
