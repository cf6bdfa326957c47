//! The simulated shell: the office actor's protocol around the pure pool, with a simulated disk.
//!
//! It mirrors `engine/src/actor.rs` and the writer of `engine/src/store.rs`:
//! - every call ticks the pool first, runs, and takes the step's effects; a step with records is
//!   queued to the writer as one commit and its reply waits for that commit; a step without
//!   records is answered at once;
//! - the writer takes every commit waiting as one group, writes it as one atomic batch and flushes;
//!   only then are the group's replies acknowledged and its events delivered;
//! - a flush that fails acknowledges nothing of its group, and the office refuses every write until
//!   it restarts (reads are still served). The group itself may or may not have reached the disk
//!   (sled applied the batch, the sync failed). The writer then refuses every later commit
//!   ([`WriterMode::FailStop`], as `store.rs` does since this campaign found the gap) or goes on
//!   writing them ([`WriterMode::Lenient`], the old behaviour, kept to show what it breaks);
//! - a crash drops memory and every commit not yet flushed — except that the group being written
//!   at that instant may have landed — and recovers with [`OfficePool::restore`] from the disk.

use std::collections::{BTreeMap, VecDeque};

use platepool_engine::pool::{Event, OfficePool};
use platepool_engine::record::{AppRecord, NumberState, Record, ReleaseRecord};
use platepool_engine::{OfficeConfig, PlateClass, Refusal, Serial};
use rand::rngs::StdRng;

use super::model::Fact;

/// What the writer does after a failed flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMode {
    /// Every later commit fails too, until the process restarts (the engine's writer).
    FailStop,
    /// Later commits are written as if nothing happened (the writer before the fix).
    Lenient,
}

/// The simulated data folder: the records of every group that reached it, by the store's keys.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub config: Option<OfficeConfig>,
    pub releases: BTreeMap<u32, ReleaseRecord>,
    pub apps: BTreeMap<u64, AppRecord>,
    pub numbers: BTreeMap<(String, Serial), NumberState>,
    pub audit_entries: u64,
    /// Groups written (one sled batch + flush each).
    pub groups: u64,
}

impl Disk {
    /// Applies one group atomically, as `OfficeStore::write` does with one `sled::Batch`.
    pub fn apply(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::Config(c) => self.config = Some((**c).clone()),
                Record::Release(rel) => {
                    self.releases.insert(rel.id, (**rel).clone());
                }
                Record::App(app) => {
                    self.apps.insert(app.seq, (**app).clone());
                }
                Record::Progress { seq, progress } => {
                    if let Some(app) = self.apps.get_mut(seq) {
                        app.apply_progress(progress);
                    }
                }
                Record::Number {
                    class,
                    serial,
                    state,
                } => match state {
                    Some(s) => {
                        self.numbers.insert((class.clone(), *serial), *s);
                    }
                    None => {
                        self.numbers.remove(&(class.clone(), *serial));
                    }
                },
                Record::Audit(_) => self.audit_entries += 1,
            }
        }
        self.groups += 1;
    }
}

/// One step's commit waiting for the writer.
#[derive(Debug)]
pub struct Commit {
    pub step: u64,
    pub records: Vec<Record>,
    pub events: Vec<Event>,
    /// The auditor's changes to its durable view, applied when the commit is acknowledged.
    pub facts: Vec<Fact>,
    /// Whether a caller waits for this commit (false for timer ticks and start-up).
    pub has_reply: bool,
    /// Whether the reply is a success (2xx) — a refusal may carry tick records too.
    pub success: bool,
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Commits acknowledged, in order.
    pub acked: Vec<Commit>,
    /// Commits of the failed group, answered `unavailable`.
    pub failed: Vec<Commit>,
    /// Commits after the failed group that a fail-stop writer refused, answered `unavailable`;
    /// they never reach the disk.
    pub refused: Vec<Commit>,
    /// When the group failed: whether it reached the disk anyway.
    pub failed_group_landed: Option<bool>,
}

/// The actor and writer of one office, in simulation.
#[derive(Debug)]
pub struct Shell {
    pub id: String,
    pub catalog: Vec<PlateClass>,
    pub pool: OfficePool,
    pub rng: StdRng,
    /// Set once a write failed: the office refuses writes until it restarts (actor `failed`).
    pub failed: bool,
    /// The writer has failed (fail-stop writer: every later commit fails).
    pub writer_failed: bool,
    pub mode: WriterMode,
    pub queue: VecDeque<Commit>,
    pub disk: Disk,
    /// When the pool was last ticked: what time has done to it (releases opening, holds
    /// expiring) is applied up to this instant, as in the actor, where every call ticks first.
    pub ticked_at: u64,
}

/// The result of one call through the shell.
#[derive(Debug)]
pub enum Called<R> {
    /// Refused at once because the office is failed: nothing ran.
    RefusedFailed,
    /// Ran; `queued` says whether the reply waits for a commit.
    Ran {
        result: Result<R, Refusal>,
        queued: bool,
    },
}

impl Shell {
    /// Runs one write call as `OfficeActor::execute` does: tick, the step, its commit.
    pub fn call<R>(
        &mut self,
        step: u64,
        now: u64,
        f: impl FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, Refusal>,
    ) -> Called<R> {
        if self.failed {
            return Called::RefusedFailed;
        }
        self.tick(now);
        let result = f(&mut self.pool, now, &mut self.rng);
        let effects = self.pool.take_effects();
        let queued = !effects.records.is_empty();
        if queued {
            self.queue.push_back(Commit {
                step,
                records: effects.records,
                events: effects.events,
                facts: Vec::new(),
                has_reply: true,
                success: result.is_ok(),
            });
        }
        Called::Ran { result, queued }
    }

    /// Applies what fell due by `now` (the first thing the actor does for any call).
    pub fn tick(&mut self, now: u64) {
        self.pool.tick(now);
        self.ticked_at = now;
    }

    /// The actor's timer: tick and commit, nobody waiting.
    pub fn timer(&mut self, step: u64, now: u64) -> bool {
        if self.failed {
            return false;
        }
        self.tick(now);
        self.queue_background(step);
        true
    }

    /// Queues whatever effects the pool holds as a commit nobody waits for.
    pub fn queue_background(&mut self, step: u64) {
        let effects = self.pool.take_effects();
        if !effects.records.is_empty() {
            self.queue.push_back(Commit {
                step,
                records: effects.records,
                events: effects.events,
                facts: Vec::new(),
                has_reply: false,
                success: true,
            });
        }
    }

    /// The writer takes the first `n` waiting commits as one group; `fail` injects a failed
    /// write or sync, `lands` says whether a failed group reached the disk anyway.
    pub fn flush(&mut self, n: usize, fail: bool, lands: bool) -> Flushed {
        let mut out = Flushed::default();
        let n = n.min(self.queue.len());
        if n == 0 {
            return out;
        }
        let group: Vec<Commit> = self.queue.drain(..n).collect();
        if self.writer_failed && self.mode == WriterMode::FailStop {
            out.refused = group;
            return out;
        }
        if fail {
            if lands {
                let records: Vec<Record> = group.iter().flat_map(|c| c.records.clone()).collect();
                self.disk.apply(&records);
            }
            out.failed_group_landed = Some(lands);
            out.failed = group;
            self.failed = true;
            self.writer_failed = true;
            if self.mode == WriterMode::FailStop {
                out.refused.extend(self.queue.drain(..));
            }
            return out;
        }
        let records: Vec<Record> = group.iter().flat_map(|c| c.records.clone()).collect();
        self.disk.apply(&records);
        out.acked = group;
        out
    }

    /// Drops memory. The group in flight (the first `landing` commits) may have reached the disk;
    /// every other waiting commit is lost. Returns the commits that landed, unacknowledged.
    pub fn crash(&mut self, landing: usize) -> Vec<Commit> {
        let mut landed = Vec::new();
        if landing > 0 && !(self.writer_failed && self.mode == WriterMode::FailStop) {
            let n = landing.min(self.queue.len());
            landed = self.queue.drain(..n).collect();
            let records: Vec<Record> = landed.iter().flat_map(|c| c.records.clone()).collect();
            if !records.is_empty() {
                self.disk.apply(&records);
            }
        }
        self.queue.clear();
        landed
    }

    /// Recovers from the disk as `Engine::open` does: restore, then the actor's first tick.
    pub fn recover(&mut self, step: u64, now: u64) -> Result<(), String> {
        let config = self.disk.config.clone().ok_or("no configuration stored")?;
        let numbers = self
            .disk
            .numbers
            .iter()
            .map(|((class, serial), st)| (class.clone(), *serial, *st))
            .collect();
        let pool = OfficePool::restore(
            &self.id,
            config,
            self.catalog.clone(),
            self.disk.releases.values().cloned().collect(),
            numbers,
            self.disk.apps.values().cloned().collect(),
            now,
        )?;
        self.pool = pool;
        self.failed = false;
        self.writer_failed = false;
        self.queue.clear();
        self.tick(now);
        self.queue_background(step);
        Ok(())
    }
}
