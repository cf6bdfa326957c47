//! After the claim: registration, voids and lapses (R4.10, R4.11).

use crate::outcome::Refusal;
use crate::plate::Serial;
use crate::record::{AppState, NumberState, Record};

use super::numbers::Status;
use super::{status_name, Application, Event, OfficePool, DAY_MS};

impl OfficePool {
    pub(super) fn claimed_app(
        &mut self,
        text: &str,
    ) -> Result<(usize, u32, Serial, Application), Refusal> {
        let (c, idx, serial) = self.locate(text)?;
        let status = self.classes[c].status(idx);
        if status != Status::Claimed {
            return Err(Refusal::NumberBusy {
                status: status_name(status),
            });
        }
        let seq = *self
            .owners
            .get(&(c as u8, idx))
            .ok_or(Refusal::UnknownNumber)?;
        let app = self.apps.remove(&seq).ok_or(Refusal::UnknownApplication)?;
        Ok((c, idx, serial, app))
    }

    /// The office registers the pre-selected number (R4.10): it is issued and leaves the pool.
    pub fn register(&mut self, text: &str, who: &str, now_ms: u64) -> Result<u64, Refusal> {
        let (c, idx, serial, mut app) = self.claimed_app(text)?;
        self.classes[c].set_status(idx, Status::Issued);
        if let Some(claim) = &app.rec.claim {
            self.claim_deadlines
                .remove(&(claim.register_by_ms, app.rec.seq));
        }
        app.rec.state = AppState::Issued;
        app.rec.closed_at_ms = Some(now_ms);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state: Some(NumberState::Issued { app: app.rec.seq }),
        });
        self.persist(&app);
        self.audit(
            now_ms,
            who,
            "register",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        let seq = app.rec.seq;
        self.finish(app);
        Ok(seq)
    }

    /// The office voids a live pre-selection at the owner's request (R4.11): the number returns,
    /// no blacklist.
    pub fn void(
        &mut self,
        text: &str,
        reason: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let (c, idx, serial, mut app) = self.claimed_app(text)?;
        self.unclaim(&mut app, c, idx, serial, AppState::Voided, now_ms);
        self.audit(
            now_ms,
            who,
            "void",
            Some(app.rec.seq),
            Some(serial),
            reason.to_string(),
        );
        let seq = app.rec.seq;
        self.finish(app);
        Ok(seq)
    }

    pub(super) fn lapse(&mut self, app: &mut Application, now_ms: u64) {
        if app.rec.state != AppState::Claimed {
            return;
        }
        let Some(serial) = app.rec.claim.as_ref().map(|c| c.serial) else {
            return;
        };
        let c = app.class_ix;
        let Some(idx) = self.classes[c].find(serial) else {
            return;
        };
        self.unclaim(app, c, idx, serial, AppState::Lapsed, now_ms);
        let until_ms = now_ms + self.config.rules.blacklist_days as u64 * DAY_MS;
        self.audit(
            now_ms,
            "system",
            "lapse",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        self.effects.events.push(Event::Lapsed {
            app: app.rec.seq,
            user: app.rec.user.clone(),
            until_ms,
        });
    }

    pub(super) fn unclaim(
        &mut self,
        app: &mut Application,
        c: usize,
        idx: u32,
        serial: Serial,
        to: AppState,
        now_ms: u64,
    ) {
        self.owners.remove(&(c as u8, idx));
        self.classes[c].set_status(idx, Status::Available);
        if let Some(claim) = &app.rec.claim {
            self.claim_deadlines
                .remove(&(claim.register_by_ms, app.rec.seq));
        }
        app.rec.state = to;
        app.rec.closed_at_ms = Some(now_ms);
        let state =
            (self.classes[c].status(idx) == Status::Withdrawn).then_some(NumberState::Withdrawn);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state,
        });
        self.persist(app);
    }
}
