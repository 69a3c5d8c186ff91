//! End-to-end harness: real `nats-server` and `redis-server` processes on
//! free ports, edges and producers as real `weir` processes, all killed on
//! drop; and real WebSocket / SSE / HTTP clients.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub mod chart;
pub mod compose;
pub mod dockerfile;
pub mod files;
pub mod helm;
pub mod hosts;
pub mod metrics;
pub mod nats_cluster;
pub mod nats_conf;
pub mod netns;
pub mod pods;
pub mod prometheus;
pub mod queries;
pub mod redis_ha;

/// The edges' token secret (protocol.md §4: at least 32 bytes).
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory for this test's logs and data.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nats-server the tests run: `WEIR_NATS_SERVER`, or the pinned release
/// that `scripts/setup.sh` installs into `.tools/` (Debian's 2.9 is too old).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/nats-server");
    assert!(
        p.exists(),
        "no nats-server at {}: run scripts/setup.sh (or set WEIR_NATS_SERVER)",
        p.display()
    );
    p
}

fn which(bin: &str, fallback: &str) -> String {
    if std::path::Path::new(fallback).exists() {
        fallback.to_owned()
    } else {
        bin.to_owned()
    }
}

/// A child process killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn_logged(name: &str, cmd: Command, log: PathBuf) -> Proc {
        Self::spawn(name, cmd, log)
    }

    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        cmd.stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most the resident set has been since the process started, in KiB
    /// (the kernel's high-water mark: no sample can miss a peak).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Nats {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl Nats {
    pub fn start(dir: &std::path::Path) -> Nats {
        let port = free_port();
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).unwrap();
        let proc = Self::spawn(port, &dir);
        Nats { proc, port, dir }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"));
        let p = Proc::spawn("nats-server", cmd, dir.join("nats.log"));
        wait_port(port, "nats-server");
        p
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// [`Nats::restart`] without blocking the test's runtime.
    pub async fn restart_async(&mut self, down_for: Duration) {
        self.proc.kill9();
        tokio::time::sleep(down_for).await;
        let (port, dir) = (self.port, self.dir.clone());
        self.proc = tokio::task::spawn_blocking(move || Self::spawn(port, &dir))
            .await
            .unwrap();
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self, down_for: Duration) {
        self.proc.kill9();
        std::thread::sleep(down_for);
        self.proc = Self::spawn(self.port, &self.dir);
    }
}

pub struct Redis {
    pub proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &std::path::Path) -> Redis {
        let port = free_port();
        let proc = Self::spawn(port, dir);
        Redis { proc, port }
    }

    /// redis-server on `port`, without persistence, logging into `dir`.
    fn spawn(port: u16, dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new(which("redis-server", "/usr/bin/redis-server"));
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir);
        let proc = Proc::spawn("redis-server", cmd, dir.join("redis.log"));
        wait_port(port, "redis-server");
        proc
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------- Redis outages (redis_outage.rs)

impl Redis {
    /// Kills the server (SIGKILL); without persistence its data is gone.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts an empty server on the same port (after [`Redis::kill9`]).
    pub fn restart_empty(&mut self, dir: &std::path::Path) {
        self.proc.kill9();
        self.proc = Self::spawn(self.port, dir);
    }
}

/// What node `id` has logged so far (its file in the cluster's scratch dir).
pub fn node_log(c: &Cluster, id: &str) -> String {
    std::fs::read_to_string(c.dir.join(format!("{id}.log"))).unwrap_or_default()
}

// ------------------------------------------------------------------------

pub struct Node {
    pub proc: Proc,
    pub port: u16,
    pub id: String,
}

impl Node {
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

/// NATS + Redis + edges + producers for one test.
pub struct Cluster {
    pub dir: PathBuf,
    pub nats: Nats,
    pub redis: Redis,
    pub edges: Vec<Node>,
    pub producers: Vec<Node>,
}

/// Waits for `url` to answer 2xx.
pub fn wait_http_ok(url: &str) {
    wait_ready(url, url)
}

fn wait_ready(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not ready at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    pub fn start(name: &str, edges: usize, producers: usize) -> Cluster {
        Self::start_with(name, edges, producers, &[], &[])
    }

    pub fn start_with(
        name: &str,
        edges: usize,
        producers: usize,
        edge_args: &[&str],
        producer_args: &[&str],
    ) -> Cluster {
        let dir = scratch(name);
        let nats = Nats::start(&dir);
        let redis = Redis::start(&dir);
        let mut c = Cluster {
            dir,
            nats,
            redis,
            edges: Vec::new(),
            producers: Vec::new(),
        };
        for i in 0..edges {
            let e = c.spawn_edge(&format!("edge-{i}"), edge_args);
            c.edges.push(e);
        }
        for i in 0..producers {
            let p = c.spawn_producer(&format!("producer-{i}"), producer_args);
            c.producers.push(p);
        }
        c
    }

    pub fn spawn_edge(&self, id: &str, extra: &[&str]) -> Node {
        spawn_node(
            &self.dir,
            "edge",
            id,
            &self.nats.url(),
            &self.redis.url(),
            extra,
        )
    }

    pub fn spawn_producer(&self, id: &str, extra: &[&str]) -> Node {
        spawn_node(
            &self.dir,
            "producer",
            id,
            &self.nats.url(),
            &self.redis.url(),
            extra,
        )
    }

    pub fn edge(&self, i: usize) -> &Node {
        &self.edges[i]
    }
}

/// Starts `weir edge` or `weir producer` as `id` on a free port, logging to
/// `<dir>/<id>.log`, and waits until it is ready.
pub fn spawn_node(
    dir: &std::path::Path,
    role: &str,
    id: &str,
    nats_url: &str,
    redis_url: &str,
    extra: &[&str],
) -> Node {
    let port = free_port();
    let listen = if role == "edge" {
        "--listen"
    } else {
        "--metrics-listen"
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg(role)
        .args([listen, &format!("127.0.0.1:{port}")])
        .args(["--nats-url", nats_url, "--redis-url", redis_url])
        .args(["--node-id", id])
        .args(extra);
    if role == "edge" {
        cmd.args(["--secret", SECRET])
            .env("RUST_LOG", "info,weir_edge=debug");
    } else {
        cmd.env("RUST_LOG", "info");
    }
    let proc = Proc::spawn(id, cmd, dir.join(format!("{id}.log")));
    wait_ready(&format!("http://127.0.0.1:{port}/readyz"), id);
    Node {
        proc,
        port,
        id: id.into(),
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A node's `/metrics` page.
pub async fn metrics_page(node: &Node) -> String {
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
pub async fn metric_sum(node: &Node, name: &str) -> f64 {
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

pub async fn create(edge: &Node, body: Value) -> Session {
    create_with_key(edge, body, None).await
}

/// `POST /v1/sessions`, with the API key when the cluster has one.
pub async fn create_with_key(edge: &Node, body: Value, api_key: Option<&str>) -> Session {
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

pub async fn create_mock(edge: &Node, tokens: u64, rate: f64, seed: u64) -> Session {
    create(
        edge,
        json!({"agent": "mock", "input": {"tokens": tokens, "rate": rate, "seed": seed}}),
    )
    .await
}

pub async fn state(edge: &Node, s: &Session) -> Value {
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
pub async fn history(edge: &Node, s: &Session) -> Vec<Value> {
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
pub async fn wait_ended(edge: &Node, s: &Session, within: Duration) -> Value {
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

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(edge: &Node, id: &str, token: &str, after: u64) -> Ws {
    let url = format!(
        "{}/v1/sessions/{id}/ws?token={token}&after={after}",
        edge.ws()
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

/// What a WebSocket client saw.
#[derive(Debug, Default)]
pub struct Received {
    pub hello: Option<Value>,
    pub events: Vec<Value>,
    pub frames: usize,
    pub errors: Vec<Value>,
    pub other: Vec<Value>,
    /// `None`: the connection dropped without a close frame.
    pub close: Option<u16>,
}

impl Received {
    pub fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.seqs().last().copied().unwrap_or(0)
    }
}

pub enum Stop {
    /// Read until the server closes.
    Close,
    /// Stop after this many events (leave the socket open).
    After(usize),
}

/// Reads frames until the server closes (or `stop`), within `within`.
pub async fn read(ws: &mut Ws, stop: Stop, within: Duration) -> Received {
    let mut got = Received::default();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Stop::After(n) = stop {
            if got.events.len() >= n {
                return got;
            }
        }
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!(
                "no close within {within:?}; got {} events",
                got.events.len()
            ),
            Ok(None) | Ok(Some(Err(_))) => return got,
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                match v["type"].as_str() {
                    Some("hello") => got.hello = Some(v),
                    Some("events") => {
                        got.frames += 1;
                        got.events
                            .extend(v["events"].as_array().unwrap().iter().cloned());
                    }
                    Some("error") => got.errors.push(v),
                    _ => got.other.push(v),
                }
            }
            Message::Close(f) => {
                got.close = f
                    .map(|f| u16::from(f.code))
                    .or(Some(u16::from(CloseCode::Status)));
                return got;
            }
            _ => {}
        }
    }
}

/// Reads a whole session over WebSocket, reconnecting (to `edges` in turn)
/// with the last seq held whenever the connection drops before `end`.
pub async fn read_all_resuming(
    edges: &[&Node],
    s: &Session,
    within: Duration,
) -> (Vec<Value>, usize) {
    read_resuming_from(edges, s, 0, within).await
}

/// [`read_all_resuming`] for a client that already holds seqs up to `start`.
pub async fn read_resuming_from(
    edges: &[&Node],
    s: &Session,
    start: u64,
    within: Duration,
) -> (Vec<Value>, usize) {
    let bases: Vec<String> = edges.iter().map(|e| e.ws()).collect();
    read_resuming_at(&bases, &s.id, &s.token, start, within).await
}

/// [`read_resuming_from`] over edges given by their `ws://host:port` bases
/// (owned, so that clients can run in tasks of their own).
pub async fn read_resuming_at(
    bases: &[String],
    id: &str,
    token: &str,
    start: u64,
    within: Duration,
) -> (Vec<Value>, usize) {
    let deadline = Instant::now() + within;
    let mut events: Vec<Value> = Vec::new();
    let mut reconnects = 0;
    let mut i = 0;
    loop {
        let after = events.last().map_or(start, |e| e["seq"].as_u64().unwrap());
        let url = format!(
            "{}/v1/sessions/{id}/ws?token={token}&after={after}",
            bases[i % bases.len()],
        );
        if let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            let got = read(
                &mut ws,
                Stop::Close,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
            events.extend(got.events);
            if got.close == Some(1000) {
                return (events, reconnects);
            }
        }
        assert!(
            Instant::now() < deadline,
            "session {id} not finished in time (holding {} events)",
            events.len()
        );
        reconnects += 1;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Checks seqs are exactly 1..=n, in order, ending with `end`.
pub fn assert_complete(events: &[Value], reason: &str) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "gap, repeat or disorder at index {i}"
        );
    }
    let last = events.last().expect("no events");
    assert_eq!(last["kind"], "end");
    assert_eq!(last["data"]["reason"], reason);
    assert_eq!(events.iter().filter(|e| e["kind"] == "end").count(), 1);
}
