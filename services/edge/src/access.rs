//! Who may call a handler, decided by extractors that handlers take as
//! arguments; no handler checks a token or a key itself (the tokens' keys
//! and rules are [`crate::auth`]).
//!
//! - [`SessionAuth`]: the session named by the path's `{id}`, opened by its
//!   token (`Authorization: Bearer` or `?token=`; protocol.md §4).
//! - [`ApiKey`]: the API key, when the edge has one (creating sessions and
//!   the operator API, protocol.md §7).
//! - [`SessionOrOperator`]: a session's token, or the API key (control).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use weir_protocol::SessionId;

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
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    params
        .iter()
        .find(|(name, _)| *name == "id")
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

/// Parses the session id and checks the session token for it.
async fn authorize(
    state: &AppState,
    id: &str,
    token: Option<String>,
) -> Result<SessionId, ApiError> {
    let id = SessionId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let token = token.ok_or(weir_protocol::TokenError::Missing)?;
    state.auth.session(&token, &id).await?;
    Ok(id)
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
