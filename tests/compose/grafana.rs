//! Grafana in `docker-compose.yml`: the provisioned data source
//! (`dashboards/grafana/provisioning/`) points at Prometheus, every
//! dashboard is mounted where the provider reads, anonymous viewers.

use crate::common::compose::{compose_services, host_port, mounts, scalar, service_env, words};
use crate::common::files::{yaml, DASHBOARDS};

/// The port Prometheus listens on in the stack.
fn prometheus_port(services: &serde_norway::Mapping) -> u16 {
    words(&services["prometheus"]["command"])
        .iter()
        .find_map(|w| w.strip_prefix("--web.listen-address="))
        .map_or(9090, |a| host_port(a).1)
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_every_dashboard() {
    let (services, named) = compose_services();
    let prom_port = prometheus_port(&services);
    let grafana = &mounts("grafana", &services["grafana"], &named);
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
