//! Hosts for the partition suite (tests/partitions.rs), built with Linux
//! network namespaces: each host is a namespace `wpt-<name>` with one veth
//! link `eth0` to the suite's bridge `wpt-br`, an address in 10.213.0.0/24
//! (a private range this machine does not use; the bridge holds .1, so
//! the test process reaches every host), and processes started inside it
//! with `ip netns exec`. Partitions are made the two ways the issue names:
//! blackhole routes between two hosts (each still reaches everyone else),
//! and a host's link taken down (its connections hang, nothing is
//! refused).
//!
//! Everything carries the suite's prefix `wpt`: [`Net`] removes what it
//! made when dropped — also when the test fails or panics — and
//! [`Net::create`] first sweeps whatever a killed run left behind.
//! Needs root and iproute2 ([`root_or_skip`]).

use std::process::{Command, Stdio};

/// Every namespace, link and bridge of the suite starts with this.
pub const PREFIX: &str = "wpt";
const BRIDGE: &str = "wpt-br";
const SUBNET: &str = "10.213.0";

/// True when the suite can run (root, with `ip`). Otherwise says why and
/// returns false — unless `WEIR_E2E_REQUIRED=1` (CI), which makes it fail.
pub fn root_or_skip(suite: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if root && ip {
        return true;
    }
    let why = if root {
        "iproute2's `ip` is missing (scripts/setup.sh installs it)"
    } else {
        "it needs root (network namespaces)"
    };
    assert!(
        std::env::var("WEIR_E2E_REQUIRED").as_deref() != Ok("1"),
        "{suite}: {why}, and WEIR_E2E_REQUIRED=1"
    );
    eprintln!("{suite}: skipped: {why}");
    false
}

/// Runs `ip <args>`, panicking with its error output if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip <args>`, whatever happens (cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes every namespace and link of the suite (a run that was killed
/// before its guard could).
pub fn sweep() {
    let listed = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for line in listed(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(PREFIX) {
            ip_quiet(&["netns", "del", name]);
        }
    }
    for line in listed(&["-o", "link", "show"]).lines() {
        // "12: wpt3@if11: <...>"
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with(PREFIX) {
            ip_quiet(&["link", "del", name]);
        }
    }
}

/// One host: a namespace with an address on the suite's bridge.
pub struct Host {
    pub name: String,
    pub ns: String,
    pub addr: String,
    /// The root end of its link, on the bridge.
    veth: String,
}

impl Host {
    /// `program` to be run inside the host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }
}

/// The suite's network; removed on drop.
pub struct Net {
    pub hosts: Vec<Host>,
}

impl Net {
    /// A bridge and one host per name, `.11` upwards in order.
    pub fn create(names: &[&str]) -> Net {
        sweep();
        let mut net = Net { hosts: Vec::new() };
        ip(&["link", "add", BRIDGE, "type", "bridge"]);
        ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", BRIDGE]);
        ip(&["link", "set", BRIDGE, "up"]);
        for (i, name) in names.iter().enumerate() {
            let host = Host {
                name: name.to_string(),
                ns: format!("{PREFIX}-{name}"),
                addr: format!("{SUBNET}.{}", 11 + i),
                veth: format!("{PREFIX}{i}"),
            };
            let peer = format!("{}p", host.veth);
            ip(&["netns", "add", &host.ns]);
            // Pushed before anything can fail, so that drop removes it.
            net.hosts.push(host);
            let host = net.hosts.last().unwrap();
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
            ]);
            ip(&["link", "set", &host.veth, "master", BRIDGE, "up"]);
            ip(&["link", "set", &peer, "netns", &host.ns]);
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", host.ns.as_str()];
                all.extend_from_slice(args);
                ip(&all);
            };
            inside(&["link", "set", &peer, "name", "eth0"]);
            inside(&["addr", "add", &format!("{}/24", host.addr), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            inside(&["link", "set", "lo", "up"]);
        }
        net
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Blackhole routes between `a` and `b`, both ways: what each sends the
    /// other is dropped; both still reach every other host.
    pub fn cut(&self, a: &str, b: &str) {
        said(&format!("{a} cut from {b}"));
        self.blackhole("add", a, b);
    }

    pub fn heal(&self, a: &str, b: &str) {
        said(&format!("{a} healed to {b}"));
        self.blackhole("del", a, b);
    }

    fn blackhole(&self, op: &str, a: &str, b: &str) {
        let (a, b) = (self.host(a), self.host(b));
        for (from, to) in [(a, b), (b, a)] {
            let to = format!("{}/32", to.addr);
            ip(&["-n", &from.ns, "route", op, "blackhole", &to]);
        }
    }

    /// Takes the host's link down (its host off the network) or up again.
    pub fn link(&self, name: &str, up: bool) {
        said(&format!("{name}'s link {}", if up { "up" } else { "down" }));
        let host = self.host(name);
        ip(&["link", "set", &host.veth, if up { "up" } else { "down" }]);
    }
}

/// A fault, with the time the nodes' logs use, so that a run's output lines
/// up with them.
fn said(what: &str) {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    eprintln!("netns: {now} {what}");
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in &self.hosts {
            ip_quiet(&["link", "del", &host.veth]);
            ip_quiet(&["netns", "del", &host.ns]);
        }
        ip_quiet(&["link", "del", BRIDGE]);
    }
}
