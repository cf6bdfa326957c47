//! Persistence: the only module that knows sled.
//!
//! One sled database in the data folder; one tree per office (`office/<id>`) and one for what
//! spans offices (`registry`). Keys inside an office tree:
//!
//! | key | value |
//! |---|---|
//! | `c` | the office configuration |
//! | `r` + release id (u32 BE) | the release specification |
//! | `a` + application seq (u64 BE) | the application's durable state |
//! | `n` + class + `/` + code (u32 BE) | a number whose state differs from its release's |
//! | `l` + id (u64 BE) | an audit entry, ids ascending in commit order |
//!
//! **Durability.** sled 0.34's `flush()` ends in `sync_file_range`, which does not flush the
//! device's write cache. Every commit here therefore calls `flush()` and then `fdatasync` on the
//! database file ([`Durability::Fsync`], the default): when a commit returns, the records survive a
//! process crash and a power loss. [`Durability::Flush`] skips the fdatasync (survives a process
//! crash, not a power loss); [`Durability::None`] relies on sled's background flush (tests only).
//!
//! **Group commit.** Each office has a writer thread fed by a crossbeam channel. It takes every
//! commit waiting, writes them as one sled batch, flushes once, then answers them all.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::OfficeConfig;
pub use crate::kv::{Kv, KvSync};
use crate::plate::Serial;
use crate::record::{AppRecord, AuditEntry, NumberState, Record, ReleaseRecord};

/// Most commits one group commit takes; the rest wait for the next one.
pub const GROUP_COMMIT_MAX: usize = 4_096;
/// Capacity of a writer's queue: past it, callers wait (the actor's mailbox bounds it first).
pub const WRITER_QUEUE_CAPACITY: usize = 65_536;

const OFFICE_TREE_PREFIX: &str = "office/";
const REGISTRY_TREE: &str = "registry";

/// What "durable" means for a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// sled flush, then fdatasync of the database file: survives process crash and power loss.
    #[default]
    Fsync,
    /// sled flush only: survives a process crash.
    Flush,
    /// No flush per commit (sled flushes every 500 ms): for tests and benchmarks of the logic.
    None,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(String),
    #[error("storage: cannot sync the database file: {0}")]
    Sync(String),
    #[error("stored record {key} cannot be read: {message}")]
    Corrupt { key: String, message: String },
    #[error("storage writer stopped")]
    WriterStopped,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

/// The data folder.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    durability: Durability,
    sync_file: Arc<File>,
    /// The syncer every [`Kv`] of this store shares (group commit of their writes).
    kv_sync: Arc<KvSync>,
}

/// A file beside sled's that records the database's generation at the last open and the last
/// clean flush. sled recovers a damaged or truncated log by keeping what comes before the damage,
/// silently; a database whose generation is below this file's has lost acknowledged changes, and
/// opening it is refused instead of serving an older (or empty) state.
pub const GENERATION_FILE: &str = "platepool-generation";
const GENERATION_KEY: &[u8] = b"platepool/generation";

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Sled(format!("{}: {e}", dir.display())))?;
        let recorded = read_generation_file(dir)?;
        let had_database = dir.join("conf").exists() || dir.join("db").exists();
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        let file_path = dir.join("db");
        let sync_file = File::open(&file_path)
            .map_err(|e| StoreError::Sync(format!("{}: {e}", file_path.display())))?;
        let stored = generation_in(&db)?;
        let damaged = |message: String| StoreError::Corrupt {
            key: format!("{}/db", dir.display()),
            message: format!(
                "{message}: the database file was truncated or damaged; refusing to start with \
                 less than was acknowledged (restore the data folder from a backup, or move it \
                 away to start empty)"
            ),
        };
        match recorded {
            Some(recorded) if stored < recorded => {
                return Err(damaged(format!(
                    "the database is at generation {stored}, but it had reached {recorded}"
                )));
            }
            None if had_database && !db.was_recovered() => {
                return Err(damaged(
                    "sled found no database in a folder that had one".into(),
                ));
            }
            _ => {}
        }
        let store = Store {
            db,
            path: dir.to_path_buf(),
            durability,
            sync_file: Arc::new(sync_file),
            kv_sync: Arc::default(),
        };
        store.sync()?;
        store.record_generation()?;
        if let Ok(d) = File::open(dir) {
            // The folder entry of a newly created database file must be durable too.
            let _ = d.sync_all();
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Records the current generation beside the database (at open and at a clean flush).
    pub fn record_generation(&self) -> Result<(), StoreError> {
        let path = self.path.join(GENERATION_FILE);
        let tmp = self.path.join(format!("{GENERATION_FILE}.tmp"));
        let io = |e: std::io::Error| StoreError::Sync(format!("{}: {e}", path.display()));
        // Only what sled holds durably may be recorded.
        self.db.flush()?;
        let generation = generation_in(&self.db)?;
        std::fs::write(&tmp, generation.to_string()).map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(d) = File::open(&self.path) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Makes everything written so far durable, as [`Durability`] says. Each sync also stores
    /// the next generation, durable with it.
    pub fn sync(&self) -> Result<(), StoreError> {
        // Atomic in sled, so the stored generation only ever grows.
        self.db.update_and_fetch(GENERATION_KEY, |old| {
            let n = old
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        match self.durability {
            Durability::None => Ok(()),
            Durability::Flush => self.db.flush().map(|_| ()).map_err(Into::into),
            Durability::Fsync => {
                self.db.flush()?;
                self.sync_file
                    .sync_data()
                    .map_err(|e| StoreError::Sync(e.to_string()))
            }
        }
    }

    /// Ids of every office in the store.
    pub fn office_ids(&self) -> Vec<String> {
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|n| {
                std::str::from_utf8(&n)
                    .ok()
                    .and_then(|s| s.strip_prefix(OFFICE_TREE_PREFIX))
                    .map(str::to_string)
            })
            .collect()
    }

    pub fn office(&self, id: &str) -> Result<OfficeStore, StoreError> {
        let tree = self.db.open_tree(format!("{OFFICE_TREE_PREFIX}{id}"))?;
        Ok(OfficeStore {
            store: self.clone(),
            tree,
        })
    }

    /// The tree for what spans offices (certificates, blacklist) and for the gateway's own
    /// durable state (SMS codes and outbox, idempotency keys).
    pub fn kv(&self, name: &str) -> Result<Kv, StoreError> {
        let tree = if name == "registry" {
            self.db.open_tree(REGISTRY_TREE)?
        } else {
            self.db.open_tree(format!("kv/{name}"))?
        };
        Ok(Kv::new(self.clone(), Arc::clone(&self.kv_sync), tree))
    }

    /// A unique id, ascending across restarts.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        // sled's first id is 0; ids start at 1 so that "entries after 0" means every entry.
        Ok(self.db.generate_id()? + 1)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

fn generation_in(db: &sled::Db) -> Result<u64, StoreError> {
    match db.get(GENERATION_KEY)? {
        Some(v) => v
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                key: "platepool/generation".into(),
                message: "not a u64".into(),
            }),
        None => Ok(0),
    }
}

fn read_generation_file(dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join(GENERATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| StoreError::Corrupt {
                key: path.display().to_string(),
                message: format!("not a generation: {:?}", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Sled(format!("{}: {e}", path.display()))),
    }
}

/// Everything stored of one office, as read back at recovery.
#[derive(Debug, Default)]
pub struct OfficeSnapshot {
    pub config: Option<OfficeConfig>,
    pub releases: Vec<ReleaseRecord>,
    pub numbers: Vec<(String, Serial, NumberState)>,
    pub apps: Vec<AppRecord>,
}

/// One office's tree.
#[derive(Clone, Debug)]
pub struct OfficeStore {
    store: Store,
    tree: sled::Tree,
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain data (strings, numbers, enums): serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn number_key(class: &str, serial: Serial) -> Vec<u8> {
    let mut key = Vec::with_capacity(class.len() + 6);
    key.push(b'n');
    key.extend_from_slice(class.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&serial.code().to_be_bytes());
    key
}

impl OfficeStore {
    /// Reads back everything the office has acknowledged.
    pub fn load(&self) -> Result<OfficeSnapshot, StoreError> {
        let mut snap = OfficeSnapshot::default();
        if let Some(v) = self.tree.get(b"c")? {
            snap.config = Some(decode(b"c", &v)?);
        }
        for item in self.tree.scan_prefix(b"r") {
            let (k, v) = item?;
            snap.releases.push(decode(&k, &v)?);
        }
        for item in self.tree.scan_prefix(b"a") {
            let (k, v) = item?;
            snap.apps.push(decode(&k, &v)?);
        }
        for item in self.tree.scan_prefix(b"n") {
            let (k, v) = item?;
            let corrupt = || StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                message: "malformed number key".into(),
            };
            // The code is the last 4 bytes, which may themselves contain b'/': the separator is
            // found by position, not by searching for it.
            let slash = k
                .len()
                .checked_sub(5)
                .filter(|&at| at >= 1 && k[at] == b'/')
                .ok_or_else(corrupt)?;
            let class = std::str::from_utf8(&k[1..slash]).map_err(|_| corrupt())?;
            let code_bytes: [u8; 4] = k[slash + 1..].try_into().map_err(|_| corrupt())?;
            let code = u32::from_be_bytes(code_bytes);
            let state: (usize, NumberState) = decode(&k, &v)?;
            let len = state.0;
            if !(1..=crate::plate::SERIAL_LEN_MAX).contains(&len) {
                return Err(corrupt());
            }
            snap.numbers
                .push((class.to_string(), Serial::from_code(code, len), state.1));
        }
        Ok(snap)
    }

    /// Audit entries with ids above `after`, oldest first, at most `limit`.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        let mut start = vec![b'l'];
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for item in self.tree.range(start..vec![b'm']) {
            let (k, v) = item?;
            let id_bytes: [u8; 8] = k[1..].try_into().map_err(|_| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                message: "malformed audit key".into(),
            })?;
            out.push((u64::from_be_bytes(id_bytes), decode(&k, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Writes records as one atomic batch, without waiting for durability.
    fn write(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for r in records {
            match r {
                Record::Config(c) => batch.insert(b"c".to_vec(), encode(c)),
                Record::Release(rel) => {
                    let mut key = vec![b'r'];
                    key.extend_from_slice(&rel.id.to_be_bytes());
                    batch.insert(key, encode(rel));
                }
                Record::App(app) => {
                    let mut key = vec![b'a'];
                    key.extend_from_slice(&app.seq.to_be_bytes());
                    batch.insert(key, encode(app));
                }
                Record::Number {
                    class,
                    serial,
                    state,
                } => {
                    let key = number_key(class, *serial);
                    match state {
                        Some(s) => batch.insert(key, encode(&(serial.len(), s))),
                        None => batch.remove(key),
                    }
                }
                Record::Audit(entry) => {
                    let mut key = vec![b'l'];
                    key.extend_from_slice(&self.store.generate_id()?.to_be_bytes());
                    batch.insert(key, encode(entry));
                }
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Writes and makes durable at once (recovery, office creation).
    pub fn commit_now(&self, records: &[Record]) -> Result<(), StoreError> {
        self.write(records)?;
        self.store.sync()
    }

    /// Starts this office's writer thread.
    pub fn start_writer(&self, name: &str) -> Result<Writer, StoreError> {
        let (tx, rx) = crossbeam_channel::bounded::<Commit>(WRITER_QUEUE_CAPACITY);
        let this = self.clone();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        thread::Builder::new()
            .name(format!("pp-writer-{name}"))
            .spawn(move || this.writer_loop(rx, &thread_stats))
            .map_err(|e| StoreError::Sled(format!("cannot start writer thread: {e}")))?;
        Ok(Writer { tx, stats })
    }

    fn writer_loop(&self, rx: Receiver<Commit>, stats: &WriterStats) {
        let mut group: Vec<Commit> = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        let mut failure: Option<StoreError> = None;
        while let Ok(first) = rx.recv() {
            group.push(first);
            while group.len() < GROUP_COMMIT_MAX {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            records.clear();
            for c in &mut group {
                records.append(&mut c.records);
            }
            // Fail-stop: after one failed write or sync, nothing later is written or confirmed.
            // A later sync that succeeds does not make the failed group durable (the kernel may
            // have dropped its pages), and the later groups were built on it in memory.
            let result = match &failure {
                Some(e) => Err(e.clone()),
                None => self.write(&records).and_then(|()| self.store.sync()),
            };
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            if let Err(e) = &result {
                stats.failed.store(true, Ordering::Relaxed);
                failure.get_or_insert_with(|| e.clone());
            }
            for c in group.drain(..) {
                if let Some(done) = c.done {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

/// Records to make durable, and who to tell when they are.
#[derive(Debug)]
pub struct Commit {
    pub records: Vec<Record>,
    pub done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// Counters of a writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Group commits made (each one sled batch and one flush).
    pub commits: AtomicU64,
    pub records: AtomicU64,
    /// A write or sync failed: memory may be ahead of the disk.
    pub failed: AtomicBool,
}

/// The sending side of an office's writer thread.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: Sender<Commit>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Queues records; the receiver answers once they are durable (or could not be written).
    pub fn commit(&self, records: Vec<Record>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let commit = Commit {
            records,
            done: Some(done),
        };
        if let Err(e) = self.tx.send(commit) {
            if let Some(done) = e.into_inner().done {
                let _ = done.send(Err(StoreError::WriterStopped));
            }
        }
        rx
    }
}
