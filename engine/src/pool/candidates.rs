//! The candidate list (R4.6): picking a number of the batch and confirming it.

use rand::Rng;

use crate::outcome::Refusal;
use crate::plate::Serial;
use crate::record::Claim;

use super::{user_who, Application, HoldView, OfficePool};

impl OfficePool {
    /// Moves one number of the live batch into the candidate list (R4.6): one per batch; the
    /// candidate countdown restarts.
    pub fn pick_candidate(
        &mut self,
        seq: u64,
        text: &str,
        now_ms: u64,
    ) -> Result<HoldView, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.pick_inner(&mut app, text, now_ms);
        self.finish(app);
        result
    }

    pub(super) fn pick_inner(
        &mut self,
        app: &mut Application,
        text: &str,
        now_ms: u64,
    ) -> Result<HoldView, Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
        let c = app.class_ix;
        let idx = self.classes[c].find(serial);
        let in_batch = idx.and_then(|i| app.holds.batch.iter().position(|&b| b == i));
        let Some(pos) = in_batch else {
            if idx.is_some_and(|i| app.holds.candidates.contains(&i)) {
                return Err(Refusal::Conflict(format!(
                    "{serial} is already a candidate"
                )));
            }
            if app.holds.batch.is_empty()
                && app.holds.batch_expires_at_ms != 0
                && app.holds.batch_expires_at_ms <= now_ms
            {
                return Err(Refusal::HoldExpired);
            }
            return Err(Refusal::NotHeld);
        };
        if app.holds.batch_picked {
            return Err(Refusal::AlreadyPicked);
        }
        let idx = app.holds.batch.remove(pos);
        app.holds.candidates.push(idx);
        app.holds.batch_picked = true;
        app.holds.candidates_expire_at_ms = now_ms + self.config.rules.candidate_ttl_ms;
        self.set_hold_deadline(app);
        self.audit(
            now_ms,
            &user_who(app),
            "pick_candidate",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        Ok(self.view(app, now_ms).candidates.unwrap_or(HoldView {
            serials: vec![serial],
            expires_at_ms: app.holds.candidates_expire_at_ms,
        }))
    }

    /// Confirms a live candidate (R4.6): it is claimed and every other hold goes back.
    pub fn claim_candidate(
        &mut self,
        seq: u64,
        text: &str,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Claim, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = (|| {
            let serial = Serial::parse_with_prefix(text, &self.config.prefix)
                .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
            let idx = self.classes[app.class_ix].find(serial);
            match idx.filter(|i| app.holds.candidates.contains(i)) {
                Some(idx) => Ok(self.claim(&mut app, idx, now_ms, rng, "claim")),
                None if app.holds.candidates.is_empty()
                    && app.holds.candidates_expire_at_ms != 0
                    && app.holds.candidates_expire_at_ms <= now_ms =>
                {
                    Err(Refusal::HoldExpired)
                }
                None => Err(Refusal::NotHeld),
            }
        })();
        self.finish(app);
        result
    }
}
