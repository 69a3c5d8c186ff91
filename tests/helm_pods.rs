//! The chart's pods run: the edge and producer containers of the rendered
//! Deployments are started as real processes (their command, args and
//! environment from the rendered YAML, secrets from the rendered or the
//! user's Secret, `WEIR_NODE_ID` from the pod's name) against real
//! nats-server and redis-server processes (a Sentinel deployment for the
//! production set), and sessions stream through
//! them. A chart that configures weir wrongly fails here.
//!
//! Every pod has an address of its own in Kubernetes; on one machine each
//! gets a port of its own, so the chart is rendered once per pod with
//! `edge.port` / `producer.metricsPort` set to a free port.

mod common;

use std::path::Path;
use std::time::Duration;

use common::helm::*;
use common::nats_cluster::NatsCluster;
use common::pods::*;
use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

/// The chart rendered for one pod: `values` with this machine's servers and
/// a free port for the pod.
fn render_for_pod(values: &Value, nats: &str, replicas: u8, port: u16) -> Vec<Value> {
    render(&merged(
        values,
        &json!({
            "nats": {"urls": nats, "replicas": replicas},
            "edge": {"port": port},
            "producer": {"metricsPort": port},
        }),
    ))
}

/// Starts `count` pods of the chart's `role` Deployment, named as the
/// ReplicaSet would name them.
fn start_pods(
    dir: &Path,
    role: &str,
    count: usize,
    render_pod: &dyn Fn(u16) -> Vec<Value>,
    user_secrets: &[Value],
) -> Vec<Node> {
    (0..count)
        .map(|i| {
            let objects = render_pod(free_port());
            let deployment = find(&objects, "Deployment", &format!("-{role}"));
            let mut secrets: Vec<&Value> = all(&objects, "Secret");
            secrets.extend(user_secrets);
            let pod = format!(
                "{}-5d8f7c9b4-{i}x",
                deployment["metadata"]["name"].as_str().unwrap()
            );
            start_pod(dir, deployment, role, &secrets, &pod)
        })
        .collect()
}

async fn create_with(edge: &Node, key: &str, tokens: u64, rate: f64) -> Session {
    create_with_key(
        edge,
        json!({"agent": "mock", "input": {"tokens": tokens, "rate": rate, "seed": 7}}),
        Some(key),
    )
    .await
}

/// Keys weir wrote into this Redis (not the machine's own on 6379, where a
/// node without `WEIR_REDIS_URL` would write).
fn weir_keys(port: u16) -> usize {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern", "weir:*"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

async fn node_ids(edge: &Node, key: &str) -> Vec<(String, String)> {
    let v: Value = http()
        .get(format!("{}/v1/nodes", edge.http()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<(String, String)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["role"].as_str().unwrap().into(),
                n["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_chart_pods_stream_a_session_with_the_generated_api_key() {
    let dir = scratch("helm-default");
    let nats = Nats::start(&dir);
    let redis = Redis::start(&dir);
    // The defaults but this machine's servers: one NATS node, so R1.
    let values = json!({"redis": {"url": redis.url()}});
    // One rendering for the Secret: its generated keys are what every pod reads.
    let fixed = render(&values);
    let secret = find(&fixed, "Secret", "weir").clone();
    let key = secret_value(&secret, "api-key").unwrap();
    let render_pod = |port| {
        let mut objects = render_for_pod(&values, &nats.url(), 1, port);
        objects.retain(|o| o["kind"] != "Secret");
        objects.push(secret.clone());
        objects
    };
    let edges = start_pods(&dir, "edge", 1, &render_pod, &[]);
    let producers = start_pods(&dir, "producer", 1, &render_pod, &[]);
    let edge = &edges[0];

    let anonymous = http()
        .post(format!("{}/v1/sessions", edge.http()))
        .json(&json!({"agent": "mock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "the edge runs without the chart's API key"
    );
    let s = create_with(edge, &key, 200, 0.0).await;
    let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_complete(&got.events, "completed");
    assert_eq!(got.events.len(), 201);
    assert_eq!(
        got.hello.unwrap()["node"],
        edge.id,
        "WEIR_NODE_ID is the pod's name"
    );
    assert!(
        weir_keys(redis.port) > 0,
        "the session is not in the chart's Redis"
    );
    let ids = node_ids(edge, &key).await;
    assert_eq!(
        ids,
        [
            ("edge".to_owned(), edge.id.clone()),
            ("producer".to_owned(), producers[0].id.clone())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_pods_stream_over_a_three_node_r3_cluster_with_the_users_secret() {
    let dir = scratch("helm-production");
    let cluster = NatsCluster::start(&dir);
    // Redis as the production example has it: Sentinel (a master, a
    // replica, three sentinels), named by the Secret's redis+sentinel:// URL.
    let sentinel = common::redis_ha::Sentinel::start(&dir);
    let key = "production-api-key-0123456789abcdef";
    // The Secret the production example asks the user to create.
    let user = user_secret(
        "weir-keys",
        &[
            ("secret", &"p".repeat(48)),
            ("api-key", key),
            ("redis-url", &sentinel.url()),
        ],
    );
    let values = values_file(PRODUCTION);
    let objects = render(&values);
    let edge_count = find(&objects, "HorizontalPodAutoscaler", "-edge")["spec"]["minReplicas"]
        .as_u64()
        .unwrap() as usize;
    let producer_count = find(&objects, "Deployment", "-producer")["spec"]["replicas"]
        .as_u64()
        .unwrap() as usize;
    let render_pod = |port| render_for_pod(&values, &cluster.urls(), 3, port);
    let users = [user];
    let edges = start_pods(&dir, "edge", edge_count, &render_pod, &users);
    let producers = start_pods(&dir, "producer", producer_count, &render_pod, &users);
    assert_eq!((edges.len(), producers.len()), (3, 2));
    // WEIR_PUBLIC_URL: the answers point clients at the public address.
    let created: Value = http()
        .post(format!("{}/v1/sessions", edges[0].http()))
        .bearer_auth(key)
        .json(&json!({"agent": "mock", "input": {"tokens": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = values["edge"]["publicUrl"]
        .as_str()
        .unwrap()
        .replacen("https", "wss", 1);
    assert!(
        created["ws_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{public}/v1/sessions/")),
        "{created}"
    );

    let sessions = futures::future::join_all(
        (0..4).map(|i| create_with(&edges[i % edges.len()], key, 150, 0.0)),
    )
    .await;
    for (i, s) in sessions.iter().enumerate() {
        // Read from an edge other than the one that created it.
        let edge = &edges[(i + 1) % edges.len()];
        let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
        let got = read(&mut ws, Stop::Close, MINUTE).await;
        assert_complete(&got.events, "completed");
        assert_eq!(got.events.len(), 151);
    }
    for stream in ["WEIR_EVENTS", "WEIR_RUNS"] {
        assert_eq!(cluster.stream_replicas(stream).await.0, 3, "{stream}");
    }
    let ids = node_ids(&edges[0], key).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(
        weir_keys(sentinel.master_port()) > 0,
        "the sessions are not in the Sentinel deployment's master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_edge_pod_drains_within_its_termination_grace_and_clients_resume() {
    let dir = scratch("helm-drain");
    let nats = Nats::start(&dir);
    let redis = Redis::start(&dir);
    let values = json!({"redis": {"url": redis.url()}, "secret": "d".repeat(32), "apiKey": "k"});
    let render_pod = |port| render_for_pod(&values, &nats.url(), 1, port);
    let mut edges = start_pods(&dir, "edge", 2, &render_pod, &[]);
    let _producers = start_pods(&dir, "producer", 1, &render_pod, &[]);
    // What the kubelet allows the process once the preStop sleep is over.
    let objects = render_pod(free_port());
    let d = find(&objects, "Deployment", "-edge");
    let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let sleep: u64 = container(d, "edge")["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let s = create_with(&edges[0], "k", 400, 100.0).await;
    let mut ws = ws_connect(&edges[0], &s.id, &s.token, 0).await;
    let mut events = read(&mut ws, Stop::After(20), MINUTE).await.events;
    edges[0].proc.signal(nix::sys::signal::Signal::SIGTERM);
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1012));
    assert_eq!(tail.other.last().unwrap()["type"], "reconnect");
    let left = Duration::from_secs(grace - sleep);
    assert!(
        exits_within(&mut edges[0].proc, left).is_some(),
        "the edge outlived its termination grace ({left:?} after the preStop sleep): SIGKILL"
    );
    events.extend(tail.events);
    let after = events.last().unwrap()["seq"].as_u64().unwrap();
    let mut ws = ws_connect(&edges[1], &s.id, &s.token, after).await;
    events.extend(read(&mut ws, Stop::Close, MINUTE).await.events);
    assert_complete(&events, "completed");
    assert_eq!(events.len(), 401);
}
