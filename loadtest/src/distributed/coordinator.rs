//! The coordinator: waits for its workers, prepares the office once, hands each worker its share
//! of the buyers and the shared instants, follows their progress, merges their parts into one
//! report and audits the office once over every buyer.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::part::{merged_client, merged_cpu, Part, Split};
use super::wire::{
    read_message, spawn_reader, tool, Heartbeat, Hello, Incoming, Link, LiveCounts, Setup, Start,
    ToCoordinator, ToWorker, PROTOCOL,
};
use crate::api::Api;
use crate::identity::run_tag;
use crate::prepare::{now_ms, open_release, prepare_office, Prepared, PreparedOffice};
use crate::recorder::Recorder;
use crate::report::{Report, RunFacts};
use crate::run::{
    audit_office, opening_countdown, Progress, ProgressPrinter, RunOptions, RunResult, Target,
};
use crate::scenario::{plans, Model, Scenario};

/// Time between the release's creation and the start of the load: the start message's way to
/// every worker.
const START_LEAD: Duration = Duration::from_millis(500);
/// A worker whose clock cannot be placed closer than this cannot share the opening.
const MAX_CLOCK_UNCERTAINTY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// Where workers connect, e.g. `0.0.0.0:7700`.
    pub listen: String,
    pub workers: u32,
    /// How long to wait for every worker to connect.
    pub wait: Duration,
    /// A worker silent this long is gone.
    pub peer_timeout: Duration,
    pub run: RunOptions,
}

#[derive(Debug)]
struct Peer {
    link: Link<ToWorker>,
    hello: Hello,
}

type Events = Receiver<(usize, Incoming<ToCoordinator>)>;

/// The connected workers.
#[derive(Debug)]
struct Room {
    peers: Vec<Peer>,
    rx: Events,
    /// Workers whose part has arrived: their link closing is expected.
    finished: Vec<bool>,
    /// What the run is doing, for errors: "during the load".
    phase: &'static str,
}

impl Room {
    fn name(&self, id: usize) -> String {
        match self.peers.get(id) {
            Some(p) => format!("worker {id} ({}, host {})", p.link.peer, p.hello.host),
            None => format!("worker {id}"),
        }
    }

    /// The next message within `timeout`; a worker gone or failed is an error.
    fn next(&mut self, timeout: Duration) -> Result<Option<(usize, ToCoordinator)>, String> {
        loop {
            match self.rx.recv_timeout(timeout) {
                Ok((id, Incoming::Gone(e))) => {
                    if self.finished.get(id).copied().unwrap_or(false) {
                        continue;
                    }
                    return Err(format!("{} is gone {}: {e}", self.name(id), self.phase));
                }
                Ok((id, Incoming::Message(ToCoordinator::Failed { error }, _))) => {
                    return Err(format!("{} failed {}: {error}", self.name(id), self.phase));
                }
                Ok((id, Incoming::Message(m, _))) => return Ok(Some((id, m))),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("every worker's link has closed".into())
                }
            }
        }
    }

    fn send(&self, id: usize, msg: &ToWorker) -> Result<(), String> {
        self.peers[id]
            .link
            .send(msg)
            .map_err(|e| format!("{}: {e}", self.name(id)))
    }

    /// Tells every worker the run is over and closes the links.
    fn abort(&self, reason: &str) {
        for p in &self.peers {
            let _ = p.link.send(&ToWorker::Abort {
                reason: reason.to_string(),
            });
            p.link.close();
        }
    }

    /// Waits for `job` (on a thread of its own) while watching the workers.
    fn wait_for<T: Send + 'static>(
        &mut self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let h = std::thread::Builder::new()
            .name("coordinator-job".into())
            .spawn(job)
            .map_err(|e| format!("thread: {e}"))?;
        while !h.is_finished() {
            if let Some((id, m)) = self.next(Duration::from_millis(100))? {
                return Err(format!("{} sent {m:?} out of turn", self.name(id)));
            }
        }
        h.join()
            .map_err(|_| "the coordinator's job panicked".to_string())
    }
}

fn handshake(
    stream: TcpStream,
    timeout: Duration,
) -> Result<(Hello, BufReader<TcpStream>, Link<ToWorker>), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let link = Link::new(&stream, timeout)?;
    let mut reader = BufReader::new(stream);
    let refuse = |reason: String| {
        let _ = link.send(&ToWorker::Abort {
            reason: reason.clone(),
        });
        reason
    };
    let hello = match read_message::<ToCoordinator>(&mut reader, timeout)? {
        ToCoordinator::Hello(h) => h,
        other => return Err(refuse(format!("expected hello, got {other:?}"))),
    };
    if hello.protocol != PROTOCOL || hello.tool != tool() {
        return Err(refuse(format!(
            "the coordinator runs {} (protocol {PROTOCOL}), the worker {} (protocol {})",
            tool(),
            hello.tool,
            hello.protocol
        )));
    }
    Ok((hello, reader, link))
}

/// Accepts connections into `room` until `n` workers have said hello, or fails after `wait`.
fn gather(
    room: &mut Room,
    tx: &Sender<(usize, Incoming<ToCoordinator>)>,
    listener: &TcpListener,
    opts: &CoordinatorOptions,
    epoch: Instant,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + opts.wait;
    while room.peers.len() < opts.workers as usize {
        match listener.accept() {
            Ok((stream, addr)) => match handshake(stream, opts.peer_timeout) {
                Ok((hello, reader, link)) => {
                    let id = room.peers.len();
                    say(&format!(
                        "worker {id} connected from {addr} (host {}, {} cores)",
                        hello.host, hello.cores
                    ));
                    spawn_reader(
                        reader,
                        opts.peer_timeout,
                        id,
                        tx.clone(),
                        link.clone(),
                        move |m| match m {
                            ToCoordinator::Ping { seq } => Some(ToWorker::Pong {
                                seq: *seq,
                                coordinator_us: epoch.elapsed().as_micros() as u64,
                            }),
                            _ => None,
                        },
                        |m| matches!(m, ToCoordinator::Heartbeat),
                    )?;
                    room.peers.push(Peer { link, hello });
                    room.finished.push(false);
                }
                Err(e) => say(&format!("refused a connection from {addr}: {e}")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} of {} workers connected within {} s",
                        room.peers.len(),
                        opts.workers,
                        opts.wait.as_secs()
                    ));
                }
                // A worker that left while the others come is an error now, not at the start.
                if let Some((id, m)) = room.next(Duration::from_millis(20))? {
                    return Err(format!("{} sent {m:?} out of turn", room.name(id)));
                }
            }
            Err(e) => return Err(format!("accept on {}: {e}", opts.listen)),
        }
    }
    Ok(())
}

/// Runs a rehearsal over `opts.workers` worker processes.
pub fn coordinate(
    s: &Scenario,
    target: &Target,
    opts: &CoordinatorOptions,
) -> Result<RunResult, String> {
    s.validate()?;
    let n = opts.workers;
    if n == 0 || n > s.buyers {
        return Err(format!(
            "--worker-processes must be between 1 and the buyers ({}), not {n}",
            s.buyers
        ));
    }
    if s.model == Model::Closed && (s.concurrency as usize) < n as usize {
        return Err(format!(
            "the closed model needs at least one buyer in flight per worker: concurrency {} < {n} workers",
            s.concurrency
        ));
    }
    let progress = opts.run.progress;
    let say = move |m: &str| {
        if progress != Progress::Off {
            eprintln!("{m}");
        }
    };
    let epoch = Instant::now();
    let listener =
        TcpListener::bind(&opts.listen).map_err(|e| format!("listen on {}: {e}", opts.listen))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| opts.listen.clone());
    say(&format!(
        "platepool-loadtest: coordinating scenario {} ({} buyers against {}): waiting for {n} workers on {addr}",
        s.name, s.buyers, target.base
    ));
    let (tx, rx): (Sender<(usize, Incoming<ToCoordinator>)>, Events) = channel();
    let mut room = Room {
        peers: Vec::new(),
        rx,
        finished: Vec::new(),
        phase: "before the start",
    };
    if let Err(e) = gather(&mut room, &tx, &listener, opts, epoch, &say) {
        room.abort(&e);
        return Err(e);
    }
    drop((listener, tx));
    let links = room.peers.iter().map(|p| p.link.clone()).collect();
    let heartbeat = Heartbeat::start(links, ToWorker::Heartbeat)?;
    let result = drive(&mut room, s, target, opts, epoch, &say);
    drop(heartbeat);
    if let Err(e) = &result {
        room.abort(e);
    }
    result
}

/// Everything after the workers have connected.
fn drive(
    room: &mut Room,
    s: &Scenario,
    target: &Target,
    opts: &CoordinatorOptions,
    epoch: Instant,
    say: &(dyn Fn(&str) + Sync),
) -> Result<RunResult, String> {
    let n = opts.workers;
    let tag = run_tag(s.seed, now_ms());
    let started_at = platepool_engine::calendar::rfc3339(now_ms());
    let all_plans = plans(s);
    say(&format!("run tag {tag:05}"));
    room.phase = "while the office was prepared";
    let office = {
        let (s, target, plans) = (s.clone(), target.clone(), all_plans.clone());
        let progress = opts.run.progress;
        room.wait_for(move || {
            let say = |m: &str| {
                if progress != Progress::Off {
                    eprintln!("{m}");
                }
            };
            let timeout = Duration::from_millis(s.timeout_ms);
            actix_rt::System::new().block_on(async {
                let api = Api::new(&target.base, &target.operator_token, 64, timeout);
                prepare_office(&api, &s, tag, &plans, target.token_secret.as_deref(), &say).await
            })
        })??
    };
    for id in 0..n as usize {
        let split = Split {
            worker: id as u32,
            workers: n,
        };
        let tokens = office
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if split.owns(i as u32) {
                    t.clone()
                } else {
                    String::new()
                }
            })
            .collect();
        let setup = Setup {
            split,
            scenario: s.clone(),
            target: target.base.clone(),
            tag,
            office: office.office.clone(),
            notice_version: office.notice_version.clone(),
            tokens,
            connections: split.portion(s.connections).max(1),
            concurrency: split.portion(s.concurrency as usize),
        };
        room.send(id, &ToWorker::Setup(Box::new(setup)))?;
    }
    room.phase = "while setting up";
    wait_ready(room, n, say)?;
    let prepared = open(s, target, office, say)?;
    let us = |at: Instant| at.saturating_duration_since(epoch).as_micros() as u64;
    let start = Start {
        load_start_us: us(prepared.load_start),
        opening_us: us(prepared.opening),
        release_id: prepared.release_id.clone(),
        release_total: prepared.release_total,
        opens_at: platepool_engine::calendar::rfc3339(prepared.opens_at_ms),
        started_at: started_at.clone(),
    };
    for id in 0..n as usize {
        room.send(id, &ToWorker::Start(start.clone()))?;
    }
    say(&format!("load started on {n} workers"));
    room.phase = "during the load";
    let parts = collect(room, s, &prepared, opts.run.progress)?;

    let mut recorder = Recorder::new(prepared.load_start);
    let mut history = Vec::with_capacity(s.buyers as usize);
    for p in &parts {
        p.recorder.add_to(&mut recorder)?;
        history.extend(p.history.iter().cloned());
    }
    history.sort_by_key(|b| b.index);
    let load_secs = parts.iter().map(|p| p.load_secs).fold(0.0, f64::max);
    let load_end = prepared.load_start + Duration::from_secs_f64(load_secs);
    let arrived = parts.iter().map(|p| p.arrived).sum();
    say(&format!(
        "load done in {load_secs:.1} s: {} buyers finished, {} requests",
        history.len(),
        recorder.requests()
    ));
    let audit = opts
        .run
        .audit
        .then(|| audit_office(s, target, &prepared, &history, load_end, say));
    let report = Report::build(
        s,
        &recorder,
        &history,
        arrived,
        RunFacts {
            cpu: merged_cpu(&parts, load_secs),
            client: merged_client(&parts),
            max_p99_ms: opts.run.max_p99_ms,
            max_error_rate: opts.run.max_error_rate,
            ..prepared.facts(target.base.clone(), false, tag, started_at, load_secs)
        },
        audit,
    );
    Ok(RunResult { report, history })
}

/// Waits for every worker's `ready` (set up, clock measured).
fn wait_ready(room: &mut Room, n: u32, say: &dyn Fn(&str)) -> Result<(), String> {
    let mut ready = vec![false; n as usize];
    while ready.iter().any(|r| !r) {
        let Some((id, m)) = room.next(Duration::from_secs(1))? else {
            continue;
        };
        match m {
            ToCoordinator::Ready { rtt_us } => {
                let uncertainty = Duration::from_micros(rtt_us / 2);
                if uncertainty > MAX_CLOCK_UNCERTAINTY {
                    return Err(format!(
                        "{}: its best round trip was {:.1} ms, so its clock is known only to ±{:.1} ms (at most ±{} ms shares an opening)",
                        room.name(id),
                        rtt_us as f64 / 1_000.0,
                        uncertainty.as_secs_f64() * 1_000.0,
                        MAX_CLOCK_UNCERTAINTY.as_millis()
                    ));
                }
                say(&format!(
                    "{} ready, clock to ±{:.2} ms",
                    room.name(id),
                    uncertainty.as_secs_f64() * 1_000.0
                ));
                ready[id] = true;
            }
            other => return Err(format!("{} sent {other:?} out of turn", room.name(id))),
        }
    }
    Ok(())
}

/// Opens the release [`START_LEAD`] ahead of the load.
fn open(
    s: &Scenario,
    target: &Target,
    office: PreparedOffice,
    say: &dyn Fn(&str),
) -> Result<Prepared, String> {
    let timeout = Duration::from_millis(s.timeout_ms);
    actix_rt::System::new().block_on(async {
        let api = Api::new(&target.base, &target.operator_token, 4, timeout);
        open_release(&api, s, office, START_LEAD, say).await
    })
}

/// Follows the workers' progress until every part has arrived.
fn collect(
    room: &mut Room,
    s: &Scenario,
    prepared: &Prepared,
    progress: Progress,
) -> Result<Vec<Part>, String> {
    let n = room.peers.len();
    let mut live = vec![LiveCounts::default(); n];
    let mut parts: Vec<Option<Part>> = vec![None; n];
    let printer = ProgressPrinter::new(progress, s.buyers as u64);
    let mut last = (Instant::now(), 0u64);
    let mut printed = Instant::now();
    while parts.iter().any(Option::is_none) {
        if let Some((id, m)) = room.next(Duration::from_millis(200))? {
            match m {
                ToCoordinator::Progress(c) => live[id] = c,
                ToCoordinator::Done(part) => {
                    let split = Split {
                        worker: id as u32,
                        workers: n as u32,
                    };
                    if part.split != split {
                        return Err(format!(
                            "{} sent the part of {:?}, not its own",
                            room.name(id),
                            part.split
                        ));
                    }
                    split
                        .check(&part.history, s.buyers)
                        .map_err(|e| format!("{}: {e}", room.name(id)))?;
                    room.finished[id] = true;
                    room.send(id, &ToWorker::Collected)?;
                    if progress != Progress::Off {
                        printer.note(&format!(
                            "part of {}: {} buyers, {} requests, load {:.1} s",
                            room.name(id),
                            part.history.len(),
                            part.recorder.steps.iter().map(|s| s.sent).sum::<u64>(),
                            part.load_secs
                        ));
                    }
                    parts[id] = Some(*part);
                }
                other => return Err(format!("{} sent {other:?} out of turn", room.name(id))),
            }
        }
        let every = if progress == Progress::Terminal { 1 } else { 5 };
        if progress != Progress::Off && printed.elapsed() >= Duration::from_secs(every) {
            printed = Instant::now();
            let sum = live.iter().fold(LiveCounts::default(), |a, c| LiveCounts {
                arrived: a.arrived + c.arrived,
                finished: a.finished + c.finished,
                requests: a.requests + c.requests,
                errors: a.errors + c.errors,
                claims: a.claims + c.claims,
            });
            let now = Instant::now();
            let rate = (sum.requests.saturating_sub(last.1)) as f64
                / now.duration_since(last.0).as_secs_f64().max(0.001);
            last = (now, sum.requests);
            printer.print(&format!(
                "[{:>6.1} s] buyers {}/{} arrived, {} done | {:>6.0} req/s | errors {} | claims {} | {} | parts {}/{n}",
                now.saturating_duration_since(prepared.load_start).as_secs_f64(),
                sum.arrived,
                s.buyers,
                sum.finished,
                rate,
                sum.errors,
                sum.claims,
                opening_countdown(now, prepared.opening),
                parts.iter().filter(|p| p.is_some()).count()
            ));
        }
    }
    printer.finish();
    Ok(parts.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;
    use crate::distributed::wire::host_name;

    fn hello(tool: String) -> ToCoordinator {
        ToCoordinator::Hello(Hello {
            protocol: PROTOCOL,
            tool,
            host: host_name(),
            cores: 1,
        })
    }

    /// Connects (the coordinator may not listen yet), says `hello`, reads the first answer.
    fn join(port: u16, hello: &ToCoordinator) -> ToWorker {
        let started = Instant::now();
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if started.elapsed() > Duration::from_secs(20) => panic!("connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let link: Link<ToCoordinator> = Link::new(&stream, Duration::from_secs(5)).expect("link");
        link.send(hello).expect("hello sent");
        let mut reader = BufReader::new(stream);
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        read_message(&mut reader, Duration::from_secs(20)).expect("an answer")
    }

    #[test]
    fn another_version_is_refused_and_too_few_workers_fail_the_run_telling_those_connected() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let opts = CoordinatorOptions {
            listen: format!("127.0.0.1:{port}"),
            workers: 2,
            wait: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(5),
            run: RunOptions {
                progress: Progress::Off,
                audit: false,
                max_p99_ms: None,
                max_error_rate: None,
            },
        };
        // The run fails before the gateway is ever asked anything.
        let target = Target {
            base: "http://127.0.0.1:9".into(),
            operator_token: "unused".into(),
            token_secret: None,
            embedded: false,
        };
        let run = std::thread::spawn(move || coordinate(&Scenario::default(), &target, &opts));
        match join(port, &hello("platepool-loadtest 0.0.0-other".into())) {
            ToWorker::Abort { reason } => {
                assert!(
                    reason.contains("0.0.0-other") && reason.contains(&tool()),
                    "{reason}"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        match join(port, &hello(tool())) {
            ToWorker::Abort { reason } => {
                assert_eq!(reason, "1 of 2 workers connected within 2 s")
            }
            other => panic!("expected the abort, got {other:?}"),
        }
        let err = run.join().expect("no panic").expect_err("too few workers");
        assert_eq!(err, "1 of 2 workers connected within 2 s");
    }
}
