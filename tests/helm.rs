//! The Helm chart (`deploy/helm/weir`) rendered and linted by a real Helm
//! (v4's library, PyPI `helm-python-sdk`), every object validated by
//! `kubernetes-validate --strict`, and what it configures checked against
//! the binaries, the dashboards and the alert rules. `tests/helm_pods.rs`
//! runs the rendered pods. Needs `scripts/setup.sh` (`.tools/helm`).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::compose::accepted_env;
use common::files::*;
use common::helm::*;
use common::prometheus::PROMTOOL;
use serde_json::{json, Value};

/// The value sets every check runs on: the defaults and the examples.
fn value_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("default values", json!({})),
        ("examples/production.yaml", values_file(PRODUCTION)),
        ("examples/ingress-nginx.yaml", values_file(INGRESS)),
    ]
}

#[test]
fn helm_lint_finds_nothing_in_any_value_set() {
    for (name, values) in value_sets() {
        let problems = lint_problems(&values);
        assert!(
            problems.is_empty(),
            "{name}: helm lint --strict: {problems:?}"
        );
    }
}

#[test]
fn kubernetes_accepts_every_rendered_object_of_every_value_set() {
    for (name, values) in value_sets() {
        let objects = render(&values);
        for version in KUBERNETES {
            let complaints = kubernetes_complaints(&objects, version);
            assert!(
                complaints.is_empty(),
                "{name}, Kubernetes {version}: {complaints:#?}"
            );
        }
    }
}

#[test]
fn the_production_set_renders_an_autoscaled_monitored_r3_deployment() {
    let objects = render(&values_file(PRODUCTION));
    let edge = find(&objects, "Deployment", "-edge");
    assert!(
        edge["spec"]["replicas"].is_null(),
        "the HPA owns the edges' replica count"
    );
    let hpa = find(&objects, "HorizontalPodAutoscaler", "-edge");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        edge["metadata"]["name"]
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 3);
    let metrics = hpa["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["resource"]["name"], "cpu");
    assert_eq!(
        metrics[1]["pods"]["metric"]["name"],
        "weir_edge_connections_open"
    );
    let producer = find(&objects, "Deployment", "-producer");
    assert_eq!(producer["spec"]["replicas"], 2);
    for (d, c) in [(edge, "edge"), (producer, "producer")] {
        let c = container(d, c);
        assert_eq!(env_value(c, "WEIR_NATS_URL").split(',').count(), 3);
        assert_eq!(env_value(c, "WEIR_REPLICAS"), "3");
        let redis = &env(c)["WEIR_REDIS_URL"]["valueFrom"]["secretKeyRef"];
        assert_eq!(
            redis["name"], "weir-keys",
            "the Redis URL comes from the user's Secret"
        );
    }
    assert_eq!(all(&objects, "PodDisruptionBudget").len(), 2);
    assert_eq!(all(&objects, "ServiceMonitor").len(), 2);
    assert_eq!(all(&objects, "PrometheusRule").len(), 1);
    assert!(
        all(&objects, "Secret").is_empty(),
        "existingSecret: the chart makes none"
    );
    let route = find(&objects, "HTTPRoute", "weir");
    let rule = &route["spec"]["rules"][0];
    assert_eq!(
        rule["timeouts"],
        json!({"request": "0s", "backendRequest": "0s"})
    );
    let svc = find(&objects, "Service", "-edge");
    assert_eq!(rule["backendRefs"][0]["name"], svc["metadata"]["name"]);
    assert_eq!(
        rule["backendRefs"][0]["port"],
        svc["spec"]["ports"][0]["port"]
    );
}

#[test]
fn every_weir_variable_the_chart_sets_is_one_the_binaries_accept() {
    let accepted = [
        ("edge", accepted_env(&["edge"])),
        ("producer", accepted_env(&["producer"])),
    ];
    for (name, values) in value_sets() {
        let objects = render(&values);
        for (role, accepted) in &accepted {
            let c = container(find(&objects, "Deployment", &format!("-{role}")), role);
            for var in env(c).keys().filter(|k| k.starts_with("WEIR_")) {
                assert!(accepted.contains(var), "{name}: {role} does not read {var}");
            }
        }
    }
}

#[test]
fn pods_run_as_non_root_on_a_read_only_root_filesystem_with_resource_requests() {
    for (name, values) in value_sets() {
        let objects = render(&values);
        for role in ["edge", "producer"] {
            let d = find(&objects, "Deployment", &format!("-{role}"));
            let pod = &d["spec"]["template"]["spec"];
            let c = container(d, role);
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{name}: {role}"
            );
            assert_ne!(pod["securityContext"]["runAsUser"], 0, "{name}: {role}");
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{name}: {role}"
            );
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{name}: {role}"
            );
            assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
            for r in ["cpu", "memory"] {
                assert!(
                    c["resources"]["requests"][r].is_string(),
                    "{name}: {role} requests no {r}"
                );
            }
        }
    }
}

#[test]
fn probes_services_and_scrapes_reach_the_port_each_binary_listens_on() {
    let objects = render(&values_file(PRODUCTION));
    for (role, listen_var, port_name) in [
        ("edge", "WEIR_LISTEN", "http"),
        ("producer", "WEIR_METRICS_LISTEN", "metrics"),
    ] {
        let c = container(find(&objects, "Deployment", &format!("-{role}")), role);
        let port = port_named(c, port_name);
        assert_eq!(
            env_value(c, listen_var),
            format!("0.0.0.0:{port}"),
            "{role}"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{role}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{role}");
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], port_name, "{role} {probe}");
        }
        let svc = find(&objects, "Service", &format!("-{role}"));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], port_name, "{role}");
        assert_eq!(
            svc["spec"]["selector"],
            find_pod_labels(&objects, role),
            "{role}"
        );
        let sm = find(&objects, "ServiceMonitor", &format!("-{role}"));
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(
                &svc["metadata"]["labels"][k], v,
                "{role}: the ServiceMonitor misses its Service"
            );
        }
        let endpoint = &sm["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], svc["spec"]["ports"][0]["name"], "{role}");
        assert_eq!(endpoint["path"], "/metrics");
        // The job name dashboards/ and the alert rules select.
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "job");
        assert_eq!(
            endpoint["relabelings"][0]["replacement"],
            format!("weir-{role}")
        );
    }
}

fn find_pod_labels(objects: &[Value], role: &str) -> Value {
    find(objects, "Deployment", &format!("-{role}"))["spec"]["selector"]["matchLabels"].clone()
}

#[test]
fn termination_grace_covers_the_prestop_sleep_and_the_drain() {
    for (name, values) in value_sets() {
        let objects = render(&values);
        for role in ["edge", "producer"] {
            let d = find(&objects, "Deployment", &format!("-{role}"));
            let c = container(d, role);
            let grace = Duration::from_secs(
                d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                    .as_u64()
                    .unwrap(),
            );
            let drain = humantime::parse_duration(&env_value(c, "WEIR_DRAIN_GRACE")).unwrap();
            let sleep = match c["lifecycle"]["preStop"]["exec"]["command"].as_array() {
                Some(cmd) => {
                    assert_eq!(cmd[0], "sleep", "{name}: {role}'s preStop");
                    Duration::from_secs(cmd[1].as_str().unwrap().parse().unwrap())
                }
                None => Duration::ZERO,
            };
            if role == "edge" {
                assert!(
                    sleep >= Duration::from_secs(1),
                    "{name}: the edge has no preStop sleep"
                );
            }
            assert!(
                grace >= sleep + drain + Duration::from_secs(5),
                "{name}: {role}'s grace {grace:?} < preStop {sleep:?} + drain {drain:?} + 5 s to exit"
            );
        }
    }
}

#[test]
fn the_prometheus_rule_carries_the_alert_rules_of_dashboards_and_promtool_accepts_it() {
    let objects = render(&values_file(PRODUCTION));
    let rule = find(&objects, "PrometheusRule", "weir");
    let alerts: Value = serde_norway::from_str(&text(ALERTS)).unwrap();
    assert_eq!(
        rule["spec"], alerts,
        "the rule's spec is dashboards/prometheus/alerts.yml"
    );
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("prometheusrule-{}.yml", std::process::id()));
    std::fs::write(&file, rule["spec"].to_string()).unwrap();
    let out = Command::new(tool(PROMTOOL))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_dashboards_are_configmaps_for_the_grafana_sidecar_on_its_data_source() {
    let values = merged(
        &values_file(PRODUCTION),
        &json!({"metrics": {"dashboards": {
        "datasourceUid": "my-prom", "namespace": "monitoring"}}}),
    );
    let objects = render(&values);
    let maps = all(&objects, "ConfigMap");
    assert_eq!(maps.len(), DASHBOARDS.len());
    for path in DASHBOARDS {
        let file = path.rsplit('/').next().unwrap();
        let cm = maps
            .iter()
            .find(|m| m["data"].get(file).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap holds {file}"));
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(cm["metadata"]["namespace"], "monitoring");
        let shown: Value = serde_json::from_str(cm["data"][file].as_str().unwrap()).unwrap();
        let expected = text(path).replace("\"uid\": \"weir-prometheus\"", "\"uid\": \"my-prom\"");
        assert_eq!(
            shown,
            serde_json::from_str::<Value>(&expected).unwrap(),
            "{file}"
        );
        assert!(!cm["data"][file]
            .as_str()
            .unwrap()
            .contains("weir-prometheus"));
    }
}

#[test]
fn every_redis_url_form_reaches_weir_redis_url_unchanged() {
    for url in [
        "redis://:pw@redis-master.data:6379/2",
        "rediss://default:pw@cache.example.com:6380",
        "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster?db=1",
        "redis+cluster://r1:6379,r2:6379,r3:6379",
    ] {
        let objects = render(&json!({"redis": {"url": url}}));
        for role in ["edge", "producer"] {
            let c = container(find(&objects, "Deployment", &format!("-{role}")), role);
            assert_eq!(env_value(c, "WEIR_REDIS_URL"), url, "{role}");
        }
    }
}

#[test]
fn a_generated_secret_is_long_enough_and_an_existing_secret_replaces_it() {
    let objects = render(&json!({}));
    let secret = find(&objects, "Secret", "weir");
    assert!(secret_value(secret, "secret").unwrap().len() >= 32);
    assert!(secret_value(secret, "api-key").unwrap().len() >= 32);
    let given = "s".repeat(32) + "," + &"t".repeat(40);
    let objects = render(&json!({"secret": given, "apiKey": "k"}));
    assert_eq!(
        secret_value(find(&objects, "Secret", "weir"), "secret").unwrap(),
        given
    );
    let objects = render(&json!({"existingSecret": "mine"}));
    assert!(all(&objects, "Secret").is_empty());
    let c = container(find(&objects, "Deployment", "-edge"), "edge");
    let refs: BTreeSet<String> = env(c)
        .values()
        .filter_map(|e| {
            e["valueFrom"]["secretKeyRef"]["name"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(refs, BTreeSet::from(["mine".to_owned()]));
}

#[test]
fn bad_values_are_refused_with_a_message_naming_the_value() {
    let rows = [
        (
            "a secret under 32 bytes",
            json!({"secret": "short"}),
            "secret",
        ),
        (
            "a second secret under 32 bytes",
            json!({"secret": "a".repeat(32) + ",b"}),
            "secret",
        ),
        (
            "an http:// Redis URL",
            json!({"redis": {"url": "http://redis:6379"}}),
            "url",
        ),
        (
            "a Sentinel URL without a master",
            json!({"redis": {"url": "redis+sentinel://s1:26379"}}),
            "url",
        ),
        ("no NATS URL", json!({"nats": {"urls": ""}}), "urls"),
        (
            "six stream replicas",
            json!({"nats": {"replicas": 6}}),
            "replicas",
        ),
        ("no edges", json!({"edge": {"replicas": 0}}), "replicas"),
        (
            "a misspelt value",
            json!({"edge": {"replica": 3}}),
            "replica",
        ),
        (
            "a retention that is not a duration",
            json!({"retention": "an hour"}),
            "retention",
        ),
        (
            "an HTTPRoute with no Gateway",
            json!({"httpRoute": {"enabled": true}}),
            "parentRefs",
        ),
    ];
    for (case, values, names) in rows {
        match try_render(&values) {
            Ok(_) => panic!("{case}: rendered"),
            Err(e) => assert!(
                e.contains(names),
                "{case}: the error does not name {names}: {e}"
            ),
        }
    }
}

#[test]
fn the_ingress_example_routes_to_the_edges_with_stream_timeouts() {
    let objects = render(&values_file(INGRESS));
    let ingress = find(&objects, "Ingress", "weir");
    let annotations = &ingress["metadata"]["annotations"];
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let secs: u64 = annotations[format!("nginx.ingress.kubernetes.io/{timeout}")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            secs >= 60,
            "{timeout} {secs} s cuts idle streams between heartbeats"
        );
    }
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
        "off"
    );
    let svc = find(&objects, "Service", "-edge");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], svc["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "weir.example.com");
}

#[test]
fn the_default_nats_urls_name_every_server_the_nats_values_start() {
    let nats = values_file("deploy/helm/nats-values.yaml");
    let config = &nats["config"];
    assert_eq!(config["cluster"]["enabled"], true);
    assert_eq!(config["jetstream"]["enabled"], true);
    let servers = config["cluster"]["replicas"].as_u64().unwrap();
    let defaults = values_file("deploy/helm/weir/values.yaml");
    let urls: Vec<String> = (0..servers)
        .map(|i| format!("nats://nats-{i}.nats-headless:4222"))
        .collect();
    assert_eq!(defaults["nats"]["urls"], urls.join(","));
    assert_eq!(defaults["nats"]["replicas"].as_u64(), Some(servers));
    // Lame duck mode runs to its end before the kubelet's SIGKILL.
    let duration = |key: &str| {
        let v = config["merge"][key].as_str().unwrap();
        humantime::parse_duration(v.trim_start_matches("<<").trim_end_matches(">>").trim()).unwrap()
    };
    let lame_duck = duration("lame_duck_grace_period") + duration("lame_duck_duration");
    let grace = nats["podTemplate"]["merge"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(Duration::from_secs(grace) >= lame_duck + Duration::from_secs(20));
    // The nats-server release the tests run.
    let tag = nats["container"]["image"]["tag"].as_str().unwrap();
    assert_eq!(
        tag,
        format!("{}-alpine", text("scripts/nats-version").trim())
    );
}
