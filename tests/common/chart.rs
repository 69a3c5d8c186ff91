//! The main panels of the *weir overview* dashboard drawn from a live
//! Prometheus, as Grafana would show them: an SVG, and a PNG of it through
//! headless Chromium.

use std::path::Path;
use std::process::Command;

use super::files::{json_file, DASHBOARDS};
use super::prometheus::Prometheus;

/// The overview panels drawn in the README's picture, by title.
const RENDERED: [&str; 9] = [
    "Events /s",
    "Delivery latency (event ts → socket)",
    "Time to first token",
    "Events per frame",
    "Bytes sent /s",
    "Connections",
    "Buffer fill when a frame is sent",
    "Log reads /s",
    "WebSocket closes /s by code",
];

const PALETTE: [&str; 8] = [
    "#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#FADE2A",
];

struct Chart {
    title: String,
    unit: String,
    threshold: Option<f64>,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Queries Prometheus for the main overview panels, as Grafana would, and
/// draws them (SVG). Returns the SVG and its size.
pub async fn render_overview(prom: &Prometheus, from: f64, to: f64) -> (String, u32, u32) {
    let d = json_file(DASHBOARDS[0]);
    let panels = d["panels"].as_array().unwrap();
    let mut charts = Vec::new();
    for title in RENDERED {
        let p = panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("the overview has no panel {title:?}"));
        let defaults = &p["fieldConfig"]["defaults"];
        let threshold = defaults["custom"]["thresholdsStyle"]
            .is_object()
            .then(|| {
                defaults["thresholds"]["steps"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()["value"]
                    .as_f64()
            })
            .flatten();
        let mut series = Vec::new();
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "4s");
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for (labels, points) in prom.query_range(&expr, from, to, 1.0).await.unwrap() {
                let mut name = legend.to_owned();
                for (k, v) in &labels {
                    name = name.replace(&format!("{{{{{k}}}}}"), v);
                }
                series.push((name, points));
            }
        }
        charts.push(Chart {
            title: title.to_owned(),
            unit: defaults["unit"].as_str().unwrap_or("short").to_owned(),
            threshold,
            series,
        });
    }
    draw(&charts, from, to)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn si(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{suffix}")
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v == 0.0 => "0".into(),
        "s" if v < 1e-3 => format!("{} µs", si(v * 1e6)),
        "s" if v < 1.0 => format!("{} ms", si(v * 1e3)),
        "s" => format!("{} s", si(v)),
        "percentunit" => format!("{:.0}%", v * 100.0),
        "Bps" => format!("{}B/s", si(v)),
        "ops" | "reqps" => format!("{}/s", si(v)),
        _ => si(v),
    }
}

fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * 0.9999)
        .unwrap()
}

fn clock(t: f64) -> String {
    let s = t as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn draw(charts: &[Chart], from: f64, to: f64) -> (String, u32, u32) {
    let (cols, pw, ph, gap, top) = (3usize, 500.0, 280.0, 12.0, 58.0);
    let rows = charts.len().div_ceil(cols);
    let width = cols as f64 * pw + (cols + 1) as f64 * gap;
    let height = top + rows as f64 * (ph + gap);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Inter, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#111217"/>
<text x="{gap}" y="34" font-size="20" fill="#D8D9DA">weir overview</text>
<text x="{}" y="34" font-size="12" fill="#8E8E8E" text-anchor="end">Prometheus scraping a live edge and producer every 1 s while mock sessions stream (tests/live_stack.rs), UTC</text>
"##,
        width - gap
    );
    for (i, ch) in charts.iter().enumerate() {
        let x = gap + (i % cols) as f64 * (pw + gap);
        let y = top + (i / cols) as f64 * (ph + gap);
        draw_chart(&mut s, ch, (x, y, pw, ph), from, to);
    }
    s.push_str("</svg>\n");
    (s, width as u32, height as u32)
}

fn draw_chart(s: &mut String, ch: &Chart, (x, y, w, h): (f64, f64, f64, f64), from: f64, to: f64) {
    use std::fmt::Write;
    let (px0, px1, py0, py1) = (x + 62.0, x + w - 14.0, y + 36.0, y + h - 50.0);
    let _ = writeln!(
        s,
        r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181B1F" stroke="#2C3235"/>
<text x="{}" y="{}" font-size="13" font-weight="600" fill="#CCCCDC">{}</text>"##,
        x + 12.0,
        y + 22.0,
        esc(&ch.title)
    );
    let top = ch
        .series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .chain(ch.threshold)
        .fold(0.0, f64::max);
    let ymax = nice_ceiling(top * 1.05);
    let sx = |t: f64| px0 + (t - from) / (to - from) * (px1 - px0);
    let sy = |v: f64| py1 - v / ymax * (py1 - py0);
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{px0}" y1="{yy:.1}" x2="{px1}" y2="{yy:.1}" stroke="#2C3235"/><text x="{}" y="{:.1}" font-size="10" fill="#8E8E8E" text-anchor="end">{}</text>"##,
            px0 - 6.0,
            yy + 3.5,
            esc(&fmt_value(v, &ch.unit))
        );
        let t = from + (to - from) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="10" fill="#8E8E8E" text-anchor="middle">{}</text>"##,
            sx(t),
            py1 + 14.0,
            clock(t)
        );
    }
    if let Some(t) = ch.threshold {
        let _ = writeln!(
            s,
            r##"<line x1="{px0}" y1="{0:.1}" x2="{px1}" y2="{0:.1}" stroke="#F2495C" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" font-size="10" fill="#F2495C" text-anchor="end">budget {3}</text>"##,
            sy(t),
            px1 - 4.0,
            sy(t) - 4.0,
            esc(&fmt_value(t, &ch.unit))
        );
    }
    for (i, (_, points)) in ch.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for run in points.split(|(_, v)| !v.is_finite()) {
            if run.is_empty() {
                continue;
            }
            let line: Vec<String> = run
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", sx(*t), sy(*v)))
                .collect();
            let (first, last) = (run[0].0, run[run.len() - 1].0);
            let _ = writeln!(
                s,
                r##"<polygon points="{:.1},{py1} {} {:.1},{py1}" fill="{color}" fill-opacity="0.12"/><polyline points="{}" fill="none" stroke="{color}" stroke-width="1.6"/>"##,
                sx(first),
                line.join(" "),
                sx(last),
                line.join(" ")
            );
        }
    }
    let mut lx = px0;
    for (i, (name, _)) in ch.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let ly = y + h - 16.0;
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="4" rx="1" fill="{color}"/><text x="{}" y="{ly}" font-size="11" fill="#CCCCDC">{}</text>"##,
            ly - 5.0,
            lx + 19.0,
            esc(name)
        );
        lx += 32.0 + name.chars().count() as f64 * 6.3;
    }
}

/// Headless Chromium's screenshot of the SVG.
pub fn screenshot(svg: &Path, png: &Path, width: u32, height: u32) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("WEIR_DASHBOARD_PNG needs Chromium (apt-get install chromium)");
    let profile = svg.with_file_name("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && png.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
