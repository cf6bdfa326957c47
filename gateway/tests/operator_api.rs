//! The operator and public API through the real app factory (`Gateway::scope` in an actix `App`),
//! over an engine in a temporary folder: every operator route's success and documented errors.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test;
use platepool_engine::actor::{Clock, SystemClock};
use platepool_engine::vin::Vin;
use platepool_engine::{ApplicationRequest, Caller, Check};
use platepool_gateway::sms::Purpose;
use platepool_gateway::{route_keys, Gateway, GatewayConfig};
use serde_json::{json, Value};

mod support;
use support::{app, OPERATOR as OP, SECRET};

const OFFICE: &str = "maoming";

/// Real time plus an offset the test moves forward.
#[derive(Debug, Default)]
struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms as i64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        (SystemClock.now_ms() as i64 + self.offset_ms.load(Ordering::SeqCst)).max(0) as u64
    }
}

async fn gateway_with(
    config: GatewayConfig,
    clock: Arc<TestClock>,
) -> (Gateway, tempfile::TempDir) {
    let (dir, engine) = support::engine(Some(7), Some(clock)).await;
    (support::gateway(&engine, config), dir)
}

async fn gateway() -> (Gateway, tempfile::TempDir, Arc<TestClock>) {
    let clock = Arc::new(TestClock::default());
    let (gw, dir) = gateway_with(support::gateway_config(), clock.clone()).await;
    (gw, dir, clock)
}

fn citizen_token(gw: &Gateway, user: &str) -> String {
    support::token(user, "13800138000", gw.engine.now_ms() / 1000 + 3_600)
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

fn op_req(method: &str, path: &str) -> test::TestRequest {
    let req = match method {
        "GET" => test::TestRequest::get(),
        "POST" => test::TestRequest::post(),
        "PUT" => test::TestRequest::put(),
        "DELETE" => test::TestRequest::delete(),
        other => panic!("method {other}"),
    };
    req.uri(path)
        .insert_header(("Authorization", format!("Bearer {OP}")))
}

fn op_json(method: &str, path: &str, body: Value) -> test::TestRequest {
    op_req(method, path).set_json(body)
}

fn office_doc() -> Value {
    json!({
        "name": "茂名市车辆管理所", "prefix": "粤K", "classes": ["small", "small_new_energy"],
        "rules": {
            "custom_min_interval_ms": 0, "opening_window_ms": 0, "sms_confirm_delay_ms": 0,
            "deny": ["three_identical_digits"]
        },
        "notice": {"version": "v1", "text": "须知"}
    })
}

fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LFV2A21K0SA{n:06}"))
        .unwrap()
        .into_string()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("")
}

/// Lets the pool notice's per-worker snapshot (at most 100 ms old) go stale.
async fn pool_fresh() {
    actix_web::rt::time::sleep(Duration::from_millis(120)).await;
}

#[actix_web::test]
async fn every_operator_route_needs_the_operator_token() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let citizen = citizen_token(&gw, "citizen1");
    let mut checked = 0;
    for (method, pattern) in route_keys()
        .into_iter()
        .filter(|(_, p)| p.starts_with("/v1/admin"))
    {
        let path = pattern
            .replace("{office}", OFFICE)
            .replace("{id}", "1")
            .replace("{serial}", "A0001")
            .replace("{user}", "u1");
        let bare = op_req(method, &path);
        let bare = bare.insert_header(("Authorization", "Bearer nothing-like-a-token-at-all"));
        let (s, b) = call!(app, bare);
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a bad token"
        );
        assert_eq!(error_code(&b), "unauthorized");

        let req = match method {
            "GET" => test::TestRequest::get(),
            "POST" => test::TestRequest::post(),
            "PUT" => test::TestRequest::put(),
            _ => test::TestRequest::delete(),
        }
        .uri(&path)
        .set_json(json!({}));
        let (s, b) = call!(app, req);
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert_eq!(error_code(&b), "unauthorized");

        let req = op_req(method, &path)
            .insert_header(("Authorization", format!("Bearer {citizen}")))
            .set_json(json!({}));
        let (s, b) = call!(app, req);
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{method} {path} with a citizen token"
        );
        assert_eq!(error_code(&b), "forbidden");
        checked += 1;
    }
    assert_eq!(
        checked, 17,
        "the operator routes, the release preview and the clock among them"
    );
}

#[actix_web::test]
async fn offices_are_created_reconfigured_and_published() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);

    let (s, b) = call!(
        app,
        op_json("PUT", "/v1/admin/offices/maoming", office_doc())
    );
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["id"], "maoming");
    assert_eq!(
        b["rules"]["custom_quota"], 20,
        "omitted rules take the defaults"
    );
    assert_eq!(b["rules"]["deny"], json!(["three_identical_digits"]));

    let mut doc = office_doc();
    doc["rules"]["custom_quota"] = json!(12);
    doc["notice"] = json!({"version": "v2", "text": "新须知"});
    let (s, b) = call!(app, op_json("PUT", "/v1/admin/offices/maoming", doc));
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["rules"]["custom_quota"], 12);

    let (s, b) = call!(app, test::TestRequest::get().uri("/v1/offices"));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!([{"id": "maoming", "name": "茂名市车辆管理所", "prefix": "粤K", "classes": ["small", "small_new_energy"]}])
    );
    let (s, b) = call!(app, test::TestRequest::get().uri("/v1/offices/maoming"));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["rules"]["custom_quota"], 12);
    assert_eq!(b["prefix"], "粤K");
    assert!(b.get("operator_token").is_none());
    let (s, b) = call!(
        app,
        test::TestRequest::get().uri("/v1/offices/maoming/notice")
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({"version": "v2", "text": "新须知"}));

    // Bad documents: the field at fault is named; nothing changes.
    let mut bad = office_doc();
    bad["rules"]["random_batch"] = json!(0);
    let (s, b) = call!(app, op_json("PUT", "/v1/admin/offices/maoming", bad));
    assert_eq!(
        (s, error_code(&b), error_field(&b)),
        (StatusCode::BAD_REQUEST, "bad_request", "rules.random_batch")
    );
    let mut bad = office_doc();
    bad["rules"]["custom_qouta"] = json!(3);
    let (s, b) = call!(app, op_json("PUT", "/v1/admin/offices/maoming", bad));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_field(&b).starts_with("rules"), "{b}");
    let mut bad = office_doc();
    bad["classes"] = json!(["small", "truck"]);
    let (s, b) = call!(app, op_json("PUT", "/v1/admin/offices/maoming", bad));
    assert_eq!(
        (s, error_field(&b)),
        (StatusCode::BAD_REQUEST, "classes[1]")
    );
    let mut bad = office_doc();
    bad["rules"]["custom_patterns"] = json!({"small": ["A###"]});
    let (s, b) = call!(app, op_json("PUT", "/v1/admin/offices/maoming", bad));
    assert_eq!(
        (s, error_field(&b)),
        (StatusCode::BAD_REQUEST, "rules.custom_patterns.small[0]")
    );
    let (s, b) = call!(
        app,
        op_json("PUT", "/v1/admin/offices/Mao-Ming", office_doc())
    );
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "office"));
    let (s, b) = call!(
        app,
        op_req("PUT", "/v1/admin/offices/maoming")
            .insert_header(("Content-Type", "application/json"))
            .set_payload("{\"name\": ")
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let (s, _) = call!(app, test::TestRequest::get().uri("/v1/offices/maoming"));
    assert_eq!(s, StatusCode::OK);

    for path in [
        "/v1/offices/nowhere",
        "/v1/offices/nowhere/notice",
        "/v1/offices/nowhere/pool",
    ] {
        let (s, b) = call!(app, test::TestRequest::get().uri(path));
        assert_eq!(
            (s, error_code(&b)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn releases_withdrawals_and_the_pool_notice() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let (s, _) = call!(
        app,
        op_json("PUT", "/v1/admin/offices/maoming", office_doc())
    );
    assert_eq!(s, StatusCode::CREATED);
    let url = "/v1/admin/offices/maoming/releases";

    let (s, b) = call!(
        app,
        op_json(
            "POST",
            url,
            json!({"class": "small", "label": "粤K·A0000–A9999", "opens_at": "2026-01-01T00:00:00Z", "patterns": ["A####", "B12##"]})
        )
    );
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["id"].as_u64(), b["total"].as_u64()),
        (Some(1), Some(10_100))
    );
    let tomorrow = platepool_engine::calendar::rfc3339(gw.engine.now_ms() + 86_400_000);
    let later = platepool_engine::calendar::rfc3339(gw.engine.now_ms() + 8 * 86_400_000);
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            url,
            json!({"class": "small", "label": "C", "opens_at": tomorrow, "custom_from": later, "patterns": ["C####"]})
        )
    );
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["id"].as_u64(), b["total"].as_u64()),
        (Some(2), Some(10_000))
    );
    assert_eq!(b["custom_from"], json!(later));
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            url,
            json!({"class": "small_new_energy", "label": "D", "opens_at": "2026-01-01T08:00:00+08:00", "serials": ["DA1234", "da1235", "粤K·DA1236"]})
        )
    );
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["total"], 3);

    // Documented errors, with the field at fault.
    let cases = [
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z", "patterns": ["A####", "A[#"]}),
            "bad_request",
            "patterns[1]",
        ),
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z", "patterns": ["DA####"]}),
            "bad_request",
            "patterns[0]",
        ),
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z", "serials": ["A0001", "A0I01"]}),
            "invalid_plate",
            "serials[1]",
        ),
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z", "serials": ["A0001", "DA0001"]}),
            "bad_request",
            "serials[1]",
        ),
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z", "patterns": ["E####"], "serials": ["A0001"]}),
            "bad_request",
            "serials",
        ),
        (
            json!({"class": "small", "opens_at": "2026-01-01T00:00:00Z"}),
            "bad_request",
            "patterns",
        ),
        (
            json!({"class": "small", "opens_at": "yesterday", "patterns": ["E####"]}),
            "bad_request",
            "opens_at",
        ),
        (
            json!({"class": "small", "custom_from": "2026-13-01T00:00:00Z", "patterns": ["E####"]}),
            "bad_request",
            "custom_from",
        ),
        (
            json!({"class": "truck", "patterns": ["E####"]}),
            "bad_request",
            "class",
        ),
        (
            json!({"class": "small", "patterns": "E####"}),
            "bad_request",
            "patterns",
        ),
        (
            json!({"class": "small", "patterns": ["A####"]}),
            "bad_request",
            "patterns",
        ),
    ];
    for (body, code, field) in cases {
        let (s, b) = call!(app, op_json("POST", url, body.clone()));
        assert_eq!(
            (s, error_code(&b), error_field(&b)),
            (StatusCode::BAD_REQUEST, code, field),
            "{body} → {b}"
        );
    }
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/offices/nowhere/releases",
            json!({"class": "small", "patterns": ["E####"]})
        )
    );
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));

    // The pool notice: opened releases count, the one opening tomorrow is listed with 0.
    let (s, b) = call!(
        app,
        test::TestRequest::get().uri("/v1/offices/maoming/pool")
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["office"], "maoming");
    assert!(platepool_engine::calendar::parse_rfc3339(b["as_of"].as_str().unwrap()).is_ok());
    let small = &b["classes"][0];
    assert_eq!(small["class"], "small");
    assert_eq!(small["available"], 10_100);
    assert_eq!(small["releases"][0]["available"], 10_100);
    assert_eq!(small["releases"][0]["total"], 10_100);
    assert_eq!(small["releases"][0]["label"], "粤K·A0000–A9999");
    assert_eq!(small["releases"][0]["opens_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(small["releases"][1]["id"], 2);
    assert_eq!(small["releases"][1]["available"], 0, "not open yet");
    assert_eq!(small["releases"][1]["total"], 10_000);
    assert_eq!(small["releases"][1]["opens_at"], json!(tomorrow));
    let ne = &b["classes"][1];
    assert_eq!(
        (ne["class"].as_str(), ne["available"].as_u64()),
        (Some("small_new_energy"), Some(3))
    );
    for key in [
        "id",
        "label",
        "opens_at",
        "custom_from",
        "total",
        "available",
    ] {
        assert!(small["releases"][0].get(key).is_some(), "{key}");
    }

    // Withdraw one number, then the rest of a release.
    let (s, b) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/maoming/plates/a0001")
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["serial"].as_str(), b["plate"].as_str()),
        (Some("A0001"), Some("粤K·A0001"))
    );
    let (s, b) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/maoming/plates/A0001")
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::CONFLICT, "conflict"),
        "already withdrawn"
    );
    let (s, b) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/maoming/plates/A0I01")
    );
    assert_eq!(
        (s, error_code(&b), error_field(&b)),
        (StatusCode::BAD_REQUEST, "invalid_plate", "serial")
    );
    assert_eq!(b["error"]["position"], 3);
    let (s, b) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/maoming/plates/E0001")
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::NOT_FOUND, "not_found"),
        "never released"
    );
    let (s, _) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/nowhere/plates/A0002")
    );
    assert_eq!(s, StatusCode::NOT_FOUND);
    pool_fresh().await;
    let (_, b) = call!(
        app,
        test::TestRequest::get().uri("/v1/offices/maoming/pool")
    );
    assert_eq!(b["classes"][0]["available"], 10_099);

    let (s, b) = call!(
        app,
        op_req("DELETE", "/v1/admin/offices/maoming/releases/3")
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["withdrawn"], 3);
    for path in [
        "/v1/admin/offices/maoming/releases/99",
        "/v1/admin/offices/maoming/releases/abc",
        "/v1/admin/offices/nowhere/releases/1",
    ] {
        let (s, b) = call!(app, op_req("DELETE", path));
        assert_eq!(
            (s, error_code(&b)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    pool_fresh().await;
    let (_, b) = call!(
        app,
        test::TestRequest::get().uri("/v1/offices/maoming/pool")
    );
    assert_eq!(b["classes"][1]["available"], 0);
    assert_eq!(b["classes"][1]["releases"][0]["available"], 0);

    // Stats: counts per class and release.
    let (s, b) = call!(app, op_req("GET", "/v1/admin/offices/maoming/stats"));
    assert_eq!(s, StatusCode::OK, "{b}");
    let small = &b["classes"][0];
    assert_eq!(
        (
            small["available"].as_u64(),
            small["withdrawn"].as_u64(),
            small["pending"].as_u64()
        ),
        (Some(10_099), Some(1), Some(10_000))
    );
    assert_eq!(small["releases"][1]["pending"], 10_000);
    assert_eq!(b["classes"][1]["withdrawn"], 3);
    assert!(b["mailbox_depth"].is_u64());
    assert!(b["rates"]["draws_per_s"].is_number());
    assert!(b["gateway"]["rates"]["draws_per_s"].is_number());
    let (s, _) = call!(app, op_req("GET", "/v1/admin/offices/nowhere/stats"));
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The audit trail has every change, oldest first, paged.
    let (s, b) = call!(app, op_req("GET", "/v1/admin/audit?office=maoming"));
    assert_eq!(s, StatusCode::OK, "{b}");
    let actions: Vec<&str> = b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "configure",
            "release",
            "release",
            "release",
            "withdraw_number",
            "withdraw_release"
        ]
    );
    assert_eq!(b["entries"][4]["serial"], "A0001");
    assert_eq!(b["entries"][0]["who"], "operator:operator");
    let (s, page) = call!(app, op_req("GET", "/v1/admin/audit?office=maoming&limit=2"));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["more"], true);
    let next = page["next_after"].as_u64().unwrap();
    let (_, page2) = call!(
        app,
        op_req(
            "GET",
            &format!("/v1/admin/audit?office=maoming&after={next}&limit=10")
        )
    );
    assert_eq!(page2["entries"].as_array().unwrap().len(), 4);
    assert_eq!(page2["entries"][0]["action"], "release");
    assert_eq!(page2["more"], false);
    let future = platepool_engine::calendar::rfc3339(gw.engine.now_ms() + 60_000);
    let (_, b) = call!(
        app,
        op_req(
            "GET",
            &format!(
                "/v1/admin/audit?office=maoming&since={}",
                future.replace('+', "%2B")
            )
        )
    );
    assert_eq!(b["entries"], json!([]));
    let (_, b) = call!(
        app,
        op_req(
            "GET",
            "/v1/admin/audit?office=maoming&since=2020-01-01T00:00:00Z"
        )
    );
    assert_eq!(b["entries"].as_array().unwrap().len(), 6);
    for (q, field) in [
        ("office=maoming&since=soon", "since"),
        ("office=maoming&limit=0", "limit"),
        ("office=maoming&after=x", "after"),
    ] {
        let (s, b) = call!(app, op_req("GET", &format!("/v1/admin/audit?{q}")));
        assert_eq!(
            (s, error_field(&b)),
            (StatusCode::BAD_REQUEST, field),
            "{q}"
        );
    }
    let (s, _) = call!(
        app,
        op_req("GET", "/v1/admin/audit?office=maoming&colour=red")
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call!(app, op_req("GET", "/v1/admin/audit?office=nowhere"));
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn certificates_import_from_csv_and_json_keeping_good_rows() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let csv = format!(
        "vin,voucher,class,energy\n\
         {},WDM0001,small,fuel\n\
         LFV2A21K0SA000002,WDM0002,small,fuel\n\
         {},WDM0003,small_new_energy,diesel\n\
         \"{}\",\"WDM-0004\",small_new_energy,BEV\r\n\
         \n\
         {},WDM0005,small\n\
         {},WDM0006,truck,fuel\n",
        vin(1),
        vin(3),
        vin(4),
        vin(5),
        vin(6)
    );
    let (s, b) = call!(
        app,
        op_req("POST", "/v1/admin/certificates")
            .insert_header(("Content-Type", "text/csv"))
            .set_payload(csv)
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["imported"], 2);
    let rows: Vec<u64> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [2, 3, 5, 6]);
    assert!(
        b["rejected"][0]["reason"].as_str().unwrap().contains("vin"),
        "{b}"
    );
    assert!(
        b["rejected"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("energy"),
        "{b}"
    );

    let body = json!([
        {"vin": vin(7), "voucher": "WDM0007", "class": "small", "energy": "phev"},
        {"vin": vin(8), "voucher": "WDM0008", "class": "bus", "energy": "fuel"},
        "not a record",
        {"vin": 12345, "voucher": "WDM0010", "class": "small", "energy": "fuel"},
        {"vin": vin(11), "voucher": "", "class": "small", "energy": "fuel"},
        {"vin": vin(12), "voucher": "WDM0012", "class": "small_new_energy", "energy": "fcev"}
    ]);
    let (s, b) = call!(app, op_json("POST", "/v1/admin/certificates", body));
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["imported"], 2);
    let rows: Vec<u64> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [2, 3, 4, 5]);

    // The kept rows serve applications.
    let (s, _) = call!(
        app,
        op_json("PUT", "/v1/admin/offices/maoming", office_doc())
    );
    assert_eq!(s, StatusCode::CREATED);
    let req = ApplicationRequest {
        office: OFFICE.into(),
        user: "u1".into(),
        phone: "13800138001".into(),
        vin: vin(4),
        voucher: "wdm-0004".into(),
        notice_version: "v1".into(),
    };
    gw.engine.check_application(req).await.unwrap();

    // Whole-import errors.
    let (s, b) = call!(
        app,
        op_req("POST", "/v1/admin/certificates")
            .insert_header(("Content-Type", "text/csv"))
            .set_payload("vin,voucher,class\nX,Y,small\n")
    );
    assert_eq!(
        (s, error_code(&b), error_field(&b)),
        (StatusCode::BAD_REQUEST, "bad_request", "header")
    );
    let (s, _) = call!(
        app,
        op_json("POST", "/v1/admin/certificates", json!({"vin": "x"}))
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call!(
        app,
        op_req("POST", "/v1/admin/certificates")
            .insert_header(("Content-Type", "application/xml"))
            .set_payload("<x/>")
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = call!(
        app,
        op_req("POST", "/v1/admin/certificates")
            .insert_header(("Content-Type", "text/csv"))
            .set_payload(vec![b'x'; 16 * 1024 * 1024 + 1])
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // A large import within 16 MiB is fine.
    let mut big = String::from("vin,voucher,class,energy\n");
    for n in 0..3_000u32 {
        big.push_str(&format!("{},B{n:06},small,fuel\n", vin(100_000 + n)));
    }
    let (s, b) = call!(
        app,
        op_req("POST", "/v1/admin/certificates")
            .insert_header(("Content-Type", "text/csv; charset=utf-8"))
            .set_payload(big)
    );
    assert_eq!(
        (s, b["imported"].as_u64()),
        (StatusCode::OK, Some(3_000)),
        "{b}"
    );
}

/// An office with one small release and certificates for vehicles 1..=4; gives their VINs.
macro_rules! office_with_vehicles {
    ($app:expr) => {{
        let (s, _) = call!($app, op_json("PUT", "/v1/admin/offices/maoming", office_doc()));
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = call!(
            $app,
            op_json("POST", "/v1/admin/offices/maoming/releases", json!({"class": "small", "label": "A", "patterns": ["A####"]}))
        );
        assert_eq!(s, StatusCode::CREATED);
        let vins: Vec<String> = (1..=4).map(vin).collect();
        let rows: Vec<Value> = vins
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"vin": v, "voucher": format!("V{i}"), "class": "small", "energy": "fuel"}))
            .collect();
        let (s, b) = call!($app, op_json("POST", "/v1/admin/certificates", json!(rows)));
        assert_eq!((s, b["imported"].as_u64()), (StatusCode::OK, Some(4)));
        vins
    }};
}

/// Opens an application for `user` on `vin` and claims `serial` by a custom check.
async fn claim(
    gw: &Gateway,
    user: &str,
    vin: &str,
    voucher: &str,
    serial: &str,
) -> platepool_engine::AppId {
    let id = gw
        .engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.into(),
            phone: "13800138001".into(),
            vin: vin.into(),
            voucher: voucher.into(),
            notice_version: "v1".into(),
        })
        .await
        .unwrap();
    gw.engine
        .verify_identity(&id, Caller::Citizen(user))
        .await
        .unwrap();
    let check = gw
        .engine
        .custom_check(&id, Caller::Citizen(user), vec![serial.into()])
        .await
        .unwrap();
    assert!(matches!(check, Check::Claimed(_)), "{check:?}");
    id
}

#[actix_web::test]
async fn registrations_voids_lookups_and_the_blacklist() {
    let (gw, _dir, clock) = gateway().await;
    let app = app!(gw);
    let vins = office_with_vehicles!(app);
    let first = claim(&gw, "u1", &vins[0], "V0", "A1235").await;
    let second = claim(&gw, "u2", &vins[1], "V1", "A2346").await;
    let third = claim(&gw, "u3", &vins[2], "V2", "A3457").await;

    // Registration: the claim becomes issued.
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming", "serial": "粤K·a1235"})
        )
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["id"].as_str(), b["state"].as_str()),
        (Some(first.to_string().as_str()), Some("issued"))
    );
    assert_eq!(b["claim"]["plate"], "粤K·A1235");
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming", "serial": "A1235"})
        )
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::CONFLICT, "conflict"),
        "already issued"
    );
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming", "serial": "A9999"})
        )
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::CONFLICT, "conflict"),
        "not claimed"
    );
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming", "serial": "E9999"})
        )
    );
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming", "serial": "A9I99"})
        )
    );
    assert_eq!(
        (s, error_code(&b), error_field(&b)),
        (StatusCode::BAD_REQUEST, "invalid_plate", "serial")
    );
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "nowhere", "serial": "A1235"})
        )
    );
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/registrations",
            json!({"office": "maoming"})
        )
    );
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "serial"));

    // Void: the number returns to the pool, no blacklist.
    let void_url = "/v1/admin/offices/maoming/claims/A2346/void";
    let (s, b) = call!(app, op_json("POST", void_url, json!({})));
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "reason"));
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            void_url,
            json!({"reason": "owner's request: car returned"})
        )
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["id"].as_str(), b["state"].as_str()),
        (Some(second.to_string().as_str()), Some("voided"))
    );
    let (s, b) = call!(app, op_json("POST", void_url, json!({"reason": "again"})));
    assert_eq!((s, error_code(&b)), (StatusCode::CONFLICT, "conflict"));
    let (s, _) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/offices/nowhere/claims/A2346/void",
            json!({"reason": "x"})
        )
    );
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/offices/maoming/claims/A23I6/void",
            json!({"reason": "x"})
        )
    );
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "invalid_plate")
    );
    pool_fresh().await;
    let (_, pool) = call!(
        app,
        test::TestRequest::get().uri("/v1/offices/maoming/pool")
    );
    assert_eq!(
        pool["classes"][0]["available"],
        10_000 - 2,
        "issued and still claimed are out, the voided one is back"
    );

    // Look-ups, unmasked.
    let (s, b) = call!(
        app,
        op_req(
            "GET",
            &format!("/v1/admin/applications?vin={}", vins[0].to_lowercase())
        )
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(
        (b[0]["vin"].as_str(), b[0]["user"].as_str()),
        (Some(vins[0].as_str()), Some("u1"))
    );
    assert_eq!(b[0]["phone"], "13800138001");
    let (s, b) = call!(
        app,
        op_req("GET", "/v1/admin/applications?serial=A3457&office=maoming")
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (b[0]["id"].as_str(), b[0]["state"].as_str()),
        (Some(third.to_string().as_str()), Some("claimed"))
    );
    let (_, b) = call!(
        app,
        op_req("GET", "/v1/admin/applications?serial=A0000&office=maoming")
    );
    assert_eq!(b, json!([]));
    let (_, b) = call!(app, op_req("GET", "/v1/admin/applications?user=u2"));
    assert_eq!(b[0]["state"], "voided");
    let (_, b) = call!(
        app,
        op_req("GET", "/v1/admin/applications?user=u2&office=elsewhere")
    );
    assert_eq!(b, json!([]));
    for (q, code, field) in [
        ("", "bad_request", ""),
        ("vin=LFV2A21K0SA00000&user=u1", "bad_request", ""),
        ("vin=LFV2A21K0SA0000I1", "invalid_vin", "vin"),
        ("serial=A3457", "bad_request", "office"),
        ("serial=A3I57&office=maoming", "invalid_plate", "serial"),
        ("user=a/b", "bad_request", "user"),
    ] {
        let (s, b) = call!(app, op_req("GET", &format!("/v1/admin/applications?{q}")));
        assert_eq!(
            (s, error_code(&b), error_field(&b)),
            (StatusCode::BAD_REQUEST, code, field),
            "{q}: {b}"
        );
    }
    let (s, _) = call!(
        app,
        op_req("GET", "/v1/admin/applications?serial=A3457&office=nowhere")
    );
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The audit trail shows the operators' acts on applications.
    let (_, b) = call!(
        app,
        op_req("GET", "/v1/admin/audit?office=maoming&limit=1000")
    );
    let entries = b["entries"].as_array().unwrap();
    let register = entries.iter().find(|e| e["action"] == "register").unwrap();
    assert_eq!(
        (
            register["application"].as_str(),
            register["serial"].as_str()
        ),
        (Some(first.to_string().as_str()), Some("A1235"))
    );
    let void = entries.iter().find(|e| e["action"] == "void").unwrap();
    assert_eq!(void["detail"], "owner's request: car returned");

    // Blacklist: nobody yet; the third claim lapses after its deadline and its user is listed.
    let (s, b) = call!(app, op_req("GET", "/v1/admin/blacklist"));
    assert_eq!((s, b.clone()), (StatusCode::OK, json!([])));
    let (s, b) = call!(
        app,
        op_json("DELETE", "/v1/admin/blacklist/u3", json!({"reason": "x"}))
    );
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    clock.advance(30 * 86_400_000);
    let (s, _) = call!(app, op_req("GET", "/v1/admin/offices/maoming/stats"));
    assert_eq!(s, StatusCode::OK);
    let mut listed = Value::Null;
    for _ in 0..100 {
        let (_, b) = call!(app, op_req("GET", "/v1/admin/blacklist"));
        if b.as_array().is_some_and(|a| !a.is_empty()) {
            listed = b;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed[0]["user"], "u3", "{listed}");
    assert_eq!(listed[0]["application"], third.to_string());
    assert!(listed[0]["until"].is_string());
    let (s, b) = call!(
        app,
        op_json("DELETE", "/v1/admin/blacklist/u3", json!({"reason": "  "}))
    );
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "reason"));
    let (s, b) = call!(
        app,
        op_json(
            "DELETE",
            "/v1/admin/blacklist/u3",
            json!({"reason": "hospitalised, proof seen"})
        )
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = call!(app, op_req("GET", "/v1/admin/blacklist"));
    assert_eq!(b, json!([]));
    let (s, b) = call!(app, op_req("GET", "/v1/admin/audit"));
    assert_eq!(s, StatusCode::OK, "{b}");
    let lift = b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "lift_blacklist")
        .unwrap();
    assert_eq!(lift["who"], "operator:operator");
    assert!(lift["detail"].as_str().unwrap().contains("hospitalised"));
}

#[actix_web::test]
async fn tokens_and_the_sms_outbox() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let (s, b) = call!(
        app,
        op_json(
            "POST",
            "/v1/admin/tokens",
            json!({"user": "alice", "phone": "13800138000", "ttl_s": 600})
        )
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    let claims =
        platepool_gateway::auth::verify_token(SECRET, &token, gw.engine.now_ms() / 1000).unwrap();
    assert_eq!(
        (claims.user.as_str(), claims.phone.as_str()),
        ("alice", "13800138000")
    );
    // It is a citizen token: the operator API refuses it with 403.
    let (s, _) = call!(
        app,
        test::TestRequest::get()
            .uri("/v1/admin/blacklist")
            .insert_header(("Authorization", format!("Bearer {token}")))
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (body, field) in [
        (json!({"user": "a b", "phone": "13800138000"}), "user"),
        (json!({"user": "alice", "phone": "12"}), "phone"),
        (
            json!({"user": "alice", "phone": "13800138000", "ttl_s": 0}),
            "ttl_s",
        ),
        (json!({"user": "alice"}), "phone"),
        (
            json!({"user": "alice", "phone": "13800138000", "ttl_s": "long"}),
            "ttl_s",
        ),
    ] {
        let (s, b) = call!(app, op_json("POST", "/v1/admin/tokens", body.clone()));
        assert_eq!(
            (s, error_field(&b)),
            (StatusCode::BAD_REQUEST, field),
            "{body}: {b}"
        );
    }

    // The outbox.
    let (s, b) = call!(app, op_req("GET", "/v1/admin/sms/outbox?phone=13800138000"));
    assert_eq!((s, b), (StatusCode::OK, json!([])));
    gw.sms
        .deliver(
            "13800138000",
            Purpose::Claimed,
            "您已预选号牌 粤K·A1234".into(),
            gw.engine.now_ms(),
        )
        .await
        .unwrap();
    gw.sms
        .deliver(
            "13900139000",
            Purpose::Claimed,
            "other".into(),
            gw.engine.now_ms(),
        )
        .await
        .unwrap();
    let (s, b) = call!(app, op_req("GET", "/v1/admin/sms/outbox?phone=13800138000"));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(
        (b[0]["phone"].as_str(), b[0]["purpose"].as_str()),
        (Some("13800138000"), Some("claimed"))
    );
    assert!(b[0]["text"].as_str().unwrap().contains("A1234"));
    assert!(b[0]["sent_at"].is_string());
    let (_, b) = call!(app, op_req("GET", "/v1/admin/sms/outbox"));
    assert_eq!(b.as_array().unwrap().len(), 2);
    let (s, b) = call!(app, op_req("GET", "/v1/admin/sms/outbox?phone=abc"));
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "phone"));

    // A gateway that does not issue tokens.
    let (gw2, _dir2) = gateway_with(
        GatewayConfig {
            allow_token_issue: false,
            ..support::gateway_config()
        },
        Arc::new(TestClock::default()),
    )
    .await;
    let app2 = app!(gw2);
    let (s, b) = call!(
        app2,
        op_json(
            "POST",
            "/v1/admin/tokens",
            json!({"user": "alice", "phone": "13800138000"})
        )
    );
    assert_eq!((s, error_code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
}

/// Every path the API serves, asked with each method it does not serve: 405
/// `method_not_allowed` with `Allow` naming exactly the methods it serves (API.md conventions).
#[actix_web::test]
async fn an_undeclared_method_on_a_known_path_is_405_with_allow() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let mut served: Vec<(&str, Vec<&str>)> = Vec::new();
    for (method, path) in route_keys() {
        match served.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => methods.push(method),
            None => served.push((path, vec![method])),
        }
    }
    let mut refused = 0;
    for (pattern, methods) in &served {
        let path = pattern
            .replace("{office}", OFFICE)
            .replace("{id}", "maoming-1")
            .replace("{serial}", "A0001")
            .replace("{user}", "u1");
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            if methods.contains(&other) {
                continue;
            }
            let method = actix_web::http::Method::from_bytes(other.as_bytes()).expect("method");
            let req = test::TestRequest::default()
                .method(method)
                .uri(&path)
                .insert_header(("Authorization", format!("Bearer {OP}")))
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{other} {path}"
            );
            let allow = resp
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{other} {path}: no Allow header"))
                .to_string();
            let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
            allowed.sort_unstable();
            let mut expected = methods.clone();
            expected.sort_unstable();
            assert_eq!(allowed, expected, "{other} {path}");
            let body: Value = test::read_body_json(resp).await;
            assert_eq!(error_code(&body), "method_not_allowed", "{other} {path}");
            refused += 1;
        }
    }
    assert!(refused > 100, "{refused} requests refused");
    // A path no route serves is still 404.
    let (s, b) = call!(
        app,
        test::TestRequest::delete().uri("/v1/applications/maoming-1/nothing")
    );
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
}

#[actix_web::test]
async fn public_routes_and_the_openapi_document() {
    let (gw, _dir, _clock) = gateway().await;
    let app = app!(gw);
    let (s, _) = call!(app, test::TestRequest::get().uri("/healthz"));
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call!(app, test::TestRequest::get().uri("/readyz"));
    assert_eq!(s, StatusCode::OK);

    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains(
            "platepool_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"2xx\"} 1"
        ),
        "{text}"
    );

    let good = vin(42);
    let (s, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/vin/check")
            .set_json(json!({"vin": good.to_lowercase()}))
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["valid"], true);
    let mut wrong = good.clone().into_bytes();
    wrong[8] = if wrong[8] == b'1' { b'2' } else { b'1' };
    let wrong = String::from_utf8(wrong).unwrap();
    let (_, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/vin/check")
            .set_json(json!({"vin": wrong}))
    );
    assert_eq!(
        (
            b["valid"].as_bool(),
            b["reason"].as_str(),
            b["position"].as_u64()
        ),
        (Some(false), Some("check_digit"), Some(9))
    );
    let (_, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/vin/check")
            .set_json(json!({"vin": "LFV2A21KOSA000001"}))
    );
    assert_eq!(
        (b["reason"].as_str(), b["position"].as_u64()),
        (Some("forbidden_letter"), Some(9))
    );
    let (_, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/vin/check")
            .set_json(json!({"vin": "LFV2"}))
    );
    assert_eq!(
        (b["valid"].as_bool(), b["reason"].as_str()),
        (Some(false), Some("wrong_length"))
    );
    let (s, b) = call!(
        app,
        test::TestRequest::post()
            .uri("/v1/vin/check")
            .set_json(json!({"vin": 17}))
    );
    assert_eq!((s, error_field(&b)), (StatusCode::BAD_REQUEST, "vin"));

    let (s, doc) = call!(app, test::TestRequest::get().uri("/v1/openapi.json"));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in route_keys() {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        assert!(
            op["summary"].is_string() && op["responses"].is_object(),
            "{method} {path}"
        );
    }
    assert!(doc["components"]["schemas"]["Error"].is_object());
    assert_eq!(
        doc["paths"]["/v1/admin/tokens"]["post"]["security"],
        json!([{"operator": []}])
    );

    let (s, b) = call!(app, test::TestRequest::get().uri("/v1/nothing/here"));
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));

    gw.set_ready(false);
    let (s, b) = call!(app, test::TestRequest::get().uri("/readyz"));
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
}
