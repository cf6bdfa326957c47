//! Campaign 8's plan and checks: the run through the whole flow and the opening, each traced
//! ([`super::record`], [`super::record_opening`]) and cut by power losses at chosen instants.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::flow::{self, Burst, Opening, Request};
use super::{record, record_opening, Recording};
use crate::{thousands, Mode, Outcome};

/// How hard the campaign tries.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Citizens through the flow and the draws they send at once.
    pub burst: Burst,
    /// The opening run: draws held by an opening window, on a slow disk.
    pub opening: Opening,
    /// How much longer each sync takes in the opening run.
    pub slow_sync: Duration,
    /// Where the power losses of the run through the whole flow fall, and of the opening.
    pub cuts: Cuts,
    pub opening_cuts: Cuts,
    pub seed: u64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                burst: Burst {
                    citizens: 24,
                    draws: 240,
                    clients: 24,
                },
                opening: Opening {
                    citizens: 3,
                    draws: 2_400,
                    window_ms: 30_000,
                },
                slow_sync: Duration::from_millis(500),
                cuts: Cuts {
                    random: 1,
                    releases: true,
                    every_burst_point: false,
                },
                opening_cuts: Cuts {
                    random: 0,
                    releases: false,
                    every_burst_point: true,
                },
                seed: 8,
            },
            Mode::Long => Plan {
                burst: Burst {
                    citizens: 400,
                    draws: 10_000,
                    clients: 48,
                },
                opening: Opening {
                    citizens: 5,
                    draws: 4_000,
                    window_ms: 50_000,
                },
                slow_sync: Duration::from_millis(500),
                cuts: Cuts {
                    random: 40,
                    releases: true,
                    every_burst_point: true,
                },
                opening_cuts: Cuts {
                    random: 10,
                    releases: true,
                    every_burst_point: true,
                },
                seed: 8,
            },
        }
    }
}

/// Where a run's power losses fall.
#[derive(Debug, Clone, Copy)]
pub struct Cuts {
    /// Random lines of the trace.
    pub random: u32,
    /// Just after each release's answer (the listed one is a blob, the large one the largest
    /// release).
    pub releases: bool,
    /// Just after the first, middle and last answers of the draws sent at once (or only the
    /// middle one), while other draws' groups may still be in flight.
    pub every_burst_point: bool,
}

/// The instants to replay: random lines of the trace, plus the lines just after the answers
/// carrying the largest values, and the end.
fn instants(rec: &Recording, cuts: &Cuts, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let last = rec.model.last_line.max(1);
    let mut out: Vec<usize> = (0..cuts.random)
        .map(|_| rng.random_range(0..=last))
        .collect();
    let answered = |keep: &dyn Fn(&Request) -> bool| -> Vec<usize> {
        let lines: std::collections::BTreeSet<usize> = rec
            .flow
            .requests
            .iter()
            .zip(&rec.answered_at)
            .filter(|(r, _)| keep(r))
            .filter_map(|(_, at)| *at)
            .collect();
        lines.into_iter().collect()
    };
    if cuts.releases {
        out.extend(
            answered(&|r| r.what.contains("/releases"))
                .iter()
                .map(|l| l + 1),
        );
    }
    let draws = answered(&|r| r.concurrent);
    let points = if cuts.every_burst_point {
        vec![0, draws.len() / 2, draws.len().saturating_sub(1)]
    } else {
        vec![draws.len() / 2]
    };
    for at in points {
        out.extend(draws.get(at).map(|l| l + 1));
    }
    out.push(last + 1);
    out.sort();
    out.dedup();
    out
}

pub fn campaign(mode: Mode) -> Outcome {
    campaign_with(mode, true)
}

pub fn campaign_with(mode: Mode, build: bool) -> Outcome {
    let mut out = Outcome::new(
        "power_loss",
        "power loss: every answer finds its bytes synced; a folder cut at random instants keeps every acknowledged change (campaign 8)",
    );
    let started = Instant::now();
    let plan = Plan::for_mode(mode);
    let bin = match crate::storage::binary(build) {
        Ok(b) => b,
        Err(e) => {
            out.violation(format!("no binary: {e}"));
            return out;
        }
    };
    match record(&bin, &plan.burst) {
        Ok(rec) => whole_flow(&mut out, &bin, &rec, &plan),
        Err(e) => out.violation(format!("the traced run failed: {e}")),
    }
    match record_opening(&bin, &plan.opening, plan.slow_sync) {
        Ok(rec) => opening(&mut out, &bin, &rec, &plan),
        Err(e) => out.violation(format!("the traced opening failed: {e}")),
    }
    out.elapsed = started.elapsed();
    out
}

/// The checks of the run through the whole flow.
fn whole_flow(out: &mut Outcome, bin: &Path, rec: &Recording, plan: &Plan) {
    out.tried(format!(
        "the binary under strace from an empty folder: an office, a release of patterns and one of {} listed serials, {} citizens from SMS to identity, a release of {} numbers by patterns, {} draws from {} connections at once, claims, a registration, a void, a withdrawal; {} requests, {} answers in the trace",
        thousands(flow::LISTED_SERIALS as u64),
        plan.burst.citizens,
        thousands(flow::LARGE_RELEASE_NUMBERS),
        thousands(u64::from(plan.burst.draws)),
        plan.burst.clients,
        rec.flow.requests.len(),
        rec.model.acks.len()
    ));
    let (bytes, syncs) = rec.model.totals();
    let (largest, largest_file) = rec.model.largest_write();
    out.figure(
        "trace: bytes written to the folder / syncs / largest write",
        format!(
            "{} / {} / {} bytes ({})",
            thousands(bytes),
            thousands(syncs as u64),
            thousands(largest as u64),
            largest_file.rsplit('/').next().unwrap_or("")
        ),
    );
    let (blobs, blobs_synced) = rec.model.blobs();
    out.figure(
        "sled blob files written (values over ~128 KiB) / fsynced with their folder",
        format!("{blobs} / {blobs_synced}"),
    );
    let (drawn, groups) = rec.burst_groups();
    out.figure(
        "burst: draws answered 201 / group commits meanwhile / draws per group",
        format!(
            "{} / {groups} / {:.0}",
            thousands(drawn as u64),
            drawn as f64 / groups.max(1) as f64
        ),
    );
    out.check(
        drawn >= plan.burst.draws as usize && groups > 0 && drawn >= groups * 2,
        format!(
            "all {} draws of the burst answered 201, landing as group commits of several calls on average",
            thousands(u64::from(plan.burst.draws))
        ),
        format!(
            "{drawn} of {} draws answered 201 in {groups} group commits; {} failures, e.g. {:?}",
            plan.burst.draws,
            rec.flow.failures.len(),
            rec.flow.failures.iter().take(3).collect::<Vec<_>>()
        ),
    );
    trace_checks(out, bin, rec, (&plan.cuts, plan.seed), "whole flow");
}

/// The checks of the opening run: thousands of draws held by the opening window, landing as a
/// group commit of thousands on a slow disk.
fn opening(out: &mut Outcome, bin: &Path, rec: &Recording, plan: &Plan) {
    let o = &plan.opening;
    out.tried(format!(
        "the binary under strace from an empty folder on a disk whose syncs take {} ms longer: an office with an opening window of {} s, {} citizens, a release of {} numbers opening 1.5 s later, and at its opening {} draws, each on its own connection, all held by the window and served when it ends; {} requests, {} answers in the trace",
        plan.slow_sync.as_millis(),
        o.window_ms / 1_000,
        o.citizens,
        thousands(flow::LARGE_RELEASE_NUMBERS),
        thousands(u64::from(o.draws)),
        rec.flow.requests.len(),
        rec.model.acks.len()
    ));
    let held = rec.held_burst();
    out.figure(
        "opening: draws answered 201 / syncs from the last arrival to the last answer / largest group commit at least",
        format!(
            "{} / {} / {}",
            thousands(held.drawn as u64),
            held.syncs,
            thousands(held.largest_group_at_least() as u64)
        ),
    );
    out.check(
        held.drawn == o.draws as usize && held.all_held(),
        format!(
            "all {} draws at the opening answered 201, every one of them arrived before the first answer (the window held them all)",
            thousands(u64::from(o.draws))
        ),
        format!(
            "{} of {} draws answered 201, all held: {} (last arrival at line {:?}, first answer at {:?}); {} failures, e.g. {:?}",
            held.drawn,
            o.draws,
            held.all_held(),
            held.last_arrival,
            held.first_answer,
            rec.flow.failures.len(),
            rec.flow.failures.iter().take(3).collect::<Vec<_>>()
        ),
    );
    out.check(
        held.largest_group_at_least() >= GROUP_OF_THOUSANDS,
        format!(
            "the draws at the opening landed in a group commit of at least {} calls",
            thousands(GROUP_OF_THOUSANDS as u64)
        ),
        format!(
            "{} draws over {} syncs: the largest group had at least {} calls only",
            held.drawn,
            held.syncs,
            held.largest_group_at_least()
        ),
    );
    trace_checks(out, bin, rec, (&plan.opening_cuts, plan.seed), "opening");
}

/// The size a group commit of the opening must reach.
pub const GROUP_OF_THOUSANDS: usize = 1_000;

/// What every traced run must show: calls the model replays, answers found, every answer
/// after its syncs, and every acknowledged change kept by power losses at random instants.
fn trace_checks(
    out: &mut Outcome,
    bin: &Path,
    rec: &Recording,
    (cuts, seed): (&Cuts, u64),
    run: &str,
) {
    out.figure(
        format!("{run}: traced run (strace size, time)"),
        format!(
            "{} MB, {:.1} s",
            rec.trace_bytes / 1_000_000,
            rec.took.as_secs_f64()
        ),
    );
    out.check(
        rec.model.unmodelled.is_empty(),
        format!("{run}: every call on the folder is one the model replays"),
        format!("calls the model cannot replay: {:?}", rec.model.unmodelled),
    );
    out.check(
        rec.unmatched() == 0,
        format!("{run}: every request's answer found in the trace"),
        format!(
            "{} requests without an answer in the trace",
            rec.unmatched()
        ),
    );
    let unsynced = rec.unsynced_answers();
    let concurrent = rec.flow.requests.iter().filter(|r| r.concurrent).count();
    out.check(
        unsynced.is_empty(),
        format!(
            "{run}: every one of {} answers to requests sent one at a time was written after everything written to the folder before it was fsynced (files and folder entries), and each of the {concurrent} concurrent draws after everything written before its request arrived",
            rec.model.acks.len() - concurrent
        ),
        format!(
            "{} answer(s) before a sync, e.g. {}",
            unsynced.len(),
            unsynced.first().cloned().unwrap_or_default()
        ),
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    let points = instants(rec, cuts, seed);
    for &line in &points {
        match rec.power_loss_at(bin, line) {
            Ok((n, problems)) => {
                checked += n;
                failures.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("cut at line {line}: {p}")),
                );
            }
            Err(e) => failures.push(format!("cut at line {line}: {e}")),
        }
    }
    out.figure(
        format!("{run}: power losses replayed / acknowledged changes checked after them"),
        format!("{} / {}", points.len(), thousands(checked as u64)),
    );
    out.check(
        failures.is_empty(),
        format!("{run}: after every power loss the folder opened with every change acknowledged before it"),
        format!(
            "{} problem(s) after power losses, e.g. {}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ),
    );
}
