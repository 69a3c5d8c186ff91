//! What handlers read from a request besides who is asking (that is
//! [`crate::auth`]): bodies that must be JSON objects, query parameters,
//! and the resume cursor, each failing with the API's one error type.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub fn json_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge;
    }
    ApiError::BadRequest(rejection.body_text())
}

/// A JSON body that must be an object, read as `T`. `Json<T>` alone also
/// takes an array for a struct (serde's sequence form: `["mock"]` would
/// create a session), which no client means and the OpenAPI document does
/// not allow. Handlers take `Result<JsonObject<T>, ApiError>` so that their
/// own checks (auth) come first.
pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(object) =
            Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, state)
                .await
                .map_err(json_error)?;
        serde_json::from_value(serde_json::Value::Object(object))
            .map(JsonObject)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                ))
            })
    }
}

/// Query parameters read as `T`; a malformed query is a 400 in the API's
/// error shape. Taken before [`crate::auth`]'s extractors, so that a bad
/// parameter is named before the token is looked at.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `after` (or `Last-Event-ID`): the last seq the client holds; absent is 0.
pub fn parse_after(raw: Option<&str>) -> Result<u64, ApiError> {
    match raw {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("after must be a seq (u64), not {s:?}"))),
    }
}

/// Query parameters of the stream endpoints, parsed by hand so that a bad
/// value becomes a protocol error rather than a bare 400.
pub type RawQuery = Query<HashMap<String, String>>;
