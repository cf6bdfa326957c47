//! platepool in-process: the fixture's standard office behind the real [`Engine`] handle (what
//! the gateway calls), durable with `fdatasync`; hold expiry on the fixture's pure pool, since the
//! engine expires holds on its own timer and holds are never written (nothing to persist).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use platepool_engine::actor::{Clock, SystemClock};
use platepool_engine::pattern::CharSet;
use platepool_engine::{Caller, Check};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{CheckOutcome, PoolBackend, HOLD_TTL_MS};
use crate::fixture::{Office, Pure, Target};
use crate::io::{encode_like_store, RawRecord};

/// The engine in-process, with the pool alone for the expiry figure.
#[derive(Debug)]
pub struct EngineBackend {
    pub office: Office,
    pure: RefCell<Pure>,
    rng: RefCell<StdRng>,
}

impl EngineBackend {
    /// `office` must be served through the engine handle ([`Office::engine`]).
    pub fn new(office: Office, pure: Pure) -> EngineBackend {
        assert!(
            matches!(office.target, Target::Engine(_)),
            "the comparison calls the engine handle"
        );
        EngineBackend {
            office,
            pure: RefCell::new(pure),
            rng: RefCell::new(StdRng::seed_from_u64(11)),
        }
    }

    /// `n` keyboard queries over the office's numbers (the engine report's query mix).
    pub fn keyboard_queries(&self, n: usize) -> Vec<Vec<Option<u8>>> {
        self.pure.borrow().scan_set().queries(n, 9)
    }

    /// The records one draw and one failing check write (for the raw sled limit).
    pub fn record_templates(&self) -> (Vec<RawRecord>, Vec<RawRecord>) {
        let mut pure = self.pure.borrow_mut();
        (
            encode_like_store(&pure.draw_records()),
            encode_like_store(&pure.check_records()),
        )
    }

    fn held(pure: &Pure) -> u64 {
        pure.pool.stats().iter().map(|s| s.counts.held).sum()
    }
}

impl PoolBackend for EngineBackend {
    fn name(&self) -> String {
        "platepool".into()
    }

    async fn draw(&self, app: usize) -> Result<usize, String> {
        let select = &self.office.select;
        let a = &select[app % select.len()];
        let d = self
            .office
            .target
            .draw(a)
            .await
            .map_err(|e| e.to_string())?;
        Ok(d.batch.serials.len())
    }

    async fn check(&self, app: usize, plates: Vec<String>) -> Result<CheckOutcome, String> {
        let select = &self.office.select;
        let a = &select[app % select.len()];
        match self.office.target.custom_check(a, plates).await {
            Ok(Check::Claimed(c)) => Ok(CheckOutcome::Claimed(c.serial.to_string())),
            Ok(Check::NoneAvailable { .. }) => Ok(CheckOutcome::NoneAvailable),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn claim(&self) -> Result<Duration, String> {
        if self.office.claimers_left() == 0 {
            return Err("no claimer left".into());
        }
        Ok(self.office.claim_once().await)
    }

    async fn keyboard(&self, app: usize, entered: Vec<Option<u8>>) -> Result<Vec<CharSet>, String> {
        let select = &self.office.select;
        let a = &select[app % select.len()];
        let Target::Engine(engine) = &self.office.target else {
            return Err("not the engine".into());
        };
        engine
            .keyboard(&a.id, Caller::Citizen(&a.user), entered)
            .await
            .map_err(|e| e.to_string())
    }

    async fn expire(&self, apps: usize) -> Result<(u64, Duration), String> {
        let mut pure = self.pure.borrow_mut();
        let mut rng = self.rng.borrow_mut();
        let now = SystemClock.now_ms();
        let seqs: Vec<u64> = pure.select.iter().take(apps).map(|a| a.id.seq).collect();
        for seq in seqs {
            pure.pool
                .draw(seq, false, now, &mut *rng)
                .map_err(|e| e.to_string())?;
        }
        pure.pool.take_effects();
        let before = EngineBackend::held(&pure);
        // What the office actor's timer does at the deadline: one tick.
        let t = Instant::now();
        pure.pool.tick(now + HOLD_TTL_MS);
        let effects = pure.pool.take_effects();
        let elapsed = t.elapsed();
        std::hint::black_box(effects);
        let returned = before - EngineBackend::held(&pure);
        Ok((returned, elapsed))
    }
}
