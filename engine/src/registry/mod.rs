//! What spans offices: certificate records, the VIN and user indexes, the blacklist, and the
//! creation of offices and applications. One actor, off the hot path: selection calls go straight
//! from the engine handle to the office actors and never through here.
//!
//! The VIN and user indexes are derived from the offices' applications at start-up, so they
//! cannot disagree with what is durable. The blacklist is durable here; a lapse that was durable
//! in its office but not yet blacklisted when the process died is blacklisted again at start-up.
//!
//! **Writes** (certificate imports, blacklist entries and lifts, audited actions) are applied on
//! the registry's thread and made durable off it, by group commit (`group_commit.rs`): the
//! registry goes on serving while a sync runs, every write waiting shares one sync, and a
//! write's caller is answered, and its effect shown (the blacklist, the certificate index), only
//! once its sync has returned ([`RegistryWrite`], [`Pending`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::events::EventSender;
use actix::prelude::*;
use arc_swap::ArcSwap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::actor::{Clock, OfficeActor, OfficeHandle, OfficeHealth};
use crate::class::PlateClass;
use crate::config::OfficeConfig;
use crate::engine::AppId;
use crate::outcome::Refusal;
use crate::pool::OfficePool;
use crate::record::AuditEntry;
use crate::store::{Kv, Store, StoreError};

mod applications;
mod cert_index;
pub(crate) mod cert_log;
mod certificates;

pub(crate) use applications::open_application;
pub(crate) use certificates::{open_log, IMPORT_MARK_PREFIX, LOG_END_KEY, SLED_CERT_PREFIX};
pub use certificates::{
    Certificate, CertificateRow, ImportPart, ImportReport, RejectedRow, IMPORT_ACTION,
    IMPORT_ROWS_MAX, VOUCHER_LEN_MAX,
};

pub(crate) const BLACKLIST_PREFIX: &[u8] = b"bl/";
pub(crate) const LOG_PREFIX: &[u8] = b"log/";

/// A blacklisted user (R4.11, I6). The user is blacklisted while `until_ms` is in the future.
/// An entry an operator lifted stays stored with `until_ms` set to the lift instant, so that
/// recovery does not blacklist the user again for the same lapse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistEntry {
    pub user: String,
    pub since_ms: u64,
    pub until_ms: u64,
    pub office: String,
    pub application: String,
}

/// A citizen's request to open an application (R4.2).
#[derive(Debug, Clone)]
pub struct ApplicationRequest {
    pub office: String,
    pub user: String,
    pub phone: String,
    pub vin: String,
    pub voucher: String,
    pub notice_version: String,
}

/// An office as the registry keeps it: its actor and its current configuration.
#[derive(Clone, Debug)]
pub struct OfficeEntry {
    pub handle: OfficeHandle,
    pub config: Arc<OfficeConfig>,
    /// The office's writer (a restart waits for it to finish what it was given): see
    /// `supervisor.rs`.
    pub(crate) writer: crate::store::Writer,
}

pub type OfficeMap = Arc<ArcSwap<HashMap<String, OfficeEntry>>>;
pub type BlacklistMap = Arc<ArcSwap<HashMap<String, BlacklistEntry>>>;

/// The registry actor.
pub struct Registry {
    pub(crate) store: Store,
    pub(crate) kv: Kv,
    pub(crate) certs: cert_log::CertificateLog,
    pub(crate) catalog: Vec<PlateClass>,
    pub(crate) offices: OfficeMap,
    pub(crate) blacklist: BlacklistMap,
    pub(crate) vins: HashMap<String, Vec<AppId>>,
    pub(crate) users: HashMap<String, Vec<AppId>>,
    pub(crate) pending_vins: HashSet<String>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shed_after: Option<std::time::Duration>,
    pub(crate) rng: StdRng,
    pub(crate) events: EventSender,
    pub(crate) arbiters: Vec<Arbiter>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Drop for Registry {
    /// The last engine handle is gone (or the engine was shut down): the office threads stop
    /// once their queued calls are handled, so an embedding program that drops an engine gets
    /// its threads, files and memory back. What was acknowledged is already durable.
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// A synchronous request to the registry.
pub struct RegistryCall<R>(pub Box<dyn FnOnce(&mut Registry) -> R + Send>);

impl<R> std::fmt::Debug for RegistryCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryCall")
    }
}

impl<R: Send + 'static> Message for RegistryCall<R> {
    type Result = R;
}

impl<R: Send + 'static> Handler<RegistryCall<R>> for Registry {
    type Result = MessageResult<RegistryCall<R>>;
    fn handle(&mut self, msg: RegistryCall<R>, _: &mut Context<Self>) -> Self::Result {
        MessageResult((msg.0)(self))
    }
}

/// A registry write applied in memory, waiting for its sync: `durable` resolves once the
/// group sync that covers it has returned; `finish` then runs on the registry's thread (shows
/// the write's effect) and gives the caller's answer.
pub struct Pending<R> {
    durable: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
    finish: Finish<R>,
}

/// What a [`Pending`] write does on the registry's thread once durable.
type Finish<R> = Box<dyn FnOnce(&mut Registry) -> Result<R, Refusal> + Send>;
/// What a [`RegistryWrite`] does on the registry's thread: apply, and say what to wait for.
type Apply<R> = Box<dyn FnOnce(&mut Registry) -> Result<Pending<R>, Refusal> + Send>;

impl<R> std::fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl<R> Pending<R> {
    pub(crate) fn new(
        durable: impl Future<Output = Result<(), StoreError>> + Send + 'static,
        finish: impl FnOnce(&mut Registry) -> Result<R, Refusal> + Send + 'static,
    ) -> Pending<R> {
        Pending {
            durable: Box::pin(durable),
            finish: Box::new(finish),
        }
    }

    /// The wait for the sync alone (its caller finishes by itself).
    pub(crate) fn into_durable(
        self,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.durable
    }

    /// Waits for the sync outside the actor (start-up, before the registry runs), then
    /// finishes.
    pub(crate) async fn complete(self, registry: &mut Registry) -> Result<R, Refusal> {
        self.durable
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        (self.finish)(registry)
    }
}

/// A write to the registry (see [`Pending`]): the registry handles other messages while it
/// waits for its sync.
pub struct RegistryWrite<R>(pub(crate) Apply<R>);

impl<R> std::fmt::Debug for RegistryWrite<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryWrite")
    }
}

impl<R: Send + 'static> Message for RegistryWrite<R> {
    type Result = Result<R, Refusal>;
}

impl<R: Send + 'static> Handler<RegistryWrite<R>> for Registry {
    type Result = ResponseActFuture<Self, Result<R, Refusal>>;

    fn handle(&mut self, msg: RegistryWrite<R>, _: &mut Context<Self>) -> Self::Result {
        let Pending { durable, finish } = match (msg.0)(self) {
            Ok(pending) => pending,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        Box::pin(durable.into_actor(self).map(move |synced, act, _| {
            synced.map_err(|e| Refusal::Unavailable(e.to_string()))?;
            finish(act)
        }))
    }
}

impl Registry {
    pub fn blacklisted_until(&self, user: &str) -> Option<u64> {
        let now = self.clock.now_ms();
        self.blacklist
            .load()
            .get(user)
            .map(|e| e.until_ms)
            .filter(|&u| u > now)
    }

    /// Blacklists a user whose claim lapsed (R4.11). Idempotent: a longer entry is kept. The
    /// entry takes effect (selection calls refused) once it is durable.
    pub(crate) fn blacklist_user(&mut self, entry: BlacklistEntry) -> Result<Pending<()>, Refusal> {
        let longer_kept = |map: &HashMap<String, BlacklistEntry>, entry: &BlacklistEntry| {
            map.get(&entry.user)
                .is_some_and(|e| e.until_ms >= entry.until_ms)
        };
        if longer_kept(self.blacklist.load_full().as_ref(), &entry) {
            return Ok(Pending::new(async { Ok(()) }, |_: &mut Registry| Ok(())));
        }
        let log = self.log_change("system", "blacklist", &entry.user, &entry.application)?;
        let durable = self.put_blacklist_entry(&entry, log);
        Ok(Pending::new(durable, move |r: &mut Registry| {
            if !longer_kept(r.blacklist.load_full().as_ref(), &entry) {
                r.show_blacklist_entry(entry);
            }
            Ok(())
        }))
    }

    /// An operator lifts a blacklist entry, with a reason (R5.4).
    pub(crate) fn lift_blacklist(
        &mut self,
        user: &str,
        who: &str,
        reason: &str,
    ) -> Result<Pending<()>, Refusal> {
        let now = self.clock.now_ms();
        let Some(entry) = self
            .blacklist
            .load()
            .get(user)
            .filter(|e| e.until_ms > now)
            .cloned()
        else {
            return Err(Refusal::Conflict(format!("{user} is not blacklisted")));
        };
        // Kept, ended now: recovery must not blacklist the user again for the same lapse.
        let lifted = BlacklistEntry {
            until_ms: now,
            ..entry
        };
        let log = self.log_change(who, "lift_blacklist", user, reason)?;
        let durable = self.put_blacklist_entry(&lifted, log);
        Ok(Pending::new(durable, move |r: &mut Registry| {
            r.show_blacklist_entry(lifted);
            Ok(())
        }))
    }

    /// Stores a blacklist entry with its audit entry (applied now, durable when resolved).
    fn put_blacklist_entry(
        &self,
        entry: &BlacklistEntry,
        log: (Vec<u8>, Option<Vec<u8>>),
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let mut key = BLACKLIST_PREFIX.to_vec();
        key.extend_from_slice(entry.user.as_bytes());
        self.kv
            .commit_raw_async(vec![(key, Some(Kv::encode(entry))), log])
    }

    fn show_blacklist_entry(&self, entry: BlacklistEntry) {
        let mut next = (**self.blacklist.load()).clone();
        next.insert(entry.user.clone(), entry);
        self.blacklist.store(Arc::new(next));
    }

    /// Whether a lapse (of `application`, at `lapsed_at_ms`) was already dealt with: the stored
    /// entry of its user (active, expired or lifted) comes from it or from a later lapse.
    pub(crate) fn lapse_recorded(&self, user: &str, application: &str, lapsed_at_ms: u64) -> bool {
        self.blacklist
            .load()
            .get(user)
            .is_some_and(|e| e.application == application || e.since_ms >= lapsed_at_ms)
    }

    fn log_change(
        &self,
        who: &str,
        action: &str,
        user: &str,
        detail: &str,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), Refusal> {
        let (key, entry) = self.audit_entry(who, action, format!("user {user}: {detail}"))?;
        Ok((key, Some(Kv::encode(&entry))))
    }

    /// A registry audit entry now, and the key it is stored under in the trail.
    fn audit_entry(
        &self,
        who: &str,
        action: &str,
        detail: String,
    ) -> Result<(Vec<u8>, AuditEntry), Refusal> {
        let id = self
            .store
            .generate_id()
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut key = LOG_PREFIX.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        let entry = AuditEntry {
            at_ms: self.clock.now_ms(),
            who: who.to_string(),
            action: action.to_string(),
            application: None,
            serial: None,
            detail,
        };
        Ok((key, entry))
    }

    /// Records an operator's action that changes no stored state of its own (a clock
    /// confirmation) in the registry's audit trail, durably.
    pub(crate) fn record_action(
        &mut self,
        who: &str,
        action: &str,
        detail: String,
    ) -> Result<Pending<()>, Refusal> {
        let (key, entry) = self.audit_entry(who, action, detail)?;
        let durable = self
            .kv
            .commit_raw_async(vec![(key, Some(Kv::encode(&entry)))]);
        Ok(Pending::new(durable, |_: &mut Registry| Ok(())))
    }

    /// The registry's own audit trail (blacklistings, lifts, certificate imports), oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, Refusal> {
        self.kv
            .scan::<AuditEntry>(LOG_PREFIX)
            .map(|v| v.into_iter().map(|(_, e)| e).collect())
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    /// Creates an office or changes its configuration (R5.1). Returns true when created.
    pub fn put_office(
        &mut self,
        id: &str,
        config: OfficeConfig,
        who: &str,
    ) -> Result<PutOffice, Refusal> {
        let offices = self.offices.load();
        if let Some(entry) = offices.get(id) {
            return Ok(PutOffice::Existing(entry.clone(), Box::new(config)));
        }
        let now = self.clock.now_ms();
        let mut pool = OfficePool::new(id, config.clone(), self.catalog.clone())?;
        pool.configure(config.clone(), who, now)?;
        let records = pool.take_effects().records;
        let office_store = self
            .store
            .office(id)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        office_store
            .commit_now(&records)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        self.install_office(id, pool, &office_store)?;
        Ok(PutOffice::Created)
    }

    /// Starts `pool`'s actor on `office_store` and puts it in the office map: a new office, or a
    /// restarted one in place of its failed actor.
    pub(crate) fn install_office(
        &mut self,
        id: &str,
        pool: OfficePool,
        office_store: &crate::store::OfficeStore,
    ) -> Result<(), Refusal> {
        let seed = self.rng.random();
        let entry = start_office(
            pool,
            office_store,
            StdRng::seed_from_u64(seed),
            self.clock.clone(),
            self.shed_after,
            self.events.clone(),
            &mut self.arbiters,
        )?;
        let mut next = (**self.offices.load()).clone();
        next.insert(id.to_string(), entry);
        self.offices.store(Arc::new(next));
        Ok(())
    }

    /// Replaces the cached configuration of an office after its actor accepted it.
    pub fn set_office_config(&mut self, id: &str, config: OfficeConfig) {
        let offices = self.offices.load();
        if let Some(entry) = offices.get(id) {
            let mut next = (**offices).clone();
            next.insert(
                id.to_string(),
                OfficeEntry {
                    config: Arc::new(config),
                    ..entry.clone()
                },
            );
            self.offices.store(Arc::new(next));
        }
    }
}

/// What [`Registry::put_office`] did.
#[derive(Debug)]
pub enum PutOffice {
    Created,
    /// The office exists: its actor must accept the new configuration.
    Existing(OfficeEntry, Box<OfficeConfig>),
}

/// Starts an office's writer and actor on the shared writer threads and arbiters.
pub(crate) fn start_office(
    pool: OfficePool,
    office_store: &crate::store::OfficeStore,
    rng: StdRng,
    clock: Arc<dyn Clock>,
    shed_after: Option<std::time::Duration>,
    events: EventSender,
    arbiters: &mut Vec<Arbiter>,
) -> Result<OfficeEntry, Refusal> {
    let mut pool = pool;
    if !pool.keeps_settled_on_disk() {
        pool.keep_settled_in(Box::new(office_store.clone()));
    }
    let id = pool.id().to_string();
    let config = Arc::new(pool.config().clone());
    let writer = office_store
        .start_writer(&id)
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let health = Arc::new(OfficeHealth::new(shed_after));
    let actor_health = health.clone();
    let actor_writer = writer.clone();
    let arbiter = crate::actor::office_arbiter(arbiters);
    let addr = OfficeActor::start_in_arbiter(&arbiter, move |_| {
        OfficeActor::new(pool, actor_writer, rng, clock, actor_health, Some(events))
    });
    Ok(OfficeEntry {
        handle: OfficeHandle { addr, health },
        config,
        writer,
    })
}

#[cfg(test)]
mod tests;
