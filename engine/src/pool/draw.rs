//! Random draws (R4.6, R4.14).

use std::fmt::Write as _;

use rand::Rng;

use crate::outcome::Refusal;
use crate::record::AppState;

use super::numbers::Status;
use super::{user_who, Application, Draw, HoldView, OfficePool};

impl OfficePool {
    /// A random draw (R4.6): min(random_batch, available) numbers of the vehicle's group, uniformly
    /// at random (I5), held until `random_ttl`; the previous batch goes back (its candidate stays);
    /// the candidate countdown restarts. None available: refused, nothing debited.
    pub fn draw(
        &mut self,
        seq: u64,
        exclude_four: bool,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Draw, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.draw_inner(&mut app, exclude_four, now_ms, rng);
        self.finish(app);
        result
    }

    pub(super) fn draw_inner(
        &mut self,
        app: &mut Application,
        exclude_four: bool,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Draw, Refusal> {
        if app.rec.random_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        let next = self.next_draw_at(app);
        if now_ms < next {
            return Err(Refusal::TooSoon {
                retry_after_ms: next - now_ms,
            });
        }
        // Validated: from here on the draw happens and starts the next interval, whether or not
        // it finds numbers (R4.14), so polling for numbers coming back gains nothing.
        if self.config.rules.random_min_interval_ms > 0 {
            app.rec.last_draw_at_ms = Some(now_ms);
        }
        let c = app.class_ix;
        let returning = if app.practice {
            0
        } else {
            app.holds
                .batch
                .iter()
                .filter(|&&i| self.classes[c].returns_to_pool(i))
                .filter(|&&i| !exclude_four || !self.classes[c].serial(i).contains_four())
                .count()
        };
        if self.classes[c].drawable(app.group, exclude_four) + returning == 0 {
            if self.config.rules.random_min_interval_ms > 0 {
                self.persist_progress(app);
            }
            return Err(Refusal::NotAvailable);
        }
        let rules = &self.config.rules;
        let (batch_size, ttl, cand_ttl) = (
            rules.random_batch as usize,
            rules.random_ttl_ms,
            rules.candidate_ttl_ms,
        );
        for idx in std::mem::take(&mut app.holds.batch) {
            self.unhold(app, idx);
        }
        let mut batch = Vec::with_capacity(batch_size);
        if app.practice {
            batch = self.classes[c].sample_without_taking(app.group, exclude_four, batch_size, rng);
        } else {
            while batch.len() < batch_size {
                let Some(idx) = self.classes[c].pick(app.group, exclude_four, rng) else {
                    break;
                };
                self.classes[c].set_status(idx, Status::Held);
                self.owners.insert((c as u8, idx), app.rec.seq);
                batch.push(idx);
            }
        }
        debug_assert!(!batch.is_empty());
        app.holds.batch = batch;
        app.holds.batch_expires_at_ms = now_ms + ttl;
        app.holds.batch_picked = false;
        if !app.holds.candidates.is_empty() {
            app.holds.candidates_expire_at_ms = now_ms + cand_ttl;
        }
        self.set_hold_deadline(app);
        app.rec.random_left -= 1;
        app.rec.state = AppState::Selecting;
        self.persist_progress(app);
        // Built straight from the holds: `view` would clone the whole application record on the
        // hottest path of an opening.
        let cp = &self.classes[c];
        let batch = HoldView {
            serials: app.holds.batch.iter().map(|&i| cp.serial(i)).collect(),
            expires_at_ms: app.holds.batch_expires_at_ms,
        };
        let candidates = (!app.holds.candidates.is_empty()).then(|| HoldView {
            serials: app.holds.candidates.iter().map(|&i| cp.serial(i)).collect(),
            expires_at_ms: app.holds.candidates_expire_at_ms,
        });
        let mut detail = String::with_capacity(batch.serials.len() * 9);
        for (i, s) in batch.serials.iter().enumerate() {
            if i > 0 {
                detail.push(' ');
            }
            let _ = write!(detail, "{s}");
        }
        self.audit(
            now_ms,
            &user_who(app),
            "draw",
            Some(app.rec.seq),
            None,
            detail,
        );
        Ok(Draw {
            batch,
            candidates,
            random_left: app.rec.random_left,
        })
    }
}
