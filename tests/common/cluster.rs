//! A weir cluster for one test: NATS, Redis, and edges and producers as
//! real `weir edge` / `weir producer` processes ([`Node`]s) on free ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::processes::{free_port, scratch, Nats, Proc, Redis};
use super::SECRET;

/// What node `id` has logged so far (its file in the cluster's scratch dir).
pub fn node_log(c: &Cluster, id: &str) -> String {
    std::fs::read_to_string(c.dir.join(format!("{id}.log"))).unwrap_or_default()
}

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

/// What serves weir's HTTP API and WebSocket to a test: a `weir` process
/// ([`Node`]) or an edge embedded in the test ([`super::Embedded`]).
pub trait Endpoint {
    /// `http://host:port`.
    fn http(&self) -> String;
    /// `ws://host:port`.
    fn ws(&self) -> String {
        self.http().replacen("http", "ws", 1)
    }
}

impl Endpoint for Node {
    fn http(&self) -> String {
        Node::http(self)
    }
}

/// A reference to an endpoint is one (a test iterating over `&[&Node]`).
impl<T: Endpoint + ?Sized> Endpoint for &T {
    fn http(&self) -> String {
        (**self).http()
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
    let proc = Proc::spawn_logged(id, cmd, dir.join(format!("{id}.log")));
    wait_ready(&format!("http://127.0.0.1:{port}/readyz"), id);
    Node {
        proc,
        port,
        id: id.into(),
    }
}
