//! Pre-selection (R4.8): a number claimed for an application.

use rand::Rng;

use crate::calendar;
use crate::record::{AppState, Claim, NumberState, Record};

use super::numbers::Status;
use super::{user_who, Application, Event, OfficePool};

impl OfficePool {
    /// Claims `idx` for `app`, releasing every other hold of the application.
    pub(super) fn claim(
        &mut self,
        app: &mut Application,
        idx: u32,
        now_ms: u64,
        rng: &mut impl Rng,
        action: &str,
    ) -> Claim {
        let c = app.class_ix;
        let holds = std::mem::take(&mut app.holds);
        for other in holds.batch.into_iter().chain(holds.candidates) {
            if other != idx {
                self.unhold(app, other);
            }
        }
        self.set_hold_deadline(app);
        let serial = self.classes[c].serial(idx);
        let rules = &self.config.rules;
        let register_by_ms =
            calendar::register_by_ms(now_ms, rules.validity_working_days, &rules.holidays);
        let code: u32 = rng.random_range(0..100_000_000);
        let claim = Claim {
            serial,
            claimed_at_ms: now_ms,
            register_by_ms,
            voucher_serial: format!(
                "{}-{}-{}",
                self.id.to_uppercase(),
                calendar::local_date(now_ms).format("%Y%m%d"),
                app.rec.seq
            ),
            voucher_code: format!("{code:08}"),
            void: app.practice,
        };
        app.rec.claim = Some(claim.clone());
        app.rec.state = AppState::Claimed;
        if !app.practice {
            self.classes[c].set_status(idx, Status::Claimed);
            self.owners.insert((c as u8, idx), app.rec.seq);
            self.claim_deadlines.insert((register_by_ms, app.rec.seq));
            self.effects.records.push(Record::Number {
                class: self.classes[c].def.name.clone(),
                serial,
                state: Some(NumberState::Claimed { app: app.rec.seq }),
            });
            self.effects.events.push(Event::Claimed {
                app: app.rec.seq,
                phone: app.rec.phone.clone(),
                serial,
                register_by_ms,
            });
        }
        self.persist(app);
        self.audit(
            now_ms,
            &user_who(app),
            action,
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        claim
    }
}
