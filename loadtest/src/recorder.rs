//! What the load saw: latency per step (HdrHistogram, microseconds, measured from the intended
//! send time), answers by code, errors by kind, and a per-second timeline of offered and accepted
//! load. Shared by the workers behind a mutex (held for a few hundred nanoseconds per request).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::scenario::Kind;

/// A step of the citizen flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    SmsApply,
    Outbox,
    Apply,
    SmsIdentity,
    Identity,
    Keyboard,
    Custom,
    Draw,
    Candidate,
    Claim,
    /// A read of the application after an answer that left its claim uncertain.
    Application,
    /// A draw sent in the release's opening window (the office holds it until the window ends,
    /// then serves the window's requests in random order).
    DrawOpening,
    /// A custom check sent in the opening window.
    CustomOpening,
}

impl Step {
    pub const ALL: [Step; 13] = [
        Step::SmsApply,
        Step::Outbox,
        Step::Apply,
        Step::SmsIdentity,
        Step::Identity,
        Step::Keyboard,
        Step::Custom,
        Step::Draw,
        Step::Candidate,
        Step::Claim,
        Step::Application,
        Step::DrawOpening,
        Step::CustomOpening,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::SmsApply => "sms_apply",
            Step::Outbox => "sms_outbox",
            Step::Apply => "apply",
            Step::SmsIdentity => "sms_identity",
            Step::Identity => "identity",
            Step::Keyboard => "keyboard",
            Step::Custom => "custom",
            Step::Draw => "draw",
            Step::Candidate => "candidate",
            Step::Claim => "claim",
            Step::Application => "application",
            Step::DrawOpening => "draw@opening",
            Step::CustomOpening => "custom@opening",
        }
    }

    /// Sent in the opening window: its latency includes the wait the office imposes by design.
    pub fn windowed(self) -> bool {
        matches!(self, Step::DrawOpening | Step::CustomOpening)
    }

    /// Sent only after a fault: a clean run has none.
    pub fn after_faults(self) -> bool {
        self == Step::Application
    }

    /// The step a request of this kind counts under when intended at `intended`, given the
    /// opening window `[opening, opening + window)`.
    pub fn at(self, intended: Instant, opening: Instant, window: Duration) -> Step {
        let in_window = intended >= opening && intended < opening + window;
        match self {
            Step::Draw if in_window => Step::DrawOpening,
            Step::Custom if in_window => Step::CustomOpening,
            other => other,
        }
    }

    /// What the request is, for the report.
    pub fn route(self) -> &'static str {
        match self {
            Step::SmsApply => "POST /v1/sms (apply)",
            Step::Outbox => "GET /v1/admin/sms/outbox",
            Step::Apply => "POST /v1/applications",
            Step::SmsIdentity => "POST /v1/sms (identity)",
            Step::Identity => "POST /v1/applications/{id}/identity",
            Step::Keyboard => "GET /v1/applications/{id}/keyboard",
            Step::Custom => "POST /v1/applications/{id}/custom",
            Step::Draw => "POST /v1/applications/{id}/draws",
            Step::Candidate => "POST /v1/applications/{id}/candidates",
            Step::Claim => "POST /v1/applications/{id}/claim",
            Step::Application => "GET /v1/applications/{id} (after an uncertain claim)",
            Step::DrawOpening => "POST /v1/applications/{id}/draws (opening window)",
            Step::CustomOpening => "POST /v1/applications/{id}/custom (opening window)",
        }
    }

    fn index(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// Codes that are the business answering, not failing: a refusal the flow expects and handles.
pub fn is_business_code(code: &str) -> bool {
    matches!(
        code,
        "not_available"
            | "too_soon"
            | "too_many_requests"
            | "sms_too_soon"
            | "quota_spent"
            | "exhausted"
            | "hold_expired"
            | "not_held"
    )
}

/// How one request ended, as the recorder counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// An answer: HTTP status and the error code, if any.
    Answer { status: u16, code: Option<String> },
    /// No answer: timeout, refused connection, …
    Transport(String),
}

impl Ending {
    /// The error kind, or `None` when the request got a success or a business answer.
    pub fn error_kind(&self) -> Option<String> {
        match self {
            Ending::Transport(kind) => Some(format!("transport: {kind}")),
            Ending::Answer { status, code } => {
                if (200..300).contains(status) {
                    return None;
                }
                match code {
                    Some(c) if is_business_code(c) && *status < 500 => None,
                    Some(c) => Some(format!("{status} {c}")),
                    None => Some(format!("{status} (no error code)")),
                }
            }
        }
    }

    /// The label an answer is counted under in its step: `ok`, the error code, or the transport
    /// failure.
    pub fn label(&self) -> String {
        match self {
            Ending::Answer { status, .. } if (200..300).contains(status) => "ok".into(),
            Ending::Answer { status, code } => {
                code.clone().unwrap_or_else(|| format!("http_{status}"))
            }
            Ending::Transport(kind) => format!("transport_{kind}"),
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits; values beyond are clamped when recorded.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub errors: u64,
    pub labels: BTreeMap<String, u64>,
}

impl StepRecord {
    fn new() -> StepRecord {
        StepRecord {
            latency: histogram(),
            sent: 0,
            errors: 0,
            labels: BTreeMap::new(),
        }
    }
}

/// One second of the run (from the start of the load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Requests whose intended send time fell in this second (offered load).
    pub offered: u64,
    /// Answers received in this second that were not errors (accepted load).
    pub accepted: u64,
    pub errors: u64,
    /// Buyers that arrived (started) in this second.
    pub arrivals: u64,
    /// Buyers that finished in this second.
    pub finished: u64,
    /// Claims acknowledged in this second.
    pub claims: u64,
}

/// Requests per kind of buyer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub requests: u64,
    pub errors: u64,
    pub too_soon: u64,
    pub too_many_requests: u64,
}

#[derive(Debug)]
pub struct Recorder {
    pub t0: Instant,
    pub steps: Vec<StepRecord>,
    pub all: Histogram<u64>,
    pub timeline: Vec<Second>,
    pub errors: BTreeMap<String, u64>,
    pub people: KindCounts,
    pub bots: KindCounts,
}

/// Counters the live progress line reads without the lock.
#[derive(Debug, Default)]
pub struct Live {
    pub arrived: AtomicU64,
    pub finished: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub claims: AtomicU64,
}

impl Live {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Recorder {
    pub fn new(t0: Instant) -> Recorder {
        Recorder {
            t0,
            steps: Step::ALL.iter().map(|_| StepRecord::new()).collect(),
            all: histogram(),
            timeline: Vec::new(),
            errors: BTreeMap::new(),
            people: KindCounts::default(),
            bots: KindCounts::default(),
        }
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let s = at.saturating_duration_since(self.t0).as_secs() as usize;
        if self.timeline.len() <= s {
            self.timeline.resize(s + 1, Second::default());
        }
        &mut self.timeline[s]
    }

    /// One request: intended to go at `intended`, answered (or failed) at `done`.
    pub fn request(
        &mut self,
        step: Step,
        kind: Kind,
        intended: Instant,
        done: Instant,
        ending: &Ending,
    ) {
        let micros = done
            .saturating_duration_since(intended)
            .as_micros()
            .clamp(1, 3_600_000_000) as u64;
        let error = ending.error_kind();
        let label = ending.label();
        let rec = &mut self.steps[step.index()];
        rec.sent += 1;
        *rec.labels.entry(label.clone()).or_insert(0) += 1;
        if matches!(ending, Ending::Answer { .. }) {
            let _ = rec.latency.record(micros);
            let _ = self.all.record(micros);
        }
        let counts = match kind {
            Kind::Person => &mut self.people,
            Kind::Bot => &mut self.bots,
        };
        counts.requests += 1;
        match label.as_str() {
            "too_soon" => counts.too_soon += 1,
            "too_many_requests" => counts.too_many_requests += 1,
            _ => {}
        }
        if error.is_some() {
            counts.errors += 1;
        }
        if error.is_some() {
            rec.errors += 1;
        }
        self.second(intended).offered += 1;
        match error {
            Some(kind) => {
                *self.errors.entry(kind).or_insert(0) += 1;
                self.second(done).errors += 1;
            }
            None => self.second(done).accepted += 1,
        }
    }

    pub fn arrival(&mut self, at: Instant) {
        self.second(at).arrivals += 1;
    }

    pub fn finished(&mut self, at: Instant) {
        self.second(at).finished += 1;
    }

    pub fn claim(&mut self, at: Instant) {
        self.second(at).claims += 1;
    }

    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.sent).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn step(&self, step: Step) -> &StepRecord {
        &self.steps[step.index()]
    }

    /// Overall latency so far, at quantile `q`.
    pub fn overall(&self, q: f64) -> Duration {
        Duration::from_micros(self.all.value_at_quantile(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&str>) -> Ending {
        Ending::Answer {
            status,
            code: code.map(str::to_string),
        }
    }

    #[test]
    fn draws_and_checks_in_the_opening_window_count_apart() {
        let opening = Instant::now();
        let w = Duration::from_millis(1_000);
        let at = |ms: u64| opening + Duration::from_millis(ms);
        assert_eq!(Step::Draw.at(at(0), opening, w), Step::DrawOpening);
        assert_eq!(Step::Draw.at(at(999), opening, w), Step::DrawOpening);
        assert_eq!(Step::Draw.at(at(1_000), opening, w), Step::Draw);
        assert_eq!(Step::Custom.at(at(10), opening, w), Step::CustomOpening);
        assert_eq!(Step::Claim.at(at(10), opening, w), Step::Claim);
        assert_eq!(Step::Draw.at(at(10), opening, Duration::ZERO), Step::Draw);
        assert!(Step::DrawOpening.windowed() && !Step::Draw.windowed());
        assert_eq!(Step::ALL.iter().filter(|s| s.windowed()).count(), 2);
    }

    #[test]
    fn business_answers_are_not_errors() {
        assert_eq!(answer(201, None).error_kind(), None);
        assert_eq!(answer(409, Some("not_available")).error_kind(), None);
        assert_eq!(answer(429, Some("too_soon")).error_kind(), None);
        assert_eq!(answer(429, Some("too_many_requests")).error_kind(), None);
        assert_eq!(
            answer(400, Some("invalid_plate")).error_kind().as_deref(),
            Some("400 invalid_plate")
        );
        assert_eq!(
            answer(503, Some("unavailable")).error_kind().as_deref(),
            Some("503 unavailable")
        );
        assert_eq!(
            answer(502, None).error_kind().as_deref(),
            Some("502 (no error code)")
        );
        assert_eq!(
            Ending::Transport("timeout".into()).error_kind().as_deref(),
            Some("transport: timeout")
        );
        assert_eq!(answer(200, None).label(), "ok");
        assert_eq!(answer(409, Some("exhausted")).label(), "exhausted");
    }

    #[test]
    fn latency_counts_from_the_intended_time_and_the_timeline_buckets_by_second() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        // Intended at 0.5 s, sent late, answered at 2.5 s: 2 s of latency, offered in second 0,
        // accepted in second 2.
        let intended = t0 + Duration::from_millis(500);
        let done = t0 + Duration::from_millis(2_500);
        r.request(Step::Draw, Kind::Bot, intended, done, &answer(201, None));
        r.request(
            Step::Draw,
            Kind::Person,
            done,
            done,
            &answer(503, Some("unavailable")),
        );
        r.request(
            Step::Claim,
            Kind::Person,
            done,
            done,
            &Ending::Transport("connect".into()),
        );
        let draw = r.step(Step::Draw);
        assert_eq!(draw.sent, 2);
        assert_eq!(draw.errors, 1);
        let max = Duration::from_micros(draw.latency.max());
        assert!(
            max >= Duration::from_millis(1_990) && max <= Duration::from_millis(2_010),
            "{max:?}"
        );
        assert_eq!(r.timeline[0].offered, 1);
        assert_eq!(r.timeline[2].offered, 2);
        assert_eq!(r.timeline[2].accepted, 1);
        assert_eq!(r.timeline[2].errors, 2);
        assert_eq!(r.requests(), 3);
        assert_eq!(r.error_count(), 2);
        assert_eq!(r.errors.get("503 unavailable"), Some(&1));
        assert_eq!(r.bots.requests, 1);
        assert_eq!(r.people.errors, 2);
        // Transport failures have no latency.
        assert_eq!(r.step(Step::Claim).latency.len(), 0);
    }
}
