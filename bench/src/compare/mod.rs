//! platepool side by side with the designs a team would build instead (issue 5): the same five
//! operations on the same office, implemented as an expert in each system would, measured
//! interleaved in one run by `src/bin/compare.rs`.
//!
//! - [`engine::EngineBackend`]: platepool's [`Engine`](platepool_engine::Engine) in-process
//!   (the fixture's standard office, [`crate::fixture::Plan::standard`]);
//! - [`redis::RedisBackend`]: Redis with Lua scripts (a set of available numbers drawn with
//!   `SPOP`, an owner hash, a sorted set of hold deadlines, keyboard counts per position subset);
//! - [`postgres::PgBackend`]: PostgreSQL with PL/pgSQL functions (`FOR UPDATE SKIP LOCKED` on a
//!   random key, hold deadline columns, partial indexes, prepared statements, a connection pool);
//! - [`http`]: the gateway over HTTP and a Redis-backed twin of its draw route.
//!
//! Every backend answers the same [`PoolBackend`] calls for the same applications and numbers:
//! the fixture's applications, its claimed (taken) numbers and its holders' batches are loaded
//! into Redis and PostgreSQL as they are in the engine, so a failing custom check names the same
//! kind of numbers everywhere.

pub mod engine;
pub mod http;
pub mod limits;
pub mod postgres;
pub mod redis;
pub mod report;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use platepool_engine::pattern::CharSet;
use platepool_engine::plate::{index_char, Serial};

use crate::fixture::{Office, CHECK_PLATES};
use crate::load::{closed_loop, histogram, record, Run, Stop};

/// Numbers a random draw holds (SPEC §3 `random_batch`).
pub const DRAW_BATCH: usize = 10;
/// Life of a drawn batch in the Redis and PostgreSQL designs (the fixture's `random_ttl_ms`).
pub const HOLD_TTL_MS: u64 = 1_800_000;
/// The serial alphabet: digits, then letters without I and O (the engine's `plate` module).
pub fn alphabet() -> Vec<char> {
    (0u8..34).map(index_char).collect()
}

/// What a custom check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The first available number named was claimed.
    Claimed(String),
    /// None was available; the quota was debited by the numbers named.
    NoneAvailable,
}

/// The five operations of the comparison, for one office. `app` indexes the fixture's selecting
/// applications (round robin over them); each claim takes the next of its claimer applications.
///
/// Every write is acknowledged only when durable at the backend's configured level: platepool
/// after `fdatasync`, Redis after its AOF write (fsynced with `appendfsync always`), PostgreSQL
/// after its WAL flush (`synchronous_commit on`).
pub trait PoolBackend {
    /// A short name for tables ("Redis (always)").
    fn name(&self) -> String;

    /// Random draw: the previous batch back to the pool, `DRAW_BATCH` available numbers held,
    /// one random draw debited. Returns how many numbers are now held.
    fn draw(&self, app: usize) -> impl Future<Output = Result<usize, String>>;

    /// Custom check of up to five numbers: the first available one is claimed (quota debited up
    /// to it), else the quota is debited by every number named and an audit entry written.
    fn check(
        &self,
        app: usize,
        plates: Vec<String>,
    ) -> impl Future<Output = Result<CheckOutcome, String>>;

    /// Durable claim of a number the next claimer application holds; its other holds go back to
    /// the pool. The claimer's draw (and, in platepool, its pick of the number as candidate) is
    /// setup, not timed: returns the time of the claim alone.
    fn claim(&self) -> impl Future<Output = Result<Duration, String>>;

    /// Keyboard: for a partly entered serial, the characters enabled at each position.
    fn keyboard(
        &self,
        app: usize,
        entered: Vec<Option<u8>>,
    ) -> impl Future<Output = Result<Vec<CharSet>, String>>;

    /// Hold expiry: `apps` applications draw batches that are due at once, then the backend's
    /// own expiry mechanism returns every due hold to the pool. Returns (holds returned, time of
    /// the expiry work alone).
    fn expire(&self, apps: usize) -> impl Future<Output = Result<(u64, Duration), String>>;
}

/// The plates of failing custom checks, the same sequence for every backend: taken and held
/// numbers of the fixture ([`Office::next_plates`]).
#[derive(Debug, Clone)]
pub struct CheckPlates {
    taken: Rc<Vec<Serial>>,
    held: Rc<Vec<Serial>>,
    cursor: Rc<Cell<usize>>,
}

impl CheckPlates {
    pub fn new(office: &Office) -> CheckPlates {
        CheckPlates {
            taken: Rc::new(office.taken.clone()),
            held: Rc::new(office.held.clone()),
            cursor: Rc::new(Cell::new(0)),
        }
    }

    pub fn next(&self) -> Vec<String> {
        let plates = Office::next_plates(&self.cursor, &self.taken, &self.held);
        debug_assert_eq!(plates.len(), CHECK_PLATES);
        plates
    }
}

/// One measured operation: count, time and latency per call.
#[derive(Debug, Clone)]
pub struct Measured {
    pub run: Run,
    pub latency: Histogram<u64>,
}

impl Measured {
    pub fn new() -> Measured {
        Measured {
            run: Run::default(),
            latency: histogram(),
        }
    }

    pub fn absorb(&mut self, other: Measured) {
        self.run.absorb(other.run);
        // Both histograms have the same bounds: adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    pub fn rate(&self) -> f64 {
        self.run.rate()
    }

    /// A latency percentile in microseconds.
    pub fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64
    }
}

impl Default for Measured {
    fn default() -> Self {
        Measured::new()
    }
}

/// Closed-loop load ([`crate::load::closed_loop`]) with the latency of every successful call
/// recorded: `inflight` tasks on the current actix system, each issuing `op(i)` (i counts calls)
/// until `stop`.
pub async fn measure<F, Fut>(inflight: usize, stop: Stop, op: F) -> Measured
where
    F: Fn(usize) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let latency = Rc::new(RefCell::new(histogram()));
    let calls = Cell::new(0usize);
    let recorder = latency.clone();
    let run = closed_loop(inflight, stop, move || {
        let i = calls.get();
        calls.set(i + 1);
        let call = op(i);
        let recorder = recorder.clone();
        async move {
            let t = Instant::now();
            let r = call.await;
            if r.is_ok() {
                record(&mut recorder.borrow_mut(), t.elapsed());
            }
            r
        }
    })
    .await;
    let latency = latency.replace(histogram());
    Measured { run, latency }
}

/// The draw workload: application `i` of the selecting ones draws, 10 numbers must be held.
pub async fn draw_once<B: PoolBackend>(b: &B, i: usize) -> Result<(), String> {
    match b.draw(i).await? {
        DRAW_BATCH => Ok(()),
        n => Err(format!("draw held {n} numbers")),
    }
}

/// The check workload: a failing check of five taken or held numbers.
pub async fn check_once<B: PoolBackend>(
    b: &B,
    i: usize,
    plates: Vec<String>,
) -> Result<(), String> {
    match b.check(i, plates).await? {
        CheckOutcome::NoneAvailable => Ok(()),
        CheckOutcome::Claimed(s) => Err(format!("check claimed {s}")),
    }
}

/// A keyboard as text, one string of enabled characters per position (for comparing backends).
pub fn keyboard_text(k: &[CharSet]) -> Vec<String> {
    k.iter().map(|c| c.to_chars()).collect()
}

/// The projection of `chars` on the positions of `mask` ('?' elsewhere): the key of one cell of
/// the keyboard counts the Redis design keeps (as the engine's `KeyboardIndex` keeps per subset).
pub fn projection(chars: &[char], mask: u32) -> String {
    chars
        .iter()
        .enumerate()
        .map(|(p, &c)| if mask & (1 << p) != 0 { c } else { '?' })
        .collect()
}

/// The serial as its characters.
pub fn serial_chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_the_masked_positions() {
        let chars = serial_chars("A1B23");
        assert_eq!(projection(&chars, 0b00101), "A?B??");
        assert_eq!(projection(&chars, 0b11111), "A1B23");
        assert_eq!(projection(&chars, 0), "?????");
    }

    #[test]
    fn alphabet_has_no_i_or_o() {
        let a = alphabet();
        assert_eq!(a.len(), 34);
        assert!(!a.contains(&'I') && !a.contains(&'O'));
    }
}
