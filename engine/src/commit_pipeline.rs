//! One durability pipeline per store: the storage boundary every durable write goes through.
//!
//! A writer either hands its change to the committer ([`CommitPipeline::write`]: the offices'
//! groups, `writer.rs`; the committer applies it on its own thread just before its next sync),
//! or applies it on its own thread with [`CommitPipeline::apply`] (the registry's and the
//! gateway's [`crate::kv::Kv`] writes, which need sled's answer at once) and asks to be told
//! once it is durable ([`CommitPipeline::when_durable`]). Every applied write takes a *ticket*
//! (the count of writes applied so far, this one included). The store's one committer thread
//! takes every request waiting, applies the writes handed to it, reads how far writes were
//! applied, syncs once ([`DurableLog::sync`]: for sled, one flush + fdatasync) and answers every
//! request whose ticket that sync covered — those that arrived while it ran included. Concurrent groups of different offices, of the Kv trees and of
//! the registry therefore share one sync instead of queueing behind each other's flushes of the
//! same log, and nobody is told before the sync covering their write has returned (SPEC I2).
//!
//! **Failures.** A failed sync fails every write it covered (every ticket up to what was applied
//! when it started), for every writer, and the committer goes on: what to refuse afterwards is
//! each writer's decision — an office stops (fail-stop per office, `writer.rs`) until the
//! supervisor restarts it; the Kv trees stop for good ([`FailStop`]). A later ticket is told the
//! result of the sync that covers it.
//!
//! A backend that makes a write durable by other means (a database transaction's commit)
//! implements [`DurableLog`]; the callers see only tickets and answers.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most requests waiting for the committer: a writer beyond it blocks until a sync drains the
/// queue (back-pressure rather than a queue that grows without bound while the disk stalls).
pub const WAITING_MAX: usize = 65_536;

/// What makes a store's applied writes durable.
///
/// In two steps, on two threads, so that one round's device sync overlaps the next round's
/// writes: [`DurableLog::write_out`] (sled: flush its log into the file) on the committer, then
/// the [`DurableLog::syncer`]'s call (sled: fdatasync of the file) on the syncing thread, which
/// covers every round written out before it and answers them in order.
pub trait DurableLog: Send + 'static {
    /// Writes every change applied before this call out of the process.
    fn write_out(&mut self) -> Result<(), StoreError>;

    /// What makes everything written out before its call durable (run on the syncing thread).
    fn syncer(&self) -> SyncFn;
}

/// The device sync of a [`DurableLog`].
pub type SyncFn = Box<dyn FnMut() -> Result<(), StoreError> + Send>;

/// A log whose writing out is all there is to it (tests).
impl<F: FnMut() -> Result<(), StoreError> + Send + 'static> DurableLog for F {
    fn write_out(&mut self) -> Result<(), StoreError> {
        self()
    }

    fn syncer(&self) -> SyncFn {
        Box::new(|| Ok(()))
    }
}

/// What the committer does once a ticket's sync has returned (on the committer's thread: it
/// must not block).
pub type Told = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A change the committer applies on its own thread before its next sync.
pub type Write = Box<dyn FnOnce() -> Written + Send>;

/// What a [`Write`] did: whether it changed the store (and so needs a sync), and who to tell
/// the result of the sync that covers it.
pub struct Written {
    pub changed: bool,
    pub tell: Told,
}

impl std::fmt::Debug for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Written")
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

struct Waiter {
    ticket: u64,
    tell: Told,
}

enum Request {
    Wait(Waiter),
    Write(Write),
}

/// How far writes were applied and made durable.
#[derive(Debug, Default)]
struct Progress {
    /// Tickets handed out: a write takes the next one once it is applied.
    applied: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    syncs: AtomicU64,
    failed_syncs: AtomicU64,
    /// The tickets each failed sync covered (those after the last durable one, up to what was
    /// applied when it began), with its error.
    failures: Mutex<Vec<(u64, u64, StoreError)>>,
}

impl Progress {
    /// The answer for `ticket` if a sync already gave it.
    fn settled(&self, ticket: u64) -> Option<Result<(), StoreError>> {
        if self.failed_syncs.load(Ordering::SeqCst) > 0 {
            let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, _, e)) = failures
                .iter()
                .find(|(after, upto, _)| *after < ticket && ticket <= *upto)
            {
                return Some(Err(e.clone()));
            }
        }
        (ticket <= self.durable.load(Ordering::SeqCst)).then_some(Ok(()))
    }

    fn record(&self, upto: u64, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                self.durable.fetch_max(upto, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(error = %e, "group sync failed: every write it covered fails");
                let after = self.durable.load(Ordering::SeqCst);
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                // Each failed sync covers a new range (nothing became durable since the last);
                // a range only grows while syncs keep failing.
                match failures.last_mut() {
                    Some(last) if last.0 == after => {
                        last.1 = last.1.max(upto);
                        last.2 = e.clone();
                    }
                    _ => failures.push((after, upto, e.clone())),
                }
                self.failed_syncs.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Counters of a store's pipeline, for metrics, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    /// Durable writes applied (each one a ticket).
    pub applied: u64,
    /// Rounds made durable (each one writing out every change applied before it and answering
    /// every write waiting that it covered; one device sync may cover several rounds).
    pub syncs: u64,
    pub failed_syncs: u64,
}

/// The sending side of a store's committer thread; the thread ends once this is dropped and
/// what is queued has been answered.
#[derive(Debug)]
pub struct CommitPipeline {
    /// `None` once dropping, or if the thread could not start (every request is then refused).
    tx: Option<Sender<Request>>,
    /// The committer (writes out), then the syncing thread (syncs and answers).
    threads: Vec<thread::JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl CommitPipeline {
    /// Starts the committer thread `name`, which makes writes durable with `log`. A name
    /// starting with `pp-writer` lets vendor/sled run the log writes the flush seals on that
    /// thread instead of handing them to its IO pool (vendor/README.md).
    pub fn start(name: &str, log: impl DurableLog) -> CommitPipeline {
        let (tx, rx) = crossbeam_channel::bounded::<Request>(WAITING_MAX);
        let (rounds_tx, rounds) = crossbeam_channel::bounded::<Round>(ROUNDS_IN_FLIGHT);
        let progress = Arc::new(Progress::default());
        let mut threads = Vec::new();
        let sync = log.syncer();
        let syncing = {
            let progress = Arc::clone(&progress);
            thread::Builder::new()
                .name(SYNC_THREAD.to_string())
                .spawn(move || sync_loop(&rounds, &progress, sync))
        };
        let committing = syncing.map(|t| threads.push(t)).and_then(|()| {
            let progress = Arc::clone(&progress);
            thread::Builder::new()
                .name(name.to_string())
                .spawn(move || commit_loop(&rx, &rounds_tx, &progress, log))
        });
        match committing {
            Ok(thread) => {
                threads.insert(0, thread);
                CommitPipeline {
                    tx: Some(tx),
                    threads,
                    progress,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, name, "cannot start a committer thread");
                CommitPipeline {
                    tx: None,
                    threads,
                    progress,
                }
            }
        }
    }

    /// Applies a write with `write` on the caller's thread and takes its ticket.
    pub fn apply<R>(
        &self,
        write: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<(R, u64), StoreError> {
        let out = write()?;
        Ok((
            out,
            self.progress.applied.fetch_add(1, Ordering::SeqCst) + 1,
        ))
    }

    /// The ticket of the last write applied: once it is durable, so is everything applied so
    /// far (a reader about to show what others wrote waits for it).
    pub fn last_ticket(&self) -> u64 {
        self.progress.applied.load(Ordering::SeqCst)
    }

    /// Tells `tell` once `ticket` is durable or its sync failed: at once (on this thread) if a
    /// sync already answered it, else on the committer's thread.
    pub fn when_durable(&self, ticket: u64, tell: Told) {
        if let Some(result) = self.progress.settled(ticket) {
            tell(result);
            return;
        }
        self.send(Request::Wait(Waiter { ticket, tell }));
    }

    /// Hands a change to the committer: it runs `write` on its thread before its next sync
    /// and tells the [`Written`] `write` returned that sync's result.
    pub fn write(&self, write: Write) {
        self.send(Request::Write(write));
    }

    fn send(&self, request: Request) {
        let refused = match &self.tx {
            Some(tx) => tx.send(request).err().map(|e| e.into_inner()),
            None => Some(request),
        };
        match refused {
            Some(Request::Wait(w)) => (w.tell)(Err(StoreError::WriterStopped)),
            Some(Request::Write(write)) => (write().tell)(Err(StoreError::WriterStopped)),
            None => {}
        }
    }

    /// Blocks until `ticket` is durable.
    pub fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.when_durable(
            ticket,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(StoreError::WriterStopped))
    }

    /// Resolves once `ticket` is durable: at once if it already is.
    pub fn durable(
        &self,
        ticket: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let settled = self.progress.settled(ticket);
        let waiting = settled.is_none().then(|| {
            let (tx, rx) = oneshot::channel();
            self.when_durable(
                ticket,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            rx
        });
        async move {
            match waiting {
                Some(rx) => rx.await.unwrap_or(Err(StoreError::WriterStopped)),
                None => settled.unwrap_or(Ok(())),
            }
        }
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            applied: self.progress.applied.load(Ordering::SeqCst),
            syncs: self.progress.syncs.load(Ordering::Relaxed),
            failed_syncs: self.progress.failed_syncs.load(Ordering::Relaxed),
        }
    }

    /// Requests waiting for a sync (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for CommitPipeline {
    fn drop(&mut self) {
        // Closing the channel ends the threads once they have answered what is queued; joining
        // them releases what their syncs hold (sled's database, a file) before the owner is
        // gone. Dropped on one of them (the last handle was in a request it told), that one
        // ends by itself.
        self.tx = None;
        for thread in self.threads.drain(..) {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The name of a pipeline's syncing thread.
pub const SYNC_THREAD: &str = "pp-sync";

/// Rounds written out and waiting for the syncing thread: past it, the committer waits.
const ROUNDS_IN_FLIGHT: usize = 64;

/// One round of the committer: written out up to `upto` (or failed), with the requests it
/// covers, for the syncing thread to make durable and answer.
struct Round {
    upto: u64,
    written: Result<(), StoreError>,
    waiters: Vec<Waiter>,
}

fn commit_loop(
    rx: &Receiver<Request>,
    rounds: &Sender<Round>,
    progress: &Progress,
    mut log: impl DurableLog,
) {
    let mut waiting: Vec<Waiter> = Vec::new();
    let mut written_upto = 0;
    loop {
        if waiting.is_empty() {
            match rx.recv() {
                Ok(first) => take(first, &mut waiting, progress),
                Err(_) => return,
            }
        }
        for request in rx.try_iter() {
            take(request, &mut waiting, progress);
        }
        // Every ticket up to `upto` was applied before this writing out: the round covers it.
        let upto = progress.applied.load(Ordering::SeqCst);
        let written = if upto <= written_upto {
            // Nothing applied since the last round (requests with no change).
            Ok(())
        } else {
            log.write_out()
        };
        if written.is_ok() {
            written_upto = written_upto.max(upto);
        }
        // Requests that came meanwhile for writes applied before it are covered too; changes
        // handed over meanwhile are applied now and wait for the next round.
        for request in rx.try_iter() {
            take(request, &mut waiting, progress);
        }
        let (covered, later) = waiting.drain(..).partition(|w| w.ticket <= upto);
        waiting = later;
        let round = Round {
            upto,
            written,
            waiters: covered,
        };
        if let Err(e) = rounds.send(round) {
            for w in e.into_inner().waiters {
                (w.tell)(Err(StoreError::WriterStopped));
            }
        }
    }
}

/// Makes rounds durable with one device sync for every round written out before it, then
/// answers them in order.
fn sync_loop(rounds: &Receiver<Round>, progress: &Progress, mut sync: SyncFn) {
    while let Ok(first) = rounds.recv() {
        let mut batch = vec![first];
        batch.extend(rounds.try_iter());
        let needs_sync = batch
            .iter()
            .any(|r| r.written.is_ok() && r.upto > progress.durable.load(Ordering::SeqCst));
        let synced = if needs_sync { sync() } else { Ok(()) };
        for round in batch {
            let result = round.written.and(synced.clone());
            if result.is_err() || round.upto > progress.durable.load(Ordering::SeqCst) {
                progress.record(round.upto, &result);
            }
            for w in round.waiters {
                // A ticket of an earlier round that failed stays failed.
                let told = progress.settled(w.ticket).unwrap_or_else(|| result.clone());
                (w.tell)(told);
            }
        }
    }
}

/// Queues a request; a change handed over is applied here and takes its ticket.
fn take(request: Request, waiting: &mut Vec<Waiter>, progress: &Progress) {
    let waiter = match request {
        Request::Wait(w) => w,
        Request::Write(write) => {
            let Written { changed, tell } = write();
            // No change: covered by whatever was applied before it.
            let ticket = if changed {
                progress.applied.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                progress.applied.load(Ordering::SeqCst)
            };
            Waiter { ticket, tell }
        }
    };
    waiting.push(waiter);
}

/// Fail-stop for a family of writers (the Kv trees of a store): after one of their writes'
/// syncs failed, every later write is refused before it is applied, and every write still
/// waiting is told the failure, even if a later sync covers it.
#[derive(Debug, Default)]
pub struct FailStop {
    failed: AtomicBool,
    failure: Mutex<Option<StoreError>>,
}

impl FailStop {
    /// Refuses a write once a sync has failed.
    pub fn check(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        Err(failure.clone().unwrap_or(StoreError::WriterStopped))
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// A sync's answer for one of these writers, failing them all from now on if it failed.
    pub fn settle(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        match result {
            Ok(()) => self.check(),
            Err(e) => {
                self.failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert_with(|| e.clone());
                self.failed.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn told(pipeline: &CommitPipeline, ticket: u64) -> Receiver<Result<(), StoreError>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        pipeline.when_durable(
            ticket,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx
    }

    #[test]
    fn a_sync_answers_what_it_covered_also_requests_that_came_while_it_ran() {
        let (open, gate) = crossbeam_channel::unbounded::<bool>();
        let (entered_tx, entered) = crossbeam_channel::unbounded::<()>();
        let pipeline = CommitPipeline::start("pp-writer-test", move || {
            let _ = entered_tx.send(());
            match gate.recv() {
                Ok(true) => Ok(()),
                _ => Err(StoreError::Sync("injected: EIO".into())),
            }
        });
        let ((), first) = pipeline.apply(|| Ok(())).expect("apply");
        let first_told = told(&pipeline, first);
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the committer syncs");
        // Applied after the sync read its range: it needs the next sync.
        let ((), second) = pipeline.apply(|| Ok(())).expect("apply");
        let second_told = told(&pipeline, second);
        // A request for the first write again, sent while that sync runs: answered by it.
        let again = told(&pipeline, first);
        assert!(first_told.try_recv().is_err(), "told before its sync");
        open.send(true).expect("first sync");
        let wait = Duration::from_secs(10);
        assert!(first_told.recv_timeout(wait).expect("told").is_ok());
        assert!(again.recv_timeout(wait).expect("told").is_ok());
        assert!(
            second_told.recv_timeout(Duration::from_millis(50)).is_err(),
            "a write applied after the sync began is not covered by it"
        );
        open.send(false).expect("second sync fails");
        assert!(second_told.recv_timeout(wait).expect("told").is_err());
        // Settled tickets are answered at once, with what their sync said.
        assert!(told(&pipeline, first).try_recv().expect("at once").is_ok());
        assert!(told(&pipeline, second)
            .try_recv()
            .expect("at once")
            .is_err());
        // The committer goes on after a failure: a new write gets the next sync's answer.
        let ((), third) = pipeline.apply(|| Ok(())).expect("apply");
        let third_told = told(&pipeline, third);
        open.send(true).expect("third sync");
        assert!(third_told.recv_timeout(wait).expect("told").is_ok());
        assert_eq!(
            pipeline.stats(),
            PipelineStats {
                applied: 3,
                syncs: 2,
                failed_syncs: 1
            }
        );
    }
}
