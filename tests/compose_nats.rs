//! The compose stack's NATS configs (`deploy/nats/`), run: three pinned
//! `nats-server` processes from those files, with only what this machine
//! needs changed (ports on 127.0.0.1 instead of the compose network's host
//! names, store directories instead of the volumes), form a JetStream
//! cluster; a planned restart of one node (compose's `stop_signal`, lame
//! duck mode) moves its client to another node, loses nothing of an R3
//! stream and ends within compose's `stop_grace_period`.
//!
//! `tests/compose.rs` checks the same files statically (names, routes,
//! ports and volumes against `docker-compose.yml`, `nats-server -t`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::compose::*;
use common::files::*;
use common::nats_conf::*;
use common::*;
use serde_json::{json, Value};

/// One node: its compose name, client URL and monitoring port.
struct NatsNode {
    name: String,
    proc: Proc,
    client: String,
    monitor: u16,
}

/// The compose NATS services' configs, with this machine's addresses.
fn local_configs(dir: &Path) -> Vec<(String, Value, u16, u16)> {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let named = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(scalar)
        .collect();
    let nodes: Vec<(String, String)> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
        .map(|(n, s)| (scalar(n), nats_config_file(&scalar(n), s, &named)))
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let ports: BTreeMap<&str, [u16; 3]> = nodes
        .iter()
        .map(|(n, _)| (n.as_str(), [free_port(), free_port(), free_port()]))
        .collect();
    nodes
        .iter()
        .map(|(name, rel)| {
            let mut conf = read_nats_conf(&text(rel));
            let [client, monitor, route] = ports[name.as_str()];
            conf["port"] = json!(client.to_string());
            conf["http_port"] = json!(monitor.to_string());
            conf["jetstream"]["store_dir"] = json!(dir.join(name).display().to_string());
            conf["cluster"]["listen"] = json!(format!("127.0.0.1:{route}"));
            // The compose routes name the other nodes; here they are local ports.
            let routes: Vec<Value> = conf["cluster"]["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let (host, _) = host_port(r.as_str().unwrap());
                    let p = ports
                        .get(host.as_str())
                        .unwrap_or_else(|| panic!("{rel}: route to {host}, not a NATS service"));
                    json!(format!("nats://127.0.0.1:{}", p[2]))
                })
                .collect();
            conf["cluster"]["routes"] = Value::Array(routes);
            (name.clone(), conf, client, monitor)
        })
        .collect()
}

fn start(dir: &Path, name: &str, conf: &Value, client: u16, monitor: u16) -> NatsNode {
    let file = dir.join(format!("{name}.conf"));
    std::fs::write(&file, write_nats_conf(conf)).unwrap();
    // The reader and writer keep the config as nats-server reads it.
    nats_server_accepts(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut cmd = Command::new(nats_server_bin());
    cmd.arg("-c").arg(&file);
    let proc = Proc::spawn_logged(name, cmd, dir.join(format!("{name}.log")));
    NatsNode {
        name: name.to_owned(),
        proc,
        client: format!("nats://127.0.0.1:{client}"),
        monitor,
    }
}

async fn monitor(node: &NatsNode, path: &str) -> Option<(u16, Value)> {
    let r = http()
        .get(format!("http://127.0.0.1:{}{path}", node.monitor))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// The compose healthcheck's question: is `/healthz` 200?
async fn healthy(node: &NatsNode) -> bool {
    monitor(node, "/healthz")
        .await
        .is_some_and(|(s, _)| s == 200)
}

async fn all_healthy(nodes: &[NatsNode]) -> bool {
    futures::future::join_all(nodes.iter().map(healthy))
        .await
        .into_iter()
        .all(|h| h)
}

/// The meta leader this node sees, once it sees one.
async fn meta_leader(node: &NatsNode) -> Option<String> {
    let (_, jsz) = monitor(node, "/jsz").await?;
    jsz["meta_cluster"]["leader"].as_str().map(str::to_owned)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_nats_configs_form_a_cluster_that_restarts_in_lame_duck_mode() {
    let began = Instant::now();
    let dir = scratch("compose-nats");
    let confs = local_configs(&dir);
    let compose = yaml("docker-compose.yml");
    let svc = &compose["services"][confs[0].0.as_str()];
    assert_eq!(svc["stop_signal"].as_str(), Some("SIGUSR2"));
    let stop_grace = humantime::parse_duration(svc["stop_grace_period"].as_str().unwrap()).unwrap();

    // A node alone is not healthy (no JetStream meta leader without a
    // quorum): that is why no NATS service waits for another in compose.
    let (name, conf, client, mon) = &confs[0];
    let mut nodes = vec![start(&dir, name, conf, *client, *mon)];
    wait_until(
        "the first node answers",
        Duration::from_secs(10),
        || async { monitor(&nodes[0], "/healthz").await.is_some() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!healthy(&nodes[0]).await, "a lone node is healthy");
    for (name, conf, client, mon) in &confs[1..] {
        nodes.push(start(&dir, name, conf, *client, *mon));
    }
    wait_until("every node healthy", Duration::from_secs(30), || {
        all_healthy(&nodes)
    })
    .await;
    let cluster_name = confs[0].1["cluster"]["name"].as_str().unwrap();
    for n in &nodes {
        let (_, jsz) = monitor(n, "/jsz").await.unwrap();
        assert_eq!(jsz["meta_cluster"]["name"], cluster_name, "{}", n.name);
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "{}: {jsz}", n.name);
        let (_, varz) = monitor(n, "/varz").await.unwrap();
        assert_eq!(varz["server_name"], n.name.as_str());
    }

    // A client with every node's URL, as WEIR_NATS_URL lists them, and an
    // R3 stream.
    let urls: Vec<String> = nodes.iter().map(|n| n.client.clone()).collect();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(urls)
        .await
        .unwrap();
    let js = jetstream::new(nc.clone());
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            name: "PLANNED".into(),
            subjects: vec!["planned.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        js.publish("planned.a", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // The node this client is on is restarted: compose's stop signal.
    let on = nc.server_info().server_name;
    let i = nodes.iter().position(|n| n.name == on).unwrap();
    let stopped = Instant::now();
    nodes[i].proc.signal(nix::sys::signal::Signal::SIGUSR2);
    let deadline = Instant::now() + stop_grace;
    let mut saw_ldm = false;
    let mut exited = None;
    while exited.is_none() {
        while let Ok(e) = events.try_recv() {
            saw_ldm |= e.contains("lame duck");
        }
        if let Ok(Some(status)) = nodes[i].proc.child.try_wait() {
            exited = Some(status);
        }
        assert!(
            Instant::now() < deadline,
            "{on} still running {stop_grace:?} after SIGUSR2: compose would SIGKILL it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = stopped.elapsed();
    assert!(saw_ldm, "the client was not told of lame duck mode");
    let node = nodes.remove(i);

    // The other two carry on: healthy, one meta leader between them, the
    // client on one of them, the stream whole and still written.
    wait_until("the other two healthy", Duration::from_secs(20), || {
        all_healthy(&nodes)
    })
    .await;
    wait_until(
        "a meta leader among the rest",
        Duration::from_secs(20),
        || async {
            let leaders = futures::future::join_all(nodes.iter().map(meta_leader)).await;
            leaders
                .iter()
                .all(|l| l.is_some() && *l == leaders[0] && *l != Some(on.clone()))
        },
    )
    .await;
    js.publish("planned.a", "10".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_ne!(nc.server_info().server_name, on);
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 11);
    assert_eq!(info.config.num_replicas, 3);
    eprintln!(
        "compose NATS: {on} left in lame duck mode in {took:.1?} ({:?}; compose allows \
         {stop_grace:?}); test took {:.1} s",
        exited.unwrap(),
        began.elapsed().as_secs_f64()
    );
    drop(node);
}
