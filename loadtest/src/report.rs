//! The run's report: latency percentiles per step, throughput over time, outcomes, errors by
//! kind, the audit and fairness, the loadtest's own CPU share, and the thresholds' verdict.
//! Rendered as text (terminal), JSON (`--json`) and HTML (`--html`, see [`crate::html`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::audit::AuditReport;
use crate::buyer::{BuyerRecord, Outcome};
use crate::recorder::{KindCounts, Recorder, Second, Step};
use crate::scenario::{Kind, Scenario};

/// Exit codes (documented in `--help`).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_THRESHOLD: i32 = 2;
pub const EXIT_AUDIT: i32 = 3;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Latency {
            count: h.len(),
            mean_ms: (h.mean()).round() / 1_000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: Step,
    pub name: String,
    pub route: String,
    pub sent: u64,
    pub errors: u64,
    /// Sent in the opening window: latency includes the office's deliberate wait; thresholds
    /// leave it out.
    #[serde(default)]
    pub windowed: bool,
    /// Sent only after a fault (no answer, an interrupted request): absent from a clean run.
    #[serde(default)]
    pub after_faults: bool,
    pub latency: Latency,
    /// Answers by label: `ok`, an error code, or a transport failure.
    pub answers: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuyerSummary {
    pub total: u64,
    pub arrived: u64,
    pub finished: u64,
    pub people: u64,
    pub bots: u64,
    /// Outcome → buyers.
    pub outcomes: BTreeMap<String, u64>,
    pub people_outcomes: BTreeMap<String, u64>,
    pub bot_outcomes: BTreeMap<String, u64>,
    /// Why failed buyers failed (the first words of the reason) → buyers.
    pub failures: BTreeMap<String, u64>,
}

/// The loadtest's own CPU use during the load phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub cores: usize,
    pub wall_secs: f64,
    /// CPU seconds of the load-generating threads (and the progress thread).
    pub loadtest_secs: f64,
    /// CPU seconds of the whole process (with `--embedded`, the gateway too).
    pub process_secs: f64,
    /// loadtest_secs / (wall × cores).
    pub loadtest_share: f64,
    /// With `--embedded`: (process − loadtest) / (wall × cores).
    pub gateway_share: Option<f64>,
}

/// The loadtest's connection pool: if requests waited for a free connection, part of their
/// latency is the client's own queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPool {
    pub connections: u64,
    /// Most requests in flight at once (summed over the workers).
    pub max_in_flight: u64,
    /// Requests started while every connection was busy.
    pub waits: u64,
}

impl ClientPool {
    pub fn warning(&self) -> Option<String> {
        (self.waits > 0).then(|| {
            format!(
                "{} requests waited for one of the loadtest's {} connections, all busy with requests \
                 the gateway had not answered yet (up to {} in flight): that part of their latency was \
                 spent queued in the client instead of the gateway (a buyer waits the same either way); \
                 if the gateway had spare capacity, raise --connections",
                self.waits, self.connections, self.max_in_flight
            )
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_p99_ms: Option<f64>,
    pub max_error_rate: Option<f64>,
    pub breaches: Vec<String>,
    pub passed: bool,
}

impl Thresholds {
    /// Checks every step's p99 and the overall error rate.
    pub fn evaluate(
        max_p99_ms: Option<f64>,
        max_error_rate: Option<f64>,
        steps: &[StepReport],
        error_rate: f64,
    ) -> Thresholds {
        let mut breaches = Vec::new();
        if let Some(max) = max_p99_ms {
            for s in steps.iter().filter(|s| s.latency.count > 0 && !s.windowed) {
                if s.latency.p99_ms > max {
                    breaches.push(format!(
                        "{}: p99 {:.1} ms > {max} ms",
                        s.name, s.latency.p99_ms
                    ));
                }
            }
        }
        if let Some(max) = max_error_rate {
            if error_rate > max {
                breaches.push(format!("error rate {:.4} > {max}", error_rate));
            }
        }
        Thresholds {
            max_p99_ms,
            max_error_rate,
            passed: breaches.is_empty(),
            breaches,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub scenario: Scenario,
    pub target: String,
    pub embedded: bool,
    pub run_tag: u32,
    pub office: String,
    pub release_id: String,
    pub release_total: u64,
    pub started_at: String,
    pub opens_at: String,
    /// Seconds from the start of the load to the opening.
    pub opening_at_secs: f64,
    pub prepare_secs: f64,
    /// Seconds from the start of the load to the last buyer's end.
    pub load_secs: f64,
    /// Configured full arrival rate (open model), buyers/s.
    pub arrival_rate: Option<f64>,
    pub buyers: BuyerSummary,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub overall: Latency,
    pub steps: Vec<StepReport>,
    pub timeline: Vec<Second>,
    pub offered_peak_rps: u64,
    pub accepted_peak_rps: u64,
    /// Requests per second over the whole load (accepted).
    pub accepted_mean_rps: f64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub people: KindCounts,
    pub bots: KindCounts,
    pub cpu: Cpu,
    #[serde(default)]
    pub client: ClientPool,
    pub audit: Option<AuditReport>,
    pub thresholds: Thresholds,
    pub exit_code: i32,
    /// `--find-max`: the sweep this report is the highest holding step of.
    #[serde(default)]
    pub sweep: Option<crate::sweep::Sweep>,
}

/// What the run knew besides the recorder and the history.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub target: String,
    pub embedded: bool,
    pub run_tag: u32,
    pub office: String,
    pub release_id: String,
    pub release_total: u64,
    pub started_at: String,
    pub opens_at: String,
    pub opening_at_secs: f64,
    pub prepare_secs: f64,
    pub load_secs: f64,
    pub cpu: Cpu,
    pub client: ClientPool,
    pub max_p99_ms: Option<f64>,
    pub max_error_rate: Option<f64>,
}

fn failure_kind(reason: &str) -> String {
    // "apply: HTTP 409: {...}" → "apply: HTTP 409"
    let mut parts = reason.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}:{b}").trim().to_string(),
        (Some(a), None) => a.to_string(),
        _ => reason.to_string(),
    }
}

pub fn summarize_buyers(history: &[BuyerRecord], arrived: u64) -> BuyerSummary {
    let mut s = BuyerSummary {
        total: history.len() as u64,
        arrived,
        ..BuyerSummary::default()
    };
    for o in Outcome::ALL {
        s.outcomes.insert(o.as_str().into(), 0);
    }
    for b in history {
        s.finished += 1;
        let name = b.outcome.as_str().to_string();
        *s.outcomes.entry(name.clone()).or_insert(0) += 1;
        match b.kind {
            Kind::Person => {
                s.people += 1;
                *s.people_outcomes.entry(name).or_insert(0) += 1;
            }
            Kind::Bot => {
                s.bots += 1;
                *s.bot_outcomes.entry(name).or_insert(0) += 1;
            }
        }
        if let Some(f) = &b.failure {
            if b.outcome == Outcome::Failed {
                *s.failures.entry(failure_kind(f)).or_insert(0) += 1;
            }
        }
    }
    s
}

impl Report {
    pub fn build(
        scenario: &Scenario,
        rec: &Recorder,
        history: &[BuyerRecord],
        arrived: u64,
        facts: RunFacts,
        audit: Option<AuditReport>,
    ) -> Report {
        let steps: Vec<StepReport> = Step::ALL
            .iter()
            .map(|&step| {
                let r = rec.step(step);
                StepReport {
                    step,
                    name: step.name().into(),
                    route: step.route().into(),
                    sent: r.sent,
                    errors: r.errors,
                    windowed: step.windowed(),
                    after_faults: step.after_faults(),
                    latency: Latency::from_histogram(&r.latency),
                    answers: r.labels.clone(),
                }
            })
            .collect();
        let requests = rec.requests();
        let errors = rec.error_count();
        let error_rate = if requests > 0 {
            errors as f64 / requests as f64
        } else {
            0.0
        };
        let accepted: u64 = rec.timeline.iter().map(|s| s.accepted).sum();
        let thresholds =
            Thresholds::evaluate(facts.max_p99_ms, facts.max_error_rate, &steps, error_rate);
        let mut report = Report {
            tool: format!("platepool-loadtest {}", env!("CARGO_PKG_VERSION")),
            scenario: scenario.clone(),
            target: facts.target,
            embedded: facts.embedded,
            run_tag: facts.run_tag,
            office: facts.office,
            release_id: facts.release_id,
            release_total: facts.release_total,
            started_at: facts.started_at,
            opens_at: facts.opens_at,
            opening_at_secs: facts.opening_at_secs,
            prepare_secs: facts.prepare_secs,
            load_secs: facts.load_secs,
            arrival_rate: (scenario.model == crate::scenario::Model::Open)
                .then(|| scenario.full_rate()),
            buyers: summarize_buyers(history, arrived),
            requests,
            errors,
            error_rate,
            overall: Latency::from_histogram(&rec.all),
            steps,
            timeline: rec.timeline.clone(),
            offered_peak_rps: rec.timeline.iter().map(|s| s.offered).max().unwrap_or(0),
            accepted_peak_rps: rec.timeline.iter().map(|s| s.accepted).max().unwrap_or(0),
            accepted_mean_rps: if facts.load_secs > 0.0 {
                accepted as f64 / facts.load_secs
            } else {
                0.0
            },
            errors_by_kind: rec.errors.clone(),
            people: rec.people,
            bots: rec.bots,
            cpu: facts.cpu,
            client: facts.client,
            audit,
            thresholds,
            exit_code: EXIT_OK,
            sweep: None,
        };
        report.exit_code = report.verdict();
        report
    }

    /// The exit code: audit failures first, then thresholds, then unfinished buyers.
    pub fn verdict(&self) -> i32 {
        if self.audit.as_ref().is_some_and(|a| !a.passed) {
            return EXIT_AUDIT;
        }
        if !self.thresholds.passed {
            return EXIT_THRESHOLD;
        }
        EXIT_OK
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The terminal report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            o,
            "platepool-loadtest — scenario {} ({} mode)",
            s.name,
            if self.embedded { "embedded" } else { "target" }
        );
        let _ = writeln!(
            o,
            "  target {}  office {}  release {} ({} numbers)",
            self.target, self.office, self.release_id, self.release_total
        );
        let model = match s.model {
            crate::scenario::Model::Open => format!(
                "open model: {} buyers at {:.0}/s (ramp {:.1} s){}",
                s.buyers,
                self.arrival_rate.unwrap_or(0.0),
                s.ramp_secs,
                if s.poisson { ", Poisson" } else { "" }
            ),
            crate::scenario::Model::Closed => format!(
                "closed model: {} buyers, {} in flight",
                s.buyers, s.concurrency
            ),
        };
        let _ = writeln!(
            o,
            "  {model}; {:.0}% bots; opening {:.1} s after the first arrival ({})",
            s.bots * 100.0,
            self.opening_at_secs,
            self.opens_at
        );
        let _ = writeln!(
            o,
            "  prepared in {:.1} s; load ran {:.1} s",
            self.prepare_secs, self.load_secs
        );
        let b = &self.buyers;
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Buyers: {} ({} people, {} bots), {} arrived, {} finished",
            b.total, b.people, b.bots, b.arrived, b.finished
        );
        let outcomes: Vec<String> = b.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "  outcomes: {}", outcomes.join(", "));
        for (label, m) in [("people", &b.people_outcomes), ("bots", &b.bot_outcomes)] {
            if !m.is_empty() {
                let v: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(o, "    {label}: {}", v.join(", "));
            }
        }
        for (k, v) in &b.failures {
            let _ = writeln!(o, "  failed: {v} × {k}");
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Requests: {} ({:.0}/s accepted on average; peak offered {}/s, peak accepted {}/s); errors {} ({:.3}%)",
            self.requests,
            self.accepted_mean_rps,
            self.offered_peak_rps,
            self.accepted_peak_rps,
            self.errors,
            self.error_rate * 100.0
        );
        let _ = writeln!(o, "Latency from the intended send time, ms:");
        let _ = writeln!(
            o,
            "  {:<13} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}  answers",
            "step", "sent", "errors", "p50", "p90", "p99", "p99.9", "max"
        );
        for st in self.steps.iter().filter(|s| s.sent > 0) {
            let l = &st.latency;
            let answers: Vec<String> = st.answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                o,
                "  {:<13} {:>8} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}",
                st.name,
                st.sent,
                st.errors,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms,
                answers.join(", ")
            );
        }
        let l = &self.overall;
        let _ = writeln!(
            o,
            "  {:<13} {:>8} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            "all", self.requests, self.errors, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        if !self.errors_by_kind.is_empty() {
            let _ = writeln!(o, "Errors by kind:");
            for (k, v) in &self.errors_by_kind {
                let _ = writeln!(o, "  {v:>8}  {k}");
            }
        }
        let _ = writeln!(
            o,
            "Refusals: people {} too_soon, {} too_many_requests; bots {} too_soon, {} too_many_requests",
            self.people.too_soon, self.people.too_many_requests, self.bots.too_soon, self.bots.too_many_requests
        );
        let _ = writeln!(o);
        // At most 32 cells: long runs are shown in wider buckets (rates stay per second).
        let width = self.timeline.len().div_ceil(32).max(1);
        let _ = writeln!(
            o,
            "Throughput, requests per second (offered / accepted, !errors), from the first arrival{}:",
            if width > 1 { format!(", {width} s per cell") } else { String::new() }
        );
        let mut line = String::new();
        for (cell, chunk) in self.timeline.chunks(width).enumerate() {
            let n = chunk.len() as u64;
            let offered: u64 = chunk.iter().map(|s| s.offered).sum::<u64>() / n;
            let accepted: u64 = chunk.iter().map(|s| s.accepted).sum::<u64>() / n;
            let errors: u64 = chunk.iter().map(|s| s.errors).sum();
            let _ = write!(
                line,
                "  {:>4}s {offered:>6}/{accepted:<6}{}",
                cell * width,
                if errors > 0 {
                    format!(" !{errors}")
                } else {
                    String::new()
                }
            );
            if cell % 4 == 3 {
                let _ = writeln!(o, "{line}");
                line.clear();
            }
        }
        if !line.is_empty() {
            let _ = writeln!(o, "{line}");
        }
        let c = &self.cpu;
        let _ = writeln!(o);
        let _ = write!(
            o,
            "CPU: the loadtest used {:.1} CPU-s in {:.1} s = {:.0}% of {} cores",
            c.loadtest_secs,
            c.wall_secs,
            c.loadtest_share * 100.0,
            c.cores
        );
        match c.gateway_share {
            Some(g) => {
                let _ = writeln!(o, "; the embedded gateway {:.0}%", g * 100.0);
            }
            None => {
                let _ = writeln!(o);
            }
        }
        if let Some(w) = self.client.warning() {
            let _ = writeln!(o, "WARNING: {w}");
        }
        if let Some(a) = &self.audit {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "Audit: {} ({} claims acknowledged, {} on the server)",
                if a.passed { "PASSED" } else { "FAILED" },
                a.acknowledged_claims,
                a.server_claims
            );
            if let Some(r) = &a.release {
                let _ = writeln!(
                    o,
                    "  release {}: {} numbers — {} claimed, {} issued, {} available, {} held, {} withdrawn, {} pending",
                    r.id, r.total, r.claimed, r.issued, r.available, r.held, r.withdrawn, r.pending
                );
            }
            for c in &a.checks {
                let _ = writeln!(
                    o,
                    "  [{}] {:<12} {} — {} checked, {} violations",
                    if c.passed { "ok" } else { "!!" },
                    c.id,
                    c.title,
                    c.checked,
                    c.violations
                );
                for e in &c.examples {
                    let _ = writeln!(o, "        {e}");
                }
            }
            let f = &a.fairness;
            let _ = writeln!(
                o,
                "Fairness ({} claims, {} lucky):",
                f.claims, f.lucky_claims
            );
            for (label, side) in [("people", &f.people), ("bots", &f.bots)] {
                let _ = writeln!(
                    o,
                    "  {label:<6} {:>6} buyers ({:>5.1}%)  claims {:>6} ({:>5.1}%)  lucky {:>5} ({:>5.1}%)  {:.2} claims/buyer  {:.1} claims per 1k requests",
                    side.buyers,
                    side.buyer_share * 100.0,
                    side.claims,
                    side.claim_share * 100.0,
                    side.lucky_claims,
                    side.lucky_share * 100.0,
                    side.claims_per_buyer,
                    side.claims_per_1k_requests
                );
            }
        }
        let t = &self.thresholds;
        if t.max_p99_ms.is_some() || t.max_error_rate.is_some() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "Thresholds: {}",
                if t.passed { "met" } else { "BREACHED" }
            );
            for b in &t.breaches {
                let _ = writeln!(o, "  {b}");
            }
        }
        if let Some(sw) = &self.sweep {
            let _ = writeln!(o);
            o.push_str(&sw.text());
        }
        let _ = writeln!(o, "Exit code {}", self.exit_code);
        o
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::{audit, Expectations, ServerView};
    use crate::recorder::Ending;
    use std::time::{Duration, Instant};

    /// A small report with every section filled.
    pub(crate) fn sample() -> Report {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0);
        for i in 0..200u64 {
            let at = t0 + Duration::from_millis(i * 20);
            let done = at + Duration::from_micros(500 + i * 100);
            let step = Step::ALL[(i % 10) as usize];
            let ending = match i % 17 {
                0 => Ending::Answer {
                    status: 409,
                    code: Some("not_available".into()),
                },
                5 => Ending::Answer {
                    status: 503,
                    code: Some("unavailable".into()),
                },
                _ => Ending::Answer {
                    status: 200,
                    code: None,
                },
            };
            rec.request(
                step,
                if i % 5 == 0 { Kind::Bot } else { Kind::Person },
                at,
                done,
                &ending,
            );
        }
        rec.claim(t0 + Duration::from_secs(2));
        let mut b1 = BuyerRecord::new(0, "u0", Kind::Person, crate::scenario::Style::Random);
        b1.outcome = Outcome::Claimed;
        b1.claim = Some("A8888".into());
        let mut b2 = BuyerRecord::new(1, "u1", Kind::Bot, crate::scenario::Style::Custom);
        b2.failure = Some("apply: HTTP 409: {\"error\":…}".into());
        let history = vec![b1, b2];
        let a = audit(
            &history,
            &Expectations {
                custom_quota: 20,
                random_quota: 5,
                release_id: "1".into(),
                release_total: 10,
                exclusive: true,
            },
            &ServerView::default(),
        );
        Report::build(
            &Scenario::default(),
            &rec,
            &history,
            2,
            RunFacts {
                target: "http://127.0.0.1:1 <&>".into(),
                embedded: true,
                run_tag: 42,
                office: "lt_00042".into(),
                release_id: "1".into(),
                release_total: 10,
                started_at: "2026-01-01T00:00:00.000Z".into(),
                opens_at: "2026-01-01T00:00:08.000Z".into(),
                opening_at_secs: 8.0,
                prepare_secs: 0.5,
                load_secs: 4.0,
                cpu: Cpu {
                    cores: 2,
                    wall_secs: 4.0,
                    loadtest_secs: 1.0,
                    process_secs: 3.0,
                    loadtest_share: 0.125,
                    gateway_share: Some(0.25),
                },
                client: ClientPool {
                    connections: 8,
                    max_in_flight: 9,
                    waits: 3,
                },
                max_p99_ms: Some(10.0),
                max_error_rate: Some(0.5),
            },
            Some(a),
        )
    }

    #[test]
    fn percentiles_and_counts_come_from_the_recorder() {
        let r = sample();
        assert_eq!(r.requests, 200);
        let draw = r.steps.iter().find(|s| s.step == Step::Draw).expect("draw");
        assert_eq!(draw.sent, 20);
        assert!(
            draw.latency.p50_ms <= draw.latency.p90_ms
                && draw.latency.p90_ms <= draw.latency.p99_ms
        );
        assert!(draw.latency.p99_ms <= draw.latency.max_ms);
        assert!(
            r.overall.max_ms >= 20.0 && r.overall.max_ms < 21.0,
            "{}",
            r.overall.max_ms
        );
        assert_eq!(r.errors, r.errors_by_kind.values().sum::<u64>());
        assert!(r.errors > 0);
        assert_eq!(r.buyers.outcomes.get("claimed"), Some(&1));
        assert_eq!(r.buyers.outcomes.get("failed"), Some(&1));
        assert_eq!(r.buyers.failures.get("apply: HTTP 409"), Some(&1));
        assert_eq!(r.offered_peak_rps, 50);
    }

    #[test]
    fn thresholds_and_the_audit_set_the_exit_code() {
        let r = sample();
        // The audit against an empty server view fails (the claim is missing): exit 3.
        assert_eq!(r.exit_code, EXIT_AUDIT);
        assert!(!r.thresholds.passed, "p99 above 10 ms must breach");
        let mut r2 = r.clone();
        r2.audit = None;
        assert_eq!(r2.verdict(), EXIT_THRESHOLD);
        r2.thresholds = Thresholds::evaluate(Some(1_000.0), Some(0.5), &r2.steps, r2.error_rate);
        assert!(r2.thresholds.passed);
        assert_eq!(r2.verdict(), EXIT_OK);
        let t = Thresholds::evaluate(None, Some(0.001), &r2.steps, 0.01);
        assert_eq!(t.breaches.len(), 1);
    }

    #[test]
    fn json_round_trips_and_text_names_every_section() {
        let r = sample();
        let json = r.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["requests"], 200);
        assert!(v["steps"].as_array().expect("steps").len() == Step::ALL.len());
        assert!(v["steps"][0]["latency"]["p99_ms"].is_number());
        assert!(v["audit"]["checks"].as_array().expect("checks").len() == 5);
        let back: Report = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back.requests, r.requests);
        assert_eq!(back.steps.len(), r.steps.len());
        for (a, b) in back.steps.iter().zip(&r.steps) {
            assert_eq!(
                (a.step, a.sent, a.errors, &a.answers),
                (b.step, b.sent, b.errors, &b.answers)
            );
            assert!((a.latency.p99_ms - b.latency.p99_ms).abs() < 1e-9);
        }
        let text = r.text();
        for needle in [
            "Latency from the intended send time",
            "p99.9",
            "Audit: FAILED",
            "Fairness",
            "Throughput, requests per second",
            "CPU:",
            "Thresholds: BREACHED",
            "Exit code 3",
            "WARNING: 3 requests waited for one of the loadtest's 8 connections",
            "draw",
        ] {
            assert!(text.contains(needle), "text lacks {needle}:\n{text}");
        }
    }
}
