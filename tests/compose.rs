//! `docker-compose.yml`, the `Dockerfile` and `.dockerignore`, nginx,
//! Prometheus, Grafana and the NATS cluster's configs (`deploy/nats/`,
//! checked by the pinned `nats-server -t`) agree with each other and with
//! what the binaries accept. There is no Docker engine where weir is
//! developed, so the stack is checked by construction, with the real tools
//! that do run; `tests/compose_nats.rs` runs the NATS configs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::compose::*;
use common::dockerfile::*;
use common::files::*;
use common::nats_conf::*;
use serde_json::Value;
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
        "deploy/nats/nats1.conf",
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
    let (nats_nodes, nats_port) = nats_cluster(services, &named);
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
        // Every NATS node on its client port, so that any one can be down.
        let mut listed = BTreeSet::new();
        for url in setting("WEIR_NATS_URL").split(',') {
            assert!(url.starts_with("nats://"), "{name}: WEIR_NATS_URL {url:?}");
            let (host, port) = host_port(url);
            assert!(
                nats_nodes.contains(&host),
                "{name}: WEIR_NATS_URL {url} names no NATS service ({nats_nodes:?})"
            );
            assert_eq!(port, nats_port, "{name}: WEIR_NATS_URL {url} port");
            assert_eq!(port, 4222, "{name}: WEIR_NATS_URL {url} port");
            assert!(
                listed.insert(host),
                "{name}: WEIR_NATS_URL lists {url} twice"
            );
        }
        assert_eq!(listed, nats_nodes, "{name}: WEIR_NATS_URL leaves out nodes");
        let replicas = setting("WEIR_REPLICAS");
        assert_eq!(
            replicas.parse::<usize>().ok(),
            Some(nats_nodes.len()),
            "{name}: WEIR_REPLICAS {replicas:?}: one replica per NATS node"
        );
        for dep in nats_nodes.iter().map(String::as_str).chain(["redis"]) {
            assert_eq!(
                svc["depends_on"][dep]["condition"].as_str(),
                Some("service_healthy"),
                "{name}: does not wait for {dep} to be healthy"
            );
        }
        let (host, port) = host_port(&setting("WEIR_REDIS_URL"));
        assert_eq!(host, "redis", "{name}: WEIR_REDIS_URL");
        assert!(
            names.contains(&host),
            "{name}: WEIR_REDIS_URL points at no service"
        );
        assert_eq!(port, 6379, "{name}: WEIR_REDIS_URL port");
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
            assert!(
                secret
                    .split(',')
                    .all(|s| s.len() >= weir_protocol::MIN_SECRET_BYTES),
                "{name}: a secret of WEIR_SECRET is under 32 bytes"
            );
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

    // Redis on its default port (NATS: nats_cluster).
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

/// The NATS services: three JetStream nodes on the pinned release
/// (`scripts/nats-version`), each run from its own config file, which that
/// release's `nats-server -t` accepts, with its store on its own named
/// volume, routed to the other two, stopped in lame duck mode. Returns the
/// nodes and their client port.
fn nats_cluster(
    services: &serde_norway::Mapping,
    named: &BTreeSet<String>,
) -> (BTreeSet<String>, u16) {
    let image = format!("nats:{}-alpine", text("scripts/nats-version").trim());
    let nodes: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
        .map(|(n, _)| scalar(n))
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["nats1", "nats2", "nats3"].map(String::from)),
        "a 3-node NATS cluster"
    );
    let mut client_ports = BTreeSet::new();
    let mut cluster_ports = BTreeMap::new(); // node → cluster port
    let mut routes = BTreeMap::new(); // node → (host, port) it routes to
    let mut volumes = BTreeSet::new();
    let mut common = BTreeSet::new(); // each config without server_name and routes
    for node in &nodes {
        let svc = &services[node.as_str()];
        assert_eq!(
            svc["image"].as_str(),
            Some(image.as_str()),
            "{node}: not the pinned nats-server (scripts/nats-version)"
        );
        // Everything is in the config file, which the pinned server accepts.
        let rel = nats_config_file(node, svc, named);
        if let Err(e) = nats_server_accepts(&root().join(&rel)) {
            panic!("{node}: nats-server -t -c {rel}:\n{e}");
        }
        let mut conf = read_nats_conf(&text(&rel));
        let at = |k: &str| -> String {
            conf.pointer(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{rel}: no {k}"))
                .to_owned()
        };
        assert_eq!(at("/server_name"), *node, "{rel}: server_name");
        client_ports.insert(
            conf.get("port")
                .map_or(4222, |p| p.as_str().unwrap().parse::<u16>().unwrap()),
        );
        let http_port = at("/http_port");
        let health = words(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains("wget")
                && health.contains(&format!("http://127.0.0.1:{http_port}/healthz")),
            "{node}: healthcheck {health:?} does not probe /healthz on {http_port} \
             (the alpine image has busybox wget, no curl)"
        );
        // JetStream, its store on a named volume of this node only.
        let store = at("/jetstream/store_dir");
        assert!(conf["jetstream"]
            .get("enabled")
            .is_none_or(|e| e != "false"));
        let volume = svc["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(scalar)
            .find_map(|v| {
                let (src, dst) = v.split_once(':')?;
                (named.contains(src) && dst.split(':').next() == Some(&store))
                    .then(|| src.to_owned())
            })
            .unwrap_or_else(|| {
                panic!("{node}: the JetStream store {store} is not on a named volume")
            });
        assert!(volumes.insert(volume.clone()), "{node}: {volume} is shared");
        // One cluster; routes to the other nodes.
        assert!(!at("/cluster/name").is_empty());
        cluster_ports.insert(node.clone(), host_port(&at("/cluster/listen")).1);
        let to: BTreeSet<(String, u16)> = conf
            .pointer("/cluster/routes")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{rel}: no cluster routes"))
            .iter()
            .map(|r| {
                let r = r.as_str().unwrap();
                assert!(
                    r.starts_with("nats://") || r.starts_with("nats-route://"),
                    "{rel}: route {r}"
                );
                host_port(r)
            })
            .collect();
        routes.insert(node.clone(), to);
        // Planned restarts: lame duck mode, within compose's grace period.
        let ldm = |k: &str| humantime::parse_duration(&at(k)).unwrap();
        let (grace, duration) = (ldm("/lame_duck_grace_period"), ldm("/lame_duck_duration"));
        assert!(
            grace < duration && duration >= Duration::from_secs(30),
            "{rel}: lame duck grace {grace:?}, duration {duration:?}"
        );
        assert_eq!(
            svc["stop_signal"].as_str(),
            Some("SIGUSR2"),
            "{node}: stop in lame duck mode"
        );
        let stop = svc["stop_grace_period"]
            .as_str()
            .unwrap_or_else(|| panic!("{node}: no stop_grace_period (compose's is 10 s)"));
        let stop = humantime::parse_duration(stop).unwrap();
        assert!(
            stop > grace + duration,
            "{node}: stop_grace_period {stop:?} cuts lame duck mode ({grace:?} + {duration:?})"
        );
        // A node is healthy only once the cluster has a quorum: no node may
        // wait for another.
        for dep in depends_on(svc) {
            assert!(!nodes.contains(&dep), "{node} waits for {dep}");
        }
        let m = conf.as_object_mut().unwrap();
        m.remove("server_name");
        m["cluster"].as_object_mut().unwrap().remove("routes");
        common.insert(conf.to_string());
    }
    assert_eq!(
        common.len(),
        1,
        "the NATS configs differ in more than server_name and routes"
    );
    for (node, to) in &routes {
        let others: BTreeSet<(String, u16)> = cluster_ports
            .iter()
            .filter(|(n, _)| *n != node)
            .map(|(n, p)| (n.clone(), *p))
            .collect();
        assert_eq!(
            *to, others,
            "{node}: routes to the other nodes' cluster ports"
        );
    }
    assert_eq!(client_ports.len(), 1, "NATS client ports {client_ports:?}");
    (nodes, client_ports.pop_first().unwrap())
}

/// The `sentinel` profile: a replica of `redis` and three sentinels
/// watching it, which weir finds through `deploy/redis/sentinel.env`'s URL;
/// the sentinels' config is run by the real `redis-server --sentinel`.
#[test]
fn the_sentinel_profile_runs_a_replica_and_three_sentinels_that_weir_finds() {
    use weir_store::redis::RedisUrl;
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let in_profile: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| words(&s["profiles"]).contains(&"sentinel".to_owned()))
        .map(|(n, _)| scalar(n))
        .collect();
    let sentinels: BTreeSet<String> = ["sentinel1", "sentinel2", "sentinel3"]
        .map(String::from)
        .into();
    let mut expected = sentinels.clone();
    expected.insert("redis-replica".into());
    assert_eq!(in_profile, expected);
    assert!(
        services["redis"]["profiles"].is_null(),
        "redis is always on"
    );
    let replica = words(&services["redis-replica"]["command"]).join(" ");
    assert!(replica.contains("--replicaof redis 6379"), "{replica}");

    // The profile and the URL come together from one env file.
    let env: BTreeMap<String, String> = text("deploy/redis/sentinel.env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(env["COMPOSE_PROFILES"], "sentinel");
    let RedisUrl::Sentinel {
        sentinels: hosts,
        master,
        ..
    } = RedisUrl::parse(&env["WEIR_REDIS_URL"]).unwrap()
    else {
        panic!("sentinel.env's WEIR_REDIS_URL is not a Sentinel URL")
    };
    let conf = text("deploy/redis/sentinel.conf");
    let directive = |name: &str| -> Vec<String> {
        let found = conf
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(name));
        let found = found.unwrap_or_else(|| panic!("sentinel.conf has no {name}"));
        found.split_whitespace().map(str::to_owned).collect()
    };
    let port: u16 = directive("port ")[0].parse().unwrap();
    let monitor = directive("sentinel monitor ");
    assert_eq!(
        monitor[..3],
        [master.clone(), "redis".into(), "6379".into()]
    );
    let quorum: usize = monitor[3].parse().unwrap();
    assert!(
        quorum > sentinels.len() / 2,
        "quorum {quorum} is no majority"
    );
    assert_eq!(directive("sentinel resolve-hostnames "), ["yes"]);
    let listed: BTreeSet<String> = hosts
        .iter()
        .map(|(h, p)| {
            assert_eq!(*p, port, "{h}: not the sentinels' port");
            h.clone()
        })
        .collect();
    assert_eq!(listed, sentinels, "the URL names every sentinel");

    for name in &sentinels {
        let svc = &services[name.as_str()];
        let mounted = mounts(
            name,
            svc,
            &BTreeSet::from([
                "sentinel1-data".into(),
                "sentinel2-data".into(),
                "sentinel3-data".into(),
            ]),
        );
        let cmd = words(&svc["command"]).join(" ");
        let (at, _) = mounted
            .iter()
            .find(|(_, src)| *src == "deploy/redis/sentinel.conf")
            .expect("sentinel.conf mounted");
        assert!(
            cmd.contains(&format!("cp {at} /data/sentinel.conf"))
                && cmd.ends_with("redis-server /data/sentinel.conf --sentinel"),
            "{name}: {cmd}"
        );
        let health = words(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!("-p {port} ping")),
            "{name}: {health}"
        );
    }
    // Every weir node reads the URL from the env file, and waits for the
    // sentinels when they run.
    for (name, svc) in services.iter().filter(|(_, s)| !s["build"].is_null()) {
        let raw = &svc["environment"]["WEIR_REDIS_URL"];
        assert_eq!(
            raw.as_str(),
            Some("${WEIR_REDIS_URL:-redis://redis:6379}"),
            "{name:?}"
        );
        for s in &sentinels {
            let dep = &svc["depends_on"][s.as_str()];
            assert_eq!(
                dep["condition"].as_str(),
                Some("service_healthy"),
                "{name:?}"
            );
            assert_eq!(dep["required"].as_bool(), Some(false), "{name:?} {s}");
        }
    }
    sentinel_conf_runs(&conf, port, &master);
}

/// Debian's redis-server takes the config as a sentinel (the compose
/// image's `redis:7` is the same major release), with `redis` and the
/// port pointed at a real master on free ports.
fn sentinel_conf_runs(conf: &str, port: u16, master: &str) {
    use common::redis_ha::{cli, wait_until};
    let dir = common::scratch("compose-sentinel");
    let master_port = common::free_port();
    let mut cmd = std::process::Command::new(common::redis_ha::redis_server());
    cmd.args([
        "--port",
        &master_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ]);
    let _master = common::Proc::spawn_logged("redis", cmd, dir.join("redis.log"));
    common::wait_port(master_port, "redis-server");
    let sentinel_port = common::free_port();
    let local = conf
        .replace(
            &format!("port {port}"),
            &format!("port {sentinel_port}\nbind 127.0.0.1"),
        )
        .replace(
            &format!("{master} redis 6379"),
            &format!("{master} 127.0.0.1 {master_port}"),
        );
    let path = dir.join("sentinel.conf");
    std::fs::write(&path, local).unwrap();
    let mut cmd = std::process::Command::new(common::redis_ha::redis_server());
    cmd.arg(&path).arg("--sentinel");
    let _sentinel = common::Proc::spawn_logged("sentinel", cmd, dir.join("sentinel.log"));
    common::wait_port(sentinel_port, "redis-sentinel");
    wait_until(
        "the sentinel does not watch the master",
        Duration::from_secs(10),
        || {
            let addr = cli(
                sentinel_port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", master],
            );
            addr.lines().nth(1) == Some(&master_port.to_string())
        },
    );
}
