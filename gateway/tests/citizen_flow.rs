//! The citizen flow through the real app factory (`Gateway::scope`), with the engine on a temp
//! folder and a test clock: apply, identity, custom and random selection, claim, voucher,
//! re-entry, practice mode, idempotent retries, ownership and the SMS code rules (API.md
//! "Citizen", SPEC §4, S2, S3).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use platepool_engine::actor::Clock;
use platepool_engine::{Engine, OfficeRules};
use platepool_gateway::sms::Purpose;
use platepool_gateway::Gateway;
use serde_json::{json, Value};

mod support;
use support::{certificate, t0, vin, voucher_no, TestClock};

const OFFICE: &str = "maoming";
/// An office with tiny quotas, to spend them.
const SMALL_QUOTAS: &str = "quota";

struct World {
    _dir: tempfile::TempDir,
    gw: Gateway,
    engine: Engine,
    clock: Arc<TestClock>,
}

fn office(name: &str, rules: OfficeRules) -> platepool_engine::OfficeConfig {
    support::office(name, &["small", "small_new_energy"], rules)
}

impl World {
    async fn new(rate_limit_user_per_s: u32) -> World {
        let clock = TestClock::at(t0());
        let (dir, engine) = support::engine(Some(42), Some(clock.clone())).await;
        let who = "operator:test";
        let rules = OfficeRules {
            opening_window_ms: 0,
            random_min_interval_ms: 0,
            ..OfficeRules::default()
        };
        engine
            .put_office(OFFICE, office("茂名市车辆管理所", rules.clone()), who)
            .await
            .expect("office");
        let tiny = OfficeRules {
            custom_quota: 2,
            custom_per_check: 2,
            random_quota: 1,
            ..rules
        };
        engine
            .put_office(SMALL_QUOTAS, office("小额测试车管所", tiny), who)
            .await
            .expect("office");
        for id in [OFFICE, SMALL_QUOTAS] {
            let release = support::release("small", "粤K·A0000–A9999", &["A####"], t0() - 60_000);
            engine.add_release(id, release, who).await.expect("release");
        }
        let rows = (1..=30).map(|n| certificate(n, "small", "fuel")).collect();
        let report = engine
            .import_certificates(rows, "operator:test")
            .await
            .expect("import");
        assert_eq!(report.imported, 30);
        let config = platepool_gateway::GatewayConfig {
            rate_limit_user_per_s,
            ..support::gateway_config()
        };
        let gw = support::gateway(&engine, config);
        World {
            _dir: dir,
            gw,
            engine,
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The last code sent to `phone` for `purpose`.
    fn code(&self, phone: &str, purpose: Purpose) -> String {
        support::last_code(&self.gw, phone, purpose)
    }

    fn claimed_messages(&self, phone: &str) -> Vec<String> {
        self.gw
            .sms
            .outbox(Some(phone))
            .expect("outbox")
            .into_iter()
            .filter(|m| m.purpose == Purpose::Claimed)
            .map(|m| m.text)
            .collect()
    }

    async fn small_counts(&self, office: &str) -> (u64, u64) {
        let stats = self.engine.stats(office).await.expect("stats");
        let small = stats
            .iter()
            .find(|s| s.class == "small")
            .expect("small class");
        (small.counts.held, small.counts.claimed)
    }
}

/// A citizen: user id, phone and token.
struct Person {
    phone: String,
    token: String,
}

fn person(w: &World, user: &str, phone: &str) -> Person {
    Person {
        phone: phone.into(),
        token: support::token(user, phone, w.now() / 1000 + 86_400 * 365),
    }
}

struct Resp {
    status: StatusCode,
    body: Value,
    text: String,
    content_type: String,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl Resp {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send<F, Fut, B>(
    s: &F,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let mut req = TestRequest::default().method(method.clone()).uri(path);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    let resp = s(req).await;
    let support::openapi::Read {
        status,
        content_type,
        body: bytes,
    } = support::openapi::read_checked(&[""], method.as_str(), path, resp).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        content_type,
    }
}

async fn get<F, Fut, B>(s: &F, p: &Person, path: &str) -> Resp
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    send(s, Method::GET, path, Some(&p.token), None, &[]).await
}

async fn post<F, Fut, B>(s: &F, p: &Person, path: &str, body: Value) -> Resp
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    send(s, Method::POST, path, Some(&p.token), Some(body), &[]).await
}

async fn post_key<F, Fut, B>(s: &F, p: &Person, path: &str, body: Value, key: &str) -> Resp
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    send(
        s,
        Method::POST,
        path,
        Some(&p.token),
        Some(body),
        &[("Idempotency-Key", key)],
    )
    .await
}

/// Stage 1: the apply code, then the application (201). Returns its id.
async fn apply<F, Fut, B>(s: &F, w: &World, p: &Person, office: &str, n: u32) -> String
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let sent = post(s, p, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    assert_eq!(sent.body["confirm_after_ms"], 0);
    let code = w.code(&p.phone, Purpose::Apply);
    let r = post(
        s,
        p,
        "/v1/applications",
        json!({"office": office, "vin": vin(n), "voucher": voucher_no(n), "notice_version": "v1", "sms_code": code}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["state"], "confirmed");
    // No verification and no check yet: no instant for the next check (not 1970 + 8 s).
    assert!(r.body["next_check_at"].is_null(), "{r:?}");
    assert!(r.body["next_check_in_ms"].is_null(), "{r:?}");
    r.body["id"].as_str().expect("id").to_string()
}

/// Stage 2 step 1: an identity code, the confirm delay, the code.
async fn verify<F, Fut, B>(s: &F, w: &World, p: &Person, id: &str)
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let sent = post(
        s,
        p,
        "/v1/sms",
        json!({"purpose": "identity", "application": id}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    assert_eq!(sent.body["confirm_after_ms"], 5_000);
    w.clock.advance(5_000);
    let code = w.code(&p.phone, Purpose::Identity);
    let r = post(
        s,
        p,
        &format!("/v1/applications/{id}/identity"),
        json!({"sms_code": code}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.body["verified_until"].is_string());
    assert_eq!(r.body["verified_until_in_ms"], 30 * 60_000);
}

fn plates(hold: &Value) -> Vec<String> {
    hold["plates"]
        .as_array()
        .expect("plates")
        .iter()
        .map(|p| p["serial"].as_str().expect("serial").to_string())
        .collect()
}

async fn resume<F, Fut, B>(s: &F, p: &Person) -> Value
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let me = get(s, p, "/v1/me").await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    me.body["resume"].clone()
}

#[actix_rt::test]
async fn custom_check_claims_the_first_available_number() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");

    let me = get(&s, &u1, "/v1/me").await;
    assert_eq!(me.body["user"], "u1");
    assert_eq!(me.body["applications"], json!([]));
    assert_eq!(me.body["resume"], Value::Null);
    assert_eq!(me.body["blacklisted_until"], Value::Null);

    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["custom_left"], 20);
    assert_eq!(a.body["random_left"], 5);
    assert_eq!(a.body["class"], "small");
    assert_eq!(a.body["office"], OFFICE);
    assert_eq!(a.body["batch"], Value::Null);
    assert_eq!(a.body["candidates"], Value::Null);
    assert_eq!(a.body["claim"], Value::Null);
    let masked = a.body["vin"].as_str().expect("vin");
    assert!(
        masked.contains('*') && masked.starts_with("LSV") && masked != vin(1),
        "{masked}"
    );
    // Re-entry after stage 1: step 3 of stage 1.
    assert_eq!(
        resume(&s, &u1).await,
        json!({"application": id, "stage": 1, "step": 3, "state": "confirmed", "custom_left": 20, "random_left": 5})
    );

    // No selection before identity (R4.4).
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/custom"),
        json!({"plates": ["A1234"]}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "identity_not_verified"),
        "{r:?}"
    );
    verify(&s, &w, &u1, &id).await;

    // The interval runs from the verification.
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/custom"),
        json!({"plates": ["A1234"]}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_soon"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["retry_after_ms"], 8_000);
    assert_eq!(
        get(&s, &u1, &format!("/v1/applications/{id}")).await.body["custom_left"],
        20
    );
    w.clock.advance(8_000);

    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/custom"),
        json!({"plates": ["B0001", "a·1234"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let claim = &r.body["claim"];
    assert_eq!(claim["serial"], "A1234");
    assert_eq!(claim["plate"], "粤K·A1234");
    assert_eq!(
        r.body["custom_left"], 18,
        "both numbers up to the claimed one are debited"
    );
    assert!(claim["register_by"]
        .as_str()
        .expect("register_by")
        .ends_with('Z'));
    // Tuesday 10:00 local + 3 working days: Friday 23:59:59 local.
    assert_eq!(claim["register_by"], "2026-11-27T15:59:59.000Z");
    let code = claim["voucher"]["code"].as_str().expect("code").to_string();
    let serial = claim["voucher"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();

    let sms = w.claimed_messages(&u1.phone);
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert!(
        sms[0].contains("粤K·A1234") && sms[0].contains("2026年11月27日"),
        "{}",
        sms[0]
    );

    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.body["state"], "claimed");
    assert_eq!(a.body["claim"]["plate"], "粤K·A1234");
    assert_eq!(resume(&s, &u1).await["stage"], 2);
    assert_eq!(resume(&s, &u1).await["step"], 3);

    let html = get(&s, &u1, &format!("/v1/applications/{id}/voucher")).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.content_type.starts_with("text/html"),
        "{}",
        html.content_type
    );
    for part in [
        "互联网预选号牌凭证",
        "粤K·A1234",
        "茂名市车辆管理所",
        code.as_str(),
        serial.as_str(),
        "2026年11月27日 23:59:59",
    ] {
        assert!(html.text.contains(part), "voucher lacks {part}");
    }
    assert!(!html.text.contains("模拟"));
    assert!(
        !html.text.contains(&vin(1)),
        "the page shows only the masked VIN"
    );
    let j = send(
        &s,
        Method::GET,
        &format!("/v1/applications/{id}/voucher"),
        Some(&u1.token),
        None,
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(j.status, StatusCode::OK);
    assert_eq!(j.body["voucher"]["plate"], "粤K·A1234");
    assert_eq!(j.body["voucher"]["code"], code.as_str());
    assert_eq!(j.body["voucher"]["serial"], serial.as_str());
    assert_eq!(j.body["voucher"]["office"], OFFICE);
    assert_eq!(j.body["voucher"]["register_by"], "2026-11-27T15:59:59.000Z");

    // Claimed: no more selection.
    w.clock.advance(8_000);
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/custom"),
        json!({"plates": ["A1235"]}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{r:?}"
    );
    assert_eq!(w.small_counts(OFFICE).await, (0, 1));
}

#[actix_rt::test]
async fn a_failed_custom_check_debits_every_number_and_says_why() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let (u1, u2, u3) = (
        person(&w, "u1", "13800000001"),
        person(&w, "u2", "13800000002"),
        person(&w, "u3", "13800000003"),
    );
    // u2 takes A0001.
    let a2 = apply(&s, &w, &u2, OFFICE, 2).await;
    verify(&s, &w, &u2, &a2).await;
    w.clock.advance(8_000);
    let r = post(
        &s,
        &u2,
        &format!("/v1/applications/{a2}/custom"),
        json!({"plates": ["A0001"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // u3 holds a batch.
    let a3 = apply(&s, &w, &u3, OFFICE, 3).await;
    verify(&s, &w, &u3, &a3).await;
    let d = post(
        &s,
        &u3,
        &format!("/v1/applications/{a3}/draws"),
        json!({"exclude_four": false}),
    )
    .await;
    assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
    let held = plates(&d.body["batch"])[0].clone();

    let a1 = apply(&s, &w, &u1, OFFICE, 1).await;
    verify(&s, &w, &u1, &a1).await;
    w.clock.advance(8_000);
    let path = format!("/v1/applications/{a1}/custom");
    let r = post(&s, &u1, &path, json!({"plates": ["A0001", "B1234", held]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "not_available"),
        "{r:?}"
    );
    let e = &r.body["error"];
    assert_eq!(
        e["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|x| (
                x["serial"].as_str().unwrap_or(""),
                x["reason"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>(),
        vec![
            ("A0001", "taken"),
            ("B1234", "not_in_pool"),
            (held.as_str(), "held")
        ]
    );
    assert_eq!(e["custom_left"], 17);
    assert_eq!(e["next_check_in_ms"], 8_000);
    let state = |r: &Resp| {
        (
            r.body["custom_left"].clone(),
            r.body["random_left"].clone(),
            r.body["state"].clone(),
        )
    };
    let before = state(&get(&s, &u1, &format!("/v1/applications/{a1}")).await);
    assert_eq!(before, (json!(17), json!(5), json!("selecting")));

    // Refused requests change nothing and start no interval.
    let r = post(&s, &u1, &path, json!({"plates": ["A0002"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_soon"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["retry_after_ms"], 8_000);
    w.clock.advance(8_000);
    let r = post(&s, &u1, &path, json!({"plates": ["A0002", "A12I4"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_plate"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "plates[1]");
    assert_eq!(r.body["error"]["position"], 4);
    let r = post(&s, &u1, &path, json!({"plates": ["A1B23"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_plate"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["reason"], "not_allowed");
    assert_eq!(r.body["error"]["field"], "plates[0]");
    let r = post(
        &s,
        &u1,
        &path,
        json!({"plates": ["A0002", "A0003", "A0004", "A0005", "A0006", "A0007"]}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    let r = post(&s, &u1, &path, json!({"plates": "A0002"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "plates");
    let r = send(
        &s,
        Method::POST,
        &path,
        Some(&u1.token),
        None,
        &[("Content-Type", "application/json")],
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    assert_eq!(
        state(&get(&s, &u1, &format!("/v1/applications/{a1}")).await),
        before
    );

    // The next valid check goes through at once (the refusals started no interval).
    let r = post(&s, &u1, &path, json!({"plates": ["A0002"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["custom_left"], 16);
}

#[actix_rt::test]
async fn random_draw_candidate_and_claim() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/draws"),
        json!({"exclude_four": true}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "identity_not_verified")
    );
    verify(&s, &w, &u1, &id).await;

    let d = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/draws"),
        json!({"exclude_four": true}),
    )
    .await;
    assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
    let batch = plates(&d.body["batch"]);
    assert_eq!(batch.len(), 10);
    assert!(batch.iter().all(|p| !p.contains('4')), "{batch:?}");
    assert!(d.body["batch"]["plates"][0]["plate"]
        .as_str()
        .expect("plate")
        .starts_with("粤K·A"));
    assert_eq!(d.body["batch"]["expires_in_ms"], 90_000);
    assert_eq!(d.body["random_left"], 4);
    assert_eq!(d.body["candidates"], Value::Null);
    assert_eq!(w.small_counts(OFFICE).await, (10, 0));

    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(plates(&a.body["batch"]), batch);
    assert_eq!(a.body["state"], "selecting");
    assert_eq!(resume(&s, &u1).await["stage"], 1);

    let c = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": batch[0]}),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
    assert_eq!(plates(&c.body["candidates"]), vec![batch[0].clone()]);
    assert_eq!(c.body["candidates"]["expires_in_ms"], 180_000);
    let c2 = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": batch[1]}),
    )
    .await;
    assert_eq!(
        (c2.status, c2.code()),
        (StatusCode::CONFLICT, "conflict"),
        "one per batch: {c2:?}"
    );
    let bad = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/claim"),
        json!({"serial": batch[1]}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::CONFLICT, "not_held"),
        "{bad:?}"
    );
    let bad = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/claim"),
        json!({"serial": "AI234"}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_plate"),
        "{bad:?}"
    );
    assert_eq!(bad.body["error"]["field"], "serial");
    assert_eq!(bad.body["error"]["position"], 2);

    w.clock.advance(10_000);
    let d2 = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/draws"),
        json!({"exclude_four": false}),
    )
    .await;
    assert_eq!(d2.status, StatusCode::CREATED, "{d2:?}");
    assert_eq!(d2.body["random_left"], 3);
    assert_eq!(plates(&d2.body["candidates"]), vec![batch[0].clone()]);
    assert_eq!(
        d2.body["candidates"]["expires_in_ms"], 180_000,
        "the candidate countdown restarts"
    );

    let cl = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/claim"),
        json!({"serial": batch[0]}),
    )
    .await;
    assert_eq!(cl.status, StatusCode::CREATED, "{cl:?}");
    let claim = &cl.body["claim"];
    assert_eq!(claim["serial"], batch[0].as_str());
    assert_eq!(claim["plate"], format!("粤K·{}", batch[0]));
    assert!(claim["voucher"]["serial"].is_string() && claim["voucher"]["code"].is_string());
    assert!(claim["claimed_at"].is_string() && claim["register_by"].is_string());
    let sms = w.claimed_messages(&u1.phone);
    assert_eq!(sms.len(), 1);
    assert!(sms[0].contains(&format!("粤K·{}", batch[0])), "{}", sms[0]);

    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.body["state"], "claimed");
    assert_eq!(a.body["batch"], Value::Null);
    assert_eq!(a.body["candidates"], Value::Null);
    assert_eq!(a.body["random_left"], 3);
    assert_eq!(
        w.small_counts(OFFICE).await,
        (0, 1),
        "every other hold went back"
    );
    let me = resume(&s, &u1).await;
    assert_eq!(
        (
            me["application"].clone(),
            me["stage"].clone(),
            me["step"].clone()
        ),
        (json!(id), json!(2), json!(3))
    );
}

#[actix_rt::test]
async fn spent_quotas_exhaust_the_application() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let id = apply(&s, &w, &u1, SMALL_QUOTAS, 1).await;
    verify(&s, &w, &u1, &id).await;
    w.clock.advance(8_000);
    let custom = format!("/v1/applications/{id}/custom");
    let draws = format!("/v1/applications/{id}/draws");
    let r = post(&s, &u1, &custom, json!({"plates": ["B0001", "B0002"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "not_available"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["custom_left"], 0);
    assert_eq!(r.body["error"]["random_left"], 1);
    assert_eq!(r.body["error"]["state"], "selecting");
    w.clock.advance(8_000);
    let r = post(&s, &u1, &custom, json!({"plates": ["A0001"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "quota_spent"),
        "{r:?}"
    );

    let d = post(&s, &u1, &draws, json!({})).await;
    assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
    assert_eq!(d.body["random_left"], 0);
    let r = post(&s, &u1, &draws, json!({"exclude_four": false})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "quota_spent"),
        "{r:?}"
    );
    // Holds still live: the application still selects.
    assert_eq!(resume(&s, &u1).await["stage"], 1);

    w.clock.advance(90_001);
    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.body["state"], "exhausted", "{a:?}");
    assert_eq!(a.body["batch"], Value::Null);
    assert!(a.body["message"].is_string());
    let r = post(&s, &u1, &draws, json!({"exclude_four": false})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "exhausted"),
        "{r:?}"
    );
    let r = post(&s, &u1, &custom, json!({"plates": ["A0001"]})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "exhausted"),
        "{r:?}"
    );
    w.clock.advance(60_000);
    let r = post(
        &s,
        &u1,
        "/v1/sms",
        json!({"purpose": "identity", "application": id}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "exhausted"),
        "{r:?}"
    );
    let me = get(&s, &u1, "/v1/me").await;
    assert_eq!(me.body["resume"], Value::Null);
    assert_eq!(me.body["message"]["code"], "exhausted");
    assert_eq!(me.body["applications"][0]["state"], "exhausted");
    let r = get(&s, &u1, &format!("/v1/applications/{id}/voucher")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "nothing claimed: {r:?}"
    );
    assert_eq!(w.small_counts(SMALL_QUOTAS).await, (0, 0));
}

#[actix_rt::test]
async fn practice_mode_holds_and_claims_nothing_real() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let r = post(
        &s,
        &u1,
        "/v1/practice",
        json!({"office": OFFICE, "class": "small"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["practice"], true);
    assert_eq!(
        (r.body["stage"].clone(), r.body["step"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(r.body["custom_left"], 20);
    assert_eq!(r.body["random_left"], 5);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert!(id.contains("-p"), "{id}");

    let d = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/draws"),
        json!({"exclude_four": true}),
    )
    .await;
    assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
    let batch = plates(&d.body["batch"]);
    assert_eq!(batch.len(), 10);
    assert_eq!(
        w.small_counts(OFFICE).await,
        (0, 0),
        "a practice draw holds nothing"
    );
    let c = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": batch[0]}),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
    let cl = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/claim"),
        json!({"serial": batch[0]}),
    )
    .await;
    assert_eq!(cl.status, StatusCode::CREATED, "{cl:?}");
    assert_eq!(cl.body["claim"]["void"], true);
    assert_eq!(
        w.small_counts(OFFICE).await,
        (0, 0),
        "a practice claim takes nothing"
    );
    assert!(
        w.gw.sms.outbox(Some(&u1.phone)).expect("outbox").is_empty(),
        "no SMS for practice"
    );

    let html = get(&s, &u1, &format!("/v1/applications/{id}/voucher")).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(html.text.contains("模拟") && html.text.contains("VOID"));
    let j = send(
        &s,
        Method::GET,
        &format!("/v1/applications/{id}/voucher"),
        Some(&u1.token),
        None,
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(j.body["voucher"]["void"], true);

    // A custom check in practice: no interval to wait, claims nothing real.
    let p2 = post(
        &s,
        &u1,
        "/v1/practice",
        json!({"office": OFFICE, "class": "small", "energy": "fuel"}),
    )
    .await;
    let id2 = p2.body["id"].as_str().expect("id").to_string();
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id2}/custom"),
        json!({"plates": ["A7777"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["claim"]["void"], true);
    assert_eq!(w.small_counts(OFFICE).await, (0, 0));

    // The numbers stay free for real applications.
    let u2 = person(&w, "u2", "13800000002");
    let a2 = apply(&s, &w, &u2, OFFICE, 2).await;
    verify(&s, &w, &u2, &a2).await;
    w.clock.advance(8_000);
    let r = post(
        &s,
        &u2,
        &format!("/v1/applications/{a2}/custom"),
        json!({"plates": [batch[0], "A7777"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["claim"]["serial"], batch[0].as_str());
    assert_eq!(w.small_counts(OFFICE).await, (0, 1));

    // Practice applications are no live application of the user.
    assert_eq!(resume(&s, &u1).await, Value::Null);
    let r = post(
        &s,
        &u1,
        "/v1/practice",
        json!({"office": "nowhere", "class": "small"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{r:?}"
    );
    let r = post(
        &s,
        &u1,
        "/v1/practice",
        json!({"office": OFFICE, "class": "small", "energy": "steam"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "energy");
}

#[actix_rt::test]
async fn idempotent_retries_return_the_first_answer() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");

    // Applying twice with one key opens one application.
    let sent = post(&s, &u1, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(sent.status, StatusCode::OK);
    let code = w.code(&u1.phone, Purpose::Apply);
    let body = json!({"office": OFFICE, "vin": vin(1), "voucher": voucher_no(1), "notice_version": "v1", "sms_code": code});
    let first = post_key(&s, &u1, "/v1/applications", body.clone(), "apply-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let again = post_key(&s, &u1, "/v1/applications", body, "apply-1").await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    let id = first.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        get(&s, &u1, "/v1/me").await.body["applications"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    verify(&s, &w, &u1, &id).await;
    w.clock.advance(8_000);
    let custom = format!("/v1/applications/{id}/custom");
    let failed = post_key(
        &s,
        &u1,
        &custom,
        json!({"plates": ["B0001", "B0002"]}),
        "check-1",
    )
    .await;
    assert_eq!(
        (failed.status, failed.code()),
        (StatusCode::CONFLICT, "not_available"),
        "{failed:?}"
    );
    assert_eq!(failed.body["error"]["custom_left"], 18);
    let retried = post_key(
        &s,
        &u1,
        &custom,
        json!({"plates": ["B0001", "B0002"]}),
        "check-1",
    )
    .await;
    assert_eq!(
        (retried.status, &retried.body),
        (failed.status, &failed.body),
        "the first answer, not too_soon"
    );
    assert_eq!(
        get(&s, &u1, &format!("/v1/applications/{id}")).await.body["custom_left"],
        18
    );

    let draws = format!("/v1/applications/{id}/draws");
    let d = post_key(&s, &u1, &draws, json!({"exclude_four": false}), "draw-1").await;
    assert_eq!(d.status, StatusCode::CREATED);
    let d2 = post_key(&s, &u1, &draws, json!({"exclude_four": false}), "draw-1").await;
    assert_eq!((d2.status, &d2.body), (d.status, &d.body));
    assert_eq!(
        get(&s, &u1, &format!("/v1/applications/{id}")).await.body["random_left"],
        4
    );
    let batch = plates(&d.body["batch"]);
    let pick = post_key(
        &s,
        &u1,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": batch[3]}),
        "pick-1",
    )
    .await;
    assert_eq!(pick.status, StatusCode::OK, "{pick:?}");
    let pick2 = post_key(
        &s,
        &u1,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": batch[3]}),
        "pick-1",
    )
    .await;
    assert_eq!((pick2.status, &pick2.body), (pick.status, &pick.body));
    // Under a key whose first send's answer was not kept, the number already picked is answered
    // with the candidates; unkeyed, it is a conflict.
    let candidates_path = format!("/v1/applications/{id}/candidates");
    let pick3 = post_key(
        &s,
        &u1,
        &candidates_path,
        json!({"serial": batch[3]}),
        "pick-2",
    )
    .await;
    assert_eq!(
        (pick3.status, &pick3.body["candidates"]["plates"]),
        (pick.status, &pick.body["candidates"]["plates"]),
        "{pick3:?}"
    );
    let pick4 = post(&s, &u1, &candidates_path, json!({"serial": batch[3]})).await;
    assert_eq!(
        (pick4.status, pick4.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{pick4:?}"
    );

    let claim_path = format!("/v1/applications/{id}/claim");
    let c1 = post_key(&s, &u1, &claim_path, json!({"serial": batch[3]}), "claim-1").await;
    assert_eq!(c1.status, StatusCode::CREATED, "{c1:?}");
    let c2 = post_key(&s, &u1, &claim_path, json!({"serial": batch[3]}), "claim-1").await;
    assert_eq!(
        (c2.status, &c2.body),
        (c1.status, &c1.body),
        "same voucher code, same everything"
    );
    assert_eq!(w.claimed_messages(&u1.phone).len(), 1, "one SMS");
    assert_eq!(w.small_counts(OFFICE).await, (0, 1));
    // Without the key, a second claim is refused: the first one happened once.
    let c3 = post(&s, &u1, &claim_path, json!({"serial": batch[3]})).await;
    assert_eq!(
        (c3.status, c3.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{c3:?}"
    );
    // A keyed send whose stored answer is missing (the first send with "claim-2" claimed and was
    // cut off before its answer was kept: a crash, a caller gone) gets the claim it made, not a
    // 409 for a claim of its own; nothing is claimed or sent again.
    let c4 = post_key(&s, &u1, &claim_path, json!({"serial": batch[3]}), "claim-2").await;
    assert_eq!(c4.status, StatusCode::CREATED, "{c4:?}");
    assert_eq!(c4.body["claim"]["serial"], c1.body["claim"]["serial"]);
    assert_eq!(c4.body["claim"]["voucher"], c1.body["claim"]["voucher"]);
    assert_eq!(c4.body["state"], "claimed");
    assert_eq!(w.claimed_messages(&u1.phone).len(), 1, "still one SMS");
    assert_eq!(w.small_counts(OFFICE).await, (0, 1));
    // A keyed claim of another number is still refused.
    let c5 = post_key(&s, &u1, &claim_path, json!({"serial": batch[4]}), "claim-3").await;
    assert_eq!(
        (c5.status, c5.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{c5:?}"
    );
    let bad = post_key(
        &s,
        &u1,
        &claim_path,
        json!({"serial": batch[3]}),
        "bad key with spaces",
    )
    .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{bad:?}"
    );
}

#[actix_rt::test]
async fn someone_elses_application_is_not_found() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let (u1, u2) = (
        person(&w, "u1", "13800000001"),
        person(&w, "u2", "13800000002"),
    );
    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    verify(&s, &w, &u1, &id).await;
    w.clock.advance(8_000);
    let base = format!("/v1/applications/{id}");

    let not_found = |r: &Resp| {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{r:?}"
        )
    };
    not_found(&get(&s, &u2, &base).await);
    not_found(&get(&s, &u2, &format!("{base}/keyboard?entered=A")).await);
    not_found(&get(&s, &u2, &format!("{base}/voucher")).await);
    not_found(
        &post(
            &s,
            &u2,
            &format!("{base}/custom"),
            json!({"plates": ["A1234"]}),
        )
        .await,
    );
    not_found(
        &post(
            &s,
            &u2,
            &format!("{base}/draws"),
            json!({"exclude_four": false}),
        )
        .await,
    );
    not_found(
        &post(
            &s,
            &u2,
            &format!("{base}/candidates"),
            json!({"serial": "A1234"}),
        )
        .await,
    );
    not_found(
        &post(
            &s,
            &u2,
            &format!("{base}/claim"),
            json!({"serial": "A1234"}),
        )
        .await,
    );
    not_found(
        &post(
            &s,
            &u2,
            &format!("{base}/identity"),
            json!({"sms_code": "123456"}),
        )
        .await,
    );
    not_found(
        &post(
            &s,
            &u2,
            "/v1/sms",
            json!({"purpose": "identity", "application": id}),
        )
        .await,
    );
    for bad in [
        "nonsense",
        "maoming-abc",
        "maoming-01",
        "nowhere-1",
        "maoming-999",
        "maoming-p999",
        "MAOMING-1",
    ] {
        not_found(&get(&s, &u1, &format!("/v1/applications/{bad}")).await);
        not_found(&post(&s, &u1, &format!("/v1/applications/{bad}/draws"), json!({})).await);
    }
    let a = get(&s, &u1, &base).await;
    assert_eq!(
        (
            a.body["custom_left"].clone(),
            a.body["random_left"].clone(),
            a.body["state"].clone()
        ),
        (json!(20), json!(5), json!("confirmed"))
    );
    assert_eq!(w.small_counts(OFFICE).await, (0, 0));

    let r = send(&s, Method::GET, &base, None, None, &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let r = send(
        &s,
        Method::GET,
        "/v1/me",
        Some("v1.forged.token"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
}

#[actix_rt::test]
async fn sms_code_rules() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");

    let r = post(&s, &u1, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["confirm_after_ms"], 0);
    assert_eq!(r.body["expires_in_ms"], 300_000);
    assert!(r.body["sent_at"].as_str().expect("sent_at").ends_with('Z'));
    let r = post(&s, &u1, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_soon"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["retry_after_ms"], 60_000);
    let r = post(&s, &u1, "/v1/sms", json!({"purpose": "claimed"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "purpose");

    let code = w.code(&u1.phone, Purpose::Apply);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let body = |voucher: &str, code: &str| json!({"office": OFFICE, "vin": vin(1), "voucher": voucher, "notice_version": "v1", "sms_code": code});
    // The rules come first: a refused application leaves the code alone, however often.
    for _ in 0..6 {
        let r = post(&s, &u1, "/v1/applications", body("WRONG", wrong)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "voucher_mismatch"),
            "{r:?}"
        );
    }
    let r = post(&s, &u1, "/v1/applications", json!({"office": OFFICE, "vin": vin(1), "voucher": voucher_no(1), "notice_version": "v0", "sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "notice_not_accepted"),
        "{r:?}"
    );
    let r = post(&s, &u1, "/v1/applications", json!({"office": "nowhere", "vin": vin(1), "voucher": voucher_no(1), "notice_version": "v1", "sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{r:?}"
    );
    let r = post(&s, &u1, "/v1/applications", json!({"office": OFFICE, "vin": "LSVAA001X1234567I", "voucher": voucher_no(1), "notice_version": "v1", "sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_vin"),
        "{r:?}"
    );
    let r = post(
        &s,
        &u1,
        "/v1/applications",
        json!({"office": OFFICE, "vin": vin(1)}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    // Five wrong codes kill it.
    for left in (0..5).rev() {
        let r = post(&s, &u1, "/v1/applications", body(&voucher_no(1), wrong)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
            "{r:?}"
        );
        assert_eq!(r.body["error"]["tries_left"], left);
    }
    let r = post(&s, &u1, "/v1/applications", body(&voucher_no(1), &code)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
        "dead: {r:?}"
    );
    assert_eq!(get(&s, &u1, "/v1/me").await.body["applications"], json!([]));

    // A new code after 60 s works, once.
    w.clock.advance(60_000);
    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    let code = w.code(&u1.phone, Purpose::Apply);
    let r = post(&s, &u1, "/v1/applications", body(&voucher_no(2), &code)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "voucher_mismatch"),
        "{r:?}"
    );
    let r = post(&s, &u1, "/v1/applications", json!({"office": OFFICE, "vin": vin(2), "voucher": voucher_no(2), "notice_version": "v1", "sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
        "used up: {r:?}"
    );
    let r = post(&s, &u1, "/v1/applications", body(&voucher_no(1), &code)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "application_exists"),
        "{r:?}"
    );

    // Identity codes: for an application, after the confirm delay, once.
    let r = post(&s, &u1, "/v1/sms", json!({"purpose": "identity"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "application");
    let r = post(
        &s,
        &u1,
        "/v1/sms",
        json!({"purpose": "identity", "application": id}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["confirm_after_ms"], 5_000);
    let code = w.code(&u1.phone, Purpose::Identity);
    let path = format!("/v1/applications/{id}/identity");
    let r = post(&s, &u1, &path, json!({"sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_soon"),
        "{r:?}"
    );
    w.clock.advance(4_000);
    let r = post(&s, &u1, &path, json!({"sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_soon"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["retry_after_ms"], 1_000);
    w.clock.advance(1_000);
    let wrong = if code == "999999" { "999998" } else { "999999" };
    let r = post(&s, &u1, &path, json!({"sms_code": wrong})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
        "{r:?}"
    );
    assert_eq!(
        get(&s, &u1, &format!("/v1/applications/{id}")).await.body["identity_verified"],
        false
    );
    let r = post(&s, &u1, &path, json!({"sms_code": code})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = post(&s, &u1, &path, json!({"sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
        "single use: {r:?}"
    );
    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.body["identity_verified"], true);
    assert_eq!(
        (a.body["stage"].clone(), a.body["step"].clone()),
        (json!(2), json!(2))
    );
    // Codes expire after five minutes.
    w.clock.advance(60_000);
    let r = post(
        &s,
        &u1,
        "/v1/sms",
        json!({"purpose": "identity", "application": id}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let code = w.code(&u1.phone, Purpose::Identity);
    w.clock.advance(300_000);
    let r = post(&s, &u1, &path, json!({"sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_expired"),
        "{r:?}"
    );
}

#[actix_rt::test]
async fn keyboard_enables_what_is_available() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    let kb = |entered: &str| format!("/v1/applications/{id}/keyboard?entered={entered}");
    let enabled = |r: &Resp| -> Vec<String> {
        r.body["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .enumerate()
            .map(|(i, p)| {
                assert_eq!(p["index"], i);
                p["enabled"].as_str().expect("enabled").to_string()
            })
            .collect()
    };
    let digits = "0123456789".to_string();
    let r = get(&s, &u1, &format!("/v1/applications/{id}/keyboard")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["length"], 5);
    assert_eq!(
        enabled(&r),
        vec![
            "A".to_string(),
            digits.clone(),
            digits.clone(),
            digits.clone(),
            digits.clone()
        ]
    );
    let r = get(&s, &u1, &kb("a1")).await;
    assert_eq!(r.body["entered"], "A1");
    assert_eq!(enabled(&r)[2], digits);
    let r = get(&s, &u1, &kb("_1")).await;
    assert_eq!(enabled(&r)[0], "A");
    let r = get(&s, &u1, &kb("B")).await;
    assert_eq!(enabled(&r)[1], "", "no number starts with B");
    let r = get(&s, &u1, &kb("A1I")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_plate"),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["position"], 3);
    assert_eq!(r.body["error"]["field"], "entered");
    let r = get(&s, &u1, &kb("A12345")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.body["error"]["field"], "entered");
}

#[actix_rt::test]
async fn rate_limits_come_before_any_rule() {
    let w = World::new(1).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let r = get(&s, &u1, "/v1/applications/maoming-7/keyboard").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{r:?}"
    );
    let r = get(&s, &u1, "/v1/applications/maoming-7/keyboard").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        "{r:?}"
    );
    assert!(r.body["error"]["retry_after_ms"]
        .as_u64()
        .is_some_and(|ms| ms > 0));
    let r = post(
        &s,
        &u1,
        "/v1/applications/maoming-7/custom",
        json!({"plates": "not even a list"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        "{r:?}"
    );
    // Another citizen has their own allowance.
    let u2 = person(&w, "u2", "13800000002");
    let r = post(&s, &u2, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[actix_rt::test]
async fn a_lapsed_claim_blacklists_and_me_says_until_when() {
    let w = World::new(1_000).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let u1 = person(&w, "u1", "13800000001");
    let id = apply(&s, &w, &u1, OFFICE, 1).await;
    verify(&s, &w, &u1, &id).await;
    w.clock.advance(8_000);
    let r = post(
        &s,
        &u1,
        &format!("/v1/applications/{id}/custom"),
        json!({"plates": ["A1234"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Past the deadline: the claim lapses (R4.11) and the user is blacklisted (I6).
    w.clock.advance(10 * 86_400_000);
    let a = get(&s, &u1, &format!("/v1/applications/{id}")).await;
    assert_eq!(a.body["state"], "lapsed", "{a:?}");
    let mut me = get(&s, &u1, "/v1/me").await;
    for _ in 0..200 {
        if me.body["blacklisted_until"].is_string() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
        me = get(&s, &u1, "/v1/me").await;
    }
    assert!(me.body["blacklisted_until"].is_string(), "{me:?}");
    assert_eq!(me.body["resume"], Value::Null);
    assert_eq!(me.body["message"]["code"], "blacklisted");
    let r = get(&s, &u1, &format!("/v1/applications/{id}/voucher")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{r:?}"
    );
    // A blacklisted user cannot apply again (I6).
    let u1b = person(&w, "u1", "13800000001");
    let r = post(&s, &u1b, "/v1/sms", json!({"purpose": "apply"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let code = w.code(&u1.phone, Purpose::Apply);
    let r = post(&s, &u1b, "/v1/applications", json!({"office": OFFICE, "vin": vin(5), "voucher": voucher_no(5), "notice_version": "v1", "sms_code": code})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "blacklisted"),
        "{r:?}"
    );
    assert!(r.body["error"]["blacklisted_until"].is_string());
}
