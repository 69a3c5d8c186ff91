//! Observability, checked from outside like everything else:
//!
//! - every PromQL expression of `dashboards/` (Grafana panels and variables)
//!   and of the alert rules names real metrics the right way, and answers on
//!   a real Prometheus scraping a running edge and producer while sessions
//!   stream; the alerts stay quiet while the stack is healthy and fire when
//!   a node, Redis or NATS goes away;
//! - `promtool` accepts the Prometheus config and rules, and the rules' unit
//!   tests (`alerts.test.yml`) pass;
//! - `docker-compose.yml`, the `Dockerfile`, nginx, Prometheus and Grafana
//!   agree with each other and with what the binaries accept.
//!
//! Needs Debian's `prometheus` package (`prometheus`, `promtool`); without
//! it the tests fail, they do not skip. With `WEIR_DASHBOARD_PNG=<path>` the
//! live test also renders the main overview panels to a PNG (headless
//! Chromium), e.g. `WEIR_DASHBOARD_PNG=docs/dashboard.png`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use futures::StreamExt;
use serde_json::Value;
use serde_norway::Value as Yaml;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const MINUTE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ files

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    let mut v: Yaml =
        serde_norway::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
    v
}

fn tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the observability tests need Debian's `prometheus` package \
         (apt-get install -y prometheus; scripts/setup.sh installs it)"
    );
    path
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const DASHBOARDS: [&str; 2] = [
    "dashboards/grafana/weir-overview.json",
    "dashboards/grafana/weir-node.json",
];
const ALERTS: &str = "dashboards/prometheus/alerts.yml";
const PROMETHEUS_YML: &str = "dashboards/prometheus/prometheus.yml";

// ------------------------------------------------------------ the metrics

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric of `libs/telemetry/src/names.rs`, with its type (from the
/// `describe_*!` calls, cross-checked with `HISTOGRAMS`).
fn catalogue() -> BTreeMap<String, Kind> {
    let src = text("libs/telemetry/src/names.rs");
    let mut consts = BTreeMap::new();
    for line in src.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const ") {
            if let Some((ident, tail)) = rest.split_once(": &str = \"") {
                let name = tail.split('"').next().unwrap();
                consts.insert(ident.to_owned(), name.to_owned());
            }
        }
    }
    assert!(consts.len() > 20, "names.rs: found only {consts:?}");
    let flat = src.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut kinds = BTreeMap::new();
    for (mac, kind) in [
        ("describe_counter!(", Kind::Counter),
        ("describe_gauge!(", Kind::Gauge),
        ("describe_histogram!(", Kind::Histogram),
    ] {
        for part in flat.split(mac).skip(1) {
            let ident: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let name = consts
                .get(&ident)
                .unwrap_or_else(|| panic!("names.rs describes unknown {ident}"));
            assert!(
                kinds.insert(name.clone(), kind).is_none(),
                "{name} described twice"
            );
        }
    }
    for name in consts.values() {
        let kind = kinds
            .get(name)
            .unwrap_or_else(|| panic!("{name} is never described"));
        let bucketed = weir_telemetry::names::HISTOGRAMS
            .iter()
            .any(|(n, _)| n == name);
        assert_eq!(
            *kind == Kind::Histogram,
            bucketed,
            "{name}: described as {kind:?}, HISTOGRAMS disagrees"
        );
        match kind {
            Kind::Counter => assert!(name.ends_with("_total"), "counter {name} without _total"),
            _ => assert!(
                !name.ends_with("_total"),
                "{kind:?} {name} named like a counter"
            ),
        }
    }
    kinds
}

/// What a name in an expression refers to: the metric and its kind, and
/// whether it is a histogram's `_bucket`/`_sum`/`_count` series.
fn resolve(word: &str, cat: &BTreeMap<String, Kind>) -> Option<(String, Kind, bool)> {
    if let Some(k) = cat.get(word) {
        return Some((word.to_owned(), *k, false));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = word.strip_suffix(suffix)?;
        (cat.get(base) == Some(&Kind::Histogram)).then(|| (base.to_owned(), Kind::Histogram, true))
    })
}

// --------------------------------------------------------- the expressions

#[derive(Debug, Clone)]
enum Origin {
    Panel,
    /// A `label_values(expr, label)` template variable.
    Variable(String),
    Alert(String),
}

#[derive(Debug, Clone)]
struct Expr {
    at: String,
    expr: String,
    origin: Origin,
}

fn dashboard_exprs(rel: &str) -> Vec<Expr> {
    fn walk(v: &Value, file: &str, title: &str, out: &mut Vec<Expr>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(e) = m.get("expr") {
                    let e = e
                        .as_str()
                        .unwrap_or_else(|| panic!("{file}: non-string expr"));
                    let r = m.get("refId").and_then(Value::as_str).unwrap_or("?");
                    out.push(Expr {
                        at: format!("{file}: panel {title:?} {r}"),
                        expr: e.to_owned(),
                        origin: Origin::Panel,
                    });
                }
                for (k, c) in m {
                    if k != "templating" {
                        walk(c, file, title, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, file, title, out)),
            _ => {}
        }
    }
    let d = json_file(rel);
    let file = rel.rsplit('/').next().unwrap();
    let mut out = Vec::new();
    walk(&d, file, "", &mut out);
    for var in d["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap();
        let q = var["query"]
            .get("query")
            .unwrap_or(&var["query"])
            .as_str()
            .unwrap_or_else(|| panic!("{file}: variable {name} has no query"));
        let inner = q
            .trim()
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{file}: variable {name}: {q:?} is not label_values(…)"));
        let (expr, label) = inner.rsplit_once(',').unwrap();
        out.push(Expr {
            at: format!("{file}: variable ${name}"),
            expr: expr.trim().to_owned(),
            origin: Origin::Variable(label.trim().to_owned()),
        });
    }
    out
}

fn alert_exprs() -> Vec<Expr> {
    let y = yaml(ALERTS);
    let mut out = Vec::new();
    for g in y["groups"].as_sequence().expect("alerts.yml: groups") {
        for r in g["rules"].as_sequence().expect("alerts.yml: rules") {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .expect("a rule is an alert or a record");
            out.push(Expr {
                at: format!("alerts.yml: {name}"),
                expr: r["expr"].as_str().expect("expr").trim().to_owned(),
                origin: Origin::Alert(name.to_owned()),
            });
        }
    }
    out
}

fn all_exprs() -> Vec<Expr> {
    let mut out: Vec<Expr> = DASHBOARDS.iter().flat_map(|d| dashboard_exprs(d)).collect();
    out.extend(alert_exprs());
    out
}

/// Every `weir_…` name an expression selects, with the function it sits
/// directly in (`rate`, `sum`, …; `aggregation` after a `by (…)` clause).
fn references(expr: &str) -> Vec<(String, String)> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if matches!(c, b'"' | b'\'' | b'`') {
            quote = Some(c);
            i += 1;
            continue;
        }
        if ident(c) && (i == 0 || !ident(b[i - 1])) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("weir_") {
                out.push((word.to_owned(), enclosing(expr, start)));
            }
            continue;
        }
        i += 1;
    }
    out
}

fn enclosing(expr: &str, at: usize) -> String {
    let Some(before) = expr[..at].trim_end().strip_suffix('(') else {
        return String::new();
    };
    let before = before.trim_end();
    if before.ends_with(')') {
        return "aggregation".into();
    }
    let mut name: Vec<char> = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    name.reverse();
    name.into_iter().collect()
}

/// Base metric names an expression needs.
fn needs(expr: &str, cat: &BTreeMap<String, Kind>) -> BTreeSet<String> {
    references(expr)
        .iter()
        .filter_map(|(w, _)| resolve(w, cat).map(|(base, _, _)| base))
        .collect()
}

// ------------------------------------------------- static query checks

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

// ------------------------------------------------------------- promtool

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

// ------------------------------------------------------ a real Prometheus

#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a sample value: {v}"))
}

fn samples(data: &Value) -> Vec<Sample> {
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Sample {
                labels: serde_json::from_value(r["metric"].clone()).unwrap(),
                value: number(&r["value"][1]),
            })
            .collect(),
        Some("scalar") => vec![Sample {
            labels: BTreeMap::new(),
            value: number(&data["result"][1]),
        }],
        other => panic!("unexpected result type {other:?}: {data}"),
    }
}

/// A `prometheus` process on a free port, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(dir: &Path, config: &str) -> Prometheus {
        let bin = tool(PROMETHEUS);
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let p = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http().get(format!("{}/-/ready", p.url())).send().await {
                if r.status() == 200 {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready; see {}",
                dir.join("prometheus.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `data` of an API answer, or the error Prometheus gave.
    async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let r = http()
            .get(format!("{}{path}", self.url()))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{}: {}", v["errorType"], v["error"]))
        }
    }

    async fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self
            .api("/api/v1/query", &[("query", expr.to_owned())])
            .await?;
        Ok(samples(&data))
    }

    async fn query_range(
        &self,
        expr: &str,
        from: f64,
        to: f64,
        step: f64,
    ) -> Result<Vec<(BTreeMap<String, String>, Vec<(f64, f64)>)>, String> {
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", expr.to_owned()),
                    ("start", format!("{from:.3}")),
                    ("end", format!("{to:.3}")),
                    ("step", format!("{step}")),
                ],
            )
            .await?;
        Ok(data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = serde_json::from_value(r["metric"].clone()).unwrap();
                let points = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_f64().unwrap(), number(&p[1])))
                    .collect();
                (labels, points)
            })
            .collect())
    }

    /// Waits until `expr` has an answer; returns it.
    async fn wait_for(&self, what: &str, expr: &str, within: Duration) -> Vec<Sample> {
        let deadline = Instant::now() + within;
        loop {
            match self.query(expr).await {
                Ok(s) if !s.is_empty() => return s,
                Ok(_) => {}
                Err(e) => panic!("{what}: {expr}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no answer to {expr} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The real `prometheus.yml` with its targets replaced by this test's
/// processes, scraping every second, with the real rules.
fn scrape_config(edges: &[String], producers: &[String]) -> String {
    let mut cfg = yaml(PROMETHEUS_YML);
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        cfg["global"][key] = Yaml::from("1s");
    }
    let rules = root().join(ALERTS).display().to_string();
    cfg["rule_files"] = Yaml::Sequence(vec![Yaml::from(rules)]);
    let jobs = cfg["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    let mut seen = BTreeSet::new();
    for job in jobs {
        let name = job["job_name"].as_str().unwrap().to_owned();
        let targets = match name.as_str() {
            "weir-edge" => edges,
            "weir-producer" => producers,
            other => panic!("prometheus.yml: job {other} has no counterpart in this test"),
        };
        let targets: Vec<Yaml> = targets.iter().map(|t| Yaml::from(t.as_str())).collect();
        let mut sc = serde_norway::Mapping::new();
        sc.insert("targets".into(), Yaml::Sequence(targets));
        job["static_configs"] = Yaml::Sequence(vec![Yaml::Mapping(sc)]);
        seen.insert(name);
    }
    assert_eq!(
        seen.len(),
        2,
        "prometheus.yml scrapes weir-edge and weir-producer"
    );
    serde_norway::to_string(&cfg).unwrap()
}

async fn metrics_text(node: &Node) -> String {
    http()
        .get(format!("{}/metrics", node.http()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Base names of the `weir_*` metrics a `/metrics` page shows, with the
/// value of each unlabelled one.
fn exported(page: &str, cat: &BTreeMap<String, Kind>) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("weir_")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let (base, _, _) = resolve(name, cat)
            .unwrap_or_else(|| panic!("/metrics shows {name}, which names.rs does not define"));
        // Counters and gauges: the sum over their label sets.
        let entry = out.entry(base.clone()).or_insert(None);
        if name == base {
            let v: f64 = value.parse().unwrap();
            *entry = Some(entry.unwrap_or(0.0) + v);
        }
    }
    out
}

/// Sessions over WebSocket (waves of three, 1.5 s apart, one client resuming
/// mid-stream, one late joiner catching up from the log), one over SSE and
/// a refused token. Returns the events the WebSocket clients received.
async fn stream_sessions(edge: &Node, waves: u64) -> u64 {
    let waves = (0..waves).map(|w| async move {
        tokio::time::sleep(Duration::from_millis(1500 * w)).await;
        let sessions =
            futures::future::join_all((0..3).map(|i| create_mock(edge, 300, 200.0, w * 10 + i)))
                .await;
        let counts = futures::future::join_all(sessions.iter().map(|s| async move {
            let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
            let got = read(&mut ws, Stop::Close, MINUTE).await;
            assert_eq!(got.close, Some(1000));
            assert_complete(&got.events, "completed");
            got.events.len() as u64
        }))
        .await;
        counts.into_iter().sum::<u64>()
    });
    let resume = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = create_mock(edge, 300, 200.0, 100).await;
        let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
        let first = read(&mut ws, Stop::After(50), MINUTE).await;
        drop(ws);
        let mut ws = ws_connect(edge, &s.id, &s.token, first.last_seq()).await;
        let rest = read(&mut ws, Stop::Close, MINUTE).await;
        assert_eq!(rest.close, Some(1000));
        let all: Vec<Value> = first.events.into_iter().chain(rest.events).collect();
        assert_complete(&all, "completed");
        all.len() as u64
    };
    let sse = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let s = create_mock(edge, 300, 200.0, 200).await;
        let url = format!(
            "{}/v1/sessions/{}/events?token={}",
            edge.http(),
            s.id,
            s.token
        );
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut body = String::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(body.lines().filter(|l| l.starts_with("id: ")).count(), 301);
    };
    let refused = async {
        let s = create_mock(edge, 5, 0.0, 300).await;
        let mut ws = ws_connect(edge, &s.id, "not-a-token", 0).await;
        let got = read(&mut ws, Stop::Close, MINUTE).await;
        assert_eq!(got.close, Some(4001));
        assert!(got.events.is_empty());
    };
    let late = async {
        // Joins a finished session: catches up from the log through a
        // buffer of 8, so it hits the high watermark and gets coalesced frames.
        let s = create_mock(edge, 10, 0.0, 400).await;
        wait_ended(edge, &s, MINUTE).await;
        let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
        let got = read(&mut ws, Stop::Close, MINUTE).await;
        assert_complete(&got.events, "completed");
        assert!(
            got.frames < got.events.len(),
            "{} frames for {} events",
            got.frames,
            got.events.len()
        );
        got.events.len() as u64
    };
    let (waves, resume, (), (), late) =
        tokio::join!(futures::future::join_all(waves), resume, sse, refused, late);
    waves.iter().sum::<u64>() + resume + late
}

/// Alerts on latency, which a loaded test machine can exceed while healthy.
const LOAD_DEPENDENT: [&str; 1] = ["WeirDeliveryLatencyHigh"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_query_answers_on_a_live_stack() {
    use weir_telemetry::names;
    let began = Instant::now();
    let cat = catalogue();
    let exprs = all_exprs();
    tool(PROMETHEUS);
    // A small per-connection buffer, so that a client catching up from the
    // log hits the watermarks.
    let mut c = Cluster::start_with("observability", 1, 1, &["--conn-buffer", "8"], &[]);
    let edge = format!("127.0.0.1:{}", c.edge(0).port);
    let producer = format!("127.0.0.1:{}", c.producers[0].port);
    // A producer that is down: nothing listens there.
    let dead = format!("127.0.0.1:{}", free_port());
    let prom = Prometheus::start(
        &c.dir,
        &scrape_config(
            std::slice::from_ref(&edge),
            &[producer.clone(), dead.clone()],
        ),
    )
    .await;
    let live = format!("{edge}|{producer}");
    prom.wait_for(
        "first scrapes",
        &format!("sum(up{{instance=~\"{live}\"}}) == 2"),
        Duration::from_secs(20),
    )
    .await;

    // Three waves; more when drawing the picture, for a longer time line.
    let render = std::env::var("WEIR_DASHBOARD_PNG").ok();
    let waves = if render.is_some() { 12 } else { 3 };
    let from = now_secs();
    let ws_events = stream_sessions(c.edge(0), waves).await;
    let traffic_end = now_secs();

    // What the processes export now, and Prometheus has scraped since.
    let edge_page = exported(&metrics_text(c.edge(0)).await, &cat);
    let producer_page = exported(&metrics_text(&c.producers[0]).await, &cat);
    let snapshot = now_secs();
    prom.wait_for(
        "scrapes after the traffic",
        &format!("min(timestamp(up{{instance=~\"{live}\"}})) > {snapshot:.3}"),
        Duration::from_secs(10),
    )
    .await;

    // Every event a WebSocket client got is counted, and Prometheus agrees.
    let delivered = edge_page[names::EVENTS_DELIVERED].unwrap();
    assert!(
        delivered >= ws_events as f64,
        "edge counts {delivered} events delivered, WebSocket clients got {ws_events}"
    );
    let scraped = prom
        .query(&format!("sum({})", names::EVENTS_DELIVERED))
        .await
        .unwrap();
    assert_eq!(scraped[0].value, delivered);

    // The activity of this test shows in the metrics it should.
    let present: BTreeSet<String> = edge_page
        .keys()
        .chain(producer_page.keys())
        .cloned()
        .collect();
    let happened = [
        names::CONNECTIONS_OPEN,
        names::CONNECTIONS_ACCEPTED,
        names::SESSIONS_SUBSCRIBED,
        names::EVENTS_DELIVERED,
        names::FRAMES_SENT,
        names::EVENTS_PER_FRAME,
        names::BYTES_SENT,
        names::DELIVERY_LATENCY,
        names::BUFFER_FILL,
        names::BACKPRESSURE_PAUSES,
        names::LOG_READS,
        names::RESUMES,
        names::CLOSES,
        names::AUTH_FAILURES,
        names::HTTP_REQUESTS,
        names::SESSIONS_CREATED,
        names::RUNS,
        names::RUNS_ACTIVE,
        names::EVENTS_PUBLISHED,
        names::PUBLISH_LATENCY,
        names::EVENTS_PER_PUBLISH,
        names::TIME_TO_FIRST_TOKEN,
    ];
    let missing: Vec<&str> = happened
        .iter()
        .filter(|n| !present.contains(**n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "not exported after the traffic: {missing:?}"
    );

    // Every expression answers; those whose metrics exist answer with
    // numbers; alerts are quiet except for the dead producer.
    let mut problems = Vec::new();
    let mut absent = Vec::new();
    let mut answered = 0;
    for e in &exprs {
        let q = e
            .expr
            .replace("$__rate_interval", "1m")
            .replace("${instance}", &live)
            .replace("$instance", &live);
        assert!(
            !q.contains('$'),
            "{}: unknown template variable in {q}",
            e.at
        );
        let got = match prom.query(&q).await {
            Ok(got) => got,
            Err(err) => {
                problems.push(format!("{}: {err}\n    {q}", e.at));
                continue;
            }
        };
        let needed = needs(&e.expr, &cat);
        let exists = needed.iter().all(|n| present.contains(n));
        if !got.is_empty() {
            answered += 1;
        }
        match &e.origin {
            Origin::Panel if exists => {
                if got.is_empty() {
                    problems.push(format!("{}: no answer\n    {q}", e.at));
                }
                for s in &got {
                    if !(s.value.is_finite() && s.value >= 0.0) {
                        problems.push(format!("{}: {} for {:?}\n    {q}", e.at, s.value, s.labels));
                    }
                }
            }
            Origin::Panel => {
                if !got.is_empty() {
                    problems.push(format!("{}: answers without its metrics: {got:?}", e.at));
                }
                let gone: Vec<&String> = needed.difference(&present).collect();
                absent.push(format!("{} (no {gone:?} yet)", e.at));
            }
            Origin::Variable(label) => {
                let values: BTreeSet<&str> = got
                    .iter()
                    .filter_map(|s| s.labels.get(label).map(String::as_str))
                    .collect();
                if !values.contains(edge.as_str()) || !values.contains(producer.as_str()) {
                    problems.push(format!("{}: {label} values {values:?}", e.at));
                }
            }
            Origin::Alert(name) if name == "WeirTargetDown" => {
                let down: Vec<&str> = got.iter().map(|s| s.labels["instance"].as_str()).collect();
                if down != [dead.as_str()] {
                    problems.push(format!("{}: down {down:?}, expected [{dead}]", e.at));
                }
            }
            Origin::Alert(name) if LOAD_DEPENDENT.contains(&name.as_str()) => {
                // Whether it fires depends on how busy this machine is (a
                // debug build on 2 shared cores); its measure must be live.
                let (measure, _) = q.rsplit_once('>').unwrap();
                let m = prom.query(measure).await.unwrap();
                if m.len() != 1 || !m[0].value.is_finite() {
                    problems.push(format!("{}: measure {measure} = {m:?}", e.at));
                }
                eprintln!("{}: {} = {:?}", e.at, measure.trim(), m[0].value);
            }
            Origin::Alert(_) => {
                if !got.is_empty() {
                    problems.push(format!("{}: fires on a healthy stack: {got:?}", e.at));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "{} expressions evaluated, {answered} answered; empty because nothing made their metrics:\n  {}",
        exprs.len(),
        absent.join("\n  ")
    );

    // Prometheus evaluates every rule without error; only the dead target alerts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rules = loop {
        let data = prom.api("/api/v1/rules", &[]).await.unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        if rules.iter().all(|r| r["health"] != "unknown") || Instant::now() > deadline {
            break rules;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let alerts = exprs
        .iter()
        .filter(|e| matches!(e.origin, Origin::Alert(_)));
    assert_eq!(rules.len(), alerts.count());
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {}: {}", r["name"], r["lastError"]);
    }
    let active = prom.api("/api/v1/alerts", &[]).await.unwrap();
    let active: Vec<(String, String)> = active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["labels"]["instance"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let active: Vec<_> = active
        .into_iter()
        .filter(|(name, _)| !LOAD_DEPENDENT.contains(&name.as_str()))
        .collect();
    assert_eq!(active, [("WeirTargetDown".to_owned(), dead.clone())]);

    let svg = render_overview(&prom, from, traffic_end + 2.0).await;
    let svg_path = c.dir.join("dashboard.svg");
    std::fs::write(&svg_path, &svg.0).unwrap();
    if let Some(png) = render {
        screenshot(&svg_path, &root().join(png), svg.1, svg.2);
    }

    let alert = |name: &str| {
        exprs
            .iter()
            .find(|e| matches!(&e.origin, Origin::Alert(n) if n == name))
            .unwrap_or_else(|| panic!("alerts.yml has no {name}"))
            .expr
            .clone()
    };
    let instances = |got: Vec<Sample>| -> BTreeSet<String> {
        got.iter().map(|s| s.labels["instance"].clone()).collect()
    };
    // NATS dies while a session streams: the producer's publishes fail and
    // are retried, both nodes count the disconnect, and the alerts fire.
    let s = create_mock(c.edge(0), 100_000, 100.0, 500).await;
    let mut ws = ws_connect(c.edge(0), &s.id, &s.token, 0).await;
    read(&mut ws, Stop::After(5), MINUTE).await;
    let t = Instant::now();
    c.nats.proc.kill9();
    let (bus_errors, bus_disconnects) = (alert("WeirBusErrors"), alert("WeirBusDisconnects"));
    let both_disconnected = format!("count({bus_disconnects}) == 2");
    let (errors, disconnects) = tokio::join!(
        prom.wait_for(
            "WeirBusErrors after NATS died",
            &bus_errors,
            Duration::from_secs(30),
        ),
        prom.wait_for(
            "WeirBusDisconnects after NATS died",
            &both_disconnected,
            Duration::from_secs(15),
        ),
    );
    assert!(instances(errors).contains(&producer));
    assert_eq!(
        prom.query(&bus_disconnects).await.map(instances).unwrap(),
        BTreeSet::from([edge.clone(), producer.clone()]),
        "{disconnects:?}"
    );
    let nats_secs = t.elapsed().as_secs_f64();
    // Redis dies too: store operations fail and the store alert fires.
    let t = Instant::now();
    c.redis.proc.kill9();
    prom.wait_for(
        "WeirStoreErrors after Redis died",
        &alert("WeirStoreErrors"),
        Duration::from_secs(20),
    )
    .await;
    let redis_secs = t.elapsed().as_secs_f64();
    drop(ws);
    // Nodes without their bus and store still report.
    let up = prom
        .query(&format!("up{{instance=~\"{live}\"}} == 1"))
        .await
        .unwrap();
    assert_eq!(up.len(), 2, "{up:?}");
    eprintln!(
        "observability: live test took {:.1} s (bus alerts {nats_secs:.1} s after NATS died, \
         store alert {redis_secs:.1} s after Redis died); dashboard drawn in {}",
        began.elapsed().as_secs_f64(),
        svg_path.display()
    );
}

// ------------------------------------------------------------- rendering

/// The overview panels drawn in the README's picture, by title.
const RENDERED: [&str; 9] = [
    "Events /s",
    "Delivery latency (event ts → socket)",
    "Time to first token",
    "Events per frame",
    "Bytes sent /s",
    "Connections",
    "Buffer fill when a frame is sent",
    "Log reads /s",
    "WebSocket closes /s by code",
];

const PALETTE: [&str; 8] = [
    "#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#FADE2A",
];

struct Chart {
    title: String,
    unit: String,
    threshold: Option<f64>,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Queries Prometheus for the main overview panels, as Grafana would, and
/// draws them (SVG). Returns the SVG and its size.
async fn render_overview(prom: &Prometheus, from: f64, to: f64) -> (String, u32, u32) {
    let d = json_file(DASHBOARDS[0]);
    let panels = d["panels"].as_array().unwrap();
    let mut charts = Vec::new();
    for title in RENDERED {
        let p = panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("the overview has no panel {title:?}"));
        let defaults = &p["fieldConfig"]["defaults"];
        let threshold = defaults["custom"]["thresholdsStyle"]
            .is_object()
            .then(|| {
                defaults["thresholds"]["steps"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()["value"]
                    .as_f64()
            })
            .flatten();
        let mut series = Vec::new();
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "4s");
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for (labels, points) in prom.query_range(&expr, from, to, 1.0).await.unwrap() {
                let mut name = legend.to_owned();
                for (k, v) in &labels {
                    name = name.replace(&format!("{{{{{k}}}}}"), v);
                }
                series.push((name, points));
            }
        }
        charts.push(Chart {
            title: title.to_owned(),
            unit: defaults["unit"].as_str().unwrap_or("short").to_owned(),
            threshold,
            series,
        });
    }
    draw(&charts, from, to)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn si(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{suffix}")
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v == 0.0 => "0".into(),
        "s" if v < 1e-3 => format!("{} µs", si(v * 1e6)),
        "s" if v < 1.0 => format!("{} ms", si(v * 1e3)),
        "s" => format!("{} s", si(v)),
        "percentunit" => format!("{:.0}%", v * 100.0),
        "Bps" => format!("{}B/s", si(v)),
        "ops" | "reqps" => format!("{}/s", si(v)),
        _ => si(v),
    }
}

fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * 0.9999)
        .unwrap()
}

fn clock(t: f64) -> String {
    let s = t as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn draw(charts: &[Chart], from: f64, to: f64) -> (String, u32, u32) {
    let (cols, pw, ph, gap, top) = (3usize, 500.0, 280.0, 12.0, 58.0);
    let rows = charts.len().div_ceil(cols);
    let width = cols as f64 * pw + (cols + 1) as f64 * gap;
    let height = top + rows as f64 * (ph + gap);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Inter, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#111217"/>
<text x="{gap}" y="34" font-size="20" fill="#D8D9DA">weir overview</text>
<text x="{}" y="34" font-size="12" fill="#8E8E8E" text-anchor="end">Prometheus scraping a live edge and producer every 1 s while mock sessions stream (tests/observability.rs), UTC</text>
"##,
        width - gap
    );
    for (i, ch) in charts.iter().enumerate() {
        let x = gap + (i % cols) as f64 * (pw + gap);
        let y = top + (i / cols) as f64 * (ph + gap);
        draw_chart(&mut s, ch, (x, y, pw, ph), from, to);
    }
    s.push_str("</svg>\n");
    (s, width as u32, height as u32)
}

fn draw_chart(s: &mut String, ch: &Chart, (x, y, w, h): (f64, f64, f64, f64), from: f64, to: f64) {
    use std::fmt::Write;
    let (px0, px1, py0, py1) = (x + 62.0, x + w - 14.0, y + 36.0, y + h - 50.0);
    let _ = writeln!(
        s,
        r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181B1F" stroke="#2C3235"/>
<text x="{}" y="{}" font-size="13" font-weight="600" fill="#CCCCDC">{}</text>"##,
        x + 12.0,
        y + 22.0,
        esc(&ch.title)
    );
    let top = ch
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .chain(ch.threshold)
        .fold(0.0, f64::max);
    let ymax = nice_ceiling(top * 1.05);
    let sx = |t: f64| px0 + (t - from) / (to - from) * (px1 - px0);
    let sy = |v: f64| py1 - v / ymax * (py1 - py0);
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{px0}" y1="{yy:.1}" x2="{px1}" y2="{yy:.1}" stroke="#2C3235"/><text x="{}" y="{:.1}" font-size="10" fill="#8E8E8E" text-anchor="end">{}</text>"##,
            px0 - 6.0,
            yy + 3.5,
            esc(&fmt_value(v, &ch.unit))
        );
        let t = from + (to - from) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="10" fill="#8E8E8E" text-anchor="middle">{}</text>"##,
            sx(t),
            py1 + 14.0,
            clock(t)
        );
    }
    if let Some(t) = ch.threshold {
        let _ = writeln!(
            s,
            r##"<line x1="{px0}" y1="{0:.1}" x2="{px1}" y2="{0:.1}" stroke="#F2495C" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" font-size="10" fill="#F2495C" text-anchor="end">budget {3}</text>"##,
            sy(t),
            px1 - 4.0,
            sy(t) - 4.0,
            esc(&fmt_value(t, &ch.unit))
        );
    }
    for (i, (_, points)) in ch.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for run in points.split(|(_, v)| !v.is_finite()) {
            if run.is_empty() {
                continue;
            }
            let line: Vec<String> = run
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", sx(*t), sy(*v)))
                .collect();
            let (first, last) = (run[0].0, run[run.len() - 1].0);
            let _ = writeln!(
                s,
                r##"<polygon points="{:.1},{py1} {} {:.1},{py1}" fill="{color}" fill-opacity="0.12"/><polyline points="{}" fill="none" stroke="{color}" stroke-width="1.6"/>"##,
                sx(first),
                line.join(" "),
                sx(last),
                line.join(" ")
            );
        }
    }
    let mut lx = px0;
    for (i, (name, _)) in ch.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let ly = y + h - 16.0;
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="4" rx="1" fill="{color}"/><text x="{}" y="{ly}" font-size="11" fill="#CCCCDC">{}</text>"##,
            ly - 5.0,
            lx + 19.0,
            esc(name)
        );
        lx += 32.0 + name.chars().count() as f64 * 6.3;
    }
}

/// Headless Chromium's screenshot of the SVG.
fn screenshot(svg: &Path, png: &Path, width: u32, height: u32) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("WEIR_DASHBOARD_PNG needs Chromium (apt-get install chromium)");
    let profile = svg.with_file_name("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && png.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------- compose and Dockerfile

/// `${VAR:-default}` → default; plain text as is.
fn interpolate(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unclosed ${") + i;
        let inner = &rest[i + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} needs a default (${{VAR:-default}})"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn service_env(svc: &Yaml) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Yaml::Null => BTreeMap::new(),
        Yaml::Mapping(m) => m
            .iter()
            .map(|(k, v)| (scalar(k), interpolate(&scalar(v))))
            .collect(),
        Yaml::Sequence(s) => s
            .iter()
            .map(|kv| {
                let kv = scalar(kv);
                let (k, v) = kv.split_once('=').expect("KEY=value");
                (k.to_owned(), interpolate(v))
            })
            .collect(),
        other => panic!("environment: {other:?}"),
    }
}

fn words(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::Null => Vec::new(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Yaml::Sequence(s) => s.iter().map(scalar).collect(),
        other => panic!("not a command: {other:?}"),
    }
}

/// `(host, port)` of `scheme://host:port/…` or `host:port`.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} has no port"));
    (host.to_owned(), port.parse().unwrap())
}

/// Bind mounts of a service: container path → repo-relative source.
fn mounts(name: &str, svc: &Yaml, named: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in svc["volumes"].as_sequence().into_iter().flatten() {
        let v = scalar(v);
        let mut parts = v.split(':');
        let (src, dst) = (parts.next().unwrap(), parts.next().expect("src:dst"));
        if let Some(rel) = src.strip_prefix("./") {
            assert!(root().join(rel).exists(), "{name}: mounts missing {src}");
            out.insert(dst.to_owned(), rel.to_owned());
        } else {
            assert!(named.contains(src), "{name}: volume {src} is not declared");
        }
    }
    out
}

struct Stage {
    from: String,
    name: Option<String>,
    /// (instruction, arguments), continuation lines joined.
    steps: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let src = text("Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                logical.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (op, args) = l.split_once(' ').unwrap_or((&l, ""));
        let op = op.to_uppercase();
        if op == "FROM" {
            let w: Vec<&str> = args.split_whitespace().collect();
            stages.push(Stage {
                from: w[0].to_owned(),
                name: (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].to_owned()),
                steps: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("FROM first")
                .steps
                .push((op, args.trim().to_owned()));
        }
    }
    stages
}

/// `WEIR_*` variables a binary reads, from its `--help` (`[env: WEIR_…=]`).
fn accepted_env(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "weir {args:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let env: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|s| s.split(['=', ']']).next().unwrap().to_owned())
        .collect();
    assert!(env.len() > 5, "weir {args:?} --help shows no env: {help}");
    env
}

/// Bin targets of the workspace.
fn workspace_bins() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `.dockerignore` semantics (last matching pattern wins, `!` re-includes,
/// a pattern that matches a directory excludes all under it).
fn docker_ignored(rel: &str, patterns: &[String]) -> bool {
    fn glob(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(pp), Some(ss)) => segment(pp.as_bytes(), ss.as_bytes()) && glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
            (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
            (Some(a), Some(b)) => a == b && segment(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let mut ignored = false;
    for pat in patterns {
        let (negate, pat) = pat
            .strip_prefix('!')
            .map_or((false, pat.as_str()), |p| (true, p));
        let pat: Vec<&str> = pat.trim_matches('/').split('/').collect();
        if (1..=parts.len()).any(|n| glob(&pat, &parts[..n])) {
            ignored = !negate;
        }
    }
    ignored
}

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
