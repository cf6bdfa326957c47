//! `platepool backup` and `platepool verify` (SPEC D1), and the serving node's backup socket.
//!
//! A serving node holds sled's lock on its folder, so another process cannot read it. `serve`
//! therefore listens on a Unix socket inside the data folder ([`SOCKET_FILE`], mode 0600: whoever
//! may use it may read the folder anyway; a folder too deep for a socket path gets one in a
//! private folder of the user's, `admin_socket.rs`); `platepool backup --data-dir D --to DIR` asks the
//! node serving D, through it, to copy its database into DIR (`platepool_engine::backup`: writes
//! wait while every tree is read into memory and synced, then the copy is written beside them).
//! When no node answers there, the command opens D itself and copies it the same way.
//! `platepool verify` checks a folder no node serves (`platepool_engine::verify`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use platepool_engine::backup::{backup, BackupReport};
use platepool_engine::store::Store;
use platepool_engine::verify::{verify_with, VerifyReport};
use platepool_engine::{Durability, PlateClass};
use serde::{Deserialize, Serialize};

use crate::admin_socket::socket_path;
pub use crate::admin_socket::SOCKET_FILE;
/// Longest request line read from the socket.
const REQUEST_MAX: u64 = 8 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    backup_to: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer {
    Done { report: BackupReport },
    Failed { error: String },
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The data folder to back up (served by a node or not).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The new folder to create with the copy (must not exist; its parent must).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The data folder to check (no node may be serving it: verify a backup of a serving node).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The listening socket; dropping it stops backups through it and removes its file.
#[derive(Debug)]
pub struct BackupSocket {
    path: PathBuf,
    store: Arc<Mutex<Option<Store>>>,
}

impl Drop for BackupSocket {
    fn drop(&mut self) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens for backup requests on the data folder's socket, answered one at a time on a thread
/// of their own (never on an HTTP worker).
pub fn listen(store: Store) -> Result<BackupSocket, String> {
    let path = socket_path(store.path())?;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    // A file left by a killed node: this process holds sled's lock, so no other node serves here.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let shared = Arc::new(Mutex::new(Some(store)));
    let served = shared.clone();
    std::thread::Builder::new()
        .name("pp-backup-socket".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = served
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let Some(store) = store else { return };
                answer(&store, stream);
            }
        })
        .map_err(|e| format!("cannot start the backup socket's thread: {e}"))?;
    Ok(BackupSocket {
        path,
        store: shared,
    })
}

fn answer(store: &Store, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(REQUEST_MAX)).read_line(&mut line);
    let answer = match read.map_err(|e| e.to_string()).and_then(|_| {
        serde_json::from_str::<Request>(&line).map_err(|e| format!("bad request: {e}"))
    }) {
        Err(error) => Answer::Failed { error },
        Ok(req) if !req.backup_to.is_absolute() => Answer::Failed {
            error: format!("{} is not an absolute path", req.backup_to.display()),
        },
        Ok(req) => match backup(store, &req.backup_to) {
            Ok(report) => {
                tracing::info!(
                    to = %report.to.display(),
                    records = report.records,
                    pause_us = report.pause_us,
                    total_ms = report.total_ms,
                    "backup made"
                );
                Answer::Done { report }
            }
            Err(e) => {
                tracing::warn!(to = %req.backup_to.display(), error = %e, "backup failed");
                Answer::Failed {
                    error: e.to_string(),
                }
            }
        },
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_default();
    text.push('\n');
    let _ = (&stream).write_all(text.as_bytes());
}

/// Backs up `data_dir` into `to`: through the node serving it, or directly when none does.
pub fn backup_folder(data_dir: &Path, to: &Path) -> Result<BackupReport, String> {
    let to = std::path::absolute(to).map_err(|e| format!("{}: {e}", to.display()))?;
    if !data_dir.is_dir() {
        return Err(format!("no data folder at {}", data_dir.display()));
    }
    let socket = socket_path(data_dir)?;
    match UnixStream::connect(&socket) {
        Ok(stream) => ask_node(stream, &to),
        Err(_) => {
            let store = Store::open(data_dir, Durability::Fsync).map_err(|e| {
                format!(
                    "no node answers on {} and the folder cannot be opened: {e}",
                    socket.display()
                )
            })?;
            backup(&store, &to).map_err(|e| e.to_string())
        }
    }
}

fn ask_node(stream: UnixStream, to: &Path) -> Result<BackupReport, String> {
    let mut request = serde_json::to_string(&Request {
        backup_to: to.to_path_buf(),
    })
    .map_err(|e| e.to_string())?;
    request.push('\n');
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("the node's backup socket: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("the node's backup socket: {e}"))?;
    match serde_json::from_str::<Answer>(&line) {
        Ok(Answer::Done { report }) => Ok(report),
        Ok(Answer::Failed { error }) => Err(format!("the node refused the backup: {error}")),
        Err(_) if line.is_empty() => Err("the node closed its backup socket unanswered".into()),
        Err(e) => Err(format!("the node's answer cannot be read: {e}")),
    }
}

/// Checks `data_dir`, refusing a folder a node serves (its state moves while it is read).
pub fn verify_folder(data_dir: &Path) -> Result<VerifyReport, String> {
    if !data_dir.is_dir() {
        return Err(format!("no data folder at {}", data_dir.display()));
    }
    let socket = socket_path(data_dir)?;
    if UnixStream::connect(&socket).is_ok() {
        return Err(format!(
            "a node is serving {dir}: verify a backup of it instead \
             (platepool backup --data-dir {dir} --to NEW_DIR, then platepool verify --data-dir NEW_DIR)",
            dir = data_dir.display()
        ));
    }
    Ok(verify_with(
        data_dir,
        &PlateClass::builtin(),
        crate::verify_records::check_gateway_trees,
    ))
}

/// `platepool backup`: prints the report; exit 1 when no backup was made.
pub fn run_backup(args: &BackupArgs) -> ExitCode {
    match backup_folder(&args.data_dir, &args.to) {
        Ok(report) if args.json => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!(
                "backed up {} into {}: {} records in {} trees ({} bytes), source generation {}; \
                 writes paused {:.1} ms, {} ms in all",
                args.data_dir.display(),
                r.to.display(),
                r.records,
                r.trees,
                r.bytes,
                r.source_generation,
                r.pause_us as f64 / 1000.0,
                r.total_ms
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("platepool backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `platepool verify`: prints what was checked and every problem; exit 1 when any (or when the
/// folder cannot be checked).
pub fn run_verify(args: &VerifyArgs) -> ExitCode {
    let report = match verify_folder(&args.data_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("platepool verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "{}: generation {}; {} offices, {} applications, {} numbers claimed or issued, {} \
             audit entries",
            args.data_dir.display(),
            report.generation,
            report.offices,
            report.applications,
            report.numbers_taken,
            report.audit_entries
        );
        for p in &report.problems {
            println!("PROBLEM {p}");
        }
        if report.is_sound() {
            println!("sound: every record decodes; I1, I3 and I9 hold");
        } else {
            println!("NOT SOUND: {} problems", report.problems.len());
        }
    }
    if report.is_sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
