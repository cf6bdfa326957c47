//! Command line: where to aim, the scenario (preset, TOML file, flags — flags win), outputs and
//! thresholds.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use platepool_engine::Durability;

use crate::distributed::coordinator::CoordinatorOptions;
use crate::distributed::worker::WorkerOptions;
use crate::embedded::{Embedded, EmbeddedOptions};
use crate::report::{EXIT_FAILED, EXIT_OK};
use crate::run::{run, Progress, RunOptions, Target};
use crate::scenario::{Model, Scenario, PRESETS};

const ABOUT: &str =
    "Rehearse a plate-pool opening against a platepool gateway, then audit the office.

Virtual buyers walk the real citizen flow (SPEC §4): apply with an SMS code read from the outbox,
verify identity, wait for the release's opening instant, then select — people type custom numbers
guided by the keyboard or draw random batches, pick candidates and claim, with think times; bots
skip think times and hammer at the limits. The tool prepares the office itself through the
operator API (rules, certificate records, tokens, a release opening a few seconds ahead), measures
latency from each request's intended send time (no coordinated omission), and after every hold's
lifetime reads the office back to check I1–I4, conservation and fairness.";

const AFTER: &str = "SCENARIOS
  A scenario is: the buyers (count, share of bots, custom vs random), the load model (open:
  arrivals per second with a ramp; closed: N buyers in flight), timing (opening instant, think
  times), the office rules and the release. Start from a preset, a TOML file, or the defaults;
  flags override single fields. `--print-scenario` shows the result as TOML.

  Presets:
    smoke    300 buyers over 2 s against 200 numbers, short rules: a rehearsal in ~20 s
    opening  20,000 buyers over 10 s against a 50,000-number release (an opening day)
    bots     2,000 buyers, half of them bots, racing for 1,000 numbers
    closed   closed model: 500 buyers in flight until 5,000 have finished

  A TOML scenario names only what it changes:
    name = \"saturday-opening\"
    buyers = 20000
    bots = 0.05
    arrival_secs = 10
    ramp_secs = 2
    opens_in_secs = 16
    patterns = [\"[ABCDE]####\"]
    [rules]
    random_ttl_ms = 5000        # short holds: the audit waits for the longest one
    candidate_ttl_ms = 8000
    sms_confirm_delay_ms = 5000

MEASUREMENT
  Latency counts from each request's intended send time (arrival, opening instant, end of a
  think time or interval), so a slow server or client shows as latency, not as fewer requests.
  Draws and custom checks sent in the release's opening window (rules.opening_window_ms) are
  reported apart as draw@opening and custom@opening: the office holds them until the window
  ends, then serves them in random order, so their latency includes that wait by design;
  --max-p99-ms leaves them out. Errors are answers outside the flow's business outcomes
  (not_available, too_soon, too_many_requests, quota_spent, exhausted, hold_expired, not_held,
  sms_too_soon) and requests that got no answer.

EXAMPLES
  One command on a fresh machine (gateway in-process, temporary data):
    platepool-loadtest --embedded --preset smoke --html report.html

  The issue's opening-day figure:
    platepool-loadtest --embedded --preset opening --json opening.json --html opening.html

  Against a running gateway (its operator token; trust 127.0.0.1 as a proxy, or raise the per-IP
  limit, or every virtual buyer shares one address):
    PLATEPOOL_OPERATOR_TOKEN=op-… platepool-loadtest --target http://127.0.0.1:8080 \\
        --scenario saturday.toml --max-p99-ms 250 --max-error-rate 0.001

  The maximum sustainable arrival rate (rehearsals at growing rates, then bisection; each step
  10 s of arrivals and its audit; criteria every step's p99 ≤ 1000 ms and errors ≤ 0.1 % unless
  --max-p99-ms / --max-error-rate say otherwise):
    platepool-loadtest --embedded --preset opening --find-max --sweep-start 100 --html max.html
  or the closed model, to see the throughput N buyers in flight reach:
    platepool-loadtest --embedded --model closed --concurrency 1000 --buyers 10000

  Bots against the limits:
    platepool-loadtest --embedded --preset bots --bots 0.5 --bot-retry-ms 20

  One opening from several machines: a coordinator that prepares the office, waits for 3 workers,
  merges their parts into one report and audits once; a worker on each load machine (each needs
  the operator token, which the coordinator never sends):
    platepool-loadtest --target http://gw:8080 --preset opening --listen 0.0.0.0:7700 \\
        --worker-processes 3 --html opening.html
    platepool-loadtest --coordinator loadgen-1:7700

EXIT CODES
  0 success · 1 the run could not be done (setup, gateway unreachable) · 2 a threshold was breached
  · 3 the audit found a violation";

#[derive(Debug, Parser)]
#[command(name = "platepool-loadtest", version, about = "Rehearse a plate-pool opening against a platepool gateway, then audit the office", long_about = ABOUT, after_long_help = AFTER)]
pub struct Args {
    /// Start the engine and gateway in this process on a loopback port over a temporary folder.
    #[arg(long, conflicts_with = "target")]
    pub embedded: bool,
    /// The gateway's base URL.
    #[arg(long, value_name = "URL", required_unless_present_any = ["embedded", "print_scenario", "coordinator"])]
    pub target: Option<String>,
    /// The gateway's operator token (with --target).
    #[arg(
        long,
        env = "PLATEPOOL_OPERATOR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub operator_token: Option<String>,
    /// The citizen-token secret (with --target), to sign buyers' tokens locally instead of
    /// asking POST /v1/admin/tokens for each.
    #[arg(
        long,
        env = "PLATEPOOL_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub token_secret: Option<String>,

    /// A built-in scenario: smoke, opening, bots, closed.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// A TOML scenario file (applied over the preset, if any).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Print the resolved scenario as TOML and exit.
    #[arg(long)]
    pub print_scenario: bool,

    /// Virtual buyers in all.
    #[arg(long)]
    pub buyers: Option<u32>,
    /// Share of bots, 0..1.
    #[arg(long)]
    pub bots: Option<f64>,
    /// Share of people starting with custom selection, 0..1.
    #[arg(long)]
    pub custom_share: Option<f64>,
    /// Load model.
    #[arg(long, value_enum)]
    pub model: Option<Model>,
    /// Open model: arrivals per second at full rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open model: spread the arrivals over this many seconds (when --rate is not given).
    #[arg(long)]
    pub arrival_secs: Option<f64>,
    /// Open model: seconds for the rate to climb from 0 to full.
    #[arg(long)]
    pub ramp_secs: Option<f64>,
    /// Open model: Poisson arrivals instead of even spacing.
    #[arg(long)]
    pub poisson: bool,
    /// Closed model: buyers in flight.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// The release opens this many seconds after the first arrival.
    #[arg(long, value_name = "SECS")]
    pub opens_in: Option<f64>,
    #[arg(long)]
    pub think_min_ms: Option<u64>,
    #[arg(long)]
    pub think_max_ms: Option<u64>,
    /// Bots resend refused requests after this many ms.
    #[arg(long)]
    pub bot_retry_ms: Option<u64>,
    /// Office id (default: a fresh `lt_<tag>` office per run; the audit assumes the office is
    /// the run's alone).
    #[arg(long)]
    pub office: Option<String>,
    /// Plate class: small or small_new_energy.
    #[arg(long)]
    pub class: Option<String>,
    /// A release pattern (repeatable), e.g. '[ABCDE]####'.
    #[arg(long = "pattern", value_name = "PATTERN")]
    pub patterns: Vec<String>,
    #[arg(long)]
    pub custom_min_interval_ms: Option<u64>,
    #[arg(long)]
    pub random_ttl_ms: Option<u64>,
    #[arg(long)]
    pub candidate_ttl_ms: Option<u64>,
    #[arg(long)]
    pub sms_confirm_delay_ms: Option<u64>,
    /// Load-generating threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Keep-alive connections in the pool (all workers together).
    #[arg(long)]
    pub connections: Option<usize>,
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not send Idempotency-Key (transport failures are then not retried).
    #[arg(long)]
    pub no_idempotency_keys: bool,
    /// Do not send X-Forwarded-For per virtual buyer.
    #[arg(long)]
    pub no_spoof_ips: bool,

    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write every buyer's record (what the audit checks) as JSON.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Fail (exit 2) when any step's p99 latency exceeds this (draws and custom checks sent in
    /// the opening window are reported apart and left out: the office holds them on purpose).
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Fail (exit 2) when errors / requests exceeds this (e.g. 0.001).
    #[arg(long, value_name = "RATE")]
    pub max_error_rate: Option<f64>,
    /// Skip the audit.
    #[arg(long)]
    pub no_audit: bool,

    /// Find the maximum sustainable arrival rate: open-model rehearsals at growing rates until
    /// one breaks --max-p99-ms (default 1000), --max-error-rate (default 0.001), the audit, or
    /// leaves buyers unfinished; then bisect. With --embedded each step gets a fresh gateway.
    #[arg(long)]
    pub find_max: bool,
    /// --find-max: first rate, buyers per second.
    #[arg(long, default_value_t = 50.0, value_name = "RATE")]
    pub sweep_start: f64,
    /// --find-max: multiply a rate that holds by this.
    #[arg(long, default_value_t = 1.5)]
    pub sweep_factor: f64,
    /// --find-max: seconds of arrivals per step (buyers = rate × this).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub sweep_secs: f64,
    /// --find-max: most rehearsals.
    #[arg(long, default_value_t = 10)]
    pub sweep_steps: u32,
    /// --find-max: bisections after the first rate that breaks.
    #[arg(long, default_value_t = 2)]
    pub sweep_refine: u32,
    /// No progress on stderr (the report still goes to stdout).
    #[arg(long)]
    pub quiet: bool,

    /// Fairness of the opening window: run the opening rush (half bots drawing 50 ms after the
    /// opening, half people drawing at 800 ms, a release the first round empties) with the
    /// window and without it, --repeats times each, and compare the bots' share of the lucky
    /// numbers with their share of the buyers (margin: three binomial standard errors). Exit 0
    /// when the window levels the field and its absence does not, else 2. Ignores the scenario
    /// flags but --seed.
    #[arg(long)]
    pub compare_window: bool,
    /// --compare-window: the window's length.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub window_ms: u64,
    /// --compare-window: rehearsals per configuration.
    #[arg(long, default_value_t = 3)]
    pub repeats: u32,

    /// Coordinate a rehearsal run by --worker-processes worker processes (on this machine or
    /// others that reach the target): listen for them on ADDR (e.g. 0.0.0.0:7700), prepare the
    /// office, give each worker its share of the buyers and the opening instant, merge their
    /// parts into one report and audit the office once over every buyer.
    #[arg(long, value_name = "ADDR", requires = "worker_processes",
          conflicts_with_all = ["embedded", "find_max", "compare_window", "coordinator"])]
    pub listen: Option<String>,
    /// --listen: how many worker processes take part.
    #[arg(long, value_name = "N", requires = "listen")]
    pub worker_processes: Option<u32>,
    /// Run as a worker of the coordinator at HOST:PORT: the scenario, the office and the
    /// opening come from it (give scenario flags to the coordinator); this process runs its
    /// share of the buyers and prints and writes (--json, --html, --history) its own part.
    /// Needs the operator token (PLATEPOOL_OPERATOR_TOKEN), which the coordinator never sends;
    /// --target only when this machine reaches the gateway by another URL.
    #[arg(long, value_name = "HOST:PORT",
          conflicts_with_all = ["embedded", "find_max", "compare_window", "print_scenario"])]
    pub coordinator: Option<String>,
    /// --listen: seconds to wait for every worker to connect; --coordinator: seconds to keep
    /// trying to reach the coordinator.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub connect_wait_secs: u64,
    /// --listen / --coordinator: the other end silent this long (heartbeats go every second)
    /// is gone, and the run fails.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub peer_timeout_secs: u64,

    /// --embedded: HTTP worker threads of the gateway.
    #[arg(long, default_value_t = 2)]
    pub gateway_workers: usize,
    /// --embedded: storage durability (fsync, flush, none).
    #[arg(long, default_value = "fsync")]
    pub durability: String,
    /// --embedded: requests per second per user (0: off; default the gateway's).
    #[arg(long)]
    pub user_limit: Option<u32>,
    /// --embedded: requests per second per client IP (0: off; default the gateway's).
    #[arg(long)]
    pub ip_limit: Option<u32>,
    /// --embedded: keep the data in this folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Args {
    /// Preset, then file, then flags.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let mut s = match &self.preset {
            Some(p) => Scenario::preset(p).ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                format!("no preset {p}; presets: {}", names.join(", "))
            })?,
            None => Scenario::default(),
        };
        if let Some(path) = &self.scenario {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = toml::Value::try_from(&s).map_err(|e| e.to_string())?;
            let over: toml::Value =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let merged = merge(base, over);
            s = merged
                .try_into()
                .map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { s.$field = v; } )* };
        }
        set!(
            buyers,
            bots,
            custom_share,
            model,
            ramp_secs,
            concurrency,
            think_min_ms,
            think_max_ms,
            bot_retry_ms,
            office,
            class,
            workers,
            connections,
            timeout_ms,
            seed
        );
        if let Some(r) = self.rate {
            s.rate = Some(r);
        }
        if let Some(a) = self.arrival_secs {
            s.arrival_secs = a;
            if self.rate.is_none() {
                s.rate = None;
            }
        }
        if let Some(o) = self.opens_in {
            s.opens_in_secs = o;
        }
        if self.poisson {
            s.poisson = true;
        }
        if !self.patterns.is_empty() {
            s.patterns = self.patterns.clone();
        }
        if let Some(v) = self.custom_min_interval_ms {
            s.rules.custom_min_interval_ms = v;
        }
        if let Some(v) = self.random_ttl_ms {
            s.rules.random_ttl_ms = v;
        }
        if let Some(v) = self.candidate_ttl_ms {
            s.rules.candidate_ttl_ms = v;
        }
        if let Some(v) = self.sms_confirm_delay_ms {
            s.rules.sms_confirm_delay_ms = v;
        }
        if self.no_idempotency_keys {
            s.idempotency_keys = false;
        }
        if self.no_spoof_ips {
            s.spoof_ips = false;
        }
        s.validate()?;
        Ok(s)
    }

    pub fn durability(&self) -> Result<Durability, String> {
        match self.durability.as_str() {
            "fsync" => Ok(Durability::Fsync),
            "flush" => Ok(Durability::Flush),
            "none" => Ok(Durability::None),
            other => Err(format!(
                "durability must be fsync, flush or none, not {other}"
            )),
        }
    }
}

/// Tables merge key by key; anything else is replaced.
fn merge(base: toml::Value, over: toml::Value) -> toml::Value {
    match (base, over) {
        (toml::Value::Table(mut b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            toml::Value::Table(b)
        }
        (_, o) => o,
    }
}

fn write_file(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the arguments, runs, writes the outputs; returns the exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    match main_with(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("platepool-loadtest: {e}");
            EXIT_FAILED
        }
    }
}

pub fn main_with(args: &Args) -> Result<i32, String> {
    let scenario = args.scenario()?;
    if args.print_scenario {
        print!(
            "{}",
            toml::to_string_pretty(&scenario).map_err(|e| e.to_string())?
        );
        return Ok(EXIT_OK);
    }
    let progress = if args.quiet {
        Progress::Off
    } else {
        Progress::auto()
    };
    if let Some(addr) = &args.coordinator {
        if scenario != Scenario::default() {
            return Err(
                "a worker takes its scenario from the coordinator: give --preset, \
                        --scenario and scenario flags to the coordinator"
                    .into(),
            );
        }
        return work(args, addr, progress);
    }
    if let Some(listen) = &args.listen {
        return coordinate(args, &scenario, listen, progress);
    }
    if args.find_max {
        return find_max(args, &scenario, progress);
    }
    if args.compare_window {
        let opts = RunOptions {
            progress: Progress::Off,
            audit: true,
            max_p99_ms: None,
            max_error_rate: None,
        };
        let c = crate::fairness::compare(args.window_ms, args.repeats, scenario.seed, |s| {
            if progress != Progress::Off {
                eprintln!("compare-window: {} (seed {})", s.name, s.seed);
            }
            run_once(args, s, &opts).map(|r| r.report)
        })?;
        print!("{}", c.text());
        if let Some(p) = &args.json {
            let text = serde_json::to_string_pretty(&c).map_err(|e| e.to_string())?;
            write_file(p, &text)?;
        }
        return Ok(if c.window_levels() {
            EXIT_OK
        } else {
            crate::report::EXIT_THRESHOLD
        });
    }
    let opts = RunOptions {
        progress,
        audit: !args.no_audit,
        max_p99_ms: args.max_p99_ms,
        max_error_rate: args.max_error_rate,
    };
    let result = run_once(args, &scenario, &opts)?;
    print!("{}", result.report.text());
    write_outputs(args, &result.report, Some(&result.history))?;
    Ok(result.report.exit_code)
}

/// `--coordinator`: this process runs one share of a multi-process rehearsal.
fn work(args: &Args, addr: &str, progress: Progress) -> Result<i32, String> {
    let opts = WorkerOptions {
        coordinator: addr.to_string(),
        target: args.target.clone(),
        operator_token: args
            .operator_token
            .clone()
            .ok_or("--operator-token (or PLATEPOOL_OPERATOR_TOKEN) is needed with --coordinator")?,
        wait: Duration::from_secs(args.connect_wait_secs),
        peer_timeout: Duration::from_secs(args.peer_timeout_secs.max(1)),
        progress,
    };
    let result = crate::distributed::worker::work(&opts)?;
    print!("{}", result.report.text());
    write_outputs(args, &result.report, Some(&result.history))?;
    Ok(result.report.exit_code)
}

/// `--listen`: this process coordinates a multi-process rehearsal.
fn coordinate(
    args: &Args,
    scenario: &Scenario,
    listen: &str,
    progress: Progress,
) -> Result<i32, String> {
    let target = Target {
        base: args
            .target
            .clone()
            .ok_or("--target URL is needed with --listen")?,
        operator_token: args
            .operator_token
            .clone()
            .ok_or("--operator-token (or PLATEPOOL_OPERATOR_TOKEN) is needed with --target")?,
        token_secret: args.token_secret.clone(),
        embedded: false,
    };
    let opts = CoordinatorOptions {
        listen: listen.to_string(),
        workers: args.worker_processes.unwrap_or(1),
        wait: Duration::from_secs(args.connect_wait_secs),
        peer_timeout: Duration::from_secs(args.peer_timeout_secs.max(1)),
        run: RunOptions {
            progress,
            audit: !args.no_audit,
            max_p99_ms: args.max_p99_ms,
            max_error_rate: args.max_error_rate,
        },
    };
    let result = crate::distributed::coordinator::coordinate(scenario, &target, &opts)?;
    print!("{}", result.report.text());
    write_outputs(args, &result.report, Some(&result.history))?;
    Ok(result.report.exit_code)
}

/// One rehearsal: starts the embedded gateway if asked (and stops it after).
fn run_once(
    args: &Args,
    scenario: &Scenario,
    opts: &RunOptions,
) -> Result<crate::run::RunResult, String> {
    let embedded = if args.embedded {
        let e = Embedded::start(&EmbeddedOptions {
            workers: args.gateway_workers,
            durability: args.durability()?,
            user_limit: args.user_limit,
            ip_limit: args.ip_limit,
            trust_loopback: scenario.spoof_ips,
            data_dir: args.data_dir.clone(),
        })?;
        if opts.progress != Progress::Off {
            eprintln!(
                "embedded gateway at {} (data in {})",
                e.base,
                e.data_dir.display()
            );
        }
        Some(e)
    } else {
        None
    };
    let target = match &embedded {
        Some(e) => Target {
            base: e.base.clone(),
            operator_token: e.operator_token.clone(),
            // Tokens through POST /v1/admin/tokens, as against any gateway (a secret in the
            // environment belongs to another gateway).
            token_secret: None,
            embedded: true,
        },
        None => Target {
            base: args
                .target
                .clone()
                .ok_or("--target URL or --embedded is needed")?,
            operator_token: args
                .operator_token
                .clone()
                .ok_or("--operator-token (or PLATEPOOL_OPERATOR_TOKEN) is needed with --target")?,
            token_secret: args.token_secret.clone(),
            embedded: false,
        },
    };
    let result = run(scenario, &target, opts);
    if let Some(e) = embedded {
        e.stop();
    }
    result
}

fn write_outputs(
    args: &Args,
    report: &crate::report::Report,
    history: Option<&Vec<crate::buyer::BuyerRecord>>,
) -> Result<(), String> {
    if let Some(p) = &args.json {
        write_file(p, &report.to_json())?;
    }
    if let Some(p) = &args.html {
        let html = crate::html::render(report);
        crate::html::check_well_formed(&html).map_err(|e| format!("HTML report: {e}"))?;
        write_file(p, &html)?;
    }
    if let (Some(p), Some(h)) = (&args.history, history) {
        let text = serde_json::to_string_pretty(h).map_err(|e| e.to_string())?;
        write_file(p, &text)?;
    }
    Ok(())
}

/// `--find-max`.
fn find_max(args: &Args, scenario: &Scenario, progress: Progress) -> Result<i32, String> {
    let plan = crate::sweep::SweepPlan {
        start: args.sweep_start,
        factor: args.sweep_factor,
        secs: args.sweep_secs,
        max_steps: args.sweep_steps,
        refine: args.sweep_refine,
    };
    if !(plan.start > 0.0 && plan.factor > 1.0 && plan.secs > 0.0) {
        return Err(
            "--sweep-start and --sweep-secs must be positive, --sweep-factor above 1".into(),
        );
    }
    let max_p99_ms = Some(args.max_p99_ms.unwrap_or(1_000.0));
    let max_error_rate = Some(args.max_error_rate.unwrap_or(0.001));
    let opts = RunOptions {
        progress: if progress == Progress::Off {
            Progress::Off
        } else {
            Progress::Lines
        },
        audit: !args.no_audit,
        max_p99_ms,
        max_error_rate,
    };
    let say = |m: &str| {
        if progress != Progress::Off {
            eprintln!("{m}");
        }
    };
    let run_at = |rate: f64| {
        let mut s = scenario.clone();
        s.model = Model::Open;
        s.rate = Some(rate);
        s.buyers = ((rate * plan.secs).ceil() as u32).max(10);
        s.name = format!("{} @ {rate:.1} buyers/s", scenario.name);
        run_once(args, &s, &opts).map(|r| r.report)
    };
    let (sweep, best) = crate::sweep::sweep(&plan, max_p99_ms, max_error_rate, run_at, &say)?;
    match best {
        Some(mut report) => {
            report.sweep = Some(sweep);
            print!("{}", report.text());
            write_outputs(args, &report, None)?;
            Ok(EXIT_OK)
        }
        None => {
            print!("{}", sweep.text());
            if let Some(p) = &args.json {
                let text = serde_json::to_string_pretty(&serde_json::json!({ "sweep": sweep }))
                    .map_err(|e| e.to_string())?;
                write_file(p, &text)?;
            }
            Ok(crate::report::EXIT_THRESHOLD)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("platepool-loadtest").chain(list.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_preset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "buyers = 77\nbots = 0.3\n[rules]\nrandom_ttl_ms = 4000\n",
        )
        .expect("write");
        let a = args(&[
            "--embedded",
            "--preset",
            "bots",
            "--scenario",
            file.to_str().expect("utf-8"),
            "--bots",
            "0.2",
            "--pattern",
            "B0###",
        ]);
        let s = a.scenario().expect("scenario");
        assert_eq!(s.name, "bots", "from the preset");
        assert_eq!(s.buyers, 77, "from the file");
        assert!((s.bots - 0.2).abs() < 1e-9, "from the flag");
        assert_eq!(s.rules.random_ttl_ms, 4_000, "file, inside [rules]");
        assert_eq!(
            s.rules.sms_confirm_delay_ms, 500,
            "the preset's, kept beside the file's rule"
        );
        assert_eq!(s.patterns, vec!["B0###".to_string()]);
        let bad = args(&["--embedded", "--bots", "2"]);
        assert!(bad.scenario().is_err());
        assert!(args(&["--embedded", "--preset", "nope"])
            .scenario()
            .expect_err("no preset")
            .contains("smoke"));
    }

    #[test]
    fn a_worker_takes_its_scenario_from_the_coordinator() {
        let worker = args(&["--coordinator", "127.0.0.1:7700"]);
        assert_eq!(worker.target, None, "a worker needs no --target");
        let e = main_with(&args(&["--coordinator", "127.0.0.1:7700", "--buyers", "5"]))
            .expect_err("scenario flags belong to the coordinator");
        assert!(e.contains("from the coordinator"), "{e}");
        assert!(Args::try_parse_from([
            "platepool-loadtest",
            "--target",
            "http://x",
            "--listen",
            "0.0.0.0:7700"
        ])
        .is_err());
        assert!(Args::try_parse_from([
            "platepool-loadtest",
            "--embedded",
            "--listen",
            "0.0.0.0:7700",
            "--worker-processes",
            "2"
        ])
        .is_err());
        let c = args(&[
            "--target",
            "http://x",
            "--listen",
            "0.0.0.0:7700",
            "--worker-processes",
            "2",
        ]);
        assert_eq!(c.worker_processes, Some(2));
    }

    #[test]
    fn a_target_needs_a_url_and_help_shows_examples() {
        assert!(Args::try_parse_from(["platepool-loadtest"]).is_err());
        assert!(
            Args::try_parse_from(["platepool-loadtest", "--embedded", "--target", "http://x"])
                .is_err()
        );
        let help = Args::command().render_long_help().to_string();
        for needle in [
            "SCENARIOS",
            "EXAMPLES",
            "--embedded",
            "--preset opening",
            "--find-max",
            "EXIT CODES",
            "[rules]",
            "--worker-processes 3",
            "--coordinator loadgen-1:7700",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
