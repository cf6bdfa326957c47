//! Helpers shared by the engine-level tests (`engine_flow.rs`, `crash.rs`, `clock_steps.rs`,
//! `supervision.rs`).
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use platepool_engine::actor::{Clock, SystemClock};
use platepool_engine::calendar::local_to_ms;
use platepool_engine::engine::OfficeSummary;
use platepool_engine::pool::ClassStats;
use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, ApplicationRequest, Caller, CertificateRow, Claim, Durability, Engine, EngineConfig,
    EngineError, NewRelease, Notice, OfficeConfig, OfficeRules, Pattern, ReleaseSource,
};

/// Real time plus an offset the test can move forward: timers (real tokio sleeps) and `now`
/// (this clock) stay consistent, and a test can still jump days ahead.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock::default())
    }

    /// A clock reading `at_ms` now (and moving on in real time from there).
    pub fn starting_at(at_ms: u64) -> Arc<TestClock> {
        let clock = TestClock::default();
        clock
            .offset_ms
            .store(at_ms as i64 - SystemClock.now_ms() as i64, Ordering::SeqCst);
        Arc::new(clock)
    }

    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms as i64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        (SystemClock.now_ms() as i64 + self.offset_ms.load(Ordering::SeqCst)).max(0) as u64
    }
}

pub fn engine_config(
    dir: &Path,
    durability: Durability,
    clock: Arc<dyn Clock>,
    seed: u64,
) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.durability = durability;
    config.clock = clock;
    config.seed = Some(seed);
    config
}

/// Opens an engine, waiting while a previous process or system still holds sled's file lock
/// (its arbiter and writer threads wind down after their system stopped).
pub async fn open_engine(config: EngineConfig) -> Engine {
    let started = Instant::now();
    loop {
        match Engine::open(config.clone()).await {
            Ok(engine) => return engine,
            Err(EngineError::Store(e))
                if e.to_string().contains("lock")
                    && started.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("engine does not open: {e}"),
        }
    }
}

/// Runs `make()` in a fresh actix system on a thread of its own and stops that system (and with
/// it every office arbiter) before returning, so the data folder can be opened again.
pub fn in_own_system<F, Fut, R>(make: F) -> R
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let out = system.block_on(make());
        system.block_on(async { actix_rt::System::current().stop() });
        system.run().unwrap();
        out
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// An office serving both built-in classes, default rules, notice version `v1`.
pub fn office_config(name: &str) -> OfficeConfig {
    OfficeConfig {
        name: name.to_string(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "small_new_energy".into()],
        // Draws back to back, as most scripts and models make them; draw pacing (R4.14) has
        // its own tests, which set the rule.
        rules: OfficeRules {
            random_min_interval_ms: 0,
            ..OfficeRules::default()
        },
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

/// A valid VIN made from a tag and a number (17 characters, right check digit).
pub fn vin(tag: &str, n: u32) -> String {
    let raw = format!("LSV{tag:0>2}{n:03}X12345678");
    assert_eq!(raw.len(), 17, "{raw}");
    Vin::with_check_digit(&raw).unwrap().into_string()
}

pub fn cert(vin: &str, voucher: &str, class: &str, energy: &str) -> CertificateRow {
    CertificateRow {
        vin: vin.to_string(),
        voucher: voucher.to_string(),
        class: class.to_string(),
        energy: energy.to_string(),
    }
}

pub fn request(office: &str, user: &str, vin: &str, voucher: &str) -> ApplicationRequest {
    ApplicationRequest {
        office: office.to_string(),
        user: user.to_string(),
        phone: format!("138{:08}", user.len()),
        vin: vin.to_string(),
        voucher: voucher.to_string(),
        notice_version: "v1".into(),
    }
}

pub fn class_stats<'a>(stats: &'a [ClassStats], class: &str) -> &'a ClassStats {
    stats.iter().find(|s| s.class == class).unwrap()
}

pub fn office_ids(offices: &[OfficeSummary]) -> Vec<String> {
    offices.iter().map(|o| o.id.clone()).collect()
}

/// Waits (polling) until `f` is true or `timeout` passes; returns whether it became true.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if f() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Monday 2 March 2026, 10:00 office local time.
pub fn monday_10am() -> u64 {
    local_to_ms(
        NaiveDate::from_ymd_opt(2026, 3, 2)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap(),
    )
}

/// A release of `class` named by `patterns`, opening at `opens_at_ms`.
pub fn release(class: &str, patterns: &[&str], opens_at_ms: u64) -> NewRelease {
    NewRelease {
        class: class.to_string(),
        label: String::new(),
        opens_at_ms,
        custom_from_ms: None,
        source: ReleaseSource::Patterns(
            patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
        ),
    }
}

/// Office `id` configured as `config`, with a release of small-class `patterns` opened ten
/// seconds ago; `who` is the operator.
pub async fn office_with_release(
    engine: &Engine,
    id: &str,
    config: OfficeConfig,
    patterns: &[&str],
    who: &str,
) {
    engine.put_office(id, config, who).await.unwrap();
    let opens = engine.now_ms() - 10_000;
    engine
        .add_release(id, release("small", patterns, opens), who)
        .await
        .unwrap();
}

/// `user`'s application to `office` for a small fuel car (its certificate imported first),
/// identity verified.
pub async fn verified_application(
    engine: &Engine,
    office: &str,
    user: &str,
    vin: &str,
    voucher: &str,
) -> AppId {
    engine
        .import_certificates(vec![cert(vin, voucher, "small", "fuel")], "operator:test")
        .await
        .unwrap();
    let id = engine
        .create_application(request(office, user, vin, voucher))
        .await
        .unwrap();
    engine
        .verify_identity(&id, Caller::Citizen(user))
        .await
        .unwrap();
    id
}

/// `user` draws, picks the batch's first number and claims it.
pub async fn draw_and_claim(engine: &Engine, id: &AppId, user: &str) -> Claim {
    let who = Caller::Citizen(user);
    let draw = engine.draw(id, who, false).await.unwrap();
    let serial = draw.batch.serials[0].to_string();
    engine.pick_candidate(id, who, &serial).await.unwrap();
    engine.claim(id, who, &serial).await.unwrap()
}
