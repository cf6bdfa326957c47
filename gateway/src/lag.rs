//! Load shedding at the HTTP layer, by how late each worker's event loop runs.
//!
//! The engine sheds writes once calls wait too long *in an office* (engine/src/actor.rs). When
//! the gateway's own workers are the bottleneck (reading, parsing and answering HTTP), requests
//! wait in socket buffers before any code sees them, and no office queue grows. Each worker
//! therefore runs a probe that sleeps [`PROBE_EVERY`] and notes how late it woke: the time one
//! turn of the worker's loop takes, which is how long a newly readable request waits before it
//! is handled. While that lag is above the configured limit, selection requests get 503
//! `unavailable` at once, before their body, token or office is touched, so the worker spends
//! its time on the requests it accepts and their latency stays bounded.
//!
//! Writes to an application (`POST /v1/applications/{id}/…`, see [`write_office`]) are the
//! exception: the office admits them by its own measure (`Engine::sheds_writes`, which counts
//! the wait after an answer is ready until the worker takes it), checked as early. Under a flood
//! of thousands of connections each turn of the loop is long because of how many connections
//! send, whatever share of them is admitted; shedding writes by the lag refused nearly all of
//! them and left the office idle.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// What a shed request is told to wait before trying again.
pub const RETRY_AFTER_MS: u64 = 1_000;

/// How often each worker's probe wakes.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

thread_local! {
    static LAG_US: Cell<u64> = const { Cell::new(0) };
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Starts this worker thread's probe, once. Must run inside the worker's runtime (it is called
/// from the request path).
pub fn ensure_probe() {
    if PROBING.with(|p| p.replace(true)) {
        return;
    }
    actix_rt::spawn(async {
        loop {
            let asked = Instant::now();
            actix_rt::time::sleep(PROBE_EVERY).await;
            let late = asked.elapsed().saturating_sub(PROBE_EVERY).as_micros() as u64;
            // One on-time wake-up between two late ones does not end an overload: the figure
            // falls by a quarter per probe (about 100 ms from 100 ms to 6 ms) unless a later
            // wake-up is later still.
            LAG_US.with(|l| l.set(late.max(l.get() - l.get() / 4)));
        }
    });
}

/// How late this worker's loop has been running: the probe's last lateness, or a decaying
/// earlier one if that was larger.
pub fn current() -> Duration {
    Duration::from_micros(LAG_US.with(Cell::get))
}

/// Whether a request to `path` (below the gateway's scope) that no route serves may be shed:
/// those under `/v1/` outside the operator API. Routes say how they are shed in the route table
/// (`routes::Shed`): health, metrics and operator calls are always served, so that operators can
/// see and act on an overloaded service.
pub fn sheddable(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/admin")
}

/// The office of an application's write route (`/v1/applications/{office}-{seq}/…`, the routes
/// the table sheds by `Shed::Office`), from the path alone: what the early load check needs,
/// without the router. `None` for other paths.
pub fn write_office(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/applications/")?;
    let (id, action) = rest.split_once('/')?;
    if action.is_empty() {
        return None;
    }
    let (office, _) = id.rsplit_once('-')?;
    (!office.is_empty()).then_some(office)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_office_of_a_write_comes_from_the_path() {
        assert_eq!(
            write_office("/v1/applications/maoming-12/draws"),
            Some("maoming")
        );
        assert_eq!(
            write_office("/v1/applications/lt_57-3-1/claim"),
            Some("lt_57-3")
        );
        assert_eq!(
            write_office("/v1/applications/maoming-p4/checks"),
            Some("maoming")
        );
        assert_eq!(write_office("/v1/applications"), None);
        assert_eq!(write_office("/v1/applications/maoming-12"), None);
        assert_eq!(write_office("/v1/applications/maoming-12/"), None);
        assert_eq!(write_office("/v1/applications/-12/draws"), None);
        assert_eq!(write_office("/v1/offices/maoming/pool"), None);
    }

    #[test]
    fn operators_and_probes_are_never_shed() {
        assert!(sheddable("/v1/applications/maoming-1/draws"));
        assert!(sheddable("/v1/offices/maoming/pool"));
        assert!(!sheddable("/v1/admin/offices"));
        assert!(!sheddable("/healthz"));
        assert!(!sheddable("/readyz"));
        assert!(!sheddable("/metrics"));
    }

    #[actix_rt::test]
    async fn a_blocked_loop_shows_as_lag() {
        ensure_probe();
        actix_rt::time::sleep(PROBE_EVERY * 3).await;
        let idle = current();
        // Block the worker's only thread for 120 ms, then let the probe wake.
        std::thread::sleep(Duration::from_millis(120));
        actix_rt::time::sleep(PROBE_EVERY * 2).await;
        // The probe woke late by about the block (it was due during it); measured on the
        // same thread in the same run, so the comparison holds on a noisy machine.
        let mut worst = current();
        for _ in 0..5 {
            if worst >= Duration::from_millis(50) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(1)).await;
            worst = worst.max(current());
        }
        assert!(
            worst >= Duration::from_millis(50) && worst > idle,
            "lag after a 120 ms block: {worst:?} (idle {idle:?})"
        );
    }
}
