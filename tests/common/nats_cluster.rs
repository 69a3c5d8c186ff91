//! A 3-node nats-server cluster on loopback for the cluster suite: each node
//! with its own store, config file (lame duck mode over the shortest time
//! the server allows, 30 s, after a 1 s grace),
//! client, route and monitoring ports; killed, restarted from its store,
//! or stopped in lame duck mode one at a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, nats_server_bin, Proc};

pub struct NatsNode {
    pub name: String,
    pub proc: Option<Proc>,
    pub port: u16,
    pub monitor: u16,
    config: PathBuf,
    dir: PathBuf,
}

impl NatsNode {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&self.config);
        let log = self.dir.join(format!("{}.log", self.name));
        let mut proc = Proc::spawn_logged(&self.name, cmd, log);
        proc.wait_port(self.port);
        self.proc = Some(proc);
    }

    /// SIGKILL: the node dies with whatever it had not written.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// A planned stop: lame duck mode (SIGUSR2), then wait for the exit.
    pub fn stop_lame_duck(&mut self) {
        let mut p = self.proc.take().expect("node running");
        p.signal(nix::sys::signal::Signal::SIGUSR2);
        assert!(
            p.wait_exit(Duration::from_secs(60)),
            "{} did not leave lame duck mode",
            self.name
        );
    }

    /// Starts the node again from its store and waits until its JetStream
    /// is healthy (caught up with the cluster).
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "{} still running", self.name);
        self.spawn();
        self.wait_healthy(Duration::from_secs(60));
    }

    /// Waits for `/healthz` (JetStream current) to answer 200.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor);
        loop {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "2", &url])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "{} not healthy", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Three clustered nodes, `n1`..`n3`, started and healthy.
    pub fn start(dir: &Path) -> NatsCluster {
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes: Vec<NatsNode> = (0..3)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let (port, route, monitor) = ports[i];
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, r, _))| format!("\"nats-route://127.0.0.1:{r}\""))
                    .collect();
                let store = dir.join(&name);
                let config = dir.join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\n\
                         listen: \"127.0.0.1:{port}\"\n\
                         http: \"127.0.0.1:{monitor}\"\n\
                         jetstream {{ store_dir: \"{}\" }}\n\
                         cluster {{\n  name: weir\n  listen: \"127.0.0.1:{route}\"\n  routes: [{}]\n}}\n\
                         lame_duck_duration: \"30s\"\n\
                         lame_duck_grace_period: \"1s\"\n",
                        store.display(),
                        routes.join(", ")
                    ),
                )
                .unwrap();
                NatsNode {
                    name,
                    proc: None,
                    port,
                    monitor,
                    config,
                    dir: dir.clone(),
                }
            })
            .collect();
        for n in &mut nodes {
            n.spawn();
        }
        for n in &nodes {
            n.wait_healthy(Duration::from_secs(60));
        }
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated (the form `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, name: &str) -> &mut NatsNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The server name of a stream's leader, as JetStream reports it.
    pub async fn stream_leader(&self, stream: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(leader) = self.try_leader(stream).await {
                return leader;
            }
            assert!(Instant::now() < deadline, "{stream} has no leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_leader(&self, stream: &str) -> Option<String> {
        for n in self.nodes.iter().filter(|n| n.proc.is_some()) {
            let Ok(client) = async_nats::connect(n.url()).await else {
                continue;
            };
            let js = async_nats::jetstream::new(client);
            if let Ok(mut s) = js.get_stream(stream).await {
                if let Ok(info) = s.info().await {
                    if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        return Some(leader);
                    }
                }
            }
        }
        None
    }

    /// Replicas of a stream and how many of them are current.
    pub async fn stream_replicas(&self, stream: &str) -> (usize, usize) {
        for n in self.nodes.iter().filter(|n| n.proc.is_some()) {
            let Ok(client) = async_nats::connect(n.url()).await else {
                continue;
            };
            let js = async_nats::jetstream::new(client);
            if let Ok(mut s) = js.get_stream(stream).await {
                if let Ok(info) = s.info().await {
                    let cluster = info.cluster.clone().unwrap_or_default();
                    let current = 1 + cluster.replicas.iter().filter(|r| r.current).count();
                    return (info.config.num_replicas, current);
                }
            }
        }
        panic!("no node answers for {stream}");
    }
}
