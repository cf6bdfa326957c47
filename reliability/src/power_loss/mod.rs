//! Campaign 8: power loss. The real binary runs under strace ([`strace`]) from an empty data
//! folder through the whole flow ([`flow`]: operator set-up with a 6,000-serial release,
//! citizens from SMS to identity, a 100,000-number release by patterns, draws from many
//! keep-alive connections at once, claims, a registration, a void, a withdrawal); the trace
//! holds every byte written to the folder, every sync, every request read and every answer
//! written. A second traced run is an opening on a slow disk ([`Flow::opening_run`]): thousands
//! of draws held by the office's opening window and served together when it ends land as a
//! group commit of at least [`GROUP_OF_THOUSANDS`] calls ([`HeldBurst`]).
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

mod campaign;
pub mod flow;
pub mod model;
pub mod strace;

pub use campaign::{campaign, campaign_with, Cuts, Plan, GROUP_OF_THOUSANDS};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fuzz::http::{OPERATOR, SECRET};
use crate::http::once;
use crate::server::{free_port, Options, Server};
use flow::{Burst, Expect, Flow, Opening, Request, OFFICE};
use model::Model;

/// A traced run of the flow.
#[derive(Debug)]
pub struct Recording {
    pub model: Model,
    pub flow: Flow,
    /// Trace line of each request's answer (by the connection's port), in `flow.requests` order.
    pub answered_at: Vec<Option<usize>>,
    /// The traced process's thread names by thread id, read just before the power went.
    pub threads: HashMap<u32, String>,
    pub trace_bytes: u64,
    pub took: Duration,
    _dir: tempfile::TempDir,
}

/// A burst of draws held by the office's opening window, as the trace shows it.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeldBurst {
    pub drawn: usize,
    pub last_arrival: Option<usize>,
    pub first_answer: Option<usize>,
    pub last_answer: Option<usize>,
    /// Syncs of the store's log (`db`) by the engine's threads (not sled's periodic flusher)
    /// that ended after the last draw arrived and by the last answer: every draw of the burst
    /// was answered after the group commit that made it durable, one of these.
    pub syncs: usize,
}

impl HeldBurst {
    /// Every draw arrived before the first was answered: the office held them all.
    pub fn all_held(&self) -> bool {
        matches!((self.last_arrival, self.first_answer), (Some(a), Some(f)) if a < f)
    }

    /// The size the largest group commit had at least: the draws answered, spread over the
    /// syncs that could have made them durable (no answer goes out before its group's sync).
    pub fn largest_group_at_least(&self) -> usize {
        match self.syncs {
            0 => 0,
            n => self.drawn.div_ceil(n),
        }
    }
}

/// The pid of the process strace started (its only child).
fn tracee(strace: &Child) -> Option<u32> {
    let pid = strace.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Runs the binary under strace through the flow and reads the trace back.
pub fn record(bin: &Path, burst: &Burst) -> Result<Recording, String> {
    record_flow(bin, None, |port, flow| flow.run(port, burst))
}

/// Runs the binary under strace through the opening ([`Flow::opening_run`]) on a disk whose
/// syncs take `slow_sync` each, and reads the trace back.
pub fn record_opening(
    bin: &Path,
    opening: &Opening,
    slow_sync: Duration,
) -> Result<Recording, String> {
    record_flow(bin, Some(slow_sync), |port, flow| {
        flow.opening_run(port, opening)
    })
}

/// Runs the binary under strace (every fsync and fdatasync made to last `slow_sync` longer, if
/// given: a slow disk) through `run` and reads the trace back.
pub fn record_flow(
    bin: &Path,
    slow_sync: Option<Duration>,
    run: impl FnOnce(u16, &mut Flow) -> Result<(), String>,
) -> Result<Recording, String> {
    strace::available()?;
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().canonicalize().map_err(|e| e.to_string())?;
    let data = root.join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    let trace = root.join("trace");
    let log = root.join("server.log");
    let port = free_port();
    let mut cmd = strace::command(&trace, bin, slow_sync);
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
    // Thousands of draws at once on a traced node: the office queues them all, however long
    // they wait (its in-flight limit stays), and a connection whose request head the traced
    // workers read late is not answered 408.
    .env("PLATEPOOL_SHED_QUEUE_DELAY_MS", "0")
    .env("PLATEPOOL_CLIENT_REQUEST_TIMEOUT_MS", "120000")
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
        run(port, &mut flow).map(|()| flow)
    })();
    // The power goes: SIGKILL to the binary (strace then ends with it).
    let pid = tracee(&child);
    let threads = pid.map(thread_names).unwrap_or_default();
    if let Some(pid) = pid {
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
        threads,
        trace_bytes: text.len() as u64,
        took: started.elapsed(),
        _dir: dir,
    })
}

/// The trace line of each request's answer: the n-th last answer on a client port is the n-th
/// last request sent from it. (From the end: the readiness probes before the flow are answered
/// on ports that thousands of later connections may use again.)
fn match_answers(requests: &[Request], model: &Model) -> Vec<Option<usize>> {
    let mut by_port: HashMap<u16, Vec<usize>> = HashMap::new();
    for a in &model.acks {
        by_port.entry(a.client_port).or_default().push(a.line);
    }
    let mut out = vec![None; requests.len()];
    for (i, r) in requests.iter().enumerate().rev() {
        out[i] = by_port.get_mut(&r.client_port).and_then(Vec::pop);
    }
    out
}

/// The name of every thread of process `pid` (`/proc/<pid>/task/<tid>/comm`), by thread id.
fn thread_names(pid: u32) -> HashMap<u32, String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            Some((tid, name.trim().to_string()))
        })
        .collect()
}

/// Whether a thread is one of sled's own (its periodic `log flusher`, its `sled-io-*` pool):
/// their syncs answer no request.
fn sled_thread(name: &str) -> bool {
    name == "log flusher" || name.starts_with("sled-io")
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

    /// The draws sent at once, as the trace shows them: answered 201, the line the last one
    /// arrived at, the lines of the first and last answers, and the syncs of the folder that
    /// ended after the last one arrived and by the last answer.
    pub fn held_burst(&self) -> HeldBurst {
        let mut out = HeldBurst::default();
        for (at, r) in self.answered_at.iter().zip(&self.flow.requests) {
            let (Some(at), true) = (*at, r.concurrent) else {
                continue;
            };
            out.drawn += usize::from(r.status == 201);
            out.first_answer = Some(out.first_answer.map_or(at, |f: usize| f.min(at)));
            out.last_answer = Some(out.last_answer.map_or(at, |l: usize| l.max(at)));
            let arrived = self
                .model
                .acks
                .iter()
                .find(|a| a.line == at)
                .and_then(|a| a.request_line);
            if let Some(line) = arrived {
                out.last_arrival = Some(out.last_arrival.map_or(line, |l: usize| l.max(line)));
            }
        }
        if let (Some(from), Some(to)) = (out.last_arrival, out.last_answer) {
            out.syncs = self
                .model
                .syncs
                .iter()
                .filter(|(tid, path, end)| {
                    path.ends_with("/db")
                        && (from..=to).contains(end)
                        && !self.threads.get(tid).is_some_and(|n| sled_thread(n))
                })
                .count();
        }
        out
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

/// Where the binary is, for tests: `PLATEPOOL_BIN` or the build's own.
pub fn binary_for_tests() -> Result<PathBuf, String> {
    crate::storage::binary(true)
}
