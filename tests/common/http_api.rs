//! The HTTP API as a client calls it: sessions created, their state and
//! history, and a node's metrics.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::Endpoint;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A node's `/metrics` page.
pub async fn metrics_page(node: &impl Endpoint) -> String {
    http()
        .get(format!("{}/metrics", node.http()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of a metric's series on a node's `/metrics` page.
pub async fn metric_sum(node: &impl Endpoint, name: &str) -> f64 {
    metrics_page(node)
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub struct Session {
    pub id: String,
    pub token: String,
}

pub async fn create(edge: &impl Endpoint, body: Value) -> Session {
    create_with_key(edge, body, None).await
}

/// `POST /v1/sessions`, with the API key when the cluster has one.
pub async fn create_with_key(edge: &impl Endpoint, body: Value, api_key: Option<&str>) -> Session {
    let mut req = http()
        .post(format!("{}/v1/sessions", edge.http()))
        .json(&body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.unwrap();
    assert_eq!(
        r.status(),
        201,
        "create failed: {}",
        r.text().await.unwrap()
    );
    let v: Value = r.json().await.unwrap();
    Session {
        id: v["id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

pub async fn create_mock(edge: &impl Endpoint, tokens: u64, rate: f64, seed: u64) -> Session {
    create(
        edge,
        json!({"agent": "mock", "input": {"tokens": tokens, "rate": rate, "seed": seed}}),
    )
    .await
}

pub async fn state(edge: &impl Endpoint, s: &Session) -> Value {
    let r = http()
        .get(format!(
            "{}/v1/sessions/{}?token={}",
            edge.http(),
            s.id,
            s.token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every stored event, through `history` pages.
pub async fn history(edge: &impl Endpoint, s: &Session) -> Vec<Value> {
    let mut after = 0;
    let mut out = Vec::new();
    loop {
        let url = format!(
            "{}/v1/sessions/{}/history?after={after}&limit=1000&token={}",
            edge.http(),
            s.id,
            s.token
        );
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let events = v["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        after = v["next_after"].as_u64().unwrap();
        out.extend(events);
    }
}

/// Waits until the session has ended (its history ends with `end`).
pub async fn wait_ended(edge: &impl Endpoint, s: &Session, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = state(edge, s).await;
        if ["completed", "cancelled", "failed"].contains(&st["status"].as_str().unwrap_or("")) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "session {} did not end: {st}",
            s.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
