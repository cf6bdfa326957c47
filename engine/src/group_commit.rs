//! Group commit for the write paths outside the office actors: the [`crate::kv::Kv`] trees (the
//! registry's blacklist and audit trail, the gateway's SMS codes, outbox and idempotency keys)
//! and the registry's certificate log.
//!
//! A writer applies its change first (to sled's memory, or to the end of a file), counts it in
//! [`SyncState::applied`], and then asks the [`GroupSyncer`] to make it durable. The syncer's
//! thread takes every request waiting, syncs once (one flush + fdatasync for all of them), and
//! answers them all with that sync's result: N waiting writers cost one sync, nobody is answered
//! before the sync that covers their write has returned (SPEC I2), and a failed sync fails every
//! writer of its group.
//!
//! **Fail-stop.** After one failed sync every later write is refused before it is applied
//! ([`SyncState::check`]), and every request still waiting gets the error: what was applied may
//! be ahead of the device, so nothing more is acknowledged until the process restarts and reads
//! back what is durable.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most requests one sync answers; the rest wait for the next one.
pub const GROUP_MAX: usize = 4_096;
/// Most requests waiting for a syncer: a writer beyond it blocks until a sync drains the queue
/// (back-pressure rather than a queue that grows without bound while the disk stalls).
pub const WAITING_MAX: usize = 65_536;

/// Makes everything applied so far durable.
pub(crate) type SyncFn = Box<dyn FnMut() -> Result<(), StoreError> + Send>;

/// What a syncer and its writers share: how far writes were applied and made durable, and the
/// first failure.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Writes applied so far; a write counts itself after it is applied.
    pub(crate) applied: AtomicU64,
    /// `applied` as read just before the last successful sync: every write up to it is durable.
    pub(crate) durable: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) failed: AtomicBool,
    /// The first failed sync's error, repeated to every later write.
    failure: Mutex<Option<StoreError>>,
}

impl SyncState {
    /// Refuses a write once a sync has failed (fail-stop).
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        Err(failure.clone().unwrap_or(StoreError::WriterStopped))
    }

    pub(crate) fn fail(&self, e: &StoreError) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert_with(|| e.clone());
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Applies a write with `write`, unless a sync has failed, and counts it.
    pub(crate) fn apply<R>(
        &self,
        write: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.check()?;
        let out = write()?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }

    /// Whether every write applied so far is known durable.
    pub(crate) fn all_durable(&self) -> bool {
        self.durable.load(Ordering::SeqCst) >= self.applied.load(Ordering::SeqCst)
    }
}

/// Who to tell when a request's writes are durable.
enum Reply {
    Blocking(Sender<Result<(), StoreError>>),
    Async(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, result: Result<(), StoreError>) {
        // A caller that gave up waiting is no error.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// The sending side of a syncer thread; the thread ends once this is dropped and what is queued
/// has been answered.
#[derive(Debug)]
pub(crate) struct GroupSyncer {
    /// `None` once dropping, or if the thread could not start (every request is then refused).
    tx: Option<Sender<Reply>>,
    thread: Option<thread::JoinHandle<()>>,
    pub(crate) state: Arc<SyncState>,
}

impl GroupSyncer {
    /// Starts a syncer thread named `name` that makes writes durable with `sync`.
    pub(crate) fn start(name: &str, state: Arc<SyncState>, sync: SyncFn) -> GroupSyncer {
        let (tx, rx) = crossbeam_channel::bounded::<Reply>(WAITING_MAX);
        let thread_state = Arc::clone(&state);
        let spawned = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || sync_loop(&rx, &thread_state, sync));
        match spawned {
            Ok(thread) => GroupSyncer {
                tx: Some(tx),
                thread: Some(thread),
                state,
            },
            Err(e) => {
                tracing::error!(error = %e, name, "cannot start a syncer thread");
                state.fail(&StoreError::Sync(format!(
                    "cannot start the syncer thread {name}: {e}"
                )));
                GroupSyncer {
                    tx: None,
                    thread: None,
                    state,
                }
            }
        }
    }

    fn request(&self, reply: Reply) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(reply) {
                    e.into_inner().send(Err(StoreError::WriterStopped));
                }
            }
            None => reply.send(Err(StoreError::WriterStopped)),
        }
    }

    /// Blocks until every write applied so far is durable.
    pub(crate) fn wait(&self) -> Result<(), StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.request(Reply::Blocking(tx));
        rx.recv().unwrap_or(Err(StoreError::WriterStopped))
    }

    /// Answers when every write applied so far is durable.
    pub(crate) fn wait_async(&self) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.request(Reply::Async(tx));
        rx
    }

    /// Resolves once every write applied so far is durable: at once when nothing is waiting.
    pub(crate) fn durable(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let ready = match self.state.check() {
            Err(e) => Some(Err(e)),
            Ok(()) if self.state.all_durable() => Some(Ok(())),
            Ok(()) => None,
        };
        let wait = ready.is_none().then(|| self.wait_async());
        settle(ready.unwrap_or(Ok(())), wait)
    }

    /// Requests waiting for a sync (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for GroupSyncer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has answered what is queued; joining it
        // releases what its sync holds (sled's lock on the folder, a file) before the owner is
        // gone.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(rx: &Receiver<Reply>, state: &SyncState, mut sync: SyncFn) {
    let mut group: Vec<Reply> = Vec::new();
    while let Ok(first) = rx.recv() {
        group.push(first);
        group.extend(rx.try_iter().take(GROUP_MAX - 1));
        // Every request taken was sent after its write counted itself, so `upto` covers them.
        let upto = state.applied.load(Ordering::SeqCst);
        let result = state.check().and_then(|()| sync());
        match &result {
            Ok(()) => {
                state.syncs.fetch_add(1, Ordering::Relaxed);
                state.durable.fetch_max(upto, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(error = %e, "group sync failed: refusing every later durable write");
                state.fail(e);
            }
        }
        for reply in group.drain(..) {
            reply.send(result.clone());
        }
    }
}

/// `applied`, once the sync it waits for (if any) has answered.
pub(crate) async fn settle<R>(
    applied: Result<R, StoreError>,
    durable: Option<oneshot::Receiver<Result<(), StoreError>>>,
) -> Result<R, StoreError> {
    let out = applied?;
    if let Some(durable) = durable {
        durable.await.unwrap_or(Err(StoreError::WriterStopped))?;
    }
    Ok(out)
}
