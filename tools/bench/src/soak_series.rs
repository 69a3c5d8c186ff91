//! The soak's measurements: what is sampled ([`Probe`]), the sampler, and
//! the verdict on each series ([`Series::judge`]): the first third of the
//! load is warm-up; a series is flat when the mean of the last third is at
//! most `tolerance` (relative to the middle third's mean, or a small
//! absolute slack, whichever is larger) above the middle third's.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::procinfo;
use super::stats::Live;
use super::Output;

#[derive(Debug, Clone)]
pub enum Probe {
    /// Resident memory of a pid, MiB.
    Rss(u32),
    /// Open file descriptors of a pid.
    Fds(u32),
    /// The `weir_*_tasks` gauge at this metrics URL.
    Tasks(String),
    /// NATS subscriptions of the connections with this name.
    Subs(String),
    /// Every subscription on the NATS server.
    SubsTotal,
    /// The load's connected WebSocket clients (context, not judged).
    Connected,
    /// Another probe, sampled and plotted but not judged (nats-server's
    /// RSS grows with the events its stream keeps for an hour).
    Context(Box<Probe>),
}

const PANELS: [&str; 4] = ["RSS MiB", "open fds", "tokio tasks", "NATS subscriptions"];

impl Probe {
    /// The plot panel this series is drawn in.
    fn panel(&self) -> Option<&'static str> {
        match self {
            Probe::Rss(_) => Some(PANELS[0]),
            Probe::Fds(_) => Some(PANELS[1]),
            Probe::Tasks(_) => Some(PANELS[2]),
            Probe::Subs(_) | Probe::SubsTotal => Some(PANELS[3]),
            Probe::Connected => None,
            Probe::Context(p) => p.panel(),
        }
    }

    /// Growth always allowed, whatever the tolerance: the noise of a
    /// count that follows the sessions live at the instant of a sample.
    fn slack(&self) -> Option<f64> {
        match self {
            Probe::Rss(_) => Some(4.0),
            Probe::Fds(_) | Probe::Subs(_) | Probe::SubsTotal => Some(8.0),
            Probe::Tasks(_) => Some(16.0),
            Probe::Connected | Probe::Context(_) => None,
        }
    }
}

/// One sample: seconds since the start, then one value per column (NaN
/// when a read failed).
#[derive(Debug, Clone)]
pub struct Sample {
    pub t: f64,
    pub values: Vec<f64>,
}

#[derive(Clone)]
pub struct Sampler {
    probes: Arc<Vec<(String, Probe)>>,
    http: reqwest::Client,
    nats_monitor: Option<String>,
}

impl Sampler {
    pub fn new(
        probes: Vec<(String, Probe)>,
        http: reqwest::Client,
        nats_monitor: Option<String>,
    ) -> Sampler {
        Sampler {
            probes: Arc::new(probes),
            http,
            nats_monitor,
        }
    }

    pub fn columns(&self) -> Vec<(String, Probe)> {
        self.probes.to_vec()
    }

    /// Samples every `period` until `stop`, then once more.
    pub async fn every(
        self,
        period: Duration,
        origin: Instant,
        live: Arc<Live>,
        stop: CancellationToken,
    ) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => out.push(self.sample(origin, &live).await),
                _ = stop.cancelled() => break,
            }
        }
        out.push(self.sample(origin, &live).await);
        out
    }

    async fn sample(&self, origin: Instant, live: &Live) -> Sample {
        let t = origin.elapsed().as_secs_f64();
        let connz = match &self.nats_monitor {
            Some(url) => self.json(&format!("{url}/connz?subs=1&limit=100000")).await,
            None => None,
        };
        let mut values = Vec::with_capacity(self.probes.len());
        for (_, probe) in self.probes.iter() {
            let probe = match probe {
                Probe::Context(p) => p,
                p => p,
            };
            let v = match probe {
                Probe::Rss(pid) => procinfo::rss_kib(*pid).map(|k| k as f64 / 1024.0),
                Probe::Fds(pid) => std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .ok()
                    .map(|d| d.count() as f64),
                Probe::Tasks(url) => self.tasks(url).await,
                Probe::Subs(name) => connz.as_ref().map(|c| subscriptions(c, Some(name))),
                Probe::SubsTotal => connz.as_ref().map(|c| subscriptions(c, None)),
                Probe::Connected => Some(live.get(&live.connected) as f64),
                Probe::Context(_) => None,
            };
            values.push(v.unwrap_or(f64::NAN));
        }
        Sample { t, values }
    }

    async fn json(&self, url: &str) -> Option<serde_json::Value> {
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    async fn tasks(&self, url: &str) -> Option<f64> {
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            (name.starts_with("weir_") && name.ends_with("_tasks"))
                .then(|| f.next()?.parse().ok())?
        })
    }

    pub fn csv(&self, samples: &[Sample]) -> String {
        let mut out = String::from("t_s");
        for (name, _) in self.probes.iter() {
            let _ = write!(out, ",{name}");
        }
        out.push('\n');
        for s in samples {
            let _ = write!(out, "{:.1}", s.t);
            for v in &s.values {
                let _ = write!(
                    out,
                    ",{}",
                    if v.is_nan() {
                        String::new()
                    } else {
                        format!("{v:.2}")
                    }
                );
            }
            out.push('\n');
        }
        out
    }
}

/// Subscriptions of the connections named `name` (or all) in a `/connz`.
fn subscriptions(connz: &serde_json::Value, name: Option<&str>) -> f64 {
    let conns = connz["connections"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    conns
        .iter()
        .filter(|c| name.is_none_or(|n| c["name"].as_str() == Some(n)))
        .map(|c| c["subscriptions"].as_f64().unwrap_or(0.0))
        .sum()
}

/// The verdict on one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub first: f64,
    pub middle_mean: f64,
    pub last_mean: f64,
    pub max: f64,
    /// Last third's mean minus the middle third's.
    pub growth: f64,
    pub allowed: f64,
    pub flat: bool,
    /// The last sample, once every session had ended.
    pub after: f64,
}

impl Series {
    /// Judges the samples taken up to `until` (seconds: the load's end, not
    /// its drain); the very last sample is reported as `after`.
    pub fn judge(
        columns: &[(String, Probe)],
        all: &[Sample],
        until: f64,
        tolerance: f64,
    ) -> Vec<Series> {
        let samples: Vec<&Sample> = all.iter().filter(|s| s.t <= until).collect();
        let n = samples.len();
        let mean = |col: usize, from: usize, to: usize| {
            let v: Vec<f64> = samples[from..to]
                .iter()
                .map(|s| s.values[col])
                .filter(|v| !v.is_nan())
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        columns
            .iter()
            .enumerate()
            .filter_map(|(col, (name, probe))| {
                let slack = probe.slack()?;
                let (middle_mean, last_mean) =
                    (mean(col, n / 3, 2 * n / 3), mean(col, 2 * n / 3, n));
                let allowed = (middle_mean * tolerance).max(slack);
                let growth = last_mean - middle_mean;
                let values = samples
                    .iter()
                    .map(|s| s.values[col])
                    .filter(|v| !v.is_nan());
                Some(Series {
                    name: name.clone(),
                    first: samples.first().map_or(f64::NAN, |s| s.values[col]),
                    middle_mean,
                    last_mean,
                    max: values.fold(f64::NAN, f64::max),
                    growth,
                    allowed,
                    // Too few samples to tell is not flat.
                    flat: n >= 6 && growth <= allowed,
                    after: all.last().map_or(f64::NAN, |s| s.values[col]),
                })
            })
            .collect()
    }
}

/// Prints the verdict (table or JSON), writes the JSON and the plot.
pub fn emit(
    out: &Output,
    report: &serde_json::Value,
    columns: &[(String, Probe)],
    samples: &[Sample],
) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if out.json {
        println!("{json}");
    } else {
        println!("{}", table(report));
    }
    if let Some(path) = &out.out {
        std::fs::write(path, &json)?;
    }
    if let Some(path) = &out.plot {
        std::fs::write(path, plot(report, columns, samples))?;
    }
    Ok(())
}

fn table(r: &serde_json::Value) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "weir-bench soak",
        "first",
        "middle ⅓ mean",
        "last ⅓ mean",
        "max",
        "growth (allowed)",
        "flat",
        "after the load",
    ]);
    let series: Vec<Series> = serde_json::from_value(r["series"].clone()).unwrap_or_default();
    for s in &series {
        t.add_row(vec![
            s.name.clone(),
            format!("{:.1}", s.first),
            format!("{:.1}", s.middle_mean),
            format!("{:.1}", s.last_mean),
            format!("{:.1}", s.max),
            format!("{:+.1} ({:.1})", s.growth, s.allowed),
            if s.flat { "yes".into() } else { "NO".into() },
            format!("{:.1}", s.after),
        ]);
    }
    format!(
        "{t}\n{} sessions ({} exact, {} cancelled) · {} events · {} reconnects · {} samples over {:.0} s{}",
        r["sessions"], r["sessions_exact"], r["sessions_cancelled"], r["events"], r["reconnects"],
        r["samples"], r["seconds"].as_f64().unwrap_or(0.0),
        r["errors"].as_array().and_then(|e| e.first()).map_or(String::new(), |e| format!("\nfirst error: {e}")),
    )
}

/// One panel per kind of series (RSS, fds, tasks, subscriptions), a line per process.
fn plot(r: &serde_json::Value, columns: &[(String, Probe)], samples: &[Sample]) -> String {
    let panels: Vec<super::report::Panel> = PANELS
        .iter()
        .map(|title| super::report::Panel {
            title: (*title).into(),
            lines: columns
                .iter()
                .enumerate()
                .filter(|(_, (_, p))| p.panel() == Some(*title))
                .map(|(col, (name, _))| {
                    let points = samples.iter().map(|s| (s.t, s.values[col]));
                    (name.clone(), points.filter(|p| !p.1.is_nan()).collect())
                })
                .collect(),
        })
        .filter(|p| !p.lines.is_empty())
        .collect();
    let title = format!(
        "weir-bench soak: {} sessions, {} reconnects over {:.0} s (first third = warm-up)",
        r["sessions"],
        r["reconnects"],
        r["seconds"].as_f64().unwrap_or(0.0)
    );
    super::report::panels_svg(&title, &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: impl Fn(usize) -> f64, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                t: i as f64 * 5.0,
                values: vec![values(i)],
            })
            .collect()
    }

    fn judged(values: impl Fn(usize) -> f64, n: usize) -> Series {
        let columns = [("edge_rss_mib".to_owned(), Probe::Rss(1))];
        Series::judge(&columns, &samples(values, n), 1e9, 0.10).remove(0)
    }

    #[test]
    fn warm_up_and_noise_are_flat_growth_is_not() {
        // Climbs during warm-up, then wobbles around 100.
        let warm = judged(
            |i| {
                if i < 10 {
                    10.0 * i as f64
                } else {
                    100.0 + (i % 3) as f64
                }
            },
            30,
        );
        assert!(warm.flat, "{warm:?}");
        // 2 MiB per sample, steadily: 20 MiB from the middle third to the
        // last (1 MiB per sample, 10 MiB on 115, is within the 10 %).
        let leak = judged(|i| 100.0 + 2.0 * i as f64, 30);
        assert!(!leak.flat && leak.growth > leak.allowed, "{leak:?}");
        // Too few samples to tell.
        assert!(!judged(|_| 1.0, 5).flat);
    }

    #[test]
    fn samples_after_the_load_are_reported_not_judged() {
        let columns = [("edge_tasks".to_owned(), Probe::Tasks(String::new()))];
        let s = samples(|i| if i < 30 { 50.0 } else { 500.0 }, 31);
        let series = Series::judge(&columns, &s, 29.0 * 5.0, 0.10).remove(0);
        assert!(series.flat);
        assert_eq!((series.last_mean, series.after), (50.0, 500.0));
    }

    #[test]
    fn subscriptions_are_counted_per_connection_name() {
        let connz = serde_json::json!({"connections": [
            {"name": "edge-0", "subscriptions": 5},
            {"name": "edge-1", "subscriptions": 2},
            {"name": "edge-0", "subscriptions": 1},
        ]});
        assert_eq!(subscriptions(&connz, Some("edge-0")), 6.0);
        assert_eq!(subscriptions(&connz, None), 8.0);
    }
}
