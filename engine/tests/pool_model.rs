//! Seeded random operations against the pure pool, checked step by step against a plain model.
//!
//! The model is a few maps: which application holds or claimed which number, each application's
//! quotas, holds and deadlines, each release's numbers. Every operation is predicted by the model
//! (refusal, answer, quota debit, records and events) and compared; the pool's own
//! `check_invariants` runs after every step; every ten steps the counts per release and class are
//! compared (conservation), periodically every number's owner and every application (I1, I3), the
//! keyboard is compared with a brute-force scan (I8), and the records persisted so far are
//! replayed through `OfficePool::restore` (I9).
//!
//! One seed is one small office (a few hundred numbers, up to `APPS_MAX` applications, about
//! `SELECTING_TARGET` selecting at once so that they contend); seeds follow one another until
//! `STEPS_MIN` steps are done. Every step advances the fake clock (mostly by a second or so,
//! sometimes past a hold's life, rarely by days so claims lapse), usually ticks, does one operation
//! and ticks again.
//!
//! Random draws are random: the model does not predict which numbers come out, only checks that
//! each was available to the application, fits its group and filter, and that the batch has
//! min(random_batch, available) numbers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{deadline_ms, local_ms, DAY_MS};
use platepool_engine::plate::{ALPHABET, ALPHABET_LEN};
use platepool_engine::pool::{
    Check, Counts, Effects, Event, NewApplication, OfficePool, OfficeRecords, SettledRecords,
    IDENTITY_VALID_MS,
};
use platepool_engine::record::{NumberState, Record};
use platepool_engine::rules::DenyRule;
use platepool_engine::{
    AppRecord, AppState, CharSet, Energy, OfficeConfig, Pattern, PlateClass, Refusal,
    ReleaseRecord, Serial, Unavailable,
};

/// Seeds are taken from here on until the runs have made `STEPS_MIN` steps.
const FIRST_SEED: u64 = 1_000;
const STEPS_MIN: u64 = 100_000;
const STEPS_PER_SEED_MAX: usize = 20_000;
/// Replay through `restore` this often, and at the end of each seed's run.
const REPLAY_EVERY: usize = 2_000;
/// Live (selecting) applications the run keeps around; each may hold a batch and candidates.
const SELECTING_TARGET: usize = 30;
/// Applications per seed, all kinds; the pool checks each of them after every step.
const APPS_MAX: usize = 400;

#[test]
fn random_operations_agree_with_the_model() {
    let started = Instant::now();
    let mut total = Tally::default();
    let mut seed = FIRST_SEED;
    while total.steps < STEPS_MIN {
        let tally = Run::new(seed).go();
        total.add(&tally);
        seed += 1;
    }
    println!("{} seeds", seed - FIRST_SEED);
    println!("{total:#?}\nin {:?}", started.elapsed());
    // The run must have exercised what it claims to check.
    let must: [(&str, u64); 17] = [
        ("draws", total.draws),
        ("picks", total.picks),
        ("candidate claims", total.candidate_claims),
        ("custom claims", total.custom_claims),
        ("custom checks without a number", total.custom_none),
        ("checks naming a held number", total.reason_held),
        ("checks naming a taken number", total.reason_taken),
        ("holds expired", total.holds_expired),
        (
            "expired numbers drawn again (I4)",
            total.redrawn_after_expiry,
        ),
        ("lapses", total.lapses),
        ("exhaustions", total.exhaustions),
        ("registrations", total.registers),
        ("voids", total.voids),
        ("keyboard comparisons", total.keyboards),
        ("replays", total.replays),
        (
            "contended draws (not_available)",
            total.refusals.get("not_available").copied().unwrap_or(0),
        ),
        ("practice draws", total.practice_draws),
    ];
    for (what, n) in must {
        assert!(n > 0, "the run never saw {what}");
    }
    for code in [
        "too_soon",
        "quota_spent",
        "identity_not_verified",
        "hold_expired",
        "not_held",
        "exhausted",
    ] {
        assert!(
            total.refusals.contains_key(code),
            "the run never saw the refusal {code}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Available,
    Held(u64),
    Claimed(u64),
    Issued(u64),
    Withdrawn,
}

impl St {
    fn name(self) -> &'static str {
        match self {
            St::Pending => "not yet open",
            St::Available => "available",
            St::Held(_) => "held",
            St::Claimed(_) => "claimed",
            St::Issued(_) => "issued",
            St::Withdrawn => "withdrawn",
        }
    }
    fn owner(self) -> Option<u64> {
        match self {
            St::Held(a) | St::Claimed(a) | St::Issued(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct MNum {
    serial: Serial,
    release: u32,
    st: St,
    /// Allowed for custom checks by the office's composition rules.
    allowed: bool,
}

#[derive(Debug)]
struct MRelease {
    opens: u64,
    custom_from: u64,
    opened: bool,
    custom_open: bool,
    withdrawn: bool,
    nums: Vec<usize>,
}

#[derive(Debug, Clone)]
struct MApp {
    seq: u64,
    user: String,
    phone: String,
    class: usize,
    group: Pattern,
    practice: bool,
    /// Names only numbers it cannot have and never takes a candidate: it ends exhausted.
    picky: bool,
    custom_left: u32,
    random_left: u32,
    state: AppState,
    verified_at: Option<u64>,
    verified_until: Option<u64>,
    last_check: Option<u64>,
    batch: Vec<Serial>,
    batch_exp: u64,
    picked: bool,
    cands: Vec<Serial>,
    cand_exp: u64,
    claim: Option<(Serial, u64)>,
}

impl MApp {
    fn selecting(&self) -> bool {
        matches!(self.state, AppState::Confirmed | AppState::Selecting)
    }
    fn holds(&self, s: Serial) -> bool {
        self.batch.contains(&s) || self.cands.contains(&s)
    }
}

#[derive(Debug)]
struct Model {
    config: OfficeConfig,
    classes: Vec<PlateClass>,
    holidays: Vec<u64>,
    nums: Vec<MNum>,
    by_class: Vec<Vec<usize>>,
    index: HashMap<Serial, usize>,
    releases: BTreeMap<u32, MRelease>,
    next_release: u32,
    apps: BTreeMap<u64, MApp>,
    next_seq: u64,
    next_practice_seq: u64,
    /// Numbers that came back to the pool because a hold expired (to see them drawn again, I4).
    expired_back: HashSet<Serial>,
}

/// What a step is expected to persist and tell, besides its answer.
#[derive(Debug, Default)]
struct Expected {
    records: Vec<String>,
    events: Vec<Event>,
}

impl Model {
    fn new(config: OfficeConfig) -> Model {
        let catalog = common::catalog();
        let classes: Vec<PlateClass> = config
            .classes
            .iter()
            .map(|n| catalog.iter().find(|c| &c.name == n).cloned().unwrap())
            .collect();
        let holidays = config
            .rules
            .holidays
            .iter()
            .map(|d| common::day_of(*d))
            .collect();
        Model {
            by_class: vec![Vec::new(); classes.len()],
            config,
            classes,
            holidays,
            nums: Vec::new(),
            index: HashMap::new(),
            releases: BTreeMap::new(),
            next_release: 1,
            apps: BTreeMap::new(),
            next_seq: 1,
            next_practice_seq: platepool_engine::pool::PRACTICE_SEQ_BASE,
            expired_back: HashSet::new(),
        }
    }

    fn class_ix(&self, name: &str) -> usize {
        self.classes.iter().position(|c| c.name == name).unwrap()
    }

    /// May a custom check take this number at all, by the office's composition rules (R2.4)?
    fn allowed(&self, class: usize, s: Serial) -> bool {
        let shapes = &self.classes[class].default_custom_patterns;
        let text = s.to_string();
        let b = text.as_bytes();
        let triple = b
            .windows(3)
            .any(|w| w[0].is_ascii_digit() && w[0] == w[1] && w[1] == w[2]);
        shapes.iter().any(|p| p.matches(s)) && !triple
    }

    fn back(&mut self, n: usize) {
        let withdrawn = self.releases[&self.nums[n].release].withdrawn;
        self.nums[n].st = if withdrawn {
            St::Withdrawn
        } else {
            St::Available
        };
    }

    fn add_release(
        &mut self,
        class: usize,
        patterns: &[&str],
        opens: u64,
        custom_from: Option<u64>,
    ) -> (u32, u64) {
        let id = self.next_release;
        self.next_release += 1;
        let mut set = BTreeSet::new();
        for p in patterns {
            set.extend(common::pattern(p).iter());
        }
        let mut nums = Vec::new();
        for s in set {
            if self.index.contains_key(&s) {
                continue;
            }
            let n = self.nums.len();
            let allowed = self.allowed(class, s);
            self.nums.push(MNum {
                serial: s,
                release: id,
                st: St::Pending,
                allowed,
            });
            self.index.insert(s, n);
            self.by_class[class].push(n);
            nums.push(n);
        }
        let count = nums.len() as u64;
        self.releases.insert(
            id,
            MRelease {
                opens,
                custom_from: custom_from.unwrap_or(opens).max(opens),
                opened: false,
                custom_open: false,
                withdrawn: false,
                nums,
            },
        );
        (id, count)
    }

    fn run_release_events(&mut self, now: u64) {
        let mut opening = Vec::new();
        for r in self.releases.values_mut() {
            if !r.opened && r.opens <= now {
                r.opened = true;
                opening.extend(r.nums.iter().copied());
            }
            if !r.custom_open && r.custom_from <= now {
                r.custom_open = true;
            }
        }
        for n in opening {
            if self.nums[n].st == St::Pending {
                self.nums[n].st = St::Available;
            }
        }
    }

    /// Drops the parts of an application's holds past their expiry; true if anything dropped.
    fn expire(&mut self, seq: u64, now: u64) -> bool {
        let mut app = self.apps.remove(&seq).unwrap();
        let mut gone = Vec::new();
        if !app.batch.is_empty() && app.batch_exp <= now {
            gone.append(&mut app.batch);
        }
        if !app.cands.is_empty() && app.cand_exp <= now {
            gone.append(&mut app.cands);
        }
        let dropped = !gone.is_empty();
        if !app.practice {
            for s in gone {
                let n = self.index[&s];
                assert_eq!(self.nums[n].st, St::Held(seq), "model: {s} held by {seq}");
                self.back(n);
                self.expired_back.insert(s);
            }
        }
        self.apps.insert(seq, app);
        dropped
    }

    /// R4.7. Returns true when the application became exhausted now.
    fn maybe_exhaust(&mut self, seq: u64) -> bool {
        let app = self.apps.get_mut(&seq).unwrap();
        if app.selecting()
            && app.custom_left == 0
            && app.random_left == 0
            && app.batch.is_empty()
            && app.cands.is_empty()
        {
            app.state = AppState::Exhausted;
            return true;
        }
        false
    }

    fn exhaust_records(&self, seq: u64, exp: &mut Expected) {
        if !self.apps[&seq].practice {
            exp.records.push(format!("app {seq} exhausted"));
            exp.records.push("audit exhausted".into());
        }
    }

    /// Everything due: releases open, holds expire, claims lapse.
    fn tick(&mut self, now: u64, exp: &mut Expected, tally: &mut Tally) {
        self.run_release_events(now);
        let hold_due = |a: &MApp| {
            (!a.batch.is_empty() && a.batch_exp <= now)
                || (!a.cands.is_empty() && a.cand_exp <= now)
        };
        let claim_due = |a: &MApp| {
            a.state == AppState::Claimed && !a.practice && a.claim.is_some_and(|c| c.1 <= now)
        };
        let due: Vec<u64> = self
            .apps
            .values()
            .filter(|a| hold_due(a) || claim_due(a))
            .map(|a| a.seq)
            .collect();
        for seq in due {
            if hold_due(&self.apps[&seq]) {
                self.expire(seq, now);
                tally.holds_expired += 1;
                if self.maybe_exhaust(seq) {
                    tally.exhaustions += 1;
                    self.exhaust_records(seq, exp);
                }
            }
            let a = &self.apps[&seq];
            if a.state == AppState::Claimed && !a.practice {
                let (serial, by) = a.claim.unwrap();
                if by <= now {
                    let n = self.index[&serial];
                    assert_eq!(self.nums[n].st, St::Claimed(seq));
                    self.back(n);
                    let back = number_back(self.nums[n].st);
                    let a = self.apps.get_mut(&seq).unwrap();
                    a.state = AppState::Lapsed;
                    exp.records.push(format!("number {serial} {back}"));
                    exp.records.push(format!("app {seq} lapsed"));
                    exp.records.push("audit lapse".into());
                    exp.events.push(Event::Lapsed {
                        app: seq,
                        user: a.user.clone(),
                        until_ms: now + self.config.rules.blacklist_days as u64 * DAY_MS,
                    });
                    tally.lapses += 1;
                }
            }
        }
    }

    /// The common checks of a selection step (the application's own expired holds go first).
    fn begin(&mut self, seq: u64, now: u64, exp: &mut Expected) -> Result<(), Refusal> {
        if !self.apps.contains_key(&seq) {
            return Err(Refusal::UnknownApplication);
        }
        self.expire(seq, now);
        if self.maybe_exhaust(seq) {
            self.exhaust_records(seq, exp);
        }
        let app = &self.apps[&seq];
        if !app.selecting() {
            return Err(refuse_state(app.state));
        }
        if self.config.rules.maintenance {
            return Err(Refusal::SelectionClosed {
                reopens_at_ms: None,
            });
        }
        if app.verified_until.is_none_or(|u| u <= now) {
            return Err(Refusal::IdentityNotVerified);
        }
        Ok(())
    }

    fn next_check(&self, app: &MApp) -> u64 {
        app.last_check.or(app.verified_at).unwrap_or(0) + self.config.rules.custom_min_interval_ms
    }

    /// Numbers a draw for `app` could take now (not counting its own batch).
    fn drawable(&self, app: &MApp, no4: bool) -> Vec<Serial> {
        self.by_class[app.class]
            .iter()
            .map(|&n| &self.nums[n])
            .filter(|m| {
                m.st == St::Available
                    && app.group.matches(m.serial)
                    && !(no4 && common::has_four(m.serial))
            })
            .map(|m| m.serial)
            .collect()
    }

    /// Claims `s` for `seq`: every other hold goes back (R4.6), the number is claimed (real apps).
    fn claim(&mut self, seq: u64, s: Serial, now: u64, exp: &mut Expected, action: &str) -> u64 {
        let mut app = self.apps.remove(&seq).unwrap();
        let by = deadline_ms(now, self.config.rules.validity_working_days, &self.holidays);
        if !app.practice {
            for other in app.batch.iter().chain(&app.cands) {
                if *other != s {
                    let n = self.index[other];
                    assert_eq!(self.nums[n].st, St::Held(seq));
                    self.back(n);
                }
            }
            let n = self.index[&s];
            self.nums[n].st = St::Claimed(seq);
            exp.records.push(format!("number {s} claimed {seq}"));
            exp.records.push(format!("app {seq} claimed"));
            exp.records.push(format!("audit {action}"));
            exp.events.push(Event::Claimed {
                app: seq,
                phone: app.phone.clone(),
                serial: s,
                register_by_ms: by,
            });
        }
        app.batch.clear();
        app.cands.clear();
        app.batch_exp = 0;
        app.cand_exp = 0;
        app.picked = false;
        app.state = AppState::Claimed;
        app.claim = Some((s, by));
        self.apps.insert(seq, app);
        by
    }

    /// I8 by brute force: per position, the characters some number a custom check of `app` could
    /// take has there, with the other entered characters. `held_free`: count held numbers as back
    /// in the pool (a restored pool).
    fn keyboard(&self, app: &MApp, entered: &[Option<u8>], held_free: bool) -> Vec<CharSet> {
        let len = self.classes[app.class].serial_len();
        let mut out = vec![CharSet::EMPTY; len];
        let outside = entered
            .iter()
            .enumerate()
            .any(|(p, e)| e.is_some_and(|c| !app.group.at(p).contains(c)));
        if outside {
            return out;
        }
        for &n in &self.by_class[app.class] {
            let m = &self.nums[n];
            let rel = &self.releases[&m.release];
            let free = match m.st {
                St::Available => true,
                St::Held(_) => held_free && !rel.withdrawn,
                _ => false,
            };
            if !free || !rel.custom_open || !m.allowed || !app.group.matches(m.serial) {
                continue;
            }
            let idx = m.serial.indices();
            let misses: Vec<usize> = (0..len)
                .filter(|&p| {
                    entered
                        .get(p)
                        .copied()
                        .flatten()
                        .is_some_and(|c| c != idx[p])
                })
                .collect();
            match misses.as_slice() {
                [] => (0..len).for_each(|p| out[p].insert(idx[p])),
                [p] => out[*p].insert(idx[*p]),
                _ => {}
            }
        }
        out
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

fn number_back(st: St) -> &'static str {
    if st == St::Withdrawn {
        "withdrawn"
    } else {
        "back"
    }
}

/// Same refusal: same kind and the same figures (texts of messages are not compared).
fn same_refusal(a: &Refusal, b: &Refusal) -> bool {
    match (a, b) {
        (Refusal::InvalidPlate { index: x, .. }, Refusal::InvalidPlate { index: y, .. }) => x == y,
        (Refusal::NotAllowed { index: x, .. }, Refusal::NotAllowed { index: y, .. }) => x == y,
        (Refusal::BadRequest(_), Refusal::BadRequest(_)) => true,
        (Refusal::Conflict(_), Refusal::Conflict(_)) => true,
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Replaying the records (I9)

/// Settled applications read back from the journal, as an office reads them from its store.
#[derive(Debug)]
struct JournalRecords {
    apps: BTreeMap<u64, AppRecord>,
    numbers: BTreeMap<(String, Serial), NumberState>,
}

impl JournalRecords {
    fn of(j: &Journal) -> JournalRecords {
        JournalRecords {
            apps: j.apps.clone(),
            numbers: j.numbers.clone(),
        }
    }
}

impl SettledRecords for JournalRecords {
    fn application(&self, seq: u64) -> Result<Option<AppRecord>, String> {
        Ok(self.apps.get(&seq).cloned())
    }

    fn issued_to(&self, class: &str, serial: Serial) -> Result<Option<u64>, String> {
        match self.numbers.get(&(class.to_string(), serial)) {
            Some(NumberState::Issued { app }) => Ok(Some(*app)),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Clone)]
struct Journal {
    config: OfficeConfig,
    releases: BTreeMap<u32, ReleaseRecord>,
    numbers: BTreeMap<(String, Serial), NumberState>,
    apps: BTreeMap<u64, AppRecord>,
}

impl Journal {
    fn fold(&mut self, effects: &Effects) {
        for r in &effects.records {
            match r {
                Record::Config(c) => self.config = (**c).clone(),
                Record::Release(r) => {
                    self.releases.insert(r.id, (**r).clone());
                }
                Record::App(a) => {
                    self.apps.insert(a.seq, (**a).clone());
                }
                Record::Progress { seq, progress } => self
                    .apps
                    .get_mut(seq)
                    .expect("progress of a stored application")
                    .apply_progress(progress),
                Record::Number {
                    class,
                    serial,
                    state,
                } => match state {
                    Some(s) => {
                        self.numbers.insert((class.clone(), *serial), *s);
                    }
                    None => {
                        self.numbers.remove(&(class.clone(), *serial));
                    }
                },
                Record::Audit(_) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

#[derive(Debug, Default)]
struct Tally {
    steps: u64,
    draws: u64,
    practice_draws: u64,
    picks: u64,
    candidate_claims: u64,
    custom_claims: u64,
    custom_none: u64,
    reason_held: u64,
    reason_taken: u64,
    holds_expired: u64,
    redrawn_after_expiry: u64,
    lapses: u64,
    exhaustions: u64,
    registers: u64,
    voids: u64,
    keyboards: u64,
    replays: u64,
    releases: u64,
    refusals: BTreeMap<&'static str, u64>,
    by_op: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.steps += o.steps;
        self.draws += o.draws;
        self.practice_draws += o.practice_draws;
        self.picks += o.picks;
        self.candidate_claims += o.candidate_claims;
        self.custom_claims += o.custom_claims;
        self.custom_none += o.custom_none;
        self.reason_held += o.reason_held;
        self.reason_taken += o.reason_taken;
        self.holds_expired += o.holds_expired;
        self.redrawn_after_expiry += o.redrawn_after_expiry;
        self.lapses += o.lapses;
        self.exhaustions += o.exhaustions;
        self.registers += o.registers;
        self.voids += o.voids;
        self.keyboards += o.keyboards;
        self.replays += o.replays;
        self.releases += o.releases;
        for (k, v) in &o.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
        for (k, v) in &o.by_op {
            *self.by_op.entry(k.clone()).or_default() += v;
        }
    }
}

const WHO: &str = "operator:model";

/// Releases the operators may add during the run: (class, patterns).
const LATER_RELEASES: [(&str, &[&str]); 4] = [
    ("small", &["C00[0-4]#"]),
    ("small_new_energy", &["DC56[0-4]#"]),
    ("small", &["E00[0-4]#"]),
    ("small_new_energy", &["FB35[5-9]#"]),
];

struct Run {
    seed: u64,
    pool: OfficePool,
    model: Model,
    journal: Journal,
    rng: StdRng,
    pool_rng: StdRng,
    now: u64,
    later: usize,
    tally: Tally,
    step: usize,
    what: String,
    last_app: Option<u64>,
    /// Operations done (and ticks), to see whether a step found something to do.
    ops_done: u64,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut config = common::office();
        let r = &mut config.rules;
        r.custom_quota = 6;
        r.custom_per_check = 3;
        r.random_quota = 4;
        r.random_batch = 4;
        r.deny = vec![DenyRule::ThreeIdenticalDigits];
        r.holidays = ["2024-03-08", "2024-04-04", "2024-04-05", "2024-05-01"]
            .iter()
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
            .collect();
        let pool = OfficePool::new("model", config.clone(), common::catalog()).unwrap();
        let now = local_ms("2024-03-04T09:00");
        let mut run = Run {
            seed,
            pool,
            model: Model::new(config.clone()),
            journal: Journal {
                config,
                releases: BTreeMap::new(),
                numbers: BTreeMap::new(),
                apps: BTreeMap::new(),
            },
            rng: StdRng::seed_from_u64(seed),
            pool_rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9)),
            now,
            later: 0,
            tally: Tally::default(),
            step: 0,
            what: "setup".into(),
            last_app: None,
            ops_done: 0,
        };
        run.release("small", &["A00##", "A01[0-4]#"], now, None);
        run.release("small", &["B00[0-4]#"], now + 600_000, Some(now + DAY_MS));
        run.release("small_new_energy", &["DA12[0-5]#"], now, None);
        run.release("small_new_energy", &["FB35[0-4]#"], now + 3_600_000, None);
        run
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "seed {} step {} at {} ({}): {message}",
            self.seed,
            self.step,
            common::local_text(self.now),
            self.what
        )
    }

    /// Runs until the seed's applications are all created and nearly all done (or the step
    /// limit): the pool checks every application after every step, so a run stays small.
    fn go(mut self) -> Tally {
        for step in 0..STEPS_PER_SEED_MAX {
            self.step = step;
            self.advance_clock();
            if self.rng.random_bool(0.8) {
                self.what = "tick before".into();
                self.tick();
            }
            self.one_operation();
            self.what = "tick after".into();
            self.tick();
            self.pool.check_invariants(self.now);
            if step % 250 == 0 {
                self.compare_everything();
            } else if step % 10 == 0 {
                self.compare_counts();
            }
            if (step + 1) % REPLAY_EVERY == 0 {
                self.replay();
            }
            self.tally.steps += 1;
            if self.model.apps.len() >= APPS_MAX
                && self.model.apps.values().filter(|a| a.selecting()).count() < 3
            {
                break;
            }
        }
        self.compare_everything();
        self.replay();
        self.tally
    }

    fn advance_clock(&mut self) {
        let r: f64 = self.rng.random();
        let ms = if r < 0.70 {
            self.rng.random_range(0..1_000)
        } else if r < 0.92 {
            self.rng.random_range(1_000..8_000)
        } else if r < 0.99 {
            self.rng.random_range(8_000..100_000)
        } else if r < 0.999 {
            self.rng.random_range(120_000..1_200_000)
        } else {
            self.rng.random_range(6 * 3_600_000..3 * DAY_MS)
        };
        self.now += ms;
    }

    fn tick(&mut self) {
        let mut exp = Expected::default();
        self.model.tick(self.now, &mut exp, &mut self.tally);
        self.pool.tick(self.now);
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
    }

    /// The records and events of a step are exactly the expected ones; every application record
    /// is the live application; then they go into the journal.
    fn check_effects(&mut self, effects: &Effects, exp: &Expected) {
        self.ops_done += 1;
        let mut got: Vec<String> = effects.records.iter().map(summary).collect();
        let mut want = exp.records.clone();
        got.sort();
        want.sort();
        if got != want {
            self.fail(format!("records {got:?}, expected {want:?}"));
        }
        let mut got_events = effects.events.clone();
        let mut want_events = exp.events.clone();
        let key = |e: &Event| format!("{e:?}");
        got_events.sort_by_key(key);
        want_events.sort_by_key(key);
        if got_events != want_events {
            self.fail(format!("events {got_events:?}, expected {want_events:?}"));
        }
        for r in &effects.records {
            if let Record::App(a) = r {
                let live = self
                    .pool
                    .application(a.seq, self.now)
                    .expect("application read")
                    .unwrap();
                // Only the last record of an application must equal it; a step persists one.
                if live.record != **a {
                    self.fail(format!("persisted {a:?}, live {:?}", live.record));
                }
            }
        }
        self.journal.fold(effects);
    }

    fn refused(&mut self, r: &Refusal) {
        *self.tally.refusals.entry(r.code()).or_default() += 1;
        let op = self.what.split(' ').next().unwrap_or("").to_string();
        *self
            .tally
            .by_op
            .entry(format!("{op} {}", r.code()))
            .or_default() += 1;
    }

    /// Compares a pool answer with the model's refusal, if the model predicted one.
    fn expect_refusal<T: std::fmt::Debug>(&mut self, got: &Result<T, Refusal>, want: &Refusal) {
        match got {
            Err(r) if same_refusal(r, want) => self.refused(r),
            other => self.fail(format!("answered {other:?}, expected {want:?}")),
        }
    }

    // ---- choosing

    /// An application for the next step: often the one of the previous step (a citizen does a
    /// few things in a row), else one for which `want` holds, else a selecting one, rarely any.
    fn choose(&mut self, want: impl Fn(&MApp, u64) -> bool) -> Option<u64> {
        let now = self.now;
        if let Some(last) = self.last_app {
            let a = &self.model.apps[&last];
            if a.selecting() && want(a, now) && self.rng.random_bool(0.5) {
                return Some(last);
            }
        }
        let any = self.rng.random_bool(0.03);
        let mut seqs: Vec<u64> = self
            .model
            .apps
            .values()
            .filter(|a| any || (a.selecting() && want(a, now)))
            .map(|a| a.seq)
            .collect();
        if seqs.is_empty() && self.rng.random_bool(0.2) {
            seqs = self
                .model
                .apps
                .values()
                .filter(|a| a.selecting())
                .map(|a| a.seq)
                .collect();
        }
        if seqs.is_empty() {
            return None;
        }
        let seq = seqs[self.rng.random_range(0..seqs.len())];
        self.last_app = Some(seq);
        Some(seq)
    }

    /// A selecting application that would be refused for want of identity is mostly verified
    /// first, as a citizen would do (true: the verification was the step).
    fn verified_first(&mut self, seq: u64) -> bool {
        let a = &self.model.apps[&seq];
        if a.selecting()
            && a.verified_until.is_none_or(|u| u <= self.now)
            && self.rng.random_bool(0.85)
        {
            self.verify(seq);
            return true;
        }
        false
    }

    /// A released number of the class, optionally in one state.
    fn some_number(&mut self, class: usize, want: impl Fn(St) -> bool) -> Option<Serial> {
        let list = &self.model.by_class[class];
        if list.is_empty() {
            return None;
        }
        for _ in 0..60 {
            let n = list[self.rng.random_range(0..list.len())];
            if want(self.model.nums[n].st) {
                return Some(self.model.nums[n].serial);
            }
        }
        None
    }

    fn own_hold(&mut self, seq: u64, cands: bool) -> Option<Serial> {
        let a = &self.model.apps[&seq];
        let list = if cands { &a.cands } else { &a.batch };
        if list.is_empty() {
            return None;
        }
        Some(list[self.rng.random_range(0..list.len())])
    }

    /// A serial of the class's shape that was never released (letters no release uses).
    fn unreleased(&mut self, class: usize, group: &Pattern) -> Serial {
        let digits: String = (0..4)
            .map(|_| char::from(b'0' + self.rng.random_range(0..10u8)))
            .collect();
        let text = if class == 0 {
            format!("Z{digits}")
        } else {
            let first = group.at(0).iter().next().unwrap();
            format!("{}Z{digits}", char::from(ALPHABET[first as usize]))
        };
        common::serial(&text)
    }

    /// A number for a custom check of `seq`: available, held by others or itself, taken, not yet
    /// open, random-only, withdrawn, never released, not allowed by the rules, another group.
    fn custom_plate(&mut self, seq: u64) -> Serial {
        let (class, group) = {
            let a = &self.model.apps[&seq];
            (a.class, a.group.clone())
        };
        let picky = self.model.apps[&seq].picky;
        let k = if picky {
            [30, 55, 80][self.rng.random_range(0..3)]
        } else {
            self.rng.random_range(0..100)
        };
        let found = match k {
            0..30 => self.some_number(class, |_| true),
            30..45 => self.some_number(class, |s| matches!(s, St::Held(_))),
            45..55 => self
                .own_hold(seq, false)
                .or_else(|| self.own_hold(seq, true)),
            55..65 => self.some_number(class, |s| matches!(s, St::Claimed(_) | St::Issued(_))),
            65..80 => self.some_number(class, |s| s == St::Available),
            80..91 => Some(self.unreleased(class, &group)),
            91..94 => {
                // not allowed: three identical digits, or (small) a shape outside the rules
                let text = if class == 0 {
                    if self.rng.random_bool(0.5) {
                        "A0111".to_string()
                    } else {
                        "AB1C2".to_string()
                    }
                } else {
                    let first = group.at(0).iter().next().unwrap();
                    format!("{}0555{}", char::from(ALPHABET[first as usize]), 7)
                };
                Some(common::serial(&text))
            }
            _ => {
                if class == 1 {
                    // the other energy group
                    self.some_number(class, |_| true)
                        .filter(|s| !group.matches(*s))
                } else {
                    None
                }
            }
        };
        match found {
            Some(s) => s,
            None if picky => self.unreleased(class, &group),
            None => self
                .some_number(class, |_| true)
                .unwrap_or_else(|| self.unreleased(class, &group)),
        }
    }

    // ---- operations

    /// One operation; a choice that finds nothing to act on is made again.
    fn one_operation(&mut self) {
        let before = self.ops_done;
        self.random_operation();
        for _ in 0..5 {
            if self.ops_done > before {
                return;
            }
            if self.rng.random_bool(0.5) {
                self.op_draw();
            } else {
                self.op_custom();
            }
        }
        if self.ops_done == before {
            self.op_keyboard();
        }
    }

    fn random_operation(&mut self) {
        let selecting = self.model.apps.values().filter(|a| a.selecting()).count();
        if selecting < SELECTING_TARGET
            && self.model.apps.len() < APPS_MAX
            && self.rng.random_bool(0.3)
        {
            return self.op_new_app();
        }
        let k = self.rng.random_range(0..1000);
        match k {
            0..210 | 960..1000 => self.op_draw(),
            210..340 => self.op_pick(),
            340..440 => self.op_claim(),
            440..730 => self.op_custom(),
            730..860 => self.op_verify(),
            860..900 => self.op_register(),
            900..912 => self.op_void(),
            912..920 => self.op_withdraw_number(),
            920..922 => self.op_add_release(),
            922..925 => self.op_configure(),
            925 if self.rng.random_bool(0.05) => self.op_withdraw_release(),
            _ => self.op_keyboard(),
        }
    }

    fn release(&mut self, class: &str, patterns: &[&str], opens: u64, custom_from: Option<u64>) {
        self.what = format!("release {class} {patterns:?}");
        let c = self.model.class_ix(class);
        let (id, n) = self.model.add_release(c, patterns, opens, custom_from);
        self.model.run_release_events(self.now);
        let got = self.pool.add_release(
            common::release(class, patterns, opens, custom_from),
            WHO,
            self.now,
        );
        if got != Ok((id, n)) {
            self.fail(format!("answered {got:?}, expected {:?}", (id, n)));
        }
        self.tally.releases += 1;
        let effects = self.pool.take_effects();
        let exp = Expected {
            records: vec![format!("release {id}"), "audit release".into()],
            events: vec![],
        };
        self.check_effects(&effects, &exp);
    }

    fn op_add_release(&mut self) {
        if self.later >= LATER_RELEASES.len() {
            return self.op_keyboard();
        }
        let (class, patterns) = LATER_RELEASES[self.later];
        self.later += 1;
        let opens = if self.rng.random_bool(0.5) {
            self.now
        } else {
            self.now + self.rng.random_range(0..7_200_000)
        };
        let custom_from = self
            .rng
            .random_bool(0.5)
            .then(|| opens + self.rng.random_range(0..2 * DAY_MS));
        self.release(class, patterns, opens, custom_from);
    }

    fn op_withdraw_release(&mut self) {
        let ids: Vec<u32> = self.model.releases.keys().copied().collect();
        let id = ids[self.rng.random_range(0..ids.len())];
        self.what = format!("withdraw release {id}");
        let mut exp = Expected::default();
        let want = if self.model.releases[&id].withdrawn {
            0
        } else {
            let nums = self.model.releases[&id].nums.clone();
            let mut n = 0;
            for i in nums {
                if matches!(self.model.nums[i].st, St::Pending | St::Available) {
                    self.model.nums[i].st = St::Withdrawn;
                    n += 1;
                }
            }
            self.model.releases.get_mut(&id).unwrap().withdrawn = true;
            exp.records = vec![format!("release {id}"), "audit withdraw_release".into()];
            n
        };
        let got = self.pool.withdraw_release(id, WHO, self.now);
        if got != Ok(want) {
            self.fail(format!("answered {got:?}, expected {want}"));
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
    }

    fn op_configure(&mut self) {
        let mut config = self.model.config.clone();
        let r = &mut config.rules;
        match self.rng.random_range(0..6) {
            0 => r.maintenance = !r.maintenance && self.rng.random_bool(0.15),
            1 => r.custom_quota = [3, 6, 8][self.rng.random_range(0..3)],
            2 => r.random_quota = [2, 4, 5][self.rng.random_range(0..3)],
            _ => r.maintenance = false,
        }
        self.what = format!(
            "configure maintenance={} quotas {}/{}",
            r.maintenance, r.custom_quota, r.random_quota
        );
        self.pool.configure(config.clone(), WHO, self.now).unwrap();
        self.model.config = config;
        let effects = self.pool.take_effects();
        let exp = Expected {
            records: vec!["config".into(), "audit configure".into()],
            events: vec![],
        };
        self.check_effects(&effects, &exp);
    }

    fn op_new_app(&mut self) {
        let k = self.rng.random_range(0..100);
        let (class, energy) = match k {
            0..65 => (
                "small",
                [Energy::Fuel, Energy::Phev][self.rng.random_range(0..2)],
            ),
            65..80 => ("small_new_energy", Energy::Bev),
            _ => (
                "small_new_energy",
                [Energy::Phev, Energy::Fcev][self.rng.random_range(0..2)],
            ),
        };
        let practice = self.rng.random_bool(0.05);
        let c = self.model.class_ix(class);
        let def = &self.model.classes[c];
        let group = def.groups[def.group_for(energy).unwrap()].pattern.clone();
        let user = format!("u{}", self.model.apps.len() % 97);
        self.what = format!(
            "new {} {class} {energy:?}",
            if practice { "practice" } else { "application" }
        );
        let (custom_quota, random_quota, interval) = {
            let r = &self.model.config.rules;
            (r.custom_quota, r.random_quota, r.custom_min_interval_ms)
        };
        let mut app = MApp {
            seq: 0,
            user: user.clone(),
            phone: String::new(),
            class: c,
            group,
            practice,
            picky: self.rng.random_bool(0.3),
            custom_left: custom_quota,
            random_left: random_quota,
            state: AppState::Confirmed,
            verified_at: None,
            verified_until: None,
            last_check: None,
            batch: vec![],
            batch_exp: 0,
            picked: false,
            cands: vec![],
            cand_exp: 0,
            claim: None,
        };
        let mut exp = Expected::default();
        let seq = if practice {
            let seq = self
                .pool
                .create_practice(&user, class, energy, self.now)
                .unwrap();
            assert_eq!(seq, self.model.next_practice_seq);
            self.model.next_practice_seq += 1;
            app.verified_at = Some(self.now.saturating_sub(interval));
            app.verified_until = Some(self.now + IDENTITY_VALID_MS);
            seq
        } else {
            let req: NewApplication = common::application(&user, class, energy);
            app.phone = req.phone.clone();
            let seq = self.pool.create_application(req, self.now).unwrap();
            if seq != self.model.next_seq {
                self.fail(format!(
                    "application {seq}, expected {}",
                    self.model.next_seq
                ));
            }
            self.model.next_seq += 1;
            exp.records = vec![format!("app {seq} confirmed"), "audit apply".into()];
            seq
        };
        app.seq = seq;
        self.model.apps.insert(seq, app);
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    fn op_verify(&mut self) {
        let Some(seq) = self.choose(|a, now| a.verified_until.is_none_or(|u| u <= now + 60_000))
        else {
            return;
        };
        self.verify(seq);
    }

    fn verify(&mut self, seq: u64) {
        self.what = format!("verify {seq}");
        let mut exp = Expected::default();
        let app = &self.model.apps[&seq];
        let want = if app.selecting() {
            Ok(self.now + IDENTITY_VALID_MS)
        } else {
            Err(refuse_state(app.state))
        };
        let got = self.pool.verify_identity(seq, self.now);
        match (&got, &want) {
            (Ok(a), Ok(b)) if a == b => {
                let app = self.model.apps.get_mut(&seq).unwrap();
                app.verified_at = Some(self.now);
                app.verified_until = Some(*b);
                if !app.practice {
                    exp.records = vec![
                        format!("app {seq} {}", app.state.as_str()),
                        "audit verify_identity".into(),
                    ];
                }
            }
            (Err(_), Err(w)) => self.expect_refusal(&got, w),
            _ => self.fail(format!("answered {got:?}, expected {want:?}")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    fn op_draw(&mut self) {
        let Some(seq) = self.choose(|a, _| a.random_left > 0) else {
            return;
        };
        if self.verified_first(seq) {
            return;
        }
        let no4 = self.rng.random_bool(0.3);
        self.what = format!("draw {seq} no4={no4}");
        let mut exp = Expected::default();
        let predicted = self.predict_draw(seq, no4, &mut exp);
        let got = self.pool.draw(seq, no4, self.now, &mut self.pool_rng);
        match (predicted, got) {
            (Err(want), got) => self.expect_refusal(&got, &want),
            (Ok((size, drawable)), Ok(d)) => {
                let rules = self.model.config.rules.clone();
                let mut app = self.model.apps.remove(&seq).unwrap();
                let serials = d.batch.serials.clone();
                if serials.len() != size {
                    self.fail(format!(
                        "a batch of {}, expected min(batch, available) = {size}",
                        serials.len()
                    ));
                }
                let distinct: HashSet<Serial> = serials.iter().copied().collect();
                assert_eq!(distinct.len(), serials.len(), "a number twice in one batch");
                for s in &serials {
                    if !drawable.contains(s) {
                        self.fail(format!(
                            "drew {s}, which was not available to the application"
                        ));
                    }
                    if no4 && common::has_four(*s) {
                        self.fail(format!("drew {s} despite the digit-4 filter"));
                    }
                    if self.model.expired_back.contains(s) {
                        self.tally.redrawn_after_expiry += 1;
                    }
                }
                if !app.practice {
                    for s in &app.batch {
                        let n = self.model.index[s];
                        self.model.back(n);
                    }
                    for s in &serials {
                        let n = self.model.index[s];
                        self.model.nums[n].st = St::Held(seq);
                    }
                    exp.records.push(format!("app {seq} selecting"));
                    exp.records.push("audit draw".into());
                } else {
                    self.tally.practice_draws += 1;
                }
                app.batch = serials;
                app.batch_exp = self.now + rules.random_ttl_ms;
                app.picked = false;
                if !app.cands.is_empty() {
                    app.cand_exp = self.now + rules.candidate_ttl_ms;
                }
                app.random_left -= 1;
                app.state = AppState::Selecting;
                if d.random_left != app.random_left {
                    self.fail(format!(
                        "random_left {}, expected {}",
                        d.random_left, app.random_left
                    ));
                }
                self.model.apps.insert(seq, app);
                self.tally.draws += 1;
            }
            (Ok(_), Err(e)) => self.fail(format!("refused {e:?}, expected a draw")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    /// (batch size, the numbers it may contain) or the refusal.
    fn predict_draw(
        &mut self,
        seq: u64,
        no4: bool,
        exp: &mut Expected,
    ) -> Result<(usize, HashSet<Serial>), Refusal> {
        self.model.begin(seq, self.now, exp)?;
        let app = &self.model.apps[&seq];
        if app.random_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        let mut drawable: HashSet<Serial> = self.model.drawable(app, no4).into_iter().collect();
        if !app.practice {
            for s in &app.batch {
                let rel = &self.model.releases[&self.model.nums[self.model.index[s]].release];
                let filtered = no4 && common::has_four(*s);
                if !rel.withdrawn && !filtered {
                    drawable.insert(*s);
                }
            }
        }
        if drawable.is_empty() {
            return Err(Refusal::NotAvailable);
        }
        let size = (self.model.config.rules.random_batch as usize).min(drawable.len());
        Ok((size, drawable))
    }

    fn op_pick(&mut self) {
        let Some(seq) = self.choose(|a, now| !a.picky && !a.batch.is_empty() && a.batch_exp > now)
        else {
            return;
        };
        if self.verified_first(seq) {
            return;
        }
        let class = self.model.apps[&seq].class;
        let k = self.rng.random_range(0..100);
        let serial = match k {
            0..75 => self.own_hold(seq, false),
            75..85 => self.own_hold(seq, true),
            _ => None,
        }
        .or_else(|| self.some_number(class, |_| true));
        let Some(serial) = serial else { return };
        self.what = format!("pick {seq} {serial}");
        let mut exp = Expected::default();
        let want = self.predict_pick(seq, serial, &mut exp);
        let got = self.pool.pick_candidate(seq, &serial.to_string(), self.now);
        match (want, &got) {
            (Err(w), _) => self.expect_refusal(&got, &w),
            (Ok(()), Ok(view)) => {
                let cand_ttl = self.model.config.rules.candidate_ttl_ms;
                let app = self.model.apps.get_mut(&seq).unwrap();
                app.batch.retain(|s| *s != serial);
                app.cands.push(serial);
                app.picked = true;
                app.cand_exp = self.now + cand_ttl;
                let (cands, cand_exp, practice) = (app.cands.clone(), app.cand_exp, app.practice);
                if view.serials != cands || view.expires_at_ms != cand_exp {
                    self.fail(format!("candidates {view:?}, expected {cands:?}"));
                }
                if !practice {
                    exp.records.push("audit pick_candidate".into());
                }
                self.tally.picks += 1;
            }
            (Ok(()), Err(e)) => self.fail(format!("refused {e:?}, expected a pick")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    fn predict_pick(&mut self, seq: u64, s: Serial, exp: &mut Expected) -> Result<(), Refusal> {
        self.model.begin(seq, self.now, exp)?;
        let app = &self.model.apps[&seq];
        if app.batch.contains(&s) {
            return if app.picked {
                Err(Refusal::AlreadyPicked)
            } else {
                Ok(())
            };
        }
        if app.cands.contains(&s) {
            return Err(Refusal::Conflict(String::new()));
        }
        if app.batch.is_empty() && app.batch_exp != 0 && app.batch_exp <= self.now {
            return Err(Refusal::HoldExpired);
        }
        Err(Refusal::NotHeld)
    }

    fn op_claim(&mut self) {
        let Some(seq) = self.choose(|a, now| !a.picky && !a.cands.is_empty() && a.cand_exp > now)
        else {
            return;
        };
        if self.verified_first(seq) {
            return;
        }
        let class = self.model.apps[&seq].class;
        let k = self.rng.random_range(0..100);
        let serial = match k {
            0..80 => self.own_hold(seq, true),
            80..90 => self.own_hold(seq, false),
            _ => None,
        }
        .or_else(|| self.some_number(class, |_| true));
        let Some(serial) = serial else { return };
        self.what = format!("claim {seq} {serial}");
        let mut exp = Expected::default();
        let want = (|| {
            self.model.begin(seq, self.now, &mut exp)?;
            let app = &self.model.apps[&seq];
            if app.cands.contains(&serial) {
                return Ok(());
            }
            if app.cands.is_empty() && app.cand_exp != 0 && app.cand_exp <= self.now {
                return Err(Refusal::HoldExpired);
            }
            Err(Refusal::NotHeld)
        })();
        let got = self
            .pool
            .claim_candidate(seq, &serial.to_string(), self.now, &mut self.pool_rng);
        match (want, &got) {
            (Err(w), _) => self.expect_refusal(&got, &w),
            (Ok(()), Ok(c)) => {
                let by = self.model.claim(seq, serial, self.now, &mut exp, "claim");
                let practice = self.model.apps[&seq].practice;
                if c.serial != serial || c.register_by_ms != by || c.void != practice {
                    self.fail(format!("claim {c:?}, expected {serial} by {by}"));
                }
                self.tally.candidate_claims += 1;
            }
            (Ok(()), Err(e)) => self.fail(format!("refused {e:?}, expected a claim")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    fn op_custom(&mut self) {
        let Some(seq) = self.choose(|a, _| a.custom_left > 0) else {
            return;
        };
        if self.verified_first(seq) {
            return;
        }
        let per_check = self.model.config.rules.custom_per_check as usize;
        let n = match self.rng.random_range(0..100) {
            0 => 0,
            1..3 => per_check + 1,
            _ => self.rng.random_range(1..=per_check),
        };
        let mut plates: Vec<Serial> = (0..n).map(|_| self.custom_plate(seq)).collect();
        if n > 0 && self.rng.random_bool(0.03) {
            plates.push(plates[0]);
        }
        self.what = format!("custom {seq} {plates:?}");
        let mut exp = Expected::default();
        let want = self.predict_custom(seq, &plates, &mut exp);
        let texts: Vec<String> = plates.iter().map(|s| s.to_string()).collect();
        let got = self
            .pool
            .custom_check(seq, &texts, self.now, &mut self.pool_rng);
        let interval = self.model.config.rules.custom_min_interval_ms;
        match (want, &got) {
            (Err(w), _) => self.expect_refusal(&got, &w),
            (Ok(Err(i)), Ok(Check::Claimed(c))) => {
                let s = plates[i];
                let app = self.model.apps.get_mut(&seq).unwrap();
                app.custom_left -= i as u32 + 1;
                app.last_check = Some(self.now);
                let by = self.model.claim(seq, s, self.now, &mut exp, "custom_claim");
                let practice = self.model.apps[&seq].practice;
                if c.serial != s || c.register_by_ms != by || c.void != practice {
                    self.fail(format!("claim {c:?}, expected {s} by {by}"));
                }
                self.tally.custom_claims += 1;
            }
            (
                Ok(Ok(reasons)),
                Ok(Check::NoneAvailable {
                    results,
                    custom_left,
                    next_check_at_ms,
                }),
            ) => {
                let want: Vec<(Serial, Unavailable)> =
                    plates.iter().copied().zip(reasons).collect();
                if *results != want {
                    self.fail(format!("reasons {results:?}, expected {want:?}"));
                }
                self.tally.reason_held +=
                    want.iter().filter(|r| r.1 == Unavailable::Held).count() as u64;
                self.tally.reason_taken +=
                    want.iter().filter(|r| r.1 == Unavailable::Taken).count() as u64;
                let app = self.model.apps.get_mut(&seq).unwrap();
                app.custom_left -= plates.len() as u32;
                app.last_check = Some(self.now);
                app.state = AppState::Selecting;
                let (left, practice) = (app.custom_left, app.practice);
                if *custom_left != left || *next_check_at_ms != self.now + interval {
                    self.fail(format!(
                        "custom_left {custom_left} next {next_check_at_ms}, expected {left}"
                    ));
                }
                let exhausted = self.model.maybe_exhaust(seq);
                if !practice {
                    let state = self.model.apps[&seq].state.as_str();
                    exp.records.push(format!("app {seq} {state}"));
                    exp.records.push("audit custom_check_failed".into());
                    if exhausted {
                        exp.records.push("audit exhausted".into());
                    }
                }
                if exhausted {
                    self.tally.exhaustions += 1;
                }
                self.tally.custom_none += 1;
            }
            (want, got) => self.fail(format!("answered {got:?}, expected {want:?}")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
        self.compare_app(seq);
    }

    /// Ok(Err(i)): the i-th number is claimed; Ok(Ok(reasons)): none is available.
    fn predict_custom(
        &mut self,
        seq: u64,
        plates: &[Serial],
        exp: &mut Expected,
    ) -> Result<Result<Vec<Unavailable>, usize>, Refusal> {
        self.model.begin(seq, self.now, exp)?;
        let m = &self.model;
        let app = &m.apps[&seq];
        let rules = &m.config.rules;
        if plates.is_empty() {
            return Err(Refusal::BadRequest(String::new()));
        }
        if plates.len() > rules.custom_per_check as usize {
            return Err(Refusal::TooManyNumbers {
                max: rules.custom_per_check,
            });
        }
        for (i, s) in plates.iter().enumerate() {
            if !app.group.matches(*s) || !m.allowed(app.class, *s) {
                return Err(Refusal::NotAllowed {
                    index: i,
                    serial: String::new(),
                    reason: String::new(),
                });
            }
            if plates[..i].contains(s) {
                return Err(Refusal::BadRequest(String::new()));
            }
        }
        if app.custom_left == 0 {
            return Err(Refusal::QuotaSpent);
        }
        if plates.len() as u32 > app.custom_left {
            return Err(Refusal::TooManyNumbers {
                max: app.custom_left,
            });
        }
        let next = m.next_check(app);
        if self.now < next {
            return Err(Refusal::TooSoon {
                retry_after_ms: next - self.now,
            });
        }
        let mut reasons = Vec::new();
        for (i, s) in plates.iter().enumerate() {
            let reason = match m.index.get(s).map(|&n| &m.nums[n]) {
                None => Unavailable::NotInPool,
                Some(num) => match num.st {
                    St::Available if m.releases[&num.release].custom_open => return Ok(Err(i)),
                    St::Held(_) if app.holds(*s) => return Ok(Err(i)),
                    St::Held(_) => Unavailable::Held,
                    St::Claimed(_) | St::Issued(_) => Unavailable::Taken,
                    _ => Unavailable::NotInPool,
                },
            };
            reasons.push(reason);
        }
        Ok(Ok(reasons))
    }

    /// A number for an operator: mostly a claimed one.
    fn operator_number(&mut self) -> Serial {
        let class = self.rng.random_range(0..2);
        let want_claimed = self.rng.random_bool(0.8);
        let s = if want_claimed {
            self.some_number(class, |s| matches!(s, St::Claimed(_)))
        } else {
            None
        };
        s.or_else(|| self.some_number(class, |_| true))
            .unwrap_or_else(|| common::serial("Z0001"))
    }

    fn op_register(&mut self) {
        self.operator_step("register")
    }

    fn op_void(&mut self) {
        self.operator_step("void")
    }

    fn operator_step(&mut self, action: &str) {
        let s = if self.rng.random_bool(0.05) {
            common::serial("Z0002")
        } else {
            self.operator_number()
        };
        self.what = format!("{action} {s}");
        let mut exp = Expected::default();
        let st = self.model.index.get(&s).map(|&n| self.model.nums[n].st);
        let want = match st {
            None => Err(Refusal::UnknownNumber),
            Some(St::Claimed(app)) => Ok(app),
            Some(other) => Err(Refusal::NumberBusy {
                status: other.name(),
            }),
        };
        let got = if action == "register" {
            self.pool.register(&s.to_string(), WHO, self.now)
        } else {
            self.pool.void(&s.to_string(), "owner asked", WHO, self.now)
        };
        match (want, &got) {
            (Err(w), _) => self.expect_refusal(&got, &w),
            (Ok(app), Ok(seq)) if app == *seq => {
                let n = self.model.index[&s];
                let a = self.model.apps.get_mut(&app).unwrap();
                if action == "register" {
                    a.state = AppState::Issued;
                    self.model.nums[n].st = St::Issued(app);
                    exp.records.push(format!("number {s} issued {app}"));
                    exp.records.push(format!("app {app} issued"));
                    self.tally.registers += 1;
                } else {
                    a.state = AppState::Voided;
                    self.model.back(n);
                    exp.records
                        .push(format!("number {s} {}", number_back(self.model.nums[n].st)));
                    exp.records.push(format!("app {app} voided"));
                    self.tally.voids += 1;
                }
                exp.records.push(format!("audit {action}"));
            }
            (want, got) => self.fail(format!("answered {got:?}, expected {want:?}")),
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
    }

    fn op_withdraw_number(&mut self) {
        let class = self.rng.random_range(0..2);
        let Some(s) = self.some_number(class, |s| {
            matches!(s, St::Available | St::Pending | St::Held(_))
        }) else {
            return;
        };
        self.what = format!("withdraw {s}");
        let mut exp = Expected::default();
        let n = self.model.index[&s];
        let st = self.model.nums[n].st;
        let got = self.pool.withdraw_number(&s.to_string(), WHO, self.now);
        if matches!(st, St::Available | St::Pending) {
            if got != Ok(s) {
                self.fail(format!("answered {got:?}"));
            }
            self.model.nums[n].st = St::Withdrawn;
            exp.records = vec![
                format!("number {s} withdrawn"),
                "audit withdraw_number".into(),
            ];
        } else {
            self.expect_refusal(&got, &Refusal::NumberBusy { status: st.name() });
        }
        let effects = self.pool.take_effects();
        self.check_effects(&effects, &exp);
    }

    /// I8: the keyboard against a brute-force scan of what the model says is available.
    fn op_keyboard(&mut self) {
        let Some(seq) = self.choose(|_, _| true) else {
            return;
        };
        let app = self.model.apps[&seq].clone();
        let len = self.model.classes[app.class].serial_len();
        let entered_len = self.rng.random_range(0..=len);
        let template = self.some_number(app.class, |s| s == St::Available);
        let entered: Vec<Option<u8>> = (0..entered_len)
            .map(|p| match self.rng.random_range(0..10) {
                0..5 => None,
                5..9 => template.map(|t| t.index_at(p)),
                _ => Some(self.rng.random_range(0..ALPHABET_LEN as u8)),
            })
            .collect();
        self.what = format!("keyboard {seq} {entered:?}");
        let got = self.pool.keyboard(seq, &entered).unwrap();
        let want = self.model.keyboard(&app, &entered, false);
        if got != want {
            self.fail(format!("keyboard {got:?}, brute force {want:?}"));
        }
        self.tally.keyboards += 1;
        self.ops_done += 1;
    }

    // ---- comparing

    fn compare_app(&mut self, seq: u64) {
        let m = &self.model.apps[&seq];
        let Some(v) = self
            .pool
            .application(seq, self.now)
            .expect("application read")
        else {
            self.fail(format!("application {seq} is gone"))
        };
        let r = &v.record;
        let sorted = |v: &[Serial]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let batch = v
            .batch
            .as_ref()
            .map(|b| sorted(&b.serials))
            .unwrap_or_default();
        let cands = v
            .candidates
            .as_ref()
            .map(|b| sorted(&b.serials))
            .unwrap_or_default();
        // The view shows no hold past its expiry, even before the tick drops it.
        let live = |list: &[Serial], exp: u64| {
            if exp > self.now {
                sorted(list)
            } else {
                Vec::new()
            }
        };
        let ok = r.custom_left == m.custom_left
            && r.random_left == m.random_left
            && r.state == m.state
            && r.last_check_at_ms == m.last_check
            && r.verified_until_ms == m.verified_until
            && v.practice == m.practice
            && batch == live(&m.batch, m.batch_exp)
            && cands == live(&m.cands, m.cand_exp)
            && v.batch
                .as_ref()
                .is_none_or(|b| b.expires_at_ms == m.batch_exp)
            && v.candidates
                .as_ref()
                .is_none_or(|b| b.expires_at_ms == m.cand_exp)
            && r.claim.as_ref().map(|c| (c.serial, c.register_by_ms)) == m.claim;
        if !ok {
            self.fail(format!("application {v:#?}\nmodel {m:#?}"));
        }
    }

    /// Every application, every number's owner (I1) and every count (conservation).
    fn compare_everything(&mut self) {
        self.what = "compare".into();
        let seqs: Vec<u64> = self.model.apps.keys().copied().collect();
        for seq in seqs {
            self.compare_app(seq);
        }
        for m in &self.model.nums {
            let got = self
                .pool
                .owner_of(&m.serial.to_string())
                .expect("owner read");
            if got != m.st.owner() {
                self.fail(format!(
                    "owner of {} is {got:?}, model {:?}",
                    m.serial, m.st
                ));
            }
        }
        self.compare_counts();
    }

    /// Per release and class, the counts of each state equal the model's and add up to what was
    /// released (conservation).
    fn compare_counts(&mut self) {
        let stats = self.pool.stats();
        for (id, r) in &self.model.releases {
            let mut want = Counts::default();
            for &n in &r.nums {
                match self.model.nums[n].st {
                    St::Pending => want.pending += 1,
                    St::Available => want.available += 1,
                    St::Held(_) => want.held += 1,
                    St::Claimed(_) => want.claimed += 1,
                    St::Issued(_) => want.issued += 1,
                    St::Withdrawn => want.withdrawn += 1,
                }
            }
            let got = stats
                .iter()
                .flat_map(|c| &c.releases)
                .find(|s| s.id == *id)
                .unwrap_or_else(|| self.fail(format!("no stats for release {id}")));
            if got.counts != want
                || got.total != r.nums.len() as u64
                || got.counts.total() != got.total
            {
                self.fail(format!(
                    "release {id}: {:?} of {}, model {want:?}",
                    got.counts, got.total
                ));
            }
        }
        for (c, cs) in stats.iter().enumerate() {
            let released = self.model.by_class[c].len() as u64;
            if cs.counts.total() != released {
                self.fail(format!(
                    "class {}: {:?} do not add up to {released}",
                    cs.class, cs.counts
                ));
            }
        }
    }

    /// I9: the records persisted so far rebuild the pool as it stands, minus holds.
    fn replay(&mut self) {
        self.what = "replay".into();
        let j = &self.journal;
        let numbers = j
            .numbers
            .iter()
            .map(|((c, s), st)| (c.clone(), *s, *st))
            .collect();
        let mut restored = OfficePool::restore(
            "model",
            j.config.clone(),
            common::catalog(),
            j.releases.values().cloned().collect(),
            numbers,
            j.apps.values().cloned().collect(),
            self.now,
        )
        .unwrap_or_else(|e| self.fail(format!("restore: {e}")));
        restored.check_invariants(self.now);
        assert_eq!(restored.releases().len(), self.pool.releases().len());
        // Holds are gone after a restart: an application left with no quota is exhausted (R4.7).
        let now = self.now;
        let live: BTreeMap<u64, AppRecord> = self
            .pool
            .applications()
            .map(|a| {
                let mut a = a.clone();
                if a.state.selecting() && a.custom_left == 0 && a.random_left == 0 {
                    a.state = AppState::Exhausted;
                    a.closed_at_ms = Some(now);
                }
                (a.seq, a)
            })
            .collect();
        let back: BTreeMap<u64, AppRecord> = restored
            .applications()
            .map(|a| (a.seq, a.clone()))
            .collect();
        if live != back {
            let diff: Vec<u64> = live
                .keys()
                .filter(|k| live.get(k) != back.get(k))
                .copied()
                .collect();
            self.fail(format!("restored applications differ: {diff:?}"));
        }
        // Counts: held numbers are back in the pool (or gone, in a withdrawn release).
        let live_stats = self.pool.stats();
        let back_stats = restored.stats();
        for (l, b) in live_stats.iter().zip(&back_stats) {
            for (lr, br) in l.releases.iter().zip(&b.releases) {
                let mut want = lr.counts;
                if lr.withdrawn {
                    want.withdrawn += want.held;
                } else {
                    want.available += want.held;
                }
                want.held = 0;
                if br.counts != want || br.id != lr.id || br.withdrawn != lr.withdrawn {
                    self.fail(format!(
                        "restored release {}: {:?}, expected {want:?}",
                        br.id, br.counts
                    ));
                }
            }
        }
        for m in &self.model.nums {
            let want = match m.st {
                St::Claimed(a) | St::Issued(a) => Some(a),
                _ => None,
            };
            if restored
                .owner_of(&m.serial.to_string())
                .expect("owner read")
                != want
            {
                self.fail(format!("restored owner of {}: expected {want:?}", m.serial));
            }
        }
        // The keyboard of the restored pool offers the held numbers again.
        let apps: Vec<MApp> = self
            .model
            .apps
            .values()
            .filter(|a| !a.practice)
            .take(5)
            .cloned()
            .collect();
        for app in apps {
            let len = self.model.classes[app.class].serial_len();
            let none = vec![None; len];
            let got = restored.keyboard(app.seq, &none).unwrap();
            if got != self.model.keyboard(&app, &none, true) {
                self.fail(format!("restored keyboard of {}", app.seq));
            }
        }
        self.settled_read_back(&mut restored);
        // New applications continue the sequence.
        let seq = restored
            .create_application(
                common::application("later", "small", Energy::Fuel),
                self.now,
            )
            .unwrap();
        assert_eq!(
            seq, self.model.next_seq,
            "restored pool continues the application sequence"
        );
        self.tally.replays += 1;
    }

    /// Settled applications out of memory: a pool restored with them left in the journal
    /// (`restore_live`), and the keep-all restore once it evicts them, answer every look-up
    /// exactly as the pool that kept them, and keep in memory only the live ones.
    fn settled_read_back(&mut self, restored: &mut OfficePool) {
        self.what = "settled read back".into();
        let j = &self.journal;
        let records = || Box::new(JournalRecords::of(j));
        let numbers = j
            .numbers
            .iter()
            .map(|((c, s), st)| (c.clone(), *s, *st))
            .collect();
        let stored = OfficeRecords {
            releases: j.releases.values().cloned().collect(),
            numbers,
            apps: j.apps.values().cloned().collect(),
        };
        let mut live_only = OfficePool::restore_live(
            "model",
            j.config.clone(),
            common::catalog(),
            stored,
            self.now,
            records(),
        )
        .unwrap_or_else(|e| self.fail(format!("restore_live: {e}")));
        live_only.check_invariants(self.now);
        // The keep-all restore, its settled applications then evicted as the office actor does
        // once their records are durable.
        let mut evicted = OfficePool::restore(
            "model",
            j.config.clone(),
            common::catalog(),
            j.releases.values().cloned().collect(),
            j.numbers
                .iter()
                .map(|((c, s), st)| (c.clone(), *s, *st))
                .collect(),
            j.apps.values().cloned().collect(),
            self.now,
        )
        .unwrap_or_else(|e| self.fail(format!("restore: {e}")));
        // Its own records (R4.7 after a restart) made durable first, as the actor does.
        let mut journal = self.journal.clone();
        journal.fold(&evicted.take_effects());
        evicted.keep_settled_in(Box::new(JournalRecords::of(&journal)));
        let settled = evicted.take_settled();
        evicted.evict_settled(&settled);
        evicted.check_invariants(self.now);
        let live_count = restored.applications().filter(|a| a.state.live()).count();
        // Those the restore itself settled (R4.7) stay until that record is durable.
        let pending = live_only.take_settled().len();
        for (name, pool, pending) in [
            ("restore_live", &live_only, pending),
            ("evicted", &evicted, 0),
        ] {
            if pool.resident_applications() != live_count + pending {
                self.fail(format!(
                    "{name} keeps {} applications in memory, {live_count} are live",
                    pool.resident_applications()
                ));
            }
        }
        // The restores' own records (R4.7 after a restart) are not the steps' below.
        let _ = live_only.take_effects();
        let now = self.now;
        for seq in 0..=self.model.next_seq {
            // Settled ones as the pool that kept them in memory shows them; live ones as the
            // keep-all restore (holds dropped) shows them.
            let settled = self
                .pool
                .application(seq, now)
                .expect("application read")
                .filter(|v| !v.record.state.live());
            let want = match settled {
                Some(v) => Some(v),
                None => restored.application(seq, now).expect("application read"),
            };
            for (name, pool) in [("restore_live", &live_only), ("evicted", &evicted)] {
                let got = pool.application(seq, now).expect("application read");
                if got != want {
                    self.fail(format!(
                        "{name}: application {seq}: {got:?}, expected {want:?}"
                    ));
                }
                let user = pool.application_user(seq).expect("user read");
                let want_user = want.as_ref().map(|v| v.record.user.as_str());
                if user.as_deref() != want_user {
                    self.fail(format!("{name}: user of {seq}: {user:?}"));
                }
            }
            let Some(view) = want.filter(|v| !v.record.state.live()) else {
                continue;
            };
            // Steps on a settled application are refused as they were, and change nothing.
            let len = self.model.classes[self.model.class_ix(&view.record.class)].serial_len();
            let none = vec![None; len];
            let want_keyboard = restored.keyboard(seq, &none);
            let want_verify = restored.verify_identity(seq, now);
            let want_draw = restored.draw(seq, false, now, &mut StdRng::seed_from_u64(seq));
            for (name, pool) in [("restore_live", &mut live_only), ("evicted", &mut evicted)] {
                if pool.keyboard(seq, &none) != want_keyboard {
                    self.fail(format!("{name}: keyboard of settled {seq}"));
                }
                if pool.verify_identity(seq, now) != want_verify
                    || pool.draw(seq, false, now, &mut StdRng::seed_from_u64(seq)) != want_draw
                {
                    self.fail(format!("{name}: steps on settled {seq} answered otherwise"));
                }
                if !pool.take_effects().is_empty() {
                    self.fail(format!("{name}: a step on settled {seq} changed something"));
                }
            }
        }
        let _ = restored.take_effects();
        for m in &self.model.nums {
            let text = m.serial.to_string();
            let want = restored.owner_of(&text).expect("owner read");
            for (name, pool) in [("restore_live", &live_only), ("evicted", &evicted)] {
                if pool.owner_of(&text).expect("owner read") != want {
                    self.fail(format!("{name}: owner of {text}: expected {want:?}"));
                }
            }
        }
    }
}

/// A record as the model describes it.
fn summary(r: &Record) -> String {
    match r {
        Record::App(a) => format!("app {} {}", a.seq, a.state.as_str()),
        Record::Progress { seq, progress } => format!("app {seq} {}", progress.state.as_str()),
        Record::Number { serial, state, .. } => match state {
            Some(NumberState::Claimed { app }) => format!("number {serial} claimed {app}"),
            Some(NumberState::Issued { app }) => format!("number {serial} issued {app}"),
            Some(NumberState::Withdrawn) => format!("number {serial} withdrawn"),
            None => format!("number {serial} back"),
        },
        Record::Release(r) => format!("release {}", r.id),
        Record::Config(_) => "config".into(),
        Record::Audit(a) => format!("audit {}", a.action),
    }
}
