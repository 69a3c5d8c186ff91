//! `docker-compose.yml`, the `Dockerfile` and `.dockerignore`, nginx,
//! Prometheus and Grafana agree with each other and with what the binaries
//! accept. There is no Docker engine where weir is developed, so the stack
//! is checked by construction, with the real tools that do run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::compose::*;
use common::dockerfile::*;
use common::files::*;
use serde_norway::Value as Yaml;

#[test]
fn the_compose_stack_matches_the_binaries_and_the_configs() {
    // --- Dockerfile: builds what the tests run, installs it non-root.
    let stages = dockerfile();
    assert!(stages.len() >= 2, "multi-stage");
    let (build, runtime) = (&stages[0], stages.last().unwrap());
    assert_eq!(build.from, "rust:1.95-bookworm");
    assert_eq!(runtime.from, "debian:bookworm-slim");
    let build_name = build.name.clone().expect("the build stage is named");
    let cargo = build
        .steps
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .expect("the build stage runs cargo build")
        .1
        .clone();
    let cargo_flags: BTreeSet<&str> = cargo
        .split("cargo build")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let test_sh = text("scripts/test.sh");
    let tests_build = test_sh
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("scripts/test.sh builds the binaries");
    for flag in tests_build.split_whitespace().skip(2) {
        assert!(
            cargo_flags.contains(flag),
            "the Dockerfile's cargo build lacks {flag} of scripts/test.sh's {tests_build:?}"
        );
    }
    for flag in ["--release", "--locked", "--bins", "--workspace"] {
        assert!(cargo_flags.contains(flag), "cargo build without {flag}");
    }
    let bins = workspace_bins();
    let exe = Path::new(env!("CARGO_BIN_EXE_weir")).file_name().unwrap();
    assert!(bins.contains(exe.to_str().unwrap()));
    let copied: BTreeSet<String> = cargo
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        copied, bins,
        "the build stage copies out every workspace binary"
    );
    let mut installed = BTreeSet::new();
    for (op, args) in &runtime.steps {
        if op == "COPY" && args.contains(&format!("--from={build_name}")) {
            let w: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (dest, srcs) = w.split_last().unwrap();
            assert_eq!(*dest, "/usr/local/bin/", "binaries go on PATH");
            installed.extend(
                srcs.iter()
                    .map(|s| s.rsplit('/').next().unwrap().to_owned()),
            );
        }
    }
    assert_eq!(
        installed, bins,
        "the runtime image installs every workspace binary"
    );
    let runtime_run: String = runtime
        .steps
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    for pkg in ["ca-certificates", "curl"] {
        assert!(runtime_run.contains(pkg), "the runtime image lacks {pkg}");
    }
    let user = runtime
        .steps
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .expect("the runtime image sets a USER")
        .1
        .clone();
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "runs as {user}"
    );
    let mut image_env = BTreeMap::new();
    for (op, args) in &runtime.steps {
        if op == "ENV" {
            for kv in args.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("ENV K=V");
                image_env.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    // --- .dockerignore keeps what the build needs.
    let ignore: Vec<String> = text(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    let manifest = text("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    for m in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        needed.push(format!("{m}/Cargo.toml"));
        needed.push(format!("{m}/src/lib.rs"));
    }
    // Files the sources embed (include_str!/include_bytes!), anywhere in
    // the sources of the binaries and libraries.
    let mut dirs: Vec<PathBuf> = ["src", "services", "libs"]
        .iter()
        .map(|d| root().join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if path.is_dir() {
                if !["target", "node_modules", "tests", "benches"].contains(&name) {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let includes = ["include_str!(\"", "include_bytes!(\""]
                .into_iter()
                .flat_map(|m| src.split(m).skip(1));
            for part in includes {
                let rel = part.split('"').next().unwrap();
                let file = path
                    .parent()
                    .unwrap()
                    .join(rel)
                    .canonicalize()
                    .unwrap_or_else(|_| panic!("{} includes missing {rel}", path.display()));
                let rel = file.strip_prefix(root().canonicalize().unwrap()).unwrap();
                needed.push(rel.to_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        needed.iter().any(|n| n == "clients/js/weir-client.js"),
        "the edge embeds the JS client: {needed:?}"
    );
    for n in &needed {
        assert!(root().join(n).exists(), "{n} does not exist");
        assert!(
            !docker_ignored(n, &ignore),
            ".dockerignore leaves out {n}, which the build needs"
        );
    }
    for n in [
        "target/debug/weir",
        "clients/js/node_modules/x",
        ".git/HEAD",
    ] {
        assert!(docker_ignored(n, &ignore), ".dockerignore sends {n}");
    }

    // --- docker-compose.yml
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(scalar).collect();
    let named: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(scalar).collect())
        .unwrap_or_default();
    let edge_env = accepted_env(&["edge"]);
    let producer_env = accepted_env(&["producer"]);
    let mut edges = BTreeMap::new(); // service → listen port
    let mut producers = BTreeMap::new(); // service → metrics port
    let mut node_ids = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut all_mounts = BTreeMap::new();
    for (name, svc) in services {
        let name = scalar(name);
        for dep in match &svc["depends_on"] {
            Yaml::Mapping(m) => m.keys().map(scalar).collect(),
            Yaml::Sequence(s) => s.iter().map(scalar).collect(),
            _ => Vec::new(),
        } {
            assert!(names.contains(&dep), "{name} depends on unknown {dep}");
        }
        all_mounts.insert(name.clone(), mounts(&name, svc, &named));
        if svc["build"].is_null() {
            assert!(svc["image"].as_str().is_some(), "{name}: no image");
            continue;
        }
        // One of ours: built from this Dockerfile, running an installed binary.
        assert_eq!(
            svc["build"]["context"].as_str(),
            Some("."),
            "{name}: build context"
        );
        assert_eq!(
            svc["build"]["dockerfile"].as_str(),
            Some("Dockerfile"),
            "{name}: dockerfile"
        );
        let cmd = words(&svc["command"]);
        let bin = cmd
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"))
            .clone();
        assert!(
            installed.contains(&bin),
            "{name}: {bin} is not installed by the Dockerfile"
        );
        let role = match (bin.as_str(), cmd.get(1).map(String::as_str)) {
            ("weir-edge", None) | ("weir", Some("edge")) => "edge",
            ("weir-producer", None) | ("weir", Some("producer")) => "producer",
            other => panic!("{name}: unexpected command {other:?}"),
        };
        let env = service_env(svc);
        let accepted = if role == "edge" {
            &edge_env
        } else {
            &producer_env
        };
        for k in env.keys().filter(|k| k.starts_with("WEIR_")) {
            assert!(
                accepted.contains(k),
                "{name}: weir {role} does not read {k} (it reads {accepted:?})"
            );
        }
        let setting = |k: &str| {
            env.get(k)
                .or(image_env.get(k))
                .unwrap_or_else(|| panic!("{name}: {k} is not set"))
                .clone()
        };
        for (k, service) in [("WEIR_NATS_URL", "nats"), ("WEIR_REDIS_URL", "redis")] {
            let (host, port) = host_port(&setting(k));
            assert_eq!(host, service, "{name}: {k}");
            assert!(names.contains(&host), "{name}: {k} points at no service");
            let default = if service == "nats" { 4222 } else { 6379 };
            assert_eq!(port, default, "{name}: {k} port");
        }
        assert!(
            node_ids.insert(setting("WEIR_NODE_ID")),
            "{name}: WEIR_NODE_ID reused"
        );
        let listen_key = if role == "edge" {
            "WEIR_LISTEN"
        } else {
            "WEIR_METRICS_LISTEN"
        };
        let (host, port) = host_port(&setting(listen_key));
        assert_eq!(
            host, "0.0.0.0",
            "{name}: {listen_key} must be reachable from other containers"
        );
        let health = words(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains("curl") && health.contains(&format!("http://127.0.0.1:{port}/readyz")),
            "{name}: healthcheck {health:?} does not probe /readyz on {port}"
        );
        if role == "edge" {
            let secret = setting("WEIR_SECRET");
            assert!(secret.len() >= 8, "{name}: WEIR_SECRET under 8 bytes");
            secrets.insert(secret);
            edges.insert(name.clone(), port);
            let public = setting("WEIR_PUBLIC_URL");
            assert_eq!(
                host_port(&public),
                ("localhost".to_owned(), 8080),
                "{name}: WEIR_PUBLIC_URL"
            );
        } else {
            producers.insert(name.clone(), port);
        }
    }
    assert_eq!(edges.len(), 2, "two edges: {edges:?}");
    assert_eq!(producers.len(), 2, "two producers: {producers:?}");
    assert_eq!(secrets.len(), 1, "every edge signs with the same secret");

    // NATS with JetStream on a volume; Redis on its default port.
    let nats = words(&services["nats"]["command"]);
    assert!(
        nats.contains(&"-js".to_owned()),
        "NATS without JetStream: {nats:?}"
    );
    let sd = nats.iter().position(|w| w == "-sd").expect("nats -sd");
    let data = &nats[sd + 1];
    assert!(
        services["nats"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| {
                let v = scalar(v);
                named.contains(v.split(':').next().unwrap()) && v.split(':').nth(1) == Some(data)
            }),
        "the JetStream store {data} is not on a named volume"
    );
    assert!(
        !nats.iter().any(|w| w == "-p" || w == "--port"),
        "NATS on another port"
    );
    assert!(!words(&services["redis"]["command"]).contains(&"--port".to_owned()));

    // The load balancer: nginx on the published port, in front of every edge.
    let lb = services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nginx")))
        .map(|(n, _)| scalar(n))
        .expect("an nginx service");
    let conf_rel = all_mounts[&lb]
        .get("/etc/nginx/nginx.conf")
        .expect("nginx.conf mounted at /etc/nginx/nginx.conf")
        .clone();
    assert_eq!(conf_rel, "dashboards/nginx/nginx.conf");
    let conf = text(&conf_rel);
    let directive = |name: &str| -> Vec<String> {
        conf.lines()
            .map(|l| l.split('#').next().unwrap().trim())
            .filter_map(|l| l.strip_prefix(name).filter(|r| r.starts_with(' ')))
            .map(|r| r.trim().trim_end_matches(';').trim().to_owned())
            .collect()
    };
    let upstream_name = directive("proxy_pass")[0]
        .strip_prefix("http://")
        .expect("proxy_pass http://upstream")
        .to_owned();
    let block = conf
        .split(&format!("upstream {upstream_name} {{"))
        .nth(1)
        .expect("the upstream block")
        .split('}')
        .next()
        .unwrap();
    let upstream: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|s| {
            s.split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(';')
                .to_owned()
        })
        .collect();
    let edge_addrs: BTreeSet<String> = edges.iter().map(|(n, p)| format!("{n}:{p}")).collect();
    assert_eq!(upstream, edge_addrs, "nginx upstream vs the edges");
    let listen: u16 = directive("listen")[0].parse().unwrap();
    let ports: Vec<String> = services[lb.as_str()]["ports"]
        .as_sequence()
        .expect("the load balancer publishes a port")
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(ports, [format!("8080:{listen}")], "one public port, 8080");
    for (d, want) in [
        ("proxy_http_version", "1.1"),
        ("proxy_set_header Upgrade", "$http_upgrade"),
        ("proxy_set_header Connection", "$connection_upgrade"),
        ("proxy_buffering", "off"),
    ] {
        assert_eq!(directive(d), [want], "nginx: {d}");
    }
    assert!(
        conf.contains("map $http_upgrade $connection_upgrade"),
        "nginx: the upgrade map"
    );
    for d in ["proxy_read_timeout", "proxy_send_timeout"] {
        let v = &directive(d)[0];
        let v = if v.chars().all(|c| c.is_ascii_digit()) {
            format!("{v}s")
        } else {
            v.clone()
        };
        let t = humantime::parse_duration(&v).unwrap();
        assert!(
            t >= Duration::from_secs(600),
            "nginx: {d} {v} would cut long streams"
        );
    }

    // Prometheus: its config and rules mounted where its command looks,
    // scraping every edge and producer where they listen.
    let prom = &services["prometheus"];
    let cmd = words(&prom["command"]);
    let config_path = cmd
        .iter()
        .find_map(|w| w.strip_prefix("--config.file="))
        .expect("--config.file")
        .to_owned();
    let prom_mounts = &all_mounts["prometheus"];
    assert_eq!(
        prom_mounts.get(&config_path).map(String::as_str),
        Some(PROMETHEUS_YML)
    );
    let cfg = yaml(PROMETHEUS_YML);
    let config_dir = Path::new(&config_path).parent().unwrap();
    for r in cfg["rule_files"].as_sequence().unwrap() {
        let in_container = config_dir.join(r.as_str().unwrap());
        assert_eq!(
            prom_mounts
                .get(in_container.to_str().unwrap())
                .map(String::as_str),
            Some(ALERTS),
            "rule file {} is not mounted",
            in_container.display()
        );
    }
    let job_targets = |job: &str| -> BTreeSet<String> {
        cfg["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == job)
            .unwrap_or_else(|| panic!("no job {job}"))["static_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|s| s["targets"].as_sequence().unwrap().iter().map(scalar))
            .collect()
    };
    assert_eq!(
        job_targets("weir-edge"),
        edge_addrs,
        "Prometheus edge targets"
    );
    let producer_addrs: BTreeSet<String> =
        producers.iter().map(|(n, p)| format!("{n}:{p}")).collect();
    assert_eq!(
        job_targets("weir-producer"),
        producer_addrs,
        "Prometheus producer targets"
    );
    let prom_port = cmd
        .iter()
        .find_map(|w| w.strip_prefix("--web.listen-address="))
        .map_or(9090, |a| host_port(a).1);
    let prom_ports: Vec<String> = prom["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(prom_ports, [format!("9090:{prom_port}")]);

    // Grafana: provisioned data source and dashboards where it reads them.
    let grafana = &all_mounts["grafana"];
    let ds_rel = "dashboards/grafana/provisioning/datasources";
    let db_rel = "dashboards/grafana/provisioning/dashboards";
    assert_eq!(
        grafana
            .get("/etc/grafana/provisioning/datasources")
            .map(String::as_str),
        Some(ds_rel)
    );
    assert_eq!(
        grafana
            .get("/etc/grafana/provisioning/dashboards")
            .map(String::as_str),
        Some(db_rel)
    );
    let ds = yaml(&format!("{ds_rel}/prometheus.yml"));
    let (host, port) = host_port(ds["datasources"][0]["url"].as_str().unwrap());
    assert_eq!(
        (host.as_str(), port),
        ("prometheus", prom_port),
        "Grafana's data source URL"
    );
    let providers = yaml(&format!("{db_rel}/weir.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    for d in DASHBOARDS {
        let file = d.rsplit('/').next().unwrap();
        assert_eq!(
            grafana.get(&format!("{path}/{file}")).map(String::as_str),
            Some(d),
            "{file} is not mounted into {path}"
        );
    }
    let genv = service_env(&services["grafana"]);
    assert_eq!(
        genv.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        genv.get("GF_AUTH_ANONYMOUS_ORG_ROLE").map(String::as_str),
        Some("Viewer")
    );
    let home = &genv["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"];
    assert_eq!(grafana.get(home).map(String::as_str), Some(DASHBOARDS[0]));
    let gports: Vec<String> = services["grafana"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(gports, ["3000:3000"]);
}
