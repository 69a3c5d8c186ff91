//! The cluster suite (protocol.md §6, "survives the loss of a NATS node"): a
//! 3-node nats-server cluster on loopback with R3 streams, Redis, two edges
//! (given every NATS URL) and two producers (given only `n1`'s: they learn
//! the others from the cluster). Twenty sessions stream while a NATS node
//! fails; every client, reading over WebSocket and moving between the edges
//! whenever its connection drops, must end with exactly the log's events and
//! `end completed`: none lost, none repeated.
//!
//! The three faults: SIGKILL of the `WEIR_EVENTS` leader; SIGKILL of the
//! node the producers are connected to, restarted 5 s later from its store;
//! a rolling restart of all three nodes in lame duck mode.

mod common;

use std::time::Duration;

use common::nats_cluster::NatsCluster;
use common::*;
use serde_json::Value;

const SESSIONS: u64 = 20;

/// One cluster at a time: each is ten processes on a 2-core machine (under
/// `cargo test`; cargo-nextest runs this binary's tests alone, see
/// `.config/nextest.toml`).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Ha {
    dir: std::path::PathBuf,
    nats: NatsCluster,
    redis: Redis,
    edges: Vec<Node>,
    producers: Vec<Node>,
}

impl Ha {
    fn start(name: &str) -> Ha {
        let dir = scratch(name);
        let nats = NatsCluster::start(&dir);
        let redis = Redis::start(&dir);
        let replicas = ["--replicas", "3"];
        let edges = (0..2)
            .map(|i| {
                let id = format!("edge-{i}");
                spawn_node(&dir, "edge", &id, &nats.urls(), &redis.url(), &replicas)
            })
            .collect();
        let producers = (0..2)
            .map(|i| {
                let id = format!("producer-{i}");
                let n1 = nats.nodes[0].url();
                spawn_node(&dir, "producer", &id, &n1, &redis.url(), &replicas)
            })
            .collect();
        Ha {
            dir,
            nats,
            redis,
            edges,
            producers,
        }
    }

    /// Streams `SESSIONS` sessions of `tokens` tokens at `rate`/s, runs
    /// `fault` on the NATS cluster `fault_after` in, and checks every
    /// client against the log.
    async fn stream_through(
        &mut self,
        tokens: u64,
        rate: f64,
        fault_after: Duration,
        fault: impl FnOnce(&mut NatsCluster),
    ) {
        let mut clients = Vec::new();
        let mut sessions = Vec::new();
        for i in 0..SESSIONS {
            let edge = &self.edges[(i % 2) as usize];
            let s = create_mock(edge, tokens, rate, 100 + i).await;
            // Each client starts on its session's edge and alternates.
            let bases = vec![edge.ws(), self.edges[((i + 1) % 2) as usize].ws()];
            let (id, token) = (s.id.clone(), s.token.clone());
            clients.push(tokio::spawn(async move {
                read_resuming_at(&bases, &id, &token, 0, Duration::from_secs(180)).await
            }));
            sessions.push(s);
        }
        tokio::time::sleep(fault_after).await;
        tokio::task::block_in_place(|| fault(&mut self.nats));
        let mut reconnects = 0;
        for (client, s) in clients.into_iter().zip(&sessions) {
            let (events, n) = client.await.expect("client task");
            reconnects += n;
            assert_complete(&events, "completed");
            assert_eq!(events.len() as u64, tokens + 1, "session {}", s.id);
            let log = history(&self.edges[1], s).await;
            assert_eq!(
                events, log,
                "session {}: the client differs from the log",
                s.id
            );
        }
        let (replicas, _) = self.nats.stream_replicas("WEIR_EVENTS").await;
        assert_eq!(replicas, 3);
        eprintln!(
            "cluster: {SESSIONS} sessions exact, {reconnects} client reconnects; logs in {}",
            self.dir.display()
        );
        // Nothing died that should not have.
        for n in self.edges.iter_mut().chain(self.producers.iter_mut()) {
            assert!(
                matches!(n.proc.child.try_wait(), Ok(None)),
                "{} exited",
                n.id
            );
        }
        let _ = &self.redis;
    }
}

fn history_seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_events_stream_leader_loses_and_repeats_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut ha = Ha::start("cluster-leader");
    let leader = ha.nats.stream_leader("WEIR_EVENTS").await;
    eprintln!("WEIR_EVENTS leader: {leader}");
    ha.stream_through(500, 50.0, Duration::from_secs(3), |nats| {
        nats.node(&leader).kill9();
    })
    .await;
    let after = ha.nats.stream_leader("WEIR_EVENTS").await;
    assert_ne!(after, leader, "no new leader was elected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_producers_node_and_restarting_it_loses_and_repeats_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut ha = Ha::start("cluster-producers-node");
    ha.stream_through(600, 50.0, Duration::from_secs(3), |nats| {
        let n1 = nats.node("n1");
        n1.kill9();
        std::thread::sleep(Duration::from_secs(5));
        n1.restart();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_in_lame_duck_mode_loses_and_repeats_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut ha = Ha::start("cluster-rolling");
    ha.stream_through(1500, 50.0, Duration::from_secs(2), |nats| {
        for name in ["n1", "n2", "n3"] {
            let node = nats.node(name);
            node.stop_lame_duck();
            node.restart();
        }
    })
    .await;
    // Every event is stored once: the log's seqs are 1..=n in every session.
    let s = create_mock(&ha.edges[0], 20, 0.0, 1).await;
    wait_ended(&ha.edges[0], &s, Duration::from_secs(30)).await;
    let log = history(&ha.edges[1], &s).await;
    assert_eq!(history_seqs(&log), (1..=21).collect::<Vec<_>>());
}
