//! platepool side by side with Redis and PostgreSQL (issue 5): the same operations on the same
//! office, measured interleaved in one run, with the limits of this machine measured alongside.
//!
//! `bench/compare.sh` starts the servers (`bench/services.sh`) and runs
//! `cargo run --release -p platepool-bench --bin compare -- --write`, which writes
//! `BENCHMARKS.md` and `bench/compare-throughput.svg`. Without `--write` it only prints.
//! `--quick` shortens every round (a smoke run, figures not meant to be kept).
//!
//! Reads the servers from `PLATEPOOL_REDIS_ALWAYS`, `PLATEPOOL_REDIS_EVERYSEC` and
//! `PLATEPOOL_POSTGRES` (what `bench/services.sh start` prints).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use platepool_bench::compare::engine::EngineBackend;
use platepool_bench::compare::http::{self, draw_requests, run_wrk, serve_gateway, Served};
use platepool_bench::compare::limits;
use platepool_bench::compare::postgres::{PgBackend, PG_CONNECTIONS};
use platepool_bench::compare::redis::{RedisBackend, REDIS_CONNECTIONS};
use platepool_bench::compare::report::{per_s, ratio, svg, table, us, Panel, Series};
use platepool_bench::compare::{
    check_once, draw_once, keyboard_text, CheckPlates, Measured, PoolBackend,
};
use platepool_bench::fixture::{Office, Plan, Pure, Target};
use platepool_bench::io::RawSled;
use platepool_bench::load::Stop;
use platepool_bench::machine::{load_average, Machine};
use platepool_bench::wrk::{Load, Request, WrkResult};
use platepool_engine::Durability;

const COMMAND: &str = "bench/compare.sh";
const INNER_COMMAND: &str = "cargo run --release -p platepool-bench --bin compare -- --write";
/// Calls in flight of the concurrency sweep.
const INFLIGHT: [usize; 4] = [1, 16, 64, 256];
/// Rounds per (operation, concurrency), every system once per round, in turn.
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_millis(800);
/// Claims per system (one at a time), spread over the rounds.
const CLAIMS: usize = 240;
/// Applications whose batches expire at once, per round.
const EXPIRE_APPS: usize = 1_000;
/// Connections of the HTTP sweep (wrk, one thread).
const HTTP_CONNECTIONS: [usize; 3] = [16, 64, 256];
const HTTP_ROUNDS: usize = 2;
const HTTP_ROUND: Duration = Duration::from_secs(3);
/// actix-web workers of every HTTP server (the machine's two cores).
const HTTP_WORKERS: usize = 2;
/// Applications whose draws wrk sends round robin.
const HTTP_APPS: usize = 2_000;
const DRAW_BAR_REDIS: f64 = 5.0;
const DRAW_BAR_POSTGRES: f64 = 50.0;
const HTTP_BAR: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Draw,
    Check,
    Keyboard,
}

impl Op {
    fn title(self) -> &'static str {
        match self {
            Op::Draw => "Random draw (10 numbers held, previous batch returned, quota debited)",
            Op::Check => "Custom check of 5 numbers, none available (quota debited, audit entry)",
            Op::Keyboard => "Keyboard query (enabled characters per position, 0–4 entered)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Op::Draw => "draw",
            Op::Check => "custom check",
            Op::Keyboard => "keyboard",
        }
    }
}

/// The systems compared, one type each (the trait is static).
#[derive(Debug, Clone)]
enum System {
    Engine(Rc<EngineBackend>),
    Redis(Rc<RedisBackend>, &'static str),
    Postgres(Rc<PgBackend>),
}

impl System {
    fn name(&self) -> String {
        match self {
            System::Engine(b) => b.name(),
            System::Redis(b, _) => b.name(),
            System::Postgres(b) => b.name(),
        }
    }

    fn durability(&self) -> &'static str {
        match self {
            System::Engine(_) => "sled flush + fdatasync before the answer",
            System::Redis(_, d) => d,
            System::Postgres(_) => "WAL fsync at commit (synchronous_commit on)",
        }
    }

    async fn run(&self, op: Op, inflight: usize, w: &Workload) -> Measured {
        match self {
            System::Engine(b) => run(b.clone(), op, inflight, w).await,
            System::Redis(b, _) => run(b.clone(), op, inflight, w).await,
            System::Postgres(b) => run(b.clone(), op, inflight, w).await,
        }
    }

    async fn claim(&self) -> Result<Duration, String> {
        match self {
            System::Engine(b) => b.claim().await,
            System::Redis(b, _) => b.claim().await,
            System::Postgres(b) => b.claim().await,
        }
    }

    async fn expire(&self, apps: usize) -> Result<(u64, Duration), String> {
        match self {
            System::Engine(b) => b.expire(apps).await,
            System::Redis(b, _) => b.expire(apps).await,
            System::Postgres(b) => b.expire(apps).await,
        }
    }

    async fn keyboard(&self, entered: Vec<Option<u8>>) -> Result<Vec<String>, String> {
        let k = match self {
            System::Engine(b) => b.keyboard(0, entered).await,
            System::Redis(b, _) => b.keyboard(0, entered).await,
            System::Postgres(b) => b.keyboard(0, entered).await,
        }?;
        Ok(keyboard_text(&k))
    }
}

/// What the workloads cycle through.
#[derive(Debug, Clone)]
struct Workload {
    plates: CheckPlates,
    queries: Rc<Vec<Vec<Option<u8>>>>,
    round: Duration,
}

async fn run<B: PoolBackend + 'static>(
    b: Rc<B>,
    op: Op,
    inflight: usize,
    w: &Workload,
) -> Measured {
    let stop = Stop::After(w.round);
    match op {
        Op::Draw => {
            measure_with(inflight, stop, move |i| {
                let b = b.clone();
                async move { draw_once(&*b, i).await }
            })
            .await
        }
        Op::Check => {
            let plates = w.plates.clone();
            measure_with(inflight, stop, move |i| {
                let b = b.clone();
                let p = plates.next();
                async move { check_once(&*b, i, p).await }
            })
            .await
        }
        Op::Keyboard => {
            let queries = w.queries.clone();
            measure_with(inflight, stop, move |i| {
                let b = b.clone();
                let q = queries[i % queries.len()].clone();
                async move {
                    let k = b.keyboard(i, q).await?;
                    if k.iter().all(|c| c.is_empty()) {
                        return Err("empty keyboard".into());
                    }
                    Ok(())
                }
            })
            .await
        }
    }
}

use platepool_bench::compare::measure as measure_with;

/// mimalloc, as in the `platepool` binary and `engine-report`: the engine runs in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => {
            eprintln!("{name} is not set: start the servers with `bench/services.sh start` (or run {COMMAND})");
            std::process::exit(2);
        }
    }
}

/// Results of the in-process sweep: `[op][system][inflight]`.
type Sweep = Vec<Vec<Vec<Measured>>>;

/// One HTTP target's figures per connection count.
#[derive(Debug, Clone, Default)]
struct HttpFig {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    rounds: usize,
}

impl HttpFig {
    fn absorb(&mut self, r: &WrkResult) {
        let n = self.rounds as f64;
        let avg = |old: f64, new: f64| (old * n + new) / (n + 1.0);
        self.rate = avg(self.rate, r.good_per_s);
        self.p50_us = avg(self.p50_us, r.latency.p50.as_secs_f64() * 1e6);
        self.p99_us = avg(self.p99_us, r.latency.p99.as_secs_f64() * 1e6);
        self.errors += r.errors.status + r.errors.socket();
        self.rounds += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let write = args.iter().any(|a| a == "--write");
    let quick = args.iter().any(|a| a == "--quick");
    let scale = |d: Duration| if quick { d / 4 } else { d };
    let redis_always = env("PLATEPOOL_REDIS_ALWAYS");
    let redis_everysec = env("PLATEPOOL_REDIS_EVERYSEC");
    let postgres = env("PLATEPOOL_POSTGRES");

    let started = Instant::now();
    let machine = Machine::probe();
    let load_before = load_average();
    let mut notes: Vec<String> = Vec::new();
    let system = actix_rt::System::new();

    eprintln!("compare: building the office (1,000,000 numbers, 10,000 verified applications)...");
    let plan = Plan::standard();
    let office = system.block_on(Office::engine(&plan, Durability::Fsync));
    let pure = Pure::new(&plan);
    let codes = pure.codes.clone();
    let Target::Engine(engine_handle) = office.target.clone() else {
        unreachable!("Office::engine serves through the engine handle")
    };
    let http_apps: Vec<_> = office.select.iter().take(HTTP_APPS).cloned().collect();
    let plates = CheckPlates::new(&office);
    let engine = Rc::new(EngineBackend::new(office, pure));
    let (draw_template, check_template) = engine.record_templates();

    eprintln!("compare: loading Redis (always, everysec) and PostgreSQL...");
    let t = Instant::now();
    let load_redis = |label: &str, url: &str| {
        system
            .block_on(RedisBackend::load(label, url, &engine.office, &codes))
            .unwrap_or_else(|e| panic!("{label} at {url}: {e}"))
    };
    let ra = Rc::new(load_redis("Redis, AOF fsync always", &redis_always));
    let re = Rc::new(load_redis("Redis, AOF fsync everysec", &redis_everysec));
    let pg = Rc::new(
        system
            .block_on(PgBackend::load(&postgres, &engine.office, &codes))
            .unwrap_or_else(|e| panic!("PostgreSQL at {postgres}: {e}")),
    );
    notes.push(format!(
        "Redis and PostgreSQL loaded with the engine's office (same numbers, applications, claimed and held numbers) in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    let systems = vec![
        System::Engine(engine.clone()),
        System::Redis(
            ra.clone(),
            "AOF write + fsync before the answer (appendfsync always)",
        ),
        System::Redis(
            re.clone(),
            "AOF write before the answer, fsync once a second (everysec)",
        ),
        System::Postgres(pg.clone()),
    ];

    // Keyboards agree before any draw (every system has the same numbers available).
    let queries = Rc::new(engine.keyboard_queries(4_096));
    let mut disagree = 0usize;
    for q in queries.iter().take(100) {
        let want = system.block_on(systems[0].keyboard(q.clone()));
        for s in &systems[1..] {
            if system.block_on(s.keyboard(q.clone())) != want {
                disagree += 1;
                if disagree == 1 {
                    notes.push(format!("keyboard of {} differs on {q:?}", s.name()));
                }
            }
        }
    }
    notes.push(format!(
        "keyboards checked before the runs: 100 queries × 3 systems against platepool, {disagree} disagreements"
    ));

    // Over HTTP.
    eprintln!("compare: over HTTP (wrk)...");
    let servers: Vec<(String, Served, Vec<Request>)> = {
        let draws = draw_requests(&http_apps);
        let mut v = Vec::new();
        let gw = system
            .block_on(async { serve_gateway(engine_handle.clone(), HTTP_WORKERS) })
            .unwrap_or_else(|e| panic!("gateway: {e}"));
        v.push(("platepool gateway".to_string(), gw, draws.clone()));
        for (label, url) in [
            ("Redis twin, always", &redis_always),
            ("Redis twin, everysec", &redis_everysec),
        ] {
            let s = system
                .block_on(async { http::serve_redis_twin(url, HTTP_WORKERS) })
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            v.push((label.to_string(), s, draws.clone()));
        }
        let hello = system
            .block_on(async { http::serve_hello(HTTP_WORKERS) })
            .unwrap_or_else(|e| panic!("hello: {e}"));
        v.push((
            "actix-web hello world (limit)".to_string(),
            hello,
            vec![Request::get(&format!("{}/hello", http::MOUNT))],
        ));
        v
    };
    let mut http_figs: Vec<Vec<HttpFig>> = servers
        .iter()
        .map(|_| {
            HTTP_CONNECTIONS
                .iter()
                .map(|_| HttpFig::default())
                .collect()
        })
        .collect();
    let mut wrk_command = String::new();
    for (ci, &conns) in HTTP_CONNECTIONS.iter().enumerate() {
        for _ in 0..HTTP_ROUNDS {
            for (ti, (name, served, requests)) in servers.iter().enumerate() {
                let load = Load::new(&served.base_url, requests.clone())
                    .threads(1)
                    .connections(conns)
                    .duration(scale(HTTP_ROUND).max(Duration::from_secs(1)))
                    .timeout(Duration::from_secs(10));
                if ti == 0 {
                    wrk_command = load.command_line();
                }
                match system.block_on(run_wrk(load)) {
                    Ok(r) => {
                        eprintln!(
                            "  http {conns} connections: {name} {} (p50 {:?}, p99 {:?}, errors {})",
                            per_s(r.good_per_s),
                            r.latency.p50,
                            r.latency.p99,
                            r.errors.status + r.errors.socket()
                        );
                        http_figs[ti][ci].absorb(&r);
                    }
                    Err(e) => notes.push(format!("wrk against {name} at {conns}: {e}")),
                }
            }
        }
    }
    for (_, served, _) in servers {
        system.block_on(served.stop());
    }

    // Limits.
    eprintln!("compare: limits...");
    let fsync = limits::fsync(scale(Duration::from_secs(2)));
    let mut raw = RawSled::open(12_000, &draw_template[0].value);
    let per_draw = draw_template.len();
    let sled_one = limits::sled_group_commits(
        &mut raw,
        &draw_template,
        per_draw,
        scale(Duration::from_secs(2)),
    );
    let sled_group = limits::sled_group_commits(
        &mut raw,
        &draw_template,
        per_draw * 64,
        scale(Duration::from_secs(2)),
    );
    // The storage ceiling: with at most `inflight_max` calls in flight (the sweep's largest), no
    // group commit can hold more than that many calls' records, so raw sled writing exactly those
    // records in groups of that size, with the same flush + fdatasync, bounds every sled-backed
    // design (this one too).
    let inflight_max = INFLIGHT[INFLIGHT.len() - 1];
    let ceiling_draw = limits::sled_group_commits(
        &mut raw,
        &draw_template,
        draw_template.len() * inflight_max,
        scale(Duration::from_secs(2)),
    );
    let ceiling_check = limits::sled_group_commits(
        &mut raw,
        &check_template,
        check_template.len() * inflight_max,
        scale(Duration::from_secs(2)),
    );
    let actix_one = system.block_on(limits::actix_round_trip(1, scale(Duration::from_secs(1))));
    let actix_many = system.block_on(limits::actix_round_trip(256, scale(Duration::from_secs(1))));

    // The in-process sweep.
    let workload = Workload {
        plates,
        queries: queries.clone(),
        round: scale(ROUND),
    };
    let ops = [Op::Draw, Op::Check, Op::Keyboard];
    let mut sweep: Sweep = ops
        .iter()
        .map(|_| {
            systems
                .iter()
                .map(|_| INFLIGHT.iter().map(|_| Measured::new()).collect())
                .collect()
        })
        .collect();
    for (oi, &op) in ops.iter().enumerate() {
        if let Err(e) = system.block_on(ra.reset_stats()) {
            notes.push(format!("Redis statistics: {e}"));
        }
        for (ci, &inflight) in INFLIGHT.iter().enumerate() {
            for round in 0..ROUNDS {
                for (si, s) in systems.iter().enumerate() {
                    let m = system.block_on(s.run(op, inflight, &workload));
                    eprintln!(
                        "  {} {inflight} in flight, round {round}: {} {} (p50 {}, p99 {}, failed {})",
                        op.short(),
                        s.name(),
                        per_s(m.rate()),
                        us(m.p(0.5)),
                        us(m.p(0.99)),
                        m.run.failed
                    );
                    if let Some(e) = &m.run.first_error {
                        notes.push(format!(
                            "{} {} at {inflight}: {} failed, first: {e}",
                            s.name(),
                            op.short(),
                            m.run.failed
                        ));
                    }
                    sweep[oi][si][ci].absorb(m);
                }
            }
        }
        // Where Redis spent its time in this operation's scripts (the commands they called).
        if let Ok(usec) = system.block_on(ra.command_usec()) {
            let script: u64 = usec
                .iter()
                .filter(|(n, _)| n.starts_with("eval"))
                .map(|(_, u)| u)
                .sum();
            let called: Vec<String> = usec
                .iter()
                .filter(|(n, _)| {
                    !n.starts_with("eval")
                        && !matches!(n.as_str(), "info" | "config|resetstat" | "config")
                })
                .take(4)
                .map(|(n, u)| format!("{n} {:.0}%", 100.0 * *u as f64 / script.max(1) as f64))
                .collect();
            notes.push(format!(
                "Redis (always), {}: {:.1} s inside scripts; of that, commands called: {}",
                op.short(),
                script as f64 / 1e6,
                called.join(", ")
            ));
        }
    }

    // Claims, one at a time, interleaved in slices.
    eprintln!("compare: claims...");
    let mut claims: Vec<Measured> = systems.iter().map(|_| Measured::new()).collect();
    for _ in 0..ROUNDS {
        for (si, s) in systems.iter().enumerate() {
            for _ in 0..CLAIMS / ROUNDS {
                match system.block_on(s.claim()) {
                    Ok(d) => {
                        platepool_bench::load::record(&mut claims[si].latency, d);
                        claims[si].run.ok += 1;
                        claims[si].run.elapsed += d;
                    }
                    Err(e) => {
                        claims[si].run.failed += 1;
                        claims[si].run.first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    for (s, m) in systems.iter().zip(&claims) {
        if let Some(e) = &m.run.first_error {
            notes.push(format!(
                "{} claims: {} failed, first: {e}",
                s.name(),
                m.run.failed
            ));
        }
    }

    // Hold expiry.
    eprintln!("compare: hold expiry...");
    let mut expiry: Vec<(u64, Duration)> = systems.iter().map(|_| (0, Duration::ZERO)).collect();
    for _ in 0..ROUNDS {
        for (si, s) in systems.iter().enumerate() {
            match system.block_on(s.expire(EXPIRE_APPS)) {
                Ok((n, d)) => {
                    expiry[si].0 += n;
                    expiry[si].1 += d;
                }
                Err(e) => notes.push(format!("{} expiry: {e}", s.name())),
            }
        }
    }

    let versions = [
        ("redis-server", shell("redis-server --version")),
        (
            "postgres",
            shell("$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/postgres --version"),
        ),
        ("rustc", shell("rustc --version")),
        ("wrk", shell("wrk --version 2>&1 | head -n 1")),
    ];
    let out = render(&Rendered {
        machine: &machine,
        load_before: &load_before,
        load_after: &load_average(),
        versions: &versions,
        commit: &shell("git rev-parse --short HEAD"),
        dirty: !shell("git status --porcelain --untracked-files=no").is_empty(),
        date: &shell("date -u '+%Y-%m-%d %H:%M UTC'"),
        seconds: started.elapsed().as_secs_f64(),
        systems: &systems,
        ops: &ops,
        sweep: &sweep,
        claims: &claims,
        expiry: &expiry,
        http_names: &[
            "platepool gateway",
            "Redis twin, always",
            "Redis twin, everysec",
            "actix-web hello world (limit)",
        ],
        http: &http_figs,
        wrk_command: &wrk_command,
        limits: Limits {
            fsync: &fsync,
            sled_one: &sled_one,
            sled_group: &sled_group,
            ceiling: Ceiling {
                draw: &ceiling_draw,
                per_draw,
                check: &ceiling_check,
                per_check: check_template.len(),
                inflight: inflight_max,
            },
            actix_one: &actix_one,
            actix_many: &actix_many,
        },
        notes: &notes,
        quick,
    });
    println!("{}", out.markdown);
    if write {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let md = root.join("../BENCHMARKS.md");
        let plot = root.join("compare-throughput.svg");
        // Sections added by hand (their heading says they are not part of `compare`) stay.
        let old = std::fs::read_to_string(&md).unwrap_or_default();
        let text = format!("{}{}", out.markdown, hand_sections(&old));
        std::fs::write(&md, text).unwrap_or_else(|e| panic!("write {}: {e}", md.display()));
        std::fs::write(&plot, &out.svg).unwrap_or_else(|e| panic!("write {}: {e}", plot.display()));
        eprintln!("compare: wrote {} and {}", md.display(), plot.display());
    }
}

/// What marks a section of BENCHMARKS.md that `compare` does not write.
const HAND_SECTION_MARK: &str = "not part of `compare`";

/// The sections of `benchmarks` (BENCHMARKS.md as it is) from the first `## ` heading that
/// says it is not part of `compare`, to the end; empty when there is none. A rewrite of the
/// file keeps them after its own.
fn hand_sections(benchmarks: &str) -> String {
    let mut at = 0;
    for line in benchmarks.split_inclusive('\n') {
        if line.starts_with("## ") && line.contains(HAND_SECTION_MARK) {
            return format!("\n{}", &benchmarks[at..]);
        }
        at += line.len();
    }
    String::new()
}

struct Limits<'a> {
    fsync: &'a Measured,
    sled_one: &'a Measured,
    sled_group: &'a Measured,
    ceiling: Ceiling<'a>,
    actix_one: &'a Measured,
    actix_many: &'a Measured,
}

/// Raw sled writing one operation's records in group commits of `inflight` calls, the most a
/// group commit can hold with that many calls in flight: what any sled-backed design of the
/// operation can reach at that concurrency on this machine.
struct Ceiling<'a> {
    draw: &'a Measured,
    per_draw: usize,
    check: &'a Measured,
    per_check: usize,
    inflight: usize,
}

impl Ceiling<'_> {
    /// Calls per second of the ceiling for `op` (None for reads, which write nothing).
    fn rate(&self, op: Op) -> Option<f64> {
        match op {
            Op::Draw => Some(self.draw.rate() / self.per_draw.max(1) as f64),
            Op::Check => Some(self.check.rate() / self.per_check.max(1) as f64),
            Op::Keyboard => None,
        }
    }
}

/// A bar's verdict; a missed bar that asks for more than the storage itself does in the same run
/// says so, since no engine work on top of that storage can meet it.
fn bar_verdict(have: f64, needed: f64, ceiling: Option<f64>) -> String {
    if have >= needed {
        return verdict(true).into();
    }
    match ceiling {
        Some(c) if needed > c => format!(
            "{}: needs {}, above the storage ceiling ({})",
            verdict(false),
            per_s(needed),
            per_s(c)
        ),
        _ => verdict(false).into(),
    }
}

struct Rendered<'a> {
    machine: &'a Machine,
    load_before: &'a str,
    load_after: &'a str,
    versions: &'a [(&'a str, String)],
    commit: &'a str,
    dirty: bool,
    date: &'a str,
    seconds: f64,
    systems: &'a [System],
    ops: &'a [Op],
    sweep: &'a Sweep,
    claims: &'a [Measured],
    expiry: &'a [(u64, Duration)],
    http_names: &'a [&'a str],
    http: &'a [Vec<HttpFig>],
    wrk_command: &'a str,
    limits: Limits<'a>,
    notes: &'a [String],
    quick: bool,
}

struct Output {
    markdown: String,
    svg: String,
}

fn peak(row: &[Measured]) -> f64 {
    row.iter().map(Measured::rate).fold(0.0, f64::max)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "**met**"
    } else {
        "**missed**"
    }
}

fn render(r: &Rendered) -> Output {
    let mut md = String::new();
    let _ = writeln!(md, "# platepool side by side with Redis and PostgreSQL\n");
    let _ = writeln!(
        md,
        "The same operations on the same office (1,000,000 numbers, 10,000 verified applications, 2,000 numbers claimed and 5,000 held beforehand), implemented as an expert in each system would, measured **interleaved in one run** on one machine: each (operation, concurrency) runs {ROUNDS} rounds of {:.1} s in which every system takes its turn, so drift and neighbours hit all of them alike. Generated by `{COMMAND}` (which runs `{INNER_COMMAND}`); do not edit by hand.{}\n",
        r.sweep.first().and_then(|o| o.first()).and_then(|s| s.first()).map_or(0.0, |m| m.run.elapsed.as_secs_f64() / ROUNDS as f64),
        if r.quick { " **Quick run (`--quick`): figures not meant to be kept.**" } else { "" }
    );
    let _ = writeln!(md, "## Run\n");
    let mut rows = vec![
        vec!["command".into(), format!("`{COMMAND}` → `{INNER_COMMAND}`")],
        vec!["date".into(), r.date.to_string()],
        vec![
            "commit".into(),
            format!(
                "{}{}",
                r.commit,
                if r.dirty {
                    " (work tree had uncommitted changes)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "machine".into(),
            format!(
                "{} × {} (nproc {}), kernel {}, {} memory",
                r.machine.nproc,
                r.machine.cpu_model,
                r.machine.nproc,
                r.machine.kernel,
                r.machine.memory_total
            ),
        ],
        vec![
            "load average before / after".into(),
            format!("{} / {}", r.load_before, r.load_after),
        ],
        vec!["run time".into(), format!("{:.0} s", r.seconds)],
    ];
    for (name, v) in r.versions {
        rows.push(vec![format!("`{name}`"), v.clone()]);
    }
    md.push_str(&table(&["", ""], &rows));
    md.push('\n');

    // The bars.
    let engine_ix = 0;
    let (redis_always_ix, pg_ix) = (1, 3);
    let _ = writeln!(md, "## Bars\n");
    let mut bar_rows = Vec::new();
    for (oi, op) in r
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| **o != Op::Keyboard)
    {
        let pp = peak(&r.sweep[oi][engine_ix]);
        let ra = peak(&r.sweep[oi][redis_always_ix]);
        let pg = peak(&r.sweep[oi][pg_ix]);
        let ceiling = r.limits.ceiling.rate(*op);
        let ceiling_cell = ceiling.map_or_else(String::new, per_s);
        bar_rows.push(vec![
            format!(
                "{} in-process vs Redis (always), peak throughput",
                op.short()
            ),
            format!("{} vs {}", per_s(pp), per_s(ra)),
            ratio(pp, ra),
            format!("≥ {DRAW_BAR_REDIS}×"),
            ceiling_cell.clone(),
            bar_verdict(pp, DRAW_BAR_REDIS * ra, ceiling),
        ]);
        bar_rows.push(vec![
            format!("{} in-process vs PostgreSQL, peak throughput", op.short()),
            format!("{} vs {}", per_s(pp), per_s(pg)),
            ratio(pp, pg),
            format!("≥ {DRAW_BAR_POSTGRES}×"),
            ceiling_cell,
            bar_verdict(pp, DRAW_BAR_POSTGRES * pg, ceiling),
        ]);
    }
    let http_peak = |ti: usize| {
        r.http
            .get(ti)
            .map_or(0.0, |f| f.iter().map(|x| x.rate).fold(0.0, f64::max))
    };
    let (gw, twin) = (http_peak(0), http_peak(1));
    bar_rows.push(vec![
        "draw over HTTP: gateway vs Redis-backed twin (always), peak".into(),
        format!("{} vs {}", per_s(gw), per_s(twin)),
        ratio(gw, twin),
        format!("≥ {HTTP_BAR}×"),
        String::new(),
        verdict(gw >= HTTP_BAR * twin).into(),
    ]);
    md.push_str(&table(
        &[
            "bar",
            "figures",
            "ratio",
            "bar",
            "storage ceiling",
            "verdict",
        ],
        &bar_rows,
    ));
    let c = &r.limits.ceiling;
    let _ = writeln!(
        md,
        "\nThe storage ceiling is raw sled writing exactly the operation's records (the engine's own encoding) in group commits of {} calls — the most one group commit can hold with {} calls in flight, the sweep's largest — each with sled's flush and an `fdatasync`, measured in this run (\"Limits\" below). It is what any design that keeps these records durable in sled can reach at that concurrency on this machine, platepool included; a bar that asks for more cannot be met by work on the engine, only by a cheaper durable log.",
        c.inflight, c.inflight
    );
    let _ = writeln!(
        md,
        "\nEqual durability is **Redis with `appendfsync always`** (an answer only after the AOF is fsynced, as platepool answers only after `fdatasync`) and PostgreSQL with `synchronous_commit on`. Redis with `everysec` acknowledges writes that a power loss can take back (up to a second of them); it is shown for scale, not as an equal.\n"
    );

    // Per operation.
    for (oi, op) in r.ops.iter().enumerate() {
        let _ = writeln!(md, "## {}\n", op.title());
        let mut rows = Vec::new();
        for (ci, inflight) in INFLIGHT.iter().enumerate() {
            let pp = r.sweep[oi][engine_ix][ci].rate();
            for (si, s) in r.systems.iter().enumerate() {
                let m = &r.sweep[oi][si][ci];
                rows.push(vec![
                    inflight.to_string(),
                    s.name(),
                    per_s(m.rate()),
                    us(m.p(0.5)),
                    us(m.p(0.99)),
                    if si == engine_ix {
                        "1×".into()
                    } else {
                        ratio(pp, m.rate())
                    },
                ]);
            }
        }
        md.push_str(&table(
            &[
                "in flight",
                "system",
                "throughput",
                "p50",
                "p99",
                "platepool ÷ this",
            ],
            &rows,
        ));
        md.push('\n');
    }

    let _ = writeln!(
        md,
        "## Durable claim (one at a time; the claimer's draw is setup, not timed)\n"
    );
    let pp_claim = r.claims[engine_ix].p(0.5);
    let rows: Vec<Vec<String>> = r
        .systems
        .iter()
        .zip(r.claims)
        .map(|(s, m)| {
            vec![
                s.name(),
                m.run.ok.to_string(),
                us(m.p(0.5)),
                us(m.p(0.99)),
                if m.p(0.5) > 0.0 {
                    format!("{:.2}×", m.p(0.5) / pp_claim.max(1.0))
                } else {
                    "—".into()
                },
                s.durability().into(),
            ]
        })
        .collect();
    md.push_str(&table(
        &[
            "system",
            "claims",
            "p50",
            "p99",
            "p50 ÷ platepool's",
            "acknowledged after",
        ],
        &rows,
    ));
    md.push('\n');

    let _ = writeln!(
        md,
        "## Hold expiry ({EXPIRE_APPS} batches of 10 due at once, {ROUNDS} rounds)\n"
    );
    let pp_exp = rate_of(r.expiry[engine_ix]);
    let rows: Vec<Vec<String>> = r
        .systems
        .iter()
        .zip(r.expiry)
        .enumerate()
        .map(|(si, (s, &(n, d)))| {
            vec![
                s.name(),
                n.to_string(),
                format!("{:.2} ms", d.as_secs_f64() * 1e3),
                format!("{} holds", per_s(rate_of((n, d)))),
                if si == engine_ix {
                    "1×".into()
                } else {
                    ratio(pp_exp, rate_of((n, d)))
                },
            ]
        })
        .collect();
    md.push_str(&table(
        &[
            "system",
            "holds returned",
            "time",
            "rate",
            "platepool ÷ this",
        ],
        &rows,
    ));
    let _ = writeln!(
        md,
        "\nplatepool: one tick of the pool at the deadline (what the office actor's timer runs; holds are never written, so nothing is persisted; the first round also returns the 5,000 holds made while building). Redis: the expiry script over the sorted set of deadlines, {} applications per call until none is due. PostgreSQL: `pp_expire`, {} applications per call (`FOR UPDATE SKIP LOCKED` on the deadline index), each call a durable commit.\n",
        platepool_bench::compare::redis::EXPIRE_SLICE,
        platepool_bench::compare::postgres::EXPIRE_SLICE
    );

    let _ = writeln!(
        md,
        "## Over HTTP: draw through the gateway vs a Redis-backed twin of its handler\n"
    );
    let mut rows = Vec::new();
    for (ci, conns) in HTTP_CONNECTIONS.iter().enumerate() {
        let gw = r.http.first().map_or(0.0, |f| f[ci].rate);
        for (ti, name) in r.http_names.iter().enumerate() {
            let Some(f) = r.http.get(ti).map(|f| &f[ci]) else {
                continue;
            };
            rows.push(vec![
                conns.to_string(),
                name.to_string(),
                per_s(f.rate),
                us(f.p50_us),
                us(f.p99_us),
                f.errors.to_string(),
                if ti == 0 {
                    "1×".into()
                } else {
                    ratio(gw, f.rate)
                },
            ]);
        }
    }
    md.push_str(&table(
        &[
            "connections",
            "server",
            "requests/s (2xx)",
            "p50",
            "p99",
            "errors",
            "gateway ÷ this",
        ],
        &rows,
    ));
    let _ = writeln!(
        md,
        "\nEvery server: actix-web, {HTTP_WORKERS} workers, mounted at `{}`; wrk with 1 thread on the same machine, {HTTP_ROUNDS} rounds of {} s per connection count, servers in turn; requests round robin over {HTTP_APPS} applications, each with its own citizen token (`{}`). The twin does what the gateway's draw handler does (bearer token verified with the gateway's HMAC function, application id parsed, JSON body read, one store call, JSON answer with the plates) but calls the Redis draw script; it has no rate limiter, idempotency check or metrics middleware, which the gateway runs (rate limits set to 0).\n",
        http::MOUNT,
        HTTP_ROUND.as_secs(),
        r.wrk_command
    );

    let l = &r.limits;
    let _ = writeln!(md, "## Limits measured in the same run\n");
    let sled_rate = |m: &Measured| m.rate() / l.ceiling.per_draw.max(1) as f64;
    // One row of the limits table: what was measured, its rate, its latency percentiles.
    let row = |label: String, rate: f64, m: &Measured| {
        vec![label, per_s(rate), us(m.p(0.5)), us(m.p(0.99))]
    };
    let c = &l.ceiling;
    let rows = vec![
        row(
            "bare fdatasync (4 KiB write + fdatasync, one after another)".into(),
            l.fsync.rate(),
            l.fsync,
        ),
        row(
            format!(
                "sled batch + flush + fdatasync, one draw's records ({}) per batch: draws/s",
                l.ceiling.per_draw
            ),
            sled_rate(l.sled_one),
            l.sled_one,
        ),
        row(
            "sled batch + flush + fdatasync, 64 draws' records per batch: draws/s".into(),
            sled_rate(l.sled_group),
            l.sled_group,
        ),
        row(
            format!(
                "sled batch + flush + fdatasync, {} draws' records ({} each) per batch: draws/s (storage ceiling)",
                c.inflight, c.per_draw
            ),
            c.rate(Op::Draw).unwrap_or(0.0),
            c.draw,
        ),
        row(
            format!(
                "sled batch + flush + fdatasync, {} failing checks' records ({} each) per batch: checks/s (storage ceiling)",
                c.inflight, c.per_check
            ),
            c.rate(Op::Check).unwrap_or(0.0),
            c.check,
        ),
        row(
            "actix message round trip to an actor on another thread, 1 in flight".into(),
            l.actix_one.rate(),
            l.actix_one,
        ),
        row(
            "actix message round trip, 256 in flight".into(),
            l.actix_many.rate(),
            l.actix_many,
        ),
    ];
    md.push_str(&table(&["limit", "rate", "p50", "p99"], &rows));
    let _ = writeln!(
        md,
        "\nThe actix-web hello world is in the HTTP table above (same wrk, same connections).\n"
    );

    let _ = writeln!(md, "## Reading the figures\n");
    md.push_str(READING);
    let _ = writeln!(md, "## Throughput against concurrency\n");
    let _ = writeln!(
        md,
        "![throughput against calls in flight](bench/compare-throughput.svg)\n"
    );

    let _ = writeln!(md, "## How each system implements the operations\n");
    md.push_str(DESIGNS);
    let _ = writeln!(
        md,
        "\nClients: Redis through `redis` (async, {REDIS_CONNECTIONS} multiplexed connections, scripts by `EVALSHA`); PostgreSQL through `tokio-postgres` ({PG_CONNECTIONS} connections, calls pipelined on each, prepared statements). All load comes from one thread of this process (an actix system, as a gateway worker would call), with the given number of calls in flight.\n"
    );
    if !r.notes.is_empty() {
        let _ = writeln!(md, "## Notes from the run\n");
        for n in r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }

    let panels: Vec<Panel> = r
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| **o != Op::Keyboard)
        .map(|(oi, op)| Panel {
            title: format!("{} (durable), ops/s", op.short()),
            xs: INFLIGHT.to_vec(),
            series: r
                .systems
                .iter()
                .enumerate()
                .map(|(si, s)| Series {
                    name: s.name(),
                    values: r.sweep[oi][si].iter().map(Measured::rate).collect(),
                })
                .collect(),
        })
        .collect();
    let svg = svg(
        &panels,
        &format!(
            "{} · commit {} · {} · {}",
            COMMAND, r.commit, r.date, r.machine.cpu_model
        ),
    );
    Output { markdown: md, svg }
}

fn rate_of((n, d): (u64, Duration)) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

const READING: &str = "\
- **The Redis draw pays for the keyboard.** The keyboard must not offer held numbers (SPEC I8), so \
every number a draw moves in or out of the pool updates the 31 keyboard counts of its projections: \
a draw (10 held, 10 returned) calls about 650 commands, 620 of them `HINCRBY`. The notes below give \
the share of script time Redis itself counts in those commands; the rest is the Lua loop building \
their field names. A Redis design without a keyboard draws far faster (its check, which moves no \
number, shows the server's pace); platepool keeps the same counts in memory at a few nanoseconds \
each. The draw ratio to Redis is therefore mostly the keyboard's price in Redis, not fsync.
- **Checks show the fsync design.** A failing check moves no number: Redis with `always` then does \
a few hash reads and writes and one AOF fsync per event-loop turn (a group commit, as platepool's \
writer does), so it comes closest to platepool; `everysec` shows what skipping the fsync is worth.
- **PostgreSQL** spends a WAL flush and a backend round trip per call, with row locks and seven \
index updates per number moved (the keyboard's per-position partial indexes among them); its \
keyboard answers from indexes at query time (an `EXISTS` probe per character), hence its rate.
- **The machine was shared** during the run (see the load average above: other builds and tests \
ran on the same two cores), which depresses every absolute figure and the limits alike; the \
interleaving keeps the ratios meaningful, not the absolute rates.

";

const DESIGNS: &str = "\
| operation | platepool | Redis (Lua scripts) | PostgreSQL (PL/pgSQL functions) |
|---|---|---|---|
| draw | office actor: uniform sampler over available numbers, holds in memory; the application record written by the group-commit writer (sled + fdatasync) | `SPOP avail 10`; owner hash; previous batch `SADD`ed back; `ZADD holds deadline app`; 31 keyboard counts per number moved | previous batch released; `SELECT … WHERE status = 0 AND rnd >= random ORDER BY rnd LIMIT 10 FOR UPDATE SKIP LOCKED` (partial index), wrapping around; quota and batch on the application row |
| custom check | index lookup per number; application record + audit entry written | `HGET owner`, `SREM avail` per number; quota `HSET`; `RPUSH audit` | conditional `UPDATE … WHERE serial = $1 AND (status = 0 OR own hold) RETURNING` per number, status read for the reason; quota update; audit row |
| claim | number record, application record, audit entry | owner hash, batch released, `RPUSH audit` | conditional update, batch released, audit row |
| hold expiry | ordered set of deadlines, one timer; holds are not persisted | sorted set of deadlines, script pops due ones in slices | partial index on the deadline, `FOR UPDATE SKIP LOCKED` slices |
| keyboard | `KeyboardIndex`: counts per subset of positions, ≤ 5 × 34 reads | hash of counts per subset projection (`A?3??`), kept by every script; `HMGET` of 34 fields per position | per position, `EXISTS` probe per character on partial per-position indexes of available numbers; a prepared statement per shape |
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_written_by_hand_are_kept() {
        let old = "# title\n\n## Bars\n\nmeasured\n\n## Province node (not part of `compare`; by hand)\n\nrows\n\n## Later\n\nmore\n";
        assert_eq!(
            hand_sections(old),
            "\n## Province node (not part of `compare`; by hand)\n\nrows\n\n## Later\n\nmore\n"
        );
        assert_eq!(hand_sections("# title\n\n## Bars\n"), "");
        assert_eq!(hand_sections(""), "");
    }
}
