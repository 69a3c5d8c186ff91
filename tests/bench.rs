//! The load tool end to end: `weir-bench` against a real cluster reads every
//! session back and checks each client against the log; `weir-bench limit`
//! measures NATS alone, the JetStream republish floor included. The tool is
//! its own package (`tools/bench`): scripts/test.sh builds every binary of
//! the workspace before the tests.

mod common;

use std::process::Command;

use common::Cluster;
use serde_json::Value;

/// `target/<profile>/weir-bench`, beside the `weir` binary under test.
fn tool() -> std::path::PathBuf {
    let tool = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weir-bench");
    assert!(
        tool.exists(),
        "{} is not built: cargo build -p weir-bench (scripts/test.sh builds it)",
        tool.display()
    );
    tool
}

fn bench(args: &[&str]) -> Value {
    let out = Command::new(tool())
        .args(args)
        .output()
        .expect("run weir-bench");
    assert!(
        out.status.success(),
        "weir-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "weir-bench {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn steady_load_over_two_edges_is_checked_against_the_log() {
    let c = Cluster::start("bench-steady", 2, 1);
    let (e0, e1) = (c.edge(0).http(), c.edge(1).http());
    let r = bench(&[
        "steady",
        "--edge",
        &e0,
        "--edge",
        &e1,
        "--sessions",
        "6",
        "--rate",
        "200",
        "--tokens",
        "100",
        "--timeout",
        "60s",
        "--json",
    ]);
    let v = &r["verify"];
    assert_eq!(v["against"], "history", "{r:#}");
    assert_eq!(v["clients"], 6, "{r:#}");
    assert_eq!(v["clients_ok"], 6, "{r:#}");
    assert_eq!(
        (
            &v["lost"],
            &v["duplicates"],
            &v["mismatched"],
            &v["unfinished"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into()),
        "{r:#}"
    );
    // 100 tokens and `end` per session, each with its latency measured.
    assert_eq!(r["events"], 6 * 101, "{r:#}");
    assert_eq!(r["latency_ms"]["count"], 6 * 101, "{r:#}");
}

#[test]
fn the_tool_as_an_outside_producer_claims_its_sessions_leases() {
    // A claim timeout far shorter than the sessions: unclaimed, they would
    // be ended `failed` (`unclaimed`) mid-stream.
    let c = Cluster::start_with("bench-external", 1, 0, &["--claim-timeout", "1s"], &[]);
    let (e0, nats) = (c.edge(0).http(), c.nats.url());
    let r = bench(&[
        "steady",
        "--edge",
        &e0,
        "--external",
        "--nats-url",
        &nats,
        "--sessions",
        "4",
        "--rate",
        "50",
        "--tokens",
        "150",
        "--timeout",
        "60s",
        "--json",
    ]);
    let v = &r["verify"];
    assert_eq!(v["against"], "history", "{r:#}");
    assert_eq!(
        (&v["clients"], &v["clients_ok"]),
        (&4.into(), &4.into()),
        "{r:#}"
    );
    assert_eq!(
        (
            &v["lost"],
            &v["duplicates"],
            &v["mismatched"],
            &v["unfinished"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into()),
        "{r:#}"
    );
    assert_eq!(r["events"], 4 * 151, "{r:#}");
}

#[test]
fn a_burst_of_sessions_started_at_once_is_checked_against_the_log() {
    let c = Cluster::start("bench-burst", 2, 1);
    let (e0, e1) = (c.edge(0).http(), c.edge(1).http());
    let r = bench(&[
        "burst",
        "--edge",
        &e0,
        "--edge",
        &e1,
        "--sessions",
        "20",
        "--rate",
        "100",
        "--tokens",
        "30",
        "--timeout",
        "60s",
        "--json",
    ]);
    let v = &r["verify"];
    assert_eq!(v["against"], "history", "{r:#}");
    assert_eq!(
        (&v["clients"], &v["clients_ok"]),
        (&20.into(), &20.into()),
        "{r:#}"
    );
    assert_eq!(
        (
            &v["lost"],
            &v["duplicates"],
            &v["mismatched"],
            &v["unfinished"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into()),
        "{r:#}"
    );
    // Every session was created at once, and each client's events were
    // split into its first 10 and the rest: 30 tokens and `end` each.
    assert_eq!(r["settings"]["created_at_once"], 20, "{r:#}");
    assert_eq!(r["first_events_latency_ms"]["count"], 20 * 10, "{r:#}");
    assert_eq!(r["later_events_latency_ms"]["count"], 20 * 21, "{r:#}");
    assert_eq!(r["first_event_ms"]["count"], 20, "{r:#}");
}

#[test]
fn limit_measures_core_nats_jetstream_and_the_republish_floor() {
    let c = Cluster::start("bench-limit", 0, 0);
    let r = bench(&[
        "limit",
        "--nats-url",
        &c.nats.url(),
        "--seconds",
        "0.5",
        "--paced-rate",
        "2000",
        "--subjects",
        "20",
        "--watch",
        &format!("nats={}", c.nats.proc.pid()),
        "--json",
    ]);
    let rows = r["rows"].as_array().expect("rows");
    let row = |prefix: &str| {
        rows.iter()
            .find(|row| row["what"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} row in {r:#}"))
    };
    for prefix in [
        "nats core pub→sub, full speed",
        "nats core pub→sub, paced",
        "jetstream publish, 1 event(s)",
        "jetstream publish, 256 event(s)",
    ] {
        assert!(row(prefix)["events_per_s"].as_f64().unwrap() > 0.0);
    }
    let floor = row("jetstream paced 2000/s over 20 subjects");
    // Every publish is stored and republished; the republish is core NATS,
    // at most once, and a starved subscriber can miss a few (weir's edges
    // fill such gaps from the log): the floor row counts them, at most 1 %
    // of what was sent (how many were sent in the half second is the
    // machine's speed, not checked here).
    let received = floor["latency_ms"]["count"].as_u64().unwrap();
    let lost = floor["lost"].as_u64().unwrap();
    assert!(received > 0, "{floor:#}");
    assert!(lost * 100 <= received + lost, "{floor:#}");
    assert!(floor["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    // What the server and the thinnest client spent an event: JetStream
    // stores, acknowledges and republishes each one, so neither is free.
    let cpu: Vec<(&str, f64)> = floor["cpu_us_per_event"]
        .as_array()
        .expect("cpu per event")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["us"].as_f64().unwrap()))
        .collect();
    let names: Vec<&str> = cpu.iter().map(|c| c.0).collect();
    assert_eq!(names, ["nats", "weir-bench"], "{floor:#}");
    assert!(cpu.iter().all(|c| c.1 > 0.0), "{floor:#}");
}
