//! Threads of runs (protocol.md §9): a conversation with one agent whose
//! runs are sessions. This module is what every endpoint that starts or
//! finds a thread's run calls — `POST /v1/threads/{t}/runs` ([`http`]) and
//! the front ends' `POST /v1/chat` and `POST /v1/threads/{t}/ag-ui`
//! ([`crate::frontends`]):
//!
//! - [`start_run`]: checks the messages and tools, refuses while the
//!   previous run has not ended (409 `run_active`; the log says whether it
//!   ended, the store may lag), and starts the next run in one atomic step
//!   of the store, then launches it ([`crate::launch`]);
//! - [`run_spec`], [`find_alias`], [`add_alias`], [`active_run`]: what the
//!   front ends read back about a thread's runs;
//! - [`crate::sessions::thread_of`]: the thread a session is a run of, for the thread token
//!   that opens it ([`crate::access`]).
//!
//! While the store cannot be reached, threads cannot be created, read or
//! given runs (503), like sessions cannot be created; runs in progress
//! stream on from the log.

use serde_json::{Map, Value};
use weir_protocol::{SessionId, ThreadId};
use weir_store::{RunRecord, SessionState, ThreadRecord};
use weir_telemetry::names;

use crate::error::ApiError;
use crate::{launch, sessions, AppState};

pub(crate) mod http;

/// A run to start: the conversation so far and what the front end adds.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunStart {
    /// OpenAI chat messages (checked here: a malformed one is a 400 naming
    /// the field).
    pub messages: Vec<Value>,
    /// Front-end tools `{name, description?, parameters?}`.
    pub tools: Vec<Value>,
    /// The run's own input; it wins over the thread's, key by key.
    pub input: Map<String, Value>,
    /// The assistant message this run continues (AI SDK, §9).
    pub message_id: Option<String>,
    /// A client run id that names the run (AG-UI's `runId`).
    pub alias: Option<String>,
}

/// A started run: what `POST /v1/threads/{t}/runs` answers.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub session: SessionId,
    /// The session's own token.
    pub token: String,
}

/// What a run was started with, for the front ends' encoders.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSpec {
    pub thread: ThreadId,
    pub messages: Vec<Value>,
    pub tools: Vec<Value>,
    pub message_id: Option<String>,
}

/// How often a start whose compare-and-set lost to a withdrawn run is tried
/// again before it is refused as `run_active`.
const START_ATTEMPTS: usize = 3;

/// Starts `thread`'s next run (protocol.md §9).
pub(crate) async fn start_run(
    state: &AppState,
    thread: &ThreadId,
    run: RunStart,
) -> Result<Started, ApiError> {
    weir_protocol::check_messages(&run.messages).map_err(ApiError::BadRequest)?;
    weir_protocol::check_tools(&run.tools).map_err(ApiError::BadRequest)?;
    if run.alias.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::BadRequest("a run id must not be empty".into()));
    }
    let record = get(state, thread).await?;
    let input = run_input(&record, &run)?;
    let session = SessionId::random();
    let spec = RunRecord {
        session: session.clone(),
        created: weir_store::unix_ms(),
        messages: run.messages,
        tools: run.tools,
        message_id: run.message_id,
    };
    let mut latest = record.latest().cloned();
    let mut attempts = 0;
    loop {
        if let Some(prev) = &latest {
            if !ended(state, prev).await? {
                return Err(ApiError::RunActive(prev.clone()));
            }
        }
        let alias = run.alias.as_deref();
        match state
            .store
            .start_run(thread, latest.as_ref(), &spec, alias)
            .await?
        {
            weir_store::Started::Started => break,
            weir_store::Started::NoThread => return Err(ApiError::NoSuchThread),
            weir_store::Started::Moved(now) => {
                attempts += 1;
                if attempts == START_ATTEMPTS {
                    return Err(match now {
                        Some(s) => ApiError::RunActive(s),
                        None => ApiError::Conflict("the thread's runs changed; try again".into()),
                    });
                }
                latest = now;
            }
        }
    }
    let agent = record.thread.agent;
    let mut new = SessionState::new(session.clone(), &agent);
    new.thread = Some(thread.clone());
    let input = Value::Object(input);
    if let Err(e) = launch::launch(state, &new, input, launch::Id::Random).await {
        // Not queued (or refused): the thread is free again.
        if let Err(w) = state.store.withdraw_run(thread, &session).await {
            tracing::warn!(thread = %thread, session = %session, error = %w, "unlaunched run not withdrawn");
        }
        return Err(e);
    }
    metrics::counter!(names::SESSIONS_CREATED, "agent" => agent).increment(1);
    let token = state
        .auth
        .keys
        .issue(&session, state.config.token_ttl.as_secs());
    Ok(Started { session, token })
}

/// The thread, or 404.
async fn get(state: &AppState, thread: &ThreadId) -> Result<ThreadRecord, ApiError> {
    state
        .store
        .get_thread(thread)
        .await?
        .ok_or(ApiError::NoSuchThread)
}

/// `{...thread input, ...run input, "messages", "tools"}`, checked as the
/// thread's agent takes it.
fn run_input(record: &ThreadRecord, run: &RunStart) -> Result<Map<String, Value>, ApiError> {
    let mut input = record.thread.input.clone();
    for (k, v) in &run.input {
        input.insert(k.clone(), v.clone());
    }
    input.insert("messages".into(), Value::Array(run.messages.clone()));
    input.insert("tools".into(), Value::Array(run.tools.clone()));
    if record.thread.agent == "mock" {
        weir_protocol::mock::MockInput::parse(&Value::Object(input.clone()))
            .map_err(ApiError::BadRequest)?;
    }
    Ok(input)
}

/// Whether a run has ended, by its log (the store may lag).
async fn ended(state: &AppState, run: &SessionId) -> Result<bool, ApiError> {
    ended_status(state, run).await.map(|(_, ended)| ended)
}

/// A run's status, reconciled with its log, and whether it has ended. A run
/// whose state and log are both gone is `expired`, and over.
async fn ended_status(state: &AppState, run: &SessionId) -> Result<(&'static str, bool), ApiError> {
    match sessions::view(state, run).await {
        Ok(s) => Ok((s.status.as_str(), s.status.is_ended())),
        Err(ApiError::NotFound) => Ok(("expired", true)),
        Err(e) => Err(e),
    }
}

/// The thread's run that has not ended, if any.
pub(crate) async fn active_run(
    state: &AppState,
    thread: &ThreadId,
) -> Result<Option<SessionId>, ApiError> {
    let record = get(state, thread).await?;
    match record.latest() {
        Some(latest) if !ended(state, latest).await? => Ok(Some(latest.clone())),
        _ => Ok(None),
    }
}

/// What a run of a thread was started with; `None` for a session that is
/// no thread's run (or whose thread expired).
pub(crate) async fn run_spec(
    state: &AppState,
    session: &SessionId,
) -> Result<Option<RunSpec>, ApiError> {
    let Some(thread) = crate::sessions::thread_of(state, session).await? else {
        return Ok(None);
    };
    let record = state.store.get_run(&thread, session).await?;
    Ok(record.map(|r| RunSpec {
        thread,
        messages: r.messages,
        tools: r.tools,
        message_id: r.message_id,
    }))
}

/// The run a client run id names in `thread`.
pub(crate) async fn find_alias(
    state: &AppState,
    thread: &ThreadId,
    alias: &str,
) -> Result<Option<SessionId>, ApiError> {
    Ok(state.store.find_alias(thread, alias).await?)
}

/// Names `run` by one more client run id (AG-UI's resume under a new
/// `runId`); 409 when that id already names another run.
pub(crate) async fn add_alias(
    state: &AppState,
    thread: &ThreadId,
    alias: &str,
    run: &SessionId,
) -> Result<(), ApiError> {
    if state.store.add_alias(thread, alias, run).await? {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!(
            "run id {alias:?} names another run of thread {thread}"
        )))
    }
}

#[cfg(test)]
mod tests;
