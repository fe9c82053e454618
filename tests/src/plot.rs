//! Bar charts of benchmark figures as SVG, for `docs/`: one panel per
//! measurement, one bar per device or backend, pvio's bars in colour.
//!
//! Plain SVG text with no dependency: the charts are small, and as text they
//! show up in a diff next to the tables they draw.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One measurement: a bar per contender.
#[derive(Debug, Clone)]
pub struct Panel {
    /// What was measured, e.g. "4 KiB random read, QD1".
    pub title: String,
    /// The unit of the values, e.g. "IOPS" or "µs".
    pub unit: String,
    /// Whether a smaller value is better (latency); said in the title.
    pub lower_is_better: bool,
    /// (label, value), drawn in this order.
    pub bars: Vec<(String, f64)>,
}

/// Where the benchmarks write their figures (JSON) and charts (SVG):
/// `PVIO_BENCH_OUT`, default `target/bench` in the workspace.
pub fn bench_out_dir() -> PathBuf {
    std::env::var_os("PVIO_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"))
}

/// Writes `name` (a chart or the figures) into [`bench_out_dir`]; returns
/// its path.
pub fn write_bench_file(name: &str, contents: &str) -> std::io::Result<PathBuf> {
    let dir = bench_out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, contents)?;
    Ok(path)
}

const WIDTH: f64 = 820.0;
const LABEL_W: f64 = 300.0;
const BAR_AREA: f64 = 400.0;
const BAR_H: f64 = 18.0;
const BAR_GAP: f64 = 6.0;
const PANEL_TITLE_H: f64 = 26.0;
const PANEL_GAP: f64 = 14.0;
const TOP: f64 = 58.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value as a short figure: 3 significant digits, thousands grouped.
pub fn figure(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v >= 1000.0 {
        let s = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The chart: a title, a subtitle (machine, accelerator, date), and the
/// panels one under the other. Bars whose label starts with `highlight`
/// are drawn in colour.
pub fn svg(title: &str, subtitle: &str, highlight: &str, panels: &[Panel]) -> String {
    let height = TOP
        + panels
            .iter()
            .map(|p| panel_height(p.bars.len()))
            .sum::<f64>()
        + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="16" font-weight="bold">{}</text><text x="10" y="42" fill="#555">{}</text>"##,
        esc(title),
        esc(subtitle)
    );
    let mut y = TOP;
    for p in panels {
        draw_panel(&mut s, p, y, highlight);
        y += panel_height(p.bars.len());
    }
    s.push_str("</svg>\n");
    s
}

fn panel_height(bars: usize) -> f64 {
    let n = f64::from(u32::try_from(bars).unwrap_or(u32::MAX));
    PANEL_TITLE_H + n * (BAR_H + BAR_GAP) + PANEL_GAP
}

fn draw_panel(s: &mut String, p: &Panel, y: f64, highlight: &str) {
    let better = if p.lower_is_better {
        "lower is better"
    } else {
        "higher is better"
    };
    let _ = writeln!(
        s,
        r##"<text x="10" y="{:.1}" font-weight="bold">{} <tspan font-weight="normal" fill="#555">({}, {better})</tspan></text>"##,
        y + 16.0,
        esc(&p.title),
        esc(&p.unit)
    );
    let max = p
        .bars
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let mut by = y + PANEL_TITLE_H;
    for (label, v) in &p.bars {
        let w = if max > 0.0 && v.is_finite() {
            (v / max * BAR_AREA).max(1.0)
        } else {
            0.0
        };
        let colour = if label.starts_with(highlight) {
            "#2b6cb0"
        } else {
            "#a0aec0"
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{:.1}" y="{by:.1}" width="{w:.1}" height="{BAR_H}" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            LABEL_W - 8.0,
            by + 13.0,
            esc(label),
            LABEL_W,
            LABEL_W + w + 6.0,
            by + 13.0,
            figure(*v)
        );
        by += BAR_H + BAR_GAP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel {
            title: "4 KiB random read, QD1".into(),
            unit: "IOPS".into(),
            lower_is_better: false,
            bars: vec![("pvio".into(), 3000.0), ("IDE <emulated>".into(), 1500.0)],
        }
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = svg("Block", "TCG", "pvio", &[panel()]);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains(r##"width="400.0" height="18" fill="#2b6cb0""##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"width="200.0" height="18" fill="#a0aec0""##),
            "{svg}"
        );
        assert!(svg.contains("IDE &lt;emulated&gt;"));
        assert!(svg.contains("higher is better"));
        assert!(svg.contains(">3 000<"), "{svg}");
    }

    #[test]
    fn figures_keep_three_significant_digits() {
        assert_eq!(figure(1234567.0), "1 234 567");
        assert_eq!(figure(123.4), "123");
        assert_eq!(figure(12.34), "12.3");
        assert_eq!(figure(1.234), "1.23");
        assert_eq!(figure(f64::NAN), "-");
    }
}
