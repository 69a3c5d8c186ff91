//! The NATS services of `docker-compose.yml` and their configs in
//! `deploy/nats/`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::common::compose::{
    compose_services, depends_on, host_port, nats_config_file, scalar, words,
};
use crate::common::files::{root, text};
use crate::common::nats_conf::{nats_server_accepts, read_nats_conf};

/// The NATS services: three JetStream nodes on the pinned release
/// (`scripts/nats-version`), each run from its own config file, which that
/// release's `nats-server -t` accepts, with its store on its own named
/// volume, routed to the other two, stopped in lame duck mode, all on one
/// client port.
#[test]
fn compose_runs_a_3_node_nats_cluster_from_configs_the_pinned_server_accepts() {
    let (services, named) = compose_services();
    let named = &named;
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
    assert_eq!(
        client_ports,
        BTreeSet::from([4222]),
        "every NATS node on the client port the weir services use"
    );
}
