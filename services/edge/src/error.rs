//! The HTTP API's one error type: every failure becomes a status and a JSON
//! body `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weir_bus::BusError;
use weir_protocol::TokenError;
use weir_store::StoreError;
use weir_telemetry::names;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("no such session")]
    NotFound,
    /// Something the request names that the session does not have (an
    /// input request).
    #[error("{0}")]
    Missing(String),
    #[error("no such thread")]
    NoSuchThread,
    /// A thread's run was asked for while its previous run has not ended
    /// (protocol.md §9).
    #[error("the thread's run {0} has not ended")]
    RunActive(weir_protocol::SessionId),
    /// A path this API does not have.
    #[error("{0}")]
    NoRoute(String),
    /// A path this API has, with another method.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("history expired: {0}")]
    Expired(String),
    #[error("request body too large")]
    TooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit: try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound
            | ApiError::NoSuchThread
            | ApiError::Missing(_)
            | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::RunActive(_) => StatusCode::CONFLICT,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound
            | ApiError::NoSuchThread
            | ApiError::Missing(_)
            | ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::RunActive(_) => "run_active",
            ApiError::Expired(_) => "history_expired",
            ApiError::TooLarge => "too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests { .. } => "rate_limited",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Unauthorized(_)) {
            metrics::counter!(names::AUTH_FAILURES).increment(1);
        }
        let body =
            serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        ApiError::Unauthorized(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> ApiError {
        metrics::counter!(names::BUS_ERRORS, "op" => "api").increment(1);
        ApiError::Unavailable(e.to_string())
    }
}
