//! Settled applications live on disk, not in memory (issue: bounded state).
//!
//! An application is settled once it can no longer change: exhausted, issued, lapsed or voided
//! (every state but the live ones, [`AppState::live`]). Nothing in the pool acts on it again, so
//! an office that keeps its records in a store ([`OfficePool::keep_settled_in`]) drops it from
//! memory and reads it back from the store when it is looked up: the pool's memory grows with
//! what is live, not with history. A pool without a store keeps every application (tests, the
//! simulator, benchmarks).
//!
//! An application leaves memory only once the record that settled it is durable: the pool lists
//! the applications each step settled ([`OfficePool::take_settled`]) and the office actor evicts
//! them ([`OfficePool::evict_settled`]) when the writer reports that group durable. Until then a
//! read is served from memory and waits for the group like any other read, so no read shows
//! what is not durable, and a read from the store after eviction shows the very record memory
//! held (a settled record never changes again).
//!
//! The facts the rules need of settled applications stay true without them in memory: the
//! registry asks the office for the state of a VIN's earlier applications (I7, R4.12) and gets
//! it from the store; an issued number's owner is its number record (`Issued { app }`).

use std::borrow::Cow;

use crate::outcome::Refusal;
use crate::plate::Serial;
use crate::record::AppRecord;

use super::numbers::Status;
use super::{refuse_state, AppView, Application, Holds, OfficePool, PRACTICE_SEQ_BASE};

/// Where an office's settled applications are read back from: its store.
pub trait SettledRecords: Send + std::fmt::Debug {
    /// The application's durable record (its selection fields applied), if it is stored.
    fn application(&self, seq: u64) -> Result<Option<AppRecord>, String>;
    /// The application a number was issued to, if its stored state says so.
    fn issued_to(&self, class: &str, serial: Serial) -> Result<Option<u64>, String>;
}

fn unreadable(e: String) -> Refusal {
    Refusal::Unavailable(format!("a settled application cannot be read: {e}"))
}

impl OfficePool {
    /// From now on, applications that settle leave memory once durable and are read back from
    /// `records`. Those already settled in memory must be durable in that store (restored
    /// from it, or committed): they leave memory at the first [`OfficePool::take_settled`]
    /// commit's durability, like the ones that settle later.
    pub fn keep_settled_in(&mut self, records: Box<dyn SettledRecords>) {
        self.settled_records = Some(records);
        let settled = self
            .apps
            .values()
            .filter(|a| !a.practice && !a.rec.state.live())
            .map(|a| a.rec.seq);
        self.settled.extend(settled);
    }

    /// Whether settled applications are kept in a store rather than in memory.
    pub fn keeps_settled_on_disk(&self) -> bool {
        self.settled_records.is_some()
    }

    /// Notes an application whose record is being persisted: if it just settled, it may leave
    /// memory once that record is durable.
    pub(super) fn note_if_settled(&mut self, app: &Application) {
        if self.settled_records.is_some() && !app.practice && !app.rec.state.live() {
            self.settled.push(app.rec.seq);
        }
    }

    /// The applications settled by the steps since the last call; they may be evicted once the
    /// records taken with [`OfficePool::take_effects`] in the same steps are durable.
    pub fn take_settled(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.settled)
    }

    /// Drops settled applications from memory (their records must be durable in the store).
    /// One that is live again, or unknown, is left as it is.
    pub fn evict_settled(&mut self, seqs: &[u64]) {
        if self.settled_records.is_none() {
            return;
        }
        for seq in seqs {
            let Some(app) = self.apps.get(seq) else {
                continue;
            };
            if app.practice || app.rec.state.live() {
                continue;
            }
            let Some(mut app) = self.apps.remove(seq) else {
                continue;
            };
            if let Some(d) = app.hold_deadline.take() {
                self.hold_deadlines.remove(&(d, app.rec.seq));
            }
            if let Some(claim) = &app.rec.claim {
                self.claim_deadlines
                    .remove(&(claim.register_by_ms, app.rec.seq));
                // An issued number's owner is its number record from now on.
                if let Some(idx) = self.classes[app.class_ix].find(claim.serial) {
                    let key = (app.class_ix as u8, idx);
                    if self.owners.get(&key) == Some(seq) {
                        self.owners.remove(&key);
                    }
                }
            }
        }
    }

    /// Applications in memory, practice ones included (memory figures and tests).
    pub fn resident_applications(&self) -> usize {
        self.apps.len()
    }

    /// A settled application's record from the store; `None` when the pool keeps no store,
    /// or the sequence number is not one of its applications.
    pub(super) fn settled_record(&self, seq: u64) -> Result<Option<AppRecord>, Refusal> {
        let Some(records) = &self.settled_records else {
            return Ok(None);
        };
        if seq >= self.next_seq || seq >= PRACTICE_SEQ_BASE {
            return Ok(None);
        }
        let rec = records.application(seq).map_err(unreadable)?;
        Ok(rec.filter(|r| r.seq == seq))
    }

    /// A settled application as the pool held it: no holds, its class and energy group.
    pub(super) fn settled_app(&self, rec: AppRecord) -> Result<Application, Refusal> {
        let class_ix = self.class_index(&rec.class).ok_or_else(|| {
            unreadable(format!(
                "application {} names unknown class {}",
                rec.seq, rec.class
            ))
        })?;
        let group = self.classes[class_ix]
            .def
            .group_for(rec.energy)
            .ok_or_else(|| unreadable(format!("application {}: energy not in class", rec.seq)))?;
        Ok(Application {
            rec,
            class_ix,
            group,
            practice: false,
            holds: Holds::default(),
            hold_deadline: None,
        })
    }

    /// The refusal a selection step or identity check gets for an application not in memory:
    /// a settled one's state (as when it was in memory), otherwise unknown.
    pub(super) fn refuse_absent(&self, seq: u64) -> Refusal {
        match self.settled_record(seq) {
            Ok(Some(rec)) => refuse_state(rec.state),
            Ok(None) => Refusal::UnknownApplication,
            Err(e) => e,
        }
    }

    /// The application as it stands at `now_ms` (holds past their expiry are not shown): from
    /// memory, or a settled one from the store.
    pub fn application(&self, seq: u64, now_ms: u64) -> Result<Option<AppView>, Refusal> {
        if let Some(app) = self.apps.get(&seq) {
            return Ok(Some(self.view(app, now_ms)));
        }
        match self.settled_record(seq)? {
            Some(rec) => Ok(Some(self.view(&self.settled_app(rec)?, now_ms))),
            None => Ok(None),
        }
    }

    /// The user an application belongs to (ownership checks, I7).
    pub fn application_user(&self, seq: u64) -> Result<Option<Cow<'_, str>>, Refusal> {
        if let Some(app) = self.apps.get(&seq) {
            return Ok(Some(Cow::Borrowed(app.rec.user.as_str())));
        }
        Ok(self.settled_record(seq)?.map(|rec| Cow::Owned(rec.user)))
    }

    /// The application holding, or having claimed or been issued, a number.
    pub fn owner_of(&self, text: &str) -> Result<Option<u64>, Refusal> {
        let Ok((c, idx, serial)) = self.locate(text) else {
            return Ok(None);
        };
        if let Some(&seq) = self.owners.get(&(c as u8, idx)) {
            return Ok(Some(seq));
        }
        match &self.settled_records {
            Some(records) if self.classes[c].status(idx) == Status::Issued => records
                .issued_to(&self.classes[c].def.name, serial)
                .map_err(unreadable),
            _ => Ok(None),
        }
    }
}
