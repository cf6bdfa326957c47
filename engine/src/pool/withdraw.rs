//! Withdrawing one number (R5.2), and finding a released number by what was typed.

use crate::outcome::Refusal;
use crate::plate::Serial;
use crate::record::{NumberState, Record};

use super::numbers::Status;
use super::{status_name, OfficePool};

impl OfficePool {
    /// Finds a released number by what was typed, in any class.
    pub(super) fn locate(&self, text: &str) -> Result<(usize, u32, Serial), Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
        self.classes
            .iter()
            .enumerate()
            .find_map(|(c, cp)| cp.find(serial).map(|idx| (c, idx, serial)))
            .ok_or(Refusal::UnknownNumber)
    }

    /// Withdraws one available (or not yet opened) number (R5.2).
    pub fn withdraw_number(
        &mut self,
        text: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<Serial, Refusal> {
        let (c, idx, serial) = self.locate(text)?;
        let status = self.classes[c].status(idx);
        if !matches!(status, Status::Pending | Status::Available) {
            return Err(Refusal::NumberBusy {
                status: status_name(status),
            });
        }
        self.classes[c].set_status(idx, Status::Withdrawn);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state: Some(NumberState::Withdrawn),
        });
        self.audit(
            now_ms,
            who,
            "withdraw_number",
            None,
            Some(serial),
            String::new(),
        );
        Ok(serial)
    }
}
