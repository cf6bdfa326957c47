//! Backups while serving (SPEC D1): a consistent copy of a data folder another `Store` serves.
//!
//! sled has no snapshot, and its iterators see writes made while they run, so a copy read while
//! offices and the key-value syncer write could hold half of a group commit. Every write to
//! sled therefore holds the store's write gate shared while it applies (`OfficeStore::write`,
//! `Kv::apply`; never across a sync); [`backup`] holds it alone while it reads every tree into
//! memory, then syncs, then lets writes go on. The copy is the state between two writes — the
//! state a crash at that instant would leave once recovered — and, after that sync, one the
//! source holds durably: every change acknowledged before the backup began was applied before
//! it (an answer waits for its sync, which follows its write), so it is in the copy.
//!
//! The pause is only the in-memory read and one sync; the copy is written afterwards, with
//! writes flowing again, into `<to>.partial`, made durable, and renamed to `to`, so a folder
//! named `to` is always a whole backup. Ids handed out by the source (audit groups, key-value
//! ids) are advanced past in the copy, so a node serving the copy never reuses one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::registry::cert_log::CERT_LOG_FILE;
use crate::registry::LOG_END_KEY;
use crate::store::{Durability, Store, StoreError, GENERATION_KEY, REGISTRY_TREE};

/// Records written per sled batch into the copy.
const COPY_BATCH: usize = 10_000;

/// What a backup made and how long writes waited for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The backup's folder.
    pub to: PathBuf,
    /// sled trees copied (offices, registry, the gateway's key-value trees).
    pub trees: usize,
    /// Key-value records copied.
    pub records: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
    /// How long writes were held: the in-memory read and one sync (microseconds).
    pub pause_us: u64,
    /// The whole backup, from the pause to the renamed folder (milliseconds).
    pub total_ms: u64,
    /// The source's generation when it was read.
    pub source_generation: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Destination(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every tree's records, read at one point between two writes.
struct Image {
    trees: Vec<(sled::IVec, Vec<(sled::IVec, sled::IVec)>)>,
    /// An id above every id the source handed out.
    next_id: u64,
    generation: u64,
}

/// Copies the database `store` serves into the new folder `to` (see the module's notes).
pub fn backup(store: &Store, to: &Path) -> Result<BackupReport, BackupError> {
    let partial = check_destination(to)?;
    let started = Instant::now();
    let image = read_image(store)?;
    let pause_us = started.elapsed().as_micros() as u64;
    let (records, mut bytes) = write_copy(&image, &partial)?;
    bytes += copy_certificate_log(store, &image, &partial)?;
    std::fs::rename(&partial, to).map_err(|e| {
        BackupError::Destination(format!("cannot rename {}: {e}", partial.display()))
    })?;
    sync_parent(to)?;
    Ok(BackupReport {
        to: to.to_path_buf(),
        trees: image.trees.len(),
        records,
        bytes,
        pause_us,
        total_ms: started.elapsed().as_millis() as u64,
        source_generation: image.generation,
    })
}

/// `to` must not exist and its parent must; the copy is built beside it.
fn check_destination(to: &Path) -> Result<PathBuf, BackupError> {
    let bad = |m: String| Err(BackupError::Destination(m));
    if to.exists() {
        return bad(format!(
            "{} already exists: a backup goes into a new folder",
            to.display()
        ));
    }
    let Some(name) = to.file_name() else {
        return bad(format!("{} names no folder", to.display()));
    };
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            return bad(format!("{} is not a folder", parent.display()));
        }
    }
    let mut partial_name = name.to_os_string();
    partial_name.push(".partial");
    let partial = to.with_file_name(partial_name);
    if partial.exists() {
        return bad(format!(
            "{} exists (an interrupted backup?): remove it first",
            partial.display()
        ));
    }
    Ok(partial)
}

/// The pause: no write applies while every tree is read, then the source syncs.
fn read_image(store: &Store) -> Result<Image, StoreError> {
    let db = store.db();
    let _paused = store.pause_writes();
    let mut trees = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let records = tree.iter().collect::<Result<Vec<_>, _>>()?;
        trees.push((name, records));
    }
    let next_id = db.generate_id()?;
    let generation = db
        .get(GENERATION_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    // What was read is on the source's device before the backup answers.
    store.sync()?;
    Ok(Image {
        trees,
        next_id,
        generation,
    })
}

/// Writes the image into a new store at `dir` and makes it durable; (records, bytes).
fn write_copy(image: &Image, dir: &Path) -> Result<(u64, u64), BackupError> {
    let copy = Store::open(dir, Durability::Fsync)?;
    let db = copy.db();
    let (mut records, mut bytes) = (0u64, 0u64);
    for (name, entries) in &image.trees {
        let tree = db.open_tree(name).map_err(StoreError::from)?;
        for chunk in entries.chunks(COPY_BATCH) {
            let mut batch = sled::Batch::default();
            for (k, v) in chunk {
                // The copy keeps its own generation (it starts a new history).
                if k.as_ref() == GENERATION_KEY {
                    continue;
                }
                records += 1;
                bytes += (k.len() + v.len()) as u64;
                batch.insert(k.clone(), v.clone());
            }
            tree.apply_batch(batch).map_err(StoreError::from)?;
        }
    }
    while db.generate_id().map_err(StoreError::from)? < image.next_id {}
    copy.sync()?;
    copy.record_generation()?;
    Ok((records, bytes))
}

/// The certificate log lives beside the database: the copy gets it up to where the copied
/// registry says it was acknowledged (`certlog/end`). That prefix was synced before the registry
/// recorded it; what follows it belongs to imports not acknowledged when the image was read.
fn copy_certificate_log(store: &Store, image: &Image, dir: &Path) -> Result<u64, BackupError> {
    let end = image
        .trees
        .iter()
        .find(|(name, _)| name.as_ref() == REGISTRY_TREE.as_bytes())
        .and_then(|(_, records)| records.iter().find(|(k, _)| k.as_ref() == LOG_END_KEY))
        .map(|(k, v)| crate::kv::decode::<u64>(k, v))
        .transpose()?
        .unwrap_or(0);
    if end == 0 {
        return Ok(0);
    }
    let from = store.path().join(CERT_LOG_FILE);
    let to = dir.join(CERT_LOG_FILE);
    let fail =
        |e: std::io::Error| BackupError::Destination(format!("copying {}: {e}", from.display()));
    let source = std::fs::File::open(&from).map_err(fail)?;
    let mut target = std::fs::File::create(&to).map_err(fail)?;
    let copied = std::io::copy(&mut std::io::Read::take(source, end), &mut target).map_err(fail)?;
    if copied != end {
        return Err(BackupError::Destination(format!(
            "{} holds {copied} bytes, the registry acknowledged {end}",
            from.display()
        )));
    }
    target.sync_all().map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(end)
}

fn sync_parent(to: &Path) -> Result<(), BackupError> {
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError::Destination(format!("{}: {e}", parent.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AuditEntry, Record};

    fn entry(n: u64) -> Record {
        Record::Audit(Box::new(AuditEntry {
            at_ms: n,
            who: "system".into(),
            action: format!("a{n}"),
            application: None,
            serial: None,
            detail: String::new(),
        }))
    }

    #[test]
    fn the_copy_has_every_tree_and_hands_out_no_id_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let source = Store::open(&dir.path().join("src"), Durability::None).expect("open");
        let office = source.office("o").expect("office");
        office.commit_now(&[entry(1), entry(2)]).expect("audit");
        let kv = source.kv("k").expect("kv");
        kv.put(b"x", &7u32).expect("put");
        let before = office.audit(0, 10).expect("audit");
        let to = dir.path().join("copy");
        let report = backup(&source, &to).expect("backup");
        assert_eq!(report.to, to);
        assert!(report.records >= 2, "{report:?}");
        assert!(!dir.path().join("copy.partial").exists());
        drop((office, kv, source));

        let copy = Store::open(&to, Durability::None).expect("open copy");
        let office = copy.office("o").expect("office");
        assert_eq!(office.audit(0, 10).expect("audit"), before);
        assert_eq!(
            copy.kv("k").expect("kv").get::<u32>(b"x").expect("get"),
            Some(7)
        );
        // A group written in the copy gets ids after the source's.
        office.commit_now(&[entry(3)]).expect("more");
        let after = office.audit(0, 10).expect("audit");
        assert_eq!(after.len(), 3, "nothing overwritten: {after:?}");
        assert!(after[2].0 > before[1].0);
    }

    #[test]
    fn the_certificate_log_is_copied_as_far_as_the_copied_registry_acknowledged_it() {
        let dir = tempfile::tempdir().expect("dir");
        let source = Store::open(&dir.path().join("src"), Durability::None).expect("open");
        let log: Vec<u8> = (0u8..30).collect();
        std::fs::write(source.path().join(CERT_LOG_FILE), &log).expect("log");
        // An import acknowledged up to byte 20; the last 10 belong to one not yet acknowledged.
        let registry = source.kv(REGISTRY_TREE).expect("registry");
        registry.put(LOG_END_KEY, &20u64).expect("end");
        let to = dir.path().join("copy");
        backup(&source, &to).expect("backup");
        let copied = std::fs::read(to.join(CERT_LOG_FILE)).expect("copied log");
        assert_eq!(copied, log[..20]);

        // A log shorter than the registry's record is not a copy: the backup refuses.
        std::fs::write(source.path().join(CERT_LOG_FILE), &log[..12]).expect("cut");
        let refused = backup(&source, &dir.path().join("copy2"));
        assert!(
            matches!(refused, Err(BackupError::Destination(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_backup_goes_into_a_new_folder_only() {
        let dir = tempfile::tempdir().expect("dir");
        let source = Store::open(&dir.path().join("src"), Durability::None).expect("open");
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).expect("mkdir");
        let err = backup(&source, &taken).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
        let orphan = dir.path().join("none/deeper");
        let err = backup(&source, &orphan).expect_err("no parent");
        assert!(err.to_string().contains("not a folder"), "{err}");
    }
}
