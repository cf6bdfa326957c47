//! The self-contained HTML report: one file, inline CSS and SVG charts, no script, no external
//! resource, so an operator can open it offline and send it on. Written as well-formed XHTML-style
//! markup (every element closed, every attribute quoted, text escaped).

use std::fmt::Write as _;

use crate::report::{Latency, Report};

/// Escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #dde;padding-bottom:4px}
.sub{color:#667;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #dde;border-radius:8px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:20px}.card span{color:#667;font-size:12px}
.ok{color:#137333}.bad{color:#b3261e}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #dde;padding:4px 8px;text-align:right}
th{background:#f4f5f8}td.l,th.l{text-align:left}
svg{background:#fbfbfd;border:1px solid #e4e6ee;border-radius:6px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
code{font-size:12px}
";

fn card(o: &mut String, value: &str, label: &str, class: &str) {
    let _ = write!(
        o,
        "<div class=\"card\"><b class=\"{}\">{}</b><span>{}</span></div>",
        esc(class),
        esc(value),
        esc(label)
    );
}

fn legend(o: &mut String, items: &[(&str, &str)]) {
    o.push_str("<div class=\"legend\">");
    for (color, label) in items {
        let _ = write!(
            o,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
            esc(color),
            esc(label)
        );
    }
    o.push_str("</div>");
}

/// A "nice" upper bound for an axis.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let exp = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * exp {
            return m * exp;
        }
    }
    10.0 * exp
}

/// Reads one count of a second of the timeline.
type SecondField = fn(&crate::recorder::Second) -> u64;

/// Throughput over time: offered, accepted and errors per second, arrivals, and the opening.
fn throughput_svg(r: &Report) -> String {
    let (w, h, left, bottom, top, right) = (1000.0, 300.0, 60.0, 30.0, 12.0, 12.0);
    let n = r.timeline.len().max(2);
    let max = r
        .timeline
        .iter()
        .map(|s| s.offered.max(s.accepted).max(s.arrivals))
        .max()
        .unwrap_or(0) as f64;
    let ymax = nice(max);
    let x = |i: f64| left + (w - left - right) * i / (n as f64 - 1.0).max(1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / ymax);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"throughput over time\">"
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = write!(
            o,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e4e6ee\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667\">{}</text>",
            w - right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0,
            v.round()
        );
    }
    let step = (n / 12).max(1);
    for i in (0..n).step_by(step) {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#667\">{i}s</text>",
            x(i as f64),
            h - 10.0
        );
    }
    let open = r.opening_at_secs;
    if open >= 0.0 && open <= (n - 1) as f64 {
        let _ = write!(
            o,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#b3261e\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#b3261e\">opening</text>",
            x(open),
            x(open),
            h - bottom,
            x(open) + 4.0,
            top + 12.0
        );
    }
    let series: [(&str, SecondField); 4] = [
        ("#8a94a6", |s| s.arrivals),
        ("#1a73e8", |s| s.offered),
        ("#137333", |s| s.accepted),
        ("#b3261e", |s| s.errors),
    ];
    for (color, get) in series {
        let pts: Vec<String> = r
            .timeline
            .iter()
            .enumerate()
            // Each second's count is drawn at the second's middle.
            .map(|(i, s)| {
                format!(
                    "{:.1},{:.1}",
                    x(i as f64 + 0.5).min(w - right),
                    y(get(s) as f64)
                )
            })
            .collect();
        if !pts.is_empty() {
            let _ = write!(
                o,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
    }
    o.push_str("</svg>");
    o
}

/// Latency per step: p50, p99 and p99.9 bars on a log scale.
fn latency_svg(r: &Report) -> String {
    let steps: Vec<_> = r.steps.iter().filter(|s| s.latency.count > 0).collect();
    let row = 34.0;
    let (w, left, right, top) = (1000.0, 130.0, 190.0, 24.0);
    let h = top + row * steps.len().max(1) as f64 + 10.0;
    let max = steps.iter().map(|s| s.latency.p999_ms).fold(1.0, f64::max);
    let lo = 0.1f64;
    let hi = nice(max).max(1.0);
    let x = |ms: f64| left + (w - left - right) * ((ms.max(lo) / lo).log10() / (hi / lo).log10());
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"latency per step\">"
    );
    let mut tick = lo;
    while tick <= hi * 1.0001 {
        let _ = write!(
            o,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#e4e6ee\"/><text x=\"{:.1}\" y=\"14\" font-size=\"11\" text-anchor=\"middle\" fill=\"#667\">{} ms</text>",
            x(tick),
            x(tick),
            top - 4.0,
            h - 6.0,
            x(tick),
            tick
        );
        tick *= 10.0;
    }
    for (i, s) in steps.iter().enumerate() {
        let y0 = top + row * i as f64;
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y0 + 18.0,
            esc(&s.name)
        );
        let Latency {
            p50_ms,
            p99_ms,
            p999_ms,
            ..
        } = s.latency;
        for (k, (v, color)) in [
            (p999_ms, "#f2b8b5"),
            (p99_ms, "#ee675c"),
            (p50_ms, "#1a73e8"),
        ]
        .iter()
        .enumerate()
        {
            let hgt = [22.0, 16.0, 10.0][k];
            let _ = write!(
                o,
                "<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hgt}\" fill=\"{color}\"/>",
                y0 + 4.0 + (22.0 - hgt) / 2.0,
                (x(*v) - left).max(1.0)
            );
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#444\">{:.1} / {:.1} / {:.1}</text>",
            x(p999_ms) + 4.0,
            y0 + 19.0,
            p50_ms,
            p99_ms,
            p999_ms
        );
    }
    o.push_str("</svg>");
    o
}

/// Horizontal bars of (label, value, color) against `max`.
fn bars_svg(label: &str, rows: &[(String, f64, &str, String)], max: f64) -> String {
    let row = 26.0;
    let (w, left, right) = (1000.0, 200.0, 140.0);
    let h = row * rows.len().max(1) as f64 + 8.0;
    let max = if max > 0.0 { max } else { 1.0 };
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    for (i, (name, v, color, text)) in rows.iter().enumerate() {
        let y0 = 4.0 + row * i as f64;
        let width = ((w - left - right) * v / max).max(if *v > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"18\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#444\">{}</text>",
            left - 8.0,
            y0 + 14.0,
            esc(name),
            y0,
            esc(color),
            left + width + 6.0,
            y0 + 14.0,
            esc(text)
        );
    }
    o.push_str("</svg>");
    o
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The whole report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let s = &r.scenario;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>platepool loadtest — {}</title><style>{CSS}</style></head><body>",
        esc(&s.name)
    );
    let _ = write!(
        o,
        "<h1>Pool-opening rehearsal: {}</h1><p class=\"sub\">{} · {} · office <code>{}</code> · release {} ({} numbers) · opening {} · run tag {:05}</p>",
        esc(&s.name),
        esc(&r.tool),
        esc(&r.target),
        esc(&r.office),
        esc(&r.release_id),
        r.release_total,
        esc(&r.opens_at),
        r.run_tag
    );
    o.push_str("<div class=\"cards\">");
    let claimed = r.buyers.outcomes.get("claimed").copied().unwrap_or(0);
    card(
        &mut o,
        &format!("{} / {}", r.buyers.finished, r.buyers.total),
        "buyers finished",
        if r.buyers.finished == r.buyers.total {
            "ok"
        } else {
            "bad"
        },
    );
    card(&mut o, &claimed.to_string(), "numbers claimed", "");
    card(&mut o, &r.requests.to_string(), "requests", "");
    card(
        &mut o,
        &format!("{:.3}%", r.error_rate * 100.0),
        "error rate",
        if r.errors == 0 { "ok" } else { "bad" },
    );
    card(
        &mut o,
        &format!("{:.1} ms", r.overall.p99_ms),
        "p99, all steps",
        "",
    );
    card(
        &mut o,
        &format!("{}/s", r.accepted_peak_rps),
        "peak accepted",
        "",
    );
    if let Some(a) = &r.audit {
        card(
            &mut o,
            if a.passed { "passed" } else { "FAILED" },
            "audit",
            if a.passed { "ok" } else { "bad" },
        );
    }
    card(
        &mut o,
        &pct(r.cpu.loadtest_share),
        &format!("loadtest CPU of {} cores", r.cpu.cores),
        "",
    );
    card(
        &mut o,
        &r.exit_code.to_string(),
        "exit code",
        if r.exit_code == 0 { "ok" } else { "bad" },
    );
    o.push_str("</div>");

    if let Some(w) = r.client.warning() {
        let _ = write!(o, "<p class=\"bad\">Warning: {}</p>", esc(&w));
    }
    o.push_str("<h2>Throughput over time</h2>");
    legend(
        &mut o,
        &[
            ("#8a94a6", "buyers arriving/s"),
            ("#1a73e8", "offered req/s (intended send time)"),
            ("#137333", "accepted req/s"),
            ("#b3261e", "errors/s"),
        ],
    );
    o.push_str(&throughput_svg(r));

    o.push_str("<h2>Latency per step (from the intended send time)</h2>");
    legend(
        &mut o,
        &[("#1a73e8", "p50"), ("#ee675c", "p99"), ("#f2b8b5", "p99.9")],
    );
    o.push_str(&latency_svg(r));
    o.push_str("<table><tr><th class=\"l\">step</th><th class=\"l\">request</th><th>sent</th><th>errors</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th class=\"l\">answers</th></tr>");
    for st in r.steps.iter().filter(|s| s.sent > 0) {
        let l = &st.latency;
        let answers: Vec<String> = st.answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = write!(
            o,
            "<tr><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td class=\"l\">{}</td></tr>",
            esc(&st.name),
            esc(&st.route),
            st.sent,
            st.errors,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            esc(&answers.join(", "))
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>Outcomes</h2>");
    let max = r.buyers.outcomes.values().copied().max().unwrap_or(0) as f64;
    let rows: Vec<(String, f64, &str, String)> = r
        .buyers
        .outcomes
        .iter()
        .map(|(k, v)| {
            let color = match k.as_str() {
                "claimed" => "#137333",
                "failed" => "#b3261e",
                _ => "#8a94a6",
            };
            let people = r.buyers.people_outcomes.get(k).copied().unwrap_or(0);
            let bots = r.buyers.bot_outcomes.get(k).copied().unwrap_or(0);
            (
                k.clone(),
                *v as f64,
                color,
                format!("{v} ({people} people, {bots} bots)"),
            )
        })
        .collect();
    o.push_str(&bars_svg("outcomes", &rows, max));
    if !r.buyers.failures.is_empty() {
        o.push_str("<table><tr><th class=\"l\">why buyers failed</th><th>buyers</th></tr>");
        for (k, v) in &r.buyers.failures {
            let _ = write!(o, "<tr><td class=\"l\">{}</td><td>{v}</td></tr>", esc(k));
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Errors by kind</h2>");
    if r.errors_by_kind.is_empty() {
        o.push_str(
            "<p class=\"ok\">No errors: every answer was a success or a business outcome.</p>",
        );
    } else {
        o.push_str("<table><tr><th class=\"l\">kind</th><th>count</th></tr>");
        for (k, v) in &r.errors_by_kind {
            let _ = write!(o, "<tr><td class=\"l\">{}</td><td>{v}</td></tr>", esc(k));
        }
        o.push_str("</table>");
    }
    let _ = write!(
        o,
        "<p>Limits met: people {} <code>too_soon</code>, {} <code>too_many_requests</code>; bots {} <code>too_soon</code>, {} <code>too_many_requests</code>.</p>",
        r.people.too_soon, r.people.too_many_requests, r.bots.too_soon, r.bots.too_many_requests
    );

    if let Some(a) = &r.audit {
        let _ = write!(
            o,
            "<h2>Audit: <span class=\"{}\">{}</span></h2><p>{} claims acknowledged to buyers, {} found on the server.</p>",
            if a.passed { "ok" } else { "bad" },
            if a.passed { "passed" } else { "FAILED" },
            a.acknowledged_claims,
            a.server_claims
        );
        if let Some(rc) = &a.release {
            let _ = write!(
                o,
                "<p>Release {}: {} numbers — {} claimed, {} issued, {} available, {} held, {} withdrawn, {} pending.</p>",
                esc(&rc.id), rc.total, rc.claimed, rc.issued, rc.available, rc.held, rc.withdrawn, rc.pending
            );
        }
        o.push_str("<table><tr><th class=\"l\">check</th><th class=\"l\">what</th><th>checked</th><th>violations</th><th class=\"l\">examples</th></tr>");
        for c in &a.checks {
            let _ = write!(
                o,
                "<tr><td class=\"l {}\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                if c.passed { "ok" } else { "bad" },
                esc(&c.id),
                esc(&c.title),
                c.checked,
                c.violations,
                esc(&c.examples.join("; "))
            );
        }
        o.push_str("</table>");
        let f = &a.fairness;
        let _ = write!(
            o,
            "<h2>Fairness</h2><p>{} claims, {} of them lucky numbers (88, 666, 8888 patterns).</p>",
            f.claims, f.lucky_claims
        );
        let rows = vec![
            (
                "people: share of buyers".to_string(),
                f.people.buyer_share,
                "#8a94a6",
                pct(f.people.buyer_share),
            ),
            (
                "people: share of claims".to_string(),
                f.people.claim_share,
                "#1a73e8",
                pct(f.people.claim_share),
            ),
            (
                "people: share of lucky".to_string(),
                f.people.lucky_share,
                "#137333",
                pct(f.people.lucky_share),
            ),
            (
                "bots: share of buyers".to_string(),
                f.bots.buyer_share,
                "#8a94a6",
                pct(f.bots.buyer_share),
            ),
            (
                "bots: share of claims".to_string(),
                f.bots.claim_share,
                "#1a73e8",
                pct(f.bots.claim_share),
            ),
            (
                "bots: share of lucky".to_string(),
                f.bots.lucky_share,
                "#137333",
                pct(f.bots.lucky_share),
            ),
        ];
        o.push_str(&bars_svg("fairness", &rows, 1.0));
        o.push_str("<table><tr><th class=\"l\"></th><th>buyers</th><th>requests</th><th>selection requests</th><th>claims</th><th>lucky</th><th>claims/buyer</th><th>claims per 1k requests</th><th>lucky per 1k requests</th></tr>");
        for (label, side) in [("people", &f.people), ("bots", &f.bots)] {
            let _ = write!(
                o,
                "<tr><td class=\"l\">{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                side.buyers,
                side.requests,
                side.selection_requests,
                side.claims,
                side.lucky_claims,
                side.claims_per_buyer,
                side.claims_per_1k_requests,
                side.lucky_per_1k_requests
            );
        }
        o.push_str("</table>");
    }

    let t = &r.thresholds;
    if t.max_p99_ms.is_some() || t.max_error_rate.is_some() {
        let _ = write!(
            o,
            "<h2>Thresholds: <span class=\"{}\">{}</span></h2><ul>",
            if t.passed { "ok" } else { "bad" },
            if t.passed { "met" } else { "breached" }
        );
        if let Some(v) = t.max_p99_ms {
            let _ = write!(o, "<li>every step's p99 ≤ {v} ms</li>");
        }
        if let Some(v) = t.max_error_rate {
            let _ = write!(o, "<li>error rate ≤ {v}</li>");
        }
        for b in &t.breaches {
            let _ = write!(o, "<li class=\"bad\">{}</li>", esc(b));
        }
        o.push_str("</ul>");
    }

    if let Some(sw) = &r.sweep {
        let _ = write!(
            o,
            "<h2>Maximum sustainable arrival rate: {}</h2><table><tr><th>buyers/s</th><th>buyers</th><th>finished</th><th>worst p99 ms</th><th class=\"l\">step</th><th>error rate</th><th>accepted req/s</th><th>peak</th><th>loadtest CPU</th><th class=\"l\">verdict</th></tr>",
            sw.max_sustainable_rate.map_or("none held".to_string(), |v| format!("{v:.1} buyers/s"))
        );
        for st in &sw.steps {
            let _ = write!(
                o,
                "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.1}</td><td class=\"l\">{}</td><td>{:.4}%</td><td>{:.0}</td><td>{}</td><td>{}</td><td class=\"l {}\">{}</td></tr>",
                st.rate,
                st.buyers,
                st.finished,
                st.worst_p99_ms,
                esc(&st.worst_step),
                st.error_rate * 100.0,
                st.accepted_mean_rps,
                st.accepted_peak_rps,
                pct(st.loadtest_share),
                if st.passed { "ok" } else { "bad" },
                if st.passed { "holds" } else { "breaks" }
            );
        }
        o.push_str("</table>");
    }

    let c = &r.cpu;
    let _ = write!(
        o,
        "<h2>Resources</h2><p>The loadtest used {:.1} CPU-seconds in {:.1} s of load = {} of {} cores{}. Preparation took {:.1} s; the load {:.1} s.</p>",
        c.loadtest_secs,
        c.wall_secs,
        pct(c.loadtest_share),
        c.cores,
        c.gateway_share.map(|g| format!("; the embedded gateway {}", pct(g))).unwrap_or_default(),
        r.prepare_secs,
        r.load_secs
    );
    o.push_str("<h2>Scenario</h2><table>");
    let scenario = serde_json::to_value(s).unwrap_or_default();
    if let Some(map) = scenario.as_object() {
        for (k, v) in map {
            let _ = write!(
                o,
                "<tr><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td></tr>",
                esc(k),
                esc(&v.to_string())
            );
        }
    }
    o.push_str("</table></body></html>\n");
    o
}

/// A small well-formedness check (used by the tests and after writing the file): every tag
/// closed in order, attributes quoted, no raw `<` or stray `&` in text, no external resource.
pub fn check_well_formed(doc: &str) -> Result<(), String> {
    const VOID: &[&str] = &["meta", "br", "hr", "img", "link", "input"];
    let body = doc
        .strip_prefix("<!DOCTYPE html>")
        .ok_or("the document does not start with <!DOCTYPE html>")?;
    let lower = doc.to_ascii_lowercase();
    for bad in [
        "<script", "<link", "<img", "<iframe", "src=", "@import", "url(",
    ] {
        if lower.contains(bad) {
            return Err(format!("external or active content: {bad}"));
        }
    }
    let mut stack: Vec<String> = Vec::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'<' => {
                let end = body[i..].find('>').ok_or("a tag is not closed")? + i;
                let tag = &body[i + 1..end];
                if let Some(name) = tag.strip_prefix('/') {
                    let name = name.trim();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        other => return Err(format!("</{name}> closes {other:?}")),
                    }
                } else {
                    let self_closing = tag.ends_with('/');
                    let inner = tag.trim_end_matches('/');
                    let name: String = inner
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    if name.is_empty() {
                        return Err(format!("bad tag <{tag}>"));
                    }
                    check_attributes(&inner[name.len()..]).map_err(|e| format!("<{name}>: {e}"))?;
                    if VOID.contains(&name.as_str()) && !self_closing {
                        return Err(format!("void element <{name}> is not self-closed"));
                    }
                    if !self_closing {
                        stack.push(name);
                    }
                }
                i = end + 1;
            }
            b'&' => {
                let end = body[i..].find(';').ok_or("a stray &")? + i;
                let entity = &body[i + 1..end];
                let known = matches!(entity, "amp" | "lt" | "gt" | "quot" | "#39");
                if !known {
                    return Err(format!("unknown entity &{entity};"));
                }
                i = end + 1;
            }
            b'>' => return Err("a raw > in text".into()),
            _ => i += 1,
        }
    }
    match stack.last() {
        None => Ok(()),
        Some(open) => Err(format!("<{open}> is never closed")),
    }
}

fn check_attributes(mut s: &str) -> Result<(), String> {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(());
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value: {s}"))?;
        let name = &s[..eq];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        {
            return Err(format!("bad attribute name {name:?}"));
        }
        let rest = &s[eq + 1..];
        if !rest.starts_with('"') {
            return Err(format!("attribute {name} is not quoted"));
        }
        let close = rest[1..]
            .find('"')
            .ok_or_else(|| format!("attribute {name} is not closed"))?;
        let value = &rest[1..1 + close];
        if value.contains('<') {
            return Err(format!("attribute {name} holds a <"));
        }
        s = &rest[close + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn the_report_is_self_contained_and_well_formed() {
        let r = sample();
        let html = render(&r);
        check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
        assert!(html.contains("<svg") && html.contains("<polyline") && html.contains("<rect"));
        assert!(
            html.contains("Throughput over time")
                && html.contains("Fairness")
                && html.contains("Audit")
        );
        // Every step that was used has a row; text is escaped (the target holds "<&>").
        assert!(html.contains("http://127.0.0.1:1 &lt;&amp;&gt;"));
        for st in r.steps.iter().filter(|s| s.sent > 0) {
            assert!(
                html.contains(&format!("<td class=\"l\">{}</td>", st.name)),
                "{}",
                st.name
            );
        }
        // The only URL is the SVG namespace.
        let urls = html.matches("http").count();
        let ns = html.matches("http://www.w3.org/2000/svg").count();
        assert_eq!(urls, ns + 1, "only the namespace and the escaped target");
    }

    #[test]
    fn the_checker_catches_broken_markup() {
        assert!(check_well_formed("<!DOCTYPE html>\n<html><body><p>x</p></body></html>").is_ok());
        assert!(check_well_formed("<!DOCTYPE html><html><p>x</html>").is_err());
        assert!(check_well_formed("<!DOCTYPE html><html><p a=b>x</p></html>").is_err());
        assert!(check_well_formed("<!DOCTYPE html><html>a & b</html>").is_err());
        assert!(check_well_formed("<!DOCTYPE html><html><meta charset=\"x\"></html>").is_err());
        assert!(
            check_well_formed("<!DOCTYPE html><html><script src=\"x.js\"></script></html>")
                .is_err()
        );
        assert!(check_well_formed("<html></html>").is_err());
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
