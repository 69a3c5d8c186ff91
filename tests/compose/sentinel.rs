//! The `sentinel` profile: a replica of `redis` and three sentinels watching
//! it (`docker-compose.yml`), turned on with the URL weir finds them by
//! (`deploy/redis/sentinel.env`), from a config (`deploy/redis/sentinel.conf`)
//! that the real `redis-server --sentinel` runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_store::redis::RedisUrl;

use crate::common::compose::{compose_services, mounts, scalar, words};
use crate::common::files::text;
use crate::common::redis_ha::{cli, redis_server, wait_until};

const SENTINELS: [&str; 3] = ["sentinel1", "sentinel2", "sentinel3"];

fn sentinels() -> BTreeSet<String> {
    SENTINELS.map(String::from).into()
}

/// The words after `name` on its line of `deploy/redis/sentinel.conf`.
fn directive(conf: &str, name: &str) -> Vec<String> {
    let found = conf
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(name));
    let found = found.unwrap_or_else(|| panic!("sentinel.conf has no {name}"));
    found.split_whitespace().map(str::to_owned).collect()
}

/// The sentinels' port and the master's name, from sentinel.conf.
fn port_and_master(conf: &str) -> (u16, String) {
    let port = directive(conf, "port ")[0].parse().unwrap();
    (port, directive(conf, "sentinel monitor ")[0].clone())
}

#[test]
fn the_sentinel_profile_runs_a_replica_and_three_sentinels_from_sentinel_conf() {
    let (services, _) = compose_services();
    let in_profile: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| words(&s["profiles"]).contains(&"sentinel".to_owned()))
        .map(|(n, _)| scalar(n))
        .collect();
    let mut expected = sentinels();
    expected.insert("redis-replica".into());
    assert_eq!(in_profile, expected);
    assert!(
        services["redis"]["profiles"].is_null(),
        "redis is always on"
    );
    let replica = words(&services["redis-replica"]["command"]).join(" ");
    assert!(replica.contains("--replicaof redis 6379"), "{replica}");

    let (port, _) = port_and_master(&text("deploy/redis/sentinel.conf"));
    let volumes = SENTINELS.map(|s| format!("{s}-data")).into();
    for name in SENTINELS {
        let svc = &services[name];
        let mounted = mounts(name, svc, &volumes);
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
        for s in SENTINELS {
            let dep = &svc["depends_on"][s];
            assert_eq!(
                dep["condition"].as_str(),
                Some("service_healthy"),
                "{name:?}"
            );
            assert_eq!(dep["required"].as_bool(), Some(false), "{name:?} {s}");
        }
    }
}

/// The profile and the URL come together from one env file, whose URL
/// names every sentinel on their port and the master they watch (by a
/// majority).
#[test]
fn sentinel_env_turns_the_profile_on_with_a_url_naming_every_sentinel_and_the_master() {
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
    let (port, _) = port_and_master(&conf);
    let monitor = directive(&conf, "sentinel monitor ");
    assert_eq!(
        monitor[..3],
        [master.clone(), "redis".into(), "6379".into()]
    );
    let quorum: usize = monitor[3].parse().unwrap();
    assert!(
        quorum > SENTINELS.len() / 2,
        "quorum {quorum} is no majority"
    );
    assert_eq!(directive(&conf, "sentinel resolve-hostnames "), ["yes"]);
    let listed: BTreeSet<String> = hosts
        .iter()
        .map(|(h, p)| {
            assert_eq!(*p, port, "{h}: not the sentinels' port");
            h.clone()
        })
        .collect();
    assert_eq!(listed, sentinels(), "the URL names every sentinel");
}

/// Debian's redis-server takes the config as a sentinel (the compose
/// image's `redis:7` is the same major release), with `redis` and the
/// port pointed at a real master on free ports.
#[test]
fn sentinel_conf_runs_under_the_real_redis_server_and_watches_the_master() {
    use crate::common::{free_port, scratch, Proc};
    let conf = text("deploy/redis/sentinel.conf");
    let (port, master) = port_and_master(&conf);
    let dir = scratch("compose-sentinel");
    let master_port = free_port();
    let mut cmd = std::process::Command::new(redis_server());
    cmd.args([
        "--port",
        &master_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ]);
    let mut master_server = Proc::spawn_logged("redis", cmd, dir.join("redis.log"));
    master_server.wait_port(master_port);
    let sentinel_port = free_port();
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
    let mut cmd = std::process::Command::new(redis_server());
    cmd.arg(&path).arg("--sentinel");
    let mut sentinel = Proc::spawn_logged("sentinel", cmd, dir.join("sentinel.log"));
    sentinel.wait_port(sentinel_port);
    wait_until(
        "the sentinel does not watch the master",
        Duration::from_secs(10),
        || {
            let addr = cli(
                sentinel_port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &master],
            );
            addr.lines().nth(1) == Some(&master_port.to_string())
        },
    );
}
