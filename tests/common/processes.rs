//! Processes for one test: free ports, scratch directories, and real
//! `nats-server` and `redis-server` on free ports, each a [`Proc`] killed
//! (SIGKILL) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now, for a server the test starts.
///
/// Below the kernel's ephemeral range (32768–60999 on Linux by default), so
/// that no outgoing connection on the machine takes the port between this
/// check and the server's bind (port 0 hands out ephemeral ports, and a
/// nats-server once found its "free" monitoring port taken that way). Each
/// process starts at its own place in 10000–31999 (nextest runs every test
/// in a process of its own) and moves on from there.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A directory for this test's logs and data.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The nats-server the tests run: `WEIR_NATS_SERVER`, or the pinned release
/// that `scripts/setup.sh` installs into `.tools/` (Debian's 2.9 is too old).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/nats-server");
    assert!(
        p.exists(),
        "no nats-server at {}: run scripts/setup.sh (or set WEIR_NATS_SERVER)",
        p.display()
    );
    p
}

pub fn which(bin: &str, fallback: &str) -> String {
    if std::path::Path::new(fallback).exists() {
        fallback.to_owned()
    } else {
        bin.to_owned()
    }
}

/// A child process killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn_logged(name: &str, cmd: Command, log: PathBuf) -> Proc {
        Self::spawn(name, cmd, log)
    }

    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        cmd.stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
            log,
        }
    }

    /// Waits up to 20 s for the process to listen on `port`. Fails at once
    /// if it exits first, and either way with the end of its log: why a
    /// server did not start (a port taken, a bad flag) is only there.
    pub fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{} did not open port {port} ({}); the end of {}:\n{}",
                    self.name,
                    exited.map_or("still running after 20 s".to_owned(), |s| s.to_string()),
                    self.log.display(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most the resident set has been since the process started, in KiB
    /// (the kernel's high-water mark: no sample can miss a peak).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Nats {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl Nats {
    pub fn start(dir: &std::path::Path) -> Nats {
        let port = free_port();
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).unwrap();
        let proc = Self::spawn(port, &dir);
        Nats { proc, port, dir }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"));
        let mut p = Proc::spawn("nats-server", cmd, dir.join("nats.log"));
        p.wait_port(port);
        p
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// [`Nats::restart`] without blocking the test's runtime.
    pub async fn restart_async(&mut self, down_for: Duration) {
        self.proc.kill9();
        tokio::time::sleep(down_for).await;
        let (port, dir) = (self.port, self.dir.clone());
        self.proc = tokio::task::spawn_blocking(move || Self::spawn(port, &dir))
            .await
            .unwrap();
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self, down_for: Duration) {
        self.proc.kill9();
        std::thread::sleep(down_for);
        self.proc = Self::spawn(self.port, &self.dir);
    }
}

pub struct Redis {
    pub proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &std::path::Path) -> Redis {
        let port = free_port();
        let proc = Self::spawn(port, dir);
        Redis { proc, port }
    }

    /// redis-server on `port`, without persistence, logging into `dir`.
    fn spawn(port: u16, dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new(which("redis-server", "/usr/bin/redis-server"));
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir);
        let mut proc = Proc::spawn("redis-server", cmd, dir.join("redis.log"));
        proc.wait_port(port);
        proc
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------- Redis outages (redis_outage.rs)

impl Redis {
    /// Kills the server (SIGKILL); without persistence its data is gone.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts an empty server on the same port (after [`Redis::kill9`]).
    pub fn restart_empty(&mut self, dir: &std::path::Path) {
        self.proc.kill9();
        self.proc = Self::spawn(self.port, dir);
    }
}
