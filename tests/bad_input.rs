//! Every bad input gets the status or close code of protocol.md, with a
//! JSON error or an error frame, and the node keeps serving everyone else.
//!
//! The requests are rows of tables — what is wrong, the request, and the
//! status and error code it must get (or the close code, for a WebSocket) —
//! sent one by one to an edge embedded in the test on the memory bus (no
//! case needs NATS or Redis) while another session streams; a failure
//! names every row that broke. Bad frames on an open WebSocket are in
//! tests/bad_frames.rs.

mod common;

#[path = "bad_input/rows.rs"]
mod rows;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use weir_edge::EdgeConfig;
use weir_protocol::{SessionId, TokenKey};

use rows::{http_rows, ws_rows, Tokens};

const MINUTE: Duration = Duration::from_secs(60);
const API_KEY: &str = "the-api-key";

/// An embedded edge (and producer) that asks for [`API_KEY`] to create.
async fn keyed_edge() -> Embedded {
    let mut config = EdgeConfig::local(SECRET);
    config.api_key = Some(API_KEY.into());
    Embedded::start(config).await
}

/// A session streaming while the bad input is sent, read to its end.
struct Healthy {
    session: Session,
    reader: tokio::task::JoinHandle<Received>,
}

impl Healthy {
    async fn start(edge: &Embedded) -> Healthy {
        let body = json!({"agent": "mock", "input": {"tokens": 400, "rate": 100}});
        let session = create_with_key(edge, body, Some(API_KEY)).await;
        let mut ws = ws_connect(edge, &session.id, &session.token, 0).await;
        let reader = tokio::spawn(async move { read(&mut ws, Stop::Close, MINUTE).await });
        Healthy { session, reader }
    }

    /// It ended normally, holding exactly its log.
    async fn assert_undisturbed(self, edge: &Embedded) {
        let got = self.reader.await.unwrap();
        assert_eq!(got.close, Some(1000), "the healthy stream was cut");
        assert_complete(&got.events, "completed");
        assert_eq!(got.events, history(edge, &self.session).await);
    }
}

/// Tokens for the rows: one of the healthy session, one of a session that
/// does not exist, an expired one and one for another session.
fn tokens(healthy: &Session) -> Tokens {
    let key = TokenKey::new(SECRET.as_bytes()).unwrap();
    let ghost = key.issue(&SessionId::parse("ghost-session").unwrap(), 60);
    Tokens {
        id: healthy.id.clone(),
        token: healthy.token.clone(),
        expired: key.issue_until(&SessionId::parse(&healthy.id).unwrap(), 1),
        foreign: ghost.clone(),
        ghost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_request_gets_its_status_and_error_code_while_others_stream_on() {
    let edge = keyed_edge().await;
    let healthy = Healthy::start(&edge).await;
    // The id the conflict row asks for again.
    let taken = json!({"agent": "mock", "id": "chosen-id", "input": {"tokens": 1}});
    create_with_key(&edge, taken, Some(API_KEY)).await;
    let rows = http_rows(&tokens(&healthy.session), API_KEY);
    let total = rows.len();
    let mut failed = Vec::new();
    for row in rows {
        if let Err(why) = row.check(&edge.base).await {
            failed.push(format!("{}: {why}", row.case));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} rows failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    healthy.assert_undisturbed(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_websocket_gets_one_error_frame_then_its_close_code_and_no_event() {
    let edge = keyed_edge().await;
    let healthy = Healthy::start(&edge).await;
    let rows = ws_rows(&tokens(&healthy.session));
    let total = rows.len();
    let mut failed = Vec::new();
    for row in rows {
        let url = format!("{}{}", edge.ws(), row.path);
        let got = match tokio_tungstenite::connect_async(&url).await {
            Ok((mut ws, _)) => read(&mut ws, Stop::Close, MINUTE).await,
            Err(e) => {
                failed.push(format!("{}: {url}: no upgrade: {e}", row.case));
                continue;
            }
        };
        let ok = got.close == Some(row.close)
            && got.hello.is_none()
            && got.events.is_empty()
            && got.errors.len() == 1;
        if !ok {
            failed.push(format!(
                "{}: {url}: close {:?}, hello {:?}, {} events, errors {:?}; wanted close {} \
                 after one error frame and nothing else",
                row.case,
                got.close,
                got.hello,
                got.events.len(),
                got.errors,
                row.close
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} rows failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    healthy.assert_undisturbed(&edge).await;
}

/// What `GET …/history?after=0` answers: its status and error code.
async fn history_from_start(edge: &Embedded, s: &Session) -> (u16, Value) {
    let r = http()
        .get(format!(
            "{}/v1/sessions/{}/history?after=0&token={}",
            edge.base, s.id, s.token
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_gone_from_the_log_gets_410_and_4010_and_a_recent_client_still_resumes() {
    let mut config = EdgeConfig::local(SECRET);
    config.cluster.retention = Duration::from_secs(2);
    let edge = Embedded::start(config).await;
    // 6 s of tokens: before the end, the first seconds are gone from the log.
    let s = create_mock(&edge, 60, 10.0, 1).await;
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let (status, body) = history_from_start(&edge, &s).await;
        if status == 410 {
            assert_eq!(body["error"]["code"], "history_expired", "{body}");
            break;
        }
        assert_eq!(status, 200, "history: {body}");
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!(
        "{}/v1/sessions/{}/ws?token={}&after=0",
        edge.ws(),
        s.id,
        s.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(got.close, Some(4010));
    assert_eq!(got.errors[0]["code"], "history_expired");
    // A client that is recent enough still resumes.
    let last = state(&edge, &s).await["last_seq"].as_u64().unwrap();
    let mut ws = ws_connect(&edge, &s.id, &s.token, last - 2).await;
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1000));
    assert_eq!(tail.events.first().unwrap()["seq"], last - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_over_the_rate_limit_gets_429_with_retry_after() {
    let mut config = EdgeConfig::local(SECRET);
    (config.create_rate, config.create_burst) = (1, 3);
    let edge = Embedded::start(config).await;
    let url = format!("{}/v1/sessions", edge.base);
    let body = json!({"agent": "mock", "input": {"tokens": 5}});
    // Twenty at once: three fit the burst (plus one a second while they
    // are answered), the rest are told to wait.
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..20).map(|_| http().post(&url).json(&body).send())).await;
    let mut created = 0;
    for r in answers {
        let r = r.unwrap();
        match r.status().as_u16() {
            201 => created += 1,
            429 => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=20).contains(&retry), "Retry-After {retry}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            }
            other => panic!("a burst got {other}: {}", r.text().await.unwrap()),
        }
    }
    let refilled = started.elapsed().as_secs_f64().floor() as usize;
    assert!((3..=3 + refilled).contains(&created), "{created} created");
    // After the wait it names (one token a second), creating works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = create_mock(&edge, 5, 0.0, 1).await;
    let (events, _) = read_all_resuming(&[&edge], &s, Duration::from_secs(30)).await;
    assert_complete(&events, "completed");
}
