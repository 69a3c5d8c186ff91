//! `docker-compose.yml`'s weir services: two edges and two producers built
//! from this `Dockerfile`, each running an installed binary with only the
//! `WEIR_*` variables it reads, pointed at every NATS node and at Redis,
//! healthy once `/readyz` answers.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value as Yaml;

use crate::common::compose::{
    accepted_env, compose_services, host_port, listen_key, mounts, scalar, service_env, setting,
    weir_role, words,
};
use crate::common::dockerfile::{runtime_env, workspace_bins};

#[test]
fn compose_runs_two_edges_and_two_producers_with_settings_the_binaries_read() {
    let (services, named) = compose_services();
    let names: BTreeSet<String> = services.keys().map(scalar).collect();
    let installed = workspace_bins();
    let image_env = runtime_env();
    let nats_nodes: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
        .map(|(n, _)| scalar(n))
        .collect();
    assert!(!nats_nodes.is_empty(), "no NATS service");
    let edge_env = accepted_env(&["edge"]);
    let producer_env = accepted_env(&["producer"]);
    let mut edges = BTreeMap::new(); // service → listen port
    let mut producers = BTreeMap::new(); // service → metrics port
    let mut node_ids = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for (name, svc) in &services {
        let name = scalar(name);
        for dep in match &svc["depends_on"] {
            Yaml::Mapping(m) => m.keys().map(scalar).collect(),
            Yaml::Sequence(s) => s.iter().map(scalar).collect(),
            _ => Vec::new(),
        } {
            assert!(names.contains(&dep), "{name} depends on unknown {dep}");
        }
        // Every bind mount exists, every volume is declared.
        mounts(&name, svc, &named);
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
        let role = weir_role(&name, svc).expect("a service built here runs weir");
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
        let setting = |k: &str| setting(&name, svc, &image_env, k);
        // Every NATS node on its client port, so that any one can be down.
        let mut listed = BTreeSet::new();
        for url in setting("WEIR_NATS_URL").split(',') {
            assert!(url.starts_with("nats://"), "{name}: WEIR_NATS_URL {url:?}");
            let (host, port) = host_port(url);
            assert!(
                nats_nodes.contains(&host),
                "{name}: WEIR_NATS_URL {url} names no NATS service ({nats_nodes:?})"
            );
            // The NATS nodes' client port (tests/compose/nats.rs).
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
        let listen_key = listen_key(role);
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
    // Redis on its default port, the one the URLs name.
    assert!(!words(&services["redis"]["command"]).contains(&"--port".to_owned()));
}
