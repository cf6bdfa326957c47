//! Per-office call figures (SPEC R5.5): how many draws and custom checks an office answered and
//! how long each took, from the engine handle's call to its answer in the caller's hands (the
//! mailbox wait, the pool's step and the durable group commit).
//!
//! Recorded by the caller's thread after the answer arrives, never inside the office actor:
//! a few relaxed atomic additions in the office's own [`crate::actor::OfficeHealth`], no lock.
//! Readers take a [`CallSnapshot`] and subtract an earlier one to get the figures of a window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in µs; one more bucket holds everything slower.
pub const CALL_LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets of a histogram: one per bound and one beyond the last.
pub const CALL_BUCKETS: usize = CALL_LATENCY_BOUNDS_US.len() + 1;

/// The upper bound of the histogram bucket holding quantile `q` of `count` observations, from
/// cumulative buckets `(upper bound, observations within it)` in increasing order; `None`
/// without observations or when the quantile lies beyond the last bucket.
pub fn bucket_quantile(
    within: impl IntoIterator<Item = (f64, u64)>,
    count: u64,
    q: f64,
) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    within
        .into_iter()
        .find(|&(_, n)| n >= rank)
        .map(|(bound, _)| bound)
}

/// The calls an office's figures are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Random draws (R4.6).
    Draw,
    /// Custom checks (R4.5).
    Check,
}

/// One kind of call of one office, since the office started (atomics; no lock).
#[derive(Debug, Default)]
pub struct CallFigures {
    /// Calls the office refused for a business reason (quota spent, none available, …); they
    /// are answered calls too, and counted in the buckets.
    refused: AtomicU64,
    /// Answered calls per latency bucket (each call in its own bucket alone).
    buckets: [AtomicU64; CALL_BUCKETS],
    sum_us: AtomicU64,
}

impl CallFigures {
    /// Records one answered call: `refused` when the office said no for a business reason.
    pub fn record(&self, elapsed: Duration, refused: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = CALL_LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(CALL_LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The figures so far.
    pub fn snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            refused: self.refused.load(Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A reading of [`CallFigures`], or the difference of two readings (a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallSnapshot {
    pub refused: u64,
    /// Calls per latency bucket ([`CALL_LATENCY_BOUNDS_US`], then beyond the last bound).
    pub buckets: [u64; CALL_BUCKETS],
    pub sum_us: u64,
}

impl CallSnapshot {
    /// Calls answered.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &CallSnapshot) -> CallSnapshot {
        CallSnapshot {
            refused: self.refused.saturating_sub(earlier.refused),
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// `(upper bound µs, calls within it)` per bucket, cumulative, up to the last bound.
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        CALL_LATENCY_BOUNDS_US
            .iter()
            .zip(self.buckets)
            .scan(0, |within, (&bound, n)| {
                *within += n;
                Some((bound, *within))
            })
    }

    /// The upper bound (µs) of the bucket holding quantile `q`; `None` without calls or when
    /// the quantile lies beyond the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let within = self.cumulative().map(|(bound, n)| (bound as f64, n));
        bucket_quantile(within, self.count(), q).map(|bound| bound as u64)
    }

    /// Mean latency in µs; `None` without calls.
    pub fn mean_us(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_us as f64 / count as f64)
    }
}

/// An office's figures of both kinds of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfficeCalls {
    pub draws: CallSnapshot,
    pub checks: CallSnapshot,
}

impl OfficeCalls {
    pub fn since(&self, earlier: &OfficeCalls) -> OfficeCalls {
        OfficeCalls {
            draws: self.draws.since(&earlier.draws),
            checks: self.checks.since(&earlier.checks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_bucket_and_windows_subtract() {
        let f = CallFigures::default();
        f.record(Duration::from_micros(80), false);
        f.record(Duration::from_micros(700), true);
        f.record(Duration::from_millis(3), false);
        let first = f.snapshot();
        assert_eq!(first.count(), 3);
        assert_eq!(first.refused, 1);
        assert_eq!(first.buckets[0], 1, "80 µs is within 100 µs");
        assert_eq!(first.buckets[3], 1, "700 µs is within 1 ms");
        assert_eq!(first.buckets[5], 1, "3 ms is within 5 ms");
        assert_eq!(first.quantile_us(0.5), Some(1_000));
        assert_eq!(first.quantile_us(0.99), Some(5_000));
        assert_eq!(first.mean_us(), Some((80.0 + 700.0 + 3_000.0) / 3.0));
        f.record(Duration::from_secs(60), false);
        let window = f.snapshot().since(&first);
        assert_eq!((window.count(), window.refused), (1, 0));
        assert_eq!(window.buckets[CALL_BUCKETS - 1], 1, "beyond the last bound");
        assert_eq!(window.quantile_us(0.5), None);
        assert_eq!(CallSnapshot::default().quantile_us(0.5), None);
        assert_eq!(CallSnapshot::default().mean_us(), None);
    }
}
