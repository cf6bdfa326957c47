//! The handle an embedding program holds: it opens the data folder, recovers every office, and
//! routes each call straight to the office actor that owns the pool (no lock shared by two
//! offices). What spans offices goes through the [`Registry`].

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use arc_swap::ArcSwap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::actor::{Call, Clock, OfficeHandle, SystemClock};
use crate::class::{Energy, PlateClass};
use crate::clock::{ClockConfirmation, ClockStatus, GuardedClock};
use crate::config::{validate_office_id, OfficeConfig};
use crate::figures::{CallKind, OfficeCalls};
use crate::outcome::Refusal;
use crate::pattern::CharSet;
use crate::pool::{
    AppView, Check, ClassStats, Draw, Event, HoldView, NewRelease, OfficePool, ReleasePreview,
    PRACTICE_SEQ_BASE,
};
use crate::record::{AppState, AuditEntry, Claim};
use crate::registry::{
    open_application, start_office, ApplicationRequest, BlacklistEntry, BlacklistMap, Certificate,
    CertificateRow, ImportPart, ImportReport, OfficeEntry, OfficeMap, Pending, PutOffice, Registry,
    RegistryCall, RegistryWrite,
};
use crate::settled_store::{restore_office, RestoreError, StoredApplication};
use crate::store::{Durability, OfficeStore, Store, StoreError};
use crate::supervisor::{OfficeCondition, Supervision};

/// An application's id: the office and its sequence number there, as `maoming-42` (practice
/// applications: `maoming-p7`). The office is in the id so a call reaches its actor directly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId {
    pub office: String,
    pub seq: u64,
}

impl AppId {
    pub fn is_practice(&self) -> bool {
        self.seq >= PRACTICE_SEQ_BASE
    }
}

impl AppId {
    /// The application a pre-selection voucher serial names. A claim's voucher serial is
    /// `<OFFICE>-<YYYYMMDD>-<seq>` (the office id in capitals, the claim's local date; see
    /// `OfficePool::claim`), read here in either case; `None` when the text has not that shape.
    /// Whether a claim has that serial is for the office to say
    /// ([`Engine::voucher_application`]).
    pub fn from_voucher_serial(text: &str) -> Option<AppId> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (office, date, seq) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let office = office.to_ascii_lowercase();
        validate_office_id(&office).ok()?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if seq.is_empty()
            || !seq.bytes().all(|b| b.is_ascii_digit())
            || (seq.len() > 1 && seq.starts_with('0'))
        {
            return None;
        }
        let seq = seq.parse::<u64>().ok()?;
        Some(AppId { office, seq })
    }
}

/// Whether `a` and `b` are equal, comparing every byte of equal-length inputs (no early exit at
/// the first difference, so the time taken does not tell how much of a code was right).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_practice() {
            write!(f, "{}-p{}", self.office, self.seq - PRACTICE_SEQ_BASE)
        } else {
            write!(f, "{}-{}", self.office, self.seq)
        }
    }
}

impl FromStr for AppId {
    type Err = Refusal;
    fn from_str(s: &str) -> Result<AppId, Refusal> {
        let (office, n) = s.rsplit_once('-').ok_or(Refusal::UnknownApplication)?;
        validate_office_id(office).map_err(|_| Refusal::UnknownApplication)?;
        let seq = match n.strip_prefix('p') {
            Some(p) => p
                .parse::<u64>()
                .ok()
                .filter(|&p| p < PRACTICE_SEQ_BASE)
                .map(|p| p + PRACTICE_SEQ_BASE),
            None => n.parse::<u64>().ok().filter(|&s| s < PRACTICE_SEQ_BASE),
        }
        .ok_or(Refusal::UnknownApplication)?;
        if n.starts_with('+') || (n.len() > 1 && n.starts_with('0')) {
            return Err(Refusal::UnknownApplication);
        }
        Ok(AppId {
            office: office.to_string(),
            seq,
        })
    }
}

impl Serialize for AppId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How to open an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Plate classes besides the built-in `small` and `small_new_energy`.
    pub extra_classes: Vec<PlateClass>,
    /// Seeds the offices' RNGs (tests); `None` seeds from the operating system.
    pub seed: Option<u64>,
    pub clock: Arc<dyn Clock>,
    /// Offices refuse new writes with 503 `unavailable` while calls wait longer than this
    /// (default [`crate::actor::SHED_QUEUE_DELAY`]); `None` sheds only once
    /// [`crate::actor::IN_FLIGHT_MAX`] calls are in flight (tests whose own runtime competes
    /// with the offices, where a slow step would look like overload).
    pub shed_queue_delay: Option<std::time::Duration>,
    /// A wall-clock step larger than this is not followed until confirmed (SPEC T1; default
    /// [`crate::clock::CLOCK_STEP_BOUND`], 2 s; see `clock.rs`).
    pub clock_step_bound: std::time::Duration,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
            extra_classes: Vec::new(),
            seed: None,
            clock: Arc::new(SystemClock),
            shed_queue_delay: Some(crate::actor::SHED_QUEUE_DELAY),
            clock_step_bound: crate::clock::CLOCK_STEP_BOUND,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("office {office} cannot be recovered: {message}")]
    Recovery { office: String, message: String },
    #[error("plate class {0}")]
    Class(String),
}

/// An office read back: its store, its pool (live applications) and every stored application.
type RestoredOffice = (String, OfficeStore, OfficePool, Vec<StoredApplication>);

/// Reads back and restores every office (I9), on as many threads as there are cores: each
/// office is independent until its actor starts. In the order of `ids`.
fn restore_offices(
    store: &Store,
    catalog: &[PlateClass],
    ids: Vec<String>,
    now: u64,
) -> Result<Vec<RestoredOffice>, EngineError> {
    type Restored = Result<(OfficeStore, OfficePool, Vec<StoredApplication>), EngineError>;
    let restore_one = |id: &String| -> Restored {
        let office_store = store.office(id)?;
        let (pool, apps) =
            restore_office(id, &office_store, catalog.to_vec(), now).map_err(|e| match e {
                RestoreError::Store(e) => EngineError::Store(e),
                RestoreError::Records(message) => EngineError::Recovery {
                    office: id.clone(),
                    message,
                },
            })?;
        Ok((office_store, pool, apps))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(ids.len());
    let next = AtomicUsize::new(0);
    let mut done: Vec<Option<Restored>> = (0..ids.len()).map(|_| None).collect();
    let results: Vec<Vec<(usize, Restored)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else {
                            break mine;
                        };
                        mine.push((i, restore_one(id)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (i, result) in results.into_iter().flatten() {
        done[i] = Some(result);
    }
    ids.into_iter()
        .zip(done)
        .map(|(id, result)| {
            let (office_store, pool, apps) = result.ok_or_else(|| EngineError::Recovery {
                office: id.clone(),
                message: "not restored".into(),
            })??;
            Ok((id, office_store, pool, apps))
        })
        .collect()
}

/// What recovery found, for logs and `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    pub offices: usize,
    pub applications: usize,
    pub millis: u128,
}

/// A citizen's or operator's view: who is asking. Citizens see their own applications only (I7).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    Citizen(&'a str),
    Operator,
}

/// The engine handle. Cheap to clone; every clone talks to the same actors.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.store.path())
            .finish()
    }
}

struct Inner {
    store: Store,
    catalog: Vec<PlateClass>,
    offices: OfficeMap,
    blacklist: BlacklistMap,
    registry: Addr<Registry>,
    clock: Arc<dyn Clock>,
    guard: Arc<GuardedClock>,
    supervision: Arc<Supervision>,
    recovery: RecoveryReport,
}

/// An office as listed publicly.
#[derive(Debug, Clone, Serialize)]
pub struct OfficeSummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub classes: Vec<String>,
}

impl Engine {
    /// Opens the data folder and recovers every office to exactly its acknowledged state (I9).
    /// Must run inside an actix system.
    pub async fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        let started = Instant::now();
        let mut catalog = PlateClass::builtin();
        for c in config.extra_classes {
            c.validate().map_err(EngineError::Class)?;
            if catalog.iter().any(|k| k.name == c.name) {
                return Err(EngineError::Class(format!("{} is defined twice", c.name)));
            }
            catalog.push(c);
        }
        let store = Store::open(&config.data_dir, config.durability)?;
        let guard = Arc::new(GuardedClock::new(
            config.clock.clone(),
            config.clock_step_bound,
        ));
        let clock: Arc<dyn Clock> = guard.clone();
        let now = clock.now_ms();
        let mut seeder = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let (events_tx, mut events_rx) = crate::events::channel();
        let kv = store.kv("registry")?;
        let blacklist_entries: Vec<(Vec<u8>, BlacklistEntry)> = kv.scan(b"bl/")?;
        let blacklist: HashMap<String, BlacklistEntry> = blacklist_entries
            .into_iter()
            .map(|(_, e)| (e.user.clone(), e))
            .collect();
        let certs = crate::registry::open_log(&store, &kv).await?;
        let mut registry = Registry {
            store: store.clone(),
            kv,
            certs,
            catalog: catalog.clone(),
            offices: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            blacklist: Arc::new(ArcSwap::from_pointee(blacklist)),
            vins: HashMap::new(),
            users: HashMap::new(),
            pending_vins: Default::default(),
            clock: clock.clone(),
            shed_after: config.shed_queue_delay,
            rng: StdRng::seed_from_u64(seeder.random()),
            events: events_tx.clone(),
            arbiters: Vec::new(),
        };
        let mut offices = HashMap::new();
        let mut applications = 0;
        let mut lapsed = Vec::new();
        let mut office_ids = store.office_ids();
        office_ids.sort();
        for (id, office_store, pool, apps) in restore_offices(&store, &catalog, office_ids, now)? {
            let recovery = |message: String| EngineError::Recovery {
                office: id.clone(),
                message,
            };
            let blacklist_ms = pool.config().rules.blacklist_days as u64 * 86_400_000;
            // Every stored application, settled ones included (the pool keeps the live ones),
            // in creation order, as the user and VIN indexes promise.
            for app in apps {
                applications += 1;
                let app_id = AppId {
                    office: id.clone(),
                    seq: app.seq,
                };
                registry.index(app_id.clone(), &app.vin, &app.user);
                if app.state == AppState::Lapsed {
                    let since = app.closed_at_ms.unwrap_or(now);
                    let recorded = registry.lapse_recorded(&app.user, &app_id.to_string(), since);
                    if since + blacklist_ms > now && !recorded {
                        lapsed.push(BlacklistEntry {
                            user: app.user.clone(),
                            since_ms: since,
                            until_ms: since + blacklist_ms,
                            office: id.clone(),
                            application: app_id.to_string(),
                        });
                    }
                }
            }
            let entry = start_office(
                pool,
                &office_store,
                StdRng::seed_from_u64(seeder.random()),
                clock.clone(),
                config.shed_queue_delay,
                events_tx.clone(),
                &mut registry.arbiters,
            )
            .map_err(|e| recovery(e.to_string()))?;
            offices.insert(id.clone(), entry);
        }
        for entry in lapsed {
            let recovery = |e: Refusal| EngineError::Recovery {
                office: "registry".into(),
                message: e.to_string(),
            };
            let pending = registry.blacklist_user(entry).map_err(recovery)?;
            pending.complete(&mut registry).await.map_err(recovery)?;
        }
        registry.offices.store(Arc::new(offices));
        let office_map = registry.offices.clone();
        let blacklist = registry.blacklist.clone();
        let office_count = office_map.load().len();
        // Keyboards are built after recovery, one office at a time (see `KEYBOARD_WARM_UP_AFTER`).
        // Weak: an engine dropped meanwhile lets its offices and the folder go.
        let warm: Vec<_> = office_map
            .load()
            .values()
            .map(|e| e.handle.addr.downgrade())
            .collect();
        actix::spawn(async move {
            tokio::time::sleep(crate::actor::KEYBOARD_WARM_UP_AFTER).await;
            for office in warm {
                if let Some(addr) = office.upgrade() {
                    let _ = addr.send(crate::actor::WarmKeyboards).await;
                }
            }
        });
        let registry = registry.start();
        let supervision = Arc::new(Supervision::default());
        crate::supervisor::spawn(
            registry.downgrade(),
            office_map.clone(),
            supervision.clone(),
        );
        // Weak: the registry holds the events' sender, so a strong address here would keep
        // both alive for ever, and with them the store, after the last engine handle is gone.
        let router = registry.downgrade();
        actix::spawn(async move {
            while let Some((office, event)) = events_rx.recv().await {
                if let Event::Lapsed {
                    app,
                    user,
                    until_ms,
                } = event
                {
                    let entry = BlacklistEntry {
                        user,
                        since_ms: 0,
                        until_ms,
                        application: AppId {
                            office: office.clone(),
                            seq: app,
                        }
                        .to_string(),
                        office,
                    };
                    let Some(router) = router.upgrade() else {
                        break;
                    };
                    let blacklisted = router
                        .send(RegistryWrite(Box::new(move |r: &mut Registry| {
                            let mut entry = entry;
                            entry.since_ms = r.clock.now_ms();
                            r.blacklist_user(entry)
                        })))
                        .await;
                    if let Ok(Err(e)) = blacklisted {
                        tracing::error!(error = %e, "blacklisting failed");
                    }
                }
            }
        });
        let recovery = RecoveryReport {
            offices: office_count,
            applications,
            millis: started.elapsed().as_millis(),
        };
        tracing::info!(?recovery, "engine recovered");
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                catalog,
                offices: office_map,
                blacklist,
                registry,
                clock,
                guard,
                supervision,
                recovery,
            }),
        })
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// The engine's clock against the wall clock (SPEC T1, `clock.rs`).
    pub fn clock_status(&self) -> ClockStatus {
        self.inner.guard.status()
    }

    /// An operator confirms the wall time after a step (SPEC T1): engine time jumps to it,
    /// holds keep their length, and what the step made due becomes due. Recorded in the
    /// registry's audit trail with who and the jump. 409 `conflict` when the clock is not
    /// degraded.
    pub async fn confirm_clock(&self, who: &str) -> Result<ClockConfirmation, Refusal> {
        let guard = self.inner.guard.clone();
        let who = who.to_string();
        self.registry_write(move |r| {
            let confirmed = guard.confirm().ok_or_else(|| {
                Refusal::Conflict(
                    "the wall clock agrees with engine time: nothing to confirm".into(),
                )
            })?;
            let detail = format!(
                "wall clock confirmed: engine time moved by {} ms, from {} to {}",
                confirmed.jump_ms,
                crate::calendar::rfc3339(confirmed.from_ms),
                crate::calendar::rfc3339(confirmed.to_ms)
            );
            let recorded = r.record_action(&who, "confirm_clock", detail)?;
            Ok(Pending::new(recorded.into_durable(), move |_| {
                Ok(confirmed)
            }))
        })
        .await
    }

    /// Each office's health (failed or stopped, restarts by the supervisor), by office id.
    pub fn office_conditions(&self) -> Vec<OfficeCondition> {
        self.inner
            .supervision
            .conditions(&self.inner.offices.load())
    }

    pub fn catalog(&self) -> &[PlateClass] {
        &self.inner.catalog
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Makes everything written so far durable (shutdown), and records the generation reached
    /// so that a database damaged while stopped is refused at the next open.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.store.sync()?;
        self.inner.store.record_generation()
    }

    /// Stops every office actor and its thread after the calls already queued are answered,
    /// then makes everything durable. Calls made afterwards get 503 `unavailable`. Dropping the
    /// last clone of the engine afterwards releases the data folder.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let arbiters = self
            .registry(|r| std::mem::take(&mut r.arbiters))
            .await
            .unwrap_or_default();
        for arbiter in &arbiters {
            arbiter.stop();
        }
        for arbiter in arbiters {
            // Joining a stopped arbiter's thread waits for its queued messages to be handled.
            let _ = arbiter.join();
        }
        self.flush()
    }

    fn office_entry(&self, office: &str) -> Result<OfficeEntry, Refusal> {
        self.inner
            .offices
            .load()
            .get(office)
            .cloned()
            .ok_or(Refusal::UnknownOffice)
    }

    fn office(&self, office: &str) -> Result<OfficeHandle, Refusal> {
        self.office_entry(office).map(|e| e.handle)
    }

    /// The current actor of an office, to send it a [`Call`] of one's own or set its health
    /// flags: fault injection for tests and the reliability campaigns. The engine's checks of
    /// callers are not applied to such calls, so it exists only in builds with the
    /// `fault-injection` feature (and the engine's own unit tests); a program built without it
    /// cannot reach an office except through the checked calls.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn office_handle(&self, office: &str) -> Result<OfficeHandle, Refusal> {
        self.office(office)
    }

    async fn registry<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Registry) -> R + Send + 'static,
    ) -> Result<R, Refusal> {
        self.inner
            .registry
            .send(RegistryCall(Box::new(f)))
            .await
            .map_err(|_| Refusal::Unavailable("registry is not running".into()))
    }

    /// A registry write (see `registry::Pending`): answered once durable, the registry serving
    /// others meanwhile.
    async fn registry_write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<Pending<R>, Refusal> + Send + 'static,
    ) -> Result<R, Refusal> {
        self.inner
            .registry
            .send(RegistryWrite(Box::new(f)))
            .await
            .map_err(|_| Refusal::Unavailable("registry is not running".into()))?
    }

    // ------------------------------------------------------------------------------------------
    // Offices

    pub fn offices(&self) -> Vec<OfficeSummary> {
        let mut out: Vec<OfficeSummary> = self
            .inner
            .offices
            .load()
            .iter()
            .map(|(id, e)| OfficeSummary {
                id: id.clone(),
                name: e.config.name.clone(),
                prefix: e.config.prefix.clone(),
                classes: e.config.classes.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn office_config(&self, office: &str) -> Result<Arc<OfficeConfig>, Refusal> {
        self.office_entry(office).map(|e| e.config)
    }

    /// Mailbox depth per office (metrics).
    pub fn mailbox_depths(&self) -> Vec<(String, usize)> {
        self.office_health()
            .into_iter()
            .map(|(id, h)| (id, h.in_flight.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    /// Each office's load figures (in flight, mailbox and commit delays, calls shed), for
    /// metrics.
    pub fn office_health(&self) -> Vec<(String, Arc<crate::actor::OfficeHealth>)> {
        self.inner
            .offices
            .load()
            .iter()
            .map(|(id, e)| (id.clone(), Arc::clone(&e.handle.health)))
            .collect()
    }

    /// An office's draws and custom checks answered so far, with their latency (SPEC R5.5;
    /// see [`crate::figures`]). Subtract an earlier reading for the figures of a window.
    pub fn office_calls(&self, office: &str) -> Result<OfficeCalls, Refusal> {
        self.office(office).map(|h| h.health.office_calls())
    }

    /// Whether `office` refuses new writes for load right now, as its handle would (see
    /// [`crate::actor::OfficeHandle::call`]), for a write that has already waited `before` on
    /// its way here; counted as shed when it does. A front end asks this before reading a
    /// write's body, so that under a flood a refusal costs little more than the request's head.
    /// Unknown offices are not overloaded.
    pub fn sheds_writes(&self, office: &str, before: std::time::Duration) -> bool {
        let offices = self.inner.offices.load();
        let Some(e) = offices.get(office) else {
            return false;
        };
        let h = &e.handle.health;
        let shed = h.sheds_writes_after(
            h.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            before,
        );
        if shed {
            h.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        shed
    }

    /// Creates or reconfigures an office (R5.1). Returns true when it was created.
    pub async fn put_office(
        &self,
        office: &str,
        config: OfficeConfig,
        who: &str,
    ) -> Result<bool, Refusal> {
        validate_office_id(office).map_err(|message| Refusal::InvalidConfig {
            field: "office".into(),
            message,
        })?;
        let id = office.to_string();
        let who_owned = who.to_string();
        let put = self
            .registry(move |r| r.put_office(&id, config, &who_owned))
            .await??;
        match put {
            PutOffice::Created => Ok(true),
            PutOffice::Existing(entry, config) => {
                let config = *config;
                let applied = config.clone();
                let who = who.to_string();
                entry
                    .handle
                    .call(Call::write(move |pool, now, _| {
                        pool.configure(applied, &who, now)
                    }))
                    .await?;
                let id = office.to_string();
                self.registry(move |r| r.set_office_config(&id, config))
                    .await?;
                Ok(false)
            }
        }
    }

    pub async fn add_release(
        &self,
        office: &str,
        release: NewRelease,
        who: &str,
    ) -> Result<(u32, u64), Refusal> {
        let who = who.to_string();
        self.office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.add_release(release, &who, now)
            }))
            .await
    }

    /// What `add_release` would do with `release`, refused exactly as it would be, saving
    /// nothing (a read: served while the office refuses writes).
    pub async fn preview_release(
        &self,
        office: &str,
        release: NewRelease,
    ) -> Result<ReleasePreview, Refusal> {
        self.office(office)?
            .call(Call::read(move |pool, _| pool.preview_release(&release)))
            .await
    }

    pub async fn withdraw_release(
        &self,
        office: &str,
        release: u32,
        who: &str,
    ) -> Result<u64, Refusal> {
        let who = who.to_string();
        self.office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.withdraw_release(release, &who, now)
            }))
            .await
    }

    pub async fn withdraw_number(
        &self,
        office: &str,
        serial: &str,
        who: &str,
    ) -> Result<String, Refusal> {
        let (who, serial) = (who.to_string(), serial.to_string());
        self.office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.withdraw_number(&serial, &who, now)
                    .map(|s| s.to_string())
            }))
            .await
    }

    /// Registration at the office (R4.10).
    pub async fn register(&self, office: &str, serial: &str, who: &str) -> Result<AppId, Refusal> {
        let (who, serial) = (who.to_string(), serial.to_string());
        let seq = self
            .office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.register(&serial, &who, now)
            }))
            .await?;
        Ok(AppId {
            office: office.to_string(),
            seq,
        })
    }

    /// Voids a live pre-selection at the owner's request (R4.11).
    pub async fn void(
        &self,
        office: &str,
        serial: &str,
        reason: &str,
        who: &str,
    ) -> Result<AppId, Refusal> {
        let (who, serial, reason) = (who.to_string(), serial.to_string(), reason.to_string());
        let seq = self
            .office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.void(&serial, &reason, &who, now)
            }))
            .await?;
        Ok(AppId {
            office: office.to_string(),
            seq,
        })
    }

    /// Heap bytes of an office's numbers and their indexes, its keyboards built first (memory
    /// reports and benchmarks).
    pub async fn office_memory_bytes(&self, office: &str) -> Result<usize, Refusal> {
        self.office(office)?
            .call(Call::read(|pool, _| {
                pool.refresh_keyboards();
                Ok(pool.numbers_memory_bytes())
            }))
            .await
    }

    /// Applications an office keeps in memory: the live ones (settled ones are read from its
    /// store), practice ones, and those settled by a group not yet durable (memory figures).
    pub async fn office_resident_applications(&self, office: &str) -> Result<usize, Refusal> {
        self.office(office)?
            .call(Call::read(|pool, _| Ok(pool.resident_applications())))
            .await
    }

    pub async fn stats(&self, office: &str) -> Result<Vec<ClassStats>, Refusal> {
        self.office(office)?
            .call(Call::read(|pool, _| Ok(pool.stats())))
            .await
    }

    /// Audit entries of an office with ids above `after`, oldest first.
    pub fn audit(
        &self,
        office: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, Refusal> {
        self.office(office)?;
        self.inner
            .store
            .office(office)
            .and_then(|s| s.audit(after, limit))
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    // ------------------------------------------------------------------------------------------
    // Certificates, applications, blacklist

    /// Imports certificate records (R5.3) for `who` (`operator:<id>`, `system`, …), recorded in
    /// the registry's audit trail with its counts (R5.6).
    pub async fn import_certificates(
        &self,
        rows: Vec<CertificateRow>,
        who: &str,
    ) -> Result<ImportReport, Refusal> {
        self.import_certificates_part(rows, who, ImportPart::WHOLE)
            .await
    }

    /// One call of an import sent in several (see [`ImportPart`]); each call is durable with
    /// its own audit entry.
    pub async fn import_certificates_part(
        &self,
        rows: Vec<CertificateRow>,
        who: &str,
        part: ImportPart,
    ) -> Result<ImportReport, Refusal> {
        let who = who.to_string();
        self.registry_write(move |r| r.import_certificates(rows, &who, part))
            .await
    }

    /// The certificate record of a VIN (R5.3), as imported last; `None` when there is none or
    /// the VIN is malformed.
    pub async fn certificate(&self, vin: &str) -> Result<Option<Certificate>, Refusal> {
        let Ok(vin) = crate::vin::check_vin(vin) else {
            return Ok(None);
        };
        let vin = vin.as_str().to_string();
        self.registry(move |r| r.certificate(&vin)).await?
    }

    /// Runs every check of R4.2 without creating anything (before the SMS code is checked).
    pub async fn check_application(&self, req: ApplicationRequest) -> Result<(), Refusal> {
        open_application(&self.inner.registry, req, true)
            .await
            .map(|_| ())
    }

    /// Opens an application (R4.2), checking everything again.
    pub async fn create_application(&self, req: ApplicationRequest) -> Result<AppId, Refusal> {
        open_application(&self.inner.registry, req, false)
            .await?
            .ok_or_else(|| Refusal::Unavailable("no application created".into()))
    }

    /// Opens a practice application (R4.13).
    pub async fn create_practice(
        &self,
        office: &str,
        user: &str,
        class: &str,
        energy: Energy,
    ) -> Result<AppId, Refusal> {
        let (user, class) = (user.to_string(), class.to_string());
        let seq = self
            .office(office)?
            .call(Call::write(move |pool, now, _| {
                pool.create_practice(&user, &class, energy, now)
            }))
            .await?;
        Ok(AppId {
            office: office.to_string(),
            seq,
        })
    }

    /// The blacklist lift date of a user, if blacklisted now (I6).
    pub fn blacklisted_until(&self, user: &str) -> Option<u64> {
        let now = self.now_ms();
        self.inner
            .blacklist
            .load()
            .get(user)
            .map(|e| e.until_ms)
            .filter(|&u| u > now)
    }

    pub fn blacklist(&self) -> Vec<BlacklistEntry> {
        let now = self.now_ms();
        let mut v: Vec<BlacklistEntry> = self
            .inner
            .blacklist
            .load()
            .values()
            .filter(|e| e.until_ms > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    pub async fn lift_blacklist(&self, user: &str, who: &str, reason: &str) -> Result<(), Refusal> {
        let (user, who, reason) = (user.to_string(), who.to_string(), reason.to_string());
        self.registry_write(move |r| r.lift_blacklist(&user, &who, &reason))
            .await
    }

    pub async fn registry_audit(&self) -> Result<Vec<AuditEntry>, Refusal> {
        self.registry(|r| r.audit()).await?
    }

    /// Applications of a user, every office.
    pub async fn user_applications(&self, user: &str) -> Result<Vec<(AppId, AppView)>, Refusal> {
        let user_owned = user.to_string();
        let ids = self
            .registry(move |r| r.user_applications(&user_owned))
            .await?;
        self.views(ids).await
    }

    /// Applications of a VIN, every office.
    pub async fn vin_applications(&self, vin: &str) -> Result<Vec<(AppId, AppView)>, Refusal> {
        let vin = vin.trim().to_ascii_uppercase();
        let ids = self.registry(move |r| r.vin_applications(&vin)).await?;
        self.views(ids).await
    }

    /// The application holding, having claimed or been issued a number in an office.
    pub async fn serial_application(
        &self,
        office: &str,
        serial: &str,
    ) -> Result<Option<(AppId, AppView)>, Refusal> {
        let serial = serial.to_string();
        let found = self
            .office(office)?
            .call(Call::read(move |pool, now| {
                let Some(seq) = pool.owner_of(&serial)? else {
                    return Ok(None);
                };
                Ok(pool.application(seq, now)?.map(|v| (seq, v)))
            }))
            .await?;
        Ok(found.map(|(seq, v)| {
            (
                AppId {
                    office: office.to_string(),
                    seq,
                },
                v,
            )
        }))
    }

    /// The application whose pre-selection voucher (R4.8) has this serial and this code, the
    /// way an office checks a printed voucher. `None` when no claim's voucher has both (an
    /// unknown serial, a wrong code, a practice voucher): which part was wrong is not told.
    /// The serial is read with [`AppId::from_voucher_serial`]; a caller refusing malformed
    /// input asks that first.
    pub async fn voucher_application(
        &self,
        serial: &str,
        code: &str,
    ) -> Result<Option<(AppId, AppView)>, Refusal> {
        let Some(id) = AppId::from_voucher_serial(serial) else {
            return Ok(None);
        };
        if id.is_practice() || self.office_entry(&id.office).is_err() {
            return Ok(None);
        }
        let view = match self.application(&id, Caller::Operator).await {
            Ok(view) => view,
            Err(Refusal::UnknownApplication) => return Ok(None),
            Err(e) => return Err(e),
        };
        let serial = serial.trim().to_ascii_uppercase();
        let matches = view.record.claim.as_ref().is_some_and(|c| {
            // Both compared whole, the code without an early exit.
            let serial_ok = c.voucher_serial == serial;
            let code_ok = constant_time_eq(c.voucher_code.as_bytes(), code.trim().as_bytes());
            serial_ok & code_ok
        });
        Ok(matches.then_some((id, view)))
    }

    async fn views(&self, ids: Vec<AppId>) -> Result<Vec<(AppId, AppView)>, Refusal> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(view) = self.application(&id, Caller::Operator).await {
                out.push((id, view));
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------------------------------
    // Selection (the hot path: straight to the office actor)

    fn selecting(&self, caller: Caller<'_>) -> Result<(), Refusal> {
        if let Caller::Citizen(user) = caller {
            if let Some(until_ms) = self.blacklisted_until(user) {
                return Err(Refusal::Blacklisted { until_ms });
            }
        }
        Ok(())
    }

    async fn app_call<R: Send + 'static>(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        write: bool,
        window: bool,
        measured: Option<CallKind>,
        f: impl FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, Refusal> + Send + 'static,
    ) -> Result<R, Refusal> {
        let seq = id.seq;
        let user = match caller {
            Caller::Citizen(u) => Some(u.to_string()),
            Caller::Operator => None,
        };
        let guarded = move |pool: &mut OfficePool, now: u64, rng: &mut StdRng| {
            let owner = pool.application_user(seq)?;
            let owned = match (&user, &owner) {
                (Some(u), Some(owner)) => owner == u,
                (None, owner) => owner.is_some(),
                (Some(_), None) => false,
            };
            drop(owner);
            if !owned {
                return Err(Refusal::UnknownApplication);
            }
            f(pool, now, rng)
        };
        let call = if write {
            Call::write(guarded)
        } else {
            Call::write_free(guarded)
        };
        let call = if window {
            call.in_opening_window(seq)
        } else {
            call
        };
        let office = self
            .office(&id.office)
            .map_err(|_| Refusal::UnknownApplication)?;
        let Some(kind) = measured else {
            return office.call(call).await;
        };
        // Measured here, in the caller's task once the answer is in hand: nothing is added to
        // the office's own thread. Calls the office could not serve (shed, storage failed) are
        // not answers of the office and are left out.
        let started = Instant::now();
        let answer = office.call(call).await;
        if !matches!(answer, Err(Refusal::Unavailable(_))) {
            office
                .health
                .calls(kind)
                .record(started.elapsed(), answer.is_err());
        }
        answer
    }

    pub async fn application(&self, id: &AppId, caller: Caller<'_>) -> Result<AppView, Refusal> {
        let seq = id.seq;
        self.app_call(id, caller, false, false, None, move |pool, now, _| {
            pool.application(seq, now)?
                .ok_or(Refusal::UnknownApplication)
        })
        .await
    }

    /// Identity verified by SMS (R4.4); returns until when selection calls are accepted.
    pub async fn verify_identity(&self, id: &AppId, caller: Caller<'_>) -> Result<u64, Refusal> {
        self.selecting(caller)?;
        let seq = id.seq;
        self.app_call(id, caller, true, false, None, move |pool, now, _| {
            pool.verify_identity(seq, now)
        })
        .await
    }

    pub async fn draw(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        exclude_four: bool,
    ) -> Result<Draw, Refusal> {
        self.selecting(caller)?;
        let seq = id.seq;
        self.app_call(
            id,
            caller,
            true,
            true,
            Some(CallKind::Draw),
            move |pool, now, rng| pool.draw(seq, exclude_four, now, rng),
        )
        .await
    }

    pub async fn custom_check(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        plates: Vec<String>,
    ) -> Result<Check, Refusal> {
        self.selecting(caller)?;
        let seq = id.seq;
        self.app_call(
            id,
            caller,
            true,
            true,
            Some(CallKind::Check),
            move |pool, now, rng| pool.custom_check(seq, &plates, now, rng),
        )
        .await
    }

    pub async fn pick_candidate(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        serial: &str,
    ) -> Result<HoldView, Refusal> {
        self.selecting(caller)?;
        let (seq, serial) = (id.seq, serial.to_string());
        self.app_call(id, caller, true, false, None, move |pool, now, _| {
            pool.pick_candidate(seq, &serial, now)
        })
        .await
    }

    pub async fn claim(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        serial: &str,
    ) -> Result<Claim, Refusal> {
        self.selecting(caller)?;
        let (seq, serial) = (id.seq, serial.to_string());
        self.app_call(id, caller, true, false, None, move |pool, now, rng| {
            pool.claim_candidate(seq, &serial, now, rng)
        })
        .await
    }

    /// The keyboard (R4.5, I8); never waits for a flush.
    pub async fn keyboard(
        &self,
        id: &AppId,
        caller: Caller<'_>,
        entered: Vec<Option<u8>>,
    ) -> Result<Vec<CharSet>, Refusal> {
        let seq = id.seq;
        self.app_call(id, caller, false, false, None, move |pool, _, _| {
            pool.keyboard(seq, &entered)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voucher_serials_name_their_application() {
        let id = |office: &str, seq| {
            Some(AppId {
                office: office.into(),
                seq,
            })
        };
        assert_eq!(
            AppId::from_voucher_serial("MAOMING-20261124-12"),
            id("maoming", 12)
        );
        assert_eq!(
            AppId::from_voucher_serial(" lt_57-20261124-0 "),
            id("lt_57", 0)
        );
        for bad in [
            "",
            "MAOMING",
            "MAOMING-20261124",
            "MAOMING-20261124-12-1",
            "MAOMING-2026112-12",
            "MAOMING-2026112X-12",
            "MAOMING-20261124-",
            "MAOMING-20261124-012",
            "MAOMING-20261124-+12",
            "MAO MING-20261124-12",
            "-20261124-12",
            "MAOMING-20261124-99999999999999999999999",
        ] {
            assert_eq!(AppId::from_voucher_serial(bad), None, "{bad:?}");
        }
        assert!(constant_time_eq(b"01234567", b"01234567"));
        assert!(!constant_time_eq(b"01234567", b"01234568"));
        assert!(!constant_time_eq(b"0123456", b"01234567"));
    }
}
