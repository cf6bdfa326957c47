//! A virtual buyer walking the citizen flow of SPEC §4 over HTTP: apply with an SMS code read
//! from the outbox, verify identity, wait for the opening instant, then select — by custom checks
//! guided by the keyboard, or by random draws, candidates and a claim — with think times (people)
//! or at the limits (bots).
//!
//! Every request is sent at an *intended* instant (arrival, opening, end of a think time, end of
//! an interval) and its latency counts from that instant: if the client or server falls behind,
//! the delay shows (no coordinated omission).

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::http::Method;
use platepool_engine::rules::CompositionRules;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{hold_serials, query_value, Answer, Api, Call};
use crate::identity::{identity, Identity};
use crate::lucky;
use crate::recorder::{Ending, Live, Recorder, Step};
use crate::scenario::{BuyerPlan, Kind, Scenario, Style};

/// What every worker shares (read-only but for the recorder and counters).
#[derive(Debug)]
pub struct Shared {
    pub scenario: Scenario,
    pub recorder: Arc<Mutex<Recorder>>,
    pub live: Arc<Live>,
    pub office: String,
    pub notice_version: String,
    /// The release's opening instant on this machine's monotonic clock.
    pub opening: Instant,
    pub composition: CompositionRules,
    pub tag: u32,
    /// Citizen token of buyer i.
    pub tokens: Vec<String>,
}

/// One worker's view: its own client.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    pub shared: Arc<Shared>,
}

/// The quota a buyer's calls debited, as far as the buyer can tell: exactly `min` when every
/// debiting call was answered; up to `max` when some got no answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debit {
    pub min: u32,
    pub max: u32,
}

impl Debit {
    fn exact(&mut self, n: u32) {
        self.min += n;
        self.max += n;
    }
    fn maybe(&mut self, n: u32) {
        self.max += n;
    }
}

/// How a buyer's visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A number was pre-selected.
    Claimed,
    /// Both quotas spent without a claim (R4.7).
    Exhausted,
    /// Nothing left to draw or type.
    PoolEmpty,
    /// A bot that reached its request budget.
    GaveUp,
    /// An error stopped the flow (see `failure`).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Claimed,
        Outcome::Exhausted,
        Outcome::PoolEmpty,
        Outcome::GaveUp,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Claimed => "claimed",
            Outcome::Exhausted => "exhausted",
            Outcome::PoolEmpty => "pool_empty",
            Outcome::GaveUp => "gave_up",
            Outcome::Failed => "failed",
        }
    }
}

/// What the tool saw of one buyer: the history the audit checks the server against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuyerRecord {
    pub index: u32,
    pub user: String,
    pub kind: Kind,
    pub style: Style,
    pub application: Option<String>,
    pub outcome: Outcome,
    pub failure: Option<String>,
    /// The number the gateway acknowledged as claimed for this buyer.
    pub claim: Option<String>,
    pub claim_via: Option<Style>,
    pub custom_debit: Debit,
    pub random_debit: Debit,
    /// Calls that could have claimed a number but got no answer.
    pub uncertain_claims: u32,
    pub requests: u64,
    /// Selection requests (keyboard, custom checks, draws, candidates, claims).
    pub selection_requests: u64,
    /// The numbers this buyer's first draw returned (none when it found the pool empty): what
    /// the order of the opening decided, apart from what later draws found.
    #[serde(default)]
    pub first_batch: Vec<String>,
}

impl BuyerRecord {
    pub fn new(index: u32, user: &str, kind: Kind, style: Style) -> BuyerRecord {
        BuyerRecord {
            index,
            user: user.to_string(),
            kind,
            style,
            application: None,
            outcome: Outcome::Failed,
            failure: None,
            claim: None,
            claim_via: None,
            custom_debit: Debit::default(),
            random_debit: Debit::default(),
            uncertain_claims: 0,
            requests: 0,
            selection_requests: 0,
            first_batch: Vec::new(),
        }
    }
}

/// Why a call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fail {
    /// No answer (after the retries that were safe).
    Transport(String),
    /// The bot's request budget is spent.
    Budget,
}

/// Where the flow stops.
type Stop = (Outcome, Option<String>);

fn failed(what: &str, detail: impl std::fmt::Display) -> Stop {
    (Outcome::Failed, Some(format!("{what}: {detail}")))
}

fn fail_stop(what: &str, f: Fail) -> Stop {
    match f {
        Fail::Budget => (Outcome::GaveUp, None),
        Fail::Transport(kind) => failed(what, format!("no answer ({kind})")),
    }
}

/// The six-digit code in an SMS text.
pub fn sms_code(text: &str) -> Option<String> {
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            if run.len() == 6 {
                return Some(run);
            }
            run.clear();
        }
    }
    None
}

struct Buyer<'a> {
    ctx: &'a Ctx,
    plan: BuyerPlan,
    id: Identity,
    token: String,
    rng: StdRng,
    next: Instant,
    rec: BuyerRecord,
    keys: u32,
    app: String,
    custom_left: u32,
    random_left: u32,
    candidates: Vec<String>,
    candidates_until: Instant,
    /// When the office allows the next custom check (the interval also runs from the identity
    /// verification).
    next_check: Instant,
    /// Whether this buyer has sent a draw yet (answered or not).
    drew: bool,
}

/// Runs one buyer from `arrival` to the end of its visit.
pub async fn run(ctx: Rc<Ctx>, plan: BuyerPlan, arrival: Instant) -> BuyerRecord {
    let sh = &ctx.shared;
    let id = identity(sh.tag, plan.index, plan.kind, sh.scenario.bot_ips);
    let token = sh
        .tokens
        .get(plan.index as usize)
        .cloned()
        .unwrap_or_default();
    let mut b = Buyer {
        ctx: &ctx,
        rec: BuyerRecord::new(plan.index, &id.user, plan.kind, plan.style),
        rng: StdRng::seed_from_u64(plan.seed),
        id,
        token,
        next: arrival,
        keys: 0,
        app: String::new(),
        custom_left: sh.scenario.rules.custom_quota,
        random_left: sh.scenario.rules.random_quota,
        candidates: Vec::new(),
        candidates_until: arrival,
        next_check: arrival,
        drew: false,
        plan,
    };
    actix_rt::time::sleep_until(arrival.into()).await;
    Live::add(&sh.live.arrived, 1);
    lock(&sh.recorder).arrival(Instant::now());
    let (outcome, failure) = b.walk().await;
    b.rec.outcome = outcome;
    b.rec.failure = failure;
    Live::add(&sh.live.finished, 1);
    lock(&sh.recorder).finished(Instant::now());
    b.rec
}

pub fn lock(r: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Buyer<'_> {
    fn scenario(&self) -> &Scenario {
        &self.ctx.shared.scenario
    }

    fn is_bot(&self) -> bool {
        self.plan.kind == Kind::Bot
    }

    /// A person's pause before the next action (bots: none).
    fn think(&mut self) {
        if self.is_bot() {
            return;
        }
        let (lo, hi) = (self.scenario().think_min_ms, self.scenario().think_max_ms);
        let ms = self.rng.random_range(lo..=hi);
        self.next += Duration::from_millis(ms);
    }

    /// A person's short glance (a quarter of a think time).
    fn glance(&mut self) {
        if self.is_bot() {
            return;
        }
        let (lo, hi) = (self.scenario().think_min_ms, self.scenario().think_max_ms);
        let ms = self.rng.random_range(lo..=hi) / 4;
        self.next += Duration::from_millis(ms);
    }

    fn wait_until(&mut self, at: Instant) {
        if self.next < at {
            self.next = at;
        }
    }

    /// Sends at `self.next`, records, and retries what is safe to retry: transport failures
    /// (with the same `Idempotency-Key`, or for reads), 429s (after `retry_after_ms`, or at once
    /// for bots), 503s, and a keyed request still being handled. Returns the final answer.
    async fn call(
        &mut self,
        step: Step,
        method: Method,
        path: &str,
        body: Option<Value>,
        operator: bool,
        keyed: bool,
    ) -> Result<Answer, Fail> {
        let sh = self.ctx.shared.clone();
        let s = &sh.scenario;
        let key = (keyed && s.idempotency_keys).then(|| {
            self.keys += 1;
            format!("{}-{}", self.id.user, self.keys)
        });
        let retry_transport = !keyed || key.is_some();
        let (mut transport, mut limited, mut unavailable, mut pending) = (0u32, 0u32, 0u32, 0u32);
        loop {
            if self.is_bot() && self.rec.requests >= s.bot_max_requests as u64 {
                return Err(Fail::Budget);
            }
            actix_rt::time::sleep_until(self.next.into()).await;
            let intended = self.next;
            let token = if operator {
                self.ctx.api.operator_token().to_string()
            } else {
                self.token.clone()
            };
            let ip = (s.spoof_ips && !operator).then_some(self.id.ip.as_str());
            let call = Call {
                method: method.clone(),
                path,
                token: &token,
                body: body.as_ref(),
                ip,
                key: key.as_deref(),
            };
            let window = Duration::from_millis(s.rules.opening_window_ms);
            let counted = step.at(intended, sh.opening, window);
            let result = self.ctx.api.send(&call).await;
            let done = Instant::now();
            self.next = done;
            let ending = match &result {
                Ok(a) => a.ending(),
                Err(kind) => Ending::Transport(kind.clone()),
            };
            let is_error = ending.error_kind().is_some();
            lock(&sh.recorder).request(counted, self.plan.kind, intended, done, &ending);
            Live::add(&sh.live.requests, 1);
            if is_error {
                Live::add(&sh.live.errors, 1);
            }
            self.rec.requests += 1;
            if matches!(
                step,
                Step::Keyboard | Step::Custom | Step::Draw | Step::Candidate | Step::Claim
            ) {
                self.rec.selection_requests += 1;
            }
            let answer = match result {
                Err(kind) => {
                    if retry_transport && transport < s.transport_retries {
                        transport += 1;
                        self.next =
                            done + Duration::from_millis((200 * transport as u64).min(1_000));
                        continue;
                    }
                    return Err(Fail::Transport(kind));
                }
                Ok(a) => a,
            };
            let retry_after = Duration::from_millis(answer.retry_after_ms().unwrap_or(1_000));
            match (answer.status, answer.code()) {
                (429, Some(code @ ("too_many_requests" | "too_soon"))) => {
                    let cap = if self.is_bot() { u32::MAX } else { 30 };
                    if limited < cap {
                        limited += 1;
                        // Every buyer honours an office interval (a draw or check sooner is
                        // refused anyway, R4.14); bots press on against the rate limit.
                        self.next = done
                            + if self.is_bot() && code == "too_many_requests" {
                                Duration::from_millis(s.bot_retry_ms)
                            } else {
                                retry_after
                            };
                        continue;
                    }
                }
                (409, Some("conflict"))
                    if key.is_some() && pending < 20 && answer.in_progress() =>
                {
                    // The first send with this key is still being handled.
                    pending += 1;
                    self.next = done + Duration::from_millis(100);
                    continue;
                }
                (503, _) if unavailable < 5 => {
                    unavailable += 1;
                    self.next = done + retry_after;
                    continue;
                }
                _ => {}
            }
            if pending >= 20 && answer.in_progress() {
                return Err(Fail::Transport("idempotency_pending".into()));
            }
            return Ok(answer);
        }
    }

    async fn walk(&mut self) -> Stop {
        if let Err(stop) = self.stage1().await {
            return stop;
        }
        let start = self.ctx.shared.opening + self.plan.reaction;
        self.wait_until(start);
        if self.plan.style == Style::Custom {
            if let Some(stop) = self.custom().await {
                return stop;
            }
        }
        self.random().await
    }

    /// The last code of `purpose` the outbox holds for the buyer's phone.
    async fn read_code(&mut self, purpose: &str) -> Result<String, Stop> {
        let path = format!("/v1/admin/sms/outbox?phone={}", query_value(&self.id.phone));
        for _ in 0..40 {
            let a = self
                .call(Step::Outbox, Method::GET, &path, None, true, false)
                .await
                .map_err(|f| fail_stop("sms outbox", f))?;
            if !a.ok() {
                return Err(failed("sms outbox", a.describe()));
            }
            let code = crate::api::list(&a.body, &["messages", "outbox"])
                .iter()
                .rev()
                .find(|m| m.get("purpose").and_then(Value::as_str) == Some(purpose))
                .and_then(|m| m.get("text").and_then(Value::as_str))
                .and_then(sms_code);
            if let Some(c) = code {
                return Ok(c);
            }
            self.next += Duration::from_millis(50);
        }
        Err(failed("sms outbox", format!("no {purpose} code arrived")))
    }

    /// Stage 1 (R4.1, R4.2) and identity (R4.4).
    async fn stage1(&mut self) -> Result<(), Stop> {
        let sh = self.ctx.shared.clone();
        let a = self
            .call(
                Step::SmsApply,
                Method::POST,
                "/v1/sms",
                Some(json!({"purpose": "apply"})),
                false,
                false,
            )
            .await
            .map_err(|f| fail_stop("sms apply", f))?;
        if !a.ok() && a.code() != Some("sms_too_soon") {
            return Err(failed("sms apply", a.describe()));
        }
        let code = self.read_code("apply").await?;
        self.think();
        let body = json!({
            "office": sh.office,
            "vin": self.id.vin,
            "voucher": self.id.voucher,
            "notice_version": sh.notice_version,
            "sms_code": code,
        });
        let a = self
            .call(
                Step::Apply,
                Method::POST,
                "/v1/applications",
                Some(body),
                false,
                true,
            )
            .await
            .map_err(|f| fail_stop("apply", f))?;
        let id = match (a.status, a.body.get("id").and_then(Value::as_str)) {
            (201, Some(id)) => id.to_string(),
            _ => return Err(failed("apply", a.describe())),
        };
        self.rec.application = Some(id.clone());
        self.app = id.clone();
        let a = self
            .call(
                Step::SmsIdentity,
                Method::POST,
                "/v1/sms",
                Some(json!({"purpose": "identity", "application": id})),
                false,
                false,
            )
            .await
            .map_err(|f| fail_stop("sms identity", f))?;
        let sent = self.next;
        let delay = match (a.ok(), a.code()) {
            (true, _) => a
                .body
                .get("confirm_after_ms")
                .and_then(Value::as_u64)
                .unwrap_or(sh.scenario.rules.sms_confirm_delay_ms),
            (false, Some("sms_too_soon")) => sh.scenario.rules.sms_confirm_delay_ms,
            _ => return Err(failed("sms identity", a.describe())),
        };
        let code = self.read_code("identity").await?;
        // The confirm button counts down from the send (the answer came after the server's clock
        // started it, so this is never early).
        self.wait_until(sent + Duration::from_millis(delay + 5));
        self.glance();
        let path = format!("/v1/applications/{id}/identity");
        for _ in 0..10 {
            let a = self
                .call(
                    Step::Identity,
                    Method::POST,
                    &path,
                    Some(json!({"sms_code": code})),
                    false,
                    true,
                )
                .await
                .map_err(|f| fail_stop("identity", f))?;
            if a.ok() {
                let interval = Duration::from_millis(sh.scenario.rules.custom_min_interval_ms);
                self.next_check = self.next + interval;
                return Ok(());
            }
            if a.code() == Some("sms_too_soon") {
                let wait = a.retry_after_ms().unwrap_or(200);
                self.next += Duration::from_millis(wait);
                continue;
            }
            return Err(failed("identity", a.describe()));
        }
        Err(failed("identity", "the code stayed too soon"))
    }

    /// The keyboard's enabled characters per position, given `entered`.
    async fn keyboard(&mut self, entered: &str) -> Result<Vec<Vec<u8>>, Stop> {
        let path = format!(
            "/v1/applications/{}/keyboard?entered={}",
            self.app,
            query_value(entered)
        );
        let a = self
            .call(Step::Keyboard, Method::GET, &path, None, false, false)
            .await
            .map_err(|f| fail_stop("keyboard", f))?;
        if !a.ok() {
            return Err(failed("keyboard", a.describe()));
        }
        let positions = crate::api::list(&a.body, &["positions"]);
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            let enabled = p.get("enabled").and_then(Value::as_str).unwrap_or("");
            out.push(enabled.bytes().collect());
        }
        Ok(out)
    }

    /// After an answer that leaves open whether a claim was made (no answer, or 409 `conflict`
    /// with reason `interrupted`), reads the application, as the front end does when the server
    /// says so: a claim found there is the buyer's claim; otherwise the claim stays uncertain
    /// (the audit allows it either way).
    async fn uncertain_claim(&mut self, via: Style) -> Option<Stop> {
        let path = format!("/v1/applications/{}", self.app);
        let found = match self
            .call(Step::Application, Method::GET, &path, None, false, false)
            .await
        {
            Ok(a) if a.body.get("state").and_then(Value::as_str) == Some("claimed") => a
                .body
                .get("claim")
                .and_then(|c| c.get("serial"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        match found {
            Some(serial) => Some(self.claimed(&serial, via)),
            None => {
                self.rec.uncertain_claims += 1;
                None
            }
        }
    }

    fn claimed(&mut self, serial: &str, via: Style) -> Stop {
        let sh = &self.ctx.shared;
        self.rec.claim = Some(serial.to_ascii_uppercase());
        self.rec.claim_via = Some(via);
        Live::add(&sh.live.claims, 1);
        lock(&sh.recorder).claim(Instant::now());
        (Outcome::Claimed, None)
    }

    /// Custom selection (R4.5). `None`: go on to random selection.
    async fn custom(&mut self) -> Option<Stop> {
        let sh = self.ctx.shared.clone();
        let s = &sh.scenario;
        let mut tried: HashSet<String> = HashSet::new();
        let mut targets: Option<Vec<String>> = None;
        let mut errors = 0;
        let path = format!("/v1/applications/{}/custom", self.app);
        while self.custom_left > 0 {
            let n = s.rules.custom_per_check.min(self.custom_left) as usize;
            let kb = match self.keyboard("").await {
                Ok(k) => k,
                Err(stop) => return Some(stop),
            };
            if kb.is_empty() || kb.iter().any(Vec::is_empty) {
                // Nothing of the class is available to type.
                return None;
            }
            let plates = if self.is_bot() {
                let len = kb.len();
                let t = targets.get_or_insert_with(|| {
                    let middle = if len > 5 {
                        kb[1..len - 4].to_vec()
                    } else {
                        Vec::new()
                    };
                    lucky::bot_targets(&kb[0], &middle, &sh.composition)
                });
                let mut next: Vec<String> = t
                    .iter()
                    .filter(|x| !tried.contains(*x))
                    .filter(|x| x.bytes().zip(kb.iter()).all(|(c, set)| set.contains(&c)))
                    .take(n)
                    .cloned()
                    .collect();
                if next.len() < n {
                    let more = lucky::wishes(
                        &kb,
                        None,
                        n - next.len(),
                        1.0,
                        &tried,
                        &sh.composition,
                        &mut self.rng,
                    );
                    next.extend(
                        more.into_iter()
                            .filter(|m| !next.contains(m))
                            .collect::<Vec<_>>(),
                    );
                }
                next
            } else {
                self.glance();
                let first = kb[0][self.rng.random_range(0..kb[0].len())];
                let guided = match self.keyboard(&(first as char).to_string()).await {
                    Ok(k) => k,
                    Err(stop) => return Some(stop),
                };
                if guided.len() != kb.len() || guided.iter().any(Vec::is_empty) {
                    continue;
                }
                self.think();
                lucky::wishes(
                    &guided,
                    Some(first),
                    n,
                    s.lucky_preference,
                    &tried,
                    &sh.composition,
                    &mut self.rng,
                )
            };
            if plates.is_empty() {
                return None;
            }
            if !self.is_bot() {
                // A person presses "check" once the button's countdown is over.
                let at = self.next_check;
                self.wait_until(at);
            }
            let count = plates.len() as u32;
            let body = json!({ "plates": plates });
            let a = match self
                .call(Step::Custom, Method::POST, &path, Some(body), false, true)
                .await
            {
                Ok(a) => a,
                Err(Fail::Budget) => return Some((Outcome::GaveUp, None)),
                Err(Fail::Transport(kind)) => {
                    self.rec.custom_debit.maybe(count);
                    if let Some(stop) = self.uncertain_claim(Style::Custom).await {
                        return Some(stop);
                    }
                    errors += 1;
                    if errors >= 3 || !s.idempotency_keys {
                        return Some(failed("custom", format!("no answer ({kind})")));
                    }
                    continue;
                }
            };
            match (a.status, a.code()) {
                (200 | 201, _) => {
                    let serial = a
                        .body
                        .get("claim")
                        .and_then(|c| c.get("serial"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    match plates.iter().position(|p| p.eq_ignore_ascii_case(&serial)) {
                        Some(i) => self.rec.custom_debit.exact(i as u32 + 1),
                        None => {
                            self.rec.custom_debit.exact(1);
                            self.rec.custom_debit.maybe(count - 1);
                        }
                    }
                    return Some(self.claimed(&serial, Style::Custom));
                }
                (409, Some("not_available")) => {
                    self.rec.custom_debit.exact(count);
                    tried.extend(plates);
                    self.custom_left = a
                        .error_u64("custom_left")
                        .map(|v| v as u32)
                        .unwrap_or(self.custom_left.saturating_sub(count));
                    let wait = Duration::from_millis(
                        a.error_u64("next_check_in_ms")
                            .unwrap_or(s.rules.custom_min_interval_ms),
                    );
                    let done = self.next;
                    self.next_check = done + wait;
                    if self.is_bot() {
                        self.next =
                            done + wait.saturating_sub(Duration::from_millis(s.bot_early_ms));
                    } else {
                        self.think();
                    }
                }
                (409, Some("quota_spent")) => self.custom_left = 0,
                (409, Some("exhausted")) => return Some((Outcome::Exhausted, None)),
                _ if a.interrupted() => {
                    // The check may have run before the crash: its numbers debited, maybe a
                    // claim made (the audit allows either).
                    self.rec.custom_debit.maybe(count);
                    if let Some(stop) = self.uncertain_claim(Style::Custom).await {
                        return Some(stop);
                    }
                    errors += 1;
                    if errors >= 3 {
                        return Some(failed("custom", a.describe()));
                    }
                }
                _ => {
                    errors += 1;
                    if errors >= 3 {
                        return Some(failed("custom", a.describe()));
                    }
                }
            }
        }
        None
    }

    fn candidates_live(&self) -> bool {
        !self.candidates.is_empty() && Instant::now() < self.candidates_until
    }

    fn set_candidates(&mut self, hold: Option<&Value>) {
        match hold {
            Some(h) if !h.is_null() => {
                self.candidates = hold_serials(h);
                let ms = h.get("expires_in_ms").and_then(Value::as_u64).unwrap_or(0);
                self.candidates_until = Instant::now() + Duration::from_millis(ms);
            }
            _ => self.candidates.clear(),
        }
    }

    /// Claims the best live candidate, trying the next one if a hold is gone. `None`: no live
    /// candidate could be claimed.
    async fn claim_best(&mut self) -> Option<Stop> {
        let path = format!("/v1/applications/{}/claim", self.app);
        while self.candidates_live() {
            let i = lucky::best(&self.candidates)?;
            let serial = self.candidates[i].clone();
            let a = match self
                .call(
                    Step::Claim,
                    Method::POST,
                    &path,
                    Some(json!({ "serial": serial })),
                    false,
                    true,
                )
                .await
            {
                Ok(a) => a,
                Err(Fail::Budget) => return Some((Outcome::GaveUp, None)),
                Err(Fail::Transport(kind)) => {
                    if let Some(stop) = self.uncertain_claim(Style::Random).await {
                        return Some(stop);
                    }
                    return Some(failed("claim", format!("no answer ({kind})")));
                }
            };
            if a.ok() {
                let got = a
                    .body
                    .get("claim")
                    .and_then(|c| c.get("serial"))
                    .and_then(Value::as_str)
                    .unwrap_or(&serial)
                    .to_string();
                return Some(self.claimed(&got, Style::Random));
            }
            match a.code() {
                Some("hold_expired" | "not_held" | "not_available") => {
                    self.candidates.remove(i);
                }
                Some("exhausted") => return Some((Outcome::Exhausted, None)),
                _ => {
                    if a.interrupted() {
                        // The claim may have been made before the crash.
                        if let Some(stop) = self.uncertain_claim(Style::Random).await {
                            return Some(stop);
                        }
                    }
                    return Some(failed("claim", a.describe()));
                }
            }
        }
        None
    }

    /// Random selection (R4.6).
    async fn random(&mut self) -> Stop {
        let sh = self.ctx.shared.clone();
        let s = &sh.scenario;
        let draws = format!("/v1/applications/{}/draws", self.app);
        let pick = format!("/v1/applications/{}/candidates", self.app);
        let mut errors = 0;
        // When the pool first looked empty, and how many claims the run had acknowledged then.
        let mut empty_since: Option<(Instant, u64)> = None;
        let patience = Duration::from_millis(s.rules.longest_holding_ms() + 1_000);
        // Every draw answered, found or not, starts the office's interval (R4.14): the next
        // one is not sent before it ends.
        let interval = Duration::from_millis(s.rules.random_min_interval_ms);
        let mut last_draw: Option<Instant> = None;
        while self.random_left > 0 {
            if let Some(at) = last_draw {
                self.wait_until(at + interval);
            }
            let exclude_four = !self.is_bot() && self.rng.random_bool(s.exclude_four_share);
            let a = match self
                .call(
                    Step::Draw,
                    Method::POST,
                    &draws,
                    Some(json!({ "exclude_four": exclude_four })),
                    false,
                    true,
                )
                .await
            {
                Ok(a) => a,
                Err(Fail::Budget) => return (Outcome::GaveUp, None),
                Err(Fail::Transport(kind)) => {
                    self.drew = true;
                    self.rec.random_debit.maybe(1);
                    errors += 1;
                    if errors >= 3 || !s.idempotency_keys {
                        return failed("draw", format!("no answer ({kind})"));
                    }
                    continue;
                }
            };
            last_draw = Some(self.next);
            let first = !self.drew;
            self.drew = true;
            let batch = match (a.status, a.code()) {
                (200 | 201, _) => {
                    empty_since = None;
                    self.rec.random_debit.exact(1);
                    self.random_left = a
                        .body
                        .get("random_left")
                        .and_then(Value::as_u64)
                        .map(|v| v as u32)
                        .unwrap_or(self.random_left.saturating_sub(1));
                    self.set_candidates(a.body.get("candidates"));
                    let batch: Vec<String> =
                        a.body.get("batch").map(hold_serials).unwrap_or_default();
                    if first {
                        self.rec.first_batch = batch.clone();
                    }
                    batch
                }
                (409, Some("not_available")) => {
                    if let Some(stop) = self.claim_best().await {
                        return stop;
                    }
                    // Numbers others hold come back when they claim or let go. Like a person
                    // watching the pool notice shrink, look again while anybody is still
                    // claiming; give up once nobody has for as long as any application can
                    // hold numbers without claiming.
                    let now = self.next;
                    let claims = Live::get(&sh.live.claims);
                    match empty_since {
                        Some((_, seen)) if seen == claims => {}
                        _ => empty_since = Some((now, claims)),
                    }
                    let since = empty_since.map_or(now, |(at, _)| at);
                    if now.duration_since(since) > patience {
                        return (Outcome::PoolEmpty, None);
                    }
                    if self.is_bot() {
                        self.next += Duration::from_millis(s.bot_retry_ms.max(1));
                    } else {
                        self.think();
                        self.think();
                    }
                    continue;
                }
                (409, Some("quota_spent")) => {
                    self.random_left = 0;
                    break;
                }
                (409, Some("exhausted")) => return (Outcome::Exhausted, None),
                _ => {
                    if a.interrupted() {
                        // The draw may have run before the crash and debited one draw.
                        self.rec.random_debit.maybe(1);
                    }
                    errors += 1;
                    if errors >= 3 {
                        return failed("draw", a.describe());
                    }
                    continue;
                }
            };
            self.think();
            if let Some(i) = lucky::best(&batch) {
                match self
                    .call(
                        Step::Candidate,
                        Method::POST,
                        &pick,
                        Some(json!({ "serial": batch[i] })),
                        false,
                        true,
                    )
                    .await
                {
                    Ok(a) if a.ok() => self.set_candidates(a.body.get("candidates")),
                    Ok(_) => {}
                    Err(Fail::Budget) => return (Outcome::GaveUp, None),
                    Err(Fail::Transport(_)) => errors += 1,
                }
            }
            let best =
                lucky::best(&self.candidates).map(|i| lucky::lucky_score(&self.candidates[i]));
            let settle = match (self.plan.kind, best) {
                (_, None) => false,
                (_, Some(_)) if self.random_left == 0 => true,
                (Kind::Bot, Some(score)) => score >= 3,
                (Kind::Person, Some(score)) => {
                    score >= 2 || self.rng.random_bool(s.settle_probability)
                }
            };
            if settle {
                self.think();
                if let Some(stop) = self.claim_best().await {
                    return stop;
                }
            }
        }
        match self.claim_best().await {
            Some(stop) => stop,
            None => (Outcome::Exhausted, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_codes_are_read_from_the_text() {
        assert_eq!(
            sms_code(
                "【互联网预选号牌】您正在申请预选号牌，验证码 042137，5分钟内有效，请勿告诉他人。"
            )
            .as_deref(),
            Some("042137")
        );
        assert_eq!(sms_code("code 123456").as_deref(), Some("123456"));
        assert_eq!(sms_code("1234567 and 12345"), None);
        assert_eq!(sms_code("no code"), None);
    }

    #[test]
    fn debits_track_certain_and_uncertain_calls() {
        let mut d = Debit::default();
        d.exact(5);
        d.maybe(3);
        assert_eq!(d, Debit { min: 5, max: 8 });
        assert_eq!(Outcome::PoolEmpty.as_str(), "pool_empty");
        let r = BuyerRecord::new(3, "u", Kind::Bot, Style::Random);
        assert_eq!(r.outcome, Outcome::Failed);
        let text = serde_json::to_string(&r).expect("json");
        let back: BuyerRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
    }
}
