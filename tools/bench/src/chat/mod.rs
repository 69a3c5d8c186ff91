//! `weir-bench chat`: how long a user waits for the first token of a reply,
//! three ways in one run, each with every chat sending at the same instant:
//!
//! - **chat**: the AI SDK's one request (`POST /v1/chat` with a thread token,
//!   docs/protocol.md §9): the run starts and streams in the same response;
//! - **connect**: weir's create-then-connect (`POST /v1/sessions`, then the
//!   WebSocket), two client round trips;
//! - **baseline** (with `--baseline`): a one-request stream without a log —
//!   Vercel's `resumable-stream` behind a small Node server
//!   (`tools/bench/resumable/`) producing the same chunks at the same rate.
//!
//! Rounds rotate the order of the three so that none always goes first.
//! Every reply is read to its end and checked: the text is exactly the
//! mock's `echo: <message>` (chat, baseline) or every seq once (connect).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

mod report;

use report::{emit, ratios, summarise};

use super::api::http_client;
use super::stats::Percentiles;
use super::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Edge base URL(s), `http://host:port`; chats are spread over them.
    #[arg(long = "edge", required = true, value_delimiter = ',')]
    pub edges: Vec<String>,
    /// The API key, when the edges have one (creating threads and sessions).
    #[arg(long, env = "WEIR_API_KEY")]
    pub api_key: Option<String>,
    /// Chats (and sessions, and baseline streams) started at once per round.
    #[arg(long, default_value_t = 200)]
    pub chats: usize,
    /// Rounds; each runs every path once, in a rotating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Tokens per second of each reply.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Characters of each user message (the mock's reply echoes it, in
    /// tokens of up to 8 characters).
    #[arg(long, default_value_t = 40)]
    pub message_chars: usize,
    /// A `resumable-stream` server (`tools/bench/resumable/server.mjs`) to
    /// measure beside weir.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Which of weir's paths to run (`chat`, `connect`); the baseline runs
    /// when --baseline is given.
    #[arg(long, value_delimiter = ',', default_value = "chat,connect")]
    pub paths: Vec<Path>,
    /// Give up on a round after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: Output,
}

/// One path's starts: when each was answered and when its first token came.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PathReport {
    pub path: &'static str,
    pub starts: u64,
    /// Request → the first answer: response headers (chat, baseline) or
    /// the create's 201 (connect).
    pub answered_ms: Percentiles,
    /// connect only: the create's 201 → the WebSocket open.
    pub handshake_ms: Percentiles,
    /// The user's request → the first token.
    pub first_token_ms: Percentiles,
    /// Where the time to first token went (weir's paths; see [`Split`]):
    /// request → the edge's `created`, → the first token's `ts`, → receipt.
    pub split_ms: Vec<(String, Percentiles)>,
    /// Replies that were not exactly right (text or seqs), and failures.
    pub wrong: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatReport {
    pub scenario: &'static str,
    pub chats: usize,
    pub rounds: usize,
    pub rate: f64,
    pub paths: Vec<PathReport>,
    /// chat's first-token p50 and p99 over connect's and baseline's.
    pub ratios: Vec<(String, f64)>,
}

/// One start, as measured.
#[derive(Debug, Default)]
struct Start {
    answered: Duration,
    handshake: Option<Duration>,
    first_token: Duration,
    right: bool,
    /// Wall clock (Unix ms) of the request and of the first token's receipt.
    sent_ms: f64,
    received_ms: f64,
    /// Where the run can be looked up afterwards (weir's paths): the edge,
    /// the session id and a token that opens it.
    run: Option<(String, String, String)>,
    /// Filled in after the round from the session's state and log.
    split: Option<Split>,
}

/// Where the time to a run's first token went, from wall clocks on one
/// machine: request → the edge's `created`, `created` → the first token's
/// `ts` (state, queue, a producer taking the run, the agent's first
/// emit), `ts` → the client's receipt (publish, log, feed, encode, write).
#[derive(Debug, Clone, Copy)]
struct Split {
    to_edge: f64,
    to_first_emit: f64,
    delivery: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Path {
    Chat,
    Connect,
    Baseline,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Chat => "chat",
            Path::Connect => "connect",
            Path::Baseline => "baseline",
        }
    }
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    ensure!(
        args.chats > 0 && args.rounds > 0,
        "--chats and --rounds must be positive"
    );
    let http = http_client();
    let mut paths: Vec<Path> = args
        .paths
        .iter()
        .copied()
        .filter(|p| *p != Path::Baseline)
        .collect();
    if args.baseline.is_some() {
        paths.push(Path::Baseline);
    }
    let mut measured: Vec<(Path, Vec<Start>, Vec<String>)> =
        paths.iter().map(|p| (*p, Vec::new(), Vec::new())).collect();
    for round in 0..args.rounds {
        for k in 0..paths.len() {
            let path = paths[(round + k) % paths.len()];
            let (starts, errors) = round_of(&args, &http, path, round).await?;
            let slot = measured
                .iter_mut()
                .find(|(p, ..)| *p == path)
                .expect("a slot");
            slot.1.extend(starts);
            slot.2.extend(errors);
        }
    }
    let paths: Vec<PathReport> = measured
        .into_iter()
        .map(|(p, starts, errors)| summarise(p, &starts, errors))
        .collect();
    let report = ChatReport {
        scenario: "chat",
        chats: args.chats,
        rounds: args.rounds,
        rate: args.rate,
        ratios: ratios(&paths),
        paths,
    };
    emit(&args.output, &report)?;
    let wrong: u64 = report.paths.iter().map(|p| p.wrong).sum();
    ensure!(
        wrong == 0,
        "{wrong} replies were not exactly right (see the report)"
    );
    Ok(())
}

/// One round of one path: prepares every chat, then starts them all at once.
async fn round_of(
    args: &ChatArgs,
    http: &reqwest::Client,
    path: Path,
    round: usize,
) -> anyhow::Result<(Vec<Start>, Vec<String>)> {
    let message = message(args.message_chars, round);
    let mut prepared = Vec::with_capacity(args.chats);
    for n in 0..args.chats {
        let edge = args.edges[n % args.edges.len()].clone();
        let thread = match path {
            Path::Chat => Some(create_thread(http, args, &edge).await?),
            _ => None,
        };
        prepared.push((edge, thread));
    }
    let gate = Arc::new(Barrier::new(args.chats));
    let mut tasks = JoinSet::new();
    for (n, (edge, thread)) in prepared.into_iter().enumerate() {
        let (http, args, gate, message) =
            (http.clone(), args.clone(), gate.clone(), message.clone());
        tasks.spawn(async move {
            gate.wait().await;
            let one = async {
                match path {
                    Path::Chat => chat(&http, &edge, thread.expect("a thread"), &message).await,
                    Path::Connect => connect(&http, &args, &edge).await,
                    Path::Baseline => {
                        let url = args.baseline.as_deref().expect("--baseline");
                        baseline(&http, url, &format!("r{round}-c{n}"), &message, args.rate).await
                    }
                }
            };
            tokio::time::timeout(args.timeout, one)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no end within {:?}", args.timeout)))
        });
    }
    let (mut starts, mut errors) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(s) => starts.push(s),
            Err(e) => errors.push(format!("{}: {e:#}", path.name())),
        }
    }
    errors.truncate(5);
    split_all(http, &mut starts).await;
    Ok((starts, errors))
}

/// The user's message of a round: `round R: ` and letters, `chars` long.
fn message(chars: usize, round: usize) -> String {
    let head = format!("round {round}: ");
    let body: String = "the quick brown fox jumps over the lazy dog "
        .chars()
        .cycle()
        .take(chars.saturating_sub(head.len()))
        .collect();
    format!("{head}{body}").trim_end().to_owned()
}

/// A thread of the mock agent at `--rate`, and its token.
async fn create_thread(
    http: &reqwest::Client,
    args: &ChatArgs,
    edge: &str,
) -> anyhow::Result<(String, String)> {
    let mut req = http
        .post(format!("{edge}/v1/threads"))
        .json(&json!({"agent": "mock", "input": {"rate": args.rate}}));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.context("POST /v1/threads")?;
    ensure!(
        r.status() == 201,
        "create thread: {}: {}",
        r.status(),
        r.text().await?
    );
    let v: Value = r.json().await?;
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .context("thread without id/token")
    };
    Ok((field("id")?, field("token")?))
}

/// `POST /v1/chat`: one request from send to the first `text-delta`.
async fn chat(
    http: &reqwest::Client,
    edge: &str,
    (thread, token): (String, String),
    message: &str,
) -> anyhow::Result<Start> {
    let body = json!({
        "id": thread,
        "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": message}]}],
    });
    let request = http
        .post(format!("{edge}/v1/chat"))
        .bearer_auth(&token)
        .json(&body);
    let (mut start, message_id) = one_request(request, message).await?;
    start.run = Some((edge.to_owned(), message_id, token));
    Ok(start)
}

/// `POST {baseline}/chat/{id}`: the resumable-stream server's one request.
async fn baseline(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    message: &str,
    rate: f64,
) -> anyhow::Result<Start> {
    let request = http
        .post(format!("{url}/chat/{id}-{}", std::process::id()))
        .json(&json!({"text": message, "rate": rate}));
    Ok(one_request(request, message).await?.0)
}

/// Sends a request that answers a UI message stream and reads it to its
/// end: the start as measured (its reply checked against the mock's echo of
/// `message`), and the stream's message id.
async fn one_request(
    request: reqwest::RequestBuilder,
    message: &str,
) -> anyhow::Result<(Start, String)> {
    let (t0, sent_ms) = (Instant::now(), now_ms());
    let r = request.send().await?;
    ensure!(r.status() == 200, "POST {}: {}", r.url().path(), r.status());
    let answered = t0.elapsed();
    let read = read_ui_stream(r, t0).await?;
    let start = Start {
        answered,
        first_token: read.first,
        right: read.text == format!("echo: {message}"),
        sent_ms,
        received_ms: read.first_ms,
        ..Start::default()
    };
    Ok((start, read.message_id))
}

/// What a UI message stream gave.
struct UiRead {
    /// `start.messageId`: the run's session id.
    message_id: String,
    /// Since the request, and the wall clock, of the first `text-delta`.
    first: Duration,
    first_ms: f64,
    /// Every delta's text, in order.
    text: String,
}

/// Reads a UI message stream to `[DONE]`.
async fn read_ui_stream(r: reqwest::Response, t0: Instant) -> anyhow::Result<UiRead> {
    let mut body = r.bytes_stream();
    let (mut pending, mut text, mut first, mut message_id) =
        (Vec::new(), String::new(), None, String::new());
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let line: Vec<u8> = pending.drain(..end + 2).collect();
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let data = data.trim_ascii_end();
            if data == b"[DONE]" {
                let (first, first_ms) = first.context("the stream ended before a text-delta")?;
                return Ok(UiRead {
                    message_id,
                    first,
                    first_ms,
                    text,
                });
            }
            let v: Value = serde_json::from_slice(data).context("a chunk that is not JSON")?;
            match v["type"].as_str() {
                Some("start") => message_id = v["messageId"].as_str().unwrap_or("").to_owned(),
                Some("text-delta") => {
                    first.get_or_insert_with(|| (t0.elapsed(), now_ms()));
                    text.push_str(v["delta"].as_str().unwrap_or_default());
                }
                _ => {}
            }
        }
    }
    bail!("the stream closed before [DONE]")
}

/// Create, then connect: `POST /v1/sessions`, the WebSocket, its first token.
async fn connect(http: &reqwest::Client, args: &ChatArgs, edge: &str) -> anyhow::Result<Start> {
    let tokens = (args.message_chars + 6).div_ceil(8) as u64;
    let mut req = http
        .post(format!("{edge}/v1/sessions"))
        .json(&json!({"agent": "mock", "input": {"tokens": tokens, "rate": args.rate}}));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    let (t0, sent_ms) = (Instant::now(), now_ms());
    let r = req.send().await?;
    ensure!(r.status() == 201, "POST /v1/sessions: {}", r.status());
    let v: Value = r.json().await?;
    let answered = t0.elapsed();
    let field = |k: &str| v[k].as_str().map(str::to_owned).context("no id/token");
    let (id, token) = (field("id")?, field("token")?);
    let ws = format!(
        "{}/v1/sessions/{id}/ws?token={token}",
        edge.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await?;
    let handshake = t0.elapsed() - answered;
    let (mut first, mut last_seq, mut right) = (None, 0u64, true);
    while let Some(msg) = socket.next().await {
        let Message::Text(text) = msg? else { continue };
        let frame: Value = serde_json::from_str(&text)?;
        for e in frame["events"].as_array().into_iter().flatten() {
            let seq = e["seq"].as_u64().unwrap_or(0);
            right &= seq == last_seq + 1;
            last_seq = seq;
            if e["kind"] == "token" {
                first.get_or_insert_with(|| (t0.elapsed(), now_ms()));
            }
            if e["kind"] == "end" {
                let (first_token, received_ms) = first.context("ended before a token")?;
                return Ok(Start {
                    answered,
                    handshake: Some(handshake),
                    first_token,
                    right: right && last_seq == tokens + 1,
                    sent_ms,
                    received_ms,
                    run: Some((edge.to_owned(), id, token)),
                    split: None,
                });
            }
        }
    }
    bail!("the WebSocket closed before end")
}

/// Looks up where each start's time went, from its session's `created`
/// and its first token's `ts` (after the round, untimed).
async fn split_all(http: &reqwest::Client, starts: &mut [Start]) {
    for s in starts.iter_mut() {
        let Some((edge, id, token)) = &s.run else {
            continue;
        };
        match split_of(http, edge, id, token).await {
            Ok((created, first_ts)) => {
                s.split = Some(Split {
                    to_edge: created - s.sent_ms,
                    to_first_emit: first_ts - created,
                    delivery: s.received_ms - first_ts,
                })
            }
            Err(e) => warn(&format!("no split for {id}: {e:#}")),
        }
    }
}

/// The session's `created` and its first token's `ts` (Unix ms).
async fn split_of(
    http: &reqwest::Client,
    edge: &str,
    id: &str,
    token: &str,
) -> anyhow::Result<(f64, f64)> {
    let get = |path: String| http.get(format!("{edge}{path}")).bearer_auth(token).send();
    let state: Value = get(format!("/v1/sessions/{id}")).await?.json().await?;
    let page: Value = get(format!("/v1/sessions/{id}/history?after=0&limit=20"))
        .await?
        .json()
        .await?;
    let created = state["created"].as_f64().context("no created")?;
    let first = page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "token")
        .and_then(|e| e["ts"].as_f64())
        .context("no token in the first page")?;
    Ok((created, first))
}

fn warn(message: &str) {
    eprintln!("weir-bench chat: {message}");
}

fn now_ms() -> f64 {
    weir_protocol::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_asked_length_and_name_their_round() {
        let m = message(40, 2);
        assert!(m.starts_with("round 2: "));
        assert!(m.len() <= 40 && m.len() >= 38, "{m:?}");
    }

    #[test]
    fn ratios_compare_chat_with_every_other_path() {
        let path = |name, p50, p99| PathReport {
            path: name,
            first_token_ms: Percentiles {
                p50,
                p99,
                ..Percentiles::default()
            },
            ..PathReport::default()
        };
        let r = ratios(&[path("chat", 10.0, 40.0), path("connect", 20.0, 80.0)]);
        assert_eq!(
            r,
            vec![
                ("chat/connect p50".into(), 0.5),
                ("chat/connect p99".into(), 0.5)
            ]
        );
    }
}
