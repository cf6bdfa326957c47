//! `reliability`: platepool's reliability and security campaigns (issue 6).
//!
//! ```text
//! reliability --short                 every campaign, CI-sized (about two minutes on two cores)
//! reliability --long                  every campaign, operator-sized (hours; build with --release)
//! reliability --short --write-report  … and regenerate RELIABILITY.md from this run's figures
//! reliability --short --only sim,fuzz only the named campaigns
//! reliability sim --seed N            replay one simulation seed exactly (--trace prints each step)
//! reliability fuzz --target T         one fuzz target (--execs, --seed)
//! ```
//! Exit status 0 when every campaign held, 1 when any violation was seen, 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use platepool_reliability::sim::shell::WriterMode;
use platepool_reliability::{
    attacks, backup, clock_steps, fairness, fuzz, kill9, memory, overload, power_loss, report, sim,
    storage, supervision, Mode, Outcome,
};

#[derive(Debug, Parser)]
#[command(
    name = "reliability",
    about = "platepool reliability and security campaigns"
)]
struct Cli {
    /// CI-sized campaigns (the default).
    #[arg(long, conflicts_with = "long")]
    short: bool,
    /// Operator-sized campaigns: hours.
    #[arg(long)]
    long: bool,
    /// Regenerate RELIABILITY.md at the repository root from this run.
    #[arg(long)]
    write_report: bool,
    /// Only these campaigns (comma-separated): sim, kill9, storage, overload, fuzz, attacks, fairness,
    /// clock, supervision, power_loss, backup, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where RELIABILITY.md goes [default: the workspace root].
    #[arg(long)]
    report_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replays one seed of the deterministic simulation.
    Sim {
        #[arg(long)]
        seed: u64,
        /// Operations of the seed [default: the short plan's].
        #[arg(long)]
        ops: Option<u64>,
        /// Print every step and compare everything after each.
        #[arg(long)]
        trace: bool,
        /// The writer before the fix: goes on writing after a failed flush.
        #[arg(long)]
        lenient_writer: bool,
    },
    /// Runs one fuzz target.
    Fuzz {
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 10_000)]
        execs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

const ALL: [&str; 12] = [
    "sim",
    "kill9",
    "storage",
    "overload",
    "fuzz",
    "attacks",
    "fairness",
    "clock",
    "supervision",
    "power_loss",
    "backup",
    "memory",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Sim {
            seed,
            ops,
            trace,
            lenient_writer,
        }) => {
            let mode = if lenient_writer {
                WriterMode::Lenient
            } else {
                WriterMode::FailStop
            };
            let ops = ops.unwrap_or(sim::Plan::for_mode(Mode::Short).ops_per_seed);
            let started = Instant::now();
            let (tally, failure) = sim::run_seed_with(seed, ops, mode, trace);
            println!(
                "seed {seed}: {} operations, {} crashes, {} restarts, {} failed flushes in {:.2} s",
                tally.ops,
                tally.crashes,
                tally.restarts,
                tally.flush_failures,
                started.elapsed().as_secs_f64()
            );
            match failure {
                None => {
                    println!("held: every reply, every invariant, every recovery");
                    ExitCode::SUCCESS
                }
                Some(f) => {
                    println!("VIOLATION: {f}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Fuzz {
            target,
            execs,
            seed,
        }) => match fuzz::run_one(&target, execs, seed) {
            Ok(o) => {
                o.print();
                if o.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("reliability: {e}");
                ExitCode::from(2)
            }
        },
        None => {
            let mode = if cli.long { Mode::Long } else { Mode::Short };
            let only: Vec<String> = if cli.only.is_empty() {
                ALL.iter().map(|s| s.to_string()).collect()
            } else {
                cli.only.clone()
            };
            if let Some(bad) = only.iter().find(|o| !ALL.contains(&o.as_str())) {
                eprintln!(
                    "reliability: no campaign {bad:?}; campaigns: {}",
                    ALL.join(", ")
                );
                return ExitCode::from(2);
            }
            let started = Instant::now();
            println!("platepool reliability campaigns, {} mode", mode.name());
            let mut outcomes: Vec<Outcome> = Vec::new();
            for id in ALL {
                if !only.iter().any(|o| o == id) {
                    continue;
                }
                let o = match id {
                    "sim" => sim::campaign(mode),
                    "kill9" => kill9::campaign(mode),
                    "storage" => storage::campaign(mode),
                    "overload" => overload::campaign(mode),
                    "fuzz" => fuzz::campaign(mode),
                    "fairness" => fairness::campaign(mode),
                    "clock" => clock_steps::campaign(mode),
                    "supervision" => supervision::campaign(mode),
                    "power_loss" => power_loss::campaign(mode),
                    "backup" => backup::campaign(mode),
                    "memory" => memory::campaign(mode),
                    _ => attacks::campaign(mode),
                };
                o.print();
                outcomes.push(o);
            }
            let elapsed = started.elapsed();
            let violations: usize = outcomes.iter().map(|o| o.violations.len()).sum();
            println!(
                "== {} campaigns in {:.1} s: {}",
                outcomes.len(),
                elapsed.as_secs_f64(),
                if violations == 0 {
                    "every promise held".to_string()
                } else {
                    format!("{violations} VIOLATIONS")
                }
            );
            if cli.write_report {
                let path = cli.report_path.clone().unwrap_or_else(report::default_path);
                let args: Vec<String> = std::env::args().skip(1).collect();
                let profile = if cfg!(debug_assertions) {
                    ""
                } else {
                    "--release "
                };
                let command = format!(
                    "cargo run {profile}-p platepool-reliability -- {}",
                    args.join(" ")
                );
                match report::write(&path, mode, &outcomes, elapsed, &command) {
                    Ok(()) => println!("wrote {}", path.display()),
                    Err(e) => {
                        eprintln!("reliability: cannot write {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            if violations == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
