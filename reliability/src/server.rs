//! The real `platepool` binary as a child process for the campaigns that kill it or overload it:
//! started on a chosen loopback port over a data folder, with the campaigns' operator token and
//! citizen-token secret, loopback trusted as a proxy (so the loadtest's per-buyer
//! `X-Forwarded-For` is believed), and readiness measured from the spawn to `/readyz` 200.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::once;

pub const OPERATOR: &str = crate::fuzz::http::OPERATOR;
pub const SECRET: &str = crate::fuzz::http::SECRET;

/// How the binary is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub bin: PathBuf,
    pub data: PathBuf,
    /// HTTP worker threads.
    pub workers: usize,
    /// `PLATEPOOL_RATE_LIMIT_USER_PER_S` / `_IP_PER_S` (None: the gateway's defaults).
    pub user_limit: Option<u32>,
    pub ip_limit: Option<u32>,
    /// How long it may take to become ready.
    pub ready_timeout: Duration,
    /// More `PLATEPOOL_*` settings for the binary's environment.
    pub env: Vec<(String, String)>,
    /// A program and its arguments that run the binary (`strace … --`): the server is then
    /// that program's child, and [`Server::kill9`] kills it first.
    pub wrapper: Vec<String>,
}

impl Options {
    pub fn new(bin: PathBuf, data: PathBuf) -> Options {
        Options {
            bin,
            data,
            workers: 2,
            user_limit: None,
            ip_limit: None,
            ready_timeout: Duration::from_secs(60),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }
}

/// A running server; SIGKILLed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// Started by a wrapper ([`Options::wrapper`]): the binary is the child's child.
    wrapped: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_wrapped();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_081)
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let s = s.trim();
    let start = s.len().saturating_sub(600);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

impl Server {
    /// Spawns the binary on `port` and waits for `/readyz`; returns it and the time from the
    /// spawn to ready. `Err` with the tail of its stderr if it exits or is not ready in time.
    pub fn start(opts: &Options, port: u16) -> Result<(Server, Duration), String> {
        let log = opts.data.with_extension(format!("{port}.log"));
        let err = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let mut cmd = match opts.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&opts.bin);
                cmd
            }
            None => Command::new(&opts.bin),
        };
        cmd.args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--workers",
            &opts.workers.to_string(),
        ])
        .arg("--data-dir")
        .arg(&opts.data)
        .env("PLATEPOOL_OPERATOR_TOKEN", OPERATOR)
        .env("PLATEPOOL_TOKEN_SECRET", SECRET)
        .env("PLATEPOOL_TRUSTED_PROXIES", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.user_limit {
            cmd.env("PLATEPOOL_RATE_LIMIT_USER_PER_S", n.to_string());
        }
        if let Some(n) = opts.ip_limit {
            cmd.env("PLATEPOOL_RATE_LIMIT_IP_PER_S", n.to_string());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", opts.bin.display()))?;
        let mut server = Server {
            child,
            port,
            log,
            wrapped: !opts.wrapper.is_empty(),
        };
        while started.elapsed() < opts.ready_timeout {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("exited with {status}: {}", tail(&server.log)));
            }
            if once(port, "GET", "/readyz", &[], None).is_ok_and(|a| a.status == 200) {
                return Ok((server, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "not ready after {:?}: {}",
            opts.ready_timeout,
            tail(&server.log)
        ))
    }

    /// SIGKILLs the binary a wrapper started (its wrapper's only child).
    fn kill_wrapped(&self) {
        if !self.wrapped {
            return;
        }
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill9(mut self) -> Result<(), String> {
        self.kill_wrapped();
        self.child.kill().map_err(|e| format!("kill: {e}"))?;
        self.child.wait().map_err(|e| format!("wait: {e}"))?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (crashed) on its own?
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}: {}", tail(&self.log))),
            _ => None,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Resident set size of a process, bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A GET with the operator token on a fresh connection; the body as JSON.
pub fn operator_get(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let a = once(
        port,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {OPERATOR}"))],
        None,
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    if a.status != 200 {
        return Err(format!("GET {path}: {} {}", a.status, a.text()));
    }
    Ok(a.json())
}

/// Percentile (0..=1) of durations, by nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1_000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn rss_of_this_process_is_read() {
        let rss = rss_bytes(std::process::id()).expect("own /proc status");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(rss_bytes(u32::MAX).is_none());
    }
}
