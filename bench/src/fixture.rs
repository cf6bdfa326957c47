//! Offices to measure: a pool of a million numbers and ten thousand verified applications, built
//! with the engine's own pure state machine ([`OfficePool`]) and persisted with the engine's own
//! store, then served three ways:
//!
//! - [`Target::Engine`]: the real [`Engine`] handle, opened (recovered) on the folder — what the
//!   gateway calls;
//! - [`Target::Direct`]: the same [`OfficeActor`] and [`Writer`](platepool_engine::store::Writer)
//!   started by hand, so the writer's group-commit counters ([`WriterStats`]) can be read (the
//!   engine handle does not expose them);
//! - [`Pure`]: the pool alone, no actor, no IO.

use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use platepool_engine::actor::{Call, Clock, OfficeActor, OfficeHandle, OfficeHealth, SystemClock};
use platepool_engine::config::QUOTA_MAX;
use platepool_engine::pattern::{CharSet, Pattern};
use platepool_engine::plate::Serial;
use platepool_engine::pool::{NewApplication, OfficePool};
use platepool_engine::record::Record;
use platepool_engine::store::{OfficeStore, Store, WriterStats};
use platepool_engine::{
    AppId, Caller, Check, Draw, Durability, Energy, Engine, EngineConfig, EngineError, NewRelease,
    Notice, OfficeConfig, OfficeRules, PlateClass, Refusal, ReleaseSource,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;

use crate::scan::ScanSet;

/// The office every fixture creates.
pub const OFFICE: &str = "bench";
/// The class every fixture releases into (five characters, `*****`).
pub const CLASS: &str = "small";
/// Numbers named by one custom check in the benchmarks.
pub const CHECK_PLATES: usize = 5;
const HOUR_MS: u64 = 3_600_000;
/// Applications are created in chunks of this many before their records go to the store.
const PERSIST_CHUNK: usize = 10_000;

/// Rules that let one application draw and check many times in a row: quotas at their maximum,
/// no interval between checks or draws, holds that outlast a run, no opening window.
pub fn rules() -> OfficeRules {
    OfficeRules {
        random_quota: QUOTA_MAX,
        custom_quota: QUOTA_MAX,
        custom_per_check: CHECK_PLATES as u32,
        custom_min_interval_ms: 0,
        random_ttl_ms: HOUR_MS / 2,
        candidate_ttl_ms: HOUR_MS / 2,
        opening_window_ms: 0,
        random_min_interval_ms: 0,
        ..OfficeRules::default()
    }
}

pub fn office_config() -> OfficeConfig {
    OfficeConfig {
        name: "Benchmark office".into(),
        prefix: "粤K".into(),
        classes: vec![CLASS.into(), "small_new_energy".into()],
        rules: rules(),
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap_or_else(|e| panic!("pattern {text}: {e}"))
}

/// Exactly 1,000,000 `small` numbers, every one of a shape the default composition rules allow
/// for custom selection (so the whole pool is on the keyboard): `#####` 100,000, `@####`,
/// `#@###`, `##@##` 240,000 each, `###[A-T]#` 180,000.
pub fn million_patterns() -> Vec<Pattern> {
    let patterns: Vec<Pattern> = ["#####", "@####", "#@###", "##@##", "###[A-T]#"]
        .into_iter()
        .map(pattern)
        .collect();
    debug_assert_eq!(patterns.iter().map(Pattern::count).sum::<u64>(), 1_000_000);
    patterns
}

/// `small` numbers for the memory figure: one pattern of the first `k` alphabet characters per
/// position. 1M = 25·25·16·10·10 and 7M = 28·25·25·20·20.
pub fn sized_patterns(numbers: u64) -> Vec<Pattern> {
    let radix: [u8; 5] = match numbers {
        1_000_000 => [25, 25, 16, 10, 10],
        7_000_000 => [28, 25, 25, 20, 20],
        other => panic!("no pattern for {other} numbers"),
    };
    let sets = radix
        .iter()
        .map(|&k| CharSet::from_bits((1u64 << k) - 1))
        .collect();
    vec![Pattern::from_sets(sets).expect("every radix is at least 1")]
}

/// What a workload operation returns: `Err` when it did not do what the workload expects.
pub type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;
/// A workload operation: each call starts the next one.
pub type Op = Box<dyn Fn() -> OpFuture>;

/// An application the benchmarks act for.
#[derive(Debug, Clone)]
pub struct App {
    pub id: AppId,
    pub user: String,
}

/// What to put in an office.
#[derive(Debug, Clone)]
pub struct Plan {
    pub patterns: Vec<Pattern>,
    /// Verified applications that draw, check and type (round robin).
    pub select: usize,
    /// Verified applications kept for claim latency (one claim each).
    pub claimers: usize,
    /// Verified applications that draw once after start, so their numbers are held.
    pub holders: usize,
    /// Applications that each claim one number while the office is built (taken numbers).
    pub takers: usize,
    pub seed: u64,
}

impl Plan {
    /// The office of figures 1–5: 1,000,000 numbers, 10,000 live verified applications.
    pub fn standard() -> Plan {
        Plan {
            patterns: million_patterns(),
            select: 10_000,
            claimers: 2_000,
            holders: 500,
            takers: 2_000,
            seed: 42,
        }
    }
}

/// An office built in memory; its records went to the sink given to [`build`].
#[derive(Debug)]
pub struct Built {
    pub pool: OfficePool,
    pub select: Vec<App>,
    pub claimers: Vec<App>,
    pub holders: Vec<App>,
    /// Numbers claimed while building.
    pub taken: Vec<Serial>,
    /// Every released number (sorted codes), for the keyboard scan.
    pub codes: Vec<u32>,
}

fn new_app(pool: &mut OfficePool, n: usize, now: u64) -> App {
    let user = format!("u{n}");
    let seq = pool
        .create_application(
            NewApplication {
                user: user.clone(),
                phone: format!("138{n:08}"),
                vin: format!("LBENCH{n:011}"),
                class: CLASS.into(),
                energy: Energy::Fuel,
                notice_version: "v1".into(),
            },
            now,
        )
        .expect("application is created");
    pool.verify_identity(seq, now)
        .expect("identity is verified");
    App {
        id: AppId {
            office: OFFICE.into(),
            seq,
        },
        user,
    }
}

/// Builds the office with the engine's pool; every record it leaves goes to `sink` in order
/// (configuration first, then the release, then applications in chunks).
pub fn build(plan: &Plan, sink: &mut dyn FnMut(Vec<Record>)) -> Built {
    let now = SystemClock.now_ms();
    let config = office_config();
    let mut pool = OfficePool::new(OFFICE, config.clone(), PlateClass::builtin())
        .expect("office config is valid");
    sink(vec![Record::Config(Box::new(config))]);
    let mut codes = Vec::new();
    for p in &plan.patterns {
        p.extend_codes(&mut codes);
    }
    codes.sort_unstable();
    pool.add_release(
        NewRelease {
            class: CLASS.into(),
            label: "benchmark release".into(),
            opens_at_ms: now - HOUR_MS,
            custom_from_ms: None,
            source: ReleaseSource::Patterns(plan.patterns.clone()),
        },
        "operator:bench",
        now,
    )
    .expect("release is added");
    sink(pool.take_effects().records);

    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut n = 0usize;
    let mut make = |pool: &mut OfficePool, count: usize, sink: &mut dyn FnMut(Vec<Record>)| {
        let mut apps = Vec::with_capacity(count);
        for _ in 0..count {
            apps.push(new_app(pool, n, now));
            n += 1;
            if n % PERSIST_CHUNK == 0 {
                sink(pool.take_effects().records);
            }
        }
        sink(pool.take_effects().records);
        apps
    };
    let select = make(&mut pool, plan.select, sink);
    let claimers = make(&mut pool, plan.claimers, sink);
    let holders = make(&mut pool, plan.holders, sink);

    let mut taken = Vec::with_capacity(plan.takers);
    if let Some(stride) = codes.len().checked_div(plan.takers) {
        assert!(stride >= 1, "more takers than numbers");
        for i in 0..plan.takers {
            let app = new_app(&mut pool, n, now);
            n += 1;
            let serial =
                Serial::from_code(codes[i * stride + stride / 2], 5).expect("a code of the pool");
            match pool.custom_check(app.id.seq, &[serial.to_string()], now, &mut rng) {
                Ok(Check::Claimed(_)) => taken.push(serial),
                other => panic!("taker {i} could not claim {serial}: {other:?}"),
            }
            if n % PERSIST_CHUNK == 0 {
                sink(pool.take_effects().records);
            }
        }
        sink(pool.take_effects().records);
    }
    Built {
        pool,
        select,
        claimers,
        holders,
        taken,
        codes,
    }
}

/// A pool holding only a release of `patterns` (the memory figure).
pub fn pool_with(patterns: Vec<Pattern>) -> OfficePool {
    let now = SystemClock.now_ms();
    let mut pool = OfficePool::new(OFFICE, office_config(), PlateClass::builtin())
        .expect("office config is valid");
    pool.add_release(
        NewRelease {
            class: CLASS.into(),
            label: "memory".into(),
            opens_at_ms: now - HOUR_MS,
            custom_from_ms: None,
            source: ReleaseSource::Patterns(patterns),
        },
        "operator:bench",
        now,
    )
    .expect("release is added");
    pool.take_effects();
    // The keyboard is built at its first query; memory is measured with it built.
    pool.refresh_keyboards();
    pool
}

/// Builds the office and writes it into a store in `dir` with the given durability, then closes
/// the store (sled flushes on close).
pub fn build_into(dir: &Path, durability: Durability, plan: &Plan) -> Built {
    let store = Store::open(dir, durability).expect("store opens");
    let office = store.office(OFFICE).expect("office tree");
    let built = build(plan, &mut |records| commit(&office, &records));
    store.sync().expect("store syncs");
    built
}

fn commit(office: &OfficeStore, records: &[Record]) {
    for chunk in records.chunks(20_000) {
        office.commit_now(chunk).expect("records are written");
    }
}

/// A fresh temporary folder.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// Opens the engine on `dir`, waiting while a previous system still holds sled's lock.
pub async fn open_engine(dir: &Path, durability: Durability) -> Engine {
    open_engine_timed(dir, durability).await.0
}

/// Opens the engine on `dir` as [`open_engine`]; also returns how long the successful
/// `Engine::open` took (waits for the lock not counted).
pub async fn open_engine_timed(dir: &Path, durability: Durability) -> (Engine, Duration) {
    let mut config = EngineConfig::new(dir);
    config.durability = durability;
    config.seed = Some(7);
    let started = Instant::now();
    loop {
        let attempt = Instant::now();
        match Engine::open(config.clone()).await {
            Ok(engine) => return (engine, attempt.elapsed()),
            Err(EngineError::Store(e))
                if e.to_string().contains("lock")
                    && started.elapsed() < Duration::from_secs(30) =>
            {
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("engine does not open: {e}"),
        }
    }
}

/// Where calls go.
#[derive(Debug, Clone)]
pub enum Target {
    Engine(Engine),
    Direct(OfficeHandle),
}

/// The ownership guard the engine puts around every application call (I7).
fn guard(pool: &OfficePool, seq: u64, user: &str) -> Result<(), Refusal> {
    match pool.application_user(seq)? {
        Some(owner) if owner == user => Ok(()),
        _ => Err(Refusal::UnknownApplication),
    }
}

impl Target {
    pub async fn draw(&self, app: &App) -> Result<Draw, Refusal> {
        match self {
            Target::Engine(e) => e.draw(&app.id, Caller::Citizen(&app.user), false).await,
            Target::Direct(h) => {
                let (seq, user) = (app.id.seq, app.user.clone());
                h.call(Call::write(move |pool, now, rng| {
                    guard(pool, seq, &user)?;
                    pool.draw(seq, false, now, rng)
                }))
                .await
            }
        }
    }

    pub async fn custom_check(&self, app: &App, plates: Vec<String>) -> Result<Check, Refusal> {
        match self {
            Target::Engine(e) => {
                e.custom_check(&app.id, Caller::Citizen(&app.user), plates)
                    .await
            }
            Target::Direct(h) => {
                let (seq, user) = (app.id.seq, app.user.clone());
                h.call(Call::write(move |pool, now, rng| {
                    guard(pool, seq, &user)?;
                    pool.custom_check(seq, &plates, now, rng)
                }))
                .await
            }
        }
    }

    pub async fn keyboard(
        &self,
        app: &App,
        entered: Vec<Option<u8>>,
    ) -> Result<Vec<CharSet>, Refusal> {
        match self {
            Target::Engine(e) => {
                e.keyboard(&app.id, Caller::Citizen(&app.user), entered)
                    .await
            }
            Target::Direct(h) => {
                let (seq, user) = (app.id.seq, app.user.clone());
                h.call(Call::read(move |pool, _| {
                    guard(pool, seq, &user)?;
                    pool.keyboard(seq, &entered)
                }))
                .await
            }
        }
    }

    /// A call that does nothing on the direct actor; through the engine handle, which has no such
    /// call, its cheapest read (`stats`).
    pub async fn noop(&self) -> Result<(), Refusal> {
        match self {
            Target::Engine(e) => e.stats(OFFICE).await.map(|_| ()),
            Target::Direct(h) => h.call(Call::read(|_, _| Ok(()))).await,
        }
    }
}

/// An office being served, with the applications the workloads act for.
#[derive(Debug)]
pub struct Office {
    pub target: Target,
    pub select: Rc<Vec<App>>,
    pub claimers: Vec<App>,
    pub holders: Vec<App>,
    pub taken: Vec<Serial>,
    /// Numbers the holders hold (after [`Office::hold`]).
    pub held: Vec<Serial>,
    /// The writer's counters (direct actor only).
    pub stats: Option<Arc<WriterStats>>,
    draw_cursor: Rc<Cell<usize>>,
    check_cursor: Rc<Cell<usize>>,
    plates_cursor: Rc<Cell<usize>>,
    claim_cursor: Cell<usize>,
    arbiter: Option<Arbiter>,
    dir: TempDir,
}

impl Office {
    fn new(
        target: Target,
        built: Built,
        stats: Option<Arc<WriterStats>>,
        arbiter: Option<Arbiter>,
        dir: TempDir,
    ) -> Office {
        Office {
            target,
            select: Rc::new(built.select),
            claimers: built.claimers,
            holders: built.holders,
            taken: built.taken,
            held: Vec::new(),
            stats,
            draw_cursor: Rc::new(Cell::new(0)),
            check_cursor: Rc::new(Cell::new(0)),
            plates_cursor: Rc::new(Cell::new(0)),
            claim_cursor: Cell::new(0),
            arbiter,
            dir,
        }
    }

    /// Builds the office into a folder and opens the real engine on it (recovery). Call inside
    /// an actix system.
    pub async fn engine(plan: &Plan, durability: Durability) -> Office {
        let dir = temp_dir("platepool-engine-");
        let built = build_into(dir.path(), durability, plan);
        let engine = open_engine(dir.path(), durability).await;
        let mut office = Office::new(Target::Engine(engine), built, None, None, dir);
        office.hold().await;
        office
    }

    /// Builds the office and starts its actor and writer by hand, as the engine does for each
    /// office, keeping the writer's counters. Call inside an actix system.
    pub async fn direct(plan: &Plan, durability: Durability) -> Office {
        let dir = temp_dir("platepool-direct-");
        let store = Store::open(dir.path(), durability).expect("store opens");
        let office_store = store.office(OFFICE).expect("office tree");
        let mut built = build(plan, &mut |records| commit(&office_store, &records));
        let writer = office_store.start_writer(OFFICE).expect("writer starts");
        let stats = writer.stats.clone();
        let health = Arc::new(OfficeHealth::default());
        let actor_health = health.clone();
        let pool = std::mem::replace(
            &mut built.pool,
            OfficePool::new(OFFICE, office_config(), PlateClass::builtin())
                .expect("office config is valid"),
        );
        let arbiter = Arbiter::new();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let addr = OfficeActor::start_in_arbiter(&arbiter.handle(), move |_| {
            OfficeActor::new(
                pool,
                writer,
                StdRng::seed_from_u64(7),
                clock,
                actor_health,
                None,
            )
        });
        let handle = OfficeHandle { addr, health };
        let mut office = Office::new(
            Target::Direct(handle),
            built,
            Some(stats),
            Some(arbiter),
            dir,
        );
        office.hold().await;
        office
    }

    /// Every holder draws once, so its batch is held by someone else than the checking
    /// applications.
    pub async fn hold(&mut self) {
        for app in &self.holders {
            let draw = self.target.draw(app).await.expect("holder draws");
            self.held.extend(draw.batch.serials);
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// (group commits, records) the writer has made so far (direct actor only).
    pub fn writer_counts(&self) -> Option<(u64, u64)> {
        self.stats.as_ref().map(|s| {
            (
                s.commits.load(Ordering::Relaxed),
                s.records.load(Ordering::Relaxed),
            )
        })
    }

    /// One draw for the next application, round robin.
    pub fn draw_op(&self) -> Op {
        let target = self.target.clone();
        let apps = self.select.clone();
        let cursor = self.draw_cursor.clone();
        Box::new(move || {
            let i = cursor.get();
            cursor.set(i + 1);
            let target = target.clone();
            let apps = apps.clone();
            Box::pin(async move {
                let app = &apps[i % apps.len()];
                match target.draw(app).await {
                    Ok(d) if d.batch.serials.len() == 10 => Ok(()),
                    Ok(d) => Err(format!("draw held {} numbers", d.batch.serials.len())),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
    }

    /// The numbers of the next failing check: taken and held ones, none of them the checker's.
    pub fn next_plates(cursor: &Cell<usize>, taken: &[Serial], held: &[Serial]) -> Vec<String> {
        let i = cursor.get();
        cursor.set(i + 1);
        let from_held = if held.len() >= 2 { 2 } else { 0 };
        let from_taken = CHECK_PLATES - from_held;
        let mut plates = Vec::with_capacity(CHECK_PLATES);
        for k in 0..from_taken {
            plates.push(taken[(i * from_taken + k) % taken.len()].to_string());
        }
        for k in 0..from_held {
            plates.push(held[(i * from_held + k) % held.len()].to_string());
        }
        plates
    }

    /// One failing custom check of five numbers for the next application, round robin.
    pub fn check_op(&self) -> Op {
        let target = self.target.clone();
        let apps = self.select.clone();
        let cursor = self.check_cursor.clone();
        let plates_cursor = self.plates_cursor.clone();
        let taken = Rc::new(self.taken.clone());
        let held = Rc::new(self.held.clone());
        Box::new(move || {
            let i = cursor.get();
            cursor.set(i + 1);
            let plates = Office::next_plates(&plates_cursor, &taken, &held);
            let target = target.clone();
            let apps = apps.clone();
            Box::pin(async move {
                let app = &apps[i % apps.len()];
                match target.custom_check(app, plates).await {
                    Ok(Check::NoneAvailable { .. }) => Ok(()),
                    Ok(Check::Claimed(c)) => Err(format!("check claimed {}", c.serial)),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
    }

    /// One keyboard query, cycling through `queries`, for the next application.
    pub fn keyboard_op(&self, queries: Rc<Vec<Vec<Option<u8>>>>) -> Op {
        let target = self.target.clone();
        let apps = self.select.clone();
        let cursor = Rc::new(Cell::new(0usize));
        Box::new(move || {
            let i = cursor.get();
            cursor.set(i + 1);
            let target = target.clone();
            let apps = apps.clone();
            let entered = queries[i % queries.len()].clone();
            Box::pin(async move {
                let app = &apps[i % apps.len()];
                match target.keyboard(app, entered).await {
                    Ok(k) if k.iter().any(|c| !c.is_empty()) => Ok(()),
                    Ok(_) => Err("empty keyboard".into()),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
    }

    /// A call that does nothing.
    pub fn noop_op(&self) -> Op {
        let target = self.target.clone();
        Box::new(move || {
            let target = target.clone();
            Box::pin(async move { target.noop().await.map_err(|e| e.to_string()) })
        })
    }

    /// One durable claim by the next claimer: draw and pick (not timed), then the claim (timed).
    pub async fn claim_once(&self) -> Duration {
        let Target::Engine(engine) = &self.target else {
            panic!("claims are measured through the engine");
        };
        let i = self.claim_cursor.get();
        self.claim_cursor.set(i + 1);
        let app = self
            .claimers
            .get(i)
            .unwrap_or_else(|| panic!("only {} claimers were created", self.claimers.len()));
        let caller = Caller::Citizen(&app.user);
        let draw = engine
            .draw(&app.id, caller, false)
            .await
            .expect("claimer draws");
        let serial = draw.batch.serials[0].to_string();
        engine
            .pick_candidate(&app.id, caller, &serial)
            .await
            .expect("claimer picks");
        let start = Instant::now();
        engine
            .claim(&app.id, caller, &serial)
            .await
            .expect("claimer claims");
        start.elapsed()
    }

    /// Claimers not used yet.
    pub fn claimers_left(&self) -> usize {
        self.claimers.len() - self.claim_cursor.get()
    }
}

impl Drop for Office {
    fn drop(&mut self) {
        if let Some(a) = self.arbiter.take() {
            a.stop();
        }
    }
}

/// The pool alone: the logic's own cost, no actor, no IO.
#[derive(Debug)]
pub struct Pure {
    pub pool: OfficePool,
    pub select: Vec<App>,
    pub claimers: Vec<App>,
    pub taken: Vec<Serial>,
    pub held: Vec<Serial>,
    pub codes: Vec<u32>,
    rng: StdRng,
    clock: SystemClock,
    draw_cursor: usize,
    check_cursor: usize,
    plates_cursor: Cell<usize>,
}

impl Pure {
    pub fn new(plan: &Plan) -> Pure {
        let built = build(plan, &mut |_| {});
        let mut pure = Pure {
            pool: built.pool,
            select: built.select,
            claimers: built.claimers,
            taken: built.taken,
            held: Vec::new(),
            codes: built.codes,
            rng: StdRng::seed_from_u64(plan.seed + 1),
            clock: SystemClock,
            draw_cursor: 0,
            check_cursor: 0,
            plates_cursor: Cell::new(0),
        };
        let now = pure.clock.now_ms();
        for app in &built.holders {
            let draw = pure
                .pool
                .draw(app.id.seq, false, now, &mut pure.rng)
                .expect("holder draws");
            pure.held.extend(draw.batch.serials);
        }
        pure.pool.take_effects();
        pure
    }

    /// What the actor does for one draw, minus the actor and the writer: tick, draw, take the
    /// effects.
    pub fn draw(&mut self) -> Result<(), Refusal> {
        let app = &self.select[self.draw_cursor % self.select.len()];
        self.draw_cursor += 1;
        let now = self.clock.now_ms();
        self.pool.tick(now);
        let r = self
            .pool
            .draw(app.id.seq, false, now, &mut self.rng)
            .map(|_| ());
        std::hint::black_box(self.pool.take_effects());
        r
    }

    /// One failing custom check, as [`Pure::draw`].
    pub fn check(&mut self) -> Result<(), Refusal> {
        let app = &self.select[self.check_cursor % self.select.len()];
        self.check_cursor += 1;
        let plates = Office::next_plates(&self.plates_cursor, &self.taken, &self.held);
        let now = self.clock.now_ms();
        self.pool.tick(now);
        let r = self
            .pool
            .custom_check(app.id.seq, &plates, now, &mut self.rng)
            .map(|_| ());
        std::hint::black_box(self.pool.take_effects());
        r
    }

    /// The records one draw leaves, encoded as the store writes them.
    pub fn draw_records(&mut self) -> Vec<Record> {
        let app = &self.select[self.draw_cursor % self.select.len()];
        self.draw_cursor += 1;
        let now = self.clock.now_ms();
        self.pool.tick(now);
        self.pool.take_effects();
        self.pool
            .draw(app.id.seq, false, now, &mut self.rng)
            .expect("draw");
        self.pool.take_effects().records
    }

    /// The records one failing custom check leaves.
    pub fn check_records(&mut self) -> Vec<Record> {
        let app = &self.select[self.check_cursor % self.select.len()];
        self.check_cursor += 1;
        let plates = Office::next_plates(&self.plates_cursor, &self.taken, &self.held);
        let now = self.clock.now_ms();
        self.pool.tick(now);
        self.pool.take_effects();
        self.pool
            .custom_check(app.id.seq, &plates, now, &mut self.rng)
            .expect("check");
        self.pool.take_effects().records
    }

    /// The records one claim leaves (a claimer draws, then claims a number of its batch by a
    /// custom check): the number's state, the application and the audit entry.
    pub fn claim_records(&mut self) -> Vec<Record> {
        let app = self.claimers.pop().expect("a claimer is left");
        let now = self.clock.now_ms();
        self.pool.tick(now);
        let draw = self
            .pool
            .draw(app.id.seq, false, now, &mut self.rng)
            .expect("claimer draws");
        self.pool.take_effects();
        let serial = draw.batch.serials[0].to_string();
        match self
            .pool
            .custom_check(app.id.seq, &[serial], now, &mut self.rng)
        {
            Ok(Check::Claimed(_)) => {}
            other => panic!("claimer could not claim: {other:?}"),
        }
        self.pool.take_effects().records
    }

    /// One keyboard query for the first application.
    pub fn keyboard(&self, entered: &[Option<u8>]) -> Vec<CharSet> {
        self.pool
            .keyboard(self.select[0].id.seq, entered)
            .expect("keyboard")
    }

    /// Every number a custom check could take now: released, not taken, not held.
    pub fn scan_set(&self) -> ScanSet {
        let out: std::collections::HashSet<u32> = self
            .taken
            .iter()
            .chain(&self.held)
            .map(|s| s.code())
            .collect();
        ScanSet::new(
            5,
            self.codes
                .iter()
                .filter(|c| !out.contains(c))
                .filter_map(|&c| Serial::from_code(c, 5).ok()),
        )
    }
}

/// The least any recovery must do: open the sled database in `path` and read every key and
/// value of every tree (waiting while a previous system still holds the lock). Returns the time
/// of the successful attempt.
pub fn raw_read(path: &Path) -> Duration {
    let started = Instant::now();
    loop {
        let attempt = Instant::now();
        match sled::Config::new()
            .path(path)
            .cache_capacity(crate::io::SLED_CACHE_BYTES)
            .open()
        {
            Ok(db) => {
                let mut bytes = 0usize;
                for name in db.tree_names() {
                    let tree = db.open_tree(name).expect("tree");
                    for item in tree.iter() {
                        let (k, v) = item.expect("item");
                        bytes += k.len() + v.len();
                    }
                }
                std::hint::black_box(bytes);
                return attempt.elapsed();
            }
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("sled does not open: {e}"),
        }
    }
}
