//! The invariants that hold between steps, asserted by the tests.

use crate::record::AppState;

use super::numbers::Status;
use super::{Counts, OfficePool};

impl OfficePool {
    /// Asserts every invariant that holds between steps (tests call it after every step):
    /// I1 one holder per number, holds and claims agree with number states, conservation per
    /// release, indexes agree with states, and — at `now_ms` after a tick — no expired hold (I4).
    pub fn check_invariants(&self, now_ms: u64) {
        for cp in &self.classes {
            cp.check_invariants();
        }
        let mut held = vec![0u64; self.classes.len()];
        for app in self.apps.values() {
            let h = &app.holds;
            assert_eq!(
                app.hold_deadline,
                h.deadline(),
                "app {} deadline",
                app.rec.seq
            );
            if let Some(d) = app.hold_deadline {
                assert!(self.hold_deadlines.contains(&(d, app.rec.seq)));
                assert!(d > now_ms, "app {} holds past expiry (I4)", app.rec.seq);
            }
            if !h.is_empty() {
                assert!(
                    app.rec.state.selecting(),
                    "app {} holds while {:?}",
                    app.rec.seq,
                    app.rec.state
                );
            }
            if app.practice {
                continue;
            }
            for &idx in h.batch.iter().chain(&h.candidates) {
                held[app.class_ix] += 1;
                assert_eq!(self.classes[app.class_ix].status(idx), Status::Held);
                assert_eq!(
                    self.owners.get(&(app.class_ix as u8, idx)),
                    Some(&app.rec.seq),
                    "I1"
                );
            }
            let mut seen = h.batch.clone();
            seen.extend(&h.candidates);
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(
                seen.len(),
                h.batch.len() + h.candidates.len(),
                "a number held twice by one app"
            );
            match (&app.rec.state, &app.rec.claim) {
                (AppState::Claimed | AppState::Issued, Some(claim)) => {
                    let cp = &self.classes[app.class_ix];
                    let idx = cp.find(claim.serial).expect("claimed number is released");
                    let want = if app.rec.state == AppState::Claimed {
                        Status::Claimed
                    } else {
                        Status::Issued
                    };
                    assert_eq!(cp.status(idx), want);
                    assert_eq!(
                        self.owners.get(&(app.class_ix as u8, idx)),
                        Some(&app.rec.seq)
                    );
                    if app.rec.state == AppState::Claimed {
                        assert!(self
                            .claim_deadlines
                            .contains(&(claim.register_by_ms, app.rec.seq)));
                    }
                }
                (AppState::Claimed | AppState::Issued, None) => panic!("claimed without a claim"),
                _ => {}
            }
        }
        for (c, cp) in self.classes.iter().enumerate() {
            let counts = Counts::from_array(cp.counts());
            assert_eq!(
                counts.held, held[c],
                "held numbers of {} agree with holds",
                cp.def.name
            );
            assert_eq!(
                counts.total(),
                cp.len() as u64,
                "conservation in {}",
                cp.def.name
            );
            let owned = self.owners.keys().filter(|k| k.0 as usize == c).count() as u64;
            let owned_issued = self
                .owners
                .keys()
                .filter(|k| k.0 as usize == c && cp.status(k.1) == Status::Issued)
                .count() as u64;
            // Issued numbers of applications left on disk have their owner there.
            let issued = if self.keeps_settled_on_disk() {
                assert!(owned_issued <= counts.issued, "owners of {}", cp.def.name);
                owned_issued
            } else {
                counts.issued
            };
            assert_eq!(
                owned,
                counts.held + counts.claimed + issued,
                "owners of {}",
                cp.def.name
            );
        }
        if let Some(&(at, _)) = self.release_events.first() {
            assert!(at > now_ms, "release event past due");
        }
    }
}
