//! Failures of components: a producer killed mid-run, or frozen until its
//! lease is taken over, nats-server restarted mid-stream, an edge drained
//! with SIGTERM. Nothing is lost or repeated.
//! (Clients that stop reading: tests/limits.rs.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producer_fails_its_session_within_the_lease() {
    let lease = ["--lease-ttl", "2s", "--reap-interval", "250ms"];
    let mut c = Cluster::start_with("producer-kill", 1, 2, &[], &lease);
    let edge_http = c.edge(0).http();
    let s = create_mock(c.edge(0), 2000, 20.0, 5).await;
    let mut ws = ws_connect(c.edge(0), &s.id, &s.token, 0).await;
    let first = read(&mut ws, Stop::After(10), MINUTE).await;
    let owner = state(c.edge(0), &s).await["producer"]
        .as_str()
        .expect("a producer owns the run")
        .to_owned();
    let victim = c.producers.iter_mut().find(|p| p.id == owner).unwrap();
    victim.proc.kill9();
    let killed = Instant::now();
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    let took = killed.elapsed();
    assert_eq!(rest.close, Some(1000));
    let events: Vec<Value> = first.events.into_iter().chain(rest.events).collect();
    assert_complete(&events, "failed");
    let error = &events[events.len() - 2];
    assert_eq!(error["kind"], "error");
    assert_eq!(error["data"]["code"], "producer_lost");
    // Lease 2 s + one reap interval, with room for a loaded machine.
    assert!(took < Duration::from_secs(5), "failure took {took:?}");
    let st: Value = http()
        .get(format!(
            "{edge_http}/v1/sessions/{}?token={}",
            s.id, s.token
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["status"], "failed");
    assert_eq!(st["end_reason"], "failed");
    assert!(st["producer"].is_null());
    assert_eq!(events, history(c.edge(0), &s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_producer_whose_lease_was_taken_over_publishes_nothing_after_the_end() {
    use nix::sys::signal::Signal;
    let lease = ["--lease-ttl", "2s", "--reap-interval", "250ms"];
    let mut c = Cluster::start_with("producer-stop", 1, 2, &[], &lease);
    let s = create_mock(c.edge(0), 2000, 50.0, 7).await;
    let mut ws = ws_connect(c.edge(0), &s.id, &s.token, 0).await;
    let first = read(&mut ws, Stop::After(10), MINUTE).await;
    let owner = state(c.edge(0), &s).await["producer"]
        .as_str()
        .expect("a producer owns the run")
        .to_owned();
    let victim = c.producers.iter_mut().find(|p| p.id == owner).unwrap();
    // Alive but frozen: it neither renews nor publishes, as in a long GC
    // pause or a stalled VM, until the other producer has ended its run.
    victim.proc.signal(Signal::SIGSTOP);
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    let events: Vec<Value> = first.events.into_iter().chain(rest.events).collect();
    assert_complete(&events, "failed");
    victim.proc.signal(Signal::SIGCONT);
    // Its next renewal finds the lease taken and its next append is
    // refused by the fence: the log stays as the reaper left it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events,
        history(c.edge(0), &s).await,
        "the thawed producer wrote after the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_mid_stream_loses_and_repeats_nothing() {
    let mut c = Cluster::start("nats-restart", 2, 1);
    let sessions: Vec<Session> = futures::future::join_all(
        (0..5).map(|i| create_mock(&c.edges[i % 2], 400, 80.0, i as u64)),
    )
    .await;
    let Cluster { nats, edges, .. } = &mut c;
    let edges: Vec<&Node> = edges.iter().collect();
    let readers = futures::future::join_all(
        sessions
            .iter()
            .map(|s| read_all_resuming(&edges, s, Duration::from_secs(120))),
    );
    let restart = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.restart_async(Duration::from_millis(1500)).await;
    };
    let (results, ()) = tokio::join!(readers, restart);
    for ((events, _reconnects), s) in results.into_iter().zip(&sessions) {
        assert_complete(&events, "completed");
        assert_eq!(events.len(), 401, "session {}", s.id);
        assert_eq!(events, history(edges[0], s).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_edge_and_clients_resume_elsewhere() {
    let mut c = Cluster::start_with("drain", 2, 1, &["--drain-grace", "5s"], &[]);
    let s = create_mock(&c.edges[0], 300, 100.0, 9).await;
    let mut ws = ws_connect(&c.edges[0], &s.id, &s.token, 0).await;
    let mut events = read(&mut ws, Stop::After(20), MINUTE).await.events;
    c.edges[0].proc.signal(nix::sys::signal::Signal::SIGTERM);
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1012));
    assert_eq!(tail.other.last().unwrap()["type"], "reconnect");
    assert!(
        c.edges[0].proc.wait_exit(Duration::from_secs(6)),
        "edge did not exit after draining"
    );
    events.extend(tail.events);
    let after = events.last().unwrap()["seq"].as_u64().unwrap();
    let mut ws = ws_connect(&c.edges[1], &s.id, &s.token, after).await;
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    events.extend(rest.events);
    assert_complete(&events, "completed");
}
