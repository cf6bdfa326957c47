//! Certificate records on disk: an append-only file beside the database
//! (`certificates.log`), with only [`CertIndex`] (16 bytes per certificate) in memory. A look-up
//! reads one record back with `pread`, from the page cache when it is warm.
//!
//! **Format.** An 8-byte magic, then frames: payload length (u32 LE), CRC-32 of the payload
//! (u32 LE), payload. A certificate payload is its tag, then the VIN, voucher and class each
//! behind a one-byte length, then the energy as one byte. An import is a run of certificate
//! frames closed by one commit frame (its tag, the import's number (u64 LE), how many
//! certificates it carries (u32 LE), then the import's audit entry as JSON).
//!
//! **Durability and recovery.** An import is written at the end of the file and made durable by
//! the log's [`GroupSyncer`] (one fdatasync for every import waiting); only then does its caller
//! point the index at it ([`CertificateLog::commit`]) and answer. At open, the file is read once:
//! certificates count only behind their commit frame, and whatever follows the last complete
//! commit (a torn or unsynced tail) is cut off. The registry records in sled how far the log had
//! been acknowledged (`certlog/end`, with the import's audit entry): a log that ends before that
//! was damaged, and opening it is refused rather than serving fewer certificates than were
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cert_index::{vin_hash, CertIndex, Slot};
use super::Certificate;
use crate::class::Energy;
use crate::group_commit::{settle, GroupSyncer, SyncState};
use crate::record::AuditEntry;
use crate::store::{Durability, StoreError};

/// The file's name in the data folder.
pub const CERT_LOG_FILE: &str = "certificates.log";
const MAGIC: &[u8; 8] = b"PPCERT1\n";
const HEAD: usize = 8;
/// Longest payload (a commit frame's audit entry is the longest).
const PAYLOAD_MAX: usize = 64 * 1024;
const TAG_CERT: u8 = 1;
const TAG_COMMIT: u8 = 2;

/// An import written to the log, waiting for its sync; [`CertificateLog::commit`] indexes it.
#[derive(Debug)]
pub(crate) struct Appended {
    pub(crate) batch: u64,
    /// Where the file ends after this import (recorded in sled once it is durable).
    pub(crate) end: u64,
    entries: Vec<(String, u64)>,
}

/// An import found in the log at open, with its audit entry (for the registry to check that
/// its audit trail has it).
#[derive(Debug)]
pub(crate) struct LoggedImport {
    pub(crate) batch: u64,
    pub(crate) end: u64,
    pub(crate) audit: Option<AuditEntry>,
}

#[derive(Debug)]
pub(crate) struct CertificateLog {
    file: Arc<File>,
    path: PathBuf,
    /// End of what was appended (durable or waiting for its sync).
    end: u64,
    /// End of what is durable and indexed.
    committed: u64,
    next_batch: u64,
    index: CertIndex,
    syncer: GroupSyncer,
}

fn corrupt(path: &Path, at: u64, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: format!("{}@{at}", path.display()),
        message: message.into(),
    }
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Sync(format!("{}: {e}", path.display()))
}

fn energy_code(e: Energy) -> u8 {
    match e {
        Energy::Fuel => 0,
        Energy::Bev => 1,
        Energy::Phev => 2,
        Energy::Fcev => 3,
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Checked before: VINs are 17, vouchers ≤ 32, class names ≤ 32 bytes.
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn cert_payload(c: &Certificate) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + c.vin.len() + c.voucher.len() + c.class.len() + 1);
    p.push(TAG_CERT);
    push_str(&mut p, &c.vin);
    push_str(&mut p, &c.voucher);
    push_str(&mut p, &c.class);
    p.push(energy_code(c.energy));
    p
}

fn decode_cert(payload: &[u8]) -> Option<Certificate> {
    let (&tag, mut rest) = payload.split_first()?;
    if tag != TAG_CERT {
        return None;
    }
    let mut text = || -> Option<String> {
        let (&len, tail) = rest.split_first()?;
        let (s, tail) = tail.split_at_checked(len as usize)?;
        rest = tail;
        String::from_utf8(s.to_vec()).ok()
    };
    let (vin, voucher, class) = (text()?, text()?, text()?);
    let energy = match rest {
        [e] => *Energy::ALL.get(*e as usize)?,
        _ => return None,
    };
    Some(Certificate {
        vin,
        voucher,
        class,
        energy,
    })
}

/// A commit frame's payload: tag, import number, count, audit entry (JSON; empty for none).
fn commit_payload(batch: u64, count: u32, audit: Option<&AuditEntry>) -> Vec<u8> {
    let mut p = vec![TAG_COMMIT];
    p.extend_from_slice(&batch.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    if let Some(a) = audit {
        p.extend_from_slice(&crate::kv::encode(a));
    }
    p
}

fn decode_commit(payload: &[u8]) -> Option<(u64, u32, Option<AuditEntry>)> {
    let rest = payload.strip_prefix(&[TAG_COMMIT])?;
    let batch = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
    let audit = match rest.get(12..)? {
        [] => None,
        json => Some(serde_json::from_slice(json).ok()?),
    };
    Some((batch, count, audit))
}

/// One frame read sequentially at open: `None` at a clean end or a torn tail.
fn next_frame(reader: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = [0u8; HEAD];
    reader.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len > PAYLOAD_MAX {
        return None;
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).ok()?;
    (crc32fast::hash(&payload) == crc).then_some(payload)
}

impl CertificateLog {
    /// Opens (or creates) the log in `dir`, indexes every committed import and cuts off what
    /// follows the last one. `acknowledged` is where the log ended when an import was last
    /// acknowledged: a log whose committed part ends before it was damaged, and is refused
    /// (nothing is cut). Returns the imports found, oldest first.
    pub(crate) fn open(
        dir: &Path,
        durability: Durability,
        acknowledged: u64,
    ) -> Result<(CertificateLog, Vec<LoggedImport>), StoreError> {
        let path = dir.join(CERT_LOG_FILE);
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let file = Arc::new(file);
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        if len < MAGIC.len() as u64 {
            file.set_len(0).map_err(|e| io(&path, e))?;
            file.write_all_at(MAGIC, 0).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
            if created {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io(dir, e))?;
            }
        }
        let mut magic = [0u8; 8];
        file.read_exact_at(&mut magic, 0)
            .map_err(|e| io(&path, e))?;
        if &magic != MAGIC {
            return Err(corrupt(&path, 0, "not a certificate log"));
        }
        let state = Arc::new(SyncState::default());
        let sync_file = Arc::clone(&file);
        let sync_path = path.clone();
        let syncer = GroupSyncer::start(
            "pp-cert-syncer",
            state,
            Box::new(move || match durability {
                // Written with pwrite: in the kernel already, so a process crash keeps it.
                Durability::None | Durability::Flush => Ok(()),
                Durability::Fsync => sync_file.sync_data().map_err(|e| io(&sync_path, e)),
            }),
        );
        let mut log = CertificateLog {
            file,
            path,
            end: MAGIC.len() as u64,
            committed: MAGIC.len() as u64,
            next_batch: 1,
            index: CertIndex::default(),
            syncer,
        };
        let imports = log.load(acknowledged)?;
        Ok((log, imports))
    }

    /// Reads the file from the start: indexes each committed import, truncates the rest.
    fn load(&mut self, acknowledged: u64) -> Result<Vec<LoggedImport>, StoreError> {
        let file_len = self.file.metadata().map_err(|e| io(&self.path, e))?.len();
        let file = Arc::clone(&self.file);
        let mut reader = BufReader::with_capacity(1 << 20, &*file);
        reader
            .by_ref()
            .take(MAGIC.len() as u64)
            .read_to_end(&mut Vec::new())
            .map_err(|e| io(&self.path, e))?;
        let mut at = MAGIC.len() as u64;
        // (VIN hash, offset) of the records of the import being read, then of every committed
        // import: indexed in one go once the file is read (`CertIndex::load`).
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let mut committed: Vec<(u64, u64)> = Vec::new();
        let mut imports = Vec::new();
        while let Some(payload) = next_frame(&mut reader) {
            let offset = at;
            at += (HEAD + payload.len()) as u64;
            if let Some(cert) = decode_cert(&payload) {
                pending.push((vin_hash(&cert.vin), offset));
                continue;
            }
            let Some((batch, count, audit)) = decode_commit(&payload) else {
                return Err(corrupt(&self.path, offset, "unknown frame"));
            };
            if count as usize != pending.len() {
                return Err(corrupt(
                    &self.path,
                    offset,
                    format!(
                        "import {batch} says {count} certificates, {} precede it",
                        pending.len()
                    ),
                ));
            }
            committed.append(&mut pending);
            self.end = at;
            self.committed = at;
            self.next_batch = batch + 1;
            imports.push(LoggedImport {
                batch,
                end: at,
                audit,
            });
        }
        let (file, path) = (&self.file, &self.path);
        self.index
            .load(committed, |old| read_at(file, path, old).map(|c| c.vin))?;
        if self.committed < acknowledged {
            return Err(corrupt(
                &self.path,
                self.committed,
                format!(
                    "the certificate log's imports end at byte {}, but imports up to byte \
                     {acknowledged} were acknowledged: the file was truncated or damaged; \
                     refusing to start with fewer certificates (restore the data folder from a \
                     backup)",
                    self.committed
                ),
            ));
        }
        if self.committed < file_len {
            // A torn or unsynced tail: never acknowledged.
            tracing::warn!(
                file = %self.path.display(),
                cut = file_len - self.committed,
                "certificate log: cutting off an import that was not committed"
            );
            self.file
                .set_len(self.committed)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| io(&self.path, e))?;
        }
        Ok(imports)
    }

    fn index_entries(&mut self, entries: Vec<(String, u64)>) -> Result<(), StoreError> {
        for (vin, offset) in entries {
            let (file, path) = (&self.file, &self.path);
            self.index
                .insert(&vin, offset, |old| read_at(file, path, old).map(|c| c.vin))?;
        }
        Ok(())
    }

    /// The newest certificate record of `vin`, read from the file.
    pub(crate) fn get(&self, vin: &str) -> Result<Option<Certificate>, StoreError> {
        match self.index.find(vin) {
            None => Ok(None),
            Some(Slot::Exact(at)) => read_at(&self.file, &self.path, at).map(Some),
            Some(Slot::ByHash(at)) => {
                let cert = read_at(&self.file, &self.path, at)?;
                Ok((cert.vin == vin).then_some(cert))
            }
        }
    }

    /// Certificates indexed, and the index's bytes in memory.
    pub(crate) fn stats(&self) -> (usize, usize) {
        (self.index.len(), self.index.heap_bytes())
    }

    /// Where the committed part of the log ends.
    #[cfg(test)]
    pub(crate) fn committed_end(&self) -> u64 {
        self.committed
    }

    /// Writes an import at the end of the file (not yet durable, not yet indexed). The future
    /// resolves once a sync covers it; then [`CertificateLog::commit`] indexes it.
    #[allow(clippy::type_complexity)]
    pub(crate) fn append(
        &mut self,
        certs: &[Certificate],
        audit: Option<&AuditEntry>,
    ) -> Result<
        (
            Appended,
            impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
        ),
        StoreError,
    > {
        let batch = self.next_batch;
        let mut buf = Vec::with_capacity(certs.len() * 64 + 256);
        let mut entries = Vec::with_capacity(certs.len());
        for c in certs {
            entries.push((c.vin.clone(), self.end + buf.len() as u64));
            frame(&mut buf, &cert_payload(c));
        }
        frame(&mut buf, &commit_payload(batch, certs.len() as u32, audit));
        let (file, path, state) = (&self.file, &self.path, &self.syncer.state);
        let at = self.end;
        let written = state.apply(|| file.write_all_at(&buf, at).map_err(|e| io(path, e)));
        if let Err(e) = written {
            // Part of it may be in the file: nothing later may be acknowledged after it.
            state.fail(&e);
            return Err(e);
        }
        self.end += buf.len() as u64;
        self.next_batch += 1;
        let durable = self.syncer.wait_async();
        Ok((
            Appended {
                batch,
                end: self.end,
                entries,
            },
            settle(Ok(()), Some(durable)),
        ))
    }

    /// Indexes an import whose sync has returned.
    pub(crate) fn commit(&mut self, appended: Appended) -> Result<(), StoreError> {
        self.index_entries(appended.entries)?;
        self.committed = self.committed.max(appended.end);
        Ok(())
    }

    /// Whether a sync of the log has failed (every later import is refused).
    #[cfg(test)]
    pub(crate) fn failed(&self) -> bool {
        self.syncer.state.check().is_err()
    }

    /// The log with its syncer replaced by one that syncs with `sync` (tests: a failing disk).
    #[cfg(test)]
    pub(crate) fn with_sync(
        mut self,
        sync: impl FnMut() -> Result<(), StoreError> + Send + 'static,
    ) -> CertificateLog {
        self.syncer = GroupSyncer::start(
            "pp-cert-test",
            Arc::new(SyncState::default()),
            Box::new(sync),
        );
        self
    }
}

fn read_at(file: &File, path: &Path, at: u64) -> Result<Certificate, StoreError> {
    let mut head = [0u8; HEAD];
    file.read_exact_at(&mut head, at).map_err(|e| io(path, e))?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > PAYLOAD_MAX {
        return Err(corrupt(path, at, "frame too long"));
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, at + HEAD as u64)
        .map_err(|e| io(path, e))?;
    if crc32fast::hash(&payload) != crc {
        return Err(corrupt(path, at, "checksum mismatch"));
    }
    decode_cert(&payload).ok_or_else(|| corrupt(path, at, "not a certificate"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crossbeam_channel::Sender;

    use super::*;

    fn cert(n: u32, voucher: &str) -> Certificate {
        Certificate {
            vin: format!("LSVAU2180N2{n:06}"),
            voucher: voucher.into(),
            class: "small".into(),
            energy: Energy::ALL[n as usize % 4],
        }
    }

    fn batch(from: u32, n: u32, voucher: &str) -> Vec<Certificate> {
        (from..from + n).map(|i| cert(i, voucher)).collect()
    }

    fn open(dir: &Path, acknowledged: u64) -> Result<(CertificateLog, usize), StoreError> {
        CertificateLog::open(dir, Durability::Fsync, acknowledged).map(|(l, i)| (l, i.len()))
    }

    /// The log with a sync that waits for one `Ok(true)` (succeed) or `Ok(false)` (fail) per
    /// call from the returned sender.
    fn gated(log: CertificateLog) -> (CertificateLog, Sender<bool>) {
        let (open, gate) = crossbeam_channel::unbounded::<bool>();
        let log = log.with_sync(move || match gate.recv() {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Sync("injected: EIO".into())),
        });
        (log, open)
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out waiting until {what}");
    }

    /// Runs `futures` on threads of their own; the receiver gets each one's result.
    fn spawn_all(
        futures: Vec<impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static>,
    ) -> crossbeam_channel::Receiver<(usize, Result<(), StoreError>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        for (i, f) in futures.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let result = actix_rt::System::new().block_on(f);
                let _ = tx.send((i, result));
            });
        }
        rx
    }

    #[test]
    fn imports_waiting_share_one_sync_and_none_is_answered_or_shown_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let (log, _) = open(dir.path(), 0).expect("open");
        let (mut log, gate) = gated(log);
        let mut appended = Vec::new();
        let mut waits = Vec::new();
        // The first import's sync is taken at once and held at the gate; three more queue.
        for i in 0..4 {
            let (a, wait) = log.append(&batch(i * 100, 100, "A"), None).expect("append");
            appended.push(a);
            waits.push(wait);
            if i == 0 {
                wait_until("the first sync is held", || log.syncer.queued() == 0);
            }
        }
        let done = spawn_all(waits);
        assert!(
            done.recv_timeout(Duration::from_millis(100)).is_err(),
            "an import was answered before its sync"
        );
        assert_eq!(log.get(&cert(150, "A").vin).expect("get"), None, "shown");
        gate.send(true).expect("first sync");
        assert!(done
            .recv_timeout(Duration::from_secs(10))
            .expect("first")
            .1
            .is_ok());
        assert!(
            done.recv_timeout(Duration::from_millis(100)).is_err(),
            "a queued import was answered by the sync before its own"
        );
        gate.send(true).expect("second sync");
        for _ in 1..4 {
            assert!(done
                .recv_timeout(Duration::from_secs(10))
                .expect("rest")
                .1
                .is_ok());
        }
        assert_eq!(log.syncer.state.syncs.load(Ordering::SeqCst), 2);
        for a in appended {
            log.commit(a).expect("commit");
        }
        let end = log.committed_end();
        assert_eq!(
            log.get(&cert(399, "A").vin).expect("get"),
            Some(cert(399, "A"))
        );
        drop(log);
        let (log, imports) = open(dir.path(), end).expect("reopen");
        assert_eq!(imports, 4);
        for i in 0..400 {
            assert_eq!(log.get(&cert(i, "A").vin).expect("get"), Some(cert(i, "A")));
        }
    }

    #[test]
    fn a_failed_sync_fails_every_import_of_its_group_and_refuses_later_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let (log, _) = open(dir.path(), 0).expect("open");
        let (mut log, gate) = gated(log);
        let (first, wait) = log.append(&batch(0, 10, "A"), None).expect("append");
        let done = spawn_all(vec![wait]);
        gate.send(true).expect("sync");
        assert!(done
            .recv_timeout(Duration::from_secs(10))
            .expect("first")
            .1
            .is_ok());
        log.commit(first).expect("commit");
        let acknowledged = log.committed_end();
        let mut waits = Vec::new();
        for i in 1..4 {
            let (_, wait) = log.append(&batch(i * 10, 10, "B"), None).expect("append");
            waits.push(wait);
            if i == 1 {
                wait_until("the sync is held", || log.syncer.queued() == 0);
            }
        }
        let done = spawn_all(waits);
        gate.send(false).expect("fail the sync");
        let mut failed = 0;
        for _ in 0..3 {
            let (_, result) = done.recv_timeout(Duration::from_secs(10)).expect("answer");
            assert!(matches!(result, Err(StoreError::Sync(_))), "{result:?}");
            failed += 1;
        }
        assert_eq!(failed, 3, "every import waiting got the failure");
        assert!(log.failed());
        let len = std::fs::metadata(dir.path().join(CERT_LOG_FILE))
            .expect("len")
            .len();
        assert!(
            log.append(&batch(90, 1, "C"), None).is_err(),
            "refused after"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(CERT_LOG_FILE))
                .expect("len")
                .len(),
            len,
            "a refused import writes nothing"
        );
        assert_eq!(log.get(&cert(15, "B").vin).expect("get"), None);
        assert_eq!(log.get(&cert(5, "A").vin).expect("get"), Some(cert(5, "A")));
        drop(log);
        // The failed imports were never acknowledged: whatever of them reached the disk may come
        // back, but the acknowledged one must.
        let (log, _) = open(dir.path(), acknowledged).expect("reopen");
        assert_eq!(log.get(&cert(5, "A").vin).expect("get"), Some(cert(5, "A")));
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_log_shorter_than_acknowledged_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(CERT_LOG_FILE);
        let (mut log, _) = open(dir.path(), 0).expect("open");
        for (i, voucher) in ["A", "B"].into_iter().enumerate() {
            let (a, wait) = log
                .append(&batch(i as u32 * 5, 5, voucher), None)
                .expect("append");
            actix_rt::System::new().block_on(wait).expect("sync");
            log.commit(a).expect("commit");
        }
        let acknowledged = log.committed_end();
        // A third import whose commit frame never made it, then half a frame.
        let (_, wait) = log.append(&batch(100, 5, "C"), None).expect("append");
        actix_rt::System::new().block_on(wait).expect("sync");
        drop(log);
        let full = std::fs::metadata(&path).expect("len").len();
        let file = OpenOptions::new().write(true).open(&path).expect("file");
        file.set_len(full - 3).expect("tear");
        drop(file);
        let (log, imports) = open(dir.path(), acknowledged).expect("reopen");
        assert_eq!(imports, 2);
        assert_eq!(log.get(&cert(100, "C").vin).expect("get"), None);
        assert_eq!(log.get(&cert(7, "B").vin).expect("get"), Some(cert(7, "B")));
        assert_eq!(
            std::fs::metadata(&path).expect("len").len(),
            acknowledged,
            "the tail is cut"
        );
        drop(log);
        // Now the file loses part of an acknowledged import.
        let file = OpenOptions::new().write(true).open(&path).expect("file");
        file.set_len(acknowledged - 10).expect("truncate");
        drop(file);
        let e = open(dir.path(), acknowledged).expect_err("a damaged log");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert_eq!(
            std::fs::metadata(&path).expect("len").len(),
            acknowledged - 10,
            "a refused log is left as it was"
        );
    }

    #[test]
    fn a_later_import_replaces_a_record_across_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut log, _) = open(dir.path(), 0).expect("open");
        for voucher in ["OLD", "NEW"] {
            let (a, wait) = log.append(&batch(0, 3, voucher), None).expect("append");
            actix_rt::System::new().block_on(wait).expect("sync");
            log.commit(a).expect("commit");
        }
        assert_eq!(
            log.get(&cert(1, "NEW").vin).expect("get"),
            Some(cert(1, "NEW"))
        );
        assert_eq!(log.stats().0, 3, "one index entry per vehicle");
        let end = log.committed_end();
        drop(log);
        let (log, _) = open(dir.path(), end).expect("reopen");
        assert_eq!(
            log.get(&cert(1, "NEW").vin).expect("get"),
            Some(cert(1, "NEW"))
        );
        assert_eq!(log.stats().0, 3);
    }
}
