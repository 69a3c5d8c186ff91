//! Who may call a handler, decided by extractors that handlers take as
//! arguments; no handler checks a token or a key itself (the tokens' keys
//! and rules are [`crate::auth`]).
//!
//! - [`SessionAuth`]: the session named by the path's `{id}`, opened by its
//!   token (`Authorization: Bearer` or `?token=`; protocol.md §4).
//! - [`ApiKey`]: the API key, when the edge has one (creating sessions and
//!   the operator API, protocol.md §7).
//! - [`SessionOrOperator`]: a session's token, or the API key (control).
//! - [`ThreadAuth`]: the thread named by the path's `{t}`, opened by its
//!   thread token or the API key (protocol.md §9). A thread token also opens
//!   every session of its thread, wherever [`SessionAuth`] is asked; a
//!   session token never opens its thread.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use weir_protocol::{SessionId, ThreadId, TokenError};

use crate::error::ApiError;
use crate::AppState;

/// A session the request's token opens.
pub struct SessionAuth(pub SessionId);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let id = path_id(parts, state).await?;
        let token = bearer(&parts.headers, query_token(parts)?.as_deref());
        authorize(state, &id, token).await.map(SessionAuth)
    }
}

/// The request carries the API key, or the edge has none.
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require_api_key(state, &parts.headers).map(|()| ApiKey)
    }
}

/// A session the request may control: an operator (the API key) any
/// session, anyone else the one its token opens.
pub struct SessionOrOperator(pub SessionId);

impl FromRequestParts<AppState> for SessionOrOperator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if is_operator(state, &parts.headers) {
            let id = path_id(parts, state).await?;
            let id = SessionId::parse(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            return Ok(SessionOrOperator(id));
        }
        SessionAuth::from_request_parts(parts, state)
            .await
            .map(|SessionAuth(id)| SessionOrOperator(id))
    }
}

/// The path's `{id}`.
async fn path_id(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    path_param(parts, state, "id").await
}

/// The path's `{name}`.
async fn path_param(parts: &mut Parts, state: &AppState, name: &str) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .ok_or(ApiError::NotFound)
}

/// `?token=`, if the query has one.
fn query_token(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Query(mut query) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(query.remove("token"))
}

/// The bearer token of a request: `Authorization: Bearer` or `?token=`.
pub fn bearer(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| query_token.map(str::to_owned))
}

/// Parses the session id and checks the token for it: the session's own,
/// or the thread token of the thread the session is a run of (which the
/// session's state names).
async fn authorize(
    state: &AppState,
    id: &str,
    token: Option<String>,
) -> Result<SessionId, ApiError> {
    let id = SessionId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let token = token.ok_or(TokenError::Missing)?;
    let subject = state.auth.subject(&token).await?;
    if subject == id.as_str() {
        return Ok(id);
    }
    match ThreadId::from_subject(&subject) {
        Some(thread) if crate::sessions::thread_of(state, &id).await?.as_ref() == Some(&thread) => {
            Ok(id)
        }
        _ => Err(TokenError::WrongSession.into()),
    }
}

/// A thread the request may use: its thread token opens it, and so does the
/// API key (an operator, or the application's back end).
pub struct ThreadAuth(pub ThreadId);

impl FromRequestParts<AppState> for ThreadAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let id = path_param(parts, state, "t").await?;
        let id = ThreadId::parse(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if is_operator(state, &parts.headers) {
            return Ok(ThreadAuth(id));
        }
        let token = bearer(&parts.headers, query_token(parts)?.as_deref());
        authorize_thread(state, &id, token).await?;
        Ok(ThreadAuth(id))
    }
}

/// Who opens a thread whose id is not in the path (`POST /v1/chat` names it
/// in its body): the thread a valid thread token names, or an operator (the
/// API key), who may name any.
pub enum ThreadBearer {
    Thread(ThreadId),
    Operator,
}

impl ThreadBearer {
    /// Refuses (401) unless this bearer opens `thread`.
    pub fn opens(&self, thread: &ThreadId) -> Result<(), ApiError> {
        match self {
            ThreadBearer::Operator => Ok(()),
            ThreadBearer::Thread(t) if t == thread => Ok(()),
            ThreadBearer::Thread(_) => Err(TokenError::WrongThread.into()),
        }
    }
}

impl FromRequestParts<AppState> for ThreadBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if is_operator(state, &parts.headers) {
            return Ok(ThreadBearer::Operator);
        }
        let token = bearer(&parts.headers, query_token(parts)?.as_deref());
        let token = token.ok_or(TokenError::Missing)?;
        let subject = state.auth.subject(&token).await?;
        ThreadId::from_subject(&subject)
            .map(ThreadBearer::Thread)
            .ok_or_else(|| TokenError::WrongThread.into())
    }
}

/// Checks that `token` is `thread`'s thread token.
async fn authorize_thread(
    state: &AppState,
    thread: &ThreadId,
    token: Option<String>,
) -> Result<(), ApiError> {
    let token = token.ok_or(TokenError::Missing)?;
    if state.auth.subject(&token).await? != thread.subject() {
        return Err(TokenError::WrongThread.into());
    }
    Ok(())
}

/// Constant-time comparison, so the API key cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer <api key>` when the edge has a key.
fn require_api_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(key) = &state.config.api_key {
        let given = bearer(headers, None).unwrap_or_default();
        if !same(given.as_bytes(), key.as_bytes()) {
            return Err(ApiError::Unauthorized("missing or wrong API key".into()));
        }
    }
    Ok(())
}

/// True when the request carries the configured API key (an operator).
fn is_operator(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.api_key.is_some() && require_api_key(state, headers).is_ok()
}
