//! The Helm chart (`deploy/helm/weir`) as Helm and Kubernetes see it:
//! rendered and linted by Helm v4's own library, every object checked by
//! `kubernetes-validate --strict` against Kubernetes' schemas. Both tools
//! are pinned in `.tools/helm` by `scripts/setup.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use super::files::{root, text};

pub const CHART: &str = "deploy/helm/weir";
pub const PRODUCTION: &str = "deploy/helm/weir/examples/production.yaml";
pub const INGRESS: &str = "deploy/helm/weir/examples/ingress-nginx.yaml";
/// The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and
/// the newest kubernetes-validate knows.
pub const KUBERNETES: [&str; 2] = ["1.27.0", "1.37.0"];
/// Kinds from CRDs (prometheus-operator, Gateway API): no schema in
/// kubernetes-validate; the tests check what weir needs of them.
pub const CRD_KINDS: [&str; 3] = ["ServiceMonitor", "PrometheusRule", "HTTPRoute"];

fn tool(name: &str) -> PathBuf {
    let p = root().join(".tools/helm/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs helm-python-sdk and \
         kubernetes-validate into .tools/helm)",
        p.display()
    );
    p
}

/// A repository YAML file as chart values (JSON).
pub fn values_file(rel: &str) -> Value {
    serde_norway::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// `base` with `over` merged in, key by key (objects), as `helm -f a -f b` does.
pub fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = a.clone();
            for (k, v) in b {
                let merged_v = out.get(k).map_or_else(|| v.clone(), |old| merged(old, v));
                out.insert(k.clone(), merged_v);
            }
            Value::Object(out)
        }
        (_, over) => over.clone(),
    }
}

fn run_helm_py(args: &[&str], values: &Value) -> Result<String, String> {
    let file = tempfile(&values.to_string(), "values.json");
    let out = Command::new(tool("python"))
        .arg(root().join("tests/common/helm.py"))
        .arg(args[0])
        .arg(root().join(CHART))
        .arg(&file)
        .args(&args[1..])
        .output()
        .expect("run tests/common/helm.py");
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn tempfile(content: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm");
    std::fs::create_dir_all(&dir).unwrap();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let p = dir.join(format!("{}-{seq}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p
}

/// The chart rendered with `values` as release `weir` in namespace `weir`:
/// every object, or Helm's error (schema or template).
pub fn try_render(values: &Value) -> Result<Vec<Value>, String> {
    let out = run_helm_py(&["render", "weir", "weir"], values)?;
    let manifests: BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    let mut objects = Vec::new();
    for (path, manifest) in &manifests {
        if path.ends_with("NOTES.txt") {
            continue;
        }
        for doc in serde_norway::Deserializer::from_str(manifest) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path} renders YAML that does not parse: {e}"));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    Ok(objects)
}

pub fn render(values: &Value) -> Vec<Value> {
    try_render(values).unwrap_or_else(|e| panic!("helm render failed: {e}"))
}

/// `helm lint --strict`'s findings of warning severity or worse.
pub fn lint_problems(values: &Value) -> Vec<Value> {
    let out = run_helm_py(&["lint"], values).unwrap_or_else(|e| panic!("helm lint: {e}"));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["total_charts_linted"], 1, "{report}");
    let mut problems: Vec<Value> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
        .cloned()
        .collect();
    problems.extend(report["errors"].as_array().unwrap().iter().cloned());
    problems
}

/// Runs `kubernetes-validate --strict` on every object against `version`;
/// returns its complaints: errors, and warnings about any kind that is not
/// one of [`CRD_KINDS`].
pub fn kubernetes_complaints(objects: &[Value], version: &str) -> Vec<String> {
    let docs: Vec<String> = objects.iter().map(Value::to_string).collect();
    let file = tempfile(&docs.join("\n---\n"), "objects.yaml");
    let out = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "-k", version])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let _ = std::fs::remove_file(&file);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut complaints: Vec<String> = report
        .lines()
        .filter(|l| {
            l.starts_with("ERROR")
                || l.starts_with("FATAL")
                || (l.starts_with("WARN")
                    && !CRD_KINDS.iter().any(|k| l.contains(&format!("kind {k} "))))
        })
        .map(str::to_owned)
        .collect();
    let passed = report.lines().filter(|l| l.starts_with("INFO")).count();
    let crds = objects
        .iter()
        .filter(|o| CRD_KINDS.contains(&o["kind"].as_str().unwrap()))
        .count();
    if complaints.is_empty() && (!out.status.success() || passed + crds != objects.len()) {
        complaints.push(format!(
            "kubernetes-validate exited {:?}, {passed} of {} objects passed: {report}{}",
            out.status.code(),
            objects.len(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    complaints
}

/// The one object of `kind` whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter(|o| o["metadata"]["name"].as_str().unwrap().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{kind} *{suffix}: found {}", found.len());
    found[0]
}

pub fn all<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The container of a Deployment.
pub fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container's `env` by name.
pub fn env(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// A plain `value:` of the container's environment.
pub fn env_value(container: &Value, name: &str) -> String {
    env(container)
        .get(name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} has no plain value in {}", container["name"]))
}

/// A container port's number, by the port's name.
pub fn port_named(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{} has no port {name}", container["name"]))["containerPort"]
        .as_u64()
        .unwrap()
}

/// A Secret with `stringData`, as a user would create for `existingSecret`.
pub fn user_secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> =
        data.iter().map(|(k, v)| ((*k).into(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "type": "Opaque", "stringData": data})
}

/// A key of a Secret (`data` base64-decoded, or `stringData`).
pub fn secret_value(secret: &Value, key: &str) -> Option<String> {
    use base64::Engine;
    if let Some(s) = secret["stringData"][key].as_str() {
        return Some(s.to_owned());
    }
    let b64 = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("{key} is not base64: {e}"));
    Some(String::from_utf8(bytes).unwrap())
}
