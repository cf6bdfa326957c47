//! A worker: connects to the coordinator, measures the coordinator's clock, runs its share of
//! the buyers from the shared start of the load, and sends back its part. Its own report (the
//! same form, without the audit, which the coordinator runs once over every buyer) is what it
//! prints and writes.

use std::io::BufReader;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clock::{ClockMap, Sample};
use super::part::{Part, RecorderPart};
use super::wire::{
    host_name, spawn_reader, tool, Heartbeat, Hello, Incoming, Link, LiveCounts, Setup, Start,
    ToCoordinator, ToWorker, PROTOCOL,
};
use crate::buyer::{lock, Shared};
use crate::recorder::{Live, Recorder};
use crate::report::{Report, RunFacts};
use crate::run::{load, Progress, ProgressPrinter, RunResult, Share, Target};
use crate::scenario::plans;

/// Clock round trips; the shortest is kept.
const CLOCK_ROUNDS: u32 = 8;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's `host:port`.
    pub coordinator: String,
    /// The gateway's URL from this machine, when not the coordinator's.
    pub target: Option<String>,
    pub operator_token: String,
    /// How long to keep trying to reach the coordinator.
    pub wait: Duration,
    /// The coordinator silent this long is gone.
    pub peer_timeout: Duration,
    pub progress: Progress,
}

type Events = Receiver<(usize, Incoming<ToWorker>)>;

/// The link to the coordinator.
#[derive(Debug)]
struct Coordinator {
    link: Link<ToCoordinator>,
    rx: Events,
}

impl Coordinator {
    /// The next message (heartbeats are not forwarded); an abort or a lost link is an error.
    fn next(&self) -> Result<(ToWorker, Instant), String> {
        match self.rx.recv() {
            Ok((_, Incoming::Message(ToWorker::Abort { reason }, _))) => {
                Err(format!("the coordinator ended the run: {reason}"))
            }
            Ok((_, Incoming::Message(m, at))) => Ok((m, at)),
            Ok((_, Incoming::Gone(e))) => Err(format!("the coordinator is gone: {e}")),
            Err(_) => Err("the coordinator's link has closed".into()),
        }
    }

    /// An abort or a lost link that arrived meanwhile, without waiting.
    fn check(&self) -> Result<(), String> {
        match self.rx.try_recv() {
            Ok((_, Incoming::Message(ToWorker::Abort { reason }, _))) => {
                Err(format!("the coordinator ended the run: {reason}"))
            }
            Ok((_, Incoming::Message(m, _))) => Err(format!("unexpected message {m:?}")),
            Ok((_, Incoming::Gone(e))) => Err(format!("the coordinator is gone: {e}")),
            Err(TryRecvError::Empty) => Ok(()),
            Err(TryRecvError::Disconnected) => Err("the coordinator's link has closed".into()),
        }
    }
}

fn connect(opts: &WorkerOptions) -> Result<TcpStream, String> {
    let deadline = Instant::now() + opts.wait;
    loop {
        let attempt = opts
            .coordinator
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|addrs| {
                let mut last = "no address".to_string();
                for a in addrs {
                    match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            });
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "could not reach the coordinator at {} within {} s: {e}",
                    opts.coordinator,
                    opts.wait.as_secs()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Runs this process as a worker; the result is its own part, as a report without audit.
pub fn work(opts: &WorkerOptions) -> Result<RunResult, String> {
    let say = |m: &str| {
        if opts.progress != Progress::Off {
            eprintln!("{m}");
        }
    };
    let stream = connect(opts)?;
    let link: Link<ToCoordinator> = Link::new(&stream, opts.peer_timeout)?;
    link.send(&ToCoordinator::Hello(Hello {
        protocol: PROTOCOL,
        tool: tool(),
        host: host_name(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }))?;
    let (tx, rx) = channel();
    spawn_reader(
        BufReader::new(stream),
        opts.peer_timeout,
        0,
        tx,
        link.clone(),
        |_| None,
        |m| matches!(m, ToWorker::Heartbeat),
    )?;
    let _heartbeat = Heartbeat::start(vec![link.clone()], ToCoordinator::Heartbeat)?;
    say(&format!(
        "platepool-loadtest: connected to the coordinator at {}",
        opts.coordinator
    ));
    let c = Coordinator { link, rx };
    let result = run_share(&c, opts, &say);
    if let Err(e) = &result {
        let _ = c.link.send(&ToCoordinator::Failed { error: e.clone() });
    }
    result
}

fn run_share(
    c: &Coordinator,
    opts: &WorkerOptions,
    say: &dyn Fn(&str),
) -> Result<RunResult, String> {
    let setup = match c.next()? {
        (ToWorker::Setup(s), _) => *s,
        (other, _) => return Err(format!("expected the setup, got {other:?}")),
    };
    let Setup {
        split, scenario: s, ..
    } = &setup;
    s.validate()?;
    let share = split.plans(&plans(s));
    if let Some(p) = share.iter().find(|p| {
        setup
            .tokens
            .get(p.index as usize)
            .is_none_or(String::is_empty)
    }) {
        return Err(format!(
            "the setup has no citizen token for buyer {}",
            p.index
        ));
    }
    say(&format!(
        "worker {} of {}: {} of the {} buyers of scenario {}, office {}",
        split.worker,
        split.workers,
        share.len(),
        s.buyers,
        s.name,
        setup.office
    ));
    let clock = measure_clock(c)?;
    c.link.send(&ToCoordinator::Ready {
        rtt_us: clock.rtt.as_micros() as u64,
    })?;
    say(&format!(
        "clock: the coordinator's to ±{:.2} ms; waiting for the start",
        clock.uncertainty().as_secs_f64() * 1_000.0
    ));
    let start = match c.next()? {
        (ToWorker::Start(st), _) => st,
        (other, _) => return Err(format!("expected the start, got {other:?}")),
    };
    let load_start = clock.local(start.load_start_us);
    let opening = clock.local(start.opening_us);
    let target = Target {
        base: opts.target.clone().unwrap_or_else(|| setup.target.clone()),
        operator_token: opts.operator_token.clone(),
        token_secret: None,
        embedded: false,
    };
    let recorder = Arc::new(Mutex::new(Recorder::new(load_start)));
    let live = Arc::new(Live::default());
    let shared = Arc::new(Shared {
        scenario: s.clone(),
        recorder: recorder.clone(),
        live: live.clone(),
        office: setup.office.clone(),
        notice_version: setup.notice_version.clone(),
        opening,
        composition: s.composition()?,
        tag: setup.tag,
        tokens: setup.tokens.clone(),
    });
    let mut printer = ProgressPrinter::new(opts.progress, share.len() as u64);
    let mut sent = Instant::now();
    let loaded = load(
        shared,
        &target,
        load_start,
        Share {
            plans: share,
            concurrency: setup.concurrency,
            connections: setup.connections,
        },
        &mut |sh| {
            c.check()?;
            printer.tick(sh, load_start);
            if sent.elapsed() >= Duration::from_secs(1) {
                sent = Instant::now();
                c.link.send(&ToCoordinator::Progress(counts(&sh.live)))?;
            }
            Ok(())
        },
    )?;
    printer.finish();
    let cpu = loaded.cpu(false);
    let rec = lock(&recorder);
    let part = Part {
        split: *split,
        host: host_name(),
        recorder: RecorderPart::of(&rec)?,
        history: loaded.history,
        arrived: loaded.arrived,
        client: loaded.client,
        cpu,
        load_secs: loaded.load_secs,
    };
    c.link.send(&ToCoordinator::Progress(counts(&live)))?;
    c.link.send(&ToCoordinator::Done(Box::new(part.clone())))?;
    match c.next()? {
        (ToWorker::Collected, _) => {}
        (other, _) => return Err(format!("expected the coordinator's receipt, got {other:?}")),
    }
    say(&format!(
        "part sent: {} buyers, {} requests",
        part.history.len(),
        rec.requests()
    ));
    let report = part_report(&setup, &start, &target, &rec, &part);
    Ok(RunResult {
        report,
        history: part.history,
    })
}

fn counts(live: &Live) -> LiveCounts {
    LiveCounts {
        arrived: Live::get(&live.arrived),
        finished: Live::get(&live.finished),
        requests: Live::get(&live.requests),
        errors: Live::get(&live.errors),
        claims: Live::get(&live.claims),
    }
}

/// [`CLOCK_ROUNDS`] round trips to the coordinator.
fn measure_clock(c: &Coordinator) -> Result<ClockMap, String> {
    let mut samples = Vec::with_capacity(CLOCK_ROUNDS as usize);
    for seq in 0..CLOCK_ROUNDS {
        let sent = Instant::now();
        c.link.send(&ToCoordinator::Ping { seq })?;
        match c.next()? {
            (
                ToWorker::Pong {
                    seq: s,
                    coordinator_us,
                },
                received,
            ) if s == seq => samples.push(Sample {
                sent,
                received,
                coordinator_us,
            }),
            (other, _) => return Err(format!("expected pong {seq}, got {other:?}")),
        }
    }
    ClockMap::from_samples(&samples).ok_or_else(|| "no clock sample".to_string())
}

/// This worker's own report: its buyers only, no audit.
fn part_report(
    setup: &Setup,
    start: &Start,
    target: &Target,
    rec: &Recorder,
    part: &Part,
) -> Report {
    let mut scenario = setup.scenario.clone();
    scenario.name = format!(
        "{} (worker {} of {}: {} of its {} buyers)",
        scenario.name,
        setup.split.worker,
        setup.split.workers,
        part.history.len(),
        scenario.buyers
    );
    Report::build(
        &scenario,
        rec,
        &part.history,
        part.arrived,
        RunFacts {
            target: target.base.clone(),
            embedded: false,
            run_tag: setup.tag,
            office: setup.office.clone(),
            release_id: start.release_id.clone(),
            release_total: start.release_total,
            started_at: start.started_at.clone(),
            opens_at: start.opens_at.clone(),
            opening_at_secs: start.opening_us.saturating_sub(start.load_start_us) as f64 / 1e6,
            prepare_secs: 0.0,
            load_secs: part.load_secs,
            cpu: part.cpu,
            client: part.client,
            max_p99_ms: None,
            max_error_rate: None,
        },
        None,
    )
}
