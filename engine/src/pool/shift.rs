//! Holds across a confirmed clock jump (SPEC T1): a hold is a length of time given to a
//! citizen, so when an operator confirms a wall-clock step and engine time jumps, every hold's
//! expiry moves by the same jump. Nothing here is persisted: holds never are.

use super::OfficePool;

impl OfficePool {
    /// Moves every hold's expiry by `jump_ms` (engine time just jumped by it).
    pub fn shift_holds(&mut self, jump_ms: i64) {
        if jump_ms == 0 {
            return;
        }
        let moved = |at: u64| at.saturating_add_signed(jump_ms);
        let deadlines = std::mem::take(&mut self.hold_deadlines);
        for (at, seq) in deadlines {
            let at = moved(at);
            if let Some(app) = self.apps.get_mut(&seq) {
                app.holds.batch_expires_at_ms = moved(app.holds.batch_expires_at_ms);
                app.holds.candidates_expire_at_ms = moved(app.holds.candidates_expire_at_ms);
                app.hold_deadline = Some(at);
            }
            self.hold_deadlines.insert((at, seq));
        }
    }
}
