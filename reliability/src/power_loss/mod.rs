//! Campaign 8: power loss. The real binary runs under strace ([`strace`]) from an empty data
//! folder through the whole flow ([`flow`]: operator set-up with a 6,000-serial release,
//! citizens from SMS to identity, a 100,000-number release by patterns, thousands of draws
//! from many connections at once, committed in groups of many, claims, a registration, a void,
//! a withdrawal); the trace holds every byte written to the folder, every sync, every request
//! read and every answer written.
//!
//! Two checks follow from it ([`model`]):
//! - **synced before the answer**: at the instant each HTTP answer to a request sent alone is
//!   written to its socket, every file of the folder written before is fsynced (or
//!   fdatasynced) after its last write, and every new entry of a folder (a file created, a
//!   rename's new name) has its folder fsynced; `sync_file_range` counts for nothing. An answer
//!   to a draw of the burst, sent while other draws' groups may rightly be in flight, must
//!   find synced everything written before its own request arrived;
//! - **power loss at random instants**: the folder is rebuilt as a power loss at that line of the
//!   trace leaves it (only what had been synced; the rest dropped), the binary is started on
//!   the copy, and every change acknowledged before that instant must be there; the folder
//!   opens, or refuses with an explanation — never silently empty.

pub mod flow;
pub mod model;
pub mod strace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::fuzz::http::{OPERATOR, SECRET};
use crate::http::once;
use crate::server::{free_port, Options, Server};
use crate::{thousands, Mode, Outcome};
use flow::{Burst, Expect, Flow, Request, OFFICE};
use model::Model;

/// How hard the campaign tries.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Citizens through the flow and the draws they send at once.
    pub burst: Burst,
    /// Power losses replayed at random instants of the trace.
    pub instants: u32,
    pub seed: u64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                burst: Burst {
                    citizens: 24,
                    draws: 2_000,
                    clients: 48,
                },
                instants: 3,
                seed: 8,
            },
            Mode::Long => Plan {
                burst: Burst {
                    citizens: 400,
                    draws: 10_000,
                    clients: 48,
                },
                instants: 40,
                seed: 8,
            },
        }
    }
}

/// A traced run of the flow.
#[derive(Debug)]
pub struct Recording {
    pub model: Model,
    pub flow: Flow,
    /// Trace line of each request's answer (by the connection's port), in `flow.requests` order.
    pub answered_at: Vec<Option<usize>>,
    pub trace_bytes: u64,
    pub took: Duration,
    _dir: tempfile::TempDir,
}

/// The pid of the process strace started (its only child).
fn tracee(strace: &Child) -> Option<u32> {
    let pid = strace.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Runs the binary under strace through the flow and reads the trace back.
pub fn record(bin: &Path, burst: &Burst) -> Result<Recording, String> {
    strace::available()?;
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().canonicalize().map_err(|e| e.to_string())?;
    let data = root.join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    let trace = root.join("trace");
    let log = root.join("server.log");
    let port = free_port();
    let mut cmd = strace::command(&trace, bin);
    cmd.args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "2",
    ])
    .arg("--data-dir")
    .arg(&data)
    .env("PLATEPOOL_OPERATOR_TOKEN", OPERATOR)
    .env("PLATEPOOL_TOKEN_SECRET", SECRET)
    .env("RUST_LOG", "warn")
    // The burst comes from one address and few users, all at once: no rate limit nor
    // shedding by the event loop's lag (the office's own limits stay).
    .env("PLATEPOOL_RATE_LIMIT_USER_PER_S", "0")
    .env("PLATEPOOL_RATE_LIMIT_IP_PER_S", "0")
    .env("PLATEPOOL_SHED_LOOP_LAG_MS", "0")
    .env_remove("PLATEPOOL_DURABILITY")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?);
    let mut child = cmd.spawn().map_err(|e| format!("strace: {e}"))?;
    let ran = (|| {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the traced binary exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if once(port, "GET", "/readyz", &[], None).is_ok_and(|a| a.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                return Err("the traced binary was not ready within 180 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut flow = Flow::default();
        flow.run(port, burst).map(|()| flow)
    })();
    // The power goes: SIGKILL to the binary (strace then ends with it).
    if let Some(pid) = tracee(&child) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let waited = child.wait();
    let flow = ran?;
    waited.map_err(|e| format!("strace: {e}"))?;
    let text = std::fs::read_to_string(&trace).map_err(|e| format!("trace: {e}"))?;
    if let Some(keep) = std::env::var_os("PLATEPOOL_KEEP_TRACE") {
        // For a look at what the model read: the trace and the folder's path in it.
        let _ = std::fs::write(&keep, format!("{}\n{text}", data.display()));
    }
    let calls = strace::parse(&text);
    let model = Model::build(&data, &calls);
    let answered_at = match_answers(&flow.requests, &model);
    Ok(Recording {
        model,
        flow,
        answered_at,
        trace_bytes: text.len() as u64,
        took: started.elapsed(),
        _dir: dir,
    })
}

/// The trace line of each request's answer: the n-th answer on a client port is the n-th request
/// sent from it.
fn match_answers(requests: &[Request], model: &Model) -> Vec<Option<usize>> {
    let mut by_port: HashMap<u16, Vec<usize>> = HashMap::new();
    for a in &model.acks {
        by_port.entry(a.client_port).or_default().push(a.line);
    }
    for lines in by_port.values_mut() {
        lines.reverse();
    }
    requests
        .iter()
        .map(|r| by_port.get_mut(&r.client_port).and_then(Vec::pop))
        .collect()
}

impl Recording {
    /// Every answer written while something it depends on was not durable, with what. An
    /// answer to a request sent alone depends on everything written before it; one sent
    /// while others were in flight (a draw of the burst), on everything written before its
    /// request arrived: the others' groups may rightly be in flight at its answer.
    pub fn unsynced_answers(&self) -> Vec<String> {
        let what: HashMap<usize, &Request> = self
            .answered_at
            .iter()
            .zip(&self.flow.requests)
            .filter_map(|(line, r)| line.map(|l| (l, r)))
            .collect();
        self.model
            .acks
            .iter()
            .filter_map(|a| {
                let request = what.get(&a.line);
                let (unsynced, since) = match request {
                    Some(r) if r.concurrent => match a.request_line {
                        Some(_) => (&a.unsynced_since_request, "its request arrived"),
                        None => return Some(format!("{} answered without a request", r.what)),
                    },
                    _ => (&a.unsynced, "the answer"),
                };
                if unsynced.is_empty() {
                    return None;
                }
                let name = request.map_or("an answer".to_string(), |r| r.what.clone());
                Some(format!(
                    "{name} answered {} (trace line {}) before {} (written before {since})",
                    a.status,
                    a.line,
                    unsynced.join("; ")
                ))
            })
            .collect()
    }

    /// The burst: draws answered 201, and the group commits (fdatasyncs of sled's `db`) that
    /// ended after the first of its requests arrived and by its last answer (nothing else is
    /// sent meanwhile).
    pub fn burst_groups(&self) -> (usize, usize) {
        let burst: Vec<(Option<usize>, &Request)> = self
            .answered_at
            .iter()
            .zip(&self.flow.requests)
            .filter(|(_, r)| r.concurrent)
            .map(|(at, r)| (*at, r))
            .collect();
        let drawn = burst.iter().filter(|(_, r)| r.status == 201).count();
        let arrived = |line: usize| {
            self.model
                .acks
                .iter()
                .find(|a| a.line == line)
                .and_then(|a| a.request_line)
        };
        let first_arrival = burst.iter().filter_map(|(at, _)| arrived((*at)?)).min();
        let last_answer = burst.iter().filter_map(|(at, _)| *at).max();
        let groups = match (first_arrival, last_answer) {
            (Some(from), Some(to)) => self.model.syncs_between("/db", from, to),
            _ => 0,
        };
        (drawn, groups)
    }

    /// Requests whose answer the trace does not show (the mapping is broken if any).
    pub fn unmatched(&self) -> usize {
        self.answered_at.iter().filter(|l| l.is_none()).count()
    }

    /// Acknowledged changes answered before `line`.
    fn acknowledged_before(&self, line: usize) -> Vec<&Request> {
        self.flow
            .requests
            .iter()
            .zip(&self.answered_at)
            .filter(|(r, at)| r.expect.is_some() && at.is_some_and(|a| a < line))
            .map(|(r, _)| r)
            .collect()
    }

    /// A power loss at `line`: the folder rebuilt, the binary started on it, every change
    /// acknowledged before checked. Returns (changes checked, what was missing or wrong).
    pub fn power_loss_at(&self, bin: &Path, line: usize) -> Result<(usize, Vec<String>), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        self.model
            .folder_at(line, &data)
            .map_err(|e| format!("rebuilding the folder: {e}"))?;
        let acked = self.acknowledged_before(line);
        let mut opts = Options::new(bin.to_path_buf(), data);
        opts.ready_timeout = Duration::from_secs(120);
        let server = match Server::start(&opts, free_port()) {
            Ok((server, _)) => server,
            Err(e) => {
                let explained = !e.contains("panicked") && e.len() > 40;
                let mut problems = Vec::new();
                if !explained {
                    problems.push(format!("the folder did not open, unexplained: {e}"));
                } else if !acked.is_empty() {
                    problems.push(format!(
                        "the folder was refused with {} acknowledged change(s) in it: {e}",
                        acked.len()
                    ));
                }
                return Ok((acked.len(), problems));
            }
        };
        let mut problems = Vec::new();
        for (what, expect) in strongest(&acked) {
            if let Err(p) = check(server.port, expect) {
                problems.push(format!("{what}: {p}"));
            }
        }
        let _ = server.kill9();
        Ok((acked.len(), problems))
    }
}

/// The acknowledged changes to check, with what acknowledged them: the draws of one
/// application collapse into the one that left it the least quota (it implies the others).
fn strongest<'a>(acked: &[&'a Request]) -> Vec<(String, &'a Expect)> {
    let mut out: Vec<(String, &Expect)> = Vec::new();
    let mut drawn: HashMap<&str, usize> = HashMap::new();
    for r in acked {
        let Some(expect) = &r.expect else { continue };
        let what = format!("{} (acknowledged {})", r.what, r.status);
        if let Expect::Drawn {
            id, random_left, ..
        } = expect
        {
            if let Some(&i) = drawn.get(id.as_str()) {
                if matches!(out[i].1, Expect::Drawn { random_left: l, .. } if l > random_left) {
                    out[i] = (what, expect);
                }
                continue;
            }
            drawn.insert(id, out.len());
        }
        out.push((what, expect));
    }
    out
}

fn get(port: u16, path: &str, token: &str) -> Result<Value, String> {
    let bearer = format!("Bearer {token}");
    let a = once(port, "GET", path, &[("Authorization", &bearer)], None)
        .map_err(|e| format!("GET {path}: {e}"))?;
    if a.status != 200 {
        return Err(format!("GET {path}: {} {}", a.status, a.text()));
    }
    Ok(a.json())
}

/// Whether an acknowledged change is there.
fn check(port: u16, expect: &Expect) -> Result<(), String> {
    let view = |id: &str, token: &str| get(port, &format!("/v1/applications/{id}"), token);
    match expect {
        Expect::Office => get(port, &format!("/v1/offices/{OFFICE}"), OPERATOR).map(|_| ()),
        Expect::Release { id, total } => {
            let pool = get(port, &format!("/v1/offices/{OFFICE}/pool"), OPERATOR)?;
            let found = pool["classes"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["releases"].as_array().cloned().unwrap_or_default())
                .any(|r| r["id"].as_u64() == Some(*id) && r["total"].as_u64() == Some(*total));
            found
                .then_some(())
                .ok_or_else(|| format!("release {id} of {total} numbers missing: {pool}"))
        }
        Expect::Application { id, token } => view(id, token).map(|_| ()),
        Expect::Drawn {
            id,
            token,
            random_left,
        } => {
            let v = view(id, token)?;
            let left = v["random_left"].as_u64().unwrap_or(u64::MAX);
            (left <= *random_left)
                .then_some(())
                .ok_or_else(|| format!("random_left {left}, acknowledged {random_left}"))
        }
        Expect::Claimed { id, token, serial } => {
            let v = view(id, token)?;
            let s = v["claim"]["serial"].as_str().unwrap_or("");
            (s == serial)
                .then_some(())
                .ok_or_else(|| format!("claim of {serial} missing: {v}"))
        }
        Expect::Issued { id, token } | Expect::Voided { id, token } => {
            let want = if matches!(expect, Expect::Issued { .. }) {
                "issued"
            } else {
                "voided"
            };
            let v = view(id, token)?;
            (v["state"] == want)
                .then_some(())
                .ok_or_else(|| format!("state {}, acknowledged {want}", v["state"]))
        }
        Expect::Withdrawn { serial } => {
            let mut after = 0u64;
            loop {
                let page = get(
                    port,
                    &format!("/v1/admin/audit?office={OFFICE}&after={after}&limit=1000"),
                    OPERATOR,
                )?;
                let entries = page["entries"].as_array().cloned().unwrap_or_default();
                if entries.iter().any(|e| {
                    e["action"] == "withdraw_number" && e["serial"].as_str() == Some(serial)
                }) {
                    return Ok(());
                }
                match entries.last().and_then(|e| e["id"].as_u64()) {
                    Some(id) if id > after => after = id,
                    _ => return Err(format!("withdrawal of {serial} missing from the audit")),
                }
            }
        }
        Expect::Sms { phone, count } => {
            let v = get(
                port,
                &format!("/v1/admin/sms/outbox?phone={phone}"),
                OPERATOR,
            )?;
            let n = v.as_array().map_or(0, Vec::len);
            (n >= *count)
                .then_some(())
                .ok_or_else(|| format!("{n} message(s) in the outbox, {count} acknowledged"))
        }
    }
}

/// The instants to replay: random lines of the trace, plus the line just after the answers
/// carrying the largest values (the releases, the first, middle and last draws of the burst).
fn instants(rec: &Recording, plan: &Plan) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let last = rec.model.last_line.max(1);
    let mut out: Vec<usize> = (0..plan.instants)
        .map(|_| rng.random_range(0..=last))
        .collect();
    let answered = |what: &str| -> Vec<usize> {
        let mut lines: Vec<usize> = rec
            .flow
            .requests
            .iter()
            .zip(&rec.answered_at)
            .filter(|(r, _)| r.what.contains(what))
            .filter_map(|(_, at)| *at)
            .collect();
        lines.sort();
        lines
    };
    // Right after each release: the listed one (a blob) and the large one.
    out.extend(answered("/releases").iter().map(|l| l + 1));
    // Right after the first, middle and last answers of the burst, while other draws' groups
    // are still in flight.
    let draws: Vec<usize> = rec
        .flow
        .requests
        .iter()
        .zip(&rec.answered_at)
        .filter(|(r, _)| r.concurrent)
        .filter_map(|(_, at)| *at)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for at in [0, draws.len() / 2, draws.len().saturating_sub(1)] {
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
    let rec = match record(&bin, &plan.burst) {
        Ok(r) => r,
        Err(e) => {
            out.violation(format!("the traced run failed: {e}"));
            return out;
        }
    };
    let (bytes, syncs) = rec.model.totals();
    let (largest, largest_file) = rec.model.largest_write();
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
    out.figure(
        "traced run (strace size, time)",
        format!(
            "{} MB, {:.1} s",
            rec.trace_bytes / 1_000_000,
            rec.took.as_secs_f64()
        ),
    );
    out.check(
        rec.model.unmodelled.is_empty(),
        "every call on the folder is one the model replays",
        format!("calls the model cannot replay: {:?}", rec.model.unmodelled),
    );
    out.check(
        rec.unmatched() == 0,
        "every request's answer found in the trace",
        format!(
            "{} requests without an answer in the trace",
            rec.unmatched()
        ),
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
    let unsynced = rec.unsynced_answers();
    let concurrent = rec.flow.requests.iter().filter(|r| r.concurrent).count();
    out.check(
        unsynced.is_empty(),
        format!(
            "every one of {} answers to requests sent one at a time was written after everything written to the folder before it was fsynced (files and folder entries), and each of the {concurrent} concurrent draws after everything written before its request arrived",
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
    let points = instants(&rec, &plan);
    for &line in &points {
        match rec.power_loss_at(&bin, line) {
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
        "power losses replayed / acknowledged changes checked after them",
        format!("{} / {}", points.len(), thousands(checked as u64)),
    );
    out.check(
        failures.is_empty(),
        "after every power loss the folder opened with every change acknowledged before it",
        format!(
            "{} problem(s) after power losses, e.g. {}",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ),
    );
    out.elapsed = started.elapsed();
    out
}

/// Where the binary is, for tests: `PLATEPOOL_BIN` or the build's own.
pub fn binary_for_tests() -> Result<PathBuf, String> {
    crate::storage::binary(true)
}
