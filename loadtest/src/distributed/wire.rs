//! The coordination link: one TCP connection per worker carrying newline-delimited JSON
//! messages. Each side reads on a thread of its own (which forwards to a channel, stamps the
//! arrival instant, and may answer at once — the coordinator's `pong`), sends a heartbeat every
//! second, and takes a peer that is silent for the peer timeout, or whose connection closes, as
//! gone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::part::{Part, Split};
use crate::scenario::Scenario;

/// Changes when a message changes meaning.
pub const PROTOCOL: u32 = 1;
/// A heartbeat goes out this often when nothing else does.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The longest message (a 20,000-buyer part is a few MB).
const MAX_LINE: u64 = 1 << 30;

/// A worker introducing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// `platepool-loadtest <version>`: both ends must run the same one.
    pub tool: String,
    pub host: String,
    pub cores: usize,
}

/// The live counters, for the coordinator's progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCounts {
    pub arrived: u64,
    pub finished: u64,
    pub requests: u64,
    pub errors: u64,
    pub claims: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToCoordinator {
    Hello(Hello),
    /// A clock round trip (see [`super::clock`]).
    Ping {
        seq: u32,
    },
    /// Set up, clock measured: ready for the start.
    Ready {
        rtt_us: u64,
    },
    Progress(LiveCounts),
    Done(Box<Part>),
    /// The worker cannot go on.
    Failed {
        error: String,
    },
    Heartbeat,
}

/// What a worker needs to run its share: the scenario, the office, its buyers' tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub split: Split,
    pub scenario: Scenario,
    /// The gateway as the coordinator reaches it (a worker may be told another address).
    pub target: String,
    pub tag: u32,
    pub office: String,
    pub notice_version: String,
    /// Citizen token of buyer `i` (empty for other workers' buyers).
    pub tokens: Vec<String>,
    /// Keep-alive connections of this worker.
    pub connections: usize,
    /// Closed model: buyers in flight in this worker.
    pub concurrency: usize,
}

/// The shared instants, on the coordinator's clock, and the release for the worker's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub load_start_us: u64,
    pub opening_us: u64,
    pub release_id: String,
    pub release_total: u64,
    pub opens_at: String,
    pub started_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    Pong {
        seq: u32,
        coordinator_us: u64,
    },
    Setup(Box<Setup>),
    Start(Start),
    /// The part arrived: the worker may go.
    Collected,
    /// The run failed elsewhere.
    Abort {
        reason: String,
    },
    Heartbeat,
}

/// What a reader thread forwards.
#[derive(Debug)]
pub enum Incoming<M> {
    /// A message and the instant its line was read.
    Message(M, Instant),
    /// The link is gone: closed, silent for too long, or unreadable.
    Gone(String),
}

/// The sending half of a link, shared by the heartbeat thread and its owner.
#[derive(Debug)]
pub struct Link<Out> {
    stream: Arc<Mutex<TcpStream>>,
    pub peer: String,
    _out: std::marker::PhantomData<fn(Out)>,
}

impl<Out> Clone for Link<Out> {
    fn clone(&self) -> Self {
        Link {
            stream: self.stream.clone(),
            peer: self.peer.clone(),
            _out: std::marker::PhantomData,
        }
    }
}

impl<Out: Serialize> Link<Out> {
    /// Writes go out within `timeout` or fail.
    pub fn new(stream: &TcpStream, timeout: Duration) -> Result<Link<Out>, String> {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let writer = stream.try_clone().map_err(|e| format!("{peer}: {e}"))?;
        writer
            .set_write_timeout(Some(timeout))
            .map_err(|e| format!("{peer}: {e}"))?;
        let _ = writer.set_nodelay(true);
        Ok(Link {
            stream: Arc::new(Mutex::new(writer)),
            peer,
            _out: std::marker::PhantomData,
        })
    }

    pub fn send(&self, msg: &Out) -> Result<(), String> {
        let mut line = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut s = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.write_all(&line)
            .and_then(|()| s.flush())
            .map_err(|e| format!("sending to {}: {e}", self.peer))
    }

    /// Closes both directions (the peer's reader sees the end at once).
    pub fn close(&self) {
        let s = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads one message; `Err` says why there is none.
pub fn read_message<M: DeserializeOwned>(
    reader: &mut BufReader<TcpStream>,
    timeout: Duration,
) -> Result<M, String> {
    let mut line = String::new();
    match reader.by_ref().take(MAX_LINE).read_line(&mut line) {
        Ok(0) => Err("the connection was closed".into()),
        Ok(_) if !line.ends_with('\n') => Err(format!(
            "the connection ended inside a message ({} bytes)",
            line.len()
        )),
        Ok(_) => serde_json::from_str(&line).map_err(|e| {
            let start: String = line.chars().take(120).collect();
            format!("unreadable message ({e}): {start}")
        }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("silent for {} s", timeout.as_secs_f64()))
        }
        Err(e) => Err(format!("the connection failed: {e}")),
    }
}

/// A thread reading `reader` until the link is gone: a message `answer` replies to is answered
/// on `link` at once; every other message but heartbeats goes to `tx`, tagged `id`.
pub fn spawn_reader<In, Out>(
    mut reader: BufReader<TcpStream>,
    timeout: Duration,
    id: usize,
    tx: Sender<(usize, Incoming<In>)>,
    link: Link<Out>,
    answer: impl Fn(&In) -> Option<Out> + Send + 'static,
    is_heartbeat: impl Fn(&In) -> bool + Send + 'static,
) -> Result<(), String>
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    reader
        .get_ref()
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("{}: {e}", link.peer))?;
    std::thread::Builder::new()
        .name(format!("link-{id}"))
        .spawn(move || loop {
            match read_message::<In>(&mut reader, timeout) {
                Ok(msg) => {
                    let at = Instant::now();
                    if let Some(reply) = answer(&msg) {
                        if let Err(e) = link.send(&reply) {
                            let _ = tx.send((id, Incoming::Gone(e)));
                            return;
                        }
                        continue;
                    }
                    if !is_heartbeat(&msg) && tx.send((id, Incoming::Message(msg, at))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send((id, Incoming::Gone(e)));
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("reader thread: {e}"))
}

/// Sends `beat` on every link each [`HEARTBEAT`] until `stop` is set or the value is dropped.
#[derive(Debug)]
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    pub fn start<Out: Serialize + Send + Sync + 'static>(
        links: Vec<Link<Out>>,
        beat: Out,
    ) -> Result<Heartbeat, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    for l in &links {
                        // A failed send shows on the reader's side as the link gone.
                        let _ = l.send(&beat);
                    }
                    std::thread::sleep(HEARTBEAT);
                }
            })
            .map_err(|e| format!("heartbeat thread: {e}"))?;
        Ok(Heartbeat { stop })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// This machine's name, to count each machine's cores once.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub fn tool() -> String {
    format!("platepool-loadtest {}", env!("CARGO_PKG_VERSION"))
}
