//! What spans offices: certificate records, the VIN and user indexes, the blacklist, and the
//! creation of offices and applications. One actor, off the hot path: selection calls go straight
//! from the engine handle to the office actors and never through here.
//!
//! The VIN and user indexes are derived from the offices' applications at start-up, so they
//! cannot disagree with what is durable. The blacklist is durable here; a lapse that was durable
//! in its office but not yet blacklisted when the process died is blacklisted again at start-up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::events::EventSender;
use actix::prelude::*;
use arc_swap::ArcSwap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::actor::{Call, Clock, OfficeActor, OfficeHandle, OfficeHealth};
use crate::class::{Energy, PlateClass};
use crate::config::OfficeConfig;
use crate::engine::AppId;
use crate::outcome::Refusal;
use crate::pool::{NewApplication, OfficePool};
use crate::record::AuditEntry;
use crate::store::{Kv, Store};
use crate::vin::check_vin;

/// Most certificate rows one import may carry.
pub const IMPORT_ROWS_MAX: usize = 200_000;
/// Longest selection voucher number.
pub const VOUCHER_LEN_MAX: usize = 32;

const CERT_PREFIX: &[u8] = b"cert/";
const BLACKLIST_PREFIX: &[u8] = b"bl/";
const LOG_PREFIX: &[u8] = b"log/";

/// A vehicle's certificate record (national data; one import serves every office).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub vin: String,
    pub voucher: String,
    pub class: String,
    pub energy: Energy,
}

/// One row of an import, as given.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificateRow {
    #[serde(default)]
    pub vin: String,
    #[serde(default)]
    pub voucher: String,
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub energy: String,
}

/// A row an import refused, and why. Rows count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    pub row: usize,
    pub reason: String,
}

/// The audit action of a certificate import.
pub const IMPORT_ACTION: &str = "import_certificates";

/// Where one call of a certificate import sits in the operator's whole import, for the call's
/// audit entry: a large import reaches the registry in several calls (so one import does not
/// hold the registry long), each durable with its own entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportPart {
    /// This call's place among the import's calls, from 1, and how many there are.
    pub index: usize,
    pub of: usize,
    /// Rows the caller refused before the engine saw them (unreadable CSV records, …), counted
    /// as rejected in this call's entry.
    pub rejected_before: usize,
}

impl ImportPart {
    /// A whole import in one call.
    pub const WHOLE: ImportPart = ImportPart {
        index: 1,
        of: 1,
        rejected_before: 0,
    };

    /// The audit entry's detail: `certificates: 3 imported, 1 rejected` (and `(part 2 of 5)`).
    pub fn detail(&self, imported: usize, rejected: usize) -> String {
        let rejected = rejected + self.rejected_before;
        let mut text = format!("certificates: {imported} imported, {rejected} rejected");
        if self.of > 1 {
            text.push_str(&format!(" (part {} of {})", self.index, self.of));
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub rejected: Vec<RejectedRow>,
}

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

/// Opens an application, or with `dry_run` only checks that it could be opened.
#[derive(Debug)]
pub struct CreateApplication {
    pub req: ApplicationRequest,
    pub dry_run: bool,
}

impl Message for CreateApplication {
    type Result = Result<Option<AppId>, Refusal>;
}

impl Handler<CreateApplication> for Registry {
    type Result = ResponseActFuture<Self, Result<Option<AppId>, Refusal>>;

    fn handle(&mut self, msg: CreateApplication, _: &mut Context<Self>) -> Self::Result {
        let checked = self.precheck(&msg.req);
        let (entry, new_app) = match checked {
            Ok(x) => x,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let vin = new_app.vin.clone();
        if self.pending_vins.contains(&vin) {
            return Box::pin(fut::ready(Err(Refusal::ApplicationExists {
                application: String::new(),
            })));
        }
        let existing = self.vins.get(&vin).cloned().unwrap_or_default();
        let offices = self.offices.load_full();
        self.pending_vins.insert(vin.clone());
        let dry_run = msg.dry_run;
        let office_id = msg.req.office.clone();
        let user = new_app.user.clone();
        let work = async move {
            for id in existing {
                let Some(other) = offices.get(&id.office) else {
                    continue;
                };
                let seq = id.seq;
                let state = other
                    .handle
                    .call(Call::read(move |pool, _| {
                        Ok(pool.application(seq, 0).map(|v| v.record.state))
                    }))
                    .await?;
                match state {
                    Some(s) if s.live() => {
                        return Err(Refusal::ApplicationExists {
                            application: id.to_string(),
                        })
                    }
                    Some(s) if s.used_vin() => return Err(Refusal::VinAlreadyUsed),
                    _ => {}
                }
            }
            if dry_run {
                return Ok(None);
            }
            let seq = entry
                .handle
                .call(Call::write(move |pool, now, _| {
                    pool.create_application(new_app, now)
                }))
                .await?;
            Ok(Some(AppId {
                office: office_id,
                seq,
            }))
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            act.pending_vins.remove(&vin);
            if let Ok(Some(id)) = &res {
                act.vins.entry(vin).or_default().push(id.clone());
                act.users.entry(user).or_default().push(id.clone());
            }
            res
        }))
    }
}

impl Registry {
    /// The checks of R4.2 that need no office round trip, in the API's order: office, notice
    /// version, VIN, voucher match, eligibility; then the blacklist (I6).
    fn precheck(&self, req: &ApplicationRequest) -> Result<(OfficeEntry, NewApplication), Refusal> {
        let offices = self.offices.load();
        let entry = offices
            .get(&req.office)
            .cloned()
            .ok_or(Refusal::UnknownOffice)?;
        let config = &entry.config;
        if req.notice_version != config.notice.version {
            return Err(Refusal::NoticeNotAccepted {
                expected: config.notice.version.clone(),
            });
        }
        let vin = check_vin(&req.vin).map_err(|e| Refusal::InvalidVin(e.to_string()))?;
        let cert = self
            .certificate(vin.as_str())?
            .filter(|c| c.voucher.eq_ignore_ascii_case(req.voucher.trim()))
            .ok_or(Refusal::VoucherMismatch)?;
        if !config.classes.contains(&cert.class) {
            return Err(Refusal::VehicleNotEligible(format!(
                "the office does not serve class {}",
                cert.class
            )));
        }
        let class = self
            .catalog
            .iter()
            .find(|c| c.name == cert.class)
            .ok_or_else(|| Refusal::VehicleNotEligible(format!("unknown class {}", cert.class)))?;
        if class.group_for(cert.energy).is_none() {
            return Err(Refusal::VehicleNotEligible(format!(
                "a {} vehicle cannot have a {} plate",
                cert.energy.as_str(),
                cert.class
            )));
        }
        if let Some(until_ms) = self.blacklisted_until(&req.user) {
            return Err(Refusal::Blacklisted { until_ms });
        }
        Ok((
            entry.clone(),
            NewApplication {
                user: req.user.clone(),
                phone: req.phone.clone(),
                vin: vin.as_str().to_string(),
                class: cert.class,
                energy: cert.energy,
                notice_version: req.notice_version.clone(),
            },
        ))
    }

    pub fn certificate(&self, vin: &str) -> Result<Option<Certificate>, Refusal> {
        let mut key = CERT_PREFIX.to_vec();
        key.extend_from_slice(vin.as_bytes());
        self.kv
            .get(&key)
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    pub fn blacklisted_until(&self, user: &str) -> Option<u64> {
        let now = self.clock.now_ms();
        self.blacklist
            .load()
            .get(user)
            .map(|e| e.until_ms)
            .filter(|&u| u > now)
    }

    /// Imports certificate records (R5.3): every good row is kept, every bad one reported. The
    /// import is in the audit trail (R5.6: `who`, the counts, when), written in the same
    /// commit as its records, so a record is durable exactly when its import's entry is; an
    /// import whose every row was refused is recorded too (it changed nothing, but an operator
    /// acted).
    pub fn import_certificates(
        &mut self,
        rows: Vec<CertificateRow>,
        who: &str,
        part: ImportPart,
    ) -> Result<ImportReport, Refusal> {
        if rows.len() > IMPORT_ROWS_MAX {
            return Err(Refusal::BadRequest(format!(
                "an import carries at most {IMPORT_ROWS_MAX} rows"
            )));
        }
        let mut rejected = Vec::new();
        let mut changes = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            match self.check_row(row) {
                Ok(cert) => {
                    let mut key = CERT_PREFIX.to_vec();
                    key.extend_from_slice(cert.vin.as_bytes());
                    changes.push((key, Some(Kv::encode(&cert))));
                }
                Err(reason) => rejected.push(RejectedRow { row: i + 1, reason }),
            }
        }
        let imported = changes.len();
        changes.push(self.log_entry(who, IMPORT_ACTION, part.detail(imported, rejected.len()))?);
        self.kv
            .commit_raw(changes)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(ImportReport { imported, rejected })
    }

    fn check_row(&self, row: CertificateRow) -> Result<Certificate, String> {
        let vin = check_vin(&row.vin).map_err(|e| format!("vin: {e}"))?;
        let voucher = row.voucher.trim().to_ascii_uppercase();
        if voucher.is_empty() || voucher.len() > VOUCHER_LEN_MAX {
            return Err(format!(
                "voucher: must have 1 to {VOUCHER_LEN_MAX} characters"
            ));
        }
        if !voucher
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err("voucher: only letters, digits and '-'".into());
        }
        let class = row.class.trim();
        if !self.catalog.iter().any(|c| c.name == class) {
            return Err(format!("class: unknown class '{class}'"));
        }
        let energy = Energy::parse(&row.energy).ok_or_else(|| {
            format!(
                "energy: '{}' is not one of fuel, bev, phev, fcev",
                row.energy.trim()
            )
        })?;
        Ok(Certificate {
            vin: vin.as_str().to_string(),
            voucher,
            class: class.to_string(),
            energy,
        })
    }

    /// Blacklists a user whose claim lapsed (R4.11). Idempotent: a longer entry is kept.
    pub fn blacklist_user(&mut self, entry: BlacklistEntry) -> Result<(), Refusal> {
        let current = self.blacklist.load();
        if current
            .get(&entry.user)
            .is_some_and(|e| e.until_ms >= entry.until_ms)
        {
            return Ok(());
        }
        let mut key = BLACKLIST_PREFIX.to_vec();
        key.extend_from_slice(entry.user.as_bytes());
        let log = self.log_change("system", "blacklist", &entry.user, &entry.application)?;
        self.kv
            .commit_raw(vec![(key, Some(Kv::encode(&entry))), log])
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut next = (**current).clone();
        next.insert(entry.user.clone(), entry);
        self.blacklist.store(Arc::new(next));
        Ok(())
    }

    /// An operator lifts a blacklist entry, with a reason (R5.4).
    pub fn lift_blacklist(&mut self, user: &str, who: &str, reason: &str) -> Result<(), Refusal> {
        let current = self.blacklist.load();
        let now = self.clock.now_ms();
        let Some(entry) = current.get(user).filter(|e| e.until_ms > now) else {
            return Err(Refusal::Conflict(format!("{user} is not blacklisted")));
        };
        // Kept, ended now: recovery must not blacklist the user again for the same lapse.
        let lifted = BlacklistEntry {
            until_ms: now,
            ..entry.clone()
        };
        let mut key = BLACKLIST_PREFIX.to_vec();
        key.extend_from_slice(user.as_bytes());
        let log = self.log_change(who, "lift_blacklist", user, reason)?;
        self.kv
            .commit_raw(vec![(key, Some(Kv::encode(&lifted))), log])
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut next = (**current).clone();
        next.insert(user.to_string(), lifted);
        self.blacklist.store(Arc::new(next));
        Ok(())
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
        self.log_entry(who, action, format!("user {user}: {detail}"))
    }

    /// A registry audit entry as a change to commit with what it records.
    fn log_entry(
        &self,
        who: &str,
        action: &str,
        detail: String,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), Refusal> {
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
        Ok((key, Some(Kv::encode(&entry))))
    }

    /// Records an operator's action that changes no stored state of its own (a clock
    /// confirmation) in the registry's audit trail, durably.
    pub(crate) fn record_action(
        &mut self,
        who: &str,
        action: &str,
        detail: String,
    ) -> Result<(), Refusal> {
        let log = self.log_entry(who, action, detail)?;
        self.kv
            .commit_raw(vec![log])
            .map_err(|e| Refusal::Unavailable(e.to_string()))
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
        let seed = self.rng.random();
        let entry = start_office(
            pool,
            &office_store,
            StdRng::seed_from_u64(seed),
            self.clock.clone(),
            self.shed_after,
            self.events.clone(),
            &mut self.arbiters,
        )?;
        let mut next = (**offices).clone();
        next.insert(id.to_string(), entry);
        self.offices.store(Arc::new(next));
        Ok(PutOffice::Created)
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

    /// Applications of a user, in creation order per office.
    pub fn user_applications(&self, user: &str) -> Vec<AppId> {
        self.users.get(user).cloned().unwrap_or_default()
    }

    pub fn vin_applications(&self, vin: &str) -> Vec<AppId> {
        self.vins.get(vin).cloned().unwrap_or_default()
    }

    /// Indexes an application found at start-up.
    pub(crate) fn index(&mut self, id: AppId, vin: &str, user: &str) {
        self.vins
            .entry(vin.to_string())
            .or_default()
            .push(id.clone());
        self.users.entry(user.to_string()).or_default().push(id);
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
