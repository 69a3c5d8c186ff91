//! A run's results: one struct, printed as a table for people, as JSON for
//! machines (`--json`), and the latency distribution as an SVG plot (the
//! soak's time series too, [`panels_svg`]).

use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

use super::limit::LimitReport;
use super::procinfo::CpuUse;
use super::stats::Percentiles;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verify {
    /// How clients were checked: `history` (against the log), `seq` only.
    pub against: String,
    pub clients: u64,
    /// Clients whose events were exactly the log's, in order, ending with `end`.
    pub clients_ok: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Clients whose events differ from the log (digest mismatch).
    pub mismatched: u64,
    pub text_mismatches: u64,
    pub unfinished: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub settings: serde_json::Value,
    pub sessions: u64,
    pub clients: u64,
    /// Wall time of the delivery phase, seconds.
    pub seconds: f64,
    pub events: u64,
    pub frames: u64,
    pub events_per_s: f64,
    pub frames_per_s: f64,
    pub events_per_frame: f64,
    pub latency_ms: Percentiles,
    /// Latency of each client's first `stats::FIRST_EVENTS` events, and of
    /// the rest: what a user sees first, apart from the steady stream.
    pub first_events_latency_ms: Percentiles,
    pub later_events_latency_ms: Percentiles,
    pub first_event_ms: Percentiles,
    /// Where time to first event goes, each from the create request: until
    /// it answered, until the client's hello, until the producer stamped the
    /// first event (its `ts`; the rest is that event's latency).
    pub create_request_ms: Percentiles,
    pub create_to_hello_ms: Percentiles,
    pub create_to_first_ts_ms: Percentiles,
    pub reconnects: u64,
    pub reconnect_to_resume_ms: Percentiles,
    pub verify: Verify,
    pub cpu: Vec<CpuUse>,
    /// The watched processes together, without the load tool (1.0 = one core).
    pub cpu_cores_without_tool: f64,
    /// Scenario-specific numbers (RSS per connection, kill time, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub limit: Option<LimitReport>,
    /// This run against the raw limits measured in the same run.
    pub ratios: serde_json::Map<String, serde_json::Value>,
}

/// CPU of the processes under test: every watched one but the load tool.
pub fn cores_without_tool(cpu: &[CpuUse]) -> f64 {
    cpu.iter()
        .filter(|c| c.pid != std::process::id())
        .map(|c| c.cores)
        .sum()
}

fn ms(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} (n={})",
        p.p50, p.p90, p.p99, p.p999, p.max, p.count
    )
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec![format!("weir-bench {}", self.scenario), String::new()]);
        let v = &self.verify;
        let rows: Vec<(&str, String)> = vec![
            ("sessions / clients", format!("{} / {}", self.sessions, self.clients)),
            ("delivery window", format!("{:.2} s", self.seconds)),
            ("events delivered", self.events.to_string()),
            ("events/s", format!("{:.0}", self.events_per_s)),
            ("frames/s", format!("{:.0}", self.frames_per_s)),
            ("events/frame", format!("{:.2}", self.events_per_frame)),
            ("latency ms (ts → receipt)", ms(&self.latency_ms)),
            (
                "  each client's first 10 events",
                ms(&self.first_events_latency_ms),
            ),
            ("  every later event", ms(&self.later_events_latency_ms)),
            ("time to first event ms", ms(&self.first_event_ms)),
            ("  create request answered", ms(&self.create_request_ms)),
            ("  client's hello", ms(&self.create_to_hello_ms)),
            ("  first event's ts", ms(&self.create_to_first_ts_ms)),
            ("reconnects", self.reconnects.to_string()),
            ("reconnect → resumed event ms", ms(&self.reconnect_to_resume_ms)),
            (
                "check",
                format!(
                    "{}: {}/{} clients exact · lost {} · dups {} · mismatched {} · unfinished {} · bad texts {}",
                    v.against, v.clients_ok, v.clients, v.lost, v.duplicates, v.mismatched, v.unfinished, v.text_mismatches
                ),
            ),
        ];
        for (k, val) in rows {
            t.add_row(vec![k.to_owned(), val]);
        }
        for e in v.errors.iter().take(5) {
            t.add_row(vec!["error".to_owned(), e.clone()]);
        }
        for c in &self.cpu {
            let per_session = c.cpu_seconds * 1e3 / self.sessions.max(1) as f64;
            t.add_row(vec![
                format!("cpu {} (pid {})", c.name, c.pid),
                format!(
                    "{:.2} cores · {per_session:.2} ms a session · rss {:.1} MiB",
                    c.cores, c.rss_mib
                ),
            ]);
        }
        if !self.cpu.is_empty() {
            t.add_row(vec![
                "cpu without the load tool".to_owned(),
                format!("{:.2} cores", self.cpu_cores_without_tool),
            ]);
        }
        for (k, val) in self.extra.iter().chain(self.ratios.iter()) {
            t.add_row(vec![k.clone(), val.to_string()]);
        }
        let mut out = t.to_string();
        if let Some(l) = &self.limit {
            out.push('\n');
            out.push_str(&limit_table(l));
        }
        out
    }
}

pub fn limit_table(l: &LimitReport) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        format!("limit ({} B events)", l.event_bytes),
        "events/s".into(),
        "msgs/s".into(),
        "MB/s".into(),
        "lost".into(),
        "latency ms p50 / p99 / p99.9 / max".into(),
        "CPU µs/event".into(),
    ]);
    for r in &l.rows {
        let cpu: Vec<String> = r
            .cpu_us_per_event
            .iter()
            .map(|c| format!("{} {:.1}", c.name, c.us))
            .collect();
        t.add_row(vec![
            r.what.clone(),
            format!("{:.0}", r.events_per_s),
            format!("{:.0}", r.msgs_per_s),
            format!("{:.1}", r.mb_per_s),
            r.lost.to_string(),
            r.latency_ms.as_ref().map_or("-".into(), |p| {
                format!("{:.2} / {:.2} / {:.2} / {:.2}", p.p50, p.p99, p.p999, p.max)
            }),
            cpu.join(" · "),
        ]);
    }
    t.to_string()
}

/// The latency distribution (ms against percentile, log scale of 1/(1-q)),
/// as a standalone SVG.
pub fn svg(title: &str, points: &[(f64, f64)]) -> String {
    let (w, h, pad) = (720.0, 420.0, 60.0);
    let nines = |q: f64| (1.0 / (1.0 - q).max(1e-6)).log10();
    let xmax = points
        .iter()
        .map(|p| nines(p.0))
        .fold(2.0_f64, f64::max)
        .ceil();
    let ymax = points.iter().map(|p| p.1).fold(0.001_f64, f64::max) * 1.1;
    let x = |q: f64| pad + nines(q) / xmax * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / ymax * (h - 2.0 * pad);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{pad}" y="24" font-size="15">{title}</text>"#);
    let _ = write!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for i in 0..=(xmax as u32) {
        let q = 1.0 - 10f64.powi(-(i as i32));
        let label = match i {
            0 => "0%".to_owned(),
            _ => format!("{}%", 100.0 * q),
        };
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{pad}" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}" text-anchor="middle">{label}</text>"##,
            x(q),
            h - pad,
            h - pad + 18.0
        );
    }
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{pad}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/><text x="{2}" y="{3}" text-anchor="end">{v:.2}</text>"##,
            y(v),
            w - pad,
            pad - 6.0,
            y(v) + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">latency ms</text>"#,
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|(q, v)| format!("{:.1},{:.1}", x(*q), y(*v)))
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#1f6fb2" stroke-width="2" points="{}"/></svg>"##,
        path.join(" ")
    );
    s
}

/// A chart of [`panels_svg`]: lines of `(x, y)` points, each with a label.
pub struct Panel {
    pub title: String,
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

const COLOURS: &[&str] = &[
    "#1f6fb2", "#d1495b", "#2e933c", "#edae49", "#66429b", "#00798c",
];

/// Time series as a standalone SVG: panels stacked, a shared x axis in
/// seconds, each panel's y axis from 0 to its maximum.
pub fn panels_svg(title: &str, panels: &[Panel]) -> String {
    let (w, ph, pad, top) = (900.0, 190.0, 60.0, 40.0);
    let h = top + ph * panels.len() as f64 + 30.0;
    let points = || panels.iter().flat_map(|p| &p.lines).flat_map(|l| &l.1);
    let xmax = points().map(|p| p.0).fold(1.0_f64, f64::max);
    let x = |t: f64| pad + t / xmax * (w - 2.0 * pad - 170.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/><text x="{pad}" y="24" font-size="15">{title}</text>"#
    );
    for (i, panel) in panels.iter().enumerate() {
        let y0 = top + ph * i as f64;
        let (bottom, height) = (y0 + ph - 30.0, ph - 50.0);
        let ymax = panel
            .lines
            .iter()
            .flat_map(|l| &l.1)
            .map(|p| p.1)
            .fold(1e-9_f64, f64::max)
            * 1.1;
        let y = |v: f64| bottom - v / ymax * height;
        let _ = write!(
            s,
            r##"<text x="{pad}" y="{}" font-size="13">{}</text><line x1="{pad}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="black"/><line x1="{pad}" y1="{}" x2="{pad}" y2="{bottom}" stroke="black"/>"##,
            y0 + 14.0,
            panel.title,
            x(xmax),
            bottom - height
        );
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            let _ = write!(
                s,
                r##"<line x1="{pad}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{v:.0}</text>"##,
                y(v),
                x(xmax),
                pad - 6.0,
                y(v) + 4.0
            );
        }
        for k in 0..=6 {
            let t = xmax * k as f64 / 6.0;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.0} s</text>"#,
                x(t),
                bottom + 16.0
            );
        }
        for (j, (label, pts)) in panel.lines.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            let path: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="{:.1}" fill="{colour}">{label}</text>"#,
                path.join(" "),
                x(xmax) + 10.0,
                bottom - height + 14.0 * j as f64 + 8.0
            );
        }
    }
    s.push_str("</svg>");
    s
}
