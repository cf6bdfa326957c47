//! The real `platepool` binary on a free loopback port, for tests that put real programs
//! (promtool, nginx) beside it; and external programs the tests need, which must be there.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OP: &str = "process-test-operator-token";
pub const SECRET: &str = "process-test-citizen-secret";

/// How long a start (demo seed, debug build, busy CI machine) may take.
const READY_WITHIN: Duration = Duration::from_secs(120);

pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    listener.local_addr().expect("address").port()
}

/// The path of `program` (looked up in PATH, /usr/sbin and /sbin); panics when it is missing:
/// a test never passes because a tool is not installed.
pub fn require(program: &str, install: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is missing: run {install}"))
}

/// One HTTP/1.1 exchange on a fresh plain connection: (status, headers, body).
pub fn http(port: u16, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, head.to_string(), body.to_string()))
}

pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String, String)> {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// The binary, serving until dropped (then killed). Its stderr goes to `log`.
pub struct Platepool {
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl Drop for Platepool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Platepool {
    /// `platepool serve --demo` over `dir` with `args` and `env` added.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Platepool {
        let port = free_port();
        let log = dir.join("platepool.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_platepool"));
        cmd.args(["serve", "--demo", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--durability", "none", "--workers", "2"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.join("data"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PLATEPOOL_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("PLATEPOOL_OPERATOR_TOKEN", OP)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("start platepool");
        let server = Platepool { port, log, child };
        let started = Instant::now();
        loop {
            if let Ok((200, _, _)) = get(port, "/readyz") {
                return server;
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "platepool not ready: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, _, body) = get(self.port, "/metrics").expect("scrape /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }
}
