//! protocol.md §4 "Keys", end to end: tokens made by PyJWT and
//! cryptography (tests/keys/mint.py, as an application's back end or an
//! identity provider makes them), the provider's JWK set served on loopback
//! by the test, and an edge with a producer in-process on the memory bus
//! (`weir dev` as a process where its log and metrics are checked). Each
//! token is opened or refused over WebSocket, SSE and a plain GET.

mod common;
#[path = "keys/outcome.rs"]
mod outcome;
#[path = "keys/provider.rs"]
mod provider;

use std::process::Command;
use std::time::Duration;

use common::*;
use outcome::{mismatches, over_get, Outcome};
use provider::{mint, Provider};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use weir_edge::config::KeysConfig;
use weir_edge::EdgeConfig;

const NEW: &str = "the-new-secret-of-this-rotation-0123456789";
const OLD: &str = "the-old-secret-of-this-rotation-0123456789";
const STRANGER: &str = "a-secret-this-cluster-never-had-0123456789";
const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "weir-keys-test";
const SESSION: &str = "keys-a";
const OTHER: &str = "keys-b";
const WAIT: Duration = Duration::from_secs(15);

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

/// An edge and a producer on the memory bus, as `weir dev` runs them,
/// taking the tokens `keys` says.
async fn embedded(keys: KeysConfig) -> Embedded {
    let mut edge = EdgeConfig::local(SECRET);
    edge.keys = keys;
    Embedded::start(edge).await
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
