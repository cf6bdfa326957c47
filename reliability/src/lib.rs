//! platepool's reliability and security campaigns (issue 6).
//!
//! Each campaign tries something that could break a promise of SPEC §6–§7 and reports what it
//! tried, what held, and every violation it saw. The `reliability` binary runs them in a short
//! mode (CI, about two minutes on two cores) or a long mode (operators, hours) and can regenerate
//! `RELIABILITY.md` from the figures of the run.
//!
//! | campaign | module | what it does |
//! |---|---|---|
//! | 1 deterministic simulation | [`sim`] | the pure pool behind a simulated shell and disk, faults, crashes, an auditor |
//! | 2 kill -9 under a loadtest opening | [`kill9`] | SIGKILL the binary during loadtest openings, restart, check every acknowledged write |
//! | 3 storage faults | [`storage`] | the real binary on a read-only, full or corrupted data folder |
//! | 4 overload | [`overload`] | 3× the measured maximum through the binary: refusals, latency, memory, recovery |
//! | 5 fuzzing | [`fuzz`] | seeded structure-aware fuzzing of parsers, the keyboard, releases, JSON bodies |
//! | 6 attacks | [`attacks`] | tokens, IDOR, SMS brute force, operator routes, bots, path and header tricks |
//! | 8 power loss | [`power_loss`] | the binary under strace: every answer after its bytes are synced; folders cut at random instants keep every acknowledged change |
//! | backup | [`backup`] | `platepool backup` through the serving node during an opening; `verify` the copy, serve it, every claim acknowledged before the backup there |
//! | memory | [`memory`] | ever new clients (keys, phones, addresses) against the binary; RSS sampled, its growth must level off |
//! | opening window | [`fairness`] | bots at +50 ms against people at +800 ms, with and without the window |

pub mod attacks;
pub mod backup;
pub mod clock_steps;
pub mod fairness;
pub mod fuzz;
pub mod http;
pub mod kill9;
pub mod memory;
pub mod overload;
pub mod power_loss;
pub mod report;
pub mod returning;
pub mod server;
pub mod settled_memory;
pub mod sim;
pub mod storage;
pub mod supervision;

use std::time::Duration;

/// How hard a run tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// CI: every campaign in about two minutes on a 2-core machine.
    Short,
    /// Operators: hours; the volumes the issue asks for.
    Long,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Short => "short",
            Mode::Long => "long",
        }
    }
}

/// One line of a campaign's figures: what was counted, and how much.
#[derive(Debug, Clone)]
pub struct Figure {
    pub what: String,
    pub value: String,
}

/// What one campaign tried, what held, and what did not.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stable id (`sim`, `storage`, …) used by `--only` and the report.
    pub id: &'static str,
    pub title: &'static str,
    /// What was tried, one line each.
    pub tried: Vec<String>,
    /// Promises that held, one line each.
    pub held: Vec<String>,
    /// Promises that did not hold: each is a failure of the run.
    pub violations: Vec<String>,
    /// Counted figures for the report.
    pub figures: Vec<Figure>,
    /// Defects found that are open (in code this campaign does not own): reported with their
    /// evidence, not counted as violations of the run.
    pub findings: Vec<String>,
    /// Set when the campaign could not run here (and why); not a failure.
    pub skipped: Option<String>,
    /// Set when the campaign is a placeholder for work still to do.
    pub not_yet_run: Option<String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn new(id: &'static str, title: &'static str) -> Outcome {
        Outcome {
            id,
            title,
            ..Outcome::default()
        }
    }

    pub fn tried(&mut self, line: impl Into<String>) {
        self.tried.push(line.into());
    }

    pub fn held(&mut self, line: impl Into<String>) {
        self.held.push(line.into());
    }

    pub fn violation(&mut self, line: impl Into<String>) {
        self.violations.push(line.into());
    }

    pub fn figure(&mut self, what: impl Into<String>, value: impl ToString) {
        self.figures.push(Figure {
            what: what.into(),
            value: value.to_string(),
        });
    }

    /// Either a held line or a violation, by a check's result.
    pub fn check(&mut self, ok: bool, held: impl Into<String>, violated: impl Into<String>) {
        if ok {
            self.held(held);
        } else {
            self.violation(violated);
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The campaign's block of the console output.
    pub fn print(&self) {
        println!(
            "== campaign {}: {} ({:.1} s)",
            self.id,
            self.title,
            self.elapsed.as_secs_f64()
        );
        if let Some(why) = &self.not_yet_run {
            println!("   not yet run: {why}");
            return;
        }
        if let Some(why) = &self.skipped {
            println!("   skipped: {why}");
        }
        for t in &self.tried {
            println!("   tried: {t}");
        }
        for f in &self.figures {
            println!("   figure: {} = {}", f.what, f.value);
        }
        for h in &self.held {
            println!("   held:  {h}");
        }
        for f in &self.findings {
            println!("   FINDING (open defect): {f}");
        }
        for v in &self.violations {
            println!("   VIOLATION: {v}");
        }
    }
}

/// Thousands separators, for figures people read.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
