//! What `weir-bench chat` reports: each path's percentiles, where a start's
//! time went, and chat's ratios over the other paths, as a table or JSON.

use std::time::Duration;

use super::{ChatReport, Path, PathReport, Split, Start};
use crate::stats::{histogram, Percentiles};
use crate::Output;

pub(super) fn summarise(path: Path, starts: &[Start], errors: Vec<String>) -> PathReport {
    let percentiles = |f: &dyn Fn(&Start) -> Option<Duration>| {
        let mut h = histogram();
        for d in starts.iter().filter_map(f) {
            h.saturating_record((d.as_micros() as u64).max(1));
        }
        Percentiles::of(&h)
    };
    PathReport {
        path: path.name(),
        starts: starts.len() as u64,
        answered_ms: percentiles(&|s| Some(s.answered)),
        handshake_ms: percentiles(&|s| s.handshake),
        first_token_ms: percentiles(&|s| Some(s.first_token)),
        split_ms: splits(starts),
        wrong: starts.iter().filter(|s| !s.right).count() as u64 + errors.len() as u64,
        errors,
    }
}

/// The percentiles of each part of [`Split`], in ms.
fn splits(starts: &[Start]) -> Vec<(String, Percentiles)> {
    type Part = (&'static str, fn(&Split) -> f64);
    let parts: [Part; 3] = [
        ("request → created", |s| s.to_edge),
        ("created → first token ts", |s| s.to_first_emit),
        ("first token ts → received", |s| s.delivery),
    ];
    if starts.iter().all(|s| s.split.is_none()) {
        return Vec::new();
    }
    parts
        .iter()
        .map(|(name, part)| {
            let mut h = histogram();
            for sp in starts.iter().filter_map(|s| s.split.as_ref()) {
                h.saturating_record((part(sp).max(0.0) * 1000.0) as u64 + 1);
            }
            ((*name).to_owned(), Percentiles::of(&h))
        })
        .collect()
}

/// chat's first-token p50 and p99 as a ratio of each other path's.
pub(super) fn ratios(paths: &[PathReport]) -> Vec<(String, f64)> {
    let Some(chat) = paths.iter().find(|p| p.path == "chat") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for other in paths.iter().filter(|p| p.path != "chat") {
        let (a, b) = (&chat.first_token_ms, &other.first_token_ms);
        if b.p50 > 0.0 && b.p99 > 0.0 {
            out.push((format!("chat/{} p50", other.path), a.p50 / b.p50));
            out.push((format!("chat/{} p99", other.path), a.p99 / b.p99));
        }
    }
    out
}

pub(super) fn emit(out: &Output, report: &ChatReport) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if out.json {
        println!("{json}");
    } else {
        println!("{}", table(report));
    }
    if let Some(path) = &out.out {
        std::fs::write(path, &json)?;
    }
    Ok(())
}

fn table(r: &ChatReport) -> String {
    let mut t = comfy_table::Table::new();
    t.set_header(vec![
        "path",
        "starts",
        "answered p50/p99 ms",
        "handshake p50/p99 ms",
        "first token p50/p99/max ms",
        "wrong",
    ]);
    let pair = |p: &Percentiles| format!("{:.1} / {:.1}", p.p50, p.p99);
    for p in &r.paths {
        let hs = if p.handshake_ms.count > 0 {
            pair(&p.handshake_ms)
        } else {
            "-".into()
        };
        let ft = &p.first_token_ms;
        t.add_row(vec![
            p.path.to_owned(),
            p.starts.to_string(),
            pair(&p.answered_ms),
            hs,
            format!("{:.1} / {:.1} / {:.1}", ft.p50, ft.p99, ft.max),
            p.wrong.to_string(),
        ]);
    }
    let ratios: Vec<String> = r
        .ratios
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect();
    let errors: Vec<&String> = r.paths.iter().flat_map(|p| &p.errors).collect();
    let mut s = format!(
        "weir-bench chat: {} chats at once × {} rounds, replies at {} tokens/s\n{t}\n{}",
        r.chats,
        r.rounds,
        r.rate,
        ratios.join(" · ")
    );
    for p in &r.paths {
        for (name, q) in &p.split_ms {
            s.push_str(&format!(
                "\n{}: {name}: p50 {:.1} · p99 {:.1} ms",
                p.path, q.p50, q.p99
            ));
        }
    }
    for e in errors {
        s.push_str(&format!("\nerror: {e}"));
    }
    s
}
