//! One rehearsal from start to end: prepare the office, run the buyers on the worker threads with
//! live progress, read the office back for the audit, build the report.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::audit::{audit, fetch, AuditReport, Expectations};
use crate::buyer::{self, lock, BuyerRecord, Ctx, Shared};
use crate::identity::run_tag;
use crate::prepare::{now_ms, prepare, Prepared};
use crate::recorder::{Live, Recorder};
use crate::report::{ClientPool, Cpu, Report, RunFacts};
use crate::scenario::{plans, BuyerPlan, Model, Scenario};

/// The gateway to rehearse against.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: String,
    pub operator_token: String,
    /// Signs citizen tokens locally when known; otherwise `POST /v1/admin/tokens`.
    pub token_secret: Option<String>,
    pub embedded: bool,
}

/// How the live progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// One line every few seconds (logs, CI).
    Lines,
    /// One line rewritten every second (a terminal).
    Terminal,
}

impl Progress {
    /// `Terminal` when stderr is one, else `Lines`.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Terminal
        } else {
            Progress::Lines
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub progress: Progress,
    pub audit: bool,
    pub max_p99_ms: Option<f64>,
    pub max_error_rate: Option<f64>,
}

#[derive(Debug)]
pub struct RunResult {
    pub report: Report,
    pub history: Vec<BuyerRecord>,
}

/// CPU seconds (user + system) from a `/proc/…/stat` text.
fn stat_cpu_secs(text: &str) -> Option<f64> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
    Some((utime + stime) / 100.0)
}

pub fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|t| stat_cpu_secs(&t))
        .unwrap_or(0.0)
}

pub fn process_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| stat_cpu_secs(&t))
        .unwrap_or(0.0)
}

/// How long before the opening the connection pool is warmed up.
const WARM_UP_LEAD: Duration = Duration::from_millis(1_500);

enum Job {
    Open(Vec<BuyerPlan>),
    Closed {
        queue: Arc<Mutex<VecDeque<BuyerPlan>>>,
        slots: usize,
    },
}

async fn worker(
    shared: Arc<Shared>,
    target: Target,
    connections: usize,
    job: Job,
    load_start: Instant,
) -> (Vec<BuyerRecord>, usize, u64) {
    let timeout = Duration::from_millis(shared.scenario.timeout_ms);
    let api = Api::new(&target.base, &target.operator_token, connections, timeout);
    let buyers = match &job {
        Job::Open(plans) => plans.len(),
        Job::Closed { slots, .. } => *slots,
    };
    // Open the connections the opening will need shortly before it (real buyers' browsers are
    // connected already); a burst of new connections at the instant would overflow the
    // server's accept queue and measure SYN retries instead of the gateway.
    let warm_at = shared.opening.checked_sub(WARM_UP_LEAD);
    if let Some(at) = warm_at.filter(|at| *at > Instant::now()) {
        let api = api.clone();
        let n = connections.min(buyers);
        actix_rt::spawn(async move {
            actix_rt::time::sleep_until(at.into()).await;
            let token = api.operator_token().to_string();
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                let api = api.clone();
                let token = token.clone();
                handles.push(actix_rt::spawn(async move {
                    let call = crate::api::Call {
                        method: awc::http::Method::GET,
                        path: "/healthz",
                        token: &token,
                        body: None,
                        ip: None,
                        key: None,
                    };
                    let _ = api.send(&call).await;
                }));
            }
            for h in handles {
                let _ = h.await;
            }
        });
    }
    let ctx = Rc::new(Ctx {
        api: api.clone(),
        shared,
    });
    let mut out = Vec::new();
    match job {
        Job::Open(plans) => {
            let handles: Vec<_> = plans
                .into_iter()
                .map(|p| {
                    let arrival = load_start + p.arrival;
                    actix_rt::spawn(buyer::run(ctx.clone(), p, arrival))
                })
                .collect();
            for h in handles {
                if let Ok(r) = h.await {
                    out.push(r);
                }
            }
        }
        Job::Closed { queue, slots } => {
            let handles: Vec<_> = (0..slots)
                .map(|_| {
                    let ctx = ctx.clone();
                    let queue = queue.clone();
                    actix_rt::spawn(async move {
                        let mut done = Vec::new();
                        loop {
                            let next = queue
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .pop_front();
                            let Some(p) = next else { break };
                            done.push(
                                buyer::run(ctx.clone(), p, Instant::now().max(load_start)).await,
                            );
                        }
                        done
                    })
                })
                .collect();
            for h in handles {
                if let Ok(mut r) = h.await {
                    out.append(&mut r);
                }
            }
        }
    }
    (out, api.pool().max_in_flight(), api.pool().waits())
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1_000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The buyers one process runs, and its share of the client's resources.
#[derive(Debug, Clone)]
pub struct Share {
    pub plans: Vec<BuyerPlan>,
    /// Closed model: buyers in flight in this process.
    pub concurrency: usize,
    /// Keep-alive connections in this process (all its load threads together).
    pub connections: usize,
}

/// What one process's load phase produced (its recorder stays in [`Shared`]).
#[derive(Debug)]
pub struct Loaded {
    /// Every buyer's record, by index.
    pub history: Vec<BuyerRecord>,
    pub arrived: u64,
    pub client: ClientPool,
    /// CPU seconds of the load threads and the thread that waited for them.
    pub loadtest_cpu: f64,
    /// CPU seconds of the whole process over the load.
    pub process_cpu: f64,
    /// Seconds from the start of the load to the last buyer's end.
    pub load_secs: f64,
    pub load_end: Instant,
}

impl Loaded {
    /// The loadtest's CPU share on this machine; `embedded`: the rest of the process is the
    /// gateway.
    pub fn cpu(&self, embedded: bool) -> Cpu {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let capacity = self.load_secs.max(0.001) * cores as f64;
        Cpu {
            cores,
            wall_secs: self.load_secs,
            loadtest_secs: self.loadtest_cpu,
            process_secs: self.process_cpu,
            loadtest_share: self.loadtest_cpu / capacity,
            gateway_share: embedded
                .then(|| ((self.process_cpu - self.loadtest_cpu).max(0.0)) / capacity),
        }
    }
}

/// Runs `share`'s buyers on `s.workers` threads from `load_start` until every one has finished.
/// `tick` is called every 100 ms meanwhile; an `Err` from it abandons the load (its threads are
/// left to the process's exit) and is returned.
pub fn load(
    shared: Arc<Shared>,
    target: &Target,
    load_start: Instant,
    share: Share,
    tick: &mut dyn FnMut(&Shared) -> Result<(), String>,
) -> Result<Loaded, String> {
    let process0 = process_cpu_secs();
    let main0 = thread_cpu_secs();
    let workers = shared.scenario.workers.max(1);
    let per_worker_connections = (share.connections / workers).max(1);
    let queue = Arc::new(Mutex::new(
        share.plans.iter().cloned().collect::<VecDeque<_>>(),
    ));
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let job = match shared.scenario.model {
            // By position: the plans may be one process's share of the indices.
            Model::Open => Job::Open(
                share
                    .plans
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % workers == w)
                    .map(|(_, p)| p.clone())
                    .collect(),
            ),
            Model::Closed => {
                let c = share.concurrency;
                Job::Closed {
                    queue: queue.clone(),
                    slots: c / workers + usize::from(w < c % workers),
                }
            }
        };
        let shared = shared.clone();
        let target = target.clone();
        let h = std::thread::Builder::new()
            .name(format!("load-{w}"))
            .spawn(move || {
                let c0 = thread_cpu_secs();
                let records = actix_rt::System::new().block_on(worker(
                    shared,
                    target,
                    per_worker_connections,
                    job,
                    load_start,
                ));
                (records, thread_cpu_secs() - c0)
            })
            .map_err(|e| format!("worker thread: {e}"))?;
        handles.push(h);
    }
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        tick(&shared)?;
    }
    let mut history = Vec::with_capacity(share.plans.len());
    let mut client = ClientPool {
        connections: (per_worker_connections * workers) as u64,
        ..ClientPool::default()
    };
    let mut loadtest_cpu = thread_cpu_secs() - main0;
    for h in handles {
        let ((mut records, max_in_flight, waits), cpu) =
            h.join().map_err(|_| "a load worker panicked".to_string())?;
        history.append(&mut records);
        loadtest_cpu += cpu;
        client.max_in_flight += max_in_flight as u64;
        client.waits += waits;
    }
    history.sort_by_key(|b| b.index);
    let load_end = Instant::now();
    Ok(Loaded {
        history,
        arrived: Live::get(&shared.live.arrived),
        client,
        loadtest_cpu,
        process_cpu: process_cpu_secs() - process0,
        load_secs: load_end.duration_since(load_start).as_secs_f64(),
        load_end,
    })
}

/// The live progress line on stderr: buyers, requests/s, errors, latency so far, the opening.
#[derive(Debug)]
pub struct ProgressPrinter {
    progress: Progress,
    total: u64,
    last: (Instant, u64),
    printed: Instant,
}

impl ProgressPrinter {
    pub fn new(progress: Progress, total: u64) -> ProgressPrinter {
        ProgressPrinter {
            progress,
            total,
            last: (Instant::now(), 0),
            printed: Instant::now(),
        }
    }

    fn every(&self) -> Duration {
        match self.progress {
            Progress::Terminal => Duration::from_secs(1),
            _ => Duration::from_secs(5),
        }
    }

    /// Prints a line when one is due.
    pub fn tick(&mut self, shared: &Shared, load_start: Instant) {
        if self.progress == Progress::Off || self.printed.elapsed() < self.every() {
            return;
        }
        self.printed = Instant::now();
        let now = Instant::now();
        let live = &shared.live;
        let requests = Live::get(&live.requests);
        let rate = (requests - self.last.1) as f64
            / now.duration_since(self.last.0).as_secs_f64().max(0.001);
        self.last = (now, requests);
        let (p50, p99) = {
            let r = lock(&shared.recorder);
            (r.overall(0.5), r.overall(0.99))
        };
        let line = format!(
            "[{:>6.1} s] buyers {}/{} arrived, {} done | {:>6.0} req/s | errors {} | p50 {} p99 {} | claims {} | {}",
            now.saturating_duration_since(load_start).as_secs_f64(),
            Live::get(&live.arrived),
            self.total,
            Live::get(&live.finished),
            rate,
            Live::get(&live.errors),
            fmt_ms(p50),
            fmt_ms(p99),
            Live::get(&live.claims),
            opening_countdown(now, shared.opening)
        );
        self.print(&line);
    }

    /// Prints `line` as the progress line (rewritten in place on a terminal).
    pub fn print(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.progress == Progress::Terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Prints `line` to stay, above the next progress line.
    pub fn note(&self, line: &str) {
        if self.progress == Progress::Terminal {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{line}");
    }

    /// Ends the rewritten line on a terminal.
    pub fn finish(&self) {
        if self.progress == Progress::Terminal {
            eprintln!();
        }
    }
}

/// "opens in 3.2 s" or "open +1.5 s".
pub fn opening_countdown(now: Instant, opening: Instant) -> String {
    if now < opening {
        format!("opens in {:.1} s", (opening - now).as_secs_f64())
    } else {
        format!("open +{:.1} s", (now - opening).as_secs_f64())
    }
}

/// After the longest hold's lifetime from `load_end`, reads the office back and audits it
/// against every buyer's record.
pub fn audit_office(
    s: &Scenario,
    target: &Target,
    prepared: &Prepared,
    history: &[BuyerRecord],
    load_end: Instant,
    say: &dyn Fn(&str),
) -> AuditReport {
    let exp = Expectations {
        custom_quota: s.rules.custom_quota,
        random_quota: s.rules.random_quota,
        release_id: prepared.release_id.clone(),
        release_total: prepared.release_total,
        exclusive: s.office.is_empty(),
    };
    let hold_wait =
        Duration::from_millis(s.rules.longest_hold_ms() + 1_200).saturating_sub(load_end.elapsed());
    let timeout = Duration::from_millis(s.timeout_ms);
    let view = actix_rt::System::new().block_on(async {
        let api = Api::new(&target.base, &target.operator_token, 64, timeout);
        fetch(
            &api,
            &prepared.office,
            &prepared.release_id,
            history,
            hold_wait,
            say,
        )
        .await
    });
    audit(history, &exp, &view)
}

/// Runs a rehearsal. Everything happens on threads of its own; the caller's thread only waits.
pub fn run(s: &Scenario, target: &Target, opts: &RunOptions) -> Result<RunResult, String> {
    s.validate()?;
    let say = |m: &str| {
        if opts.progress != Progress::Off {
            eprintln!("{m}");
        }
    };
    let tag = run_tag(s.seed, now_ms());
    let plans = plans(s);
    let started_at = platepool_engine::calendar::rfc3339(now_ms());
    say(&format!(
        "platepool-loadtest: scenario {}, {} buyers against {} (run tag {tag:05})",
        s.name, s.buyers, target.base
    ));
    let timeout = Duration::from_millis(s.timeout_ms);
    let prepared = actix_rt::System::new().block_on(async {
        let api = Api::new(&target.base, &target.operator_token, 64, timeout);
        prepare(&api, s, tag, &plans, target.token_secret.as_deref(), &say).await
    })?;
    let live = Arc::new(Live::default());
    let recorder = Arc::new(Mutex::new(Recorder::new(prepared.load_start)));
    let shared = Arc::new(Shared {
        scenario: s.clone(),
        recorder: recorder.clone(),
        live: live.clone(),
        office: prepared.office.clone(),
        notice_version: prepared.notice_version.clone(),
        opening: prepared.opening,
        composition: s.composition()?,
        tag,
        tokens: prepared.tokens.clone(),
    });
    let share = Share {
        plans: plans.clone(),
        concurrency: s.concurrency as usize,
        connections: s.connections,
    };
    let mut printer = ProgressPrinter::new(opts.progress, s.buyers as u64);
    let loaded = load(shared, target, prepared.load_start, share, &mut |sh| {
        printer.tick(sh, prepared.load_start);
        Ok(())
    })?;
    printer.finish();
    let cpu = loaded.cpu(target.embedded);
    let (load_end, load_secs, client) = (loaded.load_end, loaded.load_secs, loaded.client);
    let history = loaded.history;
    say(&format!(
        "load done in {load_secs:.1} s: {} buyers finished, {} requests",
        history.len(),
        Live::get(&live.requests)
    ));

    let audit_report = opts
        .audit
        .then(|| audit_office(s, target, &prepared, &history, load_end, &say));
    let rec = lock(&recorder);
    let report = Report::build(
        s,
        &rec,
        &history,
        loaded.arrived,
        RunFacts {
            cpu,
            client,
            max_p99_ms: opts.max_p99_ms,
            max_error_rate: opts.max_error_rate,
            ..prepared.facts(
                target.base.clone(),
                target.embedded,
                tag,
                started_at,
                load_secs,
            )
        },
        audit_report,
    );
    drop(rec);
    Ok(RunResult { report, history })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_read_from_proc_stat() {
        let text = "1234 (load 0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu_secs(text), Some(3.0));
        assert_eq!(stat_cpu_secs("garbage"), None);
        // This thread has used some CPU, and the process at least as much.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_cpu_secs() >= thread_cpu_secs());
    }
}
