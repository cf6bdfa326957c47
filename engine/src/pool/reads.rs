//! Reads: the keyboard (R4.5, I8), stats, and figures for metrics and benchmarks.

use crate::outcome::Refusal;
use crate::pattern::CharSet;

use super::numbers::ClassPool;
use super::{ClassStats, Counts, OfficePool, ReleaseStats};

impl OfficePool {
    /// The keyboard for an application (R4.5, I8): per position, the characters enabled given
    /// what was entered (`None` where free). Only numbers a custom check could take count.
    pub fn keyboard(&self, seq: u64, entered: &[Option<u8>]) -> Result<Vec<CharSet>, Refusal> {
        let (class_ix, group) = match self.apps.get(&seq) {
            Some(app) => (app.class_ix, app.group),
            None => {
                let rec = self
                    .settled_record(seq)?
                    .ok_or(Refusal::UnknownApplication)?;
                let app = self.settled_app(rec)?;
                (app.class_ix, app.group)
            }
        };
        let cp = &self.classes[class_ix];
        if entered.len() > cp.def.serial_len() {
            return Err(Refusal::BadRequest(format!(
                "entered has {} characters, a {} number {}",
                entered.len(),
                cp.def.name,
                cp.def.serial_len()
            )));
        }
        let mut full = entered.to_vec();
        full.resize(cp.def.serial_len(), None);
        Ok(cp.keyboard(group, &full))
    }

    /// Per class and release: how many numbers are in each state (pool notice, stats).
    pub fn stats(&self) -> Vec<ClassStats> {
        self.classes
            .iter()
            .map(|cp| ClassStats {
                class: cp.def.name.clone(),
                counts: Counts::from_array(cp.counts()),
                releases: cp
                    .segments()
                    .iter()
                    .filter_map(|s| {
                        let rec = self.releases.iter().find(|r| r.id == s.release)?;
                        Some(ReleaseStats {
                            id: s.release,
                            label: rec.label.clone(),
                            opens_at_ms: rec.opens_at_ms,
                            custom_from_ms: rec.custom_from_ms,
                            withdrawn: s.withdrawn,
                            total: (s.end - s.start) as u64,
                            counts: Counts::from_array(s.counts.map(|c| c as u64)),
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    /// Live holds and claims (metrics).
    pub fn live_holds(&self) -> usize {
        self.owners.len()
    }

    /// Heap bytes of the numbers and their indexes, for the memory benchmark.
    pub fn numbers_memory_bytes(&self) -> usize {
        self.classes
            .iter()
            .map(ClassPool::memory_bytes)
            .sum::<usize>()
    }
}
