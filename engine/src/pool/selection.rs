//! The checks common to every selection step (R4.4, R5.1).

use crate::outcome::Refusal;

use super::{refuse_state, Application, OfficePool};

impl OfficePool {
    /// Takes an application out for a selection step after the common checks: it exists, may
    /// still select, selection is open, identity is verified. Its expired holds are dropped first.
    pub(super) fn begin_selection(
        &mut self,
        seq: u64,
        now_ms: u64,
    ) -> Result<Application, Refusal> {
        let Some(mut app) = self.apps.remove(&seq) else {
            return Err(self.refuse_absent(seq));
        };
        self.expire_holds(&mut app, now_ms);
        let check = self.selection_allowed(&app, now_ms);
        if let Err(e) = check {
            self.apps.insert(seq, app);
            return Err(e);
        }
        Ok(app)
    }

    pub(super) fn selection_allowed(&self, app: &Application, now_ms: u64) -> Result<(), Refusal> {
        if !app.rec.state.selecting() {
            return Err(refuse_state(app.rec.state));
        }
        let rules = &self.config.rules;
        if rules.maintenance {
            return Err(Refusal::SelectionClosed {
                reopens_at_ms: None,
            });
        }
        if let Some(hours) = &rules.service_hours {
            if !hours.is_open(now_ms) {
                return Err(Refusal::SelectionClosed {
                    reopens_at_ms: Some(hours.next_change_ms(now_ms)),
                });
            }
        }
        if app
            .rec
            .verified_until_ms
            .is_none_or(|until| until <= now_ms)
        {
            return Err(Refusal::IdentityNotVerified);
        }
        Ok(())
    }
}
