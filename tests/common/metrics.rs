//! weir's metrics as `libs/telemetry/src/names.rs` defines them: every name
//! with its type, and what a name in an expression refers to.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric weir exports, with its type: the table of
/// `libs/telemetry/src/names.rs` that describing and zeroing read too.
pub fn catalogue() -> BTreeMap<String, Kind> {
    use weir_telemetry::names::{Kind as K, METRICS};
    assert!(
        METRICS.len() > 20,
        "names.rs: only {} metrics",
        METRICS.len()
    );
    METRICS
        .iter()
        .map(|m| {
            let kind = match m.kind {
                K::Counter => Kind::Counter,
                K::Gauge => Kind::Gauge,
                K::Histogram(_) => Kind::Histogram,
            };
            (m.name.to_owned(), kind)
        })
        .collect()
}

/// What a name in an expression refers to: the metric and its kind, and
/// whether it is a histogram's `_bucket`/`_sum`/`_count` series.
pub fn resolve(word: &str, cat: &BTreeMap<String, Kind>) -> Option<(String, Kind, bool)> {
    if let Some(k) = cat.get(word) {
        return Some((word.to_owned(), *k, false));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = word.strip_suffix(suffix)?;
        (cat.get(base) == Some(&Kind::Histogram)).then(|| (base.to_owned(), Kind::Histogram, true))
    })
}
