//! The PromQL expressions of the Grafana dashboards (panels and template
//! variables) and of the alert rules, and the metrics each one selects.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::files::{json_file, yaml, ALERTS, DASHBOARDS};
use super::metrics::{resolve, Kind};

#[derive(Debug, Clone)]
pub enum Origin {
    Panel,
    /// A `label_values(expr, label)` template variable.
    Variable(String),
    Alert(String),
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub at: String,
    pub expr: String,
    pub origin: Origin,
}

pub fn dashboard_exprs(rel: &str) -> Vec<Expr> {
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

pub fn alert_exprs() -> Vec<Expr> {
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

pub fn all_exprs() -> Vec<Expr> {
    let mut out: Vec<Expr> = DASHBOARDS.iter().flat_map(|d| dashboard_exprs(d)).collect();
    out.extend(alert_exprs());
    out
}

/// Every `weir_…` name an expression selects, with the function it sits
/// directly in (`rate`, `sum`, …; `aggregation` after a `by (…)` clause).
pub fn references(expr: &str) -> Vec<(String, String)> {
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
pub fn needs(expr: &str, cat: &BTreeMap<String, Kind>) -> BTreeSet<String> {
    references(expr)
        .iter()
        .filter_map(|(w, _)| resolve(w, cat).map(|(base, _, _)| base))
        .collect()
}
