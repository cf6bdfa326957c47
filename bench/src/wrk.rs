//! A small driver around the [`wrk`](https://github.com/wg/wrk) HTTP load generator: one run of
//! a closed-loop load (T threads, C connections, a duration) against one or more requests, with
//! the requests per second, the latency percentiles and the error counts read back.
//!
//! Every request (method, path, headers, body) is written into a generated Lua script, formatted
//! once per wrk thread in `init` and sent round robin, so a run can spread its load over many
//! users (tokens) and resources without wrk formatting anything per request. The script's `done`
//! hook prints one JSON line with wrk's own figures (exact percentiles from its histogram, not
//! the rounded text table), which [`run`] parses.
//!
//! ```no_run
//! use std::time::Duration;
//! use platepool_bench::wrk::{self, Load, Request};
//!
//! let load = Load::new("http://127.0.0.1:8080", vec![Request::get("/healthz")])
//!     .threads(1)
//!     .connections(32)
//!     .duration(Duration::from_secs(10));
//! let result = wrk::run(&load)?;
//! println!("{:.0} req/s, p99 {:?}", result.requests_per_s, result.latency.p99);
//! # Ok::<(), wrk::WrkError>(())
//! ```
//!
//! wrk is closed-loop only (each connection sends its next request when the previous answer
//! arrives): it measures the maximum rate at a given concurrency, and latency *at that
//! concurrency*. It has no fixed-rate mode; fewer connections give a lower rate.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The `wrk` binary used when [`Load::binary`] is not set (Debian's package installs it on the
/// `PATH`).
pub const WRK_BINARY_DEFAULT: &str = "wrk";
/// The marker before the JSON line the generated script's `done` hook prints.
const RESULT_MARKER: &str = "PLATEPOOL_WRK_RESULT ";

/// One HTTP request to send. The path is relative to [`Load::base_url`] and includes any query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Request {
    /// A request with the given method and path, no headers, no body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// `POST path` with a JSON body (`Content-Type: application/json`).
    pub fn post_json(path: &str, body: &str) -> Request {
        Request::new("POST", path)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Sets the body (wrk adds `Content-Length`).
    pub fn body(mut self, body: &str) -> Request {
        self.body = Some(body.to_string());
        self
    }
}

/// What to run: the target, the requests (sent round robin by every wrk thread, each thread
/// starting at a different offset) and wrk's options.
#[derive(Debug, Clone)]
pub struct Load {
    /// `http://host:port`, without a trailing path.
    pub base_url: String,
    /// Sent in turn; at least one.
    pub requests: Vec<Request>,
    /// wrk's `-t`: event-loop threads of the load generator.
    pub threads: usize,
    /// wrk's `-c`: open connections in all (at least `threads`).
    pub connections: usize,
    /// wrk's `-d`, whole seconds (wrk rounds down; at least one).
    pub duration: Duration,
    /// wrk's `--timeout`: an answer slower than this counts as a timeout error.
    pub timeout: Duration,
    /// The wrk binary.
    pub binary: PathBuf,
    /// CPUs wrk may run on (`taskset -c`), when set.
    pub cpus: Option<String>,
    /// Pause of each connection between an answer and its next request (mean; wrk's `delay()`
    /// hook, whole milliseconds, randomly rounded so the mean holds). `None`: none, the maximum
    /// rate at this concurrency. With a pause, C connections offer about
    /// C / (pause + latency) requests per second: a paced closed loop, not a fixed rate.
    pub think: Option<Duration>,
}

impl Load {
    /// One thread, ten connections, ten seconds, two-second timeout.
    pub fn new(base_url: &str, requests: Vec<Request>) -> Load {
        Load {
            base_url: base_url.trim_end_matches('/').to_string(),
            requests,
            threads: 1,
            connections: 10,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            binary: PathBuf::from(WRK_BINARY_DEFAULT),
            cpus: None,
            think: None,
        }
    }

    pub fn threads(mut self, threads: usize) -> Load {
        self.threads = threads;
        self
    }

    pub fn connections(mut self, connections: usize) -> Load {
        self.connections = connections;
        self
    }

    pub fn duration(mut self, duration: Duration) -> Load {
        self.duration = duration;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Load {
        self.timeout = timeout;
        self
    }

    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Load {
        self.binary = binary.into();
        self
    }

    /// Pins wrk to these CPUs with `taskset -c <cpus>` (e.g. `"1"`).
    pub fn cpus(mut self, cpus: &str) -> Load {
        self.cpus = Some(cpus.to_string());
        self
    }

    /// Sets the pause between an answer and the connection's next request (see [`Load::think`]).
    pub fn think(mut self, think: Option<Duration>) -> Load {
        self.think = think;
        self
    }

    /// The command line [`run`] executes, with `<script>` for the generated Lua file (for
    /// reports).
    pub fn command_line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(cpus) = &self.cpus {
            parts.push(format!("taskset -c {cpus}"));
        }
        parts.push(self.binary.display().to_string());
        parts.extend(self.args("<script>".into()));
        if let Some(t) = self.think {
            parts.push(format!(
                "(script pauses {:.2} ms per connection between requests)",
                t.as_secs_f64() * 1e3
            ));
        }
        parts.join(" ")
    }

    fn args(&self, script: String) -> Vec<String> {
        let first = self
            .requests
            .first()
            .map_or("/", |r| r.path.as_str())
            .to_string();
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
            format!("--timeout={}s", self.timeout.as_secs().max(1)),
            "--latency".into(),
            "-s".into(),
            script,
            format!("{}{}", self.base_url, first),
        ]
    }
}

/// Latency percentiles of one run, from wrk's histogram (microsecond resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// Requests that did not get an answer wrk counts as good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Errors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Socket read errors (e.g. the server closed the connection).
    pub read: u64,
    /// Socket write errors.
    pub write: u64,
    /// Answers slower than [`Load::timeout`].
    pub timeout: u64,
    /// Answers with a status of 400 or more (wrk's "Non-2xx or 3xx responses"); they are
    /// counted in [`WrkResult::requests`] too.
    pub status: u64,
}

impl Errors {
    /// Socket-level errors (connect, read, write, timeout), not counting bad statuses.
    pub fn socket(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    /// Answers received (bad statuses included).
    pub requests: u64,
    /// How long wrk ran, as wrk measured it.
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub requests_per_s: f64,
    /// Answers with a status below 400, per second.
    pub good_per_s: f64,
    pub bytes: u64,
    pub latency: Latency,
    pub errors: Errors,
    /// The command that ran (the script as `<script>`).
    pub command: String,
}

/// Why a run produced no figures.
#[derive(Debug)]
pub enum WrkError {
    /// The load is unusable (no request, fewer connections than threads, …).
    Invalid(String),
    /// The wrk binary could not be started.
    Spawn(std::io::Error),
    /// The Lua script could not be written.
    Script(std::io::Error),
    /// wrk ran but did not print the result line (its stderr and exit status).
    Failed { status: String, stderr: String },
    /// The result line did not parse.
    Parse(String),
}

impl fmt::Display for WrkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrkError::Invalid(why) => write!(f, "invalid wrk load: {why}"),
            WrkError::Spawn(e) => write!(f, "cannot start wrk: {e}"),
            WrkError::Script(e) => write!(f, "cannot write the wrk script: {e}"),
            WrkError::Failed { status, stderr } => {
                write!(f, "wrk gave no result ({status}): {}", stderr.trim())
            }
            WrkError::Parse(why) => write!(f, "cannot read wrk's result: {why}"),
        }
    }
}

impl std::error::Error for WrkError {}

/// The version line of a wrk binary (`wrk 4.1.0 [epoll] …` or Debian's `wrk debian/4.1.0-3 …`).
pub fn version(binary: &str) -> Result<String, WrkError> {
    // wrk prints its version with the usage text and exits 1 when given no URL.
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(WrkError::Spawn)?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("wrk "))
        .map(|l| l.split(" Copyright").next().unwrap_or(l).trim().to_string())
        .ok_or_else(|| WrkError::Parse(format!("no version line in {text:?}")))
}

/// Runs wrk once (blocking for [`Load::duration`] plus start-up) and reads its figures.
pub fn run(load: &Load) -> Result<WrkResult, WrkError> {
    if load.requests.is_empty() {
        return Err(WrkError::Invalid("no request".into()));
    }
    if load.threads == 0 || load.connections < load.threads {
        return Err(WrkError::Invalid(format!(
            "{} connections for {} threads",
            load.connections, load.threads
        )));
    }
    let mut file = tempfile::Builder::new()
        .prefix("platepool-wrk-")
        .suffix(".lua")
        .tempfile()
        .map_err(WrkError::Script)?;
    file.write_all(script(&load.requests, load.think).as_bytes())
        .map_err(WrkError::Script)?;
    file.flush().map_err(WrkError::Script)?;
    let script_path = file.path().display().to_string();

    let mut command = match &load.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&load.binary);
            c
        }
        None => Command::new(&load.binary),
    };
    command.args(load.args(script_path));
    let out = command.output().map_err(WrkError::Spawn)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(RESULT_MARKER)) else {
        return Err(WrkError::Failed {
            status: out.status.to_string(),
            stderr: format!("{}{}", String::from_utf8_lossy(&out.stderr), stdout),
        });
    };
    parse_result(line, load.command_line())
}

fn parse_result(line: &str, command: String) -> Result<WrkResult, WrkError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| WrkError::Parse(format!("{e}: {line}")))?;
    let num = |key: &str| -> Result<u64, WrkError> {
        v.get(key)
            .and_then(serde_json::Value::as_f64)
            .map(|x| x.max(0.0) as u64)
            .ok_or_else(|| WrkError::Parse(format!("no {key} in {line}")))
    };
    let us = |key: &str| num(key).map(Duration::from_micros);
    let requests = num("requests")?;
    let elapsed = us("duration_us")?;
    let errors = Errors {
        connect: num("connect")?,
        read: num("read")?,
        write: num("write")?,
        timeout: num("timeout")?,
        status: num("status")?,
    };
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(WrkResult {
        requests,
        elapsed,
        requests_per_s: requests as f64 / secs,
        good_per_s: requests.saturating_sub(errors.status) as f64 / secs,
        bytes: num("bytes")?,
        latency: Latency {
            p50: us("p50")?,
            p90: us("p90")?,
            p99: us("p99")?,
            p999: us("p999")?,
            max: us("max")?,
            mean: us("mean")?,
        },
        errors,
        command,
    })
}

/// A Lua string literal for any bytes (LuaJIT and Lua 5.1 read `\ddd` as a decimal byte).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The Lua script: the requests as data, formatted once per thread, sent round robin; `done`
/// prints the figures as one JSON line.
fn script(requests: &[Request], think: Option<Duration>) -> String {
    let mut s = String::new();
    if let Some(t) = think {
        s.push_str(&format!(
            "local think_ms = {:.4}\nfunction delay()\n  local whole = math.floor(think_ms)\n  \
             if math.random() < think_ms - whole then return whole + 1 end\n  return whole\nend\n",
            t.as_secs_f64() * 1e3
        ));
    }
    s.push_str("local specs = {\n");
    for r in requests {
        s.push_str("  {");
        s.push_str(&lua_string(&r.method));
        s.push_str(", ");
        s.push_str(&lua_string(&r.path));
        s.push_str(", {");
        for (name, value) in &r.headers {
            s.push('[');
            s.push_str(&lua_string(name));
            s.push_str("] = ");
            s.push_str(&lua_string(value));
            s.push_str(", ");
        }
        s.push_str("}, ");
        match &r.body {
            Some(b) => s.push_str(&lua_string(b)),
            None => s.push_str("nil"),
        }
        s.push_str("},\n");
    }
    s.push_str("}\n");
    s.push_str(
        r#"
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local formatted = {}
local next_index = 1
function init(args)
  for i, spec in ipairs(specs) do
    formatted[i] = wrk.format(spec[1], spec[2], spec[3], spec[4])
  end
  -- Threads start at different offsets so they do not walk the list in step.
  next_index = ((id or 0) * 7919) % #formatted + 1
end

function request()
  local r = formatted[next_index]
  next_index = next_index + 1
  if next_index > #formatted then next_index = 1 end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PLATEPOOL_WRK_RESULT {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"timeout\":%d,\"status\":%d," ..
    "\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d,\"mean\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"#,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_escape_quotes_and_bytes() {
        assert_eq!(lua_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lua_string("粤"), "\"\\231\\178\\164\"");
        assert_eq!(lua_string("x\ny"), "\"x\\010y\"");
    }

    #[test]
    fn script_lists_every_request() {
        let s = script(
            &[
                Request::get("/a"),
                Request::post_json("/b", "{\"x\":1}").bearer("t"),
            ],
            Some(Duration::from_micros(2_500)),
        );
        assert!(s.contains("local think_ms = 2.5000"));
        assert!(s.contains(r#"{"GET", "/a", {}, nil},"#));
        assert!(s.contains(r#"["Authorization"] = "Bearer t""#));
        assert!(s.contains(r#""{\"x\":1}""#));
    }

    #[test]
    fn result_line_parses() {
        let line = r#"{"requests":1000,"duration_us":2000000,"bytes":5000,"connect":0,"read":1,"write":0,"timeout":2,"status":10,"p50":100,"p90":200,"p99":900,"p999":1500,"max":3000,"mean":120.5}"#;
        let r = parse_result(line, "wrk".into()).expect("parses");
        assert_eq!(r.requests, 1000);
        assert!((r.requests_per_s - 500.0).abs() < 1e-9);
        assert!((r.good_per_s - 495.0).abs() < 1e-9);
        assert_eq!(r.latency.p99, Duration::from_micros(900));
        assert_eq!(r.errors.socket(), 3);
        assert_eq!(r.errors.status, 10);
    }

    /// A keep-alive HTTP/1.1 server on one thread per connection: `POST` with a body of
    /// `Bearer ok` → 200, anything else → 404.
    fn tiny_server() -> std::net::SocketAddr {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().expect("clone");
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let post = line.starts_with("POST ");
                        let (mut length, mut authorised) = (0usize, false);
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end().to_ascii_lowercase();
                            if h.is_empty() {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            authorised |= h == "authorization: bearer ok";
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let status = if post && authorised && body == b"{\"a\":\"\xe7\xb2\xa4\"}" {
                            "200 OK"
                        } else {
                            "404 Not Found"
                        };
                        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn runs_wrk_against_a_server() {
        if version(WRK_BINARY_DEFAULT).is_err() {
            eprintln!("wrk is not installed; skipped");
            return;
        }
        let addr = tiny_server();
        let good = Request::post_json("/x", "{\"a\":\"粤\"}").bearer("ok");
        let bad = Request::get("/y");
        let load = Load::new(&format!("http://{addr}"), vec![good.clone(), good, bad])
            .threads(1)
            .connections(2)
            .duration(Duration::from_secs(1));
        let r = run(&load).expect("wrk runs");
        assert!(r.requests > 30, "{r:?}");
        assert_eq!(r.errors.socket(), 0, "{r:?}");
        // One request in three is refused.
        let refused = r.errors.status as f64 / r.requests as f64;
        assert!((0.25..0.42).contains(&refused), "{r:?}");
        assert!(r.latency.p50 <= r.latency.p99 && r.latency.p99 <= r.latency.max);
    }

    #[test]
    fn empty_load_is_refused() {
        let load = Load::new("http://127.0.0.1:1", Vec::new());
        assert!(matches!(run(&load), Err(WrkError::Invalid(_))));
    }
}
