//! Redis deployments for the tests: Sentinel (a master, a replica, three
//! sentinels) and Cluster (three masters, three replicas), as real
//! `redis-server` processes on free ports, killed on drop (each is a
//! [`Proc`]). Every wait has a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, Proc};

pub const MASTER_NAME: &str = "weir";

/// Debian's, or whichever is on `PATH`.
pub fn redis_server() -> &'static str {
    if Path::new("/usr/bin/redis-server").exists() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

/// `redis-cli -p <port> <args>`'s output (empty if it failed).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Polls `check` every 100 ms until it holds, failing after `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} (waited {within:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `redis-server`, without persistence (a killed one comes back empty).
pub struct Server {
    pub proc: Proc,
    pub port: u16,
    name: String,
    dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    fn start(dir: &Path, name: &str, args: &[String]) -> Server {
        let port = free_port();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let proc = Self::spawn(&dir, name, port, args);
        Server {
            proc,
            port,
            name: name.to_owned(),
            dir,
            args: args.to_vec(),
        }
    }

    fn spawn(dir: &Path, name: &str, port: u16, args: &[String]) -> Proc {
        let mut cmd = Command::new(redis_server());
        cmd.current_dir(dir)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args);
        let mut proc = Proc::spawn_logged(name, cmd, dir.join("redis.log"));
        proc.wait_port(port);
        proc
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts it again on the same port, empty, with the same arguments.
    pub fn restart(&mut self) {
        self.proc.kill9();
        self.proc = Self::spawn(&self.dir, &self.name, self.port, &self.args);
    }

    /// `ROLE`'s first line: `master`, `slave`.
    pub fn role(&self) -> String {
        cli(self.port, &["ROLE"])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    pub fn dbsize(&self) -> u64 {
        cli(self.port, &["DBSIZE"]).trim().parse().unwrap_or(0)
    }
}

/// A master, its replica and three sentinels watching them.
pub struct Sentinel {
    pub servers: Vec<Server>,
    pub sentinels: Vec<Proc>,
    pub sentinel_ports: Vec<u16>,
}

impl Sentinel {
    pub fn start(dir: &Path) -> Sentinel {
        let master = Server::start(dir, "redis-a", &[]);
        let replica_of = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ];
        let replica = Server::start(dir, "redis-b", &replica_of);
        wait_until("the replica never synced", Duration::from_secs(20), || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let mut s = Sentinel {
            sentinels: Vec::new(),
            sentinel_ports: Vec::new(),
            servers: vec![master, replica],
        };
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(&conf, sentinel_conf(port, s.servers[0].port, dir)).unwrap();
            let mut cmd = Command::new(redis_server());
            cmd.arg(&conf).arg("--sentinel");
            let log = dir.join(format!("sentinel-{i}.log"));
            let mut sentinel = Proc::spawn_logged("sentinel", cmd, log);
            sentinel.wait_port(port);
            s.sentinels.push(sentinel);
            s.sentinel_ports.push(port);
        }
        // A failover needs every sentinel to know the replica and the others.
        for &p in &s.sentinel_ports {
            wait_until("the sentinels never met", Duration::from_secs(30), || {
                let info = cli(p, &["SENTINEL", "MASTER", MASTER_NAME]);
                field(&info, "num-slaves") == "1" && field(&info, "num-other-sentinels") == "2"
            });
        }
        s
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> u16 {
        let addr = cli(
            self.sentinel_ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        addr.lines()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The server the sentinels name master now.
    pub fn master(&mut self) -> &mut Server {
        let port = self.master_port();
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("the sentinels name a server of ours")
    }

    /// Waits until the sentinels name a master other than `old`.
    pub fn wait_failover(&self, old: u16, within: Duration) {
        wait_until("the sentinels never failed over", within, || {
            let p = self.master_port();
            p != 0 && p != old
        });
    }
}

/// `key`'s value in a `SENTINEL MASTER` reply (key and value on alternate lines).
fn field(info: &str, key: &str) -> String {
    let lines: Vec<&str> = info.lines().collect();
    lines
        .iter()
        .position(|l| *l == key)
        .and_then(|i| lines.get(i + 1))
        .map_or_else(String::new, |v| v.to_string())
}

fn sentinel_conf(port: u16, master: u16, dir: &Path) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\ndir {}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        dir.display()
    )
}

/// Redis Cluster: three masters with a replica each.
pub struct RedisCluster {
    pub servers: Vec<Server>,
}

impl RedisCluster {
    pub fn start(dir: &Path) -> RedisCluster {
        let servers: Vec<Server> = (0..6)
            .map(|i| {
                // The cluster bus listens on its own port, by default the
                // client port + 10000: in the kernel's ephemeral range, where
                // any outgoing connection may hold it. It gets a free port
                // below that range, like every other server here.
                let bus = free_port().to_string();
                let args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ]
                .map(String::from)
                .to_vec();
                Server::start(dir, &format!("cluster-{i}"), &args)
            })
            .collect();
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster { servers };
        c.wait_ok(Duration::from_secs(30));
        c
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits until every live node says `cluster_state:ok` and every master
    /// has a replica in sync.
    pub fn wait_ok(&self, within: Duration) {
        wait_until("the cluster never became ok", within, || {
            self.servers
                .iter()
                .filter(|s| cli(s.port, &["PING"]).trim() == "PONG")
                .all(|s| cli(s.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        wait_until("a replica never synced", within, || {
            self.servers
                .iter()
                .filter(|s| s.role() == "slave")
                .all(|s| cli(s.port, &["INFO", "replication"]).contains("master_link_status:up"))
        });
    }

    /// A node that answers, to ask about the cluster.
    fn live_port(&self) -> u16 {
        self.servers
            .iter()
            .map(|s| s.port)
            .find(|p| cli(*p, &["PING"]).trim() == "PONG")
            .expect("no cluster node answers")
    }

    /// The slot of `key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        let slot = cli(self.live_port(), &["CLUSTER", "KEYSLOT", key]);
        slot.trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The port of the master that serves `slot`, as a live node sees it
    /// (0 while none does).
    pub fn master_port_of_slot(&self, slot: u16) -> u16 {
        let nodes = cli(self.live_port(), &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .find(|l| {
                l.split(' ').skip(8).any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    let (a, b): (u16, u16) = (a.parse().unwrap_or(1), b.parse().unwrap_or(0));
                    (a..=b).contains(&slot)
                })
            })
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|a| a.split(['@', ':']).nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The server serving `key`'s slot as master.
    pub fn master_of(&mut self, key: &str) -> &mut Server {
        let port = self.master_port_of_slot(self.keyslot(key));
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a master serves the slot")
    }
}
