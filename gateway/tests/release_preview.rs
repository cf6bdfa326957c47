//! `POST /v1/admin/offices/{office}/releases/preview` through the real app factory: the count a
//! release would add, refused exactly as the release would be (same status, code and field),
//! and nothing saved — no release, no number, no audit entry.
#![allow(clippy::unwrap_used)]

use actix_web::http::StatusCode;
use actix_web::test;
use serde_json::{json, Value};

mod support;
use support::{app, OPERATOR as OP};

const RELEASES: &str = "/v1/admin/offices/maoming/releases";
const PREVIEW: &str = "/v1/admin/offices/maoming/releases/preview";

macro_rules! call {
    ($app:expr, $req:expr) => {{
        let resp = test::call_service(&$app, $req.to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

fn op_post(path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {OP}")))
        .set_json(body)
}

fn op_get(path: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {OP}")))
}

fn office_doc() -> Value {
    json!({
        "name": "茂名市车辆管理所", "prefix": "粤K", "classes": ["small", "small_new_energy"],
        "notice": {"version": "v1", "text": "须知"}
    })
}

/// Every release id in the office's figures.
fn release_ids(stats: &Value) -> Vec<u64> {
    stats["classes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["releases"].as_array().unwrap().iter())
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// The office's audit actions, oldest first.
fn actions(audit: &Value) -> Vec<String> {
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn preview_counts_what_the_release_adds_and_saves_nothing() {
    let (_dir, engine) = support::engine(Some(3), None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app!(gw);
    let put = test::TestRequest::put()
        .uri("/v1/admin/offices/maoming")
        .insert_header(("Authorization", format!("Bearer {OP}")))
        .set_json(office_doc());
    assert_eq!(call!(app, put).0, StatusCode::CREATED);
    let (_, audit_before) = call!(app, op_get("/v1/admin/audit?office=maoming"));

    let body = json!({"class": "small", "label": "A 与 B12", "patterns": ["A####", "b12##"]});
    let (s, p) = call!(app, op_post(PREVIEW, body.clone()));
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["total"], 10_100);
    assert_eq!(p["named"], 10_100);
    assert_eq!(p["already_in_pool"], 0);
    assert_eq!(p["class"], "small");
    assert_eq!(p["sample"][0]["serial"], "A0000");
    assert_eq!(p["sample"][0]["plate"], "粤K·A0000");
    assert_eq!(p["sample"].as_array().unwrap().len(), 10);
    assert_eq!(p["last"]["serial"], "B1299");

    // Nothing saved: no release in the figures, no audit entry, nothing in the pool notice.
    let (_, stats) = call!(app, op_get("/v1/admin/offices/maoming/stats"));
    assert!(release_ids(&stats).is_empty(), "{stats}");
    let (_, audit) = call!(app, op_get("/v1/admin/audit?office=maoming"));
    assert_eq!(actions(&audit), actions(&audit_before));
    assert_eq!(stats["classes"][0]["total"], 0);

    // The release then adds exactly the previewed count.
    let (s, r) = call!(app, op_post(RELEASES, body.clone()));
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["total"], p["total"]);

    // Numbers already in the pool are named but not counted, as the release skips them.
    let (s, p) = call!(
        app,
        op_post(
            PREVIEW,
            json!({"class": "small", "patterns": ["A####", "C0###"]})
        )
    );
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (&p["total"], &p["named"], &p["already_in_pool"]),
        (&json!(1_000), &json!(11_000), &json!(10_000))
    );
    assert_eq!(p["sample"][0]["serial"], "C0000");
    let (s, r) = call!(
        app,
        op_post(
            RELEASES,
            json!({"class": "small", "patterns": ["A####", "C0###"]})
        )
    );
    assert_eq!((s, &r["total"]), (StatusCode::CREATED, &json!(1_000)));
}

#[actix_web::test]
async fn a_bad_preview_is_refused_as_the_release_would_be_and_changes_nothing() {
    let (_dir, engine) = support::engine(Some(4), None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app!(gw);
    let put = test::TestRequest::put()
        .uri("/v1/admin/offices/maoming")
        .insert_header(("Authorization", format!("Bearer {OP}")))
        .set_json(office_doc());
    assert_eq!(call!(app, put).0, StatusCode::CREATED);
    let (s, _) = call!(
        app,
        op_post(RELEASES, json!({"class": "small", "serials": ["A0001"]}))
    );
    assert_eq!(s, StatusCode::CREATED);
    let (_, stats_before) = call!(app, op_get("/v1/admin/offices/maoming/stats"));
    let (_, audit_before) = call!(app, op_get("/v1/admin/audit?office=maoming"));

    // (body, the field at fault)
    let bad = [
        // A pattern that does not parse, and one outside the class's shape.
        (
            json!({"class": "small", "patterns": ["A####", "A[12"]}),
            "patterns[1]",
        ),
        (
            json!({"class": "small", "patterns": ["A####", "D#####"]}),
            "patterns[1]",
        ),
        (
            json!({"class": "small", "serials": ["A0002", "AI234"]}),
            "serials[1]",
        ),
        (json!({"class": "big", "patterns": ["A####"]}), "class"),
        (
            json!({"class": "small", "patterns": ["A####"], "opens_at": "tomorrow"}),
            "opens_at",
        ),
        (json!({"class": "small", "patterns": []}), "patterns"),
        (json!({"class": "small"}), "patterns"),
        // Every number named is in the pool already: the release would add none.
        (json!({"class": "small", "serials": ["A0001"]}), "serials"),
    ];
    for (body, field) in bad {
        let (s, preview) = call!(app, op_post(PREVIEW, body.clone()));
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {preview}");
        assert_eq!(preview["error"]["field"], field, "{body}: {preview}");
        // The release refuses the same body with the same answer.
        let (s, release) = call!(app, op_post(RELEASES, body.clone()));
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {release}");
        assert_eq!(release["error"], preview["error"], "{body}");
    }
    let (_, stats) = call!(app, op_get("/v1/admin/offices/maoming/stats"));
    assert_eq!(release_ids(&stats), release_ids(&stats_before));
    assert_eq!(stats["classes"], stats_before["classes"]);
    let (_, audit) = call!(app, op_get("/v1/admin/audit?office=maoming"));
    assert_eq!(actions(&audit), actions(&audit_before));

    // An unknown office is 404; the operator credential is required.
    let (s, _) = call!(
        app,
        op_post(
            "/v1/admin/offices/nowhere/releases/preview",
            json!({"class": "small", "patterns": ["A####"]})
        )
    );
    assert_eq!(s, StatusCode::NOT_FOUND);
    let anonymous = test::TestRequest::post()
        .uri(PREVIEW)
        .set_json(json!({"class": "small", "patterns": ["A####"]}));
    assert_eq!(call!(app, anonymous).0, StatusCode::UNAUTHORIZED);
    let citizen = support::token("u1", "13800138000", gw.engine.now_ms() / 1000 + 600);
    let as_citizen = test::TestRequest::post()
        .uri(PREVIEW)
        .insert_header(("Authorization", format!("Bearer {citizen}")))
        .set_json(json!({"class": "small", "patterns": ["A####"]}));
    assert_eq!(call!(app, as_citizen).0, StatusCode::FORBIDDEN);
}
