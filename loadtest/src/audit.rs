//! The audit: after the run (and after every hold's lifetime), the office is read back through
//! the operator API and checked against what the tool saw.
//!
//! - I1: no number claimed by two applications;
//! - I2: every application and claim the tool saw acknowledged is present (and no claim exists
//!   that nobody was told about, unless a call went unanswered);
//! - I3: quotas debited exactly as the calls made;
//! - I4: no hold left;
//! - conservation: the release's counts add up to its size, and its claimed count is the claims
//!   found;
//! - fairness: the share of claims and of lucky numbers won by bots and by people, per request.
//!
//! [`audit`] is pure (history + server view → report) so a corrupted history can be fed to it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{hold_serials, list, query_value, Api};
use crate::buyer::BuyerRecord;
use crate::lucky::is_lucky;
use crate::prepare::for_each_concurrent;
use crate::scenario::Kind;

/// Examples kept per check.
const EXAMPLES_MAX: usize = 10;

/// An application as the operator API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerApp {
    pub id: String,
    pub user: String,
    pub state: String,
    pub custom_left: u32,
    pub random_left: u32,
    pub claim: Option<String>,
    pub claim_void: bool,
    /// Numbers in a live batch or candidate list.
    pub live_holds: u32,
}

impl ServerApp {
    /// Reads an application document (API.md `GET /v1/applications/{id}` shape).
    pub fn from_json(v: &Value, user: &str) -> Option<ServerApp> {
        let id = v.get("id")?.as_str()?.to_string();
        let claim = v.get("claim").filter(|c| !c.is_null());
        let live = |h: Option<&Value>| -> u32 {
            match h {
                Some(h)
                    if !h.is_null()
                        && h.get("expires_in_ms").and_then(Value::as_u64).unwrap_or(1) > 0 =>
                {
                    hold_serials(h).len() as u32
                }
                _ => 0,
            }
        };
        Some(ServerApp {
            id,
            user: v
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or(user)
                .to_string(),
            state: v
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            custom_left: v.get("custom_left").and_then(Value::as_u64).unwrap_or(0) as u32,
            random_left: v.get("random_left").and_then(Value::as_u64).unwrap_or(0) as u32,
            claim: claim
                .and_then(|c| c.get("serial"))
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase),
            claim_void: claim
                .and_then(|c| c.get("void"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            live_holds: live(v.get("batch")) + live(v.get("candidates")),
        })
    }

    /// Holds a live (claimed or issued) pre-selection.
    pub fn live_claim(&self) -> Option<&str> {
        match (&self.claim, self.state.as_str(), self.claim_void) {
            (Some(s), "claimed" | "issued", false) => Some(s),
            _ => None,
        }
    }
}

/// A release's counts in the office stats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCounts {
    pub id: String,
    pub total: u64,
    pub pending: u64,
    pub available: u64,
    pub held: u64,
    pub claimed: u64,
    pub issued: u64,
    pub withdrawn: u64,
}

impl ReleaseCounts {
    pub fn sum(&self) -> u64 {
        self.pending + self.available + self.held + self.claimed + self.issued + self.withdrawn
    }
}

/// The office as read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub apps: Vec<ServerApp>,
    /// Serial → ids of the applications `GET /v1/admin/applications?serial=` names.
    pub owners: BTreeMap<String, Vec<String>>,
    pub release: Option<ReleaseCounts>,
    /// Numbers held in the whole office.
    pub office_held: Option<u64>,
    /// Lookups that failed (the audit cannot vouch for them).
    pub unreadable: Vec<String>,
}

/// What the office was set up with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    pub custom_quota: u32,
    pub random_quota: u32,
    pub release_id: String,
    pub release_total: u64,
    /// The office was made for this run: every claim in the release is one of ours.
    pub exclusive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub title: String,
    pub passed: bool,
    /// Things examined.
    pub checked: u64,
    pub violations: u64,
    pub examples: Vec<String>,
}

impl Check {
    fn new(id: &str, title: &str) -> Check {
        Check {
            id: id.into(),
            title: title.into(),
            passed: true,
            checked: 0,
            violations: 0,
            examples: Vec::new(),
        }
    }

    fn violation(&mut self, what: String) {
        self.passed = false;
        self.violations += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(what);
        }
    }
}

/// Claims won by one kind of buyer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub buyers: u64,
    pub requests: u64,
    /// Selection requests (keyboard, custom checks, draws, candidates, claims).
    pub selection_requests: u64,
    pub claims: u64,
    pub lucky_claims: u64,
    /// Lucky claims of a number the buyer's first draw returned (the opening's order decides
    /// these; later draws find what others let go, first come first served).
    #[serde(default)]
    pub first_draw_lucky: u64,
    /// Share of all buyers.
    pub buyer_share: f64,
    /// Share of all claims.
    pub claim_share: f64,
    /// Share of all lucky claims.
    pub lucky_share: f64,
    /// Claims per buyer.
    pub claims_per_buyer: f64,
    /// Claims per 1,000 selection requests.
    pub claims_per_1k_requests: f64,
    pub lucky_per_1k_requests: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub people: Side,
    pub bots: Side,
    pub claims: u64,
    pub lucky_claims: u64,
    #[serde(default)]
    pub first_draw_lucky: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub passed: bool,
    pub checks: Vec<Check>,
    pub fairness: Fairness,
    pub acknowledged_claims: u64,
    pub server_claims: u64,
    /// The release's counts as read back.
    pub release: Option<ReleaseCounts>,
}

/// Checks the server view against the history.
pub fn audit(history: &[BuyerRecord], exp: &Expectations, server: &ServerView) -> AuditReport {
    let apps_by_id: HashMap<&str, &ServerApp> =
        server.apps.iter().map(|a| (a.id.as_str(), a)).collect();
    let buyer_by_user: HashMap<&str, &BuyerRecord> =
        history.iter().map(|b| (b.user.as_str(), b)).collect();
    let mut claims_by_serial: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for app in &server.apps {
        if let Some(s) = app.live_claim() {
            claims_by_serial.entry(s).or_default().push(&app.id);
        }
    }
    let server_claims: u64 = claims_by_serial.values().map(|v| v.len() as u64).sum();
    let acked: Vec<(&BuyerRecord, &str)> = history
        .iter()
        .filter_map(|b| b.claim.as_deref().map(|s| (b, s)))
        .collect();

    // I1
    let mut i1 = Check::new("I1", "no number is claimed by two applications");
    i1.checked = claims_by_serial.len() as u64;
    for (serial, ids) in &claims_by_serial {
        if ids.len() > 1 {
            i1.violation(format!("{serial} is claimed by {}", ids.join(", ")));
        }
        if let Some(owners) = server.owners.get(*serial) {
            if owners.len() > 1 {
                i1.violation(format!(
                    "{serial}: the serial lookup names {}",
                    owners.join(", ")
                ));
            } else if let Some(o) = owners.first() {
                if !ids.contains(&o.as_str()) {
                    i1.violation(format!(
                        "{serial}: the serial lookup names {o}, but {} claims it",
                        ids.join(", ")
                    ));
                }
            }
        }
    }
    let mut acked_by_serial: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (b, s) in &acked {
        acked_by_serial.entry(s).or_default().push(&b.user);
    }
    for (serial, users) in &acked_by_serial {
        if users.len() > 1 {
            i1.violation(format!(
                "{serial} was acknowledged as claimed to {}",
                users.join(", ")
            ));
        }
    }

    // I2
    let mut i2 = Check::new("I2", "every acknowledged application and claim is present");
    for b in history {
        let Some(app_id) = b.application.as_deref() else {
            continue;
        };
        i2.checked += 1;
        let Some(app) = apps_by_id.get(app_id) else {
            i2.violation(format!(
                "{}: application {app_id} was acknowledged but is missing",
                b.user
            ));
            continue;
        };
        if app.user != b.user {
            i2.violation(format!(
                "{app_id} belongs to {}, acknowledged to {}",
                app.user, b.user
            ));
        }
        if let Some(serial) = b.claim.as_deref() {
            i2.checked += 1;
            match app.live_claim() {
                Some(s) if s == serial => {}
                Some(s) => i2.violation(format!(
                    "{app_id}: acknowledged claim {serial}, the server has {s}"
                )),
                None => i2.violation(format!(
                    "{app_id}: acknowledged claim {serial} is missing (state {}, claim {:?})",
                    app.state, app.claim
                )),
            }
        }
    }
    for app in &server.apps {
        let Some(serial) = app.live_claim() else {
            continue;
        };
        match buyer_by_user.get(app.user.as_str()) {
            Some(b) if b.claim.is_none() && b.uncertain_claims == 0 => i2.violation(format!(
                "{}: claim {serial} exists but no call of {} was answered with it",
                app.id, b.user
            )),
            _ => {}
        }
    }

    // I3
    let mut i3 = Check::new("I3", "quotas debited exactly as the calls made");
    for b in history {
        let Some(app) = b.application.as_deref().and_then(|id| apps_by_id.get(id)) else {
            continue;
        };
        i3.checked += 1;
        let quota = |name: &str, quota: u32, left: u32, min: u32, max: u32, check: &mut Check| {
            if left > quota {
                check.violation(format!(
                    "{}: {name}_left {left} exceeds the quota {quota}",
                    app.id
                ));
                return;
            }
            let used = quota - left;
            if used < min || used > max {
                let expected = if min == max {
                    format!("{min}")
                } else {
                    format!("{min}..={max}")
                };
                check.violation(format!(
                    "{}: {name} quota debited {used}, the calls made debit {expected}",
                    app.id
                ));
            }
        };
        quota(
            "custom",
            exp.custom_quota,
            app.custom_left,
            b.custom_debit.min,
            b.custom_debit.max,
            &mut i3,
        );
        quota(
            "random",
            exp.random_quota,
            app.random_left,
            b.random_debit.min,
            b.random_debit.max,
            &mut i3,
        );
    }

    // I4
    let mut i4 = Check::new(
        "I4",
        "no hold is left once every hold's lifetime has passed",
    );
    match (server.office_held, &server.release) {
        (None, None) => i4.violation("the office stats could not be read".into()),
        (held, release) => {
            if let Some(h) = held {
                i4.checked += 1;
                if h > 0 {
                    i4.violation(format!("the office still counts {h} held numbers"));
                }
            }
            if let Some(r) = release {
                i4.checked += 1;
                if r.held > 0 {
                    i4.violation(format!(
                        "release {} still counts {} held numbers",
                        r.id, r.held
                    ));
                }
            }
        }
    }
    for app in &server.apps {
        i4.checked += 1;
        if app.live_holds > 0 {
            i4.violation(format!("{} still holds {} numbers", app.id, app.live_holds));
        }
    }

    // Conservation
    let mut cons = Check::new(
        "conservation",
        "the release's counts are conserved and match the claims",
    );
    match &server.release {
        None => cons.violation(format!(
            "release {} is missing from the office stats",
            exp.release_id
        )),
        Some(r) => {
            cons.checked += 1;
            if r.sum() != r.total {
                cons.violation(format!(
                    "release {}: pending {} + available {} + held {} + claimed {} + issued {} + withdrawn {} = {} ≠ total {}",
                    r.id, r.pending, r.available, r.held, r.claimed, r.issued, r.withdrawn, r.sum(), r.total
                ));
            }
            if exp.release_total > 0 && r.total != exp.release_total {
                cons.violation(format!(
                    "release {}: total {} ≠ {} released",
                    r.id, r.total, exp.release_total
                ));
            }
            if r.pending > 0 {
                cons.violation(format!(
                    "release {}: {} numbers still pending after the opening",
                    r.id, r.pending
                ));
            }
            let taken = r.claimed + r.issued;
            if exp.exclusive && taken != server_claims {
                cons.violation(format!(
                    "release {}: claimed + issued = {taken}, but the applications hold {server_claims} claims",
                    r.id
                ));
            }
            if !exp.exclusive && taken < server_claims {
                cons.violation(format!(
                    "release {}: claimed + issued = {taken} < the {server_claims} claims of this run",
                    r.id
                ));
            }
        }
    }
    let uncertain: u64 = history.iter().map(|b| b.uncertain_claims as u64).sum();
    let acked_n = acked.len() as u64;
    cons.checked += 1;
    if server_claims < acked_n || server_claims > acked_n + uncertain {
        cons.violation(format!(
            "{server_claims} claims on the server; the tool saw {acked_n} acknowledged and {uncertain} unanswered claim calls"
        ));
    }

    let mut checks = vec![i1, i2, i3, i4, cons];
    for u in &server.unreadable {
        if let Some(c) = checks.iter_mut().find(|c| c.id == "I2") {
            c.violation(format!("could not read {u}"));
        }
    }
    let fairness = fairness(history, server);
    AuditReport {
        passed: checks.iter().all(|c| c.passed),
        checks,
        fairness,
        acknowledged_claims: acked_n,
        server_claims,
        release: server.release.clone(),
    }
}

/// Claims and lucky claims won by bots and by people (the server's claims; kinds from the
/// history), per buyer and per request sent.
pub fn fairness(history: &[BuyerRecord], server: &ServerView) -> Fairness {
    let by_user: HashMap<&str, &BuyerRecord> =
        history.iter().map(|b| (b.user.as_str(), b)).collect();
    let mut f = Fairness::default();
    for b in history {
        let side = match b.kind {
            Kind::Person => &mut f.people,
            Kind::Bot => &mut f.bots,
        };
        side.buyers += 1;
        side.requests += b.requests;
        side.selection_requests += b.selection_requests;
    }
    for app in &server.apps {
        let Some(serial) = app.live_claim() else {
            continue;
        };
        let Some(buyer) = by_user.get(app.user.as_str()) else {
            continue;
        };
        let side = match buyer.kind {
            Kind::Person => &mut f.people,
            Kind::Bot => &mut f.bots,
        };
        side.claims += 1;
        f.claims += 1;
        if is_lucky(serial) {
            side.lucky_claims += 1;
            f.lucky_claims += 1;
            if buyer.first_batch.iter().any(|s| s == serial) {
                side.first_draw_lucky += 1;
                f.first_draw_lucky += 1;
            }
        }
    }
    let buyers = (f.people.buyers + f.bots.buyers) as f64;
    let ratio = |a: u64, b: f64| if b > 0.0 { a as f64 / b } else { 0.0 };
    let (claims, lucky) = (f.claims as f64, f.lucky_claims as f64);
    for side in [&mut f.people, &mut f.bots] {
        side.buyer_share = ratio(side.buyers, buyers);
        side.claim_share = ratio(side.claims, claims);
        side.lucky_share = ratio(side.lucky_claims, lucky);
        side.claims_per_buyer = ratio(side.claims, side.buyers as f64);
        side.claims_per_1k_requests = ratio(side.claims * 1_000, side.selection_requests as f64);
        side.lucky_per_1k_requests =
            ratio(side.lucky_claims * 1_000, side.selection_requests as f64);
    }
    f
}

fn count(obj: &Value, key: &str) -> u64 {
    obj.get(key)
        .and_then(Value::as_u64)
        .or_else(|| {
            obj.get("counts")
                .and_then(|c| c.get(key))
                .and_then(Value::as_u64)
        })
        .unwrap_or(0)
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the office stats: the release's counts, and the numbers held in the whole office (the
/// sum over the classes). Accepts counts flat in each object or under `counts`.
pub fn parse_stats(v: &Value, release_id: &str) -> (Option<ReleaseCounts>, Option<u64>) {
    let mut release = None;
    let mut held: Option<u64> = None;
    fn walk(
        v: &Value,
        release_id: &str,
        release: &mut Option<ReleaseCounts>,
        held: &mut Option<u64>,
    ) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, release_id, release, held)),
            Value::Object(o) => {
                if let Some(rs) = o.get("releases").and_then(Value::as_array) {
                    *held = Some(held.unwrap_or(0) + count(v, "held"));
                    for r in rs {
                        if r.get("id").and_then(id_text).as_deref() == Some(release_id) {
                            *release = Some(ReleaseCounts {
                                id: release_id.to_string(),
                                total: count(r, "total"),
                                pending: count(r, "pending"),
                                available: count(r, "available"),
                                held: count(r, "held"),
                                claimed: count(r, "claimed"),
                                issued: count(r, "issued"),
                                withdrawn: count(r, "withdrawn"),
                            });
                        }
                    }
                    return;
                }
                o.values().for_each(|x| walk(x, release_id, release, held));
            }
            _ => {}
        }
    }
    walk(v, release_id, &mut release, &mut held);
    (release, held)
}

/// Reads the office back. First waits `hold_wait` (the longest hold's lifetime after the last
/// call), then up to 5 s more for the stats to count no hold (I4 allows 1 s after expiry).
pub async fn fetch(
    api: &Api,
    office: &str,
    release_id: &str,
    history: &[BuyerRecord],
    hold_wait: Duration,
    say: &dyn Fn(&str),
) -> ServerView {
    let mut view = ServerView::default();
    if !hold_wait.is_zero() {
        say(&format!(
            "audit: waiting {:.1} s for every hold to expire",
            hold_wait.as_secs_f64()
        ));
        actix_rt::time::sleep(hold_wait).await;
    }
    let stats_path = format!("/v1/admin/offices/{office}/stats");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match api.operator(Method::GET, &stats_path, None).await {
            Ok(a) => {
                let (release, held) = parse_stats(&a.body, release_id);
                view.release = release;
                view.office_held = held;
                let holding = view.office_held.unwrap_or(0) > 0
                    || view.release.as_ref().is_some_and(|r| r.held > 0);
                if !holding || Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) => {
                if Instant::now() >= deadline {
                    view.unreadable.push(format!("stats: {e}"));
                    break;
                }
            }
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    say("audit: reading every buyer's applications");
    let users: Vec<String> = history.iter().map(|b| b.user.clone()).collect();
    let api2 = api.clone();
    let answers = for_each_concurrent(users, 32, move |user| {
        let api = api2.clone();
        async move {
            let path = format!("/v1/admin/applications?user={}", query_value(&user));
            let r = api.operator(Method::GET, &path, None).await;
            (user, r)
        }
    })
    .await;
    for (user, r) in answers {
        match r {
            Ok(a) => view.apps.extend(
                list(&a.body, &["applications", "items"])
                    .iter()
                    .filter_map(|v| ServerApp::from_json(v, &user))
                    .filter(|app| app.id.starts_with(&format!("{office}-"))),
            ),
            Err(e) => view.unreadable.push(format!("applications of {user}: {e}")),
        }
    }
    let mut serials: Vec<String> = history.iter().filter_map(|b| b.claim.clone()).collect();
    serials.extend(
        view.apps
            .iter()
            .filter_map(|a| a.live_claim().map(str::to_string)),
    );
    serials.sort();
    serials.dedup();
    say(&format!(
        "audit: looking up {} claimed numbers",
        serials.len()
    ));
    let api3 = api.clone();
    let office_owned = office.to_string();
    let answers = for_each_concurrent(serials, 32, move |serial| {
        let api = api3.clone();
        let office = office_owned.clone();
        async move {
            let path = format!(
                "/v1/admin/applications?serial={}&office={}",
                query_value(&serial),
                query_value(&office)
            );
            let r = api.operator(Method::GET, &path, None).await;
            (serial, r)
        }
    })
    .await;
    for (serial, r) in answers {
        match r {
            Ok(a) => {
                let ids: Vec<String> = list(&a.body, &["applications", "items"])
                    .iter()
                    .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect();
                view.owners.insert(serial, ids);
            }
            Err(e) => view.unreadable.push(format!("owner of {serial}: {e}")),
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buyer::{Debit, Outcome};
    use crate::scenario::Style;
    use serde_json::json;

    fn exp() -> Expectations {
        Expectations {
            custom_quota: 20,
            random_quota: 5,
            release_id: "1".into(),
            release_total: 100,
            exclusive: true,
        }
    }

    fn buyer(i: u32, kind: Kind, claim: Option<&str>, custom: u32, random: u32) -> BuyerRecord {
        BuyerRecord {
            application: Some(format!("lt-{i}")),
            outcome: if claim.is_some() {
                Outcome::Claimed
            } else {
                Outcome::Exhausted
            },
            claim: claim.map(str::to_string),
            claim_via: claim.map(|_| Style::Random),
            custom_debit: Debit {
                min: custom,
                max: custom,
            },
            random_debit: Debit {
                min: random,
                max: random,
            },
            requests: 20,
            selection_requests: 10,
            ..BuyerRecord::new(i, &format!("u{i}"), kind, Style::Random)
        }
    }

    fn app(i: u32, claim: Option<&str>, custom_left: u32, random_left: u32) -> ServerApp {
        ServerApp {
            id: format!("lt-{i}"),
            user: format!("u{i}"),
            state: if claim.is_some() {
                "claimed"
            } else {
                "exhausted"
            }
            .into(),
            custom_left,
            random_left,
            claim: claim.map(str::to_string),
            claim_void: false,
            live_holds: 0,
        }
    }

    /// A consistent run: three buyers, two claims (one lucky, by the bot).
    fn clean() -> (Vec<BuyerRecord>, ServerView) {
        let history = vec![
            buyer(1, Kind::Person, Some("A1357"), 0, 2),
            buyer(2, Kind::Bot, Some("A8888"), 10, 0),
            buyer(3, Kind::Person, None, 20, 5),
        ];
        let apps = vec![
            app(1, Some("A1357"), 20, 3),
            app(2, Some("A8888"), 10, 5),
            app(3, None, 0, 0),
        ];
        let mut owners = BTreeMap::new();
        owners.insert("A1357".to_string(), vec!["lt-1".to_string()]);
        owners.insert("A8888".to_string(), vec!["lt-2".to_string()]);
        let view = ServerView {
            apps,
            owners,
            release: Some(ReleaseCounts {
                id: "1".into(),
                total: 100,
                available: 98,
                claimed: 2,
                ..ReleaseCounts::default()
            }),
            office_held: Some(0),
            unreadable: Vec::new(),
        };
        (history, view)
    }

    fn failing(r: &AuditReport) -> Vec<&str> {
        r.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.id.as_str())
            .collect()
    }

    #[test]
    fn a_consistent_history_passes() {
        let (h, v) = clean();
        let r = audit(&h, &exp(), &v);
        assert!(r.passed, "{:#?}", r.checks);
        assert_eq!(r.server_claims, 2);
        assert_eq!(r.acknowledged_claims, 2);
        assert_eq!(r.checks.len(), 5);
    }

    #[test]
    fn a_number_claimed_twice_fails_i1() {
        let (mut h, mut v) = clean();
        // Buyer 3's application also holds A1357, and the tool was told so.
        v.apps[2] = app(3, Some("A1357"), 20, 4);
        h[2] = buyer(3, Kind::Person, Some("A1357"), 0, 1);
        v.release.as_mut().expect("release").claimed = 3;
        v.release.as_mut().expect("release").available = 97;
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["I1"], "{:#?}", r.checks);
        let i1 = &r.checks[0];
        assert!(
            i1.examples
                .iter()
                .any(|e| e.contains("A1357 is claimed by lt-1, lt-3")),
            "{:?}",
            i1.examples
        );
        assert!(i1
            .examples
            .iter()
            .any(|e| e.contains("acknowledged as claimed to u1, u3")));
        assert_eq!(i1.violations, 2);
    }

    #[test]
    fn a_serial_lookup_naming_another_application_fails_i1() {
        let (h, mut v) = clean();
        v.owners.insert("A8888".into(), vec!["lt-3".into()]);
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["I1"]);
    }

    #[test]
    fn a_missing_acknowledged_claim_fails_i2() {
        let (h, mut v) = clean();
        // The server lost buyer 1's claim: the application is back to selecting, the number
        // available again.
        v.apps[0] = ServerApp {
            state: "selecting".into(),
            claim: None,
            ..app(1, None, 20, 3)
        };
        let rel = v.release.as_mut().expect("release");
        rel.claimed = 1;
        rel.available = 99;
        let r = audit(&h, &exp(), &v);
        assert!(failing(&r).contains(&"I2"), "{:#?}", r.checks);
        let i2 = r.checks.iter().find(|c| c.id == "I2").expect("I2");
        assert!(
            i2.examples[0].contains("acknowledged claim A1357 is missing"),
            "{:?}",
            i2.examples
        );
        // The count-level check sees it too.
        assert!(failing(&r).contains(&"conservation"));
    }

    #[test]
    fn a_missing_application_and_an_unannounced_claim_fail_i2() {
        let (h, mut v) = clean();
        v.apps.remove(2);
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["I2"]);
        let (h, mut v) = clean();
        v.apps[2] = app(3, Some("A0003"), 20, 4);
        v.owners.insert("A0003".into(), vec!["lt-3".into()]);
        let rel = v.release.as_mut().expect("release");
        rel.claimed = 3;
        rel.available = 97;
        let r = audit(&h, &exp(), &v);
        assert!(failing(&r).contains(&"I2"), "{:#?}", r.checks);
        // …unless a claim call of that buyer went unanswered.
        let mut h = h;
        h[2].uncertain_claims = 1;
        h[2].custom_debit = Debit { min: 0, max: 0 };
        h[2].random_debit = Debit { min: 1, max: 1 };
        let r = audit(&h, &exp(), &v);
        assert!(r.passed, "{:#?}", r.checks);
    }

    #[test]
    fn a_wrong_quota_fails_i3() {
        let (h, mut v) = clean();
        // Two random draws made, three debited.
        v.apps[0].random_left = 2;
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["I3"]);
        assert!(r.checks[2].examples[0].contains("random quota debited 3, the calls made debit 2"));
        // A quota above its maximum.
        let (h, mut v) = clean();
        v.apps[1].custom_left = 21;
        assert_eq!(failing(&audit(&h, &exp(), &v)), vec!["I3"]);
        // An unanswered call widens what is acceptable.
        let (mut h, mut v) = clean();
        h[0].random_debit = Debit { min: 2, max: 3 };
        v.apps[0].random_left = 2;
        assert!(audit(&h, &exp(), &v).passed);
    }

    #[test]
    fn a_leftover_hold_fails_i4() {
        let (h, mut v) = clean();
        v.office_held = Some(10);
        let rel = v.release.as_mut().expect("release");
        rel.held = 10;
        rel.available = 88;
        v.apps[2].live_holds = 10;
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["I4"]);
        assert_eq!(r.checks[3].violations, 3);
        let (h, mut v) = clean();
        v.office_held = None;
        v.release = None;
        let r = audit(&h, &exp(), &v);
        assert!(failing(&r).contains(&"I4") && failing(&r).contains(&"conservation"));
    }

    #[test]
    fn broken_conservation_fails() {
        // Counts that do not add up.
        let (h, mut v) = clean();
        v.release.as_mut().expect("release").available = 90;
        let r = audit(&h, &exp(), &v);
        assert_eq!(failing(&r), vec!["conservation"]);
        assert!(r.checks[4].examples[0].contains("≠ total 100"));
        // A claimed count the applications do not account for.
        let (h, mut v) = clean();
        let rel = v.release.as_mut().expect("release");
        rel.claimed = 3;
        rel.available = 97;
        assert_eq!(failing(&audit(&h, &exp(), &v)), vec!["conservation"]);
        // A release smaller than what was released.
        let (h, mut v) = clean();
        let rel = v.release.as_mut().expect("release");
        rel.total = 90;
        rel.available = 88;
        assert_eq!(failing(&audit(&h, &exp(), &v)), vec!["conservation"]);
    }

    #[test]
    fn fairness_counts_claims_and_lucky_numbers_per_kind() {
        let (h, v) = clean();
        let f = audit(&h, &exp(), &v).fairness;
        assert_eq!(f.claims, 2);
        assert_eq!(f.lucky_claims, 1);
        assert_eq!((f.people.buyers, f.bots.buyers), (2, 1));
        assert_eq!((f.people.claims, f.bots.claims), (1, 1));
        assert_eq!((f.people.lucky_claims, f.bots.lucky_claims), (0, 1));
        assert!((f.bots.lucky_share - 1.0).abs() < 1e-9);
        assert!((f.people.claim_share - 0.5).abs() < 1e-9);
        assert!((f.people.claims_per_1k_requests - 50.0).abs() < 1e-9);
        assert!((f.bots.claims_per_1k_requests - 100.0).abs() < 1e-9);
        // The bot's lucky number came from a later draw: not counted as the opening's.
        assert_eq!(f.first_draw_lucky, 0);
        let (mut h, v) = clean();
        h[1].first_batch = vec!["A0001".into(), "A8888".into()];
        h[0].first_batch = vec!["A1357".into()];
        let f = audit(&h, &exp(), &v).fairness;
        assert_eq!((f.people.first_draw_lucky, f.bots.first_draw_lucky), (0, 1));
        assert_eq!(f.first_draw_lucky, 1);
    }

    #[test]
    fn stats_are_read_flat_or_nested() {
        let nested = json!([{"class": "small", "counts": {"held": 2}, "releases": [
            {"id": 1, "total": 10, "counts": {"available": 5, "held": 2, "claimed": 3}},
            {"id": 2, "total": 7, "counts": {"available": 7}}]}]);
        let (r, held) = parse_stats(&nested, "1");
        let r = r.expect("release 1");
        assert_eq!(
            (r.total, r.available, r.held, r.claimed, r.sum()),
            (10, 5, 2, 3, 10)
        );
        assert_eq!(held, Some(2));
        let flat = json!({"office": "x", "classes": [{"class": "small", "held": 0, "releases": [
            {"id": "r7", "total": 4, "available": 4}]}]});
        let (r, held) = parse_stats(&flat, "r7");
        assert_eq!(r.expect("r7").available, 4);
        assert_eq!(held, Some(0));
        assert_eq!(parse_stats(&json!({}), "1"), (None, None));
    }

    #[test]
    fn server_applications_are_read_from_the_api_shape() {
        let v = json!({
            "id": "lt_1-3", "state": "claimed", "custom_left": 15, "random_left": 5,
            "batch": {"plates": [{"serial": "A1357"}], "expires_in_ms": 0},
            "candidates": {"plates": [{"serial": "A0002"}, {"serial": "A0003"}], "expires_in_ms": 900},
            "claim": {"serial": "a1688", "void": false}
        });
        let a = ServerApp::from_json(&v, "u3").expect("app");
        assert_eq!(a.claim.as_deref(), Some("A1688"));
        assert_eq!(a.live_claim(), Some("A1688"));
        assert_eq!(a.live_holds, 2);
        assert_eq!(a.user, "u3");
        let void = json!({"id": "x-1", "state": "voided", "claim": {"serial": "A1", "void": true}});
        assert_eq!(
            ServerApp::from_json(&void, "u").expect("app").live_claim(),
            None
        );
        assert!(ServerApp::from_json(&json!({"state": "claimed"}), "u").is_none());
    }
}
