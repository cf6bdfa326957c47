//! The baselines: bare fdatasync, and raw sled doing what the engine's writer does (the same keys
//! and the same encoded values, in batches of the size its group commits really had), without the
//! engine around it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use platepool_engine::record::Record;
use platepool_engine::store::encode_group;
use tempfile::TempDir;

/// Same cache as the engine's store (`Store::open`).
pub const SLED_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// A record as the store would write it: which key family, and the encoded value.
#[derive(Debug, Clone)]
pub enum RawKind {
    /// `a` + seq: the application record (overwrites one of the office's applications).
    App,
    /// `q` + seq: an application's selection fields (overwrites one of them).
    Progress,
    /// An audit entry: the entries of one group commit go under one new `l` key together.
    Audit,
    /// `n` + class + `/` + code: a number's state.
    Number,
}

#[derive(Debug, Clone)]
pub struct RawRecord {
    pub kind: RawKind,
    pub value: Vec<u8>,
}

/// Encodes records as the store does ([`encode_group`], one record at a time), to replay their
/// kinds and sizes. Removals and configuration records are left out.
pub fn encode_like_store(records: &[Record]) -> Vec<RawRecord> {
    records
        .iter()
        .filter_map(|r| encode_group(std::slice::from_ref(r), || Ok(1)).ok())
        .flat_map(|group| group.ops)
        .filter_map(|(key, value)| {
            let kind = match key.first() {
                Some(b'a') => RawKind::App,
                Some(b'q') => RawKind::Progress,
                Some(b'l') => RawKind::Audit,
                Some(b'n') => RawKind::Number,
                _ => return None,
            };
            value.map(|value| RawRecord { kind, value })
        })
        .collect()
}

/// A sled database like the engine's, in a folder of its own, with the database file open for
/// fdatasync as `Store` does it.
#[derive(Debug)]
pub struct RawSled {
    _dir: TempDir,
    db: sled::Db,
    tree: sled::Tree,
    file: File,
    next_id: u64,
    next_app: u64,
    apps: u64,
}

impl RawSled {
    /// Opens a fresh database whose office tree already holds `apps` application records of the
    /// size of `app_value` (the engine's tree has its applications too).
    pub fn open(apps: u64, app_value: &[u8]) -> RawSled {
        let dir = tempfile::Builder::new()
            .prefix("platepool-raw-")
            .tempdir()
            .expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .expect("sled opens");
        let tree = db.open_tree("office/raw").expect("tree");
        let file = File::open(dir.path().join("db")).expect("sled db file");
        let mut batch = sled::Batch::default();
        for seq in 0..apps {
            batch.insert(app_key(seq).to_vec(), app_value.to_vec());
        }
        tree.apply_batch(batch).expect("prefill");
        db.flush().expect("flush");
        file.sync_data().expect("fdatasync");
        RawSled {
            _dir: dir,
            db,
            tree,
            file,
            next_id: 1,
            next_app: 0,
            apps: apps.max(1),
        }
    }

    /// Writes `count` records, cycling through `template`, as one batch (no flush): as the
    /// store's writer does, the batch's audit entries go together under one new key.
    pub fn apply(&mut self, template: &[RawRecord], start: usize, count: usize) {
        let mut batch = sled::Batch::default();
        let mut audit: Vec<u8> = Vec::new();
        for i in 0..count {
            let r = &template[(start + i) % template.len()];
            match r.kind {
                RawKind::App | RawKind::Progress => {
                    let mut key = app_key(self.next_app % self.apps);
                    if matches!(r.kind, RawKind::Progress) {
                        key[0] = b'q';
                    }
                    self.next_app += 1;
                    batch.insert(key.to_vec(), r.value.clone());
                }
                RawKind::Audit => audit.extend_from_slice(&r.value),
                RawKind::Number => {
                    let mut key = b"nsmall/".to_vec();
                    key.extend_from_slice(&((self.next_id % 1_000_000) as u32).to_be_bytes());
                    self.next_id += 1;
                    batch.insert(key, r.value.clone());
                }
            }
        }
        if !audit.is_empty() {
            let mut key = vec![b'l'];
            key.extend_from_slice(&(self.next_id << 16).to_be_bytes());
            self.next_id += 1;
            batch.insert(key, audit);
        }
        self.tree.apply_batch(batch).expect("apply_batch");
    }

    /// sled flush only.
    pub fn flush(&self) {
        self.db.flush().expect("flush");
    }

    /// sled flush, then fdatasync of the database file: the engine's `Durability::Fsync`.
    pub fn durable(&self) {
        self.db.flush().expect("flush");
        self.file.sync_data().expect("fdatasync");
    }

    /// One group commit of `records` records: batch, flush, fdatasync.
    pub fn group_commit(&mut self, template: &[RawRecord], start: usize, records: usize) {
        self.apply(template, start, records);
        self.durable();
    }

    /// Writes records in group commits of `batch` records until `budget` is spent; returns
    /// (records written, elapsed).
    pub fn group_commits_for(
        &mut self,
        template: &[RawRecord],
        batch: usize,
        budget: Duration,
    ) -> (u64, Duration) {
        let batch = batch.max(1);
        let start = Instant::now();
        let mut written = 0u64;
        while start.elapsed() < budget {
            self.group_commit(template, written as usize, batch);
            written += batch as u64;
        }
        (written, start.elapsed())
    }

    /// Writes `records` records in group commits of `batch` records; returns the elapsed time.
    pub fn group_commits_count(
        &mut self,
        template: &[RawRecord],
        batch: usize,
        records: u64,
    ) -> Duration {
        let batch = batch.max(1) as u64;
        let start = Instant::now();
        let mut written = 0u64;
        while written < records {
            let n = batch.min(records - written);
            self.group_commit(template, written as usize, n as usize);
            written += n;
        }
        start.elapsed()
    }

    /// The bare durable write a claim is compared with: one insert, flush, fdatasync.
    pub fn bare_durable_insert(&mut self, value: &[u8]) -> Duration {
        let start = Instant::now();
        let key = app_key(self.next_app % self.apps);
        self.next_app += 1;
        self.tree.insert(key, value).expect("insert");
        self.durable();
        start.elapsed()
    }
}

fn app_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'a';
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A file for the bare fdatasync rate: each step writes 4 KiB and fdatasyncs.
#[derive(Debug)]
pub struct SyncFile {
    _dir: TempDir,
    file: File,
    step: u64,
}

impl SyncFile {
    pub fn new() -> SyncFile {
        let dir = tempfile::Builder::new()
            .prefix("platepool-fsync-")
            .tempdir()
            .expect("temp dir");
        let file = create(&dir.path().join("sync"));
        SyncFile {
            _dir: dir,
            file,
            step: 0,
        }
    }

    /// Writes 4 KiB (cycling over 1 MiB of the file) and fdatasyncs.
    pub fn step(&mut self) -> Duration {
        let start = Instant::now();
        let block = [0x5au8; 4096];
        let offset = (self.step % 256) * 4096;
        self.step += 1;
        self.file.write_all_at(&block, offset).expect("write");
        self.file.sync_data().expect("fdatasync");
        start.elapsed()
    }

    /// fdatasyncs per second over `budget`.
    pub fn rate_for(&mut self, budget: Duration) -> f64 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            self.step();
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

impl Default for SyncFile {
    fn default() -> Self {
        SyncFile::new()
    }
}

fn create(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .expect("create file")
}
