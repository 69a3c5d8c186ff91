//! The repository's files as the tests read them (text, JSON, YAML with
//! merge keys applied), the dashboards and Prometheus configs by path, and
//! the external tools the checks run.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_norway::Value as Yaml;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

pub fn json_file(rel: &str) -> Value {
    serde_json::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

pub fn yaml(rel: &str) -> Yaml {
    let mut v: Yaml =
        serde_norway::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
    v
}

pub fn tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the observability tests need Debian's `prometheus` package \
         (apt-get install -y prometheus; scripts/setup.sh installs it)"
    );
    path
}

pub const DASHBOARDS: [&str; 2] = [
    "dashboards/grafana/weir-overview.json",
    "dashboards/grafana/weir-node.json",
];
pub const ALERTS: &str = "dashboards/prometheus/alerts.yml";
pub const PROMETHEUS_YML: &str = "dashboards/prometheus/prometheus.yml";
