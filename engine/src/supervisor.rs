//! Supervision of the office actors: an office whose writer failed (it refuses writes, its
//! memory may be ahead of the disk) or whose actor stopped (a panic) is named as unhealthy, and
//! restarted from its durable state with backoff.
//!
//! A restart first waits for the old writer to finish every group it was given (an empty
//! commit queued behind them is answered only after them), so nothing the old incarnation
//! acknowledged can become durable after the state is read back; then the registry reads the
//! office's records, restores its pool exactly as at start-up (I9: holds back in the pool,
//! claims and quotas as acknowledged), starts a new actor and writer and swaps them in. The old
//! actor is stopped (its arbiter runs other offices' actors too). An office that fails again within [`STABLE_AFTER`] of a restart
//! waits twice as long before the next one, up to [`RESTART_BACKOFF_MAX`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::WeakAddr;
use serde::Serialize;

use crate::outcome::Refusal;
use crate::registry::{OfficeEntry, OfficeMap, Registry, RegistryCall};
use crate::settled_store::{restore_office, RestoreError};

/// How often the supervisor looks at the offices.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// The first restart's delay after an office is seen failed, doubled per failure in a row.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An office that ran this long after a restart starts again from the shortest delay.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// An office's health as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficeCondition {
    pub office: String,
    pub healthy: bool,
    /// Why it is not healthy.
    pub reason: Option<String>,
    /// Restarts by the supervisor since the engine started.
    pub restarts: u64,
}

#[derive(Debug, Default)]
struct Record {
    restarts: u64,
    /// Failures in a row (reset once an office stays up for [`STABLE_AFTER`]).
    failures: u32,
    last_restart: Option<Instant>,
    /// When the office was first seen unhealthy, and when the next restart may run.
    next_attempt: Option<Instant>,
    /// The last restart that could not be made.
    last_error: Option<String>,
}

/// What the supervisor knows of each office, shared with the engine handle.
#[derive(Debug, Default)]
pub struct Supervision {
    offices: Mutex<HashMap<String, Record>>,
}

/// Why an office cannot serve, if it cannot.
fn fault(entry: &OfficeEntry) -> Option<&'static str> {
    if !entry.handle.addr.connected() {
        Some("its actor stopped")
    } else if entry.handle.health.failed.load(Ordering::SeqCst) {
        Some("its writer failed: it refuses writes")
    } else {
        None
    }
}

impl Supervision {
    fn records(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.offices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every office's condition, by office id.
    pub fn conditions(&self, offices: &HashMap<String, OfficeEntry>) -> Vec<OfficeCondition> {
        let records = self.records();
        let mut out: Vec<OfficeCondition> = offices
            .iter()
            .map(|(id, entry)| {
                let record = records.get(id);
                let reason =
                    fault(entry).map(|why| match record.and_then(|r| r.last_error.as_ref()) {
                        Some(e) => format!("{why}; last restart failed: {e}"),
                        None => why.to_string(),
                    });
                OfficeCondition {
                    office: id.clone(),
                    healthy: reason.is_none(),
                    reason,
                    restarts: record.map_or(0, |r| r.restarts),
                }
            })
            .collect();
        out.sort_by(|a, b| a.office.cmp(&b.office));
        out
    }

    /// The offices to restart now: unhealthy ones whose backoff has passed.
    fn due(&self, offices: &HashMap<String, OfficeEntry>, now: Instant) -> Vec<String> {
        let mut records = self.records();
        let mut due = Vec::new();
        for (id, entry) in offices {
            let record = records.entry(id.clone()).or_default();
            let Some(why) = fault(entry) else {
                if record.last_restart.is_some_and(|t| now - t >= STABLE_AFTER) {
                    record.failures = 0;
                }
                continue;
            };
            match record.next_attempt {
                None => {
                    let delay = backoff(record.failures);
                    tracing::error!(office = %id, reason = why, retry_in_ms = delay.as_millis() as u64, "office unhealthy; restarting it from its durable state");
                    record.next_attempt = Some(now + delay);
                }
                Some(at) if at <= now => due.push(id.clone()),
                Some(_) => {}
            }
        }
        due
    }

    /// Notes the outcome of a restart.
    fn restarted(&self, office: &str, outcome: Result<(), Refusal>, now: Instant) {
        let mut records = self.records();
        let record = records.entry(office.to_string()).or_default();
        record.failures = record.failures.saturating_add(1);
        match outcome {
            Ok(()) => {
                record.restarts += 1;
                record.last_restart = Some(now);
                record.next_attempt = None;
                record.last_error = None;
                tracing::warn!(
                    office,
                    restarts = record.restarts,
                    "office restarted from its durable state"
                );
            }
            Err(e) => {
                let delay = backoff(record.failures);
                tracing::error!(office, error = %e, retry_in_ms = delay.as_millis() as u64, "office restart failed");
                record.next_attempt = Some(now + delay);
                record.last_error = Some(e.to_string());
            }
        }
    }
}

/// The delay before the restart after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    RESTART_BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(RESTART_BACKOFF_MAX)
}

/// Starts the supervisor on the current arbiter. It holds the registry weakly and ends with it.
pub(crate) fn spawn(
    registry: WeakAddr<Registry>,
    offices: OfficeMap,
    supervision: Arc<Supervision>,
) {
    actix::spawn(async move {
        loop {
            tokio::time::sleep(SUPERVISE_EVERY).await;
            if registry.upgrade().is_none() {
                break;
            }
            for office in supervision.due(&offices.load(), Instant::now()) {
                let outcome = restart(&registry, &offices, &office).await;
                supervision.restarted(&office, outcome, Instant::now());
            }
        }
    });
}

async fn restart(
    registry: &WeakAddr<Registry>,
    offices: &OfficeMap,
    office: &str,
) -> Result<(), Refusal> {
    let gone = || Refusal::Unavailable("the engine is stopping".into());
    let old = offices
        .load()
        .get(office)
        .cloned()
        .ok_or(Refusal::UnknownOffice)?;
    old.handle.stop();
    // Everything the old incarnation handed its writer is written (or refused) before the
    // state is read back. A writer that failed answers at once.
    let _ = old.writer.commit(Vec::new()).await;
    let id = office.to_string();
    registry
        .upgrade()
        .ok_or_else(gone)?
        .send(RegistryCall(Box::new(move |r: &mut Registry| {
            r.restart_office(&id)
        })))
        .await
        .map_err(|_| gone())?
}

impl Registry {
    /// Restores an office from its durable records and swaps a new actor and writer in.
    pub(crate) fn restart_office(&mut self, id: &str) -> Result<(), Refusal> {
        let failed = |e: String| Refusal::Unavailable(format!("office {id}: {e}"));
        let office_store = self.store.office(id).map_err(|e| failed(e.to_string()))?;
        let now = self.clock.now_ms();
        let (pool, _) =
            restore_office(id, &office_store, self.catalog.clone(), now).map_err(|e| match e {
                RestoreError::Store(e) => failed(e.to_string()),
                RestoreError::Records(e) => failed(e),
            })?;
        self.install_office(id, pool, &office_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_half_a_second_to_thirty() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(6), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), RESTART_BACKOFF_MAX);
    }
}
