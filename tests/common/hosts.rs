//! Weir on network-namespace hosts ([`super::netns`]) for the partition
//! suite: a 3-node nats-server cluster (`n1`..`n3`, R3 streams), Redis,
//! two edges and two producers, each on a host of its own, so that any of
//! them can be cut off from any other. `e0` and `p0` are given only `n3`'s
//! URL and `e1` and `p1` only `n1`'s (they learn the rest from the cluster),
//! so the test knows where each starts. The nats-servers run with what
//! docs/operations.md asks of a multi-zone cluster: `ping_interval` 2 s,
//! `ping_max` 2 and `write_deadline` 2 s, so that a server drops its route
//! to a peer it can no longer reach within seconds (by default a blackholed
//! route lives for the 10 s write deadline, and the cluster keeps sending
//! requests to the peer's replicas through it). Clients run in the test process
//! and reach the hosts through the bridge; each records when every event
//! arrived, so that a session's longest pause can be measured.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::netns::{Host, Net};
use super::{nats_server_bin, which, Proc, SECRET};

const HOSTS: [&str; 8] = ["n1", "n2", "n3", "redis", "e0", "e1", "p0", "p1"];
pub const NATS: [&str; 3] = ["n1", "n2", "n3"];

/// The settings every weir node gets: the defaults, stated, so that the
/// bound the suite checks is computed from what the nodes run with.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
pub const NATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause a partition may cause (protocol.md §6), from the
/// nodes' settings.
pub fn pause_bound() -> Duration {
    weir_bus::Timings::new(PING_INTERVAL, NATS_TIMEOUT).pause_bound()
}

/// Everything a test runs; processes die before the network goes.
pub struct World {
    pub dir: PathBuf,
    procs: Vec<Proc>,
    pub net: Net,
}

impl World {
    pub fn start(name: &str) -> World {
        let dir = super::scratch(name);
        let net = Net::create(&HOSTS);
        let mut world = World {
            dir,
            procs: Vec::new(),
            net,
        };
        for n in NATS {
            world.start_nats(n);
        }
        for n in NATS {
            wait_http(&format!("http://{}:8222/healthz", world.addr(n)), n);
        }
        world.start_redis();
        let n1 = format!("nats://{}:4222", world.addr("n1"));
        let n3 = format!("nats://{}:4222", world.addr("n3"));
        for (host, role, nats) in [
            ("e0", "edge", &n3),
            ("e1", "edge", &n1),
            ("p0", "producer", &n3),
            ("p1", "producer", &n1),
        ] {
            world.start_weir(host, role, nats);
        }
        world
    }

    pub fn addr(&self, host: &str) -> &str {
        &self.net.host(host).addr
    }

    /// `http://<edge>:8080`
    pub fn edge(&self, host: &str) -> String {
        format!("http://{}:8080", self.addr(host))
    }

    /// `http://<producer>:9090` (metrics, readiness)
    pub fn producer(&self, host: &str) -> String {
        format!("http://{}:9090", self.addr(host))
    }

    fn spawn(&mut self, what: &str, cmd: std::process::Command) {
        let log = self.dir.join(format!("{what}.log"));
        self.procs.push(Proc::spawn_logged(what, cmd, log));
    }

    fn start_nats(&mut self, name: &str) {
        let routes: Vec<String> = NATS
            .iter()
            .filter(|n| **n != name)
            .map(|n| format!("\"nats-route://{}:6222\"", self.addr(n)))
            .collect();
        let store = self.dir.join(name);
        let config = self.dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "server_name: {name}\nlisten: \"0.0.0.0:4222\"\nhttp: \"0.0.0.0:8222\"\n\
                 ping_interval: \"2s\"\nping_max: 2\nwrite_deadline: \"2s\"\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{\n  name: weir\n  listen: \"0.0.0.0:6222\"\n  routes: [{}]\n}}\n",
                store.display(),
                routes.join(", ")
            ),
        )
        .unwrap();
        let mut cmd = self.host(name).command(nats_server_bin());
        cmd.arg("-c").arg(&config);
        self.spawn(name, cmd);
    }

    fn start_redis(&mut self) {
        let mut cmd = self
            .host("redis")
            .command(which("redis-server", "/usr/bin/redis-server"));
        cmd.args([
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&self.dir);
        self.spawn("redis", cmd);
    }

    fn start_weir(&mut self, host: &str, role: &str, nats: &str) {
        let redis = format!("redis://{}:6379", self.addr("redis"));
        let mut cmd = self.host(host).command(env!("CARGO_BIN_EXE_weir"));
        cmd.arg(role)
            .args(["--nats-url", nats, "--redis-url", &redis, "--node-id", host])
            .args(["--replicas", "3"])
            .arg("--nats-ping-interval")
            .arg(format!("{}ms", PING_INTERVAL.as_millis()))
            .arg("--nats-timeout")
            .arg(format!("{}ms", NATS_TIMEOUT.as_millis()))
            .env(
                "RUST_LOG",
                std::env::var("WEIR_NODE_LOG").unwrap_or_else(|_| "info".into()),
            );
        let ready = if role == "edge" {
            cmd.args(["--listen", "0.0.0.0:8080", "--secret", SECRET]);
            format!("{}/readyz", self.edge(host))
        } else {
            // Each producer runs half the suite's sessions at most: both
            // run some, whichever takes the requests first.
            cmd.args(["--metrics-listen", "0.0.0.0:9090", "--concurrency", "5"]);
            format!("{}/readyz", self.producer(host))
        };
        self.spawn(host, cmd);
        wait_http(&ready, host);
    }

    /// The seq ranges of the session's stored messages, in stream order, as
    /// their `Nats-Msg-Id`s name them (`<session>:<first>[-<last>]`), read
    /// from the stream itself: edges and readers skip an event they have
    /// already seen, so a message stored twice shows only here.
    pub async fn stored_ranges(&self, session: &str) -> Vec<(u64, u64)> {
        let url = format!("nats://{}:4222", self.addr("n1"));
        let client = async_nats::connect(url)
            .await
            .expect("n1 answers after the heal");
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("WEIR_EVENTS").await.expect("WEIR_EVENTS");
        let subject = format!("weir.ev.{session}");
        let (mut ranges, mut next) = (Vec::new(), 1);
        loop {
            use async_nats::jetstream::stream::DirectGetErrorKind;
            let msg = match stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return ranges,
                Err(e) => panic!("reading {subject}: {e}"),
            };
            next = msg.sequence + 1;
            let id = msg.headers.get("Nats-Msg-Id").expect("a message id");
            let seqs = id.as_str().rsplit(':').next().unwrap();
            let (first, last) = seqs.split_once('-').unwrap_or((seqs, seqs));
            ranges.push((first.parse().unwrap(), last.parse().unwrap()));
        }
    }

    /// `WEIR_RUNS` and its consumers as the first server that answers
    /// sees them: what a client that never got its session's events shows.
    pub async fn runs_report(&self) -> String {
        for n in NATS {
            let url = format!("nats://{}:4222", self.addr(n));
            let Ok(client) = async_nats::connect(url).await else {
                continue;
            };
            let js = async_nats::jetstream::new(client);
            let Ok(mut stream) = js.get_stream("WEIR_RUNS").await else {
                continue;
            };
            let Ok(info) = stream.info().await else {
                continue;
            };
            let mut report = format!("{n}: stream {:?}", info.state);
            let names: Vec<String> = stream
                .consumer_names()
                .filter_map(|c| async { c.ok() })
                .collect()
                .await;
            for name in names {
                let consumer =
                    stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name);
                if let Ok(mut c) = consumer.await {
                    if let Ok(i) = c.info().await {
                        report += &format!(
                            "; {name}: pending {}, ack pending {}, redelivered {}, waiting {}, delivered {:?}, acked {:?}, leader {:?}",
                            i.num_pending,
                            i.num_ack_pending,
                            i.num_redelivered,
                            i.num_waiting,
                            i.delivered,
                            i.ack_floor,
                            i.cluster.as_ref().and_then(|c| c.leader.clone())
                        );
                    }
                }
            }
            return report;
        }
        "no server answered".into()
    }

    /// The lines the weir nodes logged that name `what` (a session id),
    /// each after its node's name: what a failing check shows.
    pub fn logged(&self, what: &str) -> String {
        let mut lines = Vec::new();
        for node in ["e0", "e1", "p0", "p1"] {
            let log = std::fs::read_to_string(self.dir.join(format!("{node}.log")));
            for line in log.unwrap_or_default().lines().filter(|l| l.contains(what)) {
                lines.push(format!("{node}: {line}"));
            }
        }
        lines.join("\n")
    }

    fn host(&self, name: &str) -> &Host {
        self.net.host(name)
    }

    /// The server name of `WEIR_EVENTS`' leader, asked of `n1`..`n3` in turn.
    pub async fn events_leader(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for n in NATS {
                let url = format!("nats://{}:4222", self.addr(n));
                let Ok(client) = async_nats::connect(url).await else {
                    continue;
                };
                let js = async_nats::jetstream::new(client);
                if let Ok(mut s) = js.get_stream("WEIR_EVENTS").await {
                    if let Ok(info) = s.info().await {
                        if let Some(l) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                            return l;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "WEIR_EVENTS has no leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn wait_http(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not ready at {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Session {
    pub id: String,
    pub token: String,
}

/// A mock session of `tokens` tokens at `rate`/s, created on `edge`, asked
/// again while the edge answers 503 (as a client should): a cluster just
/// started can still be electing a stream's leader, and the run request
/// then finds no stream to take it.
pub async fn create(edge: &str, tokens: u64, rate: f64, seed: u64) -> Session {
    let body = json!({"agent": "mock", "input": {"tokens": tokens, "rate": rate, "seed": seed}});
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = super::http()
            .post(format!("{edge}/v1/sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status(), 201, "create: {}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    Session {
        id: v["id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

/// The session's state (`producer`, `status`, ...).
pub async fn state(edge: &str, s: &Session) -> Value {
    let url = format!("{edge}/v1/sessions/{}?token={}", s.id, s.token);
    let r = super::http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every stored event of the session, through `history` pages. A heal
/// can start an election (the cut-off node campaigned with higher terms):
/// a page the log cannot serve yet (503) is asked again.
pub async fn history(edge: &str, s: &Session) -> Vec<Value> {
    let (mut after, mut out) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!(
            "{edge}/v1/sessions/{}/history?after={after}&limit=1000&token={}",
            s.id, s.token
        );
        let r = super::http().get(url).send().await.unwrap();
        if r.status() == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(r.status(), 200, "history: {}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        let events = v["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        after = v["next_after"].as_u64().unwrap();
        out.extend(events);
    }
}

/// The session's whole log, once a read of it ends with `end`: history is
/// read from any replica, and one that rejoined at the heal may still be
/// catching up (it answers the log as it has it, a prefix).
pub async fn history_to_end(edge: &str, s: &Session) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = history(edge, s).await;
        if log.last().is_some_and(|e| e["kind"] == "end") || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a client saw: every event, when each arrived, and how often it
/// reconnected (and how often it was told to).
#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<Value>,
    pub arrived: Vec<Instant>,
    pub reconnects: usize,
    pub told: usize,
}

impl Seen {
    /// The longest time between two events in a row.
    pub fn longest_pause(&self) -> Duration {
        self.arrived
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// The longest pause as the nodes' logs would date it: the seq it
    /// followed, and when it began and ended.
    pub fn longest_pause_at(&self) -> String {
        let Some(i) =
            (1..self.arrived.len()).max_by_key(|&i| self.arrived[i] - self.arrived[i - 1])
        else {
            return "no pause".into();
        };
        let wall = |t: Instant| {
            let ago = Instant::now().saturating_duration_since(t);
            humantime::format_rfc3339_millis(std::time::SystemTime::now() - ago)
        };
        format!(
            "after seq {}, {} to {}",
            self.events[i - 1]["seq"],
            wall(self.arrived[i - 1]),
            wall(self.arrived[i])
        )
    }
}

/// Reads the session over WebSocket until `end`, moving to the next edge
/// of `edges` with its last seq whenever the connection ends early.
pub async fn read(edges: Vec<String>, s: Session, within: Duration) -> (Session, Seen) {
    let deadline = Instant::now() + within;
    let mut seen = Seen::default();
    let mut i = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "session {} not finished in time (holding {} events)",
            s.id,
            seen.events.len()
        );
        let after = seen.events.last().map_or(0, |e| e["seq"].as_u64().unwrap());
        let base = edges[i % edges.len()].replace("http://", "ws://");
        let url = format!(
            "{base}/v1/sessions/{}/ws?token={}&after={after}",
            s.id, s.token
        );
        let connect = tokio_tungstenite::connect_async(url);
        if let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(5), connect).await {
            // The deadline holds however often the edge pings.
            let until = tokio::time::Instant::from_std(deadline);
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
                match msg {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(&t).expect("frames are JSON");
                        match v["type"].as_str() {
                            Some("events") => {
                                for e in v["events"].as_array().unwrap() {
                                    seen.events.push(e.clone());
                                    seen.arrived.push(Instant::now());
                                }
                            }
                            Some("reconnect") => seen.told += 1,
                            _ => {}
                        }
                    }
                    Message::Close(f) => {
                        if f.is_some_and(|f| u16::from(f.code) == 1000) {
                            return (s, seen);
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        seen.reconnects += 1;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's `/metrics` value of `name` (summed over its labels).
pub async fn metric(base: &str, name: &str) -> f64 {
    let page = super::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
