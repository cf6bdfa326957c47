//! Closed-loop load on the current actix system: `inflight` tasks, each issuing one operation
//! after another, until a deadline or a total count. Everything runs on one thread (the system's),
//! as a gateway's request handlers would, and talks to the office actors on their own arbiters.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// When a closed loop stops issuing.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Issue until this much time has passed (the ones in flight then still complete).
    After(Duration),
    /// Issue exactly this many operations in total.
    Count(u64),
}

/// What a closed loop did.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Run {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another run of the same workload (rounds interleaved with a baseline).
    pub fn absorb(&mut self, other: Run) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `op` from `inflight` concurrent tasks until `stop`. `op` returns `Err(message)` when the
/// operation did not do what the workload expects.
pub async fn closed_loop<Op, Fut>(inflight: usize, stop: Stop, op: Op) -> Run
where
    Op: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let op = Rc::new(op);
    let issued = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(inflight);
    for _ in 0..inflight.max(1) {
        let op = op.clone();
        let issued = issued.clone();
        tasks.push(actix_rt::spawn(async move {
            let mut run = Run::default();
            loop {
                let go = match stop {
                    Stop::After(d) => start.elapsed() < d,
                    Stop::Count(n) => issued.get() < n,
                };
                if !go {
                    break;
                }
                issued.set(issued.get() + 1);
                match op().await {
                    Ok(()) => run.ok += 1,
                    Err(e) => {
                        run.failed += 1;
                        if run.first_error.is_none() {
                            run.first_error = Some(e);
                        }
                    }
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for t in tasks {
        if let Ok(run) = t.await {
            total.absorb(run);
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// A latency histogram in microseconds, 1 µs to 60 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds are valid")
}

/// Records a duration in a microsecond histogram.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 60_000_000);
    h.saturating_record(us);
}
