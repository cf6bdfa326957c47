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
//! | `q` + application seq (u64 BE) | its selection fields, newer than `a` when present |
//! | `n` + class + `/` + code (u32 BE) | a number whose state differs from its release's |
//! | `l` + id (u64 BE) | the audit entries of one group commit, ids `id`, `id + 1`, … |
//!
//! Most records are JSON. The two written on every draw and check are binary (postcard behind a
//! format byte) and as few as possible: a draw writes its application's selection fields (`q`,
//! about 30 bytes) instead of the whole application, and a group commit writes all its audit
//! entries as one value under one key instead of one key each. Per draw that is one small sled
//! insert plus a share of one; writing a whole application costs a sled insert of ~360 bytes
//! (and removes its `q`). An audit id is the group's key (a fresh id from sled shifted left by
//! [`AUDIT_ID_SHIFT`] bits) plus the entry's place in the group. (Databases written before
//! the audit groups keep their one-entry JSON values under `l`; they are read as before.)
//!
//! **Durability.** sled 0.34's `flush()` ends in `sync_file_range`, which does not flush the
//! device's write cache. Every commit here therefore calls `flush()` and then `fdatasync` on the
//! database file ([`Durability::Fsync`], the default): when a commit returns, the records survive a
//! process crash and a power loss. [`Durability::Flush`] skips the fdatasync (survives a process
//! crash, not a power loss); [`Durability::None`] relies on sled's background flush (tests only).
//!
//! **Group commit.** Each office has a [`Writer`] on one of the store's writer threads (one per
//! core, shared by every office; see [`crate::writer`]). A thread takes every commit waiting,
//! writes each office's as one sled batch, flushes once, then answers them all.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::OfficeConfig;
use crate::kv::{decode, encode};
pub use crate::kv::{Kv, KvSync};
use crate::plate::Serial;
use crate::record::{
    AppProgress, AppProgressV1, AppRecord, AuditEntry, NumberState, Record, ReleaseRecord,
};

/// An audit group's key is a fresh id shifted left by this many bits; its entries follow it.
pub const AUDIT_ID_SHIFT: u32 = 16;
/// Most audit entries under one key (a larger group takes more keys).
const AUDIT_GROUP_MAX: usize = 1 << AUDIT_ID_SHIFT;
/// First byte of a binary value (JSON values start with `{`, `[` or `"`).
const BINARY_V1: u8 = 0xB1;

use crate::writer::WriterThreads;
pub use crate::writer::{Writer, WriterStats, GROUP_COMMIT_MAX, WRITER_QUEUE_CAPACITY};

const OFFICE_TREE_PREFIX: &str = "office/";
pub(crate) const REGISTRY_TREE: &str = "registry";

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
    /// Every write to sled holds it shared while it applies; a backup holds it alone while it
    /// reads, so the copy falls between two writes (`backup.rs`).
    write_gate: Arc<RwLock<()>>,
    /// Per office: the key of its last audit group known durable ([`OfficeStore::audit`]).
    audit_marks: Arc<std::sync::Mutex<HashMap<String, Arc<AtomicU64>>>>,
    /// The writer threads every office's group commits go to.
    writers: Arc<WriterThreads>,
    /// Tests hold a sync and fail it here (a flush failure on demand).
    #[cfg(test)]
    pub(crate) sync_gate: Arc<SyncGate>,
}

/// A sync failure on demand, for tests: once armed, the next [`Store::sync`] waits until the
/// test releases it, then fails as a full or broken disk would.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[cfg(test)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum GateState {
    #[default]
    Open,
    Armed,
    Holding,
    Released,
}

#[cfg(test)]
impl SyncGate {
    pub(crate) fn arm(&self) {
        *self.state.lock().expect("gate") = GateState::Armed;
    }

    /// Blocks until a sync waits at the gate.
    pub(crate) fn wait_held(&self) {
        let mut st = self.state.lock().expect("gate");
        while *st != GateState::Holding {
            st = self.changed.wait(st).expect("gate");
        }
    }

    /// Lets the held sync go on, failing.
    pub(crate) fn release_failing(&self) {
        *self.state.lock().expect("gate") = GateState::Released;
        self.changed.notify_all();
    }

    fn pass(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock().expect("gate");
        match *st {
            GateState::Open => Ok(()),
            GateState::Released => Err(StoreError::Sync("injected: EIO".into())),
            GateState::Armed | GateState::Holding => {
                *st = GateState::Holding;
                self.changed.notify_all();
                while *st == GateState::Holding {
                    st = self.changed.wait(st).expect("gate");
                }
                Err(StoreError::Sync("injected: EIO".into()))
            }
        }
    }
}

/// A file beside sled's that records the database's generation at the last open and the last
/// clean flush. sled recovers a damaged or truncated log by keeping what comes before the damage,
/// silently; a database whose generation is below this file's has lost acknowledged changes, and
/// opening it is refused instead of serving an older (or empty) state.
pub const GENERATION_FILE: &str = "platepool-generation";
pub(crate) const GENERATION_KEY: &[u8] = b"platepool/generation";

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        let created = !dir.exists();
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
            write_gate: Arc::default(),
            audit_marks: Arc::default(),
            writers: Arc::default(),
            #[cfg(test)]
            sync_gate: Arc::default(),
        };
        store.sync()?;
        store.record_generation()?;
        sync_folder(dir, created)?;
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
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Makes everything written so far durable, as [`Durability`] says. Each sync also stores
    /// the next generation, durable with it.
    pub fn sync(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        self.sync_gate.pass()?;
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

    /// The writer threads of the offices ([`crate::writer`]).
    #[cfg(test)]
    pub(crate) fn writer_threads(&self) -> &WriterThreads {
        &self.writers
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
        let audit_durable = self.audit_mark(id, &tree)?;
        Ok(OfficeStore {
            store: self.clone(),
            tree,
            audit_durable,
        })
    }

    /// The office's durable audit mark, shared by every [`OfficeStore`] of it. The first one
    /// is made when the office is loaded or created, before its writer runs: every audit group
    /// then in the tree is durable ([`Store::open`] synced it).
    fn audit_mark(&self, id: &str, tree: &sled::Tree) -> Result<Arc<AtomicU64>, StoreError> {
        let mut marks = self
            .audit_marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mark) = marks.get(id) {
            return Ok(Arc::clone(mark));
        }
        let last = match tree.scan_prefix(b"l").next_back() {
            Some(item) => audit_key_id(&item?.0)?,
            None => 0,
        };
        let mark = Arc::new(AtomicU64::new(last));
        marks.insert(id.to_string(), Arc::clone(&mark));
        Ok(mark)
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

    /// Held while a write is applied to sled (never across a sync, never re-entered).
    pub(crate) fn applying(&self) -> RwLockReadGuard<'_, ()> {
        self.write_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the writes being applied and keeps new ones out until dropped (`backup.rs`).
    pub(crate) fn pause_writes(&self) -> RwLockWriteGuard<'_, ()> {
        self.write_gate
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Names of the key-value trees ([`Store::kv`]) in the store.
    pub fn kv_names(&self) -> Vec<String> {
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|n| {
                let name = std::str::from_utf8(&n).ok()?;
                match name {
                    REGISTRY_TREE => Some(name.to_string()),
                    _ => name.strip_prefix("kv/").map(str::to_string),
                }
            })
            .collect()
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Makes what sled created in `dir` when it opened durable before anything is acknowledged:
/// its `conf` file (written once, when the folder is new, and never synced by sled), the
/// entries of `conf`, `db`, `blobs/` and any snapshot in the folder, and the folder's own entry
/// in its parent when it was just created. Without them a power loss right after the first
/// start could leave a folder sled cannot open, with acknowledged changes inside.
fn sync_folder(dir: &Path, created: bool) -> Result<(), StoreError> {
    let sync = |path: &Path| {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Sync(format!("{}: {e}", path.display())))
    };
    let conf = dir.join("conf");
    if conf.exists() {
        sync(&conf)?;
    }
    let blobs = dir.join("blobs");
    if blobs.exists() {
        sync(&blobs)?;
    }
    sync(dir)?;
    if created {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync(parent)?;
        }
    }
    Ok(())
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
    /// The key of the last audit group made durable: sled shows a group's entries as soon as
    /// the writer applied it, before its sync, so [`OfficeStore::audit`] reads up to here only.
    audit_durable: Arc<AtomicU64>,
}

/// The id in an audit key (`l` + id, big-endian).
fn audit_key_id(key: &[u8]) -> Result<u64, StoreError> {
    key.get(1..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            message: "malformed audit key".into(),
        })
}

fn number_key(class: &str, serial: Serial) -> Vec<u8> {
    let mut key = Vec::with_capacity(class.len() + 6);
    key.push(b'n');
    key.extend_from_slice(class.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&serial.code().to_be_bytes());
    key
}

fn app_key(prefix: u8, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(prefix);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// An audit entry as stored in a group (postcard has no optional fields: every field is there).
type AuditWire = (u64, String, String, Option<u64>, Option<String>, String);
/// The same, borrowed from the entry for writing.
type AuditWireRef<'a> = (u64, &'a str, &'a str, Option<u64>, Option<&'a str>, &'a str);

fn encode_binary<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Plain data: postcard cannot fail on it.
    postcard::to_extend(value, vec![BINARY_V1]).unwrap_or_default()
}

fn decode_binary<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    };
    match value.split_first() {
        Some((&BINARY_V1, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        _ => Err(corrupt("unknown value format".into())),
    }
}

/// Selection fields as written now, or as written before draws were paced (one field fewer).
fn decode_progress(key: &[u8], value: &[u8]) -> Result<AppProgress, StoreError> {
    decode_binary::<AppProgress>(key, value)
        .or_else(|_| decode_binary::<AppProgressV1>(key, value).map(AppProgress::from))
}

/// What one group commit does to an office tree: the sled operations, in order (a later one for
/// the same key wins), and how many audit ids it needs. Public so that benchmarks can replay
/// exactly what the writer writes.
#[derive(Debug, Default)]
pub struct EncodedGroup {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Encodes a group of records as the writer stores them; `audit_id` gives a fresh audit group
/// key each time it is called.
pub fn encode_group(
    records: &[Record],
    mut audit_id: impl FnMut() -> Result<u64, StoreError>,
) -> Result<EncodedGroup, StoreError> {
    let mut ops = Vec::with_capacity(records.len() + 1);
    let mut audit: Vec<AuditWireRef<'_>> = Vec::new();
    for r in records {
        match r {
            Record::Config(c) => ops.push((b"c".to_vec(), Some(encode(c)))),
            Record::Release(rel) => {
                let mut key = vec![b'r'];
                key.extend_from_slice(&rel.id.to_be_bytes());
                ops.push((key, Some(encode(rel))));
            }
            Record::App(app) => {
                ops.push((app_key(b'a', app.seq), Some(encode(app))));
                ops.push((app_key(b'q', app.seq), None));
            }
            Record::Progress { seq, progress } => {
                ops.push((app_key(b'q', *seq), Some(encode_binary(progress))));
            }
            Record::Number {
                class,
                serial,
                state,
            } => {
                let key = number_key(class, *serial);
                ops.push((key, state.map(|s| encode(&(serial.len(), s)))));
            }
            Record::Audit(e) => audit.push((
                e.at_ms,
                &e.who,
                &e.action,
                e.application,
                e.serial.as_deref(),
                &e.detail,
            )),
        }
    }
    for chunk in audit.chunks(AUDIT_GROUP_MAX) {
        let id = audit_id()? << AUDIT_ID_SHIFT;
        ops.push((app_key(b'l', id), Some(encode_binary(&chunk))));
    }
    Ok(EncodedGroup { ops })
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
        // Applications come out in seq order (big-endian keys), so progress finds its own by
        // binary search.
        for item in self.tree.scan_prefix(b"q") {
            let (k, v) = item?;
            let progress = decode_progress(&k, &v)?;
            let seq = k
                .get(1..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            let app = seq
                .and_then(|seq| snap.apps.binary_search_by_key(&seq, |a| a.seq).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    message: "selection fields of an application that is not stored".into(),
                })?;
            snap.apps[app].apply_progress(&progress);
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
            snap.numbers.push((
                class.to_string(),
                Serial::from_code(code, len).map_err(|_| corrupt())?,
                state.1,
            ));
        }
        Ok(snap)
    }

    /// One application as [`OfficeStore::load`] reads it (its selection fields applied), if
    /// stored. Sled shows a group once the writer applied it: a caller wanting durable state
    /// reads only records it knows are durable (the pool does, for settled applications).
    pub fn application(&self, seq: u64) -> Result<Option<AppRecord>, StoreError> {
        let key = app_key(b'a', seq);
        let Some(v) = self.tree.get(&key)? else {
            return Ok(None);
        };
        let mut app: AppRecord = decode(&key, &v)?;
        let key = app_key(b'q', seq);
        if let Some(v) = self.tree.get(&key)? {
            app.apply_progress(&decode_progress(&key, &v)?);
        }
        Ok(Some(app))
    }

    /// A number's stored state, if it differs from its release's.
    pub fn number_state(
        &self,
        class: &str,
        serial: Serial,
    ) -> Result<Option<NumberState>, StoreError> {
        let key = number_key(class, serial);
        let Some(v) = self.tree.get(&key)? else {
            return Ok(None);
        };
        let (_, state): (usize, NumberState) = decode(&key, &v)?;
        Ok(Some(state))
    }

    /// Durable audit entries with ids above `after`, oldest first, at most `limit`: a group
    /// the writer applied but has not synced yet (or whose sync failed) is not shown.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        // The group holding `after + 1` starts at most this far back.
        let first = after.saturating_add(1) & !((1u64 << AUDIT_ID_SHIFT) - 1);
        let durable = self.audit_durable.load(Ordering::SeqCst);
        let mut out = Vec::new();
        if first > durable {
            return Ok(out);
        }
        for item in self
            .tree
            .range(app_key(b'l', first)..=app_key(b'l', durable))
        {
            let (k, v) = item?;
            let id = audit_key_id(&k)?;
            let entries: Vec<(u64, AuditEntry)> = if v.first() == Some(&BINARY_V1) {
                let wire: Vec<AuditWire> = decode_binary(&k, &v)?;
                wire.into_iter()
                    .zip(id..)
                    .map(|((at_ms, who, action, application, serial, detail), id)| {
                        let entry = AuditEntry {
                            at_ms,
                            who,
                            action,
                            application,
                            serial,
                            detail,
                        };
                        (id, entry)
                    })
                    .collect()
            } else {
                vec![(id, decode(&k, &v)?)]
            };
            for (id, entry) in entries {
                if id > after {
                    out.push((id, entry));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes records as one atomic batch, without waiting for durability. Returns the key of
    /// its last audit group, if it has one.
    pub(crate) fn write(&self, records: &[Record]) -> Result<Option<u64>, StoreError> {
        let mut last_audit = None;
        let group = encode_group(records, || {
            let id = self.store.generate_id()?;
            last_audit = Some(id << AUDIT_ID_SHIFT);
            Ok(id)
        })?;
        let mut batch = sled::Batch::default();
        for (k, v) in group.ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let _applying = self.store.applying();
        self.tree.apply_batch(batch)?;
        Ok(last_audit)
    }

    /// Writes records and makes them durable, then shows their audit entries.
    fn write_durably(&self, records: &[Record]) -> Result<(), StoreError> {
        let last_audit = self.write(records)?;
        self.store.sync()?;
        if let Some(key) = last_audit {
            self.audit_durable_up_to(key);
        }
        Ok(())
    }

    /// Writes and makes durable at once (recovery, office creation).
    pub fn commit_now(&self, records: &[Record]) -> Result<(), StoreError> {
        self.write_durably(records)
    }

    /// The audit groups up to `key` are durable: [`OfficeStore::audit`] may show them.
    pub(crate) fn audit_durable_up_to(&self, key: u64) {
        self.audit_durable.fetch_max(key, Ordering::SeqCst);
    }

    /// This office's writer, on one of the store's writer threads (started with the first).
    pub fn start_writer(&self, _name: &str) -> Result<Writer, StoreError> {
        self.store.writers.writer(self.clone())
    }

    /// The store the office is in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AppState;

    fn app(seq: u64, random_left: u32) -> AppRecord {
        AppRecord {
            random_left,
            ..AppRecord::sample(seq)
        }
    }

    fn entry(n: u64) -> Record {
        Record::Audit(Box::new(AuditEntry {
            at_ms: n,
            who: "system".into(),
            action: format!("a{n}"),
            application: Some(n),
            serial: None,
            detail: String::new(),
        }))
    }

    #[test]
    fn progress_applies_over_the_application_until_the_next_whole_record() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let office = store.office("o").expect("office");
        let mut a1 = app(1, 5);
        let a2 = app(2, 5);
        office
            .commit_now(&[Record::App(Box::new(a1.clone())), Record::App(Box::new(a2))])
            .expect("apps");
        // A draw: progress only.
        a1.random_left = 4;
        a1.state = AppState::Selecting;
        let p1 = a1.progress();
        office
            .commit_now(&[Record::Progress {
                seq: 1,
                progress: p1,
            }])
            .expect("progress");
        let loaded = office.load().expect("load");
        assert_eq!(loaded.apps[0], a1);
        assert_eq!(
            loaded.apps[1].random_left, 5,
            "the other application is untouched"
        );
        // A whole record later (a claim) replaces it; a stale progress must not come back.
        a1.random_left = 3;
        a1.state = AppState::Claimed;
        office
            .commit_now(&[
                Record::Progress {
                    seq: 1,
                    progress: p1,
                },
                Record::App(Box::new(a1.clone())),
            ])
            .expect("claim");
        assert_eq!(office.load().expect("load").apps[0], a1);
        // And progress after a whole record in one group wins.
        let mut a3 = a1.clone();
        a3.random_left = 2;
        office
            .commit_now(&[
                Record::App(Box::new(a1.clone())),
                Record::Progress {
                    seq: 1,
                    progress: a3.progress(),
                },
            ])
            .expect("both");
        assert_eq!(office.load().expect("load").apps[0], a3);
    }

    #[test]
    fn progress_written_before_draws_were_paced_still_loads() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let office = store.office("o").expect("office");
        let mut a = app(1, 5);
        office
            .commit_now(&[Record::App(Box::new(a.clone()))])
            .expect("app");
        a.random_left = 4;
        let p = a.progress();
        let old = AppProgressV1 {
            custom_left: p.custom_left,
            random_left: p.random_left,
            last_check_at_ms: p.last_check_at_ms,
            verified_at_ms: p.verified_at_ms,
            verified_until_ms: p.verified_until_ms,
            state: p.state,
            closed_at_ms: p.closed_at_ms,
        };
        office
            .tree
            .insert(app_key(b'q', 1), encode_binary(&old))
            .expect("old progress");
        assert_eq!(office.load().expect("load").apps[0], a);
        // And the draw's instant, written now, comes back (R4.14 survives a restart).
        a.last_draw_at_ms = Some(77);
        office
            .commit_now(&[Record::Progress {
                seq: 1,
                progress: a.progress(),
            }])
            .expect("progress");
        assert_eq!(
            office.load().expect("load").apps[0].last_draw_at_ms,
            Some(77)
        );
    }

    #[test]
    fn progress_of_an_unknown_application_is_reported_not_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let office = store.office("o").expect("office");
        office
            .commit_now(&[Record::Progress {
                seq: 9,
                progress: app(9, 1).progress(),
            }])
            .expect("write");
        let err = office.load().expect_err("orphan progress");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn audit_groups_page_in_commit_order_with_ascending_ids() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let office = store.office("o").expect("office");
        // Three group commits of 3, 1 and 4 entries.
        let mut n = 0;
        for size in [3, 1, 4] {
            let group: Vec<Record> = (0..size)
                .map(|_| {
                    n += 1;
                    entry(n)
                })
                .collect();
            office.commit_now(&group).expect("group");
        }
        let all = office.audit(0, 100).expect("audit");
        let actions: Vec<_> = all.iter().map(|(_, e)| e.action.clone()).collect();
        assert_eq!(
            actions,
            (1..=8).map(|i| format!("a{i}")).collect::<Vec<_>>()
        );
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ids ascend");
        // Paging from any id gives exactly the entries after it.
        for (i, (id, _)) in all.iter().enumerate() {
            let page = office.audit(*id, 2).expect("page");
            let expect: Vec<_> = all[i + 1..].iter().take(2).cloned().collect();
            assert_eq!(page, expect, "after {id}");
        }
        assert!(office.audit(all[7].0, 10).expect("end").is_empty());
    }

    #[test]
    fn one_group_writes_one_audit_key_and_one_key_per_progress() {
        let records = vec![
            Record::Progress {
                seq: 1,
                progress: app(1, 4).progress(),
            },
            entry(1),
            Record::Progress {
                seq: 2,
                progress: app(2, 4).progress(),
            },
            entry(2),
        ];
        let group = encode_group(&records, || Ok(7)).expect("encode");
        let keys: Vec<u8> = group.ops.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, vec![b'q', b'q', b'l']);
        let (_, progress) = &group.ops[0];
        assert!(
            progress.as_ref().is_some_and(|v| v.len() < 40),
            "progress is small: {progress:?}"
        );
    }
}
