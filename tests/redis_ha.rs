//! Weir on Redis Sentinel and Redis Cluster (protocol.md §3), against real
//! `redis-server` processes: the store's conformance suite on both, and a
//! master SIGKILLed mid-stream under two edges and two producers — every
//! session ends exact, creating sessions works again within 20 s, states
//! and the operator index survive; after a Sentinel failover weir keeps
//! writing to the new master once the old one is back as a replica; on a
//! cluster, sessions, states, the index and leases work across slots.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis_ha::{cli, wait_until, RedisCluster, Sentinel};
use common::*;
use futures::future::join_all;
use serde_json::{json, Value};
use weir_protocol::SessionId;
use weir_store::redis::keys;
use weir_store::{RedisStore, SessionStore};

const KEY: &str = "operator-key-0123";
const MINUTE: Duration = Duration::from_secs(60);
/// Bound on any one stream: sessions take 8 s.
const WITHIN: Duration = Duration::from_secs(45);
const TOKENS: u64 = 400;
/// Creating sessions works again this long after the master died at most.
const BACK_WITHIN: Duration = Duration::from_secs(20);
/// Producers' lease: runs outlive it while Redis is away.
const LEASE: [&str; 4] = ["--lease-ttl", "2s", "--reap-interval", "250ms"];

/// NATS, two edges and two producers on the Redis at `redis_url`.
struct Stack {
    dir: std::path::PathBuf,
    nats: Nats,
    redis_url: String,
    edges: Vec<Node>,
    producers: Vec<Node>,
}

impl Stack {
    fn start(dir: &std::path::Path, redis_url: String) -> Stack {
        let nats = Nats::start(dir);
        let mut s = Stack {
            dir: dir.to_owned(),
            nats,
            redis_url,
            edges: Vec::new(),
            producers: Vec::new(),
        };
        for i in 0..2 {
            let edge = s.spawn("edge", &format!("edge-{i}"), &["--api-key", KEY]);
            s.edges.push(edge);
        }
        for i in 0..2 {
            let producer = s.spawn("producer", &format!("producer-{i}"), &LEASE);
            s.producers.push(producer);
        }
        s
    }

    fn spawn(&self, role: &str, id: &str, extra: &[&str]) -> Node {
        spawn_node(
            &self.dir,
            role,
            id,
            &self.nats.url(),
            &self.redis_url,
            extra,
        )
    }

    fn edges(&self) -> Vec<&Node> {
        self.edges.iter().collect()
    }
}

async fn create_tokens(edge: &Node, tokens: u64, rate: f64, seed: u64) -> Session {
    let body = json!({"agent": "mock", "input": {"tokens": tokens, "rate": rate, "seed": seed}});
    create_with_key(edge, body, Some(KEY)).await
}

/// Creates a session as soon as the edge can (503 while the store is
/// away), failing after `within`.
async fn create_when_back(edge: &Node, within: Duration) -> Session {
    let deadline = Instant::now() + within;
    loop {
        let r = http()
            .post(format!("{}/v1/sessions", edge.http()))
            .bearer_auth(KEY)
            .json(&json!({"agent": "mock", "input": {"tokens": 50, "seed": 3}}))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            let v: Value = r.json().await.unwrap();
            return Session {
                id: v["id"].as_str().unwrap().into(),
                token: v["token"].as_str().unwrap().into(),
            };
        }
        assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
        assert!(
            Instant::now() < deadline,
            "sessions still refused {within:?} after the master died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every session of the operator index, paging three at a time; checks
/// that pages are newest first with no entry twice.
async fn listed(edge: &Node) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{}/v1/sessions?limit=3", edge.http());
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = http().get(url).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        all.extend(page["sessions"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let created: Vec<u64> = all.iter().map(|s| s["created"].as_u64().unwrap()).collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {created:?}"
    );
    let ids: BTreeSet<&str> = all.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "an entry listed twice");
    all
}

/// The index lists every one of `sessions` with the state it has.
async fn index_holds(edge: &Node, sessions: &[&Session]) {
    let all = listed(edge).await;
    for s in sessions {
        let entry = all
            .iter()
            .find(|e| e["id"] == s.id.as_str())
            .unwrap_or_else(|| panic!("{} missing from the index: {all:?}", s.id));
        let st = state(edge, s).await;
        assert_eq!(entry["status"], st["status"], "{entry} / {st}");
    }
}

/// Streams `sessions` to clients resuming across both edges, then checks
/// every client got exactly the log, ending `completed`, and that the
/// states say so. (A node's first call after a failover may fail and
/// answer from the log, §6: whether the state itself was kept is checked
/// in Redis, by [`states_kept`].)
async fn stream_through(stack: &Stack, sessions: &[Session]) {
    let edges = stack.edges();
    let readers = join_all(sessions.iter().enumerate().map(|(i, s)| {
        let order = [edges[i % 2], edges[(i + 1) % 2]];
        async move { read_all_resuming(&order, s, WITHIN).await }
    }));
    let results = readers.await;
    for ((events, _), s) in results.iter().zip(sessions) {
        assert_complete(events, "completed");
        assert_eq!(events.len() as u64, TOKENS + 1, "session {}", s.id);
        assert_eq!(*events, history(edges[1], s).await);
        let st = wait_ended(edges[0], s, MINUTE).await;
        assert_eq!(st["status"], "completed", "{st}");
        assert_eq!(st["last_seq"].as_u64(), Some(TOKENS + 1), "{st}");
    }
}

/// Redis holds every one of `sessions`' states whole, ended: kept through
/// the failover, not lost and rebuilt from the log.
async fn states_kept(url: &str, sessions: &[&Session]) {
    let store = RedisStore::connect(url, MINUTE).await.unwrap();
    for s in sessions {
        let id = SessionId::parse(&s.id).unwrap();
        // A run's last write may follow its `end` by a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = store.get(&id).await.unwrap();
            let st = st.unwrap_or_else(|| panic!("state of {} lost", s.id));
            if st.status.is_ended() || Instant::now() > deadline {
                break st;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(st.agent, "mock", "state of {} lost: {st:?}", s.id);
        assert!(!st.is_partial(), "state of {} rebuilt: {st:?}", s.id);
        assert!(st.status.is_ended(), "{st:?}");
    }
}

/// A session created and read to its end.
async fn a_whole_session(stack: &Stack) -> Session {
    let fresh = create_tokens(&stack.edges[0], 30, 0.0, 11).await;
    let mut ws = ws_connect(&stack.edges[1], &fresh.id, &fresh.token, 0).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_complete(&got.events, "completed");
    fresh
}

fn state_key(s: &Session) -> String {
    keys::state(&SessionId::parse(&s.id).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_conforms_on_a_sentinel_deployment() {
    let dir = scratch("redis-sentinel-conformance");
    let sentinel = tokio::task::block_in_place(|| Sentinel::start(&dir));
    let retention = Duration::from_secs(1);
    let store = RedisStore::connect(&sentinel.url(), retention)
        .await
        .unwrap();
    weir_store::conformance::all(&store, "sentinel-", retention).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_conforms_on_a_redis_cluster() {
    let dir = scratch("redis-cluster-conformance");
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(&dir));
    let retention = Duration::from_secs(1);
    let store = RedisStore::connect(&cluster.url(), retention)
        .await
        .unwrap();
    weir_store::conformance::all(&store, "cluster-", retention).await;
}

#[test]
fn a_bad_redis_url_stops_a_node_at_start_in_one_line_naming_the_accepted_forms() {
    let rows = [
        ("redis+sentinel://:hunter2@s1:26379", "no master name"),
        ("redis+cluster://:hunter2@n1:7000/0", "no path or query"),
        ("http://:hunter2@redis:6379", "unknown scheme"),
    ];
    for (role, listen) in [("edge", "--listen"), ("producer", "--metrics-listen")] {
        for (url, problem) in rows {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
                .args([role, listen, "127.0.0.1:0"])
                .env("WEIR_REDIS_URL", url)
                .env("WEIR_SECRET", SECRET)
                .env("RUST_LOG", "off")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            assert_eq!(out.status.code(), Some(1), "{role} {url}: {err}");
            assert_eq!(err.lines().count(), 1, "{role} {url}: {err}");
            assert!(
                err.starts_with("error: --redis-url / WEIR_REDIS_URL: "),
                "{err}"
            );
            assert!(err.contains(problem), "{role} {url}: {err}");
            for form in [
                "redis://",
                "rediss://",
                "redis+sentinel://",
                "redis+cluster://",
            ] {
                assert!(
                    err.contains(form),
                    "{role} {url}: {err} does not name {form}"
                );
            }
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_server_url_naming_a_replica_or_a_sentinel_is_refused_at_start() {
    let dir = scratch("redis-not-a-master");
    let sentinel = tokio::task::block_in_place(|| Sentinel::start(&dir));
    let replica = sentinel
        .servers
        .iter()
        .find(|s| s.role() == "slave")
        .unwrap();
    let url = format!("redis://127.0.0.1:{}", replica.port);
    let e = RedisStore::connect(&url, MINUTE).await.err().unwrap();
    assert!(e.to_string().contains("a replica, not the master"), "{e}");
    let url = format!("redis://127.0.0.1:{}", sentinel.sentinel_ports[0]);
    let e = RedisStore::connect(&url, MINUTE).await.err().unwrap();
    assert!(e.to_string().contains("use redis+sentinel://"), "{e}");
    // rediss:// is built in (rustls, with its crypto provider): against a
    // server without TLS the handshake cannot finish, an error, not a panic.
    let url = format!("rediss://127.0.0.1:{}", replica.port);
    let e = RedisStore::connect(&url, MINUTE).await.err().unwrap();
    assert!(e.is_unavailable(), "{e}");
    let e = RedisStore::connect("redis+sentinel://127.0.0.1:1", MINUTE)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("no master name"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_stream_loses_nothing_and_weir_follows_the_new_master() {
    let dir = scratch("redis-sentinel-failover");
    let mut sentinel = tokio::task::block_in_place(|| Sentinel::start(&dir));
    let stack = Stack::start(&dir, sentinel.url());
    let done = create_tokens(&stack.edges[0], 20, 0.0, 99).await;
    wait_ended(&stack.edges[0], &done, MINUTE).await;
    let sessions: Vec<Session> =
        join_all((0..6).map(|i| create_tokens(&stack.edges[i % 2], TOKENS, 50.0, i as u64))).await;

    let old_port = sentinel.master_port();
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| sentinel.master().kill9());
        let killed = Instant::now();
        let first = create_when_back(&stack.edges[1], BACK_WITHIN).await;
        eprintln!(
            "creating sessions again {:?} after the kill",
            killed.elapsed()
        );
        assert_ne!(
            sentinel.master_port(),
            old_port,
            "created on the dead master"
        );
        // The old master comes back (empty) 10 s after it died, and the
        // sentinels make it a replica of the new one.
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed())).await;
        tokio::task::block_in_place(|| {
            let old = sentinel
                .servers
                .iter_mut()
                .find(|s| s.port == old_port)
                .unwrap();
            old.restart();
            wait_until("the old master never became a replica", MINUTE, || {
                old.role() == "slave"
            });
        });
        first
    };
    let (_, first) = tokio::join!(stream_through(&stack, &sessions), fault);

    // Weir writes to the new master, not to the old one now a replica.
    let after = a_whole_session(&stack).await;
    let new_master = sentinel.master_port();
    assert_ne!(new_master, old_port);
    for s in [&after, &first, &done] {
        let on_master = cli(new_master, &["EXISTS", &state_key(s)]);
        assert_eq!(on_master.trim(), "1", "{} not on the new master", s.id);
    }
    let everyone: Vec<&Session> = sessions.iter().chain([&done, &first, &after]).collect();
    states_kept(&sentinel.url(), &everyone).await;
    index_holds(&stack.edges[0], &everyone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_sessions_work_across_slots_and_survive_a_master_killed_mid_stream() {
    let dir = scratch("redis-cluster-failover");
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(&dir));
    let mut stack = Stack::start(&dir, cluster.url());

    // Leases across slots: a killed producer's run is failed by the other's reaper.
    let orphan = create_tokens(&stack.edges[0], 2000, 20.0, 5).await;
    let owner = wait_owner(&stack.edges[0], &orphan).await;
    let victim = stack.producers.iter_mut().find(|p| p.id == owner).unwrap();
    victim.proc.kill9();
    let st = wait_ended(&stack.edges[0], &orphan, Duration::from_secs(10)).await;
    assert_eq!(st["status"], "failed", "{st}");
    let replacement = stack.spawn("producer", "producer-2", &LEASE);
    stack.producers.push(replacement);

    let done = create_tokens(&stack.edges[0], 20, 0.0, 99).await;
    wait_ended(&stack.edges[0], &done, MINUTE).await;
    let sessions: Vec<Session> =
        join_all((0..6).map(|i| create_tokens(&stack.edges[i % 2], TOKENS, 50.0, i as u64))).await;
    let masters: BTreeSet<u16> = tokio::task::block_in_place(|| {
        sessions
            .iter()
            .map(|s| cluster.master_of(&state_key(s)).port)
            .collect()
    });
    assert!(masters.len() >= 2, "the sessions are all on one master");

    let doomed_key = state_key(&sessions[0]);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (killed_port, doomed_slot) = tokio::task::block_in_place(|| {
            let slot = cluster.keyslot(&doomed_key);
            let master = cluster.master_of(&doomed_key);
            master.kill9();
            (master.port, slot)
        });
        let killed = Instant::now();
        // Sessions of the other masters' slots may be created all along:
        // wait for one whose state lives in a slot the dead master served.
        let first = loop {
            let left = BACK_WITHIN.saturating_sub(killed.elapsed());
            let s = create_when_back(
                &stack.edges[killed.elapsed().as_millis() as usize % 2],
                left,
            )
            .await;
            let moved = tokio::task::block_in_place(|| {
                let slot = cluster.keyslot(&state_key(&s));
                let now = cluster.master_port_of_slot(slot);
                now != killed_port && now == cluster.master_port_of_slot(doomed_slot)
            });
            if moved {
                break s;
            }
            assert!(
                killed.elapsed() < BACK_WITHIN,
                "no session created on the dead master's slots within {BACK_WITHIN:?}"
            );
        };
        eprintln!(
            "a session on the dead master's slots {:?} after the kill",
            killed.elapsed()
        );
        tokio::task::block_in_place(|| {
            let old = cluster
                .servers
                .iter()
                .position(|s| s.port == killed_port)
                .unwrap();
            cluster.servers[old].restart();
            cluster.wait_ok(MINUTE);
            assert_eq!(
                cluster.servers[old].role(),
                "slave",
                "the old master did not come back a replica"
            );
        });
        first
    };
    let (_, first) = tokio::join!(stream_through(&stack, &sessions), fault);
    let after = a_whole_session(&stack).await;
    let everyone: Vec<&Session> = sessions
        .iter()
        .chain([&orphan, &done, &first, &after])
        .collect();
    states_kept(&cluster.url(), &everyone).await;
    index_holds(&stack.edges[1], &everyone).await;
}

/// The producer that owns a session's run, once one does.
async fn wait_owner(edge: &Node, s: &Session) -> String {
    let deadline = Instant::now() + MINUTE;
    loop {
        if let Some(p) = state(edge, s).await["producer"].as_str() {
            return p.to_owned();
        }
        assert!(Instant::now() < deadline, "no producer took {}", s.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
