//! One office's plate pool as a pure state machine (SPEC §4–§5).
//!
//! No clock, no IO, no actix in here: every call takes `now_ms` (and an RNG where chance is
//! involved), changes memory, and leaves the records to persist and the events for other parts of
//! the system in [`OfficePool::take_effects`]. [`OfficePool::next_deadline_ms`] says when
//! [`OfficePool::tick`] must run next. A refused call returns a [`Refusal`] and changes nothing.
//! That is what makes deterministic tests, the model-checking test and recovery by replay possible.

mod application;
mod candidates;
mod claim;
mod configure;
mod custom;
mod draw;
mod holds;
mod invariants;
pub mod numbers;
mod reads;
mod registration;
mod release;
mod restore;
mod selection;
mod settled;
mod shift;
mod withdraw;

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use serde::Serialize;

use crate::class::{Energy, PlateClass};
use crate::config::OfficeConfig;
use crate::outcome::{Refusal, Unavailable};
use crate::plate::Serial;
use crate::record::{AppRecord, AppState, AuditEntry, Claim, Record, ReleaseRecord, ReleaseSource};
use numbers::{ClassPool, Status, STATUS_COUNT};
pub use restore::OfficeRecords;
pub use settled::SettledRecords;

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

/// One office's pool: numbers of every class, releases, applications (the live ones only when
/// settled ones are kept in a store, see `settled.rs`).
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
    /// Who holds or claimed each number that is held, claimed or issued: (class, index) → app
    /// (issued ones only while their application is in memory).
    owners: FxHashMap<(u8, u32), u64>,
    hold_deadlines: BTreeSet<(u64, u64)>,
    claim_deadlines: BTreeSet<(u64, u64)>,
    /// Release openings and ends of random-only periods still to come: (instant, release id).
    release_events: BTreeSet<(u64, u32)>,
    effects: Effects,
    /// Where settled applications are read back from, when they leave memory.
    settled_records: Option<Box<dyn SettledRecords>>,
    /// Applications settled by the steps since [`OfficePool::take_settled`].
    settled: Vec<u64>,
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
            settled_records: None,
            settled: Vec::new(),
        };
        pool.sync_classes();
        Ok(pool)
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

    fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.def.name == name)
    }

    /// Served classes, in configuration order.
    pub fn class_names(&self) -> Vec<String> {
        self.config.classes.clone()
    }

    fn finish(&mut self, app: Application) {
        self.apps.insert(app.rec.seq, app);
    }

    fn persist(&mut self, app: &Application) {
        self.note_if_settled(app);
        if !app.practice {
            self.effects
                .records
                .push(Record::App(Box::new(app.rec.clone())));
        }
    }

    /// Persists only the selection fields ([`Record::Progress`]): for steps that changed nothing
    /// else of the application (no claim, no identity data).
    fn persist_progress(&mut self, app: &Application) {
        self.note_if_settled(app);
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
