//! The edge's resident memory over a streaming run: idle before any client
//! connects, the peak while they read (sampled every 50 ms), at the end, and
//! the growth per client — what fan-out costs the edge per subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::procinfo::{rss_kib, Watched};

/// The `--watch` name of the process to follow.
const EDGE: &str = "edge";

pub struct RssWatch {
    pid: u32,
    idle: u64,
    peak: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    /// Starts following the process watched as `edge=<pid>`, if any.
    pub fn start(watched: &[Watched]) -> Option<RssWatch> {
        let pid = watched.iter().find(|w| w.name == EDGE)?.pid;
        let idle = rss_kib(pid)?;
        let peak = Arc::new(AtomicU64::new(idle));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                }
            })
        };
        Some(RssWatch {
            pid,
            idle,
            peak,
            sampler,
        })
    }

    /// Stops sampling and adds `edge_rss_*` to the report's extra rows.
    pub fn finish(self, clients: u64, extra: &mut Map<String, Value>) {
        self.sampler.abort();
        let end = rss_kib(self.pid).unwrap_or(0);
        let peak = self.peak.load(Ordering::Relaxed).max(end);
        let per_client = peak.saturating_sub(self.idle) as f64 / clients.max(1) as f64;
        extra.insert("edge_rss_idle_mib".into(), json!(mib(self.idle)));
        extra.insert("edge_rss_peak_mib".into(), json!(mib(peak)));
        extra.insert("edge_rss_end_mib".into(), json!(mib(end)));
        extra.insert(
            "edge_rss_peak_above_idle_mib".into(),
            json!(mib(peak.saturating_sub(self.idle))),
        );
        extra.insert(
            "edge_rss_per_subscriber_kib".into(),
            json!((per_client * 10.0).round() / 10.0),
        );
    }
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_the_edge_and_reports_growth_per_client() {
        let me = Watched {
            name: EDGE.into(),
            pid: std::process::id(),
        };
        assert!(RssWatch::start(&[]).is_none());
        let w = RssWatch::start(&[me]).expect("this process");
        let grown: Vec<u8> = vec![1; 8 << 20]; // 8 MiB, touched
        tokio::time::sleep(Duration::from_millis(120)).await;
        let mut extra = Map::new();
        w.finish(1024, &mut extra);
        assert!(grown.iter().all(|b| *b == 1));
        let above = extra["edge_rss_peak_above_idle_mib"].as_f64().unwrap();
        assert!(above >= 7.0, "the 8 MiB were seen: {above}");
        let per = extra["edge_rss_per_subscriber_kib"].as_f64().unwrap();
        assert!(
            (per - above * 1024.0 / 1024.0).abs() < 1.0,
            "{per} vs {above}"
        );
    }
}
