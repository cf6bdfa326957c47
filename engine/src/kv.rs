//! A small durable key-value tree: the registry's blacklist and audit trail, and the gateway's
//! own state (SMS codes and outbox, idempotency keys).
//!
//! **Group commit** (`group_commit.rs`). A write applies to sled in memory at once, so reads,
//! compare-and-swap and [`Kv::update`] keep sled's atomic semantics; then the caller waits until
//! the write is durable. Every `Kv` of one [`Store`] shares one syncer thread fed by a crossbeam
//! channel: it takes every request waiting, calls [`Store::sync`] once, and answers them all. N
//! concurrent writers cost one flush + fdatasync, not N, and no caller does the sync on its own
//! thread.
//!
//! The blocking methods (`put`, `update`, `remove`, `commit`, `commit_raw`) are for threads that
//! may block (start-up, tests); the `*_async` methods return a future for the gateway's workers
//! and the registry actor, which must never wait for a disk.
//!
//! **Fail-stop.** After one failed sync, every later durable write is refused before it touches
//! memory, and every write still waiting gets the error: memory may be ahead of the disk, so
//! nothing more is acknowledged until the process restarts and reads back what is durable.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::group_commit::{settle, GroupSyncer, SyncFn, SyncState};
use crate::store::{Store, StoreError};

/// Most requests one sync answers; the rest wait for the next one.
pub const KV_GROUP_MAX: usize = crate::group_commit::GROUP_MAX;
/// Most requests waiting for the syncer: a writer beyond it blocks until a sync drains the
/// queue (back-pressure rather than a queue that grows without bound while the disk stalls).
pub const KV_WAITING_MAX: usize = crate::group_commit::WAITING_MAX;

/// What every `Kv` of one [`Store`] shares: the syncer thread (started with the first `Kv`,
/// stopped with the last) and the counters and failure that outlive it.
#[derive(Debug, Default)]
pub struct KvSync {
    /// Weak: the syncer thread holds a `Store`, which holds this; a strong reference would keep
    /// the thread (and the database) alive forever.
    syncer: Mutex<Weak<Syncer>>,
    state: Arc<SyncState>,
}

/// Counters of the Kv syncer, for metrics, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvSyncStats {
    /// Durable writes applied (each one waits for a sync).
    pub writes: u64,
    /// Syncs made (each one flush + fdatasync answering a group of waiting requests).
    pub syncs: u64,
    /// A sync failed: every later durable write is refused.
    pub failed: bool,
}

type Syncer = GroupSyncer;

impl KvSync {
    /// The running syncer, started (with `sync`) if no `Kv` holds one.
    fn syncer(&self, sync: impl FnOnce() -> SyncFn) -> Arc<Syncer> {
        let mut slot = self.syncer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(syncer) = slot.upgrade() {
            return syncer;
        }
        // Named as the office writers are: vendor/sled runs the log writes a `pp-writer` thread
        // seals on that thread, instead of handing each to its IO pool and sleeping until a
        // pool thread is done (vendor/README.md) — the syncer's flush is the same call.
        let syncer = Arc::new(Syncer::start(
            "pp-writer-kv",
            Arc::clone(&self.state),
            sync(),
        ));
        *slot = Arc::downgrade(&syncer);
        syncer
    }
}

/// A plain durable key-value tree.
#[derive(Clone, Debug)]
pub struct Kv {
    store: Store,
    syncer: Arc<Syncer>,
    tree: sled::Tree,
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Values are plain data (strings, numbers, enums): serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A write applied to memory (or refused), and the answer of its sync.
type Applied<R> = (
    Result<R, StoreError>,
    Option<oneshot::Receiver<Result<(), StoreError>>>,
);

fn raw_batch(changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in changes {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}

fn batch<T: Serialize>(changes: &[(Vec<u8>, Option<T>)]) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in changes {
        match v {
            Some(v) => batch.insert(k.clone(), encode(v)),
            None => batch.remove(k.clone()),
        }
    }
    batch
}

impl Kv {
    pub(crate) fn new(store: Store, sync: Arc<KvSync>, tree: sled::Tree) -> Kv {
        let syncer = sync.syncer(|| {
            let store = store.clone();
            Box::new(move || store.sync())
        });
        Kv {
            store,
            syncer,
            tree,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Values under a key prefix, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Values under a key prefix, from `start` (inclusive), at most `limit`.
    pub fn scan_from<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.range(start.to_vec()..) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), decode(&k, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The last `limit` values under a key prefix, in key order (read from the end: the newest
    /// of ascending keys without walking the older ones).
    pub fn scan_last<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix).rev().take(limit) {
            let (k, v) = item?;
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        out.reverse();
        Ok(out)
    }

    /// Applies a durable write to memory, unless a sync has failed.
    fn apply<R>(&self, write: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.syncer.state.apply(|| {
            let _applying = self.store.applying();
            write()
        })
    }

    /// Applies a write and blocks until it is durable.
    fn apply_wait<R>(
        &self,
        write: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let out = self.apply(write)?;
        self.syncer.wait()?;
        Ok(out)
    }

    /// Applies a write now; `settle` the answer to wait until it is durable.
    fn apply_async<R>(&self, write: impl FnOnce() -> Result<R, StoreError>) -> Applied<R> {
        let applied = self.apply(write);
        let durable = applied.is_ok().then(|| self.syncer.wait_async());
        (applied, durable)
    }

    /// Resolves once everything written so far (by any `Kv` of the store) is durable: for a
    /// reader about to acknowledge what another request wrote. At once when nothing is waiting.
    pub fn durable(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.syncer.durable()
    }

    /// Applies puts (`Some`) and removes (`None`) atomically and makes them durable.
    pub fn commit<T: Serialize>(&self, changes: &[(Vec<u8>, Option<T>)]) -> Result<(), StoreError> {
        let batch = batch(changes);
        self.apply_wait(|| Ok(self.tree.apply_batch(batch)?))
    }

    /// Writes raw bytes (already encoded) atomically and durably.
    pub fn commit_raw(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let batch = raw_batch(changes);
        self.apply_wait(|| Ok(self.tree.apply_batch(batch)?))
    }

    /// [`Kv::commit_raw`] for callers that must not block: applied at once (readable, not
    /// acknowledged), the future resolves once the group sync that covers it has returned.
    pub fn commit_raw_async(
        &self,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let batch = raw_batch(changes);
        let (applied, durable) = self.apply_async(|| Ok(self.tree.apply_batch(batch)?));
        settle(applied, durable)
    }

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        encode(value)
    }

    /// `update_and_fetch` with `f` on decoded values; the new value, encoded.
    fn update_in_memory<T: Serialize + DeserializeOwned>(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<Option<sled::IVec>, StoreError> {
        let mut decode_error = None;
        let new = self.tree.update_and_fetch(key, |old| {
            let current = match old.map(|v| serde_json::from_slice::<T>(v)) {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    decode_error = Some(e.to_string());
                    None
                }
                None => None,
            };
            f(current).map(|v| encode(&v))
        })?;
        if let Some(message) = decode_error {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message,
            });
        }
        Ok(new)
    }

    /// Atomically replaces the value at `key` with `f(current)` (`None` removes it), makes it
    /// durable, and returns the new value. `f` may run more than once under contention.
    pub fn update<T: Serialize + DeserializeOwned>(
        &self,
        key: &[u8],
        f: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let new = self.apply_wait(|| self.update_in_memory(key, f))?;
        new.map(|v| decode(key, &v)).transpose()
    }

    /// [`Kv::update`] for async callers: applied (and `f` run) at once; the future resolves to
    /// the new value once it is durable.
    pub fn update_async<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        key: &[u8],
        f: impl FnMut(Option<T>) -> Option<T>,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send + 'static {
        let (new, durable) = self.apply_async(|| {
            let new = self.update_in_memory(key, f)?;
            new.map(|v| decode::<T>(key, &v)).transpose()
        });
        settle(new, durable)
    }

    /// Stores `value` at `key` only if nothing is there; true when stored. Not made durable.
    pub fn insert_if_absent<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<bool, StoreError> {
        let _applying = self.store.applying();
        Ok(self
            .tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(encode(value)))?
            .is_ok())
    }

    /// Stores `value` at `key` and makes it durable.
    pub fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        let value = encode(value);
        self.apply_wait(|| self.tree.insert(key, value).map(drop).map_err(Into::into))
    }

    /// [`Kv::put`] for async callers: applied at once, the future resolves once it is durable.
    pub fn put_async<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let value = encode(value);
        let (applied, durable) =
            self.apply_async(|| self.tree.insert(key, value).map(drop).map_err(Into::into));
        settle(applied, durable)
    }

    /// Removes `key` (durably).
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.apply_wait(|| self.tree.remove(key).map(drop).map_err(Into::into))
    }

    /// [`Kv::remove`] for async callers: applied at once, the future resolves once it is durable.
    pub fn remove_async(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let (applied, durable) =
            self.apply_async(|| self.tree.remove(key).map(drop).map_err(Into::into));
        settle(applied, durable)
    }

    /// Counters of the store's Kv syncer.
    pub fn sync_stats(&self) -> KvSyncStats {
        let state = &self.syncer.state;
        KvSyncStats {
            writes: state.applied.load(Ordering::SeqCst),
            syncs: state.syncs.load(Ordering::Relaxed),
            failed: state.failed.load(Ordering::SeqCst),
        }
    }

    /// A fresh id, ascending across restarts.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        self.store.generate_id()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Barrier;
    use std::thread;
    use std::time::Duration;

    use crossbeam_channel::Sender;

    use super::*;
    use crate::store::Durability;

    const THREADS: usize = 64;

    /// `kv`'s tree behind its own syncer, whose sync is `sync` instead of the store's.
    fn with_sync(kv: &Kv, sync: impl FnMut() -> Result<(), StoreError> + Send + 'static) -> Kv {
        let state = Arc::new(SyncState::default());
        Kv {
            store: kv.store.clone(),
            syncer: Arc::new(Syncer::start("pp-kv-test", state, Box::new(sync))),
            tree: kv.tree.clone(),
        }
    }

    /// A sync that waits for one token from the returned sender per call.
    fn gated(kv: &Kv) -> (Kv, Sender<()>) {
        let (open, gate) = crossbeam_channel::unbounded::<()>();
        let kv = with_sync(kv, move || {
            gate.recv().map_err(|_| StoreError::WriterStopped)
        });
        (kv, open)
    }

    fn queued(kv: &Kv) -> usize {
        kv.syncer.queued()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out waiting until {what}");
    }

    fn key(i: usize) -> Vec<u8> {
        format!("k/{i:03}").into_bytes()
    }

    #[test]
    fn concurrent_puts_share_syncs_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), Durability::Fsync).expect("open");
            let kv = store.kv("t").expect("kv");
            let start = Barrier::new(THREADS);
            thread::scope(|s| {
                for i in 0..THREADS {
                    let (kv, start) = (&kv, &start);
                    s.spawn(move || {
                        start.wait();
                        kv.put(&key(i), &i).expect("put");
                    });
                }
            });
            let stats = kv.sync_stats();
            assert_eq!(stats.writes, THREADS as u64);
            assert!(
                stats.syncs < THREADS as u64,
                "{THREADS} concurrent puts took {} syncs",
                stats.syncs
            );
        }
        // sled lets go of the folder's lock from its own threads, a moment after the last
        // handle is dropped: retry the reopen briefly rather than race them.
        let mut reopened = Store::open(dir.path(), Durability::Fsync);
        for _ in 0..50 {
            if reopened.is_ok() {
                break;
            }
            thread::sleep(std::time::Duration::from_millis(100));
            reopened = Store::open(dir.path(), Durability::Fsync);
        }
        let store = reopened.expect("reopen");
        let kv = store.kv("t").expect("kv");
        for i in 0..THREADS {
            assert_eq!(
                kv.get::<usize>(&key(i)).expect("get"),
                Some(i),
                "put {i} lost"
            );
        }
    }

    #[test]
    fn one_sync_answers_every_put_waiting_and_none_returns_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let (kv, open) = gated(&store.kv("t").expect("kv"));
        let returned = AtomicUsize::new(0);
        thread::scope(|s| {
            // The first put takes the syncer and holds it at the gate.
            let (kv0, returned0) = (&kv, &returned);
            s.spawn(move || {
                kv0.put(&key(0), &0).expect("put");
                returned0.fetch_add(1, Ordering::SeqCst);
            });
            wait_until("the first put is being synced", || {
                kv.sync_stats().writes == 1 && queued(&kv) == 0
            });
            for i in 1..THREADS {
                let (kv, returned) = (&kv, &returned);
                s.spawn(move || {
                    kv.put(&key(i), &i).expect("put");
                    returned.fetch_add(1, Ordering::SeqCst);
                });
            }
            wait_until("every other put is queued", || queued(&kv) == THREADS - 1);
            // Applied in memory, readable, but not acknowledged.
            for i in 0..THREADS {
                assert_eq!(kv.get::<usize>(&key(i)).expect("get"), Some(i));
            }
            assert_eq!(
                returned.load(Ordering::SeqCst),
                0,
                "a put returned before its sync"
            );
            open.send(()).expect("open the first sync");
            wait_until("the first put returns", || {
                returned.load(Ordering::SeqCst) == 1
            });
            thread::sleep(Duration::from_millis(20));
            assert_eq!(
                returned.load(Ordering::SeqCst),
                1,
                "a put returned before its sync"
            );
            open.send(()).expect("open the second sync");
        });
        assert_eq!(returned.load(Ordering::SeqCst), THREADS);
        assert_eq!(
            kv.sync_stats(),
            KvSyncStats {
                writes: THREADS as u64,
                syncs: 2,
                failed: false
            }
        );
    }

    #[test]
    fn async_writes_and_readers_resolve_only_after_the_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let (kv, open) = gated(&store.kv("t").expect("kv"));
        // Nothing written: a reader need not wait.
        actix_rt::System::new()
            .block_on(kv.durable())
            .expect("nothing waiting");
        let put = kv.put_async(&key(1), &1);
        let updated = kv.update_async::<u32>(&key(2), |old| Some(old.unwrap_or(0) + 7));
        let reader = kv.durable();
        assert_eq!(
            kv.get::<u32>(&key(2)).expect("get"),
            Some(7),
            "applied at once"
        );
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let waiter = thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                put.await.expect("put");
                updated.await.expect("update");
                reader.await.expect("reader");
            });
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "resolved before the sync"
        );
        for _ in 0..3 {
            open.send(()).expect("open");
        }
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("resolved after the sync");
        waiter.join().expect("waiter");
    }

    #[test]
    fn a_failed_sync_refuses_every_later_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let failing = Arc::new(AtomicBool::new(false));
        let fail = Arc::clone(&failing);
        let kv = with_sync(&store.kv("t").expect("kv"), move || {
            if fail.load(Ordering::SeqCst) {
                Err(StoreError::Sync("injected: EIO".into()))
            } else {
                Ok(())
            }
        });
        kv.put(&key(1), &1).expect("before the failure");
        failing.store(true, Ordering::SeqCst);
        let e = kv.put(&key(2), &2).expect_err("the failed sync");
        assert!(matches!(e, StoreError::Sync(_)), "{e}");
        failing.store(false, Ordering::SeqCst);
        // The disk works again; the store still refuses, before touching memory.
        assert!(kv.put(&key(3), &3).is_err());
        assert_eq!(kv.get::<u32>(&key(3)).expect("get"), None);
        assert!(kv.remove(&key(1)).is_err());
        assert_eq!(kv.get::<u32>(&key(1)).expect("get"), Some(1));
        assert!(kv.update::<u32>(&key(1), |_| Some(9)).is_err());
        assert!(kv.commit(&[(key(4), Some(4))]).is_err());
        assert!(kv.commit_raw(vec![(key(4), Some(b"4".to_vec()))]).is_err());
        actix_rt::System::new().block_on(async {
            assert!(kv.put_async(&key(5), &5).await.is_err());
            assert!(kv.remove_async(&key(1)).await.is_err());
            assert!(kv.update_async::<u32>(&key(1), |_| Some(9)).await.is_err());
            assert!(kv.durable().await.is_err());
        });
        assert_eq!(kv.get::<u32>(&key(1)).expect("get"), Some(1));
        assert!(kv.sync_stats().failed);
    }

    #[test]
    fn a_failed_sync_fails_every_writer_of_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let (open, gate) = crossbeam_channel::unbounded::<bool>();
        let kv = with_sync(&store.kv("t").expect("kv"), move || match gate.recv() {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Sync("injected: EIO".into())),
        });
        let failures = AtomicUsize::new(0);
        thread::scope(|s| {
            let (kv0, failures0) = (&kv, &failures);
            s.spawn(move || {
                if kv0.put(&key(0), &0).is_err() {
                    failures0.fetch_add(1, Ordering::SeqCst);
                }
            });
            wait_until("the first put is being synced", || {
                kv.sync_stats().writes == 1 && queued(&kv) == 0
            });
            for i in 1..THREADS {
                let (kv, failures) = (&kv, &failures);
                s.spawn(move || {
                    if kv.put(&key(i), &i).is_err() {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            wait_until("every other put is queued", || queued(&kv) == THREADS - 1);
            // The first group syncs; the second, of every other writer, fails.
            open.send(true).expect("first sync");
            open.send(false).expect("second sync");
        });
        assert_eq!(
            failures.load(Ordering::SeqCst),
            THREADS - 1,
            "every writer of the failed group gets the failure, the first none"
        );
        let stats = kv.sync_stats();
        assert_eq!((stats.syncs, stats.failed), (1, true));
        assert!(kv.put(&key(999), &1).is_err(), "refused after the failure");
    }

    /// Wall time of 64 concurrent durable puts, per round, with the old path (each caller runs
    /// `Store::sync` on its own thread) and with the syncer. A measurement, not a check:
    /// `cargo test --release -p platepool-engine --lib kv_puts_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn kv_puts_timing() {
        const ROUNDS: usize = 50;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::Fsync).expect("open");
        let kv = store.kv("t").expect("kv");
        let report = |what: &str, mut times: Vec<Duration>, syncs: u64| {
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "{what}: {THREADS} puts per round, {ROUNDS} rounds: median {:?}, mean {mean:?}, \
                 {:.1} syncs per round",
                times[times.len() / 2],
                syncs as f64 / ROUNDS as f64
            );
        };
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            let began = std::time::Instant::now();
            kv.put(format!("alone/{round}").as_bytes(), &round)
                .expect("put");
            times.push(began.elapsed() * THREADS as u32);
        }
        report(
            "sequential (one put alone, time x 64)",
            times,
            (ROUNDS * THREADS) as u64,
        );
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            let start = Barrier::new(THREADS + 1);
            let began = thread::scope(|s| {
                for i in 0..THREADS {
                    let (kv, store, start) = (&kv, &store, &start);
                    s.spawn(move || {
                        start.wait();
                        // What `put` did before: write, then sync on the caller's thread.
                        kv.insert_if_absent(&key(round * THREADS + i), &i)
                            .expect("insert");
                        store.sync().expect("sync");
                    });
                }
                start.wait();
                std::time::Instant::now()
            });
            times.push(began.elapsed());
        }
        report("before (sync per caller)", times, (ROUNDS * THREADS) as u64);
        let mut times = Vec::new();
        let syncs = kv.sync_stats().syncs;
        for round in ROUNDS..2 * ROUNDS {
            let start = Barrier::new(THREADS + 1);
            let began = thread::scope(|s| {
                for i in 0..THREADS {
                    let (kv, start) = (&kv, &start);
                    s.spawn(move || {
                        start.wait();
                        kv.put(&key(round * THREADS + i), &i).expect("put");
                    });
                }
                start.wait();
                std::time::Instant::now()
            });
            times.push(began.elapsed());
        }
        report("after (blocking put)", times, kv.sync_stats().syncs - syncs);
        let mut times = Vec::new();
        let syncs = kv.sync_stats().syncs;
        actix_rt::System::new().block_on(async {
            for round in 2 * ROUNDS..3 * ROUNDS {
                let began = std::time::Instant::now();
                let puts: Vec<_> = (0..THREADS)
                    .map(|i| actix_rt::spawn(kv.put_async(&key(round * THREADS + i), &i)))
                    .collect();
                for put in puts {
                    put.await.expect("task").expect("put");
                }
                times.push(began.elapsed());
            }
        });
        report(
            "after (put_async, one worker thread)",
            times,
            kv.sync_stats().syncs - syncs,
        );
    }
}
