//! Campaign 2: kill -9 through the real `platepool` binary under a loadtest opening.
//!
//! The binary serves on a fixed loopback port over a temporary data folder. Each *run* is one
//! opening rehearsed by the loadtest crate against it — its own preparation (a fresh office,
//! certificate records, tokens, a release opening two seconds ahead) and its own buyers and
//! bots in target mode, with their idempotency keys and retries — while this campaign SIGKILLs
//! the server at seeded random moments of the load. Each kill is a *cycle*:
//!
//! 1. SIGKILL the server mid-load (buyers see refused or reset connections and retry);
//! 2. start the binary on the same data folder on a private port, where no buyer reaches it,
//!    and time it from spawn to `/readyz` 200; read every office's stats: no number held (holds
//!    are not persisted, I9) and every release's counts add up to its size; look up every claim
//!    acknowledged in the runs before this one: each is still there, owned by the application
//!    it was acknowledged to, and each office counts exactly those claims (I1, I2);
//! 3. SIGKILL that instance too (a kill right after a recovery), start the binary on the
//!    buyers' port again, time it to ready, and let the load go on.
//!
//! When the run ends, the loadtest's own audit reads the office back and checks what its
//! buyers were told against what the server holds: every acknowledged application and claim
//! present, no number claimed twice, each quota debited between what the answers acknowledged
//! and that plus the calls that got no answer (I1–I4, conservation). Its acknowledged claims
//! join the ledger that every later cycle re-checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use platepool_loadtest::api::{list, query_value};
use platepool_loadtest::audit::AuditReport;
use platepool_loadtest::run::{run, Progress, RunOptions, Target};
use platepool_loadtest::scenario::{Rules, Scenario};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::server::{free_port, ms, operator_get, percentile, Options, Server, OPERATOR, SECRET};
use crate::{thousands, Mode, Outcome};

/// How hard a kill -9 campaign tries.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Openings rehearsed one after another on the same data folder.
    pub runs: u32,
    /// SIGKILLs during each opening's load.
    pub kills_per_run: u32,
    /// Buyers per opening.
    pub buyers: u32,
    pub seed: u64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                runs: 2,
                kills_per_run: 2,
                buyers: 60,
                seed: 1,
            },
            Mode::Long => Plan {
                runs: 26,
                kills_per_run: 2,
                buyers: 150,
                seed: 1,
            },
        }
    }
}

/// The opening each run rehearses: short holds so the audit can run soon after the load,
/// an opening window, a release smaller than the demand so buyers compete, and buyers who keep
/// retrying a request that got no answer while the server is down.
pub fn scenario(plan: &Plan, run: u32) -> Scenario {
    Scenario {
        name: format!("kill9-{run}"),
        buyers: plan.buyers,
        bots: 0.1,
        arrival_secs: 1.0,
        ramp_secs: 0.0,
        opens_in_secs: 2.0,
        think_min_ms: 50,
        think_max_ms: 300,
        reaction_ms: 300,
        patterns: vec!["K0[0-4]##".into()],
        rules: Rules {
            custom_min_interval_ms: 500,
            random_ttl_ms: 1_000,
            candidate_ttl_ms: 1_500,
            sms_confirm_delay_ms: 200,
            opening_window_ms: 200,
            ..Rules::default()
        },
        connections: 128,
        timeout_ms: 10_000,
        transport_retries: 40,
        seed: plan.seed.wrapping_mul(1_000).wrapping_add(run as u64),
        ..Scenario::default()
    }
}

/// A claim acknowledged to a buyer: office, serial, application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Acked {
    office: String,
    serial: String,
    application: String,
}

#[derive(Debug, Default)]
struct Tally {
    cycles: u32,
    recoveries: Vec<Duration>,
    /// Kill of the buyers' server → ready again on the buyers' port.
    downtime: Vec<Duration>,
    ledger_checks: u64,
    lost: u64,
    double: u64,
    holds_after_restart: u64,
    conservation_broken: u64,
    runs_audited: u32,
    audit_failures: u32,
    acked_claims: u64,
    server_claims: u64,
    requests: u64,
    failed_buyers: u64,
    unanswered: u64,
    unanswered_claim_calls: u64,
    durable_unacknowledged: u64,
    unacknowledged_examples: Vec<String>,
}

/// Every office the server knows.
fn offices(port: u16) -> Result<Vec<String>, String> {
    let v = operator_get(port, "/v1/offices")?;
    Ok(list(&v, &["offices"])
        .iter()
        .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Checks right after a restart, on an instance no buyer reaches.
fn verify_restarted(
    port: u16,
    ledger: &[Acked],
    uncertain: &BTreeMap<String, u64>,
    t: &mut Tally,
    out: &mut Outcome,
    cycle: u32,
) {
    let offices = match offices(port) {
        Ok(o) => o,
        Err(e) => {
            out.violation(format!(
                "cycle {cycle}: offices unreadable after restart: {e}"
            ));
            return;
        }
    };
    let mut claimed_per_office: BTreeMap<String, u64> = BTreeMap::new();
    for office in &offices {
        let stats = match operator_get(port, &format!("/v1/admin/offices/{office}/stats")) {
            Ok(s) => s,
            Err(e) => {
                out.violation(format!("cycle {cycle}: stats of {office}: {e}"));
                continue;
            }
        };
        for class in list(&stats, &["classes"]) {
            for r in list(class, &["releases"]) {
                let id = r.get("id").map(Value::to_string).unwrap_or_default();
                let held = count(r, "held");
                let sum = count(r, "pending")
                    + count(r, "available")
                    + held
                    + count(r, "claimed")
                    + count(r, "issued")
                    + count(r, "withdrawn");
                if held > 0 {
                    t.holds_after_restart += held;
                    out.violation(format!(
                        "cycle {cycle}: {office} release {id}: {held} numbers held right after the restart (holds must be back in the pool, I9)"
                    ));
                }
                if sum != count(r, "total") {
                    t.conservation_broken += 1;
                    out.violation(format!(
                        "cycle {cycle}: {office} release {id}: counts add up to {sum}, not its {} numbers",
                        count(r, "total")
                    ));
                }
                *claimed_per_office.entry(office.clone()).or_default() +=
                    count(r, "claimed") + count(r, "issued");
            }
        }
    }
    let mut acked_per_office: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in ledger {
        acked_per_office
            .entry(a.office.as_str())
            .or_default()
            .insert(a.serial.as_str());
        t.ledger_checks += 1;
        let path = format!(
            "/v1/admin/applications?serial={}&office={}",
            query_value(&a.serial),
            query_value(&a.office)
        );
        match operator_get(port, &path) {
            Ok(v) => {
                let owners: Vec<&str> = list(&v, &["applications", "items"])
                    .iter()
                    .filter(|app| {
                        app.get("claim").is_some_and(|c| !c.is_null())
                            && !matches!(
                                app.get("state").and_then(Value::as_str),
                                Some("lapsed" | "voided")
                            )
                    })
                    .filter_map(|app| app.get("id").and_then(Value::as_str))
                    .collect();
                if !owners.contains(&a.application.as_str()) {
                    t.lost += 1;
                    out.violation(format!(
                        "cycle {cycle}: acknowledged claim {} of {} ({}) is gone after the restart (owners now {owners:?}, I2)",
                        a.serial, a.application, a.office
                    ));
                } else if owners.len() > 1 {
                    t.double += 1;
                    out.violation(format!(
                        "cycle {cycle}: {} in {} is claimed by {owners:?} (I1)",
                        a.serial, a.office
                    ));
                }
            }
            Err(e) => out.violation(format!("cycle {cycle}: lookup of {}: {e}", a.serial)),
        }
    }
    for (office, serials) in acked_per_office {
        let stored = claimed_per_office.get(office).copied().unwrap_or(0);
        let acked = serials.len() as u64;
        let unanswered = uncertain.get(office).copied().unwrap_or(0);
        // A claim call that got no answer (the kill came between the commit and the answer)
        // may or may not have claimed: allowed, up to the number of such calls.
        if stored < acked || stored > acked + unanswered {
            out.violation(format!(
                "cycle {cycle}: {office} counts {stored} claimed numbers; {acked} were acknowledged and {unanswered} claim calls got no answer (I1, I2)"
            ));
        }
    }
}

/// Waits until an office that was not in `before` has a release: the run's preparation is done
/// and its load is about to start.
fn wait_for_release(port: u16, before: &BTreeSet<String>, limit: Duration) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(now) = offices(port) {
            for o in now.iter().filter(|o| !before.contains(*o)) {
                if let Ok(p) = operator_get(port, &format!("/v1/offices/{o}/pool")) {
                    let has = list(&p, &["classes"])
                        .iter()
                        .any(|c| !list(c, &["releases"]).is_empty());
                    if has {
                        return Some(o.clone());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn audit_lines(a: &AuditReport) -> Vec<String> {
    a.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            format!(
                "{} ({}): {} violations, e.g. {}",
                c.id,
                c.title,
                c.violations,
                c.examples.join("; ")
            )
        })
        .collect()
}

pub fn campaign(mode: Mode) -> Outcome {
    campaign_with(Plan::for_mode(mode))
}

pub fn campaign_with(plan: Plan) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "kill9",
        "kill -9 through the binary under a loadtest opening (campaign 2)",
    );
    let bin = match crate::storage::binary(true) {
        Ok(b) => b,
        Err(e) => {
            out.violation(format!("no binary: {e}"));
            out.elapsed = started.elapsed();
            return out;
        }
    };
    let temp = match tempfile::Builder::new()
        .prefix("platepool-kill9-")
        .tempdir()
    {
        Ok(t) => t,
        Err(e) => {
            out.violation(format!("temporary folder: {e}"));
            return out;
        }
    };
    let opts = Options::new(bin.clone(), temp.path().join("data"));
    let mut t = Tally::default();
    let result = cycles(&plan, &opts, &mut t, &mut out);
    if let Err(e) = result {
        out.violation(e);
    }
    let mut rec = t.recoveries.clone();
    rec.sort();
    let mut down = t.downtime.clone();
    down.sort();
    out.tried(format!("binary {}", bin.display()));
    out.tried(format!(
        "{} openings of {} buyers (10 % bots) rehearsed by the loadtest crate against the binary, {} SIGKILLs at seeded random moments of each opening's load (seed {})",
        plan.runs, plan.buyers, plan.kills_per_run, plan.seed
    ));
    out.tried(format!(
        "{} cycles: SIGKILL mid-load → restart on a private port and check → SIGKILL again → restart on the buyers' port; {} starts in all",
        t.cycles,
        t.recoveries.len()
    ));
    out.tried(format!(
        "{} requests by the buyers, {} of them retried after getting no answer; {} buyers gave up",
        thousands(t.requests),
        thousands(t.unanswered),
        t.failed_buyers
    ));
    out.figure("kill -9 cycles", t.cycles);
    out.figure(
        "openings audited / audits failed",
        format!("{} / {}", t.runs_audited, t.audit_failures),
    );
    out.figure(
        "claims acknowledged / found on the server",
        format!("{} / {}", t.acked_claims, t.server_claims),
    );
    out.figure(
        "acknowledged claims re-checked after restarts",
        thousands(t.ledger_checks),
    );
    out.figure("lost acknowledged writes", t.lost);
    out.figure(
        "claim calls that got no answer / of them durable on the server (allowed: never acknowledged)",
        format!("{} / {}", t.unanswered_claim_calls, t.durable_unacknowledged),
    );
    let pending: Vec<&String> = t
        .unacknowledged_examples
        .iter()
        .filter(|e| e.contains("idempotency_pending"))
        .collect();
    if !pending.is_empty() {
        out.findings.push(format!(
            "after a kill, a claim's Idempotency-Key stays blocked: {} buyers whose claim was made durable before the kill retried with the same key after the restart and got 409 conflict with reason in_progress (\"still being handled\") 20 times, 100 ms apart, until they gave up, e.g. {}. Markers left by the killed process do not block (they carry the process run's id), so a retry on the restarted server was still being handled after 2 s. Nothing is lost (the claim is there, GET /v1/me shows it), but these buyers did not get the first answer",
            pending.len(),
            pending[0]
        ));
    }
    if !t.unacknowledged_examples.is_empty() {
        out.tried(format!(
            "buyers whose claim call got no answer, at a run where the server holds a claim nobody was told of: {}",
            t.unacknowledged_examples
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out.figure("numbers claimed twice", t.double);
    out.figure("numbers held right after a restart", t.holds_after_restart);
    out.figure(
        "recovery (spawn → /readyz 200), p50 / max",
        format!(
            "{} / {} over {} starts",
            ms(percentile(&rec, 0.5)),
            ms(percentile(&rec, 1.0)),
            rec.len()
        ),
    );
    out.figure(
        "buyers' downtime per cycle (kill → ready on their port, with the check between), p50 / max",
        format!(
            "{} / {}",
            ms(percentile(&down, 0.5)),
            ms(percentile(&down, 1.0))
        ),
    );
    if out.violations.is_empty() {
        out.held(format!(
            "after each of {} restarts every claim acknowledged before it was there, owned by the application it was acknowledged to ({} look-ups), and each office counted the acknowledged claims plus at most the claim calls that got no answer (I1, I2, I9)",
            t.cycles, t.ledger_checks
        ));
        out.held("right after every restart no number was held and every release's counts added up to its size (holds back in the pool, I9)");
        out.held(format!(
            "every opening's audit passed: acknowledged applications and claims present, no number claimed twice, each quota debited between the acknowledged debits and those plus the calls that got no answer, no hold left, conservation ({} openings)",
            t.runs_audited
        ));
        out.held(format!(
            "the service was ready again after every kill (slowest start {})",
            ms(percentile(&rec, 1.0))
        ));
    }
    out.elapsed = started.elapsed();
    out
}

fn cycles(plan: &Plan, opts: &Options, t: &mut Tally, out: &mut Outcome) -> Result<(), String> {
    let port = free_port();
    let (mut server, first) = Server::start(opts, port)?;
    t.recoveries.push(first);
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut ledger: Vec<Acked> = Vec::new();
    // Claim calls per office that got no answer.
    let mut uncertain: BTreeMap<String, u64> = BTreeMap::new();
    for r in 0..plan.runs {
        let s = scenario(plan, r);
        let before: BTreeSet<String> = offices(port)?.into_iter().collect();
        let target = Target {
            base: format!("http://127.0.0.1:{port}"),
            operator_token: OPERATOR.into(),
            token_secret: Some(SECRET.into()),
            embedded: false,
        };
        let run_opts = RunOptions {
            progress: Progress::Off,
            audit: true,
            max_p99_ms: None,
            max_error_rate: None,
        };
        let sc = s.clone();
        let handle = std::thread::Builder::new()
            .name(format!("kill9-run-{r}"))
            .spawn(move || run(&sc, &target, &run_opts))
            .map_err(|e| format!("run thread: {e}"))?;
        let Some(office) = wait_for_release(port, &before, Duration::from_secs(60)) else {
            let res = handle.join();
            return Err(format!(
                "run {r}: the loadtest's release never appeared: {:?}",
                res.map(|r| r.map(|_| ()))
            ));
        };
        // Kill moments inside the load: from the release (two seconds before the opening) to
        // three seconds after the opening.
        let span = s.opens_in_secs + 3.0;
        let mut at: Vec<f64> = (0..plan.kills_per_run)
            .map(|_| rng.random_range(0.0..span))
            .collect();
        at.sort_by(f64::total_cmp);
        let load_start = Instant::now();
        for moment in at {
            let when = load_start + Duration::from_secs_f64(moment);
            if let Some(wait) = when.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if let Some(why) = server.exited() {
                out.violation(format!("run {r}: the server exited on its own: {why}"));
            }
            let killed = Instant::now();
            server.kill9()?;
            t.cycles += 1;
            // Check on a port no buyer knows.
            let private = free_port();
            let (check, took) = Server::start(opts, private)
                .map_err(|e| format!("cycle {}: restart after kill -9: {e}", t.cycles))?;
            t.recoveries.push(took);
            verify_restarted(private, &ledger, &uncertain, t, out, t.cycles);
            check.kill9()?;
            let (again, took) = Server::start(opts, port)
                .map_err(|e| format!("cycle {}: restart on the buyers' port: {e}", t.cycles))?;
            t.recoveries.push(took);
            t.downtime.push(killed.elapsed());
            server = again;
            println!(
                "   kill9: run {r} ({office}), cycle {}: killed at +{moment:.2} s, ready again in {} (check instance {})",
                t.cycles,
                ms(killed.elapsed()),
                ms(took)
            );
        }
        let result = handle
            .join()
            .map_err(|_| format!("run {r}: the loadtest thread panicked"))?
            .map_err(|e| format!("run {r}: the loadtest could not run: {e}"))?;
        let report = result.report;
        t.requests += report.requests;
        t.unanswered += report
            .errors_by_kind
            .iter()
            .filter(|(k, _)| k.contains("transport") || k.contains("connect"))
            .map(|(_, v)| *v)
            .sum::<u64>();
        t.failed_buyers += report.buyers.outcomes.get("failed").copied().unwrap_or(0);
        match &report.audit {
            Some(a) => {
                t.runs_audited += 1;
                t.acked_claims += a.acknowledged_claims;
                t.server_claims += a.server_claims;
                if !a.passed {
                    t.audit_failures += 1;
                    for line in audit_lines(a) {
                        out.violation(format!("run {r} ({office}) audit: {line}"));
                    }
                }
            }
            None => out.violation(format!("run {r}: no audit")),
        }
        let unanswered: u64 = result
            .history
            .iter()
            .map(|b| b.uncertain_claims as u64)
            .sum();
        *uncertain.entry(report.office.clone()).or_default() += unanswered;
        t.unanswered_claim_calls += unanswered;
        // Claims the server made durable but whose answer the kill swallowed: allowed (the
        // caller never heard "yes"); counted, with what the buyer was finally told.
        if let Some(a) = &report.audit {
            if a.server_claims > a.acknowledged_claims {
                t.durable_unacknowledged += a.server_claims - a.acknowledged_claims;
                for b in result
                    .history
                    .iter()
                    .filter(|b| b.claim.is_none() && b.uncertain_claims > 0)
                {
                    t.unacknowledged_examples.push(format!(
                        "{} ({}): outcome {}, {}",
                        b.user,
                        report.office,
                        b.outcome.as_str(),
                        b.failure.as_deref().unwrap_or("no failure recorded")
                    ));
                }
            }
        }
        for b in &result.history {
            if let (Some(serial), Some(app)) = (&b.claim, &b.application) {
                ledger.push(Acked {
                    office: report.office.clone(),
                    serial: serial.clone(),
                    application: app.clone(),
                });
            }
        }
    }
    // A last cycle with no load: kill the server at rest and check everything once more.
    let killed = Instant::now();
    server.kill9()?;
    t.cycles += 1;
    let (last, took) = Server::start(opts, free_port())?;
    t.recoveries.push(took);
    t.downtime.push(killed.elapsed());
    verify_restarted(last.port, &ledger, &uncertain, t, out, t.cycles);
    drop(last);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_meet_the_issue() {
        let long = Plan::for_mode(Mode::Long);
        assert!(long.runs * long.kills_per_run + 1 >= 50);
        let short = Plan::for_mode(Mode::Short);
        assert!(short.runs * short.kills_per_run >= 2);
        for r in 0..3 {
            let s = scenario(&short, r);
            s.validate().expect("valid scenario");
            assert!(s.transport_retries > 3);
            assert!(s.release_size() < s.buyers as u64 * 10);
        }
        assert_ne!(scenario(&short, 0).seed, scenario(&short, 1).seed);
    }
}
