//! Facts about the machine a run happened on, and the process's resident memory.

use std::fs;

/// Page size assumed when converting `/proc/self/statm` pages to bytes (x86-64 and aarch64 Linux
/// default).
pub const PAGE_SIZE: u64 = 4_096;

/// What the report states about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_total: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let memory_total = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            memory_total,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Resident set size of this process in bytes (`/proc/self/statm`, second field × page size).
pub fn rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * PAGE_SIZE)
}

/// CPU time of every thread of this process so far: (thread id, name, nanoseconds on CPU), from
/// `/proc/self/task/*/schedstat` (falling back to `stat` utime + stime).
pub fn thread_cpu() -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = task.path();
        let name = fs::read_to_string(dir.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let from_schedstat = fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            });
        let ns = from_schedstat.unwrap_or_else(|| {
            fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1.to_string();
                    let f: Vec<&str> = after.split_whitespace().collect();
                    // Fields 14 and 15 of stat are the 12th and 13th after the name.
                    let utime: u64 = f.get(11)?.parse().ok()?;
                    let stime: u64 = f.get(12)?.parse().ok()?;
                    Some((utime + stime) * 10_000_000)
                })
                .unwrap_or(0)
        });
        out.push((tid, name, ns));
    }
    out
}

/// The role of a thread, from its name: the office actors' arbiters, the writers, sled's IO
/// pool, the main thread (the actix system running the load and the registry), the rest.
pub fn thread_role(tid: u32, name: &str) -> &'static str {
    if tid == std::process::id() {
        "main (load + system)"
    } else if name.starts_with("actix-rt") {
        "office actor"
    } else if name.starts_with("pp-writer") {
        "writer"
    } else if name.starts_with("sled") || name.contains("flusher") {
        "sled io"
    } else {
        "other"
    }
}

/// CPU nanoseconds per role spent between two [`thread_cpu`] snapshots.
pub fn cpu_by_role(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
) -> Vec<(&'static str, u64)> {
    let mut roles: Vec<(&'static str, u64)> = Vec::new();
    for (tid, name, ns) in after {
        let was = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(0, |(_, _, n)| *n);
        let role = thread_role(*tid, name);
        let delta = ns.saturating_sub(was);
        match roles.iter_mut().find(|(r, _)| *r == role) {
            Some((_, total)) => *total += delta,
            None => roles.push((role, delta)),
        }
    }
    roles.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
    roles
}

/// CPU time of the calling thread so far, in nanoseconds (`/proc/thread-self/schedstat`): work
/// measured in it does not count time other processes took the CPU away.
pub fn thread_self_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The sum of two adjacent clock-tick fields of `/proc/<who>/stat` as a duration; `first` counts
/// fields after the command name (11: utime + stime, 13: cutime + cstime). Zero when unreadable.
fn stat_cpu(who: &str, first: usize) -> std::time::Duration {
    let ticks = fs::read_to_string(format!("/proc/{who}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = after.split_whitespace().collect();
            let a: u64 = f.get(first)?.parse().ok()?;
            let b: u64 = f.get(first + 1)?.parse().ok()?;
            Some(a + b)
        })
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    std::time::Duration::from_millis(ticks * 10)
}

/// CPU time (user + system) a process has used so far.
pub fn process_cpu(pid: u32) -> std::time::Duration {
    stat_cpu(&pid.to_string(), 11)
}

/// CPU time (user + system) of this process's children that have ended and been waited for
/// (cutime + cstime): the load generator's own cost after a `wrk` run.
pub fn waited_children_cpu() -> std::time::Duration {
    stat_cpu("self", 13)
}
