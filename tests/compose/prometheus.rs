//! Prometheus in `docker-compose.yml`: its config (`dashboards/prometheus.yml`)
//! and rules mounted where its command looks, scraping every edge and
//! producer where they listen.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::compose::{compose_services, host_port, mounts, scalar, weir_nodes, words};
use crate::common::dockerfile::runtime_env;
use crate::common::files::{yaml, ALERTS, PROMETHEUS_YML};

#[test]
fn prometheus_scrapes_every_edge_and_producer_with_its_rules_mounted() {
    let (services, named) = compose_services();
    let (edges, producers) = weir_nodes(&services, &runtime_env());
    let edge_addrs: BTreeSet<String> = edges.iter().map(|(n, p)| format!("{n}:{p}")).collect();
    let prom = &services["prometheus"];
    let cmd = words(&prom["command"]);
    let config_path = cmd
        .iter()
        .find_map(|w| w.strip_prefix("--config.file="))
        .expect("--config.file")
        .to_owned();
    let prom_mounts = &mounts("prometheus", prom, &named);
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
}
