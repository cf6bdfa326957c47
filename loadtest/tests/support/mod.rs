//! Real processes for the multi-process tests: a `platepool` node over a temporary folder (as the
//! reliability campaigns start it: loopback trusted as a proxy, a known operator token and
//! citizen-token secret), and `platepool-loadtest` processes whose stderr is collected as it
//! comes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const OPERATOR: &str = "op-distributed-test-0123456789abcdef";
pub const SECRET: &str = "secret-distributed-test-0123456789abcdef";

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn newest(dir: &Path, acc: &mut Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            newest(&p, acc);
        } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
            *acc = Some(acc.map_or(t, |a| a.max(t)));
        }
    }
}

/// `PLATEPOOL_BIN`, or this build's `platepool`, rebuilt through cargo when missing or older
/// than the engine's and the gateway's sources.
pub fn platepool_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PLATEPOOL_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("folder");
    let profile = if deps.ends_with("deps") {
        deps.parent().expect("profile folder")
    } else {
        deps
    };
    let bin = profile.join("platepool");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let mut sources = None;
    for dir in [
        "engine/src",
        "gateway/src",
        "engine/Cargo.toml",
        "gateway/Cargo.toml",
    ] {
        newest(&root.join(dir), &mut sources);
    }
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_none() || built < sources {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "platepool-gateway",
                "--bin",
                "platepool",
            ])
            .current_dir(root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build of platepool failed");
    }
    assert!(bin.exists(), "no platepool binary at {}", bin.display());
    bin
}

/// One GET on a fresh connection: the status, or `None` when nothing answered.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    BufReader::new(s).read_line(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A `platepool serve` process; killed when dropped.
pub struct Node {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
        let data = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(data.path().join("node.log")).expect("log");
        let child = Command::new(platepool_bin())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--workers", "2", "--durability", "flush", "--data-dir"])
            .arg(data.path().join("data"))
            .env("PLATEPOOL_OPERATOR_TOKEN", OPERATOR)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
            .env("PLATEPOOL_TRUSTED_PROXIES", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("platepool starts");
        let mut node = Node {
            child,
            port,
            _data: data,
        };
        let started = Instant::now();
        while get_status(port, "/readyz") != Some(200) {
            if let Ok(Some(status)) = node.child.try_wait() {
                let mut log = String::new();
                let path = node._data.path().join("node.log");
                let _ = std::fs::File::open(path).map(|mut f| f.read_to_string(&mut log));
                panic!("platepool exited with {status}: {log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "platepool not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `platepool-loadtest` process; its stderr lines are collected as they come, its stdout
/// goes to a file. Killed when dropped.
pub struct Loadtest {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stdout: PathBuf,
}

impl Loadtest {
    pub fn spawn(name: &str, args: &[String], dir: &Path, secret: bool) -> Loadtest {
        let stdout = dir.join(format!("{name}.out"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_platepool-loadtest"));
        cmd.args(args)
            .env("PLATEPOOL_OPERATOR_TOKEN", OPERATOR)
            .env_remove("PLATEPOOL_TOKEN_SECRET")
            .stdout(Stdio::from(
                std::fs::File::create(&stdout).expect("stdout file"),
            ))
            .stderr(Stdio::piped());
        if secret {
            cmd.env("PLATEPOOL_TOKEN_SECRET", SECRET);
        }
        let mut child = cmd.spawn().expect("platepool-loadtest starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Loadtest {
            name: name.into(),
            child,
            lines,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_line(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                started.elapsed() < limit,
                "{}: no line with {needle:?} in {limit:?}:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; panics (with the output) after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the stderr reader take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "{} still running after {limit:?}:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -SIGNAL` (STOP, CONT, KILL).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }
}

impl Drop for Loadtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
