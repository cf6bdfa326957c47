//! Group commit for the office actors, on a fixed set of writer threads shared by every office.
//!
//! An office hands each step's records to its [`Writer`]; the writer thread it was given takes
//! every commit waiting in its queue, from every office it serves, writes each office's records
//! as one sled batch into that office's tree, makes them durable with one flush (and one
//! `fdatasync`, see [`crate::store::Durability`]) for all of them, then answers them all in order.
//! There are as many writer threads as cores, started with the first office: the threads do not
//! grow with the offices, and under load one sync serves several offices' groups.
//!
//! **Fail-stop, per office.** After one failed write or sync for an office, nothing later of
//! that office is written or confirmed: a later sync that succeeds does not make the failed group
//! durable (the kernel may have dropped its pages), and the office's later groups were built on
//! it in memory. The office's actor refuses writes until the supervisor restarts it with a new
//! [`Writer`] (a fresh failure state) on the same threads. Other offices in a group whose sync
//! failed fail with it; offices in other groups go on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::record::Record;
use crate::store::{OfficeStore, StoreError};

/// Most commits one group commit takes; the rest wait for the next one.
pub const GROUP_COMMIT_MAX: usize = 4_096;
/// Capacity of a writer thread's queue: past it, callers wait (the actors' mailboxes bound it
/// first).
pub const WRITER_QUEUE_CAPACITY: usize = 65_536;

/// The writer threads of one store, started with the first office's writer.
#[derive(Debug, Default)]
pub(crate) struct WriterThreads {
    queues: OnceLock<Result<Vec<Sender<Commit>>, String>>,
    next: AtomicUsize,
}

impl WriterThreads {
    /// One writer thread per core. The threads hold no store: they end when the store is
    /// dropped (the last queue sender with it).
    fn queues(&self) -> Result<&[Sender<Commit>], StoreError> {
        let queues = self.queues.get_or_init(|| {
            let threads = thread::available_parallelism().map_or(1, |n| n.get());
            (0..threads)
                .map(|i| {
                    let (tx, rx) = crossbeam_channel::bounded::<Commit>(WRITER_QUEUE_CAPACITY);
                    thread::Builder::new()
                        // The name matters to vendor/sled: its `pp-writer` threads write the log
                        // buffers they seal themselves (vendor/README.md).
                        .name(format!("pp-writer-{i}"))
                        .spawn(move || writer_loop(&rx))
                        .map(|_| tx)
                        .map_err(|e| format!("cannot start writer thread: {e}"))
                })
                .collect()
        });
        queues.as_deref().map_err(|e| StoreError::Sled(e.clone()))
    }

    /// A writer for one office (one incarnation of it), on the next thread in turn.
    pub(crate) fn writer(&self, office: OfficeStore) -> Result<Writer, StoreError> {
        let queues = self.queues()?;
        let tx = queues[self.next.fetch_add(1, Ordering::Relaxed) % queues.len()].clone();
        Ok(Writer {
            tx,
            office: Arc::new(OfficeWrites {
                store: office,
                failure: Mutex::default(),
            }),
            stats: Arc::default(),
        })
    }
}

/// One office incarnation's side of the writer threads: where its records go and whether one
/// of its groups failed.
#[derive(Debug)]
struct OfficeWrites {
    store: OfficeStore,
    failure: Mutex<Option<StoreError>>,
}

impl OfficeWrites {
    fn failure(&self) -> Option<StoreError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, e: &StoreError) {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| e.clone());
    }
}

/// Counters of an office's writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Group commits made with this office's records (each one sled batch and one flush).
    pub commits: AtomicU64,
    pub records: AtomicU64,
    /// A write or sync failed: memory may be ahead of the disk.
    pub failed: AtomicBool,
}

/// The sending side of an office's writer.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: Sender<Commit>,
    office: Arc<OfficeWrites>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Queues records; the receiver answers once they are durable (or could not be written).
    pub fn commit(&self, records: Vec<Record>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        self.send(records, Done::Channel(done));
        rx
    }

    /// Queues records; `then` runs on the writer thread once they are durable (or could not be
    /// written), or at once if the writer has stopped.
    pub fn commit_then(
        &self,
        records: Vec<Record>,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.send(records, Done::Call(Box::new(then)));
    }

    fn send(&self, records: Vec<Record>, done: Done) {
        let commit = Commit {
            records,
            office: Arc::clone(&self.office),
            stats: Arc::clone(&self.stats),
            done,
        };
        if let Err(e) = self.tx.send(commit) {
            e.into_inner().done.tell(Err(StoreError::WriterStopped));
        }
    }
}

/// Records to make durable, whose they are, and who to tell when they are.
struct Commit {
    records: Vec<Record>,
    office: Arc<OfficeWrites>,
    stats: Arc<WriterStats>,
    done: Done,
}

/// How a commit's outcome is told.
enum Done {
    /// Sent on a channel.
    Channel(oneshot::Sender<Result<(), StoreError>>),
    /// Called on the writer thread once the group is durable (or failed): the office actor
    /// answers its callers from here, without a trip back through its own thread.
    Call(Box<dyn FnOnce(Result<(), StoreError>) + Send>),
}

impl Done {
    fn tell(self, result: Result<(), StoreError>) {
        match self {
            Done::Channel(done) => {
                let _ = done.send(result);
            }
            Done::Call(then) => then(result),
        }
    }
}

/// The offices of one group, in the order they first appear, each with its records.
struct Batch {
    office: Arc<OfficeWrites>,
    stats: Arc<WriterStats>,
    records: Vec<Record>,
    result: Result<(), StoreError>,
}

fn writer_loop(rx: &Receiver<Commit>) {
    let mut group: Vec<Commit> = Vec::new();
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
        let mut batches = batches(&mut group);
        write_and_sync(&mut batches);
        for commit in group.drain(..) {
            let result = batches
                .iter()
                .find(|b| Arc::ptr_eq(&b.office, &commit.office))
                .map_or(Ok(()), |b| b.result.clone());
            commit.done.tell(result);
        }
    }
}

/// Gathers a group's records by office (each office's in the order given).
fn batches(group: &mut [Commit]) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    for commit in group {
        let at = match batches
            .iter()
            .position(|b| Arc::ptr_eq(&b.office, &commit.office))
        {
            Some(at) => at,
            None => {
                batches.push(Batch {
                    office: Arc::clone(&commit.office),
                    stats: Arc::clone(&commit.stats),
                    records: Vec::new(),
                    result: Ok(()),
                });
                batches.len() - 1
            }
        };
        batches[at].records.append(&mut commit.records);
    }
    batches
}

/// Writes every office's records, then syncs once for all of them. An office that failed
/// before is refused; one whose write or the sync fails is failed from now on.
fn write_and_sync(batches: &mut [Batch]) {
    // (batch, the key of its last audit group)
    let mut written: Vec<(usize, Option<u64>)> = Vec::new();
    for (i, b) in batches.iter_mut().enumerate() {
        b.result = match b.office.failure() {
            Some(e) => Err(e),
            // Only barriers (commits of nothing): every group before them is answered.
            None if b.records.is_empty() => Ok(()),
            None => b
                .office
                .store
                .write(&b.records)
                .map(|audit| written.push((i, audit))),
        };
    }
    if let Some(&(first, _)) = written.first() {
        match batches[first].office.store.store().sync() {
            Err(e) => {
                for &(i, _) in &written {
                    batches[i].result = Err(e.clone());
                }
            }
            // Synced: the audit trail may show these groups' entries (before they are answered).
            Ok(()) => {
                for &(i, audit) in &written {
                    if let Some(key) = audit {
                        batches[i].office.store.audit_durable_up_to(key);
                    }
                }
            }
        }
    }
    for b in batches.iter() {
        if b.records.is_empty() {
            continue;
        }
        b.stats.commits.fetch_add(1, Ordering::Relaxed);
        b.stats
            .records
            .fetch_add(b.records.len() as u64, Ordering::Relaxed);
        if let Err(e) = &b.result {
            b.stats.failed.store(true, Ordering::Relaxed);
            b.office.fail(e);
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn offices_share_the_writer_threads_and_fail_one_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), Durability::Flush).expect("store opens");
        let offices: Vec<_> = (0..12)
            .map(|i| store.office(&format!("o{i}")).expect("office tree"))
            .collect();
        let writers: Vec<Writer> = offices
            .iter()
            .map(|o| o.start_writer("unused").expect("writer"))
            .collect();
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let queues = store_threads(&store);
        assert_eq!(
            queues, threads,
            "one writer thread per core, not per office"
        );
        for (i, w) in writers.iter().enumerate() {
            durable(w, vec![config(&format!("office {i}"))]).expect("commit");
        }
        // Office 3's group fails (as a failed write or sync would mark it): its later commits
        // and barriers are refused, the other offices on the same threads go on.
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
        let kept = offices[3].load().expect("load").config.expect("config");
        assert_eq!(
            kept.name, "office 3",
            "nothing after the failure was written"
        );
        assert_eq!(
            offices[4]
                .load()
                .expect("load")
                .config
                .expect("config")
                .name,
            "again 4"
        );
        // A restart's new writer for the office starts without the failure.
        let fresh = offices[3].start_writer("unused").expect("writer");
        durable(&fresh, vec![config("restarted")]).expect("commit after restart");
        assert_eq!(
            offices[3]
                .load()
                .expect("load")
                .config
                .expect("config")
                .name,
            "restarted"
        );
        assert!(writers[3].stats.failed.load(Ordering::Relaxed));
        assert_eq!(writers[4].stats.commits.load(Ordering::Relaxed), 2);
    }

    fn store_threads(store: &Store) -> usize {
        store.writer_threads().queues().map_or(0, <[_]>::len)
    }
}
