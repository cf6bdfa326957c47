//! Times across a confirmed clock jump (SPEC T1). A hold is a length of time given to a
//! citizen, and a rate rule's interval a length of time to wait: when an operator confirms a
//! wall-clock step and engine time jumps, every hold's expiry, and every time a rate rule or
//! an identity's validity counts from, moves by the same jump. Otherwise a confirmed jump back
//! of an hour would make a citizen who drew a second before wait an hour to draw or check
//! again. Holds are never persisted; the moved times of live applications are (their selection
//! fields), so that a restart keeps them.

use super::OfficePool;
use crate::record::Record;

impl OfficePool {
    /// Engine time just jumped by `jump_ms`: moves holds and the times rate rules count from.
    pub fn shift_for_clock_jump(&mut self, jump_ms: i64) {
        if jump_ms == 0 {
            return;
        }
        self.shift_holds(jump_ms);
        self.shift_selection_times(jump_ms);
    }

    /// Moves every hold's expiry by `jump_ms`.
    fn shift_holds(&mut self, jump_ms: i64) {
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

    /// Moves, for every application that may still select, the times its rate rules count
    /// from (last custom check, last draw) and its identity's verification and validity, and
    /// persists them.
    fn shift_selection_times(&mut self, jump_ms: i64) {
        let moved = |at: Option<u64>| at.map(|at| at.saturating_add_signed(jump_ms));
        for app in self.apps.values_mut() {
            let rec = &mut app.rec;
            if !rec.state.selecting() {
                continue;
            }
            let before = rec.progress();
            rec.last_check_at_ms = moved(rec.last_check_at_ms);
            rec.last_draw_at_ms = moved(rec.last_draw_at_ms);
            rec.verified_at_ms = moved(rec.verified_at_ms);
            rec.verified_until_ms = moved(rec.verified_until_ms);
            let progress = rec.progress();
            if progress != before && !app.practice {
                self.effects.records.push(Record::Progress {
                    seq: rec.seq,
                    progress,
                });
            }
        }
    }
}
