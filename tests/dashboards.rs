//! The dashboards and alert rules, checked without running anything but
//! `promtool`:
//!
//! - every PromQL expression of `dashboards/` (Grafana panels and variables)
//!   and of the alert rules names real metrics the right way; every metric is
//!   on a dashboard and in `dashboards/README.md`; panels read the
//!   provisioned data source;
//! - `promtool` accepts the Prometheus config and rules, and the rules' unit
//!   tests (`alerts.test.yml`) pass.
//!
//! Needs Debian's `prometheus` package (`promtool`); without it the tests
//! fail, they do not skip.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::files::*;
use common::metrics::*;
use common::prometheus::PROMTOOL;
use common::queries::*;
use serde_json::Value;

#[test]
fn every_query_names_real_metrics_the_right_way() {
    let cat = catalogue();
    let exprs = all_exprs();
    assert!(exprs.len() > 60, "found only {} expressions", exprs.len());
    let mut problems = Vec::new();
    for e in &exprs {
        let refs = references(&e.expr);
        if refs.is_empty() && !e.expr.contains("up{") {
            problems.push(format!("{}: selects no weir metric: {}", e.at, e.expr));
        }
        for (word, func) in refs {
            let over_time = matches!(func.as_str(), "rate" | "irate" | "increase");
            match resolve(&word, &cat) {
                None => problems.push(format!("{}: {word} is not in names.rs", e.at)),
                Some((_, Kind::Histogram, false)) => problems.push(format!(
                    "{}: histogram {word} used without _bucket/_sum/_count",
                    e.at
                )),
                Some((_, Kind::Gauge, _)) if over_time => {
                    problems.push(format!("{}: gauge {word} inside {func}()", e.at))
                }
                // A raw counter only in `x unless x offset …`: a series
                // that appeared lately, whose first increments rate() misses.
                Some((_, Kind::Counter | Kind::Histogram, _))
                    if !over_time && !e.expr.contains(&format!("{word} unless {word} offset")) =>
                {
                    problems.push(format!(
                        "{}: counter series {word} not inside rate()/increase() ({func:?})",
                        e.at
                    ))
                }
                Some(_) => {}
            }
        }
        if e.expr.contains("_bucket") && e.expr.contains("histogram_quantile") {
            // Summing buckets must keep `le`.
            for part in e.expr.split("sum by (").skip(1) {
                let by = part.split(')').next().unwrap();
                if part.contains("_bucket") && !by.split(',').any(|l| l.trim() == "le") {
                    problems.push(format!("{}: sums buckets without le: {}", e.at, e.expr));
                }
            }
        }
    }
    // Every metric is on a dashboard, and in the README's table.
    let used: BTreeSet<String> = DASHBOARDS
        .iter()
        .flat_map(|d| dashboard_exprs(d))
        .flat_map(|e| needs(&e.expr, &cat))
        .collect();
    let readme = text("dashboards/README.md");
    for name in cat.keys() {
        if !used.contains(name) {
            problems.push(format!("{name} is on no dashboard"));
        }
        if !readme.contains(&format!("`{name}`")) {
            problems.push(format!("{name} is missing from dashboards/README.md"));
        }
    }
    // Panels read the provisioned data source.
    let ds = yaml("dashboards/grafana/provisioning/datasources/prometheus.yml");
    let uid = ds["datasources"][0]["uid"]
        .as_str()
        .expect("datasource uid");
    for d in DASHBOARDS {
        let j = json_file(d);
        let mut uids = BTreeSet::new();
        collect_datasource_uids(&j, &mut uids);
        uids.remove("-- Grafana --");
        assert_eq!(uids, BTreeSet::from([uid.to_owned()]), "{d}: data sources");
        assert!(j["uid"].as_str().is_some_and(|u| !u.is_empty()), "{d}: uid");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn collect_datasource_uids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(uid) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                out.insert(uid.to_owned());
            }
            m.values().for_each(|c| collect_datasource_uids(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_datasource_uids(c, out)),
        _ => {}
    }
}

#[test]
fn promtool_accepts_the_config_the_rules_and_their_unit_tests() {
    let promtool = tool(PROMTOOL);
    let dir = root().join("dashboards/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The config names its rules relative to itself, so the same file works
    // here and in the container, where compose mounts both side by side.
    let cfg = yaml(PROMETHEUS_YML);
    let rules: Vec<&str> = cfg["rule_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rules, ["alerts.yml"]);
}
