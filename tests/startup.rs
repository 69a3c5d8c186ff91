//! What a node says when it cannot start as configured: a listen address
//! that is taken, a NATS server older than 2.11, a replica count the server
//! cannot give. Each is one line on stderr and exit code 1, naming what to
//! change; and a stream that exists with another replica count is updated,
//! and an older release's run queue is moved to per-agent queues.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output};
use std::time::Duration;

use common::nats_cluster::NatsCluster;
use common::*;

fn weir(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run weir");
    assert!(!out.status.success(), "weir {args:?} started");
    out
}

/// stderr of a failed start: exactly one line, starting `error: `.
fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

#[test]
fn a_taken_listen_address_is_one_line_naming_the_address_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cases = [
        (
            vec!["producer", "--metrics-listen", &addr],
            "--metrics-listen / WEIR_METRICS_LISTEN",
        ),
        (
            vec!["edge", "--listen", &addr, "--secret", SECRET],
            "--listen / WEIR_LISTEN",
        ),
        (vec!["dev", "--listen", &addr], "--listen / WEIR_LISTEN"),
    ];
    for (args, flag) in cases {
        let err = one_line(&weir(&args));
        assert!(err.contains(&addr), "{err}");
        assert!(err.contains(flag), "{err}");
        assert!(err.contains("Address already in use"), "{err}");
    }
}

/// Speaks just enough of the NATS protocol (INFO, then PONG to every PING)
/// to be connected to, announcing `version`.
fn fake_nats(version: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = sock.try_clone().unwrap();
                let info = format!(
                    "INFO {{\"server_id\":\"fake\",\"version\":\"{version}\",\"proto\":1,\
                     \"host\":\"127.0.0.1\",\"port\":{port},\"max_payload\":1048576,\
                     \"headers\":true,\"jetstream\":true}}\r\n"
                );
                let _ = w.write_all(info.as_bytes());
                for line in BufReader::new(sock).lines() {
                    match line {
                        Ok(l) if l.starts_with("PING") => {
                            let _ = w.write_all(b"PONG\r\n");
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_secret_shorter_than_32_bytes_is_one_line_naming_the_minimum() {
    let short = "sixteen-bytes-16";
    let rotation = format!("{SECRET},{short}");
    let free = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["edge", "--listen", &free, "--secret", short],
        vec!["edge", "--listen", &free, "--secret", &rotation],
        vec!["dev", "--listen", &free, "--secret", short],
    ] {
        let err = one_line(&weir(&args));
        assert!(err.contains("at least 32 bytes"), "{args:?}: {err}");
        assert!(err.contains("has 16"), "{args:?}: {err}");
    }
    let err = one_line(&weir(&["edge", "--listen", &free]));
    assert!(err.contains("WEIR_SECRET"), "{err}");
}

#[test]
fn a_node_connected_to_nats_older_than_2_11_refuses_to_start_naming_the_version() {
    let port = fake_nats("2.9.10");
    let url = format!("nats://127.0.0.1:{port}");
    let free = format!("127.0.0.1:{}", free_port());
    for args in [
        vec![
            "edge",
            "--nats-url",
            &url,
            "--listen",
            &free,
            "--secret",
            SECRET,
        ],
        vec!["producer", "--nats-url", &url, "--metrics-listen", &free],
    ] {
        let err = one_line(&weir(&args));
        assert!(err.contains("2.9.10"), "{err}");
        assert!(err.contains("2.11 or later"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_a_single_server_cannot_give_are_refused_with_the_reason() {
    let dir = scratch("replicas-single");
    let nats = Nats::start(&dir);
    let config = weir_bus::BusConfig {
        replicas: 3,
        ..Default::default()
    };
    let e = match weir_bus::Bus::nats(&[nats.url()], "test", config).await {
        Ok(_) => panic!("a single server gave 3 replicas"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("WEIR_EVENTS") && e.contains("3 replica"), "{e}");
    let started = std::time::Instant::now();
    let out = weir(&[
        "edge",
        "--nats-url",
        &nats.url(),
        "--replicas",
        "3",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--secret",
        SECRET,
    ]);
    let err = one_line(&out);
    assert!(err.contains("replica"), "{err}");
    // Refused at once, not after the wait for a forming cluster.
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_with_one_replica_is_moved_to_the_count_asked_for() {
    let dir = scratch("replicas-update");
    let nats = NatsCluster::start(&dir);
    let urls: Vec<String> = nats.nodes.iter().map(|n| n.url()).collect();
    let with = |replicas| weir_bus::BusConfig {
        replicas,
        ..Default::default()
    };
    drop(weir_bus::Bus::nats(&urls, "first", with(1)).await.unwrap());
    assert_eq!(nats.stream_replicas("WEIR_EVENTS").await.0, 1);
    drop(weir_bus::Bus::nats(&urls, "second", with(3)).await.unwrap());
    for stream in ["WEIR_EVENTS", "WEIR_RUNS"] {
        assert_eq!(nats.stream_replicas(stream).await.0, 3, "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_releases_single_run_queue_is_migrated_to_per_agent_queues() {
    use async_nats::jetstream::{self, consumer, stream};
    let dir = scratch("runs-migration");
    let nats = Nats::start(&dir);
    // WEIR_RUNS as releases before per-agent queues made it, with its
    // shared consumer and two requests waiting.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let old = js
        .create_stream(stream::Config {
            name: "WEIR_RUNS".into(),
            subjects: vec!["weir.runs".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    old.create_consumer(consumer::pull::Config {
        durable_name: Some("weir-producers".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    })
    .await
    .unwrap();
    for (session, agent) in [("old-1", "mock"), ("old-2", "openai")] {
        let body = serde_json::json!({"session": session, "agent": agent, "input": {}});
        js.publish("weir.runs", body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let bus = weir_bus::Bus::nats(&[nats.url()], "upgraded", Default::default())
        .await
        .unwrap();
    let mut runs = js.get_stream("WEIR_RUNS").await.unwrap();
    let info = runs.info().await.unwrap();
    assert_eq!(info.config.subjects, ["weir.runs.>"]);
    assert!(
        runs.consumer_info("weir-producers").await.is_err(),
        "the old consumer overlaps every agent's and must go"
    );
    for (session, agent) in [("old-1", "mock"), ("old-2", "openai")] {
        let taken = bus
            .runs
            .take(agent, 10, Duration::from_secs(5))
            .await
            .unwrap();
        let sessions: Vec<String> = taken
            .iter()
            .map(|t| t.request.session.to_string())
            .collect();
        assert_eq!(sessions, [session], "{agent}");
    }
    // A second node starting on the migrated stream changes nothing.
    drop(
        weir_bus::Bus::nats(&[nats.url()], "again", Default::default())
            .await
            .unwrap(),
    );
    assert_eq!(runs.info().await.unwrap().config.subjects, ["weir.runs.>"]);
}
