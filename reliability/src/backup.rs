//! Campaign `backup` (SPEC D1): `platepool backup` while the binary serves an opening.
//!
//! The binary serves a temporary data folder. A first opening, rehearsed by the loadtest crate,
//! runs to its end: its acknowledged claims form the ledger. A second opening starts; once its
//! claims come in, the campaign reads that office's audit trail (every claim the node shows, which
//! it shows only once applied) and at once runs `platepool backup --data-dir D --to C` against
//! the serving node, while the buyers go on. Then:
//!
//! - `platepool verify --data-dir C` must find the copy sound (generation, every record
//!   decodes, I1, I3, I9), and `platepool verify` of the serving folder must refuse;
//! - `platepool serve --data-dir C` must start, hold every claim of the ledger and every claim
//!   the trail showed before the backup began, owned by the same application, no hold, every
//!   release's counts adding up; and every claim the copy holds must be one the source holds
//!   after the opening (nothing torn, nothing invented).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use platepool_engine::backup::BackupReport;
use platepool_engine::verify::VerifyReport;
use platepool_loadtest::api::{list, query_value};
use platepool_loadtest::run::{run, Progress, RunOptions, Target};
use platepool_loadtest::scenario::{Rules, Scenario};
use serde_json::Value;

use crate::server::{free_port, operator_get, Options, Server, OPERATOR, SECRET};
use crate::{Mode, Outcome};

/// How hard the campaign tries.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub buyers: u32,
    /// Claims of the second opening the trail shows when the backup starts.
    pub claims_before: usize,
    pub seed: u64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                buyers: 60,
                claims_before: 10,
                seed: 3,
            },
            Mode::Long => Plan {
                buyers: 400,
                claims_before: 100,
                seed: 3,
            },
        }
    }
}

/// An opening whose buyers compete for fewer numbers than they are.
fn scenario(plan: &Plan, run: u32) -> Scenario {
    Scenario {
        name: format!("backup-{run}"),
        buyers: plan.buyers,
        bots: 0.1,
        arrival_secs: 2.0,
        ramp_secs: 0.0,
        opens_in_secs: 2.0,
        think_min_ms: 50,
        think_max_ms: 300,
        reaction_ms: 300,
        patterns: vec!["B0[0-4]##".into()],
        rules: Rules {
            custom_min_interval_ms: 500,
            random_ttl_ms: 1_000,
            candidate_ttl_ms: 1_500,
            sms_confirm_delay_ms: 200,
            ..Rules::default()
        },
        connections: 64,
        timeout_ms: 10_000,
        seed: plan.seed.wrapping_mul(1_000).wrapping_add(run as u64),
        ..Scenario::default()
    }
}

/// A claim: office, serial, application.
type Claim = (String, String, String);

fn target(port: u16) -> Target {
    Target {
        base: format!("http://127.0.0.1:{port}"),
        operator_token: OPERATOR.into(),
        token_secret: Some(SECRET.into()),
        embedded: false,
    }
}

fn run_options() -> RunOptions {
    RunOptions {
        progress: Progress::Off,
        audit: true,
        max_p99_ms: None,
        max_error_rate: None,
    }
}

/// Every claim in an office's audit trail, as the node shows it now.
fn trail_claims(port: u16, office: &str) -> Result<BTreeSet<Claim>, String> {
    let mut out = BTreeSet::new();
    let mut after = 0u64;
    loop {
        let page = operator_get(
            port,
            &format!(
                "/v1/admin/audit?office={}&after={after}&limit=1000",
                query_value(office)
            ),
        )?;
        for e in list(&page, &["entries"]) {
            let action = e.get("action").and_then(Value::as_str).unwrap_or("");
            if !matches!(action, "claim" | "custom_claim") {
                continue;
            }
            let serial = e.get("serial").and_then(Value::as_str);
            let app = e.get("application").and_then(Value::as_str);
            if let (Some(s), Some(a)) = (serial, app) {
                out.insert((office.to_string(), s.to_string(), a.to_string()));
            }
        }
        match page.get("next_after").and_then(Value::as_u64) {
            Some(next) if page.get("more") == Some(&Value::Bool(true)) => after = next,
            _ => return Ok(out),
        }
    }
}

/// Waits for an office with a release that is not in `before`.
fn new_office(port: u16, before: &BTreeSet<String>) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        for o in offices(port).unwrap_or_default() {
            if before.contains(&o) {
                continue;
            }
            let pool = operator_get(port, &format!("/v1/offices/{o}/pool")).ok()?;
            if list(&pool, &["classes"])
                .iter()
                .any(|c| !list(c, &["releases"]).is_empty())
            {
                return Some(o);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn offices(port: u16) -> Result<Vec<String>, String> {
    let v = operator_get(port, "/v1/offices")?;
    Ok(list(&v, &["offices"])
        .iter()
        .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// Runs the binary's `backup` or `verify` with `--json`; (exit success, stdout, stderr).
fn cli(
    bin: &Path,
    args: &[&str],
    dirs: &[(&str, &Path)],
) -> Result<(bool, String, String), String> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (flag, dir) in dirs {
        cmd.arg(flag).arg(dir);
    }
    let out = cmd
        .arg("--json")
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "backup",
        "backup while serving an opening, verify, serve the copy",
    );
    if let Err(e) = campaign_into(&Plan::for_mode(mode), &mut out) {
        out.violation(e);
    }
    out.elapsed = started.elapsed();
    out
}

fn campaign_into(plan: &Plan, out: &mut Outcome) -> Result<(), String> {
    let bin = crate::storage::binary(true)?;
    let temp = tempfile::Builder::new()
        .prefix("platepool-backup-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let data = temp.path().join("data");
    let copy = temp.path().join("copy");
    let port = free_port();
    let (server, _) = Server::start(&Options::new(bin.clone(), data.clone()), port)?;

    // Opening 1, to its end: its acknowledged claims are the ledger.
    let first = run(&scenario(plan, 0), &target(port), &run_options())
        .map_err(|e| format!("opening 1: {e}"))?;
    let mut before: BTreeSet<Claim> = first
        .history
        .iter()
        .filter_map(|b| {
            Some((
                first.report.office.clone(),
                b.claim.clone()?,
                b.application.clone()?,
            ))
        })
        .collect();
    let ledger = before.len();

    // Opening 2, and the backup during its load.
    let known: BTreeSet<String> = offices(port)?.into_iter().collect();
    let sc = scenario(plan, 1);
    let load = std::thread::spawn(move || run(&sc, &target(port), &run_options()));
    let office = new_office(port, &known).ok_or("opening 2's release never appeared")?;
    // The backup starts once the opening's claims are coming in.
    let waiting = Instant::now();
    let mut shown = trail_claims(port, &office)?;
    while shown.len() < plan.claims_before && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
        shown = trail_claims(port, &office)?;
    }
    let shown_count = shown.len();
    before.extend(shown);
    let backup_started = Instant::now();
    let (ok, stdout, stderr) = cli(&bin, &["backup"], &[("--data-dir", &data), ("--to", &copy)])?;
    let backup_wall = backup_started.elapsed();
    if !ok {
        return Err(format!("platepool backup failed: {stderr}"));
    }
    let report: BackupReport = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("backup report {stdout:?}: {e}"))?;
    let second = load
        .join()
        .map_err(|_| "opening 2's loadtest panicked")?
        .map_err(|e| format!("opening 2: {e}"))?;
    let after_source = trail_claims(port, &office)?;
    let audits_passed = [&first, &second]
        .iter()
        .all(|r| r.report.audit.as_ref().is_some_and(|a| a.passed));
    out.check(
        audits_passed,
        "both openings' loadtest audits passed on the source node",
        "an opening's loadtest audit failed on the source node",
    );
    let (refused, _, why) = cli(&bin, &["verify"], &[("--data-dir", &data)])?;
    out.check(
        !refused && why.contains("a node is serving"),
        "`platepool verify` of the folder a node serves refuses, naming the reason",
        format!("`platepool verify` of the serving folder did not refuse clearly: {why}"),
    );
    drop(server);

    let (sound, stdout, stderr) = cli(&bin, &["verify"], &[("--data-dir", &copy)])?;
    let verified: Option<VerifyReport> = serde_json::from_str(stdout.trim()).ok();
    out.check(
        sound && verified.as_ref().is_some_and(VerifyReport::is_sound),
        format!(
            "`platepool verify` finds the copy sound: generation, every record decodes, I1, I3, I9 ({} applications, {} numbers claimed or issued)",
            verified.as_ref().map_or(0, |v| v.applications),
            verified.as_ref().map_or(0, |v| v.numbers_taken)
        ),
        format!("`platepool verify` of the copy: {stdout} {stderr}"),
    );

    let copy_port = free_port();
    let (restored, _) = Server::start(&Options::new(bin.clone(), copy.clone()), copy_port)?;
    check_copy(copy_port, &before, &office, &after_source, out)?;
    drop(restored);

    out.tried(format!(
        "two loadtest openings of {} buyers against the binary; `platepool backup` through the serving node once the second opening's trail showed {} claims, its buyers going on",
        plan.buyers, plan.claims_before
    ));
    out.figure(
        "claims acknowledged before the backup (opening 1) / shown before it (opening 2)",
        format!("{ledger} / {shown_count}"),
    );
    out.figure(
        "claims of opening 2 on the source after its end",
        after_source.len(),
    );
    out.figure(
        "backup: records / writes paused / whole backup / the command's wall time",
        format!(
            "{} / {:.2} ms / {} ms / {} ms",
            report.records,
            report.pause_us as f64 / 1000.0,
            report.total_ms,
            backup_wall.as_millis()
        ),
    );
    Ok(())
}

/// The copy, served: every claim of `before` there with its owner, nothing held, counts adding
/// up, and every claim of `office` one the source holds (`after_source`).
fn check_copy(
    port: u16,
    before: &BTreeSet<Claim>,
    office: &str,
    after_source: &BTreeSet<Claim>,
    out: &mut Outcome,
) -> Result<(), String> {
    let mut missing = Vec::new();
    for (o, serial, app) in before {
        let v = operator_get(
            port,
            &format!(
                "/v1/admin/applications?serial={}&office={}",
                query_value(serial),
                query_value(o)
            ),
        )?;
        let owners: Vec<&str> = list(&v, &["applications", "items"])
            .iter()
            .filter(|a| a.get("claim").is_some_and(|c| !c.is_null()))
            .filter_map(|a| a.get("id").and_then(Value::as_str))
            .collect();
        if owners != [app.as_str()] {
            missing.push(format!(
                "{o} {serial} of {app} (owners in the copy {owners:?})"
            ));
        }
    }
    out.check(
        missing.is_empty(),
        format!(
            "the copy, served by `platepool serve`, holds all {} claims acknowledged or shown before the backup began, each owned by its application alone (I1, I2)",
            before.len()
        ),
        format!("claims missing from the copy: {}", missing.join("; ")),
    );
    let in_copy = trail_claims(port, office)?;
    let invented: Vec<&Claim> = in_copy.difference(after_source).collect();
    out.check(
        invented.is_empty(),
        format!(
            "every one of the copy's {} claims of the second opening is one the source holds (nothing torn or invented)",
            in_copy.len()
        ),
        format!("claims in the copy the source does not hold: {invented:?}"),
    );
    let mut held = 0;
    let mut unbalanced = Vec::new();
    for o in offices(port)? {
        let stats = operator_get(port, &format!("/v1/admin/offices/{o}/stats"))?;
        for class in list(&stats, &["classes"]) {
            for r in list(class, &["releases"]) {
                let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
                held += n("held");
                let sum = [
                    "pending",
                    "available",
                    "held",
                    "claimed",
                    "issued",
                    "withdrawn",
                ]
                .iter()
                .map(|k| n(k))
                .sum::<u64>();
                if sum != n("total") {
                    unbalanced.push(format!(
                        "{o} release {}",
                        r.get("id").unwrap_or(&Value::Null)
                    ));
                }
            }
        }
    }
    out.check(
        held == 0 && unbalanced.is_empty(),
        "the copy holds no number (holds are never copied) and every release's counts add up to its size (I9)",
        format!("in the copy: {held} numbers held; counts not adding up: {unbalanced:?}"),
    );
    Ok(())
}
