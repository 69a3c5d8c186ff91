//! `docker-compose.yml` read the way compose reads it: scalars,
//! environments with `${VAR:-default}`, commands, `host:port` URLs and bind
//! mounts; and the `WEIR_*` variables the binaries accept.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_norway::Value as Yaml;

use super::files::root;

/// `${VAR:-default}` → default; plain text as is.
fn interpolate(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unclosed ${") + i;
        let inner = &rest[i + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} needs a default (${{VAR:-default}})"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

pub fn service_env(svc: &Yaml) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Yaml::Null => BTreeMap::new(),
        Yaml::Mapping(m) => m
            .iter()
            .map(|(k, v)| (scalar(k), interpolate(&scalar(v))))
            .collect(),
        Yaml::Sequence(s) => s
            .iter()
            .map(|kv| {
                let kv = scalar(kv);
                let (k, v) = kv.split_once('=').expect("KEY=value");
                (k.to_owned(), interpolate(v))
            })
            .collect(),
        other => panic!("environment: {other:?}"),
    }
}

pub fn words(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::Null => Vec::new(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Yaml::Sequence(s) => s.iter().map(scalar).collect(),
        other => panic!("not a command: {other:?}"),
    }
}

/// The repository file a NATS service runs from: its command is
/// `nats-server --config <file>`, the file mounted there.
pub fn nats_config_file(name: &str, svc: &Yaml, named: &BTreeSet<String>) -> String {
    let cmd = words(&svc["command"]);
    assert!(
        cmd.len() == 3 && cmd[0] == "nats-server" && ["--config", "-c"].contains(&&*cmd[1]),
        "{name}: command {cmd:?} is not `nats-server --config <file>`"
    );
    mounts(name, svc, named)
        .get(&cmd[2])
        .unwrap_or_else(|| panic!("{name}: {} is not mounted", cmd[2]))
        .clone()
}

/// The services a service waits for (`depends_on` as a list or a map).
pub fn depends_on(svc: &Yaml) -> Vec<String> {
    match &svc["depends_on"] {
        Yaml::Mapping(m) => m.keys().map(scalar).collect(),
        Yaml::Sequence(s) => s.iter().map(scalar).collect(),
        Yaml::Null => Vec::new(),
        other => panic!("depends_on: {other:?}"),
    }
}

/// `(host, port)` of `scheme://host:port/…` or `host:port`.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} has no port"));
    (host.to_owned(), port.parse().unwrap())
}

/// Bind mounts of a service: container path → repo-relative source.
pub fn mounts(name: &str, svc: &Yaml, named: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in svc["volumes"].as_sequence().into_iter().flatten() {
        let v = scalar(v);
        let mut parts = v.split(':');
        let (src, dst) = (parts.next().unwrap(), parts.next().expect("src:dst"));
        if let Some(rel) = src.strip_prefix("./") {
            assert!(root().join(rel).exists(), "{name}: mounts missing {src}");
            out.insert(dst.to_owned(), rel.to_owned());
        } else {
            assert!(named.contains(src), "{name}: volume {src} is not declared");
        }
    }
    out
}

/// `WEIR_*` variables a binary reads, from its `--help` (`[env: WEIR_…=]`).
pub fn accepted_env(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "weir {args:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let env: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|s| s.split(['=', ']']).next().unwrap().to_owned())
        .collect();
    assert!(env.len() > 5, "weir {args:?} --help shows no env: {help}");
    env
}

/// `docker-compose.yml`'s services and its named volumes.
pub fn compose_services() -> (serde_norway::Mapping, BTreeSet<String>) {
    let compose = super::files::yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services").clone();
    let named = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(scalar).collect())
        .unwrap_or_default();
    (services, named)
}

/// What a service built from this repository runs: `edge` or `producer`
/// (from its command); `None` for a service that runs someone's image.
pub fn weir_role(name: &str, svc: &Yaml) -> Option<&'static str> {
    if svc["build"].is_null() {
        return None;
    }
    let cmd = words(&svc["command"]);
    match (
        cmd.first().map(String::as_str),
        cmd.get(1).map(String::as_str),
    ) {
        (Some("weir-edge"), None) | (Some("weir"), Some("edge")) => Some("edge"),
        (Some("weir-producer"), None) | (Some("weir"), Some("producer")) => Some("producer"),
        other => panic!("{name}: unexpected command {other:?}"),
    }
}

/// The variable a weir node's HTTP port is set by: the edge's API, the
/// producer's metrics.
pub fn listen_key(role: &str) -> &'static str {
    if role == "edge" {
        "WEIR_LISTEN"
    } else {
        "WEIR_METRICS_LISTEN"
    }
}

/// A weir node's setting: its service's environment, else the image's.
pub fn setting(name: &str, svc: &Yaml, image_env: &BTreeMap<String, String>, k: &str) -> String {
    service_env(svc)
        .get(k)
        .or(image_env.get(k))
        .unwrap_or_else(|| panic!("{name}: {k} is not set"))
        .clone()
}

/// The edges and the producers of the stack: service → the port it listens
/// on (`image_env`: the runtime image's environment, which a service's own
/// overrides).
pub fn weir_nodes(
    services: &serde_norway::Mapping,
    image_env: &BTreeMap<String, String>,
) -> (BTreeMap<String, u16>, BTreeMap<String, u16>) {
    let (mut edges, mut producers) = (BTreeMap::new(), BTreeMap::new());
    for (name, svc) in services {
        let name = scalar(name);
        let Some(role) = weir_role(&name, svc) else {
            continue;
        };
        let port = host_port(&setting(&name, svc, image_env, listen_key(role))).1;
        match role {
            "edge" => edges.insert(name, port),
            _ => producers.insert(name, port),
        };
    }
    (edges, producers)
}
