//! Holds: giving numbers back (I4), their deadlines, and exhaustion (R4.7).

use crate::record::AppState;

use super::numbers::Status;
use super::{Application, OfficePool};

impl OfficePool {
    /// Puts a held number back into the pool.
    pub(super) fn unhold(&mut self, app: &Application, idx: u32) {
        if app.practice {
            return;
        }
        let c = app.class_ix;
        debug_assert_eq!(self.owners.get(&(c as u8, idx)), Some(&app.rec.seq));
        self.owners.remove(&(c as u8, idx));
        self.classes[c].set_status(idx, Status::Available);
    }

    /// Drops holds past their expiry (I4) and marks the application exhausted if nothing is left.
    pub(super) fn expire_holds(&mut self, app: &mut Application, now_ms: u64) {
        let h = &mut app.holds;
        let mut expired = Vec::new();
        if !h.batch.is_empty() && h.batch_expires_at_ms <= now_ms {
            expired.append(&mut h.batch);
        }
        if !h.candidates.is_empty() && h.candidates_expire_at_ms <= now_ms {
            expired.append(&mut h.candidates);
        }
        for idx in expired {
            self.unhold(app, idx);
        }
        self.set_hold_deadline(app);
        if self.maybe_exhaust(app, now_ms) {
            self.persist_progress(app);
        }
    }

    /// R4.7: both quotas spent and no live hold left.
    pub(super) fn maybe_exhaust(&mut self, app: &mut Application, now_ms: u64) -> bool {
        if app.rec.state.selecting()
            && app.rec.custom_left == 0
            && app.rec.random_left == 0
            && app.holds.is_empty()
        {
            app.rec.state = AppState::Exhausted;
            app.rec.closed_at_ms = Some(now_ms);
            self.audit(
                now_ms,
                "system",
                "exhausted",
                Some(app.rec.seq),
                None,
                String::new(),
            );
            return true;
        }
        false
    }

    pub(super) fn set_hold_deadline(&mut self, app: &mut Application) {
        let new = app.holds.deadline();
        if new != app.hold_deadline {
            if let Some(old) = app.hold_deadline {
                self.hold_deadlines.remove(&(old, app.rec.seq));
            }
            if let Some(d) = new {
                self.hold_deadlines.insert((d, app.rec.seq));
            }
            app.hold_deadline = new;
        }
    }
}
