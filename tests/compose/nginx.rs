//! `dashboards/nginx/nginx.conf`: the load balancer on the published port,
//! in front of every edge, with WebSocket upgrades, no buffering and
//! timeouts that do not cut long streams.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::compose::{compose_services, mounts, scalar, weir_nodes};
use crate::common::dockerfile::runtime_env;
use crate::common::files::text;

#[test]
fn nginx_balances_every_edge_on_port_8080_with_upgrades_and_no_buffering() {
    let (services, named) = compose_services();
    let (edges, _) = weir_nodes(&services, &runtime_env());
    let lb = services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nginx")))
        .map(|(n, _)| scalar(n))
        .expect("an nginx service");
    let conf_rel = mounts(&lb, &services[lb.as_str()], &named)
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
}
