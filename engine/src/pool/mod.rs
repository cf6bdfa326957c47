//! One office's plate pool as a pure state machine (SPEC §4–§5).
//!
//! No clock, no IO, no actix in here: every call takes `now_ms` (and an RNG where chance is
//! involved), changes memory, and leaves the records to persist and the events for other parts of
//! the system in [`OfficePool::take_effects`]. [`OfficePool::next_deadline_ms`] says when
//! [`OfficePool::tick`] must run next. A refused call returns a [`Refusal`] and changes nothing.
//! That is what makes deterministic tests, the model-checking test and recovery by replay possible.

pub mod numbers;
mod shift;

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use rand::Rng;
use serde::Serialize;

use crate::calendar;
use crate::class::{Energy, PlateClass};
use crate::config::OfficeConfig;
use crate::outcome::{Refusal, Unavailable};
use crate::pattern::CharSet;
use crate::plate::{PlateError, Serial};
use crate::record::{
    AppRecord, AppState, AuditEntry, Claim, NumberState, Record, ReleaseRecord, ReleaseSource,
};
use numbers::{ClassPool, Status, STATUS_COUNT};

/// How long an identity verification (R4.4) lets a citizen select.
pub const IDENTITY_VALID_MS: u64 = 30 * 60_000;
/// Most practice applications an office keeps at once; the oldest go first.
pub const PRACTICE_APPS_MAX: usize = 10_000;
/// Practice application sequence numbers start here, far from real ones.
pub const PRACTICE_SEQ_BASE: u64 = 1 << 48;
/// Most numbers one release may add.
pub const RELEASE_NUMBERS_MAX: u64 = 10_000_000;
/// Most patterns or explicit serials in one release.
pub const RELEASE_PATTERNS_MAX: usize = 256;
pub const RELEASE_SERIALS_MAX: usize = 100_000;
/// Longest release label.
pub const RELEASE_LABEL_LEN_MAX: usize = 128;
/// Milliseconds in a day, for blacklist lengths.
const DAY_MS: u64 = 86_400_000;

/// A vehicle's request to open an application in this office (identity, VIN and voucher were
/// checked by the engine before it reaches the pool).
#[derive(Debug, Clone)]
pub struct NewApplication {
    pub user: String,
    pub phone: String,
    pub vin: String,
    pub class: String,
    pub energy: Energy,
    pub notice_version: String,
}

/// An operator's release request (SPEC R5.2).
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub class: String,
    pub label: String,
    pub opens_at_ms: u64,
    pub custom_from_ms: Option<u64>,
    pub source: ReleaseSource,
}

/// Numbers a release preview lists from the start of what would be added.
pub const RELEASE_PREVIEW_SAMPLE: usize = 10;

/// What a release would add (SPEC R5.2), computed without adding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePreview {
    /// Numbers the release would add: those it names that are not in the pool yet.
    pub total: u64,
    /// Distinct numbers the release names, those already in the pool included.
    pub named: u64,
    /// The first numbers it would add, in pool order.
    pub sample: Vec<Serial>,
    /// The last number it would add.
    pub last: Option<Serial>,
}

/// What a step asks the rest of the system to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A number was pre-selected: tell the owner by SMS (R4.8).
    Claimed {
        app: u64,
        phone: String,
        serial: Serial,
        register_by_ms: u64,
    },
    /// A claim lapsed: blacklist the user (R4.11, I6).
    Lapsed {
        app: u64,
        user: String,
        until_ms: u64,
    },
}

/// Records to persist and events to route, accumulated by the steps since the last take.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    pub events: Vec<Event>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.events.is_empty()
    }
}

/// Numbers held with one expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldView {
    pub serials: Vec<Serial>,
    pub expires_at_ms: u64,
}

/// An application as a citizen or operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppView {
    #[serde(flatten)]
    pub record: AppRecord,
    pub practice: bool,
    pub batch: Option<HoldView>,
    pub candidates: Option<HoldView>,
    /// Whether the live batch has given its one candidate.
    pub batch_picked: bool,
    /// When the next custom check may be made.
    pub next_check_at_ms: u64,
    /// When the next random draw may be made (R4.14).
    pub next_draw_at_ms: u64,
}

/// A successful draw (R4.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draw {
    pub batch: HoldView,
    pub candidates: Option<HoldView>,
    pub random_left: u32,
}

/// How one custom check ended (R4.5). Both outcomes debit the quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Check {
    Claimed(Claim),
    NoneAvailable {
        results: Vec<(Serial, Unavailable)>,
        custom_left: u32,
        next_check_at_ms: u64,
    },
}

/// Counts of numbers in each state, as the pool notice and stats show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub available: u64,
    pub held: u64,
    pub claimed: u64,
    pub issued: u64,
    pub withdrawn: u64,
}

impl Counts {
    fn from_array(a: [u64; STATUS_COUNT]) -> Counts {
        Counts {
            pending: a[Status::Pending as usize],
            available: a[Status::Available as usize],
            held: a[Status::Held as usize],
            claimed: a[Status::Claimed as usize],
            issued: a[Status::Issued as usize],
            withdrawn: a[Status::Withdrawn as usize],
        }
    }
    pub fn total(&self) -> u64 {
        self.pending + self.available + self.held + self.claimed + self.issued + self.withdrawn
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseStats {
    pub id: u32,
    pub label: String,
    pub opens_at_ms: u64,
    pub custom_from_ms: u64,
    pub withdrawn: bool,
    pub total: u64,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassStats {
    pub class: String,
    pub counts: Counts,
    pub releases: Vec<ReleaseStats>,
}

#[derive(Debug, Clone, Default)]
struct Holds {
    batch: Vec<u32>,
    batch_expires_at_ms: u64,
    batch_picked: bool,
    candidates: Vec<u32>,
    candidates_expire_at_ms: u64,
}

impl Holds {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.candidates.is_empty()
    }
    fn deadline(&self) -> Option<u64> {
        let b = (!self.batch.is_empty()).then_some(self.batch_expires_at_ms);
        let c = (!self.candidates.is_empty()).then_some(self.candidates_expire_at_ms);
        match (b, c) {
            (Some(b), Some(c)) => Some(b.min(c)),
            (b, c) => b.or(c),
        }
    }
}

#[derive(Debug, Clone)]
struct Application {
    rec: AppRecord,
    class_ix: usize,
    group: usize,
    practice: bool,
    holds: Holds,
    /// This application's entry in `hold_deadlines`.
    hold_deadline: Option<u64>,
}

/// One office's pool: numbers of every class, releases, applications.
#[derive(Debug)]
pub struct OfficePool {
    id: String,
    config: OfficeConfig,
    catalog: Vec<PlateClass>,
    classes: Vec<ClassPool>,
    releases: Vec<ReleaseRecord>,
    apps: FxHashMap<u64, Application>,
    practice_order: VecDeque<u64>,
    next_seq: u64,
    next_practice_seq: u64,
    next_release: u32,
    /// Who holds or claimed each number that is held, claimed or issued: (class, index) → app.
    owners: FxHashMap<(u8, u32), u64>,
    hold_deadlines: BTreeSet<(u64, u64)>,
    claim_deadlines: BTreeSet<(u64, u64)>,
    /// Release openings and ends of random-only periods still to come: (instant, release id).
    release_events: BTreeSet<(u64, u32)>,
    effects: Effects,
}

fn user_who(app: &Application) -> String {
    format!("user:{}", app.rec.user)
}

impl OfficePool {
    /// A new, empty office. `catalog` is every plate class the engine knows.
    pub fn new(
        id: &str,
        config: OfficeConfig,
        catalog: Vec<PlateClass>,
    ) -> Result<OfficePool, Refusal> {
        crate::config::validate_office_id(id).map_err(|message| Refusal::InvalidConfig {
            field: "office".into(),
            message,
        })?;
        config
            .validate(&catalog)
            .map_err(|e| Refusal::InvalidConfig {
                field: e.field,
                message: e.message,
            })?;
        let mut pool = OfficePool {
            id: id.to_string(),
            config: config.clone(),
            catalog,
            classes: Vec::new(),
            releases: Vec::new(),
            apps: FxHashMap::default(),
            practice_order: VecDeque::new(),
            next_seq: 1,
            next_practice_seq: PRACTICE_SEQ_BASE,
            next_release: 1,
            owners: FxHashMap::default(),
            hold_deadlines: BTreeSet::new(),
            claim_deadlines: BTreeSet::new(),
            release_events: BTreeSet::new(),
            effects: Effects::default(),
        };
        pool.sync_classes();
        Ok(pool)
    }

    /// Rebuilds an office from its records (I9): releases re-expanded from their specifications,
    /// numbers whose state differs applied on top, applications with their quotas and claims.
    /// Holds are gone: those numbers are back in the pool.
    pub fn restore(
        id: &str,
        config: OfficeConfig,
        catalog: Vec<PlateClass>,
        mut releases: Vec<ReleaseRecord>,
        numbers: Vec<(String, Serial, NumberState)>,
        apps: Vec<AppRecord>,
        now_ms: u64,
    ) -> Result<OfficePool, String> {
        let mut pool = OfficePool::new(id, config, catalog).map_err(|e| e.to_string())?;
        releases.sort_by_key(|r| r.id);
        for rec in releases {
            let class_ix = pool
                .class_index(&rec.class)
                .ok_or_else(|| format!("release {} names unknown class {}", rec.id, rec.class))?;
            let named = pool
                .expand(class_ix, &rec.source)
                .map_err(|e| format!("release {}: {e}", rec.id))?;
            // As when it was added: numbers an earlier release holds stay that release's.
            let codes = pool.not_in_pool(class_ix, named);
            pool.classes[class_ix].add_segment(rec.id, codes);
            pool.next_release = pool.next_release.max(rec.id + 1);
            pool.schedule_release(&rec);
            pool.releases.push(rec);
        }
        for rec in apps {
            let class_ix = pool.class_index(&rec.class).ok_or_else(|| {
                format!("application {} names unknown class {}", rec.seq, rec.class)
            })?;
            let group = pool.classes[class_ix]
                .def
                .group_for(rec.energy)
                .ok_or_else(|| format!("application {}: energy not in class", rec.seq))?;
            pool.next_seq = pool.next_seq.max(rec.seq + 1);
            if rec.state == AppState::Claimed {
                if let Some(c) = &rec.claim {
                    pool.claim_deadlines.insert((c.register_by_ms, rec.seq));
                }
            }
            pool.apps.insert(
                rec.seq,
                Application {
                    rec,
                    class_ix,
                    group,
                    practice: false,
                    holds: Holds::default(),
                    hold_deadline: None,
                },
            );
        }
        for (class, serial, state) in numbers {
            let class_ix = pool
                .class_index(&class)
                .ok_or_else(|| format!("number {serial} names unknown class {class}"))?;
            let idx = pool.classes[class_ix]
                .find(serial)
                .ok_or_else(|| format!("number {serial} is in no release"))?;
            let (status, owner) = match state {
                NumberState::Claimed { app } => (Status::Claimed, Some(app)),
                NumberState::Issued { app } => (Status::Issued, Some(app)),
                NumberState::Withdrawn => (Status::Withdrawn, None),
            };
            if let Some(app) = owner {
                if !pool.apps.contains_key(&app) {
                    return Err(format!(
                        "number {serial} belongs to unknown application {app}"
                    ));
                }
                pool.owners.insert((class_ix as u8, idx), app);
            }
            pool.classes[class_ix].set_status(idx, status);
        }
        let withdrawn: Vec<(usize, u32)> = pool
            .releases
            .iter()
            .filter(|r| r.withdrawn)
            .filter_map(|r| pool.class_index(&r.class).map(|c| (c, r.id)))
            .collect();
        for (class_ix, release) in withdrawn {
            if let Some(seg) = pool.classes[class_ix].segment_index(release) {
                pool.classes[class_ix].withdraw_segment(seg);
            }
        }
        pool.run_release_events(now_ms);
        pool.effects = Effects::default();
        // Holds are gone: an application whose only hope was a held number is exhausted now
        // (R4.7). Its records are left in the effects, for the actor's first commit.
        let spent: Vec<u64> = pool
            .apps
            .values()
            .filter(|a| a.rec.state.selecting() && a.rec.custom_left == 0 && a.rec.random_left == 0)
            .map(|a| a.rec.seq)
            .collect();
        for seq in spent {
            if let Some(mut app) = pool.apps.remove(&seq) {
                if pool.maybe_exhaust(&mut app, now_ms) {
                    pool.persist(&app);
                }
                pool.apps.insert(seq, app);
            }
        }
        pool.refresh_keyboards();
        Ok(pool)
    }

    /// Brings every keyboard index up to date now rather than at its next query (start-up).
    pub fn refresh_keyboards(&self) {
        for cp in &self.classes {
            cp.refresh_keyboard();
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &OfficeConfig {
        &self.config
    }

    pub fn releases(&self) -> &[ReleaseRecord] {
        &self.releases
    }

    /// The records and events of every step since the last call.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// When [`OfficePool::tick`] must run next: the earliest hold expiry, claim deadline or
    /// release event.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        [
            self.hold_deadlines.first().map(|d| d.0),
            self.claim_deadlines.first().map(|d| d.0),
            self.release_events.first().map(|d| d.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything due by `now_ms`: releases open, holds expire back into the pool (I4), claims past
    /// their deadline lapse (R4.11).
    pub fn tick(&mut self, now_ms: u64) {
        self.run_release_events(now_ms);
        while let Some(&(at, seq)) = self.hold_deadlines.first() {
            if at > now_ms {
                break;
            }
            self.hold_deadlines.pop_first();
            if let Some(mut app) = self.apps.remove(&seq) {
                app.hold_deadline = None;
                self.expire_holds(&mut app, now_ms);
                self.apps.insert(seq, app);
            }
        }
        while let Some(&(at, seq)) = self.claim_deadlines.first() {
            if at > now_ms {
                break;
            }
            self.claim_deadlines.pop_first();
            if let Some(mut app) = self.apps.remove(&seq) {
                self.lapse(&mut app, now_ms);
                self.apps.insert(seq, app);
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Configuration and releases (operators)

    /// Replaces the office configuration; takes effect for new actions (R5.1).
    pub fn configure(
        &mut self,
        config: OfficeConfig,
        who: &str,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        config
            .validate(&self.catalog)
            .map_err(|e| Refusal::InvalidConfig {
                field: e.field,
                message: e.message,
            })?;
        for cp in &self.classes {
            if !config.classes.contains(&cp.def.name) && !cp.is_empty() {
                return Err(Refusal::InvalidConfig {
                    field: "classes".into(),
                    message: format!(
                        "class {} has released numbers and cannot be removed",
                        cp.def.name
                    ),
                });
            }
        }
        self.config = config;
        self.sync_classes();
        self.effects
            .records
            .push(Record::Config(Box::new(self.config.clone())));
        self.audit(now_ms, who, "configure", None, None, String::new());
        Ok(())
    }

    /// Brings the class pools in line with the configuration: new classes get a pool, and every
    /// pool gets the current composition rules.
    fn sync_classes(&mut self) {
        for name in self.config.classes.clone() {
            if self.class_index(&name).is_none() {
                if let Some(def) = self.catalog.iter().find(|c| c.name == name).cloned() {
                    let rules = self.config.composition_rules(&def);
                    self.classes.push(ClassPool::new(def, rules));
                }
            }
        }
        for i in 0..self.classes.len() {
            let rules = self.config.composition_rules(&self.classes[i].def);
            if *self.classes[i].composition() != rules {
                self.classes[i].set_composition(rules);
            }
        }
    }

    fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.def.name == name)
    }

    /// Served classes, in configuration order.
    pub fn class_names(&self) -> Vec<String> {
        self.config.classes.clone()
    }

    /// The sorted, deduplicated codes a release names (numbers already released included).
    fn expand(&self, class_ix: usize, source: &ReleaseSource) -> Result<Vec<u32>, String> {
        let cp = &self.classes[class_ix];
        let def = &cp.def;
        let mut codes = Vec::new();
        match source {
            ReleaseSource::Patterns(patterns) => {
                if patterns.is_empty() || patterns.len() > RELEASE_PATTERNS_MAX {
                    return Err(format!(
                        "a release has 1 to {RELEASE_PATTERNS_MAX} patterns"
                    ));
                }
                let mut total = 0u64;
                for (i, p) in patterns.iter().enumerate() {
                    if !p.is_subset(&def.shape) {
                        return Err(format!(
                            "patterns[{i}]: {p} is not inside the {} shape {}",
                            def.name, def.shape
                        ));
                    }
                    total += p.count();
                }
                if total > RELEASE_NUMBERS_MAX {
                    return Err(format!(
                        "the patterns name {total} numbers, more than {RELEASE_NUMBERS_MAX}"
                    ));
                }
                for p in patterns {
                    p.extend_codes(&mut codes);
                }
            }
            ReleaseSource::Serials(serials) => {
                if serials.is_empty() || serials.len() > RELEASE_SERIALS_MAX {
                    return Err(format!(
                        "a release lists 1 to {RELEASE_SERIALS_MAX} serials"
                    ));
                }
                for (i, s) in serials.iter().enumerate() {
                    if !def.shape.matches(*s) {
                        return Err(format!(
                            "serials[{i}]: {s} is not a {} number ({})",
                            def.name, def.shape
                        ));
                    }
                    codes.push(s.code());
                }
            }
        }
        codes.sort_unstable();
        codes.dedup();
        let len = def.serial_len();
        for &code in &codes {
            if def.group_of(Serial::from_pool_code(code, len)).is_none() {
                return Err(format!(
                    "{} fits no energy group of {}",
                    Serial::from_pool_code(code, len),
                    def.name
                ));
            }
        }
        Ok(codes)
    }

    /// The codes of `codes` that no release of the class holds yet (a release adds only those,
    /// at `add_release` and again at `restore`).
    fn not_in_pool(&self, class_ix: usize, mut codes: Vec<u32>) -> Vec<u32> {
        let cp = &self.classes[class_ix];
        let len = cp.def.serial_len();
        codes.retain(|&code| cp.find(Serial::from_pool_code(code, len)).is_none());
        codes
    }

    /// Checks a release request as [`OfficePool::add_release`] does: the class index, the
    /// numbers it names and the new ones among them (sorted codes), or why it is refused.
    fn release_codes(&self, req: &NewRelease) -> Result<(usize, Vec<u32>, u64), Refusal> {
        let class_ix = self
            .class_index(&req.class)
            .filter(|_| self.config.classes.contains(&req.class))
            .ok_or_else(|| Refusal::UnknownClass(req.class.clone()))?;
        if req.label.chars().count() > RELEASE_LABEL_LEN_MAX {
            return Err(Refusal::InvalidRelease(format!(
                "label is longer than {RELEASE_LABEL_LEN_MAX} characters"
            )));
        }
        let named_codes = self
            .expand(class_ix, &req.source)
            .map_err(Refusal::InvalidRelease)?;
        let named = named_codes.len() as u64;
        let codes = self.not_in_pool(class_ix, named_codes);
        if codes.is_empty() {
            return Err(Refusal::InvalidRelease(match req.source {
                ReleaseSource::Patterns(_) => "every number it names is already in the pool".into(),
                ReleaseSource::Serials(_) => "every serial it lists is already in the pool".into(),
            }));
        }
        Ok((class_ix, codes, named))
    }

    /// What [`OfficePool::add_release`] would do with `req`, changing nothing: the same checks
    /// and refusals, the count it would add, and the first and last numbers.
    pub fn preview_release(&self, req: &NewRelease) -> Result<ReleasePreview, Refusal> {
        let (class_ix, codes, named) = self.release_codes(req)?;
        let len = self.classes[class_ix].def.serial_len();
        let serial = |code: &u32| Serial::from_pool_code(*code, len);
        Ok(ReleasePreview {
            total: codes.len() as u64,
            named,
            sample: codes
                .iter()
                .take(RELEASE_PREVIEW_SAMPLE)
                .map(serial)
                .collect(),
            last: codes.last().map(serial),
        })
    }

    /// Adds a release (R5.2). Its numbers appear at `opens_at_ms`; custom checks may take them
    /// from `custom_from_ms`. Numbers already in the pool are skipped. Returns (id, numbers added).
    pub fn add_release(
        &mut self,
        req: NewRelease,
        who: &str,
        now_ms: u64,
    ) -> Result<(u32, u64), Refusal> {
        let (class_ix, codes, _) = self.release_codes(&req)?;
        let id = self.next_release;
        self.next_release += 1;
        let label = if req.label.trim().is_empty() {
            match &req.source {
                ReleaseSource::Patterns(p) => p
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                ReleaseSource::Serials(s) => format!("{} listed numbers", s.len()),
            }
        } else {
            req.label.trim().to_string()
        };
        let rec = ReleaseRecord {
            id,
            class: req.class,
            label,
            opens_at_ms: req.opens_at_ms,
            custom_from_ms: req
                .custom_from_ms
                .unwrap_or(req.opens_at_ms)
                .max(req.opens_at_ms),
            source: req.source,
            created_at_ms: now_ms,
            withdrawn: false,
        };
        let total = codes.len() as u64;
        self.classes[class_ix].add_segment(id, codes);
        self.schedule_release(&rec);
        self.effects
            .records
            .push(Record::Release(Box::new(rec.clone())));
        self.audit(
            now_ms,
            who,
            "release",
            None,
            None,
            format!("release {id} ({}): {total} numbers", rec.label),
        );
        self.releases.push(rec);
        self.run_release_events(now_ms);
        Ok((id, total))
    }

    fn schedule_release(&mut self, rec: &ReleaseRecord) {
        self.release_events.insert((rec.opens_at_ms, rec.id));
        self.release_events.insert((rec.custom_from_ms, rec.id));
    }

    fn run_release_events(&mut self, now_ms: u64) {
        while let Some(&(at, id)) = self.release_events.first() {
            if at > now_ms {
                break;
            }
            self.release_events.pop_first();
            let Some(rec) = self.releases.iter().find(|r| r.id == id) else {
                continue;
            };
            let (opens, custom, class) = (rec.opens_at_ms, rec.custom_from_ms, rec.class.clone());
            let Some(c) = self.class_index(&class) else {
                continue;
            };
            let Some(seg) = self.classes[c].segment_index(id) else {
                continue;
            };
            if opens <= now_ms {
                self.classes[c].open_segment(seg);
            }
            if custom <= now_ms {
                self.classes[c].open_segment_for_custom(seg);
            }
        }
    }

    /// Withdraws a release's numbers that are not held or claimed (R5.2). Returns how many left.
    pub fn withdraw_release(&mut self, id: u32, who: &str, now_ms: u64) -> Result<u64, Refusal> {
        let pos = self
            .releases
            .iter()
            .position(|r| r.id == id)
            .ok_or(Refusal::UnknownRelease)?;
        if self.releases[pos].withdrawn {
            return Ok(0);
        }
        let c = self
            .class_index(&self.releases[pos].class)
            .ok_or(Refusal::UnknownRelease)?;
        let seg = self.classes[c]
            .segment_index(id)
            .ok_or(Refusal::UnknownRelease)?;
        let n = self.classes[c].withdraw_segment(seg) as u64;
        self.releases[pos].withdrawn = true;
        let rec = self.releases[pos].clone();
        self.effects.records.push(Record::Release(Box::new(rec)));
        self.audit(
            now_ms,
            who,
            "withdraw_release",
            None,
            None,
            format!("release {id}: {n} numbers"),
        );
        Ok(n)
    }

    /// Finds a released number by what was typed, in any class.
    fn locate(&self, text: &str) -> Result<(usize, u32, Serial), Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
        self.classes
            .iter()
            .enumerate()
            .find_map(|(c, cp)| cp.find(serial).map(|idx| (c, idx, serial)))
            .ok_or(Refusal::UnknownNumber)
    }

    /// Withdraws one available (or not yet opened) number (R5.2).
    pub fn withdraw_number(
        &mut self,
        text: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<Serial, Refusal> {
        let (c, idx, serial) = self.locate(text)?;
        let status = self.classes[c].status(idx);
        if !matches!(status, Status::Pending | Status::Available) {
            return Err(Refusal::NumberBusy {
                status: status_name(status),
            });
        }
        self.classes[c].set_status(idx, Status::Withdrawn);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state: Some(NumberState::Withdrawn),
        });
        self.audit(
            now_ms,
            who,
            "withdraw_number",
            None,
            Some(serial),
            String::new(),
        );
        Ok(serial)
    }

    // ------------------------------------------------------------------------------------------
    // Applications

    /// Opens an application with the office's quotas (R4.2). The engine has checked the VIN,
    /// voucher and that the VIN is free.
    pub fn create_application(&mut self, req: NewApplication, now_ms: u64) -> Result<u64, Refusal> {
        let (class_ix, group) = self.eligible(&req.class, req.energy)?;
        if req.notice_version != self.config.notice.version {
            return Err(Refusal::NoticeNotAccepted {
                expected: self.config.notice.version.clone(),
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let app = self.new_app(seq, req, class_ix, group, now_ms, false);
        self.persist(&app);
        self.audit(
            now_ms,
            &user_who(&app),
            "apply",
            Some(seq),
            None,
            format!("vin {}", app.rec.vin),
        );
        self.apps.insert(seq, app);
        Ok(seq)
    }

    /// Opens a practice application (R4.13): the same flow against the live availability, holding
    /// and claiming nothing, keeping nothing. Identity counts as verified.
    pub fn create_practice(
        &mut self,
        user: &str,
        class: &str,
        energy: Energy,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let (class_ix, group) = self.eligible(class, energy)?;
        while self.practice_order.len() >= PRACTICE_APPS_MAX {
            if let Some(old) = self.practice_order.pop_front() {
                if let Some(mut app) = self.apps.remove(&old) {
                    self.set_hold_deadline(&mut app);
                    if let Some(d) = app.hold_deadline {
                        self.hold_deadlines.remove(&(d, old));
                    }
                }
            }
        }
        let seq = self.next_practice_seq;
        self.next_practice_seq += 1;
        let req = NewApplication {
            user: user.to_string(),
            phone: String::new(),
            vin: String::new(),
            class: class.to_string(),
            energy,
            notice_version: self.config.notice.version.clone(),
        };
        let mut app = self.new_app(seq, req, class_ix, group, now_ms, true);
        app.rec.verified_at_ms =
            Some(now_ms.saturating_sub(self.config.rules.custom_min_interval_ms));
        app.rec.verified_until_ms = Some(now_ms + IDENTITY_VALID_MS);
        self.apps.insert(seq, app);
        self.practice_order.push_back(seq);
        Ok(seq)
    }

    fn eligible(&self, class: &str, energy: Energy) -> Result<(usize, usize), Refusal> {
        let class_ix = self
            .class_index(class)
            .filter(|_| self.config.classes.iter().any(|c| c == class))
            .ok_or_else(|| {
                Refusal::VehicleNotEligible(format!("the office does not serve class {class}"))
            })?;
        let group = self.classes[class_ix]
            .def
            .group_for(energy)
            .ok_or_else(|| {
                Refusal::VehicleNotEligible(format!(
                    "a {} vehicle cannot have a {class} plate",
                    energy.as_str()
                ))
            })?;
        Ok((class_ix, group))
    }

    fn new_app(
        &self,
        seq: u64,
        req: NewApplication,
        class_ix: usize,
        group: usize,
        now_ms: u64,
        practice: bool,
    ) -> Application {
        let rules = &self.config.rules;
        Application {
            rec: AppRecord {
                seq,
                user: req.user,
                phone: req.phone,
                vin: req.vin,
                class: req.class,
                energy: req.energy,
                notice_version: req.notice_version,
                created_at_ms: now_ms,
                custom_left: rules.custom_quota,
                random_left: rules.random_quota,
                last_check_at_ms: None,
                last_draw_at_ms: None,
                verified_at_ms: None,
                verified_until_ms: None,
                state: AppState::Confirmed,
                claim: None,
                closed_at_ms: None,
            },
            class_ix,
            group,
            practice,
            holds: Holds::default(),
            hold_deadline: None,
        }
    }

    /// Records a successful identity verification (R4.4): selection calls are accepted for
    /// [`IDENTITY_VALID_MS`].
    pub fn verify_identity(&mut self, seq: u64, now_ms: u64) -> Result<u64, Refusal> {
        let app = self.apps.get_mut(&seq).ok_or(Refusal::UnknownApplication)?;
        if !app.rec.state.selecting() {
            return Err(refuse_state(app.rec.state));
        }
        let until = now_ms + IDENTITY_VALID_MS;
        app.rec.verified_at_ms = Some(now_ms);
        app.rec.verified_until_ms = Some(until);
        let (progress, who) = (app.rec.progress(), user_who(app));
        if !app.practice {
            self.effects
                .records
                .push(Record::Progress { seq, progress });
        }
        self.audit(
            now_ms,
            &who,
            "verify_identity",
            Some(seq),
            None,
            String::new(),
        );
        Ok(until)
    }

    /// The application as it stands at `now_ms` (holds past their expiry are not shown).
    pub fn application(&self, seq: u64, now_ms: u64) -> Option<AppView> {
        let app = self.apps.get(&seq)?;
        Some(self.view(app, now_ms))
    }

    fn view(&self, app: &Application, now_ms: u64) -> AppView {
        let cp = &self.classes[app.class_ix];
        let h = &app.holds;
        let batch = (!h.batch.is_empty() && h.batch_expires_at_ms > now_ms).then(|| HoldView {
            serials: h.batch.iter().map(|&i| cp.serial(i)).collect(),
            expires_at_ms: h.batch_expires_at_ms,
        });
        let candidates =
            (!h.candidates.is_empty() && h.candidates_expire_at_ms > now_ms).then(|| HoldView {
                serials: h.candidates.iter().map(|&i| cp.serial(i)).collect(),
                expires_at_ms: h.candidates_expire_at_ms,
            });
        AppView {
            record: app.rec.clone(),
            practice: app.practice,
            batch_picked: batch.is_some() && h.batch_picked,
            batch,
            candidates,
            next_check_at_ms: self.next_check_at(app),
            next_draw_at_ms: self.next_draw_at(app),
        }
    }

    /// If a draw or custom check of this application now falls in the opening window of a
    /// release of its class (the first `opening_window_ms` after it opens, or after its
    /// random-only period ends), the end of that window. Requests inside it are served in random
    /// order, not arrival order, so a script firing at the opening instant gains nothing over a
    /// person clicking a moment later.
    pub fn opening_window_end(&self, seq: u64, now_ms: u64) -> Option<u64> {
        let window = self.config.rules.opening_window_ms;
        if window == 0 {
            return None;
        }
        let app = self.apps.get(&seq)?;
        let class = &self.classes[app.class_ix].def.name;
        self.releases
            .iter()
            .filter(|r| &r.class == class && !r.withdrawn)
            .flat_map(|r| [r.opens_at_ms, r.custom_from_ms])
            .filter(|&t| t <= now_ms && now_ms < t + window)
            .map(|t| t + window)
            .max()
    }

    /// The user an application belongs to (ownership checks, I7).
    pub fn application_user(&self, seq: u64) -> Option<&str> {
        self.apps.get(&seq).map(|a| a.rec.user.as_str())
    }

    /// Every application of this office (operators' look-ups and tests).
    pub fn applications(&self) -> impl Iterator<Item = &AppRecord> + '_ {
        self.apps.values().filter(|a| !a.practice).map(|a| &a.rec)
    }

    /// The application holding, or having claimed or been issued, a number.
    pub fn owner_of(&self, text: &str) -> Option<u64> {
        let (c, idx, _) = self.locate(text).ok()?;
        self.owners.get(&(c as u8, idx)).copied()
    }

    fn next_check_at(&self, app: &Application) -> u64 {
        let since = app
            .rec
            .last_check_at_ms
            .or(app.rec.verified_at_ms)
            .unwrap_or(0);
        since + self.config.rules.custom_min_interval_ms
    }

    /// When the next draw may be made (R4.14): `random_min_interval_ms` after the last one.
    fn next_draw_at(&self, app: &Application) -> u64 {
        app.rec
            .last_draw_at_ms
            .map_or(0, |at| at + self.config.rules.random_min_interval_ms)
    }

    /// Takes an application out for a selection step after the common checks: it exists, may
    /// still select, selection is open, identity is verified. Its expired holds are dropped first.
    fn begin_selection(&mut self, seq: u64, now_ms: u64) -> Result<Application, Refusal> {
        let mut app = self.apps.remove(&seq).ok_or(Refusal::UnknownApplication)?;
        self.expire_holds(&mut app, now_ms);
        let check = self.selection_allowed(&app, now_ms);
        if let Err(e) = check {
            self.apps.insert(seq, app);
            return Err(e);
        }
        Ok(app)
    }

    fn selection_allowed(&self, app: &Application, now_ms: u64) -> Result<(), Refusal> {
        if !app.rec.state.selecting() {
            return Err(refuse_state(app.rec.state));
        }
        let rules = &self.config.rules;
        if rules.maintenance {
            return Err(Refusal::SelectionClosed {
                reopens_at_ms: None,
            });
        }
        if let Some(hours) = &rules.service_hours {
            if !hours.is_open(now_ms) {
                return Err(Refusal::SelectionClosed {
                    reopens_at_ms: Some(hours.next_change_ms(now_ms)),
                });
            }
        }
        if app
            .rec
            .verified_until_ms
            .is_none_or(|until| until <= now_ms)
        {
            return Err(Refusal::IdentityNotVerified);
        }
        Ok(())
    }

    fn finish(&mut self, app: Application) {
        self.apps.insert(app.rec.seq, app);
    }

    /// Checks one typed number against the class, the vehicle's energy group and the office's
    /// composition rules (R2.3, R2.4). Costs nothing when it fails.
    fn validate_custom(
        &self,
        app: &Application,
        index: usize,
        text: &str,
    ) -> Result<Serial, Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index, error })?;
        let cp = &self.classes[app.class_ix];
        let def = &cp.def;
        let expected = def.serial_len();
        if serial.len() != expected {
            return Err(Refusal::InvalidPlate {
                index,
                error: PlateError::WrongLength {
                    position: serial.len().min(expected) + 1,
                    expected,
                    found: serial.len(),
                },
            });
        }
        if let Some(p) = def.shape.first_mismatch(serial) {
            return Err(Refusal::InvalidPlate {
                index,
                error: PlateError::NotInClass {
                    position: p + 1,
                    found: crate::plate::index_char(serial.index_at(p)),
                    reason: format!(
                        "{} numbers have one of {} here",
                        def.name,
                        def.shape.at(p).to_chars()
                    ),
                },
            });
        }
        let group = &def.groups[app.group];
        if !group.pattern.matches(serial) {
            return Err(Refusal::NotAllowed {
                index,
                serial: serial.to_string(),
                reason: format!(
                    "a {} vehicle takes numbers of the shape {}",
                    app.rec.energy.as_str(),
                    group.pattern
                ),
            });
        }
        cp.composition()
            .check(serial)
            .map_err(|e| Refusal::NotAllowed {
                index,
                serial: serial.to_string(),
                reason: e.to_string(),
            })?;
        Ok(serial)
    }

    /// A custom check (R4.5): 1..=custom_per_check numbers in order of preference; the first
    /// available one is claimed at once (debiting the numbers up to it); when none is, the check
    /// debits them all and says why each failed.
    pub fn custom_check(
        &mut self,
        seq: u64,
        plates: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Check, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.custom_check_inner(&mut app, plates, now_ms, rng);
        self.finish(app);
        result
    }

    fn custom_check_inner(
        &mut self,
        app: &mut Application,
        plates: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Check, Refusal> {
        let per_check = self.config.rules.custom_per_check;
        if plates.is_empty() {
            return Err(Refusal::BadRequest(
                "a check names at least one number".into(),
            ));
        }
        if plates.len() > per_check as usize {
            return Err(Refusal::TooManyNumbers { max: per_check });
        }
        let mut serials = Vec::with_capacity(plates.len());
        for (i, text) in plates.iter().enumerate() {
            let s = self.validate_custom(app, i, text)?;
            if serials.contains(&s) {
                return Err(Refusal::BadRequest(format!(
                    "plates[{i}]: {s} is named twice"
                )));
            }
            serials.push(s);
        }
        if app.rec.custom_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        if serials.len() as u32 > app.rec.custom_left {
            return Err(Refusal::TooManyNumbers {
                max: app.rec.custom_left,
            });
        }
        let next = self.next_check_at(app);
        if now_ms < next {
            return Err(Refusal::TooSoon {
                retry_after_ms: next - now_ms,
            });
        }
        // Validated: from here on the check happens and costs quota.
        app.rec.last_check_at_ms = Some(now_ms);
        app.rec.state = AppState::Selecting;
        let c = app.class_ix;
        let mut results = Vec::with_capacity(serials.len());
        for (i, &serial) in serials.iter().enumerate() {
            let reason = match self.classes[c].find(serial) {
                None => Unavailable::NotInPool,
                Some(idx) => {
                    let cp = &self.classes[c];
                    let mine =
                        app.holds.batch.contains(&idx) || app.holds.candidates.contains(&idx);
                    match cp.status(idx) {
                        Status::Available if cp.custom_open(idx) => {
                            app.rec.custom_left -= i as u32 + 1;
                            let claim = self.claim(app, idx, now_ms, rng, "custom_claim");
                            return Ok(Check::Claimed(claim));
                        }
                        Status::Held if mine => {
                            app.rec.custom_left -= i as u32 + 1;
                            let claim = self.claim(app, idx, now_ms, rng, "custom_claim");
                            return Ok(Check::Claimed(claim));
                        }
                        Status::Held => Unavailable::Held,
                        Status::Claimed | Status::Issued => Unavailable::Taken,
                        Status::Pending | Status::Withdrawn | Status::Available => {
                            Unavailable::NotInPool
                        }
                    }
                }
            };
            results.push((serial, reason));
        }
        app.rec.custom_left -= serials.len() as u32;
        let detail = results
            .iter()
            .map(|(s, r)| format!("{s}:{}", r.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        self.maybe_exhaust(app, now_ms);
        self.persist_progress(app);
        self.audit(
            now_ms,
            &user_who(app),
            "custom_check_failed",
            Some(app.rec.seq),
            None,
            detail,
        );
        Ok(Check::NoneAvailable {
            results,
            custom_left: app.rec.custom_left,
            next_check_at_ms: self.next_check_at(app),
        })
    }

    /// A random draw (R4.6): min(random_batch, available) numbers of the vehicle's group, uniformly
    /// at random (I5), held until `random_ttl`; the previous batch goes back (its candidate stays);
    /// the candidate countdown restarts. None available: refused, nothing debited.
    pub fn draw(
        &mut self,
        seq: u64,
        exclude_four: bool,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Draw, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.draw_inner(&mut app, exclude_four, now_ms, rng);
        self.finish(app);
        result
    }

    fn draw_inner(
        &mut self,
        app: &mut Application,
        exclude_four: bool,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Draw, Refusal> {
        if app.rec.random_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        let next = self.next_draw_at(app);
        if now_ms < next {
            return Err(Refusal::TooSoon {
                retry_after_ms: next - now_ms,
            });
        }
        // Validated: from here on the draw happens and starts the next interval, whether or not
        // it finds numbers (R4.14), so polling for numbers coming back gains nothing.
        if self.config.rules.random_min_interval_ms > 0 {
            app.rec.last_draw_at_ms = Some(now_ms);
        }
        let c = app.class_ix;
        let returning = if app.practice {
            0
        } else {
            app.holds
                .batch
                .iter()
                .filter(|&&i| self.classes[c].returns_to_pool(i))
                .filter(|&&i| !exclude_four || !self.classes[c].serial(i).contains_four())
                .count()
        };
        if self.classes[c].drawable(app.group, exclude_four) + returning == 0 {
            if self.config.rules.random_min_interval_ms > 0 {
                self.persist_progress(app);
            }
            return Err(Refusal::NotAvailable);
        }
        let rules = &self.config.rules;
        let (batch_size, ttl, cand_ttl) = (
            rules.random_batch as usize,
            rules.random_ttl_ms,
            rules.candidate_ttl_ms,
        );
        for idx in std::mem::take(&mut app.holds.batch) {
            self.unhold(app, idx);
        }
        let mut batch = Vec::with_capacity(batch_size);
        if app.practice {
            batch = self.classes[c].sample_without_taking(app.group, exclude_four, batch_size, rng);
        } else {
            while batch.len() < batch_size {
                let Some(idx) = self.classes[c].pick(app.group, exclude_four, rng) else {
                    break;
                };
                self.classes[c].set_status(idx, Status::Held);
                self.owners.insert((c as u8, idx), app.rec.seq);
                batch.push(idx);
            }
        }
        debug_assert!(!batch.is_empty());
        app.holds.batch = batch;
        app.holds.batch_expires_at_ms = now_ms + ttl;
        app.holds.batch_picked = false;
        if !app.holds.candidates.is_empty() {
            app.holds.candidates_expire_at_ms = now_ms + cand_ttl;
        }
        self.set_hold_deadline(app);
        app.rec.random_left -= 1;
        app.rec.state = AppState::Selecting;
        self.persist_progress(app);
        // Built straight from the holds: `view` would clone the whole application record on the
        // hottest path of an opening.
        let cp = &self.classes[c];
        let batch = HoldView {
            serials: app.holds.batch.iter().map(|&i| cp.serial(i)).collect(),
            expires_at_ms: app.holds.batch_expires_at_ms,
        };
        let candidates = (!app.holds.candidates.is_empty()).then(|| HoldView {
            serials: app.holds.candidates.iter().map(|&i| cp.serial(i)).collect(),
            expires_at_ms: app.holds.candidates_expire_at_ms,
        });
        let mut detail = String::with_capacity(batch.serials.len() * 9);
        for (i, s) in batch.serials.iter().enumerate() {
            if i > 0 {
                detail.push(' ');
            }
            let _ = write!(detail, "{s}");
        }
        self.audit(
            now_ms,
            &user_who(app),
            "draw",
            Some(app.rec.seq),
            None,
            detail,
        );
        Ok(Draw {
            batch,
            candidates,
            random_left: app.rec.random_left,
        })
    }

    /// Moves one number of the live batch into the candidate list (R4.6): one per batch; the
    /// candidate countdown restarts.
    pub fn pick_candidate(
        &mut self,
        seq: u64,
        text: &str,
        now_ms: u64,
    ) -> Result<HoldView, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = self.pick_inner(&mut app, text, now_ms);
        self.finish(app);
        result
    }

    fn pick_inner(
        &mut self,
        app: &mut Application,
        text: &str,
        now_ms: u64,
    ) -> Result<HoldView, Refusal> {
        let serial = Serial::parse_with_prefix(text, &self.config.prefix)
            .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
        let c = app.class_ix;
        let idx = self.classes[c].find(serial);
        let in_batch = idx.and_then(|i| app.holds.batch.iter().position(|&b| b == i));
        let Some(pos) = in_batch else {
            if idx.is_some_and(|i| app.holds.candidates.contains(&i)) {
                return Err(Refusal::Conflict(format!(
                    "{serial} is already a candidate"
                )));
            }
            if app.holds.batch.is_empty()
                && app.holds.batch_expires_at_ms != 0
                && app.holds.batch_expires_at_ms <= now_ms
            {
                return Err(Refusal::HoldExpired);
            }
            return Err(Refusal::NotHeld);
        };
        if app.holds.batch_picked {
            return Err(Refusal::AlreadyPicked);
        }
        let idx = app.holds.batch.remove(pos);
        app.holds.candidates.push(idx);
        app.holds.batch_picked = true;
        app.holds.candidates_expire_at_ms = now_ms + self.config.rules.candidate_ttl_ms;
        self.set_hold_deadline(app);
        self.audit(
            now_ms,
            &user_who(app),
            "pick_candidate",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        Ok(self.view(app, now_ms).candidates.unwrap_or(HoldView {
            serials: vec![serial],
            expires_at_ms: app.holds.candidates_expire_at_ms,
        }))
    }

    /// Confirms a live candidate (R4.6): it is claimed and every other hold goes back.
    pub fn claim_candidate(
        &mut self,
        seq: u64,
        text: &str,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Result<Claim, Refusal> {
        let mut app = self.begin_selection(seq, now_ms)?;
        let result = (|| {
            let serial = Serial::parse_with_prefix(text, &self.config.prefix)
                .map_err(|error| Refusal::InvalidPlate { index: 0, error })?;
            let idx = self.classes[app.class_ix].find(serial);
            match idx.filter(|i| app.holds.candidates.contains(i)) {
                Some(idx) => Ok(self.claim(&mut app, idx, now_ms, rng, "claim")),
                None if app.holds.candidates.is_empty()
                    && app.holds.candidates_expire_at_ms != 0
                    && app.holds.candidates_expire_at_ms <= now_ms =>
                {
                    Err(Refusal::HoldExpired)
                }
                None => Err(Refusal::NotHeld),
            }
        })();
        self.finish(app);
        result
    }

    /// Claims `idx` for `app`, releasing every other hold of the application.
    fn claim(
        &mut self,
        app: &mut Application,
        idx: u32,
        now_ms: u64,
        rng: &mut impl Rng,
        action: &str,
    ) -> Claim {
        let c = app.class_ix;
        let holds = std::mem::take(&mut app.holds);
        for other in holds.batch.into_iter().chain(holds.candidates) {
            if other != idx {
                self.unhold(app, other);
            }
        }
        self.set_hold_deadline(app);
        let serial = self.classes[c].serial(idx);
        let rules = &self.config.rules;
        let register_by_ms =
            calendar::register_by_ms(now_ms, rules.validity_working_days, &rules.holidays);
        let code: u32 = rng.random_range(0..100_000_000);
        let claim = Claim {
            serial,
            claimed_at_ms: now_ms,
            register_by_ms,
            voucher_serial: format!(
                "{}-{}-{}",
                self.id.to_uppercase(),
                calendar::local_date(now_ms).format("%Y%m%d"),
                app.rec.seq
            ),
            voucher_code: format!("{code:08}"),
            void: app.practice,
        };
        app.rec.claim = Some(claim.clone());
        app.rec.state = AppState::Claimed;
        if !app.practice {
            self.classes[c].set_status(idx, Status::Claimed);
            self.owners.insert((c as u8, idx), app.rec.seq);
            self.claim_deadlines.insert((register_by_ms, app.rec.seq));
            self.effects.records.push(Record::Number {
                class: self.classes[c].def.name.clone(),
                serial,
                state: Some(NumberState::Claimed { app: app.rec.seq }),
            });
            self.effects.events.push(Event::Claimed {
                app: app.rec.seq,
                phone: app.rec.phone.clone(),
                serial,
                register_by_ms,
            });
        }
        self.persist(app);
        self.audit(
            now_ms,
            &user_who(app),
            action,
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        claim
    }

    /// Puts a held number back into the pool.
    fn unhold(&mut self, app: &Application, idx: u32) {
        if app.practice {
            return;
        }
        let c = app.class_ix;
        debug_assert_eq!(self.owners.get(&(c as u8, idx)), Some(&app.rec.seq));
        self.owners.remove(&(c as u8, idx));
        self.classes[c].set_status(idx, Status::Available);
    }

    /// Drops holds past their expiry (I4) and marks the application exhausted if nothing is left.
    fn expire_holds(&mut self, app: &mut Application, now_ms: u64) {
        let h = &mut app.holds;
        let mut expired = Vec::new();
        if !h.batch.is_empty() && h.batch_expires_at_ms <= now_ms {
            expired.append(&mut h.batch);
        }
        if !h.candidates.is_empty() && h.candidates_expire_at_ms <= now_ms {
            expired.append(&mut h.candidates);
        }
        for idx in expired {
            self.unhold(app, idx);
        }
        self.set_hold_deadline(app);
        if self.maybe_exhaust(app, now_ms) {
            self.persist_progress(app);
        }
    }

    /// R4.7: both quotas spent and no live hold left.
    fn maybe_exhaust(&mut self, app: &mut Application, now_ms: u64) -> bool {
        if app.rec.state.selecting()
            && app.rec.custom_left == 0
            && app.rec.random_left == 0
            && app.holds.is_empty()
        {
            app.rec.state = AppState::Exhausted;
            app.rec.closed_at_ms = Some(now_ms);
            self.audit(
                now_ms,
                "system",
                "exhausted",
                Some(app.rec.seq),
                None,
                String::new(),
            );
            return true;
        }
        false
    }

    fn set_hold_deadline(&mut self, app: &mut Application) {
        let new = app.holds.deadline();
        if new != app.hold_deadline {
            if let Some(old) = app.hold_deadline {
                self.hold_deadlines.remove(&(old, app.rec.seq));
            }
            if let Some(d) = new {
                self.hold_deadlines.insert((d, app.rec.seq));
            }
            app.hold_deadline = new;
        }
    }

    // ------------------------------------------------------------------------------------------
    // After the claim (operators, deadlines)

    fn claimed_app(&mut self, text: &str) -> Result<(usize, u32, Serial, Application), Refusal> {
        let (c, idx, serial) = self.locate(text)?;
        let status = self.classes[c].status(idx);
        if status != Status::Claimed {
            return Err(Refusal::NumberBusy {
                status: status_name(status),
            });
        }
        let seq = *self
            .owners
            .get(&(c as u8, idx))
            .ok_or(Refusal::UnknownNumber)?;
        let app = self.apps.remove(&seq).ok_or(Refusal::UnknownApplication)?;
        Ok((c, idx, serial, app))
    }

    /// The office registers the pre-selected number (R4.10): it is issued and leaves the pool.
    pub fn register(&mut self, text: &str, who: &str, now_ms: u64) -> Result<u64, Refusal> {
        let (c, idx, serial, mut app) = self.claimed_app(text)?;
        self.classes[c].set_status(idx, Status::Issued);
        if let Some(claim) = &app.rec.claim {
            self.claim_deadlines
                .remove(&(claim.register_by_ms, app.rec.seq));
        }
        app.rec.state = AppState::Issued;
        app.rec.closed_at_ms = Some(now_ms);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state: Some(NumberState::Issued { app: app.rec.seq }),
        });
        self.persist(&app);
        self.audit(
            now_ms,
            who,
            "register",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        let seq = app.rec.seq;
        self.finish(app);
        Ok(seq)
    }

    /// The office voids a live pre-selection at the owner's request (R4.11): the number returns,
    /// no blacklist.
    pub fn void(
        &mut self,
        text: &str,
        reason: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let (c, idx, serial, mut app) = self.claimed_app(text)?;
        self.unclaim(&mut app, c, idx, serial, AppState::Voided, now_ms);
        self.audit(
            now_ms,
            who,
            "void",
            Some(app.rec.seq),
            Some(serial),
            reason.to_string(),
        );
        let seq = app.rec.seq;
        self.finish(app);
        Ok(seq)
    }

    fn lapse(&mut self, app: &mut Application, now_ms: u64) {
        if app.rec.state != AppState::Claimed {
            return;
        }
        let Some(serial) = app.rec.claim.as_ref().map(|c| c.serial) else {
            return;
        };
        let c = app.class_ix;
        let Some(idx) = self.classes[c].find(serial) else {
            return;
        };
        self.unclaim(app, c, idx, serial, AppState::Lapsed, now_ms);
        let until_ms = now_ms + self.config.rules.blacklist_days as u64 * DAY_MS;
        self.audit(
            now_ms,
            "system",
            "lapse",
            Some(app.rec.seq),
            Some(serial),
            String::new(),
        );
        self.effects.events.push(Event::Lapsed {
            app: app.rec.seq,
            user: app.rec.user.clone(),
            until_ms,
        });
    }

    fn unclaim(
        &mut self,
        app: &mut Application,
        c: usize,
        idx: u32,
        serial: Serial,
        to: AppState,
        now_ms: u64,
    ) {
        self.owners.remove(&(c as u8, idx));
        self.classes[c].set_status(idx, Status::Available);
        if let Some(claim) = &app.rec.claim {
            self.claim_deadlines
                .remove(&(claim.register_by_ms, app.rec.seq));
        }
        app.rec.state = to;
        app.rec.closed_at_ms = Some(now_ms);
        let state =
            (self.classes[c].status(idx) == Status::Withdrawn).then_some(NumberState::Withdrawn);
        self.effects.records.push(Record::Number {
            class: self.classes[c].def.name.clone(),
            serial,
            state,
        });
        self.persist(app);
    }

    // ------------------------------------------------------------------------------------------
    // Reads

    /// The keyboard for an application (R4.5, I8): per position, the characters enabled given
    /// what was entered (`None` where free). Only numbers a custom check could take count.
    pub fn keyboard(&self, seq: u64, entered: &[Option<u8>]) -> Result<Vec<CharSet>, Refusal> {
        let app = self.apps.get(&seq).ok_or(Refusal::UnknownApplication)?;
        let cp = &self.classes[app.class_ix];
        if entered.len() > cp.def.serial_len() {
            return Err(Refusal::BadRequest(format!(
                "entered has {} characters, a {} number {}",
                entered.len(),
                cp.def.name,
                cp.def.serial_len()
            )));
        }
        let mut full = entered.to_vec();
        full.resize(cp.def.serial_len(), None);
        Ok(cp.keyboard(app.group, &full))
    }

    /// Per class and release: how many numbers are in each state (pool notice, stats).
    pub fn stats(&self) -> Vec<ClassStats> {
        self.classes
            .iter()
            .map(|cp| ClassStats {
                class: cp.def.name.clone(),
                counts: Counts::from_array(cp.counts()),
                releases: cp
                    .segments()
                    .iter()
                    .filter_map(|s| {
                        let rec = self.releases.iter().find(|r| r.id == s.release)?;
                        Some(ReleaseStats {
                            id: s.release,
                            label: rec.label.clone(),
                            opens_at_ms: rec.opens_at_ms,
                            custom_from_ms: rec.custom_from_ms,
                            withdrawn: s.withdrawn,
                            total: (s.end - s.start) as u64,
                            counts: Counts::from_array(s.counts.map(|c| c as u64)),
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    /// Live holds and claims (metrics).
    pub fn live_holds(&self) -> usize {
        self.owners.len()
    }

    /// Heap bytes of the numbers and their indexes, for the memory benchmark.
    pub fn numbers_memory_bytes(&self) -> usize {
        self.classes
            .iter()
            .map(ClassPool::memory_bytes)
            .sum::<usize>()
    }

    // ------------------------------------------------------------------------------------------

    fn persist(&mut self, app: &Application) {
        if !app.practice {
            self.effects
                .records
                .push(Record::App(Box::new(app.rec.clone())));
        }
    }

    /// Persists only the selection fields ([`Record::Progress`]): for steps that changed nothing
    /// else of the application (no claim, no identity data).
    fn persist_progress(&mut self, app: &Application) {
        if !app.practice {
            self.effects.records.push(Record::Progress {
                seq: app.rec.seq,
                progress: app.rec.progress(),
            });
        }
    }

    fn audit(
        &mut self,
        now_ms: u64,
        who: &str,
        action: &str,
        app: Option<u64>,
        serial: Option<Serial>,
        detail: String,
    ) {
        if app.is_some_and(|s| s >= PRACTICE_SEQ_BASE) {
            return;
        }
        self.effects
            .records
            .push(Record::Audit(Box::new(AuditEntry {
                at_ms: now_ms,
                who: who.to_string(),
                action: action.to_string(),
                application: app,
                serial: serial.map(|s| s.to_string()),
                detail,
            })));
    }

    /// Asserts every invariant that holds between steps (tests call it after every step):
    /// I1 one holder per number, holds and claims agree with number states, conservation per
    /// release, indexes agree with states, and — at `now_ms` after a tick — no expired hold (I4).
    pub fn check_invariants(&self, now_ms: u64) {
        for cp in &self.classes {
            cp.check_invariants();
        }
        let mut held = vec![0u64; self.classes.len()];
        for app in self.apps.values() {
            let h = &app.holds;
            assert_eq!(
                app.hold_deadline,
                h.deadline(),
                "app {} deadline",
                app.rec.seq
            );
            if let Some(d) = app.hold_deadline {
                assert!(self.hold_deadlines.contains(&(d, app.rec.seq)));
                assert!(d > now_ms, "app {} holds past expiry (I4)", app.rec.seq);
            }
            if !h.is_empty() {
                assert!(
                    app.rec.state.selecting(),
                    "app {} holds while {:?}",
                    app.rec.seq,
                    app.rec.state
                );
            }
            if app.practice {
                continue;
            }
            for &idx in h.batch.iter().chain(&h.candidates) {
                held[app.class_ix] += 1;
                assert_eq!(self.classes[app.class_ix].status(idx), Status::Held);
                assert_eq!(
                    self.owners.get(&(app.class_ix as u8, idx)),
                    Some(&app.rec.seq),
                    "I1"
                );
            }
            let mut seen = h.batch.clone();
            seen.extend(&h.candidates);
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(
                seen.len(),
                h.batch.len() + h.candidates.len(),
                "a number held twice by one app"
            );
            match (&app.rec.state, &app.rec.claim) {
                (AppState::Claimed | AppState::Issued, Some(claim)) => {
                    let cp = &self.classes[app.class_ix];
                    let idx = cp.find(claim.serial).expect("claimed number is released");
                    let want = if app.rec.state == AppState::Claimed {
                        Status::Claimed
                    } else {
                        Status::Issued
                    };
                    assert_eq!(cp.status(idx), want);
                    assert_eq!(
                        self.owners.get(&(app.class_ix as u8, idx)),
                        Some(&app.rec.seq)
                    );
                    if app.rec.state == AppState::Claimed {
                        assert!(self
                            .claim_deadlines
                            .contains(&(claim.register_by_ms, app.rec.seq)));
                    }
                }
                (AppState::Claimed | AppState::Issued, None) => panic!("claimed without a claim"),
                _ => {}
            }
        }
        for (c, cp) in self.classes.iter().enumerate() {
            let counts = Counts::from_array(cp.counts());
            assert_eq!(
                counts.held, held[c],
                "held numbers of {} agree with holds",
                cp.def.name
            );
            assert_eq!(
                counts.total(),
                cp.len() as u64,
                "conservation in {}",
                cp.def.name
            );
            let owned = self.owners.keys().filter(|k| k.0 as usize == c).count() as u64;
            assert_eq!(
                owned,
                counts.held + counts.claimed + counts.issued,
                "owners of {}",
                cp.def.name
            );
        }
        if let Some(&(at, _)) = self.release_events.first() {
            assert!(at > now_ms, "release event past due");
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "not yet open",
        Status::Available => "available",
        Status::Held => "held",
        Status::Claimed => "claimed",
        Status::Issued => "issued",
        Status::Withdrawn => "withdrawn",
    }
}

fn refuse_state(state: AppState) -> Refusal {
    match state {
        AppState::Exhausted => Refusal::Exhausted,
        other => Refusal::WrongState {
            state: other.as_str(),
        },
    }
}
