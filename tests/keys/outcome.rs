//! What each transport makes of a token in tests/keys.rs: the session
//! opened, or refused as protocol.md §4 says (401 / close 4001 with an
//! `unauthorized` error), over WebSocket, SSE and a plain GET.

use serde_json::Value;

use super::{SESSION, WAIT};
use crate::common::{http, read, Stop};

/// What a transport made of a token: opened, or refused as §4 says.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Opened,
    Refused,
    Other(String),
}

pub async fn over_websocket(base: &str, token: Option<&str>) -> Outcome {
    let ws = base.replacen("http", "ws", 1);
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let url = format!("{ws}/v1/sessions/{SESSION}/ws{query}");
    let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(c) => c,
        Err(e) => return Outcome::Other(format!("connect: {e}")),
    };
    let got = read(&mut ws, Stop::Close, WAIT).await;
    let ended = got.events.last().is_some_and(|e| e["kind"] == "end");
    let code = got.errors.first().map(|e| e["code"].clone());
    match (&got.hello, got.close, code) {
        (Some(_), Some(1000), None) if ended && got.events.len() == 4 => Outcome::Opened,
        (None, Some(4001), Some(code)) if got.events.is_empty() && code == "unauthorized" => {
            Outcome::Refused
        }
        _ => Outcome::Other(format!("{got:?}")),
    }
}

pub async fn over_sse(base: &str, token: Option<&str>) -> Outcome {
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let r = http()
        .get(format!("{base}/v1/sessions/{SESSION}/events{query}"))
        .send()
        .await
        .unwrap();
    let kind = r.headers().get("content-type").cloned();
    match r.status().as_u16() {
        200 if kind.is_some_and(|k| k.to_str().unwrap().starts_with("text/event-stream")) => {
            let body = r.text().await.unwrap();
            if body.contains("event: end") {
                Outcome::Opened
            } else {
                Outcome::Other(body)
            }
        }
        status => refused(status, r.text().await.unwrap()),
    }
}

pub async fn over_get(base: &str, token: Option<&str>) -> Outcome {
    let mut request = http().get(format!("{base}/v1/sessions/{SESSION}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    match r.status().as_u16() {
        200 => {
            let body: Value = r.json().await.unwrap();
            if body["id"] == SESSION {
                Outcome::Opened
            } else {
                Outcome::Other(body.to_string())
            }
        }
        status => refused(status, r.text().await.unwrap()),
    }
}

fn refused(status: u16, body: String) -> Outcome {
    let code = serde_json::from_str::<Value>(&body).map(|v| v["error"]["code"].clone());
    if status == 401 && code.is_ok_and(|c| c == "unauthorized") {
        Outcome::Refused
    } else {
        Outcome::Other(format!("{status} {body}"))
    }
}

/// Every transport's outcome for `token`, with the ones that are not `want`.
pub async fn mismatches(base: &str, name: &str, token: Option<&str>, want: Outcome) -> Vec<String> {
    let outcomes = [
        ("websocket", over_websocket(base, token).await),
        ("sse", over_sse(base, token).await),
        ("get", over_get(base, token).await),
    ];
    outcomes
        .into_iter()
        .filter(|(_, got)| *got != want)
        .map(|(transport, got)| format!("{name} over {transport}: {got:?}, wanted {want:?}"))
        .collect()
}
