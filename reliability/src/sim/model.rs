//! The auditor: a plain model of what the office has told its callers, built from replies only.
//!
//! It keeps two views. The *live* view follows every step in execution order (what memory should
//! hold, including steps whose group is not flushed yet); every reply is predicted from it and
//! compared. The *durable* view holds only what was acknowledged: a step's changes to it ride
//! with the step's commit as [`Fact`]s and are applied when the simulated writer flushes that
//! group. After a crash the restored pool must equal the durable view — plus, at most, a group the
//! writer could not confirm (a failed flush or the group in flight at the crash), which may or
//! may not have reached the disk — with holds dropped, spent applications exhausted and claims
//! past their deadline lapsed.
//!
//! The model shares no code with the pool's state machine: statuses are derived from its own
//! maps, releases are expanded from their patterns here. It does borrow the engine's plate and
//! pattern types and its composition rules (tested on their own by the fuzz campaign).

use std::collections::{BTreeMap, HashMap};

use platepool_engine::pool::{AppView, Check, Draw, HoldView, IDENTITY_VALID_MS};
use platepool_engine::record::AppState;
use platepool_engine::rules::CompositionRules;
use platepool_engine::{Claim, Energy, OfficeConfig, Pattern, PlateClass, Refusal, Serial};

/// An application as the auditor believes it to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MApp {
    pub user: String,
    pub class: usize,
    pub group: usize,
    pub custom_left: u32,
    pub random_left: u32,
    pub state: AppState,
    /// The claimed serial and its registration deadline.
    pub claim: Option<(Serial, u64)>,
    pub verified_at: Option<u64>,
    pub verified_until: Option<u64>,
    pub last_check: Option<u64>,
    /// When the last draw that passed validation was made (R4.14).
    pub last_draw: Option<u64>,
}

impl MApp {
    fn selecting(&self) -> bool {
        self.state.selecting()
    }
}

/// A number whose state differs from its release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NState {
    Claimed(u64),
    Issued(u64),
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MRelease {
    pub class: usize,
    pub serials: Vec<Serial>,
    pub opens_at: u64,
    pub custom_from: u64,
    pub withdrawn: bool,
}

/// What is durable (or believed to be, in the live view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    pub apps: BTreeMap<u64, MApp>,
    pub numbers: BTreeMap<Serial, NState>,
    pub releases: BTreeMap<u32, MRelease>,
}

/// One change to the durable view, carried by the commit of the step that made it.
#[derive(Debug, Clone)]
pub enum Fact {
    App(u64, MApp),
    Number(Serial, Option<NState>),
    Release(u32, MRelease),
}

impl Durable {
    pub fn apply(&mut self, facts: &[Fact]) {
        for f in facts {
            match f {
                Fact::App(seq, app) => {
                    self.apps.insert(*seq, app.clone());
                }
                Fact::Number(s, Some(st)) => {
                    self.numbers.insert(*s, *st);
                }
                Fact::Number(s, None) => {
                    self.numbers.remove(s);
                }
                Fact::Release(id, r) => {
                    self.releases.insert(*id, r.clone());
                }
            }
        }
    }
}

/// An application's holds (memory only, never durable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MHolds {
    pub batch: Vec<Serial>,
    pub batch_exp: u64,
    pub picked: bool,
    pub cands: Vec<Serial>,
    pub cand_exp: u64,
}

/// A number's status as the model derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    NotReleased,
    Pending,
    Available,
    Held(u64),
    Claimed(u64),
    Issued(u64),
    Withdrawn,
}

/// The model of one office.
#[derive(Debug)]
pub struct Auditor {
    pub config: OfficeConfig,
    pub catalog: Vec<PlateClass>,
    composition: Vec<CompositionRules>,
    pub live: Durable,
    pub holds: BTreeMap<u64, MHolds>,
    holder: HashMap<Serial, u64>,
    release_of: HashMap<Serial, u32>,
    /// Facts of the step being run, taken by the shell into its commit.
    pending: Vec<Fact>,
}

fn refusal_name(r: &Refusal) -> String {
    format!("{} ({r})", r.code())
}

/// The expected outcome of a step, to compare with the pool's.
pub type Verdict = Result<(), String>;

impl Auditor {
    pub fn new(config: OfficeConfig, catalog: Vec<PlateClass>) -> Auditor {
        let classes: Vec<PlateClass> = config
            .classes
            .iter()
            .filter_map(|n| catalog.iter().find(|c| &c.name == n).cloned())
            .collect();
        let composition = classes
            .iter()
            .map(|c| config.composition_rules(c))
            .collect();
        Auditor {
            config,
            catalog: classes,
            composition,
            live: Durable::default(),
            holds: BTreeMap::new(),
            holder: HashMap::new(),
            release_of: HashMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.catalog.iter().position(|c| c.name == name)
    }

    pub fn take_facts(&mut self) -> Vec<Fact> {
        std::mem::take(&mut self.pending)
    }

    fn set_app(&mut self, seq: u64, app: MApp) {
        self.live.apps.insert(seq, app.clone());
        self.pending.push(Fact::App(seq, app));
    }

    fn set_number(&mut self, s: Serial, st: Option<NState>) {
        match st {
            Some(v) => self.live.numbers.insert(s, v),
            None => self.live.numbers.remove(&s),
        };
        self.pending.push(Fact::Number(s, st));
    }

    fn set_release(&mut self, id: u32, r: MRelease) {
        for s in &r.serials {
            self.release_of.insert(*s, id);
        }
        self.live.releases.insert(id, r.clone());
        self.pending.push(Fact::Release(id, r));
    }

    /// The status of a number at `now` in the live view.
    pub fn status(&self, s: Serial, now: u64) -> St {
        let Some(&rid) = self.release_of.get(&s) else {
            return St::NotReleased;
        };
        match self.live.numbers.get(&s) {
            Some(NState::Claimed(a)) => return St::Claimed(*a),
            Some(NState::Issued(a)) => return St::Issued(*a),
            Some(NState::Withdrawn) => return St::Withdrawn,
            None => {}
        }
        if let Some(&a) = self.holder.get(&s) {
            return St::Held(a);
        }
        let r = &self.live.releases[&rid];
        if r.withdrawn {
            St::Withdrawn
        } else if r.opens_at > now {
            St::Pending
        } else {
            St::Available
        }
    }

    fn custom_open(&self, s: Serial, now: u64) -> bool {
        self.release_of
            .get(&s)
            .and_then(|id| self.live.releases.get(id))
            .is_some_and(|r| r.custom_from <= now)
    }

    /// Where a number that stops being held or claimed goes: back, or out if its release was
    /// withdrawn.
    fn back_state(&self, s: Serial) -> Option<NState> {
        let withdrawn = self
            .release_of
            .get(&s)
            .and_then(|id| self.live.releases.get(id))
            .is_some_and(|r| r.withdrawn);
        withdrawn.then_some(NState::Withdrawn)
    }

    fn unhold(&mut self, s: Serial) {
        self.holder.remove(&s);
    }

    fn release_all_holds(&mut self, seq: u64, keep: Option<Serial>) {
        if let Some(h) = self.holds.remove(&seq) {
            for s in h.batch.iter().chain(&h.cands) {
                if Some(*s) != keep {
                    self.unhold(*s);
                }
            }
        }
    }

    /// A fresh live view from a durable one (after a restart): holds gone.
    pub fn reset_to(&mut self, durable: Durable) {
        self.release_of.clear();
        for (id, r) in &durable.releases {
            for s in &r.serials {
                self.release_of.insert(*s, *id);
            }
        }
        self.live = durable;
        self.holds.clear();
        self.holder.clear();
        self.pending.clear();
    }

    /// What a restart does on its own (I9): holds are gone, so a selecting application with both
    /// quotas spent is exhausted; then the first tick lapses claims past their deadline.
    pub fn restart_rules(&self, d: &mut Durable, now: u64) {
        for app in d.apps.values_mut() {
            if app.selecting() && app.custom_left == 0 && app.random_left == 0 {
                app.state = AppState::Exhausted;
            }
        }
        let lapsing: Vec<(u64, Serial)> = d
            .apps
            .iter()
            .filter(|(_, a)| a.state == AppState::Claimed)
            .filter_map(|(seq, a)| a.claim.filter(|c| c.1 <= now).map(|c| (*seq, c.0)))
            .collect();
        for (seq, s) in lapsing {
            if let Some(a) = d.apps.get_mut(&seq) {
                a.state = AppState::Lapsed;
            }
            let withdrawn = self.release_of_in(d, s).is_some_and(|r| r.withdrawn);
            if withdrawn {
                d.numbers.insert(s, NState::Withdrawn);
            } else {
                d.numbers.remove(&s);
            }
        }
    }

    fn release_of_in<'a>(&self, d: &'a Durable, s: Serial) -> Option<&'a MRelease> {
        d.releases
            .values()
            .find(|r| r.serials.binary_search(&s).is_ok())
    }

    // -----------------------------------------------------------------------------------------
    // Time

    /// The pool's tick at `now`: expired holds back (I4), spent applications exhausted, claims
    /// past their deadline lapsed. Returns the lapses and exhaustions seen.
    pub fn tick(&mut self, now: u64) -> (u64, u64) {
        let mut exhausted = 0;
        let seqs: Vec<u64> = self.holds.keys().copied().collect();
        for seq in seqs {
            let Some(mut h) = self.holds.remove(&seq) else {
                continue;
            };
            let mut expired = false;
            if !h.batch.is_empty() && h.batch_exp <= now {
                for s in std::mem::take(&mut h.batch) {
                    self.unhold(s);
                }
                expired = true;
            }
            if !h.cands.is_empty() && h.cand_exp <= now {
                for s in std::mem::take(&mut h.cands) {
                    self.unhold(s);
                }
                expired = true;
            }
            let empty = h.batch.is_empty() && h.cands.is_empty();
            self.holds.insert(seq, h);
            if expired && empty {
                if let Some(app) = self.live.apps.get(&seq).cloned() {
                    if app.selecting() && app.custom_left == 0 && app.random_left == 0 {
                        let mut app = app;
                        app.state = AppState::Exhausted;
                        self.set_app(seq, app);
                        exhausted += 1;
                    }
                }
            }
        }
        let lapsing: Vec<(u64, Serial)> = self
            .live
            .apps
            .iter()
            .filter(|(_, a)| a.state == AppState::Claimed)
            .filter_map(|(seq, a)| a.claim.filter(|c| c.1 <= now).map(|c| (*seq, c.0)))
            .collect();
        let lapses = lapsing.len() as u64;
        for (seq, s) in lapsing {
            let mut app = self.live.apps[&seq].clone();
            app.state = AppState::Lapsed;
            self.set_app(seq, app);
            let back = self.back_state(s);
            self.set_number(s, back);
        }
        (lapses, exhausted)
    }

    // -----------------------------------------------------------------------------------------
    // Predictions of the common checks

    fn begin(&self, seq: u64, now: u64) -> Result<&MApp, Refusal> {
        let app = self
            .live
            .apps
            .get(&seq)
            .ok_or(Refusal::UnknownApplication)?;
        if !app.selecting() {
            return Err(match app.state {
                AppState::Exhausted => Refusal::Exhausted,
                s => Refusal::WrongState { state: s.as_str() },
            });
        }
        if app.verified_until.is_none_or(|u| u <= now) {
            return Err(Refusal::IdentityNotVerified);
        }
        Ok(app)
    }

    fn same_refusal(got: &Refusal, want: &Refusal) -> bool {
        got.code() == want.code() && std::mem::discriminant(got) == std::mem::discriminant(want)
    }

    fn expect_refusal<T: std::fmt::Debug>(got: &Result<T, Refusal>, want: &Refusal) -> Verdict {
        match got {
            Err(r) if Self::same_refusal(r, want) => Ok(()),
            other => Err(format!(
                "expected refusal {}, got {other:?}",
                refusal_name(want)
            )),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Steps: each checks the pool's answer against the model, then updates the live view.

    pub fn created(
        &mut self,
        got: &Result<u64, Refusal>,
        user: &str,
        class: usize,
        energy: Energy,
    ) -> Verdict {
        let seq = match got {
            Ok(seq) => *seq,
            Err(r) => return Err(format!("application refused: {}", refusal_name(r))),
        };
        if self
            .live
            .apps
            .keys()
            .next_back()
            .is_some_and(|&last| last >= seq)
        {
            return Err(format!(
                "application {seq} reuses or goes back on a sequence number"
            ));
        }
        let group = self.catalog[class]
            .group_for(energy)
            .ok_or("energy not in class")?;
        let rules = &self.config.rules;
        let app = MApp {
            user: user.to_string(),
            class,
            group,
            custom_left: rules.custom_quota,
            random_left: rules.random_quota,
            state: AppState::Confirmed,
            claim: None,
            verified_at: None,
            verified_until: None,
            last_check: None,
            last_draw: None,
        };
        self.set_app(seq, app);
        Ok(())
    }

    pub fn verified(&mut self, seq: u64, now: u64, got: &Result<u64, Refusal>) -> Verdict {
        let want = match self.live.apps.get(&seq) {
            None => Err(Refusal::UnknownApplication),
            Some(a) if !a.selecting() => Err(match a.state {
                AppState::Exhausted => Refusal::Exhausted,
                s => Refusal::WrongState { state: s.as_str() },
            }),
            Some(_) => Ok(now + IDENTITY_VALID_MS),
        };
        match (&want, got) {
            (Ok(until), Ok(g)) if until == g => {
                let mut app = self.live.apps[&seq].clone();
                app.verified_at = Some(now);
                app.verified_until = Some(*until);
                self.set_app(seq, app);
                Ok(())
            }
            (Err(w), _) => Self::expect_refusal(got, w),
            _ => Err(format!("verify: expected {want:?}, got {got:?}")),
        }
    }

    /// Numbers a draw of `seq` could hand out now: available in its group (and filter), plus its
    /// own batch, which goes back first.
    fn drawable(&self, seq: u64, app: &MApp, no4: bool, now: u64) -> Vec<Serial> {
        let group = &self.catalog[app.class].groups[app.group].pattern;
        let own: Vec<Serial> = self
            .holds
            .get(&seq)
            .map(|h| h.batch.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for r in self.live.releases.values() {
            if r.class != app.class || r.withdrawn || r.opens_at > now {
                continue;
            }
            for &s in &r.serials {
                if !group.matches(s) || (no4 && s.contains_four()) {
                    continue;
                }
                match self.status(s, now) {
                    St::Available => out.push(s),
                    St::Held(a) if a == seq && own.contains(&s) => out.push(s),
                    _ => {}
                }
            }
        }
        out
    }

    pub fn drew(&mut self, seq: u64, no4: bool, now: u64, got: &Result<Draw, Refusal>) -> Verdict {
        let app = match self.begin(seq, now) {
            Ok(a) => a.clone(),
            Err(w) => return Self::expect_refusal(got, &w),
        };
        if app.random_left == 0 {
            return Self::expect_refusal(got, &Refusal::QuotaSpent);
        }
        let interval = self.config.rules.random_min_interval_ms;
        if app.last_draw.is_some_and(|at| now < at + interval) {
            return Self::expect_refusal(got, &Refusal::TooSoon { retry_after_ms: 0 });
        }
        let mut app = app;
        if interval > 0 {
            app.last_draw = Some(now);
        }
        let pool = self.drawable(seq, &app, no4, now);
        if pool.is_empty() {
            // Found nothing: nothing debited, but the interval started (R4.14).
            if interval > 0 {
                self.set_app(seq, app);
            }
            return Self::expect_refusal(got, &Refusal::NotAvailable);
        }
        let draw = match got {
            Ok(d) => d,
            Err(r) => {
                return Err(format!(
                    "draw refused with {} numbers drawable: {}",
                    pool.len(),
                    refusal_name(r)
                ))
            }
        };
        let batch_size = self.config.rules.random_batch as usize;
        let want_len = batch_size.min(pool.len());
        let mut serials = draw.batch.serials.clone();
        if serials.len() != want_len {
            return Err(format!(
                "draw gave {} numbers, {want_len} expected (I5/R4.6)",
                serials.len()
            ));
        }
        serials.sort();
        serials.dedup();
        if serials.len() != want_len {
            return Err("a draw gave one number twice".into());
        }
        for s in &serials {
            if !pool.contains(s) {
                return Err(format!(
                    "draw gave {s}, which was {:?} (I1)",
                    self.status(*s, now)
                ));
            }
        }
        if draw.random_left != app.random_left - 1 {
            return Err(format!(
                "random_left {} after a draw, {} expected (I3)",
                draw.random_left,
                app.random_left - 1
            ));
        }
        // The old batch goes back, the new one is held.
        let mut h = self.holds.remove(&seq).unwrap_or_default();
        for s in std::mem::take(&mut h.batch) {
            self.unhold(s);
        }
        for s in &draw.batch.serials {
            self.holder.insert(*s, seq);
        }
        h.batch = draw.batch.serials.clone();
        h.batch_exp = now + self.config.rules.random_ttl_ms;
        h.picked = false;
        if !h.cands.is_empty() {
            h.cand_exp = now + self.config.rules.candidate_ttl_ms;
        }
        let cands_view = (!h.cands.is_empty()).then(|| h.cands.clone());
        if draw.candidates.as_ref().map(|c| c.serials.clone()) != cands_view {
            return Err(format!(
                "draw shows candidates {:?}, model has {cands_view:?}",
                draw.candidates
            ));
        }
        self.holds.insert(seq, h);
        app.random_left -= 1;
        app.state = AppState::Selecting;
        self.set_app(seq, app);
        Ok(())
    }

    pub fn picked(
        &mut self,
        seq: u64,
        s: Serial,
        now: u64,
        got: &Result<HoldView, Refusal>,
    ) -> Verdict {
        if let Err(w) = self.begin(seq, now) {
            return Self::expect_refusal(got, &w);
        }
        let mut h = self.holds.get(&seq).cloned().unwrap_or_default();
        let Some(pos) = h.batch.iter().position(|&b| b == s) else {
            let want = if h.cands.contains(&s) {
                Refusal::Conflict(String::new())
            } else if h.batch.is_empty() && h.batch_exp != 0 && h.batch_exp <= now {
                Refusal::HoldExpired
            } else {
                Refusal::NotHeld
            };
            return Self::expect_refusal(got, &want);
        };
        if h.picked {
            return Self::expect_refusal(got, &Refusal::AlreadyPicked);
        }
        let view = match got {
            Ok(v) => v,
            Err(r) => {
                return Err(format!(
                    "pick of a held number refused: {}",
                    refusal_name(r)
                ))
            }
        };
        h.batch.remove(pos);
        h.cands.push(s);
        h.picked = true;
        h.cand_exp = now + self.config.rules.candidate_ttl_ms;
        if view.serials != h.cands || view.expires_at_ms != h.cand_exp {
            return Err(format!(
                "pick shows {view:?}, model has {:?} until {}",
                h.cands, h.cand_exp
            ));
        }
        self.holds.insert(seq, h);
        Ok(())
    }

    fn claim(&mut self, seq: u64, s: Serial, now: u64, claim: &Claim) -> Verdict {
        if claim.serial != s {
            return Err(format!("claimed {} instead of {s}", claim.serial));
        }
        if claim.claimed_at_ms != now
            || claim.register_by_ms <= now
            || claim.register_by_ms > now + 90 * 86_400_000
        {
            return Err(format!(
                "claim times {} / {} at {now}",
                claim.claimed_at_ms, claim.register_by_ms
            ));
        }
        self.release_all_holds(seq, Some(s));
        self.holder.remove(&s);
        let mut app = self.live.apps[&seq].clone();
        app.state = AppState::Claimed;
        app.claim = Some((s, claim.register_by_ms));
        self.set_app(seq, app);
        self.set_number(s, Some(NState::Claimed(seq)));
        Ok(())
    }

    pub fn claimed_candidate(
        &mut self,
        seq: u64,
        s: Serial,
        now: u64,
        got: &Result<Claim, Refusal>,
    ) -> Verdict {
        if let Err(w) = self.begin(seq, now) {
            return Self::expect_refusal(got, &w);
        }
        let h = self.holds.get(&seq).cloned().unwrap_or_default();
        if !h.cands.contains(&s) {
            let want = if h.cands.is_empty() && h.cand_exp != 0 && h.cand_exp <= now {
                Refusal::HoldExpired
            } else {
                Refusal::NotHeld
            };
            return Self::expect_refusal(got, &want);
        }
        match got {
            Ok(c) => self.claim(seq, s, now, c),
            Err(r) => Err(format!(
                "claim of a live candidate refused: {}",
                refusal_name(r)
            )),
        }
    }

    /// Would a custom check accept this typed number for the application (R2.3, R2.4)?
    pub fn valid_custom(&self, app: &MApp, s: Serial) -> bool {
        let class = &self.catalog[app.class];
        class.shape.matches(s)
            && class.groups[app.group].pattern.matches(s)
            && self.composition[app.class].allows(s)
    }

    pub fn checked(
        &mut self,
        seq: u64,
        plates: &[Serial],
        now: u64,
        got: &Result<Check, Refusal>,
    ) -> Verdict {
        let app = match self.begin(seq, now) {
            Ok(a) => a.clone(),
            Err(w) => return Self::expect_refusal(got, &w),
        };
        let rules = &self.config.rules;
        if plates.is_empty() {
            return Self::expect_refusal(got, &Refusal::BadRequest(String::new()));
        }
        if plates.len() > rules.custom_per_check as usize {
            return Self::expect_refusal(got, &Refusal::TooManyNumbers { max: 0 });
        }
        for (i, s) in plates.iter().enumerate() {
            if !self.valid_custom(&app, *s) {
                return match got {
                    Err(
                        Refusal::InvalidPlate { index, .. } | Refusal::NotAllowed { index, .. },
                    ) if *index == i => Ok(()),
                    other => Err(format!(
                        "plate {i} ({s}) is not valid for the application, got {other:?}"
                    )),
                };
            }
            if plates[..i].contains(s) {
                return Self::expect_refusal(got, &Refusal::BadRequest(String::new()));
            }
        }
        if app.custom_left == 0 {
            return Self::expect_refusal(got, &Refusal::QuotaSpent);
        }
        if plates.len() as u32 > app.custom_left {
            return Self::expect_refusal(got, &Refusal::TooManyNumbers { max: 0 });
        }
        let next = app.last_check.or(app.verified_at).unwrap_or(0) + rules.custom_min_interval_ms;
        if now < next {
            return Self::expect_refusal(got, &Refusal::TooSoon { retry_after_ms: 0 });
        }
        let mut results = Vec::new();
        let mut winner = None;
        for (i, &s) in plates.iter().enumerate() {
            let reason = match self.status(s, now) {
                St::Available if self.custom_open(s, now) => {
                    winner = Some(i);
                    break;
                }
                St::Held(a) if a == seq => {
                    winner = Some(i);
                    break;
                }
                St::Held(_) => "held",
                St::Claimed(_) | St::Issued(_) => "taken",
                _ => "not_in_pool",
            };
            results.push((s, reason));
        }
        let mut app = app;
        app.last_check = Some(now);
        app.state = AppState::Selecting;
        match (winner, got) {
            (Some(i), Ok(Check::Claimed(c))) => {
                app.custom_left -= i as u32 + 1;
                self.live.apps.insert(seq, app);
                self.claim(seq, plates[i], now, c)
            }
            (
                None,
                Ok(Check::NoneAvailable {
                    results: got_results,
                    custom_left,
                    ..
                }),
            ) => {
                let got_r: Vec<(Serial, &str)> =
                    got_results.iter().map(|(s, u)| (*s, u.as_str())).collect();
                if got_r != results {
                    return Err(format!("check reasons {got_r:?}, model says {results:?}"));
                }
                app.custom_left -= plates.len() as u32;
                if *custom_left != app.custom_left {
                    return Err(format!(
                        "custom_left {custom_left} after a check, {} expected (I3)",
                        app.custom_left
                    ));
                }
                let no_holds = self
                    .holds
                    .get(&seq)
                    .is_none_or(|h| h.batch.is_empty() && h.cands.is_empty());
                if app.custom_left == 0 && app.random_left == 0 && no_holds {
                    app.state = AppState::Exhausted;
                }
                self.set_app(seq, app);
                Ok(())
            }
            (w, g) => Err(format!(
                "custom check: model expected {} , got {g:?}",
                match w {
                    Some(i) => format!("a claim of {}", plates[i]),
                    None => format!("none available {results:?}"),
                }
            )),
        }
    }

    /// The number an operator names: its status decides register, void and withdraw.
    pub fn registered(
        &mut self,
        s: Serial,
        now: u64,
        got: &Result<u64, Refusal>,
        void: bool,
    ) -> Verdict {
        let seq = match self.status(s, now) {
            St::NotReleased => return Self::expect_refusal(got, &Refusal::UnknownNumber),
            St::Claimed(a) => a,
            _ => return Self::expect_refusal(got, &Refusal::NumberBusy { status: "" }),
        };
        match got {
            Ok(g) if *g == seq => {}
            other => {
                return Err(format!(
                    "register/void of {s} claimed by {seq}: got {other:?}"
                ))
            }
        }
        let mut app = self.live.apps[&seq].clone();
        if void {
            app.state = AppState::Voided;
            let back = self.back_state(s);
            self.set_number(s, back);
        } else {
            app.state = AppState::Issued;
            self.set_number(s, Some(NState::Issued(seq)));
        }
        self.set_app(seq, app);
        Ok(())
    }

    pub fn withdrew_number(
        &mut self,
        s: Serial,
        now: u64,
        got: &Result<Serial, Refusal>,
    ) -> Verdict {
        match self.status(s, now) {
            St::NotReleased => Self::expect_refusal(got, &Refusal::UnknownNumber),
            St::Pending | St::Available => match got {
                Ok(g) if *g == s => {
                    self.set_number(s, Some(NState::Withdrawn));
                    Ok(())
                }
                other => Err(format!("withdraw of available {s}: got {other:?}")),
            },
            _ => Self::expect_refusal(got, &Refusal::NumberBusy { status: "" }),
        }
    }

    pub fn withdrew_release(&mut self, id: u32, now: u64, got: &Result<u64, Refusal>) -> Verdict {
        let Some(r) = self.live.releases.get(&id).cloned() else {
            return Self::expect_refusal(got, &Refusal::UnknownRelease);
        };
        if r.withdrawn {
            return match got {
                Ok(0) => Ok(()),
                other => Err(format!("second withdrawal of release {id}: {other:?}")),
            };
        }
        let n = r
            .serials
            .iter()
            .filter(|s| matches!(self.status(**s, now), St::Pending | St::Available))
            .count() as u64;
        match got {
            Ok(g) if *g == n => {
                let mut r = r;
                r.withdrawn = true;
                self.set_release(id, r);
                Ok(())
            }
            other => Err(format!(
                "withdrawal of release {id} ({n} available): got {other:?}"
            )),
        }
    }

    /// A release: the model expands the patterns itself.
    pub fn released(
        &mut self,
        class: usize,
        patterns: &[Pattern],
        opens_at: u64,
        custom_from: Option<u64>,
        got: &Result<(u32, u64), Refusal>,
    ) -> Verdict {
        let mut serials: Vec<Serial> = patterns
            .iter()
            .flat_map(|p| p.iter().collect::<Vec<_>>())
            .filter(|s| !self.release_of.contains_key(s))
            .collect();
        serials.sort();
        serials.dedup();
        if serials.is_empty() {
            return Self::expect_refusal(got, &Refusal::InvalidRelease(String::new()));
        }
        let next_id = self.live.releases.keys().next_back().map_or(1, |k| k + 1);
        match got {
            Ok((id, total)) if *total == serials.len() as u64 && *id >= next_id => {
                let r = MRelease {
                    class,
                    serials,
                    opens_at,
                    custom_from: custom_from.unwrap_or(opens_at).max(opens_at),
                    withdrawn: false,
                };
                self.set_release(*id, r);
                Ok(())
            }
            other => Err(format!(
                "release of {} new numbers (id ≥ {next_id}): got {other:?}",
                serials.len()
            )),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Comparisons with the pool

    /// Compares one application's view with the live model.
    pub fn compare_view(&self, seq: u64, view: Option<&AppView>, now: u64) -> Verdict {
        let (Some(app), Some(v)) = (self.live.apps.get(&seq), view) else {
            return if self.live.apps.contains_key(&seq) == view.is_some() {
                Ok(())
            } else {
                Err(format!(
                    "application {seq}: model has it {}, pool {}",
                    self.live.apps.contains_key(&seq),
                    view.is_some()
                ))
            };
        };
        compare_record(seq, app, v)?;
        let h = self.holds.get(&seq).cloned().unwrap_or_default();
        let live = |v: &Vec<Serial>, exp: u64| (!v.is_empty() && exp > now).then(|| v.clone());
        let want_batch = live(&h.batch, h.batch_exp);
        let want_cands = live(&h.cands, h.cand_exp);
        let got_batch = v.batch.as_ref().map(|b| b.serials.clone());
        let got_cands = v.candidates.as_ref().map(|c| c.serials.clone());
        if want_batch != got_batch || want_cands != got_cands {
            return Err(format!(
                "application {seq} holds: pool batch {got_batch:?} candidates {got_cands:?}, model {want_batch:?} / {want_cands:?}"
            ));
        }
        if want_batch.is_some() && v.batch_picked != h.picked {
            return Err(format!(
                "application {seq}: picked {} vs model {}",
                v.batch_picked, h.picked
            ));
        }
        Ok(())
    }

    /// Counts of a release's numbers by status: pending, available, held, claimed, issued,
    /// withdrawn (as the pool's stats give them).
    pub fn release_counts(&self, id: u32, now: u64) -> [u64; 6] {
        let mut out = [0u64; 6];
        if let Some(r) = self.live.releases.get(&id) {
            for s in &r.serials {
                let i = match self.status(*s, now) {
                    St::Pending => 0,
                    St::Available => 1,
                    St::Held(_) => 2,
                    St::Claimed(_) => 3,
                    St::Issued(_) => 4,
                    St::Withdrawn | St::NotReleased => 5,
                };
                out[i] += 1;
            }
        }
        out
    }

    /// The same counts in a durable view after a restart (nothing held).
    pub fn durable_release_counts(d: &Durable, id: u32, now: u64) -> [u64; 6] {
        let mut out = [0u64; 6];
        if let Some(r) = d.releases.get(&id) {
            for s in &r.serials {
                let i = match d.numbers.get(s) {
                    Some(NState::Claimed(_)) => 3,
                    Some(NState::Issued(_)) => 4,
                    Some(NState::Withdrawn) => 5,
                    None if r.withdrawn => 5,
                    None if r.opens_at > now => 0,
                    None => 1,
                };
                out[i] += 1;
            }
        }
        out
    }

    /// Live holds per class (for the counts comparison).
    pub fn held_per_class(&self, classes: usize) -> Vec<u64> {
        let mut out = vec![0; classes];
        for (s, seq) in &self.holder {
            let _ = s;
            if let Some(a) = self.live.apps.get(seq) {
                out[a.class] += 1;
            }
        }
        out
    }
}

/// Compares the durable part of an application with the model.
pub fn compare_record(seq: u64, app: &MApp, v: &AppView) -> Verdict {
    let r = &v.record;
    let claim = r.claim.as_ref().map(|c| (c.serial, c.register_by_ms));
    let same = r.custom_left == app.custom_left
        && r.random_left == app.random_left
        && r.state == app.state
        && claim == app.claim
        && r.verified_until_ms == app.verified_until
        && r.verified_at_ms == app.verified_at
        && r.last_check_at_ms == app.last_check
        && r.last_draw_at_ms == app.last_draw
        && r.user == app.user;
    if same {
        Ok(())
    } else {
        Err(format!(
            "application {seq}: pool has {} c={} r={} claim={claim:?} verified={:?}/{:?} last_check={:?} last_draw={:?}; model has {} c={} r={} claim={:?} verified={:?}/{:?} last_check={:?} last_draw={:?}",
            r.state.as_str(), r.custom_left, r.random_left, r.verified_at_ms, r.verified_until_ms, r.last_check_at_ms, r.last_draw_at_ms,
            app.state.as_str(), app.custom_left, app.random_left, app.claim, app.verified_at, app.verified_until, app.last_check, app.last_draw
        ))
    }
}
