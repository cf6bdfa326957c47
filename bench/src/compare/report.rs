//! Rendering of the comparison: number formats, markdown tables and the throughput plot (a
//! hand-written SVG line chart, log-scaled, one panel per operation).

use std::fmt::Write as _;

/// Operations per second, short.
pub fn per_s(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.0} /s")
    }
}

/// Microseconds, short.
pub fn us(d: f64) -> String {
    if d >= 10_000.0 {
        format!("{:.1} ms", d / 1_000.0)
    } else if d >= 1_000.0 {
        format!("{:.2} ms", d / 1_000.0)
    } else {
        format!("{d:.0} µs")
    }
}

/// A ratio of platepool's figure to another's ("12.3×").
pub fn ratio(platepool: f64, other: f64) -> String {
    if other <= 0.0 {
        "—".into()
    } else {
        format!("{:.1}×", platepool / other)
    }
}

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| "---|").collect::<String>()
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

/// One line of a panel: a name and a value per x.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// One panel of the plot.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub xs: Vec<usize>,
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#6baed6", "#2ca02c", "#9467bd", "#8c564b",
];
const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 320.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 50.0;
const LEGEND_H: f64 = 90.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Panels side by side, throughput on a log axis against calls in flight; a shared legend.
pub fn svg(panels: &[Panel], caption: &str) -> String {
    let names: Vec<&str> = panels
        .first()
        .map(|p| p.series.iter().map(|s| s.name.as_str()).collect())
        .unwrap_or_default();
    let width = PANEL_W * panels.len().max(1) as f64;
    let height = PANEL_H + LEGEND_H;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    for (k, panel) in panels.iter().enumerate() {
        panel_svg(&mut out, panel, PANEL_W * k as f64);
    }
    for (i, name) in names.iter().enumerate() {
        let x = MARGIN_L + (i % 3) as f64 * 260.0;
        let y = PANEL_H + 15.0 + (i / 3) as f64 * 22.0;
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0,
            escape(name)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{MARGIN_L}" y="{}" fill="#555">{}</text>"##,
        height - 12.0,
        escape(caption)
    );
    out.push_str("</svg>\n");
    out
}

fn panel_svg(out: &mut String, panel: &Panel, x0: f64) {
    let (left, top) = (x0 + MARGIN_L, MARGIN_T);
    let (w, h) = (PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B);
    let values = panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| *v > 0.0);
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return;
    }
    let lo_exp = lo.log10().floor() as i32;
    let hi_exp = hi.log10().ceil().max(lo.log10().floor() + 1.0) as i32;
    let y_of = |v: f64| {
        let f = (v.max(1e-9).log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
        top + h - f * h
    };
    let n = panel.xs.len().max(2) as f64;
    let x_of = |i: usize| left + w * i as f64 / (n - 1.0);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        left,
        escape(&panel.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
    );
    for e in lo_exp..=hi_exp {
        let y = y_of(10f64.powi(e));
        let label = match e {
            e if e >= 6 => format!("{}M/s", 10u64.pow((e - 6) as u32)),
            e if e >= 3 => format!("{}k/s", 10u64.pow((e - 3) as u32)),
            e => format!("{}/s", 10u64.pow(e.max(0) as u32)),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            left + w,
            left - 6.0,
            y + 4.0
        );
    }
    for (i, x) in panel.xs.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{x}</text>"#,
            x_of(i),
            top + h + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">calls in flight</text>"#,
        left + w / 2.0,
        top + h + 38.0
    );
    for (k, s) in panel.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"#,
            points.join(" ")
        );
        for p in &points {
            if let Some((x, y)) = p.split_once(',') {
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>"#);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_line_per_series_and_panel() {
        let panel = Panel {
            title: "draw".into(),
            xs: vec![1, 16, 64, 256],
            series: vec![
                Series {
                    name: "platepool".into(),
                    values: vec![1_000.0, 10_000.0, 30_000.0, 35_000.0],
                },
                Series {
                    name: "PostgreSQL".into(),
                    values: vec![300.0, 2_000.0, 3_000.0, 3_100.0],
                },
            ],
        };
        let out = svg(&[panel.clone(), panel], "caption");
        assert_eq!(out.matches("<polyline").count(), 4);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
    }

    #[test]
    fn formats() {
        assert_eq!(per_s(35_400.0), "35.4 k/s");
        assert_eq!(us(825.0), "825 µs");
        assert_eq!(ratio(10.0, 2.0), "5.0×");
    }
}
