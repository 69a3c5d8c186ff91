//! protocol.md §4 "Keys", end to end: tokens made by PyJWT and
//! cryptography (tests/keys/mint.py, as an application's back end or an
//! identity provider makes them), the provider's JWK set served on loopback
//! by the test, and an edge with a producer in-process on the memory bus
//! (`weir dev` as a process where its log and metrics are checked). Each
//! token is opened or refused over WebSocket, SSE and a plain GET.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_bus::{Bus, BusConfig};
use weir_edge::config::KeysConfig;
use weir_edge::EdgeConfig;
use weir_producer::{ProducerConfig, Registry};
use weir_store::MemoryStore;

const NEW: &str = "the-new-secret-of-this-rotation-0123456789";
const OLD: &str = "the-old-secret-of-this-rotation-0123456789";
const STRANGER: &str = "a-secret-this-cluster-never-had-0123456789";
const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "weir-keys-test";
const SESSION: &str = "keys-a";
const OTHER: &str = "keys-b";
const WAIT: Duration = Duration::from_secs(15);

/// The Python that has PyJWT and cryptography: `WEIR_PYTHON`, or the venv
/// that scripts/setup.sh makes.
fn python() -> String {
    if let Ok(p) = std::env::var("WEIR_PYTHON") {
        return p;
    }
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/.venv/bin/python"
    );
    assert!(
        std::path::Path::new(venv).exists(),
        "no {venv}: run scripts/setup.sh (or set WEIR_PYTHON)"
    );
    venv.to_owned()
}

/// Fresh keys, their JWK sets and every token of the table (mint.py).
struct Minted {
    jwks: Value,
    jwks_later: Value,
    tokens: Value,
}

impl Minted {
    fn token(&self, name: &str) -> String {
        self.tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("mint.py made no token {name:?}"))
            .to_owned()
    }
}

fn mint() -> Minted {
    let spec = json!({"session": SESSION, "other": OTHER, "issuer": ISSUER, "audience": AUDIENCE,
                      "secrets": {"new": NEW, "old": OLD, "stranger": STRANGER}});
    let mut child = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/mint.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    serde_json::to_writer(child.stdin.take().unwrap(), &spec).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mint.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Minted {
        jwks: v["jwks"].clone(),
        jwks_later: v["jwks_later"].clone(),
        tokens: v["tokens"].clone(),
    }
}

/// An identity provider's JWK set endpoint on loopback: serves the set it
/// is given and counts the fetches.
#[derive(Clone)]
struct Provider {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl Provider {
    fn new(port: u16, set: &Value) -> Provider {
        Provider {
            set: Arc::new(Mutex::new(set.clone())),
            fetches: Arc::new(AtomicUsize::new(0)),
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        }
    }

    async fn start(set: &Value) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Provider::new(listener.local_addr().unwrap().port(), set);
        p.serve(listener);
        p
    }

    fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    me.fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(me.set.lock().unwrap().clone())
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    fn publish(&self, set: &Value) {
        *self.set.lock().unwrap() = set.clone();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn keys(provider: &str, min_refresh: Duration) -> KeysConfig {
    KeysConfig {
        secret: vec![NEW.into(), OLD.into()],
        jwks_url: Some(provider.into()),
        // Only the fetch at start and those for unknown kids, in these tests.
        jwks_refresh: Duration::from_secs(3600),
        jwks_min_refresh: min_refresh,
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
    }
}

/// An edge and a producer on the memory bus, as `weir dev` runs them.
struct Embedded {
    base: String,
    stop: CancellationToken,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn embedded(keys: KeysConfig) -> Embedded {
    let bus = Bus::memory(BusConfig::default());
    let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut edge = EdgeConfig::local(SECRET);
    edge.keys = keys;
    let producer = ProducerConfig::local();
    let stop = CancellationToken::new();
    let agents = Registry::standard(&producer);
    tokio::spawn(weir_producer::run(
        producer,
        bus.clone(),
        store.clone(),
        agents,
        None,
        stop.clone(),
    ));
    tokio::spawn(weir_edge::run(edge, bus, store, listener, stop.clone()));
    wait_http_ok(&format!("{base}/healthz"));
    Embedded { base, stop }
}

/// A finished mock session with the id asked for.
async fn session(base: &str, id: &str) {
    let r = http()
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"id": id, "agent": "mock", "input": {"tokens": 3, "rate": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn jwks_status(base: &str) -> Value {
    let status: Value = http()
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["jwks"].clone()
}

/// Polls `GET /v1/status` until the provider's state is `state`.
async fn wait_jwks(base: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let jwks = jwks_status(base).await;
        if jwks["state"] == state {
            return jwks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jwks never {state}: {jwks}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a transport made of a token: opened, or refused as §4 says.
#[derive(Debug, PartialEq)]
enum Outcome {
    Opened,
    Refused,
    Other(String),
}

async fn over_websocket(base: &str, token: Option<&str>) -> Outcome {
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

async fn over_sse(base: &str, token: Option<&str>) -> Outcome {
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

async fn over_get(base: &str, token: Option<&str>) -> Outcome {
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
async fn mismatches(base: &str, name: &str, token: Option<&str>, want: Outcome) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_is_opened_or_refused_as_section_4_says_over_websocket_sse_and_get() {
    let minted = mint();
    let provider = Provider::start(&minted.jwks).await;
    let edge = embedded(keys(&provider.url, Duration::from_secs(3600))).await;
    session(&edge.base, SESSION).await;
    session(&edge.base, OTHER).await;
    let jwks = wait_jwks(&edge.base, "ok").await;
    assert_eq!(jwks["keys"], 3, "{jwks}");

    use Outcome::{Opened, Refused};
    let rows = [
        ("hs256 new secret", Opened),
        ("hs256 old secret", Opened),
        ("rs256", Opened),
        ("es256", Opened),
        ("eddsa", Opened),
        ("hs256 stranger secret", Refused),
        ("rs256 forged", Refused),
        ("es256 forged", Refused),
        ("rs256 other session", Refused),
        ("hs256 other session", Refused),
        ("none", Refused),
        ("none naming rsa-1", Refused),
        ("hs256 over the rsa public key", Refused),
        ("rs256 naming the ec key", Refused),
        ("es256 naming the rsa key", Refused),
        ("hs512 new secret", Refused),
        ("rs256 expired", Refused),
        ("hs256 expired", Refused),
        ("rs256 wrong iss", Refused),
        ("es256 wrong aud", Refused),
        ("eddsa no aud", Refused),
        ("hs256 no iss", Refused),
    ];
    let mut failed = mismatches(&edge.base, "no token", None, Refused).await;
    for (name, want) in rows {
        let token = minted.token(name);
        failed.extend(mismatches(&edge.base, name, Some(&token), want).await);
    }
    assert!(failed.is_empty(), "{failed:#?}");
    // Refusals never fetched the set again: every kid they named was known.
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_the_provider_adds_after_the_edge_started_opens_without_waiting_for_the_refresh() {
    let minted = mint();
    let provider = Provider::start(&minted.jwks).await;
    let edge = embedded(keys(&provider.url, Duration::from_millis(200))).await;
    session(&edge.base, SESSION).await;
    wait_jwks(&edge.base, "ok").await;
    assert_eq!(provider.fetches(), 1);
    provider.publish(&minted.jwks_later);

    // The periodic refresh is an hour away: only the token's unknown kid
    // can make the edge fetch the set (once 200 ms have passed since the
    // last fetch).
    let later = minted.token("rs256 added later");
    let deadline = tokio::time::Instant::now() + WAIT;
    while over_get(&edge.base, Some(&later)).await != Outcome::Opened {
        assert!(tokio::time::Instant::now() < deadline, "rsa-2 never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(provider.fetches() >= 2);
    let failed = mismatches(
        &edge.base,
        "rs256 added later",
        Some(&later),
        Outcome::Opened,
    )
    .await;
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(jwks_status(&edge.base).await["keys"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_the_set_at_most_once_per_min_refresh() {
    let minted = mint();
    let provider = Provider::start(&minted.jwks).await;
    let edge = embedded(keys(&provider.url, Duration::from_secs(3600))).await;
    session(&edge.base, SESSION).await;
    wait_jwks(&edge.base, "ok").await;
    provider.publish(&minted.jwks_later);
    // rsa-2 is published now, but the set was fetched less than the
    // minimum interval ago: refused, and the provider is not asked again.
    let later = minted.token("rs256 added later");
    for _ in 0..20 {
        assert_eq!(over_get(&edge.base, Some(&later)).await, Outcome::Refused);
    }
    assert_eq!(provider.fetches(), 1);
    // Known kids are served from the cache all along.
    assert_eq!(
        over_get(&edge.base, Some(&minted.token("es256"))).await,
        Outcome::Opened
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_breaks_later_leaves_the_keys_it_served_in_use_and_is_reported_down() {
    let minted = mint();
    let provider = Provider::start(&minted.jwks).await;
    let edge = embedded(keys(&provider.url, Duration::from_millis(200))).await;
    session(&edge.base, SESSION).await;
    wait_jwks(&edge.base, "ok").await;
    provider.publish(&json!("<html>maintenance</html>"));
    // A token naming a kid the edge lacks makes it fetch the broken set.
    let later = minted.token("rs256 added later");
    let deadline = tokio::time::Instant::now() + WAIT;
    let jwks = loop {
        assert_eq!(over_get(&edge.base, Some(&later)).await, Outcome::Refused);
        let jwks = jwks_status(&edge.base).await;
        if jwks["state"] == "down" {
            break jwks;
        }
        assert!(tokio::time::Instant::now() < deadline, "never down: {jwks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(jwks["error"].as_str().unwrap().contains("keys"), "{jwks}");
    assert_eq!(jwks["keys"], 3);
    for name in ["rs256", "es256", "eddsa", "hs256 new secret"] {
        let failed = mismatches(&edge.base, name, Some(&minted.token(name)), Outcome::Opened).await;
        assert!(failed.is_empty(), "{failed:#?}");
    }
}

/// `weir dev` as a process, so that its log and `/metrics` are its own.
fn weir_dev(dir: &std::path::Path, jwks_url: &str) -> Node {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--secret", &format!("{NEW},{OLD}"), "--jwks-url", jwks_url])
        .args(["--jwks-refresh", "1h", "--jwks-min-refresh", "200ms"])
        .args(["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE])
        .env("RUST_LOG", "info");
    let proc = Proc::spawn_logged("weir-dev", cmd, dir.join("dev.log"));
    let node = Node {
        proc,
        port,
        id: "dev".into(),
    };
    wait_http_ok(&format!("{}/healthz", node.http()));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_jwks_is_down_at_start_serves_hs256_and_takes_provider_tokens_once_it_answers(
) {
    let dir = scratch("keys-jwks-down");
    let minted = mint();
    // The provider's port, reserved and not listening yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let provider = Provider::new(port, &minted.jwks);
    let node = weir_dev(&dir, &provider.url);
    let base = node.http();
    session(&base, SESSION).await;

    let jwks = wait_jwks(&base, "down").await;
    assert!(jwks["error"].is_string(), "{jwks}");
    assert_eq!(jwks["keys"], 0);
    assert_eq!(metric_sum(&node, "weir_edge_jwks_up").await, 0.0);
    let log = std::fs::read_to_string(dir.join("dev.log")).unwrap();
    assert!(log.contains("JWK set unreachable"), "{log}");
    assert_eq!(
        over_get(&base, Some(&minted.token("hs256 old secret"))).await,
        Outcome::Opened
    );
    let rs256 = minted.token("rs256");
    assert_eq!(over_get(&base, Some(&rs256)).await, Outcome::Refused);

    provider.serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    while over_get(&base, Some(&rs256)).await != Outcome::Opened {
        assert!(tokio::time::Instant::now() < deadline, "rs256 never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jwks = wait_jwks(&base, "ok").await;
    assert_eq!(
        (jwks["keys"].clone(), jwks["error"].clone()),
        (json!(3), Value::Null)
    );
    assert_eq!(metric_sum(&node, "weir_edge_jwks_up").await, 1.0);
    assert_eq!(metric_sum(&node, "weir_edge_jwks_keys").await, 3.0);
    let log = std::fs::read_to_string(dir.join("dev.log")).unwrap();
    assert!(log.contains("JWK set loaded"), "{log}");
}
