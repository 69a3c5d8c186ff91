//! The upgrade (RFC 6455 §4.2): the extractor that checks the request and
//! answers 101, and the upgraded socket split into the codec's two halves.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};

use crate::error::ApiError;
use crate::websocket::read::FrameStream;
use crate::websocket::write::FrameSink;

/// The socket of an upgraded connection, as hyper hands it over.
pub type Socket = TokioIo<hyper::upgrade::Upgraded>;

/// A WebSocket upgrade request that passed the handshake checks.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Upgrade, ApiError> {
        let bad = |m: &str| ApiError::BadRequest(format!("not a WebSocket upgrade: {m}"));
        if parts.method != Method::GET {
            return Err(bad("the method must be GET"));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(bad("`Connection` must include `upgrade`"));
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(bad("`Upgrade` must be `websocket`"));
        }
        if !has_token(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(bad("`Sec-WebSocket-Version` must be 13"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| bad("`Sec-WebSocket-Key` is missing"))?;
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| bad("this connection cannot be upgraded"))?;
        Ok(Upgrade {
            on_upgrade,
            accept: HeaderValue::from_str(&accept).expect("base64 is a header value"),
        })
    }
}

/// Whether a comma-separated header has `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the socket once hyper hands it over.
    pub fn on_upgrade<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// A socket's two halves: client frames in, server frames out.
pub fn split(
    socket: Socket,
    max_message: usize,
) -> (FrameSink<WriteHalf<Socket>>, FrameStream<ReadHalf<Socket>>) {
    let (read, write) = tokio::io::split(socket);
    (FrameSink::new(write), FrameStream::new(read, max_message))
}
