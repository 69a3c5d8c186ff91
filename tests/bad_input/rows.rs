//! The rows of tests/bad_input.rs: each bad request with the status and
//! error code protocol.md gives it, and each refused WebSocket with its
//! close code.

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::Value;

use crate::common::http;

/// The tokens the rows use.
pub struct Tokens {
    /// A session that exists, and its token.
    pub id: String,
    pub token: String,
    /// Its token, expired.
    pub expired: String,
    /// A token for another session.
    pub foreign: String,
    /// A token for `ghost-session`, which does not exist.
    pub ghost: String,
}

/// One request, as sent.
pub struct Request {
    method: Method,
    path: String,
    bearer: Option<String>,
    body: Option<String>,
    header: Option<(&'static str, HeaderValue)>,
}

fn request(method: Method, path: String) -> Request {
    Request {
        method,
        path,
        bearer: None,
        body: None,
        header: None,
    }
}

fn get(path: String) -> Request {
    request(Method::GET, path)
}

/// A POST with a JSON body.
fn post(path: &str, body: impl Into<String>) -> Request {
    request(Method::POST, path.into()).body(body)
}

impl Request {
    fn bearer(mut self, key: &str) -> Request {
        self.bearer = Some(key.into());
        self
    }

    fn body(mut self, body: impl Into<String>) -> Request {
        self.body = Some(body.into());
        self.header("content-type", HeaderValue::from_static("application/json"))
    }

    fn header(mut self, name: &'static str, value: HeaderValue) -> Request {
        self.header = Some((name, value));
        self
    }
}

/// A bad request and what it must get: `status` and a JSON error with
/// `code` and a message (containing `says`, when given).
pub struct Row {
    pub case: &'static str,
    pub request: Request,
    pub status: u16,
    pub code: &'static str,
    pub says: Option<&'static str>,
}

fn row(case: &'static str, request: Request, status: u16, code: &'static str) -> Row {
    Row {
        case,
        request,
        status,
        code,
        says: None,
    }
}

impl Row {
    /// Sends the request to `base`; `Err` says how the answer differs.
    pub async fn check(&self, base: &str) -> Result<(), String> {
        let r = &self.request;
        let mut req = http().request(r.method.clone(), format!("{base}{}", r.path));
        if let Some(key) = &r.bearer {
            req = req.bearer_auth(key);
        }
        if let Some((name, value)) = &r.header {
            req = req.header(*name, value.clone());
        }
        if let Some(body) = &r.body {
            req = req.body(body.clone());
        }
        let answer = req.send().await.map_err(|e| format!("not sent: {e}"))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        let message = error["message"].as_str().unwrap_or_default();
        let says = self.says.is_none_or(|s| message.contains(s));
        if status == self.status && error["code"] == self.code && !message.is_empty() && says {
            return Ok(());
        }
        let what = format!("{} {}", r.method, r.path);
        Err(format!(
            "{what} got {status} {text:?}; wanted {} with code {:?}{}",
            self.status,
            self.code,
            self.says
                .map(|s| format!(" and a message with {s:?}"))
                .unwrap_or_default()
        ))
    }
}

/// Every bad HTTP request (`key`: the edge's API key).
pub fn http_rows(t: &Tokens, key: &str) -> Vec<Row> {
    let (id, token, ghost) = (&t.id, &t.token, &t.ghost);
    let create = "/v1/sessions";
    let big = format!(
        r#"{{"agent":"mock","input":{{"x":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let not_ascii = HeaderValue::from_bytes(b"\xc3\xa912").unwrap();
    vec![
        // Creating sessions.
        row(
            "create without the API key",
            post(create, r#"{"agent":"mock"}"#),
            401,
            "unauthorized",
        ),
        row(
            "create with a wrong API key",
            post(create, r#"{"agent":"mock"}"#).bearer("wrong"),
            401,
            "unauthorized",
        ),
        row(
            "create with JSON cut short",
            post(create, r#"{"agent": "mock""#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create with no agent",
            post(create, r#"{"input": {}}"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create for an agent nobody serves",
            post(create, r#"{"agent":"nope"}"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create with a negative token count",
            post(create, r#"{"agent":"mock","input":{"tokens":-5}}"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create with an input that is not an object",
            post(create, r#"{"agent":"mock","input":[1]}"#).bearer(key),
            400,
            "bad_request",
        ),
        // serde would read `["mock"]` as {"agent": "mock"}: a struct's
        // sequence form.
        row(
            "create with an array for a body",
            post(create, r#"["mock"]"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "broadcast with an array for a body",
            post("/v1/broadcast", r#"[{"x":1}]"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create with an id that cannot be a subject token",
            post(create, r#"{"agent":"mock","id":"no.dots"}"#).bearer(key),
            400,
            "bad_request",
        ),
        row(
            "create with a body over the limit",
            post(create, big).bearer(key),
            413,
            "too_large",
        ),
        row(
            "create with an id already taken",
            post(create, r#"{"agent":"mock","id":"chosen-id"}"#).bearer(key),
            409,
            "conflict",
        ),
        // Reading sessions.
        row(
            "a session without a token",
            get(format!("/v1/sessions/{id}")),
            401,
            "unauthorized",
        ),
        row(
            "a session with a token that is no JWT",
            get(format!("/v1/sessions/{id}?token=garbage")),
            401,
            "unauthorized",
        ),
        row(
            "a session with its token expired",
            get(format!("/v1/sessions/{id}?token={}", t.expired)),
            401,
            "unauthorized",
        ),
        row(
            "a session with another session's token",
            get(format!("/v1/sessions/{id}?token={}", t.foreign)),
            401,
            "unauthorized",
        ),
        row(
            "a session that does not exist",
            get(format!("/v1/sessions/ghost-session?token={ghost}")),
            404,
            "not_found",
        ),
        row(
            "a session whose id cannot exist",
            get(format!("/v1/sessions/bad.id?token={ghost}")),
            400,
            "bad_request",
        ),
        row(
            "history with limit 0",
            get(format!("/v1/sessions/{id}/history?limit=0&token={token}")),
            400,
            "bad_request",
        ),
        row(
            "history after a seq that is not a number",
            get(format!("/v1/sessions/{id}/history?after=abc&token={token}")),
            400,
            "bad_request",
        ),
        row(
            "history after a seq the session never reached",
            get(format!(
                "/v1/sessions/{id}/history?after=999999&token={token}"
            )),
            400,
            "bad_request",
        ),
        row(
            "SSE with a Last-Event-ID that is not ASCII",
            get(format!("/v1/sessions/{id}/events?token={token}"))
                .header("last-event-id", not_ascii),
            400,
            "bad_request",
        ),
        row(
            "SSE after a negative seq",
            get(format!("/v1/sessions/{id}/events?after=-1&token={token}")),
            400,
            "bad_request",
        ),
        row(
            "SSE of a session that does not exist",
            get(format!("/v1/sessions/ghost-session/events?token={ghost}")),
            404,
            "not_found",
        ),
        row(
            "AG-UI with an array for a run input",
            post(&format!("/v1/sessions/{id}/ag-ui?token={token}"), "[]"),
            400,
            "bad_request",
        ),
        // Control.
        row(
            "pause with another session's token",
            request(
                Method::POST,
                format!("/v1/sessions/{id}/pause?token={}", t.foreign),
            ),
            401,
            "unauthorized",
        ),
        row(
            "cancel a session that does not exist",
            request(
                Method::POST,
                format!("/v1/sessions/ghost-session/cancel?token={ghost}"),
            ),
            404,
            "not_found",
        ),
        // Unknown paths and methods say so.
        row(
            "an unknown path under /v1",
            get("/v1/nothing-here".into()),
            404,
            "not_found",
        ),
        Row {
            says: Some("no route GET /v2/nothing"),
            ..row(
                "an unknown path",
                get("/v2/nothing".into()),
                404,
                "not_found",
            )
        },
        Row {
            says: Some("DELETE"),
            ..row(
                "a method the path does not take",
                request(Method::DELETE, "/v1/broadcast".into()),
                405,
                "method_not_allowed",
            )
        },
    ]
}

/// A WebSocket the edge refuses: an error frame, then `close`.
pub struct WsRow {
    pub case: &'static str,
    pub path: String,
    pub close: u16,
}

fn ws_row(case: &'static str, path: String, close: u16) -> WsRow {
    WsRow { case, path, close }
}

/// Every refused WebSocket.
pub fn ws_rows(t: &Tokens) -> Vec<WsRow> {
    let (id, token, ghost) = (&t.id, &t.token, &t.ghost);
    vec![
        ws_row("no token", format!("/v1/sessions/{id}/ws"), 4001),
        ws_row(
            "a token that is no JWT",
            format!("/v1/sessions/{id}/ws?token=garbage"),
            4001,
        ),
        ws_row(
            "an expired token",
            format!("/v1/sessions/{id}/ws?token={}", t.expired),
            4001,
        ),
        ws_row(
            "another session's token",
            format!("/v1/sessions/{id}/ws?token={}", t.foreign),
            4001,
        ),
        ws_row(
            "a session that does not exist",
            format!("/v1/sessions/ghost-session/ws?token={ghost}"),
            4004,
        ),
        ws_row(
            "a session whose id cannot exist",
            format!("/v1/sessions/bad.id/ws?token={ghost}"),
            4004,
        ),
        ws_row(
            "after a seq that is not a number",
            format!("/v1/sessions/{id}/ws?token={token}&after=xyz"),
            1008,
        ),
        ws_row(
            "after a seq the session never reached",
            format!("/v1/sessions/{id}/ws?token={token}&after=999999"),
            1008,
        ),
    ]
}
