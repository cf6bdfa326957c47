//! Office health and the clock through the gateway: a failed office is named in `/readyz`
//! (503) and in `/metrics` until the engine has restarted it from its durable state; a stepped
//! wall clock makes `/readyz` say `degraded` (200) and is counted in `/metrics`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test;
use platepool_engine::clock::FakeClock;
use platepool_engine::OfficeRules;
use serde_json::Value;

mod support;
use support::{app, OPERATOR as OP};

macro_rules! get {
    ($app:expr, $path:expr) => {{
        let resp =
            test::call_service(&$app, test::TestRequest::get().uri($path).to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        let text = String::from_utf8_lossy(&bytes).to_string();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    }};
}

fn metric(text: &Value, line_start: &str) -> String {
    text.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
        .trim()
        .to_string()
}

#[actix_web::test]
async fn a_failed_office_is_named_until_it_is_restarted() {
    let (_dir, engine) = support::engine(Some(3), None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app!(gw);
    let office = support::office("茂名", &["small"], OfficeRules::default());
    engine.put_office("maoming", office, OP).await.unwrap();
    let (status, body) = get!(app, "/readyz");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, text) = get!(app, "/metrics");
    assert_eq!(
        metric(&text, "platepool_office_healthy{office=\"maoming\"}"),
        "1"
    );

    // What a failed write or fsync sets.
    let health = engine.office_handle("maoming").unwrap().health;
    health.failed.store(true, Ordering::SeqCst);
    let (status, body) = get!(app, "/readyz");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "unavailable", "{body}");
    assert_eq!(error["failed_offices"][0]["office"], "maoming", "{body}");
    let reason = error["failed_offices"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("writer failed"), "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("office maoming"), "{body}");
    let (_, text) = get!(app, "/metrics");
    assert_eq!(
        metric(&text, "platepool_office_healthy{office=\"maoming\"}"),
        "0"
    );

    // Restarted from its durable state: ready again, the restart counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get!(app, "/readyz");
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the office was not restarted");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = get!(app, "/metrics");
    assert_eq!(
        metric(&text, "platepool_office_healthy{office=\"maoming\"}"),
        "1"
    );
    assert_eq!(
        metric(&text, "platepool_office_restarts_total{office=\"maoming\"}"),
        "1"
    );
}

#[actix_web::test]
async fn a_stepped_clock_is_degraded_in_readyz_and_counted_in_metrics() {
    let fake = Arc::new(FakeClock::at(support::t0()));
    let (_dir, engine) = support::engine(Some(4), Some(fake.clone())).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app!(gw);
    fake.step_wall(30 * 86_400_000);
    let (status, body) = get!(app, "/readyz");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["clock"]["offset_ms"], 30 * 86_400_000_i64, "{body}");
    let (_, text) = get!(app, "/metrics");
    assert_eq!(metric(&text, "platepool_clock_steps_total "), "1");
    assert_eq!(metric(&text, "platepool_clock_degraded "), "1");
    let confirm = test::TestRequest::post()
        .uri("/v1/admin/clock/confirm")
        .insert_header(("Authorization", format!("Bearer {OP}")))
        .to_request();
    let resp = test::call_service(&app, confirm).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, body) = get!(app, "/readyz");
    assert_eq!(body["status"], "ready", "{body}");
    let (_, text) = get!(app, "/metrics");
    assert_eq!(metric(&text, "platepool_clock_degraded "), "0");
}
