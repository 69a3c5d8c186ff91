//! The `Dockerfile` split into stages and instructions, `.dockerignore`
//! matching, and the workspace's binary targets (from `cargo metadata`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::files::{root, text};

pub struct Stage {
    pub from: String,
    pub name: Option<String>,
    /// (instruction, arguments), continuation lines joined.
    pub steps: Vec<(String, String)>,
}

pub fn dockerfile() -> Vec<Stage> {
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

/// Bin targets of the workspace's product: every package but the tools
/// under `tools/` (the load tool is not shipped).
pub fn workspace_bins() -> BTreeSet<String> {
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
        .filter(|p| {
            let manifest = p["manifest_path"].as_str().unwrap();
            !Path::new(manifest).starts_with(root().join("tools"))
        })
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `.dockerignore` semantics (last matching pattern wins, `!` re-includes,
/// a pattern that matches a directory excludes all under it).
pub fn docker_ignored(rel: &str, patterns: &[String]) -> bool {
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

/// The runtime image's environment: the `ENV K=V` steps of the last stage.
pub fn runtime_env() -> BTreeMap<String, String> {
    let stages = dockerfile();
    let mut env = BTreeMap::new();
    for (op, args) in &stages.last().expect("a stage").steps {
        if op == "ENV" {
            for kv in args.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("ENV K=V");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}
