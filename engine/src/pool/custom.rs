//! Custom checks (R4.5): typed numbers in order of preference.

use rand::Rng;

use crate::outcome::{Refusal, Unavailable};
use crate::plate::{PlateError, Serial};
use crate::record::AppState;

use super::numbers::Status;
use super::{user_who, Application, Check, OfficePool};

impl OfficePool {
    /// Checks one typed number against the class, the vehicle's energy group and the office's
    /// composition rules (R2.3, R2.4). Costs nothing when it fails.
    pub(super) fn validate_custom(
        &self,
        app: &Application,
        index: usize,
        text: &str,
    ) -> Result<Serial, Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index, error })?;
        let cp = &self.classes[app.class_ix];
        let def = &cp.def;
        let expected = def.serial_len();
        if serial.len() != expected {
            return Err(Refusal::InvalidPlate {
                index,
                error: PlateError::WrongLength {
                    position: serial.len().min(expected) + 1,
                    expected,
                    found: serial.len(),
                },
            });
        }
        if let Some(p) = def.shape.first_mismatch(serial) {
            return Err(Refusal::InvalidPlate {
                index,
                error: PlateError::NotInClass {
                    position: p + 1,
                    found: crate::plate::index_char(serial.index_at(p)),
                    reason: format!(
                        "{} numbers have one of {} here",
                        def.name,
                        def.shape.at(p).to_chars()
                    ),
                },
            });
        }
        let group = &def.groups[app.group];
        if !group.pattern.matches(serial) {
            return Err(Refusal::NotAllowed {
                index,
                serial: serial.to_string(),
                reason: format!(
                    "a {} vehicle takes numbers of the shape {}",
                    app.rec.energy.as_str(),
                    group.pattern
                ),
            });
        }
        cp.composition()
            .check(serial)
            .map_err(|e| Refusal::NotAllowed {
                index,
                serial: serial.to_string(),
                reason: e.to_string(),
            })?;
        Ok(serial)
    }

    /// A custom check (R4.5): 1..=custom_per_check numbers in order of preference; the first
    /// available one is claimed at once (debiting the numbers up to it); when none is, the check
    /// debits them all and says why each failed.
    pub fn custom_check(
        &mut self,
        seq: u64,
        plates: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Check, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.custom_check_inner(&mut app, plates, now_ms, rng);
        self.finish(app);
        result
    }

    pub(super) fn custom_check_inner(
        &mut self,
        app: &mut Application,
        plates: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Check, Refusal> {
        let per_check = self.config.rules.custom_per_check;
        if plates.is_empty() {
            return Err(Refusal::BadRequest(
                "a check names at least one number".into(),
            ));
        }
        if plates.len() > per_check as usize {
            return Err(Refusal::TooManyNumbers { max: per_check });
        }
        let mut serials = Vec::with_capacity(plates.len());
        for (i, text) in plates.iter().enumerate() {
            let s = self.validate_custom(app, i, text)?;
            if serials.contains(&s) {
                return Err(Refusal::BadRequest(format!(
                    "plates[{i}]: {s} is named twice"
                )));
            }
            serials.push(s);
        }
        if app.rec.custom_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        if serials.len() as u32 > app.rec.custom_left {
            return Err(Refusal::TooManyNumbers {
                max: app.rec.custom_left,
            });
        }
        let next = self.next_check_at(app);
        if now_ms < next {
            return Err(Refusal::TooSoon {
                retry_after_ms: next - now_ms,
            });
        }
        // Validated: from here on the check happens and costs quota.
        app.rec.last_check_at_ms = Some(now_ms);
        app.rec.state = AppState::Selecting;
        let c = app.class_ix;
        let mut results = Vec::with_capacity(serials.len());
        for (i, &serial) in serials.iter().enumerate() {
            let reason = match self.classes[c].find(serial) {
                None => Unavailable::NotInPool,
                Some(idx) => {
                    let cp = &self.classes[c];
                    let mine =
                        app.holds.batch.contains(&idx) || app.holds.candidates.contains(&idx);
                    match cp.status(idx) {
                        Status::Available if cp.custom_open(idx) => {
                            app.rec.custom_left -= i as u32 + 1;
                            let claim = self.claim(app, idx, now_ms, rng, "custom_claim");
                            return Ok(Check::Claimed(claim));
                        }
                        Status::Held if mine => {
                            app.rec.custom_left -= i as u32 + 1;
                            let claim = self.claim(app, idx, now_ms, rng, "custom_claim");
                            return Ok(Check::Claimed(claim));
                        }
                        Status::Held => Unavailable::Held,
                        Status::Claimed | Status::Issued => Unavailable::Taken,
                        Status::Pending | Status::Withdrawn | Status::Available => {
                            Unavailable::NotInPool
                        }
                    }
                }
            };
            results.push((serial, reason));
        }
        app.rec.custom_left -= serials.len() as u32;
        let detail = results
            .iter()
            .map(|(s, r)| format!("{s}:{}", r.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        self.maybe_exhaust(app, now_ms);
        self.persist_progress(app);
        self.audit(
            now_ms,
            &user_who(app),
            "custom_check_failed",
            Some(app.rec.seq),
            None,
            detail,
        );
        Ok(Check::NoneAvailable {
            results,
            custom_left: app.rec.custom_left,
            next_check_at_ms: self.next_check_at(app),
        })
    }
}
