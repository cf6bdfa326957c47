//! The shared clock: each worker measures where the coordinator's clock is on its own monotonic
//! clock, NTP-style, and the coordinator names the start of the load and the opening as instants
//! of its clock.
//!
//! The worker sends `ping`; the coordinator answers `pong` with its clock reading (microseconds
//! since its process-local epoch, on its monotonic clock); the worker notes its own monotonic
//! instants at send and receipt. The reading was taken somewhere inside that round trip, so
//! mapping it to the round trip's midpoint is wrong by at most half the round trip. Of several
//! rounds the one with the shortest round trip is kept (queueing only ever lengthens a round).
//!
//! Why the worker measures, and why monotonic clocks: what a worker needs is "which instant of
//! *my* monotonic clock is the opening", and only it can read that clock. No wall clock of a
//! worker takes part, so a load machine without NTP, or whose clock is stepped during the run,
//! still starts on time; the error bound (half the best round trip) is known where it is used,
//! and sent to the coordinator, which prints it and refuses a link too slow to share the
//! opening. The one wall clock that matters is the coordinator's, when it sets the release's
//! `opens_at` — exactly as in a single-process run.

use std::time::{Duration, Instant};

/// One round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub sent: Instant,
    pub received: Instant,
    /// The coordinator's clock when it answered, µs.
    pub coordinator_us: u64,
}

impl Sample {
    pub fn rtt(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }
}

/// The coordinator's clock on this machine's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockMap {
    /// The local instant taken to be the coordinator's `coordinator_us`.
    pub local: Instant,
    pub coordinator_us: u64,
    /// The best round trip; the mapping is right to half of it.
    pub rtt: Duration,
}

impl ClockMap {
    /// From the sample with the shortest round trip; `None` without samples.
    pub fn from_samples(samples: &[Sample]) -> Option<ClockMap> {
        let best = samples.iter().min_by_key(|s| s.rtt())?;
        let rtt = best.rtt();
        Some(ClockMap {
            local: best.sent + rtt / 2,
            coordinator_us: best.coordinator_us,
            rtt,
        })
    }

    /// The local instant of the coordinator's `us`.
    pub fn local(&self, us: u64) -> Instant {
        if us >= self.coordinator_us {
            self.local + Duration::from_micros(us - self.coordinator_us)
        } else {
            let back = Duration::from_micros(self.coordinator_us - us);
            self.local.checked_sub(back).unwrap_or(self.local)
        }
    }

    /// How far off a mapped instant can be.
    pub fn uncertainty(&self) -> Duration {
        self.rtt / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_round_trip_wins_and_maps_coordinator_time() {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        // The coordinator's clock reads 1,000,000 µs at local instant 100 ms (its epoch is
        // local 100 ms − 1 s). A slow round trip answered late, a fast one answered mid-way.
        let coordinator = |local_ms: u64| 1_000_000 + (local_ms - 100) * 1_000;
        let slow = Sample {
            sent: at(100),
            received: at(160),
            coordinator_us: coordinator(150),
        };
        let fast = Sample {
            sent: at(200),
            received: at(204),
            coordinator_us: coordinator(202),
        };
        let map = ClockMap::from_samples(&[slow, fast]).expect("samples");
        assert_eq!(map.rtt, Duration::from_millis(4));
        assert_eq!(map.uncertainty(), Duration::from_millis(2));
        // The opening at the coordinator's local 5,100 ms lands on local 5,100 ms here.
        assert_eq!(map.local(coordinator(5_100)), at(5_100));
        assert_eq!(map.local(coordinator(150)), at(150));
        assert!(ClockMap::from_samples(&[]).is_none());
        // With only the slow sample, the error stays within half its round trip.
        let slow_map = ClockMap::from_samples(&[slow]).expect("one");
        let off = slow_map
            .local(coordinator(5_100))
            .saturating_duration_since(at(5_100))
            .max(at(5_100).saturating_duration_since(slow_map.local(coordinator(5_100))));
        assert!(off <= slow_map.uncertainty(), "{off:?}");
    }
}
