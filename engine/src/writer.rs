//! Group commit for the office actors, through the store's durability pipeline.
//!
//! An office hands each step's records to its [`Writer`], which queues them with the office's
//! other steps waiting and, for the first of them, hands the office's queue to the store's
//! committer ([`crate::commit_pipeline`]). The committer takes every office's queue at once,
//! writes each as one sled batch into its office's tree on its own thread, and makes them
//! durable with one flush + fdatasync — the same sync that answers the registry's and the Kv
//! trees' writes waiting with them — then answers them all, on its thread (the actor's reply to
//! its callers). The threads do not grow with the offices: one committer per store. Writing on
//! the committer's thread (named `pp-writer-…`) lets vendor/sled write the log buffers its flush
//! seals there too, rather than on its IO pool (vendor/README.md).
//!
//! **Fail-stop, per office.** After one failed write or sync for an office, nothing later of
//! that office is written or confirmed: a later sync that succeeds does not make the failed group
//! durable (the kernel may have dropped its pages), and the office's later groups were built on
//! it in memory. The office's actor refuses writes until the supervisor restarts it with a new
//! [`Writer`] (a fresh failure state). A failed sync fails every group it covered, of every
//! office; groups written after it go on, each told by the sync that covers it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::commit_pipeline::Written;
use crate::record::Record;
use crate::store::{OfficeStore, StoreError};

/// Who to tell once a step's records are durable.
type Then = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Steps waiting for the committer to take them.
#[derive(Default)]
struct Queued {
    records: Vec<Record>,
    thens: Vec<Then>,
}

/// One office incarnation's side of the pipeline: where its records go, what waits, and
/// whether one of its groups failed.
struct OfficeWrites {
    store: OfficeStore,
    queued: Mutex<Queued>,
    failure: Mutex<Option<StoreError>>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for OfficeWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfficeWrites").finish_non_exhaustive()
    }
}

impl OfficeWrites {
    fn failure(&self) -> Option<StoreError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, e: &StoreError) {
        self.stats.failed.store(true, Ordering::Relaxed);
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| e.clone());
    }

    /// On the committer's thread: writes every step waiting as one sled batch, and says who to
    /// tell once the sync covering it has returned.
    fn write_queued(self: Arc<Self>) -> Written {
        let Queued { records, thens } =
            std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        let written = match self.failure() {
            Some(e) => Err(e),
            // Only barriers: answered by the sync that covers what was written before.
            None if records.is_empty() => Ok(None),
            None => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .records
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.store.write(&records).map(Some)
            }
        };
        let changed = matches!(written, Ok(Some(_)));
        let tell = move |synced: Result<(), StoreError>| {
            let result = written.and_then(|audit| synced.map(|()| audit));
            let result = match result {
                Err(e) => {
                    self.fail(&e);
                    Err(e)
                }
                // Refused if an earlier group failed (told before this one).
                Ok(audit) => match self.failure() {
                    Some(e) => Err(e),
                    None => {
                        // Synced: the audit trail may show this group's entries (before it is
                        // answered).
                        if let Some(key) = audit.flatten() {
                            self.store.audit_durable_up_to(key);
                        }
                        Ok(())
                    }
                },
            };
            for then in thens {
                then(result.clone());
            }
        };
        Written {
            changed,
            tell: Box::new(tell),
        }
    }
}

/// Counters of an office's writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Groups written with this office's records (each one sled batch, of every step waiting).
    pub commits: AtomicU64,
    pub records: AtomicU64,
    /// A write or sync failed: memory may be ahead of the disk.
    pub failed: AtomicBool,
}

/// An office's writer (one incarnation of the office).
#[derive(Clone, Debug)]
pub struct Writer {
    office: Arc<OfficeWrites>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    pub(crate) fn new(store: OfficeStore) -> Writer {
        let stats = Arc::<WriterStats>::default();
        Writer {
            office: Arc::new(OfficeWrites {
                store,
                queued: Mutex::default(),
                failure: Mutex::default(),
                stats: Arc::clone(&stats),
            }),
            stats,
        }
    }

    /// Queues records; the receiver answers once they are durable (or could not be written).
    /// No records: answers once every group queued before is durable (a barrier).
    pub fn commit(&self, records: Vec<Record>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        self.commit_then(records, move |r| {
            let _ = done.send(r);
        });
        rx
    }

    /// Queues records; `then` runs once they are durable or could not be written: on the
    /// committer's thread, or at once after a failure (it must not block).
    pub fn commit_then(
        &self,
        records: Vec<Record>,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let office = &self.office;
        if let Some(e) = office.failure() {
            self.stats.failed.store(true, Ordering::Relaxed);
            then(Err(e));
            return;
        }
        let first = {
            let mut queued = office.queued.lock().unwrap_or_else(PoisonError::into_inner);
            queued.records.extend(records);
            queued.thens.push(Box::new(then));
            queued.thens.len() == 1
        };
        // The first step waiting hands the queue over; the committer takes it with every
        // step queued by then.
        if first {
            let taken = Arc::clone(office);
            office
                .store
                .store()
                .pipeline()
                .write(Box::new(move || taken.write_queued()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Notice, OfficeConfig, OfficeRules};
    use crate::store::{Durability, Store};

    fn config(name: &str) -> Record {
        Record::Config(Box::new(OfficeConfig {
            name: name.into(),
            prefix: "粤K".into(),
            classes: vec!["small".into()],
            rules: OfficeRules::default(),
            notice: Notice {
                version: "v1".into(),
                text: "业务须知".into(),
            },
        }))
    }

    fn durable(writer: &Writer, records: Vec<Record>) -> Result<(), StoreError> {
        writer
            .commit(records)
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterStopped))
    }

    fn office_name(store: &OfficeStore) -> String {
        store.load().expect("load").config.expect("config").name
    }

    #[test]
    fn offices_share_the_store_pipeline_and_fail_one_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Flush).expect("store opens");
        let offices: Vec<_> = (0..12)
            .map(|i| store.office(&format!("o{i}")).expect("office tree"))
            .collect();
        let writers: Vec<Writer> = offices
            .iter()
            .map(|o| o.start_writer("unused").expect("writer"))
            .collect();
        for (i, w) in writers.iter().enumerate() {
            durable(w, vec![config(&format!("office {i}"))]).expect("commit");
        }
        // Office 3's group fails (as a failed write or sync would mark it): its later commits
        // and barriers are refused, the other offices on the same pipeline go on.
        writers[3]
            .office
            .fail(&StoreError::Sync("disk full".into()));
        let refused = durable(&writers[3], vec![config("after the failure")]);
        assert!(matches!(refused, Err(StoreError::Sync(_))), "{refused:?}");
        assert!(
            durable(&writers[3], Vec::new()).is_err(),
            "a barrier is refused too"
        );
        for (i, w) in writers.iter().enumerate().filter(|(i, _)| *i != 3) {
            durable(w, vec![config(&format!("again {i}"))]).expect("other offices commit");
            durable(w, Vec::new()).expect("and pass barriers");
        }
        assert_eq!(
            office_name(&offices[3]),
            "office 3",
            "nothing after the failure was written"
        );
        assert_eq!(office_name(&offices[4]), "again 4");
        // A restart's new writer for the office starts without the failure.
        let fresh = offices[3].start_writer("unused").expect("writer");
        durable(&fresh, vec![config("restarted")]).expect("commit after restart");
        assert_eq!(office_name(&offices[3]), "restarted");
        assert!(writers[3].stats.failed.load(Ordering::Relaxed));
        assert_eq!(writers[4].stats.commits.load(Ordering::Relaxed), 2);
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

    /// Offices' groups, gateway Kv writes and registry writes waiting at the same time are
    /// made durable by one sync of the store, not one per writer or per kind of writer.
    #[test]
    fn concurrent_office_kv_and_registry_writes_share_one_sync() {
        const OFFICES: usize = 12;
        const KV_PUTS: usize = 16;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Flush).expect("store opens");
        let offices: Vec<_> = (0..OFFICES)
            .map(|i| store.office(&format!("o{i}")).expect("office tree"))
            .collect();
        let writers: Vec<Writer> = offices
            .iter()
            .map(|o| o.start_writer("unused").expect("writer"))
            .collect();
        let gateway = store.kv("gateway").expect("kv");
        let registry = store.kv("registry").expect("kv");
        let gate = Arc::clone(&store.sync_gate);
        gate.arm();
        let before = store.pipeline_stats();
        std::thread::scope(|s| {
            // The first write takes the committer into a sync, held at the disk.
            let first = s.spawn(|| gateway.put(b"first", &0u32));
            gate.wait_held();
            let office_answers: Vec<_> = writers
                .iter()
                .enumerate()
                .map(|(i, w)| w.commit(vec![config(&format!("office {i}"))]))
                .collect();
            let puts: Vec<_> = (0..KV_PUTS)
                .map(|i| {
                    let gateway = &gateway;
                    s.spawn(move || gateway.put(format!("k{i}").as_bytes(), &i))
                })
                .collect();
            let blacklisting =
                registry.commit_raw_async(vec![(b"bl/u".to_vec(), Some(b"{}".to_vec()))]);
            let waiting = OFFICES + KV_PUTS + 1;
            wait_until("every write waits for the committer", || {
                store.pipeline().queued() == waiting
            });
            assert_eq!(
                store.pipeline_stats().syncs,
                before.syncs,
                "none synced yet"
            );
            gate.release();
            first.join().expect("thread").expect("first put");
            for answer in office_answers {
                answer
                    .blocking_recv()
                    .expect("answered")
                    .expect("office group durable");
            }
            for put in puts {
                put.join().expect("thread").expect("kv put");
            }
            actix_rt::System::new()
                .block_on(blacklisting)
                .expect("registry write durable");
        });
        let after = store.pipeline_stats();
        assert_eq!(
            after.syncs - before.syncs,
            2,
            "the held sync, then one for the {} writes waiting behind it",
            OFFICES + KV_PUTS + 1
        );
        assert_eq!(
            after.applied - before.applied,
            (1 + OFFICES + KV_PUTS + 1) as u64
        );
        assert_eq!(office_name(&offices[7]), "office 7");
    }
}
