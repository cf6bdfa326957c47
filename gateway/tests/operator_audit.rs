//! What operators see of the system's life through the real app factory: certificate imports in
//! the audit trail (SPEC R5.6), each office's own draw and check rates and latency (R5.5), and
//! a printed voucher confirmed by its serial and verification code (R4.8).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test;
use platepool_engine::calendar::rfc3339;
use platepool_engine::{AppId, ApplicationRequest, Caller, Engine, OfficeRules};
use platepool_gateway::Gateway;
use serde_json::{json, Value};

mod support;
use support::{app, certificate, t0, vin, voucher_no, TestClock, OPERATOR as OP};

const MAOMING: &str = "maoming";
const GAOZHOU: &str = "gaozhou";
const WHO: &str = "operator:test";

struct World {
    _dir: tempfile::TempDir,
    gw: Gateway,
    engine: Engine,
    clock: Arc<TestClock>,
}

/// Two offices with the same rules (no waits between checks, no opening window), each with
/// `A####` released and open.
async fn world() -> World {
    let clock = TestClock::at(t0());
    let (dir, engine) = support::engine(Some(11), Some(clock.clone())).await;
    let rules = OfficeRules {
        custom_min_interval_ms: 0,
        opening_window_ms: 0,
        sms_confirm_delay_ms: 0,
        random_min_interval_ms: 0,
        ..OfficeRules::default()
    };
    for (id, name) in [(MAOMING, "茂名市车辆管理所"), (GAOZHOU, "高州市车辆管理所")]
    {
        engine
            .put_office(id, support::office(name, &["small"], rules.clone()), WHO)
            .await
            .unwrap();
        engine
            .add_release(id, support::release("small", "A", &["A####"], t0()), WHO)
            .await
            .unwrap();
    }
    let gw = support::gateway(&engine, support::gateway_config());
    World {
        _dir: dir,
        gw,
        engine,
        clock,
    }
}

impl World {
    /// Imports certificate `n` (small, fuel) and opens a verified application for `user` on it.
    async fn application(&self, office: &str, user: &str, n: u32) -> AppId {
        let report = self
            .engine
            .import_certificates(vec![certificate(n, "small", "fuel")], WHO)
            .await
            .unwrap();
        assert_eq!(report.imported, 1);
        let id = self
            .engine
            .create_application(ApplicationRequest {
                office: office.into(),
                user: user.into(),
                phone: phone(user),
                vin: vin(n),
                voucher: voucher_no(n),
                notice_version: "v1".into(),
            })
            .await
            .unwrap();
        self.engine
            .verify_identity(&id, Caller::Citizen(user))
            .await
            .unwrap();
        id
    }

    fn citizen(&self, user: &str) -> String {
        support::token(user, &phone(user), t0() / 1000 + 86_400)
    }
}

fn phone(_user: &str) -> String {
    "13800138000".into()
}

/// Sends a request; answers (status, JSON body or Null), checked against the OpenAPI document.
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let req = $req.to_request();
        let (method, path) = (req.method().to_string(), req.uri().to_string());
        let resp = test::call_service(&$app, req).await;
        let read = support::openapi::read_checked(&[""], &method, &path, resp).await;
        (
            read.status,
            serde_json::from_slice::<Value>(&read.body).unwrap_or(Value::Null),
        )
    }};
}

fn op_get(path: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {OP}")))
}

fn citizen_post(token: &str, path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .set_json(body)
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or(""),
        body["error"]["field"].as_str().unwrap_or(""),
    )
}

/// The cross-office audit entries of certificate imports, oldest first.
fn imports(page: &Value) -> Vec<Value> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "import_certificates")
        .cloned()
        .collect()
}

#[actix_web::test]
async fn certificate_imports_are_in_the_audit_trail_with_operator_and_counts() {
    let w = world().await;
    let app = app!(w.gw);
    let (s, page) = call!(app, op_get("/v1/admin/audit"));
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(imports(&page).is_empty(), "{page}");

    // CSV: two good rows, one the engine refuses (bad VIN), one the gateway cannot read.
    let first_at = w.gw.engine.now_ms();
    let csv = format!(
        "vin,voucher,class,energy\n{},{},small,fuel\n{},{},small,bev\nLSVAA001X1234567Z,V9,small,fuel\nonly,three,fields\n",
        vin(1),
        voucher_no(1),
        vin(2),
        voucher_no(2),
    );
    let (s, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/admin/certificates")
            .insert_header(("Authorization", format!("Bearer {OP}")))
            .insert_header(("Content-Type", "text/csv"))
            .set_payload(csv)
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["imported"], 2, "{b}");
    assert_eq!(b["rejected"].as_array().unwrap().len(), 2, "{b}");

    // A minute later, JSON: one good row.
    w.clock.advance(60_000);
    let second_at = w.gw.engine.now_ms();
    let (s, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/admin/certificates")
            .insert_header(("Authorization", format!("Bearer {OP}")))
            .set_json(json!([{"vin": vin(3), "voucher": voucher_no(3), "class": "small", "energy": "fuel"}]))
    );
    assert_eq!(
        (s, b["imported"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{b}"
    );

    // Both imports, in order: who, what (the counts the operator was answered), when.
    let (s, page) = call!(app, op_get("/v1/admin/audit"));
    assert_eq!(s, StatusCode::OK, "{page}");
    let found = imports(&page);
    assert_eq!(found.len(), 2, "{page}");
    assert_eq!(found[0]["who"], "operator:operator");
    assert_eq!(found[0]["detail"], "certificates: 2 imported, 2 rejected");
    assert_eq!(found[0]["at"], rfc3339(first_at));
    assert_eq!(found[1]["who"], "operator:operator");
    assert_eq!(found[1]["detail"], "certificates: 1 imported, 0 rejected");
    assert_eq!(found[1]["at"], rfc3339(second_at));
    assert!(found[0]["id"].as_u64() < found[1]["id"].as_u64());

    // `since` and paging work on them as on every entry.
    let (_, page) = call!(
        app,
        op_get(&format!("/v1/admin/audit?since={}", rfc3339(second_at)))
    );
    let found = imports(&page);
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["detail"], "certificates: 1 imported, 0 rejected");
    let (_, page) = call!(app, op_get("/v1/admin/audit?limit=1"));
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["more"], true);

    // An import in which nothing could be read is recorded too, and changed nothing else.
    let (s, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/admin/certificates")
            .insert_header(("Authorization", format!("Bearer {OP}")))
            .set_json(
                json!([{"vin": "bad", "voucher": "x", "class": "small", "energy": "fuel"}, 7])
            )
    );
    assert_eq!(
        (s, b["imported"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{b}"
    );
    let (_, page) = call!(app, op_get("/v1/admin/audit"));
    let found = imports(&page);
    assert_eq!(found.len(), 3, "{page}");
    assert_eq!(found[2]["detail"], "certificates: 0 imported, 2 rejected");

    // Certificate records are national: they are not in an office's trail.
    let (s, page) = call!(
        app,
        op_get(&format!("/v1/admin/audit?office={MAOMING}&limit=1000"))
    );
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(imports(&page).is_empty(), "{page}");

    // The records imported are the ones the registry holds: an application on one opens.
    w.engine
        .create_application(ApplicationRequest {
            office: MAOMING.into(),
            user: "u1".into(),
            phone: phone("u1"),
            vin: vin(3),
            voucher: voucher_no(3),
            notice_version: "v1".into(),
        })
        .await
        .unwrap();
}

/// The stats of an office.
macro_rules! stats {
    ($app:expr, $office:expr) => {{
        let (s, b) = call!(
            $app,
            op_get(&format!("/v1/admin/offices/{}/stats", $office))
        );
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }};
}

/// A draw by `user` on application `id`: (status, body).
macro_rules! draw {
    ($app:expr, $w:expr, $user:expr, $id:expr) => {
        call!(
            $app,
            citizen_post(
                &$w.citizen($user),
                &format!("/v1/applications/{}/draws", $id),
                json!({})
            )
        )
    };
}

#[actix_web::test]
async fn each_office_shows_its_own_draw_and_check_rates_and_latency() {
    let w = world().await;
    let app = app!(w.gw);
    // Maoming: four draws. Gaozhou: one draw, and one check that claims a number.
    let a = w.application(MAOMING, "ua", 1).await;
    let b = w.application(GAOZHOU, "ub", 2).await;
    let c = w.application(GAOZHOU, "uc", 3).await;
    for _ in 0..4 {
        let (s, body) = draw!(app, w, "ua", a);
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let (s, body) = draw!(app, w, "ub", b);
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = call!(
        app,
        citizen_post(
            &w.citizen("uc"),
            &format!("/v1/applications/{c}/custom"),
            json!({"plates": ["A1235"]})
        )
    );
    assert_eq!(s, StatusCode::OK, "{body}");

    // A second on, so that this reading starts the next window.
    actix_web::rt::time::sleep(Duration::from_millis(1_050)).await;
    let m = stats!(app, MAOMING);
    let g = stats!(app, GAOZHOU);
    assert_eq!(
        (m["rates"]["scope"].as_str(), g["rates"]["scope"].as_str()),
        (Some("office"), Some("office"))
    );
    let rate = |v: &Value, k: &str| v["rates"][k].as_f64().unwrap();
    assert!(rate(&m, "draws_per_s") > 0.0, "{m}");
    assert!(
        rate(&m, "draws_per_s") > rate(&g, "draws_per_s"),
        "four draws against one: {m} {g}"
    );
    assert_eq!(rate(&m, "checks_per_s"), 0.0, "{m}");
    assert!(rate(&g, "checks_per_s") > 0.0, "{g}");
    let count = |v: &Value, part: &str, k: &str| v[part][k]["count"].as_u64().unwrap();
    assert_eq!(
        (count(&m, "totals", "draws"), count(&m, "totals", "checks")),
        (4, 0)
    );
    assert_eq!(
        (count(&g, "totals", "draws"), count(&g, "totals", "checks")),
        (1, 1)
    );
    assert_eq!(
        (count(&m, "latency", "draws"), count(&g, "latency", "draws")),
        (4, 1)
    );
    assert!(
        m["latency"]["draws"]["p50_ms"].as_f64().unwrap() > 0.0,
        "{m}"
    );
    assert!(
        m["latency"]["draws"]["p99_ms"].as_f64().unwrap()
            >= m["latency"]["draws"]["p50_ms"].as_f64().unwrap()
    );
    assert!(
        m["latency"]["checks"]["p50_ms"].is_null(),
        "no checks in Maoming: {m}"
    );
    assert!(
        g["latency"]["checks"]["p50_ms"].as_f64().unwrap() > 0.0,
        "{g}"
    );
    // The gateway-wide figures are there too, named as such, and the same for both.
    assert_eq!(m["gateway"]["scope"], "gateway");
    assert!(m["gateway"]["rates"]["draws_per_s"].is_number(), "{m}");

    // The next window: two more draws in Gaozhou, none in Maoming.
    for _ in 0..2 {
        let (s, body) = draw!(app, w, "ub", b);
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let m2 = stats!(app, MAOMING);
    let g2 = stats!(app, GAOZHOU);
    assert_eq!(count(&m2, "latency", "draws"), 0, "{m2}");
    assert_eq!(rate(&m2, "draws_per_s"), 0.0, "{m2}");
    assert_eq!(count(&g2, "latency", "draws"), 2, "{g2}");
    assert!(rate(&g2, "draws_per_s") > 0.0, "{g2}");
    assert_eq!(count(&m2, "totals", "draws"), 4);
    assert_eq!(count(&g2, "totals", "draws"), 3);

    // A draw refused for a business reason is an answer of the office: counted, as refused.
    let (s, _) = draw!(app, w, "ua", a);
    assert_eq!(s, StatusCode::CREATED, "the fifth and last draw");
    let (s, body) = draw!(app, w, "ua", a);
    assert_eq!(
        (s, error_of(&body).0),
        (StatusCode::CONFLICT, "quota_spent"),
        "{body}"
    );
    let m3 = stats!(app, MAOMING);
    assert_eq!(count(&m3, "totals", "draws"), 6, "{m3}");
    assert_eq!(m3["totals"]["draws"]["refused"], 1, "{m3}");
    assert_eq!(stats!(app, GAOZHOU)["totals"]["draws"]["count"], 3);

    // /metrics has them per office too.
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains("platepool_office_draws_total{office=\"maoming\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("platepool_office_draws_total{office=\"gaozhou\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("platepool_office_checks_total{office=\"gaozhou\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "platepool_office_call_duration_seconds_count{office=\"maoming\",call=\"draw\"} 6"
    ));
}

#[actix_web::test]
async fn a_voucher_is_confirmed_by_its_serial_and_code_and_nothing_else() {
    let w = world().await;
    let app = app!(w.gw);
    let id = w.application(MAOMING, "uv", 5).await;
    let other = w.application(MAOMING, "uw", 6).await;
    let (s, body) = call!(
        app,
        citizen_post(
            &w.citizen("uv"),
            &format!("/v1/applications/{id}/custom"),
            json!({"plates": ["A1235"]})
        )
    );
    assert_eq!(s, StatusCode::OK, "{body}");
    let serial = body["claim"]["voucher"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let code = body["claim"]["voucher"]["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(serial.starts_with("MAOMING-"), "{serial}");
    // The printed voucher shows the same serial and code.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!("/v1/applications/{id}/voucher"))
            .insert_header(("Authorization", format!("Bearer {}", w.citizen("uv"))))
            .to_request(),
    )
    .await;
    let html = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(html.contains(&serial) && html.contains(&code));

    // Serial and code: the application, unmasked.
    let confirm = |serial: &str, code: &str| {
        op_get(&format!(
            "/v1/admin/applications?voucher={serial}&code={code}"
        ))
    };
    let (s, b) = call!(app, confirm(&serial, &code));
    assert_eq!(s, StatusCode::OK, "{b}");
    let found = b.as_array().unwrap();
    assert_eq!(found.len(), 1, "{b}");
    assert_eq!(found[0]["id"], id.to_string());
    assert_eq!(found[0]["vin"], vin(5), "unmasked");
    assert_eq!(found[0]["state"], "claimed");
    assert_eq!(found[0]["claim"]["serial"], "A1235");
    assert_eq!(found[0]["claim"]["voucher"]["code"], code.as_str());
    // In lower case, and with the office as a filter, too.
    let (s, b) = call!(app, confirm(&serial.to_lowercase(), &code));
    assert_eq!(
        (s, b[0]["id"].as_str()),
        (StatusCode::OK, Some(id.to_string().as_str()))
    );
    let (s, _) = call!(
        app,
        op_get(&format!(
            "/v1/admin/applications?voucher={serial}&code={code}&office={MAOMING}"
        ))
    );
    assert_eq!(s, StatusCode::OK);

    // A wrong code, another day, another application's number, another office: 404, all alike.
    let mut wrong_code = code.clone().into_bytes();
    wrong_code[7] = if wrong_code[7] == b'9' {
        b'0'
    } else {
        wrong_code[7] + 1
    };
    let wrong_code = String::from_utf8(wrong_code).unwrap();
    let date = serial.split('-').nth(1).unwrap().to_string();
    let other_date = if date == "20261125" {
        "20261126"
    } else {
        "20261125"
    };
    let other_day = format!("MAOMING-{other_date}-{}", id.seq);
    let not_found: Vec<(String, String, String)> = vec![
        (serial.clone(), wrong_code, "a wrong code".into()),
        (other_day, code.clone(), "another day".into()),
        (
            format!("MAOMING-{date}-{}", other.seq),
            code.clone(),
            "an unclaimed application".into(),
        ),
        (
            format!("MAOMING-{date}-999"),
            code.clone(),
            "no such application".into(),
        ),
        (
            format!("GAOZHOU-{date}-{}", id.seq),
            code.clone(),
            "another office".into(),
        ),
        (
            format!("NOWHERE-{date}-{}", id.seq),
            code.clone(),
            "no such office".into(),
        ),
    ];
    let mut messages = Vec::new();
    for (serial, code, what) in &not_found {
        let (s, b) = call!(app, confirm(serial, code));
        assert_eq!(
            (s, error_of(&b)),
            (StatusCode::NOT_FOUND, ("not_found", "")),
            "{what}: {b}"
        );
        messages.push(b["error"]["message"].clone());
    }
    assert!(
        messages.windows(2).all(|m| m[0] == m[1]),
        "one answer for every miss: {messages:?}"
    );
    let (s, b) = call!(
        app,
        op_get(&format!(
            "/v1/admin/applications?voucher={serial}&code={code}&office={GAOZHOU}"
        ))
    );
    assert_eq!(
        (s, error_of(&b).0),
        (StatusCode::NOT_FOUND, "not_found"),
        "{b}"
    );

    // Malformed: 400 naming the field.
    for (query, field) in [
        (format!("voucher={serial}"), "code"),
        (format!("voucher={serial}&code="), "code"),
        (format!("voucher={serial}&code=1234567"), "code"),
        (format!("voucher={serial}&code=1234567x"), "code"),
        (format!("voucher=A1235&code={code}"), "voucher"),
        (
            format!("voucher=MAOMING-2026-11-24-1&code={code}"),
            "voucher",
        ),
        (format!("voucher=MAOMING-{date}-01&code={code}"), "voucher"),
        (format!("code={code}"), "voucher"),
        (format!("voucher={serial}&code={code}&vin={}", vin(5)), ""),
        (format!("voucher={serial}&code={code}&user=uv"), ""),
    ] {
        let (s, b) = call!(app, op_get(&format!("/v1/admin/applications?{query}")));
        assert_eq!(
            (s, error_of(&b)),
            (StatusCode::BAD_REQUEST, ("bad_request", field)),
            "{query}: {b}"
        );
    }
    // `serial=` stays the plate look-up of API.md: a voucher serial there is not a plate.
    let (s, b) = call!(
        app,
        op_get(&format!(
            "/v1/admin/applications?serial={serial}&office={MAOMING}"
        ))
    );
    assert_eq!(
        (s, error_of(&b).0),
        (StatusCode::BAD_REQUEST, "invalid_plate"),
        "{b}"
    );
    let (s, b) = call!(
        app,
        op_get(&format!(
            "/v1/admin/applications?serial=A1235&office={MAOMING}"
        ))
    );
    assert_eq!(
        (s, b[0]["id"].as_str()),
        (StatusCode::OK, Some(id.to_string().as_str()))
    );

    // Registered, the voucher still confirms, and says so.
    w.engine.register(MAOMING, "A1235", WHO).await.unwrap();
    let (s, b) = call!(app, confirm(&serial, &code));
    assert_eq!(
        (s, b[0]["state"].as_str()),
        (StatusCode::OK, Some("issued")),
        "{b}"
    );
}
