//! A real `prometheus` process on a free port (killed on drop) and its HTTP
//! API, and the repository's `prometheus.yml` pointed at a test's processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_norway::Value as Yaml;

use super::files::{root, tool, yaml, ALERTS, PROMETHEUS_YML};
use super::{free_port, http};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
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
pub struct Prometheus {
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
    pub async fn start(dir: &Path, config: &str) -> Prometheus {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `data` of an API answer, or the error Prometheus gave.
    pub async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
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

    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self
            .api("/api/v1/query", &[("query", expr.to_owned())])
            .await?;
        Ok(samples(&data))
    }

    pub async fn query_range(
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
    pub async fn wait_for(&self, what: &str, expr: &str, within: Duration) -> Vec<Sample> {
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
pub fn scrape_config(edges: &[String], producers: &[String]) -> String {
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
