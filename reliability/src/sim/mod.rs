//! Campaign 1: deterministic simulation of one office with faults (TigerBeetle's VOPR, in small).
//!
//! A seed decides everything: the office's rules, the operations of many applications and of
//! operators, the clock (small steps, jumps past hold lives and past registration deadlines),
//! when the writer flushes, and the faults — a flush that fails (whose group may or may not have
//! reached the disk), a crash (memory and unflushed commits gone, the group in flight maybe
//! written), a clean restart. The pool runs behind [`shell::Shell`], which follows the actor's
//! protocol; [`model::Auditor`] predicts every reply and checks the pool after every step
//! (`check_invariants`: I1, I4, conservation) and, after every recovery, that the restored office
//! is exactly what was acknowledged (I2, I3, I9).
//!
//! `reliability sim --seed N` replays one seed exactly.

pub mod model;
pub mod shell;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use platepool_engine::calendar::parse_rfc3339;
use platepool_engine::pool::{Event, NewApplication, NewRelease, OfficePool};
use platepool_engine::record::AppState;
use platepool_engine::rules::DenyRule;
use platepool_engine::{
    Energy, Notice, OfficeConfig, OfficeRules, Pattern, PlateClass, ReleaseSource, Serial,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{thousands, Mode, Outcome};
use model::{Auditor, Durable, Fact, NState};
use shell::{Called, Commit, Disk, Shell, WriterMode};

/// Seeds of a campaign start here (a seed is any u64; this keeps reports comparable).
pub const FIRST_SEED: u64 = 1;
/// Applications one seed opens at most.
const APPS_MAX: usize = 160;
/// Per step: chance of a crash, of a clean restart, of a failed flush (per flush).
const CRASH_P: f64 = 0.004;
const RESTART_P: f64 = 0.001;
const FLUSH_FAIL_P: f64 = 0.004;
/// While the office refuses writes, chance per step that the operator restarts it.
const RESTART_WHEN_FAILED_P: f64 = 0.05;
const DAY_MS: u64 = 86_400_000;

/// Volumes of one campaign.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seeds: u64,
    pub ops_per_seed: u64,
    pub mode: WriterMode,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                seeds: 50,
                ops_per_seed: 2_000,
                mode: WriterMode::FailStop,
            },
            Mode::Long => Plan {
                seeds: 1_000,
                ops_per_seed: 10_000,
                mode: WriterMode::FailStop,
            },
        }
    }
}

/// What a run counted.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub seeds: u64,
    pub ops: u64,
    pub by_op: BTreeMap<&'static str, u64>,
    pub refusals: BTreeMap<&'static str, u64>,
    pub acked_writes: u64,
    pub acked_claims: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub flush_failures: u64,
    pub failed_groups_landed: u64,
    pub inflight_groups_landed: u64,
    pub unacked_commits_lost: u64,
    pub refused_while_failed: u64,
    pub answered_unavailable: u64,
    pub claims_verified_after_recovery: u64,
    pub apps_verified_after_recovery: u64,
    pub lapses: u64,
    pub exhaustions: u64,
    pub clock_jumps: u64,
    pub recovery_max: Duration,
    pub recovery_total: Duration,
    pub recoveries: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.seeds += o.seeds;
        self.ops += o.ops;
        for (k, v) in &o.by_op {
            *self.by_op.entry(k).or_default() += v;
        }
        for (k, v) in &o.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
        self.acked_writes += o.acked_writes;
        self.acked_claims += o.acked_claims;
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.flush_failures += o.flush_failures;
        self.failed_groups_landed += o.failed_groups_landed;
        self.inflight_groups_landed += o.inflight_groups_landed;
        self.unacked_commits_lost += o.unacked_commits_lost;
        self.refused_while_failed += o.refused_while_failed;
        self.answered_unavailable += o.answered_unavailable;
        self.claims_verified_after_recovery += o.claims_verified_after_recovery;
        self.apps_verified_after_recovery += o.apps_verified_after_recovery;
        self.lapses += o.lapses;
        self.exhaustions += o.exhaustions;
        self.clock_jumps += o.clock_jumps;
        self.recovery_max = self.recovery_max.max(o.recovery_max);
        self.recovery_total += o.recovery_total;
        self.recoveries += o.recoveries;
    }
}

/// A violation found by a seed: where, and what.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub what: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} step {} ({}): {} — reproduce with `reliability sim --seed {}`",
            self.seed, self.step, self.what, self.message, self.seed
        )
    }
}

/// A class and, optionally, an energy group's pattern (as text).
type SerialKey = (usize, Option<String>);

/// One seed's world.
struct Run {
    seed: u64,
    rng: StdRng,
    shell: Shell,
    auditor: Auditor,
    /// The durable view at the last recovery, and the groups since: (maybe?, facts).
    base: Durable,
    journal: Vec<(bool, Vec<Fact>)>,
    now: u64,
    step: u64,
    what: &'static str,
    tally: Tally,
    next_user: u64,
    patterns: Vec<(usize, Vec<&'static str>)>,
    /// Compare every application and release after every step (slow; for replaying a seed),
    /// and print each step.
    compare_every_step: bool,
    /// `base` plus every acknowledged group since: what a reply may rely on.
    acked: Durable,
    /// Where the step number is published for the panic report.
    step_seen: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Released serials per (class, group), with the release ids they were built from.
    serial_cache: BTreeMap<SerialKey, (Vec<u32>, Vec<Serial>)>,
}

/// Seeds `first_seed..first_seed + plan.seeds`, spread over the machine's cores (each seed is
/// independent and deterministic); stops soon after a failure and reports the lowest failing seed.
pub fn run_plan(plan: Plan, first_seed: u64) -> (Tally, Option<Failure>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(plan.seeds.max(1) as usize);
    let next = AtomicU64::new(first_seed);
    let stop = AtomicBool::new(false);
    let results: Mutex<(Tally, Vec<Failure>)> = Mutex::new((Tally::default(), Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= first_seed + plan.seeds || stop.load(Ordering::SeqCst) {
                    break;
                }
                let (tally, failure) = run_seed(seed, plan.ops_per_seed, plan.mode);
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                r.0.add(&tally);
                if let Some(f) = failure {
                    r.1.push(f);
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    let (tally, mut failures) = results.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|f| f.seed);
    (tally, failures.into_iter().next())
}

/// One seed, reproducibly.
pub fn run_seed(seed: u64, ops: u64, mode: WriterMode) -> (Tally, Option<Failure>) {
    run_seed_with(seed, ops, mode, false)
}

/// One seed; with `thorough`, everything is compared after every step (to narrow a failure).
pub fn run_seed_with(
    seed: u64,
    ops: u64,
    mode: WriterMode,
    thorough: bool,
) -> (Tally, Option<Failure>) {
    // The pool's own assertions (`check_invariants`, debug assertions) panic: report them as the
    // seed's failure instead of taking the campaign down.
    let step = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = step.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut run = Run::new(seed, mode);
        run.compare_every_step = thorough;
        run.step_seen = Some(seen);
        let result = run.go(ops);
        run.tally.seeds = 1;
        (run.tally, result.err())
    }));
    outcome.unwrap_or_else(|p| {
        let tally = Tally {
            seeds: 1,
            ..Tally::default()
        };
        let failure = Failure {
            seed,
            step: step.load(std::sync::atomic::Ordering::Relaxed),
            what: "assertion".into(),
            message: format!("panic: {}", crate::fuzz::panic_text(&p)),
        };
        (tally, Some(failure))
    })
}

/// The campaign for the `reliability` binary.
pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let plan = Plan::for_mode(mode);
    let mut out = Outcome::new("sim", "deterministic simulation with faults (campaign 1)");
    let (t, failure) = run_plan(plan, FIRST_SEED);
    out.tried(format!(
        "{} operations over {} seeds ({}..{}), {} per seed, on a simulated clock",
        thousands(t.ops),
        t.seeds,
        FIRST_SEED,
        FIRST_SEED + plan.seeds - 1,
        thousands(plan.ops_per_seed)
    ));
    let ops: Vec<String> = t
        .by_op
        .iter()
        .map(|(k, v)| format!("{k} {}", thousands(*v)))
        .collect();
    out.tried(format!("operations: {}", ops.join(", ")));
    out.tried(format!(
        "faults: {} crashes, {} clean restarts, {} failed flushes ({} of those groups reached the disk anyway), {} in-flight groups written at a crash",
        t.crashes, t.restarts, t.flush_failures, t.failed_groups_landed, t.inflight_groups_landed
    ));
    out.tried(format!(
        "{} clock jumps past hold lives or registration deadlines ({} lapses, {} exhaustions)",
        t.clock_jumps, t.lapses, t.exhaustions
    ));
    let refusals: Vec<String> = t
        .refusals
        .iter()
        .map(|(k, v)| format!("{k} {}", thousands(*v)))
        .collect();
    out.tried(format!(
        "refusals predicted and seen: {}",
        refusals.join(", ")
    ));
    out.figure("operations simulated", thousands(t.ops));
    out.figure("seeds", t.seeds);
    out.figure("crashes + clean restarts", t.crashes + t.restarts);
    out.figure("failed flushes injected", t.flush_failures);
    out.figure("acknowledged writes", thousands(t.acked_writes));
    out.figure("acknowledged claims", thousands(t.acked_claims));
    out.figure(
        "acknowledged claims re-checked after recoveries",
        thousands(t.claims_verified_after_recovery),
    );
    out.figure(
        "unacknowledged commits lost in crashes (allowed)",
        thousands(t.unacked_commits_lost),
    );
    out.figure(
        "writes refused while the office was failed",
        thousands(t.refused_while_failed + t.answered_unavailable),
    );
    out.figure(
        "recovery (restore + first tick), max / mean",
        format!(
            "{:.2} ms / {:.3} ms over {} recoveries",
            t.recovery_max.as_secs_f64() * 1e3,
            if t.recoveries > 0 {
                t.recovery_total.as_secs_f64() * 1e3 / t.recoveries as f64
            } else {
                0.0
            },
            t.recoveries
        ),
    );
    match failure {
        None => {
            out.held("every reply matched the auditor's prediction (quotas debited exactly, I3; no number to two holders, I1)");
            out.held("check_invariants after every step: one holder per number, no hold past expiry (I1, I4), conservation per release");
            out.held(format!(
                "after every crash and restart the office was exactly the acknowledged state: {} applications and {} claims re-checked, holds back in the pool (I2, I9)",
                thousands(t.apps_verified_after_recovery),
                thousands(t.claims_verified_after_recovery)
            ));
            out.held("no reply acknowledged before its group was flushed; after a failed flush nothing of the group was acknowledged and every write was refused until restart");
            out.figure("lost acknowledged data", "none");
        }
        Some(f) => {
            out.violation(f.to_string());
            out.figure(
                "lost acknowledged data",
                format!("see violation (seed {})", f.seed),
            );
        }
    }
    out.elapsed = started.elapsed();
    out
}

fn office_config(rng: &mut StdRng) -> OfficeConfig {
    let rules = OfficeRules {
        custom_quota: rng.random_range(1..=8),
        custom_per_check: rng.random_range(1..=3),
        custom_min_interval_ms: rng.random_range(1..=10) * 1_000,
        random_quota: rng.random_range(1..=5),
        random_batch: rng.random_range(1..=6),
        random_ttl_ms: rng.random_range(20..=120) * 1_000,
        candidate_ttl_ms: rng.random_range(30..=240) * 1_000,
        validity_working_days: rng.random_range(1..=3),
        opening_window_ms: 0,
        random_min_interval_ms: rng.random_range(0..=2) * 1_000,
        deny: if rng.random_bool(0.5) {
            vec![DenyRule::ThreeIdenticalDigits]
        } else {
            Vec::new()
        },
        ..OfficeRules::default()
    };
    OfficeConfig {
        name: "simulated office".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "small_new_energy".into()],
        rules,
        notice: Notice {
            version: "v1".into(),
            text: "terms".into(),
        },
    }
}

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap_or_else(|e| panic!("simulation pattern {text}: {e:?}"))
}

impl Run {
    fn new(seed: u64, mode: WriterMode) -> Run {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = office_config(&mut rng);
        let catalog = PlateClass::builtin();
        let pool = match OfficePool::new("sim", config.clone(), catalog.clone()) {
            Ok(p) => p,
            Err(e) => panic!("simulation office: {e}"),
        };
        let disk = Disk {
            config: Some(config.clone()),
            ..Disk::default()
        };
        let shell = Shell {
            id: "sim".into(),
            catalog: catalog.clone(),
            pool,
            rng: StdRng::seed_from_u64(seed ^ 0x005e_ed0f_9001),
            failed: false,
            writer_failed: false,
            mode,
            queue: Default::default(),
            disk,
            ticked_at: 0,
        };
        let now = parse_rfc3339("2026-03-02T01:00:00Z").unwrap_or(1_772_413_200_000);
        let auditor = Auditor::new(config, catalog);
        // Pools small enough that applications contend for numbers.
        let patterns = vec![
            (
                0,
                vec![
                    "A00##",
                    "A01[0-4]#",
                    "B00##",
                    "C1[0-2]##",
                    "A0[0-2]##",
                    "[AB]00[0-2]#",
                ],
            ),
            (
                1,
                vec![
                    "DA12##",
                    "D[AB]13[0-4]#",
                    "FB35##",
                    "F[0-2]360#",
                    "DA1[23]##",
                ],
            ),
        ];
        Run {
            seed,
            rng,
            shell,
            auditor,
            base: Durable::default(),
            journal: Vec::new(),
            now,
            step: 0,
            what: "setup",
            tally: Tally::default(),
            next_user: 1,
            patterns,
            compare_every_step: false,
            acked: Durable::default(),
            step_seen: None,
            serial_cache: BTreeMap::new(),
        }
    }

    fn fail(&self, message: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            what: self.what.to_string(),
            message: message.into(),
        }
    }

    fn go(&mut self, ops: u64) -> Result<(), Failure> {
        // Opening releases, acknowledged before anything else happens.
        let now = self.now;
        self.release(0, &["A00##"], now, None)?;
        self.release(0, &["B00##"], now + 600_000, Some(now + DAY_MS))?;
        self.release(1, &["DA12##"], now, None)?;
        self.release(1, &["FB35##"], now + 1_800_000, None)?;
        self.flush_all()?;
        for step in 1..=ops {
            self.step = step;
            if let Some(seen) = &self.step_seen {
                seen.store(step, std::sync::atomic::Ordering::Relaxed);
            }
            self.one_step()?;
            self.tally.ops += 1;
        }
        self.what = "final restart";
        self.flush_all()?;
        self.recover(false)?;
        Ok(())
    }

    fn count(&mut self, op: &'static str) {
        *self.tally.by_op.entry(op).or_default() += 1;
    }

    fn one_step(&mut self) -> Result<(), Failure> {
        self.advance_clock();
        if self.shell.failed && self.rng.random_bool(RESTART_WHEN_FAILED_P) {
            self.what = "restart of a failed office";
            self.tally.restarts += 1;
            return self.recover(true);
        }
        if self.rng.random_bool(CRASH_P) {
            self.what = "crash";
            self.tally.crashes += 1;
            return self.recover(true);
        }
        if self.rng.random_bool(RESTART_P) {
            self.what = "clean restart";
            self.tally.restarts += 1;
            self.flush_all()?;
            return self.recover(false);
        }
        let r: u32 = self.rng.random_range(0..1000);
        match r {
            0..=79 => self.op_apply()?,
            80..=179 => self.op_verify()?,
            180..=379 => self.op_draw()?,
            380..=489 => self.op_pick()?,
            490..=589 => self.op_claim()?,
            590..=769 => self.op_custom()?,
            770..=799 => self.op_register(false)?,
            800..=819 => self.op_register(true)?,
            820..=834 => self.op_withdraw_number()?,
            835..=839 => self.op_withdraw_release()?,
            840..=849 => self.op_add_release()?,
            850..=939 => self.op_read()?,
            _ => self.op_timer()?,
        }
        if self.rng.random_bool(0.5) {
            let n = self.rng.random_range(1..=self.shell.queue.len().max(1));
            self.flush(n)?;
        }
        if self.step % 50 == 0 || self.compare_every_step {
            self.compare_all()?;
        }
        Ok(())
    }

    fn advance_clock(&mut self) {
        let r: f64 = self.rng.random();
        let ms = if r < 0.75 {
            self.rng.random_range(0..2_000)
        } else if r < 0.95 {
            self.rng.random_range(2_000..12_000)
        } else if r < 0.999 {
            self.tally.clock_jumps += 1;
            self.rng.random_range(30_000..300_000)
        } else {
            self.tally.clock_jumps += 1;
            self.rng.random_range(DAY_MS / 2..5 * DAY_MS)
        };
        self.now += ms;
    }

    // -----------------------------------------------------------------------------------------
    // The shell protocol around each operation

    /// Runs a write step: the auditor ticks with the pool, the step runs through the shell, the
    /// auditor judges the answer, and its facts ride with the step's commit.
    fn write<R: std::fmt::Debug>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, platepool_engine::Refusal>,
        judge: impl FnOnce(&mut Auditor, u64, &Result<R, platepool_engine::Refusal>) -> model::Verdict,
    ) -> Result<Option<Result<R, platepool_engine::Refusal>>, Failure> {
        self.what = op;
        self.count(op);
        let now = self.now;
        if self.shell.failed {
            match self.shell.call(self.step, now, f) {
                Called::RefusedFailed => {
                    self.tally.refused_while_failed += 1;
                    return Ok(None);
                }
                Called::Ran { .. } => return Err(self.fail("a failed office ran a write")),
            }
        }
        let (lapses, exhausted) = self.auditor.tick(now);
        self.tally.lapses += lapses;
        self.tally.exhaustions += exhausted;
        let Called::Ran { result, queued } = self.shell.call(self.step, now, f) else {
            return Err(self.fail("a healthy office refused a write"));
        };
        if let Err(r) = &result {
            *self.tally.refusals.entry(r.code()).or_default() += 1;
        }
        if self.compare_every_step {
            println!("step {} at {now}: {op} -> {result:?}", self.step);
        }
        judge(&mut self.auditor, now, &result).map_err(|m| self.fail(m))?;
        let facts = self.auditor.take_facts();
        if queued {
            if let Some(c) = self.shell.queue.back_mut() {
                c.facts = facts;
            }
        } else if !facts.is_empty() {
            return Err(self.fail(format!(
                "a step changed durable state without a record: {facts:?}"
            )));
        }
        self.shell.pool.check_invariants(now);
        Ok(Some(result))
    }

    fn flush(&mut self, n: usize) -> Result<(), Failure> {
        if self.shell.queue.is_empty() {
            return Ok(());
        }
        let fail = self.rng.random_bool(FLUSH_FAIL_P);
        let lands = self.rng.random_bool(0.5);
        let out = self.shell.flush(n, fail, lands);
        if let Some(landed) = out.failed_group_landed {
            self.what = "failed flush";
            if self.compare_every_step {
                println!("step {}: flush failed, group landed: {landed}", self.step);
            }
            self.tally.flush_failures += 1;
            if landed {
                self.tally.failed_groups_landed += 1;
            }
        }
        for c in out.acked {
            self.ack(c)?;
        }
        if !out.failed.is_empty() {
            // The failed group is one batch: wholly on the disk or wholly absent.
            let facts: Vec<Fact> = out.failed.iter().flat_map(|c| c.facts.clone()).collect();
            self.journal.push((true, facts));
        }
        for c in out.failed.iter().chain(&out.refused) {
            if c.has_reply {
                self.tally.answered_unavailable += 1;
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), Failure> {
        while !self.shell.queue.is_empty() && !self.shell.writer_failed {
            let n = self.shell.queue.len();
            let out = self.shell.flush(n, false, false);
            for c in out.acked {
                self.ack(c)?;
            }
        }
        Ok(())
    }

    /// A commit is durable: its reply is acknowledged, its events go out.
    fn ack(&mut self, c: Commit) -> Result<(), Failure> {
        self.acked.apply(&c.facts);
        let durable = &self.acked;
        for e in &c.events {
            match e {
                Event::Claimed { app, serial, .. } => {
                    let ok = durable.apps.get(app).and_then(|a| a.claim).map(|c| c.0)
                        == Some(*serial)
                        && durable.numbers.get(serial) == Some(&NState::Claimed(*app));
                    if !ok {
                        return Err(self.fail(format!("claim SMS for {serial} (application {app}) sent, but the claim is not durable")));
                    }
                    self.tally.acked_claims += 1;
                }
                Event::Lapsed { app, .. } => {
                    if durable.apps.get(app).map(|a| a.state) != Some(AppState::Lapsed) {
                        return Err(self.fail(format!(
                            "blacklisting for application {app} sent before its lapse is durable"
                        )));
                    }
                }
            }
        }
        if c.has_reply && c.success {
            self.tally.acked_writes += 1;
        }
        self.journal.push((false, c.facts));
        Ok(())
    }

    /// Crash (`crash`) or clean restart: memory dropped, the office recovered from its disk and
    /// compared with what was acknowledged.
    fn recover(&mut self, crash: bool) -> Result<(), Failure> {
        if crash {
            let in_flight = self.shell.queue.len();
            let landing = if in_flight > 0 && self.rng.random_bool(0.3) {
                self.rng.random_range(1..=in_flight)
            } else {
                0
            };
            let lost_before = self.shell.queue.len();
            let landed = self.shell.crash(landing);
            self.tally.unacked_commits_lost += (lost_before - landed.len()) as u64;
            if !landed.is_empty() {
                self.tally.inflight_groups_landed += 1;
                let facts: Vec<Fact> = landed.into_iter().flat_map(|c| c.facts).collect();
                self.journal.push((true, facts));
            }
        }
        let now = self.now;
        if self.compare_every_step {
            println!(
                "step {} at {now}: {} (journal {:?})",
                self.step,
                self.what,
                self.journal
                    .iter()
                    .map(|j| (j.0, j.1.len()))
                    .collect::<Vec<_>>()
            );
        }
        let started = Instant::now();
        let recovered = self.shell.recover(self.step, now);
        let took = started.elapsed();
        self.tally.recoveries += 1;
        self.tally.recovery_total += took;
        self.tally.recovery_max = self.tally.recovery_max.max(took);
        if let Err(e) = recovered {
            return Err(self.fail(format!(
                "the office cannot be recovered from what was flushed: {e}"
            )));
        }
        self.shell.pool.check_invariants(now);
        // The restored office must be the acknowledged state plus, at most, groups that were not
        // confirmed (each either wholly there or wholly absent).
        let maybes: Vec<usize> = self
            .journal
            .iter()
            .enumerate()
            .filter(|(_, j)| j.0)
            .map(|(i, _)| i)
            .collect();
        if maybes.len() > 6 {
            return Err(self.fail("too many unconfirmed groups to audit"));
        }
        // Several candidates may look alike after the restart rules (an exhaustion re-derived
        // at restore looks like one that landed); the one taken must also explain whether
        // recovery had records of its own to write.
        let startup_commit = self
            .shell
            .queue
            .back()
            .is_some_and(|c| c.step == self.step && !c.has_reply);
        let mut errors = Vec::new();
        let mut matched = None;
        for mask in 0..(1u32 << maybes.len()) {
            let mut d = self.base.clone();
            for (i, (maybe, facts)) in self.journal.iter().enumerate() {
                let take = if *maybe {
                    let bit = maybes.iter().position(|&m| m == i).unwrap_or(0);
                    mask & (1 << bit) != 0
                } else {
                    true
                };
                if take {
                    d.apply(facts);
                }
            }
            let mut after = d.clone();
            self.auditor.restart_rules(&mut after, now);
            if let Err(e) = self.compare_restored(&after) {
                errors.push(e);
                continue;
            }
            // What recovery changed by itself (exhaustions, lapses) rides with its first commit.
            let mut facts = Vec::new();
            for (seq, app) in &after.apps {
                if d.apps.get(seq) != Some(app) {
                    facts.push(Fact::App(*seq, app.clone()));
                }
            }
            for s in d.numbers.keys().chain(after.numbers.keys()) {
                if d.numbers.get(s) != after.numbers.get(s) {
                    facts.push(Fact::Number(*s, after.numbers.get(s).copied()));
                }
            }
            if facts.is_empty() || startup_commit {
                matched = Some((d, after, facts));
                break;
            }
            errors.push("recovery changed applications without a record".into());
        }
        let Some((before, after, facts)) = matched else {
            return Err(self.fail(format!(
                "the recovered office is not the acknowledged state: {}",
                errors.join(" | ")
            )));
        };
        self.tally.apps_verified_after_recovery += after.apps.len() as u64;
        self.tally.claims_verified_after_recovery += after
            .numbers
            .values()
            .filter(|s| matches!(s, NState::Claimed(_) | NState::Issued(_)))
            .count() as u64;
        self.auditor.reset_to(after.clone());
        self.acked = before.clone();
        self.base = before;
        self.journal.clear();
        if !facts.is_empty() {
            if let Some(c) = self.shell.queue.back_mut() {
                c.facts = facts;
            }
        }
        Ok(())
    }

    /// The restored pool against a candidate durable view (after the restart rules).
    fn compare_restored(&self, d: &Durable) -> Result<(), String> {
        let pool = &self.shell.pool;
        let now = self.now;
        let count = pool.applications().count();
        if count != d.apps.len() {
            return Err(format!(
                "{count} applications restored, {} acknowledged",
                d.apps.len()
            ));
        }
        for (seq, app) in &d.apps {
            let view = pool
                .application(*seq, now)
                .expect("application read")
                .ok_or(format!("application {seq} missing"))?;
            model::compare_record(*seq, app, &view)?;
            if view.batch.is_some() || view.candidates.is_some() {
                return Err(format!(
                    "application {seq} still holds numbers after a restart (I9)"
                ));
            }
        }
        for (s, st) in &d.numbers {
            let owner = pool.owner_of(&s.to_string()).expect("owner read");
            let want = match st {
                NState::Claimed(a) | NState::Issued(a) => Some(*a),
                NState::Withdrawn => None,
            };
            if owner != want {
                return Err(format!(
                    "number {s}: owner {owner:?} restored, {want:?} acknowledged"
                ));
            }
        }
        let stats = pool.stats();
        let mut owned = vec![0u64; stats.len()];
        for (s, st) in &d.numbers {
            if matches!(st, NState::Claimed(_) | NState::Issued(_)) {
                if let Some(r) = d
                    .releases
                    .values()
                    .find(|r| r.serials.binary_search(s).is_ok())
                {
                    owned[r.class] += 1;
                }
            }
        }
        for (c, cs) in stats.iter().enumerate() {
            if cs.counts.held != 0 {
                return Err(format!(
                    "{} numbers of {} held after a restart (I9)",
                    cs.counts.held, cs.class
                ));
            }
            if cs.counts.claimed + cs.counts.issued != owned[c] {
                return Err(format!(
                    "{} claimed+issued numbers of {} restored, {} acknowledged (I2)",
                    cs.counts.claimed + cs.counts.issued,
                    cs.class,
                    owned[c]
                ));
            }
            for rs in &cs.releases {
                let Some(r) = d.releases.get(&rs.id) else {
                    return Err(format!("release {} restored but never acknowledged", rs.id));
                };
                let c = &rs.counts;
                let got = [
                    c.pending,
                    c.available,
                    c.held,
                    c.claimed,
                    c.issued,
                    c.withdrawn,
                ];
                let want = Auditor::durable_release_counts(d, rs.id, now);
                if got != want {
                    return Err(format!(
                        "release {}: counts (pending, available, held, claimed, issued, withdrawn) {got:?} restored, {want:?} acknowledged",
                        rs.id
                    ));
                }
                if rs.total != r.serials.len() as u64 || rs.withdrawn != r.withdrawn {
                    return Err(format!(
                        "release {}: {} numbers (withdrawn {}) restored, {} (withdrawn {}) acknowledged",
                        rs.id,
                        rs.total,
                        rs.withdrawn,
                        r.serials.len(),
                        r.withdrawn
                    ));
                }
            }
        }
        let restored_releases: usize = stats.iter().map(|c| c.releases.len()).sum();
        if restored_releases != d.releases.len() {
            return Err(format!(
                "{restored_releases} releases restored, {} acknowledged",
                d.releases.len()
            ));
        }
        Ok(())
    }

    /// Every application of the live view against the pool, and the counts per class.
    fn compare_all(&mut self) -> Result<(), Failure> {
        self.what = "compare";
        let now = self.now;
        let seqs: Vec<u64> = self.auditor.live.apps.keys().copied().collect();
        for seq in seqs {
            let view = self
                .shell
                .pool
                .application(seq, now)
                .expect("application read");
            self.auditor
                .compare_view(seq, view.as_ref(), now)
                .map_err(|m| self.fail(m))?;
        }
        if !self.shell.failed {
            let stats = self.shell.pool.stats();
            let held = self.auditor.held_per_class(stats.len());
            for (c, cs) in stats.iter().enumerate() {
                if cs.counts.held != held[c] {
                    return Err(self.fail(format!(
                        "{} held in {}, the model has {}",
                        cs.counts.held, cs.class, held[c]
                    )));
                }
                // Stats are read without a tick here (the actor ticks before every call, the
                // sim only where a call ran): compare with the model at the last tick.
                let ticked_at = self.shell.ticked_at;
                for rs in &cs.releases {
                    let want = self.auditor.release_counts(rs.id, ticked_at);
                    let c = &rs.counts;
                    let got = [
                        c.pending,
                        c.available,
                        c.held,
                        c.claimed,
                        c.issued,
                        c.withdrawn,
                    ];
                    if got != want {
                        return Err(self.fail(format!(
                            "release {} counts (pending, available, held, claimed, issued, withdrawn) {got:?}, the model has {want:?}",
                            rs.id
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Choices

    /// An application: mostly one that may still select (and whose identity is verified).
    fn some_app(&mut self, selecting: bool) -> Option<u64> {
        let apps = &self.auditor.live.apps;
        let now = self.now;
        let verified = self.rng.random_bool(0.85);
        let pick: Vec<u64> = if selecting && self.rng.random_bool(0.9) {
            let mut v: Vec<u64> = apps
                .iter()
                .filter(|(_, a)| a.state.selecting())
                .filter(|(_, a)| !verified || a.verified_until.is_some_and(|u| u > now))
                .map(|(s, _)| *s)
                .collect();
            if v.is_empty() {
                v = apps
                    .iter()
                    .filter(|(_, a)| a.state.selecting())
                    .map(|(s, _)| *s)
                    .collect();
            }
            v
        } else {
            apps.keys().copied().collect()
        };
        if pick.is_empty() {
            return None;
        }
        Some(pick[self.rng.random_range(0..pick.len())])
    }

    /// A serial of a class: released ones mostly, sometimes one of the class never released.
    fn some_serial(&mut self, class: usize, group: Option<&Pattern>) -> Serial {
        let ids: Vec<u32> = self.auditor.live.releases.keys().copied().collect();
        let key = (class, group.map(|g| g.to_string()));
        let fresh = self
            .serial_cache
            .get(&key)
            .is_some_and(|(built, _)| *built == ids);
        if !fresh {
            let list: Vec<Serial> = self
                .auditor
                .live
                .releases
                .values()
                .filter(|r| r.class == class)
                .flat_map(|r| r.serials.iter().copied())
                .filter(|s| group.is_none_or(|g| g.matches(*s)))
                .collect();
            self.serial_cache.insert(key.clone(), (ids, list));
        }
        let released = self
            .serial_cache
            .get(&key)
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        if !released.is_empty() && self.rng.random_bool(0.9) {
            return released[self.rng.random_range(0..released.len())];
        }
        let space = group
            .cloned()
            .unwrap_or_else(|| self.auditor.catalog[class].shape.clone());
        space
            .nth(self.rng.random_range(0..space.count()))
            .expect("an index below the pattern's count")
    }

    fn held_by(&mut self, seq: u64, cands: bool) -> Option<Serial> {
        let h = self.auditor.holds.get(&seq)?;
        let list = if cands { &h.cands } else { &h.batch };
        if list.is_empty() {
            return None;
        }
        Some(list[self.rng.random_range(0..list.len())])
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    fn op_apply(&mut self) -> Result<(), Failure> {
        if self.auditor.live.apps.len() >= APPS_MAX {
            return self.op_read();
        }
        let (class, energy) = match self.rng.random_range(0..4) {
            0 | 1 => (0usize, Energy::Fuel),
            2 => (1, Energy::Bev),
            _ => (
                1,
                if self.rng.random_bool(0.5) {
                    Energy::Phev
                } else {
                    Energy::Fcev
                },
            ),
        };
        let user = format!("u{}", self.next_user);
        self.next_user += 1;
        let req = NewApplication {
            user: user.clone(),
            phone: format!("1380000{:04}", self.next_user % 10_000),
            vin: format!("VIN{}", self.next_user),
            class: self.auditor.catalog[class].name.clone(),
            energy,
            notice_version: "v1".into(),
        };
        let u = user.clone();
        self.write(
            "apply",
            move |pool, now, _| pool.create_application(req, now),
            move |a, _, got| a.created(got, &u, class, energy),
        )?;
        Ok(())
    }

    fn op_verify(&mut self) -> Result<(), Failure> {
        let now = self.now;
        let unverified: Vec<u64> = self
            .auditor
            .live
            .apps
            .iter()
            .filter(|(_, a)| a.state.selecting() && a.verified_until.is_none_or(|u| u <= now))
            .map(|(s, _)| *s)
            .collect();
        let seq = if !unverified.is_empty() && self.rng.random_bool(0.9) {
            unverified[self.rng.random_range(0..unverified.len())]
        } else {
            match self.some_app(true) {
                Some(s) => s,
                None => return Ok(()),
            }
        };
        self.write(
            "verify identity",
            move |pool, now, _| pool.verify_identity(seq, now),
            move |a, now, got| a.verified(seq, now, got),
        )?;
        Ok(())
    }

    fn op_draw(&mut self) -> Result<(), Failure> {
        let Some(seq) = self.some_app(true) else {
            return Ok(());
        };
        let no4 = self.rng.random_bool(0.3);
        self.write(
            "draw",
            move |pool, now, rng| pool.draw(seq, no4, now, rng),
            move |a, now, got| a.drew(seq, no4, now, got),
        )?;
        Ok(())
    }

    fn op_pick(&mut self) -> Result<(), Failure> {
        let Some(seq) = self.some_app(true) else {
            return Ok(());
        };
        let s = match self.held_by(seq, false) {
            Some(s) if self.rng.random_bool(0.9) => s,
            _ => {
                let class = self.auditor.live.apps[&seq].class;
                self.some_serial(class, None)
            }
        };
        let text = s.to_string();
        self.write(
            "pick candidate",
            move |pool, now, _| pool.pick_candidate(seq, &text, now),
            move |a, now, got| a.picked(seq, s, now, got),
        )?;
        Ok(())
    }

    fn op_claim(&mut self) -> Result<(), Failure> {
        let Some(seq) = self.some_app(true) else {
            return Ok(());
        };
        let s = match self.held_by(seq, true) {
            Some(s) if self.rng.random_bool(0.9) => s,
            _ => match self.held_by(seq, false) {
                Some(s) => s,
                None => {
                    let class = self.auditor.live.apps[&seq].class;
                    self.some_serial(class, None)
                }
            },
        };
        let text = if self.rng.random_bool(0.2) {
            format!("粤K·{}", s.to_string().to_lowercase())
        } else {
            s.to_string()
        };
        self.write(
            "claim candidate",
            move |pool, now, rng| pool.claim_candidate(seq, &text, now, rng),
            move |a, now, got| a.claimed_candidate(seq, s, now, got),
        )?;
        Ok(())
    }

    fn op_custom(&mut self) -> Result<(), Failure> {
        let Some(seq) = self.some_app(true) else {
            return Ok(());
        };
        let app = self.auditor.live.apps[&seq].clone();
        let group = self.auditor.catalog[app.class].groups[app.group]
            .pattern
            .clone();
        let per_check = self.auditor.config.rules.custom_per_check as usize;
        let n = if self.rng.random_bool(0.05) {
            per_check + 1
        } else {
            self.rng.random_range(1..=per_check)
        };
        let mut plates = Vec::new();
        for _ in 0..n {
            let s = match self.rng.random_range(0..10) {
                0 => {
                    let cands = self.rng.random_bool(0.5);
                    self.held_by(seq, cands)
                }
                1 => {
                    let other = if app.class == 0 { 1 } else { 0 };
                    Some(self.some_serial(other, None))
                }
                _ => None,
            };
            let s = s.unwrap_or_else(|| self.some_serial(app.class, Some(&group)));
            // Mostly valid and distinct: an invalid or repeated number is refused and costs nothing.
            if self.rng.random_bool(0.9)
                && (plates.contains(&s) || !self.auditor.valid_custom(&app, s))
            {
                continue;
            }
            plates.push(s);
        }
        let texts: Vec<String> = plates.iter().map(|s| s.to_string()).collect();
        self.write(
            "custom check",
            move |pool, now, rng| pool.custom_check(seq, &texts, now, rng),
            move |a, now, got| a.checked(seq, &plates, now, got),
        )?;
        Ok(())
    }

    fn op_register(&mut self, void: bool) -> Result<(), Failure> {
        let claimed: Vec<Serial> = self
            .auditor
            .live
            .numbers
            .iter()
            .filter(|(_, st)| matches!(st, NState::Claimed(_)) || self.rng.random_bool(0.02))
            .map(|(s, _)| *s)
            .collect();
        let s = if !claimed.is_empty() && self.rng.random_bool(0.9) {
            claimed[self.rng.random_range(0..claimed.len())]
        } else {
            let class = self.rng.random_range(0..2);
            self.some_serial(class, None)
        };
        let text = s.to_string();
        let op = if void { "void" } else { "register" };
        self.write(
            op,
            move |pool, now, _| {
                if void {
                    pool.void(&text, "owner asked", "operator:sim", now)
                } else {
                    pool.register(&text, "operator:sim", now)
                }
            },
            move |a, now, got| a.registered(s, now, got, void),
        )?;
        Ok(())
    }

    fn op_withdraw_number(&mut self) -> Result<(), Failure> {
        let class = self.rng.random_range(0..2);
        let s = self.some_serial(class, None);
        let text = s.to_string();
        self.write(
            "withdraw number",
            move |pool, now, _| pool.withdraw_number(&text, "operator:sim", now),
            move |a, now, got| a.withdrew_number(s, now, got),
        )?;
        Ok(())
    }

    fn op_withdraw_release(&mut self) -> Result<(), Failure> {
        let ids: Vec<u32> = self.auditor.live.releases.keys().copied().collect();
        let id = if ids.is_empty() || self.rng.random_bool(0.1) {
            self.rng.random_range(1..50)
        } else {
            ids[self.rng.random_range(0..ids.len())]
        };
        self.write(
            "withdraw release",
            move |pool, now, _| pool.withdraw_release(id, "operator:sim", now),
            move |a, now, got| a.withdrew_release(id, now, got),
        )?;
        Ok(())
    }

    fn op_add_release(&mut self) -> Result<(), Failure> {
        let class = self.rng.random_range(0..2);
        let menu = self.patterns[class].1.clone();
        let k = self.rng.random_range(1..=2);
        let texts: Vec<&'static str> = (0..k)
            .map(|_| menu[self.rng.random_range(0..menu.len())])
            .collect();
        let opens = self.now
            + if self.rng.random_bool(0.5) {
                0
            } else {
                self.rng.random_range(0..3_600_000)
            };
        let custom_from = self
            .rng
            .random_bool(0.3)
            .then(|| opens + self.rng.random_range(0..DAY_MS));
        self.release(class, &texts, opens, custom_from)
    }

    fn release(
        &mut self,
        class: usize,
        texts: &[&str],
        opens: u64,
        custom_from: Option<u64>,
    ) -> Result<(), Failure> {
        let patterns: Vec<Pattern> = texts.iter().map(|t| pattern(t)).collect();
        let req = NewRelease {
            class: self.auditor.catalog[class].name.clone(),
            label: String::new(),
            opens_at_ms: opens,
            custom_from_ms: custom_from,
            source: ReleaseSource::Patterns(patterns.clone()),
        };
        self.write(
            "add release",
            move |pool, now, _| pool.add_release(req, "operator:sim", now),
            move |a, _, got| a.released(class, &patterns, opens, custom_from, got),
        )?;
        Ok(())
    }

    /// A read: the application as the citizen sees it, compared with the model.
    fn op_read(&mut self) -> Result<(), Failure> {
        self.what = "read";
        self.count("read");
        let Some(seq) = self.some_app(false) else {
            return Ok(());
        };
        let now = self.now;
        if !self.shell.failed {
            let (lapses, exhausted) = self.auditor.tick(now);
            self.tally.lapses += lapses;
            self.tally.exhaustions += exhausted;
            self.shell.tick(now);
            self.shell.queue_background(self.step);
            let facts = self.auditor.take_facts();
            self.attach_background(facts)?;
        }
        let view = self
            .shell
            .pool
            .application(seq, now)
            .expect("application read");
        self.auditor
            .compare_view(seq, view.as_ref(), now)
            .map_err(|m| self.fail(m))
    }

    /// The actor's timer.
    fn op_timer(&mut self) -> Result<(), Failure> {
        self.what = "timer";
        self.count("timer tick");
        let now = self.now;
        if self.shell.failed {
            return Ok(());
        }
        let before = self.shell.queue.len();
        let (lapses, exhausted) = self.auditor.tick(now);
        self.tally.lapses += lapses;
        self.tally.exhaustions += exhausted;
        self.shell.timer(self.step, now);
        let facts = self.auditor.take_facts();
        if self.shell.queue.len() == before && !facts.is_empty() {
            return Err(self.fail(format!(
                "the tick changed durable state without a record: {facts:?}"
            )));
        }
        self.attach_background(facts)?;
        self.shell.pool.check_invariants(now);
        Ok(())
    }

    fn attach_background(&mut self, facts: Vec<Fact>) -> Result<(), Failure> {
        if facts.is_empty() {
            return Ok(());
        }
        match self.shell.queue.back_mut() {
            Some(c) if c.step == self.step && !c.has_reply => {
                c.facts = facts;
                Ok(())
            }
            _ => Err(self.fail(format!(
                "a tick changed durable state without a record: {facts:?}"
            ))),
        }
    }
}
