//! Applications (R4.2, R4.4, R4.13): opening them, identity, and how they are seen.

use crate::class::Energy;
use crate::outcome::Refusal;
use crate::record::{AppRecord, AppState, Record};

use super::{
    refuse_state, user_who, AppView, Application, HoldView, Holds, NewApplication, OfficePool,
    IDENTITY_VALID_MS, PRACTICE_APPS_MAX,
};

impl OfficePool {
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

    pub(super) fn eligible(&self, class: &str, energy: Energy) -> Result<(usize, usize), Refusal> {
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

    pub(super) fn new_app(
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
        if !self.apps.contains_key(&seq) {
            return Err(self.refuse_absent(seq));
        }
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

    pub(super) fn view(&self, app: &Application, now_ms: u64) -> AppView {
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

    /// Every application of this office in memory: all of them, or only the live ones when
    /// settled ones are kept on disk ([`OfficePool::keep_settled_in`]).
    pub fn applications(&self) -> impl Iterator<Item = &AppRecord> + '_ {
        self.apps.values().filter(|a| !a.practice).map(|a| &a.rec)
    }

    pub(super) fn next_check_at(&self, app: &Application) -> u64 {
        let since = app
            .rec
            .last_check_at_ms
            .or(app.rec.verified_at_ms)
            .unwrap_or(0);
        since + self.config.rules.custom_min_interval_ms
    }

    /// When the next draw may be made (R4.14): `random_min_interval_ms` after the last one.
    pub(super) fn next_draw_at(&self, app: &Application) -> u64 {
        app.rec
            .last_draw_at_ms
            .map_or(0, |at| at + self.config.rules.random_min_interval_ms)
    }
}
