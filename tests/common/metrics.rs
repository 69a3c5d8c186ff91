//! weir's metrics as `libs/telemetry/src/names.rs` defines them: every name
//! with its type, and what a name in an expression refers to.

use std::collections::BTreeMap;

use super::files::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric of `libs/telemetry/src/names.rs`, with its type (from the
/// `describe_*!` calls, cross-checked with `HISTOGRAMS`).
pub fn catalogue() -> BTreeMap<String, Kind> {
    let src = text("libs/telemetry/src/names.rs");
    let mut consts = BTreeMap::new();
    for line in src.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const ") {
            if let Some((ident, tail)) = rest.split_once(": &str = \"") {
                let name = tail.split('"').next().unwrap();
                consts.insert(ident.to_owned(), name.to_owned());
            }
        }
    }
    assert!(consts.len() > 20, "names.rs: found only {consts:?}");
    let flat = src.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut kinds = BTreeMap::new();
    for (mac, kind) in [
        ("describe_counter!(", Kind::Counter),
        ("describe_gauge!(", Kind::Gauge),
        ("describe_histogram!(", Kind::Histogram),
    ] {
        for part in flat.split(mac).skip(1) {
            let ident: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let name = consts
                .get(&ident)
                .unwrap_or_else(|| panic!("names.rs describes unknown {ident}"));
            assert!(
                kinds.insert(name.clone(), kind).is_none(),
                "{name} described twice"
            );
        }
    }
    for name in consts.values() {
        let kind = kinds
            .get(name)
            .unwrap_or_else(|| panic!("{name} is never described"));
        let bucketed = weir_telemetry::names::HISTOGRAMS
            .iter()
            .any(|(n, _)| n == name);
        assert_eq!(
            *kind == Kind::Histogram,
            bucketed,
            "{name}: described as {kind:?}, HISTOGRAMS disagrees"
        );
        match kind {
            Kind::Counter => assert!(name.ends_with("_total"), "counter {name} without _total"),
            _ => assert!(
                !name.ends_with("_total"),
                "{kind:?} {name} named like a counter"
            ),
        }
    }
    kinds
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
