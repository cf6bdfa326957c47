//! The engine's own clock (SPEC T1): wall time guarded by the monotonic clock.
//!
//! Every reading compares the wall clock with the trusted timeline — the last trusted wall time
//! plus the monotonic time elapsed since. While the two agree within the bound (default
//! [`CLOCK_STEP_BOUND`], 2 s) the engine follows the wall clock, never backwards: a small step
//! back holds engine time still for at most the bound. A step beyond the bound, forwards or
//! backwards, is logged, counted and leaves the clock *degraded*: engine time goes on along the
//! monotonic clock, so no hold expires early, no claim lapses and nobody is blacklisted because
//! of the step, and no hold or interval is stretched by it. The clock leaves that state when
//! the wall clock agrees again (the step was undone), or when an operator confirms the wall
//! time ([`GuardedClock::confirm`]): engine time then jumps to the wall clock, what the step
//! would have made due becomes due, and each office shifts its holds by the jump
//! ([`ClockReading::shift_ms`], [`crate::pool::OfficePool::shift_for_clock_jump`]) so that a hold still
//! lasts what it was given.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::actor::Clock;

/// A wall-clock step larger than this, between two readings, is not followed until confirmed.
pub const CLOCK_STEP_BOUND: Duration = Duration::from_secs(2);

/// The engine's time and the sum of the jumps operators confirmed so far, read together so an
/// office can shift its holds by exactly the jumps it has not yet seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    pub now_ms: u64,
    pub shift_ms: i64,
}

/// A wall-clock step that has not been followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockStep {
    /// Wall time minus engine time when last read, in ms (positive: the wall clock is ahead).
    pub offset_ms: i64,
    /// Engine time when the step was seen.
    pub seen_at_ms: u64,
}

/// What `/readyz` and `/metrics` say about the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockStatus {
    /// The engine's time.
    pub now_ms: u64,
    /// The wall clock's.
    pub wall_ms: u64,
    pub bound_ms: u64,
    /// Steps beyond the bound seen since the engine started.
    pub steps: u64,
    /// The step not yet followed, while the clock is degraded.
    pub degraded: Option<ClockStep>,
}

/// An operator's confirmation of the wall time (audited by the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockConfirmation {
    /// Engine time just before and just after the confirmation.
    pub from_ms: u64,
    pub to_ms: u64,
    /// `to_ms - from_ms`.
    pub jump_ms: i64,
}

#[derive(Debug)]
struct State {
    /// Engine time and monotonic time at the last trusted reading.
    anchor_ms: u64,
    anchor_mono_ms: u64,
    /// The last engine time answered (engine time never goes back unless confirmed).
    last_ms: u64,
    steps: u64,
    degraded: Option<ClockStep>,
    shift_ms: i64,
}

/// The guarded clock: wraps a source of wall and monotonic time (the system's, or a test's).
#[derive(Debug)]
pub struct GuardedClock {
    source: Arc<dyn Clock>,
    bound_ms: u64,
    state: Mutex<State>,
}

impl GuardedClock {
    pub fn new(source: Arc<dyn Clock>, bound: Duration) -> GuardedClock {
        let (wall, mono) = (source.now_ms(), source.monotonic_ms());
        GuardedClock {
            source,
            bound_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
            state: Mutex::new(State {
                anchor_ms: wall,
                anchor_mono_ms: mono,
                last_ms: wall,
                steps: 0,
                degraded: None,
                shift_ms: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads both clocks and updates the state: returns (engine time, wall time, mono time).
    fn observe(&self, st: &mut State) -> (u64, u64, u64) {
        let wall = self.source.now_ms();
        let mono = self.source.monotonic_ms();
        let trusted = st
            .anchor_ms
            .saturating_add(mono.saturating_sub(st.anchor_mono_ms));
        let offset = wall as i64 - trusted as i64;
        let agrees = offset.unsigned_abs() <= self.bound_ms;
        match st.degraded {
            None if agrees => {}
            None => {
                st.steps += 1;
                st.degraded = Some(ClockStep {
                    offset_ms: offset,
                    seen_at_ms: trusted,
                });
                tracing::warn!(
                    offset_ms = offset,
                    bound_ms = self.bound_ms,
                    engine_ms = trusted,
                    wall_ms = wall,
                    "wall clock stepped beyond the bound: engine time follows the monotonic \
                     clock until the wall clock agrees again or an operator confirms it"
                );
            }
            Some(_) if agrees => {
                st.degraded = None;
                tracing::info!(
                    offset_ms = offset,
                    "wall clock agrees with engine time again"
                );
            }
            Some(step) => {
                if (offset - step.offset_ms).unsigned_abs() > self.bound_ms {
                    st.steps += 1;
                    tracing::warn!(
                        offset_ms = offset,
                        previous_offset_ms = step.offset_ms,
                        "wall clock stepped again while degraded"
                    );
                }
                st.degraded = Some(ClockStep {
                    offset_ms: offset,
                    seen_at_ms: step.seen_at_ms,
                });
            }
        }
        let engine = if st.degraded.is_some() { trusted } else { wall };
        st.anchor_ms = engine;
        st.anchor_mono_ms = mono;
        st.last_ms = st.last_ms.max(engine);
        (st.last_ms, wall, mono)
    }

    /// The clock as `/readyz` and `/metrics` show it (reads the clocks: a step is seen here even
    /// while no office is called).
    pub fn status(&self) -> ClockStatus {
        let mut st = self.state();
        let (now_ms, wall_ms, _) = self.observe(&mut st);
        ClockStatus {
            now_ms,
            wall_ms,
            bound_ms: self.bound_ms,
            steps: st.steps,
            degraded: st.degraded,
        }
    }

    /// An operator confirms that the wall clock is right: engine time jumps to it and the jump
    /// is added to [`ClockReading::shift_ms`]. `None` when the clock is not degraded.
    pub fn confirm(&self) -> Option<ClockConfirmation> {
        let mut st = self.state();
        let (from_ms, wall, mono) = self.observe(&mut st);
        st.degraded.take()?;
        st.anchor_ms = wall;
        st.anchor_mono_ms = mono;
        st.last_ms = wall;
        let jump_ms = wall as i64 - from_ms as i64;
        st.shift_ms += jump_ms;
        tracing::warn!(from_ms, to_ms = wall, jump_ms, "wall clock confirmed");
        Some(ClockConfirmation {
            from_ms,
            to_ms: wall,
            jump_ms,
        })
    }
}

impl Clock for GuardedClock {
    fn now_ms(&self) -> u64 {
        self.reading().now_ms
    }

    fn monotonic_ms(&self) -> u64 {
        self.source.monotonic_ms()
    }

    fn reading(&self) -> ClockReading {
        let mut st = self.state();
        let (now_ms, _, _) = self.observe(&mut st);
        ClockReading {
            now_ms,
            shift_ms: st.shift_ms,
        }
    }
}

/// A clock whose wall and monotonic readings a test sets apart: `advance` is time passing,
/// `step_wall` a step of the wall clock alone.
#[derive(Debug, Default)]
pub struct FakeClock {
    wall_ms: std::sync::atomic::AtomicI64,
    mono_ms: std::sync::atomic::AtomicU64,
}

impl FakeClock {
    pub fn at(wall_ms: u64) -> FakeClock {
        let c = FakeClock::default();
        c.wall_ms
            .store(wall_ms as i64, std::sync::atomic::Ordering::SeqCst);
        c
    }

    pub fn advance(&self, ms: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.wall_ms.fetch_add(ms as i64, SeqCst);
        self.mono_ms.fetch_add(ms, SeqCst);
    }

    pub fn step_wall(&self, ms: i64) {
        self.wall_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.wall_ms
            .load(std::sync::atomic::Ordering::SeqCst)
            .max(0) as u64
    }

    fn monotonic_ms(&self) -> u64 {
        self.mono_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: u64 = 1_790_000_000_000;
    const DAY: i64 = 86_400_000;

    fn guarded() -> (Arc<FakeClock>, GuardedClock) {
        let fake = Arc::new(FakeClock::at(T0));
        let clock = GuardedClock::new(fake.clone(), CLOCK_STEP_BOUND);
        (fake, clock)
    }

    #[test]
    fn engine_time_follows_the_wall_clock_within_the_bound() {
        let (fake, clock) = guarded();
        assert_eq!(clock.now_ms(), T0);
        fake.advance(1_000);
        assert_eq!(clock.now_ms(), T0 + 1_000);
        // A small correction forward is followed at once.
        fake.step_wall(1_500);
        assert_eq!(clock.now_ms(), T0 + 2_500);
        // A small one back holds engine time still, never moves it back.
        fake.step_wall(-1_800);
        assert_eq!(clock.now_ms(), T0 + 2_500);
        fake.advance(1_000);
        assert_eq!(clock.now_ms(), T0 + 2_500);
        fake.advance(1_000);
        assert_eq!(clock.now_ms(), T0 + 2_700);
        let status = clock.status();
        assert_eq!((status.steps, status.degraded), (0, None));
    }

    #[test]
    fn a_forward_step_is_not_followed_until_confirmed() {
        let (fake, clock) = guarded();
        let before = clock.reading();
        fake.step_wall(30 * DAY);
        fake.advance(500);
        let during = clock.reading();
        assert_eq!(
            during.now_ms,
            T0 + 500,
            "engine time follows the monotonic clock"
        );
        assert_eq!(during.shift_ms, before.shift_ms);
        let status = clock.status();
        assert_eq!(status.steps, 1);
        let step = status.degraded.unwrap();
        assert_eq!(step.offset_ms, 30 * DAY);
        assert_eq!(step.seen_at_ms, T0 + 500);
        // Time goes on along the monotonic clock, and the step is counted once.
        fake.advance(10_000);
        assert_eq!(clock.now_ms(), T0 + 10_500);
        assert_eq!(clock.status().steps, 1);
        // The operator confirms: engine time jumps, the jump is in the reading's shift.
        let confirmed = clock.confirm().unwrap();
        assert_eq!(confirmed.from_ms, T0 + 10_500);
        assert_eq!(confirmed.jump_ms, 30 * DAY);
        let after = clock.reading();
        assert_eq!(after.now_ms, T0 + 10_500 + 30 * DAY as u64);
        assert_eq!(after.shift_ms, 30 * DAY);
        assert_eq!(clock.status().degraded, None);
        assert_eq!(clock.confirm(), None, "nothing left to confirm");
    }

    #[test]
    fn a_backward_step_never_stretches_time_and_can_be_undone() {
        let (fake, clock) = guarded();
        fake.step_wall(-3_600_000);
        fake.advance(60_000);
        // A 60 s hold made just before the step is due after 60 s, not after an hour.
        assert_eq!(clock.now_ms(), T0 + 60_000);
        assert_eq!(clock.status().degraded.unwrap().offset_ms, -3_600_000);
        // The wall clock is set right again: it agrees, and the clock is no longer degraded.
        fake.step_wall(3_600_000);
        fake.advance(1_000);
        assert_eq!(clock.now_ms(), T0 + 61_000);
        let status = clock.status();
        assert_eq!((status.steps, status.degraded), (1, None));
        assert_eq!(clock.reading().shift_ms, 0, "nothing was confirmed");
    }

    #[test]
    fn a_second_step_while_degraded_is_counted_and_a_backward_confirmation_moves_back() {
        let (fake, clock) = guarded();
        fake.step_wall(30 * DAY);
        assert_eq!(clock.status().steps, 1);
        fake.step_wall(-30 * DAY - 3_600_000);
        let status = clock.status();
        assert_eq!(status.steps, 2);
        assert_eq!(status.degraded.unwrap().offset_ms, -3_600_000);
        let confirmed = clock.confirm().unwrap();
        assert_eq!(confirmed.jump_ms, -3_600_000);
        assert_eq!(clock.now_ms(), T0 - 3_600_000);
        assert_eq!(clock.reading().shift_ms, -3_600_000);
    }
}
