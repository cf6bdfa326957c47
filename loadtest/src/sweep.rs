//! `--find-max`: the maximum sustainable arrival rate. Open-model rehearsals at growing rates
//! (each `secs` seconds of arrivals) until one breaks the thresholds, the audit, or leaves buyers
//! unfinished; then bisection between the last rate that held and the first that did not.

use serde::{Deserialize, Serialize};

use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SweepPlan {
    /// First rate, buyers per second.
    pub start: f64,
    /// Each passing rate is multiplied by this.
    pub factor: f64,
    /// Seconds of arrivals per step.
    pub secs: f64,
    /// Most rehearsals in all.
    pub max_steps: u32,
    /// Bisections after the first failure.
    pub refine: u32,
}

impl Default for SweepPlan {
    fn default() -> Self {
        SweepPlan {
            start: 50.0,
            factor: 1.5,
            secs: 10.0,
            max_steps: 10,
            refine: 2,
        }
    }
}

/// One rehearsal of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    pub rate: f64,
    pub buyers: u64,
    pub finished: u64,
    pub worst_p99_ms: f64,
    pub worst_step: String,
    pub error_rate: f64,
    pub accepted_mean_rps: f64,
    pub accepted_peak_rps: u64,
    pub loadtest_share: f64,
    /// Requests that waited for a connection in the loadtest's own pool.
    #[serde(default)]
    pub client_waits: u64,
    pub audit_passed: Option<bool>,
    pub passed: bool,
}

impl SweepStep {
    pub fn from_report(rate: f64, r: &Report) -> SweepStep {
        let worst = r
            .steps
            .iter()
            .filter(|s| s.latency.count > 0 && !s.windowed)
            .max_by(|a, b| a.latency.p99_ms.total_cmp(&b.latency.p99_ms));
        SweepStep {
            rate,
            buyers: r.buyers.total,
            finished: r.buyers.finished,
            worst_p99_ms: worst.map_or(0.0, |s| s.latency.p99_ms),
            worst_step: worst.map_or(String::new(), |s| s.name.clone()),
            error_rate: r.error_rate,
            accepted_mean_rps: r.accepted_mean_rps,
            accepted_peak_rps: r.accepted_peak_rps,
            loadtest_share: r.cpu.loadtest_share,
            client_waits: r.client.waits,
            audit_passed: r.audit.as_ref().map(|a| a.passed),
            passed: r.exit_code == 0 && r.buyers.finished == r.buyers.total,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub plan: SweepPlan,
    pub max_p99_ms: Option<f64>,
    pub max_error_rate: Option<f64>,
    pub steps: Vec<SweepStep>,
    /// The highest rate that held, buyers per second.
    pub max_sustainable_rate: Option<f64>,
}

impl Sweep {
    pub fn text(&self) -> String {
        let mut o = String::from("Sweep for the maximum sustainable arrival rate");
        o.push_str(&format!(
            " (every step's p99 ≤ {} ms, error rate ≤ {}, audit passed, every buyer finished):\n",
            self.max_p99_ms.map_or("∞".into(), |v| v.to_string()),
            self.max_error_rate.map_or("∞".into(), |v| v.to_string())
        ));
        o.push_str("   buyers/s   buyers  worst p99 (step)              errors   accepted req/s (peak)  loadtest CPU  verdict\n");
        for s in &self.steps {
            o.push_str(&format!(
                "  {:>9.1} {:>8}  {:>9.1} ms ({:<14}) {:>8.4}%  {:>8.0} ({:>6})      {:>6.1}%     {}\n",
                s.rate,
                s.buyers,
                s.worst_p99_ms,
                s.worst_step,
                s.error_rate * 100.0,
                s.accepted_mean_rps,
                s.accepted_peak_rps,
                s.loadtest_share * 100.0,
                if s.passed { "holds" } else { "breaks" }
            ));
            if s.client_waits > 0 {
                o.push_str(&format!(
                    "             ({} requests waited for a connection in the loadtest: raise --connections)\n",
                    s.client_waits
                ));
            }
        }
        match self.max_sustainable_rate {
            Some(r) => o.push_str(&format!(
                "Maximum sustainable arrival rate: {r:.1} buyers/s\n"
            )),
            None => o.push_str("No rate held: even the first step broke the criteria\n"),
        }
        o
    }
}

/// The next rate to try, given the highest that held and the lowest that broke, and how many
/// bisections were made; `None` when done.
pub fn next_rate(
    plan: &SweepPlan,
    held: Option<f64>,
    broke: Option<f64>,
    bisections: u32,
) -> Option<f64> {
    match (held, broke) {
        (None, None) => Some(plan.start),
        (Some(h), None) => Some(h * plan.factor),
        (_, Some(_)) if bisections >= plan.refine => None,
        (Some(h), Some(b)) => Some((h * b).sqrt()),
        (None, Some(b)) => Some(b / 2.0),
    }
}

/// Runs the sweep; `run_at(rate)` runs one rehearsal. Returns the sweep and the report of the
/// highest rate that held.
pub fn sweep(
    plan: &SweepPlan,
    max_p99_ms: Option<f64>,
    max_error_rate: Option<f64>,
    mut run_at: impl FnMut(f64) -> Result<Report, String>,
    say: &dyn Fn(&str),
) -> Result<(Sweep, Option<Report>), String> {
    let mut steps = Vec::new();
    let (mut held, mut broke): (Option<f64>, Option<f64>) = (None, None);
    let mut bisections = 0;
    let mut best: Option<Report> = None;
    while (steps.len() as u32) < plan.max_steps {
        let Some(rate) = next_rate(plan, held, broke, bisections) else {
            break;
        };
        if broke.is_some() {
            bisections += 1;
        }
        say(&format!("find-max: {rate:.1} buyers/s for {} s", plan.secs));
        let report = run_at(rate)?;
        let step = SweepStep::from_report(rate, &report);
        say(&format!(
            "find-max: {rate:.1} buyers/s {} (worst p99 {:.1} ms in {}, errors {:.4}%)",
            if step.passed { "holds" } else { "breaks" },
            step.worst_p99_ms,
            step.worst_step,
            step.error_rate * 100.0
        ));
        if step.passed {
            if held.is_none_or(|h| rate > h) {
                held = Some(rate);
                best = Some(report);
            }
        } else if broke.is_none_or(|b| rate < b) {
            broke = Some(rate);
        }
        steps.push(step);
    }
    Ok((
        Sweep {
            plan: *plan,
            max_p99_ms,
            max_error_rate,
            steps,
            max_sustainable_rate: held,
        },
        best,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    fn report(pass: bool) -> Report {
        let mut r = sample();
        r.audit = None;
        r.buyers.finished = r.buyers.total;
        r.exit_code = if pass { 0 } else { 2 };
        r
    }

    #[test]
    fn the_rates_grow_then_bisect() {
        let plan = SweepPlan {
            start: 100.0,
            factor: 2.0,
            secs: 5.0,
            max_steps: 10,
            refine: 2,
        };
        assert_eq!(next_rate(&plan, None, None, 0), Some(100.0));
        assert_eq!(next_rate(&plan, Some(100.0), None, 0), Some(200.0));
        assert_eq!(next_rate(&plan, Some(100.0), Some(400.0), 0), Some(200.0));
        assert_eq!(next_rate(&plan, None, Some(100.0), 1), Some(50.0));
        assert_eq!(next_rate(&plan, Some(100.0), Some(200.0), 2), None);
    }

    #[test]
    fn the_sweep_finds_the_highest_rate_that_holds() {
        let plan = SweepPlan {
            start: 100.0,
            factor: 2.0,
            secs: 5.0,
            max_steps: 10,
            refine: 3,
        };
        // The system holds up to 500 buyers/s.
        let mut tried = Vec::new();
        let (s, best) = sweep(
            &plan,
            Some(100.0),
            Some(0.0),
            |rate| {
                tried.push(rate);
                Ok(report(rate <= 500.0))
            },
            &|_| {},
        )
        .expect("sweep");
        // 100, 200, 400 hold; 800 breaks; then √(400·800) ≈ 566 breaks, √(400·566) ≈ 476 holds,
        // √(476·566) ≈ 519 breaks.
        assert_eq!(tried.len(), 7, "{tried:?}");
        assert_eq!(&tried[..4], &[100.0, 200.0, 400.0, 800.0]);
        let max = s.max_sustainable_rate.expect("a rate held");
        assert!((450.0..=500.0).contains(&max), "{max}");
        assert!(best.is_some());
        assert_eq!(s.steps.iter().filter(|x| x.passed).count(), 4);
        let text = s.text();
        assert!(text.contains("Maximum sustainable arrival rate") && text.contains("breaks"));
        // A system that never holds.
        let (s, best) = sweep(&plan, None, None, |_| Ok(report(false)), &|_| {}).expect("sweep");
        assert_eq!(s.max_sustainable_rate, None);
        assert!(best.is_none());
        assert_eq!(s.steps.len(), 4, "the first step and three halvings");
        assert!(s.text().contains("No rate held"));
    }
}
