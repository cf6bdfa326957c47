//! Many citizens selecting from one small pool at once, through a real `HttpServer` on
//! 127.0.0.1 with several workers and `awc` clients, so requests really run in parallel.
//!
//! 200 applications apply and verify their identity over HTTP, then a release of 300 numbers
//! opens and every client draws, picks, claims and custom-checks at once (hot numbers on
//! purpose, and now and then two calls of one application at the same instant). Afterwards:
//! - no number is claimed by two applications, none is held by two or held and claimed (I1),
//!   checked through `GET /v1/admin/applications?serial=…` and every application's own view;
//! - every debit is accounted (I3): per application, `random_left` fell by the draws the client
//!   saw succeed and `custom_left` by the numbers of its failed checks plus the numbers up to the
//!   claimed one; the audit trail agrees;
//! - the office's figures are conserved: available + held + claimed + issued + withdrawn +
//!   pending = released, per class and release, and they agree with the applications and with
//!   the public pool notice;
//! - no answer was a 5xx, and every answer is one the contract allows for its call.
//!
//! Rate limits are off (0), so the test measures the pool, not the limiter.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{App, HttpServer};
use futures_util::future::{join, join_all};
use platepool_engine::OfficeRules;
use platepool_gateway::sms::Purpose;
use platepool_gateway::Gateway;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod support;
use support::{certificate, vin, voucher_no, OPERATOR};

const OFFICE: &str = "rush";
const APPS: u32 = 200;
const WORKERS: usize = 4;
/// The release: A0000–A0299.
const RELEASE_PATTERN: &str = "A0[012]##";
const RELEASED: u64 = 300;
const CUSTOM_QUOTA: u64 = 20;
const RANDOM_QUOTA: u64 = 5;
const PER_CHECK: usize = 5;
/// Numbers many clients want (custom checks aim at them a third of the time).
const HOT: [&str; 8] = [
    "A0088", "A0066", "A0168", "A0288", "A0099", "A0200", "A0101", "A0123",
];
/// Rounds a client plays at most.
const ROUNDS: usize = 40;

fn phone(n: u32) -> String {
    format!("1390000{n:04}")
}

/// An HTTP client of the server under test.
#[derive(Clone)]
struct Api {
    client: awc::Client,
    base: String,
}

/// One answer; status 0 when the request itself failed (connection, timeout).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {token}")));
        let sent = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: 0,
                    body: json!({"transport": e.to_string()}),
                }
            }
        };
        let status = resp.status().as_u16();
        let body = match resp.body().limit(8 << 20).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => json!({"transport": e.to_string()}),
        };
        Answer { status, body }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, token, None).await
    }
}

fn code(gw: &Gateway, phone: &str, purpose: Purpose) -> String {
    support::last_code(gw, phone, purpose)
}

/// One citizen with one application.
struct Citizen {
    n: u32,
    token: String,
    app: String,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    draws_ok: u64,
    /// Custom numbers debited: every number of a failed check, the numbers up to the claimed one.
    custom_debited: u64,
    failed_checks: u64,
    claims: Vec<String>,
    /// (call, status, code) of every answer.
    answers: Vec<(&'static str, u16, String)>,
    /// Answers the contract does not allow for the call.
    unexpected: Vec<String>,
}

/// The answers a call may get in this test (anything else is a failure). Errors are refusals
/// that change nothing, except `not_available` from a custom check (its numbers are debited).
fn allowed(call: &str, a: &Answer) -> bool {
    let code = a.code();
    match (call, a.status) {
        ("draw", 201) | ("custom", 200) | ("pick", 200) | ("claim", 201) => true,
        (_, 409) => matches!(
            (call, code),
            (
                "draw",
                "not_available" | "quota_spent" | "exhausted" | "conflict"
            ) | (
                "custom",
                "not_available" | "quota_spent" | "exhausted" | "conflict"
            ) | (
                "pick",
                "not_held" | "hold_expired" | "conflict" | "exhausted"
            ) | (
                "claim",
                "not_held" | "hold_expired" | "conflict" | "exhausted"
            )
        ),
        // Two checks of one application at once: the second may find the interval running, or
        // fewer numbers left than it names (nothing debited either way).
        ("custom", 429) => code == "too_soon",
        ("custom", 400) => code == "bad_request",
        _ => false,
    }
}

fn serials(hold: &Value) -> Vec<String> {
    hold["plates"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["serial"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A client's view of its application as the answers tell it.
#[derive(Debug)]
struct Seen {
    custom_left: u64,
    random_left: u64,
    batch: Vec<String>,
    picked: bool,
    candidates: Vec<String>,
    done: bool,
}

impl Tally {
    fn record(&mut self, call: &'static str, a: &Answer) {
        self.answers.push((call, a.status, a.code().to_string()));
        if !allowed(call, a) {
            self.unexpected
                .push(format!("{call}: {} {}", a.status, a.body));
        }
    }

    fn claimed(&mut self, claim: &Value) {
        if let Some(s) = claim["serial"].as_str() {
            self.claims.push(s.to_string());
        }
    }
}

async fn draw(api: &Api, c: &Citizen, rng: &mut StdRng, t: &mut Tally, seen: &mut Seen) {
    let path = format!("/v1/applications/{}/draws", c.app);
    let a = api
        .post(
            &path,
            &c.token,
            json!({"exclude_four": rng.random_bool(0.2)}),
        )
        .await;
    t.record("draw", &a);
    after_draw(&a, t, seen);
}

fn after_draw(a: &Answer, t: &mut Tally, seen: &mut Seen) {
    match (a.status, a.code()) {
        (201, _) => {
            t.draws_ok += 1;
            seen.random_left = a.body["random_left"].as_u64().unwrap_or(0);
            seen.batch = serials(&a.body["batch"]);
            seen.picked = false;
            seen.candidates = serials(&a.body["candidates"]);
        }
        (409, "quota_spent") => seen.random_left = 0,
        (409, "exhausted" | "conflict") => seen.done = true,
        _ => {}
    }
}

/// Numbers for a custom check: hot ones, any of the release, some never released.
fn pick_numbers(rng: &mut StdRng, k: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < k {
        let s = match rng.random_range(0..10) {
            0..=2 => HOT[rng.random_range(0..HOT.len())].to_string(),
            3 => format!("A0{}", rng.random_range(500..1000)),
            _ => format!("A0{:03}", rng.random_range(0..300)),
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

async fn custom(api: &Api, c: &Citizen, plates: Vec<String>, t: &mut Tally, seen: &mut Seen) {
    let path = format!("/v1/applications/{}/custom", c.app);
    let a = api.post(&path, &c.token, json!({ "plates": plates })).await;
    t.record("custom", &a);
    after_custom(&a, &plates, t, seen);
}

fn after_custom(a: &Answer, plates: &[String], t: &mut Tally, seen: &mut Seen) {
    match (a.status, a.code()) {
        (200, _) => {
            let serial = a.body["claim"]["serial"].as_str().unwrap_or("");
            match plates.iter().position(|p| p == serial) {
                Some(i) => t.custom_debited += i as u64 + 1,
                None => t
                    .unexpected
                    .push(format!("custom claimed {serial}, not one of {plates:?}")),
            }
            t.claimed(&a.body["claim"]);
            seen.done = true;
        }
        (409, "not_available") => {
            t.custom_debited += plates.len() as u64;
            t.failed_checks += 1;
            seen.custom_left = a.body["error"]["custom_left"].as_u64().unwrap_or(0);
        }
        (409, "quota_spent") => seen.custom_left = 0,
        (409, "exhausted" | "conflict") => seen.done = true,
        _ => {}
    }
}

async fn pick(api: &Api, c: &Citizen, serial: &str, t: &mut Tally, seen: &mut Seen) {
    let path = format!("/v1/applications/{}/candidates", c.app);
    let a = api.post(&path, &c.token, json!({ "serial": serial })).await;
    t.record("pick", &a);
    match (a.status, a.code()) {
        (200, _) => {
            seen.picked = true;
            seen.batch.retain(|s| s != serial);
            seen.candidates = serials(&a.body["candidates"]);
        }
        (409, "exhausted") => seen.done = true,
        _ => seen.picked = true,
    }
}

async fn claim(api: &Api, c: &Citizen, serial: &str, t: &mut Tally) -> Answer {
    let path = format!("/v1/applications/{}/claim", c.app);
    let a = api.post(&path, &c.token, json!({ "serial": serial })).await;
    t.record("claim", &a);
    if a.status == 201 {
        t.claimed(&a.body["claim"]);
    }
    a
}

/// One citizen's selection: custom checks, draws, picks and claims in a random order until a
/// number is claimed or nothing is left to try; now and then two calls at once.
async fn play(api: Api, c: &Citizen, seed: u64) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    let mut seen = Seen {
        custom_left: CUSTOM_QUOTA,
        random_left: RANDOM_QUOTA,
        batch: Vec::new(),
        picked: false,
        candidates: Vec::new(),
        done: false,
    };
    for _ in 0..ROUNDS {
        if seen.done || !t.claims.is_empty() {
            break;
        }
        if seen.custom_left == 0 && seen.random_left == 0 && seen.candidates.is_empty() {
            break;
        }
        let roll = rng.random_range(0..20);
        if roll < 7 && seen.custom_left > 0 {
            let k = rng.random_range(1..=PER_CHECK.min(seen.custom_left as usize));
            let plates = pick_numbers(&mut rng, k);
            custom(&api, c, plates, &mut t, &mut seen).await;
        } else if roll < 12 && seen.random_left > 0 {
            draw(&api, c, &mut rng, &mut t, &mut seen).await;
        } else if roll < 16 && !seen.picked && !seen.batch.is_empty() {
            let s = seen.batch[rng.random_range(0..seen.batch.len())].clone();
            pick(&api, c, &s, &mut t, &mut seen).await;
        } else if roll < 18 && !seen.candidates.is_empty() {
            let s = seen.candidates[rng.random_range(0..seen.candidates.len())].clone();
            let a = claim(&api, c, &s, &mut t).await;
            if a.status == 201 || a.code() == "conflict" {
                seen.done = true;
            } else {
                seen.candidates.retain(|x| x != &s);
            }
        } else if roll == 18 && !seen.candidates.is_empty() {
            // The same confirmation twice at once (a double click): one claim at most.
            let s = seen.candidates[0].clone();
            let (mut t1, mut t2) = (Tally::default(), Tally::default());
            let (a1, a2) = join(claim(&api, c, &s, &mut t1), claim(&api, c, &s, &mut t2)).await;
            for x in [t1, t2] {
                t.answers.extend(x.answers);
                t.unexpected.extend(x.unexpected);
                t.claims.extend(x.claims);
            }
            let won = [&a1, &a2].iter().filter(|a| a.status == 201).count();
            if won > 1 {
                t.unexpected
                    .push(format!("two claims of {s} by one application"));
            }
            seen.done = true;
        } else if seen.custom_left >= 2 && seen.random_left > 0 {
            // A draw and a custom check of one application at the same instant.
            let plates = pick_numbers(&mut rng, 1);
            let exclude_four = rng.random_bool(0.2);
            let dpath = format!("/v1/applications/{}/draws", c.app);
            let cpath = format!("/v1/applications/{}/custom", c.app);
            let (d, k) = join(
                api.post(&dpath, &c.token, json!({ "exclude_four": exclude_four })),
                api.post(&cpath, &c.token, json!({ "plates": plates })),
            )
            .await;
            t.record("draw", &d);
            t.record("custom", &k);
            after_draw(&d, &mut t, &mut seen);
            after_custom(&k, &plates, &mut t, &mut seen);
        }
    }
    t
}

#[actix_rt::test]
async fn many_clients_one_small_pool() {
    let (_dir, engine) = support::engine(None, None).await;
    let rules = OfficeRules {
        custom_quota: CUSTOM_QUOTA as u32,
        custom_per_check: PER_CHECK as u32,
        custom_min_interval_ms: 10,
        random_quota: RANDOM_QUOTA as u32,
        random_batch: 10,
        random_ttl_ms: 600_000,
        candidate_ttl_ms: 600_000,
        sms_confirm_delay_ms: 0,
        opening_window_ms: 1_000,
        random_min_interval_ms: 0,
        ..OfficeRules::default()
    };
    let office = support::office("抢号测试车管所", &["small"], rules);
    engine
        .put_office(OFFICE, office, "operator:setup")
        .await
        .unwrap();
    let rows = (1..=APPS)
        .map(|n| certificate(n, "small", "fuel"))
        .collect();
    assert_eq!(
        engine
            .import_certificates(rows, "operator:test")
            .await
            .unwrap()
            .imported,
        APPS as usize
    );
    let gw = support::gateway(&engine, support::gateway_config());

    let app_gw = gw.clone();
    let server = HttpServer::new(move || App::new().service(app_gw.scope("")))
        .workers(WORKERS)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let api = Api {
        client: awc::Client::builder()
            .connector(awc::Connector::new().limit(APPS as usize * 2 + 16))
            .timeout(Duration::from_secs(120))
            .finish(),
        base: format!("http://{addr}"),
    };

    // Stage 1 and identity for everyone, all at once.
    let exp = engine.now_ms() / 1000 + 3_600;
    let citizens: Vec<Citizen> = join_all((1..=APPS).map(|n| {
        let api = api.clone();
        let gw = gw.clone();
        async move {
            let token = support::token(&format!("rush_{n}"), &phone(n), exp);
            let a = api
                .post("/v1/sms", &token, json!({"purpose": "apply"}))
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            let body = json!({"office": OFFICE, "vin": vin(n), "voucher": voucher_no(n),
                              "notice_version": "v1",
                              "sms_code": code(&gw, &phone(n), Purpose::Apply)});
            let a = api.post("/v1/applications", &token, body).await;
            assert_eq!(a.status, 201, "{a:?}");
            let app = a.body["id"].as_str().unwrap().to_string();
            let a = api
                .post(
                    "/v1/sms",
                    &token,
                    json!({"purpose": "identity", "application": app}),
                )
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            let body = json!({"sms_code": code(&gw, &phone(n), Purpose::Identity)});
            let a = api
                .post(&format!("/v1/applications/{app}/identity"), &token, body)
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            Citizen { n, token, app }
        }
    }))
    .await;

    // The release opens now; everyone selects at once.
    let r = api
        .post(
            &format!("/v1/admin/offices/{OFFICE}/releases"),
            OPERATOR,
            json!({"class": "small", "label": "粤K·A0000–A0299", "patterns": [RELEASE_PATTERN]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["total"], RELEASED);
    let seed: u64 = rand::rng().random();
    let tallies: Vec<Tally> = join_all(
        citizens
            .iter()
            .map(|c| play(api.clone(), c, seed ^ u64::from(c.n))),
    )
    .await;
    let ctx = format!("(seed {seed})");

    // No 5xx, nothing the contract does not allow, no transport failure.
    let unexpected: Vec<String> = citizens
        .iter()
        .zip(&tallies)
        .flat_map(|(c, t)| t.unexpected.iter().map(move |u| format!("{}: {u}", c.app)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{ctx} unexpected answers:\n{}",
        unexpected.join("\n")
    );
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for t in &tallies {
        for (call, status, code) in &t.answers {
            *outcomes
                .entry(format!("{call} {status} {code}"))
                .or_default() += 1;
        }
    }
    assert!(
        outcomes.keys().all(|k| !k.contains(" 5")),
        "{ctx} {outcomes:?}"
    );
    for f in gw.metrics.figures() {
        assert_eq!(
            f.errors_5xx, 0,
            "{ctx} {} {}: 5xx answers",
            f.method, f.route
        );
    }
    // The storm did contend: claims both ways, numbers run out for some.
    let claims_seen: u64 = tallies.iter().map(|t| t.claims.len() as u64).sum();
    assert!(claims_seen > 0, "{ctx} {outcomes:?}");

    // Every application as its owner sees it: quotas debited exactly as the client saw (I3),
    // at most one claim, the one the client was told.
    let views: Vec<Value> = join_all(citizens.iter().map(|c| {
        let api = api.clone();
        async move {
            let a = api
                .get(&format!("/v1/applications/{}", c.app), &c.token)
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            a.body
        }
    }))
    .await;
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    for ((c, t), v) in citizens.iter().zip(&tallies).zip(&views) {
        assert_eq!(
            v["random_left"].as_u64(),
            Some(RANDOM_QUOTA - t.draws_ok),
            "{ctx} {}: random draws {} seen, view {v}",
            c.app,
            t.draws_ok
        );
        assert_eq!(
            v["custom_left"].as_u64(),
            Some(CUSTOM_QUOTA - t.custom_debited),
            "{ctx} {}: custom numbers {} debited as seen, view {v}",
            c.app,
            t.custom_debited
        );
        assert!(
            t.claims.len() <= 1,
            "{ctx} {}: claims {:?}",
            c.app,
            t.claims
        );
        match v["claim"]["serial"].as_str() {
            Some(s) => {
                assert_eq!(v["state"], "claimed", "{ctx} {v}");
                assert_eq!(t.claims, vec![s.to_string()], "{ctx} {}", c.app);
                if let Some(other) = claimed.insert(s.to_string(), c.app.clone()) {
                    panic!("{ctx} {s} claimed by {other} and {}", c.app);
                }
            }
            None => assert!(
                t.claims.is_empty(),
                "{ctx} {}: told {:?}, view {v}",
                c.app,
                t.claims
            ),
        }
        for s in serials(&v["batch"])
            .into_iter()
            .chain(serials(&v["candidates"]))
        {
            if let Some(other) = held.insert(s.clone(), c.app.clone()) {
                panic!("{ctx} {s} held by {other} and {}", c.app);
            }
        }
    }
    assert_eq!(claimed.len() as u64, claims_seen, "{ctx}");
    for s in held.keys() {
        assert!(!claimed.contains_key(s), "{ctx} {s} is held and claimed");
    }

    // Each claimed number, looked up by operators, names exactly its one application.
    let lookups = join_all(claimed.keys().map(|s| {
        let api = api.clone();
        async move {
            let path = format!("/v1/admin/applications?serial={s}&office={OFFICE}");
            (s.clone(), api.get(&path, OPERATOR).await)
        }
    }))
    .await;
    for (s, a) in lookups {
        assert_eq!(a.status, 200, "{a:?}");
        let found = a.body.as_array().unwrap();
        assert_eq!(found.len(), 1, "{ctx} {s}: {found:?}");
        assert_eq!(
            found[0]["id"].as_str(),
            Some(claimed[&s].as_str()),
            "{ctx} {s}"
        );
        assert_eq!(found[0]["state"], "claimed", "{ctx} {s}");
        assert_eq!(found[0]["claim"]["serial"], s.as_str(), "{ctx}");
    }

    // The office's figures: conserved, and in agreement with the applications.
    let stats = api
        .get(&format!("/v1/admin/offices/{OFFICE}/stats"), OPERATOR)
        .await;
    assert_eq!(stats.status, 200, "{stats:?}");
    let class = &stats.body["classes"][0];
    assert_eq!(class["class"], "small");
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let states = [
        "pending",
        "available",
        "held",
        "claimed",
        "issued",
        "withdrawn",
    ];
    let sum = |v: &Value| states.iter().map(|k| count(v, k)).sum::<u64>();
    assert_eq!(sum(class), RELEASED, "{ctx} {class}");
    assert_eq!(count(class, "total"), RELEASED, "{ctx} {class}");
    let releases = class["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(sum(&releases[0]), RELEASED, "{ctx} {}", releases[0]);
    assert_eq!(
        count(class, "claimed"),
        claimed.len() as u64,
        "{ctx} {class}"
    );
    assert_eq!(count(class, "held"), held.len() as u64, "{ctx} {class}");
    assert_eq!(
        count(class, "available"),
        RELEASED - claimed.len() as u64 - held.len() as u64,
        "{ctx} {class}"
    );
    // The public pool notice says the same once its snapshot is fresh (≤ 100 ms old).
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    let notice = api.get(&format!("/v1/offices/{OFFICE}/pool"), "").await;
    assert_eq!(notice.status, 200, "{notice:?}");
    let nc = &notice.body["classes"][0];
    assert_eq!(nc["available"], class["available"], "{ctx} {notice:?}");
    assert_eq!(nc["releases"][0]["total"], RELEASED, "{ctx} {notice:?}");
    assert_eq!(
        nc["releases"][0]["available"], class["available"],
        "{ctx} {notice:?}"
    );

    // The audit trail holds exactly the debits the clients saw.
    let audit = engine.audit(OFFICE, 0, 1_000_000).unwrap();
    let actions = |name: &str| audit.iter().filter(|(_, e)| e.action == name).count() as u64;
    let draws_ok: u64 = tallies.iter().map(|t| t.draws_ok).sum();
    let failed_checks: u64 = tallies.iter().map(|t| t.failed_checks).sum();
    assert_eq!(actions("draw"), draws_ok, "{ctx}");
    assert_eq!(actions("custom_check_failed"), failed_checks, "{ctx}");
    assert_eq!(
        actions("custom_claim") + actions("claim"),
        claims_seen,
        "{ctx}"
    );
    let users: BTreeSet<&str> = audit
        .iter()
        .filter(|(_, e)| e.action == "draw")
        .map(|(_, e)| e.who.as_str())
        .collect();
    assert!(users.len() > 1, "{ctx} draws came from one client only");

    handle.stop(true).await;
}
